/* Optimizers and learning-rate schedules: hand-computed SGD (Caffe's form), Adam and AdamW against double-precision
 * references, frozen parameters, accumulation, clipping, the non-finite gradient guard, state naming, parameter
 * validation, the schedules' values and purity, and a short training run that must lower the loss. */
#include "testutil.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { IMG_H = 128, IMG_W = 160 };

/* Copied from tests/test_model.c: the small backbone at 128x160 with anchors of 32..128 px. */
static frcnn_config tiny_config(void)
{
    return tu_tiny_config(IMG_H, IMG_W, 64, 256);
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

/* The tiny model shared by the optimizer tests (creating one takes a good part of the test's time budget). Each test
 * zeroes the gradients it relies on and takes the current weights as its starting point. */
typedef struct fixture {
    tu_alloc_state alloc; /* the context's allocator */
    frcnn_ctx *ctx;
    frcnn_model *model;
} fixture;

static int fixture_setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    tu_alloc_init(&f->alloc, 0);
    f->ctx = tu_alloc_ctx(&f->alloc, NULL);
    frcnn_config c = tiny_config();
    if (frcnn_model_create(f->ctx, &c, 11, &f->model) != FRCNN_OK)
        return -1;
    *state = f;
    return 0;
}

static int fixture_teardown(void **state)
{
    fixture *f = *state;
    frcnn_model_free(f->model);
    frcnn_ctx_free(f->ctx);
    tu_alloc_assert_clean(&f->alloc);
    free(f);
    return 0;
}

static frcnn_optim *make_optim(frcnn_ctx *ctx, const frcnn_optim_params *p, frcnn_model *m)
{
    frcnn_optim *o = NULL;
    frcnn_status st = frcnn_optim_create(ctx, p, m, &o);
    if (st != FRCNN_OK)
        print_error("optim_create: %s\n", frcnn_ctx_last_error(ctx));
    assert_int_equal(st, FRCNN_OK);
    return o;
}

static frcnn_param get_param(frcnn_model *m, const char *name)
{
    frcnn_param p;
    assert_int_equal(frcnn_model_find_param(m, name, &p), FRCNN_OK);
    return p;
}

static float *copy_of(const frcnn_tensor *t)
{
    float *c = malloc(frcnn_tensor_numel(t) * sizeof *c);
    assert_non_null(c);
    memcpy(c, frcnn_tensor_data(t), frcnn_tensor_numel(t) * sizeof *c);
    return c;
}

static double *dcopy_of(const frcnn_tensor *t)
{
    size_t n = frcnn_tensor_numel(t);
    double *c = calloc(n, sizeof *c);
    assert_non_null(c);
    for (size_t i = 0; i < n; i++)
        c[i] = frcnn_tensor_data(t)[i];
    return c;
}

static void assert_close_double(const char *what, const float *got, const double *want, size_t n, double atol,
                                double rtol)
{
    float *w = malloc(n * sizeof *w);
    assert_non_null(w);
    for (size_t i = 0; i < n; i++)
        w[i] = (float)want[i];
    tu_assert_close(what, got, w, n, atol, rtol);
    free(w);
}

static const char *const W_NAME = "rpn.head.cls_logits.weight";
static const char *const B_NAME = "rpn.head.cls_logits.bias";
static const char *const OTHER_NAME = "roi_heads.box_predictor.cls_score.weight";

/* Caffe's SGD for two steps, by hand in double: g += wd w; v = 0.9 v + lr g; w -= v. The bias runs at 2x lr without
 * decay; a weight with zero gradient still decays. */
static void test_sgd_hand_computed(void **state)
{
    fixture *fx = *state;
    frcnn_ctx *ctx = fx->ctx;
    frcnn_model *m = fx->model;
    frcnn_optim_params op = frcnn_optim_params_sgd();
    frcnn_optim *o = make_optim(ctx, &op, m);
    frcnn_param w = get_param(m, W_NAME), b = get_param(m, B_NAME), other = get_param(m, OTHER_NAME);
    size_t nw = frcnn_tensor_numel(w.value), nb = frcnn_tensor_numel(b.value), no = frcnn_tensor_numel(other.value);
    double *ew = dcopy_of(w.value), *eb = dcopy_of(b.value), *eo = dcopy_of(other.value);
    double *vw = calloc(nw, sizeof *vw), *vb = calloc(nb, sizeof *vb), *vo = calloc(no, sizeof *vo);
    const float lr[2] = {0.01f, 0.004f};
    for (int step = 0; step < 2; step++) {
        frcnn_model_zero_grad(m);
        tu_fill_uniform(frcnn_tensor_data(w.grad), nw, 100 + (uint64_t)step, -1.0f, 1.0f);
        tu_fill_uniform(frcnn_tensor_data(b.grad), nb, 200 + (uint64_t)step, -1.0f, 1.0f);
        for (size_t i = 0; i < nw; i++) {
            double g = frcnn_tensor_data(w.grad)[i] + 0.0005 * ew[i];
            vw[i] = 0.9 * vw[i] + lr[step] * g;
            ew[i] -= vw[i];
        }
        for (size_t i = 0; i < nb; i++) {
            double g = frcnn_tensor_data(b.grad)[i];
            vb[i] = 0.9 * vb[i] + 2.0 * lr[step] * g;
            eb[i] -= vb[i];
        }
        for (size_t i = 0; i < no; i++) {
            vo[i] = 0.9 * vo[i] + lr[step] * 0.0005 * eo[i];
            eo[i] -= vo[i];
        }
        assert_int_equal(frcnn_optim_step(o, lr[step]), FRCNN_OK);
    }
    assert_int_equal(frcnn_optim_steps(o), 2);
    assert_close_double("weight", frcnn_tensor_data(w.value), ew, nw, 1e-7, 1e-5);
    assert_close_double("bias", frcnn_tensor_data(b.value), eb, nb, 1e-7, 1e-5);
    assert_close_double("decayed weight", frcnn_tensor_data(other.value), eo, no, 1e-9, 1e-5);
    /* the momentum buffers, found by name */
    size_t found = 0;
    for (size_t i = 0; i < frcnn_optim_state_count(o); i++) {
        const char *name;
        frcnn_tensor *buf;
        assert_int_equal(frcnn_optim_state(o, i, &name, &buf), FRCNN_OK);
        if (strcmp(name, "rpn.head.cls_logits.weight.momentum") == 0) {
            assert_close_double("weight momentum", frcnn_tensor_data(buf), vw, nw, 1e-9, 1e-5);
            found++;
        } else if (strcmp(name, "rpn.head.cls_logits.bias.momentum") == 0) {
            assert_close_double("bias momentum", frcnn_tensor_data(buf), vb, nb, 1e-9, 1e-5);
            found++;
        }
    }
    assert_int_equal(found, 2);
    free(ew), free(eb), free(eo), free(vw), free(vb), free(vo);
    frcnn_optim_free(o);
}

