/* 2-D max pooling over (n, c, h, w), forward and backward, with the output-size rule and window clipping of
 * Caffe's src/caffe/layers/pooling_layer.cpp (the ceil mode py-faster-rcnn's VGG16 uses). */
#include "maxpool_relu.h"

#include <stdio.h>
#include <string.h>

/* Output elements times window elements per thread below which the loop is not worth splitting. */
#define MAXPOOL_MIN_WORK_PER_THREAD ((size_t)1 << 17)

frcnn_maxpool_params frcnn_maxpool_params_default(void)
{
    /* VGG16 pool1..pool4: kernel 2, stride 2, no padding. */
    frcnn_maxpool_params p;
    p.kernel_h = 2;
    p.kernel_w = 2;
    p.stride_h = 2;
    p.stride_w = 2;
    p.pad_h = 0;
    p.pad_w = 0;
    p.ceil_mode = false;
    return p;
}

static frcnn_status check_params(frcnn_ctx *ctx, const frcnn_maxpool_params *p)
{
    if (!p)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "maxpool: params is NULL");
    if (p->kernel_h < 1 || p->kernel_w < 1)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "maxpool: kernel %dx%d, expected at least 1x1",
                            p->kernel_h, p->kernel_w);
    if (p->stride_h < 1 || p->stride_w < 1)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "maxpool: stride %dx%d, expected at least 1x1",
                            p->stride_h, p->stride_w);
    /* A pad of a whole kernel would allow windows made only of padding (Caffe: CHECK_LT(pad_h_, kernel_h_)). */
    if (p->pad_h < 0 || p->pad_w < 0 || p->pad_h >= p->kernel_h || p->pad_w >= p->kernel_w)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG,
                            "maxpool: padding %dx%d with kernel %dx%d, expected 0 <= padding < kernel", p->pad_h,
                            p->pad_w, p->kernel_h, p->kernel_w);
    return FRCNN_OK;
}

/* Pooled size along one axis, possibly <= 0 (the caller rejects that).
 *   floor mode: floor((size + 2 pad - k) / stride) + 1
 *   ceil mode:  ceil((size + 2 pad - k) / stride) + 1
 * then one less if the last window would start at or past size + pad, i.e. inside the far padding or beyond.
 * Caffe applies that correction only when pad > 0; with pad == 0 it can trigger only in ceil mode with
 * stride > kernel, where Caffe would produce a window entirely outside the input (value -FLT_MAX, argmax -1,
 * an out-of-bounds write in backward). Applying it unconditionally, as PyTorch does, gives Caffe's size in every
 * case where Caffe's result is meaningful and guarantees every window overlaps the input. In floor mode the
 * correction never triggers (the last start is at most size + pad - k). */
static int64_t pooled_size(int64_t size, int k, int stride, int pad, bool ceil_mode)
{
    int64_t a = size + 2 * (int64_t)pad - k;
    int64_t s = stride;
    int64_t q;
    if (ceil_mode)
        q = a >= 0 ? (a + s - 1) / s : -((-a) / s);
    else
        q = a >= 0 ? a / s : -((-a + s - 1) / s);
    int64_t pooled = q + 1;
    if (pooled > 0 && (pooled - 1) * s >= size + pad)
        pooled--;
    return pooled;
}

frcnn_status frcnn_maxpool_output_shape(frcnn_ctx *ctx, const frcnn_maxpool_params *p, const int64_t x_dims[4],
                                        int64_t y_dims[4])
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    frcnn_status st = check_params(ctx, p);
    if (st != FRCNN_OK)
        return st;
    if (!y_dims)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "maxpool: y_dims is NULL");
    st = frcnn__check_dims(ctx, 4, x_dims, "maxpool: x", NULL);
    if (st != FRCNN_OK)
        return st;
    int64_t oh = pooled_size(x_dims[2], p->kernel_h, p->stride_h, p->pad_h, p->ceil_mode);
    int64_t ow = pooled_size(x_dims[3], p->kernel_w, p->stride_w, p->pad_w, p->ceil_mode);
    if (oh < 1 || ow < 1)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG,
                            "maxpool: kernel %dx%d, stride %dx%d, padding %dx%d, %s mode on a %lldx%lld input "
                            "gives an empty %lldx%lld output",
                            p->kernel_h, p->kernel_w, p->stride_h, p->stride_w, p->pad_h, p->pad_w,
                            p->ceil_mode ? "ceil" : "floor", (long long)x_dims[2], (long long)x_dims[3],
                            (long long)oh, (long long)ow);
    if (oh > INT32_MAX || ow > INT32_MAX)
        return frcnn__error(ctx, FRCNN_ERR_OVERFLOW, "maxpool: output %lldx%lld exceeds %d per dimension",
                            (long long)oh, (long long)ow, INT32_MAX);
    y_dims[0] = x_dims[0];
    y_dims[1] = x_dims[1];
    y_dims[2] = oh;
    y_dims[3] = ow;
    return FRCNN_OK;
}

