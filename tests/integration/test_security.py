"""Identities, authorisation, closed mode, balances and the admin command, against real coordinator processes."""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import subprocess
import sys
from collections.abc import Iterator

import msgspec
import pytest
import websockets

from p2c2r import protocol as p
from p2c2r.errors import TaskFailed
from p2c2r.gamer.client import GamerClient
from p2c2r.identity import Identity
from p2c2r.network_config import FREE_ALLOWANCE_MICRO_USD, terms_for
from p2c2r.tasks import get_kind
from tests.identity_helpers import challenge_of, sign_in, signed_hello
from tests.procs import REPO, CloudProcess, ProcessSet, async_wait_until, scaled

LONG_DEADLINE_MS = 60_000


def admin(db, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "p2c2r.cli", "admin", "--db", str(db), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=scaled(60))


def db_rows(db, sql: str, params=()) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


async def refused(url: str, hello_for, *, expect_close: int) -> p.Error:
    """Open a connection, send the hello ``hello_for(ws)`` makes, and return the Error it is refused with."""
    async with websockets.connect(url) as ws:
        await ws.send(p.encode(hello_for(ws)))
        reply = p.decode_from_server(await asyncio.wait_for(ws.recv(), scaled(10)))
        assert isinstance(reply, p.Error), reply
        await asyncio.wait_for(ws.wait_closed(), scaled(10))
        assert ws.close_code == expect_close, (ws.close_code, ws.close_reason)
        return reply


# Open mode (trust on first use) ---------------------------------------------------------------------------


async def test_unsigned_forged_and_replayed_hellos_are_refused(shared_network):
    cloud, _ = shared_network
    alice = Identity.generate()

    def unsigned(ws):
        return p.Hello(role="gamer", protocol=p.PROTOCOL_VERSION, name="alice")

    def key_without_signature(ws):
        return p.Hello(role="gamer", protocol=p.PROTOCOL_VERSION, name="alice", public_key=alice.public_key)

    def signed_for_another_nonce(ws):
        sig = alice.sign_handshake(nonce=bytes(32), role="gamer", protocol=p.PROTOCOL_VERSION)
        return p.Hello(role="gamer", protocol=p.PROTOCOL_VERSION, name="alice", public_key=alice.public_key, signature=sig)

    def signed_as_peer_sent_as_gamer(ws):
        sig = alice.sign_handshake(nonce=challenge_of(ws), role="peer", protocol=p.PROTOCOL_VERSION)
        return p.Hello(role="gamer", protocol=p.PROTOCOL_VERSION, name="alice", public_key=alice.public_key, signature=sig)

    def someone_elses_key(ws):
        hello = signed_hello(ws, identity=alice)
        return msgspec.structs.replace(hello, public_key=Identity.generate().public_key)

    def short_key(ws):
        return msgspec.structs.replace(signed_hello(ws, identity=alice), public_key=b"\x01" * 10)

    for make in (unsigned, key_without_signature, signed_for_another_nonce, signed_as_peer_sent_as_gamer,
                 someone_elses_key, short_key):
        error = await refused(cloud.url, make, expect_close=p.CLOSE_AUTH_FAILED)
        assert error.code == p.E_AUTH_FAILED, (make.__name__, error)

    # A hello signed for one connection is useless on another, even a moment later (replay).
    async with websockets.connect(cloud.url) as first:
        captured = signed_hello(first, identity=alice)
        error = await refused(cloud.url, lambda ws: captured, expect_close=p.CLOSE_AUTH_FAILED)
        assert "signature" in error.message
        await first.send(p.encode(captured))  # on its own connection it is fine
        assert isinstance(p.decode_from_server(await first.recv()), p.Welcome)


