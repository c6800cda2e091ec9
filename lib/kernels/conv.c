/* 2-D convolution forward and backward as im2col + sgemm over blocks of output columns, with a direct sgemm
 * for 1x1 / stride 1 / no padding. Weights (m, c, kh, kw) are read as an (m, k = c*kh*kw) row-major matrix.
 *
 * With vertical stride 1 the im2col rows of kernel row ki+1 are those of kernel row ki shifted by one output
 * row (ow columns). The "row-folded" path therefore gathers only the c*kw rows of kernel row 0, over kh-1 extra
 * output rows, and runs kh sgemms on views of that block offset by ki*ow columns, each with the weights of one
 * kernel row (repacked into the workspace). That writes kh times less im2col for the same arithmetic: im2col was
 * a quarter of a 3x3 layer's time when the layer has few output channels.
 *
 * The bias is one more column of the (repacked) weights, multiplied by a row of ones under the patches, so the
 * sgemm adds it; the direct path, whose B is the caller's input, adds it in a pass of its own. */
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

/* The row-folded path's blocks span whole output rows, at least this many columns: OpenBLAS needs a wide B to
 * amortise each call, and frcnn__sgemm cuts it further between threads (measured with 512-channel layers). */
#define FOLD_BLOCK_COLS 2560
/* Below this inner size per kernel row (c*kw; 9 for an RGB 3x3 layer) the kh thin sgemms cost more than the
 * im2col they save. */
#define FOLD_MIN_K 48
/* Folding saves (kh-1)/kh of an im2col (k*n floats) and costs a repacking of the weights (m*k): measured on
 * the small backbone's last layer (n = 520, m = 256) it no longer pays, on VGG16's conv5 (n = 1900, m = 512) it
 * still does. */
#define FOLD_MIN_COLS_PER_FILTER 3

frcnn_conv2d_params frcnn_conv2d_params_default(void)
{
    frcnn_conv2d_params p = {1, 1, 0, 0};
    return p;
}

static bool is_direct(const frcnn__conv_geom *g)
{
    return g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0;
}

/* Whether the layer's kernel and stride allow folding at all; is_folded adds the conditions on the size. */
static bool can_fold(const frcnn__conv_geom *g)
{
    return !is_direct(g) && g->sh == 1 && g->kh > 1 && (size_t)g->c * (size_t)g->kw >= FOLD_MIN_K;
}

static bool is_folded(const frcnn__conv_geom *g, int m)
{
    return can_fold(g) && (size_t)g->oh * (size_t)g->ow >= FOLD_MIN_COLS_PER_FILTER * (size_t)m &&
           ((size_t)g->oh + (size_t)g->kh) * (size_t)g->ow <= INT32_MAX;
}

/* Output rows per row-folded block. */
static size_t fold_rows(const frcnn__conv_geom *g)
{
    size_t rows = (FOLD_BLOCK_COLS + (size_t)g->ow - 1) / (size_t)g->ow;
    return rows < (size_t)g->oh ? rows : (size_t)g->oh;
}

/* Columns of a row-folded block's gathered patches, (fold_rows + kh - 1) * ow, bounded from above by a function
 * that grows with oh and ow: see ws_floats. */
static size_t fold_span_bound(const frcnn__conv_geom *g)
{
    size_t all = ((size_t)g->oh + (size_t)g->kh - 1) * (size_t)g->ow;
    size_t wide = FOLD_BLOCK_COLS + (size_t)g->kh * (size_t)g->ow; /* fold_rows <= FOLD_BLOCK_COLS / ow + 1 */
    size_t bound = all < wide ? all : wide;
    return bound < INT32_MAX ? bound : INT32_MAX; /* a larger span would not fold (is_folded) */
}

/* The geometry whose im2col is a row-folded block: one kernel row, and kh - 1 more output rows, so that output
 * row oy of the block (block-local) and kernel row ki read gathered row oy + ki. */
