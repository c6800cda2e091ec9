/* Benchmark of frcnn_nms on the proposal layer's training workload (12000 boxes, IoU 0.7, keep at most 2000)
 * against a naive O(n^2) greedy NMS measured in the same run, and of frcnn_box_iou on an anchors x GT sized
 * matrix. Prints a table and appends `name<TAB>value<TAB>unit` lines to the file named by argv[1]
 * (default build/bench.tsv). */
#include "frcnn.h"

#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define N_BOXES 12000
#define MAX_KEEP 2000
#define IOU 0.7f
#define REPS 21
#define REF_REPS 5

static void die(frcnn_ctx *ctx, frcnn_status st, const char *what)
{
    fprintf(stderr, "bench_nms: %s: %s (%s)\n", what, frcnn_status_str(st), frcnn_ctx_last_error(ctx));
    exit(1);
}

static void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes);
    if (!p) {
        fprintf(stderr, "bench_nms: out of memory (%zu bytes)\n", bytes);
        exit(1);
    }
    return p;
}

/* Proposal-like boxes: centres uniform over a 600 x 1000 image, width and height uniform in [16, 400]. */
static void random_boxes(frcnn_rng *rng, float *boxes, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float cx = 1000.0f * frcnn_rng_uniform(rng), cy = 600.0f * frcnn_rng_uniform(rng);
        float w = 16.0f + 384.0f * frcnn_rng_uniform(rng), h = 16.0f + 384.0f * frcnn_rng_uniform(rng);
        boxes[4 * i + 0] = cx - 0.5f * w;
        boxes[4 * i + 1] = cy - 0.5f * h;
        boxes[4 * i + 2] = cx + 0.5f * w;
        boxes[4 * i + 3] = cy + 0.5f * h;
    }
}

/* The textbook greedy NMS, O(n^2): sort by score, then every kept box suppresses all later ones it overlaps.
 * Same IoU arithmetic as the library (inclusive +1, float). */
static const float *ref_scores;

static int cmp_desc(const void *pa, const void *pb)
{
    uint32_t a = *(const uint32_t *)pa, b = *(const uint32_t *)pb;
    float sa = ref_scores[a], sb = ref_scores[b];
    if (sa != sb)
        return sa > sb ? -1 : 1;
    return (a > b) - (a < b);
}

static float iou1(const float *a, const float *b)
{
    float xx1 = a[0] > b[0] ? a[0] : b[0], yy1 = a[1] > b[1] ? a[1] : b[1];
    float xx2 = a[2] < b[2] ? a[2] : b[2], yy2 = a[3] < b[3] ? a[3] : b[3];
    float iw = xx2 - xx1 + 1.0f, ih = yy2 - yy1 + 1.0f;
    if (!(iw > 0.0f) || !(ih > 0.0f))
        return 0.0f;
    float area_a = (a[2] - a[0] + 1.0f) * (a[3] - a[1] + 1.0f), area_b = (b[2] - b[0] + 1.0f) * (b[3] - b[1] + 1.0f);
    float inter = iw * ih, uni = (area_a + area_b) - inter;
    return uni > 0.0f ? inter / uni : 0.0f;
}

