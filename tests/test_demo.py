"""``edgelab demo``: scripts checked before anything runs, and played end to end on the fake
runtime (each caption shown, each step's figures on screen when its timer starts, timers that
move on, a loop that wraps, a key that advances, q that leaves nothing)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from edgelab.cli import main
from edgelab.demo import KINDS, load_script, parse_script
from edgelab.errors import UsageError
from edgelab.tui.demo import DemoApp, DemoCaption
from edgelab.tui.ladder import LadderScreen
from tests.test_tui_pilot import SIZE, FakeLab, pilot_test, until

THREE_STEPS = """
title = "test demo"
[[step]]
kind = "burst"
caption = "A burst on every runtime"
count = 5
advance = 0.4

[[step]]
kind = "ramp"
caption = "A ramp of 30 Wasm instances against 5 containers"
runtimes = ["container", "wasm"]
resident = { wasm = 30, container = 5 }
advance = 0.4

[[step]]
kind = "ladder"
caption = "The ladder"
advance = 0.4
"""


def demo_app(tmp_path: Path, text: str, loop: bool = False) -> DemoApp:
    script = parse_script(text, "test.toml")
    return DemoApp(
        script,
        loop=loop,
        lab=FakeLab(),  # type: ignore[arg-type]
        screenshot_dir=tmp_path / "screenshots",
        export_dir=tmp_path / "exports",
        deterministic=True,
        only_workloads=("hello",),
    )


def banner(app: DemoApp) -> str:
    """The caption banner on the screen in front (the lab's or a view's)."""
    return str(app.screen.query_one(DemoCaption).render())


def record_when_figures_are_in(app: DemoApp) -> list[dict[str, Any]]:
    """What the screen shows at the moment each step's timer starts (its figures are in)."""
    seen: list[dict[str, Any]] = []
    original = app._wait_to_advance

    async def wait(step: Any) -> None:
        seen.append(
            {
                "step": step.index,
                "banner": banner(app),
                "panels": {name: panel.text() for name, panel in app.panels.items()},
                "held": app.state.held,
                "screen": app.screen,
                "started": time.monotonic(),
                "chart": str(app.screen.query_one("#ladder-chart").render()) if isinstance(app.screen, LadderScreen) else "",
            }
        )
        await original(step)

    app._wait_to_advance = wait  # type: ignore[method-assign]
    return seen


@pilot_test
async def test_a_three_step_script_plays_end_to_end_with_captions_figures_and_timers(tmp_path: Path) -> None:
    app = demo_app(tmp_path, THREE_STEPS)
    seen = record_when_figures_are_in(app)
    countdowns: list[str] = []
    async with app.run_test(size=SIZE):
        while not app.finished:
            if app.remaining_s is not None and app.step is not None:
                countdowns.append(f"{app.step.index}:{banner(app)}")
            await asyncio.sleep(0.05)
            if len(countdowns) > 1_000:
                raise AssertionError("the demo never finished")
        assert app.played == [1, 2, 3]
        assert app.shown_captions == [
            "A burst on every runtime",
            "A ramp of 30 Wasm instances against 5 containers",
            "The ladder",
        ]
        burst, ramp, ladder = seen
        assert "A burst on every runtime" in burst["banner"] and "step 1/3" in burst["banner"]
        assert "test demo" in burst["banner"]
        for name, text in burst["panels"].items():
            assert "5 cold starts" in text, (name, text)
            assert "phases p50:" in text, (name, text)
        assert ramp["held"], "the ramp's timer started before it held its instances"
        assert "running 30" in ramp["panels"]["wasm"] and "running 5" in ramp["panels"]["container"]
        assert "/instance" in ramp["panels"]["wasm"]
        assert ramp["panels"]["subprocess"].startswith("off (toggle it on"), ramp["panels"]["subprocess"]
        assert isinstance(ladder["screen"], LadderScreen)
        assert "The ladder" in ladder["banner"]
        assert "container" in ladder["chart"] and "wasm" in ladder["chart"]
        # The timers counted down and each step stayed its 0.4 s once its figures were in.
        assert any("next in 1 s" in line for line in countdowns)
        assert ramp["started"] - burst["started"] >= 0.4
        assert ladder["started"] - ramp["started"] >= 0.4
        assert "end of the demo" in banner(app)
        # The held ramp was ended before the ladder, its instances torn down.
        assert app.lab.live_instances() == 0  # type: ignore[attr-defined]


