"""`bayesguard mcp-proxy` driven on its stdin by hand (a misbehaving
client), the SDK's McpServer (tests/mcp/server.mjs) behind it and the real
daemon beside it.

Checked, in one session: a line that is not JSON gets -32700 (id null) and
the proxy keeps serving; a batch (removed in MCP 2025-06-18) gets -32600
and is not forwarded; a line over --max-message gets -32600 naming the
limit; JSON that is no JSON-RPC message gets -32600; then initialize is
answered by the real server (protocol 2025-06-18), a tools/call sent as a
notification is dropped (never reaches the server), one without a name
gets -32602, a denied call's refusal carries its integer id digit for
digit (2^53 + 1: never made a double), an allowed call with a non-ASCII
string id comes back with it; a response to no request of ours is passed
on without an answer; EOF on stdin ends the
proxy with 0 within the server's grace and nothing more is written.
Run with /usr/bin/python3 (ctest sets the environment)."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mcptest  # noqa: E402
from mcptest import Proxy, bgtest  # noqa: E402

MAX = 4096


def check_error(m, code, id_, *contains):
    assert m.get("id", "absent") == id_, m
    assert m["error"]["code"] == code, m
    for c in contains:
        assert c in m["error"]["message"], (c, m)


def run(addr, ran):
    px = Proxy(addr, "--session", "stdio", "--max-message", str(MAX),
               env=dict(os.environ, MCP_SIDE_EFFECTS=ran))
    px.send("this is not json")
    check_error(px.recv(), -32700, None, "Parse error", "not JSON")
    px.send('[{"jsonrpc":"2.0","id":1,"method":"ping"}]')
    check_error(px.recv(), -32600, None, "batches", "2025-06-18")
    px.send(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "ping",
                        "params": {"pad": "x" * (MAX + 10)}}))
    check_error(px.recv(), -32600, None, "more than %d bytes" % MAX, "--max-message")
    px.send('{"jsonrpc":"1.0","id":3,"method":"ping"}')
    check_error(px.recv(), -32600, 3, '"jsonrpc" must be "2.0"')

    # Still serving: the real server answers initialize through the proxy.
    px.send(json.dumps({"jsonrpc": "2.0", "id": 4, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "hand-client", "version": "0"}}}))
    init = px.recv()
    assert init["id"] == 4, init
    assert init["result"]["protocolVersion"] == "2025-06-18", init
    assert init["result"]["serverInfo"]["name"] == "bg-test-server", init
    px.send('{"jsonrpc":"2.0","method":"notifications/initialized"}')

    # tools/call as a notification: no answer is possible, and it must not
    # reach the server unguarded: dropped (the next reply is for id 5).
    px.send('{"jsonrpc":"2.0","method":"tools/call","params":{"name":"delete_all",'
            '"arguments":{"path":"/"}}}')
    px.send('{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"arguments":{}}}')
    check_error(px.recv(), -32602, 5, "params.name")

    big = 9007199254740993  # > 2^53: exact only if the proxy never makes it a double
    px.send('{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"delete_all",'
            '"arguments":{"path":"/"}}}' % big)
    raw = px.recv_raw()
    assert (b'"id":%d,' % big) in raw, raw
    assert json.loads(raw)["result"]["isError"] is True, raw

    # A response from the client to a request nobody made: passed on, the
    # server ignores it, nobody answers it; the next call still works.
    px.send('{"jsonrpc":"2.0","id":"nobody-asked","result":{}}')
    px.send(json.dumps({"jsonrpc": "2.0", "id": "call-\u00e9", "method": "tools/call",
                        "params": {"name": "echo", "arguments": {"text": "string id"}}}))
    m = px.recv()
    assert m["id"] == "call-\u00e9", m
    assert m["result"]["content"] == [{"type": "text", "text": "echo: string id"}], m
    return px


def main():
    mcptest.require_sdk()
    with bgtest.Daemon(policies=mcptest.POLICIES, unix=True) as d:
        px = None

        def test_misbehaving_client_then_eof():
            nonlocal px
            ran = os.path.join(d.tmp, "ran.jsonl")
            px = run(d.addrs[-1], ran)
            t0 = time.monotonic()
            px.p.stdin.close()
            rc = px.p.wait(timeout=15)
            err = px.p.stderr.read().decode()
            assert rc == 0, (rc, err)
            # (The SDK server would ignore it anyway; a hand-written one might not.)
            assert "dropped a tools/call sent as a notification" in err, err
            assert time.monotonic() - t0 < 8, time.monotonic() - t0
            rest = px.p.stdout.read()
            assert px.buf + rest == b"", px.buf + rest
            # Only the allowed echo ran: neither denied call nor the dropped
            # tools/call notification reached the server.
            ran_list = mcptest.side_effects(ran)
            assert ran_list == [{"tool": "echo", "args": {"text": "string id"}}], ran_list

        try:
            bgtest.main([test_misbehaving_client_then_eof])
        finally:
            if px is not None and px.p.poll() is None:
                px.p.kill()


if __name__ == "__main__":
    main()
