"""Fleet mode on a Redis stream (issue 15, item 1), over real processes:
a redis-server started here on a free port (no persistence) and three
bayesguardd sidecars with --fleet redis://127.0.0.1:PORT/KEY.

- an outcome reported to one sidecar changes the verdicts of the other two;
- 1,000 observations spread round-robin over the three (4 sessions, fixed
  seed) reach the same posterior on all three: Evaluate's harm_bound and
  posterior_predictive compared with ==, the observation count exact;
- Redis stopped while observations arrive, then restarted: every
  acknowledged observation arrives everywhere, none twice (per-session
  counts exact on every sidecar), and the bounds are bit-identical, also
  after a sidecar restarts (its stream order comes from fleet.order);
- spec.fleet {max_lag: 300ms, on_stale: deny}: DENY without a receipt while
  Redis is down, ALLOW again once it is back; the lag in Verdict, Status
  and /metrics; `bayesguard check` refuses a max_lag that is no duration;
- --fleet-maxlen trims the stream; a sidecar started afterwards converges
  bit-identically from the published snapshot;
- with a log that compacts (4 KiB segments, --snapshot-bytes 8192): the
  three converge bit-identically, and a sidecar restarted from its
  snapshot (once with Redis restarted empty) neither applies again nor
  skips, and its new observations reach its peers;
- kill -9 of one sidecar, 50 times, during an ObserveStream: after each
  restart it holds every acknowledged observation, and so does a peer.
Run with /usr/bin/python3 (ctest sets the environment)."""
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import grpc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import bgmetrics  # noqa: E402
import bgtest  # noqa: E402
from bgtest import Daemon, guard_pb2, wait_for  # noqa: E402

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
if not os.access(REDIS, os.X_OK):
    print("skip: redis-server is not installed (Debian package redis-server; "
          "scripts/install-deps.sh installs it)")
    sys.exit(bgtest.SKIP)
POLICY = """apiVersion: bayesguard/v1
kind: GuardPolicy
metadata: {name: fl}
spec:
  match: {tools: ["t"]}
  model: {plugin: bernoulli, config: {grid_size: 64}}
  estimator: {plugin: noniid, delta: 0.05, prior_floor: 0.001}
  threshold: 0.5
  over_threshold: deny
  session: context.session
  outcomes: open
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Redis:
    """A throwaway redis-server: no RDB, no AOF, killed at the end."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.port = free_port()
        self.proc = None

    def start(self):
        self.log = open(os.path.join(self.tmp, "redis-%d.log" % time.monotonic_ns()), "wb")
        self.proc = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.tmp,
             # small stream nodes, so that MAXLEN ~ N trims close to N
             "--stream-node-max-entries", "10"], stdout=self.log, stderr=subprocess.STDOUT)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError("redis-server exited %s" % self.proc.returncode)
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as c:
                    c.sendall(b"PING\r\n")
                    return c.recv(16).startswith(b"+PONG")
            except OSError:
                return False
        wait_for(up, 10, "redis-server on port %d" % self.port)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        self.log.close()

    def cmd(self, *args):
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as c:
            c.sendall(b"".join([b"*%d\r\n" % len(args)] +
                               [b"$%d\r\n%s\r\n" % (len(a), a) for a in
                                (x.encode() if isinstance(x, str) else x for x in args)]))
            return c.recv(4096)


@contextlib.contextmanager
def fleet_env():
    """A temp dir, a running redis-server and the policy dir; all gone after."""
    tmp = tempfile.mkdtemp(prefix="bgfl-")
    r = Redis(tmp).start()
    try:
        yield tmp, r, policies(tmp)
    finally:
        r.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def policies(tmp):
    pol = os.path.join(tmp, "pol")
    os.makedirs(pol, exist_ok=True)
    with open(os.path.join(pol, "fl.yaml"), "w") as f:
        f.write(POLICY)
    return pol


def sidecar(tmp, name, pol, redis, key="fleet", args=()):
    data = os.path.join(tmp, "data-" + name)
    os.makedirs(data, exist_ok=True)
    return Daemon(policies=pol, args=["--data-dir", data, "--fleet",
                                      "redis://127.0.0.1:%d/%s" % (redis.port, key)] + list(args))


def obs(session, harmed):
    return guard_pb2.ObserveRequest(action=guard_pb2.Action(tool="t"),
                                    context=guard_pb2.Context(session=session), harmed=harmed)


