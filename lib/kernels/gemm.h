/* sgemm with a fixed order of summation over the inner dimension. Internal. */
#ifndef FRCNN_GEMM_H
#define FRCNN_GEMM_H

#include <stdbool.h>

/* C (m, n) = alpha op(A) op(B) + beta C, all row-major, op(X) = X or X^T (trans_a / trans_b), inner size k.
 *
 * OpenBLAS blocks a long inner dimension differently in its single-threaded and its threaded driver, so for
 * k above its block size the last bits of C depend on the thread count. Measured with OpenBLAS 0.3.21: its
 * SkylakeX kernel gives identical results for 1 and 2 threads whenever k <= 448 (for every m, n tried) and
 * differs above. This runs the inner dimension in slices of at most 448, accumulating into C, so every call
 * stays below that block size. The generic (Prescott) kernel also differs for small k with some n, which no
 * slicing fixes: see docs/determinism.md. */
void frcnn__sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                  const float *b, int ldb, float beta, float *c, int ldc);

#endif /* FRCNN_GEMM_H */
