"""The cold-start ladder: every rung usable here, one mixed burst, a short ramp each, one table.

``edgelab ladder`` answers "which part of a start is the runtime and which the trick": the same
workload on every registered rung (``wasm``, ``wasm:jit``, ``container:paused`` ...), cold
starts taken in one mixed burst through the real ``Lab`` (block interleaving, so drift falls on
all rungs alike), then a short ramp per rung that prices what keeping an instance ready costs.
One table sorted by p50, with what each figure includes, what the rung skips, its idle cost and
its marks, and a log-scale bar per rung (1 µs to 10 s).

Rungs differ by 10^6 in launch time (a pooled Wasm slot ~2 µs, a microVM under TCG ~3 s), so
each rung gets a time budget: one untimed probe (a warmup and one cold start per rung, in a
mixed burst of its own) prices each rung's launch, and a rung whose ``count`` launches would
overrun its budget gets fewer, said beside its figures. The burst that follows is still one
mixed burst of every rung: ``LadderBurst``, a scenario registered while the ladder runs, is the
lab's block interleaving with a count per rung (``Settings.count`` is one for all).

Headless: never imports textual (the TUI's ladder view reads the axis and rows from here).
"""

from __future__ import annotations

import argparse
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edgelab.errors import EdgelabError, UsageError
from edgelab.scenarios.base import Scenario
from edgelab.settings import COUNT, RESIDENT, Limit, flag
from edgelab.stats import format_bytes_or_dash, format_duration_ns, warnings_for

if TYPE_CHECKING:
    from rich.console import Console

    from edgelab.events import LabEvent
    from edgelab.lab import Lab, Settings, _Run
    from edgelab.results import MemoryResult, RunResult, RuntimeResult

DEFAULT_COUNT = 30
#: At most this many resident instances per rung for its idle-cost ramp; a rung holds fewer
#: where RAMP_SHARE of its budget fits fewer (a container ~7, a microVM under TCG 1). A handful
#: of 8 KiB Wasm instances is lost in PSS noise (5 read -52.8 KiB here); 200 are not.
DEFAULT_RESIDENT = 200
DEFAULT_BUDGET_S = 20.0
BUDGET_S = Limit(0, 3_600, "seconds", lo_inclusive=False)
#: The share of a rung's budget its ramp may spend; the probe and the burst share the rest.
RAMP_SHARE = 0.25
#: A rung the budget caps still gets this many measured cold starts, even past its budget (a
#: microVM under TCG: ~9 s a launch, its probe alone ~9 s of a 20 s budget).
MIN_CAPPED_COUNT = 1
#: Warmups in the mixed burst for a rung whose count fits its budget. A capped rung has none
#: there: the probe's launch, a little before, was its warmup, and its next launch would cost
#: as much as a measured one.
WARMUP = 1
#: Six cells a decade at least: room for the longest tick label ("100µs") and a space.
MIN_AXIS_WIDTH = 42


