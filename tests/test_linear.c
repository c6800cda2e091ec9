/* Tests for the fully connected kernel (lib/kernels/linear.c): hand-computed values, a naive double-precision
 * reference, gradient checks for x, w and b, accumulation, bad arguments and determinism. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_forward_backward_hand(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_tensor *x = tu_tensor(ctx, 2, 2, 3, 0, 0);
    frcnn_tensor *w = tu_tensor(ctx, 2, 2, 3, 0, 0);
    frcnn_tensor *b = tu_tensor(ctx, 1, 2, 0, 0, 0);
    frcnn_tensor *y = tu_tensor(ctx, 2, 2, 2, 0, 0);
    const float xv[6] = {1, 2, 3, 4, 5, 6};
    const float wv[6] = {1, 0, -1, 0.5f, 0.5f, 0.5f};
    const float bv[2] = {0.5f, -1};
    memcpy(frcnn_tensor_data(x), xv, sizeof xv);
    memcpy(frcnn_tensor_data(w), wv, sizeof wv);
    memcpy(frcnn_tensor_data(b), bv, sizeof bv);
    /* x w^T = [[1 - 3, 0.5 (1 + 2 + 3)], [4 - 6, 0.5 (4 + 5 + 6)]] = [[-2, 3], [-2, 7.5]] */
    const float want_y[4] = {-1.5f, 2.0f, -1.5f, 6.5f};
    const float want_y_nob[4] = {-2.0f, 3.0f, -2.0f, 7.5f};
    assert_int_equal(frcnn_linear_forward(ctx, x, w, b, y), FRCNN_OK);
    tu_assert_identical("linear y", frcnn_tensor_data(y), want_y, 4);
    assert_int_equal(frcnn_linear_forward(ctx, x, w, NULL, y), FRCNN_OK);
    tu_assert_identical("linear y without b", frcnn_tensor_data(y), want_y_nob, 4);

    frcnn_tensor *dy = tu_tensor(ctx, 2, 2, 2, 0, 0);
    frcnn_tensor *dx = tu_tensor(ctx, 2, 2, 3, 0, 0);
    frcnn_tensor *dw = tu_tensor(ctx, 2, 2, 3, 0, 0);
    frcnn_tensor *db = tu_tensor(ctx, 1, 2, 0, 0, 0);
    const float dyv[4] = {1, 2, 0, -1};
    memcpy(frcnn_tensor_data(dy), dyv, sizeof dyv);
    /* dx = dy w = [[1 + 1, 0 + 1, -1 + 1], [-0.5, -0.5, -0.5]]
     * dw = dy^T x = [[1, 2, 3], [2 - 4, 4 - 5, 6 - 6]]
     * db = [1 + 0, 2 - 1] */
    const float want_dx[6] = {2, 1, 0, -0.5f, -0.5f, -0.5f};
    const float want_dw[6] = {1, 2, 3, -2, -1, 0};
    const float want_db[2] = {1, 1};
    assert_int_equal(frcnn_linear_backward(ctx, x, w, dy, dx, dw, db), FRCNN_OK);
    tu_assert_identical("linear dx", frcnn_tensor_data(dx), want_dx, 6);
    tu_assert_identical("linear dw", frcnn_tensor_data(dw), want_dw, 6);
    tu_assert_identical("linear db", frcnn_tensor_data(db), want_db, 2);

    frcnn_tensor_free(x);
    frcnn_tensor_free(w);
    frcnn_tensor_free(b);
    frcnn_tensor_free(y);
    frcnn_tensor_free(dy);
    frcnn_tensor_free(dx);
    frcnn_tensor_free(dw);
    frcnn_tensor_free(db);
    frcnn_ctx_free(ctx);
}

/* ------------------------------------------------------------------------------------ naive reference */

typedef struct lin_case {
    int ndim;
    int64_t x_dims[4];
    int64_t out;
} lin_case;

static const lin_case cases[] = {
    {2, {3, 7, 0, 0}, 5},     /* odd sizes */
    {4, {3, 2, 3, 5}, 4},     /* a feature map, flattened */
    {3, {1, 5, 9, 0}, 1},     /* one row, one output */
    {2, {37, 300, 0, 0}, 65}, /* big enough for several BLAS blocks in k */
    {4, {5, 8, 7, 7}, 21},    /* roi_pool5 shape -> cls_score sized */
};

