"""bgtest — run the real bayesguardd in a temp dir and talk to it with grpcio.

Shared by every area's Python integration tests. The client side is
independent of the daemon's C code: messages come from `protoc --python_out`
modules generated at build time into ${CMAKE_BINARY_DIR}/python (env
BG_PYTHONPATH), calls go through grpcio's generic unary/stream callables.

    from bgtest import Daemon, guard_pb2
    with Daemon(policies=..., plugins=...) as d:
        v = d.evaluate(guard_pb2.EvaluateRequest(action=guard_pb2.Action(tool="t")))
    # leaving the block sends SIGTERM and asserts the daemon exited 0

Environment (set by ctest): BG_BUILD_DIR, BG_SOURCE_DIR, BG_PYTHONPATH,
BG_PLUGIN_DIR. Run with /usr/bin/python3 (Debian's, which has grpcio).
Every wait polls with a deadline; nothing sleeps and hopes.

Temporary directories: importing bgtest points tempfile at one directory of
its own (/tmp/bgt-run-*), so everything a test makes with tempfile.mkdtemp or
TemporaryDirectory lies under it; it is removed when the test process exits,
or kept and named on stderr when main() saw a test fail. (Before, each run
of the suite left ~35 directories in /tmp.)
"""
import atexit
import importlib.util
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

BUILD_DIR = os.environ.get("BG_BUILD_DIR", "")
SOURCE_DIR = os.environ.get("BG_SOURCE_DIR",
                            os.path.dirname(os.path.dirname(os.path.dirname(
                                os.path.abspath(__file__)))))
PYGEN = os.environ.get("BG_PYTHONPATH", os.path.join(BUILD_DIR, "python"))
PLUGIN_DIR = os.environ.get("BG_PLUGIN_DIR", os.path.join(BUILD_DIR, "plugins"))
DAEMON = os.path.join(BUILD_DIR, "daemon", "bayesguardd")
CLI = os.path.join(BUILD_DIR, "daemon", "bayesguard")
SKIP = 77

_TMP_ROOT = tempfile.mkdtemp(prefix="bgt-run-")
os.chmod(_TMP_ROOT, 0o711)  # call_as's other users reach the sockets under it, as in /tmp
tempfile.tempdir = _TMP_ROOT
_keep_tmp = False


def _remove_tmp_root():
    if _keep_tmp:
        print("bgtest: kept %s for the failed test's files" % _TMP_ROOT, file=sys.stderr)
        return
    shutil.rmtree(_TMP_ROOT, ignore_errors=True)


atexit.register(_remove_tmp_root)

try:
    import grpc  # noqa: E402
except ImportError:  # pragma: no cover - depends on the machine
    print("skip: python3-grpcio is not installed for", sys.executable)
    sys.exit(SKIP)

sys.path.insert(0, PYGEN)
try:
    from bayesguard.v1 import bench_pb2, guard_pb2  # noqa: E402,F401
except ImportError as e:
    print("skip: generated modules not found under %s (%s): build target bg_proto_python"
          % (PYGEN, e))
    sys.exit(SKIP)


