"""Summaries of startup samples: order statistics plus the spread, and warnings about them.

Uses the standard library's ``statistics`` (exact, well tested, no numpy import on start-up).
Percentiles use the inclusive method (linear interpolation between closest ranks), the same
definition numpy's default and hyperfine use.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
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


#: Units a duration can be shown in, smallest first: (suffix, nanoseconds per unit).
_DURATION_UNITS = (("ns", 1.0), ("µs", 1e3), ("ms", 1e6), ("s", 1e9))


def _three_digits(value: float) -> str:
    """``value`` (already scaled to its unit, 1 <= value < 1000 mostly) to 3 significant digits."""
    value = float(f"{value:.3g}") if value < 1000 else value  # 99.96 -> 100, so "100", not "100.0"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def format_duration_ns(value_ns: float) -> str:
    """A duration in the unit that suits it, to about 3 significant digits, as hyperfine shows
    them: 512 ns, 3.85 µs, 12.3 µs, 233 ms, 2.50 s. Every front end and export uses this, so a
    figure reads the same in the TUI, the CLI table and the Markdown (a container's 233,038.2 µs
    was unreadable next to Wasm's 3.9 µs).

    The unit is chosen after rounding, so 999.7 µs reads "1.00 ms", not "1,000 µs".
    """
    if value_ns != value_ns:  # NaN: say so rather than print "nan ns"
        return "–"
    if value_ns < 0:
        return "-" + format_duration_ns(-value_ns)
    if value_ns < 999.5:
        return f"{value_ns:.0f} ns"
    for suffix, scale in _DURATION_UNITS[1:]:
        scaled = value_ns / scale
        text = _three_digits(scaled)
        if suffix == "s" or float(text.replace(",", "")) < 1000:
            return f"{text} {suffix}"
    raise AssertionError("unreachable: seconds take every remaining value")


def format_ratio(ratio: float) -> str:
    """A ratio to about 3 significant digits: 1.00x, 3.82x, 23.4x, 2,318x (the digits that
    carry meaning at each size; the ratio's own noise is larger than any further digit)."""
    if ratio != ratio or ratio in (float("inf"), float("-inf")):
        return "–"
    return f"{_three_digits(ratio)}x"


def _join(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def plain_conclusion(
    startup_p50_ns: Mapping[str, float | None],
    instances_per_gib: Mapping[str, float | None] | None = None,
) -> str:
    """What the figures mean in plain words, from measured figures only (empty when fewer than
    two runtimes have one): "wasm started 2,318x faster than container and 88.2x faster than
    subprocess (p50 startup). wasm held 250x more than container ... instances per GiB of host
    memory." The CLI prints it under its table and the TUI shows it in its strip, so both say
    the same sentence from the same numbers.
    """
    sentences: list[str] = []
    startups = sorted((p50, name) for name, p50 in startup_p50_ns.items() if p50 and p50 > 0)
    if len(startups) >= 2:
        fastest_ns, fastest = startups[0]
        parts = [f"{format_ratio(p50 / fastest_ns)} faster than {name}" for p50, name in startups[1:]]
        sentences.append(f"{fastest} started {_join(parts)} (p50 startup).")
    dense = sorted(
        ((per_gib, name) for name, per_gib in (instances_per_gib or {}).items() if per_gib and per_gib > 0),
        reverse=True,
    )
    if len(dense) >= 2:
        best, name = dense[0]
        parts = [f"{format_ratio(best / per_gib)} more than {other}" for per_gib, other in dense[1:]]
        sentences.append(f"{name} held {_join(parts)} instances per GiB of host memory.")
    return " ".join(sentences)


def format_bytes(value: float) -> str:
    """Bytes in KiB, MiB or GiB (binary units, as /proc and docker stats use)."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(value) >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"


def format_bytes_or_dash(value: float | None) -> str:
    """``format_bytes``, or "–" for a figure there is none of (not measured, within noise)."""
    return format_bytes(value) if value is not None else "–"
