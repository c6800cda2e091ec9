/* The proposal layer: a hand case through decode, clip, min-size filter, score order, top-N and NMS; ties in
 * score; the pre- and post-NMS caps; image scale; a randomised comparison with a naive reference, in both box
 * conventions (continuous: torchvision's filter_proposals order); non-finite inputs; the scratch size and arena
 * hygiene. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct fixture {
    frcnn_ctx *ctx;
    frcnn_arena *arena;
    size_t mark;
} fixture;

/* An arena of the documented scratch size for n anchors, with a small block already taken before the mark. */
static void fixture_init(fixture *f, size_t n)
{
    f->ctx = tu_ctx();
    assert_int_equal(frcnn_arena_create(f->ctx, frcnn_proposal_scratch_bytes(n) + 64, &f->arena), FRCNN_OK);
    void *pad;
    assert_int_equal(frcnn_arena_alloc(f->arena, 8, &pad), FRCNN_OK);
    f->mark = frcnn_arena_mark(f->arena);
}

static void fixture_free(fixture *f)
{
    frcnn_arena_free(f->arena);
    frcnn_ctx_free(f->ctx);
}

static frcnn_status run(fixture *f, const frcnn_proposal_params *p, const float *anchors, const float *deltas,
                        const float *scores, size_t n, float h, float w, float scale, float *rois,
                        float *roi_scores, size_t *n_rois)
{
    frcnn_status st = frcnn_proposals(f->ctx, f->arena, p, anchors, deltas, scores, n, h, w, scale, rois,
                                      roi_scores, n_rois);
    assert_int_equal(frcnn_arena_used(f->arena), f->mark);
    return st;
}

static void assert_ok(frcnn_ctx *ctx, frcnn_status st)
{
    if (st != FRCNN_OK)
        print_error("status %d: %s\n", st, frcnn_ctx_last_error(ctx));
    assert_int_equal(st, FRCNN_OK);
}

static void set_box(float *b, float x1, float y1, float x2, float y2)
{
    b[0] = x1;
    b[1] = y1;
    b[2] = x2;
    b[3] = y2;
}

/* The hand case, image 100 x 100, scale 1 (min size 16). A zero delta decodes a box to itself (x2 = cx + w/2 - 1).
 *   0 (0,0,15,15)    zero        score 0.5   -> w 16: kept
 *   1 (0,0,14,14)    zero        0.9         -> w 15: too small
 *   2 (80,80,119,119) zero       0.8         -> clipped to (80,80,99,99)
 *   3 (1,0,16,16)    zero        0.5         -> IoU 0.88 with 0, same score, later index: dropped
 *   4 (40,40,59,59)  dx 0.1      0.6         -> (42,40,61,59)
 *   5 (40,40,59,59)  dw log 2    0.7         -> (30,40,69,59): IoU 0.5 with 4, kept
 *   6 (40,40,59,59)  zero        0.55        -> IoU 0.82 with 4: dropped
 *   7 (90,10,129,29) zero        0.95        -> clipped to (90,10,99,29): w 10, too small */
#define HAND_N 8
static void hand_case(float *anchors, float *deltas, float *scores)
{
    memset(deltas, 0, HAND_N * 4 * sizeof(float));
    set_box(anchors + 0, 0, 0, 15, 15);
    set_box(anchors + 4, 0, 0, 14, 14);
    set_box(anchors + 8, 80, 80, 119, 119);
    set_box(anchors + 12, 1, 0, 16, 16);
    set_box(anchors + 16, 40, 40, 59, 59);
    set_box(anchors + 20, 40, 40, 59, 59);
    set_box(anchors + 24, 40, 40, 59, 59);
    set_box(anchors + 28, 90, 10, 129, 29);
    deltas[16] = 0.1f;
    deltas[22] = logf(2.0f);
    const float s[HAND_N] = {0.5f, 0.9f, 0.8f, 0.5f, 0.6f, 0.7f, 0.55f, 0.95f};
    memcpy(scores, s, sizeof s);
}

