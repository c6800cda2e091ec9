/* NMS: hand cases (threshold strictness, ties, max_keep), the fast implementation against a brute-force O(n^2)
 * greedy reference on many random sets (duplicate scores, identical boxes, dense clusters, long kept lists), in
 * both box conventions, the stable descending argsort, and errors: NaN scores, n = 0, scratch too small with the
 * arena left at its mark, an unknown convention. */
#include "testutil.h"

#include "../lib/detect/box_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ----- the brute-force reference ---------------------------------------------------------------------------- */

/* The py-faster-rcnn IoU (nms/py_cpu_nms.py) in float, written out independently of the library; off 1. With
 * off 0 it is torchvision's box_iou (widths x2 - x1). */
static float ref_iou(const float *a, const float *b, float off)
{
    float xx1 = a[0] > b[0] ? a[0] : b[0], yy1 = a[1] > b[1] ? a[1] : b[1];
    float xx2 = a[2] < b[2] ? a[2] : b[2], yy2 = a[3] < b[3] ? a[3] : b[3];
    float iw = xx2 - xx1 + off, ih = yy2 - yy1 + off;
    if (!(iw > 0.0f) || !(ih > 0.0f))
        return 0.0f;
    float area_a = (a[2] - a[0] + off) * (a[3] - a[1] + off);
    float area_b = (b[2] - b[0] + off) * (b[3] - b[1] + off);
    float inter = iw * ih, uni = (area_a + area_b) - inter;
    return uni > 0.0f ? inter / uni : 0.0f;
}

/* Selection of the best remaining box by a linear scan (highest score, lowest index on ties), so the reference
 * shares no sorting code with the library; every kept box then suppresses all remaining boxes it overlaps. */
static size_t ref_nms_off(const float *boxes, const float *scores, size_t n, float thr, size_t max_keep,
                          uint32_t *keep, float off)
{
    unsigned char *gone = calloc(n ? n : 1, 1);
    size_t count = 0;
    for (;;) {
        if (max_keep && count == max_keep)
            break;
        size_t best = n;
        for (size_t i = 0; i < n; i++)
            if (!gone[i] && (best == n || scores[i] > scores[best]))
                best = i;
        if (best == n)
            break;
        keep[count++] = (uint32_t)best;
        gone[best] = 1;
        for (size_t i = 0; i < n; i++)
            if (!gone[i] && ref_iou(boxes + 4 * best, boxes + 4 * i, off) > thr)
                gone[i] = 1;
    }
    free(gone);
    return count;
}

static size_t ref_nms(const float *boxes, const float *scores, size_t n, float thr, size_t max_keep, uint32_t *keep)
{
    return ref_nms_off(boxes, scores, n, thr, max_keep, keep, 1.0f);
}

/* ----- fixtures ---------------------------------------------------------------------------------------------- */

typedef struct nms_env {
    frcnn_ctx *ctx;
    frcnn_arena *arena;
} nms_env;

static nms_env env_create(size_t capacity)
{
    nms_env e;
    e.ctx = tu_ctx();
    assert_int_equal(frcnn_arena_create(e.ctx, capacity, &e.arena), FRCNN_OK);
    return e;
}

static void env_free(nms_env *e)
{
    frcnn_arena_free(e->arena);
    frcnn_ctx_free(e->ctx);
}

/* Runs frcnn_nms_conv and checks the arena is back at its mark. */
static size_t run_nms_conv(nms_env *e, frcnn_box_convention conv, const float *boxes, const float *scores, size_t n,
                           float thr, size_t max_keep, uint32_t *keep)
{
    size_t mark = frcnn_arena_mark(e->arena), n_keep = 12345;
    frcnn_status st = frcnn_nms_conv(e->ctx, e->arena, conv, boxes, scores, n, thr, max_keep, keep, &n_keep);
    if (st != FRCNN_OK)
        print_error("nms: %s\n", frcnn_ctx_last_error(e->ctx));
    assert_int_equal(st, FRCNN_OK);
    assert_int_equal(frcnn_arena_mark(e->arena), mark);
    return n_keep;
}

