"""The three roles end to end: real coordinator and peer processes, a real gamer client, real SQLite."""

from __future__ import annotations

import asyncio
import random
import sqlite3

import msgspec
import pytest
import websockets

from p2c2r import protocol as p
from p2c2r.errors import TaskFailed
from p2c2r.gamer.client import GamerClient
from p2c2r.network_config import COORDINATOR_FEE_BPS, terms_for
from p2c2r.tasks import get_kind, registry
from tests.identity_helpers import signed_hello
from tests.procs import async_wait_until, scaled

LONG_DEADLINE_MS = 120_000  # tasks that must wait for a peer rather than fall back


def expected_output(kind_name: str, task_input) -> object:
    kind = get_kind(kind_name)
    return msgspec.to_builtins(kind.compute(kind.parse_input(task_input)))


def ledger_rows(db_path):
    with sqlite3.connect(db_path) as conn:
        return conn.execute("SELECT posting_key, account, amount_micro_usd FROM ledger").fetchall()


async def test_every_kind_completes_with_the_correct_result(shared_network):
    cloud, _ = shared_network
    rng = random.Random(7)
    async with GamerClient(cloud.url, name="gamer_correct") as client:
        jobs = []
        for kind_name in sorted(registry()):
            for _ in range(3):
                task_input = get_kind(kind_name).example(rng, "small")
                jobs.append((kind_name, task_input, client.submit_nowait(kind_name, task_input, deadline_ms=LONG_DEADLINE_MS)))
        results = await asyncio.wait_for(asyncio.gather(*(j[2] for j in jobs)), scaled(60))
    for (kind_name, task_input, _), result in zip(jobs, results):
        assert result.kind == kind_name
        kind = get_kind(kind_name)
        assert kind.agree(kind.parse_output(result.output), kind.parse_output(expected_output(kind_name, task_input)))
        assert result.source in ("peer", "cache")
        assert result.cost_micro_usd > 0


async def test_identical_task_is_answered_from_cache_without_peer_work(shared_network):
    cloud, _ = shared_network
    task_input = get_kind("ai_pathfinding").example(random.Random(12345), "small")
    async with GamerClient(cloud.url, name="gamer_first") as first:
        r1 = await asyncio.wait_for(first.submit("ai_pathfinding", task_input, deadline_ms=LONG_DEADLINE_MS), scaled(30))
    assert r1.source == "peer"
    done_before = sum(peer["tasks_done"] for peer in cloud.wait_settled()["peers"])
    async with GamerClient(cloud.url, name="gamer_second") as second:
        r2 = await asyncio.wait_for(second.submit("ai_pathfinding", task_input, deadline_ms=LONG_DEADLINE_MS), scaled(30))
    assert r2.source == "cache"
    assert r2.output == r1.output
    assert r2.cost_micro_usd < r1.cost_micro_usd
    assert sum(peer["tasks_done"] for peer in cloud.stats()["peers"]) == done_before


async def test_bad_input_and_unknown_kind_get_named_errors(shared_network):
    cloud, _ = shared_network
    async with GamerClient(cloud.url, name="gamer_bad") as client:
        with pytest.raises(TaskFailed) as info:
            await asyncio.wait_for(client.submit("warp_drive", {}), scaled(10))
        assert info.value.code == "unknown_kind" and "ai_pathfinding" in info.value.reason
        with pytest.raises(TaskFailed) as info:
            await asyncio.wait_for(client.submit("ai_pathfinding", {"width": -1}), scaled(10))
        assert info.value.code == "bad_input"


async def test_malformed_and_oversized_messages_get_errors_while_others_work(shared_network):
    cloud, _ = shared_network
    rng = random.Random(99)
    async with GamerClient(cloud.url, name="gamer_honest") as honest:
        async with websockets.connect(cloud.url, max_size=None) as ws:
            await ws.send(p.encode(signed_hello(ws, role="gamer", name="hostile")))
            assert isinstance(p.decode_from_server(await ws.recv()), p.Welcome)
            honest_jobs = [honest.submit_nowait("ai_npc_dialogue", get_kind("ai_npc_dialogue").example(rng, "small"),
                                                deadline_ms=LONG_DEADLINE_MS) for _ in range(5)]
            hostile_frames = [
                b"\xc1\xc1\xc1",
                msgspec.msgpack.encode({"type": "launch_missiles"}),
                msgspec.msgpack.encode({"type": "submit", "task_id": "x"}),
                msgspec.msgpack.encode({"type": "peer_result", "attempt_id": "a1", "output": 1, "compute_ms": 1.0}),
                "a text frame",
                b"\x00" * (p.MAX_MESSAGE_BYTES + 10),
            ]
            errors = []
            for frame in hostile_frames:
                await ws.send(frame)
                reply = p.decode_from_server(await asyncio.wait_for(ws.recv(), scaled(10)), max_bytes=None)
                assert isinstance(reply, p.Error), reply
                errors.append(reply)
            assert errors[-1].code == p.E_TOO_LARGE and "exceeds the limit" in errors[-1].message
            assert "launch_missiles" in errors[1].message
            assert errors[3].code == p.E_UNEXPECTED
            # The hostile connection still works for honest messages.
            await ws.send(p.encode(p.Fetch("never-submitted")))
            reply = p.decode_from_server(await asyncio.wait_for(ws.recv(), scaled(10)))
            assert isinstance(reply, p.Error) and reply.code == p.E_UNKNOWN_TASK
        results = await asyncio.wait_for(asyncio.gather(*honest_jobs), scaled(30))
    assert all(r.kind == "ai_npc_dialogue" for r in results)