static size_t nms_ref(const float *boxes, const float *scores, size_t n, float thr, size_t max_keep,
                      uint32_t *order, unsigned char *dead, uint32_t *keep)
{
    for (size_t i = 0; i < n; i++)
        order[i] = (uint32_t)i;
    ref_scores = scores;
    qsort(order, n, sizeof *order, cmp_desc);
    memset(dead, 0, n);
    size_t count = 0;
    for (size_t i = 0; i < n && (max_keep == 0 || count < max_keep); i++) {
        if (dead[i])
            continue;
        keep[count++] = order[i];
        for (size_t j = i + 1; j < n; j++)
            if (!dead[j] && iou1(boxes + 4 * order[i], boxes + 4 * order[j]) > thr)
                dead[j] = 1;
    }
    return count;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "build/bench.tsv";
    FILE *tsv = fopen(path, "a");
    if (!tsv) {
        perror(path);
        return 1;
    }
    frcnn_ctx *ctx;
    frcnn_status st = frcnn_ctx_create(NULL, &ctx);
    if (st != FRCNN_OK)
        return 1;
    frcnn_arena *arena;
    if ((st = frcnn_arena_create(ctx, frcnn_nms_scratch_bytes(N_BOXES), &arena)) != FRCNN_OK)
        die(ctx, st, "arena");

    float *boxes = xmalloc(4 * N_BOXES * sizeof(float)), *scores = xmalloc(N_BOXES * sizeof(float));
    uint32_t *keep = xmalloc(N_BOXES * sizeof(uint32_t)), *ref_keep = xmalloc(N_BOXES * sizeof(uint32_t));
    uint32_t *order = xmalloc(N_BOXES * sizeof(uint32_t));
    unsigned char *dead = xmalloc(N_BOXES);
    frcnn_rng rng;
    frcnn_rng_seed(&rng, 2015);
    random_boxes(&rng, boxes, N_BOXES);
    for (size_t i = 0; i < N_BOXES; i++)
        scores[i] = frcnn_rng_uniform(&rng);

    double t[REPS], tr[REF_REPS];
    size_t n_keep = 0, n_ref = 0;
    for (int r = 0; r < REPS; r++) {
        double t0 = bench_now();
        if ((st = frcnn_nms(ctx, arena, boxes, scores, N_BOXES, IOU, MAX_KEEP, keep, &n_keep)) != FRCNN_OK)
            die(ctx, st, "nms");
        t[r] = bench_now() - t0;
    }
    for (int r = 0; r < REF_REPS; r++) {
        double t0 = bench_now();
        n_ref = nms_ref(boxes, scores, N_BOXES, IOU, MAX_KEEP, order, dead, ref_keep);
        tr[r] = bench_now() - t0;
    }
    if (n_keep != n_ref || memcmp(keep, ref_keep, n_keep * sizeof *keep) != 0) {
        fprintf(stderr, "bench_nms: kept sets differ (%zu vs %zu boxes)\n", n_keep, n_ref);
        return 1;
    }
    /* The same boxes without a keep limit: every candidate is examined. */
    double tu[REPS];
    size_t n_all = 0;
    for (int r = 0; r < REPS; r++) {
        double t0 = bench_now();
        if ((st = frcnn_nms(ctx, arena, boxes, scores, N_BOXES, IOU, 0, keep, &n_all)) != FRCNN_OK)
            die(ctx, st, "nms");
        tu[r] = bench_now() - t0;
    }

    /* IoU matrix: 20000 anchors x 20 GT boxes. */
    enum { NA = 20000, NG = 20 };
    float *anchors = xmalloc(4 * NA * sizeof(float)), *gt = xmalloc(4 * NG * sizeof(float));
    float *iou = xmalloc((size_t)NA * NG * sizeof(float));
    random_boxes(&rng, anchors, NA);
    random_boxes(&rng, gt, NG);
    double ti[REPS];
    for (int r = 0; r < REPS; r++) {
        double t0 = bench_now();
        if ((st = frcnn_box_iou(ctx, anchors, NA, gt, NG, iou)) != FRCNN_OK)
            die(ctx, st, "box_iou");
        ti[r] = bench_now() - t0;
    }

    double ms = 1e3 * bench_median(t, REPS), ref_ms = 1e3 * bench_median(tr, REF_REPS), all_ms = 1e3 * bench_median(tu, REPS);
    double iou_ms = 1e3 * bench_median(ti, REPS);
    printf("NMS over %d proposal-like boxes (600x1000 image, sides 16..400), IoU %.1f, %d threads, median\n",
           N_BOXES, (double)IOU, frcnn_ctx_threads(ctx));
    printf("%-34s %10s %8s\n", "case", "ms", "kept");
    printf("%-34s %10.3f %8zu\n", "frcnn_nms, max_keep 2000", ms, n_keep);
    printf("%-34s %10.3f %8zu\n", "naive O(n^2) greedy, max_keep 2000", ref_ms, n_ref);
    printf("%-34s %10.1f %8s\n", "speed-up (naive / frcnn_nms)", ref_ms / ms, "x");
    printf("%-34s %10.3f %8zu\n", "frcnn_nms, no keep limit", all_ms, n_all);
    printf("%-34s %10.3f %8s\n", "frcnn_box_iou 20000 x 20", iou_ms, "");
    fprintf(tsv, "nms_12000_ms\t%.6g\tms\n", ms);
    fprintf(tsv, "nms_12000_ref_ms\t%.6g\tms\n", ref_ms);
    fprintf(tsv, "nms_12000_speedup\t%.6g\tratio\n", ref_ms / ms);
    fprintf(tsv, "nms_12000_nolimit_ms\t%.6g\tms\n", all_ms);
    fprintf(tsv, "box_iou_20000x20_ms\t%.6g\tms\n", iou_ms);

    free(boxes);
    free(scores);
    free(keep);
    free(ref_keep);
    free(order);
    free(dead);
    free(anchors);
    free(gt);
    free(iou);
    frcnn_arena_free(arena);
    frcnn_ctx_free(ctx);
    fclose(tsv);
    return 0;
}
