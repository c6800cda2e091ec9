/* The detector: presets, parameter table, input validation, gradient checks of both heads, determinism, an
 * overfit run on synthetic images that must end in correct detections, and the torchvision switches (continuous
 * boxes, floor-mode pools) with their configuration checks. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { IMG_H = 128, IMG_W = 160 };

/* A configuration small enough for the test suite: the small backbone at 128x160 with anchors of 32..128 px. */
static frcnn_config tiny_config(void)
{
    return tu_tiny_config(IMG_H, IMG_W, 64, 256);
}

typedef struct scene {
    frcnn_tensor *image;
    float gt[4 * 4];
    int32_t labels[4];
    size_t g;
} scene;

/* Draws object `label` into the box: 1 a filled square, 2 a hollow frame, 3 a cross. Shapes differ, colours
 * do not, so the classifier has to look at shape. */
static void draw(float *img, const float *box, int label)
{
    int x1 = (int)box[0], y1 = (int)box[1], x2 = (int)box[2], y2 = (int)box[3];
    int bw = x2 - x1 + 1, bh = y2 - y1 + 1, t = bw / 5 > 3 ? bw / 5 : 3;
    for (int y = y1; y <= y2; y++)
        for (int x = x1; x <= x2; x++) {
            bool on = label == 1 || (label == 2 && (x - x1 < t || x2 - x < t || y - y1 < t || y2 - y < t)) ||
                      (label == 3 && (abs(x - (x1 + bw / 2)) < t / 2 + 1 || abs(y - (y1 + bh / 2)) < t / 2 + 1));
            if (on)
                for (int ch = 0; ch < 3; ch++)
                    img[(ch * IMG_H + y) * IMG_W + x] = 1.5f;
        }
}

static void make_scene(frcnn_ctx *ctx, scene *s, uint64_t seed, const float *boxes, const int32_t *labels, size_t g)
{
    s->image = tu_tensor(ctx, 4, 1, 3, IMG_H, IMG_W);
    float *img = frcnn_tensor_data(s->image);
    tu_fill_uniform(img, frcnn_tensor_numel(s->image), seed, -0.5f, 0.5f); /* noisy background, unit scale */
    s->g = g;
    for (size_t i = 0; i < g; i++) {
        memcpy(&s->gt[4 * i], &boxes[4 * i], 4 * sizeof(float));
        s->labels[i] = labels[i];
        draw(img, &boxes[4 * i], labels[i]);
    }
}