static const float hand_rois[4 * 4] = {80, 80, 99, 99, 30, 40, 69, 59, 42, 40, 61, 59, 0, 0, 15, 15};
static const float hand_scores[4] = {0.8f, 0.7f, 0.6f, 0.5f};

static void test_hand_case(void **state)
{
    (void)state;
    fixture f;
    fixture_init(&f, HAND_N);
    float anchors[HAND_N * 4], deltas[HAND_N * 4], scores[HAND_N], rois[HAND_N * 4], roi_scores[HAND_N];
    hand_case(anchors, deltas, scores);
    frcnn_proposal_params p = frcnn_proposal_params_default(true);
    size_t n_rois = 99;
    assert_ok(f.ctx, run(&f, &p, anchors, deltas, scores, HAND_N, 100, 100, 1.0f, rois, roi_scores, &n_rois));
    assert_int_equal(n_rois, 4);
    tu_assert_close("hand case rois", rois, hand_rois, 16, 1e-4, 0);
    tu_assert_close("hand case scores", roi_scores, hand_scores, 4, 0, 0);

    /* post_nms_top_n 2 keeps the first two; roi_scores may be NULL; rows past the count are untouched. */
    p.post_nms_top_n = 2;
    rois[8] = -7.0f;
    assert_ok(f.ctx, run(&f, &p, anchors, deltas, scores, HAND_N, 100, 100, 1.0f, rois, NULL, &n_rois));
    assert_int_equal(n_rois, 2);
    tu_assert_close("post-NMS cap", rois, hand_rois, 8, 1e-4, 0);
    assert_true(rois[8] == -7.0f);

    /* pre_nms_top_n 3 keeps boxes 2, 5, 4 before NMS; 4 keeps 2, 5, 4, 6 and NMS drops 6. */
    p.post_nms_top_n = 2000;
    p.pre_nms_top_n = 3;
    assert_ok(f.ctx, run(&f, &p, anchors, deltas, scores, HAND_N, 100, 100, 1.0f, rois, roi_scores, &n_rois));
    assert_int_equal(n_rois, 3);
    tu_assert_close("pre-NMS cap 3", rois, hand_rois, 12, 1e-4, 0);
    p.pre_nms_top_n = 4;
    assert_ok(f.ctx, run(&f, &p, anchors, deltas, scores, HAND_N, 100, 100, 1.0f, rois, roi_scores, &n_rois));
    assert_int_equal(n_rois, 3);
    p.pre_nms_top_n = 5;
    assert_ok(f.ctx, run(&f, &p, anchors, deltas, scores, HAND_N, 100, 100, 1.0f, rois, roi_scores, &n_rois));
    assert_int_equal(n_rois, 4);

    /* NMS at 0.85 keeps 6 and 3 too (IoUs 0.83), in score order with 0 before 3 (tie, lower index). */
    p = frcnn_proposal_params_default(false);
    p.nms_iou = 0.85f;
    assert_ok(f.ctx, run(&f, &p, anchors, deltas, scores, HAND_N, 100, 100, 1.0f, rois, roi_scores, &n_rois));
    assert_int_equal(n_rois, 6);
    const float want6[6] = {0.8f, 0.7f, 0.6f, 0.55f, 0.5f, 0.5f};
    tu_assert_close("nms 0.85 scores", roi_scores, want6, 6, 0, 0);
    tu_assert_close("tie: box 0 first", rois + 16, hand_rois + 12, 4, 1e-4, 0);
    const float box3[4] = {1, 0, 16, 16};
    tu_assert_close("tie: box 3 second", rois + 20, box3, 4, 1e-4, 0);

    /* min_size is in original-image pixels: at scale 1.0625 the threshold is 17 and box 0 (w 16) goes. */
    p = frcnn_proposal_params_default(true);
    assert_ok(f.ctx, run(&f, &p, anchors, deltas, scores, HAND_N, 100, 100, 1.0625f, rois, roi_scores, &n_rois));
    assert_int_equal(n_rois, 3);
    tu_assert_close("scaled min size", rois, hand_rois, 12, 1e-4, 0);
    /* At scale 0.9375 (15) box 1 (w 15) enters: best score after box 7, which is still 10 wide. */
    assert_ok(f.ctx, run(&f, &p, anchors, deltas, scores, HAND_N, 100, 100, 0.9375f, rois, roi_scores, &n_rois));
    assert_true(roi_scores[0] == 0.9f);
    fixture_free(&f);
}

