/* Pascal VOC evaluation (lib/data/voc_eval.c): hand-computed cases for every rule of py-faster-rcnn's
 * voc_eval.py (ranking, strict IoU > 0.5 with "+1" pixels, duplicates, difficult objects, NaN classes, numpy's
 * 11-point thresholds, score ties), a randomized comparison with an independent O(n^2) reimplementation, the comp4
 * result files, argument errors and allocation failures. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ----- helpers ----------------------------------------------------------------------------------------------- */

static frcnn_object obj(float x1, float y1, float x2, float y2, int label, bool difficult)
{
    frcnn_object o = {x1, y1, x2, y2, label, difficult};
    return o;
}

static frcnn_detection det(float x1, float y1, float x2, float y2, float score, int label)
{
    frcnn_detection d = {x1, y1, x2, y2, score, label};
    return d;
}

static frcnn_voc_eval *eval_new(frcnn_ctx *ctx, int num_classes, size_t n_images)
{
    frcnn_voc_eval *e = NULL;
    frcnn_status st = frcnn_voc_eval_create(ctx, num_classes, n_images, &e);
    if (st != FRCNN_OK)
        print_error("voc_eval_create: %s\n", frcnn_ctx_last_error(ctx));
    assert_int_equal(st, FRCNN_OK);
    return e;
}

static void set_truth(frcnn_ctx *ctx, frcnn_voc_eval *e, size_t image, const frcnn_object *o, size_t n)
{
    frcnn_status st = frcnn_voc_eval_set_truth(e, image, o, n);
    if (st != FRCNN_OK)
        print_error("voc_eval_set_truth: %s\n", frcnn_ctx_last_error(ctx));
    assert_int_equal(st, FRCNN_OK);
}

static void add(frcnn_ctx *ctx, frcnn_voc_eval *e, size_t image, const frcnn_detection *d, size_t n)
{
    frcnn_status st = frcnn_voc_eval_add(e, image, d, n);
    if (st != FRCNN_OK)
        print_error("voc_eval_add: %s\n", frcnn_ctx_last_error(ctx));
    assert_int_equal(st, FRCNN_OK);
}

/* Runs both metrics: ap07 / ap10 receive num_classes values each. */
static void compute(frcnn_ctx *ctx, frcnn_voc_eval *e, float *ap07, float *map07, float *ap10, float *map10)
{
    frcnn_status st = frcnn_voc_eval_compute(e, true, ap07, map07);
    if (st == FRCNN_OK)
        st = frcnn_voc_eval_compute(e, false, ap10, map10);
    if (st != FRCNN_OK)
        print_error("voc_eval_compute: %s\n", frcnn_ctx_last_error(ctx));
    assert_int_equal(st, FRCNN_OK);
}

/* got must be NaN when want is, else within 1e-6 of it. */
static void expect_ap(const char *what, float got, double want)
{
    if (isnan(want) ? !isnan(got) : !(fabs((double)got - want) <= 1e-6)) {
        print_error("%s: got %.9g, expected %.9g\n", what, (double)got, want);
        fail();
    }
}

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* ----- hand-computed cases ----------------------------------------------------------------------------------- */

/* Every object found, with varied scores, over three images and two classes: AP 1 with both metrics. */
static void test_perfect_detector(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_voc_eval *e = eval_new(ctx, 3, 3);
    const frcnn_object g0[] = {obj(10, 10, 50, 60, 1, false), obj(100, 20, 180, 90, 2, false)};
    const frcnn_object g2[] = {obj(0, 0, 30, 30, 1, false), obj(40, 0, 70, 30, 1, false)};
    set_truth(ctx, e, 0, g0, 2);
    set_truth(ctx, e, 1, NULL, 0);
    set_truth(ctx, e, 2, g2, 2);
    const frcnn_detection d0[] = {det(10, 10, 50, 60, 0.3f, 1), det(100, 20, 180, 90, 0.95f, 2)};
    const frcnn_detection d2[] = {det(40, 0, 70, 30, 0.9f, 1), det(0, 0, 30, 30, 0.1f, 1)};
    add(ctx, e, 2, d2, 2);
    add(ctx, e, 0, d0, 2);
    float ap07[3], ap10[3], m07, m10;
    compute(ctx, e, ap07, &m07, ap10, &m10);
    expect_ap("background 07", ap07[0], NAN);
    expect_ap("background area", ap10[0], NAN);
    for (int c = 1; c < 3; c++) {
        expect_ap("class 07", ap07[c], 1.0);
        expect_ap("class area", ap10[c], 1.0);
    }
    expect_ap("mAP 07", m07, 1.0);
    expect_ap("mAP area", m10, 1.0);
    frcnn_voc_eval_free(e);
    frcnn_ctx_free(ctx);
}

