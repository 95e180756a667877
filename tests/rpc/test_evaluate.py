"""Decisions end to end with real plugins (tests/rpc/policies): a verdict
carries every field; Observe and ObserveStream move the posterior; Status
reports policies, reload state and counters; Reload applies a good set and
refuses a bad one (the old set keeps serving); the CLI's --json prints the
same verdict the Python client decodes, and its exit codes follow the
documented table."""
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import bgtest  # noqa: E402
from bgtest import Daemon, expect_code, grpc, guard_pb2  # noqa: E402
from google.protobuf import json_format  # noqa: E402

POL = bgtest.rpc_policies()
C = grpc.StatusCode


def req(tool="rpc_send", session="s1", agent="a1", **kw):
    return guard_pb2.EvaluateRequest(
        action=guard_pb2.Action(id="call_1", tool=tool, arguments_json='{"to":"x"}',
                                attributes={"tenant": "acme"}),
        context=guard_pb2.Context(session=session, agent=agent, trace_id="tr-1"), **kw)


def obs(harmed, tool="rpc_send", session="s1", agent="a1", receipt=b""):
    return guard_pb2.ObserveRequest(
        action=guard_pb2.Action(tool=tool, arguments_json='{"to":"x"}'),
        context=guard_pb2.Context(session=session, agent=agent), harmed=harmed, receipt=receipt)


def receipt(d, session="s1"):
    """The receipt of an ALLOW for req(session=...): rpc-test takes outcomes
    only with one (outcomes: receipts, the default)."""
    v = d.evaluate(req(session=session))
    assert v.decision == guard_pb2.ALLOW and v.receipt, v
    return v.receipt


def test_verdict_fields_and_observe():
    with Daemon(policies=POL, unix=True) as d:
        v = d.evaluate(req())
        assert v.decision in (guard_pb2.ALLOW, guard_pb2.DENY, guard_pb2.ESCALATE), v
        assert v.policy == "rpc-test" and v.model == "bernoulli" and v.estimator == "noniid", v
        assert len(v.revision) >= 12 and all(c in "0123456789abcdef" for c in v.revision), v
        assert 0.0 <= v.harm_bound <= 1.0 and 0.0 <= v.posterior_predictive <= 1.0, v
        assert v.HasField("cautious") and v.cautious.label, v
        assert 0.0 < v.cautious.posterior <= 1.0 and 0.0 <= v.cautious.harm <= 1.0, v
        assert v.plausible_set_size >= 1, v
        assert v.bound_kind == guard_pb2.EXACT and v.samples == 0, v
        assert not v.shadow and not v.on_error_allowed, v
        assert v.threshold == 0.99, v
        assert v.decision == guard_pb2.ALLOW, v  # bound 0.975 (noniid) <= 0.99
        assert v.eval_us > 0, v
        assert v.observations == 0, v
        # Decision ids are unique.
        ids = {d.evaluate(req()).decision_id for _ in range(20)} | {v.decision_id}
        assert len(ids) == 21, ids
        # Uniform prior on 20 rates: the predictive harm is the mean rate 0.5.
        assert abs(v.posterior_predictive - 0.5) < 1e-9, v.posterior_predictive

        # 30 harmless outcomes: the session's predictive harm drops.
        for i in range(30):
            r = d.call("Observe", obs(False, receipt=receipt(d)))
            assert r.policy == "rpc-test" and r.session == "s1", r
            assert r.observations == i + 1, r
        assert r.revision == v.revision and r.posterior.hypotheses == 20, r
        assert 0.0 < r.posterior.map_posterior <= 1.0 and r.posterior.entropy_nats > 0, r
        v2 = d.evaluate(req())
        assert v2.observations == 30, v2
        assert v2.posterior_predictive < 0.1, v2
        assert v2.harm_bound < v.harm_bound, (v.harm_bound, v2.harm_bound)
        # Another session is untouched.
        v3 = d.evaluate(req(session="s2"))
        assert v3.observations == 0 and abs(v3.posterior_predictive - 0.5) < 1e-9, v3

        # The unix socket serves the same policies.
        vu = d.evaluate(req(tool="danger_rm"), i=1)
        assert vu.policy == "rpc-strict" and vu.estimator == "iid", vu
        # Prior predictive (0.01 + 0.5 + 0.9) / 3 = 0.47: any bound is above
        # 0.05, and rpc-strict escalates.
        assert abs(vu.posterior_predictive - 0.47) < 1e-9, vu
        assert vu.harm_bound >= vu.posterior_predictive - 1e-12, vu
        assert vu.decision == guard_pb2.ESCALATE, vu
        # A request may name the policy it expects, and gets it when that is
        # the one matching picks; naming a laxer one is refused
        # (test_bad_input), never a way around rpc-strict.
        vp = d.evaluate(req(tool="danger_rm", policy="rpc-strict"))
        assert vp.policy == "rpc-strict" and vp.decision == guard_pb2.ESCALATE, vp


