/* Anchor boxes: the base shapes of py-faster-rcnn's rpn/generate_anchors.py (arithmetic in double, as numpy's
 * float64 there, stored as float) or of torchvision's AnchorGenerator (in float, as torch), and their shifts over
 * the feature map (rpn/anchor_target_layer.py, proposal_layer.py). */
#include "box_internal.h"

#include <float.h>
#include <math.h>

frcnn_anchor_params frcnn_anchor_params_default(void)
{
    /* generate_anchors(base_size=16, ratios=[0.5, 1, 2], scales=2**np.arange(3, 6)). */
    frcnn_anchor_params p = {0};
    p.base_size = 16.0f;
    p.n_ratios = 3;
    p.ratios[0] = 0.5f;
    p.ratios[1] = 1.0f;
    p.ratios[2] = 2.0f;
    p.n_scales = 3;
    p.scales[0] = 8.0f;
    p.scales[1] = 16.0f;
    p.scales[2] = 32.0f;
    return p;
}

static frcnn_status check_params(frcnn_ctx *ctx, const frcnn_anchor_params *p)
{
    if (!(isfinite(p->base_size) && p->base_size > 0.0f))
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "anchors: base_size %g, expected finite and > 0",
                            (double)p->base_size);
    if (p->n_ratios < 1 || p->n_ratios > FRCNN_MAX_ANCHOR_SHAPES)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "anchors: n_ratios %d, expected 1 to %d", p->n_ratios,
                            FRCNN_MAX_ANCHOR_SHAPES);
    if (p->n_scales < 1 || p->n_scales > FRCNN_MAX_ANCHOR_SHAPES)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "anchors: n_scales %d, expected 1 to %d", p->n_scales,
                            FRCNN_MAX_ANCHOR_SHAPES);
    for (int i = 0; i < p->n_ratios; i++)
        if (!(isfinite(p->ratios[i]) && p->ratios[i] > 0.0f))
            return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "anchors: ratios[%d] is %g, expected finite and > 0", i,
                                (double)p->ratios[i]);
    for (int i = 0; i < p->n_scales; i++)
        if (!(isfinite(p->scales[i]) && p->scales[i] > 0.0f))
            return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "anchors: scales[%d] is %g, expected finite and > 0", i,
                                (double)p->scales[i]);
    return FRCNN_OK;
}

/* A box of width w and height h centred at (cx, cy) in the inclusive convention (generate_anchors._mkanchors). */
static void make_anchor(double w, double h, double cx, double cy, double out[4])
{
    out[0] = cx - 0.5 * (w - 1.0);
    out[1] = cy - 0.5 * (h - 1.0);
    out[2] = cx + 0.5 * (w - 1.0);
    out[3] = cy + 0.5 * (h - 1.0);
}

/* py-faster-rcnn's generate_anchors (inclusive convention). */
static frcnn_status inclusive_anchors(frcnn_ctx *ctx, const frcnn_anchor_params *p, float *out)
{
    /* The base box (0, 0, base - 1, base - 1): width and height base, centre (base - 1) / 2. */
    double base = p->base_size, ctr = 0.5 * (base - 1.0), size = base * base;
    double all[FRCNN_MAX_ANCHOR_SHAPES * FRCNN_MAX_ANCHOR_SHAPES][4];
    int a = 0;
    for (int r = 0; r < p->n_ratios; r++) {
        /* _ratio_enum: the area kept, the width rounded first, then the height from it. rint in the default
         * rounding mode rounds half to even, as np.round does (16 / ratio 0.5 -> ws 23, hs round(11.5) = 12). */
        double ratio = p->ratios[r];
        double ws = rint(sqrt(size / ratio)), hs = rint(ws * ratio);
        if (!(ws >= 1.0 && hs >= 1.0))
            return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG,
                                "anchors: base_size %g with ratio %g gives a %gx%g (w x h) anchor, expected at "
                                "least 1x1",
                                base, ratio, ws, hs);
        double ra[4];
        make_anchor(ws, hs, ctr, ctr, ra);
        /* _scale_enum recomputes width, height and centre from the ratio anchor (_whctrs). */
        double w = ra[2] - ra[0] + 1.0, h = ra[3] - ra[1] + 1.0;
        double cx = ra[0] + 0.5 * (w - 1.0), cy = ra[1] + 0.5 * (h - 1.0);
        for (int s = 0; s < p->n_scales; s++, a++) {
            double scale = p->scales[s];
            make_anchor(w * scale, h * scale, cx, cy, all[a]);
            for (int c = 0; c < 4; c++)
                if (!(fabs(all[a][c]) <= FLT_MAX))
                    return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG,
                                        "anchors: base_size %g, ratio %g, scale %g give a coordinate %g beyond float",
                                        base, ratio, scale, all[a][c]);
        }
    }
    for (int i = 0; i < a; i++)
        for (int c = 0; c < 4; c++)
            out[4 * i + c] = (float)all[i][c];
    return FRCNN_OK;
}

