"""A connection's outgoing messages: queued without waiting, written by one task, coalesced under load.

Every role sends from synchronous code (a result arrives, an assignment is decided) and must not wait on
a slow socket. ``put`` queues an encoded message; one writer task sends. Whatever queued up while the
writer was busy, or during the current turn of the event loop, leaves as one batch frame (see
``p2c2r.protocol``), so at high task rates a connection pays the per-frame cost (a WebSocket frame, a
system call, a wake-up of the reader) once per batch instead of once per message. The first message of a
loop turn to an idle connection leaves at once, from ``put`` itself (``send_now``), without waiting for the
writer task's turn: on a trivial task's round trip that turn was about a tenth of the time.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from websockets.asyncio.connection import Connection
from websockets.protocol import State

from p2c2r.protocol import MAX_BATCH_MESSAGES, batch_frame

log = logging.getLogger(__name__)

SendFrame = Callable[[bytes], Awaitable[None]]
SendNow = Callable[[bytes], bool]
"""Sends a frame synchronously and returns True, or returns False (sending nothing) when it cannot."""


def immediate_sender(ws: Connection) -> SendNow:
    """What ``ws.send`` does for one bytes message on an open connection that is not paused (frame it, write
    it to the transport), without a coroutine. It declines whenever ``send`` would have to wait or close,
    so flow control and closing stay with ``send``. (Uses the connection's sans-I/O ``protocol`` and
    ``send_data``, as ``send`` itself does; websockets 15 to 17.)"""

    def send_now(frame: bytes) -> bool:
        if ws.protocol.state is not State.OPEN or ws.paused or ws.transport.is_closing():
            return False
        ws.protocol.send_binary(frame)
        try:
            ws.send_data()
        except Exception:  # the transport failed under us: as send would, drop the connection; the reader
            log.debug("immediate send failed; closing the connection", exc_info=True)  # learns it is gone
            ws.transport.abort()
        return True

    return send_now


class Outbox:
    def __init__(self, send_frame: SendFrame, *, batch: bool, max_frame_bytes: int,
                 max_batch: int = MAX_BATCH_MESSAGES, send_now: SendNow | None = None,
                 max_queued_bytes: int | None = None, on_overflow: Callable[[int], None] | None = None) -> None:
        """``batch``: whether the other side reads batch frames. A batch stays under ``max_frame_bytes``
        (the other side's message limit); a single message larger than that still goes alone, and the other
        side answers it as too large. ``max_queued_bytes``: the most that may wait (None: no limit); a
        message that would go past it is dropped, as is every later one, and ``on_overflow`` is called once
        with the bytes waiting: the other side is not reading, and its owner should close the connection."""
        self._send_frame = send_frame
        self._max_queued_bytes = max_queued_bytes
        self._on_overflow = on_overflow
        self._queued_bytes = 0
        self.overflowed = False
        self._send_now = send_now
        self._sent_now_this_turn = False
        self._last_batch_size = 0
        self._max_batch = max_batch if batch else 1
        self._max_frame_bytes = max_frame_bytes
        self._queue: deque[bytes] = deque()
        self._wakeup: asyncio.Future[None] | None = None
        self._closing = False
        self.frames_sent = 0
        self.messages_sent = 0

    def put(self, encoded: bytes) -> None:
        if self._closing:
            return
        # At once when the writer is idle with nothing queued (nothing can be overtaken), at most once a
        # loop turn (the rest of the turn leaves as one batch), and only while the writer's batches are
        # single messages: a busy connection batches everything, as an extra frame every turn cost more
        # than the turn it saved (throughput -10%, measured).
        if (self._send_now is not None and not self._queue and self._last_batch_size <= 1
                and not self._sent_now_this_turn and self._wakeup is not None and not self._wakeup.done()
                and self._send_now(encoded)):
            self.frames_sent += 1
            self.messages_sent += 1
            self._sent_now_this_turn = True
            asyncio.get_running_loop().call_soon(self._next_turn)
            return
        if self._max_queued_bytes is not None and self._queued_bytes + len(encoded) > self._max_queued_bytes:
            self._overflow()
            return
        self._queue.append(encoded)
        self._queued_bytes += len(encoded)
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def _overflow(self) -> None:
        if self.overflowed:
            return
        self.overflowed = True
        self._closing = True  # nothing more is queued; what waits may still leave if the other side reads
        log.info("outbox over its limit: %d bytes waiting", self._queued_bytes)
        if self._on_overflow is not None:
            self._on_overflow(self._queued_bytes)

    @property
    def queued_bytes(self) -> int:
        return self._queued_bytes

    def _next_turn(self) -> None:
        self._sent_now_this_turn = False

    def __len__(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        """The writer sends what is queued, then stops; later messages are dropped."""
        self._closing = True
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def run(self) -> None:
        """The writer: returns after ``close`` once the queue is empty; a send error ends it (the
        connection is gone, and whoever owns it learns so from its reader)."""
        loop = asyncio.get_running_loop()
        queue = self._queue
        while True:
            if not queue:
                if self._closing:
                    return
                self._wakeup = loop.create_future()
                await self._wakeup
                self._wakeup = None
                continue
            taken = [queue.popleft()]
            size = len(taken[0])
            while queue and len(taken) < self._max_batch and size + len(queue[0]) + 3 <= self._max_frame_bytes:
                message = queue.popleft()
                size += len(message)
                taken.append(message)
            self._queued_bytes -= size
            await self._send_frame(batch_frame(taken))
            self._last_batch_size = len(taken)
            self.frames_sent += 1
            self.messages_sent += len(taken)
