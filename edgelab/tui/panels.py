"""One panel per runtime: startup, memory and instances, repainted from a ``PanelView``.

Few widgets on purpose (each costs style and layout work at start-up and on every class
change), and fixed line heights, so a changing figure repaints its block without a layout pass.
"""

from __future__ import annotations

from typing import ClassVar

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.reactive import reactive
from textual.renderables.digits import Digits
from textual.widget import Widget
from textual.widgets import Label, Static

from edgelab.tui.charts import (
    BINS_PER_DECADE,
    render_histogram,
    render_memory_strip,
)
from edgelab.tui.view import PanelView

_BIG_DIGITS = set("0123456789.")


def _show(widget: Widget, visible: bool) -> None:
    # Only a real change of visibility costs a layout pass.
    if widget.display != visible:
        widget.display = visible


class BigFigures(Static):
    """p50 and p99 in large digits, each with its unit beside it (Digits cannot draw 'µs')."""

    def show(self, p50: str, p99: str) -> None:
        if (p50, p99) != getattr(self, "_shown", None):
            self._shown = (p50, p99)
            self.update(_big_figures(p50, p99), layout=False)


def _big_figure(label: str, text: str) -> RenderableType:
    value, _, unit = text.partition(" ")
    if not (value and set(value) <= _BIG_DIGITS):
        value, unit = "", text
    grid = Table.grid(padding=(0, 1))
    grid.add_row(Digits(value), Text("\n" + unit, style="bold"))
    return Group(Text(label, style="dim"), grid)


def _big_figures(p50: str, p99: str) -> RenderableType:
    row = Table.grid(expand=True)
    row.add_column(ratio=1)
    row.add_column(ratio=1)
    row.add_row(_big_figure("p50", p50), _big_figure("p99", p99))
    return row


class PanelLines(Widget):
    """Lines that wrap at a word and grow the panel to fit: the includes sentence, phases and
    every warning. Not a ``Static`` on purpose: the lab's stylesheet gives every ``Static`` in a
    panel one cut line (``.runtime-panel Static``), which cut "…IPC" before "excluded)" and hid
    a second warning under a fixed height."""

    SCOPED_CSS = False
    DEFAULT_CSS = """
    PanelLines { height: auto; width: 1fr; }
    PanelLines.-empty { display: none; }
    /* Under 30 rows (80x24) the phases give their lines to the figures below them: they are
       in the exports and on taller screens; includes and warnings always stay. */
    Screen.-short PanelLines.-phases { display: none; }
    /* ... and the includes sentence is abbreviated there (what it excludes kept; whole on p). */
    PanelLines.startup-notes-short { display: none; }
    Screen.-short PanelLines.startup-notes { display: none; }
    Screen.-short PanelLines.startup-notes-short { display: block; }
    Screen.-short PanelLines.startup-notes-short.-empty { display: none; }
    PanelLines.-warnings { color: $text-warning; }
    """

    def __init__(self, classes: str = "") -> None:
        # Empty until the first view: shown by show() (a class, so the stylesheet still decides).
        super().__init__(classes=f"{classes} -empty")
        self.lines: tuple[str, ...] = ()

    def show(self, lines: tuple[str, ...]) -> None:
        lines = tuple(line for line in lines if line)
        if lines != self.lines:
            self.lines = lines
            self.set_class(not lines, "-empty")
            self.refresh(layout=True)

    def render(self) -> RenderableType:
        # Each line wraps on its own at a word ("fold" only for a word wider than the panel).
        return Text("\n".join(self.lines), overflow="fold")


