/* Tests for group normalization (lib/kernels/groupnorm.c): hand-computed values, the statistics of the output, a
 * naive double-precision reference, gradient checks for x, gamma and beta, accumulation and NULL gradients, bad
 * arguments, and determinism across runs and thread counts. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static frcnn_groupnorm_params params(int groups, float eps)
{
    frcnn_groupnorm_params p = frcnn_groupnorm_params_default();
    p.groups = groups;
    p.eps = eps;
    return p;
}

static void free_all(frcnn_tensor **ts, size_t n)
{
    for (size_t i = 0; i < n; i++)
        frcnn_tensor_free(ts[i]);
}

static void test_params_default(void **state)
{
    (void)state;
    frcnn_groupnorm_params p = frcnn_groupnorm_params_default();
    assert_int_equal(p.groups, 32);
    assert_true(p.eps == 1e-5f);
}

/* ------------------------------------------------------------------------------------------ hand-computed */

static void test_forward_hand(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    /* One group of [1, 2, 3, 4]: mean 2.5, biased variance (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25, so with a
     * negligible eps rstd = 1 / sqrt(1.25) = 2 / sqrt(5) = 0.894427191 and y = (x - 2.5) rstd. */
    frcnn_tensor *x = tu_tensor(ctx, 4, 1, 1, 2, 2), *y = tu_tensor(ctx, 4, 1, 1, 2, 2);
    frcnn_tensor *gamma = tu_tensor(ctx, 1, 1, 0, 0, 0), *beta = tu_tensor(ctx, 1, 1, 0, 0, 0);
    frcnn_tensor *mean = tu_tensor(ctx, 2, 1, 1, 0, 0), *rstd = tu_tensor(ctx, 2, 1, 1, 0, 0);
    const float xv[4] = {1, 2, 3, 4};
    memcpy(frcnn_tensor_data(x), xv, sizeof xv);
    frcnn_tensor_fill(gamma, 1.0f);
    frcnn_groupnorm_params p = params(1, 1e-12f);
    assert_int_equal(frcnn_groupnorm_forward(ctx, &p, x, gamma, beta, y, mean, rstd), FRCNN_OK);
    const float want_y[4] = {-1.3416407865f, -0.4472135955f, 0.4472135955f, 1.3416407865f};
    tu_assert_close("groupnorm [1,2,3,4] y", frcnn_tensor_data(y), want_y, 4, 1e-7, 1e-7);
    assert_true(frcnn_tensor_data(mean)[0] == 2.5f);
    const float want_rstd = 0.894427191f;
    tu_assert_close("groupnorm [1,2,3,4] rstd", frcnn_tensor_data(rstd), &want_rstd, 1, 0.0, 1e-7);

    /* The default eps 1e-5: rstd = 1 / sqrt(1.25001) = 0.894423613. */
    p = params(1, 1e-5f);
    assert_int_equal(frcnn_groupnorm_forward(ctx, &p, x, gamma, beta, y, mean, rstd), FRCNN_OK);
    const float want_y_eps[4] = {-1.34163542f, -0.447211807f, 0.447211807f, 1.34163542f};
    tu_assert_close("groupnorm [1,2,3,4] y eps 1e-5", frcnn_tensor_data(y), want_y_eps, 4, 1e-7, 1e-7);
    const float want_rstd_eps = 0.894423613f;
    tu_assert_close("groupnorm [1,2,3,4] rstd eps 1e-5", frcnn_tensor_data(rstd), &want_rstd_eps, 1, 0.0, 1e-7);
    free_all((frcnn_tensor *[]){x, y, gamma, beta, mean, rstd}, 6);

    /* The same four values as two channels of one group (1, 2, 1, 2), with gamma (2, -1) and beta (0.5, 1):
     * channel 0 gives 2 (x - 2.5) r + 0.5, channel 1 gives -(x - 2.5) r + 1. A second sample [4, 4, 4, 4]
     * has variance 0: y = beta exactly, mean 4, rstd 1 / sqrt(eps) = 1e6 (eps 1e-12). */
    x = tu_tensor(ctx, 4, 2, 2, 1, 2);
    y = tu_tensor(ctx, 4, 2, 2, 1, 2);
    gamma = tu_tensor(ctx, 1, 2, 0, 0, 0);
    beta = tu_tensor(ctx, 1, 2, 0, 0, 0);
    mean = tu_tensor(ctx, 2, 2, 1, 0, 0);
    rstd = tu_tensor(ctx, 2, 2, 1, 0, 0);
    const float xv2[8] = {1, 2, 3, 4, 4, 4, 4, 4};
    memcpy(frcnn_tensor_data(x), xv2, sizeof xv2);
    frcnn_tensor_data(gamma)[0] = 2.0f;
    frcnn_tensor_data(gamma)[1] = -1.0f;
    frcnn_tensor_data(beta)[0] = 0.5f;
    frcnn_tensor_data(beta)[1] = 1.0f;
    p = params(1, 1e-12f);
    assert_int_equal(frcnn_groupnorm_forward(ctx, &p, x, gamma, beta, y, mean, rstd), FRCNN_OK);
    const float want_y2[8] = {-2.1832815730f, -0.3944271910f, 0.5527864045f, -0.3416407865f, 0.5f, 0.5f, 1, 1};
    tu_assert_close("groupnorm two channels y", frcnn_tensor_data(y), want_y2, 8, 1e-7, 1e-7);
    const float want_mean2[2] = {2.5f, 4.0f}, want_rstd2[2] = {0.894427191f, 1e6f};
    tu_assert_identical("groupnorm two channels mean", frcnn_tensor_data(mean), want_mean2, 2);
    tu_assert_close("groupnorm two channels rstd", frcnn_tensor_data(rstd), want_rstd2, 2, 0.0, 1e-7);
    free_all((frcnn_tensor *[]){x, y, gamma, beta, mean, rstd}, 6);
    frcnn_ctx_free(ctx);
}

