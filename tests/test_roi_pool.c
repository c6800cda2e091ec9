/* Tests of RoI max pooling (lib/kernels/roi_pool.c): hand-computed cases on a ramp image, a naive reference on
 * random RoIs, finite-difference gradients, accumulation, bad arguments and determinism. */
#include "testutil.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The ramp map: x[b][c][h][w] = 1000 b + 100 c + 10 h + w, so the maximum of a bin is its bottom-right cell. */
enum { RN = 2, RC = 2, RH = 6, RW = 7 };

static frcnn_tensor *ramp(frcnn_ctx *ctx)
{
    frcnn_tensor *x = tu_tensor(ctx, 4, RN, RC, RH, RW);
    float *d = frcnn_tensor_data(x);
    for (int b = 0; b < RN; b++)
        for (int c = 0; c < RC; c++)
            for (int h = 0; h < RH; h++)
                for (int w = 0; w < RW; w++)
                    *d++ = (float)(1000 * b + 100 * c + 10 * h + w);
    return x;
}

/* Pools one RoI over the ramp and compares y and argmax for channel 0 with the expected bins (row-major
 * ph x pw); channel 1 must be channel 0 + 100 wherever the bin is not empty. */
static void check_one(const float roi[5], int ph, int pw, float scale, const float *want_y,
                      const int32_t *want_arg)
{
    frcnn_ctx *ctx = tu_ctx();
    frcnn_tensor *x = ramp(ctx);
    frcnn_tensor *rois = tu_rois(ctx, roi, 1);
    frcnn_tensor *y = tu_tensor(ctx, 4, 1, RC, ph, pw);
    int32_t arg[2 * 9];
    frcnn_roi_pool_params p = {ph, pw, scale};
    assert_true(ph * pw <= 9);
    assert_int_equal(frcnn_roi_pool_forward(ctx, &p, x, rois, y, arg), FRCNN_OK);
    const float *yd = frcnn_tensor_data(y);
    tu_assert_close("y channel 0", yd, want_y, (size_t)(ph * pw), 0.0, 0.0);
    float want1[9];
    for (int i = 0; i < ph * pw; i++) {
        assert_int_equal(arg[i], want_arg[i]);
        assert_int_equal(arg[ph * pw + i], want_arg[i]);
        want1[i] = want_arg[i] >= 0 ? want_y[i] + 100.0f : 0.0f;
    }
    tu_assert_close("y channel 1", yd + ph * pw, want1, (size_t)(ph * pw), 0.0, 0.0);
    frcnn_tensor_free(y);
    frcnn_tensor_free(rois);
    frcnn_tensor_free(x);
    frcnn_ctx_free(ctx);
}

static void test_params_default(void **state)
{
    (void)state;
    frcnn_roi_pool_params p = frcnn_roi_pool_params_default();
    assert_int_equal(p.pooled_h, 7);
    assert_int_equal(p.pooled_w, 7);
    assert_true(p.spatial_scale == 0.0625f);
}

/* Corners (1,1)-(4,4) at scale 1: size 4, 2x2 bins of 2 cells: rows [1,3) [3,5), same columns. */
static void test_box_inside(void **state)
{
    (void)state;
    const float roi[5] = {0, 1, 1, 4, 4};
    const float y[4] = {22, 24, 42, 44};
    const int32_t a[4] = {2 * 7 + 2, 2 * 7 + 4, 4 * 7 + 2, 4 * 7 + 4};
    check_one(roi, 2, 2, 1.0f, y, a);
}

/* Corners (3,2)-(20,10) on the 6x7 map: width 18 (bin 9), height 9 (bin 4.5). Rows: [0+2, ceil 4.5 + 2) = [2,7)
 * clipped to [2,6); [floor 4.5 + 2, 9 + 2) = [6,11) clipped to [6,6), empty. Columns [3,12) -> [3,7) and
 * [12,21) -> [7,7), empty. Only bin (0,0) pools: its max is x[5][6] = 56. */
static void test_box_clipped(void **state)
{
    (void)state;
    const float roi[5] = {0, 3, 2, 20, 10};
    const float y[4] = {56, 0, 0, 0};
    const int32_t a[4] = {5 * 7 + 6, -1, -1, -1};
    check_one(roi, 2, 2, 1.0f, y, a);
}

/* A single-pixel box at (2,3) with 3x3 bins: size 1, bin 1/3; every bin is [floor(i/3), ceil((i+1)/3)) = [0,1)
 * (3 * float(1/3) rounds to exactly 1), so all nine repeat x[3][2] = 32. */
