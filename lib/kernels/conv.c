/* 2-D convolution forward and backward as im2col + sgemm over blocks of output columns, with a direct sgemm
 * for 1x1 / stride 1 / no padding. Weights (m, c, kh, kw) are read as an (m, k = c*kh*kw) row-major matrix. */
#include "gemm.h"
#include "im2col.h"

#include <cblas.h>
#include <stdio.h>
#include <string.h>

/* An im2col block holds about this many bytes: large enough that sgemm runs at full speed on the block, small
 * enough to stay in the last-level cache while sgemm reads it. Chosen by `make bench` on a 2-core AVX-512
 * machine; the block size depends only on the shapes, so results never depend on the machine. */
#define CONV_BLOCK_BYTES ((size_t)8 << 20)
#define CONV_MIN_BLOCK_COLS 256

frcnn_conv2d_params frcnn_conv2d_params_default(void)
{
    frcnn_conv2d_params p = {1, 1, 0, 0};
    return p;
}

static bool is_direct(const frcnn__conv_geom *g)
{
    return g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0;
}

static size_t block_cols(const frcnn__conv_geom *g)
{
    size_t k = (size_t)g->c * (size_t)g->kh * (size_t)g->kw;
    size_t n = (size_t)g->oh * (size_t)g->ow;
    size_t cols = CONV_BLOCK_BYTES / (k * sizeof(float));
    if (cols < CONV_MIN_BLOCK_COLS)
        cols = CONV_MIN_BLOCK_COLS;
    return cols < n ? cols : n;
}

/* Validates parameters and shapes and fills the geometry and output dims. All products used by BLAS must fit
 * in its 32-bit int. */
static frcnn_status conv_geometry(frcnn_ctx *ctx, const frcnn_conv2d_params *p, const int64_t x[4],
                                  const int64_t w[4], frcnn__conv_geom *g, int64_t y[4])
{
    if (!p || !x || !w)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "conv2d: %s is NULL", !p ? "params" : !x ? "x" : "w");
    frcnn_status st = frcnn__check_dims(ctx, 4, x, "conv2d: x", NULL);
    if (st == FRCNN_OK)
        st = frcnn__check_dims(ctx, 4, w, "conv2d: w", NULL);
    if (st != FRCNN_OK)
        return st;
    if (p->stride_h < 1 || p->stride_w < 1 || p->pad_h < 0 || p->pad_w < 0 || p->pad_h > 65535 ||
        p->pad_w > 65535)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG,
                            "conv2d: stride (%d, %d) must be >= 1 and padding (%d, %d) in [0, 65535]", p->stride_h,
                            p->stride_w, p->pad_h, p->pad_w);
    if (x[1] != w[1])
        return frcnn__error(ctx, FRCNN_ERR_SHAPE, "conv2d: x has %lld channels but w (%lld, %lld, %lld, %lld) expects %lld",
                            (long long)x[1], (long long)w[0], (long long)w[1], (long long)w[2], (long long)w[3],
                            (long long)w[1]);
    int64_t span_h = x[2] + 2 * (int64_t)p->pad_h - w[2], span_w = x[3] + 2 * (int64_t)p->pad_w - w[3];
    if (span_h < 0 || span_w < 0)
        return frcnn__error(ctx, FRCNN_ERR_SHAPE, "conv2d: kernel %lldx%lld larger than padded input %lldx%lld",
                            (long long)w[2], (long long)w[3], (long long)(x[2] + 2 * p->pad_h),
                            (long long)(x[3] + 2 * p->pad_w));
    y[0] = x[0];
    y[1] = w[0];
    y[2] = span_h / p->stride_h + 1;
    y[3] = span_w / p->stride_w + 1;
    int64_t k = w[1] * w[2] * w[3], n = y[2] * y[3];
    if (k > INT32_MAX || n > INT32_MAX || x[2] * x[3] > INT32_MAX)
        return frcnn__error(ctx, FRCNN_ERR_OVERFLOW, "conv2d: GEMM size (k %lld, n %lld) exceeds BLAS int range",
                            (long long)k, (long long)n);
    st = frcnn__check_dims(ctx, 4, y, "conv2d: y", NULL);
    if (st != FRCNN_OK)
        return st;
    g->c = (int)x[1];
    g->h = (int)x[2];
    g->w = (int)x[3];
    g->kh = (int)w[2];
    g->kw = (int)w[3];
    g->sh = p->stride_h;
    g->sw = p->stride_w;
    g->ph = p->pad_h;
    g->pw = p->pad_w;
    g->oh = (int)y[2];
    g->ow = (int)y[3];
    return FRCNN_OK;
}

