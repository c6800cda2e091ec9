/* Agreement of the box machinery in the continuous convention (FRCNN_BOXES_CONTINUOUS) with torchvision 0.14:
 * torchvision.ops.box_iou, torchvision.ops.nms, BoxCoder(weights=(10, 10, 5, 5)) (our stds 0.1, 0.1, 0.2, 0.2) and
 * AnchorGenerator's cell and grid anchors, against tests/fixtures/torch/{box_iou,nms,box_coder,anchors}.ckpt from
 * tools/torch_reference/make_fixtures.py (tests/fixtures/torch/README.md). NMS and anchors are selections and
 * integers: compared exactly. IoU and box coding: relative 1e-4 against float64 references. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>

static const float coder_stds[4] = {0.1f, 0.1f, 0.2f, 0.2f}; /* 1 / BoxCoder's weights */

static void test_box_iou(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    tu_fixture f;
    tu_fixture_open(&f, ctx, "torch/box_iou.ckpt");
    int64_t a_dims[2] = {20, 4}, b_dims[2] = {30, 4}, iou_dims[2] = {20, 30};
    float *a = tu_fixture_f32(&f, "boxes1", 2, a_dims, NULL), *b = tu_fixture_f32(&f, "boxes2", 2, b_dims, NULL);
    float *want = tu_fixture_f32(&f, "iou", 2, iou_dims, NULL), got[20 * 30];
    assert_int_equal(frcnn_box_iou_conv(ctx, FRCNN_BOXES_CONTINUOUS, a, 20, b, 30, got), FRCNN_OK);
    tu_assert_close("box_iou", got, want, 20 * 30, 1e-6, 1e-4);
    free(a);
    free(b);
    free(want);
    tu_fixture_close(&f);
    frcnn_ctx_free(ctx);
}

static void test_nms(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    tu_fixture f;
    tu_fixture_open(&f, ctx, "torch/nms.ckpt");
    int64_t box_dims[2] = {500, 4}, score_dims[1] = {500}, any[1] = {-1};
    float *boxes = tu_fixture_f32(&f, "boxes", 2, box_dims, NULL);
    float *scores = tu_fixture_f32(&f, "scores", 1, score_dims, NULL);
    frcnn_arena *arena;
    assert_int_equal(frcnn_arena_create(ctx, frcnn_nms_scratch_bytes(500), &arena), FRCNN_OK);
    const char *names[] = {"keep_0.3", "keep_0.5", "keep_0.7"};
    const float thresholds[] = {0.3f, 0.5f, 0.7f};
    for (int t = 0; t < 3; t++) {
        size_t n_want, n_keep = 0;
        int64_t *want = tu_fixture_i64(&f, names[t], 1, any, &n_want);
        uint32_t keep[500];
        assert_int_equal(frcnn_nms_conv(ctx, arena, FRCNN_BOXES_CONTINUOUS, boxes, scores, 500, thresholds[t], 0,
                                        keep, &n_keep),
                         FRCNN_OK);
        assert_int_equal(n_keep, n_want);
        for (size_t i = 0; i < n_keep; i++)
            if ((int64_t)keep[i] != want[i]) {
                print_error("nms at %g: kept[%zu] is box %u, torchvision keeps %lld\n", (double)thresholds[t], i,
                            keep[i], (long long)want[i]);
                fail();
            }
        free(want);
    }
    frcnn_arena_free(arena);
    free(boxes);
    free(scores);
    tu_fixture_close(&f);
    frcnn_ctx_free(ctx);
}

static void test_box_coder(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    tu_fixture f;
    tu_fixture_open(&f, ctx, "torch/box_coder.ckpt");
    int64_t dims[2] = {64, 4};
    float *proposals = tu_fixture_f32(&f, "proposals", 2, dims, NULL), *gt = tu_fixture_f32(&f, "gt", 2, dims, NULL);
    float *encoded = tu_fixture_f32(&f, "encoded", 2, dims, NULL), got[64 * 4];
    assert_int_equal(frcnn_box_encode_conv(ctx, FRCNN_BOXES_CONTINUOUS, proposals, gt, 64, NULL, coder_stds, got),
                     FRCNN_OK);
    tu_assert_close("BoxCoder.encode_single", got, encoded, 64 * 4, 1e-5, 1e-4);
    float *boxes = tu_fixture_f32(&f, "boxes", 2, dims, NULL), *deltas = tu_fixture_f32(&f, "deltas", 2, dims, NULL);
    float *decoded = tu_fixture_f32(&f, "decoded", 2, dims, NULL);
    frcnn_box_decode_conv(FRCNN_BOXES_CONTINUOUS, boxes, deltas, 64, NULL, coder_stds, got);
    tu_assert_close("BoxCoder.decode_single", got, decoded, 64 * 4, 1e-3, 1e-4);
    free(proposals);
    free(gt);
    free(encoded);
    free(boxes);
    free(deltas);
    free(decoded);
    tu_fixture_close(&f);
    frcnn_ctx_free(ctx);
}

static void test_anchors(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    tu_fixture f;
    tu_fixture_open(&f, ctx, "torch/anchors.ckpt");
    for (int c = 0; c < (int)tu_fixture_int(&f, "cases"); c++) {
        char key[64];
        int64_t three[1] = {3}, cell_dims[2] = {9, 4}, any[2] = {-1, 4};
        snprintf(key, sizeof key, "c%d.sizes", c);
        float *sizes = tu_fixture_f32(&f, key, 1, three, NULL);
        snprintf(key, sizeof key, "c%d.aspect_ratios", c);
        float *ratios = tu_fixture_f32(&f, key, 1, three, NULL);
        frcnn_anchor_params p = frcnn_anchor_params_default();
        for (int i = 0; i < 3; i++) {
            p.ratios[i] = ratios[i];
            p.scales[i] = sizes[i] / p.base_size;
        }
        float base[9 * 4];
        assert_int_equal(frcnn_anchors_base_conv(ctx, FRCNN_BOXES_CONTINUOUS, &p, base), FRCNN_OK);
        snprintf(key, sizeof key, "c%d.cell_anchors", c);
        float *want = tu_fixture_f32(&f, key, 2, cell_dims, NULL);
        tu_assert_identical("cell anchors", base, want, 9 * 4);
        free(want);

        snprintf(key, sizeof key, "c%d.feature_h", c);
        int fh = (int)tu_fixture_int(&f, key);
        snprintf(key, sizeof key, "c%d.feature_w", c);
        int fw = (int)tu_fixture_int(&f, key);
        snprintf(key, sizeof key, "c%d.stride", c);
        int stride = (int)tu_fixture_int(&f, key);
        size_t n;
        snprintf(key, sizeof key, "c%d.grid_anchors", c);
        want = tu_fixture_f32(&f, key, 2, any, &n);
        assert_int_equal(n, (size_t)fh * (size_t)fw * 9 * 4);
        float *grid = malloc(n * sizeof *grid);
        assert_int_equal(frcnn_anchors_grid(ctx, base, 9, fh, fw, stride, grid), FRCNN_OK);
        tu_assert_identical("grid anchors", grid, want, n);
        free(grid);
        free(want);
        free(sizes);
        free(ratios);
    }
    tu_fixture_close(&f);
    frcnn_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_box_iou),
        cmocka_unit_test(test_nms),
        cmocka_unit_test(test_box_coder),
        cmocka_unit_test(test_anchors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
