/* RoI align (Mask R-CNN), forward and backward, with the sampling and bilinear interpolation of
 * torchvision.ops.roi_align (torchvision/csrc/ops/cpu/roi_align_kernel.cpp): the same sample points, the same
 * treatment of points outside the map, the average over a bin's samples, the same float operations in the same
 * order. Both passes work on a channels-last copy of one image's map in the workspace, so that a sample's four
 * taps are four contiguous channel vectors: the inner loops run over channels and vectorise. */
#include "internal.h"

#include <math.h>

frcnn_roi_align_params frcnn_roi_align_params_default(void)
{
    /* torchvision's MultiScaleRoIAlign in Faster R-CNN: 7x7, sampling_ratio 2; Detectron2's aligned=True. */
    frcnn_roi_align_params p;
    p.pooled_h = 7;
    p.pooled_w = 7;
    p.spatial_scale = 1.0f / 16.0f;
    p.sampling_ratio = 2;
    p.aligned = true;
    return p;
}

/* Samples a bin side with adaptive sampling (sampling_ratio <= 0) are at most this many; a RoI that needs more is an
 * error, where torchvision would loop for hours (or overflow its int sample count). */
#define GRID_CAP 256
/* Sample positions per axis computed at a time: bins are processed in chunks whose samples fit this. */
#define TAP_CAP 256

static frcnn_status check_params(frcnn_ctx *ctx, const frcnn_roi_align_params *p)
{
    if (!p)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "roi_align: params is NULL");
    if (p->pooled_h < 1 || p->pooled_w < 1 || p->pooled_h > 1024 || p->pooled_w > 1024)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "roi_align: pooled size %dx%d, expected 1..1024 a side",
                            p->pooled_h, p->pooled_w);
    if (!isfinite(p->spatial_scale) || !(p->spatial_scale > 0.0f))
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "roi_align: spatial_scale %g, expected finite and > 0",
                            (double)p->spatial_scale);
    if (p->sampling_ratio > 64)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "roi_align: sampling_ratio %d, expected at most 64",
                            p->sampling_ratio);
    return FRCNN_OK;
}

/* rois must be (r, 5) with r rows (r < 0: any). */
static frcnn_status check_rois_shape(frcnn_ctx *ctx, const frcnn_tensor *rois, int64_t r)
{
    frcnn_status st = frcnn__check_tensor(ctx, rois, "roi_align: rois", 2);
    if (st != FRCNN_OK)
        return st;
    if (rois->dims[1] != 5 || (r >= 0 && rois->dims[0] != r)) {
        char s[96];
        frcnn__shape_str(rois, s, sizeof s);
        return frcnn__error(ctx, FRCNN_ERR_SHAPE, "roi_align: rois has shape %s, expected (%s, 5)", s,
                            r >= 0 ? "dy's rows" : "r");
    }
    return FRCNN_OK;
}

/* One RoI's sampling grid in feature-map coordinates, as torchvision computes it. */
typedef struct roi_grid {
    float start_h, start_w, bin_h, bin_w;
    int grid_h, grid_w; /* samples per bin side; 0 when the RoI is empty (its bins output 0) */
    float count;        /* samples per bin (at least 1) */
} roi_grid;

static int grid_side(float extent, int pooled, int ratio)
{
    if (ratio > 0)
        return ratio;
    float g = ceilf(extent / (float)pooled); /* extent may be negative for a reversed RoI: no samples */
    return g <= 0.0f ? 0 : g > (float)GRID_CAP ? GRID_CAP + 1 : (int)g;
}

static roi_grid grid_of(const frcnn_roi_align_params *p, const float *roi)
{
    const float offset = p->aligned ? 0.5f : 0.0f, s = p->spatial_scale;
    roi_grid g;
    g.start_w = roi[1] * s - offset;
    g.start_h = roi[2] * s - offset;
    float width = roi[3] * s - offset - g.start_w, height = roi[4] * s - offset - g.start_h;
    if (!p->aligned) { /* the legacy op forces malformed RoIs to 1x1 */
        width = fmaxf(width, 1.0f);
        height = fmaxf(height, 1.0f);
    }
    g.bin_h = height / (float)p->pooled_h;
    g.bin_w = width / (float)p->pooled_w;
    g.grid_h = grid_side(height, p->pooled_h, p->sampling_ratio);
    g.grid_w = grid_side(width, p->pooled_w, p->sampling_ratio);
    int count = g.grid_h * g.grid_w; /* at most GRID_CAP^2 once checked */
    g.count = (float)(count > 1 ? count : 1);
    return g;
}

