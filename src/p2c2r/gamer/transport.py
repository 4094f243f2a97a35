"""The seam between the gamer client and the network (as httpx's transports).

``WebSocketTransport`` is the real one. Tests of game logic may hand the client any object with the same
``connect`` coroutine, returning something with ``send``, ``recv`` and ``close`` (and ``challenge``, the
coordinator's nonce as bytes, to sign in to a real coordinator).
"""

from __future__ import annotations

import ssl
from typing import Protocol

from websockets.asyncio.client import ClientConnection, connect

from p2c2r.identity import CHALLENGE_HEADER, parse_nonce
from p2c2r.network_config import MAX_MESSAGE_BYTES
from p2c2r.outbox import immediate_sender


class Connection(Protocol):
    async def send(self, frame: bytes) -> None: ...
    async def recv(self) -> bytes: ...
    async def close(self) -> None: ...


class Transport(Protocol):
    async def connect(self, url: str) -> Connection: ...


class _WsConnection:
    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        # The coordinator's identity challenge, from the upgrade response (p2c2r.identity).
        self.challenge = parse_nonce(ws.response.headers.get(CHALLENGE_HEADER)) if ws.response else None
        self.send_now = immediate_sender(ws)  # optional for a Connection: see Outbox

    async def send(self, frame: bytes) -> None:
        await self._ws.send(frame)

    async def recv(self) -> bytes:
        frame = await self._ws.recv()
        return frame if isinstance(frame, bytes) else frame.encode()

    async def close(self) -> None:
        await self._ws.close()


class WebSocketTransport:
    def __init__(self, *, ssl_context: ssl.SSLContext | None = None, max_message_bytes: int = MAX_MESSAGE_BYTES,
                 open_timeout_s: float = 10.0) -> None:
        self._ssl = ssl_context
        self._max_size = 2 * max_message_bytes
        self._open_timeout_s = open_timeout_s

    async def connect(self, url: str) -> Connection:
        ws = await connect(url, ssl=self._ssl, max_size=self._max_size, open_timeout=self._open_timeout_s,
                           compression=None)
        return _WsConnection(ws)
