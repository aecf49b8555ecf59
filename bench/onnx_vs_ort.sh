#!/usr/bin/env bash
# kiln against ONNX Runtime on the same .onnx files: the mlp and the cnn exported by kiln, batch
# 1 and 64, 1 and 2 threads, median and p99 per call, on the CPU named in the first line.
#   BUILD_DIR=build bench/onnx_vs_ort.sh [RUNS]       (files and JSON in $OUT, default bench/results/onnx)
# kiln's side: onnx_peer_bench (the frozen graph the .onnx was exported from, GraphModel::call).
# ONNX Runtime's: bench/peers/ort/run.mjs --bench (graphOptimizationLevel 'all', intra-op threads
# = threads, inter-op 1), which also times an Identity model over the same input: the harness's
# cost of feeding a tensor in and out, included in ORT's figures and listed beside them.
# Needs the bench target built (-DKILN_BUILD_BENCH=ON: cmake --build build --target onnx_peer_bench)
# and the peer (bench/peers/ort/install.sh build/peers/ort).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
OUT=${OUT:-bench/results/onnx}
RUNS=${1:-}
mkdir -p "$OUT"
echo "onnx_vs_ort.sh: $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) CPUs, $(date -u +%FT%TZ)"
"$BUILD_DIR/bench/onnx_peer_bench" "$OUT" ${RUNS:+--runs $RUNS} > "$OUT/kiln.jsonl"
: > "$OUT/ort.jsonl"
for model in mlp cnn; do
  for batch in 1 64; do
    for threads in 1 2; do
      runs=${RUNS:-$([ $batch = 1 ] && echo 500 || echo 200)}
      node bench/peers/ort/run.mjs --ort "$BUILD_DIR/peers/ort" --model "$OUT/$model.onnx" \
        --input "$OUT/x$batch.npy" --threads $threads --bench "$runs" |
        sed "s/^{/{\"side\": \"ort\", \"batch\": $batch, /" >> "$OUT/ort.jsonl"
    done
  done
done
/usr/bin/python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
kiln = [json.loads(l) for l in open(f"{out}/kiln.jsonl")]
ort = {(r["model"].removesuffix(".onnx"), r["batch"], r["threads"]): r
       for r in map(json.loads, open(f"{out}/ort.jsonl"))}
print(f"| model | batch | threads | kiln median ms | kiln p99 ms | ORT median ms | ORT p99 ms | ORT harness (Identity) median ms | kiln / ORT (median) |")
print("|---|---|---|---|---|---|---|---|---|")
for k in kiln:
    o = ort[(k["model"], k["batch"], k["threads"])]
    print(f"| {k['model']} | {k['batch']} | {k['threads']} | {k['median_ms']:.4f} | {k['p99_ms']:.4f} | "
          f"{o['median_ms']:.4f} | {o['p99_ms']:.4f} | {o['identity']['median_ms']:.4f} | "
          f"{k['median_ms'] / o['median_ms']:.2f} |")
print(f"CPU: {kiln[0]['cpu']}")
PY
