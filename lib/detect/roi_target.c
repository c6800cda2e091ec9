/* Fast R-CNN head training targets: samples the RoIs the detection head trains on from the proposals plus the GT
 * boxes, and writes their class labels and class-specific normalised regression targets, as py-faster-rcnn's
 * lib/rpn/proposal_target_layer.py with lib/fast_rcnn/config.py and experiments/cfgs/faster_rcnn_end2end.yml:
 * BATCH_SIZE 128, FG_FRACTION 0.25, FG_THRESH 0.5, BG_THRESH_HI 0.5, BG_THRESH_LO 0.0 (end2end),
 * BBOX_NORMALIZE_MEANS (0, 0, 0, 0), BBOX_NORMALIZE_STDS (0.1, 0.1, 0.2, 0.2), BBOX_INSIDE_WEIGHTS 1. */
#include "internal.h"

#include "box_internal.h"

#include <math.h>
#include <string.h>

frcnn_roi_target_params frcnn_roi_target_params_default(void)
{
    frcnn_roi_target_params p;
    p.batch_size = 128;
    p.fg_fraction = 0.25f;
    p.fg_iou = 0.5f;
    p.bg_iou_hi = 0.5f;
    p.bg_iou_lo = 0.0f;
    p.box_convention = FRCNN_BOXES_INCLUSIVE;
    for (int k = 0; k < 4; k++)
        p.means[k] = 0.0f;
    p.stds[0] = 0.1f;
    p.stds[1] = 0.1f;
    p.stds[2] = 0.2f;
    p.stds[3] = 0.2f;
    return p;
}

static frcnn_status check_params(frcnn_ctx *ctx, const frcnn_roi_target_params *p, int num_classes)
{
    if (p->batch_size < 1)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "roi_targets: batch_size %d, expected >= 1", p->batch_size);
    if (!(p->fg_fraction >= 0.0f && p->fg_fraction <= 1.0f))
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "roi_targets: fg_fraction %g, expected in [0, 1]",
                            (double)p->fg_fraction);
    /* A RoI reaching fg_iou is foreground even when bg_iou_hi lies above it, so no RoI is sampled twice. */
    if (!isfinite(p->fg_iou) || !isfinite(p->bg_iou_hi) || !(p->fg_iou >= 0.0f) || !(p->bg_iou_lo >= 0.0f) ||
        !(p->bg_iou_lo <= p->bg_iou_hi))
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG,
                            "roi_targets: fg_iou %g, bg_iou [%g, %g), expected finite, fg_iou >= 0 and "
                            "0 <= bg_iou_lo <= bg_iou_hi",
                            (double)p->fg_iou, (double)p->bg_iou_lo, (double)p->bg_iou_hi);
    for (int k = 0; k < 4; k++)
        if (!isfinite(p->means[k]) || !isfinite(p->stds[k]) || !(p->stds[k] > 0.0f))
            return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG,
                                "roi_targets: means[%d] %g, stds[%d] %g, expected finite and stds > 0", k,
                                (double)p->means[k], k, (double)p->stds[k]);
    if (num_classes < 2)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG,
                            "roi_targets: num_classes %d, expected >= 2 (background and at least one class)",
                            num_classes);
    return FRCNN_OK;
}

