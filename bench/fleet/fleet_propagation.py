"""Fleet propagation latency (issue 15, docs/PERFORMANCE.md): from an Observe
acknowledged by sidecar A to the posterior updated on sidecar B, both in
fleet mode on one redis-server (started here on a free port, no
persistence). Two fleets run side by side in one process: plain
(redis://) and TLS (rediss:// to a redis-server on a TLS port only, with
client certificates and AUTH, certificates made here by the openssl CLI),
and the trials alternate between them, so that both see the same load.
Each trial observes a fresh session on A and then polls B's Evaluate until
that session shows the observation; the latency is the time from A's
acknowledgement to the first Evaluate of B that saw it (so it includes one
Evaluate round trip, ~0.2 ms). Not a test: prints a table.

    cd build && BG_BUILD_DIR=$PWD BG_PLUGIN_DIR=$PWD/plugins \\
      BG_PYTHONPATH=$PWD/python /usr/bin/python3 ../bench/fleet/fleet_propagation.py [TRIALS]

TRIALS per fleet (default 500); BG_FLEET_BENCH_TLS=0 runs the plain one only.
"""
import contextlib
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "python"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "fleet"))
from bgtest import guard_pb2  # noqa: E402
from test_fleet import fleet_env, obs, policies, sidecar  # noqa: E402
import test_fleet_tls as tls  # noqa: E402


@contextlib.contextmanager
def tls_fleet():
    tmp = tls.env()
    r = tls.TlsRedis(tmp, os.path.join(tmp, "certs")).start()
    try:
        pol = policies(tmp)
        with tls.tls_sidecar(tmp, "a", pol, r) as a, tls.tls_sidecar(tmp, "b", pol, r) as b:
            yield a, b
    finally:
        r.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def plain_fleet():
    with fleet_env() as (tmp, r, pol):
        with sidecar(tmp, "a", pol, r) as a, sidecar(tmp, "b", pol, r) as b:
            yield a, b


def trial(a, ca, b, cb, s, harmed):
    a.call("Observe", obs(s, harmed), ch=ca)
    t0 = time.perf_counter()
    while b.evaluate(guard_pb2.EvaluateRequest(
            action=guard_pb2.Action(tool="t"),
            context=guard_pb2.Context(session=s)), ch=cb).observations < 1:
        if time.perf_counter() - t0 > 10:
            raise SystemExit("session %s: not propagated in 10 s" % s)
    return (time.perf_counter() - t0) * 1e3


def row(name, lat):
    lat = sorted(lat)

    def q(p):
        return lat[min(len(lat) - 1, int(p * len(lat)))]
    print("| %s | %d | %.2f | %.2f | %.2f | %.2f |" % (name, len(lat), q(0.5), q(0.9), q(0.99),
                                                     lat[-1]))
    return q(0.5), q(0.99)


def main():
    trials = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    with_tls = os.environ.get("BG_FLEET_BENCH_TLS", "1") != "0"
    with contextlib.ExitStack() as st:
        fleets = {"redis://": st.enter_context(plain_fleet())}
        if with_tls:
            fleets["rediss:// (TLS, client cert, AUTH)"] = st.enter_context(tls_fleet())
        chans = {k: (a, a.channel(), b, b.channel()) for k, (a, b) in fleets.items()}
        for k, (a, ca, b, cb) in chans.items():
            for w in range(20):  # connected and warm
                trial(a, ca, b, cb, "warm%d" % w, False)
        lat = {k: [] for k in fleets}
        for i in range(trials):
            for k, (a, ca, b, cb) in chans.items():  # interleaved: the same load for each
                lat[k].append(trial(a, ca, b, cb, "p%d" % i, i % 2 == 0))
        with open("/proc/loadavg") as f:
            load = f.read().split()[:3]
        print("fleet propagation, Observe acknowledged on A -> posterior updated on B "
              "(load average %s)" % " ".join(load))
        print("| fleet | trials | p50 ms | p90 ms | p99 ms | max ms |")
        print("|---|---:|---:|---:|---:|---:|")
        qs = {k: row(k, v) for k, v in lat.items()}
        if with_tls:
            (p50, p99), (t50, t99) = qs.values()
            print("TLS / plain: p50 x%.2f, p99 x%.2f" % (t50 / p50, t99 / p99))


if __name__ == "__main__":
    main()
