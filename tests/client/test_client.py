"""The sync client (bayesguard.Guard) against the real daemon: verdicts,
outcome reports with receipts, errors that keep their gRPC code, fail
closed / fail_open, unix sockets, protect() and the OpenAI adapter."""
import json
import os

import grpc

import clienttest
from clienttest import daemon, expect_raises, main

import bayesguard
from bayesguard import Decision, EscalationState, Guard


def test_verdicts_allow_deny_escalate():
    with daemon() as d, Guard(d.addrs[0]) as g:
        v = g.evaluate("send_email", {"to": "a@example.com", "body": "hi"}, session="s1",
                       agent="bot", trace_id="tr-1")
        assert v.decision is Decision.ALLOW and v.allowed, v
        assert v.policy == "client-learn" and v.revision and v.decision_id, v
        assert 0.0 < v.harm_bound < v.threshold == 0.3, v
        assert v.bound_kind is bayesguard.BoundKind.EXACT, v
        assert v.receipt and isinstance(v.receipt, bytes), v
        assert v.cautious is not None and 0.0 < v.cautious.harm <= 1.0, v
        assert v.escalation is EscalationState.NONE, v
        # the request the verdict answers is kept for report(): exact JSON
        assert v.action.tool == "send_email"
        assert json.loads(v.action.arguments_json) == {"to": "a@example.com", "body": "hi"}
        assert v.context == bayesguard.Context("s1", "bot", "tr-1")

        v = g.evaluate("deny_all", {"x": 1}, session="s1")
        assert v.decision is Decision.DENY and not v.allowed and v.policy == "client-deny", v
        assert v.harm_bound > v.threshold and not v.receipt, v
        assert "DENY deny_all" in v.explain() and "client-deny" in v.explain(), v.explain()

        v = g.evaluate("escalate_it", '{"x": 2}', session="s1")
        assert v.decision is Decision.ESCALATE and v.escalated, v
        assert v.policy == "client-escalate" and not v.receipt, v
        assert v.action.arguments_json == '{"x": 2}', "a JSON str is sent as is"


def test_report_moves_the_posterior():
    with daemon() as d, Guard(d.addrs[0]) as g:
        first = g.evaluate("send_email", {"to": "x"}, session="learn")
        assert first.allowed and first.observations == 0, first
        n = 0
        v = first
        while v.allowed:
            r = g.report(v, harmed=True, value=float(n))  # a measured value rides along
            n += 1
            assert r.observations == n and r.policy == "client-learn", r
            v = g.evaluate("send_email", {"to": "x"}, session="learn")
            assert v.observations == n, v
            assert v.harm_bound > first.harm_bound, (v, first)
            assert n < 20, "20 harmful outcomes never turned ALLOW into DENY"
        assert v.decision is Decision.DENY and v.harm_bound >= 0.3, v
        # other sessions are untouched
        assert g.evaluate("send_email", {"to": "x"}, session="other").observations == 0


