"""The escalation workflow against the real daemon (issue 12, item 1).

- An enforce-mode ESCALATE opens a pending escalation (List shows who
  asked, the policy, the bound, the arguments as a hash, the expiry); the
  verdict says escalation = PENDING.
- ResolveEscalation APPROVE -> a parked AwaitDecision returns ALLOW with a
  receipt (flag approved) that Observe accepts, once; REJECT -> DENY with
  the reason; the checks: approver required, reason required for REJECT,
  unknown id NOT_FOUND, a settled one FAILED_PRECONDITION naming its state.
- AwaitDecision with timeout_ms shorter than the wait returns the ESCALATE
  verdict (PENDING); expiry (policy timeout 1s) -> DENY, under
  on_timeout: allow -> ALLOW with a receipt.
- Only the identity that asked may await (another uid: NOT_FOUND); an
  agent-only listener cannot Resolve, an operator-only one cannot Await
  (PERMISSION_DENIED).
- Restart with --data-dir keeps the pending ones with their expiry, and a
  resolution after the restart works; a file corrupted mid-record stops
  the start naming the file and the offset; a torn tail is cut off.
- WatchEscalations streams the pending ones, then new, then settled ones
  (filtered by policy if asked); a watcher that does not read is cut off
  with RESOURCE_EXHAUSTED while Evaluate goes on.
- A full table (--max-escalations 1) fails closed: DENY with a reason.
- One identity cannot fill the table for everyone: past
  --max-escalations-per-identity its new ESCALATE is a DENY naming the
  quota and how to clear it, while another uid (and the plain-TCP callers,
  one identity together) still escalate; refusals are counted by reason;
  a settlement makes room for that identity again.
- Every settlement is a decision-log line joined by decision_id.
- SIGTERM ends a parked await with UNAVAILABLE and the daemon exits 0.
- The CLI: escalations list (--json) / approve / reject / watch.
Run with /usr/bin/python3 (ctest sets the environment)."""
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import bgtest  # noqa: E402
import grpc  # noqa: E402
from bgmetrics import metrics_addr, scrape, value  # noqa: E402
from bgtest import Daemon, call_as, expect_code, guard_pb2  # noqa: E402

C = grpc.StatusCode
POLICY = """apiVersion: bayesguard/v1
kind: GuardPolicy
metadata: {name: esc}
spec:
  match: {tools: ["danger_*"]}
  model: {plugin: bernoulli, config: {rates: [0.01, 0.5, 0.9]}}
  estimator: {plugin: iid}
  threshold: 0.05
  over_threshold: escalate
  session: context.agent
%s
---
apiVersion: bayesguard/v1
kind: GuardPolicy
metadata: {name: fast}
spec:
  match: {tools: ["quick_*"]}
  model: {plugin: bernoulli, config: {rates: [0.01, 0.5, 0.9]}}
  estimator: {plugin: iid}
  threshold: 0.05
  over_threshold: escalate
  escalation: {timeout: 1s, on_timeout: %s}
"""


def policies(esc="", on_timeout="deny"):
    d = tempfile.mkdtemp(prefix="bgt-epol-")
    with open(os.path.join(d, "esc.yaml"), "w") as f:
        f.write(POLICY % (esc, on_timeout))
    return d


def ereq(tool="danger_rm", agent="a1", args='{"path":"/"}'):
    return guard_pb2.EvaluateRequest(action=guard_pb2.Action(tool=tool, arguments_json=args),
                                     context=guard_pb2.Context(agent=agent, session="s"))


def daemon(pol=None, data_dir=None, extra=(), listen=None):
    tmp = tempfile.mkdtemp(prefix="bgt-esc-")
    args = ["--decision-log", os.path.join(tmp, "decisions.jsonl")]
    if data_dir:
        args += ["--data-dir", data_dir]
    d = Daemon(policies=pol or policies(), listen=listen or (), unix=listen is None,
               args=args + list(extra))
    d.declog = os.path.join(tmp, "decisions.jsonl")
    return d


def resolve(d, id, approve=True, approver="alice", reason="", **kw):
    return d.call("ResolveEscalation", guard_pb2.ResolveEscalationRequest(
        id=id, resolution=guard_pb2.APPROVE if approve else guard_pb2.REJECT,
        approver=approver, reason=reason), **kw)


