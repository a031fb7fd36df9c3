"""Pilot tests of the lab UI: keys pressed, workers awaited, widget state read back.

Most run on the fake runtime (fixed timings, no engine needed); one runs the real three.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from edgelab.lab import Lab
from edgelab.results import GIB
from edgelab.runtimes.base import Runtime
from edgelab.runtimes.fake import FakeRuntime
from edgelab.session import Session
from edgelab.stats import format_bytes, format_duration_ns
from edgelab.tui.app import EdgelabApp
from edgelab.tui.controls import Controls
from edgelab.tui.help import HelpScreen
from edgelab.tui.view import NOT_YET

SIZE = (160, 45)
UNITS = ("ns", "µs", "ms", " s")


class FakeLab(Lab):
    """A Lab on fake runtimes that remembers every runtime it made, to check the teardown."""

    def __init__(
        self, unavailable: dict[str, str] | None = None, limit_after: dict[str, int] | None = None
    ) -> None:
        self.made: list[Runtime] = []

        def factory(name: str, session: Session) -> Runtime:
            runtime = FakeRuntime(
                session,
                as_runtime=name,
                unavailable=(unavailable or {}).get(name),
                limit_after=(limit_after or {}).get(name),
            )
            self.made.append(runtime)
            return runtime

        super().__init__(runtime_factory=factory)

    def live_instances(self) -> int:
        return sum(len(r.live_instances()) for r in self.made)


def pilot_test(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an async test on a fresh event loop (no pytest-asyncio needed)."""

    @functools.wraps(test)
    def run(*args: object, **kwargs: object) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


def fake_app(tmp_path: Path, **kwargs: object) -> EdgelabApp:
    return EdgelabApp(
        lab=FakeLab(**kwargs),  # type: ignore[arg-type]
        screenshot_dir=tmp_path / "screenshots",
        export_dir=tmp_path / "exports",
        deterministic=True,
    )