def test_observe_stream():
    with Daemon(policies=POL) as d:
        ch = d.channel()
        fn = ch.stream_unary("/bayesguard.v1.Guard/ObserveStream",
                             request_serializer=guard_pb2.ObserveRequest.SerializeToString,
                             response_deserializer=guard_pb2.ObserveStreamResponse.FromString)
        msgs = [obs(i % 10 == 0, session="stream", receipt=receipt(d, "stream"))
                for i in range(50)]
        msgs[3].value = 2.5  # the optional measured outcome travels too
        r = fn(iter(msgs), timeout=30)
        assert r.accepted == 50, r
        assert r.last.observations == 50 and r.last.session == "stream", r
        assert r.last.policy == "rpc-test" and r.last.posterior.hypotheses == 20, r
        v = d.evaluate(req(session="stream"))
        assert v.observations == 50, v
        # A bad message in the middle stops the stream with its index; the
        # ones before it were stored.
        bad = [obs(False, session="stream2", receipt=receipt(d, "stream2")),
               obs(False, session="stream2", receipt=receipt(d, "stream2")),
               guard_pb2.ObserveRequest(action=guard_pb2.Action(tool="rpc_x", features=[float("nan")]))]
        expect_code(lambda: fn(iter(bad), timeout=30), C.INVALID_ARGUMENT,
                    ["observation #2", "features[0]", "2 before it were stored"])
        assert d.evaluate(req(session="stream2")).observations == 2


def test_status_and_reload():
    pdir = _copy_policies()
    try:
        _status_and_reload(pdir)
    finally:
        shutil.rmtree(pdir, ignore_errors=True)


def _status_and_reload(pdir):
    with Daemon(policies=pdir, args=["--no-watch"]) as d:
        st = d.call("Status", guard_pb2.StatusRequest())
        assert st.version and st.revision and st.uptime_s > 0, st
        names = sorted(p.name for p in st.policies)
        assert names == ["default-deny", "rpc-strict", "rpc-test"], names  # + the catch-all
        p = {p.name: p for p in st.policies}
        assert p["rpc-test"].model == "bernoulli" and p["rpc-test"].estimator == "noniid"
        assert p["rpc-test"].threshold == 0.99 and p["rpc-test"].mode == "enforce"
        assert p["rpc-strict"].over_threshold == "escalate"
        assert p["rpc-strict"].session == "context.agent"
        assert p["rpc-test"].session == "context.session"
        assert p["rpc-test"].file.endswith("rpc.yaml"), p["rpc-test"].file
        assert list(p["rpc-test"].tools) == ["rpc_*", "t"], p["rpc-test"].tools
        assert list(p["rpc-strict"].tools) == ["danger_*"], p["rpc-strict"].tools
        assert p["rpc-test"].outcomes == "receipts", p["rpc-test"]  # the default
        assert {(x.name, x.kind) for x in st.plugins} >= {("bernoulli", "hypothesis"),
                                                           ("noniid", "estimator"),
                                                           ("iid", "estimator")}, st.plugins
        assert st.listen == d.addrs and not st.draining and st.in_flight >= 1, st
        d.call("Observe", obs(True, receipt=receipt(d)))
        d.evaluate(req())
        st2 = d.call("Status", guard_pb2.StatusRequest())
        assert st2.observations >= 1 and st2.sessions >= 1 and st2.evaluations >= 1, st2

        # A good change: the revision moves, the new policy serves.
        with open(os.path.join(pdir, "rpc.yaml")) as f:
            text = f.read()
        with open(os.path.join(pdir, "rpc.yaml"), "w") as f:
            f.write(text.replace("threshold: 0.99", "threshold: 0.8"))
        r = d.call("Reload", guard_pb2.ReloadRequest())
        assert r.ok and not r.errors and r.revision != st.revision, r
        v = d.evaluate(req())
        assert v.revision == r.revision and v.threshold == 0.8, v
        # A broken change is refused with positioned errors; the old set serves.
        with open(os.path.join(pdir, "broken.yaml"), "w") as f:
            f.write("apiVersion: bayesguard/v1\nkind: GuardPolicy\nmetadata: {name: b}\n"
                    "spec:\n  match: {tools: [zzz]}\n  model: {plugin: no_such_model}\n"
                    "  estimator: {plugin: iid}\n  threshold: 0.5\n")
        r2 = d.call("Reload", guard_pb2.ReloadRequest())
        assert not r2.ok and r2.revision == r.revision, r2
        assert any("broken.yaml:6:" in e and "no_such_model" in e for e in r2.errors), r2.errors
        v = d.evaluate(req())
        assert v.revision == r.revision, v
        st3 = d.call("Status", guard_pb2.StatusRequest())
        assert st3.reload.reloads_failed >= 1 and st3.reload.last_trigger == "rpc", st3.reload
        assert any("no_such_model" in e for e in st3.reload.last_errors), st3.reload
        # The CLI says the same.
        c = d.cli("reload", check=1)
        assert "refused" in c.stdout and "no_such_model" in c.stdout, c.stdout
        os.unlink(os.path.join(pdir, "broken.yaml"))
        c = d.cli("reload", "--json", check=0)
        assert json.loads(c.stdout)["ok"] is True


