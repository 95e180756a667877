#!/usr/bin/python3
"""bench_lmgfn_eval.py — what a sampled lm_gfn Evaluate costs in the real
daemon (issue 14): the policy of policies/examples/lm_gfn.yaml.example
(lm_theory sampled mode, 7 words, max_len 4; lm_gfn, K = 256) on
stories260K with the byte tokenizer, wall and the daemon's CPU seconds
(all its threads' schedstat) per Evaluate:

  prior first   a session without data: the sampler's K draws + scoring
  prior cached  the same again (the draw is cached per seed and round)
  trained first the first Evaluate after an Observe, once the background
                round (and the trainer's draw-ahead) is over
  trained again the same Evaluate again

Not a test; run by hand from a build tree (a loaded machine: compare rows
of one run, and say `uptime`):
  BG_BUILD_DIR=build BG_SOURCE_DIR=. BG_SHARED_DIR=../shared \\
    /usr/bin/python3 bench/lm/bench_lmgfn_eval.py [--samples K ...] [--reps N]
      [--backend cpu|vulkan] [--prior-only] [--baseline PLUGIN_DIR --rounds N]
(--baseline: a plugin directory whose bg_lm_gfn.so is another build, run
alternately with this one; with --backend vulkan set VK_DRIVER_FILES to
lavapipe's ICD on a GPU-less host.)
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

SRC = os.environ.get("BG_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.setdefault("BG_BUILD_DIR", os.path.join(SRC, "build"))
os.environ.setdefault("BG_PLUGIN_DIR", os.path.join(BUILD, "plugins"))
os.environ.setdefault("BG_PYTHONPATH", os.path.join(BUILD, "python"))
sys.path.insert(0, os.path.join(SRC, "tests", "python"))
sys.path.insert(0, os.path.join(SRC, "scripts"))
import bgtest  # noqa: E402
from bgtest import Daemon, guard_pb2  # noqa: E402
from lm_byte_tokenizer import write_tokenizer  # noqa: E402

import grpc  # noqa: E402

SHARED = os.environ.get("BG_SHARED_DIR", os.path.join(SRC, "..", "shared"))
EXAMPLE = os.path.join(SRC, "policies", "examples", "lm_gfn.yaml.example")
TOOL, ARGS = "delete_file", '{"path": "/tmp/x"}'


def cpu_s(pid):
    """CPU seconds of all the daemon's threads (schedstat: nanoseconds)."""
    tot = 0
    for t in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, t)) as f:
                tot += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass  # a thread that ended meanwhile
    return tot * 1e-9


def timed(d, session):
    c0, t0 = cpu_s(d.proc.pid), time.perf_counter()
    v = d.evaluate(guard_pb2.EvaluateRequest(
        action=guard_pb2.Action(tool=TOOL, arguments_json=ARGS),
        context=guard_pb2.Context(session=session)), timeout=600)
    return time.perf_counter() - t0, cpu_s(d.proc.pid) - c0, v


def policy_text(samples, backend):
    with open(EXAMPLE) as f:
        text = f.read()
    text = text.replace("samples: 256", "samples: %d" % samples)
    return text.replace("threads: 1}", "threads: 1, backend: %s}" % backend)


def run(samples, backend, reps, plugins=None, prior_only=False):
    tmp = tempfile.mkdtemp(prefix="bg-bench-lmgfn-eval-")
    try:
        pol = os.path.join(tmp, "p")
        os.mkdir(pol)
        os.symlink(os.path.join(SHARED, "models", "stories260K.bin"),
                   os.path.join(pol, "stories260K.bin"))
        write_tokenizer(os.path.join(pol, "bytes512.tok"))
        with open(os.path.join(pol, "lm_gfn.yaml"), "w") as f:
            f.write(policy_text(samples, backend))
        rows = []
        with Daemon(policies=pol, plugins=plugins, args=["--no-watch"], start_timeout=120) as d:
            for r in range(reps):
                fresh = "fresh%d-%d" % (samples, r)
                # a session without data: every fresh session has the same
                # seed, so only the first rep's first call draws
                rows.append(("prior first" if r == 0 else "prior (drawn before)",
                             timed(d, fresh)))
                rows.append(("prior cached", timed(d, fresh)))
                if prior_only:
                    continue
                s = "s%d-%d" % (samples, r)
                d.call("Observe", guard_pb2.ObserveRequest(
                    action=guard_pb2.Action(tool=TOOL, arguments_json=ARGS),
                    context=guard_pb2.Context(session=s), harmed=True), timeout=600)
                # the background round and the trainer's draw-ahead are
                # over when the daemon is idle (a bench, not a test: no
                # Evaluate of this session may run before the timed one)
                wait_idle(d)
                rows.append(("trained first", timed(d, s)))
                rows.append(("trained again", timed(d, s)))
        return rows
    finally:
        shutil.rmtree(tmp)


def wait_idle(d, quiet=0.02, window=1.0, deadline=1200.0):
    """Until the daemon spends under `quiet` of a CPU for two windows."""
    t_end, calm = time.time() + deadline, 0
    while calm < 2:
        c0 = cpu_s(d.proc.pid)
        time.sleep(window)
        calm = calm + 1 if cpu_s(d.proc.pid) - c0 < quiet * window else 0
        if time.time() > t_end:
            raise AssertionError("the daemon did not go idle")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, nargs="+", default=[256])
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--baseline", metavar="PLUGIN_DIR",
                    help="a plugin directory with the lm_gfn build to compare against "
                         "(run alternately with this build's, same policy)")
    ap.add_argument("--prior-only", action="store_true",
                    help="only the data-less rows (no training: lavapipe trains slowly)")
    ap.add_argument("--rounds", type=int, default=1, help="alternations with --baseline")
    a = ap.parse_args()
    print("uptime:", os.popen("uptime").read().strip())
    print("| build | K | call | wall ms | daemon CPU ms | bound | cautious |")
    print("|---|---|---|---|---|---|---|")
    builds = [("this", None)] + ([("baseline", a.baseline)] if a.baseline else [])
    for _ in range(a.rounds):
        for k in a.samples:
            for name, pdir in builds:
                for what, (wall, cpu, v) in run(k, a.backend, a.reps, pdir, a.prior_only):
                    print("| %s | %d | %s | %.1f | %.0f | %.6f | %s |"
                          % (name, k, what, wall * 1e3, cpu * 1e3, v.harm_bound,
                             v.cautious.label), flush=True)
    print("uptime:", os.popen("uptime").read().strip())


if __name__ == "__main__":
    main()
