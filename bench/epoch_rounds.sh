#!/usr/bin/env bash
# Epoch times of the graph-speed issue's table, alternating so every side sees the same host:
# per round, for the cnn and the mlp, one epoch each of kiln eager, kiln graph and LibTorch
# (bench/peers/run_peers.sh), then the cnn in graph mode under bf16 and fp32. One line per
# measurement: seconds and validation accuracy, as kiln_train_bench and the peer print them.
#   BUILD_DIR=build ROUNDS=3 bench/epoch_rounds.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
ROUNDS=${ROUNDS:-3}
B=$BUILD_DIR/bench
echo "epoch_rounds.sh: $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) CPUs, $(date -u +%FT%TZ)"
field() {  # the "seconds" and "val_accuracy" of a JSON line on stdin
  grep -o '"seconds":[0-9.]*\|"val_accuracy":[0-9.]*' | head -2 | tr '\n' ' '
}
for r in $(seq "$ROUNDS"); do
  for m in cnn mlp; do
    echo "round $r $m eager: $("$B/kiln_train_bench" --model "$m" --graph 0 | field)"
    echo "round $r $m graph: $("$B/kiln_train_bench" --model "$m" --graph 1 | field)"
    echo "round $r $m LibTorch: $(BUILD_DIR=$BUILD_DIR bench/peers/run_peers.sh train --model "$m" | field)"
  done
  for p in bf16 fp32; do
    echo "round $r cnn graph $p: $("$B/kiln_train_bench" --model cnn --graph 1 --precision "$p" | field)"
  done
done
