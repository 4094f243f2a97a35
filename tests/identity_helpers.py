"""Signing in by hand, for tests that speak the wire protocol over raw websockets connections.

    async with websockets.connect(url) as ws:
        await ws.send(p.encode(signed_hello(ws, role="gamer", name="me")))
        assert isinstance(p.decode_from_server(await ws.recv()), p.Welcome)
"""

from __future__ import annotations

from typing import Any

from p2c2r import protocol as p
from p2c2r.identity import CHALLENGE_HEADER, Identity, parse_nonce


def challenge_of(ws: Any) -> bytes:
    """The nonce the coordinator put in the upgrade response of this websockets client connection."""
    nonce = parse_nonce(ws.response.headers.get(CHALLENGE_HEADER))
    assert nonce is not None, f"no {CHALLENGE_HEADER} header in the upgrade response"
    return nonce


def signed_hello(ws: Any, *, role: str = "gamer", name: str = "tester", identity: Identity | None = None,
                 protocol: int = p.PROTOCOL_VERSION, **fields: Any) -> p.Hello:
    """A Hello that proves ``identity`` (a fresh key if None) for this connection."""
    identity = identity or Identity.generate()
    if role == "peer":
        fields.setdefault("slots", 1)
    signature = identity.sign_handshake(nonce=challenge_of(ws), role=role, protocol=protocol)
    return p.Hello(role=role, protocol=protocol, name=name, public_key=identity.public_key, signature=signature,
                   **fields)


async def sign_in(ws: Any, *, role: str = "gamer", name: str = "tester", identity: Identity | None = None,
                  **fields: Any) -> p.Welcome:
    """Send a signed Hello and return the Welcome (fails the test on anything else)."""
    await ws.send(p.encode(signed_hello(ws, role=role, name=name, identity=identity, **fields)))
    reply = p.decode_from_server(await ws.recv())
    assert isinstance(reply, p.Welcome), reply
    return reply