def ev(d, session):
    return d.evaluate(guard_pb2.EvaluateRequest(action=guard_pb2.Action(tool="t"),
                                                context=guard_pb2.Context(session=session)))


def converged(ds, counts, timeout=30):
    """Every sidecar holds exactly counts[session] observations; then the
    verdicts of all of them are compared bit for bit."""
    def same():
        for d in ds:
            for s, n in counts.items():
                got = ev(d, s).observations
                assert got <= n, "session %s: %d observations on %s, %d sent (applied twice?)" % (
                    s, got, d.addrs[0], n)
                if got != n:
                    return False
        return True
    wait_for(same, timeout, "every sidecar to hold %s" % counts)
    for s in counts:
        vs = [ev(d, s) for d in ds]
        for v in vs[1:]:
            assert v.harm_bound == vs[0].harm_bound, (s, v.harm_bound, vs[0].harm_bound)
            assert v.posterior_predictive == vs[0].posterior_predictive, s
            assert v.decision == vs[0].decision, s
    return [ev(ds[0], s).harm_bound for s in counts]


def test_outcome_reaches_the_others_and_1000_converge():
    with fleet_env() as (tmp, r, pol):
        with sidecar(tmp, "a", pol, r) as a, sidecar(tmp, "b", pol, r) as b, \
                sidecar(tmp, "c", pol, r) as c:
            ds = [a, b, c]
            for _ in range(30):  # a safe history first, learnt by all three
                a.call("Observe", obs("s-harm", False))
            converged(ds, {"s-harm": 30})
            before = ev(b, "s-harm")
            assert before.decision == guard_pb2.ALLOW, before
            for _ in range(10):  # then harm, reported to a alone
                a.call("Observe", obs("s-harm", True))
            converged(ds, {"s-harm": 40})
            for d in (b, c):
                v = ev(d, "s-harm")
                assert v.harm_bound > before.harm_bound, (v.harm_bound, before.harm_bound)
                assert v.decision == guard_pb2.DENY, v
            # 1,000 spread over the three, four sessions, fixed seed
            rng = random.Random(15)
            counts = {"s%d" % k: 0 for k in range(4)}
            t0 = time.monotonic()
            for i in range(1000):
                s = "s%d" % rng.randrange(4)
                counts[s] += 1
                ds[i % 3].call("Observe", obs(s, rng.random() < 0.2))
            bounds = converged(ds, counts, timeout=60)
            print("1000 observations over 3 sidecars: converged %.2f s after the first; "
                  "bounds %s bit-identical" % (time.monotonic() - t0, bounds))


def test_redis_down_loses_nothing_applies_nothing_twice():
    with fleet_env() as (tmp, r, pol):
        with sidecar(tmp, "a", pol, r) as a, sidecar(tmp, "b", pol, r) as b, \
                sidecar(tmp, "c", pol, r) as c:
            ds = [a, b, c]
            counts = {"d0": 0, "d1": 0}
            for i in range(30):
                s = "d%d" % (i % 2)
                counts[s] += 1
                ds[i % 3].call("Observe", obs(s, i % 5 == 0))
            converged(ds, counts)
            r.stop()
            for i in range(60):  # acknowledged while Redis is down
                s = "d%d" % (i % 2)
                counts[s] += 1
                ds[i % 3].call("Observe", obs(s, i % 7 == 0))
            r.start()  # same port, empty: the stream is gone, the outboxes are not
            for i in range(30):
                s = "d%d" % (i % 2)
                counts[s] += 1
                ds[i % 3].call("Observe", obs(s, i % 3 == 0))
            converged(ds, counts)
            # a restart re-reads the stream: what it applied before (stored
            # with its fleet id) is recognised, not applied again
            b.stop()
            os.unlink(b.ready)
            b.start()
            converged(ds, counts)
            assert b.call("Status", guard_pb2.StatusRequest()).fleet.applied == 0


FRESH = POLICY.replace("name: fl}", "name: fresh}").replace('tools: ["t"]', 'tools: ["f"]') \
    .replace("threshold: 0.5", "threshold: 1") + \
    "  fleet: {max_lag: 300ms, on_stale: deny}\n"


