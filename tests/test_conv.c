/* conv2d: hand-computed cases, im2col + sgemm against the naive direct convolution, finite-difference gradients,
 * accumulation, determinism across runs and thread counts, and bad arguments. */
#include "testutil.h"

#include "../lib/kernels/conv_ref.h"

#include <stdlib.h>
#include <string.h>

typedef struct conv_case {
    int n, c, h, w, m, kh, kw, sh, sw, ph, pw;
} conv_case;

/* Owns everything one convolution needs. */
typedef struct conv_fixture {
    frcnn_ctx *ctx;
    frcnn_conv2d_params p;
    frcnn__conv_geom g;
    frcnn_tensor *x, *w, *b, *y, *dx, *dw, *db, *dy;
    void *ws;
    size_t ws_bytes;
    int m;
} conv_fixture;

static void fixture_init(conv_fixture *f, frcnn_ctx *ctx, const conv_case *k, uint64_t seed)
{
    memset(f, 0, sizeof *f);
    f->ctx = ctx;
    f->p = (frcnn_conv2d_params){k->sh, k->sw, k->ph, k->pw};
    int64_t xd[4] = {k->n, k->c, k->h, k->w}, wd[4] = {k->m, k->c, k->kh, k->kw}, yd[4];
    assert_int_equal(frcnn_conv2d_output_shape(ctx, &f->p, xd, wd, yd), FRCNN_OK);
    assert_int_equal(frcnn_conv2d_workspace_bytes(ctx, &f->p, xd, wd, &f->ws_bytes), FRCNN_OK);
    f->x = tu_tensor(ctx, 4, xd[0], xd[1], xd[2], xd[3]);
    f->dx = tu_tensor(ctx, 4, xd[0], xd[1], xd[2], xd[3]);
    f->w = tu_tensor(ctx, 4, wd[0], wd[1], wd[2], wd[3]);
    f->dw = tu_tensor(ctx, 4, wd[0], wd[1], wd[2], wd[3]);
    f->b = tu_tensor(ctx, 1, k->m, 0, 0, 0);
    f->db = tu_tensor(ctx, 1, k->m, 0, 0, 0);
    f->y = tu_tensor(ctx, 4, yd[0], yd[1], yd[2], yd[3]);
    f->dy = tu_tensor(ctx, 4, yd[0], yd[1], yd[2], yd[3]);
    f->ws = f->ws_bytes ? malloc(f->ws_bytes) : NULL;
    f->m = k->m;
    f->g = (frcnn__conv_geom){k->c, k->h, k->w, k->kh, k->kw, k->sh, k->sw, k->ph, k->pw, (int)yd[2], (int)yd[3]};
    tu_fill_uniform(frcnn_tensor_data(f->x), frcnn_tensor_numel(f->x), seed, -1.0f, 1.0f);
    tu_fill_uniform(frcnn_tensor_data(f->w), frcnn_tensor_numel(f->w), seed + 1, -0.5f, 0.5f);
    tu_fill_uniform(frcnn_tensor_data(f->b), frcnn_tensor_numel(f->b), seed + 2, -0.5f, 0.5f);
    tu_fill_uniform(frcnn_tensor_data(f->dy), frcnn_tensor_numel(f->dy), seed + 3, -1.0f, 1.0f);
}

static void fixture_free(conv_fixture *f)
{
    frcnn_tensor *all[] = {f->x, f->w, f->b, f->y, f->dx, f->dw, f->db, f->dy};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        frcnn_tensor_free(all[i]);
    free(f->ws);
}

static void forward(conv_fixture *f)
{
    frcnn_status st = frcnn_conv2d_forward(f->ctx, &f->p, f->x, f->w, f->b, f->y, f->ws, f->ws_bytes);
    if (st != FRCNN_OK)
        print_error("%s\n", frcnn_ctx_last_error(f->ctx));
    assert_int_equal(st, FRCNN_OK);
}

