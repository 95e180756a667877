"""A sampled verdict's sampler health over the wire (issue 16 item 3), with
the real daemon, the bandit model (d = 16, `enumerate: false`: the sampled
path) and the gfn sampler trained in the background.

Four policies on one model, each with its own tool: `loose` (limits that
always pass), and three whose min_ess is above any ess of K = 64 draws
(ess <= K), so their sampler is never trusted: `refuse` (on_unhealthy:
unavailable), `fallback` (deny) and `ask` (escalate, threshold 1 so the
bound alone would ALLOW). After 12 observations, one at a time:
  - loose: a SAMPLED verdict with Verdict.sampler set: healthy, no reason,
    1 <= ess <= K, residual and spread finite and >= 0, and — once the
    trainer has caught up (polled) — version_lag 0 and train_steps >= 20;
    the decision is the threshold's;
  - refuse: UNAVAILABLE whose message names min_ess and says to retry; the
    decision log records the error, not a decision;
  - fallback: DENY, sampler.healthy false, reason naming min_ess;
  - ask: ESCALATE, the same reason;
  - `bayesguard eval` prints the sampler line (fallback: UNHEALTHY, why);
  - the decision log's lines for the sampled verdicts carry the sampler
    object with the verdict's numbers.
Run with /usr/bin/python3 (ctest sets the environment)."""
import json
import os
import random
import shutil
import sys
import tempfile

import grpc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import bgtest  # noqa: E402
from bgtest import Daemon, guard_pb2  # noqa: E402

D, K, N_OBS = 16, 64, 12
POLICY = """apiVersion: bayesguard/v1
kind: GuardPolicy
metadata: {name: %(name)s}
spec:
  match: {tools: ["%(name)s"]}
  model: {plugin: bandit, config: {features: 16, sigma: 1.0, theta: 6.0, enumerate: false}}
  estimator: {plugin: iid}
  sampler:
    plugin: gfn
    samples: 64
    config: {loss: tb, hidden: 32, seed: 3}
%(limits)s
  threshold: %(threshold)s
  session: context.session
  outcomes: open
  features: from_request
"""
LOOSE = "    max_tb_residual: 1000000\n    min_ess: 0\n    max_version_lag: 1000000"
STRICT = "    min_ess: 100000\n    on_unhealthy: %s"


def write_policies(tmp):
    for name, limits, thr in [("loose", LOOSE, "0.5"), ("refuse", STRICT % "unavailable", "0.5"),
                              ("fallback", STRICT % "deny", "0.5"),
                              ("ask", STRICT % "escalate", "1.0")]:
        with open(os.path.join(tmp, name + ".yaml"), "w") as f:
            f.write(POLICY % {"name": name, "limits": limits, "threshold": thr})


def action(tool, x):
    return guard_pb2.Action(tool=tool, features=[float(v) for v in x])


def read_log(path):
    with open(path) as f:
        return [json.loads(l) for l in f.read().splitlines()]


