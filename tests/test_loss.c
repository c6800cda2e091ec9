/* Tests of the losses: softmax cross-entropy (lib/kernels/softmax_xent.c) and smooth-L1
 * (lib/kernels/smooth_l1.c): hand-computed values, finite-difference gradients, accumulation, extreme inputs,
 * bad arguments and determinism. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static frcnn_tensor *tensor_from(frcnn_ctx *ctx, int ndim, int64_t d0, int64_t d1, const float *v)
{
    frcnn_tensor *t = tu_tensor(ctx, ndim, d0, d1, 0, 0);
    memcpy(frcnn_tensor_data(t), v, frcnn_tensor_numel(t) * sizeof(float));
    return t;
}

static void assert_near(const char *what, double got, double want, double tol)
{
    if (!(fabs(got - want) <= tol)) {
        print_error("%s: %.9g, expected %.9g (tolerance %.3g)\n", what, got, want, tol);
        fail();
    }
}

/* ------------------------------------------------------------------------------------------------------------
 * Softmax cross-entropy. */

/* logits [[1, 2, 3], [0.5, -1, 2]], labels [2, 0]:
 *   row 0: -log p2 = log(e^1 + e^2 + e^3) - 3;  row 1: -log p0 = log(e^0.5 + e^-1 + e^2) - 0.5;  loss = mean. */
static void test_xent_hand(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    const float l[6] = {1, 2, 3, 0.5f, -1, 2};
    frcnn_tensor *logits = tensor_from(ctx, 2, 2, 3, l);
    frcnn_tensor *prob = tu_tensor(ctx, 2, 2, 3, 0, 0);
    const int32_t labels[2] = {2, 0};
    float loss = -1.0f;
    assert_int_equal(frcnn_softmax_xent_forward(ctx, logits, labels, -1, prob, &loss), FRCNN_OK);
    const double s0 = exp(1.0) + exp(2.0) + exp(3.0), s1 = exp(0.5) + exp(-1.0) + exp(2.0);
    const double want = ((log(s0) - 3.0) + (log(s1) - 0.5)) / 2.0;
    assert_near("loss", loss, want, 1e-6);
    const float want_p[6] = {(float)(exp(1.0) / s0), (float)(exp(2.0) / s0), (float)(exp(3.0) / s0),
                             (float)(exp(0.5) / s1), (float)(exp(-1.0) / s1), (float)(exp(2.0) / s1)};
    tu_assert_close("prob", frcnn_tensor_data(prob), want_p, 6, 1e-7, 1e-6);

    /* dlogits += dloss (p - onehot) / 2, on top of what is there */
    frcnn_tensor *d = tu_tensor(ctx, 2, 2, 3, 0, 0);
    frcnn_tensor_fill(d, 1.0f);
    assert_int_equal(frcnn_softmax_xent_backward(ctx, prob, labels, -1, 3.0f, d), FRCNN_OK);
    float want_d[6];
    for (int i = 0; i < 6; i++)
        want_d[i] = (float)(1.0 + 3.0 * ((double)want_p[i] - (i == 2 || i == 3 ? 1.0 : 0.0)) / 2.0);
    tu_assert_close("dlogits", frcnn_tensor_data(d), want_d, 6, 1e-6, 1e-6);
    frcnn_tensor_free(d);
    frcnn_tensor_free(prob);
    frcnn_tensor_free(logits);
    frcnn_ctx_free(ctx);
}

/* Rows labelled ignore_label count neither in the sum nor in the mean and get no gradient; prob is still the
 * softmax of every row. */
