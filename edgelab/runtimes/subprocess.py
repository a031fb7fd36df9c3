"""Native subprocess runtime: the workload's static binary, spawned without a shell.

``os.posix_spawn`` (glibc: clone(CLONE_VM|CLONE_VFORK) + exec) with no ``preexec_fn``, an empty
environment, and its own process group so that stop and timeout kill the whole group.
The memory limit is applied with prlimit(2) right after the spawn, before the first request.

Hostile workloads: RLIMIT_AS makes an allocation fail (the workload answers status 2 "out of
memory"). There is no pids limit: RLIMIT_NPROC counts every process of the user and root
ignores it, so it cannot contain a fork bomb here (a container's pids limit does). What contains
one is the process group: every fork inherits it, stop and timeout SIGKILL the whole group, and
the lab is made a child subreaper (PR_SET_CHILD_SUBREAPER) so that the workload's orphaned
children are reparented to the lab and reaped here rather than left as zombies under an init
that may not reap. A workload that leaves its group (setsid/setpgid) escapes this: the native
runtime is a plain process, not a sandbox (``edgelab probe`` shows what it can reach).
"""

from __future__ import annotations

import os
import resource
import select
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from edgelab.errors import ArtifactError, LaunchFailed, LaunchTimeout, RuntimeUnavailable
from edgelab.protocol import RESPONSE_HEADER_BYTES, Response, decode_response_header, encode_request
from edgelab.runtimes.base import Instance, Launch, Runtime
from edgelab.workloads import Workload

_DEVNULL_FD: int | None = None
_CHUNK = 1 << 16
#: How long a failed exchange waits for the workload to finish dying, to read its wait status.
EXIT_GRACE_S = 1.0
#: How long stop keeps reaping a process group that still has members (a fork bomb's children).
GROUP_REAP_S = 2.0
_PR_SET_CHILD_SUBREAPER = 36
_subreaper_set = False


def _become_subreaper() -> None:
    """Make this process the reaper of its descendants' orphans (once; Linux only)."""
    global _subreaper_set
    if _subreaper_set:
        return
    _subreaper_set = True
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def describe_wait_status(status: int) -> str:
    """'killed by SIGSEGV' or 'exited with code N' for a waitpid status."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            return f"killed by {signal.Signals(sig).name}"
        except ValueError:
            return f"killed by signal {sig}"
    if os.WIFEXITED(status):
        return f"exited with code {os.WEXITSTATUS(status)}"
    return f"ended (wait status {status})"


def _reap_group(pgid: int) -> None:
    """Reap every member of process group ``pgid`` that is (or becomes) our child; SIGKILL again
    any that remain, for up to GROUP_REAP_S (a group with only the workload costs one syscall)."""
    end = time.monotonic() + GROUP_REAP_S
    while True:
        try:
            while os.waitpid(-pgid, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            pass
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            return
        if time.monotonic() > end:
            return
        time.sleep(0.005)


def _devnull() -> int:
    global _DEVNULL_FD
    if _DEVNULL_FD is None:
        _DEVNULL_FD = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    return _DEVNULL_FD


def _wait_fd(fd: int, events: int, deadline: float, what: str) -> None:
    poller = select.poll()
    poller.register(fd, events)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LaunchTimeout(f"timed out waiting for {what}")
        if poller.poll(remaining * 1000):
            return


def write_all(fd: int, data: bytes | memoryview, deadline: float) -> None:
    """Write every byte of ``data`` to a non-blocking fd before ``deadline``."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view[: 1 << 20])
        except BlockingIOError:
            _wait_fd(fd, select.POLLOUT, deadline, "the workload to read its request")
            continue
        except BrokenPipeError:
            raise LaunchFailed("workload exited before reading its whole request") from None
        view = view[written:]


def read_exact(fd: int, n: int, deadline: float) -> bytes:
    """Read exactly ``n`` bytes from a non-blocking fd before ``deadline``."""
    parts: list[bytes] = []
    missing = n
    while missing:
        try:
            chunk = os.read(fd, min(missing, 1 << 20))
        except BlockingIOError:
            _wait_fd(fd, select.POLLIN, deadline, "the workload's response")
            continue
        if not chunk:
            raise LaunchFailed("workload exited without a complete response")
        parts.append(chunk)
        missing -= len(chunk)
    return b"".join(parts)


