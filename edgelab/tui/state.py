"""What the panels show, accumulated from lab events off the widget tree.

Plain Python with no Textual import, so it is cheap to test and cheap per event: samples go into
sorted lists (``bisect.insort``) and a tick reads p50/p99 off them in O(1) with the same
percentile definition ``edgelab.stats.summarize`` uses. When the run ends the figures are
replaced by ``RuntimeResult.summary()`` itself, computed in the worker thread, so the final
numbers on screen are the ones ``edgelab run --json`` prints for the same settings.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from edgelab.stats import percentile, plain_conclusion

if TYPE_CHECKING:  # imported where first needed: the lab's first frame needs none of them
    from edgelab.events import LabEvent, SampleRecorded
    from edgelab.results import MemoryResult, RunResult, RuntimeResult
    from edgelab.runtimes.registry import RuntimeInfo
    from edgelab.stats import Summary
    from edgelab.traffic import TrafficResult

#: Startups kept for the sparkline.
RECENT_STARTUPS = 60
#: Window for the live starts-per-second figure.
RATE_WINDOW_S = 2.0
#: A panel whose rung cannot run the workload (``registry.not_applicable``).
NOT_APPLICABLE = "not applicable"
#: How the lab words the same when it gives such a rung up (``_Run._prepare_all``).
LAB_NOT_APPLICABLE = "does not apply to "


@dataclass(frozen=True)
class TrafficFigures:
    """A traffic run's figures for one panel (``edgelab.traffic.TrafficResult``): every request,
    warm or cold, not only the launches."""

    requests: int
    cold: int
    failed: int
    #: Arrival to the first byte of the response (queueing + startup or execution), ns.
    latency_p50_ns: float | None
    latency_p99_ns: float | None
    #: Instances resident at the end of the record, and the most at once.
    instances_now: int
    instances_peak: int
    scaled_down: int
    note: str | None = None
    #: Memory per resident instance measured during the run (bytes, by ``memory_metric``).
    memory_bytes_per_instance: float | None = None
    memory_metric: str = ""

    @property
    def cold_fraction(self) -> float | None:
        served = self.requests - self.failed
        return self.cold / served if served > 0 else None


def traffic_figures(traffic: TrafficResult) -> TrafficFigures:
    """The record's own summaries (``TrafficResult``, as ``edgelab run`` prints them): call it
    in the worker thread, a run holds every request."""
    counts = traffic.counts()
    latency = traffic.latency_summary()
    points = traffic.instances_over_time
    return TrafficFigures(
        requests=counts["requests"],
        cold=counts["cold"],
        failed=counts["failed"],
        latency_p50_ns=latency.p50_ns if latency else None,
        latency_p99_ns=latency.p99_ns if latency else None,
        instances_now=points[-1][1] if points else 0,
        instances_peak=traffic.instances_peak(),
        scaled_down=traffic.scaled_down,
        note=traffic.note,
        memory_bytes_per_instance=traffic.memory_bytes_per_instance,
        memory_metric=traffic.memory_metric,
    )


@dataclass(frozen=True)
class FinalFigures:
    """One runtime's summaries, computed once in the worker from the lab's own result."""

    summary: Summary | None
    phases: dict[str, Summary]
    warnings: list[str]
    traffic: TrafficFigures | None = None


@dataclass(frozen=True)
class RunDone:
    """The worker's last word: the lab's result and its summaries."""

    result: RunResult
    figures: dict[str, FinalFigures]
    cancelled: bool


def final_figures(result: RunResult) -> dict[str, FinalFigures]:
    """Summaries of every runtime: call this in the worker thread, never on the event loop."""
    from edgelab.traffic import TrafficResult

    return {
        name: FinalFigures(
            r.summary(),
            r.phase_summaries(),
            r.warnings(),
            traffic_figures(r.traffic) if isinstance(r.traffic, TrafficResult) else None,
        )
        for name, r in result.runtimes.items()
    }


class EventBuffer:
    """Events from the measuring thread, drained by the UI timer; appends never block."""

    def __init__(self) -> None:
        self._events: deque[LabEvent | RunDone] = deque()

    def __call__(self, event: LabEvent | RunDone) -> None:
        self._events.append(event)

    def drain(self) -> list[LabEvent | RunDone]:
        taken: list[LabEvent | RunDone] = []
        pop = self._events.popleft
        try:
            while True:
                taken.append(pop())
        except IndexError:
            return taken

    def pending(self) -> int:
        # Not __len__: an empty buffer must stay truthy, callers test ``on_event or default``.
        return len(self._events)


@dataclass
class RuntimeLive:
    """Everything one panel shows about one runtime."""

    name: str
    enabled: bool = True
    state: str = "idle"
    reason: str | None = None
    fix: str | None = None
    startup_includes: str = ""
    memory_metric: str = ""
    phase_names: tuple[str, ...] = ()
    #: From the lab's RuntimeDescribed: caveats every figure carries (e.g. "emulated (TCG)").
    marks: tuple[str, ...] = ()
    versions: tuple[tuple[str, str], ...] = ()
    sorted_startups_ns: list[int] = field(default_factory=list)
    sorted_phases_ns: dict[str, list[int]] = field(default_factory=dict)
    recent_startups_ns: deque[int] = field(default_factory=lambda: deque(maxlen=RECENT_STARTUPS))
    start_times: deque[float] = field(default_factory=deque)
    first_start: float | None = None
    last_start: float | None = None
    running: int = 0
    launched: int = 0
    failed: int = 0
    last_error: str | None = None
    memory_points: list[tuple[int, int]] = field(default_factory=list)
    final: FinalFigures | None = None
    memory: MemoryResult | None = None
    #: Steady only, from the lab's result: the rate asked for and the one reached.
    rate_asked_per_s: float | None = None
    rate_achieved_per_s: float | None = None
    dirty: bool = True

    # -- feeding -----------------------------------------------------------------------------
    def describe(self, info: RuntimeInfo) -> None:
        """The runtime's own words for its figures: no runtime object is needed to label them."""
        self.startup_includes = info.startup_includes
        self.memory_metric = info.memory_metric
        self.phase_names = info.phase_names or self.phase_names
        self.marks = info.marks
        self.versions = info.versions
        self.dirty = True

    def add_sample(self, event: SampleRecorded) -> None:
        sample = event.sample
        self.start_times.append(sample.started_at)
        if self.first_start is None:
            self.first_start = sample.started_at
        self.last_start = sample.started_at
        if not sample.ok:
            self.last_error = sample.error
        elif not sample.warmup and sample.startup_ns is not None:
            bisect.insort(self.sorted_startups_ns, sample.startup_ns)
            self.recent_startups_ns.append(sample.startup_ns)
            for phase, value in sample.phases_ns.items():
                bisect.insort(self.sorted_phases_ns.setdefault(phase, []), value)
                if phase not in self.phase_names:
                    self.phase_names += (phase,)
        self.dirty = True

    def finish(self, result: RuntimeResult, figures: FinalFigures | None) -> None:
        self.final = figures
        self.memory = result.memory
        if result.memory is not None and result.memory.curve:
            self.memory_points = list(result.memory.curve)
        self.running = result.running
        self.launched = result.launched
        self.failed = result.failed
        self.startup_includes = result.startup_includes or self.startup_includes
        self.memory_metric = result.memory_metric or self.memory_metric
        self.phase_names = result.phase_names or self.phase_names
        self.rate_asked_per_s = result.rate_asked_per_s
        self.rate_achieved_per_s = result.rate_achieved_per_s
        if result.error:
            self.reason, self.fix = result.error, result.fix
        self.dirty = True

    # -- reading -------------------------------------------------------------------------------
    @property
    def startup_n(self) -> int:
        if self.final is not None:
            return self.final.summary.n if self.final.summary else 0
        return len(self.sorted_startups_ns)

    def p50_ns(self) -> float | None:
        if self.final is not None:
            return self.final.summary.p50_ns if self.final.summary else None
        return percentile(self.sorted_startups_ns, 50) if self.sorted_startups_ns else None

    def p99_ns(self) -> float | None:
        if self.final is not None:
            return self.final.summary.p99_ns if self.final.summary else None
        return percentile(self.sorted_startups_ns, 99) if self.sorted_startups_ns else None

    def phase_p50s(self) -> list[tuple[str, float]]:
        if self.final is not None:
            return [(name, s.p50_ns) for name, s in self.final.phases.items()]
        found = []
        for name in self.phase_names:
            values = self.sorted_phases_ns.get(name)
            if values:
                found.append((name, percentile(values, 50)))
        return found

    def starts_per_s(self, now: float) -> float:
        """Launches begun in the last RATE_WINDOW_S seconds, per second."""
        cutoff = now - RATE_WINDOW_S
        times = self.start_times
        while times and times[0] < cutoff:
            times.popleft()
        return len(times) / RATE_WINDOW_S

    def average_starts_per_s(self) -> float | None:
        """Launches per second over the whole run: for steady traffic the lab's own achieved
        rate (launches started in the run's window, the figure the exports carry)."""
        if self.rate_achieved_per_s is not None:
            return self.rate_achieved_per_s
        if self.first_start is None or self.last_start is None or self.launched < 2:
            return None
        span = self.last_start - self.first_start
        return (self.launched - 1) / span if span > 0 else None

    def bytes_per_instance(self) -> float | None:
        if self.memory is not None:
            return self.memory.pss_figure_bytes_per_instance
        if self.memory_points:
            # Live, mid-ramp: a growth <= 0 (idle drift larger than what the first instances
            # took) is no figure yet, as a settled one would not be (pss_figure_bytes_per_instance).
            instances, growth = self.memory_points[-1]
            return growth / instances if instances and growth > 0 else None
        return None

    def instances_per_gib(self) -> float | None:
        """From the settled host figure only (``MemoryResult.instances_per_gib``): a live PSS
        figure leaves out what the kernel spends, so it makes no per-GiB claim."""
        memory = self.memory
        if memory is None or memory.host_bytes_per_instance is None:
            return None
        return memory.instances_per_gib