# -- the log-scale axis (shared by the terminal bars and the TUI view) --------------------------
@dataclass(frozen=True)
class LogAxis:
    """A log10 axis from ``lo_ns`` to ``hi_ns`` over ``width`` character cells.

    Launch times span six decades, so a linear bar would show a Wasm start as nothing beside a
    container's; on a log axis each decade is the same width and a tick names it."""

    lo_ns: float = 1e3
    hi_ns: float = 1e10
    width: int = 56

    @property
    def decades(self) -> float:
        return math.log10(self.hi_ns / self.lo_ns)

    def fraction(self, value_ns: float) -> float:
        """Where ``value_ns`` falls, 0 at ``lo_ns`` and 1 at ``hi_ns`` (clamped)."""
        if not value_ns or value_ns <= self.lo_ns:
            return 0.0
        return min(1.0, math.log10(value_ns / self.lo_ns) / self.decades)

    def cells(self, value_ns: float) -> float:
        """The bar's length in cells (fractional: drawn with eighth blocks)."""
        return self.fraction(value_ns) * self.width

    def column(self, value_ns: float) -> int:
        """The cell a marker for ``value_ns`` goes in (0 .. width - 1)."""
        return min(self.width - 1, int(self.cells(value_ns)))

    def ticks(self) -> list[tuple[int, str]]:
        """One tick per decade: (column, label) such as (0, "1µs"), (8, "10µs") ..."""
        found = []
        exponent = math.ceil(math.log10(self.lo_ns) - 1e-9)
        while 10**exponent <= self.hi_ns * (1 + 1e-9):
            value = 10.0**exponent
            found.append((min(self.width, round(self.fraction(value) * self.width)), tick_label(value)))
            exponent += 1
        return found

    def bar(self, p50_ns: float, p99_ns: float | None = None) -> str:
        """A bar to p50 in solid blocks, continued in light shade to p99, ``width`` cells."""
        solid = self.cells(p50_ns)
        whole = int(solid)
        eighths = int((solid - whole) * 8)
        text = "█" * whole + (_EIGHTHS[eighths] if eighths else "")
        if p99_ns is not None and p99_ns > p50_ns:
            reach = round(self.cells(p99_ns))
            text += "░" * max(0, reach - len(text))
        return text.ljust(self.width)[: self.width]

    def tick_lines(self) -> tuple[str, str]:
        """The axis under the bars: a rule with a mark at each decade, and the labels under
        their marks (a label that would run into the one before it is left out)."""
        rule = ["─"] * (self.width + 1)
        labels = [" "] * (self.width + 8)
        end = -1
        for col, label in self.ticks():
            rule[min(col, self.width)] = "┼" if 0 < col < self.width else "├" if col == 0 else "┤"
            if col >= end + 1 or end < 0:
                labels[col : col + len(label)] = label
                end = col + len(label)
        return "".join(rule), "".join(labels).rstrip()


_EIGHTHS = " ▏▎▍▌▋▊▉"


def tick_label(value_ns: float) -> str:
    """1µs, 10µs, 100µs, 1ms ... 1s, 10s: a decade's label, as short as it can be."""
    for suffix, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3), ("ns", 1.0)):
        if value_ns >= scale * (1 - 1e-9):
            return f"{value_ns / scale:.0f}{suffix}"
    return f"{value_ns:g}ns"


# -- what a rung gets -------------------------------------------------------------------------
@dataclass(frozen=True)
class RungPlan:
    """What the ladder asks of one rung, after the probe priced its launches."""

    name: str
    count: int
    resident: int
    #: Wall time per launch the probe saw (launch, teardown, the pause between blocks), s.
    launch_wall_s: float
    capped: bool
    #: Untimed launches before its cold starts in the mixed burst (WARMUP, or 0 when capped).
    warmup: int = WARMUP


def plan_rung(
    name: str,
    launch_wall_s: float,
    probe_s: float,
    count: int,
    resident: int,
    budget_s: float,
    resident_launch_s: float | None = None,
) -> RungPlan:
    """How many cold starts and resident instances fit the rung's budget: the probe's time
    comes off it, the ramp gets RAMP_SHARE of it (priced at ``resident_launch_s`` a launch:
    a ramp has no pause between blocks, but a ready pool refills there too), the burst the rest, with WARMUP
    launches first if its count fits and none if it is capped."""
    per_launch = max(launch_wall_s, 1e-7)
    burst_s = max(0.0, budget_s * (1 - RAMP_SHARE) - probe_s)
    fits = int(burst_s / per_launch)
    capped = fits < count + WARMUP
    planned = count if not capped else min(count, max(MIN_CAPPED_COUNT, fits))
    ramp_launch = max(resident_launch_s if resident_launch_s is not None else per_launch, 1e-7)
    held = min(resident, max(1, int(budget_s * RAMP_SHARE / ramp_launch))) if resident else 0
    return RungPlan(name, planned, held, launch_wall_s, capped, 0 if capped else WARMUP)


