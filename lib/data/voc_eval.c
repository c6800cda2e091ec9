/* Pascal VOC detection evaluation: collects the ground truth and the detections of every image, computes each
 * class's average precision the way py-faster-rcnn's lib/datasets/voc_eval.py does (matching, 11-point and area
 * AP), and writes VOC's comp4 result files. Everything is computed in double; nothing depends on the order images
 * were given in except where the API says so (score ties: image index, then order added). */
#include "internal.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* voc_eval.py's ovthresh: a detection matches when its best IoU is strictly greater. */
#define MIN_OVERLAP 0.5

/* A detection as added. Its index in the array is the order it was added: the last tie-break of the ranking. */
typedef struct det_rec {
    float x1, y1, x2, y2, score;
    int32_t label;
    size_t image;
} det_rec;

/* The ground truth of one image: objects [begin, begin + count) of the eval's pool. */
typedef struct image_truth {
    size_t begin, count;
    bool set;
} image_truth;

struct frcnn_voc_eval {
    frcnn_ctx *ctx;
    int num_classes;
    size_t n_images;
    image_truth *images; /* n_images */
    frcnn_object *gt;    /* every image's objects, difficult ones included, in the order set */
    size_t n_gt, cap_gt;
    det_rec *dets;
    size_t n_dets, cap_dets;
};

/* ----- memory ------------------------------------------------------------------------------------------------ */

/* An array of n elements of elem bytes from the context (at least one element, so no zero-sized request) into
 * *out; *bytes receives the size to free it with. FRCNN_ERR_OVERFLOW or FRCNN_ERR_NO_MEMORY with a message. */
static frcnn_status alloc_array(frcnn_ctx *ctx, size_t n, size_t elem, void **out, size_t *bytes, const char *what)
{
    *out = NULL;
    if (!frcnn__mul_size(n ? n : 1, elem, bytes))
        return frcnn__error(ctx, FRCNN_ERR_OVERFLOW, "voc_eval: %zu %s overflow the address space", n, what);
    *out = frcnn__alloc(ctx, *bytes);
    if (!*out)
        return frcnn__error(ctx, FRCNN_ERR_NO_MEMORY, "voc_eval: out of memory for %zu %s (%zu bytes)", n, what,
                            *bytes);
    return FRCNN_OK;
}

/* Makes room for `extra` more elements after `used` in *buf (capacity *cap), doubling the capacity. On failure
 * *buf and *cap are unchanged. */
static frcnn_status grow(frcnn_ctx *ctx, void **buf, size_t *cap, size_t used, size_t extra, size_t elem,
                         const char *what)
{
    size_t need, new_cap = *cap ? *cap : 64, bytes;
    if (!frcnn__add_size(used, extra, &need))
        return frcnn__error(ctx, FRCNN_ERR_OVERFLOW, "voc_eval: %zu + %zu %s overflow", used, extra, what);
    if (need <= *cap)
        return FRCNN_OK;
    while (new_cap < need)
        if (!frcnn__mul_size(new_cap, 2, &new_cap))
            new_cap = need;
    void *p;
    frcnn_status st = alloc_array(ctx, new_cap, elem, &p, &bytes, what);
    if (st != FRCNN_OK)
        return st;
    if (used)
        memcpy(p, *buf, used * elem);
    frcnn__free(ctx, *buf, *cap * elem);
    *buf = p;
    *cap = new_cap;
    return FRCNN_OK;
}

/* ----- create, free, input ----------------------------------------------------------------------------------- */

frcnn_status frcnn_voc_eval_create(frcnn_ctx *ctx, int num_classes, size_t n_images, frcnn_voc_eval **out)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    if (!out)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "voc_eval_create: out is NULL");
    *out = NULL;
    if (num_classes < 2)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG,
                            "voc_eval_create: num_classes %d, need at least 2 (background and one class)",
                            num_classes);
    if (n_images == 0)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "voc_eval_create: n_images is 0");
    size_t bytes;
    void *e_mem, *images;
    frcnn_status st = alloc_array(ctx, 1, sizeof(frcnn_voc_eval), &e_mem, &bytes, "evaluations");
    if (st != FRCNN_OK)
        return st;
    st = alloc_array(ctx, n_images, sizeof(image_truth), &images, &bytes, "images");
    if (st != FRCNN_OK) {
        frcnn__free(ctx, e_mem, sizeof(frcnn_voc_eval));
        return st;
    }
    memset(images, 0, bytes);
    frcnn_voc_eval *e = e_mem;
    *e = (frcnn_voc_eval){.ctx = ctx, .num_classes = num_classes, .n_images = n_images, .images = images};
    *out = e;
    return FRCNN_OK;
}