async def test_a_batch_frame_is_answered_message_by_message_and_batched_back_when_asked(shared_network):
    cloud, _ = shared_network
    rng = random.Random(17)
    inputs = [get_kind("ai_pathfinding").example(rng, "small") for _ in range(3)]
    async with websockets.connect(cloud.url, max_size=None) as ws:
        await ws.send(p.encode(signed_hello(ws, role="gamer", name="batcher", batch=True)))
        assert isinstance(p.decode_from_server(await ws.recv()), p.Welcome)
        parts = [p.encode(p.Submit(f"b{i}", "ai_pathfinding", inp, LONG_DEADLINE_MS)) for i, inp in enumerate(inputs)]
        parts.insert(1, msgspec.msgpack.encode({"type": "submit", "task_id": "no-kind"}))
        parts.append(p.encode(p.Fetch("never-submitted")))
        await ws.send(p.batch_frame(parts))
        answers: list[object] = []
        frames = 0
        while sum(isinstance(a, p.Result) for a in answers) < 3:
            answers += p.decode_server_frame(await asyncio.wait_for(ws.recv(), scaled(30)))
            frames += 1
    errors = [a for a in answers if isinstance(a, p.Error)]
    assert [e.code for e in errors] == [p.E_BAD_MESSAGE, p.E_UNKNOWN_TASK]
    assert "message 1 of the batch" in errors[0].message and "kind" in errors[0].message
    assert sorted(a.task_id for a in answers if isinstance(a, p.Ack)) == ["b0", "b1", "b2"]
    results = {a.task_id: msgspec.msgpack.decode(msgspec.msgpack.encode(a.output)) for a in answers
               if isinstance(a, p.Result)}
    assert results == {f"b{i}": msgspec.msgpack.decode(msgspec.msgpack.encode(expected_output("ai_pathfinding", inp)))
                       for i, inp in enumerate(inputs)}
    # Three acks, three results and two errors: what was ready together came back together.
    assert frames < len(answers)


async def test_handshake_refusals_carry_close_codes(shared_network):
    cloud, _ = shared_network
    cases = [
        (p.Hello(role="gamer", protocol=999, name="x"), p.CLOSE_UNSUPPORTED_VERSION, "999"),
        (p.Hello(role="spectator", protocol=p.PROTOCOL_VERSION, name="x"), p.CLOSE_UNKNOWN_ROLE, "spectator"),
        (p.Fetch("t"), p.CLOSE_BAD_HANDSHAKE, "expected hello"),
    ]
    for hello, close_code, needle in cases:
        async with websockets.connect(cloud.url) as ws:
            await ws.send(p.encode(hello))
            reply = p.decode_from_server(await ws.recv())
            assert isinstance(reply, p.Error) and needle in reply.message
            await asyncio.wait_for(ws.wait_closed(), scaled(10))
            assert ws.close_code == close_code


async def test_a_peer_advertises_features_of_the_kinds_it_runs(procs, shared_network):
    cloud = procs.cloud()  # its own coordinator: no gamer there will wait on this hand-made peer
    async with websockets.connect(cloud.url) as ws:
        await ws.send(p.encode(signed_hello(
            ws, role="peer", name="feature_peer", kinds=["ai_npc_dialogue"],
            features=["ai_npc_dialogue:model=big-v1", "physics:soft-bodies"])))
        assert isinstance(p.decode_from_server(await ws.recv()), p.Welcome)
        stats = await asyncio.to_thread(
            cloud.wait_for_stat, lambda s: any(e["name"] == "feature_peer" for e in s["peers"]), "the peer in the stats")
    # Only features of kinds it runs count.
    [entry] = stats["peers"]
    assert entry["kinds"] == ["ai_npc_dialogue"] and entry["features"] == ["ai_npc_dialogue:model=big-v1"]
    # A real peer process with the shipped models runs every kind and advertises no extras.
    shared_cloud, _ = shared_network
    real = shared_cloud.stats()["peers"]
    assert real and all(e["kinds"] == sorted(registry()) and e["features"] == [] for e in real)