def test_engine_failure_is_never_a_decision():
    plugins = bgtest.rpc_fixture_plugin_dir()
    try:
        pol = os.path.join(os.path.dirname(POL), "policies-fail")
        with Daemon(policies=pol, plugins=plugins) as d:
            def ev(tool, f):
                return d.evaluate(guard_pb2.EvaluateRequest(
                    action=guard_pb2.Action(tool=tool, features=[f])))
            # Healthy: a real decision.
            v = ev("fail_deny", 1.0)
            assert v.decision == guard_pb2.ALLOW and not v.on_error_allowed, v
            assert v.cautious.label.startswith("fail-fixture-"), v
            # on_error: deny -> INTERNAL, with what happened and what to do.
            expect_code(lambda: ev("fail_deny", -1.0), C.INTERNAL,
                        ["fail-deny", "no decision was made", "on_error"])
            # on_error: allow -> ALLOW, flagged, with no bound pretending.
            v = ev("fail_allow", -1.0)
            assert v.decision == guard_pb2.ALLOW and v.on_error_allowed, v
            assert not v.HasField("cautious") and v.harm_bound == 0.0, v
            assert v.bound_kind == guard_pb2.BOUND_KIND_UNSPECIFIED, v
            assert "on_error: allow" in d.log(), d.log_text_tail()
            # The daemon keeps serving decisions.
            assert ev("fail_deny", 1.0).decision == guard_pb2.ALLOW
    finally:
        shutil.rmtree(plugins, ignore_errors=True)


def _copy_policies():
    import tempfile
    dst = tempfile.mkdtemp(prefix="bgt-pol-")
    shutil.copy(os.path.join(POL, "rpc.yaml"), dst)
    return dst


