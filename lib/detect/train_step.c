/* One training step of the whole detector on one image (py-faster-rcnn's approximate joint training), built on
 * the stage API: forward through backbone and RPN, anchor targets and the RPN losses, proposals, RoI targets, the
 * head and its losses; then backward in exact reverse order, adding into the parameter gradients. No gradient
 * flows through the proposals. */
#include "model_internal.h"

#include "box_internal.h"

#include <math.h>

static frcnn_status check_gt(frcnn_model *m, const float *gt, const int32_t *labels, size_t g, int h, int w)
{
    if (g > 0 && (!gt || !labels))
        return frcnn__error(m->ctx, FRCNN_ERR_INVALID_ARG, "%zu GT boxes but %s is NULL", g, gt ? "gt_labels" : "gt");
    if (g > (size_t)m->cfg.max_gt_boxes)
        return frcnn__error(m->ctx, FRCNN_ERR_INVALID_ARG, "%zu GT boxes, the model plans for at most %d "
                            "(config.max_gt_boxes)", g, m->cfg.max_gt_boxes);
    /* A box must have a positive size and cover some of the image: pixels 0 .. w - 1 when inclusive, the interval
     * (0, w) when continuous. */
    const bool cont = m->cfg.box_convention == FRCNN_BOXES_CONTINUOUS;
    const float off = frcnn__box_offset(m->cfg.box_convention), last_x = (float)w - off, last_y = (float)h - off;
    for (size_t i = 0; i < g; i++) {
        const float *b = gt + 4 * i;
        bool outside = cont ? b[2] <= 0 || b[3] <= 0 || b[0] >= last_x || b[1] >= last_y
                            : b[2] < 0 || b[3] < 0 || b[0] > last_x || b[1] > last_y;
        if (!(isfinite(b[0]) && isfinite(b[1]) && isfinite(b[2]) && isfinite(b[3])) || !(b[2] - b[0] + off > 0) ||
            !(b[3] - b[1] + off > 0) || outside)
            return frcnn__error(m->ctx, FRCNN_ERR_INVALID_ARG,
                                "GT box %zu (%g, %g, %g, %g) is degenerate or outside the %dx%d image", i,
                                (double)b[0], (double)b[1], (double)b[2], (double)b[3], h, w);
        if (labels[i] < 1 || labels[i] >= m->cfg.num_classes)
            return frcnn__error(m->ctx, FRCNN_ERR_INVALID_ARG, "GT box %zu has label %d, expected 1 to %d", i,
                                (int)labels[i], m->cfg.num_classes - 1);
    }
    return FRCNN_OK;
}

