/* One training step of the whole detector on one image (py-faster-rcnn's approximate joint training): forward
 * through backbone, RPN, anchor targets, proposals, RoI targets and head; the four losses; then backward in
 * exact reverse order, adding into the parameter gradients. No gradient flows through the proposals. */
#include "model_internal.h"

#include <math.h>

/* Resizes every per-RoI view to this step's number of RoIs. */
static void set_roi_rows(frcnn_model *m, int64_t r)
{
    frcnn__acts *a = &m->a;
    frcnn__view *views[] = {&a->rois, &a->pool5, &a->fc6, &a->fc7, &a->cls, &a->cls_prob, &a->box,
                            &a->roi_targets, &a->roi_in_w, &a->d_pool5, &a->mask6, &a->mask7, &a->d_fc6,
                            &a->d_fc7, &a->d_cls, &a->d_box};
    for (size_t i = 0; i < sizeof views / sizeof views[0]; i++)
        frcnn__view_rows(views[i], r);
}

static frcnn_status check_input(frcnn_model *m, const frcnn_input *in, int *h, int *w)
{
    if (!in || !in->image)
        return frcnn__error(m->ctx, FRCNN_ERR_INVALID_ARG, "input image is NULL");
    const frcnn_tensor *x = in->image;
    if (x->ndim != 4 || x->dims[0] != 1 || x->dims[1] != 3) {
        char s[96];
        frcnn__shape_str(x, s, sizeof s);
        return frcnn__error(m->ctx, FRCNN_ERR_SHAPE, "input image has shape %s, expected (1, 3, h, w)", s);
    }
    if (!isfinite(in->scale) || in->scale <= 0)
        return frcnn__error(m->ctx, FRCNN_ERR_INVALID_ARG, "input scale %g, expected finite and > 0",
                            (double)in->scale);
    for (size_t i = 0; i < x->numel; i++)
        if (!isfinite(x->data[i]))
            return frcnn__error(m->ctx, FRCNN_ERR_NOT_FINITE, "input image has a non-finite pixel at element %zu",
                                i);
    *h = (int)x->dims[2];
    *w = (int)x->dims[3];
    return frcnn__acts_layout(m, *h, *w, true) == FRCNN_OK ? FRCNN_OK : FRCNN_ERR_SHAPE;
}

