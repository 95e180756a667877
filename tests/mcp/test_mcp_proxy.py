"""`bayesguard mcp-proxy` between the official MCP TypeScript SDK's Client
and McpServer (tests/mcp/client.mjs, server.mjs), the real daemon behind it
with the fixture policies of tests/mcp/policies (echo/fail/flagged/crash
ALLOW, delete_all DENY, deploy ESCALATE).

Checked: tools/list, prompts, resources and ping read the same through the
proxy as straight from the server; an allowed call runs on the server
(its side-effect line) and its result comes back unchanged; a denied call
never reaches the server and the client gets isError with the bound, the
threshold, the cautious hypothesis and the policy; outcomes are reported
(--report is-error, --report field:NAME) and move the posterior by the
exact amount one observation should; a guard that cannot be reached
refuses the call (fail closed) unless --fail-open; a server that dies
mid-call gives the client a clear error and the proxy exit code 5; the SDK
ending the session (SIGTERM) ends the proxy with 0.
Run with /usr/bin/python3 (ctest sets the environment)."""
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mcptest  # noqa: E402
from mcptest import bgtest, run_client, text_of  # noqa: E402

guard_pb2 = bgtest.guard_pb2
D = None  # the daemon, started in main()


def addr():
    return D.addrs[-1]  # its unix socket


def test_pass_through_allow_deny():
    r = run_client("basic", ["--guard", addr(), "--session", "pass"],
                   calls=[("echo", {"text": "hi"}), ("delete_all", {"path": "/"})])
    o = r.out
    for k in ("tools", "prompts", "prompt", "resources", "resource"):
        assert o["proxied"][k] == o["direct"][k], (k, o["proxied"][k], o["direct"][k])
    assert [t["name"] for t in o["proxied"]["tools"]["tools"]] == \
        ["echo", "delete_all", "deploy", "fail", "flagged", "crash"], o["proxied"]["tools"]
    assert o["proxied"]["ping"] == {}, o["proxied"]["ping"]
    assert o["server_version"]["name"] == "bg-test-server", o["server_version"]
    allowed, denied = o["calls"]
    assert allowed == {"result": {"content": [{"type": "text", "text": "echo: hi"}]}}, allowed
    res = denied["result"]
    assert res["isError"] is True, res
    text = text_of(res)
    for want in ("refused the call to tool 'delete_all'", "Decision DENY", "harm bound 0.9",
                 "threshold 0.05", "policy 'mcp-danger'", "'rate=0.9'", "not run"):
        assert want in text, (want, text)
    meta = res["_meta"]["io.bayesguard/verdict"]
    assert meta["decision"] == "DENY" and meta["policy"] == "mcp-danger", meta
    assert abs(meta["harm_bound"] - 0.9) < 1e-12 and abs(meta["threshold"] - 0.05) < 1e-12, meta
    assert meta["cautious"]["label"] == "rate=0.9", meta
    # Only the allowed call reached the server.
    assert r.ran == [{"tool": "echo", "args": {"text": "hi"}}], r.ran
    assert o["exit"] == 0, o["exit"]


def predictive(session, tool="echo"):
    v = D.evaluate(guard_pb2.EvaluateRequest(
        action=guard_pb2.Action(tool=tool, arguments_json="{}"),
        context=guard_pb2.Context(session=session)))
    return v.observations, v.posterior_predictive


# Policy mcp-safe: rates {0.001, 0.01}, prior 1/2 each. The posterior
# predictive after outcomes y_1..y_n is sum_r r * P(r | y) — exact here.
def expected_pp(outcomes):
    w = {}
    for r in (0.001, 0.01):
        w[r] = 0.5 * math.prod(r if y else 1 - r for y in outcomes)
    z = sum(w.values())
    return sum(r * w[r] / z for r in w)


def test_report_is_error():
    s = "report-is-error"
    r = run_client("basic", ["--guard", addr(), "--session", s, "--report", "is-error"],
                   calls=[("fail", {}), ("echo", {"text": "a"})])
    assert r.out["calls"][0]["result"]["isError"] is True, r.out["calls"]
    assert [x["tool"] for x in r.ran] == ["fail", "echo"], r.ran
    bgtest.wait_for(lambda: predictive(s)[0] == 2, 10, "two outcomes reported")
    n, pp = predictive(s)
    want = expected_pp([True, False])  # fail: isError -> harmed; echo: not
    assert abs(pp - want) < 1e-9, (pp, want, expected_pp([False, False]))


def test_report_field():
    s = "report-field"
    r = run_client("basic", ["--guard", addr(), "--session", s, "--report", "field:harmed"],
                   calls=[("flagged", {"harmed": True}), ("echo", {"text": "no field"})])
    assert r.out["calls"][0]["result"]["structuredContent"] == {"harmed": True}, r.out
    assert [x["tool"] for x in r.ran] == ["flagged", "echo"], r.ran
    # flagged reports harmed=true; echo has no structuredContent.harmed: not reported.
    bgtest.wait_for(lambda: predictive(s)[0] >= 1, 10, "the outcome reported")
    n, pp = predictive(s)
    assert n == 1, n
    assert abs(pp - expected_pp([True])) < 1e-9, (pp, expected_pp([True]))
    assert "structuredContent.harmed is missing" in r.stderr, r.stderr


def test_report_none_by_default():
    s = "report-none"
    run_client("basic", ["--guard", addr(), "--session", s], calls=[("fail", {})])
    assert predictive(s)[0] == 0


def test_guard_unreachable_fails_closed():
    tmp_sock = "unix:/nonexistent-bayesguard-dir/guard.sock"
    r = run_client("basic", ["--guard", tmp_sock, "--timeout-ms", "3000"],
                   calls=[("echo", {"text": "x"})])
    res = r.out["calls"][0]["result"]
    assert res["isError"] is True, res
    text = text_of(res)
    assert "fail closed" in text and "UNAVAILABLE" in text and "Evaluate" in text, text
    assert res["_meta"]["io.bayesguard/verdict"]["decision"] == "ERROR", res
    assert r.ran == [], r.ran


def test_guard_unreachable_fail_open():
    r = run_client("basic", ["--guard", "unix:/nonexistent-bayesguard-dir/guard.sock",
                             "--timeout-ms", "3000", "--fail-open"],
                   calls=[("echo", {"text": "x"})])
    assert r.out["calls"][0] == {"result": {"content": [{"type": "text", "text": "echo: x"}]}}
    assert r.ran == [{"tool": "echo", "args": {"text": "x"}}], r.ran
    assert "forwarded (--fail-open)" in r.stderr, r.stderr


def test_server_crash_mid_call():
    r = run_client("crash", ["--guard", addr(), "--session", "crash"])
    o = r.out
    assert o["before"]["result"]["content"][0]["text"] == "echo: still fine", o
    err = o["crash"]["error"]
    assert err["code"] == -32000, err
    assert "exited (killed by signal 9" in err["message"], err
    assert "exit code 5" in err["message"], err
    assert o["exit"] == 5, o["exit"]
    assert [x["tool"] for x in r.ran] == ["echo", "crash"], r.ran


def main():
    global D
    mcptest.require_sdk()
    with bgtest.Daemon(policies=mcptest.POLICIES, unix=True) as d:
        D = d
        bgtest.main([test_pass_through_allow_deny, test_report_is_error, test_report_field,
                     test_report_none_by_default, test_guard_unreachable_fails_closed,
                     test_guard_unreachable_fail_open, test_server_crash_mid_call])


if __name__ == "__main__":
    main()
