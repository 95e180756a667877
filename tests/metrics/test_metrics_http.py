"""bayesguardd's Prometheus endpoint (--metrics-listen) over real sockets.

- A run of Evaluate calls (allow, deny, escalate, shadow, on_error: allow,
  INVALID_ARGUMENT, NOT_FOUND), Observes, an unknown method and two Reload
  RPCs (one live, one refused), then a scrape: the exposition text parses
  with a strict parser (every line; every family typed once, its samples
  together; label values unescaped; histogram buckets cumulative with
  _count = +Inf) and every counter has its exact value; a policy's counts
  continue across the reload that replaced its policy object.
- HTTP: GET and HEAD /metrics (Content-Type, Content-Length, Connection:
  close, the server closes), / (index), 404, 405 with Allow, 400 for
  malformed requests and a missing Host, 505, 431 for a head over 8 KiB.
- Clients cannot stall it: a client that never sends (or stops halfway) is
  closed after --metrics-timeout-ms while other scrapes are served; beyond
  64 open connections a new one is closed at once.
- SIGTERM: the endpoint reports bayesguard_draining 1 during the lame duck,
  then closes (an idle connection sees EOF, new ones are refused) and the
  daemon exits 0.
- Startup errors: an address in use or not an address -> exit 2 naming
  --metrics-listen and the address; the settings also come from --config
  (metrics_listen, metrics_timeout_ms, range-checked).
Run with /usr/bin/python3 (ctest sets the environment)."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import bgtest  # noqa: E402
from bgmetrics import (get, http, metrics_addr, open_idle, parse, scrape, value,  # noqa: E402
                       wait_closed)
from bgtest import Daemon, expect_code, grpc, guard_pb2  # noqa: E402

C = grpc.StatusCode
TIMEOUT_MS = 3000  # --metrics-timeout-ms of the daemons below

POLICIES = """\
apiVersion: bayesguard/v1
kind: GuardPolicy
metadata: {name: m-allow}
spec:
  match: {tools: [m_allow]}
  model: {plugin: bernoulli, config: {grid_size: 20}}
  estimator: {plugin: noniid, delta: 0.05, prior_floor: 0.001}
  threshold: 0.99
  outcomes: open
---
apiVersion: bayesguard/v1
kind: GuardPolicy
metadata: {name: m-deny}
spec:
  match: {tools: [m_deny]}
  model: {plugin: bernoulli, config: {rates: [0.01, 0.5, 0.9]}}
  estimator: {plugin: iid}
  threshold: 0.05
  over_threshold: deny
---
apiVersion: bayesguard/v1
kind: GuardPolicy
metadata: {name: m-escalate}
spec:
  match: {tools: [m_escalate]}
  model: {plugin: bernoulli, config: {rates: [0.01, 0.5, 0.9]}}
  estimator: {plugin: iid}
  threshold: 0.05
  over_threshold: escalate
---
apiVersion: bayesguard/v1
kind: GuardPolicy
metadata: {name: m-shadow}
spec:
  match: {tools: [m_shadow]}
  model: {plugin: bernoulli, config: {rates: [0.01, 0.5, 0.9]}}
  estimator: {plugin: iid}
  threshold: 0.05
  mode: shadow
---
apiVersion: bayesguard/v1
kind: GuardPolicy
metadata: {name: fail-allow}
spec:
  match: {tools: [fail_allow]}
  model: {plugin: rpc_fail}
  estimator: {plugin: iid}
  threshold: 0.5
  on_error: allow
  features: from_request
