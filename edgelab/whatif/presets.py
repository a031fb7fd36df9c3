"""The stories' scenarios as what-if inputs (``edgelab/data/presets.toml``), each with the
inputs it assumes listed, so a preset never passes an assumption off as a measurement."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from edgelab.errors import UsageError
from edgelab.whatif.model import WhatIfInputs

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10
    import tomli as tomllib

_INPUT_FIELDS = {f.name for f in dataclasses.fields(WhatIfInputs)} - {"trace"}


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    summary: str
    inputs: WhatIfInputs
    assumptions: tuple[str, ...]


def parse_presets(text: str, source: str = "presets.toml") -> dict[str, Preset]:
    """Presets from TOML text; an unknown input or a value out of range is one line naming it."""
    try:
        table: dict[str, Any] = tomllib.loads(text).get("preset", {})
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{source}: not TOML ({exc})") from None
    found: dict[str, Preset] = {}
    for name, entry in table.items():
        values = dict(entry.get("inputs") or {})
        unknown = sorted(set(values) - _INPUT_FIELDS)
        if unknown:
            raise UsageError(f"{source}: preset {name}: unknown input {', '.join(unknown)}")
        for key in ("title", "summary"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise UsageError(f"{source}: preset {name}: no {key}")
        assumptions = entry.get("assumptions")
        if not isinstance(assumptions, list) or not assumptions or not all(isinstance(a, str) for a in assumptions):
            raise UsageError(f"{source}: preset {name}: it must list its assumptions")
        inputs = WhatIfInputs(**values)
        try:
            inputs.validate()
        except UsageError as exc:
            raise UsageError(f"{source}: preset {name}: {exc}") from None
        found[name] = Preset(name, entry["title"], entry["summary"], inputs, tuple(assumptions))
    return found


@lru_cache(maxsize=1)
def presets() -> dict[str, Preset]:
    """The shipped presets by name."""
    text = resources.files("edgelab").joinpath("data/presets.toml").read_text(encoding="utf-8")
    return parse_presets(text)


def preset(name: str) -> Preset:
    table = presets()
    if name not in table:
        raise UsageError(f"unknown preset '{name}' (choose from {', '.join(table)}; edgelab whatif --list-presets)")
    return table[name]