def test_forged_and_replayed_receipts_keep_their_code():
    with daemon() as d, Guard(d.addrs[0]) as g:
        v = g.evaluate("send_email", {"to": "x"}, session="r")
        forged = bytearray(v.receipt)
        forged[len(forged) // 2] ^= 0x01
        e = expect_raises(bayesguard.PermissionDenied, g.report, v.replace(receipt=bytes(forged)),
                          harmed=False)
        assert e.code == grpc.StatusCode.PERMISSION_DENIED and e.details, e
        assert isinstance(e, bayesguard.GuardError)
        # a receipt for other arguments is refused too
        other = v.replace(action=v.action.__class__(tool="send_email",
                                                    arguments_json='{"to":"y"}'))
        expect_raises(bayesguard.PermissionDenied, g.report, other, harmed=False)
        # the raw receipt with the action it was minted for is accepted once
        r = g.report(v.receipt, harmed=False, tool="send_email", arguments={"to": "x"},
                     session="r")
        assert r.observations == 1, r
        e = expect_raises(bayesguard.AlreadyExists, g.report, v, harmed=False)
        assert e.code == grpc.StatusCode.ALREADY_EXISTS, e
        # a DENY has no receipt: nothing lets its action count as run
        dv = g.evaluate("deny_x", {}, session="r")
        expect_raises(bayesguard.PermissionDenied, g.report, dv, harmed=False)
        expect_raises(ValueError, g.report, v.receipt, harmed=False)  # tool= missing
        expect_raises(TypeError, g.report, v, harmed="no")


def test_errors_keep_the_code():
    with daemon() as d, Guard(d.addrs[0], fail_open=True) as g:
        # payments-style bad input is an answer, not an outage: never failed open
        e = expect_raises(bayesguard.InvalidArgument, g.evaluate, "send_email", "{not json",
                          policy="client-deny")
        assert e.code == grpc.StatusCode.INVALID_ARGUMENT and "policy" in e.details, e
        expect_raises(ValueError, g.evaluate, "", {})
        expect_raises(TypeError, g.evaluate, "send_email", {"x": object()})
        # the daemon keeps serving
        assert g.evaluate("send_email", {}, session="e").allowed


def test_unreachable_daemon_is_a_refusal_unless_fail_open():
    with daemon() as d:
        addr = d.addrs[0]
    # the daemon is gone: nothing listens on addr now
    with Guard(addr, timeout=2) as g:
        e = expect_raises(bayesguard.GuardError, g.evaluate, "send_email", {"to": "x"})
        assert e.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED), e
        ran = []

        @g.protect(tool="send_email")
        def send(to):
            ran.append(to)
        expect_raises(bayesguard.GuardError, send, "x")
        assert ran == [], "a guard that cannot be asked must not let the function run"
    with Guard(addr, timeout=2, fail_open=True) as g:
        v = g.evaluate("send_email", {"to": "x"})
        assert v.allowed and v.failed_open and isinstance(v.error, bayesguard.GuardError), v
        ran = []

        @g.protect(tool="send_email")
        def send2(to):
            ran.append(to)
            return "sent"
        assert send2("y") == "sent" and ran == ["y"]  # and no report was attempted
        expect_raises(ValueError, g.report, v, harmed=False)
    expect_raises(ValueError, Guard, "nohostport")
    expect_raises(ValueError, Guard, "unix:")


def test_unix_socket_and_a_separate_reporter():
    import tempfile
    tmp = tempfile.mkdtemp(prefix="bgc-")
    agent = "unix:" + os.path.join(tmp, "agent.sock")
    rep = "unix:" + os.path.join(tmp, "rep.sock")
    try:
        with daemon(listen=["agent@" + agent, "reporter@" + rep]) as d:
            assert d.addrs == [agent, rep], d.addrs
            with Guard(agent) as g:
                v = g.evaluate("send_email", {"to": "x"}, session="u")
                assert v.allowed, v
                # the agent's socket does not take outcomes
                e = expect_raises(bayesguard.PermissionDenied, g.report, v, harmed=False)
                assert "role" in e.details or "reporter" in e.details, e.details
            with Guard(agent, report_address=rep) as g:
                assert g.report(v, harmed=False).observations == 1
    finally:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)


def test_mtls_files():
    """tls_ca / tls_cert / tls_key: the certificates of tests/rpc/test_tls.py."""
    import sys
    sys.path.insert(0, os.path.join(clienttest.CLIENT_DIR, "..", "..", "tests", "rpc"))
    from test_tls import SERVER_NAME, Pki
    pki = Pki()
    try:
        with daemon(args=pki.args()) as d:
            with Guard(d.addrs[0], tls_ca=pki.path("ca.crt"), tls_cert=pki.path("agent.crt"),
                       tls_key=pki.path("agent.key"), tls_server_name=SERVER_NAME) as g:
                v = g.evaluate("send_email", {"to": "x"}, session="tls")
                assert v.allowed and g.report(v, harmed=False).observations == 1, v
            # no client certificate: the daemon refuses the handshake -> a refusal
            with Guard(d.addrs[0], tls_ca=pki.path("ca.crt"), tls_server_name=SERVER_NAME,
                       timeout=3) as g:
                e = expect_raises(bayesguard.GuardError, g.evaluate, "send_email", {})
                assert e.code in (grpc.StatusCode.UNAVAILABLE,
                                  grpc.StatusCode.DEADLINE_EXCEEDED), e
        expect_raises(ValueError, Guard, "127.0.0.1:1", tls_cert=pki.path("agent.crt"))
        expect_raises(ValueError, Guard, "127.0.0.1:1", tls_ca=pki.path("missing.crt"))
    finally:
        pki.cleanup()


