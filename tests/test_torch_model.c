/* Agreement of the whole detector with torchvision 0.14's FasterRCNN on a tiny VGG-style model (the small backbone,
 * RPNHead, a RoI op, TwoMLPHead fc 64, 4 classes) at 128x160, configured as torchvision (box_convention continuous,
 * pool_floor, sigmoid-equivalent objectness, smooth-L1 beta 1/9, test NMS 0.5). Every test runs twice: with RoI
 * pooling against tests/fixtures/torch/model.ckpt, and with roi_op align-legacy against model_align.ckpt, whose
 * model uses torchvision's own MultiScaleRoIAlign. Both files come from
 * tools/torch_reference/make_model_fixture.py, whose docstring describes the model. Weights and image are generated
 * on both sides by the same counter-based generator (generated()), so the fixture holds only outputs.
 *
 * Eval mode: the feature map, the RPN's outputs, the proposals, the head's outputs on torchvision's proposals and
 * the detections agree within relative 1e-4 (1e-3 for the detections, as the issue asks for the whole model, all
 * but at most 5 of 100: see test_detections). Training: one step with sampling switched off (every labelled anchor
 * and RoI kept); the four losses agree within 1e-3 relative, and each parameter's gradient through its squared norm
 * and eight projections on generated vectors (a projection's tolerance is 1e-3 of |g| |v|, the size any difference
 * in g could reach; 2e-3 with RoI align, see setup_align). */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define H 128
#define W 160
#define ANCHORS 9
#define ALL (1 << 20) /* a sampling batch larger than every candidate count */
#define PROJECTIONS 8

static uint64_t fnv1a64(const char *s)
{
    uint64_t h = 0xCBF29CE484222325u;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 0x100000001B3u;
    return h;
}

/* make_model_fixture.py's generated(): element i = amplitude * (2u - 1), u = the top 24 bits of
 * splitmix64(fnv1a64(name) + (i + 1) * golden) / 2^24, in double, rounded to float once. */
static void generated(const char *name, float *out, size_t n, double amplitude)
{
    uint64_t seed = fnv1a64(name);
    for (size_t i = 0; i < n; i++) {
        uint64_t z = seed + (uint64_t)(i + 1) * 0x9E3779B97F4A7C15u;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
        z ^= z >> 31;
        double u = (double)(z >> 40) * (1.0 / (double)(1 << 24));
        out[i] = (float)((2.0 * u - 1.0) * amplitude);
    }
}

/* make_model_fixture.py's amplitude(): 0.1 for biases, 1/sqrt(fan_in) for output layers, He-uniform otherwise. */
static double amplitude(const char *name, const frcnn_tensor *t)
{
    if (strstr(name, ".bias"))
        return 0.1;
    double fan_in = (double)frcnn_tensor_numel(t) / (double)frcnn_tensor_dim(t, 0);
    if (strstr(name, "cls_logits") || strstr(name, "bbox_pred") || strstr(name, "cls_score"))
        return 1.0 / sqrt(fan_in);
    return sqrt(6.0 / fan_in);
}

