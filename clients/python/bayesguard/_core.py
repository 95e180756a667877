"""What the sync and the asyncio Guard share: addresses and credentials,
request building, the fail-open rule, the protect() flow and the OpenAI
tool-call adapter. No I/O happens here.

The protect() flow is written once, as a generator that yields the
operations it needs ("evaluate", "await", "run", "report") and receives
their results; bayesguard.client drives it with blocking calls and
bayesguard.aio with awaits, so both decorators decide alike.
"""
import inspect
import json
import logging
import os

import grpc

from . import errors
from .v1 import guard_pb2 as pb
from .verdict import Action, Context, Decision, Verdict

log = logging.getLogger("bayesguard")

DEFAULT_ADDR = "127.0.0.1:50051"
ADDR_ENV = "BAYESGUARD_ADDR"
DEFAULT_TIMEOUT = 10.0

# Only these codes mean "the guard could not be asked"; fail_open turns
# them, and nothing else, into an ALLOW. A malformed request, a missing
# role or a forged receipt is an answer from a working guard: failing open
# on those would let the agent skip the guard by sending bad arguments.
FAIL_OPEN_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


# -- addresses and credentials -------------------------------------------
def target(address):
    """The gRPC target for a BAYESGUARD_ADDR-style address: host:port,
    [v6]:port or unix:/path (None: $BAYESGUARD_ADDR, else 127.0.0.1:50051)."""
    if address is None:
        address = os.environ.get(ADDR_ENV) or DEFAULT_ADDR
    if not isinstance(address, str) or not address:
        raise ValueError("bayesguard: address %r: expected host:port or unix:/path" % (address,))
    if address.startswith("unix:"):
        if len(address) == len("unix:"):
            raise ValueError("bayesguard: address %r has no socket path: expected "
                             "unix:/path/to/socket" % address)
        return address
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError("bayesguard: address %r: expected host:port (e.g. 127.0.0.1:50051) "
                         "or unix:/path/to/socket" % address)
    return address


def _read(path, what):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ValueError("bayesguard: cannot read the %s file %s: %s" % (what, path, e)) from e


def credentials(creds, tls_ca, tls_cert, tls_key):
    """grpc.ChannelCredentials or None (insecure). tls_*: PEM file paths;
    a client certificate needs both tls_cert and tls_key."""
    if creds is not None:
        if tls_ca or tls_cert or tls_key:
            raise ValueError("bayesguard: give either credentials= or the tls_* files, not both")
        return creds
    if not (tls_ca or tls_cert or tls_key):
        return None
    if bool(tls_cert) != bool(tls_key):
        raise ValueError("bayesguard: a client certificate needs both tls_cert and tls_key")
    return grpc.ssl_channel_credentials(
        root_certificates=_read(tls_ca, "CA") if tls_ca else None,
        private_key=_read(tls_key, "private key") if tls_key else None,
        certificate_chain=_read(tls_cert, "certificate") if tls_cert else None)


def channel_options(tls_server_name):
    return [("grpc.ssl_target_name_override", tls_server_name)] if tls_server_name else []


