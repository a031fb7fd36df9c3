"""The lab's layout pinned as SVG snapshots, on the fake runtime after a completed burst.

Deterministic by construction: fixed fake timings, fixed host facts, no clocks, CPU use or
first-paint time on screen, one workload listed. Regenerate with
``pytest tests/test_tui_snapshots.py --snapshot-update`` and look at the SVGs before committing.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable

from edgelab.lab import Lab
from edgelab.runtimes.fake import FakeRuntime
from edgelab.tui.app import EdgelabApp
from edgelab.tui.artifacts import ARTIFACT_KINDS, PENDING
from edgelab.tui.controls import Controls


def fake_app(tmp_path: Path, unavailable: dict[str, str] | None = None) -> EdgelabApp:
    lab = Lab(
        runtime_factory=lambda name, session: FakeRuntime(
            session, as_runtime=name, unavailable=(unavailable or {}).get(name)
        )
    )
    return EdgelabApp(
        lab=lab, screenshot_dir=tmp_path, deterministic=True, only_workloads=("hello",)
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
