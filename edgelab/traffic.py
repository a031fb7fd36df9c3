"""What a ``traffic`` run records: every request, warm or cold, and the instances over time.

The ``traffic`` scenario (``edgelab.scenarios.traffic``) fills a ``TrafficResult`` per runtime
(``RuntimeResult.traffic``); exports carry it as ``results[i]["traffic"]`` (``to_json``), and
the simulator (``edgelab.whatif``) reads its samples back with ``TrafficResult.from_json`` so
that what it draws from was measured. Headless: no textual, no runtime imports.

Times: ``*_ns`` are nanoseconds measured with ``perf_counter_ns``; ``*_s`` are seconds from the
run's start (``time.monotonic``). A request's latency is ``queue_ns`` (arrival to the start of
its service: waiting for a free instance) plus its service: ``startup_ns`` if it was cold (a
launch, to the first byte of the response; that includes executing this first request) or
``exec_ns`` if warm (the request's round trip on an idle resident instance).

The policy the real scenario runs, which the simulator mirrors:

* concurrency per instance is 1; a request takes the *most recently idle* instance (LIFO, so
  that instances beyond what the load needs stay idle and expire), else starts a cold launch;
* at most ``workers`` requests are served at once per runtime (cold launches included);
  beyond that a request waits, and that wait is in ``queue_ns``;
* an instance idle longer than ``keepalive_s`` is stopped (``scaled_down``), except that the
  pool never goes below ``prewarm`` instances (launched before the clock starts, untimed);
* an instance counts in ``instances_over_time`` from the moment its launch begins until it is
  stopped (a cold launch in progress is an instance, as a provider bills it);
* command workloads answer once: every request is a cold start and nothing is kept.

Export layout (``to_json``): ``requests`` is a list of rows
``[t_s, kind, queue_us, service_us, late_us, error, held_us]`` in request order (``columns``
names them): the arrival in seconds from the start, ``"warm"|"cold"|"failed"``, the queueing
and the service (startup if cold, exec if warm, None if failed) in microseconds to the
nanosecond, the load generator's lateness (``RequestRecord.late_ns``, not in the latency), the
error line (None unless failed) and how long the request held its instance (service start
until the instance was idle again: ``RequestRecord.held_ns``; None if failed). Exports written
before ``held_us`` existed have six columns and read back with ``held_ns`` None.
``service_includes`` says how the service was timed. ``instances_over_time`` is
``[[t_s, instances], ...]``.
The summaries beside them (counts, percentiles in microseconds, instances mean/peak, memory)
are derived and recomputed on read; ``from_json(to_json(r)) == r``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from edgelab.results import PSS_NOISE_FACTOR
from edgelab.stats import Summary, format_duration_ns, summarize

if TYPE_CHECKING:
    from rich.console import Console

    from edgelab.results import RunResult

RequestKind = Literal["warm", "cold", "failed"]
#: The arrival patterns ``--pattern`` takes.
PATTERNS: tuple[str, ...] = ("poisson", "onoff", "trace")
#: The order of a request row's fields in the export.
REQUEST_COLUMNS: tuple[str, ...] = ("t_s", "kind", "queue_us", "service_us", "late_us", "error", "held_us")
#: Requests served at once per runtime (worker threads); beyond it they queue.
WORKERS = 16
#: How the idle instance a request takes is chosen (see the module docstring).
REUSE = "most recently idle first (LIFO)"
#: A memory growth counts as a figure once it is this many times the idle noise (the idle
#: readings' spread, or how far the idle figure drifted over the run, whichever is larger):
#: the factor a ramp's PSS growth must clear too.
MEMORY_NOISE_FACTOR = PSS_NOISE_FACTOR


@dataclass(frozen=True)
class RequestRecord:
    """One request of a traffic run."""

    index: int
    #: When it arrived (was due), seconds from the run's start.
    arrival_s: float
    kind: RequestKind
    #: Arrival to the start of its service (a free instance, or a launch begun).
    queue_ns: int
    #: Cold only: the launch, to the first byte of the response (None for warm or failed).
    startup_ns: int | None = None
    #: Warm only: the request's round trip on a resident instance (None for cold or failed).
    exec_ns: int | None = None
    error: str | None = None
    #: How late the lab's load generator released it: a worker that was waiting for it woke
    #: this long after it was due (thread wake-up on a busy host). The lab's error, not the
    #: runtime's: not part of the latency, kept to show how faithful the arrivals were.
    late_ns: int = 0
    #: From the start of its service until its instance was idle again (back in the pool, free
    #: for the next request): what the pool sees, where the service is what the caller sees.
    #: Longer than the service by the lab's own work around it (a Wasm request's round trip to
    #: its host, where the service is the host's in-host time; recording the sample). None for
    #: a failed request, and in exports written before it was recorded.
    held_ns: int | None = None

    @property
    def latency_ns(self) -> int | None:
        """Arrival to the first byte of the response: what the caller waited."""
        service = self.startup_ns if self.kind == "cold" else self.exec_ns
        return None if service is None else self.queue_ns + service


@dataclass
class TrafficResult:
    """One runtime's traffic run: its policy, its requests and its instances over time."""

    pattern: str
    rate_per_s: float
    keepalive_s: float
    prewarm: int
    duration_s: float
    requests: list[RequestRecord] = field(default_factory=list)
    #: (seconds from the start, instances resident) at every change.
    instances_over_time: list[tuple[float, int]] = field(default_factory=list)
    #: Instances stopped because they were idle longer than the keep-alive (scale to zero).
    scaled_down: int = 0
    #: Memory per resident instance measured during the run (bytes, by ``memory_metric``: the
    #: growth over the idle baseline / instances, averaged over the readings), and memory held
    #: over the run (byte-seconds: that figure x the instance-seconds of ``instances_over_time``);
    #: None where not measured or within the readings' noise (``note`` says).
    memory_bytes_per_instance: float | None = None
    memory_metric: str = ""
    memory_byte_seconds: float | None = None
    #: A line saying why a figure is missing or what limited the run (None: nothing to say).
    note: str | None = None
    #: The seed the arrivals were drawn with (the one used, also when none was asked for).
    seed: int | None = None
    #: The trace replayed (pattern ``trace``), as given.
    trace_file: str | None = None
    #: Requests served at once (worker threads); beyond it they queued.
    workers: int = WORKERS
    #: Memory readings taken (``pss_bytes`` of the resident instances, ~every 0.5 s) and the
    #: idle baseline they grow from (bytes, before any instance was launched).
    memory_samples: int = 0
    memory_baseline_bytes: float | None = None
    #: What the memory verdict was judged against (bytes, by ``memory_metric``): the spread
    #: (max - min) of the idle readings before the clock, the idle figure read again once
    #: everything was stopped and its spread, and the mean growth over the readings taken
    #: while instances were held, at ``memory_instances_read`` instances on average. The
    #: noise is the larger of the two spreads and of the drift (after - before baseline).
    memory_baseline_noise_bytes: float | None = None
    memory_baseline_after_bytes: float | None = None
    memory_baseline_after_noise_bytes: float | None = None
    memory_growth_bytes: float | None = None
    memory_instances_read: float | None = None
    #: How a request's service (startup or exec) was timed for this runtime, in words.
    service_includes: str = ""

    # -- summaries ---------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Requests by kind: requests (all that arrived and were served or failed), warm, cold, failed."""
        found = {"requests": len(self.requests), "warm": 0, "cold": 0, "failed": 0}
        for r in self.requests:
            found[r.kind] += 1
        return found

    @property
    def cold_fraction(self) -> float | None:
        """Cold starts / requests served (failed ones left out); None with none served."""
        c = self.counts()
        served = c["warm"] + c["cold"]
        return c["cold"] / served if served else None

    def latency_summary(self, kind: RequestKind | None = None) -> Summary | None:
        """Arrival to first response byte (queue + service) over the served requests of ``kind``
        (None: warm and cold together), nanoseconds."""
        return summarize([
            lat for r in self.requests
            if r.kind != "failed" and (kind is None or r.kind == kind) and (lat := r.latency_ns) is not None
        ])

    def queue_summary(self) -> Summary | None:
        """Waiting for a worker (arrival to service start), over every request, nanoseconds."""
        return summarize([r.queue_ns for r in self.requests])

    def late_summary(self) -> Summary | None:
        """The load generator's lateness (``RequestRecord.late_ns``) over every request, ns."""
        return summarize([r.late_ns for r in self.requests])

    def instances_mean(self) -> float | None:
        """Time-weighted mean of the instances held over ``[0, duration_s]``."""
        points = self.instances_over_time
        if not points or self.duration_s <= 0:
            return None
        total = 0.0
        for (t0, n), (t1, _) in zip(points, [*points[1:], (max(self.duration_s, points[-1][0]), 0)], strict=True):
            a, b = max(0.0, min(t0, self.duration_s)), max(0.0, min(t1, self.duration_s))
            total += n * (b - a)
        return total / self.duration_s

    def instances_peak(self) -> int:
        return max((n for _, n in self.instances_over_time), default=0)

    # -- export ------------------------------------------------------------------------------
    @property
    def memory_drift_bytes(self) -> float | None:
        """How far the idle figure moved from before the run to after it (bytes), or None."""
        if self.memory_baseline_bytes is None or self.memory_baseline_after_bytes is None:
            return None
        return self.memory_baseline_after_bytes - self.memory_baseline_bytes

    @property
    def memory_noise_bytes(self) -> float | None:
        """The noise a growth must clear ``MEMORY_NOISE_FACTOR`` times: the larger of the idle
        spreads and of the drift's size. None until both idle figures were read."""
        drift = self.memory_drift_bytes
        if drift is None:
            return None
        spreads = (self.memory_baseline_noise_bytes or 0.0, self.memory_baseline_after_noise_bytes or 0.0)
        return max(*spreads, abs(drift))

    def judge_memory(self, held: list[tuple[float, int]]) -> str | None:
        """Set ``memory_bytes_per_instance`` (and byte-seconds) from ``held``, the (growth over
        the baseline, instances) readings taken while instances were held, if the growth
        stands clear of the noise; else leave them None and return the line saying why.

        The idle readings before the clock span a fraction of a second; over a run of tens of
        seconds a host process's own memory drifts for reasons other than instances (a Wasm
        host's PSS grew ~3.6 MiB in 30 s here while it held 1-3 instances of ~11 KiB each), and
        that drift, read as growth, was priced per instance. So the idle figure is read again
        once everything is stopped and how far it moved counts as noise too. Runtimes whose
        idle figure is 0 (one process per instance: containers, subprocesses) have no drift,
        and their figures stay as clear as before."""
        self.memory_bytes_per_instance = self.memory_byte_seconds = None
        self.memory_growth_bytes = self.memory_instances_read = None
        if not held:
            return None
        growth = sum(g for g, _ in held) / len(held)
        instances = sum(n for _, n in held) / len(held)
        self.memory_growth_bytes, self.memory_instances_read = growth, instances
        noise = self.memory_noise_bytes
        if noise is None:
            return "memory not measurable: the idle memory could not be read again after the run, so its drift is unknown"
        if growth > MEMORY_NOISE_FACTOR * noise:
            self.memory_bytes_per_instance = sum(g / n for g, n in held) / len(held)
            # Held over the run: per instance x instance-seconds (instances_over_time), so an
            # instance that lived between two readings counts too, as the simulator counts it.
            mean = self.instances_mean()
            if mean is not None:
                self.memory_byte_seconds = self.memory_bytes_per_instance * mean * self.duration_s
            return None
        return "memory not measurable: " + self._memory_verdict(growth, instances, noise)

    def _memory_verdict(self, growth: float, instances: float, noise: float) -> str:
        """Why a growth of ``growth`` bytes at ``instances`` is no figure, in words."""
        drift = self.memory_drift_bytes or 0.0
        spread = max(self.memory_baseline_noise_bytes or 0.0, self.memory_baseline_after_noise_bytes or 0.0)
        at = f"at {instances:.1f} instances"
        idle = f"the idle noise ({spread / 1024:,.0f} KiB)"
        # The metric names itself at length (the export says it): "memory" reads better here.
        moved = (
            f"the idle memory moved {drift / 1024:+,.0f} KiB from before the run to after it"
            f" (idle spread {spread / 1024:,.0f} KiB)"
        )
        if growth > 0:
            if abs(drift) > spread:
                return (f"growth {growth / 1024:,.0f} KiB {at} is within {MEMORY_NOISE_FACTOR}x the drift: {moved},"
                        " so the growth is the runtime's own, not its instances'; rerun on a quieter machine, or a ramp measures it")  # fmt: skip
            return f"growth {growth / 1024:,.0f} KiB {at} is within {MEMORY_NOISE_FACTOR}x {idle}; a ramp measures it"
        fell = f"memory fell {-growth / 1024:,.0f} KiB below the idle baseline {at}"
        if -growth <= MEMORY_NOISE_FACTOR * noise:
            why = f"the drift: {moved}" if abs(drift) > spread else idle
            return (f"{fell} (instances add memory: this is the runtime's own change), within {MEMORY_NOISE_FACTOR}x"
                    f" {why}; a ramp measures it")  # fmt: skip
        return (f"{fell}, far more than {idle} the other way: drift, not instances;"
                " rerun on a quieter machine, or a ramp measures it")  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        counts = self.counts()
        cold_fraction = self.cold_fraction
        mean = self.instances_mean()

        def us(s: Summary | None) -> dict[str, float] | None:
            return s.as_us() if s is not None else None

        return {
            "policy": {
                "pattern": self.pattern,
                "rate_per_s": self.rate_per_s,
                "keepalive_s": self.keepalive_s,
                "prewarm": self.prewarm,
                "duration_s": self.duration_s,
                "seed": self.seed,
                "trace_file": self.trace_file,
                "workers": self.workers,
                "concurrency_per_instance": 1,
                "reuse": REUSE,
            },
            "counts": counts,
            "cold_fraction": round(cold_fraction, 6) if cold_fraction is not None else None,
            "latency_includes": "arrival to first response byte: queue + startup (cold) or exec (warm)",
            "latency_us": {
                "all": us(self.latency_summary()),
                "warm": us(self.latency_summary("warm")),
                "cold": us(self.latency_summary("cold")),
            },
            "queue_us": us(self.queue_summary()),
            "service_includes": self.service_includes,
            "generator_late_us": us(self.late_summary()),
            "instances": {"mean": round(mean, 4) if mean is not None else None, "peak": self.instances_peak()},
            "scaled_down": self.scaled_down,
            "memory": {
                "metric": self.memory_metric,
                "bytes_per_instance": self.memory_bytes_per_instance,
                "kib_per_instance": _kib(self.memory_bytes_per_instance),
                "byte_seconds": self.memory_byte_seconds,
                "mib_seconds": (
                    round(self.memory_byte_seconds / (1 << 20), 3) if self.memory_byte_seconds is not None else None
                ),
                "baseline_bytes": self.memory_baseline_bytes,
                "baseline_noise_bytes": self.memory_baseline_noise_bytes,
                "baseline_after_bytes": self.memory_baseline_after_bytes,
                "baseline_after_noise_bytes": self.memory_baseline_after_noise_bytes,
                "drift_bytes": self.memory_drift_bytes,
                "noise_bytes": self.memory_noise_bytes,
                "noise_factor": MEMORY_NOISE_FACTOR,
                "growth_bytes": self.memory_growth_bytes,
                "instances_read": self.memory_instances_read,
                "samples": self.memory_samples,
                "includes": (
                    "per instance: growth of the runtime's memory metric over its idle baseline / instances,"
                    " mean over the readings; byte_seconds: that x instance-seconds held; a figure only where the"
                    " mean growth is over noise_factor x noise_bytes (the larger of the idle spreads before and"
                    " after the run and of drift_bytes, the idle figure's move between them), else null"
                ),
            },
            "note": self.note,
            "columns": list(REQUEST_COLUMNS),
            "requests": [_row(r) for r in self.requests],
            "instances_over_time": [[t, n] for t, n in self.instances_over_time],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrafficResult:
        """Read back what ``to_json`` wrote (an export's ``results[i]["traffic"]``); a part
        missing or of the wrong shape raises ``ValueError`` saying which."""
        try:
            policy = data["policy"]
            memory = data.get("memory") or {}
            columns = tuple(data.get("columns") or REQUEST_COLUMNS)
            if columns not in (REQUEST_COLUMNS, REQUEST_COLUMNS[:6]):
                raise ValueError(f"request columns {list(columns)}, expected {list(REQUEST_COLUMNS)}")
            requests = [_record(i, row) for i, row in enumerate(data["requests"])]
            return cls(
                pattern=str(policy["pattern"]),
                rate_per_s=float(policy["rate_per_s"]),
                keepalive_s=float(policy["keepalive_s"]),
                prewarm=int(policy["prewarm"]),
                duration_s=float(policy["duration_s"]),
                requests=requests,
                instances_over_time=[(float(t), int(n)) for t, n in data.get("instances_over_time") or []],
                scaled_down=int(data.get("scaled_down") or 0),
                memory_bytes_per_instance=_opt_float(memory.get("bytes_per_instance")),
                memory_metric=str(memory.get("metric") or ""),
                memory_byte_seconds=_opt_float(memory.get("byte_seconds")),
                note=data.get("note"),
                seed=int(policy["seed"]) if policy.get("seed") is not None else None,
                trace_file=policy.get("trace_file"),
                workers=int(policy.get("workers") or WORKERS),
                memory_samples=int(memory.get("samples") or 0),
                memory_baseline_bytes=_opt_float(memory.get("baseline_bytes")),
                memory_baseline_noise_bytes=_opt_float(memory.get("baseline_noise_bytes")),
                memory_baseline_after_bytes=_opt_float(memory.get("baseline_after_bytes")),
                memory_baseline_after_noise_bytes=_opt_float(memory.get("baseline_after_noise_bytes")),
                memory_growth_bytes=_opt_float(memory.get("growth_bytes")),
                memory_instances_read=_opt_float(memory.get("instances_read")),
                service_includes=str(data.get("service_includes") or ""),
            )
        except (KeyError, TypeError, IndexError) as exc:
            raise ValueError(f"not a traffic record: {type(exc).__name__} {exc}") from None


def _kib(value: float | None) -> float | None:
    return round(value / 1024, 3) if value is not None else None


def _opt_float(value: Any) -> float | None:
    return float(value) if value is not None else None


def _us(ns: int | None) -> float | None:
    return ns / 1000 if ns is not None else None


def _ns(us: Any) -> int | None:
    return round(float(us) * 1000) if us is not None else None


def _row(r: RequestRecord) -> list[Any]:
    service = r.startup_ns if r.kind == "cold" else r.exec_ns
    return [r.arrival_s, r.kind, _us(r.queue_ns), _us(service), _us(r.late_ns), r.error, _us(r.held_ns)]


def _record(index: int, row: list[Any]) -> RequestRecord:
    if len(row) not in (6, 7):
        raise ValueError(f"request {index}: {len(row)} fields, expected {len(REQUEST_COLUMNS)}")
    t_s, kind, queue_us, service_us, late_us, error = row[:6]
    held_us = row[6] if len(row) == 7 else None
    if kind not in ("warm", "cold", "failed"):
        raise ValueError(f"request {index}: kind {kind!r} is not warm, cold or failed")
    service = _ns(service_us)
    queue = _ns(queue_us)
    return RequestRecord(
        index=index,
        arrival_s=float(t_s),
        kind=kind,
        queue_ns=queue if queue is not None else 0,
        startup_ns=service if kind == "cold" else None,
        exec_ns=service if kind == "warm" else None,
        error=error,
        late_ns=_ns(late_us) or 0,
        held_ns=_ns(held_us) if kind != "failed" else None,
    )


def print_traffic(result: RunResult, console: Console) -> None:
    """The traffic table ``edgelab run --scenario traffic`` prints under the startup table:
    one row per runtime, 80 columns wide; what each column includes is in the caption."""
    from rich import box
    from rich.table import Table

    traffics = [(name, r.traffic) for name, r in result.runtimes.items() if r.traffic is not None]
    if not traffics:
        return
    first = traffics[0][1]
    arrivals = f"{first.pattern} {first.rate_per_s:g}/s" if first.pattern != "trace" else f"trace {first.trace_file}"
    table = Table(
        title=(
            f"traffic: {arrivals}, keep-alive {first.keepalive_s:g} s, pre-warm {first.prewarm},"
            f" {first.duration_s:g} s, seed {first.seed}"
        ),
        caption=(
            "latency = arrival → first response byte: queue + startup (cold) or exec (warm) ·"
            " inst = instances held, time mean/peak · KiB/inst = memory growth per instance held"
            " (each runtime's metric; the export has its integral, byte·s)"
        ),
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 0, 0, 1),
    )
    for column in ("runtime", "req", "cold\n%", "p50", "p99", "warm\np50", "cold\np50", "inst\navg/pk", "KiB\n/inst"):
        # Figures never wrap; a long rung name does (subprocess:forkserver), so 80 columns hold.
        table.add_column(column, justify="left" if column == "runtime" else "right", no_wrap=column != "runtime",
                         overflow="fold")
    notes: list[str] = []

    def dur(s: Summary | None, attr: str = "p50_ns") -> str:
        return format_duration_ns(getattr(s, attr)) if s is not None else "–"

    for name, t in traffics:
        c = t.counts()
        cold = t.cold_fraction
        total = t.latency_summary()
        mean = t.instances_mean()
        per = t.memory_bytes_per_instance
        table.add_row(
            name,
            f"{c['requests']:,}",
            f"{cold * 100:.1f}" if cold is not None else "–",
            dur(total),
            dur(total, "p99_ns"),
            dur(t.latency_summary("warm")),
            dur(t.latency_summary("cold")),
            (f"{mean:.1f}" if mean is not None else "–") + f"/{t.instances_peak()}",
            f"{per / 1024:,.0f}" if per is not None else "–",
        )
        if c["failed"]:
            first_error = next((r.error for r in t.requests if r.kind == "failed" and r.error), "")
            notes.append(f"{name}: {c['failed']:,} of {c['requests']:,} requests failed: {first_error}")
        if t.note:
            notes.append(f"{name}: {t.note}")
    console.print(table)
    for line in notes:
        console.print(f"  [dim]{line}[/]", highlight=False)
