/* Anchors: the default base anchors are exactly py-faster-rcnn's nine classic ones, other shapes match
 * generate_anchors.py (values from its arithmetic, half-to-even rounding included), the continuous convention's
 * are torchvision's AnchorGenerator cell anchors, the grid order and shifts, and bad parameters. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void test_default_params(void **state)
{
    (void)state;
    frcnn_anchor_params p = frcnn_anchor_params_default();
    assert_true(p.base_size == 16.0f);
    assert_int_equal(p.n_ratios, 3);
    assert_int_equal(p.n_scales, 3);
    assert_true(p.ratios[0] == 0.5f && p.ratios[1] == 1.0f && p.ratios[2] == 2.0f);
    assert_true(p.scales[0] == 8.0f && p.scales[1] == 16.0f && p.scales[2] == 32.0f);
}

static void test_classic_nine(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_anchor_params p = frcnn_anchor_params_default();
    /* py-faster-rcnn generate_anchors() output, ratio-major then scale. */
    const float want[9 * 4] = {
        -84, -40, 99, 55,     -176, -88, 191, 103,   -360, -184, 375, 199,
        -56, -56, 71, 71,     -120, -120, 135, 135,  -248, -248, 263, 263,
        -36, -80, 51, 95,     -80, -168, 95, 183,    -168, -344, 183, 359,
    };
    float out[9 * 4];
    assert_int_equal(frcnn_anchors_base(ctx, &p, out), FRCNN_OK);
    tu_assert_identical("the nine classic anchors", out, want, 9 * 4);
    frcnn_ctx_free(ctx);
}

static void test_other_shapes(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_anchor_params p = frcnn_anchor_params_default();
    float out[4 * 4];

    /* One ratio, one scale: the base box itself. */
    p.n_ratios = 1;
    p.ratios[0] = 1.0f;
    p.n_scales = 1;
    p.scales[0] = 1.0f;
    assert_int_equal(frcnn_anchors_base(ctx, &p, out), FRCNN_OK);
    const float unit[4] = {0, 0, 15, 15};
    tu_assert_identical("base box", out, unit, 4);

    /* Half-to-even: base 17.5, ratio 0.5 -> ws = rint(sqrt(612.5)) = 25, hs = rint(12.5) = 12 (not 13);
     * centre 8.25. Values from generate_anchors' arithmetic (Python's round() is half-to-even too). */
    p.base_size = 17.5f;
    p.ratios[0] = 0.5f;
    p.n_scales = 2;
    p.scales[0] = 1.0f;
    p.scales[1] = 2.0f;
    assert_int_equal(frcnn_anchors_base(ctx, &p, out), FRCNN_OK);
    const float even[8] = {-3.75f, 2.75f, 20.25f, 13.75f, -16.25f, -3.25f, 32.75f, 19.75f};
    tu_assert_identical("half-to-even rounding", out, even, 8);

    /* Ratios 0.3 and 3 at scale 1.5: (29 x 9) and (9 x 27) before scaling. */
    p.base_size = 16.0f;
    p.n_ratios = 2;
    p.ratios[0] = 0.3f;
    p.ratios[1] = 3.0f;
    p.n_scales = 1;
    p.scales[0] = 1.5f;
    assert_int_equal(frcnn_anchors_base(ctx, &p, out), FRCNN_OK);
    const float odd[8] = {-13.75f, 1.25f, 28.75f, 13.75f, 1.25f, -12.25f, 13.75f, 27.25f};
    tu_assert_identical("ratios 0.3 and 3, scale 1.5", out, odd, 8);
    frcnn_ctx_free(ctx);
}