/* The state names follow the trainable parameters in order: "<param>.momentum" for SGD, "<param>.adam_m" and
 * "<param>.adam_v" for Adam and AdamW; each buffer has its parameter's shape. */
static void check_state_names(frcnn_ctx *ctx, frcnn_model *m, frcnn_optim_kind kind)
{
    frcnn_optim_params op = kind == FRCNN_OPTIM_SGD ? frcnn_optim_params_sgd() : frcnn_optim_params_adam();
    op.kind = kind;
    frcnn_optim *o = make_optim(ctx, &op, m);
    size_t per = kind == FRCNN_OPTIM_SGD ? 1 : 2, s = 0, n_train = 0;
    for (size_t i = 0; i < frcnn_model_param_count(m); i++) {
        frcnn_param p;
        assert_int_equal(frcnn_model_param(m, i, &p), FRCNN_OK);
        if (!p.trainable)
            continue;
        n_train++;
        for (size_t k = 0; k < per; k++, s++) {
            const char *name = NULL;
            frcnn_tensor *buf = NULL;
            assert_int_equal(frcnn_optim_state(o, s, &name, &buf), FRCNN_OK);
            char want[256];
            snprintf(want, sizeof want, "%s%s", p.name, per == 1 ? ".momentum" : k == 0 ? ".adam_m" : ".adam_v");
            assert_string_equal(name, want);
            assert_int_equal(frcnn_tensor_ndim(buf), frcnn_tensor_ndim(p.value));
            for (int d = 0; d < frcnn_tensor_ndim(buf); d++)
                assert_int_equal(frcnn_tensor_dim(buf, d), frcnn_tensor_dim(p.value, d));
        }
    }
    assert_int_equal(frcnn_optim_state_count(o), per * n_train);
    const char *name;
    frcnn_tensor *buf;
    tu_expect_error(ctx, frcnn_optim_state(o, s, &name, &buf), FRCNN_ERR_INVALID_ARG);
    frcnn_optim_free(o);
}

static void test_state_names(void **state)
{
    fixture *fx = *state;
    check_state_names(fx->ctx, fx->model, FRCNN_OPTIM_SGD);
    check_state_names(fx->ctx, fx->model, FRCNN_OPTIM_ADAM);
    check_state_names(fx->ctx, fx->model, FRCNN_OPTIM_ADAMW);
}

/* VGG16 with conv1_x and conv2_x frozen (the paper): their weights stay bit-identical even with non-zero
 * gradients, and they have no state. */
static void test_frozen_untouched(void **state)
{
    fixture *fx = *state;
    frcnn_ctx *ctx = fx->ctx;
    frcnn_config c = tiny_config();
    c.backbone = FRCNN_BACKBONE_VGG16;
    c.frozen_convs = 4;
    c.short_side = 64; /* smaller than tiny_config: only the parameter table matters here */
    c.max_side = 80;
    c.fc_channels = 64;
    frcnn_model *m = make_model(ctx, &c, 3);
    size_t np = frcnn_model_param_count(m), n_train = 0;
    float **before = calloc(np, sizeof *before), *first = calloc(np, sizeof *first);
    for (size_t i = 0; i < np; i++) {
        frcnn_param p;
        assert_int_equal(frcnn_model_param(m, i, &p), FRCNN_OK);
        frcnn_tensor_fill(p.grad, 0.25f);
        if (!p.trainable)
            before[i] = copy_of(p.value);
        first[i] = frcnn_tensor_data(p.value)[0];
        n_train += p.trainable;
    }
    assert_int_equal(n_train, np - 8); /* conv1_1 .. conv2_2, weight and bias */
    frcnn_optim_params op = frcnn_optim_params_sgd();
    frcnn_optim *o = make_optim(ctx, &op, m);
    assert_int_equal(frcnn_optim_state_count(o), n_train);
    for (size_t i = 0; i < frcnn_optim_state_count(o); i++) {
        const char *name;
        frcnn_optim_state(o, i, &name, NULL);
        assert_null(strstr(name, "backbone.features.0.")); /* conv1_1 */
        assert_null(strstr(name, "backbone.features.7.")); /* conv2_2 */
    }
    assert_int_equal(frcnn_optim_step(o, 0.001f), FRCNN_OK);
    for (size_t i = 0; i < np; i++) {
        frcnn_param p;
        frcnn_model_param(m, i, &p);
        if (!p.trainable) {
            tu_assert_identical(p.name, frcnn_tensor_data(p.value), before[i], frcnn_tensor_numel(p.value));
            free(before[i]);
        } else {
            assert_true(frcnn_tensor_data(p.value)[0] != first[i]);
        }
    }
    free(before);
    free(first);
    frcnn_optim_free(o);
    frcnn_model_free(m);
}