/* Proposals finite; GT boxes finite with a positive width and height, labels in [1, num_classes). */
static frcnn_status check_inputs(frcnn_ctx *ctx, const float *proposals, size_t np, const float *gt,
                                 const int32_t *gt_labels, size_t g, int num_classes, float off)
{
    for (size_t i = 0; i < np; i++) {
        const float *b = proposals + 4 * i;
        if (!(isfinite(b[0]) && isfinite(b[1]) && isfinite(b[2]) && isfinite(b[3])))
            return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG,
                                "roi_targets: proposals row %zu is not finite (%g, %g, %g, %g)", i, (double)b[0],
                                (double)b[1], (double)b[2], (double)b[3]);
    }
    for (size_t j = 0; j < g; j++) {
        const float *b = gt + 4 * j;
        if (!(isfinite(b[0]) && isfinite(b[1]) && isfinite(b[2]) && isfinite(b[3])))
            return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "roi_targets: gt row %zu is not finite (%g, %g, %g, %g)",
                                j, (double)b[0], (double)b[1], (double)b[2], (double)b[3]);
        if (!(b[2] - b[0] + off > 0.0f && b[3] - b[1] + off > 0.0f))
            return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG,
                                "roi_targets: gt row %zu (%g, %g, %g, %g) has width or height <= 0", j, (double)b[0],
                                (double)b[1], (double)b[2], (double)b[3]);
        if (gt_labels[j] < 1 || gt_labels[j] >= num_classes)
            return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG,
                                "roi_targets: gt_labels[%zu] is %d, expected a class in [1, %d)", j, (int)gt_labels[j],
                                num_classes);
    }
    return FRCNN_OK;
}

/* numpy's round (half to even) of a non-negative value, independent of the floating-point rounding mode. */
static size_t round_half_even(double x)
{
    double r = floor(x), frac = x - r;
    if (frac > 0.5 || (frac == 0.5 && fmod(r, 2.0) != 0.0))
        r += 1.0;
    return (size_t)r;
}

/* proposals (np, 4), gt (g, 4), gt_labels[g]; out_rois (batch_size, 4), out_labels[batch_size], targets and
 * inside_w (batch_size, 4 * num_classes), all overwritten: rows [0, *n_out) hold the sample, foreground first,
 * each group in the order frcnn_rng_choose drew it; rows from *n_out on are zero with label -1.
 * RNG draws, in this order: frcnn_rng_choose(fg candidates, fg_this), then frcnn_rng_choose(bg candidates,
 * bg_this), each over its candidates in ascending row order (proposals, then GT boxes), as npr.choice is called
 * whenever candidates exist. Scratch, one block of (np + g) * 4 * 4 bytes: each RoI's best IoU and GT box, and
 * the two candidate lists. A bad argument leaves the outputs untouched; a full arena leaves them as for an empty
 * sample (*n_out 0). */