def test_cli_matches_python():
    with Daemon(policies=POL, unix=True) as d:
        # eval --json decodes to the same Verdict the Python client gets
        # (up to the per-call decision id and timing).
        c = d.cli("eval", "--tool", "rpc_send", "--session", "cli", "--json", check=0)
        got = json.loads(c.stdout)
        v = d.evaluate(req(session="cli"))
        want = json_format.MessageToDict(v, preserving_proto_field_name=True,
                                         including_default_value_fields=True)
        for k in ("decision_id", "eval_us", "receipt"):  # per decision
            got.pop(k)
            want.pop(k)
        assert got == want, (got, want)
        # Human output and exit codes: ALLOW 0, DENY 1, ESCALATE 4.
        c = d.cli("eval", "--tool", "rpc_send", "--session", "cli", check=0)
        assert c.stdout.startswith("ALLOW") and "policy=rpc-test" in c.stdout, c.stdout
        c = d.cli("eval", "--tool", "danger_x", "--agent", "cli", check=4)
        assert c.stdout.startswith("ESCALATE"), c.stdout
        c = d.cli("eval", "--tool", "danger_x", "--agent", "cli", i=1, check=4)
        # observe, with the receipt eval printed (human output) or sent
        # (--json, base64 like the proto3 JSON mapping)
        def cli_receipt(*extra):
            c = d.cli("eval", "--tool", "rpc_send", "--session", "cli", *extra, check=0)
            if "--json" in extra:
                return json.loads(c.stdout)["receipt"]
            return [ln.split("=", 1)[1] for ln in c.stdout.splitlines()
                    if ln.startswith("  receipt=")][0]
        c = d.cli("observe", "--tool", "rpc_send", "--session", "cli", "--harmed", "no",
                  "--receipt", cli_receipt("--json"), "--json", check=0)
        assert json.loads(c.stdout)["observations"] == "1", c.stdout
        r = cli_receipt("--features", "1,2")  # the receipt binds them (from_request)
        c = d.cli("observe", "--tool", "rpc_send", "--session", "cli", "--harmed", "yes",
                  "--value", "1.5", "--features", "1,2", "--attr", "k=v", "--receipt", r,
                  check=0)
        assert "observations=2" in c.stdout, c.stdout
        c = d.cli("observe", "--tool", "rpc_send", "--session", "cli", "--harmed", "no",
                  "--features", "1,2", "--receipt", r, check=3)  # used
        assert "ALREADY_EXISTS" in c.stderr, c.stderr
        c = d.cli("observe", "--tool", "rpc_send", "--session", "cli", "--harmed", "no", check=3)
        assert "PERMISSION_DENIED" in c.stderr and "no receipt" in c.stderr, c.stderr
        c = d.cli("observe", "--tool", "rpc_send", "--harmed", "no", "--receipt", "!!", check=2)
        # health / status
        assert d.cli("health", check=0).stdout.strip() == "SERVING"
        c = d.cli("health", "--service", "nope", check=3)
        assert "NOT_FOUND" in c.stderr, c.stderr
        c = d.cli("status", check=0)
        assert "rpc-test" in c.stdout and "rpc-strict" in c.stdout, c.stdout
        st = json.loads(d.cli("status", "--json", check=0).stdout)
        assert sorted(p["name"] for p in st["policies"]) == ["default-deny", "rpc-strict", "rpc-test"], st
        # RPC errors: exit 3 with the status name and the daemon's message.
        c = d.cli("eval", "--tool", "nobody_guards_this", check=1)  # the catch-all denies
        assert "DENY" in c.stdout and "default-deny" in c.stdout, c.stdout
        c = d.cli("observe", "--tool", "nobody_guards_this", "--harmed", "no", check=3)
        assert "NOT_FOUND" in c.stderr and "nobody_guards_this" in c.stderr, c.stderr
        c = d.cli("eval", "--tool", "rpc_x", "--feature", "nan", check=3)
        assert "INVALID_ARGUMENT" in c.stderr and "features[0]" in c.stderr, c.stderr
        # Usage errors: exit 2.
        assert d.cli("eval", check=2).returncode == 2  # --tool missing
        assert d.cli("observe", "--tool", "x", check=2).returncode == 2  # --harmed missing
        assert d.cli("eval", "--tool", "x", "--bogus", check=2).returncode == 2
        r = subprocess.run([bgtest.CLI], capture_output=True, text=True)
        assert r.returncode == 2 and "usage" in r.stderr
        r = subprocess.run([bgtest.CLI, "frobnicate"], capture_output=True, text=True)
        assert r.returncode == 2 and "unknown command" in r.stderr
    # No daemon there any more: UNAVAILABLE, exit 3.
    r = subprocess.run([bgtest.CLI, "health", "--addr", d.addrs[0], "--timeout-ms", "3000"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 3 and "UNAVAILABLE" in r.stderr, (r.returncode, r.stderr)


if __name__ == "__main__":
    bgtest.main([test_verdict_fields_and_observe, test_observe_stream, test_status_and_reload,
                 test_engine_failure_is_never_a_decision, test_cli_matches_python])
