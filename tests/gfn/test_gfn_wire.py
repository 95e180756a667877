"""A d = 32 exploding-bandit policy (2^32 hypotheses, not enumerable) with
the `gfn` sampler, over the wire (issue 6): Evaluate returns a SAMPLED
verdict from K samples while the sampler trains in the background on the
observations (sent in one ObserveStream); Observe is acknowledged without
waiting for training; the
cautious hypothesis's harm is the bandit formula for its id (checked here
independently); once the verdict's sampler has trained on all the
observations (its health's version_lag is 0: polled with a deadline, never
slept for), the cautious hypothesis fits the data as well as the oracle
allows: the exact cautious c* maximises log P(h|D) + log harm(x, h) and
harm <= 1, so log P(c*|D) >= log P(w*|D) + log harm(x, w*); the sampled
one may fall ALLOW_NATS below that — test_gfn_exact22's allowance against
an exact reference at d = 22 with the harm-directed refinement (worst
measured there 2.71 nats over four seeds; measured here: the cautious
hypothesis fits 4.4 nats better than w*, 9 nats inside the allowance). This replaces a 60-nat "training happened"
poll (a factor 1e26). Quality against an exact reference is
tests/gfn/test_gfn_exact22.c (d = 22) and test_gfn_keepup.py (over the
wire, d = 10, 12, 14: 1e-9 on the bounds). A reload that
changes only the threshold keeps the trained sampler (the next Evaluate
fits at once); one that changes the sampler's config replaces it: the first
Evaluate after it fails closed with UNAVAILABLE (the new sampler has not
seen the session's data; training starts) and verdicts fit again once it
has. Run with
/usr/bin/python3 (ctest sets the environment)."""
import math
import os
import random
import shutil
import sys
import tempfile

import grpc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import bgtest  # noqa: E402
from bgtest import Daemon, guard_pb2  # noqa: E402

D, THETA, SIGMA, K, N_OBS = 32, 6.0, 1.0, 256, 40
ALLOW_NATS = 4.0  # test_gfn_exact22.c MAX_NATS (docstring)
POLICY = """apiVersion: bayesguard/v1
kind: GuardPolicy
metadata: {name: arms32}
spec:
  match: {tools: ["pull_*"]}
  model: {plugin: bandit, config: {features: 32, sigma: 1.0, theta: 6.0}}
  estimator: {plugin: iid}
  sampler:
    plugin: gfn
    samples: 256
    config: {loss: tb, hidden: 64, lr: 0.01, lr_end: 0.001, lr_horizon: 400, seed: 5}
  threshold: 0.5
  over_threshold: deny
  session: context.session
  outcomes: open
  features: from_request
"""


def w_of(i):
    return bgtest.bandit_w(i, D)


def harm(x, i):
    return bgtest.bandit_harm(x, i, D, THETA, SIGMA)


def loglik(data, i):
    w = w_of(i)
    return sum(-0.5 * ((r - sum(a * b for a, b in zip(x, w))) / SIGMA) ** 2 for x, r in data)


def action(x):
    return guard_pb2.Action(tool="pull_arm", features=[float(v) for v in x])


