#!/bin/bash
# gemm_ab.sh — the GEMM bench's paired children (bg_bench_lm --gemm-child:
# ours ÷ OpenBLAS per CPU-second, round by round) for two builds in one
# run, with a null child (the second build against itself,
# BG_BENCH_GEMM_NULL=1) beside them: children in the order A, B, null,
# null, B, A per cycle, so load drifts hit both builds alike; only ratios
# within one run mean anything. Not a test (docs/PERFORMANCE.md, "CPU
# kernels (issue 13 item 8)"). Prints one line per child (UTC time, load
# average, build, then per shape: threads, paired median, by-the-clock
# ours ÷ OpenBLAS) and, at the end, per build and shape the median, min
# and max of the children's paired medians (shapes by their index in
# bench_gemm.c's g_shapes: 3 wq dw, 6 w1 dw, 9 w2 dw, ...).
#
#   bench/lm/gemm_ab.sh A_BG_BENCH_LM B_BG_BENCH_LM [THREADS] [ROUNDS] [CYCLES] [SHAPES]
#
# Six children per build resolve differences of about 5 %, not 2 %: for
# smaller ones use bench/lm/gemm_rand.py (many short children in a random
# order, with bootstrap intervals).
#
# Defaults: 2 threads, 21 rounds, 2 cycles, SHAPES "w2 dw,wq dw,w1 dw"
# (BG_BENCH_GEMM_SHAPES' substrings). OpenBLAS forced to its Haswell core
# (OPENBLAS_CORETYPE, overridable): the AVX2-only machines' best.
#
# GEMM_AB_KEEP=DIR keeps every child's whole output in DIR (N.A, N.B,
# N.null; DIR new or empty). GEMM_AB_BOTH=G (GFLOP/s) adds a second
# summary of only the rows where OpenBLAS got at least G by the clock: on
# a shared machine, the
# children whose threads had all their cores (110 on the 2-vCPU Zen 3 at
# two threads, where one core gives 55-60; docs/PERFORMANCE.md "dW's
# fused blocks at two threads on the Zen 3").
set -euo pipefail
A=$(realpath "${1:?build A bg_bench_lm}")
B=$(realpath "${2:?build B bg_bench_lm}")
THREADS=${3:-2}
ROUNDS=${4:-21}
CYCLES=${5:-2}
SHAPES=${6:-w2 dw,wq dw,w1 dw}
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell}
if [ -n "${GEMM_AB_KEEP:-}" ]; then
    # the summary reads every child file in it: an earlier run's would
    # join this one's medians
    if [ -e "$GEMM_AB_KEEP" ] && [ -n "$(ls -A "$GEMM_AB_KEEP")" ]; then
        echo "gemm_ab.sh: GEMM_AB_KEEP=$GEMM_AB_KEEP is not empty; name a new folder" >&2
        exit 2
    fi
    mkdir -p "$GEMM_AB_KEEP"
    W=$(realpath "$GEMM_AB_KEEP")
else
    W=$(mktemp -d "${TMPDIR:-/tmp}/gemm-ab.XXXX")
    trap 'rm -rf "$W"' EXIT
fi
BOTH=${GEMM_AB_BOTH:-}
n=0
for _ in $(seq 1 "$CYCLES"); do
    for v in A B null null B A; do
        bin=$A
        nul=
        [ "$v" != A ] && bin=$B
        [ "$v" = null ] && nul=1
        n=$((n + 1))
        when="$(date -u +%T) load $(cut -d' ' -f1 /proc/loadavg)"
        BG_BENCH_GEMM_NULL=$nul BG_BENCH_GEMM_THREADS=$THREADS BG_BENCH_GEMM_ROUNDS=$ROUNDS \
            BG_BENCH_GEMM_SHAPES="$SHAPES" "$bin" --gemm-child >"$W/$n.$v" 2>&1
        # ROW idx threads wall_ours wall_blas cpu_ours cpu_blas diff bf16 bf16 paired ...
        printf '%s %-4s %s\n' "$when" "$v" \
            "$(awk '/^ROW/ {printf "[%s t%s %s clock %.3f blas %.0f] ", $2, $3, $11, $4 / $5, $5}' \
                "$W/$n.$v")"
    done
done
# per build and shape: median (min-max) of the children's paired medians,
# over the ROW lines whose OpenBLAS clock GFLOP/s is at least $1
summary() {
    for v in A B null; do
        cat "$W"/*."$v" | awk -v v="$v" -v min="$1" '/^ROW/ && $5 >= min {k = $2 " t" $3
            x[k] = x[k] " " $11} END {for (k in x) print v, k, x[k]}'
    done | sort | while read -r v i t rest; do
        # shellcheck disable=SC2086
        printf '%-4s %s %s %s\n' "$v" "$i" "$t" "$(printf '%s\n' $rest | sort -g |
            awk '{a[NR] = $1} END {m = NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2;
                  printf "%.3f (%.3f-%.3f), %d", m, a[1], a[NR], NR}')"
    done
}
echo "per build and shape (index t threads): median (min-max) of the children's paired medians, n"
summary 0
if [ -n "$BOTH" ]; then
    echo "the same, only rows where OpenBLAS got >= $BOTH GFLOP/s by the clock (all cores):"
    out=$(summary "$BOTH")
    echo "${out:-  (none)}"
fi
