/* Group normalization (Wu & He, "Group Normalization", ECCV 2018), forward and backward over (n, c, h, w).
 * Statistics are biased (divided by the element count, as torch.nn.GroupNorm) and summed in double in a fixed
 * order; every parallel loop writes only what its range owns, so results do not depend on the thread count. */
#include "internal.h"

#include <float.h>
#include <math.h>
#include <stdio.h>

/* Elements per thread below which a loop is not worth splitting (waking a worker takes microseconds). */
#define GN_MIN_WORK_PER_THREAD ((size_t)1 << 16)

frcnn_groupnorm_params frcnn_groupnorm_params_default(void)
{
    /* The paper's G = 32 and eps = 1e-5 (its TensorFlow listing, and PyTorch's default). */
    frcnn_groupnorm_params p;
    p.groups = 32;
    p.eps = 1e-5f;
    return p;
}

/* The sizes of one call: n samples, c channels in `groups` groups of cpg, hw pixels per channel plane. */
typedef struct gn_dims {
    size_t n, c, groups, cpg, hw;
} gn_dims;

static frcnn_status check_params(frcnn_ctx *ctx, const char *op, const frcnn_groupnorm_params *p)
{
    if (!p)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "%s: params is NULL", op);
    if (p->groups < 1)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "%s: groups %d, expected at least 1", op, p->groups);
    if (!(p->eps > 0.0f && p->eps <= FLT_MAX))
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "%s: eps %g, expected a finite value > 0", op,
                            (double)p->eps);
    return FRCNN_OK;
}

/* True when the data of a and b share any element. */
static bool overlaps(const frcnn_tensor *a, const frcnn_tensor *b)
{
    uintptr_t a0 = (uintptr_t)a->data, a1 = (uintptr_t)(a->data + a->numel);
    uintptr_t b0 = (uintptr_t)b->data, b1 = (uintptr_t)(b->data + b->numel);
    return a0 < b1 && b0 < a1;
}

/* Checks x (n, c, h, w) against the parameters, and gamma (c), mean and rstd (n, groups), each when not NULL
 * (forward passes beta as `gamma2`); fills *d. Names in messages start with `op`. */
static frcnn_status check_common(frcnn_ctx *ctx, const char *op, const frcnn_groupnorm_params *p,
                                 const frcnn_tensor *x, const frcnn_tensor *gamma, const frcnn_tensor *gamma2,
                                 const char *gamma2_name, const frcnn_tensor *mean, const frcnn_tensor *rstd,
                                 gn_dims *d)
{
    frcnn_status st = check_params(ctx, op, p);
    char name[64];
    if (st == FRCNN_OK) {
        snprintf(name, sizeof name, "%s: x", op);
        st = frcnn__check_tensor(ctx, x, name, 4);
    }
    if (st != FRCNN_OK)
        return st;
    char sx[96];
    frcnn__shape_str(x, sx, sizeof sx);
    if (x->dims[1] % p->groups != 0)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "%s: %lld channels of x %s do not split into %d groups", op,
                            (long long)x->dims[1], sx, p->groups);
    const frcnn_tensor *vec[2] = {gamma, gamma2};
    const char *vec_name[2] = {"gamma", gamma2_name};
    for (int i = 0; i < 2; i++) {
        if (!vec_name[i])
            continue;
        snprintf(name, sizeof name, "%s: %s", op, vec_name[i]);
        st = frcnn__check_tensor(ctx, vec[i], name, 1);
        if (st != FRCNN_OK)
            return st;
        if (vec[i]->dims[0] != x->dims[1]) {
            char sv[96];
            frcnn__shape_str(vec[i], sv, sizeof sv);
            return frcnn__error(ctx, FRCNN_ERR_SHAPE, "%s: %s %s does not match x %s: expected (%lld)", op,
                                vec_name[i], sv, sx, (long long)x->dims[1]);
        }
    }
    const frcnn_tensor *stat[2] = {mean, rstd};
    const char *stat_name[2] = {"mean", "rstd"};
    for (int i = 0; i < 2; i++) {
        snprintf(name, sizeof name, "%s: %s", op, stat_name[i]);
        st = frcnn__check_tensor(ctx, stat[i], name, 2);
        if (st != FRCNN_OK)
            return st;
        if (stat[i]->dims[0] != x->dims[0] || stat[i]->dims[1] != p->groups) {
            char ss[96];
            frcnn__shape_str(stat[i], ss, sizeof ss);
            return frcnn__error(ctx, FRCNN_ERR_SHAPE,
                                "%s: %s %s does not match x %s and %d groups: expected (%lld, %d)", op, stat_name[i],
                                ss, sx, p->groups, (long long)x->dims[0], p->groups);
        }
    }
    d->n = (size_t)x->dims[0];
    d->c = (size_t)x->dims[1];
    d->groups = (size_t)p->groups;
    d->cpg = d->c / d->groups;
    d->hw = (size_t)x->dims[2] * (size_t)x->dims[3];
    return FRCNN_OK;
}

