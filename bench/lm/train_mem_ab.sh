#!/bin/bash
# train_mem_ab.sh — `bayesguard lm train`'s printed peak memory, its real
# max RSS (/usr/bin/time -v) and tokens/s, for two builds in one run,
# alternated A B B A per round (load on a shared machine drifts; only the
# ratio within a run means anything). Not a test (docs/PERFORMANCE.md,
# "Training on the CPU").
#
#   bench/lm/train_mem_ab.sh BEFORE_CLI AFTER_CLI [ROUNDS] [-- lm train args]
#
# Defaults: 2 rounds (A B B A each: 4 runs a side), the 15M shape
# from scratch: --init 288,6,6,6,768,32000,256 --batch 8 --seq 256 --steps 3
# on NIDS (default 40000) token ids drawn with seed 1 (awk's srand(1); the
# held-out tenth, evaluated before and after, stays small). tokens/s is
# batch x seq over the median of each run's step times (steps 2.., the
# first grows the GEMM's packing slots), medians over a side's runs; the
# process's CPU seconds (user + sys: setup, two held-out evals, the steps)
# as the figure that load does not scale.
# Scratch under ${TMPDIR:-/tmp}/logitchunk-bench.XXXX, removed at exit.
set -euo pipefail
A=$(realpath "${1:?before cli}")
Bc=$(realpath "${2:?after cli}")
ROUNDS=${3:-2}
shift $(($# >= 3 ? 3 : $#))
[ "${1:-}" = "--" ] && shift
ARGS=("$@")
if [ ${#ARGS[@]} -eq 0 ]; then
    ARGS=(--init 288,6,6,6,768,32000,256 --batch 8 --seq 256 --steps 3 --seed 1 --backend cpu)
fi
W=$(mktemp -d "${TMPDIR:-/tmp}/logitchunk-bench.XXXX")
trap 'rm -rf "$W"' EXIT
NIDS=${NIDS:-40000}
awk -v n="$NIDS" 'BEGIN { srand(1); for (i = 0; i < n; i++) printf "%d ", int(rand() * 32000); print "" }' \
    >"$W/ids.txt"
BT=1
for ((i = 0; i < ${#ARGS[@]}; i++)); do
    case "${ARGS[$i]}" in --batch | --seq) BT=$((BT * ${ARGS[$((i + 1))]})) ;; esac
done
echo "date $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg) ids $NIDS args: ${ARGS[*]}"
one() { # label cli
    local out="$W/out.$1" tv="$W/time.$1"
    (cd "$W" && /usr/bin/time -v "$2" lm train --data ids.txt --ids --out "o.$1" "${ARGS[@]}" \
        >"$out" 2>"$tv") || { echo "$1 failed:"; tail -5 "$tv"; exit 1; }
    local peak rss ms cpu loss
    peak=$(sed -n 's/.*peak memory \([0-9.]*\) MiB.*/\1/p' "$out")
    rss=$(sed -n 's/.*Maximum resident set size (kbytes): \([0-9]*\).*/\1/p' "$tv")
    cpu=$(awk -F': ' '/User time|System time/ { t += $2 } END { printf "%.2f", t }' "$tv")
    ms=$(sed -n 's/^step \([0-9]*\) loss .*(\([0-9.]*\) ms)$/\1 \2/p' "$out" |
        awk '$1 > 1 { print $2 }' | sort -n | awk '{ v[NR] = $1 } END { print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
    loss=$(sed -n 's/^step 1 loss \([0-9.]*\).*/\1/p' "$out")
    printf '%-6s peak %8.2f MiB  maxrss %8.2f MiB  step %9.1f ms  %8.1f tok/s  cpu %7.2f s  step1 loss %s  load %s\n' \
        "$1" "$peak" "$(echo "$rss / 1024" | bc -l)" "$ms" "$(echo "$BT * 1000 / $ms" | bc -l)" \
        "$cpu" "$loss" "$(cut -d' ' -f1 /proc/loadavg)"
    echo "$1 $peak $rss $ms $cpu" >>"$W/rows"
    rm -rf "$W/o.$1"
}
for ((r = 1; r <= ROUNDS; r++)); do
    one before "$A"
    one after "$Bc"
    one after "$Bc"
    one before "$A"
done
awk -v bt="$BT" '
function med(a, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
{ k = $1; n[k]++; p[k, n[k]] = $2; r[k, n[k]] = $3 / 1024; s[k, n[k]] = $4; c[k, n[k]] = $5 }
END {
    for (k in n) { for (i = 1; i <= n[k]; i++) { pp[i] = p[k, i]; rr[i] = r[k, i]; ss[i] = s[k, i]; cc[i] = c[k, i] }
        P[k] = med(pp, n[k]); MR[k] = med(rr, n[k]); S[k] = med(ss, n[k]); C[k] = med(cc, n[k]) }
    printf "median  before: peak %.2f MiB, maxrss %.2f MiB, %.1f tok/s, %.2f CPU-s a run (%d runs)\n", P["before"], MR["before"], bt * 1000 / S["before"], C["before"], n["before"]
    printf "median  after:  peak %.2f MiB, maxrss %.2f MiB, %.1f tok/s, %.2f CPU-s a run (%d runs)\n", P["after"], MR["after"], bt * 1000 / S["after"], C["after"], n["after"]
    printf "after/before: peak %.3f, maxrss %.3f, tokens/s %.3f, CPU-s a run %.3f\n", P["after"] / P["before"], MR["after"] / MR["before"], S["before"] / S["after"], C["after"] / C["before"]
}' "$W/rows"
echo "end $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