/* Disjoint boxes with equal scores come out in ascending anchor order, also across sort runs and merges. */
static void test_ties_by_index(void **state)
{
    (void)state;
    const size_t n = 300;
    fixture f;
    fixture_init(&f, n);
    float *anchors = malloc(n * 4 * sizeof(float)), *deltas = calloc(n * 4, sizeof(float));
    float *scores = malloc(n * sizeof(float)), *rois = malloc(n * 4 * sizeof(float));
    float *roi_scores = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        float x = (float)(i % 20) * 30.0f, y = (float)(i / 20) * 30.0f;
        set_box(anchors + 4 * i, x, y, x + 19, y + 19);
        scores[i] = (float)((i * 7) % 3) * 0.25f;
    }
    frcnn_proposal_params p = frcnn_proposal_params_default(true);
    size_t n_rois;
    assert_ok(f.ctx, run(&f, &p, anchors, deltas, scores, n, 1000, 1000, 1.0f, rois, roi_scores, &n_rois));
    assert_int_equal(n_rois, n);
    size_t k = 0;
    for (int level = 2; level >= 0; level--) {
        for (size_t i = 0; i < n; i++) {
            if (scores[i] != (float)level * 0.25f)
                continue;
            if (rois[4 * k] != anchors[4 * i] || rois[4 * k + 1] != anchors[4 * i + 1])
                fail_msg("position %zu: box at (%g, %g), expected anchor %zu at (%g, %g)", k, (double)rois[4 * k],
                         (double)rois[4 * k + 1], i, (double)anchors[4 * i], (double)anchors[4 * i + 1]);
            k++;
        }
    }
    free(anchors);
    free(deltas);
    free(scores);
    free(rois);
    free(roi_scores);
    fixture_free(&f);
}

/* ----- naive reference ---------------------------------------------------------------------------------------- */

static float ref_iou(const float *a, const float *b)
{
    float aa = (a[2] - a[0] + 1.0f) * (a[3] - a[1] + 1.0f), ba = (b[2] - b[0] + 1.0f) * (b[3] - b[1] + 1.0f);
    float iw = fminf(a[2], b[2]) - fmaxf(a[0], b[0]) + 1.0f, ih = fminf(a[3], b[3]) - fmaxf(a[1], b[1]) + 1.0f;
    if (!(iw > 0.0f && ih > 0.0f))
        return 0.0f;
    float inter = iw * ih;
    return inter / ((aa + ba) - inter);
}

/* decode + clip (by the library's own primitives, tested elsewhere), filter, selection sort by (score desc,
 * index asc), cut, greedy NMS, cut: O(n^2) and obviously right. */
static size_t ref_proposals(const frcnn_proposal_params *p, const float *anchors, const float *deltas,
                            const float *scores, size_t n, float h, float w, float scale, float *rois,
                            float *roi_scores)
{
    float *boxes = malloc(n * 4 * sizeof(float));
    bool *alive = malloc(n * sizeof(bool)), *used = calloc(n, sizeof(bool));
    size_t *order = malloc(n * sizeof(size_t));
    frcnn_box_decode(anchors, deltas, n, NULL, NULL, boxes);
    frcnn_box_clip(boxes, n, h, w);
    float min = p->min_size * scale;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        alive[i] = boxes[4 * i + 2] - boxes[4 * i] + 1.0f >= min && boxes[4 * i + 3] - boxes[4 * i + 1] + 1.0f >= min;
    for (;;) {
        size_t best = n;
        for (size_t i = 0; i < n; i++)
            if (alive[i] && !used[i] && (best == n || scores[i] > scores[best]))
                best = i;
        if (best == n || m == (size_t)p->pre_nms_top_n)
            break;
        used[best] = true;
        order[m++] = best;
    }
    size_t kept = 0;
    for (size_t k = 0; k < m && kept < (size_t)p->post_nms_top_n; k++) {
        const float *b = boxes + 4 * order[k];
        bool keep = true;
        for (size_t j = 0; j < kept && keep; j++)
            keep = !(ref_iou(b, rois + 4 * j) > p->nms_iou);
        if (keep) {
            memcpy(rois + 4 * kept, b, 4 * sizeof(float));
            roi_scores[kept++] = scores[order[k]];
        }
    }
    free(boxes);
    free(alive);
    free(used);
    free(order);
    return kept;
}

