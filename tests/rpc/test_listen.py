"""Listeners as a trust boundary, against the real daemon over real sockets:
roles per listener (PERMISSION_DENIED naming the role), a bare --listen
serving every role with its warning, unix socket files with the asked mode
and group (never world-writable, even for a moment), the caller's uid read
with SO_PEERCRED reaching the decision log, a ?uids= allow-list, and
Bench/Ping only with --enable-bench."""
import json
import os
import stat
import sys
import tempfile
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import bgtest  # noqa: E402
from bgtest import Daemon, expect_code, grpc, guard_pb2  # noqa: E402

POL = bgtest.rpc_policies()
DENIED = grpc.StatusCode.PERMISSION_DENIED


def ev_req(session="s1"):
    return guard_pb2.EvaluateRequest(action=guard_pb2.Action(tool="t"),
                                     context=guard_pb2.Context(session=session, agent="a1"))


def obs_req(session="s1", receipt=b""):
    """rpc-test takes outcomes with the receipt of the ALLOW (outcomes:
    receipts); role refusals come before the receipt is looked at."""
    return guard_pb2.ObserveRequest(action=guard_pb2.Action(tool="t"),
                                    context=guard_pb2.Context(session=session), harmed=False,
                                    receipt=receipt)


def sock_dir():
    return tempfile.mkdtemp(prefix="bgl-")


def test_agent_listener_refuses_the_other_roles():
    tmp = sock_dir()
    agent = os.path.join(tmp, "agent.sock")
    rep = os.path.join(tmp, "reporter.sock")
    with Daemon(policies=POL, listen=["agent,health@unix:" + agent, "reporter@unix:" + rep,
                                      "operator@127.0.0.1:0"]) as d:
        # agent,health: Evaluate and health work; Observe, Status, Reload refused.
        v = d.evaluate(ev_req(), i=0)
        assert v.policy == "rpc-test" and v.receipt, v
        assert d.health("", i=0).status == bgtest.health_pb2.HealthCheckResponse.SERVING
        for method, req, role in (("Observe", obs_req(), "reporter"),
                                  ("Status", guard_pb2.StatusRequest(), "operator"),
                                  ("Reload", guard_pb2.ReloadRequest(), "operator")):
            expect_code(lambda: d.call(method, req, i=0), DENIED,
                        ["%s needs the %s role" % (method, role), "serves agent, health"])
        # ObserveStream is a reporter method too.
        ch = d.channel(0)
        stream = ch.stream_unary(bgtest.GUARD + "ObserveStream",
                                 request_serializer=guard_pb2.ObserveRequest.SerializeToString,
                                 response_deserializer=guard_pb2.ObserveResponse.FromString)
        expect_code(lambda: stream(iter([obs_req()]), timeout=20), DENIED,
                    ["ObserveStream needs the reporter role"])
        # reporter: Observe works, Evaluate and health refused.
        d.call("Observe", obs_req(receipt=v.receipt), i=1)
        expect_code(lambda: d.evaluate(ev_req(), i=1), DENIED,
                    ["Evaluate needs the agent role", "serves reporter"])
        expect_code(lambda: d.health("", i=1), DENIED, ["needs the health role"])
        # operator over TCP: Status works, Evaluate refused.
        assert d.call("Status", guard_pb2.StatusRequest(), i=2).revision
        expect_code(lambda: d.evaluate(ev_req(), i=2), DENIED, ["Evaluate needs the agent role"])
        # Unknown methods stay UNIMPLEMENTED whatever the roles.
        expect_code(lambda: d.raw("/no.Such/Method", b"", i=0), grpc.StatusCode.UNIMPLEMENTED)
        assert "names no roles" not in d.log(), d.log()
    os.rmdir(tmp)


def test_bare_listen_serves_every_role_and_warns():
    with Daemon(policies=POL) as d:
        v = d.evaluate(ev_req())
        d.call("Observe", obs_req(receipt=v.receipt))
        d.call("Status", guard_pb2.StatusRequest())
        assert d.health("").status == bgtest.health_pb2.HealthCheckResponse.SERVING
        log = d.log()
        assert "names no roles, so it serves every role" in log, log
        assert "can report outcomes" in log, log


