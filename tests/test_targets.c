/* Target assignment: RPN anchor targets (labels, border filter, best-anchor rule, sampling quotas, targets and
 * weights) and Fast R-CNN RoI targets (GT appended, quotas and their rounding, IoU ranges, class-specific
 * normalised targets), with hand-computed cases, exact RNG consumption, arena hygiene and bad arguments. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ----- shared fixture ---------------------------------------------------------------------------------------- */

/* A context and an arena with something already in it, so that "reset to the entry mark" is not "reset to 0". */
typedef struct fixture {
    frcnn_ctx *ctx;
    frcnn_arena *arena;
    size_t mark;
} fixture;

static void fixture_init(fixture *f, size_t capacity)
{
    f->ctx = tu_ctx();
    assert_int_equal(frcnn_arena_create(f->ctx, capacity + 64, &f->arena), FRCNN_OK);
    void *pad;
    assert_int_equal(frcnn_arena_alloc(f->arena, 8, &pad), FRCNN_OK);
    f->mark = frcnn_arena_mark(f->arena);
}

static void fixture_free(fixture *f)
{
    frcnn_arena_free(f->arena);
    frcnn_ctx_free(f->ctx);
}

static void assert_ok(frcnn_ctx *ctx, frcnn_status st)
{
    if (st != FRCNN_OK)
        print_error("status %d: %s\n", st, frcnn_ctx_last_error(ctx));
    assert_int_equal(st, FRCNN_OK);
}

static void assert_labels(const char *what, const int32_t *got, const int32_t *want, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (got[i] != want[i]) {
            print_error("%s: label[%zu] = %d, expected %d\n", what, i, got[i], want[i]);
            fail();
        }
    }
}

static void assert_same_rng(const frcnn_rng *a, const frcnn_rng *b)
{
    for (int i = 0; i < 4; i++)
        assert_true(a->s[i] == b->s[i]);
}

static void set_box(float *b, float x1, float y1, float x2, float y2)
{
    b[0] = x1;
    b[1] = y1;
    b[2] = x2;
    b[3] = y2;
}

/* ----- anchor targets ---------------------------------------------------------------------------------------- */

/* Outputs of one frcnn_anchor_targets call. */
typedef struct anchor_out {
    size_t n;
    int32_t *labels;
    float *targets, *inside, *outside;
} anchor_out;

static void anchor_out_init(anchor_out *o, size_t n)
{
    o->n = n;
    o->labels = malloc(n * sizeof(int32_t) + 1);
    o->targets = malloc(n * 4 * sizeof(float) + 1);
    o->inside = malloc(n * 4 * sizeof(float) + 1);
    o->outside = malloc(n * 4 * sizeof(float) + 1);
    /* Garbage, to prove every element is written. */
    memset(o->labels, 0x5a, n * sizeof(int32_t));
    memset(o->targets, 0x5a, n * 4 * sizeof(float));
    memset(o->inside, 0x5a, n * 4 * sizeof(float));
    memset(o->outside, 0x5a, n * 4 * sizeof(float));
}

static void anchor_out_free(anchor_out *o)
{
    free(o->labels);
    free(o->targets);
    free(o->inside);
    free(o->outside);
}

static frcnn_status run_anchor(fixture *f, const frcnn_anchor_target_params *p, frcnn_rng *rng,
                               const float *anchors, size_t n, const float *gt, size_t g, float h, float w,
                               anchor_out *o)
{
    frcnn_status st = frcnn_anchor_targets(f->ctx, f->arena, p, rng, anchors, n, gt, g, h, w, o->labels, o->targets,
                                           o->inside, o->outside);
    assert_int_equal(frcnn_arena_used(f->arena), f->mark);
    return st;
}

/* Counts labels equal to v. */
static size_t count_label(const int32_t *labels, size_t n, int32_t v)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += labels[i] == v;
    return c;
}

/* The weights every labelled anchor must carry: inside 1 for foreground, outside 1 / labelled; zeros (and zero
 * targets) for everything not foreground. */
static void check_weights(const anchor_out *o)
{
    size_t labelled = count_label(o->labels, o->n, 1) + count_label(o->labels, o->n, 0);
    float w = labelled ? 1.0f / (float)labelled : 0.0f;
    for (size_t i = 0; i < o->n; i++) {
        for (int k = 0; k < 4; k++) {
            float in = o->inside[4 * i + k], out = o->outside[4 * i + k], t = o->targets[4 * i + k];
            float want_in = o->labels[i] == 1 ? 1.0f : 0.0f, want_out = o->labels[i] >= 0 ? w : 0.0f;
            if (in != want_in || out != want_out || (o->labels[i] != 1 && t != 0.0f)) {
                print_error("anchor %zu (label %d) col %d: inside %g outside %g target %g, expected %g %g %s\n", i,
                            o->labels[i], k, (double)in, (double)out, (double)t, (double)want_in, (double)want_out,
                            o->labels[i] == 1 ? "(any)" : "0");
                fail();
            }
        }
    }
}

/* GT (0,0,9,9), 10x10. Anchors inside it or sliding along it have IoU = area / 100 (exact tenths in float), which
 * pins both thresholds and the +1 convention: without +1 the 7-wide anchor would score 6*9/81 = 0.67. */
