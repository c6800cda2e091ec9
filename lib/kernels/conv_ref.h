/* The naive direct convolution, kept beside the fast one as its reference (tests compare the two). Internal. */
#ifndef FRCNN_CONV_REF_H
#define FRCNN_CONV_REF_H

#include "im2col.h"

/* x (n, c, h, w), w (m, c, kh, kw), b (m) or NULL, y (n, m, oh, ow): overwrites y. Sums in double. */
void frcnn__conv2d_forward_ref(const frcnn__conv_geom *g, int n, int m, const float *x, const float *w,
                               const float *b, float *y);
/* Accumulates dx, dw, db (each may be NULL) from dy, term by term in float. */
void frcnn__conv2d_backward_ref(const frcnn__conv_geom *g, int n, int m, const float *x, const float *w,
                                const float *dy, float *dx, float *dw, float *db);

#endif /* FRCNN_CONV_REF_H */
