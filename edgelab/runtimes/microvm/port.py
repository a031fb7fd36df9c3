"""Frames over the guest's data port, as the lab sees it: two non-blocking pipe ends to QEMU.

The workload's frames (``edgelab.protocol``) cross unchanged; only the one ready byte init.c
writes before exec comes first. The frame I/O is the subprocess runtime's (the same
non-blocking pipe ends), with the guest named in its failures.
"""

from __future__ import annotations

import os
import select
import signal
import time

from edgelab.errors import LaunchFailed
from edgelab.protocol import RESPONSE_HEADER_BYTES, Response, decode_response_header
from edgelab.runtimes.subprocess.runtime import read_exact as _read_exact
from edgelab.runtimes.subprocess.runtime import wait_fd
from edgelab.runtimes.subprocess.runtime import write_all as _write_all

#: The byte init.c writes on the port once it holds it, just before it execs the workload.
READY_BYTE = b"\x06"


class ResponseTooLarge(LaunchFailed):
    """The workload announced more than its ``max_response_bytes``."""


def write_all(fd: int, data: bytes | memoryview, deadline: float) -> None:
    _write_all(fd, data, deadline, ended="the guest ended")


def read_exact(fd: int, n: int, deadline: float) -> bytes:
    return _read_exact(fd, n, deadline, ended="the guest ended")


def read_ready(fd: int, deadline: float) -> None:
    """Wait for init's ready byte: the guest has booted and holds its port."""
    wait_fd(fd, select.POLLIN, deadline, "the microVM to boot")
    byte = os.read(fd, 1)
    if byte != READY_BYTE:
        raise LaunchFailed("the guest ended before its init was ready" if not byte else f"the guest wrote {byte!r} before its ready byte")


def exchange(to_guest: int, from_guest: int, frame: bytes | memoryview, deadline: float,
             max_response: int) -> tuple[int, Response]:  # fmt: skip
    """Send (the rest of) a request frame; (perf_counter_ns of the first response byte, response)."""
    write_all(to_guest, frame, deadline)
    wait_fd(from_guest, select.POLLIN, deadline, "the workload's response")
    first = time.perf_counter_ns()
    length, status = decode_response_header(read_exact(from_guest, RESPONSE_HEADER_BYTES, deadline))
    if length > max_response:
        raise ResponseTooLarge(f"response exceeded {format_cap(max_response)}")
    return first, Response(status, read_exact(from_guest, length, deadline))


def format_cap(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n:,} bytes"


def describe_exit(status: int) -> str:
    """'killed by SIGSEGV' or 'exited with code N' (as the subprocess rung says it), from the
    workload's wait status as the guest's init reports it."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            return f"killed by {signal.Signals(sig).name}"
        except ValueError:
            return f"killed by signal {sig}"
    return f"exited with code {os.WEXITSTATUS(status)}"