/* Runs frcnn_nms (the inclusive convention) and checks the arena is back at its mark. */
static size_t run_nms(nms_env *e, const float *boxes, const float *scores, size_t n, float thr, size_t max_keep,
                      uint32_t *keep)
{
    size_t mark = frcnn_arena_mark(e->arena), n_keep = 12345;
    frcnn_status st = frcnn_nms(e->ctx, e->arena, boxes, scores, n, thr, max_keep, keep, &n_keep);
    if (st != FRCNN_OK)
        print_error("nms: %s\n", frcnn_ctx_last_error(e->ctx));
    assert_int_equal(st, FRCNN_OK);
    assert_int_equal(frcnn_arena_mark(e->arena), mark);
    return n_keep;
}

static void expect_keep(const char *what, const uint32_t *got, size_t n_got, const uint32_t *want, size_t n_want)
{
    if (n_got != n_want || (n_got && memcmp(got, want, n_got * sizeof *got) != 0)) {
        size_t i = 0;
        while (i < n_got && i < n_want && got[i] == want[i])
            i++;
        print_error("%s: kept %zu boxes, reference %zu; first difference at position %zu (%ld vs %ld)\n", what,
                    n_got, n_want, i, i < n_got ? (long)got[i] : -1L, i < n_want ? (long)want[i] : -1L);
        fail();
    }
}

/* The internal ordered NMS at every vector width (scalar, SSE2, AVX when the CPU has it) against the reference. */
static void check_widths_off(const char *what, const float *boxes, const float *scores, size_t n, float thr,
                             size_t max_keep, const uint32_t *want, size_t n_want, float off)
{
    uint32_t *order = malloc((n + 1) * sizeof *order), *tmp = malloc((n + 1) * sizeof *tmp);
    uint32_t *keep = malloc((n + 1) * sizeof *keep);
    size_t cap = max_keep && max_keep < n ? max_keep : n;
    float *kept = aligned_alloc(64, frcnn__nms_kept_floats(cap) * sizeof(float) + 64);
    frcnn__argsort_desc(scores, n, order, tmp);
    const int widths[] = {1, 8, 16};
    for (size_t w = 0; w < 3; w++) {
        size_t n_keep = 12345;
        frcnn__nms_ordered_width(boxes, order, n, thr, off, max_keep, kept, keep, &n_keep, widths[w]);
        char msg[160];
        snprintf(msg, sizeof msg, "%s, vector width %d", what, widths[w]);
        expect_keep(msg, keep, n_keep, want, n_want);
    }
    free(order);
    free(tmp);
    free(keep);
    free(kept);
}

static void check_widths(const char *what, const float *boxes, const float *scores, size_t n, float thr,
                         size_t max_keep, const uint32_t *want, size_t n_want)
{
    check_widths_off(what, boxes, scores, n, thr, max_keep, want, n_want, 1.0f);
}

/* ----- hand cases -------------------------------------------------------------------------------------------- */

