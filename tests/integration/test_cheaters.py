"""Testing validation, the counterpart of the seed's failover drill: honest peers and a cheater in every
mode share one network; no corrupt result reaches the gamer, cheaters end banned and unpaid, honest peers
end trusted and paid, and the ledger still sums to zero."""

from __future__ import annotations

import asyncio
import random
import sqlite3

from p2c2r.gamer.client import GamerClient
from p2c2r.peer.cheats import MODES
from p2c2r.tasks import get_kind
from tests.procs import scaled

KINDS = ("ai_pathfinding", "ai_npc_dialogue", "physics", "rt_reflections")
TASKS = 1200


def honest(kind_name: str, raw):
    kind = get_kind(kind_name)
    return kind.compute(kind.parse_input(raw))


async def test_cheaters_are_caught_banned_and_unpaid(procs):
    cloud = procs.cloud()
    honest_peers = [procs.peer(cloud, f"honest_{i}", slots=1) for i in (1, 2)]
    cheaters = {mode: procs.peer(cloud, f"cheat_{mode}", slots=1, extra=["--cheat", mode]) for mode in MODES}
    await asyncio.to_thread(cloud.wait_for_peers, 2 + len(MODES), 120)
    rng = random.Random(2024)
    jobs = []
    async with GamerClient(cloud.url, name="gamer_watchful") as client:
        sem = asyncio.Semaphore(24)

        async def one(kind_name: str, raw):
            async with sem:
                return await client.submit(kind_name, raw, deadline_ms=60_000)

        for i in range(TASKS):
            kind_name = KINDS[i % len(KINDS)] if i % 8 == 0 else KINDS[i % 2]  # mostly the cheap kinds
            raw = get_kind(kind_name).example(rng, "small")
            jobs.append((kind_name, raw, asyncio.ensure_future(one(kind_name, raw))))
        results = await asyncio.wait_for(asyncio.gather(*(j[2] for j in jobs)), scaled(400))

    corrupt = 0
    for (kind_name, raw, _), result in zip(jobs, results):
        kind = get_kind(kind_name)
        if not kind.agree(kind.parse_output(result.output), honest(kind_name, raw)):
            corrupt += 1
    assert corrupt == 0

    stats = cloud.wait_settled()
    banned = {b["name"] for b in stats["banned_peers"]}
    assert banned == {f"cheat_{m}" for m in MODES}, stats["banned_peers"]
    assert stats["ledger"]["balanced"]

    with sqlite3.connect(cloud.db_path) as conn:
        ids = dict(conn.execute("SELECT name, id FROM peers").fetchall())
        balances = dict(conn.execute("SELECT account, SUM(amount_micro_usd) FROM ledger GROUP BY account").fetchall())
        trust = conn.execute("SELECT peer_id, MAX(consecutive_valid) FROM trust GROUP BY peer_id").fetchall()
    assert sum(balances.values()) == 0
    for mode in MODES:
        pid = ids[f"cheat_{mode}"]
        assert balances.get(f"peer:{pid}", 0) <= 0 and balances.get(f"escrow:peer:{pid}", 0) <= 0, mode
    trust_by_peer = dict(trust)
    for peer in honest_peers:
        pid = ids[peer.name]
        assert balances.get(f"peer:{pid}", 0) > 0
        assert trust_by_peer[pid] >= 10  # past the quorum run: trusted with unreplicated work
    assert all(not p.alive() or "banned" in p.output for p in cheaters.values())