/* accumulate divides the summed gradient; clip_norm scales the global norm (over all trainable params) down to it. */
static void test_accumulate_and_clip(void **state)
{
    fixture *fx = *state;
    frcnn_ctx *ctx = fx->ctx;
    frcnn_model *m = fx->model;
    frcnn_param w = get_param(m, W_NAME), b = get_param(m, B_NAME);
    size_t nw = frcnn_tensor_numel(w.value), nb = frcnn_tensor_numel(b.value);
    frcnn_optim_params op = frcnn_optim_params_sgd();
    op.momentum = 0.0f;
    op.weight_decay = 0.0f;
    op.accumulate = 4;
    const float lr = 0.1f;

    /* accumulate 4: a summed gradient of 4 x is the update of x */
    frcnn_optim *o = make_optim(ctx, &op, m);
    frcnn_model_zero_grad(m);
    tu_fill_uniform(frcnn_tensor_data(w.grad), nw, 5, -1.0f, 1.0f);
    double *ew = dcopy_of(w.value);
    for (size_t i = 0; i < nw; i++) {
        ew[i] -= lr * (frcnn_tensor_data(w.grad)[i] / 4.0);
    }
    assert_int_equal(frcnn_optim_step(o, lr), FRCNN_OK);
    assert_close_double("accumulated", frcnn_tensor_data(w.value), ew, nw, 1e-8, 1e-6);
    frcnn_optim_free(o);

    /* clipping: norm of g = grad / 2 over two parameters, clip to half of it */
    op.accumulate = 2;
    frcnn_model_zero_grad(m);
    tu_fill_uniform(frcnn_tensor_data(w.grad), nw, 6, -1.0f, 1.0f);
    tu_fill_uniform(frcnn_tensor_data(b.grad), nb, 7, -1.0f, 1.0f);
    double sq = 0.0;
    for (size_t i = 0; i < nw; i++)
        sq += pow(frcnn_tensor_data(w.grad)[i] / 2.0, 2);
    for (size_t i = 0; i < nb; i++)
        sq += pow(frcnn_tensor_data(b.grad)[i] / 2.0, 2);
    double norm = sqrt(sq);
    op.clip_norm = (float)(norm / 2.0);
    double scale = (double)op.clip_norm / norm;
    o = make_optim(ctx, &op, m);
    double *w0 = dcopy_of(w.value), *b0 = dcopy_of(b.value);
    for (size_t i = 0; i < nw; i++)
        ew[i] = w0[i] - lr * frcnn_tensor_data(w.grad)[i] / 2.0 * scale;
    double *eb = dcopy_of(b.value);
    for (size_t i = 0; i < nb; i++)
        eb[i] = b0[i] - 2.0 * lr * frcnn_tensor_data(b.grad)[i] / 2.0 * scale;
    assert_int_equal(frcnn_optim_step(o, lr), FRCNN_OK);
    assert_close_double("clipped weight", frcnn_tensor_data(w.value), ew, nw, 1e-8, 1e-5);
    assert_close_double("clipped bias", frcnn_tensor_data(b.value), eb, nb, 1e-8, 1e-5);
    /* the clipped update's norm (weights: lr, biases: 2 lr) */
    double un = 0.0;
    for (size_t i = 0; i < nw; i++)
        un += pow((w0[i] - frcnn_tensor_data(w.value)[i]) / lr, 2);
    for (size_t i = 0; i < nb; i++)
        un += pow((b0[i] - frcnn_tensor_data(b.value)[i]) / (2 * lr), 2);
    assert_true(fabs(sqrt(un) - op.clip_norm) < 1e-3 * op.clip_norm);
    frcnn_optim_free(o);

    /* a norm below clip_norm is left alone */
    op.clip_norm = (float)(norm * 2.0);
    o = make_optim(ctx, &op, m);
    for (size_t i = 0; i < nw; i++)
        ew[i] = frcnn_tensor_data(w.value)[i] - lr * frcnn_tensor_data(w.grad)[i] / 2.0;
    assert_int_equal(frcnn_optim_step(o, lr), FRCNN_OK);
    assert_close_double("unclipped weight", frcnn_tensor_data(w.value), ew, nw, 1e-8, 1e-5);
    frcnn_optim_free(o);
    free(ew), free(eb), free(w0), free(b0);
}

/* Adam (L2 decay in the gradient) and AdamW (decoupled decay) for 3 steps against double references. */
static void check_adam(fixture *fx, frcnn_optim_kind kind)
{
    frcnn_ctx *ctx = fx->ctx;
    frcnn_model *m = fx->model;
    frcnn_optim_params op = frcnn_optim_params_adam();
    op.kind = kind;
    op.weight_decay = 0.05f;
    op.accumulate = 2;
    frcnn_optim *o = make_optim(ctx, &op, m);
    assert_string_equal(frcnn_optim_kind_name(kind), kind == FRCNN_OPTIM_ADAM ? "adam" : "adamw");
    frcnn_param ps[2] = {get_param(m, W_NAME), get_param(m, B_NAME)};
    double *ew[2], *em[2], *ev[2];
    for (int k = 0; k < 2; k++) {
        size_t n = frcnn_tensor_numel(ps[k].value);
        ew[k] = dcopy_of(ps[k].value);
        em[k] = calloc(n, sizeof(double));
        ev[k] = calloc(n, sizeof(double));
    }
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    const float lr[3] = {0.01f, 0.005f, 0.002f};
    for (int t = 1; t <= 3; t++) {
        frcnn_model_zero_grad(m);
        for (int k = 0; k < 2; k++) {
            size_t n = frcnn_tensor_numel(ps[k].value);
            const float *gr = frcnn_tensor_data(ps[k].grad);
            tu_fill_uniform(frcnn_tensor_data(ps[k].grad), n, 300 + 10 * (uint64_t)t + (uint64_t)k, -2.0f, 2.0f);
            double llr = lr[t - 1] * (k == 1 ? 2.0 : 1.0), decay = k == 1 ? 0.0 : 0.05;
            for (size_t i = 0; i < n; i++) {
                double g = gr[i] / 2.0;
                if (kind == FRCNN_OPTIM_ADAMW)
                    ew[k][i] -= llr * decay * ew[k][i];
                else
                    g += decay * ew[k][i];
                em[k][i] = b1 * em[k][i] + (1 - b1) * g;
                ev[k][i] = b2 * ev[k][i] + (1 - b2) * g * g;
                double mh = em[k][i] / (1 - pow(b1, t)), vh = ev[k][i] / (1 - pow(b2, t));
                ew[k][i] -= llr * mh / (sqrt(vh) + eps);
            }
        }
        assert_int_equal(frcnn_optim_step(o, lr[t - 1]), FRCNN_OK);
    }
    assert_int_equal(frcnn_optim_steps(o), 3);
    const char *names[2] = {W_NAME, B_NAME};
    for (int k = 0; k < 2; k++) {
        size_t n = frcnn_tensor_numel(ps[k].value);
        assert_close_double(names[k], frcnn_tensor_data(ps[k].value), ew[k], n, 2e-7, 1e-5);
        for (size_t i = 0; i < frcnn_optim_state_count(o); i++) {
            const char *name;
            frcnn_tensor *buf;
            frcnn_optim_state(o, i, &name, &buf);
            if (strncmp(name, names[k], strlen(names[k])) != 0 || strchr(name + strlen(names[k]) + 1, '.'))
                continue;
            if (strcmp(name + strlen(names[k]), ".adam_m") == 0)
                assert_close_double(name, frcnn_tensor_data(buf), em[k], n, 1e-7, 1e-4);
            else if (strcmp(name + strlen(names[k]), ".adam_v") == 0)
                assert_close_double(name, frcnn_tensor_data(buf), ev[k], n, 1e-9, 1e-4);
            else
                fail_msg("unexpected state name %s", name);
        }
        free(ew[k]), free(em[k]), free(ev[k]);
    }
    frcnn_optim_free(o);
}