static void test_backward_hand(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    /* One group [1, 2, 3, 4], gamma 1, dy = [1, 0, 0, 0], r = 2 / sqrt(5), xhat = (x - 2.5) r, m = 4:
     *   mean(g) = 1/4,  mean(g xhat) = -1.5 r / 4,  so dx = r (dy - 1/4 + 0.375 r^2 (x - 2.5)) with r^2 = 0.8
     *   = r (dy - 0.25 + 0.3 (x - 2.5)) = r [0.3, -0.4, -0.1, 0.2];
     *   dgamma = sum dy xhat = -1.5 r,  dbeta = sum dy = 1. */
    frcnn_tensor *x = tu_tensor(ctx, 4, 1, 1, 2, 2), *y = tu_tensor(ctx, 4, 1, 1, 2, 2);
    frcnn_tensor *dy = tu_tensor(ctx, 4, 1, 1, 2, 2), *dx = tu_tensor(ctx, 4, 1, 1, 2, 2);
    frcnn_tensor *gamma = tu_tensor(ctx, 1, 1, 0, 0, 0), *beta = tu_tensor(ctx, 1, 1, 0, 0, 0);
    frcnn_tensor *dgamma = tu_tensor(ctx, 1, 1, 0, 0, 0), *dbeta = tu_tensor(ctx, 1, 1, 0, 0, 0);
    frcnn_tensor *mean = tu_tensor(ctx, 2, 1, 1, 0, 0), *rstd = tu_tensor(ctx, 2, 1, 1, 0, 0);
    const float xv[4] = {1, 2, 3, 4};
    memcpy(frcnn_tensor_data(x), xv, sizeof xv);
    frcnn_tensor_fill(gamma, 1.0f);
    frcnn_tensor_data(dy)[0] = 1.0f;
    frcnn_groupnorm_params p = params(1, 1e-12f);
    assert_int_equal(frcnn_groupnorm_forward(ctx, &p, x, gamma, beta, y, mean, rstd), FRCNN_OK);
    assert_int_equal(frcnn_groupnorm_backward(ctx, &p, x, gamma, mean, rstd, dy, dx, dgamma, dbeta), FRCNN_OK);
    const float want_dx[4] = {0.2683281573f, -0.3577708764f, -0.0894427191f, 0.1788854382f};
    tu_assert_close("groupnorm hand dx", frcnn_tensor_data(dx), want_dx, 4, 1e-7, 1e-6);
    const float want_dgamma = -1.3416407865f, want_dbeta = 1.0f;
    tu_assert_close("groupnorm hand dgamma", frcnn_tensor_data(dgamma), &want_dgamma, 1, 1e-7, 1e-7);
    tu_assert_identical("groupnorm hand dbeta", frcnn_tensor_data(dbeta), &want_dbeta, 1);
    free_all((frcnn_tensor *[]){x, y, dy, dx, gamma, beta, dgamma, dbeta, mean, rstd}, 10);
    frcnn_ctx_free(ctx);
}

/* With gamma 1 and beta 0, each group of the output has mean 0 and variance var / (var + eps): 1 up to the eps
 * effect, which is visible for a group whose variance is comparable to eps. */
static void test_output_statistics(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    enum { N = 2, C = 8, H = 5, W = 7, G = 4, CPG = C / G, M = CPG * H * W };
    frcnn_tensor *x = tu_tensor(ctx, 4, N, C, H, W), *y = tu_tensor(ctx, 4, N, C, H, W);
    frcnn_tensor *gamma = tu_tensor(ctx, 1, C, 0, 0, 0), *beta = tu_tensor(ctx, 1, C, 0, 0, 0);
    frcnn_tensor *mean = tu_tensor(ctx, 2, N, G, 0, 0), *rstd = tu_tensor(ctx, 2, N, G, 0, 0);
    float *xd = frcnn_tensor_data(x);
    tu_fill_uniform(xd, (size_t)N * C * H * W, 7, -1.0f, 1.0f);
    /* Per group a different offset and spread; group (1, 3) has a spread of 0.01 around 0.5 (variance ~3e-5, of
     * the order of eps). */
    for (int s = 0; s < N; s++)
        for (int g = 0; g < G; g++) {
            bool tiny = s == 1 && g == 3;
            float spread = tiny ? 0.01f : 0.5f + (float)(s * G + g);
            float offset = tiny ? 0.5f : 10.0f * (float)g - 7.0f * (float)s;
            for (int i = 0; i < M; i++)
                xd[(s * G + g) * M + i] = offset + spread * xd[(s * G + g) * M + i];
        }
    frcnn_tensor_fill(gamma, 1.0f);
    frcnn_groupnorm_params p = params(G, 1e-5f);
    assert_int_equal(frcnn_groupnorm_forward(ctx, &p, x, gamma, beta, y, mean, rstd), FRCNN_OK);
    const float *yd = frcnn_tensor_data(y);
    bool saw_eps_effect = false;
    for (int k = 0; k < N * G; k++) {
        double mx = 0.0, vx = 0.0, my = 0.0, vy = 0.0;
        for (int i = 0; i < M; i++) {
            mx += xd[k * M + i];
            my += yd[k * M + i];
        }
        mx /= M;
        my /= M;
        for (int i = 0; i < M; i++) {
            vx += (xd[k * M + i] - mx) * (xd[k * M + i] - mx);
            vy += (yd[k * M + i] - my) * (yd[k * M + i] - my);
        }
        vx /= M;
        vy /= M;
        double want_vy = vx / (vx + 1e-5);
        if (fabs(my) > 1e-6 || fabs(vy - want_vy) > 1e-5) {
            print_error("group %d: output mean %.9g (want 0), variance %.9g (want %.9g)\n", k, my, vy, want_vy);
            fail();
        }
        if (want_vy < 0.9)
            saw_eps_effect = true;
    }
    assert_true(saw_eps_effect);
    free_all((frcnn_tensor *[]){x, y, gamma, beta, mean, rstd}, 6);
    frcnn_ctx_free(ctx);
}

