/* Boxes: IoU hand cases with the inclusive +1 convention, the IoU matrix against a naive double-precision one and
 * across thread counts, encode/decode (bbox_transform and its inverse) hand cases, round trip, normalisation and
 * clamp, clipping, and bad arguments. */
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
    check_iou_matrix(700, 37, 1); /* threads split the rows; 36 vector columns and a scalar one */
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

static void test_encode_decode_round_trip(void **state)
{
    (void)state;
    enum { N = 2000 };
    frcnn_ctx *ctx = tu_ctx();
    float *boxes = malloc(4 * N * sizeof(float)), *targets = malloc(4 * N * sizeof(float));
    float *deltas = malloc(4 * N * sizeof(float)), *out = malloc(4 * N * sizeof(float));
    float *want = malloc(4 * N * sizeof(float));
    frcnn_rng rng;
    frcnn_rng_seed(&rng, 77);
    for (size_t i = 0; i < N; i++) {
        float *b = boxes + 4 * i, *t = targets + 4 * i;
        b[0] = 1000.0f * frcnn_rng_uniform(&rng) - 100.0f;
        b[1] = 600.0f * frcnn_rng_uniform(&rng) - 100.0f;
        b[2] = b[0] + 20.0f + 480.0f * frcnn_rng_uniform(&rng); /* sizes within a factor 62.5 of the targets' */
        b[3] = b[1] + 20.0f + 480.0f * frcnn_rng_uniform(&rng); /* so that decode's clamp does not apply */
        t[0] = b[0] + 100.0f * (frcnn_rng_uniform(&rng) - 0.5f);
        t[1] = b[1] + 100.0f * (frcnn_rng_uniform(&rng) - 0.5f);
        t[2] = t[0] + 1.0f + 400.0f * frcnn_rng_uniform(&rng);
        t[3] = t[1] + 1.0f + 400.0f * frcnn_rng_uniform(&rng);
        for (int k = 0; k < 4; k++)
            want[4 * i + k] = t[k];
    }
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
    };
    return cmocka_run_group_tests_name("box", tests, NULL, NULL);
}
