#!/usr/bin/env bash
# Every benchmark, kiln beside its peer, in one run on this machine; raw JSON + a summary in $OUT.
#   BUILD_DIR=build OUT=bench/results bench/run_all.sh [--quick]
# kiln runs in the environment as it is. The LibTorch peer runs "at its best" through
# bench/peers/run_peers.sh: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset, OPENBLAS_NUM_THREADS=1,
# OpenBLAS's OpenMP build. --quick: 1 epoch per model and fewer repetitions.
# Every line of results names the CPU (model, widest ISA) and the FP32 peak kernel that ran: the
# binaries pick AVX-512, AVX2+FMA or SSE2 at run time.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
OUT=${OUT:-bench/results}
B=$BUILD_DIR/bench
mkdir -p "$OUT"
reps=5 mlp_epochs=5 cnn_epochs=3
if [[ ${1:-} == --quick ]]; then reps=3 mlp_epochs=1 cnn_epochs=1; fi
machine() {  # the CPU and peak kernel recorded in a Google Benchmark JSON's context
  python3 -c 'import json, sys; c = json.load(open(sys.argv[1]))["context"]
print("{} ({}); FP32 peak kernel {}".format(c.get("cpu_model", "?"), c.get("cpu_isa", "?"),
                                            c.get("fp32_peak_kernel", "?")))' "$1"
}
gb() {  # name binary [flags]: Google Benchmark run, JSON to $OUT/name.json
  local name=$1; shift
  "$@" --benchmark_repetitions=$reps --benchmark_min_time=0.3 \
    --benchmark_report_aggregates_only=true --benchmark_out_format=json \
    --benchmark_out="$OUT/$name.json" > /dev/null
  echo "wrote $OUT/$name.json: $(machine "$OUT/$name.json")"
}
peers=0
[[ -x $B/peers/torch_overhead_bench ]] && peers=1

cpu=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
echo "run_all.sh: $cpu, $(nproc) CPUs, $(date -u +%FT%TZ)"
gb peak "$B/peak_bench"
python3 -c 'import json, sys
for b in json.load(open(sys.argv[1]))["benchmarks"]:
    if b.get("aggregate_name") == "median":
        print("  {}: {:.1f} GFLOP/s ({})".format(b["run_name"], b["GFLOPS"], b.get("label", "")))
' "$OUT/peak.json"
# kiln and oneDNN in one process, repetitions interleaved, so both meet the same machine state.
gb matmul "$B/matmul_compare_bench" --benchmark_enable_random_interleaving=true
gb kiln_overhead "$B/kiln_overhead_bench"
if (( peers )); then gb torch_overhead env BUILD_DIR="$BUILD_DIR" bench/peers/run_peers.sh overhead; fi

for model in mlp cnn; do
  epochs=$mlp_epochs
  [[ $model == cnn ]] && epochs=$cnn_epochs
  "$B/kiln_train_bench" --model $model --epochs $epochs --threads 2 | tee "$OUT/kiln_train_$model.jsonl"
  if (( peers )); then
    BUILD_DIR="$BUILD_DIR" bench/peers/run_peers.sh train --model $model --epochs $epochs --threads 2 \
      | tee "$OUT/torch_train_$model.jsonl"
  fi
done
python3 bench/summarize.py "$OUT" | tee "$OUT/summary.md"