void frcnn_voc_eval_free(frcnn_voc_eval *eval)
{
    if (!eval)
        return;
    frcnn_ctx *ctx = eval->ctx;
    frcnn__free(ctx, eval->dets, eval->cap_dets * sizeof *eval->dets);
    frcnn__free(ctx, eval->gt, eval->cap_gt * sizeof *eval->gt);
    frcnn__free(ctx, eval->images, eval->n_images * sizeof *eval->images);
    frcnn__free(ctx, eval, sizeof *eval);
}

static bool box_finite(float x1, float y1, float x2, float y2)
{
    return isfinite(x1) && isfinite(y1) && isfinite(x2) && isfinite(y2);
}

frcnn_status frcnn_voc_eval_set_truth(frcnn_voc_eval *eval, size_t image, const frcnn_object *objects, size_t n)
{
    if (!eval)
        return FRCNN_ERR_INVALID_ARG;
    frcnn_ctx *ctx = eval->ctx;
    if (image >= eval->n_images)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "voc_eval_set_truth: image %zu out of range (%zu images)",
                            image, eval->n_images);
    if (eval->images[image].set)
        return frcnn__error(ctx, FRCNN_ERR_STATE, "voc_eval_set_truth: the ground truth of image %zu is already set",
                            image);
    if (n > 0 && !objects)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "voc_eval_set_truth: objects is NULL with n = %zu", n);
    for (size_t i = 0; i < n; i++) {
        const frcnn_object *o = &objects[i];
        if (o->label < 1 || o->label >= eval->num_classes)
            return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG,
                                "voc_eval_set_truth: image %zu, object %zu: label %d outside [1, %d)", image, i,
                                (int)o->label, eval->num_classes);
        if (!box_finite(o->x1, o->y1, o->x2, o->y2))
            return frcnn__error(ctx, FRCNN_ERR_NOT_FINITE,
                                "voc_eval_set_truth: image %zu, object %zu: box (%g, %g, %g, %g) is not finite",
                                image, i, (double)o->x1, (double)o->y1, (double)o->x2, (double)o->y2);
    }
    void *buf = eval->gt;
    frcnn_status st = grow(ctx, &buf, &eval->cap_gt, eval->n_gt, n, sizeof *eval->gt, "ground-truth objects");
    if (st != FRCNN_OK)
        return st;
    eval->gt = buf;
    if (n)
        memcpy(eval->gt + eval->n_gt, objects, n * sizeof *objects);
    eval->images[image] = (image_truth){eval->n_gt, n, true};
    eval->n_gt += n;
    return FRCNN_OK;
}

frcnn_status frcnn_voc_eval_add(frcnn_voc_eval *eval, size_t image, const frcnn_detection *dets, size_t n)
{
    if (!eval)
        return FRCNN_ERR_INVALID_ARG;
    frcnn_ctx *ctx = eval->ctx;
    if (image >= eval->n_images)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "voc_eval_add: image %zu out of range (%zu images)", image,
                            eval->n_images);
    if (n > 0 && !dets)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "voc_eval_add: dets is NULL with n = %zu", n);
    /* All are checked before any is added, so a failed call adds nothing. */
    for (size_t i = 0; i < n; i++) {
        const frcnn_detection *d = &dets[i];
        if (d->label < 1 || d->label >= eval->num_classes)
            return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG,
                                "voc_eval_add: image %zu, detection %zu: label %d outside [1, %d)", image, i,
                                (int)d->label, eval->num_classes);
        if (!box_finite(d->x1, d->y1, d->x2, d->y2) || !isfinite(d->score))
            return frcnn__error(ctx, FRCNN_ERR_NOT_FINITE,
                                "voc_eval_add: image %zu, detection %zu: box (%g, %g, %g, %g) score %g is not finite",
                                image, i, (double)d->x1, (double)d->y1, (double)d->x2, (double)d->y2,
                                (double)d->score);
    }
    void *buf = eval->dets;
    frcnn_status st = grow(ctx, &buf, &eval->cap_dets, eval->n_dets, n, sizeof *eval->dets, "detections");
    if (st != FRCNN_OK)
        return st;
    eval->dets = buf;
    for (size_t i = 0; i < n; i++)
        eval->dets[eval->n_dets++] =
            (det_rec){dets[i].x1, dets[i].y1, dets[i].x2, dets[i].y2, dets[i].score, dets[i].label, image};
    return FRCNN_OK;
}

