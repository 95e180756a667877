"""await_decision() and protect(on_escalate='wait') once a person settles
an escalation: the operator approves or rejects through the same client
(resolve_escalation, operator role) while the agent waits; an operator's
watch; an escalation nobody settles expires into a DENY."""
import asyncio
import threading


import clienttest
from clienttest import daemon, expect_raises, main, wait_for

import bayesguard
import bayesguard.aio
from bayesguard import Decision, EscalationState, Guard


def _pending(g, tool):
    """The id of the pending escalation of `tool` (polled with a deadline)."""
    def find():
        for e in g.list_escalations():
            if e.tool == tool and e.state is EscalationState.PENDING:
                return e.id
        return None
    return wait_for(find, 10, "a pending escalation of " + tool)


def _in_thread(fn, *a, **kw):
    box = {}

    def run():
        try:
            box["value"] = fn(*a, **kw)
        except BaseException as e:  # handed to the test thread
            box["error"] = e
    t = threading.Thread(target=run)
    t.start()
    return t, box


def _result(t, box):
    t.join(30)
    assert not t.is_alive(), "the waiting call did not return"
    if "error" in box:
        raise box["error"]
    return box["value"]


def test_approve_then_allow_with_receipt():
    with daemon() as d, Guard(d.addrs[0]) as g:
        v = g.evaluate("escalate_send", {"to": "boss"}, session="e1", agent="bot")
        assert v.escalated and v.escalation is EscalationState.PENDING and not v.receipt, v
        [e] = [e for e in g.list_escalations() if e.id == v.decision_id]
        assert e.tool == "escalate_send" and e.policy == "client-escalate", e
        # the wait runs out first: the ESCALATE itself, still pending
        w = g.await_decision(v, timeout=0.2)
        assert w.escalated and w.escalation is EscalationState.PENDING, w
        t, box = _in_thread(g.await_decision, v, 20)
        r = g.resolve_escalation(v.decision_id, True, approver="alice", reason="looks fine")
        assert r.state is EscalationState.APPROVED and r.approver == "alice", r
        final = _result(t, box)
        assert final.decision is Decision.ALLOW and final.receipt, final
        assert final.escalation is EscalationState.APPROVED, final
        assert final.escalation_record.approver == "alice", final.escalation_record
        assert final.action == v.action and final.context == v.context
        assert g.report(final, harmed=False).observations == 1


def test_reject_then_deny():
    with daemon() as d, Guard(d.addrs[0]) as g:
        v = g.evaluate("escalate_rm", {"path": "/"}, session="e2")
        t, box = _in_thread(g.await_decision, v, 20)
        g.resolve_escalation(v.decision_id, False, approver="bob", reason="no way")
        final = _result(t, box)
        assert final.decision is Decision.DENY and not final.receipt, final
        assert final.escalation is EscalationState.REJECTED, final
        assert final.reason == "no way" and "no way" in final.explain(), final
        assert final.escalation_record.approver == "bob", final.escalation_record
        expect_raises(ValueError, g.resolve_escalation, "x", True, approver="")


def test_watch_escalations():
    """An operator's watch sees the escalation open, then settle."""
    with daemon() as d, Guard(d.addrs[0]) as g, Guard(d.addrs[0]) as operator:
        events = operator.watch_escalations(policy="client-escalate")
        t, box = _in_thread(next, events)
        v = g.evaluate("escalate_watched", {"n": 1}, session="e6", agent="bot")
        first = _result(t, box)
        assert first.id == v.decision_id and first.state is EscalationState.PENDING, first
        assert first.tool == "escalate_watched" and first.agent == "bot", first
        # arguments as the decision log shows them: by default their digest
        assert first.arguments in ('{"n":1}', ) or "(7 bytes)" in first.arguments, first
        assert first.harm_bound == v.harm_bound, first
        operator.resolve_escalation(v.decision_id, True, approver="erin")
        t, box = _in_thread(next, events)
        settled = _result(t, box)
        assert settled.id == v.decision_id and settled.state is EscalationState.APPROVED
        assert settled.approver == "erin", settled
        events.close()  # cancels the stream


def test_expiry_is_a_deny():
    """Nobody settles it: the policy's escalation.timeout (1 s) turns the
    wait into a DENY (on_timeout: deny), and protect() does not run."""
    with daemon() as d, Guard(d.addrs[0]) as g:
        v = g.evaluate("expire_it", {}, session="e5")
        assert v.escalated, v
        final = g.await_decision(v, 20)
        assert final.decision is Decision.DENY, final
        assert final.escalation is EscalationState.EXPIRED and not final.receipt, final
        ran = []

        @g.protect(tool="expire_too", session="e5", escalation_timeout=20)
        def act():
            ran.append(1)
        e = expect_raises(bayesguard.Denied, act)
        assert e.verdict.escalation is EscalationState.EXPIRED and ran == [], e.verdict


def test_protect_waits_for_a_person():
    with daemon() as d, Guard(d.addrs[0]) as g, Guard(d.addrs[0]) as operator:
        ran = []

        @g.protect(tool="escalate_pay", session="e3", escalation_timeout=20)
        def pay(amount):
            ran.append(amount)
            return "paid"

        t, box = _in_thread(pay, 10)
        operator.resolve_escalation(_pending(operator, "escalate_pay"), True, approver="carol")
        assert _result(t, box) == "paid" and ran == [10]

        t, box = _in_thread(pay, 20)
        operator.resolve_escalation(_pending(operator, "escalate_pay"), False, approver="carol",
                                    reason="too much")
        try:
            _result(t, box)
            raise AssertionError("a rejected escalation ran the function")
        except bayesguard.Denied as e:
            assert e.verdict.escalation is EscalationState.REJECTED, e.verdict
        assert ran == [10]

        @g.protect(tool="escalate_slow", session="e3", escalation_timeout=0.3)
        def slow():
            ran.append("slow")
        e = expect_raises(bayesguard.Denied, slow)
        assert e.verdict.escalation is EscalationState.PENDING and ran == [10], e.verdict


def test_aio_await():
    async def go(addr, op):
        async with bayesguard.aio.Guard(addr) as g:
            v = await g.evaluate("escalate_async", {}, session="e4")
            waiting = asyncio.ensure_future(g.await_decision(v, 20))
            eid = await asyncio.to_thread(_pending, op, "escalate_async")
            await g.resolve_escalation(eid, True, approver="dan")
            final = await waiting
            assert final.allowed and final.receipt, final
    with daemon() as d, Guard(d.addrs[0]) as op:
        asyncio.run(go(d.addrs[0], op))


if __name__ == "__main__":
    main([test_approve_then_allow_with_receipt, test_reject_then_deny, test_watch_escalations,
          test_expiry_is_a_deny,
          test_protect_waits_for_a_person, test_aio_await])
