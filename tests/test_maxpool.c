/* Tests for max pooling (lib/kernels/maxpool.c): output sizes in floor and Caffe ceil mode, hand-computed
 * windows, a naive reference, gradient checks, accumulation, bad arguments and determinism. */
#include "testutil.h"

#include "../lib/kernels/maxpool_relu.h"

#include <math.h>
#include <string.h>

static frcnn_maxpool_params params(int k, int s, int pad, bool ceil_mode)
{
    frcnn_maxpool_params p = frcnn_maxpool_params_default();
    p.kernel_h = p.kernel_w = k;
    p.stride_h = p.stride_w = s;
    p.pad_h = p.pad_w = pad;
    p.ceil_mode = ceil_mode;
    return p;
}

/* The output (h, w) for an (h, w) input, or -1 when the call fails. */
static void out_hw(frcnn_ctx *ctx, const frcnn_maxpool_params *p, int64_t h, int64_t w, int64_t *oh, int64_t *ow)
{
    int64_t x[4] = {1, 1, h, w}, y[4] = {0, 0, 0, 0};
    frcnn_status st = frcnn_maxpool_output_shape(ctx, p, x, y);
    *oh = st == FRCNN_OK ? y[2] : -1;
    *ow = st == FRCNN_OK ? y[3] : -1;
}

static void test_params_default(void **state)
{
    (void)state;
    frcnn_maxpool_params p = frcnn_maxpool_params_default();
    assert_int_equal(p.kernel_h, 2);
    assert_int_equal(p.kernel_w, 2);
    assert_int_equal(p.stride_h, 2);
    assert_int_equal(p.stride_w, 2);
    assert_int_equal(p.pad_h, 0);
    assert_int_equal(p.pad_w, 0);
    assert_false(p.ceil_mode);
}

static void test_output_shape(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    int64_t oh, ow;
    frcnn_maxpool_params p;

    /* VGG-style 2x2 s2 on odd 7x9: floor drops the last row/column, ceil keeps a clipped window. */
    p = params(2, 2, 0, false);
    out_hw(ctx, &p, 7, 9, &oh, &ow);
    assert_true(oh == 3 && ow == 4);
    p = params(2, 2, 0, true);
    out_hw(ctx, &p, 7, 9, &oh, &ow);
    assert_true(oh == 4 && ow == 5);
    /* The py-faster-rcnn VGG16 sizes for a 600x1000 image: 600 -> 300 -> 150 -> 75 -> 38, 1000 -> ... -> 63. */
    int64_t h = 600, w = 1000;
    for (int i = 0; i < 4; i++)
        out_hw(ctx, &p, h, w, &h, &w);
    assert_true(h == 38 && w == 63);

    /* 3x3 s2 pad 1 on 7x9: (7 + 2 - 3) / 2 + 1 = 4, (9 + 2 - 3) / 2 + 1 = 5 in both modes. */
    p = params(3, 2, 1, false);
    out_hw(ctx, &p, 7, 9, &oh, &ow);
    assert_true(oh == 4 && ow == 5);
    p = params(3, 2, 1, true);
    out_hw(ctx, &p, 7, 9, &oh, &ow);
    assert_true(oh == 4 && ow == 5);
    /* 3x3 s2 pad 1 on 6x8: floor 5 / 2 + 1 = 3, ceil(2.5) + 1 = 4; 7 / 2 + 1 = 4, ceil(3.5) + 1 = 5. */
    p = params(3, 2, 1, false);
    out_hw(ctx, &p, 6, 8, &oh, &ow);
    assert_true(oh == 3 && ow == 4);
    p = params(3, 2, 1, true);
    out_hw(ctx, &p, 6, 8, &oh, &ow);
    assert_true(oh == 4 && ow == 5);

    /* Caffe's correction: 2x2 s2 pad 1 ceil on 5: ceil(5 / 2) + 1 = 4, but window 3 would start at 3*2 - 1 = 5,
     * inside the bottom padding, so 3 (PyTorch agrees). */
    p = params(2, 2, 1, true);
    out_hw(ctx, &p, 5, 5, &oh, &ow);
    assert_true(oh == 3 && ow == 3);
    p = params(2, 2, 1, false);
    out_hw(ctx, &p, 5, 5, &oh, &ow);
    assert_true(oh == 3 && ow == 3);

    /* Stride larger than the kernel, ceil mode, no padding: ceil(4 / 3) + 1 = 3, but the third window would
     * start at 6, past the input, so 2 (Caffe applies the correction only with padding and would read an empty
     * window here). */
    p = params(1, 3, 0, true);
    out_hw(ctx, &p, 5, 5, &oh, &ow);
    assert_true(oh == 2 && ow == 2);

    /* Kernel larger than the input: ceil(-1 / 2) + 1 = 1 in ceil mode, floor(-1 / 2) + 1 = 0 (an error) in floor
     * mode. */
    p = params(2, 2, 0, true);
    out_hw(ctx, &p, 1, 1, &oh, &ow);
    assert_true(oh == 1 && ow == 1);
    p = params(2, 2, 0, false);
    assert_int_equal(frcnn_maxpool_output_shape(ctx, &p, (int64_t[4]){1, 1, 1, 1}, (int64_t[4]){0, 0, 0, 0}),
                     FRCNN_ERR_INVALID_ARG);
    assert_true(strlen(frcnn_ctx_last_error(ctx)) > 0);

    /* Rectangular parameters and the batch/channel dimensions carried through. */
    p = params(3, 1, 0, false);
    p.kernel_w = 2;
    p.stride_w = 3;
    p.pad_w = 1;
    int64_t x[4] = {2, 5, 10, 11}, y[4];
    assert_int_equal(frcnn_maxpool_output_shape(ctx, &p, x, y), FRCNN_OK);
    assert_true(y[0] == 2 && y[1] == 5 && y[2] == 8 && y[3] == 4); /* (11 + 2 - 2) / 3 + 1 = 4 */
    frcnn_ctx_free(ctx);
}