def test_bad_roles_are_startup_errors():
    for spec, words in (("admin@127.0.0.1:0", ["unknown role 'admin'"]),
                        ("@127.0.0.1:0", ["no role before '@'"]),
                        ("agent@127.0.0.1:0?uids=1", ["unix: listeners only"])):
        d = Daemon(policies=POL, listen=[spec])
        try:
            d.start()
            raise AssertionError("started with --listen %s" % spec)
        except AssertionError as e:
            assert "exited 2" in str(e), str(e)
            for w in words:
                assert w in str(e), (w, str(e))
        finally:
            if d.proc is not None and d.proc.poll() is None:
                d.stop(expect=None)
            d.cleanup()


def test_socket_mode_and_group():
    tmp = sock_dir()
    path = os.path.join(tmp, "agent.sock")
    gid = os.getgid()
    with Daemon(policies=POL, listen=["agent@unix:" + path],
                args=["--socket-mode", "0640", "--socket-group", str(gid)]) as d:
        st = os.stat(path)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o640, oct(st.st_mode)
        assert st.st_gid == gid
        d.evaluate(ev_req())
        # No private directory is left next to the socket.
        assert sorted(os.listdir(tmp)) == ["agent.sock"], os.listdir(tmp)
    # The default mode: owner and group only.
    with Daemon(policies=POL, listen=["agent@unix:" + path]) as d:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660, oct(os.stat(path).st_mode)
    assert not os.path.exists(path), "the socket file outlived the daemon"
    # A file at the path is an error, and is left as it was.
    with open(path, "w") as f:
        f.write("not a socket")
    d = Daemon(policies=POL, listen=["agent@unix:" + path])
    try:
        d.start()
        raise AssertionError("started over a regular file")
    except AssertionError as e:
        assert "exited 2" in str(e) and "link into place" in str(e), str(e)
    finally:
        d.cleanup()
    with open(path) as f:
        assert f.read() == "not a socket"
    os.remove(path)
    assert sorted(os.listdir(tmp)) == [], os.listdir(tmp)
    # A world-writable mode is refused.
    d = Daemon(policies=POL, listen=["agent@unix:" + path], args=["--socket-mode", "0666"])
    try:
        d.start()
        raise AssertionError("started with --socket-mode 0666")
    except AssertionError as e:
        assert "exited 2" in str(e) and "world-writable" in str(e), str(e)
    finally:
        d.cleanup()
    os.rmdir(tmp)


def test_socket_never_world_writable_while_binding():
    """Watch the directory while the daemon binds: the path never shows up
    with the world-write bit (nor before its final mode)."""
    tmp = sock_dir()
    path = os.path.join(tmp, "agent.sock")
    seen, stop = [], threading.Event()

    def watch():
        while not stop.is_set():
            try:
                seen.append(stat.S_IMODE(os.lstat(path).st_mode))
            except FileNotFoundError:
                pass
    t = threading.Thread(target=watch)
    t.start()
    try:
        with Daemon(policies=POL, listen=["agent@unix:" + path],
                    args=["--socket-mode", "0600"]) as d:
            d.evaluate(ev_req())
    finally:
        stop.set()
        t.join()
    assert seen, "the watcher never saw the socket"
    assert set(seen) == {0o600}, sorted(set(oct(m) for m in seen))
    os.rmdir(tmp)


def test_peer_uid_reaches_the_decision_log():
    tmp = sock_dir()
    path = os.path.join(tmp, "agent.sock")
    log = os.path.join(tmp, "decisions.jsonl")
    with Daemon(policies=POL, listen=["agent@unix:" + path, "agent@127.0.0.1:0"],
                args=["--decision-log", log]) as d:
        d.evaluate(ev_req("over-unix"), i=0)
        d.evaluate(ev_req("over-tcp"), i=1)
    with open(log) as f:
        lines = {json.loads(l)["session"]: json.loads(l) for l in f}
    assert lines["over-unix"]["peer"] == "uid:%d" % os.getuid(), lines["over-unix"]
    assert lines["over-tcp"]["peer"] == "", lines["over-tcp"]
    os.remove(log)
    os.rmdir(tmp)


