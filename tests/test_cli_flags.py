"""The command line's own parsing and contracts, on fixed input: the shared ``--resident``
parser (both spellings), the run flags, exports named on the command line, exit codes.

Pure units (no runtime starts) unless a test says otherwise.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgelab.cli import build_parser
from edgelab.commands import (
    _Progress,
    diagnose,
    format_seconds,
    planned_launches,
    run_exit_status,
    runtime_failures,
    runtimes_from_text,
    settings_from_args,
)
from edgelab.errors import EdgelabError, UsageError
from edgelab.events import RuntimeStatus, SampleRecorded
from edgelab.lab import (
    MAX_RESIDENT,
    Settings,
    parse_resident,
    resolve_runtime_name,
    unselected_in_resident,
)
from edgelab.results import MemoryResult, RunResult, RuntimeResult, Sample
from edgelab.runtimes.fake import FakeRuntime
from edgelab.runtimes.registry import specs

ALL = ("container", "subprocess", "wasm")


# -- --resident: one parser for the CLI and the TUI -----------------------------------------------
@pytest.mark.parametrize(
    ("text", "runtimes", "expected"),
    [
        ("50", ALL, {"container": 50, "subprocess": 50, "wasm": 50}),
        (" 7 ", ("wasm",), {"wasm": 7}),
        ("0", ALL, {"container": 0, "subprocess": 0, "wasm": 0}),
        # the TUI's spelling and the CLI's give the same answer
        ("c=20,s=50,w=2000", ALL, {"container": 20, "subprocess": 50, "wasm": 2000}),
        ("container=20,subprocess=50,wasm=2000", ALL, {"container": 20, "subprocess": 50, "wasm": 2000}),
        ("Cont=1, SUB=2 ,wasm = 3", ALL, {"container": 1, "subprocess": 2, "wasm": 3}),
        ("wasm=10000,container=50", ALL, {"container": 50, "subprocess": 0, "wasm": 10000}),
        # named but not selected: left out (the TUI with container toggled off)
        ("c=10,s=50,w=2000", ("subprocess", "wasm"), {"subprocess": 50, "wasm": 2000}),
        ("1_000", ("wasm",), {"wasm": 1000}),
    ],
)
def test_resident_both_spellings(text: str, runtimes: tuple[str, ...], expected: dict[str, int]) -> None:
    assert parse_resident(text, runtimes) == expected


def test_resident_answers_in_the_order_of_the_runtimes() -> None:
    assert list(parse_resident("w=1,c=2", ALL)) == list(ALL)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "--resident takes N or runtime=N,..."),
        # the choices are the registry's (the wording of the list is edgelab.runtime_names')
        ("x=1", "--resident: 'x' is not a runtime (container, subprocess, wasm, "),
        ("vm=3", "'vm' is not a runtime"),
        ("c=1,container=2", "--resident names container twice"),
        ("c=-1", "--resident for container must be 0 or more, not -1"),
        ("-4", "--resident must be 0 or more, not -4"),
        ("w=1e3", "--resident for wasm must be a whole number of instances, not '1e3'"),
        ("w=inf", "must be a whole number of instances, not 'inf'"),
        ("2.5", "must be a whole number of instances, not '2.5'"),
        (str(MAX_RESIDENT + 1), f"--resident must be at most {MAX_RESIDENT:,}"),
        ("5,6", "--resident takes N or runtime=N,..."),
        ("=4", "'=4' is neither"),
        ("c=1,,w=2", "'' is neither"),
        ("c=", "--resident for container must be a whole number of instances, not ''"),
    ],
)
def test_resident_bad_input_is_one_line(text: str, says: str) -> None:
    with pytest.raises(UsageError) as raised:
        parse_resident(text, ALL)
    message = str(raised.value)
    assert says in message and "\n" not in message


def test_resident_error_names_the_field_it_came_from() -> None:
    with pytest.raises(UsageError, match=r"^resident N for wasm must be"):
        parse_resident("w=lots", ALL, label="resident N")


def test_runtime_names_by_prefix() -> None:
    assert [resolve_runtime_name(t) for t in ("c", "S", "w", "wa", "container", " sub ")] == [
        "container", "subprocess", "wasm", "wasm", "container", "subprocess",
    ]
    with pytest.raises(UsageError):
        resolve_runtime_name("")
    with pytest.raises(UsageError):
        resolve_runtime_name("containers")


def test_unselected_runtimes_are_reported_for_a_note() -> None:
    assert unselected_in_resident("c=10,s=0,w=5", ("wasm",)) == ["container"]
    assert unselected_in_resident("10", ("wasm",)) == []
    assert unselected_in_resident("w=5", ALL) == []


# -- progress: a total and an ETA -------------------------------------------------------------
def _sample(runtime: str, index: int, startup_ns: int, ok: bool = True) -> Sample:
    return Sample(runtime, index, False, ok, startup_ns if ok else None, error=None if ok else "boom")


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_planned_launches_per_scenario() -> None:
    burst = Settings(runtimes=("container", "wasm"), count=20, warmup=1, resident={"wasm": 5})
    assert planned_launches(burst) == {"container": 21, "wasm": 26}
    ramp = Settings(runtimes=("container", "wasm"), scenario="ramp", resident={"container": 10, "wasm": 1000})
    assert planned_launches(ramp) == {"container": 10, "wasm": 1000}
    steady = Settings(runtimes=("wasm",), scenario="steady", rate_per_s=10.0, duration_s=5.0)
    assert planned_launches(steady) == {"wasm": 50}


def test_eta_prices_each_runtime_at_its_own_pace() -> None:
    clock = _Clock()
    progress = _Progress(Settings(runtimes=("container", "wasm"), count=10, warmup=0), clock=clock)
    assert progress.total == 20
    assert progress.line(clock.now) == "0/20 launches · preparing runtimes…"
    progress(SampleRecorded(_sample("wasm", 0, 10_000)))  # 10 µs
    assert progress.eta_s(clock.now) is None  # the container has no pace yet
    assert progress.line(clock.now).endswith("ETA … · preparing runtimes…")
    clock.now += 0.5
    progress(SampleRecorded(_sample("container", 0, 490_000_000)))  # 490 ms
    # The 0.5 s since the Wasm sample are the container's; 9 containers left at 0.5 s each and
    # 9 Wasm at 10 µs: the ETA is the containers' ~4.5 s, not an average over both.
    eta = progress.eta_s(clock.now)
    assert eta == pytest.approx(9 * 0.5 + 9 * 10e-6, rel=1e-6)
    clock.now += 0.1  # a batch of Wasm samples at once: the first takes the gap, the rest none
    for i in range(1, 5):
        progress(SampleRecorded(_sample("wasm", i, 10_000)))
    assert progress.wall_s["wasm"] == pytest.approx(10e-6 + 0.1)
    assert progress.eta_s(clock.now) == pytest.approx(9 * 0.5 + 5 * (0.1 + 10e-6) / 5, rel=1e-6)
    clock.now -= 0.1
    assert progress.line(clock.now + 0.1) == "6/20 launches · 0.6 s · ETA 4.6 s · preparing runtimes…"


def test_a_runtime_that_gives_up_leaves_the_total() -> None:
    clock = _Clock()
    progress = _Progress(Settings(runtimes=("container", "wasm"), count=10, warmup=0), clock=clock)
    progress(SampleRecorded(_sample("wasm", 0, 10_000)))
    progress(RuntimeStatus("container", "unavailable", "no engine"))
    assert progress.total == 10  # the 10 Wasm launches; the container makes none
    assert progress.planned["container"] == 0
    assert progress.eta_s(clock.now + 1) is not None


def test_steady_eta_is_the_time_left() -> None:
    clock = _Clock()
    progress = _Progress(Settings(runtimes=("wasm",), scenario="steady", rate_per_s=10.0, duration_s=5.0), clock=clock)
    progress(SampleRecorded(_sample("wasm", 0, 10_000)))
    clock.now += 2.0
    assert progress.eta_s(clock.now) == pytest.approx(3.0, abs=0.01)
    assert progress.line(clock.now).startswith("1/~50 launches · 2.0 s · ETA 3.0 s")


@pytest.mark.parametrize(("seconds", "text"), [(0.42, "0.4 s"), (12.4, "12 s"), (185.0, "3 min 05 s")])
def test_seconds_read_as_a_person_would(seconds: float, text: str) -> None:
    assert format_seconds(seconds) == text


# -- exit status ------------------------------------------------------------------------------
def _result(**runtimes: RuntimeResult) -> RunResult:
    return RunResult({"settings": {}}, dict(runtimes))


def _ok(name: str, n: int = 3) -> RuntimeResult:
    result = RuntimeResult(runtime=name)
    result.samples = [_sample(name, i, 1_000 + i) for i in range(n)]
    return result


def test_exit_0_only_when_every_runtime_did_all_it_was_asked() -> None:
    settings = Settings(runtimes=("subprocess", "wasm"), count=3, warmup=0)
    assert run_exit_status(_result(subprocess=_ok("subprocess"), wasm=_ok("wasm")), settings) == 0
    broken = _ok("subprocess")
    broken.samples[1] = _sample("subprocess", 1, 0, ok=False)
    with pytest.raises(EdgelabError) as raised:
        run_exit_status(_result(subprocess=broken, wasm=_ok("wasm")), settings)
    assert str(raised.value) == "subprocess: 1 of 3 launches failed; first: boom; the other results are above and in the exports"
    assert raised.value.exit_code == 1
    assert run_exit_status(_result(subprocess=broken, wasm=_ok("wasm")), settings, ignore_failure=True) == 0


def test_a_runtime_unavailable_or_given_up_fails_the_run() -> None:
    settings = Settings(runtimes=("container", "wasm"), count=3, warmup=0)
    gone = RuntimeResult(runtime="container", error="no Docker engine answers")
    with pytest.raises(EdgelabError, match=r"^container: no Docker engine answers; the other results"):
        run_exit_status(_result(container=gone, wasm=_ok("wasm")), settings)
    with pytest.raises(EdgelabError, match=r"^no runtime could run hello; container: no Docker"):
        run_exit_status(_result(container=gone), Settings(runtimes=("container",)))


def test_fewer_cold_starts_or_a_short_ramp_fail_the_run() -> None:
    settings = Settings(runtimes=("wasm",), count=5, warmup=0)
    assert runtime_failures(_result(wasm=_ok("wasm", 3)), settings) == ["wasm: 3 of 5 cold starts done"]
    ramp = Settings(runtimes=("wasm",), scenario="ramp", resident={"wasm": 100})
    short = _ok("wasm", 80)
    short.memory = MemoryResult(80, 10_000.0, "PSS", None, limit="the Wasm pool is full")
    assert runtime_failures(_result(wasm=short), ramp) == ["wasm: the ramp stopped at 80 of 100: the Wasm pool is full"]
    short.memory = MemoryResult(80, 10_000.0, "PSS", None)
    assert runtime_failures(_result(wasm=short), ramp) == ["wasm: the ramp reached 80 of 100 resident instances"]
    full = _ok("wasm", 100)
    full.memory = MemoryResult(100, 10_000.0, "PSS", None)
    assert runtime_failures(_result(wasm=full), ramp) == []


def test_exit_status_is_in_the_help() -> None:
    text = build_parser().format_help()
    assert "exit status:" in text and "141" in text and "--ignore-failure" in text


# -- flags ------------------------------------------------------------------------------------
def test_runs_is_another_name_for_count_and_interleave_is_a_choice() -> None:
    args = build_parser().parse_args(["run", "--runs", "7", "--interleave", "launch"])
    assert args.count == 7 and args.interleave == "launch"
    assert build_parser().parse_args(["run"]).count == 20
    assert build_parser().parse_args(["run", "-n", "3"]).count == 3


def test_runtimes_take_the_same_prefixes_as_resident() -> None:
    assert runtimes_from_text("c, W") == ("container", "wasm")
    with pytest.raises(UsageError, match="runtime named twice"):
        runtimes_from_text("wasm,w")
    with pytest.raises(UsageError, match=r"^--runtimes: 'vm' is not a runtime"):
        runtimes_from_text("vm")


# -- the command line as a person runs it (real processes; Wasm only, so each takes a second) ---
def edgelab(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "edgelab", *args],
        capture_output=True, timeout=120, cwd=cwd, env={**os.environ, **(env or {})},
    )


def _one_line(done: subprocess.CompletedProcess[bytes]) -> str:
    err = done.stderr.decode()
    assert done.returncode != 0 and "Traceback" not in err, err
    return err.strip().splitlines()[-1]


def test_version() -> None:
    from edgelab import __version__

    done = edgelab("--version")
    assert (done.returncode, done.stdout.decode()) == (0, f"edgelab {__version__}\n")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("-w", "3"), "edgelab: unknown workload '3': -w is --workload here (hyperfine's warmup is --warmup 3)"),
        (("-r", "10"), "edgelab: unknown runtime '10': -r is --runtimes here (hyperfine's runs is --runs 10)"),
        (("--export", "-"), "edgelab: --export - has no extension to choose a format from"),
        (("--export", "r.txt"), "edgelab: --export r.txt: cannot tell the format from its extension"),
        (("--json", "same", "--csv", "same"), "edgelab: two exports to same (json and csv)"),
        (("--json", "-", "--markdown", "-"), "edgelab: two exports to stdout"),
        (("--export", "a.json", "--json", "a.json"), "edgelab: two exports to a.json"),
        (("--json", "nowhere/r.json"), "edgelab: cannot write nowhere/r.json: folder"),
    ],
)
def test_bad_flags_are_one_line_before_anything_runs(tmp_path: Path, args: tuple[str, ...], says: str) -> None:
    done = edgelab("run", "-r", "wasm", "-n", "1", "--no-history", *args, cwd=tmp_path)
    assert _one_line(done).startswith(says)
    assert done.returncode == 2  # bad input, as --help's exit status says
    assert done.stdout == b"" and list(tmp_path.iterdir()) == []  # nothing ran, nothing written


def test_json_to_stdout_keeps_stdout_for_the_export(tmp_path: Path) -> None:
    done = edgelab("run", "-r", "wasm", "-n", "3", "--json", "-", "--export", "r.md", "--no-history", cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode()
    data = json.loads(done.stdout)  # only the export: the table went to stderr
    assert data["results"][0]["runtime"] == "wasm" and data["results"][0]["p50_vs_fastest"] == 1.0
    assert "cold start = launch call" in done.stderr.decode()
    assert (tmp_path / "r.md").read_text().startswith("# edgelab: hello, burst")
    assert stat.S_IMODE((tmp_path / "r.md").stat().st_mode) == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_closed_stdout_writes_the_files_and_exits_141(tmp_path: Path) -> None:
    """``edgelab run --json F | head`` with head gone: F is whole, no traceback, and the exit
    status a shell gives a tool the closed pipe stopped (128 + SIGPIPE)."""
    for stdout_export in ((), ("--csv", "-")):
        out = tmp_path / "r.json"
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgelab", "run", "-r", "wasm", "-n", "3", "--json", str(out), "--no-history", *stdout_export],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
        )
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # the reader is gone before edgelab prints a byte
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=120) == 141, err
        assert "Traceback" not in err and "BrokenPipe" not in err, err
        assert json.loads(out.read_text())["results"][0]["ok"] == 3
        out.unlink()


def test_every_run_is_saved_in_the_history(tmp_path: Path) -> None:
    data = tmp_path / "data"
    done = edgelab("run", "-r", "wasm", "-n", "2", "--interleave", "launch", env={"EDGELAB_DATA_DIR": str(data)})
    assert done.returncode == 0, done.stderr.decode()
    (saved,) = (data / "runs").glob("*.json")
    assert json.loads(saved.read_text())["metadata"]["settings"]["interleave"] == "launch"
    assert f"saved in the history as last: {saved}" in done.stderr.decode().replace("\n", "")
    done = edgelab("run", "-r", "wasm", "-n", "2", "--no-history", env={"EDGELAB_DATA_DIR": str(data)})
    assert done.returncode == 0 and len(list((data / "runs").glob("*.json"))) == 1


def test_an_unwritable_history_is_a_warning_not_a_lost_run(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    done = edgelab("run", "-r", "wasm", "-n", "2", "--json", str(out), env={"EDGELAB_DATA_DIR": "/proc/edgelab-history"})
    err = done.stderr.decode()
    assert done.returncode == 0, err
    assert "not saved in the history:" in err and "Traceback" not in err
    assert json.loads(out.read_text())["results"][0]["ok"] == 2
    assert "cold start = launch call" in done.stdout.decode()


def test_the_cli_prints_the_same_conclusion_the_exports_carry(tmp_path: Path) -> None:
    done = edgelab("run", "-r", "wasm", "-n", "2", "--no-history", "--json", str(tmp_path / "r.json"))
    assert done.returncode == 0, done.stderr.decode()
    # one runtime: nothing to compare, so no sentence, in both
    assert json.loads((tmp_path / "r.json").read_text())["metadata"]["conclusion"] == ""
    assert "faster than" not in done.stdout.decode()


def test_export_hyperfine_writes_hyperfines_schema(tmp_path: Path) -> None:
    out = tmp_path / "h.json"
    done = edgelab("run", "-r", "wasm", "-n", "3", "--no-history", "--export-hyperfine", str(out), "--export", str(tmp_path / "r.json"))
    assert done.returncode == 0, done.stderr.decode()
    (entry,) = json.loads(out.read_text())["results"]
    assert entry["command"] == "edgelab wasm hello" and len(entry["times"]) == 3
    assert entry["median"] == pytest.approx(json.loads((tmp_path / "r.json").read_text())["results"][0]["startup_us"]["p50"] / 1e6, rel=1e-3)


def test_progress_names_a_phase_only_while_preparing_or_stopping() -> None:
    clock = _Clock()
    progress = _Progress(Settings(runtimes=("container", "wasm"), count=1, warmup=0), clock=clock)
    progress(RuntimeStatus("container", "preparing"))
    assert progress.line(clock.now) == "0/2 launches · container: preparing…"
    progress(RuntimeStatus("wasm", "running"))
    assert progress.line(clock.now) == "0/2 launches"
    progress(RuntimeStatus("wasm", "stopping"))
    assert progress.line(clock.now).endswith("wasm: stopping…")


def test_the_table_says_the_steady_rate_achieved_and_the_conclusion() -> None:
    import io

    from rich.console import Console

    from edgelab.commands import print_result

    slow, fast = _ok("container", 3), _ok("wasm", 30)
    slow.samples = [_sample("container", i, 300_000_000) for i in range(3)]
    for runtime, achieved in ((slow, 3.0), (fast, 10.0)):
        runtime.rate_asked_per_s, runtime.rate_achieved_per_s = 10.0, achieved
    meta = {"workload": {"name": "hello"}, "host": {"cpu_model": "test", "cpu_cores_logical": 2}, "versions": {}}
    out = io.StringIO()
    print_result(RunResult(meta, {"container": slow, "wasm": fast}), Console(file=out, width=200))
    text = out.getvalue()
    assert "steady: 3.00 launches/s achieved of 10.00 asked" in text
    assert "steady: 10.00 launches/s achieved of 10.00 asked" in text
    assert "steady reached 3.00 launches/s of the 10.00 asked (30%)" in text  # the warning
    assert "300 ms" in text and "1.01 µs" in text  # p50 of 1,000..1,029 ns
    assert "wasm started 295,712x faster than container (p50 startup)." in text


def test_invoke_and_probe_take_the_same_runtime_names() -> None:
    done = subprocess.run([sys.executable, "-m", "edgelab", "invoke", "fib", "-r", "W"], input=b"10", capture_output=True, timeout=120)
    assert (done.returncode, done.stdout) == (0, b"55"), done.stderr.decode()
    bad = edgelab("invoke", "fib", "-r", "vm")
    line = _one_line(bad)
    assert line.startswith("edgelab: argument --runtime/-r: 'vm' is not a runtime (container, subprocess, wasm")
    assert line.endswith(" (see edgelab invoke --help)") and "edgelab runtimes" in line, line
    for family in {registry_spec.family for registry_spec in specs()}:
        assert family in line, (family, line)
    assert bad.returncode == 2
    probe = edgelab("probe", "-r", "w", "--json")
    assert probe.returncode == 0, probe.stderr.decode()
    assert list(json.loads(probe.stdout)) == ["wasm"]


def test_a_reader_that_leaves_mid_export_gets_141_not_a_silent_0(tmp_path: Path) -> None:
    """A multi-MiB export on stdout and a reader that takes 10 bytes and leaves (``| head -c
    10``): sys.stdout.write returned quietly here with most of it lost, so exit 0 claimed
    success. The export is written to the fd, and the closed pipe is 141."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgelab", "run", "-r", "wasm", "-n", "20000", "--json", "-", "--no-history"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(10) == b'{\n  "metad'
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert "Traceback" not in err