/* Sums over n floats in double, in a fixed order independent of everything but n: lane k takes the elements
 * k, k + LANES, ..., the tail goes to lane 0, and the lanes are added in order. Independent lanes run about 1.6x
 * faster than one dependent chain of double additions. */
#define LANES 8

/* *s = sum a, *sq = sum a^2 */
static void sum_and_squares(const float *a, size_t n, double *s, double *sq)
{
    double ls[LANES] = {0}, lq[LANES] = {0};
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int k = 0; k < LANES; k++) {
            double v = (double)a[i + k];
            ls[k] += v;
            lq[k] += v * v;
        }
    for (; i < n; i++) {
        double v = (double)a[i];
        ls[0] += v;
        lq[0] += v * v;
    }
    double rs = 0.0, rq = 0.0;
    for (int k = 0; k < LANES; k++) {
        rs += ls[k];
        rq += lq[k];
    }
    *s = rs;
    *sq = rq;
}

/* *s = sum a, *sab = sum a b */
static void sum_and_dot(const float *a, const float *b, size_t n, double *s, double *sab)
{
    double ls[LANES] = {0}, ld[LANES] = {0};
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int k = 0; k < LANES; k++) {
            double v = (double)a[i + k];
            ls[k] += v;
            ld[k] += v * (double)b[i + k];
        }
    for (; i < n; i++) {
        double v = (double)a[i];
        ls[0] += v;
        ld[0] += v * (double)b[i];
    }
    double rs = 0.0, rd = 0.0;
    for (int k = 0; k < LANES; k++) {
        rs += ls[k];
        rd += ld[k];
    }
    *s = rs;
    *sab = rd;
}

/* Items of `per_item` elements per thread so that each thread gets at least GN_MIN_WORK_PER_THREAD elements. */
static size_t min_items(size_t per_item)
{
    size_t k = GN_MIN_WORK_PER_THREAD / (per_item ? per_item : 1);
    return k ? k : 1;
}

typedef struct gn_job {
    gn_dims d;
    double eps;
    const float *x, *gamma, *beta, *dy;
    const float *mean_in, *rstd_in; /* backward */
    float *y, *mean, *rstd;         /* forward */
    float *dx, *dgamma, *dbeta;     /* backward */
} gn_job;

/* One item per (sample, group): the group's c/groups planes are contiguous in x. One pass of sum and sum of
 * squares in double (activations are O(1)..O(1e3), so the cancellation in E[x^2] - E[x]^2 costs nothing visible at
 * float precision), then y = (x - mean) * (gamma rstd) + beta per channel. The mean is subtracted as a float pair
 * hi + lo: x - hi is exact for x near the mean, so y keeps float precision even when |mean| >> std (one float
 * mean alone would shift y by up to 3e-8 |mean| rstd). hi is the mean saved for backward; rstd is used as
 * saved. */