static void test_hand_cases(void **state)
{
    (void)state;
    nms_env e = env_create(1 << 16);
    /* A and B overlap with IoU 81 / 119 = 0.68; C is far away; D lies exactly on A with a lower score. */
    const float boxes[4 * 4] = {0, 0, 9, 9, 1, 1, 10, 10, 20, 20, 29, 29, 0, 0, 9, 9};
    const float scores[4] = {0.9f, 0.8f, 0.95f, 0.1f};
    uint32_t keep[4];
    size_t n = run_nms(&e, boxes, scores, 4, 0.5f, 0, keep);
    const uint32_t want05[] = {2, 0};
    expect_keep("threshold 0.5", keep, n, want05, 2);
    n = run_nms(&e, boxes, scores, 4, 0.7f, 0, keep);
    const uint32_t want07[] = {2, 0, 1};
    expect_keep("threshold 0.7", keep, n, want07, 3);
    n = run_nms(&e, boxes, scores, 4, 1.0f, 0, keep);
    const uint32_t want10[] = {2, 0, 1, 3};
    expect_keep("threshold 1: identical boxes (IoU exactly 1) are not > 1", keep, n, want10, 4);
    n = run_nms(&e, boxes, scores, 4, 0.7f, 2, keep);
    expect_keep("max_keep 2", keep, n, want07, 2);
    n = run_nms(&e, boxes, scores, 4, 0.7f, 10, keep);
    expect_keep("max_keep above n", keep, n, want07, 3);
    /* A negative threshold suppresses everything after the first (IoU 0 > -0.1). */
    n = run_nms(&e, boxes, scores, 4, -0.1f, 0, keep);
    const uint32_t want_neg[] = {2};
    expect_keep("negative threshold", keep, n, want_neg, 1);

    /* Strictness: IoU exactly 0.5 (100 / 200) is kept at 0.5 and suppressed below. */
    const float half[8] = {0, 0, 19, 9, 0, 0, 9, 9};
    const float hs[2] = {2.0f, 1.0f};
    n = run_nms(&e, half, hs, 2, 0.5f, 0, keep);
    const uint32_t both[] = {0, 1}, first[] = {0};
    expect_keep("IoU == threshold is kept", keep, n, both, 2);
    n = run_nms(&e, half, hs, 2, 0.4999f, 0, keep);
    expect_keep("IoU just above threshold is dropped", keep, n, first, 1);

    /* Ties: equal scores go by ascending index, so the lower index survives among identical boxes; -0 == +0;
     * infinite scores sort like any other. */
    const float same[4 * 4] = {0, 0, 9, 9, 0, 0, 9, 9, 0, 0, 9, 9, 50, 50, 60, 60};
    const float tie[4] = {0.0f, -0.0f, 0.0f, -INFINITY};
    n = run_nms(&e, same, tie, 4, 0.5f, 0, keep);
    const uint32_t want_tie[] = {0, 3};
    expect_keep("ties by index, -0 == +0", keep, n, want_tie, 2);
    const float inf_first[4] = {1.0f, INFINITY, 1.0f, 2.0f};
    n = run_nms(&e, same, inf_first, 4, 0.5f, 0, keep);
    const uint32_t want_inf[] = {1, 3};
    expect_keep("infinite score first", keep, n, want_inf, 2);

    /* Degenerate boxes overlap nothing, not even themselves, so they are never suppressed. */
    const float degen[8] = {5, 5, 2, 2, 5, 5, 2, 2};
    n = run_nms(&e, degen, hs, 2, 0.0f, 0, keep);
    expect_keep("degenerate boxes", keep, n, both, 2);
    env_free(&e);
}

/* IoU exactly at the threshold at every position of long kept lists, so each vector width's comparison is
 * checked for strictness: K disjoint 10 x 10 boxes (scores high) then, for each, a 20 x 10 box starting at the same
 * corner (IoU 100 / 200 = 0.5 with it, 0 with all others). */
static void test_threshold_in_long_lists(void **state)
{
    (void)state;
    enum { K = 53 };
    float boxes[2 * K * 4], scores[2 * K];
    for (size_t j = 0; j < K; j++) {
        float x = 40.0f * (float)j, y = 7.0f * (float)(j % 5);
        const float small[4] = {x, y, x + 9, y + 9}, wide[4] = {x, y, x + 19, y + 9};
        memcpy(boxes + 4 * j, small, sizeof small);
        memcpy(boxes + 4 * (K + j), wide, sizeof wide);
        scores[j] = 2.0f;
        scores[K + j] = 1.0f - 0.001f * (float)j;
    }
    uint32_t all[2 * K], smalls[K];
    for (uint32_t i = 0; i < 2 * K; i++)
        all[i] = i;
    for (uint32_t i = 0; i < K; i++)
        smalls[i] = i;
    nms_env e = env_create(frcnn_nms_scratch_bytes(2 * K));
    uint32_t keep[2 * K];
    size_t n = run_nms(&e, boxes, scores, 2 * K, 0.5f, 0, keep);
    expect_keep("IoU == 0.5 at threshold 0.5", keep, n, all, 2 * K);
    check_widths("IoU == 0.5 at threshold 0.5", boxes, scores, 2 * K, 0.5f, 0, all, 2 * K);
    n = run_nms(&e, boxes, scores, 2 * K, 0.4999f, 0, keep);
    expect_keep("IoU == 0.5 at threshold 0.4999", keep, n, smalls, K);
    check_widths("IoU == 0.5 at threshold 0.4999", boxes, scores, 2 * K, 0.4999f, 0, smalls, K);
    env_free(&e);
}

/* ----- against the reference --------------------------------------------------------------------------------- */

/* n boxes of one of several kinds: spread over a large image, clustered around a few centres (heavy
 * suppression), or on a tiny grid (many identical boxes); scores continuous or on a few levels (many ties). */