static void test_box_smaller_than_bin(void **state)
{
    (void)state;
    const float roi[5] = {0, 2, 3, 2, 3};
    const float y[9] = {32, 32, 32, 32, 32, 32, 32, 32, 32};
    const int32_t a[9] = {23, 23, 23, 23, 23, 23, 23, 23, 23};
    check_one(roi, 3, 3, 1.0f, y, a);
}

/* x2 < x1 and y2 < y1: the size is forced to 1, so the box is the single cell at its start (5,4): x[4][5] = 45. */
static void test_box_reversed(void **state)
{
    (void)state;
    const float roi[5] = {0, 5, 4, 1, 0};
    const float y[4] = {45, 45, 45, 45};
    const int32_t a[4] = {4 * 7 + 5, 4 * 7 + 5, 4 * 7 + 5, 4 * 7 + 5};
    check_one(roi, 2, 2, 1.0f, y, a);
}

/* Boxes entirely outside the map (beyond the far corner, and before the origin): every bin clips to empty. */
static void test_box_outside(void **state)
{
    (void)state;
    const float far[5] = {0, 20, 20, 30, 30};
    const float before[5] = {0, -10, -10, -5, -5};
    const float y[4] = {0, 0, 0, 0};
    const int32_t a[4] = {-1, -1, -1, -1};
    check_one(far, 2, 2, 1.0f, y, a);
    check_one(before, 2, 2, 1.0f, y, a);
}

/* Scale 1/16 with products exactly at .5: round() goes half away from zero, so x1 = 8 -> 0.5 -> 1,
 * y1 = 24 -> 1.5 -> 2, x2 = 40 -> 2.5 -> 3 (round-half-even would give 2), y2 = 56 -> 3.5 -> 4. One bin covering
 * rows [2,5), columns [1,4): max x[4][3] = 43. */
static void test_rounding_half_up(void **state)
{
    (void)state;
    const float roi[5] = {0, 8, 24, 40, 56};
    const float y[1] = {43};
    const int32_t a[1] = {4 * 7 + 3};
    check_one(roi, 1, 1, 1.0f / 16.0f, y, a);
}

/* Negative halves: -8/16 = -0.5 rounds to -1 (floor(x + 0.5) would give 0), 8/16 = 0.5 rounds to 1, so the box
 * is [-1, 1], size 3, 3x3 bins of one cell: the first row and column fall on -1 and are empty; the others are
 * x[0][0] = 0 (argmax 0, not an empty bin), x[0][1] = 1, x[1][0] = 10, x[1][1] = 11. */
static void test_rounding_negative_half(void **state)
{
    (void)state;
    const float roi[5] = {0, -8, -8, 8, 8};
    const float y[9] = {0, 0, 0, 0, 0, 1, 0, 10, 11};
    const int32_t a[9] = {-1, -1, -1, -1, 0, 1, -1, 7, 8};
    check_one(roi, 3, 3, 1.0f / 16.0f, y, a);
}

/* Batch image 1 at scale 1/16: corners round(16/16) = 1, round(16/16) = 1, round(79/16 = 4.9375) = 5,
 * round(63/16 = 3.9375) = 4. Width 5 (bin 2.5): columns [0,3) and [2,5) offset by 1 -> [1,4), [3,6), which
 * overlap; height 4 (bin 2): rows [1,3), [3,5). Values carry the 1000 of image 1. */
static void test_scale_sixteenth_second_image(void **state)
{
    (void)state;
    const float roi[5] = {1, 16, 16, 79, 63};
    const float y[4] = {1023, 1025, 1043, 1045};
    const int32_t a[4] = {2 * 7 + 3, 2 * 7 + 5, 4 * 7 + 3, 4 * 7 + 5};
    check_one(roi, 2, 2, 1.0f / 16.0f, y, a);
}

/* Several RoIs in one call, mixing images: the rows do not influence each other. */
static void test_several_rois(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_tensor *x = ramp(ctx);
    const float rows[3 * 5] = {1, 0, 0, 6, 5, 0, 1, 1, 4, 4, 1, 20, 20, 30, 30};
    frcnn_tensor *rois = tu_rois(ctx, rows, 3);
    frcnn_tensor *y = tu_tensor(ctx, 4, 3, RC, 1, 1);
    int32_t arg[3 * RC];
    frcnn_roi_pool_params p = {1, 1, 1.0f};
    assert_int_equal(frcnn_roi_pool_forward(ctx, &p, x, rois, y, arg), FRCNN_OK);
    const float want[3 * RC] = {1056, 1156, 44, 144, 0, 0};
    const int32_t want_arg[3 * RC] = {41, 41, 32, 32, -1, -1};
    tu_assert_close("y", frcnn_tensor_data(y), want, 3 * RC, 0.0, 0.0);
    for (int i = 0; i < 3 * RC; i++)
        assert_int_equal(arg[i], want_arg[i]);
    /* argmax is optional in inference */
    assert_int_equal(frcnn_roi_pool_forward(ctx, &p, x, rois, y, NULL), FRCNN_OK);
    tu_assert_close("y without argmax", frcnn_tensor_data(y), want, 3 * RC, 0.0, 0.0);
    frcnn_tensor_free(y);
    frcnn_tensor_free(rois);
    frcnn_tensor_free(x);
    frcnn_ctx_free(ctx);
}