/* Checks that the pooled tensor `pooled` (y or dy) has the output shape for the input-shaped tensor `input`
 * (x or dx): both present and 4-D, sizes consistent, and the input plane indexable by int32 argmax. `op` starts
 * the messages ("maxpool", "maxpool backward"). The parameters must already be checked. */
static frcnn_status check_shapes(frcnn_ctx *ctx, const frcnn_maxpool_params *p, const char *op,
                                 const frcnn_tensor *input, const char *input_name, const frcnn_tensor *pooled,
                                 const char *pooled_name)
{
    char name[64];
    snprintf(name, sizeof name, "%s: %s", op, input_name);
    frcnn_status st = frcnn__check_tensor(ctx, input, name, 4);
    if (st == FRCNN_OK) {
        snprintf(name, sizeof name, "%s: %s", op, pooled_name);
        st = frcnn__check_tensor(ctx, pooled, name, 4);
    }
    if (st != FRCNN_OK)
        return st;
    int64_t want[4];
    st = frcnn_maxpool_output_shape(ctx, p, input->dims, want);
    if (st != FRCNN_OK)
        return st;
    for (int i = 0; i < 4; i++) {
        if (pooled->dims[i] != want[i]) {
            char sp[96], si[96];
            frcnn__shape_str(pooled, sp, sizeof sp);
            frcnn__shape_str(input, si, sizeof si);
            return frcnn__error(ctx, FRCNN_ERR_SHAPE,
                                "%s: %s has shape %s, expected (%lld, %lld, %lld, %lld) for %s %s", op,
                                pooled_name, sp, (long long)want[0], (long long)want[1], (long long)want[2],
                                (long long)want[3], input_name, si);
        }
    }
    if (input->dims[2] * input->dims[3] > INT32_MAX) {
        char si[96];
        frcnn__shape_str(input, si, sizeof si);
        return frcnn__error(ctx, FRCNN_ERR_OVERFLOW,
                            "%s: %s has shape %s: an (h, w) plane of more than %d elements cannot be indexed by "
                            "int32 argmax", op, input_name, si, INT32_MAX);
    }
    return FRCNN_OK;
}

typedef struct pool_job {
    const frcnn_maxpool_params *p;
    int64_t h, w, oh, ow;
    const float *x; /* forward */
    float *y;
    int32_t *argmax;
    const float *dy; /* backward */
    const int32_t *argmax_in;
    const float *y_in; /* fused ReLU backward: the pooled values, the gate */
    float *dx;
} pool_job;

/* The maximum of the window rows [hs, he) x columns [ws, we) of one (h, w) plane with row length w, and its flat
 * index. The window is not empty (see pooled_size). Strict '>' from the first element keeps the first maximum in
 * row-major order. On activations that comparison is close to a coin flip, and as a branch it mispredicted often
 * enough to make pooling 1.5x slower (280 ms against 190 ms for 2x2 windows over 64x600x1000, one thread); so
 * the value is kept with the max idiom (one maxss) and the index with a bit mask, both without a branch. NaN fails every comparison, so a window holding one is redone by the plain
 * loop, where the first NaN wins and sticks: NaN propagates to the output. */
