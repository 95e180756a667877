"""mTLS on the TCP listeners, against the real daemon: certificates made at
test time with the openssl CLI (two CAs, a server certificate, clients with
a SPIFFE ID, a DNS name, or from the other CA). A client without a
certificate, or with one the other CA signed, cannot connect; a good one
can, and its SPIFFE ID is its identity (the decision log's peer); the
config file's identities map narrows roles per identity; rewriting the
certificate files (client CA and server certificate) is picked up without
a restart and without a failed call on an established connection."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import bgtest  # noqa: E402
from bgtest import Daemon, expect_code, grpc, guard_pb2  # noqa: E402

POL = bgtest.rpc_policies()
DENIED = grpc.StatusCode.PERMISSION_DENIED
AGENT_ID = "spiffe://example.org/agent"
OPS_ID = "spiffe://example.org/ops"
SERVER_NAME = "bayesguard.test"


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True)


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", name + ".key", "-out", name + ".crt", "-subj", "/CN=" + name,
            "-days", "2", cwd=d)


def make_cert(d, name, ca, san, cn=None):
    """name.key/name.crt signed by ca, with subjectAltName san (or none)."""
    req = ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
           "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + (cn or name)]
    if san:
        req += ["-addext", "subjectAltName=" + san]
    openssl(*req, cwd=d)
    openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt", "-CAkey", ca + ".key",
            "-CAcreateserial", "-days", "2", "-copy_extensions", "copy", "-out", name + ".crt",
            cwd=d)


def reissue(d, name, ca, san):
    """A new certificate for name's existing key (a rotation keeps the key
    so the pair on disk always matches)."""
    openssl("req", "-new", "-key", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + name,
            "-addext", "subjectAltName=" + san, cwd=d)
    openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt", "-CAkey", ca + ".key",
            "-CAcreateserial", "-days", "2", "-copy_extensions", "copy", "-out",
            name + ".crt.new", cwd=d)
    os.rename(os.path.join(d, name + ".crt.new"), os.path.join(d, name + ".crt"))


def read(d, name):
    with open(os.path.join(d, name), "rb") as f:
        return f.read()


class Pki:
    def __init__(self):
        if shutil.which("openssl") is None:
            print("skip: no openssl CLI")
            sys.exit(bgtest.SKIP)
        self.d = tempfile.mkdtemp(prefix="bgtls-")
        make_ca(self.d, "ca")
        make_ca(self.d, "other-ca")
        make_cert(self.d, "server", "ca", "DNS:%s,IP:127.0.0.1" % SERVER_NAME)
        make_cert(self.d, "agent", "ca", "URI:" + AGENT_ID)
        make_cert(self.d, "ops", "ca", "URI:" + OPS_ID)
        make_cert(self.d, "reporter", "ca", "DNS:reporter.example.org")
        make_cert(self.d, "cn-only", "ca", None, cn="cn-only-client")
        make_cert(self.d, "stranger", "other-ca", "URI:" + AGENT_ID)
        shutil.copy(os.path.join(self.d, "ca.crt"), os.path.join(self.d, "clients-ca.crt"))

    def path(self, name):
        return os.path.join(self.d, name)

    def args(self, refresh=60):
        return ["--tls-cert", self.path("server.crt"), "--tls-key", self.path("server.key"),
                "--tls-client-ca", self.path("clients-ca.crt"), "--tls-refresh-s", str(refresh)]

    def channel(self, addr, client=None, ca="ca.crt"):
        creds = grpc.ssl_channel_credentials(
            root_certificates=read(self.d, ca),
            private_key=read(self.d, client + ".key") if client else None,
            certificate_chain=read(self.d, client + ".crt") if client else None)
        return grpc.secure_channel(addr, creds,
                                   options=[("grpc.ssl_target_name_override", SERVER_NAME)])

    def cleanup(self):
        shutil.rmtree(self.d, ignore_errors=True)


def ev_req(session="s1"):
    return guard_pb2.EvaluateRequest(action=guard_pb2.Action(tool="t"),
                                     context=guard_pb2.Context(session=session))


def evaluate(ch, req=None, timeout=10):
    fn = ch.unary_unary(bgtest.GUARD + "Evaluate",
                        request_serializer=guard_pb2.EvaluateRequest.SerializeToString,
                        response_deserializer=guard_pb2.Verdict.FromString)
    return fn(req or ev_req(), timeout=timeout)


def status(ch, timeout=10):
    fn = ch.unary_unary(bgtest.GUARD + "Status",
                        request_serializer=guard_pb2.StatusRequest.SerializeToString,
                        response_deserializer=guard_pb2.StatusResponse.FromString)
    return fn(guard_pb2.StatusRequest(), timeout=timeout)


def served_serial(pki, addr):
    """The serial of the certificate the daemon presents to a new connection."""
    hs = subprocess.run(["openssl", "s_client", "-connect", addr, "-alpn", "h2",
                         "-cert", pki.path("agent.crt"), "-key", pki.path("agent.key"),
                         "-CAfile", pki.path("ca.crt")],
                        stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    x = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=hs.stdout,
                       capture_output=True, timeout=30)
    return x.stdout.decode().strip()


def file_serial(pki, name):
    return subprocess.run(["openssl", "x509", "-noout", "-serial", "-in", pki.path(name)],
                          capture_output=True, text=True, check=True).stdout.strip()


def cannot_connect(ch):
    expect_code(lambda: evaluate(ch, timeout=5), grpc.StatusCode.UNAVAILABLE)
    ch.close()


def test_client_certificates_required_and_identity():
    pki = PKI
    log = pki.path("decisions.jsonl")
    with Daemon(policies=POL, listen=["agent,health@127.0.0.1:0"],
                args=pki.args() + ["--decision-log", log]) as d:
        addr = d.addrs[0]
        cannot_connect(pki.channel(addr))                # no client certificate
        cannot_connect(pki.channel(addr, "stranger"))    # signed by the other CA
        ch = pki.channel(addr, "agent")
        assert evaluate(ch, ev_req("by-agent")).policy == "rpc-test"
        # Other identities: a DNS SAN, else the CN.
        for client, session in (("reporter", "by-dns"), ("cn-only", "by-cn")):
            c = pki.channel(addr, client)
            evaluate(c, ev_req(session))
            c.close()
        ch.close()
    with open(log) as f:
        peers = {json.loads(l)["session"]: json.loads(l)["peer"] for l in f}
    assert peers == {"by-agent": AGENT_ID, "by-dns": "reporter.example.org",
                     "by-cn": "cn-only-client"}, peers


def test_identities_map_narrows_roles():
    pki = PKI
    cfg = pki.path("bg.yaml")
    with open(cfg, "w") as f:
        f.write('identities: {"%s": [agent, health], "%s": [operator], "*": []}\n'
                % (AGENT_ID, OPS_ID))
    with Daemon(policies=POL, args=pki.args() + ["--config", cfg]) as d:
        addr = d.addrs[0]
        agent = pki.channel(addr, "agent")
        evaluate(agent)
        expect_code(lambda: status(agent), DENIED,
                    ["Status needs the operator role", "identity '%s' is allowed agent, health"
                     % AGENT_ID])
        ops = pki.channel(addr, "ops")
        assert status(ops).revision
        expect_code(lambda: evaluate(ops), DENIED, ["Evaluate needs the agent role"])
        other = pki.channel(addr, "reporter")   # not listed: '*' gives it nothing
        expect_code(lambda: evaluate(other), DENIED, ["allowed nothing", "entry '*'"])
        for ch in (agent, ops, other):
            ch.close()


def test_rotation_without_restart_or_failed_calls():
    pki = PKI
    with Daemon(policies=POL, listen=["agent@127.0.0.1:0"], args=pki.args(refresh=1)) as d:
        addr = d.addrs[0]
        ch = pki.channel(addr, "agent")
        evaluate(ch)
        cannot_connect(pki.channel(addr, "stranger"))
        old_serial = file_serial(pki, "server.crt")
        assert served_serial(pki, addr) == old_serial
        errors, calls, stop = [], [0], threading.Event()

        def keep_calling():
            while not stop.is_set():
                try:
                    evaluate(ch)
                    calls[0] += 1
                except grpc.RpcError as e:
                    errors.append("%s: %s" % (e.code(), e.details()))
        t = threading.Thread(target=keep_calling)
        t.start()
        try:
            # Rotate: the client CA file now trusts the other CA too, and the
            # server certificate is reissued (same key, new serial).
            tmp = pki.path("clients-ca.crt.new")
            with open(tmp, "wb") as f:
                f.write(read(pki.d, "ca.crt") + read(pki.d, "other-ca.crt"))
            os.rename(tmp, pki.path("clients-ca.crt"))
            reissue(pki.d, "server", "ca", "DNS:%s,IP:127.0.0.1" % SERVER_NAME)

            def stranger_gets_in():
                c = pki.channel(addr, "stranger")
                try:
                    return evaluate(c, timeout=3).policy == "rpc-test"
                except grpc.RpcError:
                    return False
                finally:
                    c.close()
            bgtest.wait_for(stranger_gets_in, 30, "the rewritten client CA to be used",
                            interval=0.2)
            new_serial = file_serial(pki, "server.crt")
            assert new_serial != old_serial
            bgtest.wait_for(lambda: served_serial(pki, addr) == new_serial, 30,
                            "the reissued server certificate to be served", interval=0.2)
            # New connections with the old CA's clients still work.
            c = pki.channel(addr, "agent")
            evaluate(c)
            c.close()
        finally:
            stop.set()
            t.join()
        assert not errors, errors[:5]
        assert calls[0] > 0
        ch.close()
        assert "names no roles" not in d.log()


PKI = None

if __name__ == "__main__":
    bgtest.require_daemon()
    PKI = Pki()
    try:
        bgtest.main([test_client_certificates_required_and_identity,
                     test_identities_map_narrows_roles,
                     test_rotation_without_restart_or_failed_calls])
    finally:
        PKI.cleanup()