/* ------------------------------------------------------------------------------------ naive reference */

typedef struct gn_case {
    int64_t n, c, h, w;
    int groups;
    float lo, hi; /* x uniform in [lo, hi) */
} gn_case;

static const gn_case cases[] = {
    {2, 6, 5, 3, 3, -2.0f, 3.0f},     /* odd sizes */
    {2, 4, 3, 3, 4, -1.0f, 1.0f},     /* groups == c: instance norm */
    {3, 6, 2, 5, 1, -1.0f, 2.0f},     /* groups == 1: layer norm */
    {1, 64, 7, 9, 32, -3.0f, 5.0f},   /* the paper's 32 groups */
    {2, 8, 1, 1, 2, -1.0f, 1.0f},     /* 1x1 planes */
    {1, 6, 4, 4, 2, 0.0f, 1000.0f},   /* O(1e3) values */
};

#define IDX(s, ch, i, j, C, H, W) ((((size_t)(s) * (C) + (size_t)(ch)) * (H) + (size_t)(i)) * (W) + (size_t)(j))

/* Two-pass statistics over (sample, group), outputs and all three gradients, in double with index arithmetic
 * per element; rounded to float at the end. */
static void ref_groupnorm(const gn_case *gc, double eps, const float *x, const float *gamma, const float *beta,
                          const float *dy, float *y, float *mean, float *rstd, float *dx, float *dgamma, float *dbeta)
{
    const int64_t N = gc->n, C = gc->c, H = gc->h, W = gc->w, G = gc->groups, cpg = C / G;
    const double m = (double)(cpg * H * W);
    for (int64_t ch = 0; ch < C; ch++)
        dgamma[ch] = dbeta[ch] = 0.0f;
    double *dg = calloc((size_t)C, sizeof(double)), *db = calloc((size_t)C, sizeof(double));
    for (int64_t s = 0; s < N; s++) {
        for (int64_t g = 0; g < G; g++) {
            double mu = 0.0, var = 0.0;
            for (int64_t ch = g * cpg; ch < (g + 1) * cpg; ch++)
                for (int64_t i = 0; i < H; i++)
                    for (int64_t j = 0; j < W; j++)
                        mu += x[IDX(s, ch, i, j, C, H, W)];
            mu /= m;
            for (int64_t ch = g * cpg; ch < (g + 1) * cpg; ch++)
                for (int64_t i = 0; i < H; i++)
                    for (int64_t j = 0; j < W; j++) {
                        double e = x[IDX(s, ch, i, j, C, H, W)] - mu;
                        var += e * e;
                    }
            var /= m;
            double r = 1.0 / sqrt(var + eps);
            mean[s * G + g] = (float)mu;
            rstd[s * G + g] = (float)r;
            double sum_g = 0.0, sum_gxhat = 0.0;
            for (int64_t ch = g * cpg; ch < (g + 1) * cpg; ch++)
                for (int64_t i = 0; i < H; i++)
                    for (int64_t j = 0; j < W; j++) {
                        size_t k = IDX(s, ch, i, j, C, H, W);
                        double xhat = (x[k] - mu) * r;
                        y[k] = (float)(gamma[ch] * xhat + beta[ch]);
                        sum_g += (double)dy[k] * gamma[ch];
                        sum_gxhat += (double)dy[k] * gamma[ch] * xhat;
                        dg[ch] += (double)dy[k] * xhat;
                        db[ch] += dy[k];
                    }
            for (int64_t ch = g * cpg; ch < (g + 1) * cpg; ch++)
                for (int64_t i = 0; i < H; i++)
                    for (int64_t j = 0; j < W; j++) {
                        size_t k = IDX(s, ch, i, j, C, H, W);
                        double xhat = (x[k] - mu) * r;
                        double gi = (double)dy[k] * gamma[ch];
                        dx[k] = (float)(r / m * (m * gi - sum_g - xhat * sum_gxhat));
                    }
        }
    }
    for (int64_t ch = 0; ch < C; ch++) {
        dgamma[ch] = (float)dg[ch];
        dbeta[ch] = (float)db[ch];
    }
    free(dg);
    free(db);
}

/* Everything one case needs, owned together. */
typedef struct gn_bufs {
    frcnn_tensor *x, *y, *gamma, *beta, *mean, *rstd, *dy, *dx, *dgamma, *dbeta;
} gn_bufs;

static gn_bufs make_bufs(frcnn_ctx *ctx, const gn_case *gc, uint64_t seed)
{
    gn_bufs b;
    b.x = tu_tensor(ctx, 4, gc->n, gc->c, gc->h, gc->w);
    b.y = tu_tensor(ctx, 4, gc->n, gc->c, gc->h, gc->w);
    b.dy = tu_tensor(ctx, 4, gc->n, gc->c, gc->h, gc->w);
    b.dx = tu_tensor(ctx, 4, gc->n, gc->c, gc->h, gc->w);
    b.gamma = tu_tensor(ctx, 1, gc->c, 0, 0, 0);
    b.beta = tu_tensor(ctx, 1, gc->c, 0, 0, 0);
    b.dgamma = tu_tensor(ctx, 1, gc->c, 0, 0, 0);
    b.dbeta = tu_tensor(ctx, 1, gc->c, 0, 0, 0);
    b.mean = tu_tensor(ctx, 2, gc->n, gc->groups, 0, 0);
    b.rstd = tu_tensor(ctx, 2, gc->n, gc->groups, 0, 0);
    size_t nx = frcnn_tensor_numel(b.x);
    tu_fill_uniform(frcnn_tensor_data(b.x), nx, seed, gc->lo, gc->hi);
    tu_fill_uniform(frcnn_tensor_data(b.dy), nx, seed + 1, -1.0f, 1.0f);
    tu_fill_uniform(frcnn_tensor_data(b.gamma), (size_t)gc->c, seed + 2, 0.5f, 1.5f);
    tu_fill_uniform(frcnn_tensor_data(b.beta), (size_t)gc->c, seed + 3, -1.0f, 1.0f);
    return b;
}

