"""The lab's Textual app: wires controls, panels and the measuring worker together.

Measurement runs in a thread worker that calls ``Lab.run``; its events land in an
``EventBuffer`` and a timer folds them into the panels eight times a second, so a flood of
samples costs the event loop one repaint per tick and keys stay answered.
"""

from __future__ import annotations

import time

PROCESS_STARTED = time.perf_counter()  # noqa: E402 - as early as possible, for first paint

import asyncio  # noqa: E402
import gc  # noqa: E402
import threading  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING, Any, ClassVar  # noqa: E402

from textual import events, work  # noqa: E402
from textual.app import App, ComposeResult  # noqa: E402
from textual.binding import Binding, BindingType  # noqa: E402
from textual.containers import Horizontal, VerticalScroll  # noqa: E402
from textual.geometry import Size as ScreenSize  # noqa: E402
from textual.message import Message  # noqa: E402
from textual.screen import Screen  # noqa: E402
from textual.timer import Timer  # noqa: E402
from textual.widgets import Input, Static  # noqa: E402
from textual.worker import Worker, WorkerState  # noqa: E402

from edgelab.errors import EdgelabError  # noqa: E402
from edgelab.runtimes import registry  # noqa: E402
from edgelab.tui.artifacts import (  # noqa: E402
    ARTIFACT_KINDS,
    BUILDING,
    NOT_BUILT,
    UNKNOWN,
    Size,
    artifact_sizes,
    build_missing,
    engine_client,
    engine_versions,
)
from edgelab.tui.controls import Controls, slug  # noqa: E402
from edgelab.tui.header import HostBar  # noqa: E402
from edgelab.tui.panels import RuntimePanel  # noqa: E402
from edgelab.tui.state import EventBuffer, LabState, RunDone, comparison_text, final_figures  # noqa: E402
from edgelab.tui.view import panel_view, settings_line  # noqa: E402

if TYPE_CHECKING:
    from edgelab.lab import Interleave, Lab, Settings
    from edgelab.results import RunResult
    from edgelab.workloads import Workload

DRAIN_HZ = 8
#: gc thresholds once the lab is up (Python's defaults: 700, 10, 10).
GC_THRESHOLDS = (20_000, 20, 1_000)
WIDE_COLUMNS = 120
SHORT_ROWS = 30
#: Below this many rows (or 120 columns) a run folds the controls away: at 120x36 they would
#: push the instance counts below the fold; at 160x45 all of it fits and the fields stay.
FOLD_BELOW_ROWS = 45
#: Where e writes its exports unless --exports says otherwise: a folder of their own, beside
#: where the lab was started (as screenshots/ is), so the files are found where one looks.
DEFAULT_EXPORT_DIR = Path("edgelab-exports")
QUIT_WAIT_S = 5.0
#: --theme's words for the lab's own themes (edgelab.tui.themes: every text at 4.5:1 or more).
THEMES = {"dark": "edgelab-dark", "light": "edgelab-light"}
#: Host facts shown instead of the real ones when snapshots must not depend on the machine.
FIXED_FACTS = {"cpu_model": "Test CPU", "cpu_cores_logical": 2, "memory_total_bytes": 8 << 30}
FIXED_VERSIONS = {"docker_engine": "test", "wasmtime": "test"}


class WorkloadsLoaded(Message):
    def __init__(self, workloads: dict[str, str], objects: dict[str, Workload] | None = None) -> None:
        super().__init__()
        self.workloads = workloads
        #: The workloads themselves: each one's request limit, and a function's applicable rungs.
        self.objects = objects or {}


class SizesFound(Message):
    def __init__(self, workload: str, sizes: dict[str, Size]) -> None:
        super().__init__()
        self.workload = workload
        self.sizes = sizes


class BuildFailed(Message):
    def __init__(self, line: str) -> None:
        super().__init__()
        self.line = line


class HistorySaved(Message):
    """Where the worker saved the run that just ended (``path``), or why it could not."""

    def __init__(self, path: Path | None, error: str | None = None) -> None:
        super().__init__()
        self.path = path
        self.error = error


class HostFound(Message):
    def __init__(self, facts: dict[str, Any] | None, versions: dict[str, str] | None) -> None:
        super().__init__()
        self.facts = facts
        self.versions = versions


def key_bar(bindings: list[BindingType]) -> str:
    """The bottom line of keys. Textual's Footer would do, but it rebuilds a widget per key
    whenever a screen comes or goes (the help), and these keys never change."""
    shown = [b for b in bindings if isinstance(b, Binding) and b.show]
    keys = {"ctrl+c": "^c", "question_mark": "?"}
    return "  ".join(
        f"[b $accent]{b.key_display or keys.get(b.key, b.key)}[/] {b.description}" for b in shown
    )


def error_line(error: BaseException) -> str:
    """An EdgelabError is already a sentence for a person; anything else names its type."""
    if isinstance(error, EdgelabError):
        return str(error)
    return f"internal error: {type(error).__name__}: {error}"


