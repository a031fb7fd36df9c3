"""Per-instance samples and per-runtime results: the records every view and export reads.

A ``Sample`` is one launch, frozen; a ``RuntimeResult`` gathers one runtime's samples,
instance counts and resident-memory figure, and derives its summaries on demand.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edgelab.stats import Summary, summarize, warnings_for

GIB = 1 << 30
#: A steady runtime that reaches less than this share of the asked rate gets a warning.
RATE_SHORTFALL = 0.9
#: A MemAvailable fall counts as a host figure once it is this many times its idle noise.
NOISE_FACTOR = 10
#: Between ROUGH_FACTOR and NOISE_FACTOR times its noise, a fall is a rough host figure (said
#: with its uncertainty); below ROUGH_FACTOR it is no figure at all.
ROUGH_FACTOR = 3
#: A PSS growth counts as the user-space figure once it is this many times the idle PSS's
#: noise (a traffic run's growth too: ``edgelab.traffic.MEMORY_NOISE_FACTOR``); at or below
#: it, or not growing, it is none.
PSS_NOISE_FACTOR = 3
#: With no host figure to price an instance, a user-space figure lost in noise asks for this
#: many times the instances held.
HOLD_MORE = 10


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
    #: Command workloads: launch to exit (``Launch.exit_ns``); None for resident ABI ones.
    exit_ns: int | None = None


@dataclass(frozen=True)
class MemoryResult:
    """Memory per resident instance, as two labelled figures a fleet planner can tell apart.

    *User-space*: ``pss_bytes_per_instance``, the growth of ``metric`` (PSS) divided by
    ``instances``. It leaves out what the kernel spends per instance (page tables, kernel
    stacks, task and cgroup structures) and the engine's own growth.

    *Host*: ``host_bytes_per_instance``, what the machine loses per instance, from the fall of
    the system's MemAvailable while this runtime alone ramped up
    (``mem_available_bytes_per_instance``) or, for containers when that fall is lost in the
    noise, their cgroup memory with kernel memory (``cgroup_bytes_per_instance``, as
    ``docker stats`` reads it; PSS where that is larger). ``host_basis`` says in words which
    it is; ``instances_per_gib`` follows the host figure and falls back to PSS only where no
    host figure exists.

    MemAvailable moves with every process on the machine: ``mem_available_noise_bytes`` is the
    spread of readings taken with nothing launched, and a fall smaller than
    ``NOISE_FACTOR`` times it is reported with a warning naming how many instances a stable
    figure needs.

    PSS moves too (a host process's heap and caches; shared pages re-divided as other
    processes map them): ``pss_bytes_per_instance`` is the raw growth / instances, kept as
    measured (it can be negative), and ``pss_figure_bytes_per_instance`` is what displays and
    exports show: None where the growth is not above ``PSS_NOISE_FACTOR`` times
    ``pss_noise_bytes`` (0 where not measured), with a warning saying why.
    """

    instances: int
    pss_bytes_per_instance: float
    metric: str
    mem_available_bytes_per_instance: float | None
    #: (instances resident, PSS growth in bytes) points taken during the ramp.
    curve: tuple[tuple[int, int], ...] = ()
    #: Containers: cgroup memory incl. kernel memory per instance (None elsewhere).
    cgroup_bytes_per_instance: float | None = None
    #: Spread (max - min, bytes) of MemAvailable readings taken while nothing was launched.
    mem_available_noise_bytes: float | None = None
    #: Instances brought up per second during the ramp (memory readings included).
    ramp_rate_per_s: float | None = None
    #: The one line naming a limit that stopped the ramp before its target, or None.
    limit: str | None = None
    #: The instances the ramp was asked for (``instances`` is what it reached and held).
    target: int | None = None
    #: Spread (max - min, bytes) of the runtime's PSS read with no instance before the ramp.
    pss_noise_bytes: float | None = None

    @property
    def pss_growth_bytes(self) -> float:
        """The raw PSS growth at ``instances`` (bytes; negative if PSS fell)."""
        return self.pss_bytes_per_instance * self.instances

    @property
    def pss_figure_bytes_per_instance(self) -> float | None:
        """The user-space figure: PSS growth / instances where the growth stands clear of the
        idle PSS noise (``PSS_NOISE_FACTOR`` times it, and above 0), else None."""
        growth = self.pss_growth_bytes
        if growth <= 0 or growth <= PSS_NOISE_FACTOR * (self.pss_noise_bytes or 0):
            return None
        return self.pss_bytes_per_instance

    def pss_warning(self) -> str | None:
        """Why there is no user-space figure and how many instances to hold, or None."""
        if self.pss_figure_bytes_per_instance is not None:
            return None
        growth, noise = self.pss_growth_bytes, self.pss_noise_bytes or 0
        at = f"at {self.instances:,} instances"
        idle = f"its idle noise ({noise / 1024:,.0f} KiB)"
        if growth > 0:
            what = f"user-space memory grew {growth / 1024:,.0f} KiB {at}, within {PSS_NOISE_FACTOR}x {idle}"
        elif -growth <= PSS_NOISE_FACTOR * noise:
            what = (f"user-space memory did not grow {at} (it moved {growth / 1024:+,.0f} KiB),"
                    f" within {PSS_NOISE_FACTOR}x {idle}")  # fmt: skip
        else:
            what = (f"user-space memory fell {-growth / 1024:,.0f} KiB {at}, far more than {idle} the other"
                    " way: the runtime's own memory moved (drift), not its instances")  # fmt: skip
        return f"{what}: no user-space figure; {self.hold_for_user_space_figure()}"

    def hold_for_user_space_figure(self) -> str:
        """How many instances a user-space figure clear of this disturbance needs, priced at
        the host figure where one stands (a ceiling of the user-space cost, so a floor of the
        count), else ``HOLD_MORE`` times as many as were held."""
        disturbance = max(self.pss_noise_bytes or 0, abs(self.pss_growth_bytes))
        fallen = self.mem_available_bytes_per_instance
        price = fallen if fallen is not None and fallen > 0 and self._mem_available_usable else None
        if price is None and self.cgroup_bytes_per_instance and self.cgroup_bytes_per_instance > 0:
            price = self.cgroup_bytes_per_instance
        if price is not None and disturbance > 0:
            needed = math.floor(PSS_NOISE_FACTOR * disturbance / price) + 1  # growth must exceed it
            if needed > self.instances:
                return f"hold at least {needed:,} instances"
        return f"hold at least {HOLD_MORE * self.instances:,} instances ({HOLD_MORE}x as many), or rerun on a quieter machine"

    @property
    def mem_available_total_bytes(self) -> float | None:
        if self.mem_available_bytes_per_instance is None:
            return None
        return self.mem_available_bytes_per_instance * self.instances

    @property
    def mem_available_stable(self) -> bool:
        """The fall of MemAvailable stands well clear of its idle noise (or none was seen)."""
        total = self.mem_available_total_bytes
        if total is None or total <= 0:
            return False
        return self.mem_available_noise_bytes is None or total >= NOISE_FACTOR * self.mem_available_noise_bytes

    @property
    def mem_available_uncertainty(self) -> float | None:
        """The idle noise as a fraction of the fall (0.1: the host figure is good to ~±10%)."""
        total = self.mem_available_total_bytes
        if total is None or total <= 0 or self.mem_available_noise_bytes is None:
            return None
        return self.mem_available_noise_bytes / total

    @property
    def _mem_available_usable(self) -> bool:
        """Stable, or at least ROUGH_FACTOR times its noise (a rough figure)."""
        uncertainty = self.mem_available_uncertainty
        total = self.mem_available_total_bytes
        if total is None or total <= 0:
            return False
        return uncertainty is None or uncertainty <= 1 / ROUGH_FACTOR

    @property
    def instances_for_stable_host_figure(self) -> int | None:
        """About how many instances a MemAvailable fall of ``NOISE_FACTOR`` times its noise
        needs, priced at the user-space figure (a floor of the host cost: the fall itself is
        what is in doubt). None if no noise was measured or the count is already held."""
        noise = self.mem_available_noise_bytes
        user = self.pss_figure_bytes_per_instance
        if not noise or user is None:
            return None
        needed = math.ceil(NOISE_FACTOR * noise / user)
        return needed if needed > self.instances else None

    @property
    def host_bytes_per_instance(self) -> float | None:
        """What the machine loses per instance (see the class docstring), or None.

        A MemAvailable fall clear of its noise is the figure (a rough one, said so in the
        basis and warnings, from ROUGH_FACTOR to NOISE_FACTOR times the noise). Where it is
        not, containers fall back to their cgroups' memory, or to PSS where that is larger
        (the cgroups leave out the containerd shim, which PSS counts): a floor, not the whole
        cost. Elsewhere a fall within noise is no figure at all (None)."""
        fallen = self.mem_available_bytes_per_instance
        if fallen is not None and fallen > 0 and self._mem_available_usable:
            return fallen
        cgroup = self.cgroup_bytes_per_instance
        if cgroup is not None and cgroup > 0:
            return max(cgroup, self.pss_figure_bytes_per_instance or 0)
        return None

    @property
    def host_basis(self) -> str:
        """What ``host_bytes_per_instance`` is, in words (and what per GiB is computed from)."""
        fallen = self.mem_available_bytes_per_instance
        if fallen is not None and fallen > 0 and self.mem_available_stable:
            return "fall of MemAvailable during this runtime's ramp / instances"
        if fallen is not None and fallen > 0 and self._mem_available_usable:
            rough = self.mem_available_uncertainty or 0
            return f"fall of MemAvailable during this runtime's ramp / instances (rough: ±{rough:.0%}, idle noise)"
        why = (
            "MemAvailable not measured" if fallen is None
            else "MemAvailable fall within noise" if fallen > 0
            else "MemAvailable rose (other processes freed memory)" if fallen < 0
            else "MemAvailable did not move"
        )  # fmt: skip
        cgroup = self.cgroup_bytes_per_instance
        if cgroup is not None and cgroup > 0:
            if cgroup >= (self.pss_figure_bytes_per_instance or 0):
                return f"cgroup memory incl. kernel memory (as docker stats reads it) / instances; {why}"
            return f"user-space {self.metric}, above the cgroups' memory (which leaves out the shim); {why}"
        needed = self.instances_for_stable_host_figure if fallen is not None else None
        hint = f" (hold at least {needed:,})" if needed else ""
        if self.pss_figure_bytes_per_instance is None:
            return f"none: {why}{hint}; no per GiB (user-space {self.metric} within noise too)"
        return f"none: {why}{hint}; per GiB from user-space {self.metric}"

    @property
    def instances_per_gib(self) -> float | None:
        per_instance = self.host_bytes_per_instance
        if per_instance is None:
            per_instance = self.pss_figure_bytes_per_instance
        if per_instance is None or per_instance <= 0:
            return None
        return GIB / per_instance

    def warnings(self) -> list[str]:
        """What a reader must know before trusting the host figure."""
        found: list[str] = []
        if self.limit:
            found.append(self.limit)
        pss = self.pss_warning()
        if pss:
            found.append(pss)
        if self.mem_available_bytes_per_instance is not None and not self.mem_available_stable:
            found.append(self._mem_available_warning())
        return found

    def _mem_available_warning(self) -> str:
        """What MemAvailable did, said as it happened: fell within its noise (a rough figure
        or none), rose within it, or rose far more than it (drift from other processes)."""
        needed = self.instances_for_stable_host_figure
        noise = self.mem_available_noise_bytes or 0
        total = self.mem_available_total_bytes or 0
        at = f"at {self.instances:,} instances"
        idle = f"its idle noise ({noise / 1024:,.0f} KiB)"
        hold = (f"; hold at least {needed:,} for a stable host figure" if needed
                else "; other processes moved it: rerun on a quieter machine")  # fmt: skip
        if total > 0:
            usable = self._mem_available_usable
            return (
                f"MemAvailable fell {total / 1024:,.0f} KiB {at}, within {NOISE_FACTOR}x {idle}"
                + (f": the host figure is rough (±{self.mem_available_uncertainty or 0:.0%})" if usable else "")
                + hold
            )
        if -total <= NOISE_FACTOR * noise:
            moved = f"did not move {at}" if total == 0 else f"rose {-total / 1024:,.0f} KiB {at} (other processes freed memory)"
            return f"MemAvailable {moved}, within {NOISE_FACTOR}x {idle}: no host figure from it" + hold
        return (
            f"MemAvailable rose {-total / 1024:,.0f} KiB {at}, far more than {idle} the other way: other"
            " processes freed memory (drift), so it says nothing of these instances; rerun on a quieter machine"
        )

    def to_json(self) -> dict[str, Any]:
        host = self.host_bytes_per_instance
        return {
            "resident_instances": self.instances,
            "target_instances": self.target,
            # null where the PSS growth is not clear of its noise (the warnings say why); the
            # raw growth and the noise it was judged against are beside it.
            "user_space_kib_per_instance": _kib(self.pss_figure_bytes_per_instance),
            "user_space_metric": self.metric,
            "user_space_growth_kib": round(self.pss_growth_bytes / 1024, 3),
            "user_space_noise_kib": _kib(self.pss_noise_bytes),
            "host_kib_per_instance": round(host / 1024, 3) if host is not None else None,
            "host_basis": self.host_basis,
            "mem_available_kib_per_instance": _kib(self.mem_available_bytes_per_instance),
            "mem_available_noise_kib": _kib(self.mem_available_noise_bytes),
            "mem_available_stable": self.mem_available_stable,
            "cgroup_kib_per_instance": _kib(self.cgroup_bytes_per_instance),
            "instances_per_gib": round(self.instances_per_gib) if self.instances_per_gib else None,
            "ramp_rate_per_s": round(self.ramp_rate_per_s, 1) if self.ramp_rate_per_s else None,
            "limit": self.limit,
            "warnings": self.warnings(),
        }


def _kib(value: float | None) -> float | None:
    return round(value / 1024, 3) if value is not None else None


@dataclass
class RuntimeResult:
    """Everything one run learned about one runtime."""

    runtime: str
    startup_includes: str = ""
    memory_metric: str = ""
    phase_names: tuple[str, ...] = ()
    #: The runtime's family and, for a rung of the ladder, what it skips and what keeping an
    #: instance ready costs (registry.RuntimeSpec); marks: caveats shown beside every figure.
    family: str = ""
    skips: str = ""
    ready_cost: str = ""
    marks: tuple[str, ...] = ()
    error: str | None = None
    fix: str | None = None
    samples: list[Sample] = field(default_factory=list)
    memory: MemoryResult | None = None
    running: int = 0
    #: The run's scenario; its non-warmup samples are the ones summarised.
    scenario: str = "burst"
    #: time.monotonic() the samples' times count from (steady: when the first launch was due,
    #: the same for every runtime); None: from this runtime's first launch.
    clock_origin: float | None = None
    #: Steady only: the launches per second asked for, and those that started in the window
    #: (a launch waits for the one before it, so a slow runtime falls short; ``warnings`` says).
    rate_asked_per_s: float | None = None
    rate_achieved_per_s: float | None = None
    #: Traffic only: the per-request record and its summaries (``edgelab.traffic.TrafficResult``).
    traffic: Any = None

    def sample_time_s(self, sample: Sample, origin: float | None = None) -> float:
        """When ``sample``'s launch began, in seconds from ``clock_origin``. ``origin``: that
        of ``time_origin()``, found once by a caller that asks for every sample (finding it
        per sample made an export of n samples O(n^2): a 20,000-run export took 18 s, now 2.3 s)."""
        if origin is None:
            origin = self.time_origin()
        if origin is None:
            origin = sample.started_at
        return sample.started_at - origin

    def time_origin(self) -> float | None:
        """What the samples' times count from: ``clock_origin``, else the first launch's start
        (None with no samples)."""
        if self.clock_origin is not None:
            return self.clock_origin
        return min((s.started_at for s in self.samples), default=None)

    def rate_warning(self) -> str | None:
        """A steady run that reached less than 90% of the asked rate, in words with a fix."""
        asked, achieved = self.rate_asked_per_s, self.rate_achieved_per_s
        if asked is None or achieved is None or achieved >= RATE_SHORTFALL * asked:
            return None
        summary = self.summary()
        why = (
            f"; one launch takes ~{summary.p50_ns / 1e6:,.1f} ms here and waits for the one before"
            if summary else ""
        )  # fmt: skip
        return (
            f"steady reached {achieved:,.2f} launches/s of the {asked:,.2f} asked "
            f"({achieved / asked:.0%}){why}: ask for at most {achieved:,.2f}/s"
        )

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

    def exit_summary(self) -> Summary | None:
        """Command workloads: launch to exit, over the measured ok launches (None otherwise)."""
        return summarize([s.exit_ns for s in self.measured if s.ok and s.exit_ns is not None])

    def phase_summaries(self) -> dict[str, Summary]:
        found: dict[str, Summary] = {}
        for phase in self.phase_names:
            values = [s.phases_ns[phase] for s in self.measured if s.ok and phase in s.phases_ns]
            summary = summarize(values)
            if summary is not None:
                found[phase] = summary
        return found

    def warnings(self) -> list[str]:
        """What must be said beside this runtime's figures: its marks first (an emulated
        figure never stands unmarked where warnings are shown), then the figures' own."""
        if self.error:
            return []
        if self.traffic is not None:
            # A traffic run's cold starts are as many as its traffic made, not a --count.
            summary = self.summary()
            found = [] if summary is None else [
                w.split(": use --count")[0] for w in warnings_for(summary, len(self.measured))
            ]
        else:
            found = warnings_for(self.summary(), len(self.measured))
        rate = self.rate_warning()
        memory = self.memory.warnings() if self.memory else []
        return list(self.marks) + found + ([rate] if rate else []) + memory

    def first_error(self) -> str | None:
        """The run-level error, or the first failed launch's reason."""
        if self.error:
            return self.error
        return next((s.error for s in self.samples if not s.ok and s.error), None)

    def to_json(self) -> dict[str, Any]:
        summary = self.summary()
        memory = self.memory
        origin = self.time_origin()
        return {
            "runtime": self.runtime,
            "count": len(self.measured),
            "ok": self.ok,
            "failed": sum(1 for s in self.measured if not s.ok),
            "warmups": len(self.samples) - len(self.measured),
            "error": self.first_error() if (self.error or not self.ok) else None,
            "fix": self.fix,
            "family": self.family or self.runtime.partition(":")[0],
            "marks": list(self.marks),
            "skips": self.skips,
            "ready_cost": self.ready_cost,
            "startup_includes": self.startup_includes,
            "startup_us": summary.as_us() if summary else None,
            "phases_us": {name: s.as_us() for name, s in self.phase_summaries().items()},
            "exit_us": exit_summary.as_us() if (exit_summary := self.exit_summary()) else None,
            "samples_us": [
                round(s.startup_ns / 1_000, 3)
                for s in self.measured
                if s.ok and s.startup_ns is not None
            ],
            # Every measured launch, failed ones too, with when it began (seconds from
            # clock_origin: a steady run's start) -- samples_us keeps only the ok ones.
            "launches": [
                {
                    "index": s.index,
                    "t_s": round(self.sample_time_s(s, origin), 6),
                    "ok": s.ok,
                    "startup_us": round(s.startup_ns / 1_000, 3) if s.startup_ns is not None else None,
                }
                for s in self.measured
            ],
            "rate_asked_per_s": self.rate_asked_per_s,
            "rate_achieved_per_s": (
                round(self.rate_achieved_per_s, 4) if self.rate_achieved_per_s is not None else None
            ),
            "memory_kib_per_instance": _kib(memory.pss_figure_bytes_per_instance) if memory else None,
            "memory_metric": memory.metric if memory else None,
            "memory_resident_instances": memory.instances if memory else None,
            "mem_available_kib_per_instance": (
                round(memory.mem_available_bytes_per_instance / 1024, 3)
                if memory and memory.mem_available_bytes_per_instance is not None
                else None
            ),
            "host_kib_per_instance": (
                round(host / 1024, 3)
                if memory and (host := memory.host_bytes_per_instance) is not None
                else None
            ),
            "host_basis": memory.host_basis if memory else None,
            "instances_per_gib": (
                round(memory.instances_per_gib) if memory and memory.instances_per_gib else None
            ),
            "memory": memory.to_json() if memory else None,
            "instances": {"running": self.running, "launched": self.launched, "failed": self.failed},
            "traffic": self.traffic.to_json() if self.traffic is not None else None,
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
