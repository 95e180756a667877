#!/usr/bin/env python3
"""gemm_rand.py — the GEMM bench's paired children for several variants,
many short children in a random order, with a bootstrap interval for each
variant's difference from the first.

Why not gemm_ab.sh: on the shared 2-vCPU Zen 3 one child's paired median
(ours / OpenBLAS per CPU-second over its rounds) moves by +-5 % from one
child to the next with no change at all (each process gets its own
physical pages, and the host's load drifts over minutes), so gemm_ab.sh's
six children per build cannot tell 0.97 from 1.00. Here each child is
short (7 rounds), a block runs every variant once in a fresh random
order (drift hits every variant alike), and the summary says how sure it
is: each variant's median with a 95 % percentile-bootstrap interval
(2,000 resamples of the children, seeded), and its difference of medians
from the first variant with the same kind of interval.
With 20 blocks the interval's half-width was 2-4 % on the dW cells
(docs/PERFORMANCE.md, "Two-thread dW, many short children").

    bench/lm/gemm_rand.py [--blocks N] [--threads T] [--rounds R]
        [--shapes "w2 dw,wq dw"] [--seed S] [--keep DIR] [--min-blas G]
        NAME=BG_BENCH_LM[:VAR=VALUE,VAR=VALUE] ...

The first NAME is the baseline. A variant is a bg_bench_lm binary and
environment for its child (one binary under several environments compares
settings in one build; the same binary and environment twice is a null).
--min-blas G keeps only the rows where OpenBLAS got at least G GFLOP/s by
the clock (110 on the Zen 3 at two threads: both cores). OpenBLAS is
forced to its Haswell core (OPENBLAS_CORETYPE, overridable). Not a test;
only the ratios of one run mean anything.
Two-thread rows also say where the two threads ran: the child's LAT line
(bench_gemm.c: the one-way latency of a cache line between the two CPUs,
median over the rounds). Each child's line shows it, and the summary
splits each two-thread variant's children at --near-ns (default 120):
the medians of those that ran near (a shared cache, ~55 ns on the Zen 3)
and far (~220 ns), for a VM whose host moves its vCPUs within seconds.
"""
import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time


def parse_variant(text):
    name, sep, rest = text.partition("=")
    if not sep or not name or "." in name or "/" in name:
        sys.exit("gemm_rand.py: a variant is NAME=BINARY[:VAR=VALUE,...], got '%s'" % text)
    binary, _, envs = rest.partition(":")
    env = {}
    for kv in filter(None, envs.split(",")):
        k, sep, v = kv.partition("=")
        if not sep:
            sys.exit("gemm_rand.py: '%s' in '%s' is not VAR=VALUE" % (kv, text))
        env[k] = v
    if not os.access(binary, os.X_OK):
        sys.exit("gemm_rand.py: %s is not an executable" % binary)
    return name, os.path.realpath(binary), env


def rows(path, min_blas):
    """(shape, threads) -> (paired, ours/OpenBLAS by the clock, LAT median
    in ns or None) of one child."""
    out, lat = {}, {}
    with open(path) as f:
        for line in f:
            # ROW idx threads wall_ours wall_blas cpu_ours cpu_blas diff bf16 bf16 paired ...
            # LAT idx threads median max (ns; <= 0: not measured)
            x = line.split()
            if x and x[0] == "ROW" and float(x[4]) >= min_blas:
                out[(x[1], x[2])] = (float(x[10]), float(x[3]) / float(x[4]))
            elif x and x[0] == "LAT" and float(x[3]) > 0:
                lat[(x[1], x[2])] = float(x[3])
    return {k: v + (lat.get(k),) for k, v in out.items()}