static void test_xent_ignore(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    const float l[9] = {1, 2, 3, 0.5f, -1, 2, 4, 4, 4};
    frcnn_tensor *logits = tensor_from(ctx, 2, 3, 3, l);
    frcnn_tensor *prob = tu_tensor(ctx, 2, 3, 3, 0, 0);
    const int32_t labels[3] = {-1, 1, -1};
    float loss;
    assert_int_equal(frcnn_softmax_xent_forward(ctx, logits, labels, -1, prob, &loss), FRCNN_OK);
    const double s1 = exp(0.5) + exp(-1.0) + exp(2.0);
    assert_near("loss", loss, log(s1) + 1.0, 1e-6); /* only row 1: -log p1 = log s1 - (-1) */
    const float third[3] = {1.0f / 3, 1.0f / 3, 1.0f / 3};
    tu_assert_close("prob of an ignored row", frcnn_tensor_data(prob) + 6, third, 3, 1e-7, 0.0);

    frcnn_tensor *d = tu_tensor(ctx, 2, 3, 3, 0, 0);
    assert_int_equal(frcnn_softmax_xent_backward(ctx, prob, labels, -1, 1.0f, d), FRCNN_OK);
    const float *dd = frcnn_tensor_data(d), *p = frcnn_tensor_data(prob);
    for (int j = 0; j < 3; j++) {
        assert_true(dd[j] == 0.0f);
        assert_true(dd[6 + j] == 0.0f);
        assert_true(dd[3 + j] == p[3 + j] - (j == 1 ? 1.0f : 0.0f)); /* count is 1 */
    }

    /* Any value can be the ignore label, even one inside [0, k). */
    const int32_t labels2[3] = {0, 1, 0};
    assert_int_equal(frcnn_softmax_xent_forward(ctx, logits, labels2, 0, prob, &loss), FRCNN_OK);
    assert_near("loss with ignore_label 0", loss, log(s1) + 1.0, 1e-6);
    frcnn_tensor_free(d);
    frcnn_tensor_free(prob);
    frcnn_tensor_free(logits);
    frcnn_ctx_free(ctx);
}

static void test_xent_all_ignored(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    const float l[4] = {1, 2, 3, 4};
    frcnn_tensor *logits = tensor_from(ctx, 2, 2, 2, l);
    frcnn_tensor *prob = tu_tensor(ctx, 2, 2, 2, 0, 0);
    const int32_t labels[2] = {-1, -1};
    float loss = 5.0f;
    assert_int_equal(frcnn_softmax_xent_forward(ctx, logits, labels, -1, prob, &loss), FRCNN_OK);
    assert_true(loss == 0.0f);
    frcnn_tensor *d = tu_tensor(ctx, 2, 2, 2, 0, 0);
    frcnn_tensor_fill(d, 0.5f);
    assert_int_equal(frcnn_softmax_xent_backward(ctx, prob, labels, -1, 1.0f, d), FRCNN_OK);
    for (int i = 0; i < 4; i++)
        assert_true(frcnn_tensor_data(d)[i] == 0.5f);
    frcnn_tensor_free(d);
    frcnn_tensor_free(prob);
    frcnn_tensor_free(logits);
    frcnn_ctx_free(ctx);
}

typedef struct xent_state {
    frcnn_ctx *ctx;
    frcnn_tensor *logits, *prob;
    const int32_t *labels;
    float dloss;
} xent_state;

static double xent_loss(void *arg)
{
    xent_state *s = arg;
    float loss;
    if (frcnn_softmax_xent_forward(s->ctx, s->logits, s->labels, -1, s->prob, &loss) != FRCNN_OK)
        return NAN;
    return (double)s->dloss * (double)loss;
}

static void test_xent_gradient(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    enum { N = 6, K = 5 };
    xent_state s = {ctx, tu_tensor(ctx, 2, N, K, 0, 0), tu_tensor(ctx, 2, N, K, 0, 0), NULL, 0.7f};
    tu_fill_uniform(frcnn_tensor_data(s.logits), N * K, 41, -3.0f, 3.0f);
    const int32_t labels[N] = {0, 4, -1, 2, 2, 1};
    s.labels = labels;
    float loss;
    assert_int_equal(frcnn_softmax_xent_forward(ctx, s.logits, labels, -1, s.prob, &loss), FRCNN_OK);
    frcnn_tensor *d = tu_tensor(ctx, 2, N, K, 0, 0);
    assert_int_equal(frcnn_softmax_xent_backward(ctx, s.prob, labels, -1, s.dloss, d), FRCNN_OK);
    tu_gradcheck("softmax_xent dlogits", xent_loss, &s, frcnn_tensor_data(s.logits), frcnn_tensor_data(d), N * K,
                 1e-2f, 2e-4, 2e-3);
    frcnn_tensor_free(d);
    frcnn_tensor_free(s.prob);
    frcnn_tensor_free(s.logits);
    frcnn_ctx_free(ctx);
}

