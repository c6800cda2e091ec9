/* The region proposal network's head: 3x3 conv + ReLU, 1x1 objectness (2 per anchor, Caffe's layout: channels
 * [0, A) background, [A, 2A) foreground) and 1x1 box deltas (4 per anchor), and the reordering of both into
 * anchor order (y, x, anchor) where the losses and the proposal layer read them. */
#include "model_internal.h"

#include <math.h>
#include <string.h>

static const frcnn_conv2d_params conv3x3 = {1, 1, 1, 1};
static const frcnn_conv2d_params conv1x1 = {1, 1, 0, 0};

frcnn_status frcnn__rpn_forward(frcnn_model *m, const frcnn_tensor *feature)
{
    frcnn_ctx *ctx = m->ctx;
    frcnn__acts *a = &m->a;
    const frcnn__heads *h = &m->heads;
    frcnn_status st = frcnn_conv2d_forward(ctx, &conv3x3, feature, frcnn__param_value(m, h->rpn_conv),
                                           frcnn__param_value(m, h->rpn_conv + 1), &a->rpn_h, m->kernel_ws,
                                           m->kernel_ws_bytes);
    if (st == FRCNN_OK)
        st = frcnn_relu_forward(ctx, &a->rpn_h, &a->rpn_h);
    if (st == FRCNN_OK)
        st = frcnn_conv2d_forward(ctx, &conv1x1, &a->rpn_h, frcnn__param_value(m, h->rpn_cls),
                                  frcnn__param_value(m, h->rpn_cls + 1), &a->rpn_cls, NULL, 0);
    if (st == FRCNN_OK)
        st = frcnn_conv2d_forward(ctx, &conv1x1, &a->rpn_h, frcnn__param_value(m, h->rpn_box),
                                  frcnn__param_value(m, h->rpn_box + 1), &a->rpn_box, NULL, 0);
    if (st != FRCNN_OK)
        return st;
    size_t plane = (size_t)a->fh * (size_t)a->fw, na = (size_t)m->num_anchors;
    float *logits = a->rpn_logits.data, *deltas = a->rpn_deltas.data;
    for (size_t p = 0; p < plane; p++)
        for (size_t k = 0; k < na; k++) {
            size_t i = p * na + k;
            logits[2 * i] = a->rpn_cls.data[k * plane + p];
            logits[2 * i + 1] = a->rpn_cls.data[(na + k) * plane + p];
            for (size_t j = 0; j < 4; j++)
                deltas[4 * i + j] = a->rpn_box.data[(4 * k + j) * plane + p];
        }
    return FRCNN_OK;
}

void frcnn__rpn_fg_scores(frcnn_model *m)
{
    const float *logits = m->a.rpn_logits.data;
    for (size_t i = 0; i < m->a.anchors_n; i++)
        m->a.fg_scores[i] = (float)(1.0 / (1.0 + exp((double)logits[2 * i] - (double)logits[2 * i + 1])));
}

frcnn_status frcnn__rpn_backward(frcnn_model *m, const frcnn_tensor *feature, const float *dl, const float *dd,
                                 frcnn_tensor *d_feature)
{
    frcnn_ctx *ctx = m->ctx;
    frcnn__acts *a = &m->a;
    const frcnn__heads *h = &m->heads;
    size_t plane = (size_t)a->fh * (size_t)a->fw, na = (size_t)m->num_anchors;
    for (size_t p = 0; p < plane; p++)
        for (size_t k = 0; k < na; k++) {
            size_t i = p * na + k;
            a->d_rpn_cls.data[k * plane + p] = dl[2 * i];
            a->d_rpn_cls.data[(na + k) * plane + p] = dl[2 * i + 1];
            for (size_t j = 0; j < 4; j++)
                a->d_rpn_box.data[(4 * k + j) * plane + p] = dd[4 * i + j];
        }
    frcnn_tensor_zero(&a->d_rpn_h);
    frcnn_status st = frcnn_conv2d_backward(ctx, &conv1x1, &a->rpn_h, frcnn__param_value(m, h->rpn_cls),
                                            &a->d_rpn_cls, &a->d_rpn_h, frcnn__param_grad(m, h->rpn_cls),
                                            frcnn__param_grad(m, h->rpn_cls + 1), NULL, 0);
    if (st == FRCNN_OK)
        st = frcnn_conv2d_backward(ctx, &conv1x1, &a->rpn_h, frcnn__param_value(m, h->rpn_box), &a->d_rpn_box,
                                   &a->d_rpn_h, frcnn__param_grad(m, h->rpn_box),
                                   frcnn__param_grad(m, h->rpn_box + 1), NULL, 0);
    if (st == FRCNN_OK)
        st = frcnn_relu_backward(ctx, &a->rpn_h, &a->d_rpn_h, &a->d_rpn_h);
    if (st == FRCNN_OK)
        st = frcnn_conv2d_backward(ctx, &conv3x3, feature, frcnn__param_value(m, h->rpn_conv), &a->d_rpn_h,
                                   d_feature, frcnn__param_grad(m, h->rpn_conv),
                                   frcnn__param_grad(m, h->rpn_conv + 1), m->kernel_ws, m->kernel_ws_bytes);
    return st;
}
