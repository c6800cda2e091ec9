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

/* Threads used by the kernels, the matrix products included: the context keeps n - 1 worker threads, started here
 * and stopped by frcnn_ctx_free. Results do not depend on n. The products run as single-threaded OpenBLAS calls
 * on these threads, so this (and frcnn_ctx_create) sets OpenBLAS's process-wide thread count to 1.
 * n <= 0 means one per online core. A child process forked from a program using the context runs its loops on
 * the calling thread. */
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
 * Computed as im2col + sgemm in column blocks; a 1x1 kernel with stride 1 and no padding skips im2col, and with
 * vertical stride 1 only one kernel row's patches are gathered (docs/design.md, "Row folding"). The workspace holds
 * one block of patches and, on that path, the weights and their gradient repacked by kernel row: ask
 * frcnn_conv2d_workspace_bytes for its size. */
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
/* Workspace bytes needed by forward and backward for these shapes (the same for both; 0 for the 1x1 case). Never
 * smaller for a larger input: a workspace sized for a layer's largest input serves every smaller one. */
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

/* ReLU. y = max(x, 0), any shape; y may be x (in place). Backward uses the output y: dx += dy where y > 0.
 * dx may be dy: then the gradient is gated in place (dy = 0 where y <= 0) rather than added to itself. */
FRCNN_API frcnn_status frcnn_relu_forward(frcnn_ctx *ctx, const frcnn_tensor *x, frcnn_tensor *y);
FRCNN_API frcnn_status frcnn_relu_backward(frcnn_ctx *ctx, const frcnn_tensor *y, const frcnn_tensor *dy,
                                           frcnn_tensor *dx);

/* Group normalization (Wu & He 2018). x (n, c, h, w); gamma, beta (c); y (n, c, h, w), overwritten, and must not
 * overlap x (backward needs x); mean, rstd (n, groups), overwritten with each (sample, group)'s statistics over its
 * c / groups channels and all pixels, saved for backward; none may be NULL.
 *   y = gamma[c] (x - mean[n, g]) rstd[n, g] + beta[c],   rstd = 1 / sqrt(var + eps)
 * var is biased (divided by the count, as torch.nn.GroupNorm). Statistics are summed in double in a fixed order:
 * results do not depend on the thread count. groups = c gives instance norm, groups = 1 layer norm. */
typedef struct frcnn_groupnorm_params {
    int groups; /* at least 1, dividing c (32 in the paper) */
    float eps;  /* added to the variance: finite, > 0 */
} frcnn_groupnorm_params;

/* 32 groups, eps 1e-5 (the paper). */
FRCNN_API frcnn_groupnorm_params frcnn_groupnorm_params_default(void);
FRCNN_API frcnn_status frcnn_groupnorm_forward(frcnn_ctx *ctx, const frcnn_groupnorm_params *p, const frcnn_tensor *x,
                                               const frcnn_tensor *gamma, const frcnn_tensor *beta, frcnn_tensor *y,
                                               frcnn_tensor *mean, frcnn_tensor *rstd);
/* x, gamma, and the mean and rstd forward saved; dy (n, c, h, w). Accumulates dx (n, c, h, w), dgamma and
 * dbeta (c); each may be NULL when not needed. dx must not overlap x or dy. */
FRCNN_API frcnn_status frcnn_groupnorm_backward(frcnn_ctx *ctx, const frcnn_groupnorm_params *p, const frcnn_tensor *x,
                                                const frcnn_tensor *gamma, const frcnn_tensor *mean,
                                                const frcnn_tensor *rstd, const frcnn_tensor *dy, frcnn_tensor *dx,
                                                frcnn_tensor *dgamma, frcnn_tensor *dbeta);

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

/* RoI align (Mask R-CNN) as torchvision.ops.roi_align: each bin the mean of grid_h x grid_w bilinear samples.
 *   x (n, c, h, w)   rois (r, 5): (batch index, x1, y1, x2, y2) in input-image pixels   y (r, c, ph, pw)
 * Coordinates are continuous (x2 is the right edge); with aligned, pixel centres sit at +0.5 as in torchvision's
 * aligned=True. A batch index outside [0, n), a coordinate that is not finite or beyond 2^24 once scaled, or (with
 * adaptive sampling) a RoI needing more than 256 samples a bin side is an error. The forward pass gives
 * torchvision's float results bit for bit. The workspace holds one image's map, channels last: ask
 * frcnn_roi_align_workspace_bytes for its size. */
typedef struct frcnn_roi_align_params {
    int pooled_h, pooled_w;
    float spatial_scale;
    int sampling_ratio; /* samples per bin side, at most 64; <= 0: ceil(RoI size / pooled), torchvision's -1 */
    bool aligned;
} frcnn_roi_align_params;

/* 7x7 bins, spatial scale 1/16, sampling ratio 2, aligned (torchvision's Faster R-CNN box head, Detectron2). */
FRCNN_API frcnn_roi_align_params frcnn_roi_align_params_default(void);
/* Workspace bytes for forward and backward on a map of dims x_dims[4] (never smaller for a larger map). */
FRCNN_API frcnn_status frcnn_roi_align_workspace_bytes(frcnn_ctx *ctx, const int64_t x_dims[4], size_t *bytes);
/* y = RoI align of x. Overwrites y. */
FRCNN_API frcnn_status frcnn_roi_align_forward(frcnn_ctx *ctx, const frcnn_roi_align_params *p, const frcnn_tensor *x,
                                               const frcnn_tensor *rois, frcnn_tensor *y, void *ws, size_t ws_bytes);
/* dx (n, c, h, w) += the gradient of y: each image's contributions are summed (RoIs in order) and then added.
 * dx NULL checks the parameters, dy and the rois' shape and writes nothing. */
FRCNN_API frcnn_status frcnn_roi_align_backward(frcnn_ctx *ctx, const frcnn_roi_align_params *p,
                                                const frcnn_tensor *rois, const frcnn_tensor *dy, frcnn_tensor *dx,
                                                void *ws, size_t ws_bytes);

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

/* ---------------------------------------------------------------------------------------------------------------
 * Boxes. A box is 4 floats (x1, y1, x2, y2) in pixels. Two conventions exist, and every box function has a _conv
 * form that takes one; the plain forms use FRCNN_BOXES_INCLUSIVE. Arrays of boxes are (n, 4) row-major. Functions
 * that need scratch memory take an arena and give back everything they took from it before returning.
 * ------------------------------------------------------------------------------------------------------------- */

/* Append-only values. */
typedef enum frcnn_box_convention {
    /* py-faster-rcnn, Caffe, Detectron and VOC: corners are pixel indices, a box covers x1..x2 inclusive, its width
     * is x2 - x1 + 1; images clip to [0, width - 1]; anchors are centred on (base_size - 1) / 2 + shift. */
    FRCNN_BOXES_INCLUSIVE = 0,
    /* torchvision and Detectron2: corners are continuous coordinates, the width is x2 - x1; images clip to
     * [0, width]; anchors are torchvision's AnchorGenerator's, centred on the shift. */
    FRCNN_BOXES_CONTINUOUS = 1
} frcnn_box_convention;

/* "inclusive", "continuous"; NULL for an unknown value. */
FRCNN_API const char *frcnn_box_convention_name(frcnn_box_convention conv);

