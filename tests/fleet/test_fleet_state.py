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
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_fleet as tf  # noqa: E402
from test_fleet import ev, fleet_env, obs, sidecar  # noqa: E402
import bgtest  # noqa: E402


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


if __name__ == "__main__":
    bgtest.main([test_repair_refuses_on_a_fleet_dir_unless_reset])