static void make_case(frcnn_rng *rng, size_t n, int kind, int score_levels, float *boxes, float *scores)
{
    float cx0[4], cy0[4];
    for (int c = 0; c < 4; c++) {
        cx0[c] = 100.0f + 400.0f * frcnn_rng_uniform(rng);
        cy0[c] = 100.0f + 300.0f * frcnn_rng_uniform(rng);
    }
    for (size_t i = 0; i < n; i++) {
        float *b = boxes + 4 * i, cx, cy, w, h;
        if (kind == 0) {
            cx = 1000.0f * frcnn_rng_uniform(rng);
            cy = 600.0f * frcnn_rng_uniform(rng);
            w = 16.0f + 384.0f * frcnn_rng_uniform(rng);
            h = 16.0f + 384.0f * frcnn_rng_uniform(rng);
        } else if (kind == 1) {
            int c = (int)frcnn_rng_below(rng, 4);
            cx = cx0[c] + 30.0f * (frcnn_rng_uniform(rng) - 0.5f);
            cy = cy0[c] + 30.0f * (frcnn_rng_uniform(rng) - 0.5f);
            w = 60.0f + 40.0f * frcnn_rng_uniform(rng);
            h = 60.0f + 40.0f * frcnn_rng_uniform(rng);
        } else {
            cx = 10.0f * (float)frcnn_rng_below(rng, 4);
            cy = 10.0f * (float)frcnn_rng_below(rng, 3);
            w = 8.0f * (float)(1 + frcnn_rng_below(rng, 3));
            h = 8.0f * (float)(1 + frcnn_rng_below(rng, 3));
        }
        b[0] = cx - 0.5f * w;
        b[1] = cy - 0.5f * h;
        b[2] = cx + 0.5f * w;
        b[3] = cy + 0.5f * h;
        if (i > 0 && frcnn_rng_below(rng, 10) == 0) /* an exact copy of an earlier box */
            memcpy(b, boxes + 4 * frcnn_rng_below(rng, i), 4 * sizeof(float));
        scores[i] = score_levels ? (float)frcnn_rng_below(rng, (uint64_t)score_levels) : frcnn_rng_uniform(rng);
    }
}

static void test_matches_brute_force(void **state)
{
    (void)state;
    const size_t sizes[] = {1, 2, 3, 7, 15, 16, 17, 31, 33, 64, 100, 257, 600};
    const float thresholds[] = {0.3f, 0.5f, 0.7f};
    const size_t max_keeps[] = {0, 1, 5, 16, 40};
    nms_env e = env_create(frcnn_nms_scratch_bytes(600) + 4096);
    float *boxes = malloc(4 * 600 * sizeof(float)), *scores = malloc(600 * sizeof(float));
    uint32_t *keep = malloc(600 * sizeof(uint32_t)), *want = malloc(600 * sizeof(uint32_t));
    frcnn_rng rng;
    frcnn_rng_seed(&rng, 12);
    size_t cases = 0, total_kept = 0, total_dropped = 0;
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        for (int kind = 0; kind < 3; kind++) {
            for (int levels = 0; levels <= 5; levels += 5) {
                size_t n = sizes[s];
                make_case(&rng, n, kind, levels, boxes, scores);
                for (size_t t = 0; t < 3; t++) {
                    for (size_t m = 0; m < sizeof max_keeps / sizeof max_keeps[0]; m++) {
                        size_t n_want = ref_nms(boxes, scores, n, thresholds[t], max_keeps[m], want);
                        size_t n_got = run_nms(&e, boxes, scores, n, thresholds[t], max_keeps[m], keep);
                        char what[128];
                        snprintf(what, sizeof what, "n %zu, kind %d, %d score levels, IoU %.1f, max_keep %zu", n,
                                 kind, levels, (double)thresholds[t], max_keeps[m]);
                        expect_keep(what, keep, n_got, want, n_want);
                        check_widths(what, boxes, scores, n, thresholds[t], max_keeps[m], want, n_want);
                        cases++;
                        if (max_keeps[m] == 0) {
                            total_kept += n_got;
                            total_dropped += n - n_got;
                        }
                    }
                }
            }
        }
    }
    /* The sets really exercise both outcomes. */
    assert_true(cases > 500);
    assert_true(total_kept > 1000 && total_dropped > 1000);
    free(boxes);
    free(scores);
    free(keep);
    free(want);
    env_free(&e);
}

/* Long kept lists (hundreds of boxes, so the 16- and 8-wide scans and their tails all run) on proposal-like
 * boxes, with suppressions landing at every position within a block. */