/* iou (na, nb) = intersection over union of every pair: area = (x2 - x1 + o) (y2 - y1 + o), intersection width
 * min(x2) - max(x1) + o likewise, o = 1 inclusive (py-faster-rcnn's bbox_overlaps) or 0 continuous
 * (torchvision's box_iou); no overlap when the intersection's width or height is <= 0. Degenerate boxes
 * (x2 < x1 - o) have IoU 0 with everything. An unknown convention is FRCNN_ERR_INVALID_ARG. */
FRCNN_API frcnn_status frcnn_box_iou_conv(frcnn_ctx *ctx, frcnn_box_convention conv, const float *a, size_t na,
                                          const float *b, size_t nb, float *iou);
FRCNN_API frcnn_status frcnn_box_iou(frcnn_ctx *ctx, const float *a, size_t na, const float *b, size_t nb,
                                     float *iou);

/* Regression targets of py-faster-rcnn's bbox_transform (torchvision's BoxCoder.encode with weights 1 / stds):
 * for each box and its target,
 *   dx = (tcx - cx) / w, dy = (tcy - cy) / h, dw = log(tw / w), dh = log(th / h)   (w = x2 - x1 + o, cx = x1 + w/2)
 * then (d - means) / stds. deltas (n, 4). Boxes with w or h <= 0 are FRCNN_ERR_INVALID_ARG. NULL means/stds
 * mean 0 and 1. */
FRCNN_API frcnn_status frcnn_box_encode_conv(frcnn_ctx *ctx, frcnn_box_convention conv, const float *boxes,
                                             const float *targets, size_t n, const float means[4],
                                             const float stds[4], float *deltas);
FRCNN_API frcnn_status frcnn_box_encode(frcnn_ctx *ctx, const float *boxes, const float *targets, size_t n,
                                        const float means[4], const float stds[4], float *deltas);
/* The exact inverse: d = deltas * stds + means; dw and dh are clamped at log(1000 / 16) so exp cannot overflow;
 * out = (cx' - w'/2, cy' - h'/2, cx' + w'/2 - o, cy' + h'/2 - o), so decode(encode(b)) == b. (py-faster-rcnn's
 * bbox_transform_inv omits the -1 and returns boxes one pixel larger; Detectron corrected it.) NULL means/stds
 * mean 0 and 1. out may equal deltas. An unknown convention decodes as inclusive. */
FRCNN_API void frcnn_box_decode_conv(frcnn_box_convention conv, const float *boxes, const float *deltas, size_t n,
                                     const float means[4], const float stds[4], float *out);
FRCNN_API void frcnn_box_decode(const float *boxes, const float *deltas, size_t n, const float means[4],
                                const float stds[4], float *out);
/* Clips every box to [0, width - o] x [0, height - o]. An unknown convention clips as inclusive. */
FRCNN_API void frcnn_box_clip_conv(frcnn_box_convention conv, float *boxes, size_t n, float height, float width);
FRCNN_API void frcnn_box_clip(float *boxes, size_t n, float height, float width);

/* Greedy non-maximum suppression: boxes in descending score order (equal scores: lower index first); a box is
 * dropped when its IoU (frcnn_box_iou_conv) with an already kept box is > iou_threshold. keep (capacity n)
 * receives the indices of the kept boxes in that order, at most max_keep of them (0 = no limit); *n_keep their
 * count. NaN scores are an error. Scratch: frcnn_nms_scratch_bytes(n) from the arena. With
 * FRCNN_BOXES_CONTINUOUS the kept set is torchvision.ops.nms's. */
FRCNN_API frcnn_status frcnn_nms_conv(frcnn_ctx *ctx, frcnn_arena *scratch, frcnn_box_convention conv,
                                      const float *boxes, const float *scores, size_t n, float iou_threshold,
                                      size_t max_keep, uint32_t *keep, size_t *n_keep);
FRCNN_API frcnn_status frcnn_nms(frcnn_ctx *ctx, frcnn_arena *scratch, const float *boxes, const float *scores,
                                 size_t n, float iou_threshold, size_t max_keep, uint32_t *keep, size_t *n_keep);
FRCNN_API size_t frcnn_nms_scratch_bytes(size_t n);

/* ---------------------------------------------------------------------------------------------------------------
 * Anchors (py-faster-rcnn generate_anchors.py): a base_size square at the origin, reshaped to each ratio (h/w)
 * keeping its area, w = rint(sqrt(area / ratio)), h = rint(w * ratio), then scaled; order: ratio-major, then
 * scale. The defaults (16, ratios 0.5 1 2, scales 8 16 32) give the nine classic anchors.
 * ------------------------------------------------------------------------------------------------------------- */

#define FRCNN_MAX_ANCHOR_SHAPES 8

typedef struct frcnn_anchor_params {
    float base_size;
    int n_ratios;
    float ratios[FRCNN_MAX_ANCHOR_SHAPES];
    int n_scales;
    float scales[FRCNN_MAX_ANCHOR_SHAPES];
} frcnn_anchor_params;

FRCNN_API frcnn_anchor_params frcnn_anchor_params_default(void);
/* out (n_ratios * n_scales, 4). FRCNN_BOXES_CONTINUOUS gives torchvision's AnchorGenerator cell anchors instead:
 * for size = base_size * scale, w = size / sqrt(ratio), h = size * sqrt(ratio) (float), the box
 * round((-w, -h, w, h) / 2) rounded half to even, centred on 0; same order. */
FRCNN_API frcnn_status frcnn_anchors_base_conv(frcnn_ctx *ctx, frcnn_box_convention conv,
                                               const frcnn_anchor_params *p, float *out);
FRCNN_API frcnn_status frcnn_anchors_base(frcnn_ctx *ctx, const frcnn_anchor_params *p, float *out);
/* The base anchors shifted over a feat_h x feat_w map with the given stride. out (feat_h * feat_w * a, 4) in the
 * order (y, x, anchor), the order of the RPN's outputs. */
FRCNN_API frcnn_status frcnn_anchors_grid(frcnn_ctx *ctx, const float *base, size_t a, int feat_h, int feat_w,
                                          int stride, float *out);

/* ---------------------------------------------------------------------------------------------------------------
 * Target assignment and proposals (py-faster-rcnn rpn/anchor_target_layer.py, proposal_layer.py,
 * proposal_target_layer.py). Ground truth: gt (g, 4) boxes in input-image pixels and gt_labels[g] in
 * [1, num_classes). g may be 0.
 * ------------------------------------------------------------------------------------------------------------- */

typedef struct frcnn_anchor_target_params {
    float positive_iou;     /* >= this: foreground (0.7) */
    float negative_iou;     /* < this: background (0.3) */
    int batch_size;         /* anchors sampled per image (256) */
    float fg_fraction;      /* at most this share of the batch positive (0.5) */
    int allowed_border;     /* anchors reaching further outside the image are ignored (0); < 0 keeps all */
    frcnn_box_convention box_convention; /* of IoU and encoding (inclusive); the model sets it from its config */
} frcnn_anchor_target_params;

FRCNN_API frcnn_anchor_target_params frcnn_anchor_target_params_default(void);

