"""The coalescing writer every role sends through (no sockets: a list stands in for the connection)."""

from __future__ import annotations

import asyncio

import pytest

from p2c2r import protocol as p
from p2c2r.outbox import Outbox


class Recorder:
    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.gate: asyncio.Event | None = None

    async def send(self, frame: bytes) -> None:
        self.frames.append(frame)
        if self.gate is not None:  # a slow socket: the send waits
            await self.gate.wait()

    def messages(self) -> list[list[object]]:
        return [p.decode_client_frame(frame) for frame in self.frames]


def fetch(i: int) -> bytes:
    return p.encode(p.Fetch(f"task-{i}"))


async def send_all(count: int, **outbox_options) -> Recorder:
    """``count`` messages queued in one turn, then closed: the frames they left in."""
    out = Recorder()
    box = Outbox(out.send, **{"batch": True, "max_frame_bytes": 1 << 20, **outbox_options})
    writer = asyncio.create_task(box.run())
    for i in range(count):
        box.put(fetch(i))
    box.close()
    await asyncio.wait_for(writer, 5)
    return out


async def test_messages_queued_in_one_turn_leave_as_one_frame_and_a_lone_one_alone():
    out = Recorder()
    box = Outbox(out.send, batch=True, max_frame_bytes=1 << 20)
    writer = asyncio.create_task(box.run())
    for i in range(5):
        box.put(fetch(i))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    box.put(fetch(5))
    box.close()
    await asyncio.wait_for(writer, 5)
    assert out.messages() == [[p.Fetch(f"task-{i}") for i in range(5)], [p.Fetch("task-5")]]
    assert (box.frames_sent, box.messages_sent) == (2, 6)


async def test_what_queues_behind_a_slow_send_goes_out_together():
    out = Recorder()
    out.gate = asyncio.Event()
    box = Outbox(out.send, batch=True, max_frame_bytes=1 << 20)
    writer = asyncio.create_task(box.run())
    box.put(fetch(0))
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # the writer is now stuck in send
    for i in range(1, 4):
        box.put(fetch(i))
    out.gate.set()
    box.close()
    await asyncio.wait_for(writer, 5)
    assert [len(m) for m in out.messages()] == [1, 3]


async def test_batches_stay_under_the_frame_limit_and_the_message_cap():
    one = len(fetch(0))
    out = await send_all(10, max_frame_bytes=3 * one + 3, max_batch=4)
    assert [len(m) for m in out.messages()] == [3, 3, 3, 1] and all(len(f) <= 3 * one + 3 for f in out.frames)
    capped = await send_all(10, max_batch=4)
    assert [len(m) for m in capped.messages()] == [4, 4, 2]


async def test_without_batch_support_every_message_is_its_own_plain_frame():
    out = await send_all(3, batch=False)
    assert out.frames == [fetch(0), fetch(1), fetch(2)]


async def test_after_close_nothing_more_is_queued_and_a_send_error_ends_the_writer():
    out = Recorder()
    box = Outbox(out.send, batch=True, max_frame_bytes=1 << 20)
    box.close()
    box.put(fetch(1))
    await asyncio.wait_for(box.run(), 5)
    assert out.frames == [] and len(box) == 0

    async def broken(frame: bytes) -> None:
        raise ConnectionResetError("gone")

    box = Outbox(broken, batch=True, max_frame_bytes=1 << 20)
    box.put(fetch(1))
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(box.run(), 5)
