/* Boxes: IoU hand cases with the inclusive +1 convention, the IoU matrix against a naive double-precision one and
 * across thread counts, encode/decode (bbox_transform and its inverse) hand cases, round trip, normalisation and
 * clamp, clipping, and bad arguments; the same for torchvision's continuous convention (box_iou, BoxCoder,
 * clip_boxes_to_image), unknown conventions and their names. */
#include "testutil.h"

#include "../lib/detect/box_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* IoU of one pair through the public matrix function, checked against the internal single-pair helper and the
 * swapped pair (bit for bit). */
static float iou_pair(frcnn_ctx *ctx, const float a[4], const float b[4])
{
    float ab, ba;
    assert_int_equal(frcnn_box_iou(ctx, a, 1, b, 1, &ab), FRCNN_OK);
    assert_int_equal(frcnn_box_iou(ctx, b, 1, a, 1, &ba), FRCNN_OK);
    float one = frcnn__box_iou1(a, b, 1.0f);
    assert_memory_equal(&ab, &ba, sizeof ab);
    assert_memory_equal(&ab, &one, sizeof ab);
    return ab;
}

static void expect_iou(frcnn_ctx *ctx, const char *what, const float a[4], const float b[4], float want)
{
    float got = iou_pair(ctx, a, b);
    tu_assert_close(what, &got, &want, 1, 1e-7, 1e-6);
}

static void test_iou_hand_cases(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    const float a[4] = {0, 0, 9, 9}; /* 10 x 10 pixels: area 100 */
    const float same[4] = {0, 0, 9, 9}, pixel[4] = {3, 3, 3, 3};
    const float touching[4] = {9, 0, 18, 9};   /* shares the column x = 9: 1 x 10 pixels */
    const float adjacent[4] = {10, 0, 19, 9};  /* starts right after: no shared pixel */
    const float corner[4] = {9, 9, 20, 20};    /* shares the single pixel (9, 9) */
    const float partial[4] = {5, 5, 14, 14};   /* 5 x 5 overlap of two 100-pixel boxes */
    const float outer[4] = {0, 0, 19, 19};     /* contains a: 100 / 400 */
    const float inner[4] = {2, 3, 5, 7};       /* inside a: 4 x 5 = 20 of 100 */
    const float far[4] = {100, 100, 120, 130};
    const float reversed[4] = {5, 5, 2, 2};    /* x2 < x1 - 1: degenerate */
    const float empty[4] = {5, 5, 4, 9};       /* x2 = x1 - 1: width 0 */
    const float nan_box[4] = {NAN, 0, 9, 9};
    expect_iou(ctx, "identical", a, same, 1.0f);
    expect_iou(ctx, "single pixel with itself", pixel, pixel, 1.0f);
    expect_iou(ctx, "single pixel inside a", pixel, a, 0.01f);
    expect_iou(ctx, "touching column (+1 convention)", a, touching, 10.0f / 190.0f);
    expect_iou(ctx, "adjacent", a, adjacent, 0.0f);
    expect_iou(ctx, "corner pixel", a, corner, 1.0f / (100.0f + 144.0f - 1.0f));
    expect_iou(ctx, "partial", a, partial, 25.0f / 175.0f);
    expect_iou(ctx, "containment", a, outer, 0.25f);
    expect_iou(ctx, "contained", inner, a, 0.2f);
    expect_iou(ctx, "disjoint", a, far, 0.0f);
    expect_iou(ctx, "degenerate vs a", reversed, a, 0.0f);
    expect_iou(ctx, "degenerate vs itself", reversed, reversed, 0.0f);
    expect_iou(ctx, "zero width vs itself", empty, empty, 0.0f);
    expect_iou(ctx, "zero width inside a", empty, a, 0.0f);
    expect_iou(ctx, "NaN coordinate", nan_box, a, 0.0f);
    /* Exact values the NMS tests rely on: 100 / 200 is exactly 0.5 in float. */
    const float wide[4] = {0, 0, 19, 9};
    float half = iou_pair(ctx, a, wide);
    assert_true(half == 0.5f);
    frcnn_ctx_free(ctx);
}

/* Naive IoU in double straight from the definition. */
static double iou_naive(const float *a, const float *b)
{
    double iw = fmin(a[2], b[2]) - fmax(a[0], b[0]) + 1.0, ih = fmin(a[3], b[3]) - fmax(a[1], b[1]) + 1.0;
    if (iw <= 0.0 || ih <= 0.0)
        return 0.0;
    double area_a = ((double)a[2] - a[0] + 1.0) * ((double)a[3] - a[1] + 1.0);
    double area_b = ((double)b[2] - b[0] + 1.0) * ((double)b[3] - b[1] + 1.0);
    return iw * ih / (area_a + area_b - iw * ih);
}

/* n boxes with corners in [0, 200) and sides 1..80, some of them exact copies of earlier ones and a few
 * degenerate. */
