/* The context: allocator, log callback, thread count and the last error message. */
#include "internal.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void *system_alloc(void *user, size_t size, size_t align)
{
    (void)user;
    void *p = NULL;
    if (align < sizeof(void *))
        align = sizeof(void *);
    if (posix_memalign(&p, align, size ? size : 1) != 0)
        return NULL;
    return p;
}

static void system_free(void *user, void *ptr, size_t size)
{
    (void)user;
    (void)size;
    free(ptr);
}

static const frcnn_allocator system_allocator = {system_alloc, system_free, NULL};

frcnn_ctx_params frcnn_ctx_params_default(void)
{
    frcnn_ctx_params p;
    memset(&p, 0, sizeof p);
    p.allocator = NULL;
    p.log = NULL;
    p.log_user = NULL;
    p.log_level = FRCNN_LOG_INFO;
    p.n_threads = 0;
    return p;
}

static int online_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (n > 1024 ? 1024 : (int)n);
}

frcnn_status frcnn_ctx_create(const frcnn_ctx_params *params, frcnn_ctx **out)
{
    if (!out)
        return FRCNN_ERR_INVALID_ARG;
    *out = NULL;
    frcnn_ctx_params p = params ? *params : frcnn_ctx_params_default();
    const frcnn_allocator *a = p.allocator ? p.allocator : &system_allocator;
    if (!a->alloc || !a->free)
        return FRCNN_ERR_INVALID_ARG;
    frcnn_ctx *ctx = a->alloc(a->user, sizeof *ctx, FRCNN__ALIGN);
    if (!ctx)
        return FRCNN_ERR_NO_MEMORY;
    memset(ctx, 0, sizeof *ctx);
    ctx->allocator = *a;
    ctx->log = p.log;
    ctx->log_user = p.log_user;
    ctx->log_level = p.log_level;
    frcnn_ctx_set_threads(ctx, p.n_threads);
    const char *better = frcnn_blas_suggested_core();
    if (better)
        frcnn_ctx_log(ctx, FRCNN_LOG_WARN,
                      "OpenBLAS runs its generic '%s' kernel on this CPU; start the program with "
                      "OPENBLAS_CORETYPE=%s in the environment for several times faster GEMM",
                      frcnn_blas_core(), better);
    *out = ctx;
    return FRCNN_OK;
}

void frcnn_ctx_free(frcnn_ctx *ctx)
{
    if (!ctx)
        return;
    frcnn__pool_resize(&ctx->pool, 0);
    frcnn_allocator a = ctx->allocator;
    a.free(a.user, ctx, sizeof *ctx);
}

const char *frcnn_ctx_last_error(const frcnn_ctx *ctx)
{
    return ctx ? ctx->last_error : "";
}

void frcnn_ctx_clear_error(frcnn_ctx *ctx)
{
    if (ctx)
        ctx->last_error[0] = '\0';
}

frcnn_status frcnn_ctx_set_threads(frcnn_ctx *ctx, int n)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    ctx->n_threads = n > 0 ? n : online_cores();
    openblas_set_num_threads(1); /* the library runs its products on its own threads (lib/kernels/gemm.h) */
    frcnn__pool_resize(&ctx->pool, ctx->n_threads);
    return FRCNN_OK;
}

int frcnn_ctx_threads(const frcnn_ctx *ctx)
{
    return ctx ? ctx->n_threads : 1;
}

void frcnn_ctx_log(frcnn_ctx *ctx, frcnn_log_level level, const char *fmt, ...)
{
    if (!ctx || !ctx->log || level < ctx->log_level || !fmt)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    ctx->log(ctx->log_user, level, line);
}

frcnn_status frcnn__error(frcnn_ctx *ctx, frcnn_status status, const char *fmt, ...)
{
    if (ctx && fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ctx->last_error, sizeof ctx->last_error, fmt, ap);
        va_end(ap);
    }
    return status;
}

void *frcnn__alloc(frcnn_ctx *ctx, size_t size)
{
    void *p = ctx->allocator.alloc(ctx->allocator.user, size, FRCNN__ALIGN);
    if (!p)
        frcnn__error(ctx, FRCNN_ERR_NO_MEMORY, "out of memory allocating %zu bytes", size);
    return p;
}

void frcnn__free(frcnn_ctx *ctx, void *ptr, size_t size)
{
    if (ptr)
        ctx->allocator.free(ctx->allocator.user, ptr, size);
}
