"""The ladder view: every selected rung on one log-scale axis (1 µs to 10 s), live.

Pushed over the lab's main screen by one key. It starts nothing and holds no runtime: it reads
the app's ``LabState``, which the drain timer folds the measuring process's events into
(SampleRecorded for the figures, RuntimeDescribed for the marks, the run's end for the final
summaries), and redraws on a timer of its own. The axis and the bars are ``edgelab.ladder``'s,
the ones ``edgelab ladder`` prints, so the two views place a figure in the same cell.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Static

from edgelab.ladder import MIN_AXIS_WIDTH, LogAxis
from edgelab.stats import format_duration_ns
from edgelab.tui.state import LabState, RuntimeLive

#: Redraws per second while the view is shown.
REFRESH_HZ = 4
#: Cells beside the bar: " 13.2 µs · p99 14.4 µs  n=1,000".
FIGURES_WIDTH = 32


@dataclass(frozen=True)
class LadderRow:
    """One rung as the view shows it (plain data: the unit tests read these)."""

    name: str
    p50_ns: float | None
    p99_ns: float | None
    n: int
    marks: tuple[str, ...]
    #: What stands in for figures not there yet: "waiting", "preparing", "unavailable: why".
    status: str


def ladder_rows(state: LabState) -> list[LadderRow]:
    """The enabled rungs, fastest p50 first; rungs with no figure yet below, in their order."""
    rows = [_row(live) for live in state.runtimes.values() if live.enabled]
    measured = sorted((r for r in rows if r.p50_ns is not None), key=lambda r: r.p50_ns or 0.0)
    return measured + [r for r in rows if r.p50_ns is None]


def _row(live: RuntimeLive) -> LadderRow:
    status = live.state
    if live.state == "unavailable" and live.reason:
        status = f"unavailable: {live.reason}"
    return LadderRow(live.name, live.p50_ns(), live.p99_ns(), live.startup_n, tuple(live.marks), status)


def render_ladder(rows: list[LadderRow], width: int) -> Text:
    """The chart: a line per rung (bar to p50 solid, to p99 shaded, figures, marks under it in
    warning colour), then the axis with a labelled tick per decade. Nothing is cut where the
    width is short (80 columns and a long rung name): a row's figures follow its bar where the
    column after the axis has no room, or go on the line under it, and marks wrap."""
    import textwrap

    label = max([len(r.name) for r in rows] + [4])
    indent = " " * (label + 1)
    axis = LogAxis(width=max(MIN_AXIS_WIDTH, width - label - FIGURES_WIDTH - 2))
    text = Text(no_wrap=True, overflow="ellipsis")
    for row in rows:
        text.append(f"{row.name:<{label}} ", style="bold")
        if row.p50_ns is not None:
            bar = axis.bar(row.p50_ns, row.p99_ns)
            solid = len(bar.rstrip(" ░"))
            figures = f" {format_duration_ns(row.p50_ns)} · p99 {format_duration_ns(row.p99_ns or row.p50_ns)}"
            count = f"  n={row.n:,}"
            if label + 1 + len(bar) + len(figures) + len(count) > width:
                bar = bar.rstrip(" ")  # figures right after the bar, not in the column
            text.append(bar[:solid], style="cyan")
            text.append(bar[solid:], style="dim cyan")
            if label + 1 + len(bar) + len(figures) + len(count) > width:
                text.append("\n" + indent)
                figures = figures.lstrip()
            text.append(figures)
            text.append(count, style="dim")
        else:
            text.append(row.status, style="yellow" if row.status.startswith("unavailable") else "dim")
        text.append("\n")
        if row.marks:
            lines = textwrap.wrap("⚠ " + "; ".join(row.marks), max(20, width - len(indent)),
                                  subsequent_indent="  ", break_on_hyphens=False)  # fmt: skip
            for line in lines:
                text.append(indent + line + "\n", style="yellow")
    rule, ticks = axis.tick_lines()
    text.append(indent + rule + "\n", style="dim")
    text.append(indent + ticks, style="dim")
    return text


class LadderScreen(Screen[None]):
    """The ladder over the lab: r still runs and stops (the app's key), escape or L goes back."""

    DEFAULT_CSS = """
    LadderScreen { layout: vertical; }
    LadderScreen #ladder-title { padding: 0 1; text-style: bold; }
    LadderScreen #ladder-chart { padding: 1 1; height: auto; text-wrap: nowrap; text-overflow: ellipsis; }
    LadderScreen #ladder-keys { dock: bottom; padding: 0 1; color: $text-muted; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "back"),
        Binding("L", "close", "back", show=False),
    ]

    def __init__(self, state: LabState) -> None:
        super().__init__()
        self.state = state
        self._shown: tuple[tuple[LadderRow, ...], int] | None = None

    def compose(self) -> ComposeResult:
        yield Static(
            "cold-start ladder · launch call → first response byte · log scale · █ p50 ░ p99",
            id="ladder-title",
        )
        yield Static("", id="ladder-chart")
        yield Static("[b]escape[/] back  [b]r[/] run/stop  [b]q[/] quit", id="ladder-keys")

    def on_mount(self) -> None:
        self.redraw()
        self.set_interval(1 / REFRESH_HZ, self.redraw)

    def on_resize(self) -> None:
        self.redraw()

    def rows(self) -> list[LadderRow]:
        return ladder_rows(self.state)

    def redraw(self) -> None:
        """Repaint only when a row or the width changed (an idle view costs nothing)."""
        rows = tuple(self.rows())
        width = self.size.width - 2  # the chart's padding
        if self._shown == (rows, width):
            return
        self._shown = (rows, width)
        if not rows:
            self.query_one("#ladder-chart", Static).update("no rung selected: toggle rungs on the lab's screen")
            return
        self.query_one("#ladder-chart", Static).update(render_ladder(list(rows), width))

    def action_close(self) -> None:
        self.dismiss(None)