static void random_boxes(float *boxes, size_t n, uint64_t seed)
{
    frcnn_rng rng;
    frcnn_rng_seed(&rng, seed);
    for (size_t i = 0; i < n; i++) {
        float *b = boxes + 4 * i;
        if (i > 0 && frcnn_rng_below(&rng, 8) == 0) {
            memcpy(b, boxes + 4 * frcnn_rng_below(&rng, i), 4 * sizeof(float));
            continue;
        }
        b[0] = (float)frcnn_rng_below(&rng, 200) + (frcnn_rng_below(&rng, 2) ? 0.5f : 0.0f);
        b[1] = (float)frcnn_rng_below(&rng, 200);
        b[2] = b[0] + (float)frcnn_rng_below(&rng, 80);
        b[3] = b[1] + 80.0f * frcnn_rng_uniform(&rng);
        if (frcnn_rng_below(&rng, 50) == 0)
            b[2] = b[0] - 3.0f;
    }
}

/* An na x nb matrix: bit-identical with 1 and 2 threads and with the single-pair helper for every entry (the
 * vectorised columns and the scalar tail agree), and close to the naive double-precision IoU. */
static void check_iou_matrix(size_t na, size_t nb, uint64_t seed)
{
    float *a = malloc(4 * na * sizeof(float)), *b = malloc(4 * nb * sizeof(float));
    float *m1 = malloc(na * nb * sizeof(float)), *m2 = malloc(na * nb * sizeof(float));
    float *naive = malloc(na * nb * sizeof(float)), *pair = malloc(na * nb * sizeof(float));
    random_boxes(a, na, seed);
    random_boxes(b, nb, seed + 1);
    for (size_t i = 0; i < na; i++)
        for (size_t k = 0; k < nb; k++) {
            naive[i * nb + k] = (float)iou_naive(a + 4 * i, b + 4 * k);
            pair[i * nb + k] = frcnn__box_iou1(a + 4 * i, b + 4 * k, 1.0f);
        }
    frcnn_ctx *ctx = tu_ctx();
    assert_int_equal(frcnn_ctx_set_threads(ctx, 1), FRCNN_OK);
    assert_int_equal(frcnn_box_iou(ctx, a, na, b, nb, m1), FRCNN_OK);
    assert_int_equal(frcnn_ctx_set_threads(ctx, 2), FRCNN_OK);
    assert_int_equal(frcnn_box_iou(ctx, a, na, b, nb, m2), FRCNN_OK);
    tu_assert_identical("IoU matrix, 1 vs 2 threads", m1, m2, na * nb);
    tu_assert_identical("IoU matrix vs single pairs", m1, pair, na * nb);
    tu_assert_close("IoU matrix vs naive double", m1, naive, na * nb, 1e-6, 1e-5);
    size_t positive = 0;
    for (size_t i = 0; i < na * nb; i++)
        positive += m1[i] > 0.0f;
    if (na * nb >= 1000)
        assert_true(positive > na * nb / 20); /* the case really exercises overlaps */
    free(a);
    free(b);
    free(m1);
    free(m2);
    free(naive);
    free(pair);
    frcnn_ctx_free(ctx);
}

/* Awkward boxes (NaN, infinite, huge, degenerate, touching) in a matrix wide enough for the vector path: every
 * entry equals the single-pair helper bit for bit, in both orientations. */
static void check_iou_specials(void)
{
    enum { S = 12 };
    const float sp[S * 4] = {
        0, 0, 9, 9,         NAN, 0, 9, 9,        0, 0, INFINITY, 9,   -INFINITY, -INFINITY, INFINITY, INFINITY,
        -1e30f, 0, 1e30f, 9, 5, 5, 2, 2,          5, 5, 4, 9,          9, 0, 18, 9,
        -0.0f, 0, 9, 9,     0, 0, 9, NAN,        3, 3, 3, 3,          1e-30f, 1e-30f, 9, 9,
    };
    float m[S * S], mt[S * S];
    frcnn_ctx *ctx = tu_ctx();
    assert_int_equal(frcnn_box_iou(ctx, sp, S, sp, S, m), FRCNN_OK);
    for (size_t i = 0; i < S; i++)
        for (size_t k = 0; k < S; k++) {
            float one = frcnn__box_iou1(sp + 4 * i, sp + 4 * k, 1.0f);
            assert_memory_equal(&m[i * S + k], &one, sizeof one);
            assert_memory_equal(&m[i * S + k], &m[k * S + i], sizeof one);
            assert_false(isnan(one));
        }
    for (size_t i = 0; i < S; i++) /* one row at a time: the tile holds a single column box */
        for (size_t k = 0; k < S; k++)
            assert_int_equal(frcnn_box_iou(ctx, sp + 4 * k, 1, sp + 4 * i, 1, &mt[i * S + k]), FRCNN_OK);
    tu_assert_identical("IoU matrix, transposed single calls", m, mt, S * S);
    frcnn_ctx_free(ctx);
}

