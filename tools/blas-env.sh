#!/bin/sh
# Prints OPENBLAS_CORETYPE=<kernel> for the CPU when the caller has not set it, so that benchmarks and training
# runs use OpenBLAS's fast kernel on CPUs newer than the installed OpenBLAS (which falls back to a generic one
# there); prints nothing otherwise. Usage: env $(sh tools/blas-env.sh) program ...
[ -n "${OPENBLAS_CORETYPE:-}" ] && exit 0
flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null)
has() { printf '%s\n' "$flags" | grep -qw "$1"; }
if has avx512f && has avx512dq && has avx512bw && has avx512vl; then
    echo "OPENBLAS_CORETYPE=SkylakeX"
elif has avx2 && has fma; then
    echo "OPENBLAS_CORETYPE=Haswell"
fi