# -- requests ---------------------------------------------------------------
def arguments_json(arguments, tool):
    """The action's arguments as the JSON text the guard reads (and the
    receipt hashes): a str is sent as is, anything else is encoded."""
    if arguments is None:
        return ""
    if isinstance(arguments, (bytes, bytearray)):
        arguments = bytes(arguments).decode("utf-8")
    if isinstance(arguments, str):
        return arguments
    try:
        return json.dumps(arguments, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise TypeError("bayesguard: the arguments of %r cannot be JSON-encoded (%s); pass "
                        "JSON-serialisable values or a JSON string" % (tool, e)) from e


def evaluate_request(tool, arguments=None, session="", agent="", trace_id="", id="",
                     features=(), attributes=None, policy=""):
    """(EvaluateRequest, Action, Context)."""
    if not isinstance(tool, str) or not tool:
        raise ValueError("bayesguard: evaluate needs a tool name (a non-empty str), got %r"
                         % (tool,))
    action = Action(tool=tool, arguments_json=arguments_json(arguments, tool), id=id or "",
                    features=tuple(float(f) for f in features),
                    attributes=tuple(sorted((attributes or {}).items())))
    context = Context(session=session or "", agent=agent or "", trace_id=trace_id or "")
    req = pb.EvaluateRequest(action=_pb_action(action), context=_pb_context(context),
                             policy=policy or "")
    return req, action, context


def _pb_action(a):
    return pb.Action(id=a.id, tool=a.tool, arguments_json=a.arguments_json,
                     features=list(a.features), attributes=dict(a.attributes))


def _pb_context(c):
    return pb.Context(session=c.session, agent=c.agent, trace_id=c.trace_id)


def observe_request(verdict_or_receipt, harmed, value=None, tool=None, arguments=None,
                    session=None, agent=None, trace_id=None, decision_id=None, policy=None):
    """The ObserveRequest reporting an outcome. A Verdict brings its
    receipt, action and context; raw receipt bytes need tool= (and the
    arguments and session the receipt was minted for)."""
    if not isinstance(harmed, bool):
        raise TypeError("bayesguard: report(harmed=...) must be a bool, got %r" % (harmed,))
    if isinstance(verdict_or_receipt, Verdict):
        v = verdict_or_receipt
        if v.failed_open:
            raise ValueError("bayesguard: this verdict was made up by fail_open (the guard was "
                             "not asked); it has no receipt to report with")
        if v.action is None:
            raise ValueError("bayesguard: the verdict has no action; report the receipt with "
                             "tool= and arguments=")
        action, ctx = v.action, v.context or Context()
        receipt, did, pol = v.receipt, v.decision_id, v.policy
    elif isinstance(verdict_or_receipt, (bytes, bytearray)):
        if not tool:
            raise ValueError("bayesguard: report(receipt) needs tool= (and the arguments= and "
                             "session= the receipt was minted for)")
        _, action, ctx = evaluate_request(tool, arguments, session, agent, trace_id)
        receipt, did, pol = bytes(verdict_or_receipt), decision_id or "", policy or ""
    else:
        raise TypeError("bayesguard: report() takes a Verdict or receipt bytes, got %s"
                        % type(verdict_or_receipt).__name__)
    req = pb.ObserveRequest(action=_pb_action(action), context=_pb_context(ctx),
                            harmed=harmed, id=did, receipt=receipt, policy=pol)
    if value is not None:
        req.value = float(value)
    return req


NO_DEADLINE = float("inf")


def await_request(verdict, timeout, margin):
    """(AwaitDecisionRequest, gRPC deadline in s) for a Verdict or decision
    id; timeout None: the daemon's maximum wait, and no client deadline."""
    did = verdict.decision_id if isinstance(verdict, Verdict) else verdict
    if not isinstance(did, str) or not did:
        raise ValueError("bayesguard: await_decision needs an ESCALATE verdict or its "
                         "decision_id, got %r" % (verdict,))
    if timeout is None:
        return pb.AwaitDecisionRequest(decision_id=did, timeout_ms=0), NO_DEADLINE
    if timeout <= 0:
        raise ValueError("bayesguard: await_decision(timeout=%r): give seconds > 0, or None for "
                         "the daemon's maximum wait" % (timeout,))
    ms = min(max(int(timeout * 1000), 1), 2**32 - 1)
    return pb.AwaitDecisionRequest(decision_id=did, timeout_ms=ms), timeout + margin


def evaluate_failed(err, fail_open, action, context):
    """An Evaluate failed with GuardError `err`: raise it, or, under
    fail_open and for the codes it covers, return the ALLOW it makes."""
    if not fail_open or err.code not in FAIL_OPEN_CODES:
        raise err
    log.warning("bayesguard: FAILING OPEN for %s: the guard could not be asked (%s); the action "
                "runs unguarded", action.tool, err)
    return Verdict(decision=Decision.ALLOW, action=action, context=context, failed_open=True,
                   error=err)


def stream_ended(e, method):
    """A server stream ended with grpc.RpcError `e`: our own cancel ends it
    quietly, anything else is raised as a GuardError."""
    if e.code() != grpc.StatusCode.CANCELLED:
        raise errors.from_rpc(e, method) from None


def resolve_request(escalation_id, approve, approver, reason):
    if not approver:
        raise ValueError("bayesguard: resolve_escalation needs approver= (who decided)")
    return pb.ResolveEscalationRequest(
        id=escalation_id, resolution=pb.APPROVE if approve else pb.REJECT,
        approver=approver, reason=reason or "")


# -- protect() ---------------------------------------------------------------
ON_ESCALATE = ("wait", "deny")


class ProtectSpec:
    """What a @guard.protect(...) decorator was given."""

    def __init__(self, fn, tool, session, agent, on_escalate, escalation_timeout, harmed,
                 report, arguments):
        if on_escalate not in ON_ESCALATE:
            raise ValueError("bayesguard: protect(on_escalate=%r): expected 'wait' or 'deny'"
                             % (on_escalate,))
        if escalation_timeout is not None and escalation_timeout <= 0:
            raise ValueError("bayesguard: protect(escalation_timeout=%r): give seconds > 0, or "
                             "None for the daemon's maximum wait" % (escalation_timeout,))
        self.fn = fn
        self.tool = tool or fn.__name__
        self.session, self.agent = session, agent
        self.on_escalate = on_escalate
        self.escalation_timeout = escalation_timeout
        self.harmed, self.report, self.arguments = harmed, report, arguments
        self.signature = inspect.signature(fn)

    def call_arguments(self, args, kwargs):
        """The call's arguments by parameter name (defaults applied, `self`
        and `cls` left out), as the guard will see them."""
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        out = {}
        for name, val in bound.arguments.items():
            kind = self.signature.parameters[name].kind
            if name in ("self", "cls") and kind == inspect.Parameter.POSITIONAL_OR_KEYWORD:
                continue
            if kind == inspect.Parameter.VAR_KEYWORD:
                out.update(val)
            elif kind == inspect.Parameter.VAR_POSITIONAL:
                out[name] = list(val)
            else:
                out[name] = val
        if self.arguments is not None:
            return self.arguments(out)
        return out

    def _pick(self, v, call_args):
        return v(call_args) if callable(v) else (v or "")

    def flow(self, args, kwargs):
        """The decorator's steps. Yields ("evaluate", kwargs), ("await",
        verdict), ("run", None) -> (result, exc), ("report", (verdict,
        harmed)); returns the function's result or raises."""
        call_args = self.call_arguments(args, kwargs)
        v = yield ("evaluate", dict(tool=self.tool, arguments=call_args,
                                    session=self._pick(self.session, call_args),
                                    agent=self._pick(self.agent, call_args)))
        if v.decision == Decision.ESCALATE:
            if self.on_escalate == "deny":
                raise errors.Denied(v, "escalation refused by on_escalate='deny': " + v.explain())
            v = yield ("await", v)
        if v.decision != Decision.ALLOW:
            raise errors.Denied(v)
        result, exc = yield ("run", None)
        reportable = self.report and not v.failed_open
        if exc is not None:
            if reportable:
                try:
                    yield ("report", (v, True))
                except errors.GuardError as rep:
                    log.warning("bayesguard: %s raised, and its outcome (harmed) could not be "
                                "reported: %s", self.tool, rep)
            raise exc
        if reportable:
            harmed = bool(self.harmed(result)) if self.harmed is not None else False
            try:
                yield ("report", (v, harmed))
            except errors.GuardError as rep:
                raise errors.ReportFailed(rep, result) from rep
        return result


def drive(gen, do):
    """Run a flow() generator with do(op, arg) -> result (sync drivers)."""
    try:
        op = next(gen)
        while True:
            try:
                res = do(*op)
            except BaseException as e:  # the flow decides what an error means
                op = gen.throw(e)
                continue
            op = gen.send(res)
    except StopIteration as s:
        return s.value


async def adrive(gen, ado):
    """Run a flow() generator with `await ado(op, arg)` (async drivers)."""
    try:
        op = next(gen)
        while True:
            try:
                res = await ado(*op)
            except BaseException as e:
                op = gen.throw(e)
                continue
            op = gen.send(res)
    except StopIteration as s:
        return s.value


# -- OpenAI-style tool calls ------------------------------------------------
def _get(obj, key):
    if isinstance(obj, dict):
        return obj.get(key)
    return getattr(obj, key, None)


def tool_call_fields(call):
    """(id, name, arguments JSON str) of an OpenAI-style tool call, a dict
    {"id", "type": "function", "function": {"name", "arguments"}} or an
    object with the same attributes (the openai SDK's types)."""
    fn = _get(call, "function")
    name = _get(fn, "name") if fn is not None else None
    if not isinstance(name, str) or not name:
        raise ValueError("bayesguard: not an OpenAI-style tool call (expected "
                         "{'id', 'function': {'name', 'arguments'}}): %r" % (call,))
    arguments = _get(fn, "arguments")
    if arguments is not None and not isinstance(arguments, str):
        raise ValueError("bayesguard: tool call %r: function.arguments must be a JSON string "
                         "(as the model produced it), got %s" % (name, type(arguments).__name__))
    return _get(call, "id") or "", name, arguments or ""


def message_tool_calls(message):
    """The tool calls of a chat completion message (dict or object), or of
    a completion (its first choice's message)."""
    choices = _get(message, "choices")
    if choices:
        message = _get(choices[0], "message")
    calls = _get(message, "tool_calls")
    return list(calls or [])


def tool_result_message(verdict):
    """The `role: tool` message that answers a refused tool call, so the
    model learns why and can re-plan."""
    return {"role": "tool", "tool_call_id": verdict.action.id if verdict.action else "",
            "content": "Refused by bayesguard: " + verdict.explain()}
