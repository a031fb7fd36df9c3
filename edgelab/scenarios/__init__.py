"""Every scenario by name, in one table: the lab, the CLI's ``--scenario`` choices and the TUI
read it, so a new scenario is one module plus one ``register_scenario`` call here."""

from __future__ import annotations

from edgelab.errors import UsageError
from edgelab.scenarios.base import Scenario
from edgelab.scenarios.burst import BurstScenario
from edgelab.scenarios.ramp import RampScenario
from edgelab.scenarios.steady import SteadyScenario
from edgelab.scenarios.traffic import TrafficScenario

#: Scenario name -> the scenario, in registration order (built-ins first).
SCENARIOS: dict[str, Scenario] = {}


def register_scenario(scenario: Scenario, *, replace: bool = False) -> Scenario:
    """Add a scenario (tests register tiny ones at run time); a name is taken once."""
    if scenario.name in SCENARIOS and not replace:
        raise ValueError(f"scenario {scenario.name!r} is registered already")
    SCENARIOS[scenario.name] = scenario
    return scenario


def unregister_scenario(name: str) -> None:
    """Remove a scenario registered at run time (tests)."""
    SCENARIOS.pop(name, None)


def scenario_names() -> tuple[str, ...]:
    """The registered scenarios' names, in order: the choices of ``--scenario``."""
    return tuple(SCENARIOS)


def get_scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise UsageError(f"unknown scenario '{name}' (choose from {', '.join(SCENARIOS)})") from None


for _builtin in (BurstScenario(), RampScenario(), SteadyScenario(), TrafficScenario()):
    register_scenario(_builtin)
del _builtin

__all__ = ["SCENARIOS", "Scenario", "get_scenario", "register_scenario", "scenario_names", "unregister_scenario"]
