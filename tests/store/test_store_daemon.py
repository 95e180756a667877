"""The observation log against the real daemon and the bayesguard CLI
(issue 15 item 2; docs/STORE.md):

- a byte flipped mid-file in a sealed segment: bayesguardd refuses to start,
  naming the file and the byte offset and what to run; `bayesguard store
  verify` exits 1 and prints FILE:OFFSET (and the same in --json);
  `bayesguard store repair` keeps the damaged file as .corrupt, says what it
  dropped, and the daemon then starts with every other observation;
- a torn tail of the last segment is still cut at start (verify: exit 0);
- kill -9 in a loop (>= 50 times) while 4 threads send Observes and one
  sends ObserveStreams under `outcomes: open`: after each restart every
  acknowledged observation (by its action id) is in the log, and no id is
  there twice; the last start replays exactly the records of the log.

The log is read here with a parser written from docs/STORE.md, not with the
daemon's code. Run with /usr/bin/python3 (ctest sets the environment)."""
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

import grpc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import bgtest  # noqa: E402
from bgtest import Daemon, guard_pb2  # noqa: E402

POLICY = """apiVersion: bayesguard/v1
kind: GuardPolicy
metadata: {name: arms}
spec:
  match: {tools: ["pull_*"]}
  model: {plugin: bandit, config: {features: 4, sigma: 1.0, theta: 2.0}}
  estimator: {plugin: noniid, alpha: 0.01}
  threshold: 0.3
  over_threshold: deny
  session: context.session
  outcomes: open
  features: from_request
"""
SEG1 = "obs-00000000000000000001.bglog"
ARM = [1.0, 0.0, 1.0, 1.0]


def write_policy(tmp):
    pol = os.path.join(tmp, "pol")
    os.makedirs(pol)
    with open(os.path.join(pol, "arms.yaml"), "w") as f:
        f.write(POLICY)
    return pol


def obs_req(session, aid, r=1.0):
    return guard_pb2.ObserveRequest(
        action=guard_pb2.Action(tool="pull_arm", id=aid, features=ARM,
                                arguments_json='{"api_key": "sk-SECRET-%s"}' % aid),
        context=guard_pb2.Context(session=session), harmed=r > 2.0, value=r)


def evaluate(d, session):
    return d.evaluate(guard_pb2.EvaluateRequest(
        action=guard_pb2.Action(tool="pull_arm", features=ARM),
        context=guard_pb2.Context(session=session)))


def log_files(data):
    """The log's files in replay order (docs/STORE.md): the newest snapshot,
    then the segments by number (observations.bglog is segment 0) that it
    does not cover (those below its number are left over by a compaction
    killed before its deletes)."""
    names = sorted(os.listdir(data))
    snaps = [n for n in names if n.startswith("snapshot-") and n.endswith(".bgsnap")]
    cover = int(snaps[-1][9:29]) if snaps else 0
    segs = [n for n in names if n == "observations.bglog" or
            (n.startswith("obs-") and n.endswith(".bglog"))]
    segs = [n for n in segs if (0 if n == "observations.bglog" else int(n[4:24])) >= cover]
    segs.sort(key=lambda n: 0 if n == "observations.bglog" else int(n[4:24]))
    return snaps[-1:] + segs


def read_records(path, last):
    """(offset, action id) of each record; a torn tail is allowed in the
    last segment only; anything else is an AssertionError."""
    with open(path, "rb") as f:
        b = f.read()
    if len(b) < 8 and last:
        return []  # a segment whose header a kill cut at its creation
    assert b[:8] in (b"BGOBS01\n", b"BGSNP01\n"), path
    off, out = 8, []
    while off < len(b):
        if len(b) - off < 8:
            assert last, "%s: header cut at %d" % (path, off)
            break
        n, crc = struct.unpack_from("<II", b, off)
        if n > len(b) - off - 8 or zlib.crc32(b[off + 8:off + 8 + n]) != crc:
            assert last and off + 8 + n >= len(b), "%s: bad record at %d" % (path, off)
            break
        p, q = b[off + 8:off + 8 + n], 1
        strs = []
        for _ in range(5):  # guard, session, tool, id, arguments
            k = struct.unpack_from("<I", p, q)[0]
            strs.append(p[q + 4:q + 4 + k].decode())
            q += 4 + k
        out.append((off, strs[3], strs[4]))
        off += 8 + n
    return out


def all_ids(data):
    files = log_files(data)
    ids = []
    for i, n in enumerate(files):
        ids += [r[1] for r in read_records(os.path.join(data, n), i == len(files) - 1)]
    return ids


def run_daemon_expect_fail(pol, data, extra=()):
    d = Daemon(policies=pol, args=["--data-dir", data] + list(extra))
    argv = d.argv()
    d.cleanup()
    r = subprocess.run(argv[:argv.index("--ready-file")] + argv[argv.index("--ready-file") + 2:],
                       capture_output=True, text=True, timeout=60)
    return r


def cli(*args):
    return subprocess.run([bgtest.CLI] + list(args), capture_output=True, text=True, timeout=60)