class LabState:
    """All panels' state; fed on the event loop by the drain timer, once per tick."""

    def __init__(self, runtimes: Iterable[str]) -> None:
        self.runtimes: dict[str, RuntimeLive] = {name: RuntimeLive(name) for name in runtimes}
        self.result: RunResult | None = None
        self.cancelled = False
        #: A ramp reached its targets and holds them (RampHeld); ``result`` is its figures.
        self.held = False
        #: Versions described since the last ``take_versions`` (for the top line).
        self._new_versions: dict[str, str] = {}

    def take_versions(self) -> dict[str, str]:
        """Versions runtimes described since the last call (engine, wasmtime, ...)."""
        found, self._new_versions = self._new_versions, {}
        return found

    def reset(self, enabled: Iterable[str]) -> None:
        wanted = set(enabled)
        self.runtimes = {
            name: RuntimeLive(name, enabled=name in wanted, state="waiting" if name in wanted else "off")
            for name in self.runtimes
        }
        self.result = None
        self.cancelled = False
        self.held = False

    def not_applicable(self, name: str, why: str) -> None:
        """``name`` cannot run this workload (a function without its artifact, a rung of
        another convention): its panel says so and why, and it is left out of the run."""
        live = self.runtimes.get(name)
        if live is not None:
            live.enabled = False
            live.state = NOT_APPLICABLE
            live.reason = why
            live.dirty = True

    def apply(self, events: Iterable[LabEvent | RunDone]) -> bool:
        """Fold events in; returns whether a run finished among them."""
        from edgelab.events import (
            InstanceCounts,
            MemoryPoint,
            RampHeld,
            RuntimeDescribed,
            RuntimeStatus,
            SampleRecorded,
        )

        finished = False
        for event in events:
            if isinstance(event, SampleRecorded):
                live = self.runtimes.get(event.sample.runtime)
                if live is not None:
                    live.add_sample(event)
            elif isinstance(event, InstanceCounts):
                live = self.runtimes.get(event.runtime)
                if live is not None:
                    live.running, live.launched, live.failed = (
                        event.running,
                        event.launched,
                        event.failed,
                    )
                    live.dirty = True
            elif isinstance(event, MemoryPoint):
                live = self.runtimes.get(event.runtime)
                if live is not None:
                    live.memory_points.append((event.instances, event.pss_growth_bytes))
                    live.memory_metric = event.metric
                    live.dirty = True
            elif isinstance(event, RuntimeDescribed):
                live = self.runtimes.get(event.info.name)
                if live is not None:
                    live.describe(event.info)
                    self._new_versions.update(event.info.versions)
            elif isinstance(event, RuntimeStatus):
                live = self.runtimes.get(event.runtime)
                if live is not None:
                    live.state = event.state
                    if event.state == "unavailable":
                        live.reason, live.fix = event.reason, event.fix
                        if (event.reason or "").startswith(LAB_NOT_APPLICABLE):
                            # The lab's own check (registry.not_applicable): not a failure.
                            live.state = NOT_APPLICABLE
                            live.reason = event.reason.split(": ", 1)[-1] if event.reason else None
                    live.dirty = True
            elif isinstance(event, RampHeld):
                # Every target reached: the held figures are settled and e can export them.
                self.result = event.result
                self.cancelled = False
                self.held = True
                for name, result in event.result.runtimes.items():
                    live = self.runtimes.get(name)
                    if live is not None and result.memory is not None:
                        live.state = "holding"
                        live.memory = result.memory
                        live.memory_points = list(result.memory.curve) or live.memory_points
                        live.dirty = True
            elif isinstance(event, RunDone):
                self.result = event.result
                self.cancelled = event.cancelled
                self.held = False
                for name, result in event.result.runtimes.items():
                    live = self.runtimes.get(name)
                    if live is not None:
                        live.finish(result, event.figures.get(name))
                finished = True
        return finished


def comparison_text(runtimes: Iterable[RuntimeLive]) -> str:
    """The core's plain-language conclusion (the sentence ``edgelab run`` prints) from the
    figures on screen; empty when fewer than two runtimes have any."""
    lives = list(runtimes)
    return plain_conclusion(
        {live.name: live.p50_ns() for live in lives},
        {live.name: live.instances_per_gib() for live in lives},
    )
