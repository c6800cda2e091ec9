/* Helpers shared by the cmocka test binaries: float-array comparison with a useful report (Debian's cmocka 1.1.5
 * has no assert_float_equal), seeded random fills, a central-difference gradient check, and a checking allocator
 * for leak and out-of-memory tests. */
#ifndef FRCNN_TESTUTIL_H
#define FRCNN_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "frcnn.h"

/* Fails the test (printing the first bad index, both values and the max error) unless, for every i,
 * |a[i] - b[i]| <= atol + rtol * |b[i]|. `what` names the arrays in the report. */
void tu_assert_close(const char *what, const float *a, const float *b, size_t n, double atol, double rtol);
/* Fails unless the two arrays are bit-identical. */
void tu_assert_identical(const char *what, const float *a, const float *b, size_t n);

/* Fails unless got == want and the context holds a non-empty message (containing `needle` when not NULL);
 * then clears the message. The message is printed when the status is wrong. */
void tu_expect_error_msg(frcnn_ctx *ctx, frcnn_status got, frcnn_status want, const char *needle);
void tu_expect_error(frcnn_ctx *ctx, frcnn_status got, frcnn_status want);

/* Fills with uniform values in [lo, hi) from a seeded frcnn_rng. */
void tu_fill_uniform(float *a, size_t n, uint64_t seed, float lo, float hi);

/* A zero-filled tensor, failing the test on error. Free with frcnn_tensor_free. */
frcnn_tensor *tu_tensor(frcnn_ctx *ctx, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3);
/* A (r, 5) RoI tensor holding rows (batch index, x1, y1, x2, y2), failing the test on error. */
frcnn_tensor *tu_rois(frcnn_ctx *ctx, const float *rows, int r);
/* A context with default parameters, failing the test on error. */
frcnn_ctx *tu_ctx(void);

/* Central-difference gradient check of a scalar function of one float array.
 *   loss(state) evaluates the function in double with the current contents of `param`.
 *   analytic[i] is the claimed derivative with respect to param[i].
 * Each param[i] is moved by +-eps (restored afterwards); the check passes when
 * |numeric - analytic| <= atol + rtol * max(|numeric|, |analytic|) for every i. `what` names the array. */
typedef double (*tu_loss_fn)(void *state);
void tu_gradcheck(const char *what, tu_loss_fn loss, void *state, float *param, const float *analytic, size_t n,
                  float eps, double atol, double rtol);

/* A detector configuration small enough for tests: the small backbone at h x w with anchors of 32..128 px,
 * num_classes 4, the given RPN and fc widths, dropout 0.5, 64 RoIs, proposals 1000/200 (train) and 500/100 (test). */
frcnn_config tu_tiny_config(int h, int w, int rpn_channels, int fc_channels);

/* A fresh directory /tmp/frcnn-<what>-XXXXXX written into dir (cap >= 64), and its recursive removal (files and
 * subdirectories, no symbolic links followed). Both return 0 on success, for use as cmocka group setup/teardown. */
int tu_make_tmpdir(char *dir, size_t cap, const char *what);
int tu_remove_tree(const char *dir);

/* sum_i y[i] * r[i] in double: turns an output into a scalar loss whose gradient with respect to y is r. */
double tu_dot(const float *y, const float *r, size_t n);

/* An allocator for out-of-memory and leak tests (frcnn_ctx_params.allocator):
 *   - counts alloc calls (failed ones included) and fails the one numbered fail_at (1-based; 0: never);
 *   - fills every new block with 0xA5, so that reading memory never written shows (zero-filling is really tested);
 *   - records every live block (pointer, size, call number) and the live bytes;
 *   - fails the test at once (print_error + fail) on a free of an unknown pointer, a free with a size other than
 *     the one allocated, an alignment that is not a power of two in
 *     [TU_ALLOC_MIN_ALIGN, 4096], or more than TU_ALLOC_MAX_LIVE blocks live at a time.
 * The state must stay where it is while a context uses it. Tests read its fields and may reset max_request; the
 * rest belongs to the functions below. */
#define TU_ALLOC_MAX_LIVE 4096
#define TU_ALLOC_MIN_ALIGN 64 /* the library's FRCNN__ALIGN: every request asks for it */

typedef struct tu_alloc_block {
    void *ptr;
    size_t size;
    size_t call; /* the alloc call that returned it, counting from 1 at tu_alloc_init */
} tu_alloc_block;

