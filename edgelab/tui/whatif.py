"""The what-if screen (w): the simulator over hours of traffic, fed by a measured run.

Every figure on it is simulated and says so (the title, the table's caption, each column), with
the run it was fed by. It recomputes as inputs change without blocking the UI: typing is
debounced, ``simulate`` runs in an exclusive thread worker, and a result older than the inputs
on screen is dropped. The simulator is pure computation (``edgelab.whatif``): nothing here
launches a runtime.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Input, Label, Select, Static

from edgelab import settings as limits
from edgelab.errors import EdgelabError, UsageError
from edgelab.tui.simworker import SimulatorProcess

#: Typing pauses this long before the simulation reruns (a keystroke alone does not).
DEBOUNCE_S = 0.25
SIMULATED = "simulated"
NO_FEED = (
    "no measured run to feed the simulator: run a traffic scenario first "
    "(r in the lab, or edgelab run --scenario traffic -w hello), then press w"
)
#: (field of WhatIfInputs, label, input width): the text inputs, in screen order.
NUMBER_FIELDS: tuple[tuple[str, str, int], ...] = (
    ("rate_per_s", "rate/s", 8),
    ("hours", "hours", 6),
    ("keepalive_s", "keep-alive", 7),
    ("prewarm", "pre-warm", 6),
    ("concurrency", "concurrency", 5),
    ("host_memory_gib", "host GiB", 6),
    ("inflation", "inflation", 5),
)
#: A trace needs its arrival times (``edgelab whatif --trace FILE``): not offered here.
PATTERN_CHOICES = ("poisson", "onoff")


def _number(text: str, what: str, whole: bool = False) -> float:
    """A field's text as a number; its range is the simulator's (``WhatIfInputs.validate``)."""
    try:
        value = int(text.strip()) if whole else float(text)
    except ValueError:
        raise UsageError(f"{what} must be {'a whole number' if whole else 'a number'}, not {text.strip()!r}") from None
    if not math.isfinite(value):
        raise UsageError(f"{what} must be a finite number, not {text.strip()!r}")
    return value
#: Every figure column says "sim": none of them is a measurement.
COLUMNS = (
    "runtime",
    "placement",
    "p50 sim",
    "p99 sim",
    "cold% sim",
    "inst sim",
    "peak sim",
    "GiB·h sim",
    "inst/host sim",
    "hosts sim",
)


@dataclass(frozen=True)
class WhatIfApi:
    """The simulator's entry points (``edgelab.whatif``), imported on first use; tests give
    their own (a slow ``simulate``, a fixture feed) without touching the screen."""

    inputs_type: Callable[..., Any]
    simulate: Callable[[Any, Any], Any]
    load_feed: Callable[[], Any]
    presets: Callable[[], Mapping[str, Any]]
    places: Callable[[], Mapping[str, Any]]
    #: Run ``simulate`` in a process of its own (``edgelab.tui.simworker``): it must then be
    #: a module-level function, and the feed picklable.
    own_process: bool = False



def default_api(session_result: Any = None) -> WhatIfApi:
    """The simulator's own entry points. The feed: ``session_result`` (the lab's own last run
    in this session, a measured ``RunResult``) if given, else the newest saved run."""
    from edgelab.whatif.engine import simulate
    from edgelab.whatif.feed import load_feed
    from edgelab.whatif.model import WhatIfInputs
    from edgelab.whatif.placement import places
    from edgelab.whatif.presets import presets

    def feed() -> Any:
        if session_result is None:
            return load_feed(ref="last")
        import json

        from edgelab.export import to_json
        from edgelab.whatif.feed import feed_from_export

        # Feed.fed_by adds the workload and the start time to this.
        scenario = session_result.metadata.get("settings", {}).get("scenario", "")
        return feed_from_export(json.loads(to_json(session_result)), f"this session's {scenario} run (not saved)")

    return WhatIfApi(WhatIfInputs, simulate, feed, presets, places, own_process=True)


class FeedLoaded(Message):
    def __init__(self, feed: Any, presets: Mapping[str, Any], places: Mapping[str, Any], error: str | None) -> None:
        super().__init__()
        self.feed = feed
        self.presets = presets
        self.places = places
        self.error = error


class Simulated(Message):
    """One simulation's outcome (``result``) or its one line (``error``), for inputs number
    ``generation``: an older generation than the screen's is stale and dropped."""

    def __init__(self, generation: int, result: Any, error: str | None, elapsed_s: float) -> None:
        super().__init__()
        self.generation = generation
        self.result = result
        self.error = error
        self.elapsed_s = elapsed_s