frcnn_status frcnn_model_train_step(frcnn_model *m, const frcnn_input *in, const float *gt, const int32_t *gt_labels,
                                    size_t g, frcnn_rng *rng, frcnn_losses *losses)
{
    if (!m)
        return FRCNN_ERR_INVALID_ARG;
    frcnn_ctx *ctx = m->ctx;
    if (!rng || !losses)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "train_step: %s is NULL", rng ? "losses" : "rng");
    frcnn_status st = frcnn_model_stage_begin(m, in, true);
    if (st == FRCNN_OK)
        st = check_gt(m, gt, gt_labels, g, (int)in->image->dims[2], (int)in->image->dims[3]);
    if (st != FRCNN_OK)
        return st;
    float h = (float)in->image->dims[2], w = (float)in->image->dims[3];
    frcnn__acts *a = &m->a;
    const frcnn_config *c = &m->cfg;
    frcnn_losses out = {0, 0, 0, 0, 0, 0, 0, 0, 0};

    /* Forward. Random draws, in order: anchor sampling, RoI sampling, dropout fc6, dropout fc7. */
    const frcnn_tensor *feature;
    frcnn_rpn_outputs rpn;
    if ((st = frcnn_model_backbone_forward(m, &feature)) != FRCNN_OK || (st = frcnn_model_rpn_forward(m, &rpn)) != FRCNN_OK)
        return st;
    size_t n = rpn.n;
    st = frcnn_anchor_targets(ctx, m->scratch, &c->rpn_targets, rng, rpn.anchors, n, gt, g, h, w, a->rpn_labels,
                              a->rpn_targets.data, a->rpn_in_w.data, a->rpn_out_w.data);
    frcnn_smooth_l1_params rpn_l1 = {c->rpn_sigma, 1.0f};
    if (st == FRCNN_OK)
        st = frcnn_softmax_xent_forward(ctx, rpn.logits, a->rpn_labels, -1, &a->rpn_prob, &out.rpn_cls);
    if (st == FRCNN_OK)
        st = frcnn_smooth_l1_forward(ctx, &rpn_l1, rpn.deltas, &a->rpn_targets, &a->rpn_in_w, &a->rpn_out_w,
                                     &out.rpn_box);
    if (st != FRCNN_OK)
        return st;
    for (size_t i = 0; i < n; i++) {
        a->fg_scores[i] = a->rpn_prob.data[2 * i + 1];
        out.rpn_fg += a->rpn_labels[i] == 1;
        out.rpn_bg += a->rpn_labels[i] == 0;
    }
    size_t n_props = 0, n_rois = 0;
    st = frcnn_proposals(ctx, m->scratch, &c->train_proposals, rpn.anchors, rpn.deltas->data, a->fg_scores, n, h, w,
                         in->scale, a->proposals, NULL, &n_props);
    if (st == FRCNN_OK)
        st = frcnn_roi_targets(ctx, m->scratch, &c->roi_targets, rng, a->proposals, n_props, gt, gt_labels, g,
                               c->num_classes, a->roi_boxes, a->roi_labels, a->roi_targets.data, a->roi_in_w.data,
                               &n_rois);
    if (st != FRCNN_OK)
        return st;
    frcnn_smooth_l1_params head_l1 = {c->head_sigma, (float)(n_rois > 0 ? n_rois : 1)};
    if (n_rois > 0) {
        frcnn_head_outputs head;
        st = frcnn_model_head_forward(m, a->roi_boxes, n_rois, rng, &head);
        if (st == FRCNN_OK)
            st = frcnn_softmax_xent_forward(ctx, head.cls, a->roi_labels, -1, &a->cls_prob, &out.cls);
        /* py-faster-rcnn: bbox_outside_weights = bbox_inside_weights; SmoothL1Loss divides by the RoI count. */
        if (st == FRCNN_OK)
            st = frcnn_smooth_l1_forward(ctx, &head_l1, head.box, &a->roi_targets, &a->roi_in_w, &a->roi_in_w,
                                         &out.box);
        if (st != FRCNN_OK)
            return st;
        for (size_t r = 0; r < n_rois; r++) {
            out.roi_fg += a->roi_labels[r] > 0;
            out.roi_bg += a->roi_labels[r] == 0;
        }
    }
    out.total = out.rpn_cls + out.rpn_box + out.cls + out.box;
    *losses = out;
    if (!isfinite(out.total))
        return frcnn__error(ctx, FRCNN_ERR_NOT_FINITE,
                            "train_step: non-finite loss (rpn_cls %g, rpn_box %g, cls %g, box %g); gradients untouched",
                            (double)out.rpn_cls, (double)out.rpn_box, (double)out.cls, (double)out.box);

    /* Backward, in reverse order: the head, the RPN, the backbone. */
    if (n_rois > 0) {
        frcnn_tensor_zero(&a->d_cls);
        frcnn_tensor_zero(&a->d_box);
        st = frcnn_smooth_l1_backward(ctx, &head_l1, &a->box, &a->roi_targets, &a->roi_in_w, &a->roi_in_w, 1.0f,
                                      &a->d_box);
        if (st == FRCNN_OK)
            st = frcnn_softmax_xent_backward(ctx, &a->cls_prob, a->roi_labels, -1, 1.0f, &a->d_cls);
        if (st == FRCNN_OK)
            st = frcnn_model_head_backward(m, &a->d_cls, &a->d_box);
    }
    frcnn_tensor_zero(&a->d_rpn_logits);
    frcnn_tensor_zero(&a->d_rpn_deltas);
    if (st == FRCNN_OK)
        st = frcnn_smooth_l1_backward(ctx, &rpn_l1, rpn.deltas, &a->rpn_targets, &a->rpn_in_w, &a->rpn_out_w, 1.0f,
                                      &a->d_rpn_deltas);
    if (st == FRCNN_OK)
        st = frcnn_softmax_xent_backward(ctx, &a->rpn_prob, a->rpn_labels, -1, 1.0f, &a->d_rpn_logits);
    if (st == FRCNN_OK)
        st = frcnn_model_rpn_backward(m, &a->d_rpn_logits, &a->d_rpn_deltas);
    if (st == FRCNN_OK)
        st = frcnn_model_backbone_backward(m);
    return st;
}