def launch_cost_s(probe: RunResult, name: str, pacer: _Pacer) -> tuple[float, float]:
    """What one more launch of ``name`` will cost, from the probe: alone (a ramp's price:
    the launch with its teardown or a ready pool's refill), and in the mixed burst.

    The wall time the pacer charged includes a wait for quiet CPUs before each of the rung's
    blocks (up to 100 ms on a busy machine), and in the probe every launch is a block of its
    own. In the burst a fast rung runs blocks of about BLOCK_S, so it pays that wait once per
    block, not per launch: the wait is taken out (the lab reports its total and the blocks)
    and spread over the block size the rung will get."""
    from edgelab.scenarios import burst

    launches = pacer.launches.get(name, 0)
    if not launches:
        return 0.0, 0.0
    facts = probe.metadata.get("interleave") or {}
    per_block = facts.get("launches_per_block") or {}
    blocks = sum(int(b.get("blocks", 0)) for b in per_block.values())
    wait_s = float(facts.get("quiet_wait_ms_total") or 0.0) / 1000 / max(1, blocks - 1)
    startups = [s.startup_ns for s in probe.runtimes[name].samples if s.ok and s.startup_ns]
    floor_s = min(startups) / 1e9 if startups else 0.0
    own_blocks = int((per_block.get(name) or {}).get("blocks", 0))
    pure_s = max(floor_s, (pacer.wall_s.get(name, 0.0) - own_blocks * wait_s) / launches)
    block = max(1, min(burst.BLOCK_MAX, int(burst.BLOCK_S / max(pure_s, 1e-7))))
    return pure_s, pure_s + wait_s / block


