"""The TUI's lab runs in a measuring process: same Lab.run, events streamed, nothing left behind."""

from __future__ import annotations

import threading
import time

import psutil

from edgelab.events import RampHeld, SampleRecorded, ScenarioFinished
from edgelab.lab import Settings
from edgelab.remote import RemoteLab


def _descendants() -> set[int]:
    """Live descendants. Zombies are left out: once a Lab has run in this process (another
    test), the lab is a child subreaper, so an orphaned grandchild that has already exited
    (the measuring process's watchdog) is re-parented here and waits to be reaped."""
    found = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                found.add(child.pid)
        except psutil.NoSuchProcess:
            continue
    return found


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
    cancelled_at: list[float] = []

    def cancel_once_held(event: object) -> None:
        # Once the ramp holds (a fixed timer raced the ramp on a loaded machine).
        if isinstance(event, RampHeld):
            cancelled_at.append(time.monotonic())
            cancel.set()

    result = lab.run(
        Settings(workload="hello", scenario="ramp", runtimes=("subprocess", "wasm"), resident={"subprocess": 5, "wasm": 100}, hold=True),
        on_event=cancel_once_held,
        cancel=cancel,
    )
    assert cancelled_at and time.monotonic() - cancelled_at[0] < 10
    assert result.runtimes["wasm"].memory is not None and result.runtimes["wasm"].memory.instances == 100
    lab.close()
    deadline = time.monotonic() + 5
    while _descendants() - before and time.monotonic() < deadline:
        time.sleep(0.1)
    left = _descendants() - before
    assert left == set(), _describe(left)


def _describe(pids: set[int]) -> list[str]:
    found = []
    for pid in sorted(pids):
        try:
            process = psutil.Process(pid)
            found.append(f"{pid} ppid {process.ppid()} {process.status()} {' '.join(process.cmdline())[:200]}")
        except psutil.Error:
            found.append(f"{pid} (gone)")
    return found


def test_a_held_ramp_reaches_the_ui_as_ramp_held_and_ending_it_completes_the_run() -> None:
    """The measuring process forwards RampHeld (so the TUI's e can export a held ramp), and
    ending the hold is the ramp's planned end: ``cancelled`` is false in both results."""
    lab = RemoteLab()
    cancel = threading.Event()
    held: list[RampHeld] = []

    def on_event(event: object) -> None:
        if isinstance(event, RampHeld):
            held.append(event)
            cancel.set()  # what r does in the TUI once the ramp holds

    try:
        result = lab.run(
            Settings(workload="hello", scenario="ramp", runtimes=("subprocess", "wasm"), resident={"subprocess": 3, "wasm": 50}, hold=True),
            on_event=on_event,
            cancel=cancel,
        )
    finally:
        lab.close()
    assert len(held) == 1
    snapshot = held[0].result
    assert snapshot.metadata["cancelled"] is False
    for name, target in (("subprocess", 3), ("wasm", 50)):
        memory = snapshot.runtimes[name].memory
        assert memory is not None and memory.instances == target, name
        assert snapshot.runtimes[name].running == target, name
    assert result.metadata["cancelled"] is False
    assert result.runtimes["wasm"].running == 0


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