/* n random anchors (centres over 400 x 300 and beyond, sides 8..158), deltas in [-0.3, 0.3) and scores in steps of
 * 0.05 (many ties), from seeds seed, seed + 1, seed + 2. */
static void random_inputs(size_t n, uint64_t seed, float *anchors, float *deltas, float *scores)
{
    float *u = malloc(n * 4 * sizeof(float));
    tu_fill_uniform(u, n * 4, seed, 0.0f, 1.0f);
    for (size_t i = 0; i < n; i++) {
        float cx = u[4 * i] * 400.0f - 50.0f, cy = u[4 * i + 1] * 300.0f - 50.0f;
        float bw = 8.0f + u[4 * i + 2] * 150.0f, bh = 8.0f + u[4 * i + 3] * 150.0f;
        set_box(anchors + 4 * i, cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2);
    }
    free(u);
    tu_fill_uniform(deltas, n * 4, seed + 1, -0.3f, 0.3f);
    tu_fill_uniform(scores, n, seed + 2, 0.0f, 1.0f);
    for (size_t i = 0; i < n; i++)
        scores[i] = floorf(scores[i] * 20.0f) / 20.0f;
}

/* Random anchors, deltas and coarse scores (many ties) against the reference, under several parameter sets. */
static void test_matches_reference(void **state)
{
    (void)state;
    const size_t n = 1500;
    fixture f;
    fixture_init(&f, n);
    float *anchors = malloc(n * 4 * sizeof(float)), *deltas = malloc(n * 4 * sizeof(float));
    float *scores = malloc(n * sizeof(float));
    float *rois = malloc(n * 4 * sizeof(float)), *roi_scores = malloc(n * sizeof(float));
    float *ref_rois = malloc(n * 4 * sizeof(float)), *ref_scores = malloc(n * sizeof(float));
    random_inputs(n, 31, anchors, deltas, scores);
    const struct {
        int pre, post;
        float nms, min_size, scale;
    } cases[] = {
        {12000, 2000, 0.7f, 16.0f, 1.0f}, {6000, 300, 0.7f, 16.0f, 1.6f}, {200, 50, 0.5f, 8.0f, 1.0f},
        {1500, 1500, 1.0f, 0.0f, 1.0f},   {10, 3, 0.0f, 16.0f, 1.0f},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        frcnn_proposal_params p = {cases[c].pre, cases[c].post, cases[c].nms, cases[c].min_size,
                                   FRCNN_BOXES_INCLUSIVE};
        size_t n_rois;
        assert_ok(f.ctx, run(&f, &p, anchors, deltas, scores, n, 300, 400, cases[c].scale, rois, roi_scores,
                             &n_rois));
        size_t want = ref_proposals(&p, anchors, deltas, scores, n, 300, 400, cases[c].scale, ref_rois, ref_scores);
        if (n_rois != want)
            fail_msg("case %zu: %zu proposals, reference %zu", c, n_rois, want);
        assert_true(n_rois > 0);
        tu_assert_identical("rois vs reference", rois, ref_rois, 4 * n_rois);
        tu_assert_identical("scores vs reference", roi_scores, ref_scores, n_rois);
    }
    free(anchors);
    free(deltas);
    free(scores);
    free(rois);
    free(roi_scores);
    free(ref_rois);
    free(ref_scores);
    fixture_free(&f);
}

