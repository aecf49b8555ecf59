#!/usr/bin/env bash
# watchdog_test.sh PROGRAM MODE EXPECTED_REGEX MPIRUN...: runs watchdog_program under mpirun,
# and passes when the job ends (no hang) within 20 s with a non-zero exit code, its output
# matches EXPECTED_REGEX (the error naming the rank), and the checkpoint written before the
# failure is intact.
set -u
prog=$1 mode=$2 expected=$3
shift 3
dir=$(mktemp -d /tmp/kiln_watchdog_XXXXXX)
trap 'rm -rf "$dir"' EXIT
start=$(date +%s%N)
timeout -s KILL 120 "$@" "$prog" "$mode" "$dir" >"$dir/out.txt" 2>&1
rc=$?
ms=$(( ($(date +%s%N) - start) / 1000000 ))
cat "$dir/out.txt"
echo "-- exit code $rc after ${ms} ms"
fail() { echo "FAIL: $*"; exit 1; }
[ "$ms" -lt 120000 ] || fail "the job hung: killed by the test's 120 s guard"
[ "$rc" -ne 0 ] || fail "the job succeeded"
[ "$ms" -lt 20000 ] || fail "the job took ${ms} ms to end (limit 20000)"
grep -Eq "$expected" "$dir/out.txt" || fail "no line matches '$expected'"
[ "$(grep -c 'kiln: error' "$dir/out.txt")" -le 1 ] || fail "more than one kiln error line"
"$prog" verify "$dir" || fail "the checkpoint is not intact"
echo PASS
