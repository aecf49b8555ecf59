#!/usr/bin/env bash
# bench/peers/run_peers.sh -- run the LibTorch peer benchmarks "at their best".
#
# Why the environment below:
#  * Debian's LibTorch does its float GEMMs through the generic libblas.so.3 (plus libopenblas.so.0),
#    which update-alternatives may point at the reference BLAS (blas/, ~10x slower), at OpenBLAS's
#    pthread variant (its own thread pool fighting LibTorch's OpenMP team for the 2 cores) or at
#    OpenBLAS's OpenMP variant. We want the OpenMP variant: one libgomp team for the whole process,
#    sized by torch::set_num_threads. This script checks with ldd what the binary resolves and, only
#    if it is not openblas-openmp, puts /usr/lib/x86_64-linux-gnu/openblas-openmp first on
#    LD_LIBRARY_PATH (for the commands run by this script only). On the reference machine the
#    alternative already points there (update-alternatives --display libblas.so.3-x86_64-linux-gnu).
#  * OPENBLAS_NUM_THREADS=1 caps OpenBLAS's own pool, so a pthread variant can never oversubscribe.
#    The OpenMP variant follows omp_get_max_threads() (= torch::set_num_threads) regardless:
#    measured, torch 2-thread matmul still scales with it set.
#  * OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are removed so OpenBLAS autodetects its kernels and cache
#    blocking (it picks "Cooperlake", AVX-512, on the Zen 4, an AVX2 kernel such as "Zen" or
#    "Haswell" on a CPU without AVX-512; check with OPENBLAS_VERBOSE=2). A forced
#    core type or L2 size left in a shell selects other kernels or blocking and slows the peer down.
#
# Usage (from the repo root or anywhere; BUILD_DIR is the CMake build directory):
#   BUILD_DIR=build bench/peers/run_peers.sh check                     # show BLAS resolution
#   BUILD_DIR=build bench/peers/run_peers.sh overhead [gbench flags]   # torch_overhead_bench
#   BUILD_DIR=build bench/peers/run_peers.sh train [--model mlp|cnn] [--epochs N] [--threads T]
#   BUILD_DIR=build bench/peers/run_peers.sh inference [gbench flags] # torch_inference_bench
#   BUILD_DIR=build bench/peers/run_peers.sh all                       # overhead + mlp/cnn 1 epoch
set -euo pipefail

BUILD_DIR=${BUILD_DIR:-build}
PEERS=${PEERS_DIR:-$BUILD_DIR/bench/peers}
OPENBLAS_OMP_DIR=/usr/lib/x86_64-linux-gnu/openblas-openmp

[[ -x $PEERS/torch_train_bench ]] || { echo "run_peers.sh: no peers in $PEERS (build with LibTorch; set BUILD_DIR)" >&2; exit 1; }

resolved_blas() {  # what libblas.so.3 of $1 resolves to, symlinks followed
  local p
  p=$(ldd "$1" | awk '$1 == "libblas.so.3" { print $3 }')
  [[ -n $p ]] && readlink -f "$p" || echo "(not linked)"
}

blas=$(resolved_blas "$PEERS/torch_train_bench")
if [[ $blas != "$OPENBLAS_OMP_DIR"/* ]]; then
  if [[ -d $OPENBLAS_OMP_DIR ]]; then
    export LD_LIBRARY_PATH=$OPENBLAS_OMP_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    echo "run_peers.sh: libblas.so.3 was $blas; using $OPENBLAS_OMP_DIR via LD_LIBRARY_PATH" >&2
    blas=$(resolved_blas "$PEERS/torch_train_bench")
  else
    echo "run_peers.sh: warning: libblas.so.3 is $blas and libopenblas0-openmp is not installed" >&2
  fi
fi

run() { env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 "$@"; }

cmd=${1:-all}
[[ $# -gt 0 ]] && shift
case $cmd in
  check)
    echo "libblas.so.3 -> $blas"
    ldd "$PEERS/torch_train_bench" | grep -E 'blas|lapack|gomp|dnnl'
    run env OPENBLAS_VERBOSE=2 "$PEERS/torch_train_bench" --help 2>&1 | grep -i core || true
    ;;
  overhead)
    run "$PEERS/torch_overhead_bench" "$@"
    ;;
  train)
    run "$PEERS/torch_train_bench" "$@"
    ;;
  inference)
    run "$PEERS/torch_inference_bench" "$@"
    ;;
  all)
    run "$PEERS/torch_overhead_bench" --benchmark_min_time=0.2 "$@"
    run "$PEERS/torch_train_bench" --model mlp --epochs 1
    run "$PEERS/torch_train_bench" --model cnn --epochs 1
    ;;
  *)
    echo "usage: run_peers.sh check|overhead [gbench flags]|train [args]|inference [gbench flags]|all" >&2
    exit 2
    ;;
esac
