"""An attacker's review of the daemon (review 2026-12-06, docs/SECURITY.md):
each finding as an attack against the real bayesguardd over real sockets.

- Policy files others can write: the policy in force is whatever the
  directory holds (the watch reloads it by itself), so whoever can write
  a policy file, or add one to the directory, sets the threshold. A policy
  file or directory writable by group or others, or owned by a uid other
  than root and the daemon's, is refused at start (exit 2, naming the path
  and what to fix) and at a reload (the old set keeps serving: a DENY
  stays a DENY).
- Await flood: one identity parks AwaitDecision calls on its own pending
  escalation until the server-wide table of parked awaits is full, and
  every other identity's await is RESOURCE_EXHAUSTED. At most a few awaits
  park per escalation, so the parked ones are bounded by the escalation
  table (and its per-identity limits), never by one caller.
- Escalation table filled by a few identities: at the default quota of a
  quarter, four identities filled the table and every other identity's
  ESCALATE became a DENY. An eighth of the table is reserved for
  identities with none pending: past the rest, only an identity's first
  pending escalation opens.
- Receipts under features: from_request bind the request's features: a
  reporter cannot record an ALLOWed action's outcome at other features.
- A plugin at a limit the agent can drive it to (BG_PLUGIN_ELIMIT) must be
  RESOURCE_EXHAUSTED, never the ALLOW of on_error: allow (skipped: the
  fix belongs to daemon/engine/engine.c).
- The sessions an outcome creates count against the identity they belong
  to, not the one reporter every agent shares: one agent cannot fill the
  reporter's session quota and freeze everyone else's posteriors.
Needs root for the other-uid parts (setpriv); they are skipped otherwise.
Run with /usr/bin/python3 (ctest sets the environment)."""
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import bgtest  # noqa: E402
import grpc  # noqa: E402
from bgmetrics import metrics_addr, scrape, value  # noqa: E402
from bgtest import Daemon, call_as, guard_pb2, wait_for  # noqa: E402

C = grpc.StatusCode
ROOT = os.getuid() == 0

GATE = """apiVersion: bayesguard/v1
kind: GuardPolicy
metadata: {name: gate}
spec:
  match: {tools: ["wire_*"]}
  model: {plugin: bernoulli, config: {rates: [0.01, 0.5, 0.9]}}
  estimator: {plugin: iid}
  threshold: %s
  session: context.agent
"""

ESC = """apiVersion: bayesguard/v1
kind: GuardPolicy
metadata: {name: esc}
spec:
  match: {tools: ["danger_*"]}
  model: {plugin: bernoulli, config: {rates: [0.01, 0.5, 0.9]}}
  estimator: {plugin: iid}
  threshold: 0.05
  over_threshold: escalate
  session: context.agent
"""


def policy_dir(text, name="p.yaml"):
    d = tempfile.mkdtemp(prefix="bgt-atk-pol-")
    os.chmod(d, 0o755)
    with open(os.path.join(d, name), "w") as f:
        f.write(text)
    os.chmod(os.path.join(d, name), 0o644)
    return d


def wire(agent="a1"):
    return guard_pb2.EvaluateRequest(action=guard_pb2.Action(tool="wire_out", arguments_json="{}"),
                                     context=guard_pb2.Context(agent=agent))


def danger(agent="a1"):
    return guard_pb2.EvaluateRequest(action=guard_pb2.Action(tool="danger_rm",
                                                             arguments_json='{"p":"/"}'),
                                     context=guard_pb2.Context(agent=agent))


