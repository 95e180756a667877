"""The asyncio client (bayesguard.aio.Guard) against the real daemon, and
the sync Guard's protect() on an async function."""
import asyncio

import grpc

import clienttest
from clienttest import daemon, main

import bayesguard
import bayesguard.aio
from bayesguard import Decision


async def _aexpect(exc_type, coro):
    try:
        await coro
    except exc_type as e:
        return e
    raise AssertionError("expected %s" % exc_type.__name__)


def test_aio_evaluate_report_errors():
    async def go(addr):
        async with bayesguard.aio.Guard(addr) as g:
            v = await g.evaluate("send_email", {"to": "x"}, session="a1")
            assert v.allowed and v.receipt, v
            r = await g.report(v, harmed=False)
            assert r.observations == 1, r
            e = await _aexpect(bayesguard.AlreadyExists, g.report(v, harmed=False))
            assert e.code == grpc.StatusCode.ALREADY_EXISTS
            v = await g.evaluate("deny_x", {}, session="a1")
            assert v.decision is Decision.DENY, v
            out = await g.evaluate_tool_calls({"tool_calls": [
                {"id": "c1", "function": {"name": "escalate_y", "arguments": "{}"}}]},
                session="a1")
            assert out[0][1].decision is Decision.ESCALATE, out
    with daemon() as d:
        asyncio.run(go(d.addrs[0]))


def test_aio_protect():
    async def go(addr):
        async with bayesguard.aio.Guard(addr) as g:
            ran = []

            @g.protect(tool="send_email", session="a2")
            async def send(to):
                await asyncio.sleep(0)
                ran.append(to)
                return "sent"

            @g.protect(tool="deny_send", session="a2")
            async def send_denied(to):
                ran.append(("denied", to))

            assert await send("x") == "sent" and ran == ["x"]
            e = await _aexpect(bayesguard.Denied, send_denied("y"))
            assert ran == ["x"] and e.verdict.policy == "client-deny", e.verdict
            v = await g.evaluate("send_email", {"to": "x"}, session="a2")
            assert v.observations == 1, v  # send's outcome was reported
            try:
                @g.protect(tool="send_email")
                def sync_fn():
                    pass
                raise AssertionError("aio protect took a sync function")
            except TypeError:
                pass
    with daemon() as d:
        asyncio.run(go(d.addrs[0]))


def test_aio_unreachable_fails_closed():
    with daemon() as d:
        addr = d.addrs[0]

    async def go():
        async with bayesguard.aio.Guard(addr, timeout=2) as g:
            ran = []

            @g.protect(tool="send_email")
            async def send():
                ran.append(1)
            await _aexpect(bayesguard.GuardError, send())
            assert ran == []
        async with bayesguard.aio.Guard(addr, timeout=2, fail_open=True) as g:
            v = await g.evaluate("send_email", {})
            assert v.allowed and v.failed_open, v
    asyncio.run(go())


def test_aio_guard_across_event_loops():
    """One aio Guard made outside any loop, used from two asyncio.run()s."""
    with daemon() as d:
        g = bayesguard.aio.Guard(d.addrs[0])

        async def once():
            v = await g.evaluate("send_email", {"n": 1}, session="loops")
            assert v.allowed, v
            return (await g.report(v, harmed=False)).observations
        assert asyncio.run(once()) == 1
        assert asyncio.run(once()) == 2
        asyncio.run(g.close())


def test_sync_guard_protects_async_function():
    with daemon() as d, bayesguard.Guard(d.addrs[0]) as g:
        ran = []

        @g.protect(tool="send_email", session="a3")
        async def send(to):
            ran.append(to)
            return to.upper()

        @g.protect(tool="deny_it", session="a3")
        async def nope():
            ran.append("nope")

        async def go():
            assert await send("x") == "X"
            await _aexpect(bayesguard.Denied, nope())
        asyncio.run(go())
        assert ran == ["x"]
        assert g.evaluate("send_email", {"to": "x"}, session="a3").observations == 1


if __name__ == "__main__":
    main([test_aio_evaluate_report_errors, test_aio_protect, test_aio_unreachable_fails_closed,
          test_aio_guard_across_event_loops,
          test_sync_guard_protects_async_function])