static void test_anchor_thresholds(void **state)
{
    (void)state;
    fixture f;
    fixture_init(&f, 1 << 16);
    frcnn_anchor_target_params p = frcnn_anchor_target_params_default();
    frcnn_rng rng;
    frcnn_rng_seed(&rng, 1);
    const float gt[4] = {0, 0, 9, 9};
    float anchors[6 * 4];
    set_box(anchors + 0, 0, 0, 8, 9);    /* IoU 0.9: the GT's best anchor */
    set_box(anchors + 4, 0, 0, 6, 9);    /* IoU 0.7: foreground (>=) */
    set_box(anchors + 8, 0, 0, 5, 9);    /* IoU 0.6: ignored */
    set_box(anchors + 12, 0, 0, 2, 9);   /* IoU 0.3: ignored (background is < 0.3) */
    set_box(anchors + 16, 0, 0, 1, 9);   /* IoU 0.2: background */
    set_box(anchors + 20, 20, 20, 29, 29); /* IoU 0: background */
    anchor_out o;
    anchor_out_init(&o, 6);
    assert_ok(f.ctx, run_anchor(&f, &p, &rng, anchors, 6, gt, 1, 50, 50, &o));
    const int32_t want[6] = {1, 1, -1, -1, 0, 0};
    assert_labels("thresholds", o.labels, want, 6);
    check_weights(&o);
    /* Outside weights 1 / 4 labelled anchors. */
    assert_true(o.outside[0] == 0.25f && o.outside[4 * 5 + 3] == 0.25f);
    /* anchor 1: w 7, cx 3.5; GT cx 5 -> dx = 1.5 / 7, dw = log(10 / 7); y identical. */
    const float want_t1[4] = {1.5f / 7.0f, 0.0f, logf(10.0f / 7.0f), 0.0f};
    tu_assert_close("targets of anchor 1", o.targets + 4, want_t1, 4, 1e-6, 1e-6);
    const float want_t0[4] = {0.5f / 9.0f, 0.0f, logf(10.0f / 9.0f), 0.0f};
    tu_assert_close("targets of anchor 0", o.targets, want_t0, 4, 1e-6, 1e-6);
    anchor_out_free(&o);
    fixture_free(&f);
}

/* A GT box that no anchor covers at 0.7 still gets its best anchors (both of a tie) as foreground; a GT box
 * overlapping no anchor at all marks nothing (py-faster-rcnn would make every zero-IoU anchor foreground). */
static void test_anchor_best_anchor_rule(void **state)
{
    (void)state;
    fixture f;
    fixture_init(&f, 1 << 16);
    frcnn_anchor_target_params p = frcnn_anchor_target_params_default();
    frcnn_rng rng, before;
    frcnn_rng_seed(&rng, 2);
    before = rng;
    float gt[2 * 4];
    set_box(gt, 0, 0, 9, 9);
    set_box(gt + 4, 40, 40, 45, 45); /* no anchor reaches it */
    float anchors[5 * 4];
    set_box(anchors + 0, 0, 0, 4, 9);     /* IoU 0.5 */
    set_box(anchors + 4, 5, 0, 9, 9);     /* IoU 0.5: tie */
    set_box(anchors + 8, 0, 0, 3, 9);     /* IoU 0.4: ignored */
    set_box(anchors + 12, 30, 30, 39, 39); /* IoU 0 with both */
    set_box(anchors + 16, 0, 0, 4, 9);    /* a duplicate of anchor 0: also tied */
    anchor_out o;
    anchor_out_init(&o, 5);
    assert_ok(f.ctx, run_anchor(&f, &p, &rng, anchors, 5, gt, 2, 60, 60, &o));
    const int32_t want[5] = {1, 1, -1, 0, 1};
    assert_labels("best anchor rule", o.labels, want, 5);
    check_weights(&o);
    /* anchor 0: w 5, cx 2.5 -> dx = 2.5 / 5, dw = log 2; anchor 1: cx 7.5 -> dx = -0.5. */
    const float want_t[8] = {0.5f, 0.0f, logf(2.0f), 0.0f, -0.5f, 0.0f, logf(2.0f), 0.0f};
    tu_assert_close("tied best anchors' targets", o.targets, want_t, 8, 1e-6, 1e-6);
    /* Nothing to subsample: the RNG is untouched. */
    assert_same_rng(&rng, &before);
    anchor_out_free(&o);
    fixture_free(&f);
}

/* An anchor equally close to two GT boxes regresses to the first (argmax keeps the first maximum). It is the best
 * anchor of both, so it is foreground at IoU 1/3. */
static void test_anchor_argmax_first_gt(void **state)
{
    (void)state;
    fixture f;
    fixture_init(&f, 1 << 16);
    frcnn_anchor_target_params p = frcnn_anchor_target_params_default();
    frcnn_rng rng;
    frcnn_rng_seed(&rng, 3);
    float gt[2 * 4];
    set_box(gt, 0, 0, 9, 9);
    set_box(gt + 4, 10, 0, 19, 9);
    const float anchors[4] = {5, 0, 14, 9};
    anchor_out o;
    anchor_out_init(&o, 1);
    assert_ok(f.ctx, run_anchor(&f, &p, &rng, anchors, 1, gt, 2, 30, 30, &o));
    assert_int_equal(o.labels[0], 1);
    const float want_t[4] = {-0.5f, 0.0f, 0.0f, 0.0f}; /* to GT 0 (cx 5 from 10); GT 1 would give +0.5 */
    tu_assert_close("tie between GT boxes", o.targets, want_t, 4, 1e-6, 0);
    assert_true(o.outside[0] == 1.0f);
    anchor_out_free(&o);
    fixture_free(&f);
}