/* ----- ordering ---------------------------------------------------------------------------------------------- */

typedef bool (*before_fn)(const det_rec *d, size_t a, size_t b);

/* The ranking: score descending (voc_eval.py: argsort(-confidence)), then image index, then order added. A total
 * order, so the result never depends on the sort algorithm. py-faster-rcnn ranks the scores it reads back from the
 * comp4 files, rounded to 3 decimals, with numpy's unstable quicksort; ranking the exact scores can move an AP in
 * the 4th decimal relative to it, and makes the result reproducible. */
static bool ranks_before(const det_rec *d, size_t a, size_t b)
{
    if (d[a].score != d[b].score)
        return d[a].score > d[b].score;
    if (d[a].image != d[b].image)
        return d[a].image < d[b].image;
    return a < b;
}

/* The order of the result files: class, then image index, then order added. */
static bool file_before(const det_rec *d, size_t a, size_t b)
{
    if (d[a].label != d[b].label)
        return d[a].label < d[b].label;
    if (d[a].image != d[b].image)
        return d[a].image < d[b].image;
    return a < b;
}

/* Bottom-up merge sort of the indices a[0..n) with tmp[0..n) as scratch: O(n log n) in the worst case. */
static void sort_indices(const det_rec *d, size_t *a, size_t *tmp, size_t n, before_fn before)
{
    size_t *src = a, *dst = tmp;
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n, hi = mid + width < n ? mid + width : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                dst[k++] = before(d, src[j], src[i]) ? src[j++] : src[i++];
            while (i < mid)
                dst[k++] = src[i++];
            while (j < hi)
                dst[k++] = src[j++];
        }
        size_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != a)
        memcpy(a, src, n * sizeof *a);
}

/* ----- AP ---------------------------------------------------------------------------------------------------- */

/* IoU as voc_eval.py computes it: inclusive pixels (+1), in double. 0 for degenerate boxes (union <= 0). */
static double overlap(const det_rec *d, const frcnn_object *g)
{
    double dx1 = d->x1, dy1 = d->y1, dx2 = d->x2, dy2 = d->y2;
    double gx1 = g->x1, gy1 = g->y1, gx2 = g->x2, gy2 = g->y2;
    double iw = fmax(fmin(dx2, gx2) - fmax(dx1, gx1) + 1.0, 0.0);
    double ih = fmax(fmin(dy2, gy2) - fmax(dy1, gy1) + 1.0, 0.0);
    double inters = iw * ih;
    double uni = (dx2 - dx1 + 1.0) * (dy2 - dy1 + 1.0) + (gx2 - gx1 + 1.0) * (gy2 - gy1 + 1.0) - inters;
    return uni > 0.0 ? inters / uni : 0.0;
}

/* voc_ap(use_07_metric=True): the mean over t of the best precision at recall >= t (0 when none). The thresholds
 * are numpy's arange(0., 1.1, 0.1), i.e. i * 0.1: the fourth is 0.30000000000000004, so a recall of exactly 3/10
 * does not reach it. Each term is added as p / 11, as voc_ap does. */
static double ap_11_point(const double *rec, const double *prec, size_t n)
{
    double ap = 0.0;
    for (int i = 0; i <= 10; i++) {
        double t = i * 0.1, p = 0.0;
        for (size_t k = 0; k < n; k++)
            if (rec[k] >= t && prec[k] > p)
                p = prec[k];
        ap += p / 11.0;
    }
    return ap;
}

/* voc_ap(use_07_metric=False): mrec = [0, rec, 1], mpre = [0, prec, 0] (rec and prec are passed with room for
 * the sentinels: the values at [1, n]); the precision envelope made non-increasing from the right; then
 * sum (mrec[i + 1] - mrec[i]) * mpre[i + 1] where the recall changes. */
