"""bayesguard.Guard — the blocking client.

    guard = bayesguard.Guard("unix:/run/bayesguard/agent.sock")
    v = guard.evaluate("send_email", {"to": "a@b.c"}, session="s1")
    if v.allowed:
        ...run it...
        guard.report(v, harmed=False)

One Guard owns one grpc.Channel (and a second one to `report_address`
when outcomes go to another listener); it is safe to share between
threads, as grpc channels are. Close it (or use `with`) to free the
channel. Every call has a deadline (`timeout`, seconds).

Errors are GuardError subclasses that keep the gRPC code; an error is a
refusal. fail_open=True turns UNAVAILABLE and DEADLINE_EXCEEDED (and only
those) of Evaluate into an ALLOW marked failed_open, with a warning in the
`bayesguard` logger: the action then runs unguarded. Use it only where an
unguarded action is better than none.
"""
import asyncio
import functools
import inspect

import grpc

from . import _core, _methods, errors
from .verdict import Verdict, escalation_from_pb, verdict_from_pb


class Guard:
    """A connection to bayesguardd (see the module doc)."""

    def __init__(self, address=None, *, credentials=None, tls_ca=None, tls_cert=None,
                 tls_key=None, tls_server_name=None, timeout=_core.DEFAULT_TIMEOUT,
                 fail_open=False, report_address=None, options=()):
        self.address = _core.target(address)
        self.timeout = float(timeout)
        self.fail_open = bool(fail_open)
        creds = _core.credentials(credentials, tls_ca, tls_cert, tls_key)
        opts = _core.channel_options(tls_server_name) + list(options)
        self._channels = []
        self._calls = _methods.callables(self._open(self.address, creds, opts))
        self._report_calls = self._calls
        if report_address is not None:
            self._report_calls = _methods.callables(
                self._open(_core.target(report_address), creds, opts))

    def _open(self, addr, creds, opts):
        ch = (grpc.secure_channel(addr, creds, options=opts) if creds is not None
              else grpc.insecure_channel(addr, options=opts))
        self._channels.append(ch)
        return ch

    def close(self):
        for ch in self._channels:
            ch.close()
        self._channels = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _call(self, name, req, timeout=None, calls=None):
        if timeout is None:
            timeout = self.timeout
        try:
            return (calls or self._calls)[name](
                req, timeout=None if timeout == _core.NO_DEADLINE else timeout)
        except grpc.RpcError as e:
            raise errors.from_rpc(e, name) from None

    # -- the agent's calls
    def evaluate(self, tool, arguments=None, *, session="", agent="", trace_id="", id="",
                 features=(), attributes=None, policy="", timeout=None):
        """Ask whether `tool` may run with `arguments` (a dict, or a JSON
        str sent as is); returns a Verdict. Raises GuardError when no
        decision could be had (unless fail_open covers it)."""
        req, action, ctx = _core.evaluate_request(tool, arguments, session, agent, trace_id,
                                                  id, features, attributes, policy)
        try:
            m = self._call("Evaluate", req, timeout)
        except errors.GuardError as e:
            return _core.evaluate_failed(e, self.fail_open, action, ctx)
        return verdict_from_pb(m, action, ctx)

    def await_decision(self, verdict, timeout=None):
        """Wait up to `timeout` s (None: the daemon's maximum) for a person
        to settle an ESCALATE (a Verdict or its decision_id). Returns the
        final Verdict: ALLOW with a receipt once approved, DENY once
        rejected or expired, the ESCALATE (escalation PENDING) when the
        wait ran out first."""
        req, deadline = _core.await_request(verdict, timeout, self.timeout)
        m = self._call("AwaitDecision", req, deadline)
        v0 = verdict if isinstance(verdict, Verdict) else None
        return verdict_from_pb(m, v0.action if v0 else None, v0.context if v0 else None)

    def evaluate_tool_call(self, call, *, session="", agent="", trace_id="", timeout=None):
        """evaluate() for an OpenAI-style tool call {"id", "function":
        {"name", "arguments"}}; the arguments JSON string is sent as is."""
        cid, name, args = _core.tool_call_fields(call)
        return self.evaluate(name, args, id=cid, session=session, agent=agent,
                             trace_id=trace_id, timeout=timeout)

    def evaluate_tool_calls(self, message, **kw):
        """[(tool call, Verdict)] for each tool call of a chat completion
        message (or completion), in order."""
        return [(c, self.evaluate_tool_call(c, **kw))
                for c in _core.message_tool_calls(message)]

    # -- the reporter's call
    def report(self, verdict_or_receipt, harmed, value=None, *, tool=None, arguments=None,
               session=None, agent=None, decision_id=None, timeout=None):
        """Report the outcome of an action that ran: its ALLOW Verdict (or
        the receipt bytes with the tool, arguments and session it was
        minted for). Returns the ObserveResponse (observations counts the
        session's outcomes). PermissionDenied: no valid receipt;
        AlreadyExists: this receipt was already reported."""
        req = _core.observe_request(verdict_or_receipt, harmed, value, tool, arguments, session,
                                    agent, None, decision_id)
        return self._call("Observe", req, timeout, self._report_calls)

    # -- the operator's calls
    def status(self, timeout=None):
        return self._call("Status", _methods.pb.StatusRequest(), timeout)

    def list_escalations(self, include_settled=False, policy="", timeout=None):
        r = self._call("ListEscalations", _methods.pb.ListEscalationsRequest(
            include_settled=include_settled, policy=policy), timeout)
        return [escalation_from_pb(e) for e in r.escalations]

    def watch_escalations(self, policy=""):
        """Yields Escalation: the pending ones, then every new and settled
        one, until the stream is cancelled (close the Guard) or fails."""
        stream = self._calls["WatchEscalations"](
            _methods.pb.WatchEscalationsRequest(policy=policy))
        try:
            for ev in stream:
                yield escalation_from_pb(ev.escalation)
        except grpc.RpcError as e:
            _core.stream_ended(e, "WatchEscalations")
        finally:
            stream.cancel()

    def resolve_escalation(self, escalation_id, approve, *, approver, reason="", timeout=None):
        """Approve or reject a pending escalation (operator role)."""
        req = _core.resolve_request(escalation_id, approve, approver, reason)
        return escalation_from_pb(self._call("ResolveEscalation", req, timeout))

    # -- the decorator
    def protect(self, tool=None, *, session=None, agent=None, on_escalate="wait",
                escalation_timeout=None, harmed=None, report=True, arguments=None):
        """Decorate a function (sync or async) so that each call is
        evaluated first: ALLOW runs it and reports the outcome (harmed =
        it raised, or harmed(result) is true), DENY raises Denied and the
        function never runs, ESCALATE waits for a person (on_escalate
        'wait', up to escalation_timeout s, default the daemon's maximum)
        or raises Denied ('deny'). The guard sees the call's arguments by
        parameter name, JSON-encoded (arguments=f maps them first).
        session/agent: a str, or f(arguments) -> str."""
        def deco(fn):
            spec = _core.ProtectSpec(fn, tool, session, agent, on_escalate,
                                     escalation_timeout, harmed, report, arguments)
            if inspect.iscoroutinefunction(fn):
                @functools.wraps(fn)
                async def awrapper(*args, **kwargs):
                    return await _core.adrive(spec.flow(args, kwargs),
                                              lambda op, a: self._ado(spec, op, a, args, kwargs))
                return awrapper

            @functools.wraps(fn)
            def wrapper(*args, **kwargs):
                return _core.drive(spec.flow(args, kwargs),
                                   lambda op, a: self._do(spec, op, a, args, kwargs))
            return wrapper
        return deco

    def _do(self, spec, op, a, args, kwargs):
        if op == "run":
            try:
                return spec.fn(*args, **kwargs), None
            except Exception as e:  # reported as harm, then re-raised by the flow
                return None, e
        return self._io(spec, op, a)

    async def _ado(self, spec, op, a, args, kwargs):
        if op == "run":
            try:
                return await spec.fn(*args, **kwargs), None
            except Exception as e:
                return None, e
        # blocking guard calls stay off the event loop
        return await asyncio.to_thread(self._io, spec, op, a)

    def _io(self, spec, op, a):
        if op == "evaluate":
            return self.evaluate(**a)
        if op == "await":
            return self.await_decision(a, spec.escalation_timeout)
        if op == "report":
            return self.report(a[0], harmed=a[1])
        raise AssertionError("unknown protect step %r" % op)
