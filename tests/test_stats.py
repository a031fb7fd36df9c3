"""Statistics on fixed numbers: the figures every view and export shows."""

import statistics

import pytest

from edgelab.stats import (
    format_bytes,
    format_duration_ns,
    format_ratio,
    percentile,
    plain_conclusion,
    summarize,
    warnings_for,
)


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
    [
        (0, "0 ns"),
        (512, "512 ns"),
        (999.6, "1.00 µs"),  # the unit is chosen after rounding
        (3_850, "3.85 µs"),
        (12_345, "12.3 µs"),
        (99_960, "100 µs"),
        (233_038_200, "233 ms"),  # a container's cold start: not "233,038.2 µs"
        (183_000_000, "183 ms"),
        (999_600_000, "1.00 s"),
        (2_500_000_000, "2.50 s"),
        (-5_000, "-5.00 µs"),
        (float("nan"), "–"),
    ],
)
def test_duration_units(ns: float, text: str) -> None:
    assert format_duration_ns(ns) == text


@pytest.mark.parametrize(
    ("ratio", "text"),
    [(1.0, "1.00x"), (1.004, "1.00x"), (3.82, "3.82x"), (9.996, "10.0x"), (23.44, "23.4x"),
     (99.96, "100x"), (2318.4, "2,318x"), (float("inf"), "–")],
)
def test_ratio_keeps_three_significant_digits(ratio: float, text: str) -> None:
    assert format_ratio(ratio) == text


def test_format_ratio_is_still_importable_from_commands() -> None:
    from edgelab import commands

    assert commands.format_ratio is format_ratio


def test_plain_conclusion_names_the_fastest_and_the_densest() -> None:
    text = plain_conclusion(
        {"container": 233_000_000.0, "subprocess": 340_000.0, "wasm": 3_900.0},
        {"container": 384.0, "subprocess": 57_174.0, "wasm": 94_904.0},
    )
    assert text == (
        "wasm started 87.2x faster than subprocess and 59,744x faster than container (p50 startup)."
        " wasm held 1.66x more than subprocess and 247x more than container instances per GiB"
        " of host memory."
    )


def test_plain_conclusion_needs_two_measured_runtimes() -> None:
    assert plain_conclusion({"wasm": 3_900.0, "container": None}, {"wasm": 9.0e4}) == ""
    assert plain_conclusion({}, None) == ""
    only_startup = plain_conclusion({"wasm": 2.0, "subprocess": 4.0}, {"wasm": 1.0})
    assert only_startup == "wasm started 2.00x faster than subprocess (p50 startup)."


def test_byte_units() -> None:
    assert format_bytes(10 * 1024) == "10.0 KiB"
    assert format_bytes(5.6 * 1024 * 1024) == "5.6 MiB"
    assert format_bytes(100) == "100 B"
