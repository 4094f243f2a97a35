"""A volunteer's peer: connects to the coordinator, runs assigned tasks in sandboxed workers, earns money.

The connection loop reconnects with capped exponential backoff (with jitter, so that a coordinator restart
is not met by every peer at the same instant) whenever the coordinator is away. Kernels run in worker
processes (``p2c2r.workers``), so the event loop stays free for heartbeats during long tasks. The peer
learns only what a task needs: attempt id, kind, input and deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import websockets
from websockets.asyncio.client import ClientConnection, connect

from p2c2r import protocol as p
from p2c2r.console import Console, money
from p2c2r.endpoints import client_ssl_context
from p2c2r.errors import HandshakeError, RemoteProtocolError
from p2c2r.identity import CHALLENGE_HEADER, Identity, parse_nonce
from p2c2r.network_config import (
    COORDINATOR_FEE_BPS,
    MAX_MESSAGE_BYTES,
    RECONNECT_BACKOFF_INITIAL_S,
    RECONNECT_BACKOFF_MAX_S,
)
from p2c2r.outbox import Outbox, immediate_sender
from p2c2r.tasks import installed_features, registry
from p2c2r.workers import JobOutcome, WorkerPool

log = logging.getLogger(__name__)

# Close codes after which reconnecting cannot help.
PERMANENT_CLOSE_CODES = {p.CLOSE_UNSUPPORTED_VERSION, p.CLOSE_UNKNOWN_ROLE, p.CLOSE_BANNED, p.CLOSE_AUTH_FAILED,
                         p.CLOSE_REPLACED}
# Extra time a worker gets past the task's deadline before it is killed as stuck.
WORKER_GRACE_S = 2.0
# Jobs one worker holds at once: the one it runs and the next ones in its pipe. As deep as the queue the
# coordinator may keep at a peer per slot (scheduler.MAX_QUEUE_PER_SLOT), so that all of it waits there.
WORKER_PIPELINE = 32

OutputTamperer = Callable[[str, Any, bytes], bytes]


@dataclass
class PeerSettings:
    url: str
    name: str
    slots: int = 2
    cafile: str | None = None
    # The peer's key (p2c2r.identity): None = the default file for its name, made on first run.
    key_path: str | Path | None = None
    identity: Identity | None = None
    # Timeouts
    backoff_initial_s: float = RECONNECT_BACKOFF_INITIAL_S
    backoff_max_s: float = RECONNECT_BACKOFF_MAX_S
    # Limits
    memory_limit_bytes: int | None = 4 * 1024**3
    max_message_bytes: int = MAX_MESSAGE_BYTES
    # A demonstration and test aid (``--cheat``): rewrites outputs before they are sent.
    tamper: OutputTamperer | None = None
    # Connection establishment hook for tests (proxies, namespaces); None = websockets' connect.
    extra_connect_kwargs: dict[str, Any] = field(default_factory=dict)


class PeerAgent:
    def __init__(self, settings: PeerSettings, *, console: Console | None = None) -> None:
        self.settings = settings
        self.console = console or Console()
        # The coordinator keeps a few tasks queued at each peer per slot; waiting in the workers' pipes they
        # start without a round trip through this process (see p2c2r.workers).
        self.pool = WorkerPool(settings.slots, memory_limit_bytes=settings.memory_limit_bytes,
                               pipeline=WORKER_PIPELINE)
        # Earnings belong to this key: whoever holds it is this peer (p2c2r.identity).
        self.identity = settings.identity or Identity.for_role("peer", settings.name, settings.key_path)
        self.peer_id: str | None = None
        self.earned_micro_usd = 0
        self.completed = 0
        self.failed = 0
        self.started = time.monotonic()
        self._stopping = asyncio.Event()
        self._cancelled: set[str] = set()
        self._jobs: dict[str, asyncio.Future[JobOutcome]] = {}
        self.connected = asyncio.Event()

    async def run(self) -> None:
        self.console.banner("💻 P2C2R PEER NODE")
        self.console.line(f"🔑 Identity: {self.identity.describe('peer')}")
        await self.pool.start()
        backoff = self.settings.backoff_initial_s
        try:
            while not self._stopping.is_set():
                self.console.line(f"🔌 Connecting to cloud at {self.settings.url.split('://', 1)[-1]}...")
                try:
                    async with connect(
                        self.settings.url,
                        max_size=2 * self.settings.max_message_bytes,
                        ssl=client_ssl_context(self.settings.url, self.settings.cafile),
                        open_timeout=10,
                        compression=None,
                        **self.settings.extra_connect_kwargs,
                    ) as ws:
                        await self._handshake(ws)
                        backoff = self.settings.backoff_initial_s
                        await self._session(ws)
                        if ws.close_code in PERMANENT_CLOSE_CODES:
                            raise HandshakeError(ws.close_reason or "refused", close_code=ws.close_code)
                except HandshakeError as exc:
                    if exc.close_code in PERMANENT_CLOSE_CODES:
                        self.console.line(f"⛔ The coordinator refused this peer: {exc.message}")
                        raise
                    self.console.line(f"⚠️  Handshake failed: {exc.message}")
                except ssl.SSLCertVerificationError as exc:  # retrying cannot help
                    message = (f"the TLS certificate of {self.settings.url} could not be verified "
                               f"({exc.verify_message}); pass the coordinator's CA certificate with --cafile")
                    self.console.line(f"⛔ {message}")
                    raise HandshakeError(message, close_code=1015, code="tls_verify_failed") from exc
                except (OSError, websockets.WebSocketException, TimeoutError) as exc:
                    log.info("connection failed: %r", exc)
                finally:
                    self.connected.clear()
                    self._abandon_jobs()
                if self._stopping.is_set():
                    break
                delay = backoff * random.uniform(0.5, 1.0)
                self.console.line(f"🔁 Cloud unreachable; retrying in {delay:.1f}s")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                backoff = min(backoff * 2, self.settings.backoff_max_s)
        finally:
            await self.pool.close()
            self.console.line("")
            self.console.line(self.total_line())

    def stop(self) -> None:
        self._stopping.set()

    def total_line(self) -> str:
        uptime_s = time.monotonic() - self.started
        rate = self.earned_micro_usd / (uptime_s / 3600.0) if uptime_s > 0 else 0
        return (
            f"Total earned: {money(self.earned_micro_usd, 6)} ({uptime_s / 60:.0f} minutes uptime, "
            f"{self.completed} tasks, {money(int(rate), 4)}/hour)"
        )

    async def _handshake(self, ws: ClientConnection) -> None:
        nonce = parse_nonce(ws.response.headers.get(CHALLENGE_HEADER)) if ws.response else None
        signature = (self.identity.sign_handshake(nonce=nonce, role="peer", protocol=p.PROTOCOL_VERSION)
                     if nonce is not None else None)
        await ws.send(p.encode(p.Hello(
            role="peer", protocol=p.PROTOCOL_VERSION, name=self.settings.name, resume_id=self.peer_id,
            slots=self.settings.slots, kinds=sorted(registry()), features=installed_features(), device=_device(),
            public_key=self.identity.public_key, signature=signature, batch=True,
        )))
        try:
            reply = p.decode_from_server(await asyncio.wait_for(ws.recv(), 10.0))
        except websockets.ConnectionClosed as exc:
            raise HandshakeError(exc.rcvd.reason if exc.rcvd else "connection closed",
                                 close_code=exc.rcvd.code if exc.rcvd else 1006) from exc
        if isinstance(reply, p.Error):
            with contextlib.suppress(websockets.ConnectionClosed, TimeoutError):
                await asyncio.wait_for(ws.wait_closed(), 5.0)
            raise HandshakeError(reply.message, close_code=ws.close_code or p.CLOSE_BAD_HANDSHAKE, code=reply.code)
        if not isinstance(reply, p.Welcome):
            raise HandshakeError(f"expected welcome, got {type(reply).__name__}", close_code=p.CLOSE_BAD_HANDSHAKE)
        self.peer_id = reply.client_id
        self.connected.set()
        share = (10_000 - COORDINATOR_FEE_BPS) / 100
        self.console.line("✅ Connected! Ready to contribute compute.")
        self.console.line(f"💰 Earning {share:.0f}% of every task's price ({self.settings.slots} slot(s), id {self.peer_id})")
        self.console.line("")
        self._heartbeat_interval_s = reply.heartbeat_interval_s
        self._max_frame_bytes = reply.max_message_bytes

    async def _session(self, ws: ClientConnection) -> None:
        loop = asyncio.get_running_loop()
        outbox = Outbox(ws.send, batch=True, max_frame_bytes=self._max_frame_bytes, send_now=immediate_sender(ws))
        writer = loop.create_task(outbox.run())
        heart = loop.create_task(self._heartbeats(outbox))
        stopper = loop.create_task(self._close_when_stopping(ws))
        try:
            async for frame in ws:
                for msg in p.decode_server_frame(frame, max_bytes=self.settings.max_message_bytes):
                    if isinstance(msg, RemoteProtocolError):
                        log.warning("bad message from coordinator: %s", msg)
                    else:
                        self._on_message(outbox, msg)
        except websockets.ConnectionClosed:
            pass
        finally:
            for task in (heart, stopper, writer):
                task.cancel()

    async def _close_when_stopping(self, ws: ClientConnection) -> None:
        await self._stopping.wait()
        await ws.close(1000, "peer stopping")

    def _on_message(self, outbox: Outbox, msg: Any) -> None:
        if isinstance(msg, p.Assign):
            self.console.task_line(f"⚡ Received task: {msg.kind}")
            timeout_s = msg.deadline_ms / 1000.0 + WORKER_GRACE_S
            job = self.pool.run(msg.kind, bytes(msg.input), timeout_s=timeout_s)
            self._jobs[msg.attempt_id] = job
            # A callback rather than a task per job: at thousands of tasks a second the task costs more
            # than the work it would wait on.
            job.add_done_callback(lambda done: self._finish_job(outbox, msg, done))
        elif isinstance(msg, p.Cancel):
            self._cancelled.add(msg.attempt_id)
        elif isinstance(msg, p.Earned):
            self.earned_micro_usd = msg.total_micro_usd
            self.console.task_line(f"   💰 Earned: {money(msg.micro_usd)}")
        elif isinstance(msg, p.Error):
            log.warning("coordinator error: %s: %s", msg.code, msg.message)

    def _finish_job(self, outbox: Outbox, msg: p.Assign, job: asyncio.Future[JobOutcome]) -> None:
        self._jobs.pop(msg.attempt_id, None)
        if job.cancelled():  # abandoned with its connection
            return
        if msg.attempt_id in self._cancelled:
            self._cancelled.discard(msg.attempt_id)
            return
        outcome = job.result()
        if outcome.ok:
            output = outcome.output
            if self.settings.tamper is not None:
                output = self.settings.tamper(msg.kind, msgspec.msgpack.decode(msg.input), output)
            reply: msgspec.Struct = p.PeerResult(msg.attempt_id, msgspec.Raw(output), round(outcome.compute_ms, 3))
            self.completed += 1
            self.console.task_line(f"   ✅ Completed {msg.kind} in {outcome.compute_ms:.0f}ms")
        else:
            reply = p.PeerError(msg.attempt_id, outcome.code, outcome.message[:2000])
            self.failed += 1
            self.console.task_line(f"   ❌ {msg.kind} failed: {outcome.message}")
        outbox.put(p.encode(reply))

    def _abandon_jobs(self) -> None:
        # The coordinator re-routes whatever this connection held; results for it can no longer be sent.
        for job in self._jobs.values():
            job.cancel()
        self._jobs.clear()
        self._cancelled.clear()

    async def _heartbeats(self, outbox: Outbox) -> None:
        while True:
            outbox.put(p.encode(p.Heartbeat(running=self.pool.busy)))
            await asyncio.sleep(self._heartbeat_interval_s)


def _device() -> str:
    # A CUDA device advertised only when CuPy can actually use one.
    if os.environ.get("P2C2R_DISABLE_GPU"):
        return "cpu"
    try:
        import cupy  # type: ignore[import-not-found]

        return "gpu" if cupy.cuda.runtime.getDeviceCount() > 0 else "cpu"
    except Exception:
        return "cpu"
