/* The backbone's forward and backward passes: 3x3 convolutions, GroupNorm when configured, ReLU and 2x2
 * max-pools (Caffe's ceil mode, or floor as torchvision), over the planned buffers; backward stops at the first
 * trainable layer. Backward takes a ReLU and the pool after it in one pass. */
#include "model_internal.h"

#include "../kernels/maxpool_relu.h"

#include <string.h>

static const frcnn_conv2d_params conv3x3 = {1, 1, 1, 1};

static frcnn_groupnorm_params norm_params(const frcnn_model *m)
{
    frcnn_groupnorm_params p = frcnn_groupnorm_params_default();
    p.groups = m->cfg.norm_groups;
    return p;
}

static frcnn_maxpool_params pool2x2(const frcnn_model *m)
{
    frcnn_maxpool_params p = frcnn_maxpool_params_default();
    p.ceil_mode = !m->cfg.pool_floor; /* py-faster-rcnn's VGG16 prototxt pools in Caffe's ceil mode */
    return p;
}

/* The tensor layer i reads: the image or the previous stage's final output. */
static const frcnn_tensor *layer_input(const frcnn_model *m, const frcnn_tensor *image, int i)
{
    if (i == 0)
        return image;
    return m->convs[i - 1].pool_after ? &m->a.pooled[i - 1] : &m->a.out[i - 1];
}

/* A banded layer (model.c's layout: no backward reads its output, a max-pool follows, no GroupNorm) runs a band
 * of output rows at a time: the band's input rows with one row of halo on each side (zero rows past the image's
 * edges, so the convolution pads only the width), convolution, ReLU and pool into small buffers, and the pooled
 * rows copied into place. Only the pooled map is ever whole: VGG16's conv1_2 output alone is 123 MB at 600x800.
 * Bands start at even rows, so no pooling window straddles two. */
static frcnn_status banded_forward(frcnn_model *m, int i, const frcnn_tensor *x, const frcnn_maxpool_params *pool)
{
    static const frcnn_conv2d_params pad_width_only = {1, 1, 0, 1};
    const frcnn__conv_layer *l = &m->convs[i];
    frcnn__acts *a = &m->a;
    frcnn_tensor *pooled = &a->pooled[i];
    size_t h = (size_t)x->dims[2], w = (size_t)x->dims[3], plane = h * w;
    size_t ph = (size_t)pooled->dims[2], pw = (size_t)pooled->dims[3];
    frcnn_status st = FRCNN_OK;
    for (size_t r0 = 0; r0 < h && st == FRCNN_OK; r0 += (size_t)a->band_rows[i]) {
        size_t rows = h - r0 < (size_t)a->band_rows[i] ? h - r0 : (size_t)a->band_rows[i];
        frcnn__view in, out, band_pooled;
        frcnn__view_set(&in, a->band_in, 4, 1, l->cin, (int64_t)rows + 2, (int64_t)w);
        frcnn__view_set(&out, a->band_out, 4, 1, l->cout, (int64_t)rows, (int64_t)w);
        for (size_t c = 0; c < (size_t)l->cin; c++)
            for (size_t j = 0; j < rows + 2; j++) {
                float *dst = a->band_in + (c * (rows + 2) + j) * w;
                size_t src = r0 + j; /* the row r0 - 1 + j, offset by one so that row -1 is 0 */
                if (src >= 1 && src <= h)
                    memcpy(dst, x->data + c * plane + (src - 1) * w, w * sizeof(float));
                else
                    memset(dst, 0, w * sizeof(float));
            }
        st = frcnn_conv2d_forward(m->ctx, &pad_width_only, &in, frcnn__param_value(m, l->weight),
                                  frcnn__param_value(m, l->weight + 1), &out, m->kernel_ws, m->kernel_ws_bytes);
        if (st == FRCNN_OK)
            st = frcnn_relu_forward(m->ctx, &out, &out);
        int64_t out_dims[4] = {0, 0, 0, 0};
        if (st == FRCNN_OK)
            st = frcnn_maxpool_output_shape(m->ctx, pool, out.dims, out_dims);
        if (st == FRCNN_OK) {
            frcnn__view_set(&band_pooled, a->band_pooled, 4, 1, l->cout, out_dims[2], out_dims[3]);
            st = frcnn_maxpool_forward(m->ctx, pool, &out, &band_pooled, NULL);
        }
        size_t prows = (size_t)out_dims[2], p0 = r0 / 2;
        if (st == FRCNN_OK && (p0 + prows > ph || (size_t)out_dims[3] != pw))
            st = frcnn__error(m->ctx, FRCNN_ERR_SHAPE, "backbone layer %d: band rows %zu..%zu pool outside "
                              "the map", i, r0, r0 + rows);
        for (size_t c = 0; st == FRCNN_OK && c < (size_t)l->cout; c++)
            memcpy(pooled->data + (c * ph + p0) * pw, a->band_pooled + c * prows * pw, prows * pw * sizeof(float));
    }
    return st;
}

