/* Smooth-L1 loss with inside/outside weights, forward and backward, as py-faster-rcnn's SmoothL1Loss layer
 * (caffe-fast-rcnn src/caffe/layers/smooth_L1_loss_layer.cu; its loss is divided by the blob's num, which the
 * normalizer parameter stands for: 1 for the RPN's (1, 4A, H, W) blob, 128 RoIs for the head). */
#include "internal.h"

#include <math.h>

frcnn_smooth_l1_params frcnn_smooth_l1_params_default(void)
{
    frcnn_smooth_l1_params p;
    p.sigma = 1.0f;
    p.normalizer = 1.0f;
    return p;
}

/* Checks the parameters and that pred, target and the non-NULL weights exist and share one shape. */
static frcnn_status check_args(frcnn_ctx *ctx, const frcnn_smooth_l1_params *p, const frcnn_tensor *pred,
                               const frcnn_tensor *target, const frcnn_tensor *inside, const frcnn_tensor *outside)
{
    if (!p)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "smooth_l1: params is NULL");
    if (!isfinite(p->sigma) || !(p->sigma > 0.0f))
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "smooth_l1: sigma %g, expected finite and > 0",
                            (double)p->sigma);
    if (!isfinite(p->normalizer) || !(p->normalizer > 0.0f))
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "smooth_l1: normalizer %g, expected finite and > 0",
                            (double)p->normalizer);
    frcnn_status st;
    if ((st = frcnn__check_tensor(ctx, pred, "smooth_l1: pred", 0)) != FRCNN_OK)
        return st;
    if ((st = frcnn__check_tensor(ctx, target, "smooth_l1: target", 0)) != FRCNN_OK)
        return st;
    if ((st = frcnn__check_same_shape(ctx, target, "smooth_l1: target", pred, "pred")) != FRCNN_OK)
        return st;
    if (inside && (st = frcnn__check_same_shape(ctx, inside, "smooth_l1: inside", pred, "pred")) != FRCNN_OK)
        return st;
    if (outside && (st = frcnn__check_same_shape(ctx, outside, "smooth_l1: outside", pred, "pred")) != FRCNN_OK)
        return st;
    return FRCNN_OK;
}

/* pred, target (any shape), inside, outside (the same shape, or NULL for all ones). Overwrites *loss with
 *   sum_i outside_i * f(d_i) / normalizer,   d = inside * (pred - target) (in float),
 *   f(d) = 0.5 sigma^2 d^2 if |d| < 1 / sigma^2, else |d| - 0.5 / sigma^2,
 * f and the sum in double. loss must not be NULL. */
frcnn_status frcnn_smooth_l1_forward(frcnn_ctx *ctx, const frcnn_smooth_l1_params *p, const frcnn_tensor *pred,
                                     const frcnn_tensor *target, const frcnn_tensor *inside,
                                     const frcnn_tensor *outside, float *loss)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    frcnn_status st = check_args(ctx, p, pred, target, inside, outside);
    if (st != FRCNN_OK)
        return st;
    if (!loss)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "smooth_l1: loss is NULL");

    const double sigma2 = (double)p->sigma * (double)p->sigma;
    const double transition = 1.0 / sigma2; /* 1/9 for the RPN's sigma 3 */
    const float *x = pred->data, *t = target->data;
    const float *in = inside ? inside->data : NULL, *out = outside ? outside->data : NULL;
    double sum = 0.0;
    for (size_t i = 0; i < pred->numel; i++) {
        float d = x[i] - t[i];
        if (in)
            d *= in[i];
        const double ad = fabs((double)d);
        double f = ad < transition ? 0.5 * sigma2 * (double)d * (double)d : ad - 0.5 / sigma2;
        if (out)
            f *= (double)out[i];
        sum += f;
    }
    *loss = (float)(sum / (double)p->normalizer);
    return FRCNN_OK;
}

/* Same arguments as the forward. Accumulates dpred += dloss * outside * inside * f'(d) / normalizer with
 * f'(d) = sigma^2 d if |d| < 1 / sigma^2, else sign(d) (0 at d = 0), in double per element. dpred has the shape
 * of pred; NULL means "not needed": the arguments are checked and nothing is written. */
frcnn_status frcnn_smooth_l1_backward(frcnn_ctx *ctx, const frcnn_smooth_l1_params *p, const frcnn_tensor *pred,
                                      const frcnn_tensor *target, const frcnn_tensor *inside,
                                      const frcnn_tensor *outside, float dloss, frcnn_tensor *dpred)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    frcnn_status st = check_args(ctx, p, pred, target, inside, outside);
    if (st != FRCNN_OK)
        return st;
    if (!dpred)
        return FRCNN_OK;
    if ((st = frcnn__check_same_shape(ctx, dpred, "smooth_l1: dpred", pred, "pred")) != FRCNN_OK)
        return st;

    const double sigma2 = (double)p->sigma * (double)p->sigma;
    const double transition = 1.0 / sigma2;
    const double scale = (double)dloss / (double)p->normalizer;
    const float *x = pred->data, *t = target->data;
    const float *in = inside ? inside->data : NULL, *out = outside ? outside->data : NULL;
    float *g = dpred->data;
    for (size_t i = 0; i < pred->numel; i++) {
        float d = x[i] - t[i];
        if (in)
            d *= in[i];
        const double dd = (double)d;
        double fp = fabs(dd) < transition ? sigma2 * dd : (double)((dd > 0.0) - (dd < 0.0));
        if (in)
            fp *= (double)in[i];
        if (out)
            fp *= (double)out[i];
        g[i] += (float)(scale * fp);
    }
    return FRCNN_OK;
}
