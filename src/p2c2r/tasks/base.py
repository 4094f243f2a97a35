"""The contract every task kind keeps. Pure: no I/O, no clocks, no global state.

A task kind is one module under ``p2c2r.tasks`` that defines:

    NAME: str                      the wire name, e.g. "ai_pathfinding"
    VERSION: str                   kernel version; part of the cache key, bump on any change of output
    TOLERANCE_NOTE: str            one line: what "agree" tolerates (shown in docs)
    class Input(msgspec.Struct)    typed input
    class Output(msgspec.Struct)   typed output
    parse_input(raw) -> Input      raw = builtins decoded from msgpack; raises TaskInputError(field, problem)
    parse_output(raw) -> Output    raises TaskOutputError(field, problem)
    compute(inp) -> Output         deterministic for the same input and VERSION
    verify(inp, out, rng) -> Verdict   far cheaper than compute; rng picks spot checks
    agree(a, b) -> bool            two outputs for the same input match within tolerance (quorum, audits)
    example(rng, size="small") -> raw input (builtins only) a user could send
    warm_up() -> None              optional: run every JIT-compiled path once (start-up, not per request)
    requirements(inp) -> frozenset[str]   optional: features a peer must have installed to run this input
                                   (say a model that only some peers hold); empty (the default): any peer
                                   running the kind can
    features() -> frozenset[str]   optional: the features this installation can serve (cheap; peers
                                   advertise them in their Hello); default: none

``compute`` may assume its input came from ``parse_input``; ``verify`` may assume its output came from
``parse_output`` (shape is right) but must not trust any value in it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import msgspec

from p2c2r.errors import TaskInputError, TaskOutputError

NO_FEATURES: frozenset[str] = frozenset()


def _no_requirements(inp: Any) -> frozenset[str]:
    return NO_FEATURES


def _no_features() -> frozenset[str]:
    return NO_FEATURES


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    reason: str = ""

    @classmethod
    def accept(cls) -> Verdict:
        return cls(True)

    @classmethod
    def reject(cls, reason: str) -> Verdict:
        return cls(False, reason)

    def __bool__(self) -> bool:
        return self.ok


@dataclass(frozen=True, slots=True)
class TaskKind:
    """A task kind module seen through one typed handle."""

    name: str
    version: str
    tolerance_note: str
    input_type: type
    output_type: type
    parse_input: Callable[[Any], Any]
    parse_output: Callable[[Any], Any]
    compute: Callable[[Any], Any]
    verify: Callable[[Any, Any, random.Random], Verdict]
    agree: Callable[[Any, Any], bool]
    example: Callable[..., Any]
    # Optional: compile or load every JIT kernel the kind can reach (else a generic run of the examples).
    warm_up: Callable[[], None] | None = None
    requirements: Callable[[Any], frozenset[str]] = _no_requirements
    features: Callable[[], frozenset[str]] = _no_features

    @classmethod
    def from_module(cls, module: ModuleType) -> TaskKind:
        return cls(
            name=module.NAME,
            version=module.VERSION,
            tolerance_note=getattr(module, "TOLERANCE_NOTE", ""),
            input_type=module.Input,
            output_type=module.Output,
            parse_input=module.parse_input,
            parse_output=module.parse_output,
            compute=module.compute,
            verify=module.verify,
            agree=module.agree,
            example=module.example,
            warm_up=getattr(module, "warm_up", None),
            requirements=getattr(module, "requirements", _no_requirements),
            features=getattr(module, "features", _no_features),
        )


# Helpers the kind modules share -------------------------------------------------------------------------


def convert_input(raw: Any, typ: type) -> Any:
    """msgspec.convert with its ValidationError turned into a TaskInputError naming the field."""
    try:
        return msgspec.convert(raw, typ, strict=False)
    except msgspec.ValidationError as exc:
        field, problem = _split_msgspec_error(str(exc))
        raise TaskInputError(field, problem) from exc


def convert_output(raw: Any, typ: type) -> Any:
    try:
        return msgspec.convert(raw, typ, strict=False)
    except msgspec.ValidationError as exc:
        field, problem = _split_msgspec_error(str(exc))
        raise TaskOutputError(field, problem) from exc


def _split_msgspec_error(text: str) -> tuple[str, str]:
    # msgspec says "Expected `int`, got `str` - at `$.agents[0].start`"
    if " - at `" in text:
        problem, _, where = text.rpartition(" - at `")
        return where.rstrip("`").removeprefix("$.").removeprefix("$") or "input", problem
    return "input", text


def require_finite(field: str, *values: float) -> None:
    for v in values:
        if not math.isfinite(v):
            raise TaskInputError(field, f"must be a finite number, got {v!r}")


def require_range(field: str, value: float, lo: float, hi: float) -> None:
    require_finite(field, value)
    if not lo <= value <= hi:
        raise TaskInputError(field, f"must be within [{lo}, {hi}], got {value!r}")


def warm_up_kind(kind: TaskKind) -> None:
    """Run a kind once through compute and verify at start-up, so that imports and JIT compilation do not
    land on the first real request (seconds for numba kernels with a cold cache)."""
    if kind.warm_up is not None:
        kind.warm_up()
        return
    rng = random.Random(0)
    for size in ("small", "large"):
        inp = kind.parse_input(kind.example(rng, size))
        kind.verify(inp, kind.compute(inp), rng)