static double ap_area(double *mrec, double *mpre, size_t n)
{
    mrec[0] = 0.0;
    mrec[n + 1] = 1.0;
    mpre[0] = 0.0;
    mpre[n + 1] = 0.0;
    for (size_t i = n + 1; i > 0; i--)
        mpre[i - 1] = fmax(mpre[i - 1], mpre[i]);
    double ap = 0.0;
    for (size_t i = 0; i <= n; i++)
        if (mrec[i + 1] != mrec[i])
            ap += (mrec[i + 1] - mrec[i]) * mpre[i + 1];
    return ap;
}

/* Scratch of one compute call, sized for the largest class. */
typedef struct workspace {
    size_t *order, *tmp;    /* n_dets: detection indices by class, then ranked within each class */
    size_t *class_begin;    /* num_classes + 1: class c's detections are order[class_begin[c] .. [c + 1]) */
    unsigned char *matched; /* n_gt: voc_eval.py's R['det'] */
    double *rec, *prec;     /* largest class + 2 (sentinels of ap_area) */
    size_t bytes[6];
} workspace;

static void workspace_free(frcnn_ctx *ctx, workspace *w)
{
    void *p[6] = {w->order, w->tmp, w->class_begin, w->matched, w->rec, w->prec};
    for (int i = 0; i < 6; i++)
        frcnn__free(ctx, p[i], w->bytes[i]);
}

/* Fills class_begin and order: detections grouped by class (counting sort), each group in order added. Returns
 * the size of the largest group. */
static size_t group_by_class(const frcnn_voc_eval *eval, workspace *w)
{
    size_t *begin = w->class_begin, largest = 0;
    memset(begin, 0, ((size_t)eval->num_classes + 1) * sizeof *begin);
    for (size_t i = 0; i < eval->n_dets; i++)
        begin[eval->dets[i].label + 1]++;
    for (int c = 0; c < eval->num_classes; c++) {
        if (begin[c + 1] > largest)
            largest = begin[c + 1];
        begin[c + 1] += begin[c];
    }
    /* tmp as the fill cursor of each class */
    size_t *cursor = w->tmp;
    memcpy(cursor, begin, (size_t)eval->num_classes * sizeof *cursor);
    for (size_t i = 0; i < eval->n_dets; i++)
        w->order[cursor[eval->dets[i].label]++] = i;
    return largest;
}

/* Allocates the workspace and groups the detections by class. */
static frcnn_status workspace_alloc(frcnn_voc_eval *eval, workspace *w)
{
    frcnn_ctx *ctx = eval->ctx;
    size_t n_cls = (size_t)eval->num_classes + 1, n_tmp = eval->n_dets > n_cls ? eval->n_dets : n_cls;
    void *p[6] = {NULL};
    frcnn_status st;
    memset(w, 0, sizeof *w);
    if ((st = alloc_array(ctx, eval->n_dets, sizeof(size_t), &p[0], &w->bytes[0], "detections")) != FRCNN_OK ||
        (st = alloc_array(ctx, n_tmp, sizeof(size_t), &p[1], &w->bytes[1], "detections")) != FRCNN_OK ||
        (st = alloc_array(ctx, n_cls, sizeof(size_t), &p[2], &w->bytes[2], "classes")) != FRCNN_OK ||
        (st = alloc_array(ctx, eval->n_gt, 1, &p[3], &w->bytes[3], "ground-truth objects")) != FRCNN_OK)
        goto fail;
    w->order = p[0];
    w->tmp = p[1];
    w->class_begin = p[2];
    w->matched = p[3];
    size_t n_pr = group_by_class(eval, w) + 2; /* the largest class, <= n_dets: cannot overflow */
    if ((st = alloc_array(ctx, n_pr, sizeof(double), &p[4], &w->bytes[4], "recall values")) != FRCNN_OK ||
        (st = alloc_array(ctx, n_pr, sizeof(double), &p[5], &w->bytes[5], "precision values")) != FRCNN_OK)
        goto fail;
    w->rec = p[4];
    w->prec = p[5];
    return FRCNN_OK;
fail:
    for (int i = 0; i < 6; i++)
        frcnn__free(ctx, p[i], w->bytes[i]);
    memset(w, 0, sizeof *w);
    return st;
}