/* Logits of +-1000: exp would overflow without the max subtraction, and prob[label] underflows to 0, yet the
 * log-sum-exp loss is exact: row 0 (label 1) 1000, row 1 (label 2) 2000, row 2 (label 0) ~0. */
static void test_xent_large_logits(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    const float l[9] = {1000, 0, -1000, 1000, 0, -1000, 1000, 0, -1000};
    frcnn_tensor *logits = tensor_from(ctx, 2, 3, 3, l);
    frcnn_tensor *prob = tu_tensor(ctx, 2, 3, 3, 0, 0);
    const int32_t labels[3] = {1, 2, 0};
    float loss;
    assert_int_equal(frcnn_softmax_xent_forward(ctx, logits, labels, -1, prob, &loss), FRCNN_OK);
    assert_true(isfinite(loss));
    assert_near("loss", loss, (1000.0 + 2000.0 + 0.0) / 3.0, 1e-3);
    const float one_hot[9] = {1, 0, 0, 1, 0, 0, 1, 0, 0};
    tu_assert_close("prob", frcnn_tensor_data(prob), one_hot, 9, 0.0, 0.0);
    frcnn_tensor *d = tu_tensor(ctx, 2, 3, 3, 0, 0);
    assert_int_equal(frcnn_softmax_xent_backward(ctx, prob, labels, -1, 1.0f, d), FRCNN_OK);
    const float want_d[9] = {1.0f / 3, -1.0f / 3, 0, 1.0f / 3, 0, -1.0f / 3, 0, 0, 0};
    tu_assert_close("dlogits", frcnn_tensor_data(d), want_d, 9, 1e-7, 0.0);
    frcnn_tensor_free(d);
    frcnn_tensor_free(prob);
    frcnn_tensor_free(logits);
    frcnn_ctx_free(ctx);
}

static void test_xent_bad_arguments(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_tensor *logits = tu_tensor(ctx, 2, 2, 3, 0, 0);
    frcnn_tensor *prob = tu_tensor(ctx, 2, 2, 3, 0, 0);
    frcnn_tensor *prob_bad = tu_tensor(ctx, 2, 3, 2, 0, 0);
    frcnn_tensor *flat = tu_tensor(ctx, 1, 6, 0, 0, 0);
    frcnn_tensor *four = tu_tensor(ctx, 4, 1, 2, 3, 1);
    const int32_t labels[2] = {0, 2};
    float loss;

    assert_int_equal(frcnn_softmax_xent_forward(NULL, logits, labels, -1, prob, &loss), FRCNN_ERR_INVALID_ARG);
    assert_int_equal(frcnn_softmax_xent_backward(NULL, prob, labels, -1, 1.0f, logits), FRCNN_ERR_INVALID_ARG);
    tu_expect_error_msg(ctx, frcnn_softmax_xent_forward(ctx, NULL, labels, -1, prob, &loss), FRCNN_ERR_INVALID_ARG,
                 "logits");
    tu_expect_error_msg(ctx, frcnn_softmax_xent_forward(ctx, logits, NULL, -1, prob, &loss), FRCNN_ERR_INVALID_ARG,
                 "labels");
    tu_expect_error_msg(ctx, frcnn_softmax_xent_forward(ctx, logits, labels, -1, NULL, &loss), FRCNN_ERR_INVALID_ARG,
                 "prob");
    tu_expect_error_msg(ctx, frcnn_softmax_xent_forward(ctx, logits, labels, -1, prob, NULL), FRCNN_ERR_INVALID_ARG,
                 "loss");
    tu_expect_error_msg(ctx, frcnn_softmax_xent_forward(ctx, flat, labels, -1, prob, &loss), FRCNN_ERR_SHAPE, "logits");
    tu_expect_error_msg(ctx, frcnn_softmax_xent_forward(ctx, four, labels, -1, prob, &loss), FRCNN_ERR_SHAPE, "logits");
    tu_expect_error_msg(ctx, frcnn_softmax_xent_forward(ctx, logits, labels, -1, prob_bad, &loss), FRCNN_ERR_SHAPE,
                 "(3, 2)");
    tu_expect_error_msg(ctx, frcnn_softmax_xent_backward(ctx, NULL, labels, -1, 1.0f, logits), FRCNN_ERR_INVALID_ARG,
                 "prob");
    tu_expect_error_msg(ctx, frcnn_softmax_xent_backward(ctx, prob, NULL, -1, 1.0f, logits), FRCNN_ERR_INVALID_ARG,
                 "labels");
    tu_expect_error_msg(ctx, frcnn_softmax_xent_backward(ctx, prob, labels, -1, 1.0f, prob_bad), FRCNN_ERR_SHAPE,
                 "dlogits");
    tu_expect_error_msg(ctx, frcnn_softmax_xent_backward(ctx, flat, labels, -1, 1.0f, logits), FRCNN_ERR_SHAPE, "prob");
    assert_int_equal(frcnn_softmax_xent_backward(ctx, prob, labels, -1, 1.0f, NULL), FRCNN_OK);

    /* Bad labels name the row and the label; prob and dlogits are left untouched. */
    const int32_t bad[][2] = {{0, 3}, {0, -2}, {0, INT32_MAX}};
    const char *needles[] = {"labels[1] is 3", "labels[1] is -2", "labels[1]"};
    for (int i = 0; i < 3; i++) {
        frcnn_tensor_fill(prob, 9.0f);
        frcnn_tensor_fill(logits, 9.0f);
        tu_expect_error_msg(ctx, frcnn_softmax_xent_forward(ctx, logits, bad[i], -1, prob, &loss), FRCNN_ERR_INVALID_ARG,
                     needles[i]);
        tu_expect_error_msg(ctx, frcnn_softmax_xent_backward(ctx, prob, bad[i], -1, 1.0f, logits),
                     FRCNN_ERR_INVALID_ARG, needles[i]);
        for (int j = 0; j < 6; j++) {
            assert_true(frcnn_tensor_data(prob)[j] == 9.0f);
            assert_true(frcnn_tensor_data(logits)[j] == 9.0f);
        }
    }
    frcnn_tensor_free(four);
    frcnn_tensor_free(flat);
    frcnn_tensor_free(prob_bad);
    frcnn_tensor_free(prob);
    frcnn_tensor_free(logits);
    frcnn_ctx_free(ctx);
}