frcnn_status frcnn_roi_targets(frcnn_ctx *ctx, frcnn_arena *scratch, const frcnn_roi_target_params *p,
                               frcnn_rng *rng, const float *proposals, size_t np, const float *gt,
                               const int32_t *gt_labels, size_t g, int num_classes, float *out_rois,
                               int32_t *out_labels, float *targets, float *inside_w, size_t *n_out)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    const char *null_arg = !scratch                 ? "scratch"
                           : !p                     ? "params"
                           : !rng                   ? "rng"
                           : !out_rois              ? "out_rois"
                           : !out_labels            ? "out_labels"
                           : !targets               ? "targets"
                           : !inside_w              ? "inside_w"
                           : !n_out                 ? "n_out"
                           : (np > 0 && !proposals) ? "proposals"
                           : (g > 0 && !gt)         ? "gt"
                           : (g > 0 && !gt_labels)  ? "gt_labels"
                                                    : NULL;
    if (null_arg)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "roi_targets: %s is NULL", null_arg);
    *n_out = 0;
    frcnn_status st = check_params(ctx, p, num_classes);
    if (st != FRCNN_OK)
        return st;
    size_t rows = np + g, bytes, width = 4 * (size_t)num_classes, out_floats;
    if (np > UINT32_MAX || g > UINT32_MAX || rows > UINT32_MAX || !frcnn__mul_size(rows, 16, &bytes) ||
        !frcnn__mul_size((size_t)p->batch_size, width, &out_floats))
        return frcnn__error(ctx, FRCNN_ERR_OVERFLOW, "roi_targets: %zu proposals and %zu gt boxes are too many", np,
                            g);
    if ((st = frcnn__check_box_convention(ctx, "roi_targets", p->box_convention)) != FRCNN_OK ||
        (st = check_inputs(ctx, proposals, np, gt, gt_labels, g, num_classes, frcnn__box_offset(p->box_convention))) !=
            FRCNN_OK)
        return st;

    const size_t batch = (size_t)p->batch_size;
    memset(out_rois, 0, batch * 4 * sizeof(float));
    for (size_t k = 0; k < batch; k++)
        out_labels[k] = -1;
    memset(targets, 0, out_floats * sizeof(float));
    memset(inside_w, 0, out_floats * sizeof(float));
    if (rows == 0)
        return FRCNN_OK;

    const size_t mark = frcnn_arena_mark(scratch);
    void *block;
    if ((st = frcnn_arena_alloc(scratch, bytes, &block)) != FRCNN_OK)
        goto done;
    float *max_iou = block;                        /* [rows]: best IoU of each RoI with a GT box */
    uint32_t *best = (uint32_t *)(max_iou + rows); /* [rows]: the first GT box reaching it */
    uint32_t *fg = best + rows, *bg = fg + rows;   /* [rows] each: candidate lists */

    /* all_rois = proposals then GT boxes; overlaps.argmax(axis=1) (first maximum) and its value. */
    for (size_t i = 0; i < rows; i++) {
        const float *roi = i < np ? proposals + 4 * i : gt + 4 * (i - np);
        float max = 0.0f;
        uint32_t arg = 0;
        for (size_t j = 0; j < g; j++) {
            float v = frcnn__box_iou1(roi, gt + 4 * j, frcnn__box_offset(p->box_convention));
            if (j == 0 || v > max) {
                max = v;
                arg = (uint32_t)j;
            }
        }
        max_iou[i] = max;
        best[i] = arg;
    }
    size_t n_fg = 0, n_bg = 0;
    for (size_t i = 0; i < rows; i++) {
        if (g > 0 && max_iou[i] >= p->fg_iou)
            fg[n_fg++] = (uint32_t)i;
        else if (max_iou[i] < p->bg_iou_hi && max_iou[i] >= p->bg_iou_lo)
            bg[n_bg++] = (uint32_t)i;
    }

    /* fg_rois_per_image = np.round(FG_FRACTION * rois_per_image), so 32 of 128. */
    size_t fg_quota = round_half_even((double)p->fg_fraction * (double)p->batch_size);
    size_t fg_this = fg_quota < n_fg ? fg_quota : n_fg;
    frcnn_rng_choose(rng, fg, n_fg, fg_this);
    size_t bg_this = batch - fg_this < n_bg ? batch - fg_this : n_bg;
    frcnn_rng_choose(rng, bg, n_bg, bg_this);

    for (size_t k = 0; k < fg_this + bg_this; k++) {
        const bool is_fg = k < fg_this;
        const size_t i = is_fg ? fg[k] : bg[k - fg_this];
        const float *roi = i < np ? proposals + 4 * i : gt + 4 * (i - np);
        for (int c = 0; c < 4; c++)
            out_rois[4 * k + (size_t)c] = roi[c];
        out_labels[k] = is_fg ? gt_labels[best[i]] : 0;
        if (!is_fg)
            continue;
        /* _get_bbox_regression_labels: the 4 columns of the RoI's class. */
        float *t = targets + k * width + 4 * (size_t)out_labels[k];
        if ((st = frcnn_box_encode_conv(ctx, p->box_convention, roi, gt + 4 * (size_t)best[i], 1, p->means, p->stds,
                                        t)) != FRCNN_OK)
            goto done;
        float *w = inside_w + k * width + 4 * (size_t)out_labels[k];
        for (int c = 0; c < 4; c++)
            w[c] = 1.0f;
    }
    *n_out = fg_this + bg_this;
    st = FRCNN_OK;
done:
    frcnn_arena_reset(scratch, mark);
    return st;
}
