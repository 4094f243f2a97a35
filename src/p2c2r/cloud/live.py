"""The dashboard's live feed: a WebSocket at ``/live`` on the coordinator's port.

A viewer gets, as JSON text frames:

* ``{"type": "hello", "admin": bool, "interval_s": s, "stats": {...}, "events": [...]}`` on connecting;
* ``{"type": "snapshot", "stats": {...}}`` every ``interval_s``: the same document ``GET /api/stats``
  returns (without its ``events`` list), so the page and the API always agree;
* ``{"type": "event", "event": {...}}`` as coordinator events happen (task completions are left out: the
  snapshots carry them as counts and charts, and at full load they would flood the page).

Snapshots are built once per tick for all viewers of a kind (public or admin), not once per viewer.
Anonymous viewers get the public snapshot and events without gamer identities. A viewer too slow to take
its frames loses some (the next snapshot replaces what it missed) rather than holding memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import websockets
from websockets.asyncio.server import ServerConnection

if TYPE_CHECKING:
    from p2c2r.cloud.coordinator import Coordinator

log = logging.getLogger(__name__)

SNAPSHOT_INTERVAL_S = 1.0
VIEWER_QUEUE = 64
EVENT_BACKLOG = 50
CLOSE_GOING_AWAY = 1001
# Events never pushed one by one (see the module docstring): per-task routine, counted in the snapshots.
QUIET_EVENTS = frozenset({"completed", "hedged"})


def redact_event(event: dict[str, Any], *, admin: bool) -> dict[str, Any]:
    """An event as a viewer may see it: gamer identities only for the admin."""
    if admin:
        return dict(event)
    return {k: v for k, v in event.items() if "gamer" not in k.lower()}


def recent_events(coordinator: Coordinator, *, admin: bool, limit: int = EVENT_BACKLOG) -> list[dict[str, Any]]:
    """The newest events worth a line in a feed, oldest first."""
    picked: list[dict[str, Any]] = []
    for event in reversed(coordinator.events):
        if event.get("event") in QUIET_EVENTS:
            continue
        picked.append(redact_event(event, admin=admin))
        if len(picked) >= limit:
            break
    picked.reverse()
    return picked


class _Viewer:
    __slots__ = ("ws", "admin", "outbox")

    def __init__(self, ws: ServerConnection, admin: bool) -> None:
        self.ws = ws
        self.admin = admin
        self.outbox: asyncio.Queue[str] = asyncio.Queue(VIEWER_QUEUE)

    def offer(self, frame: str) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.outbox.put_nowait(frame)


class LiveFeed:
    def __init__(
        self,
        coordinator: Coordinator,
        snapshot: Callable[[bool], dict[str, Any]],
        *,
        interval_s: float = SNAPSHOT_INTERVAL_S,
    ) -> None:
        self.coordinator = coordinator
        self._snapshot = snapshot
        self.interval_s = interval_s
        self._viewers: set[_Viewer] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._closing = False
        coordinator.listeners.append(self._on_event)

    @property
    def viewers(self) -> int:
        return len(self._viewers)

    async def serve(self, ws: ServerConnection, *, admin: bool) -> None:
        """Runs for as long as the viewer stays connected."""
        if self._closing:
            await ws.close(CLOSE_GOING_AWAY, "coordinator shutting down")
            return
        viewer = _Viewer(ws, admin)
        hello = {"type": "hello", "admin": admin, "interval_s": self.interval_s, "stats": self._snapshot(admin),
                 "events": recent_events(self.coordinator, admin=admin)}
        self._viewers.add(viewer)
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.get_running_loop().create_task(self._tick_forever())
        writer = asyncio.get_running_loop().create_task(self._write(viewer, json.dumps(hello)))
        try:
            async for _ in ws:  # viewers have nothing to say; reading notices when they leave
                pass
        except websockets.ConnectionClosed:
            pass
        finally:
            self._viewers.discard(viewer)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            if not self._viewers and self._ticker is not None:
                self._ticker.cancel()
                self._ticker = None

    async def close(self) -> None:
        """Says goodbye to every viewer (the server waits for its handlers before it stops)."""
        self._closing = True
        if self._on_event in self.coordinator.listeners:
            self.coordinator.listeners.remove(self._on_event)
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        viewers = list(self._viewers)
        if viewers:
            await asyncio.gather(*(v.ws.close(CLOSE_GOING_AWAY, "coordinator shutting down") for v in viewers),
                                 return_exceptions=True)

    async def _write(self, viewer: _Viewer, first: str) -> None:
        try:
            await viewer.ws.send(first)
            while True:
                await viewer.ws.send(await viewer.outbox.get())
        except websockets.ConnectionClosed:
            pass

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                self.broadcast_snapshot()
            except Exception:  # a failed snapshot (database busy) skips a tick, never ends the feed
                log.exception("dashboard snapshot failed")

    def broadcast_snapshot(self) -> None:
        frames: dict[bool, str] = {}
        for viewer in list(self._viewers):
            if viewer.admin not in frames:
                frames[viewer.admin] = json.dumps({"type": "snapshot", "stats": self._snapshot(viewer.admin)})
            viewer.offer(frames[viewer.admin])

    def _on_event(self, event: dict[str, Any]) -> None:
        if not self._viewers or event.get("event") in QUIET_EVENTS:
            return
        frames = {admin: json.dumps({"type": "event", "event": redact_event(event, admin=admin)}, default=str)
                  for admin in {v.admin for v in self._viewers}}
        for viewer in list(self._viewers):
            viewer.offer(frames[viewer.admin])
