"""Runs the lab (TUI) ends go into the history, as ``edgelab run``'s do, unless the lab is the
fake one, the demo, or ``--no-history``; and every save prunes the history to the newest
``$EDGELAB_HISTORY_KEEP`` runs, deleting run files only. Every test keeps its history in a tmp
dir (EDGELAB_DATA_DIR)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from test_history import fake_run
from test_tui_pilot import SIZE, FakeLab, pilot_test, ready, run_to_end, until
from textual.widgets import Input

from edgelab.cli import build_parser, main
from edgelab.errors import UsageError
from edgelab.export import to_json
from edgelab.history import list_runs, load_export, resolve, save_run
from edgelab.results import RunResult
from edgelab.tui.app import EdgelabApp

START = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def history_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "data"
    monkeypatch.setenv("EDGELAB_DATA_DIR", str(folder))
    monkeypatch.delenv("EDGELAB_HISTORY_KEEP", raising=False)
    return folder


@pytest.fixture(scope="module")
def base_run() -> RunResult:
    return fake_run(count=2)


def started(base: RunResult, minutes: int, session: str = "s") -> RunResult:
    """``base`` as if it had started ``minutes`` after START (its name in the history)."""
    when = (START + timedelta(minutes=minutes)).isoformat()
    return RunResult(metadata={**base.metadata, "started": when, "session": session}, runtimes=base.runtimes)


def status(app: EdgelabApp) -> str:
    return str(app.query_one("#status").render())


# -- pruning ---------------------------------------------------------------------------------------
def test_a_save_keeps_exactly_the_newest_n_and_never_a_foreign_file(
    base_run: RunResult, history_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = history_dir / "runs"
    runs.mkdir(parents=True)
    foreign = [
        runs / "notes.txt",
        runs / ".19990101T000000.000000Z-x.json.tmp",  # a half-written export's temporary name
        runs / "19990101T000000.000000Z-x.json.bak",
        runs / "19990101T000000.000000Z-x.JSON",
        runs / "1999-01-01-run.json",
    ]
    for path in foreign:
        path.write_text("mine")
    folder = runs / "19990101T000000.000000Z-folder.json"  # a run's name, but a folder
    folder.mkdir()
    (folder / "inside.txt").write_text("mine")
    elsewhere = history_dir / "19990101T000000.000000Z-beside.json"  # a run's name, not in runs/
    elsewhere.write_text("mine")

    monkeypatch.setenv("EDGELAB_HISTORY_KEEP", "3")
    saved = [save_run(started(base_run, minutes)) for minutes in range(6)]
    assert [p for p in list_runs() if p.is_file()] == saved[:2:-1]  # the three newest, newest first
    assert not any(p.exists() for p in saved[:3])
    assert saved[-1].read_text() == to_json(started(base_run, 5))
    for path in (*foreign, folder / "inside.txt", elsewhere):
        assert path.read_text() == "mine", path
    assert folder.is_dir()

    monkeypatch.setenv("EDGELAB_HISTORY_KEEP", "1")
    newest = save_run(started(base_run, 10))
    assert [p for p in list_runs() if p.is_file()] == [newest]
    assert all(path.exists() for path in foreign)


def test_the_default_is_a_thousand_and_the_run_just_saved_is_never_pruned(
    base_run: RunResult, history_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = history_dir / "runs"
    runs.mkdir(parents=True)
    text = to_json(base_run)
    older = [runs / f"{START + timedelta(minutes=m):%Y%m%dT%H%M%S}.000000Z-s{m}.json" for m in range(1000)]
    for path in older:
        path.write_text(text)
    assert list_runs() == older[::-1]
    newest = save_run(started(base_run, 1000))
    assert list_runs() == [newest, *older[:0:-1]]  # 1,000: the oldest went
    assert not older[0].exists()
    monkeypatch.setenv("EDGELAB_HISTORY_KEEP", "")  # empty: the default too
    assert save_run(started(base_run, 1001)) == list_runs()[0] and len(list_runs()) == 1000
    assert not older[1].exists()

    monkeypatch.setenv("EDGELAB_HISTORY_KEEP", "2")
    a, b = save_run(started(base_run, 2000)), save_run(started(base_run, 2001))
    assert list_runs() == [b, a]
    # A long ramp that ended after two shorter runs began: older than both by its start, kept.
    ramp = save_run(started(base_run, 1500, session="ramp"))
    assert list_runs() == [b, a, ramp]
    c = save_run(started(base_run, 2002))
    assert list_runs() == [c, b]


@pytest.mark.parametrize("value", ["0", "-1", "abc", "1.5", "1e3", "2000000", "nan"])
def test_a_bad_keep_is_one_line_exit_2_and_nothing_is_written_or_deleted(
    value: str, base_run: RunResult, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    kept = save_run(started(base_run, 0))
    monkeypatch.setenv("EDGELAB_HISTORY_KEEP", value)
    with pytest.raises(UsageError, match=r"^EDGELAB_HISTORY_KEEP must be a whole number from 1 to 1,000,000 runs, not "):
        save_run(started(base_run, 1))
    assert list_runs() == [kept]
    for argv in (["history"], ["run", "-r", "wasm", "-n", "1"], ["compare", "last", "last"]):
        assert main(argv) == 2
        out, err = capsys.readouterr()
        assert out == "" and err == f"edgelab: EDGELAB_HISTORY_KEEP must be a whole number from 1 to 1,000,000 runs, not {value!r}\n"
    assert list_runs() == [kept]


def test_a_bad_keep_stops_the_lab_before_its_screen(history_dir: Path) -> None:
    env = dict(os.environ, EDGELAB_DATA_DIR=str(history_dir), EDGELAB_HISTORY_KEEP="many")
    for argv in ([], ["history"]):
        done = subprocess.run([sys.executable, "-m", "edgelab", *argv], capture_output=True, text=True, env=env,
                              timeout=60, stdin=subprocess.DEVNULL)  # fmt: skip
        assert done.returncode == 2, done
        assert done.stdout == ""
        assert done.stderr == "edgelab: EDGELAB_HISTORY_KEEP must be a whole number from 1 to 1,000,000 runs, not 'many'\n"


def test_history_says_how_many_it_keeps(
    base_run: RunResult, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EDGELAB_HISTORY_KEEP", "2500")
    save_run(started(base_run, 0))
    assert main(["history"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("last ")
    assert lines[-1] == "(the history keeps the newest 2,500 runs; EDGELAB_HISTORY_KEEP sets how many)"
    assert main(["history", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 1  # the JSON is the runs only


# -- the lab's runs ---------------------------------------------------------------------------------
@pilot_test
async def test_a_real_run_in_the_lab_lands_in_the_history(tmp_path: Path) -> None:
    """The lab as ``edgelab`` opens it (measuring in a process of its own, edgelab.remote),
    on real processes and real wasmtime: its run is ``last`` for compare, whatif and history."""
    app = EdgelabApp(screenshot_dir=tmp_path, export_dir=tmp_path / "exports", only_workloads=("hello",),
                     build_missing=False, runtimes=("subprocess", "wasm"), history=True)  # fmt: skip
    async with app.run_test(size=SIZE) as pilot:
        try:
            await ready(pilot)
            app.query_one("#count", Input).value = "3"
            await run_to_end(pilot, timeout_s=300)
            result = app.state.result
            assert result is not None and not app.lab.fake
            (path,) = list_runs()
            assert app.saved_as == path == resolve("last")
            assert "burst of hello finished · saved in the history as last · e exports" in status(app)
            saved = load_export(path)
            assert saved["metadata"]["session"] == result.metadata["session"]
            assert saved["metadata"]["fake"] is False
            assert [r["runtime"] for r in saved["results"]] == ["subprocess", "wasm"]
            assert all(r["count"] == 3 for r in saved["results"])
            # A second run, cancelled at once: saved too (as the CLI saves a cancelled run).
            app.query_one("#count", Input).value = "100000"
            await pilot.press("r")
            await until(pilot, lambda: app.state.runtimes["wasm"].launched >= 1, 120)
            await pilot.press("ctrl+c")
            await until(pilot, lambda: not app.running and len(list_runs()) == 2, 120)
            assert list_runs()[1] == path
            assert load_export(list_runs()[0])["metadata"]["cancelled"] is True
            assert "burst of hello cancelled · saved in the history as last" in status(app)
        finally:
            await app.shutdown()


@pilot_test
async def test_the_fake_lab_never_saves_and_a_history_that_cannot_be_written_is_one_notification(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base_run: RunResult
) -> None:
    app = EdgelabApp(lab=FakeLab(), screenshot_dir=tmp_path, export_dir=tmp_path / "exports", history=True)  # type: ignore[arg-type]
    assert app.history  # not a deterministic lab: what keeps it out is that its runtimes are fakes
    async with app.run_test(size=SIZE) as pilot:
        await run_to_end(pilot)
        assert app.state.result is not None
        assert list_runs() == [] and app.saved_as is None
        assert "finished · e exports" in status(app) and "fake runtimes" in status(app)

        # The worker's save path, with a hand-made run and a data dir that cannot be made.
        blocker = tmp_path / "a-file"
        blocker.write_text("not a folder")
        monkeypatch.setenv("EDGELAB_DATA_DIR", str(blocker / "edgelab"))
        shown = status(app)
        await asyncio.to_thread(app.save_in_history, started(base_run, 0))
        await until(pilot, lambda: any("not saved in the history" in n.message for n in app._notifications))
        (note,) = [n for n in app._notifications if "not saved in the history" in n.message]
        assert note.severity == "warning" and "\n" not in note.message
        assert note.message.startswith("not saved in the history: cannot save the run in ")
        assert app.is_running and app.saved_as is None and status(app) == shown

        # The same path with a writable one: saved, and the finished line says so.
        monkeypatch.setenv("EDGELAB_DATA_DIR", str(tmp_path / "data"))
        await asyncio.to_thread(app.save_in_history, started(base_run, 1))
        await until(pilot, lambda: app.saved_as is not None)
        assert list_runs() == [app.saved_as]
        assert "finished · saved in the history as last · e exports" in status(app)


def test_the_lab_saves_unless_told_not_to_and_the_demo_never_does(monkeypatch: pytest.MonkeyPatch) -> None:
    import edgelab.tui.app
    from edgelab.cli import _run_tui
    from edgelab.demo import load_script
    from edgelab.remote import RemoteLab
    from edgelab.serve import lab_command
    from edgelab.tui.demo import DemoApp

    seen: dict[str, object] = {}
    monkeypatch.setattr(edgelab.tui.app, "run_app", lambda **kwargs: seen.update(kwargs) or 0)
    # _run_tui, not main: main would install the CLI's signal handlers in the test process.
    assert _run_tui(build_parser(subcommands=False).parse_args([])) == 0
    assert seen["history"] is True
    assert _run_tui(build_parser(subcommands=False).parse_args(["--no-history"])) == 0
    assert seen["history"] is False

    real = RemoteLab()  # made, never started: nothing is launched here
    assert EdgelabApp(lab=real, history=True).history  # type: ignore[arg-type]
    assert not EdgelabApp(lab=real).history  # type: ignore[arg-type]
    assert not EdgelabApp(lab=real, history=True, deterministic=True).history  # type: ignore[arg-type]
    assert not DemoApp(load_script(), lab=real).history

    # edgelab serve: each tab's lab is this same App, so it saves; --no-history reaches it.
    parser = build_parser()
    assert "--no-history" not in lab_command(parser.parse_args(["serve"]))
    for argv in (["serve", "--no-history"], ["--no-history", "serve"]):
        assert lab_command(parser.parse_args(argv))[-1] == "--no-history"


@pytest.mark.parametrize("argv,saves", [
    (["run"], True), (["run", "--no-history"], False), (["--no-history", "run"], False),
])  # fmt: skip
def test_no_history_before_or_after_run_is_the_same_flag(argv: list[str], saves: bool) -> None:
    assert build_parser().parse_args(argv).no_history == (not saves)