/* Checks every RoI before anything is written: batch index an integer in [0, n); coordinates, once scaled, finite
 * and below 2^24 in magnitude (every sample's integer part is then exact in float and fits an int); with
 * adaptive sampling, at most GRID_CAP samples a bin side. */
static frcnn_status check_rois_values(frcnn_ctx *ctx, const frcnn_roi_align_params *p, const frcnn_tensor *rois,
                                      int64_t n)
{
    const float *r = rois->data;
    for (int64_t i = 0; i < rois->dims[0]; i++, r += 5) {
        frcnn_status st = frcnn__check_roi_batch(ctx, "roi_align", r, i, n);
        if (st != FRCNN_OK)
            return st;
        for (int k = 1; k < 5; k++)
            if (!(fabsf(r[k] * p->spatial_scale) < 16777216.0f))
                return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG,
                                    "roi_align: rois row %lld has coordinate %g, expected finite and below 2^24 in "
                                    "magnitude once scaled by %g", (long long)i, (double)r[k],
                                    (double)p->spatial_scale);
        roi_grid g = grid_of(p, r);
        if (g.grid_h > GRID_CAP || g.grid_w > GRID_CAP)
            return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG,
                                "roi_align: rois row %lld needs more than %d samples a bin side with adaptive "
                                "sampling; set sampling_ratio", (long long)i, GRID_CAP);
    }
    return FRCNN_OK;
}

/* One axis of torchvision's bilinear_interpolate: the two neighbouring rows (or columns) of a sample at `pos`
 * and their weights. A sample outside [-1, size] on either axis contributes nothing (weights 0). */
typedef struct axis_tap {
    int lo, hi;
    float w_lo, w_hi;
} axis_tap;

static axis_tap axis_sample(float pos, int64_t size)
{
    axis_tap t = {0, 0, 0.0f, 0.0f};
    if (!(pos >= -1.0f && pos <= (float)size))
        return t;
    if (pos <= 0.0f)
        pos = 0.0f;
    int lo = (int)pos;
    if (lo >= size - 1) {
        t.lo = t.hi = (int)(size - 1);
        pos = (float)t.lo;
    } else {
        t.lo = lo;
        t.hi = lo + 1;
    }
    float frac = pos - (float)t.lo;
    t.w_lo = 1.0f - frac;
    t.w_hi = frac;
    return t;
}

/* The samples of bins [first, first + n) along one axis: taps[b * grid + i] for sample i of bin first + b. */
static void axis_taps(float start, float bin, int grid, int first, int n, int64_t size, axis_tap *taps)
{
    for (int b = 0; b < n; b++)
        for (int i = 0; i < grid; i++)
            taps[b * grid + i] =
                axis_sample(start + (float)(first + b) * bin + ((float)i + 0.5f) * bin / (float)grid, size);
}

/* Bins per chunk along an axis: as many as keep the chunk's samples within TAP_CAP. */
static int chunk_bins(int grid, int pooled)
{
    int n = grid > 0 ? TAP_CAP / grid : pooled;
    return n < pooled ? n : pooled;
}

typedef struct align_job {
    const frcnn_roi_align_params *p;
    const float *rois; /* (r, 5) */
    int64_t r, c, h, w;
    size_t batch;      /* the image whose RoIs this pass handles */
    float *t;          /* (h, w, c): the image's map (forward) or its gradient (backward), channels last */
    float *y;          /* forward: (r, c, ph, pw) */
    const float *dy;   /* backward: (r, c, ph, pw) */
} align_job;

/* A chunk of one RoI's bins: rows [ph0, ph0 + nh), columns [pw0, pw0 + nw), their samples' taps. */
typedef struct bin_chunk {
    int ph0, nh, pw0, nw;
    axis_tap ty[TAP_CAP], tx[TAP_CAP];
} bin_chunk;

/* Work on bin (k->ph0 + u, k->pw0 + v) of RoI r, channels [ch0, ch1). */
typedef void (*bin_fn)(const align_job *j, const roi_grid *g, const bin_chunk *k, int u, int v, size_t r,
                       size_t ch0, size_t ch1);

