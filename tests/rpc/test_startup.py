"""bayesguardd's process contract: flags and --config, exit 2 with a clear
message for every startup error (bad flag, missing or invalid policies,
address in use), SIGHUP reloads, and `make run`'s exact command line
serves an Evaluate with the repository's default policies."""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import bgtest  # noqa: E402
from bgtest import Daemon, grpc, guard_pb2  # noqa: E402

POL = bgtest.rpc_policies()


def run(*args, timeout=30, cwd=None):
    return subprocess.run([bgtest.DAEMON] + list(args), capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def test_flags():
    bgtest.require_daemon()
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith("bayesguardd "), r
    r = run("--help")
    assert r.returncode == 0 and "--listen" in r.stdout and "--drain-timeout-ms" in r.stdout
    r = run("--bogus")
    assert r.returncode == 2 and "--bogus" in r.stderr, r
    r = run("--listen", "127.0.0.1:0", "--plugins", bgtest.PLUGIN_DIR)
    assert r.returncode == 2 and "--policies" in r.stderr, r
    r = run("--policies", POL, "--plugins", bgtest.PLUGIN_DIR, "--cq-threads", "zero")
    assert r.returncode == 2 and "--cq-threads" in r.stderr, r
    r = run("--policies", POL, "--plugins", bgtest.PLUGIN_DIR, "--sampler-sessions", "0")
    assert r.returncode == 2 and "--sampler-sessions 0" in r.stderr and "[1, " in r.stderr, r
    r = run("--policies", POL, "--plugins", bgtest.PLUGIN_DIR, "--log-level", "loud")
    assert r.returncode == 2 and "--log-level" in r.stderr, r
    r = run("--policies", POL, "--plugins", bgtest.PLUGIN_DIR, "stray")
    assert r.returncode == 2 and "stray" in r.stderr, r


def test_invalid_policies_and_addresses():
    tmp = tempfile.mkdtemp(prefix="bgt-start-")
    try:
        bad = os.path.join(tmp, "bad")
        os.mkdir(bad)
        with open(os.path.join(bad, "p.yaml"), "w") as f:
            f.write("apiVersion: bayesguard/v1\nkind: GuardPolicy\nmetadata: {name: p}\n"
                    "spec:\n  match: {tools: [x]}\n  model: {plugin: bernoulli}\n"
                    "  estimator: {plugin: iid}\n  threshold: 7\n")
        r = run("--listen", "127.0.0.1:0", "--policies", bad, "--plugins", bgtest.PLUGIN_DIR)
        assert r.returncode == 2 and "p.yaml:8:" in r.stderr and "threshold" in r.stderr, r
        # --check validates the same way and serves nothing.
        r = run("--check", "--policies", bad, "--plugins", bgtest.PLUGIN_DIR)
        assert r.returncode == 1 and "p.yaml:8:" in r.stdout, r
        r = run("--check", "--policies", POL, "--plugins", bgtest.PLUGIN_DIR)
        assert r.returncode == 0 and "rpc-test" in r.stdout, r
        r = run("--listen", "127.0.0.1:0", "--policies", os.path.join(tmp, "nope"),
                "--plugins", bgtest.PLUGIN_DIR)
        assert r.returncode == 2 and "nope" in r.stderr, r
        r = run("--listen", "not-an-address", "--policies", POL, "--plugins", bgtest.PLUGIN_DIR)
        assert r.returncode == 2 and "not-an-address" in r.stderr, r
        # Address in use: a second daemon on the first one's port and socket.
        with Daemon(policies=POL, unix=True) as d:
            r = run("--listen", d.addrs[0], "--policies", POL, "--plugins", bgtest.PLUGIN_DIR)
            assert r.returncode == 2 and d.addrs[0] in r.stderr, r
            r = run("--listen", d.addrs[1], "--policies", POL, "--plugins", bgtest.PLUGIN_DIR)
            assert r.returncode == 2 and d.addrs[1] in r.stderr, r
            # The first daemon is unharmed.
            assert d.health("").status == bgtest.health_pb2.HealthCheckResponse.SERVING
            assert d.health("", i=1).status == bgtest.health_pb2.HealthCheckResponse.SERVING
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_config_file():
    tmp = tempfile.mkdtemp(prefix="bgt-cfg-")
    try:
        cfg = os.path.join(tmp, "bg.yaml")
        ready = os.path.join(tmp, "ready")
        with open(cfg, "w") as f:
            f.write("listen: [\"127.0.0.1:0\", \"unix:%s/c.sock\"]\npolicies: %s\nplugins: %s\n"
                    "ready_file: %s\ncq_threads: 1\ndrain_timeout_ms: 5000\nsampler_sessions: 8\n"
                    "log_level: warn\n" % (tmp, POL, bgtest.PLUGIN_DIR, ready))
        p = subprocess.Popen([bgtest.DAEMON, "--config", cfg], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
        try:
            bgtest.wait_for(lambda: os.path.exists(ready) or p.poll() is not None, 30,
                            "the ready file")
            addrs = open(ready).read().split()
            assert len(addrs) == 2 and addrs[1] == "unix:%s/c.sock" % tmp, addrs
            d = Daemon(policies=POL)
            d.addrs = addrs
            v = d.evaluate(guard_pb2.EvaluateRequest(action=guard_pb2.Action(tool="rpc_a")),
                           i=1)
            assert v.policy == "rpc-test", v
            d.cleanup()
            p.send_signal(signal.SIGTERM)
            out, _ = p.communicate(timeout=30)
            assert p.returncode == 0, out
            assert "info" not in out, "log_level: warn from the config file ignored:\n" + out
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        with open(cfg, "a") as f:
            f.write("colour: blue\n")
        r = run("--config", cfg)
        assert r.returncode == 2 and "bg.yaml:9:" in r.stderr and "colour" in r.stderr, r
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_sighup_reloads():
    tmp = tempfile.mkdtemp(prefix="bgt-hup-")
    try:
        shutil.copy(os.path.join(POL, "rpc.yaml"), tmp)
        with Daemon(policies=tmp, args=["--no-watch"]) as d:
            rev0 = d.call("Status", guard_pb2.StatusRequest()).revision
            path = os.path.join(tmp, "rpc.yaml")
            text = open(path).read()
            with open(path, "w") as f:
                f.write(text.replace("threshold: 0.99", "threshold: 0.98"))
            d.send_signal(signal.SIGHUP)
            st = bgtest.wait_for(
                lambda: (lambda s: s if s.revision != rev0 else None)(
                    d.call("Status", guard_pb2.StatusRequest())), 20, "the SIGHUP reload")
            assert st.reload.last_trigger == "sighup", st.reload
            v = d.evaluate(guard_pb2.EvaluateRequest(action=guard_pb2.Action(tool="rpc_a")))
            assert v.threshold == 0.98 and v.revision == st.revision, v
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# Arguments the shipped policies' spec.features read.
SHIPPED_ARGS = {"payments": '{"amount": 100, "payee_is_new": false}', "shell": '{"cmd": "ls"}'}


def test_make_run_command_line():
    """The Makefile's `run` target: ./build/daemon/bayesguardd --listen
    127.0.0.1:50051 --policies policies --plugins build/plugins — run from
    the repository root, with an ephemeral port instead of 50051."""
    bgtest.require_daemon()
    tools = bgtest.policy_tools(bgtest.default_policies(), with_features=True)
    if not tools:
        print("skip: no default policies in %s yet" % bgtest.default_policies())
        sys.exit(bgtest.SKIP)
    log = tempfile.NamedTemporaryFile(prefix="bgt-run-", suffix=".log", delete=False)
    p = subprocess.Popen([bgtest.DAEMON, "--listen", "127.0.0.1:0", "--policies", "policies",
                          "--plugins", os.path.relpath(bgtest.PLUGIN_DIR, bgtest.SOURCE_DIR)],
                         cwd=bgtest.SOURCE_DIR, stdout=log, stderr=subprocess.STDOUT)
    try:
        def serving():
            if p.poll() is not None:
                raise AssertionError("exited %d:\n%s" % (p.returncode, open(log.name).read()))
            m = re.search(r"serving on (127\.0\.0\.1:\d+)", open(log.name).read())
            return m.group(1) if m else None
        addr = bgtest.wait_for(serving, 30, "'serving on' in the log")
        # The hint is the next line main() logs after the server reports its
        # address; under ASan it can land a moment after "serving on".
        try:
            bgtest.wait_for(lambda: "bayesguard eval --addr %s" % addr in open(log.name).read(),
                            10, "the how-to-query hint in the log")
        except AssertionError as e:
            raise AssertionError("%s:\n%s" % (e, open(log.name).read()))
        d = Daemon()
        d.addrs = [addr]
        # The shipped policies key sessions by the caller's identity, which a
        # plain TCP listener cannot tell: each refuses, naming itself and the
        # fix, rather than sharing one "" session among every caller.
        for name, tool, nf in tools:
            msg = bgtest.expect_code(lambda: d.evaluate(guard_pb2.EvaluateRequest(
                action=guard_pb2.Action(tool=tool, arguments_json=SHIPPED_ARGS.get(name, "{}")),
                context=guard_pb2.Context(session="run"))), grpc.StatusCode.FAILED_PRECONDITION,
                ["policy %s keys sessions by peer.identity" % name,
                 "cannot tell who is calling (use a unix socket or mTLS)"])
            print("  %s -> FAILED_PRECONDITION (%s)" % (tool, msg[:60]))
        v = d.evaluate(guard_pb2.EvaluateRequest(action=guard_pb2.Action(tool="zz_unguarded")))
        assert v.decision == guard_pb2.DENY and v.policy == "default-deny", v
        d.cleanup()
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=30) == 0, open(log.name).read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.unlink(log.name)


if __name__ == "__main__":
    bgtest.main([test_flags, test_invalid_policies_and_addresses, test_config_file,
                 test_sighup_reloads, test_make_run_command_line])