def await_(d, id, timeout_ms=10000, **kw):
    return d.call("AwaitDecision", guard_pb2.AwaitDecisionRequest(decision_id=id,
                                                                   timeout_ms=timeout_ms), **kw)


def lst(d, settled=False, **kw):
    return list(d.call("ListEscalations", guard_pb2.ListEscalationsRequest(
        include_settled=settled), **kw).escalations)


def in_thread(fn):
    box = {}

    def run():
        try:
            box["v"] = fn()
        except Exception as e:  # the test asserts on it
            box["e"] = e
    t = threading.Thread(target=run)
    t.start()
    return t, box


def decision_lines(d, did):
    out = []
    with open(d.declog) as f:
        for line in f:
            j = json.loads(line)
            if j.get("decision_id") == did:
                out.append(j)
    return out


def test_approve_await_observe():
    with daemon(extra=["--metrics-listen", "127.0.0.1:0"]) as d:
        v = d.evaluate(ereq())
        assert v.decision == guard_pb2.ESCALATE and v.escalation == guard_pb2.PENDING, v
        assert len(v.receipt) == 0
        es = lst(d)
        assert [e.id for e in es] == [v.decision_id], es
        assert d.call("Status", guard_pb2.StatusRequest()).escalations_pending == 1
        e = es[0]
        assert e.state == guard_pb2.PENDING and e.policy == "esc" and e.tool == "danger_rm"
        assert e.peer == "uid:%d" % os.getuid() and e.agent == "a1" and e.session == "a1", e
        assert e.arguments.startswith("sha256:") and "(12 bytes)" in e.arguments, e.arguments
        assert '"/"' not in e.arguments
        assert abs(e.harm_bound - v.harm_bound) < 1e-12 and e.threshold == 0.05
        assert e.cautious.label == v.cautious.label
        assert e.expires_unix_ms - e.created_unix_ms == 15 * 60 * 1000, e
        assert e.on_timeout == "deny"
        # parked until a person decides
        t, box = in_thread(lambda: await_(d, v.decision_id, timeout_ms=20000))
        time.sleep(0.2)
        assert t.is_alive(), box
        r = resolve(d, v.decision_id, approver="alice", reason="looked fine")
        assert r.state == guard_pb2.APPROVED and r.approver == "alice"
        assert r.approver_peer == "uid:%d" % os.getuid() and r.resolved_unix_ms > 0
        t.join(10)
        assert "e" not in box, box
        fin = box["v"]
        assert fin.decision == guard_pb2.ALLOW and fin.escalation == guard_pb2.APPROVED, fin
        assert fin.escalation_record.approver == "alice" and len(fin.receipt) > 0
        assert fin.decision_id == v.decision_id and fin.policy == "esc"
        # the receipt reports the approved action's outcome, once
        o = guard_pb2.ObserveRequest(action=ereq().action, context=ereq().context,
                                     harmed=False, receipt=fin.receipt)
        assert d.call("Observe", o).observations == 1
        expect_code(lambda: d.call("Observe", o), C.ALREADY_EXISTS)
        # a second await of a settled one answers at once
        again = await_(d, v.decision_id)
        assert again.decision == guard_pb2.ALLOW and again.receipt == fin.receipt
        # settled: refused, naming the state
        expect_code(lambda: resolve(d, v.decision_id, approve=False, reason="x"),
                    C.FAILED_PRECONDITION, ["APPROVED"])
        expect_code(lambda: resolve(d, "nope"), C.NOT_FOUND, ["nope"])
        expect_code(lambda: resolve(d, v.decision_id, approver=""), C.INVALID_ARGUMENT,
                    ["approver"])
        assert lst(d) == [] and [e.id for e in lst(d, settled=True)] == [v.decision_id]
        st = d.call("Status", guard_pb2.StatusRequest())
        assert st.escalations_pending == 0
        pi = {p.name: p for p in st.policies}
        assert pi["esc"].escalation_timeout == "15m" and pi["esc"].escalation_on_timeout == "deny"
        assert pi["fast"].escalation_timeout == "1s"
        m = scrape(metrics_addr(d))
        assert value(m, "bayesguard_escalations_pending") == 0
        assert value(m, "bayesguard_escalation_resolutions_total", result="approved") == 1
        assert value(m, "bayesguard_escalation_resolutions_total", result="rejected") == 0
        assert value(m, "bayesguard_escalation_wait_seconds_count") == 1
        assert value(m, "bayesguard_escalation_wait_seconds_bucket", le="+Inf") == 1
        assert value(m, "bayesguard_escalation_wait_seconds_bucket", le="5") == 1
        assert value(m, "bayesguard_escalation_wait_seconds_bucket", le="1") in (0, 1)
    lines = decision_lines(d, v.decision_id)
    assert [l["decision"] for l in lines] == ["ESCALATE", "ALLOW"], lines
    assert lines[0]["escalation"] == "PENDING"
    res = lines[1]
    assert res["escalation"] == "APPROVED" and res["approver"] == "alice", res
    assert res["approver_peer"] == "uid:%d" % os.getuid() and res["reason"] == "looked fine"
    assert res["policy"] == "esc" and res["tool"] == "danger_rm" and res["waited_ms"] >= 0
    d.cleanup()


