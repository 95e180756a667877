"""Evaluate / Observe over the wire with a bandit policy (issue 3, point 5):
the verdict carries every field, and the posterior moves exactly as the math
says — checked against an independent brute-force computation here in
Python (exact Gaussian likelihood products over the 16 hypotheses of a
d = 4 exploding bandit, the spec's stable order and plausible-set rule).
Also: `bayesguard replay` seeds a session from a JSON-lines file, stops at
a bad line naming file:line, and observations survive a restart with
--data-dir. When the data directory refuses a write (RLIMIT_FSIZE set on the
running daemon: a short write, then EFBIG), Observe answers UNAVAILABLE saying
nothing was stored, the daemon keeps serving with the posterior unchanged, the
log keeps only acknowledged records, and the retry succeeds once writes are
accepted again. Run with /usr/bin/python3 (ctest sets the environment)."""
import json
import math
import os
import random
import resource
import shutil
import sys
import tempfile

import grpc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import bgtest  # noqa: E402
import bgmetrics  # noqa: E402
from bgtest import Daemon, guard_pb2  # noqa: E402

D, THETA, SIGMA, ALPHA, C = 4, 2.0, 1.0, 0.01, 0.3
POLICY = """apiVersion: bayesguard/v1
kind: GuardPolicy
metadata: {name: arms}
spec:
  match: {tools: ["pull_*"]}
  model: {plugin: bandit, config: {features: 4, sigma: 1.0, theta: 2.0}}
  estimator: {plugin: noniid, alpha: 0.01}
  threshold: 0.3
  over_threshold: deny
  session: context.session
  outcomes: open
  features: from_request   # the bandit experiment: the arm is the request's
"""


def bits(i):
    return bgtest.bandit_w(i, D)


def harm(x, i):
    return bgtest.bandit_harm(x, i, D, THETA, SIGMA)


class Brute:
    """The posterior and the non-iid verdict, computed independently."""

    def __init__(self):
        self.logw = [0.0] * (1 << D)

    def observe(self, x, r):
        for i in range(1 << D):
            m = sum(a * b for a, b in zip(x, bits(i)))
            self.logw[i] += -0.5 * ((r - m) / SIGMA) ** 2

    def post(self):
        mx = max(self.logw)
        w = [math.exp(v - mx) for v in self.logw]
        z = sum(w)
        return [v / z for v in w]

    def verdict(self, x):
        p = self.post()
        order = sorted(range(len(p)), key=lambda i: (-p[i], i))
        s, kept = 0.0, []
        for k, i in enumerate(order):
            s += p[i]
            if k > 0 and p[i] < ALPHA * s:
                break
            kept.append(i)
        bound = max(harm(x, i) for i in kept)
        return bound, len(kept), sum(p[i] * harm(x, i) for i in range(len(p)))


def label(i):
    return "w=" + "".join(str(b) for b in bits(i))


def write_policy(tmp):
    d = os.path.join(tmp, "pol")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "arms.yaml"), "w") as f:
        f.write(POLICY)
    return d


def close(a, b, tol=1e-9):
    return abs(a - b) <= tol * max(1.0, abs(b))