/* Ties: a constant map pools to the first cell of each bin in row-major order. */
static void test_ties_first(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_tensor *x = tu_tensor(ctx, 4, 1, 1, 4, 4);
    frcnn_tensor_fill(x, -3.0f);
    const float row[5] = {0, 0, 0, 3, 3};
    frcnn_tensor *rois = tu_rois(ctx, row, 1);
    frcnn_tensor *y = tu_tensor(ctx, 4, 1, 1, 2, 2);
    int32_t arg[4];
    frcnn_roi_pool_params p = {2, 2, 1.0f};
    assert_int_equal(frcnn_roi_pool_forward(ctx, &p, x, rois, y, arg), FRCNN_OK);
    const float want[4] = {-3, -3, -3, -3};
    tu_assert_close("y", frcnn_tensor_data(y), want, 4, 0.0, 0.0);
    assert_int_equal(arg[0], 0);
    assert_int_equal(arg[1], 2);
    assert_int_equal(arg[2], 8);
    assert_int_equal(arg[3], 10);
    frcnn_tensor_free(y);
    frcnn_tensor_free(rois);
    frcnn_tensor_free(x);
    frcnn_ctx_free(ctx);
}

/* Caffe's quirk kept: the max starts at -FLT_MAX with a strict '>', so a bin holding only NaN or -inf outputs
 * -FLT_MAX with argmax -1 (and backward skips it); a NaN beside finite values is passed over. */
static void test_nonfinite_bin(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    const float v[4] = {NAN, -INFINITY, NAN, 2.0f};
    frcnn_tensor *x = tu_tensor(ctx, 4, 1, 1, 2, 2);
    memcpy(frcnn_tensor_data(x), v, sizeof v);
    const float row[5] = {0, 0, 0, 1, 1};
    frcnn_tensor *rois = tu_rois(ctx, row, 1);
    frcnn_tensor *y = tu_tensor(ctx, 4, 1, 1, 2, 1);
    int32_t arg[2];
    frcnn_roi_pool_params p = {2, 1, 1.0f};
    assert_int_equal(frcnn_roi_pool_forward(ctx, &p, x, rois, y, arg), FRCNN_OK);
    assert_true(frcnn_tensor_data(y)[0] == -FLT_MAX);
    assert_int_equal(arg[0], -1);
    assert_true(frcnn_tensor_data(y)[1] == 2.0f);
    assert_int_equal(arg[1], 3);
    frcnn_tensor_free(y);
    frcnn_tensor_free(rois);
    frcnn_tensor_free(x);
    frcnn_ctx_free(ctx);
}

/* ------------------------------------------------------------------------------------------------------------
 * The naive reference: for every output cell, scan the whole plane and keep the cells inside the bin. */

/* Half away from zero, in double where v + 0.5 is exact for every float v that matters here. */
static int ref_round(float v)
{
    double d = (double)v;
    return (int)(d < 0.0 ? -floor(-d + 0.5) : floor(d + 0.5));
}

static void ref_roi_pool(const float *x, int n, int c, int h, int w, const float *rois, int r, int ph, int pw,
                         float scale, float *y, int32_t *arg)
{
    (void)n;
    for (int i = 0; i < r; i++) {
        const float *roi = rois + 5 * i;
        int b = (int)roi[0];
        int x1 = ref_round(roi[1] * scale), y1 = ref_round(roi[2] * scale);
        int x2 = ref_round(roi[3] * scale), y2 = ref_round(roi[4] * scale);
        int rw = x2 - x1 + 1 > 1 ? x2 - x1 + 1 : 1;
        int rh = y2 - y1 + 1 > 1 ? y2 - y1 + 1 : 1;
        float bw = (float)rw / (float)pw, bh = (float)rh / (float)ph;
        for (int ch = 0; ch < c; ch++) {
            for (int u = 0; u < ph; u++) {
                for (int v = 0; v < pw; v++) {
                    int hs = (int)floorf((float)u * bh) + y1, he = (int)ceilf((float)(u + 1) * bh) + y1;
                    int ws = (int)floorf((float)v * bw) + x1, we = (int)ceilf((float)(v + 1) * bw) + x1;
                    float best = 0.0f;
                    int best_i = -1;
                    for (int hh = 0; hh < h; hh++) {
                        for (int ww = 0; ww < w; ww++) {
                            if (hh < hs || hh >= he || ww < ws || ww >= we)
                                continue;
                            float val = x[(((size_t)b * c + ch) * h + hh) * w + ww];
                            if (best_i < 0 || val > best) {
                                best = val;
                                best_i = hh * w + ww;
                            }
                        }
                    }
                    size_t o = (((size_t)i * c + ch) * ph + u) * pw + v;
                    y[o] = best;
                    arg[o] = best_i;
                }
            }
        }
    }
}