LADDER_RUN = """
[[step]]
kind = "ladder"
caption = "The ladder, run on its rungs"
runtimes = ["wasm", "wasm:aot", "subprocess", "subprocess:forkserver"]
count = 3
advance = 0.3
"""


@pilot_test
async def test_a_ladder_step_naming_rungs_runs_a_burst_of_them_then_shows_their_ladder(tmp_path: Path) -> None:
    script = parse_script(LADDER_RUN, "test.toml")
    step = script.steps[0]
    assert step.settings.scenario == "burst" and step.settings.count == 3
    assert step.settings.runtimes == ("wasm", "wasm:aot", "subprocess", "subprocess:forkserver")
    app = demo_app(tmp_path, LADDER_RUN)
    seen = record_when_figures_are_in(app)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.finished, timeout_s=20)
        (ladder,) = seen
        assert isinstance(ladder["screen"], LadderScreen)
        assert "The ladder, run on its rungs" in ladder["banner"]
        # The view was up while the burst ran; when its timer started every rung had its 3.
        rows = {line.split()[0]: line for line in ladder["chart"].splitlines() if line.strip()}
        for rung in ("wasm", "wasm:aot", "subprocess", "subprocess:forkserver"):
            assert "n=3" in rows.get(rung, ""), ladder["chart"]
        # Back on the lab's screen the panels show the same burst.
        rungs = ("wasm", "wasm:aot", "subprocess", "subprocess:forkserver")
        try:
            await until(pilot, lambda: all("3 cold starts" in app.panels[r].text() for r in rungs))
        except AssertionError:
            raise AssertionError({r: app.panels[r].text() for r in rungs}) from None
        assert app.lab.live_instances() == 0  # type: ignore[attr-defined]


@pilot_test
async def test_loop_starts_again_after_the_last_step_and_q_leaves_nothing(tmp_path: Path) -> None:
    text = '[[step]]\nkind = "burst"\ncaption = "again"\ncount = 3\nadvance = 0.1\n'
    app = demo_app(tmp_path, text, loop=True)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.loops >= 2, timeout_s=10)
        assert app.played[:2] == [1, 1]
        assert not app.finished
        await until(pilot, lambda: "loop 3" in banner(app) or app.loops >= 3, timeout_s=5)
        await pilot.press("q")
        await until(pilot, lambda: not app.is_running, timeout_s=5)
    assert app.lab.live_instances() == 0  # type: ignore[attr-defined]


@pilot_test
async def test_a_key_step_waits_for_space_or_the_right_arrow(tmp_path: Path) -> None:
    text = (
        '[[step]]\nkind = "burst"\ncaption = "press a key"\ncount = 3\nadvance = "key"\n'
        '[[step]]\nkind = "ladder"\ncaption = "the ladder"\nadvance = "key"\n'
    )
    app = demo_app(tmp_path, text)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.step is not None and app.state.result is not None and not app.running)
        await asyncio.sleep(0.1)
        assert "space / → next" in banner(app)
        await asyncio.sleep(0.4)  # the step must hold without a key: time to (wrongly) move on
        assert app.played == [] and app.step is not None and app.step.index == 1
        await pilot.press("space")
        # The view is pushed, then its banner mounted on it and filled: wait for all three.
        await until(pilot, lambda: isinstance(app.screen, LadderScreen) and bool(app.screen.query(DemoCaption))
                    and bool(banner(app).strip()))  # fmt: skip
        assert app.played == [1] and "the ladder" in banner(app)
        await pilot.press("right")
        await until(pilot, lambda: app.finished)
        assert app.played == [1, 2]
        assert not isinstance(app.screen, LadderScreen)


@pilot_test
async def test_q_mid_ramp_stops_it_and_no_next_step_starts(tmp_path: Path) -> None:
    text = (
        '[[step]]\nkind = "ramp"\ncaption = "hold"\nruntimes = ["wasm"]\nresident = 40\nadvance = "key"\n'
        '[[step]]\nkind = "burst"\ncaption = "never"\ncount = 3\n'
    )
    app = demo_app(tmp_path, text)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state.held)
        assert app.lab.live_instances() == 40  # type: ignore[attr-defined]
        await pilot.press("q")
        await until(pilot, lambda: not app.is_running, timeout_s=5)
    assert app.played == [] and app.shown_captions == ["hold"]
    assert app.lab.live_instances() == 0  # type: ignore[attr-defined]


