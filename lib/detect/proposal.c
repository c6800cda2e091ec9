/* The proposal layer: turns the RPN's per-anchor scores and deltas into a short list of scored RoIs, as
 * py-faster-rcnn's lib/rpn/proposal_layer.py (decode, clip, drop small boxes, top-N by score, NMS, top-N) with
 * lib/fast_rcnn/config.py's values: RPN_PRE_NMS_TOP_N 12000 / 6000, RPN_POST_NMS_TOP_N 2000 / 300 (train /
 * test), RPN_NMS_THRESH 0.7, RPN_MIN_SIZE 16. */
#include "internal.h"

#include "box_internal.h"

#include <math.h>

frcnn_proposal_params frcnn_proposal_params_default(bool train)
{
    frcnn_proposal_params p;
    p.pre_nms_top_n = train ? 12000 : 6000;
    p.post_nms_top_n = train ? 2000 : 300;
    p.nms_iou = 0.7f;
    p.min_size = 16.0f;
    p.box_convention = FRCNN_BOXES_INCLUSIVE;
    return p;
}

/* Adds count * elem bytes rounded up to the arena's alignment to *total; SIZE_MAX once anything overflows. */
static void add_block(size_t *total, size_t count, size_t elem)
{
    size_t bytes;
    if (*total == SIZE_MAX || !frcnn__mul_size(count, elem, &bytes) || bytes > SIZE_MAX - FRCNN__ALIGN) {
        *total = SIZE_MAX;
        return;
    }
    bytes = (bytes + FRCNN__ALIGN - 1) & ~(size_t)(FRCNN__ALIGN - 1);
    if (!frcnn__add_size(*total, bytes, total))
        *total = SIZE_MAX;
}

/* The blocks frcnn_proposals takes, in its order: decoded boxes (n, 4), their scores (n), the sort order and its
 * merge buffer (n uint32 each), NMS's kept-box scratch and the kept indices. Sized for the worst case of n, so
 * it does not depend on the parameters. SIZE_MAX when the size does not fit in size_t. */
size_t frcnn_proposal_scratch_bytes(size_t n)
{
    size_t total = 0;
    if (n == 0)
        return 0;
    size_t kept_floats = frcnn__nms_kept_floats(n);
    if (kept_floats == 0)
        return SIZE_MAX;
    add_block(&total, n, 4 * sizeof(float));
    add_block(&total, n, sizeof(float));
    add_block(&total, n, sizeof(uint32_t));
    add_block(&total, n, sizeof(uint32_t));
    add_block(&total, kept_floats, sizeof(float));
    add_block(&total, n, sizeof(uint32_t));
    return total;
}

static frcnn_status check_params(frcnn_ctx *ctx, const frcnn_proposal_params *p)
{
    if (p->pre_nms_top_n < 1 || p->post_nms_top_n < 1)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG,
                            "proposals: pre_nms_top_n %d, post_nms_top_n %d, expected both >= 1", p->pre_nms_top_n,
                            p->post_nms_top_n);
    if (!(p->nms_iou >= 0.0f && p->nms_iou <= 1.0f))
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "proposals: nms_iou %g, expected in [0, 1]",
                            (double)p->nms_iou);
    if (!isfinite(p->min_size) || !(p->min_size >= 0.0f))
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "proposals: min_size %g, expected finite and >= 0",
                            (double)p->min_size);
    return FRCNN_OK;
}

/* Anchors must be finite (a caller's mistake); deltas and scores come from the network, so a NaN or infinity
 * there is FRCNN_ERR_NOT_FINITE: training has diverged. Checked before anything is written. */
static frcnn_status check_inputs(frcnn_ctx *ctx, const float *anchors, const float *deltas, const float *scores,
                                 size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const float *a = anchors + 4 * i, *d = deltas + 4 * i;
        if (!(isfinite(a[0]) && isfinite(a[1]) && isfinite(a[2]) && isfinite(a[3])))
            return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "proposals: anchors row %zu is not finite (%g, %g, %g, %g)",
                                i, (double)a[0], (double)a[1], (double)a[2], (double)a[3]);
        if (!(isfinite(d[0]) && isfinite(d[1]) && isfinite(d[2]) && isfinite(d[3])))
            return frcnn__error(ctx, FRCNN_ERR_NOT_FINITE,
                                "proposals: deltas row %zu is not finite (%g, %g, %g, %g); training diverged?", i,
                                (double)d[0], (double)d[1], (double)d[2], (double)d[3]);
        if (!isfinite(scores[i]))
            return frcnn__error(ctx, FRCNN_ERR_NOT_FINITE, "proposals: fg_scores[%zu] is %g; training diverged?", i,
                                (double)scores[i]);
    }
    return FRCNN_OK;
}

/* _filter_boxes (torchvision's remove_small_boxes): keeps the boxes (n, 4) whose width x2 - x1 + off and height
 * are >= min_wh, compared in float as numpy and torch compare a float32 array with a scalar, compacting them and
 * their scores in place in order. src_scores: the scores to take along (NULL: scores already holds them).
 * Returns the count kept. */
static size_t filter_small(float *boxes, float *scores, const float *src_scores, size_t n, float min_wh, float off)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const float *b = boxes + 4 * i;
        float w = b[2] - b[0] + off, h = b[3] - b[1] + off;
        if (w >= min_wh && h >= min_wh) {
            float *o = boxes + 4 * m;
            for (int k = 0; k < 4; k++)
                o[k] = b[k];
            scores[m++] = src_scores ? src_scores[i] : scores[i];
        }
    }
    return m;
}

