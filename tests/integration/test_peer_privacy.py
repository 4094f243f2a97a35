"""A peer sees only what its task needs: every frame sent to a peer is inspected for the gamer's identity."""

from __future__ import annotations

import asyncio
import random

import msgspec
import websockets

from p2c2r import protocol as p
from p2c2r.gamer.client import GamerClient
from p2c2r.tasks import get_kind
from tests.identity_helpers import signed_hello
from tests.procs import scaled

GAMER_NAME = "gamer_with_a_very_recognisable_name"


async def test_peers_never_see_gamer_identity(procs):
    cloud = procs.cloud()
    frames: list[bytes] = []
    async with websockets.connect(cloud.url) as peer_ws:
        await peer_ws.send(p.encode(signed_hello(peer_ws, role="peer", name="spy_peer", slots=4,
                                                 kinds=["ai_npc_dialogue"])))
        welcome = p.decode_from_server(await peer_ws.recv())
        assert isinstance(welcome, p.Welcome)

        async def serve_honestly() -> None:
            async for frame in peer_ws:
                frames.append(frame)
                msg = p.decode_from_server(frame)
                if isinstance(msg, p.Assign):
                    kind = get_kind(msg.kind)
                    out = kind.compute(kind.parse_input(msgspec.msgpack.decode(msg.input)))
                    await peer_ws.send(p.encode(p.PeerResult(msg.attempt_id, msgspec.to_builtins(out), 1.0)))

        server = asyncio.ensure_future(serve_honestly())
        rng = random.Random(8)
        async with GamerClient(cloud.url, name=GAMER_NAME) as gamer:
            task_ids = [f"secret-session-{i}" for i in range(6)]
            results = await asyncio.wait_for(asyncio.gather(*(
                gamer.submit("ai_npc_dialogue", get_kind("ai_npc_dialogue").example(rng, "small"),
                             deadline_ms=60_000, task_id=tid) for tid in task_ids)), scaled(60))
            gamer_id = gamer.client_id
        server.cancel()
    assert any(r.source in ("peer", "cloud") for r in results)
    assigns = [p.decode_from_server(f) for f in frames if isinstance(p.decode_from_server(f), p.Assign)]
    assert assigns, "the spy peer was never given work"
    forbidden = [gamer_id.encode(), GAMER_NAME.encode(), b"secret-session", b"gamer_"]
    for frame in frames:
        for needle in forbidden:
            assert needle not in frame, f"{needle!r} leaked to a peer in {p.decode_from_server(frame)!r}"
    for msg in assigns:
        assert set(msgspec.structs.asdict(msg)) == {"attempt_id", "kind", "input", "deadline_ms"}
