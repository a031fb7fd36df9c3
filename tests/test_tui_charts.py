"""Charts for the back of the room: the shared log axis, the histogram bins, the memory curve,
the chart (g) and presentation (p) screens, and panels whose sentences and warnings are never
cut. Unit tests of the pure renderers; pilot tests on the fake runtime (fixed timings)."""

from __future__ import annotations

import asyncio
import math
import re
from dataclasses import replace
from pathlib import Path

import pytest
from textual.geometry import Region
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import Static

from edgelab.lab import Lab
from edgelab.runtimes.fake import FakeRuntime
from edgelab.stats import format_bytes, format_duration_ns
from edgelab.tui.app import EdgelabApp
from edgelab.tui.charts import (
    ChartRow,
    axis_for,
    big_ratio,
    bin_edges,
    log_histogram,
    marker_line,
    ratio_words,
    render_histogram,
    render_log_chart,
    render_memory_curve,
)
from edgelab.tui.controls import Controls
from edgelab.tui.panels import PanelLines, StartupHistogram

RUNTIMES = ("container", "subprocess", "wasm")


# -- the log axis --------------------------------------------------------------------------------
def test_axis_spans_the_decades_around_the_figures_with_a_tick_per_decade() -> None:
    axis = axis_for([13.2e3, 209e3, 211e6], width=60)
    assert (axis.lo_ns, axis.hi_ns) == (1e4, 1e9)  # 10 µs .. 1 s
    ticks = axis.ticks()
    assert [label for _, label in ticks] == ["10µs", "100µs", "1ms", "10ms", "100ms", "1s"]
    # Each decade the same width: column = log10(value / lo) / decades * width.
    assert [col for col, _ in ticks] == [round(i * 60 / 5) for i in range(6)]
    assert axis.column(1e6) == 24 and axis.column(10**6.5) == 30
    assert math.isclose(axis.fraction(1e7), 3 / 5)
    rule, labels = axis.tick_lines()
    assert rule[0] == "├" and rule[60] == "┤" and rule[12] == "┼"
    assert labels.index("1ms") == 24 and labels.index("100ms") == 48


def test_axis_is_at_least_three_decades_and_clamped_to_100_s() -> None:
    assert (axis_for([], 40).lo_ns, axis_for([], 40).hi_ns) == (1e3, 1e6)
    one = axis_for([5e5, 6e5], 40)
    assert math.log10(one.hi_ns / one.lo_ns) == 3 and one.lo_ns == 1e5
    huge = axis_for([3e10, 9e10], 40)
    assert huge.hi_ns == 1e11 and huge.lo_ns == 1e8


def test_marker_puts_p50_on_its_column_inside_the_p1_p99_spread() -> None:
    axis = axis_for([1e4, 1e9], 50)
    line = marker_line(axis, 1e6, 10**5.5, 10**6.5)
    assert len(line) == 50
    assert line.index("●") == axis.column(1e6) == 20
    assert line.index("━") == axis.column(10**5.5) == 15
    assert line.rindex("━") == axis.column(10**6.5) == 25
    assert set(line[:15]) == {" "} and set(line[26:]) == {" "}


def test_chart_lists_every_row_with_its_figures_and_the_labelled_axis() -> None:
    rows = [
        ChartRow("wasm", 13.2e3, 12e3, 14.4e3, 20, ("emulated (test mark)",), "done"),
        ChartRow("container", 194e6, 176e6, 211e6, 20, (), "done"),
        ChartRow("microvm", None, None, None, 0, (), "unavailable: no /dev/kvm"),
    ]
    shown = render_log_chart(rows, 120).plain
    lines = shown.splitlines()
    assert lines[0].startswith("wasm") and "p50 13.2 µs  p1 12.0 µs – p99 14.4 µs  n=20" in lines[0]
    assert "⚠ emulated (test mark)" in lines[1]
    assert "p50 194 ms" in lines[2] and "unavailable: no /dev/kvm" in lines[3]
    for label in ("10µs", "100µs", "1ms", "10ms", "100ms", "1s"):
        assert label in lines[-1]
    # The rule starts under the first axis cell: the name column is indented on both lines.
    assert lines[-2].index("├") == len("container") + 1
    assert lines[0].index("●") < lines[2].index("●")