static void test_forward_hand(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    /* 1x1x4x4, 2x2 s2. */
    const float in[16] = {
        1, 3, 2, 0,    //
        4, 2, 9, 9,    //
        -1, -2, 5, 6,  //
        -3, -4, 7, 6.5f,
    };
    const float want_y[4] = {4, 9, -1, 7};
    const int32_t want_a[4] = {4, 6, 8, 14}; /* the tie 9, 9 goes to the first */
    frcnn_tensor *x = tu_tensor(ctx, 4, 1, 1, 4, 4);
    frcnn_tensor *y = tu_tensor(ctx, 4, 1, 1, 2, 2);
    memcpy(frcnn_tensor_data(x), in, sizeof in);
    int32_t a[4];
    frcnn_maxpool_params p = frcnn_maxpool_params_default();
    assert_int_equal(frcnn_maxpool_forward(ctx, &p, x, y, a), FRCNN_OK);
    tu_assert_identical("maxpool 4x4 y", frcnn_tensor_data(y), want_y, 4);
    assert_memory_equal(a, want_a, sizeof a);
    /* argmax may be NULL. */
    frcnn_tensor_zero(y);
    assert_int_equal(frcnn_maxpool_forward(ctx, &p, x, y, NULL), FRCNN_OK);
    tu_assert_identical("maxpool 4x4 y without argmax", frcnn_tensor_data(y), want_y, 4);
    frcnn_tensor_free(x);
    frcnn_tensor_free(y);

    /* 1x2x3x3, 2x2 s2 ceil: the last row and column form clipped windows; the second channel is all equal, so
     * every window picks its first element. */
    const float in2[18] = {
        1, 2, 3,  //
        4, 5, 6,  //
        9, 8, 7,  //
        2, 2, 2,  //
        2, 2, 2,  //
        2, 2, 2,
    };
    const float want2_y[8] = {5, 6, 9, 7, 2, 2, 2, 2};
    const int32_t want2_a[8] = {4, 5, 6, 8, 0, 2, 6, 8};
    x = tu_tensor(ctx, 4, 1, 2, 3, 3);
    y = tu_tensor(ctx, 4, 1, 2, 2, 2);
    memcpy(frcnn_tensor_data(x), in2, sizeof in2);
    int32_t a2[8];
    p = params(2, 2, 0, true);
    assert_int_equal(frcnn_maxpool_forward(ctx, &p, x, y, a2), FRCNN_OK);
    tu_assert_identical("maxpool 3x3 ceil y", frcnn_tensor_data(y), want2_y, 8);
    assert_memory_equal(a2, want2_a, sizeof a2);
    frcnn_tensor_free(y);

    /* 3x3 s1 pad 1 on negative values: the padding never wins, corners see only 4 elements. */
    for (int i = 0; i < 9; i++)
        frcnn_tensor_data(x)[i] = -(float)(i + 1);
    for (int i = 9; i < 18; i++)
        frcnn_tensor_data(x)[i] = -(float)(18 - i);
    /* channel 0: -1 -2 -3 / -4 -5 -6 / -7 -8 -9;  channel 1: -9 -8 -7 / -6 -5 -4 / -3 -2 -1 */
    const float want3_y[18] = {-1, -1, -2, -1, -1, -2, -4, -4, -5, -5, -4, -4, -2, -1, -1, -2, -1, -1};
    const int32_t want3_a[18] = {0, 0, 1, 0, 0, 1, 3, 3, 4, 4, 5, 5, 7, 8, 8, 7, 8, 8};
    y = tu_tensor(ctx, 4, 1, 2, 3, 3);
    int32_t a3[18];
    p = params(3, 1, 1, false);
    assert_int_equal(frcnn_maxpool_forward(ctx, &p, x, y, a3), FRCNN_OK);
    tu_assert_identical("maxpool pad y", frcnn_tensor_data(y), want3_y, 18);
    assert_memory_equal(a3, want3_a, sizeof a3);
    frcnn_tensor_free(x);
    frcnn_tensor_free(y);
    frcnn_ctx_free(ctx);
}