def test_on_stale_deny_while_stale_and_recovers():
    with fleet_env() as (tmp, r, pol):
        with open(os.path.join(pol, "fresh.yaml"), "w") as f:
            f.write(FRESH)
        with sidecar(tmp, "a", pol, r, args=["--metrics-listen", "127.0.0.1:0"]) as a:
            maddr = bgmetrics.metrics_addr(a)

            def verdict():
                return a.evaluate(guard_pb2.EvaluateRequest(
                    action=guard_pb2.Action(tool="f"), context=guard_pb2.Context(session="x")))
            wait_for(lambda: verdict().fleet_lag_ms == 0, 10, "in sync with the stream")
            v = verdict()
            assert not v.fleet_stale and v.fleet_lag_ms == 0, v
            st = a.call("Status", guard_pb2.StatusRequest())
            assert st.HasField("fleet") and st.fleet.connected, st.fleet
            fams = bgmetrics.scrape(maddr)
            assert bgmetrics.value(fams, "bayesguard_fleet_connected") == 1
            assert bgmetrics.value(fams, "bayesguard_fleet_lag_seconds") == 0
            r.stop()
            wait_for(lambda: verdict().fleet_stale, 10, "a stale verdict")
            v = verdict()
            assert v.decision == guard_pb2.DENY and v.fleet_lag_ms > 300 and not v.receipt, v
            assert v.reason.startswith("fleet: ") and "max_lag 300 ms: on_stale DENY" in \
                v.reason, v.reason
            # a policy without spec.fleet reports the lag and decides on its bound
            vt = ev(a, "x")
            assert not vt.fleet_stale and vt.fleet_lag_ms > 300, vt
            a.call("Observe", obs("x", False))  # acknowledged while stale
            assert a.call("Status", guard_pb2.StatusRequest()).fleet.pending_out == 1
            fams = bgmetrics.scrape(maddr)
            assert bgmetrics.value(fams, "bayesguard_fleet_pending", direction="out") == 1
            assert bgmetrics.value(fams, "bayesguard_fleet_lag_seconds") > 0.3
            assert bgmetrics.value(fams, "bayesguard_fleet_connected") == 0
            r.start()
            wait_for(lambda: not verdict().fleet_stale, 10, "fresh again")
            assert verdict().decision == guard_pb2.ALLOW and verdict().reason == ""
            wait_for(lambda: a.call("Status", guard_pb2.StatusRequest()).fleet.pending_out == 0,
                     10, "the outbox shipped")
            fams = bgmetrics.scrape(maddr)
            assert bgmetrics.value(fams, "bayesguard_fleet_entries_total", result="shipped") == 1
            assert r.cmd("XLEN", "fleet") == b":1\r\n", r.cmd("XLEN", "fleet")
    # spec.fleet is checked like the rest of the schema
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "bad.yaml"), "w") as f:
            f.write(FRESH.replace("300ms", "5 parsecs"))
        out = subprocess.run([bgtest.CLI, "check", d, "--plugins", bgtest.PLUGIN_DIR],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 1 and "spec.fleet.max_lag '5 parsecs'" in out.stdout + \
            out.stderr, out


def test_new_sidecar_bootstraps_from_the_snapshot_after_trim():
    with fleet_env() as (tmp, r, pol):
        trim = ["--fleet-maxlen", "40", "--fleet-snapshot-every", "16"]
        with sidecar(tmp, "a", pol, r, args=trim) as a, sidecar(tmp, "b", pol, r, args=trim) as b:
            counts = {"t0": 0, "t1": 0, "t2": 0}
            for i in range(300):
                s = "t%d" % (i % 3)
                counts[s] += 1
                (a, b)[i % 2].call("Observe", obs(s, i % 6 == 0))
            converged([a, b], counts)
            xlen = int(r.cmd("XLEN", "fleet")[1:].split(b"\r")[0])
            assert xlen < 150, "stream not trimmed: %d entries" % xlen
            with sidecar(tmp, "late", pol, r, args=trim) as late:
                converged([a, b, late], counts)
                assert "bootstrap: applied the snapshot" in late.log(), late.log_text_tail()
            print("300 observations, stream trimmed to %d entries; a new sidecar converged "
                  "from the snapshot" % xlen)


def log_files(data):
    names = os.listdir(data)
    return (sorted(n for n in names if n.startswith("obs-") and n.endswith(".bglog")),
            sorted(n for n in names if n.startswith("snapshot-") and n.endswith(".bgsnap")))


def test_compaction_keeps_fleet_ids_and_order():
    """Fleet mode on a log that compacts: 4 KiB segments, a snapshot once
    8 KiB are sealed. A compaction rewrites the segments it covers into the
    snapshot and deletes them; fleet ids (node-record number) and
    fleet.order must survive that, so after compactions: the three converge
    bit-identically; a restarted sidecar (replay from the snapshot) neither
    applies a peer's observation again nor skips one; its new local
    observations get fresh ids (a record number reused after compaction
    would make the peers drop them as duplicates); and with Redis restarted
    empty, its stream order comes back from fleet.order alone."""
    small = ["--log-segment-bytes", "4096", "--snapshot-bytes", "8192"]
    with fleet_env() as (tmp, r, pol):
        with sidecar(tmp, "a", pol, r, args=small) as a, \
                sidecar(tmp, "b", pol, r, args=small) as b, \
                sidecar(tmp, "c", pol, r, args=small) as c:
            ds = [a, b, c]
            rng = random.Random(1515)
            counts = {"k%d" % k: 0 for k in range(3)}

            def spread(n, who):
                for i in range(n):
                    s = "k%d" % rng.randrange(3)
                    counts[s] += 1
                    who[i % len(who)].call("Observe", obs(s, rng.random() < 0.25))
            spread(600, ds)
            before = converged(ds, counts, timeout=60)
            bdata = os.path.join(tmp, "data-b")
            wait_for(lambda: log_files(bdata)[1], 30, "a snapshot in %s" % bdata)
            segs, snaps = log_files(bdata)
            assert "obs-00000000000000000000.bglog" not in segs, segs  # compacted away
            # restart b: its log now starts with a snapshot
            b.stop()
            os.unlink(b.ready)
            b.start()
            assert converged(ds, counts, timeout=60) == before
            # new observations on b after the restart reach a and c
            spread(90, [b])
            spread(60, ds)
            mid = converged(ds, counts, timeout=60)
            # Redis restarted empty, b restarted again: order from fleet.order
            r.stop()
            r.start()
            b.stop()
            os.unlink(b.ready)
            b.start()
            assert converged(ds, counts, timeout=60) == mid
            spread(30, ds)
            after = converged(ds, counts, timeout=60)
            segs, snaps = log_files(bdata)
            print("fleet with compaction: %d observations over 3 sidecars, b restarted twice "
                  "(once with Redis empty); b's log: %d segments, snapshot %s; bounds %s "
                  "bit-identical" % (sum(counts.values()), len(segs), snaps, after))


def test_kill9_loop_during_observe_stream():
    rounds = int(os.environ.get("BG_FLEET_KILL_ROUNDS", "50"))
    acked = 0
    with fleet_env() as (tmp, r, pol):
        with sidecar(tmp, "peer", pol, r) as peer:
            a = sidecar(tmp, "a", pol, r)
            for k in range(rounds):
                if a.ready and os.path.exists(a.ready):
                    os.unlink(a.ready)  # start() waits for a fresh one
                a.start()
                # one acknowledged stream, then a second one cut by kill -9
                stub = a.channel().stream_unary(
                    "/bayesguard.v1.Guard/ObserveStream",
                    request_serializer=guard_pb2.ObserveRequest.SerializeToString,
                    response_deserializer=guard_pb2.ObserveStreamResponse.FromString)
                stub(iter([obs("k", k % 4 == 0) for _ in range(5)]), timeout=20)
                acked += 5

                def gen():
                    for _ in range(50):
                        yield obs("k", False)
                        time.sleep(0.001)
                fut = stub.future(gen(), timeout=20)
                time.sleep(0.01)
                a.proc.send_signal(signal.SIGKILL)
                a.stop(expect=None)
                try:
                    fut.result()
                    acked += 50
                except grpc.RpcError:
                    pass
            os.unlink(a.ready)
            a.start()
            got = ev(a, "k").observations
            assert got >= acked, "%d acknowledged, %d after restart" % (acked, got)
            # the fleet holds exactly what a holds
            converged([a, peer], {"k": got}, timeout=60)
            print("kill -9 x%d: %d acknowledged, %d stored, all in the fleet" % (rounds, acked,
                                                                                 got))
            a.stop()
            a.cleanup()


if __name__ == "__main__":
    bgtest.main([test_outcome_reaches_the_others_and_1000_converge,
                 test_redis_down_loses_nothing_applies_nothing_twice,
                 test_on_stale_deny_while_stale_and_recovers,
                 test_new_sidecar_bootstraps_from_the_snapshot_after_trim,
                 test_compaction_keeps_fleet_ids_and_order,
                 test_kill9_loop_during_observe_stream])
