"""What to run: the workload list with artifact sizes, runtime toggles, scenario and its inputs."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, cast

from textual import events
from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import Checkbox, DataTable, Input, Label, RadioButton, RadioSet

from edgelab import settings as limits
from edgelab.errors import UsageError
from edgelab.runtimes import registry
from edgelab.scenarios import scenario_names
from edgelab.stats import format_bytes
from edgelab.tui.artifacts import ARTIFACT_KINDS, PENDING, Size

if TYPE_CHECKING:
    from edgelab.lab import Settings
    from edgelab.workloads import Workload

#: The scenarios' one table (``edgelab.scenarios``: light, it imports no runtime), so a new
#: scenario gets its radio button with no edit here.
SCENARIOS = scenario_names()

DEFAULT_COUNT = 20
DEFAULT_RATE_PER_S = 10.0
DEFAULT_DURATION_S = 5.0
DESCRIPTION_CHARS = 46



def _spelled(name: str) -> str:
    """A regex for any prefix of ``name`` that starts with its first letter: w, wa, was, wasm."""
    rest = ""
    for letter in reversed(name[1:]):
        rest = f"(?:{re.escape(letter)}{rest})?"
    return re.escape(name[0]) + rest


def slug(name: str) -> str:
    """A rung's name fit for a CSS id (``wasm:jit`` -> ``wasm-jit``): ``RuntimeSpec.slug``."""
    try:
        return registry.spec(name).slug
    except UsageError:  # not registered (a test's own name): the same rule
        return name.replace(":", "-")


def resident_pattern(rungs: tuple[str, ...]) -> str:
    """What a ramp's N may hold while typed, for these rungs (see RESIDENT_PATTERN)."""
    runtime = "(?i:" + "|".join(_spelled(name) for name in rungs) + ")"
    return rf" *(?:\d+ *|(?:{runtime} *= *\d+ *, *)*(?:{runtime} *(?:= *\d*)?)?) *"


#: What the N field may hold while it is typed. A burst takes a count; a ramp takes a count or
#: one per runtime (c=20,s=50,w=2000, or the names spelled out: the core's grammar), and the
#: field accepts any prefix of that. Any other key (r after a count or a letter, e, ?, a
#: letter where no runtime can stand) is not typed but goes on to the lab's keys: r runs.
COUNT_PATTERN = r" *\d* *"
RESIDENT_PATTERN = resident_pattern(registry.default_names())
#: Rate and duration: a positive decimal number.
DECIMAL_PATTERN = r"\d*\.?\d*"
#: A keep-alive: seconds with or without a unit, as ``--keepalive`` takes them (2, 2s, 500ms).
SECONDS_PATTERN = r" *\d*\.?\d* *(?:m|ms|s|h|mi|min)? *"
#: A free-text field (a path, a request): it takes every printable key; Enter runs.
ANY_TEXT = None
#: Written beside the N field, per scenario (the format is not only in a tooltip).
COUNT_HINTS = {
    "burst": "cold starts per runtime",
    "ramp": "N or c=20,s=50,w=2000",
}


def pattern_restrict(patterns: tuple[str, ...]) -> str:
    """Any prefix of one of traffic's arrival patterns: after a whole name, a letter no pattern
    continues with (r) goes on to the lab's keys."""
    return " *(?:" + "|".join(_spelled(name) for name in patterns) + ")? *"


def traffic_patterns() -> tuple[str, ...]:
    from edgelab.traffic import PATTERNS

    return PATTERNS


def uses_rate(reads: tuple[str, ...]) -> bool:
    return "rate_per_s" in reads or "duration_s" in reads