class SubprocessInstance(Instance):
    """One live native process: its pid (= its process group) and the two pipe ends."""

    runtime = "subprocess"

    def __init__(self, owner: SubprocessRuntime, pid: int, stdin_fd: int, stdout_fd: int) -> None:
        self._owner = owner
        self.pid = pid
        self._stdin = stdin_fd
        self._stdout = stdout_fd
        self._stopped = False
        self._lock = threading.Lock()
        #: The workload's waitpid status once it has been reaped.
        self.exit_status: int | None = None

    def _exchange(self, payload: bytes, deadline: float) -> tuple[int, Response]:
        """Send one request frame; return (ns when the first response byte came, response)."""
        return self._exchange_frame(encode_request(payload), deadline)

    def _exchange_frame(self, frame: bytes | memoryview, deadline: float) -> tuple[int, Response]:
        write_all(self._stdin, frame, deadline)
        _wait_fd(self._stdout, select.POLLIN, deadline, "the workload's response")
        first = time.perf_counter_ns()
        header = read_exact(self._stdout, RESPONSE_HEADER_BYTES, deadline)
        length, status = decode_response_header(header)
        return first, Response(status, read_exact(self._stdout, length, deadline))

    def watch_pgid(self) -> int:
        return self.pid  # spawned with setpgroup=0: the pid is its process group

    def request(self, payload: bytes, timeout_s: float) -> Response:
        with self._lock:
            if self._stopped:
                raise LaunchFailed("instance already stopped")
            try:
                return self._exchange(payload, time.monotonic() + timeout_s)[1]
            except LaunchFailed as exc:
                failure = exc
        raise self._failed(failure, timeout_s)

    def _failed(self, exc: LaunchFailed, timeout_s: float) -> LaunchFailed:
        """Stop the instance after a failed exchange; the failure said precisely."""
        if isinstance(exc, LaunchTimeout):
            self.stop()
            return LaunchTimeout(f"timed out after {timeout_s:g} s")
        end = time.monotonic() + EXIT_GRACE_S
        while self.exit_status is None and time.monotonic() < end:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                break
            if pid:
                self.exit_status = status
                break
            time.sleep(0.005)
        self.stop()
        if self.exit_status is None:
            return LaunchFailed(str(exc))
        return LaunchFailed(f"{describe_wait_status(self.exit_status)} before answering")

    def stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        for fd in (self._stdin, self._stdout):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            status = os.waitpid(self.pid, 0)[1]
            if self.exit_status is None:
                self.exit_status = status
        except ChildProcessError:
            pass
        _reap_group(self.pid)
        self._owner._untrack(self)


class SubprocessRuntime(Runtime):
    name = "subprocess"
    phase_names = ("spawn", "first_response")
    memory_metric = "PSS of the process"
    startup_includes = "posix_spawn + first response (binary prebuilt; excludes kill and reap)"

    def __init__(self, session) -> None:  # type: ignore[no-untyped-def]
        super().__init__(session)
        self._binaries: dict[str, Path] = {}

    def check(self) -> None:
        if not hasattr(os, "posix_spawn"):
            raise RuntimeUnavailable(self.name, "os.posix_spawn is not available on this platform", "run on Linux")

    def prepare(self, workload: Workload) -> None:
        from edgelab.build import ensure_native, host_arch

        try:
            binary = ensure_native(workload, host_arch())
        except ArtifactError as exc:
            fix = getattr(exc, "fix", None) or "edgelab build shows the compiler's error"
            raise RuntimeUnavailable(self.name, str(exc), fix) from None
        if not os.access(binary, os.X_OK):
            raise RuntimeUnavailable(self.name, f"{binary} is not executable", "edgelab clean --cache")
        self._binaries[workload.name] = binary

    def launch(self, workload: Workload, request: bytes, timeout_s: float) -> Launch:
        binary = self._binaries.get(workload.name)
        if binary is None:
            self.prepare(workload)
            binary = self._binaries[workload.name]
        _become_subreaper()
        deadline = time.monotonic() + timeout_s
        frame = encode_request(request)
        started = time.perf_counter_ns()
        child_stdin, to_child = os.pipe()
        from_child, child_stdout = os.pipe()
        # Everything that can be done before the spawn is: on these small machines the new
        # process often waits for this one's core, so each step between the spawn and the
        # first wait delays its answer (by ~15% against a bare posix_spawn loop, measured).
        os.set_blocking(to_child, False)
        os.set_blocking(from_child, False)
        try:
            pid = os.posix_spawn(
                str(binary),
                [workload.name],
                {},
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, child_stdin, 0),
                    (os.POSIX_SPAWN_DUP2, child_stdout, 1),
                    (os.POSIX_SPAWN_DUP2, _devnull(), 2),
                ],
                setpgroup=0,
            )
        except OSError as exc:
            for fd in (child_stdin, to_child, from_child, child_stdout):
                os.close(fd)
            raise LaunchFailed(f"spawn of {binary.name} failed: {exc.strerror}") from None
        os.close(child_stdin)
        os.close(child_stdout)
        try:  # the memory limit is in place before the workload sees its request
            limit = workload.memory_limit_bytes
            resource.prlimit(pid, resource.RLIMIT_AS, (limit, limit))
        except (ProcessLookupError, PermissionError, ValueError):
            pass
        try:  # as much of the request as the pipe takes now; the rest below
            sent = os.write(to_child, frame)
        except (BlockingIOError, BrokenPipeError):
            sent = 0  # a workload already gone is reported by the exchange
        instance = SubprocessInstance(self, pid, to_child, from_child)
        self._track(instance)  # registered with the watchdog before any wait
        spawned = time.perf_counter_ns()
        try:
            first, response = instance._exchange_frame(memoryview(frame)[sent:], deadline)
        except LaunchFailed as exc:
            raise instance._failed(exc, timeout_s) from None
        except BaseException:
            instance.stop()
            raise
        return Launch(
            instance=instance,
            response=response,
            startup_ns=first - started,
            phases_ns={"spawn": spawned - started, "first_response": first - spawned},
        )

    def pss_bytes(self, instances: Sequence[Instance]) -> int:
        import psutil

        total = 0
        for instance in instances:
            try:
                total += psutil.Process(instance.pid).memory_full_info().pss  # type: ignore[attr-defined]
            except psutil.Error:
                pass
        return total
