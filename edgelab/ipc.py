"""One framed, deadline-aware channel between the lab's processes.

The measuring process (``edgelab.remote``), the Wasm host, the isolate host and the watchdog
all talk over pipes. They used to repeat the same length prefix and read loops four times;
this module is the one copy. A frame is a u32 little-endian length and a pickle of one
*message*: a frozen dataclass (``Call``, ``Ok``, ``Err`` below, or a caller's own record such
as a lab event), so that what crosses a pipe is typed and cannot be changed on the way.

Every blocking step takes a deadline (``time.monotonic()`` seconds, or None to wait for ever),
so a wedged peer becomes a ``ChannelTimeout`` instead of a hung lab; a peer that closed its end
is a ``ChannelClosed``. The caller decides what either means (a host that misses a deadline is
killed: nothing it holds can be trusted).

The file descriptors are set non-blocking and waited on with ``poll``; a server that has
nothing else to do passes ``deadline=None``.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import select
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any

from edgelab.errors import EdgelabError

_LEN = struct.Struct("<I")
#: Largest read or write per syscall (a large reply goes out in pieces).
_CHUNK = 1 << 20
#: A frame larger than this is refused as corrupt (a garbled length prefix).
MAX_FRAME_BYTES = 1 << 31


class ChannelClosed(EdgelabError):
    """The peer closed its end (or died) before a whole frame crossed."""


class ChannelTimeout(EdgelabError):
    """The deadline passed before a whole frame crossed."""


@dataclass(frozen=True)
class Call:
    """A request to a host process: run ``command`` with ``args``."""

    command: str
    args: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Ok:
    """A call's value."""

    value: Any = None


@dataclass(frozen=True)
class Err:
    """A call that failed: ``kind`` names the failure (the host's vocabulary, e.g. "timeout",
    "limit", "failed"), ``message`` is one line fit to show."""

    kind: str
    message: str


def is_message(value: Any) -> bool:
    """True for what may cross a channel: an instance of a frozen dataclass."""
    params = getattr(type(value), "__dataclass_params__", None)
    return dataclasses.is_dataclass(value) and not isinstance(value, type) and bool(params and params.frozen)


def encode(message: Any) -> bytes:
    """One frame: length prefix + pickle. Refuses anything but a frozen dataclass."""
    if not is_message(message):
        raise TypeError(f"an IPC message must be a frozen dataclass, not {type(message).__name__}")
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LEN.pack(len(data)) + data


def take_frames(pending: bytearray) -> list[Any]:
    """Every complete frame off the front of ``pending`` (for a reader fed by its own poll
    loop, such as the TUI's); what remains is an incomplete frame."""
    messages = []
    while len(pending) >= _LEN.size:
        (length,) = _LEN.unpack_from(pending)
        end = _LEN.size + length
        if len(pending) < end:
            break
        messages.append(pickle.loads(bytes(pending[_LEN.size : end])))
        del pending[:end]
    return messages


class Channel:
    """Frames over a pair of file descriptors, one whole exchange at a time.

    ``send`` and ``recv`` are safe from several threads (each holds its direction's lock for a
    whole frame); ``call`` holds both so that a reply always pairs with its request.
    """

    def __init__(self, read_fd: int | None, write_fd: int | None) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd
        for fd in (read_fd, write_fd):
            if fd is not None:
                os.set_blocking(fd, False)
        self._read_lock = threading.Lock()
        self._write_lock = threading.Lock()

    # -- sending -------------------------------------------------------------------------------
    def send(self, message: Any, deadline: float | None = None) -> None:
        frame = encode(message)
        with self._write_lock:
            self._write(frame, deadline)

    def send_raw(self, frame: bytes, deadline: float | None = None) -> None:
        """A frame made ahead by ``encode`` (e.g. an answer kept ready for when memory is out)."""
        with self._write_lock:
            self._write(frame, deadline)

    def _write(self, data: bytes, deadline: float | None) -> None:
        if self.write_fd is None:
            raise ChannelClosed("channel has no write end")
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.write_fd, view[:_CHUNK]) :]
            except BlockingIOError:
                self._wait(self.write_fd, select.POLLOUT, deadline)
            except (BrokenPipeError, ConnectionResetError):
                raise ChannelClosed("peer closed the channel") from None

    # -- receiving -----------------------------------------------------------------------------
    def recv(self, deadline: float | None = None) -> Any:
        """The next message; ChannelClosed at end of stream, ChannelTimeout past the deadline."""
        with self._read_lock:
            (length,) = _LEN.unpack(self._read(_LEN.size, deadline))
            if length > MAX_FRAME_BYTES:
                raise ChannelClosed(f"corrupt frame (length {length})")
            return pickle.loads(self._read(length, deadline))

    def _read(self, n: int, deadline: float | None) -> bytes:
        if self.read_fd is None:
            raise ChannelClosed("channel has no read end")
        parts: list[bytes] = []
        while n:
            try:
                chunk = os.read(self.read_fd, min(n, _CHUNK))
            except BlockingIOError:
                self._wait(self.read_fd, select.POLLIN, deadline)
                continue
            if not chunk:
                raise ChannelClosed("peer closed the channel")
            parts.append(chunk)
            n -= len(chunk)
        return b"".join(parts)

    # -- both ----------------------------------------------------------------------------------
    def call(self, message: Any, timeout_s: float) -> Any:
        """Send ``message`` and return the next message back, both within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._write_lock, self._read_lock:
            self._write(encode(message), deadline)
            (length,) = _LEN.unpack(self._read(_LEN.size, deadline))
            return pickle.loads(self._read(length, deadline))

    @staticmethod
    def _wait(fd: int, events: int, deadline: float | None) -> None:
        poller = select.poll()
        poller.register(fd, events | select.POLLHUP | select.POLLERR)
        while True:
            if deadline is None:
                timeout_ms: float | None = None
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ChannelTimeout("no answer before the deadline")
                timeout_ms = remaining * 1000
            if poller.poll(timeout_ms):
                return  # readable, writable, or hung up: the next read/write says which

    def close(self) -> None:
        for fd in {self.read_fd, self.write_fd}:
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.read_fd = self.write_fd = None