class FieldInput(Input):
    """An Input that keeps only the characters its value can take.

    Textual's Input swallows every printable key; here a key it cannot use is neither typed
    nor stopped, so it bubbles to the app's bindings. Letters the field does use (a runtime's
    name in a ramp's N, where one can stand) are typed: c, s, e, t there type, not clear,
    screenshot, export or switch themes; after a count or a comma they are the lab's keys.
    """

    def update_node_styles(self, animate: bool = True) -> None:
        # Made with compact=True and a value, an Input changes its classes twice before it is
        # mounted (-textual-compact, -valid), each a restyle of a widget not yet in the DOM;
        # mounting styles it with whatever classes it has by then.
        if self.is_attached:
            super().update_node_styles(animate=animate)

    def would_accept(self, character: str) -> bool:
        selection = self.selection
        start, end = sorted((selection.start, selection.end))
        value = self.value
        if selection.is_empty:
            start = end = self.cursor_position
        new_value = value[:start] + character + value[end:]
        return self.restrict is None or re.fullmatch(self.restrict, new_value) is not None

    def check_consume_key(self, key: str, character: str | None) -> bool:
        return character is not None and character.isprintable() and self.would_accept(character)

    async def _on_key(self, event: events.Key) -> None:
        if event.is_printable and event.character and not self.would_accept(event.character):
            # Input's own handler would stop it (and ring the bell): skip it, let it bubble.
            event.prevent_default()


#: The class Textual gives a toggle that is on as it is mounted: that change restyles it
#: (~0.5 ms apiece before the first frame); given up front it changes nothing (Textual still
#: sets and clears it with the value).
_ON = "-on"


def size_cell(size: Size) -> str:
    if size is None:
        return PENDING
    if isinstance(size, str):
        return size
    return format_bytes(size)


