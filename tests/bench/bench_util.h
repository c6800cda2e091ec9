/* Timing helpers shared by the benchmark programs: a monotonic clock and the median of repeated timings. */
#ifndef FRCNN_BENCH_UTIL_H
#define FRCNN_BENCH_UTIL_H

#include <stdlib.h>
#include <time.h>

static inline double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts v in place and returns its median. */
static inline double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Bare OpenBLAS, the benchmarks' yardstick, runs on n threads of its own: the library sets OpenBLAS to one thread
 * (it runs its products on its own threads, lib/kernels/gemm.h), which would make the yardstick single-threaded.
 * Call with the context's thread count before a bare cblas_sgemm and with 1 after. Back to 1, it waits 0.2 s:
 * OpenBLAS's idle threads spin for about 2^28 cycles after their last call, and would compete with the library's
 * threads in whatever is timed next (measured: small convolutions' backward 20-40% slower). */
void openblas_set_num_threads(int n);

static inline void bench_openblas_threads(int n)
{
    openblas_set_num_threads(n);
    if (n == 1) {
        struct timespec pause = {0, 200000000};
        nanosleep(&pause, NULL);
    }
}

#endif /* FRCNN_BENCH_UTIL_H */