static void test_adam(void **state)
{
    check_adam(*state, FRCNN_OPTIM_ADAM);
}

static void test_adamw(void **state)
{
    check_adam(*state, FRCNN_OPTIM_ADAMW);
}

/* set_steps moves Adam's bias correction: after set_steps(9) the first update uses t = 10. */
static void test_set_steps(void **state)
{
    fixture *fx = *state;
    frcnn_ctx *ctx = fx->ctx;
    frcnn_model *m = fx->model;
    frcnn_optim_params op = frcnn_optim_params_adam();
    op.weight_decay = 0.0f;
    frcnn_optim *o = make_optim(ctx, &op, m);
    assert_int_equal(frcnn_optim_steps(o), 0);
    frcnn_optim_set_steps(o, 9);
    assert_int_equal(frcnn_optim_steps(o), 9);
    frcnn_param w = get_param(m, W_NAME);
    frcnn_model_zero_grad(m);
    frcnn_tensor_data(w.grad)[0] = 0.5f;
    float w0 = frcnn_tensor_data(w.value)[0];
    assert_int_equal(frcnn_optim_step(o, 0.01f), FRCNN_OK);
    assert_int_equal(frcnn_optim_steps(o), 10);
    double mh = 0.1 * 0.5 / (1 - pow(0.9, 10)), vh = 0.001 * 0.25 / (1 - pow(0.999, 10));
    double want = w0 - 0.01 * mh / (sqrt(vh) + 1e-8);
    assert_true(fabs(frcnn_tensor_data(w.value)[0] - want) < 1e-6);
    {
        const frcnn_optim_params *gp = frcnn_optim_get_params(o);
        assert_non_null(gp);
        assert_int_equal(gp->kind, FRCNN_OPTIM_ADAM);
        assert_true(gp->beta2 == 0.999f);
    }
    frcnn_optim_free(o);
}

/* Momentum and Adam's moments of a parameter whose gradient stops decay geometrically; once below FLT_MIN they
 * are exactly 0, never subnormal (which x86 computes about 100 times more slowly). */
static void test_decayed_state_flushed(void **state)
{
    fixture *fx = *state;
    frcnn_ctx *ctx = fx->ctx;
    frcnn_model *m = fx->model;
    for (int kind = 0; kind < 2; kind++) {
        frcnn_optim_params op = kind == 0 ? frcnn_optim_params_sgd() : frcnn_optim_params_adam();
        frcnn_optim *o = make_optim(ctx, &op, m);
        frcnn_param b = get_param(m, B_NAME); /* a bias: no weight decay, so its gradient is 0 once we stop */
        frcnn_model_zero_grad(m);
        frcnn_tensor_data(b.grad)[0] = 1.0f;
        assert_int_equal(frcnn_optim_step(o, 0.01f), FRCNN_OK);
        frcnn_model_zero_grad(m);
        for (int i = 0; i < 1000; i++) /* 0.9^1000 is 1.7e-46 */
            assert_int_equal(frcnn_optim_step(o, 0.01f), FRCNN_OK);
        char want[128];
        snprintf(want, sizeof want, "%s.%s", B_NAME, kind == 0 ? "momentum" : "adam_m");
        bool seen = false;
        for (size_t i = 0; i < frcnn_optim_state_count(o); i++) {
            const char *name;
            frcnn_tensor *buf;
            frcnn_optim_state(o, i, &name, &buf);
            const float *d = frcnn_tensor_data(buf);
            for (size_t k = 0; k < frcnn_tensor_numel(buf); k++)
                if (d[k] != 0.0f && fabsf(d[k]) < FLT_MIN)
                    fail_msg("%s[%zu] is subnormal: %g", name, k, (double)d[k]);
            if (strcmp(name, want) == 0) {
                assert_true(d[0] == 0.0f);
                seen = true;
            }
        }
        assert_true(seen);
        frcnn_optim_free(o);
    }
}