static int64_t case_in(const lin_case *lc)
{
    int64_t in = 1;
    for (int i = 1; i < lc->ndim; i++)
        in *= lc->x_dims[i];
    return in;
}

static frcnn_tensor *x_like(frcnn_ctx *ctx, const lin_case *lc)
{
    return tu_tensor(ctx, lc->ndim, lc->x_dims[0], lc->x_dims[1], lc->x_dims[2], lc->x_dims[3]);
}

/* y, dx, dw, db by triple loops in double; outputs rounded to float at the end. */
static void ref_linear(const float *x, const float *w, const float *b, const float *dy, int64_t n, int64_t in,
                       int64_t out, float *y, float *dx, float *dw, float *db)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < out; j++) {
            double s = b ? (double)b[j] : 0.0;
            for (int64_t k = 0; k < in; k++)
                s += (double)x[i * in + k] * (double)w[j * in + k];
            y[i * out + j] = (float)s;
        }
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < in; k++) {
            double s = 0.0;
            for (int64_t j = 0; j < out; j++)
                s += (double)dy[i * out + j] * (double)w[j * in + k];
            dx[i * in + k] = (float)s;
        }
    for (int64_t j = 0; j < out; j++)
        for (int64_t k = 0; k < in; k++) {
            double s = 0.0;
            for (int64_t i = 0; i < n; i++)
                s += (double)dy[i * out + j] * (double)x[i * in + k];
            dw[j * in + k] = (float)s;
        }
    for (int64_t j = 0; j < out; j++) {
        double s = 0.0;
        for (int64_t i = 0; i < n; i++)
            s += (double)dy[i * out + j];
        db[j] = (float)s;
    }
}

/* Values in [-1, 1): each result is a sum of at most a few hundred products of magnitude <= 1, whose float
 * rounding error is a few 1e-6 at worst (typically 1e-7), so atol 1e-5 with rtol 1e-5 is a tight check. */
static void test_reference(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const lin_case *lc = &cases[ci];
        const int64_t n = lc->x_dims[0], in = case_in(lc), out = lc->out;
        frcnn_tensor *x = x_like(ctx, lc), *dx = x_like(ctx, lc);
        frcnn_tensor *w = tu_tensor(ctx, 2, out, in, 0, 0), *dw = tu_tensor(ctx, 2, out, in, 0, 0);
        frcnn_tensor *b = tu_tensor(ctx, 1, out, 0, 0, 0), *db = tu_tensor(ctx, 1, out, 0, 0, 0);
        frcnn_tensor *y = tu_tensor(ctx, 2, n, out, 0, 0), *dy = tu_tensor(ctx, 2, n, out, 0, 0);
        tu_fill_uniform(frcnn_tensor_data(x), (size_t)(n * in), 10 + ci, -1.0f, 1.0f);
        tu_fill_uniform(frcnn_tensor_data(w), (size_t)(out * in), 20 + ci, -1.0f, 1.0f);
        tu_fill_uniform(frcnn_tensor_data(b), (size_t)out, 30 + ci, -1.0f, 1.0f);
        tu_fill_uniform(frcnn_tensor_data(dy), (size_t)(n * out), 40 + ci, -1.0f, 1.0f);
        float *ry = test_malloc((size_t)(n * out) * sizeof(float));
        float *rdx = test_malloc((size_t)(n * in) * sizeof(float));
        float *rdw = test_malloc((size_t)(out * in) * sizeof(float));
        float *rdb = test_malloc((size_t)out * sizeof(float));
        ref_linear(frcnn_tensor_data(x), frcnn_tensor_data(w), frcnn_tensor_data(b), frcnn_tensor_data(dy), n, in,
                   out, ry, rdx, rdw, rdb);

        assert_int_equal(frcnn_linear_forward(ctx, x, w, b, y), FRCNN_OK);
        tu_assert_close("linear y vs reference", frcnn_tensor_data(y), ry, (size_t)(n * out), 1e-5, 1e-5);
        assert_int_equal(frcnn_linear_backward(ctx, x, w, dy, dx, dw, db), FRCNN_OK);
        tu_assert_close("linear dx vs reference", frcnn_tensor_data(dx), rdx, (size_t)(n * in), 1e-5, 1e-5);
        tu_assert_close("linear dw vs reference", frcnn_tensor_data(dw), rdw, (size_t)(out * in), 1e-5, 1e-5);
        /* db is summed in double and rounded once, exactly like the reference. */
        tu_assert_identical("linear db vs reference", frcnn_tensor_data(db), rdb, (size_t)out);

        test_free(ry);
        test_free(rdx);
        test_free(rdw);
        test_free(rdb);
        frcnn_tensor_free(x);
        frcnn_tensor_free(dx);
        frcnn_tensor_free(w);
        frcnn_tensor_free(dw);
        frcnn_tensor_free(b);
        frcnn_tensor_free(db);
        frcnn_tensor_free(y);
        frcnn_tensor_free(dy);
    }
    frcnn_ctx_free(ctx);
}

