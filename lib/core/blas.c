/* What OpenBLAS runs on: its kernel name, and whether a faster kernel is available than the one its CPU
 * detection picked. OpenBLAS 0.3.21 does not know CPU models released after it (such as family 6 model 207) and
 * falls back to its SSE3 "Prescott" kernel, about 8x slower than the AVX-512 one on the same core. */
#include "internal.h"

#include <cblas.h>
#include <string.h>
#include <strings.h>

const char *frcnn_blas_core(void)
{
    const char *name = openblas_get_corename();
    return name ? name : "unknown";
}

const char *frcnn_blas_suggested_core(void)
{
    const char *core = frcnn_blas_core();
    bool generic = strcasecmp(core, "prescott") == 0 || strcasecmp(core, "core2") == 0 ||
                   strcasecmp(core, "nehalem") == 0 || strcasecmp(core, "katmai") == 0 ||
                   strcasecmp(core, "unknown") == 0;
    if (!generic)
        return NULL;
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return "Haswell";
#endif
    return NULL;
}
