"""A thread-safe, non-blocking face of the gamer client for game loops.

The client's event loop runs in a background thread. ``submit`` returns at once with a ticket;
``poll`` returns whatever finished since the last call. Neither ever waits on the network, so a frame
loop can call them every frame.

    gamer = ThreadedGamer(url, name="me")
    gamer.start()
    ticket = gamer.submit("physics", state)
    for done in gamer.poll():          # each frame
        if done.ok: apply(done.result.output)
"""

from __future__ import annotations

import asyncio
import queue
import threading
from concurrent.futures import Future as ThreadFuture
from dataclasses import dataclass
from typing import Any

from p2c2r.errors import TaskFailed
from p2c2r.gamer.client import GamerClient, TaskResult
from p2c2r.gamer.transport import Transport


@dataclass(frozen=True, slots=True)
class Completion:
    task_id: str
    kind: str
    result: TaskResult | None
    error: TaskFailed | None
    tag: Any = None

    @property
    def ok(self) -> bool:
        return self.result is not None


class ThreadedGamer:
    def __init__(self, url: str, *, name: str = "gamer", transport: Transport | None = None) -> None:
        self._url = url
        self._name = name
        self._transport = transport
        self._done: queue.SimpleQueue[Completion] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: GamerClient | None = None
        self._ready = threading.Event()
        self._in_flight = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the network thread; connection happens in the background (check ``connected``)."""
        self._thread = threading.Thread(target=self._thread_main, name="p2c2r-gamer", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _thread_main(self) -> None:
        loop = _new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        self._client = GamerClient(self._url, name=self._name, transport=self._transport)

        async def boot() -> None:
            assert self._client is not None
            self._client._runner = loop.create_task(self._client._run())

        loop.run_until_complete(boot())
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def client(self) -> GamerClient:
        assert self._client is not None
        return self._client

    def submit(self, kind: str, task_input: Any, *, deadline_ms: int | None = None, tag: Any = None) -> str:
        """Queue a task; returns its id at once. The outcome arrives through ``poll``."""
        assert self._loop is not None and self._client is not None
        task_id = self._client.new_task_id()
        with self._lock:
            self._in_flight += 1

        def start() -> None:
            assert self._client is not None
            fut = self._client.submit_nowait(kind, task_input, deadline_ms=deadline_ms, task_id=task_id)
            fut.add_done_callback(lambda f: self._finish(task_id, kind, tag, f))

        self._loop.call_soon_threadsafe(start)
        return task_id

    def _finish(self, task_id: str, kind: str, tag: Any, fut: asyncio.Future[TaskResult]) -> None:
        with self._lock:
            self._in_flight -= 1
        if fut.cancelled():
            self._done.put(Completion(task_id, kind, None, TaskFailed(task_id, "cancelled", "cancelled"), tag))
            return
        exc = fut.exception()
        if exc is None:
            self._done.put(Completion(task_id, kind, fut.result(), None, tag))
        else:
            err = exc if isinstance(exc, TaskFailed) else TaskFailed(task_id, "client_error", str(exc))
            self._done.put(Completion(task_id, kind, None, err, tag))

    def poll(self) -> list[Completion]:
        out: list[Completion] = []
        while True:
            try:
                out.append(self._done.get_nowait())
            except queue.Empty:
                return out

    def call(self, coro_factory: Any, timeout_s: float = 10.0) -> Any:
        """Run a coroutine on the client's loop and wait for it (for setup and teardown, not per frame)."""
        assert self._loop is not None
        fut: ThreadFuture[Any] = asyncio.run_coroutine_threadsafe(coro_factory(), self._loop)
        return fut.result(timeout_s)

    def close(self) -> None:
        if self._loop is None or self._client is None:
            return
        try:
            self.call(self._client.close, timeout_s=10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None:
                self._thread.join(10)


def _new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed, as the command-line roles use: the network thread shares the GIL with
    the game's frame loop, and uvloop spends about half of asyncio's time per message."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