/* Labels every anchor (n, 4): 1 foreground, 0 background, -1 ignored. Foreground: IoU >= positive_iou with some
 * GT, or the highest-IoU anchor(s) of a GT (ties included; a GT that overlaps no anchor gets none); background:
 * max IoU < negative_iou; then at most fg_fraction * batch_size foreground and batch_size minus that many
 * background are kept, chosen uniformly with rng, the rest set to -1. Writes labels[n], targets (n, 4)
 * (bbox_transform to the best GT, unnormalised; 0 for non-foreground), inside_w (n, 4) (1 for foreground),
 * outside_w (n, 4) (1 / number of labelled anchors for labelled ones). Scratch: n * (g + 8) * 4 bytes. */
FRCNN_API frcnn_status frcnn_anchor_targets(frcnn_ctx *ctx, frcnn_arena *scratch,
                                            const frcnn_anchor_target_params *p, frcnn_rng *rng,
                                            const float *anchors, size_t n, const float *gt, size_t g,
                                            float image_h, float image_w, int32_t *labels, float *targets,
                                            float *inside_w, float *outside_w);

typedef struct frcnn_proposal_params {
    int pre_nms_top_n;  /* 12000 train, 6000 test */
    int post_nms_top_n; /* 2000 train, 300 test */
    float nms_iou;      /* 0.7 */
    float min_size;     /* 16, in original-image pixels: multiplied by the image scale */
    frcnn_box_convention box_convention; /* of decoding, clipping, sizes and NMS (inclusive); the model sets it
                                            from its config */
} frcnn_proposal_params;

/* train: true for the training values above. */
FRCNN_API frcnn_proposal_params frcnn_proposal_params_default(bool train);

/* The proposal layer: decode deltas (n, 4) at anchors (n, 4), clip to the image, drop boxes narrower or lower
 * than min_size * image_scale, keep the pre_nms_top_n highest fg_scores[n], NMS, keep post_nms_top_n. With
 * FRCNN_BOXES_CONTINUOUS the order is torchvision's filter_proposals': the pre_nms_top_n highest scores first,
 * then decode, clip and the size filter. rois (capacity post_nms_top_n, 4) and roi_scores (same capacity, may
 * be NULL) receive them in descending score order; *n_rois their count. Scratch:
 * frcnn_proposal_scratch_bytes(n). */
FRCNN_API frcnn_status frcnn_proposals(frcnn_ctx *ctx, frcnn_arena *scratch, const frcnn_proposal_params *p,
                                       const float *anchors, const float *deltas, const float *fg_scores,
                                       size_t n, float image_h, float image_w, float image_scale, float *rois,
                                       float *roi_scores, size_t *n_rois);
FRCNN_API size_t frcnn_proposal_scratch_bytes(size_t n);

typedef struct frcnn_roi_target_params {
    int batch_size;      /* RoIs per image (128) */
    float fg_fraction;   /* at most round(fg_fraction * batch_size) foreground (0.25) */
    float fg_iou;        /* >= this: foreground (0.5) */
    float bg_iou_hi;     /* background: IoU in [bg_iou_lo, bg_iou_hi) (0.5) */
    float bg_iou_lo;     /* (0.0) */
    float means[4];      /* target normalisation: (0, 0, 0, 0) */
    float stds[4];       /* (0.1, 0.1, 0.2, 0.2) */
    frcnn_box_convention box_convention; /* of IoU and encoding (inclusive); the model sets it from its config */
} frcnn_roi_target_params;

FRCNN_API frcnn_roi_target_params frcnn_roi_target_params_default(void);

/* Samples the RoIs the head trains on: the proposals (np, 4) with the GT boxes appended, foreground chosen
 * uniformly with rng up to the quota, then background to fill the batch (fewer when not enough exist). Writes,
 * for the *n_out <= batch_size sampled RoIs, foreground first: out_rois (batch_size, 4), out_labels (class of
 * the best GT for foreground, 0 for background), targets (batch_size, 4 * num_classes) with the normalised
 * deltas in the columns of the RoI's class (0 elsewhere and for background), inside_w the same shape (1 where
 * targets are set). Scratch: (np + g) * (g + 4) * 4 bytes. */
FRCNN_API frcnn_status frcnn_roi_targets(frcnn_ctx *ctx, frcnn_arena *scratch, const frcnn_roi_target_params *p,
                                         frcnn_rng *rng, const float *proposals, size_t np, const float *gt,
                                         const int32_t *gt_labels, size_t g, int num_classes, float *out_rois,
                                         int32_t *out_labels, float *targets, float *inside_w, size_t *n_out);

/* ---------------------------------------------------------------------------------------------------------------
 * The detector: Faster R-CNN with approximate joint training (py-faster-rcnn end2end). See docs/model.md for the
 * data flow and every configuration field's source.
 * ------------------------------------------------------------------------------------------------------------- */

typedef enum frcnn_backbone {
    FRCNN_BACKBONE_VGG16 = 0, /* conv1_1 .. conv5_3, 4 max-pools, stride 16 */
    FRCNN_BACKBONE_SMALL = 1  /* 5 convs 32-64-128-256-256, 4 max-pools, stride 16 */
} frcnn_backbone;

/* A short constant name: "vgg16", "small". */
FRCNN_API const char *frcnn_backbone_name(frcnn_backbone backbone);

/* How the RoI head reads each RoI's features from the feature map. */
typedef enum frcnn_roi_op {
    FRCNN_ROI_POOL = 0,        /* max pooling over integer bins: the paper's (caffe-fast-rcnn's roi_pooling_layer) */
    FRCNN_ROI_ALIGN = 1,       /* RoI align, 2x2 bilinear samples a bin, pixel centres at +0.5 (Detectron2's) */
    FRCNN_ROI_ALIGN_LEGACY = 2 /* the same without the half-pixel offset: torchvision's MultiScaleRoIAlign */
} frcnn_roi_op;

/* "pool", "align", "align-legacy"; NULL for an unknown value. */
FRCNN_API const char *frcnn_roi_op_name(frcnn_roi_op op);

typedef struct frcnn_config {
    frcnn_backbone backbone;
    int num_classes;           /* including background at index 0 (21 for Pascal VOC) */
    int short_side, max_side;  /* input scale: shortest side, cap on the longest (600, 1000) */
    float pixel_means[3];      /* subtracted from B, G, R in 0..255 (102.9801, 115.9465, 122.7717) */
    float pixel_stds[3];       /* then divided by these (1, 1, 1: Caffe's VGG16 uses raw 0..255 scale) */
    int frozen_convs;          /* the first convolutions that are not trained (4: conv1_x, conv2_x) */
    int pool_floor;            /* 1: the backbone's 2x2 max-pools round their output size down, as torchvision's
                                  VGG16; 0: up, Caffe's ceil mode of the paper's VGG16 (0) */
    int norm_groups;           /* > 0: GroupNorm with this many groups after each backbone convolution (0: none,
                                  as the paper; small: see docs/model.md) */
    frcnn_anchor_params anchors;
    int feat_stride;           /* 16; must equal the backbone's */
    int rpn_channels;          /* the RPN's 3x3 conv (512) */
    frcnn_anchor_target_params rpn_targets;
    float rpn_sigma;           /* smooth-L1 sigma of the RPN (3) */
    frcnn_proposal_params train_proposals, test_proposals;
    frcnn_roi_target_params roi_targets;
    int max_gt_boxes;          /* GT boxes per image the model plans for (256) */
    int pooled_size;           /* RoI pooling bins per side (7) */
    frcnn_roi_op roi_op;       /* RoI pooling or RoI align (pool; small: see docs/model.md) */
    int fc_channels;           /* fc6 and fc7 width (4096) */
    float dropout;             /* after fc6 and fc7, training only (0.5) */
    float head_sigma;          /* smooth-L1 sigma of the head (1) */
    float score_threshold;     /* detections below are dropped (0.05) */
    float test_nms_iou;        /* per-class NMS at test time (0.3) */
    int max_detections;        /* per image over all classes (100) */
    frcnn_box_convention box_convention; /* of every box computation: anchors, IoU, box coding, clipping, sizes,
                                            NMS, proposal order (inclusive, the paper's; continuous reproduces
                                            torchvision, docs/torchvision.md) */
} frcnn_config;

