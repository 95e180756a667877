"""mcptest — helpers of the MCP proxy tests (tests/mcp/test_mcp_*.py).

The SDK and the two .mjs scripts live in $BG_MCP_NODE_DIR (the fixture
mcp_npm_ci put them there with npm ci). run_client runs client.mjs, whose
SDK Client spawns `bayesguard mcp-proxy ... -- node server.mjs`, and returns
what it printed (one JSON object) plus the tools the server ran (server.mjs
appends one line per call to a side-effect file).
"""
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import bgtest  # noqa: E402,F401

HERE = os.path.dirname(os.path.abspath(__file__))
POLICIES = os.path.join(HERE, "policies")
NODE_DIR = os.environ.get("BG_MCP_NODE_DIR",
                          os.path.join(bgtest.BUILD_DIR, "tests", "mcp", "node"))
NODE = shutil.which("node") or "/usr/bin/node"
SERVER = os.path.join(NODE_DIR, "server.mjs")


def require_sdk():
    sdk = os.path.join(NODE_DIR, "node_modules", "@modelcontextprotocol", "sdk", "package.json")
    assert os.path.exists(sdk), ("the MCP SDK is not installed in %s: run the fixture test "
                                 "mcp_npm_ci (ctest -R mcp)" % NODE_DIR)
    assert os.access(bgtest.CLI, os.X_OK), "%s not built" % bgtest.CLI


def side_effects(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


class Run:
    """One client.mjs run: .out (its JSON), .ran (server side effects)."""

    def __init__(self, out, ran, stderr):
        self.out, self.ran, self.stderr = out, ran, stderr


def run_client(scenario, proxy_args, calls=(), env=None, timeout=90, background=False):
    tmp = tempfile.mkdtemp(prefix="bgt-mcp-")
    e = dict(os.environ)
    e.update({
        "BG_CLI": bgtest.CLI,
        "BG_PROXY_ARGS": json.dumps(list(proxy_args)),
        "BG_EXIT_FILE": os.path.join(tmp, "exit"),
        "MCP_SIDE_EFFECTS": os.path.join(tmp, "ran.jsonl"),
        "BG_CALLS": json.dumps([list(c) for c in calls]),
    })
    e.update(env or {})
    argv = [NODE, os.path.join(NODE_DIR, "client.mjs"), scenario]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e,
                         cwd=tmp, text=True)
    if background:
        p.tmp = tmp
        return p
    return finish(p, tmp, timeout)


def finish(p, tmp, timeout=90):
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise AssertionError("client.mjs did not finish in %d s; stderr:\n%s" % (timeout, err))
    assert p.returncode == 0, "client.mjs exited %d; stderr:\n%s" % (p.returncode, err)
    ran = side_effects(os.path.join(tmp, "ran.jsonl"))
    shutil.rmtree(tmp, ignore_errors=True)
    return Run(json.loads(out), ran, err)


def text_of(result):
    return "\n".join(c.get("text", "") for c in result.get("content", []))


class Proxy:
    """The proxy with a hand-driven client: send() lines, recv() replies."""

    def __init__(self, addr, *flags, env=None):
        argv = [bgtest.CLI, "mcp-proxy", "--guard", addr] + list(flags) + \
            ["--", NODE, SERVER]
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=env)
        self.buf = b""

    def send(self, line):
        self.p.stdin.write(line if isinstance(line, bytes) else line.encode())
        self.p.stdin.write(b"\n")
        self.p.stdin.flush()

    def recv_raw(self, timeout=20):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            assert left > 0, "no reply from the proxy in %d s" % timeout
            r, _, _ = select.select([self.p.stdout], [], [], left)
            if r:
                chunk = os.read(self.p.stdout.fileno(), 65536)
                if not chunk:
                    self.p.wait(timeout=10)
                    raise AssertionError("the proxy closed its stdout (exit %s); stderr:\n%s"
                                         % (self.p.returncode, self.p.stderr.read().decode()))
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def recv(self, timeout=20):
        return json.loads(self.recv_raw(timeout))