static void backward(conv_fixture *f)
{
    frcnn_status st = frcnn_conv2d_backward(f->ctx, &f->p, f->x, f->w, f->dy, f->dx, f->dw, f->db, f->ws,
                                            f->ws_bytes);
    if (st != FRCNN_OK)
        print_error("%s\n", frcnn_ctx_last_error(f->ctx));
    assert_int_equal(st, FRCNN_OK);
}

static void test_hand_computed(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    /* x = 1..9 in a 3x3 image, w = [[1, 0], [0, -1]], b = 0.5:
     * no padding:  y[i][j] = x[i][j] - x[i+1][j+1] + 0.5 = -4 + 0.5 everywhere. */
    float xv[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, wv[4] = {1, 0, 0, -1}, bv[1] = {0.5f}, yv[9];
    int64_t xd[4] = {1, 1, 3, 3}, wd[4] = {1, 1, 2, 2}, bd[1] = {1}, yd[4] = {1, 1, 2, 2};
    frcnn_tensor *x, *w, *b, *y;
    assert_int_equal(frcnn_tensor_wrap(ctx, xv, 4, xd, &x), FRCNN_OK);
    assert_int_equal(frcnn_tensor_wrap(ctx, wv, 4, wd, &w), FRCNN_OK);
    assert_int_equal(frcnn_tensor_wrap(ctx, bv, 1, bd, &b), FRCNN_OK);
    assert_int_equal(frcnn_tensor_wrap(ctx, yv, 4, yd, &y), FRCNN_OK);
    frcnn_conv2d_params p = frcnn_conv2d_params_default();
    float ws[64];
    assert_int_equal(frcnn_conv2d_forward(ctx, &p, x, w, b, y, ws, sizeof ws), FRCNN_OK);
    const float want[4] = {-3.5f, -3.5f, -3.5f, -3.5f};
    tu_assert_close("conv 2x2 valid", yv, want, 4, 0, 0);

    /* padding 1, stride 2: output 2x2 at input positions (-1,-1), (-1,1), (1,-1), (1,1):
     * y = x[top-left] - x[bottom-right] + 0.5 with zeros outside. */
    p.pad_h = p.pad_w = 1;
    p.stride_h = p.stride_w = 2;
    int64_t yd2[4] = {1, 1, 2, 2};
    assert_int_equal(frcnn_tensor_reshape(ctx, y, 4, yd2), FRCNN_OK);
    assert_int_equal(frcnn_conv2d_forward(ctx, &p, x, w, b, y, ws, sizeof ws), FRCNN_OK);
    const float want2[4] = {0 - 1 + 0.5f, 0 - 3 + 0.5f, 0 - 7 + 0.5f, 5 - 9 + 0.5f};
    tu_assert_close("conv 2x2 pad 1 stride 2", yv, want2, 4, 0, 0);
    frcnn_tensor_free(x);
    frcnn_tensor_free(w);
    frcnn_tensor_free(b);
    frcnn_tensor_free(y);
    frcnn_ctx_free(ctx);
}

static const conv_case shapes[] = {
    {2, 3, 7, 9, 4, 3, 3, 1, 1, 1, 1},     /* odd sizes, VGG-style 3x3 pad 1 */
    {1, 3, 9, 8, 5, 3, 3, 2, 2, 1, 1},     /* stride 2 */
    {2, 6, 5, 7, 3, 1, 1, 1, 1, 0, 0},     /* 1x1 direct path */
    {1, 4, 7, 7, 3, 1, 1, 2, 2, 0, 0},     /* 1x1 with stride: im2col path */
    {1, 2, 8, 6, 3, 5, 3, 2, 1, 2, 0},     /* rectangular kernel, mixed stride and padding */
    {1, 3, 4, 4, 2, 3, 3, 1, 1, 3, 3},     /* padding larger than the input margin */
    {1, 64, 70, 70, 8, 3, 3, 1, 1, 1, 1},  /* row-folded (c*kw >= 48, stride_h 1), two blocks of output rows */
    {2, 16, 9, 11, 5, 3, 3, 1, 2, 1, 1},   /* row-folded with horizontal stride 2 */
    {1, 20, 13, 10, 4, 5, 3, 1, 1, 2, 0},  /* row-folded, 5x3 kernel, padding only vertically */
    {1, 24, 8, 9, 3, 2, 3, 1, 1, 0, 1},    /* row-folded, even kernel height */
    {1, 24, 4, 4, 3, 3, 3, 1, 1, 3, 3},    /* row-folded, padding larger than the input margin */
    {1, 16, 9, 7, 3, 3, 3, 2, 1, 1, 1},    /* vertical stride 2: im2col path despite 48 columns per row */
    {1, 32, 5, 5, 16, 3, 3, 1, 1, 1, 1},   /* fewer than 3 output pixels per filter: im2col path */
};

static void test_matches_naive(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        conv_fixture f;
        fixture_init(&f, ctx, &shapes[s], 100 + s);
        const conv_case *k = &shapes[s];
        forward(&f);
        size_t ny = frcnn_tensor_numel(f.y), nx = frcnn_tensor_numel(f.x), nw = frcnn_tensor_numel(f.w);
        float *ref_y = calloc(ny, sizeof(float)), *ref_dx = calloc(nx, sizeof(float));
        float *ref_dw = calloc(nw, sizeof(float)), *ref_db = calloc((size_t)k->m, sizeof(float));
        frcnn__conv2d_forward_ref(&f.g, k->n, k->m, frcnn_tensor_data(f.x), frcnn_tensor_data(f.w),
                                  frcnn_tensor_data(f.b), ref_y);
        tu_assert_close("forward vs naive", frcnn_tensor_data(f.y), ref_y, ny, 1e-5, 1e-4);
        /* without a bias (the sgemm then reads no row of ones) */
        float *zero_b = calloc((size_t)k->m, sizeof(float));
        frcnn__conv2d_forward_ref(&f.g, k->n, k->m, frcnn_tensor_data(f.x), frcnn_tensor_data(f.w), zero_b, ref_y);
        assert_int_equal(frcnn_conv2d_forward(ctx, &f.p, f.x, f.w, NULL, f.y, f.ws, f.ws_bytes), FRCNN_OK);
        tu_assert_close("forward without bias vs naive", frcnn_tensor_data(f.y), ref_y, ny, 1e-5, 1e-4);
        free(zero_b);
        backward(&f);
        frcnn__conv2d_backward_ref(&f.g, k->n, k->m, frcnn_tensor_data(f.x), frcnn_tensor_data(f.w),
                                   frcnn_tensor_data(f.dy), ref_dx, ref_dw, ref_db);
        tu_assert_close("dx vs naive", frcnn_tensor_data(f.dx), ref_dx, nx, 1e-4, 1e-4);
        tu_assert_close("dw vs naive", frcnn_tensor_data(f.dw), ref_dw, nw, 1e-3, 1e-4);
        tu_assert_close("db vs naive", frcnn_tensor_data(f.db), ref_db, (size_t)k->m, 1e-3, 1e-4);
        free(ref_y);
        free(ref_dx);
        free(ref_dw);
        free(ref_db);
        fixture_free(&f);
    }
    frcnn_ctx_free(ctx);
}