/* The paper's VGG16 configuration (REFERENCE.md section 1) and the small CPU configuration (docs/model.md). */
FRCNN_API frcnn_config frcnn_config_vgg16(void);
FRCNN_API frcnn_config frcnn_config_small(void);
/* Checks every field; FRCNN_ERR_INVALID_ARG with a message naming the first bad one. */
FRCNN_API frcnn_status frcnn_config_validate(frcnn_ctx *ctx, const frcnn_config *config);

typedef struct frcnn_model frcnn_model;

/* Creates a model with weights initialised from `seed` (convs: He normal; RPN heads and class scores:
 * normal std 0.01; box regression: std 0.001; biases 0), and plans its activation memory for the largest input
 * the configuration allows (short_side x max_side either way round). Free with frcnn_model_free before ctx. */
FRCNN_API frcnn_status frcnn_model_create(frcnn_ctx *ctx, const frcnn_config *config, uint64_t seed,
                                          frcnn_model **out);
FRCNN_API void frcnn_model_free(frcnn_model *model);
/* The configuration the model was created with; lives as long as the model. */
FRCNN_API const frcnn_config *frcnn_model_config(const frcnn_model *model);
/* Bytes the model holds: parameters and gradients, and planned activations and scratch. */
FRCNN_API size_t frcnn_model_param_bytes(const frcnn_model *model);
FRCNN_API size_t frcnn_model_activation_bytes(const frcnn_model *model);

/* A parameter and its gradient, by stable name (torchvision's where one exists, e.g. "backbone.features.0.weight",
 * "rpn.head.conv.weight", "roi_heads.box_head.fc6.weight", "roi_heads.box_predictor.cls_score.bias"). The
 * pointers live as long as the model. */
typedef struct frcnn_param {
    const char *name;
    frcnn_tensor *value;
    frcnn_tensor *grad;
    bool is_bias;   /* the paper trains biases at 2x the learning rate and without weight decay */
    bool trainable; /* false for the frozen convolutions: their gradient stays zero */
} frcnn_param;

FRCNN_API size_t frcnn_model_param_count(const frcnn_model *model);
/* Fills *out for parameter i in [0, count); the order is fixed for a configuration. */
FRCNN_API frcnn_status frcnn_model_param(const frcnn_model *model, size_t i, frcnn_param *out);
FRCNN_API frcnn_status frcnn_model_find_param(const frcnn_model *model, const char *name, frcnn_param *out);
/* Zeroes every gradient. Training steps add into the gradients, so gradient accumulation over images is
 * calling frcnn_model_train_step several times between zero_grad and the optimizer. */
FRCNN_API void frcnn_model_zero_grad(frcnn_model *model);

/* An input image, already prepared: (1, 3, h, w) BGR, (pixel - pixel_means) / pixel_stds, resized by `scale` from
 * the original image. h and w must fit the model's plan (frcnn_model_create). */
typedef struct frcnn_input {
    const frcnn_tensor *image;
    float scale;
} frcnn_input;

typedef struct frcnn_losses {
    float rpn_cls, rpn_box, cls, box;
    float total;
    int rpn_fg, rpn_bg;  /* anchors sampled */
    int roi_fg, roi_bg;  /* RoIs sampled */
} frcnn_losses;

/* One training forward and backward pass on one image. gt (g, 4) boxes in the prepared image's pixels,
 * gt_labels[g] in [1, num_classes); g may be 0 (background only). Random choices (anchor and RoI sampling,
 * dropout) draw from rng in a fixed order. Gradients are ADDED into the model's gradients. A non-finite loss
 * returns FRCNN_ERR_NOT_FINITE before any gradient is touched. */
FRCNN_API frcnn_status frcnn_model_train_step(frcnn_model *model, const frcnn_input *input, const float *gt,
                                              const int32_t *gt_labels, size_t g, frcnn_rng *rng,
                                              frcnn_losses *losses);

typedef struct frcnn_detection {
    float x1, y1, x2, y2; /* in original-image pixels (the prepared image's divided by scale) */
    float score;
    int32_t label;        /* class in [1, num_classes) */
} frcnn_detection;

/* Detection on one image: proposals (test values), head, per-class decoding, score threshold, per-class NMS,
 * at most max_detections by score. dets (capacity) receives them in descending score order, *n their count. */
FRCNN_API frcnn_status frcnn_model_detect(frcnn_model *model, const frcnn_input *input, frcnn_detection *dets,
                                          size_t capacity, size_t *n);

/* Stage by stage: what frcnn_model_train_step and frcnn_model_detect do, for a trainer of your own (custom losses,
 * targets or sampling). Call frcnn_model_stage_begin, then the forward stages in order (backbone, then RPN and/or
 * head), then, in training, the backward stages in reverse order (head and/or RPN, then backbone). Out-of-order
 * calls return FRCNN_ERR_STATE. Returned tensors and pointers live in the model's step buffers: they are valid
 * until the next stage_begin, train_step or detect on the model, and must not be written. */

/* Starts a step on an input (validated as in frcnn_model_train_step). train: keep what backward needs, and make
 * the head apply dropout. */
FRCNN_API frcnn_status frcnn_model_stage_begin(frcnn_model *model, const frcnn_input *input, bool train);
/* feature (1, C, ceil(h/16), ceil(w/16)) (floor with config.pool_floor): the backbone's output. */
FRCNN_API frcnn_status frcnn_model_backbone_forward(frcnn_model *model, const frcnn_tensor **feature);

typedef struct frcnn_rpn_outputs {
    const frcnn_tensor *logits; /* (n, 2): background, foreground score per anchor, before softmax */
    const frcnn_tensor *deltas; /* (n, 4): box deltas per anchor (unnormalised) */
    const float *anchors;       /* (n, 4): the anchors, in the same (y, x, anchor) order */
    size_t n;
    int feat_h, feat_w;
} frcnn_rpn_outputs;

FRCNN_API frcnn_status frcnn_model_rpn_forward(frcnn_model *model, frcnn_rpn_outputs *out);

typedef struct frcnn_head_outputs {
    const frcnn_tensor *cls; /* (r, num_classes): class scores before softmax */
    const frcnn_tensor *box; /* (r, 4 num_classes): class-specific deltas, normalised by roi_targets.stds */
    size_t r;
} frcnn_head_outputs;