/* Calls visit for every bin of RoI r, chunk by chunk, after computing the chunk's sample taps. */
static void for_each_bin(const align_job *j, size_t r, size_t ch0, size_t ch1, bin_fn visit)
{
    const int pooled_h = j->p->pooled_h, pooled_w = j->p->pooled_w;
    const roi_grid g = grid_of(j->p, j->rois + 5 * r);
    const int step_h = chunk_bins(g.grid_h, pooled_h), step_w = chunk_bins(g.grid_w, pooled_w);
    bin_chunk k;
    for (k.ph0 = 0; k.ph0 < pooled_h; k.ph0 += step_h) {
        k.nh = pooled_h - k.ph0 < step_h ? pooled_h - k.ph0 : step_h;
        axis_taps(g.start_h, g.bin_h, g.grid_h, k.ph0, k.nh, j->h, k.ty);
        for (k.pw0 = 0; k.pw0 < pooled_w; k.pw0 += step_w) {
            k.nw = pooled_w - k.pw0 < step_w ? pooled_w - k.pw0 : step_w;
            axis_taps(g.start_w, g.bin_w, g.grid_w, k.pw0, k.nw, j->w, k.tx);
            for (int u = 0; u < k.nh; u++)
                for (int v = 0; v < k.nw; v++)
                    visit(j, &g, &k, u, v, r, ch0, ch1);
        }
    }
}

/* Channels summed at a time on the stack. */
#define CH_CHUNK 256

/* The four taps of sample (ty, tx): their weights (torchvision's w1..w4) and their offsets in the channels-last
 * map of width w and c channels. */
typedef struct sample_taps {
    float w[4];
    size_t at[4];
} sample_taps;

static sample_taps taps_of(axis_tap ty, axis_tap tx, size_t w, size_t c)
{
    sample_taps s = {{ty.w_lo * tx.w_lo, ty.w_lo * tx.w_hi, ty.w_hi * tx.w_lo, ty.w_hi * tx.w_hi},
                     {((size_t)ty.lo * w + (size_t)tx.lo) * c, ((size_t)ty.lo * w + (size_t)tx.hi) * c,
                      ((size_t)ty.hi * w + (size_t)tx.lo) * c, ((size_t)ty.hi * w + (size_t)tx.hi) * c}};
    return s;
}

/* One bin of RoI r, channels [ch0, ch1): the mean of its samples, each w1 v1 + w2 v2 + w3 v3 + w4 v4, divided by
 * the count as torchvision does. */
static void forward_bin(const align_job *j, const roi_grid *g, const bin_chunk *k, int u, int v, size_t r,
                        size_t ch0, size_t ch1)
{
    const size_t c = (size_t)j->c, w = (size_t)j->w;
    const size_t out_plane = (size_t)j->p->pooled_h * (size_t)j->p->pooled_w;
    const size_t bin = (size_t)(k->ph0 + u) * (size_t)j->p->pooled_w + (size_t)(k->pw0 + v);
    float acc[CH_CHUNK];
    for (size_t c0 = ch0; c0 < ch1; c0 += CH_CHUNK) {
        const size_t n = ch1 - c0 < CH_CHUNK ? ch1 - c0 : CH_CHUNK;
        for (size_t i = 0; i < n; i++)
            acc[i] = 0.0f;
        for (int iy = 0; iy < g->grid_h; iy++) {
            const axis_tap ty = k->ty[u * g->grid_h + iy];
            for (int ix = 0; ix < g->grid_w; ix++) {
                const sample_taps s = taps_of(ty, k->tx[v * g->grid_w + ix], w, c);
                const float w1 = s.w[0], w2 = s.w[1], w3 = s.w[2], w4 = s.w[3];
                const float *restrict v1 = j->t + s.at[0] + c0, *restrict v2 = j->t + s.at[1] + c0;
                const float *restrict v3 = j->t + s.at[2] + c0, *restrict v4 = j->t + s.at[3] + c0;
                for (size_t i = 0; i < n; i++)
                    acc[i] += w1 * v1[i] + w2 * v2[i] + w3 * v3[i] + w4 * v4[i];
            }
        }
        float *yr = j->y + (r * c + c0) * out_plane + bin;
        for (size_t i = 0; i < n; i++)
            yr[i * out_plane] = acc[i] / g->count;
    }
}

/* Aligns the batch image's RoIs among [begin, end); each RoI writes only its own (c, ph, pw) block of y. */
static void forward_range(void *arg, size_t begin, size_t end)
{
    const align_job *j = arg;
    for (size_t r = begin; r < end; r++)
        if ((size_t)j->rois[5 * r] == j->batch)
            for_each_bin(j, r, 0, (size_t)j->c, forward_bin);
}