/* A NaN or infinite gradient is refused before anything changes: weights, state and step count bit-identical. */
static void test_not_finite_changes_nothing(void **state)
{
    fixture *fx = *state;
    frcnn_ctx *ctx = fx->ctx;
    frcnn_model *m = fx->model;
    for (int kind = 0; kind < 2; kind++) {
        frcnn_optim_params op = kind == 0 ? frcnn_optim_params_sgd() : frcnn_optim_params_adam();
        op.clip_norm = kind == 1 ? 10.0f : 0.0f;
        frcnn_optim *o = make_optim(ctx, &op, m);
        size_t np = frcnn_model_param_count(m), ns = frcnn_optim_state_count(o);
        for (size_t i = 0; i < np; i++) {
            frcnn_param p;
            frcnn_model_param(m, i, &p);
            tu_fill_uniform(frcnn_tensor_data(p.grad), frcnn_tensor_numel(p.grad), 40 + i, -1.0f, 1.0f);
        }
        assert_int_equal(frcnn_optim_step(o, 0.01f), FRCNN_OK); /* non-zero state */
        frcnn_param bad = get_param(m, "roi_heads.box_predictor.bbox_pred.weight");
        frcnn_tensor_data(bad.grad)[37] = kind == 0 ? NAN : -INFINITY;
        float **wb = calloc(np, sizeof *wb), **sb = calloc(ns, sizeof *sb);
        for (size_t i = 0; i < np; i++) {
            frcnn_param p;
            frcnn_model_param(m, i, &p);
            wb[i] = copy_of(p.value);
        }
        for (size_t i = 0; i < ns; i++) {
            frcnn_tensor *buf;
            frcnn_optim_state(o, i, NULL, &buf);
            sb[i] = copy_of(buf);
        }
        tu_expect_error_msg(ctx, frcnn_optim_step(o, 0.01f), FRCNN_ERR_NOT_FINITE,
                            "roi_heads.box_predictor.bbox_pred.weight");
        frcnn_tensor_data(bad.grad)[37] = kind == 0 ? NAN : -INFINITY;
        frcnn_optim_step(o, 0.01f);
        assert_non_null(strstr(frcnn_ctx_last_error(ctx), "37"));
        frcnn_ctx_clear_error(ctx);
        assert_int_equal(frcnn_optim_steps(o), 1);
        for (size_t i = 0; i < np; i++) {
            frcnn_param p;
            frcnn_model_param(m, i, &p);
            tu_assert_identical(p.name, frcnn_tensor_data(p.value), wb[i], frcnn_tensor_numel(p.value));
            free(wb[i]);
        }
        for (size_t i = 0; i < ns; i++) {
            const char *name;
            frcnn_tensor *buf;
            frcnn_optim_state(o, i, &name, &buf);
            tu_assert_identical(name, frcnn_tensor_data(buf), sb[i], frcnn_tensor_numel(buf));
            free(sb[i]);
        }
        free(wb), free(sb);
        frcnn_tensor_data(bad.grad)[37] = 0.0f;
        frcnn_optim_free(o);
    }
}

/* fc6's gradient spans many of the slices the check runs on threads: the first of two non-finite values in different
 * slices is the one named, and with clipping the norm over all of it matches a sum in double and gives the same
 * bits on 1, 2 and 3 threads. */
static void test_large_gradient_checked_in_slices(void **state)
{
    fixture *fx = *state;
    frcnn_ctx *ctx = fx->ctx;
    frcnn_model *m = fx->model;
    frcnn_param fc6 = get_param(m, "roi_heads.box_head.fc6.weight");
    size_t n = frcnn_tensor_numel(fc6.grad);
    assert_true(n > 40 * 65536); /* the check's slices are 65536 floats */
    float *g = frcnn_tensor_data(fc6.grad);
    for (int clip = 0; clip < 2; clip++) {
        frcnn_optim_params op = frcnn_optim_params_sgd();
        op.clip_norm = clip ? 1.0f : 0.0f;
        frcnn_optim *o = make_optim(ctx, &op, m);
        frcnn_model_zero_grad(m);
        g[39 * 65536 + 3] = INFINITY;
        g[3 * 65536 + 11] = NAN;
        tu_expect_error_msg(ctx, frcnn_optim_step(o, 0.01f), FRCNN_ERR_NOT_FINITE, "NaN at element 196619");
        g[3 * 65536 + 11] = 0.0f;
        tu_expect_error_msg(ctx, frcnn_optim_step(o, 0.01f), FRCNN_ERR_NOT_FINITE, "infinite at element 2555907");
        g[39 * 65536 + 3] = 0.0f;
        frcnn_optim_free(o);
    }

    frcnn_optim_params op = frcnn_optim_params_sgd();
    op.momentum = 0.0f;
    op.weight_decay = 0.0f;
    frcnn_model_zero_grad(m);
    tu_fill_uniform(g, n, 8, -1.0f, 1.0f);
    double sq = 0.0;
    for (size_t i = 0; i < n; i++)
        sq += (double)g[i] * g[i];
    op.clip_norm = (float)(sqrt(sq) / 4.0);
    float *w0 = copy_of(fc6.value), *first = NULL;
    double *want = dcopy_of(fc6.value);
    for (size_t i = 0; i < n; i++)
        want[i] -= 0.5 * g[i] * ((double)op.clip_norm / sqrt(sq));
    for (int threads = 1; threads <= 3; threads++) {
        memcpy(frcnn_tensor_data(fc6.value), w0, n * sizeof *w0);
        assert_int_equal(frcnn_ctx_set_threads(ctx, threads), FRCNN_OK);
        frcnn_optim *o = make_optim(ctx, &op, m);
        assert_int_equal(frcnn_optim_step(o, 0.5f), FRCNN_OK);
        frcnn_optim_free(o);
        if (!first) {
            assert_close_double("clipped fc6", frcnn_tensor_data(fc6.value), want, n, 1e-7, 1e-5);
            first = copy_of(fc6.value);
        } else {
            tu_assert_identical("clipped fc6 on more threads", frcnn_tensor_data(fc6.value), first, n);
        }
    }
    assert_int_equal(frcnn_ctx_set_threads(ctx, 0), FRCNN_OK);
    frcnn_model_zero_grad(m);
    free(w0), free(first), free(want);
}