async def test_a_key_is_the_account_and_a_name_is_only_a_label(shared_network, tmp_path):
    cloud, _ = shared_network
    key = Identity.generate()
    async with websockets.connect(cloud.url) as ws:
        first = await sign_in(ws, identity=key, name="alice")
    async with websockets.connect(cloud.url) as ws:
        renamed = await sign_in(ws, identity=key, name="not-alice-any-more")
    async with websockets.connect(cloud.url) as ws:
        impostor = await sign_in(ws, identity=Identity.generate(), name="alice")
    assert first.client_id == renamed.client_id == key.client_id("gamer")
    assert impostor.client_id != first.client_id

    # The client library: the same key file after a reconnect fetches the same results by task id.
    key_path = tmp_path / "me.key"
    rng = random.Random(41)
    task_input = get_kind("ai_npc_dialogue").example(rng, "small")
    async with GamerClient(cloud.url, name="session-one", key_path=key_path) as client:
        original = await asyncio.wait_for(client.submit("ai_npc_dialogue", task_input, task_id="mine-1",
                                                        deadline_ms=LONG_DEADLINE_MS), scaled(30))
        first_id = client.client_id
    async with GamerClient(cloud.url, name="session-two", key_path=key_path) as client:
        again = await asyncio.wait_for(client.fetch("mine-1"), scaled(10))
        assert client.client_id == first_id
    assert again.output == original.output


async def test_a_gamer_reads_only_its_own_tasks_and_results(shared_network):
    cloud, _ = shared_network
    rng = random.Random(42)
    a_input = get_kind("ai_pathfinding").example(rng, "small")
    b_input = get_kind("ai_pathfinding").example(rng, "small")
    async with GamerClient(cloud.url, name="victim") as victim, \
            GamerClient(cloud.url, name="victim", identity=Identity.generate()) as thief:
        assert victim.client_id != thief.client_id  # same label, different keys: different accounts
        mine = await asyncio.wait_for(victim.submit("ai_pathfinding", a_input, task_id="secret-plan",
                                                    deadline_ms=LONG_DEADLINE_MS), scaled(30))
        with pytest.raises(TaskFailed) as info:
            await asyncio.wait_for(thief.fetch("secret-plan"), scaled(10))
        assert info.value.code == p.E_UNKNOWN_TASK
        # The same task id from another gamer is another task: its own input, its own result.
        theirs = await asyncio.wait_for(thief.submit("ai_pathfinding", b_input, task_id="secret-plan",
                                                     deadline_ms=LONG_DEADLINE_MS), scaled(30))
        assert theirs.output != mine.output
        victim_id = victim.client_id
    # The admin view names gamers only with the admin token (kept in the database; `p2c2r admin token`).
    token = admin(cloud.db_path, "token")
    assert token.returncode == 0, token.stderr
    anonymous = json.loads(cloud.get("/api/stats")[1])
    forged = json.loads(cloud.get("/api/stats", {"Authorization": "Bearer not-the-token"})[1])
    authorised = json.loads(cloud.get("/api/stats", {"Authorization": f"Bearer {token.stdout.strip()}"})[1])
    for stats in (anonymous, forged):
        assert "list" not in stats["gamers"] and victim_id not in json.dumps(stats)
    assert victim_id in {g["id"] for g in authorised["gamers"]["list"]}