/* Border filter: x1 >= -b, y1 >= -b, x2 < W + b, y2 < H + b; allowed_border < 0 keeps everything. */
static void test_anchor_border(void **state)
{
    (void)state;
    fixture f;
    fixture_init(&f, 1 << 16);
    frcnn_anchor_target_params p = frcnn_anchor_target_params_default();
    frcnn_rng rng;
    frcnn_rng_seed(&rng, 4);
    float anchors[6 * 4];
    set_box(anchors + 0, 0, 0, 49, 39);  /* exactly the image (W 50, H 40) */
    set_box(anchors + 4, 0, 0, 50, 10);  /* x2 = W */
    set_box(anchors + 8, -1, 0, 10, 10); /* x1 = -1 */
    set_box(anchors + 12, 0, -1, 10, 10);
    set_box(anchors + 16, 0, 0, 10, 40); /* y2 = H */
    set_box(anchors + 20, 0, 0, 10, 41); /* y2 = H + 1 */
    const float gt[4] = {0, 0, 49, 39};  /* overlaps all of them */
    anchor_out o;
    anchor_out_init(&o, 6);
    assert_ok(f.ctx, run_anchor(&f, &p, &rng, anchors, 6, gt, 1, 40, 50, &o));
    const int32_t want0[6] = {1, -1, -1, -1, -1, -1};
    assert_labels("allowed_border 0", o.labels, want0, 6);
    check_weights(&o);
    assert_true(o.outside[0] == 1.0f);

    /* No GT: the inside anchors are all background. */
    p.allowed_border = 1;
    assert_ok(f.ctx, run_anchor(&f, &p, &rng, anchors, 6, NULL, 0, 40, 50, &o));
    const int32_t want1[6] = {0, 0, 0, 0, 0, -1};
    assert_labels("allowed_border 1, no GT", o.labels, want1, 6);
    check_weights(&o);
    assert_true(o.outside[0] == 0.2f);

    p.allowed_border = -1;
    assert_ok(f.ctx, run_anchor(&f, &p, &rng, anchors, 6, NULL, 0, 40, 50, &o));
    const int32_t want2[6] = {0, 0, 0, 0, 0, 0};
    assert_labels("allowed_border -1, no GT", o.labels, want2, 6);
    check_weights(&o);

    /* A border anchor overlapping the GT box best is still ignored with the filter on. */
    p.allowed_border = 0;
    const float gt2[4] = {0, 0, 10, 41};
    assert_ok(f.ctx, run_anchor(&f, &p, &rng, anchors, 6, gt2, 1, 40, 50, &o));
    assert_int_equal(o.labels[5], -1);
    assert_true(o.targets[20] == 0.0f && o.inside[20] == 0.0f && o.outside[20] == 0.0f);
    anchor_out_free(&o);
    fixture_free(&f);
}

/* n_fg anchors identical to one GT box (IoU 1) and n_bg far from it, all inside a 1000x1000 image. */
static float *sampling_anchors(size_t n_fg, size_t n_bg, float *gt)
{
    float *a = malloc((n_fg + n_bg) * 4 * sizeof(float));
    set_box(gt, 100, 100, 199, 199);
    for (size_t i = 0; i < n_fg + n_bg; i++) {
        if (i < n_fg) {
            set_box(a + 4 * i, 100, 100, 199, 199);
        } else {
            float x = 400.0f + (float)((i - n_fg) % 50) * 10.0f, y = 400.0f + (float)((i - n_fg) / 50) * 5.0f;
            set_box(a + 4 * i, x, y, x + 15, y + 15);
        }
    }
    /* Interleave: the candidates are not simply the first indices. */
    for (size_t i = 0; i < (n_fg + n_bg) / 2; i += 3) {
        float t[4];
        memcpy(t, a + 4 * i, sizeof t);
        memcpy(a + 4 * i, a + 4 * (n_fg + n_bg - 1 - i), sizeof t);
        memcpy(a + 4 * (n_fg + n_bg - 1 - i), t, sizeof t);
    }
    return a;
}

static void test_anchor_sampling_quotas(void **state)
{
    (void)state;
    fixture f;
    fixture_init(&f, 1 << 20);
    frcnn_anchor_target_params p = frcnn_anchor_target_params_default();
    frcnn_rng rng;
    frcnn_rng_seed(&rng, 5);
    float gt[4];
    const struct {
        size_t n_fg, n_bg, want_fg, want_bg;
    } cases[] = {
        {200, 300, 128, 128}, /* both capped */
        {50, 300, 50, 206},   /* background fills the batch */
        {128, 128, 128, 128}, /* exactly the quota: nothing dropped */
        {20, 30, 20, 30},     /* fewer than the batch */
        {0, 500, 0, 256},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t n = cases[c].n_fg + cases[c].n_bg;
        float *anchors = sampling_anchors(cases[c].n_fg, cases[c].n_bg, gt);
        anchor_out o;
        anchor_out_init(&o, n);
        frcnn_rng before = rng;
        assert_ok(f.ctx, run_anchor(&f, &p, &rng, anchors, n, gt, 1, 1000, 1000, &o));
        /* No draws unless some candidates have to be dropped. */
        if (cases[c].n_fg <= 128 && cases[c].n_bg <= 256 - cases[c].n_fg)
            assert_same_rng(&rng, &before);
        size_t fg = count_label(o.labels, n, 1), bg = count_label(o.labels, n, 0);
        if (fg != cases[c].want_fg || bg != cases[c].want_bg)
            print_error("case %zu: %zu fg %zu bg, expected %zu %zu\n", c, fg, bg, cases[c].want_fg,
                        cases[c].want_bg);
        assert_int_equal(fg, cases[c].want_fg);
        assert_int_equal(bg, cases[c].want_bg);
        assert_int_equal(count_label(o.labels, n, -1), n - fg - bg);
        check_weights(&o);
        anchor_out_free(&o);
        free(anchors);
    }

    /* num_fg = int(fg_fraction * batch_size) truncates: 0.375 * 10 = 3.75 -> 3 foreground, 7 background. */
    p.batch_size = 10;
    p.fg_fraction = 0.375f;
    float *anchors = sampling_anchors(20, 20, gt);
    anchor_out o;
    anchor_out_init(&o, 40);
    assert_ok(f.ctx, run_anchor(&f, &p, &rng, anchors, 40, gt, 1, 1000, 1000, &o));
    assert_int_equal(count_label(o.labels, 40, 1), 3);
    assert_int_equal(count_label(o.labels, 40, 0), 7);
    check_weights(&o);
    anchor_out_free(&o);
    free(anchors);
    fixture_free(&f);
}

