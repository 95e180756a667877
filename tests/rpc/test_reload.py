"""Reload under load through the Reload RPC (issue 4): 8 client threads
send Evaluate continuously while 100 reloads happen, 20 of them with an
invalid policy set. Zero failed RPCs; every verdict names a revision that
was valid; the final revision is the last valid set's."""
import os
import shutil
import sys
import tempfile
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import bgtest  # noqa: E402
from bgtest import Daemon, grpc, guard_pb2  # noqa: E402

POL = bgtest.rpc_policies()
BROKEN = ("apiVersion: bayesguard/v1\nkind: GuardPolicy\nmetadata: {name: broken}\n"
          "spec:\n  match: {tools: [zz]}\n  model: {plugin: bernoulli}\n"
          "  estimator: {plugin: iid}\n  threshold: 2\n")


def test_reload_under_load():
    tmp = tempfile.mkdtemp(prefix="bgt-reload-")
    try:
        shutil.copy(os.path.join(POL, "rpc.yaml"), tmp)
        path = os.path.join(tmp, "rpc.yaml")
        base = open(path).read()
        with Daemon(policies=tmp, args=["--no-watch"]) as d:
            valid = {d.call("Status", guard_pb2.StatusRequest()).revision}
            stop = threading.Event()
            seen, failures, counts = set(), [], [0] * 8
            lock = threading.Lock()

            def client(i):
                ch = grpc.insecure_channel(d.addrs[0])
                mine = set()
                while not stop.is_set():
                    try:
                        v = d.evaluate(guard_pb2.EvaluateRequest(
                            action=guard_pb2.Action(tool="rpc_load"),
                            context=guard_pb2.Context(session="c%d" % i)), ch=ch, timeout=20)
                        mine.add(v.revision)
                        counts[i] += 1
                    except grpc.RpcError as e:
                        with lock:
                            failures.append("%s: %s" % (e.code(), e.details()))
                ch.close()
                with lock:
                    seen.update(mine)

            ts = [threading.Thread(target=client, args=(i,)) for i in range(8)]
            for t in ts:
                t.start()
            bgtest.wait_for(lambda: min(counts) >= 5, 60, "every client evaluating")
            last_valid = None
            bad = 0
            for k in range(100):
                if k % 5 == 4:
                    with open(os.path.join(tmp, "broken.yaml"), "w") as f:
                        f.write(BROKEN)
                    r = d.call("Reload", guard_pb2.ReloadRequest())
                    os.unlink(os.path.join(tmp, "broken.yaml"))
                    assert not r.ok and any("broken.yaml:8:" in e for e in r.errors), r
                    bad += 1
                else:
                    with open(path, "w") as f:
                        f.write(base.replace("threshold: 0.99", "threshold: 0.%04d" % (9000 + k)))
                    r = d.call("Reload", guard_pb2.ReloadRequest())
                    assert r.ok and not r.errors, r
                    valid.add(r.revision)
                    last_valid = r.revision
            stop.set()
            for t in ts:
                t.join(60)
            print("  %d evaluations, %d revisions seen, %d valid, %d refused reloads"
                  % (sum(counts), len(seen), len(valid), bad))
            assert not failures, failures[:5]
            assert bad == 20
            assert seen <= valid, seen - valid
            st = d.call("Status", guard_pb2.StatusRequest())
            assert st.revision == last_valid, (st.revision, last_valid)
            assert st.reload.reloads_failed >= 20, st.reload
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    bgtest.main([test_reload_under_load])
