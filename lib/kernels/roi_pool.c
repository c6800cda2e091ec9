/* RoI max pooling, forward and backward, with the exact quantisation of caffe-fast-rcnn's
 * src/caffe/layers/roi_pooling_layer.cpp (Ross Girshick, Fast R-CNN), arithmetic in float like its Dtype=float. */
#include "internal.h"

#include <float.h>
#include <math.h>

/* Rounded feature-map coordinates are clamped to +-2^30 before the conversion to an integer, so a huge (but
 * finite) box cannot overflow the int conversion; every box within reach of a real feature map is unaffected. */
#define ROI_COORD_LIMIT 1073741824.0f

frcnn_roi_pool_params frcnn_roi_pool_params_default(void)
{
    /* models/pascal_voc/VGG16/faster_rcnn_end2end/train.prototxt: roi_pool5 pooled_w 7, pooled_h 7,
     * spatial_scale 0.0625 (VGG16 conv5_3 has stride 16). */
    frcnn_roi_pool_params p;
    p.pooled_h = 7;
    p.pooled_w = 7;
    p.spatial_scale = 1.0f / 16.0f;
    return p;
}

static frcnn_status check_params(frcnn_ctx *ctx, const frcnn_roi_pool_params *p)
{
    if (!p)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "roi_pool: params is NULL");
    if (p->pooled_h < 1 || p->pooled_w < 1)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "roi_pool: pooled size %dx%d, expected at least 1x1",
                            p->pooled_h, p->pooled_w);
    if (!isfinite(p->spatial_scale) || !(p->spatial_scale > 0.0f))
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "roi_pool: spatial_scale %g, expected finite and > 0",
                            (double)p->spatial_scale);
    return FRCNN_OK;
}

/* rois must be (r, 5). */
static frcnn_status check_rois_shape(frcnn_ctx *ctx, const frcnn_tensor *rois)
{
    frcnn_status st = frcnn__check_tensor(ctx, rois, "roi_pool: rois", 2);
    if (st != FRCNN_OK)
        return st;
    if (rois->dims[1] != 5) {
        char s[96];
        frcnn__shape_str(rois, s, sizeof s);
        return frcnn__error(ctx, FRCNN_ERR_SHAPE, "roi_pool: rois has shape %s, expected (r, 5)", s);
    }
    return FRCNN_OK;
}

/* Checks every RoI row: the batch index an integer value in [0, n) and, when check_coords, the four coordinates
 * finite. Runs before anything is written, so a failing call leaves its outputs untouched. */
static frcnn_status check_rois_values(frcnn_ctx *ctx, const frcnn_tensor *rois, int64_t n, bool check_coords)
{
    const float *r = rois->data;
    for (int64_t i = 0; i < rois->dims[0]; i++, r += 5) {
        frcnn_status st = frcnn__check_roi_batch(ctx, "roi_pool", r, i, n);
        if (st != FRCNN_OK)
            return st;
        if (check_coords && !(isfinite(r[1]) && isfinite(r[2]) && isfinite(r[3]) && isfinite(r[4])))
            return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG,
                                "roi_pool: rois row %lld has a non-finite coordinate (%g, %g, %g, %g)",
                                (long long)i, (double)r[1], (double)r[2], (double)r[3], (double)r[4]);
    }
    return FRCNN_OK;
}

/* round(coord * scale) with the product in float and C round() (half away from zero), as Caffe does. */
static int64_t round_coord(float coord, float scale)
{
    float v = roundf(coord * scale);
    if (v > ROI_COORD_LIMIT)
        v = ROI_COORD_LIMIT;
    if (v < -ROI_COORD_LIMIT)
        v = -ROI_COORD_LIMIT;
    return (int64_t)v;
}