# -- the registry is the one list -------------------------------------------------------------------
def test_runtimes_flag_defaults_to_the_registrys_selection_and_takes_every_rung() -> None:
    from edgelab.runtimes import registry

    args = build_parser().parse_args(["run"])
    assert args.runtimes == ",".join(registry.default_names())
    variants = [n for n in registry.names() if ":" in n]
    if not variants:
        pytest.skip("no rung with a variant registered yet")
    wanted = ",".join(["wasm", *variants])
    assert runtimes_from_text(wanted) == ("wasm", *variants)
    assert settings_from_args(build_parser().parse_args(["run", "-r", wanted])).runtimes == ("wasm", *variants)
    with pytest.raises(UsageError, match="fake"):  # hidden: a UI-test runtime is no choice
        runtimes_from_text("fake")


def test_edgelab_runtimes_lists_every_rung_with_what_it_skips_and_costs() -> None:
    from edgelab.runtimes import registry

    done = edgelab("runtimes", "--json")
    assert done.returncode == 0, done.stderr.decode()
    listing = json.loads(done.stdout)
    assert [entry["name"] for entry in listing] == list(registry.names())
    for entry in listing:
        spec = registry.spec(entry["name"])
        assert (entry["family"], entry["artifact"], entry["summary"], entry["skips"], entry["ready_cost"]) == (
            spec.family, spec.artifact, spec.summary, spec.skips, spec.ready_cost,
        )  # fmt: skip
    table = edgelab("runtimes", env={"COLUMNS": "200"}).stdout.decode()
    for name in registry.names():
        assert f" {name}" in table, name