/* IoU with the inclusive +1 pixel convention, written out independently of the library's. */
static float iou(const float *a, const float *b)
{
    float iw = fminf(a[2], b[2]) - fmaxf(a[0], b[0]) + 1, ih = fminf(a[3], b[3]) - fmaxf(a[1], b[1]) + 1;
    if (iw <= 0 || ih <= 0)
        return 0.0f;
    float inter = iw * ih;
    return inter / ((a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - inter);
}

static frcnn_model *make_model(frcnn_ctx *ctx, const frcnn_config *c, uint64_t seed)
{
    frcnn_model *m = NULL;
    frcnn_status st = frcnn_model_create(ctx, c, seed, &m);
    if (st != FRCNN_OK)
        print_error("model_create: %s\n", frcnn_ctx_last_error(ctx));
    assert_int_equal(st, FRCNN_OK);
    return m;
}

static void test_presets_and_params(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_config v = frcnn_config_vgg16();
    assert_int_equal(frcnn_config_validate(ctx, &v), FRCNN_OK);
    assert_int_equal(v.short_side, 600);
    assert_int_equal(v.max_side, 1000);
    assert_int_equal(v.frozen_convs, 4);
    assert_int_equal(v.rpn_targets.batch_size, 256);
    assert_int_equal(v.roi_targets.batch_size, 128);
    assert_int_equal(v.train_proposals.pre_nms_top_n, 12000);
    assert_int_equal(v.test_proposals.post_nms_top_n, 300);
    assert_string_equal(frcnn_backbone_name(v.backbone), "vgg16");

    frcnn_config c = tiny_config();
    frcnn_model *m = make_model(ctx, &c, 1);
    /* 5 convs + RPN conv, cls, box + fc6, fc7, cls_score, bbox_pred, each with a bias */
    assert_int_equal(frcnn_model_param_count(m), 24);
    frcnn_param p;
    assert_int_equal(frcnn_model_find_param(m, "backbone.features.12.weight", &p), FRCNN_OK);
    assert_int_equal(frcnn_tensor_dim(p.value, 0), 256);
    assert_int_equal(frcnn_model_find_param(m, "rpn.head.cls_logits.weight", &p), FRCNN_OK);
    assert_int_equal(frcnn_tensor_dim(p.value, 0), 18);
    assert_int_equal(frcnn_model_find_param(m, "roi_heads.box_head.fc6.weight", &p), FRCNN_OK);
    assert_int_equal(frcnn_tensor_dim(p.value, 1), 256 * 7 * 7);
    assert_int_equal(frcnn_model_find_param(m, "roi_heads.box_predictor.bbox_pred.bias", &p), FRCNN_OK);
    assert_true(p.is_bias);
    assert_int_equal(frcnn_tensor_dim(p.value, 0), 16);
    assert_int_equal(frcnn_model_find_param(m, "no.such.weight", &p), FRCNN_ERR_NOT_FOUND);
    assert_non_null(strstr(frcnn_ctx_last_error(ctx), "no.such.weight"));
    /* names are unique */
    for (size_t i = 0; i < frcnn_model_param_count(m); i++) {
        frcnn_param a, b;
        frcnn_model_param(m, i, &a);
        for (size_t j = i + 1; j < frcnn_model_param_count(m); j++) {
            frcnn_model_param(m, j, &b);
            assert_true(strcmp(a.name, b.name) != 0);
        }
    }
    frcnn_model_free(m);

    /* VGG16's frozen layers are marked, and its parameter names follow torchvision's vgg16 features. */
    c = tiny_config();
    c.backbone = FRCNN_BACKBONE_VGG16;
    c.frozen_convs = 4;
    m = make_model(ctx, &c, 1);
    assert_int_equal(frcnn_model_find_param(m, "backbone.features.7.weight", &p), FRCNN_OK); /* conv2_2 */
    assert_false(p.trainable);
    assert_int_equal(frcnn_model_find_param(m, "backbone.features.28.weight", &p), FRCNN_OK); /* conv5_3 */
    assert_true(p.trainable);
    assert_int_equal(frcnn_model_param_count(m), 40);
    frcnn_model_free(m);

    c = tiny_config();
    c.num_classes = 1;
    assert_int_equal(frcnn_model_create(ctx, &c, 1, &m), FRCNN_ERR_INVALID_ARG);
    assert_null(m);
    assert_non_null(strstr(frcnn_ctx_last_error(ctx), "num_classes"));
    frcnn_ctx_free(ctx);
}

static void test_bad_inputs(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_config c = tiny_config();
    frcnn_model *m = make_model(ctx, &c, 3);
    const float box[4] = {10, 10, 60, 60};
    const int32_t label[1] = {1};
    scene s;
    make_scene(ctx, &s, 5, box, label, 1);
    frcnn_input in = {s.image, 1.0f};
    frcnn_rng rng;
    frcnn_rng_seed(&rng, 1);
    frcnn_losses l;

    frcnn_tensor *big = tu_tensor(ctx, 4, 1, 3, IMG_H * 2, IMG_W);
    frcnn_input too_big = {big, 1.0f};
    assert_int_equal(frcnn_model_train_step(m, &too_big, box, label, 1, &rng, &l), FRCNN_ERR_SHAPE);
    assert_non_null(strstr(frcnn_ctx_last_error(ctx), "plan"));
    frcnn_tensor_free(big);

    float bad_box[4] = {60, 10, 10, 60}; /* x2 < x1 */
    assert_int_equal(frcnn_model_train_step(m, &in, bad_box, label, 1, &rng, &l), FRCNN_ERR_INVALID_ARG);
    float outside[4] = {500, 500, 600, 600};
    assert_int_equal(frcnn_model_train_step(m, &in, outside, label, 1, &rng, &l), FRCNN_ERR_INVALID_ARG);
    int32_t bad_label[1] = {4};
    assert_int_equal(frcnn_model_train_step(m, &in, box, bad_label, 1, &rng, &l), FRCNN_ERR_INVALID_ARG);

    frcnn_tensor_data(s.image)[7] = NAN;
    assert_int_equal(frcnn_model_train_step(m, &in, box, label, 1, &rng, &l), FRCNN_ERR_NOT_FINITE);
    size_t n;
    frcnn_detection d[4];
    assert_int_equal(frcnn_model_detect(m, &in, d, 4, &n), FRCNN_ERR_NOT_FINITE);
    frcnn_tensor_data(s.image)[7] = 0.0f;

    /* No GT at all is a valid (background-only) image. */
    frcnn_status st = frcnn_model_train_step(m, &in, NULL, NULL, 0, &rng, &l);
    if (st != FRCNN_OK)
        print_error("%s\n", frcnn_ctx_last_error(ctx));
    assert_int_equal(st, FRCNN_OK);
    assert_int_equal(l.rpn_fg, 0);
    assert_int_equal(l.roi_fg, 0);
    assert_true(l.rpn_bg > 0);
    assert_true(isfinite(l.total));
    frcnn_tensor_free(s.image);
    frcnn_model_free(m);
    frcnn_ctx_free(ctx);
}

/* Finite differences of the RPN losses against the RPN head's gradients, and of the head losses against the
 * RoI head's: within one head the sampled anchors and RoIs do not depend on its own parameters, so the losses
 * are smooth functions of them (the same seed replays the same sampling and dropout masks). */
typedef struct grad_case {
    frcnn_ctx *ctx;
    frcnn_model *m;
    frcnn_input in;
    const scene *s;
    bool rpn; /* which losses */
} grad_case;

static double step_loss(void *state)
{
    grad_case *gc = state;
    frcnn_rng rng;
    frcnn_rng_seed(&rng, 77);
    frcnn_losses l;
    frcnn_status st = frcnn_model_train_step(gc->m, &gc->in, gc->s->gt, gc->s->labels, gc->s->g, &rng, &l);
    if (st != FRCNN_OK)
        print_error("%s\n", frcnn_ctx_last_error(gc->ctx));
    assert_int_equal(st, FRCNN_OK);
    return gc->rpn ? (double)l.rpn_cls + l.rpn_box : (double)l.cls + l.box;
}

/* Checks `count` elements of parameter `name` spread over the tensor (a fixed pseudo-random pick keeps the test
 * fast). loss(state) evaluates the loss and, as a side effect, adds its gradients into the model's. */
static void check_grad(frcnn_model *m, tu_loss_fn loss, void *state, const char *name, size_t count, double atol)
{
    frcnn_param p;
    assert_int_equal(frcnn_model_find_param(m, name, &p), FRCNN_OK);
    frcnn_model_zero_grad(m);
    loss(state);
    size_t n = frcnn_tensor_numel(p.value);
    float *analytic = malloc(n * sizeof(float));
    memcpy(analytic, frcnn_tensor_data(p.grad), n * sizeof(float));
    float *v = frcnn_tensor_data(p.value);
    frcnn_rng pick;
    frcnn_rng_seed(&pick, n);
    for (size_t k = 0; k < count; k++) {
        size_t i = (size_t)frcnn_rng_below(&pick, n);
        tu_gradcheck(name, loss, state, &v[i], &analytic[i], 1, 2e-3f, atol, 2e-2);
    }
    free(analytic);
}

static void check_param_grad(grad_case *gc, const char *name, size_t count)
{
    check_grad(gc->m, step_loss, gc, name, count, 1.5e-4);
}

static void test_head_gradients(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    for (int op = FRCNN_ROI_POOL; op <= FRCNN_ROI_ALIGN; op++) {
        frcnn_config c = tiny_config();
        c.fc_channels = 32;
        c.roi_targets.batch_size = 16;
        c.roi_op = (frcnn_roi_op)op;
        frcnn_model *m = make_model(ctx, &c, 11);
        const float boxes[8] = {20, 16, 75, 70, 90, 40, 150, 110};
        const int32_t labels[2] = {1, 3};
        scene s;
        make_scene(ctx, &s, 9, boxes, labels, 2);
        /* Larger RPN conv weights keep its pre-ReLU values far from the kink relative to the finite-difference
         * step. */
        frcnn_param conv;
        assert_int_equal(frcnn_model_find_param(m, "rpn.head.conv.weight", &conv), FRCNN_OK);
        for (size_t i = 0; i < frcnn_tensor_numel(conv.value); i++)
            frcnn_tensor_data(conv.value)[i] *= 10.0f;
        grad_case gc = {ctx, m, {s.image, 1.0f}, &s, true};
        check_param_grad(&gc, "rpn.head.bbox_pred.weight", 8);
        check_param_grad(&gc, "rpn.head.cls_logits.bias", 8);
        check_param_grad(&gc, "rpn.head.conv.weight", 8);
        gc.rpn = false;
        check_param_grad(&gc, "roi_heads.box_predictor.bbox_pred.weight", 8);
        check_param_grad(&gc, "roi_heads.box_predictor.cls_score.bias", 4);
        check_param_grad(&gc, "roi_heads.box_head.fc7.weight", 8);
        check_param_grad(&gc, "roi_heads.box_head.fc6.weight", 8);
        frcnn_tensor_free(s.image);
        frcnn_model_free(m);
    }
    frcnn_ctx_free(ctx);
}

/* The backbone, with GroupNorm: through the stage API, a smooth loss of the RPN outputs alone, sum(logits * r1) +
 * sum(deltas * r2), is differentiated by rpn_backward + backbone_backward and by finite differences. (The full
 * step's losses would not do: which proposals and RoIs are chosen jumps with the backbone's weights.) */
typedef struct backbone_case {
    frcnn_ctx *ctx;
    frcnn_model *m;
    frcnn_input in;
    float *r; /* upstream gradients: (n, 2) for the logits, then (n, 4) for the deltas */
} backbone_case;

static double backbone_loss(void *state)
{
    backbone_case *bc = state;
    const frcnn_tensor *feature;
    frcnn_rpn_outputs rpn;
    assert_int_equal(frcnn_model_stage_begin(bc->m, &bc->in, true), FRCNN_OK);
    assert_int_equal(frcnn_model_backbone_forward(bc->m, &feature), FRCNN_OK);
    assert_int_equal(frcnn_model_rpn_forward(bc->m, &rpn), FRCNN_OK);
    double loss = tu_dot(frcnn_tensor_data(rpn.logits), bc->r, 2 * rpn.n) +
                  tu_dot(frcnn_tensor_data(rpn.deltas), bc->r + 2 * rpn.n, 4 * rpn.n);
    int64_t d2[2] = {(int64_t)rpn.n, 2}, d4[2] = {(int64_t)rpn.n, 4};
    frcnn_tensor *dl, *dd;
    assert_int_equal(frcnn_tensor_wrap(bc->ctx, bc->r, 2, d2, &dl), FRCNN_OK);
    assert_int_equal(frcnn_tensor_wrap(bc->ctx, bc->r + 2 * rpn.n, 2, d4, &dd), FRCNN_OK);
    assert_int_equal(frcnn_model_rpn_backward(bc->m, dl, dd), FRCNN_OK);
    assert_int_equal(frcnn_model_backbone_backward(bc->m), FRCNN_OK);
    frcnn_tensor_free(dl);
    frcnn_tensor_free(dd);
    return loss;
}

static void check_backbone_grad(backbone_case *bc, const char *name, size_t count)
{
    check_grad(bc->m, backbone_loss, bc, name, count, 2e-4);
}

/* RoI align in the model: through the stage API, a smooth loss of the head's outputs on fixed RoIs, sum(cls * r1)
 * + sum(box * r2), differentiated by head_backward + backbone_backward and by finite differences, for both align
 * modes and both box conventions (inclusive boxes reach the kernel shifted to continuous coordinates, in the
 * forward and the backward alike). */
typedef struct align_case {
    frcnn_ctx *ctx;
    frcnn_model *m;
    frcnn_input in;
    const float *rois;
    size_t r;
    float *up; /* (r, K) then (r, 4K) */
} align_case;

static double align_loss(void *state)
{
    align_case *ac = state;
    const frcnn_tensor *feature;
    frcnn_head_outputs h;
    assert_int_equal(frcnn_model_stage_begin(ac->m, &ac->in, true), FRCNN_OK);
    assert_int_equal(frcnn_model_backbone_forward(ac->m, &feature), FRCNN_OK);
    assert_int_equal(frcnn_model_head_forward(ac->m, ac->rois, ac->r, NULL, &h), FRCNN_OK);
    size_t nc = frcnn_tensor_numel(h.cls), nb = frcnn_tensor_numel(h.box);
    double loss = tu_dot(frcnn_tensor_data(h.cls), ac->up, nc) + tu_dot(frcnn_tensor_data(h.box), ac->up + nc, nb);
    int64_t dc[2] = {(int64_t)ac->r, frcnn_tensor_dim(h.cls, 1)}, db[2] = {(int64_t)ac->r, frcnn_tensor_dim(h.box, 1)};
    frcnn_tensor *d_cls, *d_box;
    assert_int_equal(frcnn_tensor_wrap(ac->ctx, ac->up, 2, dc, &d_cls), FRCNN_OK);
    assert_int_equal(frcnn_tensor_wrap(ac->ctx, ac->up + nc, 2, db, &d_box), FRCNN_OK);
    assert_int_equal(frcnn_model_head_backward(ac->m, d_cls, d_box), FRCNN_OK);
    assert_int_equal(frcnn_model_backbone_backward(ac->m), FRCNN_OK);
    frcnn_tensor_free(d_cls);
    frcnn_tensor_free(d_box);
    return loss;
}

static void test_roi_align_gradients(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    /* Corners off the feature grid, one box crossing the image's edge, one smaller than a feature cell. */
    const float rois[4 * 4] = {20.3f, 16.7f, 75.2f, 70.9f, 90.5f, 40.1f, 170.0f, 130.0f, 33.0f, 50.0f, 41.5f, 55.0f,
                               0.0f, 0.0f, 159.0f, 127.0f};
    const frcnn_roi_op ops[2] = {FRCNN_ROI_ALIGN, FRCNN_ROI_ALIGN_LEGACY};
    for (int conv = 0; conv <= 1; conv++) {
        frcnn_config c = tiny_config();
        c.roi_op = ops[conv];
        c.box_convention = conv ? FRCNN_BOXES_CONTINUOUS : FRCNN_BOXES_INCLUSIVE;
        c.fc_channels = 32;
        c.dropout = 0.0f;
        frcnn_model *m = make_model(ctx, &c, 13);
        frcnn_tensor *img = tu_tensor(ctx, 4, 1, 3, IMG_H, IMG_W);
        tu_fill_uniform(frcnn_tensor_data(img), frcnn_tensor_numel(img), 8, -0.5f, 0.5f);
        size_t k = (size_t)c.num_classes;
        float *up = calloc(4 * 5 * k, sizeof(float));
        assert_non_null(up);
        tu_fill_uniform(up, 4 * 5 * k, 30 + (uint64_t)conv, -1.0f, 1.0f);
        align_case ac = {ctx, m, {img, 1.0f}, rois, 4, up};
        check_grad(m, align_loss, &ac, "roi_heads.box_head.fc6.weight", 8, 2e-4);
        check_grad(m, align_loss, &ac, "backbone.features.12.weight", 8, 2e-4);
        check_grad(m, align_loss, &ac, "backbone.features.9.bias", 4, 2e-4);
        free(up);
        frcnn_tensor_free(img);
        frcnn_model_free(m);
    }
    frcnn_ctx_free(ctx);
}

static void test_backbone_gradients(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    for (int groups = 0; groups <= 8; groups += 8) {
        frcnn_config c = tiny_config();
        c.norm_groups = groups;
        frcnn_model *m = make_model(ctx, &c, 12);
        if (groups) {
            frcnn_param p;
            assert_int_equal(frcnn_model_find_param(m, "backbone.norm.4.weight", &p), FRCNN_OK);
            assert_true(p.is_bias); /* no weight decay on normalisation parameters */
            assert_true(frcnn_tensor_data(p.value)[0] == 1.0f);
            assert_int_equal(frcnn_model_find_param(m, "backbone.norm.0.bias", &p), FRCNN_OK);
            assert_int_equal(frcnn_tensor_dim(p.value, 0), 32);
        }
        const float boxes[4] = {20, 16, 75, 70};
        const int32_t labels[1] = {1};
        scene s;
        make_scene(ctx, &s, 9, boxes, labels, 1);
        frcnn_rpn_outputs rpn;
        const frcnn_tensor *feature;
        backbone_case bc = {ctx, m, {s.image, 1.0f}, NULL};
        assert_int_equal(frcnn_model_stage_begin(m, &bc.in, true), FRCNN_OK);
        assert_int_equal(frcnn_model_backbone_forward(m, &feature), FRCNN_OK);
        assert_int_equal(frcnn_model_rpn_forward(m, &rpn), FRCNN_OK);
        /* A few non-zero upstream gradients: a sum over every anchor would bury the finite differences in the
         * float rounding of thousands of outputs. */
        bc.r = calloc(6 * rpn.n, sizeof(float));
        frcnn_rng pick;
        frcnn_rng_seed(&pick, 5);
        for (int k = 0; k < 24; k++)
            bc.r[frcnn_rng_below(&pick, 6 * rpn.n)] = frcnn_rng_uniform(&pick) * 2.0f - 1.0f;
        check_backbone_grad(&bc, "backbone.features.12.weight", 6);
        check_backbone_grad(&bc, "backbone.features.9.bias", 4);
        if (groups) {
            check_backbone_grad(&bc, "backbone.norm.4.weight", 6);
            check_backbone_grad(&bc, "backbone.norm.4.bias", 4);
            check_backbone_grad(&bc, "backbone.norm.2.weight", 4);
        }
        free(bc.r);
        frcnn_tensor_free(s.image);
        frcnn_model_free(m);
    }
    frcnn_config c = tiny_config();
    frcnn_model *m = NULL;
    c.norm_groups = 6; /* does not divide 32 */
    tu_expect_error_msg(ctx, frcnn_model_create(ctx, &c, 1, &m), FRCNN_ERR_INVALID_ARG, "norm_groups");
    frcnn_ctx_free(ctx);
}

/* SGD with momentum over every trainable parameter (the optimizer module proper is its own issue). */
static void sgd_step(frcnn_model *m, float **velocity, float lr)
{
    for (size_t i = 0; i < frcnn_model_param_count(m); i++) {
        frcnn_param p;
        frcnn_model_param(m, i, &p);
        if (!p.trainable)
            continue;
        float *v = frcnn_tensor_data(p.value), *g = frcnn_tensor_data(p.grad);
        for (size_t j = 0; j < frcnn_tensor_numel(p.value); j++) {
            float grad = g[j] + (p.is_bias ? 0.0f : 5e-4f * v[j]);
            velocity[i][j] = 0.9f * velocity[i][j] + grad;
            v[j] -= lr * velocity[i][j];
        }
    }
}

static float **make_velocity(frcnn_model *m)
{
    float **vel = calloc(frcnn_model_param_count(m), sizeof *vel);
    for (size_t i = 0; i < frcnn_model_param_count(m); i++) {
        frcnn_param p;
        frcnn_model_param(m, i, &p);
        vel[i] = calloc(frcnn_tensor_numel(p.value), sizeof(float));
    }
    return vel;
}

static void free_velocity(frcnn_model *m, float **vel)
{
    for (size_t i = 0; i < frcnn_model_param_count(m); i++)
        free(vel[i]);
    free(vel);
}

/* Trains on the scenes for `steps` steps; writes the first and the last few steps' mean total loss. */
static void train(frcnn_ctx *ctx, frcnn_model *m, scene *scenes, size_t n_scenes, int steps, uint64_t seed, float *first, float *last)
{
    frcnn_rng rng;
    frcnn_rng_seed(&rng, seed);
    float **vel = make_velocity(m);
    double tail = 0.0;
    int tail_n = 0;
    for (int it = 0; it < steps; it++) {
        scene *s = &scenes[(size_t)it % n_scenes];
        frcnn_input in = {s->image, 1.0f};
        frcnn_losses l;
        frcnn_model_zero_grad(m);
        frcnn_status st = frcnn_model_train_step(m, &in, s->gt, s->labels, s->g, &rng, &l);
        if (st != FRCNN_OK)
            print_error("step %d: %s\n", it, frcnn_ctx_last_error(ctx));
        assert_int_equal(st, FRCNN_OK);
        /* warm-up, then a final tenth of the rate for the last 40 steps so that the weights settle instead of
         * being judged at whatever point of the oscillation the last step happens to leave them */
        float lr = it < 20 ? 0.002f : it < steps - 40 ? 0.01f : 0.001f;
        sgd_step(m, vel, lr);
        if (getenv("FRCNN_TEST_VERBOSE") && it % 20 == 0)
            print_message("step %3d  rpn_cls %.4f rpn_box %.4f cls %.4f box %.4f  fg %d/%d\n", it, (double)l.rpn_cls,
                          (double)l.rpn_box, (double)l.cls, (double)l.box, l.roi_fg, l.roi_fg + l.roi_bg);
        if (it < (int)n_scenes)
            *first += l.total / (float)n_scenes;
        if (it >= steps - 10) {
            tail += l.total;
            tail_n++;
        }
    }
    *last = (float)(tail / tail_n);
    free_velocity(m, vel);
}

static void test_overfit_detects_every_object(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_config c = tiny_config();
    c.dropout = 0.0f; /* memorising two images: dropout would only add noise to the loss being measured */
    frcnn_model *m = make_model(ctx, &c, 2026);
    const float boxes_a[12] = {8, 10, 55, 57, 70, 20, 139, 89, 30, 80, 69, 119};
    const int32_t labels_a[3] = {1, 2, 3};
    const float boxes_b[8] = {90, 60, 150, 120, 12, 12, 81, 71};
    const int32_t labels_b[2] = {3, 2};
    scene scenes[2];
    make_scene(ctx, &scenes[0], 100, boxes_a, labels_a, 3);
    make_scene(ctx, &scenes[1], 200, boxes_b, labels_b, 2);
    float first = 0, last = 0;
    train(ctx, m, scenes, 2, getenv("FRCNN_TEST_STEPS") ? atoi(getenv("FRCNN_TEST_STEPS")) : 240, 7, &first, &last);
    print_message("overfit: total loss %.4f -> %.4f\n", (double)first, (double)last);

    for (size_t k = 0; k < 2; k++) {
        frcnn_input in = {scenes[k].image, 1.0f};
        frcnn_detection d[100];
        size_t n = 0;
        assert_int_equal(frcnn_model_detect(m, &in, d, 100, &n), FRCNN_OK);
        for (size_t gi = 0; gi < scenes[k].g; gi++) {
            /* the best-scoring detection of the GT's class that overlaps it */
            float best = 0.0f;
            for (size_t i = 0; i < n; i++) {
                float box[4] = {d[i].x1, d[i].y1, d[i].x2, d[i].y2};
                if (d[i].label == scenes[k].labels[gi] && d[i].score > 0.5f)
                    best = fmaxf(best, iou(box, &scenes[k].gt[4 * gi]));
            }
            print_message("scene %zu object %zu (class %d): best IoU %.3f\n", k, gi, (int)scenes[k].labels[gi],
                          (double)best);
            if (!(best > 0.7f))
                for (size_t i = 0; i < n && i < 10; i++)
                    print_message("  detection %zu: class %d score %.3f (%.1f, %.1f, %.1f, %.1f)\n", i, (int)d[i].label,
                                  (double)d[i].score, (double)d[i].x1, (double)d[i].y1, (double)d[i].x2, (double)d[i].y2);
            assert_true(best > 0.7f);
        }
    }
    assert_true(last * 10.0f <= first);
    frcnn_tensor_free(scenes[0].image);
    frcnn_tensor_free(scenes[1].image);
    frcnn_model_free(m);
    frcnn_ctx_free(ctx);
}

/* Two runs from the same seeds give bit-identical losses and weights. */
static void test_same_seed_same_bits(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_config c = tiny_config();
    const float boxes[8] = {8, 10, 55, 57, 70, 20, 139, 89};
    const int32_t labels[2] = {1, 2};
    scene s;
    make_scene(ctx, &s, 100, boxes, labels, 2);
    frcnn_model *m[2];
    float first[2] = {0, 0}, last[2];
    for (int r = 0; r < 2; r++) {
        m[r] = make_model(ctx, &c, 99);
        train(ctx, m[r], &s, 1, 6, 5, &first[r], &last[r]);
    }
    assert_memory_equal(&last[0], &last[1], sizeof(float));
    for (size_t i = 0; i < frcnn_model_param_count(m[0]); i++) {
        frcnn_param a, b;
        frcnn_model_param(m[0], i, &a);
        frcnn_model_param(m[1], i, &b);
        tu_assert_identical(a.name, frcnn_tensor_data(a.value), frcnn_tensor_data(b.value), frcnn_tensor_numel(a.value));
    }
    frcnn_model_free(m[0]);
    frcnn_model_free(m[1]);
    frcnn_tensor_free(s.image);
    frcnn_ctx_free(ctx);
}

/* The stage API: out-of-order calls are refused, and gradients of a loss of one's own reach the parameters: for
 * L = sum(cls * R) + sum(rpn_logits * Q) the bias gradients are exactly the column sums of R and, per anchor
 * channel, of Q. */
static void test_stage_api(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_config c = tiny_config();
    frcnn_model *m = make_model(ctx, &c, 5);
    const float box[4] = {10, 10, 60, 60};
    const int32_t label[1] = {1};
    scene s;
    make_scene(ctx, &s, 8, box, label, 1);
    frcnn_input in = {s.image, 1.0f};
    frcnn_rng rng;
    frcnn_rng_seed(&rng, 3);
    const frcnn_tensor *feature;
    frcnn_rpn_outputs rpn;
    frcnn_head_outputs head;

    tu_expect_error(ctx, frcnn_model_rpn_forward(m, &rpn), FRCNN_ERR_STATE);
    assert_int_equal(frcnn_model_stage_begin(m, &in, true), FRCNN_OK);
    tu_expect_error(ctx, frcnn_model_rpn_forward(m, &rpn), FRCNN_ERR_STATE);
    tu_expect_error(ctx, frcnn_model_backbone_backward(m), FRCNN_ERR_STATE);
    assert_int_equal(frcnn_model_backbone_forward(m, &feature), FRCNN_OK);
    assert_int_equal(frcnn_tensor_dim(feature, 2), IMG_H / 16);
    assert_int_equal(frcnn_model_rpn_forward(m, &rpn), FRCNN_OK);
    assert_int_equal(rpn.n, (size_t)(IMG_H / 16) * (IMG_W / 16) * 9);
    tu_expect_error(ctx, frcnn_model_head_backward(m, rpn.logits, rpn.deltas), FRCNN_ERR_STATE);
    const float rois[8] = {5, 5, 70, 70, 40, 30, 120, 100};
    float too_many[4 * 65];
    for (int i = 0; i < 65; i++)
        memcpy(&too_many[4 * i], rois, 4 * sizeof(float));
    tu_expect_error(ctx, frcnn_model_head_forward(m, too_many, 65, &rng, &head), FRCNN_ERR_SHAPE);
    assert_int_equal(frcnn_model_head_forward(m, rois, 2, &rng, &head), FRCNN_OK);
    assert_int_equal(head.r, 2);
    assert_int_equal(frcnn_tensor_dim(head.cls, 1), 4);
    assert_int_equal(frcnn_tensor_dim(head.box, 1), 16);

    frcnn_tensor *r = tu_tensor(ctx, 2, 2, 4, 0, 0), *zb = tu_tensor(ctx, 2, 2, 16, 0, 0);
    frcnn_tensor *q = tu_tensor(ctx, 2, (int64_t)rpn.n, 2, 0, 0), *zd = tu_tensor(ctx, 2, (int64_t)rpn.n, 4, 0, 0);
    tu_fill_uniform(frcnn_tensor_data(r), 8, 1, -1.0f, 1.0f);
    tu_fill_uniform(frcnn_tensor_data(q), 2 * rpn.n, 2, -1.0f, 1.0f);
    frcnn_model_zero_grad(m);
    frcnn_tensor *wrong = tu_tensor(ctx, 2, 3, 4, 0, 0);
    tu_expect_error(ctx, frcnn_model_head_backward(m, wrong, zb), FRCNN_ERR_SHAPE);
    assert_int_equal(frcnn_model_head_backward(m, r, zb), FRCNN_OK);
    assert_int_equal(frcnn_model_rpn_backward(m, q, zd), FRCNN_OK);
    tu_expect_error(ctx, frcnn_model_head_backward(m, r, zb), FRCNN_ERR_STATE);
    assert_int_equal(frcnn_model_backbone_backward(m), FRCNN_OK);

    frcnn_param p;
    assert_int_equal(frcnn_model_find_param(m, "roi_heads.box_predictor.cls_score.bias", &p), FRCNN_OK);
    float want[4];
    for (int k = 0; k < 4; k++)
        want[k] = frcnn_tensor_data(r)[k] + frcnn_tensor_data(r)[4 + k];
    tu_assert_close("cls_score.bias gradient", frcnn_tensor_data(p.grad), want, 4, 1e-6, 1e-6);
    /* logits row i = anchor (position i / 9, anchor i % 9): column 0 feeds channel a, column 1 channel 9 + a */
    assert_int_equal(frcnn_model_find_param(m, "rpn.head.cls_logits.bias", &p), FRCNN_OK);
    double sums[18] = {0};
    for (size_t i = 0; i < rpn.n; i++) {
        sums[i % 9] += frcnn_tensor_data(q)[2 * i];
        sums[9 + i % 9] += frcnn_tensor_data(q)[2 * i + 1];
    }
    float want18[18];
    for (int k = 0; k < 18; k++)
        want18[k] = (float)sums[k];
    tu_assert_close("cls_logits.bias gradient", frcnn_tensor_data(p.grad), want18, 18, 1e-5, 1e-5);
    /* the backbone received gradients too */
    assert_int_equal(frcnn_model_find_param(m, "backbone.features.0.weight", &p), FRCNN_OK);
    double norm = 0;
    for (size_t i = 0; i < frcnn_tensor_numel(p.grad); i++)
        norm += fabs((double)frcnn_tensor_data(p.grad)[i]);
    assert_true(norm > 0);
    tu_expect_error(ctx, frcnn_model_backbone_backward(m), FRCNN_ERR_STATE);

    frcnn_tensor *all[] = {r, zb, q, zd, wrong, s.image};
    for (size_t i = 0; i < 6; i++)
        frcnn_tensor_free(all[i]);
    frcnn_model_free(m);
    frcnn_ctx_free(ctx);
}

/* ----- torchvision's conventions: continuous boxes, floor-mode pools ---------------------------------------------- */

static void test_config_conventions_validated(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_config c = tiny_config();
    assert_int_equal(c.box_convention, FRCNN_BOXES_INCLUSIVE);
    assert_int_equal(c.pool_floor, 0);
    c.box_convention = FRCNN_BOXES_CONTINUOUS;
    c.pool_floor = 1;
    assert_int_equal(frcnn_config_validate(ctx, &c), FRCNN_OK);
    const int bad[] = {2, -1, 7};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        c = tiny_config();
        c.box_convention = (frcnn_box_convention)bad[i];
        tu_expect_error_msg(ctx, frcnn_config_validate(ctx, &c), FRCNN_ERR_INVALID_ARG, "box_convention");
        frcnn_model *m = NULL;
        tu_expect_error_msg(ctx, frcnn_model_create(ctx, &c, 1, &m), FRCNN_ERR_INVALID_ARG, "box_convention");
        assert_null(m);
        c = tiny_config();
        c.pool_floor = bad[i];
        tu_expect_error_msg(ctx, frcnn_config_validate(ctx, &c), FRCNN_ERR_INVALID_ARG, "pool_floor");
        c = tiny_config();
        c.roi_op = (frcnn_roi_op)(bad[i] + 1); /* 3, 0 (valid: skipped), 8 */
        if (c.roi_op != FRCNN_ROI_POOL)
            tu_expect_error_msg(ctx, frcnn_config_validate(ctx, &c), FRCNN_ERR_INVALID_ARG, "roi_op");
    }
    frcnn_ctx_free(ctx);
}