static frcnn_config torchvision_config(frcnn_roi_op roi_op)
{
    frcnn_config c = frcnn_config_small();
    c.num_classes = 4;
    c.short_side = H;
    c.max_side = W;
    for (int i = 0; i < 3; i++) {
        c.pixel_means[i] = 0.0f;
        c.pixel_stds[i] = 1.0f;
    }
    c.frozen_convs = 0;
    c.norm_groups = 0;
    c.pool_floor = 1;
    c.box_convention = FRCNN_BOXES_CONTINUOUS;
    c.anchors = frcnn_anchor_params_default();
    c.anchors.scales[0] = 2.0f; /* sizes 32, 64, 128 */
    c.anchors.scales[1] = 4.0f;
    c.anchors.scales[2] = 8.0f;
    c.rpn_channels = 256;
    c.rpn_targets.positive_iou = 0.7f;
    c.rpn_targets.negative_iou = 0.3f;
    c.rpn_targets.batch_size = ALL;
    c.rpn_targets.fg_fraction = 0.5f;
    c.rpn_targets.allowed_border = -1;
    c.rpn_sigma = 3.0f; /* beta 1/9 */
    c.train_proposals.pre_nms_top_n = 1000;
    c.train_proposals.post_nms_top_n = 400;
    c.test_proposals = c.train_proposals;
    c.train_proposals.nms_iou = c.test_proposals.nms_iou = 0.7f;
    c.train_proposals.min_size = c.test_proposals.min_size = 1e-3f;
    c.max_gt_boxes = 3;
    c.roi_targets.batch_size = 400 + 3; /* every proposal and GT box */
    c.roi_targets.fg_fraction = 0.5f;
    c.roi_targets.fg_iou = 0.5f;
    c.roi_targets.bg_iou_hi = 0.5f;
    c.roi_targets.bg_iou_lo = 0.0f;
    c.pooled_size = 7;
    c.roi_op = roi_op;
    c.fc_channels = 64;
    c.dropout = 0.0f;
    c.head_sigma = 3.0f;
    c.score_threshold = 0.05f;
    c.test_nms_iou = 0.5f;
    c.max_detections = 100;
    return c;
}

/* torchvision's one objectness logit per anchor is our foreground channel with a zero background channel:
 * softmax([0, z])[1] == sigmoid(z). */
static bool is_objectness(const char *name)
{
    return strncmp(name, "rpn.head.cls_logits.", 20) == 0;
}

static void fill_weights(frcnn_model *m)
{
    for (size_t i = 0; i < frcnn_model_param_count(m); i++) {
        frcnn_param p;
        assert_int_equal(frcnn_model_param(m, i, &p), FRCNN_OK);
        float *d = frcnn_tensor_data(p.value);
        size_t n = frcnn_tensor_numel(p.value);
        if (is_objectness(p.name)) {
            memset(d, 0, n / 2 * sizeof *d);
            generated(p.name, d + n / 2, n / 2, strstr(p.name, ".bias") ? 0.1 : 1.0 / 16.0); /* fan_in 256 */
        } else {
            generated(p.name, d, n, amplitude(p.name, p.value));
        }
    }
}

typedef struct fixture {
    frcnn_ctx *ctx;
    frcnn_model *model;
    frcnn_tensor *image;
    tu_fixture ref;
    double proj_rtol; /* a gradient projection's tolerance, relative to |g| |v| */
} fixture;

static int setup_with(void **state, frcnn_roi_op roi_op, const char *reference, double proj_rtol)
{
    fixture *f = calloc(1, sizeof *f);
    f->proj_rtol = proj_rtol;
    f->ctx = tu_ctx();
    frcnn_config c = torchvision_config(roi_op);
    if (frcnn_model_create(f->ctx, &c, 1, &f->model) != FRCNN_OK) {
        print_error("model_create: %s\n", frcnn_ctx_last_error(f->ctx));
        return -1;
    }
    fill_weights(f->model);
    f->image = tu_tensor(f->ctx, 4, 1, 3, H, W);
    generated("input.image", frcnn_tensor_data(f->image), frcnn_tensor_numel(f->image), 1.0);
    tu_fixture_open(&f->ref, f->ctx, reference);
    *state = f;
    return 0;
}

static int setup_pool(void **state)
{
    return setup_with(state, FRCNN_ROI_POOL, "torch/model.ckpt", 1e-3); /* torchvision.ops.roi_pool */
}

/* RoI align sends the head's gradient to every bilinear tap, so the first convolutions' gradients sum over many
 * more backbone paths than with pooling; with OpenBLAS's SkylakeX kernel conv1's projections differ from
 * torchvision's by up to 1.04 x 1e-3 of |g| |v| (the default kernel: below 0.3 x), hence 2e-3 here. */
static int setup_align(void **state)
{
    return setup_with(state, FRCNN_ROI_ALIGN_LEGACY, "torch/model_align.ckpt", 2e-3); /* MultiScaleRoIAlign */
}

static int teardown(void **state)
{
    fixture *f = *state;
    tu_fixture_close(&f->ref);
    frcnn_tensor_free(f->image);
    frcnn_model_free(f->model);
    frcnn_ctx_free(f->ctx);
    free(f);
    return 0;
}

