"""LinkProxy checked by measurement: added latency, bandwidth cap, order, cuts, counters, the threaded variant."""

from __future__ import annotations

import asyncio
import socket
import statistics
import time
from collections.abc import AsyncIterator

import pytest

from p2c2r.testing.proxy import LinkProxy, ThreadedLinkProxy
from tests.procs import TIMEOUT_SCALE, scaled

# Timer and scheduler slack on a loaded 2-core machine; a proxy that adds no latency would miss by far more.
SLACK_MS = 40.0 * TIMEOUT_SCALE


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()
    except ConnectionError:
        writer.transport.abort()


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def _round_trip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes) -> float:
    t0 = time.perf_counter()
    writer.write(payload)
    await writer.drain()
    await reader.readexactly(len(payload))
    return (time.perf_counter() - t0) * 1000.0


async def test_fixed_latency_adds_one_round_trip(echo_port):
    async with LinkProxy("127.0.0.1", echo_port, latency_ms=(50, 50)) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        rtts = [await _round_trip(reader, writer, b"ping %d" % i) for i in range(5)]
        writer.close()
    # 50 ms one way, in each direction: every round trip takes at least 100 ms, and not much more.
    assert min(rtts) >= 100.0, rtts
    assert statistics.median(rtts) < 100.0 + SLACK_MS, rtts


async def test_jitter_stays_in_range_and_keeps_byte_order(echo_port):
    async with LinkProxy("127.0.0.1", echo_port, latency_ms=(10, 40), seed=3) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        rtts = [await _round_trip(reader, writer, b"x" * 32) for _ in range(8)]
        # Many small writes in a row, each stamped with its own random delay: none may overtake another.
        messages = [b"%06d;" % i for i in range(2000)]
        for m in messages:
            writer.write(m)
        await writer.drain()
        echoed = await asyncio.wait_for(reader.readexactly(sum(map(len, messages))), scaled(10))
        writer.close()
    assert echoed == b"".join(messages)
    assert min(rtts) >= 20.0, rtts
    assert max(rtts) < 80.0 + SLACK_MS, rtts
    assert len({round(r) for r in rtts}) > 1, "jitter should vary the delay"


async def test_bandwidth_cap_paces_a_bulk_transfer():
    received = asyncio.get_running_loop().create_future()
    size = 250_000

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got = 0
        while got < size and (data := await reader.read(65536)):
            got += len(data)
        received.set_result((time.perf_counter(), got))
        writer.close()

    server = await asyncio.start_server(sink, "127.0.0.1", 0)
    try:
        async with LinkProxy("127.0.0.1", server.sockets[0].getsockname()[1], bandwidth_bps=1_000_000) as proxy:
            _, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            t0 = time.perf_counter()
            writer.write(b"\xab" * size)
            await writer.drain()
            done_at, got = await asyncio.wait_for(received, scaled(10))
            writer.close()
            assert proxy.bytes_up == size
            assert proxy.connections[-1].bytes_up == size
    finally:
        server.close()
    elapsed = done_at - t0
    assert got == size
    # 250 kB at 1 Mbit/s is 2.0 s (±25 %; a slower machine may only make it later).
    assert 1.5 <= elapsed <= 2.5 * TIMEOUT_SCALE, elapsed


async def test_cut_drops_connections_refuses_new_ones_and_restore_accepts_again(echo_port):
    async with LinkProxy("127.0.0.1", echo_port) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        assert await _round_trip(reader, writer, b"before") >= 0
        assert proxy.cut() == 1
        # The live connection is dropped: the client sees it end at once, not after a timeout.
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(reader.readexactly(1), scaled(5))
        writer.close()
        assert proxy.connections[-1].ended_by == "cut"
        # A new connection is accepted by the kernel and reset at once: no byte gets through.
        r2, w2 = await asyncio.open_connection("127.0.0.1", proxy.port)
        w2.write(b"during")
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(r2.readexactly(6), scaled(5))
        w2.close()
        assert proxy.refused == 1
        proxy.restore()
        r3, w3 = await asyncio.open_connection("127.0.0.1", proxy.port)
        await _round_trip(r3, w3, b"after")
        w3.close()
    assert proxy.accepted == 2


async def test_half_close_is_passed_on_after_the_data(echo_port):
    async with LinkProxy("127.0.0.1", echo_port, latency_ms=(5, 5)) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"last words")
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), scaled(5)) == b"last words"  # then EOF
        writer.close()
        await asyncio.wait_for(_until(lambda: proxy.open_connections == 0), scaled(5))
    counters = proxy.connections[-1]
    assert counters.ended_by == "closed"
    assert (counters.bytes_up, counters.bytes_down) == (10, 10)
    assert (proxy.bytes_up, proxy.bytes_down) == (10, 10)


async def test_unreachable_target_resets_the_client():
    with socket.socket() as s:  # a port with nothing listening on it
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    async with LinkProxy("127.0.0.1", dead_port) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(reader.readexactly(1), scaled(5))
        writer.close()
    assert proxy.connections[-1].ended_by == "target unreachable"


def test_threaded_proxy_for_synchronous_code():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        with ThreadedLinkProxy("127.0.0.1", port, latency_ms=(30, 30)) as proxy:
            client = socket.create_connection(("127.0.0.1", proxy.port), timeout=scaled(5))
            server_side, _ = listener.accept()
            t0 = time.perf_counter()
            client.sendall(b"hello")
            assert server_side.recv(5) == b"hello"
            server_side.sendall(b"world")
            assert client.recv(5) == b"world"
            assert (time.perf_counter() - t0) * 1000.0 >= 60.0
            assert (proxy.bytes_up, proxy.bytes_down) == (5, 5)
            assert proxy.cut() == 1
            try:  # reset, or at least EOF: never data, never a hang
                assert client.recv(5) == b""
            except ConnectionResetError:
                pass
            client.close()
            server_side.close()
            proxy.restore()
            client = socket.create_connection(("127.0.0.1", proxy.port), timeout=scaled(5))
            server_side, _ = listener.accept()
            client.sendall(b"again")
            assert server_side.recv(5) == b"again"
            assert [c.ended_by for c in proxy.connections] == ["cut", ""]
            client.close()
            server_side.close()


async def _until(condition) -> None:
    while not condition():
        await asyncio.sleep(0.01)
