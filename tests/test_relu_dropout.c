/* Tests for the element-wise kernels: ReLU (lib/kernels/relu.c) and inverted dropout (lib/kernels/dropout.c). */
#include "testutil.h"

#include <math.h>
#include <string.h>

/* Uniform values with |v| in [0.05, 1.05): central differences with eps 1e-2 never cross the ReLU kink. */
static void fill_off_kink(float *a, size_t n, uint64_t seed)
{
    tu_fill_uniform(a, n, seed, -1.0f, 1.0f);
    for (size_t i = 0; i < n; i++)
        a[i] = a[i] < 0.0f ? a[i] - 0.05f : a[i] + 0.05f;
}

/* ------------------------------------------------------------------------------------------------ ReLU */

static void test_relu_forward_hand(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_tensor *x = tu_tensor(ctx, 2, 2, 4, 0, 0);
    frcnn_tensor *y = tu_tensor(ctx, 2, 2, 4, 0, 0);
    const float in[8] = {-2.0f, -0.5f, 0.0f, 0.25f, 3.0f, -1e-30f, 1e-30f, 7.5f};
    const float want[8] = {0.0f, 0.0f, 0.0f, 0.25f, 3.0f, 0.0f, 1e-30f, 7.5f};
    memcpy(frcnn_tensor_data(x), in, sizeof in);
    assert_int_equal(frcnn_relu_forward(ctx, x, y), FRCNN_OK);
    tu_assert_identical("relu y", frcnn_tensor_data(y), want, 8);
    /* In place. */
    assert_int_equal(frcnn_relu_forward(ctx, x, x), FRCNN_OK);
    tu_assert_identical("relu in place", frcnn_tensor_data(x), want, 8);
    frcnn_tensor_free(x);
    frcnn_tensor_free(y);
    frcnn_ctx_free(ctx);
}

static void test_relu_nan_propagates(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_tensor *x = tu_tensor(ctx, 1, 3, 0, 0, 0);
    frcnn_tensor *y = tu_tensor(ctx, 1, 3, 0, 0, 0);
    float *xd = frcnn_tensor_data(x);
    xd[0] = NAN;
    xd[1] = -INFINITY;
    xd[2] = INFINITY;
    assert_int_equal(frcnn_relu_forward(ctx, x, y), FRCNN_OK);
    const float *yd = frcnn_tensor_data(y);
    assert_true(isnan(yd[0]));
    assert_true(yd[1] == 0.0f);
    assert_true(isinf(yd[2]) && yd[2] > 0.0f);
    frcnn_tensor_free(x);
    frcnn_tensor_free(y);
    frcnn_ctx_free(ctx);
}

static void test_relu_backward_hand(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_tensor *y = tu_tensor(ctx, 1, 5, 0, 0, 0);
    frcnn_tensor *dy = tu_tensor(ctx, 1, 5, 0, 0, 0);
    frcnn_tensor *dx = tu_tensor(ctx, 1, 5, 0, 0, 0);
    const float yv[5] = {0.0f, 0.5f, 0.0f, 3.0f, 1e-30f};
    const float dyv[5] = {1.0f, 2.0f, 3.0f, 4.0f, 5.0f};
    const float want1[5] = {10.0f, 12.0f, 10.0f, 14.0f, 15.0f};
    const float want2[5] = {10.0f, 14.0f, 10.0f, 18.0f, 20.0f};
    memcpy(frcnn_tensor_data(y), yv, sizeof yv);
    memcpy(frcnn_tensor_data(dy), dyv, sizeof dyv);
    frcnn_tensor_fill(dx, 10.0f);
    assert_int_equal(frcnn_relu_backward(ctx, y, dy, dx), FRCNN_OK);
    tu_assert_identical("relu dx", frcnn_tensor_data(dx), want1, 5);
    /* Accumulates. */
    assert_int_equal(frcnn_relu_backward(ctx, y, dy, dx), FRCNN_OK);
    tu_assert_identical("relu dx twice", frcnn_tensor_data(dx), want2, 5);
    /* NULL dx: nothing needed, nothing done. */
    assert_int_equal(frcnn_relu_backward(ctx, y, dy, NULL), FRCNN_OK);
    tu_assert_identical("relu dx after NULL", frcnn_tensor_data(dx), want2, 5);
    /* dx == dy: gated in place (the header's special case), not added to itself; gating twice changes nothing. */
    const float gated[5] = {0.0f, 2.0f, 0.0f, 4.0f, 5.0f};
    assert_int_equal(frcnn_relu_backward(ctx, y, dy, dy), FRCNN_OK);
    tu_assert_identical("relu dy gated in place", frcnn_tensor_data(dy), gated, 5);
    assert_int_equal(frcnn_relu_backward(ctx, y, dy, dy), FRCNN_OK);
    tu_assert_identical("relu dy gated twice", frcnn_tensor_data(dy), gated, 5);
    frcnn_tensor_free(y);
    frcnn_tensor_free(dy);
    frcnn_tensor_free(dx);
    frcnn_ctx_free(ctx);
}