static size_t workspace_bytes(const frcnn__conv_geom *g)
{
    if (is_direct(g))
        return 0;
    return (size_t)g->c * (size_t)g->kh * (size_t)g->kw * block_cols(g) * sizeof(float);
}

frcnn_status frcnn_conv2d_output_shape(frcnn_ctx *ctx, const frcnn_conv2d_params *p, const int64_t x_dims[4],
                                       const int64_t w_dims[4], int64_t y_dims[4])
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    if (!y_dims)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "conv2d: y_dims is NULL");
    frcnn__conv_geom g;
    return conv_geometry(ctx, p, x_dims, w_dims, &g, y_dims);
}

frcnn_status frcnn_conv2d_workspace_bytes(frcnn_ctx *ctx, const frcnn_conv2d_params *p, const int64_t x_dims[4],
                                          const int64_t w_dims[4], size_t *bytes)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    if (!bytes)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "conv2d: bytes is NULL");
    frcnn__conv_geom g;
    int64_t y[4];
    frcnn_status st = conv_geometry(ctx, p, x_dims, w_dims, &g, y);
    if (st == FRCNN_OK)
        *bytes = workspace_bytes(&g);
    return st;
}

/* Checks one tensor against expected 4-D dims. */
static frcnn_status expect_dims(frcnn_ctx *ctx, const frcnn_tensor *t, const char *name, const int64_t *dims,
                                int ndim)
{
    frcnn_status st = frcnn__check_tensor(ctx, t, name, ndim);
    if (st != FRCNN_OK)
        return st;
    for (int i = 0; i < ndim; i++) {
        if (t->dims[i] != dims[i]) {
            char s[96], e[96] = "(";
            frcnn__shape_str(t, s, sizeof s);
            for (int j = 0; j < ndim; j++) {
                size_t used = strlen(e);
                snprintf(e + used, sizeof e - used, "%s%lld", j ? ", " : "", (long long)dims[j]);
            }
            strncat(e, ")", sizeof e - strlen(e) - 1);
            return frcnn__error(ctx, FRCNN_ERR_SHAPE, "conv2d: %s has shape %s, expected %s", name, s, e);
        }
    }
    return FRCNN_OK;
}

/* Everything forward and backward check in common: x and w, the output/gradient y, and the workspace. */
static frcnn_status conv_setup(frcnn_ctx *ctx, const frcnn_conv2d_params *p, const frcnn_tensor *x,
                               const frcnn_tensor *w, const frcnn_tensor *y, const char *y_name, void *ws,
                               size_t ws_bytes, frcnn__conv_geom *g)
{
    frcnn_status st = frcnn__check_tensor(ctx, x, "conv2d: x", 4);
    if (st == FRCNN_OK)
        st = frcnn__check_tensor(ctx, w, "conv2d: w", 4);
    int64_t y_dims[4];
    if (st == FRCNN_OK)
        st = conv_geometry(ctx, p, x->dims, w->dims, g, y_dims);
    if (st == FRCNN_OK)
        st = expect_dims(ctx, y, y_name, y_dims, 4);
    if (st != FRCNN_OK)
        return st;
    size_t need = workspace_bytes(g);
    if (need > 0 && (!ws || ws_bytes < need))
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "conv2d: workspace of %zu bytes given, %zu needed",
                            ws ? ws_bytes : 0, need);
    return FRCNN_OK;
}