/* --------------------------------------------------------------------------------------- gradient check */

typedef struct lin_loss {
    frcnn_ctx *ctx;
    frcnn_tensor *x, *w, *b, *y;
    const float *r;
} lin_loss;

static double lin_loss_fn(void *state)
{
    lin_loss *s = state;
    assert_int_equal(frcnn_linear_forward(s->ctx, s->x, s->w, s->b, s->y), FRCNN_OK);
    return tu_dot(frcnn_tensor_data(s->y), s->r, frcnn_tensor_numel(s->y));
}

/* The loss is linear in each parameter, so the central difference is exact up to float rounding of y (about
 * 1e-7 * |y| / eps); the default tolerances leave a wide margin. */
static void test_gradcheck(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    for (size_t ci = 0; ci < 3; ci++) {
        const lin_case *lc = &cases[ci];
        const int64_t n = lc->x_dims[0], in = case_in(lc), out = lc->out;
        frcnn_tensor *x = x_like(ctx, lc), *dx = x_like(ctx, lc);
        frcnn_tensor *w = tu_tensor(ctx, 2, out, in, 0, 0), *dw = tu_tensor(ctx, 2, out, in, 0, 0);
        frcnn_tensor *b = tu_tensor(ctx, 1, out, 0, 0, 0), *db = tu_tensor(ctx, 1, out, 0, 0, 0);
        frcnn_tensor *y = tu_tensor(ctx, 2, n, out, 0, 0), *r = tu_tensor(ctx, 2, n, out, 0, 0);
        tu_fill_uniform(frcnn_tensor_data(x), (size_t)(n * in), 50 + ci, -1.0f, 1.0f);
        tu_fill_uniform(frcnn_tensor_data(w), (size_t)(out * in), 60 + ci, -1.0f, 1.0f);
        tu_fill_uniform(frcnn_tensor_data(b), (size_t)out, 70 + ci, -1.0f, 1.0f);
        tu_fill_uniform(frcnn_tensor_data(r), (size_t)(n * out), 80 + ci, -1.0f, 1.0f);
        assert_int_equal(frcnn_linear_backward(ctx, x, w, r, dx, dw, db), FRCNN_OK);
        lin_loss s = {ctx, x, w, b, y, frcnn_tensor_data(r)};
        tu_gradcheck("linear dx", lin_loss_fn, &s, frcnn_tensor_data(x), frcnn_tensor_data(dx), (size_t)(n * in),
                     1e-2f, 1e-3, 1e-2);
        tu_gradcheck("linear dw", lin_loss_fn, &s, frcnn_tensor_data(w), frcnn_tensor_data(dw), (size_t)(out * in),
                     1e-2f, 1e-3, 1e-2);
        tu_gradcheck("linear db", lin_loss_fn, &s, frcnn_tensor_data(b), frcnn_tensor_data(db), (size_t)out, 1e-2f,
                     1e-3, 1e-2);
        frcnn_tensor_free(x);
        frcnn_tensor_free(dx);
        frcnn_tensor_free(w);
        frcnn_tensor_free(dw);
        frcnn_tensor_free(b);
        frcnn_tensor_free(db);
        frcnn_tensor_free(y);
        frcnn_tensor_free(r);
    }
    frcnn_ctx_free(ctx);
}

/* ------------------------------------------------------------------------------ accumulation and NULLs */