frcnn_status frcnn__backbone_forward(frcnn_model *m, const frcnn_tensor *image, bool train, frcnn_tensor **feature)
{
    frcnn_ctx *ctx = m->ctx;
    frcnn_maxpool_params pool = pool2x2(m);
    frcnn_groupnorm_params norm = norm_params(m);
    frcnn_status st = FRCNN_OK;
    for (int i = 0; i < m->n_convs && st == FRCNN_OK; i++) {
        const frcnn__conv_layer *l = &m->convs[i];
        if (m->a.banded[i]) {
            st = banded_forward(m, i, layer_input(m, image, i), &pool);
            continue;
        }
        frcnn_tensor *out = &m->a.out[i], *conv = l->norm >= 0 ? &m->a.conv[i] : out;
        st = frcnn_conv2d_forward(ctx, &conv3x3, layer_input(m, image, i), frcnn__param_value(m, l->weight),
                                  frcnn__param_value(m, l->weight + 1), conv, m->kernel_ws, m->kernel_ws_bytes);
        if (st == FRCNN_OK && l->norm >= 0)
            st = frcnn_groupnorm_forward(ctx, &norm, conv, frcnn__param_value(m, l->norm),
                                         frcnn__param_value(m, l->norm + 1), out, &m->a.norm_mean[i],
                                         &m->a.norm_rstd[i]);
        if (st == FRCNN_OK)
            st = frcnn_relu_forward(ctx, out, out);
        if (st == FRCNN_OK && l->pool_after)
            st = frcnn_maxpool_forward(ctx, &pool, out, &m->a.pooled[i], train ? m->a.pool_argmax[i] : NULL);
    }
    *feature = (frcnn_tensor *)layer_input(m, image, m->n_convs);
    return st;
}

frcnn_status frcnn__backbone_backward(frcnn_model *m, const frcnn_tensor *image)
{
    frcnn_ctx *ctx = m->ctx;
    frcnn_maxpool_params pool = pool2x2(m);
    frcnn_groupnorm_params norm = norm_params(m);
    float *grad = m->a.grad_a_mem, *spare = m->a.grad_b_mem; /* grad: d(final output of layer i) */
    frcnn_status st = FRCNN_OK;
    for (int i = m->n_convs - 1; i >= m->cfg.frozen_convs && st == FRCNN_OK; i--) {
        const frcnn__conv_layer *l = &m->convs[i];
        const frcnn_tensor *out = &m->a.out[i];
        frcnn__view d_out;
        if (l->pool_after) {
            const frcnn_tensor *pooled = &m->a.pooled[i];
            frcnn__view d_pooled;
            frcnn__view_set(&d_pooled, grad, 4, 1, pooled->dims[1], pooled->dims[2], pooled->dims[3]);
            frcnn__view_set(&d_out, spare, 4, 1, out->dims[1], out->dims[2], out->dims[3]);
            st = frcnn__maxpool_relu_backward(ctx, &pool, pooled, &d_pooled, m->a.pool_argmax[i], &d_out);
            float *t = grad;
            grad = spare;
            spare = t;
        } else {
            frcnn__view_set(&d_out, grad, 4, 1, out->dims[1], out->dims[2], out->dims[3]);
            st = frcnn_relu_backward(ctx, out, &d_out, &d_out); /* in place: gates d_out */
        }
        if (st == FRCNN_OK && l->norm >= 0) { /* d_out becomes the convolution output's gradient, in spare */
            frcnn__view d_conv;
            frcnn__view_set(&d_conv, spare, 4, 1, out->dims[1], out->dims[2], out->dims[3]);
            frcnn_tensor_zero(&d_conv);
            st = frcnn_groupnorm_backward(ctx, &norm, &m->a.conv[i], frcnn__param_value(m, l->norm),
                                          &m->a.norm_mean[i], &m->a.norm_rstd[i], &d_out, &d_conv,
                                          frcnn__param_grad(m, l->norm), frcnn__param_grad(m, l->norm + 1));
            d_out = d_conv;
            float *t = grad;
            grad = spare;
            spare = t;
        }
        const frcnn_tensor *x = layer_input(m, image, i);
        frcnn__view dx;
        bool need_dx = i > m->cfg.frozen_convs;
        if (need_dx) {
            frcnn__view_set(&dx, spare, 4, 1, x->dims[1], x->dims[2], x->dims[3]);
            frcnn_tensor_zero(&dx);
        }
        if (st == FRCNN_OK)
            st = frcnn_conv2d_backward(ctx, &conv3x3, x, frcnn__param_value(m, l->weight), &d_out,
                                       need_dx ? &dx : NULL, frcnn__param_grad(m, l->weight),
                                       frcnn__param_grad(m, l->weight + 1), m->kernel_ws, m->kernel_ws_bytes);
        float *t = grad;
        grad = spare;
        spare = t;
    }
    return st;
}