def test_verdict_and_posterior():
    rnd = random.Random(7)
    tmp = tempfile.mkdtemp(prefix="bgeng-")
    truth = 0b1011
    with Daemon(policies=write_policy(tmp)) as d:
        bf = Brute()
        arm = [1.0, 1.0, 0.0, 1.0]
        for t in range(12):
            v = d.evaluate(guard_pb2.EvaluateRequest(
                action=guard_pb2.Action(tool="pull_arm", id="c%d" % t, features=arm),
                context=guard_pb2.Context(session="s1")))
            bound, size, pred = bf.verdict(arm)
            assert v.policy == "arms" and v.estimator == "noniid" and v.model == "bandit", v
            assert v.revision and v.decision_id, v
            assert v.bound_kind == guard_pb2.EXACT, v
            assert v.observations == t, (v.observations, t)
            assert close(v.harm_bound, bound), (t, v.harm_bound, bound)
            assert v.plausible_set_size == size, (t, v.plausible_set_size, size)
            assert close(v.posterior_predictive, pred), (v.posterior_predictive, pred)
            assert close(v.threshold, C)
            want = guard_pb2.DENY if bound > C else guard_pb2.ALLOW
            assert v.decision == want, (v.decision, bound)
            post = bf.post()
            ci = v.cautious.id
            assert v.cautious.label == label(ci), v.cautious
            assert close(v.cautious.posterior, post[ci]), (v.cautious.posterior, post[ci])
            assert close(v.cautious.harm, harm(arm, ci)), v.cautious
            assert close(v.cautious.harm, v.harm_bound)
            # observe a pull of a random arm with a reward from the truth
            x = [float(rnd.random() < 0.5) for _ in range(D)]
            r = sum(a * b for a, b in zip(x, bits(truth))) + rnd.gauss(0, SIGMA)
            o = d.call("Observe", guard_pb2.ObserveRequest(
                action=guard_pb2.Action(tool="pull_arm", features=x),
                context=guard_pb2.Context(session="s1"), harmed=r > THETA, value=r))
            bf.observe(x, r)
            post = bf.post()
            mp = max(range(len(post)), key=lambda i: (post[i], -i))
            assert o.observations == t + 1 and o.session == "s1" and o.policy == "arms", o
            assert o.posterior.hypotheses == 16
            assert o.posterior.map_id == mp and o.posterior.map_label == label(mp), (o, mp)
            assert close(o.posterior.map_posterior, post[mp])
            ent = -sum(p * math.log(p) for p in post if p > 0)
            assert close(o.posterior.entropy_nats, ent), (o.posterior.entropy_nats, ent)
        # other sessions are untouched
        v = d.evaluate(guard_pb2.EvaluateRequest(
            action=guard_pb2.Action(tool="pull_arm", features=arm),
            context=guard_pb2.Context(session="s2")))
        assert v.observations == 0 and v.plausible_set_size == 16, v
        # wrong feature count: INVALID_ARGUMENT saying what to fix
        bgtest.expect_code(lambda: d.evaluate(guard_pb2.EvaluateRequest(
            action=guard_pb2.Action(tool="pull_arm", features=[1.0]),
            context=guard_pb2.Context(session="s1"))), bgtest.grpc.StatusCode.INVALID_ARGUMENT,
            ["expects 4"])
    shutil.rmtree(tmp, ignore_errors=True)


def test_replay_and_restart():
    rnd = random.Random(11)
    tmp = tempfile.mkdtemp(prefix="bgeng-")
    data = os.path.join(tmp, "data")
    os.makedirs(data)
    truth = 0b0110
    lines = []
    for t in range(25):
        x = [float(rnd.random() < 0.5) for _ in range(D)]
        r = sum(a * b for a, b in zip(x, bits(truth))) + rnd.gauss(0, SIGMA)
        lines.append('{"tool": "pull_arm", "features": [%s], "value": %.17g, "harmed": %s, '
                     '"arguments": {"arm": %d}, "attributes": {"who": "ops\\u00e9"}}'
                     % (", ".join("%g" % a for a in x), r, "true" if r > THETA else "false", t))
    good = os.path.join(tmp, "good.jsonl")
    with open(good, "w") as f:
        f.write("\n".join(lines[:20]) + "\n\n")
    bad = os.path.join(tmp, "bad.jsonl")
    with open(bad, "w") as f:
        f.write("\n".join(lines[20:22]) + '\n{"tool": "pull_arm", "feature": [1]}\n'
                + "\n".join(lines[22:]) + "\n")
    pol = write_policy(tmp)
    with Daemon(policies=pol, args=["--data-dir", data]) as d:
        r = d.cli("replay", good, "--session", "rp", check=0)
        assert "replayed 20 observations" in r.stdout, r.stdout
        bf20 = Brute()
        for ln in lines[:20]:
            o = json.loads(ln)
            bf20.observe(o["features"], o["value"])
        p20 = bf20.post()
        mp = max(range(len(p20)), key=lambda i: (p20[i], -i))
        assert "MAP           %s (id %d)" % (label(mp), mp) in r.stdout, (r.stdout, mp)
        r2 = d.cli("replay", bad, "--session", "rp", check=1)
        assert "bad.jsonl:3:" in r2.stderr and "feature" in r2.stderr, r2.stderr
        assert "2 observations before line 3 were stored" in r2.stderr, r2.stderr
        v = d.evaluate(guard_pb2.EvaluateRequest(
            action=guard_pb2.Action(tool="pull_arm", features=[1, 1, 1, 1]),
            context=guard_pb2.Context(session="rp")))
        assert v.observations == 22, v
    # the 22 stored observations survive a restart
    bf22 = Brute()
    for ln in lines[:22]:
        o = json.loads(ln)
        bf22.observe(o["features"], o["value"])
    with Daemon(policies=pol, args=["--data-dir", data]) as d:
        v = d.evaluate(guard_pb2.EvaluateRequest(
            action=guard_pb2.Action(tool="pull_arm", features=[1, 1, 1, 1]),
            context=guard_pb2.Context(session="rp")))
        assert v.observations == 22, v
        bound, size, pred = bf22.verdict([1, 1, 1, 1])
        assert close(v.harm_bound, bound) and v.plausible_set_size == size, (v, bound, size)
        assert close(v.posterior_predictive, pred), (v.posterior_predictive, pred)
    shutil.rmtree(tmp, ignore_errors=True)