/* |got - want| <= rtol (|want| + the array's largest |want| / 100): relative, with room for entries near zero
 * that come from cancellation. */
static void expect_close(const char *what, const float *got, const float *want, size_t n, double rtol)
{
    double big = 0;
    for (size_t i = 0; i < n; i++)
        big = fmax(big, fabs((double)want[i]));
    tu_assert_close(what, got, want, n, rtol * big / 100.0, rtol);
}

static void begin_eval(fixture *f)
{
    frcnn_input in = {f->image, 1.0f};
    assert_int_equal(frcnn_model_stage_begin(f->model, &in, false), FRCNN_OK);
}

static void test_feature_and_rpn(void **state)
{
    fixture *f = *state;
    begin_eval(f);
    const frcnn_tensor *feature;
    assert_int_equal(frcnn_model_backbone_forward(f->model, &feature), FRCNN_OK);
    int64_t fdims[3] = {256, H / 16, W / 16};
    float *want = tu_fixture_f32(&f->ref, "feature", 3, fdims, NULL);
    expect_close("feature map", frcnn_tensor_data(feature), want, frcnn_tensor_numel(feature), 1e-4);
    free(want);

    frcnn_rpn_outputs rpn;
    assert_int_equal(frcnn_model_rpn_forward(f->model, &rpn), FRCNN_OK);
    size_t n = rpn.n;
    assert_int_equal(n, (size_t)(H / 16) * (W / 16) * ANCHORS);
    const float *logits = frcnn_tensor_data(rpn.logits);
    float *z = malloc(n * sizeof *z);
    for (size_t i = 0; i < n; i++)
        z[i] = logits[2 * i + 1] - logits[2 * i];
    int64_t ndim1[1] = {(int64_t)n}, ndim2[2] = {(int64_t)n, 4};
    want = tu_fixture_f32(&f->ref, "rpn_objectness", 1, ndim1, NULL);
    expect_close("RPN objectness", z, want, n, 1e-4);
    free(want);
    want = tu_fixture_f32(&f->ref, "rpn_deltas", 2, ndim2, NULL);
    expect_close("RPN deltas", frcnn_tensor_data(rpn.deltas), want, 4 * n, 1e-4);
    free(want);

    /* The proposal layer on our RPN outputs gives torchvision's proposals, in the same order. */
    float *scores = malloc(n * sizeof *scores), rois[400 * 4], roi_scores[400];
    for (size_t i = 0; i < n; i++)
        scores[i] = 1.0f / (1.0f + expf(-z[i]));
    frcnn_arena *arena;
    assert_int_equal(frcnn_arena_create(f->ctx, frcnn_proposal_scratch_bytes(n), &arena), FRCNN_OK);
    size_t n_rois = 0;
    const frcnn_config *c = frcnn_model_config(f->model);
    assert_int_equal(frcnn_proposals(f->ctx, arena, &c->test_proposals, rpn.anchors, frcnn_tensor_data(rpn.deltas),
                                     scores, n, H, W, 1.0f, rois, roi_scores, &n_rois),
                     FRCNN_OK);
    size_t n_want;
    int64_t any2[2] = {-1, 4};
    want = tu_fixture_f32(&f->ref, "proposals", 2, any2, &n_want);
    assert_int_equal(n_rois, n_want / 4);
    /* Decoding multiplies the deltas' rounding by box sizes (exp for w, h): allow 1e-4 of the image side. */
    tu_assert_close("proposals", rois, want, n_want, 1e-4 * W, 1e-4);
    free(want);
    frcnn_arena_free(arena);
    free(scores);
    free(z);
}