static void free_bufs(gn_bufs *b)
{
    free_all((frcnn_tensor *[]){b->x, b->y, b->gamma, b->beta, b->mean, b->rstd, b->dy, b->dx, b->dgamma, b->dbeta},
             10);
}

/* Values of magnitude <= 5 (or <= 1000 with a spread of the same order): float rounding of the outputs is a few
 * 1e-7, so atol 1e-5 with rtol 1e-5 is tight; the sums behind dgamma and dbeta are in double in both. */
static void test_reference(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const gn_case *gc = &cases[ci];
        gn_bufs b = make_bufs(ctx, gc, 10 * ci + 1);
        size_t nx = frcnn_tensor_numel(b.x), c = (size_t)gc->c, ns = (size_t)(gc->n * gc->groups);
        float *ry = malloc(nx * sizeof(float)), *rdx = malloc(nx * sizeof(float));
        float *rmean = malloc(ns * sizeof(float)), *rrstd = malloc(ns * sizeof(float));
        float *rdg = malloc(c * sizeof(float)), *rdb = malloc(c * sizeof(float));
        ref_groupnorm(gc, 1e-5, frcnn_tensor_data(b.x), frcnn_tensor_data(b.gamma), frcnn_tensor_data(b.beta),
                      frcnn_tensor_data(b.dy), ry, rmean, rrstd, rdx, rdg, rdb);

        frcnn_groupnorm_params p = params(gc->groups, 1e-5f);
        assert_int_equal(frcnn_groupnorm_forward(ctx, &p, b.x, b.gamma, b.beta, b.y, b.mean, b.rstd), FRCNN_OK);
        tu_assert_close("groupnorm y vs reference", frcnn_tensor_data(b.y), ry, nx, 1e-5, 1e-5);
        tu_assert_close("groupnorm mean vs reference", frcnn_tensor_data(b.mean), rmean, ns, 1e-6, 1e-6);
        tu_assert_close("groupnorm rstd vs reference", frcnn_tensor_data(b.rstd), rrstd, ns, 0.0, 1e-6);
        assert_int_equal(frcnn_groupnorm_backward(ctx, &p, b.x, b.gamma, b.mean, b.rstd, b.dy, b.dx, b.dgamma,
                                                  b.dbeta),
                         FRCNN_OK);
        tu_assert_close("groupnorm dx vs reference", frcnn_tensor_data(b.dx), rdx, nx, 1e-5, 1e-5);
        tu_assert_close("groupnorm dgamma vs reference", frcnn_tensor_data(b.dgamma), rdg, c, 1e-5, 1e-5);
        tu_assert_close("groupnorm dbeta vs reference", frcnn_tensor_data(b.dbeta), rdb, c, 1e-6, 1e-6);

        free(ry);
        free(rdx);
        free(rmean);
        free(rrstd);
        free(rdg);
        free(rdb);
        free_bufs(&b);
    }
    frcnn_ctx_free(ctx);
}

/* --------------------------------------------------------------------------------------- gradient check */

typedef struct gn_loss {
    frcnn_ctx *ctx;
    const frcnn_groupnorm_params *p;
    frcnn_tensor *x, *gamma, *beta, *y, *mean, *rstd; /* the loss's own mean and rstd, not backward's */
    const float *r;
} gn_loss;

static double gn_loss_fn(void *state)
{
    gn_loss *s = state;
    assert_int_equal(frcnn_groupnorm_forward(s->ctx, s->p, s->x, s->gamma, s->beta, s->y, s->mean, s->rstd),
                     FRCNN_OK);
    return tu_dot(frcnn_tensor_data(s->y), s->r, frcnn_tensor_numel(s->y));
}

/* loss = sum(y r) with a random r. Linear in gamma and beta; in x smooth with third derivatives of order rstd^3,
 * and rstd ~ 1 here, so the central difference with eps 1e-2 is accurate to ~1e-4. */
static void test_gradcheck(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    for (size_t ci = 0; ci < 3; ci++) {
        const gn_case *gc = &cases[ci];
        gn_bufs b = make_bufs(ctx, gc, 100 + 10 * ci); /* b.dy is the loss's r */
        frcnn_tensor *lm = tu_tensor(ctx, 2, gc->n, gc->groups, 0, 0), *lr = tu_tensor(ctx, 2, gc->n, gc->groups, 0, 0);
        frcnn_groupnorm_params p = params(gc->groups, 1e-5f);
        assert_int_equal(frcnn_groupnorm_forward(ctx, &p, b.x, b.gamma, b.beta, b.y, b.mean, b.rstd), FRCNN_OK);
        assert_int_equal(frcnn_groupnorm_backward(ctx, &p, b.x, b.gamma, b.mean, b.rstd, b.dy, b.dx, b.dgamma,
                                                  b.dbeta),
                         FRCNN_OK);
        gn_loss s = {ctx, &p, b.x, b.gamma, b.beta, b.y, lm, lr, frcnn_tensor_data(b.dy)};
        tu_gradcheck("groupnorm dx", gn_loss_fn, &s, frcnn_tensor_data(b.x), frcnn_tensor_data(b.dx),
                     frcnn_tensor_numel(b.x), 1e-2f, 1e-3, 1e-2);
        tu_gradcheck("groupnorm dgamma", gn_loss_fn, &s, frcnn_tensor_data(b.gamma), frcnn_tensor_data(b.dgamma),
                     (size_t)gc->c, 1e-2f, 1e-3, 1e-2);
        tu_gradcheck("groupnorm dbeta", gn_loss_fn, &s, frcnn_tensor_data(b.beta), frcnn_tensor_data(b.dbeta),
                     (size_t)gc->c, 1e-2f, 1e-3, 1e-2);
        frcnn_tensor_free(lm);
        frcnn_tensor_free(lr);
        free_bufs(&b);
    }
    frcnn_ctx_free(ctx);
}

