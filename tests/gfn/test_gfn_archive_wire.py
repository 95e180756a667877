"""The posterior search archive made visible to operators (issue 16 item 3):
SamplerHealth's archive fields (guard.proto 8-11) over the wire, in the CLI's
verdict print, in the Python client's Verdict, and the search counters on
/metrics — with the real daemon, the bandit model (d = 16, `enumerate:
false`: the sampled path) and the gfn sampler trained in the background.

Two policies on one model: `arch` (spec.sampler.search: 2048 per training
round) and `noarch` (search: 0, no archive). Before any observation the
search counters on /metrics are 0. After 12 observations one at a time
(both tools), once the trainer has caught up (polled: version_lag 0):
  - arch: archive_size 1024 (BG__ARCHIVE_CAP: 12 searches of up to 2048
    reward evaluations each score far more than 1024 distinct
    hypotheses), archive_version_lag 0 (the search ran after the round
    that trained on all 12), 0 < search_evaluations <= 2048 (the budget),
    search_cpu_us > 0;
  - noarch: archive_size 0, archive_version_lag 12 (no search saw any of
    the 12 observations), search_evaluations 0, search_cpu_us 0;
  - the Python client's verdict_from_pb carries the four fields unchanged;
  - `bayesguard eval` prints the archive line with the same numbers (and
    none for noarch);
  - /metrics: bayesguard_sampler_search_runs_total between 1 and 12 (one
    search per training round of `arch`'s session sampler; a round may
    cover several observations), the evaluations counter at least the
    verdict's search_evaluations and at most runs x 2048, the CPU counter
    at least the verdict's search_cpu_us, the archive-size gauge 1024.
One more observation: the archive catches up again (lag 0 polled) and the
runs counter grows. The decision log (--decision-log): the lines of those
three Evaluates (by decision_id) carry the four fields in their `sampler`
object with the verdicts' values; noarch's line has none of them (no
archive, as the CLI prints no archive line).
Run with /usr/bin/python3 (ctest sets the environment)."""
import json
import os
import random
import shutil
import sys
import tempfile

_SRC = os.environ.get("BG_SOURCE_DIR") or os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
# the client package first: bgtest's import of bayesguard.v1 must not make
# `bayesguard` a bare namespace package (tests/client/clienttest.py)
sys.path.insert(0, os.path.join(_SRC, "tests", "python"))
sys.path.insert(0, os.path.join(_SRC, "clients", "python"))
import bgtest  # noqa: E402
from bgmetrics import metrics_addr, scrape, value  # noqa: E402
from bgtest import Daemon, grpc, guard_pb2  # noqa: E402

D, K, N_OBS, BUDGET, CAP = 16, 64, 12, 2048, 1024
# test_gfn_health's policy (the same bandit and sampler), with the search
# budget as its sampler limit line.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_gfn_health import POLICY  # noqa: E402
SEARCH = ("bayesguard_sampler_search_runs_total", "bayesguard_sampler_search_evaluations_total",
          "bayesguard_sampler_search_cpu_seconds_total", "bayesguard_sampler_search_archive_size")


def action(tool, x):
    return guard_pb2.Action(tool=tool, features=[float(v) for v in x])