static void test_forward_nonfinite(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    /* 1x1x2x6, 2x2 s2: windows {NaN first}, {NaN later}, {-inf only}. */
    const float in[12] = {NAN, 1, 1, 2, -INFINITY, -INFINITY, 0, 5, NAN, 3, -INFINITY, -INFINITY};
    frcnn_tensor *x = tu_tensor(ctx, 4, 1, 1, 2, 6);
    frcnn_tensor *y = tu_tensor(ctx, 4, 1, 1, 1, 3);
    memcpy(frcnn_tensor_data(x), in, sizeof in);
    int32_t a[3];
    frcnn_maxpool_params p = frcnn_maxpool_params_default();
    assert_int_equal(frcnn_maxpool_forward(ctx, &p, x, y, a), FRCNN_OK);
    const float *yd = frcnn_tensor_data(y);
    assert_true(isnan(yd[0]) && a[0] == 0);
    assert_true(isnan(yd[1]) && a[1] == 8);
    assert_true(isinf(yd[2]) && yd[2] < 0.0f && a[2] == 4);
    frcnn_tensor_free(x);
    frcnn_tensor_free(y);
    frcnn_ctx_free(ctx);
}

static void test_backward_hand(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    /* 3x3 s1 on 1x1x3x4 with overlapping windows: both outputs pick x[1][2] = 9, so it receives both. */
    const float in[12] = {0, 1, 2, 3, 4, 5, 9, 7, 8, 6, 1, 2};
    frcnn_tensor *x = tu_tensor(ctx, 4, 1, 1, 3, 4);
    frcnn_tensor *y = tu_tensor(ctx, 4, 1, 1, 1, 2);
    frcnn_tensor *dy = tu_tensor(ctx, 4, 1, 1, 1, 2);
    frcnn_tensor *dx = tu_tensor(ctx, 4, 1, 1, 3, 4);
    memcpy(frcnn_tensor_data(x), in, sizeof in);
    frcnn_tensor_data(dy)[0] = 0.5f;
    frcnn_tensor_data(dy)[1] = 2.0f;
    int32_t a[2];
    frcnn_maxpool_params p = params(3, 1, 0, false);
    assert_int_equal(frcnn_maxpool_forward(ctx, &p, x, y, a), FRCNN_OK);
    assert_true(a[0] == 6 && a[1] == 6);
    frcnn_tensor_fill(dx, 1.0f);
    assert_int_equal(frcnn_maxpool_backward(ctx, &p, dy, a, dx), FRCNN_OK);
    float want[12] = {1, 1, 1, 1, 1, 1, 3.5f, 1, 1, 1, 1, 1};
    tu_assert_identical("maxpool dx", frcnn_tensor_data(dx), want, 12);
    /* Accumulates. */
    assert_int_equal(frcnn_maxpool_backward(ctx, &p, dy, a, dx), FRCNN_OK);
    want[6] = 6.0f;
    tu_assert_identical("maxpool dx twice", frcnn_tensor_data(dx), want, 12);
    /* NULL dx: skipped. */
    assert_int_equal(frcnn_maxpool_backward(ctx, &p, dy, a, NULL), FRCNN_OK);
    tu_assert_identical("maxpool dx after NULL", frcnn_tensor_data(dx), want, 12);
    frcnn_tensor_free(x);
    frcnn_tensor_free(y);
    frcnn_tensor_free(dy);
    frcnn_tensor_free(dx);
    frcnn_ctx_free(ctx);
}

/* ------------------------------------------------------------------------------------ naive reference */

/* The output size written out as Caffe does it (float division, ceil/floor), plus the start-inside rule. */
static int64_t ref_pooled(int64_t size, int k, int s, int pad, bool ceil_mode)
{
    double q = (double)(size + 2 * pad - k) / (double)s;
    int64_t pooled = (int64_t)(ceil_mode ? ceil(q) : floor(q)) + 1;
    if ((pooled - 1) * s >= size + pad)
        pooled--;
    return pooled;
}