static void random_rois(float *rois, int r, int n, float img_h, float img_w, uint64_t seed)
{
    frcnn_rng rng;
    frcnn_rng_seed(&rng, seed);
    for (int i = 0; i < r; i++) {
        float *q = rois + 5 * i;
        q[0] = (float)frcnn_rng_below(&rng, (uint64_t)n);
        for (int k = 0; k < 4; k++) {
            float extent = k % 2 == 0 ? img_w : img_h;
            q[1 + k] = -0.25f * extent + 1.5f * extent * frcnn_rng_uniform(&rng);
            if (frcnn_rng_below(&rng, 4) == 0)
                q[1 + k] = floorf(q[1 + k]) + 0.5f; /* exact halves */
        }
        if (frcnn_rng_below(&rng, 5) != 0) { /* mostly well-formed boxes, some reversed */
            float t;
            if (q[1] > q[3]) { t = q[1]; q[1] = q[3]; q[3] = t; }
            if (q[2] > q[4]) { t = q[2]; q[2] = q[4]; q[4] = t; }
        }
    }
}

static void compare_with_reference(int n, int c, int h, int w, int r, int ph, int pw, float scale, uint64_t seed)
{
    frcnn_ctx *ctx = tu_ctx();
    frcnn_tensor *x = tu_tensor(ctx, 4, n, c, h, w);
    tu_fill_uniform(frcnn_tensor_data(x), frcnn_tensor_numel(x), seed, -5.0f, 5.0f);
    frcnn_tensor *rois = tu_tensor(ctx, 2, r, 5, 0, 0);
    random_rois(frcnn_tensor_data(rois), r, n, (float)h / scale, (float)w / scale, seed + 1);
    frcnn_tensor *y = tu_tensor(ctx, 4, r, c, ph, pw);
    size_t m = frcnn_tensor_numel(y);
    int32_t *arg = malloc(m * sizeof *arg);
    int32_t *ref_arg = malloc(m * sizeof *ref_arg);
    float *ref_y = malloc(m * sizeof *ref_y);
    assert_non_null(arg);
    assert_non_null(ref_arg);
    assert_non_null(ref_y);
    frcnn_roi_pool_params p = {ph, pw, scale};
    assert_int_equal(frcnn_roi_pool_forward(ctx, &p, x, rois, y, arg), FRCNN_OK);
    ref_roi_pool(frcnn_tensor_data(x), n, c, h, w, frcnn_tensor_data(rois), r, ph, pw, scale, ref_y, ref_arg);
    tu_assert_identical("y vs reference", frcnn_tensor_data(y), ref_y, m);
    size_t empty = 0;
    for (size_t i = 0; i < m; i++) {
        if (arg[i] != ref_arg[i]) {
            print_error("argmax[%zu]: %d vs reference %d\n", i, (int)arg[i], (int)ref_arg[i]);
            fail();
        }
        empty += arg[i] < 0;
    }
    assert_true(empty > 0 && empty < m); /* the random boxes exercise both kinds of bin */
    free(ref_y);
    free(ref_arg);
    free(arg);
    frcnn_tensor_free(y);
    frcnn_tensor_free(rois);
    frcnn_tensor_free(x);
    frcnn_ctx_free(ctx);
}

static void test_reference_random(void **state)
{
    (void)state;
    compare_with_reference(2, 3, 13, 17, 300, 7, 7, 1.0f / 16.0f, 11);
    compare_with_reference(3, 2, 9, 11, 300, 3, 5, 0.5f, 12);
    compare_with_reference(1, 2, 5, 6, 200, 4, 2, 1.0f, 13);
    compare_with_reference(2, 1, 20, 3, 200, 6, 1, 0.25f, 14);
}

/* ------------------------------------------------------------------------------------------------------------
 * Gradients. */

typedef struct grad_state {
    frcnn_ctx *ctx;
    frcnn_roi_pool_params p;
    frcnn_tensor *x, *rois, *y;
    const float *r; /* the loss is sum(y * r) */
} grad_state;

