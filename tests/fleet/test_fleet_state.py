"""Fleet mode's local state (issue 15, items 2 and 4 of what was left):
a real redis-server and real daemons, as in test_fleet.py.

- `bayesguard store repair` on a fleet sidecar's data directory: a clean
  log repairs as before; a damaged one is refused (exit 2, the message
  says why and names --fleet-reset) and nothing is touched; with
  --fleet-reset it repairs, moves the log, the fleet files and receipt.key
  into DIR/fleet-reset-<time>/, and the next start is a new node that
  bootstraps from the fleet: it holds exactly the fleet's observations
  (its own old ones included, once each), bit-identical to its peer.
Run with /usr/bin/python3 (ctest sets the environment)."""
import json
import os
import socket
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_fleet as tf  # noqa: E402
from test_fleet import ev, fleet_env, obs, sidecar  # noqa: E402
import bgmetrics  # noqa: E402
import bgtest  # noqa: E402
from bgtest import guard_pb2, wait_for  # noqa: E402


def cli(*args):
    return subprocess.run([bgtest.CLI] + list(args), capture_output=True, text=True, timeout=60)


def flip_mid_record(path):
    """Flip a byte inside the payload of the segment's second record."""
    with open(path, "r+b") as f:
        f.seek(8)
        n = int.from_bytes(f.read(4), "little")
        at = 8 + 8 + n + 8 + 20  # second record, 20 bytes into its payload
        f.seek(at)
        c = f.read(1)
        f.seek(at)
        f.write(bytes([c[0] ^ 0x10]))


def test_repair_refuses_on_a_fleet_dir_unless_reset():
    seg = ["--log-segment-bytes", "4096", "--snapshot-bytes", "0"]
    with fleet_env() as (tmp, r, pol):
        data = os.path.join(tmp, "data-a")
        counts = {"r0": 0, "r1": 0}
        with sidecar(tmp, "peer", pol, r) as peer:
            a = sidecar(tmp, "a", pol, r, args=seg)
            a.start()
            for i in range(120):
                s = "r%d" % (i % 2)
                counts[s] += 1
                (a, peer)[i % 3 == 0].call("Observe", obs(s, i % 4 == 0))
            tf.converged([a, peer], counts)
            node = open(os.path.join(data, "fleet.node")).read().strip()
            a.stop()
            # a clean log on a fleet dir: repair drops nothing, so it runs
            rp = cli("store", "repair", data)
            assert rp.returncode == 0, (rp.stdout, rp.stderr)
            segs = tf.log_files(data)[0]
            assert len(segs) >= 2, segs
            seg1 = os.path.join(data, segs[0])  # sealed: damage in it is corruption
            flip_mid_record(seg1)
            before = sorted(os.listdir(data))
            with open(seg1, "rb") as f:
                damaged = f.read()
            rp = cli("store", "repair", data)
            assert rp.returncode == 2, (rp.returncode, rp.stdout, rp.stderr)
            assert "fleet sidecar" in rp.stderr and "--fleet-reset" in rp.stderr and \
                "renumbers" in rp.stderr, rp.stderr
            assert sorted(os.listdir(data)) == before  # nothing touched
            with open(seg1, "rb") as f:
                assert f.read() == damaged
            print("refused:", rp.stderr.strip()[:160], "...")
            rp = cli("store", "repair", data, "--fleet-reset", "--json")
            assert rp.returncode == 0, (rp.stdout, rp.stderr)
            j = json.loads(rp.stdout)
            assert j["corrupt"] == 1 and j["files_repaired"] == 1, j
            aside = j["fleet_reset"]
            assert os.path.dirname(aside) == data and \
                os.path.basename(aside).startswith("fleet-reset-"), aside
            left = sorted(os.listdir(data))
            for n in left:
                assert not n.startswith(("obs-", "snapshot-", "fleet.")) and \
                    n != "receipt.key", left
            moved = os.listdir(aside)
            assert "fleet.node" in moved and "fleet.order" in moved and \
                os.path.basename(seg1) + ".corrupt" in moved, moved
            # the next start: a new node, bootstrapped from the stream; its own
            # old observations come back once each, as a peer's
            os.unlink(a.ready)
            a.start()
            assert open(os.path.join(data, "fleet.node")).read().strip() != node
            tf.converged([a, peer], counts, timeout=60)
            st = a.call("Status", bgtest.guard_pb2.StatusRequest()).fleet
            assert st.applied == sum(counts.values()), st
            # and it goes on as a member of the fleet
            a.call("Observe", obs("r0", True))
            counts["r0"] += 1
            tf.converged([a, peer], counts)
            print("after --fleet-reset: a new node holds the fleet's %d observations, "
                  "bit-identical to its peer (bound %s)" % (sum(counts.values()),
                                                            ev(a, "r0").harm_bound))
            a.stop()
            a.cleanup()