static void test_iou_matrix(void **state)
{
    (void)state;
    check_iou_specials();
    check_iou_matrix(8000, 37, 1); /* threads split the rows; 36 vector columns and a scalar one */
    check_iou_matrix(60, 600, 3); /* several column tiles */
    check_iou_matrix(5, 3, 5);    /* scalar only */
}

static void test_iou_bad_arguments(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    float a[4] = {0, 0, 1, 1}, out[4] = {-1, -1, -1, -1};
    assert_int_equal(frcnn_box_iou(NULL, a, 1, a, 1, out), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_box_iou(ctx, NULL, 1, a, 1, out), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_box_iou(ctx, a, 1, NULL, 1, out), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_box_iou(ctx, a, 1, a, 1, NULL), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_box_iou(ctx, a, SIZE_MAX / 2, a, 3, out), FRCNN_ERR_OVERFLOW);
    /* Empty sides: nothing to do, nothing written. */
    assert_int_equal(frcnn_box_iou(ctx, a, 0, a, 1, out), FRCNN_OK);
    assert_int_equal(frcnn_box_iou(ctx, NULL, 3, NULL, 0, NULL), FRCNN_OK);
    assert_true(out[0] == -1.0f);
    frcnn_ctx_free(ctx);
}

static void test_encode_hand_cases(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    /* Box (0, 0, 9, 9): w = h = 10, centre (5, 5). */
    const float boxes[4 * 4] = {0, 0, 9, 9, 0, 0, 9, 9, 0, 0, 9, 9, 10, 20, 13, 21};
    const float targets[4 * 4] = {
        0, 0, 9, 9,     /* itself: all zero */
        5, -2, 14, 7,   /* shifted by (+5, -2): dx = 0.5, dy = -0.2 */
        0, 0, 19, 4,    /* w 20, h 5: centre (10, 2.5): dx 0.5, dy -0.25, dw log 2, dh log 0.5 */
        10, 20, 13, 21, /* itself, w 4, h 2 */
    };
    const float want[4 * 4] = {0, 0, 0, 0, 0.5f, -0.2f, 0, 0, 0.5f, -0.25f, logf(2.0f), logf(0.5f), 0, 0, 0, 0};
    float deltas[16];
    assert_int_equal(frcnn_box_encode(ctx, boxes, targets, 4, NULL, NULL, deltas), FRCNN_OK);
    tu_assert_close("encode, no normalisation", deltas, want, 16, 1e-7, 1e-6);

    /* Normalised: (d - means) / stds, the RoI-head convention (0, 0, 0, 0) / (0.1, 0.1, 0.2, 0.2) and an arbitrary
     * one; NULL means/stds equal zeros/ones. */
    const float zeros[4] = {0, 0, 0, 0}, ones[4] = {1, 1, 1, 1}, stds[4] = {0.1f, 0.1f, 0.2f, 0.2f};
    const float means2[4] = {0.1f, -0.2f, 0.3f, 0.05f}, stds2[4] = {0.5f, 2.0f, 0.25f, 4.0f};
    float d01[16], dn[16], dn2[16], want_n[16], want_n2[16];
    assert_int_equal(frcnn_box_encode(ctx, boxes, targets, 4, zeros, ones, d01), FRCNN_OK);
    tu_assert_identical("means 0 / stds 1 equals NULL", d01, deltas, 16);
    assert_int_equal(frcnn_box_encode(ctx, boxes, targets, 4, zeros, stds, dn), FRCNN_OK);
    assert_int_equal(frcnn_box_encode(ctx, boxes, targets, 4, means2, stds2, dn2), FRCNN_OK);
    for (int i = 0; i < 16; i++) {
        want_n[i] = (deltas[i] - zeros[i % 4]) / stds[i % 4];
        want_n2[i] = (deltas[i] - means2[i % 4]) / stds2[i % 4];
    }
    tu_assert_identical("encode, stds (0.1, 0.1, 0.2, 0.2)", dn, want_n, 16);
    tu_assert_identical("encode, arbitrary means and stds", dn2, want_n2, 16);

    /* Decoding the normalised deltas with the same means/stds gives the targets back exactly (x2 = cx + w/2 - 1). */
    float out[16], want_out[16];
    frcnn_box_decode(boxes, dn2, 4, means2, stds2, out);
    for (int i = 0; i < 16; i++)
        want_out[i] = targets[i];
    tu_assert_close("decode of encode", out, want_out, 16, 1e-5, 1e-6);
    frcnn_ctx_free(ctx);
}