static void test_head_on_torchvision_proposals(void **state)
{
    fixture *f = *state;
    size_t n4;
    int64_t any2[2] = {-1, 4};
    float *rois = tu_fixture_f32(&f->ref, "proposals", 2, any2, &n4);
    size_t r = n4 / 4;
    begin_eval(f);
    const frcnn_tensor *feature;
    assert_int_equal(frcnn_model_backbone_forward(f->model, &feature), FRCNN_OK);
    frcnn_head_outputs head;
    assert_int_equal(frcnn_model_head_forward(f->model, rois, r, NULL, &head), FRCNN_OK);
    int64_t cls_dims[2] = {(int64_t)r, 4}, box_dims[2] = {(int64_t)r, 16};
    float *want = tu_fixture_f32(&f->ref, "head_cls", 2, cls_dims, NULL);
    expect_close("head class scores", frcnn_tensor_data(head.cls), want, r * 4, 1e-4);
    free(want);
    want = tu_fixture_f32(&f->ref, "head_box", 2, box_dims, NULL);
    expect_close("head box deltas", frcnn_tensor_data(head.box), want, r * 16, 1e-4);
    free(want);
    free(rois);
}

/* Torchvision's detections that may go unmatched, of 100: see test_detections. */
#define MAX_UNMATCHED 5

/* Whether ours is torchvision's detection (label, score, box b): same class, score and box within rtol 1e-3. */
static bool same_detection(const frcnn_detection *d, int32_t label, float score, const float b[4])
{
    float ours[4] = {d->x1, d->y1, d->x2, d->y2};
    bool same = d->label == label && fabsf(d->score - score) <= 1e-3f * score;
    for (int k = 0; k < 4 && same; k++)
        same = fabsf(ours[k] - b[k]) <= 1e-3f * (fabsf(b[k]) + 1.0f);
    return same;
}

/* Torchvision's detections are ours, one to one (class, score and box within rtol 1e-3), but for at most
 * MAX_UNMATCHED. The randomly initialised RPN gives many overlapping anchors scores within 1e-6 of each other,
 * so rounding differences of that size can let a different one of two near-identical proposals survive the RPN's
 * NMS. The detection made from it moves or changes its score, which can change what the class NMS keeps and
 * which detection is the 100th. OpenBLAS's Haswell kernel (AVX2 CPUs, AMD's included), which changes the RPN's
 * logits in the seventh digit, leaves 4 of the 100 unmatched this way; the SkylakeX and generic kernels none.
 * A wrong head or wrong post-processing would miss far more. */
static void test_detections(void **state)
{
    fixture *f = *state;
    frcnn_detection dets[100];
    size_t n = 0;
    frcnn_input in = {f->image, 1.0f};
    assert_int_equal(frcnn_model_detect(f->model, &in, dets, 100, &n), FRCNN_OK);
    size_t n_want, n4;
    int64_t any1[1] = {-1}, any2[2] = {-1, 4};
    float *scores = tu_fixture_f32(&f->ref, "det_scores", 1, any1, &n_want);
    float *boxes = tu_fixture_f32(&f->ref, "det_boxes", 2, any2, &n4);
    int32_t *labels = tu_fixture_i32(&f->ref, "det_labels", 1, any1, NULL);
    assert_int_equal(n, n_want);
    bool used[100] = {false};
    int unmatched = 0;
    for (size_t i = 0; i < n_want; i++) {
        const float *b = boxes + 4 * i;
        size_t j = 0;
        while (j < n && (used[j] || !same_detection(&dets[j], labels[i], scores[i], b)))
            j++;
        if (j < n) {
            used[j] = true;
            continue;
        }
        unmatched++;
        print_message("note: torchvision detection %zu (class %d, score %g, box %g %g %g %g) has no match\n", i,
                      (int)labels[i], (double)scores[i], (double)b[0], (double)b[1], (double)b[2], (double)b[3]);
    }
    if (unmatched > MAX_UNMATCHED)
        print_error("%d of %zu torchvision detections have no match; at most %d may\n", unmatched, n_want,
                    MAX_UNMATCHED);
    assert_true(unmatched <= MAX_UNMATCHED);
    free(scores);
    free(boxes);
    free(labels);
}

static void expect_loss(const char *what, double got, tu_fixture *ref, const char *name)
{
    int64_t one[1] = {1};
    double *want = tu_fixture_f64(ref, name, 1, one, NULL);
    if (!(fabs(got - want[0]) <= 1e-3 * fabs(want[0]))) {
        print_error("%s: ours %.7g, torchvision %.7g\n", what, got, want[0]);
        free(want);
        fail();
    }
    free(want);
}

