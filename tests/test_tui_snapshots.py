"""The lab's layout pinned as SVG snapshots, on the fake runtime after a completed burst.

Deterministic by construction: fixed fake timings, fixed host facts, no clocks, CPU use or
first-paint time on screen, one workload listed. Regenerate with
``pytest tests/test_tui_snapshots.py --snapshot-update`` and look at the SVGs before committing.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input

from edgelab.lab import Lab
from edgelab.runtimes.fake import FakeRuntime
from edgelab.tui.app import EdgelabApp
from edgelab.tui.artifacts import ARTIFACT_KINDS, PENDING
from edgelab.tui.controls import Controls

#: A ramp's rate is wall time over launches, even on the fake runtime: pinned for the picture.
PINNED_RAMP_RATE_PER_S = 12_345.0


def fake_app(tmp_path: Path, unavailable: dict[str, str] | None = None) -> EdgelabApp:
    lab = Lab(
        runtime_factory=lambda name, session: FakeRuntime(
            session, as_runtime=name, unavailable=(unavailable or {}).get(name)
        )
    )
    return EdgelabApp(
        lab=lab,
        screenshot_dir=tmp_path,
        export_dir=tmp_path,
        deterministic=True,
        only_workloads=("hello",),
    )


def sizes_shown(app: EdgelabApp) -> list[str]:
    table = app.query_one("#workloads", DataTable)
    return [str(cell) for cell in table.get_row_at(0)[1 : 1 + len(ARTIFACT_KINDS)]]


async def completed_burst(pilot: Pilot) -> None:
    app = pilot.app
    assert isinstance(app, EdgelabApp)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while app.query_one(Controls).workload() is None or PENDING in sizes_shown(app):
        assert loop.time() < deadline, "workload list never loaded"
        await asyncio.sleep(0.05)
    await pilot.press("r")
    while app.state.result is None or app.running:
        assert loop.time() < deadline, "burst never finished"
        await asyncio.sleep(0.05)
    await pilot.pause()


@pytest.mark.parametrize("size", [(80, 24), (160, 45)], ids=["80x24", "160x45"])
def test_lab_after_a_burst(snap_compare, tmp_path: Path, size: tuple[int, int]) -> None:
    assert snap_compare(fake_app(tmp_path), terminal_size=size, run_before=completed_burst)


def test_lab_with_an_unavailable_runtime(snap_compare, tmp_path: Path) -> None:
    app = fake_app(tmp_path, unavailable={"container": "no engine"})
    assert snap_compare(app, terminal_size=(160, 45), run_before=completed_burst)


async def held_ramp(pilot: Pilot) -> None:
    """A ramp of c=2,s=3,w=40 that reached its targets and holds them (memory settled)."""
    app = pilot.app
    assert isinstance(app, EdgelabApp)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while app.query_one(Controls).workload() is None or PENDING in sizes_shown(app):
        assert loop.time() < deadline, "workload list never loaded"
        await asyncio.sleep(0.05)
    app.query_one(Controls).set_scenario("ramp")
    app.query_one("#count", Input).value = "c=2,s=3,w=40"
    await pilot.press("r")
    while not app.state.held:
        assert loop.time() < deadline, "ramp never held"
        await asyncio.sleep(0.05)
    for live in app.state.runtimes.values():
        assert live.memory is not None
        live.memory = replace(live.memory, ramp_rate_per_s=PINNED_RAMP_RATE_PER_S)
    app.drain()
    await pilot.pause()


@pytest.mark.parametrize("size", [(80, 24), (160, 45)], ids=["80x24", "160x45"])
def test_lab_holding_a_ramp(snap_compare, tmp_path: Path, size: tuple[int, int]) -> None:
    """User-space and host figures per instance, labelled; per GiB from the host figure."""
    app = fake_app(tmp_path)
    try:
        assert snap_compare(app, terminal_size=size, run_before=held_ramp)
    finally:
        if app.cancel_event is not None:
            app.cancel_event.set()