static void test_decode_hand_cases(void **state)
{
    (void)state;
    /* Box (0, 0, 15, 15): w = h = 16, centre (8, 8). */
    const float boxes[4 * 3] = {0, 0, 15, 15, 0, 0, 15, 15, 0, 0, 15, 15};
    const float deltas[4 * 3] = {
        0, 0, 0, 0,                /* the box itself: x2 = 8 + 8 - 1 = 15 */
        0.25f, -0.5f, logf(2.0f), 0, /* centre (12, 0), w 32, h 16 */
        0, 0, 1e6f, INFINITY,      /* clamped at log(1000 / 16): w = h = 1000 */
    };
    float out[12];
    frcnn_box_decode(boxes, deltas, 3, NULL, NULL, out);
    const float want[8] = {0, 0, 15, 15, -4, -8, 27, 7};
    tu_assert_close("decode", out, want, 8, 1e-5, 1e-6);
    for (int k = 0; k < 4; k++)
        assert_true(isfinite(out[8 + k]));
    const float clip = 4.135166556742356f; /* log(1000 / 16) */
    assert_true(clip == (float)log(1000.0 / 16.0));
    float w = expf(clip) * 16.0f;
    const float want_clamped[4] = {8 - 0.5f * w, 8 - 0.5f * w, 8 + 0.5f * w - 1.0f, 8 + 0.5f * w - 1.0f};
    tu_assert_identical("decode clamp", out + 8, want_clamped, 4);
    tu_assert_close("clamped width is 1000", &w, (const float[]){1000.0f}, 1, 1e-3, 1e-6);
    /* Negative log-sizes are not clamped (they cannot overflow). */
    const float shrink[4] = {0, 0, -10.0f, -10.0f};
    frcnn_box_decode(boxes, shrink, 1, NULL, NULL, out);
    assert_true(out[2] - out[0] + 1.0f < 0.01f && out[2] - out[0] + 1.0f > 0.0f); /* inclusive width */

    /* out may equal deltas (and boxes). */
    float inplace[12], alias_boxes[12];
    memcpy(inplace, deltas, sizeof inplace);
    frcnn_box_decode(boxes, inplace, 3, NULL, NULL, inplace);
    frcnn_box_decode(boxes, deltas, 3, NULL, NULL, out);
    tu_assert_identical("decode in place over deltas", inplace, out, 12);
    memcpy(alias_boxes, boxes, sizeof alias_boxes);
    frcnn_box_decode(alias_boxes, deltas, 3, NULL, NULL, alias_boxes);
    tu_assert_identical("decode in place over boxes", alias_boxes, out, 12);
}

/* n random boxes and regression targets near them, with sizes within a factor 62.5 of each other so that decode's
 * clamp does not apply. */
static void random_box_pairs(float *boxes, float *targets, size_t n, uint64_t seed)
{
    frcnn_rng rng;
    frcnn_rng_seed(&rng, seed);
    for (size_t i = 0; i < n; i++) {
        float *b = boxes + 4 * i, *t = targets + 4 * i;
        b[0] = 1000.0f * frcnn_rng_uniform(&rng) - 100.0f;
        b[1] = 600.0f * frcnn_rng_uniform(&rng) - 100.0f;
        b[2] = b[0] + 20.0f + 480.0f * frcnn_rng_uniform(&rng);
        b[3] = b[1] + 20.0f + 480.0f * frcnn_rng_uniform(&rng);
        t[0] = b[0] + 100.0f * (frcnn_rng_uniform(&rng) - 0.5f);
        t[1] = b[1] + 100.0f * (frcnn_rng_uniform(&rng) - 0.5f);
        t[2] = t[0] + 1.0f + 400.0f * frcnn_rng_uniform(&rng);
        t[3] = t[1] + 1.0f + 400.0f * frcnn_rng_uniform(&rng);
    }
}

static void test_encode_decode_round_trip(void **state)
{
    (void)state;
    enum { N = 2000 };
    frcnn_ctx *ctx = tu_ctx();
    float *boxes = malloc(4 * N * sizeof(float)), *targets = malloc(4 * N * sizeof(float));
    float *deltas = malloc(4 * N * sizeof(float)), *out = malloc(4 * N * sizeof(float));
    float *want = malloc(4 * N * sizeof(float));
    random_box_pairs(boxes, targets, N, 77);
    memcpy(want, targets, 4 * N * sizeof(float));
    const float *norms[][2] = {
        {NULL, NULL},
        {(const float[]){0, 0, 0, 0}, (const float[]){0.1f, 0.1f, 0.2f, 0.2f}},
        {(const float[]){0.05f, -0.1f, 0.2f, -0.3f}, (const float[]){0.3f, 0.7f, 1.5f, 0.25f}},
    };
    for (size_t c = 0; c < sizeof norms / sizeof norms[0]; c++) {
        assert_int_equal(frcnn_box_encode(ctx, boxes, targets, N, norms[c][0], norms[c][1], deltas), FRCNN_OK);
        frcnn_box_decode(boxes, deltas, N, norms[c][0], norms[c][1], out);
        /* Coordinates up to ~1300: the worst error seen is one float ulp there (1.2e-4). */
        tu_assert_close("decode(encode(t))", out, want, 4 * N, 1e-4, 1e-6);
    }
    free(boxes);
    free(targets);
    free(deltas);
    free(out);
    free(want);
    frcnn_ctx_free(ctx);
}