def test_protect_sync():
    with daemon() as d, Guard(d.addrs[0]) as g:
        sent = []

        @g.protect(tool="send_email", session=lambda a: a["account"])
        def send_email(account, to, body="hello"):
            sent.append((account, to, body))
            return "id-%d" % len(sent)

        assert send_email("p1", "a@example.com") == "id-1"
        assert sent == [("p1", "a@example.com", "hello")]
        # the outcome was reported (harmless) in the session the lambda chose
        v = g.evaluate("send_email", {"account": "p1", "to": "a@example.com",
                                      "body": "hello"}, session="p1")
        assert v.observations == 1, v

        denied = []

        @g.protect(tool="deny_wire", session="p1")
        def wire(amount):
            denied.append(amount)

        e = expect_raises(bayesguard.Denied, wire, 100)
        assert denied == [], "a denied function never runs"
        assert e.verdict.decision is Decision.DENY and e.verdict.policy == "client-deny"
        assert json.loads(e.verdict.action.arguments_json) == {"amount": 100}

        @g.protect(tool="escalate_it", session="p1", on_escalate="deny")
        def risky():
            denied.append("risky")
        e = expect_raises(bayesguard.Denied, risky)
        assert denied == [] and e.verdict.escalated, e.verdict

        # an exception is reported as harm and re-raised
        @g.protect(tool="allow_boom", session="p2")
        def boom():
            raise RuntimeError("tool failed")
        expect_raises(RuntimeError, boom)
        assert g.evaluate("allow_boom", {}, session="p2").observations == 1

        # a harmed= predicate on the result; methods leave `self` out
        class Mailer:
            @g.protect(tool="allow_mail", session="p3", harmed=lambda r: r == "bounced")
            def send(self, to):
                return "bounced" if to == "bad" else "ok"
        assert Mailer().send("bad") == "bounced"
        v = g.evaluate("allow_mail", {"to": "bad"}, session="p3")
        assert v.observations == 1, v
        # report=False: nothing is reported
        @g.protect(tool="allow_quiet", session="p4", report=False)
        def quiet():
            return 1
        assert quiet() == 1 and g.evaluate("allow_quiet", {}, session="p4").observations == 0


def test_openai_tool_calls():
    with daemon() as d, Guard(d.addrs[0]) as g:
        call = {"id": "call_1", "type": "function",
                "function": {"name": "send_email", "arguments": '{"to": "a@example.com"}'}}
        v = g.evaluate_tool_call(call, session="oa")
        assert v.allowed and v.action.id == "call_1", v
        assert v.action.arguments_json == '{"to": "a@example.com"}'
        assert g.report(v, harmed=False).observations == 1
        message = {"role": "assistant", "content": None, "tool_calls": [
            call, {"id": "call_2", "type": "function",
                   "function": {"name": "deny_rm", "arguments": '{"path": "/"}'}}]}
        out = g.evaluate_tool_calls({"choices": [{"message": message}]}, session="oa")
        assert [c["id"] for c, _ in out] == ["call_1", "call_2"]
        assert [v.decision for _, v in out] == [Decision.ALLOW, Decision.DENY]
        reply = bayesguard.tool_result_message(out[1][1])
        assert reply["role"] == "tool" and reply["tool_call_id"] == "call_2"
        assert "client-deny" in reply["content"] and "DENY" in reply["content"], reply

        class Fn:
            name, arguments = "send_email", "{}"

        class Call:
            id, function = "call_3", Fn()
        assert g.evaluate_tool_call(Call(), session="oa").action.id == "call_3"
        expect_raises(ValueError, g.evaluate_tool_call, {"id": "x"})
        expect_raises(ValueError, g.evaluate_tool_call,
                      {"id": "x", "function": {"name": "t", "arguments": {"a": 1}}})


def test_unsettled_escalation_is_a_refusal():
    """protect(on_escalate='wait') whose wait runs out before anyone
    settles the escalation refuses: the function never runs."""
    with daemon() as d, Guard(d.addrs[0]) as g:
        ran = []

        @g.protect(tool="escalate_me", session="w", escalation_timeout=0.5)
        def act():
            ran.append(1)
        e = expect_raises(bayesguard.Denied, act)
        assert e.verdict.escalated and e.verdict.escalation is EscalationState.PENDING, e.verdict
        assert ran == []


if __name__ == "__main__":
    main([test_verdicts_allow_deny_escalate, test_report_moves_the_posterior,
          test_forged_and_replayed_receipts_keep_their_code, test_errors_keep_the_code,
          test_unreachable_daemon_is_a_refusal_unless_fail_open,
          test_unix_socket_and_a_separate_reporter, test_mtls_files, test_protect_sync,
          test_openai_tool_calls,
          test_unsettled_escalation_is_a_refusal])
