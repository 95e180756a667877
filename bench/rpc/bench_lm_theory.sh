#!/bin/sh
# bench_lm_theory.sh — Evaluate latency of an lm_theory policy with the 16
# theories of policies/examples/lm_theory.yaml.example (stories260K, backend
# cpu), beside the enumerated email policy (bernoulli, 200 rates) on the same
# daemon, through bench_rpc (docs/PERFORMANCE.md, "lm_theory"). Not a test.
#
#   bench/rpc/bench_lm_theory.sh BUILD_DIR [SECONDS] [CALLERS] [BASE_BUILD_DIR]
#
# (from the source root). With BASE_BUILD_DIR (a build of the baseline
# commit: its bayesguardd, plugins and bench_rpc) the lm_theory rows of the
# two builds are measured interleaved, base then new, twice, on the same
# machine in the same run; compare those, not numbers of different runs.
# BG_BENCH_TOKENIZER=bpe measures with a 512-token BPE tokenizer trained by
# the docs/TRAINING.md recipe (`lm corpus`, `lm tokenizer train`, with
# BUILD_DIR's bayesguard) instead of the byte tokenizer of
# scripts/lm_byte_tokenizer.py: the same model shape and weights, fewer
# tokens per theory (the scores mean nothing either way: cost only).
#
# The bench repeats one action, so the host's score cache (plugin_lm.c)
# would answer every Evaluate after the first from memory: the lm_theory
# rows run with BG_LM_SCORE_CACHE=0 (the forward itself, as base — which
# has no cache — does), and one last row "new, score cache on" shows what
# a repeated action (or the Observe of an evaluated one) costs.
#
# The bench's copy of the policy answers DENY above the threshold
# (`over_threshold: deny`) instead of the example's ESCALATE: every
# plain-TCP caller is one identity, so after 256 pending escalations
# (--max-escalations-per-identity) each ESCALATE would turn into a DENY
# with a warn line (thousands per row), and the server CPU would measure
# the escalation table and the log, not the scoring. Base and new read
# the same copy.
set -eu
BUILD=${1:?usage: bench_lm_theory.sh BUILD_DIR [SECONDS] [CALLERS] [BASE_BUILD_DIR]}
SECS=${2:-5}
CALLERS=${3:-1,8}
BASE=${4:-}
SRC=$(cd "$(dirname "$0")/../.." && pwd)
MODEL=${BG_SHARED_DIR:-$SRC/../shared}/models/stories260K.bin
T=$(mktemp -d "${TMPDIR:-/tmp}/bg-bench-lmt.XXXXXX")
trap 'rm -rf "$T"' EXIT
mkdir "$T/lm"
cp "$MODEL" "$T/lm/stories260K.bin"
if [ "${BG_BENCH_TOKENIZER:-bytes}" = bpe ]; then
    "$BUILD/daemon/bayesguard" lm corpus --lines 20000 --seed 1 --out "$T/corpus.txt" >/dev/null
    "$BUILD/daemon/bayesguard" lm tokenizer train --data "$T/corpus.txt" --vocab 512 \
        --out "$T/lm/bytes512.tok"
else
    python3 "$SRC/scripts/lm_byte_tokenizer.py" "$T/lm/bytes512.tok"
fi
sed -e 's/tools: \["\*"\]/tools: ["lm_*"]/' -e 's/backend: auto/backend: cpu/' \
    -e 's/outcomes: receipts/outcomes: open/' -e 's/over_threshold: escalate/over_threshold: deny/' \
    "$SRC/policies/examples/lm_theory.yaml.example" > "$T/lm/lm_theory.yaml"
for want in 'tools: \["lm_\*"\]' 'backend: cpu' 'outcomes: open' 'over_threshold: deny'; do
    grep -q "$want" "$T/lm/lm_theory.yaml" || {
        echo "bench_lm_theory: the example policy changed shape: no '$want' after the edits" >&2
        exit 1
    }
done
cp "$SRC/bench/rpc/policies/email.yaml" "$T/lm/"
uptime
one() { # BUILD TOOL LABEL [CACHE_ENTRIES]
    echo "== $3: $2"
    BG_LM_SCORE_CACHE=${4:-0} "$1/bench/rpc/bench_rpc" --daemon "$1/daemon/bayesguardd" \
        --policies "$T/lm" --plugins "$1/plugins" --tool "$2" --seconds "$SECS" --warmup 1 \
        --callers "$CALLERS"
}
one "$BUILD" send_email "$BUILD"
if [ -n "$BASE" ]; then
    for round in 1 2; do
        one "$BASE" lm_delete_file "base $BASE (round $round)"
        one "$BUILD" lm_delete_file "new $BUILD (round $round)"
    done
else
    one "$BUILD" lm_delete_file "$BUILD"
fi
one "$BUILD" lm_delete_file "new $BUILD, score cache on" 4096
uptime
