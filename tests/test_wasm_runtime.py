"""The Wasm runtime end to end: real wasmtime, a real host process, real and hostile modules."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from edgelab.errors import LaunchFailed, LaunchTimeout, LimitReached
from edgelab.runtimes.base import StoppedInstance
from edgelab.runtimes.wasm import HOTPATH_ENV, POOL_ENV, SHARD_ENV, STORE_SHARING_ENV, WasmRuntime
from edgelab.session import Session
from edgelab.workloads import Workload

wasmtime = pytest.importorskip("wasmtime")

_SKELETON = """
(module
  (memory (export "memory") {pages})
  (func (export "_initialize"))
  (func (export "edgelab_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "edgelab_handle") (param i32 i32) (result i64)
    {body}))
"""
#: Echo: status 0 at 1023, then the request bytes as the body (binary-safe).
_ECHO = """
    (i32.store8 (i32.const 1023) (i32.const 0))
    (i64.or (i64.shl (i64.const 1023) (i64.const 32))
            (i64.extend_i32_u (i32.add (local.get 1) (i32.const 1))))"""
_TRAP = "unreachable"
_SPIN = "(loop $forever (br $forever)) unreachable"
#: Echo, except that a request starting with "L" never returns.
_SPIN_ON_L = (
    """
    (if (i32.eq (i32.load8_u (local.get 0)) (i32.const 76))
      (then (loop $forever (br $forever))))"""
    + _ECHO
)


def _module(tmp_path: Path, name: str, body: str, pages: int = 1) -> Path:
    path = tmp_path / f"{name}.wasm"
    path.write_bytes(wasmtime.wat2wasm(_SKELETON.format(pages=pages, body=body)))
    return path


def _workload(tmp_path: Path, name: str, timeout_s: float = 1.0, memory_mib: int = 16) -> Workload:
    return Workload(
        name=name,
        description=f"test module {name}",
        directory=tmp_path,
        sources=(),
        default_request=b"ping",
        max_request_bytes=4096,
        timeout_s=timeout_s,
        memory_limit_bytes=memory_mib * 1024 * 1024,
        hostile=False,  # a hostile workload gets no warm-up launch; these tests rely on it
    )


@pytest.fixture(params=["compiled", "ctypes"])
def runtime(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[WasmRuntime]:
    """Every test here runs on both launch paths of the host: the compiled hot path and, as
    where it cannot be built, wasmtime's C API through ctypes call by call."""
    monkeypatch.setenv(HOTPATH_ENV, "1" if request.param == "compiled" else "0")
    rt = WasmRuntime(Session())
    rt.check()
    try:
        yield rt
        if rt._host is not None:  # the path under test is the one the host used
            assert rt.launch_path.startswith(request.param), rt.launch_path
    finally:
        rt.close()


@pytest.fixture()
def echo(tmp_path: Path, runtime: WasmRuntime) -> Workload:
    workload = _workload(tmp_path, "echo")
    runtime.prepare_module(workload, _module(tmp_path, "echo", _ECHO), tmp_path / "echo.cwasm")
    return workload


def test_importing_the_runtime_does_not_import_wasmtime() -> None:
    code = "import sys, edgelab.runtimes.wasm; assert 'wasmtime' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_real_hello_answers_first_and_later_requests(
    runtime: WasmRuntime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGELAB_CACHE_DIR", str(tmp_path / "cache"))
    from edgelab.workloads import get_workload

    hello = get_workload("hello")
    runtime.prepare(hello)
    launch = runtime.launch(hello, b"abc", hello.timeout_s)
    assert launch.response.status == 0
    assert launch.response.body == b"hello, abc"
    assert tuple(launch.phases_ns) == runtime.phase_names
    assert launch.startup_ns == sum(launch.phases_ns.values()) > 0
    assert launch.instance.request(b"", 5).body == b"hello, world"
    assert launch.instance.request(b"again", 5).body == b"hello, again"
    assert runtime.versions() == {"wasmtime": wasmtime_version()}
    load = runtime.preparation()["module load (hello)"]
    assert load.endswith((" ms, compiled", " ms, deserialized from cache")), load
    assert list((tmp_path / "cache" / "wasm").glob("*-wasmtime*.cwasm"))


def wasmtime_version() -> str:
    from importlib.metadata import version

    return version("wasmtime")


def test_resident_instance_answers_many_binary_requests(
    runtime: WasmRuntime, echo: Workload
) -> None:
    launch = runtime.launch(echo, b"first\n\x00", 5)
    assert launch.response.body == b"first\n\x00"
    for i in range(50):
        payload = bytes([i, 0, 10, 255]) * (i + 1)
        response = launch.instance.request(payload, 5)
        assert (response.status, response.body) == (0, payload)
    launch.instance.stop()
    launch.instance.stop()  # idempotent
    assert runtime.live_instances() == []
    with pytest.raises(LaunchFailed, match="stopped"):
        launch.instance.request(b"x", 5)


def test_close_leaves_no_host_process(echo: Workload, runtime: WasmRuntime) -> None:
    runtime.launch(echo, b"x", 5)
    pid = runtime.host_pid
    assert pid is not None and pid in {p.pid for p in psutil.Process().children(recursive=True)}
    runtime.close()
    assert pid not in {p.pid for p in psutil.Process().children(recursive=True)}
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    runtime.close()  # idempotent


def test_trapping_module_is_a_clear_launch_failure(runtime: WasmRuntime, tmp_path: Path) -> None:
    workload = _workload(tmp_path, "trap")
    with pytest.raises(LaunchFailed, match=r"^trapped: .*unreachable"):
        # prepare's warm-up launch already runs the guest
        runtime.prepare_module(workload, _module(tmp_path, "trap", _TRAP), None)
    runtime._loaded.add(workload.name)
    with pytest.raises(LaunchFailed, match=r"^trapped: .*unreachable") as caught:
        runtime.launch(workload, b"x", 5)
    assert "\n" not in str(caught.value)
    assert runtime.live_instances() == []


def test_infinite_loop_times_out(runtime: WasmRuntime, tmp_path: Path, echo: Workload) -> None:
    workload = _workload(tmp_path, "spin", timeout_s=1.0)
    runtime._live_host().call(
        10,
        "load",
        workload.name,
        str(_module(tmp_path, "spin", _SPIN)),
        None,
        workload.memory_limit_bytes,
        workload.timeout_s,
    )
    runtime._loaded.add(workload.name)
    started = time.monotonic()
    with pytest.raises(LaunchTimeout, match="timed out"):
        runtime.launch(workload, b"x", 1.0)
    assert time.monotonic() - started < 2.0
    # the host is still healthy afterwards
    assert runtime.launch(echo, b"alive", 5).response.body == b"alive"


def test_out_of_memory_is_reported(runtime: WasmRuntime, tmp_path: Path) -> None:
    workload = _workload(tmp_path, "big", memory_mib=1)
    with pytest.raises(LaunchFailed, match="out of memory"):
        runtime.prepare_module(workload, _module(tmp_path, "big", _ECHO, pages=64), None)


def test_corrupt_cache_falls_back_to_compiling(tmp_path: Path) -> None:
    wasm = _module(tmp_path, "echo", _ECHO)
    cwasm = tmp_path / "cache" / "echo.cwasm"
    digest = cwasm.with_name(cwasm.name + ".sha256")
    workload = _workload(tmp_path, "echo")

    def load() -> dict:
        rt = WasmRuntime(Session())
        try:
            rt.prepare_module(workload, wasm, cwasm)
            assert rt.launch(workload, b"ok", 5).response.body == b"ok"
            return rt.load_info["echo"]
        finally:
            rt.close()

    assert load()["source"] == "compiled"
    assert load()["source"] == "cache"
    good = cwasm.read_bytes()
    # bytes that do not match the digest are never deserialized
    cwasm.write_bytes(good[: len(good) // 2] + b"\xff" * 64)
    info = load()
    assert (info["source"], info["cache_problem"]) == ("compiled", "digest mismatch")
    assert cwasm.read_bytes() == good
    # garbage with a matching digest: wasmtime refuses it, and we compile again
    garbage = b"\x7fELF not really a module" * 10
    cwasm.write_bytes(garbage)
    digest.write_text(hashlib.sha256(garbage).hexdigest())
    info = load()
    assert info["source"] == "compiled" and info["cache_problem"] not in ("", "digest mismatch")
    assert load()["source"] == "cache"


def test_dead_host_fails_clearly_and_prepare_starts_a_new_one(
    runtime: WasmRuntime, echo: Workload, tmp_path: Path
) -> None:
    launch = runtime.launch(echo, b"x", 5)
    pid = runtime.host_pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(LaunchFailed, match=r"wasm host process exited \(signal 9"):
        launch.instance.request(b"y", 5)
    with pytest.raises(LaunchFailed, match=r"wasm host process exited \(signal 9"):
        runtime.launch(echo, b"y", 5)
    launch.instance.stop()  # never raises for an instance already gone
    runtime.prepare_module(echo, _module(tmp_path, "echo", _ECHO), tmp_path / "echo.cwasm")
    assert runtime.host_pid != pid
    assert runtime.launch(echo, b"back", 5).response.body == b"back"
    assert pid not in {p.pid for p in psutil.Process().children(recursive=True)}


@pytest.mark.slow
def test_a_thousand_resident_instances(runtime: WasmRuntime, echo: Workload) -> None:
    before = runtime.pss_bytes([])
    launches = runtime.launch_many(echo, b"resident", 1000, 5)
    assert len(launches) == 1000 == len(runtime.live_instances())
    assert all(launch.response.body == b"resident" for launch in launches)
    assert len({launch.instance.instance_id for launch in launches}) == 1000  # type: ignore[attr-defined]
    growth = runtime.pss_bytes([launch.instance for launch in launches]) - before
    assert 0 < growth / 1000 < 64 * 1024, f"{growth / 1000:.0f} bytes per instance"
    for launch in launches[::97]:
        assert launch.instance.request(b"still here", 5).body == b"still here"
    for launch in launches[:10]:
        launch.instance.stop()
    assert len(runtime.live_instances()) == 990


def test_request_that_loops_times_out_and_drops_the_instance(
    runtime: WasmRuntime, tmp_path: Path
) -> None:
    workload = _workload(tmp_path, "spin_on_l", timeout_s=1.0)
    runtime.prepare_module(workload, _module(tmp_path, "spin_on_l", _SPIN_ON_L), None)
    launch = runtime.launch(workload, b"ok", 1.0)
    assert launch.instance.request(b"fine", 1.0).body == b"fine"
    started = time.monotonic()
    with pytest.raises(LaunchTimeout, match="timed out"):
        launch.instance.request(b"Loop", 1.0)
    assert time.monotonic() - started < 2.0
    assert runtime.live_instances() == []
    with pytest.raises(LaunchFailed, match="stopped"):
        launch.instance.request(b"fine", 1.0)
    assert runtime.launch(workload, b"next", 1.0).response.body == b"next"


def test_cold_starts_run_back_to_back_and_keep_nothing(runtime: WasmRuntime, echo: Workload) -> None:
    outcomes = runtime.cold_starts(echo, b"\x00burst\xff", 50, 5)
    assert len(outcomes) == 50
    for launch in outcomes:
        assert not isinstance(launch, Exception)
        assert launch.response.body == b"\x00burst\xff"
        assert isinstance(launch.instance, StoppedInstance)
        assert launch.startup_ns == sum(launch.phases_ns.values()) > 0
        assert tuple(launch.phases_ns) == runtime.phase_names
    assert runtime.live_instances() == []
    assert runtime._live_host().call(5, "ping")["instances"] == 0


def test_cold_starts_stop_at_the_first_failure(runtime: WasmRuntime, tmp_path: Path) -> None:
    workload = _workload(tmp_path, "spin_on_l", timeout_s=0.5)
    runtime.prepare_module(workload, _module(tmp_path, "spin_on_l", _SPIN_ON_L), None)
    outcomes = runtime.cold_starts(workload, b"Loop", 20, 0.5)
    assert len(outcomes) == 1
    assert isinstance(outcomes[0], LaunchTimeout)
    assert str(outcomes[0]) == "timed out after 0.5 s"
    assert runtime.cold_starts(workload, b"fine", 3, 0.5)[-1].response.body == b"fine"  # type: ignore[union-attr]


def test_host_refuses_a_module_that_could_outgrow_its_pool_slot(tmp_path: Path) -> None:
    from edgelab.runtimes.wasm import host as wasm_host

    host = wasm_host.Host(max_memory_bytes=4 << 20)
    with pytest.raises(wasm_host.GuestError, match=r"^big's memory may grow to 16 MiB, more than the 4 MiB of a pool slot"):
        host.load("big", str(_module(tmp_path, "big", _ECHO)), None, 16 << 20, 1.0)
    host.load("small", str(_module(tmp_path, "small", _ECHO)), None, 4 << 20, 1.0)
    assert host.launch("small", b"fits", False).body == b"fits"


def test_hot_path_times_on_the_perf_counter_clock(tmp_path: Path) -> None:
    """The compiled path reads CLOCK_MONOTONIC itself; its stamps must lie on the timeline of
    time.perf_counter_ns, between the host's readings before and after the call."""
    from edgelab.build import ensure_wasm_hotpath
    from edgelab.runtimes.wasm import host as wasm_host

    host = wasm_host.Host()
    host.use_hotpath(str(ensure_wasm_hotpath()))
    host.load("echo", str(_module(tmp_path, "echo", _ECHO)), None, 16 << 20, 1.0)
    module = host.modules["echo"]
    for _ in range(20):
        before = time.perf_counter_ns()
        result = host.launch("echo", b"tick", False)
        after = time.perf_counter_ns()
        call = module.call
        assert before <= call.t0 <= call.t1 <= call.t2 <= after
        assert result.startup_ns == call.t2 - call.t0
        assert result.body == b"tick"


def test_a_burst_of_wasm_alone_batches_its_cold_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing to interleave with: the lab asks the host for chunks of back-to-back cold
    starts, and still records every one, warm-ups flagged, in order."""
    from edgelab.lab import Lab, Settings
    from edgelab.runtimes.wasm import HostProcess

    commands: list[str] = []
    real_call = HostProcess.call

    def counting_call(self: HostProcess, timeout_s: float, command: str, *args: object) -> object:
        if self.allocator == "pool":  # the burst host; prepare also starts a resident host
            commands.append(command)
        return real_call(self, timeout_s, command, *args)

    monkeypatch.setattr(HostProcess, "call", counting_call)
    lab = Lab()
    try:
        result = lab.run(Settings(workload="hello", runtimes=("wasm",), count=500, warmup=2))
    finally:
        lab.close()
    samples = result.runtimes["wasm"].samples
    assert [s.index for s in samples] == list(range(502))
    assert [s.warmup for s in samples] == [True, True] + [False] * 500
    assert all(s.ok and s.startup_ns and s.startup_ns > 0 for s in samples)
    assert result.runtimes["wasm"].ok == 500
    batches = commands.count("launch_batch")
    assert 1 <= batches < 50, commands
    assert commands.count("launch") <= 1  # prepare's warm-up, nothing per cold start


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "ctypes"])
def test_a_full_instance_pool_is_one_clear_line(
    compiled: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgelab.build import ensure_wasm_hotpath
    from edgelab.runtimes.wasm import host as wasm_host

    monkeypatch.setattr(wasm_host, "POOL_SLOTS", 3)  # the name the host's engine and errors use
    host = wasm_host.Host()
    if compiled:
        host.use_hotpath(str(ensure_wasm_hotpath()))
    host.load("echo", str(_module(tmp_path, "echo", _ECHO)), None, 16 << 20, 1.0)
    assert all(host.launch("echo", b"x", True).error is None for _ in range(3))
    failed = host.launch("echo", b"x", True)
    assert failed.instance_id is None
    assert failed.error == ("limit", "wasm pool full: 3 instances per host")
    host.drop_all()
    assert host.launch("echo", b"again", False).body == b"again"


def test_under_an_address_space_limit_the_host_allocates_on_demand(tmp_path: Path) -> None:
    """The pool reserves ~1 TiB of address space, which wasmtime would abort on under
    ``ulimit -v``; there the host maps each memory on demand and says so."""
    code = """
import resource
resource.setrlimit(resource.RLIMIT_AS, (6 << 30, resource.RLIM_INFINITY))
from edgelab.runtimes.wasm import WasmRuntime
from edgelab.session import Session
from edgelab.workloads import get_workload
rt = WasmRuntime(Session())
try:
    hello = get_workload("hello")
    rt.prepare(hello)
    print(rt.launch(hello, b"limited", 5).response.body.decode())
    print(rt.preparation()["instance allocator"])
finally:
    rt.close()
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "hello, limited",
        "on demand (the instance pool does not fit under ulimit -v)",
    ]


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "ctypes"])
def test_a_reused_pool_slot_shows_nothing_of_the_instance_before(
    compiled: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each cold start writes into its memory and grows it; the next instance, in the same
    warm slot, must see the module's initial data, zeroes and size again."""
    monkeypatch.setenv(HOTPATH_ENV, "1" if compiled else "0")
    wat = """
(module
  (memory (export "memory") 1)
  (data (i32.const 2048) "A")
  (func (export "_initialize"))
  (func (export "edgelab_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "edgelab_handle") (param i32 i32) (result i64)
    (i32.store8 (i32.const 1023) (i32.const 0))
    (i32.store8 (i32.const 1024) (i32.load8_u (i32.const 2048)))
    (i32.store8 (i32.const 1025) (i32.add (i32.const 48) (i32.load8_u (i32.const 30000))))
    (i32.store8 (i32.const 1026) (i32.add (i32.const 48) (memory.size)))
    (i32.store8 (i32.const 2048) (i32.const 90))
    (i32.store8 (i32.const 30000) (i32.const 89))
    (drop (memory.grow (i32.const 1)))
    (i32.store8 (i32.const 70000) (i32.const 88))
    (i64.or (i64.shl (i64.const 1023) (i64.const 32)) (i64.const 4))))
"""
    path = tmp_path / "stateful.wasm"
    path.write_bytes(wasmtime.wat2wasm(wat))
    workload = _workload(tmp_path, "stateful")
    rt = WasmRuntime(Session())
    try:
        rt.prepare_module(workload, path, None)
        bodies = {launch.response.body for launch in rt.cold_starts(workload, b"", 200, 5)}  # type: ignore[union-attr]
        resident = rt.launch(workload, b"", 5)
        bodies.add(resident.response.body)
        assert bodies == {b"A01"}
        # within one instance the state does persist: the check above can see it
        assert resident.instance.request(b"", 5).body == b"Z" + bytes([48 + 89]) + b"2"
    finally:
        rt.close()


class _Watcher:
    """Stands in for the session watchdog: records the process groups it is asked to kill."""

    def __init__(self) -> None:
        self.pgids: list[int] = []

    def register_pgid(self, pgid: int) -> None:
        self.pgids.append(pgid)


def _gone(pid: int) -> bool:
    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_resident_instances_spread_over_host_processes(
    runtime: WasmRuntime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More resident instances than one host takes: they fill host after host, memory is the
    PSS of all of them, every host is known to the watchdog, and stopping reaches them all."""
    monkeypatch.setenv(SHARD_ENV, "300")
    watcher = _Watcher()
    runtime.watcher = watcher
    echo = _workload(tmp_path, "echo")
    runtime.prepare_module(echo, _module(tmp_path, "echo", _ECHO), tmp_path / "echo.cwasm")
    launches = runtime.launch_many(echo, b"resident", 700, 5)
    assert len(launches) == 700 == len(runtime.live_instances())
    assert all(launch.response.body == b"resident" for launch in launches)
    pids = runtime.host_pids
    assert len(set(pids)) == 4, pids  # the burst host and three resident hosts
    assert set(pids) <= set(watcher.pgids)
    held = [shard.call(5, "ping")["instances"] for shard in runtime._shards]
    assert held == [300, 300, 100]
    assert runtime._live_host().call(5, "ping")["instances"] == 0  # cold starts' host
    total = runtime.pss_bytes([launch.instance for launch in launches])
    each = [psutil.Process(pid).memory_full_info().pss for pid in pids]
    assert total == pytest.approx(sum(each), rel=0.02)
    assert total > sum(each) - min(each) / 2  # not just some of them
    for launch in launches[::150]:  # one on every host
        assert launch.instance.request(b"still here", 5).body == b"still here"
    runtime.stop_many([launch.instance for launch in launches[:350]])
    assert [shard.call(5, "ping")["instances"] for shard in runtime._shards] == [0, 250, 100]
    runtime.stop_many([launch.instance for launch in launches])
    assert [shard.call(5, "ping")["instances"] for shard in runtime._shards] == [0, 0, 0]
    assert runtime.live_instances() == []
    assert runtime.preparation()["resident hosts"] == "3 on-demand hosts, up to 300 instances each"
    again = runtime.launch_many(echo, b"again", 10, 5)  # emptied hosts take instances again
    assert len(runtime.host_pids) == 4 and again[0].instance._host is runtime._shards[0]  # type: ignore[attr-defined]
    runtime.close()
    assert all(_gone(pid) for pid in pids)
    assert not set(pids) & {p.pid for p in psutil.Process().children(recursive=True)}


def test_a_full_pool_fails_the_launch_with_the_limit(
    runtime: WasmRuntime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(POOL_ENV, "3")
    echo = _workload(tmp_path, "echo")
    runtime.prepare_module(echo, _module(tmp_path, "echo", _ECHO), None)
    held = [runtime.launch(echo, b"x", 5) for _ in range(3)]
    with pytest.raises(LimitReached) as caught:
        runtime.launch(echo, b"x", 5)
    assert caught.value.limit == "wasm pool full: 3 instances per host"
    assert caught.value.reached == 3
    assert str(caught.value) == "wasm pool full: 3 instances per host (after 3 instances)"
    held[0].instance.stop()
    assert runtime.launch(echo, b"room", 5).response.body == b"room"


def test_under_ulimit_v_each_host_takes_what_fits_and_another_takes_over() -> None:
    """``ulimit -v`` binds per process: a resident host that runs out of address space keeps
    what it holds, says why, and the next host takes the rest."""
    code = f"""
import os, resource
os.environ[{SHARD_ENV!r}] = "1000000"
resource.setrlimit(resource.RLIMIT_AS, (600 << 20, resource.RLIM_INFINITY))
from edgelab.runtimes.wasm import WasmRuntime
from edgelab.session import Session
from edgelab.workloads import get_workload
rt = WasmRuntime(Session())
try:
    hello = get_workload("hello")
    rt.prepare(hello)
    launches = rt.launch_many(hello, b"x", 10_000, 5)
    held = [shard.call(5, "ping")["instances"] for shard in rt._shards]
    print(len(launches), len(rt.live_instances()), sum(held), len(held), min(held))
    print(all(launch.response.body == b"hello, x" for launch in launches))
    print(rt._shards[0].full)
finally:
    rt.close()
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    counts, identical, first_full = done.stdout.splitlines()
    launched, live, held, hosts, fewest = map(int, counts.split())
    assert launched == live == held == 10_000
    assert hosts >= 2 and fewest > 0
    assert (identical, first_full) == ("True", "True")


def _big_answer(tmp_path: Path, answer_bytes: int) -> Path:
    """A module whose answer is ``answer_bytes`` long (status 0 at 1023, then zeroes)."""
    pages = -(-(answer_bytes + 2048) // 65536)
    body = f"(i64.or (i64.shl (i64.const 1023) (i64.const 32)) (i64.const {answer_bytes}))"
    return _module(tmp_path, f"big{answer_bytes}", body, pages=pages)


def test_a_response_past_the_cap_fails_and_stops_the_instance(
    runtime: WasmRuntime, tmp_path: Path
) -> None:
    """The Wasm path enforces max_response_bytes too: the default 16 MiB cap, a response of
    17 MiB (a flood the guest's memory can hold), the launch fails with the cap in words."""
    workload = _workload(tmp_path, "flood17", memory_mib=32)
    assert workload.max_response_bytes == 16 << 20
    with pytest.raises(LaunchFailed, match=r"^response exceeded 16 MiB$"):
        runtime.prepare_module(workload, _big_answer(tmp_path, 17 << 20), None)
    runtime._loaded.add(workload.name)
    with pytest.raises(LaunchFailed, match=r"^response exceeded 16 MiB$"):
        runtime.launch(workload, b"x", 5)
    assert runtime.live_instances() == []
    assert runtime._live_host().call(5, "ping")["instances"] == 0
    outcomes = runtime.cold_starts(workload, b"x", 5, 5)
    assert len(outcomes) == 1 and str(outcomes[0]) == "response exceeded 16 MiB"


def test_a_request_answered_past_the_cap_drops_the_resident_instance(
    runtime: WasmRuntime, tmp_path: Path
) -> None:
    workload = dataclasses.replace(_workload(tmp_path, "echo_capped"), max_response_bytes=1024)
    runtime.prepare_module(workload, _module(tmp_path, "echo_capped", _ECHO), None)
    launch = runtime.launch(workload, b"small", 5)
    assert launch.instance.request(b"x" * 1024, 5).body == b"x" * 1024  # the cap: the body
    with pytest.raises(LaunchFailed, match=r"^response exceeded 1 KiB$"):
        launch.instance.request(b"x" * 1025, 5)
    assert runtime.live_instances() == []
    assert runtime._live_host().call(5, "ping")["instances"] == 0
    with pytest.raises(LaunchFailed, match="stopped"):
        launch.instance.request(b"x", 5)


_STATEFUL = """
(module
  (memory (export "memory") 1)
  (data (i32.const 2048) "A")
  (func (export "_initialize"))
  (func (export "edgelab_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "edgelab_handle") (param i32 i32) (result i64)
    (if (i32.and (i32.gt_u (local.get 1) (i32.const 0))
                 (i32.eq (i32.load8_u (local.get 0)) (i32.const 76)))
      (then (loop $forever (br $forever))))
    (i32.store8 (i32.const 1023) (i32.const 0))
    (i32.store8 (i32.const 1024) (i32.load8_u (i32.const 2048)))
    (i32.store8 (i32.const 1025) (i32.add (i32.const 48) (memory.size)))
    (i32.store8 (i32.const 2048) (i32.const 90))
    (drop (memory.grow (i32.const 1)))
    (i64.or (i64.shl (i64.const 1023) (i64.const 32)) (i64.const 3))))
"""


def test_resident_instances_sharing_a_store_stay_apart(
    runtime: WasmRuntime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With STORE_SHARING_ENV, resident instances share Stores: each still starts from the
    module's initial memory, keeps its own, times out alone, and a Store is freed with the
    last of its instances."""
    monkeypatch.setenv(STORE_SHARING_ENV, "4")
    path = tmp_path / "stateful.wasm"
    path.write_bytes(wasmtime.wat2wasm(_STATEFUL))
    workload = _workload(tmp_path, "stateful", timeout_s=1.0)
    runtime.prepare_module(workload, path, None)
    launches = runtime.launch_many(workload, b"", 10, 1.0)
    assert [launch.response.body for launch in launches] == [b"A1"] * 10
    (shard,) = runtime._shards
    facts = shard.call(5, "ping")
    assert (facts["instances"], facts["instances_per_store"], facts["stores"]) == (10, 4, 3)
    first, second = launches[0].instance, launches[1].instance  # one Store
    assert first.request(b"", 1.0).body == b"Z2"
    assert first.request(b"", 1.0).body == b"Z3"
    assert second.request(b"", 1.0).body == b"Z2"  # its memory, not its neighbour's
    with pytest.raises(LaunchTimeout):
        first.request(b"Loop", 1.0)
    assert second.request(b"", 1.0).body == b"Z3"  # the Store outlives a neighbour's timeout
    runtime.stop_many([launch.instance for launch in launches[1:3]])
    assert shard.call(5, "ping")["stores"] == 3  # launches[3] still holds the first Store
    launches[3].instance.stop()
    assert shard.call(5, "ping")["stores"] == 2
    assert "4 share a Store" in runtime.preparation()["resident instances per Store"]
    runtime.stop_many([launch.instance for launch in launches])
    assert shard.call(5, "ping")["instances"] == 0 and shard.call(5, "ping")["stores"] == 0


def test_the_flood_workload_is_cut_at_the_cap_and_the_lab_stays_flat(
    runtime: WasmRuntime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """modules/flood: a 20,000,000-byte answer (it fits the guest's ~36 MiB memory) is past
    the 16 MiB cap: the launch fails in one line, no byte of it reaches the lab, the host
    keeps nothing; the default 4 GiB answer does not fit the guest at all (its own out of
    memory answer)."""
    monkeypatch.setenv("EDGELAB_CACHE_DIR", str(tmp_path / "cache"))
    from edgelab.workloads import get_workload

    flood = get_workload("flood")
    runtime.prepare(flood)
    me = psutil.Process()
    before = me.memory_info().rss
    with pytest.raises(LaunchFailed, match=r"^response exceeded 16 MiB$"):
        runtime.launch(flood, b"20000000", flood.timeout_s)
    (outcome,) = runtime.cold_starts(flood, b"20000000", 3, flood.timeout_s)
    assert str(outcome) == "response exceeded 16 MiB"
    assert me.memory_info().rss - before < 4 << 20
    assert runtime.live_instances() == []
    assert runtime._live_host().call(5, "ping")["instances"] == 0
    default = runtime.launch(flood, flood.default_request, flood.timeout_s)
    assert (default.response.status, default.response.body) == (2, b"out of memory")
    at_the_cap = runtime.launch(flood, str(16 << 20).encode(), flood.timeout_s)
    assert at_the_cap.response.body == b"x" * (16 << 20)  # the cap is on the body, as natively
    with pytest.raises(LaunchFailed, match=r"^response exceeded 16 MiB$"):
        runtime.launch(flood, str((16 << 20) + 1).encode(), flood.timeout_s)


@pytest.mark.slow
def test_sigkill_of_a_lab_holding_several_wasm_hosts_leaves_none() -> None:
    """A lab holding five Wasm hosts (resident hosts started mid-ramp among them) dies with
    SIGKILL: every host goes within 15 s, by the watchdog (registration is checked in
    test_resident_instances_spread_over_host_processes) or by the end of its pipe."""
    code = f"""
import os, sys, threading
os.environ[{SHARD_ENV!r}] = "400"
from edgelab.events import RampHeld
from edgelab.lab import Lab, Settings
lab = Lab()
def on_event(event):
    if isinstance(event, RampHeld):
        print(" ".join(map(str, lab.runtime("wasm").host_pids)), flush=True)
settings = Settings(workload="hello", scenario="ramp", runtimes=("wasm",),
                    resident={{"wasm": 1500}}, hold=True)
lab.run(settings, on_event)
"""
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        pids = [int(pid) for pid in line.split()]
        assert len(pids) == 5, line  # the burst host and four resident hosts of 400
        assert all(psutil.pid_exists(pid) for pid in pids)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not all(_gone(pid) for pid in pids):
            time.sleep(0.1)
        assert [pid for pid in pids if not _gone(pid)] == []
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_a_ramp_into_a_full_pool_stops_with_the_limit_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end through the lab: a small ramp launches one by one into the burst host; its
    pool (3 slots here) fills, and the ramp stops there, naming the limit."""
    from edgelab.lab import Lab, Settings

    monkeypatch.setenv(POOL_ENV, "3")
    lab = Lab()
    try:
        result = lab.run(
            Settings(workload="hello", scenario="ramp", runtimes=("wasm",), resident={"wasm": 10})
        )
    finally:
        lab.close()
    memory = result.runtimes["wasm"].memory
    assert memory is not None and memory.instances == 3
    assert memory.limit == (
        "wasm ramp stopped at 3 of 10 instances: wasm pool full: 3 instances per host"
    )


@pytest.mark.slow
def test_a_pool_larger_than_the_mapping_limit_stops_at_the_mapping_limit(tmp_path: Path) -> None:
    """Two mappings per pooled instance: a pool of 40,000 slots cannot be filled under the
    default vm.max_map_count of 65,530; the launch that finds no mapping left says so (and
    does not call it memory), near 32,000 instances."""
    with open("/proc/sys/vm/max_map_count") as limit:
        most = int(limit.read())
    if most > 70_000:
        pytest.skip(f"vm.max_map_count is {most:,} here: a 40,000-slot pool would fit")
    code = f"""
import os
os.environ[{POOL_ENV!r}] = "40000"
from edgelab.runtimes.wasm import host as wasm_host
host = wasm_host.Host()
host.load("echo", {str(_module(tmp_path, "echo", _ECHO))!r}, None, 16 << 20, 1.0)
for held in range(40_000):
    result = host.launch("echo", b"x", True)
    if result.error is not None:
        print(held, *result.error, sep="|")
        break
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    held, kind, line = done.stdout.strip().split("|")
    assert 30_000 < int(held) < most // 2
    assert (kind, line) == (
        "limit",
        f"wasm host out of memory mappings: vm.max_map_count is {most:,} per process",
    )