def test_archive_over_the_wire():
    bgtest.require_daemon()
    from bayesguard.verdict import verdict_from_pb
    tmp = tempfile.mkdtemp(prefix="bgarch-")
    try:
        for name, search in (("arch", BUDGET), ("noarch", 0)):
            with open(os.path.join(tmp, name + ".yaml"), "w") as f:
                f.write(POLICY % {"name": name, "limits": "    search: %d" % search,
                                  "threshold": "0.5"})
        log = os.path.join(tmp, "decisions.jsonl")
        with Daemon(policies=tmp, args=["--metrics-listen", "127.0.0.1:0",
                                        "--decision-log", log]) as d:
            addr = metrics_addr(d)
            m0 = scrape(addr)
            for name in SEARCH:
                assert m0[name]["type"] == ("gauge" if name.endswith("size") else "counter"), name
                assert value(m0, name) == 0, (name, value(m0, name))

            rng = random.Random(16)
            w = [rng.randint(0, 1) for _ in range(D)]
            ctx = guard_pb2.Context(session="a1")

            def observe():
                xa = [rng.randint(0, 1) for _ in range(D)]
                r = sum(a * b for a, b in zip(xa, w)) + rng.gauss(0, 1)
                for tool in ("arch", "noarch"):
                    d.call("Observe", guard_pb2.ObserveRequest(action=action(tool, xa),
                                                               context=ctx, harmed=r > 6, value=r))
            for _ in range(N_OBS):
                observe()
            x = [1 if k % 2 else 0 for k in range(D)]

            def caught_up(tool):
                try:
                    v = d.evaluate(guard_pb2.EvaluateRequest(action=action(tool, x), context=ctx))
                except grpc.RpcError as e:  # a sampler still warming up
                    assert e.code() == grpc.StatusCode.UNAVAILABLE, (e.code(), e.details())
                    return None
                h = v.sampler
                if h.version_lag or h.train_steps < 20:
                    return None
                if tool == "arch" and h.archive_version_lag:
                    return None
                return v

            v = bgtest.wait_for(lambda: caught_up("arch"), 120, "arch's sampler and search to "
                                "catch up", interval=0.05)
            h = v.sampler
            print("arch:", str(h).replace("\n", " "))
            assert v.bound_kind == guard_pb2.SAMPLED and v.observations == N_OBS, v
            assert h.archive_size == CAP, h
            assert h.archive_version_lag == 0, h
            assert 0 < h.search_evaluations <= BUDGET, h
            assert h.search_cpu_us > 0, h

            vn = bgtest.wait_for(lambda: caught_up("noarch"), 120, "noarch's sampler to catch up",
                                 interval=0.05)
            hn = vn.sampler
            print("noarch:", str(hn).replace("\n", " "))
            assert hn.archive_size == 0 and hn.archive_version_lag == N_OBS, hn
            assert hn.search_evaluations == 0 and hn.search_cpu_us == 0, hn

            # the Python client maps the four fields
            pv = verdict_from_pb(v)
            assert (pv.sampler.archive_size, pv.sampler.archive_version_lag,
                    pv.sampler.search_evaluations, pv.sampler.search_cpu_us) == (
                        h.archive_size, h.archive_version_lag, h.search_evaluations,
                        h.search_cpu_us), pv.sampler
            pn = verdict_from_pb(vn)
            assert pn.sampler.archive_size == 0 and pn.sampler.archive_version_lag == N_OBS, pn

            # the CLI prints them (nothing new has been observed: the same archive)
            r = d.cli("eval", "--tool", "arch", "--session", "a1", "--features",
                      ",".join(str(b) for b in x))
            line = [ln for ln in r.stdout.splitlines() if ln.strip().startswith("archive ")]
            print("cli:", line)
            assert len(line) == 1, r.stdout
            assert line[0].split() == ["archive", "size=%d" % CAP, "version_lag=0",
                                       "search_evaluations=%d" % h.search_evaluations,
                                       "search_cpu_us=%d" % h.search_cpu_us], line
            r = d.cli("eval", "--tool", "noarch", "--session", "a1", "--features",
                      ",".join(str(b) for b in x))
            assert "sampler " in r.stdout and "archive " not in r.stdout, r.stdout

            # /metrics: the trainer's search counters
            m = scrape(addr)
            runs = value(m, SEARCH[0])
            evals = value(m, SEARCH[1])
            cpu = value(m, SEARCH[2])
            print("metrics: runs %g evals %g cpu %g s archive %g" % (runs, evals, cpu,
                                                                    value(m, SEARCH[3])))
            assert 1 <= runs <= N_OBS, runs
            assert h.search_evaluations <= evals <= runs * BUDGET, (evals, runs)
            assert cpu >= h.search_cpu_us / 1e6 and cpu < 60, cpu
            assert value(m, SEARCH[3]) == CAP, value(m, SEARCH[3])

            # one more observation: the search runs again and catches up
            observe()

            def newer():
                v2 = caught_up("arch")
                return v2 if v2 is not None and v2.observations == N_OBS + 1 else None
            v2 = bgtest.wait_for(newer, 120, "the search after the 13th observation",
                                 interval=0.05)
            assert v2.sampler.archive_size == CAP and v2.sampler.archive_version_lag == 0, v2
            m2 = scrape(addr)
            assert value(m2, SEARCH[0]) == runs + 1, (value(m2, SEARCH[0]), runs)
            assert value(m2, SEARCH[1]) - evals == v2.sampler.search_evaluations, (
                value(m2, SEARCH[1]), evals, v2.sampler)

            # the decision log: each Evaluate's line, found by its decision_id
            d.stop()
            with open(log) as f:
                lines = {l.get("decision_id"): l for l in map(json.loads, f.read().splitlines())}
            four = ("archive_size", "archive_version_lag", "search_evaluations", "search_cpu_us")
            for verdict in (v, v2):
                s = lines[verdict.decision_id]["sampler"]
                print("log:", verdict.decision_id, {k: s[k] for k in four})
                assert [s[k] for k in four] == [getattr(verdict.sampler, k) for k in four], (
                    s, verdict.sampler)
                assert s["version_lag"] == verdict.sampler.version_lag, (s, verdict.sampler)
            sn = lines[vn.decision_id]["sampler"]
            assert not any(k in sn for k in four), sn
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    bgtest.main([test_archive_over_the_wire])
