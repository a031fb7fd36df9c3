"""A Lab in a process of its own, for the TUI: measurement never shares a GIL with the UI.

In a thread of the UI's process, every syscall a launch makes (posix_spawn, a pipe write)
released the GIL to the UI thread, which could keep it for up to the 5 ms switch interval:
the subprocess runtime's spawn phase read ~3 ms in the lab against ~0.2 ms from ``edgelab
run``. Here ``python -m edgelab.remote`` runs the same ``Lab.run`` single-threaded and streams
its events back over a pipe, so the UI's numbers and ``edgelab run --json`` agree.

Wire format both ways: ``edgelab.ipc`` frames carrying the frozen dataclasses below. To the
server: ``RunRequest``, ``Cancel``, ``Close``. From it: ``EventMsg`` (every lab event as it is,
``RampHeld`` among them: its result is a snapshot of the held ramp, which the TUI's e exports),
``ResultMsg``, ``ErrorMsg``. EOF on its stdin (the UI died) cancels the run, closes the lab
(every container and process removed) and ends the server.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgelab import errors
from edgelab.errors import EdgelabError
from edgelab.events import LabEvent
from edgelab.ipc import Channel, ChannelClosed, take_frames
from edgelab.results import RunResult
from edgelab.session import Session

#: How long close() waits for the server to remove what it started before killing it.
CLOSE_TIMEOUT_S = 5.0
#: How long the UI side waits to hand the server a Cancel or Close (it reads its stdin
#: always, so only a wedged server misses this; close() then kills it).
SEND_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class RunRequest:
    """Run these settings (an ``edgelab.lab.Settings``) and stream what happens."""

    settings: Any


@dataclass(frozen=True)
class Cancel:
    """Cancel the run in progress (its result still follows, marked cancelled)."""


@dataclass(frozen=True)
class Close:
    """Close the lab (remove everything it started) and exit."""


@dataclass(frozen=True)
class EventMsg:
    event: LabEvent


@dataclass(frozen=True)
class ResultMsg:
    result: RunResult


@dataclass(frozen=True)
class ErrorMsg:
    """The run raised: ``kind`` is the ``edgelab.errors`` class name, ``message`` its line."""

    kind: str
    message: str


def _error_for(kind: str, message: str) -> EdgelabError:
    cls = getattr(errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, EdgelabError) and cls is not errors.RuntimeUnavailable:
        return cls(message)
    return EdgelabError(message)


class RemoteLab:
    """The part of ``Lab``'s interface the TUI uses, served by a measuring process. It makes
    no runtime object of its own: what a runtime is comes in its ``RuntimeDescribed`` event."""

    fake = False

    def __init__(self) -> None:
        self.session = Session()
        self._process: subprocess.Popen[bytes] | None = None
        self._channel: Channel | None = None
        self._lock = threading.Lock()

    def _server(self) -> tuple[subprocess.Popen[bytes], Channel]:
        with self._lock:
            if self._process is None or self._process.poll() is not None or self._channel is None:
                self._process = subprocess.Popen(
                    [sys.executable, "-m", "edgelab.remote"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    bufsize=0,
                    start_new_session=True,  # a ctrl+c meant for the UI does not reach it
                )
                assert self._process.stdin is not None
                # Writes only: the events are read by this side's own poll loop (take_frames),
                # which also watches for cancel. The pipes stay the Popen's to close.
                self._channel = Channel(None, self._process.stdin.fileno())
            return self._process, self._channel

    def run(
        self,
        settings: Any,
        on_event: Callable[[Any], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> RunResult:
        from edgelab.lab import track_run

        cancel = cancel if cancel is not None else threading.Event()
        with track_run(cancel):  # a SIGTERM to the UI cancels this run like a local one
            return self._run(settings, on_event, cancel)

    def _run(
        self, settings: Any, on_event: Callable[[Any], None] | None, cancel: threading.Event
    ) -> RunResult:
        process, channel = self._server()
        assert process.stdout is not None
        try:
            # No deadline: the settings carry the request (up to 1 GiB), and the server reads
            # its stdin all the time; one that is gone is a closed pipe at once.
            channel.send(RunRequest(settings))
        except (EdgelabError, OSError):
            raise EdgelabError("the measuring process is gone; run again to restart it") from None
        cancel_sent = False
        fd = process.stdout.fileno()
        pending = bytearray()
        while True:
            for message in take_frames(pending):
                if isinstance(message, EventMsg):
                    if on_event is not None:
                        on_event(message.event)
                elif isinstance(message, ResultMsg):
                    return message.result
                elif isinstance(message, ErrorMsg):
                    raise _error_for(message.kind, message.message)
            if cancel.is_set() and not cancel_sent:
                cancel_sent = True
                try:
                    channel.send(Cancel(), time.monotonic() + SEND_TIMEOUT_S)
                except (EdgelabError, OSError):
                    pass
            readable, _, _ = select.select([fd], [], [], 0.1)
            if not readable:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                code = process.wait()
                raise EdgelabError(f"the measuring process exited (code {code}) mid-run")
            pending += chunk

    def close(self) -> None:
        """Stop the run in progress and have the server remove everything it started."""
        with self._lock:
            process, self._process = self._process, None
            channel, self._channel = self._channel, None
        if process is None:
            return
        try:
            assert process.stdin is not None
            if channel is not None and not process.stdin.closed:
                channel.send(Close(), time.monotonic() + SEND_TIMEOUT_S)
            process.stdin.close()
        except (EdgelabError, OSError, ValueError):
            pass
        try:
            process.wait(CLOSE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def serve() -> int:
    """The measuring process: one Lab, driven by messages on stdin, events out on stdout."""
    from edgelab.lab import Lab

    channel = Channel(sys.stdin.fileno(), os.dup(sys.stdout.fileno()))
    sys.stdout = sys.stderr  # nothing else may write into the event stream
    lab = Lab()
    cancel = threading.Event()
    worker: threading.Thread | None = None

    def run(settings: Any) -> None:
        try:
            result = lab.run(settings, on_event=lambda e: channel.send(EventMsg(e)), cancel=cancel)
            channel.send(ResultMsg(result))
        except ChannelClosed:  # the UI is gone: wind down, close() below removes the rest
            cancel.set()
        except EdgelabError as exc:
            _reply_quietly(channel, ErrorMsg(type(exc).__name__, str(exc)), cancel)
        except Exception as exc:  # noqa: BLE001 - reported to the UI as one line
            _reply_quietly(channel, ErrorMsg("EdgelabError", f"internal error: {type(exc).__name__}: {exc}"), cancel)

    try:
        while True:
            try:
                message = channel.recv()
            except ChannelClosed:
                break
            if isinstance(message, Close):
                break
            if isinstance(message, Cancel):
                cancel.set()
            elif isinstance(message, RunRequest):
                if worker is not None:
                    worker.join()
                cancel.clear()
                worker = threading.Thread(target=run, args=(message.settings,), name="lab-run")
                worker.start()
    finally:
        cancel.set()
        if worker is not None:
            worker.join(CLOSE_TIMEOUT_S)
        lab.close()
    return 0


def _reply_quietly(channel: Channel, message: ErrorMsg, cancel: threading.Event) -> None:
    try:
        channel.send(message)
    except ChannelClosed:
        cancel.set()


if __name__ == "__main__":
    # Served by the module imported under its own name, so that the messages it pickles are
    # ``edgelab.remote``'s (a ``__main__`` class would not unpickle in the UI).
    from edgelab.remote import serve as _serve

    raise SystemExit(_serve())