frcnn_status frcnn_conv2d_forward(frcnn_ctx *ctx, const frcnn_conv2d_params *p, const frcnn_tensor *x,
                                  const frcnn_tensor *w, const frcnn_tensor *b, frcnn_tensor *y, void *workspace,
                                  size_t workspace_bytes_given)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    frcnn__conv_geom g;
    frcnn_status st = conv_setup(ctx, p, x, w, y, "y", workspace, workspace_bytes_given, &g);
    if (st == FRCNN_OK && b)
        st = expect_dims(ctx, b, "b", &w->dims[0], 1);
    if (st != FRCNN_OK)
        return st;

    int m = (int)w->dims[0], k = g.c * g.kh * g.kw, n = g.oh * g.ow;
    size_t x_img = (size_t)g.c * (size_t)g.h * (size_t)g.w, y_img = (size_t)m * (size_t)n;
    size_t nb = block_cols(&g);
    bool direct = is_direct(&g);
    size_t step = direct ? (size_t)n : nb;
    for (int64_t img = 0; img < x->dims[0]; img++) {
        const float *xi = x->data + (size_t)img * x_img;
        float *yi = y->data + (size_t)img * y_img;
        for (size_t j0 = 0; j0 < (size_t)n; j0 += step) {
            size_t cols = (size_t)n - j0 < step ? (size_t)n - j0 : step;
            const float *bmat = xi;
            if (!direct) {
                frcnn__im2col(ctx, &g, xi, j0, cols, workspace);
                bmat = workspace;
            }
            frcnn__sgemm(false, false, m, (int)cols, k, 1.0f, w->data, k, bmat, direct ? n : (int)cols, 0.0f, yi + j0,
                         n);
            /* The bias goes on while the block is still in cache: a separate pass over the whole output would
             * cost as much as the im2col for layers with few input channels. */
            for (int i = 0; b && i < m; i++) {
                float bi = b->data[i], *row = yi + (size_t)i * (size_t)n + j0;
                for (size_t j = 0; j < cols; j++)
                    row[j] += bi;
            }
        }
    }
    return FRCNN_OK;
}

frcnn_status frcnn_conv2d_backward(frcnn_ctx *ctx, const frcnn_conv2d_params *p, const frcnn_tensor *x,
                                   const frcnn_tensor *w, const frcnn_tensor *dy, frcnn_tensor *dx,
                                   frcnn_tensor *dw, frcnn_tensor *db, void *workspace, size_t workspace_bytes_given)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    frcnn__conv_geom g;
    frcnn_status st = conv_setup(ctx, p, x, w, dy, "dy", workspace, workspace_bytes_given, &g);
    if (st == FRCNN_OK && dx)
        st = expect_dims(ctx, dx, "dx", x->dims, 4);
    if (st == FRCNN_OK && dw)
        st = expect_dims(ctx, dw, "dw", w->dims, 4);
    if (st == FRCNN_OK && db)
        st = expect_dims(ctx, db, "db", &w->dims[0], 1);
    if (st != FRCNN_OK)
        return st;

    int m = (int)w->dims[0], k = g.c * g.kh * g.kw, n = g.oh * g.ow;
    size_t x_img = (size_t)g.c * (size_t)g.h * (size_t)g.w, y_img = (size_t)m * (size_t)n;
    size_t nb = block_cols(&g);
    for (int64_t img = 0; img < x->dims[0]; img++) {
        const float *xi = x->data + (size_t)img * x_img;
        const float *dyi = dy->data + (size_t)img * y_img;
        float *dxi = dx ? dx->data + (size_t)img * x_img : NULL;
        if (db) {
            for (int i = 0; i < m; i++) {
                double s = 0.0;
                for (int j = 0; j < n; j++)
                    s += dyi[(size_t)i * (size_t)n + (size_t)j];
                db->data[i] += (float)s;
            }
        }
        if (is_direct(&g)) {
            if (dw)
                frcnn__sgemm(false, true, m, k, n, 1.0f, dyi, n, xi, n, 1.0f, dw->data, k);
            if (dxi)
                frcnn__sgemm(true, false, k, n, m, 1.0f, w->data, k, dyi, n, 1.0f, dxi, n);
            continue;
        }
        if (!dw && !dxi)
            continue;
        float *col = workspace;
        for (size_t j0 = 0; j0 < (size_t)n; j0 += nb) {
            int cols = (int)((size_t)n - j0 < nb ? (size_t)n - j0 : nb);
            if (dw) {
                frcnn__im2col(ctx, &g, xi, j0, (size_t)cols, col);
                frcnn__sgemm(false, true, m, k, cols, 1.0f, dyi + j0, n, col, cols, 1.0f, dw->data, k);
            }
            if (dxi) {
                frcnn__sgemm(true, false, k, cols, m, 1.0f, w->data, k, dyi + j0, n, 0.0f, col, cols);
                frcnn__col2im(ctx, &g, col, j0, (size_t)cols, dxi);
            }
        }
    }
    return FRCNN_OK;
}