def test_uid_allow_list():
    tmp = sock_dir()
    me = os.getuid()
    other = 4242424 if me != 4242424 else 4242425
    ok = os.path.join(tmp, "ok.sock")
    no = os.path.join(tmp, "no.sock")
    with Daemon(policies=POL, listen=["agent@unix:%s?uids=%d,%d" % (ok, other, me),
                                      "agent@unix:%s?uids=%d" % (no, other)]) as d:
        assert d.evaluate(ev_req(), i=0).policy == "rpc-test"
        expect_code(lambda: d.evaluate(ev_req(), i=1), DENIED,
                    ["uid %d may not call" % me, "admits uids %d only" % other])
        # Refused calls change nothing: the allowed socket still serves.
        assert d.evaluate(ev_req(), i=0).policy == "rpc-test"
    os.rmdir(tmp)


def test_identities_narrow_uids():
    """identities applies to unix identities too: uid:N may lose a role its
    listener serves; '*' covers every other caller."""
    tmp = sock_dir()
    path = os.path.join(tmp, "all.sock")
    me = os.getuid()
    with Daemon(policies=POL, listen=["agent,reporter@unix:" + path, "agent@127.0.0.1:0"],
                args=["--identities", "uid:%d=agent" % me, "--identities", "*="]) as d:
        d.evaluate(ev_req(), i=0)
        expect_code(lambda: d.call("Observe", obs_req(), i=0), DENIED,
                    ["Observe needs the reporter role", "identity 'uid:%d' is allowed agent" % me])
        # Plain TCP has no identity: '*' (no role) applies.
        expect_code(lambda: d.evaluate(ev_req(), i=1), DENIED,
                    ["identity '' is allowed nothing", "entry '*'"])
    os.rmdir(tmp)


def as_uid(uid, gid, addr, session):
    """An Evaluate by another uid (root only): "OK <policy>" or "<CODE>
    <details>"."""
    reply, err = bgtest.call_as(uid, gid, addr, "Evaluate", guard_pb2.EvaluateRequest(
        action=guard_pb2.Action(tool="t"), context=guard_pb2.Context(session=session)),
        guard_pb2.Verdict)
    return "OK " + reply.policy if reply else "%s %s" % err


def test_another_uid():
    """The kernel's word on who connected: a process of another uid is
    uid:N in the decision log, is kept out by the socket's mode, and is
    refused by ?uids=. Needs root (to run the client as nobody)."""
    if os.getuid() != 0:
        print("  (not root: cannot run a client as another uid; skipped)")
        return
    nobody, nogroup = 65534, 65534
    tmp = sock_dir()
    os.chmod(tmp, 0o755)
    grp_sock = os.path.join(tmp, "group.sock")
    own_sock = os.path.join(tmp, "owner.sock")
    uid_sock = os.path.join(tmp, "uids.sock")
    log = os.path.join(tmp, "decisions.jsonl")
    with Daemon(policies=POL,
                listen=["agent@unix:" + grp_sock, "agent@unix:%s?uids=0" % uid_sock],
                args=["--socket-group", str(nogroup), "--decision-log", log]) as d:
        assert as_uid(nobody, nogroup, d.addrs[0], "as-nobody") == "OK rpc-test"
        out = as_uid(nobody, nogroup, d.addrs[1], "refused")
        assert out.startswith("PERMISSION_DENIED uid %d may not call" % nobody), out
    with Daemon(policies=POL, listen=["agent@unix:" + own_sock],
                args=["--socket-mode", "0600"]) as d:
        out = as_uid(nobody, nogroup, d.addrs[0], "kept-out")
        assert out.startswith("UNAVAILABLE"), out
    with open(log) as f:
        peers = {json.loads(l)["session"]: json.loads(l)["peer"] for l in f}
    assert peers == {"as-nobody": "uid:%d" % nobody}, peers
    os.remove(log)
    os.rmdir(tmp)


def test_ping_needs_enable_bench():
    with Daemon(policies=POL) as d:
        expect_code(lambda: d.ping(), DENIED, ["--enable-bench"])
        d.evaluate(ev_req())
    with Daemon(policies=POL, listen=["agent@127.0.0.1:0"], args=["--enable-bench"]) as d:
        assert d.ping(payload=b"x").payload == b"x"


if __name__ == "__main__":
    bgtest.main([test_agent_listener_refuses_the_other_roles,
                 test_bare_listen_serves_every_role_and_warns,
                 test_bad_roles_are_startup_errors,
                 test_socket_mode_and_group,
                 test_socket_never_world_writable_while_binding,
                 test_peer_uid_reaches_the_decision_log,
                 test_uid_allow_list,
                 test_identities_narrow_uids,
                 test_another_uid,
                 test_ping_needs_enable_bench])