/* The scalar loss sum(y * r) where r is the fixture's dy: its gradient is exactly what backward computes. */
static double conv_loss(void *state)
{
    conv_fixture *f = state;
    forward(f);
    return tu_dot(frcnn_tensor_data(f->y), frcnn_tensor_data(f->dy), frcnn_tensor_numel(f->y));
}

static void test_gradients(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    const conv_case cases[] = {
        {2, 2, 5, 6, 3, 3, 3, 2, 2, 1, 1},
        {1, 3, 4, 5, 2, 1, 1, 1, 1, 0, 0},
        {1, 2, 7, 5, 2, 3, 2, 1, 2, 0, 1},
        {1, 16, 4, 5, 2, 3, 3, 1, 1, 1, 1}, /* row-folded */
    };
    for (size_t s = 0; s < sizeof cases / sizeof cases[0]; s++) {
        conv_fixture f;
        fixture_init(&f, ctx, &cases[s], 7 + s);
        backward(&f);
        /* The loss is linear in each argument: a large step is exact up to float rounding. */
        tu_gradcheck("conv dx", conv_loss, &f, frcnn_tensor_data(f.x), frcnn_tensor_data(f.dx),
                     frcnn_tensor_numel(f.x), 1e-2f, 1e-3, 1e-3);
        tu_gradcheck("conv dw", conv_loss, &f, frcnn_tensor_data(f.w), frcnn_tensor_data(f.dw),
                     frcnn_tensor_numel(f.w), 1e-2f, 1e-3, 1e-3);
        tu_gradcheck("conv db", conv_loss, &f, frcnn_tensor_data(f.b), frcnn_tensor_data(f.db),
                     frcnn_tensor_numel(f.b), 1e-2f, 1e-3, 1e-3);
        fixture_free(&f);
    }
    frcnn_ctx_free(ctx);
}