static void test_non_finite_and_bad_arguments(void **state)
{
    (void)state;
    fixture f;
    fixture_init(&f, HAND_N);
    float anchors[HAND_N * 4], deltas[HAND_N * 4], scores[HAND_N], rois[HAND_N * 4], roi_scores[HAND_N];
    hand_case(anchors, deltas, scores);
    frcnn_proposal_params p = frcnn_proposal_params_default(true);
    size_t n_rois = 5;
    scores[3] = NAN;
    tu_expect_error_msg(f.ctx, run(&f, &p, anchors, deltas, scores, HAND_N, 100, 100, 1, rois, roi_scores, &n_rois),
                 FRCNN_ERR_NOT_FINITE, "fg_scores[3]");
    assert_int_equal(n_rois, 0);
    scores[3] = INFINITY;
    tu_expect_error_msg(f.ctx, run(&f, &p, anchors, deltas, scores, HAND_N, 100, 100, 1, rois, roi_scores, &n_rois),
                 FRCNN_ERR_NOT_FINITE, "fg_scores[3]");
    scores[3] = 0.5f;
    deltas[4 * 6 + 2] = NAN;
    tu_expect_error_msg(f.ctx, run(&f, &p, anchors, deltas, scores, HAND_N, 100, 100, 1, rois, roi_scores, &n_rois),
                 FRCNN_ERR_NOT_FINITE, "deltas row 6");
    deltas[4 * 6 + 2] = 0.0f;
    anchors[5] = NAN;
    tu_expect_error_msg(f.ctx, run(&f, &p, anchors, deltas, scores, HAND_N, 100, 100, 1, rois, roi_scores, &n_rois),
                 FRCNN_ERR_INVALID_ARG, "anchors row 1");
    anchors[5] = 0.0f;

    assert_int_equal(frcnn_proposals(NULL, f.arena, &p, anchors, deltas, scores, HAND_N, 100, 100, 1, rois,
                                     roi_scores, &n_rois),
                     FRCNN_ERR_INVALID_ARG);
    tu_expect_error_msg(f.ctx,
                 frcnn_proposals(f.ctx, NULL, &p, anchors, deltas, scores, HAND_N, 100, 100, 1, rois, roi_scores,
                                 &n_rois),
                 FRCNN_ERR_INVALID_ARG, "scratch");
    tu_expect_error_msg(f.ctx, run(&f, &p, anchors, deltas, NULL, HAND_N, 100, 100, 1, rois, roi_scores, &n_rois),
                 FRCNN_ERR_INVALID_ARG, "fg_scores");
    tu_expect_error_msg(f.ctx, run(&f, &p, anchors, deltas, scores, HAND_N, 100, 100, 1, rois, roi_scores, NULL),
                 FRCNN_ERR_INVALID_ARG, "n_rois");
    tu_expect_error_msg(f.ctx, run(&f, &p, anchors, deltas, scores, HAND_N, 100, 100, 0, rois, roi_scores, &n_rois),
                 FRCNN_ERR_INVALID_ARG, "image_scale");
    tu_expect_error_msg(f.ctx, run(&f, &p, anchors, deltas, scores, HAND_N, -1, 100, 1, rois, roi_scores, &n_rois),
                 FRCNN_ERR_INVALID_ARG, "image size");
    frcnn_proposal_params bad = p;
    bad.post_nms_top_n = 0;
    tu_expect_error_msg(f.ctx, run(&f, &bad, anchors, deltas, scores, HAND_N, 100, 100, 1, rois, roi_scores, &n_rois),
                 FRCNN_ERR_INVALID_ARG, "post_nms_top_n");
    bad = p;
    bad.nms_iou = NAN;
    tu_expect_error_msg(f.ctx, run(&f, &bad, anchors, deltas, scores, HAND_N, 100, 100, 1, rois, roi_scores, &n_rois),
                 FRCNN_ERR_INVALID_ARG, "nms_iou");
    bad = p;
    bad.min_size = -1.0f;
    tu_expect_error_msg(f.ctx, run(&f, &bad, anchors, deltas, scores, HAND_N, 100, 100, 1, rois, roi_scores, &n_rois),
                 FRCNN_ERR_INVALID_ARG, "min_size");

    /* No anchors: no proposals, no scratch. */
    assert_int_equal(frcnn_proposal_scratch_bytes(0), 0);
    n_rois = 5;
    assert_ok(f.ctx, run(&f, &p, NULL, NULL, NULL, 0, 100, 100, 1, rois, roi_scores, &n_rois));
    assert_int_equal(n_rois, 0);
    fixture_free(&f);

    /* An arena one allocation short: NO_MEMORY and the arena back at its mark. */
    frcnn_ctx *ctx = tu_ctx();
    frcnn_arena *arena;
    assert_int_equal(frcnn_arena_create(ctx, frcnn_proposal_scratch_bytes(HAND_N) - 64, &arena), FRCNN_OK);
    frcnn_status st =
        frcnn_proposals(ctx, arena, &p, anchors, deltas, scores, HAND_N, 100, 100, 1, rois, roi_scores, &n_rois);
    assert_int_equal(st, FRCNN_ERR_NO_MEMORY);
    assert_int_equal(frcnn_arena_used(arena), 0);
    frcnn_arena_free(arena);
    frcnn_ctx_free(ctx);
}