static void test_grid(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    const float base[2 * 4] = {-8, -4, 23, 19, 0.5f, 1.5f, 2.5f, 3.5f};
    enum { H = 3, W = 5, A = 2, S = 16 };
    float out[H * W * A * 4];
    assert_int_equal(frcnn_anchors_grid(ctx, base, A, H, W, S, out), FRCNN_OK);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (int a = 0; a < A; a++) {
                const float *o = out + ((y * W + x) * A + a) * 4;
                const float want[4] = {base[4 * a] + (float)(x * S), base[4 * a + 1] + (float)(y * S),
                                       base[4 * a + 2] + (float)(x * S), base[4 * a + 3] + (float)(y * S)};
                tu_assert_identical("grid anchor", o, want, 4);
            }
    /* The first cell is the base itself; the last one is shifted by ((W - 1) S, (H - 1) S). */
    tu_assert_identical("cell (0, 0)", out, base, 8);
    const float last[4] = {0.5f + 64, 1.5f + 32, 2.5f + 64, 3.5f + 32};
    tu_assert_identical("cell (2, 4), anchor 1", out + (H * W * A - 1) * 4, last, 4);

    /* With the classic anchors over a 38 x 50 map (a 600 x 800 image): 17100 anchors, spot-checked. */
    frcnn_anchor_params p = frcnn_anchor_params_default();
    float nine[36];
    assert_int_equal(frcnn_anchors_base(ctx, &p, nine), FRCNN_OK);
    float *big = malloc(38 * 50 * 9 * 4 * sizeof(float));
    assert_int_equal(frcnn_anchors_grid(ctx, nine, 9, 38, 50, 16, big), FRCNN_OK);
    const float *o = big + ((size_t)(37 * 50 + 49) * 9 + 4) * 4; /* cell (37, 49), the 1:1 scale-16 anchor */
    const float want[4] = {-120 + 49 * 16, -120 + 37 * 16, 135 + 49 * 16, 135 + 37 * 16};
    tu_assert_identical("VGG16 grid, last cell", o, want, 4);
    free(big);
    frcnn_ctx_free(ctx);
}

static void test_bad_params(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    float out[FRCNN_MAX_ANCHOR_SHAPES * FRCNN_MAX_ANCHOR_SHAPES * 4];
    const frcnn_anchor_params good = frcnn_anchor_params_default();
    frcnn_anchor_params p = good;
    assert_int_equal(frcnn_anchors_base(NULL, &p, out), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_anchors_base(ctx, NULL, out), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_anchors_base(ctx, &p, NULL), FRCNN_ERR_INVALID_ARG);

    const float bad_values[] = {0.0f, -1.0f, NAN, INFINITY};
    for (size_t i = 0; i < sizeof bad_values / sizeof bad_values[0]; i++) {
        p = good;
        p.base_size = bad_values[i];
        tu_expect_error(ctx, frcnn_anchors_base(ctx, &p, out), FRCNN_ERR_INVALID_ARG);
        p = good;
        p.ratios[1] = bad_values[i];
        tu_expect_error(ctx, frcnn_anchors_base(ctx, &p, out), FRCNN_ERR_INVALID_ARG);
        p = good;
        p.scales[2] = bad_values[i];
        tu_expect_error(ctx, frcnn_anchors_base(ctx, &p, out), FRCNN_ERR_INVALID_ARG);
    }
    const int bad_counts[] = {0, -1, FRCNN_MAX_ANCHOR_SHAPES + 1};
    for (size_t i = 0; i < sizeof bad_counts / sizeof bad_counts[0]; i++) {
        p = good;
        p.n_ratios = bad_counts[i];
        tu_expect_error(ctx, frcnn_anchors_base(ctx, &p, out), FRCNN_ERR_INVALID_ARG);
        p = good;
        p.n_scales = bad_counts[i];
        tu_expect_error(ctx, frcnn_anchors_base(ctx, &p, out), FRCNN_ERR_INVALID_ARG);
    }
    /* A ratio that rounds the width to 0: base 1, ratio 100 -> ws = rint(0.1) = 0. */
    p = good;
    p.base_size = 1.0f;
    p.ratios[0] = 100.0f;
    tu_expect_error(ctx, frcnn_anchors_base(ctx, &p, out), FRCNN_ERR_INVALID_ARG);
    /* Coordinates beyond float. */
    p = good;
    p.base_size = 1e30f;
    p.scales[0] = 1e30f;
    tu_expect_error(ctx, frcnn_anchors_base(ctx, &p, out), FRCNN_ERR_INVALID_ARG);
    /* The maximum counts are fine. */
    p = good;
    p.n_ratios = p.n_scales = FRCNN_MAX_ANCHOR_SHAPES;
    for (int i = 0; i < FRCNN_MAX_ANCHOR_SHAPES; i++) {
        p.ratios[i] = 0.25f * (float)(i + 1);
        p.scales[i] = (float)(i + 1);
    }
    assert_int_equal(frcnn_anchors_base(ctx, &p, out), FRCNN_OK);

    const float base[4] = {0, 0, 15, 15}, inf_base[4] = {0, INFINITY, 15, 15};
    float grid[64];
    assert_int_equal(frcnn_anchors_grid(NULL, base, 1, 2, 2, 16, grid), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_anchors_grid(ctx, NULL, 1, 2, 2, 16, grid), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_anchors_grid(ctx, base, 1, 2, 2, 16, NULL), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_anchors_grid(ctx, base, 0, 2, 2, 16, grid), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_anchors_grid(ctx, base, 1, 0, 2, 16, grid), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_anchors_grid(ctx, base, 1, 2, -3, 16, grid), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_anchors_grid(ctx, base, 1, 2, 2, 0, grid), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_anchors_grid(ctx, inf_base, 1, 2, 2, 16, grid), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_anchors_grid(ctx, base, SIZE_MAX / 8, INT32_MAX, INT32_MAX, 16, grid),
                 FRCNN_ERR_OVERFLOW);
    frcnn_ctx_free(ctx);
}