static frcnn__conv_geom fold_geometry(const frcnn__conv_geom *g)
{
    frcnn__conv_geom f = *g;
    f.kh = 1;
    f.oh = g->oh + g->kh - 1;
    return f;
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

typedef struct conv_ws conv_ws;
static size_t ws_floats(const frcnn__conv_geom *g, int m, conv_ws *parts, float *base);

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
    /* k + 1: the bias column */
    if (w[0] > INT32_MAX || k >= INT32_MAX || n > INT32_MAX || x[2] * x[3] > INT32_MAX)
        return frcnn__error(ctx, FRCNN_ERR_OVERFLOW,
                            "conv2d: GEMM size (m %lld, k %lld, n %lld) exceeds BLAS int range", (long long)w[0],
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
    size_t ws_size;
    if (!frcnn__mul_size(ws_floats(g, (int)w[0], NULL, NULL), sizeof(float), &ws_size))
        return frcnn__error(ctx, FRCNN_ERR_OVERFLOW, "conv2d: workspace size (k %lld, n %lld) overflows", (long long)k,
                            (long long)n);
    return FRCNN_OK;
}

/* The workspace's parts. im2col: the weights with the bias as an extra column (m, k + 1), then one block of
 * columns with room for a row of ones. Row-folded: the weights repacked per kernel row with the bias column
 * (kh, m, c*kw + 1), their gradient (kh, m, c*kw), then one gathered block with room for the row of ones.
 *
 * The size returned is never smaller for a larger input (oh, ow), so that a workspace sized for the largest
 * input of a layer serves every smaller one: a layer that can fold gets room for both paths (a smaller input may
 * fall below the pixels-per-filter threshold), and the gathered block's size is bounded by fold_span_bound,
 * since the exact (fold_rows + kh - 1) * ow can grow when ow shrinks (ow 1000: 5 rows of 1000; ow 853: 6 rows). */
struct conv_ws {
    float *w, *dw, *col;
};

static size_t ws_floats(const frcnn__conv_geom *g, int m, conv_ws *parts, float *base)
{
    size_t k = (size_t)g->c * (size_t)g->kh * (size_t)g->kw, kf = (size_t)g->c * (size_t)g->kw;
    size_t w_n = 0, dw_n = 0, col_n = 0;
    if (!is_direct(g)) {
        w_n = (size_t)m * (k + 1);
        col_n = (k + 1) * block_cols(g);
    }
    if (can_fold(g)) {
        size_t fold_col = (kf + 1) * fold_span_bound(g);
        w_n = (size_t)g->kh * (size_t)m * (kf + 1); /* kh * (kf + 1) = k + kh: room for the im2col layout too */
        dw_n = (size_t)g->kh * (size_t)m * kf;
        col_n = col_n > fold_col ? col_n : fold_col;
    }
    if (parts) {
        parts->w = base;
        parts->dw = base + w_n;
        parts->col = base + w_n + dw_n;
    }
    return w_n + dw_n + col_n;
}

static size_t workspace_bytes(const frcnn__conv_geom *g, int m)
{
    return ws_floats(g, m, NULL, NULL) * sizeof(float);
}

typedef struct fold_job {
    const frcnn__conv_geom *g;
    int m;
    const float *w, *b;
    float *wf;
} fold_job;

/* Rows [begin, end) of the kh * m rows of wf (see fold_weights). */
static void fold_rows_of(void *arg, size_t begin, size_t end)
{
    const fold_job *job = arg;
    const frcnn__conv_geom *g = job->g;
    size_t kw = (size_t)g->kw, kk = (size_t)g->kh * kw, kf = (size_t)g->c * kw;
    for (size_t r = begin; r < end; r++) {
        size_t ki = r / (size_t)job->m, i = r % (size_t)job->m;
        const float *src = job->w + i * (size_t)g->c * kk + ki * kw;
        float *dst = job->wf + r * (kf + 1);
        for (size_t ch = 0; ch < (size_t)g->c; ch++)
            for (size_t kj = 0; kj < kw; kj++)
                dst[ch * kw + kj] = src[ch * kk + kj];
        dst[kf] = job->b && ki == 0 ? job->b[i] : 0.0f;
    }
}

/* wf holds kh matrices (m, c*kw + 1), one per kernel row ki: wf[ki][i][ch*kw + kj] = w[i][ch][ki][kj], and the
 * last column b[i] for ki = 0 (0 otherwise, or without b). A gather with unit-stride writes, rows split over the
 * context's threads: for a 256-channel layer with few output pixels it is a tenth of the layer's time. */
static void fold_weights(frcnn_ctx *ctx, const frcnn__conv_geom *g, int m, const float *w, const float *b,
                         float *wf)
{
    fold_job job = {g, m, w, b, wf};
    size_t rows = (size_t)g->kh * (size_t)m;
    frcnn__parallel_for(ctx, rows, rows * (size_t)g->c * (size_t)g->kw >= (1u << 16) ? 1 : rows, fold_rows_of, &job);
}

/* wa (m, k + 1) = [w | b]. */
static void append_bias(const float *w, const float *b, int m, size_t k, float *wa)
{
    for (size_t i = 0; i < (size_t)m; i++) {
        memcpy(wa + i * (k + 1), w + i * k, k * sizeof(float));
        wa[i * (k + 1) + k] = b[i];
    }
}

/* Sets row `row` of a matrix with leading dimension ld to ones over its first cols columns, the partner of the
 * weights' bias column. A pass of its own over the output, filling it with the bias before the sgemm or adding it
 * after, measured as long as the whole im2col of a layer with 3 input channels. */
static void ones_row(float *mat, size_t row, size_t ld, size_t cols)
{
    float *r = mat + row * ld;
    for (size_t j = 0; j < cols; j++)
        r[j] = 1.0f;
}

/* The adjoint of fold_weights, accumulating: dw += unfold(dwf). */
static void unfold_add(const frcnn__conv_geom *g, int m, const float *dwf, float *dw)
{
    size_t kw = (size_t)g->kw, kk = (size_t)g->kh * kw, kf = (size_t)g->c * kw;
    for (size_t ki = 0; ki < (size_t)g->kh; ki++)
        for (size_t i = 0; i < (size_t)m; i++) {
            const float *src = dwf + (ki * (size_t)m + i) * kf;
            float *dst = dw + i * (size_t)g->c * kk + ki * kw;
            for (size_t ch = 0; ch < (size_t)g->c; ch++)
                for (size_t kj = 0; kj < kw; kj++)
                    dst[ch * kk + kj] += src[ch * kw + kj];
        }
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
        *bytes = workspace_bytes(&g, (int)w_dims[0]);
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
    size_t need = workspace_bytes(g, (int)w->dims[0]);
    if (need > 0 && (!ws || ws_bytes < need))
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "conv2d: workspace of %zu bytes given, %zu needed",
                            ws ? ws_bytes : 0, need);
    return FRCNN_OK;
}