static double pool_loss(void *arg)
{
    grad_state *s = arg;
    if (frcnn_roi_pool_forward(s->ctx, &s->p, s->x, s->rois, s->y, NULL) != FRCNN_OK)
        return NAN;
    return tu_dot(frcnn_tensor_data(s->y), s->r, frcnn_tensor_numel(s->y));
}

/* Distinct input values 0.1 apart in a random order, so a +-0.01 step never changes which cell wins. */
static frcnn_tensor *distinct_input(frcnn_ctx *ctx, int n, int c, int h, int w, uint64_t seed)
{
    frcnn_tensor *x = tu_tensor(ctx, 4, n, c, h, w);
    size_t m = frcnn_tensor_numel(x);
    uint32_t *perm = malloc(m * sizeof *perm);
    assert_non_null(perm);
    for (size_t i = 0; i < m; i++)
        perm[i] = (uint32_t)i;
    frcnn_rng rng;
    frcnn_rng_seed(&rng, seed);
    frcnn_rng_shuffle(&rng, perm, m);
    float *d = frcnn_tensor_data(x);
    for (size_t i = 0; i < m; i++)
        d[i] = 0.1f * (float)perm[i] - 5.0f;
    free(perm);
    return x;
}

static void test_gradient(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    grad_state s = {ctx, {3, 2, 0.5f}, NULL, NULL, NULL, NULL};
    s.x = distinct_input(ctx, 2, 2, 6, 7, 21);
    const int r = 6;
    const float rows[6 * 5] = {
        0, 0, 0, 13, 11,  /* the whole image 0 */
        1, 2, 2, 9, 7,    /* inside image 1 */
        1, 4, 4, 40, 40,  /* over the border */
        0, 6, 6, 6, 6,    /* a single cell */
        0, 2, 2, 9, 7,    /* overlaps row 0 */
        1, 30, 30, 40, 40 /* outside: contributes nothing */
    };
    s.rois = tu_rois(ctx, rows, r);
    s.y = tu_tensor(ctx, 4, r, 2, 3, 2);
    size_t m = frcnn_tensor_numel(s.y);
    float dy[6 * 2 * 3 * 2];
    tu_fill_uniform(dy, m, 22, -1.0f, 1.0f);
    s.r = dy;
    frcnn_tensor *dyt = NULL;
    int64_t dims[4] = {r, 2, 3, 2};
    assert_int_equal(frcnn_tensor_wrap(ctx, dy, 4, dims, &dyt), FRCNN_OK);
    int32_t arg[6 * 2 * 3 * 2];
    assert_int_equal(frcnn_roi_pool_forward(ctx, &s.p, s.x, s.rois, s.y, arg), FRCNN_OK);
    frcnn_tensor *dx = tu_tensor(ctx, 4, 2, 2, 6, 7);
    assert_int_equal(frcnn_roi_pool_backward(ctx, &s.p, s.rois, dyt, arg, dx), FRCNN_OK);
    tu_gradcheck("roi_pool dx", pool_loss, &s, frcnn_tensor_data(s.x), frcnn_tensor_data(dx),
                 frcnn_tensor_numel(s.x), 1e-2f, 1e-4, 1e-3);
    frcnn_tensor_free(dx);
    frcnn_tensor_free(dyt);
    frcnn_tensor_free(s.y);
    frcnn_tensor_free(s.rois);
    frcnn_tensor_free(s.x);
    frcnn_ctx_free(ctx);
}

/* Backward accumulates: a second call doubles dx, a NULL dx is skipped, and two identical RoIs give twice the
 * gradient of one. On the ramp the gradient lands exactly on the bottom-right cells of the bins. */
