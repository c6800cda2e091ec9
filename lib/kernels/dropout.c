/* Inverted dropout, forward and backward, with the mask drawn from an explicit RNG in element order. */
#include "internal.h"

static frcnn_status check_pair(frcnn_ctx *ctx, const frcnn_tensor *a, const char *a_name, const frcnn_tensor *b,
                               const char *b_name)
{
    frcnn_status st = frcnn__check_tensor(ctx, a, a_name, 0);
    if (st == FRCNN_OK)
        st = frcnn__check_tensor(ctx, b, b_name, 0);
    return st;
}

/* x any shape; y and mask the same shape, both overwritten; y may be x, mask must not overlap x or y.
 * In training with p > 0: mask[i] = (u_i < p) ? 0 : 1 / (1 - p) with u_i = frcnn_rng_uniform(rng), drawn for
 * i = 0, 1, ... in order (exactly numel draws), and y = x * mask, so P(drop) = p and E[y] = x as in Caffe's
 * DropoutLayer. Otherwise y = x, mask = 1 and rng is not used; it may be NULL then. p must be in [0, 1) (NaN is
 * rejected) even when not training. */
frcnn_status frcnn_dropout_forward(frcnn_ctx *ctx, frcnn_rng *rng, float p, bool training, const frcnn_tensor *x,
                                   frcnn_tensor *y, frcnn_tensor *mask)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    if (!(p >= 0.0f && p < 1.0f))
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "dropout: p is %g, expected 0 <= p < 1", (double)p);
    frcnn_status st = check_pair(ctx, x, "dropout: x", y, "dropout: y");
    if (st == FRCNN_OK)
        st = frcnn__check_tensor(ctx, mask, "dropout: mask", 0);
    if (st == FRCNN_OK)
        st = frcnn__check_same_shape(ctx, y, "dropout: y", x, "x");
    if (st == FRCNN_OK)
        st = frcnn__check_same_shape(ctx, mask, "dropout: mask", x, "x");
    if (st != FRCNN_OK)
        return st;
    const bool drop = training && p > 0.0f;
    if (drop && !rng)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "dropout: rng is NULL in training with p = %g", (double)p);

    const float *xd = x->data;
    float *yd = y->data, *md = mask->data;
    const size_t n = x->numel;
    if (!drop) {
        for (size_t i = 0; i < n; i++) {
            yd[i] = xd[i];
            md[i] = 1.0f;
        }
        return FRCNN_OK;
    }
    const float scale = 1.0f / (1.0f - p);
    for (size_t i = 0; i < n; i++) {
        float m = frcnn_rng_uniform(rng) < p ? 0.0f : scale;
        md[i] = m;
        yd[i] = xd[i] * m;
    }
    return FRCNN_OK;
}

/* mask and dy any shape, the same; dx the same shape, accumulated (dx += dy * mask), or NULL (skipped). dx must not
 * be dy (in place, the accumulation would add dy * mask to dy instead of scaling it); that call is rejected. */
frcnn_status frcnn_dropout_backward(frcnn_ctx *ctx, const frcnn_tensor *mask, const frcnn_tensor *dy,
                                    frcnn_tensor *dx)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    frcnn_status st = check_pair(ctx, mask, "dropout backward: mask", dy, "dropout backward: dy");
    if (st == FRCNN_OK)
        st = frcnn__check_same_shape(ctx, dy, "dropout backward: dy", mask, "mask");
    if (st == FRCNN_OK && dx)
        st = frcnn__check_same_shape(ctx, dx, "dropout backward: dx", mask, "mask");
    if (st == FRCNN_OK && dx && dx->data == dy->data)
        st = frcnn__error(ctx, FRCNN_ERR_INVALID_ARG,
                          "dropout backward: dx and dy are the same buffer; backward accumulates (dx += dy * mask), "
                          "so pass a separate (zeroed) dx");
    if (st != FRCNN_OK || !dx)
        return st;
    const float *md = mask->data, *dyd = dy->data;
    float *dxd = dx->data;
    for (size_t i = 0; i < mask->numel; i++)
        dxd[i] += dyd[i] * md[i];
    return FRCNN_OK;
}