/* A false positive ranked above a true positive. */
static void test_fp_above_tp(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    float ap07[2], ap10[2], m07, m10;

    /* Two objects A, B; detections A (0.9), nothing (0.8), B (0.7):
     *   rank       1    2    3
     *   recall    1/2  1/2   1
     *   precision  1   1/2  2/3
     * 11-point: t = 0 .. 0.5 (6 points) see rank 1: 1; t = 0.6 .. 1 (5 points) only rank 3: 2/3.
     *   AP07 = (6 * 1 + 5 * 2/3) / 11 = 28/33 = 0.848485.
     * Area: envelope 1 on (0, 1/2], 2/3 on (1/2, 1]: AP = 1/2 * 1 + 1/2 * 2/3 = 5/6 = 0.833333. */
    frcnn_voc_eval *e = eval_new(ctx, 2, 1);
    const frcnn_object g[] = {obj(0, 0, 9, 9, 1, false), obj(20, 20, 29, 29, 1, false), obj(40, 0, 49, 9, 1, false)};
    const frcnn_detection d[] = {det(0, 0, 9, 9, 0.9f, 1), det(60, 60, 69, 69, 0.8f, 1), det(20, 20, 29, 29, 0.7f, 1)};
    set_truth(ctx, e, 0, g, 2);
    add(ctx, e, 0, d, 3);
    compute(ctx, e, ap07, &m07, ap10, &m10);
    expect_ap("TP FP TP, 2 objects, 07", ap07[1], 28.0 / 33.0);
    expect_ap("TP FP TP, 2 objects, area", ap10[1], 5.0 / 6.0);
    frcnn_voc_eval_free(e);

    /* The same detections with a third object C never found:
     *   recall    1/3  1/3  2/3
     *   precision  1   1/2  2/3
     * 11-point: t = 0, .1, .2, .3 (4 points) reach rank 1: 1; t = .4, .5, .6 (3 points) only rank 3: 2/3;
     *   t = .7 .. 1 (4 points): no rank, 0.  AP07 = (4 + 3 * 2/3) / 11 = 6/11 = 0.545455.
     * Area: 1/3 * 1 + 1/3 * 2/3 + 1/3 * 0 = 5/9 = 0.555556. */
    e = eval_new(ctx, 2, 1);
    set_truth(ctx, e, 0, g, 3);
    add(ctx, e, 0, d, 3);
    compute(ctx, e, ap07, &m07, ap10, &m10);
    expect_ap("TP FP TP, 3 objects, 07", ap07[1], 6.0 / 11.0);
    expect_ap("TP FP TP, 3 objects, area", ap10[1], 5.0 / 9.0);
    frcnn_voc_eval_free(e);

    /* A single object, the false positive first: recall (0, 1), precision (0, 1/2): 1/2 with both metrics (the
     * envelope carries 1/2 back to recall 0). */
    e = eval_new(ctx, 2, 1);
    set_truth(ctx, e, 0, g, 1);
    const frcnn_detection fp_tp[] = {det(60, 60, 69, 69, 0.9f, 1), det(0, 0, 9, 9, 0.8f, 1)};
    add(ctx, e, 0, fp_tp, 2);
    compute(ctx, e, ap07, &m07, ap10, &m10);
    expect_ap("FP TP 07", ap07[1], 0.5);
    expect_ap("FP TP area", ap10[1], 0.5);
    frcnn_voc_eval_free(e);
    frcnn_ctx_free(ctx);
}

/* A second detection of an object is a false positive, even when another unmatched object overlaps it by more
 * than 0.5: voc_eval.py takes the object of highest IoU, matched or not. */
static void test_duplicate_is_fp(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_voc_eval *e = eval_new(ctx, 2, 1);
    /* A and B overlap: IoU(A, B) = 80 / 120 = 2/3. */
    const frcnn_object g[] = {obj(0, 0, 9, 9, 1, false), obj(2, 0, 11, 9, 1, false)};
    /* 0.9 on A (TP), 0.8 on A again (IoU 1 with matched A, 2/3 with unmatched B: FP), 0.7 on B (TP):
     * TP FP TP over 2 objects, as in test_fp_above_tp: 28/33 and 5/6. Matching the duplicate to B instead would
     * give TP TP FP: AP 1. */
    const frcnn_detection d[] = {det(0, 0, 9, 9, 0.9f, 1), det(0, 0, 9, 9, 0.8f, 1), det(2, 0, 11, 9, 0.7f, 1)};
    set_truth(ctx, e, 0, g, 2);
    add(ctx, e, 0, d, 3);
    float ap07[2], ap10[2], m07, m10;
    compute(ctx, e, ap07, &m07, ap10, &m10);
    expect_ap("duplicate 07", ap07[1], 28.0 / 33.0);
    expect_ap("duplicate area", ap10[1], 5.0 / 6.0);
    frcnn_voc_eval_free(e);

    /* Equal IoU with two objects: the first one given wins (np.argmax). 0.9 on A (TP); 0.8 at (1, 0, 10, 9) has
     * IoU 90/110 with both A and B, so it hits the matched A: FP. TP FP over 2 objects: recall (1/2, 1/2),
     * precision (1, 1/2): AP07 6/11, area 1/2. Taking B (the last maximum) would give TP TP: AP 1. */
    e = eval_new(ctx, 2, 1);
    const frcnn_detection tie[] = {det(0, 0, 9, 9, 0.9f, 1), det(1, 0, 10, 9, 0.8f, 1)};
    set_truth(ctx, e, 0, g, 2);
    add(ctx, e, 0, tie, 2);
    compute(ctx, e, ap07, &m07, ap10, &m10);
    expect_ap("IoU tie 07", ap07[1], 6.0 / 11.0);
    expect_ap("IoU tie area", ap10[1], 0.5);
    frcnn_voc_eval_free(e);
    frcnn_ctx_free(ctx);
}

/* Detections matching a difficult object count neither as TP nor as FP (twice here), and difficult objects are
 * not in the recall's denominator. */
static void test_difficult_ignored(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_voc_eval *e = eval_new(ctx, 2, 1);
    const frcnn_object g[] = {obj(0, 0, 9, 9, 1, false), obj(30, 30, 39, 39, 1, true)};
    const frcnn_detection d[] = {det(30, 30, 39, 39, 0.95f, 1), det(31, 30, 39, 39, 0.9f, 1),
                                 det(0, 0, 9, 9, 0.8f, 1)};
    set_truth(ctx, e, 0, g, 2);
    add(ctx, e, 0, d, 3);
    /* Ranks: ignored, ignored, TP: cumulative tp (0, 0, 1), fp (0, 0, 0); recall (0, 0, 1), precision
     * (0, 0, 1): AP 1. Counted as FPs: precision 1/3 at the TP, AP 1/3; counted as TP or in npos: recall < 1. */
    float ap07[2], ap10[2], m07, m10;
    compute(ctx, e, ap07, &m07, ap10, &m10);
    expect_ap("difficult 07", ap07[1], 1.0);
    expect_ap("difficult area", ap10[1], 1.0);
    /* A detection near the difficult object with IoU <= 0.5 is an ordinary FP, ranked last here: AP unchanged
     * by area (recall 1 reached before), and a precision drop at recall 1 does not lower the envelope. */
    const frcnn_detection low = det(30, 30, 39, 34, 0.1f, 1);
    add(ctx, e, 0, &low, 1);
    compute(ctx, e, ap07, &m07, ap10, &m10);
    expect_ap("difficult + late FP 07", ap07[1], 1.0);
    expect_ap("difficult + late FP area", ap10[1], 1.0);
    frcnn_voc_eval_free(e);
    frcnn_ctx_free(ctx);
}

/* A class whose only objects are difficult has AP NaN and is left out of the mAP; so is a class without any
 * object; a class with objects but no detection has AP 0 and counts. */