static int64_t clamp64(int64_t v, int64_t lo, int64_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* One bin's edges along one axis: floor(i * bin) and ceil((i + 1) * bin) with the products in float, offset by
 * the RoI's start and clipped to [0, size]. The bin is empty when *end <= *start. */
static void bin_edges(int i, float bin, int64_t roi_start, int64_t size, int64_t *start, int64_t *end)
{
    int64_t s = (int64_t)floorf((float)i * bin);
    int64_t e = (int64_t)ceilf((float)(i + 1) * bin);
    *start = clamp64(s + roi_start, 0, size);
    *end = clamp64(e + roi_start, 0, size);
}

/* The width of one bin: the RoI's extent max(end - start + 1, 1) (malformed RoIs are forced to 1 pixel) over
 * the pooled count, in float. */
static float bin_size(int64_t roi_start, int64_t roi_end, int pooled)
{
    int64_t extent = roi_end - roi_start + 1;
    if (extent < 1)
        extent = 1;
    return (float)extent / (float)pooled;
}

typedef struct forward_job {
    const frcnn_roi_pool_params *p;
    const float *x;    /* (n, c, h, w) */
    const float *rois; /* (r, 5) */
    float *y;          /* (r, c, ph, pw) */
    int32_t *argmax;   /* (r, c, ph, pw) or NULL */
    int64_t c, h, w;
} forward_job;

/* Bin edges are computed once per RoI into stack arrays, EDGE_CHUNK bins per axis at a time (one chunk for any
 * practical pooled size), so the channel loop can sit outside the bin loops and read each plane contiguously. */
#define EDGE_CHUNK 32

/* Pools rois [begin, end); each RoI writes only its own (c, ph, pw) block of y and argmax. */
static void forward_range(void *arg, size_t begin, size_t end)
{
    const forward_job *j = arg;
    const int pooled_h = j->p->pooled_h, pooled_w = j->p->pooled_w;
    const float scale = j->p->spatial_scale;
    const size_t plane = (size_t)j->h * (size_t)j->w;
    const size_t out_plane = (size_t)pooled_h * (size_t)pooled_w;
    int64_t hs[EDGE_CHUNK], he[EDGE_CHUNK], ws[EDGE_CHUNK], we[EDGE_CHUNK];

    for (size_t r = begin; r < end; r++) {
        const float *roi = j->rois + 5 * r;
        const size_t b = (size_t)roi[0];
        const int64_t start_w = round_coord(roi[1], scale);
        const int64_t start_h = round_coord(roi[2], scale);
        const int64_t end_w = round_coord(roi[3], scale);
        const int64_t end_h = round_coord(roi[4], scale);
        const float bin_h = bin_size(start_h, end_h, pooled_h);
        const float bin_w = bin_size(start_w, end_w, pooled_w);
        const float *xb = j->x + b * (size_t)j->c * plane;
        float *yr = j->y + r * (size_t)j->c * out_plane;
        int32_t *ar = j->argmax ? j->argmax + r * (size_t)j->c * out_plane : NULL;

        for (int ph0 = 0; ph0 < pooled_h; ph0 += EDGE_CHUNK) {
            const int nh = pooled_h - ph0 < EDGE_CHUNK ? pooled_h - ph0 : EDGE_CHUNK;
            for (int i = 0; i < nh; i++)
                bin_edges(ph0 + i, bin_h, start_h, j->h, &hs[i], &he[i]);
            for (int pw0 = 0; pw0 < pooled_w; pw0 += EDGE_CHUNK) {
                const int nw = pooled_w - pw0 < EDGE_CHUNK ? pooled_w - pw0 : EDGE_CHUNK;
                for (int i = 0; i < nw; i++)
                    bin_edges(pw0 + i, bin_w, start_w, j->w, &ws[i], &we[i]);
                for (int64_t ch = 0; ch < j->c; ch++) {
                    const float *xc = xb + (size_t)ch * plane;
                    const size_t o0 = (size_t)ch * out_plane;
                    for (int u = 0; u < nh; u++) {
                        for (int v = 0; v < nw; v++) {
                            const size_t o = o0 + (size_t)(ph0 + u) * (size_t)pooled_w + (size_t)(pw0 + v);
                            if (he[u] <= hs[u] || we[v] <= ws[v]) { /* empty bin */
                                yr[o] = 0.0f;
                                if (ar)
                                    ar[o] = -1;
                                continue;
                            }
                            float best = -FLT_MAX;
                            int32_t best_i = -1;
                            for (int64_t hh = hs[u]; hh < he[u]; hh++) {
                                const float *row = xc + (size_t)hh * (size_t)j->w;
                                const int32_t base = (int32_t)(hh * j->w); /* h * w fits: checked */
                                for (int64_t ww = ws[v]; ww < we[v]; ww++) {
                                    /* strict: ties keep the first in row-major order; written without a
                                     * branch because the outcome is unpredictable */
                                    const float val = row[ww];
                                    const bool gt = val > best;
                                    best = gt ? val : best;
                                    best_i = gt ? base + (int32_t)ww : best_i;
                                }
                            }
                            yr[o] = best;
                            if (ar)
                                ar[o] = best_i;
                        }
                    }
                }
            }
        }
    }
}

/* y (r, c, ph, pw) = max over each bin of x (n, c, h, w) for the RoIs in rois (r, 5); overwrites y and, if not
 * NULL, argmax (r*c*ph*pw int32: flat index h*w_dim + w within the batch image's plane, -1 for an empty bin).
 * Like Caffe, a bin whose values are all -FLT_MAX or below (or NaN) outputs -FLT_MAX with argmax -1. */
frcnn_status frcnn_roi_pool_forward(frcnn_ctx *ctx, const frcnn_roi_pool_params *p, const frcnn_tensor *x,
                                    const frcnn_tensor *rois, frcnn_tensor *y, int32_t *argmax)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    frcnn_status st;
    if ((st = check_params(ctx, p)) != FRCNN_OK)
        return st;
    if ((st = frcnn__check_tensor(ctx, x, "roi_pool: x", 4)) != FRCNN_OK)
        return st;
    if ((st = check_rois_shape(ctx, rois)) != FRCNN_OK)
        return st;
    if ((st = frcnn__check_tensor(ctx, y, "roi_pool: y", 4)) != FRCNN_OK)
        return st;
    const int64_t r = rois->dims[0], c = x->dims[1], h = x->dims[2], w = x->dims[3];
    if (y->dims[0] != r || y->dims[1] != c || y->dims[2] != p->pooled_h || y->dims[3] != p->pooled_w) {
        char sy[96], sx[96], sr[96];
        frcnn__shape_str(y, sy, sizeof sy);
        frcnn__shape_str(x, sx, sizeof sx);
        frcnn__shape_str(rois, sr, sizeof sr);
        return frcnn__error(ctx, FRCNN_ERR_SHAPE,
                            "roi_pool: y has shape %s, expected (%lld, %lld, %d, %d) from x %s, rois %s and the "
                            "pooled size",
                            sy, (long long)r, (long long)c, p->pooled_h, p->pooled_w, sx, sr);
    }
    if (h * w > INT32_MAX) /* both are at most INT32_MAX, so the product fits in int64 */
        return frcnn__error(ctx, FRCNN_ERR_OVERFLOW, "roi_pool: x plane %lldx%lld does not fit an int32 argmax",
                            (long long)h, (long long)w);
    if ((st = check_rois_values(ctx, rois, x->dims[0], true)) != FRCNN_OK)
        return st;

    forward_job job = {p, x->data, rois->data, y->data, argmax, c, h, w};
    frcnn__parallel_for(ctx, (size_t)r, 8, forward_range, &job);
    return FRCNN_OK;
}

