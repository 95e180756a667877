"""The decision log over the wire (--decision-log): every Evaluate outcome —
allow, escalate, shadow, on_error: allow, and the failures (NOT_FOUND,
INVALID_ARGUMENT, INTERNAL) — is one JSON line whose fields equal what the
client was answered; the action's arguments never reach it; Status counts
it; SIGHUP after a rename reopens it (logrotate); what was appended before
SIGTERM is on disk after exit; '-' writes to stdout; a path that cannot be
opened is a startup error; /metrics exports its counters."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import bgtest  # noqa: E402
import bgmetrics  # noqa: E402
from bgtest import Daemon, expect_code, grpc, guard_pb2  # noqa: E402

C = grpc.StatusCode
RPC_POL = bgtest.rpc_policies()
SECRET = '{"to":"x","token":"s3cr3t-do-not-log"}'

SHADOW = """apiVersion: bayesguard/v1
kind: GuardPolicy
metadata: {name: watch}
spec:
  match: {tools: ["shadow_*"]}
  model: {plugin: bernoulli, config: {rates: [0.01, 0.5, 0.9]}}
  estimator: {plugin: iid}
  threshold: 0.05
  mode: shadow
  session: context.session
"""


def policy_dir():
    d = tempfile.mkdtemp(prefix="bgt-pol-")
    shutil.copy(os.path.join(RPC_POL, "rpc.yaml"), d)
    shutil.copy(os.path.join(os.path.dirname(RPC_POL), "policies-fail", "fail.yaml"), d)
    with open(os.path.join(d, "shadow.yaml"), "w") as f:
        f.write(SHADOW)
    return d


def req(tool, features=(), session="s1", agent="a1", call_id="call_1", trace="tr-1", policy=""):
    return guard_pb2.EvaluateRequest(
        action=guard_pb2.Action(id=call_id, tool=tool, arguments_json=SECRET,
                                features=list(features)),
        context=guard_pb2.Context(session=session, agent=agent, trace_id=trace), policy=policy)


def read_lines(path):
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        data = f.read()
    assert data == b"" or data.endswith(b"\n"), "a half line at the end: %r" % data[-200:]
    return [json.loads(l) for l in data.decode("utf-8").splitlines()]


def status_log(d):
    return d.call("Status", guard_pb2.StatusRequest()).decision_log


def wait_written(d, n):
    """Status's decision_log once n lines are written."""
    return bgtest.wait_for(lambda: (lambda s: s if s.written >= n else None)(status_log(d)), 20,
                           "%d decision log lines written" % n)


def check_verdict_line(line, v, r):
    """line (parsed JSON) says exactly what verdict v answered request r."""
    a, ctx = r.action, r.context
    want = {
        "decision_id": v.decision_id, "decision": guard_pb2.Decision.Name(v.decision),
        "tool": a.tool, "action_id": a.id, "session": ctx.session, "agent": ctx.agent,
        "trace_id": ctx.trace_id, "policy": v.policy, "revision": v.revision,
        "model": v.model, "estimator": v.estimator, "shadow": v.shadow,
        "eval_us": v.eval_us,
    }
    if v.on_error_allowed:
        want["on_error_allowed"] = True
    else:
        want.update({
            "harm_bound": v.harm_bound, "threshold": v.threshold,
            "posterior_predictive": v.posterior_predictive,
            "bound_kind": guard_pb2.BoundKind.Name(v.bound_kind).lower(),
            "plausible_set_size": v.plausible_set_size, "observations": v.observations,
            "cautious": {"id": v.cautious.id, "label": v.cautious.label,
                         "posterior": v.cautious.posterior, "harm": v.cautious.harm},
        })
    for k, w in want.items():
        assert line.get(k) == w, "%s: line has %r, the reply %r\nline: %s" % (k, line.get(k), w,
                                                                             line)
    assert "arguments_json" not in line and "arguments" not in line, line


