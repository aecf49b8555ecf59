#!/usr/bin/env bash
# The graph-functions issue's figures in one run: graph-mode training against eager, the
# floor (FLOPs over the FP32 peak measured in the same run) and LibTorch; batch-1 inference
# against eager and LibTorch; the first call of a train step; a cache hit's cost.
#   BUILD_DIR=build bench/graph_figures.sh          (results in $OUT, default bench/results)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
OUT=${OUT:-bench/results}
B=$BUILD_DIR/bench
mkdir -p "$OUT"
echo "graph_figures.sh: $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) CPUs, $(date -u +%FT%TZ)"
gb() {  # name binary [flags]
  local name=$1; shift
  "$@" --benchmark_repetitions=5 --benchmark_min_time=0.3 --benchmark_report_aggregates_only=true \
    --benchmark_out_format=json --benchmark_out="$OUT/$name.json" > /dev/null
  python3 - "$OUT/$name.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
c = d["context"]
print("  {}: {} ({}), FP32 peak kernel {}".format(sys.argv[1], c.get("cpu_model"), c.get("cpu_isa"),
                                                  c.get("fp32_peak_kernel")))
for b in d["benchmarks"]:
    if b.get("aggregate_name") in ("median", "min"):
        extra = "".join(" {}={:.4g}".format(k, b[k]) for k in ("floor_ms", "x_floor", "peak_gflops") if k in b)
        print("    {:60s} {:>10.4g} {}{}".format(b["name"], b["real_time"], b["time_unit"], extra))
PY
}
gb graph "$B/kiln_graph_bench"
gb function "$B/kiln_function_bench"
for model in mlp cnn; do
  for graph in 0 1; do
    "$B/kiln_train_bench" --model $model --epochs 1 --graph $graph | tee -a "$OUT/train_graph.jsonl"
  done
done
if [[ -x $B/peers/torch_train_bench ]]; then
  BUILD_DIR=$BUILD_DIR bench/peers/run_peers.sh train --model mlp --epochs 1 | tee -a "$OUT/train_graph.jsonl"
  BUILD_DIR=$BUILD_DIR bench/peers/run_peers.sh train --model cnn --epochs 1 | tee -a "$OUT/train_graph.jsonl"
  BUILD_DIR=$BUILD_DIR bench/peers/run_peers.sh inference --benchmark_repetitions=5 \
    --benchmark_min_time=0.3 --benchmark_report_aggregates_only=true 2>/dev/null | grep -E "median|min"
fi
