/* sgemm on the context's threads, with results that do not depend on the thread count. Internal. */
#ifndef FRCNN_GEMM_H
#define FRCNN_GEMM_H

#include "internal.h"

#include <stdbool.h>

/* C (m, n) = alpha op(A) op(B) + beta C, all row-major, op(X) = X or X^T (trans_a / trans_b), inner size k.
 *
 * C is cut into one, two or four blocks of columns (of rows when m > n), the cut a function of m, n and k alone,
 * and each block is one single-threaded OpenBLAS call run on the context's threads. The calls are the same whatever
 * the thread count, so the bits are too, with every OpenBLAS kernel; OpenBLAS's own threading changes them with
 * some kernels (docs/determinism.md). Expects OpenBLAS set to one thread, as frcnn_ctx_set_threads leaves it. */
void frcnn__sgemm(frcnn_ctx *ctx, bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a,
                  int lda, const float *b, int ldb, float beta, float *c, int ldc);

#endif /* FRCNN_GEMM_H */
