"""The what-if simulator in a process of its own, so its computation never shares the UI's GIL.

In a thread of the UI's process the engine's numpy work held the GIL for long stretches: keys
waited up to 1.06 s during a 2.2 s simulation. Here the screen starts ``python -m
edgelab.tui.simworker`` once, hands it the simulate function (by reference) and the feed, then
sends inputs and reads results, each a length-prefixed pickle over the child's stdin/stdout
(multiprocessing's spawn was no option: under Textual stderr has no file descriptor, and
multiprocessing's resource tracker needs one). The child ends at EOF on its stdin, so it goes
when the screen closes it or the UI process dies. Headless: no textual import here.
"""

from __future__ import annotations

import pickle
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import IO, Any

from edgelab.errors import EdgelabError

_HEADER = struct.Struct("!Q")
#: How long ``close`` waits for the child to go at EOF before killing it.
CLOSE_WAIT_S = 1.0


def _write(stream: IO[bytes], value: Any) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _read(stream: IO[bytes]) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)  # noqa: S301 - our own child, over its own pipe


class SimulatorProcess:
    """One worker process holding the feed, for as long as the what-if screen is open."""

    def __init__(self, simulate: Callable[[Any, Any], Any], feed: Any) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "edgelab.tui.simworker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            close_fds=True,
        )
        self._lock = threading.Lock()
        assert self._process.stdin is not None
        # First the parent's import path, so the function pickled by name is found by it.
        _write(self._process.stdin, list(sys.path))
        _write(self._process.stdin, (simulate, feed))

    @property
    def pid(self) -> int:
        return self._process.pid

    def simulate(self, inputs: Any) -> Any:
        """The result, or the child's EdgelabError raised here (one line for the status)."""
        process = self._process
        assert process.stdin is not None and process.stdout is not None
        with self._lock:
            try:
                _write(process.stdin, inputs)
                kind, value = _read(process.stdout)
            except (EOFError, BrokenPipeError, OSError):
                raise EdgelabError("the simulator's process ended") from None
        if kind == "ok":
            return value
        if kind == "edgelab":
            raise EdgelabError(value)
        raise EdgelabError(f"simulation failed: {value}")

    def close(self) -> None:
        """EOF on its stdin ends it; past ``CLOSE_WAIT_S`` (mid-simulation) it is killed."""
        process = self._process
        try:
            if process.stdin is not None:
                process.stdin.close()
        except OSError:
            pass
        try:
            process.wait(CLOSE_WAIT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def main() -> int:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    try:
        sys.path[:] = [*_read(stdin), *(p for p in sys.path if p)]
        simulate, feed = _read(stdin)
    except EOFError:
        return 0
    while True:
        try:
            inputs = _read(stdin)
        except EOFError:
            return 0
        try:
            reply: tuple[str, Any] = ("ok", simulate(inputs, feed))
        except EdgelabError as exc:
            reply = ("edgelab", str(exc))
        except Exception as exc:  # noqa: BLE001 - one line back to the screen, the worker stays
            reply = ("error", f"{type(exc).__name__}: {exc}")
        try:
            _write(stdout, reply)
        except BrokenPipeError:
            return 0


if __name__ == "__main__":
    sys.exit(main())
