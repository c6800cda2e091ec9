/* Greedy non-maximum suppression, exact and fast. Candidates in stable descending score order are tested only
 * against the boxes kept so far (a structure-of-arrays list scanned 16 at a time with AVX or 8 with SSE2,
 * stopping at the first step that suppresses), and the scan ends once max_keep boxes are kept. The kept set is
 * exactly that of the O(n^2) definition (py-faster-rcnn nms/py_cpu_nms.py: drop a box whose IoU with a kept one
 * is > the threshold; torchvision's nms with the continuous convention), because every IoU is the same
 * frcnn__iou_coords expression. */
#include "box_internal.h"

#include <math.h>
#include <string.h>

/* Kept-list arrays are padded to a multiple of this many floats (64 bytes). */
#define KEPT_ALIGN 16

/* Floats per kept-list array: cap rounded up to a multiple of KEPT_ALIGN, keeping each array 64-byte aligned. */
static size_t kept_stride(size_t cap)
{
    return (cap + KEPT_ALIGN - 1) / KEPT_ALIGN * KEPT_ALIGN;
}

size_t frcnn__nms_kept_floats(size_t cap)
{
    if (cap > SIZE_MAX / 5 - KEPT_ALIGN)
        return 0;
    return 5 * kept_stride(cap);
}

/* The kept list: coordinates and areas of the boxes kept so far, count of them, and the pixel offset. */
typedef struct kept_list {
    float *x1, *y1, *x2, *y2, *area;
    size_t count;
    float off;
} kept_list;

/* True when kept box j has IoU > thr with the box (x1, y1, x2, y2, area). */
static inline bool suppresses(const kept_list *k, size_t j, float x1, float y1, float x2, float y2, float area,
                              float thr)
{
    return frcnn__iou_coords(k->x1[j], k->y1[j], k->x2[j], k->y2[j], k->area[j], x1, y1, x2, y2, area, k->off) > thr;
}

#if defined(__SSE2__)
/* frcnn__iou_coords(kept[j..j+4), box) > thr for four kept boxes, as a lane mask. */
static inline __m128 suppress_mask4(const kept_list *k, size_t j, __m128 bx1, __m128 by1, __m128 bx2, __m128 by2,
                                    __m128 barea, __m128 thr)
{
    __m128 iou = frcnn__iou_sse2(_mm_loadu_ps(k->x1 + j), _mm_loadu_ps(k->y1 + j), _mm_loadu_ps(k->x2 + j),
                                 _mm_loadu_ps(k->y2 + j), _mm_loadu_ps(k->area + j), bx1, by1, bx2, by2, barea,
                                 _mm_set1_ps(k->off));
    return _mm_cmpgt_ps(iou, thr);
}

/* Kept boxes [j, end) in steps of eight; returns the first index not examined, or SIZE_MAX on a suppression. */
static size_t scan_sse2(const kept_list *k, size_t j, float x1, float y1, float x2, float y2, float area, float thr)
{
    __m128 bx1 = _mm_set1_ps(x1), by1 = _mm_set1_ps(y1), bx2 = _mm_set1_ps(x2), by2 = _mm_set1_ps(y2);
    __m128 barea = _mm_set1_ps(area), vthr = _mm_set1_ps(thr);
    for (; j + 8 <= k->count; j += 8) {
        __m128 m = _mm_or_ps(suppress_mask4(k, j, bx1, by1, bx2, by2, barea, vthr),
                             suppress_mask4(k, j + 4, bx1, by1, bx2, by2, barea, vthr));
        if (_mm_movemask_ps(m))
            return SIZE_MAX;
    }
    return j;
}
#endif

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define NMS_HAVE_AVX 1

/* frcnn__iou_sse2 and the comparison with thr on eight lanes with AVX (compiled for AVX whatever the build
 * flags, used only when the CPU has it). _mm256_cmp_ps with _CMP_GT_OQ is the quiet form of `>`: the same
 * result, NaN included. */