static void test_backward_accumulates(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_tensor *x = ramp(ctx);
    const float rows[2 * 5] = {0, 1, 1, 4, 4, 0, 1, 1, 4, 4};
    frcnn_tensor *one = tu_rois(ctx, rows, 1);
    frcnn_tensor *two = tu_rois(ctx, rows, 2);
    frcnn_roi_pool_params p = {2, 2, 1.0f};
    frcnn_tensor *y1 = tu_tensor(ctx, 4, 1, RC, 2, 2), *y2 = tu_tensor(ctx, 4, 2, RC, 2, 2);
    frcnn_tensor *dy1 = tu_tensor(ctx, 4, 1, RC, 2, 2), *dy2 = tu_tensor(ctx, 4, 2, RC, 2, 2);
    int32_t a1[RC * 4], a2[2 * RC * 4];
    assert_int_equal(frcnn_roi_pool_forward(ctx, &p, x, one, y1, a1), FRCNN_OK);
    assert_int_equal(frcnn_roi_pool_forward(ctx, &p, x, two, y2, a2), FRCNN_OK);
    for (size_t i = 0; i < RC * 4; i++)
        frcnn_tensor_data(dy1)[i] = (float)(i + 1);
    for (size_t i = 0; i < 2 * RC * 4; i++)
        frcnn_tensor_data(dy2)[i] = (float)(i % (RC * 4) + 1);

    frcnn_tensor *dxa = tu_tensor(ctx, 4, RN, RC, RH, RW), *dxb = tu_tensor(ctx, 4, RN, RC, RH, RW);
    assert_int_equal(frcnn_roi_pool_backward(ctx, &p, one, dy1, a1, dxa), FRCNN_OK);
    const float *da = frcnn_tensor_data(dxa);
    /* channel 0: dy 1..4 at cells 16, 18, 30, 32; channel 1: dy 5..8 at the same cells of plane 1 */
    float want[RN * RC * RH * RW] = {0};
    const int cells[4] = {16, 18, 30, 32};
    for (int k = 0; k < 4; k++) {
        want[cells[k]] = (float)(k + 1);
        want[RH * RW + cells[k]] = (float)(k + 5);
    }
    tu_assert_close("dx once", da, want, RN * RC * RH * RW, 0.0, 0.0);
    assert_int_equal(frcnn_roi_pool_backward(ctx, &p, one, dy1, a1, dxa), FRCNN_OK);
    for (size_t i = 0; i < RN * RC * RH * RW; i++)
        want[i] *= 2.0f;
    tu_assert_close("dx twice", da, want, RN * RC * RH * RW, 0.0, 0.0);
    assert_int_equal(frcnn_roi_pool_backward(ctx, &p, one, dy1, a1, NULL), FRCNN_OK);

    assert_int_equal(frcnn_roi_pool_backward(ctx, &p, two, dy2, a2, dxb), FRCNN_OK);
    tu_assert_close("dx of two overlapping rois", frcnn_tensor_data(dxb), want, RN * RC * RH * RW, 0.0, 0.0);

    frcnn_tensor *list[] = {dxa, dxb, dy1, dy2, y1, y2, one, two, x};
    for (size_t i = 0; i < sizeof list / sizeof list[0]; i++)
        frcnn_tensor_free(list[i]);
    frcnn_ctx_free(ctx);
}

/* ------------------------------------------------------------------------------------------------------------
 * Bad arguments: the right status, a message, nothing written. */