def test_health_over_the_wire():
    bgtest.require_daemon()
    tmp = tempfile.mkdtemp(prefix="bghealth-")
    try:
        write_policies(tmp)
        log = os.path.join(tmp, "decisions.jsonl")
        with Daemon(policies=tmp, args=["--decision-log", log]) as d:
            rng = random.Random(11)
            w = [rng.randint(0, 1) for _ in range(D)]
            ctx = guard_pb2.Context(session="h1")
            for _ in range(N_OBS):
                xa = [rng.randint(0, 1) for _ in range(D)]
                r = sum(a * b for a, b in zip(xa, w)) + rng.gauss(0, 1)
                for tool in ("loose", "refuse", "fallback", "ask"):
                    d.call("Observe", guard_pb2.ObserveRequest(action=action(tool, xa),
                                                               context=ctx, harmed=r > 6, value=r))
            x = [1 if k % 2 else 0 for k in range(D)]

            def verdict(tool, caught_up=False):
                try:
                    v = d.evaluate(guard_pb2.EvaluateRequest(action=action(tool, x),
                                                             context=ctx))
                except grpc.RpcError as e:  # a sampler still warming up
                    assert e.code() == grpc.StatusCode.UNAVAILABLE, (e.code(), e.details())
                    return None
                if caught_up and (v.sampler.version_lag or v.sampler.train_steps < 20):
                    return None
                return v

            v = bgtest.wait_for(lambda: verdict("loose", True), 120, "the loose sampler to "
                                "catch up", interval=0.05)
            h = v.sampler
            print("loose:", str(h).replace("\n", " "), "bound", v.harm_bound)
            assert v.bound_kind == guard_pb2.SAMPLED and v.samples == K, v
            assert v.HasField("sampler"), v
            assert h.healthy and h.reason == "", h
            assert 1.0 - 1e-9 <= h.ess <= K + 1e-9, h
            assert 0 <= h.tb_residual < 1e3 and 0 <= h.log_weight_spread < 1e3, h
            assert h.version_lag == 0 and h.train_steps >= 20, h
            want = guard_pb2.ALLOW if v.harm_bound <= 0.5 else guard_pb2.DENY
            assert v.decision == want, v

            # refuse: UNAVAILABLE, retry, never a decision. Its sampler may
            # first answer "not yet trained" (also UNAVAILABLE); wait for
            # the refusal that names the limit.
            def refused():
                try:
                    d.evaluate(guard_pb2.EvaluateRequest(action=action("refuse", x),
                                                         context=ctx))
                except grpc.RpcError as e:
                    assert e.code() == grpc.StatusCode.UNAVAILABLE, (e.code(), e.details())
                    return e.details() if "min_ess" in e.details() else None
                raise AssertionError("an untrustworthy sampler gave a decision")
            msg = bgtest.wait_for(refused, 120, "the refusal naming min_ess", interval=0.05)
            print("refuse:", msg)
            assert "not trustworthy" in msg and "retry" in msg, msg
            assert "under min_ess 1e+05" in msg, msg

            for tool, want in (("fallback", guard_pb2.DENY), ("ask", guard_pb2.ESCALATE)):
                v2 = bgtest.wait_for(lambda: verdict(tool), 120, tool + " verdict")
                print(tool + ":", guard_pb2.Decision.Name(v2.decision), v2.sampler.reason)
                assert v2.decision == want, v2
                assert v2.bound_kind == guard_pb2.SAMPLED and not v2.sampler.healthy, v2
                assert "under min_ess 1e+05" in v2.sampler.reason, v2.sampler

            # the CLI prints it: `bayesguard eval` of the fallback policy
            r = d.cli("eval", "--tool", "fallback", "--session", "h1", "--features",
                      ",".join(str(v) for v in x), check=1)
            print("cli:", r.stdout.strip().splitlines()[-1])
            assert "sampler UNHEALTHY" in r.stdout and "under min_ess 1e+05" in r.stdout, r.stdout

            # the decision log: the sampler object of each sampled verdict
            d.stop()
            lines = read_log(log)
            mine = [l for l in lines if l.get("policy") == "loose" and "decision" in l]
            assert mine, lines[-3:]
            last = mine[-1]["sampler"]
            assert last["healthy"] is True and last["reason"] == "", last
            assert abs(last["ess"] - h.ess) < 1e-9 * K and last["version_lag"] == 0, (last, h)
            falls = [l for l in lines if l.get("policy") == "fallback" and "decision" in l]
            assert falls and falls[-1]["decision"] == "DENY", falls[-1:]
            assert falls[-1]["sampler"]["healthy"] is False, falls[-1]
            assert "min_ess" in falls[-1]["sampler"]["reason"], falls[-1]
            refs = [l for l in lines if l.get("policy") == "refuse"]
            assert refs and all("decision" not in l for l in refs), refs[-1:]
            assert any(l.get("error_code") == "UNAVAILABLE" and "min_ess" in l["error"]
                       for l in refs), refs[-1:]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    bgtest.main([test_health_over_the_wire])
