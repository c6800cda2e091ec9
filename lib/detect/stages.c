/* The stage-by-stage API: input validation and the order of stages, over the model's planned step buffers. The
 * training step and detection are built on it. */
#include "model_internal.h"

#include <math.h>
#include <string.h>

static frcnn_status out_of_order(frcnn_model *m, const char *call, const char *needs)
{
    return frcnn__error(m->ctx, FRCNN_ERR_STATE, "%s: called out of order, %s first", call, needs);
}

frcnn_status frcnn_model_stage_begin(frcnn_model *m, const frcnn_input *in, bool train)
{
    if (!m)
        return FRCNN_ERR_INVALID_ARG;
    memset(&m->stage, 0, sizeof m->stage);
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
    frcnn_status st = frcnn__acts_layout(m, (int)x->dims[2], (int)x->dims[3], train);
    if (st != FRCNN_OK)
        return st;
    m->stage.begun = true;
    m->stage.train = train;
    m->stage.image = x;
    return FRCNN_OK;
}

frcnn_status frcnn_model_backbone_forward(frcnn_model *m, const frcnn_tensor **feature)
{
    if (!m || !feature)
        return m ? frcnn__error(m->ctx, FRCNN_ERR_INVALID_ARG, "backbone_forward: feature is NULL")
                 : FRCNN_ERR_INVALID_ARG;
    if (!m->stage.begun || m->stage.feature)
        return out_of_order(m, "backbone_forward", "stage_begin");
    frcnn_tensor *f;
    frcnn_status st = frcnn__backbone_forward(m, m->stage.image, m->stage.train, &f);
    if (st != FRCNN_OK)
        return st;
    m->stage.feature = f;
    *feature = f;
    return FRCNN_OK;
}

frcnn_status frcnn_model_rpn_forward(frcnn_model *m, frcnn_rpn_outputs *out)
{
    if (!m || !out)
        return m ? frcnn__error(m->ctx, FRCNN_ERR_INVALID_ARG, "rpn_forward: out is NULL") : FRCNN_ERR_INVALID_ARG;
    if (!m->stage.feature)
        return out_of_order(m, "rpn_forward", "backbone_forward");
    frcnn__acts *a = &m->a;
    frcnn_status st = frcnn__rpn_forward(m, m->stage.feature);
    if (st == FRCNN_OK)
        st = frcnn_anchors_grid(m->ctx, m->base_anchors, (size_t)m->num_anchors, a->fh, a->fw, m->cfg.feat_stride,
                                a->anchors);
    if (st != FRCNN_OK)
        return st;
    m->stage.rpn_done = true;
    out->logits = &a->rpn_logits;
    out->deltas = &a->rpn_deltas;
    out->anchors = a->anchors;
    out->n = a->anchors_n;
    out->feat_h = a->fh;
    out->feat_w = a->fw;
    return FRCNN_OK;
}

frcnn_status frcnn_model_head_forward(frcnn_model *m, const float *rois, size_t r, frcnn_rng *rng,
                                      frcnn_head_outputs *out)
{
    if (!m || !out || (!rois && r > 0))
        return m ? frcnn__error(m->ctx, FRCNN_ERR_INVALID_ARG, "head_forward: %s is NULL", out ? "rois" : "out")
                 : FRCNN_ERR_INVALID_ARG;
    if (!m->stage.feature || m->stage.head_done)
        return out_of_order(m, "head_forward", "backbone_forward (once per stage_begin)");
    frcnn__acts *a = &m->a;
    size_t cap = (size_t)a->rois.dims[0];
    if (r < 1 || r > cap)
        return frcnn__error(m->ctx, FRCNN_ERR_SHAPE, "head_forward: %zu RoIs, the plan allows 1 to %zu", r, cap);
    if (m->stage.train && m->cfg.dropout > 0 && !rng)
        return frcnn__error(m->ctx, FRCNN_ERR_INVALID_ARG, "head_forward: training with dropout needs an rng");
    for (size_t i = 0; i < 4 * r; i++)
        if (!isfinite(rois[i]))
            return frcnn__error(m->ctx, FRCNN_ERR_NOT_FINITE, "head_forward: RoI %zu has a non-finite coordinate",
                                i / 4);
    frcnn__view *views[] = {&a->rois, &a->align_rois, &a->pool5, &a->fc6, &a->fc7, &a->cls, &a->box, &a->cls_prob,
                            &a->roi_targets, &a->roi_in_w, &a->d_pool5, &a->mask6, &a->mask7, &a->d_fc6,
                            &a->d_fc7, &a->d_cls, &a->d_box};
    size_t n_views = m->stage.train ? sizeof views / sizeof views[0] : 8; /* inference plans only the first 8 */
    for (size_t i = 0; i < n_views; i++)
        frcnn__view_rows(views[i], (int64_t)r);
    for (size_t i = 0; i < r; i++) {
        a->rois.data[5 * i] = 0.0f;
        memcpy(&a->rois.data[5 * i + 1], &rois[4 * i], 4 * sizeof(float));
    }
    frcnn_status st = frcnn__head_forward(m, m->stage.feature, m->stage.train, rng);
    if (st != FRCNN_OK)
        return st;
    m->stage.head_done = true;
    m->stage.n_rois = r;
    out->cls = &a->cls;
    out->box = &a->box;
    out->r = r;
    return FRCNN_OK;
}

