"""bayesguard.aio.Guard — the asyncio client (grpc.aio).

The same calls as bayesguard.Guard, as coroutines:

    guard = bayesguard.aio.Guard("unix:/run/bayesguard/agent.sock")
    v = await guard.evaluate("send_email", {"to": "a@b.c"}, session="s1")

The channel is opened on first use, inside the running event loop (a
grpc.aio channel belongs to the loop that made it; used from another loop,
the Guard opens a new one), and closed by `await guard.close()` or
`async with`. protect() decorates async
functions only: a sync function would have to block the loop; use
bayesguard.Guard for those. Errors and fail_open are as in bayesguard.Guard.
"""
import asyncio
import functools
import inspect

import grpc
import grpc.aio

from . import _core, _methods, errors
from .verdict import Verdict, escalation_from_pb, verdict_from_pb


class Guard:
    """An asyncio connection to bayesguardd."""

    def __init__(self, address=None, *, credentials=None, tls_ca=None, tls_cert=None,
                 tls_key=None, tls_server_name=None, timeout=_core.DEFAULT_TIMEOUT,
                 fail_open=False, report_address=None, options=()):
        self.address = _core.target(address)
        self.report_address = (_core.target(report_address) if report_address is not None
                               else None)
        self.timeout = float(timeout)
        self.fail_open = bool(fail_open)
        self._creds = _core.credentials(credentials, tls_ca, tls_cert, tls_key)
        self._opts = _core.channel_options(tls_server_name) + list(options)
        self._channels = []
        self._calls = None
        self._report_calls = None
        self._loop = None

    def _open(self, addr):
        ch = (grpc.aio.secure_channel(addr, self._creds, options=self._opts)
              if self._creds is not None
              else grpc.aio.insecure_channel(addr, options=self._opts))
        self._channels.append(ch)
        return _methods.callables(ch)

    def _ensure(self):
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a grpc.aio channel serves the loop that made it
            self._channels, self._calls, self._loop = [], None, loop
        if self._calls is None:
            self._calls = self._open(self.address)
            self._report_calls = (self._open(self.report_address) if self.report_address
                                  else self._calls)

    async def close(self):
        for ch in self._channels:
            await ch.close()
        self._channels = []
        self._calls = self._report_calls = None

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()
        return False

    async def _call(self, name, req, timeout=None, report=False):
        self._ensure()
        if timeout is None:
            timeout = self.timeout
        calls = self._report_calls if report else self._calls
        try:
            return await calls[name](req, timeout=None if timeout == _core.NO_DEADLINE
                                     else timeout)
        except grpc.RpcError as e:
            raise errors.from_rpc(e, name) from None

    async def evaluate(self, tool, arguments=None, *, session="", agent="", trace_id="", id="",
                       features=(), attributes=None, policy="", timeout=None):
        """See bayesguard.Guard.evaluate."""
        req, action, ctx = _core.evaluate_request(tool, arguments, session, agent, trace_id,
                                                  id, features, attributes, policy)
        try:
            m = await self._call("Evaluate", req, timeout)
        except errors.GuardError as e:
            return _core.evaluate_failed(e, self.fail_open, action, ctx)
        return verdict_from_pb(m, action, ctx)

    async def await_decision(self, verdict, timeout=None):
        """See bayesguard.Guard.await_decision."""
        req, deadline = _core.await_request(verdict, timeout, self.timeout)
        m = await self._call("AwaitDecision", req, deadline)
        v0 = verdict if isinstance(verdict, Verdict) else None
        return verdict_from_pb(m, v0.action if v0 else None, v0.context if v0 else None)

    async def evaluate_tool_call(self, call, *, session="", agent="", trace_id="",
                                 timeout=None):
        cid, name, args = _core.tool_call_fields(call)
        return await self.evaluate(name, args, id=cid, session=session, agent=agent,
                                   trace_id=trace_id, timeout=timeout)

    async def evaluate_tool_calls(self, message, **kw):
        return [(c, await self.evaluate_tool_call(c, **kw))
                for c in _core.message_tool_calls(message)]

    async def report(self, verdict_or_receipt, harmed, value=None, *, tool=None,
                     arguments=None, session=None, agent=None, decision_id=None,
                     timeout=None):
        """See bayesguard.Guard.report."""
        req = _core.observe_request(verdict_or_receipt, harmed, value, tool, arguments, session,
                                    agent, None, decision_id)
        return await self._call("Observe", req, timeout, report=True)

    async def status(self, timeout=None):
        return await self._call("Status", _methods.pb.StatusRequest(), timeout)

    async def list_escalations(self, include_settled=False, policy="", timeout=None):
        r = await self._call("ListEscalations", _methods.pb.ListEscalationsRequest(
            include_settled=include_settled, policy=policy), timeout)
        return [escalation_from_pb(e) for e in r.escalations]

    async def resolve_escalation(self, escalation_id, approve, *, approver, reason="",
                                 timeout=None):
        req = _core.resolve_request(escalation_id, approve, approver, reason)
        return escalation_from_pb(await self._call("ResolveEscalation", req, timeout))

    async def watch_escalations(self, policy=""):
        """Async iterator of Escalation (see bayesguard.Guard.watch_escalations)."""
        self._ensure()
        stream = self._calls["WatchEscalations"](
            _methods.pb.WatchEscalationsRequest(policy=policy))
        try:
            async for ev in stream:
                yield escalation_from_pb(ev.escalation)
        except grpc.RpcError as e:
            _core.stream_ended(e, "WatchEscalations")
        finally:
            stream.cancel()

    def protect(self, tool=None, *, session=None, agent=None, on_escalate="wait",
                escalation_timeout=None, harmed=None, report=True, arguments=None):
        """See bayesguard.Guard.protect; async functions only."""
        def deco(fn):
            if not inspect.iscoroutinefunction(fn):
                raise TypeError("bayesguard.aio.Guard.protect: %s is not an async function; "
                                "protect sync functions with bayesguard.Guard" % fn.__name__)
            spec = _core.ProtectSpec(fn, tool, session, agent, on_escalate,
                                     escalation_timeout, harmed, report, arguments)

            @functools.wraps(fn)
            async def wrapper(*args, **kwargs):
                async def ado(op, a):
                    if op == "run":
                        try:
                            return await fn(*args, **kwargs), None
                        except Exception as e:
                            return None, e
                    if op == "evaluate":
                        return await self.evaluate(**a)
                    if op == "await":
                        return await self.await_decision(a, spec.escalation_timeout)
                    return await self.report(a[0], harmed=a[1])
                return await _core.adrive(spec.flow(args, kwargs), ado)
            return wrapper
        return deco