static void forward_range(void *arg, size_t begin, size_t end)
{
    const gn_job *j = arg;
    const gn_dims *d = &j->d;
    const size_t m = d->cpg * d->hw;
    const double inv_m = 1.0 / (double)m;
    for (size_t item = begin; item < end; item++) {
        const size_t g = item % d->groups;
        const size_t off = item * m; /* (sample * c + g * cpg) * hw */
        const float *x = j->x + off;
        double s, sq;
        sum_and_squares(x, m, &s, &sq);
        double mu = s * inv_m;
        double var = sq * inv_m - mu * mu;
        if (var < 0.0)
            var = 0.0; /* rounding when all values (nearly) agree */
        const float mean_hi = (float)mu, mean_lo = (float)(mu - (double)mean_hi);
        const float rstd_f = (float)(1.0 / sqrt(var + j->eps));
        j->mean[item] = mean_hi;
        j->rstd[item] = rstd_f;
        float *y = j->y + off;
        for (size_t k = 0; k < d->cpg; k++) {
            const size_t ch = g * d->cpg + k;
            const float scale = (float)((double)j->gamma[ch] * (double)rstd_f);
            const float shift = j->beta[ch];
            const float *xc = x + k * d->hw;
            float *yc = y + k * d->hw;
            for (size_t i = 0; i < d->hw; i++)
                yc[i] = ((xc[i] - mean_hi) - mean_lo) * scale + shift;
        }
    }
}

frcnn_status frcnn_groupnorm_forward(frcnn_ctx *ctx, const frcnn_groupnorm_params *p, const frcnn_tensor *x,
                                     const frcnn_tensor *gamma, const frcnn_tensor *beta, frcnn_tensor *y,
                                     frcnn_tensor *mean, frcnn_tensor *rstd)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    gn_dims d;
    frcnn_status st = check_common(ctx, "groupnorm", p, x, gamma, beta, "beta", mean, rstd, &d);
    if (st == FRCNN_OK)
        st = frcnn__check_tensor(ctx, y, "groupnorm: y", 4);
    if (st == FRCNN_OK)
        st = frcnn__check_same_shape(ctx, y, "groupnorm: y", x, "x");
    if (st != FRCNN_OK)
        return st;
    if (overlaps(y, x))
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG,
                            "groupnorm: y overlaps x; backward needs x, so give y its own memory");
    if (overlaps(mean, x) || overlaps(mean, y) || overlaps(rstd, x) || overlaps(rstd, y) || overlaps(mean, rstd))
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG,
                            "groupnorm: mean and rstd must not overlap x, y or each other");
    gn_job job = {0};
    job.d = d;
    job.eps = (double)p->eps;
    job.x = x->data;
    job.gamma = gamma->data;
    job.beta = beta->data;
    job.y = y->data;
    job.mean = mean->data;
    job.rstd = rstd->data;
    frcnn__parallel_for(ctx, d.n * d.groups, min_items(d.cpg * d.hw), forward_range, &job);
    return FRCNN_OK;
}

/* dx for one item per (sample, group). With xhat = (x - mean) rstd and g = dy gamma over the group's m elements:
 *   dx += rstd (g - mean(g) - xhat mean(g xhat))
 * The two means come from per-channel sums of dy and dy (x - mean) in double (pass 1); pass 2 adds
 *   a_c dy + b (x - mean) + c0,   a_c = rstd gamma_c,   b = -rstd^2 mean(g xhat),   c0 = -rstd mean(g). */
static void backward_dx_range(void *arg, size_t begin, size_t end)
{
    const gn_job *j = arg;
    const gn_dims *d = &j->d;
    const size_t m = d->cpg * d->hw;
    const double inv_m = 1.0 / (double)m;
    for (size_t item = begin; item < end; item++) {
        const size_t g = item % d->groups;
        const size_t off = item * m;
        const float *x = j->x + off, *dy = j->dy + off;
        const float mean_f = j->mean_in[item];
        const double mu = (double)mean_f, rs = (double)j->rstd_in[item];
        double sum_g = 0.0, sum_gx = 0.0; /* sum of g, and of g (x - mean) */
        for (size_t k = 0; k < d->cpg; k++) {
            double s, sx;
            sum_and_dot(dy + k * d->hw, x + k * d->hw, d->hw, &s, &sx);
            const double gam = (double)j->gamma[g * d->cpg + k];
            sum_g += gam * s;
            sum_gx += gam * (sx - mu * s);
        }
        const double mean_g = sum_g * inv_m, mean_gxhat = sum_gx * rs * inv_m;
        const float b = (float)(-rs * rs * mean_gxhat);
        const float c0 = (float)(-rs * mean_g);
        float *dx = j->dx + off;
        for (size_t k = 0; k < d->cpg; k++) {
            const float a = (float)(rs * (double)j->gamma[g * d->cpg + k]);
            const float *xc = x + k * d->hw, *dyc = dy + k * d->hw;
            float *dxc = dx + k * d->hw;
            for (size_t i = 0; i < d->hw; i++)
                dxc[i] += a * dyc[i] + b * (xc[i] - mean_f) + c0;
        }
    }
}