def test_corrupt_verify_repair():
    tmp = tempfile.mkdtemp(prefix="bgstore-")
    data = os.path.join(tmp, "data")
    os.makedirs(data)
    pol = write_policy(tmp)
    args = ["--data-dir", data, "--log-segment-bytes", "4096"]
    with Daemon(policies=pol, args=args) as d:
        for i in range(80):
            d.call("Observe", obs_req("s", "a%d" % i, 1.0 + (i % 3)))
        want_all = evaluate(d, "s")
    assert want_all.observations == 80
    segs = log_files(data)
    assert len(segs) >= 3, segs
    # the arguments are in no file of the log, only their keyed hash
    for n in os.listdir(data):
        with open(os.path.join(data, n), "rb") as f:
            assert b"sk-SECRET" not in f.read(), n
    recs = read_records(os.path.join(data, SEG1), False)
    assert all(r[2].startswith("bgh1:") and len(r[2]) == 37 for r in recs), recs[:2]
    off = recs[2][0]
    seg1 = os.path.join(data, SEG1)
    with open(seg1, "r+b") as f:
        f.seek(off + 20)
        c = f.read(1)
        f.seek(off + 20)
        f.write(bytes([c[0] ^ 0x10]))

    r = run_daemon_expect_fail(pol, data)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "%s: offset %d:" % (seg1, off) in out, out
    assert "bayesguard store repair" in out, out
    print("refused to start:", [l for l in out.splitlines() if "offset" in l][0])

    v = cli("store", "verify", data)
    assert v.returncode == 1, (v.returncode, v.stdout, v.stderr)
    assert "%s:%d:" % (seg1, off) in v.stdout, v.stdout
    vj = cli("store", "verify", data, "--json")
    assert vj.returncode == 1, vj.stderr
    j = json.loads(vj.stdout)
    assert not j["clean"] and j["corrupt"] == 1 and j["records"] == 79, j
    bad = [p for p in j["problems"] if not p["torn_tail"]]
    assert bad[0]["file"] == seg1 and bad[0]["offset"] == off, j

    rp = cli("store", "repair", data)
    assert rp.returncode == 0, (rp.stdout, rp.stderr)
    assert "%s:%d:" % (seg1, off) in rp.stdout and "dropped" in rp.stdout, rp.stdout
    print("repair:", rp.stdout.strip().splitlines()[-1])
    assert os.path.exists(seg1 + ".corrupt")
    assert cli("store", "verify", data).returncode == 0
    with Daemon(policies=pol, args=args) as d:
        v = evaluate(d, "s")
        assert v.observations == 79, v  # only the damaged record is gone
        d.call("Observe", obs_req("s", "after-repair"))

    # a torn tail of the last segment: cut at start, verify still exits 0
    last = os.path.join(data, log_files(data)[-1])
    good = os.path.getsize(last)
    with open(last, "ab") as f:
        f.write(struct.pack("<II", 300, 7) + b"half a record")
    v = cli("store", "verify", data)
    assert v.returncode == 0 and "torn tail" in v.stdout, v.stdout
    with Daemon(policies=pol, args=args) as d:
        assert evaluate(d, "s").observations == 80
        assert "dropped a torn record" in d.log()
    assert os.path.getsize(last) > good - 1
    assert cli("store", "frobnicate", data).returncode == 2
    assert cli("store", "verify", os.path.join(tmp, "nope")).returncode == 2
    shutil.rmtree(tmp, ignore_errors=True)


def test_kill9_loop():
    tmp = tempfile.mkdtemp(prefix="bgstore-")
    data = os.path.join(tmp, "data")
    os.makedirs(data)
    pol = write_policy(tmp)
    args = ["--data-dir", data, "--log-segment-bytes", "8192", "--snapshot-bytes", "32768",
            "--max-observe-rate", "0"]
    rng = random.Random(15)
    acked = set()
    iterations = 50
    t0 = time.monotonic()
    for it in range(iterations):
        d = Daemon(policies=pol, args=args).start()
        ch = d.channel()
        observe = ch.unary_unary(bgtest.GUARD + "Observe",
                                 request_serializer=guard_pb2.ObserveRequest.SerializeToString,
                                 response_deserializer=guard_pb2.ObserveResponse.FromString)
        stream = ch.stream_unary(
            bgtest.GUARD + "ObserveStream",
            request_serializer=guard_pb2.ObserveRequest.SerializeToString,
            response_deserializer=guard_pb2.ObserveStreamResponse.FromString)
        stop = threading.Event()
        mine = [set() for _ in range(5)]

        def unary(t):
            k = 0
            while not stop.is_set():
                aid = "%d-%d-%d" % (it, t, k)
                k += 1
                try:
                    observe(obs_req("k%d" % t, aid), timeout=5)
                except grpc.RpcError:
                    return
                mine[t].add(aid)

        def streamer():
            k = 0
            while not stop.is_set():
                batch = ["%d-s-%d" % (it, k + j) for j in range(5)]
                k += 5
                try:
                    resp = stream(iter([obs_req("ks", a) for a in batch]), timeout=5)
                except grpc.RpcError:
                    return
                assert resp.accepted == 5, resp
                mine[4].update(batch)

        ths = [threading.Thread(target=unary, args=(t,)) for t in range(4)]
        ths.append(threading.Thread(target=streamer))
        for t in ths:
            t.start()
        time.sleep(rng.uniform(0.03, 0.12))
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait()
        stop.set()
        for t in ths:
            t.join()
        d.stop(expect=None)
        d.cleanup()
        for m in mine:
            acked |= m
        ids = all_ids(data)
        dup = len(ids) - len(set(ids))
        assert dup == 0, "iteration %d: %d observations stored twice" % (it, dup)
        lost = acked - set(ids)
        assert not lost, "iteration %d: acknowledged but not stored: %s" % (it, sorted(lost)[:5])
    ids = all_ids(data)
    with Daemon(policies=pol, args=args) as d:
        st = d.call("Status", guard_pb2.StatusRequest())
        assert st.observations == len(ids), (st.observations, len(ids))
    print("kill -9 x %d in %.1f s: %d acknowledged, %d stored, none twice, none lost; files %s"
          % (iterations, time.monotonic() - t0, len(acked), len(ids), log_files(data)))
    assert len(acked) > iterations, "too few observations acknowledged to test anything"
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    bgtest.main([test_corrupt_verify_repair, test_kill9_loop])