typedef struct relu_loss {
    frcnn_ctx *ctx;
    frcnn_tensor *x, *y;
    const float *r;
} relu_loss;

static double relu_loss_fn(void *state)
{
    relu_loss *s = state;
    assert_int_equal(frcnn_relu_forward(s->ctx, s->x, s->y), FRCNN_OK);
    return tu_dot(frcnn_tensor_data(s->y), s->r, frcnn_tensor_numel(s->y));
}

static void test_relu_gradcheck(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    /* Odd sizes, 3-D. */
    frcnn_tensor *x = tu_tensor(ctx, 3, 3, 5, 7, 0);
    frcnn_tensor *y = tu_tensor(ctx, 3, 3, 5, 7, 0);
    frcnn_tensor *r = tu_tensor(ctx, 3, 3, 5, 7, 0);
    frcnn_tensor *dx = tu_tensor(ctx, 3, 3, 5, 7, 0);
    size_t n = frcnn_tensor_numel(x);
    fill_off_kink(frcnn_tensor_data(x), n, 11);
    tu_fill_uniform(frcnn_tensor_data(r), n, 12, -1.0f, 1.0f);
    assert_int_equal(frcnn_relu_forward(ctx, x, y), FRCNN_OK);
    assert_int_equal(frcnn_relu_backward(ctx, y, r, dx), FRCNN_OK);
    relu_loss s = {ctx, x, y, frcnn_tensor_data(r)};
    tu_gradcheck("relu dx", relu_loss_fn, &s, frcnn_tensor_data(x), frcnn_tensor_data(dx), n, 1e-2f, 1e-3, 1e-2);
    frcnn_tensor_free(x);
    frcnn_tensor_free(y);
    frcnn_tensor_free(r);
    frcnn_tensor_free(dx);
    frcnn_ctx_free(ctx);
}

/* The same results with 1 and 2 threads, on a tensor big enough for the loop to be split, and on a second
 * call. */
static void test_relu_deterministic(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    const int64_t n = (int64_t)1 << 20;
    frcnn_tensor *x = tu_tensor(ctx, 1, n, 0, 0, 0);
    frcnn_tensor *y1 = tu_tensor(ctx, 1, n, 0, 0, 0);
    frcnn_tensor *y2 = tu_tensor(ctx, 1, n, 0, 0, 0);
    frcnn_tensor *dx1 = tu_tensor(ctx, 1, n, 0, 0, 0);
    frcnn_tensor *dx2 = tu_tensor(ctx, 1, n, 0, 0, 0);
    tu_fill_uniform(frcnn_tensor_data(x), (size_t)n, 5, -1.0f, 1.0f);
    assert_int_equal(frcnn_ctx_set_threads(ctx, 1), FRCNN_OK);
    assert_int_equal(frcnn_relu_forward(ctx, x, y1), FRCNN_OK);
    assert_int_equal(frcnn_relu_backward(ctx, y1, x, dx1), FRCNN_OK);
    assert_int_equal(frcnn_ctx_set_threads(ctx, 2), FRCNN_OK);
    assert_int_equal(frcnn_relu_forward(ctx, x, y2), FRCNN_OK);
    assert_int_equal(frcnn_relu_backward(ctx, y2, x, dx2), FRCNN_OK);
    tu_assert_identical("relu y 1 vs 2 threads", frcnn_tensor_data(y1), frcnn_tensor_data(y2), (size_t)n);
    tu_assert_identical("relu dx 1 vs 2 threads", frcnn_tensor_data(dx1), frcnn_tensor_data(dx2), (size_t)n);
    assert_int_equal(frcnn_relu_forward(ctx, x, y2), FRCNN_OK);
    tu_assert_identical("relu y twice", frcnn_tensor_data(y1), frcnn_tensor_data(y2), (size_t)n);
    frcnn_tensor_free(x);
    frcnn_tensor_free(y1);
    frcnn_tensor_free(y2);
    frcnn_tensor_free(dx1);
    frcnn_tensor_free(dx2);
    frcnn_ctx_free(ctx);
}

