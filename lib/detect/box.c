/* Box arithmetic in py-faster-rcnn's inclusive "+1" pixel convention or torchvision's continuous one: IoU
 * matrices (utils/cython_bbox.pyx bbox_overlaps, torchvision.ops.box_iou), regression targets and their inverse
 * (fast_rcnn/bbox_transform.py bbox_transform, bbox_transform_inv; torchvision's BoxCoder), clipping
 * (clip_boxes), and the stable descending argsort the detection layers share. Arithmetic is in float, as numpy
 * and torch do on float32 arrays. */
#include "box_internal.h"

#include <math.h>
#include <string.h>

/* Decoded log-scale deltas are clamped at log(1000 / 16) before exp, so a wild prediction gives a huge but finite
 * box instead of inf (Detectron's BBOX_XFORM_CLIP; py-faster-rcnn itself does not clamp). */
#define BOX_DELTA_CLIP 4.135166556742356f

/* Each thread takes at least this many IoU pairs (about 0.2 ms vectorised; a thread start costs tens of us). */
#define IOU_PAIRS_PER_THREAD 262144

const char *frcnn_box_convention_name(frcnn_box_convention conv)
{
    switch (conv) {
    case FRCNN_BOXES_INCLUSIVE: return "inclusive";
    case FRCNN_BOXES_CONTINUOUS: return "continuous";
    }
    return NULL;
}

frcnn_status frcnn__check_box_convention(frcnn_ctx *ctx, const char *who, frcnn_box_convention conv)
{
    if (frcnn_box_convention_name(conv))
        return FRCNN_OK;
    return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "%s: box convention %d, expected 0 (inclusive) or 1 (continuous)",
                        who, (int)conv);
}

float frcnn__box_iou1(const float *a, const float *b, float off)
{
    return frcnn__iou_coords(a[0], a[1], a[2], a[3], frcnn__box_area(a, off), b[0], b[1], b[2], b[3],
                             frcnn__box_area(b, off), off);
}

typedef struct iou_job {
    const float *a, *b; /* (na, 4), (nb, 4) */
    size_t nb;
    float off;  /* frcnn__box_offset */
    float *iou; /* (na, nb) */
} iou_job;

/* Columns are handled IOU_TILE at a time, their boxes copied into structure-of-arrays form on the stack. */
#define IOU_TILE 256

/* Rows [begin, end) of the IoU matrix; each row is written only by the thread that owns it. With SSE2 four
 * columns at a time (frcnn__iou_sse2: the same bits as the scalar expression), the rest one by one. */
static void iou_range(void *arg, size_t begin, size_t end)
{
    const iou_job *job = arg;
    size_t nb = job->nb;
    float off = job->off;
    float tx1[IOU_TILE], ty1[IOU_TILE], tx2[IOU_TILE], ty2[IOU_TILE], tarea[IOU_TILE];
    for (size_t k0 = 0; k0 < nb; k0 += IOU_TILE) {
        size_t kn = nb - k0 < IOU_TILE ? nb - k0 : IOU_TILE;
        for (size_t k = 0; k < kn; k++) {
            const float *q = job->b + 4 * (k0 + k);
            tx1[k] = q[0];
            ty1[k] = q[1];
            tx2[k] = q[2];
            ty2[k] = q[3];
            tarea[k] = frcnn__box_area(q, off);
        }
        for (size_t i = begin; i < end; i++) {
            const float *a = job->a + 4 * i;
            float ax1 = a[0], ay1 = a[1], ax2 = a[2], ay2 = a[3], a_area = frcnn__box_area(a, off);
            float *row = job->iou + i * nb + k0;
            size_t k = 0;
#if defined(__SSE2__)
            __m128 vx1 = _mm_set1_ps(ax1), vy1 = _mm_set1_ps(ay1), vx2 = _mm_set1_ps(ax2), vy2 = _mm_set1_ps(ay2);
            __m128 varea = _mm_set1_ps(a_area), voff = _mm_set1_ps(off);
            for (; k + 4 <= kn; k += 4)
                _mm_storeu_ps(row + k, frcnn__iou_sse2(vx1, vy1, vx2, vy2, varea, _mm_loadu_ps(tx1 + k),
                                                       _mm_loadu_ps(ty1 + k), _mm_loadu_ps(tx2 + k),
                                                       _mm_loadu_ps(ty2 + k), _mm_loadu_ps(tarea + k), voff));
#endif
            for (; k < kn; k++)
                row[k] = frcnn__iou_coords(ax1, ay1, ax2, ay2, a_area, tx1[k], ty1[k], tx2[k], ty2[k], tarea[k], off);
        }
    }
}

