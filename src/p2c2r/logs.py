"""Structured logging: ``key=value`` lines on stderr, quiet (warnings only) unless asked."""

from __future__ import annotations

import logging
import sys
import time


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        text = f"ts={stamp}.{int(record.msecs):03d}Z level={record.levelname.lower()} logger={record.name} msg={record.getMessage()!r}"
        if record.exc_info:
            text += " exc=" + repr(self.formatException(record.exc_info))
        return text


def configure(level: str = "WARNING") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger("p2c2r")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    # websockets logs every failed handshake (e.g. a port scan) at error level; keep those quiet too.
    logging.getLogger("websockets").setLevel(max(logging.getLevelName(level.upper()), logging.WARNING) if isinstance(logging.getLevelName(level.upper()), int) else logging.WARNING)