/* Same seed -> same labels; other seeds -> other samples; the draws are exactly choose(fg, quota) then
 * choose(bg, rest) over the candidates in ascending index order. */
static void test_anchor_determinism(void **state)
{
    (void)state;
    fixture f;
    fixture_init(&f, 1 << 20);
    frcnn_anchor_target_params p = frcnn_anchor_target_params_default();
    float gt[4];
    const size_t n_fg = 200, n_bg = 300, n = n_fg + n_bg;
    float *anchors = sampling_anchors(n_fg, n_bg, gt);
    anchor_out a, b, c;
    anchor_out_init(&a, n);
    anchor_out_init(&b, n);
    anchor_out_init(&c, n);
    frcnn_rng r1, r2, r3;
    frcnn_rng_seed(&r1, 42);
    frcnn_rng_seed(&r2, 42);
    frcnn_rng_seed(&r3, 43);
    assert_ok(f.ctx, run_anchor(&f, &p, &r1, anchors, n, gt, 1, 1000, 1000, &a));
    assert_ok(f.ctx, run_anchor(&f, &p, &r2, anchors, n, gt, 1, 1000, 1000, &b));
    assert_ok(f.ctx, run_anchor(&f, &p, &r3, anchors, n, gt, 1, 1000, 1000, &c));
    assert_labels("same seed", b.labels, a.labels, n);
    tu_assert_identical("same seed targets", b.targets, a.targets, 4 * n);
    tu_assert_identical("same seed outside", b.outside, a.outside, 4 * n);
    assert_true(memcmp(a.labels, c.labels, n * sizeof(int32_t)) != 0);

    /* Reproduce the sample: fg candidates ascending, choose 128; then bg ascending, choose 128. */
    frcnn_rng want;
    frcnn_rng_seed(&want, 42);
    uint32_t *idx = malloc(n * sizeof(uint32_t));
    int32_t *labels = malloc(n * sizeof(int32_t));
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (anchors[4 * i] == 100.0f)
            idx[k++] = (uint32_t)i;
    assert_int_equal(k, n_fg);
    for (size_t i = 0; i < n; i++)
        labels[i] = -1;
    frcnn_rng_choose(&want, idx, n_fg, 128);
    for (size_t i = 0; i < 128; i++)
        labels[idx[i]] = 1;
    k = 0;
    for (size_t i = 0; i < n; i++)
        if (anchors[4 * i] != 100.0f)
            idx[k++] = (uint32_t)i;
    frcnn_rng_choose(&want, idx, n_bg, 128);
    for (size_t i = 0; i < 128; i++)
        labels[idx[i]] = 0;
    assert_labels("reproduced sample", a.labels, labels, n);
    assert_same_rng(&r1, &want);
    free(idx);
    free(labels);
    anchor_out_free(&a);
    anchor_out_free(&b);
    anchor_out_free(&c);
    free(anchors);
    fixture_free(&f);
}