static void test_nan_classes(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_voc_eval *e = eval_new(ctx, 5, 2);
    const frcnn_object g0[] = {obj(0, 0, 9, 9, 1, true), obj(20, 0, 29, 9, 2, false)};
    const frcnn_object g1[] = {obj(0, 0, 9, 9, 4, false)};
    set_truth(ctx, e, 0, g0, 2);
    set_truth(ctx, e, 1, g1, 1);
    const frcnn_detection d0[] = {det(0, 0, 9, 9, 0.9f, 1), det(20, 0, 29, 9, 0.8f, 2), det(50, 50, 60, 60, 0.7f, 3)};
    add(ctx, e, 0, d0, 3);
    float ap07[5], ap10[5], m07, m10;
    compute(ctx, e, ap07, &m07, ap10, &m10);
    expect_ap("only difficult", ap07[1], NAN);
    expect_ap("only difficult, area", ap10[1], NAN);
    expect_ap("perfect", ap07[2], 1.0);
    expect_ap("no objects, one detection", ap07[3], NAN);
    expect_ap("no detection", ap07[4], 0.0);
    expect_ap("no detection, area", ap10[4], 0.0);
    expect_ap("mAP 07 = (1 + 0) / 2", m07, 0.5);
    expect_ap("mAP area", m10, 0.5);
    frcnn_voc_eval_free(e);

    /* No class with a non-difficult object at all: mAP NaN. */
    e = eval_new(ctx, 2, 1);
    set_truth(ctx, e, 0, g0, 1);
    compute(ctx, e, ap07, &m07, ap10, &m10);
    expect_ap("all NaN: mAP", m07, NAN);
    expect_ap("all NaN: mAP area", m10, NAN);
    frcnn_voc_eval_free(e);
    frcnn_ctx_free(ctx);
}

/* IoU exactly 0.5 is not a match, slightly more is. Boxes are inclusive pixels: (0, 0, 9, 9) is 10 x 10 = 100. */
static void test_iou_threshold_strict(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    const frcnn_object g = obj(0, 0, 9, 9, 1, false);
    const struct {
        frcnn_detection d;
        double ap;
        const char *what;
    } cases[] = {
        /* the upper half, 10 x 5 = 50 inside: 50 / 100 = 0.5 exactly */
        {det(0, 0, 9, 4, 0.9f, 1), 0.0, "inside, IoU 0.5"},
        /* twice as wide, 20 x 10 = 200 around it: 100 / 200 = 0.5 exactly */
        {det(0, 0, 19, 9, 0.9f, 1), 0.0, "outside, IoU 0.5"},
        /* 10 x 5.0078125 = 50.078125 inside: IoU 0.50078125 */
        {det(0, 0, 9, 4.0078125f, 0.9f, 1), 1.0, "inside, IoU 0.50078125"},
        /* 19.984375 x 10 = 199.84375 around it: 100 / 199.84375 = 0.500391 */
        {det(0, 0, 18.984375f, 9, 0.9f, 1), 1.0, "outside, IoU 0.500391"},
        /* 10 x 5.25 = 52.5 inside: IoU 0.525; without the +1 it would be 9 x 4.25 / 81 = 0.472, no match */
        {det(0, 0, 9, 4.25f, 0.9f, 1), 1.0, "inside, IoU 0.525 (+1 convention)"},
        /* 19 x 10 = 190 around it: IoU 100 / 190 = 0.526; without the +1 81 / 162 = 0.5, no match */
        {det(0, 0, 18, 9, 0.9f, 1), 1.0, "outside, IoU 0.526 (+1 convention)"},
    };
    for (size_t i = 0; i < N_OF(cases); i++) {
        frcnn_voc_eval *e = eval_new(ctx, 2, 1);
        set_truth(ctx, e, 0, &g, 1);
        add(ctx, e, 0, &cases[i].d, 1);
        float ap07[2], ap10[2], m07, m10;
        compute(ctx, e, ap07, &m07, ap10, &m10);
        expect_ap(cases[i].what, ap07[1], cases[i].ap);
        expect_ap(cases[i].what, ap10[1], cases[i].ap);
        frcnn_voc_eval_free(e);
    }
    frcnn_ctx_free(ctx);
}

/* Equal scores rank by image index, then by the order added (within one call and across calls). */
static void test_score_ties(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    float ap07[2], ap10[2], m07, m10;
    const frcnn_object a = obj(0, 0, 9, 9, 1, false);
    const frcnn_detection tp = det(0, 0, 9, 9, 0.5f, 1), fp = det(50, 50, 59, 59, 0.5f, 1);

    /* Image 1's FP is added before image 0's TP; image 0 ranks first: TP, FP over 2 objects.
     * recall (1/2, 1/2), precision (1, 1/2): AP07 = 6/11 (t <= 0.5), area 1/2.
     * In the order added it would be FP, TP: precision (0, 1/2): AP07 = 3/11, area 1/4. */
    frcnn_voc_eval *e = eval_new(ctx, 2, 2);
    set_truth(ctx, e, 0, &a, 1);
    set_truth(ctx, e, 1, &a, 1);
    add(ctx, e, 1, &fp, 1);
    add(ctx, e, 0, &tp, 1);
    compute(ctx, e, ap07, &m07, ap10, &m10);
    expect_ap("image index first, 07", ap07[1], 6.0 / 11.0);
    expect_ap("image index first, area", ap10[1], 0.5);
    frcnn_voc_eval_free(e);

    /* One image, FP added before TP, in one call and in two: FP ranks first, AP 1/2 (recall (0, 1), precision
     * (0, 1/2)). TP added first instead: AP 1. */
    const frcnn_detection fp_tp[] = {fp, tp}, tp_fp[] = {tp, fp};
    for (int calls = 1; calls <= 2; calls++) {
        e = eval_new(ctx, 2, 1);
        set_truth(ctx, e, 0, &a, 1);
        if (calls == 1) {
            add(ctx, e, 0, fp_tp, 2);
        } else {
            add(ctx, e, 0, &fp_tp[0], 1);
            add(ctx, e, 0, &fp_tp[1], 1);
        }
        compute(ctx, e, ap07, &m07, ap10, &m10);
        expect_ap("FP added first, 07", ap07[1], 0.5);
        expect_ap("FP added first, area", ap10[1], 0.5);
        frcnn_voc_eval_free(e);
    }
    e = eval_new(ctx, 2, 1);
    set_truth(ctx, e, 0, &a, 1);
    add(ctx, e, 0, tp_fp, 2);
    compute(ctx, e, ap07, &m07, ap10, &m10);
    expect_ap("TP added first, 07", ap07[1], 1.0);
    expect_ap("TP added first, area", ap10[1], 1.0);
    frcnn_voc_eval_free(e);
    frcnn_ctx_free(ctx);
}