/* One image directly (1x1, stride 1, no padding): y = W x + b. B is the caller's input and cannot take a row of
 * ones, so the bias is added in a pass of its own. */
static void forward_direct(frcnn_ctx *ctx, const frcnn__conv_geom *g, int m, const float *x, const float *w,
                           const float *b, float *y)
{
    int n = g->oh * g->ow;
    frcnn__sgemm(ctx, false, false, m, n, g->c, 1.0f, w, g->c, x, n, 0.0f, y, n);
    for (int i = 0; b && i < m; i++) {
        float bi = b[i], *row = y + (size_t)i * (size_t)n;
        for (int j = 0; j < n; j++)
            row[j] += bi;
    }
}

/* One image by im2col blocks of columns; a is the weights, with the bias as column k when has_bias (lda k + 1). */
static void forward_blocks(frcnn_ctx *ctx, const frcnn__conv_geom *g, int m, const float *x, const float *a,
                           bool has_bias, float *y, float *col)
{
    int k = g->c * g->kh * g->kw, n = g->oh * g->ow, ka = k + (has_bias ? 1 : 0);
    size_t step = block_cols(g);
    for (size_t j0 = 0; j0 < (size_t)n; j0 += step) {
        size_t cols = (size_t)n - j0 < step ? (size_t)n - j0 : step;
        frcnn__im2col(ctx, g, x, j0, cols, col);
        if (has_bias)
            ones_row(col, (size_t)k, cols, cols);
        frcnn__sgemm(ctx, false, false, m, (int)cols, ka, 1.0f, a, ka, col, (int)cols, 0.0f, y + j0, n);
    }
}