static void test_backward_accumulates(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    const lin_case *lc = &cases[1];
    const int64_t n = lc->x_dims[0], in = case_in(lc), out = lc->out;
    frcnn_tensor *x = x_like(ctx, lc), *dx1 = x_like(ctx, lc), *dx2 = x_like(ctx, lc);
    frcnn_tensor *w = tu_tensor(ctx, 2, out, in, 0, 0);
    frcnn_tensor *dw1 = tu_tensor(ctx, 2, out, in, 0, 0), *dw2 = tu_tensor(ctx, 2, out, in, 0, 0);
    frcnn_tensor *db1 = tu_tensor(ctx, 1, out, 0, 0, 0), *db2 = tu_tensor(ctx, 1, out, 0, 0, 0);
    frcnn_tensor *dy = tu_tensor(ctx, 2, n, out, 0, 0);
    tu_fill_uniform(frcnn_tensor_data(x), (size_t)(n * in), 1, -1.0f, 1.0f);
    tu_fill_uniform(frcnn_tensor_data(w), (size_t)(out * in), 2, -1.0f, 1.0f);
    tu_fill_uniform(frcnn_tensor_data(dy), (size_t)(n * out), 3, -1.0f, 1.0f);

    assert_int_equal(frcnn_linear_backward(ctx, x, w, dy, dx1, dw1, db1), FRCNN_OK);
    assert_int_equal(frcnn_linear_backward(ctx, x, w, dy, dx2, dw2, db2), FRCNN_OK);
    assert_int_equal(frcnn_linear_backward(ctx, x, w, dy, dx2, dw2, db2), FRCNN_OK);
    float *d = frcnn_tensor_data(dx1);
    for (size_t i = 0; i < frcnn_tensor_numel(dx1); i++)
        d[i] *= 2.0f;
    d = frcnn_tensor_data(dw1);
    for (size_t i = 0; i < frcnn_tensor_numel(dw1); i++)
        d[i] *= 2.0f;
    d = frcnn_tensor_data(db1);
    for (size_t i = 0; i < frcnn_tensor_numel(db1); i++)
        d[i] *= 2.0f;
    tu_assert_close("linear dx twice", frcnn_tensor_data(dx2), frcnn_tensor_data(dx1), frcnn_tensor_numel(dx1), 1e-6,
                    1e-6);
    tu_assert_close("linear dw twice", frcnn_tensor_data(dw2), frcnn_tensor_data(dw1), frcnn_tensor_numel(dw1), 1e-6,
                    1e-6);
    /* The column sums are added once, so twice is exactly double. */
    tu_assert_identical("linear db twice", frcnn_tensor_data(db2), frcnn_tensor_data(db1), (size_t)out);

    /* Each gradient alone: the others stay as they were. */
    frcnn_tensor_zero(dx2);
    frcnn_tensor_zero(dw2);
    frcnn_tensor_zero(db2);
    assert_int_equal(frcnn_linear_backward(ctx, x, w, dy, NULL, NULL, NULL), FRCNN_OK);
    assert_int_equal(frcnn_linear_backward(ctx, x, w, dy, NULL, dw2, NULL), FRCNN_OK);
    const float zeros[128] = {0};
    tu_assert_identical("dx untouched", frcnn_tensor_data(dx2), zeros, frcnn_tensor_numel(dx2));
    tu_assert_identical("db untouched", frcnn_tensor_data(db2), zeros, (size_t)out);
    assert_int_equal(frcnn_linear_backward(ctx, x, w, dy, NULL, NULL, db2), FRCNN_OK);
    assert_int_equal(frcnn_linear_backward(ctx, x, w, dy, dx2, NULL, NULL), FRCNN_OK);
    assert_int_equal(frcnn_linear_backward(ctx, x, w, dy, dx2, dw2, db2), FRCNN_OK);
    tu_assert_close("linear dx in pieces", frcnn_tensor_data(dx2), frcnn_tensor_data(dx1), frcnn_tensor_numel(dx1),
                    1e-6, 1e-6);
    tu_assert_close("linear dw in pieces", frcnn_tensor_data(dw2), frcnn_tensor_data(dw1), frcnn_tensor_numel(dw1),
                    1e-6, 1e-6);
    tu_assert_identical("linear db in pieces", frcnn_tensor_data(db2), frcnn_tensor_data(db1), (size_t)out);

    frcnn_tensor_free(x);
    frcnn_tensor_free(dx1);
    frcnn_tensor_free(dx2);
    frcnn_tensor_free(w);
    frcnn_tensor_free(dw1);
    frcnn_tensor_free(dw2);
    frcnn_tensor_free(db1);
    frcnn_tensor_free(db2);
    frcnn_tensor_free(dy);
    frcnn_ctx_free(ctx);
}

