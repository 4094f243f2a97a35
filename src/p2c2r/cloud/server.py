"""The coordinator's network edge: WebSocket handshake, per-connection sessions, heartbeats, shutdown.

Each connection must open with ``Hello``. A bad hello is answered with an ``Error`` and a close code that
says why (see ``protocol.CLOSE_*``). After it, every frame is decoded and validated; a bad frame gets an
``Error`` naming the problem and the connection keeps going. Messages are handed to the ``Coordinator``.
Outgoing frames go through a per-session queue drained by one writer task, so the coordinator can send
from synchronous code without waiting on slow clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import websockets
from websockets.asyncio.server import Server, ServerConnection, serve

from p2c2r import protocol as p
from p2c2r.cloud.admission import Admission, AdmissionLimits
from p2c2r.cloud.coordinator import Coordinator
from p2c2r.cloud.gate import Gate
from p2c2r.cloud.http import HttpRoutes
from p2c2r.cloud.store import Store
from p2c2r.console import Console
from p2c2r.errors import RemoteProtocolError
from p2c2r.network_config import (
    DEFAULT_DB_PATH,
    DEFAULT_HOST,
    DEFAULT_PORT,
    FETCH_BURST,
    FETCH_RATE_PER_S,
    FREE_ALLOWANCE_MICRO_USD,
    HANDSHAKE_TIMEOUT_S,
    HEARTBEAT_INTERVAL_S,
    HEARTBEAT_MISSES_ALLOWED,
    IDLE_TIMEOUT_S,
    MAX_BACKLOG_BYTES,
    MAX_CONNECTIONS_PER_ADDRESS,
    MAX_IN_FLIGHT_PER_GAMER,
    MAX_MESSAGE_BYTES,
    MAX_QUEUED_TASKS,
    SUBMIT_BURST,
    SUBMIT_RATE_PER_S,
)
from p2c2r.outbox import Outbox, immediate_sender

log = logging.getLogger(__name__)

# A connection closed for not reading gets this long for the closing handshake before its link is cut.
UNREAD_CLOSE_GRACE_S = 2.0

SUMMARY_INTERVAL_S = 10.0


@dataclass
class ServerSettings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    db_path: str = DEFAULT_DB_PATH
    # Timeouts
    handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S
    heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S
    heartbeat_misses_allowed: int = HEARTBEAT_MISSES_ALLOWED
    idle_timeout_s: float | None = IDLE_TIMEOUT_S
    # Limits (None: no limit); see cloud/gate.py and cloud/admission.py
    max_message_bytes: int = MAX_MESSAGE_BYTES
    max_queued: int | None = MAX_QUEUED_TASKS
    max_in_flight_per_gamer: int | None = MAX_IN_FLIGHT_PER_GAMER
    submit_rate_per_s: float | None = SUBMIT_RATE_PER_S
    submit_burst: int = SUBMIT_BURST
    fetch_rate_per_s: float | None = FETCH_RATE_PER_S
    fetch_burst: int = FETCH_BURST
    max_connections_per_address: int | None = MAX_CONNECTIONS_PER_ADDRESS
    max_backlog_bytes: int | None = MAX_BACKLOG_BYTES
    fallback_workers: int = 1
    # Access: open (trust on first use, with a one-time free allowance) or closed (allow-list only)
    closed: bool = False
    free_allowance_micro_usd: int = FREE_ALLOWANCE_MICRO_USD
    # Transport
    certfile: str | None = None
    keyfile: str | None = None
    synchronous: str = "NORMAL"


class WsSession:
    """One authenticated connection: its id, its label, and a non-blocking ``send``."""

    def __init__(self, ws: ServerConnection, client_id: str, name: str, role: str, *, batch: bool,
                 max_frame_bytes: int, max_backlog_bytes: int | None = None,
                 on_backlog: Callable[[WsSession, int], None] | None = None) -> None:
        self.ws = ws
        self.client_id = client_id
        self.name = name
        self.role = role
        self.last_recv = time.monotonic()  # the idle timeout's clock (cloud/gate.py)
        remote = ws.remote_address
        self.address = str(remote[0]) if remote else "?"
        self._outbox = Outbox(ws.send, batch=batch, max_frame_bytes=max_frame_bytes, send_now=immediate_sender(ws),
                              max_queued_bytes=max_backlog_bytes,
                              on_overflow=(lambda waiting: on_backlog(self, waiting)) if on_backlog else None)
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())
        self.closed = False

    def send(self, message: msgspec.Struct) -> None:
        if not self.closed:
            self._outbox.put(p.encode(message))

    def send_encoded(self, frame: bytes) -> None:
        """``send`` for a message already encoded (one encoding that several replies share)."""
        if not self.closed:
            self._outbox.put(frame)

    def drop_unread(self, close_code: int, reason: str) -> None:
        """Close a connection that is not reading: nothing more is sent, and since the closing handshake may
        never complete, the link is cut after ``UNREAD_CLOSE_GRACE_S``."""
        self.stop_sending()
        asyncio.get_running_loop().create_task(self._close_or_abort(close_code, reason))

    async def _close_or_abort(self, close_code: int, reason: str) -> None:
        try:
            await asyncio.wait_for(self.ws.close(close_code, reason[:120]), UNREAD_CLOSE_GRACE_S)
        except TimeoutError:
            self.ws.transport.abort()

    async def _write_loop(self) -> None:
        try:
            await self._outbox.run()
        except websockets.ConnectionClosed:
            self.closed = True

    def kick(self, close_code: int, reason: str) -> None:
        """Close from synchronous code (e.g. a ban): queued messages go out first."""
        asyncio.get_running_loop().create_task(self.close(close_code, reason))

    def stop_sending(self) -> None:
        self.closed = True
        self._outbox.close()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.stop_sending()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._writer, 2.0)
        await self.ws.close(code, reason[:120])


class CoordinatorServer:
    def __init__(self, settings: ServerSettings, *, console: Console | None = None) -> None:
        self.settings = settings
        self.console = console or Console()
        self.store = Store(settings.db_path, synchronous=settings.synchronous)
        self.coordinator = Coordinator(self.store, console=self.console, fallback_workers=settings.fallback_workers,
                                       max_queued=settings.max_queued)
        self.coordinator.admission = Admission(
            AdmissionLimits(settings.max_in_flight_per_gamer, settings.submit_rate_per_s, settings.submit_burst,
                            settings.fetch_rate_per_s, settings.fetch_burst),
            balance_of=lambda gamer_id: self.store.balance(f"gamer:{gamer_id}"))
        self.gate = Gate(self.store, self.coordinator, closed=settings.closed,
                         free_allowance_micro_usd=settings.free_allowance_micro_usd,
                         max_connections_per_address=settings.max_connections_per_address,
                         idle_timeout_s=settings.idle_timeout_s)
        self._idle: asyncio.Task[None] | None = None
        self._server: Server | None = None
        self._sessions: dict[str, WsSession] = {}
        self._monitor: asyncio.Task[None] | None = None
        self._summary: asyncio.Task[None] | None = None
        self.http = HttpRoutes(self.coordinator)

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.settings.certfile:
            return None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.settings.certfile, self.settings.keyfile)
        return ctx

    async def start(self) -> None:
        self.store.open()
        first_start = await self._ensure_admin_token()
        await self.coordinator.start()
        self._server = await serve(
            self._handle,
            self.settings.host,
            self.settings.port,
            # websockets closes with 1009 above its own cap; between the protocol limit and this cap a
            # message gets a readable Error instead, and the connection survives.
            max_size=2 * self.settings.max_message_bytes,
            process_request=self.http,
            process_response=self.gate.process_response,  # the identity challenge, connections per address
            ping_interval=max(self.settings.heartbeat_interval_s * 5, 5.0),
            ping_timeout=max(self.settings.heartbeat_interval_s * 10, 10.0),
            compression=None,
            ssl=self.ssl_context(),
            server_header="p2c2r",
        )
        self._monitor = asyncio.get_running_loop().create_task(self._monitor_heartbeats())
        self._summary = asyncio.get_running_loop().create_task(self._print_summaries())
        self._idle = asyncio.get_running_loop().create_task(self.gate.watch_idle(self._sessions, self._drop))
        scheme = "wss" if self.settings.certfile else "ws"
        self.console.banner("☁️  P2C2R CLOUD COORDINATOR")
        self.console.line(f"🌐 Server started on {self.settings.host}:{self.port} ({scheme}://, {'https' if scheme == 'wss' else 'http'}:// on the same port)")
        self.console.line(f"💾 Database: {self.settings.db_path} (storing all computations)")
        self.console.line("🔒 Closed: only keys on the allow-list may join (p2c2r admin add)" if self.settings.closed
                          else "🔓 Open: any new key may join (trust on first use)")
        if first_start:
            self.console.line(f"🔑 Admin token (shown once; also in the database): {self.coordinator.admin_token}")
        self.console.line("")

    async def _ensure_admin_token(self) -> bool:
        """The admin token is made at the first start on a database and kept in it; True if made now."""
        token = self.store.meta("admin_token")
        if token is not None:
            self.coordinator.admin_token = token
            return False
        token = secrets.token_urlsafe(24)
        await self.store.set_meta("admin_token", token)
        self.coordinator.admin_token = token
        return True

    async def stop(self) -> None:
        for task in (self._monitor, self._summary, self._idle):
            if task is not None:
                task.cancel()
        if self._server is not None:
            self._server.close(close_connections=False)
            await self.http.close()
            for session in list(self._sessions.values()):
                await session.close(p.CLOSE_SHUTTING_DOWN, "coordinator shutting down")
            await self._server.wait_closed()
        await self.coordinator.stop()
        self.console.line("")
        for line in self.coordinator.summary_lines():
            self.console.line(line)
        self.store.close()

    # Connections ------------------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        if ws.request is not None and ws.request.path.split("?", 1)[0] == "/live":  # the dashboard's feed
            await self.http.serve_live(ws)
            return
        hello = await self._read_hello(ws)
        if hello is None:
            return
        client_id = await self.gate.authenticate(ws, hello)  # signature, pinned key, allow-list
        if client_id is None:
            return
        if hello.role == "peer" and self.coordinator.is_banned(client_id):
            await self._refuse(ws, p.CLOSE_BANNED, "banned", "this peer is banned for returning invalid results")
            return
        previous = self._sessions.get(client_id)
        if previous is not None:  # the same client reconnected before we noticed it left
            await self._drop(previous, "another connection signed in with this key: give each process its own --name or --key",
                             p.CLOSE_REPLACED)
        # Sent before the session exists, so that it leaves alone, ahead of anything the session sends.
        try:
            await ws.send(p.encode(p.Welcome(client_id, p.PROTOCOL_VERSION, self.settings.heartbeat_interval_s,
                                             self.settings.max_message_bytes)))
        except websockets.ConnectionClosed:
            return
        session = WsSession(ws, client_id, hello.name, hello.role, batch=hello.batch,
                            max_frame_bytes=self.settings.max_message_bytes,
                            max_backlog_bytes=self.settings.max_backlog_bytes, on_backlog=self._on_backlog)
        self._sessions[client_id] = session
        try:
            if hello.role == "peer":
                await self.store.upsert_peer(client_id, hello.name, hello.public_key)
                self.coordinator.peer_joined(session, slots=hello.slots, kinds=hello.kinds, features=hello.features)
            else:
                await self.store.upsert_gamer(client_id, hello.name, hello.public_key)
                await self.gate.admit_gamer(client_id)
                self.coordinator.gamer_joined(session)
            await self._serve(session)
        except websockets.ConnectionClosed:
            pass  # the peer or gamer went away (or was kicked): clean up below
        finally:
            if self._sessions.get(client_id) is session:
                del self._sessions[client_id]
            if hello.role == "peer":
                self.coordinator.peer_left(session)
            else:
                self.coordinator.gamer_left(session)
            session.stop_sending()

    async def _read_hello(self, ws: ServerConnection) -> p.Hello | None:
        try:
            frame = await asyncio.wait_for(ws.recv(), self.settings.handshake_timeout_s)
        except TimeoutError:
            await ws.close(p.CLOSE_HANDSHAKE_TIMEOUT, f"no hello within {self.settings.handshake_timeout_s:g} s")
            return None
        except websockets.ConnectionClosed:
            return None
        try:
            msg = p.decode_from_client(frame, max_bytes=self.settings.max_message_bytes)
        except RemoteProtocolError as exc:
            await self._refuse(ws, p.CLOSE_BAD_HANDSHAKE, exc.code, f"bad hello: {exc}")
            return None
        if not isinstance(msg, p.Hello):
            await self._refuse(ws, p.CLOSE_BAD_HANDSHAKE, p.E_UNEXPECTED, f"expected hello first, got {type(msg).__name__}")
            return None
        if msg.protocol != p.PROTOCOL_VERSION:
            await self._refuse(ws, p.CLOSE_UNSUPPORTED_VERSION, "unsupported_version",
                               f"protocol version {msg.protocol} is not supported; this coordinator speaks {p.PROTOCOL_VERSION}")
            return None
        if msg.role not in ("peer", "gamer"):
            await self._refuse(ws, p.CLOSE_UNKNOWN_ROLE, "unknown_role", f"unknown role {msg.role!r}: use 'peer' or 'gamer'")
            return None
        if msg.role == "peer" and msg.slots < 1:
            await self._refuse(ws, p.CLOSE_BAD_HANDSHAKE, p.E_BAD_MESSAGE, "a peer must offer at least one slot")
            return None
        return msg

    async def _refuse(self, ws: ServerConnection, close_code: int, code: str, message: str) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            await ws.send(p.encode(p.Error(code, message[:2000])))
            await ws.close(close_code, message[:120])

    async def _serve(self, session: WsSession) -> None:
        coordinator = self.coordinator
        is_peer = session.role == "peer"
        max_bytes = self.settings.max_message_bytes
        async for frame in session.ws:
            session.last_recv = time.monotonic()
            # Stats requests of one frame share one answer: a batch of 1,024 costs one computation.
            stats_reply: bytes | None = None
            for msg in p.decode_client_frame(frame, max_bytes=max_bytes):
                if isinstance(msg, RemoteProtocolError):
                    coordinator.counters.bad_messages += 1
                    session.send(p.Error(msg.code, str(msg)[:2000]))
                elif isinstance(msg, p.StatsRequest):
                    if stats_reply is None:
                        stats_reply = p.encode(p.Stats(coordinator.public_stats()))
                    session.send_encoded(stats_reply)
                elif is_peer:
                    if isinstance(msg, p.PeerResult):
                        coordinator.peer_heartbeat(session)
                        coordinator.peer_result(session, msg)
                    elif isinstance(msg, p.Heartbeat):
                        coordinator.peer_heartbeat(session)
                    elif isinstance(msg, p.PeerError):
                        coordinator.peer_heartbeat(session)
                        coordinator.peer_error(session, msg)
                    else:
                        self._unexpected(session, msg)
                elif isinstance(msg, p.Submit):
                    coordinator.submit(session, msg)
                elif isinstance(msg, p.Fetch):
                    coordinator.fetch(session, msg)
                elif isinstance(msg, p.Heartbeat):
                    pass
                else:
                    self._unexpected(session, msg)

    def _on_backlog(self, session: WsSession, waiting_bytes: int) -> None:
        # It sends and does not read: rather than hold ever more for it, let it go (a client reconnects and
        # fetches its results; a peer's work is re-routed as for any lost peer).
        self.coordinator.counters.backlog_closes += 1
        log.warning("closing %s %s: %d bytes wait for it to read", session.role, session.client_id, waiting_bytes)
        session.drop_unread(p.CLOSE_BACKLOG, f"not reading: {waiting_bytes} bytes of messages wait for you")

    def _unexpected(self, session: WsSession, msg: Any) -> None:
        self.coordinator.counters.bad_messages += 1
        session.send(p.Error(p.E_UNEXPECTED, f"a {session.role} may not send {type(msg).__name__} messages"))

    async def _drop(self, session: WsSession, reason: str, code: int = 1000) -> None:
        if self._sessions.get(session.client_id) is session:
            del self._sessions[session.client_id]
        if session.role == "peer":
            self.coordinator.peer_left(session, reason)
        else:
            self.coordinator.gamer_left(session)
        await session.close(code, reason)

    async def _monitor_heartbeats(self) -> None:
        silence = self.settings.heartbeat_interval_s * self.settings.heartbeat_misses_allowed
        period = self.settings.heartbeat_interval_s / 2
        loop = asyncio.get_running_loop()
        while True:
            slept_from = loop.time()
            await asyncio.sleep(period)
            if loop.time() - slept_from > period + 1.0:
                # The event loop itself stalled: heartbeats may be waiting unread in the sockets. Give the
                # connections a round to catch up instead of dropping healthy peers as silent.
                continue
            for session in self.coordinator.silent_peers(silence):
                assert isinstance(session, WsSession)
                await self._drop(session, f"silent for {silence:g} s", p.CLOSE_IDLE)

    async def _print_summaries(self) -> None:
        last: tuple[int, int, int] | None = None
        while True:
            await asyncio.sleep(SUMMARY_INTERVAL_S)
            c = self.coordinator
            now = (c.counters.completed, len(c.peers), len(c.gamers))
            if now != last:
                last = now
                self.console.line("")
                for line in c.summary_lines():
                    self.console.line(line)


async def run_coordinator(settings: ServerSettings, *, console: Console | None = None) -> None:
    server = CoordinatorServer(settings, console=console)
    await server.start()
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    try:
        await stop
    finally:
        await server.stop()