def test_the_shipped_script_covers_the_story_and_loads() -> None:
    script = load_script()
    kinds = [s.kind for s in script.steps]
    assert kinds == ["burst", "ladder", "ramp", "traffic", "whatif", "claims"]
    ramp = script.steps[2].settings
    assert dict(ramp.resident) == {"container": 50, "wasm": 10_000}
    # The what-if step is fed the newest burst or traffic run: a traffic run has warm requests.
    assert script.steps[3].settings.scenario == "traffic"
    assert script.steps[4].preset == "agent-llm"
    assert script.steps[0].settings.runtimes == ("container", "subprocess", "wasm")
    # The ladder runs its own burst of seven rungs, each with a panel in the lab.
    ladder = script.steps[1].settings
    assert ladder.scenario == "burst" and ladder.count == 5 and len(ladder.runtimes) == 7
    assert set(ladder.runtimes) <= set(script.rungs) and "isolate" in ladder.runtimes
    assert set(KINDS) >= set(kinds)


BAD = {
    "unknown kind": ('[[step]]\nkind = "bursts"\ncaption = "x"\n', "step 1: kind is 'bursts'"),
    "missing caption": ('[[step]]\nkind = "burst"\ncaption = "x"\n[[step]]\nkind = "ladder"\n', "step 2 (ladder): caption is missing"),
    "bad number": ('[[step]]\nkind = "burst"\ncaption = "x"\ncount = 0\n', "step 1 (burst): count must be"),
    "bad advance": ('[[step]]\nkind = "claims"\ncaption = "x"\nadvance = "soon"\n', "step 1 (claims): advance must be"),
    "nan resident": ('[[step]]\nkind = "ramp"\ncaption = "x"\nresident = nan\n', "step 1 (ramp): resident must be"),
    "unknown workload": ('[[step]]\nkind = "burst"\ncaption = "x"\nworkload = "nope"\n', "step 1 (burst): unknown workload 'nope'"),
    "unknown runtime": ('[[step]]\nkind = "burst"\ncaption = "x"\nruntimes = ["banana"]\n', "step 1 (burst): unknown runtime 'banana'"),
    "unknown preset": ('[[step]]\nkind = "whatif"\ncaption = "x"\npreset = "nope"\n', "step 1 (whatif): unknown preset 'nope'"),
    "unknown key": ('[[step]]\nkind = "ladder"\ncaption = "x"\npreset = "agent-llm"\n', "step 1 (ladder): unknown key 'preset'"),
    "ladder count": ('[[step]]\nkind = "ladder"\ncaption = "x"\ncount = 0\n', "step 1 (ladder): count must be"),
    "long caption": ('[[step]]\nkind = "ladder"\ncaption = "' + "x" * 77 + '"\n', "step 1 (ladder): caption must be one line"),
    "not toml": ("[[step]\nkind=", "not TOML"),
    "no steps": ('title = "x"\n', "no steps"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_malformed_script_is_one_line_naming_file_and_step_exit_2(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, expected = BAD[case]
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main(["demo", "--script", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1, err
    assert err.startswith(f"edgelab: demo script {path}: "), err
    assert expected in err, err


def test_a_step_outside_the_panels_is_refused_before_anything_runs() -> None:
    text = '[[step]]\nkind = "burst"\ncaption = "x"\nruntimes = ["wasm:jit"]\n'
    with pytest.raises(UsageError, match="step 1 \\(burst\\): wasm:jit has no panel"):
        parse_script(text, "t.toml", rungs=("wasm", "subprocess"))
    assert parse_script(text, "t.toml").rungs[-1] == "wasm:jit"


def test_the_real_cli_prints_one_line_and_exits_2_without_opening_the_screen(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[[step]]\nkind = "burst"\ncaption = "ok"\n[[step]]\nkind = "teleport"\ncaption = "x"\n')
    done = subprocess.run(
        [sys.executable, "-m", "edgelab", "demo", "--script", str(path)],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2
    assert done.stdout == ""  # no escape sequence: the screen was never taken
    assert done.stderr == f"edgelab: demo script {path}: step 2: kind is 'teleport': choose from {', '.join(KINDS)}\n"