frcnn_status frcnn_box_iou_conv(frcnn_ctx *ctx, frcnn_box_convention conv, const float *a, size_t na,
                                const float *b, size_t nb, float *iou)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    frcnn_status st = frcnn__check_box_convention(ctx, "box_iou", conv);
    if (st != FRCNN_OK)
        return st;
    size_t cells, bytes;
    if (!frcnn__mul_size(na, nb, &cells) || !frcnn__mul_size(cells, sizeof(float), &bytes))
        return frcnn__error(ctx, FRCNN_ERR_OVERFLOW, "box_iou: a %zu x b %zu boxes overflows the IoU matrix", na,
                            nb);
    if (cells == 0)
        return FRCNN_OK;
    if (!a || !b || !iou)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "box_iou: %s is NULL", !a ? "a" : !b ? "b" : "iou");
    iou_job job = {a, b, nb, frcnn__box_offset(conv), iou};
    size_t rows_per_thread = IOU_PAIRS_PER_THREAD / nb + 1;
    frcnn__parallel_for(ctx, na, rows_per_thread, iou_range, &job);
    return FRCNN_OK;
}

frcnn_status frcnn_box_iou(frcnn_ctx *ctx, const float *a, size_t na, const float *b, size_t nb, float *iou)
{
    return frcnn_box_iou_conv(ctx, FRCNN_BOXES_INCLUSIVE, a, na, b, nb, iou);
}

/* Checks means (finite) and stds (finite, > 0); NULL stands for no normalisation. */
static frcnn_status check_norm(frcnn_ctx *ctx, const float means[4], const float stds[4])
{
    for (int k = 0; k < 4; k++) {
        if (means && !isfinite(means[k]))
            return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "box_encode: means[%d] is %g, expected finite", k,
                                (double)means[k]);
        if (stds && !(isfinite(stds[k]) && stds[k] > 0.0f))
            return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "box_encode: stds[%d] is %g, expected finite and > 0",
                                k, (double)stds[k]);
    }
    return FRCNN_OK;
}

frcnn_status frcnn_box_encode_conv(frcnn_ctx *ctx, frcnn_box_convention conv, const float *boxes,
                                   const float *targets, size_t n, const float means[4], const float stds[4],
                                   float *deltas)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    frcnn_status st = frcnn__check_box_convention(ctx, "box_encode", conv);
    if (st == FRCNN_OK)
        st = check_norm(ctx, means, stds);
    if (st != FRCNN_OK)
        return st;
    if (n == 0)
        return FRCNN_OK;
    if (!boxes || !targets || !deltas)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "box_encode: %s is NULL",
                            !boxes ? "boxes" : !targets ? "targets" : "deltas");
    const float off = frcnn__box_offset(conv);
    /* Validate every row before writing, so a failing call leaves deltas untouched. */
    for (size_t i = 0; i < n; i++) {
        const float *pair[2] = {boxes + 4 * i, targets + 4 * i};
        for (int s = 0; s < 2; s++) {
            const float *r = pair[s];
            float w = r[2] - r[0] + off, h = r[3] - r[1] + off;
            if (!(w > 0.0f && h > 0.0f && isfinite(w) && isfinite(h)))
                return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG,
                                    "box_encode: %s row %zu (%g, %g, %g, %g) has width %g, height %g; expected "
                                    "finite and > 0",
                                    s ? "targets" : "boxes", i, (double)r[0], (double)r[1], (double)r[2],
                                    (double)r[3], (double)w, (double)h);
        }
    }
    for (size_t i = 0; i < n; i++) {
        const float *e = boxes + 4 * i, *g = targets + 4 * i;
        float ew = e[2] - e[0] + off, eh = e[3] - e[1] + off;
        float ecx = e[0] + 0.5f * ew, ecy = e[1] + 0.5f * eh;
        float gw = g[2] - g[0] + off, gh = g[3] - g[1] + off;
        float gcx = g[0] + 0.5f * gw, gcy = g[1] + 0.5f * gh;
        float d[4] = {(gcx - ecx) / ew, (gcy - ecy) / eh, logf(gw / ew), logf(gh / eh)};
        for (int k = 0; k < 4; k++) {
            float v = d[k];
            if (means)
                v -= means[k];
            if (stds)
                v /= stds[k];
            deltas[4 * i + k] = v;
        }
    }
    return FRCNN_OK;
}

frcnn_status frcnn_box_encode(frcnn_ctx *ctx, const float *boxes, const float *targets, size_t n,
                              const float means[4], const float stds[4], float *deltas)
{
    return frcnn_box_encode_conv(ctx, FRCNN_BOXES_INCLUSIVE, boxes, targets, n, means, stds, deltas);
}

