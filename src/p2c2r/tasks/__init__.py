"""The task registry: every task kind by its wire name.

Each kind is one module (see ``base.py`` for the contract). The registry is immutable and built once
from the tuple below; adding a kind means adding its module here.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from functools import cache
from types import MappingProxyType

from p2c2r.errors import UnknownTaskKind
from p2c2r.tasks.base import TaskKind, Verdict

__all__ = ["KIND_MODULES", "TaskKind", "Verdict", "get_kind", "registry"]

KIND_MODULES: tuple[str, ...] = (
    "p2c2r.tasks.pathfinding",
    "p2c2r.tasks.reflections",
    "p2c2r.tasks.physics",
    "p2c2r.tasks.dialogue",
)


@cache
def registry() -> Mapping[str, TaskKind]:
    kinds: dict[str, TaskKind] = {}
    for module_name in KIND_MODULES:
        kind = TaskKind.from_module(importlib.import_module(module_name))
        kinds[kind.name] = kind
    return MappingProxyType(kinds)


def get_kind(name: str) -> TaskKind:
    kinds = registry()
    try:
        return kinds[name]
    except KeyError:
        raise UnknownTaskKind(name, tuple(kinds)) from None
