"""Helpers for the game's tests: a fake gamer for the pure logic, a game running headless in a thread for
the network tests (the test thread meanwhile kills and restarts processes)."""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest

from p2c2r.gamer.client import TaskResult
from p2c2r.gamer.threaded import Completion

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")


class FakeGamer:
    """Stands in for ThreadedGamer: records submissions; the test decides what comes back and when."""

    def __init__(self) -> None:
        self.connected = True
        self.sent: list[tuple[str, str, Any]] = []
        self._done: list[Completion] = []
        self._open: dict[str, str] = {}

    @property
    def in_flight(self) -> int:
        return len(self._open)

    def submit(self, kind: str, task_input: Any, *, deadline_ms: int | None = None, tag: Any = None) -> str:
        task_id = f"t{len(self.sent)}"
        self.sent.append((task_id, kind, task_input))
        self._open[task_id] = kind
        return task_id

    def poll(self) -> list[Completion]:
        out, self._done = self._done, []
        return out

    def finish(self, task_id: str, output: Any, source: str = "peer", cost: int = 2) -> None:
        kind = self._open.pop(task_id)
        self._done.append(Completion(task_id, kind, TaskResult(task_id, kind, output, source, 12.0, 5.0, cost), None))

    def last(self, kind: str) -> tuple[str, str, Any]:
        return [s for s in self.sent if s[1] == kind][-1]


@pytest.fixture
def fake_gamer() -> FakeGamer:
    return FakeGamer()


class GameThread:
    """A headless game paced at 60 fps in a thread of the test process, stopped by ``stop()``."""

    def __init__(self, url: str, seed: int = 1) -> None:
        from p2c2r.game.app import GameApp
        from p2c2r.game.options import GameOptions

        self.app = GameApp(GameOptions(url=url, headless=True, fps=60, seed=seed, name="test_gamer",
                                       connect_wait_s=30.0))
        self.error: BaseException | None = None
        self.started = threading.Event()
        self._thread = threading.Thread(target=self._main, name="game", daemon=True)

    def _main(self) -> None:
        try:
            self.app.start()
            self.started.set()
            self.app.run(frames=0)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            self.started.set()
            self.app.close()

    def start(self) -> GameThread:
        self._thread.start()
        assert self.started.wait(60), "the game did not start"
        assert self.error is None, self.error
        return self

    def stop(self) -> None:
        self.app.request_stop()
        self._thread.join(30)
        assert not self._thread.is_alive(), "the game thread did not stop"

    # Reading the game's figures from the test thread (plain ints, read without a lock).
    def applied(self, kind: str) -> int:
        return self.app.offload.stats[kind].applied if self.app.offload else 0

    def local(self, kind: str) -> int:
        return self.app.offload.stats[kind].local if self.app.offload else 0

    def source(self, name: str) -> int:
        return self.app.offload.sources.get(name, 0) if self.app.offload else 0
