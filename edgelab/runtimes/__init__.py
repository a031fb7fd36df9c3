"""The runtimes by name, read from the one table in ``registry``. Each is imported only when
asked for, so a missing engine or wheel degrades one runtime and ``edgelab --help`` stays
instant."""

from __future__ import annotations

from edgelab.runtimes.registry import (
    RuntimeInfo,
    RuntimeSpec,
    create_runtime,
    default_names,
    names,
    parse_runtimes,
    register,
    spec,
    specs,
)

#: The lab's default selection (the three runtimes a first run shows). Every registered
#: runtime and rung: ``registry.names()``.
RUNTIME_NAMES = default_names()

__all__ = [
    "RUNTIME_NAMES",
    "RuntimeInfo",
    "RuntimeSpec",
    "create_runtime",
    "default_names",
    "names",
    "parse_runtimes",
    "register",
    "spec",
    "specs",
]