/* The feature map's gradient, zeroed by the first backward stage of a step. */
static frcnn_tensor *d_feature(frcnn_model *m, frcnn__view *v)
{
    const frcnn_tensor *f = m->stage.feature;
    frcnn__view_set(v, m->a.grad_a_mem, 4, 1, f->dims[1], f->dims[2], f->dims[3]);
    if (!m->stage.d_feature_started) {
        frcnn_tensor_zero(v);
        m->stage.d_feature_started = true;
    }
    return v;
}

static frcnn_status check_grad_shape(frcnn_model *m, const frcnn_tensor *g, const char *name, const frcnn_tensor *like)
{
    frcnn_status st = frcnn__check_tensor(m->ctx, g, name, 2);
    return st == FRCNN_OK ? frcnn__check_same_shape(m->ctx, g, name, like, "the forward output") : st;
}

frcnn_status frcnn_model_head_backward(frcnn_model *m, const frcnn_tensor *d_cls, const frcnn_tensor *d_box)
{
    if (!m)
        return FRCNN_ERR_INVALID_ARG;
    if (!m->stage.train || !m->stage.head_done || m->stage.head_back || m->stage.rpn_back)
        return out_of_order(m, "head_backward", "a training stage_begin and head_forward (and no RPN backward)");
    frcnn_status st = check_grad_shape(m, d_cls, "head_backward: d_cls", &m->a.cls);
    if (st == FRCNN_OK)
        st = check_grad_shape(m, d_box, "head_backward: d_box", &m->a.box);
    if (st != FRCNN_OK)
        return st;
    frcnn__view v;
    st = frcnn__head_backward(m, d_cls, d_box, d_feature(m, &v));
    m->stage.head_back = true;
    return st;
}

frcnn_status frcnn_model_rpn_backward(frcnn_model *m, const frcnn_tensor *d_logits, const frcnn_tensor *d_deltas)
{
    if (!m)
        return FRCNN_ERR_INVALID_ARG;
    if (!m->stage.train || !m->stage.rpn_done || m->stage.rpn_back)
        return out_of_order(m, "rpn_backward", "a training stage_begin and rpn_forward");
    frcnn_status st = check_grad_shape(m, d_logits, "rpn_backward: d_logits", &m->a.rpn_logits);
    if (st == FRCNN_OK)
        st = check_grad_shape(m, d_deltas, "rpn_backward: d_deltas", &m->a.rpn_deltas);
    if (st != FRCNN_OK)
        return st;
    frcnn__view v;
    st = frcnn__rpn_backward(m, m->stage.feature, d_logits->data, d_deltas->data, d_feature(m, &v));
    m->stage.rpn_back = true;
    return st;
}

frcnn_status frcnn_model_backbone_backward(frcnn_model *m)
{
    if (!m)
        return FRCNN_ERR_INVALID_ARG;
    if (!m->stage.d_feature_started)
        return out_of_order(m, "backbone_backward", "head_backward or rpn_backward");
    frcnn_status st = frcnn__backbone_backward(m, m->stage.image);
    m->stage.d_feature_started = false; /* the feature gradient buffer has been consumed */
    m->stage.begun = false;
    return st;
}