static void test_encode_bad_arguments(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    const float ok[8] = {0, 0, 9, 9, 1, 1, 5, 5};
    const float zero_w[8] = {0, 0, 9, 9, 5, 1, 4, 5};  /* row 1: x2 = x1 - 1, width 0 */
    const float neg_h[8] = {0, 0, 9, 9, 1, 5, 5, 2};   /* row 1: height -2 */
    const float nan_box[8] = {0, 0, 9, 9, 1, 1, NAN, 5};
    const float stds_zero[4] = {0.1f, 0.0f, 0.2f, 0.2f}, means_nan[4] = {0, NAN, 0, 0};
    float deltas[8] = {7, 7, 7, 7, 7, 7, 7, 7};
    assert_int_equal(frcnn_box_encode(NULL, ok, ok, 2, NULL, NULL, deltas), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_box_encode(ctx, zero_w, ok, 2, NULL, NULL, deltas), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_box_encode(ctx, ok, zero_w, 2, NULL, NULL, deltas), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_box_encode(ctx, ok, neg_h, 2, NULL, NULL, deltas), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_box_encode(ctx, nan_box, ok, 2, NULL, NULL, deltas), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_box_encode(ctx, ok, ok, 2, NULL, stds_zero, deltas), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_box_encode(ctx, ok, ok, 2, means_nan, NULL, deltas), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_box_encode(ctx, NULL, ok, 2, NULL, NULL, deltas), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_box_encode(ctx, ok, ok, 2, NULL, NULL, NULL), FRCNN_ERR_INVALID_ARG);
    /* A failed call writes nothing. */
    for (int i = 0; i < 8; i++)
        assert_true(deltas[i] == 7.0f);
    assert_int_equal(frcnn_box_encode(ctx, NULL, NULL, 0, NULL, NULL, NULL), FRCNN_OK);
    frcnn_ctx_free(ctx);
}

static void test_clip(void **state)
{
    (void)state;
    float boxes[4 * 4] = {
        -5, -3, 700, 500,  /* outside on every side */
        10, 20, 30, 40,    /* inside: unchanged */
        639, 479, 640, 480, /* the last pixel stays, one beyond is pulled back */
        NAN, 5, 5, 5,      /* NaN stays NaN (as numpy's minimum/maximum) */
    };
    frcnn_box_clip(boxes, 4, 480.0f, 640.0f);
    const float want[12] = {0, 0, 639, 479, 10, 20, 30, 40, 639, 479, 639, 479};
    tu_assert_identical("clip", boxes, want, 12);
    assert_true(isnan(boxes[12]));
    assert_true(boxes[13] == 5.0f && boxes[14] == 5.0f && boxes[15] == 5.0f);
    /* Fractional coordinates are kept, only the range is enforced. */
    float frac[4] = {0.25f, -0.75f, 638.5f, 479.5f};
    frcnn_box_clip(frac, 1, 480.0f, 640.0f);
    const float want_frac[4] = {0.25f, 0.0f, 638.5f, 479.0f};
    tu_assert_identical("clip fractional", frac, want_frac, 4);
    frcnn_box_clip(NULL, 0, 1.0f, 1.0f);
}

/* ----- the continuous convention (torchvision) ---------------------------------------------------------------- */

/* IoU of one pair through the public matrix function in a convention, checked against the swapped pair and the
 * internal single-pair helper (bit for bit). */
static float iou_pair_conv(frcnn_ctx *ctx, frcnn_box_convention conv, const float a[4], const float b[4])
{
    float ab, ba;
    assert_int_equal(frcnn_box_iou_conv(ctx, conv, a, 1, b, 1, &ab), FRCNN_OK);
    assert_int_equal(frcnn_box_iou_conv(ctx, conv, b, 1, a, 1, &ba), FRCNN_OK);
    float one = frcnn__box_iou1(a, b, conv == FRCNN_BOXES_CONTINUOUS ? 0.0f : 1.0f);
    assert_memory_equal(&ab, &ba, sizeof ab);
    assert_memory_equal(&ab, &one, sizeof ab);
    return ab;
}

static void expect_iou_conv(frcnn_ctx *ctx, frcnn_box_convention conv, const char *what, const float a[4],
                            const float b[4], float want)
{
    float got = iou_pair_conv(ctx, conv, a, b);
    tu_assert_close(what, &got, &want, 1, 1e-7, 1e-6);
}

/* torchvision.ops.box_iou: area (x2 - x1)(y2 - y1), no +1 anywhere. The same boxes in the inclusive convention
 * give other values, so a convention ignored shows. */