class _Unusable(FakeRuntime):
    """A rung that is never usable here: doctor must say why in its row."""

    def __init__(self, session: object) -> None:
        super().__init__(session, as_runtime="wasm", unavailable="needs a thing this host lacks")  # type: ignore[arg-type]


class _Emulated(FakeRuntime):
    """A usable rung whose figures carry a mark: doctor says it beside the verdict."""

    def __init__(self, session: object) -> None:
        super().__init__(session, as_runtime="wasm")  # type: ignore[arg-type]

    def marks(self) -> tuple[str, ...]:
        return ("emulated (TCG): no KVM here",)


@pytest.fixture
def odd_rungs() -> Iterator[tuple[str, str]]:
    """Rungs registered for the test: unusable here, with a mark, and one whose module is missing."""
    from edgelab.runtimes.registry import RuntimeSpec, register, unregister

    register(RuntimeSpec("oddity", __name__, "_Unusable", "oddity", "none", "never usable here"))
    register(RuntimeSpec("marked", __name__, "_Emulated", "marked", "none", "usable, emulated"))
    register(RuntimeSpec("broken", "edgelab.no_such_module", "Nothing", "broken", "none", "cannot import"))
    try:
        yield ("oddity", "broken")
    finally:
        for name in ("oddity", "marked", "broken"):
            unregister(name)