/* The RoI head on rois (r, 4) in input-image pixels; r may be up to roi_targets.batch_size in training and
 * test_proposals.post_nms_top_n otherwise. In training, dropout draws from rng (fc6 then fc7). */
FRCNN_API frcnn_status frcnn_model_head_forward(frcnn_model *model, const float *rois, size_t r, frcnn_rng *rng,
                                                frcnn_head_outputs *out);
/* Training only. Add the gradients of your losses with respect to the head's outputs (shapes as returned) into
 * the parameter gradients and the feature map's gradient. */
FRCNN_API frcnn_status frcnn_model_head_backward(frcnn_model *model, const frcnn_tensor *d_cls,
                                                 const frcnn_tensor *d_box);
/* Training only. The same for the RPN's outputs: d_logits (n, 2), d_deltas (n, 4). */
FRCNN_API frcnn_status frcnn_model_rpn_backward(frcnn_model *model, const frcnn_tensor *d_logits,
                                                const frcnn_tensor *d_deltas);
/* Training only, after the head and/or RPN backward: the backbone's gradients from the feature map's. */
FRCNN_API frcnn_status frcnn_model_backbone_backward(frcnn_model *model);

/* ---------------------------------------------------------------------------------------------------------------
 * Optimizers (lib/train/optim.c). An optimizer holds one state buffer set per trainable model parameter and
 * updates the parameters from their gradients. The paper's solver: SGD, momentum 0.9, weight decay 0.0005,
 * biases at 2x the learning rate and without decay, frozen layers untouched.
 * ------------------------------------------------------------------------------------------------------------- */

typedef enum frcnn_optim_kind {
    FRCNN_OPTIM_SGD = 0,  /* v = momentum v + lr (g + wd w);  w -= v   (Caffe's form, lr inside the history) */
    FRCNN_OPTIM_ADAM = 1, /* L2 decay added to the gradient, bias-corrected moments */
    FRCNN_OPTIM_ADAMW = 2 /* decoupled decay: w -= lr wd w, then the Adam step */
} frcnn_optim_kind;

FRCNN_API const char *frcnn_optim_kind_name(frcnn_optim_kind kind);

typedef struct frcnn_optim_params {
    frcnn_optim_kind kind;
    float momentum;        /* SGD (0.9) */
    float weight_decay;    /* (0.0005) */
    float bias_lr_mult;    /* learning-rate multiplier of biases (2) */
    float bias_decay_mult; /* weight-decay multiplier of biases (0) */
    float beta1, beta2, eps; /* Adam (0.9, 0.999, 1e-8) */
    float clip_norm;       /* > 0: scale the gradients (after the division by accumulate) so their global L2
                              norm is at most this; 0: off */
    int accumulate;        /* images whose gradients are summed per step (py-faster-rcnn iter_size); the sum is
                              divided by this before the update (1) */
} frcnn_optim_params;

/* The paper's SGD, and Adam with the same decay and bias settings. */
FRCNN_API frcnn_optim_params frcnn_optim_params_sgd(void);
FRCNN_API frcnn_optim_params frcnn_optim_params_adam(void);

typedef struct frcnn_optim frcnn_optim;

/* An optimizer for the model's trainable parameters, state zeroed. The model must outlive it. */
FRCNN_API frcnn_status frcnn_optim_create(frcnn_ctx *ctx, const frcnn_optim_params *params, frcnn_model *model,
                                          frcnn_optim **out);
FRCNN_API void frcnn_optim_free(frcnn_optim *optim);
FRCNN_API const frcnn_optim_params *frcnn_optim_get_params(const frcnn_optim *optim);

/* One update with learning rate lr (the schedule's value for this step). Checks every gradient first: a NaN or
 * infinity returns FRCNN_ERR_NOT_FINITE naming the parameter, and nothing changes. Then divides by accumulate,
 * clips, updates the parameters and the state, and counts the step. Does not zero the gradients. */
FRCNN_API frcnn_status frcnn_optim_step(frcnn_optim *optim, float lr);
/* Updates taken so far (Adam's bias correction uses it). */
FRCNN_API uint64_t frcnn_optim_steps(const frcnn_optim *optim);

/* The state, for checkpoints: buffers by name ("<param>.momentum", "<param>.adam_m", "<param>.adam_v"), and the
 * step count. Pointers live as long as the optimizer. */
FRCNN_API size_t frcnn_optim_state_count(const frcnn_optim *optim);
FRCNN_API frcnn_status frcnn_optim_state(const frcnn_optim *optim, size_t i, const char **name,
                                         frcnn_tensor **buffer);
FRCNN_API void frcnn_optim_set_steps(frcnn_optim *optim, uint64_t steps);

/* ---------------------------------------------------------------------------------------------------------------
 * Learning-rate schedules (lib/train/lr_schedule.c): the rate at an iteration is a pure function of the schedule
 * and the iteration, so a resumed run needs nothing but the iteration number.
 * ------------------------------------------------------------------------------------------------------------- */

typedef enum frcnn_lr_kind {
    FRCNN_LR_CONSTANT = 0,
    FRCNN_LR_STEP = 1,   /* base_lr * gamma^(number of milestones <= iter) */
    FRCNN_LR_COSINE = 2  /* min_lr + (base_lr - min_lr) (1 + cos(pi iter / total_iters)) / 2, min_lr after */
} frcnn_lr_kind;

#define FRCNN_MAX_LR_MILESTONES 8

typedef struct frcnn_lr_schedule {
    frcnn_lr_kind kind;
    float base_lr;
    float gamma;                                   /* STEP */
    int n_milestones;                              /* STEP: ascending iterations */
    int64_t milestones[FRCNN_MAX_LR_MILESTONES];
    int64_t total_iters;                           /* COSINE */
    float min_lr;                                  /* COSINE */
    int64_t warmup_iters;                          /* linear warm-up from warmup_factor * rate to rate; 0: none */
    float warmup_factor;
} frcnn_lr_schedule;

/* The paper's: 0.001, x0.1 at 50000 (70000 iterations in all), no warm-up. */
FRCNN_API frcnn_lr_schedule frcnn_lr_schedule_paper(void);
FRCNN_API frcnn_status frcnn_lr_schedule_validate(frcnn_ctx *ctx, const frcnn_lr_schedule *schedule);
/* The rate for iteration iter (0-based). The schedule must be valid. */
FRCNN_API float frcnn_lr_at(const frcnn_lr_schedule *schedule, int64_t iter);

/* ---------------------------------------------------------------------------------------------------------------
 * The sampler (lib/train/sampler.c): the order of training images, one per step. Epoch e's order is a pure
 * function of (seed, e), so its state is just (epoch, cursor) and it resumes anywhere, any number of times.
 * ------------------------------------------------------------------------------------------------------------- */

typedef struct frcnn_sampler_params {
    uint64_t seed;
    uint32_t n_images;
    bool flip;              /* the epoch holds every image twice, plain and horizontally flipped (the paper) */
    bool group_by_aspect;   /* consecutive pairs share orientation (landscape: w >= h), for accumulate = 2 */
    const float *aspect;    /* width / height per image; needed when group_by_aspect, copied at create */
} frcnn_sampler_params;

