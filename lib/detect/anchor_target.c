/* RPN training targets: labels every anchor foreground, background or ignored, samples the RPN mini-batch, and
 * writes the regression targets and loss weights of the labelled anchors, as py-faster-rcnn's
 * lib/rpn/anchor_target_layer.py with lib/fast_rcnn/config.py's values (RPN_POSITIVE_OVERLAP 0.7,
 * RPN_NEGATIVE_OVERLAP 0.3, RPN_BATCHSIZE 256, RPN_FG_FRACTION 0.5, RPN_CLOBBER_POSITIVES False,
 * RPN_BBOX_INSIDE_WEIGHTS 1, RPN_POSITIVE_WEIGHT -1, allowed_border 0 from the prototxt's default). */
#include "internal.h"

#include "box_internal.h"

#include <math.h>
#include <string.h>

frcnn_anchor_target_params frcnn_anchor_target_params_default(void)
{
    frcnn_anchor_target_params p;
    p.positive_iou = 0.7f;
    p.negative_iou = 0.3f;
    p.batch_size = 256;
    p.fg_fraction = 0.5f;
    p.allowed_border = 0;
    p.box_convention = FRCNN_BOXES_INCLUSIVE;
    return p;
}

static frcnn_status check_params(frcnn_ctx *ctx, const frcnn_anchor_target_params *p)
{
    /* negative_iou 0 labels no background; positive_iou above 1 leaves only the best anchors of each GT box. */
    if (!isfinite(p->negative_iou) || !isfinite(p->positive_iou) || !(p->negative_iou >= 0.0f) ||
        !(p->positive_iou >= p->negative_iou))
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG,
                            "anchor_targets: positive_iou %g, negative_iou %g, expected finite and "
                            "0 <= negative_iou <= positive_iou",
                            (double)p->positive_iou, (double)p->negative_iou);
    if (p->batch_size < 1)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "anchor_targets: batch_size %d, expected >= 1",
                            p->batch_size);
    if (!(p->fg_fraction >= 0.0f && p->fg_fraction <= 1.0f))
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "anchor_targets: fg_fraction %g, expected in [0, 1]",
                            (double)p->fg_fraction);
    return FRCNN_OK;
}

/* Every anchor finite; every GT box finite with a positive width and height (it is a regression target). */
static frcnn_status check_boxes(frcnn_ctx *ctx, const float *anchors, size_t n, const float *gt, size_t g,
                                float off)
{
    for (size_t i = 0; i < n; i++) {
        const float *a = anchors + 4 * i;
        if (!(isfinite(a[0]) && isfinite(a[1]) && isfinite(a[2]) && isfinite(a[3])))
            return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG,
                                "anchor_targets: anchors row %zu is not finite (%g, %g, %g, %g)", i, (double)a[0],
                                (double)a[1], (double)a[2], (double)a[3]);
    }
    for (size_t j = 0; j < g; j++) {
        const float *b = gt + 4 * j;
        if (!(isfinite(b[0]) && isfinite(b[1]) && isfinite(b[2]) && isfinite(b[3])))
            return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "anchor_targets: gt row %zu is not finite (%g, %g, %g, %g)",
                                j, (double)b[0], (double)b[1], (double)b[2], (double)b[3]);
        if (!(b[2] - b[0] + off > 0.0f && b[3] - b[1] + off > 0.0f))
            return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG,
                                "anchor_targets: gt row %zu (%g, %g, %g, %g) has width or height <= 0", j,
                                (double)b[0], (double)b[1], (double)b[2], (double)b[3]);
    }
    return FRCNN_OK;
}

/* Keeps a uniformly random `keep` of the anchors whose label is `label` and sets the others to -1. The candidates
 * are listed in ascending index order and frcnn_rng_choose picks the kept ones, so the draws depend only on the
 * candidate count and `keep`; nothing is drawn when there are no more candidates than `keep`. Returns how many
 * remain labelled `label`. idx: scratch for n indices. */
