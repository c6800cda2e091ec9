/*
 * libfrcnn: Faster R-CNN training and inference on the CPU, in C11.
 *
 * This is the whole public API. Conventions (see docs/api.md):
 *  - Every fallible call returns frcnn_status: FRCNN_OK (0) or a negative error. The detail is one line in the
 *    context, read with frcnn_ctx_last_error(). A call given a NULL context returns FRCNN_ERR_INVALID_ARG.
 *  - Objects are opaque handles. Every *_create has one *_free; *_free(NULL) is a no-op.
 *  - Tensors are float32, row-major, up to 4 dimensions, images in NCHW order.
 *  - Kernels never allocate. Outputs, saved-for-backward buffers and workspace come from the caller.
 *    Forward kernels overwrite their outputs. Backward kernels ACCUMULATE (+=) into the gradient tensors, so
 *    zero them once per step; a NULL gradient pointer means "not needed" and is skipped.
 *  - Nothing here aborts, exits or prints. Results are deterministic: same inputs, same build, same bits.
 */
#ifndef FRCNN_H
#define FRCNN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(FRCNN_BUILDING_LIBRARY) && defined(__GNUC__)
#define FRCNN_API __attribute__((visibility("default")))
#else
#define FRCNN_API
#endif

/* ---------------------------------------------------------------------------------------------------------------
 * Version
 * ------------------------------------------------------------------------------------------------------------- */

#define FRCNN_VERSION_MAJOR 0
#define FRCNN_VERSION_MINOR 1
#define FRCNN_VERSION_PATCH 0
#define FRCNN_VERSION_STRING "0.1.0"

/* The version of the library actually linked, e.g. "0.1.0". Static storage. */
FRCNN_API const char *frcnn_version(void);

/* ---------------------------------------------------------------------------------------------------------------
 * Status codes. Values are explicit and append-only: a released value never changes meaning.
 * ------------------------------------------------------------------------------------------------------------- */

typedef enum frcnn_status {
    FRCNN_OK = 0,
    FRCNN_ERR_INVALID_ARG = -1, /* NULL pointer, negative or zero size, bad parameter value */
    FRCNN_ERR_NO_MEMORY = -2,   /* the allocator (or an arena) could not provide the memory */
    FRCNN_ERR_OVERFLOW = -3,    /* a size computation would overflow */
    FRCNN_ERR_SHAPE = -4,       /* tensor shapes do not fit together */
    FRCNN_ERR_IO = -5,          /* a file could not be read or written */
    FRCNN_ERR_FORMAT = -6,      /* a file is malformed, truncated or corrupt */
    FRCNN_ERR_VERSION = -7,     /* a file needs a newer library */
    FRCNN_ERR_CHECKSUM = -8,    /* a checksum does not match */
    FRCNN_ERR_NOT_FINITE = -9,  /* a NaN or infinity where a finite number is required */
    FRCNN_ERR_NO_SPACE = -10,   /* not enough free disk space */
    FRCNN_ERR_NOT_FOUND = -11,  /* a named thing (file, tensor) does not exist */
    FRCNN_ERR_MISMATCH = -12,   /* a file does not belong to this model, dataset or configuration */
    FRCNN_ERR_STATE = -13       /* the call is not valid in the object's current state */
} frcnn_status;

/* A short constant description of a status, e.g. "shape mismatch". Never NULL; static storage. */
FRCNN_API const char *frcnn_status_str(frcnn_status status);

/* ---------------------------------------------------------------------------------------------------------------
 * Context: allocator, log callback, thread count, last error. One context per thread of use; a context is not
 * safe to use from two threads at once. Objects created with a context must be freed before it.
 * ------------------------------------------------------------------------------------------------------------- */

typedef struct frcnn_ctx frcnn_ctx;

/* A caller-supplied allocator. alloc returns memory aligned to at least `align` (a power of two, at most 4096)
 * or NULL; free receives the same size that was asked for. Both are called from the thread using the context. */
typedef struct frcnn_allocator {
    void *(*alloc)(void *user, size_t size, size_t align);
    void (*free)(void *user, void *ptr, size_t size);
    void *user;
} frcnn_allocator;

