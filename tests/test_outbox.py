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


async def test_a_reader_that_stops_reading_is_reported_once_and_its_backlog_stays_bounded():
    out = Recorder()
    out.gate = asyncio.Event()  # the other side stopped reading: the first send never completes
    overflows: list[int] = []
    limit = sum(len(fetch(i)) for i in range(1, 11))  # room for messages 1 to 10
    box = Outbox(out.send, batch=True, max_frame_bytes=1 << 20, max_queued_bytes=limit,
                 on_overflow=overflows.append)
    writer = asyncio.create_task(box.run())
    box.put(fetch(0))
    await asyncio.sleep(0)  # the writer takes it and blocks in send
    assert box.queued_bytes == 0
    for i in range(1, 11):
        box.put(fetch(i))
    assert box.queued_bytes == limit and overflows == []
    for i in range(11, 100):  # past the limit: dropped, reported once
        box.put(fetch(i))
    assert overflows == [limit] and box.queued_bytes == limit and box.overflowed
    # If it reads again, what was queued before the limit still leaves, and then the writer stops.
    out.gate.set()
    await asyncio.wait_for(writer, 5)
    sent = [m.task_id for frame in out.messages() for m in (frame if isinstance(frame, list) else [frame])]
    assert sent == [f"task-{i}" for i in range(11)] and box.queued_bytes == 0


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


class ImmediateRecorder(Recorder):
    """A connection that can also take a frame synchronously, unless told to decline."""

    def __init__(self) -> None:
        super().__init__()
        self.decline = False
        self.sent_at_once: list[bytes] = []

    def send_now(self, frame: bytes) -> bool:
        if self.decline:
            return False
        self.sent_at_once.append(frame)
        self.frames.append(frame)
        return True


async def idle_box(out: ImmediateRecorder) -> tuple[Outbox, asyncio.Task[None]]:
    box = Outbox(out.send, batch=True, max_frame_bytes=1 << 20, send_now=out.send_now)
    writer = asyncio.create_task(box.run())
    await asyncio.sleep(0)  # the writer waits for work
    return box, writer


async def test_the_first_message_of_a_turn_to_an_idle_connection_leaves_at_once_the_rest_batch():
    out = ImmediateRecorder()
    box, writer = await idle_box(out)
    for i in range(4):
        box.put(fetch(i))
    assert out.sent_at_once == [fetch(0)]  # from put itself, before any await
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # the writer has sent 1..3 as one batch
    box.put(fetch(4))  # a later turn, but a connection whose last batch held several messages is busy
    box.close()
    await asyncio.wait_for(writer, 5)
    assert [len(m) for m in out.messages()] == [1, 3, 1]
    assert out.sent_at_once == [fetch(0)]


async def test_a_quiet_connection_sends_at_once_each_turn_and_a_declined_message_waits_for_the_writer():
    out = ImmediateRecorder()
    box, writer = await idle_box(out)
    box.put(fetch(0))
    await asyncio.sleep(0)
    box.put(fetch(1))
    out.decline = True  # e.g. the transport is paused: the writer's send waits for it
    await asyncio.sleep(0)
    box.put(fetch(2))
    assert out.sent_at_once == [fetch(0), fetch(1)]
    box.close()
    await asyncio.wait_for(writer, 5)
    assert out.messages() == [[p.Fetch("task-0")], [p.Fetch("task-1")], [p.Fetch("task-2")]]
    assert (box.frames_sent, box.messages_sent) == (3, 3)


async def test_the_immediate_sender_writes_on_an_open_websocket_and_declines_once_it_closes():
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve

    from p2c2r.outbox import immediate_sender

    received: asyncio.Queue[bytes] = asyncio.Queue()

    async def handler(ws) -> None:
        async for frame in ws:
            await received.put(frame)

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}") as ws:
            send_now = immediate_sender(ws)
            assert send_now(b"\x01\x02") is True
            assert await asyncio.wait_for(received.get(), 5) == b"\x01\x02"
            await ws.close()
            assert send_now(b"\x03") is False