def resp(port, *args):
    """One Redis command, its reply parsed (bulk strings as bytes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(b"".join([b"*%d\r\n" % len(args)] + [
            b"$%d\r\n%s\r\n" % (len(a), a) for a in
            (x.encode() if isinstance(x, str) else x for x in args)]))
        f = c.makefile("rb")

        def one():
            line = f.readline()[:-2]
            t, rest = line[:1], line[1:]
            if t == b"$":
                n = int(rest)
                return None if n < 0 else f.read(n + 2)[:-2]
            if t == b"*":
                n = int(rest)
                return None if n < 0 else [one() for _ in range(n)]
            if t == b":":
                return int(rest)
            if t == b"-":
                raise AssertionError("redis: %s" % rest)
            return rest
        return one()


def fleet_status(d):
    return d.call("Status", guard_pb2.StatusRequest()).fleet


def replay_attack(r, entry):
    """XADD a copy of an old entry's fields (a new stream id, the old fleet id)."""
    resp(r.port, "XADD", "fleet", "*", *entry[1])


def observe_stream(d, reqs):
    stub = d.channel().stream_unary(
        "/bayesguard.v1.Guard/ObserveStream",
        request_serializer=guard_pb2.ObserveRequest.SerializeToString,
        response_deserializer=guard_pb2.ObserveStreamResponse.FromString)
    for k in range(0, len(reqs), 500):
        stub(iter(reqs[k:k + 500]), timeout=120)


