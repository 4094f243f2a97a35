"""Every limit has a setting, a clear answer (an error code or a close code) and a test; real coordinator processes."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Iterator

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from p2c2r import protocol as p
from p2c2r.errors import TaskFailed
from p2c2r.gamer.client import GamerClient
from p2c2r.tasks import get_kind
from tests.identity_helpers import sign_in
from tests.procs import CloudProcess, ProcessSet, async_wait_until, scaled

LONG_DEADLINE_MS = 60_000


@pytest.fixture(scope="module")
def limited(tmp_path_factory) -> Iterator[CloudProcess]:
    """No peers, so tasks stay in flight; small limits so that each is reached in a few messages."""
    ps = ProcessSet(tmp_path_factory.mktemp("limited"))
    try:
        yield ps.cloud(extra=["--handshake-timeout", "0.5", "--idle-timeout", "1.5", "--max-message-bytes", "4096",
                              "--max-in-flight", "3", "--submit-rate", "0.2", "--submit-burst", "5"])
    finally:
        ps.stop_all()


async def test_handshake_timeout_closes_a_silent_connection(limited):
    async with websockets.connect(limited.url) as ws:
        started = time.monotonic()
        await asyncio.wait_for(ws.wait_closed(), scaled(10))
        assert ws.close_code == p.CLOSE_HANDSHAKE_TIMEOUT and "no hello within 0.5 s" in ws.close_reason
        assert time.monotonic() - started >= 0.4


async def test_idle_timeout_closes_a_session_that_sends_nothing(limited):
    async with websockets.connect(limited.url) as silent, websockets.connect(limited.url) as chatty:
        await sign_in(silent)
        await sign_in(chatty)
        started = time.monotonic()
        while silent.close_code is None:
            assert time.monotonic() - started < scaled(10), "the silent session was never closed"
            await chatty.send(p.encode(p.Heartbeat()))  # a heartbeat is enough to count as alive
            await asyncio.sleep(0.3)
        assert silent.close_code == p.CLOSE_IDLE and "idle" in silent.close_reason
        assert time.monotonic() - started >= 1.0
        await chatty.send(p.encode(p.Fetch("still-here")))
        reply = p.decode_from_server(await asyncio.wait_for(chatty.recv(), scaled(10)))
        assert reply.code == p.E_UNKNOWN_TASK and chatty.close_code is None


async def test_message_size_limit_answers_then_closes_far_beyond_it(limited):
    async with websockets.connect(limited.url, max_size=None) as ws:
        await sign_in(ws)
        await ws.send(b"\x00" * 5000)
        reply = p.decode_from_server(await asyncio.wait_for(ws.recv(), scaled(10)))
        assert reply.code == p.E_TOO_LARGE and "4096" in reply.message
        await ws.send(p.encode(p.Fetch("after-the-big-one")))
        assert p.decode_from_server(await asyncio.wait_for(ws.recv(), scaled(10))).code == p.E_UNKNOWN_TASK
        await ws.send(b"\x00" * 9000)  # more than twice the limit: websockets itself closes the connection
        await asyncio.wait_for(ws.wait_closed(), scaled(10))
        assert ws.close_code == 1009


async def test_tasks_in_flight_and_submit_rate_per_gamer(limited):
    rng = random.Random(1)
    async with websockets.connect(limited.url) as ws:
        await sign_in(ws)
        for i in range(7):
            task_input = get_kind("ai_npc_dialogue").example(rng, "small")  # small enough for the 4 KiB limit
            await ws.send(p.encode(p.Submit(f"t{i}", "ai_npc_dialogue", task_input, deadline_ms=LONG_DEADLINE_MS)))
        answers: dict[str, str] = {}
        messages: dict[str, str] = {}
        while len(answers) < 7:
            msg = p.decode_from_server(await asyncio.wait_for(ws.recv(), scaled(10)))
            answers[msg.task_id] = "ack" if isinstance(msg, p.Ack) else msg.code
            messages[msg.code if isinstance(msg, p.Error) else "ack"] = getattr(msg, "message", "")
    # Burst of 5 tokens: t0-t2 fill the 3 slots, t3-t4 find them full, t5-t6 find the bucket empty.
    assert answers == {"t0": "ack", "t1": "ack", "t2": "ack", "t3": p.E_TOO_MANY_IN_FLIGHT,
                       "t4": p.E_TOO_MANY_IN_FLIGHT, "t5": p.E_RATE_LIMITED, "t6": p.E_RATE_LIMITED}
    assert "most allowed is 3" in messages[p.E_TOO_MANY_IN_FLIGHT]
    assert "at most 0.2 a second" in messages[p.E_RATE_LIMITED]


@pytest.fixture(scope="module")
def small_queue(tmp_path_factory) -> Iterator[CloudProcess]:
    ps = ProcessSet(tmp_path_factory.mktemp("queue"))
    try:
        yield ps.cloud(extra=["--max-queued", "2", "--max-connections-per-address", "4"])
    finally:
        ps.stop_all()


async def test_a_full_queue_refuses_new_tasks_with_overloaded(small_queue):
    rng = random.Random(2)
    async with GamerClient(small_queue.url, name="queue_filler") as client:
        futures = [client.submit_nowait("ai_pathfinding", get_kind("ai_pathfinding").example(rng, "small"),
                                        deadline_ms=LONG_DEADLINE_MS) for _ in range(4)]
        await async_wait_until(lambda: sum(f.done() for f in futures) == 2, 20, "two refusals")
        assert not futures[0].done() and not futures[1].done()
        for fut in futures[2:]:
            with pytest.raises(TaskFailed) as info:
                fut.result()
            assert info.value.code == p.E_OVERLOADED and "queue is full (2 tasks)" in info.value.reason
        assert small_queue.stats()["tasks"]["queued"] == 2


async def test_connections_per_address_are_capped_with_http_429(small_queue):
    async with contextlib.AsyncExitStack() as stack:
        open_ws = [await stack.enter_async_context(websockets.connect(small_queue.url)) for _ in range(4)]
        with pytest.raises(InvalidStatus) as info:
            await websockets.connect(small_queue.url)
        assert info.value.response.status_code == 429
        assert b"too many connections from 127.0.0.1" in info.value.response.body
        await open_ws[0].close()

        async def one_more() -> object:
            while True:  # the slot frees as soon as the server has seen the close
                try:
                    return await websockets.connect(small_queue.url)
                except InvalidStatus:
                    await asyncio.sleep(0.05)

        again = await asyncio.wait_for(one_more(), scaled(10))
        await again.close()


async def test_a_client_that_sends_and_never_reads_is_closed_at_the_backlog_limit(procs):
    cloud = procs.cloud(extra=["--max-backlog-bytes", "1000000"])
    async with GamerClient(cloud.url, name="honest_reader") as honest:
        # max_queue=1: past one unread message the client stops reading its socket, and what the coordinator
        # sends it piles up there. Each StatsRequest is answered with a few kB: amplification to lean on.
        async with websockets.connect(cloud.url, max_queue=1) as flooder:
            await sign_in(flooder, role="gamer", name="flooder")
            frame = p.batch_frame([p.encode(p.StatsRequest())] * p.MAX_BATCH_MESSAGES)

            async def flood() -> None:
                while True:
                    await flooder.send(frame)

            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(flood(), scaled(30))
        stats = await honest.stats()  # the coordinator kept serving everyone else
    assert stats["backlog_closes"] == 1


async def test_fetches_past_the_rate_are_refused_and_the_client_retries_them(procs):
    cloud = procs.cloud(extra=["--fetch-rate", "4", "--fetch-burst", "3"])
    procs.peer(cloud, "fetch_peer")
    await asyncio.to_thread(cloud.wait_for_peers, 1)
    rng = random.Random(5)
    async with GamerClient(cloud.url, name="fetcher") as client:
        results = [await client.submit("ai_pathfinding", get_kind("ai_pathfinding").example(rng, "small"))
                   for _ in range(6)]
    # On the wire: past the burst, a fetch is answered rate_limited (a database read is what it would cost).
    async with websockets.connect(cloud.url) as ws:
        await sign_in(ws, role="gamer", name="raw_fetcher")
        await ws.send(p.batch_frame([p.encode(p.Fetch(f"nope{i}")) for i in range(6)]))
        replies = [p.decode_from_server(await ws.recv()) for _ in range(6)]
    assert [r.code for r in replies] == [p.E_UNKNOWN_TASK] * 3 + [p.E_RATE_LIMITED] * 3
    assert "retry in" in replies[3].message
    # The client library fetches the same gamer's six results at once: three are refused for a while and
    # fetched again, none fails.
    async with GamerClient(cloud.url, name="fetcher") as again:
        fetched = await asyncio.wait_for(asyncio.gather(*(again.fetch(r.task_id) for r in results)), scaled(20))
    assert [f.output for f in fetched] == [r.output for r in results]