/* ------------------------------------------------------------------------------------------ bad arguments */

static void test_bad_args(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_tensor *x = tu_tensor(ctx, 2, 4, 20, 0, 0);
    frcnn_tensor *x4 = tu_tensor(ctx, 4, 4, 5, 2, 2);  /* the same in-features, as a map */
    frcnn_tensor *x1 = tu_tensor(ctx, 1, 20, 0, 0, 0); /* no batch dimension */
    frcnn_tensor *w = tu_tensor(ctx, 2, 10, 20, 0, 0);
    frcnn_tensor *w_bad = tu_tensor(ctx, 2, 10, 30, 0, 0);
    frcnn_tensor *w3 = tu_tensor(ctx, 3, 10, 20, 1, 0);
    frcnn_tensor *b = tu_tensor(ctx, 1, 10, 0, 0, 0);
    frcnn_tensor *b_bad = tu_tensor(ctx, 1, 11, 0, 0, 0);
    frcnn_tensor *b2 = tu_tensor(ctx, 2, 1, 10, 0, 0);
    frcnn_tensor *y = tu_tensor(ctx, 2, 4, 10, 0, 0);
    frcnn_tensor *y_bad = tu_tensor(ctx, 2, 5, 10, 0, 0);
    frcnn_tensor *y_bad2 = tu_tensor(ctx, 2, 4, 11, 0, 0);
    frcnn_tensor *y3 = tu_tensor(ctx, 3, 4, 10, 1, 0);
    frcnn_tensor *dx = tu_tensor(ctx, 2, 4, 20, 0, 0);
    frcnn_tensor *dw = tu_tensor(ctx, 2, 10, 20, 0, 0);
    frcnn_tensor *db = tu_tensor(ctx, 1, 10, 0, 0, 0);

    assert_int_equal(frcnn_linear_forward(NULL, x, w, b, y), FRCNN_ERR_INVALID_ARG);
    assert_int_equal(frcnn_linear_backward(NULL, x, w, y, dx, dw, db), FRCNN_ERR_INVALID_ARG);

    tu_expect_error(ctx, frcnn_linear_forward(ctx, NULL, w, b, y), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_linear_forward(ctx, x, NULL, b, y), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_linear_forward(ctx, x, w, b, NULL), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_linear_forward(ctx, x1, w, b, y), FRCNN_ERR_SHAPE);
    tu_expect_error(ctx, frcnn_linear_forward(ctx, x, w3, b, y), FRCNN_ERR_SHAPE);
    tu_expect_error(ctx, frcnn_linear_forward(ctx, x, w, b, y3), FRCNN_ERR_SHAPE);
    tu_expect_error(ctx, frcnn_linear_forward(ctx, x, w, b, y_bad), FRCNN_ERR_SHAPE);
    tu_expect_error(ctx, frcnn_linear_forward(ctx, x, w, b, y_bad2), FRCNN_ERR_SHAPE);
    tu_expect_error(ctx, frcnn_linear_forward(ctx, x, w, b_bad, y), FRCNN_ERR_SHAPE);
    tu_expect_error(ctx, frcnn_linear_forward(ctx, x, w, b2, y), FRCNN_ERR_SHAPE);
    /* The message names both tensors, both shapes and the in-features. */
    assert_int_equal(frcnn_linear_forward(ctx, x, w_bad, b, y), FRCNN_ERR_SHAPE);
    const char *msg = frcnn_ctx_last_error(ctx);
    assert_non_null(strstr(msg, "w (10, 30)"));
    assert_non_null(strstr(msg, "x (4, 20)"));
    assert_non_null(strstr(msg, "in-features 20 vs 30"));
    frcnn_ctx_clear_error(ctx);
    /* A 4-D x with the right in-features is fine. */
    assert_int_equal(frcnn_linear_forward(ctx, x4, w, b, y), FRCNN_OK);

    tu_expect_error(ctx, frcnn_linear_backward(ctx, NULL, w, y, dx, dw, db), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_linear_backward(ctx, x, NULL, y, dx, dw, db), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_linear_backward(ctx, x, w, NULL, dx, dw, db), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_linear_backward(ctx, x, w, NULL, NULL, NULL, NULL), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_linear_backward(ctx, x1, w, y, dx, dw, db), FRCNN_ERR_SHAPE);
    tu_expect_error(ctx, frcnn_linear_backward(ctx, x, w_bad, y, dx, dw, db), FRCNN_ERR_SHAPE);
    tu_expect_error(ctx, frcnn_linear_backward(ctx, x, w, y_bad, dx, dw, db), FRCNN_ERR_SHAPE);
    tu_expect_error(ctx, frcnn_linear_backward(ctx, x, w, y3, dx, dw, db), FRCNN_ERR_SHAPE);
    /* dx must have the shape of x, not just its element count. */
    tu_expect_error(ctx, frcnn_linear_backward(ctx, x4, w, y, dx, dw, db), FRCNN_ERR_SHAPE);
    tu_expect_error(ctx, frcnn_linear_backward(ctx, x, w, y, x4, dw, db), FRCNN_ERR_SHAPE);
    tu_expect_error(ctx, frcnn_linear_backward(ctx, x, w, y, dx, w_bad, db), FRCNN_ERR_SHAPE);
    tu_expect_error(ctx, frcnn_linear_backward(ctx, x, w, y, dx, dw, b_bad), FRCNN_ERR_SHAPE);
    tu_expect_error(ctx, frcnn_linear_backward(ctx, x, w, y, dx, dw, b2), FRCNN_ERR_SHAPE);
    /* Nothing was written by the failed calls. */
    const float zeros[200] = {0};
    tu_assert_identical("dx untouched", frcnn_tensor_data(dx), zeros, 80);
    tu_assert_identical("dw untouched", frcnn_tensor_data(dw), zeros, 200);
    tu_assert_identical("db untouched", frcnn_tensor_data(db), zeros, 10);

    frcnn_tensor *ts[] = {x, x4, x1, w, w_bad, w3, b, b_bad, b2, y, y_bad, y_bad2, y3, dx, dw, db};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        frcnn_tensor_free(ts[i]);
    frcnn_ctx_free(ctx);
}