static void test_iou_continuous_hand_cases(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    const frcnn_box_convention C = FRCNN_BOXES_CONTINUOUS, I = FRCNN_BOXES_INCLUSIVE;
    const float a[4] = {0, 0, 10, 10};        /* 10 x 10: area 100 */
    const float partial[4] = {5, 5, 15, 15};  /* inter 5 x 5 = 25, union 175 */
    const float touching[4] = {10, 0, 20, 10}; /* shares only the line x = 10 */
    const float corner[4] = {10, 10, 20, 20};  /* shares only the point (10, 10) */
    const float inner[4] = {2, 3, 5, 7};       /* 3 x 4 = 12 of 100 */
    const float outer[4] = {0, 0, 20, 20};     /* 100 / 400 */
    const float thin[4] = {5, 5, 5, 9};        /* width 0: no area */
    const float reversed[4] = {5, 5, 2, 2};
    expect_iou_conv(ctx, C, "continuous partial", a, partial, 25.0f / 175.0f);
    expect_iou_conv(ctx, C, "continuous identical", a, a, 1.0f);
    expect_iou_conv(ctx, C, "continuous touching edge", a, touching, 0.0f);
    expect_iou_conv(ctx, C, "continuous touching corner", a, corner, 0.0f);
    expect_iou_conv(ctx, C, "continuous contained", inner, a, 0.12f);
    expect_iou_conv(ctx, C, "continuous containment", a, outer, 0.25f);
    expect_iou_conv(ctx, C, "continuous zero width vs itself", thin, thin, 0.0f);
    expect_iou_conv(ctx, C, "continuous zero width inside a", thin, a, 0.0f);
    expect_iou_conv(ctx, C, "continuous degenerate", reversed, a, 0.0f);
    /* 100 / 200 exactly, as the inclusive (0, 0, 9, 9) vs (0, 0, 19, 9) */
    const float wide[4] = {0, 0, 20, 10};
    assert_true(iou_pair_conv(ctx, C, a, wide) == 0.5f);

    /* The inclusive forms are unchanged: the plain function is the inclusive _conv one, with +1 widths. */
    expect_iou_conv(ctx, I, "inclusive partial", a, partial, 36.0f / 206.0f);
    expect_iou_conv(ctx, I, "inclusive touching column", a, touching, 11.0f / 231.0f);
    expect_iou_conv(ctx, I, "inclusive corner pixel", a, corner, 1.0f / 241.0f);
    float plain, conv;
    assert_int_equal(frcnn_box_iou(ctx, a, 1, partial, 1, &plain), FRCNN_OK);
    assert_int_equal(frcnn_box_iou_conv(ctx, I, a, 1, partial, 1, &conv), FRCNN_OK);
    assert_memory_equal(&plain, &conv, sizeof plain);
    frcnn_ctx_free(ctx);
}

/* Naive continuous IoU in double. */
static double iou_naive_continuous(const float *a, const float *b)
{
    double iw = fmin(a[2], b[2]) - fmax(a[0], b[0]), ih = fmin(a[3], b[3]) - fmax(a[1], b[1]);
    if (iw <= 0.0 || ih <= 0.0)
        return 0.0;
    double area_a = ((double)a[2] - a[0]) * ((double)a[3] - a[1]);
    double area_b = ((double)b[2] - b[0]) * ((double)b[3] - b[1]);
    return iw * ih / (area_a + area_b - iw * ih);
}

/* A continuous matrix wide enough for the vector path and split over threads: equal to the single-pair helper bit
 * for bit, close to the naive double IoU, and not the inclusive matrix; the plain function equals the inclusive
 * _conv one bit for bit. */
static void test_iou_continuous_matrix(void **state)
{
    (void)state;
    enum { NA = 8000, NB = 37 }; /* over 262144 pairs: two threads really split the rows */
    float *a = malloc(4 * NA * sizeof(float)), *b = malloc(4 * NB * sizeof(float));
    float *m1 = malloc(NA * NB * sizeof(float)), *m2 = malloc(NA * NB * sizeof(float));
    float *naive = malloc(NA * NB * sizeof(float)), *pair = malloc(NA * NB * sizeof(float));
    float *incl = malloc(NA * NB * sizeof(float)), *plain = malloc(NA * NB * sizeof(float));
    random_boxes(a, NA, 21);
    random_boxes(b, NB, 22);
    for (size_t i = 0; i < NA; i++)
        for (size_t k = 0; k < NB; k++) {
            naive[i * NB + k] = (float)iou_naive_continuous(a + 4 * i, b + 4 * k);
            pair[i * NB + k] = frcnn__box_iou1(a + 4 * i, b + 4 * k, 0.0f);
        }
    frcnn_ctx *ctx = tu_ctx();
    assert_int_equal(frcnn_ctx_set_threads(ctx, 1), FRCNN_OK);
    assert_int_equal(frcnn_box_iou_conv(ctx, FRCNN_BOXES_CONTINUOUS, a, NA, b, NB, m1), FRCNN_OK);
    assert_int_equal(frcnn_ctx_set_threads(ctx, 2), FRCNN_OK);
    assert_int_equal(frcnn_box_iou_conv(ctx, FRCNN_BOXES_CONTINUOUS, a, NA, b, NB, m2), FRCNN_OK);
    tu_assert_identical("continuous IoU, 1 vs 2 threads", m1, m2, NA * NB);
    tu_assert_identical("continuous IoU vs single pairs", m1, pair, NA * NB);
    tu_assert_close("continuous IoU vs naive double", m1, naive, NA * NB, 1e-6, 1e-5);
    assert_int_equal(frcnn_box_iou_conv(ctx, FRCNN_BOXES_INCLUSIVE, a, NA, b, NB, incl), FRCNN_OK);
    assert_int_equal(frcnn_box_iou(ctx, a, NA, b, NB, plain), FRCNN_OK);
    tu_assert_identical("plain IoU is the inclusive one", plain, incl, NA * NB);
    size_t differ = 0;
    for (size_t i = 0; i < NA * NB; i++)
        differ += m1[i] != incl[i];
    assert_true(differ > NA * NB / 20);
    free(a);
    free(b);
    free(m1);
    free(m2);
    free(naive);
    free(pair);
    free(incl);
    free(plain);
    frcnn_ctx_free(ctx);
}

