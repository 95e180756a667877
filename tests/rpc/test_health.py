"""grpc.health.v1 against the real daemon, on TCP and on a unix socket:
Check ("" and bayesguard.v1.Guard SERVING, unknown names NOT_FOUND) and
Watch (SERVING first, NOT_SERVING at drain, then the stream ends OK)."""
import os
import signal
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import bgtest  # noqa: E402
from bgtest import Daemon, expect_code, grpc, health_pb2  # noqa: E402

POL = bgtest.rpc_policies()

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


def test_check_tcp_and_unix():
    with Daemon(policies=POL, unix=True) as d:
        assert d.addrs[1].startswith("unix:"), d.addrs
        for i in (0, 1):
            assert d.health("", i=i).status == SERVING
            assert d.health("bayesguard.v1.Guard", i=i).status == SERVING
            expect_code(lambda: d.health("no.such.Service", i=i), grpc.StatusCode.NOT_FOUND,
                        ["no.such.Service", "bayesguard.v1.Guard"])
            # The daemon keeps serving after the refusal.
            assert d.health("", i=i).status == SERVING
        sock = d.addrs[1][len("unix:"):]
        assert os.path.exists(sock)
    assert not os.path.exists(sock), "the unix socket file is removed at exit"


def _watch(d, service, out, ch):
    fn = ch.unary_stream("/grpc.health.v1.Health/Watch",
                         request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                         response_deserializer=health_pb2.HealthCheckResponse.FromString)
    try:
        for msg in fn(health_pb2.HealthCheckRequest(service=service), timeout=60):
            out.append(msg.status)
        out.append("end")
    except grpc.RpcError as e:
        out.append(e.code())


def test_watch_until_drain():
    d = Daemon(policies=POL, unix=True).start()
    try:
        streams = []
        threads = []
        for i, svc in ((0, ""), (1, "bayesguard.v1.Guard"), (0, "other.Service")):
            out = []
            t = threading.Thread(target=_watch, args=(d, svc, out, d.channel(i)))
            t.start()
            streams.append(out)
            threads.append(t)
        bgtest.wait_for(lambda: all(len(s) >= 1 for s in streams), 20, "first Watch messages")
        assert streams[0] == [SERVING] and streams[1] == [SERVING], streams
        assert streams[2] == [UNKNOWN], streams
        # A cancelled watcher must not hold the drain: cancel one more.
        ch = d.channel(0)
        fn = ch.unary_stream("/grpc.health.v1.Health/Watch",
                             request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                             response_deserializer=health_pb2.HealthCheckResponse.FromString)
        it = fn(health_pb2.HealthCheckRequest(service=""), timeout=60)
        assert next(it).status == SERVING
        it.cancel()
        d.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(30)
            assert not t.is_alive(), "Watch stream did not end at drain"
        assert streams[0] == [SERVING, NOT_SERVING, "end"], streams
        assert streams[1] == [SERVING, NOT_SERVING, "end"], streams
        assert streams[2] == [UNKNOWN, UNKNOWN, "end"], streams
        assert d.stop() == 0
    finally:
        if d.proc is not None:
            d.stop(expect=None)
        d.cleanup()


if __name__ == "__main__":
    bgtest.main([test_check_tcp_and_unix, test_watch_until_drain])