enum { ODD_H = 200, ODD_W = 232 }; /* not multiples of 16: ceil and floor pools differ */

/* A noisy h x w image with the given ground truth (no drawing: draw() is for IMG_H x IMG_W). */
static void make_plain_scene(frcnn_ctx *ctx, scene *s, int h, int w, uint64_t seed, const float *boxes,
                             const int32_t *labels, size_t g)
{
    s->image = tu_tensor(ctx, 4, 1, 3, h, w);
    tu_fill_uniform(frcnn_tensor_data(s->image), frcnn_tensor_numel(s->image), seed, -0.5f, 0.5f);
    s->g = g;
    memcpy(s->gt, boxes, 4 * g * sizeof(float));
    memcpy(s->labels, labels, g * sizeof(int32_t));
}

/* The backbone's output is (ceil or floor)(side / 16) after four 2x2 pools: 200 x 232 gives 13 x 15 in Caffe's
 * ceil mode, 12 x 14 in floor mode; the RPN's outputs follow. */
static void test_pool_floor_feature_size(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    for (int floor_mode = 0; floor_mode <= 1; floor_mode++) {
        frcnn_config c = tu_tiny_config(ODD_H, ODD_W, 32, 64);
        c.pool_floor = floor_mode;
        frcnn_model *m = make_model(ctx, &c, 4);
        frcnn_tensor *img = tu_tensor(ctx, 4, 1, 3, ODD_H, ODD_W);
        tu_fill_uniform(frcnn_tensor_data(img), frcnn_tensor_numel(img), 6, -0.5f, 0.5f);
        frcnn_input in = {img, 1.0f};
        const frcnn_tensor *feature;
        frcnn_rpn_outputs rpn;
        const int fh = floor_mode ? ODD_H / 16 : (ODD_H + 15) / 16, fw = floor_mode ? ODD_W / 16 : (ODD_W + 15) / 16;
        assert_int_equal(fh, floor_mode ? 12 : 13);
        for (int train = 0; train <= 1; train++) {
            assert_int_equal(frcnn_model_stage_begin(m, &in, train), FRCNN_OK);
            assert_int_equal(frcnn_model_backbone_forward(m, &feature), FRCNN_OK);
            assert_int_equal(frcnn_tensor_dim(feature, 2), fh);
            assert_int_equal(frcnn_tensor_dim(feature, 3), fw);
            assert_int_equal(frcnn_model_rpn_forward(m, &rpn), FRCNN_OK);
            assert_int_equal(rpn.feat_h, fh);
            assert_int_equal(rpn.feat_w, fw);
            assert_int_equal(rpn.n, (size_t)fh * fw * 9);
        }
        frcnn_tensor_free(img);
        frcnn_model_free(m);
    }
    frcnn_ctx_free(ctx);
}

