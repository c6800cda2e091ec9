/* The RoI head: RoI max pooling (or RoI align) of the feature map, fc6 and fc7 with ReLU and dropout, and the two
 * outputs (class scores, class-specific box deltas); forward and backward. */
#include "model_internal.h"

/* d *= mask, elementwise: the backward of dropout when its gradient is updated in place. */
static void scale_by(frcnn_tensor *d, const frcnn_tensor *mask)
{
    for (size_t i = 0; i < d->numel; i++)
        d->data[i] *= mask->data[i];
}

static frcnn_roi_pool_params pool_params(const frcnn_model *m)
{
    frcnn_roi_pool_params p = frcnn_roi_pool_params_default();
    p.pooled_h = p.pooled_w = m->cfg.pooled_size;
    p.spatial_scale = 1.0f / (float)m->cfg.feat_stride;
    return p;
}

static frcnn_roi_align_params align_params(const frcnn_model *m)
{
    frcnn_roi_align_params p = frcnn_roi_align_params_default();
    p.pooled_h = p.pooled_w = m->cfg.pooled_size;
    p.spatial_scale = 1.0f / (float)m->cfg.feat_stride;
    p.aligned = m->cfg.roi_op == FRCNN_ROI_ALIGN;
    return p;
}

/* The RoIs as RoI align reads them, in continuous coordinates: an inclusive box's last pixel x2 ends at x2 + 1.
 * The forward pass fills them, the backward reads them again. */
static const frcnn_tensor *align_rois(frcnn_model *m, bool fill)
{
    frcnn__acts *a = &m->a;
    if (m->cfg.box_convention == FRCNN_BOXES_CONTINUOUS)
        return &a->rois;
    for (int64_t i = 0; fill && i < a->rois.dims[0]; i++) {
        const float *r = &a->rois.data[5 * i];
        float *o = &a->align_rois.data[5 * i];
        o[0] = r[0];
        o[1] = r[1];
        o[2] = r[2];
        o[3] = r[3] + 1.0f;
        o[4] = r[4] + 1.0f;
    }
    return &a->align_rois;
}

/* One fully connected layer with ReLU and (in training) dropout, in place. */
static frcnn_status fc_relu_dropout(frcnn_model *m, const frcnn_tensor *x, int weight, frcnn_tensor *y,
                                    frcnn_tensor *mask, bool train, frcnn_rng *rng)
{
    frcnn_status st = frcnn_linear_forward(m->ctx, x, frcnn__param_value(m, weight),
                                           frcnn__param_value(m, weight + 1), y);
    if (st == FRCNN_OK)
        st = frcnn_relu_forward(m->ctx, y, y);
    if (st == FRCNN_OK && train)
        st = frcnn_dropout_forward(m->ctx, rng, m->cfg.dropout, true, y, y, mask);
    return st;
}

frcnn_status frcnn__head_forward(frcnn_model *m, const frcnn_tensor *feature, bool train, frcnn_rng *rng)
{
    frcnn__acts *a = &m->a;
    const frcnn__heads *h = &m->heads;
    frcnn_status st;
    if (m->cfg.roi_op == FRCNN_ROI_POOL) {
        frcnn_roi_pool_params pp = pool_params(m);
        st = frcnn_roi_pool_forward(m->ctx, &pp, feature, &a->rois, &a->pool5, train ? a->pool5_argmax : NULL);
    } else {
        frcnn_roi_align_params ap = align_params(m);
        st = frcnn_roi_align_forward(m->ctx, &ap, feature, align_rois(m, true), &a->pool5, m->kernel_ws,
                                     m->kernel_ws_bytes);
    }
    if (st == FRCNN_OK)
        st = fc_relu_dropout(m, &a->pool5, h->fc6, &a->fc6, &a->mask6, train, rng);
    if (st == FRCNN_OK)
        st = fc_relu_dropout(m, &a->fc6, h->fc7, &a->fc7, &a->mask7, train, rng);
    if (st == FRCNN_OK)
        st = frcnn_linear_forward(m->ctx, &a->fc7, frcnn__param_value(m, h->cls_score),
                                  frcnn__param_value(m, h->cls_score + 1), &a->cls);
    if (st == FRCNN_OK)
        st = frcnn_linear_forward(m->ctx, &a->fc7, frcnn__param_value(m, h->bbox_pred),
                                  frcnn__param_value(m, h->bbox_pred + 1), &a->box);
    return st;
}

/* Backward through fc + ReLU + dropout: d_y (gradient of the layer's output) is gated in place, then added into
 * d_x (zeroed here) and the parameter gradients. */
static frcnn_status fc_backward(frcnn_model *m, const frcnn_tensor *x, int weight, const frcnn_tensor *y,
                                frcnn_tensor *d_y, const frcnn_tensor *mask, frcnn_tensor *d_x)
{
    scale_by(d_y, mask);
    frcnn_status st = frcnn_relu_backward(m->ctx, y, d_y, d_y);
    frcnn_tensor_zero(d_x);
    if (st == FRCNN_OK)
        st = frcnn_linear_backward(m->ctx, x, frcnn__param_value(m, weight), d_y, d_x, frcnn__param_grad(m, weight),
                                   frcnn__param_grad(m, weight + 1));
    return st;
}

frcnn_status frcnn__head_backward(frcnn_model *m, const frcnn_tensor *d_cls, const frcnn_tensor *d_box,
                                  frcnn_tensor *d_feature)
{
    frcnn__acts *a = &m->a;
    const frcnn__heads *h = &m->heads;
    frcnn_tensor_zero(&a->d_fc7);
    frcnn_status st = frcnn_linear_backward(m->ctx, &a->fc7, frcnn__param_value(m, h->cls_score), d_cls,
                                            &a->d_fc7, frcnn__param_grad(m, h->cls_score),
                                            frcnn__param_grad(m, h->cls_score + 1));
    if (st == FRCNN_OK)
        st = frcnn_linear_backward(m->ctx, &a->fc7, frcnn__param_value(m, h->bbox_pred), d_box, &a->d_fc7,
                                   frcnn__param_grad(m, h->bbox_pred), frcnn__param_grad(m, h->bbox_pred + 1));
    if (st == FRCNN_OK)
        st = fc_backward(m, &a->fc6, h->fc7, &a->fc7, &a->d_fc7, &a->mask7, &a->d_fc6);
    if (st == FRCNN_OK)
        st = fc_backward(m, &a->pool5, h->fc6, &a->fc6, &a->d_fc6, &a->mask6, &a->d_pool5);
    if (st != FRCNN_OK)
        return st;
    if (m->cfg.roi_op == FRCNN_ROI_POOL) {
        frcnn_roi_pool_params pp = pool_params(m);
        return frcnn_roi_pool_backward(m->ctx, &pp, &a->rois, &a->d_pool5, a->pool5_argmax, d_feature);
    }
    frcnn_roi_align_params ap = align_params(m);
    return frcnn_roi_align_backward(m->ctx, &ap, align_rois(m, false), &a->d_pool5, d_feature, m->kernel_ws,
                                    m->kernel_ws_bytes);
}