static frcnn_status check_gt(frcnn_model *m, const float *gt, const int32_t *labels, size_t g, int h, int w)
{
    if (g > 0 && (!gt || !labels))
        return frcnn__error(m->ctx, FRCNN_ERR_INVALID_ARG, "%zu GT boxes but %s is NULL", g, gt ? "gt_labels" : "gt");
    if (g > (size_t)m->cfg.max_gt_boxes)
        return frcnn__error(m->ctx, FRCNN_ERR_INVALID_ARG, "%zu GT boxes, the model plans for at most %d "
                            "(config.max_gt_boxes)", g, m->cfg.max_gt_boxes);
    for (size_t i = 0; i < g; i++) {
        const float *b = gt + 4 * i;
        if (!(isfinite(b[0]) && isfinite(b[1]) && isfinite(b[2]) && isfinite(b[3])) || b[2] < b[0] || b[3] < b[1] ||
            b[2] < 0 || b[3] < 0 || b[0] > (float)(w - 1) || b[1] > (float)(h - 1))
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
    int h = 0, w = 0;
    frcnn_status st = check_input(m, in, &h, &w);
    if (st == FRCNN_OK)
        st = check_gt(m, gt, gt_labels, g, h, w);
    if (st != FRCNN_OK)
        return st;
    frcnn__acts *a = &m->a;
    const frcnn_config *c = &m->cfg;
    frcnn_losses out = {0, 0, 0, 0, 0, 0, 0, 0, 0};

    /* Forward. Random draws, in order: anchor sampling, RoI sampling, dropout fc6, dropout fc7. */
    frcnn_tensor *feature;
    if ((st = frcnn__backbone_forward(m, in->image, true, &feature)) != FRCNN_OK)
        return st;
    if ((st = frcnn__rpn_forward(m, feature)) != FRCNN_OK)
        return st;
    size_t n = a->anchors_n;
    st = frcnn_anchors_grid(ctx, m->base_anchors, (size_t)m->num_anchors, a->fh, a->fw, c->feat_stride, a->anchors);
    if (st == FRCNN_OK)
        st = frcnn_anchor_targets(ctx, m->scratch, &c->rpn_targets, rng, a->anchors, n, gt, g, (float)h, (float)w,
                                  a->rpn_labels, a->rpn_targets.data, a->rpn_in_w.data, a->rpn_out_w.data);
    frcnn_smooth_l1_params rpn_l1 = {c->rpn_sigma, 1.0f};
    if (st == FRCNN_OK)
        st = frcnn_softmax_xent_forward(ctx, &a->rpn_logits, a->rpn_labels, -1, &a->rpn_prob, &out.rpn_cls);
    if (st == FRCNN_OK)
        st = frcnn_smooth_l1_forward(ctx, &rpn_l1, &a->rpn_deltas, &a->rpn_targets, &a->rpn_in_w, &a->rpn_out_w,
                                     &out.rpn_box);
    if (st != FRCNN_OK)
        return st;
    for (size_t i = 0; i < n; i++) {
        a->fg_scores[i] = a->rpn_prob.data[2 * i + 1];
        out.rpn_fg += a->rpn_labels[i] == 1;
        out.rpn_bg += a->rpn_labels[i] == 0;
    }
    size_t n_props = 0, n_rois = 0;
    st = frcnn_proposals(ctx, m->scratch, &c->train_proposals, a->anchors, a->rpn_deltas.data, a->fg_scores, n,
                         (float)h, (float)w, in->scale, a->proposals, NULL, &n_props);
    if (st == FRCNN_OK)
        st = frcnn_roi_targets(ctx, m->scratch, &c->roi_targets, rng, a->proposals, n_props, gt, gt_labels, g,
                               c->num_classes, a->roi_boxes, a->roi_labels, a->roi_targets.data, a->roi_in_w.data,
                               &n_rois);
    if (st != FRCNN_OK)
        return st;
    frcnn_smooth_l1_params head_l1 = {c->head_sigma, (float)(n_rois > 0 ? n_rois : 1)};
    if (n_rois > 0) {
        set_roi_rows(m, (int64_t)n_rois);
        for (size_t r = 0; r < n_rois; r++) {
            a->rois.data[5 * r] = 0.0f;
            for (int j = 0; j < 4; j++)
                a->rois.data[5 * r + 1 + j] = a->roi_boxes[4 * r + j];
            out.roi_fg += a->roi_labels[r] > 0;
            out.roi_bg += a->roi_labels[r] == 0;
        }
        st = frcnn__head_forward(m, feature, true, rng);
        if (st == FRCNN_OK)
            st = frcnn_softmax_xent_forward(ctx, &a->cls, a->roi_labels, -1, &a->cls_prob, &out.cls);
        /* py-faster-rcnn: bbox_outside_weights = bbox_inside_weights; SmoothL1Loss divides by the RoI count. */
        if (st == FRCNN_OK)
            st = frcnn_smooth_l1_forward(ctx, &head_l1, &a->box, &a->roi_targets, &a->roi_in_w, &a->roi_in_w,
                                         &out.box);
        if (st != FRCNN_OK)
            return st;
    }
    out.total = out.rpn_cls + out.rpn_box + out.cls + out.box;
    *losses = out;
    if (!isfinite(out.total))
        return frcnn__error(ctx, FRCNN_ERR_NOT_FINITE,
                            "train_step: non-finite loss (rpn_cls %g, rpn_box %g, cls %g, box %g); gradients untouched",
                            (double)out.rpn_cls, (double)out.rpn_box, (double)out.cls, (double)out.box);

    /* Backward, in reverse order. The feature map's gradient gathers the head's and the RPN's. */
    frcnn__view d_feature;
    frcnn__view_set(&d_feature, a->grad_a_mem, 4, 1, feature->dims[1], a->fh, a->fw);
    frcnn_tensor_zero(&d_feature);
    if (n_rois > 0) {
        frcnn_tensor_zero(&a->d_cls);
        frcnn_tensor_zero(&a->d_box);
        st = frcnn_smooth_l1_backward(ctx, &head_l1, &a->box, &a->roi_targets, &a->roi_in_w, &a->roi_in_w, 1.0f,
                                      &a->d_box);
        if (st == FRCNN_OK)
            st = frcnn_softmax_xent_backward(ctx, &a->cls_prob, a->roi_labels, -1, 1.0f, &a->d_cls);
        if (st == FRCNN_OK)
            st = frcnn__head_backward(m, &d_feature);
    }
    frcnn_tensor_zero(&a->d_rpn_logits);
    frcnn_tensor_zero(&a->d_rpn_deltas);
    if (st == FRCNN_OK)
        st = frcnn_smooth_l1_backward(ctx, &rpn_l1, &a->rpn_deltas, &a->rpn_targets, &a->rpn_in_w, &a->rpn_out_w,
                                      1.0f, &a->d_rpn_deltas);
    if (st == FRCNN_OK)
        st = frcnn_softmax_xent_backward(ctx, &a->rpn_prob, a->rpn_labels, -1, 1.0f, &a->d_rpn_logits);
    if (st == FRCNN_OK)
        st = frcnn__rpn_backward(m, feature, &d_feature);
    if (st == FRCNN_OK)
        st = frcnn__backbone_backward(m, in->image);
    return st;
}