async def test_a_peer_returns_results_only_for_its_own_attempts(procs):
    cloud = procs.cloud()
    worker_key, thief_key = Identity.generate(), Identity.generate()
    async with websockets.connect(cloud.url) as worker, websockets.connect(cloud.url) as thief:
        await sign_in(worker, role="peer", identity=worker_key, name="worker", kinds=["ai_npc_dialogue"])
        await sign_in(thief, role="peer", identity=thief_key, name="thief", kinds=[])
        task_input = get_kind("ai_npc_dialogue").example(random.Random(43), "small")
        async with GamerClient(cloud.url, name="payer") as gamer:
            pending = gamer.submit_nowait("ai_npc_dialogue", task_input, deadline_ms=LONG_DEADLINE_MS)
            assign = p.decode_from_server(await asyncio.wait_for(worker.recv(), scaled(20)))
            assert isinstance(assign, p.Assign)
            kind = get_kind("ai_npc_dialogue")
            output = msgspec.to_builtins(kind.compute(kind.parse_input(msgspec.msgpack.decode(assign.input))))
            for attempt_id in (assign.attempt_id, "a-made-up-attempt"):
                await thief.send(p.encode(p.PeerResult(attempt_id, output, 1.0)))
                reply = p.decode_from_server(await asyncio.wait_for(thief.recv(), scaled(10)))
                assert isinstance(reply, p.Error) and reply.code == p.E_NOT_ASSIGNED, reply
            await worker.send(p.encode(p.PeerResult(assign.attempt_id, output, 1.0)))
            result = await asyncio.wait_for(pending, scaled(30))
    assert result.output == output
    assert cloud.stats()["validation"]["not_assigned"] == 2
    thief_id = thief_key.client_id("peer")
    assert db_rows(cloud.db_path, "SELECT * FROM ledger WHERE account LIKE ?", (f"%{thief_id}%",)) == []
    assert db_rows(cloud.db_path, "SELECT tasks_done FROM peers WHERE id = ?", (thief_id,)) == [(0,)]


async def test_a_second_connection_with_the_same_key_closes_the_first(shared_network):
    cloud, _ = shared_network
    key = Identity.generate()
    async with websockets.connect(cloud.url) as first, websockets.connect(cloud.url) as second:
        await sign_in(first, identity=key)
        await sign_in(second, identity=key)
        await asyncio.wait_for(first.wait_closed(), scaled(10))
        assert first.close_code == p.CLOSE_REPLACED and "--key" in first.close_reason
        await second.send(p.encode(p.Fetch("nothing")))
        assert p.decode_from_server(await asyncio.wait_for(second.recv(), scaled(10))).code == p.E_UNKNOWN_TASK
    # The client library stops (rather than knock the other off in a loop) and says why.
    twin = Identity.generate()
    async with GamerClient(cloud.url, name="twin", identity=twin) as first_client, \
            GamerClient(cloud.url, name="twin", identity=twin) as second_client:
        await async_wait_until(lambda: first_client._fatal is not None, 10, "the first client to give up")
        assert "--name or --key" in str(first_client._fatal)
        assert second_client.connected and first_client.reconnects == 0


async def test_open_mode_credits_the_free_allowance_once(shared_network):
    cloud, _ = shared_network
    key = Identity.generate()
    for _ in range(3):
        async with websockets.connect(cloud.url) as ws:
            await sign_in(ws, identity=key)
    gamer_id = key.client_id("gamer")
    rows = db_rows(cloud.db_path, "SELECT posting_key, amount_micro_usd FROM ledger WHERE account = ?",
                   (f"gamer:{gamer_id}",))
    assert rows == [(f"allowance:{gamer_id}", FREE_ALLOWANCE_MICRO_USD)]


async def test_a_key_keeps_its_account_across_a_coordinator_restart(procs, tmp_path):
    cloud = procs.cloud()
    key_path = tmp_path / "survivor.key"
    task_input = get_kind("physics").example(random.Random(44), "small")
    async with GamerClient(cloud.url, name="survivor", key_path=key_path) as client:
        before = await asyncio.wait_for(client.submit("physics", task_input, task_id="kept", deadline_ms=200),
                                        scaled(30))  # no peer: the coordinator computes it
        gamer_id = client.client_id
    cloud.kill()
    restarted = await asyncio.to_thread(procs.cloud, port=cloud.port)
    async with GamerClient(restarted.url, name="another-label", key_path=key_path) as client:
        after = await asyncio.wait_for(client.fetch("kept"), scaled(10))
        assert client.client_id == gamer_id
    assert after.output == before.output


# Closed mode, balances, bans: the admin command on the database file ------------------------------------