static float window_max(const float *xp, int64_t w, int64_t hs, int64_t he, int64_t ws, int64_t we, int64_t *arg)
{
    int64_t best_i = hs * w + ws;
    float best = xp[best_i];
    bool nan = false;
    for (int64_t hh = hs; hh < he; hh++) {
        for (int64_t ww = ws; ww < we; ww++) {
            int64_t i = hh * w + ww;
            float v = xp[i];
            int64_t take = -(int64_t)(v > best); /* all ones when v wins */
            nan |= v != v;
            best_i = (i & take) | (best_i & ~take);
            best = v > best ? v : best;
        }
    }
    if (nan) {
        best_i = hs * w + ws;
        best = xp[best_i];
        for (int64_t hh = hs; hh < he; hh++) {
            for (int64_t ww = ws; ww < we; ww++) {
                float v = xp[hh * w + ww];
                if (v > best || (v != v && best == best)) {
                    best = v;
                    best_i = hh * w + ww;
                }
            }
        }
    }
    *arg = best_i;
    return best;
}

/* The window of one output: window_max over the clipped window. */
static void pool_one(const pool_job *j, const float *xp, float *yp, int32_t *ap, int64_t ph, int64_t pw)
{
    const frcnn_maxpool_params *p = j->p;
    int64_t hs = ph * p->stride_h - p->pad_h, ws = pw * p->stride_w - p->pad_w;
    int64_t he = hs + p->kernel_h < j->h ? hs + p->kernel_h : j->h;
    int64_t we = ws + p->kernel_w < j->w ? ws + p->kernel_w : j->w;
    int64_t best_i;
    size_t o = (size_t)(ph * j->ow + pw);
    yp[o] = window_max(xp, j->w, hs < 0 ? 0 : hs, he, ws < 0 ? 0 : ws, we, &best_i);
    if (ap)
        ap[o] = (int32_t)best_i;
}

/* One row of whole 2x2 windows: the four comparisons of window_max, in its order, so the same value and index,
 * written as selects so that the compiler vectorises them (as branches they mispredicted on half the windows:
 * 15 ns a window). Returns whether a NaN was seen; the caller then redoes the row through window_max. */
static bool pool2x2_row(const float *restrict r0, const float *restrict r1, int64_t n, int32_t base, int32_t w,
                        float *restrict yr, int32_t *restrict ar)
{
    int nan = 0;
    for (int64_t pw = 0; pw < n; pw++) {
        float a = r0[2 * pw], b = r0[2 * pw + 1], c = r1[2 * pw], d = r1[2 * pw + 1];
        nan |= (a != a) | (b != b) | (c != c) | (d != d);
        int32_t i = base + 2 * (int32_t)pw, best_i = i;
        float best = a;
        int take = b > best;
        best_i = take ? i + 1 : best_i;
        best = take ? b : best;
        take = c > best;
        best_i = take ? i + w : best_i;
        best = take ? c : best;
        take = d > best;
        best_i = take ? i + w + 1 : best_i;
        best = take ? d : best;
        yr[pw] = best;
        ar[pw] = best_i;
    }
    return nan != 0;
}

/* The same without the index (inference). */
static bool pool2x2_row_values(const float *restrict r0, const float *restrict r1, int64_t n, float *restrict yr)
{
    int nan = 0;
    for (int64_t pw = 0; pw < n; pw++) {
        float a = r0[2 * pw], b = r0[2 * pw + 1], c = r1[2 * pw], d = r1[2 * pw + 1];
        nan |= (a != a) | (b != b) | (c != c) | (d != d);
        float best = a;
        best = b > best ? b : best;
        best = c > best ? c : best;
        best = d > best ? d : best;
        yr[pw] = best;
    }
    return nan != 0;
}

/* The backbones' pools, 2x2 windows at stride 2 without padding, over one plane: rows of whole windows through
 * pool2x2_row, the partial windows of a ceil-mode pool's last row and column, and any row holding a NaN,
 * through pool_one. */
static void pool2x2_plane(const pool_job *j, const float *xp, float *yp, int32_t *ap)
{
    const int64_t w = j->w, full_h = j->h / 2 < j->oh ? j->h / 2 : j->oh, full_w = w / 2 < j->ow ? w / 2 : j->ow;
    for (int64_t ph = 0; ph < full_h; ph++) {
        const float *r0 = xp + 2 * ph * w, *r1 = r0 + w;
        float *yr = yp + ph * j->ow;
        bool nan = ap ? pool2x2_row(r0, r1, full_w, (int32_t)(2 * ph * w), (int32_t)w, yr, ap + ph * j->ow)
                      : pool2x2_row_values(r0, r1, full_w, yr);
        for (int64_t pw = nan ? 0 : full_w; pw < j->ow; pw++)
            pool_one(j, xp, yp, ap, ph, pw);
    }
    for (int64_t ph = full_h; ph < j->oh; ph++)
        for (int64_t pw = 0; pw < j->ow; pw++)
            pool_one(j, xp, yp, ap, ph, pw);
}