/* One image by row-folded blocks: wf from fold_weights; its bias column enters through kernel row 0. */
static void forward_folded(frcnn_ctx *ctx, const frcnn__conv_geom *g, int m, const float *x, const float *wf,
                           bool has_bias, float *y, float *col)
{
    frcnn__conv_geom f = fold_geometry(g);
    int kf = g->c * g->kw, n = g->oh * g->ow;
    size_t rows = fold_rows(g), ow = (size_t)g->ow;
    for (size_t oy0 = 0; oy0 < (size_t)g->oh; oy0 += rows) {
        size_t nr = (size_t)g->oh - oy0 < rows ? (size_t)g->oh - oy0 : rows;
        size_t cols = nr * ow, span = (nr + (size_t)g->kh - 1) * ow;
        frcnn__im2col(ctx, &f, x, oy0 * ow, span, col);
        if (has_bias)
            ones_row(col, (size_t)kf, span, cols);
        for (int ki = 0; ki < g->kh; ki++)
            frcnn__sgemm(ctx, false, false, m, (int)cols, kf + (ki == 0 && has_bias ? 1 : 0), 1.0f,
                         wf + (size_t)ki * (size_t)m * (size_t)(kf + 1), kf + 1, col + (size_t)ki * ow, (int)span,
                         ki ? 1.0f : 0.0f, y + oy0 * ow, n);
    }
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

    int m = (int)w->dims[0];
    size_t x_img = (size_t)g.c * (size_t)g.h * (size_t)g.w, y_img = (size_t)m * (size_t)g.oh * (size_t)g.ow;
    size_t k = (size_t)g.c * (size_t)g.kh * (size_t)g.kw;
    const float *bias = b ? b->data : NULL;
    bool direct = is_direct(&g), folded = is_folded(&g, m);
    conv_ws ws;
    ws_floats(&g, m, &ws, workspace);
    const float *a = w->data; /* the weights as the blocks' sgemm reads them */
    if (folded) {
        fold_weights(ctx, &g, m, w->data, bias, ws.w);
        a = ws.w;
    } else if (!direct && bias) {
        append_bias(w->data, bias, m, k, ws.w);
        a = ws.w;
    }
    for (int64_t img = 0; img < x->dims[0]; img++) {
        const float *xi = x->data + (size_t)img * x_img;
        float *yi = y->data + (size_t)img * y_img;
        if (direct)
            forward_direct(ctx, &g, m, xi, w->data, bias, yi);
        else if (folded)
            forward_folded(ctx, &g, m, xi, a, bias != NULL, yi, ws.col);
        else
            forward_blocks(ctx, &g, m, xi, a, bias != NULL, yi, ws.col);
    }
    return FRCNN_OK;
}

/* Independent partial sums per bias-gradient row: one chain of dependent double additions waits for each add's
 * latency, and on one thread it was the small backbone's largest serial step (a 320x432 map's 138240 positions per
 * channel of conv1). */
#define BIAS_LANES 8

typedef struct bias_job {
    const float *dy;
    size_t n;
    float *db;
} bias_job;

/* db[i] += the sum of row i of dy, for i in [i0, i1): in double, element j into lane j % BIAS_LANES, the lanes
 * then added in order, so the result depends only on the data. */
static void bias_rows(void *arg, size_t i0, size_t i1)
{
    const bias_job *job = arg;
    size_t n = job->n, tail = n - n % BIAS_LANES;
    for (size_t i = i0; i < i1; i++) {
        const float *row = job->dy + i * n;
        double lane[BIAS_LANES] = {0.0};
        for (size_t j = 0; j < tail; j += BIAS_LANES)
            for (int l = 0; l < BIAS_LANES; l++)
                lane[l] += (double)row[j + (size_t)l];
        double s = 0.0;
        for (int l = 0; l < BIAS_LANES; l++)
            s += lane[l];
        for (size_t j = tail; j < n; j++)
            s += (double)row[j];
        job->db[i] += (float)s;
    }
}

/* db += the row sums of dy (m, n), rows split between threads. */
static void bias_grad(frcnn_ctx *ctx, const float *dy, int m, size_t n, float *db)
{
    bias_job job = {dy, n, db};
    size_t min_rows = n >= (1u << 14) ? 1 : (1u << 14) / n; /* about 16k elements a thread at least */
    frcnn__parallel_for(ctx, (size_t)m, min_rows, bias_rows, &job);
}

/* One image directly (1x1, stride 1, no padding): dw += dY x^T, dx += W^T dY. */
static void backward_direct(frcnn_ctx *ctx, const frcnn__conv_geom *g, int m, const float *x, const float *w,
                            const float *dy, float *dx, float *dw)
{
    int n = g->oh * g->ow;
    if (dw)
        frcnn__sgemm(ctx, false, true, m, g->c, n, 1.0f, dy, n, x, n, 1.0f, dw, g->c);
    if (dx)
        frcnn__sgemm(ctx, true, false, g->c, n, m, 1.0f, w, g->c, dy, n, 1.0f, dx, n);
}