/* Visits every kernel offset of every window, skipping positions outside the input; the first maximum in
 * row-major order wins. */
static void ref_forward(const frcnn_maxpool_params *p, const float *x, int64_t planes, int64_t h, int64_t w,
                        float *y, int32_t *argmax, int64_t oh, int64_t ow)
{
    for (int64_t c = 0; c < planes; c++) {
        for (int64_t i = 0; i < oh; i++) {
            for (int64_t j = 0; j < ow; j++) {
                float best = 0.0f;
                int64_t best_i = -1;
                for (int ki = 0; ki < p->kernel_h; ki++) {
                    for (int kj = 0; kj < p->kernel_w; kj++) {
                        int64_t r = i * p->stride_h - p->pad_h + ki;
                        int64_t q = j * p->stride_w - p->pad_w + kj;
                        if (r < 0 || r >= h || q < 0 || q >= w)
                            continue;
                        float v = x[c * h * w + r * w + q];
                        if (best_i < 0 || v > best) {
                            best = v;
                            best_i = r * w + q;
                        }
                    }
                }
                y[(c * oh + i) * ow + j] = best;
                argmax[(c * oh + i) * ow + j] = (int32_t)best_i;
            }
        }
    }
}

typedef struct pool_case {
    int64_t n, c, h, w;
    int k, s, pad;
    bool ceil_mode;
} pool_case;

static const pool_case cases[] = {
    {2, 3, 7, 9, 2, 2, 0, true},   /* VGG pool, odd input, ceil */
    {2, 3, 7, 9, 2, 2, 0, false},  /* VGG pool, odd input, floor */
    {1, 2, 7, 9, 3, 2, 1, false},  /* 3x3 s2 pad 1 */
    {1, 2, 6, 8, 3, 2, 1, true},   /* 3x3 s2 pad 1 ceil, clipped last windows */
    {1, 3, 5, 7, 3, 1, 0, false},  /* overlapping windows */
    {1, 2, 5, 5, 2, 2, 1, true},   /* the start-inside correction */
    {2, 1, 8, 5, 1, 3, 0, true},   /* stride > kernel, ceil */
    {1, 1, 1, 1, 2, 2, 0, true},   /* kernel larger than the input */
    {1, 2, 11, 4, 5, 3, 2, true},  /* wide padding */
};

static void test_reference(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const pool_case *pc = &cases[ci];
        frcnn_maxpool_params p = params(pc->k, pc->s, pc->pad, pc->ceil_mode);
        int64_t oh = ref_pooled(pc->h, pc->k, pc->s, pc->pad, pc->ceil_mode);
        int64_t ow = ref_pooled(pc->w, pc->k, pc->s, pc->pad, pc->ceil_mode);
        int64_t got_h, got_w;
        out_hw(ctx, &p, pc->h, pc->w, &got_h, &got_w);
        assert_int_equal(got_h, oh);
        assert_int_equal(got_w, ow);
        frcnn_tensor *x = tu_tensor(ctx, 4, pc->n, pc->c, pc->h, pc->w);
        frcnn_tensor *y = tu_tensor(ctx, 4, pc->n, pc->c, oh, ow);
        frcnn_tensor *dy = tu_tensor(ctx, 4, pc->n, pc->c, oh, ow);
        frcnn_tensor *dx = tu_tensor(ctx, 4, pc->n, pc->c, pc->h, pc->w);
        size_t nx = frcnn_tensor_numel(x), ny = frcnn_tensor_numel(y);
        float *ry = test_malloc(ny * sizeof(float));
        float *rdx = test_calloc(nx, sizeof(float));
        int32_t *a = test_malloc(ny * sizeof(int32_t));
        int32_t *ra = test_malloc(ny * sizeof(int32_t));
        /* Few distinct values, so windows hold ties. */
        float *xd = frcnn_tensor_data(x);
        tu_fill_uniform(xd, nx, 100 + ci, 0.0f, 4.0f);
        for (size_t i = 0; i < nx; i++)
            xd[i] = floorf(xd[i]) - 2.0f;
        tu_fill_uniform(frcnn_tensor_data(dy), ny, 200 + ci, -1.0f, 1.0f);

        assert_int_equal(frcnn_maxpool_forward(ctx, &p, x, y, a), FRCNN_OK);
        ref_forward(&p, xd, pc->n * pc->c, pc->h, pc->w, ry, ra, oh, ow);
        tu_assert_identical("maxpool vs reference", frcnn_tensor_data(y), ry, ny);
        assert_memory_equal(a, ra, ny * sizeof(int32_t));

        assert_int_equal(frcnn_maxpool_backward(ctx, &p, dy, a, dx), FRCNN_OK);
        const float *dyd = frcnn_tensor_data(dy);
        for (int64_t plane = 0; plane < pc->n * pc->c; plane++)
            for (int64_t o = 0; o < oh * ow; o++)
                rdx[plane * pc->h * pc->w + ra[plane * oh * ow + o]] += dyd[plane * oh * ow + o];
        tu_assert_identical("maxpool dx vs reference", frcnn_tensor_data(dx), rdx, nx);

        test_free(ry);
        test_free(rdx);
        test_free(a);
        test_free(ra);
        frcnn_tensor_free(x);
        frcnn_tensor_free(y);
        frcnn_tensor_free(dy);
        frcnn_tensor_free(dx);
    }
    frcnn_ctx_free(ctx);
}

