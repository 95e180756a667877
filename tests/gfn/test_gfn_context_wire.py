"""The per-context search (issue 16; daemon/engine/sampled_context.c) seen
by an operator: its /metrics families, with the real daemon over gRPC, the
bandit model (d = 16, `enumerate: false`: the sampled path on a space the
model could enumerate, as test_gfn_archive_wire.py) and the gfn sampler
trained in the background.

Two policies on one model: `ctx` (spec.sampler.contexts: 4,
context_search: 512) and `off` (contexts: 0). The counters are
process-wide, so `off` runs first:
  - before anything: the five counters and the gauge are 0, typed right;
  - `off`: 8 observations, 4 distinct contexts evaluated, 1 more
    observation, caught up (verdict's version_lag 0 and
    archive_version_lag 0: the round's archive search ran, so the round
    ran): the posterior-search runs counter moved (the rounds did run) and
    every per-context family is still 0 (nothing remembered, nothing
    searched);
  - `ctx`: 8 observations, caught up on context x0, x1..x3 evaluated: the
    gauge is 4 (recorded by the Evaluates themselves, synchronously);
    then 1 + M = 3 observations one at a time, each waited for. Every round
    from the first of these on searches exactly the 4 remembered contexts
    (all were recorded before it began; the trainer is one thread, so the
    round of the 8 finished before it), so between a stable scrape B taken
    after the first and a stable scrape F once >= M more rounds ran:
    contexts searched = 4 x rounds, exactly; 0 < hypotheses looked at <=
    contexts searched x 512 (the budget per context and round); 0 <
    reward evaluations <= hypotheses (equal since 2026-12-07, when a round's
    contexts stopped sharing log R); CPU > 0. Overall: contexts <= 4 x rounds and hypotheses <=
    contexts x 512 (no round searched more than the cap).
  - the flood (the agent chooses contexts): 40 more distinct contexts in
    session s1 leave the gauge at 4 (least recently used evicted); a second
    session s2 (8 observations) with its own 40 brings it to 8 (2 samplers
    x the cap), and s1's rounds after the flood still search 4 contexts
    each (the work is bounded).
A "stable" scrape is two consecutive ones with the same four counters (the
trainer adds them one after another, so a scrape could fall between).
Along the way, the verdict's context health (SamplerHealth 12-14:
context_kept, context_rounds, context_version_lag) for one context, x1:
  - `off`: all three 0 on every verdict (nothing remembered);
  - `ctx`, x1's first Evaluate (8 observations): 0 kept, 0 rounds, lag 8
    (never searched: all of them); x2, x3 likewise;
  - after B: rounds >= 1; once F's rounds ran and the round after the
    newest observation searched it (lag 0, waited for): rounds >= both
    F - B (every round counted between them searched x1, remembered
    before B) and its rounds at B + 1, kept in 1..32; one observation
    more and at once: lag 0 or 1 (the round on it may have run), never
    more; once that round ran: lag 0 and rounds grown again;
  - the python client's SamplerHealth carries the same three, `bayesguard
    eval` prints them on a `context` line (none for `off`), and the
    decision log's lines have them as keys of `sampler` (none on the
    `off` lines: not remembered).

test_decision_effect: what the search changes in a verdict, through the
daemon. A d = 10 bandit (enumerable), 6 observations then 2 more one at a
time (a wide posterior: the exact cautious hypothesis differs between
contexts), three policies on one model: `exact` (enumerated) and `on` /
`off`, the sampled path on the same space (`always: true`) with a sampler
poor on purpose — K = 4 draws, 1 training step per observation, no
refinement, no search archive — so that the draw alone rarely holds a
context's cautious hypothesis; `on` remembers contexts (16, 1,024
hypotheses per context and round: the whole space), `off` does not. 8
contexts are evaluated, then the 2 observations (the first one's round
searched all 8; it is over once the second's training ran). Then, per
context: the iid objective log P(h|D) + log harm(x, h) of each verdict's
cautious hypothesis (computed here, exactly) is <= the exact one's; `on`
reaches it in all 8 (bound = exact within 1e-9, the same decision), `off`
in at most 4, its bound below exact in at least 4 and at least one
decision unlike the exact one (measured, seeds fixed: off reached 0 of 8,
its bound below exact in 8 and its decision unlike the exact one's in
8, at threshold 0.5). Deterministic (seeded data, sampler and daemon), not
a statistical test. What it does not show is the d = 64 case the search
is for (a level the Evaluate's climbs cannot walk, beside an archive that
does not hold it): test_gfn_context.c builds that in the engine, where the
archive can be replaced; through the daemon at an enumerable d the archive
would hold the whole level (here it is off), and at d = 64 the exact bound
is out of reach.
~5 s plain. Run with /usr/bin/python3 (ctest sets the environment)."""
import json
import math
import os
import random
import sys
import tempfile
import shutil
import time

