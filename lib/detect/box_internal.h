/* Internal box helpers shared by the detection files (box, nms, anchor targets, proposals, RoI targets): the
 * single-pair IoU every IoU in the library is computed with, a stable descending argsort, and greedy NMS over an
 * already ordered candidate list. Never installed. */
#ifndef FRCNN_BOX_INTERNAL_H
#define FRCNN_BOX_INTERNAL_H

#include "internal.h"

/* The pixel offset of a box convention: a box's width is x2 - x1 + off (1 inclusive, 0 continuous). */
static inline float frcnn__box_offset(frcnn_box_convention conv)
{
    return conv == FRCNN_BOXES_CONTINUOUS ? 0.0f : 1.0f;
}

/* The area of one box, (x2 - x1 + off) (y2 - y1 + off), in float (off from frcnn__box_offset). Negative or
 * zero for degenerate boxes, NaN when a coordinate is NaN. */
static inline float frcnn__box_area(const float *b, float off)
{
    return (b[2] - b[0] + off) * (b[3] - b[1] + off);
}

/* The IoU of two boxes given their coordinates and areas (frcnn__box_area), with py-faster-rcnn's arithmetic
 * (utils/cython_bbox.pyx bbox_overlaps, nms/py_cpu_nms.py) in float; off 0 gives torchvision's box_iou:
 *   iw = min(x2) - max(x1) + off, ih likewise; inter = iw * ih; union = (area_a + area_b) - inter
 *   IoU = inter / union when iw > 0, ih > 0 and union > 0, else 0.
 * Every IoU in the library goes through this one expression, so a fast loop and a naive one agree bit for bit.
 * Symmetric in a and b bit for bit. A NaN coordinate makes its area NaN and the result 0. Written without
 * branches so that loops over it vectorise. */
static inline float frcnn__iou_coords(float ax1, float ay1, float ax2, float ay2, float a_area, float bx1,
                                      float by1, float bx2, float by2, float b_area, float off)
{
    float xx1 = ax1 > bx1 ? ax1 : bx1;
    float yy1 = ay1 > by1 ? ay1 : by1;
    float xx2 = ax2 < bx2 ? ax2 : bx2;
    float yy2 = ay2 < by2 ? ay2 : by2;
    float iw = xx2 - xx1 + off;
    float ih = yy2 - yy1 + off;
    float inter = iw * ih;
    float uni = (a_area + b_area) - inter;
    float iou = inter / uni;
    return ((iw > 0.0f) & (ih > 0.0f) & (uni > 0.0f)) ? iou : 0.0f;
}

#if defined(__SSE2__)
#include <emmintrin.h>

/* frcnn__iou_coords on four lanes with SSE2, bit for bit: _mm_max_ps(a, b) is (a > b ? a : b) and _mm_min_ps(a,
 * b) is (a < b ? a : b), NaN included; the arithmetic is the same IEEE single-precision operations in the same
 * order; the and-mask gives +0.0 where the scalar code returns 0.0f. (The compiler does not vectorise the scalar
 * expression itself: under the default -ftrapping-math it will not if-convert the comparisons.) */
static inline __m128 frcnn__iou_sse2(__m128 ax1, __m128 ay1, __m128 ax2, __m128 ay2, __m128 a_area, __m128 bx1,
                                     __m128 by1, __m128 bx2, __m128 by2, __m128 b_area, __m128 off)
{
    const __m128 zero = _mm_setzero_ps();
    __m128 iw = _mm_add_ps(_mm_sub_ps(_mm_min_ps(ax2, bx2), _mm_max_ps(ax1, bx1)), off);
    __m128 ih = _mm_add_ps(_mm_sub_ps(_mm_min_ps(ay2, by2), _mm_max_ps(ay1, by1)), off);
    __m128 inter = _mm_mul_ps(iw, ih);
    __m128 uni = _mm_sub_ps(_mm_add_ps(a_area, b_area), inter);
    __m128 iou = _mm_div_ps(inter, uni);
    __m128 valid = _mm_and_ps(_mm_and_ps(_mm_cmpgt_ps(iw, zero), _mm_cmpgt_ps(ih, zero)), _mm_cmpgt_ps(uni, zero));
    return _mm_and_ps(valid, iou);
}
#endif

/* The IoU of one pair of boxes a[4], b[4] (x1, y1, x2, y2) with pixel offset off; the same value as
 * frcnn_box_iou_conv gives. */
float frcnn__box_iou1(const float *a, const float *b, float off);

/* FRCNN_OK for a known convention, else FRCNN_ERR_INVALID_ARG with a message naming `who`. */
frcnn_status frcnn__check_box_convention(frcnn_ctx *ctx, const char *who, frcnn_box_convention conv);

/* Stable argsort by descending score: order[0..n) receives the indices 0..n-1 sorted so that scores decrease,
 * equal scores (-0 and +0 are equal) keeping ascending index order. tmp is scratch of n uint32. scores must not
 * hold NaN (check first; with NaN the call still terminates but the order is unspecified). n <= UINT32_MAX. */
void frcnn__argsort_desc(const float *scores, size_t n, uint32_t *order, uint32_t *tmp);

/* The floats of scratch frcnn__nms_ordered needs for up to `cap` kept boxes (5 arrays of cap floats, each padded
 * to a 64-byte multiple), or 0 when that overflows size_t. */
size_t frcnn__nms_kept_floats(size_t cap);

/* Greedy NMS over candidates taken in the given order: boxes (any count, 4 floats each), order[0..n) indices into
 * boxes, best first. A candidate is kept unless its IoU (frcnn__iou_coords with pixel offset off) with an already
 * kept box is > iou_threshold; stops after max_keep kept (0 = no limit). keep receives the kept box indices
 * (values from order) in order; *n_keep their count. kept is scratch of
 * frcnn__nms_kept_floats(min(n, max_keep or n)) floats, 64-byte aligned. Never fails. */
void frcnn__nms_ordered(const float *boxes, const uint32_t *order, size_t n, float iou_threshold, float off,
                        size_t max_keep, float *kept, uint32_t *keep, size_t *n_keep);
/* The same with the vector width limited, for the tests: 16 (AVX when the CPU has it, else SSE2), 8 (SSE2 at
 * most), 1 (scalar only). Every width gives the same result. */
void frcnn__nms_ordered_width(const float *boxes, const uint32_t *order, size_t n, float iou_threshold, float off,
                              size_t max_keep, float *kept, uint32_t *keep, size_t *n_keep, int simd_width);

#endif /* FRCNN_BOX_INTERNAL_H */