__attribute__((target("avx"))) static inline __m256 suppress_mask8(const kept_list *k, size_t j, __m256 bx1,
                                                                   __m256 by1, __m256 bx2, __m256 by2,
                                                                   __m256 barea, __m256 thr)
{
    const __m256 off = _mm256_set1_ps(k->off), zero = _mm256_setzero_ps();
    __m256 xx1 = _mm256_max_ps(_mm256_loadu_ps(k->x1 + j), bx1);
    __m256 yy1 = _mm256_max_ps(_mm256_loadu_ps(k->y1 + j), by1);
    __m256 xx2 = _mm256_min_ps(_mm256_loadu_ps(k->x2 + j), bx2);
    __m256 yy2 = _mm256_min_ps(_mm256_loadu_ps(k->y2 + j), by2);
    __m256 iw = _mm256_add_ps(_mm256_sub_ps(xx2, xx1), off);
    __m256 ih = _mm256_add_ps(_mm256_sub_ps(yy2, yy1), off);
    __m256 inter = _mm256_mul_ps(iw, ih);
    __m256 uni = _mm256_sub_ps(_mm256_add_ps(_mm256_loadu_ps(k->area + j), barea), inter);
    __m256 iou = _mm256_div_ps(inter, uni);
    __m256 valid = _mm256_and_ps(_mm256_cmp_ps(iw, zero, _CMP_GT_OQ), _mm256_cmp_ps(ih, zero, _CMP_GT_OQ));
    valid = _mm256_and_ps(valid, _mm256_cmp_ps(uni, zero, _CMP_GT_OQ));
    return _mm256_cmp_ps(_mm256_and_ps(valid, iou), thr, _CMP_GT_OQ);
}

/* Kept boxes [j, end) in steps of sixteen; returns the first index not examined, or SIZE_MAX on a suppression. */
__attribute__((target("avx"))) static size_t scan_avx(const kept_list *k, size_t j, float x1, float y1, float x2,
                                                       float y2, float area, float thr)
{
    __m256 bx1 = _mm256_set1_ps(x1), by1 = _mm256_set1_ps(y1), bx2 = _mm256_set1_ps(x2), by2 = _mm256_set1_ps(y2);
    __m256 barea = _mm256_set1_ps(area), vthr = _mm256_set1_ps(thr);
    for (; j + 16 <= k->count; j += 16) {
        __m256 m = _mm256_or_ps(suppress_mask8(k, j, bx1, by1, bx2, by2, barea, vthr),
                                suppress_mask8(k, j + 8, bx1, by1, bx2, by2, barea, vthr));
        if (_mm256_movemask_ps(m))
            return SIZE_MAX;
    }
    return j;
}
#endif

/* True when the box (x1, y1, x2, y2, area) has IoU > thr with some kept box: sixteen kept boxes per step with
 * AVX (when width allows it), then eight per step with SSE2 (when width >= 8), then one by one, each stage
 * stopping at the first suppression. All stages compute the same bits, so the choice never changes the result. */
static bool is_suppressed(const kept_list *k, int width, float x1, float y1, float x2, float y2, float area,
                          float thr)
{
    size_t j = 0;
#ifdef NMS_HAVE_AVX
    if (width >= 16 && (j = scan_avx(k, j, x1, y1, x2, y2, area, thr)) == SIZE_MAX)
        return true;
#endif
#if defined(__SSE2__)
    if (width >= 8 && (j = scan_sse2(k, j, x1, y1, x2, y2, area, thr)) == SIZE_MAX)
        return true;
#endif
    (void)width;
    for (; j < k->count; j++)
        if (suppresses(k, j, x1, y1, x2, y2, area, thr))
            return true;
    return false;
}

void frcnn__nms_ordered_width(const float *boxes, const uint32_t *order, size_t n, float iou_threshold, float off,
                              size_t max_keep, float *kept, uint32_t *keep, size_t *n_keep, int simd_width)
{
    size_t cap = max_keep > 0 && max_keep < n ? max_keep : n;
    size_t stride = kept_stride(cap);
    kept_list k = {kept, kept + stride, kept + 2 * stride, kept + 3 * stride, kept + 4 * stride, 0, off};
#ifdef NMS_HAVE_AVX
    if (simd_width >= 16 && !__builtin_cpu_supports("avx"))
        simd_width = 8;
#endif
    for (size_t i = 0; i < n && k.count < cap; i++) {
        const float *b = boxes + 4 * (size_t)order[i];
        float x1 = b[0], y1 = b[1], x2 = b[2], y2 = b[3], area = frcnn__box_area(b, off);
        if (is_suppressed(&k, simd_width, x1, y1, x2, y2, area, iou_threshold))
            continue;
        k.x1[k.count] = x1;
        k.y1[k.count] = y1;
        k.x2[k.count] = x2;
        k.y2[k.count] = y2;
        k.area[k.count] = area;
        keep[k.count++] = order[i];
    }
    *n_keep = k.count;
}