static size_t subsample(frcnn_rng *rng, int32_t *labels, size_t n, int32_t label, size_t keep, uint32_t *idx)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        if (labels[i] == label)
            idx[count++] = (uint32_t)i;
    if (count <= keep)
        return count;
    frcnn_rng_choose(rng, idx, count, keep);
    for (size_t k = keep; k < count; k++)
        labels[idx[k]] = -1;
    return keep;
}

/* anchors (n, 4), gt (g, 4) in input-image pixels; labels[n]; targets, inside_w, outside_w (n, 4), all
 * overwritten. RNG draws, in this order: the foreground subsample (only when more than
 * (int)(fg_fraction * batch_size) anchors are foreground), then the background subsample (only when more than
 * batch_size minus the kept foreground are background). Scratch, one block of n * (g + 3) * 4 bytes: the IoU of
 * every inside anchor with every GT box, the inside anchors' indices, and their best GT box. A bad argument leaves
 * the outputs untouched; a full arena leaves every anchor ignored (-1, zero targets and weights). */
frcnn_status frcnn_anchor_targets(frcnn_ctx *ctx, frcnn_arena *scratch, const frcnn_anchor_target_params *p,
                                  frcnn_rng *rng, const float *anchors, size_t n, const float *gt, size_t g,
                                  float image_h, float image_w, int32_t *labels, float *targets, float *inside_w,
                                  float *outside_w)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    const char *null_arg = !scratch              ? "scratch"
                           : !p                  ? "params"
                           : !rng                ? "rng"
                           : !labels             ? "labels"
                           : !targets            ? "targets"
                           : !inside_w           ? "inside_w"
                           : !outside_w          ? "outside_w"
                           : (n > 0 && !anchors) ? "anchors"
                           : (g > 0 && !gt)      ? "gt"
                                                 : NULL;
    if (null_arg)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "anchor_targets: %s is NULL", null_arg);
    frcnn_status st = check_params(ctx, p);
    if (st != FRCNN_OK)
        return st;
    if (!isfinite(image_h) || !isfinite(image_w) || !(image_h > 0.0f) || !(image_w > 0.0f))
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "anchor_targets: image size %gx%g (h x w), expected > 0",
                            (double)image_h, (double)image_w);
    if (n > UINT32_MAX || g > UINT32_MAX)
        return frcnn__error(ctx, FRCNN_ERR_OVERFLOW, "anchor_targets: %zu anchors and %zu gt boxes, at most %u each",
                            n, g, (unsigned)UINT32_MAX);
    if ((st = frcnn__check_box_convention(ctx, "anchor_targets", p->box_convention)) != FRCNN_OK ||
        (st = check_boxes(ctx, anchors, n, gt, g, frcnn__box_offset(p->box_convention))) != FRCNN_OK)
        return st;
    size_t per_anchor, bytes;
    if (!frcnn__add_size(g, 3, &per_anchor) || !frcnn__mul_size(n, per_anchor, &bytes) ||
        !frcnn__mul_size(bytes, 4, &bytes))
        return frcnn__error(ctx, FRCNN_ERR_OVERFLOW, "anchor_targets: scratch for %zu anchors x %zu gt overflows", n,
                            g);

    const size_t mark = frcnn_arena_mark(scratch);
    for (size_t i = 0; i < n; i++)
        labels[i] = -1;
    memset(targets, 0, n * 4 * sizeof(float));
    memset(inside_w, 0, n * 4 * sizeof(float));
    memset(outside_w, 0, n * 4 * sizeof(float));
    if (n == 0)
        return FRCNN_OK;

    void *block;
    if ((st = frcnn_arena_alloc(scratch, bytes, &block)) != FRCNN_OK)
        goto done;
    float *iou = block;                           /* (m, g): IoU of the r-th inside anchor with GT box j */
    uint32_t *inside = (uint32_t *)(iou + n * g); /* [m]: anchor index of the r-th inside anchor */
    uint32_t *best = inside + n;                  /* [m]: its highest-IoU GT box, the first one on ties */
    uint32_t *idx = best + n;                     /* [n]: candidate lists for sampling */

    /* Anchors reaching beyond the image by more than allowed_border stay ignored (label -1, zero weights). */
    size_t m = 0;
    const double border = (double)p->allowed_border;
    for (size_t i = 0; i < n; i++) {
        const float *a = anchors + 4 * i;
        bool within = (double)a[0] >= -border && (double)a[1] >= -border &&
                      (double)a[2] < (double)image_w + border && (double)a[3] < (double)image_h + border;
        if (p->allowed_border < 0 || within)
            inside[m++] = (uint32_t)i;
    }

    for (size_t r = 0; r < m; r++) {
        const float *a = anchors + 4 * (size_t)inside[r];
        float *row = iou + r * g;
        uint32_t arg = 0;
        for (size_t j = 0; j < g; j++) {
            row[j] = frcnn__box_iou1(a, gt + 4 * j, frcnn__box_offset(p->box_convention));
            if (row[j] > row[arg])
                arg = (uint32_t)j;
        }
        best[r] = arg;
    }

    /* RPN_CLOBBER_POSITIVES false: background first, then the best anchors of each GT box, then IoU >= positive,
     * so a foreground label always wins. With no GT box every anchor's best IoU is 0. */
    for (size_t r = 0; r < m; r++) {
        float max = g > 0 ? iou[r * g + best[r]] : 0.0f;
        if (max < p->negative_iou)
            labels[inside[r]] = 0;
    }
    for (size_t j = 0; j < g; j++) {
        float gt_max = 0.0f;
        for (size_t r = 0; r < m; r++)
            if (iou[r * g + j] > gt_max)
                gt_max = iou[r * g + j];
        /* Every anchor reaching the GT box's best IoU, ties included; a GT box overlapping no anchor marks none
         * (py-faster-rcnn would mark every zero-IoU anchor foreground then). */
        if (gt_max > 0.0f)
            for (size_t r = 0; r < m; r++)
                if (iou[r * g + j] == gt_max)
                    labels[inside[r]] = 1;
    }
    for (size_t r = 0; r < m; r++)
        if (g > 0 && iou[r * g + best[r]] >= p->positive_iou)
            labels[inside[r]] = 1;

    /* num_fg = int(RPN_FG_FRACTION * RPN_BATCHSIZE); num_bg = RPN_BATCHSIZE - (foreground kept). */
    const size_t fg_quota = (size_t)((double)p->fg_fraction * (double)p->batch_size);
    const size_t n_fg = subsample(rng, labels, n, 1, fg_quota, idx);
    const size_t n_bg = subsample(rng, labels, n, 0, (size_t)p->batch_size - n_fg, idx);

    static const float zero_means[4] = {0.0f, 0.0f, 0.0f, 0.0f}, unit_stds[4] = {1.0f, 1.0f, 1.0f, 1.0f};
    for (size_t r = 0; r < m; r++) {
        size_t i = inside[r];
        if (labels[i] != 1)
            continue;
        st = frcnn_box_encode_conv(ctx, p->box_convention, anchors + 4 * i, gt + 4 * (size_t)best[r], 1, zero_means,
                                   unit_stds, targets + 4 * i);
        if (st != FRCNN_OK)
            goto done;
        for (int k = 0; k < 4; k++)
            inside_w[4 * i + (size_t)k] = 1.0f;
    }
    /* RPN_POSITIVE_WEIGHT -1: every labelled anchor weighs 1 / (number of labelled anchors). */
    if (n_fg + n_bg > 0) {
        const float w = 1.0f / (float)(n_fg + n_bg);
        for (size_t i = 0; i < n; i++)
            if (labels[i] >= 0)
                for (int k = 0; k < 4; k++)
                    outside_w[4 * i + (size_t)k] = w;
    }
    st = FRCNN_OK;
done:
    frcnn_arena_reset(scratch, mark);
    return st;
}