async def until(pilot: Pilot, condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        # Not pilot.pause: it waits for every widget's queue, which a busy screen rarely empties.
        await asyncio.sleep(0.05)


async def ready(pilot: Pilot) -> EdgelabApp:
    app = pilot.app
    assert isinstance(app, EdgelabApp)
    await until(pilot, lambda: app.query_one(Controls).workload() is not None)
    return app


async def run_to_end(pilot: Pilot, timeout_s: float = 20.0) -> EdgelabApp:
    app = await ready(pilot)
    await pilot.press("r")
    await until(pilot, lambda: app.state.result is not None and not app.running, timeout_s)
    await pilot.pause()
    return app


def has_unit(text: str) -> bool:
    return text != NOT_YET and text.endswith(UNITS)


@pilot_test
async def test_burst_results_appear_in_all_three_panels_with_units(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await run_to_end(pilot)
        assert app.state.result is not None
        for name, panel in app.panels.items():
            view = panel.view
            assert view is not None
            assert has_unit(view.p50) and has_unit(view.p99), (name, view)
            # The same code as `edgelab run --json`: RuntimeResult.summary().
            summary = app.state.result.runtimes[name].summary()
            assert summary is not None
            assert view.p50 == format_duration_ns(summary.p50_ns)
            assert "20 cold starts" in panel.text()
            assert "includes: fixed fake timings" in panel.text()
            assert "phases p50:" in panel.text()
            assert len(view.recent_ns) == 20
            assert view.state == "done"
        comparison = str(app.query_one("#comparison").render())
        assert "wasm started" in comparison and "faster than container" in comparison


@pilot_test
async def test_r_again_stops_a_holding_ramp_and_reports_memory(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.click("#scenario-ramp")
        app.query_one("#count", Input).value = "30"
        await pilot.press("r")
        await until(pilot, lambda: app.state.runtimes["wasm"].running == 30)
        assert app.running
        await until(pilot, lambda: app.state.held)
        assert "holding 90 instances" in str(app.query_one("#status").render())
        await pilot.press("r")
        await until(pilot, lambda: not app.running)
        # Ending a held ramp is its planned end: a completed run, not a cancelled one.
        assert not app.state.cancelled
        assert app.state.result is not None and app.state.result.metadata["cancelled"] is False
        assert "ramp of hello ended" in str(app.query_one("#status").render())
        for name, panel in app.panels.items():
            text = panel.text()
            assert "/instance (fake (not a measurement))" in text, (name, text)
            assert "instances per GiB" in text
            assert "running 0 · launched 30" in text
        assert "10.0 KiB/instance" in app.panels["wasm"].text()
        assert len(app.panels["wasm"].view.memory_curve) > 1  # type: ignore[union-attr]
        assert "more than container instances per GiB" in str(app.query_one("#comparison").render())
        assert app.lab.live_instances() == 0  # type: ignore[attr-defined]


@pilot_test
async def test_ctrl_c_cancels_a_running_ramp_and_the_app_stays(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        app.query_one(Controls).set_scenario("ramp")
        await pilot.press("r")
        await until(pilot, lambda: app.state.runtimes["container"].running == 20)
        await pilot.press("ctrl+c")
        await until(pilot, lambda: not app.running)
        assert app.is_running
        assert app.state.cancelled
        assert "cancelled" in str(app.query_one("#status").render())
        assert app.lab.live_instances() == 0  # type: ignore[attr-defined]


@pilot_test
async def test_steady_shows_starts_per_second(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        app.query_one(Controls).set_scenario("steady")
        app.query_one("#rate", Input).value = "20"
        app.query_one("#duration", Input).value = "1.5"
        await pilot.press("r")
        await until(pilot, lambda: app.state.runtimes["wasm"].launched >= 5)
        assert "starts/s (last 2 s)" in app.panels["wasm"].text()
        await until(pilot, lambda: not app.running)
        assert app.state.result is not None
        for name, panel in app.panels.items():
            # The lab's achieved rate, the one the exports carry, beside the rate asked for.
            achieved = app.state.result.runtimes[name].rate_achieved_per_s
            assert achieved is not None and achieved > 0
            assert f"{achieved:,.2f} starts/s achieved of 20/s asked" in panel.text(), panel.text()
            assert has_unit(panel.view.p50)  # type: ignore[union-attr]
        assert app.state.result.metadata["settings"]["rate_per_s"] == 20.0


@pilot_test
async def test_c_clears_the_panels(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await run_to_end(pilot)
        await pilot.press("c")
        await pilot.pause()
        for panel in app.panels.values():
            assert panel.view is not None and panel.view.p50 == NOT_YET
        assert str(app.query_one("#comparison").render()) == ""
        assert app.state.result is None


@pilot_test
async def test_e_exports_json_csv_and_markdown(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await run_to_end(pilot)
        await pilot.press("e")
        exports = tmp_path / "exports"
        await until(pilot, lambda: exports.is_dir() and len(list(exports.iterdir())) >= 3)
        await app.workers.wait_for_complete()
    suffixes = sorted(p.suffix for p in exports.iterdir())
    assert suffixes == [".csv", ".json", ".md"]
    assert '"startup_us"' in next(exports.glob("*.json")).read_text()
    assert not (tmp_path / "screenshots").exists(), "exports went into the screenshot folder"


@pilot_test
async def test_s_saves_an_svg_screenshot(tmp_path: Path) -> None:
    shots = tmp_path / "shots"
    app = EdgelabApp(lab=FakeLab(), screenshot_dir=shots, deterministic=True)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("s")
        await pilot.pause()
    svgs = list(shots.glob("*.svg"))
    assert len(svgs) == 1 and svgs[0].read_text().startswith("<svg")


@pilot_test
async def test_question_mark_opens_help_and_escape_closes_it(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)


@pilot_test
async def test_q_quits_mid_ramp_and_removes_every_instance(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        app.query_one(Controls).set_scenario("ramp")
        await pilot.press("r")
        await until(pilot, lambda: app.state.runtimes["wasm"].running == 20)
        lab = app.lab
        assert lab.live_instances() > 0  # type: ignore[attr-defined]
        await pilot.press("q")
        await until(pilot, lambda: not app.is_running)
    assert app.return_value == 0
    assert lab.live_instances() == 0  # type: ignore[attr-defined]


@pilot_test
async def test_a_toggled_off_runtime_is_left_out(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.click("#use-container")
        assert app.query_one(Controls).runtimes() == ("subprocess", "wasm")
        await run_to_end(pilot)
        assert app.state.result is not None
        assert list(app.state.result.runtimes) == ["subprocess", "wasm"]
        container = app.panels["container"].view
        assert container is not None and container.state == "off" and container.p50 == NOT_YET
        assert has_unit(app.panels["wasm"].view.p50)  # type: ignore[union-attr]
        assert "container" not in str(app.query_one("#comparison").render())


@pilot_test
async def test_an_unavailable_runtime_shows_why_while_the_others_measure(tmp_path: Path) -> None:
    app = fake_app(tmp_path, unavailable={"container": "no engine"})
    async with app.run_test(size=SIZE) as pilot:
        await run_to_end(pilot)
        container = app.panels["container"]
        assert container.view is not None and container.view.state == "unavailable"
        assert "unavailable: no engine" in container.text()
        assert "fix: fake: nothing to fix" in container.text()
        assert container.has_class("-unavailable")
        for name in ("subprocess", "wasm"):
            assert has_unit(app.panels[name].view.p50)  # type: ignore[union-attr]


@pilot_test
async def test_bad_input_is_one_line_and_nothing_runs(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        app.query_one("#count", Input).value = "0"
        await pilot.press("r")
        await pilot.pause()
        assert app.scenario_worker is None
        assert "N must be a positive number" in str(app.query_one("#status").render())


@pilot_test
async def test_idle_lab_pauses_its_drain_timer(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await run_to_end(pilot)
        assert not app.draining


@pytest.mark.docker
@pilot_test
async def test_real_runtimes_burst_shows_all_three(docker_client: object, tmp_path: Path) -> None:
    """Real Docker, real processes, real wasmtime: a short burst of hello on all three."""
    app = EdgelabApp(lab=Lab(), screenshot_dir=tmp_path, only_workloads=("hello",))
    async with app.run_test(size=SIZE) as pilot:
        try:
            await ready(pilot)
            app.query_one("#count", Input).value = "3"
            await run_to_end(pilot, timeout_s=600)
            for name, panel in app.panels.items():
                view = panel.view
                assert view is not None
                assert view.state == "done", (name, panel.text())
                assert has_unit(view.p50), (name, panel.text())
                assert "3 cold starts" in panel.text()
                assert "includes: " in panel.text()
                assert "fake" not in panel.text()
            assert "faster than" in str(app.query_one("#comparison").render())
        finally:
            await app.shutdown()


def test_controls_scenarios_are_the_labs() -> None:
    from edgelab.lab import SCENARIOS
    from edgelab.tui.controls import SCENARIOS as SHOWN

    assert SHOWN == SCENARIOS


def test_resident_n_is_one_number_or_one_per_runtime() -> None:
    """The TUI reads N with the core's parser: the same text gives the same counts as
    ``edgelab run --resident``, in the TUI's letters and the CLI's names alike."""
    from edgelab.errors import UsageError
    from edgelab.lab import parse_resident
    from edgelab.tui.controls import resident_counts

    every = ("container", "subprocess", "wasm")
    assert resident_counts("50", every) == {"container": 50, "subprocess": 50, "wasm": 50}
    assert resident_counts("c=20, s=50, wasm=2000", every) == {
        "container": 20, "subprocess": 50, "wasm": 2000,
    }
    assert resident_counts("w=10,c=3", ("container", "wasm")) == {"container": 3, "wasm": 10}
    # A runtime the text leaves out holds none; one toggled off is left out of the answer.
    assert resident_counts("c=2,w=3", every) == {"container": 2, "subprocess": 0, "wasm": 3}
    assert resident_counts("c=2,s=4,w=3", ("wasm",)) == {"wasm": 3}
    for text in ("50", "c=20,s=50,w=2000", "container=20,subprocess=50,wasm=2000", "C=1,W=7", "w=3"):
        assert resident_counts(text, every) == parse_resident(text, every), text
    for bad, words in (("x=1,c=2,s=3", "'x' is not a runtime"), ("ten", "whole number"),
                       ("c=-1,w=2", "0 or more"), ("0", "at least one"), ("c=0,w=0", "at least one")):
        with pytest.raises(UsageError, match=words):
            resident_counts(bad, every)
        if "at least one" not in words:
            with pytest.raises(UsageError, match=words):
                parse_resident(bad, every)


@pilot_test
async def test_ramp_takes_a_resident_n_per_runtime(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        app.query_one(Controls).set_scenario("ramp")
        app.query_one("#count", Input).value = "c=3,s=5,w=40"
        await pilot.press("r")
        await until(pilot, lambda: app.state.runtimes["wasm"].running == 40)
        assert app.state.runtimes["container"].running == 3
        assert app.state.runtimes["subprocess"].running == 5
        await pilot.press("r")
        await until(pilot, lambda: not app.running)


@pilot_test
async def test_only_the_inputs_a_scenario_uses_are_shown(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        assert app.query_one("#count").display and not app.query_one("#rate").display
        app.query_one(Controls).set_scenario("steady")
        await pilot.pause()
        assert not app.query_one("#count").display and app.query_one("#rate").display


# -- keys whatever has focus, the catalog, moving around (issue 9) ----------------------------
def visible_in_body(app: EdgelabApp, widget_id: str) -> bool:
    """The widget's top line lies inside the scrolling body's viewport (not above or below)."""
    body = app.query_one("#body").region
    top = app.query_one(widget_id).region.y
    return body.y <= top < body.bottom


@pilot_test
async def test_r_with_the_n_field_focused_runs_and_types_nothing(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        count = app.query_one("#count", Input)
        count.focus()
        await pilot.pause()
        assert app.focused is count
        await pilot.press("r")
        await until(pilot, lambda: app.state.result is not None and not app.running)
        assert count.value == "20"
        assert app.state.result.runtimes["wasm"].summary().n == 20  # type: ignore[union-attr]


@pilot_test
async def test_a_ramps_n_takes_runtime_letters_and_r_still_runs(tmp_path: Path) -> None:
    """c and s are typed where a runtime's letter can stand; r, e, ? never are."""
    app = fake_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        app.query_one(Controls).set_scenario("ramp")
        count = app.query_one("#count", Input)
        count.focus()
        await pilot.pause()
        count.value = ""
        await pilot.press(*"c=3,s=5,w=7")
        assert count.value == "c=3,s=5,w=7"
        await pilot.press("r")
        await until(pilot, lambda: app.state.held)
        assert count.value == "c=3,s=5,w=7"
        assert [app.state.runtimes[n].running for n in ("container", "subprocess", "wasm")] == [3, 5, 7]
        await pilot.press("r")
        await until(pilot, lambda: not app.running)
        # The case: r after a runtime letter ran nothing and typed 'cr'.
        count.value = "c"
        count.cursor_position = 1
        await pilot.press("r")
        await pilot.pause()
        assert count.value == "c"
        assert "resident N" in str(app.query_one("#status").render())  # the core's one line
        # Names spelled out are the core's grammar too (and their letters are typed there).
        count.value = ""
        await pilot.press(*"container=3,wasm=7")
        assert count.value == "container=3,wasm=7"
        await pilot.press("r")
        await until(pilot, lambda: app.state.held)
        assert [app.state.runtimes[n].running for n in ("container", "subprocess", "wasm")] == [3, 0, 7]
        await pilot.press("r")
        await until(pilot, lambda: not app.running)


@pilot_test
async def test_keys_the_n_field_cannot_use_reach_the_lab(tmp_path: Path) -> None:
    """A digit is typed; ? opens the help; c after a digit (no runtime letter can stand there)
    clears; in a burst's N no letter is typed at all."""
    app = fake_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await run_to_end(pilot)
        count = app.query_one("#count", Input)
        count.focus()
        await pilot.pause()
        count.value = "2"
        count.cursor_position = 1
        await pilot.press("5")
        assert count.value == "25"
        await pilot.press("c")
        await pilot.pause()
        assert count.value == "25"
        assert app.state.result is None, "c did not clear"
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert app.focused is count and count.value == "25"


@pilot_test
async def test_enter_in_n_runs(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        count = app.query_one("#count", Input)
        count.focus()
        count.value = "7"
        await pilot.press("enter")
        await until(pilot, lambda: app.state.result is not None and not app.running)
        assert app.state.result.runtimes["container"].summary().n == 7  # type: ignore[union-attr]


@pilot_test
async def test_r_before_the_catalog_loads_waits_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    import edgelab.workloads

    release = threading.Event()
    real = edgelab.workloads.load_workloads

    def slow_catalog(*args, **kwargs):  # type: ignore[no-untyped-def]
        release.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(edgelab.workloads, "load_workloads", slow_catalog)
    app = fake_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.query_one(Controls).workload() is None
        await pilot.press("r")
        await pilot.pause()
        status = str(app.query_one("#status").render())
        assert "loading workloads…" in status and "no workload" not in status, status
        assert app.scenario_worker is None
        release.set()
        await until(pilot, lambda: app.state.result is not None and not app.running)
        assert app.state.result.metadata["settings"]["workload"] == "hello"  # type: ignore[union-attr]


@pilot_test
async def test_r_twice_before_the_catalog_loads_runs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    import edgelab.workloads

    release = threading.Event()
    real = edgelab.workloads.load_workloads
    monkeypatch.setattr(
        edgelab.workloads, "load_workloads", lambda *a, **k: (release.wait(10), real(*a, **k))[1]
    )
    app = fake_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("r", "r")
        release.set()
        await ready(pilot)
        await pilot.pause(0.3)
        assert app.scenario_worker is None and app.state.result is None


@pilot_test
async def test_keyboard_reaches_every_panel_at_80x24(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        # The compact layout (issue 14): every panel starts in view at 80x24, side by side.
        assert all(visible_in_body(app, f"#panel-{n}") for n in ("container", "subprocess", "wasm"))
        # ] from the workload list: the first panel, then the next ones.
        for name in ("container", "subprocess", "wasm"):
            await pilot.press("right_square_bracket")
            await pilot.pause()
            assert app.focused is app.panels[name], (name, app.focused)
            assert visible_in_body(app, f"#panel-{name}"), name
        assert app.panels["wasm"].has_pseudo_class("focus")
        # On a panel: left goes back, up/k scroll the body a line, pagedown a page.
        await pilot.press("left")
        await pilot.pause()
        assert app.focused is app.panels["subprocess"]
        # Nothing overflows 80x24 now: on a screen too short for the controls and the panels,
        # the same keys scroll.
        await pilot.resize_terminal(80, 16)
        await pilot.pause()
        body = app.query_one("#body")
        before = body.scroll_y
        await pilot.press("j")
        await pilot.pause()
        assert body.scroll_y == before + 1
        await pilot.press("k")
        await pilot.pause()
        assert body.scroll_y == before
        await pilot.press("home")
        await pilot.pause()
        assert body.scroll_y == 0
        await pilot.press("pagedown")
        await pilot.pause()
        assert body.scroll_y > 0
        # tab alone gets there too, from the list through every control.
        app.query_one("#workloads").focus()
        await pilot.pause()
        for _ in range(12):
            if app.focused is app.panels["wasm"]:
                break
            await pilot.press("tab")
            await pilot.pause()
        assert app.focused is app.panels["wasm"]
        assert visible_in_body(app, "#panel-wasm")


def exported(app: EdgelabApp) -> bool:
    """Every export worker has finished (the scenario's may still be holding)."""
    return all(w.is_finished for w in app.workers if w.group == "export")


@pilot_test
async def test_e_on_a_held_ramp_exports_it_as_completed(tmp_path: Path) -> None:
    import json

    app = fake_app(tmp_path)
    exports = tmp_path / "exports"
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        app.query_one(Controls).set_scenario("ramp")
        app.query_one("#count", Input).value = "c=2,s=3,w=40"
        await pilot.press("r")
        await until(pilot, lambda: app.state.held)
        assert app.running
        await pilot.press("e")
        await until(pilot, lambda: len(list(exports.glob("*-held.*"))) == 3 and exported(app))
        held = json.loads(next(exports.glob("*-held.json")).read_text())
        assert held["metadata"]["cancelled"] is False
        assert held["metadata"]["settings"]["scenario"] == "ramp"
        results = {r["runtime"]: r for r in held["results"]}
        assert results["wasm"]["memory_resident_instances"] == 40
        assert results["wasm"]["instances"]["running"] == 40
        assert app.running, "exporting ended the hold"
        await pilot.press("r")
        await until(pilot, lambda: not app.running)
        await pilot.press("e")
        await until(pilot, lambda: len(list(exports.glob("*.json"))) == 2 and exported(app))
    ended = [p for p in exports.glob("*.json") if not p.name.endswith("-held.json")]
    final = json.loads(ended[0].read_text())
    assert final["metadata"]["cancelled"] is False
    assert {r["runtime"]: r for r in final["results"]}["wasm"]["memory_resident_instances"] == 40


@pilot_test
async def test_the_run_line_says_how_a_mixed_burst_interleaved(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await run_to_end(pilot)
        line = str(app.query_one("#run-line").render())
        assert "burst of hello" in line and "interleave: block" in line, line
        assert app.state.result.metadata["settings"]["interleave"] == "block"  # type: ignore[union-attr]
        await pilot.press("i")
        await run_to_end(pilot)
        assert "interleave: launch by launch" in str(app.query_one("#run-line").render())
        assert app.state.result.metadata["settings"]["interleave"] == "launch"  # type: ignore[union-attr]


def test_the_exports_flag_reaches_the_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """edgelab --exports DIR: the lab's e writes there (default ./edgelab-exports)."""
    import edgelab.tui.app
    from edgelab.cli import _run_tui, build_parser

    seen: dict[str, object] = {}
    monkeypatch.setattr(edgelab.tui.app, "run_app", lambda **kwargs: seen.update(kwargs) or 0)
    # _run_tui, not main: main would install the CLI's signal handlers in the test process.
    assert _run_tui(build_parser().parse_args(["--exports", str(tmp_path / "out")])) == 0
    assert seen["export_dir"] == tmp_path / "out"
    assert EdgelabApp(lab=FakeLab()).export_dir == Path("edgelab-exports")  # type: ignore[arg-type]


# -- memory figures, labelled (issue 8) --------------------------------------------------------
@pilot_test
async def test_a_held_ramp_shows_user_space_and_host_figures_per_instance(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        app.query_one(Controls).set_scenario("ramp")
        app.query_one("#count", Input).value = "c=2,s=3,w=40"
        await pilot.press("r")
        await until(pilot, lambda: app.state.held)
        await pilot.pause(0.3)
        assert app.state.result is not None
        for name, panel in app.panels.items():
            memory = app.state.result.runtimes[name].memory
            assert memory is not None and memory.host_bytes_per_instance is not None, name
            text = panel.text()
            view = panel.view
            assert view is not None
            assert view.memory_line == f"user-space {format_bytes(memory.pss_bytes_per_instance)}/instance ({memory.metric})"
            assert view.host_line == f"host {format_bytes(memory.host_bytes_per_instance)}/instance (MemAvailable fall)"
            assert f"{memory.instances_per_gib:,.0f} instances per GiB (from host)" in text, text
            assert "ramp " in text and "instances/s" in text, text
        # The fake's host cost is above its PSS: per GiB follows the host figure, not PSS.
        wasm = app.state.result.runtimes["wasm"].memory
        assert wasm is not None and wasm.instances_per_gib == pytest.approx(GIB / wasm.host_bytes_per_instance)  # type: ignore[operator]
        assert wasm.instances_per_gib < GIB / wasm.pss_bytes_per_instance
        await pilot.press("r")
        await until(pilot, lambda: not app.running)


@pilot_test
async def test_a_limit_that_stops_a_ramp_is_named_in_its_panel(tmp_path: Path) -> None:
    app = fake_app(tmp_path, limit_after={"wasm": 25})
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        app.query_one(Controls).set_scenario("ramp")
        app.query_one("#count", Input).value = "c=1,s=1,w=40"
        await pilot.press("r")
        await until(pilot, lambda: app.state.held)
        await pilot.pause(0.3)
        text = app.panels["wasm"].text()
        assert "⚠ wasm ramp stopped at 25 of 40 instances: fake pids limit of 25 instances" in text, text
        assert "⚠" not in app.panels["subprocess"].text()
        await pilot.press("r")
        await until(pilot, lambda: not app.running)
        assert app.lab.live_instances() == 0  # type: ignore[attr-defined]


def test_the_host_basis_is_named_by_the_source_it_came_from() -> None:
    from edgelab.results import MemoryResult
    from edgelab.tui.view import host_basis_words

    def memory(**kwargs: object) -> MemoryResult:
        fields: dict[str, object] = dict(instances=1000, pss_bytes_per_instance=10_000.0, metric="PSS",
                                         mem_available_bytes_per_instance=None)
        fields.update(kwargs)
        return MemoryResult(**fields)  # type: ignore[arg-type]

    stable = memory(mem_available_bytes_per_instance=14_000.0, mem_available_noise_bytes=100_000.0)
    assert stable.host_bytes_per_instance == 14_000.0
    assert host_basis_words(stable) == "MemAvailable fall"
    noisy_cgroup = memory(mem_available_bytes_per_instance=100.0, mem_available_noise_bytes=10_000_000.0,
                          cgroup_bytes_per_instance=30_000.0)
    assert host_basis_words(noisy_cgroup) == "cgroup incl. kernel"
    above = memory(mem_available_bytes_per_instance=100.0, mem_available_noise_bytes=10_000_000.0,
                   cgroup_bytes_per_instance=5_000.0)
    assert host_basis_words(above) == "PSS, above its cgroup"
    noisy = memory(instances=10, mem_available_bytes_per_instance=100.0, mem_available_noise_bytes=10_000_000.0)
    assert noisy.host_bytes_per_instance is None
    assert host_basis_words(noisy) == "MemAvailable fall within noise"
    assert host_basis_words(memory()) == "not measured"
    # 3-10x its noise: a rough figure, said with its uncertainty.
    rough = memory(mem_available_bytes_per_instance=14_000.0, mem_available_noise_bytes=2_800_000.0)
    assert rough.host_bytes_per_instance == 14_000.0
    assert host_basis_words(rough) == "MemAvailable fall, rough: ±20%"


def test_the_memory_warning_line_names_a_limit_or_what_would_steady_the_host_figure() -> None:
    from edgelab.results import MemoryResult
    from edgelab.tui.view import memory_warning

    base: dict[str, object] = dict(instances=10, pss_bytes_per_instance=10_000.0, metric="PSS")
    limited = MemoryResult(**base, mem_available_bytes_per_instance=None,  # type: ignore[arg-type]
                           limit="wasm ramp stopped at 10 of 40 instances: out of mappings")
    assert memory_warning(limited) == "⚠ wasm ramp stopped at 10 of 40 instances: out of mappings"
    noisy = MemoryResult(**base, mem_available_bytes_per_instance=100.0,  # type: ignore[arg-type]
                         mem_available_noise_bytes=1_000_000.0)
    assert memory_warning(noisy) == "⚠ hold 1,000+ instances for a stable host figure"
    busy = MemoryResult(**{**base, "instances": 5_000}, mem_available_bytes_per_instance=10.0,  # type: ignore[arg-type]
                        mem_available_noise_bytes=1_000_000.0)
    assert memory_warning(busy) == "⚠ MemAvailable moved with other processes: rerun on a quieter machine"
    stable = MemoryResult(**base, mem_available_bytes_per_instance=50_000.0,  # type: ignore[arg-type]
                          mem_available_noise_bytes=1_000.0)
    assert memory_warning(stable) == ""


@pilot_test
async def test_e_into_a_folder_whose_parent_is_missing_says_so_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-parent" / "exports"
    app = EdgelabApp(lab=FakeLab(), export_dir=missing, deterministic=True)  # type: ignore[arg-type]
    async with app.run_test(size=SIZE) as pilot:
        await run_to_end(pilot)
        await pilot.press("e")
        await until(pilot, lambda: exported(app) and "export failed" in str(app.query_one("#status").render()))
        assert f"cannot export into {missing}" in str(app.query_one("#status").render())
    assert not missing.parent.exists()


# -- the registry is the one list; the UI never builds a runtime ------------------------------------
def _variant_rungs(count: int) -> tuple[str, ...]:
    from edgelab.runtimes import registry

    found = tuple(n for n in registry.names() if ":" in n)[:count]
    if len(found) < count:
        pytest.skip(f"fewer than {count} rungs with a variant registered yet")
    return found


@pilot_test
async def test_any_registered_rung_gets_a_panel_and_its_labels_from_the_lab(tmp_path: Path) -> None:
    """Panels are the rungs asked for (ids from RuntimeSpec.slug: ``wasm:jit`` is no CSS id);
    their labels and marks come from the lab's RuntimeDescribed, and the only runtimes made
    are the lab's own, one per rung."""
    rungs = ("subprocess", *_variant_rungs(2))
    lab = FakeLab()
    mark = "emulated (TCG): no KVM here"
    made = lab._factory

    def factory(name: str, session: Session) -> Runtime:
        runtime = made(name, session)
        if name == rungs[-1]:
            runtime.marks = lambda: (mark,)  # type: ignore[method-assign]
        return runtime

    lab._factory = factory  # type: ignore[method-assign]
    app = EdgelabApp(lab=lab, export_dir=tmp_path, deterministic=True, runtimes=rungs)  # type: ignore[arg-type]
    async with app.run_test(size=SIZE) as pilot:
        await run_to_end(pilot)
        assert list(app.panels) == list(rungs)
        for name in rungs:
            panel = app.query_one(f"#panel-{name.replace(':', '-')}")
            text = panel.text()  # type: ignore[attr-defined]
            assert "20 cold starts" in text and "includes: fixed fake timings" in text, (name, text)
        assert app.state.runtimes[rungs[-1]].marks == (mark,)
        # Beside its figures (short_warning keeps the part before the colon), not only in exports:
        assert "⚠ emulated (TCG)" in app.panels[rungs[-1]].text()
        assert "emulated" not in app.panels[rungs[0]].text()
        assert sorted(r.name for r in lab.made) == sorted(rungs)
        from edgelab.runtimes import registry

        # Before any run too: what each rung is comes from its registry entry (a tooltip).
        assert str(app.panels[rungs[-1]].tooltip).startswith(f"{rungs[-1]}: {registry.spec(rungs[-1]).summary}")


def test_runtime_described_labels_a_panel_before_any_result() -> None:
    from edgelab.events import RuntimeDescribed
    from edgelab.runtimes.registry import RuntimeInfo
    from edgelab.tui.state import LabState
    from edgelab.tui.view import panel_view

    state = LabState(("wasm",))
    info = RuntimeInfo(
        "wasm", "wasm", "wasm", ("instantiate", "first_response"), "instantiate + first call",
        "PSS of the host", versions=(("wasmtime", "99.0"),), marks=("a caveat",),
    )  # fmt: skip
    state.apply([RuntimeDescribed(info)])
    live = state.runtimes["wasm"]
    assert (live.startup_includes, live.memory_metric, live.phase_names) == (
        "instantiate + first call", "PSS of the host", ("instantiate", "first_response"),
    )  # fmt: skip
    assert panel_view(live, None, "burst").includes_line == "includes: instantiate + first call"
    assert state.take_versions() == {"wasmtime": "99.0"} and state.take_versions() == {}


def test_no_tui_module_builds_or_probes_a_runtime() -> None:
    """The UI labels figures from events: no create_runtime, no lab.runtime(), no hasattr."""
    import edgelab.tui.app

    tui = Path(edgelab.tui.app.__file__).parent
    for source in sorted(tui.glob("*.py")):
        text = source.read_text()
        for banned in ("create_runtime", ".runtime(", "hasattr("):
            assert banned not in text, f"{source.name} uses {banned}"


def test_the_lab_flag_takes_registered_rungs_and_refuses_others(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgelab import cli
    from edgelab.tui import app as app_module

    rungs = ("subprocess", *_variant_rungs(1))
    seen: dict[str, object] = {}
    monkeypatch.setattr(app_module, "run_app", lambda **kwargs: seen.update(kwargs) or 0)
    monkeypatch.setattr(cli, "_exit_cleanly_on_sigterm", lambda: None)
    assert cli.main(["--runtimes", ",".join(rungs)]) == 0
    assert seen["runtimes"] == rungs
    assert cli.main(["--runtimes", "nope"]) == 2


def test_the_fake_gives_any_registered_rung_its_familys_profile() -> None:
    from edgelab.runtimes import registry
    from edgelab.runtimes.fake import _PROFILES, fake_profile, rung_factor

    for entry in registry.specs():
        phases, pss, host = fake_profile(entry.name)
        family_phases, family_pss, _ = _PROFILES.get(entry.family, fake_profile("no-such-family"))
        assert tuple(k for k, _ in phases) == tuple(k for k, _ in family_phases), entry.name
        factor = rung_factor(entry.name)
        assert factor == 1.0 if entry.variant is None else 0.25 <= factor < 2.25
        assert pss == round(family_pss * factor) and host > 0
        assert fake_profile(entry.name) == (phases, pss, host)  # deterministic
        runtime = FakeRuntime(Session(), as_runtime=entry.name)
        assert runtime.describe().family == entry.family  # still marked fake:
        assert runtime.memory_metric.startswith("fake") and runtime.versions() == {"fake": "1"}


#: Five rungs of the ladder side by side (the panels are made for three to five).
FIVE_RUNGS = ("container:paused", "subprocess:forkserver", "wasm", "wasm:jit", "isolate")


def test_lab_with_five_rungs_after_a_burst(snap_compare, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from edgelab.runtimes import registry

    missing = [n for n in FIVE_RUNGS if n not in registry.names()]
    if missing:
        pytest.skip(f"not registered yet: {', '.join(missing)}")
    lab = Lab(runtime_factory=lambda name, session: FakeRuntime(session, as_runtime=name))
    app = EdgelabApp(
        lab=lab, screenshot_dir=tmp_path, export_dir=tmp_path, deterministic=True,
        only_workloads=("hello",), runtimes=FIVE_RUNGS,
    )  # fmt: skip

    async def burst(pilot: Pilot) -> None:
        await run_to_end(pilot)

    assert snap_compare(app, terminal_size=(160, 45), run_before=burst)
