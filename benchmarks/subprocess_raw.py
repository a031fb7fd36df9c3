"""Raw baseline for the subprocess runtime: a bare posix_spawn loop, nothing of the lab.

Per iteration: two pipes, ``os.posix_spawn`` of the same static binary, one request frame
written, timed until the first response byte is readable. Kill and reap are outside the timing,
as in the lab.
"""

from __future__ import annotations

import os
import select
import signal
import struct
import time
from pathlib import Path


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
