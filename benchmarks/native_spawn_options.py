"""How much each way of starting a boxed-in native workload costs, interleaved, on ``hello``.

The subprocess runtime picks its spawn path by this measurement (edgelab/runtimes/isolation.py):
posix_spawn cannot change user, chroot or start a process in a cgroup, so the options are the
in-process clone3 (native_spawn.c via ctypes), the launcher (launcher.c: one more exec, and a
fork into the cgroup), ``subprocess.Popen(user=...)`` and ``os.fork`` + setuid + exec. Each
figure is one cold start through the runtime (``SubprocessRuntime.launch``: spawn to the first
response byte, the lab's own figure) or, for the last two, the same exchange done by hand.
Rounds alternate the options; ``--gap`` sleeps between launches (idle gaps are what make a
cgroup *move* cost an RCU grace period, ~12 ms here, which is why workloads are born in theirs).

    python benchmarks/native_spawn_options.py [--rounds 30] [--per-round 10] [--gap 0.02]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import select
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from edgelab.build import ensure_native
from edgelab.runtimes import isolation
from edgelab.runtimes.subprocess import SubprocessRuntime
from edgelab.session import Session
from edgelab.workloads import get_workload

FRAME = (0).to_bytes(4, "little")  # an empty request


def _by_hand(start: Callable[[], tuple[int, int, int, object]]) -> int:
    """Time one exchange with a process ``start`` made: (pid, stdin, stdout, handle)."""
    t0 = time.perf_counter_ns()
    pid, to_child, from_child, handle = start()
    os.write(to_child, FRAME)
    select.select([from_child], [], [])
    elapsed = time.perf_counter_ns() - t0
    os.close(to_child)
    os.close(from_child)
    if isinstance(handle, subprocess.Popen):
        handle.wait()
    else:
        os.waitpid(pid, 0)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--per-round", type=int, default=10)
    parser.add_argument("--gap", type=float, default=0.0, help="seconds of idle between launches")
    args = parser.parse_args()

    hello = get_workload("hello")
    detected = isolation.detect()
    modes = {
        "posix_spawn, unboxed (the lab before)": isolation.Isolation(None, None, False, "", ""),
        "in-process: cgroup + uid + jail": detected,
        "in-process: uid + jail, no cgroup": dataclasses.replace(detected, cgroup_root=None),
        "launcher: cgroup + uid + jail": dataclasses.replace(detected, spawn_lib=None),
        "launcher: uid + jail, no cgroup": dataclasses.replace(detected, spawn_lib=None, cgroup_root=None),
    }
    runtimes = {}
    for name, mode in modes.items():
        runtimes[name] = SubprocessRuntime(Session(), mode)
        runtimes[name].prepare(hello)
    scratch = Path(tempfile.mkdtemp(prefix="edgelab-bench-"))
    scratch.chmod(0o755)
    copy = scratch / "hello"
    shutil.copy2(ensure_native(hello), copy)  # where an unprivileged uid can exec it
    root = os.geteuid() == 0

    def popen_user() -> tuple[int, int, int, object]:
        proc = subprocess.Popen(
            [str(copy)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env={}, user=65534, group=65534, extra_groups=[], process_group=0,
        )  # fmt: skip
        assert proc.stdin and proc.stdout
        to_child, from_child = os.dup(proc.stdin.fileno()), os.dup(proc.stdout.fileno())
        proc.stdin.close()  # the dups keep the pipes open until _by_hand closes them
        proc.stdout.close()
        return proc.pid, to_child, from_child, proc

    def fork_setuid() -> tuple[int, int, int, object]:
        child_in, to_child = os.pipe()
        from_child, child_out = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                os.dup2(child_in, 0)
                os.dup2(child_out, 1)
                os.setpgid(0, 0)
                os.setgroups([])
                os.setresgid(65534, 65534, 65534)
                os.setresuid(65534, 65534, 65534)
                os.execve(str(copy), ["hello"], {})
            finally:
                os._exit(127)
        os.close(child_in)
        os.close(child_out)
        return pid, to_child, from_child, None

    samples: dict[str, list[int]] = {name: [] for name in runtimes}
    if root:
        samples["subprocess.Popen(user=, group=, extra_groups=[])"] = []
        samples["os.fork + setuid + exec"] = []
    try:
        for _ in range(args.rounds):
            for name, runtime in runtimes.items():
                for _ in range(args.per_round):
                    launch = runtime.launch(hello, b"", 5.0)
                    samples[name].append(launch.startup_ns)
                    launch.instance.stop()
                    time.sleep(args.gap)
            if root:
                for _ in range(max(1, args.per_round // 5)):
                    samples["subprocess.Popen(user=, group=, extra_groups=[])"].append(_by_hand(popen_user))
                    time.sleep(args.gap)
                    samples["os.fork + setuid + exec"].append(_by_hand(fork_setuid))
                    time.sleep(args.gap)
    finally:
        for runtime in runtimes.values():
            runtime.close()
        shutil.rmtree(scratch, ignore_errors=True)

    print(f"hello, spawn to first response byte, {args.rounds} rounds, gap {args.gap * 1e3:g} ms,"
          f" load {os.getloadavg()[0]:.2f}")  # fmt: skip
    print("| how | p50 | p90 | n |")
    print("|---|---:|---:|---:|")
    for name, values in samples.items():
        values.sort()
        p90 = values[int(len(values) * 0.9)]
        print(f"| {name} | {statistics.median(values) / 1e3:.0f} µs | {p90 / 1e3:.0f} µs | {len(values)} |")


if __name__ == "__main__":
    main()
