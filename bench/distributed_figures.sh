#!/usr/bin/env bash
# The data-parallel figures of the README: BUILD_DIR=build bench/distributed_figures.sh [EPOCHS]
# Runs kiln_distributed_bench for the mlp and the cnn as 2 ranks x 1 thread (gradient
# all-reduce overlapped with the backward pass, and not), as 1 rank x 2 threads, and as
# 1 rank x 1 thread at the per-rank batch 32 (the cost model's compute time), plus the
# all-reduce timings; JSON lines go to bench/results/distributed.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
epochs=${1:-3}
bench=$build/bench/kiln_distributed_bench
mpirun=(mpirun -np 2 --allow-run-as-root --oversubscribe --bind-to none)
out=bench/results/distributed.jsonl
mkdir -p bench/results
: >"$out"
grep -m1 "model name" /proc/cpuinfo | tee -a /dev/stderr >/dev/null
for model in mlp cnn; do
  e=$epochs
  [ "$model" = cnn ] && e=$(( epochs > 2 ? 2 : epochs ))
  "${mpirun[@]}" "$bench" --model "$model" --allreduce | tee -a "$out"
  "${mpirun[@]}" "$bench" --model "$model" --threads 1 --epochs "$e" | tee -a "$out"
  "${mpirun[@]}" "$bench" --model "$model" --threads 1 --epochs "$e" --no-overlap | tee -a "$out"
  "$bench" --model "$model" --threads 2 --epochs "$e" | tee -a "$out"
  "$bench" --model "$model" --threads 1 --batch 32 --epochs 1 | tee -a "$out"
done
# Overlap needs more than one bucket: the default 25 MB holds all of either model's gradients
# (0.94 / 1.69 MB), so its one all-reduce can start only when the backward pass ends.
for cfg in "mlp 0.1 3 0" "cnn 0.5 2 16000"; do
  read -r model mb e n <<<"$cfg"
  "${mpirun[@]}" "$bench" --model "$model" --threads 1 --epochs "$e" --examples "$n" \
    --bucket-mb "$mb" | tee -a "$out"
  "${mpirun[@]}" "$bench" --model "$model" --threads 1 --epochs "$e" --examples "$n" \
    --bucket-mb "$mb" --no-overlap | tee -a "$out"
done
# Compute time per step at other per-rank batches (1 thread), for the cost model.
for cfg in "mlp 8 16000" "mlp 64 0" "cnn 8 4000" "cnn 64 16000"; do
  read -r model b n <<<"$cfg"
  "$bench" --model "$model" --threads 1 --batch "$b" --examples "$n" --epochs 1 | tee -a "$out"
done
