"""Real processes for integration tests: start, wait on observable events (bounded), always stop.

Waits poll an observable condition (a line in a log file, a number in /api/stats) with a deadline; none of
them sleeps as a way to synchronise. ``P2C2R_TEST_TIMEOUT_SCALE`` stretches every deadline on slow machines.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

TIMEOUT_SCALE = float(os.environ.get("P2C2R_TEST_TIMEOUT_SCALE", "1"))
REPO = Path(__file__).resolve().parent.parent
STARTED = re.compile(r"Server started on [^:]+:(\d+)")


def scaled(seconds: float) -> float:
    return seconds * TIMEOUT_SCALE


def wait_until(condition: Callable[[], Any], timeout_s: float, what: str, poll_s: float = 0.02) -> Any:
    deadline = time.monotonic() + scaled(timeout_s)
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {scaled(timeout_s):.1f}s waiting for {what}")
        time.sleep(poll_s)


async def async_wait_until(condition: Callable[[], Any], timeout_s: float, what: str, poll_s: float = 0.02) -> Any:
    """``wait_until`` for coroutines: the event loop keeps running while we wait."""
    import asyncio

    deadline = time.monotonic() + scaled(timeout_s)
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {scaled(timeout_s):.1f}s waiting for {what}")
        await asyncio.sleep(poll_s)


class Proc:
    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        # Identity keys of the test's peers and gamers stay in the test's folder, never in ~/.config.
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "P2C2R_KEY_DIR": str(log_path.parent / "keys"), **(env or {})}
        self.popen = subprocess.Popen([sys.executable, "-m", "p2c2r.cli", *args], stdout=self._log,
                                      stderr=subprocess.STDOUT, cwd=REPO, env=full_env)

    @property
    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.popen.kill()
        self.popen.wait(scaled(20))

    def interrupt(self, timeout_s: float = 20) -> int:
        if self.alive():
            self.popen.send_signal(signal.SIGINT)
        try:
            return self.popen.wait(scaled(timeout_s))
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait(scaled(10))

    def stop(self) -> None:
        if self.alive():
            self.interrupt(10)
        self._log.close()


class CloudProcess(Proc):
    def __init__(self, log_path: Path, db_path: Path, port: int = 0, extra: list[str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        super().__init__(["cloud", "--host", "127.0.0.1", "--port", str(port), "--db", str(db_path), *(extra or [])],
                         log_path, env)
        self.db_path = db_path
        match = wait_until(lambda: STARTED.search(self.output) or (not self.alive() and "dead"), 90,
                           f"the coordinator to start ({log_path})")
        if match == "dead":
            raise RuntimeError(f"coordinator exited early:\n{self.output}")
        self.port = int(match.group(1))
        self.url = f"ws://127.0.0.1:{self.port}"
        self.http = f"http://127.0.0.1:{self.port}"

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        req = urllib.request.Request(self.http + path, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=scaled(10)) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def stats(self) -> dict[str, Any]:
        status, body = self.get("/api/stats")
        assert status == 200, body
        return json.loads(body)

    def wait_for_peers(self, count: int, timeout_s: float = 90) -> None:
        wait_until(lambda: len(self.stats()["peers"]) >= count, timeout_s, f"{count} peer(s) to connect")

    def wait_for_stat(self, predicate: Callable[[dict[str, Any]], bool], what: str, timeout_s: float = 30) -> dict:
        return wait_until(lambda: (s := self.stats()) and predicate(s) and s, timeout_s, what)

    def wait_settled(self, timeout_s: float = 30) -> dict:
        """The stats once every task submitted has been recorded as completed or failed and no replica is
        still running. A gamer holds its result a moment before the completion commits (and is counted,
        billed and cached)."""
        return self.wait_for_stat(
            lambda s: s["tasks"]["completed"] + s["tasks"]["failed"] == s["tasks"]["submitted"]
            and s["tasks"]["in_flight"] == 0,
            "every task to be recorded", timeout_s)


class PeerProcess(Proc):
    def __init__(self, log_path: Path, cloud: CloudProcess, name: str, slots: int = 1,
                 extra: list[str] | None = None) -> None:
        super().__init__(["peer", "--cloud-ip", "127.0.0.1", "--cloud-port", str(cloud.port), "--name", name,
                          "--slots", str(slots), *(extra or [])], log_path)
        self.name = name


class ProcessSet:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[Proc] = []
        self.db_path = root / "results.db"

    def cloud(self, port: int = 0, extra: list[str] | None = None, db_path: Path | None = None,
              env: dict[str, str] | None = None) -> CloudProcess:
        n = sum(isinstance(p, CloudProcess) for p in self.procs)
        proc = CloudProcess(self.root / f"cloud{n}.log", db_path or self.db_path, port, extra, env)
        self.procs.append(proc)
        return proc

    def peer(self, cloud: CloudProcess, name: str, slots: int = 1, extra: list[str] | None = None) -> PeerProcess:
        proc = PeerProcess(self.root / f"{name}.log", cloud, name, slots, extra)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            try:
                proc.stop()
            except Exception:  # keep stopping the others
                proc.popen.kill()