def test_healthz_answers_plain_http(shared_network):
    cloud, _ = shared_network
    assert cloud.get("/healthz") == (200, b"ok\n")


async def test_tasks_queue_without_peers_and_complete_when_one_connects(procs):
    cloud = procs.cloud()
    rng = random.Random(3)
    async with GamerClient(cloud.url, name="gamer_waiting") as client:
        futures = [client.submit_nowait("ai_pathfinding", get_kind("ai_pathfinding").example(rng, "small"),
                                        deadline_ms=LONG_DEADLINE_MS) for _ in range(6)]
        await asyncio.to_thread(cloud.wait_for_stat, lambda s: s["tasks"]["queued"] == 6, "6 queued tasks")
        assert not any(f.done() for f in futures)
        procs.peer(cloud, "late_peer")
        results = await asyncio.wait_for(asyncio.gather(*futures), scaled(90))
    assert {r.source for r in results} == {"peer"}
    assert cloud.stats()["cloud_fallback"] == 0


async def test_peer_killed_mid_task_costs_no_task(procs):
    cloud = procs.cloud()
    doomed = procs.peer(cloud, "doomed_peer", slots=1)
    cloud.wait_for_peers(1)
    rng = random.Random(5)
    async with GamerClient(cloud.url, name="gamer_failover") as client:
        futures = [client.submit_nowait("rt_reflections", get_kind("rt_reflections").example(rng, "large"),
                                        deadline_ms=LONG_DEADLINE_MS) for _ in range(8)]
        await asyncio.to_thread(cloud.wait_for_stat, lambda s: s["tasks"]["in_flight"] >= 1, "a task running on the peer")
        doomed.kill()
        await asyncio.to_thread(cloud.wait_for_stat, lambda s: len(s["peers"]) == 0, "the coordinator to notice the dead peer")
        procs.peer(cloud, "backup_peer", slots=1)
        results = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), scaled(120))
    assert all(not isinstance(r, BaseException) for r in results), results
    assert len(results) == 8
    assert cloud.stats()["rerouted"] >= 1


async def test_coordinator_killed_and_restarted_completes_every_acknowledged_task(procs):
    cloud = procs.cloud()
    rng = random.Random(11)
    inputs = [get_kind("ai_npc_dialogue").example(rng, "small") for _ in range(10)]
    client = GamerClient(cloud.url, name="gamer_survivor", backoff_max_s=0.5)
    await client.connect()
    try:
        futures = [client.submit_nowait("ai_npc_dialogue", inp, deadline_ms=LONG_DEADLINE_MS) for inp in inputs]
        await async_wait_until(lambda: len(client._pending) == 10 and all(t.acked for t in client._pending.values()),
                               20, "every task to be acknowledged")
        cloud.kill()
        restarted = await asyncio.to_thread(procs.cloud, port=cloud.port)
        assert "Resumed 10 unfinished task(s)" in restarted.output
        procs.peer(restarted, "rescuer")
        results = await asyncio.wait_for(asyncio.gather(*futures), scaled(90))
    finally:
        await client.close()
    for inp, result in zip(inputs, results):
        assert result.output == expected_output("ai_npc_dialogue", inp)
    assert client.reconnects >= 1


async def test_ledger_sums_to_zero_and_matches_prices(procs):
    cloud = procs.cloud()
    procs.peer(cloud, "earner")
    cloud.wait_for_peers(1)
    rng = random.Random(21)
    async with GamerClient(cloud.url, name="gamer_payer") as client:
        results = await asyncio.wait_for(asyncio.gather(*[
            client.submit("ai_pathfinding", get_kind("ai_pathfinding").example(rng, "small"), deadline_ms=LONG_DEADLINE_MS)
            for _ in range(10)]), scaled(60))
    cloud.wait_settled()
    rows = ledger_rows(cloud.db_path)
    assert sum(amount for _, _, amount in rows) == 0
    # The gamer's one-time free allowance (open mode) is a credit from funding, not a task charge.
    rows = [row for row in rows if not row[0].startswith("allowance:")]
    price = terms_for("ai_pathfinding").price_micro_usd
    fee = price * COORDINATOR_FEE_BPS // 10_000
    charges = {}
    for key, account, amount in rows:
        charges.setdefault(key, {})[account.split(":")[0]] = amount
    peer_billed = [c for c in charges.values() if "peer" in c]
    assert len(charges) == 10  # billed exactly once each
    for c in peer_billed:
        assert c == {"gamer": -price, "peer": price - fee, "coordinator": fee}
    assert sum(r.cost_micro_usd for r in results) == -sum(a for _, acc, a in rows if acc.startswith("gamer:"))
    stats = cloud.stats()
    assert stats["ledger"]["balanced"] and stats["ledger"]["balance_micro_usd"] == 0