/* --------------------------------------------------------------------------------------- gradient check */

typedef struct pool_loss {
    frcnn_ctx *ctx;
    const frcnn_maxpool_params *p;
    frcnn_tensor *x, *y;
    const float *r;
} pool_loss;

static double pool_loss_fn(void *state)
{
    pool_loss *s = state;
    assert_int_equal(frcnn_maxpool_forward(s->ctx, s->p, s->x, s->y, NULL), FRCNN_OK);
    return tu_dot(frcnn_tensor_data(s->y), s->r, frcnn_tensor_numel(s->y));
}

/* x is a random permutation of 0 .. numel-1 times 0.1, shifted to be centred on 0: all values distinct by 0.1,
 * far more than the 2 * eps = 0.02 a central difference moves them, so no window's maximum changes. */
static void test_gradcheck(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const pool_case *pc = &cases[ci];
        frcnn_maxpool_params p = params(pc->k, pc->s, pc->pad, pc->ceil_mode);
        int64_t y_dims[4];
        assert_int_equal(frcnn_maxpool_output_shape(ctx, &p, (int64_t[4]){pc->n, pc->c, pc->h, pc->w}, y_dims),
                         FRCNN_OK);
        frcnn_tensor *x = tu_tensor(ctx, 4, pc->n, pc->c, pc->h, pc->w);
        frcnn_tensor *y = tu_tensor(ctx, 4, y_dims[0], y_dims[1], y_dims[2], y_dims[3]);
        frcnn_tensor *r = tu_tensor(ctx, 4, y_dims[0], y_dims[1], y_dims[2], y_dims[3]);
        frcnn_tensor *dx = tu_tensor(ctx, 4, pc->n, pc->c, pc->h, pc->w);
        size_t nx = frcnn_tensor_numel(x), ny = frcnn_tensor_numel(y);
        uint32_t *perm = test_malloc(nx * sizeof(uint32_t));
        int32_t *a = test_malloc(ny * sizeof(int32_t));
        for (size_t i = 0; i < nx; i++)
            perm[i] = (uint32_t)i;
        frcnn_rng rng;
        frcnn_rng_seed(&rng, 300 + ci);
        frcnn_rng_shuffle(&rng, perm, nx);
        float *xd = frcnn_tensor_data(x);
        for (size_t i = 0; i < nx; i++)
            xd[i] = 0.1f * ((float)perm[i] - 0.5f * (float)nx);
        tu_fill_uniform(frcnn_tensor_data(r), ny, 400 + ci, -1.0f, 1.0f);

        assert_int_equal(frcnn_maxpool_forward(ctx, &p, x, y, a), FRCNN_OK);
        assert_int_equal(frcnn_maxpool_backward(ctx, &p, r, a, dx), FRCNN_OK);
        pool_loss s = {ctx, &p, x, y, frcnn_tensor_data(r)};
        tu_gradcheck("maxpool dx", pool_loss_fn, &s, xd, frcnn_tensor_data(dx), nx, 1e-2f, 1e-3, 1e-2);

        test_free(perm);
        test_free(a);
        frcnn_tensor_free(x);
        frcnn_tensor_free(y);
        frcnn_tensor_free(r);
        frcnn_tensor_free(dx);
    }
    frcnn_ctx_free(ctx);
}

/* ------------------------------------------------------------------------------------------ bad arguments */

