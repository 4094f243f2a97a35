"""The friendly console lines of the seed's "What You'll See", for all three roles.

This is user-facing output, not logging: it goes to stdout, one line per event, flushed at once so that
``p2c2r demo`` can interleave the roles' outputs. ``quiet`` drops the per-task lines but keeps the
connection lines and the summaries.
"""

from __future__ import annotations

import sys
import threading
from typing import TextIO

from p2c2r.cloud.ledger import format_usd


class Console:
    def __init__(self, *, quiet: bool = False, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.quiet = quiet
        self.enabled = enabled
        self._stream = stream if stream is not None else sys.stdout
        self._lock = threading.Lock()

    def line(self, text: str = "") -> None:
        if not self.enabled:
            return
        with self._lock:
            try:
                self._stream.write(text + "\n")
                self._stream.flush()
            except (BrokenPipeError, ValueError):  # the reader went away; output is best effort
                self.enabled = False

    def task_line(self, text: str) -> None:
        if not self.quiet:
            self.line(text)

    def banner(self, title: str) -> None:
        self.line(title)
        self.line("=" * max(len(title), 20))


def money(micro_usd: int, places: int = 6) -> str:
    return format_usd(micro_usd, places=places)