class StartupHistogram(Widget):
    """Every measured cold start of this runtime in the log bins all panels share (1 µs to
    10 s), so a 200 ms bar and a 40 µs bar sit a decade-width per tenfold apart, with the
    axis's decades labelled under the bars. Bar heights are scaled to this panel's tallest bin,
    said in the caption with its count."""

    SCOPED_CSS = False
    DEFAULT_CSS = """
    StartupHistogram { height: 4; width: 1fr; text-wrap: nowrap; text-overflow: ellipsis; }
    /* Under 30 rows the panels keep their figures and sentences (the chart screen, g, has the
       histograms): every panel stays on an 80x24 screen. */
    StartupHistogram.-empty, Screen.-short StartupHistogram { display: none; }
    """

    def __init__(self, classes: str = "") -> None:
        # Empty until the first view: shown by show() (a class, so the stylesheet still decides).
        super().__init__(classes=f"{classes} -empty")
        self.counts: tuple[int, ...] = ()

    def show(self, counts: tuple[int, ...]) -> None:
        if counts != self.counts:
            self.counts = counts
            self.set_class(not any(counts), "-empty")
            self.refresh()

    def caption(self, width: int = 1_000) -> str:
        """The longest of three captions that fits ``width`` (never one cut mid-word): the
        chart screen (g) says it at length."""
        tallest = f"max {max(self.counts, default=0):,}"
        for words in (
            f"histogram · log bins, {BINS_PER_DECADE}/decade, same in all panels · {tallest}",
            f"histogram · log bins, same in all panels · {tallest}",
            f"histogram · shared log bins · {tallest}",
            f"log histogram · {tallest}",
        ):
            if len(words) <= width:
                return words
        return tallest

    def render(self) -> RenderableType:
        width = max(8, self.content_size.width - 4)
        text = Text(self.caption(self.content_size.width) + "\n", style="dim", no_wrap=True, overflow="ellipsis")
        text.append_text(render_histogram(self.counts, width, height=max(1, self.content_size.height - 2)))
        return text


class MemoryCurve(Widget):
    """A ramp's total PSS growth (y, from 0) against instances resident (x, from 0), both
    axes' ranges and units in its caption: the panel's picture of what each instance costs
    (three lines, as the sparkline it replaces; the chart screen, g, has the full axes)."""

    SCOPED_CSS = False
    DEFAULT_CSS = """
    MemoryCurve { height: 3; width: 1fr; text-wrap: nowrap; text-overflow: ellipsis; }
    MemoryCurve.-empty, Screen.-short MemoryCurve { display: none; }
    """

    def __init__(self, classes: str = "") -> None:
        # Empty until the first view: shown by show() (a class, so the stylesheet still decides).
        super().__init__(classes=f"{classes} -empty")
        self.points: tuple[tuple[int, int], ...] = ()

    def show(self, points: tuple[tuple[int, int], ...]) -> None:
        if points != self.points:
            self.points = points
            self.set_class(len(points) < 2, "-empty")
            self.refresh()

    def render(self) -> RenderableType:
        # As tall as the sparkline it replaces: the caption names both axes and their ranges.
        return render_memory_strip(self.points, self.content_size.width, height=max(1, self.content_size.height - 1))


def _fills_a_block(view: PanelView, warnings: tuple[str, ...]) -> bool:
    """Whether ``view`` has something for a block compose leaves out (each hidden while empty)."""
    lines = (
        view.state_line, view.phases_line, view.includes_line, view.includes_short_line,
        view.memory_warning_line, view.traffic_line, *warnings,
    )
    return any(lines) or any(view.histogram) or len(view.memory_points) >= 2


def rung_words(name: str) -> str:
    """What a rung is and skips, from its registry entry (before any run: no runtime needed)."""
    from edgelab.errors import UsageError
    from edgelab.runtimes import registry

    try:
        entry = registry.spec(name)
    except UsageError:
        return name
    words = f"{name}: {entry.summary}"
    if entry.skips:
        words += f"; skips {entry.skips}"
    if entry.ready_cost:
        words += f"; kept ready costs {entry.ready_cost}"
    return words