def test_doctor_lists_every_registered_rung_in_one_row_each(odd_rungs: tuple[str, str]) -> None:
    from edgelab.runtimes import registry

    rows = diagnose()
    assert [row[0] for row in rows] == ["workloads", *registry.names()]
    by_name = {row[0]: row for row in rows}
    _, usable, reason, fix, _ = by_name["oddity"]
    assert (usable, reason, fix) == (False, "needs a thing this host lacks", "fake: nothing to fix")
    _, usable, reason, fix, _ = by_name["broken"]
    assert not usable and reason.startswith("ModuleNotFoundError") and "\n" not in reason
    assert fix == "report this as a bug"
    _, usable, _, _, details = by_name["marked"]
    assert usable and details["marks"] == "emulated (TCG): no KVM here"


# -- the catalog: one list for edgelab workloads and the TUI -----------------------------------------
def test_catalog_kinds_are_the_rungs_artifacts_and_reading_it_builds_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgelab import build
    from edgelab.catalog import artifact_kinds, catalog, kind_rungs
    from edgelab.runtimes import registry

    used = {s.artifact for s in registry.specs()} - {"none"}
    assert set(artifact_kinds()) == used and artifact_kinds()[:2] == ("wasm", "native")
    assert "wasm:jit" not in registry.names() or "wasm:jit" in kind_rungs("wasm")
    monkeypatch.setenv("EDGELAB_CACHE_DIR", str(tmp_path / "cache"))
    assert build.cache_dir() == tmp_path / "cache"
    entries = catalog(images=False)
    assert entries and all(not e.artifacts["wasm"].built and e.artifacts["wasm"].size_bytes is None for e in entries)
    assert not (tmp_path / "cache" / "artifacts").exists() or not any((tmp_path / "cache" / "artifacts").rglob("*.wasm"))
    hello = next(e for e in entries if e.workload.name == "hello").as_json()
    assert hello["image"] is None and hello["image_error"] == "not asked"
    assert hello["wasm"] == {"path": hello["wasm"]["path"], "size_bytes": None, "built": False}


def test_the_tui_cells_read_the_catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgelab import build
    from edgelab.tui.artifacts import NOT_BUILT, artifact_sizes
    from edgelab.workloads import get_workload

    hello = get_workload("hello")
    built = build.ensure_wasm(hello)  # the real cache: cheap once built
    cells = artifact_sizes(hello, client=None)
    assert cells["wasm"] == built.stat().st_size
    assert cells["image"] == "no engine"
    monkeypatch.setenv("EDGELAB_CACHE_DIR", str(tmp_path / "empty"))
    assert artifact_sizes(hello, client=None)["wasm"] == NOT_BUILT


def test_core_catalog_never_imports_textual() -> None:
    code = "import sys, edgelab.catalog; print('textual' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr
