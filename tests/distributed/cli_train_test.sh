#!/usr/bin/env bash
# cli_train_test.sh KILN MPIRUN...: `mpirun -np 2 kiln train --distributed` on Fashion-MNIST
# for one epoch: rank 0 alone prints (one header, one result line) and writes the weights and
# metrics, which `kiln eval` then reads.
set -u
kiln=$1
shift
dir=$(mktemp -d /tmp/kiln_cli_mpi_XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$@" "$kiln" train --model mlp --epochs 1 --distributed --timeout 30 \
  --out "$dir/w.safetensors" --metrics-out "$dir/m.jsonl" >"$dir/out.txt" 2>&1
rc=$?
cat "$dir/out.txt"
[ "$rc" -eq 0 ] || fail "exit code $rc"
[ "$(grep -c '^kiln train: mlp' "$dir/out.txt")" -eq 1 ] || fail "not exactly one header line"
grep -q 'batch 64 over 2 ranks, seed 0, 1 threads per rank' "$dir/out.txt" || fail "header"
[ "$(grep -c 'weights saved to' "$dir/out.txt")" -eq 1 ] || fail "not exactly one result line"
[ "$(wc -l <"$dir/m.jsonl")" -eq 1 ] || fail "metrics file: expected 1 line"
"$kiln" eval --model mlp --weights "$dir/w.safetensors" | grep -q 'test accuracy 0\.[78]' ||
  fail "kiln eval of the weights"
echo PASS