/* torchvision's AnchorGenerator.generate_anchors (continuous convention), in float as torch computes it:
 * h_ratios = sqrt(ratios), w_ratios = 1 / h_ratios, ws = w_ratios * size, base = round((-ws, -hs, ws, hs) / 2). */
static frcnn_status continuous_anchors(frcnn_ctx *ctx, const frcnn_anchor_params *p, float *out)
{
    for (int r = 0, a = 0; r < p->n_ratios; r++) {
        float h_ratio = sqrtf(p->ratios[r]), w_ratio = 1.0f / h_ratio;
        for (int s = 0; s < p->n_scales; s++, a++) {
            float size = p->base_size * p->scales[s], ws = w_ratio * size, hs = h_ratio * size;
            if (!(ws <= FLT_MAX && hs <= FLT_MAX))
                return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG,
                                    "anchors: base_size %g, ratio %g, scale %g give a size beyond float",
                                    (double)p->base_size, (double)p->ratios[r], (double)p->scales[s]);
            /* rintf rounds half to even in the default rounding mode, as torch.round. */
            float *o = out + 4 * a;
            o[0] = rintf(-ws / 2.0f);
            o[1] = rintf(-hs / 2.0f);
            o[2] = rintf(ws / 2.0f);
            o[3] = rintf(hs / 2.0f);
            if (!(o[2] > o[0] && o[3] > o[1]))
                return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG,
                                    "anchors: base_size %g, ratio %g, scale %g give a %gx%g (w x h) anchor, expected "
                                    "a positive size",
                                    (double)p->base_size, (double)p->ratios[r], (double)p->scales[s],
                                    (double)(o[2] - o[0]), (double)(o[3] - o[1]));
        }
    }
    return FRCNN_OK;
}

frcnn_status frcnn_anchors_base_conv(frcnn_ctx *ctx, frcnn_box_convention conv, const frcnn_anchor_params *p,
                                     float *out)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    if (!p || !out)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "anchors: %s is NULL", !p ? "params" : "out");
    frcnn_status st = frcnn__check_box_convention(ctx, "anchors", conv);
    if (st == FRCNN_OK)
        st = check_params(ctx, p);
    if (st != FRCNN_OK)
        return st;
    return conv == FRCNN_BOXES_CONTINUOUS ? continuous_anchors(ctx, p, out) : inclusive_anchors(ctx, p, out);
}

frcnn_status frcnn_anchors_base(frcnn_ctx *ctx, const frcnn_anchor_params *p, float *out)
{
    return frcnn_anchors_base_conv(ctx, FRCNN_BOXES_INCLUSIVE, p, out);
}

frcnn_status frcnn_anchors_grid(frcnn_ctx *ctx, const float *base, size_t a, int feat_h, int feat_w, int stride,
                                float *out)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    if (!base || !out)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "anchors_grid: %s is NULL", !base ? "base" : "out");
    if (a < 1)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "anchors_grid: 0 base anchors, expected at least 1");
    if (feat_h < 1 || feat_w < 1)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "anchors_grid: feature map %dx%d (h x w), expected >= 1x1",
                            feat_h, feat_w);
    if (stride < 1)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "anchors_grid: stride %d, expected >= 1", stride);
    size_t cells, floats, bytes;
    if (!frcnn__mul_size((size_t)feat_h, (size_t)feat_w, &cells) || !frcnn__mul_size(cells, a, &floats) ||
        !frcnn__mul_size(floats, 4 * sizeof(float), &bytes))
        return frcnn__error(ctx, FRCNN_ERR_OVERFLOW, "anchors_grid: %dx%d map x %zu anchors overflows", feat_h,
                            feat_w, a);
    /* Finite base coordinates far enough from FLT_MAX that no shifted one overflows the float conversion. */
    double max_shift = (double)(feat_h > feat_w ? feat_h : feat_w) * (double)stride, limit = FLT_MAX - max_shift;
    for (size_t i = 0; i < 4 * a; i++)
        if (!(fabs((double)base[i]) <= limit))
            return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "anchors_grid: base anchor %zu coordinate %d is %g",
                                i / 4, (int)(i % 4), (double)base[i]);
    /* shift (x * stride, y * stride) added to every base anchor, cells in row-major (y, x) order: numpy's
     * meshgrid(shift_x, shift_y) raveled. The sum is formed in double and rounded once, as numpy's float64. */
    float *o = out;
    for (int y = 0; y < feat_h; y++) {
        double sy = (double)y * (double)stride;
        for (int x = 0; x < feat_w; x++) {
            double sx = (double)x * (double)stride;
            for (size_t k = 0; k < a; k++, o += 4) {
                const float *b = base + 4 * k;
                o[0] = (float)((double)b[0] + sx);
                o[1] = (float)((double)b[1] + sy);
                o[2] = (float)((double)b[2] + sx);
                o[3] = (float)((double)b[3] + sy);
            }
        }
    }
    return FRCNN_OK;
}