static void expect_bad_params(frcnn_ctx *ctx, frcnn_model *m, frcnn_optim_params p, const char *needle)
{
    frcnn_optim *o = (frcnn_optim *)&o; /* any non-NULL value: create must set NULL on failure */
    tu_expect_error_msg(ctx, frcnn_optim_create(ctx, &p, m, &o), FRCNN_ERR_INVALID_ARG, needle);
    assert_null(o);
}

static void test_bad_params(void **state)
{
    fixture *fx = *state;
    frcnn_ctx *ctx = fx->ctx;
    frcnn_model *m = fx->model;
    const frcnn_optim_params good = frcnn_optim_params_sgd();
    frcnn_optim_params p;
    p = good, p.momentum = 1.0f, expect_bad_params(ctx, m, p, "momentum");
    p = good, p.momentum = -0.1f, expect_bad_params(ctx, m, p, "momentum");
    p = good, p.beta1 = 1.0f, expect_bad_params(ctx, m, p, "beta1");
    p = good, p.beta2 = NAN, expect_bad_params(ctx, m, p, "beta2");
    p = good, p.eps = 0.0f, expect_bad_params(ctx, m, p, "eps");
    p = good, p.weight_decay = -1e-4f, expect_bad_params(ctx, m, p, "weight_decay");
    p = good, p.bias_lr_mult = -2.0f, expect_bad_params(ctx, m, p, "bias_lr_mult");
    p = good, p.bias_decay_mult = INFINITY, expect_bad_params(ctx, m, p, "bias_decay_mult");
    p = good, p.clip_norm = -1.0f, expect_bad_params(ctx, m, p, "clip_norm");
    p = good, p.accumulate = 0, expect_bad_params(ctx, m, p, "accumulate");
    p = good, p.kind = (frcnn_optim_kind)7, expect_bad_params(ctx, m, p, "kind");
    assert_string_equal(frcnn_optim_kind_name((frcnn_optim_kind)7), "unknown");
    assert_string_equal(frcnn_optim_kind_name(FRCNN_OPTIM_SGD), "sgd");

    frcnn_optim *o = NULL;
    assert_int_equal(frcnn_optim_create(NULL, &good, m, &o), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_optim_create(ctx, NULL, m, &o), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_optim_create(ctx, &good, NULL, &o), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_optim_create(ctx, &good, m, NULL), FRCNN_ERR_INVALID_ARG);

    /* the defaults are the paper's */
    assert_true(good.momentum == 0.9f && good.weight_decay == 0.0005f && good.bias_lr_mult == 2.0f &&
                good.bias_decay_mult == 0.0f && good.accumulate == 1 && good.clip_norm == 0.0f);
    frcnn_optim_params ad = frcnn_optim_params_adam();
    assert_int_equal(ad.kind, FRCNN_OPTIM_ADAM);
    assert_true(ad.beta1 == 0.9f && ad.beta2 == 0.999f && ad.eps == 1e-8f);

    /* a bad learning rate changes nothing */
    o = make_optim(ctx, &good, m);
    frcnn_param w = get_param(m, W_NAME);
    frcnn_tensor_fill(w.grad, 1.0f);
    float *before = copy_of(w.value);
    tu_expect_error_msg(ctx, frcnn_optim_step(o, -0.001f), FRCNN_ERR_INVALID_ARG, "learning rate");
    tu_expect_error(ctx, frcnn_optim_step(o, NAN), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_optim_step(o, INFINITY), FRCNN_ERR_INVALID_ARG);
    tu_assert_identical("weight after bad lr", frcnn_tensor_data(w.value), before, frcnn_tensor_numel(w.value));
    assert_int_equal(frcnn_optim_steps(o), 0);
    assert_int_equal(frcnn_optim_step(NULL, 0.1f), FRCNN_ERR_INVALID_ARG);
    assert_int_equal(frcnn_optim_state_count(NULL), 0);
    assert_null(frcnn_optim_get_params(NULL));
    free(before);
    frcnn_optim_free(o);
    frcnn_optim_free(NULL);
}

/* Every allocation failure in create returns FRCNN_ERR_NO_MEMORY, leaves *out NULL and frees what it took. */
static void test_create_out_of_memory(void **state)
{
    fixture *fx = *state;
    /* SGD: every allocation in turn; Adam (two buffers per parameter): the first few. */
    for (int kind = 0; kind < 2; kind++) {
        frcnn_optim_params op = kind == 0 ? frcnn_optim_params_sgd() : frcnn_optim_params_adam();
        bool done = false;
        for (long n = 0; !done && (kind == 0 || n < 10); n++) {
            tu_alloc_mark before = tu_alloc_mark_now(&fx->alloc);
            tu_alloc_fail_next(&fx->alloc, (size_t)n + 1);
            frcnn_optim *o = (frcnn_optim *)&o;
            frcnn_status st = frcnn_optim_create(fx->ctx, &op, fx->model, &o);
            tu_alloc_fail_next(&fx->alloc, 0);
            if (st == FRCNN_OK) {
                assert_true(n > 20); /* the tiny model has 24 trainable parameters */
                frcnn_optim_free(o);
                done = true;
            } else {
                tu_expect_error(fx->ctx, st, FRCNN_ERR_NO_MEMORY);
                assert_null(o);
            }
            tu_alloc_assert_since(&fx->alloc, before);
        }
    }
}

/* --- schedules --- */

