#!/bin/sh
# bench_lm_theory.sh — Evaluate latency of an lm_theory policy with the 16
# theories of policies/examples/lm_theory.yaml.example (stories260K, the byte
# tokenizer of scripts/lm_byte_tokenizer.py, backend cpu), beside the
# enumerated email policy (bernoulli, 200 rates) on the same daemon, through
# bench_rpc (docs/PERFORMANCE.md, "lm_theory"). Not a test.
#
#   bench/rpc/bench_lm_theory.sh BUILD_DIR [SECONDS] [CALLERS]   (from the source root)
set -eu
BUILD=${1:?usage: bench_lm_theory.sh BUILD_DIR [SECONDS] [CALLERS]}
SECS=${2:-5}
CALLERS=${3:-1,8}
SRC=$(cd "$(dirname "$0")/../.." && pwd)
MODEL=${BG_SHARED_DIR:-$SRC/../shared}/models/stories260K.bin
T=$(mktemp -d "${TMPDIR:-/tmp}/bg-bench-lmt.XXXXXX")
trap 'rm -rf "$T"' EXIT
cp "$MODEL" "$T/stories260K.bin"
python3 "$SRC/scripts/lm_byte_tokenizer.py" "$T/bytes512.tok"
sed -e 's/tools: \["\*"\]/tools: ["lm_*"]/' -e 's/backend: auto/backend: cpu/' \
    -e 's/outcomes: receipts/outcomes: open/' \
    "$SRC/policies/examples/lm_theory.yaml.example" > "$T/lm_theory.yaml"
cp "$SRC/bench/rpc/policies/email.yaml" "$T/"
for tool in send_email lm_delete_file; do
    "$BUILD/bench/rpc/bench_rpc" --daemon "$BUILD/daemon/bayesguardd" --policies "$T" \
        --plugins "$BUILD/plugins" --tool "$tool" --seconds "$SECS" --warmup 1 \
        --callers "$CALLERS"
done