/* seed 0, n_images 0 (set it: 0 is refused), flip true (the paper), no aspect grouping. */
FRCNN_API frcnn_sampler_params frcnn_sampler_params_default(void);

typedef struct frcnn_sampler frcnn_sampler;

typedef struct frcnn_sample {
    uint32_t image;  /* index into the dataset */
    bool flip;
    uint64_t epoch;  /* of this sample */
    uint64_t index;  /* its position within the epoch */
} frcnn_sample;

typedef struct frcnn_sampler_state {
    uint64_t epoch;
    uint64_t cursor; /* samples of this epoch already handed out, in [0, epoch length) */
} frcnn_sampler_state;

FRCNN_API frcnn_status frcnn_sampler_create(frcnn_ctx *ctx, const frcnn_sampler_params *params,
                                            frcnn_sampler **out);
FRCNN_API void frcnn_sampler_free(frcnn_sampler *sampler);
/* Samples per epoch: n_images, or 2 n_images with flips. */
FRCNN_API uint64_t frcnn_sampler_epoch_length(const frcnn_sampler *sampler);
/* The next sample; moves to the next epoch (and computes its order) after the last of one. */
FRCNN_API frcnn_status frcnn_sampler_next(frcnn_sampler *sampler, frcnn_sample *out);
FRCNN_API frcnn_sampler_state frcnn_sampler_get_state(const frcnn_sampler *sampler);
/* Continues from a saved state: the next sample is the one the saved sampler would have given. A cursor outside
 * the epoch is FRCNN_ERR_INVALID_ARG. */
FRCNN_API frcnn_status frcnn_sampler_set_state(frcnn_sampler *sampler, frcnn_sampler_state state);

/* ---------------------------------------------------------------------------------------------------------------
 * Checkpoints (lib/train/ckpt.c; byte format in docs/checkpoint-format.md). A training checkpoint holds everything
 * a run needs to continue exactly: library version, model configuration, class names, parameters, optimizer kind,
 * hyper-parameters and state, schedule and iteration, sampler state, every RNG state, and a fingerprint of the
 * dataset. Saving is atomic: NAME.tmp in the directory, fsync, rename, fsync of the directory.
 * ------------------------------------------------------------------------------------------------------------- */

/* The pieces of a run. Pointers may be NULL for pieces the run does not have; load restores exactly the pieces
 * given, and refuses a file that lacks one of them. */
typedef struct frcnn_train_state {
    frcnn_model *model;               /* required */
    frcnn_optim *optim;
    frcnn_sampler *sampler;
    const frcnn_lr_schedule *schedule; /* saved; on load compared with the caller's, which wins only with force */
    uint64_t iteration;               /* optimizer steps completed */
    frcnn_rng *rngs;                  /* every random stream of the run, in a fixed order */
    size_t n_rngs;
    uint64_t dataset_fingerprint;     /* frcnn_fingerprint of the image list; 0: none */
    const char *const *class_names;   /* num_classes names (index 0: background) or NULL */
} frcnn_train_state;

/* A 64-bit fingerprint (FNV-1a) of bytes, chained through `seed` (0 to start). */
FRCNN_API uint64_t frcnn_fingerprint(const void *data, size_t len, uint64_t seed);

/* Saves the state as dir/name (name without '/'). Checks free space first (FRCNN_ERR_NO_SPACE); on any failure
 * nothing exists under the final name and earlier files are untouched. Streams tensors: memory use does not
 * grow with the model. */
FRCNN_API frcnn_status frcnn_ckpt_save(frcnn_ctx *ctx, const char *dir, const char *name,
                                       const frcnn_train_state *state);

/* Restores a training checkpoint into state's pieces so that the next step is the one the saved run would have
 * taken: parameters, optimizer state and step count, sampler state, RNG states, iteration. Strict: a different
 * configuration, a missing, extra or differently shaped tensor, a different optimizer kind or hyper-parameter,
 * sampler setup or RNG count is an error naming the field or tensor (FRCNN_ERR_MISMATCH); so is a different
 * dataset fingerprint or schedule unless force is true. All of that, and the file's structure and metadata
 * checksums, is checked before anything is written. Tensor data is checksummed as it is read (the file is read
 * once): a corrupt tensor (FRCNN_ERR_CHECKSUM) or an I/O error then leaves the pieces partly loaded, and they
 * must be loaded again (from an older checkpoint) before use. frcnn_ckpt_latest only returns files whose every
 * checksum verified. */
FRCNN_API frcnn_status frcnn_ckpt_load(frcnn_ctx *ctx, const char *path, frcnn_train_state *state, bool force);

/* The model configuration stored in a checkpoint, to create a model to load into. */
FRCNN_API frcnn_status frcnn_ckpt_read_config(frcnn_ctx *ctx, const char *path, frcnn_config *config);

typedef struct frcnn_weights_report {
    size_t loaded;      /* parameters copied */
    size_t missing;     /* model parameters not in the file (left as they were) */
    size_t unexpected;  /* file tensors the model does not have (ignored) */
    size_t mismatched;  /* same name, different shape (left as they were) */
    char first_problem[256]; /* the first missing / unexpected / mismatched name, or "" */
} frcnn_weights_report;

/* Weights only, to initialise a new run or for inference: copies every parameter whose name and shape match,
 * never touches counters, optimizer or sampler, and reports what did not match. Returns FRCNN_ERR_MISMATCH when
 * nothing at all matched, and, before copying anything, when the file's pixel normalisation (the pixel_means and
 * pixel_stds its weights were trained with) differs from the model's or is not recorded: create the model with
 * frcnn_ckpt_read_pixel_norm's values. (The box convention and pool rounding may differ: the weights still fit, at
 * a pixel's difference.) report (may be NULL) is zeroed first, then filled when the tensors were examined. */
FRCNN_API frcnn_status frcnn_ckpt_load_weights(frcnn_ctx *ctx, const char *path, frcnn_model *model,
                                               frcnn_weights_report *report);
/* The pixel normalisation a file's weights expect (frcnn_config.pixel_means and pixel_stds, B G R). A file that
 * does not record it: FRCNN_ERR_NOT_FOUND. */
FRCNN_API frcnn_status frcnn_ckpt_read_pixel_norm(frcnn_ctx *ctx, const char *path, float means[3], float stds[3]);

/* The class names stored in a checkpoint (frcnn_train_state.class_names): names[0 .. n) receive pointers into buf
 * (cap bytes, NUL-separated copies); n must be the configuration's num_classes. n * FRCNN_MAX_CLASS_NAME bytes always
 * suffice for files written from a VOC dataset. A file saved without class names: FRCNN_ERR_NOT_FOUND; buf too
 * small: FRCNN_ERR_INVALID_ARG. */
#define FRCNN_MAX_CLASS_NAME 128
FRCNN_API frcnn_status frcnn_ckpt_read_class_names(frcnn_ctx *ctx, const char *path, char *buf, size_t cap,
                                                   const char **names, int n);

/* Checkpoint directories. Files are named "<prefix>-<iteration, 12 digits>.ckpt"; higher iteration = newer. */