typedef struct tu_alloc_state {
    size_t calls;       /* alloc calls, failed ones included */
    size_t fail_at;     /* the call to fail (1-based, counted like calls); 0: never */
    size_t failed;      /* calls failed on purpose */
    size_t frees;       /* free calls */
    size_t max_request; /* largest size asked for (failed calls included); tests may reset it to 0 */
    size_t live_blocks, live_bytes;
    size_t peak_blocks; /* most blocks live at once */
    tu_alloc_block live[TU_ALLOC_MAX_LIVE]; /* live[0 .. live_blocks), in no particular order */
} tu_alloc_state;

/* Nothing live, no call made yet; fails the fail_at-th call (0: never). */
void tu_alloc_init(tu_alloc_state *s, size_t fail_at);
/* Fails the k-th alloc call from now (1: the next one); 0: never. */
void tu_alloc_fail_next(tu_alloc_state *s, size_t k);
/* The allocator to put in frcnn_ctx_params; its user pointer is s. */
frcnn_allocator tu_allocator(tu_alloc_state *s);
/* A context on this allocator: *params (NULL: the defaults) with the allocator replaced. Fails the test on error. */
frcnn_ctx *tu_alloc_ctx(tu_alloc_state *s, const frcnn_ctx_params *params);

/* What is live at one moment, to check later that exactly that is live again. */
typedef struct tu_alloc_mark {
    size_t calls, live_blocks, live_bytes;
} tu_alloc_mark;
tu_alloc_mark tu_alloc_mark_now(const tu_alloc_state *s);
/* Fails (listing the leaked blocks: size and call number) unless exactly the blocks live at m are live. */
void tu_alloc_assert_since(const tu_alloc_state *s, tu_alloc_mark m);
/* Fails unless nothing is live. */
void tu_alloc_assert_clean(const tu_alloc_state *s);


/* ----- Golden fixtures ---------------------------------------------------------------------------------------
 * Reference data committed under tests/fixtures/ as files of the checkpoint container (docs/checkpoint-format.md),
 * written by generators in tools/ (tests/fixtures/torch/ by tools/torch_reference/make_fixtures.py). Names are
 * relative to tests/fixtures/ in the source tree: tests run from the repository root. Every helper fails the test
 * with a message naming the file and the tensor or key when it is missing or of the wrong type or shape. */
typedef struct tu_fixture {
    frcnn_ctx *ctx;
    struct frcnn__ckpt_reader *reader;
    char path[256];
} tu_fixture;

#define TU_FIXTURE_MAX_DIMS 8

/* Opens tests/fixtures/<name>, e.g. "torch/conv2d.ckpt", validating the whole container. */
void tu_fixture_open(tu_fixture *f, frcnn_ctx *ctx, const char *name);
void tu_fixture_close(tu_fixture *f);
/* Whether the file holds a tensor of that name. */
bool tu_fixture_has(tu_fixture *f, const char *tensor);
/* The stored shape: returns ndim (0 to 8) and fills dims[0 .. ndim). */
int tu_fixture_shape(tu_fixture *f, const char *tensor, int64_t dims[TU_FIXTURE_MAX_DIMS]);
/* A float32 tensor as a new frcnn_tensor (1 to 4 dimensions; free with frcnn_tensor_free). Fails unless it has
 * ndim dimensions and, when dims is not NULL, size dims[i] along every axis i where dims[i] >= 0 (-1: any). */
frcnn_tensor *tu_fixture_tensor(tu_fixture *f, const char *tensor, int ndim, const int64_t *dims);
/* A tensor of the named dtype as a malloc'd array (free with free()), ndim 0 to 8, with the same shape check;
 * its element count goes to *numel unless numel is NULL. */
float *tu_fixture_f32(tu_fixture *f, const char *tensor, int ndim, const int64_t *dims, size_t *numel);
int32_t *tu_fixture_i32(tu_fixture *f, const char *tensor, int ndim, const int64_t *dims, size_t *numel);
int64_t *tu_fixture_i64(tu_fixture *f, const char *tensor, int ndim, const int64_t *dims, size_t *numel);
double *tu_fixture_f64(tu_fixture *f, const char *tensor, int ndim, const int64_t *dims, size_t *numel);
/* META values. An integer may be stored as u64 or i64 (tools/frcnn_format.py writes non-negative ints as u64); a
 * real as f64, or as an integer, which is converted. tu_fixture_str copies a string into buf (cap bytes). */
int64_t tu_fixture_int(tu_fixture *f, const char *key);
double tu_fixture_real(tu_fixture *f, const char *key);
void tu_fixture_str(tu_fixture *f, const char *key, char *buf, size_t cap);

#endif /* FRCNN_TESTUTIL_H */