/* ------------------------------------------------------------------------------------------ determinism */

static void test_deterministic(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    const lin_case *lc = &cases[3];
    const int64_t n = lc->x_dims[0], in = case_in(lc), out = lc->out;
    frcnn_tensor *x = x_like(ctx, lc);
    frcnn_tensor *w = tu_tensor(ctx, 2, out, in, 0, 0);
    frcnn_tensor *b = tu_tensor(ctx, 1, out, 0, 0, 0);
    frcnn_tensor *y1 = tu_tensor(ctx, 2, n, out, 0, 0), *y2 = tu_tensor(ctx, 2, n, out, 0, 0);
    frcnn_tensor *dx1 = x_like(ctx, lc), *dx2 = x_like(ctx, lc);
    frcnn_tensor *dw1 = tu_tensor(ctx, 2, out, in, 0, 0), *dw2 = tu_tensor(ctx, 2, out, in, 0, 0);
    frcnn_tensor *db1 = tu_tensor(ctx, 1, out, 0, 0, 0), *db2 = tu_tensor(ctx, 1, out, 0, 0, 0);
    tu_fill_uniform(frcnn_tensor_data(x), (size_t)(n * in), 4, -1.0f, 1.0f);
    tu_fill_uniform(frcnn_tensor_data(w), (size_t)(out * in), 5, -1.0f, 1.0f);
    tu_fill_uniform(frcnn_tensor_data(b), (size_t)out, 6, -1.0f, 1.0f);

    assert_int_equal(frcnn_linear_forward(ctx, x, w, b, y1), FRCNN_OK);
    assert_int_equal(frcnn_linear_forward(ctx, x, w, b, y2), FRCNN_OK);
    tu_assert_identical("linear y twice", frcnn_tensor_data(y1), frcnn_tensor_data(y2), (size_t)(n * out));
    assert_int_equal(frcnn_linear_backward(ctx, x, w, y1, dx1, dw1, db1), FRCNN_OK);
    assert_int_equal(frcnn_linear_backward(ctx, x, w, y1, dx2, dw2, db2), FRCNN_OK);
    tu_assert_identical("linear dx twice", frcnn_tensor_data(dx1), frcnn_tensor_data(dx2), (size_t)(n * in));
    tu_assert_identical("linear dw twice", frcnn_tensor_data(dw1), frcnn_tensor_data(dw2), (size_t)(out * in));
    tu_assert_identical("linear db twice", frcnn_tensor_data(db1), frcnn_tensor_data(db2), (size_t)out);

    frcnn_tensor *ts[] = {x, w, b, y1, y2, dx1, dx2, dw1, dw2, db1, db2};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        frcnn_tensor_free(ts[i]);
    frcnn_ctx_free(ctx);
}