/* Writes the file name for an iteration into buf (cap bytes), e.g. "frcnn-000000010000.ckpt". */
FRCNN_API frcnn_status frcnn_ckpt_name(frcnn_ctx *ctx, const char *prefix, uint64_t iteration, char *buf,
                                       size_t cap);

/* The newest checkpoint in dir that verifies completely (every checksum, the footer): its path into path (cap
 * bytes). Newer files that fail to verify are skipped with a warning through the log callback naming the file
 * and the reason; stale "<prefix>-*.ckpt.tmp" files left by a killed save are removed. No checkpoint at all:
 * FRCNN_ERR_NOT_FOUND. Checkpoints exist but none verifies: FRCNN_ERR_FORMAT, never a silent fresh start. */
FRCNN_API frcnn_status frcnn_ckpt_latest(frcnn_ctx *ctx, const char *dir, const char *prefix, char *path,
                                         size_t cap);

/* Deletes old checkpoints of the prefix: keeps the keep_last newest (at least 1; use 3 on Google Drive, whose upload
 * of the newest may still be pending when the machine vanishes) and every one whose iteration
 * is a multiple of keep_every (0: none extra). Deletes nothing unless the newest verifies completely, so a
 * failed or partial save never costs the older ones. *deleted (may be NULL) receives the count removed. */
FRCNN_API frcnn_status frcnn_ckpt_retain(frcnn_ctx *ctx, const char *dir, const char *prefix, int keep_last,
                                         uint64_t keep_every, int *deleted);

typedef struct frcnn_ckpt_info {
    int format_major, format_minor;
    char library_version[32];
    uint64_t iteration;
    uint64_t dataset_fingerprint;
    frcnn_config config;
    size_t n_tensors;
    uint64_t file_bytes;
    bool has_optimizer, has_sampler;
    bool verified;   /* every checksum checked and correct */
} frcnn_ckpt_info;

/* Header, configuration, counters and checksum status of a file, for tools. A file that does not verify still
 * returns FRCNN_OK with verified false when its header and tables can be read. */
FRCNN_API frcnn_status frcnn_ckpt_info_read(frcnn_ctx *ctx, const char *path, frcnn_ckpt_info *info);

/* ---------------------------------------------------------------------------------------------------------------
 * Images (lib/data/image.c, draw.c, prepare.c): 8-bit RGB pixels in memory. Files are decoded with stb_image
 * (JPEG, PNG, BMP, GIF, TGA, PNM, PSD, HDR) and written with stb_image_write (PNG, JPEG).
 * ------------------------------------------------------------------------------------------------------------- */

/* Files wider or taller than this are refused before their pixels are decoded. */
#define FRCNN_IMAGE_MAX_SIDE 16384

typedef struct frcnn_image frcnn_image;

/* Decodes an image file into RGB: grayscale is replicated to the three channels, an alpha channel is dropped.
 * A file that cannot be opened or read: FRCNN_ERR_IO; corrupt, truncated (PNG chunks and CRCs are checked),
 * unsupported or larger than FRCNN_IMAGE_MAX_SIDE: FRCNN_ERR_FORMAT. Either message names the file. Free with
 * frcnn_image_free. Thread-safe results; with several threads decoding bad files at once, stb_image's global failure
 * reason may name another thread's problem in a message. */
FRCNN_API frcnn_status frcnn_image_load(frcnn_ctx *ctx, const char *path, frcnn_image **out);
/* Width and height from the file's header alone, without decoding the pixels. Errors as frcnn_image_load. */
FRCNN_API frcnn_status frcnn_image_read_size(frcnn_ctx *ctx, const char *path, int *width, int *height);
/* A black image of width x height (1 .. FRCNN_IMAGE_MAX_SIDE each). */
FRCNN_API frcnn_status frcnn_image_create(frcnn_ctx *ctx, int width, int height, frcnn_image **out);
FRCNN_API void frcnn_image_free(frcnn_image *image);
FRCNN_API int frcnn_image_width(const frcnn_image *image);
FRCNN_API int frcnn_image_height(const frcnn_image *image);
/* height * width * 3 bytes, rows top to bottom, R G B per pixel; lives as long as the image. */
FRCNN_API uint8_t *frcnn_image_pixels(const frcnn_image *image);
/* Writes PNG or JPEG (quality 90), chosen by the extension of path (.png, .jpg, .jpeg, any case); another
 * extension is FRCNN_ERR_INVALID_ARG. */
FRCNN_API frcnn_status frcnn_image_save(frcnn_ctx *ctx, const char *path, const frcnn_image *image);

/* Draws the outline of the box (x1, y1, x2, y2) (inclusive pixels, rounded to whole ones), `thickness` pixels wide
 * inward (at least 1), in colour rgb. Parts outside the image are clipped; a box entirely outside, with a NaN
 * coordinate or with x2 < x1 or y2 < y1 draws nothing. */
FRCNN_API void frcnn_image_draw_box(frcnn_image *image, float x1, float y1, float x2, float y2, int thickness,
                                    const uint8_t rgb[3]);
/* Draws text (printable ASCII; other bytes as '?') on a filled background, its top-left corner at (x, y), each
 * font pixel `scale` x `scale` image pixels (scale >= 1). Clipped at the image border. */
FRCNN_API void frcnn_image_draw_text(frcnn_image *image, int x, int y, const char *text, int scale,
                                     const uint8_t fg[3], const uint8_t bg[3]);
/* The size in image pixels frcnn_image_draw_text would cover, background included. */
FRCNN_API void frcnn_image_text_size(const char *text, int scale, int *width, int *height);

/* The size the model sees an image at (py-faster-rcnn prep_im_for_blob): scale = short_side / min(w, h), lowered
 * to max_side / max(w, h) when the longer side would exceed max_side; the prepared size is round(w * scale) x
 * round(h * scale). */
FRCNN_API frcnn_status frcnn_image_prepared_size(frcnn_ctx *ctx, const frcnn_config *config, int width,
                                                 int height, int *prepared_width, int *prepared_height,
                                                 float *scale);
/* Prepares an image for frcnn_model_train_step / frcnn_model_detect: resized to frcnn_image_prepared_size with
 * bilinear interpolation (the sampling of OpenCV's INTER_LINEAR and PyTorch's bilinear, align_corners false),
 * mirrored left-right when flip is true, channels reordered to B G R and normalised as (v - pixel_means[c]) /
 * pixel_stds[c]. *out receives a new (1, 3, h, w) tensor (free with frcnn_tensor_free) and *scale the factor. */
FRCNN_API frcnn_status frcnn_image_prepare(frcnn_ctx *ctx, const frcnn_config *config, const frcnn_image *image,
                                           bool flip, frcnn_tensor **out, float *scale);

/* ---------------------------------------------------------------------------------------------------------------
 * Datasets in Pascal VOC format (lib/data/voc.c, voc_xml.c): VOCdevkit/VOC<year>/{Annotations, JPEGImages,
 * ImageSets/Main}, as released by the VOC challenge or written by annotation tools (LabelImg, CVAT).
 * ------------------------------------------------------------------------------------------------------------- */

/* The 20 Pascal VOC classes in py-faster-rcnn's order (alphabetical, "aeroplane" .. "tvmonitor"), without the
 * background. Static storage. */
