"""Exceptions of the bayesguard client.

Two families, both refusals:

- GuardError: the guard could not give a decision (the daemon is
  unreachable, the request is malformed, the caller lacks the role, a
  receipt is forged or replayed, ...). It keeps the gRPC status code
  (`.code`, a grpc.StatusCode) and the daemon's message (`.details`); a
  subclass per code that a caller may want to catch on its own
  (PermissionDenied, AlreadyExists, Unavailable, ...). An error is never a
  permission: unless the Guard was made with fail_open=True, the action
  must not run.
- Denied: the guard decided, and the decision is not ALLOW (DENY, an
  ESCALATE that was rejected, expired, or not settled in time, or an
  ESCALATE under on_escalate="deny"). It carries the Verdict.
"""
import grpc


class GuardError(Exception):
    """A call to the guard failed; `.code` is the grpc.StatusCode."""

    code = grpc.StatusCode.UNKNOWN

    def __init__(self, details, code=None, method=None):
        if code is not None:
            self.code = code
        self.details = details or ""
        self.method = method
        where = "bayesguard %s" % method if method else "bayesguard"
        super().__init__("%s failed: %s: %s" % (where, self.code.name, self.details))


# The subclasses, one per gRPC code a caller may want to catch alone:
# (class name, code). Each is a GuardError whose `.code` is that code.
_CODES = (
    ("InvalidArgument", grpc.StatusCode.INVALID_ARGUMENT),
    ("NotFound", grpc.StatusCode.NOT_FOUND),
    ("AlreadyExists", grpc.StatusCode.ALREADY_EXISTS),
    ("PermissionDenied", grpc.StatusCode.PERMISSION_DENIED),
    ("Unauthenticated", grpc.StatusCode.UNAUTHENTICATED),
    ("ResourceExhausted", grpc.StatusCode.RESOURCE_EXHAUSTED),
    ("FailedPrecondition", grpc.StatusCode.FAILED_PRECONDITION),
    ("Unavailable", grpc.StatusCode.UNAVAILABLE),
    ("DeadlineExceeded", grpc.StatusCode.DEADLINE_EXCEEDED),
    ("Unimplemented", grpc.StatusCode.UNIMPLEMENTED),
    ("Internal", grpc.StatusCode.INTERNAL),
)
_BY_CODE = {}
for _name, _code in _CODES:
    _BY_CODE[_code] = globals()[_name] = type(_name, (GuardError,), {
        "code": _code, "__doc__": "GuardError with code %s." % _code.name,
        "__module__": __name__})
del _name, _code


def from_rpc(e, method=None):
    """The GuardError for a grpc.RpcError (or grpc.aio.AioRpcError)."""
    code = e.code() if callable(getattr(e, "code", None)) else grpc.StatusCode.UNKNOWN
    details = e.details() if callable(getattr(e, "details", None)) else str(e)
    cls = _BY_CODE.get(code, GuardError)
    return cls(details, code=code, method=method)


class Denied(Exception):
    """The guard's decision is not ALLOW; `.verdict` says why."""

    def __init__(self, verdict, why=None):
        self.verdict = verdict
        super().__init__(why or verdict.explain())


class ReportFailed(GuardError):
    """protect(): the function ran, but its outcome could not be reported.

    `.result` is what the function returned; `.cause` the GuardError of the
    Observe (its code is this exception's code)."""

    def __init__(self, cause, result):
        self.cause = cause
        self.result = result
        super().__init__(cause.details, code=cause.code, method="Observe (outcome of a run)")