static void test_lr_paper(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_lr_schedule s = frcnn_lr_schedule_paper();
    assert_int_equal(frcnn_lr_schedule_validate(ctx, &s), FRCNN_OK);
    assert_int_equal(s.kind, FRCNN_LR_STEP);
    assert_int_equal(s.total_iters, 70000);
    assert_int_equal(s.warmup_iters, 0);
    const float want[4] = {0.001f, 0.001f, 0.0001f, 0.0001f};
    const int64_t at[4] = {0, 49999, 50000, 69999};
    float got[4];
    for (int i = 0; i < 4; i++)
        got[i] = frcnn_lr_at(&s, at[i]);
    tu_assert_close("paper schedule", got, want, 4, 0.0, 1e-6);
    assert_true(frcnn_lr_at(&s, -5) == frcnn_lr_at(&s, 0));

    /* several milestones: a milestone counts from its own iteration on */
    s.n_milestones = 3;
    s.milestones[0] = 10, s.milestones[1] = 20, s.milestones[2] = 30;
    s.gamma = 0.5f;
    s.base_lr = 1.0f;
    assert_int_equal(frcnn_lr_schedule_validate(ctx, &s), FRCNN_OK);
    const int64_t it2[7] = {0, 9, 10, 19, 20, 29, 30};
    const float want2[7] = {1.0f, 1.0f, 0.5f, 0.5f, 0.25f, 0.25f, 0.125f};
    float got2[7];
    for (int i = 0; i < 7; i++)
        got2[i] = frcnn_lr_at(&s, it2[i]);
    tu_assert_identical("milestones", got2, want2, 7);
    s.n_milestones = 0;
    assert_true(frcnn_lr_at(&s, 1000000) == 1.0f);

    frcnn_lr_schedule k = {.kind = FRCNN_LR_CONSTANT, .base_lr = 0.02f, .warmup_factor = 1.0f};
    assert_int_equal(frcnn_lr_schedule_validate(ctx, &k), FRCNN_OK);
    assert_true(frcnn_lr_at(&k, 0) == 0.02f && frcnn_lr_at(&k, 123456789) == 0.02f);
    frcnn_ctx_free(ctx);
}

static void test_lr_cosine_and_warmup(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_lr_schedule s = {.kind = FRCNN_LR_COSINE, .base_lr = 0.1f, .min_lr = 0.001f, .total_iters = 1000,
                           .warmup_factor = 1.0f};
    assert_int_equal(frcnn_lr_schedule_validate(ctx, &s), FRCNN_OK);
    const float got[5] = {frcnn_lr_at(&s, 0), frcnn_lr_at(&s, 500), frcnn_lr_at(&s, 1000), frcnn_lr_at(&s, 5000),
                          frcnn_lr_at(&s, 250)};
    const float want[5] = {0.1f, (0.1f + 0.001f) / 2, 0.001f, 0.001f,
                           (float)(0.001 + 0.099 * (1 + cos(3.14159265358979323846 / 4)) / 2)};
    tu_assert_close("cosine", got, want, 5, 1e-9, 1e-6);
    /* monotone non-increasing */
    for (int64_t i = 1; i <= 1000; i++)
        assert_true(frcnn_lr_at(&s, i) <= frcnn_lr_at(&s, i - 1));

    /* warm-up: from factor x rate at 0, linearly, to the plain rate at warmup_iters */
    frcnn_lr_schedule w = frcnn_lr_schedule_paper();
    w.warmup_iters = 100;
    w.warmup_factor = 1.0f / 3.0f;
    assert_int_equal(frcnn_lr_schedule_validate(ctx, &w), FRCNN_OK);
    const float wg[4] = {frcnn_lr_at(&w, 0), frcnn_lr_at(&w, 50), frcnn_lr_at(&w, 99), frcnn_lr_at(&w, 100)};
    const float wf = 1.0f / 3.0f;
    const float ww[4] = {0.001f * wf, 0.001f * (wf + (1 - wf) * 0.5f), 0.001f * (wf + (1 - wf) * 0.99f), 0.001f};
    tu_assert_close("warm-up", wg, ww, 4, 1e-12, 1e-6);
    for (int64_t i = 1; i <= 100; i++)
        assert_true(frcnn_lr_at(&w, i) > frcnn_lr_at(&w, i - 1));
    w.warmup_factor = 0.0f;
    assert_true(frcnn_lr_at(&w, 0) == 0.0f);

    /* purity: the same values whatever the order of the calls */
    float fwd[64], bwd[64], rnd[64];
    for (int i = 0; i < 64; i++)
        fwd[i] = frcnn_lr_at(&s, i * 20);
    for (int i = 63; i >= 0; i--)
        bwd[i] = frcnn_lr_at(&s, i * 20);
    frcnn_rng rng;
    frcnn_rng_seed(&rng, 1);
    uint32_t order[64];
    for (uint32_t i = 0; i < 64; i++)
        order[i] = i;
    frcnn_rng_shuffle(&rng, order, 64);
    for (int i = 0; i < 64; i++)
        rnd[order[i]] = frcnn_lr_at(&s, order[i] * 20);
    tu_assert_identical("backward order", bwd, fwd, 64);
    tu_assert_identical("random order", rnd, fwd, 64);
    frcnn_ctx_free(ctx);
}