# -- histograms ----------------------------------------------------------------------------------
def test_log_bins_four_a_decade_from_1_us_to_10_s() -> None:
    edges = bin_edges()
    assert len(edges) == 29 and edges[0] == 1e3 and edges[-1] == 1e10
    assert all(math.isclose(math.log10(b / a), 0.25) for a, b in zip(edges, edges[1:], strict=False))
    assert edges[4] == 1e4 and edges[8] == 1e5  # decades fall on edges exactly


def test_histogram_counts_every_sample_in_its_log_bin() -> None:
    values = [500.0, 1e3, 1.5e3, 9_999.0, 1e4, 2e4, 3e4, 2e8, 5e10]
    counts = log_histogram(values)
    assert len(counts) == 28 and sum(counts) == len(values)
    # below 1 µs counts in the first bin; 1.5 µs < 1.78 µs: first bin too
    assert counts[0] == 3
    assert counts[3] == 1  # 9,999 ns in [5.62, 10) µs
    assert counts[4] == 1  # 10 µs exactly opens the bin [10, 17.8) µs
    assert counts[5] == 2  # 20 µs and 30 µs in [17.8, 31.6) µs
    assert counts[21] == 1  # 200 ms in [178, 316) ms
    assert counts[27] == 1  # above 10 s counts in the last bin
    assert log_histogram(sorted(values), presorted=True) == counts


def test_histogram_bars_stand_on_their_bins_columns_scaled_to_the_tallest() -> None:
    counts = [0] * 28
    counts[4], counts[21] = 8, 2
    lines = render_histogram(counts, 56, height=2).plain.splitlines()
    assert len(lines) == 3
    top, bottom, ticks = lines
    # 56 cells over 28 bins: bin i covers cells 2i and 2i+1.
    assert top[8:10] == "██" and bottom[8:10] == "██"
    assert top[42:44] == "  " and bottom[42:44] == "▄▄"  # 2/8 of two rows: half the bottom row
    assert set(top[:8] + top[10:]) == {" "}
    assert ticks.startswith("1µs") and ticks.index("10µs") == 8 and "10s" in ticks
    # A bin with one start among thousands still shows.
    counts[21] = 1
    counts[4] = 10_000
    assert render_histogram(counts, 56, height=2).plain.splitlines()[1][42] != " "


# -- memory against instances ---------------------------------------------------------------------
def test_memory_curve_has_labelled_axes_and_grows_with_instances() -> None:
    points = [(0, 0), (10, 1 << 20), (50, 6 << 20), (100, 11 << 20)]
    shown = render_memory_curve(points, 50, height=4).plain.splitlines()
    assert len(shown) == 6
    assert shown[0].startswith(format_bytes(11 << 20)) and shown[3].strip().startswith("0 │")
    assert "└" in shown[4] and shown[5].strip().startswith("0") and shown[5].endswith("100 instances")
    # Columns never fall as instances rise (PSS growth grew at every reading).
    fill = [sum(" ▁▂▃▄▅▆▇█".index(row[col]) for row in shown[:4]) for col in range(shown[0].index("│") + 1, 50)]
    assert fill == sorted(fill) and fill[-1] == 32
    assert "a ramp draws it" in render_memory_curve([(10, 5)], 50).plain


def test_big_ratio_is_slowest_p50_over_fastest() -> None:
    rows = [
        ChartRow("wasm", 10e3, None, None, 1, (), ""),
        ChartRow("subprocess", 200e3, None, None, 1, (), ""),
        ChartRow("container", 840e6, None, None, 1, (), ""),
    ]
    fastest, slowest, ratio = big_ratio(rows) or ("", "", 0.0)
    assert (fastest, slowest) == ("wasm", "container") and math.isclose(ratio, 84_000)
    assert ratio_words(fastest, slowest, ratio).startswith("wasm started 84,000x faster than container")
    assert big_ratio(rows[:1]) is None


# -- pilot: the screens and the panels -----------------------------------------------------------
def fake_app(tmp_path: Path) -> EdgelabApp:
    lab = Lab(runtime_factory=lambda name, session: FakeRuntime(session, as_runtime=name))
    return EdgelabApp(
        lab=lab, screenshot_dir=tmp_path, export_dir=tmp_path, deterministic=True, only_workloads=("hello",)
    )


async def burst(pilot: Pilot) -> None:
    app = pilot.app
    assert isinstance(app, EdgelabApp)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while app.query_one(Controls).workload() is None:
        assert loop.time() < deadline, "workload list never loaded"
        await asyncio.sleep(0.05)
    await pilot.press("r")
    while app.state.result is None or app.running:
        assert loop.time() < deadline, "burst never finished"
        await asyncio.sleep(0.05)
    await pilot.pause()


