"""Robust estimators for the benchmarks: medians with bootstrap confidence intervals.

On a shared 2-core VM a few samples land 10x off (a context switch, dockerd waking), so every
benchmark reports medians, and a ratio of medians with a percentile-bootstrap 95% interval
(scipy.stats.bootstrap, samples of both sides resampled independently), so a reader sees how
far the digits can be trusted.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Bootstrap resamples per interval, and the seed (the interval is reproducible from the samples).
RESAMPLES = 2_000
SEED = 20261201


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its 95% bootstrap interval (low, high); NaN bounds if too few samples."""

    value: float
    low: float
    high: float

    def ratio_text(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"

    def within(self, low: float, high: float) -> bool:
        return low <= self.value <= high


def _interval(data: tuple[np.ndarray, ...], statistic, paired: bool = False) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    from scipy.stats import bootstrap

    if any(len(d) < 2 for d in data):
        return float("nan"), float("nan")
    found = bootstrap(
        data, statistic, n_resamples=RESAMPLES, vectorized=True, axis=-1, paired=paired,
        confidence_level=0.95, method="percentile", rng=np.random.default_rng(SEED),
    )
    return float(found.confidence_interval.low), float(found.confidence_interval.high)


def median_ci(samples: Sequence[float]) -> Estimate:
    """The median of ``samples`` with its 95% bootstrap interval."""
    values = np.asarray(samples, dtype=float)
    low, high = _interval((values,), lambda x, axis: np.median(x, axis=axis))
    return Estimate(float(np.median(values)), low, high)


def ratio_of_medians_ci(numerator: Sequence[float], denominator: Sequence[float]) -> Estimate:
    """median(numerator) / median(denominator), each side resampled independently."""
    top = np.asarray(numerator, dtype=float)
    bottom = np.asarray(denominator, dtype=float)
    low, high = _interval(
        (top, bottom), lambda x, y, axis: np.median(x, axis=axis) / np.median(y, axis=axis)
    )
    return Estimate(float(statistics.median(top)) / float(statistics.median(bottom)), low, high)


def machine_load() -> str:
    """The 1-minute load average against the cores, for the header of every table."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return "load unknown"
    return f"load {load:.2f} on {os.cpu_count()} cores"