def start_fails(pol, *want, plugins=None):
    """bayesguardd refuses to start on pol (and plugins, default the
    build's): exit 2, stderr naming `want`."""
    import subprocess
    r = subprocess.run([bgtest.DAEMON, "--listen", "127.0.0.1:0", "--policies", pol,
                        "--plugins", plugins or bgtest.PLUGIN_DIR], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode == 2, (r.returncode, r.stderr)
    for w in want:
        assert w in r.stderr, (w, r.stderr)


def test_policy_others_can_write():
    """The attack: the agent (another uid, or a group it is in) can write a
    policy file or the directory, and rewrites the threshold to 1: the watch
    reloads it and every action is ALLOWed. Refused at start and at reload."""
    bgtest.require_daemon()
    pol = policy_dir(GATE % "0.05")
    f = os.path.join(pol, "p.yaml")
    try:
        # a world-writable file, a group-writable file, a writable directory
        for mode, path, what in ((0o666, f, "writable by others"),
                                 (0o664, f, "writable by its group"),
                                 (0o777, pol, "writable by others"),
                                 (0o775, pol, "writable by its group")):
            os.chmod(path, mode)
            start_fails(pol, path, what, "chmod")
            os.chmod(path, 0o644 if path == f else 0o755)
        if ROOT:  # a file owned by another uid (the agent's)
            os.chown(f, 65534, 65534)
            start_fails(pol, f, "owned by uid 65534", "chown")
            os.chown(f, 0, 0)
        # at reload: the old set keeps serving, the DENY stays a DENY
        with Daemon(policies=pol) as d:
            assert d.evaluate(wire()).decision == guard_pb2.DENY
            with open(f, "w") as out:
                out.write(GATE % "1")
            os.chmod(f, 0o666)
            r = d.call("Reload", guard_pb2.ReloadRequest())
            assert not r.ok and any(f in e and "writable by others" in e for e in r.errors), r
            v = d.evaluate(wire())
            assert v.decision == guard_pb2.DENY and v.threshold == 0.05, v
            os.chmod(f, 0o644)  # the operator's own change, made safe, goes through
            r = d.call("Reload", guard_pb2.ReloadRequest())
            assert r.ok, r
            assert d.evaluate(wire()).threshold == 1
        d.cleanup()
    finally:
        shutil.rmtree(pol, ignore_errors=True)


def test_await_flood():
    """The attack: identity A (uid on the unix socket) parks AwaitDecision
    calls on its own pending escalation until no more park; then identity B
    (plain TCP) cannot await its own (RESOURCE_EXHAUSTED). A may park only a
    few per escalation; B's await parks and answers."""
    pol = policy_dir(ESC)
    d = Daemon(policies=pol, listen=("127.0.0.1:0",), unix=True)
    with d:
        a, b = 1, 0  # listen order: TCP first, the unix socket appended
        mine = d.evaluate(danger("a1"), i=a)
        assert mine.escalation == guard_pb2.PENDING, mine
        theirs = d.evaluate(danger("b1"), i=b)
        assert theirs.escalation == guard_pb2.PENDING, theirs
        n = 4200
        # 1024 streams per connection: a connection each (no shared subchannel)
        chans = [grpc.insecure_channel(d.addrs[a], options=[("grpc.use_local_subchannel_pool", 1)])
                 for _ in range(6)]
        fns = [ch.unary_unary(bgtest.GUARD + "AwaitDecision",
                              request_serializer=guard_pb2.AwaitDecisionRequest.SerializeToString,
                              response_deserializer=guard_pb2.Verdict.FromString)
               for ch in chans]
        req = guard_pb2.AwaitDecisionRequest(decision_id=mine.decision_id, timeout_ms=120000)
        futs = [fns[k % len(fns)].future(req, timeout=150) for k in range(n)]

        def refused():
            return [f for f in futs if f.done() and f.exception() is not None]
        # one refused: A could park no more (all that parked stay parked)
        wait_for(lambda: len(refused()) > 0, 60, "one of A's awaits refused")
        e = refused()[0].exception()
        assert e.code() == C.RESOURCE_EXHAUSTED, e
        # B awaits its own: parks, and its short wait answers PENDING
        v = d.call("AwaitDecision", guard_pb2.AwaitDecisionRequest(
            decision_id=theirs.decision_id, timeout_ms=300), i=b)
        assert v.decision == guard_pb2.ESCALATE and v.escalation == guard_pb2.PENDING, v
        # A parked at most a few; the message names the escalation and says what to do
        wait_for(lambda: len(refused()) >= n - 4, 60, "A's awaits past the cap refused")
        assert len(refused()) == n - 4, len(refused())
        msg = refused()[-1].exception().details()
        assert mine.decision_id in msg and "4 AwaitDecision" in msg, msg
        # the ones that parked are answered by the approval
        d.call("ResolveEscalation", guard_pb2.ResolveEscalationRequest(
            id=mine.decision_id, resolution=guard_pb2.APPROVE, approver="op"), i=b)
        parked = [f for f in futs if f.exception() is None]
        assert len(parked) == 4
        assert all(f.result().decision == guard_pb2.ALLOW for f in parked)
        for ch in chans:
            ch.close()
    d.cleanup()
    shutil.rmtree(pol, ignore_errors=True)


def test_escalation_reserve():
    """The attack: two identities at their quota (a quarter... here half) fill
    the table, and a third identity's ESCALATE is a DENY. An eighth of the
    table is held for identities with none pending."""
    if not ROOT:
        print("skip: test_escalation_reserve needs root (a third uid via setpriv)")
        return
    pol = policy_dir(ESC)
    tmp = tempfile.mkdtemp(prefix="bgt-atk-sock-")
    os.chmod(tmp, 0o755)  # uid 65534 must reach the socket
    sock = "unix:" + os.path.join(tmp, "bg.sock")
    d = Daemon(policies=pol, listen=("127.0.0.1:0", sock),
               args=["--max-escalations", "8", "--max-escalations-per-identity", "4",
                     "--socket-group", "65534", "--metrics-listen", "127.0.0.1:0"])
    with d:
        tcp, uds = 0, 1
        a = [d.evaluate(danger("a%d" % k), i=uds) for k in range(4)]
        assert all(v.escalation == guard_pb2.PENDING for v in a), a
        b = [d.evaluate(danger("b%d" % k), i=tcp) for k in range(4)]
        assert all(v.escalation == guard_pb2.PENDING for v in b[:3]), b
        # the last shared slot was taken: B's fourth is refused, naming the reserve
        assert b[3].decision == guard_pb2.DENY, b[3]
        for want in ("reserved", "none pending", "settle"):
            assert want in b[3].reason, (want, b[3].reason)
        # a third identity, with none pending, still escalates
        c, err = call_as(65534, 65534, sock, "Evaluate", danger("c1"), guard_pb2.Verdict)
        assert err is None and c.escalation == guard_pb2.PENDING, (c, err)
        m = scrape(metrics_addr(d))
        assert value(m, "bayesguard_escalations_refused_total", reason="reserved") == 1
        assert value(m, "bayesguard_escalations_refused_total", reason="table_full") == 0
    d.cleanup()
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(pol, ignore_errors=True)


ARMS = """apiVersion: bayesguard/v1
kind: GuardPolicy
metadata: {name: arms}
spec:
  match: {tools: ["pull_*"]}
  model: {plugin: bandit, config: {features: 4, sigma: 1.0, theta: 2.0}}
  estimator: {plugin: noniid, alpha: 0.01}
  threshold: 1
  session: context.session
  features: from_request
"""


def test_receipt_binds_request_features():
    """The attack: under features: from_request the decision is about the
    request's features, but the receipt bound only tool and arguments, so
    whoever reports could record an ALLOWed action's outcome at other
    features (a "harmless" outcome where the model reads risk). The
    receipt binds the features too: other features are PERMISSION_DENIED,
    the same ones accepted."""
    pol = policy_dir(ARMS)
    with Daemon(policies=pol) as d:
        def act(x):
            return guard_pb2.Action(tool="pull_arm", arguments_json="{}", features=x)
        ctx = guard_pb2.Context(session="s1")
        low, high = [0.0, 0.0, 0.0, 0.1], [3.0, 3.0, 3.0, 3.0]
        v = d.evaluate(guard_pb2.EvaluateRequest(action=act(low), context=ctx))
        assert v.decision == guard_pb2.ALLOW and v.receipt, v

        def observe(x):
            return d.call("Observe", guard_pb2.ObserveRequest(
                action=act(x), context=ctx, harmed=False, value=0.0, receipt=v.receipt))
        msg = bgtest.expect_code(lambda: observe(high), C.PERMISSION_DENIED,
                                 ("other arguments", "action.features"))
        assert v.decision_id in msg, msg
        bgtest.expect_code(lambda: observe(low[:3]), C.PERMISSION_DENIED)  # fewer features
        assert observe(low).observations == 1
    d.cleanup()
    shutil.rmtree(pol, ignore_errors=True)


FAIL_ALLOW = """apiVersion: bayesguard/v1
kind: GuardPolicy
metadata: {name: fail-allow}
spec:
  match: {tools: ["fail_allow"]}
  model: {plugin: rpc_fail}
  estimator: {plugin: iid}
  threshold: 0.05
  features: from_request
  on_error: allow
"""


def test_plugin_limit_is_no_allow():
    """The attack: under on_error: allow a plugin failure is an ALLOW; a
    plugin at a limit the agent can drive it to (the language-model
    service's queue: flood Evaluate until it is full, plugin_lm.c) answers
    BG_PLUGIN_ELIMIT, which the engine reports as an internal error, so
    the flood turns the agent's DENYs into ALLOWs. A limit is a limit:
    RESOURCE_EXHAUSTED whatever on_error says, as the engine's own limits
    are (rpc_svc_guard.c). The fixture model answers ELIMIT for
    features[0] <= -100."""
    pol = policy_dir(FAIL_ALLOW)
    plugins = bgtest.rpc_fixture_plugin_dir()
    with Daemon(policies=pol, plugins=plugins) as d:
        def ev(x):
            return d.evaluate(guard_pb2.EvaluateRequest(
                action=guard_pb2.Action(tool="fail_allow", features=[x]),
                context=guard_pb2.Context(session="s")))
        assert ev(1.0).decision == guard_pb2.DENY  # the bound 0.2 > 0.05
        bgtest.expect_code(lambda: ev(-100.0), C.RESOURCE_EXHAUSTED)
        v = ev(-1.0)  # an internal error stays what on_error: allow says
        assert v.decision == guard_pb2.ALLOW and v.on_error_allowed, v
    d.cleanup()
    shutil.rmtree(pol, ignore_errors=True)
    shutil.rmtree(plugins, ignore_errors=True)


def test_plugin_dir_others_can_write():
    """The attack: whoever can write the plugin directory has its .so
    loaded into the daemon at the next reload (every reload rescans it):
    code execution in the guard. The same rule as the policies should hold:
    a plugin directory or .so writable by group or others, or owned by
    another uid, refused (exit 2 at start)."""
    plugins = bgtest.rpc_fixture_plugin_dir()  # a temp dir of symlinks, mode 0700
    pol = policy_dir(GATE % "0.05")
    try:
        os.chmod(plugins, 0o777)
        start_fails(pol, plugins, "chmod", plugins=plugins)
        # made writable while serving: the reload that would rescan it is
        # refused, the loaded set keeps serving, the DENY stays a DENY
        os.chmod(plugins, 0o700)
        with Daemon(policies=pol, plugins=plugins) as d:
            assert d.evaluate(wire()).decision == guard_pb2.DENY
            os.chmod(plugins, 0o777)
            rr = d.call("Reload", guard_pb2.ReloadRequest())
            assert not rr.ok and any(plugins in e and "writable by others" in e
                                     for e in rr.errors), rr
            assert d.evaluate(wire()).decision == guard_pb2.DENY
            os.chmod(plugins, 0o700)
            assert d.call("Reload", guard_pb2.ReloadRequest()).ok
        d.cleanup()
    finally:
        shutil.rmtree(plugins, ignore_errors=True)
        shutil.rmtree(pol, ignore_errors=True)


TWO = """apiVersion: bayesguard/v1
kind: GuardPolicy
metadata: {name: two}
spec:
  match: {tools: ["wire_*"]}
  model: {plugin: bernoulli, config: {rates: [0.01, 0.5, 0.9]}}
  estimator: {plugin: iid}
  threshold: 1
  session: peer.identity/context.session
"""


def test_sessions_charged_to_their_identity():
    """The attack: the reporter (one tool runner for every agent) reports
    the outcomes of every agent's actions, and the sessions they create
    counted against the reporter's --max-sessions-per-identity. An agent
    that names a fresh context.session per action (its ALLOWs carry them)
    filled that quota, and then every other agent's new session was
    RESOURCE_EXHAUSTED: their outcomes refused, their posteriors frozen.
    A session now counts against the identity it belongs to (the receipt's
    identity level); the reporter is still charged the observation rate."""
    if not ROOT:
        print("skip: test_sessions_charged_to_their_identity needs root (a second uid)")
        return
    pol = policy_dir(TWO)
    tmp = tempfile.mkdtemp(prefix="bgt-atk-sock-")
    os.chmod(tmp, 0o755)
    sock = "unix:" + os.path.join(tmp, "agent.sock")
    d = Daemon(policies=pol, listen=("agent@" + sock, "reporter@127.0.0.1:0"),
               args=["--max-sessions-per-identity", "4", "--socket-group", "65534"])
    with d:
        def ev(session):
            return guard_pb2.EvaluateRequest(
                action=guard_pb2.Action(tool="wire_out", arguments_json="{}"),
                context=guard_pb2.Context(session=session))

        def report(v):
            return d.call("Observe", guard_pb2.ObserveRequest(
                action=guard_pb2.Action(tool="wire_out", arguments_json="{}"), harmed=False,
                receipt=v.receipt), i=1)
        stored, refused = 0, None
        for k in range(10):  # agent uid 0: a fresh session per action
            v = d.evaluate(ev("a%d" % k), i=0)
            assert v.decision == guard_pb2.ALLOW and v.receipt, v
            try:
                report(v)
                stored += 1
            except grpc.RpcError as e:
                refused = e
                break
        assert refused is not None and refused.code() == C.RESOURCE_EXHAUSTED, refused
        # the agent's own quota, named: 2 sessions (uid:0 and uid:0|a0) + 2 more
        assert 'identity "uid:0" has 4 sessions' in refused.details(), refused.details()
        assert stored == 3, stored
        # another agent's outcome still lands
        v, err = call_as(65534, 65534, sock, "Evaluate", ev("b0"), guard_pb2.Verdict)
        assert err is None and v.receipt, (v, err)
        r = report(v)
        assert r.session == "uid:65534|b0" and r.observations == 1, r
    d.cleanup()
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(pol, ignore_errors=True)


if __name__ == "__main__":
    bgtest.main([test_policy_others_can_write, test_await_flood, test_escalation_reserve,
                 test_receipt_binds_request_features, test_plugin_limit_is_no_allow,
                 test_plugin_dir_others_can_write, test_sessions_charged_to_their_identity])