/* Runs forward and backward of a (n, in) x (out, in)^T layer with a thread count; copies y, dx, dw out. */
static void run_threads(int threads, int n, int in, int out, float *y, float *dx, float *dw)
{
    frcnn_ctx *ctx = tu_ctx();
    assert_int_equal(frcnn_ctx_set_threads(ctx, threads), FRCNN_OK);
    frcnn_tensor *x = tu_tensor(ctx, 2, n, in, 0, 0), *w = tu_tensor(ctx, 2, out, in, 0, 0);
    frcnn_tensor *ty = tu_tensor(ctx, 2, n, out, 0, 0), *tdx = tu_tensor(ctx, 2, n, in, 0, 0);
    frcnn_tensor *tdw = tu_tensor(ctx, 2, out, in, 0, 0);
    tu_fill_uniform(frcnn_tensor_data(x), (size_t)n * (size_t)in, 14, -1.0f, 1.0f);
    tu_fill_uniform(frcnn_tensor_data(w), (size_t)out * (size_t)in, 15, -1.0f, 1.0f);
    assert_int_equal(frcnn_linear_forward(ctx, x, w, NULL, ty), FRCNN_OK);
    assert_int_equal(frcnn_linear_backward(ctx, x, w, ty, tdx, tdw, NULL), FRCNN_OK);
    memcpy(y, frcnn_tensor_data(ty), (size_t)n * (size_t)out * sizeof(float));
    memcpy(dx, frcnn_tensor_data(tdx), (size_t)n * (size_t)in * sizeof(float));
    memcpy(dw, frcnn_tensor_data(tdw), (size_t)out * (size_t)in * sizeof(float));
    frcnn_tensor *ts[] = {x, w, ty, tdx, tdw};
    for (size_t i = 0; i < 5; i++)
        frcnn_tensor_free(ts[i]);
    frcnn_ctx_free(ctx);
}

/* 1, 2, 3 and 4 threads on (128, 1000) x (1000, 1000)^T, a shape where bare OpenBLAS differs between thread
 * counts: bit-identical, with every OpenBLAS kernel (lib/kernels/gemm.h). */
static void test_thread_count(void **state)
{
    (void)state;
    enum { N = 128, IN = 1000, OUT = 1000, RUNS = 4 };
    float *y[RUNS], *dx[RUNS], *dw[RUNS];
    for (int t = 0; t < RUNS; t++) {
        y[t] = malloc((size_t)N * OUT * sizeof(float));
        dx[t] = malloc((size_t)N * IN * sizeof(float));
        dw[t] = malloc((size_t)OUT * IN * sizeof(float));
        run_threads(t + 1, N, IN, OUT, y[t], dx[t], dw[t]);
    }
    for (int t = 1; t < RUNS; t++) {
        char what[64];
        snprintf(what, sizeof what, "y, 1 vs %d threads", t + 1);
        tu_assert_identical(what, y[0], y[t], (size_t)N * OUT);
        snprintf(what, sizeof what, "dx, 1 vs %d threads", t + 1);
        tu_assert_identical(what, dx[0], dx[t], (size_t)N * IN);
        snprintf(what, sizeof what, "dw, 1 vs %d threads", t + 1);
        tu_assert_identical(what, dw[0], dw[t], (size_t)OUT * IN);
    }
    for (int t = 0; t < RUNS; t++) {
        free(y[t]);
        free(dx[t]);
        free(dw[t]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_backward_hand),
        cmocka_unit_test(test_reference),
        cmocka_unit_test(test_gradcheck),
        cmocka_unit_test(test_backward_accumulates),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_thread_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
