"""A person's own WASI preview 1 command on the Wasm rungs (issue 13, the Wasm side).

Modules no one here ran before: hand-written WAT (``tests/fixtures/wasi/*.wat``, compiled by
wasmtime's wat2wasm) and a C program built by zig against its bundled wasi-libc
(``greet.c``, cached under the user cache dir: the first wasi-libc build takes ~2 minutes).
Everything runs through the real Wasm host; no fake runtime.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgelab.errors import LaunchFailed, LaunchTimeout, UsageError
from edgelab.lab import Lab, Settings
from edgelab.runtimes.base import StoppedInstance
from edgelab.runtimes.wasm.runtime import WasmRuntime
from edgelab.runtimes.wasm.wasi import check_module, describe_grants, parse_module, probe_grants
from edgelab.session import Session
from edgelab.workloads import Function, function_workload

FIXTURES = Path(__file__).parent / "fixtures" / "wasi"
RUNGS = ("wasm", "wasm:mmap", "wasm:aot", "wasm:jit")


@pytest.fixture(scope="session")
def modules(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every WAT fixture compiled to a .wasm file, by name."""
    import wasmtime

    out = tmp_path_factory.mktemp("wasi")
    found = {}
    for source in sorted(FIXTURES.glob("*.wat")):
        path = out / f"{source.stem}.wasm"
        path.write_bytes(wasmtime.wat2wasm(source.read_text()))
        found[source.stem] = path
    return found