class _Pacer:
    """Charges the wall time between one sample and the one before it to the later sample's
    runtime (its launch and what the lab did since: removal, the pause between blocks), as the
    CLI's ETA does: a rung's pace is its share of the clock."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.wall_s: dict[str, float] = {}
        self.launches: dict[str, int] = {}
        self._last: float | None = None

    def __call__(self, event: LabEvent) -> None:
        from edgelab.events import RuntimeStatus, SampleRecorded

        now = self.clock()
        if isinstance(event, RuntimeStatus) and event.state == "running" and self._last is None:
            self._last = now
        elif isinstance(event, SampleRecorded):
            name = event.sample.runtime
            self.wall_s[name] = self.wall_s.get(name, 0.0) + now - (self._last if self._last is not None else now)
            self.launches[name] = self.launches.get(name, 0) + 1
            self._last = now

    def per_launch_s(self, name: str) -> float:
        n = self.launches.get(name, 0)
        return self.wall_s.get(name, 0.0) / n if n else 0.0


# -- the run ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LadderRequest:
    workload: str = "hello"
    #: None: every registered (non-hidden) rung.
    rungs: tuple[str, ...] | None = None
    count: int = DEFAULT_COUNT
    resident: int = DEFAULT_RESIDENT
    budget_s: float = DEFAULT_BUDGET_S

    def validate(self) -> tuple[str, ...]:
        """The rungs to run; bad input is a UsageError (one line, exit 2) before anything runs."""
        from edgelab import settings as limits
        from edgelab.runtimes import registry
        from edgelab.workloads import get_workload

        if self.count <= 0:
            raise UsageError(f"-n must be a positive number of cold starts, not {self.count}")
        limits.check(self.count, "-n", COUNT)
        limits.check(self.resident, "--resident", RESIDENT)
        limits.check(self.budget_s, "--budget-s", BUDGET_S)
        get_workload(self.workload)
        if self.rungs is None:
            return registry.names()
        return registry.parse_runtimes(",".join(self.rungs))


@dataclass
class Ladder:
    """A finished ladder: the merged result (one RuntimeResult per rung, burst samples and the
    ramp's memory) and what each rung was given."""

    result: RunResult
    plans: dict[str, RungPlan]
    asked: int
    #: Rungs whose ramp failed or was given up, with the line that says why.
    ramp_problems: dict[str, str] = field(default_factory=dict)

    def usable(self) -> list[RuntimeResult]:
        return [r for r in self.result.runtimes.values() if not (r.error and not r.ok)]

    def unusable(self) -> list[RuntimeResult]:
        return [r for r in self.result.runtimes.values() if r.error and not r.ok]

    def rows(self) -> list[RuntimeResult]:
        """The usable rungs, fastest p50 first (a rung with no figure last)."""

        def key(r: RuntimeResult) -> tuple[int, float]:
            s = r.summary()
            return (0, s.p50_ns) if s else (1, 0.0)

        return sorted(self.usable(), key=key)


EventSink = Callable[["LabEvent"], None]


def run_ladder(
    request: LadderRequest,
    lab: Lab | None = None,
    on_phase: Callable[[str], None] | None = None,
    on_event: EventSink | None = None,
    cancel: threading.Event | None = None,
) -> Ladder:
    """Probe, then the bursts, then the ramps, all on one lab; the lab is closed at the end
    (every instance removed) unless one was passed in."""
    from edgelab.lab import Lab

    rungs = request.validate()
    own = lab is None
    lab = lab or Lab()
    try:
        return _Ladder(request, rungs, lab, on_phase, on_event, cancel).run()
    finally:
        if own:
            lab.close()


class _Ladder:
    def __init__(
        self,
        request: LadderRequest,
        rungs: tuple[str, ...],
        lab: Lab,
        on_phase: Callable[[str], None] | None,
        on_event: EventSink | None,
        cancel: threading.Event | None,
    ) -> None:
        self.request = request
        self.rungs = rungs
        self.lab = lab
        self.phase = on_phase or (lambda text: None)
        self.forward = on_event or (lambda event: None)
        self.cancel = cancel or threading.Event()

    def _settings(self, **kwargs: Any) -> Settings:
        from edgelab.lab import Settings

        return Settings(workload=self.request.workload, interleave="block", **kwargs)

    def _run(self, settings: Settings, sink: EventSink | None = None) -> RunResult:
        def both(event: LabEvent) -> None:
            if sink is not None:
                sink(event)
            self.forward(event)

        result = self.lab.run(settings, on_event=both, cancel=self.cancel)
        if result.metadata.get("cancelled"):
            raise KeyboardInterrupt
        return result

    def _burst(self, names: tuple[str, ...], counts: dict[str, int], warmups: dict[str, int]) -> RunResult:
        """One mixed burst of every rung, each its own count (a single rung: a plain burst)."""
        if len(names) == 1:
            return self._run(self._settings(runtimes=names, count=counts[names[0]], warmup=warmups[names[0]]))
        from edgelab.scenarios import register_scenario, unregister_scenario

        register_scenario(LadderBurst(counts, warmups), replace=True)
        try:
            return self._run(
                self._settings(runtimes=names, scenario=LadderBurst.name, count=max(counts.values()), warmup=WARMUP)
            )
        finally:
            unregister_scenario(LadderBurst.name)

    def run(self) -> Ladder:
        started = time.monotonic()
        self.phase(f"pricing {len(self.rungs)} rungs: one untimed launch each")
        pacer = _Pacer()
        probe = self._run(self._settings(runtimes=self.rungs, count=1, warmup=0), pacer)
        usable = [n for n, r in probe.runtimes.items() if not r.error]
        plans: dict[str, RungPlan] = {}
        for name in usable:
            share = pacer.per_launch_s(name) * pacer.launches.get(name, 0)
            alone_s, in_burst_s = launch_cost_s(probe, name, pacer)
            plans[name] = plan_rung(
                name, in_burst_s, share, self.request.count, self.request.resident,
                self.request.budget_s, resident_launch_s=alone_s,
            )
        merged: dict[str, RuntimeResult] = {n: r for n, r in probe.runtimes.items() if r.error}
        bursts: list[tuple[tuple[str, ...], dict[str, int], RunResult]] = []
        if plans:
            counts = {name: plan.count for name, plan in plans.items()}
            warmups = {name: plan.warmup for name, plan in plans.items()}
            names = tuple(counts)
            total = sum(counts.values()) + sum(warmups.values())
            self.phase(f"one mixed burst of {len(names)} rungs, {total:,} launches in blocks")
            burst = self._burst(names, counts, warmups)
            bursts.append((names, counts, burst))
            merged.update(burst.runtimes)
        ladder = Ladder(_merge(probe, bursts, merged, self, plans), plans, self.request.count)
        ramped = {n: plans[n].resident for n in plans if plans[n].resident and n in merged and not merged[n].error}
        if ramped:
            self.phase(f"a ramp per rung, {sum(ramped.values()):,} resident instances in all (idle cost per ready instance)")
            ramp = self._run(self._settings(runtimes=tuple(ramped), scenario="ramp", resident=ramped, warmup=0))
            for name, ramp_result in ramp.runtimes.items():
                target = merged[name]
                target.samples.extend(ramp_result.samples)
                target.memory = ramp_result.memory
                problem = ramp_result.error or (ramp_result.memory.limit if ramp_result.memory else None)
                if problem or ramp_result.memory is None:
                    ladder.ramp_problems[name] = problem or "the ramp held no instance"
            ladder.result.metadata["versions"].update(ramp.metadata.get("versions", {}))
        ladder.result.metadata["ladder"]["wall_s"] = round(time.monotonic() - started, 3)
        ladder.result.metadata["ladder"]["ramp_problems"] = dict(ladder.ramp_problems)
        _record_plans(ladder)
        return ladder


class LadderBurst(Scenario):
    """The ladder's mixed burst, a scenario of the lab's: its block interleaving (each rung a
    block of about BLOCK_S in turn, the order flipped every round, a wait for quiet CPUs
    between two rungs' blocks) with each rung's own number of cold starts. Registered under
    ``SCENARIO`` only while a ladder runs, so it is no choice of ``edgelab run --scenario``."""

    name = "ladder"
    summary = "the ladder's mixed burst: each rung its budget's cold starts, rungs taking turns in blocks"
    reads = ("count", "interleave")

    def __init__(self, counts: dict[str, int], warmups: dict[str, int] | None = None) -> None:
        self.counts = dict(counts)
        self.warmups = dict(warmups or {})

    def validate(self, settings: Settings) -> None:
        from edgelab import settings as limits

        for name, count in self.counts.items():
            limits.check(count, f"cold starts for {name}", COUNT)

    def run(self, run: _Run) -> None:
        from edgelab.events import RuntimeStatus
        from edgelab.scenarios import burst

        order = run.active()
        for name in order:
            run.emit(RuntimeStatus(name, "running"))
        # The lab marks a launch a warmup by its index (index < settings.warmup): a rung with
        # fewer warmups than that starts numbering later, so none of its cold starts is one.
        warmup = run.settings.warmup
        total = {name: warmup + self.counts.get(name, run.settings.count) for name in order}
        done = {name: warmup - min(warmup, self.warmups.get(name, warmup)) for name in order}
        size = dict.fromkeys(order, 1)
        cap = {name: max(1, -(-total[name] // burst.BLOCK_MIN_ROUNDS)) for name in order}
        run.blocks = {name: [] for name in order}
        rounds = 0
        previous: str | None = None
        while not run.cancel.is_set():
            pending = [n for n in order if n in run.runtimes and done[n] < total[n]]
            if not pending:
                break
            for name in pending if rounds % 2 == 0 else reversed(pending):
                if run.cancel.is_set() or name not in run.runtimes:
                    continue
                if previous not in (None, name) and not run.lab.fake:
                    run.settle_s += burst.wait_until_quiet(run.cancel)
                previous = name
                n = min(size[name], total[name] - done[name])
                started = time.monotonic()
                if n > 1:
                    ran = run.cold_start_batch(name, done[name], n)
                else:
                    run.launch_once(name, done[name], done[name] < warmup, keep=False)
                    ran = 1
                elapsed = time.monotonic() - started
                done[name] += ran
                run.blocks[name].append(ran)
                size[name] = max(1, min(cap[name], burst.BLOCK_MAX, int(burst.BLOCK_S / max(elapsed / max(1, ran), 1e-7))))
            rounds += 1


def _merge(
    probe: RunResult,
    bursts: list[tuple[tuple[str, ...], dict[str, int], RunResult]],
    merged: dict[str, RuntimeResult],
    run: _Ladder,
    run_plans: dict[str, RungPlan],
) -> RunResult:
    """One RunResult for the history and the JSON export: the main burst's metadata (host,
    session, interleave) with every rung in it, in the order asked, and a ``ladder`` section
    saying what each rung was given and which bursts ran."""
    from edgelab.results import RunResult

    main = bursts[0][2] if bursts else probe
    metadata = dict(main.metadata)
    metadata["started"] = probe.metadata.get("started", metadata.get("started"))
    versions = dict(probe.metadata.get("versions", {}))
    for _, _, burst in bursts:
        versions.update(burst.metadata.get("versions", {}))
    metadata["versions"] = versions
    settings = dict(metadata.get("settings", {}))
    settings["runtimes"] = list(run.rungs)
    settings["count"] = run.request.count
    settings["resident"] = {}
    metadata["settings"] = settings
    metadata["ladder"] = {
        "count_asked": run.request.count,
        "budget_s_per_rung": run.request.budget_s,
        "resident_asked": run.request.resident,
        "probe": "one launch per rung in a mixed burst, not reported: it warms each rung and prices its launches for its budget",
        "bursts": [
            {
                "runtimes": list(names),
                "counts": counts,
                "warmups": {name: plan.warmup for name, plan in run_plans.items() if name in names},
                "interleave": burst.metadata.get("interleave"),
            }
            for names, counts, burst in bursts
        ],
        "rungs": {},
    }
    ordered = {name: merged[name] for name in run.rungs if name in merged}
    return RunResult(metadata, ordered)


# -- the table --------------------------------------------------------------------------------------
def idle_cost(memory: MemoryResult | None) -> tuple[str, str]:
    """(host, user-space) memory per ready instance, in words fit for a table cell."""
    if memory is None:
        return "–", "–"
    host = memory.host_bytes_per_instance
    user = memory.pss_figure_bytes_per_instance
    return format_bytes_or_dash(host), format_bytes_or_dash(user)


def chart_lines(rows: Sequence[tuple[str, float | None, float | None, Sequence[str]]], axis: LogAxis) -> list[str]:
    """One line per rung (name, bar to p50 and shade to p99, p50 · p99 and marks), then the
    axis: plain text, so the CLI prints it and the TUI styles it."""
    label = max([len(name) for name, *_ in rows] + [4])
    lines = []
    for name, p50, p99, marks in rows:
        bar = axis.bar(p50, p99) if p50 else " " * axis.width
        figures = f"{format_duration_ns(p50)} · p99 {format_duration_ns(p99)}" if p50 and p99 else "no figure"
        mark = f"  ⚠ {'; '.join(marks)}" if marks else ""
        lines.append(f"{name:<{label}} {bar} {figures}{mark}")
    rule, ticks = axis.tick_lines()
    lines.append(" " * (label + 1) + rule)
    lines.append(" " * (label + 1) + ticks)
    return lines


def ladder_rows(ladder: Ladder) -> list[tuple[str, float | None, float | None, Sequence[str]]]:
    found: list[tuple[str, float | None, float | None, Sequence[str]]] = []
    for r in ladder.rows():
        s = r.summary()
        found.append((r.runtime, s.p50_ns if s else None, s.p99_ns if s else None, tuple(r.marks)))
    return found


def print_ladder(ladder: Ladder, console: Console) -> None:
    from rich import box
    from rich.table import Table

    meta = ladder.result.metadata
    table = Table(
        title=f"{meta['workload']['name']}: the cold-start ladder, by p50 (launch call → first response byte)",
        caption="n: measured cold starts (cap: fewer, the rung's --budget-s); idle: memory per ready instance;"
        " ⚠: read the rung's marks below before its figures",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 0, 0, 1),
    )
    # Fits 80 columns with the longest rung name: the notes below say what each cell means.
    for column in ("rung", "p50", "p99", "n", "idle host", "idle user"):
        table.add_column(column, justify="left" if column == "rung" else "right", no_wrap=True)
    for r in ladder.rows():
        s = r.summary()
        plan = ladder.plans.get(r.runtime)
        launches = (f"{r.ok}" if r.ok == len(r.measured) else f"{r.ok}/{len(r.measured)}") + (" cap" if plan and plan.capped else "")
        host, user = idle_cost(r.memory)
        p50, p99 = (format_duration_ns(s.p50_ns), format_duration_ns(s.p99_ns)) if s else ("–", "–")
        table.add_row(r.runtime + (" ⚠" if r.marks else ""), p50, p99, launches, host, user)
    console.print(table)
    axis = LogAxis(width=max(MIN_AXIS_WIDTH, min(56, console.width - 38)))
    console.print("[b]log scale[/] (█ to p50, ░ to p99)", highlight=False)
    for line in chart_lines(ladder_rows(ladder), axis):
        console.print(line, highlight=False, markup=False, soft_wrap=True, crop=False)
    console.print("[b]what each rung's figure includes, skips, and costs to keep ready[/]", highlight=False)
    for r in ladder.rows():
        plan = ladder.plans.get(r.runtime)
        console.print(f"[b]{r.runtime}[/]: {r.startup_includes}", highlight=False, soft_wrap=True)
        for mark in r.marks:
            console.print(f"  [yellow]⚠ {mark}[/]", highlight=False, soft_wrap=True)
        if r.skips:
            console.print(f"  skips: {r.skips}", highlight=False, soft_wrap=True)
        m = r.memory
        if m is not None:
            console.print(
                f"  ready: {m.instances:,} held; host {idle_cost(m)[0]} per instance ({m.host_basis});"
                f" user-space {idle_cost(m)[1]} ({m.metric})"
                + (f"; {r.ready_cost}" if r.ready_cost else ""),
                highlight=False,
                soft_wrap=True,
            )
        problem = ladder.ramp_problems.get(r.runtime)
        if problem:
            console.print(f"  [yellow]ramp:[/] {problem}", highlight=False, soft_wrap=True)
        if plan and plan.capped:
            console.print(
                f"  [yellow]budget:[/] {plan.count} of {ladder.asked} cold starts (~{plan.launch_wall_s:.2f} s per"
                f" launch; --budget-s {meta['ladder']['budget_s_per_rung']:g} per rung): percentiles of so few"
                " are rough, raise --budget-s for more",
                highlight=False,
                soft_wrap=True,
            )
        for warning in warnings_for(r.summary(), len(r.measured)):
            if plan and plan.capped and warning.startswith("only "):
                continue  # the budget line says it, with the fix that applies here
            console.print(f"  [yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
        if r.failed:
            console.print(f"  [red]{r.failed} launches failed; first: {r.first_error()}[/]", highlight=False, soft_wrap=True)
    for r in ladder.unusable():
        console.print(f"[yellow]{r.runtime}:[/] {r.error}" + (f" (fix: {r.fix})" if r.fix else ""), highlight=False, soft_wrap=True)
    if meta.get("responses_identical") is False:
        console.print("[red]the rungs' responses differ: the workload is not deterministic across rungs[/]", highlight=False)


def _record_plans(ladder: Ladder) -> None:
    rungs = ladder.result.metadata["ladder"]["rungs"]
    for name, plan in ladder.plans.items():
        rungs[name] = {
            "count": plan.count,
            "capped_by_budget": plan.capped,
            "resident": plan.resident,
            "launch_wall_s_probe": round(plan.launch_wall_s, 6),
        }


# -- the command --------------------------------------------------------------------------------
LADDER_EXIT_STATUS = """exit status:
  0    every usable rung ran its cold starts (a rung unusable here is one line, not a failure)
  1    a usable rung failed launches or had none succeed, or no rung could run here
  2    bad input: a flag, a workload, a rung name
  130  interrupted (ctrl+c, SIGTERM, SIGHUP); everything the lab started is removed"""


class _Status:
    """The status line on stderr: the ladder's phase and the launches done in it (redrawn at
    most every REFRESH_S: a Wasm block records thousands of samples a second)."""

    REFRESH_S = 0.1

    def __init__(self, status: Any) -> None:
        self.status = status
        self.phase = "preparing"
        self.launches = 0
        self._shown = 0.0

    def set_phase(self, text: str) -> None:
        self.phase, self.launches = text, 0
        self._draw()

    def __call__(self, event: LabEvent) -> None:
        from edgelab.events import SampleRecorded

        if isinstance(event, SampleRecorded):
            self.launches += 1
            if time.monotonic() - self._shown >= self.REFRESH_S:
                self._draw()

    def _draw(self) -> None:
        self._shown = time.monotonic()
        done = f" · {self.launches:,} launches" if self.launches else ""
        self.status.update(f"ladder: {self.phase}{done}…")


def add_parser(sub: Any) -> None:
    """``edgelab ladder``'s flags (cli.py calls this: the flags live beside their command)."""
    ladder = sub.add_parser(
        "ladder",
        help="every rung usable here: cold starts sorted by p50, idle cost, a log-scale bar each",
        description="Cold starts of one workload on every registered rung (or --rungs), in one\n"
        "mixed burst through the lab, then a short ramp each for the memory an idle ready\n"
        "instance holds. Each rung gets --budget-s: a slow rung gets fewer launches, said.",
        epilog=LADDER_EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ladder.add_argument("--workload", "-w", default="hello", help="workload to start (see edgelab workloads)")
    ladder.add_argument("--rungs", default=None, help="comma-separated rungs (default: every registered one)")
    ladder.add_argument("--count", "-n", type=flag(COUNT), default=DEFAULT_COUNT, help="measured cold starts per rung")
    ladder.add_argument("--resident", type=flag(RESIDENT), default=DEFAULT_RESIDENT, help="at most this many instances per rung's ramp, fewer where a quarter of its budget fits fewer (0: no ramp)")
    ladder.add_argument("--budget-s", type=flag(BUDGET_S), default=DEFAULT_BUDGET_S, help="seconds of launches per rung")
    ladder.add_argument("--json", metavar="FILE", help="write the ladder as JSON (- for stdout)")
    ladder.add_argument("--no-history", action="store_true", help="do not save this ladder in the history")


def cmd_ladder(args: argparse.Namespace) -> int:
    from edgelab.export import check_targets, target, write_targets

    rungs = tuple(p.strip() for p in args.rungs.split(",")) if args.rungs is not None else None
    request = LadderRequest(args.workload, rungs, args.count, args.resident, args.budget_s)
    request.validate()
    targets = [target(args.json, "json", "--json")] if args.json is not None else []
    check_targets(targets)
    err = _console(stderr=True)
    with err.status("ladder: preparing…") as status:
        line = _Status(status)
        ladder = run_ladder(request, on_phase=line.set_phase, on_event=line)
    write_targets(ladder.result, [t for t in targets if not t.to_stdout])
    saved = None
    if not args.no_history:
        from edgelab.history import save_run

        try:
            saved = f"[dim]saved in the history as last: {save_run(ladder.result)}[/]"
        except (EdgelabError, OSError) as exc:
            saved = f"[yellow]not saved in the history:[/] {exc}"
    stdout_targets = [t for t in targets if t.to_stdout]
    print_ladder(ladder, err if stdout_targets else _console())
    write_targets(ladder.result, stdout_targets)
    if saved:
        err.print(saved, highlight=False, soft_wrap=True)
    return ladder_exit_status(ladder)


def ladder_exit_status(ladder: Ladder) -> int:
    """0 when every usable rung ran its launches; a rung unusable here is a line, not a
    failure (the ladder is of what this machine can run). No usable rung at all: 1."""
    usable = ladder.usable()
    if not usable:
        first = ladder.unusable()[0] if ladder.unusable() else None
        raise EdgelabError("no rung could run here" + (f"; {first.runtime}: {first.error}" if first else ""))
    failed = [r for r in usable if r.failed or r.error or (r.summary() is None)]
    if failed:
        r = failed[0]
        raise EdgelabError(f"{r.runtime}: {r.first_error() or 'no cold start succeeded'}; the other rungs are above")
    return 0


def _console_class() -> type:
    from rich.console import Console

    class _BrokenPipeConsole(Console):
        """A closed stdout is a BrokenPipeError, which the CLI turns into exit 141."""

        def on_broken_pipe(self) -> None:
            raise BrokenPipeError(32, "Broken pipe")

    return _BrokenPipeConsole


def _console(**kwargs: Any) -> Console:
    return _console_class()(**kwargs)  # type: ignore[no-any-return]

