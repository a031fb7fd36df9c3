"""Summaries of startup samples: order statistics plus the spread, and warnings about them.

Uses the standard library's ``statistics`` (exact, well tested, no numpy import on start-up).
Percentiles use the inclusive method (linear interpolation between closest ranks), the same
definition numpy's default and hyperfine use.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

#: perf_counter_ns resolution on Linux is 1 ns nominally; below this a figure is noise.
TIMER_FLOOR_NS = 1_000
MIN_SAMPLES = 10
HIGH_SPREAD = 0.10


@dataclass(frozen=True)
class Summary:
    """Order statistics of one runtime's successful, non-warmup startups (nanoseconds)."""

    n: int
    min_ns: float
    p50_ns: float
    p90_ns: float
    p99_ns: float
    max_ns: float
    mean_ns: float
    stdev_ns: float
    mad_ns: float

    def as_us(self) -> dict[str, float]:
        """The figures the exports carry, in microseconds: min, p50, p90, p99, max, mean, stdev."""
        fields = ("min", "p50", "p90", "p99", "max", "mean", "stdev")
        return {f: round(getattr(self, f"{f}_ns") / 1_000, 3) for f in fields}


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of already sorted values, by linear interpolation."""
    if not sorted_values:
        raise ValueError("no values")
    if len(sorted_values) == 1:
        return float(sorted_values[0])
    rank = (len(sorted_values) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(sorted_values) - 1)
    fraction = rank - low
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * fraction


def summarize(values_ns: Sequence[float]) -> Summary | None:
    """Summary of the values, or None when there are none."""
    if not values_ns:
        return None
    ordered = sorted(values_ns)
    median = statistics.median(ordered)
    return Summary(
        n=len(ordered),
        min_ns=float(ordered[0]),
        p50_ns=float(median),
        p90_ns=percentile(ordered, 90),
        p99_ns=percentile(ordered, 99),
        max_ns=float(ordered[-1]),
        mean_ns=statistics.fmean(ordered),
        stdev_ns=statistics.stdev(ordered) if len(ordered) > 1 else 0.0,
        mad_ns=float(statistics.median(abs(v - median) for v in ordered)),
    )


def warnings_for(summary: Summary | None, requested: int) -> list[str]:
    """Warnings with a suggested fix, as hyperfine and pyperf give them."""
    if summary is None:
        return ["no successful samples: see the error above"]
    notes: list[str] = []
    if summary.n < MIN_SAMPLES:
        notes.append(
            f"only {summary.n} samples: percentiles are rough; use --count {max(MIN_SAMPLES, 30)}"
            " or more"
        )
    if summary.mean_ns > 0 and summary.stdev_ns > HIGH_SPREAD * summary.mean_ns:
        ratio = summary.stdev_ns / summary.mean_ns
        notes.append(
            f"high spread (stdev {ratio:.0%} of mean): other load on this machine? close other"
            " programs, add --warmup, or raise --count and read p50 rather than mean"
        )
    if summary.p50_ns < TIMER_FLOOR_NS:
        notes.append("p50 under 1 us: near the timer's resolution, compare with care")
    if summary.n < requested:
        notes.append(f"{requested - summary.n} of {requested} launches failed")
    return notes


def format_duration_ns(value_ns: float) -> str:
    """A duration with the unit that keeps 3-4 significant digits: ns, us, ms or s."""
    if value_ns < 1_000:
        return f"{value_ns:.0f} ns"
    if value_ns < 1_000_000:
        return f"{value_ns / 1_000:.1f} µs"
    if value_ns < 1_000_000_000:
        return f"{value_ns / 1_000_000:.1f} ms"
    return f"{value_ns / 1_000_000_000:.2f} s"


def format_bytes(value: float) -> str:
    """Bytes in KiB, MiB or GiB (binary units, as /proc and docker stats use)."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(value) >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"