#define FRCNN_VOC_NUM_CLASSES 20
FRCNN_API const char *const *frcnn_voc_class_names(void);

typedef struct frcnn_voc_params {
    const char *root;   /* a VOCdevkit folder holding VOC<year>/, or a VOC<year> folder itself */
    const char *year;   /* "2007"; not used when root is the VOC<year> folder */
    const char *split;  /* the image list ImageSets/Main/<split>.txt: "trainval", "test", ... */
    /* Object classes without the background: class_names[0 .. n_classes), label = index + 1. NULL: the 20 VOC
     * classes, or, with classes_from_annotations, every name found in the split's annotations, sorted by strcmp.
     * An object whose class is not in the list is an error naming the file and the class. */
    const char *const *class_names;
    size_t n_classes;
    bool classes_from_annotations;
} frcnn_voc_params;

/* root NULL (set it), year "2007", split "trainval", the 20 VOC classes. */
FRCNN_API frcnn_voc_params frcnn_voc_params_default(void);

typedef struct frcnn_dataset frcnn_dataset;

/* An object: box in 0-based inclusive pixels of the original image (VOC's 1-based coordinates minus 1), class
 * label in [1, num_classes), and VOC's difficult flag. */
typedef struct frcnn_object {
    float x1, y1, x2, y2;
    int32_t label;
    bool difficult;
} frcnn_object;

/* One image of a dataset. The pointers live as long as the dataset. */
typedef struct frcnn_dataset_image {
    const char *id;          /* e.g. "000005" */
    const char *path;        /* the image file, e.g. ".../JPEGImages/000005.jpg" */
    int width, height;       /* from the annotation, or the image header when the annotation has none */
    const frcnn_object *objects; /* every object, difficult ones included */
    size_t n_objects;
} frcnn_dataset_image;

/* Reads the split's image list and every annotation, and checks each image file exists. Tolerates what real files
 * contain (extra elements, <part> boxes, decimal coordinates, missing <difficult>, boxes reaching past the image,
 * which are clipped). A malformed annotation is FRCNN_ERR_FORMAT, a missing file FRCNN_ERR_IO or
 * FRCNN_ERR_NOT_FOUND, each naming the file (and the line and the problem). Free with frcnn_dataset_free. */
FRCNN_API frcnn_status frcnn_voc_open(frcnn_ctx *ctx, const frcnn_voc_params *params, frcnn_dataset **out);
FRCNN_API void frcnn_dataset_free(frcnn_dataset *dataset);
FRCNN_API size_t frcnn_dataset_size(const frcnn_dataset *dataset);
/* Classes including the background at 0, i.e. n_classes + 1: the model's num_classes. */
FRCNN_API int frcnn_dataset_num_classes(const frcnn_dataset *dataset);
/* num_classes names, [0] = "__background__"; for frcnn_train_state.class_names. Live as long as the dataset. */
FRCNN_API const char *const *frcnn_dataset_class_names(const frcnn_dataset *dataset);
/* Image i in [0, size). */
FRCNN_API frcnn_status frcnn_dataset_image_info(const frcnn_dataset *dataset, size_t i, frcnn_dataset_image *out);
/* A fingerprint of the image ids, sizes, objects and class names, for frcnn_train_state.dataset_fingerprint: a
 * resumed run refuses a dataset that changed under it. */
FRCNN_API uint64_t frcnn_dataset_fingerprint(const frcnn_dataset *dataset);

/* A training sample: image i loaded and prepared (frcnn_image_prepare, flipped when flip is true) into a new
 * tensor *image (free with frcnn_tensor_free), its scale, and its ground truth in the prepared image's pixels
 * (flipped too) in config's box convention (continuous: x2 and y2 one larger than the last pixel): boxes gt
 * (capacity, 4) and labels (capacity). Difficult objects are left out unless
 * keep_difficult. More objects than capacity: FRCNN_ERR_INVALID_ARG. */
FRCNN_API frcnn_status frcnn_dataset_load_sample(frcnn_ctx *ctx, const frcnn_dataset *dataset, size_t i, bool flip,
                                                 bool keep_difficult, const frcnn_config *config,
                                                 frcnn_tensor **image, float *scale, float *gt, int32_t *labels,
                                                 size_t capacity, size_t *n_gt);

/* ---------------------------------------------------------------------------------------------------------------
 * Evaluation with the Pascal VOC metric (lib/data/voc_eval.c; py-faster-rcnn lib/datasets/voc_eval.py): per class,
 * detections by descending score, each compared with the ground truth of its class and image of highest IoU ("+1"
 * pixels): a true positive when IoU > 0.5 and that ground truth is not matched yet, a false positive when it is
 * (even if another one overlaps enough) or when IoU <= 0.5; a match to a difficult one counts neither way. AP is the
 * VOC2007 11-point interpolation (thresholds i * 0.1 as numpy computes them) or the VOC2010+ area under the precision
 * envelope; mAP is the mean over classes that have at least one non-difficult object.
 * ------------------------------------------------------------------------------------------------------------- */

typedef struct frcnn_voc_eval frcnn_voc_eval;

/* An evaluation of n_images images and num_classes classes (background included, as in the model). */
FRCNN_API frcnn_status frcnn_voc_eval_create(frcnn_ctx *ctx, int num_classes, size_t n_images,
                                             frcnn_voc_eval **out);
FRCNN_API void frcnn_voc_eval_free(frcnn_voc_eval *eval);
/* The ground truth of image i: set exactly once per image, with n 0 for an image without objects (a second call is
 * FRCNN_ERR_STATE); labels in [1, num_classes). */
FRCNN_API frcnn_status frcnn_voc_eval_set_truth(frcnn_voc_eval *eval, size_t image, const frcnn_object *objects,
                                                size_t n);
/* Adds detections of image i in original-image pixels, inclusive boxes (as frcnn_model_detect returns them with
 * FRCNN_BOXES_INCLUSIVE; a continuous model's x2 and y2 are one larger, subtract 1). Ties in score are
 * ranked by image index, then by the order added, so the result never depends on anything else. */
FRCNN_API frcnn_status frcnn_voc_eval_add(frcnn_voc_eval *eval, size_t image, const frcnn_detection *dets,
                                          size_t n);
/* ap[num_classes] receives each class's AP (ap[0], the background, and classes without non-difficult objects:
 * NaN); *map the mean over the others. use_07_metric: 11-point (VOC2007) instead of area (VOC2010+). An image whose
 * truth was never set is FRCNN_ERR_STATE naming it: its detections would silently count as false positives. */
FRCNN_API frcnn_status frcnn_voc_eval_compute(frcnn_voc_eval *eval, bool use_07_metric, float *ap, float *map);
/* Writes VOC's result files dir/comp4_det_<split>_<class>.txt, one per class (empty ones too), each complete or
 * absent (written as .tmp and renamed): lines "image_id score x1 y1 x2 y2" with 1-based coordinates, in image order.
 * image_ids[n_images], class_names[num_classes] ([0] unused); names must not contain '/'. */
FRCNN_API frcnn_status frcnn_voc_eval_write(frcnn_voc_eval *eval, const char *dir, const char *split,
                                            const char *const *image_ids, const char *const *class_names);

#ifdef __cplusplus
}
#endif

#endif /* FRCNN_H */