static void test_relu_bad_args(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_tensor *a = tu_tensor(ctx, 2, 2, 3, 0, 0);
    frcnn_tensor *b = tu_tensor(ctx, 2, 2, 3, 0, 0);
    frcnn_tensor *c = tu_tensor(ctx, 2, 3, 2, 0, 0); /* same count, other shape */
    frcnn_tensor *d = tu_tensor(ctx, 1, 6, 0, 0, 0); /* same count, other ndim */
    assert_int_equal(frcnn_relu_forward(NULL, a, b), FRCNN_ERR_INVALID_ARG);
    assert_int_equal(frcnn_relu_backward(NULL, a, b, c), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_relu_forward(ctx, NULL, b), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_relu_forward(ctx, a, NULL), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_relu_forward(ctx, a, c), FRCNN_ERR_SHAPE);
    tu_expect_error(ctx, frcnn_relu_forward(ctx, a, d), FRCNN_ERR_SHAPE);
    tu_expect_error(ctx, frcnn_relu_backward(ctx, NULL, a, b), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_relu_backward(ctx, a, NULL, b), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_relu_backward(ctx, a, c, b), FRCNN_ERR_SHAPE);
    tu_expect_error(ctx, frcnn_relu_backward(ctx, a, b, c), FRCNN_ERR_SHAPE);
    tu_expect_error(ctx, frcnn_relu_backward(ctx, a, b, d), FRCNN_ERR_SHAPE);
    tu_expect_error(ctx, frcnn_relu_backward(ctx, a, c, NULL), FRCNN_ERR_SHAPE);

    frcnn_tensor_free(a);
    frcnn_tensor_free(b);
    frcnn_tensor_free(c);
    frcnn_tensor_free(d);
    frcnn_ctx_free(ctx);
}

/* --------------------------------------------------------------------------------------------- dropout */

static void rng_bytes(const frcnn_rng *rng, uint8_t out[FRCNN_RNG_STATE_BYTES])
{
    frcnn_rng_state_save(rng, out);
}

/* Not training, and training with p == 0: y = x, mask = 1, rng untouched (and may be NULL). */
static void test_dropout_identity_cases(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_tensor *x = tu_tensor(ctx, 2, 2, 3, 0, 0);
    frcnn_tensor *y = tu_tensor(ctx, 2, 2, 3, 0, 0);
    frcnn_tensor *m = tu_tensor(ctx, 2, 2, 3, 0, 0);
    const float in[6] = {1.0f, -2.0f, 0.0f, 3.5f, -0.25f, 100.0f};
    const float ones[6] = {1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 1.0f};
    memcpy(frcnn_tensor_data(x), in, sizeof in);
    frcnn_rng rng;
    frcnn_rng_seed(&rng, 42);
    uint8_t before[FRCNN_RNG_STATE_BYTES], after[FRCNN_RNG_STATE_BYTES];
    rng_bytes(&rng, before);

    assert_int_equal(frcnn_dropout_forward(ctx, &rng, 0.5f, false, x, y, m), FRCNN_OK);
    tu_assert_identical("dropout eval y", frcnn_tensor_data(y), in, 6);
    tu_assert_identical("dropout eval mask", frcnn_tensor_data(m), ones, 6);
    frcnn_tensor_zero(y);
    frcnn_tensor_zero(m);
    assert_int_equal(frcnn_dropout_forward(ctx, &rng, 0.0f, true, x, y, m), FRCNN_OK);
    tu_assert_identical("dropout p=0 y", frcnn_tensor_data(y), in, 6);
    tu_assert_identical("dropout p=0 mask", frcnn_tensor_data(m), ones, 6);
    rng_bytes(&rng, after);
    assert_memory_equal(before, after, FRCNN_RNG_STATE_BYTES);
    /* No rng needed when it is not used. */
    assert_int_equal(frcnn_dropout_forward(ctx, NULL, 0.5f, false, x, y, m), FRCNN_OK);
    assert_int_equal(frcnn_dropout_forward(ctx, NULL, 0.0f, true, x, y, m), FRCNN_OK);
    frcnn_tensor_free(x);
    frcnn_tensor_free(y);
    frcnn_tensor_free(m);
    frcnn_ctx_free(ctx);
}

