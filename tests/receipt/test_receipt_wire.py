"""Outcome receipts over the wire, against the real daemon (issue 11, item 4).

- The daemon makes <data-dir>/receipt.key 0600 on first start and uses it
  again after a restart; an ALLOW carries a receipt, an ESCALATE none.
- A valid receipt is accepted once; its replay is ALREADY_EXISTS, also after
  a restart with the same --data-dir (the used receipt is in the log).
- 1,000 forged harmless Observes — without a receipt, with a tampered one,
  an expired one, one whose session key was rewritten, one for another
  tool, or a replayed one — are each refused with their code (PERMISSION_DENIED /
  ALREADY_EXISTS), over Observe and ObserveStream, and the session's bound
  and predictive harm are bit-identical after.
- An outcome is recorded in the session its receipt was minted in: under
  `session: peer.identity/context.session`, a reporter under another uid
  (or sending another context.session) reports into the agent's session
  (child and identity level), which the agent's next Evaluate sees; a
  reload that changes the policy's keying voids the receipts minted before.
- `outcomes: open` accepts an Observe without a receipt, and Status says
  which policy takes which.
- A key file others may read, or one named but absent, stops the start
  (exit 2, the message says what to fix); without a data dir or key file
  the daemon warns that receipts die with it.
Run with /usr/bin/python3 (ctest sets the environment)."""
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import bgtest  # noqa: E402
import grpc  # noqa: E402
from bgtest import Daemon, expect_code, guard_pb2  # noqa: E402

C = grpc.StatusCode
OPEN = """apiVersion: bayesguard/v1
kind: GuardPolicy
metadata: {name: lab}
spec:
  match: {tools: ["lab_*"]}
  model: {plugin: bernoulli, config: {grid_size: 20}}
  estimator: {plugin: noniid, delta: 0.05, prior_floor: 0.001}
  threshold: 0.99
  outcomes: open
"""


def policy_dir():
    d = tempfile.mkdtemp(prefix="bgt-rpol-")
    shutil.copy(os.path.join(bgtest.rpc_policies(), "rpc.yaml"), d)  # rpc-test: receipts
    with open(os.path.join(d, "lab.yaml"), "w") as f:
        f.write(OPEN)
    return d


def ereq(tool="rpc_send", session="s1", args='{"to":"x"}'):
    return guard_pb2.EvaluateRequest(action=guard_pb2.Action(tool=tool, arguments_json=args),
                                     context=guard_pb2.Context(session=session))


def oreq(receipt=b"", tool="rpc_send", session="s1", args='{"to":"x"}', harmed=False):
    return guard_pb2.ObserveRequest(action=guard_pb2.Action(tool=tool, arguments_json=args),
                                    context=guard_pb2.Context(session=session),
                                    harmed=harmed, receipt=receipt)


def allow(d, **kw):
    v = d.evaluate(ereq(**kw))
    assert v.decision == guard_pb2.ALLOW and len(v.receipt) > 0, v
    return v.receipt


def rewrite_session(tok, session):
    """tok (receipt v2) with its session key replaced, lengths kept right:
    what a reporter wanting another session would send."""
    nid = tok[12]
    at = 12 + 1 + nid + 1 + tok[13 + nid]
    n = tok[at] | tok[at + 1] << 8
    s = session.encode()
    return tok[:at] + struct.pack("<H", len(s)) + s + tok[at + 2 + n:]


def bits(v):
    """The verdict's numbers as bytes: equal means bit-identical."""
    return struct.pack("<dd", v.harm_bound, v.posterior_predictive), v.observations