/* One bin of RoI r, channels [ch0, ch1): its gradient spread over its samples' taps. */
static void backward_bin(const align_job *j, const roi_grid *g, const bin_chunk *k, int u, int v, size_t r,
                         size_t ch0, size_t ch1)
{
    const size_t c = (size_t)j->c, w = (size_t)j->w;
    const size_t out_plane = (size_t)j->p->pooled_h * (size_t)j->p->pooled_w;
    const size_t bin = (size_t)(k->ph0 + u) * (size_t)j->p->pooled_w + (size_t)(k->pw0 + v);
    const float *gr = j->dy + r * c * out_plane + bin;
    const float inv_count = 1.0f / g->count; /* one product a channel where torchvision has four quotients */
    float grad[CH_CHUNK];
    for (size_t c0 = ch0; c0 < ch1; c0 += CH_CHUNK) {
        const size_t n = ch1 - c0 < CH_CHUNK ? ch1 - c0 : CH_CHUNK;
        for (size_t i = 0; i < n; i++)
            grad[i] = gr[(c0 + i) * out_plane] * inv_count;
        for (int iy = 0; iy < g->grid_h; iy++) {
            const axis_tap ty = k->ty[u * g->grid_h + iy];
            for (int ix = 0; ix < g->grid_w; ix++) {
                const sample_taps s = taps_of(ty, k->tx[v * g->grid_w + ix], w, c);
                /* The four taps may be the same cell (clamped at the border): updated one after another. */
                for (int q = 0; q < 4; q++) {
                    float *d = j->t + s.at[q] + c0;
                    const float wq = s.w[q];
                    for (size_t i = 0; i < n; i++)
                        d[i] += wq * grad[i];
                }
            }
        }
    }
}

/* Scatters the batch image's RoIs into the channels [begin, end) of its channels-last gradient, RoIs in order:
 * each thread owns whole channels, so every element receives its contributions in the same order whatever the
 * thread count. */
static void backward_range(void *arg, size_t begin, size_t end)
{
    const align_job *j = arg;
    const size_t cells = (size_t)j->h * (size_t)j->w, c = (size_t)j->c;
    for (size_t p = 0; p < cells; p++)
        for (size_t ch = begin; ch < end; ch++)
            j->t[p * c + ch] = 0.0f;
    for (size_t r = 0; r < (size_t)j->r; r++)
        if ((size_t)j->rois[5 * r] == j->batch)
            for_each_bin(j, r, begin, end, backward_bin);
}

/* Channels-last copies, one channel range at a time (parallel over channels). */
typedef struct transpose_job {
    const float *src; /* (c, h*w) */
    float *dst;       /* (h*w, c) */
    float *acc;       /* (c, h*w), added to instead (backward) */
    size_t c, cells;
} transpose_job;

static void to_channels_last(void *arg, size_t begin, size_t end)
{
    const transpose_job *j = arg;
    for (size_t ch = begin; ch < end; ch++)
        for (size_t p = 0; p < j->cells; p++)
            j->dst[p * j->c + ch] = j->src[ch * j->cells + p];
}

static void add_channels_last(void *arg, size_t begin, size_t end)
{
    const transpose_job *j = arg;
    for (size_t ch = begin; ch < end; ch++)
        for (size_t p = 0; p < j->cells; p++)
            j->acc[ch * j->cells + p] += j->dst[p * j->c + ch];
}

frcnn_status frcnn_roi_align_workspace_bytes(frcnn_ctx *ctx, const int64_t x_dims[4], size_t *bytes)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    if (!x_dims || !bytes)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "roi_align_workspace_bytes: %s is NULL",
                            x_dims ? "bytes" : "x_dims");
    for (int i = 0; i < 4; i++)
        if (x_dims[i] < 1)
            return frcnn__error(ctx, FRCNN_ERR_SHAPE, "roi_align_workspace_bytes: x dimension %d is %lld", i,
                                (long long)x_dims[i]);
    size_t n = sizeof(float);
    for (int i = 1; i < 4; i++) {
        if ((uint64_t)x_dims[i] > SIZE_MAX / n)
            return frcnn__error(ctx, FRCNN_ERR_OVERFLOW, "roi_align_workspace_bytes: one image's map overflows");
        n *= (size_t)x_dims[i];
    }
    *bytes = n;
    return FRCNN_OK;
}

static frcnn_status check_workspace(frcnn_ctx *ctx, const int64_t dims[4], const void *ws, size_t ws_bytes)
{
    size_t need;
    frcnn_status st = frcnn_roi_align_workspace_bytes(ctx, dims, &need);
    if (st == FRCNN_OK && (!ws || ws_bytes < need))
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "roi_align: workspace of %zu bytes given, %zu needed",
                            ws ? ws_bytes : 0, need);
    return st;
}