static void test_bad_args(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_maxpool_params p = frcnn_maxpool_params_default();
    frcnn_tensor *x = tu_tensor(ctx, 4, 1, 2, 4, 6);
    frcnn_tensor *y = tu_tensor(ctx, 4, 1, 2, 2, 3);
    frcnn_tensor *y_bad = tu_tensor(ctx, 4, 1, 2, 3, 2);
    frcnn_tensor *y_bad_c = tu_tensor(ctx, 4, 1, 3, 2, 3);
    frcnn_tensor *x3 = tu_tensor(ctx, 3, 2, 4, 6, 0);
    frcnn_tensor *y3 = tu_tensor(ctx, 3, 2, 2, 3, 0);
    int32_t a[12];
    int64_t xd[4] = {1, 2, 4, 6}, yd[4];

    assert_int_equal(frcnn_maxpool_output_shape(NULL, &p, xd, yd), FRCNN_ERR_INVALID_ARG);
    assert_int_equal(frcnn_maxpool_forward(NULL, &p, x, y, a), FRCNN_ERR_INVALID_ARG);
    assert_int_equal(frcnn_maxpool_backward(NULL, &p, y, a, x), FRCNN_ERR_INVALID_ARG);

    tu_expect_error(ctx, frcnn_maxpool_output_shape(ctx, NULL, xd, yd), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_maxpool_output_shape(ctx, &p, NULL, yd), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_maxpool_output_shape(ctx, &p, xd, NULL), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_maxpool_output_shape(ctx, &p, (int64_t[4]){1, 0, 4, 6}, yd), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_maxpool_output_shape(ctx, &p, (int64_t[4]){1, 2, -4, 6}, yd), FRCNN_ERR_INVALID_ARG);

    /* Bad parameters, through every entry point. */
    frcnn_maxpool_params bad[7];
    for (int i = 0; i < 7; i++)
        bad[i] = p;
    bad[0].kernel_h = 0;
    bad[1].kernel_w = -2;
    bad[2].stride_h = 0;
    bad[3].stride_w = -1;
    bad[4].pad_h = -1;
    bad[5].pad_w = 2; /* == kernel */
    bad[6] = params(3, 1, 5, false);
    for (int i = 0; i < 7; i++) {
        tu_expect_error(ctx, frcnn_maxpool_output_shape(ctx, &bad[i], xd, yd), FRCNN_ERR_INVALID_ARG);
        tu_expect_error(ctx, frcnn_maxpool_forward(ctx, &bad[i], x, y, a), FRCNN_ERR_INVALID_ARG);
        tu_expect_error(ctx, frcnn_maxpool_backward(ctx, &bad[i], y, a, x), FRCNN_ERR_INVALID_ARG);
    }
    /* An empty output: a 5x5 kernel on a 4x6 input in floor mode. */
    frcnn_maxpool_params big = params(5, 1, 0, false);
    tu_expect_error(ctx, frcnn_maxpool_output_shape(ctx, &big, xd, yd), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_maxpool_forward(ctx, &big, x, y, a), FRCNN_ERR_INVALID_ARG);

    tu_expect_error(ctx, frcnn_maxpool_forward(ctx, NULL, x, y, a), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_maxpool_forward(ctx, &p, NULL, y, a), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_maxpool_forward(ctx, &p, x, NULL, a), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_maxpool_forward(ctx, &p, x3, y, a), FRCNN_ERR_SHAPE);
    tu_expect_error(ctx, frcnn_maxpool_forward(ctx, &p, x, y3, a), FRCNN_ERR_SHAPE);
    tu_expect_error(ctx, frcnn_maxpool_forward(ctx, &p, x, y_bad, a), FRCNN_ERR_SHAPE);
    tu_expect_error(ctx, frcnn_maxpool_forward(ctx, &p, x, y_bad_c, a), FRCNN_ERR_SHAPE);
    /* The message names y and both shapes. */
    frcnn_maxpool_forward(ctx, &p, x, y_bad, a);
    assert_non_null(strstr(frcnn_ctx_last_error(ctx), "y has shape (1, 2, 3, 2)"));
    assert_non_null(strstr(frcnn_ctx_last_error(ctx), "(1, 2, 2, 3)"));
    assert_non_null(strstr(frcnn_ctx_last_error(ctx), "(1, 2, 4, 6)"));
    frcnn_ctx_clear_error(ctx);

    assert_int_equal(frcnn_maxpool_forward(ctx, &p, x, y, a), FRCNN_OK);
    frcnn_tensor *dx = tu_tensor(ctx, 4, 1, 2, 4, 6);
    tu_expect_error(ctx, frcnn_maxpool_backward(ctx, NULL, y, a, dx), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_maxpool_backward(ctx, &p, NULL, a, dx), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_maxpool_backward(ctx, &p, y, NULL, dx), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_maxpool_backward(ctx, &p, y, NULL, NULL), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_maxpool_backward(ctx, &p, y3, a, dx), FRCNN_ERR_SHAPE);
    tu_expect_error(ctx, frcnn_maxpool_backward(ctx, &p, y, a, x3), FRCNN_ERR_SHAPE);
    tu_expect_error(ctx, frcnn_maxpool_backward(ctx, &p, y_bad, a, dx), FRCNN_ERR_SHAPE);
    /* argmax outside the plane: rejected before dx is touched. */
    int32_t a_bad[12];
    memcpy(a_bad, a, sizeof a);
    a_bad[11] = 24;
    tu_expect_error(ctx, frcnn_maxpool_backward(ctx, &p, y, a_bad, dx), FRCNN_ERR_INVALID_ARG);
    a_bad[11] = -1;
    tu_expect_error(ctx, frcnn_maxpool_backward(ctx, &p, y, a_bad, dx), FRCNN_ERR_INVALID_ARG);
    const float zeros[24] = {0};
    tu_assert_identical("dx untouched", frcnn_tensor_data(dx), zeros, 24);

    /* A plane of 2^32 elements cannot be indexed by int32 argmax. The headers wrap a small buffer: the call
     * must fail on the shapes before reading or writing any data. */
    float dummy[4] = {0};
    frcnn_tensor *huge_x = NULL, *huge_y = NULL;
    assert_int_equal(frcnn_tensor_wrap(ctx, dummy, 4, (int64_t[4]){1, 1, 65536, 65536}, &huge_x), FRCNN_OK);
    assert_int_equal(frcnn_tensor_wrap(ctx, dummy, 4, (int64_t[4]){1, 1, 32768, 32768}, &huge_y), FRCNN_OK);
    tu_expect_error(ctx, frcnn_maxpool_forward(ctx, &p, huge_x, huge_y, a), FRCNN_ERR_OVERFLOW);
    tu_expect_error(ctx, frcnn_maxpool_backward(ctx, &p, huge_y, a, huge_x), FRCNN_ERR_OVERFLOW);

    frcnn_tensor_free(huge_x);
    frcnn_tensor_free(huge_y);
    frcnn_tensor_free(dx);
    frcnn_tensor_free(x);
    frcnn_tensor_free(y);
    frcnn_tensor_free(y_bad);
    frcnn_tensor_free(y_bad_c);
    frcnn_tensor_free(x3);
    frcnn_tensor_free(y3);
    frcnn_ctx_free(ctx);
}