def test_reject_and_pending_timeout():
    with daemon() as d:
        v = d.evaluate(ereq())
        # timeout_ms first: the ESCALATE verdict itself, still pending
        t0 = time.monotonic()
        p = await_(d, v.decision_id, timeout_ms=300)
        assert 0.25 <= time.monotonic() - t0 < 3.0
        assert p.decision == guard_pb2.ESCALATE and p.escalation == guard_pb2.PENDING, p
        assert p.escalation_record.id == v.decision_id and len(p.receipt) == 0
        # a client that gives up (its own deadline) frees its parked call
        expect_code(lambda: await_(d, v.decision_id, timeout_ms=60000, timeout=0.3),
                    C.DEADLINE_EXCEEDED)
        bgtest.wait_for(lambda: d.call("Status", guard_pb2.StatusRequest()).in_flight == 1, 5.0,
                        "the cancelled await to finish")
        expect_code(lambda: resolve(d, v.decision_id, approve=False, reason=""),
                    C.INVALID_ARGUMENT, ["reason"])
        r = resolve(d, v.decision_id, approve=False, reason="not on prod")
        assert r.state == guard_pb2.REJECTED and r.reason == "not on prod"
        fin = await_(d, v.decision_id)
        assert fin.decision == guard_pb2.DENY and fin.escalation == guard_pb2.REJECTED
        assert fin.reason == "not on prod" and len(fin.receipt) == 0
        assert fin.escalation_record.reason == "not on prod"
        expect_code(lambda: resolve(d, v.decision_id), C.FAILED_PRECONDITION, ["REJECTED"])
        # a record's size does not depend on the client: request strings are cut
        big = d.evaluate(ereq(agent="\u00e9" * 50000, tool="quick_" + "t" * 3000))
        e = [x for x in lst(d) if x.id == big.decision_id][0]
        assert len(e.agent.encode()) <= 1024 and e.agent == "\u00e9" * 512, len(e.agent)
        assert len(e.tool.encode()) <= 1024
        # shadow is untouched: only enforce mode opens escalations (covered by
        # the policy's mode; here: a DENY-policy tool opens none)
        expect_code(lambda: await_(d, "0-0"), C.NOT_FOUND)
    d.cleanup()


def test_expiry_deny_and_allow():
    for on_timeout, want in (("deny", guard_pb2.DENY), ("allow", guard_pb2.ALLOW)):
        with daemon(pol=policies(on_timeout=on_timeout)) as d:
            v = d.evaluate(ereq(tool="quick_x"))
            assert v.escalation == guard_pb2.PENDING
            e = lst(d)[0]
            assert e.expires_unix_ms - e.created_unix_ms == 1000 and e.on_timeout == on_timeout
            t0 = time.monotonic()
            fin = await_(d, v.decision_id, timeout_ms=10000)
            waited = time.monotonic() - t0
            assert 0.5 < waited < 3.0, waited
            assert fin.decision == want and fin.escalation == guard_pb2.EXPIRED, fin
            assert (len(fin.receipt) > 0) == (want == guard_pb2.ALLOW)
            expect_code(lambda: resolve(d, v.decision_id), C.FAILED_PRECONDITION, ["EXPIRED"])
        lines = decision_lines(d, v.decision_id)
        assert lines[-1]["escalation"] == "EXPIRED" and lines[-1]["decision"] == (
            "ALLOW" if want == guard_pb2.ALLOW else "DENY"), lines
        d.cleanup()


