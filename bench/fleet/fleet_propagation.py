"""Fleet propagation latency (issue 15, docs/PERFORMANCE.md): from an Observe
acknowledged by sidecar A to the posterior updated on sidecar B, both in
fleet mode on one redis-server (started here on a free port, no
persistence). Each trial observes a fresh session on A and then polls B's
Evaluate until that session shows the observation; the latency is the time
from A's acknowledgement to the first Evaluate of B that saw it (so it
includes one Evaluate round trip, ~0.2 ms). Not a test: prints a table.

    cd build && BG_BUILD_DIR=$PWD BG_PLUGIN_DIR=$PWD/plugins \\
      BG_PYTHONPATH=$PWD/python /usr/bin/python3 ../bench/fleet/fleet_propagation.py [TRIALS]
"""
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "python"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "fleet"))
from bgtest import guard_pb2  # noqa: E402
from test_fleet import ev, fleet_env, obs, sidecar  # noqa: E402


def main():
    trials = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    with fleet_env() as (tmp, r, pol):
        with sidecar(tmp, "a", pol, r) as a, sidecar(tmp, "b", pol, r) as b:
            ca, cb = a.channel(), b.channel()
            ev(b, "warm")
            lat = []
            for i in range(trials):
                s = "p%d" % i
                a.call("Observe", obs(s, i % 2 == 0), ch=ca)
                t0 = time.perf_counter()
                while b.evaluate(guard_pb2.EvaluateRequest(
                        action=guard_pb2.Action(tool="t"),
                        context=guard_pb2.Context(session=s)), ch=cb).observations < 1:
                    if time.perf_counter() - t0 > 10:
                        raise SystemExit("trial %d: not propagated in 10 s" % i)
                lat.append((time.perf_counter() - t0) * 1e3)
            lat.sort()

            def q(p):
                return lat[min(len(lat) - 1, int(p * len(lat)))]
            print("fleet propagation, Observe acknowledged on A -> posterior updated on B")
            print("| trials | p50 ms | p90 ms | p99 ms | max ms |")
            print("|---:|---:|---:|---:|---:|")
            print("| %d | %.2f | %.2f | %.2f | %.2f |" % (len(lat), q(0.5), q(0.9), q(0.99),
                                                          lat[-1]))


if __name__ == "__main__":
    main()
