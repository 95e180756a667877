"""Typed results: Verdict, Escalation and their enums, built from the wire
messages (bayesguard.v1 Verdict / Escalation in proto/bayesguard/v1/guard.proto).

A Verdict also keeps the request it answers (`action`, `context`): the
receipt of an ALLOW is bound to that tool, the exact arguments_json bytes
and the session, so Guard.report() sends them back unchanged. Everything
here is plain data (frozen dataclasses); no I/O.
"""
import dataclasses
import enum
import typing


class Decision(enum.IntEnum):
    UNSPECIFIED = 0
    ALLOW = 1
    DENY = 2
    ESCALATE = 3


class BoundKind(enum.IntEnum):
    UNSPECIFIED = 0
    EXACT = 1
    SAMPLED = 2


class EscalationState(enum.IntEnum):
    NONE = 0  # not an escalation
    PENDING = 1
    APPROVED = 2
    REJECTED = 3
    EXPIRED = 4


@dataclasses.dataclass(frozen=True)
class Action:
    """The tool call a verdict was made for (the wire Action)."""
    tool: str
    arguments_json: str = ""
    id: str = ""
    features: typing.Tuple[float, ...] = ()
    attributes: typing.Tuple[typing.Tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class Context:
    session: str = ""
    agent: str = ""
    trace_id: str = ""


@dataclasses.dataclass(frozen=True)
class CautiousHypothesis:
    """The hypothesis that made the bound: cautious but plausible."""
    id: int = 0
    label: str = ""
    posterior: float = 0.0
    harm: float = 0.0


@dataclasses.dataclass(frozen=True)
class SamplerHealth:
    healthy: bool = False
    tb_residual: float = 0.0
    log_weight_spread: float = 0.0
    ess: float = 0.0
    train_steps: int = 0
    version_lag: int = 0
    reason: str = ""
    # the posterior search archive the candidates included (docs/API.md)
    archive_size: int = 0
    archive_version_lag: int = 0
    search_evaluations: int = 0
    search_cpu_us: int = 0
    # this action's remembered context and its per-context search
    # (docs/POLICIES.md, "Sampler health"); all 0 when not remembered
    context_kept: int = 0
    context_rounds: int = 0
    context_version_lag: int = 0


@dataclasses.dataclass(frozen=True)
class Escalation:
    """A pending or settled escalation (id = the ESCALATE's decision_id)."""
    id: str
    state: EscalationState
    policy: str = ""
    revision: str = ""
    tool: str = ""
    arguments: str = ""
    harm_bound: float = 0.0
    threshold: float = 0.0
    cautious: typing.Optional[CautiousHypothesis] = None
    session: str = ""
    agent: str = ""
    peer: str = ""
    created_unix_ms: int = 0
    expires_unix_ms: int = 0
    on_timeout: str = ""
    approver: str = ""
    approver_peer: str = ""
    reason: str = ""
    resolved_unix_ms: int = 0


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The guard's answer for one action.

    decision ALLOW: run the action, then report its outcome with the
    receipt. DENY: do not run it; tell the model why (explain()).
    ESCALATE: a person decides; await_decision() waits for them.
    reason: why, where more than the bound says it (an approver's reason,
    an expiry, an ESCALATE that could not be opened and is a DENY).
    failed_open is True only for the ALLOW a Guard(fail_open=True) made up
    when the guard could not be asked; `error` is then the GuardError.
    """
    decision: Decision
    harm_bound: float = 0.0
    threshold: float = 0.0
    cautious: typing.Optional[CautiousHypothesis] = None
    policy: str = ""
    revision: str = ""
    decision_id: str = ""
    bound_kind: BoundKind = BoundKind.UNSPECIFIED
    receipt: bytes = b""
    escalation: EscalationState = EscalationState.NONE
    escalation_record: typing.Optional[Escalation] = None
    reason: str = ""
    posterior_predictive: float = 0.0
    plausible_set_size: int = 0
    estimator: str = ""
    model: str = ""
    samples: int = 0
    shadow: bool = False
    eval_us: int = 0
    observations: int = 0
    on_error_allowed: bool = False
    sampler: typing.Optional[SamplerHealth] = None
    action: typing.Optional[Action] = None
    context: typing.Optional[Context] = None
    failed_open: bool = False
    error: typing.Optional[BaseException] = dataclasses.field(default=None, compare=False)

    @property
    def allowed(self):
        return self.decision == Decision.ALLOW

    @property
    def denied(self):
        return self.decision == Decision.DENY

    @property
    def escalated(self):
        return self.decision == Decision.ESCALATE

    def explain(self):
        """One line for a person or a model: the decision, the bound, the
        cautious hypothesis and the policy."""
        if self.failed_open:
            return "ALLOW (fail_open: the guard was not asked: %s)" % self.error
        tool = self.action.tool if self.action else "?"
        s = "%s %s: harm bound %.4g vs threshold %.4g (policy %s" % (
            self.decision.name, tool, self.harm_bound, self.threshold, self.policy or "?")
        if self.revision:
            s += " @ %s" % self.revision[:12]
        s += ")"
        if self.cautious is not None and (self.cautious.label or self.cautious.harm):
            s += "; cautious hypothesis %s (posterior %.3g, P(harm) %.3g)" % (
                self.cautious.label or self.cautious.id, self.cautious.posterior,
                self.cautious.harm)
        r = self.escalation_record
        if self.escalation != EscalationState.NONE:
            s += "; escalation %s" % self.escalation.name
            if r is not None and r.approver:
                s += " by %s" % r.approver
            if r is not None and r.reason:
                s += " (%s)" % r.reason
        if self.reason and not (r is not None and r.reason == self.reason):
            s += "; %s" % self.reason
        if self.decision_id:
            s += "; decision %s" % self.decision_id
        return s

    def replace(self, **kw):
        return dataclasses.replace(self, **kw)


def _cautious(m, present):
    return CautiousHypothesis(m.id, m.label, m.posterior, m.harm) if present else None


def escalation_from_pb(m):
    return Escalation(
        id=m.id, state=EscalationState(m.state), policy=m.policy, revision=m.revision,
        tool=m.tool, arguments=m.arguments, harm_bound=m.harm_bound, threshold=m.threshold,
        cautious=_cautious(m.cautious, m.HasField("cautious")), session=m.session,
        agent=m.agent, peer=m.peer, created_unix_ms=m.created_unix_ms,
        expires_unix_ms=m.expires_unix_ms, on_timeout=m.on_timeout, approver=m.approver,
        approver_peer=m.approver_peer, reason=m.reason, resolved_unix_ms=m.resolved_unix_ms)


def verdict_from_pb(m, action=None, context=None):
    """A Verdict from a wire Verdict; action/context: the request it answers."""
    s = m.sampler if m.HasField("sampler") else None
    return Verdict(
        decision=Decision(m.decision), harm_bound=m.harm_bound, threshold=m.threshold,
        cautious=_cautious(m.cautious, m.HasField("cautious")), policy=m.policy,
        revision=m.revision, decision_id=m.decision_id, bound_kind=BoundKind(m.bound_kind),
        receipt=bytes(m.receipt), escalation=EscalationState(m.escalation),
        escalation_record=(escalation_from_pb(m.escalation_record)
                           if m.HasField("escalation_record") else None),
        reason=m.reason,
        posterior_predictive=m.posterior_predictive, plausible_set_size=m.plausible_set_size,
        estimator=m.estimator, model=m.model, samples=m.samples, shadow=m.shadow,
        eval_us=m.eval_us, observations=m.observations, on_error_allowed=m.on_error_allowed,
        sampler=(SamplerHealth(s.healthy, s.tb_residual, s.log_weight_spread, s.ess,
                               s.train_steps, s.version_lag, s.reason, s.archive_size,
                               s.archive_version_lag, s.search_evaluations, s.search_cpu_us,
                               s.context_kept, s.context_rounds, s.context_version_lag)
                 if s else None),
        action=action, context=context)