_SRC = os.environ.get("BG_SOURCE_DIR") or os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(_SRC, "tests", "python"))
sys.path.insert(0, os.path.join(_SRC, "clients", "python"))
import bgtest  # noqa: E402
from bgmetrics import metrics_addr, scrape, value  # noqa: E402
from bgtest import Daemon, grpc, guard_pb2  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_gfn_health import LOOSE, POLICY  # noqa: E402

D, N0, M, CAP, BUDGET, FLOOD = 16, 8, 2, 4, 512, 40
PRE = "bayesguard_sampler_context_search_"
COUNTERS = (PRE + "rounds_total", PRE + "contexts_total", PRE + "hypotheses_total",
            PRE + "evaluations_total")
CPU = PRE + "cpu_seconds_total"
GAUGE = "bayesguard_sampler_contexts_remembered"


def action(tool, x):
    return guard_pb2.Action(tool=tool, features=[float(v) for v in x])


def contexts(rng, n):
    """n distinct feature vectors (contexts)."""
    seen, out = set(), []
    while len(out) < n:
        x = tuple(rng.randint(0, 1) for _ in range(D))
        if x not in seen:
            seen.add(x)
            out.append(list(x))
    return out


def test_context_search_over_the_wire():
    bgtest.require_daemon()
    tmp = tempfile.mkdtemp(prefix="bgctx-")
    try:
        for name, n in (("ctx", CAP), ("off", 0)):
            with open(os.path.join(tmp, name + ".yaml"), "w") as f:
                f.write(POLICY % {"name": name, "threshold": "0.5", "limits": LOOSE +
                                  "\n    contexts: %d\n    context_search: %d" % (n, BUDGET)})
        log = os.path.join(tmp, "decisions.jsonl")
        with Daemon(policies=tmp, args=["--metrics-listen", "127.0.0.1:0",
                                        "--decision-log", log]) as d:
            addr = metrics_addr(d)
            m0 = scrape(addr)
            for name in COUNTERS + (CPU,):
                assert m0[name]["type"] == "counter", (name, m0.get(name))
                assert value(m0, name) == 0, (name, value(m0, name))
            assert m0[GAUGE]["type"] == "gauge" and value(m0, GAUGE) == 0, m0.get(GAUGE)

            rng = random.Random(1616)
            w = [rng.randint(0, 1) for _ in range(D)]
            xs = contexts(rng, CAP + 2 * FLOOD)
            seen = {}  # (tool, session) -> observations sent

            def observe(tool, session):
                xa = [rng.randint(0, 1) for _ in range(D)]
                r = sum(a * b for a, b in zip(xa, w)) + rng.gauss(0, 1)
                d.call("Observe", guard_pb2.ObserveRequest(
                    action=action(tool, xa), context=guard_pb2.Context(session=session),
                    harmed=r > 6, value=r))
                seen[tool, session] = seen.get((tool, session), 0) + 1

            def evaluate(tool, session, x):
                return d.evaluate(guard_pb2.EvaluateRequest(
                    action=action(tool, x), context=guard_pb2.Context(session=session)))

            def caught_up(tool, session, x):
                """A verdict on x once the round on every observation and its
                archive search ran (then the round's per-context search runs
                or ran: the same thread, next)."""
                def once():
                    try:
                        v = evaluate(tool, session, x)
                    except grpc.RpcError as e:  # a sampler still warming up
                        assert e.code() == grpc.StatusCode.UNAVAILABLE, (e.code(), e.details())
                        return None
                    h = v.sampler
                    if (v.observations != seen[tool, session] or h.version_lag or
                            h.archive_version_lag or h.train_steps < 20):
                        return None
                    assert v.bound_kind == guard_pb2.SAMPLED, v
                    return v
                return bgtest.wait_for(once, 180, "%s's sampler of %s to catch up on %d "
                                       "observations" % (tool, session, seen[tool, session]),
                                       interval=0.05)

            def stable():
                """A scrape whose four counters two scrapes in a row agree on."""
                def once():
                    a = scrape(addr)
                    b = scrape(addr)
                    return b if all(value(a, c) == value(b, c) for c in COUNTERS) else None
                return bgtest.wait_for(once, 30, "a stable scrape")

            def counts(m):
                return [value(m, c) for c in COUNTERS]

            def chealth(v):
                h = v.sampler
                return (h.context_kept, h.context_rounds, h.context_version_lag)

            def searched(session, x, n):
                """x's verdict once the round on all n observations searched it."""
                def once():
                    v = evaluate("ctx", session, x)
                    return v if v.observations == n and chealth(v)[2] == 0 else None
                return bgtest.wait_for(once, 60, "the per-context search at %d observations" % n,
                                       interval=0.05)
            logged = []  # verdicts whose decision log lines are checked

            # contexts: 0 — rounds run, nothing is remembered or searched
            for _ in range(N0):
                observe("off", "s1")
            caught_up("off", "s1", xs[0])
            for x in xs[1:CAP]:
                v = evaluate("off", "s1", x)
                assert chealth(v) == (0, 0, 0), v.sampler
            observe("off", "s1")
            voff = caught_up("off", "s1", xs[0])
            assert chealth(voff) == (0, 0, 0), voff.sampler
            logged.append(voff)
            m = stable()
            print("off: search runs %g, context families %s, gauge %g" % (
                value(m, "bayesguard_sampler_search_runs_total"), counts(m) + [value(m, CPU)],
                value(m, GAUGE)))
            assert value(m, "bayesguard_sampler_search_runs_total") >= 1, m
            assert counts(m) == [0, 0, 0, 0] and value(m, CPU) == 0, counts(m)
            assert value(m, GAUGE) == 0, value(m, GAUGE)

            # contexts: 4 — four contexts remembered, each searched per round
            for _ in range(N0):
                observe("ctx", "s1")
            caught_up("ctx", "s1", xs[0])
            for x in xs[1:CAP]:
                v = evaluate("ctx", "s1", x)
                assert v.observations == N0 and chealth(v) == (0, 0, N0), v.sampler
                if x is xs[1]:
                    logged.append(v)
            assert value(scrape(addr), GAUGE) == CAP, value(scrape(addr), GAUGE)
            observe("ctx", "s1")
            caught_up("ctx", "s1", xs[0])
            mb = stable()
            rb, sb, lb, eb = counts(mb)
            vb = searched("s1", xs[1], N0 + 1)
            print("x1 at B:", chealth(vb))
            assert vb.sampler.context_rounds >= 1 and 1 <= vb.sampler.context_kept <= 32, vb.sampler
            for _ in range(M):
                observe("ctx", "s1")
                caught_up("ctx", "s1", xs[0])

            def rounds_done():
                mm = stable()
                return mm if value(mm, COUNTERS[0]) - rb >= M else None
            mf = bgtest.wait_for(rounds_done, 60, "%d more per-context rounds" % M)
            rf, sf, lf, ef = counts(mf)
            n1 = N0 + 1 + M
            vf = searched("s1", xs[1], n1)
            kf, of, _ = chealth(vf)
            print("x1 at F:", chealth(vf), "rounds counted B..F", rf - rb)
            assert of >= rf - rb and of >= vb.sampler.context_rounds + 1, (of, rf, rb, vb.sampler)
            assert 1 <= kf <= 32, vf.sampler
            from bayesguard.verdict import verdict_from_pb
            cs = verdict_from_pb(vf).sampler
            assert (cs.context_kept, cs.context_rounds, cs.context_version_lag) == chealth(vf), cs
            logged.append(vf)
            observe("ctx", "s1")
            vn = evaluate("ctx", "s1", xs[1])
            print("x1 one observation later, at once:", chealth(vn))
            assert vn.observations == n1 + 1 and chealth(vn)[2] in (0, 1), vn.sampler
            assert vn.sampler.context_rounds >= of, (vn.sampler, of)
            logged.append(vn)
            vg = searched("s1", xs[1], n1 + 1)
            print("x1 once searched at %d:" % (n1 + 1), chealth(vg))
            assert vg.sampler.context_rounds > of and 1 <= vg.sampler.context_kept <= 32, vg.sampler
            # `bayesguard eval` prints them on a context line (the same
            # context: no observation since, so no round either)
            r = d.cli("eval", "--tool", "ctx", "--session", "s1", "--features",
                      ",".join(str(b) for b in xs[1]))
            line = [ln.split() for ln in r.stdout.splitlines() if ln.strip().startswith("context ")]
            print("cli:", line)
            assert line == [["context", "kept=%d" % vg.sampler.context_kept,
                             "rounds=%d" % vg.sampler.context_rounds, "version_lag=0"]], r.stdout
            r = d.cli("eval", "--tool", "off", "--session", "s1", "--features",
                      ",".join(str(b) for b in xs[1]))
            assert "sampler " in r.stdout and "context " not in r.stdout, r.stdout
            print("B: rounds %g contexts %g looked %g evals %g; F: %g %g %g %g; cpu %g s" % (
                rb, sb, lb, eb, rf, sf, lf, ef, value(mf, CPU)))
            assert rf > 0 and rf - rb >= M, (rb, rf)
            assert sf - sb == CAP * (rf - rb), (sb, sf, rb, rf)
            assert 0 < lf - lb <= (sf - sb) * BUDGET, (lb, lf, sb, sf)
            assert 0 < ef - eb <= lf - lb, (eb, ef, lb, lf)
            assert sf <= CAP * rf and lf <= sf * BUDGET and ef <= lf, (rf, sf, lf, ef)
            assert 0 < value(mf, CPU) < 600, value(mf, CPU)
            assert value(mf, GAUGE) == CAP, value(mf, GAUGE)

            # the flood: the agent controls contexts, the table is bounded
            for x in xs[CAP:CAP + FLOOD]:
                evaluate("ctx", "s1", x)
            assert value(scrape(addr), GAUGE) == CAP, value(scrape(addr), GAUGE)
            for _ in range(N0):
                observe("ctx", "s2")
            caught_up("ctx", "s2", xs[0])
            for x in xs[CAP + FLOOD:]:
                evaluate("ctx", "s2", x)
            g2 = value(scrape(addr), GAUGE)
            print("gauge after the floods of s1 and s2: %g" % g2)
            assert g2 == 2 * CAP, g2
            # a round after the flood still searches the cap (the first s1
            # round makes sure s2's last round, which may have searched
            # fewer, is over: one trainer thread)
            observe("ctx", "s1")
            caught_up("ctx", "s1", xs[0])
            m1 = stable()
            r1, s1 = counts(m1)[:2]
            observe("ctx", "s1")
            caught_up("ctx", "s1", xs[0])
            m2 = bgtest.wait_for(lambda: (lambda mm: mm if value(mm, COUNTERS[0]) > r1 else None)(
                stable()), 60, "a per-context round after the flood")
            r2, s2 = counts(m2)[:2]
            print("after the flood: rounds %g -> %g, contexts %g -> %g" % (r1, r2, s1, s2))
            assert s2 - s1 == CAP * (r2 - r1), (r1, r2, s1, s2)
            assert value(m2, GAUGE) == 2 * CAP, value(m2, GAUGE)

            # the decision log: the context's three keys as the verdicts say
            d.stop()
            with open(log) as f:
                lines = {l.get("decision_id"): l for l in map(json.loads, f.read().splitlines())}
            three = ("context_kept", "context_rounds", "context_version_lag")
            for v in logged:
                s = lines[v.decision_id]["sampler"]
                print("log:", v.policy, {k: s.get(k) for k in three})
                if v.policy == "off":
                    assert not any(k in s for k in three), s
                else:
                    assert [s[k] for k in three] == list(chealth(v)), (s, v.sampler)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# test_decision_effect's setting (the module's comment).
