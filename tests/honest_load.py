"""Honest work to run beside a fuzzer or a benchmark: a gamer that keeps tasks going and checks every result."""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
from dataclasses import dataclass, field

import msgspec

from p2c2r.gamer.client import GamerClient
from p2c2r.tasks import get_kind
from tests.procs import scaled

HONEST_PACE_S = 0.05


@dataclass
class HonestGamer:
    """A gamer in its own thread and event loop: two workers, each a task every ``HONEST_PACE_S`` (a game's steady
    load, not a flood), every result checked against a local computation."""

    url: str
    key_path: str
    completed: int = 0
    failures: list[str] = field(default_factory=list, repr=False)
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="honest-gamer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(scaled(60))

    async def _main(self) -> None:
        kind = get_kind("ai_npc_dialogue")
        counter = itertools.count()
        try:
            async with GamerClient(self.url, name="honest", key_path=self.key_path) as client:

                async def worker() -> None:
                    while not self._stop.is_set():
                        n = next(counter)
                        task_input = {**kind.example(random.Random(n), "small"), "seed": n}
                        task_id = f"honest-{n}"
                        try:
                            result = await asyncio.wait_for(
                                client.submit("ai_npc_dialogue", task_input, task_id=task_id, deadline_ms=30_000),
                                scaled(60))
                        except Exception as exc:  # noqa: BLE001 - recorded and asserted on by the test
                            self.failures.append(f"{task_id}: {exc!r}")
                            continue
                        want = msgspec.to_builtins(kind.compute(kind.parse_input(task_input)))
                        if result.output != want:
                            self.failures.append(f"{task_id}: wrong output {result.output!r} != {want!r}")
                        else:
                            self.completed += 1
                            self.latencies_ms.append(result.latency_ms)
                        await asyncio.sleep(HONEST_PACE_S)

                await asyncio.gather(worker(), worker())
        except Exception as exc:  # noqa: BLE001
            self.failures.append(f"client: {exc!r}")
