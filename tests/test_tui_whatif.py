"""The what-if and claims screens (issue 12): recomputing without blocking the UI, every figure
marked simulated, the feed named, and the claims table.

The screen is driven through its ``WhatIfApi`` seam with a fixture simulator (a closed form on
fixed inputs: cold fraction e^(-λT), the RTT floor of the real placement table), so the tests
pin the screen's behaviour and layout, not the engine's numbers (the engine has its own tests).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, Input, Select

from edgelab.tui.app import EdgelabApp
from edgelab.tui.claims import ClaimsScreen
from edgelab.tui.whatif import SIMULATED, WhatIfApi, WhatIfScreen
from edgelab.whatif.placement import places, rtt_floor_ms
from tests.test_tui_pilot import fake_app, pilot_test, ready, until

SIZE = (120, 36)


@dataclass(frozen=True)
class FixtureInputs:
    """The simulator's input fields, by the names edgelab.whatif.model.WhatIfInputs has."""

    rate_per_s: float = 10.0
    pattern: str = "poisson"
    hours: float = 1.0
    keepalive_s: float = 2.0
    prewarm: int = 0
    concurrency: int = 1
    host_memory_gib: float = 16.0
    seed: int = 7
    user_city: str = "Tokyo"
    region: str = "us-east-1"
    inflation: float = 1.5
    data_round_trips: int = 1
    extra_ms: float = 0.0

    def validate(self) -> None:
        from edgelab.errors import UsageError

        if not 0 < self.hours <= 168:
            raise UsageError(f"hours must be a number above 0 to 168 hours, not {self.hours!r}")


@dataclass(frozen=True)
class FixtureOutcome:
    runtime: str
    placement: str
    p50_ms: float
    p99_ms: float
    cold_fraction: float
    mean_instances: float
    peak_instances: int
    memory_gib_hours: float
    instances_per_host: float
    hosts_needed: int


@dataclass(frozen=True)
class FixtureResult:
    outcomes: tuple[FixtureOutcome, ...]
    fed_by: str
    notes: tuple[str, ...]
    elapsed_s: float


@dataclass(frozen=True)
class FixturePreset:
    name: str
    title: str
    summary: str
    inputs: FixtureInputs
    assumptions: tuple[str, ...]


#: A measured run's figures, as a feed carries them (ms): cold start, warm execution, memory.
FEED = {"container": (236.0, 0.05, 3.4), "subprocess": (0.33, 0.02, 0.018), "wasm": (0.0027, 0.002, 0.011)}


def fixture_simulate(inputs: FixtureInputs, feed: dict[str, Any]) -> FixtureResult:
    outcomes = []
    cold = math.exp(-inputs.rate_per_s * inputs.keepalive_s)
    rtt = rtt_floor_ms(inputs.user_city, inputs.region, inputs.inflation)
    for runtime, (startup, execution, mib) in feed["figures"].items():
        for placement, network in (("edge", 2.0), ("region", rtt)):
            p50 = network + execution + inputs.extra_ms
            instances = max(1.0, inputs.rate_per_s * execution / 1000) + inputs.prewarm
            outcomes.append(
                FixtureOutcome(
                    runtime, placement, p50, p50 + startup, cold, instances, math.ceil(instances) + 1,
                    instances * mib / 1024 * inputs.hours, inputs.host_memory_gib * 1024 / mib, 1,
                )
            )
    return FixtureResult(tuple(outcomes), feed["ref"], ("a fixture feed: figures fixed for the test",), 0.004)


def fixture_api(simulate: Any = fixture_simulate, feed: Any = None, no_feed: bool = False) -> WhatIfApi:
    def load() -> Any:
        if no_feed:
            from edgelab.errors import UsageError

            raise UsageError("no runs saved yet")
        return feed or {"ref": "last (traffic of hello, fixture)", "figures": FEED}

    preset = FixturePreset(
        "agent-llm", "agent calling an LLM", "user → code → LLM (1000 ms)",
        FixtureInputs(rate_per_s=5, keepalive_s=1, extra_ms=1000),
        ("the LLM call takes 1000 ms (the story's own figure)",),
    )
    return WhatIfApi(FixtureInputs, simulate, load, lambda: {preset.name: preset}, places)


def whatif_app(tmp_path: Path, api: WhatIfApi) -> EdgelabApp:
    app = fake_app(tmp_path)
    app.whatif_api = api
    return app


