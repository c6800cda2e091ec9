/* The naive direct convolution: the definition, loop by loop, for testing the im2col + sgemm kernel. */
#include "conv_ref.h"

/* Index of input pixel (iy, ix) of channel ch of image i, or -1 when it lies in the padding. */
static long input_index(const frcnn__conv_geom *g, int i, int ch, int iy, int ix)
{
    if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w)
        return -1;
    return (((long)i * g->c + ch) * g->h + iy) * g->w + ix;
}

void frcnn__conv2d_forward_ref(const frcnn__conv_geom *g, int n, int m, const float *x, const float *w,
                               const float *b, float *y)
{
    for (int i = 0; i < n; i++)
        for (int o = 0; o < m; o++)
            for (int oy = 0; oy < g->oh; oy++)
                for (int ox = 0; ox < g->ow; ox++) {
                    double s = b ? b[o] : 0.0;
                    for (int ch = 0; ch < g->c; ch++)
                        for (int ki = 0; ki < g->kh; ki++)
                            for (int kj = 0; kj < g->kw; kj++) {
                                long xi = input_index(g, i, ch, oy * g->sh - g->ph + ki, ox * g->sw - g->pw + kj);
                                if (xi >= 0)
                                    s += (double)x[xi] * w[((o * g->c + ch) * g->kh + ki) * g->kw + kj];
                            }
                    y[(((long)i * m + o) * g->oh + oy) * g->ow + ox] = (float)s;
                }
}

void frcnn__conv2d_backward_ref(const frcnn__conv_geom *g, int n, int m, const float *x, const float *w,
                                const float *dy, float *dx, float *dw, float *db)
{
    for (int i = 0; i < n; i++)
        for (int o = 0; o < m; o++)
            for (int oy = 0; oy < g->oh; oy++)
                for (int ox = 0; ox < g->ow; ox++) {
                    float d = dy[(((long)i * m + o) * g->oh + oy) * g->ow + ox];
                    if (db)
                        db[o] += d;
                    for (int ch = 0; ch < g->c; ch++)
                        for (int ki = 0; ki < g->kh; ki++)
                            for (int kj = 0; kj < g->kw; kj++) {
                                long xi = input_index(g, i, ch, oy * g->sh - g->ph + ki, ox * g->sw - g->pw + kj);
                                long wi = ((o * g->c + ch) * g->kh + ki) * g->kw + kj;
                                if (xi < 0)
                                    continue;
                                if (dw)
                                    dw[wi] += d * x[xi];
                                if (dx)
                                    dx[xi] += d * w[wi];
                            }
                }
}
