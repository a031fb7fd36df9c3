"""The cold-start ladder: ``edgelab ladder`` on real rungs plus tiny rungs registered at run time,
its log-scale axis, its budget, and the TUI's ladder view.

The tiny rungs are registered here (``register`` + ``unregister`` in a fixture) and need no
other edit: the registry is the one list the ladder reads.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import MappingProxyType

import pytest

from edgelab.errors import RuntimeUnavailable
from edgelab.ladder import LogAxis, plan_rung, tick_label
from edgelab.protocol import Response
from edgelab.runtimes import registry
from edgelab.runtimes.base import Instance, Launch, Runtime
from edgelab.session import Session
from edgelab.stats import format_duration_ns
from edgelab.workloads import Workload


# -- tiny rungs registered at run time ----------------------------------------------------------
class TinyInstance(Instance):
    def __init__(self, owner: TinyRuntime) -> None:
        self.runtime = owner.name
        self._owner = owner

    def request(self, payload: bytes, timeout_s: float) -> Response:
        return Response(0, b"tiny:" + payload[:16])

    def stop(self) -> None:
        self._owner._untrack(self)


class TinyRuntime(Runtime):
    """A runtime whose launch takes ``delay_s`` of real wall time and reports ``startup_ns``:
    enough for the ladder's bookkeeping, budget and table; its figures are not measurements."""

    phase_names = ("start",)
    memory_metric = "tiny (4 KiB per instance, pretend)"
    startup_includes = "a pretend start (test rung)"

    def __init__(self, session: Session, startup_ns: int = 5_000, delay_s: float = 0.0, unavailable: str = "") -> None:
        super().__init__(session)
        self._startup_ns = startup_ns
        self._delay_s = delay_s
        self._unavailable = unavailable

    def check(self) -> None:
        if self._unavailable:
            raise RuntimeUnavailable(self.name, self._unavailable, "nothing to fix: a test rung")

    def prepare(self, workload: Workload) -> None:
        self.check()

    def launch(self, workload: Workload, request: bytes, timeout_s: float) -> Launch:
        if self._delay_s:
            time.sleep(self._delay_s)
        instance = TinyInstance(self)
        self._track(instance)
        return Launch(instance, instance.request(request, timeout_s), self._startup_ns, {"start": self._startup_ns})

    def pss_bytes(self, instances: Sequence[Instance]) -> int:
        return 4096 * len(instances)

    def marks(self) -> tuple[str, ...]:
        return ("pretend (test rung)",) if self._delay_s else ()


def _tiny(name: str, **options: object) -> registry.RuntimeSpec:
    return registry.RuntimeSpec(
        name, __name__, "TinyRuntime", name, "none", "a test rung", skips="everything (a test rung)",
        options=MappingProxyType(dict(options)),
    )


@pytest.fixture
def tiny_rungs() -> Iterator[None]:
    specs = [
        _tiny("laddertiny", startup_ns=4_000),
        _tiny("ladderslow", startup_ns=40_000_000, delay_s=0.05),
        _tiny("ladderbroken", unavailable="no such thing on this machine"),
    ]
    for spec in specs:
        registry.register(spec)
    try:
        yield
    finally:
        for spec in specs:
            registry.unregister(spec.name)