/* Training: the mask follows the documented rule with the uniforms drawn in element order, y = x * mask, and
 * the rng ends where drawing numel uniforms leaves it. */
static void test_dropout_forward_reference(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_tensor *x = tu_tensor(ctx, 4, 2, 3, 5, 7);
    frcnn_tensor *y = tu_tensor(ctx, 4, 2, 3, 5, 7);
    frcnn_tensor *m = tu_tensor(ctx, 4, 2, 3, 5, 7);
    const size_t n = frcnn_tensor_numel(x);
    tu_fill_uniform(frcnn_tensor_data(x), n, 3, -2.0f, 2.0f);
    const float ps[3] = {0.5f, 0.1f, 0.9f};
    for (int k = 0; k < 3; k++) {
        const float p = ps[k];
        frcnn_rng rng, ref;
        frcnn_rng_seed(&rng, 1000 + (uint64_t)k);
        ref = rng;
        assert_int_equal(frcnn_dropout_forward(ctx, &rng, p, true, x, y, m), FRCNN_OK);
        const float *xd = frcnn_tensor_data(x), *yd = frcnn_tensor_data(y), *md = frcnn_tensor_data(m);
        const float scale = 1.0f / (1.0f - p);
        for (size_t i = 0; i < n; i++) {
            float want_m = frcnn_rng_uniform(&ref) < p ? 0.0f : scale;
            float want_y = xd[i] * want_m;
            assert_memory_equal(&md[i], &want_m, sizeof(float));
            assert_memory_equal(&yd[i], &want_y, sizeof(float));
        }
        uint8_t a[FRCNN_RNG_STATE_BYTES], b[FRCNN_RNG_STATE_BYTES];
        rng_bytes(&rng, a);
        rng_bytes(&ref, b);
        assert_memory_equal(a, b, FRCNN_RNG_STATE_BYTES);
    }
    frcnn_tensor_free(x);
    frcnn_tensor_free(y);
    frcnn_tensor_free(m);
    frcnn_ctx_free(ctx);
}

/* The threshold test is exactly "drop when u < p": with p equal to the first uniform the first element is kept,
 * with p one ulp above it the first element is dropped. */
static void test_dropout_threshold_edge(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_tensor *x = tu_tensor(ctx, 1, 1, 0, 0, 0);
    frcnn_tensor *y = tu_tensor(ctx, 1, 1, 0, 0, 0);
    frcnn_tensor *m = tu_tensor(ctx, 1, 1, 0, 0, 0);
    frcnn_tensor_fill(x, 1.0f);
    frcnn_rng rng;
    frcnn_rng_seed(&rng, 2024);
    frcnn_rng probe = rng;
    const float u0 = frcnn_rng_uniform(&probe);
    assert_true(u0 > 0.0f && u0 < 0.99f);

    frcnn_rng r1 = rng;
    assert_int_equal(frcnn_dropout_forward(ctx, &r1, u0, true, x, y, m), FRCNN_OK);
    assert_true(frcnn_tensor_data(m)[0] == 1.0f / (1.0f - u0));
    frcnn_rng r2 = rng;
    assert_int_equal(frcnn_dropout_forward(ctx, &r2, nextafterf(u0, 1.0f), true, x, y, m), FRCNN_OK);
    assert_true(frcnn_tensor_data(m)[0] == 0.0f && frcnn_tensor_data(y)[0] == 0.0f);
    frcnn_tensor_free(x);
    frcnn_tensor_free(y);
    frcnn_tensor_free(m);
    frcnn_ctx_free(ctx);
}

