"""Two screens for the back of the room, over the lab's main screen.

``ChartScreen`` (g): every selected runtime on one log-scale axis (p50 and its p1–p99 spread),
then each runtime's startup histogram on the same log bins, then memory against instances for a
ramp. ``PresentScreen`` (p): each runtime's p50 in large digits with what it includes, and one
big ratio. Neither starts or holds anything: both read the app's ``LabState`` (the drain timer
folds the measuring process's events into it) and redraw on a timer only when a figure or the
width changed.
"""

from __future__ import annotations

from typing import ClassVar

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.renderables.digits import Digits
from textual.screen import Screen
from textual.widgets import Static

from edgelab.stats import format_duration_ns
from edgelab.tui.charts import (
    BINS_PER_DECADE,
    SPREAD_WORDS,
    ChartRow,
    big_ratio,
    chart_rows,
    memory_caption,
    ratio_words,
    render_histograms,
    render_log_chart,
    render_memory_curve,
)
from edgelab.tui.state import LabState
from edgelab.tui.view import short_warning

REFRESH_HZ = 4
#: Said on every screen whose figures come from the fake runtime (the tests' and snapshots').
FAKE_NOTE = "fake runtimes: figures are not measurements"
#: Columns a runtime's big figure needs beside its neighbours' in the presentation layout.
PRESENT_COLUMN = 38
_BIG_DIGITS = set("0123456789.,")


def _signature(state: LabState) -> tuple[object, ...]:
    """What the screens draw from: a redraw only when one of these moved."""
    return tuple(
        (live.name, len(live.sorted_startups_ns), live.state, len(live.memory_points), live.final is not None)
        for live in state.runtimes.values()
        if live.enabled
    )