static frcnn_status shape_error(frcnn_ctx *ctx, const char *what, const frcnn_tensor *t, const char *expected)
{
    char s[96];
    frcnn__shape_str(t, s, sizeof s);
    return frcnn__error(ctx, FRCNN_ERR_SHAPE, "roi_align: %s has shape %s, expected %s", what, s, expected);
}

frcnn_status frcnn_roi_align_forward(frcnn_ctx *ctx, const frcnn_roi_align_params *p, const frcnn_tensor *x,
                                     const frcnn_tensor *rois, frcnn_tensor *y, void *ws, size_t ws_bytes)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    frcnn_status st;
    if ((st = check_params(ctx, p)) != FRCNN_OK || (st = frcnn__check_tensor(ctx, x, "roi_align: x", 4)) != FRCNN_OK ||
        (st = check_rois_shape(ctx, rois, -1)) != FRCNN_OK ||
        (st = frcnn__check_tensor(ctx, y, "roi_align: y", 4)) != FRCNN_OK)
        return st;
    const int64_t r = rois->dims[0];
    if (y->dims[0] != r || y->dims[1] != x->dims[1] || y->dims[2] != p->pooled_h || y->dims[3] != p->pooled_w)
        return shape_error(ctx, "y", y, "(rois, x's channels, pooled_h, pooled_w)");
    if ((st = check_workspace(ctx, x->dims, ws, ws_bytes)) != FRCNN_OK ||
        (st = check_rois_values(ctx, p, rois, x->dims[0])) != FRCNN_OK)
        return st;
    const size_t c = (size_t)x->dims[1], cells = (size_t)x->dims[2] * (size_t)x->dims[3];
    align_job job = {p, rois->data, r, x->dims[1], x->dims[2], x->dims[3], 0, ws, y->data, NULL};
    for (job.batch = 0; job.batch < (size_t)x->dims[0]; job.batch++) {
        transpose_job t = {x->data + job.batch * c * cells, ws, NULL, c, cells};
        frcnn__parallel_for(ctx, c, 16, to_channels_last, &t);
        frcnn__parallel_for(ctx, (size_t)r, 8, forward_range, &job);
    }
    return FRCNN_OK;
}

/* dx NULL: the parameters, dy and the rois' shape are checked (the batch indices need dx's batch size). */
frcnn_status frcnn_roi_align_backward(frcnn_ctx *ctx, const frcnn_roi_align_params *p, const frcnn_tensor *rois,
                                      const frcnn_tensor *dy, frcnn_tensor *dx, void *ws, size_t ws_bytes)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    frcnn_status st;
    if ((st = check_params(ctx, p)) != FRCNN_OK ||
        (st = frcnn__check_tensor(ctx, dy, "roi_align: dy", 4)) != FRCNN_OK ||
        (st = check_rois_shape(ctx, rois, dy->dims[0])) != FRCNN_OK)
        return st;
    if (dy->dims[2] != p->pooled_h || dy->dims[3] != p->pooled_w)
        return shape_error(ctx, "dy", dy, "(rois, channels, pooled_h, pooled_w)");
    if (!dx)
        return FRCNN_OK;
    if ((st = frcnn__check_tensor(ctx, dx, "roi_align: dx", 4)) != FRCNN_OK)
        return st;
    if (dy->dims[1] != dx->dims[1])
        return shape_error(ctx, "dy", dy, "(rois, dx's channels, pooled_h, pooled_w)");
    if ((st = check_workspace(ctx, dx->dims, ws, ws_bytes)) != FRCNN_OK ||
        (st = check_rois_values(ctx, p, rois, dx->dims[0])) != FRCNN_OK)
        return st;
    const size_t c = (size_t)dx->dims[1], cells = (size_t)dx->dims[2] * (size_t)dx->dims[3];
    align_job job = {p, rois->data, rois->dims[0], dx->dims[1], dx->dims[2], dx->dims[3], 0, ws, NULL, dy->data};
    for (job.batch = 0; job.batch < (size_t)dx->dims[0]; job.batch++) {
        frcnn__parallel_for(ctx, c, 16, backward_range, &job);
        transpose_job t = {NULL, ws, dx->data + job.batch * c * cells, c, cells};
        frcnn__parallel_for(ctx, c, 16, add_channels_last, &t);
    }
    return FRCNN_OK;
}