/* The AP of class c from its ranked detections ranked[0..n), or NaN without non-difficult objects. */
static double class_ap(const frcnn_voc_eval *eval, int32_t c, const size_t *ranked, size_t n, workspace *w,
                       bool use_07_metric)
{
    size_t npos = 0; /* voc_eval.py: npos = sum(~difficult) */
    for (size_t j = 0; j < eval->n_gt; j++)
        npos += eval->gt[j].label == c && !eval->gt[j].difficult;
    if (npos == 0)
        return NAN;
    double tp = 0.0, fp = 0.0;
    double *rec = w->rec + 1, *prec = w->prec + 1; /* [0] is ap_area's sentinel */
    for (size_t k = 0; k < n; k++) {
        const det_rec *d = &eval->dets[ranked[k]];
        const image_truth *im = &eval->images[d->image];
        /* voc_eval.py: the GT of the class with the highest IoU (the first on ties, as np.argmax), matched or
         * not; ovmax = -inf when the image has none. */
        double ovmax = -INFINITY;
        size_t jmax = 0;
        for (size_t j = im->begin; j < im->begin + im->count; j++)
            if (eval->gt[j].label == c) {
                double ov = overlap(d, &eval->gt[j]);
                if (ov > ovmax) {
                    ovmax = ov;
                    jmax = j;
                }
            }
        if (ovmax > MIN_OVERLAP) {
            if (!eval->gt[jmax].difficult) { /* a difficult match counts neither way */
                if (!w->matched[jmax]) {
                    tp += 1.0;
                    w->matched[jmax] = 1;
                } else {
                    fp += 1.0; /* a second detection of the same object */
                }
            }
        } else {
            fp += 1.0;
        }
        /* voc_eval.py: rec = tp / npos; prec = tp / maximum(tp + fp, eps) on the cumulative sums */
        rec[k] = tp / (double)npos;
        prec[k] = tp / fmax(tp + fp, DBL_EPSILON);
    }
    return use_07_metric ? ap_11_point(rec, prec, n) : ap_area(w->rec, w->prec, n);
}

frcnn_status frcnn_voc_eval_compute(frcnn_voc_eval *eval, bool use_07_metric, float *ap, float *map)
{
    if (!eval)
        return FRCNN_ERR_INVALID_ARG;
    frcnn_ctx *ctx = eval->ctx;
    if (!ap || !map)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "voc_eval_compute: %s is NULL", !ap ? "ap" : "map");
    for (size_t i = 0; i < eval->n_images; i++)
        if (!eval->images[i].set)
            return frcnn__error(ctx, FRCNN_ERR_STATE,
                                "voc_eval_compute: the ground truth of image %zu was never set "
                                "(frcnn_voc_eval_set_truth, with n = 0 for an image without objects)",
                                i);
    workspace w;
    frcnn_status st = workspace_alloc(eval, &w);
    if (st != FRCNN_OK)
        return st;
    memset(w.matched, 0, eval->n_gt);
    double sum = 0.0;
    int counted = 0;
    ap[0] = NAN;
    for (int32_t c = 1; c < eval->num_classes; c++) {
        size_t *ranked = w.order + w.class_begin[c], n = w.class_begin[c + 1] - w.class_begin[c];
        sort_indices(eval->dets, ranked, w.tmp, n, ranks_before);
        double a = class_ap(eval, c, ranked, n, &w, use_07_metric);
        ap[c] = (float)a;
        if (!isnan(a)) {
            sum += a;
            counted++;
        }
    }
    *map = counted ? (float)(sum / counted) : NAN;
    workspace_free(ctx, &w);
    return FRCNN_OK;
}

/* ----- result files ------------------------------------------------------------------------------------------ */

/* A name usable inside a file name: non-empty, no '/'. */
static bool name_ok(const char *s)
{
    return s && s[0] && !strchr(s, '/');
}

/* Writes order[0..n) (detections of one class) to dir/comp4_det_<split>_<cls>.txt through a .tmp file that is
 * flushed, synced and renamed, so the final name only ever holds a complete file. */
