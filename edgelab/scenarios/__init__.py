"""Every scenario by name, in one table: the lab, the CLI's ``--scenario`` choices and the TUI
read it, so a new scenario is one module plus one ``register_scenario`` call (a built-in: one
entry in ``BUILTINS``) here.

A built-in's module is imported when the scenario is first looked up, not when its name is:
``scenario_names()`` (the CLI's choices, the TUI's radio buttons) imports no scenario, and the
traffic scenario's alone (its arrivals, pool and statistics) was ~12 ms of the lab's first paint.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator, Mapping

from edgelab.errors import UsageError
from edgelab.scenarios.base import Scenario

#: The built-in scenarios, in order: name -> ``module:class``, instantiated on first lookup.
BUILTINS = {
    "burst": "edgelab.scenarios.burst:BurstScenario",
    "ramp": "edgelab.scenarios.ramp:RampScenario",
    "steady": "edgelab.scenarios.steady:SteadyScenario",
    "traffic": "edgelab.scenarios.traffic:TrafficScenario",
}
#: Name -> the scenario, or a built-in's ``module:class`` until it is first looked up.
_ENTRIES: dict[str, Scenario | str] = dict(BUILTINS)
_LOADING = threading.Lock()  # two threads' first lookups make one instance


class _Scenarios(Mapping[str, Scenario]):
    """Every registered scenario by name, in registration order (built-ins first)."""

    def __getitem__(self, name: str) -> Scenario:
        entry = _ENTRIES[name]
        if isinstance(entry, Scenario):
            return entry
        with _LOADING:
            entry = _ENTRIES[name]
            if isinstance(entry, str):
                module, _, cls = entry.partition(":")
                entry = _ENTRIES[name] = getattr(importlib.import_module(module), cls)()
            return entry

    def __iter__(self) -> Iterator[str]:
        return iter(_ENTRIES)

    def __len__(self) -> int:
        return len(_ENTRIES)


#: Scenario name -> the scenario, in registration order (built-ins first).
SCENARIOS: Mapping[str, Scenario] = _Scenarios()


def register_scenario(scenario: Scenario, *, replace: bool = False) -> Scenario:
    """Add a scenario (tests register tiny ones at run time); a name is taken once."""
    if scenario.name in _ENTRIES and not replace:
        raise ValueError(f"scenario {scenario.name!r} is registered already")
    _ENTRIES[scenario.name] = scenario
    return scenario


def unregister_scenario(name: str) -> None:
    """Remove a scenario registered at run time (tests)."""
    _ENTRIES.pop(name, None)


def scenario_names() -> tuple[str, ...]:
    """The registered scenarios' names, in order: the choices of ``--scenario`` (imports none)."""
    return tuple(_ENTRIES)


def get_scenario(name: str) -> Scenario:
    if name not in _ENTRIES:
        raise UsageError(f"unknown scenario '{name}' (choose from {', '.join(_ENTRIES)})")
    return SCENARIOS[name]


__all__ = ["BUILTINS", "SCENARIOS", "Scenario", "get_scenario", "register_scenario", "scenario_names", "unregister_scenario"]
