#!/usr/bin/env bash
# kiln against ONNX Runtime on the same .onnx files: the mlp and the cnn exported by kiln, batch
# 1 and 64, 1 and 2 threads, median and p99 per call, on the CPU named in the first line.
#   BUILD_DIR=build bench/onnx_vs_ort.sh [RUNS] [ROUNDS]   (files and JSON in $OUT, default bench/results/onnx)
#   MODELS="mlp mlp_int8 cnn cnn_int8" THREADS=1 bench/onnx_vs_ort.sh 300 5
# MODELS (default "mlp cnn") may name the int8 versions, <model>_int8 (kiln's int8 graph against
# ONNX Runtime on its QDQ export); then a second table gives int8 / float per side and kiln / ORT
# in int8. THREADS (default "1 2") the thread counts.
# kiln's side: onnx_peer_bench (the frozen graph the .onnx was exported from, GraphModel::call).
# ONNX Runtime's: bench/peers/ort/run.mjs --bench (graphOptimizationLevel 'all', intra-op threads
# = threads, inter-op 1), which also times an Identity model over the same input: the harness's
# cost of feeding a tensor in and out (included in ORT's figures; an upper bound).
# Each case runs kiln then ORT, ROUNDS times (default 3) alternating, and the table shows the
# median over rounds of each side's median and p99: on a shared machine the load drifts, and
# alternating exposes both sides to it alike.
# Needs the bench target built (-DKILN_BUILD_BENCH=ON: cmake --build build --target onnx_peer_bench)
# and the peer (bench/peers/ort/install.sh build/peers/ort).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
OUT=${OUT:-bench/results/onnx}
RUNS=${1:-}
ROUNDS=${2:-3}
mkdir -p "$OUT"
echo "onnx_vs_ort.sh: $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
: > "$OUT/kiln.jsonl"
: > "$OUT/ort.jsonl"
for round in $(seq "$ROUNDS"); do
  for model in ${MODELS:-mlp cnn}; do
    for batch in 1 64; do
      for threads in ${THREADS:-1 2}; do
        runs=${RUNS:-$([ $batch = 1 ] && echo 500 || echo 200)}
        "$BUILD_DIR/bench/onnx_peer_bench" "$OUT" --runs "$runs" --only $model $batch $threads \
          >> "$OUT/kiln.jsonl"
        node bench/peers/ort/run.mjs --ort "$BUILD_DIR/peers/ort" --model "$OUT/$model.onnx" \
          --input "$OUT/x$batch.npy" --threads $threads --bench "$runs" |
          sed "s/^{/{\"side\": \"ort\", \"batch\": $batch, /" >> "$OUT/ort.jsonl"
      done
    done
  done
done
/usr/bin/python3 - "$OUT" <<'PY'
import json, statistics, sys
out = sys.argv[1]
def load(name, key):
    cases = {}
    for r in map(json.loads, open(f"{out}/{name}.jsonl")):
        cases.setdefault(key(r), []).append(r)
    return cases
kiln = load("kiln", lambda r: (r["model"], r["batch"], r["threads"]))
ort = load("ort", lambda r: (r["model"].removesuffix(".onnx"), r["batch"], r["threads"]))
med = lambda rs, f: statistics.median(f(r) for r in rs)
print("| model | batch | threads | kiln median ms | kiln p99 ms | ORT median ms | ORT p99 ms | ORT harness (Identity) median ms | kiln / ORT (median) |")
print("|---|---|---|---|---|---|---|---|---|")
for key, ks in kiln.items():
    os_ = ort[key]
    km, op = med(ks, lambda r: r["median_ms"]), med(os_, lambda r: r["median_ms"])
    print(f"| {key[0]} | {key[1]} | {key[2]} | {km:.4f} | {med(ks, lambda r: r['p99_ms']):.4f} | "
          f"{op:.4f} | {med(os_, lambda r: r['p99_ms']):.4f} | "
          f"{med(os_, lambda r: r['identity']['median_ms']):.4f} | {km / op:.2f} |")
print(f"CPU: {next(iter(kiln.values()))[0]['cpu']}; medians over {len(next(iter(kiln.values())))} alternating rounds")
pairs = [(k, (k[0].removesuffix("_int8"), k[1], k[2])) for k in kiln if k[0].endswith("_int8")]
pairs = [(q, f) for q, f in pairs if f in kiln]
if pairs:
    print()
    print("| model | batch | threads | kiln int8 / float | ORT int8 / float | kiln int8 / ORT int8 | kiln float / ORT float |")
    print("|---|---|---|---|---|---|---|")
    m = lambda rs: med(rs, lambda r: r["median_ms"])
    for q, f in pairs:
        print(f"| {f[0]} | {f[1]} | {f[2]} | {m(kiln[q]) / m(kiln[f]):.2f} | {m(ort[q]) / m(ort[f]):.2f} | "
              f"{m(kiln[q]) / m(ort[q]):.2f} | {m(kiln[f]) / m(ort[f]):.2f} |")
    print("(latency ratios of medians: below 1 is faster; at batch 64 the throughput ratio is the inverse)")
PY
