/* sgemm as blocks of C on the context's threads, one single-threaded OpenBLAS call per block; see gemm.h.
 *
 * Why not OpenBLAS's own threads: besides changing the bits with the thread count (Haswell, Zen and the generic
 * kernel), they spin in sched_yield between calls, and a step makes hundreds of calls. With another process on the
 * cores the spinning threads starve each other: a small-preset step measured 6.6 s (median) that way against
 * 0.37-0.41 s with blocks on our threads, whose workers spin only briefly before sleeping (docs/benchmarks.md). */
#include "gemm.h"

#include <cblas.h>
#include <stddef.h>

/* Two blocks from this many flops each: below it, the hand-off and the repacking of the operand that is not cut
 * cost more than a second thread saves. */
#define GEMM_HALF_MIN_FLOP 4e6
/* Four blocks from this many flops each. Four blocks for every product made the small preset's step 12% slower
 * on one thread (narrow blocks, four repackings), two blocks did not; VGG16's products are this large. */
#define GEMM_QUARTER_MIN_FLOP 64e6
/* Blocks are cut at multiples of this many rows or columns (OpenBLAS's kernels work on tiles of up to 16). */
#define GEMM_CUT_UNIT 16

typedef struct gemm_job {
    bool trans_a, trans_b, cut_columns;
    int m, n, k, lda, ldb, ldc, blocks;
    float alpha, beta;
    const float *a, *b;
    float *c;
} gemm_job;

/* Where block i of `blocks` starts along a side of `size`: a multiple of GEMM_CUT_UNIT, or size itself. */
static int block_start(int size, int i, int blocks)
{
    long units = (size + GEMM_CUT_UNIT - 1) / GEMM_CUT_UNIT;
    long start = units * i / blocks * GEMM_CUT_UNIT;
    return start < size ? (int)start : size;
}

static void gemm_blocks(void *arg, size_t first, size_t end)
{
    const gemm_job *j = arg;
    enum CBLAS_TRANSPOSE ta = j->trans_a ? CblasTrans : CblasNoTrans, tb = j->trans_b ? CblasTrans : CblasNoTrans;
    int size = j->cut_columns ? j->n : j->m;
    for (size_t i = first; i < end; i++) {
        int s = block_start(size, (int)i, j->blocks), e = block_start(size, (int)i + 1, j->blocks);
        if (e <= s)
            continue;
        if (j->cut_columns) { /* columns s..e of C: the same columns of op(B) */
            const float *b = j->trans_b ? j->b + (size_t)s * (size_t)j->ldb : j->b + s;
            cblas_sgemm(CblasRowMajor, ta, tb, j->m, e - s, j->k, j->alpha, j->a, j->lda, b, j->ldb, j->beta,
                        j->c + s, j->ldc);
        } else { /* rows s..e of C: the same rows of op(A) */
            const float *a = j->trans_a ? j->a + s : j->a + (size_t)s * (size_t)j->lda;
            cblas_sgemm(CblasRowMajor, ta, tb, e - s, j->n, j->k, j->alpha, a, j->lda, j->b, j->ldb, j->beta,
                        j->c + (size_t)s * (size_t)j->ldc, j->ldc);
        }
    }
}

void frcnn__sgemm(frcnn_ctx *ctx, bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a,
                  int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    if (openblas_get_num_threads() != 1) /* changed since the context set it: its threads would change the bits */
        openblas_set_num_threads(1);
    bool cut_columns = n >= m; /* cut the longer side: each block then repacks the smaller operand */
    int size = cut_columns ? n : m;
    double flop = 2.0 * (double)m * (double)n * (double)k;
    int blocks = flop >= 4 * GEMM_QUARTER_MIN_FLOP ? 4 : flop >= 2 * GEMM_HALF_MIN_FLOP ? 2 : 1;
    while (blocks > 1 && size / blocks < GEMM_CUT_UNIT)
        blocks /= 2;
    gemm_job job = {trans_a, trans_b, cut_columns, m, n, k, lda, ldb, ldc, blocks, alpha, beta, a, b, c};
    frcnn__parallel_for(ctx, (size_t)blocks, 1, gemm_blocks, &job);
}