def _load_health():
    # grpc/health/v1/health_pb2.py would be shadowed by grpcio's own `grpc`
    # package, so load it by path.
    path = os.path.join(PYGEN, "grpc", "health", "v1", "health_pb2.py")
    spec = importlib.util.spec_from_file_location("bg_health_pb2", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


health_pb2 = _load_health()

GUARD = "/bayesguard.v1.Guard/"
METHODS = {
    "Evaluate": (guard_pb2.EvaluateRequest, guard_pb2.Verdict),
    "Observe": (guard_pb2.ObserveRequest, guard_pb2.ObserveResponse),
    "Status": (guard_pb2.StatusRequest, guard_pb2.StatusResponse),
    "Reload": (guard_pb2.ReloadRequest, guard_pb2.ReloadResponse),
    "ListEscalations": (guard_pb2.ListEscalationsRequest, guard_pb2.ListEscalationsResponse),
    "ResolveEscalation": (guard_pb2.ResolveEscalationRequest, guard_pb2.Escalation),
    "AwaitDecision": (guard_pb2.AwaitDecisionRequest, guard_pb2.Verdict),
}


def require_daemon():
    """Exit 77 (skip) when the daemon binary was not built."""
    if not os.access(DAEMON, os.X_OK):
        print("skip: %s not built" % DAEMON)
        sys.exit(SKIP)


def default_policies():
    return os.path.join(SOURCE_DIR, "policies")


def rpc_policies():
    """The RPC tests' own small fixture set (tests/rpc/policies)."""
    return os.path.join(SOURCE_DIR, "tests", "rpc", "policies")


def rpc_fixture_plugin_dir():
    """A temp plugin dir (the caller removes it): the built-in plugins plus
    tests/rpc's failing model (bg_rpc_fail.so)."""
    fixture = os.environ.get("BG_RPC_FIXTURE_PLUGINS",
                             os.path.join(BUILD_DIR, "tests", "rpc", "plugins"))
    dst = tempfile.mkdtemp(prefix="bgt-plug-")
    for d in (PLUGIN_DIR, fixture):
        for f in os.listdir(d):
            if f.endswith(".so"):
                os.symlink(os.path.join(d, f), os.path.join(dst, f))
    return dst


def has_default_policies():
    d = default_policies()
    return os.path.isdir(d) and any(f.endswith((".yaml", ".yml")) for f in os.listdir(d))


def policy_tools(policy_dir=None, with_features=False):
    """[(policy name, a tool name its spec.match.tools covers)] for every
    policy document in the directory (globs made concrete); with_features:
    [(name, tool, n)] where n is the model's `config.features` count (0 when
    the model takes none)."""
    import yaml
    out = []
    d = policy_dir or default_policies()
    if not os.path.isdir(d):
        return out
    for f in sorted(os.listdir(d)):
        if not f.endswith((".yaml", ".yml")):
            continue
        with open(os.path.join(d, f)) as fh:
            for doc in yaml.safe_load_all(fh):
                if not isinstance(doc, dict):
                    continue
                name = (doc.get("metadata") or {}).get("name")
                tools = ((doc.get("spec") or {}).get("match") or {}).get("tools") or []
                if name and tools:
                    t = str(tools[0]).replace("*", "x").replace("?", "x")
                    if not with_features:
                        out.append((name, t))
                        continue
                    cfg = ((doc["spec"].get("model") or {}).get("config") or {})
                    nf = cfg.get("features", 0)
                    nf = len(nf) if isinstance(nf, list) else int(nf or 0)
                    out.append((name, t, nf))
    return out


def bandit_w(i, d):
    """The bandit plugin's id encoding: w_k = bit (d-1-k) of the id."""
    return [(i >> (d - 1 - k)) & 1 for k in range(d)]


def bandit_harm(x, i, d, theta, sigma):
    """P(reward > theta | arm x, w = bandit_w(i)) = 1 - Phi((theta - x.w)/sigma)."""
    m = sum(a * b for a, b in zip(x, bandit_w(i, d)))
    return 0.5 * math.erfc((theta - m) / (sigma * math.sqrt(2)))


def wait_for(pred, timeout, what, interval=0.02):
    """Poll pred() until it is truthy or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1f s waiting for %s" % (timeout, what))
        time.sleep(interval)


class Daemon:
    """One bayesguardd process in its own temp dir."""

    def __init__(self, policies=None, plugins=None, listen=("127.0.0.1:0",), unix=False,
                 args=(), start_timeout=30.0):
        # The temp dir is made when needed (a unix socket, or start()), so a
        # Daemon used only as a client of addresses set by hand leaves none.
        self.tmp = tempfile.mkdtemp(prefix="bgt-") if unix else None
        self.policies = policies if policies is not None else default_policies()
        self.plugins = plugins if plugins is not None else PLUGIN_DIR
        self.listen = list(listen)
        if unix:
            self.listen.append("unix:" + os.path.join(self.tmp, "bg.sock"))
        self.args = list(args)
        self.start_timeout = start_timeout
        self.proc = None
        self.addrs = []
        self.ready = None
        self.log_path = None
        self.channels = []

    # -- lifecycle
    def argv(self):
        a = [DAEMON]
        for l in self.listen:
            a += ["--listen", l]
        a += ["--policies", self.policies, "--plugins", self.plugins,
              "--ready-file", self.ready] + self.args
        return a

    def start(self):
        require_daemon()
        if self.tmp is None:
            self.tmp = tempfile.mkdtemp(prefix="bgt-")
        self.ready = os.path.join(self.tmp, "ready")
        self.log_path = os.path.join(self.tmp, "daemon.log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.argv(), stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=self.tmp)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("bayesguardd exited %s before serving:\n%s"
                                     % (self.proc.returncode, self.log()))
            return os.path.exists(self.ready)
        wait_for(ready, self.start_timeout, "the ready file")
        with open(self.ready) as f:
            self.addrs = [l.strip() for l in f if l.strip()]
        assert len(self.addrs) == len(self.listen), (self.addrs, self.listen)
        return self

    def log(self):
        if self.log_path is None:
            return ""
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=60.0):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("bayesguardd did not exit within %.0f s:\n%s"
                                 % (timeout, self.log()))

    def stop(self, sig=signal.SIGTERM, timeout=60.0, expect=0):
        """Signal the daemon and assert its exit code (0: drained cleanly)."""
        for ch in self.channels:
            ch.close()
        self.channels = []
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.wait_exit(timeout)
        self._log.close()
        self.proc = None
        if expect is not None and rc != expect:
            raise AssertionError("bayesguardd exited %d, expected %d:\n%s"
                                 % (rc, expect, self.log_text_tail()))
        return rc

    def log_text_tail(self, n=60):
        return "\n".join(self.log().splitlines()[-n:])

    def cleanup(self):
        for ch in self.channels:
            ch.close()
        self.channels = []
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, et, ev, tb):
        try:
            if self.proc is not None:
                self.stop(expect=None if et else 0)
        finally:
            if et is None:
                self.cleanup()
            else:
                sys.stderr.write("daemon log (%s):\n%s\n" % (self.log_path, self.log_text_tail()))
        return False

    # -- clients
    def channel(self, i=0):
        ch = grpc.insecure_channel(self.addrs[i])
        self.channels.append(ch)
        return ch

    def call(self, method, req, i=0, timeout=20.0, ch=None):
        """Unary Guard call by short name ("Evaluate"); returns the reply."""
        req_t, resp_t = METHODS[method]
        ch = ch or self.channel(i)
        fn = ch.unary_unary(GUARD + method, request_serializer=req_t.SerializeToString,
                            response_deserializer=resp_t.FromString)
        return fn(req, timeout=timeout)

    def evaluate(self, req, **kw):
        return self.call("Evaluate", req, **kw)

    def raw(self, path, data, i=0, timeout=20.0, ch=None):
        """Send raw bytes to any method; returns raw reply bytes."""
        ch = ch or self.channel(i)
        return ch.unary_unary(path)(data, timeout=timeout)

    def health(self, service="", i=0, ch=None, timeout=20.0):
        ch = ch or self.channel(i)
        fn = ch.unary_unary("/grpc.health.v1.Health/Check",
                            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                            response_deserializer=health_pb2.HealthCheckResponse.FromString)
        return fn(health_pb2.HealthCheckRequest(service=service), timeout=timeout)

    def ping(self, delay_ms=0, payload=b"", i=0, ch=None, timeout=20.0):
        ch = ch or self.channel(i)
        fn = ch.unary_unary("/bayesguard.v1.Bench/Ping",
                            request_serializer=bench_pb2.PingRequest.SerializeToString,
                            response_deserializer=bench_pb2.PingResponse.FromString)
        return fn(bench_pb2.PingRequest(delay_ms=delay_ms, payload=payload), timeout=timeout)

    def cli(self, *args, i=0, check=None):
        """Run `bayesguard CMD --addr <daemon> ARGS...`; returns CompletedProcess."""
        argv = [CLI, args[0], "--addr", self.addrs[i]] + list(args[1:])
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if check is not None and r.returncode != check:
            raise AssertionError("%s exited %d (expected %d)\nstdout:%s\nstderr:%s"
                                 % (" ".join(argv), r.returncode, check, r.stdout, r.stderr))
        return r


# One unary Guard call from another uid: argv = address, method path,
# request hex; prints "OK <reply hex>" or "ERR <CODE> <details>".
_CALL_AS = """
import sys
sys.path.insert(0, %r)
import grpc
call = grpc.insecure_channel(sys.argv[1]).unary_unary(sys.argv[2])
try:
    print("OK", call(bytes.fromhex(sys.argv[3]), timeout=20).hex())
except grpc.RpcError as e:
    print("ERR", e.code().name, e.details())
"""


def call_as(uid, gid, addr, method, req, reply_type, groups=()):
    """A unary bayesguard.v1.Guard call made by a process of another uid
    and gid (the test must run as root), with supplementary groups
    `groups`: (reply, None), or (None, (CODE name, details)) when the call
    failed with a gRPC status. The ids are set by setpriv(1) (util-linux)
    in the child, never by this process: it runs gRPC's threads, and
    subprocess's user=/group=/extra_groups= make Python fork() (not vfork),
    which runs gRPC's pthread_atfork handler; that handler joins gRPC's
    executor threads while this thread holds the GIL one of them may be
    waiting for — a deadlock seen under load (test_escalations hung in
    _fork_exec, gdb: __run_prefork_handlers -> pthread_join). A plain
    subprocess.run takes the vfork path, which runs no fork handlers."""
    ids = ["--reuid=%d" % uid, "--regid=%d" % gid]
    ids += ["--groups=" + ",".join(str(g) for g in groups)] if groups else ["--clear-groups"]
    r = subprocess.run(["setpriv"] + ids + [sys.executable, "-c", _CALL_AS % PYGEN, addr,
                                            "/bayesguard.v1.Guard/" + method,
                                            req.SerializeToString().hex()],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = r.stdout.strip()
    if out.startswith("OK"):
        return reply_type.FromString(bytes.fromhex(out[2:].strip())), None
    _, code, details = (out.split(" ", 2) + [""])[:3]
    return None, (code, details)



def expect_code(fn, code, contains=()):
    """Call fn(); assert it raises grpc.RpcError with `code` and a message
    containing every string of `contains`. Returns the message."""
    try:
        fn()
    except grpc.RpcError as e:
        assert e.code() == code, "expected %s, got %s: %s" % (code, e.code(), e.details())
        msg = e.details() or ""
        for c in contains:
            assert c in msg, "message %r lacks %r" % (msg, c)
        return msg
    raise AssertionError("expected %s, the call succeeded" % code)


def main(tests):
    """Run test functions in order; print a line per test; exit 1 on failure."""
    failed = 0
    for t in tests:
        t0 = time.monotonic()
        try:
            t()
            print("ok   %-40s %.2fs" % (t.__name__, time.monotonic() - t0), flush=True)
        except SystemExit:
            raise
        except Exception:  # report and go on
            failed += 1
            import traceback
            print("FAIL %s" % t.__name__, flush=True)
            traceback.print_exc()
    print("%d/%d passed" % (len(tests) - failed, len(tests)))
    if failed:
        global _keep_tmp
        _keep_tmp = True
    sys.exit(1 if failed else 0)