/* torchvision's BoxCoder with weights (10, 10, 5, 5) is encode with stds (0.1, 0.1, 0.2, 0.2): w = x2 - x1,
 * cx = x1 + 0.5 w. The expected deltas are BoxCoder((10., 10., 5., 5.)).encode_single(targets, boxes). */
static void test_encode_decode_continuous_hand_cases(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    const float boxes[8] = {15, 10, 95, 50, 2, -3, 9, 21};  /* w 80 h 40 centre (55, 30); w 7 h 24 (5.5, 9) */
    const float targets[8] = {10, 20, 50, 60, 0, 0, 15, 15}; /* w 40 h 40 centre (30, 40); w 15 h 15 (7.5, 7.5) */
    const float stds[4] = {0.1f, 0.1f, 0.2f, 0.2f};
    /* 10 (30 - 55) / 80, 10 (40 - 30) / 40, 5 log(40 / 80), 5 log(40 / 40); 10 (7.5 - 5.5) / 7, ... */
    const float want[8] = {-3.125f, 2.5f, -3.465735912322998f, 0.0f,
                           2.857142925262451f, -0.625f, 3.8107001781463623f, -2.350018262863159f};
    float deltas[8], out[8];
    assert_int_equal(frcnn_box_encode_conv(ctx, FRCNN_BOXES_CONTINUOUS, boxes, targets, 2, NULL, stds, deltas),
                     FRCNN_OK);
    tu_assert_close("continuous encode (torchvision BoxCoder)", deltas, want, 8, 1e-6, 1e-6);
    frcnn_box_decode_conv(FRCNN_BOXES_CONTINUOUS, boxes, deltas, 2, NULL, stds, out);
    tu_assert_close("continuous decode of encode", out, targets, 8, 1e-5, 1e-6);

    /* A zero delta decodes a box to itself: x2 = cx + w/2, no -1. */
    const float zero[4] = {0, 0, 0, 0}, box[4] = {0, 0, 16, 16};
    frcnn_box_decode_conv(FRCNN_BOXES_CONTINUOUS, box, zero, 1, NULL, NULL, out);
    tu_assert_identical("continuous decode of zero", out, box, 4);
    /* (0.25, -0.5, log 2, 0) at (0, 0, 16, 16): centre (12, 0), w 32, h 16 -> (-4, -8, 28, 8). */
    const float d[4] = {0.25f, -0.5f, logf(2.0f), 0};
    const float want_d[4] = {-4, -8, 28, 8};
    frcnn_box_decode_conv(FRCNN_BOXES_CONTINUOUS, box, d, 1, NULL, NULL, out);
    tu_assert_close("continuous decode", out, want_d, 4, 1e-5, 1e-6);
    /* An unknown convention decodes as inclusive (documented). */
    float incl[4], unknown[4];
    frcnn_box_decode(box, d, 1, NULL, NULL, incl);
    frcnn_box_decode_conv((frcnn_box_convention)7, box, d, 1, NULL, NULL, unknown);
    tu_assert_identical("unknown convention decodes as inclusive", unknown, incl, 4);

    /* Width x2 - x1: a box with x2 == x1 has width 0 and is refused, as (5, 1, 4, 5) is when inclusive. */
    const float ok[4] = {0, 0, 9, 9}, flat[4] = {5, 1, 5, 5};
    tu_expect_error_msg(ctx, frcnn_box_encode_conv(ctx, FRCNN_BOXES_CONTINUOUS, flat, ok, 1, NULL, NULL, deltas),
                        FRCNN_ERR_INVALID_ARG, "width 0");
    assert_int_equal(frcnn_box_encode_conv(ctx, FRCNN_BOXES_INCLUSIVE, flat, ok, 1, NULL, NULL, deltas), FRCNN_OK);
    frcnn_ctx_free(ctx);
}

