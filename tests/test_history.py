"""The run history: saved runs, newest first, ``last``/``last~N``, and a data folder that cannot
be used (one line, non-zero exit). Every test keeps its history in a tmp dir (EDGELAB_DATA_DIR)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgelab.cli import main
from edgelab.errors import EdgelabError, UsageError
from edgelab.export import to_json
from edgelab.history import data_dir, list_runs, load_export, resolve, save_run
from edgelab.lab import Lab, Settings
from edgelab.results import RunResult
from edgelab.runtimes.fake import FakeRuntime


@pytest.fixture(autouse=True)
def history_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "data"
    monkeypatch.setenv("EDGELAB_DATA_DIR", str(folder))
    monkeypatch.delenv("EDGELAB_HISTORY_KEEP", raising=False)  # the default, 1,000
    return folder


def fake_run(workload: str = "hello", count: int = 3) -> RunResult:
    lab = Lab(runtime_factory=lambda name, session: FakeRuntime(session, name))
    try:
        return lab.run(Settings(workload=workload, count=count, warmup=0))
    finally:
        lab.close()


def real_run(count: int = 5) -> RunResult:
    lab = Lab()
    try:
        return lab.run(Settings(workload="hello", runtimes=("subprocess", "wasm"), count=count, warmup=1))
    finally:
        lab.close()


def test_data_dir_follows_the_environment(history_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert data_dir() == history_dir
    monkeypatch.delenv("EDGELAB_DATA_DIR")
    assert data_dir().name == "edgelab"


def test_history_after_two_real_runs(history_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, second = real_run(), real_run(count=6)
    older, newer = save_run(first), save_run(second)
    assert older.parent == newer.parent == history_dir / "runs"
    assert newer.read_text() == to_json(second)
    assert list_runs() == [newer, older]
    assert resolve("last") == newer and resolve("last~0") == newer and resolve("last~1") == older

    assert main(["history"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert lines[0].split()[0] == "last" and lines[1].split()[0] == "last~1"
    assert lines[2] == "(the history keeps the newest 1,000 runs; EDGELAB_HISTORY_KEEP sets how many)"
    for line, path in ((lines[0], newer), (lines[1], older)):
        assert " hello " in line and " burst " in line and "p50: subprocess " in line and " · wasm " in line
        assert line.endswith(path.name)

    assert main(["history", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(r["ref"], r["path"]) for r in listed] == [("last", str(newer)), ("last~1", str(older))]
    for entry, run in zip(listed, (second, first), strict=True):
        assert entry["workload"] == "hello" and entry["scenario"] == "burst" and entry["fake"] is False
        for name, figures in entry["runtimes"].items():
            summary = run.runtimes[name].summary()
            assert summary is not None
            assert figures["p50_us"] == round(summary.p50_ns / 1000, 3)
            assert figures["n"] == len(run.runtimes[name].measured)

    assert main(["compare", "last~1", "last"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("A  ") and lines[0].endswith(f"last~1 = {older}")
    assert lines[1].startswith("B  ") and lines[1].endswith(f"last = {newer}")
    assert any(line.split()[:4] == ["settings.count", "5", "→", "6"] for line in lines)


def test_limit_and_names_that_sort_by_time(capsys: pytest.CaptureFixture[str]) -> None:
    paths = [save_run(fake_run()) for _ in range(3)]
    assert list_runs() == paths[::-1]
    assert sorted(p.name for p in paths) == [p.name for p in paths]
    assert main(["history", "--limit", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0].startswith("last ") and "(fake)" in lines[0]
    assert lines[1] == "(2 older runs not shown; --limit 0 shows all)"
    assert lines[2].startswith("(the history keeps the newest 1,000 runs;")
    assert main(["history", "--limit", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[:3]] == ["last", "last~1", "last~2"] and len(lines) == 4


def test_the_same_start_twice_keeps_both_runs() -> None:
    result = fake_run()
    first, second = save_run(result), save_run(result)
    assert first != second and first.exists() and second.exists()
    assert len(list_runs()) == 2


def test_other_files_are_ignored_and_an_unreadable_run_is_listed_as_such(
    history_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = save_run(fake_run())
    (history_dir / "runs" / "notes.txt").write_text("mine")
    (history_dir / "runs" / ".20261201T000000.000000Z-x.json.tmp").write_text("{")
    broken = history_dir / "runs" / "29991231T235959.000000Z-broken.json"
    broken.write_text("{ half")
    assert list_runs() == [broken, good]
    assert main(["history"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("last ") and "not an edgelab export: not JSON" in lines[0]
    assert lines[1].startswith("last~1 ") and "p50: container" in lines[1]


def test_empty_history(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["history"]) == 0
    assert capsys.readouterr().out.startswith("no runs saved yet in ")
    assert main(["history", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_resolve_refs_paths_and_names(history_dir: Path, tmp_path: Path) -> None:
    saved = save_run(fake_run())
    assert resolve(saved.name) == saved
    assert resolve(str(saved)) == saved
    elsewhere = tmp_path / "mine.json"
    elsewhere.write_text(to_json(fake_run()))
    assert resolve(str(elsewhere)) == elsewhere
    assert load_export(elsewhere)["metadata"]["fake"] is True
    with pytest.raises(UsageError, match=r"^no run last~3: history holds 1 run$"):
        resolve("last~3")
    with pytest.raises(UsageError, match="no such file: last~x"):
        resolve("last~x")


def test_compare_names_the_size_of_the_history(capsys: pytest.CaptureFixture[str]) -> None:
    save_run(fake_run())
    save_run(fake_run())
    assert main(["compare", "last~3", "last"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == "edgelab: no run last~3: history holds 2 runs\n"


def test_a_data_dir_that_cannot_be_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("EDGELAB_DATA_DIR", str(blocker / "edgelab"))
    with pytest.raises(EdgelabError, match=r"^cannot save the run in .*a-file/edgelab/runs: .*EDGELAB_DATA_DIR"):
        save_run(fake_run())
    assert list(tmp_path.iterdir()) == [blocker]

    monkeypatch.setenv("EDGELAB_DATA_DIR", str(blocker))
    for argv in (["history"], ["compare", "last~1", "last"]):
        assert main(argv) == 1
        out, err = capsys.readouterr()
        assert out == "" and err.startswith("edgelab: cannot read the run history in ") and err.count("\n") == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any folder")
def test_an_unreadable_history(history_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save_run(fake_run())
    runs = history_dir / "runs"
    runs.chmod(0)
    try:
        assert main(["history"]) == 1
        assert capsys.readouterr().err.startswith("edgelab: cannot read the run history in ")
    finally:
        runs.chmod(0o755)


def run_cli(*argv: str, data: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, EDGELAB_DATA_DIR=str(data))
    return subprocess.run([sys.executable, "-m", "edgelab", *argv], capture_output=True, text=True, env=env, timeout=300)


def test_edgelab_run_saves_each_run_and_compare_reads_last(history_dir: Path) -> None:
    for count in ("5", "6"):
        done = run_cli("run", "-w", "hello", "-r", "subprocess,wasm", "-n", count, data=history_dir)
        assert done.returncode == 0, done.stderr
    listed = json.loads(run_cli("history", "--json", data=history_dir).stdout)
    assert [r["ref"] for r in listed] == ["last", "last~1"]
    assert [r["runtimes"]["wasm"]["n"] for r in listed] == [6, 5]
    done = run_cli("compare", "last~1", "last", "--json", data=history_dir)
    assert done.returncode == 0, done.stderr
    (comparison,) = json.loads(done.stdout)["comparisons"]
    assert [s["runtime"] for s in comparison["startup"]] == ["subprocess", "wasm"]
    assert {"key": "settings.count", "reference": 5, "changed": 6} in comparison["differences"]