static void test_matches_brute_force_large(void **state)
{
    (void)state;
    enum { N = 3000 };
    nms_env e = env_create(frcnn_nms_scratch_bytes(N));
    float *boxes = malloc(4 * N * sizeof(float)), *scores = malloc(N * sizeof(float));
    uint32_t *keep = malloc(N * sizeof(uint32_t)), *want = malloc(N * sizeof(uint32_t));
    frcnn_rng rng;
    frcnn_rng_seed(&rng, 99);
    const float thresholds[] = {0.3f, 0.5f, 0.7f};
    for (int kind = 0; kind < 2; kind++) {
        make_case(&rng, N, kind, kind ? 0 : 50, boxes, scores);
        for (size_t t = 0; t < 3; t++) {
            size_t max_keeps[] = {0, 300};
            for (size_t m = 0; m < 2; m++) {
                size_t n_want = ref_nms(boxes, scores, N, thresholds[t], max_keeps[m], want);
                size_t n_got = run_nms(&e, boxes, scores, N, thresholds[t], max_keeps[m], keep);
                expect_keep("3000 boxes", keep, n_got, want, n_want);
                check_widths("3000 boxes", boxes, scores, N, thresholds[t], max_keeps[m], want, n_want);
            }
        }
    }
    free(boxes);
    free(scores);
    free(keep);
    free(want);
    env_free(&e);
}

/* ----- the argsort helper ------------------------------------------------------------------------------------ */

static const float *cmp_scores;

static int cmp_desc_then_index(const void *pa, const void *pb)
{
    uint32_t a = *(const uint32_t *)pa, b = *(const uint32_t *)pb;
    float sa = cmp_scores[a], sb = cmp_scores[b];
    if (sa != sb)
        return sa > sb ? -1 : 1;
    return (a > b) - (a < b);
}

static void test_argsort(void **state)
{
    (void)state;
    enum { N = 5000 };
    float *scores = malloc(N * sizeof(float));
    uint32_t *order = malloc(N * sizeof(uint32_t)), *tmp = malloc(N * sizeof(uint32_t));
    uint32_t *want = malloc(N * sizeof(uint32_t));
    frcnn_rng rng;
    frcnn_rng_seed(&rng, 5);
    const size_t sizes[] = {0, 1, 2, 10, 63, 64, 65, 1000, N};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        for (int kind = 0; kind < 4; kind++) {
            size_t n = sizes[s];
            for (size_t i = 0; i < n; i++) {
                switch (kind) {
                case 0: scores[i] = frcnn_rng_uniform(&rng); break;                       /* [0, 1) */
                case 1: scores[i] = (float)frcnn_rng_below(&rng, 7) - 3.0f; break;        /* many ties */
                case 2: scores[i] = frcnn_rng_normal(&rng, 0.0f, 1e3f); break;            /* both signs */
                default: {
                    static const float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, 1e-45f, -1e-45f, 1.0f, -1.0f,
                                                    3.4e38f, -3.4e38f};
                    scores[i] = special[frcnn_rng_below(&rng, 10)];
                }
                }
            }
            for (size_t i = 0; i < n; i++)
                want[i] = (uint32_t)i;
            cmp_scores = scores;
            qsort(want, n, sizeof *want, cmp_desc_then_index);
            frcnn__argsort_desc(scores, n, order, tmp);
            char what[64];
            snprintf(what, sizeof what, "argsort n %zu kind %d", n, kind);
            expect_keep(what, order, n, want, n);
        }
    }
    free(scores);
    free(order);
    free(tmp);
    free(want);
}

/* ----- errors ------------------------------------------------------------------------------------------------ */