def test_sampled_verdict_over_the_wire():
    bgtest.require_daemon()
    tmp = tempfile.mkdtemp(prefix="bggfn-")
    try:
        with open(os.path.join(tmp, "arms32.yaml"), "w") as f:
            f.write(POLICY)
        with Daemon(policies=tmp) as d:
            ctx = guard_pb2.Context(session="s1")
            x = [1 if k % 3 == 0 else 0 for k in range(D)]
            v0 = d.evaluate(guard_pb2.EvaluateRequest(action=action(x), context=ctx))
            assert v0.bound_kind == guard_pb2.SAMPLED and v0.samples == K, v0
            assert 0.0 <= v0.harm_bound <= 1.0 and v0.policy == "arms32", v0
            assert v0.model == "bandit" and v0.estimator == "iid", v0

            rng = random.Random(7)
            w_star = rng.getrandbits(D)
            data = []
            for n in range(1, N_OBS + 1):
                xa = [rng.randint(0, 1) for _ in range(D)]
                r = sum(a * b for a, b in zip(xa, w_of(w_star))) + rng.gauss(0, SIGMA)
                data.append((xa, r))
            # One ObserveStream, so the history arrives at the daemon's pace,
            # not at the pace of 40 client round trips: how well the sampler
            # ends up fitting depends on that pace (its learning-rate decay
            # runs on the steps trained while the history is still partial;
            # a 10 ms pace ended 61-73 nats off in 2 of 25 probe runs), and
            # a loaded machine slows the round trips.
            fn = d.channel().stream_unary(
                "/bayesguard.v1.Guard/ObserveStream",
                request_serializer=guard_pb2.ObserveRequest.SerializeToString,
                response_deserializer=guard_pb2.ObserveStreamResponse.FromString)
            resp = fn(iter([guard_pb2.ObserveRequest(action=action(xa), context=ctx,
                                                     harmed=r > THETA, value=r)
                            for xa, r in data]), timeout=60)
            assert resp.accepted == N_OBS and resp.last.observations == N_OBS, resp

            def fits():
                try:
                    v = d.evaluate(guard_pb2.EvaluateRequest(action=action(x), context=ctx))
                except grpc.RpcError as e:  # the session's sampler is warming up
                    assert e.code() == grpc.StatusCode.UNAVAILABLE, (e.code(), e.details())
                    assert "retry" in e.details(), e.details()
                    return False
                assert v.bound_kind == guard_pb2.SAMPLED and v.samples == K, v
                assert v.observations == N_OBS, v
                assert 1 <= v.plausible_set_size <= K, v
                c = v.cautious.id
                assert c < (1 << D), c
                assert v.cautious.label == "w=" + "".join(map(str, w_of(c))), v.cautious
                assert abs(v.cautious.harm - harm(x, c)) < 1e-9, (v.cautious.harm, harm(x, c))
                assert abs(v.harm_bound - v.cautious.harm) < 1e-12, v  # iid: the cautious harm
                assert 0.0 < v.cautious.posterior <= 1.0, v
                # still training: on a prefix, or the whole history's share
                # (20 steps: the daemon's steps per observation) not run yet
                if v.sampler.version_lag != 0 or v.sampler.train_steps < 20:
                    return False
                # trained on all the data: now the fit is asserted, not polled
                need = loglik(data, w_star) + math.log(harm(x, w_star)) - ALLOW_NATS
                got = loglik(data, c)
                print("cautious log-likelihood %.2f, w*'s %.2f, allowed down to %.2f "
                      "(trained %d steps at this version)"
                      % (got, loglik(data, w_star), need, v.sampler.train_steps))
                assert got >= need, (got, need)
                return True

            bgtest.wait_for(fits, 240.0, "the sampler to have trained on all %d observations"
                                         % N_OBS, interval=0.2)

            # A reload that keeps the model and the sampler (only the
            # threshold changes) keeps the trained session samplers: the
            # very next Evaluate answers (a fresh sampler would fail closed
            # with UNAVAILABLE), and verdicts keep fitting.
            with open(os.path.join(tmp, "arms32.yaml"), "w") as f:
                f.write(POLICY.replace("threshold: 0.5", "threshold: 0.45"))
            r = d.call("Reload", guard_pb2.ReloadRequest())
            assert r.ok, r
            v = d.evaluate(guard_pb2.EvaluateRequest(action=action(x), context=ctx))
            assert abs(v.threshold - 0.45) < 1e-12 and v.revision == r.revision, v
            assert fits(), "a reload that kept the sampler must keep its fit"

            # A reload that changes the sampler's config creates fresh,
            # untrained samplers; the session's data are still there, so the
            # first Evaluate fails closed and starts background training,
            # and the verdicts come to fit again.
            with open(os.path.join(tmp, "arms32.yaml"), "w") as f:
                f.write(POLICY.replace("threshold: 0.5", "threshold: 0.45")
                        .replace("lr: 0.01,", "lr: 0.02,"))
            r = d.call("Reload", guard_pb2.ReloadRequest())
            assert r.ok, r
            msg = bgtest.expect_code(
                lambda: d.evaluate(guard_pb2.EvaluateRequest(action=action(x), context=ctx)),
                grpc.StatusCode.UNAVAILABLE, ("s1", "40 observations", "no decision", "retry"))
            print("first Evaluate after the reload:", msg)
            bgtest.wait_for(fits, 240.0, "the reloaded sampler to be trained from the session's "
                                         "stored observations", interval=0.2)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_sampler_sessions_limit():
    """--sampler-sessions 1: a second session's sampler drops the first's, whose
    next Evaluate fails closed until its new sampler has retrained."""
    bgtest.require_daemon()
    tmp = tempfile.mkdtemp(prefix="bggfn-")
    try:
        with open(os.path.join(tmp, "arms32.yaml"), "w") as f:
            f.write(POLICY)
        with Daemon(policies=tmp, args=["--sampler-sessions", "1"]) as d:
            rng = random.Random(3)
            x = [1 if k % 3 == 0 else 0 for k in range(D)]

            def observe(session, n):
                for _ in range(n):
                    xa = [rng.randint(0, 1) for _ in range(D)]
                    d.call("Observe", guard_pb2.ObserveRequest(
                        action=action(xa), context=guard_pb2.Context(session=session),
                        harmed=False, value=float(sum(xa)) / 4))

            def answers(session):
                try:
                    d.evaluate(guard_pb2.EvaluateRequest(
                        action=action(x), context=guard_pb2.Context(session=session)))
                    return True
                except grpc.RpcError as e:
                    assert e.code() == grpc.StatusCode.UNAVAILABLE, (e.code(), e.details())
                    return False
            observe("A", 3)
            bgtest.wait_for(lambda: answers("A"), 120.0, "session A's sampler to train")
            observe("B", 3)
            bgtest.wait_for(lambda: answers("B"), 120.0, "session B's sampler to train")
            msg = bgtest.expect_code(
                lambda: d.evaluate(guard_pb2.EvaluateRequest(
                    action=action(x), context=guard_pb2.Context(session="A"))),
                grpc.StatusCode.UNAVAILABLE, ("'A'", "3 observations", "retry"))
            print("session A after B took the only sampler:", msg)
            bgtest.wait_for(lambda: answers("A"), 120.0, "session A's sampler to retrain")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    bgtest.main([test_sampled_verdict_over_the_wire, test_sampler_sessions_limit])