static void test_backward_accumulates_and_skips_null(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    conv_fixture f;
    fixture_init(&f, ctx, &shapes[0], 3);
    backward(&f);
    size_t nx = frcnn_tensor_numel(f.dx), nw = frcnn_tensor_numel(f.dw);
    float *dx1 = malloc(nx * sizeof(float)), *dw1 = malloc(nw * sizeof(float));
    memcpy(dx1, frcnn_tensor_data(f.dx), nx * sizeof(float));
    memcpy(dw1, frcnn_tensor_data(f.dw), nw * sizeof(float));
    backward(&f);
    for (size_t i = 0; i < nx; i++)
        dx1[i] *= 2.0f;
    for (size_t i = 0; i < nw; i++)
        dw1[i] *= 2.0f;
    tu_assert_close("dx after two backward calls", frcnn_tensor_data(f.dx), dx1, nx, 1e-5, 1e-5);
    tu_assert_close("dw after two backward calls", frcnn_tensor_data(f.dw), dw1, nw, 1e-5, 1e-5);

    /* Only dw asked: dx and db untouched. */
    frcnn_tensor_zero(f.dx);
    frcnn_tensor_zero(f.db);
    assert_int_equal(frcnn_conv2d_backward(ctx, &f.p, f.x, f.w, f.dy, NULL, f.dw, NULL, f.ws, f.ws_bytes), FRCNN_OK);
    for (size_t i = 0; i < nx; i++)
        assert_true(frcnn_tensor_data(f.dx)[i] == 0.0f);
    free(dx1);
    free(dw1);
    fixture_free(&f);
    frcnn_ctx_free(ctx);
}

/* Runs forward + backward with a thread count and copies the results out. */
static void run_with_threads(const conv_case *k, int threads, float **y, float **dx, float **dw)
{
    frcnn_ctx *ctx = tu_ctx();
    assert_int_equal(frcnn_ctx_set_threads(ctx, threads), FRCNN_OK);
    conv_fixture f;
    fixture_init(&f, ctx, k, 42);
    forward(&f);
    backward(&f);
    size_t ny = frcnn_tensor_numel(f.y), nx = frcnn_tensor_numel(f.x), nw = frcnn_tensor_numel(f.w);
    *y = malloc(ny * sizeof(float));
    *dx = malloc(nx * sizeof(float));
    *dw = malloc(nw * sizeof(float));
    memcpy(*y, frcnn_tensor_data(f.y), ny * sizeof(float));
    memcpy(*dx, frcnn_tensor_data(f.dx), nx * sizeof(float));
    memcpy(*dw, frcnn_tensor_data(f.dw), nw * sizeof(float));
    fixture_free(&f);
    frcnn_ctx_free(ctx);
}

/* Bit-identical across repeated runs and across 1 and 2 threads, with every OpenBLAS kernel. */
static void check_thread_independence(const conv_case *kc);

