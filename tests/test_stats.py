"""Statistics on fixed numbers: the figures every view and export shows."""

import statistics

import pytest

from edgelab.stats import format_bytes, format_duration_ns, percentile, summarize, warnings_for


def test_summary_of_known_values() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100 ns
    s = summarize(values)
    assert s is not None
    assert s.n == 100
    assert s.min_ns == 1 and s.max_ns == 100
    assert s.p50_ns == 50.5
    assert s.p90_ns == pytest.approx(90.1)
    assert s.p99_ns == pytest.approx(99.01)
    assert s.mean_ns == 50.5
    assert s.stdev_ns == pytest.approx(statistics.stdev(values))
    assert s.mad_ns == 25.0


def test_percentile_interpolates_like_numpy_default() -> None:
    assert percentile([10.0, 20.0], 50) == 15.0
    assert percentile([10.0, 20.0, 30.0, 40.0], 90) == pytest.approx(37.0)
    assert percentile([7.0], 99) == 7.0


def test_empty_and_single() -> None:
    assert summarize([]) is None
    single = summarize([42.0])
    assert single is not None and single.stdev_ns == 0.0 and single.p99_ns == 42.0


def test_as_us_converts_units() -> None:
    s = summarize([1_000.0, 3_000.0])
    assert s is not None
    assert s.as_us()["p50"] == 2.0
    assert set(s.as_us()) == {"min", "p50", "p90", "p99", "max", "mean", "stdev"}


def test_warnings_suggest_fixes() -> None:
    few = summarize([100_000.0, 100_100.0])
    assert any("--count" in w for w in warnings_for(few, 2))
    wide = summarize([1_000_000.0] * 20 + [9_000_000.0] * 5)
    assert any("high spread" in w for w in warnings_for(wide, 25))
    steady = summarize([1_000_000.0 + i for i in range(30)])
    assert warnings_for(steady, 30) == []
    assert any("failed" in w for w in warnings_for(steady, 40))
    assert warnings_for(None, 5) == ["no successful samples: see the error above"]


@pytest.mark.parametrize(
    ("ns", "text"),
    [(512, "512 ns"), (12_345, "12.3 µs"), (183_000_000, "183.0 ms"), (2_500_000_000, "2.50 s")],
)
def test_duration_units(ns: float, text: str) -> None:
    assert format_duration_ns(ns) == text


def test_byte_units() -> None:
    assert format_bytes(10 * 1024) == "10.0 KiB"
    assert format_bytes(5.6 * 1024 * 1024) == "5.6 MiB"
    assert format_bytes(100) == "100 B"
