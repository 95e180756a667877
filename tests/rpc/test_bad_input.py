"""Every bad input of issue 2 point 3 gets its gRPC status and a message
that says what to fix, and the daemon keeps serving: after each refusal a
good request succeeds on the same channel."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import bgtest  # noqa: E402
from bgtest import Daemon, expect_code, grpc, guard_pb2, health_pb2  # noqa: E402

POL = bgtest.rpc_policies()

C = grpc.StatusCode
MAX = 16384


def good(d, ch):
    """A request that must succeed: Evaluate on a real policy when the
    default policies exist, plus Status and Health (always)."""
    st = d.call("Status", guard_pb2.StatusRequest(), ch=ch)
    assert st.version, st
    assert d.health("", ch=ch).status == health_pb2.HealthCheckResponse.SERVING
    tools = bgtest.policy_tools(d.policies)
    if tools:
        name, tool = tools[0]
        v = d.evaluate(guard_pb2.EvaluateRequest(
            action=guard_pb2.Action(tool=tool, features=[0.5] * 0),
            context=guard_pb2.Context(session="bad-input")), ch=ch)
        assert v.policy == name and v.decision != guard_pb2.DECISION_UNSPECIFIED, v


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def amplified_evaluate(size):
    """An EvaluateRequest of about `size` bytes that is almost all empty
    `attributes` map entries (2 bytes each on the wire, a struct and a
    pointer each once decoded)."""
    entries = b"\x2a\x00" * ((size - 16) // 2)
    action = b"\x12\x01t" + entries  # Action.tool = "t", then the map entries
    return b"\x0a" + _varint(len(action)) + action  # EvaluateRequest.action


def evaluate(d, ch, req):
    return lambda: d.evaluate(req, ch=ch)


def test_bad_inputs():
    with Daemon(policies=POL, args=["--enable-bench", "--max-message-bytes", str(MAX)]) as d:
        ch = d.channel()
        good(d, ch)
        cases = [
            ("malformed bytes",
             lambda: d.raw("/bayesguard.v1.Guard/Evaluate", b"\xff\xff\xff\xff\x0f", ch=ch),
             C.INVALID_ARGUMENT, ["EvaluateRequest"]),
            ("malformed Observe",
             lambda: d.raw("/bayesguard.v1.Guard/Observe", b"\x0a\x05ab", ch=ch),
             C.INVALID_ARGUMENT, ["ObserveRequest"]),
            ("oversized",
             evaluate(d, ch, guard_pb2.EvaluateRequest(action=guard_pb2.Action(
                 tool="t", arguments_json="x" * (MAX + MAX // 2)))),
             C.RESOURCE_EXHAUSTED, ["--max-message-bytes (%d)" % MAX, "arguments_json"]),
            ("far oversized (gRPC's own cap)",
             evaluate(d, ch, guard_pb2.EvaluateRequest(action=guard_pb2.Action(
                 tool="t", arguments_json="x" * (3 * MAX)))),
             C.RESOURCE_EXHAUSTED, []),
            ("missing action", evaluate(d, ch, guard_pb2.EvaluateRequest()),
             C.INVALID_ARGUMENT, ["action is missing"]),
            ("missing tool",
             evaluate(d, ch, guard_pb2.EvaluateRequest(action=guard_pb2.Action(id="c1"))),
             C.INVALID_ARGUMENT, ["action.tool"]),
            ("NaN feature",
             evaluate(d, ch, guard_pb2.EvaluateRequest(action=guard_pb2.Action(
                 tool="t", features=[1.0, float("nan")]))),
             C.INVALID_ARGUMENT, ["features[1]", "NaN"]),
            ("inf feature",
             evaluate(d, ch, guard_pb2.EvaluateRequest(action=guard_pb2.Action(
                 tool="t", features=[float("-inf")]))),
             C.INVALID_ARGUMENT, ["features[0]", "infinite"]),
            ("unknown policy",
             evaluate(d, ch, guard_pb2.EvaluateRequest(action=guard_pb2.Action(tool="t"),
                                                       policy="no-such-policy")),
             C.NOT_FOUND, ["no-such-policy", "policies are"]),
            ("observe a tool no policy matches",
             lambda: d.call("Observe", guard_pb2.ObserveRequest(
                 action=guard_pb2.Action(tool="zz_tool_nobody_guards"), harmed=False), ch=ch),
             C.NOT_FOUND, ["zz_tool_nobody_guards", "default-deny", "policies are"]),
            ("a policy that does not guard the tool",
             evaluate(d, ch, guard_pb2.EvaluateRequest(action=guard_pb2.Action(tool="danger_rm"),
                                                       policy="rpc-test")),
             C.INVALID_ARGUMENT, ["'rpc-test'", "'danger_rm'", "guarded by policy 'rpc-strict'",
                                  "not by the caller"]),
            ("a named policy for a tool nobody guards",
             evaluate(d, ch, guard_pb2.EvaluateRequest(
                 action=guard_pb2.Action(tool="zz_tool_nobody_guards"), policy="rpc-test")),
             C.INVALID_ARGUMENT, ["guarded by policy 'default-deny'"]),
            ("observe under a policy that does not guard the tool",
             lambda: d.call("Observe", guard_pb2.ObserveRequest(
                 action=guard_pb2.Action(tool="danger_rm"), policy="rpc-test", harmed=False),
                 ch=ch),
             C.INVALID_ARGUMENT, ["ObserveRequest.policy", "'rpc-strict'"]),
            ("observe without action",
             lambda: d.call("Observe", guard_pb2.ObserveRequest(harmed=True), ch=ch),
             C.INVALID_ARGUMENT, ["action is missing"]),
            ("observe NaN value",
             lambda: d.call("Observe", guard_pb2.ObserveRequest(
                 action=guard_pb2.Action(tool="t", features=[float("inf")])), ch=ch),
             C.INVALID_ARGUMENT, ["features[0]"]),
            ("unknown method",
             lambda: d.raw("/bayesguard.v1.Guard/Nope", b"", ch=ch),
             C.UNIMPLEMENTED, ["/bayesguard.v1.Guard/Nope", "Evaluate"]),
            ("decoded size blow-up",
             lambda: d.raw("/bayesguard.v1.Guard/Evaluate", amplified_evaluate(MAX - 64), ch=ch),
             C.RESOURCE_EXHAUSTED, ["times --max-message-bytes", "fewer elements"]),
            ("ping delay too long",
             lambda: d.ping(delay_ms=999999, ch=ch), C.INVALID_ARGUMENT, ["delay_ms"]),
        ]
        for name, fn, code, contains in cases:
            try:
                msg = expect_code(fn, code, contains)
            except AssertionError as e:
                raise AssertionError("%s: %s" % (name, e))
            print("  %-22s -> %s: %s" % (name, code.name, msg[:100]))
            good(d, ch)
        # A fresh channel works too (nothing poisoned the server).
        good(d, d.channel())


def test_oversized_stream_message():
    with Daemon(policies=POL, args=["--enable-bench", "--max-message-bytes", str(MAX)]) as d:
        ch = d.channel()
        fn = ch.stream_unary("/bayesguard.v1.Guard/ObserveStream",
                             request_serializer=guard_pb2.ObserveRequest.SerializeToString,
                             response_deserializer=guard_pb2.ObserveStreamResponse.FromString)
        big = guard_pb2.ObserveRequest(action=guard_pb2.Action(tool="t",
                                                               arguments_json="y" * (MAX + 100)))
        expect_code(lambda: fn(iter([big]), timeout=20), C.RESOURCE_EXHAUSTED,
                    ["observation #0", "--max-message-bytes"])
        # An empty stream is fine: nothing accepted.
        r = fn(iter([]), timeout=20)
        assert r.accepted == 0 and not r.HasField("last"), r
        bad = guard_pb2.ObserveRequest(action=guard_pb2.Action(tool=""))
        expect_code(lambda: fn(iter([bad]), timeout=20), C.INVALID_ARGUMENT,
                    ["observation #0", "action.tool"])
        good(d, ch)


if __name__ == "__main__":
    bgtest.main([test_bad_inputs, test_oversized_stream_message])