class ChartScreen(Screen[None]):
    """The shared log axis, the histograms and the memory curves: escape or g goes back."""

    DEFAULT_CSS = """
    ChartScreen { layout: vertical; }
    ChartScreen #chart-title { padding: 0 1; text-style: bold; height: auto; }
    ChartScreen #chart-body { height: 1fr; }
    ChartScreen #chart-body Static { padding: 0 1; height: auto; }
    /* Charts never wrap: a wrapped line drops its leading spaces and moves every cell. */
    ChartScreen #chart-body .chart { text-wrap: nowrap; text-overflow: ellipsis; }
    ChartScreen #chart-keys { dock: bottom; padding: 0 1; height: 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "back"),
        Binding("g", "close", "back", show=False),
    ]

    def __init__(self, state: LabState, fake: bool = False) -> None:
        super().__init__()
        self.state = state
        self.fake = fake
        self._shown: tuple[object, ...] | None = None

    def compose(self) -> ComposeResult:
        yield Static(
            f"startup, launch call → first response byte · log scale · ● p50 ━ {SPREAD_WORDS} · cold starts only",
            id="chart-title",
        )
        with VerticalScroll(id="chart-body"):
            yield Static("", id="chart-axis", classes="chart")
            yield Static("", id="chart-histograms-title")
            yield Static("", id="chart-histograms", classes="chart")
            yield Static("", id="chart-memory", classes="chart")
        note = f" · {FAKE_NOTE}" if self.fake else ""
        yield Static(f"[b]escape[/] back  [b]r[/] run/stop  [b]q[/] quit{note}", id="chart-keys")

    def on_mount(self) -> None:
        self.redraw()
        self.set_interval(1 / REFRESH_HZ, self.redraw)

    def on_resize(self) -> None:
        self._shown = None
        self.redraw()

    def rows(self) -> list[ChartRow]:
        return chart_rows(self.state)

    def redraw(self) -> None:
        width = self.size.width - 4  # the charts' padding and the body's scrollbar
        signature = (_signature(self.state), width)
        if self._shown == signature:
            return
        self._shown = signature
        rows = self.rows()
        if not rows:
            self.query_one("#chart-axis", Static).update("no runtime selected: toggle runtimes on the lab's screen")
            return
        self.query_one("#chart-axis", Static).update(render_log_chart(rows, width))
        self.query_one("#chart-histograms", Static).update(self._histograms(width))
        self.query_one("#chart-memory", Static).update(self._memory(width))

    def _histograms(self, width: int) -> RenderableType:
        rows = self.rows()
        samples = {live.name: live.sorted_startups_ns for live in self.state.runtimes.values() if live.enabled}
        title = self.query_one("#chart-histograms-title", Static)
        if not any(samples.values()):
            title.update("")
            return Text("")
        title.update(
            f"\n[b]histograms[/b]: cold starts per log bin ({BINS_PER_DECADE} a decade) on the axis above,"
            " the same bins for every runtime, each scaled to its tallest bin"
        )
        return render_histograms(rows, samples, width)

    def _memory(self, width: int) -> RenderableType:
        parts: list[RenderableType] = []
        for live in self.state.runtimes.values():
            if live.enabled and len(live.memory_points) > 1:
                parts.append(Text(f"\n{live.name} · {memory_caption(live.memory_points)}", style="bold"))
                parts.append(render_memory_curve(live.memory_points, width, height=4))
        if not parts:
            parts.append(Text("\nmemory against instances: run a ramp to draw it", style="dim"))
        return Group(*parts)

    def action_close(self) -> None:
        self.dismiss(None)


def _big(value_text: str) -> RenderableType:
    """A duration such as '13.2 µs' as large digits with its unit beside them."""
    value, _, unit = value_text.partition(" ")
    if not (value and set(value) <= _BIG_DIGITS):
        return Text(value_text, style="bold")
    grid = Table.grid(padding=(0, 1))
    grid.add_row(Digits(value), Text("\n" + unit, style="bold"))
    return grid


class PresentScreen(Screen[None]):
    """Large p50s and one big ratio, each with what it includes (wrapped, never cut)."""

    DEFAULT_CSS = """
    PresentScreen { layout: vertical; }
    PresentScreen #present-body { height: 1fr; }
    PresentScreen #present-body Static { padding: 0 1; height: auto; text-wrap: wrap; }
    PresentScreen #present-keys { dock: bottom; padding: 0 1; height: 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "back"),
        Binding("p", "close", "back", show=False),
    ]

    def __init__(self, state: LabState, fake: bool = False) -> None:
        super().__init__()
        self.state = state
        self.fake = fake
        self._shown: tuple[object, ...] | None = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="present-body"):
            yield Static("", id="present-ratio")
            yield Static("", id="present-figures")
        note = f" · {FAKE_NOTE}" if self.fake else ""
        yield Static(f"[b]escape[/] back  [b]r[/] run/stop  [b]q[/] quit{note}", id="present-keys")

    def on_mount(self) -> None:
        self.redraw()
        self.set_interval(1 / REFRESH_HZ, self.redraw)

    def on_resize(self) -> None:
        self._shown = None
        self.redraw()

    def ratio_text(self) -> str:
        """The sentence under the big ratio, empty with fewer than two runtimes measured."""
        found = big_ratio(chart_rows(self.state))
        return ratio_words(*found) if found else ""

    def redraw(self) -> None:
        signature = (_signature(self.state), self.size.width)
        if self._shown == signature:
            return
        self._shown = signature
        rows = chart_rows(self.state)
        found = big_ratio(rows)
        if found:
            fastest, slowest, ratio = found
            figure = f"{ratio:,.0f}" if ratio >= 100 else f"{ratio:.3g}"
            ratio_part: RenderableType = Group(Digits(figure + "x"), Text(ratio_words(fastest, slowest, ratio), style="bold"))
        else:
            ratio_part = Text("run a burst on two runtimes or more for the ratio (r)", style="dim")
        self.query_one("#present-ratio", Static).update(ratio_part)
        cells: list[RenderableType] = []
        for row in rows:
            live = self.state.runtimes[row.name]
            cell: list[RenderableType] = [Text(f"{row.name} · p50 of {row.n:,} cold starts", style="bold")]
            cell.append(_big(format_duration_ns(row.p50_ns)) if row.p50_ns else Text(row.status, style="dim"))
            if live.startup_includes:
                cell.append(Text(f"includes: {live.startup_includes}"))
            # Its caveats beside the big figure, as in its panel: marks, then the run's warnings.
            warnings = [*live.marks, *(short_warning(w) for w in (live.final.warnings if live.final else []))]
            cell.extend(Text(f"⚠ {warning}", style="bold yellow") for warning in dict.fromkeys(warnings))
            cells.append(Group(*cell))
        # Side by side where each has PRESENT_COLUMN columns, else one under the other.
        across = max(1, min(len(cells), self.size.width // PRESENT_COLUMN))
        grid = Table.grid(expand=True, padding=(1, 2))
        for _ in range(across):
            grid.add_column(ratio=1)
        for start in range(0, len(cells), across):
            chunk = cells[start : start + across]
            grid.add_row(*chunk, *([Text("")] * (across - len(chunk))))
        figures: list[RenderableType] = [Text(""), grid]
        self.query_one("#present-figures", Static).update(Group(*figures))

    def action_close(self) -> None:
        self.dismiss(None)
