#!/usr/bin/env bash
# bench/run_under_qemu.sh -- every benchmark program, briefly, under qemu-x86_64 emulating a CPU
# without AVX-512 (default EPYC-Rome: AVX2+FMA), to show a KILN_NATIVE=OFF build runs there
# (no SIGILL) and picks the AVX2 kernels. Timings under emulation mean nothing; the point is the
# exit status and the cpu_isa / fp32_peak_kernel lines.
#   cmake -S . -B build-portable -G Ninja -DCMAKE_BUILD_TYPE=Release -DKILN_NATIVE=OFF
#   cmake --build build-portable -j2
#   BUILD_DIR=build-portable [QEMU_CPU=Haswell] bench/run_under_qemu.sh
# The training benchmarks run 1 thread on the first 1280 training and 500 test images (a copy
# in $TMPDIR): a full epoch under emulation takes too long.
# Exit status: the number of programs that failed.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build-portable}
B=$BUILD_DIR/bench
Q=(qemu-x86_64 -cpu "${QEMU_CPU:-EPYC-Rome}")
command -v qemu-x86_64 > /dev/null || { echo "run_under_qemu.sh: install qemu-user" >&2; exit 1; }
if grep -q 'KILN_NATIVE:BOOL=ON' "$BUILD_DIR/CMakeCache.txt" 2> /dev/null; then
  echo "run_under_qemu.sh: warning: $BUILD_DIR is a KILN_NATIVE=ON build; expect SIGILL" >&2
fi

data=${TMPDIR:-/tmp}/kiln-fashion-mnist-tiny
mkdir -p "$data"
python3 - "$data" <<'PY'
import gzip, struct, sys
src, dst = "/usr/share/datasets/fashion-mnist/", sys.argv[1]
for prefix, n in (("train", 1280), ("t10k", 500)):
    for kind, hdr, per in (("images-idx3", 16, 784), ("labels-idx1", 8, 1)):
        d = gzip.open(f"{src}{prefix}-{kind}-ubyte.gz").read()
        head = bytearray(d[:hdr]); head[4:8] = struct.pack(">I", n)
        # gzipped: the LibTorch peer reads only .gz (kiln reads both)
        gzip.open(f"{dst}/{prefix}-{kind}-ubyte.gz", "wb").write(bytes(head) + d[hdr:hdr + n * per])
PY

failed=0
run() {  # label command...: prints the machine lines, the results and the exit status
  local label=$1 out rc; shift
  out=$("$@" 2>&1); rc=$?
  echo "=== $label"
  grep -E '^(cpu_isa|cpu_model|fp32_peak_kernel):|^BM_|^\{' <<< "$out" | cut -c1-240
  echo "--- $label: exit status $rc$( (( rc == 132 )) && echo ' (SIGILL)')"
  (( rc == 0 )) || failed=$((failed + 1))
}
peer() { env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 "$@"; }
G=(--benchmark_min_time=0.01 --benchmark_repetitions=1)
small='M:64/K:64/N:64/threads:1|M:64/K:784/N:256/threads:2'
run peak_bench "${Q[@]}" "$B/peak_bench" "${G[@]}"
run onednn_matmul_bench "${Q[@]}" "$B/onednn_matmul_bench" "${G[@]}" --benchmark_filter="$small"
run kiln_matmul_bench "${Q[@]}" "$B/kiln_matmul_bench" "${G[@]}" --benchmark_filter="$small"
run matmul_compare_bench "${Q[@]}" "$B/matmul_compare_bench" "${G[@]}" --benchmark_filter="$small"
run kiln_overhead_bench "${Q[@]}" "$B/kiln_overhead_bench" "${G[@]}"
run kiln_kernels_bench "${Q[@]}" "$B/kiln_kernels_bench" "${G[@]}"
for m in mlp cnn; do
  run "kiln_train_bench $m" "${Q[@]}" "$B/kiln_train_bench" --model $m --epochs 1 --threads 1 \
    --data "$data"
done
if [[ -x $B/peers/torch_overhead_bench ]]; then
  run torch_overhead_bench peer "${Q[@]}" "$B/peers/torch_overhead_bench" "${G[@]}" \
    --benchmark_filter="Add1|AutogradStep/n:1/|$small"
  for m in mlp cnn; do
    run "torch_train_bench $m" peer "${Q[@]}" "$B/peers/torch_train_bench" --model $m \
      --epochs 1 --threads 1 --data "$data"
  done
fi
echo "run_under_qemu.sh: $failed program(s) failed"
exit $failed