/* A model with continuous boxes and floor-mode pools on an image whose sides are not multiples of 16: its anchors
 * are torchvision's, a few training steps give finite losses and the same bits twice, and detection returns boxes
 * inside [0, W] x [0, H]. */
static void test_continuous_floor_model(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_config c = tu_tiny_config(ODD_H, ODD_W, 32, 64);
    c.box_convention = FRCNN_BOXES_CONTINUOUS;
    c.pool_floor = 1;
    /* The second box ends at the far corner: (W, H) is inside a continuous image. */
    const float boxes[8] = {10, 12, 90, 100, 120, 40, ODD_W, ODD_H};
    const int32_t labels[2] = {1, 3};
    scene s;
    make_plain_scene(ctx, &s, ODD_H, ODD_W, 21, boxes, labels, 2);
    frcnn_input in = {s.image, 1.0f};

    /* The anchors of cell (0, 0) are the continuous base anchors (centred on 0, not on 7.5). */
    frcnn_model *m[2];
    m[0] = make_model(ctx, &c, 31);
    /* The stage parameters follow the configuration's convention. */
    const frcnn_config *mc = frcnn_model_config(m[0]);
    assert_int_equal(mc->rpn_targets.box_convention, FRCNN_BOXES_CONTINUOUS);
    assert_int_equal(mc->train_proposals.box_convention, FRCNN_BOXES_CONTINUOUS);
    assert_int_equal(mc->test_proposals.box_convention, FRCNN_BOXES_CONTINUOUS);
    assert_int_equal(mc->roi_targets.box_convention, FRCNN_BOXES_CONTINUOUS);
    float base[9 * 4];
    assert_int_equal(frcnn_anchors_base_conv(ctx, FRCNN_BOXES_CONTINUOUS, &c.anchors, base), FRCNN_OK);
    assert_true(base[0] == -base[2]);
    const frcnn_tensor *feature;
    frcnn_rpn_outputs rpn;
    assert_int_equal(frcnn_model_stage_begin(m[0], &in, false), FRCNN_OK);
    assert_int_equal(frcnn_model_backbone_forward(m[0], &feature), FRCNN_OK);
    assert_int_equal(frcnn_model_rpn_forward(m[0], &rpn), FRCNN_OK);
    tu_assert_identical("model anchors at cell (0, 0)", rpn.anchors, base, 9 * 4);
    assert_int_equal(rpn.feat_h, ODD_H / 16);

    m[1] = make_model(ctx, &c, 31);
    float first[2] = {0, 0}, last[2];
    for (int r = 0; r < 2; r++)
        train(ctx, m[r], &s, 1, 5, 8, &first[r], &last[r]);
    assert_true(isfinite(first[0]) && isfinite(last[0]));
    assert_memory_equal(&first[0], &first[1], sizeof(float));
    assert_memory_equal(&last[0], &last[1], sizeof(float));
    for (size_t i = 0; i < frcnn_model_param_count(m[0]); i++) {
        frcnn_param a, b;
        frcnn_model_param(m[0], i, &a);
        frcnn_model_param(m[1], i, &b);
        tu_assert_identical(a.name, frcnn_tensor_data(a.value), frcnn_tensor_data(b.value),
                            frcnn_tensor_numel(a.value));
    }

    frcnn_detection d[100];
    size_t n = 0;
    frcnn_status st = frcnn_model_detect(m[0], &in, d, 100, &n);
    if (st != FRCNN_OK)
        print_error("detect: %s\n", frcnn_ctx_last_error(ctx));
    assert_int_equal(st, FRCNN_OK);
    assert_true(n > 0);
    size_t at_far_edge = 0;
    for (size_t i = 0; i < n; i++) {
        at_far_edge += d[i].x2 == (float)ODD_W || d[i].y2 == (float)ODD_H;
        if (!(0 <= d[i].x1 && d[i].x1 <= d[i].x2 && d[i].x2 <= ODD_W && 0 <= d[i].y1 && d[i].y1 <= d[i].y2 &&
              d[i].y2 <= ODD_H))
            fail_msg("detection %zu (%g, %g, %g, %g) outside [0, %d] x [0, %d]", i, (double)d[i].x1,
                     (double)d[i].y1, (double)d[i].x2, (double)d[i].y2, ODD_W, ODD_H);
    }
    /* Boxes running off the image are clipped to the far edge itself (inclusive: W - 1); an untrained model has
     * several near the large box in the corner. */
    assert_true(at_far_edge > 0);

    /* A GT box that only touches the image covers none of it: refused, where the inclusive convention refuses
     * a box starting past the last pixel. */
    frcnn_rng rng;
    frcnn_rng_seed(&rng, 1);
    frcnn_losses l;
    const float touching[3][4] = {{ODD_W, 10, ODD_W + 6, 30}, {-6, 10, 0, 30}, {10, ODD_H, 20, ODD_H + 6}};
    for (int i = 0; i < 3; i++)
        tu_expect_error_msg(ctx, frcnn_model_train_step(m[0], &in, touching[i], labels, 1, &rng, &l),
                            FRCNN_ERR_INVALID_ARG, "outside");
    frcnn_model_free(m[0]);
    frcnn_model_free(m[1]);
    frcnn_tensor_free(s.image);
    frcnn_ctx_free(ctx);
}