async def open_whatif(pilot: Any) -> WhatIfScreen:
    app = pilot.app
    await ready(pilot)
    await pilot.press("w")
    await until(pilot, lambda: isinstance(app.screen, WhatIfScreen))
    screen = app.screen
    assert isinstance(screen, WhatIfScreen)
    await until(pilot, lambda: screen.result is not None and not screen.computing)
    return screen


def rows(screen: WhatIfScreen) -> list[list[str]]:
    table = screen.query_one("#whatif-table", DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


@pilot_test
async def test_the_whatif_screen_shows_simulated_outcomes_fed_by_a_run(tmp_path: Path) -> None:
    app = whatif_app(tmp_path, fixture_api())
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_whatif(pilot)
        assert len(rows(screen)) == 6  # three runtimes x two placements
        assert {r[1] for r in rows(screen)} == {"edge", "region"}
        assert SIMULATED in str(screen.query_one("#whatif-title").render())
        assert all(str(c.label).endswith(" sim") for c in screen.query_one("#whatif-table", DataTable).columns.values()
                   if str(c.label) not in ("runtime", "placement"))  # fmt: skip
        assert "fed by last (traffic of hello, fixture)" in str(screen.query_one("#whatif-fed-by").render())
        notes = str(screen.query_one("#whatif-notes").render())
        assert "assumption: the LLM call takes 1000 ms" in notes and "a fixture feed" in notes
        # The preset filled the fields.
        assert screen.query_one("#whatif-rate_per_s", Input).value == "5"
        assert screen.query_one("#whatif-keepalive_s", Input).value == "1s"
        # w again (on the table) does not stack a second screen.
        screen.query_one("#whatif-table", DataTable).focus()
        await pilot.press("w")
        await pilot.pause()
        assert app.screen is screen and len(app.screen_stack) == 2
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, WhatIfScreen))
        assert len(app.screen_stack) == 1


#: Catastrophic backtracking: the regex engine holds the GIL for the whole match (~0.8 s here).
GIL_HOG = "a" * 24


def gil_holding_simulate(inputs: FixtureInputs, feed: dict[str, Any]) -> FixtureResult:
    """A simulation that holds its process's GIL throughout, as the engine's numpy work did
    for long stretches (keys waited 1.07 s during a 1.05 s simulation in a UI thread)."""
    import re

    re.match(r"(a+)+b", GIL_HOG)
    return fixture_simulate(inputs, feed)


@pilot_test
async def test_an_input_change_recomputes_and_the_ui_answers_keys_meanwhile(tmp_path: Path) -> None:
    """simulate holds the GIL for ~0.8 s, in the simulator's own process: while it runs, keys
    typed into a field are handled at once, and the newest inputs win. The process goes
    when the screen closes."""
    import os

    app = whatif_app(tmp_path, replace(fixture_api(simulate=gil_holding_simulate), own_process=True))
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_whatif(pilot)
        before = rows(screen)
        first_generation = screen.generation
        rate = screen.query_one("#whatif-rate_per_s", Input)
        rate.focus()
        rate.value = "0.01"
        await until(pilot, lambda: screen.computing)
        assert "recomputing" in str(screen.query_one("#whatif-status").render())
        loop = asyncio.get_running_loop()
        started = loop.time()
        await pilot.press("end", "5")  # typed while the GIL-holding simulation runs
        answered = loop.time() - started
        assert rate.value == "0.015"
        assert answered < 0.4, f"two keys took {answered:.2f} s while simulate ran"
        assert screen.computing  # the first recompute is still under way
        await until(pilot, lambda: not screen.computing and screen.generation > first_generation + 1, 10)
        assert screen.result.outcomes[0].cold_fraction == pytest.approx(math.exp(-0.015 * 1))
        assert rows(screen) != before
        assert "computed in" in str(screen.query_one("#whatif-status").render())
        assert screen.process is not None
        pid = screen.process.pid
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, WhatIfScreen))
        await until(pilot, lambda: screen.process is None)
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # ended and reaped: nothing left behind


@pilot_test
async def test_a_bad_whatif_input_is_one_line_and_keeps_the_last_table(tmp_path: Path) -> None:
    app = whatif_app(tmp_path, fixture_api())
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_whatif(pilot)
        shown = rows(screen)
        screen.query_one("#whatif-hours", Input).value = "0"
        await until(pilot, lambda: "⚠" in str(screen.query_one("#whatif-status").render()))
        line = str(screen.query_one("#whatif-status").render())
        assert "hours must be" in line and "\n" not in line
        assert rows(screen) == shown and not screen.computing