/* One image by im2col blocks: dw += dY col^T, dx += col2im(W^T dY). */
static void backward_blocks(frcnn_ctx *ctx, const frcnn__conv_geom *g, int m, const float *x, const float *w,
                            const float *dy, float *dx, float *dw, float *col)
{
    int k = g->c * g->kh * g->kw, n = g->oh * g->ow;
    size_t nb = block_cols(g);
    for (size_t j0 = 0; j0 < (size_t)n && (dw || dx); j0 += nb) {
        int cols = (int)((size_t)n - j0 < nb ? (size_t)n - j0 : nb);
        if (dw) {
            frcnn__im2col(ctx, g, x, j0, (size_t)cols, col);
            frcnn__sgemm(ctx, false, true, m, k, cols, 1.0f, dy + j0, n, col, cols, 1.0f, dw, k);
        }
        if (dx) {
            frcnn__sgemm(ctx, true, false, k, cols, m, 1.0f, w, k, dy + j0, n, 0.0f, col, cols);
            frcnn__col2im(ctx, g, col, j0, (size_t)cols, dx);
        }
    }
}

/* One image by row-folded blocks: wf from fold_weights (its bias column unused), dwf the folded weight gradient
 * or NULL. The column gradient of a block is the sum of the kh kernel rows' W^T dY, each at its offset of ki
 * output rows: the first sgemm writes columns [0, cols), so only the kh - 1 rows past them need zeroing. */
static void backward_folded(frcnn_ctx *ctx, const frcnn__conv_geom *g, int m, const float *x, const float *dy,
                            float *dx, const float *wf, float *dwf, float *col)
{
    frcnn__conv_geom f = fold_geometry(g);
    int kf = g->c * g->kw, n = g->oh * g->ow;
    size_t rows = fold_rows(g), ow = (size_t)g->ow, fsize = (size_t)m * (size_t)kf;
    for (size_t oy0 = 0; oy0 < (size_t)g->oh && (dwf || dx); oy0 += rows) {
        size_t nr = (size_t)g->oh - oy0 < rows ? (size_t)g->oh - oy0 : rows;
        size_t cols = nr * ow, span = (nr + (size_t)g->kh - 1) * ow;
        const float *dyb = dy + oy0 * ow;
        if (dwf) {
            frcnn__im2col(ctx, &f, x, oy0 * ow, span, col);
            for (int ki = 0; ki < g->kh; ki++)
                frcnn__sgemm(ctx, false, true, m, kf, (int)cols, 1.0f, dyb, n, col + (size_t)ki * ow, (int)span, 1.0f,
                             dwf + (size_t)ki * fsize, kf);
        }
        if (dx) {
            for (size_t r = 0; r < (size_t)kf; r++)
                memset(col + r * span + cols, 0, (span - cols) * sizeof(float));
            for (int ki = 0; ki < g->kh; ki++)
                frcnn__sgemm(ctx, true, false, kf, (int)cols, m, 1.0f, wf + (size_t)ki * (size_t)m * (size_t)(kf + 1),
                             kf + 1, dyb, n, ki ? 1.0f : 0.0f, col + (size_t)ki * ow, (int)span);
            frcnn__col2im(ctx, &f, col, oy0 * ow, span, dx);
        }
    }
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
    bool folded = is_folded(&g, m);
    conv_ws ws;
    ws_floats(&g, m, &ws, workspace);
    if (folded && dx)
        fold_weights(ctx, &g, m, w->data, NULL, ws.w);
    if (folded && dw)
        memset(ws.dw, 0, (size_t)m * (size_t)k * sizeof(float));
    for (int64_t img = 0; img < x->dims[0]; img++) {
        const float *xi = x->data + (size_t)img * x_img;
        const float *dyi = dy->data + (size_t)img * y_img;
        float *dxi = dx ? dx->data + (size_t)img * x_img : NULL;
        if (db)
            bias_grad(ctx, dyi, m, (size_t)n, db->data);
        if (is_direct(&g))
            backward_direct(ctx, &g, m, xi, w->data, dyi, dxi, dw ? dw->data : NULL);
        else if (folded)
            backward_folded(ctx, &g, m, xi, dyi, dxi, ws.w, dw ? ws.dw : NULL, ws.col);
        else
            backward_blocks(ctx, &g, m, xi, w->data, dyi, dxi, dw ? dw->data : NULL, ws.col);
    }
    if (folded && dw)
        unfold_add(&g, m, ws.dw, dw->data);
    return FRCNN_OK;
}