/* ------------------------------------------------------------------------------ accumulation and NULLs */

static void test_backward_accumulates(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    const gn_case *gc = &cases[0];
    gn_bufs b = make_bufs(ctx, gc, 200);
    size_t nx = frcnn_tensor_numel(b.x), c = (size_t)gc->c;
    frcnn_tensor *dx2 = tu_tensor(ctx, 4, gc->n, gc->c, gc->h, gc->w);
    frcnn_tensor *dg2 = tu_tensor(ctx, 1, gc->c, 0, 0, 0), *db2 = tu_tensor(ctx, 1, gc->c, 0, 0, 0);
    frcnn_groupnorm_params p = params(gc->groups, 1e-5f);
    assert_int_equal(frcnn_groupnorm_forward(ctx, &p, b.x, b.gamma, b.beta, b.y, b.mean, b.rstd), FRCNN_OK);

    /* Once into zeros, then twice into zeros: each term is computed the same way and added, so twice is exactly
     * double. */
    assert_int_equal(frcnn_groupnorm_backward(ctx, &p, b.x, b.gamma, b.mean, b.rstd, b.dy, b.dx, b.dgamma, b.dbeta),
                     FRCNN_OK);
    for (int k = 0; k < 2; k++)
        assert_int_equal(frcnn_groupnorm_backward(ctx, &p, b.x, b.gamma, b.mean, b.rstd, b.dy, dx2, dg2, db2),
                         FRCNN_OK);
    float *once[3] = {frcnn_tensor_data(b.dx), frcnn_tensor_data(b.dgamma), frcnn_tensor_data(b.dbeta)};
    size_t len[3] = {nx, c, c};
    for (int t = 0; t < 3; t++)
        for (size_t i = 0; i < len[t]; i++)
            once[t][i] *= 2.0f;
    tu_assert_identical("groupnorm dx twice", frcnn_tensor_data(dx2), once[0], nx);
    tu_assert_identical("groupnorm dgamma twice", frcnn_tensor_data(dg2), once[1], c);
    tu_assert_identical("groupnorm dbeta twice", frcnn_tensor_data(db2), once[2], c);
    for (int t = 0; t < 3; t++)
        for (size_t i = 0; i < len[t]; i++)
            once[t][i] *= 0.5f;

    /* Onto non-zero contents: adds to them. */
    frcnn_tensor_fill(dx2, 0.25f);
    frcnn_tensor_fill(dg2, -3.0f);
    frcnn_tensor_fill(db2, 7.0f);
    assert_int_equal(frcnn_groupnorm_backward(ctx, &p, b.x, b.gamma, b.mean, b.rstd, b.dy, dx2, dg2, db2), FRCNN_OK);
    for (size_t i = 0; i < nx; i++)
        frcnn_tensor_data(dx2)[i] -= 0.25f;
    for (size_t i = 0; i < c; i++) {
        frcnn_tensor_data(dg2)[i] += 3.0f;
        frcnn_tensor_data(db2)[i] -= 7.0f;
    }
    tu_assert_close("groupnorm dx onto 0.25", frcnn_tensor_data(dx2), once[0], nx, 1e-6, 0.0);
    tu_assert_close("groupnorm dgamma onto -3", frcnn_tensor_data(dg2), once[1], c, 1e-6, 0.0);
    tu_assert_close("groupnorm dbeta onto 7", frcnn_tensor_data(db2), once[2], c, 1e-6, 0.0);

    /* Each gradient alone is what it is with the others, and leaves the others untouched. */
    const float zeros[256] = {0};
    assert_true(nx <= 256);
    frcnn_tensor *g2[3] = {dx2, dg2, db2};
    for (int t = 0; t < 3; t++) {
        for (int k = 0; k < 3; k++)
            frcnn_tensor_zero(g2[k]);
        assert_int_equal(frcnn_groupnorm_backward(ctx, &p, b.x, b.gamma, b.mean, b.rstd, b.dy, t == 0 ? dx2 : NULL,
                                                  t == 1 ? dg2 : NULL, t == 2 ? db2 : NULL),
                         FRCNN_OK);
        for (int k = 0; k < 3; k++) {
            const float *want = k == t ? once[k] : zeros;
            tu_assert_identical(k == t ? "groupnorm gradient alone" : "groupnorm gradient skipped",
                                frcnn_tensor_data(g2[k]), want, len[k]);
        }
    }
    /* All NULL: nothing to do, and fine. */
    assert_int_equal(frcnn_groupnorm_backward(ctx, &p, b.x, b.gamma, b.mean, b.rstd, b.dy, NULL, NULL, NULL),
                     FRCNN_OK);

    free_all((frcnn_tensor *[]){dx2, dg2, db2}, 3);
    free_bufs(&b);
    frcnn_ctx_free(ctx);
}

/* ------------------------------------------------------------------------------------------ bad arguments */

