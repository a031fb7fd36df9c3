"""A Lab in a process of its own, for the TUI: measurement never shares a GIL with the UI.

In a thread of the UI's process, every syscall a launch makes (posix_spawn, a pipe write)
released the GIL to the UI thread, which could keep it for up to the 5 ms switch interval:
the subprocess runtime's spawn phase read ~3 ms in the lab against ~0.2 ms from ``edgelab
run``. Here ``python -m edgelab.remote`` runs the same ``Lab.run`` single-threaded and streams
its events back over a pipe, so the UI's numbers and ``edgelab run --json`` agree.

Wire format both ways: u32 little-endian length + a pickled tuple. To the server: ``("run",
settings)``, ``("cancel",)``, ``("close",)``. From it: ``("event", event)``, ``("result",
run_result)``, ``("error", kind, message)``. Every lab event crosses as it is, ``RampHeld``
among them: its result is a snapshot of the held ramp, which the TUI's e exports. EOF on its stdin (the UI died) cancels the run,
closes the lab (every container and process removed) and ends the server.
"""

from __future__ import annotations

import os
import pickle
import select
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import IO, Any

from edgelab import errors
from edgelab.errors import EdgelabError
from edgelab.results import RunResult
from edgelab.runtimes import create_runtime
from edgelab.runtimes.base import Runtime
from edgelab.session import Session

_LEN = struct.Struct("<I")
#: How long close() waits for the server to remove what it started before killing it.
CLOSE_TIMEOUT_S = 5.0


def _send(stream: IO[bytes], message: tuple[Any, ...], lock: threading.Lock | None = None) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    frame = _LEN.pack(len(data)) + data
    if lock is None:
        stream.write(frame)
        stream.flush()
        return
    with lock:
        stream.write(frame)
        stream.flush()


def _recv(stream: IO[bytes]) -> tuple[Any, ...] | None:
    header = stream.read(_LEN.size)
    if len(header) < _LEN.size:
        return None
    (length,) = _LEN.unpack(header)
    data = stream.read(length)
    if len(data) < length:
        return None
    message: tuple[Any, ...] = pickle.loads(data)
    return message


def _frames(pending: bytearray) -> list[tuple[Any, ...]]:
    """Take every complete frame off the front of ``pending``."""
    messages = []
    while len(pending) >= _LEN.size:
        (length,) = _LEN.unpack_from(pending)
        end = _LEN.size + length
        if len(pending) < end:
            break
        messages.append(pickle.loads(bytes(pending[_LEN.size : end])))
        del pending[:end]
    return messages


def _error_for(kind: str, message: str) -> EdgelabError:
    cls = getattr(errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, EdgelabError) and cls is not errors.RuntimeUnavailable:
        return cls(message)
    return EdgelabError(message)


class RemoteLab:
    """The part of ``Lab``'s interface the TUI uses, served by a measuring process."""

    fake = False

    def __init__(self) -> None:
        self.session = Session()
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._local: dict[str, Runtime] = {}

    def runtime(self, name: str) -> Runtime:
        """A runtime object in this process for facts only (versions, what figures include);
        it is never prepared here and never launches anything."""
        with self._lock:
            if name not in self._local:
                self._local[name] = create_runtime(name, self.session)
            return self._local[name]

    def _server(self) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self._process = subprocess.Popen(
                    [sys.executable, "-m", "edgelab.remote"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    bufsize=0,
                    start_new_session=True,  # a ctrl+c meant for the UI does not reach it
                )
            return self._process

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
        process = self._server()
        assert process.stdin is not None and process.stdout is not None
        try:
            _send(process.stdin, ("run", settings))
        except (BrokenPipeError, OSError):
            raise EdgelabError("the measuring process is gone; run again to restart it") from None
        cancel_sent = False
        fd = process.stdout.fileno()
        pending = bytearray()
        while True:
            for message in _frames(pending):
                kind = message[0]
                if kind == "event":
                    if on_event is not None:
                        on_event(message[1])
                elif kind == "result":
                    result: RunResult = message[1]
                    return result
                elif kind == "error":
                    raise _error_for(message[1], message[2])
            if cancel.is_set() and not cancel_sent:
                cancel_sent = True
                try:
                    _send(process.stdin, ("cancel",))
                except (BrokenPipeError, OSError):
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
            local, self._local = list(self._local.values()), {}
        for runtime in local:
            try:
                runtime.close()
            except Exception:  # noqa: BLE001 - closing must reach every runtime
                pass
        if process is None:
            return
        try:
            assert process.stdin is not None
            _send(process.stdin, ("close",))
            process.stdin.close()
        except (BrokenPipeError, OSError, ValueError):
            pass
        try:
            process.wait(CLOSE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def serve() -> int:
    """The measuring process: one Lab, driven by commands on stdin, events out on stdout."""
    from edgelab.lab import Lab

    commands = sys.stdin.buffer
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout = sys.stderr  # nothing else may write into the event stream
    lab = Lab()
    write_lock = threading.Lock()
    cancel = threading.Event()
    worker: threading.Thread | None = None

    def run(settings: Any) -> None:
        try:
            result = lab.run(settings, on_event=lambda e: _send(out, ("event", e), write_lock), cancel=cancel)
            _send(out, ("result", result), write_lock)
        except EdgelabError as exc:
            _send(out, ("error", type(exc).__name__, str(exc)), write_lock)
        except BrokenPipeError:
            cancel.set()
        except Exception as exc:  # noqa: BLE001 - reported to the UI as one line
            _send(out, ("error", "EdgelabError", f"internal error: {type(exc).__name__}: {exc}"), write_lock)

    try:
        while True:
            message = _recv(commands)
            if message is None or message[0] == "close":
                break
            if message[0] == "cancel":
                cancel.set()
            elif message[0] == "run":
                if worker is not None:
                    worker.join()
                cancel.clear()
                worker = threading.Thread(target=run, args=(message[1],), name="lab-run")
                worker.start()
    finally:
        cancel.set()
        if worker is not None:
            worker.join(CLOSE_TIMEOUT_S)
        lab.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(serve())
