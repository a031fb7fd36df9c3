"""Remake the screenshots in this folder (SVG and PNG): the lab itself saves them (its s key), at 160x45,
after real runs on the real runtimes (Docker engine, native processes, wasmtime).

Run from the repository: ``python screenshots/make.py``. Takes about a minute.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from textual.pilot import Pilot  # noqa: E402
from textual.widgets import Input  # noqa: E402

from edgelab.tui.app import EdgelabApp  # noqa: E402
from edgelab.tui.controls import Controls  # noqa: E402

SIZE = (160, 45)
RAMP = "c=20,s=50,w=2000"


async def until(condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for the lab")
        await asyncio.sleep(0.1)


async def shoot(pilot: Pilot, app: EdgelabApp, name: str) -> None:
    """Press s, as a person would, and give both pictures (SVG and PNG) their name."""
    before = set(HERE.glob("*.svg")) | set(HERE.glob("*.png"))
    await pilot.press("s")
    await until(lambda: len((set(HERE.glob("*.svg")) | set(HERE.glob("*.png"))) - before) == 2, 20)
    for new in (set(HERE.glob("*.svg")) | set(HERE.glob("*.png"))) - before:
        new.replace((HERE / name).with_suffix(new.suffix))
    print("saved", HERE / name, "and", (HERE / name).with_suffix(".png").name)


async def pick(pilot: Pilot, app: EdgelabApp, workload: str, scenario: str, n: str) -> None:
    controls = app.query_one(Controls)
    await until(lambda: controls.workload() is not None, 30)
    table = app.query_one("#workloads")
    table.focus()
    for _ in range(10):
        await pilot.press("up")
    while controls.workload() != workload:
        await pilot.press("down")
    controls.set_scenario(scenario)
    app.query_one("#count", Input).value = n
    await pilot.pause()


async def main() -> None:
    app = EdgelabApp(screenshot_dir=HERE, export_dir=Path(tempfile.mkdtemp(prefix="edgelab-shots-")))
    async with app.run_test(size=SIZE) as pilot:
        try:
            await pick(pilot, app, "fib", "burst", "20")
            await pilot.press("r")
            await until(lambda: app.state.result is not None and not app.running, 300)
            await pilot.pause(0.5)
            await shoot(pilot, app, "burst-fib.svg")
            # The screens for the back of the room, from the same burst: every runtime on one
            # log axis with histograms (g), and the presentation layout (p).
            for key, name in (("g", "chart-fib.svg"), ("p", "present-fib.svg")):
                await pilot.press(key)
                await pilot.pause(0.5)
                await shoot(pilot, app, name)
                await pilot.press("escape")
                await pilot.pause(0.3)
            await pilot.press("t")
            await pilot.pause(0.5)
            await shoot(pilot, app, "burst-fib-light.svg")
            await pilot.press("t")

            await pick(pilot, app, "hello", "ramp", RAMP)
            await pilot.press("r")
            # RampHeld: every target reached and the memory figures settled.
            await until(lambda: app.state.held, 600)
            await pilot.pause(1.5)
            await shoot(pilot, app, "ramp-hello-holding.svg")
            await pilot.press("r")
            await until(lambda: app.state.result is not None and not app.running, 300)
            await pilot.pause(0.5)
            await shoot(pilot, app, "ramp-hello.svg")
        finally:
            await app.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