static void test_lr_validation(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    const frcnn_lr_schedule good = frcnn_lr_schedule_paper();
    frcnn_lr_schedule s;
    s = good, s.base_lr = -1.0f;
    tu_expect_error_msg(ctx, frcnn_lr_schedule_validate(ctx, &s), FRCNN_ERR_INVALID_ARG, "base_lr");
    s = good, s.base_lr = NAN;
    tu_expect_error_msg(ctx, frcnn_lr_schedule_validate(ctx, &s), FRCNN_ERR_INVALID_ARG, "base_lr");
    s = good, s.gamma = 0.0f;
    tu_expect_error_msg(ctx, frcnn_lr_schedule_validate(ctx, &s), FRCNN_ERR_INVALID_ARG, "gamma");
    s = good, s.gamma = INFINITY;
    tu_expect_error_msg(ctx, frcnn_lr_schedule_validate(ctx, &s), FRCNN_ERR_INVALID_ARG, "gamma");
    s = good, s.n_milestones = FRCNN_MAX_LR_MILESTONES + 1;
    tu_expect_error_msg(ctx, frcnn_lr_schedule_validate(ctx, &s), FRCNN_ERR_INVALID_ARG, "n_milestones");
    s = good, s.n_milestones = -1;
    tu_expect_error_msg(ctx, frcnn_lr_schedule_validate(ctx, &s), FRCNN_ERR_INVALID_ARG, "n_milestones");
    s = good, s.n_milestones = 2, s.milestones[1] = 40000;
    tu_expect_error_msg(ctx, frcnn_lr_schedule_validate(ctx, &s), FRCNN_ERR_INVALID_ARG, "ascending");
    s = good, s.milestones[0] = -1;
    tu_expect_error_msg(ctx, frcnn_lr_schedule_validate(ctx, &s), FRCNN_ERR_INVALID_ARG, "milestones[0]");
    s = good, s.kind = FRCNN_LR_COSINE, s.total_iters = 0;
    tu_expect_error_msg(ctx, frcnn_lr_schedule_validate(ctx, &s), FRCNN_ERR_INVALID_ARG, "total_iters");
    s = good, s.warmup_iters = -1;
    tu_expect_error_msg(ctx, frcnn_lr_schedule_validate(ctx, &s), FRCNN_ERR_INVALID_ARG, "warmup_iters");
    s = good, s.warmup_factor = 1.5f;
    tu_expect_error_msg(ctx, frcnn_lr_schedule_validate(ctx, &s), FRCNN_ERR_INVALID_ARG, "warmup_factor");
    s = good, s.warmup_factor = -0.1f;
    tu_expect_error_msg(ctx, frcnn_lr_schedule_validate(ctx, &s), FRCNN_ERR_INVALID_ARG, "warmup_factor");
    s = good, s.kind = (frcnn_lr_kind)9;
    tu_expect_error_msg(ctx, frcnn_lr_schedule_validate(ctx, &s), FRCNN_ERR_INVALID_ARG, "kind");
    s = good, s.n_milestones = FRCNN_MAX_LR_MILESTONES;
    for (int i = 0; i < FRCNN_MAX_LR_MILESTONES; i++)
        s.milestones[i] = 100 * i;
    assert_int_equal(frcnn_lr_schedule_validate(ctx, &s), FRCNN_OK);
    tu_expect_error(ctx, frcnn_lr_schedule_validate(ctx, NULL), FRCNN_ERR_INVALID_ARG);
    assert_int_equal(frcnn_lr_schedule_validate(NULL, &good), FRCNN_ERR_INVALID_ARG);
    frcnn_ctx_free(ctx);
}

/* --- a short training run --- */

/* Smaller than tiny_config (input, RPN, head), so that the steps take a fraction of a second. */
enum { TRAIN_H = 64, TRAIN_W = 96 };

/* A filled square of 1.5 on uniform noise in [-0.5, 0.5). */
static void make_image(float *img, const float *box)
{
    tu_fill_uniform(img, 3 * TRAIN_H * TRAIN_W, 100, -0.5f, 0.5f);
    for (int ch = 0; ch < 3; ch++)
        for (int y = (int)box[1]; y <= (int)box[3]; y++)
            for (int x = (int)box[0]; x <= (int)box[2]; x++)
                img[(ch * TRAIN_H + y) * TRAIN_W + x] = 1.5f;
}

static void test_training_lowers_loss(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_config c = tiny_config();
    c.dropout = 0.0f;
    c.short_side = TRAIN_H;
    c.max_side = TRAIN_W;
    c.rpn_channels = 32;
    c.fc_channels = 64;
    c.roi_targets.batch_size = 32;
    frcnn_model *m = make_model(ctx, &c, 2026);
    frcnn_tensor *image = tu_tensor(ctx, 4, 1, 3, TRAIN_H, TRAIN_W);
    const float box[4] = {30, 12, 69, 51};
    const int32_t label[1] = {1};
    make_image(frcnn_tensor_data(image), box);
    frcnn_input in = {image, 1.0f};
    frcnn_optim_params op = frcnn_optim_params_sgd();
    frcnn_optim *o = make_optim(ctx, &op, m);
    frcnn_lr_schedule sched = {.kind = FRCNN_LR_CONSTANT, .base_lr = 0.01f, .warmup_iters = 5,
                               .warmup_factor = 0.2f};
    assert_int_equal(frcnn_lr_schedule_validate(ctx, &sched), FRCNN_OK);
    frcnn_rng rng;
    frcnn_rng_seed(&rng, 7);
    const int steps = 16;
    double first = 0.0, last = 0.0;
    for (int it = 0; it < steps; it++) {
        frcnn_losses l;
        frcnn_model_zero_grad(m);
        frcnn_status st = frcnn_model_train_step(m, &in, box, label, 1, &rng, &l);
        if (st != FRCNN_OK)
            print_error("step %d: %s\n", it, frcnn_ctx_last_error(ctx));
        assert_int_equal(st, FRCNN_OK);
        assert_int_equal(frcnn_optim_step(o, frcnn_lr_at(&sched, it)), FRCNN_OK);
        if (it < 3)
            first += l.total / 3.0;
        if (it >= steps - 3)
            last += l.total / 3.0;
    }
    print_message("optim training: total loss %.4f -> %.4f\n", first, last);
    assert_true(last < 0.8 * first);
    assert_int_equal(frcnn_optim_steps(o), steps);
    frcnn_optim_free(o);
    frcnn_tensor_free(image);
    frcnn_model_free(m);
    frcnn_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgd_hand_computed),
        cmocka_unit_test(test_state_names),
        cmocka_unit_test(test_frozen_untouched),
        cmocka_unit_test(test_accumulate_and_clip),
        cmocka_unit_test(test_adam),
        cmocka_unit_test(test_adamw),
        cmocka_unit_test(test_set_steps),
        cmocka_unit_test(test_decayed_state_flushed),
        cmocka_unit_test(test_not_finite_changes_nothing),
        cmocka_unit_test(test_large_gradient_checked_in_slices),
        cmocka_unit_test(test_bad_params),
        cmocka_unit_test(test_create_out_of_memory),
        cmocka_unit_test(test_lr_paper),
        cmocka_unit_test(test_lr_cosine_and_warmup),
        cmocka_unit_test(test_lr_validation),
        cmocka_unit_test(test_training_lowers_loss),
    };
    return cmocka_run_group_tests(tests, fixture_setup, fixture_teardown);
}