/* A hand-checkable case: p = 0.75 keeps with factor exactly 4, y = 4x or 0; in place. */
static void test_dropout_hand(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_tensor *x = tu_tensor(ctx, 1, 64, 0, 0, 0);
    frcnn_tensor *m = tu_tensor(ctx, 1, 64, 0, 0, 0);
    float *xd = frcnn_tensor_data(x);
    for (int i = 0; i < 64; i++)
        xd[i] = (float)(i - 32) * 0.5f;
    float orig[64];
    memcpy(orig, xd, sizeof orig);
    frcnn_rng rng;
    frcnn_rng_seed(&rng, 7);
    assert_int_equal(frcnn_dropout_forward(ctx, &rng, 0.75f, true, x, x, m), FRCNN_OK);
    const float *md = frcnn_tensor_data(m);
    int kept = 0;
    for (int i = 0; i < 64; i++) {
        assert_true(md[i] == 0.0f || md[i] == 4.0f);
        assert_true(xd[i] == (md[i] == 0.0f ? 0.0f * orig[i] : 4.0f * orig[i]));
        kept += md[i] != 0.0f;
    }
    assert_true(kept > 0 && kept < 64);
    frcnn_tensor_free(x);
    frcnn_tensor_free(m);
    frcnn_ctx_free(ctx);
}

static void test_dropout_seeds(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    const int64_t n = 1000;
    frcnn_tensor *x = tu_tensor(ctx, 2, 10, n / 10, 0, 0);
    frcnn_tensor *y1 = tu_tensor(ctx, 2, 10, n / 10, 0, 0);
    frcnn_tensor *y2 = tu_tensor(ctx, 2, 10, n / 10, 0, 0);
    frcnn_tensor *m1 = tu_tensor(ctx, 2, 10, n / 10, 0, 0);
    frcnn_tensor *m2 = tu_tensor(ctx, 2, 10, n / 10, 0, 0);
    tu_fill_uniform(frcnn_tensor_data(x), (size_t)n, 9, -1.0f, 1.0f);
    frcnn_rng a, b;
    frcnn_rng_seed(&a, 123);
    frcnn_rng_seed(&b, 123);
    assert_int_equal(frcnn_dropout_forward(ctx, &a, 0.5f, true, x, y1, m1), FRCNN_OK);
    assert_int_equal(frcnn_dropout_forward(ctx, &b, 0.5f, true, x, y2, m2), FRCNN_OK);
    tu_assert_identical("dropout same seed mask", frcnn_tensor_data(m1), frcnn_tensor_data(m2), (size_t)n);
    tu_assert_identical("dropout same seed y", frcnn_tensor_data(y1), frcnn_tensor_data(y2), (size_t)n);
    /* A different seed, and the continuing stream, give different masks. */
    frcnn_rng_seed(&b, 124);
    assert_int_equal(frcnn_dropout_forward(ctx, &b, 0.5f, true, x, y2, m2), FRCNN_OK);
    assert_memory_not_equal(frcnn_tensor_data(m1), frcnn_tensor_data(m2), (size_t)n * sizeof(float));
    assert_int_equal(frcnn_dropout_forward(ctx, &a, 0.5f, true, x, y2, m2), FRCNN_OK);
    assert_memory_not_equal(frcnn_tensor_data(m1), frcnn_tensor_data(m2), (size_t)n * sizeof(float));
    frcnn_tensor_free(x);
    frcnn_tensor_free(y1);
    frcnn_tensor_free(y2);
    frcnn_tensor_free(m1);
    frcnn_tensor_free(m2);
    frcnn_ctx_free(ctx);
}

/* On 2^18 elements the kept fraction is within 6 standard deviations (sqrt(p (1 - p) / n) <= 0.001) of
 * 1 - p, and the mean of y is close to the mean of x (inverted dropout preserves the expectation). */
static void test_dropout_keep_rate(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    const int64_t n = (int64_t)1 << 18;
    frcnn_tensor *x = tu_tensor(ctx, 1, n, 0, 0, 0);
    frcnn_tensor *y = tu_tensor(ctx, 1, n, 0, 0, 0);
    frcnn_tensor *m = tu_tensor(ctx, 1, n, 0, 0, 0);
    frcnn_tensor_fill(x, 1.0f);
    const float ps[3] = {0.5f, 0.1f, 0.8f};
    for (int k = 0; k < 3; k++) {
        frcnn_rng rng;
        frcnn_rng_seed(&rng, 77 + (uint64_t)k);
        assert_int_equal(frcnn_dropout_forward(ctx, &rng, ps[k], true, x, y, m), FRCNN_OK);
        const float *md = frcnn_tensor_data(m), *yd = frcnn_tensor_data(y);
        size_t kept = 0;
        double sum = 0.0;
        for (int64_t i = 0; i < n; i++) {
            kept += md[i] != 0.0f;
            sum += yd[i];
        }
        double frac = (double)kept / (double)n;
        double sd = sqrt((double)ps[k] * (1.0 - (double)ps[k]) / (double)n);
        assert_true(fabs(frac - (1.0 - (double)ps[k])) < 6.0 * sd);
        assert_true(fabs(sum / (double)n - 1.0) < 6.0 * sd / (1.0 - (double)ps[k]));
    }
    frcnn_tensor_free(x);
    frcnn_tensor_free(y);
    frcnn_tensor_free(m);
    frcnn_ctx_free(ctx);
}