static void test_bad_args(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    const gn_case *gc = &cases[0]; /* (2, 6, 5, 3), 3 groups */
    gn_bufs b = make_bufs(ctx, gc, 300);
    frcnn_tensor *x3 = tu_tensor(ctx, 3, 2, 6, 15, 0);
    frcnn_tensor *x_other = tu_tensor(ctx, 4, 2, 6, 3, 5);
    frcnn_tensor *vec5 = tu_tensor(ctx, 1, 5, 0, 0, 0), *vec2d = tu_tensor(ctx, 2, 1, 6, 0, 0);
    frcnn_tensor *st_g = tu_tensor(ctx, 2, 2, 2, 0, 0), *st_n = tu_tensor(ctx, 2, 1, 3, 0, 0);
    frcnn_tensor *st_1d = tu_tensor(ctx, 1, 6, 0, 0, 0);
    frcnn_groupnorm_params p = params(3, 1e-5f);
    frcnn_tensor *x = b.x, *y = b.y, *g = b.gamma, *be = b.beta, *m = b.mean, *r = b.rstd, *dy = b.dy, *dx = b.dx;
    frcnn_tensor *dg = b.dgamma, *db = b.dbeta;

    assert_int_equal(frcnn_groupnorm_forward(NULL, &p, x, g, be, y, m, r), FRCNN_ERR_INVALID_ARG);
    assert_int_equal(frcnn_groupnorm_backward(NULL, &p, x, g, m, r, dy, dx, dg, db), FRCNN_ERR_INVALID_ARG);

    /* Parameters. */
    tu_expect_error_msg(ctx, frcnn_groupnorm_forward(ctx, NULL, x, g, be, y, m, r), FRCNN_ERR_INVALID_ARG, "params");
    frcnn_groupnorm_params bad = params(0, 1e-5f);
    tu_expect_error_msg(ctx, frcnn_groupnorm_forward(ctx, &bad, x, g, be, y, m, r), FRCNN_ERR_INVALID_ARG,
                        "groups 0");
    bad = params(-3, 1e-5f);
    tu_expect_error_msg(ctx, frcnn_groupnorm_backward(ctx, &bad, x, g, m, r, dy, dx, dg, db), FRCNN_ERR_INVALID_ARG,
                        "groups -3");
    bad = params(4, 1e-5f); /* 6 channels do not split into 4 groups */
    tu_expect_error_msg(ctx, frcnn_groupnorm_forward(ctx, &bad, x, g, be, y, m, r), FRCNN_ERR_INVALID_ARG,
                        "6 channels of x (2, 6, 5, 3) do not split into 4 groups");
    tu_expect_error_msg(ctx, frcnn_groupnorm_backward(ctx, &bad, x, g, m, r, dy, dx, dg, db), FRCNN_ERR_INVALID_ARG,
                        "into 4 groups");
    const float bad_eps[4] = {0.0f, -1e-5f, NAN, INFINITY};
    for (int i = 0; i < 4; i++) {
        bad = params(3, bad_eps[i]);
        tu_expect_error_msg(ctx, frcnn_groupnorm_forward(ctx, &bad, x, g, be, y, m, r), FRCNN_ERR_INVALID_ARG, "eps");
        tu_expect_error_msg(ctx, frcnn_groupnorm_backward(ctx, &bad, x, g, m, r, dy, dx, dg, db),
                            FRCNN_ERR_INVALID_ARG, "eps");
    }

    /* Forward tensors: NULL, dimensions, shapes. */
    tu_expect_error_msg(ctx, frcnn_groupnorm_forward(ctx, &p, NULL, g, be, y, m, r), FRCNN_ERR_INVALID_ARG,
                        "groupnorm: x is NULL");
    tu_expect_error_msg(ctx, frcnn_groupnorm_forward(ctx, &p, x, NULL, be, y, m, r), FRCNN_ERR_INVALID_ARG, "gamma");
    tu_expect_error_msg(ctx, frcnn_groupnorm_forward(ctx, &p, x, g, NULL, y, m, r), FRCNN_ERR_INVALID_ARG, "beta");
    tu_expect_error_msg(ctx, frcnn_groupnorm_forward(ctx, &p, x, g, be, NULL, m, r), FRCNN_ERR_INVALID_ARG, "y");
    tu_expect_error_msg(ctx, frcnn_groupnorm_forward(ctx, &p, x, g, be, y, NULL, r), FRCNN_ERR_INVALID_ARG, "mean");
    tu_expect_error_msg(ctx, frcnn_groupnorm_forward(ctx, &p, x, g, be, y, m, NULL), FRCNN_ERR_INVALID_ARG, "rstd");
    tu_expect_error_msg(ctx, frcnn_groupnorm_forward(ctx, &p, x3, g, be, y, m, r), FRCNN_ERR_SHAPE,
                        "expected 4 dimensions");
    tu_expect_error_msg(ctx, frcnn_groupnorm_forward(ctx, &p, x, g, be, x3, m, r), FRCNN_ERR_SHAPE, "y");
    tu_expect_error_msg(ctx, frcnn_groupnorm_forward(ctx, &p, x, g, be, x_other, m, r), FRCNN_ERR_SHAPE,
                        "y has shape (2, 6, 3, 5) but x has shape (2, 6, 5, 3)");
    tu_expect_error_msg(ctx, frcnn_groupnorm_forward(ctx, &p, x, vec5, be, y, m, r), FRCNN_ERR_SHAPE,
                        "gamma (5) does not match x (2, 6, 5, 3): expected (6)");
    tu_expect_error_msg(ctx, frcnn_groupnorm_forward(ctx, &p, x, g, vec5, y, m, r), FRCNN_ERR_SHAPE, "beta (5)");
    tu_expect_error_msg(ctx, frcnn_groupnorm_forward(ctx, &p, x, vec2d, be, y, m, r), FRCNN_ERR_SHAPE, "gamma");
    tu_expect_error_msg(ctx, frcnn_groupnorm_forward(ctx, &p, x, g, vec2d, y, m, r), FRCNN_ERR_SHAPE, "beta");
    tu_expect_error_msg(ctx, frcnn_groupnorm_forward(ctx, &p, x, g, be, y, st_g, r), FRCNN_ERR_SHAPE,
                        "mean (2, 2) does not match x (2, 6, 5, 3) and 3 groups: expected (2, 3)");
    tu_expect_error_msg(ctx, frcnn_groupnorm_forward(ctx, &p, x, g, be, y, m, st_n), FRCNN_ERR_SHAPE, "rstd (1, 3)");
    tu_expect_error_msg(ctx, frcnn_groupnorm_forward(ctx, &p, x, g, be, y, st_1d, r), FRCNN_ERR_SHAPE,
                        "expected 2 dimensions");

    /* y must not share memory with x: the same tensor, or a view overlapping it. */
    tu_expect_error_msg(ctx, frcnn_groupnorm_forward(ctx, &p, x, g, be, x, m, r), FRCNN_ERR_INVALID_ARG,
                        "y overlaps x");
    size_t nx = frcnn_tensor_numel(x);
    float *buf = calloc(2 * nx, sizeof(float));
    frcnn_tensor *wx = NULL, *wy = NULL, *wm = NULL;
    const int64_t dims[4] = {2, 6, 5, 3}, sdims[2] = {2, 3};
    assert_int_equal(frcnn_tensor_wrap(ctx, buf, 4, dims, &wx), FRCNN_OK);
    assert_int_equal(frcnn_tensor_wrap(ctx, buf + nx - 1, 4, dims, &wy), FRCNN_OK);
    assert_int_equal(frcnn_tensor_wrap(ctx, buf + 3, 2, sdims, &wm), FRCNN_OK);
    tu_expect_error_msg(ctx, frcnn_groupnorm_forward(ctx, &p, wx, g, be, wy, m, r), FRCNN_ERR_INVALID_ARG,
                        "y overlaps x");
    tu_expect_error_msg(ctx, frcnn_groupnorm_forward(ctx, &p, wx, g, be, y, wm, r), FRCNN_ERR_INVALID_ARG,
                        "mean and rstd");
    tu_expect_error_msg(ctx, frcnn_groupnorm_forward(ctx, &p, x, g, be, y, m, m), FRCNN_ERR_INVALID_ARG,
                        "mean and rstd");
    /* Just past the end of x is fine. */
    frcnn_tensor *wy_next = NULL;
    assert_int_equal(frcnn_tensor_wrap(ctx, buf + nx, 4, dims, &wy_next), FRCNN_OK);
    assert_int_equal(frcnn_groupnorm_forward(ctx, &p, wx, g, be, wy_next, m, r), FRCNN_OK);
    frcnn_tensor_zero(m);
    frcnn_tensor_zero(r);

    /* Backward tensors. */
    tu_expect_error_msg(ctx, frcnn_groupnorm_backward(ctx, &p, NULL, g, m, r, dy, dx, dg, db), FRCNN_ERR_INVALID_ARG,
                        "groupnorm backward: x is NULL");
    tu_expect_error_msg(ctx, frcnn_groupnorm_backward(ctx, &p, x, NULL, m, r, dy, dx, dg, db), FRCNN_ERR_INVALID_ARG,
                        "gamma is NULL");
    tu_expect_error_msg(ctx, frcnn_groupnorm_backward(ctx, &p, x, g, NULL, r, dy, dx, dg, db), FRCNN_ERR_INVALID_ARG,
                        "mean is NULL");
    tu_expect_error_msg(ctx, frcnn_groupnorm_backward(ctx, &p, x, g, m, NULL, dy, dx, dg, db), FRCNN_ERR_INVALID_ARG,
                        "rstd is NULL");
    tu_expect_error_msg(ctx, frcnn_groupnorm_backward(ctx, &p, x, g, m, r, NULL, dx, dg, db), FRCNN_ERR_INVALID_ARG,
                        "dy is NULL");
    tu_expect_error_msg(ctx, frcnn_groupnorm_backward(ctx, &p, x, g, m, r, NULL, NULL, NULL, NULL),
                        FRCNN_ERR_INVALID_ARG, "dy is NULL");
    tu_expect_error_msg(ctx, frcnn_groupnorm_backward(ctx, &p, x3, g, m, r, dy, dx, dg, db), FRCNN_ERR_SHAPE,
                        "x has shape (2, 6, 15), expected 4 dimensions");
    tu_expect_error_msg(ctx, frcnn_groupnorm_backward(ctx, &p, x, g, m, r, x3, dx, dg, db), FRCNN_ERR_SHAPE, "dy");
    tu_expect_error_msg(ctx, frcnn_groupnorm_backward(ctx, &p, x, g, m, r, x_other, dx, dg, db), FRCNN_ERR_SHAPE,
                        "dy has shape (2, 6, 3, 5)");
    tu_expect_error_msg(ctx, frcnn_groupnorm_backward(ctx, &p, x, g, m, r, dy, x3, dg, db), FRCNN_ERR_SHAPE, "dx");
    tu_expect_error_msg(ctx, frcnn_groupnorm_backward(ctx, &p, x, g, m, r, dy, x_other, dg, db), FRCNN_ERR_SHAPE,
                        "dx has shape (2, 6, 3, 5)");
    tu_expect_error_msg(ctx, frcnn_groupnorm_backward(ctx, &p, x, vec5, m, r, dy, dx, dg, db), FRCNN_ERR_SHAPE,
                        "gamma (5)");
    tu_expect_error_msg(ctx, frcnn_groupnorm_backward(ctx, &p, x, g, st_g, r, dy, dx, dg, db), FRCNN_ERR_SHAPE,
                        "mean (2, 2)");
    tu_expect_error_msg(ctx, frcnn_groupnorm_backward(ctx, &p, x, g, m, st_n, dy, dx, dg, db), FRCNN_ERR_SHAPE,
                        "rstd (1, 3)");
    tu_expect_error_msg(ctx, frcnn_groupnorm_backward(ctx, &p, x, g, m, r, dy, dx, vec5, db), FRCNN_ERR_SHAPE,
                        "dgamma (5) does not match x (2, 6, 5, 3): expected (6)");
    tu_expect_error_msg(ctx, frcnn_groupnorm_backward(ctx, &p, x, g, m, r, dy, dx, dg, vec2d), FRCNN_ERR_SHAPE,
                        "dbeta (1, 6)");
    tu_expect_error_msg(ctx, frcnn_groupnorm_backward(ctx, &p, x, g, m, r, dy, dy, dg, db), FRCNN_ERR_INVALID_ARG,
                        "dx must not overlap");
    tu_expect_error_msg(ctx, frcnn_groupnorm_backward(ctx, &p, x, g, m, r, dy, x, dg, db), FRCNN_ERR_INVALID_ARG,
                        "dx must not overlap");
    tu_expect_error_msg(ctx, frcnn_groupnorm_backward(ctx, &p, wx, g, m, r, dy, wy, dg, db), FRCNN_ERR_INVALID_ARG,
                        "dx must not overlap");

    /* Nothing was written by the failed calls. */
    const float zeros[256] = {0};
    assert_true(nx <= 256);
    tu_assert_identical("y untouched", frcnn_tensor_data(y), zeros, nx);
    tu_assert_identical("mean untouched", frcnn_tensor_data(m), zeros, 6);
    tu_assert_identical("rstd untouched", frcnn_tensor_data(r), zeros, 6);
    tu_assert_identical("dx untouched", frcnn_tensor_data(dx), zeros, nx);
    tu_assert_identical("dgamma untouched", frcnn_tensor_data(dg), zeros, 6);
    tu_assert_identical("dbeta untouched", frcnn_tensor_data(db), zeros, 6);

    free_all((frcnn_tensor *[]){x3, x_other, vec5, vec2d, st_g, st_n, st_1d, wx, wy, wm, wy_next}, 11);
    free(buf);
    free_bufs(&b);
    frcnn_ctx_free(ctx);
}