void frcnn__nms_ordered(const float *boxes, const uint32_t *order, size_t n, float iou_threshold, float off,
                        size_t max_keep, float *kept, uint32_t *keep, size_t *n_keep)
{
    frcnn__nms_ordered_width(boxes, order, n, iou_threshold, off, max_keep, kept, keep, n_keep, 16);
}

/* Bytes of an array of n 4-byte elements, rounded up to the arena's 64-byte alignment; false on overflow. */
static bool array_bytes(size_t n, size_t *out)
{
    if (n > (SIZE_MAX - 63) / 4)
        return false;
    *out = (4 * n + 63) & ~(size_t)63;
    return true;
}

/* The scratch layout: order (n uint32), tmp (n uint32), the kept list (frcnn__nms_kept_floats(n) floats), one
 * arena block. SIZE_MAX when it overflows. */
size_t frcnn_nms_scratch_bytes(size_t n)
{
    size_t idx, kept_floats = frcnn__nms_kept_floats(n), kept, total;
    if (n == 0)
        return 0;
    if (!array_bytes(n, &idx) || kept_floats == 0 || !array_bytes(kept_floats, &kept) ||
        !frcnn__add_size(idx, idx, &total) || !frcnn__add_size(total, kept, &total))
        return SIZE_MAX;
    return total;
}

frcnn_status frcnn_nms_conv(frcnn_ctx *ctx, frcnn_arena *scratch, frcnn_box_convention conv, const float *boxes,
                            const float *scores, size_t n, float iou_threshold, size_t max_keep, uint32_t *keep,
                            size_t *n_keep)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    if (!n_keep)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "nms: n_keep is NULL");
    *n_keep = 0;
    frcnn_status st = frcnn__check_box_convention(ctx, "nms", conv);
    if (st != FRCNN_OK)
        return st;
    if (isnan(iou_threshold))
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "nms: iou_threshold is NaN");
    if (n == 0)
        return FRCNN_OK;
    if (!scratch || !boxes || !scores || !keep)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "nms: %s is NULL",
                            !scratch ? "scratch" : !boxes ? "boxes" : !scores ? "scores" : "keep");
    if (n > UINT32_MAX)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "nms: %zu boxes, at most %u supported", n,
                            (unsigned)UINT32_MAX);
    for (size_t i = 0; i < n; i++)
        if (isnan(scores[i]))
            return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "nms: score %zu is NaN", i);

    size_t bytes = frcnn_nms_scratch_bytes(n);
    size_t mark = frcnn_arena_mark(scratch);
    size_t avail = frcnn_arena_capacity(scratch) - frcnn_arena_used(scratch);
    void *mem;
    if (bytes == SIZE_MAX)
        return frcnn__error(ctx, FRCNN_ERR_OVERFLOW, "nms: scratch for %zu boxes overflows", n);
    if (bytes > avail || frcnn_arena_alloc(scratch, bytes, &mem) != FRCNN_OK) {
        frcnn_arena_reset(scratch, mark);
        return frcnn__error(ctx, FRCNN_ERR_NO_MEMORY,
                            "nms: scratch arena has %zu bytes free, %zu needed for %zu boxes "
                            "(frcnn_nms_scratch_bytes)",
                            avail, bytes, n);
    }
    size_t idx;
    array_bytes(n, &idx);
    uint32_t *order = mem;
    uint32_t *tmp = (uint32_t *)((unsigned char *)mem + idx);
    float *kept = (float *)((unsigned char *)mem + 2 * idx);
    frcnn__argsort_desc(scores, n, order, tmp);
    frcnn__nms_ordered(boxes, order, n, iou_threshold, frcnn__box_offset(conv), max_keep, kept, keep, n_keep);
    frcnn_arena_reset(scratch, mark);
    return FRCNN_OK;
}

frcnn_status frcnn_nms(frcnn_ctx *ctx, frcnn_arena *scratch, const float *boxes, const float *scores, size_t n,
                       float iou_threshold, size_t max_keep, uint32_t *keep, size_t *n_keep)
{
    return frcnn_nms_conv(ctx, scratch, FRCNN_BOXES_INCLUSIVE, boxes, scores, n, iou_threshold, max_keep, keep,
                          n_keep);
}
