/* Tensors: creation (owned, in an arena, wrapping caller memory), shape queries, fill and copy. */
#include "internal.h"

#include <string.h>

static void set_shape(frcnn_tensor *t, int ndim, const int64_t *dims, size_t numel)
{
    t->ndim = ndim;
    for (int i = 0; i < FRCNN_MAX_DIMS; i++)
        t->dims[i] = i < ndim ? dims[i] : 1;
    t->numel = numel;
}

frcnn_status frcnn_tensor_create(frcnn_ctx *ctx, int ndim, const int64_t *dims, frcnn_tensor **out)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    if (!out)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "tensor_create: out is NULL");
    *out = NULL;
    size_t numel;
    frcnn_status st = frcnn__check_dims(ctx, ndim, dims, "tensor_create", &numel);
    if (st != FRCNN_OK)
        return st;
    frcnn_tensor *t = frcnn__alloc(ctx, sizeof *t);
    if (!t)
        return FRCNN_ERR_NO_MEMORY;
    t->data = frcnn__alloc(ctx, numel * sizeof(float));
    if (!t->data) {
        frcnn__free(ctx, t, sizeof *t);
        return frcnn__error(ctx, FRCNN_ERR_NO_MEMORY, "tensor_create: cannot allocate %zu floats", numel);
    }
    memset(t->data, 0, numel * sizeof(float));
    set_shape(t, ndim, dims, numel);
    t->kind = FRCNN__TENSOR_OWNED;
    t->ctx = ctx;
    *out = t;
    return FRCNN_OK;
}

frcnn_status frcnn_tensor_arena(frcnn_arena *arena, int ndim, const int64_t *dims, frcnn_tensor **out)
{
    if (!arena || !out)
        return FRCNN_ERR_INVALID_ARG;
    *out = NULL;
    size_t numel;
    frcnn_status st = frcnn__check_dims(frcnn__arena_ctx(arena), ndim, dims, "tensor_arena", &numel);
    if (st != FRCNN_OK)
        return st;
    size_t mark = frcnn_arena_mark(arena);
    frcnn_tensor *t;
    st = frcnn_arena_alloc(arena, sizeof *t, (void **)&t);
    if (st == FRCNN_OK)
        st = frcnn_arena_alloc(arena, numel * sizeof(float), (void **)&t->data);
    if (st != FRCNN_OK) {
        frcnn_arena_reset(arena, mark);
        return st;
    }
    set_shape(t, ndim, dims, numel);
    t->kind = FRCNN__TENSOR_ARENA;
    t->ctx = NULL;
    *out = t;
    return FRCNN_OK;
}

frcnn_status frcnn_tensor_wrap(frcnn_ctx *ctx, float *data, int ndim, const int64_t *dims, frcnn_tensor **out)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    if (!out)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "tensor_wrap: out is NULL");
    *out = NULL;
    if (!data)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "tensor_wrap: data is NULL");
    size_t numel;
    frcnn_status st = frcnn__check_dims(ctx, ndim, dims, "tensor_wrap", &numel);
    if (st != FRCNN_OK)
        return st;
    frcnn_tensor *t = frcnn__alloc(ctx, sizeof *t);
    if (!t)
        return FRCNN_ERR_NO_MEMORY;
    t->data = data;
    set_shape(t, ndim, dims, numel);
    t->kind = FRCNN__TENSOR_WRAP;
    t->ctx = ctx;
    *out = t;
    return FRCNN_OK;
}

void frcnn_tensor_free(frcnn_tensor *t)
{
    if (!t || t->kind == FRCNN__TENSOR_ARENA)
        return;
    frcnn_ctx *ctx = t->ctx;
    if (t->kind == FRCNN__TENSOR_OWNED)
        frcnn__free(ctx, t->data, t->numel * sizeof(float));
    frcnn__free(ctx, t, sizeof *t);
}

frcnn_status frcnn_tensor_reshape(frcnn_ctx *ctx, frcnn_tensor *t, int ndim, const int64_t *dims)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    if (!t)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "tensor_reshape: tensor is NULL");
    size_t numel;
    frcnn_status st = frcnn__check_dims(ctx, ndim, dims, "tensor_reshape", &numel);
    if (st != FRCNN_OK)
        return st;
    if (numel != t->numel) {
        char s[96];
        frcnn__shape_str(t, s, sizeof s);
        return frcnn__error(ctx, FRCNN_ERR_SHAPE, "tensor_reshape: %zu elements asked, tensor %s has %zu", numel, s,
                            t->numel);
    }
    set_shape(t, ndim, dims, numel);
    return FRCNN_OK;
}

float *frcnn_tensor_data(const frcnn_tensor *t)
{
    return t ? t->data : NULL;
}

int frcnn_tensor_ndim(const frcnn_tensor *t)
{
    return t ? t->ndim : 0;
}

int64_t frcnn_tensor_dim(const frcnn_tensor *t, int i)
{
    return t && i >= 0 && i < t->ndim ? t->dims[i] : 0;
}

size_t frcnn_tensor_numel(const frcnn_tensor *t)
{
    return t ? t->numel : 0;
}

void frcnn_tensor_zero(frcnn_tensor *t)
{
    if (t)
        memset(t->data, 0, t->numel * sizeof(float));
}

void frcnn_tensor_fill(frcnn_tensor *t, float value)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->numel; i++)
        t->data[i] = value;
}

frcnn_status frcnn_tensor_copy(frcnn_ctx *ctx, frcnn_tensor *dst, const frcnn_tensor *src)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    if (!dst || !src)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "tensor_copy: %s is NULL", dst ? "src" : "dst");
    if (dst->numel != src->numel)
        return frcnn__error(ctx, FRCNN_ERR_SHAPE, "tensor_copy: dst has %zu elements, src %zu", dst->numel,
                            src->numel);
    memmove(dst->data, src->data, src->numel * sizeof(float));
    return FRCNN_OK;
}