void frcnn_box_decode_conv(frcnn_box_convention conv, const float *boxes, const float *deltas, size_t n,
                           const float means[4], const float stds[4], float *out)
{
    if (!boxes || !deltas || !out)
        return;
    const float off = frcnn__box_offset(conv);
    for (size_t i = 0; i < n; i++) {
        /* Read the whole row before writing: out may alias deltas (or boxes). */
        const float *b = boxes + 4 * i, *dr = deltas + 4 * i;
        float d[4] = {dr[0], dr[1], dr[2], dr[3]};
        float w = b[2] - b[0] + off, h = b[3] - b[1] + off;
        float cx = b[0] + 0.5f * w, cy = b[1] + 0.5f * h;
        for (int k = 0; k < 4; k++) {
            if (stds)
                d[k] *= stds[k];
            if (means)
                d[k] += means[k];
        }
        if (d[2] > BOX_DELTA_CLIP)
            d[2] = BOX_DELTA_CLIP;
        if (d[3] > BOX_DELTA_CLIP)
            d[3] = BOX_DELTA_CLIP;
        float pcx = d[0] * w + cx, pcy = d[1] * h + cy;
        float pw = expf(d[2]) * w, ph = expf(d[3]) * h;
        /* x2 = cx + w/2 - 1 when inclusive, the exact inverse of the encoding (Detectron's correction):
         * py-faster-rcnn's bbox_transform_inv omits the -1 and returns every box one pixel too wide and high. */
        float *o = out + 4 * i;
        o[0] = pcx - 0.5f * pw;
        o[1] = pcy - 0.5f * ph;
        o[2] = pcx + 0.5f * pw - off;
        o[3] = pcy + 0.5f * ph - off;
    }
}

void frcnn_box_decode(const float *boxes, const float *deltas, size_t n, const float means[4], const float stds[4],
                      float *out)
{
    frcnn_box_decode_conv(FRCNN_BOXES_INCLUSIVE, boxes, deltas, n, means, stds, out);
}

/* min(v, hi) then max(., 0), as np.maximum(np.minimum(v, hi), 0): NaN stays NaN. */
static float clip1(float v, float hi)
{
    if (v > hi)
        v = hi;
    if (v < 0.0f)
        v = 0.0f;
    return v;
}

void frcnn_box_clip_conv(frcnn_box_convention conv, float *boxes, size_t n, float height, float width)
{
    if (!boxes)
        return;
    float xmax = width - frcnn__box_offset(conv), ymax = height - frcnn__box_offset(conv);
    for (size_t i = 0; i < n; i++) {
        float *b = boxes + 4 * i;
        b[0] = clip1(b[0], xmax);
        b[1] = clip1(b[1], ymax);
        b[2] = clip1(b[2], xmax);
        b[3] = clip1(b[3], ymax);
    }
}

void frcnn_box_clip(float *boxes, size_t n, float height, float width)
{
    frcnn_box_clip_conv(FRCNN_BOXES_INCLUSIVE, boxes, n, height, width);
}

/* ----- stable descending argsort ----------------------------------------------------------------------------- */

/* Below this count an insertion sort beats the four radix passes. */
#define SORT_SMALL 64

/* A key whose ascending unsigned order is the descending order of the score: the IEEE bits made monotonic
 * (negative values flipped whole, positive ones get the sign bit set), then inverted. -0 counts as +0. */
static uint32_t desc_key(float s)
{
    if (s == 0.0f)
        s = 0.0f;
    uint32_t u;
    memcpy(&u, &s, sizeof u);
    u ^= (u >> 31) ? 0xffffffffu : 0x80000000u;
    return ~u;
}

static void insertion_sort_desc(const float *scores, size_t n, uint32_t *order)
{
    /* An element moves left only past strictly smaller scores, so ties keep ascending index order. */
    for (size_t i = 0; i < n; i++) {
        float s = scores[i];
        size_t j = i;
        while (j > 0 && s > scores[order[j - 1]]) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = (uint32_t)i;
    }
}

/* An LSD radix sort, one byte of desc_key per pass, of indices that start in index order: every pass is stable,
 * so equal keys end in ascending index order. Keys are recomputed from the scores in each pass (the scores stay
 * in cache), so the only scratch is a second index buffer. Passes where all keys share the byte are skipped. */
void frcnn__argsort_desc(const float *scores, size_t n, uint32_t *order, uint32_t *tmp)
{
    if (n < SORT_SMALL) {
        insertion_sort_desc(scores, n, order);
        return;
    }
    size_t hist[4][256];
    memset(hist, 0, sizeof hist);
    for (size_t i = 0; i < n; i++) {
        uint32_t k = desc_key(scores[i]);
        order[i] = (uint32_t)i;
        for (int b = 0; b < 4; b++)
            hist[b][(k >> (8 * b)) & 0xff]++;
    }
    uint32_t first = desc_key(scores[0]), *src = order, *dst = tmp;
    for (int b = 0; b < 4; b++) {
        int shift = 8 * b;
        if (hist[b][(first >> shift) & 0xff] == n)
            continue;
        size_t pos[256], sum = 0;
        for (int v = 0; v < 256; v++) {
            pos[v] = sum;
            sum += hist[b][v];
        }
        for (size_t i = 0; i < n; i++) {
            uint32_t id = src[i];
            dst[pos[(desc_key(scores[id]) >> shift) & 0xff]++] = id;
        }
        uint32_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != order)
        memcpy(order, src, n * sizeof *order);
}
