"""A user-space TCP link with latency, jitter, a bandwidth cap and cuts on command, for any TCP protocol.

    proxy = LinkProxy("10.0.0.2", 8765, latency_ms=(40, 120), bandwidth_bps=1_000_000, seed=1)
    await proxy.start()            # clients connect to 127.0.0.1:proxy.port instead of 10.0.0.2:8765
    proxy.cut()                    # every connection dropped (reset), new ones refused ...
    proxy.restore()                # ... until this
    print(proxy.bytes_up, proxy.bytes_down, proxy.connections[-1])
    await proxy.stop()

For synchronous code (pytest without asyncio, a benchmark driving subprocesses) ``ThreadedLinkProxy`` takes
the same arguments and runs a ``LinkProxy`` on its own event loop in a thread.

How the link behaves. Each direction of each connection is a pipe: a chunk read from one side is stamped
with a release time, now plus a one-way latency drawn uniformly from ``latency_ms`` but never earlier than
the previous chunk's release, so the bytes keep their order (jitter reorders nothing, it bunches). At its
release time the chunk goes through a token bucket shared by every connection of the proxy in that
direction (the link's capacity: ``bandwidth_bps`` bits per second per direction, bursts of at most
``BURST_S`` of traffic) and is written to the other side. "Up" is client to target, "down" target to
client; byte counters count what was handed to the receiving socket. A closed (half-closed) side is
passed on after the data before it; a reset or a cut resets both sides. The TCP handshake itself is not
delayed: the client's ``connect`` returns at once and its first bytes pay the latency.

Nothing here can reach further than ``target_host``: the proxy dials only the one address it was given.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["ConnectionCounters", "LinkProxy", "ThreadedLinkProxy"]

READ_CHUNK_BYTES = 64 * 1024
# Chunks buffered per direction before the proxy stops reading (backpressure to the sender).
PIPE_QUEUE_CHUNKS = 64
# The token bucket holds this much traffic (and at least MIN_BURST_BYTES): the largest burst at full speed.
BURST_S = 0.01
MIN_BURST_BYTES = 1024
CONNECT_TIMEOUT_S = 10.0
# Closed connections remembered in ``connections`` (open ones are always there).
CLOSED_CONNECTIONS_KEPT = 1024

T = TypeVar("T")


@dataclass(slots=True)
class ConnectionCounters:
    """One proxied connection, as seen by the proxy."""

    id: int
    client: str
    opened_at: float  # time.monotonic()
    bytes_up: int = 0
    bytes_down: int = 0
    closed_at: float | None = None
    ended_by: str = ""  # "closed", "reset", "cut", "stopped", "target unreachable"

    @property
    def open(self) -> bool:
        return self.closed_at is None


class _TokenBucket:
    def __init__(self, bits_per_s: float) -> None:
        if bits_per_s <= 0:
            raise ValueError(f"bandwidth_bps must be positive, got {bits_per_s!r}")
        self.rate = bits_per_s / 8.0  # bytes per second
        self.capacity = max(float(MIN_BURST_BYTES), self.rate * BURST_S)
        self.tokens = self.capacity
        self.stamp = time.monotonic()
        self.lock = asyncio.Lock()

    @property
    def piece(self) -> int:
        return int(self.capacity)

    async def take(self, n: int) -> None:
        async with self.lock:  # FIFO among the connections sharing the link
            while True:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.tokens >= n:
                    self.tokens -= n
                    return
                await asyncio.sleep((n - self.tokens) / self.rate)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST rather than a FIN: the other end sees the connection drop, not end."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Connection:
    def __init__(self, proxy: LinkProxy, counters: ConnectionCounters, client: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.counters = counters
        self.client = client
        self.target: asyncio.StreamWriter | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.finished = asyncio.Event()
        self._eofs_delivered = 0

    def end(self, how: str, *, reset: bool) -> None:
        if self.counters.closed_at is not None:
            return
        self.counters.closed_at = time.monotonic()
        self.counters.ended_by = how
        for writer in (self.client, self.target):
            if writer is None:
                continue
            if reset:
                _reset(writer)
            else:
                writer.close()
        try:
            current = asyncio.current_task()
        except RuntimeError:  # called outside the loop
            current = None
        for task in self.tasks:
            if task is not current:
                task.cancel()
        self.finished.set()
        self.proxy._forget(self)

    async def run(self, client_reader: asyncio.StreamReader) -> None:
        proxy = self.proxy
        try:
            local = (proxy.source_host, 0) if proxy.source_host else None
            target_reader, self.target = await asyncio.wait_for(
                asyncio.open_connection(proxy.target_host, proxy.target_port, local_addr=local), CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError):
            self.end("target unreachable", reset=True)
            return
        if self.counters.closed_at is not None:  # cut or stopped while dialling
            _reset(self.target)
            return
        loop = asyncio.get_running_loop()
        for src, dst, up in ((client_reader, self.target, True), (target_reader, self.client, False)):
            queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(PIPE_QUEUE_CHUNKS)
            for coro in (self._read(src, queue), self._write(queue, dst, up)):
                task = loop.create_task(coro)
                self.tasks.add(task)
                task.add_done_callback(self._task_done)
        await self.finished.wait()

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if task.cancelled():
            return
        if task.exception() is not None:  # a side reset or broke: the whole connection drops
            self.end("reset", reset=True)

    async def _read(self, src: asyncio.StreamReader, queue: asyncio.Queue[tuple[float, bytes]]) -> None:
        last_release = 0.0
        while True:
            data = await src.read(READ_CHUNK_BYTES)
            release = max(time.monotonic() + self.proxy._one_way_s(), last_release)
            last_release = release
            await queue.put((release, data))
            if not data:
                return

    async def _write(self, queue: asyncio.Queue[tuple[float, bytes]], dst: asyncio.StreamWriter, up: bool) -> None:
        proxy = self.proxy
        while True:
            release, data = await queue.get()
            wait = release - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:  # the sender closed its side: pass it on after everything it sent
                if dst.can_write_eof():
                    dst.write_eof()
                self._eofs_delivered += 1
                if self._eofs_delivered == 2:
                    self.end("closed", reset=False)
                return
            bucket = proxy._buckets[0 if up else 1]
            step = bucket.piece if bucket is not None else len(data)
            for start in range(0, len(data), step):
                piece = data[start:start + step]
                if bucket is not None:
                    await bucket.take(len(piece))
                if up:  # counted first: a reader on another thread may see the bytes as soon as they are written
                    self.counters.bytes_up += len(piece)
                    proxy._bytes_up += len(piece)
                else:
                    self.counters.bytes_down += len(piece)
                    proxy._bytes_down += len(piece)
                dst.write(piece)
                await dst.drain()


class LinkProxy:
    """A TCP link to ``target_host:target_port`` with latency, jitter, a bandwidth cap and cuts.

    ``latency_ms`` is the one-way delay range (uniform) applied in each direction; ``bandwidth_bps`` caps each
    direction of the whole link (all its connections together) in bits per second, None for no cap.
    ``seed`` makes the jitter reproducible; ``source_host`` is the local address the proxy dials from (the
    address the target sees; default: the system's choice). Counters: ``bytes_up`` (client to target), ``bytes_down``, and
    per connection in ``connections``; ``accepted`` and ``refused`` count connection attempts.
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        latency_ms: tuple[float, float] = (0.0, 0.0),
        bandwidth_bps: float | None = None,
        seed: int | None = None,
        source_host: str | None = None,
    ) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.source_host = source_host
        self.listen_host = listen_host
        self.listen_port = listen_port
        self._rng = random.Random(seed)
        self.latency_ms = latency_ms
        self._buckets: tuple[_TokenBucket | None, _TokenBucket | None] = (None, None)
        self._bandwidth_bps: float | None = None
        self.bandwidth_bps = bandwidth_bps
        self._server: asyncio.Server | None = None
        self._live: dict[int, _Connection] = {}
        self._closed: deque[ConnectionCounters] = deque(maxlen=CLOSED_CONNECTIONS_KEPT)
        self._ids = itertools.count(1)
        self._cut = False
        self._bytes_up = 0
        self._bytes_down = 0
        self.accepted = 0
        self.refused = 0
        self.started_at: float | None = None

    # Settings (may change while running) --------------------------------------------------------------

    @property
    def latency_ms(self) -> tuple[float, float]:
        return self._latency_ms

    @latency_ms.setter
    def latency_ms(self, value: tuple[float, float]) -> None:
        lo, hi = (float(v) for v in value)
        if lo < 0 or hi < lo:
            raise ValueError(f"latency_ms must be (low, high) with 0 <= low <= high, got {value!r}")
        self._latency_ms = (lo, hi)

    @property
    def bandwidth_bps(self) -> float | None:
        return self._bandwidth_bps

    @bandwidth_bps.setter
    def bandwidth_bps(self, value: float | None) -> None:
        """May change while running: takes effect at once (a new bucket per direction, starting full)."""
        self._buckets = (None, None) if value is None else (_TokenBucket(value), _TokenBucket(value))
        self._bandwidth_bps = value

    def _one_way_s(self) -> float:
        lo, hi = self._latency_ms
        return (lo if hi == lo else self._rng.uniform(lo, hi)) / 1000.0

    # Lifecycle -----------------------------------------------------------------------------------------

    async def start(self) -> LinkProxy:
        if self._server is not None:
            raise RuntimeError("the proxy is already started")
        self._server = await asyncio.start_server(self._on_client, self.listen_host, self.listen_port)
        self.started_at = time.monotonic()
        return self

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the proxy is not started")
        return self._server.sockets[0].getsockname()[1]

    @property
    def address(self) -> tuple[str, int]:
        return self.listen_host, self.port

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        live = list(self._live.values())
        for conn in live:
            conn.end("stopped", reset=True)
        await server.wait_closed()

    async def __aenter__(self) -> LinkProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # Faults --------------------------------------------------------------------------------------------

    def cut(self) -> int:
        """Drop (reset) every current connection and refuse new ones until ``restore``; returns how many dropped."""
        self._cut = True
        live = list(self._live.values())
        for conn in live:
            conn.end("cut", reset=True)
        return len(live)

    def restore(self) -> None:
        self._cut = False

    @property
    def is_cut(self) -> bool:
        return self._cut

    # Counters ------------------------------------------------------------------------------------------

    @property
    def bytes_up(self) -> int:
        return self._bytes_up

    @property
    def bytes_down(self) -> int:
        return self._bytes_down

    @property
    def connections(self) -> list[ConnectionCounters]:
        """Recently closed connections, then open ones, oldest first."""
        return sorted([*self._closed, *(c.counters for c in self._live.values())], key=lambda c: c.id)

    @property
    def open_connections(self) -> int:
        return len(self._live)

    # Internals -----------------------------------------------------------------------------------------

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut or self._server is None:
            self.refused += 1
            _reset(writer)
            return
        self.accepted += 1
        peer = writer.get_extra_info("peername")
        counters = ConnectionCounters(next(self._ids), f"{peer[0]}:{peer[1]}" if peer else "?", time.monotonic())
        conn = _Connection(self, counters, writer)
        self._live[counters.id] = conn
        try:
            await conn.run(reader)
        except asyncio.CancelledError:  # the loop is shutting down under us: drop the connection quietly
            conn.end("stopped", reset=True)

    def _forget(self, conn: _Connection) -> None:
        if self._live.pop(conn.counters.id, None) is not None:
            self._closed.append(conn.counters)


