"""Policy reload semantics over the wire (issue 4, point 5 and 7), against
the real bayesguardd with grpcio:
  - a reload that leaves a policy's model alone (threshold change) keeps the
    session posterior exactly: same observations, same cautious posterior;
  - a reload that changes the model config rebuilds the posterior from the
    session's stored observations: it equals the posterior over the new
    grid computed here independently;
  - shadow mode: over the threshold the verdict is ALLOW flagged shadow,
    while the same policy in enforce mode denies.
Run with /usr/bin/python3 (ctest sets the environment)."""
import math
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import bgtest  # noqa: E402
from bgtest import Daemon, guard_pb2  # noqa: E402

POLICY = """apiVersion: bayesguard/v1
kind: GuardPolicy
metadata: {name: rates}
spec:
  match: {tools: ["op_*"]}
  model: {plugin: bernoulli, config: {rates: %s}}
  estimator: {plugin: iid}
  threshold: %s
  over_threshold: deny
  mode: %s
  session: context.session
  outcomes: open
"""
N_OK = 5


def write(pdir, rates, threshold, mode="enforce"):
    with open(os.path.join(pdir, "rates.yaml"), "w") as f:
        f.write(POLICY % (rates, threshold, mode))


def expected(rates):
    """Posterior after N_OK unharmed outcomes (uniform prior) and the iid
    cautious hypothesis argmax P(h|D)·rate (first index wins a tie)."""
    lw = [N_OK * math.log1p(-r) for r in rates]
    m = max(lw)
    z = sum(math.exp(x - m) for x in lw)
    post = [math.exp(x - m) / z for x in lw]
    c = max(range(len(rates)), key=lambda i: (post[i] * rates[i], -i))
    return c, post[c], rates[c]


def evaluate(d):
    return d.evaluate(guard_pb2.EvaluateRequest(action=guard_pb2.Action(tool="op_x"),
                                                context=guard_pb2.Context(session="s1")))


def reload_ok(d):
    r = d.call("Reload", guard_pb2.ReloadRequest())
    assert r.ok and not r.errors, r
    return r.revision


def close(a, b, tol=1e-12):
    return abs(a - b) <= tol * max(1.0, abs(b))


def test_reload_keeps_or_rebuilds_posterior_and_shadow():
    bgtest.require_daemon()
    pdir = tempfile.mkdtemp(prefix="bgpolwire-")
    try:
        grid1 = [0.1, 0.5, 0.9]
        write(pdir, grid1, 0.5)
        with Daemon(policies=pdir, args=["--no-watch"]) as d:
            for i in range(N_OK):
                r = d.call("Observe", guard_pb2.ObserveRequest(
                    action=guard_pb2.Action(tool="op_x"),
                    context=guard_pb2.Context(session="s1"), harmed=False))
                assert r.observations == i + 1, r
            v1 = evaluate(d)
            c, p, h = expected(grid1)
            assert v1.observations == N_OK and v1.cautious.id == c, v1
            assert close(v1.cautious.posterior, p) and close(v1.cautious.harm, h), (v1, p, h)

            # Unrelated change (threshold): same model_key, posterior kept.
            write(pdir, grid1, 0.4)
            rev2 = reload_ok(d)
            v2 = evaluate(d)
            assert v2.revision == rev2 != v1.revision, (v1.revision, v2.revision)
            assert v2.threshold == 0.4 and v2.observations == N_OK, v2
            assert v2.cautious.id == v1.cautious.id, (v1, v2)
            assert v2.cautious.posterior == v1.cautious.posterior, (v1, v2)

            # Model change: rebuilt from the stored observations.
            grid2 = [0.05, 0.3, 0.5, 0.9]
            write(pdir, grid2, 0.4)
            reload_ok(d)
            v3 = evaluate(d)
            c, p, h = expected(grid2)
            assert v3.observations == N_OK and v3.cautious.id == c, (v3, c)
            assert close(v3.cautious.posterior, p) and close(v3.cautious.harm, h), (v3, p, h)

            # Enforce denies over the threshold; shadow says ALLOW, flagged.
            write(pdir, grid2, 0.0001, "enforce")
            reload_ok(d)
            v4 = evaluate(d)
            assert v4.decision == guard_pb2.DENY and not v4.shadow, v4
            write(pdir, grid2, 0.0001, "shadow")
            reload_ok(d)
            v5 = evaluate(d)
            assert v5.decision == guard_pb2.ALLOW and v5.shadow, v5
            assert v5.harm_bound == v4.harm_bound > v5.threshold, (v4, v5)
    finally:
        shutil.rmtree(pdir, ignore_errors=True)


if __name__ == "__main__":
    bgtest.main([test_reload_keeps_or_rebuilds_posterior_and_shadow])
