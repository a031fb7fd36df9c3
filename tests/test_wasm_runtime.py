"""The Wasm runtime end to end: real wasmtime, a real host process, real and hostile modules."""

from __future__ import annotations

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

from edgelab.errors import LaunchFailed, LaunchTimeout
from edgelab.runtimes.wasm import WasmRuntime
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


@pytest.fixture()
def runtime() -> Iterator[WasmRuntime]:
    rt = WasmRuntime(Session())
    rt.check()
    try:
        yield rt
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
