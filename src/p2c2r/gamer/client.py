"""The gamer's async client library.

    async with GamerClient("ws://127.0.0.1:8765", name="me") as client:
        result = await client.submit("ai_pathfinding", task_input, deadline_ms=200)
        print(result.output, result.latency_ms, result.cost_micro_usd)

Many tasks may be in flight at once (``submit_nowait`` returns a future). Each task has a client-chosen id,
so resubmitting after a lost connection is idempotent: on reconnect the client resends what was never
acknowledged and fetches, by id, the results of what was. A task ends with a ``TaskResult`` or a
``TaskFailed`` error, never silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import secrets
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from p2c2r import protocol as p
from p2c2r.endpoints import client_ssl_context
from p2c2r.errors import HandshakeError, RemoteProtocolError, TaskFailed
from p2c2r.gamer.transport import Connection, Transport, WebSocketTransport
from p2c2r.identity import Identity
from p2c2r.network_config import GAMER_KEEPALIVE_S, RECONNECT_BACKOFF_INITIAL_S, RECONNECT_BACKOFF_MAX_S
from p2c2r.outbox import Outbox

log = logging.getLogger(__name__)

PERMANENT_CLOSE_CODES = {p.CLOSE_UNSUPPORTED_VERSION, p.CLOSE_UNKNOWN_ROLE, p.CLOSE_BANNED, p.CLOSE_AUTH_FAILED,
                         p.CLOSE_REPLACED}
# A fetch the coordinator refused as over its rate is sent again after this long.
FETCH_RETRY_S = 0.25


@dataclass(frozen=True, slots=True)
class TaskResult:
    task_id: str
    kind: str
    output: Any
    source: str  # "peer", "cache" or "cloud"
    latency_ms: float  # measured here, submit to result
    server_latency_ms: float  # measured by the coordinator
    cost_micro_usd: int


@dataclass(slots=True)
class _Pending:
    task_id: str
    kind: str
    input: Any
    deadline_ms: int | None
    future: asyncio.Future[TaskResult]
    submitted_at: float
    acked: bool = False


class GamerClient:
    def __init__(
        self,
        url: str,
        *,
        name: str = "gamer",
        transport: Transport | None = None,
        reconnect: bool = True,
        backoff_initial_s: float = RECONNECT_BACKOFF_INITIAL_S,
        backoff_max_s: float = RECONNECT_BACKOFF_MAX_S,
        identity: Identity | None = None,
        key_path: str | Path | None = None,
        cafile: str | None = None,
    ) -> None:
        self.url = url
        self.name = name
        # The gamer's key (made on first use; see p2c2r.identity): its account, its balance, its results.
        self.identity = identity or Identity.for_role("gamer", name, key_path)
        self._transport = transport or WebSocketTransport(ssl_context=client_ssl_context(url, cafile))
        self._reconnect = reconnect
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self.client_id: str | None = None
        self._conn: Connection | None = None
        self._outbox: Outbox | None = None
        self._pending: dict[str, _Pending] = {}
        self._requests: asyncio.Queue[Any] | None = None
        self._runner: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._closed = False
        self._fatal: BaseException | None = None
        self._stats_waiters: list[asyncio.Future[dict[str, Any]]] = []
        self._seq = itertools.count(1)
        self._prefix = secrets.token_hex(4)
        self.reconnects = 0
        self.errors: list[p.Error] = []

    # Lifecycle --------------------------------------------------------------------------------------

    async def __aenter__(self) -> GamerClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self, timeout_s: float = 15.0) -> None:
        """Connect and complete the handshake; afterwards the client reconnects on its own."""
        if self._runner is None:
            self._runner = asyncio.get_running_loop().create_task(self._run())
        waiter = asyncio.ensure_future(self._connected.wait())
        done, _ = await asyncio.wait({waiter, self._runner}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            waiter.cancel()
            if self._fatal is not None:
                raise self._fatal
            raise TimeoutError(f"could not connect to {self.url} within {timeout_s:g} s")

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def close(self) -> None:
        self._closed = True
        # Stop the reader first (its cleanup closes the connection): closing under a pending recv makes
        # websockets complain about an asynchronous generator still running.
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._runner
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(TaskFailed(pending.task_id, "client_closed", "the client was closed"))
                pending.future.exception()
        self._pending.clear()

    # Tasks ------------------------------------------------------------------------------------------

    def new_task_id(self) -> str:
        return f"{self._prefix}-{next(self._seq)}"

    def submit_nowait(self, kind: str, task_input: Any, *, deadline_ms: int | None = None,
                      task_id: str | None = None) -> asyncio.Future[TaskResult]:
        if self._closed:
            raise RuntimeError("the client is closed")
        task_id = task_id or self.new_task_id()
        fut: asyncio.Future[TaskResult] = asyncio.get_running_loop().create_future()
        pending = _Pending(task_id, kind, task_input, deadline_ms, fut, time.perf_counter())
        self._pending[task_id] = pending
        if self._connected.is_set():
            self._send_soon(self._submit_frame(pending))
        return fut

    async def submit(self, kind: str, task_input: Any, *, deadline_ms: int | None = None,
                     task_id: str | None = None) -> TaskResult:
        return await self.submit_nowait(kind, task_input, deadline_ms=deadline_ms, task_id=task_id)

    async def fetch(self, task_id: str) -> TaskResult:
        """The result of a task submitted earlier by this gamer (also after a reconnect)."""
        if task_id in self._pending:
            return await self._pending[task_id].future
        fut: asyncio.Future[TaskResult] = asyncio.get_running_loop().create_future()
        self._pending[task_id] = _Pending(task_id, "", None, None, fut, time.perf_counter(), acked=True)
        if self._connected.is_set():
            self._send_soon(p.encode(p.Fetch(task_id)))
        return await fut

    async def stats(self) -> dict[str, Any]:
        await self._connected.wait()
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._stats_waiters.append(fut)
        self._send_soon(p.encode(p.StatsRequest()))
        return await fut

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def _submit_frame(self, pending: _Pending) -> bytes:
        return p.encode(p.Submit(pending.task_id, pending.kind, pending.input, pending.deadline_ms))

    def _send_soon(self, frame: bytes) -> None:
        # A message lost with a dropped link is sent again by the reconnect logic (resubmit or fetch).
        if self._outbox is not None:
            self._outbox.put(frame)

    # Connection -------------------------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = self._backoff_initial_s
        while not self._closed:
            try:
                conn = await self._transport.connect(self.url)
            except ssl.SSLCertVerificationError as exc:  # retrying cannot help: say so at once
                self._fatal = ConnectionError(
                    f"the TLS certificate of {self.url} could not be verified ({exc.verify_message}); "
                    "pass the coordinator's CA certificate with --cafile")
                self._fail_all("tls_verify_failed", str(self._fatal))
                return
            except (OSError, TimeoutError, Exception) as exc:  # noqa: BLE001 - any failure to connect is retried
                log.info("connect to %s failed: %r", self.url, exc)
            else:
                try:
                    await self._handshake(conn)
                    backoff = self._backoff_initial_s
                    await self._read_loop(conn)
                except HandshakeError as exc:
                    if exc.close_code in PERMANENT_CLOSE_CODES or not self._reconnect:
                        self._fatal = exc
                        self._fail_all("refused", exc.message)
                        return
                except Exception as exc:  # noqa: BLE001 - the link dropped; reconnect below
                    log.info("connection to %s lost: %r", self.url, exc)
                    if getattr(getattr(exc, "rcvd", None), "code", None) == p.CLOSE_REPLACED:
                        self._fatal = ConnectionError(
                            f"another client signed in with this gamer's key ({self.identity.path}): give each "
                            "running client its own --name or --key")
                        self._fail_all("replaced", str(self._fatal))
                        return
                finally:
                    self._connected.clear()
                    self._conn = None
                    self._outbox = None
                    with contextlib.suppress(Exception):
                        await conn.close()
            if self._closed:
                return
            if not self._reconnect:
                self._fatal = ConnectionError(f"lost the connection to {self.url}")
                self._fail_all("disconnected", "the connection to the coordinator was lost")
                return
            self.reconnects += 1
            await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
            backoff = min(backoff * 2, self._backoff_max_s)

    async def _handshake(self, conn: Connection) -> None:
        nonce = getattr(conn, "challenge", None)  # from the upgrade response; see p2c2r.identity
        signature = (self.identity.sign_handshake(nonce=nonce, role="gamer", protocol=p.PROTOCOL_VERSION)
                     if nonce is not None else None)
        await conn.send(p.encode(p.Hello(role="gamer", protocol=p.PROTOCOL_VERSION, name=self.name,
                                         resume_id=self.client_id, public_key=self.identity.public_key,
                                         signature=signature, batch=True)))
        try:
            reply = p.decode_from_server(await asyncio.wait_for(conn.recv(), 15.0))
        except Exception as exc:
            code = getattr(getattr(exc, "rcvd", None), "code", 1006)
            reason = getattr(getattr(exc, "rcvd", None), "reason", str(exc))
            raise HandshakeError(reason or "connection closed during handshake", close_code=code) from exc
        if isinstance(reply, p.Error):
            code = p.CLOSE_BAD_HANDSHAKE
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.recv(), 5.0)
            if reply.code == "unsupported_version":
                code = p.CLOSE_UNSUPPORTED_VERSION
            elif reply.code in ("auth_failed",):
                code = p.CLOSE_AUTH_FAILED
            elif reply.code == "banned":
                code = p.CLOSE_BANNED
            raise HandshakeError(reply.message, close_code=code, code=reply.code)
        if not isinstance(reply, p.Welcome):
            raise HandshakeError(f"expected welcome, got {type(reply).__name__}", close_code=p.CLOSE_BAD_HANDSHAKE)
        self.client_id = reply.client_id
        self._conn = conn
        self._outbox = Outbox(conn.send, batch=True, max_frame_bytes=reply.max_message_bytes,
                              send_now=getattr(conn, "send_now", None))
        # Resend what the coordinator never acknowledged; ask for what it did.
        for pending in list(self._pending.values()):
            self._outbox.put(p.encode(p.Fetch(pending.task_id)) if pending.acked else self._submit_frame(pending))
        self._connected.set()

    async def _read_loop(self, conn: Connection) -> None:
        assert self._outbox is not None
        loop = asyncio.get_running_loop()
        keepalive = loop.create_task(self._keepalive(self._outbox))
        writer = loop.create_task(self._outbox.run())
        writer.add_done_callback(_ignore_send_errors)
        try:
            while True:
                frame = await conn.recv()
                for msg in p.decode_server_frame(frame):
                    if isinstance(msg, RemoteProtocolError):
                        log.warning("bad message from coordinator: %s", msg)
                    else:
                        self._on_message(msg)
        finally:
            keepalive.cancel()
            writer.cancel()
            self._outbox = None

    async def _keepalive(self, outbox: Outbox) -> None:
        # The coordinator closes connections that send nothing for its idle timeout; an idle game is not gone.
        while True:
            await asyncio.sleep(GAMER_KEEPALIVE_S)
            outbox.put(p.encode(p.Heartbeat()))

    def _on_message(self, msg: Any) -> None:
        if isinstance(msg, p.Result):
            pending = self._pending.pop(msg.task_id, None)
            if pending is not None and not pending.future.done():
                latency = (time.perf_counter() - pending.submitted_at) * 1000.0
                pending.future.set_result(TaskResult(msg.task_id, msg.kind, msg.output, msg.source, latency,
                                                     msg.latency_ms, msg.cost_micro_usd))
        elif isinstance(msg, p.Ack):
            pending = self._pending.get(msg.task_id)
            if pending is not None:
                pending.acked = True
        elif isinstance(msg, p.Error):
            pending = self._pending.get(msg.task_id) if msg.task_id is not None else None
            if pending is not None and pending.acked and msg.code == p.E_RATE_LIMITED:
                # A fetch refused for now (an acknowledged task is only ever fetched, never resubmitted):
                # the task is fine, so ask again shortly rather than fail it.
                asyncio.get_running_loop().call_later(FETCH_RETRY_S, self._refetch, pending.task_id)
            elif pending is not None:
                del self._pending[pending.task_id]
                if not pending.future.done():
                    pending.future.set_exception(TaskFailed(msg.task_id, msg.code, msg.message))
            else:
                self.errors.append(msg)
                log.warning("coordinator error: %s: %s", msg.code, msg.message)
        elif isinstance(msg, p.Stats):
            while self._stats_waiters:
                waiter = self._stats_waiters.pop(0)
                if not waiter.done():
                    waiter.set_result(msg.body)
                    break

    def _refetch(self, task_id: str) -> None:
        if task_id in self._pending and self._connected.is_set():  # else the reconnect fetches it
            self._send_soon(p.encode(p.Fetch(task_id)))

    def _fail_all(self, code: str, message: str) -> None:
        for pending in list(self._pending.values()):
            if not pending.future.done():
                pending.future.set_exception(TaskFailed(pending.task_id, code, message))
        self._pending.clear()


def _ignore_send_errors(task: asyncio.Task[None]) -> None:
    # A send that fails because the link dropped is retried by the reconnect logic (resubmit or fetch).
    if not task.cancelled():
        task.exception()


def decode_output(result: TaskResult, typ: type) -> Any:
    """A result's output as the kind's typed Output struct."""
    return msgspec.convert(result.output, typ, strict=False)
