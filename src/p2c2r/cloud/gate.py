"""Who gets in: the identity challenge, open and closed modes, pinned keys, connection limits, idle sessions.

Every WebSocket upgrade the coordinator accepts carries a fresh 32-byte nonce in the
``X-P2C2R-Challenge`` response header (``process_response``); the client signs it in its ``Hello``
(``p2c2r.identity``), so proving a key costs no round trip beyond the one the handshake already has.
``authenticate`` checks the signature and derives the client id from the public key; the id is then
bound to that key for good (the key is pinned in the ``peers``/``gamers`` row on first use), so an id
collision cannot take over an account.

Modes:

    open (default)   trust on first use: any new key may join; a new gamer is credited the free allowance
                     once (``FREE_ALLOWANCE_MICRO_USD``, ledger posting ``allowance:<gamer id>``)
    closed           only keys on the ``allowlist`` table (``p2c2r admin add``) may join; entries are
                     client ids or public keys (hex); no allowance, gamers are credited by the operator

Connections per address are counted from the upgrade to the close; one over ``max_connections_per_address``
is answered ``HTTP 429`` before any WebSocket exists. ``watch_idle`` closes sessions that sent nothing for
``idle_timeout_s`` with ``CLOSE_IDLE``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import websockets
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from p2c2r import protocol as p
from p2c2r.cloud import ledger
from p2c2r.identity import CHALLENGE_HEADER, NONCE_BYTES, client_id_for, parse_nonce, verify_handshake

if TYPE_CHECKING:
    from p2c2r.cloud.coordinator import Coordinator
    from p2c2r.cloud.store import Store

log = logging.getLogger(__name__)


class Gate:
    def __init__(
        self,
        store: Store,
        coordinator: Coordinator,
        *,
        closed: bool = False,
        free_allowance_micro_usd: int = 0,
        max_connections_per_address: int | None = None,
        idle_timeout_s: float | None = None,
    ) -> None:
        self.store = store
        self.coordinator = coordinator
        self.closed = closed
        self.free_allowance_micro_usd = 0 if closed else max(0, free_allowance_micro_usd)
        self.max_connections_per_address = max_connections_per_address
        self.idle_timeout_s = idle_timeout_s
        self.connections: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self._watchers: set[asyncio.Task[Any]] = set()

    # Upgrade ----------------------------------------------------------------------------------------

    def process_response(self, connection: ServerConnection, request: Request, response: Response) -> Response | None:
        """websockets' ``process_response``: count the connection and hand it its challenge."""
        if response.status_code != 101:
            return None
        address = _address(connection)
        limit = self.max_connections_per_address
        if limit is not None and self.connections[address] >= limit:
            self.refused["too_many_connections"] += 1
            return connection.respond(
                429, f"too many connections from {address}: at most {limit} at once; close some and retry\n")
        self.connections[address] += 1
        watcher = asyncio.get_running_loop().create_task(self._count_until_closed(connection, address))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        response.headers[CHALLENGE_HEADER] = _new_nonce().hex()
        return None

    async def _count_until_closed(self, connection: ServerConnection, address: str) -> None:
        try:
            await connection.wait_closed()
        finally:
            self.connections[address] -= 1
            if self.connections[address] <= 0:
                del self.connections[address]

    # Handshake --------------------------------------------------------------------------------------

    async def authenticate(self, ws: ServerConnection, hello: p.Hello) -> str | None:
        """The client id the hello proves, or None after refusing the connection with a close code."""
        nonce = parse_nonce(ws.response.headers.get(CHALLENGE_HEADER) if ws.response is not None else None)
        if hello.public_key is None or hello.signature is None or nonce is None:
            return await self._refuse(ws, "unsigned", "this coordinator requires a signed hello: sign the "
                                      f"{CHALLENGE_HEADER} nonce with your Ed25519 key (update the client)")
        if not verify_handshake(public_key=hello.public_key, signature=hello.signature, nonce=nonce,
                                role=hello.role, protocol=hello.protocol):
            return await self._refuse(ws, "bad_signature", "the signature does not prove the public key: it must "
                                      "sign this connection's challenge, role and protocol version")
        client_id = client_id_for(hello.role, hello.public_key)
        table = "peers" if hello.role == "peer" else "gamers"
        rows = self.store._read(f"SELECT public_key FROM {table} WHERE id = ?", (client_id,))
        if rows and rows[0][0] is not None and bytes(rows[0][0]) != hello.public_key:
            return await self._refuse(ws, "key_mismatch", f"the id {client_id} is bound to another key")
        if self.closed and not self.store._read(
            "SELECT 1 FROM allowlist WHERE entry IN (?, ?) LIMIT 1", (client_id, hello.public_key.hex())
        ):
            return await self._refuse(
                ws, "not_allowed",
                f"this coordinator is closed and {client_id} is not on its allow-list; ask its operator to run "
                f"'p2c2r admin add {client_id}' (public key {hello.public_key.hex()})")
        return client_id

    async def _refuse(self, ws: ServerConnection, why: str, message: str) -> None:
        self.refused[why] += 1
        log.info("refused %s: %s", _address(ws), message)
        with contextlib.suppress(websockets.ConnectionClosed):
            await ws.send(p.encode(p.Error(p.E_AUTH_FAILED, message[:2000])))
            await ws.close(p.CLOSE_AUTH_FAILED, message[:120])
        return None

    async def admit_gamer(self, gamer_id: str) -> None:
        """Before the gamer's first message: the one-time allowance (open mode), then its balance from the
        ledger into memory (at every join, so that credit posted while it was away counts at once)."""
        admission = self.coordinator.admission
        if self.free_allowance_micro_usd > 0 and not admission.is_loaded(gamer_id):
            posting = ledger.credit_gamer(key=f"allowance:{gamer_id}", gamer_id=gamer_id,
                                          amount_micro_usd=self.free_allowance_micro_usd, memo="free allowance")
            now = time.time()
            rows = [(posting.key, None, e.account, e.amount_micro_usd, e.memo, now) for e in posting.entries]
            # Idempotent: the posting key is unique per account, so a second first join credits nothing.
            await self.store.write(lambda conn: conn.executemany(
                "INSERT OR IGNORE INTO ledger (posting_key, task_id, account, amount_micro_usd, memo, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)", rows))
        admission.load(gamer_id, self.store.balance(ledger.gamer_account(gamer_id)))

    # Idle sessions ----------------------------------------------------------------------------------

    async def watch_idle(self, sessions: Mapping[str, Any], drop: Callable[[Any, str, int], Awaitable[None]]) -> None:
        """Close sessions (objects with ``last_recv``, monotonic seconds) that have sent nothing for too long."""
        timeout = self.idle_timeout_s
        if not timeout:
            return
        while True:
            await asyncio.sleep(min(1.0, timeout / 4))
            cutoff = time.monotonic() - timeout
            for session in [s for s in sessions.values() if s.last_recv < cutoff]:
                self.refused["idle"] += 1
                await drop(session, f"idle: nothing received for {timeout:g} s", p.CLOSE_IDLE)


def _new_nonce() -> bytes:
    return secrets.token_bytes(NONCE_BYTES)


def _address(connection: ServerConnection) -> str:
    remote = connection.remote_address
    return str(remote[0]) if remote else "?"
