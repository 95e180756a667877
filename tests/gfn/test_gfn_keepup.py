"""Sampled vs exact bounds through the real daemon over gRPC (issue 16,
item 4): exploding-bandit policies at d = 10, 12 and 14 (enumerable), each
twice — once exact, once with `spec.sampler.always: true` (the sampled path
on the same model and space: the gfn sampler, its defaults but a 2 x 64
MLP, K = 1024 samples, `spec.sampler.train_steps` 20) — and each of those
with the iid and the non-iid (alpha = 0.01) estimator. The daemon adds the
session sampler's search archive to each sampled verdict's candidates
(daemon/engine/sampled_archive.c, `spec.sampler.search` by default) and
refines them (daemon/engine/sampled_refine.c).

The 40 observations (r ~ N(x.w*, 1) on one of 10 random arms, theta = the
largest true arm mean) reach every policy of a d
  - one at a time ("trickle" session): each Observe, then wait until the
    trainer has run the steps it owes (the plugin's train_steps counter on
    /metrics), so each history gets its own training, as in a session
    whose observations come slower than training;
  - all at once ("burst" session, one ObserveStream per policy): the
    trainer coalesces them into one job that walks the history's prefixes.
Then, over 64 contexts (the 10 arms and 54 random x), the bar of the issue:
  - the sampled iid and non-iid bounds are >= the exact ones - 1e-9 in
    >= 97 % of the contexts (at most 1 of 64 below), and
  - the sampled iid cautious hypothesis's exact posterior is within a
    factor 10 of the exact cautious one's in every context (the ratio is
    exp of the log-likelihood difference: the bandit's prior is uniform).
Tolerances: 1e-9 on a bound is the float noise of two evaluations of the
same hypotheses' formula, so any hypothesis the sampler missed that the
exact bound depends on shows; the factor 10 is 2.3 nats. Measured
(2026-12-06): 0 below and ratio 1 in every context, both sessions, all
three d. d = 14 was left out before the refinement: with 40 steps per
observation, trickle 12 (iid) / 8 (non-iid) contexts below and 3 off by
> 10x, burst 10 / 4 and 0 (docs/GFLOWNET.md "Refinement"). Seeds:
ENV_SEEDS are the environments (w*, arms, data, contexts); they were not
used to choose the plugin's defaults nor the refinement. Under ASan
(BG_SANITIZE=1) only d = 10 runs, with the same bar and history. LONG:
~2.5 min for d = 10 and 12 plus 3.5 min for d = 14 here under load 20 on
2 cores (d = 14 alone, 20 steps: 209 s; an estimated ~20 s idle).
Run with /usr/bin/python3 (ctest sets the environment)."""
import math
import os
import random
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import bgmetrics  # noqa: E402
import bgtest  # noqa: E402
from bgtest import Daemon, guard_pb2  # noqa: E402

ASAN = os.environ.get("BG_SANITIZE") == "1"
DIMS = (10,) if ASAN else (10, 12, 14)
N_OBS = 40
N_ARMS, N_CTX, K, SIGMA = 10, 64, 1024, 1.0
# optimiser steps per observation (spec.sampler.train_steps), by d
TRAIN_STEPS = {10: 20, 12: 20, 14: 20}
ENV_SEEDS = {10: 1010, 12: 1012, 14: 1014}
TOL = 1e-9

POLICY = """apiVersion: bayesguard/v1
kind: GuardPolicy
metadata: {name: %(name)s}
spec:
  match: {tools: ["%(name)s"]}
  model: {plugin: bandit, config: {features: %(d)d, sigma: 1.0, theta: %(theta)d}}
  estimator: %(est)s
%(sampler)s  threshold: 0.5
  session: context.session
  outcomes: open
  features: from_request
"""
SAMPLER = """  sampler:
    plugin: gfn
    samples: %d
    train_steps: %%d
    always: true
    config: {hidden: 64}
""" % K
ESTIMATORS = {"i": "{plugin: iid}", "n": "{plugin: noniid, alpha: 0.01}"}


class Env:
    """One bandit environment of d bits: w*, arms, theta, data, contexts."""

    def __init__(self, d):
        rng = random.Random(ENV_SEEDS[d])
        self.d = d
        self.w_star = rng.getrandbits(d)
        self.arms = [rng.getrandbits(d) for _ in range(N_ARMS)]
        self.theta = max(bin(a & self.w_star).count("1") for a in self.arms)
        self.data = []
        for _ in range(N_OBS):
            m = rng.choice(self.arms)
            self.data.append((self.x(m), bin(m & self.w_star).count("1") + rng.gauss(0, SIGMA)))
        self.contexts = [self.x(a) for a in self.arms]
        self.contexts += [self.x(rng.getrandbits(d)) for _ in range(N_CTX - N_ARMS)]

    def x(self, m):
        """Features of an id-layout mask (w_k = id bit d-1-k)."""
        return [float(m >> (self.d - 1 - k) & 1) for k in range(self.d)]

    def loglik(self, i):
        w = bgtest.bandit_w(i, self.d)
        return sum(-0.5 * ((r - sum(a * b for a, b in zip(x, w))) / SIGMA) ** 2
                   for x, r in self.data)

    def name(self, kind, est):
        return "%s%d%s" % (kind, self.d, est)