class RuntimePanel(Vertical, can_focus=True):
    """Live figures of one runtime. ``view`` is the only input; equal views do not repaint.

    Focusable, so tab, ] and [ reach every panel by keyboard (at 80x24 they are stacked below
    the fold); on a focused panel up/down/j/k scroll the lab (the scrolling body's own keys,
    reached through the focus chain) and left/right/h/l go to the neighbouring panel.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "app.scroll_body('down')", "scroll down", show=False),
        Binding("k", "app.scroll_body('up')", "scroll up", show=False),
        Binding("right,l", "app.focus_panel(1)", "next panel", show=False),
        Binding("left,h", "app.focus_panel(-1)", "previous panel", show=False),
    ]
    view: reactive[PanelView | None] = reactive(None, layout=False)

    def __init__(self, runtime: str) -> None:
        from edgelab.tui.controls import slug

        super().__init__(id=f"panel-{slug(runtime)}", classes="runtime-panel")
        self.runtime = runtime
        self.border_title = runtime
        self.tooltip = rung_words(runtime)
        self._blocks_mounted = False

    def compose(self) -> ComposeResult:
        # What an idle panel shows; the blocks that are empty until a run has figures (each
        # hidden while empty) are mounted after the first frame (``mount_blocks``): a third
        # of the lab's widgets, each styled, composed and mounted before the first frame.
        yield Label("startup", classes="section")
        yield BigFigures("", classes="big-figures")
        yield Static("", classes="n-line")
        yield Static("", classes="startup-line")
        yield Label("memory", classes="section")
        yield Static("", classes="memory-lines")
        yield Static("", classes="memory-lines-short")
        yield Label("instances", classes="section")
        yield Static("", classes="instance-lines")

    def mount_blocks(self) -> None:
        """The blocks compose leaves out, each in its place (the order is the panel's): once,
        after the first frame, or sooner if a view has something for one of them. Registered
        at once, so the view that follows finds them."""
        if self._blocks_mounted or not self.is_mounted:
            return
        self._blocks_mounted = True
        self.mount(Static("", classes="state-line"), before=0)
        self.mount(
            StartupHistogram(classes="startup-histogram"),
            PanelLines(classes="startup-phases -phases"),
            PanelLines(classes="startup-notes"),
            PanelLines(classes="startup-notes-short"),
            PanelLines(classes="startup-warnings -warnings"),
            after=".startup-line",
        )
        self.mount(
            PanelLines(classes="memory-warnings -warnings"),
            MemoryCurve(classes="memory-curve"),
            after=".memory-lines-short",
        )
        self.mount(Static("", classes="traffic-lines"))
        if self.view is not None:
            self.watch_view(self.view)

    def watch_view(self, view: PanelView | None) -> None:
        # No children: the app is shutting down (a run's worker that ends during teardown
        # still drains its last events into the panels).
        if view is None or not self.is_mounted or not self.children:
            return
        warnings = view.warning_lines or (view.warning_line,)
        if not self._blocks_mounted and _fills_a_block(view, warnings):
            self.mount_blocks()  # shows this view itself
            return
        self.set_class(view.state == "unavailable", "-unavailable")
        self.set_class(view.state == "off", "-off")
        if self.border_subtitle != view.state:
            self.border_subtitle = view.state
        startup = f"p50 {view.p50} · p99 {view.p99}"
        self.query_one(BigFigures).show(view.p50, view.p99)
        # The layout shows one of these: big digits and the count (wide) or one line (narrow).
        self._set(".startup-line", f"{startup} · {view.n_short}" if view.n_short else startup)
        self._set(".n-line", view.n_line)
        memory = (view.memory_line, view.host_line, view.density_line)
        self._set(".memory-lines", "\n".join(line for line in memory if line), relayout=True)
        self._set(".memory-lines-short", "\n".join(view.memory_short_lines), relayout=True)
        instances = (view.instances_line, view.rate_line)
        self._set(".instance-lines", "\n".join(line for line in instances if line))
        if not self._blocks_mounted:
            return  # every block compose left out would be empty, so hidden
        self._set(".state-line", view.state_line, hide=True)
        self.query_one(StartupHistogram).show(view.histogram)
        self.query_one(".startup-phases", PanelLines).show((view.phases_line,))
        self.query_one(".startup-notes", PanelLines).show((view.includes_line,))
        self.query_one(".startup-notes-short", PanelLines).show((view.includes_short_line,))
        self.query_one(".startup-warnings", PanelLines).show(warnings)
        self.query_one(".memory-warnings", PanelLines).show((view.memory_warning_line,))
        self.query_one(MemoryCurve).show(view.memory_points)
        self._set(".traffic-lines", view.traffic_line, hide=True)

    def _set(self, selector: str, text: str, hide: bool = False, relayout: bool = False) -> None:
        """Repaint one block only if it changed; blocks have fixed heights, so no relayout,
        except ``relayout`` ones (height auto: the memory block), whose text changes a few
        dozen times a run (a ramp's memory points), not per sample."""
        widget = self.query_one(selector, Static)
        if str(widget.content) != text:
            widget.update(text, layout=relayout)
        if hide:
            _show(widget, bool(text))

    def text(self) -> str:
        """Every line the panel shows, for tests and screen readers."""
        shown = [str(w.content) for w in self.query(Static) if w.display]
        # The wrapped blocks in screen order after the one-line figures (tests look for
        # sentences, not positions).
        shown += ["\n".join(w.lines) for w in self.query(PanelLines) if w.display and w.lines]
        return "\n".join(shown)
