"""SIGTERM drains: calls in flight when the signal arrives finish OK, calls
after it get UNAVAILABLE (or the connection is refused), and the daemon
exits 0 — under load from several client threads, on TCP and unix."""
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import bgtest  # noqa: E402
from bgtest import Daemon, expect_code, grpc, guard_pb2  # noqa: E402

POL = bgtest.rpc_policies()

C = grpc.StatusCode


def test_in_flight_call_survives_sigterm():
    with Daemon(policies=POL, unix=True, args=["--enable-bench"]) as d:
        results = {}

        def slow(i):
            try:
                r = d.ping(delay_ms=1500, payload=b"in-flight-%d" % i, i=i, timeout=30)
                results[i] = r.payload
            except grpc.RpcError as e:
                results[i] = e.code()

        ts = [threading.Thread(target=slow, args=(i,)) for i in (0, 1)]
        for t in ts:
            t.start()
        # Both calls are in flight once the daemon counts them.
        bgtest.wait_for(lambda: d.call("Status", guard_pb2.StatusRequest()).in_flight >= 3,
                        20, "2 delayed pings in flight")
        t0 = time.monotonic()
        d.send_signal(signal.SIGTERM)
        for t in ts:
            t.join(30)
        assert results == {0: b"in-flight-0", 1: b"in-flight-1"}, results
        rc = d.wait_exit(30)
        took = time.monotonic() - t0
        assert rc == 0, "exit %d\n%s" % (rc, d.log_text_tail())
        assert took < 10, "drain took %.1f s for 1.5 s calls" % took
        d.proc = None
        # After the drain nothing answers: refused -> UNAVAILABLE.
        expect_code(lambda: d.health("", timeout=5), C.UNAVAILABLE)


def slow_ping_in_flight(d, delay_ms):
    """Start a Ping delayed by delay_ms on a thread and wait until the
    daemon counts it in flight (besides the Status call asking). Returns
    the thread and a list that gets "ok" or the call's status code."""
    out = []

    def slow():
        try:
            d.ping(delay_ms=delay_ms, timeout=30)
            out.append("ok")
        except grpc.RpcError as e:
            out.append(e.code())

    t = threading.Thread(target=slow)
    t.start()
    bgtest.wait_for(lambda: d.call("Status", guard_pb2.StatusRequest()).in_flight >= 2,
                    20, "a delayed ping in flight")
    return t, out


def test_drain_deadline_cancels_stragglers():
    with Daemon(policies=POL, args=["--enable-bench", "--drain-timeout-ms", "300"]) as d:
        t, out = slow_ping_in_flight(d, 8000)
        t0 = time.monotonic()
        d.send_signal(signal.SIGTERM)
        rc = d.wait_exit(30)
        t.join(30)
        d.proc = None
        assert rc == 0, d.log_text_tail()
        assert time.monotonic() - t0 < 7, "the 300 ms drain deadline was not applied"
        assert out and out[0] != "ok", out


def test_second_signal_cancels_now():
    with Daemon(policies=POL, args=["--enable-bench", "--drain-timeout-ms", "60000"]) as d:
        t, out = slow_ping_in_flight(d, 9000)
        t0 = time.monotonic()
        d.send_signal(signal.SIGTERM)
        bgtest.wait_for(lambda: "draining" in d.log(), 10, "the drain to start")
        d.send_signal(signal.SIGTERM)
        rc = d.wait_exit(30)
        t.join(30)
        d.proc = None
        assert rc == 0, d.log_text_tail()
        assert time.monotonic() - t0 < 7, "the second SIGTERM did not cut the 60 s drain short"
        assert "second signal" in d.log(), d.log_text_tail()


def test_sigterm_under_load():
    tools = bgtest.policy_tools(POL)
    with Daemon(policies=POL, unix=True, args=["--enable-bench"]) as d:
        stop = threading.Event()
        stats = []
        lock = threading.Lock()
        progress = [0] * 6

        def worker(i):
            ch = grpc.insecure_channel(d.addrs[i % 2])
            ok = bad = unavailable = 0
            other = []
            while not stop.is_set():
                try:
                    if tools:
                        d.evaluate(guard_pb2.EvaluateRequest(
                            action=guard_pb2.Action(tool=tools[0][1]),
                            context=guard_pb2.Context(session="load-%d" % i)), ch=ch, timeout=10)
                    else:
                        d.ping(delay_ms=20 if i % 3 == 0 else 0, ch=ch, timeout=10)
                    ok += 1
                    progress[i] = ok
                except grpc.RpcError as e:
                    if e.code() == C.UNAVAILABLE:
                        # A well-behaved client stops sending to a draining
                        # server at its first UNAVAILABLE.
                        unavailable += 1
                        break
                    else:
                        bad += 1
                        other.append("%s: %s" % (e.code(), e.details()))
                        break
            ch.close()
            with lock:
                stats.append((i, ok, unavailable, bad, other))

        ts = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
        for t in ts:
            t.start()
        # Every thread is well into its loop when the signal lands.
        bgtest.wait_for(lambda: min(progress) >= 50, 60, "50 calls per client thread")
        d.send_signal(signal.SIGTERM)
        rc = d.wait_exit(60)
        d.proc = None
        stop.set()
        for t in ts:
            t.join(60)
        print("  (thread, ok, unavailable, failed):", [s[:4] for s in sorted(stats)])
        assert rc == 0, d.log_text_tail()
        for i, ok, unav, bad, other in stats:
            assert bad == 0, "thread %d saw non-UNAVAILABLE failures: %s" % (i, other)
            assert ok > 0, "thread %d never succeeded" % i


if __name__ == "__main__":
    bgtest.main([test_in_flight_call_survives_sigterm, test_drain_deadline_cancels_stragglers,
                 test_second_signal_cancels_now, test_sigterm_under_load])
