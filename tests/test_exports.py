"""Exports behave as Unix tools write files, on fixed results (no runtime starts here).

A regular file is replaced atomically keeping its mode; a device, a FIFO, a symlink's target
and a hard-linked file are written where they are; new files get 0666 & ~umask; no folder is
created; two exports to one place are refused; durations read in the unit that suits them and
every export carries each runtime's ratio to the fastest.
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgelab.errors import EdgelabError, UsageError
from edgelab.export import (
    ExportTarget,
    check_targets,
    current_umask,
    export_run,
    target,
    to_csv,
    to_json,
    to_markdown,
    write_exports,
    write_targets,
    write_text,
)
from edgelab.results import RunResult, RuntimeResult, Sample

IS_ROOT = os.geteuid() == 0


def _runtime(name: str, startups_ns: list[int]) -> RuntimeResult:
    result = RuntimeResult(runtime=name, startup_includes="test figures", memory_metric="PSS")
    result.samples = [
        Sample(name, i, False, True, ns, {"launch": ns // 2}, response_bytes=5)
        for i, ns in enumerate(startups_ns)
    ]
    return result


@pytest.fixture
def result() -> RunResult:
    """A container near 233 ms, a subprocess near 340 µs, Wasm near 3.9 µs (fixed numbers)."""
    runtimes = {
        "container": _runtime("container", [233_038_200, 230_000_000, 240_000_000]),
        "subprocess": _runtime("subprocess", [340_000, 338_000, 345_000]),
        "wasm": _runtime("wasm", [3_900, 3_850, 4_100]),
    }
    metadata = {
        "workload": {"name": "hello"},
        "settings": {"workload": "hello", "scenario": "burst"},
        "host": {"cpu_model": "test cpu", "cpu_cores_logical": 2},
        "versions": {"edgelab": "test"},
        "started": "2026-12-01T21:15:00.123456+00:00",
    }
    return RunResult(metadata, runtimes)


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


# -- what the exports say ------------------------------------------------------------------------
def test_markdown_durations_in_the_unit_that_suits_each_figure(result: RunResult) -> None:
    text = to_markdown(result)
    row = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ") and "---" not in line}
    assert "| 233 ms |" in row["container"] and "233,038" not in text
    assert "| 340 µs |" in row["subprocess"]
    assert "| 3.90 µs |" in row["wasm"]
    # relative speed: p50 / fastest p50
    assert "| 1.00x |" in row["wasm"] and "| 87.2x |" in row["subprocess"] and "| 59,753x |" in row["container"]
    assert "wasm started 87.2x faster than subprocess and 59,753x faster than container (p50 startup)." in text


def test_json_and_csv_carry_the_ratio_to_the_fastest(result: RunResult) -> None:
    data = json.loads(to_json(result))
    ratios = {r["runtime"]: r["p50_vs_fastest"] for r in data["results"]}
    assert ratios["wasm"] == 1.0
    assert ratios["subprocess"] == pytest.approx(340_000 / 3_900, rel=1e-4)
    assert ratios["container"] == pytest.approx(233_038_200 / 3_900, rel=1e-4)
    assert data["metadata"]["conclusion"].startswith("wasm started 87.2x faster than subprocess")
    rows = list(csv.DictReader(io.StringIO(to_csv(result))))
    assert len(rows) == 9
    by_runtime = {r["runtime"]: float(r["p50_vs_fastest"]) for r in rows}
    assert by_runtime == {"wasm": 1.0, "subprocess": pytest.approx(87.1795, abs=1e-3), "container": pytest.approx(59753.38, abs=0.01)}
    assert rows[0]["startup_us"] == "233038.200"


def test_a_runtime_without_samples_has_no_ratio(result: RunResult) -> None:
    result.runtimes["container"] = RuntimeResult(runtime="container", error="no engine")
    data = json.loads(to_json(result))
    assert {r["runtime"]: r["p50_vs_fastest"] for r in data["results"]}["container"] is None
    assert "| container | 0 | 0 | 0 | – |" in to_markdown(result)


# -- targets named on the command line ----------------------------------------------------------
def test_format_from_the_extension_or_said_outright() -> None:
    assert target("r.json") == ExportTarget("json", Path("r.json"))
    assert target("out/R.CSV") == ExportTarget("csv", Path("out/R.CSV"))
    assert target("t.md") == ExportTarget("markdown", Path("t.md"))
    assert target("-", "json") == ExportTarget("json", None)
    with pytest.raises(UsageError, match="--export - has no extension"):
        target("-")
    with pytest.raises(UsageError, match="cannot tell the format from its extension"):
        target("results.txt")


def test_two_exports_to_one_place_are_refused(tmp_path: Path) -> None:
    same = tmp_path / "x"
    with pytest.raises(UsageError, match=r"two exports to .*x \(json and csv\)"):
        check_targets([ExportTarget("json", same), ExportTarget("csv", same)])
    with pytest.raises(UsageError, match="two exports to stdout"):
        check_targets([ExportTarget("json", None), ExportTarget("csv", None)])
    # the same file by another spelling, a symlink, a hard link
    real = tmp_path / "r.json"
    real.write_text("old")
    (tmp_path / "link.json").symlink_to(real)
    os.link(real, tmp_path / "hard.json")
    for other in (tmp_path / "." / "r.json", tmp_path / "link.json", tmp_path / "hard.json"):
        with pytest.raises(UsageError, match="two exports to"):
            check_targets([ExportTarget("json", real), ExportTarget("markdown", other)])
    assert real.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["hard.json", "link.json", "r.json"]
    check_targets([ExportTarget("json", real), ExportTarget("csv", tmp_path / "r.csv"), ExportTarget("markdown", None)])


# -- writing as Unix tools do -------------------------------------------------------------------
def test_new_file_gets_0666_less_umask(tmp_path: Path, umask_022: None) -> None:
    assert current_umask() == 0o022
    write_text(tmp_path / "new.json", "{}\n")
    assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o644
    os.umask(0o027)
    assert current_umask() == 0o027
    write_text(tmp_path / "private.json", "{}\n")
    assert stat.S_IMODE((tmp_path / "private.json").stat().st_mode) == 0o640


def test_existing_file_replaced_atomically_keeping_its_mode(tmp_path: Path, umask_022: None) -> None:
    path = tmp_path / "r.json"
    path.write_text("old")
    path.chmod(0o604)
    inode = path.stat().st_ino
    write_text(path, "new")
    assert path.read_text() == "new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o604
    assert path.stat().st_ino != inode  # a new file renamed over the old: readers never see half
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "r.json"
    path.write_text("old")

    def no_rename(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(EdgelabError, match=r"^cannot write .*r\.json: No space left on device$"):
        write_text(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_symlink_is_followed_and_stays_a_link(tmp_path: Path) -> None:
    real = tmp_path / "data" / "r.json"
    real.parent.mkdir()
    real.write_text("old")
    real.chmod(0o640)
    link = tmp_path / "link.json"
    link.symlink_to(real)
    write_text(link, "new")
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text() == "new" and stat.S_IMODE(real.stat().st_mode) == 0o640
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to(tmp_path / "data" / "later.json")
    write_text(dangling, "made")  # like `echo > dangling`: the target is created
    assert dangling.is_symlink() and (tmp_path / "data" / "later.json").read_text() == "made"


def test_hard_linked_file_is_rewritten_in_place(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text("an old and longer content")
    other = tmp_path / "elsewhere.json"
    os.link(path, other)
    inode = path.stat().st_ino
    write_text(path, "new")
    assert path.stat().st_ino == inode and path.stat().st_nlink == 2
    assert other.read_text() == "new" == path.read_text()


def test_fifo_is_written_not_replaced(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    write_text(fifo, "through the pipe\n")
    reader.join(timeout=10)
    assert got == [b"through the pipe\n"]
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_dev_null_stays_a_device() -> None:
    write_text(Path("/dev/null"), "discarded")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


@pytest.mark.skipif(not IS_ROOT, reason="mknod needs root")
def test_a_character_device_in_the_cwd_stays_a_device(tmp_path: Path) -> None:
    node = tmp_path / "mynull"
    os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    write_text(node, "discarded")
    assert stat.S_ISCHR(node.stat().st_mode)


def test_no_folder_is_created(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "deeper" / "r.json"
    for attempt in (lambda: check_targets([ExportTarget("json", missing)]), lambda: write_text(missing, "x")):
        with pytest.raises(EdgelabError) as raised:
            attempt()
        assert str(raised.value) == f"cannot write {missing}: folder {missing.parent} does not exist (edgelab creates no folders: make it first)"
    assert list(tmp_path.iterdir()) == []


def test_a_folder_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(EdgelabError, match="it is a folder"):
        check_targets([ExportTarget("json", tmp_path)])
    with pytest.raises(EdgelabError, match="it is a folder"):
        write_text(tmp_path, "x")


def test_stdout_is_written_after_the_files(result: RunResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    order = write_targets(result, [ExportTarget("json", None), ExportTarget("csv", tmp_path / "r.csv")])
    assert [t.to_stdout for t in order] == [False, True]
    assert json.loads(capsys.readouterr().out)["results"][0]["runtime"] == "container"
    assert (tmp_path / "r.csv").read_text().startswith("runtime,")


def test_write_exports_keeps_its_signature_and_refuses_duplicates(result: RunResult, tmp_path: Path) -> None:
    paths = write_exports(result, json_path=tmp_path / "a.json", markdown_path=tmp_path / "a.md")
    assert paths == [tmp_path / "a.json", tmp_path / "a.md"]
    with pytest.raises(UsageError):
        write_exports(result, json_path=tmp_path / "b", csv_path=tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_the_labs_exports_go_in_a_folder_of_their_own(result: RunResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    paths = export_run(result)
    assert [p.name for p in paths] == [f"edgelab-hello-burst-2026-12-01T21-15-00.{ext}" for ext in ("json", "csv", "md")]
    assert all(p.parent == Path("edgelab-exports") and p.is_file() for p in paths)
    monkeypatch.setenv("EDGELAB_EXPORT_DIR", str(tmp_path / "mine"))
    assert all(p.parent == tmp_path / "mine" for p in export_run(result))


def test_the_conclusion_ranks_density_only_on_host_figures_clear_of_noise(result: RunResult) -> None:
    from edgelab.results import MemoryResult

    mib = 1 << 20
    result.runtimes["wasm"].memory = MemoryResult(
        10_000, 10_240.0, "PSS", 12_288.0, mem_available_noise_bytes=1 * mib
    )  # a 117 MiB fall against 1 MiB of idle noise: stable
    result.runtimes["container"].memory = MemoryResult(
        50, 2.7 * mib, "PSS", 4.0 * mib, cgroup_bytes_per_instance=4.0 * mib, mem_available_noise_bytes=400 * mib
    )  # the fall is noise, but the cgroup reading stands
    result.runtimes["subprocess"].memory = MemoryResult(
        2, 18_000.0, "PSS", 40_000.0, mem_available_noise_bytes=4 * mib
    )  # 80 KB against 4 MiB of noise: left out of the sentence
    text = json.loads(to_json(result))["metadata"]["conclusion"]
    assert text.endswith("wasm held 341x more than container instances per GiB of host memory.")
    assert "subprocess held" not in text and "than subprocess instances" not in text


def test_inherited_fds_are_written_as_a_shell_would(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    assert target("/dev/stdout", "json") == ExportTarget("json", None)  # stdout, like -
    with pytest.raises(UsageError, match="two exports to stdout"):
        check_targets([target("/dev/stdout", "json"), target("-", "csv")])
    write_text(Path("/dev/stderr"), "to the inherited stderr\n")
    assert capfd.readouterr().err == "to the inherited stderr\n"
    read_end, write_end = os.pipe()
    try:
        check_targets([ExportTarget("json", Path(f"/dev/fd/{write_end}"))])
        write_text(Path(f"/proc/self/fd/{write_end}"), "through fd\n")
        assert os.read(read_end, 100) == b"through fd\n"
    finally:
        os.close(read_end)
        os.close(write_end)
    closed = 987  # an fd nobody opened (closing one of ours could see it reused at once)
    with pytest.raises(OSError):
        os.fstat(closed)
    with pytest.raises(EdgelabError, match=r"^cannot write /dev/fd/987: Bad file descriptor \(fd 987 is not open\)$"):
        check_targets([ExportTarget("json", Path(f"/dev/fd/{closed}"))])


def _as_another_user(code: str, *args: str) -> list[str]:
    """Run ``code`` as nobody (as root) or as this user; its stdout lines."""
    import subprocess
    import sys

    command = [sys.executable, "-c", code, *args]
    if IS_ROOT:
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=60, cwd="/",
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.mark.skipif(not IS_ROOT, reason="needs a folder another user owns")
def test_a_writable_file_in_a_folder_that_takes_no_new_file_is_written_in_place() -> None:
    """As `>` would: the folder refuses the temporary file, the file itself is writable."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="edgelab-test-", dir="/tmp"))
    folder.chmod(0o755)  # root's: nobody may not add a file
    path = folder / "r.json"
    path.write_text("an old and longer content")
    path.chmod(0o666)
    inode = path.stat().st_ino
    code = (
        "import sys; from pathlib import Path; from edgelab.export import write_text, check_writable\n"
        "check_writable(Path(sys.argv[1])); write_text(Path(sys.argv[1]), 'new'); print('ok')\n"
    )
    try:
        assert _as_another_user(code, str(path)) == ["ok"]
        assert path.read_text() == "new" and path.stat().st_ino == inode
        assert sorted(p.name for p in folder.iterdir()) == ["r.json"]
    finally:
        shutil.rmtree(folder)


def test_a_file_this_user_may_not_write_is_not_replaced(tmp_path: Path) -> None:
    """As `>` would refuse; replacing it through the writable folder is no way round. (Run as
    a user without the right: root may write anything, as with a shell.)"""
    import shutil
    import subprocess
    import sys
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="edgelab-test-", dir="/tmp"))  # reachable by any user
    folder.chmod(0o777)
    path = folder / "r.json"
    path.write_text("theirs")
    path.chmod(0o444)
    code = (
        "import sys; from pathlib import Path; from edgelab.export import write_text, check_writable\n"
        "for f in (check_writable, lambda p: write_text(p, 'mine')):\n"
        "    try: f(Path(sys.argv[1]))\n"
        "    except Exception as e: print(e)\n"
    )
    if IS_ROOT:
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code, str(path)]
    else:
        command = [sys.executable, "-c", code, str(path)]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=60, cwd="/",
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        )
        assert done.stdout.splitlines() == [f"cannot write {path}: permission denied"] * 2, done.stderr
        assert path.read_text() == "theirs" and sorted(p.name for p in folder.iterdir()) == ["r.json"]
    finally:
        shutil.rmtree(folder)
