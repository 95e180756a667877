"""What a healthy sampler looks like on the bandit policies: the data behind
the defaults of spec.sampler's limits (docs/POLICIES.md, "Sampler health").

For each d, a bandit policy with the gfn sampler at its default config and
limits that never refuse (so every verdict comes back), run by the real
daemon over gRPC: observations of a random w* arrive one at a time (Observe,
the daemon's background training, 20 steps each); after each one the
health of the first Evaluate (the trainer may still lag) and of the first
Evaluate once the sampler has trained at the new version
(version_lag 0, train_steps >= 20) are recorded, and for d <= 12 the
sampled iid bound of 16 random arms is set against the exact bound over all
2^d hypotheses (computed here). Prints per d the quantiles of tb_residual,
ess, log_weight_spread and version_lag, and how often the sampled bound
fell below the exact one for healthy and unhealthy verdicts under the
default limits.

  BG_BUILD_DIR=$PWD/build /usr/bin/python3 bench/gfn/health_thresholds.py [seeds] [n_obs]

Seeds 1..seeds (default 3) pick w* and the arms; the sampler's own seed is
the policy's (5). Takes ~20 min for 2 seeds up to d = 22 on 2 loaded cores (d = 32 and 64 take longer).
"""
import math
import os
import random
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "python"))
import bgtest  # noqa: E402
from bgtest import Daemon, guard_pb2  # noqa: E402

THETA, SIGMA = 6.0, 1.0
DS = [10, 12, 16, 22, 32, 64]
EXACT_MAX_D = 12
# the defaults under test (daemon/policy/policy_priv.h)
MAX_TB, MIN_ESS, MAX_LAG = 1e6, 0.0, 2

POLICY = """apiVersion: bayesguard/v1
kind: GuardPolicy
metadata: {name: arms%(d)d}
spec:
  match: {tools: ["pull%(d)d"]}
  model: {plugin: bandit, config: {features: %(d)d, sigma: 1.0, theta: 6.0, enumerate: false}}
  estimator: {plugin: iid}
  sampler:
    plugin: gfn
    samples: 256
    config: {seed: 5}
    max_tb_residual: 1000000
    min_ess: 0
    max_version_lag: 1000000
  threshold: 0.5
  session: context.session
  outcomes: open
  features: from_request
"""


def w_of(i, d):
    return [(i >> (d - 1 - k)) & 1 for k in range(d)]


def harm_of(x, i, d):
    m = sum(a * b for a, b in zip(x, w_of(i, d)))
    return 0.5 * math.erfc((THETA - m) / (SIGMA * math.sqrt(2)))


def add_obs(d, ll, xa, r):
    """ll[i] += log N(r; xa . w_i, SIGMA) (up to a constant) for every i."""
    for i in range(1 << d):
        m = sum(a * b for a, b in zip(xa, w_of(i, d)))
        ll[i] -= 0.5 * ((r - m) / SIGMA) ** 2


def exact_iid(d, ll, x):
    """The iid bound over all 2^d hypotheses: harm of argmax post * harm."""
    best, arg = -math.inf, 0
    for i in range(1 << d):
        h = harm_of(x, i, d)
        if h > 0 and ll[i] + math.log(h) > best:
            best, arg = ll[i] + math.log(h), i
    return harm_of(x, arg, d)


def healthy(h):
    return h.tb_residual <= MAX_TB and h.ess >= MIN_ESS and h.version_lag <= MAX_LAG


def q(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(p * len(v)))] if v else float("nan")


def main():
    seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    n_obs = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    tmp = tempfile.mkdtemp(prefix="bghealth-")
    try:
        for d in DS:
            with open(os.path.join(tmp, "arms%d.yaml" % d), "w") as f:
                f.write(POLICY % {"d": d})
        with Daemon(policies=tmp) as dm:
            print("d  seeds obs | caught up: tb_residual p50/p90/max  ess p10/p50/min  "
                  "spread p50/p90 | first eval: lag max, tb p90 | below exact (healthy / "
                  "unhealthy, of arms)")
            for d in DS:
                rows_now, rows_up, below_h, below_u, n_h, n_u = [], [], 0, 0, 0, 0
                for seed in range(1, seeds + 1):
                    rng = random.Random(1000 * d + seed)
                    w_star = rng.getrandbits(d)
                    ctx = guard_pb2.Context(session="s%d-%d" % (d, seed))
                    data = []
                    ll = [0.0] * (1 << d) if d <= EXACT_MAX_D else None
                    for n in range(1, n_obs + 1):
                        xa = [rng.randint(0, 1) for _ in range(d)]
                        r = sum(a * b for a, b in zip(xa, w_of(w_star, d))) + rng.gauss(0, SIGMA)
                        data.append((xa, r))
                        if ll is not None:
                            add_obs(d, ll, xa, r)
                        act = guard_pb2.Action(tool="pull%d" % d, features=[float(v) for v in xa])
                        dm.call("Observe", guard_pb2.ObserveRequest(action=act, context=ctx,
                                                                    harmed=r > THETA, value=r))
                        x = [rng.randint(0, 1) for _ in range(d)]
                        probe = guard_pb2.EvaluateRequest(
                            action=guard_pb2.Action(tool="pull%d" % d,
                                                    features=[float(v) for v in x]), context=ctx)

                        def ev():
                            try:
                                return dm.evaluate(probe)
                            except Exception:  # a fresh sampler: UNAVAILABLE until trained
                                return None
                        v = bgtest.wait_for(ev, 120.0, "a verdict")
                        rows_now.append(v.sampler)
                        v = bgtest.wait_for(
                            lambda: (lambda u: u if u and u.sampler.version_lag == 0 and
                                     u.sampler.train_steps >= 20 else None)(ev()),
                            120.0, "training at the new version", interval=0.005)
                        rows_up.append(v.sampler)
                        if d <= EXACT_MAX_D and n % 4 == 0:
                            for _ in range(16):
                                xs = [rng.randint(0, 1) for _ in range(d)]
                                vv = dm.evaluate(guard_pb2.EvaluateRequest(
                                    action=guard_pb2.Action(tool="pull%d" % d,
                                                            features=[float(u) for u in xs]),
                                    context=ctx))
                                b = vv.harm_bound < exact_iid(d, ll, xs) - 1e-9
                                if healthy(vv.sampler):
                                    n_h += 1
                                    below_h += b
                                else:
                                    n_u += 1
                                    below_u += b
                tb = [h.tb_residual for h in rows_up]
                es = [h.ess for h in rows_up]
                sp = [h.log_weight_spread for h in rows_up]
                print("%2d %5d %3d | %6.2f %6.2f %6.2f  %6.1f %6.1f %6.1f  %6.2f %6.2f | %3d %6.2f "
                      "| %s" % (
                          d, seeds, n_obs, q(tb, .5), q(tb, .9), max(tb), q(es, .1), q(es, .5),
                          min(es), q(sp, .5), q(sp, .9), max(h.version_lag for h in rows_now),
                          q([h.tb_residual for h in rows_now], .9),
                          ("%d/%d  %d/%d" % (below_h, n_h, below_u, n_u)) if d <= EXACT_MAX_D
                          else "-"), flush=True)
                unh = sum(1 for h in rows_up if not healthy(h))
                print("   caught-up verdicts outside the default limits: %d of %d" %
                      (unh, len(rows_up)), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