class Controls(Horizontal):
    """The inputs of the next run; ``settings()`` turns them into the lab's Settings.

    ``rungs``: the runtimes with a toggle (and a panel), the registry's default selection
    unless the lab was opened with others."""

    def __init__(self, rungs: tuple[str, ...] | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.rungs = tuple(rungs) if rungs else registry.default_names()
        self.resident_restrict = resident_pattern(self.rungs)
        #: The listed workloads themselves (``set_workloads``): each one's request limit.
        self.workload_objects: dict[str, Workload] = {}
        #: Each listed workload's whole description (the list shows it shortened at a word).
        self.descriptions: dict[str, str] = {}
        self._description_limit = 0
        self._rows_mounted = False

    def compose(self) -> ComposeResult:
        table: DataTable[str] = DataTable(id="workloads", cursor_type="row", zebra_stripes=True)
        table.border_title = "workload (sizes: wasm module · native binary · image)"
        yield table
        with Vertical(id="options"):
            if len(self.rungs) <= 3:
                with Horizontal(classes="option-row"):
                    yield Label("runtimes", classes="option-label")
                    for name in self.rungs:
                        yield Checkbox(name, True, id=f"use-{slug(name)}", compact=True, classes=_ON)
            else:  # more rungs than one line holds: two columns of toggles
                with Horizontal(classes="option-row -many"):
                    yield Label("runtimes", classes="option-label")
                    with Grid(id="toggles"):
                        for name in self.rungs:
                            yield Checkbox(name, True, id=f"use-{slug(name)}", compact=True, classes=_ON)
            with Horizontal(classes="option-row"):
                yield Label("scenario", classes="option-label")
                with RadioSet(id="scenario", compact=True):
                    for scenario in scenario_names():
                        on = scenario == "burst"
                        yield RadioButton(scenario, value=on, id=f"scenario-{scenario}", classes=_ON if on else "")
            with Horizontal(classes="option-row"):
                yield Label("N", classes="option-label", id="count-label")
                yield FieldInput(
                    str(DEFAULT_COUNT), restrict=COUNT_PATTERN, id="count", compact=True, classes="for-count"
                )
                yield Label(COUNT_HINTS["burst"], id="count-hint", classes="for-count")
            # Here: steady's and traffic's inputs, hidden until one is chosen (mount_rows).
            # The request, for any workload: typed, or a file; both empty: the workload's own.
            with Horizontal(classes="option-row"):
                yield Label("request", classes="option-label")
                yield FieldInput("", restrict=ANY_TEXT, id="request", compact=True, placeholder="workload's default")
                yield Label("or file", classes="option-label")
                yield FieldInput("", restrict=ANY_TEXT, id="request-file", compact=True, placeholder="path")

    def mount_rows(self) -> None:
        """The inputs only steady and traffic show, each in its place: hidden until one of
        them is chosen, they are mounted after the first frame (14 of the lab's widgets, each
        styled, composed and mounted before it), or as soon as something reads them.
        Registered at once: a query right after this finds them."""
        if self._rows_mounted or not self.is_attached:
            return
        self._rows_mounted = True
        hint = self.query_one("#count-hint", Label)
        assert hint.parent is not None
        count_row = cast(Widget, hint.parent)
        count_row.mount(
            Label("rate/s", classes="option-label for-steady"),
            FieldInput(
                f"{DEFAULT_RATE_PER_S:g}", restrict=DECIMAL_PATTERN, id="rate", compact=True, classes="for-steady"
            ),
            Label("for s", classes="option-label for-steady"),
            FieldInput(
                f"{DEFAULT_DURATION_S:g}", restrict=DECIMAL_PATTERN, id="duration", compact=True, classes="for-steady"
            ),
            after=hint,
        )
        self.query_one("#options", Vertical).mount(
            # Traffic: how requests arrive, how long an idle instance is kept, how many stay ready.
            Horizontal(
                Label("pattern", classes="option-label"),
                FieldInput("poisson", restrict=pattern_restrict(traffic_patterns()), id="pattern", compact=True),
                Label("keep-alive", classes="option-label"),
                FieldInput("2s", restrict=SECONDS_PATTERN, id="keepalive", compact=True),
                Label("pre-warm", classes="option-label"),
                FieldInput("0", restrict=COUNT_PATTERN, id="prewarm", compact=True),
                classes="option-row for-traffic",
            ),
            Horizontal(
                Label("trace file", classes="option-label"),
                FieldInput("", restrict=ANY_TEXT, id="trace-file", compact=True, placeholder="arrival timestamps, one a line"),
                classes="option-row for-trace",
            ),
            after=count_row,
        )

    def on_mount(self) -> None:
        table = self.query_one("#workloads", DataTable)
        table.add_column("workload", key="name")
        for kind in ARTIFACT_KINDS:
            table.add_column(kind, key=kind)
        table.add_column("description", key="description")
        self._explain_count()

    # -- filling in ----------------------------------------------------------------------------
    def set_workloads(
        self,
        workloads: Mapping[str, str],
        selected: str | None,
        objects: Mapping[str, Workload] | None = None,
    ) -> None:
        """``objects``: the workloads themselves, so the request field knows each one's limit
        and a function (a person's own artifacts) is told apart in the list."""
        self.workload_objects = dict(objects or {})
        table = self.query_one("#workloads", DataTable)
        table.clear()
        self.descriptions = {}
        for name, description in workloads.items():
            found = self.workload_objects.get(name)
            kind = "function · " if found is not None and found.function is not None else ""
            self.descriptions[name] = kind + description
            table.add_row(name, *(PENDING for _ in ARTIFACT_KINDS), _short(kind + description), key=name)
        if selected is not None and selected in workloads:
            table.move_cursor(row=list(workloads).index(selected))
        self.call_after_refresh(self.fit_descriptions)

    def on_resize(self) -> None:
        self.call_after_refresh(self.fit_descriptions)

    def fit_descriptions(self) -> None:
        """Each description as long as the list's width leaves it, shortened at a word: the
        table cuts a cell at its edge wherever that falls ('fib(n) for a' at 120 columns)."""
        table = self.query_one("#workloads", DataTable)
        if not self.descriptions or not table.columns or table.size.width == 0:
            return
        others = sum(
            column.get_render_width(table) for key, column in table.columns.items() if key.value != "description"
        )
        # The border, the cell's padding, a scrollbar's two columns and one to spare (a size
        # filled in later widens its column by a character or two).
        limit = max(12, table.size.width - others - 2 * table.cell_padding - 8)
        if limit == self._description_limit:
            return
        self._description_limit = limit
        for name, description in self.descriptions.items():
            try:
                table.update_cell(name, "description", _short(description, limit), update_width=True)
            except Exception:  # noqa: BLE001 - the row went away (list reloaded); nothing to show
                return

    def set_sizes(self, workload: str, sizes: Mapping[str, Size]) -> None:
        table = self.query_one("#workloads", DataTable)
        for kind, size in sizes.items():
            try:
                table.update_cell(workload, kind, size_cell(size), update_width=True)
            except Exception:  # noqa: BLE001 - the row went away (list reloaded); nothing to show
                return

    def set_scenario(self, scenario: str) -> None:
        self.query_one(f"#scenario-{scenario}", RadioButton).value = True

    def set_runtime(self, name: str, enabled: bool) -> None:
        self.query_one(f"#use-{slug(name)}", Checkbox).value = enabled

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        self._explain_count()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "pattern":
            self._explain_count()

    def _explain_count(self) -> None:
        """Only the inputs the scenario uses are shown: N (burst, ramp) or rate and time."""
        scenario = self.scenario()
        ramp = scenario == "ramp"
        self.query_one("#count-label", Label).update("resident N" if ramp else "N")
        count = self.query_one("#count", Input)
        count.restrict = self.resident_restrict if ramp else COUNT_PATTERN
        count.tooltip = (
            "instances to hold per runtime: one number, or per runtime by first letter,"
            " e.g. c=20,s=50,w=2000 (container, subprocess, wasm)"
            if ramp
            else "cold starts per runtime"
        )
        self.query_one("#count-hint", Label).update(COUNT_HINTS.get(scenario, ""))
        # What the scenario reads (Scenario.reads) decides which inputs are shown.
        reads = self.reads()
        if uses_rate(reads) or "pattern" in reads or "keepalive_s" in reads:
            self.mount_rows()
        self.set_class(uses_rate(reads), "-steady")
        self.set_class("pattern" in reads or "keepalive_s" in reads, "-traffic")
        trace = "trace_file" in reads and self.query_one("#pattern", Input).value.strip() == "trace"
        self.set_class(trace, "-trace")

    def reads(self) -> tuple[str, ...]:
        from edgelab.scenarios import get_scenario

        try:
            return get_scenario(self.scenario()).reads
        except UsageError:
            return ()

    # -- reading ------------------------------------------------------------------------------
    def workload(self) -> str | None:
        table = self.query_one("#workloads", DataTable)
        if table.row_count == 0:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return row_key.value

    def scenario(self) -> str:
        pressed = self.query_one("#scenario", RadioSet).pressed_button
        return str(pressed.label) if pressed is not None else "burst"

    def runtimes(self) -> tuple[str, ...]:
        return tuple(n for n in self.rungs if self.query_one(f"#use-{slug(n)}", Checkbox).value)

    def settings(self) -> Settings:
        """The next run's settings; bad input raises UsageError with the line to show."""
        from edgelab.lab import Settings

        self.mount_rows()
        workload = self.workload()
        if workload is None:
            raise UsageError("no workload to run: add one under modules/ (see README)")
        runtimes = self.runtimes()
        if not runtimes:
            raise UsageError("every runtime is toggled off: turn at least one on")
        scenario = self.scenario()
        request = self.request(workload)
        count_text = self.query_one("#count", Input).value
        if scenario == "ramp":
            return Settings(
                workload=workload,
                runtimes=runtimes,
                scenario="ramp",
                resident=resident_counts(count_text, runtimes),
                hold=True,
                request=request,
            )
        reads = self.reads()
        if uses_rate(reads):
            rated = Settings(
                workload=workload,
                runtimes=runtimes,
                scenario=scenario,
                rate_per_s=_number(self, "rate", float, "rate/s"),
                duration_s=_number(self, "duration", float, "for s"),
                request=request,
            )
            return self._traffic(rated) if "pattern" in reads else rated
        count = int(_positive(count_text, int, "N"))
        # burst, and any scenario registered later: it reads N as a count
        return Settings(workload=workload, runtimes=runtimes, scenario=scenario, count=count, request=request)  # type: ignore[arg-type]

    def _traffic(self, settings: Settings) -> Settings:
        """Traffic's own inputs, each read as ``edgelab run`` reads its flag."""
        from dataclasses import replace

        pattern = self.query_one("#pattern", Input).value.strip()
        patterns = traffic_patterns()
        if pattern not in patterns:
            raise UsageError(f"pattern must be one of {', '.join(patterns)}, not '{pattern}'")
        keepalive = limits.parse_seconds(self.query_one("#keepalive", Input).value, "keep-alive", limits.KEEPALIVE_S)
        prewarm = int(limits.parse_number(self.query_one("#prewarm", Input).value, "pre-warm", limits.PREWARM))
        trace_file = None
        if pattern == "trace":
            trace_file = self.query_one("#trace-file", Input).value.strip()
            if not trace_file:
                raise UsageError("pattern trace needs a trace file: a file of arrival timestamps")
        return replace(settings, pattern=pattern, keepalive_s=keepalive, prewarm=prewarm, trace_file=trace_file)

    def request(self, workload: str) -> bytes | None:
        """The request typed or the file named (not both), within the workload's
        ``max_request_bytes``; None (both empty): the workload's default request."""
        text = self.query_one("#request", Input).value
        path = self.query_one("#request-file", Input).value.strip()
        if text and path:
            raise UsageError("request: type one or name a file, not both")
        found = self.workload_objects.get(workload)
        limit = found.max_request_bytes if found is not None else limits.MAX_REQUEST_BYTES.hi
        if path:
            return read_request_file(path, int(limit), workload)
        if not text:
            return None
        data = text.encode()
        if len(data) > limit:
            raise UsageError(f"request of {len(data)} bytes exceeds {workload}'s limit of {int(limit)} bytes")
        return data


def read_request_file(path: str, limit: int, workload: str) -> bytes:
    """A request file read as ``--request-file`` reads it: up to the limit and no further."""
    import os

    try:
        with open(os.path.expanduser(path), "rb") as stream:
            return limits.read_request(stream, limit, workload, path)
    except IsADirectoryError:
        raise UsageError(f"request file {path} is a folder, not a file") from None
    except OSError as exc:
        raise UsageError(f"cannot read request file {path}: {exc.strerror or exc}") from None


def resident_counts(text: str, runtimes: tuple[str, ...]) -> dict[str, int]:
    """The core's parser, the one ``edgelab run --resident`` uses, so the same text means the
    same counts in both: '50' for each runtime, or 'c=20,s=50,w=2000' (0 for a runtime the
    text leaves out; one toggled off is left out of the answer)."""
    from edgelab.lab import parse_resident

    counts = parse_resident(text, runtimes, label="resident N")
    if not any(counts.values()):
        raise UsageError("resident N: give at least one runtime instances to hold (e.g. 20)")
    return counts


def _short(text: str, limit: int = DESCRIPTION_CHARS) -> str:
    """``text`` in at most ``limit`` characters, cut after a whole word (never inside one)."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if text[limit - 1] != " " and " " in cut:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ·,;:(") + "…"


def _number(controls: Controls, input_id: str, kind: type[int] | type[float], label: str) -> float:
    return _positive(controls.query_one(f"#{input_id}", Input).value, kind, label)


def _positive(text: str, kind: type[int] | type[float], label: str) -> float:
    text = text.strip()
    try:
        value = kind(text)
    except ValueError:
        raise UsageError(f"{label} must be a positive number, not '{text}'") from None
    if value <= 0:
        raise UsageError(f"{label} must be a positive number, not '{text}'")
    return value