class ThreadedLinkProxy:
    """A ``LinkProxy`` on its own event loop in a daemon thread, for synchronous code.

        with ThreadedLinkProxy("127.0.0.1", 8765, latency_ms=(50, 50)) as proxy:
            connect_to("127.0.0.1", proxy.port); proxy.cut(); proxy.restore()

    Every method blocks until the proxy's loop has done it; counters are read directly.
    """

    def __init__(self, target_host: str, target_port: int, **options: Any) -> None:
        self.proxy = LinkProxy(target_host, target_port, **options)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout_s: float = 10.0) -> ThreadedLinkProxy:
        if self._thread is not None:
            raise RuntimeError("the proxy is already started")
        self._thread = threading.Thread(target=self._main, name=f"link-proxy-{self.proxy.target_port}", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise TimeoutError(f"the proxy did not start within {timeout_s:g} s")
        if self._error is not None:
            self._thread.join(timeout_s)
            raise self._error
        return self

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            try:
                loop.run_until_complete(self.proxy.start())
            except BaseException as exc:  # reported to start()
                self._error = exc
                return
            finally:
                self._ready.set()
            loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def _call(self, fn: Callable[[], T], timeout_s: float = 10.0) -> T:
        loop = self._loop
        if loop is None or self._thread is None or not self._thread.is_alive():
            raise RuntimeError("the proxy is not running")

        async def call() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), loop).result(timeout_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.proxy.stop(), loop).result(timeout_s)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout_s)

    def __enter__(self) -> ThreadedLinkProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def cut(self) -> int:
        return self._call(self.proxy.cut)

    def restore(self) -> None:
        self._call(self.proxy.restore)

    def set_latency(self, latency_ms: tuple[float, float]) -> None:
        self._call(lambda: setattr(self.proxy, "latency_ms", latency_ms))

    def set_bandwidth(self, bandwidth_bps: float | None) -> None:
        self._call(lambda: setattr(self.proxy, "bandwidth_bps", bandwidth_bps))

    @property
    def port(self) -> int:
        return self.proxy.port

    @property
    def is_cut(self) -> bool:
        return self.proxy.is_cut

    @property
    def bytes_up(self) -> int:
        return self.proxy.bytes_up

    @property
    def bytes_down(self) -> int:
        return self.proxy.bytes_down

    @property
    def accepted(self) -> int:
        return self.proxy.accepted

    @property
    def refused(self) -> int:
        return self.proxy.refused

    @property
    def connections(self) -> list[ConnectionCounters]:
        return self._call(lambda: self.proxy.connections)