def write_policies(tmp, envs):
    for e in envs:
        for kind in "xs":
            for est in "in":
                name = e.name(kind, est)
                with open(os.path.join(tmp, name + ".yaml"), "w") as f:
                    f.write(POLICY % {"name": name, "d": e.d, "theta": e.theta,
                                      "est": ESTIMATORS[est],
                                      "sampler": SAMPLER % TRAIN_STEPS[e.d] if kind == "s"
                                      else ""})


def request(tool, x, session, r=None):
    a = guard_pb2.Action(tool=tool, features=x)
    c = guard_pb2.Context(session=session)
    if r is None:
        return guard_pb2.EvaluateRequest(action=a, context=c)
    return guard_pb2.ObserveRequest(action=a, context=c, harmed=False, value=r)


def train_steps(addr):
    fams = bgmetrics.scrape(addr)
    name = "bayesguard_plugin_gfn_train_steps"
    return bgmetrics.value(fams, name) if name in fams else 0


def compare(d, e, session):
    """The bar over the 64 contexts; returns (below iid, below non-iid, far, worst ratio)."""
    below = {"i": 0, "n": 0}
    far, worst = 0, 0.0
    for x in e.contexts:
        v = {}
        for kind in "xs":
            for est in "in":
                name = e.name(kind, est)
                v[kind + est] = d.evaluate(request(name, x, session))
                assert v[kind + est].policy == name, v[kind + est]
                want = guard_pb2.SAMPLED if kind == "s" else guard_pb2.EXACT
                assert v[kind + est].bound_kind == want, (name, v[kind + est])
                assert v[kind + est].observations == N_OBS, v[kind + est]
        assert v["si"].samples == K and v["sn"].samples == K, v["si"]
        for est in "in":
            below[est] += v["s" + est].harm_bound < v["x" + est].harm_bound - TOL
        gap = e.loglik(v["si"].cautious.id) - e.loglik(v["xi"].cautious.id)
        far += abs(gap) > math.log(10)
        worst = gap if abs(gap) > abs(worst) else worst
    return below["i"], below["n"], far, worst


def run_env(d, addr, e, steps_seen):
    """Both sessions of one environment; returns the trainer counter after."""
    policies = [e.name("s", est) for est in "in"]
    everyone = [e.name(kind, est) for kind in "xs" for est in "in"]
    # one at a time: each observation trained on before the next arrives
    for x, r in e.data:
        for name in everyone:
            o = d.call("Observe", request(name, x, "trickle", r))
            assert o.observations >= 1, o
        steps_seen += TRAIN_STEPS[e.d] * len(policies)
        bgtest.wait_for(lambda: train_steps(addr) >= steps_seen, 300.0,
                        "d=%d: the trainer to run %d steps" % (e.d, steps_seen), interval=0.01)
    # all at once: one stream per policy, the trainer coalesces
    fn = d.channel().stream_unary(
        "/bayesguard.v1.Guard/ObserveStream",
        request_serializer=guard_pb2.ObserveRequest.SerializeToString,
        response_deserializer=guard_pb2.ObserveStreamResponse.FromString)
    for name in everyone:
        resp = fn(iter([request(name, x, "burst", r) for x, r in e.data]), timeout=60)
        assert resp.accepted == N_OBS, resp
    steps_seen += TRAIN_STEPS[e.d] * N_OBS * len(policies)
    bgtest.wait_for(lambda: train_steps(addr) >= steps_seen, 900.0,
                    "d=%d: the trainer to run %d steps" % (e.d, steps_seen), interval=0.02)
    assert train_steps(addr) == steps_seen, (train_steps(addr), steps_seen)
    failures = []
    for session in ("trickle", "burst"):
        bi, bn, far, worst = compare(d, e, session)
        print("d=%d %-7s %d observations, K=%d, %d contexts: sampled bound below exact in "
              "%d (iid) and %d (non-iid alpha 0.01); cautious posterior off by > 10x in %d "
              "(worst log ratio %.3g)" % (e.d, session, N_OBS, K, N_CTX, bi, bn, far, worst))
        sys.stdout.flush()
        if (N_CTX - bi) * 100 < 97 * N_CTX or (N_CTX - bn) * 100 < 97 * N_CTX or far:
            failures.append("d=%d %s: %d/%d below, %d far" % (e.d, session, bi, bn, far))
    return steps_seen, failures


def test_sampled_vs_exact_over_the_wire():
    bgtest.require_daemon()
    tmp = tempfile.mkdtemp(prefix="bgkeep-")
    try:
        envs = [Env(dd) for dd in DIMS]
        write_policies(tmp, envs)
        with Daemon(policies=tmp, args=["--metrics-listen", "127.0.0.1:0"]) as d:
            addr = bgmetrics.metrics_addr(d)
            steps, failures = 0, []
            for e in envs:
                steps, f = run_env(d, addr, e, steps)
                failures += f
            assert not failures, failures
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    bgtest.main([test_sampled_vs_exact_over_the_wire])