def test_receipts_once_across_restart_and_forgeries():
    pol, data = policy_dir(), tempfile.mkdtemp(prefix="bgt-rdata-")
    try:
        # Run 1, receipts living 1 s: to let expire.
        with Daemon(policies=pol, args=["--data-dir", data, "--receipt-ttl-s", "1"]) as d:
            key = os.stat(os.path.join(data, "receipt.key"))
            assert key.st_mode & 0o777 == 0o600 and key.st_size == 32, oct(key.st_mode)
            assert "receipt key %s/receipt.key (created)" % data in d.log(), d.log()
            expired = [allow(d) for _ in range(150)]
            t_minted = time.time()  # every expiry is before t_minted + 1 s
        # Run 2, the default lifetime: a receipt is accepted once.
        with Daemon(policies=pol, args=["--data-dir", data]) as d:
            st = d.call("Status", guard_pb2.StatusRequest())
            outcomes = {p.name: p.outcomes for p in st.policies}
            # default-deny: the built-in catch-all (it only denies, so it
            # never mints a receipt)
            assert outcomes == {"rpc-test": "receipts", "rpc-strict": "receipts",
                                "lab": "open", "default-deny": "receipts"}, outcomes
            # An ESCALATE has no receipt: that action does not run.
            v = d.evaluate(ereq(tool="danger_rm"))
            assert v.decision == guard_pb2.ESCALATE and v.receipt == b"", v
            r0 = allow(d)
            o = d.call("Observe", oreq(r0))
            assert o.observations == 1 and o.session == "s1", o
            expect_code(lambda: d.call("Observe", oreq(r0)), C.ALREADY_EXISTS,
                        ["already used", "each receipt reports one outcome"])
        # Past the 1 s lifetime of `expired` (a deadline, not a guess).
        time.sleep(max(0.0, t_minted + 1.1 - time.time()))

        # Run 3: the same data dir again.
        with Daemon(policies=pol, args=["--data-dir", data]) as d:
            assert "(created)" not in d.log(), d.log()
            assert os.stat(os.path.join(data, "receipt.key")).st_ino == key.st_ino
            # The replay after the restart is still ALREADY_EXISTS.
            expect_code(lambda: d.call("Observe", oreq(r0)), C.ALREADY_EXISTS, ["already used"])
            # One more accepted outcome, then the baseline.
            r1 = allow(d)
            assert d.call("Observe", oreq(r1)).observations == 2
            vb = d.evaluate(ereq())
            base = bits(vb)
            assert base[1] == 2, base

            # Receipts of s-other with their session rewritten to s1.
            others = [rewrite_session(allow(d, session="s-other"), "s1") for _ in range(150)]
            tools = [allow(d, tool="rpc_other") for _ in range(150)]
            args = [allow(d, args='{"to":"y"}') for _ in range(150)]
            fresh = allow(d)
            tampered = fresh[:20] + bytes([fresh[20] ^ 1]) + fresh[21:]
            cases = [
                (lambda i: oreq(b""), C.PERMISSION_DENIED, "no receipt"),
                (lambda i: oreq(tampered), C.PERMISSION_DENIED, "not authentic"),
                (lambda i: oreq(expired[i]), C.PERMISSION_DENIED, "expired"),
                (lambda i: oreq(others[i]), C.PERMISSION_DENIED, "not authentic"),
                (lambda i: oreq(tools[i]), C.PERMISSION_DENIED, "for another tool"),
                (lambda i: oreq(args[i]), C.PERMISSION_DENIED, "for other arguments"),
                (lambda i: oreq((r0, r1)[i % 2]), C.ALREADY_EXISTS, "already used"),
            ]
            n = 0
            while n < 1000:
                make, code, word = cases[n % len(cases)]
                expect_code(lambda: d.call("Observe", make(n // len(cases))), code, [word])
                n += 1
            # The stream refuses the same way, naming the message.
            fn = d.channel().stream_unary(
                "/bayesguard.v1.Guard/ObserveStream",
                request_serializer=guard_pb2.ObserveRequest.SerializeToString,
                response_deserializer=guard_pb2.ObserveStreamResponse.FromString)
            expect_code(lambda: fn(iter([oreq(others[0])]), timeout=30), C.PERMISSION_DENIED,
                        ["observation #0", "not authentic"])
            expect_code(lambda: fn(iter([oreq(r1)]), timeout=30), C.ALREADY_EXISTS,
                        ["observation #0", "already used"])
            # A receipt for decision A sent as the outcome of decision B.
            v = d.evaluate(ereq())
            bad_id = oreq(v.receipt)
            bad_id.id = "someone-else"
            expect_code(lambda: d.call("Observe", bad_id), C.PERMISSION_DENIED,
                        ["ObserveRequest.id is 'someone-else'"])
            # Nothing moved: bit-identical bound, same count.
            after = bits(d.evaluate(ereq()))
            assert after == base, (base, after)
            # ... and the receipt of that last check is still good, once.
            assert d.call("Observe", oreq(v.receipt, harmed=True)).observations == 3
            print("1000 forged Observes refused; harm_bound %.17g, posterior_predictive %.17g, "
                  "%d observations: bit-identical after" % (vb.harm_bound,
                                                           vb.posterior_predictive, base[1]))
    finally:
        shutil.rmtree(pol, ignore_errors=True)
        shutil.rmtree(data, ignore_errors=True)


PEER = """apiVersion: bayesguard/v1
kind: GuardPolicy
metadata: {name: peer}
spec:
  match: {tools: ["peer_*"]}
  model: {plugin: bernoulli, config: {grid_size: 20}}
  estimator: {plugin: iid}
  threshold: 1.0
  session: peer.identity/context.session
  outcomes: receipts
"""

def call_as(uid, addr, method, req, reply_type):
    """A call by another uid (root only) that must succeed."""
    reply, err = bgtest.call_as(uid, uid, addr, method, req, reply_type)
    assert err is None, err
    return reply


def test_outcome_lands_in_the_receipts_session():
    """The agent (uid A) evaluates; the reporter (another uid, on its own
    socket) observes with the receipt: recorded in A's session, whatever the
    reporter's identity and context.session say. As root the agent runs as
    nobody; otherwise the reporter is a TCP caller (no identity at all)."""
    pol = tempfile.mkdtemp(prefix="bgt-rpol-")
    tmp = tempfile.mkdtemp(prefix="bgt-rsock-")
    os.chmod(tmp, 0o755)
    with open(os.path.join(pol, "peer.yaml"), "w") as f:
        f.write(PEER)
    root = os.getuid() == 0
    nobody = 65534
    agent_uid = nobody if root else os.getuid()
    listen = ["agent@unix:" + os.path.join(tmp, "agent.sock"),
              ("reporter@unix:" + os.path.join(tmp, "reporter.sock")) if root
              else "reporter@127.0.0.1:0"]
    try:
        with Daemon(policies=pol, listen=listen,
                    args=(["--socket-group", str(nobody)] if root else [])) as d:
            def agent(session):
                req = ereq(tool="peer_run", session=session, args="{}")
                v = (call_as(nobody, d.addrs[0], "Evaluate", req, guard_pb2.Verdict) if root
                     else d.evaluate(req, i=0))
                return guard_pb2.Decision.Name(v.decision), v.observations, v.receipt

            def report(receipt, session, harmed=False):
                return d.call("Observe", oreq(receipt, tool="peer_run", session=session,
                                              args="{}", harmed=harmed), i=1)

            child = "uid:%d|conv" % agent_uid
            dec, n0, rec = agent("conv")
            assert dec == "ALLOW" and n0 == 0 and rec, (dec, n0)
            # The reporter's own session would be another (its identity,
            # or none): the receipt's decides.
            o = report(rec, "conv")
            assert o.session == child and o.observations == 1, o
            dec, n1, rec = agent("conv")
            assert dec == "ALLOW" and n1 == n0 + 1, (dec, n1)
            # Another context.session from the reporter: still the receipt's.
            o = report(rec, "elsewhere")
            assert o.session == child and o.observations == 2, o
            dec, n2, rec = agent("conv")
            assert n2 == 2, n2
            # The same receipt with its session rewritten: not authentic.
            expect_code(lambda: report(rewrite_session(rec, "uid:%d|conv" % (agent_uid + 1)),
                                       "conv"),
                        C.PERMISSION_DENIED, ["not authentic"])
            # Harms in conv reach the identity level too; conversation b
            # has only harmless outcomes, so its Evaluate is decided by
            # the identity level (the larger bound; the threshold of 1
            # allows all), and its receipt still names the child it was
            # asked for, recorded there and at the identity level.
            for i in range(3):
                assert report(rec, "conv", harmed=True).observations == 3 + i
                rec = agent("conv")[2]
            for i in range(3):
                o = report(agent("b")[2], "conv")
                assert o.session == "uid:%d|b" % agent_uid and o.observations == 1 + i, o
            dec, n, rec = agent("b")
            assert dec == "ALLOW" and n == 8, (dec, n)  # the identity level's: 5 + 3
            o = report(rec, "conv")
            assert o.session == "uid:%d|b" % agent_uid and o.observations == 4, o
            assert agent("b")[1] == 9  # identity level: conv's 5 and b's 4
    finally:
        shutil.rmtree(pol, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


def test_reload_of_the_keying_voids_receipts():
    """A receipt binds the policy's spec.session: after a reload that keys
    sessions otherwise, its key would name another session, so it is
    refused; a reload that keeps the keying keeps it valid."""
    pol = tempfile.mkdtemp(prefix="bgt-rpol-")
    path = os.path.join(pol, "peer.yaml")
    try:
        with open(path, "w") as f:
            f.write(PEER.replace("peer.identity/context.session", "context.session"))
        with Daemon(policies=pol) as d:
            def receipt():
                return allow(d, tool="peer_run", session="uid:0|x", args="{}")

            def observe(r):
                return d.call("Observe", oreq(r, tool="peer_run", session="x", args="{}"))

            kept, voided = receipt(), receipt()
            with open(path, "a") as f:
                f.write("  priority: 1\n")  # a reload, the keying unchanged
            assert d.call("Reload", guard_pb2.ReloadRequest()).revision
            assert observe(kept).session == "uid:0|x"
            with open(path, "w") as f:
                f.write(PEER)
            d.call("Reload", guard_pb2.ReloadRequest())
            expect_code(lambda: observe(voided), C.PERMISSION_DENIED,
                        ["for another session keying", "spec.session"])
    finally:
        shutil.rmtree(pol, ignore_errors=True)


def test_outcomes_open_and_memory_key():
    pol = policy_dir()
    try:
        with Daemon(policies=pol) as d:  # no --data-dir, no key file
            assert "random key in memory" in d.log(), d.log()
            for i in range(3):
                o = d.call("Observe", oreq(tool="lab_run", session="lab"))  # no receipt: open
                assert o.policy == "lab" and o.observations == i + 1, o
            # The ALLOW of an open policy carries a receipt all the same.
            assert len(d.evaluate(ereq(tool="lab_run")).receipt) > 0
            c = d.cli("status", "--json", check=0)
            assert '"outcomes":"open"' in c.stdout.replace(" ", ""), c.stdout
            c = d.cli("status", check=0)
            assert "outcomes=open" in c.stdout and "outcomes=receipts" in c.stdout, c.stdout
    finally:
        shutil.rmtree(pol, ignore_errors=True)


def test_session_key_too_long_for_a_receipt():
    """An ALLOW without a receipt would be an action whose outcome nobody
    can report: a session key longer than a receipt carries is refused
    before any decision under outcomes: receipts, and decides as usual
    under outcomes: open."""
    pol = policy_dir()
    try:
        with Daemon(policies=pol) as d:
            long_key = "s" * 1025
            expect_code(lambda: d.evaluate(ereq(session=long_key)),
                        grpc.StatusCode.INVALID_ARGUMENT,
                        ["the session key is 1025 bytes", "at most 1024 under outcomes: receipts"])
            assert len(allow(d, session="s" * 1024)) > 0  # the longest that fits
            assert d.evaluate(ereq(tool="lab_run", session=long_key)).policy == "lab"
    finally:
        shutil.rmtree(pol, ignore_errors=True)


def start_fails(args, want):
    pol = policy_dir()
    try:
        r = subprocess.run([bgtest.DAEMON, "--listen", "127.0.0.1:0", "--policies", pol,
                            "--plugins", bgtest.PLUGIN_DIR] + args,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, (r.returncode, r.stderr)
        for w in want:
            assert w in r.stderr, (w, r.stderr)
    finally:
        shutil.rmtree(pol, ignore_errors=True)


def test_key_file_refused():
    tmp = tempfile.mkdtemp(prefix="bgt-rkey-")
    try:
        path = os.path.join(tmp, "k")
        with open(path, "wb") as f:
            f.write(os.urandom(32))
        os.chmod(path, 0o644)
        start_fails(["--receipt-key-file", path], ["mode 0644", "chmod 600"])
        # The same refusal for the default key in the data dir.
        os.rename(path, os.path.join(tmp, "receipt.key"))
        start_fails(["--data-dir", tmp], ["receipt.key has mode 0644"])
        start_fails(["--receipt-key-file", os.path.join(tmp, "absent")],
                    ["does not exist", "head -c 32 /dev/urandom"])
        # A key file of the operator's, 0600: served, receipts verify.
        os.chmod(os.path.join(tmp, "receipt.key"), 0o600)
        if os.getuid() == 0:
            # 0600 but another uid's (the tool runner's, the agent's): its
            # owner can read the key and mint receipts for anything
            os.chown(os.path.join(tmp, "receipt.key"), 65534, 65534)
            start_fails(["--data-dir", tmp], ["receipt.key is owned by uid 65534", "chown"])
            os.chown(os.path.join(tmp, "receipt.key"), 0, 0)
        pol = policy_dir()
        try:
            with Daemon(policies=pol,
                        args=["--receipt-key-file", os.path.join(tmp, "receipt.key")]) as d:
                assert d.call("Observe", oreq(allow(d))).observations == 1
        finally:
            shutil.rmtree(pol, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    bgtest.main([test_receipts_once_across_restart_and_forgeries,
                 test_outcome_lands_in_the_receipts_session,
                 test_reload_of_the_keying_voids_receipts,
                 test_outcomes_open_and_memory_key, test_session_key_too_long_for_a_receipt,
                 test_key_file_refused])