DD, DOBS, DCTX, DK = 10, 6, 8, 4
DPOLICY = """apiVersion: bayesguard/v1
kind: GuardPolicy
metadata: {name: %(name)s}
spec:
  match: {tools: ["%(name)s"]}
  model: {plugin: bandit, config: {features: 10, sigma: 1.0, theta: %(theta)d}}
  estimator: {plugin: iid}
%(sampler)s  threshold: 0.5
  session: context.session
  outcomes: open
  features: from_request
"""
DSAMPLER = """  sampler:
    plugin: gfn
    samples: %d
    train_steps: 1
    always: true
    refine: 0
    search: 0
    contexts: %%d
    context_search: 1024
    config: {hidden: 16, seed: 5}
%s
""" % (DK, LOOSE)


def test_decision_effect():
    bgtest.require_daemon()
    rng = random.Random(1610)
    w_star = rng.getrandbits(DD)
    arms = [rng.getrandbits(DD) for _ in range(10)]
    theta = max(bin(a & w_star).count("1") for a in arms)

    def x_of(m):
        return [float(m >> (DD - 1 - k) & 1) for k in range(DD)]
    data = []
    for _ in range(DOBS + 2):
        m = rng.choice(arms)
        data.append((x_of(m), bin(m & w_star).count("1") + rng.gauss(0, 1.0)))
    xs = [x_of(m) for m in rng.sample(range(1 << DD), DCTX)]
    tmp = tempfile.mkdtemp(prefix="bgctxd-")
    try:
        for name, sampler in (("exact", ""), ("on", DSAMPLER % 16), ("off", DSAMPLER % 0)):
            with open(os.path.join(tmp, name + ".yaml"), "w") as f:
                f.write(DPOLICY % {"name": name, "theta": theta, "sampler": sampler})
        with Daemon(policies=tmp, args=["--metrics-listen", "127.0.0.1:0"]) as d:
            addr = metrics_addr(d)
            n = [0]

            def observe():
                x, r = data[n[0]]
                for tool in ("exact", "on", "off"):
                    d.call("Observe", guard_pb2.ObserveRequest(
                        action=action(tool, x), context=guard_pb2.Context(session="s"),
                        harmed=False, value=r))
                n[0] += 1

            def evaluate(tool, x):
                return d.evaluate(guard_pb2.EvaluateRequest(
                    action=action(tool, x), context=guard_pb2.Context(session="s")))

            def caught_up(tool):
                def once():
                    try:
                        v = evaluate(tool, xs[0])
                    except grpc.RpcError as e:
                        assert e.code() == grpc.StatusCode.UNAVAILABLE, (e.code(), e.details())
                        return None
                    return v if v.observations == n[0] and not v.sampler.version_lag else None
                return bgtest.wait_for(once, 180, "%s's sampler at %d observations" % (tool, n[0]),
                                       interval=0.05)

            def loglik(i):
                w = bgtest.bandit_w(i, DD)
                return sum(-0.5 * (r - sum(a * b for a, b in zip(x, w))) ** 2
                           for x, r in data[:n[0]])

            def objective(x, c):
                """log P(h|D) + log harm(x, h) of a cautious hypothesis, up to
                log Z (the prior is uniform): the iid estimator's argmax."""
                return loglik(c.id) + math.log(bgtest.bandit_harm(x, c.id, DD, theta, 1.0))

            for _ in range(DOBS):
                observe()
            for tool in ("on", "off"):
                caught_up(tool)
            for x in xs:  # remembered by `on`
                for tool in ("on", "off"):
                    evaluate(tool, x)
            # two more observations, one at a time: the round of the first
            # searched all DCTX contexts; it is over once the second's
            # training ran (one trainer thread)
            for _ in range(2):
                observe()
                for tool in ("on", "off"):
                    caught_up(tool)
            m = scrape(addr)
            assert value(m, PRE + "contexts_total") >= DCTX, value(m, PRE + "contexts_total")
            reach, below, flips = {"on": 0, "off": 0}, {"on": 0, "off": 0}, {"on": 0, "off": 0}
            for x in xs:
                ve = evaluate("exact", x)
                assert ve.bound_kind == guard_pb2.EXACT and ve.observations == n[0], ve
                je = objective(x, ve.cautious)
                for tool in ("on", "off"):
                    v = evaluate(tool, x)
                    assert v.bound_kind == guard_pb2.SAMPLED and v.samples == DK, v
                    j = objective(x, v.cautious)
                    assert j <= je + 1e-9, (tool, x, j, je)  # exact's is the argmax
                    reach[tool] += j >= je - 1e-9
                    below[tool] += v.harm_bound < ve.harm_bound - 1e-9
                    flips[tool] += v.decision != ve.decision
                    print("%s: cautious %d (exact %d) objective gap %.3g, bound %.6g (exact "
                          "%.6g)" % (tool, v.cautious.id, ve.cautious.id, je - j, v.harm_bound,
                                     ve.harm_bound))
            print("of %d contexts: exact cautious hypothesis reached on %d / off %d; bound below "
                  "exact on %d / off %d; decision unlike exact's on %d / off %d" % (
                      DCTX, reach["on"], reach["off"], below["on"], below["off"], flips["on"],
                      flips["off"]))
            assert reach["on"] == DCTX and below["on"] == 0 and flips["on"] == 0, (reach, below,
                                                                                  flips)
            assert reach["off"] <= DCTX // 2 and below["off"] >= DCTX // 2, (reach, below)
            assert flips["off"] >= 1, flips
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    t0 = time.monotonic()
    bgtest.main([test_context_search_over_the_wire, test_decision_effect])
