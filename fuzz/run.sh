#!/usr/bin/env bash
# usage: fuzz/run.sh BUILD_DIR SECONDS_PER_TARGET
#
# Runs every kiln fuzz target for SECONDS_PER_TARGET seconds, one after another. Builds
# nothing: BUILD_DIR must be a clang build configured with -DKILN_BUILD_FUZZ=ON. Each target
# writes its seeds (--write-seeds) to BUILD_DIR/fuzz-out/<target>/seeds; new inputs go to
# BUILD_DIR/fuzz-out/<target>/corpus (kept, so later runs start from it), crash inputs and the
# log next to them. Exits non-zero when any target crashed (sanitizer report, an exception
# other than kiln::Error, an allocation over the bound, a timeout or out-of-memory).
# Extra libFuzzer flags (e.g. -jobs=1, -runs=N) can be given in KILN_FUZZ_ARGS.
set -euo pipefail

if [[ $# -ne 2 || ! $2 =~ ^[0-9]+$ ]]; then
  echo "usage: $0 BUILD_DIR SECONDS_PER_TARGET" >&2
  exit 2
fi
build=$(cd "$1" && pwd)
seconds=$2
targets=(idx safetensors checkpoint model npy onnx)

# One thread: the readers do not need more, and the machine is shared. A small ASan
# quarantine keeps the RSS of the checkpoint target (1.7 MB inputs) under the limit.
export OMP_NUM_THREADS=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:quarantine_size_mb=32:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

failed=()
for t in "${targets[@]}"; do
  bin=$build/fuzz/${t}_fuzz
  if [[ ! -x $bin ]]; then
    echo "fuzz/run.sh: $bin not found (configure with clang and -DKILN_BUILD_FUZZ=ON)" >&2
    exit 2
  fi
  dir=$build/fuzz-out/$t
  rm -rf "$dir/seeds"
  mkdir -p "$dir/corpus"
  "$bin" --write-seeds="$dir/seeds"
  echo "== $t: $(ls "$dir/seeds" | wc -l) seeds, $(ls "$dir/corpus" | wc -l) corpus inputs, ${seconds}s"
  # Inputs as large as the biggest seed (the cnn checkpoint is 1.7 MB; libFuzzer's default
  # cap of 1 MB would cut it), at least 4 KB.
  max_len=$(find "$dir/seeds" -type f -printf '%s\n' | sort -n | tail -n 1)
  (( max_len < 4096 )) && max_len=4096
  # -rss_limit_mb / -malloc_limit_mb: the readers must never allocate by a header's claim;
  # the targets also bound each input's heap growth by its size (fuzz/fuzz_support.h).
  # shellcheck disable=SC2086
  if "$bin" -max_total_time="$seconds" -max_len="$max_len" -rss_limit_mb=512 \
      -malloc_limit_mb=64 -timeout=10 -print_final_stats=1 -artifact_prefix="$dir/" \
      ${KILN_FUZZ_ARGS:-} "$dir/corpus" "$dir/seeds" >"$dir/log" 2>&1; then
    # The last status line (cov, ft, corpus) and the totals.
    grep -E '^#[0-9]+' "$dir/log" | tail -n 1 || true
    grep -E 'stat::(number_of_executed_units|average_exec_per_sec)' "$dir/log" || true
  else
    echo "!! $t crashed; the end of $dir/log:"
    tail -n 60 "$dir/log"
    ls "$dir"/crash-* "$dir"/leak-* "$dir"/timeout-* "$dir"/oom-* "$dir"/slow-unit-* 2>/dev/null || true
    failed+=("$t")
  fi
done

if [[ ${#failed[@]} -ne 0 ]]; then
  echo "fuzz/run.sh: crashes in: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz/run.sh: no crashes in ${targets[*]}"