def test_chart_and_presentation_screens_list_every_selected_runtime(tmp_path: Path) -> None:
    from edgelab.tui.compare import ChartScreen, PresentScreen

    async def scenario() -> None:
        app = fake_app(tmp_path)
        async with app.run_test(size=(120, 36)) as pilot:
            await burst(pilot)
            await pilot.press("g")
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, ChartScreen)
            rows = screen.rows()
            assert sorted(r.name for r in rows) == sorted(RUNTIMES)
            assert all(r.n == 20 and r.p1_ns and r.p50_ns and r.p99_ns for r in rows)
            assert all((r.p1_ns or 0) <= (r.p50_ns or 0) <= (r.p99_ns or 0) for r in rows)
            chart = str(screen.query_one("#chart-axis").render())
            histograms = str(screen.query_one("#chart-histograms").render())
            for r in rows:
                assert f"p50 {format_duration_ns(r.p50_ns or 0)}" in chart
                assert re.search(rf"^{r.name}\s.*tallest bin \d+ of 20$", histograms, re.M), r.name
            assert "1ms" in chart and "100ms" in chart and "fake runtimes" in str(screen.query_one("#chart-keys").render())
            await pilot.press("escape")
            assert not isinstance(app.screen, ChartScreen)
            await pilot.press("p")
            await pilot.pause()
            present = app.screen
            assert isinstance(present, PresentScreen)
            assert present.ratio_text().startswith("wasm started ") and "faster than container" in present.ratio_text()
            figures = _lines(present.query_one("#present-figures", Static))
            for name in RUNTIMES:
                assert f"{name} · p50 of 20 cold starts" in figures
            # Side by side at 120 columns, each includes line wrapped in its column, last word kept.
            assert figures.count("includes: fixed fake timings for UI") == 3
            assert len(re.findall(r"\btests\b", figures)) == 3
            warned = [name for name, live in app.state.runtimes.items() if live.final and live.final.warnings]
            assert figures.count("⚠") == sum(
                len(app.state.runtimes[name].final.warnings) for name in warned  # type: ignore[union-attr]
            )
            await pilot.press("p")
            assert not isinstance(app.screen, PresentScreen)

    asyncio.run(scenario())


#: As long as a real one (the Wasm rung's) and then some: it must reach its last word.
LONG_INCLUDES = (
    "includes: instantiation from a pre-compiled module in wasmtime's pooling allocator, the guest's"
    " _start and its first write to the pipe; the memory from wasmtime's pool; IPC excluded)"
)
WARNINGS = ("⚠ high spread (p99 is 9.3x p50)", "⚠ 3 of 20 launches failed", "⚠ emulated (TCG)")


def _lines(widget: Widget) -> str:
    """What the widget shows on screen, line by line (its render cut to its size)."""
    strips = widget.render_lines(Region(0, 0, widget.content_size.width, widget.content_size.height))
    return "\n".join(strip.text.rstrip() for strip in strips)


def _rendered(widget: PanelLines) -> str:
    strips = widget.render_lines(Region(0, 0, widget.content_size.width, widget.content_size.height))
    return " ".join(" ".join(strip.text.split()) for strip in strips)


