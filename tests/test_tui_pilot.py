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
from edgelab.runtimes.base import Runtime
from edgelab.runtimes.fake import FakeRuntime
from edgelab.session import Session
from edgelab.stats import format_duration_ns
from edgelab.tui.app import EdgelabApp
from edgelab.tui.controls import Controls
from edgelab.tui.help import HelpScreen
from edgelab.tui.view import NOT_YET

SIZE = (160, 45)
UNITS = ("ns", "µs", "ms", " s")


class FakeLab(Lab):
    """A Lab on fake runtimes that remembers every runtime it made, to check the teardown."""

    def __init__(self, unavailable: dict[str, str] | None = None) -> None:
        self.made: list[Runtime] = []

        def factory(name: str, session: Session) -> Runtime:
            runtime = FakeRuntime(session, as_runtime=name, unavailable=(unavailable or {}).get(name))
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
    return EdgelabApp(lab=FakeLab(**kwargs), screenshot_dir=tmp_path, deterministic=True)  # type: ignore[arg-type]


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
        assert "/instance so far" in app.panels["wasm"].text()
        await pilot.press("r")
        await until(pilot, lambda: not app.running)
        assert app.state.cancelled
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
        for panel in app.panels.values():
            assert "starts/s achieved" in panel.text()
            assert has_unit(panel.view.p50)  # type: ignore[union-attr]
        assert app.state.result is not None
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
        await until(pilot, lambda: len(list(tmp_path.iterdir())) >= 3)
        await app.workers.wait_for_complete()
    suffixes = sorted(p.suffix for p in tmp_path.iterdir())
    assert suffixes == [".csv", ".json", ".md"]
    assert '"startup_us"' in next(tmp_path.glob("*.json")).read_text()


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
    from edgelab.errors import UsageError
    from edgelab.tui.controls import resident_counts

    every = ("container", "subprocess", "wasm")
    assert resident_counts("50", every) == {"container": 50, "subprocess": 50, "wasm": 50}
    assert resident_counts("c=20, s=50, wasm=2000", every) == {
        "container": 20, "subprocess": 50, "wasm": 2000,
    }
    assert resident_counts("w=10,c=3", ("container", "wasm")) == {"container": 3, "wasm": 10}
    for bad, words in (("x=1,c=2,s=3", "'x' is not a runtime"), ("c=2,w=3", "for subprocess too"),
                       ("c=0,s=1,w=1", "positive number"), ("ten", "positive number")):
        with pytest.raises(UsageError, match=words):
            resident_counts(bad, every)


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