static frcnn_status write_class_file(frcnn_voc_eval *eval, const char *dir, const char *split, const char *cls,
                                     const char *const *image_ids, const size_t *order, size_t n)
{
    frcnn_ctx *ctx = eval->ctx;
    /* lengths of strings in memory: the sum cannot overflow */
    size_t len = strlen(dir) + strlen(split) + strlen(cls) + sizeof "/comp4_det__.txt.tmp", bytes;
    void *mem;
    frcnn_status st = alloc_array(ctx, 2 * len, 1, &mem, &bytes, "path bytes");
    if (st != FRCNN_OK)
        return st;
    char *path = mem, *tmp = path + len;
    snprintf(path, len, "%s/comp4_det_%s_%s.txt", dir, split, cls);
    snprintf(tmp, len, "%s/comp4_det_%s_%s.txt.tmp", dir, split, cls);

    const char *what = "creating";
    int err = 0;
    FILE *f = fopen(tmp, "w");
    if (!f) {
        err = errno;
        goto fail;
    }
    what = "writing";
    for (size_t k = 0; k < n; k++) {
        const det_rec *d = &eval->dets[order[k]];
        /* pascal_voc.py _write_voc_results_file: VOC's 1-based pixels, score to 3 decimals, coordinates to 1 */
        if (fprintf(f, "%s %.3f %.1f %.1f %.1f %.1f\n", image_ids[d->image], (double)d->score,
                    (double)d->x1 + 1.0, (double)d->y1 + 1.0, (double)d->x2 + 1.0, (double)d->y2 + 1.0) < 0) {
            err = errno;
            goto fail;
        }
    }
    if (fflush(f) != 0) {
        err = errno;
        goto fail;
    }
    what = "syncing";
    if (fsync(fileno(f)) != 0 && errno != EINVAL) { /* EINVAL: a file that cannot be synced */
        err = errno;
        goto fail;
    }
    what = "closing";
    int rc = fclose(f);
    f = NULL;
    if (rc != 0) {
        err = errno;
        goto fail;
    }
    what = "renaming the .tmp file to";
    if (rename(tmp, path) != 0) {
        err = errno;
        goto fail;
    }
    frcnn__free(ctx, mem, bytes);
    return FRCNN_OK;
fail:
    frcnn__error(ctx, FRCNN_ERR_IO, "voc_eval_write: %s '%s' failed: %s", what, path, strerror(err ? err : EIO));
    if (f)
        fclose(f);
    remove(tmp);
    frcnn__free(ctx, mem, bytes);
    return FRCNN_ERR_IO;
}

frcnn_status frcnn_voc_eval_write(frcnn_voc_eval *eval, const char *dir, const char *split,
                                  const char *const *image_ids, const char *const *class_names)
{
    if (!eval)
        return FRCNN_ERR_INVALID_ARG;
    frcnn_ctx *ctx = eval->ctx;
    if (!dir || !dir[0])
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "voc_eval_write: dir is %s", dir ? "empty" : "NULL");
    if (!name_ok(split))
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "voc_eval_write: split '%s' is not a file name part",
                            split ? split : "(null)");
    if (!image_ids || !class_names)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "voc_eval_write: %s is NULL",
                            !image_ids ? "image_ids" : "class_names");
    for (size_t i = 0; i < eval->n_images; i++)
        if (!image_ids[i] || !image_ids[i][0])
            return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "voc_eval_write: image_ids[%zu] is %s", i,
                                image_ids[i] ? "empty" : "NULL");
    for (int c = 1; c < eval->num_classes; c++)
        if (!name_ok(class_names[c]))
            return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG,
                                "voc_eval_write: class_names[%d] '%s' is not a file name part", c,
                                class_names[c] ? class_names[c] : "(null)");

    size_t bytes_order = 0, bytes_tmp = 0;
    void *order_mem = NULL, *tmp_mem = NULL;
    frcnn_status st = alloc_array(ctx, eval->n_dets, sizeof(size_t), &order_mem, &bytes_order, "detections");
    if (st == FRCNN_OK)
        st = alloc_array(ctx, eval->n_dets, sizeof(size_t), &tmp_mem, &bytes_tmp, "detections");
    if (st != FRCNN_OK) {
        frcnn__free(ctx, order_mem, bytes_order);
        return st;
    }
    size_t *order = order_mem, *tmp = tmp_mem;
    for (size_t i = 0; i < eval->n_dets; i++)
        order[i] = i;
    sort_indices(eval->dets, order, tmp, eval->n_dets, file_before);
    size_t k = 0;
    for (int32_t c = 1; c < eval->num_classes && st == FRCNN_OK; c++) {
        size_t first = k;
        while (k < eval->n_dets && eval->dets[order[k]].label == c)
            k++;
        st = write_class_file(eval, dir, split, class_names[c], image_ids, order + first, k - first);
    }
    frcnn__free(ctx, order, bytes_order);
    frcnn__free(ctx, tmp, bytes_tmp);
    return st;
}