def test_identity_and_roles():
    tmp = tempfile.mkdtemp(prefix="bgt-esock-")
    os.chmod(tmp, 0o755)  # uid 65534 must reach the socket
    agent = "unix:" + os.path.join(tmp, "agent.sock")
    oper = "unix:" + os.path.join(tmp, "oper.sock")
    with daemon(listen=("agent,reporter@" + agent, "operator@" + oper),
                extra=["--socket-group", "65534"] if os.getuid() == 0 else []) as d:
        v = d.evaluate(ereq(), i=0)
        assert v.escalation == guard_pb2.PENDING
        # an agent-only listener cannot resolve; an operator-only one cannot await
        expect_code(lambda: resolve(d, v.decision_id, i=0), C.PERMISSION_DENIED)
        expect_code(lambda: lst(d, i=0), C.PERMISSION_DENIED)
        expect_code(lambda: await_(d, v.decision_id, i=1), C.PERMISSION_DENIED)
        if os.getuid() == 0:
            # another uid on the agent socket: NOT_FOUND, as for an unknown id
            _, err = call_as(65534, 65534, agent, "AwaitDecision",
                             guard_pb2.AwaitDecisionRequest(decision_id=v.decision_id,
                                                            timeout_ms=100), guard_pb2.Verdict)
            assert err is not None and err[0] == "NOT_FOUND", err
            assert v.decision_id in err[1]
        r = resolve(d, v.decision_id, i=1)
        assert r.state == guard_pb2.APPROVED
        assert await_(d, v.decision_id, i=0).decision == guard_pb2.ALLOW
    d.cleanup()
    shutil.rmtree(tmp, ignore_errors=True)


def test_restart_keeps_pending():
    data = tempfile.mkdtemp(prefix="bgt-edata-")
    with daemon(data_dir=data) as d:
        keep = d.evaluate(ereq())
        gone = d.evaluate(ereq(agent="a2"))
        resolve(d, gone.decision_id, approve=False, reason="no")
        before = {e.id: e for e in lst(d, settled=True)}
    d.cleanup()
    path = os.path.join(data, "escalations.log")
    assert os.stat(path).st_mode & 0o777 == 0o600
    with daemon(data_dir=data) as d:
        es = lst(d)
        assert [e.id for e in es] == [keep.decision_id], es
        assert es[0].expires_unix_ms == before[keep.decision_id].expires_unix_ms
        assert es[0].created_unix_ms == before[keep.decision_id].created_unix_ms
        settled = {e.id: e for e in lst(d, settled=True)}
        assert settled[gone.decision_id].state == guard_pb2.REJECTED
        assert resolve(d, keep.decision_id).state == guard_pb2.APPROVED
        fin = await_(d, keep.decision_id)
        assert fin.decision == guard_pb2.ALLOW and len(fin.receipt) > 0
        o = guard_pb2.ObserveRequest(action=ereq().action, context=ereq().context,
                                     harmed=True, receipt=fin.receipt)
        assert d.call("Observe", o).observations >= 1
        third = d.evaluate(ereq(agent="a3"))
    d.cleanup()
    # a torn tail (a crash mid-append) is cut off; the records before it stay
    size = os.path.getsize(path)
    with open(path, "ab") as f:
        f.write(struct.pack("<II", 500, 0) + b'{"id":')
    with daemon(data_dir=data) as d:
        assert [e.id for e in lst(d)] == [third.decision_id]
    d.cleanup()
    assert os.path.getsize(path) <= size
    # corruption in the middle: the start stops, naming the file and offset
    with open(path, "r+b") as f:
        blob = f.read()
        n = struct.unpack("<I", blob[:4])[0]
        assert len(blob) > 8 + n, "want a second record after the first"
        f.seek(20)
        f.write(b"X")
    d = daemon(data_dir=data)
    try:
        d.start()
        raise AssertionError("started with a corrupt escalations file")
    except AssertionError as e:
        msg = str(e)
        assert "exited 2" in msg and path in msg and "offset 0" in msg, msg
    finally:
        d.cleanup()
    shutil.rmtree(data, ignore_errors=True)