@pytest.fixture(scope="module")
def closed_cloud(tmp_path_factory) -> Iterator[CloudProcess]:
    ps = ProcessSet(tmp_path_factory.mktemp("closed"))
    try:
        yield ps.cloud(extra=["--closed"])
    finally:
        ps.stop_all()


async def test_closed_mode_admits_only_the_allow_list(closed_cloud):
    cloud = closed_cloud
    key = Identity.generate()
    gamer_id = key.client_id("gamer")
    error = await refused(cloud.url, lambda ws: signed_hello(ws, identity=key), expect_close=p.CLOSE_AUTH_FAILED)
    assert gamer_id in error.message and "p2c2r admin add" in error.message and key.public_key.hex() in error.message

    added = admin(cloud.db_path, "add", gamer_id, "--label", "Ann's PC")
    assert added.returncode == 0, added.stderr
    async with websockets.connect(cloud.url) as ws:
        assert (await sign_in(ws, identity=key)).client_id == gamer_id
    listing = admin(cloud.db_path, "list")
    assert gamer_id in listing.stdout and "Ann's PC" in listing.stdout
    # An id lets in that role only; a public key lets in the key as either role.
    await refused(cloud.url, lambda ws: signed_hello(ws, role="peer", identity=key), expect_close=p.CLOSE_AUTH_FAILED)
    assert admin(cloud.db_path, "add", key.public_key.hex()).returncode == 0
    async with websockets.connect(cloud.url) as ws:
        await sign_in(ws, role="peer", identity=key, kinds=[])

    for entry in (gamer_id, key.public_key.hex()):
        assert admin(cloud.db_path, "remove", entry).returncode == 0
    await refused(cloud.url, lambda ws: signed_hello(ws, identity=key), expect_close=p.CLOSE_AUTH_FAILED)
    bad = admin(cloud.db_path, "add", "not-a-key")
    assert bad.returncode == 1 and "neither a client id" in bad.stderr


async def test_balance_refuses_before_ack_and_concurrent_submits_cannot_overdraw(closed_cloud, tmp_path):
    cloud = closed_cloud
    key_path = tmp_path / "buyer.key"
    gamer_id = Identity.load_or_create(key_path).client_id("gamer")
    assert admin(cloud.db_path, "add", gamer_id).returncode == 0
    rng = random.Random(45)
    price = terms_for("ai_pathfinding").price_micro_usd
    async with GamerClient(cloud.url, name="buyer", key_path=key_path) as client:
        with pytest.raises(TaskFailed) as info:  # closed coordinators give no allowance
            await asyncio.wait_for(client.submit("ai_pathfinding", get_kind("ai_pathfinding").example(rng, "small")),
                                   scaled(10))
        assert info.value.code == p.E_INSUFFICIENT_FUNDS and "p2c2r admin credit" in info.value.reason
        assert db_rows(cloud.db_path, "SELECT COUNT(*) FROM tasks WHERE gamer_id = ?", (gamer_id,)) == [(0,)]

        credit = admin(cloud.db_path, "credit", gamer_id, "0.0001")  # 100 micro-USD
        assert credit.returncode == 0 and "balance $0.000100" in credit.stdout, credit

        async def first_accepted() -> object:
            while True:  # the running coordinator sees the credit without a reconnect (within a second)
                try:
                    return await client.submit("ai_pathfinding", get_kind("ai_pathfinding").example(rng, "small"),
                                               deadline_ms=150)  # no peers: computed by the coordinator
                except TaskFailed as exc:
                    assert exc.code == p.E_INSUFFICIENT_FUNDS
                    await asyncio.sleep(0.1)

        first = await asyncio.wait_for(first_accepted(), scaled(20))
        assert first.cost_micro_usd == price
        # 85 left: of 20 tasks submitted at once, 5 fit (75), the 15 others are refused, none overdraws.
        futures = [client.submit_nowait("ai_pathfinding", get_kind("ai_pathfinding").example(rng, "small"),
                                        deadline_ms=LONG_DEADLINE_MS) for _ in range(20)]
        await async_wait_until(lambda: sum(f.done() for f in futures) >= 15, 20, "15 refusals")
        await async_wait_until(lambda: all(pd.acked for pd in client._pending.values()), 20, "5 acknowledgements")
        refusals = [f.exception() for f in futures if f.done()]
        assert len(refusals) == 15 and all(isinstance(e, TaskFailed) and e.code == p.E_INSUFFICIENT_FUNDS
                                          for e in refusals)
        assert len(client._pending) == 5
    assert db_rows(cloud.db_path, "SELECT SUM(amount_micro_usd) FROM ledger WHERE account = ?",
                   (f"gamer:{gamer_id}",)) == [(100 - price,)]
    for bad_args in (["credit", "gamer_nothex", "5"], ["credit", gamer_id, "-5"], ["credit", gamer_id, "0.0000001"]):
        result = admin(cloud.db_path, *bad_args)
        assert result.returncode == 1 and result.stderr.startswith("❌"), (bad_args, result)


