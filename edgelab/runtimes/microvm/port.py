"""Frames over the guest's data port, as the lab sees it: two non-blocking pipe ends to QEMU.

The workload's frames (``edgelab.protocol``) cross unchanged; only the one ready byte init.c
writes before exec comes first. Kept here, not borrowed from the subprocess runtime's
internals, so the two families can change apart.
"""

from __future__ import annotations

import os
import select
import signal
import time

from edgelab.errors import LaunchFailed, LaunchTimeout
from edgelab.protocol import RESPONSE_HEADER_BYTES, Response, decode_response_header

#: The byte init.c writes on the port once it holds it, just before it execs the workload.
READY_BYTE = b"\x06"


class ResponseTooLarge(LaunchFailed):
    """The workload announced more than its ``max_response_bytes``."""


def wait_fd(fd: int, events: int, deadline: float, what: str) -> None:
    poller = select.poll()
    poller.register(fd, events)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LaunchTimeout(f"timed out waiting for {what}")
        if poller.poll(remaining * 1000):
            return


def write_all(fd: int, data: bytes | memoryview, deadline: float) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view[: 1 << 20]) :]
        except BlockingIOError:
            wait_fd(fd, select.POLLOUT, deadline, "the guest to read its request")
        except BrokenPipeError:
            raise LaunchFailed("the guest ended before reading its whole request") from None


def read_exact(fd: int, n: int, deadline: float) -> bytes:
    buffer = bytearray(n)
    view = memoryview(buffer)
    got = 0
    while got < n:
        try:
            count = os.readv(fd, [view[got:]])
        except BlockingIOError:
            wait_fd(fd, select.POLLIN, deadline, "the workload's response")
            continue
        if not count:
            raise LaunchFailed("the guest ended without a complete response")
        got += count
    view.release()
    return bytes(buffer)


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
