"""Verification policy: is a peer's output good enough to reach a game? Pure.

Every result goes through its kind's ``parse_output`` (shape and limits) and ``verify`` (a cheap check of
the content) before it is stored, cached, billed or delivered.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from p2c2r.errors import TaskOutputError
from p2c2r.tasks.base import TaskKind, Verdict


@dataclass(frozen=True, slots=True)
class Checked:
    verdict: Verdict
    output: Any = None  # the typed output, when it parsed


def check_output(kind: TaskKind, inp: Any, raw_output: Any, rng: random.Random) -> Checked:
    try:
        output = kind.parse_output(raw_output)
    except TaskOutputError as exc:
        return Checked(Verdict.reject(f"malformed output: {exc}"))
    try:
        verdict = kind.verify(inp, output, rng)
    except Exception as exc:  # a verifier must never let a hostile output crash the coordinator
        return Checked(Verdict.reject(f"output could not be verified: {type(exc).__name__}: {exc}"))
    return Checked(verdict, output if verdict.ok else None)