/* anchors, deltas (n, 4); fg_scores[n]; rois (post_nms_top_n, 4) and roi_scores[post_nms_top_n] (may be NULL)
 * overwritten in their first *n_rois rows, the rest untouched. Equal scores are ordered by ascending anchor index,
 * both for the pre-NMS cut and inside NMS. Scratch as frcnn_proposal_scratch_bytes(n), all returned. */
frcnn_status frcnn_proposals(frcnn_ctx *ctx, frcnn_arena *scratch, const frcnn_proposal_params *p,
                             const float *anchors, const float *deltas, const float *fg_scores, size_t n,
                             float image_h, float image_w, float image_scale, float *rois, float *roi_scores,
                             size_t *n_rois)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    const char *null_arg = !scratch                ? "scratch"
                           : !p                    ? "params"
                           : !rois                 ? "rois"
                           : !n_rois               ? "n_rois"
                           : (n > 0 && !anchors)   ? "anchors"
                           : (n > 0 && !deltas)    ? "deltas"
                           : (n > 0 && !fg_scores) ? "fg_scores"
                                                   : NULL;
    if (null_arg)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "proposals: %s is NULL", null_arg);
    *n_rois = 0;
    frcnn_status st = check_params(ctx, p);
    if (st != FRCNN_OK)
        return st;
    if ((st = frcnn__check_box_convention(ctx, "proposals", p->box_convention)) != FRCNN_OK)
        return st;
    if (!isfinite(image_h) || !isfinite(image_w) || !(image_h > 0.0f) || !(image_w > 0.0f))
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "proposals: image size %gx%g (h x w), expected > 0",
                            (double)image_h, (double)image_w);
    if (!isfinite(image_scale) || !(image_scale > 0.0f))
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "proposals: image_scale %g, expected finite and > 0",
                            (double)image_scale);
    if (n > UINT32_MAX)
        return frcnn__error(ctx, FRCNN_ERR_OVERFLOW, "proposals: %zu anchors, at most %u", n, (unsigned)UINT32_MAX);
    if ((st = check_inputs(ctx, anchors, deltas, fg_scores, n)) != FRCNN_OK)
        return st;
    if (n == 0)
        return FRCNN_OK;

    const size_t mark = frcnn_arena_mark(scratch);
    const size_t post = (size_t)p->post_nms_top_n;
    const size_t cap = n < post ? n : post;
    float *boxes, *scores, *kept;
    uint32_t *order, *tmp, *keep;
    if ((st = frcnn_arena_alloc(scratch, n * 4 * sizeof(float), (void **)&boxes)) != FRCNN_OK ||
        (st = frcnn_arena_alloc(scratch, n * sizeof(float), (void **)&scores)) != FRCNN_OK ||
        (st = frcnn_arena_alloc(scratch, n * sizeof(uint32_t), (void **)&order)) != FRCNN_OK ||
        (st = frcnn_arena_alloc(scratch, n * sizeof(uint32_t), (void **)&tmp)) != FRCNN_OK ||
        (st = frcnn_arena_alloc(scratch, frcnn__nms_kept_floats(cap) * sizeof(float), (void **)&kept)) != FRCNN_OK ||
        (st = frcnn_arena_alloc(scratch, cap * sizeof(uint32_t), (void **)&keep)) != FRCNN_OK)
        goto done;

    const float off = frcnn__box_offset(p->box_convention);
    const size_t pre = (size_t)p->pre_nms_top_n;
    size_t m, top, n_keep = 0;
    if (p->box_convention == FRCNN_BOXES_CONTINUOUS) {
        /* torchvision's filter_proposals: the pre_nms_top_n best scores first, then decode, clip and the size
         * filter, keeping the score order. */
        frcnn__argsort_desc(fg_scores, n, order, tmp);
        top = n < pre ? n : pre;
        for (size_t r = 0; r < top; r++) {
            frcnn_box_decode_conv(p->box_convention, anchors + 4 * (size_t)order[r], deltas + 4 * (size_t)order[r],
                                  1, NULL, NULL, boxes + 4 * r);
            scores[r] = fg_scores[order[r]];
        }
        frcnn_box_clip_conv(p->box_convention, boxes, top, image_h, image_w);
        m = filter_small(boxes, scores, NULL, top, p->min_size * image_scale, off);
        for (size_t r = 0; r < m; r++)
            order[r] = (uint32_t)r;
        top = m;
    } else {
        /* bbox_transform_inv (RPN deltas are not normalised), clip_boxes, _filter_boxes; then descending score,
         * ties by ascending anchor index (py-faster-rcnn's argsort()[::-1] leaves ties to the sort; a stable
         * order makes the result reproducible), and the pre-NMS cut. */
        frcnn_box_decode_conv(p->box_convention, anchors, deltas, n, NULL, NULL, boxes);
        frcnn_box_clip_conv(p->box_convention, boxes, n, image_h, image_w);
        m = filter_small(boxes, scores, fg_scores, n, p->min_size * image_scale, off);
        frcnn__argsort_desc(scores, m, order, tmp);
        top = m < pre ? m : pre;
    }
    frcnn__nms_ordered(boxes, order, top, p->nms_iou, off, post, kept, keep, &n_keep);
    for (size_t r = 0; r < n_keep; r++) {
        const float *b = boxes + 4 * (size_t)keep[r];
        for (int k = 0; k < 4; k++)
            rois[4 * r + (size_t)k] = b[k];
        if (roi_scores)
            roi_scores[r] = scores[keep[r]];
    }
    *n_rois = n_keep;
    st = FRCNN_OK;
done:
    frcnn_arena_reset(scratch, mark);
    return st;
}
