/* im2col and col2im over a block of output columns. A block starts and ends anywhere inside an output row, so
 * the loops walk output rows and clip each row's span to the block. */
#include "im2col.h"

#include <string.h>

typedef struct col_job {
    const frcnn__conv_geom *g;
    const float *src;
    float *dst;
    size_t col0, ncols;
} col_job;

/* The range of output columns ox whose input column ox*sw - pw + kj lies inside [0, w). */
static void valid_span(int w, int ow, int s, int p, int kj, int *lo, int *hi)
{
    int a = p - kj; /* need ox*s >= a */
    int first = a <= 0 ? 0 : (a + s - 1) / s;
    int b = w - 1 + p - kj; /* need ox*s <= b */
    int last = b < 0 ? -1 : b / s;
    if (last > ow - 1)
        last = ow - 1;
    *lo = first;
    *hi = last + 1; /* exclusive; may be <= lo */
}

/* One row of col: kernel offset (ki, kj) of channel ch, for the block's columns. */
static void im2col_row(const frcnn__conv_geom *g, const float *xc, int ki, int kj, size_t col0, size_t ncols,
                       float *out)
{
    int lo, hi;
    valid_span(g->w, g->ow, g->sw, g->pw, kj, &lo, &hi);
    size_t j = col0, end = col0 + ncols;
    while (j < end) {
        int oy = (int)(j / (size_t)g->ow);
        int ox0 = (int)(j % (size_t)g->ow);
        int ox1 = (size_t)(g->ow - ox0) < end - j ? g->ow : ox0 + (int)(end - j);
        float *o = out + (j - col0);
        int iy = oy * g->sh - g->ph + ki;
        if (iy < 0 || iy >= g->h) {
            memset(o, 0, (size_t)(ox1 - ox0) * sizeof(float));
        } else {
            const float *row = xc + (size_t)iy * (size_t)g->w;
            int a = ox0 > lo ? ox0 : lo, b = ox1 < hi ? ox1 : hi;
            if (b < a)
                b = a;
            for (int ox = ox0; ox < a; ox++)
                o[ox - ox0] = 0.0f;
            if (g->sw == 1) {
                if (b > a)
                    memcpy(o + (a - ox0), row + (a - g->pw + kj), (size_t)(b - a) * sizeof(float));
            } else {
                for (int ox = a; ox < b; ox++)
                    o[ox - ox0] = row[ox * g->sw - g->pw + kj];
            }
            for (int ox = b; ox < ox1; ox++)
                o[ox - ox0] = 0.0f;
        }
        j += (size_t)(ox1 - ox0);
    }
}

static void im2col_rows(void *arg, size_t begin, size_t end)
{
    const col_job *job = arg;
    const frcnn__conv_geom *g = job->g;
    size_t ksize = (size_t)g->kh * (size_t)g->kw;
    for (size_t r = begin; r < end; r++) {
        size_t ch = r / ksize, k = r % ksize;
        const float *xc = job->src + ch * (size_t)g->h * (size_t)g->w;
        im2col_row(g, xc, (int)(k / (size_t)g->kw), (int)(k % (size_t)g->kw), job->col0, job->ncols,
                   job->dst + r * job->ncols);
    }
}

void frcnn__im2col(frcnn_ctx *ctx, const frcnn__conv_geom *g, const float *x, size_t col0, size_t ncols,
                   float *col)
{
    col_job job = {g, x, col, col0, ncols};
    size_t rows = (size_t)g->c * (size_t)g->kh * (size_t)g->kw;
    frcnn__parallel_for(ctx, rows, rows * ncols >= (1u << 18) ? 8 : rows, im2col_rows, &job);
}

/* dx rows of one channel += the col rows (ki, kj) of that channel, in (ki, kj, column) order. */
static void col2im_channels(void *arg, size_t begin, size_t end)
{
    const col_job *job = arg;
    const frcnn__conv_geom *g = job->g;
    size_t ksize = (size_t)g->kh * (size_t)g->kw;
    size_t plane = (size_t)g->h * (size_t)g->w;
    for (size_t ch = begin; ch < end; ch++) {
        float *dxc = job->dst + ch * plane;
        for (size_t k = 0; k < ksize; k++) {
            int ki = (int)(k / (size_t)g->kw), kj = (int)(k % (size_t)g->kw);
            const float *in = job->src + (ch * ksize + k) * job->ncols;
            int lo, hi;
            valid_span(g->w, g->ow, g->sw, g->pw, kj, &lo, &hi);
            size_t j = job->col0, stop = job->col0 + job->ncols;
            while (j < stop) {
                int oy = (int)(j / (size_t)g->ow);
                int ox0 = (int)(j % (size_t)g->ow);
                int ox1 = (size_t)(g->ow - ox0) < stop - j ? g->ow : ox0 + (int)(stop - j);
                int iy = oy * g->sh - g->ph + ki;
                if (iy >= 0 && iy < g->h) {
                    const float *c = in + (j - job->col0);
                    float *row = dxc + (size_t)iy * (size_t)g->w;
                    int a = ox0 > lo ? ox0 : lo, b = ox1 < hi ? ox1 : hi;
                    for (int ox = a; ox < b; ox++)
                        row[ox * g->sw - g->pw + kj] += c[ox - ox0];
                }
                j += (size_t)(ox1 - ox0);
            }
        }
    }
}

void frcnn__col2im(frcnn_ctx *ctx, const frcnn__conv_geom *g, const float *col, size_t col0, size_t ncols,
                   float *dx)
{
    col_job job = {g, col, dx, col0, ncols};
    size_t ksize = (size_t)g->kh * (size_t)g->kw;
    frcnn__parallel_for(ctx, (size_t)g->c, (size_t)g->c * ksize * ncols >= (1u << 18) ? 1 : (size_t)g->c,
                        col2im_channels, &job);
}