/* ------------------------------------------------------------------------------------------ determinism */

/* Twice the same call, and 1 vs 2 threads on an input large enough to be split across threads: bit-identical
 * outputs, argmax and gradients. */
static void test_deterministic(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_maxpool_params p = params(3, 2, 1, true);
    frcnn_tensor *x = tu_tensor(ctx, 4, 2, 32, 63, 65);
    int64_t yd[4];
    assert_int_equal(frcnn_maxpool_output_shape(ctx, &p, (int64_t[4]){2, 32, 63, 65}, yd), FRCNN_OK);
    frcnn_tensor *y1 = tu_tensor(ctx, 4, yd[0], yd[1], yd[2], yd[3]);
    frcnn_tensor *y2 = tu_tensor(ctx, 4, yd[0], yd[1], yd[2], yd[3]);
    frcnn_tensor *dx1 = tu_tensor(ctx, 4, 2, 32, 63, 65);
    frcnn_tensor *dx2 = tu_tensor(ctx, 4, 2, 32, 63, 65);
    size_t nx = frcnn_tensor_numel(x), ny = frcnn_tensor_numel(y1);
    int32_t *a1 = test_malloc(ny * sizeof(int32_t));
    int32_t *a2 = test_malloc(ny * sizeof(int32_t));
    tu_fill_uniform(frcnn_tensor_data(x), nx, 8, -1.0f, 1.0f);

    assert_int_equal(frcnn_ctx_set_threads(ctx, 1), FRCNN_OK);
    assert_int_equal(frcnn_maxpool_forward(ctx, &p, x, y1, a1), FRCNN_OK);
    assert_int_equal(frcnn_maxpool_backward(ctx, &p, y1, a1, dx1), FRCNN_OK);
    assert_int_equal(frcnn_ctx_set_threads(ctx, 2), FRCNN_OK);
    assert_int_equal(frcnn_maxpool_forward(ctx, &p, x, y2, a2), FRCNN_OK);
    assert_int_equal(frcnn_maxpool_backward(ctx, &p, y2, a2, dx2), FRCNN_OK);
    tu_assert_identical("maxpool y 1 vs 2 threads", frcnn_tensor_data(y1), frcnn_tensor_data(y2), ny);
    assert_memory_equal(a1, a2, ny * sizeof(int32_t));
    tu_assert_identical("maxpool dx 1 vs 2 threads", frcnn_tensor_data(dx1), frcnn_tensor_data(dx2), nx);
    assert_int_equal(frcnn_maxpool_forward(ctx, &p, x, y2, a2), FRCNN_OK);
    tu_assert_identical("maxpool y twice", frcnn_tensor_data(y1), frcnn_tensor_data(y2), ny);

    test_free(a1);
    test_free(a2);
    frcnn_tensor_free(x);
    frcnn_tensor_free(y1);
    frcnn_tensor_free(y2);
    frcnn_tensor_free(dx1);
    frcnn_tensor_free(dx2);
    frcnn_ctx_free(ctx);
}