/* frcnn_proposal_scratch_bytes(n) is enough for every n (the fixture sizes its arena so, with 64 bytes of slack
 * for its own pad block) and stays monotone. */
static void test_scratch_size(void **state)
{
    (void)state;
    size_t prev = 0;
    for (size_t n = 1; n < 5000; n = n * 3 + 1) {
        size_t b = frcnn_proposal_scratch_bytes(n);
        assert_true(b >= prev && b >= n * 28);
        prev = b;
        fixture f;
        fixture_init(&f, n);
        float *anchors = malloc(n * 4 * sizeof(float)), *deltas = calloc(n * 4, sizeof(float));
        float *scores = malloc(n * sizeof(float)), *rois = malloc(n * 4 * sizeof(float));
        for (size_t i = 0; i < n; i++) {
            set_box(anchors + 4 * i, (float)(i % 37) * 25.0f, (float)(i / 37) * 25.0f, (float)(i % 37) * 25.0f + 20,
                    (float)(i / 37) * 25.0f + 20);
            scores[i] = (float)i;
        }
        frcnn_proposal_params p = frcnn_proposal_params_default(true);
        p.post_nms_top_n = (int)n;
        size_t n_rois;
        assert_ok(f.ctx, run(&f, &p, anchors, deltas, scores, n, 1e5f, 1e5f, 1, rois, NULL, &n_rois));
        assert_int_equal(n_rois, n);
        free(anchors);
        free(deltas);
        free(scores);
        free(rois);
        fixture_free(&f);
    }
    assert_int_equal(frcnn_proposal_scratch_bytes(SIZE_MAX / 8), SIZE_MAX);
}

/* ----- the continuous convention: torchvision's order ----------------------------------------------------------- */

/* torchvision's RPN filter_proposals on one image, written out: the pre_nms_top_n best scores (descending, ties by
 * ascending index: a stable argsort), BoxCoder.decode_single with weights 1 (w = x2 - x1, cx = x1 + 0.5 w, dw and
 * dh clamped at log(1000 / 16), x2 = cx' + 0.5 w'), clip_boxes_to_image ([0, W] x [0, H]), remove_small_boxes
 * (x2 - x1 and y2 - y1 >= min_size * scale), greedy NMS with box_iou (no +1), the first post_nms_top_n. */
