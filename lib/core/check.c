/* Checked size arithmetic and the argument checks every kernel shares, each filling the context's message. */
#include "internal.h"

#include <math.h>
#include <stdio.h>

bool frcnn__mul_size(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a)
        return false;
    *out = a * b;
    return true;
}

bool frcnn__add_size(size_t a, size_t b, size_t *out)
{
    if (b > SIZE_MAX - a)
        return false;
    *out = a + b;
    return true;
}

frcnn_status frcnn__check_dims(frcnn_ctx *ctx, int ndim, const int64_t *dims, const char *name, size_t *numel)
{
    if (!dims)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "%s: dims is NULL", name);
    if (ndim < 1 || ndim > FRCNN_MAX_DIMS)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "%s: %d dimensions, expected 1 to %d", name, ndim,
                            FRCNN_MAX_DIMS);
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (dims[i] < 1 || dims[i] > INT32_MAX)
            return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "%s: dimension %d is %lld, expected 1 to %d", name, i,
                                (long long)dims[i], INT32_MAX);
        if (!frcnn__mul_size(n, (size_t)dims[i], &n))
            return frcnn__error(ctx, FRCNN_ERR_OVERFLOW, "%s: element count overflows", name);
    }
    size_t bytes;
    if (!frcnn__mul_size(n, sizeof(float), &bytes) || bytes > SIZE_MAX / 2)
        return frcnn__error(ctx, FRCNN_ERR_OVERFLOW, "%s: %zu elements do not fit in memory", name, n);
    if (numel)
        *numel = n;
    return FRCNN_OK;
}

void frcnn__shape_str(const frcnn_tensor *t, char *buf, size_t len)
{
    if (!t) {
        snprintf(buf, len, "(null)");
        return;
    }
    size_t used = 0;
    for (int i = 0; i < t->ndim && used < len; i++) {
        int k = snprintf(buf + used, len - used, "%s%lld", i ? ", " : "(", (long long)t->dims[i]);
        if (k < 0)
            break;
        used += (size_t)k;
    }
    if (used < len)
        snprintf(buf + used, len - used, ")");
}

frcnn_status frcnn__check_tensor(frcnn_ctx *ctx, const frcnn_tensor *t, const char *name, int ndim)
{
    if (!t)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "%s is NULL", name);
    if (ndim > 0 && t->ndim != ndim) {
        char s[96];
        frcnn__shape_str(t, s, sizeof s);
        return frcnn__error(ctx, FRCNN_ERR_SHAPE, "%s has shape %s, expected %d dimensions", name, s, ndim);
    }
    return FRCNN_OK;
}

frcnn_status frcnn__check_roi_batch(frcnn_ctx *ctx, const char *op, const float *row, int64_t i, int64_t n)
{
    float b = row[0];
    if (!isfinite(b) || b != floorf(b) || b < 0.0f || (double)b >= (double)n)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG,
                            "%s: rois row %lld has batch index %g, expected an integer in [0, %lld)", op,
                            (long long)i, (double)b, (long long)n);
    return FRCNN_OK;
}

size_t frcnn__first_index_outside(const int32_t *idx, size_t n, int32_t lo, int64_t hi)
{
    /* A branch-free scan first, which vectorises (a pooling layer's argmax has around a million entries), then the
     * search for the message. With hi above INT32_MAX the scan flags INT32_MAX, which the search clears. */
    const int32_t top = hi < INT32_MAX ? (int32_t)hi : INT32_MAX;
    unsigned bad = 0;
    for (size_t i = 0; i < n; i++)
        bad |= (unsigned)(idx[i] < lo) | (unsigned)(idx[i] >= top);
    for (size_t i = 0; bad && i < n; i++)
        if (idx[i] < lo || idx[i] >= hi)
            return i;
    return n;
}

frcnn_status frcnn__check_same_shape(frcnn_ctx *ctx, const frcnn_tensor *a, const char *a_name,
                                     const frcnn_tensor *b, const char *b_name)
{
    bool same = a->ndim == b->ndim;
    for (int i = 0; same && i < a->ndim; i++)
        same = a->dims[i] == b->dims[i];
    if (same)
        return FRCNN_OK;
    char sa[96], sb[96];
    frcnn__shape_str(a, sa, sizeof sa);
    frcnn__shape_str(b, sb, sizeof sb);
    return frcnn__error(ctx, FRCNN_ERR_SHAPE, "%s has shape %s but %s has shape %s", a_name, sa, b_name, sb);
}