static void test_xent_determinism(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    enum { N = 256, K = 21 };
    frcnn_tensor *logits = tu_tensor(ctx, 2, N, K, 0, 0);
    tu_fill_uniform(frcnn_tensor_data(logits), N * K, 51, -8.0f, 8.0f);
    int32_t labels[N];
    for (int i = 0; i < N; i++)
        labels[i] = i % 7 == 0 ? -1 : (int32_t)((i * 13) % K);
    frcnn_tensor *p[2] = {tu_tensor(ctx, 2, N, K, 0, 0), tu_tensor(ctx, 2, N, K, 0, 0)};
    frcnn_tensor *d[2] = {tu_tensor(ctx, 2, N, K, 0, 0), tu_tensor(ctx, 2, N, K, 0, 0)};
    float loss[2];
    for (int k = 0; k < 2; k++) {
        assert_int_equal(frcnn_softmax_xent_forward(ctx, logits, labels, -1, p[k], &loss[k]), FRCNN_OK);
        assert_int_equal(frcnn_softmax_xent_backward(ctx, p[k], labels, -1, 1.0f, d[k]), FRCNN_OK);
    }
    tu_assert_identical("loss", &loss[0], &loss[1], 1);
    tu_assert_identical("prob", frcnn_tensor_data(p[0]), frcnn_tensor_data(p[1]), N * K);
    tu_assert_identical("dlogits", frcnn_tensor_data(d[0]), frcnn_tensor_data(d[1]), N * K);
    for (int k = 0; k < 2; k++) {
        frcnn_tensor_free(p[k]);
        frcnn_tensor_free(d[k]);
    }
    frcnn_tensor_free(logits);
    frcnn_ctx_free(ctx);
}

/* ------------------------------------------------------------------------------------------------------------
 * Smooth-L1. */

static void test_smooth_l1_default(void **state)
{
    (void)state;
    frcnn_smooth_l1_params p = frcnn_smooth_l1_params_default();
    assert_true(p.sigma == 1.0f);
    assert_true(p.normalizer == 1.0f);
}