/* ------------------------------------------------------------------------------------------ determinism */

/* A backbone-sized map, large enough that forward, dx and dgamma/dbeta all split across 2 and 3 threads. */
static const gn_case big = {2, 64, 38, 50, 32, -2.0f, 4.0f};

typedef struct gn_out {
    float *y, *mean, *rstd, *dx, *dgamma, *dbeta;
} gn_out;

static gn_out run_big(int threads)
{
    frcnn_ctx *ctx = tu_ctx();
    assert_int_equal(frcnn_ctx_set_threads(ctx, threads), FRCNN_OK);
    gn_bufs b = make_bufs(ctx, &big, 500);
    frcnn_groupnorm_params p = params(big.groups, 1e-5f);
    assert_int_equal(frcnn_groupnorm_forward(ctx, &p, b.x, b.gamma, b.beta, b.y, b.mean, b.rstd), FRCNN_OK);
    assert_int_equal(frcnn_groupnorm_backward(ctx, &p, b.x, b.gamma, b.mean, b.rstd, b.dy, b.dx, b.dgamma, b.dbeta),
                     FRCNN_OK);
    gn_out o;
    frcnn_tensor *src[6] = {b.y, b.mean, b.rstd, b.dx, b.dgamma, b.dbeta};
    float **dst[6] = {&o.y, &o.mean, &o.rstd, &o.dx, &o.dgamma, &o.dbeta};
    for (int i = 0; i < 6; i++) {
        size_t bytes = frcnn_tensor_numel(src[i]) * sizeof(float);
        *dst[i] = malloc(bytes);
        memcpy(*dst[i], frcnn_tensor_data(src[i]), bytes);
    }
    free_bufs(&b);
    frcnn_ctx_free(ctx);
    return o;
}

