/* im2col / col2im over a block of output columns, for the convolution's GEMM. Internal. */
#ifndef FRCNN_IM2COL_H
#define FRCNN_IM2COL_H

#include "internal.h"

/* The geometry of one image's convolution. Output column j is output pixel (j / ow, j % ow). */
typedef struct frcnn__conv_geom {
    int c, h, w;    /* input channels and size */
    int kh, kw;     /* kernel size */
    int sh, sw;     /* stride */
    int ph, pw;     /* zero padding */
    int oh, ow;     /* output size */
} frcnn__conv_geom;

/* col (k = c*kh*kw rows, ncols columns, row-major, leading dimension ncols) receives the input patches of
 * output columns [col0, col0 + ncols) of the image x (c, h, w). Overwrites col. Rows are split over the context's
 * threads. */
void frcnn__im2col(frcnn_ctx *ctx, const frcnn__conv_geom *g, const float *x, size_t col0, size_t ncols,
                   float *col);

/* The adjoint: dx (c, h, w) += col scattered back to the pixels it was gathered from. Channels are split over
 * the context's threads; each dx element receives its terms in a fixed order. */
void frcnn__col2im(frcnn_ctx *ctx, const frcnn__conv_geom *g, const float *col, size_t col0, size_t ncols,
                   float *dx);

#endif /* FRCNN_IM2COL_H */