/* Detections in images without objects of their class are false positives, including one exactly on an object
 * of another class. */
static void test_dets_without_gt(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_voc_eval *e = eval_new(ctx, 3, 3);
    const frcnn_object g0 = obj(0, 0, 9, 9, 1, false), g1 = obj(0, 0, 9, 9, 2, false);
    set_truth(ctx, e, 0, &g0, 1);
    set_truth(ctx, e, 1, &g1, 1);
    set_truth(ctx, e, 2, NULL, 0);
    const frcnn_detection on_other_class = det(0, 0, 9, 9, 0.9f, 1), in_empty = det(0, 0, 9, 9, 0.8f, 1);
    const frcnn_detection hit = det(0, 0, 9, 9, 0.7f, 1);
    add(ctx, e, 1, &on_other_class, 1);
    add(ctx, e, 2, &in_empty, 1);
    add(ctx, e, 0, &hit, 1);
    /* Class 1: FP, FP, TP: recall (0, 0, 1), precision (0, 0, 1/3): 1/3 with both metrics.
     * Class 2: an object, no detection: 0. mAP = 1/6. */
    float ap07[3], ap10[3], m07, m10;
    compute(ctx, e, ap07, &m07, ap10, &m10);
    expect_ap("class 1, 07", ap07[1], 1.0 / 3.0);
    expect_ap("class 1, area", ap10[1], 1.0 / 3.0);
    expect_ap("class 2", ap07[2], 0.0);
    expect_ap("mAP 07", m07, 1.0 / 6.0);
    expect_ap("mAP area", m10, 1.0 / 6.0);
    frcnn_voc_eval_free(e);
    frcnn_ctx_free(ctx);
}

/* Four classes with different APs, given in mixed order: the mAP is their mean, NaN classes left out. */
static void test_multiclass_map(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_voc_eval *e = eval_new(ctx, 5, 3);
    /* class 1: perfect over images 0 and 2; class 2: TP FP TP over 2 objects (28/33, 5/6);
     * class 3: one object, no detection (0); class 4: no object, one detection (NaN). */
    const frcnn_object g0[] = {obj(0, 0, 9, 9, 1, false), obj(100, 100, 149, 129, 2, false)};
    const frcnn_object g1[] = {obj(40, 40, 79, 59, 2, false), obj(0, 0, 99, 99, 3, false)};
    const frcnn_object g2[] = {obj(5, 5, 25, 45, 1, false)};
    set_truth(ctx, e, 2, g2, 1);
    set_truth(ctx, e, 0, g0, 2);
    set_truth(ctx, e, 1, g1, 2);
    const frcnn_detection d1[] = {det(40, 40, 79, 59, 0.6f, 2), det(200, 200, 210, 210, 0.99f, 4)};
    const frcnn_detection d0[] = {det(100, 100, 149, 129, 0.9f, 2), det(0, 0, 9, 9, 0.5f, 1),
                                  det(0, 100, 40, 120, 0.7f, 2)};
    const frcnn_detection d2[] = {det(5, 5, 25, 45, 0.4f, 1)};
    add(ctx, e, 1, d1, 2);
    add(ctx, e, 0, d0, 3);
    add(ctx, e, 2, d2, 1);
    float ap07[5], ap10[5], m07, m10;
    compute(ctx, e, ap07, &m07, ap10, &m10);
    const double want07[5] = {NAN, 1.0, 28.0 / 33.0, 0.0, NAN}, want10[5] = {NAN, 1.0, 5.0 / 6.0, 0.0, NAN};
    for (int c = 0; c < 5; c++) {
        expect_ap("AP 07", ap07[c], want07[c]);
        expect_ap("AP area", ap10[c], want10[c]);
    }
    expect_ap("mAP 07", m07, (1.0 + 28.0 / 33.0 + 0.0) / 3.0);
    expect_ap("mAP area", m10, (1.0 + 5.0 / 6.0 + 0.0) / 3.0);
    /* compute is repeatable: the matches of one call do not leak into the next */
    float again[5], m_again;
    assert_int_equal(frcnn_voc_eval_compute(e, true, again, &m_again), FRCNN_OK);
    tu_assert_identical("AP 07, second call", again + 1, ap07 + 1, 3);
    frcnn_voc_eval_free(e);
    frcnn_ctx_free(ctx);
}

/* voc_eval.py's thresholds are numpy's arange(0., 1.1, 0.1) = i * 0.1, whose fourth is 0.30000000000000004: a
 * recall of exactly 3/10 does not reach it. Ten objects, three found: recall 0.1, 0.2, 0.3 at precision 1; the
 * thresholds 0, 0.1, 0.2 are reached, the others not: AP07 = 3/11 (4/11 with a threshold of exactly 0.3). */
static void test_numpy_thresholds(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_voc_eval *e = eval_new(ctx, 2, 10);
    const frcnn_object g = obj(0, 0, 9, 9, 1, false);
    const frcnn_detection d = det(0, 0, 9, 9, 0.9f, 1);
    for (size_t i = 0; i < 10; i++) {
        set_truth(ctx, e, i, &g, 1);
        if (i < 3)
            add(ctx, e, i, &d, 1);
    }
    float ap07[2], ap10[2], m07, m10;
    compute(ctx, e, ap07, &m07, ap10, &m10);
    expect_ap("recall 3/10, 07", ap07[1], 3.0 / 11.0);
    expect_ap("recall 3/10, area", ap10[1], 0.3);
    frcnn_voc_eval_free(e);
    frcnn_ctx_free(ctx);
}

/* ----- randomized comparison with an independent reimplementation -------------------------------------------- */

typedef struct ref_det {
    float b[4], score;
    int label;
    size_t image, seq; /* seq: the order added over the whole evaluation */
} ref_det;

typedef struct ref_gt {
    float b[4];
    int label;
    bool difficult;
    size_t image;
} ref_gt;

typedef struct ref_stats {
    size_t tp, fp, ignored, duplicates, ties;
} ref_stats;

