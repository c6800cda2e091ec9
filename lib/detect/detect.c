/* Detection on one image (py-faster-rcnn test.py im_detect + test_net): backbone, RPN, test-time proposals, head,
 * per-class box decoding, score threshold, per-class NMS, and the cap on detections per image. */
#include "model_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct candidate {
    float box[4];
    float score;
    int32_t label;
    uint32_t order; /* position in class-then-RoI order: breaks score ties */
} candidate;

/* Descending score, then ascending order: a total order, so the result never depends on qsort's algorithm. */
static int by_score(const void *pa, const void *pb)
{
    const candidate *a = pa, *b = pb;
    if (a->score != b->score)
        return a->score > b->score ? -1 : 1;
    return (a->order > b->order) - (a->order < b->order);
}

/* Softmax of each row of cls into cls_prob. */
static void softmax_rows(const frcnn_tensor *cls, frcnn_tensor *prob)
{
    int64_t rows = cls->dims[0], k = cls->dims[1];
    for (int64_t r = 0; r < rows; r++) {
        const float *x = cls->data + r * k;
        float *p = prob->data + r * k, mx = x[0];
        for (int64_t j = 1; j < k; j++)
            mx = x[j] > mx ? x[j] : mx;
        double sum = 0.0;
        for (int64_t j = 0; j < k; j++)
            sum += exp((double)x[j] - (double)mx);
        for (int64_t j = 0; j < k; j++)
            p[j] = (float)(exp((double)x[j] - (double)mx) / sum);
    }
}

frcnn_status frcnn_model_detect(frcnn_model *m, const frcnn_input *in, frcnn_detection *dets, size_t capacity,
                                size_t *n_out)
{
    if (!m)
        return FRCNN_ERR_INVALID_ARG;
    frcnn_ctx *ctx = m->ctx;
    if (!n_out || (!dets && capacity > 0))
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "detect: %s is NULL", n_out ? "dets" : "n");
    *n_out = 0;
    if (!in || !in->image || in->image->ndim != 4 || in->image->dims[0] != 1 || in->image->dims[1] != 3)
        return frcnn__error(ctx, FRCNN_ERR_SHAPE, "detect: the input image must be a (1, 3, h, w) tensor");
    if (!isfinite(in->scale) || in->scale <= 0)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "detect: input scale %g, expected finite and > 0",
                            (double)in->scale);
    for (size_t i = 0; i < in->image->numel; i++)
        if (!isfinite(in->image->data[i]))
            return frcnn__error(ctx, FRCNN_ERR_NOT_FINITE, "detect: non-finite pixel at element %zu", i);
    int h = (int)in->image->dims[2], w = (int)in->image->dims[3];
    frcnn_status st = frcnn__acts_layout(m, h, w, false);
    if (st != FRCNN_OK)
        return st;
    frcnn__acts *a = &m->a;
    const frcnn_config *c = &m->cfg;
    frcnn_tensor *feature;
    if ((st = frcnn__backbone_forward(m, in->image, false, &feature)) != FRCNN_OK)
        return st;
    if ((st = frcnn__rpn_forward(m, feature)) != FRCNN_OK)
        return st;
    frcnn__rpn_fg_scores(m);
    st = frcnn_anchors_grid(ctx, m->base_anchors, (size_t)m->num_anchors, a->fh, a->fw, c->feat_stride, a->anchors);
    size_t n_rois = 0;
    if (st == FRCNN_OK)
        st = frcnn_proposals(ctx, m->scratch, &c->test_proposals, a->anchors, a->rpn_deltas.data, a->fg_scores,
                             a->anchors_n, (float)h, (float)w, in->scale, a->proposals, a->proposal_scores, &n_rois);
    if (st != FRCNN_OK || n_rois == 0)
        return st;
    frcnn__view *views[] = {&a->rois, &a->pool5, &a->fc6, &a->fc7, &a->cls, &a->cls_prob, &a->box};
    for (size_t i = 0; i < sizeof views / sizeof views[0]; i++)
        frcnn__view_rows(views[i], (int64_t)n_rois);
    for (size_t r = 0; r < n_rois; r++) {
        a->rois.data[5 * r] = 0.0f;
        memcpy(&a->rois.data[5 * r + 1], &a->proposals[4 * r], 4 * sizeof(float));
    }
    if ((st = frcnn__head_forward(m, feature, false, NULL)) != FRCNN_OK)
        return st;
    softmax_rows(&a->cls, &a->cls_prob);

    /* Per class: decode at the RoIs in original-image pixels, clip, threshold, NMS. */
    size_t k = (size_t)c->num_classes, mark = frcnn_arena_mark(m->scratch);
    candidate *all;
    float *boxes, *scores;
    uint32_t *src, *keep;
    if ((st = frcnn_arena_alloc(m->scratch, n_rois * k * sizeof *all, (void **)&all)) != FRCNN_OK ||
        (st = frcnn_arena_alloc(m->scratch, n_rois * 4 * sizeof(float), (void **)&boxes)) != FRCNN_OK ||
        (st = frcnn_arena_alloc(m->scratch, n_rois * sizeof(float), (void **)&scores)) != FRCNN_OK ||
        (st = frcnn_arena_alloc(m->scratch, n_rois * sizeof(uint32_t), (void **)&src)) != FRCNN_OK ||
        (st = frcnn_arena_alloc(m->scratch, n_rois * sizeof(uint32_t), (void **)&keep)) != FRCNN_OK)
        goto done;
    float orig_h = floorf((float)h / in->scale + 0.5f), orig_w = floorf((float)w / in->scale + 0.5f);
    size_t total = 0;
    for (size_t cls = 1; cls < k; cls++) {
        size_t count = 0;
        for (size_t r = 0; r < n_rois; r++) {
            float s = a->cls_prob.data[r * k + cls];
            if (!(s > c->score_threshold)) /* test.py: scores > thresh */
                continue;
            float roi[4];
            for (int j = 0; j < 4; j++)
                roi[j] = a->proposals[4 * r + j] / in->scale;
            frcnn_box_decode(roi, &a->box.data[(r * k + cls) * 4], 1, c->roi_targets.means, c->roi_targets.stds,
                             &boxes[4 * count]);
            scores[count] = s;
            src[count++] = (uint32_t)r;
        }
        if (count == 0)
            continue;
        frcnn_box_clip(boxes, count, orig_h, orig_w);
        size_t kept = 0;
        if ((st = frcnn_nms(ctx, m->scratch, boxes, scores, count, c->test_nms_iou, 0, keep, &kept)) != FRCNN_OK)
            goto done;
        for (size_t i = 0; i < kept; i++, total++) {
            candidate *d = &all[total];
            memcpy(d->box, &boxes[4 * keep[i]], sizeof d->box);
            d->score = scores[keep[i]];
            d->label = (int32_t)cls;
            d->order = (uint32_t)(cls * n_rois + src[keep[i]]);
        }
    }
    qsort(all, total, sizeof *all, by_score);
    if (total > (size_t)c->max_detections)
        total = (size_t)c->max_detections;
    for (size_t i = 0; i < total && i < capacity; i++) {
        dets[i].x1 = all[i].box[0];
        dets[i].y1 = all[i].box[1];
        dets[i].x2 = all[i].box[2];
        dets[i].y2 = all[i].box[3];
        dets[i].score = all[i].score;
        dets[i].label = all[i].label;
    }
    *n_out = total < capacity ? total : capacity;
done:
    frcnn_arena_reset(m->scratch, mark);
    return st;
}
