"""Per-instance samples and per-runtime results: the records every view and export reads.

A ``Sample`` is one launch, frozen; a ``RuntimeResult`` gathers one runtime's samples,
instance counts and resident-memory figure, and derives its summaries on demand.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edgelab.stats import Summary, summarize, warnings_for

GIB = 1 << 30


@dataclass(frozen=True)
class Sample:
    """One launch: cold start to first response, its phases, and how it ended."""

    runtime: str
    index: int
    warmup: bool
    ok: bool
    startup_ns: int | None
    phases_ns: Mapping[str, int] = field(default_factory=dict)
    error: str | None = None
    response_bytes: int = 0
    #: time.monotonic() when the launch began, for starts-per-second.
    started_at: float = 0.0
    #: Which scenario launched it: a burst's cold starts and a ramp's are summarised apart.
    scenario: str = "burst"


@dataclass(frozen=True)
class MemoryResult:
    """Host memory per resident instance, with the metric it was read by.

    ``pss_bytes_per_instance`` is the growth of ``metric`` divided by ``instances``;
    ``mem_available_bytes_per_instance`` is the cross-check: how far the system's MemAvailable
    fell while this runtime alone ramped up, per instance (None if not measured). It includes
    what PSS leaves out (page tables, kernel buffers, the engine's own growth) and other
    processes' noise, so it is only meaningful when the total is many MiB.
    """

    instances: int
    pss_bytes_per_instance: float
    metric: str
    mem_available_bytes_per_instance: float | None
    #: (instances resident, PSS growth in bytes) points taken during the ramp.
    curve: tuple[tuple[int, int], ...] = ()

    @property
    def mem_available_total_bytes(self) -> float | None:
        if self.mem_available_bytes_per_instance is None:
            return None
        return self.mem_available_bytes_per_instance * self.instances

    @property
    def instances_per_gib(self) -> float | None:
        if self.pss_bytes_per_instance <= 0:
            return None
        return GIB / self.pss_bytes_per_instance


@dataclass
class RuntimeResult:
    """Everything one run learned about one runtime."""

    runtime: str
    startup_includes: str = ""
    memory_metric: str = ""
    phase_names: tuple[str, ...] = ()
    error: str | None = None
    fix: str | None = None
    samples: list[Sample] = field(default_factory=list)
    memory: MemoryResult | None = None
    running: int = 0
    #: The run's scenario; its non-warmup samples are the ones summarised.
    scenario: str = "burst"

    @property
    def measured(self) -> list[Sample]:
        return [s for s in self.samples if not s.warmup and s.scenario == self.scenario]

    @property
    def launched(self) -> int:
        return len(self.samples)

    @property
    def failed(self) -> int:
        return sum(1 for s in self.samples if not s.ok)

    @property
    def ok(self) -> int:
        return sum(1 for s in self.measured if s.ok)

    def summary(self) -> Summary | None:
        return summarize([s.startup_ns for s in self.measured if s.ok and s.startup_ns is not None])

    def phase_summaries(self) -> dict[str, Summary]:
        found: dict[str, Summary] = {}
        for phase in self.phase_names:
            values = [s.phases_ns[phase] for s in self.measured if s.ok and phase in s.phases_ns]
            summary = summarize(values)
            if summary is not None:
                found[phase] = summary
        return found

    def warnings(self) -> list[str]:
        if self.error:
            return []
        return warnings_for(self.summary(), len(self.measured))

    def first_error(self) -> str | None:
        """The run-level error, or the first failed launch's reason."""
        if self.error:
            return self.error
        return next((s.error for s in self.samples if not s.ok and s.error), None)

    def to_json(self) -> dict[str, Any]:
        summary = self.summary()
        memory = self.memory
        return {
            "runtime": self.runtime,
            "count": len(self.measured),
            "ok": self.ok,
            "failed": sum(1 for s in self.measured if not s.ok),
            "warmups": len(self.samples) - len(self.measured),
            "error": self.first_error() if (self.error or not self.ok) else None,
            "fix": self.fix,
            "startup_includes": self.startup_includes,
            "startup_us": summary.as_us() if summary else None,
            "phases_us": {name: s.as_us() for name, s in self.phase_summaries().items()},
            "samples_us": [
                round(s.startup_ns / 1_000, 3)
                for s in self.measured
                if s.ok and s.startup_ns is not None
            ],
            "memory_kib_per_instance": (
                round(memory.pss_bytes_per_instance / 1024, 3) if memory else None
            ),
            "memory_metric": memory.metric if memory else None,
            "memory_resident_instances": memory.instances if memory else None,
            "mem_available_kib_per_instance": (
                round(memory.mem_available_bytes_per_instance / 1024, 3)
                if memory and memory.mem_available_bytes_per_instance is not None
                else None
            ),
            "instances_per_gib": (
                round(memory.instances_per_gib) if memory and memory.instances_per_gib else None
            ),
            "instances": {"running": self.running, "launched": self.launched, "failed": self.failed},
            "warnings": self.warnings(),
        }


@dataclass
class RunResult:
    """One run of one scenario: settings, host facts and a result per runtime, in order."""

    metadata: dict[str, Any]
    runtimes: dict[str, RuntimeResult]

    def fastest(self) -> str | None:
        """The runtime with the lowest p50 startup, for ratios."""
        best: tuple[float, str] | None = None
        for name, result in self.runtimes.items():
            summary = result.summary()
            if summary and (best is None or summary.p50_ns < best[0]):
                best = (summary.p50_ns, name)
        return best[1] if best else None

    def to_json(self) -> dict[str, Any]:
        return {
            "metadata": self.metadata,
            "results": [r.to_json() for r in self.runtimes.values()],
        }