def test_bounded_state_and_replayed_entries():
    """Observations go to a and b at once (two threads), so each one's
    local order differs from the stream order and its fleet.order matters;
    after the checks, Redis restarts empty and b restarts: its stream order
    comes from the compacted fleet.order alone, the bounds must be the same
    bits.

    10,000 observations (20,000 until 2026-12-07: half the time, most of
    this test's, under the sanitizers too) keep each bound's power: a
    fleet.order that is never compacted holds one 20-byte record per
    settle (u64 lsn, "fl", "bN" with their u32 lengths), 200,000 bytes,
    over the limit of 2 x 4 x 10,000 + 64 KiB = 145,536 (the bound is met
    without compaction only below 5,462 observations; and the log must say
    it compacted); an applied-id set of the ids themselves is >= 8 bytes x
    5,000 of a's ids, ten times the 4,096 allowed."""
    n_obs = int(os.environ.get("BG_FLEET_STATE_OBS", "10000"))
    with fleet_env() as (tmp, r, pol):
        m = ["--metrics-listen", "127.0.0.1:0"]
        with sidecar(tmp, "a", pol, r) as a, sidecar(tmp, "b", pol, r, args=m) as b:
            counts = {"b%d" % k: 0 for k in range(8)}
            reqs = ([], [])
            for i in range(n_obs):
                s = "b%d" % (i % 8)
                counts[s] += 1
                reqs[(i // 8) % 2].append(obs(s, i % 9 == 0))  # every session on both
            ths = [threading.Thread(target=observe_stream, args=(d, q))
                   for d, q in ((a, reqs[0]), (b, reqs[1]))]
            for t in ths:
                t.start()
            for t in ths:
                t.join()
            bounds = tf.converged([a, b], counts, timeout=240)
            st = fleet_status(b)
            assert st.applied == len(reqs[0]) and st.refused == 0, st
            fams = bgmetrics.scrape(bgmetrics.metrics_addr(b))
            ids = bgmetrics.value(fams, "bayesguard_fleet_state_bytes", part="applied_ids")
            index = bgmetrics.value(fams, "bayesguard_fleet_state_bytes", part="id_index")
            assert ids < 4096, "applied-id set %d bytes for %d observations" % (ids, n_obs)
            assert index <= 2 * 20 * len(reqs[0]), index  # 20 B each, capacity doubling
            limit = 2 * 4 * n_obs + 64 * 1024  # 2 x (compacted, <= 4 B each) + slack
            sizes = {}
            for d, name in ((a, "a"), (b, "b")):
                path = os.path.join(tmp, "data-" + name, "fleet.order")
                sizes[name] = os.path.getsize(path)
                assert sizes[name] < limit, "%s: fleet.order %d bytes for %d observations, " \
                    "limit %d" % (name, sizes[name], n_obs, limit)
                assert "fleet.order compacted" in d.log(), "%s: no compaction ran" % name
            assert bgmetrics.value(fams, "bayesguard_fleet_state_bytes",
                                   part="order_file") == sizes["b"]

            # the attack: three of a's old entries XADDed again, live (the
            # stream's first 2,000: a and b write at once, so the first few
            # may all be b's — 20 once held only 2 of a's under load)
            anode = open(os.path.join(tmp, "data-a", "fleet.node")).read().strip().encode()
            old = [e for e in resp(r.port, "XRANGE", "fleet", "-", "+", "COUNT", "2000")
                   if e[1][e[1].index(b"origin") + 1] == anode][:3]
            assert len(old) == 3, old
            dup0 = st.duplicates
            for e in old:
                replay_attack(r, e)
            xlen = resp(r.port, "XLEN", "fleet")
            wait_for(lambda: fleet_status(b).duplicates >= dup0 + 3, 20,
                     "b to read the replayed entries")
            st = fleet_status(b)
            assert st.applied == len(reqs[0]) and st.refused == 0, st
            tf.converged([a, b], counts)
            # after a restart (applied ids rebuilt from the log), replayed again
            b.stop()
            os.unlink(b.ready)
            b.start()
            for e in old:
                replay_attack(r, e)
            # b re-reads the stream: a's entries (and the 6 copies) are duplicates
            wait_for(lambda: fleet_status(b).duplicates >= len(reqs[0]) + 6, 120,
                     "b to re-read the stream and the new copies")
            st = fleet_status(b)
            assert st.applied == 0 and st.refused == 0, st
            assert tf.converged([a, b], counts) == bounds
            # Redis restarted empty, b restarted: its order from fleet.order alone
            r.stop()
            r.start()
            b.stop()
            os.unlink(b.ready)
            b.start()
            assert tf.converged([a, b], counts) == bounds
            print("%d observations over 2 sidecars at once (stream %d entries + 6 replayed): "
                  "b's applied-id set %d B, id index %d B; fleet.order a %d B, b %d B (limit "
                  "%d, ~%.1f B per observation); replayed old entries were duplicates live and "
                  "after a restart; bounds %s bit-identical, also restarted on an empty Redis "
                  "(order from the compacted fleet.order)" % (
                      n_obs, xlen - 3, ids, index, sizes["a"], sizes["b"], limit,
                      sizes["b"] / n_obs, bounds[:2]))


if __name__ == "__main__":
    bgtest.main([test_repair_refuses_on_a_fleet_dir_unless_reset,
                 test_bounded_state_and_replayed_entries])