typedef struct backward_job {
    const float *rois;     /* (r, 5) */
    const float *dy;       /* (r, c, ph, pw) */
    const int32_t *argmax; /* (r, c, ph, pw) */
    float *dx;             /* (n, c, h, w) */
    int64_t r, c;
    size_t plane, out_plane;
} backward_job;

/* Scatters into the channels [begin, end) of dx, RoIs in order: each thread owns whole channels, so every dx
 * element receives its contributions in the same order whatever the thread count. */
static void backward_range(void *arg, size_t begin, size_t end)
{
    const backward_job *j = arg;
    for (int64_t r = 0; r < j->r; r++) {
        const size_t b = (size_t)j->rois[5 * r];
        for (size_t ch = begin; ch < end; ch++) {
            const size_t o = ((size_t)r * (size_t)j->c + ch) * j->out_plane;
            const float *g = j->dy + o;
            const int32_t *a = j->argmax + o;
            float *dxc = j->dx + (b * (size_t)j->c + ch) * j->plane;
            for (size_t i = 0; i < j->out_plane; i++) {
                if (a[i] >= 0)
                    dxc[a[i]] += g[i];
            }
        }
    }
}

/* dx (n, c, h, w) += dy (r, c, ph, pw) scattered through argmax (r*c*ph*pw, from the forward pass); rois (r, 5)
 * gives each RoI's batch index. dx NULL means "not needed": the arguments are checked and nothing is written.
 * Every argmax entry must be -1 or inside the plane (checked before anything is written). caffe-fast-rcnn has
 * no CPU backward; this is the scatter its GPU backward computes as a gather. */
