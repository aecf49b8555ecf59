#!/usr/bin/env bash
# bench/peak_qemu_test.sh -- smoke test: a peak_bench built without -march flags runs on CPUs
# without AVX-512 and picks the right FMA kernel at run time. qemu-x86_64 (Debian: qemu-user)
# emulates the CPUs: EPYC-Rome and Haswell (AVX2+FMA, no AVX-512) must run the avx2+fma kernel,
# qemu64 (baseline x86-64) the sse2 one; none may die of SIGILL.
#   peak_qemu_test.sh PEAK_BENCH_BINARY
# Exit 77 (CTest: skipped) when qemu-x86_64 is not installed.
set -uo pipefail
bin=${1:?usage: peak_qemu_test.sh PEAK_BENCH_BINARY}
if ! command -v qemu-x86_64 > /dev/null; then
  echo "SKIPPED: qemu-x86_64 not found (apt-get install qemu-user); AVX2 path not checked"
  exit 77
fi
status=0
machine_lines() { grep -E '"(cpu_model|cpu_isa|fp32_peak_kernel)"'; }
check() {  # qemu cpu model, expected kernel
  local out rc
  out=$(qemu-x86_64 -cpu "$1" "$bin" --benchmark_filter='threads:1/' --benchmark_min_time=0.01 \
        --benchmark_format=json 2> /tmp/peak_qemu_test.$$.err)
  rc=$?
  if (( rc != 0 )); then
    echo "FAIL: -cpu $1: exit status $rc (132 = SIGILL)"; cat /tmp/peak_qemu_test.$$.err
    status=1
  elif ! grep -q "\"fp32_peak_kernel\": \"$2," <<< "$out"; then
    echo "FAIL: -cpu $1: expected kernel $2, got:"; machine_lines <<< "$out"
    status=1
  else
    echo "ok: -cpu $1: $(machine_lines <<< "$out" | tr -s ' ' | tr '\n' ' ')"
    grep -E '"(GFLOPS|label)"' <<< "$out" | tr -s ' ' | tr '\n' ' '; echo
  fi
  rm -f /tmp/peak_qemu_test.$$.err
}
check EPYC-Rome avx2+fma
check Haswell avx2+fma
check qemu64 sse2
exit $status
