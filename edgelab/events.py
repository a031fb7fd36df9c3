"""What a running scenario tells its consumers (CLI progress, the TUI), as immutable records.

The lab calls one ``on_event`` callback from its measuring thread; a consumer must not block in
it. The TUI wraps each in a Textual message; the CLI updates a progress line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edgelab.results import RunResult, Sample
from edgelab.runtimes.registry import RuntimeInfo

RuntimeState = Literal["preparing", "ready", "unavailable", "running", "stopping", "done"]


@dataclass(frozen=True)
class RuntimeStatus:
    runtime: str
    state: RuntimeState
    reason: str | None = None
    fix: str | None = None


@dataclass(frozen=True)
class RuntimeDescribed:
    """A runtime is ready and says what its figures are (phases, what startup includes, the
    memory metric, versions, marks): the front ends label panels from this, never from a
    runtime object of their own."""

    info: RuntimeInfo


@dataclass(frozen=True)
class SampleRecorded:
    sample: Sample


@dataclass(frozen=True)
class InstanceCounts:
    runtime: str
    running: int
    launched: int
    failed: int


@dataclass(frozen=True)
class MemoryPoint:
    """During a ramp: PSS growth (bytes, by the runtime's metric) with ``instances`` resident."""

    runtime: str
    instances: int
    pss_growth_bytes: int
    metric: str


@dataclass(frozen=True)
class RampHeld:
    """A ramp reached its targets and now holds its instances: ``result`` is the run so far,
    complete (memory figures included), so it can be shown and exported while held."""

    result: RunResult


@dataclass(frozen=True)
class ScenarioFinished:
    result: RunResult
    cancelled: bool = False


LabEvent = RuntimeStatus | RuntimeDescribed | SampleRecorded | InstanceCounts | MemoryPoint | RampHeld | ScenarioFinished