def test_watch():
    with daemon() as d:
        first = d.evaluate(ereq())
        ch = d.channel()
        stream = ch.unary_stream(
            bgtest.GUARD + "WatchEscalations",
            request_serializer=guard_pb2.WatchEscalationsRequest.SerializeToString,
            response_deserializer=guard_pb2.EscalationEvent.FromString)(
                guard_pb2.WatchEscalationsRequest(), timeout=20)
        ev = next(stream)
        assert ev.escalation.id == first.decision_id and ev.escalation.state == guard_pb2.PENDING
        # a watch and a list filtered on another policy see none of them
        other = ch.unary_stream(
            bgtest.GUARD + "WatchEscalations",
            request_serializer=guard_pb2.WatchEscalationsRequest.SerializeToString,
            response_deserializer=guard_pb2.EscalationEvent.FromString)(
                guard_pb2.WatchEscalationsRequest(policy="fast"), timeout=20)
        assert len(d.call("ListEscalations", guard_pb2.ListEscalationsRequest(
            policy="fast")).escalations) == 0
        second = d.evaluate(ereq(agent="a2"))
        ev = next(stream)
        assert ev.escalation.id == second.decision_id and ev.escalation.state == guard_pb2.PENDING
        resolve(d, first.decision_id, approve=False, reason="nope")
        ev = next(stream)
        assert ev.escalation.id == first.decision_id and ev.escalation.state == guard_pb2.REJECTED
        assert ev.escalation.reason == "nope"
        quick = d.evaluate(ereq(tool="quick_x"))
        ev = next(other)  # the first event of the filtered watch is the "fast" one
        assert ev.escalation.id == quick.decision_id and ev.escalation.policy == "fast"
        ev = next(stream)
        assert ev.escalation.id == quick.decision_id
        # the drain ends the watch with UNAVAILABLE, and a parked await too
        t, box = in_thread(lambda: await_(d, second.decision_id, timeout_ms=20000))
        time.sleep(0.2)
        d.send_signal(signal.SIGTERM)
        try:
            next(stream)
            raise AssertionError("the watch went on after SIGTERM")
        except grpc.RpcError as e:
            assert e.code() == C.UNAVAILABLE, e
        t.join(10)
        assert isinstance(box.get("e"), grpc.RpcError) and box["e"].code() == C.UNAVAILABLE, box
        try:
            for ev in other:  # the expiry of quick_x may come before the drain's end
                assert ev.escalation.id == quick.decision_id
            raise AssertionError("the filtered watch ended without a status")
        except grpc.RpcError as e:
            assert e.code() == C.UNAVAILABLE, e
        assert d.wait_exit(30) == 0
        d.proc = None
    d.cleanup()


def test_slow_watcher_cut_off():
    """A watcher that does not read (a 1 KiB stream window, no BDP probing:
    the daemon's sends stop completing) is cut off with RESOURCE_EXHAUSTED
    once its queue (256 past the pending ones) is full; Evaluate goes on."""
    with daemon(extra=["--max-escalations", "4096"]) as d:
        slow = grpc.insecure_channel(d.addrs[0], options=[("grpc.http2.bdp_probe", 0),
                                                          ("grpc.http2.lookahead_bytes", 1024)])
        stream = slow.unary_stream(
            bgtest.GUARD + "WatchEscalations",
            request_serializer=guard_pb2.WatchEscalationsRequest.SerializeToString,
            response_deserializer=guard_pb2.EscalationEvent.FromString)(
                guard_pb2.WatchEscalationsRequest(), timeout=60)
        ch = d.channel()
        for i in range(600):
            assert d.evaluate(ereq(agent="a%d" % i), ch=ch).escalation == guard_pb2.PENDING
        n = 0
        try:
            for _ in stream:
                n += 1
            raise AssertionError("the slow watch was not cut off")
        except grpc.RpcError as e:
            assert e.code() == C.RESOURCE_EXHAUSTED and "fell behind" in e.details(), e
        assert n < 600 - 256, n
        assert d.evaluate(ereq(agent="after"), ch=ch).escalation == guard_pb2.PENDING
        assert len(lst(d)) == 601
        slow.close()
    d.cleanup()