@pilot_test
async def test_no_feed_says_how_to_make_one(tmp_path: Path) -> None:
    app = whatif_app(tmp_path, fixture_api(no_feed=True))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("w")
        await until(pilot, lambda: isinstance(app.screen, WhatIfScreen))
        screen = app.screen
        await until(pilot, lambda: "no measured run" in str(screen.query_one("#whatif-status").render()))
        assert "--scenario traffic" in str(screen.query_one("#whatif-status").render())
        assert screen.query_one("#whatif-table", DataTable).row_count == 0


@pilot_test
async def test_the_claims_view_lists_each_claim_with_its_verdict(tmp_path: Path) -> None:
    """The real claims data and checker over a hand-made export of a wasm burst."""
    from edgelab.claims import check_claims

    run = {
        "metadata": {"fake": False, "settings": {"workload": "hello", "scenario": "burst"}},
        "results": [{"runtime": "wasm", "startup_us": {"n": 30, "p50": 2.7, "p99": 3.8}}],
    }

    def loader() -> tuple[list[Any], list[str]]:
        return check_claims([run], ["last"]), []

    app = fake_app(tmp_path)
    app.claims_loader = loader
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("K")
        await until(pilot, lambda: isinstance(app.screen, ClaimsScreen) and bool(app.screen.checks))
        screen = app.screen
        table = screen.query_one("#claims-table", DataTable)
        assert table.row_count == len(screen.checks) >= 3
        shown = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
        for check, row in zip(screen.checks, shown, strict=True):
            assert row[0] == check.claim.short and row[3] == check.verdict and row[4] == check.why
        # The hand-made run's wasm figure reached at least one claim, with the run named.
        from_run = [row for row in shown if row[6] == "last"]
        assert from_run and all(row[2] != "–" for row in from_run)
        assert f"{len(screen.checks)} claims:" in str(screen.query_one("#claims-status").render())
        # The highlighted claim in full below the table.
        table.move_cursor(row=1)
        await pilot.pause()
        detail = str(screen.query_one("#claims-detail").render())
        assert screen.checks[1].why in detail and screen.checks[1].claim.source.title in detail


def test_whatif_screen_at_120x36(snap_compare: Any, tmp_path: Path) -> None:
    async def opened(pilot: Any) -> None:
        screen = await open_whatif(pilot)
        screen.query_one("#whatif-table", DataTable).focus()
        await pilot.pause()
        assert screen.query_one("#whatif-preset", Select).value == "agent-llm"

    app = whatif_app(tmp_path, fixture_api())
    assert snap_compare(app, terminal_size=SIZE, run_before=opened)


def real_fixture_feed() -> Any:
    """A Feed as edgelab.whatif.feed builds one from a traffic run, with fixed samples (s)."""
    import numpy as np

    from edgelab.whatif.feed import Feed, RuntimeFeed

    runtimes = {
        name: RuntimeFeed(name, np.array(cold) * 1e-3, np.array(warm) * 1e-3, "fixture cold samples", mib * (1 << 20), "fixture")
        for name, (cold, warm, mib) in {
            "container": ([230.0, 236.0, 250.0], [0.05, 0.06], 3.4),
            "wasm": ([0.0027, 0.003, 0.004], [0.002, 0.0025], 0.011),
        }.items()
    }
    return Feed("fixture", "2026-12-02T00:00:00", "hello", runtimes)


@pilot_test
async def test_the_real_simulator_fills_the_screen_from_a_fixture_feed(tmp_path: Path) -> None:
    from edgelab.tui.whatif import default_api

    real = default_api()
    feed = real_fixture_feed()
    app = whatif_app(tmp_path, replace(real, load_feed=lambda: feed))
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_whatif(pilot)
        assert {(r[0], r[1]) for r in rows(screen)} == {
            (n, p) for n in ("container", "wasm") for p in ("edge", "region")
        }
        assert f"fed by {feed.fed_by}" in str(screen.query_one("#whatif-fed-by").render())
        assert screen.result.outcomes and all(o.p50_ms > 0 for o in screen.result.outcomes)
        # A preset from the shipped presets filled the fields; one change recomputes.
        generation = screen.generation
        screen.query_one("#whatif-keepalive_s", Input).value = "0"
        await until(pilot, lambda: screen.generation > generation and not screen.computing)
        assert all(o.cold_fraction == pytest.approx(1.0) for o in screen.result.outcomes)
