"""What a what-if takes and gives. Every figure an ``Outcome`` holds is simulated: it comes from
measured samples (``Feed``) replayed under inputs a person chose, never from a measurement of
that traffic itself, and every front end says so beside it."""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgelab.errors import UsageError

#: Longest simulated span: a week (each hour at 100 req/s is 360,000 requests drawn).
MAX_HOURS = 168.0
#: Most requests one simulation draws (rate x hours): beyond it the arrays take gigabytes.
MAX_REQUESTS = 20_000_000


@dataclass(frozen=True)
class WhatIfInputs:
    """The inputs a person sets; the defaults are a plausible service, not a measured one."""

    rate_per_s: float = 100.0
    pattern: str = "poisson"  # or "onoff", "trace"
    trace: tuple[float, ...] | None = None  # arrival times (s) when pattern == "trace"
    hours: float = 1.0
    keepalive_s: float = 300.0
    prewarm: int = 0
    concurrency: int = 1
    host_memory_gib: float = 64.0
    seed: int = 0
    user_city: str = "Tokyo"
    region: str = "us-east-1"  # where the central code and data live
    inflation: float = 1.5  # path inflation over the fibre floor
    data_round_trips: int = 1  # the code's round trips to its (central) data
    extra_ms: float = 0.0  # e.g. the LLM call; an assumption, said so
    #: Requests in service at once per runtime (0: no cap). The real traffic run serves on a
    #: pool of worker threads (its export's ``policy.workers``); beyond it requests queue.
    max_in_flight: int = 0

    def validate(self) -> None:
        """One line for the first input out of range (flags, presets and the TUI all pass here)."""
        _finite(self.rate_per_s, "rate", 0.0, 10_000.0, "requests per second", low_open=True)
        if self.pattern not in ("poisson", "onoff", "trace"):
            raise UsageError(f"unknown arrival pattern '{self.pattern}' (choose from poisson, onoff, trace)")
        if self.pattern == "trace" and not self.trace:
            raise UsageError("pattern 'trace' needs arrival times (--trace FILE)")
        _finite(self.hours, "hours", 0.0, MAX_HOURS, "hours", low_open=True)
        _finite(self.keepalive_s, "keep-alive", 0.0, 86_400.0, "seconds")
        _whole(self.prewarm, "pre-warm", 0, 100_000, "instances")
        _whole(self.concurrency, "concurrency", 1, 10_000, "requests per instance")
        _finite(self.host_memory_gib, "host memory", 0.0, 1 << 20, "GiB", low_open=True)
        _whole(self.seed, "seed", 0, 2**63 - 1, "")
        _finite(self.inflation, "path inflation", 1.0, 100.0, "(1 = the fibre floor)")
        _whole(self.data_round_trips, "data round trips", 0, 1_000, "per request")
        _finite(self.extra_ms, "extra time", 0.0, 3_600_000.0, "ms")
        _whole(self.max_in_flight, "max in flight", 0, 1_000_000, "requests (0: no cap)")
        if self.pattern != "trace" and self.rate_per_s * self.hours * 3600 > MAX_REQUESTS:
            raise UsageError(
                f"rate x hours is {self.rate_per_s * self.hours * 3600:,.0f} requests; the simulator "
                f"draws at most {MAX_REQUESTS:,} (lower --rate or --hours)"
            )
        from edgelab.whatif.placement import place

        place(self.user_city)
        place(self.region)


def _finite(value: object, what: str, lo: float, hi: float, unit: str, low_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and (value > lo if low_open else value >= lo) and value <= hi
    if not ok:
        span = f"above {lo:g}" if low_open else f"from {lo:g}"
        raise UsageError(f"{what} must be a number {span} to {hi:,g} {unit}, not {value!r}".rstrip())


def _whole(value: object, what: str, lo: int, hi: int, unit: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise UsageError(f"{what} must be a whole number from {lo} to {hi:,} {unit}, not {value!r}".rstrip())


@dataclass(frozen=True)
class Outcome:
    """One runtime x placement; every figure simulated."""

    runtime: str
    placement: str  # "edge" | "region"
    p50_ms: float  # end-to-end: user RTT + data RTTs + queue + startup (if cold) or exec + extra
    p99_ms: float
    cold_fraction: float
    warm_p50_ms: float | None  # p50 of the requests an idle instance served (None: there were none)
    cold_p50_ms: float | None  # p50 of the requests that waited on a cold start (None: there were none)
    mean_instances: float  # time-average over the simulated span
    peak_instances: int
    memory_gib_hours: float | None  # mean instances x measured memory per instance x hours
    instances_per_host: float | None  # host memory / measured memory per instance
    hosts_needed: int | None  # peak instances / instances per host, rounded up


@dataclass(frozen=True)
class WhatIfResult:
    inputs: WhatIfInputs
    outcomes: tuple[Outcome, ...]
    fed_by: str  # the measured run (path/ref + started)
    notes: tuple[str, ...]  # assumptions, runtimes left out and why; "simulated" stated
    elapsed_s: float