def test_full_table_fails_closed():
    with daemon(extra=["--max-escalations", "1"]) as d:
        a = d.evaluate(ereq())
        assert a.decision == guard_pb2.ESCALATE and a.escalation == guard_pb2.PENDING
        b = d.evaluate(ereq(agent="a2"))
        assert b.decision == guard_pb2.DENY, b
        assert "full" in b.reason and b.escalation == guard_pb2.ESCALATION_STATE_UNSPECIFIED
        resolve(d, a.decision_id, approve=False, reason="r")
        c = d.evaluate(ereq(agent="a3"))
        assert c.escalation == guard_pb2.PENDING
    line = decision_lines(d, b.decision_id)[0]
    assert line["decision"] == "DENY" and line["escalation"] == "REFUSED" and "full" in line["reason"]
    d.cleanup()


def test_identity_quota():
    """The attack: one identity escalates until the table is full, and every
    other agent's ESCALATE would become a DENY. The per-identity quota keeps
    room for the others."""
    tmp = tempfile.mkdtemp(prefix="bgt-equota-")
    os.chmod(tmp, 0o755)  # uid 65534 must reach the socket
    sock = "unix:" + os.path.join(tmp, "bg.sock")
    root = os.getuid() == 0
    extra = ["--max-escalations", "8", "--max-escalations-per-identity", "3",
             "--metrics-listen", "127.0.0.1:0"] + (["--socket-group", "65534"] if root else [])
    with daemon(listen=(sock, "127.0.0.1:0"), extra=extra) as d:
        me = "uid:%d" % os.getuid()
        mine = [d.evaluate(ereq(agent="a%d" % k), i=0) for k in range(3)]
        assert all(v.escalation == guard_pb2.PENDING for v in mine), mine
        over = d.evaluate(ereq(agent="a9"), i=0)
        assert over.decision == guard_pb2.DENY, over
        assert over.escalation == guard_pb2.ESCALATION_STATE_UNSPECIFIED, over
        for want in (me, "3 pending", "--max-escalations-per-identity", "settle"):
            assert want in over.reason, (want, over.reason)
        # other identities still escalate: plain TCP (every such caller one
        # identity) and, as root, another uid on the same socket
        tcp = d.evaluate(ereq(agent="b1"), i=1)
        assert tcp.escalation == guard_pb2.PENDING, tcp
        if root:
            other, err = call_as(65534, 65534, sock, "Evaluate", ereq(agent="c1"),
                                 guard_pb2.Verdict)
            assert err is None and other.escalation == guard_pb2.PENDING, (other, err)
            peers = sorted(e.peer for e in lst(d))
            assert peers == sorted([me] * 3 + ["", "uid:65534"]), peers
        m = scrape(metrics_addr(d))
        assert value(m, "bayesguard_escalations_refused_total", reason="identity_quota") == 1
        assert value(m, "bayesguard_escalations_refused_total", reason="table_full") == 0
        assert value(m, "bayesguard_escalations_refused_total", reason="write_failed") == 0
        # settling one of the caller's makes room for it again
        resolve(d, mine[0].decision_id, approve=False, reason="no")
        again = d.evaluate(ereq(agent="a10"), i=0)
        assert again.escalation == guard_pb2.PENDING, again
        assert d.evaluate(ereq(agent="a11"), i=0).decision == guard_pb2.DENY
        m = scrape(metrics_addr(d))
        assert value(m, "bayesguard_escalations_refused_total", reason="identity_quota") == 2
    line = decision_lines(d, over.decision_id)[0]
    assert line["escalation"] == "REFUSED" and "--max-escalations-per-identity" in line["reason"]
    d.cleanup()
    shutil.rmtree(tmp, ignore_errors=True)


