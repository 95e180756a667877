"""Fleet mode over TLS (issue 15, item 1 of what was left): rediss:// to a
real redis-server listening only on a TLS port (Debian's redis-server 7 is
built with TLS), with certificates made here by the openssl CLI (a CA, a
server certificate for 127.0.0.1, a client certificate, a second CA that
signed nothing of Redis's).

- two daemons over TLS with AUTH (requirepass) converge bit-identically,
  with client certificates required (tls-auth-clients yes);
- a sidecar whose --fleet-ca is the wrong CA: "certificate verify failed"
  in its log, Status not connected; it keeps serving locally (Evaluate and
  Observe), its lag grows and `on_stale: deny` denies;
- client certificates required and none given: a clear error naming the
  refusal, not connected;
- start-up errors: rediss:// without --fleet-ca; a CA file that is no PEM
  (named); --fleet-ca with redis://; a key file readable by others.
Run with /usr/bin/python3 (ctest sets the environment)."""
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_fleet as tf  # noqa: E402
from test_fleet import ev, obs  # noqa: E402
import bgtest  # noqa: E402
from bgtest import Daemon, guard_pb2, wait_for  # noqa: E402

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
PASSWORD = "s3cret-fleet-password"


def sh(*args, cwd):
    subprocess.run(list(args), cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certs(d):
    """ca (signs server and client), other-ca (signs nothing we use)."""
    for ca in ("ca", "other-ca"):
        sh(OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
           "-subj", "/CN=bayesguard test %s" % ca, "-keyout", ca + ".key", "-out", ca + ".crt",
           cwd=d)
    with open(os.path.join(d, "san.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    for who in ("server", "client"):
        sh(OPENSSL, "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=%s" % who,
           "-keyout", who + ".key", "-out", who + ".csr", cwd=d)
        sh(OPENSSL, "x509", "-req", "-in", who + ".csr", "-CA", "ca.crt", "-CAkey", "ca.key",
           "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", who + ".crt", cwd=d)
        os.chmod(os.path.join(d, who + ".key"), 0o600)
    with open(os.path.join(d, "password"), "w") as f:
        f.write(PASSWORD + "\n")
    os.chmod(os.path.join(d, "password"), 0o600)


class TlsRedis(tf.Redis):
    """redis-server on a TLS port only, clients must present a certificate
    signed by ca.crt, AUTH required."""

    def __init__(self, tmp, certs):
        super().__init__(tmp)
        self.certs = certs

    def start(self):
        c = self.certs
        self.log = open(os.path.join(self.tmp, "redis-tls-%d.log" % time.monotonic_ns()), "wb")
        self.proc = subprocess.Popen(
            [tf.REDIS, "--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1",
             "--tls-cert-file", os.path.join(c, "server.crt"),
             "--tls-key-file", os.path.join(c, "server.key"),
             "--tls-ca-cert-file", os.path.join(c, "ca.crt"),
             "--tls-auth-clients", "yes", "--requirepass", PASSWORD,
             "--save", "", "--appendonly", "no", "--dir", self.tmp],
            stdout=self.log, stderr=subprocess.STDOUT)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError("redis-server exited %s: %s" % (
                    self.proc.returncode, open(self.log.name, "rb").read()[-400:]))
            return b"Ready to accept connections" in open(self.log.name, "rb").read()
        wait_for(up, 10, "redis-server (TLS) on port %d" % self.port)
        return self


def tls_sidecar(tmp, name, pol, redis, ca="ca.crt", client=True, extra=()):
    certs = os.path.join(tmp, "certs")
    args = ["--fleet-password-file", os.path.join(certs, "password"),
            "--fleet-ca", os.path.join(certs, ca)]
    if client:
        args += ["--fleet-cert", os.path.join(certs, "client.crt"),
                 "--fleet-key", os.path.join(certs, "client.key")]
    data = os.path.join(tmp, "data-" + name)
    os.makedirs(data, exist_ok=True)
    return Daemon(policies=pol, args=["--data-dir", data, "--fleet",
                                      "rediss://127.0.0.1:%d/fleet" % redis.port] + args +
                  list(extra))


def env():
    import tempfile
    tmp = tempfile.mkdtemp(prefix="bgfltls-")
    certs = os.path.join(tmp, "certs")
    os.makedirs(certs)
    make_certs(certs)
    return tmp


def status(d):
    return d.call("Status", guard_pb2.StatusRequest()).fleet


def test_two_sidecars_converge_over_tls_with_auth_and_client_certs():
    tmp = env()
    r = TlsRedis(tmp, os.path.join(tmp, "certs")).start()
    try:
        pol = tf.policies(tmp)
        with tls_sidecar(tmp, "a", pol, r) as a, tls_sidecar(tmp, "b", pol, r) as b:
            wait_for(lambda: status(a).connected and status(b).connected, 20,
                     "both sidecars connected over TLS")
            counts = {"u0": 0, "u1": 0, "u2": 0}
            for i in range(300):
                s = "u%d" % (i % 3)
                counts[s] += 1
                (a, b)[i % 2].call("Observe", obs(s, i % 5 == 0))
            bounds = tf.converged([a, b], counts, timeout=60)
            assert status(a).shipped == 150 and status(b).applied == 150, (status(a), status(b))
            # a restart of Redis drops the links: both reconnect (backoff) over TLS
            r.stop()
            r.start()
            for i in range(30):
                counts["u0"] += 1
                a.call("Observe", obs("u0", False))
            tf.converged([a, b], counts, timeout=60)
            print("TLS + AUTH + client certificates: 330 observations over 2 sidecars "
                  "converged bit-identically (bounds %s), reconnected after a Redis restart"
                  % bounds)
    finally:
        r.stop()
        shutil.rmtree(tmp, ignore_errors=True)


FRESH = tf.FRESH


def test_wrong_ca_refused_serves_locally_and_fails_closed():
    tmp = env()
    r = TlsRedis(tmp, os.path.join(tmp, "certs")).start()
    try:
        pol = tf.policies(tmp)
        with open(os.path.join(pol, "fresh.yaml"), "w") as f:
            f.write(FRESH)
        with tls_sidecar(tmp, "w", pol, r, ca="other-ca.crt") as w:
            wait_for(lambda: "certificate verify failed" in w.log(), 20,
                     "the verify failure in the log")
            line = [x for x in w.log().splitlines() if "certificate verify failed" in x][0]
            assert "rediss://127.0.0.1:%d" % r.port in line, line
            assert "unable to get local issuer certificate" in line or \
                "self-signed" in line or "self signed" in line, line
            st = status(w)
            assert not st.connected, st
            # serves locally: Observe acknowledged (queued), Evaluate answers
            w.call("Observe", obs("x", False))
            assert status(w).pending_out == 1
            assert ev(w, "x").observations == 1
            # the lag grows; on_stale: deny applies past max_lag 300ms
            wait_for(lambda: w.evaluate(guard_pb2.EvaluateRequest(
                action=guard_pb2.Action(tool="f"),
                context=guard_pb2.Context(session="x"))).fleet_stale, 10, "stale")
            v = w.evaluate(guard_pb2.EvaluateRequest(action=guard_pb2.Action(tool="f"),
                                                     context=guard_pb2.Context(session="x")))
            assert v.decision == guard_pb2.DENY and v.fleet_lag_ms > 300, v
            assert r.proc.poll() is None
            print("wrong CA: %s" % line.split("fleet: ", 1)[-1])
    finally:
        r.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def test_client_certificate_required_and_missing():
    tmp = env()
    r = TlsRedis(tmp, os.path.join(tmp, "certs")).start()
    try:
        pol = tf.policies(tmp)
        with tls_sidecar(tmp, "n", pol, r, client=False) as n:
            wait_for(lambda: "rediss://127.0.0.1:%d:" % r.port in n.log(), 20,
                     "the refusal in the log")
            line = [x for x in n.log().splitlines()
                    if "rediss://127.0.0.1:%d:" % r.port in x][0]
            assert "certificate required" in line or "alert" in line, line
            assert not status(n).connected
            print("no client certificate: %s" % line.split("fleet: ", 1)[-1])
    finally:
        r.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def start_error(args, data, pol):
    bgtest.require_daemon()
    out = subprocess.run([bgtest.DAEMON, "--policies", pol, "--plugins", bgtest.PLUGIN_DIR,
                          "--listen", "127.0.0.1:0", "--data-dir", data] + args,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0, out
    return out.stderr


def test_start_errors_name_the_file():
    tmp = env()
    try:
        pol = tf.policies(tmp)
        data = os.path.join(tmp, "data")
        os.makedirs(data)
        certs = os.path.join(tmp, "certs")
        url = "rediss://127.0.0.1:1/fleet"
        e = start_error(["--fleet", url], data, pol)
        assert "needs --fleet-ca" in e, e
        e = start_error(["--fleet", url, "--fleet-ca", os.path.join(certs, "password")],
                        data, pol)
        assert "--fleet-ca %s" % os.path.join(certs, "password") in e and "PEM" in e, e
        e = start_error(["--fleet", "redis://127.0.0.1:1/fleet", "--fleet-ca",
                         os.path.join(certs, "ca.crt")], data, pol)
        assert "rediss://" in e, e
        os.chmod(os.path.join(certs, "client.key"), 0o644)
        e = start_error(["--fleet", url, "--fleet-ca", os.path.join(certs, "ca.crt"),
                         "--fleet-cert", os.path.join(certs, "client.crt"),
                         "--fleet-key", os.path.join(certs, "client.key")], data, pol)
        assert "chmod 600" in e, e
        e = start_error(["--fleet", url, "--fleet-ca", os.path.join(certs, "ca.crt"),
                         "--fleet-cert", os.path.join(certs, "client.crt")], data, pol)
        assert "go together" in e, e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    bgtest.main([test_start_errors_name_the_file,
                 test_two_sidecars_converge_over_tls_with_auth_and_client_certs,
                 test_wrong_ca_refused_serves_locally_and_fails_closed,
                 test_client_certificate_required_and_missing])