typedef enum frcnn_log_level {
    FRCNN_LOG_DEBUG = 0,
    FRCNN_LOG_INFO = 1,
    FRCNN_LOG_WARN = 2,
    FRCNN_LOG_ERROR = 3
} frcnn_log_level;

/* Receives one line without a trailing newline; the string lives only during the call. */
typedef void (*frcnn_log_fn)(void *user, frcnn_log_level level, const char *line);

typedef struct frcnn_ctx_params {
    const frcnn_allocator *allocator; /* NULL: the C library's aligned allocation. Copied at create. */
    frcnn_log_fn log;                 /* NULL: silent (the default). */
    void *log_user;
    frcnn_log_level log_level;        /* lines below this level are not emitted */
    int n_threads;                    /* 0: one per online core. */
} frcnn_ctx_params;

/* Defaults: system allocator, silent, FRCNN_LOG_INFO, n_threads 0. */
FRCNN_API frcnn_ctx_params frcnn_ctx_params_default(void);

/* Creates a context. params may be NULL for the defaults. On success *out owns a context to free with
 * frcnn_ctx_free; on failure *out is NULL. */
FRCNN_API frcnn_status frcnn_ctx_create(const frcnn_ctx_params *params, frcnn_ctx **out);
FRCNN_API void frcnn_ctx_free(frcnn_ctx *ctx);

/* The message of the most recent failed call on this context, or "" if none. Valid until the next call that
 * fails on the same context. */
FRCNN_API const char *frcnn_ctx_last_error(const frcnn_ctx *ctx);
FRCNN_API void frcnn_ctx_clear_error(frcnn_ctx *ctx);

/* Threads used by the kernels. OpenBLAS keeps one process-wide thread count, so setting it here also sets
 * OpenBLAS's. n <= 0 means one per online core. */
FRCNN_API frcnn_status frcnn_ctx_set_threads(frcnn_ctx *ctx, int n);
FRCNN_API int frcnn_ctx_threads(const frcnn_ctx *ctx);

/* The name of the GEMM kernel OpenBLAS chose for this CPU, e.g. "SkylakeX". Static storage. */
FRCNN_API const char *frcnn_blas_core(void);
/* When OpenBLAS fell back to a generic kernel on a CPU that supports a much faster one (it does so for CPU models
 * newer than its own release), the value to give OPENBLAS_CORETYPE in the environment before the program starts,
 * e.g. "SkylakeX"; otherwise NULL. frcnn_ctx_create logs a warning in that case. */
FRCNN_API const char *frcnn_blas_suggested_core(void);