@pytest.mark.parametrize("size", [(80, 24), (120, 36), (160, 45)], ids=["80", "120", "160"])
def test_panel_includes_sentence_and_every_warning_are_never_cut(tmp_path: Path, size: tuple[int, int]) -> None:
    async def scenario() -> None:
        app = fake_app(tmp_path)
        async with app.run_test(size=size) as pilot:
            await burst(pilot)
            for panel in app.panels.values():
                assert panel.view is not None
                # (a sentence abbreviate_includes cannot shorten: the short form is the same)
                panel.view = replace(
                    panel.view, includes_line=LONG_INCLUDES, includes_short_line=LONG_INCLUDES, warning_lines=WARNINGS
                )
            await pilot.pause()
            # Under 30 rows the panels show the includes sentence's abbreviated block instead.
            block = ".startup-notes-short" if app.screen.has_class("-short") else ".startup-notes"
            for name, panel in app.panels.items():
                notes = panel.query_one(block, PanelLines)
                warnings = panel.query_one(".startup-warnings", PanelLines)
                assert notes.display and warnings.display
                assert " ".join(LONG_INCLUDES.split()) in _rendered(notes), (name, size)
                shown = _rendered(warnings)
                for warning in WARNINGS:
                    assert warning in shown, (name, size, warning)
                # As tall as its wrapped lines: nothing below a fixed height.
                assert warnings.region.height >= len(WARNINGS)
                assert notes.region.height >= math.ceil(len(LONG_INCLUDES) / max(1, notes.content_size.width))
                assert LONG_INCLUDES in panel.text()
            # The histogram is in the wide panels, with its caption and decades.
            if size[0] >= 120:
                histogram = app.panels["wasm"].query_one(StartupHistogram)
                assert histogram.display and sum(histogram.counts) == 20
                caption = histogram.caption(histogram.content_size.width)
                assert "shared log bins" in caption or "same in all panels" in caption, caption
                drawn = _lines(histogram).splitlines()
                assert drawn[0] == caption and "1µs" in drawn[-1] and "10s" in drawn[-1]
                assert any(set(line) & set("▁▂▃▄▅▆▇█") for line in drawn[1:-1])

    asyncio.run(scenario())


def test_snapshot_of_the_log_chart_at_120x36(snap_compare, tmp_path: Path) -> None:
    async def open_chart(pilot: Pilot) -> None:
        await burst(pilot)
        await pilot.press("g")
        await pilot.pause()

    assert snap_compare(fake_app(tmp_path), terminal_size=(120, 36), run_before=open_chart)


def test_memory_strip_names_both_axes_ranges_in_a_caption_that_fits() -> None:
    from edgelab.tui.charts import memory_strip_caption, render_memory_strip

    points = [(5, 400 << 10), (20, 1_600 << 10), (40, 3_200 << 10)]
    wide = memory_strip_caption(points, 80)
    assert wide == f"memory curve · y total PSS growth 0–{format_bytes(3_200 << 10)} · x 0–40 instances"
    narrow = memory_strip_caption(points, 36)
    assert len(narrow) <= 36 and narrow.endswith("x 0–40 instances") and format_bytes(3_200 << 10) in narrow
    lines = render_memory_strip(points, 40, height=2).plain.splitlines()
    assert len(lines) == 3 and all(len(line) == 40 for line in lines[1:])
    # Nothing left of the first reading (5 of 40 instances), full height at the last.
    assert lines[2][:4] == "    " and lines[1][-1] == "█" and lines[2][-1] == "█"


def test_a_held_ramp_draws_memory_against_instances_in_panels_and_on_the_chart(tmp_path: Path) -> None:
    from textual.widgets import Input

    from edgelab.tui.compare import ChartScreen
    from edgelab.tui.panels import MemoryCurve

    async def scenario() -> None:
        app = fake_app(tmp_path)
        async with app.run_test(size=(160, 45)) as pilot:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while app.query_one(Controls).workload() is None:
                assert loop.time() < deadline
                await asyncio.sleep(0.05)
            app.query_one(Controls).set_scenario("ramp")
            app.query_one("#count", Input).value = "c=2,s=3,w=40"
            await pilot.press("r")
            try:
                while not app.state.held:
                    assert loop.time() < deadline, "ramp never held"
                    await asyncio.sleep(0.05)
                app.drain()
                await pilot.pause()
                for name, panel in app.panels.items():
                    live = app.state.runtimes[name]
                    curve = panel.query_one(MemoryCurve)
                    assert curve.display and curve.points == tuple(live.memory_points) and len(curve.points) > 1
                    drawn = _lines(curve).splitlines()
                    top = format_bytes(max(g for _, g in live.memory_points))
                    assert top in drawn[0] and f"{max(n for n, _ in live.memory_points):,} instances" in drawn[0]
                    assert "█" in drawn[-1]
                await pilot.press("g")
                await pilot.pause()
                assert isinstance(app.screen, ChartScreen)
                memory = _lines(app.screen.query_one("#chart-memory", Static))
                for name in RUNTIMES:
                    assert f"{name} · memory against instances: y total PSS growth" in memory
                assert memory.count(" instances\n") + memory.endswith(" instances") == 3
                await pilot.press("escape")
            finally:
                if app.cancel_event is not None:
                    app.cancel_event.set()
                # The run ends (its instances gone) before the app does.
                while app.running:
                    assert loop.time() < deadline + 10, "ramp never ended"
                    await asyncio.sleep(0.05)

    asyncio.run(scenario())