/* sigma 1 (transition |d| = 1), no weights: d = 0.5, 2, -3, 0, -0.25
 *   f = 0.5 * 0.25 = 0.125,  2 - 0.5 = 1.5,  3 - 0.5 = 2.5,  0,  0.5 * 0.0625 = 0.03125;  sum 4.15625
 *   f' = 0.5, 1, -1, 0, -0.25 */
static void test_smooth_l1_hand_sigma1(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    const float pr[5] = {1.5f, 2, -1, 0.75f, 0}, tg[5] = {1, 0, 2, 0.75f, 0.25f};
    frcnn_tensor *pred = tensor_from(ctx, 1, 5, 0, pr), *target = tensor_from(ctx, 1, 5, 0, tg);
    frcnn_smooth_l1_params p = frcnn_smooth_l1_params_default();
    float loss;
    assert_int_equal(frcnn_smooth_l1_forward(ctx, &p, pred, target, NULL, NULL, &loss), FRCNN_OK);
    assert_near("loss", loss, 4.15625, 1e-6);
    frcnn_tensor *d = tu_tensor(ctx, 1, 5, 0, 0, 0);
    assert_int_equal(frcnn_smooth_l1_backward(ctx, &p, pred, target, NULL, NULL, 1.0f, d), FRCNN_OK);
    const float want[5] = {0.5f, 1, -1, 0, -0.25f};
    tu_assert_close("dpred", frcnn_tensor_data(d), want, 5, 1e-7, 0.0);
    frcnn_tensor_free(d);
    frcnn_tensor_free(target);
    frcnn_tensor_free(pred);
    frcnn_ctx_free(ctx);
}

/* sigma 3 (transition |d| = 1/9), inside (2, 1, 0.5, 0), outside (1, 0.5, 2, 7), normalizer 4, as a (2, 2):
 *   pred - target = 0.025, -0.5, 0.2, 5 -> d = 0.05, -0.5, 0.1, 0
 *   f = 4.5 * 0.0025 = 0.01125,  0.5 - 1/18,  4.5 * 0.01 = 0.045,  0
 *   loss = (1 * 0.01125 + 0.5 * (0.5 - 1/18) + 2 * 0.045 + 0) / 4
 *   f' = 9 * 0.05 = 0.45,  -1,  0.9,  0;  dpred = dloss * outside * inside * f' / 4 */
static void test_smooth_l1_hand_sigma3_weights(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    const float pr[4] = {0.125f, 0, 0.5f, 6}, tg[4] = {0.1f, 0.5f, 0.3f, 1};
    const float in[4] = {2, 1, 0.5f, 0}, out[4] = {1, 0.5f, 2, 7};
    frcnn_tensor *pred = tensor_from(ctx, 2, 2, 2, pr), *target = tensor_from(ctx, 2, 2, 2, tg);
    frcnn_tensor *inside = tensor_from(ctx, 2, 2, 2, in), *outside = tensor_from(ctx, 2, 2, 2, out);
    frcnn_smooth_l1_params p = {3.0f, 4.0f};
    float loss;
    assert_int_equal(frcnn_smooth_l1_forward(ctx, &p, pred, target, inside, outside, &loss), FRCNN_OK);
    const double want_loss = (1.0 * 0.01125 + 0.5 * (0.5 - 1.0 / 18.0) + 2.0 * 0.045) / 4.0;
    assert_near("loss", loss, want_loss, 2e-7);

    frcnn_tensor *d = tu_tensor(ctx, 2, 2, 2, 0, 0);
    const float dloss = 2.0f;
    assert_int_equal(frcnn_smooth_l1_backward(ctx, &p, pred, target, inside, outside, dloss, d), FRCNN_OK);
    const float want[4] = {(float)(2.0 * 1 * 2 * 0.45 / 4), (float)(2.0 * 0.5 * 1 * -1.0 / 4),
                           (float)(2.0 * 2 * 0.5 * 0.9 / 4), 0.0f};
    tu_assert_close("dpred", frcnn_tensor_data(d), want, 4, 1e-6, 1e-5);

    /* Only outside weights (inside NULL): d = pred - target = 0.025, -0.5, 0.2, 5 */
    assert_int_equal(frcnn_smooth_l1_forward(ctx, &p, pred, target, NULL, outside, &loss), FRCNN_OK);
    const double want_out = (1.0 * 4.5 * 0.025 * 0.025 + 0.5 * (0.5 - 1.0 / 18.0) + 2.0 * (0.2 - 1.0 / 18.0) +
                             7.0 * (5.0 - 1.0 / 18.0)) / 4.0;
    assert_near("loss, outside only", loss, want_out, 2e-6);
    /* Only inside weights (outside NULL). */
    assert_int_equal(frcnn_smooth_l1_forward(ctx, &p, pred, target, inside, NULL, &loss), FRCNN_OK);
    assert_near("loss, inside only", loss, (0.01125 + (0.5 - 1.0 / 18.0) + 0.045) / 4.0, 2e-7);
    frcnn_tensor_free(d);
    frcnn_tensor_free(outside);
    frcnn_tensor_free(inside);
    frcnn_tensor_free(target);
    frcnn_tensor_free(pred);
    frcnn_ctx_free(ctx);
}