"""

# ------------------------------------------------------------ fixtures

def fixture_dirs():
    """(policy dir, plugin dir: the built-in plugins + tests/rpc's failing model)."""
    pol, plug = tempfile.mkdtemp(prefix="bgt-mpol-"), bgtest.rpc_fixture_plugin_dir()
    with open(os.path.join(pol, "m.yaml"), "w") as f:
        f.write(POLICIES)
    return pol, plug


def ev(d, tool, features=(), ch=None):
    return d.evaluate(guard_pb2.EvaluateRequest(
        action=guard_pb2.Action(tool=tool, features=list(features)),
        context=guard_pb2.Context(session="s1", agent="a1")), ch=ch)


def observe(d, tool, harmed, ch=None):
    return d.call("Observe", guard_pb2.ObserveRequest(
        action=guard_pb2.Action(tool=tool), context=guard_pb2.Context(session="s1"),
        harmed=harmed), ch=ch)


# ------------------------------------------------------------ tests

def test_counters_exact():
    pol, plug = fixture_dirs()
    t0 = time.time()
    try:
        with Daemon(policies=pol, plugins=plug, args=[
                "--no-watch", "--metrics-listen", "127.0.0.1:0",
                "--metrics-timeout-ms", str(TIMEOUT_MS)]) as d:
            addr = metrics_addr(d)
            before = scrape(addr)  # every live policy has its series from the start
            assert value(before, "bayesguard_evaluations_total", policy="m-deny",
                         decision="deny") == 0
            ch = d.channel()
            D = guard_pb2
            for _ in range(3):
                assert ev(d, "m_allow", ch=ch).decision == D.ALLOW
            for _ in range(2):
                assert ev(d, "m_deny", ch=ch).decision == D.DENY
            assert ev(d, "m_escalate", ch=ch).decision == D.ESCALATE
            v = ev(d, "m_shadow", ch=ch)
            assert v.decision == D.ALLOW and v.shadow, v
            v = ev(d, "fail_allow", [-1.0], ch=ch)
            assert v.decision == D.ALLOW and v.on_error_allowed, v
            expect_code(lambda: ev(d, "", ch=ch), C.INVALID_ARGUMENT)
            v = ev(d, "nope", ch=ch)  # no policy matches: the built-in catch-all denies
            assert v.decision == D.DENY and v.policy == "default-deny", v
            expect_code(lambda: d.evaluate(D.EvaluateRequest(action=D.Action(tool="m_allow"),
                                                             policy="no-such"), ch=ch),
                        C.NOT_FOUND)
            expect_code(lambda: d.raw("/bayesguard.v1.Guard/Nope", b"", ch=ch), C.UNIMPLEMENTED)
            observe(d, "m_allow", True, ch=ch)
            observe(d, "m_allow", False, ch=ch)
            observe(d, "m_allow", False, ch=ch)
            r = d.call("Reload", guard_pb2.ReloadRequest(), ch=ch)
            assert r.ok, r
            with open(os.path.join(pol, "m.yaml"), "a") as f:  # a second, live set ...
                f.write("---\napiVersion: bayesguard/v1\nkind: GuardPolicy\n"
                        "metadata: {name: m-new}\nspec:\n  match: {tools: [m_new]}\n"
                        "  model: {plugin: bernoulli}\n  estimator: {plugin: iid}\n"
                        "  threshold: 0.5\n")
            r = d.call("Reload", guard_pb2.ReloadRequest(), ch=ch)
            assert r.ok, r
            with open(os.path.join(pol, "bad.yaml"), "w") as f:  # ... and a refused one
                f.write("apiVersion: bayesguard/v1\nkind: GuardPolicy\nmetadata: {name: x}\n")
            r = d.call("Reload", guard_pb2.ReloadRequest(), ch=ch)
            assert not r.ok, r
            # The reloads built new policy objects: the counts continue.
            assert ev(d, "m_allow", ch=ch).decision == D.ALLOW
            st = d.call("Status", guard_pb2.StatusRequest(), ch=ch)
            bgtest.wait_for(lambda: d.call("Status", guard_pb2.StatusRequest(),
                                           ch=ch).in_flight == 1, 10, "calls to finish")

            # The client has the Status reply before the server has finished
            # that call (and counted it): scrape until nothing is in flight.
            def settled():
                s = scrape(addr)
                return s if value(s, "bayesguard_in_flight_calls") == 0 else None
            m = bgtest.wait_for(settled, 10, "a scrape with no call in flight")
            ev_total = "bayesguard_evaluations_total"
            want = {("m-allow", "allow"): 4, ("m-allow", "deny"): 0, ("m-deny", "deny"): 2,
                    ("m-escalate", "escalate"): 1, ("m-shadow", "allow"): 1,
                    ("m-shadow", "deny"): 0, ("fail-allow", "allow"): 1, ("m-new", "allow"): 0,
                    ("default-deny", "deny"): 1}
            for (p, dec), n in want.items():
                assert value(m, ev_total, policy=p, decision=dec) == n, (p, dec, n)
            assert value(m, "bayesguard_shadow_allowed_total", policy="m-shadow") == 1
            assert value(m, "bayesguard_shadow_allowed_total", policy="m-deny") == 0
            assert value(m, "bayesguard_on_error_allowed_total", policy="fail-allow") == 1
            assert value(m, "bayesguard_on_error_allowed_total", policy="m-allow") == 0
            obs = "bayesguard_observations_total"
            assert value(m, obs, policy="m-allow", harmed="true") == 1
            assert value(m, obs, policy="m-allow", harmed="false") == 2
            assert value(m, obs, policy="m-deny", harmed="true") == 0
            h = "bayesguard_evaluation_duration_seconds"
            assert m[h]["type"] == "histogram"
            for p, n in (("m-allow", 4), ("m-deny", 2), ("fail-allow", 1), ("m-new", 0)):
                assert value(m, h + "_count", policy=p) == n, p
                assert value(m, h + "_bucket", policy=p, le="+Inf") == n, p
            assert 0 < value(m, h + "_sum", policy="m-allow") < 10
            g = "bayesguard_grpc_handled_total"
            E, O, R, S = ("/bayesguard.v1.Guard/" + x for x in
                          ("Evaluate", "Observe", "Reload", "Status"))
            assert value(m, g, method=E, code="OK") == 10
            assert value(m, g, method=E, code="INVALID_ARGUMENT") == 1
            assert value(m, g, method=E, code="NOT_FOUND") == 1
            assert value(m, g, method=O, code="OK") == 3
            assert value(m, g, method=R, code="OK") == 3  # a refused reload is ok=false
            assert value(m, g, method="unknown", code="UNIMPLEMENTED") == 1
            assert value(m, g, method=S, code="OK") >= 2
            assert value(m, "bayesguard_reloads_total", result="ok") == 2
            assert value(m, "bayesguard_reloads_total", result="refused") == 1
            assert value(m, "bayesguard_policies") == 6
            assert value(m, "bayesguard_policy_revision_info", revision=st.revision) == 1
            assert len(m["bayesguard_policy_revision_info"]["samples"]) == 1
            assert value(m, "bayesguard_stored_observations") == 3
            assert value(m, "bayesguard_sessions") >= 1
            assert value(m, "bayesguard_engine_bytes") > 0
            assert value(m, "bayesguard_in_flight_calls") == 0
            assert value(m, "bayesguard_draining") == 0
            # no sampled policy: the posterior search and the per-context
            # search never ran, no context is remembered (their values
            # with one: tests/gfn/test_gfn_archive_wire.py,
            # tests/gfn/test_gfn_context_wire.py)
            for fam, typ in (("bayesguard_sampler_search_runs_total", "counter"),
                             ("bayesguard_sampler_search_evaluations_total", "counter"),
                             ("bayesguard_sampler_search_cpu_seconds_total", "counter"),
                             ("bayesguard_sampler_search_archive_size", "gauge"),
                             ("bayesguard_sampler_context_search_rounds_total", "counter"),
                             ("bayesguard_sampler_context_search_contexts_total", "counter"),
                             ("bayesguard_sampler_context_search_hypotheses_total", "counter"),
                             ("bayesguard_sampler_context_search_evaluations_total", "counter"),
                             ("bayesguard_sampler_context_search_cpu_seconds_total", "counter"),
                             ("bayesguard_sampler_contexts_remembered", "gauge")):
                assert m[fam]["type"] == typ and value(m, fam) == 0, (fam, m.get(fam))
            ver = subprocess.run([bgtest.DAEMON, "--version"], capture_output=True, text=True)
            assert value(m, "bayesguard_build_info", version=ver.stdout.split()[1]) == 1
            start = value(m, "bayesguard_start_time_seconds")
            last = value(m, "bayesguard_last_reload_success_timestamp_seconds")
            assert t0 - 5 <= start <= last <= time.time() + 5, (t0, start, last)
            for name, f in m.items():
                assert name.startswith("bayesguard_") and f["help"], name
                if f["type"] == "counter":
                    assert all(v >= 0 for _, _, v in f["samples"]), name
            # Counters never go down between scrapes.
            for name, f in before.items():
                if f["type"] != "counter":
                    continue
                for n, l, v in f["samples"]:
                    assert value(m, n, **l) >= v, (n, l)
    finally:
        shutil.rmtree(pol, ignore_errors=True)
        shutil.rmtree(plug, ignore_errors=True)


def test_http_behaviour():
    with Daemon(policies=bgtest.rpc_policies(), args=[
            "--metrics-listen", "127.0.0.1:0", "--metrics-timeout-ms", str(TIMEOUT_MS)]) as d:
        addr = metrics_addr(d)
        status, headers, body = get(addr, method="HEAD")
        assert status == 200 and body == b"" and int(headers["content-length"]) > 100, headers
        status, _, body = get(addr, "/metrics?name[]=x")  # the query string is ignored
        assert status == 200 and b"bayesguard_build_info" in body
        status, _, body = get(addr, "/")
        assert status == 200 and b"/metrics" in body, body
        status, _, body = get(addr, "/nope")
        assert status == 404 and b"/metrics" in body, (status, body)
        status, headers, _ = get(addr, method="POST")
        assert status == 405 and headers["allow"] == "GET, HEAD", (status, headers)
        status, _, _ = get(addr, method="DELETE")
        assert status == 405
        for raw in (b"GARBAGE\r\n\r\n", b"GET /metrics\r\n\r\n", b"G(T /metrics HTTP/1.1\r\n\r\n",
                    b"GET /metrics HTTP/1.1\r\n\r\n",  # no Host
                    b"GET /metrics HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
                    b"GET /metrics HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
                    b"GET /metr\x00ics HTTP/1.1\r\nHost: x\r\n\r\n",
                    b"GET  HTTP/1.1\r\nHost: x\r\n\r\n"):  # an empty target
            status, _, body = http(addr, raw)
            assert status == 400 and body.startswith(b"bad request"), (raw, status, body)
        status, _, _ = http(addr, b"GET /metrics HTTP/2.0\r\nHost: x\r\n\r\n")
        assert status == 505, status
        status, _, body = http(addr, b"GET /metrics HTTP/1.0\r\n\r\n")  # no Host needed
        assert status == 200 and b"bayesguard_draining" in body
        status, _, _ = http(addr, b"GET /metrics HTTP/1.1\nHost: x\n\n")  # bare LF
        assert status == 200
        big = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n"
        status, _, body = http(addr, big)
        assert status == 431 and b"8 KiB" in body, (status, body)
        assert scrape(addr)  # still serving


def still_open(s):
    """Whether the server has not closed s (nothing to read yet, no EOF)."""
    s.setblocking(False)
    try:
        return s.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except ConnectionResetError:
        return False
    finally:
        s.setblocking(True)


def test_slow_clients_and_connection_cap():
    # A timeout no scrape comes near even on a loaded machine: "served while
    # they idle" is then a fact about events (the idle ones are still open
    # after the scrapes), not about how fast five scrapes ran.
    slow_ms = 8000
    with Daemon(policies=bgtest.rpc_policies(), args=[
            "--metrics-listen", "127.0.0.1:0", "--metrics-timeout-ms", str(slow_ms)]) as d:
        addr = metrics_addr(d)
        silent = open_idle(addr)
        halfway = open_idle(addr)
        halfway.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        for _ in range(5):  # others are served while they idle
            scrape(addr)
        took = time.monotonic() - t0
        if took < slow_ms / 1000.0 * 0.9:  # else the timeout may rightly have closed them
            assert still_open(silent) and still_open(halfway), \
                "an idle client was closed before its timeout (%.2f s)" % took
        for s in (silent, halfway):
            waited = wait_closed(s, 60) + (time.monotonic() - t0)
            assert waited >= slow_ms / 1000.0 * 0.5, waited
            s.close()
    # The cap: 64 open connections; the 65th is closed at once. A daemon
    # whose timeout (60 s) no step of this check can come near on a loaded
    # machine, so "still open" and "closed at once" cannot be confused.
    with Daemon(policies=bgtest.rpc_policies(), args=[
            "--metrics-listen", "127.0.0.1:0", "--metrics-timeout-ms", "60000"]) as d:
        addr = metrics_addr(d)
        idle = [open_idle(addr) for _ in range(64)]
        extra = open_idle(addr)  # accepted after them: the kernel queues in order
        took = wait_closed(extra, 30.0)
        extra.close()
        assert took < 30.0, took
        for s in idle:
            s.setblocking(False)
            try:
                assert s.recv(1) == b"", "an idle connection within the cap was closed"
                raise AssertionError("an idle connection within the cap was closed")
            except BlockingIOError:
                pass
            s.close()

        def served():  # refused at once until the daemon has seen them go
            try:
                return scrape(addr)
            except (AssertionError, IndexError, OSError):
                return None
        bgtest.wait_for(served, 30, "a scrape once the idle clients left")
        assert "connections open (the limit)" in d.log()


def test_drain_closes_the_endpoint():
    # A lame duck long enough to scrape in on a loaded machine (5 s), and a
    # metrics timeout (60 s) far beyond it: an idle client closed within
    # 30 s was closed by the drain, not by its own timeout.
    with Daemon(policies=bgtest.rpc_policies(), args=[
            "--metrics-listen", "127.0.0.1:0", "--drain-grace-ms", "5000",
            "--metrics-timeout-ms", "60000"]) as d:
        addr = metrics_addr(d)
        started = value(scrape(addr), "bayesguard_start_time_seconds")
        idle = open_idle(addr)
        t0 = time.monotonic()
        d.send_signal(signal.SIGTERM)
        bgtest.wait_for(lambda: value(scrape(addr), "bayesguard_draining") == 1, 10,
                        "bayesguard_draining 1 during the lame duck")
        took = wait_closed(idle, 40.0)
        idle.close()
        assert d.wait_exit(30) == 0, d.log_text_tail()
        assert took < 30.0, "the drain waited for the idle metrics client (%.1f s)" % took
        # Refused, as a rule. Another process may have been given the freed
        # port since (other tests run beside this one): only this daemon's
        # endpoint answering (its start time) is a failure.
        try:
            answer = parse(get(addr)[2].decode("utf-8", "replace"))
        except ConnectionRefusedError:
            answer = None
        except (OSError, AssertionError, IndexError, ValueError):
            answer = {}  # something else answered, not a metrics endpoint
        if answer is not None:
            assert "bayesguard_start_time_seconds" not in answer or \
                value(answer, "bayesguard_start_time_seconds") != started, \
                "the metrics port still accepts after exit"
            print("  the freed port %s was taken by another process" % addr)
        print("  idle metrics connection closed %.2f s after SIGTERM" % took)


def test_startup_errors_and_config():
    bgtest.require_daemon()
    pol = bgtest.rpc_policies()
    with Daemon(policies=pol, args=["--metrics-listen", "127.0.0.1:0"]) as d:
        addr = metrics_addr(d)
        r = subprocess.run([bgtest.DAEMON, "--listen", "127.0.0.1:0", "--policies", pol,
                            "--plugins", bgtest.PLUGIN_DIR, "--metrics-listen", addr],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and "--metrics-listen %s" % addr in r.stderr, r
        assert "in use" in r.stderr, r.stderr
        assert scrape(addr)  # the first daemon is unharmed
    for bad in ("nonsense", "127.0.0.1:99999", "127.0.0.1:"):
        r = subprocess.run([bgtest.DAEMON, "--listen", "127.0.0.1:0", "--policies", pol,
                            "--plugins", bgtest.PLUGIN_DIR, "--metrics-listen", bad],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and "--metrics-listen %s" % bad in r.stderr, r
    # The same settings from --config.
    tmp = tempfile.mkdtemp(prefix="bgt-mcfg-")
    try:
        cfg = os.path.join(tmp, "bg.yaml")
        with open(cfg, "w") as f:
            f.write("metrics_listen: 127.0.0.1:0\nmetrics_timeout_ms: 2000\n")
        with Daemon(policies=pol, args=["--config", cfg]) as d:
            assert value(scrape(metrics_addr(d)), "bayesguard_draining") == 0
        with open(cfg, "a") as f:
            f.write("metrics_timeout_ms: 1\n")
        r = subprocess.run([bgtest.DAEMON, "--policies", pol, "--plugins", bgtest.PLUGIN_DIR,
                            "--config", cfg], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and "metrics_timeout_ms" in r.stderr, r
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    bgtest.main([test_counters_exact, test_http_behaviour, test_slow_clients_and_connection_cap,
                 test_drain_closes_the_endpoint, test_startup_errors_and_config])