@pytest.fixture(scope="session")
def greet_wasm() -> Path:
    """greet.c built by ``zig cc -target wasm32-wasi`` (its wasi-libc), cached by source and
    zig version in the user cache dir as the built-ins' builds are."""
    from edgelab.build import _zig_env, cache_dir, zig_version

    source = FIXTURES / "greet.c"
    key = hashlib.sha256(source.read_bytes() + zig_version().encode()).hexdigest()[:16]
    target = cache_dir() / "wasi-fixtures" / f"greet-{key}.wasm"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        command = [sys.executable, "-m", "ziglang", "cc", "-target", "wasm32-wasi", "-O2", "-s",
                   "-o", str(temp), str(source)]  # fmt: skip
        done = subprocess.run(command, env=_zig_env(), capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        os.replace(temp, target)
    return target


@pytest.fixture(scope="module")
def runtime() -> Iterator[WasmRuntime]:
    """One runtime (a burst host and a resident host) for the tests here: each prepares its
    own workload in it, as a lab runs several, and a host started per test cost ~1 s."""
    rt = WasmRuntime(Session())
    rt.check()
    try:
        yield rt
    finally:
        rt.close()


def _workload(path: Path, timeout_s: float = 5.0, **grants: object):
    return function_workload(path.stem, Function(wasm=str(path), **grants), b"", timeout_s)  # type: ignore[arg-type]


def _edgelab(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgelab", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=None if env is None else {**os.environ, **env},
    )


# -- refusals, in the lab (no wasmtime, no host) ---------------------------------------------
def test_refuses_what_is_not_a_wasi_core_command(tmp_path: Path, modules: dict[str, Path]) -> None:
    not_wasm = tmp_path / "app.wasm"
    not_wasm.write_bytes(b"#!/bin/sh\necho hi\n")
    with pytest.raises(UsageError, match="is not a WebAssembly module"):
        check_module(not_wasm)
    component = tmp_path / "component.wasm"
    component.write_bytes(b"\0asm\x0d\x00\x01\x00")
    with pytest.raises(
        UsageError, match="is a WebAssembly component, not a core module.*wasm32-wasip1"
    ):
        check_module(component)
    with pytest.raises(UsageError, match=r"outside wasi_snapshot_preview1: env\.foo, env\.bar"):
        check_module(modules["env_import"])
    import wasmtime

    reactor = tmp_path / "reactor.wasm"
    reactor.write_bytes(wasmtime.wat2wasm('(module (func (export "_initialize")))'))
    with pytest.raises(UsageError, match="exports no _start"):
        check_module(reactor)
    with pytest.raises(UsageError, match="no such file"):
        check_module(tmp_path / "missing.wasm")
    truncated = modules["echo"].read_bytes()[:-7]
    with pytest.raises(UsageError, match="not a valid WebAssembly module"):
        parse_module(truncated, "truncated.wasm")
    checked = check_module(modules["echo"])
    assert checked.size_bytes == modules["echo"].stat().st_size
    assert {name for _, name in checked.imports} == {"fd_read", "fd_write"}


@pytest.mark.parametrize(
    ("fixture", "message"),
    [
        ("not_wasm", "is not a WebAssembly module"),
        ("component", "is a WebAssembly component, not a core module"),
        ("env_import", "env.foo, env.bar"),
    ],
)
def test_cli_refusal_is_one_line_exit_2_nothing_written(
    tmp_path: Path, modules: dict[str, Path], fixture: str, message: str
) -> None:
    path = modules.get(fixture)
    if path is None:
        path = tmp_path / f"{fixture}.wasm"
        path.write_bytes(b"\0asm\x0d\x00\x01\x00" if fixture == "component" else b"ELF\x7f")
    out = tmp_path / "out.json"
    done = _edgelab("run", "--wasm", str(path), "-r", "wasm", "-n", "1", "--no-history",
                    "--json", str(out), cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgelab: ") and message in lines[0], lines
    assert "Traceback" not in done.stderr
    assert not out.exists()


# -- the four rungs ------------------------------------------------------------------------
def test_echo_on_every_rung_through_lab(modules: dict[str, Path]) -> None:
    """stdin in, stdout out on wasm, wasm:mmap, wasm:aot, wasm:jit: every launch answers the
    request's bytes, with exit time and the command's phases; a ramp holds waiting instances."""
    request = b"request \x00\xff bytes\n" * 3
    lab = Lab()
    try:
        settings = Settings(
            workload="echo", runtimes=RUNGS, count=4, request=request,
            function=Function(wasm=str(modules["echo"])), resident={"wasm": 5},
        )  # fmt: skip
        result = lab.run(settings)
    finally:
        lab.close()
    assert result.metadata["responses_identical"] is True
    for name in RUNGS:
        rt = result.runtimes[name]
        assert rt.error is None, (name, rt.error)
        assert rt.ok == 4 and rt.failed == 0, (name, rt.first_error())
        names = ("wasi", "instantiate", "first_output")
        assert rt.phase_names[-3:] == names, (name, rt.phase_names)
        if name in ("wasm:aot", "wasm:jit"):
            assert rt.phase_names[0] == {"wasm:aot": "deserialize", "wasm:jit": "compile"}[name]
        for sample in rt.samples:
            if sample.ok and not sample.warmup and sample.scenario == "burst":
                assert sample.response_bytes == len(request)
                assert sample.exit_ns is not None and sample.exit_ns >= sample.startup_ns > 0
                assert set(sample.phases_ns) == set(rt.phase_names)
        assert (
            "first stdout byte" in rt.startup_includes
            or "first byte on stdout" in rt.startup_includes
        )
    memory = result.runtimes["wasm"].memory
    assert memory is not None and memory.instances == 5


def test_launch_answers_byte_for_byte_and_ramp_waits(
    runtime: WasmRuntime, modules: dict[str, Path]
) -> None:
    workload = _workload(modules["echo"])
    runtime.prepare(workload)
    request = bytes(range(256)) * 40  # 10 KiB: more than one fd_read
    launch = runtime.launch(workload, request, 5.0)
    assert launch.response.status == 0 and launch.response.body == request
    assert launch.exit_ns is not None and launch.exit_ns >= launch.startup_ns
    assert isinstance(launch.instance, StoppedInstance)  # a command answers once
    waiting = runtime.launch_many(workload, request, 6, 5.0)
    assert len(waiting) == 6 and all(w.waiting and w.response.body == b"" for w in waiting)
    assert all(w.exit_ns is None for w in waiting)
    shard = runtime._shards[0]
    assert shard.call(5, "ping")["instances"] == 6
    runtime.stop_many([w.instance for w in waiting])
    assert shard.call(5, "ping")["instances"] == 0
    assert runtime.live_instances() == []
    prepared = runtime.preparation()
    assert f"({modules['echo'].stat().st_size:,} bytes)" in prepared["module (echo)"]
    assert "deny by default" in prepared["WASI grants (echo)"]


def test_zig_wasi_libc_program_byte_identical(runtime: WasmRuntime, greet_wasm: Path) -> None:
    workload = _workload(greet_wasm)
    runtime.prepare(workload)
    for request in (b"world", b"", "ünïcode\n".encode() * 500):
        launch = runtime.launch(workload, request, 5.0)
        assert launch.response.body == b"hello, " + request


# -- failures: one line each, nothing left behind -------------------------------------------
def test_proc_exit_3_says_status_and_stderr(runtime: WasmRuntime, modules: dict[str, Path]) -> None:
    workload = _workload(modules["exit3"])
    runtime.prepare(workload)
    with pytest.raises(LaunchFailed) as caught:
        runtime.launch(workload, b"x", 5.0)
    assert str(caught.value) == "exited with status 3; stderr: bad request: no name"
    exits_0 = _workload(modules["exit0"])
    runtime.prepare(exits_0)
    done = runtime.launch(exits_0, b"", 5.0)  # proc_exit(0) is a success, as a return is
    assert (done.response.status, done.response.body) == (0, b"bye") and done.exit_ns


def test_output_over_the_limit_is_one_line(runtime: WasmRuntime, modules: dict[str, Path]) -> None:
    from dataclasses import replace

    workload = replace(_workload(modules["flood"]), max_response_bytes=256 << 10)
    runtime.prepare(workload)
    with pytest.raises(LaunchFailed, match=r"^response exceeded 256 KiB \(stdout past the limit"):
        runtime.launch(workload, b"", 5.0)
    assert runtime._host is not None and runtime._host.call(5, "ping")["instances"] == 0
    # A module that ignores its failed writes runs on into the deadline: still the limit's line.
    stubborn = replace(
        _workload(modules["flood_forever"], timeout_s=0.3), max_response_bytes=256 << 10
    )
    runtime.prepare(stubborn)
    with pytest.raises(LaunchFailed, match=r"^response exceeded 256 KiB") as caught:
        runtime.launch(stubborn, b"", 0.3)
    assert not isinstance(caught.value, LaunchTimeout)


def test_memory_and_stack_limits(runtime: WasmRuntime, modules: dict[str, Path]) -> None:
    """The workload's memory limit holds through the store limiter (memory.grow past it
    fails), and the stack limit traps unbounded recursion with one line."""
    from dataclasses import replace

    base = _workload(modules["limits"])
    small = replace(base, name="limits-1m", memory_limit_bytes=1 << 20)
    large = replace(base, name="limits-16m", memory_limit_bytes=16 << 20)
    for workload in (small, large):
        runtime.prepare(workload)
    assert runtime.launch(small, b"grow", 5.0).response.body == b"denied"
    assert runtime.launch(large, b"grow", 5.0).response.body == b"grown"
    assert "1 MiB per linear memory" in runtime.preparation()["memory limit (limits-1m)"]
    with pytest.raises(LaunchFailed, match=r"^trapped: .*stack") as caught:
        runtime.launch(large, b"deep", 5.0)
    assert "\n" not in str(caught.value)


def test_never_exits_timeout_cli(tmp_path: Path, modules: dict[str, Path]) -> None:
    """A module that never exits, ``--timeout 1``: each launch ends at the deadline with one
    line, the run exits non-zero, and no host process is left."""
    import time
    import uuid

    import psutil

    # The run's own processes carry a marker in their environment (the CLI, its Wasm host and
    # its watchdog inherit it): counting this test process's children instead also counted
    # whatever another test's thread was starting at that moment.
    marker = uuid.uuid4().hex
    done = _edgelab("run", "--wasm", str(modules["loop"]), "-r", "wasm", "-n", "1", "--warmup", "0",
                    "--timeout", "1", "--no-history", cwd=tmp_path, env={"EDGELAB_TEST_MARKER": marker})  # fmt: skip
    assert done.returncode != 0
    assert "did not exit within 1 s" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr

    def marked() -> list[int]:
        found = []
        for proc in psutil.process_iter(["pid"]):
            try:
                if proc.environ().get("EDGELAB_TEST_MARKER") == marker and proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc.pid)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return found

    deadline = time.monotonic() + 2.0  # the watchdog leaves just after the lab it watched
    while (left := marked()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == [], f"processes of the run outlived it: {left}"


def test_timeout_drops_instance_host_lives(runtime: WasmRuntime, modules: dict[str, Path]) -> None:
    workload = _workload(modules["loop"], timeout_s=0.3)
    runtime.prepare(workload)
    with pytest.raises(LaunchTimeout, match=r"did not exit within 0\.3 s .*the instance is gone"):
        runtime.launch(workload, b"", 0.3)
    assert runtime._host is not None and runtime._host.alive
    assert runtime._host.call(5, "ping")["instances"] == 0


# -- grants ----------------------------------------------------------------------------------
def test_probe_grants_granted_and_ungranted() -> None:
    rows = {capability: (verdict, detail) for capability, verdict, detail in probe_grants()}
    assert rows["wasi: granted dir (--dir HOST::/data)"] == (
        "allowed", "opened /data/probe.txt and read 8 bytes"
    )  # fmt: skip
    assert rows["wasi: ungranted dir (../ungranted beside /data)"][0] == "denied"
    assert rows["wasi: ungranted preopen (fd 4)"][0] == "denied"
    assert rows["wasi: granted env (EDGELAB_PROBE_GIVEN)"][0] == "allowed"
    hidden = [c for c in rows if c.startswith("wasi: ungranted env")]
    assert len(hidden) == 1 and rows[hidden[0]][0] == "denied"


def test_dir_and_env_grants_reach_a_zig_program(
    tmp_path: Path, runtime: WasmRuntime, greet_wasm: Path
) -> None:
    """The same module without grants sees nothing; with them, what it was given."""
    assert "no directories" in describe_grants((), ())
    assert "s3cr3t" not in describe_grants((), (("SECRET", "s3cr3t"),))  # names, never values
    (tmp_path / "data").mkdir()
    workload = _workload(greet_wasm, dirs=((str(tmp_path / "data"), "/data"),), env=(("K", "v"),))
    runtime.prepare(workload)
    assert "data::/data (read-write)" in runtime.preparation()[f"WASI grants ({greet_wasm.stem})"]
    assert "env K" in runtime.preparation()[f"WASI grants ({greet_wasm.stem})"]
    assert runtime.launch(workload, b"x", 5.0).response.body == b"hello, x"
