"""Raw baseline for the microvm rung: the same QEMU command line, spawned with no lab.

``raw_cold_starts("microvm", workload, n)`` (for benchmarks/ladder.py): per iteration, timed
from right before ``subprocess.Popen`` of qemu-system-x86_64 to the first byte of the
workload's response on QEMU's stdout: the same kernel, initramfs, accelerator (KVM only where
the lab's probe found it usable, else TCG) and command line as the lab's ``microvm`` rung
(``qemu_argv``), the request written to QEMU's stdin before the guest boots, as the lab does.
No process group, no watchdog, no bookkeeping. Killing and reaping QEMU are outside the timing.
One untimed launch first, as the lab's warmup.

``python benchmarks/microvm_raw.py [-w hello] [-n 5]`` prints the lab's p50 (``edgelab.lab.Lab``,
a burst of the rung alone) against the raw loop's, and the ratio. Under TCG a launch is
seconds: keep n small.
"""

from __future__ import annotations

import argparse
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RUNGS = ("microvm",)
BOOT_TIMEOUT_S = 120.0


def _argv(workload: str, serial_log: Path) -> tuple[list[str], bytes, str]:
    """(QEMU's command line, the request frame, the accelerator) for ``workload``."""
    from edgelab.build import ensure_native
    from edgelab.protocol import encode_request
    from edgelab.runtimes.microvm.kernel import ensure_kernel
    from edgelab.runtimes.microvm.runtime import ensure_initramfs, kvm_verdict, qemu_argv, qemu_path
    from edgelab.workloads import get_workload

    spec = get_workload(workload)
    qemu = qemu_path()
    if qemu is None:
        raise SystemExit("edgelab: microvm: qemu-system-x86_64 not found (fix: apt-get install qemu-system-x86)")
    kernel = ensure_kernel()
    accel = "kvm" if kvm_verdict(kernel, qemu)[0] else "tcg"
    initrd = ensure_initramfs(kernel, ensure_native(spec, "x86_64"), spec.name)
    return qemu_argv(qemu, accel, kernel, initrd, serial_log, spec.memory_limit_bytes), encode_request(spec.default_request), accel


def _one(argv: list[str], frame: bytes) -> int:
    started = time.perf_counter_ns()
    qemu = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert qemu.stdin is not None and qemu.stdout is not None
        qemu.stdin.write(frame)  # a small frame: it waits in the pipe until the guest reads it
        qemu.stdin.flush()
        out = qemu.stdout.fileno()
        got = b""
        while len(got) < 2:  # init's ready byte, then the response's first byte
            ready, _, _ = select.select([out], [], [], BOOT_TIMEOUT_S)
            if not ready:
                raise SystemExit(f"edgelab: microvm: no answer within {BOOT_TIMEOUT_S:g} s")
            chunk = os.read(out, 2 - len(got))
            if not chunk:
                raise SystemExit("edgelab: microvm: the guest ended before answering")
            got += chunk
        return time.perf_counter_ns() - started
    finally:
        qemu.kill()
        qemu.wait()


def raw_cold_starts(rung: str, workload: str, n: int) -> list[int]:
    """``n`` startup times in ns of the work the lab times for ``rung`` (spawn of QEMU to the
    first response byte of the workload's default request), with no lab."""
    if rung not in RUNGS:
        raise ValueError(f"no raw microvm baseline for {rung!r} (one of {', '.join(RUNGS)})")
    with tempfile.TemporaryDirectory(prefix="edgelab-microvm-raw-") as scratch:
        argv, frame, _ = _argv(workload, Path(scratch) / "serial.log")
        timings = [_one(argv, frame) for _ in range(n + 1)]
    return timings[1:]


def lab_cold_starts(rung: str, workload: str, n: int) -> list[int]:
    """The lab's startup figures for a burst of ``rung`` alone."""
    from edgelab.lab import Lab, Settings

    result = Lab().run(Settings(workload=workload, runtimes=(rung,), count=n)).runtimes[rung]
    if result.error:
        raise SystemExit(f"edgelab: {rung}: {result.error}")
    return [s.startup_ns for s in result.measured if s.ok and s.startup_ns is not None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-w", "--workload", default="hello")
    parser.add_argument("-n", "--count", type=int, default=5)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        accel = _argv(options.workload, Path(scratch) / "serial.log")[2]
    print(f"workload {options.workload}, {options.count} cold starts each, accelerator {accel.upper()}; p50 in ms")
    print(f"{'rung':<10}{'lab p50':>10}{'raw p50':>10}{'lab/raw':>9}")
    for rung in RUNGS:
        lab = statistics.median(lab_cold_starts(rung, options.workload, options.count))
        raw = statistics.median(raw_cold_starts(rung, options.workload, options.count))
        print(f"{rung:<10}{lab / 1e6:>10.1f}{raw / 1e6:>10.1f}{lab / raw:>9.2f}")


if __name__ == "__main__":
    main()
