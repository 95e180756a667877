#!/bin/sh
# fuzz.sh — run the libFuzzer harnesses of a BG_FUZZ build tree, each for a
# fixed time, on the seed corpus in tests/fuzz/corpus/<harness>/.
#
#   scripts/fuzz.sh BUILD_DIR SECONDS [HARNESS...]   (default: every harness)
#
# New inputs the fuzzer keeps go to BUILD_DIR/fuzz/corpus/<harness>/ (kept
# between runs, so a longer run goes on from the last one; the seeds in
# the tree are only read), with tests/fuzz/fuzz_<harness>.dict as its
# dictionary where there is one. A crash, a sanitizer report, a failed check, a
# leak, an input slower than FUZZ_TIMEOUT seconds (default 10) or over
# FUZZ_RSS_MB of memory (default 2048) stops that harness: its input is
# saved as BUILD_DIR/fuzz/artifacts/<harness>-crash-<sha1> (or -timeout-,
# -oom-, -leak-), the command that replays it is printed, and the script
# exits 1 after running the others. See docs/FUZZING.md.
set -u

if [ $# -lt 2 ]; then
  echo "usage: $0 BUILD_DIR SECONDS [HARNESS...]" >&2
  exit 2
fi
build=$1
secs=$2
shift 2
src=$(cd "$(dirname "$0")/.." && pwd)
bin=$build/tests/fuzz
harnesses=${*:-request policy obs_record obs_log obs_segment metrics_http nn_ckpt nn_train_files nn_tok features escalation_log mcp fleet_entry fleet_snapshot policy_test}
failed=""
mkdir -p "$build/fuzz/artifacts"
for h in $harnesses; do
  if [ ! -x "$bin/fuzz_$h" ]; then
    echo "fuzz: $bin/fuzz_$h is not built (configure with CC=clang -DBG_FUZZ=ON, build bg_fuzz)" >&2
    exit 2
  fi
  work=$build/fuzz/corpus/$h
  mkdir -p "$work"
  log=$build/fuzz/$h.log
  dict=$src/tests/fuzz/fuzz_$h.dict
  if [ -f "$dict" ]; then dict="-dict=$dict"; else dict=""; fi
  printf 'fuzz: %-13s %4s s ' "$h" "$secs"
  # shellcheck disable=SC2086 # $dict: one word or none
  if "$bin/fuzz_$h" $dict -max_total_time="$secs" -timeout="${FUZZ_TIMEOUT:-10}" \
      -rss_limit_mb="${FUZZ_RSS_MB:-2048}" -print_final_stats=1 \
      -artifact_prefix="$build/fuzz/artifacts/$h-" \
      "$work" "$src/tests/fuzz/corpus/$h" > "$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "ok (${runs:-?} inputs, corpus $(find "$work" -type f | wc -l) kept in $work)"
  else
    echo FAILED
    tail -n 60 "$log"
    art=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    if [ -n "$art" ]; then
      echo "fuzz: replay it with: $bin/fuzz_$h $art"
    fi
    failed="$failed $h"
  fi
done
if [ -n "$failed" ]; then
  echo "fuzz: FAILED:$failed (logs in $build/fuzz/<harness>.log)"
  exit 1
fi