/* The backbone's feature map for one input, copied. */
static float *feature_of(frcnn_model *m, frcnn_tensor *image, bool train, size_t *n)
{
    frcnn_input in = {image, 1.0f};
    const frcnn_tensor *feature;
    assert_int_equal(frcnn_model_stage_begin(m, &in, train), FRCNN_OK);
    assert_int_equal(frcnn_model_backbone_forward(m, &feature), FRCNN_OK);
    *n = frcnn_tensor_numel(feature);
    float *copy = malloc(*n * sizeof *copy);
    assert_non_null(copy);
    memcpy(copy, frcnn_tensor_data(feature), *n * sizeof *copy);
    return copy;
}

/* Layers whose outputs no backward pass reads (frozen ones; all at inference) run in bands of rows when a max-pool
 * follows them, and the stages after the backbone may then live in its free buffer (model.c). With a plan 2048
 * wide the first layer's bands are 16 rows, so a 77-row input runs five, the last odd. Two frozen layers with ceil
 * or floor pools, every layer frozen (the feature map itself in a shared buffer), and two frozen layers with
 * GroupNorm (not banded, the later stages in the free buffer): the same feature map, at inference too, and the
 * same losses for a training step as the same model with nothing frozen. */
static void test_banded_layers(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    const float gt[8] = {10, 12, 60, 50, 40, 30, 95, 70};
    const int32_t labels[2] = {1, 3};
    const struct {
        int pool_floor, frozen, groups;
    } variants[] = {{0, 2, 0}, {1, 2, 0}, {0, 5, 0}, {0, 2, 8}};
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
        frcnn_config c = tu_tiny_config(IMG_H, 2048, 64, 256);
        c.pool_floor = variants[v].pool_floor;
        c.norm_groups = variants[v].groups;
        frcnn_model *whole = make_model(ctx, &c, 5);
        c.frozen_convs = variants[v].frozen;
        frcnn_model *banded = make_model(ctx, &c, 5);
        frcnn_tensor *image = tu_tensor(ctx, 4, 1, 3, 77, 101);
        tu_fill_uniform(frcnn_tensor_data(image), frcnn_tensor_numel(image), 9, -1.0f, 1.0f);
        size_t n, n_frozen, n_eval;
        float *want = feature_of(whole, image, true, &n);
        float *frozen = feature_of(banded, image, true, &n_frozen);
        float *eval = feature_of(whole, image, false, &n_eval);
        assert_int_equal(n_frozen, n);
        assert_int_equal(n_eval, n);
        print_message("variant %zu: pool_floor %d, %d frozen, %d groups\n", v, variants[v].pool_floor,
                      variants[v].frozen, variants[v].groups);
        tu_assert_close("feature with frozen layers", frozen, want, n, 2e-5, 1e-5);
        tu_assert_close("feature at inference", eval, want, n, 2e-5, 1e-5);
        free(want), free(frozen), free(eval);

        frcnn_input in = {image, 1.0f};
        frcnn_losses l[2];
        frcnn_model *m[2] = {whole, banded};
        for (int k = 0; k < 2; k++) {
            frcnn_rng rng;
            frcnn_rng_seed(&rng, 17);
            frcnn_model_zero_grad(m[k]);
            assert_int_equal(frcnn_model_train_step(m[k], &in, gt, labels, 2, &rng, &l[k]), FRCNN_OK);
        }
        const float got[4] = {l[1].rpn_cls, l[1].rpn_box, l[1].cls, l[1].box};
        const float ref[4] = {l[0].rpn_cls, l[0].rpn_box, l[0].cls, l[0].box};
        tu_assert_close("losses with frozen layers", got, ref, 4, 1e-5, 1e-5);
        frcnn_detection d[2][100];
        size_t nd[2];
        for (int k = 0; k < 2; k++)
            assert_int_equal(frcnn_model_detect(m[k], &in, d[k], 100, &nd[k]), FRCNN_OK);
        assert_int_equal(nd[1], nd[0]);
        frcnn_tensor_free(image);
        frcnn_model_free(whole);
        frcnn_model_free(banded);
    }
    frcnn_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_presets_and_params),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_head_gradients),
        cmocka_unit_test(test_backbone_gradients),
        cmocka_unit_test(test_roi_align_gradients),
        cmocka_unit_test(test_stage_api),
        cmocka_unit_test(test_same_seed_same_bits),
        cmocka_unit_test(test_overfit_detects_every_object),
        cmocka_unit_test(test_config_conventions_validated),
        cmocka_unit_test(test_pool_floor_feature_size),
        cmocka_unit_test(test_continuous_floor_model),
        cmocka_unit_test(test_banded_layers),
    };
    if (getenv("FRCNN_TEST_FILTER"))
        cmocka_set_test_filter(getenv("FRCNN_TEST_FILTER"));
    return cmocka_run_group_tests_name("model", tests, NULL, NULL);
}