static void test_deterministic_across_runs_and_threads(void **state)
{
    (void)state;
    /* VGG-like, and awkward sizes: k = 61 * 9 = 549 and n = 37 * 53 = 1961 are not multiples of 32, where
     * OpenBLAS's own threads would round differently for 1 and 2 threads (see lib/kernels/gemm.h). */
    const conv_case cases[] = {{2, 64, 40, 52, 96, 3, 3, 1, 1, 1, 1}, {1, 61, 37, 53, 40, 3, 3, 1, 1, 1, 1},
                               {1, 600, 9, 11, 24, 1, 1, 1, 1, 0, 0}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        check_thread_independence(&cases[c]);
}

static void check_thread_independence(const conv_case *kc)
{
    const conv_case k = *kc;
    float *y1, *dx1, *dw1, *y2, *dx2, *dw2, *y3, *dx3, *dw3;
    run_with_threads(&k, 1, &y1, &dx1, &dw1);
    run_with_threads(&k, 2, &y2, &dx2, &dw2);
    run_with_threads(&k, 2, &y3, &dx3, &dw3);
    conv_fixture probe;
    frcnn_ctx *ctx = tu_ctx();
    fixture_init(&probe, ctx, &k, 1);
    size_t ny = frcnn_tensor_numel(probe.y), nx = frcnn_tensor_numel(probe.x), nw = frcnn_tensor_numel(probe.w);
    fixture_free(&probe);
    frcnn_ctx_free(ctx);
    tu_assert_identical("y, two runs", y2, y3, ny);
    tu_assert_identical("dx, two runs", dx2, dx3, nx);
    tu_assert_identical("dw, two runs", dw2, dw3, nw);
    /* Every product is the same OpenBLAS calls whatever the thread count (lib/kernels/gemm.h), with every kernel. */
    tu_assert_identical("y, 1 vs 2 threads", y1, y2, ny);
    tu_assert_identical("dx, 1 vs 2 threads", dx1, dx2, nx);
    tu_assert_identical("dw, 1 vs 2 threads", dw1, dw2, nw);
    float *all[] = {y1, dx1, dw1, y2, dx2, dw2, y3, dx3, dw3};
    for (size_t i = 0; i < 9; i++)
        free(all[i]);
}

/* A workspace sized for a layer's largest input serves every smaller one (the model sizes it once, for its plan):
 * the size never decreases as the input grows, across the row-folded path's block rounding (VGG16's conv1_2 at
 * widths 600-1000) and across the switch between the folded and the im2col path (512 filters, few pixels). */
static void test_workspace_grows_with_input(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    const struct {
        int c, m, kh, kw, sh, sw, ph, pw, h_fixed, w_fixed;
    } layers[] = {
        {64, 64, 3, 3, 1, 1, 1, 1, 600, 1000}, {512, 512, 3, 3, 1, 1, 1, 1, 50, 64}, {3, 64, 3, 3, 1, 1, 1, 1, 64, 64},
        {32, 16, 5, 3, 1, 2, 2, 1, 300, 300},
    };
    for (size_t l = 0; l < sizeof layers / sizeof layers[0]; l++) {
        frcnn_conv2d_params p = {layers[l].sh, layers[l].sw, layers[l].ph, layers[l].pw};
        int64_t wd[4] = {layers[l].m, layers[l].c, layers[l].kh, layers[l].kw};
        for (int dim = 2; dim <= 3; dim++) {
            size_t prev = 0;
            int end = dim == 2 ? layers[l].h_fixed : layers[l].w_fixed;
            for (int v = 8; v <= end; v++) {
                int64_t xd[4] = {1, layers[l].c, dim == 2 ? v : layers[l].h_fixed, dim == 3 ? v : layers[l].w_fixed};
                size_t bytes;
                assert_int_equal(frcnn_conv2d_workspace_bytes(ctx, &p, xd, wd, &bytes), FRCNN_OK);
                if (bytes < prev)
                    print_error("layer %zu: %lld x %lld needs %zu bytes, less than %zu for one %s less\n", l,
                                (long long)xd[2], (long long)xd[3], bytes, prev, dim == 2 ? "row" : "column");
                assert_true(bytes >= prev);
                prev = bytes;
            }
        }
    }
    frcnn_ctx_free(ctx);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    conv_fixture f;
    fixture_init(&f, ctx, &shapes[0], 1);
    frcnn_conv2d_params p = f.p;
    assert_int_equal(frcnn_conv2d_forward(NULL, &p, f.x, f.w, f.b, f.y, f.ws, f.ws_bytes), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_conv2d_forward(ctx, NULL, f.x, f.w, f.b, f.y, f.ws, f.ws_bytes), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_conv2d_forward(ctx, &p, NULL, f.w, f.b, f.y, f.ws, f.ws_bytes), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_conv2d_forward(ctx, &p, f.x, f.w, f.b, NULL, f.ws, f.ws_bytes), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_conv2d_forward(ctx, &p, f.x, f.w, f.b, f.y, NULL, 0), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_conv2d_forward(ctx, &p, f.x, f.w, f.b, f.y, f.ws, f.ws_bytes - 4), FRCNN_ERR_INVALID_ARG);
    /* y of the wrong shape, bias of the wrong length, w with the wrong channel count. */
    tu_expect_error(ctx, frcnn_conv2d_forward(ctx, &p, f.x, f.w, f.b, f.dx, f.ws, f.ws_bytes), FRCNN_ERR_SHAPE);
    tu_expect_error(ctx, frcnn_conv2d_forward(ctx, &p, f.x, f.w, f.x, f.y, f.ws, f.ws_bytes), FRCNN_ERR_SHAPE);
    tu_expect_error(ctx, frcnn_conv2d_forward(ctx, &p, f.x, f.x, f.b, f.y, f.ws, f.ws_bytes), FRCNN_ERR_SHAPE);
    tu_expect_error(ctx, frcnn_conv2d_backward(ctx, &p, f.x, f.w, f.dy, f.dw, NULL, NULL, f.ws, f.ws_bytes),
                 FRCNN_ERR_SHAPE);
    p.stride_h = 0;
    tu_expect_error(ctx, frcnn_conv2d_forward(ctx, &p, f.x, f.w, f.b, f.y, f.ws, f.ws_bytes), FRCNN_ERR_INVALID_ARG);
    p = f.p;
    p.pad_w = -1;
    tu_expect_error(ctx, frcnn_conv2d_forward(ctx, &p, f.x, f.w, f.b, f.y, f.ws, f.ws_bytes), FRCNN_ERR_INVALID_ARG);
    p = f.p;
    int64_t y_dims[4];
    size_t bytes;
    const int64_t tiny[4] = {1, 3, 2, 2}, big_w[4] = {4, 3, 5, 5}, zero[4] = {1, 0, 4, 4},
                  huge[4] = {1, 3, INT32_MAX, INT32_MAX}, neg[4] = {1, 3, -4, 4};
    tu_expect_error(ctx, frcnn_conv2d_output_shape(ctx, &p, tiny, big_w, y_dims), FRCNN_ERR_SHAPE);
    tu_expect_error(ctx, frcnn_conv2d_output_shape(ctx, &p, zero, big_w, y_dims), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_conv2d_output_shape(ctx, &p, neg, big_w, y_dims), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_conv2d_workspace_bytes(ctx, &p, huge, big_w, &bytes), FRCNN_ERR_OVERFLOW);
    fixture_free(&f);
    frcnn_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_computed),
        cmocka_unit_test(test_matches_naive),
        cmocka_unit_test(test_gradients),
        cmocka_unit_test(test_backward_accumulates_and_skips_null),
        cmocka_unit_test(test_deterministic_across_runs_and_threads),
        cmocka_unit_test(test_workspace_grows_with_input),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests_name("conv2d", tests, NULL, NULL);
}