def _text_shape(view: Any) -> tuple[int, ...]:
    """The length of each text a panel view holds: when none changed, no block changed height."""
    if view is None:
        return ()
    shape: list[int] = []
    for value in vars(view).values():
        if isinstance(value, str):
            shape.append(len(value))
        elif isinstance(value, tuple) and all(isinstance(item, str) for item in value):
            shape.append(sum(len(item) + 1 for item in value))
    return tuple(shape)


class LabScreen(Screen[Any]):
    """The lab's screen, without the work Textual repeats before and after the first frame.

    Its first resume does not restyle the whole tree: every widget was styled as it was
    mounted, and each class or focus change since restyled its own subtree (~25-35 ms here).
    A terminal size already laid out is not laid out again: Textual hands the screen the same
    size up to three times around the first frame, each a full layout and render (~15 ms);
    a widget whose size must change asks for its layout itself. (Textual calls each class's
    handler in turn, this one first, so the resume's handler only has to say what to skip.)
    """

    _resumed = False

    def _on_screen_resume(self, event: events.ScreenResume) -> None:
        if not self._resumed:
            self._resumed = True
            event.refresh_styles = False
            return
        # Back from a view (ladder, help, what-if): what a run changed under it was not
        # painted (the panels were covered), and a run that ended there sends nothing more.
        app = self.app
        if isinstance(app, EdgelabApp):
            app.call_later(app.drain)

    def _screen_resized(self, size: ScreenSize) -> None:
        if self._resumed and size == self.outer_size:
            return
        super()._screen_resized(size)


class EdgelabApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "edgelab"
    ENABLE_COMMAND_PALETTE = False
    #: Straight to the list: focusing the scrolling body first and then moving on would
    #: restyle the whole tree twice before the first frame.
    AUTO_FOCUS = "#workloads"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (WIDE_COLUMNS, "-wide")]
    #: Below 30 rows the host line gives its row to the panels (80x24 holds every panel);
    #: below 45 the panels' section labels lose their blank line above (120x36 holds a ramp).
    VERTICAL_BREAKPOINTS = [(0, "-short"), (SHORT_ROWS, "-medium"), (FOLD_BELOW_ROWS, "-tall")]
    #: Not priority bindings (but ctrl+c, ctrl+q): an input types the characters its value can
    #: take and passes every other key on (controls.FieldInput), so these work whatever has
    #: focus while digits and a ramp's runtime letters still go into N.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "run_or_stop", "run/stop"),
        Binding("ctrl+c", "cancel", "cancel", priority=True),
        Binding("s", "save_svg", "svg"),
        Binding("e", "export", "export"),
        Binding("c", "clear", "clear"),
        Binding("t", "toggle_theme", "theme", show=False),
        Binding("i", "toggle_interleave", "interleave", show=False),
        Binding("right_square_bracket", "focus_panel(1)", "panels", key_display="[ ]"),
        Binding("left_square_bracket", "focus_panel(-1)", "previous panel", show=False),
        Binding("pagedown", "scroll_body('page_down')", "page down", show=False),
        Binding("pageup", "scroll_body('page_up')", "page up", show=False),
        Binding("question_mark", "help", "help", key_display="?"),
        Binding("L", "ladder", "ladder", show=False),
        Binding("g", "chart", "chart", show=False),
        Binding("p", "present", "present", show=False),
        Binding("q", "quit", "quit"),
        # After q in the key bar: at 80 columns the bar is cut after quit, not before it.
        Binding("w", "whatif", "what-if"),
        # K, not k: on a runtime panel k scrolls (vi keys).
        Binding("K", "claims", "claims"),
        # A run on a small screen folds the controls away so every panel fits; o unfolds them.
        Binding("o", "toggle_options", "options"),
        Binding("ctrl+q", "quit", "quit", show=False, priority=True),
    ]

    def __init__(
        self,
        lab: Lab | None = None,
        screenshot_dir: Path = Path("screenshots"),
        export_dir: Path | None = None,
        workload: str | None = None,
        theme: str | None = None,
        deterministic: bool = False,
        started_at: float | None = None,
        only_workloads: tuple[str, ...] | None = None,
        build_missing: bool | None = None,
        runtimes: tuple[str, ...] | None = None,
        history: bool = False,
    ) -> None:
        super().__init__()
        #: The rungs with a panel: the registry's default selection, or those asked for
        #: (``edgelab --runtimes``; the panels are made for three to five).
        self.rungs = tuple(runtimes) if runtimes else registry.default_names()
        self._lab = lab
        self.screenshot_dir = Path(screenshot_dir)
        self.export_dir = Path(export_dir) if export_dir is not None else DEFAULT_EXPORT_DIR
        self.initial_workload = workload
        self.deterministic = deterministic
        self.only_workloads = only_workloads
        #: Build missing artifacts after first paint (default: on real runtimes, not in tests).
        self.build_missing = (
            (not deterministic and (lab is None or not lab.fake))
            if build_missing is None
            else build_missing
        )
        self.build_stop = threading.Event()
        #: Save each run that ends in the history (``edgelab history``, ``compare last``): on in
        #: ``run_app`` (the lab a person opens, in a terminal or a browser tab) unless
        #: --no-history; off by default, so the demo and tests write none. Never the fake
        #: lab's runs: their figures are not measurements.
        self.history = history and not deterministic
        #: Where the run that ended last was saved (HistorySaved), for its status line.
        self.saved_as: Path | None = None
        self.started_at = PROCESS_STARTED if started_at is None else started_at
        self.first_paint_s: float | None = None
        self.buffer = EventBuffer()
        self.state = LabState(self.rungs)
        self.scenario_worker: Worker[RunResult] | None = None
        self.cancel_event: threading.Event | None = None
        self.stop_verb = ""
        self.settings: Settings | None = None
        #: The workload list has arrived (r before it waits for it instead of failing).
        self.catalog_loaded = False
        #: How the next mixed burst takes turns (Settings.interleave; i switches).
        self.interleave: Interleave = "block"
        self.run_when_loaded = False
        #: The listed workloads (WorkloadsLoaded): a function runs only on the rungs that apply.
        self.workloads: dict[str, Workload] = {}
        self.handled_keys: list[tuple[str, float]] = []
        #: The simulator's and the claims' entry points (None: edgelab.whatif's, the
        #: history's); tests give fixture feeds and hand-made runs.
        self.whatif_api: Any = None
        self.claims_loader: Any = None
        self._drain_timer: Timer | None = None
        self._panel_shape: tuple[tuple[int, ...], ...] = ()
        #: o unfolded the controls during this run: a growing panel does not fold them again.
        self._unfolded_by_key = False
        self.draining = False
        self._cpu_percent = 0.0
        self._process: Any = None
        from edgelab.tui import themes

        for found in themes.THEMES.values():
            self.register_theme(found)
        # Named colours (a verdict's "yellow") as readable as the theme's own (themes.ANSI).
        self.ansi_theme_dark = themes.ANSI_DARK
        self.ansi_theme_light = themes.ANSI_LIGHT
        self.theme = THEMES.get(theme or "dark", theme or "dark")

    @property
    def lab(self) -> Lab:
        """Made on first use: importing the measuring core can wait until after first paint.

        The real lab measures in a process of its own (edgelab.remote): in a thread of this
        process every syscall of a launch handed the GIL to the UI thread for up to 5 ms.
        """
        if self._lab is None:
            from edgelab.remote import RemoteLab

            self._lab = RemoteLab()  # type: ignore[assignment]
        return self._lab  # type: ignore[return-value]

    # -- layout ------------------------------------------------------------------------------------
    def refresh_css(self, animate: bool = True) -> None:
        """Before the first screen there is nothing to restyle: the theme and ANSI colours set in
        __init__ each queue a refresh, and each re-parsed every stylesheet (app.tcss and every
        widget's, ~20-45 ms apiece here) before the first frame, which then parsed them a third
        time. Setting the variables is enough then: the first parse uses them."""
        if not self.screen_stack:
            self.stylesheet.set_variables(self.get_css_variables())
            return
        super().refresh_css(animate=animate)

    def get_default_screen(self) -> Screen[Any]:
        """The breakpoint class is set up front: set by the first resize, it would restyle
        every widget and lay the screen out again before the first frame."""
        wide = self.size.width >= WIDE_COLUMNS
        height = self.size.height
        tall = "-tall" if height >= FOLD_BELOW_ROWS else "-medium" if height >= SHORT_ROWS else "-short"
        classes = ("-wide" if wide else "-narrow") + " " + tall
        return LabScreen(id="_default", classes=classes)

    def compose(self) -> ComposeResult:
        yield HostBar(id="host")
        with VerticalScroll(id="body", can_focus=False):
            yield Controls(self.rungs, id="controls")
            yield Static("", id="run-line")
            # More panels than fit side by side at 80 columns: a grid of three columns.
            with Horizontal(id="panels", classes="-many" if len(self.rungs) > 3 else ""):
                for name in self.rungs:
                    yield RuntimePanel(name)
        yield Static("", id="comparison")
        yield Static("", id="status")
        yield Static(key_bar(self.BINDINGS), id="keys")

    def on_mount(self) -> None:
        self._drain_timer = self.set_interval(1 / DRAIN_HZ, self.drain, pause=True)
        self.refresh_panels(now=None)
        self.show_status("idle · press r to run, ? for help")
        self.call_after_refresh(self._first_painted)
        if self.deterministic:
            self.query_one(HostBar).facts = dict(FIXED_FACTS)
            self.query_one(HostBar).versions = dict(FIXED_VERSIONS)

    def _first_painted(self) -> None:
        """The first-paint figure goes on the top line; everything else waits for the frame
        that shows it (``_start_background``)."""
        self.first_paint_s = time.perf_counter() - self.started_at
        self._show_cost()
        self.call_after_refresh(self._start_background)

    def _start_background(self) -> None:
        """Everything but the first frames starts here: worker threads share the GIL with the
        event loop, so started in on_mount they delayed the first frame, and started with it
        (reading the catalog, importing docker's client) the frame with its figure by ~25 ms."""
        self.load_catalog()
        if not self.deterministic:
            self.load_host_facts()
            self.set_interval(1.0, self._poll_cpu)
        self.query_one(Controls).mount_rows()  # steady's and traffic's inputs
        for panel in self.panels.values():
            panel.mount_blocks()  # what an idle panel does not show (hidden while empty)
        self.set_timer(0.5, self._settle_heap)

    def _show_cost(self) -> None:
        if self.deterministic or self.covered:
            return
        paint = f" · first paint {self.first_paint_s:.2f} s" if self.first_paint_s else ""
        self.query_one(HostBar).cost = f"lab CPU {self._cpu_percent:.1f}%{paint}"

    def _poll_cpu(self) -> None:
        if self._process is None:
            import psutil

            self._process = psutil.Process()
            self._process.cpu_percent(None)
            return
        self._cpu_percent = self._process.cpu_percent(None)
        self._show_cost()

    def show_status(self, text: str) -> None:
        self.query_one("#status", Static).update(text, layout=False)

    @property
    def panels(self) -> dict[str, RuntimePanel]:
        return {name: self.query_one(f"#panel-{slug(name)}", RuntimePanel) for name in self.rungs}

    @property
    def covered(self) -> bool:
        """True while a screen (the help) is over the panels: a change under it would make it
        render the whole dimmed screen below again, so repaints wait until it closes."""
        return len(self.screen_stack) > 1

    @property
    def running(self) -> bool:
        """From the press of r until the worker's end has been shown (not merely reached)."""
        return self.draining

    # -- background facts --------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="catalog", exit_on_error=False)
    def load_catalog(self) -> None:
        """The workload list, then each one's artifact sizes; then, unless told not to, build
        what is missing (two compiles at a time, at low priority) and fill the cells in."""
        from edgelab.workloads import load_workloads

        workloads = load_workloads()
        if self.only_workloads is not None:
            workloads = {n: w for n, w in workloads.items() if n in self.only_workloads}
        self.post_message(WorkloadsLoaded({n: w.description for n, w in workloads.items()}, dict(workloads)))
        missing = []
        # The catalog's view (edgelab.catalog), with a docker client of its own for images.
        client = None if self.deterministic or "image" not in ARTIFACT_KINDS else engine_client()
        try:
            cells: dict[str, dict[str, Size]] = {
                name: {kind: UNKNOWN for kind in ARTIFACT_KINDS} if self.deterministic else artifact_sizes(w, client)
                for name, w in workloads.items()
            }
        finally:
            if client is not None:
                client.close()
        for workload in workloads.values():
            sizes = cells[workload.name]
            kinds = tuple(k for k in ARTIFACT_KINDS if sizes[k] == NOT_BUILT)
            # A function's artifacts are the person's own: nothing of theirs is built here.
            if self.build_missing and kinds and workload.function is None:
                missing.append((workload, kinds))
                sizes.update({kind: BUILDING for kind in kinds})
            self.post_message(SizesFound(workload.name, sizes))
        if not missing or self.build_stop.is_set():
            return
        failures = build_missing(
            missing,
            lambda name, built: self.post_message(SizesFound(name, built)),
            self.build_stop,
        )
        if failures:
            more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
            self.post_message(BuildFailed(f"build failed: {failures[0]}{more}"))

    @work(thread=True, exclusive=True, group="host", exit_on_error=False)
    def load_host_facts(self) -> None:
        from importlib.metadata import PackageNotFoundError, version

        from edgelab.hostinfo import host_facts

        try:
            versions = {"wasmtime": version("wasmtime")}
        except PackageNotFoundError:
            versions = {"wasmtime": "not installed"}
        self.post_message(HostFound(host_facts(), None))
        client = engine_client()
        try:
            versions.update(engine_versions(client))
        finally:
            if client is not None:
                client.close()
        self.post_message(HostFound(None, versions))

    def on_workloads_loaded(self, message: WorkloadsLoaded) -> None:
        wanted = self.initial_workload or ("hello" if "hello" in message.workloads else None)
        self.workloads = message.objects
        self.query_one(Controls).set_workloads(message.workloads, wanted, message.objects)
        self.catalog_loaded = True
        if not message.workloads:
            self.run_when_loaded = False
            self.show_status("no workloads found under modules/: add one to run the lab")
        elif self.initial_workload and self.initial_workload not in message.workloads:
            self.run_when_loaded = False
            self.show_status(f"unknown workload '{self.initial_workload}'; pick one from the list")
        elif self.run_when_loaded:
            self.run_when_loaded = False
            self._start_from_controls()

    def on_sizes_found(self, message: SizesFound) -> None:
        self.query_one(Controls).set_sizes(message.workload, message.sizes)

    def on_build_failed(self, message: BuildFailed) -> None:
        self.report_error(message.line)

    def on_host_found(self, message: HostFound) -> None:
        host = self.query_one(HostBar)
        if message.facts is not None:
            host.facts = message.facts
        if message.versions is not None:
            host.versions = message.versions

    # -- the scenario ------------------------------------------------------------------------------
    def action_run_or_stop(self) -> None:
        self._key_handled("r")
        if self.running:
            self.stop_scenario("stopping")
            return
        if not self.catalog_loaded:
            # Pressed before the list arrived: run as soon as it does (r again: don't).
            self.run_when_loaded = not self.run_when_loaded
            self.show_status(
                "loading workloads… the run starts once they are listed (r again: don't)"
                if self.run_when_loaded
                else "loading workloads… (r runs once they are listed)"
            )
            return
        self._start_from_controls()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter in N (or rate, duration) runs; it never stops a run, r does."""
        event.stop()
        if self.running:
            self.notify("a run is in progress: r stops it", timeout=3)
            return
        self.action_run_or_stop()

    def _start_from_controls(self) -> None:
        try:
            settings = replace(self.query_one(Controls).settings(), interleave=self.interleave)
            settings, left_out = self._applicable(settings)
            settings.validate()
        except EdgelabError as exc:
            self.report_error(str(exc))
            return
        self.start_scenario(settings, left_out)
        if settings.scenario == "ramp":
            from edgelab.lab import unselected_in_resident

            unheld = unselected_in_resident(self.query_one("#count", Input).value, settings.runtimes)
            if unheld:
                names = " and ".join(unheld)
                self.notify(f"N gives {names} instances, but it is toggled off: not held", timeout=6)

    def _applicable(self, settings: Settings) -> tuple[Settings, dict[str, str]]:
        """A function workload runs on the rungs that take its convention and artifacts
        (``registry.applicable_names``); the others are left out, each with its reason, so
        their panels say "not applicable" instead of failing."""
        from edgelab.errors import UsageError

        workload = self.workloads.get(settings.workload)
        if workload is None or workload.function is None:
            return settings, {}
        applicable = set(registry.applicable_names(workload))
        left_out: dict[str, str] = {}
        for name in settings.runtimes:
            if name in applicable:
                continue
            try:
                left_out[name] = registry.not_applicable(registry.spec(name), workload) or "not applicable"
            except UsageError:
                left_out[name] = "not a registered rung"
        kept = tuple(n for n in settings.runtimes if n not in left_out)
        if not kept:
            raise UsageError(
                f"no toggled-on runtime applies to {workload.name}: it runs on {', '.join(sorted(applicable)) or 'none'}"
            )
        return replace(settings, runtimes=kept), left_out

    def start_scenario(self, settings: Settings, left_out: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.cancel_event = threading.Event()
        self.stop_verb = ""
        self.saved_as = None
        self.state.reset(settings.runtimes)
        for name, why in (left_out or {}).items():
            self.state.not_applicable(name, why)
        self.buffer.drain()
        self.query_one("#run-line", Static).update(settings_line(settings))
        self.refresh_panels(now=None)
        verb = "ramping up, then holding until you press r" if settings.scenario == "ramp" else "running"
        self.show_status(f"{settings.scenario} of {settings.workload}: {verb} · ctrl+c cancels")
        self.scenario_worker = self.run_scenario(settings, self.cancel_event)
        self._set_draining(True)
        self._unfolded_by_key = False
        if self.size.height < FOLD_BELOW_ROWS or self.size.width < WIDE_COLUMNS:
            self.fold_controls(True)

    def _fold_if_cut(self) -> None:
        """A run whose panels grew past the screen's foot (five rungs at 160x45) folds the
        controls too, unless o unfolded them during this run."""
        if self.settings is None or self.covered or self._unfolded_by_key:
            return
        if self.query_one("#panels").region.bottom > self.query_one("#body").region.bottom:
            self.fold_controls(True)

    def fold_controls(self, folded: bool) -> None:
        """Fold the controls away (a run: the panels take the screen, and the run line says
        what runs) or unfold them (o). Focus leaves what is hidden: the first panel takes it."""
        controls = self.query_one(Controls)
        if controls.has_class("-folded") == folded:
            return
        controls.set_class(folded, "-folded")
        if folded:
            focused = self.focused
            if focused is not None and controls in focused.ancestors:
                next(iter(self.panels.values())).focus(scroll_visible=False)
            self.query_one("#body", VerticalScroll).scroll_home(animate=False)
        else:
            self.query_one("#workloads").focus()

    def action_toggle_options(self) -> None:
        self._key_handled("o")
        unfold = self.query_one(Controls).has_class("-folded")
        self._unfolded_by_key = unfold
        self.fold_controls(not unfold)

    def stop_scenario(self, verb: str) -> None:
        if self.cancel_event is not None and not self.cancel_event.is_set():
            self.stop_verb = verb
            self.cancel_event.set()
            self.show_status(f"{verb}: tearing down the instances, then reporting…")

    @work(thread=True, exclusive=True, group="scenario", exit_on_error=False)
    def run_scenario(self, settings: Settings, cancel: threading.Event) -> RunResult:
        result = self.lab.run(settings, on_event=self.buffer, cancel=cancel)
        # The lab's word, not the cancel event's: ending a held ramp (r) completes it.
        cancelled = bool(result.metadata.get("cancelled", cancel.is_set()))
        self.buffer(RunDone(result, final_figures(result), cancelled))
        if self.history and not self.lab.fake:
            self.save_in_history(result)
        return result

    def save_in_history(self, result: RunResult) -> None:
        """In the worker's thread, as ``edgelab run`` does after its run: a history that
        cannot be written is a notification, the run's figures are on screen anyway. Posted
        before the worker ends, so the finished line can say where the run went."""
        from edgelab.history import save_run

        try:
            path = save_run(result)
        except (EdgelabError, OSError) as exc:
            self.post_message(HistorySaved(None, str(exc)))
            return
        self.post_message(HistorySaved(path))

    def on_history_saved(self, message: HistorySaved) -> None:
        if message.error is not None:
            self.notify(f"not saved in the history: {message.error}", severity="warning", timeout=8)
            return
        self.saved_as = message.path
        if not self.running:  # the worker's end was shown first: say it on its line now
            self.show_status(self._finished_line())

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Every worker's failure ends up here and on screen, none is swallowed."""
        worker = event.worker
        if event.state == WorkerState.ERROR and worker.error is not None:
            what = "run" if worker.group == "scenario" else worker.group
            self.report_error(f"{what} failed: {error_line(worker.error)}")
        if worker.group != "scenario" or worker is not self.scenario_worker:
            return
        if event.state in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            self._set_draining(False)
            self.drain()
            if event.state == WorkerState.SUCCESS:
                self.show_status(self._finished_line())

    def _finished_line(self) -> str:
        settings = self.settings
        what = f"{settings.scenario} of {settings.workload}" if settings else "run"
        if not self.state.cancelled:
            # r ends a held ramp as planned: a completed run, as its export says.
            ended = "ended" if self.stop_verb else "finished"
        else:
            ended = "stopped early" if self.stop_verb == "stopping" else "cancelled"
        fake = " · fake runtimes: figures are not measurements" if self.lab.fake else ""
        saved = " · saved in the history as last" if self.saved_as is not None else ""
        return f"{what} {ended}{saved} · e exports, s saves a screenshot{fake}"

    def report_error(self, line: str) -> None:
        self.show_status(f"⚠ {line}")
        self.notify(line, severity="error", timeout=8)

    def _set_draining(self, on: bool) -> None:
        """The drain timer runs only while a scenario does, so an idle lab costs nothing."""
        self.draining = on
        if self._drain_timer is None:
            return
        if on:
            self._drain_timer.resume()
        else:
            self._drain_timer.pause()

    def drain(self) -> None:
        """Fold whatever the worker produced since the last tick into the panels."""
        events = self.buffer.drain()
        if events:
            was_held = self.state.held
            self.state.apply(events)
            self._learn_versions()
            if self.state.held and not was_held and self.settings is not None:
                held = sum(live.running for live in self.state.runtimes.values())
                self.show_status(
                    f"ramp of {self.settings.workload}: holding {held:,} instances"
                    " · r ends it, e exports it, ctrl+c cancels"
                )
        if self.covered:
            return
        if not self.screen.query("#panels"):
            # Shutting down (the widgets gone) while the run's worker ends: nothing to paint.
            return
        self.refresh_panels(now=time.monotonic() if self.running else None)

    def _learn_versions(self) -> None:
        """Versions the runtimes reported (RuntimeDescribed) join the top line's, once each;
        the deterministic lab keeps its fixed ones."""
        found = self.state.take_versions()
        if not found or self.deterministic:
            return
        host = self.query_one(HostBar)
        host.versions = {**(host.versions or {}), **found}

    def refresh_panels(self, now: float | None) -> None:
        scenario = self.settings.scenario if self.settings else "burst"
        for name, panel in self.panels.items():
            panel.view = panel_view(self.state.runtimes[name], now, scenario)
        # Panels' text blocks are as tall as their wrapped lines: lay them out again when a
        # block's text changed length (a new warning, a longer figure), not on every tick.
        shape = tuple(_text_shape(panel.view) for panel in self.panels.values())
        if shape != self._panel_shape:
            self._panel_shape = shape
            # Each text measures its own height (Textual caches it per widget until a
            # refresh with layout), then the row of panels is laid out again.
            for panel in self.panels.values():
                for widget in panel.query(Static):
                    widget.refresh(layout=True)
            self.call_after_refresh(self._fold_if_cut)
        comparison = comparison_text(
            live for live in self.state.runtimes.values() if live.enabled
        )
        strip = self.query_one("#comparison", Static)
        if str(strip.content) != comparison:
            # Its height follows its lines: a longer sentence is never cut.
            strip.update(comparison, layout=True)

    # -- other keys ---------------------------------------------------------------------------------
    def action_cancel(self) -> None:
        self._key_handled("ctrl+c")
        if self.running:
            self.stop_scenario("cancelled")
        else:
            self.notify("nothing is running (q quits)", timeout=3)

    def action_clear(self) -> None:
        self._key_handled("c")
        if self.running:
            self.notify("stop the run first (r)", timeout=3)
            return
        self.state.reset(self.query_one(Controls).runtimes())
        self.settings = None
        self.query_one("#run-line", Static).update("")
        self.refresh_panels(now=None)
        self.show_status("cleared · press r to run")

    def action_save_svg(self) -> None:
        """The screen as SVG and PNG of one frame (edgelab.tui.pictures): the SVG written here
        as before, the PNG drawn in a thread so keys stay answered while Pillow works."""
        from edgelab.tui.pictures import capture, picture_stem, write_atomically

        self._key_handled("s")
        frame = capture(self)
        svg = self.screenshot_dir / f"{picture_stem(self.title)}.svg"
        try:
            self.screenshot_dir.mkdir(parents=True, exist_ok=True)
            write_atomically(svg, frame.svg.encode("utf-8"))
        except OSError as exc:
            self.report_error(f"cannot save a screenshot in {self.screenshot_dir}: {exc.strerror}")
            return
        self.save_png(frame, svg)

    @work(thread=True, group="pictures", exit_on_error=False)
    def save_png(self, frame: Any, svg: Path) -> None:
        from edgelab.tui.pictures import render_png, write_atomically

        png = svg.with_suffix(".png")
        try:
            write_atomically(png, render_png(frame.lines, frame.width))
        except ImportError:  # Pillow is a dependency; a trimmed install still gets its SVG
            line = f"screenshot saved: {svg} (no PNG: Pillow is not installed)"
            self.call_from_thread(self.notify, line, timeout=5)
            return
        except OSError as exc:
            self.call_from_thread(self.report_error, f"screenshot saved: {svg}, but not its PNG: {exc.strerror}")
            return
        self.call_from_thread(self.notify, f"screenshot saved: {svg} and {png.name}", timeout=5)

    def action_export(self) -> None:
        """The last result, or a held ramp's figures while it holds (the lab's RampHeld)."""
        self._key_handled("e")
        if self.state.result is None:
            if self.running:
                self.notify("nothing to export yet: the run is still under way", timeout=4)
            else:
                self.notify("nothing to export yet: run a scenario first (r)", timeout=4)
            return
        # Still running with a result: a held ramp, its figures as they stand (not cancelled).
        self.export_result(self.state.result, held=self.running)

    @work(thread=True, exclusive=True, group="export", exit_on_error=False)
    def export_result(self, result: RunResult, held: bool = False) -> None:
        from edgelab.export import write_exports

        settings = result.metadata.get("settings", {})
        stamp = str(result.metadata.get("started", "run"))[:19].replace(":", "-")
        suffix = "-held" if held else ""
        try:
            # The folder itself, never its parents: a mistyped --exports gets a line, not a tree.
            self.export_dir.mkdir(exist_ok=True)
        except OSError as exc:
            raise EdgelabError(f"cannot export into {self.export_dir}: {exc.strerror}") from None
        stem = self.export_dir / f"edgelab-{settings.get('workload', 'run')}-{settings.get('scenario', '')}-{stamp}{suffix}"
        paths = write_exports(
            result,
            json_path=stem.with_suffix(".json"),
            csv_path=stem.with_suffix(".csv"),
            markdown_path=stem.with_suffix(".md"),
        )
        self.call_from_thread(
            self.notify, "exported: " + ", ".join(str(p) for p in paths), timeout=8
        )

    def action_focus_panel(self, step: int) -> None:
        """] and [ (and right/left on a panel): the next or previous runtime panel, scrolled
        into view; from the controls, ] goes to the first panel and [ to the last."""
        panels = list(self.panels.values())
        focused = self.focused
        if focused in panels:
            target = panels[(panels.index(focused) + step) % len(panels)]  # type: ignore[arg-type]
        else:
            target = panels[0] if step > 0 else panels[-1]
        target.focus(scroll_visible=False)
        self.query_one("#body", VerticalScroll).scroll_to_widget(target, top=True, animate=False)

    def action_scroll_body(self, how: str) -> None:
        """Page keys scroll the lab's body wherever focus is (the list keeps its own)."""
        body = self.query_one("#body", VerticalScroll)
        {
            "page_down": body.scroll_page_down,
            "page_up": body.scroll_page_up,
            "down": body.scroll_down,
            "up": body.scroll_up,
        }[how](animate=False)

    def action_toggle_interleave(self) -> None:
        self._key_handled("i")
        self.interleave = "launch" if self.interleave == "block" else "block"
        how = (
            "one launch per runtime in turn (each in the wake of another runtime's work)"
            if self.interleave == "launch"
            else "runtimes take turns in short blocks of launches"
        )
        self.notify(f"next mixed bursts interleave: {self.interleave}, {how}", timeout=5)

    def action_toggle_theme(self) -> None:
        self._key_handled("t")
        self.theme = THEMES["light"] if self.theme == THEMES["dark"] else THEMES["dark"]

    def action_help(self) -> None:
        self._key_handled("?")
        self._install_help()
        self.push_screen("help", callback=lambda _: self.drain())

    def action_chart(self) -> None:
        """g: every selected runtime on one log-scale axis, histograms and memory curves."""
        self._key_handled("g")
        from edgelab.tui.compare import ChartScreen

        fake = bool(self._lab is not None and self._lab.fake)
        self.push_screen(ChartScreen(self.state, fake=fake), callback=lambda _: self.drain())

    def action_present(self) -> None:
        """p: large p50s and one big ratio, for the back of the room."""
        self._key_handled("p")
        from edgelab.tui.compare import PresentScreen

        fake = bool(self._lab is not None and self._lab.fake)
        self.push_screen(PresentScreen(self.state, fake=fake), callback=lambda _: self.drain())

    def action_ladder(self) -> None:
        """L: every selected rung on one log-scale axis, drawn from this app's state."""
        self._key_handled("L")
        from edgelab.tui.ladder import LadderScreen

        self.push_screen(LadderScreen(self.state), callback=lambda _: self.drain())

    def action_whatif(self) -> None:
        """w: the simulator over hours of traffic, fed by the newest saved run; every figure
        on it is simulated (pure computation in a thread: nothing is launched from here)."""
        self._key_handled("w")
        from edgelab.tui.whatif import WhatIfScreen

        if not self._overlay_for(WhatIfScreen):
            return
        # The lab's own last run feeds it, if it measured one this session (fakes never do).
        measured = self._lab is not None and not self._lab.fake and not self.running
        session = self.state.result if measured else None
        self.push_screen(WhatIfScreen(self.whatif_api, session_result=session), callback=lambda _: self.drain())

    def action_claims(self) -> None:
        """K: the published claims beside the history's newest runs."""
        self._key_handled("K")
        from edgelab.tui.claims import ClaimsScreen

        if not self._overlay_for(ClaimsScreen):
            return
        self.push_screen(ClaimsScreen(self.claims_loader), callback=lambda _: self.drain())

    def _overlay_for(self, kind: type) -> bool:
        """Whether to open a ``kind`` screen: not over one already open (w on the what-if
        table); over another of these views, that one closes first, so they never stack."""
        from edgelab.tui.claims import ClaimsScreen
        from edgelab.tui.whatif import WhatIfScreen

        if isinstance(self.screen, kind):
            return False
        if isinstance(self.screen, (WhatIfScreen, ClaimsScreen)):
            self.pop_screen()
        return True

    def _install_help(self) -> None:
        """Built once (after first paint), so ? only has to show it."""
        if not self.is_screen_installed("help"):
            from edgelab.tui.help import HelpScreen

            self.install_screen(HelpScreen(), "help")

    def _settle_heap(self) -> None:
        """Move everything built so far (Textual, Rich, the widget tree: most of the heap) out
        of the collector's reach. A full collection walked all of it and paused the lab for
        up to 150 ms in the middle of a busy run; now it walks what the run creates."""
        self._install_help()
        gc.collect()
        gc.freeze()
        # Frames make short-lived garbage by the thousand, nearly all of it freed by reference
        # counting: collect young objects less often, and everything only rarely.
        gc.set_threshold(*GC_THRESHOLDS)
        gc.enable()  # the CLI turns it off until here (edgelab.cli._run_tui)

    async def action_quit(self) -> None:
        self._key_handled("q")
        await self.shutdown()
        self.exit(0)

    async def shutdown(self) -> None:
        """Cancel the scenario, wait (bounded) for its teardown, then sweep every runtime."""
        self.build_stop.set()
        worker = self.scenario_worker
        if worker is not None and worker.is_running:
            self.stop_scenario("quitting")
            try:
                await asyncio.wait_for(worker.wait(), QUIT_WAIT_S)
            except Exception:  # noqa: BLE001 - failures were reported; close() sweeps regardless
                pass
        await asyncio.to_thread(self.lab.close)

    def on_unmount(self) -> None:
        """However the app ends (q, an error, a test leaving run_test), a run still going is
        cancelled and builds stop: a held ramp's thread would otherwise wait for ever, and
        with it the interpreter's exit."""
        self.build_stop.set()
        if self.cancel_event is not None:
            self.cancel_event.set()

    def _key_handled(self, key: str) -> None:
        """For the latency benchmark: when each key's action ran (perf_counter)."""
        if len(self.handled_keys) < 10_000:
            self.handled_keys.append((key, time.perf_counter()))


def run_app(
    workload: str | None = None,
    screenshot_dir: Path = Path("screenshots"),
    theme: str | None = None,
    started_at: float | None = None,
    export_dir: Path | None = None,
    runtimes: tuple[str, ...] | None = None,
    history: bool = True,
) -> int:
    """Open the lab; whatever happens, every container and process it started is removed."""
    app = EdgelabApp(
        workload=workload,
        screenshot_dir=screenshot_dir,
        export_dir=export_dir,
        theme=theme,
        started_at=started_at,
        runtimes=runtimes,
        history=history,
    )
    try:
        code = app.run()
    finally:
        app.lab.close()
    return int(code or 0)
