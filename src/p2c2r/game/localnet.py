"""``--local``: a coordinator and two peers on this machine, as subprocesses, stopped when the game ends."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import IO

STARTED = re.compile(r"Server started on [^:]+:(\d+)")


class LocalNetwork:
    def __init__(self, *, peers: int = 2, port: int = 0, db: str | None = None) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="p2c2r-game-")
        self.root = Path(self._tmp.name)
        self.db = db or str(self.root / "results.db")
        self.peers = peers
        self.port = port
        self._procs: list[tuple[subprocess.Popen[bytes], IO[bytes]]] = []

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def _spawn(self, tag: str, args: list[str]) -> Path:
        log_path = self.root / f"{tag}.log"
        log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen([sys.executable, "-m", "p2c2r.cli", *args], stdout=log, stderr=subprocess.STDOUT,
                                env=env)
        self._procs.append((proc, log))
        return log_path

    def start(self, timeout_s: float = 120.0, say: bool = True) -> str:
        """Start the coordinator, wait for its port, start the peers and wait until they have joined."""
        log_path = self._spawn("cloud", ["cloud", "--host", "127.0.0.1", "--port", str(self.port), "--db", self.db,
                                         "--quiet"])
        cloud = self._procs[0][0]
        deadline = time.monotonic() + timeout_s
        while True:
            match = STARTED.search(log_path.read_text(errors="replace"))
            if match:
                self.port = int(match.group(1))
                break
            if cloud.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the local coordinator did not start:\n{log_path.read_text(errors='replace')}")
            time.sleep(0.05)
        if say:
            print(f"☁️  local coordinator on 127.0.0.1:{self.port}; starting {self.peers} peers...", flush=True)
        for i in range(1, self.peers + 1):
            self._spawn(f"peer{i}", ["peer", "--cloud-ip", "127.0.0.1", "--cloud-port", str(self.port),
                                     "--name", f"local_peer_{i}", "--slots", "1", "--quiet"])
        while self.peer_count() < self.peers:
            if time.monotonic() > deadline:
                raise RuntimeError("the local peers did not join in time")
            time.sleep(0.1)
        if say:
            print(f"✅ {self.peers} peers joined", flush=True)
        return self.url

    def peer_count(self) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/stats", timeout=2) as resp:
                return len(json.loads(resp.read())["peers"])
        except (OSError, ValueError, KeyError):
            return 0

    def stop(self) -> None:
        for proc, _ in reversed(self._procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc, log in reversed(self._procs):
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
        self._procs.clear()
        self._tmp.cleanup()