frcnn_status frcnn_roi_pool_backward(frcnn_ctx *ctx, const frcnn_roi_pool_params *p, const frcnn_tensor *rois,
                                     const frcnn_tensor *dy, const int32_t *argmax, frcnn_tensor *dx)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    frcnn_status st;
    if ((st = check_params(ctx, p)) != FRCNN_OK)
        return st;
    if ((st = check_rois_shape(ctx, rois)) != FRCNN_OK)
        return st;
    if ((st = frcnn__check_tensor(ctx, dy, "roi_pool: dy", 4)) != FRCNN_OK)
        return st;
    if (!argmax)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "roi_pool: argmax is NULL (backward needs it)");
    const int64_t r = rois->dims[0];
    if (dy->dims[0] != r || dy->dims[2] != p->pooled_h || dy->dims[3] != p->pooled_w) {
        char sd[96], sr[96];
        frcnn__shape_str(dy, sd, sizeof sd);
        frcnn__shape_str(rois, sr, sizeof sr);
        return frcnn__error(ctx, FRCNN_ERR_SHAPE, "roi_pool: dy has shape %s, expected (%lld, c, %d, %d) from rois %s "
                            "and the pooled size", sd, (long long)r, p->pooled_h, p->pooled_w, sr);
    }
    if (!dx)
        return FRCNN_OK;
    if ((st = frcnn__check_tensor(ctx, dx, "roi_pool: dx", 4)) != FRCNN_OK)
        return st;
    if (dx->dims[1] != dy->dims[1]) {
        char sd[96], sx[96];
        frcnn__shape_str(dy, sd, sizeof sd);
        frcnn__shape_str(dx, sx, sizeof sx);
        return frcnn__error(ctx, FRCNN_ERR_SHAPE, "roi_pool: dy has shape %s but dx has shape %s (channels differ)",
                            sd, sx);
    }
    const int64_t plane = dx->dims[2] * dx->dims[3];
    if (plane > INT32_MAX)
        return frcnn__error(ctx, FRCNN_ERR_OVERFLOW, "roi_pool: dx plane %lldx%lld does not fit an int32 argmax",
                            (long long)dx->dims[2], (long long)dx->dims[3]);
    if ((st = check_rois_values(ctx, rois, dx->dims[0], false)) != FRCNN_OK)
        return st;
    size_t bad = frcnn__first_index_outside(argmax, dy->numel, -1, plane);
    if (bad < dy->numel)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG,
                            "roi_pool: argmax[%zu] is %ld, expected -1 or a plane index below %lld", bad,
                            (long)argmax[bad], (long long)plane);

    backward_job job = {rois->data, dy->data, argmax, dx->data, r, dx->dims[1], (size_t)plane,
                        (size_t)p->pooled_h * (size_t)p->pooled_w};
    frcnn__parallel_for(ctx, (size_t)dx->dims[1], 16, backward_range, &job);
    return FRCNN_OK;
}
