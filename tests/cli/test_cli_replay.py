"""`bayesguard replay` reads each line with jansson and sends it as an
ObserveRequest: every field reaches the request (checked against a
stand-in Guard server here that records what it receives), `arguments` as
jansson's compact encoding of the same JSON value.

It refuses a malformed line before anything is sent,
naming FILE:LINE:COLUMN for text that is not JSON (jansson's message) and
FILE:LINE plus the field and what it expects for a field of the wrong
type. Every case is the first non-empty line of its file, after blank
lines (so line counting is checked too); no daemon runs: the address is a
socket that does not exist, and a parse error must stop the replay before
any call is made. Run with /usr/bin/python3 (ctest sets the environment)."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import bgtest  # noqa: E402

# (line, what stderr must contain after "bad.jsonl:3")
CASES = [
    # not JSON: line and column (of the offending token's end), jansson's text
    ('{"tool": "t", "features": [1, 2,]}', ":33: unexpected token near ']'"),
    ('{"tool": "t', ":11: premature end of input"),
    ('{"tool": "t"} x', ":15: end of file expected near 'x'"),
    ('{"tool": "t", "tool": "u"}', ":20: duplicate object key near '\"tool\"'"),
    ('{"tool": "t", "value": 1e999}', ":28: real number overflow"),
    ('{"tool": "t", "value": NaN}', ":26: invalid token near 'NaN'"),
    ('{"tool": "caf\xe9"}', ":13: unable to decode byte 0xe9"),
    # JSON, but not an observation: the field, what it expects, what it got
    ('[1]', ": expected a JSON object, got an array"),
    ('"x"', ": expected a JSON object, got a string"),
    ('{"tool": "t", "features": [1, "x"]}', ': "features"[1]: expected a number, got a string'),
    ('{"tool": "t", "features": 1}', ': "features": expected an array of numbers, got a number'),
    ('{"tool": "t", "attributes": {"who": 3}}',
     ': "attributes"."who": expected a string, got a number'),
    ('{"tool": "t", "harmed": 1}', ': "harmed": expected true or false, got a number'),
    ('{"tool": "t", "value": "2"}', ': "value": expected a number, got a string'),
    ('{"tool": "t", "id": null}', ': "id": expected a string, got null'),
    ('{"tool": "t", "feature": [1]}', ': unknown key "feature"; allowed: tool, features,'),
    ('{"features": []}', ': missing "tool"'),
    ('{"tool": ""}', ': missing "tool"'),
]


def replay(path):
    return subprocess.run([bgtest.CLI, "replay", path, "--session", "s", "--addr",
                           "unix:" + os.path.join(os.path.dirname(path), "no-daemon.sock")],
                          capture_output=True, timeout=60)


def test_malformed_lines():
    tmp = tempfile.mkdtemp(prefix="bgcli-")
    try:
        path = os.path.join(tmp, "bad.jsonl")
        for line, want in CASES:
            with open(path, "wb") as f:
                f.write(b"\n  \n" + line.encode("latin-1") + b"\n")
            r = replay(path)
            err = r.stderr.decode("utf-8", "replace")
            assert r.returncode == 1, (line, r.returncode, err)
            first = err.splitlines()[0] if err else ""
            assert first.startswith(path + ":3") and want in first, (line, want, err)
            assert "0 observations before line 3 were stored" in err, (line, err)
            assert b"replayed 0 observations" in r.stdout, (line, r.stdout)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class Recorder:
    """A grpcio server answering Guard/Observe; keeps every request."""

    def __init__(self, sock):
        from concurrent import futures
        self.reqs = []
        req_t, resp_t = bgtest.METHODS["Observe"]

        def observe(req, ctx):
            self.reqs.append(req)
            return resp_t(policy="p", session=req.context.session, observations=len(self.reqs))

        handler = bgtest.grpc.method_handlers_generic_handler("bayesguard.v1.Guard", {
            "Observe": bgtest.grpc.unary_unary_rpc_method_handler(
                observe, request_deserializer=req_t.FromString,
                response_serializer=resp_t.SerializeToString)})
        self.server = bgtest.grpc.server(futures.ThreadPoolExecutor(max_workers=1))
        self.server.add_generic_rpc_handlers((handler,))
        self.server.add_insecure_port("unix:" + sock)
        self.server.start()


def test_fields_reach_the_request():
    tmp = tempfile.mkdtemp(prefix="bgcli-")
    rec = Recorder(os.path.join(tmp, "guard.sock"))
    try:
        path = os.path.join(tmp, "good.jsonl")
        with open(path, "w") as f:
            f.write('{"tool": "pay", "features": [3.25, 1, -2e-3], "harmed": true, '
                    '"value": 2.5, "id": "call-17", "attributes": {"user": "ops\\u00e9", '
                    '"z": "", "a": "1"}, "arguments": {"to": "acct 9", "n": [1, 0.5, '
                    'null, true], "s": "\\u00e9\\n"}}\n'
                    '\n'
                    '{"tool": "pay2", "arguments_json": "{not checked}", "session": "other", '
                    '"policy": "payments"}\n'
                    '{"tool": "pay3", "arguments": 0.1}\n')
        r = subprocess.run([bgtest.CLI, "replay", path, "--session", "s", "--policy", "dflt",
                            "--addr", "unix:" + os.path.join(tmp, "guard.sock")],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert "replayed 3 observations" in r.stdout, r.stdout
        a, b, c = rec.reqs
        assert a.action.tool == "pay" and list(a.action.features) == [3.25, 1.0, -2e-3], a
        assert a.harmed and a.WhichOneof("measured") == "value" and a.value == 2.5, a
        assert a.action.id == "call-17" and a.context.session == "s" and a.policy == "dflt", a
        assert dict(a.action.attributes) == {"user": "ops\u00e9", "z": "", "a": "1"}, a
        # the same value, compact; key order kept
        assert a.action.arguments_json == \
            '{"to":"acct 9","n":[1,0.5,null,true],"s":"\u00e9\\n"}', a.action.arguments_json
        assert json.loads(a.action.arguments_json) == {"to": "acct 9", "n": [1, 0.5, None, True],
                                                       "s": "\u00e9\n"}
        assert b.action.tool == "pay2" and b.action.arguments_json == "{not checked}", b
        assert b.context.session == "other" and b.policy == "payments" and not b.harmed, b
        assert b.WhichOneof("measured") is None and not b.action.features, b
        assert float(c.action.arguments_json) == 0.1, c.action.arguments_json
    finally:
        rec.server.stop(None)
        shutil.rmtree(tmp, ignore_errors=True)


def test_usage():
    r = subprocess.run([bgtest.CLI, "replay", "x.jsonl"], capture_output=True, timeout=60)
    assert r.returncode == 2 and b"--session S" in r.stderr, r


if __name__ == "__main__":
    if not os.access(bgtest.CLI, os.X_OK):
        print("skip: %s not built" % bgtest.CLI)
        sys.exit(bgtest.SKIP)
    bgtest.main([test_fields_reach_the_request, test_malformed_lines, test_usage])
