"""Raw baseline for the subprocess runtime *as it runs here*: the same spawn, the same steps.

Where the lab boxes native workloads in (edgelab/runtimes/isolation.py: a cgroup per instance,
chroot into a jail, a uid of its own, through a small launcher that then execs the workload),
a bare posix_spawn of the workload no longer does the same work as the lab's launch. This loop
does exactly that work and nothing of the lab's bookkeeping: per iteration a cgroup from the
runtime's session set (the next one made ahead, as the lab does), two pipes, the runtime's own
spawn call (``SubprocessRuntime.spawn_process``: the in-process clone with its steps; where that
library cannot be used, ``os.posix_spawn`` of the runtime's launcher argv), one request frame written, timed until
the first response byte is readable. Kill (cgroup.kill), reap and the cgroup's return are outside the timing, as in the lab.
The argv and the cgroups come from the runtime itself (``SubprocessRuntime``), so the two
cannot drift apart.
"""

from __future__ import annotations

import os
import select
import signal
import struct
import time
from typing import Any

from edgelab.runtimes import isolation
from edgelab.workloads import Workload


def uses_launcher(runtime: Any) -> bool:
    """Whether the subprocess runtime boxes its workloads in here (the in-process spawn or the
    launcher): then a bare posix_spawn of the workload is not the same work."""
    return runtime.isolation.spawn_lib is not None or runtime.isolation.launcher is not None


def raw_launcher_cold_start_ns(runtime: Any, workload: Workload, request: bytes, n: int) -> list[int]:
    """``n`` cold starts of ``workload`` through ``runtime``'s launcher (prepared), in ns."""
    binary = runtime._binaries[workload.name]
    frame = struct.pack("<I", len(request)) + request
    timings: list[int] = []
    for _ in range(n):
        started = time.perf_counter_ns()
        cgroup = runtime._cgroups_take()
        child_stdin, to_child = os.pipe()
        from_child, child_stdout = os.pipe()
        if runtime.isolation.spawn_lib is not None:  # the lab's own spawn call, nothing else
            pid = runtime.spawn_process(workload, binary, child_stdin, child_stdout, cgroup)
        else:
            program, argv = runtime._spawn_argv(workload, binary, cgroup)
            pid = os.posix_spawn(
                program, argv, {},
                file_actions=[(os.POSIX_SPAWN_DUP2, child_stdin, 0), (os.POSIX_SPAWN_DUP2, child_stdout, 1)],
                setpgroup=0,
            )  # fmt: skip
        os.close(child_stdin)
        os.close(child_stdout)
        os.write(to_child, frame)
        select.select([from_child], [], [])
        timings.append(time.perf_counter_ns() - started)
        os.read(from_child, 1 << 16)
        os.close(to_child)
        os.close(from_child)
        if cgroup is not None:
            isolation.reap_pidfds(isolation.kill_cgroup(cgroup), 2.0)
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
