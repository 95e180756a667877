"""What the agent being guarded can no longer choose (issue 11, items 5-7),
over the wire against the real bayesguardd:
  - features computed on the server from arguments_json (spec.features):
    every malformed-arguments case is INVALID_ARGUMENT naming the field and
    never a decision; features sent by the request are refused unless the
    policy says from_request; the computed features reach the model;
  - default deny: a tool no policy matches gets DENY from the built-in
    default-deny policy (verdict, Status); a policy matching "*" replaces it;
  - session keys of the peer: over plain TCP a peer.identity policy refuses
    (FAILED_PRECONDITION, naming the policy) instead of sharing one ""
    session; over a unix socket (the listener reads the caller's uid with
    SO_PEERCRED) a fresh context.session under peer.identity/context.session
    is never laxer than the identity.
Run with /usr/bin/python3 (ctest sets the environment)."""
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import bgtest  # noqa: E402
from bgtest import Daemon, expect_code, grpc, guard_pb2  # noqa: E402

C = grpc.StatusCode
D = guard_pb2

POLICIES = """apiVersion: bayesguard/v1
kind: GuardPolicy
metadata: {name: pay}
spec:
  match: {tools: ["transfer_*"]}
  model: {plugin: logistic, config: {features: 2, grid: [-4, -1, 0, 1, 2], prior_sigma: 3}}
  estimator: {plugin: iid}
  threshold: 0.5
  session: context.session
  outcomes: open   # these policies test the inputs; receipts: tests/receipt
  features:
    - "log10(max(abs(amount), 1))"
    - "payee_is_new == true"
---
apiVersion: bayesguard/v1
kind: GuardPolicy
metadata: {name: bandit-like}
spec:
  match: {tools: ["pull_*"]}
  model: {plugin: logistic, config: {features: 2, grid: [-1, 0, 1], prior_sigma: 3}}
  estimator: {plugin: iid}
  threshold: 0.5
  session: context.session
  features: from_request
---
apiVersion: bayesguard/v1
kind: GuardPolicy
metadata: {name: plain}
spec:
  match: {tools: ["plain_*"]}
  model: {plugin: bernoulli, config: {grid_size: 20}}
  estimator: {plugin: iid}
  threshold: 0.9
  session: context.session
---
apiVersion: bayesguard/v1
kind: GuardPolicy
metadata: {name: mail}
spec:
  match: {tools: ["send_*"]}
  model: {plugin: bernoulli, config: {grid_size: 200, a: 1, b: 50}}
  estimator: {plugin: noniid, delta: 0.05, prior_floor: 1e-4}
  threshold: 0.3
  over_threshold: deny
  session: peer.identity/context.session
  outcomes: open
"""

STAR = """apiVersion: bayesguard/v1
kind: GuardPolicy
metadata: {name: everything-else}
spec:
  match: {tools: ["*"]}
  model: {plugin: bernoulli, config: {grid_size: 20}}
  estimator: {plugin: iid}
  threshold: 0.99
  priority: -10
"""


def policy_dir():
    d = tempfile.mkdtemp(prefix="bgt-inputs-")
    with open(os.path.join(d, "p.yaml"), "w") as f:
        f.write(POLICIES)
    return d


def ev(d, tool, args="", features=(), session="s1", i=0):
    return d.evaluate(D.EvaluateRequest(
        action=D.Action(tool=tool, arguments_json=args, features=list(features)),
        context=D.Context(session=session, agent="a1")), i=i)


def ob(d, tool, harmed, args="", session="s1", i=0):
    return d.call("Observe", D.ObserveRequest(
        action=D.Action(tool=tool, arguments_json=args),
        context=D.Context(session=session, agent="a1"), harmed=harmed), i=i)