/* Pools the (n, c) planes [begin, end); each writes only its own planes of y and argmax. */
static void forward_range(void *arg, size_t begin, size_t end)
{
    const pool_job *j = arg;
    const frcnn_maxpool_params *p = j->p;
    const size_t in_plane = (size_t)j->h * (size_t)j->w;
    const size_t out_plane = (size_t)j->oh * (size_t)j->ow;
    const bool two_by_two = p->kernel_h == 2 && p->kernel_w == 2 && p->stride_h == 2 && p->stride_w == 2 &&
                            p->pad_h == 0 && p->pad_w == 0;
    for (size_t plane = begin; plane < end; plane++) {
        const float *xp = j->x + plane * in_plane;
        float *yp = j->y + plane * out_plane;
        int32_t *ap = j->argmax ? j->argmax + plane * out_plane : NULL;
        if (two_by_two) {
            pool2x2_plane(j, xp, yp, ap);
            continue;
        }
        for (int64_t ph = 0; ph < j->oh; ph++)
            for (int64_t pw = 0; pw < j->ow; pw++)
                pool_one(j, xp, yp, ap, ph, pw);
    }
}

/* Scatters the planes [begin, end) of dy into dx; within a plane in output order, so the sums of overlapping
 * windows are always added in the same order. Each range writes only its own planes of dx. */
static void backward_range(void *arg, size_t begin, size_t end)
{
    const pool_job *j = arg;
    const size_t in_plane = (size_t)j->h * (size_t)j->w;
    const size_t out_plane = (size_t)j->oh * (size_t)j->ow;
    for (size_t plane = begin; plane < end; plane++) {
        float *dxp = j->dx + plane * in_plane;
        const float *dyp = j->dy + plane * out_plane;
        const int32_t *ap = j->argmax_in + plane * out_plane;
        for (size_t o = 0; o < out_plane; o++)
            dxp[ap[o]] += dyp[o];
    }
}

/* The fused ReLU + max-pool backward over the planes [begin, end): each plane of dx zeroed, then dy added at the
 * argmax of each window whose pooled value is positive, in output order, while the plane is in cache. Adding a
 * gated +0 leaves an element as the unfused path leaves it (zero, scatter, then zero where the ReLU was off). */
static void relu_backward_range(void *arg, size_t begin, size_t end)
{
    const pool_job *j = arg;
    const size_t in_plane = (size_t)j->h * (size_t)j->w;
    const size_t out_plane = (size_t)j->oh * (size_t)j->ow;
    for (size_t plane = begin; plane < end; plane++) {
        float *dxp = j->dx + plane * in_plane;
        const float *dyp = j->dy + plane * out_plane, *yp = j->y_in + plane * out_plane;
        const int32_t *ap = j->argmax_in + plane * out_plane;
        memset(dxp, 0, in_plane * sizeof *dxp);
        for (size_t o = 0; o < out_plane; o++)
            dxp[ap[o]] += yp[o] > 0.0f ? dyp[o] : 0.0f;
    }
}

static size_t min_planes_per_thread(const frcnn_maxpool_params *p, int64_t oh, int64_t ow)
{
    size_t work = (size_t)oh * (size_t)ow * (size_t)p->kernel_h * (size_t)p->kernel_w;
    return work >= MAXPOOL_MIN_WORK_PER_THREAD ? 1 : (MAXPOOL_MIN_WORK_PER_THREAD + work - 1) / work;
}

/* x (n, c, h, w); y (n, c, oh, ow) with the shape of frcnn_maxpool_output_shape, overwritten; argmax
 * (n*c*oh*ow int32) overwritten with the flat index within the (h, w) plane of each maximum, or NULL. */