def boot(rng, a, b=(), n=2000):
    """95 % percentile-bootstrap interval of median(a), or of median(a) -
    median(b) when b is given (each resampled on its own)."""
    d = sorted(
        statistics.median(rng.choices(a, k=len(a))) -
        (statistics.median(rng.choices(b, k=len(b))) if b else 0.0) for _ in range(n))
    return d[int(0.025 * n)], d[int(0.975 * n) - 1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--blocks", type=int, default=20)
    ap.add_argument("--threads", default="2")
    ap.add_argument("--rounds", default="7")
    ap.add_argument("--shapes", default="w2 dw,wq dw,w1 dw")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", help="folder for every child's output (new or empty)")
    ap.add_argument("--min-blas", type=float, default=0.0)
    ap.add_argument("--near-ns", type=float, default=120.0)
    ap.add_argument("variant", nargs="+")
    a = ap.parse_args()
    variants = [parse_variant(v) for v in a.variant]
    if len({v[0] for v in variants}) != len(variants):
        sys.exit("gemm_rand.py: variant names must differ")
    if a.keep:
        os.makedirs(a.keep, exist_ok=True)
        if os.listdir(a.keep):
            sys.exit("gemm_rand.py: --keep %s is not empty; name a new folder" % a.keep)
        work = a.keep
    else:
        tmp = tempfile.TemporaryDirectory(prefix="gemm-rand.")
        work = tmp.name
    rng = random.Random(a.seed)
    got = {}  # (shape, threads, name) -> [(paired, clock, LAT ns or None)]
    n = 0
    for _ in range(a.blocks):
        order = variants[:]
        rng.shuffle(order)
        for name, binary, venv in order:
            n += 1
            env = dict(os.environ)
            env.setdefault("OPENBLAS_CORETYPE", "Haswell")
            env.update(BG_BENCH_GEMM_THREADS=a.threads, BG_BENCH_GEMM_ROUNDS=a.rounds,
                       BG_BENCH_GEMM_SHAPES=a.shapes, BG_BENCH_GEMM_NULL="")
            env.update(venv)
            path = os.path.join(work, "%d.%s" % (n, name))
            when = "%s load %s" % (time.strftime("%H:%M:%S", time.gmtime()),
                                   open("/proc/loadavg").read().split()[0])
            with open(path, "w") as f:
                rc = subprocess.run([binary, "--gemm-child"], env=env, stdout=f,
                                    stderr=subprocess.STDOUT).returncode
            if rc != 0:
                sys.exit("gemm_rand.py: child %s exited %d (output: %s)" % (name, rc, path))
            r = rows(path, a.min_blas)
            print("%s %-8s %s" % (when, name, " ".join(
                "[%s t%s %.3f clock %.3f%s]" % (k[0], k[1], p, c, " lat %.0f" % l if l else "")
                for k, (p, c, l) in sorted(r.items()))),
                flush=True)
            for k, v in r.items():
                got.setdefault((k[0], k[1], name), []).append(v)
    base = variants[0][0]
    print("per shape (bench_gemm.c index, threads) and variant: median [95 %% bootstrap "
          "interval] (min-max) of the children's paired medians, n, median by the clock; "
          "against %s: the difference of medians [95 %% bootstrap interval]" % base)
    brng = random.Random(a.seed + 1)
    for key in sorted({(s, t) for s, t, _ in got}, key=lambda k: (int(k[0]), int(k[1]))):
        for name, _, _ in variants:
            v = got.get(key + (name,))
            if not v:
                continue
            p = [x[0] for x in v]
            mlo, mhi = boot(brng, p) if len(p) > 1 else (p[0], p[0])
            line = "shape %s t%s %-8s %.3f [%.3f, %.3f] (%.3f-%.3f) n=%d clock %.3f" % (
                key[0], key[1], name, statistics.median(p), mlo, mhi, min(p), max(p), len(p),
                statistics.median(x[1] for x in v))
            b = got.get(key + (base,))
            if name != base and b and len(p) > 1 and len(b) > 1:
                bp = [x[0] for x in b]
                lo, hi = boot(brng, p, bp)
                line += "  vs %s %+.3f [%+.3f, %+.3f]" % (
                    base, statistics.median(p) - statistics.median(bp), lo, hi)
            print(line)
            near = [x[0] for x in v if x[2] is not None and x[2] < a.near_ns]
            far = [x[0] for x in v if x[2] is not None and x[2] >= a.near_ns]
            if near or far:
                print("    by LAT: near (< %.0f ns) %s n=%d; far %s n=%d" % (
                    a.near_ns, "%.3f" % statistics.median(near) if near else "-", len(near),
                    "%.3f" % statistics.median(far) if far else "-", len(far)))


if __name__ == "__main__":
    main()
