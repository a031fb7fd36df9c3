"""The microvm rung on a real QEMU: byte-identical answers over the virtio port, its mark on
every figure under TCG, resident guests held and stopped, and no QEMU outliving a killed lab.

Each boot costs ~3 s under TCG on a quiet 2-core machine (8 s measured with the machine
loaded), so this file boots as few guests as it can: one resident guest answers every
byte-identity request, three resident guests boot in batches of one per core; the hostile
workloads (a boot each) run under CI=true only. The contract suite
(tests/test_contract.py) adds its reduced set for this rung.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from edgelab.errors import LaunchFailed, RuntimeUnavailable
from edgelab.protocol import Response
from edgelab.runtimes import registry
from edgelab.runtimes.base import Runtime
from edgelab.runtimes.microvm import initramfs
from edgelab.runtimes.microvm.runtime import TCG_MARK, MicrovmRuntime, guest_failure
from edgelab.session import Session
from edgelab.workloads import get_workload

EVERY_BYTE = bytes(range(256))
KILL_CLEANUP_S = 15.0
IN_CI = os.environ.get("CI", "").lower() == "true"
#: Hostile workloads cost a boot each: under CI=true, where the minutes are there.
ci_only = pytest.mark.skipif(not IN_CI, reason="a boot each (~3-8 s under TCG): run under CI=true")


def _unusable(runtime: Runtime) -> str | None:
    try:
        runtime.check()
    except RuntimeUnavailable as exc:
        return str(exc)
    return None


@pytest.fixture(scope="module")
def microvm() -> Iterator[Runtime]:
    runtime = registry.create_runtime("microvm", Session())
    reason = _unusable(runtime)
    if reason:
        pytest.skip(reason)
    yield runtime
    runtime.close()


def _qemus_of(pids: set[int]) -> list[int]:
    return [pid for pid in pids if psutil.pid_exists(pid) and _alive(pid)]


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# -- no guest needed ---------------------------------------------------------------------------
def test_newc_archive_is_well_formed_and_deterministic() -> None:
    entries = [initramfs.directory("dev"), initramfs.char_device("dev/console", 5, 1),
               initramfs.file("init", b"\x7fELF" + EVERY_BYTE, executable=True)]  # fmt: skip
    data = initramfs.newc_archive(entries)
    assert data == initramfs.newc_archive(entries)
    assert len(data) % 4 == 0
    offset, seen = 0, []
    while True:
        header = data[offset : offset + 110]
        assert header[:6] == b"070701"
        fields = [int(header[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
        mode, size, rdev_major, rdev_minor, namesize = fields[1], fields[6], fields[9], fields[10], fields[11]
        name = data[offset + 110 : offset + 110 + namesize - 1].decode()
        offset += 110 + namesize
        offset += -offset % 4
        body = data[offset : offset + size]
        offset += size + (-size % 4)
        if name == "TRAILER!!!":
            break
        seen.append((name, mode, body, (rdev_major, rdev_minor)))
    assert [s[0] for s in seen] == ["dev", "dev/console", "init"]
    assert seen[1][1] == 0o020600 and seen[1][3] == (5, 1)
    assert seen[2][1] == 0o100755 and seen[2][2] == b"\x7fELF" + EVERY_BYTE
    assert offset == len(data)


def test_guest_failure_reads_the_workloads_exit_from_the_panic_line(tmp_path: Path) -> None:
    log = tmp_path / "serial.log"
    log.write_text("[    5.1] Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b\n")
    assert guest_failure(log) == "killed by SIGSEGV"
    log.write_text("[    5.1] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000300\n")
    assert guest_failure(log) == "exited with code 3"
    log.write_text("edgelab-init: wait status 0x00000006\n[    6.0] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000000\n")
    assert guest_failure(log) == "killed by SIGABRT"
    log.write_text("edgelab-init: no virtio console port /dev/vport0p1\n")
    assert guest_failure(log) == "no virtio console port /dev/vport0p1"


def test_check_with_no_kernel_obtainable_is_one_line_with_a_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGELAB_CACHE_DIR", str(tmp_path))
    runtime = MicrovmRuntime(Session(), kernel_package="linux-image-edgelab-no-such-kernel")
    with pytest.raises(RuntimeUnavailable) as caught:
        runtime.check()
    message = str(caught.value)
    assert "\n" not in message and message.startswith("microvm: ")
    assert caught.value.fix
    assert not (tmp_path / "microvm" / "linux-image-edgelab-no-such-kernel.current").exists()
    assert not list((tmp_path / "microvm").glob(".fetch-*"))  # nothing half-written


def test_check_without_qemu_is_one_line_naming_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import edgelab.runtimes.microvm.runtime as microvm_runtime

    monkeypatch.setattr(microvm_runtime, "qemu_path", lambda: None)
    with pytest.raises(RuntimeUnavailable) as caught:
        MicrovmRuntime(Session()).check()
    assert str(caught.value) == (
        "microvm: qemu-system-x86_64 not found (fix: apt-get install qemu-system-x86)"
    )


# -- real guests --------------------------------------------------------------------------------
def test_answers_are_byte_identical_to_subprocess(microvm: Runtime) -> None:
    hello = get_workload("hello")
    native = registry.create_runtime("subprocess", Session())
    requests = [EVERY_BYTE, b"", os.urandom(60_000), b"\r\n\x03\x04\x1a\x7f" * 100]
    try:
        launch = microvm.launch(hello, requests[0], 120.0)
        try:
            answers = [launch.response] + [launch.instance.request(r, 30.0) for r in requests[1:]]
        finally:
            launch.instance.stop()
        expected = []
        for request in requests:
            one = native.launch(hello, request, 10.0)
            expected.append(one.response)
            one.instance.stop()
    finally:
        native.close()
    assert answers == expected
    assert answers[0] == Response(0, b"hello, " + EVERY_BYTE)
    assert tuple(launch.phases_ns) == ("boot", "first_response")
    assert sum(launch.phases_ns.values()) == launch.startup_ns


def test_three_resident_guests_are_held_then_stopped_leaving_no_qemu(microvm: Runtime) -> None:
    hello = get_workload("hello")
    launches = microvm.launch_many(hello, b"held", 3, 120.0)
    pids = {launch.instance.pid for launch in launches}  # type: ignore[attr-defined]
    try:
        assert len(pids) == 3 and {launch.response for launch in launches} == {Response(0, b"hello, held")}
        assert all(psutil.Process(pid).name().startswith("qemu-system") for pid in pids)
        assert microvm.pss_bytes([launches[0].instance]) > 1 << 20  # a guest's QEMU holds MiBs
        assert [launch.instance.request(b"again", 30.0) for launch in launches] == [Response(0, b"hello, again")] * 3
    finally:
        microvm.stop_many([launch.instance for launch in launches])
    assert _qemus_of(pids) == []
    assert microvm.live_instances() == []


def test_every_figure_carries_the_tcg_mark(tmp_path: Path, microvm: Runtime) -> None:
    if microvm.marks() != (TCG_MARK,):
        pytest.skip("KVM is usable here: no emulation mark to check")
    out = tmp_path / "run.json"
    done = subprocess.run(
        [sys.executable, "-m", "edgelab", "run", "-w", "hello", "-r", "microvm", "-n", "1", "--warmup", "0",
         "--no-history", "--json", str(out)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = next(r for r in json.loads(out.read_text())["results"] if r["runtime"] == "microvm")
    assert result["marks"] == [TCG_MARK]
    assert TCG_MARK in result["warnings"]
    assert result["ok"] == 1
    assert "TCG" in result["startup_includes"]
    assert "emulated (TCG)" in done.stdout + done.stderr  # the table says it too


def test_sigkill_of_a_lab_with_a_resident_guest_leaves_no_qemu(microvm: Runtime) -> None:
    lab = subprocess.Popen(
        [sys.executable, "-m", "edgelab", "run", "-w", "hello", "-r", "microvm", "-n", "1", "--warmup", "0",
         "--scenario", "ramp", "--resident", "2", "--no-history"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    sid = lab.pid
    try:
        qemus: set[int] = set()
        end = time.monotonic() + 180
        while not qemus and time.monotonic() < end and lab.poll() is None:
            qemus = {p.pid for p in psutil.process_iter(["name"]) if (p.info["name"] or "").startswith("qemu-system")
                     and _session(p.pid) == sid}  # fmt: skip
            time.sleep(0.2)
        assert qemus, "the lab started no guest"
        time.sleep(1.0)  # past the spawn: the guest is registered with the watchdog
        os.kill(lab.pid, signal.SIGKILL)
        lab.wait(10)
        deadline = time.monotonic() + KILL_CLEANUP_S
        left = [p.pid for p in psutil.process_iter() if _session(p.pid) == sid and _alive(p.pid)]
        while left and time.monotonic() < deadline:
            time.sleep(0.2)
            left = [p.pid for p in psutil.process_iter() if _session(p.pid) == sid and _alive(p.pid)]
        assert left == [], f"left behind: {[psutil.Process(p).cmdline()[:2] for p in left if psutil.pid_exists(p)]}"
    finally:
        if lab.poll() is None:
            lab.kill()
            lab.wait(10)


def _session(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return int(data[data.rindex(b")") + 2 :].split()[3])
    except (OSError, ValueError, IndexError):
        return None


@ci_only
def test_a_memory_bomb_meets_its_limit_inside_the_guest_as_in_a_process(microvm: Runtime) -> None:
    """RLIMIT_AS is set by the guest's init (the workload's memory_limit_mib), and the guest has
    that much RAM beyond the kernel's: the bomb gets the same answer as the subprocess rung's."""
    membomb = get_workload("membomb")
    native = registry.create_runtime("subprocess", Session())
    try:
        one = native.launch(membomb, b"", 10.0)
        expected = one.response
        one.instance.stop()
    finally:
        native.close()
    launch = microvm.launch(membomb, b"", 120.0)
    launch.instance.stop()
    assert launch.response == expected
    assert b"out of memory" in launch.response.body



@ci_only
def test_a_crashing_workload_fails_as_it_does_in_a_process(microvm: Runtime) -> None:
    """The workload is init's child, not PID 1 (which the kernel shields from SIGABRT): abort
    kills it, and the launch fails with the subprocess rung's words."""
    crash = get_workload("crash")
    native = registry.create_runtime("subprocess", Session())
    try:
        with pytest.raises(LaunchFailed) as natively:
            native.launch(crash, b"abort", 10.0)
    finally:
        native.close()
    with pytest.raises(LaunchFailed) as in_guest:
        microvm.launch(crash, b"abort", 120.0)
    assert str(in_guest.value) == str(natively.value) == "killed by SIGABRT before answering"
    assert microvm.live_instances() == []