static void test_bad_arguments(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_tensor *x = ramp(ctx);
    const float rows[2 * 5] = {0, 1, 1, 4, 4, 1, 0, 0, 6, 5};
    frcnn_tensor *rois = tu_rois(ctx, rows, 2);
    frcnn_tensor *y = tu_tensor(ctx, 4, 2, RC, 2, 2);
    frcnn_tensor *dx = tu_tensor(ctx, 4, RN, RC, RH, RW);
    frcnn_tensor *x3 = tu_tensor(ctx, 3, RC, RH, RW, 0);
    frcnn_tensor *rois4 = tu_tensor(ctx, 2, 2, 4, 0, 0);
    frcnn_tensor *rois1 = tu_tensor(ctx, 1, 10, 0, 0, 0);
    frcnn_tensor *y_bad = tu_tensor(ctx, 4, 2, RC, 3, 2);
    frcnn_tensor *y_bad_c = tu_tensor(ctx, 4, 2, RC + 1, 2, 2);
    frcnn_tensor *dx_bad = tu_tensor(ctx, 4, RN, RC + 1, RH, RW);
    int32_t arg[2 * RC * 4];
    frcnn_roi_pool_params p = {2, 2, 1.0f};

    assert_int_equal(frcnn_roi_pool_forward(NULL, &p, x, rois, y, arg), FRCNN_ERR_INVALID_ARG);
    assert_int_equal(frcnn_roi_pool_backward(NULL, &p, rois, y, arg, dx), FRCNN_ERR_INVALID_ARG);
    tu_expect_error_msg(ctx, frcnn_roi_pool_forward(ctx, NULL, x, rois, y, arg), FRCNN_ERR_INVALID_ARG, "params");
    tu_expect_error_msg(ctx, frcnn_roi_pool_forward(ctx, &p, NULL, rois, y, arg), FRCNN_ERR_INVALID_ARG, "x");
    tu_expect_error_msg(ctx, frcnn_roi_pool_forward(ctx, &p, x, NULL, y, arg), FRCNN_ERR_INVALID_ARG, "rois");
    tu_expect_error_msg(ctx, frcnn_roi_pool_forward(ctx, &p, x, rois, NULL, arg), FRCNN_ERR_INVALID_ARG, "y");
    tu_expect_error_msg(ctx, frcnn_roi_pool_forward(ctx, &p, x3, rois, y, arg), FRCNN_ERR_SHAPE, "x");
    tu_expect_error_msg(ctx, frcnn_roi_pool_forward(ctx, &p, x, rois4, y, arg), FRCNN_ERR_SHAPE, "(2, 4)");
    tu_expect_error_msg(ctx, frcnn_roi_pool_forward(ctx, &p, x, rois1, y, arg), FRCNN_ERR_SHAPE, "rois");
    tu_expect_error_msg(ctx, frcnn_roi_pool_forward(ctx, &p, x, rois, y_bad, arg), FRCNN_ERR_SHAPE, "(2, 2, 3, 2)");
    tu_expect_error_msg(ctx, frcnn_roi_pool_forward(ctx, &p, x, rois, y_bad_c, arg), FRCNN_ERR_SHAPE, "y");

    frcnn_roi_pool_params bad[] = {{0, 2, 1.0f}, {2, -1, 1.0f}, {2, 2, 0.0f}, {2, 2, -0.5f}, {2, 2, NAN},
                                   {2, 2, INFINITY}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tu_expect_error_msg(ctx, frcnn_roi_pool_forward(ctx, &bad[i], x, rois, y, arg), FRCNN_ERR_INVALID_ARG, NULL);
        tu_expect_error_msg(ctx, frcnn_roi_pool_backward(ctx, &bad[i], rois, y, arg, dx), FRCNN_ERR_INVALID_ARG, NULL);
    }

    /* Bad RoI rows: the message names row 1, and y is left untouched. */
    const float bad_rows[][5] = {{2, 0, 0, 1, 1},     {-1, 0, 0, 1, 1},        {0.5f, 0, 0, 1, 1},
                                 {NAN, 0, 0, 1, 1},   {0, NAN, 0, 1, 1},       {0, 0, 0, INFINITY, 1},
                                 {0, 0, -INFINITY, 1, 1}, {INFINITY, 0, 0, 1, 1}};
    for (size_t i = 0; i < sizeof bad_rows / sizeof bad_rows[0]; i++) {
        float two[10];
        memcpy(two, rows, 5 * sizeof(float));
        memcpy(two + 5, bad_rows[i], 5 * sizeof(float));
        frcnn_tensor *br = tu_rois(ctx, two, 2);
        frcnn_tensor_fill(y, 7.0f);
        tu_expect_error_msg(ctx, frcnn_roi_pool_forward(ctx, &p, x, br, y, arg), FRCNN_ERR_INVALID_ARG, "row 1");
        for (size_t k = 0; k < frcnn_tensor_numel(y); k++)
            assert_true(frcnn_tensor_data(y)[k] == 7.0f);
        frcnn_tensor_free(br);
    }

    /* Backward. */
    assert_int_equal(frcnn_roi_pool_forward(ctx, &p, x, rois, y, arg), FRCNN_OK);
    tu_expect_error_msg(ctx, frcnn_roi_pool_backward(ctx, &p, rois, y, NULL, dx), FRCNN_ERR_INVALID_ARG, "argmax");
    tu_expect_error_msg(ctx, frcnn_roi_pool_backward(ctx, &p, NULL, y, arg, dx), FRCNN_ERR_INVALID_ARG, "rois");
    tu_expect_error_msg(ctx, frcnn_roi_pool_backward(ctx, &p, rois, NULL, arg, dx), FRCNN_ERR_INVALID_ARG, "dy");
    tu_expect_error_msg(ctx, frcnn_roi_pool_backward(ctx, &p, rois, y_bad, arg, dx), FRCNN_ERR_SHAPE, "dy");
    tu_expect_error_msg(ctx, frcnn_roi_pool_backward(ctx, &p, rois, y, arg, dx_bad), FRCNN_ERR_SHAPE, "dx");
    tu_expect_error_msg(ctx, frcnn_roi_pool_backward(ctx, &p, rois, y, arg, x3), FRCNN_ERR_SHAPE, "dx");
    int32_t bad_arg[2 * RC * 4];
    memcpy(bad_arg, arg, sizeof arg);
    bad_arg[3] = RH * RW;
    tu_expect_error_msg(ctx, frcnn_roi_pool_backward(ctx, &p, rois, y, bad_arg, dx), FRCNN_ERR_INVALID_ARG, "argmax[3]");
    bad_arg[3] = -2;
    tu_expect_error_msg(ctx, frcnn_roi_pool_backward(ctx, &p, rois, y, bad_arg, dx), FRCNN_ERR_INVALID_ARG, "argmax[3]");
    /* batch index 1 is out of range for a one-image dx */
    frcnn_tensor *dx1 = tu_tensor(ctx, 4, 1, RC, RH, RW);
    tu_expect_error_msg(ctx, frcnn_roi_pool_backward(ctx, &p, rois, y, arg, dx1), FRCNN_ERR_INVALID_ARG, "row 1");
    for (size_t k = 0; k < frcnn_tensor_numel(dx); k++)
        assert_true(frcnn_tensor_data(dx)[k] == 0.0f);
    for (size_t k = 0; k < frcnn_tensor_numel(dx1); k++)
        assert_true(frcnn_tensor_data(dx1)[k] == 0.0f);

    frcnn_tensor *list[] = {dx1, dx_bad, y_bad_c, y_bad, rois1, rois4, x3, dx, y, rois, x};
    for (size_t i = 0; i < sizeof list / sizeof list[0]; i++)
        frcnn_tensor_free(list[i]);
    frcnn_ctx_free(ctx);
}

