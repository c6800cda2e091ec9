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
    frcnn_status st = frcnn_model_stage_begin(m, in, false);
    if (st != FRCNN_OK)
        return st;
    int h = (int)in->image->dims[2], w = (int)in->image->dims[3];
    frcnn__acts *a = &m->a;
    const frcnn_config *c = &m->cfg;
    const frcnn_tensor *feature;
    frcnn_rpn_outputs rpn;
    if ((st = frcnn_model_backbone_forward(m, &feature)) != FRCNN_OK || (st = frcnn_model_rpn_forward(m, &rpn)) != FRCNN_OK)
        return st;
    frcnn__rpn_fg_scores(m);
    size_t n_rois = 0;
    st = frcnn_proposals(ctx, m->scratch, &c->test_proposals, rpn.anchors, rpn.deltas->data, a->fg_scores, rpn.n,
                         (float)h, (float)w, in->scale, a->proposals, a->proposal_scores, &n_rois);
    if (st != FRCNN_OK || n_rois == 0)
        return st;
    frcnn_head_outputs head;
    if ((st = frcnn_model_head_forward(m, a->proposals, n_rois, NULL, &head)) != FRCNN_OK)
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
            frcnn_box_decode_conv(c->box_convention, roi, &a->box.data[(r * k + cls) * 4], 1, c->roi_targets.means,
                                  c->roi_targets.stds, &boxes[4 * count]);
            scores[count] = s;
            src[count++] = (uint32_t)r;
        }
        if (count == 0)
            continue;
        frcnn_box_clip_conv(c->box_convention, boxes, count, orig_h, orig_w);
        size_t kept = 0;
        if ((st = frcnn_nms_conv(ctx, m->scratch, c->box_convention, boxes, scores, count, c->test_nms_iou, 0, keep,
                                 &kept)) != FRCNN_OK)
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