/* dgamma, dbeta for one item per channel: over the samples in order, sums of dy and dy (x - mean) over the
 * plane in double, weighted by the sample's rstd; each gradient element is added once. */
static void backward_params_range(void *arg, size_t begin, size_t end)
{
    const gn_job *j = arg;
    const gn_dims *d = &j->d;
    for (size_t ch = begin; ch < end; ch++) {
        const size_t g = ch / d->cpg;
        double acc_gamma = 0.0, acc_beta = 0.0;
        for (size_t s = 0; s < d->n; s++) {
            const size_t off = (s * d->c + ch) * d->hw;
            const double mu = (double)j->mean_in[s * d->groups + g];
            double sum, sum_x;
            sum_and_dot(j->dy + off, j->x + off, d->hw, &sum, &sum_x);
            acc_gamma += (double)j->rstd_in[s * d->groups + g] * (sum_x - mu * sum);
            acc_beta += sum;
        }
        if (j->dgamma)
            j->dgamma[ch] += (float)acc_gamma;
        if (j->dbeta)
            j->dbeta[ch] += (float)acc_beta;
    }
}

/* Checks an optional 1-D parameter gradient of length c. */
static frcnn_status check_param_grad(frcnn_ctx *ctx, const frcnn_tensor *t, const char *name, const frcnn_tensor *x)
{
    if (!t)
        return FRCNN_OK;
    if (t->ndim != 1 || t->dims[0] != x->dims[1]) {
        char sg[96], sx[96];
        frcnn__shape_str(t, sg, sizeof sg);
        frcnn__shape_str(x, sx, sizeof sx);
        return frcnn__error(ctx, FRCNN_ERR_SHAPE, "groupnorm backward: %s %s does not match x %s: expected (%lld)",
                            name, sg, sx, (long long)x->dims[1]);
    }
    return FRCNN_OK;
}

frcnn_status frcnn_groupnorm_backward(frcnn_ctx *ctx, const frcnn_groupnorm_params *p, const frcnn_tensor *x,
                                      const frcnn_tensor *gamma, const frcnn_tensor *mean, const frcnn_tensor *rstd,
                                      const frcnn_tensor *dy, frcnn_tensor *dx, frcnn_tensor *dgamma,
                                      frcnn_tensor *dbeta)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    gn_dims d;
    const char *op = "groupnorm backward";
    frcnn_status st = check_common(ctx, op, p, x, gamma, NULL, NULL, mean, rstd, &d);
    if (st == FRCNN_OK)
        st = frcnn__check_tensor(ctx, dy, "groupnorm backward: dy", 4);
    if (st == FRCNN_OK)
        st = frcnn__check_same_shape(ctx, dy, "groupnorm backward: dy", x, "x");
    if (st == FRCNN_OK && dx)
        st = frcnn__check_tensor(ctx, dx, "groupnorm backward: dx", 4);
    if (st == FRCNN_OK && dx)
        st = frcnn__check_same_shape(ctx, dx, "groupnorm backward: dx", x, "x");
    if (st == FRCNN_OK)
        st = check_param_grad(ctx, dgamma, "dgamma", x);
    if (st == FRCNN_OK)
        st = check_param_grad(ctx, dbeta, "dbeta", x);
    if (st != FRCNN_OK)
        return st;
    if (dx && (overlaps(dx, x) || overlaps(dx, dy)))
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "groupnorm backward: dx must not overlap x or dy");
    gn_job job = {0};
    job.d = d;
    job.x = x->data;
    job.gamma = gamma->data;
    job.dy = dy->data;
    job.mean_in = mean->data;
    job.rstd_in = rstd->data;
    job.dx = dx ? dx->data : NULL;
    job.dgamma = dgamma ? dgamma->data : NULL;
    job.dbeta = dbeta ? dbeta->data : NULL;
    if (dx)
        frcnn__parallel_for(ctx, d.n * d.groups, min_items(d.cpg * d.hw), backward_dx_range, &job);
    if (dgamma || dbeta)
        frcnn__parallel_for(ctx, d.c, min_items(d.n * d.hw), backward_params_range, &job);
    return FRCNN_OK;
}
