"""The TUI's lab runs in a measuring process: same Lab.run, events streamed, nothing left behind."""

from __future__ import annotations

import threading
import time

import psutil

from edgelab.events import SampleRecorded, ScenarioFinished
from edgelab.lab import Settings
from edgelab.remote import RemoteLab


def _descendants() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def test_remote_run_streams_every_event_and_returns_the_result() -> None:
    lab = RemoteLab()
    events: list[object] = []
    try:
        result = lab.run(Settings(workload="fib", runtimes=("subprocess", "wasm"), count=5, warmup=1), on_event=events.append)
    finally:
        lab.close()
    samples = [e for e in events if isinstance(e, SampleRecorded)]
    assert len(samples) == 12
    assert isinstance(events[-1], ScenarioFinished)
    for name in ("subprocess", "wasm"):
        assert result.runtimes[name].ok == 5
        assert result.runtimes[name].summary() is not None


def test_bad_settings_come_back_as_the_same_error() -> None:
    from edgelab.errors import UsageError

    lab = RemoteLab()
    try:
        try:
            lab.run(Settings(workload="nope"))
        except UsageError as exc:
            assert "unknown workload 'nope'" in str(exc)
        else:
            raise AssertionError("no error for an unknown workload")
    finally:
        lab.close()


def test_cancel_ends_a_held_ramp_and_close_leaves_no_process() -> None:
    before = _descendants()
    lab = RemoteLab()
    cancel = threading.Event()
    threading.Timer(1.5, cancel.set).start()
    started = time.monotonic()
    result = lab.run(
        Settings(workload="hello", scenario="ramp", runtimes=("subprocess", "wasm"), resident={"subprocess": 5, "wasm": 100}, hold=True),
        cancel=cancel,
    )
    assert time.monotonic() - started < 10
    assert result.runtimes["wasm"].memory is not None and result.runtimes["wasm"].memory.instances == 100
    lab.close()
    deadline = time.monotonic() + 5
    while _descendants() - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _descendants() - before == set()


def test_server_cleans_up_when_the_ui_dies() -> None:
    """EOF on the server's stdin (the UI was killed) removes every process it started."""
    lab = RemoteLab()
    cancel = threading.Event()
    worker = threading.Thread(
        target=lambda: _swallow(lab.run, Settings(workload="hello", scenario="ramp", runtimes=("subprocess",), resident={"subprocess": 5}, hold=True), cancel=cancel)
    )
    worker.start()
    server = lab._process
    deadline = time.monotonic() + 30
    while server is None or len(psutil.Process(server.pid).children(recursive=True)) < 5:
        assert time.monotonic() < deadline, "ramp never came up"
        time.sleep(0.1)
        server = lab._process
    started = psutil.Process(server.pid).children(recursive=True)
    assert len(started) >= 5
    server.stdin.close()  # what the kernel does when the UI process dies
    server.wait(10)
    gone, alive = psutil.wait_procs(started, timeout=15)
    assert alive == [], [p.cmdline() for p in alive]
    cancel.set()
    worker.join(5)
    lab.close()


def _swallow(fn, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
    try:
        fn(*args, **kwargs)
    except Exception:  # noqa: BLE001 - the server was made to go away mid-run
        pass