static size_t ref_proposals_continuous(const frcnn_proposal_params *p, const float *anchors, const float *deltas,
                                       const float *scores, size_t n, float h, float w, float scale, float *rois,
                                       float *roi_scores)
{
    bool *used = calloc(n ? n : 1, sizeof(bool));
    float *boxes = malloc((n ? n : 1) * 4 * sizeof(float)), *kept_scores = malloc((n ? n : 1) * sizeof(float));
    const float clamp = (float)log(1000.0 / 16.0), min = p->min_size * scale;
    size_t m = 0;
    for (size_t k = 0; k < n && k < (size_t)p->pre_nms_top_n; k++) {
        size_t best = n;
        for (size_t i = 0; i < n; i++)
            if (!used[i] && (best == n || scores[i] > scores[best]))
                best = i;
        used[best] = true;
        const float *a = anchors + 4 * best, *d = deltas + 4 * best;
        float aw = a[2] - a[0], ah = a[3] - a[1], cx = a[0] + 0.5f * aw, cy = a[1] + 0.5f * ah;
        float dw = d[2] < clamp ? d[2] : clamp, dh = d[3] < clamp ? d[3] : clamp;
        float pcx = d[0] * aw + cx, pcy = d[1] * ah + cy, pw = expf(dw) * aw, ph = expf(dh) * ah;
        float b[4] = {pcx - 0.5f * pw, pcy - 0.5f * ph, pcx + 0.5f * pw, pcy + 0.5f * ph};
        for (int c = 0; c < 4; c++)
            b[c] = fmaxf(fminf(b[c], c % 2 ? h : w), 0.0f);
        if (b[2] - b[0] >= min && b[3] - b[1] >= min) {
            memcpy(boxes + 4 * m, b, sizeof b);
            kept_scores[m++] = scores[best];
        }
    }
    size_t kept = 0;
    for (size_t k = 0; k < m && kept < (size_t)p->post_nms_top_n; k++) {
        const float *b = boxes + 4 * k;
        bool keep = true;
        for (size_t j = 0; j < kept && keep; j++) {
            const float *q = rois + 4 * j;
            float iw = fminf(b[2], q[2]) - fmaxf(b[0], q[0]), ih = fminf(b[3], q[3]) - fmaxf(b[1], q[1]);
            if (iw > 0.0f && ih > 0.0f) {
                float inter = iw * ih;
                float uni = ((b[2] - b[0]) * (b[3] - b[1]) + (q[2] - q[0]) * (q[3] - q[1])) - inter;
                keep = !(inter / uni > p->nms_iou);
            }
        }
        if (keep) {
            memcpy(rois + 4 * kept, b, 4 * sizeof(float));
            roi_scores[kept++] = kept_scores[k];
        }
    }
    free(used);
    free(boxes);
    free(kept_scores);
    return kept;
}

/* The order matters: the top-N cut comes before the size filter, so a small box with the best score takes a place
 * (inclusive: the filter first). And clipping reaches the far edge W, not W - 1. */
static void test_continuous_hand_case(void **state)
{
    (void)state;
    fixture f;
    fixture_init(&f, 3);
    const float anchors[12] = {0, 0, 10, 10, 20, 20, 60, 60, 80, 70, 130, 110};
    const float deltas[12] = {0};
    const float scores[3] = {0.9f, 0.5f, 0.7f};
    float rois[12], roi_scores[3];
    size_t n_rois = 99;
    frcnn_proposal_params p = frcnn_proposal_params_default(false);
    p.box_convention = FRCNN_BOXES_CONTINUOUS;
    /* All three: box 0 (10 wide) is too small, box 2 is clipped to (80, 70, 100, 100). */
    assert_ok(f.ctx, run(&f, &p, anchors, deltas, scores, 3, 100, 100, 1.0f, rois, roi_scores, &n_rois));
    assert_int_equal(n_rois, 2);
    const float want[8] = {80, 70, 100, 100, 20, 20, 60, 60};
    tu_assert_identical("continuous rois", rois, want, 8);
    /* pre_nms_top_n 1 takes box 0 alone, which the size filter then drops. */
    p.pre_nms_top_n = 1;
    assert_ok(f.ctx, run(&f, &p, anchors, deltas, scores, 3, 100, 100, 1.0f, rois, roi_scores, &n_rois));
    assert_int_equal(n_rois, 0);
    /* Inclusive: the filter first, then the best survivor, clipped to (80, 70, 99, 99). */
    p.box_convention = FRCNN_BOXES_INCLUSIVE;
    assert_ok(f.ctx, run(&f, &p, anchors, deltas, scores, 3, 100, 100, 1.0f, rois, roi_scores, &n_rois));
    assert_int_equal(n_rois, 1);
    const float want_incl[4] = {80, 70, 99, 99};
    tu_assert_identical("inclusive rois", rois, want_incl, 4);
    /* An unknown convention is refused. */
    p.box_convention = (frcnn_box_convention)7;
    tu_expect_error_msg(f.ctx, run(&f, &p, anchors, deltas, scores, 3, 100, 100, 1.0f, rois, roi_scores, &n_rois),
                        FRCNN_ERR_INVALID_ARG, "box convention 7");
    fixture_free(&f);
}