static double ref_iou(const float *a, const float *b)
{
    double w = fmin(a[2], b[2]) - fmax(a[0], b[0]) + 1.0, h = fmin(a[3], b[3]) - fmax(a[1], b[1]) + 1.0;
    if (w <= 0.0 || h <= 0.0)
        return 0.0;
    double area_a = ((double)a[2] - a[0] + 1.0) * ((double)a[3] - a[1] + 1.0);
    double area_b = ((double)b[2] - b[0] + 1.0) * ((double)b[3] - b[1] + 1.0);
    return w * h / (area_a + area_b - w * h);
}

/* Whether detection x ranks before y: higher score, then lower image, then added earlier. */
static bool ref_ahead(const ref_det *x, const ref_det *y)
{
    if (x->score != y->score)
        return x->score > y->score;
    return x->image != y->image ? x->image < y->image : x->seq < y->seq;
}

/* AP of class c, both metrics, the slow way: each detection's rank by counting those ahead of it; matching in
 * rank order; precision and recall at each rank recounted from scratch; 11-point from a table of numpy's
 * thresholds; area as the sum over true positives of 1/npos times the best precision at that rank or later. */
static void ref_ap(const ref_det *dets, size_t nd, const ref_gt *gts, size_t ng, int c, double *ap07,
                   double *ap10, ref_stats *stats)
{
    size_t npos = 0, m = 0;
    for (size_t j = 0; j < ng; j++)
        npos += gts[j].label == c && !gts[j].difficult;
    if (npos == 0) {
        *ap07 = *ap10 = NAN;
        return;
    }
    size_t *at_rank = calloc(nd + 1, sizeof *at_rank);
    int *outcome = calloc(nd + 1, sizeof *outcome); /* +1 TP, -1 FP, 0 ignored */
    bool *used = calloc(ng + 1, sizeof *used);
    double *prec = calloc(nd + 1, sizeof *prec), *rec = calloc(nd + 1, sizeof *rec);
    for (size_t i = 0; i < nd; i++) {
        if (dets[i].label != c)
            continue;
        size_t rank = 0;
        for (size_t j = 0; j < nd; j++)
            if (j != i && dets[j].label == c) {
                rank += ref_ahead(&dets[j], &dets[i]);
                stats->ties += j > i && dets[j].score == dets[i].score;
            }
        at_rank[rank] = i;
        m++;
    }
    for (size_t r = 0; r < m; r++) {
        const ref_det *d = &dets[at_rank[r]];
        double best = -1.0;
        size_t bj = ng;
        for (size_t j = 0; j < ng; j++)
            if (gts[j].image == d->image && gts[j].label == c && ref_iou(d->b, gts[j].b) > best) {
                best = ref_iou(d->b, gts[j].b);
                bj = j;
            }
        if (bj == ng || !(best > 0.5)) {
            outcome[r] = -1;
            stats->fp++;
        } else if (gts[bj].difficult) {
            outcome[r] = 0;
            stats->ignored++;
        } else if (used[bj]) {
            outcome[r] = -1;
            stats->fp++;
            stats->duplicates++;
        } else {
            outcome[r] = 1;
            used[bj] = true;
            stats->tp++;
        }
    }
    for (size_t r = 0; r < m; r++) {
        size_t tp = 0, fp = 0;
        for (size_t q = 0; q <= r; q++) {
            tp += outcome[q] == 1;
            fp += outcome[q] == -1;
        }
        prec[r] = tp + fp ? (double)tp / (double)(tp + fp) : 0.0;
        rec[r] = (double)tp / (double)npos;
    }
    static const double thresholds[11] = {0.0, 0.1, 0.2, 0.30000000000000004, 0.4, 0.5, 0.6000000000000001,
                                          0.7000000000000001, 0.8, 0.9, 1.0};
    *ap07 = 0.0;
    for (int t = 0; t < 11; t++) {
        double best = 0.0;
        for (size_t r = 0; r < m; r++)
            if (rec[r] >= thresholds[t])
                best = fmax(best, prec[r]);
        *ap07 += best / 11.0;
    }
    *ap10 = 0.0;
    for (size_t r = 0; r < m; r++)
        if (outcome[r] == 1) {
            double best = 0.0;
            for (size_t q = r; q < m; q++)
                best = fmax(best, prec[q]);
            *ap10 += best / (double)npos;
        }
    free(at_rank);
    free(outcome);
    free(used);
    free(prec);
    free(rec);
}

/* A coordinate on the half-pixel grid, so that IoUs of exactly 0.5 and exact score ties happen. */
static float half(frcnn_rng *rng, uint64_t n)
{
    return 0.5f * (float)frcnn_rng_below(rng, n);
}

/* Random ground truth and detections (jittered copies of objects, some with another label, and random boxes;
 * scores from a coarse grid), given to the evaluation in shuffled image order and in pieces; the result must
 * agree with ref_ap for every class. */
static void test_random_vs_reference(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    ref_stats stats = {0};
    size_t total_dets = 0;
    for (uint64_t seed = 1; seed <= 40; seed++) {
        frcnn_rng rng;
        frcnn_rng_seed(&rng, seed);
        int num_classes = 2 + (int)frcnn_rng_below(&rng, 4);
        size_t n_images = 1 + frcnn_rng_below(&rng, 30);
        ref_gt *gts = calloc(n_images * 6, sizeof *gts);
        ref_det *dets = calloc(n_images * 30, sizeof *dets);
        size_t ng = 0, nd = 0;
        frcnn_voc_eval *e = eval_new(ctx, num_classes, n_images);
        uint32_t *perm = malloc(n_images * sizeof *perm);
        for (size_t i = 0; i < n_images; i++)
            perm[i] = (uint32_t)i;
        frcnn_rng_shuffle(&rng, perm, n_images);
        for (size_t p = 0; p < n_images; p++) {
            size_t img = perm[p], first_gt = ng, k = frcnn_rng_below(&rng, 6);
            frcnn_object objs[6];
            for (size_t j = 0; j < k; j++, ng++) {
                /* one draw per statement: the order of evaluation inside an initializer is unspecified */
                ref_gt *g = &gts[ng];
                g->b[0] = half(&rng, 100);
                g->b[1] = half(&rng, 100);
                g->b[2] = g->b[0] + 4 + half(&rng, 60);
                g->b[3] = g->b[1] + 4 + half(&rng, 60);
                g->label = 1 + (int)frcnn_rng_below(&rng, (uint64_t)num_classes - 1);
                g->difficult = frcnn_rng_below(&rng, 6) == 0;
                g->image = img;
                objs[j] = obj(g->b[0], g->b[1], g->b[2], g->b[3], g->label, g->difficult);
            }
            set_truth(ctx, e, img, objs, k);
            /* jittered copies of this image's objects, then random boxes */
            frcnn_detection ds[30];
            size_t n = 0;
            for (size_t j = first_gt; j < ng; j++)
                for (uint64_t copies = frcnn_rng_below(&rng, 4); copies > 0; copies--) {
                    frcnn_detection *d = &ds[n++];
                    d->x1 = gts[j].b[0] + half(&rng, 13) - 3.0f;
                    d->y1 = gts[j].b[1] + half(&rng, 13) - 3.0f;
                    d->x2 = gts[j].b[2] + half(&rng, 13) - 3.0f;
                    d->y2 = gts[j].b[3] + half(&rng, 13) - 3.0f;
                    d->score = 0.05f * (float)frcnn_rng_below(&rng, 20);
                    d->label = gts[j].label;
                    if (frcnn_rng_below(&rng, 8) == 0)
                        d->label = 1 + (int)frcnn_rng_below(&rng, (uint64_t)num_classes - 1);
                }
            for (uint64_t r = frcnn_rng_below(&rng, 5); r > 0; r--) {
                frcnn_detection *d = &ds[n++];
                d->x1 = half(&rng, 100);
                d->y1 = half(&rng, 100);
                d->x2 = d->x1 + half(&rng, 80);
                d->y2 = d->y1 + half(&rng, 80);
                d->score = frcnn_rng_uniform(&rng);
                d->label = 1 + (int)frcnn_rng_below(&rng, (uint64_t)num_classes - 1);
            }
            /* in two calls, split at a random point */
            size_t split = frcnn_rng_below(&rng, n + 1);
            add(ctx, e, img, ds, split);
            add(ctx, e, img, ds + split, n - split);
            for (size_t i = 0; i < n; i++, nd++) {
                ref_det r = {{ds[i].x1, ds[i].y1, ds[i].x2, ds[i].y2}, ds[i].score, ds[i].label, img, nd};
                dets[nd] = r;
            }
        }
        total_dets += nd;
        float ap07[6], ap10[6], m07, m10;
        compute(ctx, e, ap07, &m07, ap10, &m10);
        double sum07 = 0.0, sum10 = 0.0;
        int counted = 0;
        expect_ap("background", ap07[0], NAN);
        for (int c = 1; c < num_classes; c++) {
            double r07, r10;
            ref_ap(dets, nd, gts, ng, c, &r07, &r10, &stats);
            char what[96];
            snprintf(what, sizeof what, "seed %llu class %d, 07", (unsigned long long)seed, c);
            expect_ap(what, ap07[c], r07);
            snprintf(what, sizeof what, "seed %llu class %d, area", (unsigned long long)seed, c);
            expect_ap(what, ap10[c], r10);
            if (!isnan(r07)) {
                sum07 += r07;
                sum10 += r10;
                counted++;
            }
        }
        expect_ap("mAP 07", m07, counted ? sum07 / counted : NAN);
        expect_ap("mAP area", m10, counted ? sum10 / counted : NAN);
        frcnn_voc_eval_free(e);
        free(perm);
        free(gts);
        free(dets);
    }
    /* The data exercised every rule. */
    print_message("random: %zu detections: %zu TP, %zu FP (%zu duplicates), %zu ignored, %zu score ties\n",
                  total_dets, stats.tp, stats.fp, stats.duplicates, stats.ignored, stats.ties);
    assert_true(total_dets > 1000);
    assert_true(stats.tp > 100 && stats.fp > 100);
    assert_true(stats.ignored > 5 && stats.duplicates > 20 && stats.ties > 100);
    frcnn_ctx_free(ctx);
}

/* ----- result files ------------------------------------------------------------------------------------------ */

/* The whole file as a string (caller frees), or NULL when it does not exist. */
static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = calloc(1, 65536);
    size_t n = fread(buf, 1, 65535, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static void test_write(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    char dir[128], path[256];
    assert_int_equal(tu_make_tmpdir(dir, sizeof dir, "voc-eval"), 0);
    const char *ids[] = {"000005", "000007", "000009"};
    const char *names[] = {"__background__", "cat", "dog"};
    frcnn_voc_eval *e = eval_new(ctx, 3, 3);
    const frcnn_detection d2 = det(0, 1.5f, 9, 20, 0.9f, 1);
    const frcnn_detection d0[] = {det(10, 20, 30, 40, 0.12345f, 1), det(0, 0, 99.3f, 50, 0.5f, 1)};
    add(ctx, e, 2, &d2, 1);
    add(ctx, e, 0, d0, 2);
    /* Twice: the second overwrites the first. */
    for (int round = 0; round < 2; round++) {
        frcnn_status st = frcnn_voc_eval_write(e, dir, "test", ids, names);
        if (st != FRCNN_OK)
            print_error("voc_eval_write: %s\n", frcnn_ctx_last_error(ctx));
        assert_int_equal(st, FRCNN_OK);
        /* Image order, then order added; 1-based coordinates; score to 3 decimals, coordinates to 1. */
        snprintf(path, sizeof path, "%s/comp4_det_test_cat.txt", dir);
        char *text = read_all(path);
        assert_non_null(text);
        assert_string_equal(text, "000005 0.123 11.0 21.0 31.0 41.0\n"
                                  "000005 0.500 1.0 1.0 100.3 51.0\n"
                                  "000009 0.900 1.0 2.5 10.0 21.0\n");
        free(text);
        snprintf(path, sizeof path, "%s/comp4_det_test_dog.txt", dir);
        text = read_all(path);
        assert_non_null(text);
        assert_string_equal(text, "");
        free(text);
        snprintf(path, sizeof path, "%s/comp4_det_test_cat.txt.tmp", dir);
        assert_false(exists(path));
        snprintf(path, sizeof path, "%s/comp4_det_test_dog.txt.tmp", dir);
        assert_false(exists(path));
        snprintf(path, sizeof path, "%s/comp4_det_test___background__.txt", dir);
        assert_false(exists(path));
    }
    frcnn_voc_eval_free(e);
    assert_int_equal(tu_remove_tree(dir), 0);
    frcnn_ctx_free(ctx);
}

static void test_write_errors(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    char dir[128], path[256], missing[192];
    assert_int_equal(tu_make_tmpdir(dir, sizeof dir, "voc-eval"), 0);
    const char *ids[] = {"000005"};
    const char *names[] = {"__background__", "cat", "dog"};
    frcnn_voc_eval *e = eval_new(ctx, 3, 1);
    const frcnn_detection d = det(0, 0, 9, 9, 0.9f, 1);
    add(ctx, e, 0, &d, 1);

    /* A folder that does not exist: FRCNN_ERR_IO naming the path. */
    snprintf(missing, sizeof missing, "%s/no/such/dir", dir);
    tu_expect_error_msg(ctx, frcnn_voc_eval_write(e, missing, "test", ids, names), FRCNN_ERR_IO, missing);

    /* A full disk: the .tmp is a link to /dev/full, whose writes fail with ENOSPC. The error names the file,
     * nothing is left under the final name, and the .tmp is gone. */
    if (access("/dev/full", W_OK) == 0) {
        snprintf(path, sizeof path, "%s/comp4_det_test_cat.txt.tmp", dir);
        assert_int_equal(symlink("/dev/full", path), 0);
        tu_expect_error_msg(ctx, frcnn_voc_eval_write(e, dir, "test", ids, names), FRCNN_ERR_IO,
                            "comp4_det_test_cat.txt");
        assert_false(exists(path));
        snprintf(path, sizeof path, "%s/comp4_det_test_cat.txt", dir);
        assert_false(exists(path));
    }

    /* Arguments. */
    const char *bad_names[] = {"__background__", "cat/dog", "dog"};
    const char *null_names[] = {"__background__", NULL, "dog"};
    const char *null_ids[] = {NULL};
    tu_expect_error_msg(ctx, frcnn_voc_eval_write(e, NULL, "test", ids, names), FRCNN_ERR_INVALID_ARG, "dir");
    tu_expect_error_msg(ctx, frcnn_voc_eval_write(e, dir, NULL, ids, names), FRCNN_ERR_INVALID_ARG, "split");
    tu_expect_error_msg(ctx, frcnn_voc_eval_write(e, dir, "a/b", ids, names), FRCNN_ERR_INVALID_ARG, "split");
    tu_expect_error_msg(ctx, frcnn_voc_eval_write(e, dir, "test", NULL, names), FRCNN_ERR_INVALID_ARG, "image_ids");
    tu_expect_error_msg(ctx, frcnn_voc_eval_write(e, dir, "test", null_ids, names), FRCNN_ERR_INVALID_ARG,
                        "image_ids[0]");
    tu_expect_error_msg(ctx, frcnn_voc_eval_write(e, dir, "test", ids, NULL), FRCNN_ERR_INVALID_ARG, "class_names");
    tu_expect_error_msg(ctx, frcnn_voc_eval_write(e, dir, "test", ids, bad_names), FRCNN_ERR_INVALID_ARG,
                        "class_names[1]");
    tu_expect_error_msg(ctx, frcnn_voc_eval_write(e, dir, "test", ids, null_names), FRCNN_ERR_INVALID_ARG,
                        "class_names[1]");
    assert_int_equal(frcnn_voc_eval_write(NULL, dir, "test", ids, names), FRCNN_ERR_INVALID_ARG);
    frcnn_voc_eval_free(e);
    assert_int_equal(tu_remove_tree(dir), 0);
    frcnn_ctx_free(ctx);
}

/* ----- argument errors --------------------------------------------------------------------------------------- */

static void test_argument_errors(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_voc_eval *e = NULL;
    assert_int_equal(frcnn_voc_eval_create(NULL, 3, 2, &e), FRCNN_ERR_INVALID_ARG);
    tu_expect_error_msg(ctx, frcnn_voc_eval_create(ctx, 3, 2, NULL), FRCNN_ERR_INVALID_ARG, "out");
    tu_expect_error_msg(ctx, frcnn_voc_eval_create(ctx, 1, 2, &e), FRCNN_ERR_INVALID_ARG, "num_classes");
    assert_null(e);
    tu_expect_error_msg(ctx, frcnn_voc_eval_create(ctx, 3, 0, &e), FRCNN_ERR_INVALID_ARG, "n_images");
    tu_expect_error_msg(ctx, frcnn_voc_eval_create(ctx, 3, SIZE_MAX / 8, &e), FRCNN_ERR_OVERFLOW, "images");
    frcnn_voc_eval_free(NULL);

    e = eval_new(ctx, 3, 2);
    const frcnn_object good = obj(0, 0, 9, 9, 1, false);
    frcnn_object bad = good;
    tu_expect_error_msg(ctx, frcnn_voc_eval_set_truth(e, 2, &good, 1), FRCNN_ERR_INVALID_ARG, "image 2 out of range");
    tu_expect_error_msg(ctx, frcnn_voc_eval_set_truth(e, 0, NULL, 1), FRCNN_ERR_INVALID_ARG, "objects is NULL");
    bad.label = 0;
    tu_expect_error_msg(ctx, frcnn_voc_eval_set_truth(e, 0, &bad, 1), FRCNN_ERR_INVALID_ARG, "label 0");
    bad.label = 3;
    tu_expect_error_msg(ctx, frcnn_voc_eval_set_truth(e, 0, &bad, 1), FRCNN_ERR_INVALID_ARG, "label 3");
    bad = good;
    bad.y2 = NAN;
    tu_expect_error_msg(ctx, frcnn_voc_eval_set_truth(e, 0, &bad, 1), FRCNN_ERR_NOT_FINITE, "not finite");
    assert_int_equal(frcnn_voc_eval_set_truth(NULL, 0, &good, 1), FRCNN_ERR_INVALID_ARG);

    /* Not yet set: compute refuses. */
    float ap[3], map;
    tu_expect_error_msg(ctx, frcnn_voc_eval_compute(e, true, ap, &map), FRCNN_ERR_STATE, "image 0");
    set_truth(ctx, e, 0, &good, 1);
    tu_expect_error_msg(ctx, frcnn_voc_eval_set_truth(e, 0, &good, 1), FRCNN_ERR_STATE, "already set");
    tu_expect_error_msg(ctx, frcnn_voc_eval_compute(e, true, ap, &map), FRCNN_ERR_STATE, "image 1");
    set_truth(ctx, e, 1, NULL, 0);

    const frcnn_detection ok = det(0, 0, 9, 9, 0.9f, 1);
    const frcnn_detection bad_dets[] = {det(0, 0, 9, 9, 0.9f, 0), det(0, 0, 9, 9, 0.9f, 3),
                                        det(0, 0, 9, 9, NAN, 1), det(0, 0, INFINITY, 9, 0.5f, 1),
                                        det(-INFINITY, 0, 9, 9, 0.5f, 1)};
    const frcnn_status bad_status[] = {FRCNN_ERR_INVALID_ARG, FRCNN_ERR_INVALID_ARG, FRCNN_ERR_NOT_FINITE,
                                       FRCNN_ERR_NOT_FINITE, FRCNN_ERR_NOT_FINITE};
    tu_expect_error_msg(ctx, frcnn_voc_eval_add(e, 5, &ok, 1), FRCNN_ERR_INVALID_ARG, "image 5 out of range");
    tu_expect_error_msg(ctx, frcnn_voc_eval_add(e, 0, NULL, 1), FRCNN_ERR_INVALID_ARG, "dets is NULL");
    for (size_t i = 0; i < N_OF(bad_dets); i++) {
        /* the bad one second: the good one before it must not be added either */
        frcnn_detection pair[2] = {ok, bad_dets[i]};
        tu_expect_error_msg(ctx, frcnn_voc_eval_add(e, 0, pair, 2), bad_status[i], "detection 1");
    }
    assert_int_equal(frcnn_voc_eval_add(NULL, 0, &ok, 1), FRCNN_ERR_INVALID_ARG);
    assert_int_equal(frcnn_voc_eval_add(e, 0, NULL, 0), FRCNN_OK);
    /* Nothing was added: class 1 has an object and no detection. */
    assert_int_equal(frcnn_voc_eval_compute(e, true, ap, &map), FRCNN_OK);
    expect_ap("nothing added", ap[1], 0.0);

    tu_expect_error_msg(ctx, frcnn_voc_eval_compute(e, true, NULL, &map), FRCNN_ERR_INVALID_ARG, "ap");
    tu_expect_error_msg(ctx, frcnn_voc_eval_compute(e, true, ap, NULL), FRCNN_ERR_INVALID_ARG, "map");
    assert_int_equal(frcnn_voc_eval_compute(NULL, true, ap, &map), FRCNN_ERR_INVALID_ARG);
    frcnn_voc_eval_free(e);
    frcnn_ctx_free(ctx);
}

/* ----- allocation failures ----------------------------------------------------------------------------------- */

/* create, set_truth, add (growing past the first capacity), compute and write, with each allocation made to fail
 * in turn: every failure is FRCNN_ERR_NO_MEMORY with a message, and freeing the evaluation returns everything. */
static void test_allocation_failures(void **state)
{
    (void)state;
    char dir[128];
    assert_int_equal(tu_make_tmpdir(dir, sizeof dir, "voc-eval"), 0);
    const char *ids[] = {"a", "b", "c"};
    const char *names[] = {"__background__", "x", "y"};
    frcnn_detection ds[100];
    for (int i = 0; i < 100; i++)
        ds[i] = det((float)i, 0, (float)i + 9, 9, 0.01f * (float)i, 1 + i % 2);
    const frcnn_object g[] = {obj(0, 0, 9, 9, 1, false), obj(5, 0, 14, 9, 2, false)};
    bool completed = false;
    for (long fail_at = 1; !completed; fail_at++) {
        tu_alloc_state ca;
        tu_alloc_init(&ca, 0);
        frcnn_ctx *ctx = tu_alloc_ctx(&ca, NULL);
        tu_alloc_mark base = tu_alloc_mark_now(&ca);
        tu_alloc_fail_next(&ca, (size_t)fail_at);
        frcnn_voc_eval *e = NULL;
        float ap[3], map;
        frcnn_status st = frcnn_voc_eval_create(ctx, 3, 3, &e);
        for (size_t i = 0; i < 3 && st == FRCNN_OK; i++)
            st = frcnn_voc_eval_set_truth(e, i, g, 2);
        for (size_t i = 0; i < 3 && st == FRCNN_OK; i++)
            st = frcnn_voc_eval_add(e, i, ds, 100);
        if (st == FRCNN_OK)
            st = frcnn_voc_eval_compute(e, false, ap, &map);
        if (st == FRCNN_OK)
            st = frcnn_voc_eval_write(e, dir, "test", ids, names);
        if (st != FRCNN_OK) {
            if (st != FRCNN_ERR_NO_MEMORY || !frcnn_ctx_last_error(ctx)[0])
                print_error("allocation %ld failed: status %d, message '%s'\n", fail_at, st,
                            frcnn_ctx_last_error(ctx));
            assert_int_equal(st, FRCNN_ERR_NO_MEMORY);
            assert_true(frcnn_ctx_last_error(ctx)[0] != '\0');
        } else {
            completed = true;
            assert_true(fail_at > 5); /* create, truth, growth, compute and write all allocate */
        }
        frcnn_voc_eval_free(e);
        tu_alloc_assert_since(&ca, base);
        frcnn_ctx_free(ctx);
        tu_alloc_assert_clean(&ca);
    }
    assert_int_equal(tu_remove_tree(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_perfect_detector),
        cmocka_unit_test(test_fp_above_tp),
        cmocka_unit_test(test_duplicate_is_fp),
        cmocka_unit_test(test_difficult_ignored),
        cmocka_unit_test(test_nan_classes),
        cmocka_unit_test(test_iou_threshold_strict),
        cmocka_unit_test(test_score_ties),
        cmocka_unit_test(test_dets_without_gt),
        cmocka_unit_test(test_multiclass_map),
        cmocka_unit_test(test_numpy_thresholds),
        cmocka_unit_test(test_random_vs_reference),
        cmocka_unit_test(test_write),
        cmocka_unit_test(test_write_errors),
        cmocka_unit_test(test_argument_errors),
        cmocka_unit_test(test_allocation_failures),
    };
    return cmocka_run_group_tests_name("voc_eval", tests, NULL, NULL);
}