/* ------------------------------------------------------------------------------------------------------------
 * Determinism: the same call twice, and with 1 or 3 threads, gives the same bits. */

static void run_once(int threads, float *y_out, float *dx_out, size_t *ny, size_t *ndx)
{
    frcnn_ctx *ctx = tu_ctx();
    assert_int_equal(frcnn_ctx_set_threads(ctx, threads), FRCNN_OK);
    const int n = 2, c = 48, h = 12, w = 15, r = 64;
    frcnn_tensor *x = tu_tensor(ctx, 4, n, c, h, w);
    tu_fill_uniform(frcnn_tensor_data(x), frcnn_tensor_numel(x), 31, -1.0f, 1.0f);
    frcnn_tensor *rois = tu_tensor(ctx, 2, r, 5, 0, 0);
    random_rois(frcnn_tensor_data(rois), r, n, (float)h * 16.0f, (float)w * 16.0f, 32);
    frcnn_roi_pool_params p = frcnn_roi_pool_params_default();
    frcnn_tensor *y = tu_tensor(ctx, 4, r, c, 7, 7);
    int32_t *arg = malloc(frcnn_tensor_numel(y) * sizeof *arg);
    assert_non_null(arg);
    assert_int_equal(frcnn_roi_pool_forward(ctx, &p, x, rois, y, arg), FRCNN_OK);
    frcnn_tensor *dx = tu_tensor(ctx, 4, n, c, h, w);
    assert_int_equal(frcnn_roi_pool_backward(ctx, &p, rois, y, arg, dx), FRCNN_OK);
    *ny = frcnn_tensor_numel(y);
    *ndx = frcnn_tensor_numel(dx);
    memcpy(y_out, frcnn_tensor_data(y), *ny * sizeof(float));
    memcpy(dx_out, frcnn_tensor_data(dx), *ndx * sizeof(float));
    free(arg);
    frcnn_tensor_free(dx);
    frcnn_tensor_free(y);
    frcnn_tensor_free(rois);
    frcnn_tensor_free(x);
    frcnn_ctx_free(ctx);
}

static void test_determinism(void **state)
{
    (void)state;
    enum { NY = 64 * 48 * 49, NDX = 2 * 48 * 12 * 15 };
    float *y[3], *dx[3];
    for (int k = 0; k < 3; k++) {
        y[k] = malloc(NY * sizeof(float));
        dx[k] = malloc(NDX * sizeof(float));
        assert_non_null(y[k]);
        assert_non_null(dx[k]);
    }
    size_t ny, ndx;
    run_once(1, y[0], dx[0], &ny, &ndx);
    assert_int_equal(ny, NY);
    assert_int_equal(ndx, NDX);
    run_once(1, y[1], dx[1], &ny, &ndx);
    run_once(3, y[2], dx[2], &ny, &ndx);
    tu_assert_identical("y, same call twice", y[0], y[1], NY);
    tu_assert_identical("dx, same call twice", dx[0], dx[1], NDX);
    tu_assert_identical("y, 1 vs 3 threads", y[0], y[2], NY);
    tu_assert_identical("dx, 1 vs 3 threads", dx[0], dx[2], NDX);
    for (int k = 0; k < 3; k++) {
        free(y[k]);
        free(dx[k]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params_default),
        cmocka_unit_test(test_box_inside),
        cmocka_unit_test(test_box_clipped),
        cmocka_unit_test(test_box_smaller_than_bin),
        cmocka_unit_test(test_box_reversed),
        cmocka_unit_test(test_box_outside),
        cmocka_unit_test(test_rounding_half_up),
        cmocka_unit_test(test_rounding_negative_half),
        cmocka_unit_test(test_scale_sixteenth_second_image),
        cmocka_unit_test(test_several_rois),
        cmocka_unit_test(test_ties_first),
        cmocka_unit_test(test_nonfinite_bin),
        cmocka_unit_test(test_reference_random),
        cmocka_unit_test(test_gradient),
        cmocka_unit_test(test_backward_accumulates),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_determinism),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