static void test_dropout_backward_hand(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_tensor *m = tu_tensor(ctx, 1, 4, 0, 0, 0);
    frcnn_tensor *dy = tu_tensor(ctx, 1, 4, 0, 0, 0);
    frcnn_tensor *dx = tu_tensor(ctx, 1, 4, 0, 0, 0);
    const float mv[4] = {0.0f, 2.0f, 2.0f, 0.0f};
    const float dyv[4] = {1.0f, 2.0f, -3.0f, 4.0f};
    const float want1[4] = {1.0f, 5.0f, -5.0f, 1.0f};
    const float want2[4] = {1.0f, 9.0f, -11.0f, 1.0f};
    memcpy(frcnn_tensor_data(m), mv, sizeof mv);
    memcpy(frcnn_tensor_data(dy), dyv, sizeof dyv);
    frcnn_tensor_fill(dx, 1.0f);
    assert_int_equal(frcnn_dropout_backward(ctx, m, dy, dx), FRCNN_OK);
    tu_assert_identical("dropout dx", frcnn_tensor_data(dx), want1, 4);
    assert_int_equal(frcnn_dropout_backward(ctx, m, dy, dx), FRCNN_OK);
    tu_assert_identical("dropout dx twice", frcnn_tensor_data(dx), want2, 4);
    assert_int_equal(frcnn_dropout_backward(ctx, m, dy, NULL), FRCNN_OK);
    tu_assert_identical("dropout dx after NULL", frcnn_tensor_data(dx), want2, 4);
    frcnn_tensor_free(m);
    frcnn_tensor_free(dy);
    frcnn_tensor_free(dx);
    frcnn_ctx_free(ctx);
}

typedef struct dropout_loss {
    frcnn_ctx *ctx;
    uint64_t seed;
    float p;
    frcnn_tensor *x, *y, *m;
    const float *r;
} dropout_loss;

/* Reseeds each time, so every evaluation uses the same mask. */
static double dropout_loss_fn(void *state)
{
    dropout_loss *s = state;
    frcnn_rng rng;
    frcnn_rng_seed(&rng, s->seed);
    assert_int_equal(frcnn_dropout_forward(s->ctx, &rng, s->p, true, s->x, s->y, s->m), FRCNN_OK);
    return tu_dot(frcnn_tensor_data(s->y), s->r, frcnn_tensor_numel(s->y));
}

static void test_dropout_gradcheck(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_tensor *x = tu_tensor(ctx, 4, 1, 3, 5, 7);
    frcnn_tensor *y = tu_tensor(ctx, 4, 1, 3, 5, 7);
    frcnn_tensor *m = tu_tensor(ctx, 4, 1, 3, 5, 7);
    frcnn_tensor *r = tu_tensor(ctx, 4, 1, 3, 5, 7);
    frcnn_tensor *dx = tu_tensor(ctx, 4, 1, 3, 5, 7);
    const size_t n = frcnn_tensor_numel(x);
    tu_fill_uniform(frcnn_tensor_data(x), n, 21, -1.0f, 1.0f);
    tu_fill_uniform(frcnn_tensor_data(r), n, 22, -1.0f, 1.0f);
    dropout_loss s = {ctx, 99, 0.3f, x, y, m, frcnn_tensor_data(r)};
    (void)dropout_loss_fn(&s);
    assert_int_equal(frcnn_dropout_backward(ctx, m, r, dx), FRCNN_OK);
    tu_gradcheck("dropout dx", dropout_loss_fn, &s, frcnn_tensor_data(x), frcnn_tensor_data(dx), n, 1e-2f, 1e-3,
                 1e-2);
    frcnn_tensor_free(x);
    frcnn_tensor_free(y);
    frcnn_tensor_free(m);
    frcnn_tensor_free(r);
    frcnn_tensor_free(dx);
    frcnn_ctx_free(ctx);
}