def test_refused_write():
    tmp = tempfile.mkdtemp(prefix="bgeng-")
    data = os.path.join(tmp, "data")
    os.makedirs(data)
    log = os.path.join(data, "obs-00000000000000000001.bglog")
    pol = write_policy(tmp)
    arm = [1.0, 0.0, 1.0, 1.0]

    def observe(d, r):
        return d.call("Observe", guard_pb2.ObserveRequest(
            action=guard_pb2.Action(tool="pull_arm", features=arm),
            context=guard_pb2.Context(session="fs"), harmed=r > THETA, value=r))

    def evaluate(d):
        return d.evaluate(guard_pb2.EvaluateRequest(
            action=guard_pb2.Action(tool="pull_arm", features=arm),
            context=guard_pb2.Context(session="fs")))

    with Daemon(policies=pol, args=["--data-dir", data, "--metrics-listen", "127.0.0.1:0"]) as d:
        for r in (1.0, 2.5, 0.5):
            observe(d, r)
        before = evaluate(d)
        size = os.path.getsize(log)
        hard = resource.prlimit(d.proc.pid, resource.RLIMIT_FSIZE)[1]
        resource.prlimit(d.proc.pid, resource.RLIMIT_FSIZE, (size + 5, hard))
        try:
            msg = bgtest.expect_code(lambda: observe(d, 3.0), grpc.StatusCode.UNAVAILABLE,
                                     ("obs-00000000000000000001.bglog", "not stored", "retry"))
        finally:
            resource.prlimit(d.proc.pid, resource.RLIMIT_FSIZE, (hard, hard))
        print("refused write:", msg)
        assert os.path.getsize(log) == size, "the half record was not cut"
        assert d.proc.poll() is None, "the daemon died (SIGXFSZ?)"
        assert d.health().status == 1  # SERVING
        st = d.call("Status", guard_pb2.StatusRequest())
        assert st.observations_refused == 1 and not st.observation_log_broken, st
        assert "observation log: 1 observations refused" in d.cli("status", check=0).stdout
        fams = bgmetrics.scrape(bgmetrics.metrics_addr(d))
        assert bgmetrics.value(fams, "bayesguard_observations_refused_total") == 1
        assert bgmetrics.value(fams, "bayesguard_observation_log_broken") == 0
        after = evaluate(d)
        assert after.observations == 3 and after.harm_bound == before.harm_bound, after
        o = observe(d, 3.0)  # the retry, once the disk takes writes
        assert o.observations == 4, o
        want = evaluate(d)
    with Daemon(policies=pol, args=["--data-dir", data]) as d:
        v = evaluate(d)
        assert v.observations == 4 and v.harm_bound == want.harm_bound, (v, want)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    bgtest.main([test_verdict_and_posterior, test_replay_and_restart, test_refused_write])
