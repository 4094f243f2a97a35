"""``p2c2r demo``: a coordinator, two peers and a gamer on this machine, their outputs side by side."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

STARTED = re.compile(r"Server started on [^:]+:(\d+)")


class _Role:
    def __init__(self, tag: str, args: list[str], env: dict[str, str] | None = None) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.tag = tag
        self.proc = subprocess.Popen([sys.executable, "-m", "p2c2r.cli", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, encoding="utf-8", errors="replace", env=env)
        self.port: int | None = None
        self.port_known = threading.Event()
        self.peers_connected = 0
        self.peer_joined = threading.Condition()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            match = STARTED.search(line)
            if match and self.port is None:
                self.port = int(match.group(1))
                self.port_known.set()
            if "Peer connected:" in line:
                with self.peer_joined:
                    self.peers_connected += 1
                    self.peer_joined.notify_all()
            print(f"{self.tag} {line.rstrip()}", flush=True)
        self.port_known.set()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(2)  # SIGINT: let it print its totals
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._thread.join(5)


def run_demo(*, port: int = 0, frames: int = 300, db: str | None = None, quiet: bool = False) -> int:
    tmp = tempfile.TemporaryDirectory(prefix="p2c2r-demo-")
    db_path = db or str(Path(tmp.name) / "results.db")
    extra = ["--quiet"] if quiet else []
    roles: list[_Role] = []
    try:
        cloud = _Role("[cloud ]", ["cloud", "--host", "127.0.0.1", "--port", str(port), "--db", db_path, *extra])
        roles.append(cloud)
        if not cloud.port_known.wait(120) or cloud.port is None:
            print("❌ the coordinator did not start", file=sys.stderr)
            return 1
        target = ["--cloud-ip", "127.0.0.1", "--cloud-port", str(cloud.port)]
        keys = {"P2C2R_KEY_DIR": str(Path(tmp.name) / "keys")}  # throwaway identities for a throwaway network
        for i in (1, 2):
            roles.append(_Role(f"[peer{i} ]", ["peer", *target, "--name", f"peer_laptop_00{i}", "--slots", "1", *extra],
                               keys))
        # The gamer starts once both peers are in, so that its first tasks do not all fall back to the cloud.
        with cloud.peer_joined:
            cloud.peer_joined.wait_for(lambda: cloud.peers_connected >= 2, timeout=180)
        gamer = _Role("[gamer ]", ["gamer", *target, "--name", "gamer_pc_001", "--frames", str(frames), *extra], keys)
        roles.append(gamer)
        code = gamer.proc.wait()
        return code
    except KeyboardInterrupt:
        return 130
    finally:
        for role in reversed(roles):
            role.stop()
        tmp.cleanup()