static void test_dropout_bad_args(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_tensor *a = tu_tensor(ctx, 2, 2, 3, 0, 0);
    frcnn_tensor *b = tu_tensor(ctx, 2, 2, 3, 0, 0);
    frcnn_tensor *c = tu_tensor(ctx, 2, 2, 3, 0, 0);
    frcnn_tensor *d = tu_tensor(ctx, 2, 3, 2, 0, 0);
    frcnn_rng rng;
    frcnn_rng_seed(&rng, 1);
    uint8_t before[FRCNN_RNG_STATE_BYTES], after[FRCNN_RNG_STATE_BYTES];
    rng_bytes(&rng, before);

    assert_int_equal(frcnn_dropout_forward(NULL, &rng, 0.5f, true, a, b, c), FRCNN_ERR_INVALID_ARG);
    assert_int_equal(frcnn_dropout_backward(NULL, a, b, c), FRCNN_ERR_INVALID_ARG);
    const float bad_p[5] = {-0.1f, 1.0f, 1.5f, NAN, INFINITY};
    for (int i = 0; i < 5; i++) {
        tu_expect_error(ctx, frcnn_dropout_forward(ctx, &rng, bad_p[i], true, a, b, c), FRCNN_ERR_INVALID_ARG);
        tu_expect_error(ctx, frcnn_dropout_forward(ctx, &rng, bad_p[i], false, a, b, c), FRCNN_ERR_INVALID_ARG);
    }
    tu_expect_error(ctx, frcnn_dropout_forward(ctx, &rng, -INFINITY, true, a, b, c), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_dropout_forward(ctx, NULL, 0.5f, true, a, b, c), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_dropout_forward(ctx, &rng, 0.5f, true, NULL, b, c), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_dropout_forward(ctx, &rng, 0.5f, true, a, NULL, c), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_dropout_forward(ctx, &rng, 0.5f, true, a, b, NULL), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_dropout_forward(ctx, &rng, 0.5f, true, a, d, c), FRCNN_ERR_SHAPE);
    tu_expect_error(ctx, frcnn_dropout_forward(ctx, &rng, 0.5f, true, a, b, d), FRCNN_ERR_SHAPE);
    tu_expect_error(ctx, frcnn_dropout_forward(ctx, &rng, 0.5f, false, a, b, d), FRCNN_ERR_SHAPE);
    /* Failed calls do not consume random numbers. */
    rng_bytes(&rng, after);
    assert_memory_equal(before, after, FRCNN_RNG_STATE_BYTES);

    tu_expect_error(ctx, frcnn_dropout_backward(ctx, NULL, b, c), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_dropout_backward(ctx, a, NULL, c), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_dropout_backward(ctx, a, d, c), FRCNN_ERR_SHAPE);
    tu_expect_error(ctx, frcnn_dropout_backward(ctx, a, b, d), FRCNN_ERR_SHAPE);
    tu_expect_error(ctx, frcnn_dropout_backward(ctx, a, d, NULL), FRCNN_ERR_SHAPE);
    tu_expect_error(ctx, frcnn_dropout_backward(ctx, a, b, b), FRCNN_ERR_INVALID_ARG);
    frcnn_tensor_free(a);
    frcnn_tensor_free(b);
    frcnn_tensor_free(c);
    frcnn_tensor_free(d);
    frcnn_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_relu_forward_hand),
        cmocka_unit_test(test_relu_nan_propagates),
        cmocka_unit_test(test_relu_backward_hand),
        cmocka_unit_test(test_relu_gradcheck),
        cmocka_unit_test(test_relu_deterministic),
        cmocka_unit_test(test_relu_bad_args),
        cmocka_unit_test(test_dropout_identity_cases),
        cmocka_unit_test(test_dropout_forward_reference),
        cmocka_unit_test(test_dropout_threshold_edge),
        cmocka_unit_test(test_dropout_hand),
        cmocka_unit_test(test_dropout_seeds),
        cmocka_unit_test(test_dropout_keep_rate),
        cmocka_unit_test(test_dropout_backward_hand),
        cmocka_unit_test(test_dropout_gradcheck),
        cmocka_unit_test(test_dropout_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