static void test_anchor_bad_arguments(void **state)
{
    (void)state;
    fixture f;
    fixture_init(&f, 1 << 16);
    frcnn_anchor_target_params p = frcnn_anchor_target_params_default();
    frcnn_rng rng;
    frcnn_rng_seed(&rng, 6);
    float anchors[8] = {0, 0, 15, 15, 10, 10, 30, 30}, gt[4] = {0, 0, 9, 9};
    anchor_out o;
    anchor_out_init(&o, 2);
    assert_int_equal(frcnn_anchor_targets(NULL, f.arena, &p, &rng, anchors, 2, gt, 1, 50, 50, o.labels, o.targets,
                                          o.inside, o.outside),
                     FRCNN_ERR_INVALID_ARG);
    tu_expect_error(f.ctx,
                 frcnn_anchor_targets(f.ctx, NULL, &p, &rng, anchors, 2, gt, 1, 50, 50, o.labels, o.targets,
                                      o.inside, o.outside),
                 FRCNN_ERR_INVALID_ARG);
    tu_expect_error(f.ctx,
                 frcnn_anchor_targets(f.ctx, f.arena, &p, NULL, anchors, 2, gt, 1, 50, 50, o.labels, o.targets,
                                      o.inside, o.outside),
                 FRCNN_ERR_INVALID_ARG);
    tu_expect_error(f.ctx, run_anchor(&f, &p, &rng, anchors, 2, NULL, 1, 50, 50, &o), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(f.ctx, run_anchor(&f, &p, &rng, anchors, 2, gt, 1, 0, 50, &o), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(f.ctx, run_anchor(&f, &p, &rng, anchors, 2, gt, 1, 50, NAN, &o), FRCNN_ERR_INVALID_ARG);
    frcnn_anchor_target_params bad = p;
    bad.negative_iou = 0.8f;
    tu_expect_error(f.ctx, run_anchor(&f, &bad, &rng, anchors, 2, gt, 1, 50, 50, &o), FRCNN_ERR_INVALID_ARG);
    bad = p;
    bad.batch_size = 0;
    tu_expect_error(f.ctx, run_anchor(&f, &bad, &rng, anchors, 2, gt, 1, 50, 50, &o), FRCNN_ERR_INVALID_ARG);
    bad = p;
    bad.fg_fraction = 1.5f;
    tu_expect_error(f.ctx, run_anchor(&f, &bad, &rng, anchors, 2, gt, 1, 50, 50, &o), FRCNN_ERR_INVALID_ARG);
    /* A GT box with a NaN, a GT box of width 0 (x2 = x1 - 1), an anchor with an infinity. */
    float bad_gt[4] = {0, 0, NAN, 9};
    tu_expect_error(f.ctx, run_anchor(&f, &p, &rng, anchors, 2, bad_gt, 1, 50, 50, &o), FRCNN_ERR_INVALID_ARG);
    set_box(bad_gt, 5, 0, 4, 9);
    frcnn_status st = run_anchor(&f, &p, &rng, anchors, 2, bad_gt, 1, 50, 50, &o);
    assert_int_equal(st, FRCNN_ERR_INVALID_ARG);
    assert_non_null(strstr(frcnn_ctx_last_error(f.ctx), "gt row 0"));
    frcnn_ctx_clear_error(f.ctx);
    anchors[6] = INFINITY;
    tu_expect_error(f.ctx, run_anchor(&f, &p, &rng, anchors, 2, gt, 1, 50, 50, &o), FRCNN_ERR_INVALID_ARG);
    anchors[6] = 30;
    anchor_out_free(&o);
    fixture_free(&f);

    /* An arena too small for n * (g + 3) floats: NO_MEMORY, arena unchanged. */
    fixture_init(&f, 0);
    anchor_out_init(&o, 2);
    tu_expect_error(f.ctx, run_anchor(&f, &p, &rng, anchors, 2, gt, 1, 50, 50, &o), FRCNN_ERR_NO_MEMORY);
    anchor_out_free(&o);
    fixture_free(&f);
}

/* The scratch the header promises, n * (g + 8) * 4 bytes, is enough (the arena rounds to 64 bytes). */
static void test_anchor_scratch_bound(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_anchor_target_params p = frcnn_anchor_target_params_default();
    frcnn_rng rng;
    frcnn_rng_seed(&rng, 7);
    float gt[4 * 5];
    for (int j = 0; j < 5; j++)
        set_box(gt + 4 * j, (float)(10 * j), 0, (float)(10 * j + 30), 40);
    for (size_t n = 1; n <= 40; n += 13) {
        for (size_t g = 0; g <= 5; g += 5) {
            float *anchors = malloc(n * 4 * sizeof(float));
            for (size_t i = 0; i < n; i++)
                set_box(anchors + 4 * i, (float)i, (float)i, (float)i + 20, (float)i + 20);
            frcnn_arena *arena;
            assert_int_equal(frcnn_arena_create(ctx, n * (g + 8) * 4, &arena), FRCNN_OK);
            anchor_out o;
            anchor_out_init(&o, n);
            assert_ok(ctx, frcnn_anchor_targets(ctx, arena, &p, &rng, anchors, n, gt, g, 100, 100, o.labels,
                                                o.targets, o.inside, o.outside));
            assert_int_equal(frcnn_arena_used(arena), 0);
            anchor_out_free(&o);
            frcnn_arena_free(arena);
            free(anchors);
        }
    }
    frcnn_ctx_free(ctx);
}

/* ----- RoI targets -------------------------------------------------------------------------------------------- */

typedef struct roi_out {
    size_t batch, width, n;
    float *rois, *targets, *inside;
    int32_t *labels;
} roi_out;

static void roi_out_init(roi_out *o, size_t batch, int num_classes)
{
    o->batch = batch;
    o->width = 4 * (size_t)num_classes;
    o->n = 0;
    o->rois = malloc(batch * 4 * sizeof(float));
    o->targets = malloc(batch * o->width * sizeof(float));
    o->inside = malloc(batch * o->width * sizeof(float));
    o->labels = malloc(batch * sizeof(int32_t));
    memset(o->rois, 0x5a, batch * 4 * sizeof(float));
    memset(o->targets, 0x5a, batch * o->width * sizeof(float));
    memset(o->inside, 0x5a, batch * o->width * sizeof(float));
    memset(o->labels, 0x5a, batch * sizeof(int32_t));
}

static void roi_out_free(roi_out *o)
{
    free(o->rois);
    free(o->targets);
    free(o->inside);
    free(o->labels);
}

static frcnn_status run_roi(fixture *f, const frcnn_roi_target_params *p, frcnn_rng *rng, const float *proposals,
                            size_t np, const float *gt, const int32_t *gt_labels, size_t g, int num_classes,
                            roi_out *o)
{
    frcnn_status st = frcnn_roi_targets(f->ctx, f->arena, p, rng, proposals, np, gt, gt_labels, g, num_classes,
                                        o->rois, o->labels, o->targets, o->inside, &o->n);
    assert_int_equal(frcnn_arena_used(f->arena), f->mark);
    return st;
}

/* Every row: foreground (label > 0) rows first, then background (0), then unused rows (-1, all zero). Inside
 * weights are 1 exactly in the 4 columns of a foreground row's class; targets are 0 outside them. */
static void check_roi_layout(const roi_out *o)
{
    bool seen_bg = false;
    for (size_t k = 0; k < o->batch; k++) {
        int32_t l = o->labels[k];
        if (k >= o->n)
            assert_int_equal(l, -1);
        else if (l == 0)
            seen_bg = true;
        else if (seen_bg || l < 0)
            fail_msg("row %zu: label %d after background", k, l);
        for (size_t c = 0; c < o->width; c++) {
            bool in_class = l > 0 && c / 4 == (size_t)l;
            float w = o->inside[k * o->width + c], t = o->targets[k * o->width + c];
            if (w != (in_class ? 1.0f : 0.0f) || (!in_class && t != 0.0f))
                fail_msg("row %zu (label %d) column %zu: inside %g target %g", k, l, c, (double)w, (double)t);
        }
        if (k >= o->n)
            for (int c = 0; c < 4; c++)
                assert_true(o->rois[4 * k + c] == 0.0f);
    }
}

static size_t count_fg(const roi_out *o)
{
    size_t c = 0;
    for (size_t k = 0; k < o->n; k++)
        c += o->labels[k] > 0;
    return c;
}

/* Only GT boxes, no proposals: each GT box is its own foreground RoI with zero deltas, in its class's columns. */
static void test_roi_gt_only(void **state)
{
    (void)state;
    fixture f;
    fixture_init(&f, 1 << 16);
    frcnn_roi_target_params p = frcnn_roi_target_params_default();
    frcnn_rng rng, want;
    frcnn_rng_seed(&rng, 10);
    frcnn_rng_seed(&want, 10);
    float gt[2 * 4];
    set_box(gt, 10, 10, 59, 39);
    set_box(gt + 4, 100, 100, 120, 180);
    const int32_t gt_labels[2] = {3, 5};
    roi_out o;
    roi_out_init(&o, 128, 6);
    assert_ok(f.ctx, run_roi(&f, &p, &rng, NULL, 0, gt, gt_labels, 2, 6, &o));
    assert_int_equal(o.n, 2);
    check_roi_layout(&o);
    /* Even with no choice to make, the foreground order is drawn, as npr.choice permutes: choose(2 of 2). */
    uint32_t order[2] = {0, 1};
    frcnn_rng_choose(&want, order, 2, 2);
    assert_same_rng(&rng, &want);
    for (size_t k = 0; k < 2; k++) {
        size_t j = order[k];
        tu_assert_close("GT RoI", o.rois + 4 * k, gt + 4 * j, 4, 0, 0);
        assert_int_equal(o.labels[k], gt_labels[j]);
        const float zero[4] = {0, 0, 0, 0};
        tu_assert_close("GT deltas", o.targets + k * o.width + 4 * (size_t)gt_labels[j], zero, 4, 0, 0);
    }
    roi_out_free(&o);
    fixture_free(&f);
}

/* GT (0,0,9,9) of class 2: a proposal at IoU exactly 0.5 is foreground with deltas normalised by the stds; one
 * at IoU 0.4 is background; with bg_iou_lo 0.1, IoU 0.1 is background and IoU 0 is neither. */
static void test_roi_hand_case(void **state)
{
    (void)state;
    fixture f;
    fixture_init(&f, 1 << 16);
    frcnn_roi_target_params p = frcnn_roi_target_params_default();
    frcnn_rng rng;
    frcnn_rng_seed(&rng, 11);
    const float gt[4] = {0, 0, 9, 9};
    const int32_t gt_labels[1] = {2};
    float props[4 * 4];
    set_box(props + 0, 0, 0, 4, 9);     /* IoU 0.5: foreground */
    set_box(props + 4, 0, 0, 3, 9);     /* IoU 0.4: background */
    set_box(props + 8, 0, 0, 0, 9);     /* IoU 0.1 */
    set_box(props + 12, 50, 50, 60, 60); /* IoU 0 */
    roi_out o;
    roi_out_init(&o, 128, 3);
    assert_ok(f.ctx, run_roi(&f, &p, &rng, props, 4, gt, gt_labels, 1, 3, &o));
    assert_int_equal(o.n, 5); /* proposal 0 and the GT box; 3 background */
    assert_int_equal(count_fg(&o), 2);
    check_roi_layout(&o);
    /* Proposal 0: w 5, cx 2.5; GT cx 5: dx = 0.5 / 0.1 = 5, dy 0, dw = log 2 / 0.2, dh 0. */
    const float want[4] = {5.0f, 0.0f, logf(2.0f) / 0.2f, 0.0f};
    size_t found = 0;
    for (size_t k = 0; k < 2; k++) {
        assert_int_equal(o.labels[k], 2);
        if (o.rois[4 * k + 2] == 4.0f) {
            tu_assert_close("normalised deltas", o.targets + k * o.width + 8, want, 4, 1e-5, 1e-6);
            found++;
        }
    }
    assert_int_equal(found, 1);

    p.bg_iou_lo = 0.1f;
    assert_ok(f.ctx, run_roi(&f, &p, &rng, props, 4, gt, gt_labels, 1, 3, &o));
    assert_int_equal(o.n, 4);
    check_roi_layout(&o);
    for (size_t k = 0; k < o.n; k++)
        assert_false(o.rois[4 * k] == 50.0f);
    /* bg_iou_hi is exclusive: at 0.4 the IoU-0.4 proposal is neither foreground nor background. */
    p.bg_iou_hi = 0.4f;
    assert_ok(f.ctx, run_roi(&f, &p, &rng, props, 4, gt, gt_labels, 1, 3, &o));
    assert_int_equal(o.n, 3);
    check_roi_layout(&o);
    tu_assert_close("the only background RoI", o.rois + 8, props + 8, 4, 0, 0);
    roi_out_free(&o);
    fixture_free(&f);
}

/* 100 proposals on a GT box, 300 background ones: 32 + 96 = 128; with few background ones the batch is short. */
static void test_roi_quotas(void **state)
{
    (void)state;
    fixture f;
    fixture_init(&f, 1 << 20);
    frcnn_roi_target_params p = frcnn_roi_target_params_default();
    frcnn_rng rng;
    frcnn_rng_seed(&rng, 12);
    const float gt[4] = {100, 100, 199, 199};
    const int32_t gt_labels[1] = {1};
    const size_t np = 400;
    float *props = malloc(np * 4 * sizeof(float));
    for (size_t i = 0; i < np; i++) {
        float s = (float)(i % 5);
        if (i % 4 == 0) /* 100 foreground: shifted by up to 4 px, IoU > 0.9 */
            set_box(props + 4 * i, 100 + s, 100, 199 + s, 199);
        else /* 300 background: half overlapping the GT box by a quarter, half far away */
            set_box(props + 4 * i, i % 2 ? 150 : 400 + s, 150, i % 2 ? 249 : 450, 249);
    }
    roi_out o;
    roi_out_init(&o, 128, 2);
    assert_ok(f.ctx, run_roi(&f, &p, &rng, props, np, gt, gt_labels, 1, 2, &o));
    assert_int_equal(o.n, 128);
    assert_int_equal(count_fg(&o), 32);
    check_roi_layout(&o);

    /* 6 foreground (5 proposals and the GT box), 15 background: all of them, 21 rows; then 16 + 45. */
    assert_ok(f.ctx, run_roi(&f, &p, &rng, props, 20, gt, gt_labels, 1, 2, &o));
    assert_int_equal(o.n, 21);
    assert_int_equal(count_fg(&o), 6);
    check_roi_layout(&o);
    assert_ok(f.ctx, run_roi(&f, &p, &rng, props, 60, gt, gt_labels, 1, 2, &o));
    assert_int_equal(count_fg(&o), 16);
    assert_int_equal(o.n, 61);
    check_roi_layout(&o);

    /* fg_per_image = numpy round (half to even), not truncation (the RPN's int()) nor half up:
     * 0.25 * 10 = 2.5 -> 2, 0.375 * 10 = 3.75 -> 4, 0.125 * 12 = 1.5 -> 2, 0.75 * 10 = 7.5 -> 8. */
    const struct {
        int batch;
        float fraction;
        size_t want_fg;
    } rounding[] = {{10, 0.25f, 2}, {10, 0.375f, 4}, {12, 0.125f, 2}, {10, 0.75f, 8}};
    for (size_t c = 0; c < sizeof rounding / sizeof rounding[0]; c++) {
        p.batch_size = rounding[c].batch;
        p.fg_fraction = rounding[c].fraction;
        assert_ok(f.ctx, run_roi(&f, &p, &rng, props, np, gt, gt_labels, 1, 2, &o));
        assert_int_equal(o.n, (size_t)rounding[c].batch);
        if (count_fg(&o) != rounding[c].want_fg)
            fail_msg("fg_fraction %g x batch %d: %zu foreground, expected %zu", (double)rounding[c].fraction,
                     rounding[c].batch, count_fg(&o), rounding[c].want_fg);
    }
    roi_out_free(&o);
    free(props);
    fixture_free(&f);
}

/* No GT boxes: every proposal is background (IoU 0 is in [0, 0.5)). */
static void test_roi_no_gt(void **state)
{
    (void)state;
    fixture f;
    fixture_init(&f, 1 << 16);
    frcnn_roi_target_params p = frcnn_roi_target_params_default();
    frcnn_rng rng;
    frcnn_rng_seed(&rng, 13);
    float props[5 * 4];
    for (int i = 0; i < 5; i++)
        set_box(props + 4 * i, (float)i, 0, (float)i + 20, 20);
    roi_out o;
    roi_out_init(&o, 128, 21);
    assert_ok(f.ctx, run_roi(&f, &p, &rng, props, 5, NULL, NULL, 0, 21, &o));
    assert_int_equal(o.n, 5);
    assert_int_equal(count_fg(&o), 0);
    check_roi_layout(&o);
    /* Nothing at all: no rows. */
    assert_ok(f.ctx, run_roi(&f, &p, &rng, NULL, 0, NULL, NULL, 0, 21, &o));
    assert_int_equal(o.n, 0);
    check_roi_layout(&o);
    roi_out_free(&o);
    fixture_free(&f);
}

/* The sample is exactly choose(fg candidates, fg_this) then choose(bg candidates, bg_this), candidates in row
 * order (proposals, then GT boxes), and the output keeps the chosen order. */
static void test_roi_determinism(void **state)
{
    (void)state;
    fixture f;
    fixture_init(&f, 1 << 20);
    frcnn_roi_target_params p = frcnn_roi_target_params_default();
    float gt[2 * 4];
    set_box(gt, 100, 100, 199, 199);
    set_box(gt + 4, 300, 300, 340, 380);
    const int32_t gt_labels[2] = {4, 7};
    const size_t np = 300, rows = np + 2;
    float *all = malloc(rows * 4 * sizeof(float));
    for (size_t i = 0; i < np; i++) {
        float s = (float)(i % 7);
        if (i % 3 == 0)
            set_box(all + 4 * i, 100 + s, 100 + s, 199, 199);
        else if (i % 3 == 1)
            set_box(all + 4 * i, 300 + s, 300, 340 + s, 380);
        else
            set_box(all + 4 * i, 500 + s, 500, 550, 550);
    }
    memcpy(all + 4 * np, gt, sizeof gt);
    roi_out a, b, c;
    roi_out_init(&a, 128, 8);
    roi_out_init(&b, 128, 8);
    roi_out_init(&c, 128, 8);
    frcnn_rng r1, r2, r3;
    frcnn_rng_seed(&r1, 99);
    frcnn_rng_seed(&r2, 99);
    frcnn_rng_seed(&r3, 100);
    assert_ok(f.ctx, run_roi(&f, &p, &r1, all, np, gt, gt_labels, 2, 8, &a));
    assert_ok(f.ctx, run_roi(&f, &p, &r2, all, np, gt, gt_labels, 2, 8, &b));
    assert_ok(f.ctx, run_roi(&f, &p, &r3, all, np, gt, gt_labels, 2, 8, &c));
    check_roi_layout(&a);
    assert_int_equal(a.n, 128);
    assert_int_equal(count_fg(&a), 32);
    tu_assert_identical("same seed rois", b.rois, a.rois, 128 * 4);
    tu_assert_identical("same seed targets", b.targets, a.targets, 128 * a.width);
    assert_labels("same seed labels", b.labels, a.labels, 128);
    assert_true(memcmp(a.rois, c.rois, 128 * 4 * sizeof(float)) != 0);

    /* Reproduce: IoU >= 0.5 rows (the first two groups and the GT boxes) are foreground, the third group is
     * background. */
    uint32_t *fg = malloc(rows * sizeof(uint32_t)), *bg = malloc(rows * sizeof(uint32_t));
    size_t n_fg = 0, n_bg = 0;
    for (size_t i = 0; i < rows; i++) {
        if (i >= np || i % 3 != 2)
            fg[n_fg++] = (uint32_t)i;
        else
            bg[n_bg++] = (uint32_t)i;
    }
    frcnn_rng want;
    frcnn_rng_seed(&want, 99);
    frcnn_rng_choose(&want, fg, n_fg, 32);
    frcnn_rng_choose(&want, bg, n_bg, 96);
    assert_same_rng(&r1, &want);
    for (size_t k = 0; k < 128; k++) {
        uint32_t i = k < 32 ? fg[k] : bg[k - 32];
        tu_assert_close("chosen order", a.rois + 4 * k, all + 4 * (size_t)i, 4, 0, 0);
        int32_t want_label = k >= 32 ? 0 : all[4 * i] >= 300 ? 7 : 4;
        assert_int_equal(a.labels[k], want_label);
    }
    free(fg);
    free(bg);
    free(all);
    roi_out_free(&a);
    roi_out_free(&b);
    roi_out_free(&c);
    fixture_free(&f);
}

static void test_roi_bad_arguments(void **state)
{
    (void)state;
    fixture f;
    fixture_init(&f, 1 << 16);
    frcnn_roi_target_params p = frcnn_roi_target_params_default();
    frcnn_rng rng;
    frcnn_rng_seed(&rng, 14);
    float props[4] = {0, 0, 9, 9}, gt[4] = {0, 0, 9, 9};
    int32_t labels[1] = {1};
    roi_out o;
    roi_out_init(&o, 128, 3);
    assert_int_equal(frcnn_roi_targets(NULL, f.arena, &p, &rng, props, 1, gt, labels, 1, 3, o.rois, o.labels,
                                       o.targets, o.inside, &o.n),
                     FRCNN_ERR_INVALID_ARG);
    tu_expect_error(f.ctx,
                 frcnn_roi_targets(f.ctx, f.arena, &p, &rng, props, 1, gt, labels, 1, 3, o.rois, o.labels,
                                   o.targets, o.inside, NULL),
                 FRCNN_ERR_INVALID_ARG);
    tu_expect_error(f.ctx, run_roi(&f, &p, &rng, props, 1, gt, NULL, 1, 3, &o), FRCNN_ERR_INVALID_ARG);
    labels[0] = 0;
    frcnn_status st = run_roi(&f, &p, &rng, props, 1, gt, labels, 1, 3, &o);
    assert_int_equal(st, FRCNN_ERR_INVALID_ARG);
    assert_non_null(strstr(frcnn_ctx_last_error(f.ctx), "gt_labels[0]"));
    frcnn_ctx_clear_error(f.ctx);
    labels[0] = 3;
    tu_expect_error(f.ctx, run_roi(&f, &p, &rng, props, 1, gt, labels, 1, 3, &o), FRCNN_ERR_INVALID_ARG);
    labels[0] = 1;
    tu_expect_error(f.ctx, run_roi(&f, &p, &rng, props, 1, gt, labels, 1, 1, &o), FRCNN_ERR_INVALID_ARG);
    frcnn_roi_target_params bad = p;
    bad.stds[2] = 0.0f;
    tu_expect_error(f.ctx, run_roi(&f, &bad, &rng, props, 1, gt, labels, 1, 3, &o), FRCNN_ERR_INVALID_ARG);
    bad = p;
    bad.bg_iou_lo = 0.6f;
    tu_expect_error(f.ctx, run_roi(&f, &bad, &rng, props, 1, gt, labels, 1, 3, &o), FRCNN_ERR_INVALID_ARG);
    bad = p;
    bad.batch_size = 0;
    tu_expect_error(f.ctx, run_roi(&f, &bad, &rng, props, 1, gt, labels, 1, 3, &o), FRCNN_ERR_INVALID_ARG);
    props[1] = NAN;
    st = run_roi(&f, &p, &rng, props, 1, gt, labels, 1, 3, &o);
    assert_int_equal(st, FRCNN_ERR_INVALID_ARG);
    assert_non_null(strstr(frcnn_ctx_last_error(f.ctx), "proposals row 0"));
    frcnn_ctx_clear_error(f.ctx);
    props[1] = 0;
    set_box(gt, 0, 0, 9, -2);
    tu_expect_error(f.ctx, run_roi(&f, &p, &rng, props, 1, gt, labels, 1, 3, &o), FRCNN_ERR_INVALID_ARG);
    roi_out_free(&o);
    fixture_free(&f);

    fixture_init(&f, 0);
    set_box(gt, 0, 0, 9, 9);
    roi_out_init(&o, 128, 3);
    tu_expect_error(f.ctx, run_roi(&f, &p, &rng, props, 1, gt, labels, 1, 3, &o), FRCNN_ERR_NO_MEMORY);
    roi_out_free(&o);
    fixture_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_anchor_thresholds),
        cmocka_unit_test(test_anchor_best_anchor_rule),
        cmocka_unit_test(test_anchor_argmax_first_gt),
        cmocka_unit_test(test_anchor_border),
        cmocka_unit_test(test_anchor_sampling_quotas),
        cmocka_unit_test(test_anchor_determinism),
        cmocka_unit_test(test_anchor_bad_arguments),
        cmocka_unit_test(test_anchor_scratch_bound),
        cmocka_unit_test(test_roi_gt_only),
        cmocka_unit_test(test_roi_hand_case),
        cmocka_unit_test(test_roi_quotas),
        cmocka_unit_test(test_roi_no_gt),
        cmocka_unit_test(test_roi_determinism),
        cmocka_unit_test(test_roi_bad_arguments),
    };
    return cmocka_run_group_tests_name("targets", tests, NULL, NULL);
}