typedef struct l1_state {
    frcnn_ctx *ctx;
    frcnn_smooth_l1_params p;
    frcnn_tensor *pred, *target, *inside, *outside;
    float dloss;
} l1_state;

static double l1_loss(void *arg)
{
    l1_state *s = arg;
    float loss;
    if (frcnn_smooth_l1_forward(s->ctx, &s->p, s->pred, s->target, s->inside, s->outside, &loss) != FRCNN_OK)
        return NAN;
    return (double)s->dloss * (double)loss;
}

/* |d| is kept at least 0.02 away from 0 and from the transition 1/sigma^2, more than inside * eps = 0.006. */
static void gradient_case(float sigma, float normalizer, bool weights, uint64_t seed)
{
    frcnn_ctx *ctx = tu_ctx();
    enum { N = 24 };
    l1_state s = {ctx, {sigma, normalizer}, tu_tensor(ctx, 2, 4, 6, 0, 0), tu_tensor(ctx, 2, 4, 6, 0, 0), NULL,
                  NULL, 1.3f};
    if (weights) {
        s.inside = tu_tensor(ctx, 2, 4, 6, 0, 0);
        s.outside = tu_tensor(ctx, 2, 4, 6, 0, 0);
        tu_fill_uniform(frcnn_tensor_data(s.inside), N, seed, 0.5f, 1.5f);
        tu_fill_uniform(frcnn_tensor_data(s.outside), N, seed + 1, 0.1f, 2.0f);
    }
    const double t = 1.0 / ((double)sigma * sigma);
    float *pr = frcnn_tensor_data(s.pred), *tg = frcnn_tensor_data(s.target);
    tu_fill_uniform(tg, N, seed + 2, -2.0f, 2.0f);
    float u[N];
    tu_fill_uniform(u, N, seed + 3, 0.0f, 1.0f);
    for (int i = 0; i < N; i++) {
        /* even i: inside the quadratic zone, |d| in [0.2 t, 0.8 t]; odd i: linear zone, |d| in [1.3 t, 1.3 t + 2] */
        double mag = i % 2 == 0 ? t * (0.2 + 0.6 * u[i]) : 1.3 * t + 2.0 * u[i];
        double dd = (i % 4 < 2 ? mag : -mag);
        double in = weights ? (double)frcnn_tensor_data(s.inside)[i] : 1.0;
        pr[i] = (float)((double)tg[i] + dd / in);
    }
    frcnn_tensor *d = tu_tensor(ctx, 2, 4, 6, 0, 0);
    assert_int_equal(frcnn_smooth_l1_backward(ctx, &s.p, s.pred, s.target, s.inside, s.outside, s.dloss, d),
                     FRCNN_OK);
    tu_gradcheck("smooth_l1 dpred", l1_loss, &s, pr, frcnn_tensor_data(d), N, 4e-3f, 1e-3, 1e-2);
    frcnn_tensor_free(d);
    frcnn_tensor_free(s.outside);
    frcnn_tensor_free(s.inside);
    frcnn_tensor_free(s.target);
    frcnn_tensor_free(s.pred);
    frcnn_ctx_free(ctx);
}

static void test_smooth_l1_gradient(void **state)
{
    (void)state;
    gradient_case(1.0f, 1.0f, false, 61);
    gradient_case(3.0f, 1.0f, true, 62);
    gradient_case(1.0f, 8.0f, true, 63);
    gradient_case(3.0f, 2.5f, false, 64);
}

