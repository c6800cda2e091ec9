/* The arena: one block reserved up front, handed out by bumping an offset, released by resetting to a mark. */
#include "internal.h"

struct frcnn_arena {
    frcnn_ctx *ctx;
    unsigned char *base;
    size_t capacity;
    size_t used;
    size_t peak;
};

frcnn_status frcnn_arena_create(frcnn_ctx *ctx, size_t capacity, frcnn_arena **out)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    if (!out)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "arena: out is NULL");
    *out = NULL;
    if (capacity > SIZE_MAX - FRCNN__ALIGN)
        return frcnn__error(ctx, FRCNN_ERR_OVERFLOW, "arena: capacity %zu too large", capacity);
    capacity = (capacity + FRCNN__ALIGN - 1) & ~(size_t)(FRCNN__ALIGN - 1);
    frcnn_arena *a = frcnn__alloc(ctx, sizeof *a);
    if (!a)
        return FRCNN_ERR_NO_MEMORY;
    a->ctx = ctx;
    a->capacity = capacity;
    a->used = 0;
    a->peak = 0;
    a->base = NULL;
    if (capacity > 0 && !(a->base = frcnn__alloc(ctx, capacity))) {
        frcnn__free(ctx, a, sizeof *a);
        return frcnn__error(ctx, FRCNN_ERR_NO_MEMORY, "arena: cannot reserve %zu bytes", capacity);
    }
    *out = a;
    return FRCNN_OK;
}

void frcnn_arena_free(frcnn_arena *arena)
{
    if (!arena)
        return;
    frcnn_ctx *ctx = arena->ctx;
    frcnn__free(ctx, arena->base, arena->capacity);
    frcnn__free(ctx, arena, sizeof *arena);
}

frcnn_status frcnn_arena_alloc(frcnn_arena *arena, size_t size, void **out)
{
    if (!arena || !out)
        return FRCNN_ERR_INVALID_ARG;
    *out = NULL;
    size_t rounded;
    if (size > SIZE_MAX - FRCNN__ALIGN)
        return frcnn__error(arena->ctx, FRCNN_ERR_OVERFLOW, "arena: request of %zu bytes overflows", size);
    rounded = (size + FRCNN__ALIGN - 1) & ~(size_t)(FRCNN__ALIGN - 1);
    if (rounded > arena->capacity - arena->used)
        return frcnn__error(arena->ctx, FRCNN_ERR_NO_MEMORY,
                            "arena full: %zu bytes asked, %zu of %zu in use; plan a larger arena", size, arena->used,
                            arena->capacity);
    *out = arena->base ? arena->base + arena->used : NULL; /* zero capacity: no block, and NULL + 0 is undefined */
    arena->used += rounded;
    if (arena->used > arena->peak)
        arena->peak = arena->used;
    return FRCNN_OK;
}

frcnn_ctx *frcnn__arena_ctx(const frcnn_arena *arena)
{
    return arena->ctx;
}

size_t frcnn_arena_mark(const frcnn_arena *arena)
{
    return arena ? arena->used : 0;
}

void frcnn_arena_reset(frcnn_arena *arena, size_t mark)
{
    /* A mark above the fill level cannot come from frcnn_arena_mark: ignore it rather than expose stale memory. */
    if (arena && mark <= arena->used)
        arena->used = mark;
}

size_t frcnn_arena_capacity(const frcnn_arena *arena)
{
    return arena ? arena->capacity : 0;
}

size_t frcnn_arena_used(const frcnn_arena *arena)
{
    return arena ? arena->used : 0;
}

size_t frcnn_arena_peak(const frcnn_arena *arena)
{
    return arena ? arena->peak : 0;
}