/* The backbone's fused ReLU + pool backward gives the bits of its three unfused steps (zero dx, scatter, ReLU
 * gate in place), for 2x2 pools in both modes on odd sizes and for overlapping windows; with negative windows,
 * NaN activations and NaN and -0 gradients; and overwrites whatever dx held. */
static void test_relu_fused_backward(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    const frcnn_maxpool_params ps[4] = {params(2, 2, 0, true), params(2, 2, 0, false), params(3, 2, 1, true),
                                        params(3, 1, 1, false)};
    for (int pi = 0; pi < 4; pi++) {
        const int64_t n = 2, c = 3, h = 13, w = 17;
        int64_t yd[4];
        assert_int_equal(frcnn_maxpool_output_shape(ctx, &ps[pi], (int64_t[4]){n, c, h, w}, yd), FRCNN_OK);
        frcnn_tensor *x = tu_tensor(ctx, 4, n, c, h, w), *dx = tu_tensor(ctx, 4, n, c, h, w);
        frcnn_tensor *fused = tu_tensor(ctx, 4, n, c, h, w);
        frcnn_tensor *y = tu_tensor(ctx, 4, yd[0], yd[1], yd[2], yd[3]), *dy = tu_tensor(ctx, 4, yd[0], yd[1], yd[2], yd[3]);
        size_t nx = frcnn_tensor_numel(x), ny = frcnn_tensor_numel(y);
        float *xd = frcnn_tensor_data(x), *dyd = frcnn_tensor_data(dy);
        tu_fill_uniform(xd, nx, 11 + (uint64_t)pi, -1.0f, 0.6f); /* some windows wholly negative */
        xd[5] = NAN;
        xd[nx / 2] = NAN;
        tu_fill_uniform(dyd, ny, 12 + (uint64_t)pi, -1.0f, 1.0f);
        dyd[1] = NAN;
        dyd[2] = -0.0f;
        tu_fill_uniform(frcnn_tensor_data(fused), nx, 13, 5.0f, 6.0f); /* garbage to be overwritten */
        int32_t *a = test_malloc(ny * sizeof(int32_t));

        assert_int_equal(frcnn_relu_forward(ctx, x, x), FRCNN_OK);
        assert_int_equal(frcnn_maxpool_forward(ctx, &ps[pi], x, y, a), FRCNN_OK);
        frcnn_tensor_zero(dx);
        assert_int_equal(frcnn_maxpool_backward(ctx, &ps[pi], dy, a, dx), FRCNN_OK);
        assert_int_equal(frcnn_relu_backward(ctx, x, dx, dx), FRCNN_OK);
        assert_int_equal(frcnn__maxpool_relu_backward(ctx, &ps[pi], y, dy, a, fused), FRCNN_OK);
        assert_memory_equal(frcnn_tensor_data(dx), frcnn_tensor_data(fused), nx * sizeof(float));

        a[3] = (int32_t)(h * w); /* bad arguments are refused before dx is touched */
        tu_expect_error_msg(ctx, frcnn__maxpool_relu_backward(ctx, &ps[pi], y, dy, a, fused), FRCNN_ERR_INVALID_ARG,
                            "argmax[3]");
        tu_expect_error_msg(ctx, frcnn__maxpool_relu_backward(ctx, &ps[pi], dy, y, NULL, fused),
                            FRCNN_ERR_INVALID_ARG, "argmax is NULL");
        tu_expect_error_msg(ctx, frcnn__maxpool_relu_backward(ctx, &ps[pi], y, dy, a, NULL), FRCNN_ERR_INVALID_ARG,
                            "dx is NULL");
        assert_memory_equal(frcnn_tensor_data(dx), frcnn_tensor_data(fused), nx * sizeof(float));
        test_free(a);
        frcnn_tensor_free(x);
        frcnn_tensor_free(dx);
        frcnn_tensor_free(fused);
        frcnn_tensor_free(y);
        frcnn_tensor_free(dy);
    }
    frcnn_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params_default),
        cmocka_unit_test(test_output_shape),
        cmocka_unit_test(test_forward_hand),
        cmocka_unit_test(test_forward_nonfinite),
        cmocka_unit_test(test_backward_hand),
        cmocka_unit_test(test_reference),
        cmocka_unit_test(test_gradcheck),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_relu_fused_backward),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