static void free_out(gn_out *o)
{
    free(o->y);
    free(o->mean);
    free(o->rstd);
    free(o->dx);
    free(o->dgamma);
    free(o->dbeta);
}

static void test_deterministic(void **state)
{
    (void)state;
    const size_t nx = (size_t)(big.n * big.c * big.h * big.w), ns = (size_t)(big.n * big.groups), c = (size_t)big.c;
    gn_out ref = run_big(1);
    const int threads[3] = {1, 2, 3}; /* the first: a second run with 1 thread */
    for (int k = 0; k < 3; k++) {
        gn_out o = run_big(threads[k]);
        const float *got[6] = {o.y, o.mean, o.rstd, o.dx, o.dgamma, o.dbeta};
        const float *want[6] = {ref.y, ref.mean, ref.rstd, ref.dx, ref.dgamma, ref.dbeta};
        const size_t len[6] = {nx, ns, ns, nx, c, c};
        const char *names[6] = {"y", "mean", "rstd", "dx", "dgamma", "dbeta"};
        for (int i = 0; i < 6; i++) {
            char what[96];
            snprintf(what, sizeof what, "groupnorm %s, %d thread(s) vs 1 thread", names[i], threads[k]);
            tu_assert_identical(what, got[i], want[i], len[i]);
        }
        free_out(&o);
    }
    free_out(&ref);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params_default),
        cmocka_unit_test(test_forward_hand),
        cmocka_unit_test(test_backward_hand),
        cmocka_unit_test(test_output_statistics),
        cmocka_unit_test(test_reference),
        cmocka_unit_test(test_gradcheck),
        cmocka_unit_test(test_backward_accumulates),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_deterministic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