async def test_a_peer_the_running_coordinator_banned_may_rejoin_once_the_operator_unbans_it(procs):
    cloud = procs.cloud()
    key = Identity.generate()
    peer_id = key.client_id("peer")
    rng = random.Random(11)
    async with GamerClient(cloud.url, name="gamer_of_a_cheat") as gamer:
        async with websockets.connect(cloud.url) as ws:
            await sign_in(ws, role="peer", identity=key, name="liar", kinds=["ai_npc_dialogue"])
            # A short deadline: once the liar is gone, the coordinator computes the rest itself at once.
            jobs = [gamer.submit_nowait("ai_npc_dialogue", get_kind("ai_npc_dialogue").example(rng, "small"),
                                        deadline_ms=2000) for _ in range(6)]
            with pytest.raises(websockets.ConnectionClosed):
                while True:  # every answer made up, until the coordinator has seen enough
                    msg = p.decode_from_server(await asyncio.wait_for(ws.recv(), scaled(30)))
                    if isinstance(msg, p.Assign):
                        await ws.send(p.encode(p.PeerResult(msg.attempt_id, {"line": "made up"}, 1.0)))
            assert ws.close_code == p.CLOSE_BANNED
        results = await asyncio.wait_for(asyncio.gather(*jobs), scaled(60))  # the coordinator computed them
        assert all(r.source == "cloud" for r in results)
    error = await refused(cloud.url, lambda ws: signed_hello(ws, role="peer", identity=key, kinds=[]),
                          expect_close=p.CLOSE_BANNED)
    assert "banned" in error.message
    assert admin(cloud.db_path, "unban", peer_id).returncode == 0
    async with websockets.connect(cloud.url) as ws:  # no restart needed
        await sign_in(ws, role="peer", identity=key, name="liar", kinds=[])


async def test_the_operator_bans_and_unbans_a_peer(closed_cloud):
    cloud = closed_cloud
    key = Identity.generate()
    peer_id = key.client_id("peer")
    assert admin(cloud.db_path, "add", key.public_key.hex(), "--label", "volunteer").returncode == 0
    async with websockets.connect(cloud.url) as ws:
        await sign_in(ws, role="peer", identity=key, kinds=[])
    assert admin(cloud.db_path, "ban", peer_id, "--reason", "misbehaved").returncode == 0
    assert peer_id in admin(cloud.db_path, "list").stdout
    error = await refused(cloud.url, lambda ws: signed_hello(ws, role="peer", identity=key, kinds=[]),
                          expect_close=p.CLOSE_BANNED)
    assert "banned" in error.message
    assert admin(cloud.db_path, "unban", peer_id).returncode == 0
    async with websockets.connect(cloud.url) as ws:
        await sign_in(ws, role="peer", identity=key, kinds=[])
