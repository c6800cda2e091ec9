/* sgemm with a fixed order of summation over the inner dimension; see gemm.h. */
#include "gemm.h"

#include <cblas.h>
#include <stddef.h>

/* OpenBLAS 0.3.21's SkylakeX sgemm inner block (GEMM_Q), measured as the largest k with thread-independent
 * results. Slicing there costs little: OpenBLAS makes one pass over C per inner block anyway. */
#define GEMM_K_SLICE 448

void frcnn__sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                  const float *b, int ldb, float beta, float *c, int ldc)
{
    enum CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans, tb = trans_b ? CblasTrans : CblasNoTrans;
    for (int k0 = 0; k0 < k || (k == 0 && k0 == 0); k0 += GEMM_K_SLICE) {
        int kk = k - k0 < GEMM_K_SLICE ? k - k0 : GEMM_K_SLICE;
        /* the slice's columns of A (rows when transposed) and rows of B (columns when transposed) */
        const float *as = trans_a ? a + (size_t)k0 * (size_t)lda : a + k0;
        const float *bs = trans_b ? b + k0 : b + (size_t)k0 * (size_t)ldb;
        cblas_sgemm(CblasRowMajor, ta, tb, m, n, kk, alpha, as, lda, bs, ldb, k0 == 0 ? beta : 1.0f, c, ldc);
        if (k == 0)
            break;
    }
}
