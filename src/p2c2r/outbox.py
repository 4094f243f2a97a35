"""A connection's outgoing messages: queued without waiting, written by one task, coalesced under load.

Every role sends from synchronous code (a result arrives, an assignment is decided) and must not wait on
a slow socket. ``put`` queues an encoded message; one writer task sends. Whatever queued up while the
writer was busy, or during the current turn of the event loop, leaves as one batch frame (see
``p2c2r.protocol``), so at high task rates a connection pays the per-frame cost (a WebSocket frame, a
system call, a wake-up of the reader) once per batch instead of once per message, and one message alone
leaves as soon as the loop gets to it, with no added delay.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

from p2c2r.protocol import MAX_BATCH_MESSAGES, batch_frame

SendFrame = Callable[[bytes], Awaitable[None]]


class Outbox:
    def __init__(self, send_frame: SendFrame, *, batch: bool, max_frame_bytes: int,
                 max_batch: int = MAX_BATCH_MESSAGES) -> None:
        """``batch``: whether the other side reads batch frames. A batch stays under ``max_frame_bytes``
        (the other side's message limit); a single message larger than that still goes alone, and the other
        side answers it as too large."""
        self._send_frame = send_frame
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
        self._queue.append(encoded)
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

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
            await self._send_frame(batch_frame(taken))
            self.frames_sent += 1
            self.messages_sent += len(taken)