def _ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,.1f} ms" if value >= 10 else f"{value:,.2f} ms"


def _count(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def outcome_row(outcome: Any) -> tuple[str, ...]:
    """One row of the table, each figure as the simulator gave it (none is measured)."""
    cold = outcome.cold_fraction
    return (
        str(outcome.runtime),
        str(outcome.placement),
        _ms(outcome.p50_ms),
        _ms(outcome.p99_ms),
        "–" if cold is None else f"{cold:.1%}",
        _count(outcome.mean_instances),
        _count(outcome.peak_instances, 0),
        _count(outcome.memory_gib_hours, 3),
        _count(outcome.instances_per_host, 0),
        _count(outcome.hosts_needed, 0),
    )


class WhatIfScreen(Screen[None]):
    """Inputs on top, the simulated outcomes below; escape goes back to the lab."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "back to the lab"),
        Binding("ctrl+r", "recompute", "recompute"),
    ]

    def __init__(
        self, api: WhatIfApi | None = None, debounce_s: float = DEBOUNCE_S, session_result: Any = None
    ) -> None:
        super().__init__(id="whatif")
        self.api = api
        self.session_result = session_result
        #: The simulator's process (``WhatIfApi.own_process``), made by the first simulation.
        self.process: SimulatorProcess | None = None
        self._process_lock = threading.Lock()
        self._closed = False
        self.debounce_s = debounce_s
        self.feed: Any = None
        self.presets: dict[str, Any] = {}
        self.place_names: tuple[str, ...] = ()
        self.generation = 0
        self.computing = False
        self.result: Any = None
        #: How many simulations finished (a test waits on it), stale ones included.
        self.finished = 0
        self._debounce: Timer | None = None
        #: The inputs of the newest simulation: a field set to what it held starts none.
        self._last_inputs: Any = None
        self.place_choices: dict[str, tuple[str, ...]] = {"user_city": (), "region": ()}

    def compose(self) -> ComposeResult:
        yield Static(
            f"[b]what if[/b] · [reverse] {SIMULATED} [/] · every figure on this screen is simulated, not measured",
            id="whatif-title",
        )
        with Vertical(id="whatif-inputs"):
            with Horizontal(classes="whatif-row"):
                yield Label("preset", classes="whatif-label")
                yield Select([], prompt="(your own inputs)", id="whatif-preset", compact=True)
                yield Label("pattern", classes="whatif-label")
                yield Select(
                    [(p, p) for p in PATTERN_CHOICES], value="poisson", allow_blank=False,
                    id="whatif-pattern", compact=True,
                )
                yield Label("user in", classes="whatif-label")
                yield Select([], prompt="city", id="whatif-user_city", compact=True)
                yield Label("region", classes="whatif-label")
                yield Select([], prompt="region", id="whatif-region", compact=True)
            with Horizontal(classes="whatif-row"):
                for name, label, width in NUMBER_FIELDS:
                    yield Label(label, classes="whatif-label")
                    field = Input("", id=f"whatif-{name}", compact=True)
                    field.styles.width = width
                    yield field
        yield Static("loading the feed…", id="whatif-status")
        yield Static("", id="whatif-fed-by")
        table: DataTable[str] = DataTable(id="whatif-table", cursor_type="row", zebra_stripes=True)
        table.border_title = (
            f"{SIMULATED} outcomes per runtime × placement · end-to-end p50/p99, cold share,"
            " mean and peak instances, memory held, instances per host, hosts needed"
        )
        yield table
        yield Static("", id="whatif-notes")
        yield Static("[b $accent]esc[/] back to the lab  [b $accent]^r[/] recompute  · inputs recompute as you type", id="whatif-keys")

    def on_mount(self) -> None:
        table = self.query_one("#whatif-table", DataTable)
        for column in COLUMNS:
            table.add_column(column, key=column)
        self.load()

    # -- the feed, presets and places: read off the event loop ------------------------------------
    @work(thread=True, exclusive=True, group="whatif-feed", exit_on_error=False)
    def load(self) -> None:
        api = self.api or default_api(self.session_result)
        self.api = api
        presets = dict(api.presets())
        places = dict(api.places())
        try:
            feed, error = api.load_feed(), None
        except EdgelabError as exc:
            feed, error = None, str(exc)
        self.post_message(FeedLoaded(feed, presets, places, error))

    def on_feed_loaded(self, message: FeedLoaded) -> None:
        self.presets = dict(message.presets)
        cities = [(p.label, n) for n, p in message.places.items() if p.kind == "city"]
        regions = [(p.label, n) for n, p in message.places.items() if p.kind == "region"]
        self.place_choices = {"user_city": tuple(n for _, n in cities), "region": tuple(n for _, n in regions)}
        self.query_one("#whatif-user_city", Select).set_options(cities)
        self.query_one("#whatif-region", Select).set_options(regions)
        self.query_one("#whatif-preset", Select).set_options(
            [(f"{p.title}", name) for name, p in self.presets.items()]
        )
        if message.error is not None or message.feed is None:
            self.feed = None
            self._status(f"⚠ {NO_FEED}" + (f" ({message.error})" if message.error else ""))
            self._fill(self._defaults())
            return
        self.feed = message.feed
        self._fill(self._defaults())
        first = next(iter(self.presets), None)
        if first is not None:
            self.query_one("#whatif-preset", Select).value = first
        else:
            self.recompute()

    def _defaults(self) -> Any:
        assert self.api is not None
        return self.api.inputs_type()

    def _fill(self, inputs: Any) -> None:
        """Put ``inputs`` (a WhatIfInputs) into the fields; the Changed events this makes find
        the inputs unchanged and start nothing."""
        for name, _, _ in NUMBER_FIELDS:
            value = getattr(inputs, name)
            unit = "s" if name == "keepalive_s" else ""
            self.query_one(f"#whatif-{name}", Input).value = "" if value is None else f"{value:g}{unit}"
        self.query_one("#whatif-pattern", Select).value = (
            inputs.pattern if inputs.pattern in PATTERN_CHOICES else "poisson"
        )
        for name in ("user_city", "region"):
            value = getattr(inputs, name)
            if value in self.place_choices[name]:
                self.query_one(f"#whatif-{name}", Select).value = value

    # -- inputs -> a simulation --------------------------------------------------------------------
    def inputs(self) -> Any:
        """The fields as a WhatIfInputs, each checked as the CLI checks its flag; a preset
        gives what the fields do not show (data round trips, extra time, seed)."""
        assert self.api is not None
        preset_name = self.query_one("#whatif-preset", Select).value
        preset = self.presets.get(preset_name) if isinstance(preset_name, str) else None
        base = preset.inputs if preset is not None else self._defaults()
        text = {name: self.query_one(f"#whatif-{name}", Input).value for name, _, _ in NUMBER_FIELDS}
        values: dict[str, Any] = {
            "rate_per_s": _number(text["rate_per_s"], "rate"),
            "hours": _number(text["hours"], "hours"),
            "keepalive_s": limits.parse_seconds(text["keepalive_s"], "keep-alive", limits.KEEPALIVE_S),
            "prewarm": int(_number(text["prewarm"], "pre-warm", whole=True)),
            "concurrency": int(_number(text["concurrency"], "concurrency", whole=True)),
            "host_memory_gib": _number(text["host_memory_gib"], "host GiB"),
            "inflation": _number(text["inflation"], "inflation"),
            "pattern": self.query_one("#whatif-pattern", Select).value,
        }
        for name in ("user_city", "region"):
            value = self.query_one(f"#whatif-{name}", Select).value
            if isinstance(value, str):
                values[name] = value
        inputs = replace(base, **values)
        inputs.validate()  # the simulator's own ranges, as edgelab whatif's flags meet them
        return inputs

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        if event.select.id == "whatif-preset" and isinstance(event.value, str) and event.value in self.presets:
            preset = self.presets[event.value]
            self._fill(preset.inputs)
            self.query_one("#whatif-notes", Static).update(self._notes(None))
            self.recompute()
            return
        self.recompute()

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        if self._debounce is not None:
            self._debounce.stop()
        self._debounce = self.set_timer(self.debounce_s, self.recompute)

    def action_recompute(self) -> None:
        self.recompute(force=True)

    def recompute(self, force: bool = False) -> None:
        """Start a simulation of the fields as they stand (unless it is the one shown or on
        its way); one still running is superseded."""
        if self.feed is None or self.api is None:
            return
        try:
            inputs = self.inputs()
        except EdgelabError as exc:
            self._last_inputs = None
            self._status(f"⚠ {exc}")
            return
        if inputs == self._last_inputs and not force:
            return
        self._last_inputs = inputs
        self.generation += 1
        self.computing = True
        self._status("recomputing… (simulated)")
        self.simulate(self.generation, inputs, self.feed, self.api)

    @work(thread=True, exclusive=True, group="whatif", exit_on_error=False)
    def simulate(self, generation: int, inputs: Any, feed: Any, api: WhatIfApi) -> None:
        started = time.perf_counter()
        try:
            if api.own_process:
                result, error = self._process_for(api, feed).simulate(inputs), None
            else:
                result, error = api.simulate(inputs, feed), None
        except EdgelabError as exc:
            result, error = None, str(exc)
        except Exception as exc:  # noqa: BLE001 - one line on screen, the screen stays
            result, error = None, f"simulation failed: {type(exc).__name__}: {exc}"
        self.post_message(Simulated(generation, result, error, time.perf_counter() - started))

    def _process_for(self, api: WhatIfApi, feed: Any) -> SimulatorProcess:
        with self._process_lock:
            if self._closed:
                raise EdgelabError("the what-if screen closed")
            if self.process is None:
                self.process = SimulatorProcess(api.simulate, feed)
            return self.process

    def on_unmount(self) -> None:
        """However the screen goes (escape, the app quitting), its process goes with it."""
        with self._process_lock:
            self._closed = True
            process, self.process = self.process, None
        if process is not None:
            process.close()

    def on_simulated(self, message: Simulated) -> None:
        self.finished += 1
        if message.generation != self.generation:
            return  # inputs changed since: a newer simulation is on its way
        self.computing = False
        if message.error is not None:
            self._status(f"⚠ {message.error}")
            return
        self.result = message.result
        self._show(message.result, message.elapsed_s)

    def _show(self, result: Any, elapsed_s: float) -> None:
        table = self.query_one("#whatif-table", DataTable)
        table.clear()
        for outcome in result.outcomes:
            table.add_row(*outcome_row(outcome))
        elapsed = getattr(result, "elapsed_s", None) or elapsed_s
        self._status(f"{SIMULATED}: {len(result.outcomes)} outcomes, computed in {elapsed:.3f} s")
        self.query_one("#whatif-fed-by", Static).update(
            f"{SIMULATED} · fed by {result.fed_by} (startup and execution drawn from its measured samples)"
        )
        self.query_one("#whatif-notes", Static).update(self._notes(result))

    def _notes(self, result: Any) -> str:
        lines: list[str] = []
        preset_name = self.query_one("#whatif-preset", Select).value
        preset = self.presets.get(preset_name) if isinstance(preset_name, str) else None
        if preset is not None:
            lines.append(f"[b]{preset.title}[/b]: {preset.summary}")
            lines.extend(f"  assumption: {a}" for a in preset.assumptions)
        if result is not None:
            lines.extend(f"· {note}" for note in result.notes)
        return "\n".join(lines)

    def _status(self, line: str) -> None:
        self.query_one("#whatif-status", Static).update(line)

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