def test_identity_quota_default():
    """Without the flag an identity may hold a quarter of --max-escalations."""
    with daemon(extra=["--max-escalations", "8"]) as d:
        vs = [d.evaluate(ereq(agent="a%d" % k)) for k in range(3)]
        assert [v.escalation for v in vs[:2]] == [guard_pb2.PENDING] * 2, vs
        assert vs[2].decision == guard_pb2.DENY and "2 pending" in vs[2].reason, vs[2]
    d.cleanup()


def test_cli():
    with daemon() as d:
        v = d.evaluate(ereq())
        env = dict(os.environ, USER="carol")
        r = subprocess.run([bgtest.CLI, "escalations", "list", "--json", "--addr", d.addrs[0]],
                           capture_output=True, text=True, timeout=30, env=env)
        assert r.returncode == 0, r.stderr
        rows = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
        assert [x["id"] for x in rows] == [v.decision_id] and rows[0]["state"] == "PENDING", rows
        r = subprocess.run([bgtest.CLI, "escalations", "list", "--addr", d.addrs[0]],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and v.decision_id in r.stdout and "danger_rm" in r.stdout
        r = subprocess.run([bgtest.CLI, "escalations", "reject", v.decision_id,
                            "--addr", d.addrs[0]], capture_output=True, text=True, timeout=30)
        assert r.returncode == 2 and "--reason" in r.stderr, (r.returncode, r.stderr)
        r = subprocess.run([bgtest.CLI, "escalations", "approve", v.decision_id,
                            "--addr", d.addrs[0]], capture_output=True, text=True, timeout=30,
                           env=env)
        assert r.returncode == 0, r.stderr
        assert "APPROVED" in r.stdout
        e = lst(d, settled=True)[0]
        assert e.approver == "carol", e
        r = subprocess.run([bgtest.CLI, "escalations", "approve", v.decision_id,
                            "--addr", d.addrs[0]], capture_output=True, text=True, timeout=30,
                           env=env)
        assert r.returncode == 3 and "FAILED_PRECONDITION" in r.stderr, (r.returncode, r.stderr)
        assert "APPROVED" in r.stderr
        w = d.evaluate(ereq(agent="a9"))
        r = subprocess.run([bgtest.CLI, "escalations", "reject", w.decision_id, "--reason",
                            "too risky", "--approver", "dave", "--json", "--addr", d.addrs[0]],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        j = json.loads(r.stdout)
        assert j["state"] == "REJECTED" and j["approver"] == "dave" and j["reason"] == "too risky"
        # watch: the pending ones, then the settled one, one JSON line each
        x = d.evaluate(ereq(agent="a10"))
        p = subprocess.Popen([bgtest.CLI, "escalations", "watch", "--json", "--addr",
                              d.addrs[0]], stdout=subprocess.PIPE, text=True)
        try:
            first = json.loads(p.stdout.readline())
            assert first["id"] == x.decision_id and first["state"] == "PENDING", first
            resolve(d, x.decision_id)
            nxt = json.loads(p.stdout.readline())
            assert nxt["id"] == x.decision_id and nxt["state"] == "APPROVED", nxt
        finally:
            p.terminate()
            p.wait(10)
    d.cleanup()


def test_check_validates_escalation_keys():
    pol = policies(esc="  escalation: {timeout: 15 minutes, on_timeout: maybe}")
    r = subprocess.run([bgtest.CLI, "check", pol, "--plugins", bgtest.PLUGIN_DIR],
                       capture_output=True, text=True, timeout=60)
    out = r.stdout + r.stderr
    assert r.returncode == 1, (r.returncode, out)
    assert "esc.yaml:11:" in out and "spec.escalation.timeout" in out, out
    assert "'15 minutes' is not a duration" in out, out
    assert "spec.escalation.on_timeout" in out and "maybe" in out, out
    shutil.rmtree(pol, ignore_errors=True)


if __name__ == "__main__":
    bgtest.require_daemon()
    bgtest.main([test_approve_await_observe, test_reject_and_pending_timeout,
                 test_expiry_deny_and_allow, test_identity_and_roles, test_restart_keeps_pending,
                 test_watch, test_slow_watcher_cut_off, test_full_table_fails_closed,
                 test_identity_quota, test_identity_quota_default,
                 test_check_validates_escalation_keys, test_cli])
