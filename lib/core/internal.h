/* Internal declarations shared by the library's files: the layouts behind the opaque handles, error reporting,
 * allocation, checked size arithmetic, argument checks and the parallel loop. Never installed. */
#ifndef FRCNN_INTERNAL_H
#define FRCNN_INTERNAL_H

#include "frcnn.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <sys/types.h>

#define FRCNN__ALIGN 64
#define FRCNN__ERROR_LEN 512
#define FRCNN__MAX_THREADS 64

typedef void (*frcnn__range_fn)(void *arg, size_t begin, size_t end);

/* The context's worker threads, started once (frcnn_ctx_set_threads) and reused by every parallel loop, so a
 * training step starts no thread and allocates nothing. Lives inside the context: no allocation of its own. */
typedef struct frcnn__pool frcnn__pool;

typedef struct frcnn__pool_worker {
    frcnn__pool *pool;
    int index;
    uint64_t start_generation; /* the generation when it was started: anything later is work or stop */
} frcnn__pool_worker;

struct frcnn__pool {
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    pthread_t threads[FRCNN__MAX_THREADS];
    frcnn__pool_worker args[FRCNN__MAX_THREADS];
    int n_workers;        /* started; worker i runs range i + 1 of a loop */
    _Atomic uint64_t generation; /* bumped for each loop, and to stop; read without the lock while spinning */
    bool stop;
    int active;                  /* ranges of the current loop handed to workers */
    _Atomic int pending;         /* of those, not finished yet; read without the lock while spinning */
    frcnn__range_fn fn;
    void *arg;
    size_t begin[FRCNN__MAX_THREADS], end[FRCNN__MAX_THREADS];
    bool ready;           /* mutex and conditions initialised */
    pid_t owner;          /* the process whose workers these are: a forked child has none and runs loops inline */
};

/* Starts n - 1 workers (fewer if the system refuses: the loops then run those ranges on the caller), or stops
 * them all with n = 0. */
void frcnn__pool_resize(frcnn__pool *pool, int n);

struct frcnn_ctx {
    frcnn_allocator allocator;
    frcnn_log_fn log;
    void *log_user;
    frcnn_log_level log_level;
    int n_threads;
    char last_error[FRCNN__ERROR_LEN];
    frcnn__pool pool;
};

typedef enum frcnn__tensor_kind {
    FRCNN__TENSOR_OWNED = 0, /* header and data from the context's allocator */
    FRCNN__TENSOR_ARENA = 1, /* header and data in an arena: never freed one by one */
    FRCNN__TENSOR_WRAP = 2   /* header from the allocator, data owned by the caller */
} frcnn__tensor_kind;

struct frcnn_tensor {
    float *data;
    int ndim;
    int64_t dims[FRCNN_MAX_DIMS];
    size_t numel;
    frcnn__tensor_kind kind;
    frcnn_ctx *ctx; /* for freeing; NULL for arena tensors */
};

/* The context an arena reports its errors to. */
frcnn_ctx *frcnn__arena_ctx(const frcnn_arena *arena);

/* Records a one-line message on ctx (if not NULL) and returns status, so callers write
 * `return frcnn__error(ctx, FRCNN_ERR_SHAPE, "...", ...);`. */
frcnn_status frcnn__error(frcnn_ctx *ctx, frcnn_status status, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* 64-byte aligned memory from the context's allocator, or NULL (and a message on ctx) on failure. */
void *frcnn__alloc(frcnn_ctx *ctx, size_t size);
void frcnn__free(frcnn_ctx *ctx, void *ptr, size_t size);

/* Checked arithmetic: false (and *out untouched) when the result would not fit. */
bool frcnn__mul_size(size_t a, size_t b, size_t *out);
bool frcnn__add_size(size_t a, size_t b, size_t *out);

/* Argument checks that fill the context's message. `name` names the argument in the message. */
frcnn_status frcnn__check_tensor(frcnn_ctx *ctx, const frcnn_tensor *t, const char *name, int ndim);
frcnn_status frcnn__check_same_shape(frcnn_ctx *ctx, const frcnn_tensor *a, const char *a_name,
                                     const frcnn_tensor *b, const char *b_name);
/* Writes "(2, 3, 4, 5)" into buf. */
void frcnn__shape_str(const frcnn_tensor *t, char *buf, size_t len);
/* The batch index of row i of a RoI tensor (r, 5), column 0 of `row`: an integer value in [0, n). `op` names the
 * kernel in the message. */
frcnn_status frcnn__check_roi_batch(frcnn_ctx *ctx, const char *op, const float *row, int64_t i, int64_t n);
/* The position of the first of idx[0..n) outside [lo, hi), or n. */
size_t frcnn__first_index_outside(const int32_t *idx, size_t n, int32_t lo, int64_t hi);
/* Fails unless dims[0..ndim) are all in [1, INT32_MAX] and their product fits in size_t floats. */
frcnn_status frcnn__check_dims(frcnn_ctx *ctx, int ndim, const int64_t *dims, const char *name, size_t *numel);

/* Runs fn(arg, begin, end) over [0, n) split into contiguous ranges, one per thread of the context (the calling
 * thread takes the first, the context's workers the others). Each range must write only what it owns; results
 * then do not depend on the thread count. Runs inline when n is small or one thread is configured. Not
 * reentrant: fn must not start another parallel loop on the same context. */
void frcnn__parallel_for(frcnn_ctx *ctx, size_t n, size_t min_per_thread, frcnn__range_fn fn, void *arg);

#endif /* FRCNN_INTERNAL_H */