/* Random anchors, deltas and coarse scores (many ties) against torchvision's order, under several parameter sets;
 * the inclusive layer gives another result in most of them. */
static void test_continuous_matches_reference(void **state)
{
    (void)state;
    const size_t n = 1500;
    fixture f;
    fixture_init(&f, n);
    float *anchors = malloc(n * 4 * sizeof(float)), *deltas = malloc(n * 4 * sizeof(float));
    float *scores = malloc(n * sizeof(float));
    float *rois = malloc(n * 4 * sizeof(float)), *roi_scores = malloc(n * sizeof(float));
    float *ref_rois = malloc(n * 4 * sizeof(float)), *ref_scores = malloc(n * sizeof(float));
    float *incl_rois = malloc(n * 4 * sizeof(float)), *incl_scores = malloc(n * sizeof(float));
    random_inputs(n, 41, anchors, deltas, scores);
    const struct {
        int pre, post;
        float nms, min_size, scale;
    } cases[] = {
        {12000, 2000, 0.7f, 16.0f, 1.0f}, {6000, 300, 0.7f, 16.0f, 1.6f}, {200, 50, 0.5f, 8.0f, 1.0f},
        {1500, 1500, 1.0f, 0.0f, 1.0f},   {10, 3, 0.0f, 16.0f, 1.0f},     {100, 100, 0.7f, 60.0f, 1.0f},
        {300, 300, 0.5f, 1e-3f, 0.5f},
    };
    size_t differ = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        frcnn_proposal_params p = {cases[c].pre, cases[c].post, cases[c].nms, cases[c].min_size,
                                   FRCNN_BOXES_CONTINUOUS};
        size_t n_rois, n_incl;
        assert_ok(f.ctx, run(&f, &p, anchors, deltas, scores, n, 300, 400, cases[c].scale, rois, roi_scores,
                             &n_rois));
        size_t want = ref_proposals_continuous(&p, anchors, deltas, scores, n, 300, 400, cases[c].scale, ref_rois,
                                               ref_scores);
        if (n_rois != want)
            fail_msg("continuous case %zu: %zu proposals, reference %zu", c, n_rois, want);
        assert_true(n_rois > 0);
        tu_assert_identical("continuous rois vs reference", rois, ref_rois, 4 * n_rois);
        tu_assert_identical("continuous scores vs reference", roi_scores, ref_scores, n_rois);
        for (size_t i = 0; i < n_rois; i++)
            assert_true(rois[4 * i] >= 0 && rois[4 * i + 2] <= 400 && rois[4 * i + 1] >= 0 && rois[4 * i + 3] <= 300);
        p.box_convention = FRCNN_BOXES_INCLUSIVE;
        assert_ok(f.ctx, run(&f, &p, anchors, deltas, scores, n, 300, 400, cases[c].scale, incl_rois, incl_scores,
                             &n_incl));
        differ += n_incl != n_rois || memcmp(incl_rois, rois, 4 * n_rois * sizeof(float)) != 0;
    }
    assert_true(differ == sizeof cases / sizeof cases[0]);
    free(anchors);
    free(deltas);
    free(scores);
    free(rois);
    free(roi_scores);
    free(ref_rois);
    free(ref_scores);
    free(incl_rois);
    free(incl_scores);
    fixture_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_case),
        cmocka_unit_test(test_ties_by_index),
        cmocka_unit_test(test_matches_reference),
        cmocka_unit_test(test_non_finite_and_bad_arguments),
        cmocka_unit_test(test_scratch_size),
        cmocka_unit_test(test_continuous_hand_case),
        cmocka_unit_test(test_continuous_matches_reference),
    };
    return cmocka_run_group_tests_name("proposals", tests, NULL, NULL);
}
