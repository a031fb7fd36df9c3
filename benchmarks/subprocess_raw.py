"""Raw baselines of the subprocess family: the same work as the lab's launch, none of the lab.

``raw_cold_starts(rung, workload, n)`` (for benchmarks/ladder.py) for each subprocess rung:

- ``subprocess`` and ``subprocess:dynamic``: the runtime's own spawn call with the cgroup made
  ahead (benchmarks/launcher_raw.py: two pipes, the in-process clone with its steps, one frame
  written, timed to the first response byte), of the static or the dynamically linked build.
- ``subprocess:forkserver``: a bare fork-server loop. The runtime starts the workload's fork
  server once (untimed, as the lab's ``prepare``); then per iteration: a cgroup (made ahead),
  two pipes, the frame written, one ``sendmsg`` of the ask with the pipes and the cgroup's fd,
  timed until the first response byte is readable.

Kill, reap, reading the instance's report and the cgroup's return are outside the timing, as
in the lab. ``raw_subprocess_cold_start_ns`` is the unboxed posix_spawn loop startup.py shows
for scale. ``python benchmarks/subprocess_raw.py [-w hello] [-n 200]`` prints each rung's raw
figures; benchmarks/ladder.py sets them against the lab's.
"""

from __future__ import annotations

import argparse
import atexit
import itertools
import os
import select
import signal
import socket
import statistics
import struct
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

RUNGS = ("subprocess", "subprocess:dynamic", "subprocess:forkserver")
_runtimes: dict[str, Any] = {}
#: Ask numbers of the bare loop, far from the runtime's own (which count up from 1).
_asks = itertools.count(1 << 40)


def raw_subprocess_cold_start_ns(binary: Path, request: bytes, n: int) -> list[int]:
    frame = struct.pack("<I", len(request)) + request
    timings: list[int] = []
    for _ in range(n):
        started = time.perf_counter_ns()
        child_stdin, to_child = os.pipe()
        from_child, child_stdout = os.pipe()
        pid = os.posix_spawn(
            str(binary),
            [binary.name],
            {},
            file_actions=[(os.POSIX_SPAWN_DUP2, child_stdin, 0), (os.POSIX_SPAWN_DUP2, child_stdout, 1)],
        )
        os.close(child_stdin)
        os.close(child_stdout)
        os.write(to_child, frame)
        select.select([from_child], [], [])
        timings.append(time.perf_counter_ns() - started)
        os.read(from_child, 1 << 16)
        os.close(to_child)
        os.close(from_child)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    return timings


def _prepared(rung: str, workload: Any) -> Any:
    """The rung's runtime, made once per process (closed at exit), with ``workload`` prepared
    (for the fork server: its server started and answering)."""
    from edgelab.runtimes import create_runtime
    from edgelab.session import Session

    runtime = _runtimes.get(rung)
    if runtime is None:
        runtime = create_runtime(rung, Session())
        runtime.check()
        _runtimes[rung] = runtime
        atexit.register(runtime.close)
    runtime.prepare(workload)
    return runtime


def raw_cold_starts(rung: str, workload: str, n: int) -> list[int]:
    """``n`` startup times in ns of the work the lab times for ``rung``, with no lab (the
    workload's default request)."""
    from launcher_raw import raw_launcher_cold_start_ns

    from edgelab.workloads import get_workload

    if rung not in RUNGS:
        raise ValueError(f"no raw subprocess baseline for {rung!r} (one of {', '.join(RUNGS)})")
    spec = get_workload(workload)
    runtime = _prepared(rung, spec)
    if rung == "subprocess:forkserver":
        return raw_forkserver_cold_start_ns(runtime, spec, spec.default_request, n)
    return raw_launcher_cold_start_ns(runtime, spec, spec.default_request, n)


def raw_forkserver_cold_start_ns(runtime: Any, workload: Any, request: bytes, n: int) -> list[int]:
    """The bare fork-server loop: ask, read the first byte (see the module's docstring)."""
    from edgelab.runtimes import isolation
    from edgelab.runtimes.subprocess.forkserver import ASK

    server = runtime._server(workload)
    frame = struct.pack("<I", len(request)) + request
    uid_base = isolation.NATIVE_UID_BASE if runtime.isolation.drop_uid else 0
    limit = workload.memory_limit_bytes
    timings: list[int] = []
    for _ in range(n):
        seq = next(_asks)
        started = time.perf_counter_ns()
        cgroup = runtime._cgroups_take()
        child_stdin, to_child = os.pipe()
        from_child, child_stdout = os.pipe()
        os.write(to_child, frame)
        fds = [child_stdin, child_stdout]
        if cgroup is not None:
            fds.append(os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        socket.send_fds(server.sock, [ASK.pack(seq, uid_base, limit)], fds)
        for fd in fds:
            os.close(fd)
        select.select([from_child], [], [])
        timings.append(time.perf_counter_ns() - started)
        pid = server.report(seq, time.monotonic() + 5.0).pid
        os.read(from_child, 1 << 16)
        os.close(to_child)
        os.close(from_child)
        if cgroup is not None:
            isolation.reap_pidfds(isolation.kill_cgroup(cgroup), 2.0)
        if pid > 0:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        if cgroup is not None:
            runtime._cgroups_release(cgroup)
        if runtime._cgroups is not None:  # the next cgroup made ahead, as the lab does
            runtime._cgroups.make_spare()
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description="raw cold starts of the subprocess rungs (no lab)")
    parser.add_argument("-w", "--workload", default="hello")
    parser.add_argument("-n", "--count", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5, help="blocks per rung, the rungs' order flipped each round")
    args = parser.parse_args()
    from edgelab.errors import EdgelabError
    from edgelab.stats import format_duration_ns

    samples: dict[str, list[int]] = {rung: [] for rung in RUNGS}
    unusable: dict[str, str] = {}
    block = max(1, args.count // max(1, args.rounds))
    for round_index in range(args.rounds):
        for rung in RUNGS if round_index % 2 == 0 else RUNGS[::-1]:
            if rung in unusable:
                continue
            try:
                samples[rung] += raw_cold_starts(rung, args.workload, block + 1)[1:]  # the first: warmup
            except EdgelabError as exc:
                unusable[rung] = str(exc)
    print(f"raw cold starts, {args.workload}, {args.rounds} interleaved blocks of {block} per rung "
          "(launch call to first response byte, no lab):\n")  # fmt: skip
    print("| rung | n | p50 | p90 | min |")
    print("|---|---:|---:|---:|---:|")
    for rung, values in samples.items():
        if rung in unusable:
            print(f"| {rung} | – | unavailable: {unusable[rung]} | | |")
            continue
        values.sort()
        p90 = values[int(0.9 * (len(values) - 1))]
        print(f"| {rung} | {len(values)} | {format_duration_ns(statistics.median(values))} | "
              f"{format_duration_ns(p90)} | {format_duration_ns(values[0])} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