def _ladder(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from edgelab.cli import build_parser
    from edgelab.ladder import cmd_ladder

    code = cmd_ladder(build_parser().parse_args(["ladder", *args]))
    out, err = capsys.readouterr()
    return code, out, err


def _bar_cells(line: str) -> float:
    eighths = " ▏▎▍▌▋▊▉"
    return line.count("█") + sum(eighths.index(ch) / 8 for ch in line if ch in eighths[1:])


def _chart(out: str, names: Sequence[str]) -> dict[str, str]:
    return {line.split()[0]: line for line in out.splitlines() if line.split() and line.split()[0] in names and "█" in line}


# -- the axis -------------------------------------------------------------------------------------
def test_log_axis_ticks_one_per_decade_from_1us_to_10s() -> None:
    axis = LogAxis(width=42)
    assert axis.ticks() == [
        (0, "1µs"), (6, "10µs"), (12, "100µs"), (18, "1ms"), (24, "10ms"), (30, "100ms"), (36, "1s"), (42, "10s"),
    ]
    rule, labels = axis.tick_lines()
    assert len(rule) == 43 and rule[0] == "├" and rule[6] == "┼" and rule[42] == "┤"
    assert labels.split() == ["1µs", "10µs", "100µs", "1ms", "10ms", "100ms", "1s", "10s"]
    assert labels.index("1ms") == 18 and labels.index("1s ") == 36


def test_log_axis_places_known_values() -> None:
    axis = LogAxis(width=70)  # 10 cells a decade
    assert axis.cells(1e3) == 0 and axis.cells(1e10) == 70
    assert axis.cells(1e6) == pytest.approx(30)  # 1 ms: three decades above 1 µs
    assert axis.cells(2e3) == pytest.approx(3.0103, abs=1e-3)  # log10(2) of a decade
    assert axis.cells(3e9) == pytest.approx(64.771, abs=1e-3)
    assert axis.cells(100) == 0 and axis.cells(1e12) == 70  # clamped, not off the chart
    assert axis.column(1e10) == 69
    bar = axis.bar(1e6, 1e7)
    assert len(bar) == 70 and bar[:30] == "█" * 30 and bar[30:40] == "░" * 10 and bar[40:].strip() == ""
    lengths = [_bar_cells(axis.bar(v)) for v in (1.5e3, 2e4, 3e5, 4e6, 5e7, 6e8, 3e9)]
    assert lengths == sorted(lengths) and len(set(lengths)) == len(lengths)


def test_tick_labels_are_short() -> None:
    assert [tick_label(10.0**e) for e in range(3, 11)] == ["1µs", "10µs", "100µs", "1ms", "10ms", "100ms", "1s", "10s"]


def test_budget_caps_a_slow_rung_and_leaves_a_fast_one() -> None:
    slow = plan_rung("microvm", launch_wall_s=3.0, probe_s=6.0, count=30, resident=5, budget_s=20.0)
    assert slow.capped and slow.count == 3 and slow.warmup == 0 and slow.resident == 1  # 15 s - 6 s probe: 3 launches
    fast = plan_rung("wasm", launch_wall_s=20e-6, probe_s=1e-3, count=30, resident=5, budget_s=20.0)
    assert not fast.capped and fast.count == 30 and fast.warmup == 1 and fast.resident == 5
    # Past its budget a rung still gets MIN_CAPPED_COUNT; its ramp is priced by its startup.
    assert plan_rung("m", 9.0, 9.0, 30, 200, 20.0).count == 1
    assert plan_rung("m", 9.0, 9.0, 30, 200, 20.0, resident_launch_s=5.0).resident == 1
    assert plan_rung("w", 0.1, 0.1, 30, 200, 20.0, resident_launch_s=1e-5).resident == 200
    assert plan_rung("c", 0.3, 0.6, 30, 0, 20.0).resident == 0


# -- the command --------------------------------------------------------------------------------------
def test_ladder_on_the_default_rungs_and_a_rung_registered_at_run_time(
    tiny_rungs: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    export = tmp_path / "ladder.json"
    rungs = [*registry.default_names(), "laddertiny"]
    code, out, err = _ladder(["-n", "3", "--resident", "1", "--rungs", ",".join(rungs), "--json", str(export), "--no-history"], capsys)
    data = json.loads(export.read_text())
    results = {r["runtime"]: r for r in data["results"]}
    assert list(results) == rungs  # every rung asked for is in the export, in order
    usable = [name for name in rungs if results[name]["startup_us"]]
    unusable = [name for name in rungs if not results[name]["startup_us"]]
    assert "laddertiny" in usable and code == 0
    for name in unusable:  # a rung unusable here: exactly one line naming it, never a traceback
        assert results[name]["error"]
        assert sum(line.startswith(f"{name}:") and results[name]["error"] in line for line in out.splitlines()) == 1
    assert "Traceback" not in out + err
    # The table rows, the chart's bars and the export agree: sorted by p50, bars monotone.
    p50 = {name: results[name]["startup_us"]["p50"] for name in usable}
    order = sorted(usable, key=p50.__getitem__)
    table_rows = [line.split()[0] for line in out.splitlines() if line.split() and line.split()[0] in usable and "█" not in line and ":" not in line.split()[0]]
    assert table_rows[: len(order)] == order
    chart = _chart(out, usable)
    assert list(chart) == order
    cells = [_bar_cells(chart[name]) for name in order]
    assert cells == sorted(cells)
    assert "1µs" in out and "100ms" in out and "10s" in out
    # What each figure includes and skips, its idle cost after the ramp, and the probe's plan.
    for name in usable:
        assert f"{name}: {results[name]['startup_includes']}" in " ".join(out.split())
        assert results[name]["memory"]["resident_instances"] == 1
        assert data["metadata"]["ladder"]["rungs"][name]["count"] == 3
    assert "skips: everything (a test rung)" in out
    assert data["metadata"]["ladder"]["bursts"][0]["interleave"]["mode"] == "block"


def test_a_slow_rung_gets_fewer_launches_within_its_budget_and_says_so(
    tiny_rungs: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    export = tmp_path / "ladder.json"
    started = time.monotonic()
    code, out, _ = _ladder(["-n", "30", "--resident", "2", "--budget-s", "1", "--rungs", "laddertiny,ladderslow", "--json", str(export), "--no-history"], capsys)
    took = time.monotonic() - started
    data = json.loads(export.read_text())
    plans = data["metadata"]["ladder"]["rungs"]
    assert code == 0
    assert plans["laddertiny"] == {**plans["laddertiny"], "count": 30, "capped_by_budget": False, "resident": 2}
    assert plans["ladderslow"]["capped_by_budget"] and 3 <= plans["ladderslow"]["count"] < 30
    results = {r["runtime"]: r for r in data["results"]}
    assert results["ladderslow"]["count"] == plans["ladderslow"]["count"]
    assert f"budget: {plans['ladderslow']['count']} of 30 cold starts" in out
    # Its mark stands beside its figure: flagged in the table, said in the chart and the notes.
    assert any(line.split()[:2] == ["ladderslow", "⚠"] for line in out.splitlines())
    assert sum("pretend (test rung)" in line for line in out.splitlines()) == 2
    # Two rungs of 1 s each, plus preparing and the ramps' MemAvailable readings (~0.6 s a
    # rung); a loaded machine (seven other test runs) gets room, a runaway ladder does not.
    assert took < 10
    # Still one mixed burst, in blocks, each rung with its own count.
    (burst,) = data["metadata"]["ladder"]["bursts"]
    assert burst["counts"] == {"laddertiny": 30, "ladderslow": plans["ladderslow"]["count"]}
    assert burst["warmups"] == {"laddertiny": 1, "ladderslow": 0}  # the probe warmed the capped rung
    assert burst["interleave"]["mode"] == "block" and set(burst["interleave"]["launches_per_block"]) == {"laddertiny", "ladderslow"}


def test_an_unusable_rung_is_one_line_and_the_rest_exit_0(tiny_rungs: None, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _ladder(["-n", "3", "--resident", "0", "--rungs", "laddertiny,ladderbroken", "--no-history"], capsys)
    assert code == 0
    lines = [line for line in out.splitlines() if "ladderbroken" in line]
    assert lines == ["ladderbroken: no such thing on this machine (fix: nothing to fix: a test rung)"]
    assert "Traceback" not in out + err


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--rungs", "nope"], "unknown runtime 'nope'"),
        (["-n", "0"], "--count/-n"),
        (["--budget-s", "-1"], "--budget-s"),
        (["-w", "nope"], "unknown workload 'nope'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], says: str) -> None:
    done = subprocess.run([sys.executable, "-m", "edgelab", "ladder", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("edgelab: ") and says in done.stderr


# -- the TUI's ladder view ------------------------------------------------------------------------
def _marked_fake_app(tmp_path: Path) -> object:
    """The lab on the fake runtime (the UI never hosts instances in a test either: the fake's
    'instances' are objects), the Wasm one carrying a mark, as an emulated rung would."""
    from edgelab.lab import Lab
    from edgelab.runtimes.fake import FakeRuntime
    from edgelab.tui.app import EdgelabApp

    class MarkedFake(FakeRuntime):
        def marks(self) -> tuple[str, ...]:
            return ("emulated (test mark)",) if self.name == "wasm" else ()

    lab = Lab(runtime_factory=lambda name, session: MarkedFake(session, as_runtime=name))
    return EdgelabApp(lab=lab, screenshot_dir=tmp_path, export_dir=tmp_path, deterministic=True, only_workloads=("hello",))


async def _burst_then_ladder(pilot: object, press_ladder_first: bool = False) -> None:
    import asyncio

    from edgelab.tui.app import EdgelabApp
    from edgelab.tui.controls import Controls

    app = pilot.app  # type: ignore[attr-defined]
    assert isinstance(app, EdgelabApp)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while app.query_one(Controls).workload() is None:
        assert loop.time() < deadline, "workload list never loaded"
        await asyncio.sleep(0.05)
    if press_ladder_first:
        await pilot.press("L")  # type: ignore[attr-defined]
    await pilot.press("r")  # type: ignore[attr-defined]
    while app.state.result is None or app.running:
        assert loop.time() < deadline, "burst never finished"
        await asyncio.sleep(0.05)
    if not press_ladder_first:
        await pilot.press("L")  # type: ignore[attr-defined]
    await asyncio.sleep(0.4)  # a redraw tick of the view
    await pilot.pause()  # type: ignore[attr-defined]


def test_ladder_view_live_from_the_lab_state(tmp_path: Path) -> None:
    """L pushes the view; r from it runs a burst whose figures arrive through the app's state
    (the events of the measuring side), sorted by p50, each with p50 and p99, marks shown; escape
    goes back to the panels."""
    import asyncio

    from edgelab.tui.ladder import LadderScreen

    async def scenario() -> None:
        app = _marked_fake_app(tmp_path)
        async with app.run_test(size=(120, 30)) as pilot:  # type: ignore[attr-defined]
            await _burst_then_ladder(pilot, press_ladder_first=True)
            screen = app.screen  # type: ignore[attr-defined]
            assert isinstance(screen, LadderScreen)
            rows = screen.rows()
            assert [r.name for r in rows] == ["wasm", "subprocess", "container"]
            assert all(r.p50_ns and r.p99_ns and r.p99_ns >= r.p50_ns and r.n == 20 for r in rows)
            assert [r.marks for r in rows] == [("emulated (test mark)",), (), ()]
            shown = str(screen.query_one("#ladder-chart").render())
            for r in rows:
                assert format_duration_ns(r.p50_ns) in shown and f"p99 {format_duration_ns(r.p99_ns)}" in shown
            assert "⚠ emulated (test mark)" in shown and "1µs" in shown and "10s" in shown
            lines = {line.split()[0]: line for line in shown.splitlines() if "█" in line}
            cells = [_bar_cells(lines[r.name]) for r in rows]
            assert cells == sorted(cells) and cells[0] < cells[-1]
            await pilot.press("escape")
            assert not isinstance(app.screen, LadderScreen)  # type: ignore[attr-defined]

    asyncio.run(scenario())


def test_ladder_rows_place_waiting_and_unavailable_rungs_last() -> None:
    from edgelab.events import RuntimeStatus, SampleRecorded
    from edgelab.results import Sample
    from edgelab.tui.ladder import ladder_rows, render_ladder
    from edgelab.tui.state import LabState

    state = LabState(("container", "subprocess", "wasm"))
    state.reset(("container", "subprocess", "wasm"))
    state.apply([
        RuntimeStatus("container", "unavailable", "no engine here", "start dockerd"),
        SampleRecorded(Sample("wasm", 0, False, True, 2_000)),
        SampleRecorded(Sample("wasm", 1, False, True, 4_000)),
    ])
    rows = ladder_rows(state)
    assert [(r.name, r.status) for r in rows] == [("wasm", "waiting"), ("container", "unavailable: no engine here"), ("subprocess", "waiting")]
    assert rows[0].p50_ns == 3_000 and rows[0].p99_ns == pytest.approx(3_980)
    text = render_ladder(rows, 100).plain
    assert "unavailable: no engine here" in text and "3.00 µs · p99 3.98 µs" in text


def test_the_ladder_at_80_columns_cuts_no_figure_and_no_warning() -> None:
    from edgelab.tui.ladder import LadderRow, render_ladder

    mark = "instances share the fork server's address-space layout (ASLR once per server, not per instance)"
    rows = [
        LadderRow("wasm", 3_540, 4_200, 5, (), ""),
        LadderRow("subprocess:forkserver", 374e3, 2e6, 5, (mark,), ""),
        LadderRow("container", 297e6, 403e6, 5, (), ""),
    ]
    for width in (78, 118):
        text = render_ladder(rows, width).plain
        assert max(len(line) for line in text.splitlines()) <= width, text
        flat = " ".join(text.split())
        for figures in ("3.54 µs · p99 4.20 µs n=5", "374 µs · p99 2.00 ms n=5", "297 ms · p99 403 ms n=5"):
            assert figures in flat, (width, text)
        assert " ".join(mark.split()) in flat.replace("⚠ ", ""), (width, text)


def test_ladder_view_snapshot(snap_compare, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(_marked_fake_app(tmp_path), terminal_size=(100, 24), run_before=_burst_then_ladder)


def test_sigterm_mid_ladder_exits_130_and_leaves_nothing(docker_client: object, tmp_path: Path) -> None:
    """The ladder runs on the lab, so an interrupt unwinds it as it unwinds ``edgelab run``:
    exit 130 within 5 s, no container it labelled and no process of its session left."""
    import os
    import signal

    import psutil

    from edgelab.session import OWNER_PID_LABEL

    out = tmp_path / "ladder.out"
    with out.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "edgelab", "ladder", "--rungs", "container,subprocess", "-n", "30", "--resident", "3", "--no-history"],
            stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "EDGELAB_DATA_DIR": str(tmp_path)},
        )

    def containers() -> list[object]:
        return list(docker_client.api.containers(all=True, filters={"label": f"{OWNER_PID_LABEL}={process.pid}"}))  # type: ignore[attr-defined]

    def session_processes() -> list[int]:
        found = []
        for p in psutil.process_iter(["pid", "status"]):
            try:
                if p.pid != process.pid and os.getsid(p.pid) == process.pid and p.info["status"] != psutil.STATUS_ZOMBIE:
                    found.append(p.pid)
            except (ProcessLookupError, PermissionError, psutil.Error):
                continue
        return found

    deadline = time.monotonic() + 60
    while not containers():
        assert process.poll() is None, out.read_text()
        assert time.monotonic() < deadline, f"no container launched in 60 s: {out.read_text()}"
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=5)
    text = out.read_text()
    assert code == 130, text
    assert "Traceback" not in text and text.strip().splitlines()[-1].startswith("edgelab: interrupted"), text
    assert containers() == [], text
    left = session_processes()
    assert left == [] or not any(psutil.pid_exists(pid) for pid in left), left


def test_the_ladder_core_is_headless() -> None:
    """edgelab/ladder.py is core: importing it (and building the CLI's parser, which reads its
    flags) pulls in no UI and no runtime, so ``edgelab --help`` stays instant."""
    code = (
        "import sys, edgelab.ladder; from edgelab.cli import build_parser; build_parser(); "
        "print(','.join(m for m in ('textual', 'docker', 'wasmtime', 'edgelab.lab') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == ""