static void test_encode_decode_continuous_round_trip(void **state)
{
    (void)state;
    enum { N = 2000 };
    frcnn_ctx *ctx = tu_ctx();
    float *boxes = malloc(4 * N * sizeof(float)), *targets = malloc(4 * N * sizeof(float));
    float *deltas = malloc(4 * N * sizeof(float)), *incl = malloc(4 * N * sizeof(float));
    float *out = malloc(4 * N * sizeof(float));
    random_box_pairs(boxes, targets, N, 78);
    const float means[4] = {0.05f, -0.1f, 0.2f, -0.3f}, stds[4] = {0.1f, 0.1f, 0.2f, 0.2f};
    assert_int_equal(frcnn_box_encode_conv(ctx, FRCNN_BOXES_CONTINUOUS, boxes, targets, N, means, stds, deltas),
                     FRCNN_OK);
    frcnn_box_decode_conv(FRCNN_BOXES_CONTINUOUS, boxes, deltas, N, means, stds, out);
    tu_assert_close("continuous decode(encode(t))", out, targets, 4 * N, 1e-4, 1e-6);
    /* The deltas are not the inclusive ones (every width differs by 1). */
    assert_int_equal(frcnn_box_encode(ctx, boxes, targets, N, means, stds, incl), FRCNN_OK);
    for (size_t i = 0; i < N; i++)
        assert_true(deltas[4 * i + 2] != incl[4 * i + 2]);
    free(boxes);
    free(targets);
    free(deltas);
    free(incl);
    free(out);
    frcnn_ctx_free(ctx);
}

/* torchvision's clip_boxes_to_image: [0, W] x [0, H]. */
static void test_clip_continuous(void **state)
{
    (void)state;
    float boxes[4 * 4] = {
        -5, -3, 700, 500,   /* outside on every side */
        10, 20, 30, 40,     /* inside: unchanged */
        639, 479, 640, 480, /* the far edge itself stays */
        641, 481, 650, 490, /* beyond: pulled back to the edge */
    };
    frcnn_box_clip_conv(FRCNN_BOXES_CONTINUOUS, boxes, 4, 480.0f, 640.0f);
    const float want[16] = {0, 0, 640, 480, 10, 20, 30, 40, 639, 479, 640, 480, 640, 480, 640, 480};
    tu_assert_identical("continuous clip", boxes, want, 16);
    /* The inclusive _conv form is the plain one. */
    float a[4] = {-1, 2, 640, 480}, b[4] = {-1, 2, 640, 480};
    frcnn_box_clip_conv(FRCNN_BOXES_INCLUSIVE, a, 1, 480.0f, 640.0f);
    frcnn_box_clip(b, 1, 480.0f, 640.0f);
    const float want_incl[4] = {0, 2, 639, 479};
    tu_assert_identical("inclusive clip", a, want_incl, 4);
    tu_assert_identical("plain clip", b, want_incl, 4);
}

static void test_unknown_convention(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    const frcnn_box_convention bad = (frcnn_box_convention)7;
    const float a[4] = {0, 0, 9, 9}, b[4] = {1, 1, 5, 5};
    float out[4] = {-1, -1, -1, -1};
    tu_expect_error_msg(ctx, frcnn_box_iou_conv(ctx, bad, a, 1, b, 1, out), FRCNN_ERR_INVALID_ARG,
                        "box convention 7");
    tu_expect_error_msg(ctx, frcnn_box_encode_conv(ctx, bad, a, b, 1, NULL, NULL, out), FRCNN_ERR_INVALID_ARG,
                        "box convention 7");
    tu_expect_error_msg(ctx, frcnn_box_iou_conv(ctx, (frcnn_box_convention)-1, a, 1, b, 1, out),
                        FRCNN_ERR_INVALID_ARG, "box convention -1");
    for (int i = 0; i < 4; i++)
        assert_true(out[i] == -1.0f);
    assert_int_equal(frcnn_box_iou_conv(NULL, FRCNN_BOXES_CONTINUOUS, a, 1, b, 1, out), FRCNN_ERR_INVALID_ARG);

    assert_string_equal(frcnn_box_convention_name(FRCNN_BOXES_INCLUSIVE), "inclusive");
    assert_string_equal(frcnn_box_convention_name(FRCNN_BOXES_CONTINUOUS), "continuous");
    assert_null(frcnn_box_convention_name(bad));
    assert_null(frcnn_box_convention_name((frcnn_box_convention)2));
    assert_null(frcnn_box_convention_name((frcnn_box_convention)-1));
    frcnn_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_iou_hand_cases),
        cmocka_unit_test(test_iou_matrix),
        cmocka_unit_test(test_iou_bad_arguments),
        cmocka_unit_test(test_encode_hand_cases),
        cmocka_unit_test(test_decode_hand_cases),
        cmocka_unit_test(test_encode_decode_round_trip),
        cmocka_unit_test(test_encode_bad_arguments),
        cmocka_unit_test(test_clip),
        cmocka_unit_test(test_iou_continuous_hand_cases),
        cmocka_unit_test(test_iou_continuous_matrix),
        cmocka_unit_test(test_encode_decode_continuous_hand_cases),
        cmocka_unit_test(test_encode_decode_continuous_round_trip),
        cmocka_unit_test(test_clip_continuous),
        cmocka_unit_test(test_unknown_convention),
    };
    return cmocka_run_group_tests_name("box", tests, NULL, NULL);
}