/* The gradient's squared norm and its projections on the generated vectors the fixture used. */
static void expect_gradient(tu_fixture *ref, const char *name, const float *g, size_t n, double proj_rtol)
{
    char key[160];
    int64_t one[1] = {1}, proj_dims[1] = {PROJECTIONS};
    double sq = 0;
    for (size_t i = 0; i < n; i++)
        sq += (double)g[i] * (double)g[i];
    snprintf(key, sizeof key, "grad_sq.%s", name);
    double *want_sq = tu_fixture_f64(ref, key, 1, one, NULL);
    snprintf(key, sizeof key, "grad_proj.%s", name);
    double *want_proj = tu_fixture_f64(ref, key, 1, proj_dims, NULL);
    if (!(fabs(sqrt(sq) - sqrt(want_sq[0])) <= 1e-3 * sqrt(want_sq[0]) + 1e-12)) {
        print_error("%s: gradient norm %.7g, torchvision %.7g\n", name, sqrt(sq), sqrt(want_sq[0]));
        fail();
    }
    float *v = malloc(n * sizeof *v);
    for (int k = 0; k < PROJECTIONS; k++) {
        snprintf(key, sizeof key, "projection.%d.%s", k, name);
        generated(key, v, n, 1.0);
        double dot = 0, vv = 0;
        for (size_t i = 0; i < n; i++) {
            dot += (double)v[i] * (double)g[i];
            vv += (double)v[i] * (double)v[i];
        }
        double tol = proj_rtol * sqrt(want_sq[0]) * sqrt(vv) + 1e-12;
        if (!(fabs(dot - want_proj[k]) <= tol)) {
            print_error("%s: gradient projection %d is %.7g, torchvision %.7g (tolerance %.3g)\n", name, k, dot,
                        want_proj[k], tol);
            fail();
        }
    }
    free(v);
    free(want_sq);
    free(want_proj);
}

static void test_training_step(void **state)
{
    fixture *f = *state;
    int64_t gdims[2] = {3, 4}, ldims[1] = {3};
    float *gt = tu_fixture_f32(&f->ref, "gt_boxes", 2, gdims, NULL);
    int32_t *labels = tu_fixture_i32(&f->ref, "gt_labels", 1, ldims, NULL);
    frcnn_rng rng;
    frcnn_rng_seed(&rng, 1);
    frcnn_input in = {f->image, 1.0f};
    frcnn_losses losses;
    frcnn_model_zero_grad(f->model);
    assert_int_equal(frcnn_model_train_step(f->model, &in, gt, labels, 3, &rng, &losses), FRCNN_OK);
    expect_loss("RPN objectness loss", losses.rpn_cls, &f->ref, "loss_rpn_cls");
    expect_loss("RPN box loss", losses.rpn_box, &f->ref, "loss_rpn_box");
    expect_loss("head class loss", losses.cls, &f->ref, "loss_cls");
    expect_loss("head box loss", losses.box, &f->ref, "loss_box");
    for (size_t i = 0; i < frcnn_model_param_count(f->model); i++) {
        frcnn_param p;
        assert_int_equal(frcnn_model_param(f->model, i, &p), FRCNN_OK);
        const float *g = frcnn_tensor_data(p.grad);
        size_t n = frcnn_tensor_numel(p.grad);
        if (is_objectness(p.name)) /* torchvision's logit is our foreground channel */
            expect_gradient(&f->ref, p.name, g + n / 2, n / 2, f->proj_rtol);
        else
            expect_gradient(&f->ref, p.name, g, n, f->proj_rtol);
    }
    free(gt);
    free(labels);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_feature_and_rpn),
        cmocka_unit_test(test_head_on_torchvision_proposals),
        cmocka_unit_test(test_detections),
        cmocka_unit_test(test_training_step),
    };
    int failed = cmocka_run_group_tests_name("RoI pooling", tests, setup_pool, teardown);
    return failed + cmocka_run_group_tests_name("RoI align, legacy (MultiScaleRoIAlign)", tests, setup_align,
                                                teardown);
}