/* Sends one formatted line to the context's log callback (used by the example programs too). */
FRCNN_API void frcnn_ctx_log(frcnn_ctx *ctx, frcnn_log_level level, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ---------------------------------------------------------------------------------------------------------------
 * Arena: a bump allocator with mark/reset for activations and scratch, sized once for the largest input so
 * that a training step allocates nothing from the system. Every allocation is 64-byte aligned.
 * ------------------------------------------------------------------------------------------------------------- */

typedef struct frcnn_arena frcnn_arena;

/* Reserves `capacity` bytes from the context's allocator. The arena must be freed before the context. */
FRCNN_API frcnn_status frcnn_arena_create(frcnn_ctx *ctx, size_t capacity, frcnn_arena **out);
FRCNN_API void frcnn_arena_free(frcnn_arena *arena);

/* Takes `size` bytes (uninitialised, 64-byte aligned). Fails with FRCNN_ERR_NO_MEMORY, and a message giving
 * the sizes, when the arena is full; the arena is unchanged then. The memory lives until a reset below it. */
FRCNN_API frcnn_status frcnn_arena_alloc(frcnn_arena *arena, size_t size, void **out);

/* The current fill level; frcnn_arena_reset(arena, mark) releases everything taken after the mark. */
FRCNN_API size_t frcnn_arena_mark(const frcnn_arena *arena);
FRCNN_API void frcnn_arena_reset(frcnn_arena *arena, size_t mark);

FRCNN_API size_t frcnn_arena_capacity(const frcnn_arena *arena);
FRCNN_API size_t frcnn_arena_used(const frcnn_arena *arena);
/* The highest fill level since creation: plan the capacity from a dry run with this. */
FRCNN_API size_t frcnn_arena_peak(const frcnn_arena *arena);

/* ---------------------------------------------------------------------------------------------------------------
 * Tensors: float32, row-major, 1 to 4 dimensions (NCHW for images). A tensor either owns its data (created
 * with frcnn_tensor_create), lives in an arena (frcnn_tensor_arena: header and data), or wraps caller memory
 * (frcnn_tensor_wrap). Dimensions are positive and at most INT32_MAX; the element count must fit in memory.
 * ------------------------------------------------------------------------------------------------------------- */

#define FRCNN_MAX_DIMS 4

typedef struct frcnn_tensor frcnn_tensor;

/* A new zero-filled tensor owning its data, freed with frcnn_tensor_free. */
FRCNN_API frcnn_status frcnn_tensor_create(frcnn_ctx *ctx, int ndim, const int64_t *dims, frcnn_tensor **out);

/* A tensor whose header and (uninitialised) data are taken from the arena; valid until the arena is reset
 * below the mark taken before this call. frcnn_tensor_free on it is a no-op. */
FRCNN_API frcnn_status frcnn_tensor_arena(frcnn_arena *arena, int ndim, const int64_t *dims, frcnn_tensor **out);

/* A tensor header over `data`, which the caller owns and keeps alive; frcnn_tensor_free frees the header
 * only. `data` must hold the element count of floats. */
FRCNN_API frcnn_status frcnn_tensor_wrap(frcnn_ctx *ctx, float *data, int ndim, const int64_t *dims,
                                         frcnn_tensor **out);

FRCNN_API void frcnn_tensor_free(frcnn_tensor *t);

/* Changes the dimensions without moving data; the element count must stay the same. */
FRCNN_API frcnn_status frcnn_tensor_reshape(frcnn_ctx *ctx, frcnn_tensor *t, int ndim, const int64_t *dims);

/* Accessors. The data pointer lives as long as the tensor. frcnn_tensor_dim returns 0 for i outside [0, ndim). */
FRCNN_API float *frcnn_tensor_data(const frcnn_tensor *t);
FRCNN_API int frcnn_tensor_ndim(const frcnn_tensor *t);
FRCNN_API int64_t frcnn_tensor_dim(const frcnn_tensor *t, int i);
FRCNN_API size_t frcnn_tensor_numel(const frcnn_tensor *t);

FRCNN_API void frcnn_tensor_zero(frcnn_tensor *t);
FRCNN_API void frcnn_tensor_fill(frcnn_tensor *t, float value);
/* Copies all elements; the element counts must be equal (shapes may differ). */
FRCNN_API frcnn_status frcnn_tensor_copy(frcnn_ctx *ctx, frcnn_tensor *dst, const frcnn_tensor *src);

/* ---------------------------------------------------------------------------------------------------------------
 * Random numbers: xoshiro256** with a 256-bit state that is a plain value, so it can be copied, saved and
 * restored (frcnn_rng_state_save/load give a portable 32-byte little-endian form). No hidden global state.
 * The sequence for a seed is part of the determinism contract (docs/determinism.md) and never changes.
 * ------------------------------------------------------------------------------------------------------------- */

typedef struct frcnn_rng {
    uint64_t s[4];
} frcnn_rng;

#define FRCNN_RNG_STATE_BYTES 32

/* Expands a 64-bit seed into a full state with SplitMix64 (any seed, including 0, is fine). */
FRCNN_API void frcnn_rng_seed(frcnn_rng *rng, uint64_t seed);
FRCNN_API uint64_t frcnn_rng_next_u64(frcnn_rng *rng);
/* Uniform integer in [0, bound); bound 0 returns 0. Unbiased (rejection sampling). */
FRCNN_API uint64_t frcnn_rng_below(frcnn_rng *rng, uint64_t bound);
/* Uniform float in [0, 1), 24 random bits. */
FRCNN_API float frcnn_rng_uniform(frcnn_rng *rng);
/* Normal(mean, std) by Box-Muller; consumes exactly two 64-bit draws per call. */
FRCNN_API float frcnn_rng_normal(frcnn_rng *rng, float mean, float std);
/* Uniformly random permutation of a[0..n) (Fisher-Yates). */
FRCNN_API void frcnn_rng_shuffle(frcnn_rng *rng, uint32_t *a, size_t n);
/* Sampling without replacement: reorders a[0..n) so that a[0..k) is a uniform random k-subset of it, in random
 * order (partial Fisher-Yates). k > n is treated as k = n. */
FRCNN_API void frcnn_rng_choose(frcnn_rng *rng, uint32_t *a, size_t n, size_t k);
/* Fills a tensor with Normal(mean, std) values, in element order. */
FRCNN_API void frcnn_rng_fill_normal(frcnn_rng *rng, frcnn_tensor *t, float mean, float std);

FRCNN_API void frcnn_rng_state_save(const frcnn_rng *rng, uint8_t out[FRCNN_RNG_STATE_BYTES]);
/* Fails with FRCNN_ERR_FORMAT on the all-zero state, which xoshiro cannot leave. ctx may be NULL. */
FRCNN_API frcnn_status frcnn_rng_state_load(frcnn_ctx *ctx, frcnn_rng *rng, const uint8_t in[FRCNN_RNG_STATE_BYTES]);

/* ---------------------------------------------------------------------------------------------------------------
 * Kernels. Shapes are checked; a mismatch returns FRCNN_ERR_SHAPE with a message naming the tensors.
 * ------------------------------------------------------------------------------------------------------------- */

/* 2-D convolution (cross-correlation, as in every framework).
 *   x (n, c, h, w)   w (m, c, kh, kw)   b (m) or NULL   y (n, m, oh, ow)
 *   oh = (h + 2 pad_h - kh) / stride_h + 1, and the same for the width.
 * Computed as im2col + sgemm in column blocks; a 1x1 kernel with stride 1 and no padding skips im2col.
 * The workspace holds one im2col block: ask frcnn_conv2d_workspace_bytes for its size. */
typedef struct frcnn_conv2d_params {
    int stride_h, stride_w;
    int pad_h, pad_w;
} frcnn_conv2d_params;

/* stride 1, padding 0. */
FRCNN_API frcnn_conv2d_params frcnn_conv2d_params_default(void);

/* The output shape (n, m, oh, ow) for input dims x_dims[4] and weight dims w_dims[4]. */
FRCNN_API frcnn_status frcnn_conv2d_output_shape(frcnn_ctx *ctx, const frcnn_conv2d_params *p,
                                                 const int64_t x_dims[4], const int64_t w_dims[4],
                                                 int64_t y_dims[4]);
/* Workspace bytes needed by forward and backward for these shapes (the same for both; 0 for the 1x1 case). */
FRCNN_API frcnn_status frcnn_conv2d_workspace_bytes(frcnn_ctx *ctx, const frcnn_conv2d_params *p,
                                                    const int64_t x_dims[4], const int64_t w_dims[4],
                                                    size_t *bytes);
/* y = conv(x, w) + b. Overwrites y. */
FRCNN_API frcnn_status frcnn_conv2d_forward(frcnn_ctx *ctx, const frcnn_conv2d_params *p, const frcnn_tensor *x,
                                            const frcnn_tensor *w, const frcnn_tensor *b, frcnn_tensor *y,
                                            void *workspace, size_t workspace_bytes);
/* Accumulates dx (n,c,h,w), dw (m,c,kh,kw), db (m) from dy (n,m,oh,ow); each of dx, dw, db may be NULL. */
FRCNN_API frcnn_status frcnn_conv2d_backward(frcnn_ctx *ctx, const frcnn_conv2d_params *p, const frcnn_tensor *x,
                                             const frcnn_tensor *w, const frcnn_tensor *dy, frcnn_tensor *dx,
                                             frcnn_tensor *dw, frcnn_tensor *db, void *workspace,
                                             size_t workspace_bytes);

/* ReLU. y = max(x, 0), any shape; y may be x (in place). Backward uses the output y:
 * dx += dy where y > 0. */
FRCNN_API frcnn_status frcnn_relu_forward(frcnn_ctx *ctx, const frcnn_tensor *x, frcnn_tensor *y);
FRCNN_API frcnn_status frcnn_relu_backward(frcnn_ctx *ctx, const frcnn_tensor *y, const frcnn_tensor *dy,
                                           frcnn_tensor *dx);

/* Max pooling over (n, c, h, w). Windows are clipped to the input (padding never wins the max).
 *   floor mode: oh = (h + 2 pad_h - kernel_h) / stride_h + 1
 *   ceil mode (Caffe, used by py-faster-rcnn's VGG16): oh = ceil((h + 2 pad_h - kernel_h) / stride_h) + 1, minus
 *   one if the last window would start inside the bottom padding; the same for the width.
 * argmax (n*c*oh*ow int32, may be NULL) receives the flat index within the (h, w) plane of each maximum; ties go
 * to the first in row-major order. Backward needs argmax. */
typedef struct frcnn_maxpool_params {
    int kernel_h, kernel_w;
    int stride_h, stride_w;
    int pad_h, pad_w;
    bool ceil_mode;
} frcnn_maxpool_params;

/* 2x2 window, stride 2, no padding, floor mode (VGG16). */
FRCNN_API frcnn_maxpool_params frcnn_maxpool_params_default(void);
FRCNN_API frcnn_status frcnn_maxpool_output_shape(frcnn_ctx *ctx, const frcnn_maxpool_params *p,
                                                  const int64_t x_dims[4], int64_t y_dims[4]);
FRCNN_API frcnn_status frcnn_maxpool_forward(frcnn_ctx *ctx, const frcnn_maxpool_params *p, const frcnn_tensor *x,
                                             frcnn_tensor *y, int32_t *argmax);
/* dx (n,c,h,w) += dy scattered through argmax. */
FRCNN_API frcnn_status frcnn_maxpool_backward(frcnn_ctx *ctx, const frcnn_maxpool_params *p,
                                              const frcnn_tensor *dy, const int32_t *argmax, frcnn_tensor *dx);

/* Fully connected. x (n, in) or any tensor whose first dimension is n and whose other dimensions multiply to
 * in (so a (n, c, h, w) feature map is used flattened); w (out, in); b (out) or NULL; y (n, out).
 * y = x w^T + b. Backward accumulates dx (shape of x), dw, db; each may be NULL. */
FRCNN_API frcnn_status frcnn_linear_forward(frcnn_ctx *ctx, const frcnn_tensor *x, const frcnn_tensor *w,
                                            const frcnn_tensor *b, frcnn_tensor *y);
FRCNN_API frcnn_status frcnn_linear_backward(frcnn_ctx *ctx, const frcnn_tensor *x, const frcnn_tensor *w,
                                             const frcnn_tensor *dy, frcnn_tensor *dx, frcnn_tensor *dw,
                                             frcnn_tensor *db);

/* Inverted dropout. In training, each element is kept with probability 1 - p and scaled by 1 / (1 - p);
 * mask (same shape as x) receives that factor (0 or 1 / (1 - p)) per element, drawn from rng in element order.
 * Outside training, or with p == 0, y = x and mask is filled with 1 (rng untouched). p must be in [0, 1).
 * y may be x. Backward: dx += dy * mask. */
FRCNN_API frcnn_status frcnn_dropout_forward(frcnn_ctx *ctx, frcnn_rng *rng, float p, bool training,
                                             const frcnn_tensor *x, frcnn_tensor *y, frcnn_tensor *mask);
FRCNN_API frcnn_status frcnn_dropout_backward(frcnn_ctx *ctx, const frcnn_tensor *mask, const frcnn_tensor *dy,
                                              frcnn_tensor *dx);

/* RoI max pooling with the quantisation of caffe-fast-rcnn's roi_pooling_layer (and torchvision.ops.roi_pool):
 * each RoI's corners are round(coord * spatial_scale), its size max(end - start + 1, 1), bin edges
 * floor(i * size / pooled) and ceil((i + 1) * size / pooled) offset by the start and clipped to the map; an empty
 * bin gives 0 and argmax -1.
 *   x (n, c, h, w)   rois (r, 5): (batch index, x1, y1, x2, y2) in input-image pixels   y (r, c, ph, pw)
 *   argmax (r*c*ph*pw int32, may be NULL in inference): flat index within the (h, w) plane, or -1.
 * A batch index outside [0, n) or a non-finite coordinate is an error. */
typedef struct frcnn_roi_pool_params {
    int pooled_h, pooled_w;
    float spatial_scale;
} frcnn_roi_pool_params;

/* 7x7 bins, spatial scale 1/16 (the paper). */
FRCNN_API frcnn_roi_pool_params frcnn_roi_pool_params_default(void);
FRCNN_API frcnn_status frcnn_roi_pool_forward(frcnn_ctx *ctx, const frcnn_roi_pool_params *p, const frcnn_tensor *x,
                                              const frcnn_tensor *rois, frcnn_tensor *y, int32_t *argmax);
/* dx (n, c, h, w) += dy (r, c, ph, pw) scattered through argmax; needs the rois for the batch index. */
FRCNN_API frcnn_status frcnn_roi_pool_backward(frcnn_ctx *ctx, const frcnn_roi_pool_params *p,
                                               const frcnn_tensor *rois, const frcnn_tensor *dy,
                                               const int32_t *argmax, frcnn_tensor *dx);

/* Softmax cross-entropy over the last dimension. logits (n, k); labels[n] in [0, k) or equal to ignore_label;
 * prob (n, k) receives the softmax (needed by backward). *loss = mean over non-ignored rows of -log p[label]
 * (0 when every row is ignored). A label outside [0, k) other than ignore_label is FRCNN_ERR_INVALID_ARG.
 * Backward: dlogits += dloss * (prob - onehot(label)) / count for non-ignored rows. */
FRCNN_API frcnn_status frcnn_softmax_xent_forward(frcnn_ctx *ctx, const frcnn_tensor *logits, const int32_t *labels,
                                                  int32_t ignore_label, frcnn_tensor *prob, float *loss);
FRCNN_API frcnn_status frcnn_softmax_xent_backward(frcnn_ctx *ctx, const frcnn_tensor *prob, const int32_t *labels,
                                                   int32_t ignore_label, float dloss, frcnn_tensor *dlogits);

/* Smooth-L1 as in py-faster-rcnn's SmoothL1Loss layer:
 *   d = inside * (pred - target);  f(d) = 0.5 (sigma d)^2 if |d| < 1 / sigma^2, else |d| - 0.5 / sigma^2
 *   *loss = sum(outside * f(d)) / normalizer
 * pred, target, inside, outside all have one shape; inside and outside may be NULL (all ones). py-faster-rcnn
 * uses sigma 3 with normalizer 1 and outside = 1/256 for the RPN, sigma 1 with normalizer 128 for the head.
 * Backward: dpred += dloss * outside * inside * f'(d) / normalizer. */
typedef struct frcnn_smooth_l1_params {
    float sigma;
    float normalizer;
} frcnn_smooth_l1_params;

/* sigma 1, normalizer 1. */
FRCNN_API frcnn_smooth_l1_params frcnn_smooth_l1_params_default(void);
FRCNN_API frcnn_status frcnn_smooth_l1_forward(frcnn_ctx *ctx, const frcnn_smooth_l1_params *p,
                                               const frcnn_tensor *pred, const frcnn_tensor *target,
                                               const frcnn_tensor *inside, const frcnn_tensor *outside, float *loss);
FRCNN_API frcnn_status frcnn_smooth_l1_backward(frcnn_ctx *ctx, const frcnn_smooth_l1_params *p,
                                                const frcnn_tensor *pred, const frcnn_tensor *target,
                                                const frcnn_tensor *inside, const frcnn_tensor *outside, float dloss,
                                                frcnn_tensor *dpred);

#ifdef __cplusplus
}
#endif

#endif /* FRCNN_H */