frcnn_status frcnn_maxpool_forward(frcnn_ctx *ctx, const frcnn_maxpool_params *p, const frcnn_tensor *x,
                                   frcnn_tensor *y, int32_t *argmax)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    frcnn_status st = check_params(ctx, p);
    if (st == FRCNN_OK)
        st = check_shapes(ctx, p, "maxpool", x, "x", y, "y");
    if (st != FRCNN_OK)
        return st;
    pool_job job = {0};
    job.p = p;
    job.h = x->dims[2];
    job.w = x->dims[3];
    job.oh = y->dims[2];
    job.ow = y->dims[3];
    job.x = x->data;
    job.y = y->data;
    job.argmax = argmax;
    size_t planes = (size_t)x->dims[0] * (size_t)x->dims[1];
    frcnn__parallel_for(ctx, planes, min_planes_per_thread(p, job.oh, job.ow), forward_range, &job);
    return FRCNN_OK;
}

/* The checks both backward passes make before touching dx: parameters, dy, argmax, and when dx is given its shape
 * and every argmax entry in [0, h*w). `op` starts the messages. */
static frcnn_status check_backward(frcnn_ctx *ctx, const frcnn_maxpool_params *p, const char *op,
                                   const frcnn_tensor *dy, const int32_t *argmax, const frcnn_tensor *dx)
{
    char name[64];
    snprintf(name, sizeof name, "%s: dy", op);
    frcnn_status st = check_params(ctx, p);
    if (st == FRCNN_OK)
        st = frcnn__check_tensor(ctx, dy, name, 4);
    if (st == FRCNN_OK && !argmax)
        st = frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "%s: argmax is NULL", op);
    if (st == FRCNN_OK && dx)
        st = check_shapes(ctx, p, op, dx, "dx", dy, "dy");
    if (st != FRCNN_OK || !dx)
        return st;
    const int64_t plane = dx->dims[2] * dx->dims[3];
    size_t i = frcnn__first_index_outside(argmax, dy->numel, 0, plane);
    if (i < dy->numel)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "%s: argmax[%zu] is %d, expected an index in [0, %lld)", op,
                            i, (int)argmax[i], (long long)plane);
    return FRCNN_OK;
}

/* Runs a backward range function over the planes of dx; y is the fused pass's gate, NULL for the plain one. */
static void run_backward(frcnn_ctx *ctx, const frcnn_maxpool_params *p, const frcnn_tensor *y,
                         const frcnn_tensor *dy, const int32_t *argmax, frcnn_tensor *dx, frcnn__range_fn fn)
{
    pool_job job = {0};
    job.p = p;
    job.h = dx->dims[2];
    job.w = dx->dims[3];
    job.oh = dy->dims[2];
    job.ow = dy->dims[3];
    job.dy = dy->data;
    job.argmax_in = argmax;
    job.y_in = y ? y->data : NULL;
    job.dx = dx->data;
    size_t planes = (size_t)dx->dims[0] * (size_t)dx->dims[1];
    frcnn__parallel_for(ctx, planes, min_planes_per_thread(p, job.oh, job.ow), fn, &job);
}

/* dy (n, c, oh, ow) and argmax (n*c*oh*ow int32, from forward) required; dx (n, c, h, w) accumulated (+=), or
 * NULL (skipped). Every argmax entry must lie in [0, h*w); this is checked before dx is touched. */
frcnn_status frcnn_maxpool_backward(frcnn_ctx *ctx, const frcnn_maxpool_params *p, const frcnn_tensor *dy,
                                    const int32_t *argmax, frcnn_tensor *dx)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    frcnn_status st = check_backward(ctx, p, "maxpool backward", dy, argmax, dx);
    if (st == FRCNN_OK && dx)
        run_backward(ctx, p, NULL, dy, argmax, dx, backward_range);
    return st;
}

frcnn_status frcnn__maxpool_relu_backward(frcnn_ctx *ctx, const frcnn_maxpool_params *p, const frcnn_tensor *y,
                                          const frcnn_tensor *dy, const int32_t *argmax, frcnn_tensor *dx)
{
    const char *op = "maxpool+relu backward";
    frcnn_status st = check_backward(ctx, p, op, dy, argmax, dx);
    if (st == FRCNN_OK && !dx)
        st = frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "%s: dx is NULL", op);
    if (st == FRCNN_OK)
        st = frcnn__check_tensor(ctx, y, "maxpool+relu backward: y", 4);
    if (st == FRCNN_OK)
        st = frcnn__check_same_shape(ctx, y, "maxpool+relu backward: y", dy, "dy");
    if (st == FRCNN_OK)
        run_backward(ctx, p, y, dy, argmax, dx, relu_backward_range);
    return st;
}