/* Backward accumulates on top of dpred, twice gives twice; a NULL dpred is skipped. */
static void test_smooth_l1_accumulates(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    const float pr[3] = {0.5f, 2, -3}, tg[3] = {0, 0, 0};
    frcnn_tensor *pred = tensor_from(ctx, 1, 3, 0, pr), *target = tensor_from(ctx, 1, 3, 0, tg);
    frcnn_smooth_l1_params p = frcnn_smooth_l1_params_default();
    frcnn_tensor *d = tu_tensor(ctx, 1, 3, 0, 0, 0);
    frcnn_tensor_fill(d, 10.0f);
    assert_int_equal(frcnn_smooth_l1_backward(ctx, &p, pred, target, NULL, NULL, 1.0f, d), FRCNN_OK);
    const float once[3] = {10.5f, 11, 9};
    tu_assert_close("once", frcnn_tensor_data(d), once, 3, 0.0, 0.0);
    assert_int_equal(frcnn_smooth_l1_backward(ctx, &p, pred, target, NULL, NULL, 1.0f, d), FRCNN_OK);
    const float twice[3] = {11, 12, 8};
    tu_assert_close("twice", frcnn_tensor_data(d), twice, 3, 0.0, 0.0);
    assert_int_equal(frcnn_smooth_l1_backward(ctx, &p, pred, target, NULL, NULL, 1.0f, NULL), FRCNN_OK);
    frcnn_tensor_free(d);
    frcnn_tensor_free(target);
    frcnn_tensor_free(pred);
    frcnn_ctx_free(ctx);
}

static void test_smooth_l1_bad_arguments(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_tensor *a = tu_tensor(ctx, 2, 2, 3, 0, 0), *b = tu_tensor(ctx, 2, 2, 3, 0, 0);
    frcnn_tensor *w = tu_tensor(ctx, 2, 2, 3, 0, 0), *g = tu_tensor(ctx, 2, 2, 3, 0, 0);
    frcnn_tensor *t32 = tu_tensor(ctx, 2, 3, 2, 0, 0), *flat = tu_tensor(ctx, 1, 6, 0, 0, 0);
    frcnn_smooth_l1_params p = frcnn_smooth_l1_params_default();
    float loss;

    assert_int_equal(frcnn_smooth_l1_forward(NULL, &p, a, b, w, w, &loss), FRCNN_ERR_INVALID_ARG);
    assert_int_equal(frcnn_smooth_l1_backward(NULL, &p, a, b, w, w, 1.0f, g), FRCNN_ERR_INVALID_ARG);
    tu_expect_error_msg(ctx, frcnn_smooth_l1_forward(ctx, NULL, a, b, w, w, &loss), FRCNN_ERR_INVALID_ARG, "params");
    tu_expect_error_msg(ctx, frcnn_smooth_l1_forward(ctx, &p, NULL, b, w, w, &loss), FRCNN_ERR_INVALID_ARG, "pred");
    tu_expect_error_msg(ctx, frcnn_smooth_l1_forward(ctx, &p, a, NULL, w, w, &loss), FRCNN_ERR_INVALID_ARG, "target");
    tu_expect_error_msg(ctx, frcnn_smooth_l1_forward(ctx, &p, a, b, w, w, NULL), FRCNN_ERR_INVALID_ARG, "loss");
    tu_expect_error_msg(ctx, frcnn_smooth_l1_forward(ctx, &p, a, t32, w, w, &loss), FRCNN_ERR_SHAPE, "(3, 2)");
    tu_expect_error_msg(ctx, frcnn_smooth_l1_forward(ctx, &p, a, flat, w, w, &loss), FRCNN_ERR_SHAPE, "target");
    tu_expect_error_msg(ctx, frcnn_smooth_l1_forward(ctx, &p, a, b, t32, w, &loss), FRCNN_ERR_SHAPE, "inside");
    tu_expect_error_msg(ctx, frcnn_smooth_l1_forward(ctx, &p, a, b, w, flat, &loss), FRCNN_ERR_SHAPE, "outside");
    tu_expect_error_msg(ctx, frcnn_smooth_l1_backward(ctx, &p, a, b, w, w, 1.0f, t32), FRCNN_ERR_SHAPE, "dpred");
    tu_expect_error_msg(ctx, frcnn_smooth_l1_backward(ctx, &p, NULL, b, w, w, 1.0f, g), FRCNN_ERR_INVALID_ARG, "pred");
    tu_expect_error_msg(ctx, frcnn_smooth_l1_backward(ctx, &p, a, b, NULL, t32, 1.0f, g), FRCNN_ERR_SHAPE, "outside");

    const frcnn_smooth_l1_params bad[] = {{0.0f, 1.0f},      {-1.0f, 1.0f}, {NAN, 1.0f},      {INFINITY, 1.0f},
                                          {1.0f, 0.0f},      {1.0f, -2.0f}, {1.0f, NAN},      {1.0f, INFINITY}};
    const char *needles[] = {"sigma", "sigma", "sigma", "sigma", "normalizer", "normalizer", "normalizer",
                             "normalizer"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tu_expect_error_msg(ctx, frcnn_smooth_l1_forward(ctx, &bad[i], a, b, w, w, &loss), FRCNN_ERR_INVALID_ARG,
                     needles[i]);
        tu_expect_error_msg(ctx, frcnn_smooth_l1_backward(ctx, &bad[i], a, b, w, w, 1.0f, g), FRCNN_ERR_INVALID_ARG,
                     needles[i]);
    }
    for (int i = 0; i < 6; i++)
        assert_true(frcnn_tensor_data(g)[i] == 0.0f);
    frcnn_tensor *list[] = {flat, t32, g, w, b, a};
    for (size_t i = 0; i < sizeof list / sizeof list[0]; i++)
        frcnn_tensor_free(list[i]);
    frcnn_ctx_free(ctx);
}