def test_every_outcome_is_a_line():
    pol, plugins = policy_dir(), bgtest.rpc_fixture_plugin_dir()
    tmp = tempfile.mkdtemp(prefix="bgt-dl-")
    path = os.path.join(tmp, "decisions.jsonl")
    try:
        with Daemon(policies=pol, plugins=plugins,
                    args=["--decision-log", path, "--metrics-listen", "127.0.0.1:0"]) as d:
            decided = []
            for r in (req("rpc_send", trace="tr-allow"),
                      req("danger_rm", agent="ops", trace="tr-esc"),
                      req("shadow_x", session="s9", trace="tr-shadow"),
                      req("fail_allow", [-1.0], trace="tr-onerr"),
                      req("fail_deny", [1.0], trace="tr-fail-ok"),
                      req("no_such_tool", trace="tr-catch-all")):
                decided.append((r, d.evaluate(r)))
            kinds = [(guard_pb2.Decision.Name(v.decision), v.shadow, v.on_error_allowed)
                     for _, v in decided]
            assert kinds == [("ALLOW", False, False), ("ESCALATE", False, False),
                             ("ALLOW", True, False), ("ALLOW", False, True),
                             ("ALLOW", False, False), ("DENY", False, False)], kinds
            failed = []
            for r, code in ((req("rpc_send", policy="no-such", trace="tr-404"), C.NOT_FOUND),
                            (req("rpc_send", [float("nan")], trace="tr-nan"),
                             C.INVALID_ARGUMENT),
                            (req("fail_deny", [-1.0], trace="tr-500"), C.INTERNAL)):
                failed.append((r, code, expect_code(lambda: d.evaluate(r), code)))
            st = wait_written(d, 9)
            assert (st.path, st.appended, st.written, st.dropped, st.lost) == (path, 9, 9, 0, 0), st
            fams = bgmetrics.scrape(bgmetrics.metrics_addr(d))
            for result, n in (("written", 9), ("dropped", 0), ("lost", 0)):
                assert bgmetrics.value(fams, "bayesguard_decision_log_lines_total",
                                       result=result) == n, (result, fams)
            assert bgmetrics.value(fams, "bayesguard_decision_log_write_errors_total") == 0
            text = d.cli("status", check=0).stdout
            assert "decision log %s: appended=9 written=9 dropped=0 lost=0" % path in text, text
            raw = open(path, "rb").read()
            assert b"s3cr3t" not in raw, "the action's arguments reached the log"
            lines = read_lines(path)
            assert len(lines) == 9, lines
            by_trace = {l["trace_id"]: l for l in lines}
            for r, v in decided:
                check_verdict_line(by_trace[r.context.trace_id], v, r)
            shadow = by_trace["tr-shadow"]
            assert shadow["harm_bound"] > shadow["threshold"], shadow
            assert shadow["enforce_decision"] == "DENY", shadow
            assert by_trace["tr-esc"]["session_key"] == "ops", by_trace["tr-esc"]
            assert "enforce_decision" not in by_trace["tr-allow"], by_trace["tr-allow"]
            assert "fail" in by_trace["tr-onerr"]["error"], by_trace["tr-onerr"]
            for r, code, msg in failed:
                l = by_trace[r.context.trace_id]
                assert l["error_code"] == code.name and l["error"] == msg, (l, code, msg)
                assert "decision" not in l and "decision_id" not in l, l
            assert by_trace["tr-500"]["policy"] == "fail-deny", by_trace["tr-500"]
            assert "policy" not in by_trace["tr-404"], by_trace["tr-404"]
            catch_all = by_trace["tr-catch-all"]
            assert (catch_all["policy"], catch_all["decision"], catch_all["harm_bound"]) == (
                "default-deny", "DENY", 1.0), catch_all
    finally:
        for p in (pol, plugins, tmp):
            shutil.rmtree(p, ignore_errors=True)


def test_rotation_and_shutdown():
    tmp = tempfile.mkdtemp(prefix="bgt-dl-")
    path = os.path.join(tmp, "decisions.jsonl")
    try:
        with Daemon(policies=RPC_POL, args=["--decision-log", path, "--no-watch"]) as d:
            for i in range(3):
                d.evaluate(req("rpc_send", trace="old-%d" % i))
            wait_written(d, 3)
            os.rename(path, path + ".1")
            d.send_signal(signal.SIGHUP)  # logrotate's postrotate
            bgtest.wait_for(lambda: status_log(d).reopens == 1, 20, "the reopen")
            d.evaluate(req("rpc_send", trace="new-0"))
            wait_written(d, 4)
            assert [l["trace_id"] for l in read_lines(path + ".1")] == ["old-0", "old-1", "old-2"]
            assert [l["trace_id"] for l in read_lines(path)] == ["new-0"]
            # Everything answered before SIGTERM is on disk once the daemon exits.
            for i in range(300):
                d.evaluate(req("rpc_send", trace="burst-%d" % i))
            appended = status_log(d).appended
            d.stop()
            assert appended == 304, appended
            assert len(read_lines(path)) == 301
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_stdout_and_config_key():
    tmp = tempfile.mkdtemp(prefix="bgt-dl-")
    try:
        cfg = os.path.join(tmp, "bg.yaml")
        with open(cfg, "w") as f:
            f.write("decision_log: '-'\n")
        with Daemon(policies=RPC_POL, args=["--config", cfg]) as d:
            v = d.evaluate(req("rpc_send", trace="tr-stdout"))
            assert status_log(d).path == "-"
            wait_written(d, 1)
            lines = [json.loads(l) for l in d.log().splitlines() if l.startswith('{"time":')]
            assert [l["decision_id"] for l in lines] == [v.decision_id], d.log_text_tail()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_unopenable_path_is_a_startup_error():
    bad = "/nonexistent-bg-dir/decisions.jsonl"
    r = subprocess.run([bgtest.DAEMON, "--listen", "127.0.0.1:0", "--policies", RPC_POL,
                        "--plugins", bgtest.PLUGIN_DIR, "--decision-log", bad],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "--decision-log" in r.stderr and bad in r.stderr, r.stderr
    # Without the flag, Status has no decision_log block.
    with Daemon(policies=RPC_POL) as d:
        assert not d.call("Status", guard_pb2.StatusRequest()).HasField("decision_log")


if __name__ == "__main__":
    bgtest.main([test_every_outcome_is_a_line, test_rotation_and_shutdown,
                 test_stdout_and_config_key, test_unopenable_path_is_a_startup_error])