/* torchvision's AnchorGenerator(sizes=((128, 256, 512),), aspect_ratios=((0.5, 1.0, 2.0),)).cell_anchors, which
 * the defaults (base 16, scales 8 16 32) give with the continuous convention: centred on 0, ratio-major. */
static void test_continuous_torchvision(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_anchor_params p = frcnn_anchor_params_default();
    const float want[9 * 4] = {
        -91, -45, 91, 45,     -181, -91, 181, 91,     -362, -181, 362, 181,
        -64, -64, 64, 64,     -128, -128, 128, 128,   -256, -256, 256, 256,
        -45, -91, 45, 91,     -91, -181, 91, 181,     -181, -362, 181, 362,
    };
    float out[9 * 4], plain[9 * 4], incl[9 * 4];
    assert_int_equal(frcnn_anchors_base_conv(ctx, FRCNN_BOXES_CONTINUOUS, &p, out), FRCNN_OK);
    tu_assert_identical("torchvision's cell anchors", out, want, 9 * 4);
    /* The inclusive form is the plain one (py-faster-rcnn's, test_classic_nine). */
    assert_int_equal(frcnn_anchors_base_conv(ctx, FRCNN_BOXES_INCLUSIVE, &p, incl), FRCNN_OK);
    assert_int_equal(frcnn_anchors_base(ctx, &p, plain), FRCNN_OK);
    tu_assert_identical("inclusive anchors are the plain ones", incl, plain, 9 * 4);

    /* Half to even and odd ratios: sizes 25 and 48 (scales 1.5625 and 3), ratios 1, 0.3, 3. torchvision's
     * generate_anchors([25, 48], [1.0, 0.3, 3.0]): 25 / 2 = 12.5 rounds to 12, as torch.round. */
    p.n_ratios = 3;
    p.ratios[0] = 1.0f;
    p.ratios[1] = 0.3f;
    p.ratios[2] = 3.0f;
    p.n_scales = 2;
    p.scales[0] = 1.5625f;
    p.scales[1] = 3.0f;
    const float want_odd[6 * 4] = {
        -12, -12, 12, 12, -24, -24, 24, 24,
        -23, -7, 23, 7,   -44, -13, 44, 13,
        -7, -22, 7, 22,   -14, -42, 14, 42,
    };
    assert_int_equal(frcnn_anchors_base_conv(ctx, FRCNN_BOXES_CONTINUOUS, &p, out), FRCNN_OK);
    tu_assert_identical("torchvision's anchors, sizes 25 and 48", out, want_odd, 6 * 4);

    /* Parameters are checked as for the inclusive anchors; an unknown convention is refused. */
    p = frcnn_anchor_params_default();
    tu_expect_error_msg(ctx, frcnn_anchors_base_conv(ctx, (frcnn_box_convention)7, &p, out), FRCNN_ERR_INVALID_ARG,
                        "box convention 7");
    p.scales[1] = -1.0f;
    tu_expect_error_msg(ctx, frcnn_anchors_base_conv(ctx, FRCNN_BOXES_CONTINUOUS, &p, out), FRCNN_ERR_INVALID_ARG,
                        "scales[1]");
    p = frcnn_anchor_params_default();
    p.base_size = 1e30f;
    p.scales[0] = 1e30f;
    tu_expect_error(ctx, frcnn_anchors_base_conv(ctx, FRCNN_BOXES_CONTINUOUS, &p, out), FRCNN_ERR_INVALID_ARG);
    frcnn_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_params),
        cmocka_unit_test(test_classic_nine),
        cmocka_unit_test(test_other_shapes),
        cmocka_unit_test(test_grid),
        cmocka_unit_test(test_bad_params),
        cmocka_unit_test(test_continuous_torchvision),
    };
    return cmocka_run_group_tests_name("anchor", tests, NULL, NULL);
}