static void test_smooth_l1_determinism(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_tensor *pred = tu_tensor(ctx, 4, 1, 36, 8, 14), *target = tu_tensor(ctx, 4, 1, 36, 8, 14);
    frcnn_tensor *w = tu_tensor(ctx, 4, 1, 36, 8, 14);
    size_t n = frcnn_tensor_numel(pred);
    tu_fill_uniform(frcnn_tensor_data(pred), n, 71, -1.0f, 1.0f);
    tu_fill_uniform(frcnn_tensor_data(target), n, 72, -1.0f, 1.0f);
    tu_fill_uniform(frcnn_tensor_data(w), n, 73, 0.0f, 1.0f);
    frcnn_smooth_l1_params p = {3.0f, 1.0f};
    float loss[2];
    frcnn_tensor *g[2] = {tu_tensor(ctx, 4, 1, 36, 8, 14), tu_tensor(ctx, 4, 1, 36, 8, 14)};
    for (int k = 0; k < 2; k++) {
        assert_int_equal(frcnn_smooth_l1_forward(ctx, &p, pred, target, w, w, &loss[k]), FRCNN_OK);
        assert_int_equal(frcnn_smooth_l1_backward(ctx, &p, pred, target, w, w, 1.0f, g[k]), FRCNN_OK);
    }
    tu_assert_identical("loss", &loss[0], &loss[1], 1);
    tu_assert_identical("dpred", frcnn_tensor_data(g[0]), frcnn_tensor_data(g[1]), n);
    frcnn_tensor_free(g[0]);
    frcnn_tensor_free(g[1]);
    frcnn_tensor_free(w);
    frcnn_tensor_free(target);
    frcnn_tensor_free(pred);
    frcnn_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_xent_hand),
        cmocka_unit_test(test_xent_ignore),
        cmocka_unit_test(test_xent_all_ignored),
        cmocka_unit_test(test_xent_gradient),
        cmocka_unit_test(test_xent_large_logits),
        cmocka_unit_test(test_xent_bad_arguments),
        cmocka_unit_test(test_xent_determinism),
        cmocka_unit_test(test_smooth_l1_default),
        cmocka_unit_test(test_smooth_l1_hand_sigma1),
        cmocka_unit_test(test_smooth_l1_hand_sigma3_weights),
        cmocka_unit_test(test_smooth_l1_gradient),
        cmocka_unit_test(test_smooth_l1_accumulates),
        cmocka_unit_test(test_smooth_l1_bad_arguments),
        cmocka_unit_test(test_smooth_l1_determinism),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