static void test_errors(void **state)
{
    (void)state;
    nms_env e = env_create(frcnn_nms_scratch_bytes(64) + 256);
    frcnn_ctx *ctx = e.ctx;
    float boxes[4 * 64], scores[64];
    uint32_t keep[64];
    size_t n_keep = 99;
    frcnn_rng rng;
    frcnn_rng_seed(&rng, 3);
    make_case(&rng, 64, 0, 0, boxes, scores);
    /* Something taken before the call: the mark is not 0. */
    void *before;
    assert_int_equal(frcnn_arena_alloc(e.arena, 200, &before), FRCNN_OK);
    size_t mark = frcnn_arena_mark(e.arena);

    assert_int_equal(frcnn_nms(NULL, e.arena, boxes, scores, 64, 0.5f, 0, keep, &n_keep), FRCNN_ERR_INVALID_ARG);
    scores[17] = NAN;
    tu_expect_error(ctx, frcnn_nms(ctx, e.arena, boxes, scores, 64, 0.5f, 0, keep, &n_keep), FRCNN_ERR_INVALID_ARG);
    assert_int_equal(n_keep, 0);
    assert_int_equal(frcnn_arena_mark(e.arena), mark);
    scores[17] = 0.5f;
    tu_expect_error(ctx, frcnn_nms(ctx, e.arena, boxes, scores, 64, NAN, 0, keep, &n_keep), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_nms(ctx, NULL, boxes, scores, 64, 0.5f, 0, keep, &n_keep), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_nms(ctx, e.arena, NULL, scores, 64, 0.5f, 0, keep, &n_keep), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_nms(ctx, e.arena, boxes, NULL, 64, 0.5f, 0, keep, &n_keep), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_nms(ctx, e.arena, boxes, scores, 64, 0.5f, 0, NULL, &n_keep), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_nms(ctx, e.arena, boxes, scores, 64, 0.5f, 0, keep, NULL), FRCNN_ERR_INVALID_ARG);

    /* n = 0: nothing kept, nothing taken, NULL arrays allowed. */
    n_keep = 99;
    assert_int_equal(frcnn_nms(ctx, e.arena, NULL, NULL, 0, 0.5f, 0, NULL, &n_keep), FRCNN_OK);
    assert_int_equal(n_keep, 0);
    assert_int_equal(frcnn_nms_scratch_bytes(0), 0);
    assert_int_equal(frcnn_arena_mark(e.arena), mark);

    /* The arena holds the scratch for 64 boxes but not after the 200 bytes taken above plus a little more. */
    void *more;
    assert_int_equal(frcnn_arena_alloc(e.arena, 256, &more), FRCNN_OK);
    size_t mark2 = frcnn_arena_mark(e.arena);
    tu_expect_error(ctx, frcnn_nms(ctx, e.arena, boxes, scores, 64, 0.5f, 0, keep, &n_keep), FRCNN_ERR_NO_MEMORY);
    assert_int_equal(n_keep, 0);
    assert_int_equal(frcnn_arena_mark(e.arena), mark2);
    /* Released: now it fits again and runs. */
    frcnn_arena_reset(e.arena, mark);
    assert_int_equal(frcnn_nms(ctx, e.arena, boxes, scores, 64, 0.5f, 0, keep, &n_keep), FRCNN_OK);
    assert_true(n_keep > 0);
    assert_int_equal(frcnn_arena_mark(e.arena), mark);
    assert_true(frcnn_nms_scratch_bytes(SIZE_MAX / 2) == SIZE_MAX);
    env_free(&e);
}

/* ----- the continuous convention (torchvision.ops.nms) ---------------------------------------------------------- */

static void test_continuous_hand_cases(void **state)
{
    (void)state;
    nms_env e = env_create(1 << 16);
    const frcnn_box_convention C = FRCNN_BOXES_CONTINUOUS;
    /* (0, 0, 10, 10) in (0, 0, 20, 10): IoU 100 / 200 = 0.5 exactly (inclusive: 121 / 231 = 0.52). */
    const float half[8] = {0, 0, 20, 10, 0, 0, 10, 10};
    const float hs[2] = {2.0f, 1.0f};
    uint32_t keep[4];
    const uint32_t both[] = {0, 1}, first[] = {0};
    size_t n = run_nms_conv(&e, C, half, hs, 2, 0.5f, 0, keep);
    expect_keep("continuous: IoU == threshold is kept", keep, n, both, 2);
    n = run_nms_conv(&e, C, half, hs, 2, 0.4999f, 0, keep);
    expect_keep("continuous: IoU just above threshold is dropped", keep, n, first, 1);
    n = run_nms_conv(&e, FRCNN_BOXES_INCLUSIVE, half, hs, 2, 0.5f, 0, keep);
    expect_keep("inclusive: the same boxes overlap more", keep, n, first, 1);
    /* Boxes sharing an edge do not overlap (inclusive: a column of pixels). */
    const float edge[8] = {0, 0, 10, 10, 10, 0, 20, 10};
    n = run_nms_conv(&e, C, edge, hs, 2, 0.0f, 0, keep);
    expect_keep("continuous: shared edge", keep, n, both, 2);
    n = run_nms_conv(&e, FRCNN_BOXES_INCLUSIVE, edge, hs, 2, 0.0f, 0, keep);
    expect_keep("inclusive: shared column", keep, n, first, 1);
    /* Zero-width boxes (x2 == x1) overlap nothing, not even themselves. */
    const float flat[8] = {5, 5, 5, 9, 5, 5, 5, 9};
    n = run_nms_conv(&e, C, flat, hs, 2, 0.0f, 0, keep);
    expect_keep("continuous: zero width", keep, n, both, 2);
    env_free(&e);
}

