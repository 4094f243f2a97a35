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

__all__ = ["KIND_MODULES", "TaskKind", "Verdict", "feature_kind", "get_kind", "installed_features", "qualified_feature",
           "registry"]

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


def qualified_feature(kind_name: str, feature: str) -> str:
    """A kind's feature as peers advertise it and the scheduler matches it: ``kind:feature``."""
    return f"{kind_name}:{feature}"


def feature_kind(qualified: str) -> str:
    """The kind a qualified feature belongs to."""
    return qualified.partition(":")[0]


def installed_features() -> list[str]:
    """Every feature that this machine can serve, of every kind, qualified and sorted (a peer's Hello)."""
    return sorted(qualified_feature(name, f) for name, kind in registry().items() for f in kind.features())