def test_features_from_arguments():
    pdir = policy_dir()
    try:
        with Daemon(policies=pdir) as d:
            small = ev(d, "transfer_x", '{"amount": 1, "payee_is_new": false}')
            big = ev(d, "transfer_x", '{"amount": 1e6, "payee_is_new": true, "memo": "x"}')
            assert small.policy == big.policy == "pay", (small, big)
            # features (0, 0) and (6, 1) give the model different actions
            assert small.harm_bound != big.harm_bound, (small, big)
            again = ev(d, "transfer_x", '{"payee_is_new": false, "amount": -1}')
            assert again.harm_bound == small.harm_bound, (again, small)  # |-1| -> 0 too
            bad = [
                ("", ["action.arguments_json is empty"]),
                ("{\"amount\": 1,", ["action.arguments_json is not valid JSON"]),
                ("[1, 2]", ["action.arguments_json is an array"]),
                ("{\"amount\": 1, \"amount\": 2, \"payee_is_new\": true}", ["duplicate"]),
                ("{\"payee_is_new\": true}", ["arguments.amount is missing"]),
                ("{\"amount\": 5}", ["arguments.payee_is_new is missing"]),
                ("{\"amount\": \"5\", \"payee_is_new\": true}",
                 ["arguments.amount is a string, expected a number"]),
                ("{\"amount\": 5, \"payee_is_new\": \"yes\"}",
                 ["arguments.payee_is_new is a string, expected a boolean"]),
                ("{\"amount\": null, \"payee_is_new\": true}",
                 ["arguments.amount is null, expected a number"]),
                ("{\"amount\": 1e400, \"payee_is_new\": true}", ["not valid JSON"]),
            ]
            for args, want in bad:
                for call in (lambda: ev(d, "transfer_x", args),
                             lambda: ob(d, "transfer_x", False, args)):
                    msg = expect_code(call, C.INVALID_ARGUMENT, want + ["policy pay"])
                print("  %-50s -> %s" % (args[:50], msg[:90]))
            # the request's own features: refused where the server computes them
            expect_code(lambda: ev(d, "transfer_x", '{"amount": 1, "payee_is_new": false}',
                                   features=[0.0, 0.0]), C.INVALID_ARGUMENT,
                        ["policy pay computes its features from the arguments; do not send "
                         "features"])
            expect_code(lambda: ev(d, "plain_x", features=[1.0]), C.INVALID_ARGUMENT,
                        ["policy plain takes no features"])
            # ... and taken where the policy says from_request
            v = ev(d, "pull_x", features=[1.0, 0.0])
            assert v.policy == "bandit-like", v
            assert ev(d, "plain_x").policy == "plain"
            # nothing refused was stored: only valid observations count
            o = ob(d, "transfer_x", False, '{"amount": 10, "payee_is_new": false}', session="s9")
            assert o.observations == 1, o
    finally:
        shutil.rmtree(pdir, ignore_errors=True)


def test_default_deny_and_its_replacement():
    pdir = policy_dir()
    try:
        with Daemon(policies=pdir, args=["--no-watch"]) as d:
            v = ev(d, "zz_nobody_guards_this")
            assert (v.decision, v.policy, v.harm_bound) == (D.DENY, "default-deny", 1.0), v
            assert v.revision and v.decision_id, v
            st = d.call("Status", D.StatusRequest())
            names = [p.name for p in st.policies]
            assert "default-deny" in names, names
            cd = [p for p in st.policies if p.name == "default-deny"][0]
            assert list(cd.tools) == ["*"] and cd.file == "(built in)", cd
            # a named policy that does not exist is still NOT_FOUND
            expect_code(lambda: d.evaluate(D.EvaluateRequest(
                action=D.Action(tool="zz_nobody_guards_this"), policy="nope")),
                C.NOT_FOUND, ["no policy named 'nope'"])
            # naming the catch-all for a tool it answers for is fine
            v = d.evaluate(D.EvaluateRequest(action=D.Action(tool="zz_x"), policy="default-deny"))
            assert v.decision == D.DENY, v
            # an operator's "*" policy replaces it
            with open(os.path.join(pdir, "star.yaml"), "w") as f:
                f.write(STAR)
            r = d.call("Reload", D.ReloadRequest())
            assert r.ok, r
            v = ev(d, "zz_nobody_guards_this")
            assert (v.decision, v.policy) == (D.ALLOW, "everything-else"), v
            assert ev(d, "plain_x").policy == "plain"  # higher priority still wins
            st = d.call("Status", D.StatusRequest())
            assert "default-deny" not in [p.name for p in st.policies], st.policies
            expect_code(lambda: d.evaluate(D.EvaluateRequest(
                action=D.Action(tool="zz_x"), policy="default-deny")),
                C.NOT_FOUND, ["default-deny"])
    finally:
        shutil.rmtree(pdir, ignore_errors=True)


def test_identity_keys():
    pdir = policy_dir()
    try:
        with Daemon(policies=pdir, unix=True) as d:
            tcp = [i for i, a in enumerate(d.addrs) if not a.startswith("unix:")][0]
            uds = [i for i, a in enumerate(d.addrs) if a.startswith("unix:")][0]
            anon = ["policy mail keys sessions by peer.identity, but this listener cannot tell "
                    "who is calling (use a unix socket or mTLS)"]
            expect_code(lambda: ev(d, "send_x", i=tcp), C.FAILED_PRECONDITION, anon)
            expect_code(lambda: ob(d, "send_x", True, i=tcp), C.FAILED_PRECONDITION, anon)
            first = ev(d, "send_x", session="s1", i=uds)  # identity uid:N (SO_PEERCRED)
            assert first.decision == D.ALLOW, first
            for _ in range(5):
                ob(d, "send_x", True, session="s1", i=uds)
            s1 = ev(d, "send_x", session="s1", i=uds)
            fresh = ev(d, "send_x", session="s2-fresh", i=uds)
            assert s1.decision == D.DENY, s1
            # the fresh child is judged by the identity's history: never laxer
            assert fresh.harm_bound >= s1.harm_bound and fresh.decision == D.DENY, (s1, fresh)
            assert fresh.observations == 5, fresh
    finally:
        shutil.rmtree(pdir, ignore_errors=True)


if __name__ == "__main__":
    bgtest.main([test_features_from_arguments, test_default_deny_and_its_replacement,
                 test_identity_keys])