/* frcnn_nms_conv continuous against the brute-force reference with the continuous IoU, at every vector width; the
 * sets are such that the inclusive reference often keeps something else. */
static void test_continuous_matches_brute_force(void **state)
{
    (void)state;
    const size_t sizes[] = {1, 2, 7, 17, 33, 64, 257, 600};
    const float thresholds[] = {0.3f, 0.5f, 0.7f};
    const size_t max_keeps[] = {0, 1, 5, 40};
    nms_env e = env_create(frcnn_nms_scratch_bytes(600) + 4096);
    float *boxes = malloc(4 * 600 * sizeof(float)), *scores = malloc(600 * sizeof(float));
    uint32_t *keep = malloc(600 * sizeof(uint32_t)), *want = malloc(600 * sizeof(uint32_t));
    uint32_t *incl = malloc(600 * sizeof(uint32_t));
    frcnn_rng rng;
    frcnn_rng_seed(&rng, 13);
    size_t cases = 0, differ = 0, kept = 0, dropped = 0;
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (int kind = 0; kind < 3; kind++)
            for (int levels = 0; levels <= 5; levels += 5) {
                size_t n = sizes[s];
                make_case(&rng, n, kind, levels, boxes, scores);
                for (size_t t = 0; t < 3; t++)
                    for (size_t m = 0; m < sizeof max_keeps / sizeof max_keeps[0]; m++) {
                        size_t n_want = ref_nms_off(boxes, scores, n, thresholds[t], max_keeps[m], want, 0.0f);
                        size_t n_got = run_nms_conv(&e, FRCNN_BOXES_CONTINUOUS, boxes, scores, n, thresholds[t],
                                                    max_keeps[m], keep);
                        char what[128];
                        snprintf(what, sizeof what, "continuous, n %zu, kind %d, %d score levels, IoU %.1f, "
                                 "max_keep %zu", n, kind, levels, (double)thresholds[t], max_keeps[m]);
                        expect_keep(what, keep, n_got, want, n_want);
                        check_widths_off(what, boxes, scores, n, thresholds[t], max_keeps[m], want, n_want, 0.0f);
                        size_t n_incl = ref_nms_off(boxes, scores, n, thresholds[t], max_keeps[m], incl, 1.0f);
                        differ += n_incl != n_want || memcmp(incl, want, n_want * sizeof *want) != 0;
                        cases++;
                        if (max_keeps[m] == 0) {
                            kept += n_got;
                            dropped += n - n_got;
                        }
                    }
            }
    assert_true(cases > 500);
    assert_true(kept > 500 && dropped > 500);
    assert_true(differ > cases / 20); /* a convention ignored would show */
    free(boxes);
    free(scores);
    free(keep);
    free(want);
    free(incl);
    env_free(&e);
}

static void test_unknown_convention(void **state)
{
    (void)state;
    nms_env e = env_create(frcnn_nms_scratch_bytes(8) + 256);
    const float boxes[8] = {0, 0, 9, 9, 1, 1, 10, 10};
    const float scores[2] = {1.0f, 0.5f};
    uint32_t keep[2];
    size_t n_keep = 99, mark = frcnn_arena_mark(e.arena);
    tu_expect_error_msg(e.ctx,
                        frcnn_nms_conv(e.ctx, e.arena, (frcnn_box_convention)7, boxes, scores, 2, 0.5f, 0, keep,
                                       &n_keep),
                        FRCNN_ERR_INVALID_ARG, "box convention 7");
    assert_int_equal(n_keep, 0);
    assert_int_equal(frcnn_arena_mark(e.arena), mark);
    env_free(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_cases),
        cmocka_unit_test(test_threshold_in_long_lists),
        cmocka_unit_test(test_matches_brute_force),
        cmocka_unit_test(test_matches_brute_force_large),
        cmocka_unit_test(test_argsort),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_continuous_hand_cases),
        cmocka_unit_test(test_continuous_matches_brute_force),
        cmocka_unit_test(test_unknown_convention),
    };
    return cmocka_run_group_tests_name("nms", tests, NULL, NULL);
}
