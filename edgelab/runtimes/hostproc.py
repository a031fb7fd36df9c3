"""The lab's side of a host process: the Wasm and isolate runtimes keep their instances in
children of their own (``python -m <host module>``), spoken to over ``edgelab.ipc``.

This is the one copy of starting such a child, calling it with a deadline, saying in one line
why it died, and reaping it; ``wasm.runtime.HostProcess`` and ``isolate.runtime.IsolateHost``
give their module, arguments, wording and what their host's last words mean.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

from edgelab.errors import (
    EdgelabError,
    LaunchFailed,
    LaunchTimeout,
    LimitReached,
    RuntimeUnavailable,
)
from edgelab.ipc import Call, Channel, ChannelClosed, ChannelTimeout, Err, Ok

#: How long a host may take to exit when asked (or to be reaped once dead) before it is killed.
EXIT_GRACE_S = 2.0
#: What ``Popen`` raises when the machine has no room for another child (no fork, no memory,
#: no file descriptor for its pipes): a limit, not an unavailable runtime.
_NO_ROOM_ERRNOS = (errno.EAGAIN, errno.ENOMEM, errno.EMFILE, errno.ENFILE)
#: The longest reason taken from a host's stderr.
_REASON_CHARS = 200
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def failure(kind: str, message: str) -> LaunchFailed:
    """The exception for a host's ``Err(kind, message)``: a limit the host ran into (its pool,
    its mappings, memory) is a LimitReached, which stops a ramp instead of being retried."""
    if kind == "limit":
        return LimitReached(message)
    return (LaunchTimeout if kind == "timeout" else LaunchFailed)(message)


class HostClient:
    """One host child and its channel: one call at a time, each with a deadline. A host that
    misses a deadline is killed (nothing it holds can be trusted).

    Subclasses set ``host_module`` and ``runtime`` (the name a RuntimeUnavailable carries),
    ``label`` (how every message names the process), and may pass the module arguments.
    """

    host_module: ClassVar[str]
    runtime: ClassVar[str]
    label: ClassVar[str]
    #: The message for a reply that is neither Ok nor Err (``{kind}``: its type's name).
    odd_reply: ClassVar[str] = "{label} answered {kind}, not Ok or Err"
    #: Whether an exit by signal names it ("signal 9, SIGKILL") or gives its number alone.
    name_signals: ClassVar[bool] = True
    #: How much of the end of stderr is searched for the line that says why a host died.
    stderr_tail_bytes: ClassVar[int] = 4096

    def __init__(self, *host_args: str) -> None:
        #: The resident instances the runtime has in this host.
        self.held = 0
        self.exit_message = ""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p
        )
        self._stderr = tempfile.TemporaryFile()
        self._lock = threading.Lock()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.host_module, *host_args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                env=env,
                close_fds=True,
                start_new_session=True,  # ctrl+c at the terminal reaches the lab, which closes us
            )
        except OSError as exc:
            self._stderr.close()
            if exc.errno in _NO_ROOM_ERRNOS:
                raise LimitReached(f"cannot start another {self.label}: {exc}") from None
            raise RuntimeUnavailable(self.runtime, f"cannot start the {self.label}: {exc}") from None
        assert self.process.stdin is not None and self.process.stdout is not None
        # The Popen file objects own the fds; the channel only reads and writes them.
        self._channel = Channel(self.process.stdout.fileno(), self.process.stdin.fileno())

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return not self.exit_message and self.process.poll() is None

    def call(self, timeout_s: float, command: str, *args: Any) -> Any:
        """Send one command and return its value; the host's errors become LaunchFailed,
        LaunchTimeout or LimitReached (``failure``)."""
        with self._lock:
            if not self.alive:
                raise LaunchFailed(self.died())
            try:
                reply = self._channel.call(Call(command, args), timeout_s)
            except ChannelTimeout:
                self.kill()
                self.exit_message = f"{self.label} did not answer in time and was killed"
                raise LaunchTimeout(self.exit_message) from None
            except ChannelClosed:
                raise self._died_in_call(self.died()) from None
            except KeyboardInterrupt:
                # Cut off mid-call (ctrl+c, SIGTERM): the channel is out of step with the
                # host, so nothing more can be asked of it. It holds nothing worth keeping.
                self.exit_message = f"{self.label} was stopped by an interrupt"
                self.kill()
                raise
        if isinstance(reply, Ok):
            return reply.value
        if isinstance(reply, Err):
            raise failure(reply.kind, reply.message)
        raise LaunchFailed(self.odd_reply.format(label=self.label, kind=type(reply).__name__))

    def _died_in_call(self, message: str) -> LaunchFailed:
        """The failure of a call whose host died under it (``message`` says how)."""
        return LaunchFailed(message)

    def died(self) -> str:
        """One line saying how the host ended, kept: its exit code or signal and the line of
        its stderr that says why."""
        if self.exit_message:
            return self.exit_message
        try:
            code = self.process.wait(timeout=EXIT_GRACE_S)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.process.returncode
        self.exit_message = f"{self.label} exited ({self._how(code)})"
        reason = self._stderr_reason()
        if reason:
            self.exit_message += f": {reason}"
        return self.exit_message

    def _how(self, code: int | None) -> str:
        if code is None or code >= 0:
            return f"exit code {code}"
        if not self.name_signals:
            return f"signal {-code}"
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown"
        return f"signal {-code}, {name}"

    def _stderr_reason(self) -> str:
        try:
            self._stderr.seek(0, os.SEEK_END)
            size = self._stderr.tell()
            self._stderr.seek(max(0, size - self.stderr_tail_bytes))
            text = self._stderr.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return self._telling_line(lines)[:_REASON_CHARS] if lines else ""

    def _telling_line(self, lines: list[str]) -> str:
        """The line of stderr's tail (stripped, none blank) that says why the host died."""
        return lines[-1]

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def close(self) -> None:
        """Ask the host to exit, kill it if it does not within 2 s, and always reap it. Holds
        the call lock throughout: a call in another thread finishes first, and one after
        finds the host closed instead of writing to closed pipes."""
        with self._lock:
            if self.alive:
                try:
                    self._channel.send(Call("exit"), time.monotonic() + EXIT_GRACE_S)
                except EdgelabError:
                    pass
            for stream in (self.process.stdin, self.process.stdout):
                try:
                    if stream is not None:
                        stream.close()
                except OSError:
                    pass
            try:
                self.process.wait(timeout=EXIT_GRACE_S)
            except subprocess.TimeoutExpired:
                self.kill()
            self.exit_message = self.exit_message or f"{self.label} was closed"
        self._stderr.close()
