"""Charts that read from the back of the room: every runtime on one log-scale axis, startup
histograms on log bins every panel shares, and memory against instances with both axes named.

Pure text (rich ``Text``, block characters) on purpose: no plotting package to install, the
same cells in an SVG screenshot as on the terminal, and every function here is a plain function
of its figures, so the unit tests check positions and counts without a screen. The log axis is
``edgelab.ladder.LogAxis``, the one ``edgelab ladder`` prints, so a figure lands in the same cell
in every view.

Textual is not imported here: ``view.py`` bins a panel's samples with ``log_histogram`` in its
pure view function.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.text import Text

from edgelab.stats import format_bytes, format_duration_ns, percentile

if TYPE_CHECKING:
    from edgelab.ladder import LogAxis
    from edgelab.tui.state import LabState, RuntimeLive

#: What the spread on the shared chart is (said on screen beside it).
SPREAD_WORDS = "p1–p99"
#: The histogram bins every panel shares: 1 µs to 10 s, four bins per decade.
HIST_LO_NS = 1e3
HIST_HI_NS = 1e10
BINS_PER_DECADE = 4
#: Vertical eighth blocks, empty to full.
_BLOCKS = " ▁▂▃▄▅▆▇█"
#: Cells beside a chart row: " p50 13.2 µs  p1 12.0 µs – p99 14.4 µs  n=1,000".
FIGURES_WIDTH = 48
MIN_AXIS_WIDTH = 24


# -- the shared log-scale chart ----------------------------------------------------------------
@dataclass(frozen=True)
class ChartRow:
    """One runtime on the shared axis (plain data: the tests read these)."""

    name: str
    p50_ns: float | None
    p1_ns: float | None
    p99_ns: float | None
    n: int
    marks: tuple[str, ...]
    #: What stands in for figures not there yet: "waiting", "unavailable: why", "off".
    status: str


def chart_row(live: RuntimeLive) -> ChartRow:
    """p50 and the p1–p99 spread from every measured cold start the state holds (warmups and
    failures excluded, as in the panels' figures)."""
    values = live.sorted_startups_ns
    status = live.state
    if live.state == "unavailable" and live.reason:
        status = f"unavailable: {live.reason}"
    if not values:
        return ChartRow(live.name, None, None, None, 0, tuple(live.marks), status)
    return ChartRow(
        live.name,
        live.p50_ns() or percentile(values, 50),
        percentile(values, 1),
        percentile(values, 99),
        len(values),
        tuple(live.marks),
        status,
    )


def chart_rows(state: LabState) -> list[ChartRow]:
    """The enabled runtimes, fastest p50 first; those with no figure yet after them."""
    rows = [chart_row(live) for live in state.runtimes.values() if live.enabled]
    measured = sorted((r for r in rows if r.p50_ns is not None), key=lambda r: r.p50_ns or 0.0)
    return measured + [r for r in rows if r.p50_ns is None]


def axis_for(values_ns: Sequence[float], width: int, min_decades: int = 3) -> LogAxis:
    """A log axis from the decade below the smallest value to the decade above the largest,
    at least ``min_decades`` wide (1 µs .. 1 ms with no figure yet), within 1 ns .. 100 s."""
    present = [v for v in values_ns if v and v > 0]
    if not present:
        lo_exp, hi_exp = 3, 3 + min_decades
    else:
        lo_exp = math.floor(math.log10(min(present)) + 1e-9)
        hi_exp = math.ceil(math.log10(max(present)) - 1e-9)
        if hi_exp <= lo_exp:
            hi_exp = lo_exp + 1
        while hi_exp - lo_exp < min_decades:
            # Widen on the side that stays inside 1 ns .. 100 s.
            if hi_exp < 11:
                hi_exp += 1
            else:
                lo_exp -= 1
    lo_exp, hi_exp = max(0, lo_exp), min(11, hi_exp)
    from edgelab.ladder import LogAxis  # the ladder's module: not needed for the first frame

    return LogAxis(lo_ns=10.0**lo_exp, hi_ns=10.0**hi_exp, width=max(MIN_AXIS_WIDTH, width))


def marker_line(axis: LogAxis, p50_ns: float, lo_ns: float | None, hi_ns: float | None) -> str:
    """``width`` cells: the spread as ━ from ``lo_ns`` to ``hi_ns``, the p50 as ●."""
    cells = [" "] * axis.width
    if lo_ns is not None and hi_ns is not None:
        for col in range(axis.column(lo_ns), axis.column(hi_ns) + 1):
            cells[col] = "━"
    cells[axis.column(p50_ns)] = "●"
    return "".join(cells)


def label_width(rows: Sequence[ChartRow]) -> int:
    return max([len(r.name) for r in rows] + [4])


def chart_axis(rows: Sequence[ChartRow], width: int) -> LogAxis:
    """The axis the chart and the histograms under it share: decades around every p1..p99."""
    values = [v for r in rows for v in (r.p1_ns, r.p50_ns, r.p99_ns) if v is not None]
    return axis_for(values, width - label_width(rows) - 1 - FIGURES_WIDTH)


def render_histograms(rows: Sequence[ChartRow], samples: Mapping[str, Sequence[float]], width: int) -> Text:
    """Each runtime's histogram on the chart's own axis (the same columns as its ● and ━ above),
    decade-aligned log bins, BINS_PER_DECADE a decade, two rows tall, scaled to its tallest bin."""
    label = label_width(rows)
    axis = chart_axis(rows, width)
    text = Text(no_wrap=True, overflow="ellipsis")
    for row in rows:
        values = samples.get(row.name) or ()
        if not values:
            continue
        counts = log_histogram(values, axis.lo_ns, axis.hi_ns, presorted=True)
        drawn = render_histogram(counts, axis.width, height=2, lo_ns=axis.lo_ns, hi_ns=axis.hi_ns)
        lines = drawn.split("\n")
        for index, line in enumerate(lines[:-1]):
            text.append(f"{row.name if index == 0 else '':<{label}} ", style="bold")
            text.append_text(line)
            if index == 0:
                text.append(f"  tallest bin {max(counts):,} of {sum(counts):,}", style="dim")
            text.append("\n")
    _, ticks = axis.tick_lines()
    text.append(" " * (label + 1) + ticks)
    return text


def render_log_chart(rows: Sequence[ChartRow], width: int) -> Text:
    """Every runtime on one log axis: a row each (● p50 on ━ its p1–p99 spread, figures beside
    it), marks under it, then the rule and a labelled tick per decade."""
    label = label_width(rows)
    indent = " " * (label + 1)
    axis = chart_axis(rows, width)
    text = Text(no_wrap=True, overflow="ellipsis")
    for row in rows:
        text.append(f"{row.name:<{label}} ", style="bold")
        if row.p50_ns is not None:
            line = marker_line(axis, row.p50_ns, row.p1_ns, row.p99_ns)
            for cell in line:
                text.append(cell, style="bold cyan" if cell == "●" else "cyan")
            text.append(f" p50 {format_duration_ns(row.p50_ns)}", style="bold")
            if row.p1_ns is not None and row.p99_ns is not None:
                text.append(f"  p1 {format_duration_ns(row.p1_ns)} – p99 {format_duration_ns(row.p99_ns)}")
            text.append(f"  n={row.n:,}", style="dim")
        else:
            text.append(row.status, style="yellow" if row.status.startswith("unavailable") else "dim")
        text.append("\n")
        if row.marks:
            text.append(indent + "⚠ " + "; ".join(row.marks) + "\n", style="yellow")
    rule, ticks = axis.tick_lines()
    text.append(indent + rule + "\n")
    text.append(indent + ticks)
    return text


# -- histograms ----------------------------------------------------------------------------------
def bin_edges(lo_ns: float = HIST_LO_NS, hi_ns: float = HIST_HI_NS, per_decade: int = BINS_PER_DECADE) -> list[float]:
    """Log-spaced edges: ``per_decade`` bins in each decade from ``lo_ns`` to ``hi_ns``."""
    count = round(math.log10(hi_ns / lo_ns) * per_decade)
    return [lo_ns * 10 ** (i / per_decade) for i in range(count + 1)]


def log_histogram(
    values_ns: Sequence[float],
    lo_ns: float = HIST_LO_NS,
    hi_ns: float = HIST_HI_NS,
    per_decade: int = BINS_PER_DECADE,
    presorted: bool = False,
) -> tuple[int, ...]:
    """Counts per log bin (bin i holds edge[i] <= v < edge[i+1]); values below or above the
    range are counted in the first or last bin, so every sample is in the picture.

    By bisection over the sorted values (the panels' are sorted already): a bin count costs
    two searches, not a logarithm per sample, at every repaint of a 100,000-start run."""
    ordered = values_ns if presorted else sorted(values_ns)
    edges = bin_edges(lo_ns, hi_ns, per_decade)
    cuts = [0] + [bisect.bisect_left(ordered, edge) for edge in edges[1:-1]] + [len(ordered)]
    return tuple(cuts[i + 1] - cuts[i] for i in range(len(edges) - 1))


def histogram_axis(width: int) -> LogAxis:
    """The axis of the shared histogram bins, ``width`` cells."""
    from edgelab.ladder import LogAxis

    return LogAxis(lo_ns=HIST_LO_NS, hi_ns=HIST_HI_NS, width=max(1, width))


def render_histogram(counts: Sequence[int], width: int, height: int = 2, lo_ns: float = HIST_LO_NS,
                     hi_ns: float = HIST_HI_NS) -> Text:
    """Bars ``height`` rows tall over ``width`` cells (each bin spread over the cells of its
    span of the log axis), scaled to the tallest bin, then the decade ticks under them."""
    from edgelab.ladder import LogAxis

    axis = LogAxis(lo_ns=lo_ns, hi_ns=hi_ns, width=max(1, width))
    bins = len(counts)
    tallest = max(counts, default=0)
    column_counts = [0] * axis.width
    for col in range(axis.width):
        index = min(bins - 1, int(col * bins / axis.width)) if bins else 0
        column_counts[col] = counts[index] if bins else 0
    text = Text(no_wrap=True, overflow="crop")
    for level in range(height, 0, -1):
        for count in column_counts:
            if not tallest or not count:
                text.append(" ")
                continue
            eighths = count / tallest * height * 8 - (level - 1) * 8
            # A bin with any sample shows at least a sliver on the bottom row.
            if level == 1:
                eighths = max(eighths, 1)
            text.append(_BLOCKS[max(0, min(8, int(eighths)))], style="cyan")
        text.append("\n")
    _, ticks = axis.tick_lines()
    text.append(ticks[: axis.width + 4])
    return text


# -- memory against instances --------------------------------------------------------------------
def _curve_heights(points: Sequence[tuple[int, int]], cells: int, height: int) -> list[float]:
    """Column heights in eighths of a row: straight lines between readings (sorted by
    instances), x from 0 to the most instances, y from 0 to the largest growth; nothing before
    the first reading."""
    top = max(max(growth for _, growth in points), 1)
    most = max(max(n for n, _ in points), 1)
    ordered = sorted(points)
    heights = [0.0] * cells
    for col in range(cells):
        n = col / max(1, cells - 1) * most
        for (n0, g0), (n1, g1) in zip(ordered, ordered[1:], strict=False):
            if n0 <= n <= n1:
                growth = g0 if n1 == n0 else g0 + (g1 - g0) * (n - n0) / (n1 - n0)
                heights[col] = max(0, growth) / top * height * 8
                break
    return heights


def _columns(text: Text, heights: Sequence[float], level: int) -> None:
    for value in heights:
        text.append(_BLOCKS[max(0, min(8, int(value - (level - 1) * 8)))], style="magenta")


def render_memory_curve(points: Sequence[tuple[int, int]], width: int, height: int = 4) -> Text:
    """PSS growth in total (y, bytes, linear from 0) against instances resident (x, linear from
    0) as columns, with the top of the y axis and both ends of the x axis labelled."""
    if len(points) < 2:
        return Text("memory curve: a ramp draws it (instances on x, total PSS growth on y)", style="dim")
    y_label = format_bytes(max(max(growth for _, growth in points), 1))
    most = max(max(n for n, _ in points), 1)
    gutter = max(len(y_label), 3) + 1
    cells = max(8, width - gutter - 1)
    heights = _curve_heights(points, cells, height)
    text = Text(no_wrap=True, overflow="crop")
    for level in range(height, 0, -1):
        label = y_label if level == height else ("0" if level == 1 else "")
        text.append(f"{label:>{gutter - 1}} │", style="dim")
        _columns(text, heights, level)
        text.append("\n")
    text.append(" " * (gutter - 1) + " └" + "─" * cells + "\n", style="dim")
    right = f"{most:,} instances"
    text.append(" " * (gutter + 1) + "0" + right.rjust(cells - 1), style="dim")
    return text


def memory_strip_caption(points: Sequence[tuple[int, int]], width: int) -> str:
    """The panel's one line over its compact curve: both axes' ranges and units, the longest
    wording that fits ``width`` (never cut mid-word)."""
    top = format_bytes(max(max(growth for _, growth in points), 1))
    most = f"{max(max(n for n, _ in points), 1):,}"
    for words in (
        f"memory curve · y total PSS growth 0–{top} · x 0–{most} instances",
        f"y PSS growth 0–{top} · x 0–{most} instances",
        f"y 0–{top} · x 0–{most} instances",
    ):
        if len(words) <= width:
            return words
    return f"0–{top}"


def render_memory_strip(points: Sequence[tuple[int, int]], width: int, height: int = 2) -> Text:
    """The panel's curve: the caption naming both axes' ranges, then ``height`` rows of columns
    over the full width (the chart screen, g, draws it with a y gutter and an x rule)."""
    text = Text(memory_strip_caption(points, width) + "\n", style="dim", no_wrap=True, overflow="ellipsis")
    heights = _curve_heights(points, max(8, width), height)
    for level in range(height, 0, -1):
        _columns(text, heights, level)
        if level > 1:
            text.append("\n")
    return text


def memory_caption(points: Sequence[tuple[int, int]]) -> str:
    """What the curve shows, with the per-instance figure its last point gives."""
    if len(points) < 2:
        return ""
    n, growth = points[-1]
    per = format_bytes(growth / n) + "/instance" if n else "–"
    return f"memory against instances: y total PSS growth, x instances resident · last point {per}"


# -- the one ratio -----------------------------------------------------------------------------
def big_ratio(rows: Sequence[ChartRow]) -> tuple[str, str, float] | None:
    """(fastest, slowest, slowest p50 / fastest p50) over the rows with figures, or None with
    fewer than two."""
    measured = [r for r in rows if r.p50_ns]
    if len(measured) < 2:
        return None
    fastest = min(measured, key=lambda r: r.p50_ns or 0.0)
    slowest = max(measured, key=lambda r: r.p50_ns or 0.0)
    if fastest.name == slowest.name or not fastest.p50_ns or not slowest.p50_ns:
        return None
    return fastest.name, slowest.name, slowest.p50_ns / fastest.p50_ns


def ratio_words(fastest: str, slowest: str, ratio: float) -> str:
    """The sentence under the big ratio: what is compared with what."""
    figure = f"{ratio:,.0f}" if ratio >= 100 else f"{ratio:,.3g}"
    return f"{fastest} started {figure}x faster than {slowest} (median cold start against median cold start)"
