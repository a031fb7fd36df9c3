"""A person's own command on the subprocess rung: argv without a shell, request on stdin.

The command convention (``Workload.convention == "command"``, the CGI/WAGI model every
toolchain emits): the request is written to the program's stdin, which is then closed; its
response is its whole stdout, to EOF; it answers once and exits 0. The lab times the launch
call to the first byte of stdout (the startup) and to its exit (``Launch.exit_ns``).

What boxes a command in, and why it differs from the built-in workloads (``isolation``):

- the same cgroup per instance (every process it starts dies with it: ``cgroup.kill``), its
  own process group, the lab as its subreaper and the session watchdog;
- where the lab is root: a uid/gid of its own per instance (``NATIVE_UID_BASE`` + pid, no
  groups), ``PR_SET_NO_NEW_PRIVS``, ``RLIMIT_AS`` (the workload's memory limit) and
  ``RLIMIT_NPROC`` (``COMMAND_NPROC``: counted per real uid, so with a uid of its own it is a
  per-instance pids limit; the host's cgroup v2 here has no pids controller to do it);
- **no chroot**: the built-in workloads' jail holds one static binary of ours; a person's
  program may be dynamically linked, a script with an interpreter, or read files of its own,
  none of which a jail holding only its binary can hold. So a command sees the host's file
  system as an unprivileged user that owns nothing does: world-readable files only, writes
  nowhere but world-writable places (/tmp), and the network (no network namespace). The lab
  checks at prepare that this uid can reach and execute the binary;
- the environment is ``Function.env`` and nothing else (deny by default: no PATH, no HOME,
  none of the lab's variables); the working directory is the lab's own (relative paths in
  argv mean what they meant where the person typed them).

Where the in-process spawn (``native_spawn.c``) cannot be used here, the command is
``posix_spawn``'d with its environment and a process group of its own, its memory limit set
by prlimit right after: no cgroup, no uid of its own (the lab's rights), and the description
says so.
"""

from __future__ import annotations

import contextlib
import os
import resource
import select
import signal
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING

from edgelab.errors import LaunchFailed, LaunchTimeout
from edgelab.protocol import STATUS_OK, Response
from edgelab.runtimes import isolation
from edgelab.runtimes.base import Launch, StoppedInstance
from edgelab.runtimes.subprocess.runtime import (
    ResponseTooLarge,
    SubprocessInstance,
    _become_subreaper,
    describe_wait_status,
    format_cap,
)
from edgelab.workloads import Workload

if TYPE_CHECKING:
    from edgelab.runtimes.subprocess.runtime import SubprocessRuntime

#: RLIMIT_NPROC of a command's own uid: how many processes (and threads) one instance may
#: have at once. Generous for a program's own helpers, small enough that a fork bomb stops.
COMMAND_NPROC = 256
#: How much of a command's stderr is kept to say why it failed (the rest is read and dropped,
#: so a chatty program never blocks on a full stderr pipe).
STDERR_HEAD_BYTES = 4096
_CHUNK = 1 << 16
#: Phases of a command's launch: through the in-process spawn (which times the child's own
#: steps), or otherwise. ``first_byte``: the request written to stdin, then the program's
#: start and work until the first byte of its stdout.
PHASES_IN_PROCESS = ("clone", "drop_privileges", "exec", "first_byte")
PHASES_OTHERWISE = ("spawn", "first_byte")


class CommandNotUsable(Exception):
    """The command cannot be run as given: ``reason`` and ``fix`` (one line each)."""

    def __init__(self, reason: str, fix: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fix = fix


def resolve(argv0: str, path: str | None = None, cwd: str | None = None) -> Path:
    """argv[0] resolved as execvp resolves it: a name with a slash as given (relative to the
    working directory), else the first executable file of that name along ``path`` (the
    lab's PATH; an empty entry is the working directory). Returned absolute. Raises
    CommandNotUsable: not found, or found but not an executable file."""
    here = Path(cwd or os.getcwd())
    if not argv0:
        raise CommandNotUsable("the command is empty", "give --command \"PROGRAM ARGS...\"")
    if "/" in argv0:
        candidates = [here / argv0]
    else:
        path = os.environ.get("PATH", os.defpath) if path is None else path
        candidates = [(here / d if d else here) / argv0 for d in path.split(os.pathsep)]
    not_executable: Path | None = None
    for candidate in candidates:
        if candidate.is_file():
            if os.access(candidate, os.X_OK):
                return Path(os.path.abspath(candidate))
            not_executable = not_executable or candidate
        elif candidate.exists() and "/" in argv0:
            raise CommandNotUsable(f"command '{argv0}' is not a file ({candidate} is a directory or a device)",
                                   "give the path of a program")  # fmt: skip
    if not_executable is not None:
        return _not_executable(argv0, not_executable)
    if "/" in argv0:
        raise CommandNotUsable(f"command '{argv0}' not found ({candidates[0]} does not exist)",
                               "check the path, or give a name to look up in PATH")  # fmt: skip
    raise CommandNotUsable(f"command '{argv0}' not found (PATH={path})",
                           "give its path (./app, /usr/bin/app) or add its folder to PATH")  # fmt: skip


def _not_executable(argv0: str, found: Path) -> Path:
    mode = stat.filemode(found.stat().st_mode)
    raise CommandNotUsable(f"command '{argv0}' is not executable ({found}: {mode})", f"chmod +x {found}")


def unreachable_by_other(binary: Path) -> str | None:
    """Why a uid that owns nothing and is in no group (a command's own uid) cannot exec
    ``binary``, or None: every directory on the way needs o+x, the file o+x, and a script
    (``#!``) o+r too, as its interpreter reads it under that uid."""
    for folder in reversed(binary.parents):
        with contextlib.suppress(OSError):
            if not folder.stat().st_mode & stat.S_IXOTH:
                return f"{folder} is not searchable by others ({stat.filemode(folder.stat().st_mode)})"
    mode = binary.stat().st_mode
    if not mode & stat.S_IXOTH:
        return f"{binary} is not executable by others ({stat.filemode(mode)})"
    with contextlib.suppress(OSError), open(binary, "rb") as file:
        if file.read(2) == b"#!" and not mode & stat.S_IROTH:
            return f"{binary} is a script others cannot read ({stat.filemode(mode)})"
    return None


def _said(status: int) -> str:
    """'exited with code 3', 'was killed by SIGSEGV': how a command ended, after 'the command'."""
    said = describe_wait_status(status)
    return f"was {said}" if said.startswith("killed") else said


def _stderr_line(head: bytes) -> str:
    """The first non-empty line of what the command wrote to stderr, fit for one line."""
    for line in head.decode("utf-8", "replace").splitlines():
        if line.strip():
            return line.strip()[:200]
    return ""


class CommandInstance(SubprocessInstance):
    """One running command: stdin (write end), stdout and stderr (read ends), all
    non-blocking, and a pidfd by which its exit is seen without reaping it (so its pid and
    process group cannot be reused before ``stop`` kills and reaps them)."""

    def __init__(self, owner: SubprocessRuntime, pid: int, stdin_fd: int, stdout_fd: int, stderr_fd: int,
                 max_response_bytes: int, cgroup: Path | None, uid: int | None, binary: Path) -> None:  # fmt: skip
        super().__init__(owner, pid, stdin_fd, stdout_fd, max_response_bytes, cgroup, uid, binary)
        self._stderr = stderr_fd
        self._pidfd = os.pidfd_open(pid)
        self.answered = False

    def watch_pgid(self) -> int | None:
        return None if self.cgroup is not None else self.pid

    def request(self, payload: bytes, timeout_s: float) -> Response:
        """A waiting instance's one answer (a command answers once, then it has exited)."""
        if self.answered or self._stopped:
            raise LaunchFailed("a command answers once: this instance has answered already")
        try:
            return self.answer(payload, time.monotonic() + timeout_s, timeout_s)[2]
        finally:
            self.stop()

    def answer(self, request: bytes, deadline: float, timeout_s: float) -> tuple[int, int, Response]:
        """Write ``request`` to stdin (then close it), read stdout to EOF and stderr's head, and
        see the exit; returns (ns of the first stdout byte, ns of the exit, the response).
        With no output the first byte is the exit. Raises LaunchFailed (exit != 0, with the
        status and stderr's first line), ResponseTooLarge or LaunchTimeout (one line each); the
        caller stops the instance either way."""
        self.answered = True
        view = memoryview(request)
        poller = select.poll()
        stdin = self._stdin
        if view:
            poller.register(stdin, select.POLLOUT)
        else:
            self._close_stdin()
        poller.register(self._stdout, select.POLLIN)
        poller.register(self._stderr, select.POLLIN)
        poller.register(self._pidfd, select.POLLIN)
        out: list[bytes] = []
        out_bytes = 0
        err = bytearray()
        first: int | None = None
        exited: int | None = None
        status: int | None = None
        stdout_open = stderr_open = True
        sent = 0
        while stdout_open or exited is None:
            if exited is not None:  # gone: what it wrote is in the pipe; a descendant may hold it open
                stdout_open = False
                drained = self._drain(self._stdout, self._max_response + 1 - out_bytes)
                if drained:
                    first = first or exited  # (it was in the pipe by the exit)
                    out_bytes += len(drained)
                    out.append(drained)
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LaunchTimeout(self._timeout_line(timeout_s, sent, len(request), out_bytes))
            for fd, _events in poller.poll(remaining * 1000):
                if fd == stdin and stdin >= 0:
                    try:
                        sent += os.write(stdin, view[sent : sent + (1 << 20)])
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:  # it stopped reading: its exit status says whether that was fine
                        sent = len(view)
                    if sent >= len(view):
                        poller.unregister(stdin)
                        self._close_stdin()
                        stdin = -1
                elif fd == self._stdout:
                    chunk = self._read(self._stdout)
                    if chunk is None:
                        continue
                    if not chunk:
                        poller.unregister(fd)
                        stdout_open = False
                        continue
                    if first is None:
                        first = time.perf_counter_ns()
                    out_bytes += len(chunk)
                    if out_bytes > self._max_response:
                        raise ResponseTooLarge(f"response exceeded {format_cap(self._max_response)} of stdout, killed")
                    out.append(chunk)
                elif fd == self._stderr:
                    chunk = self._read(self._stderr)
                    if chunk is None:
                        continue
                    if not chunk:
                        poller.unregister(fd)
                        stderr_open = False
                    elif len(err) < STDERR_HEAD_BYTES:
                        err += chunk[: STDERR_HEAD_BYTES - len(err)]
                elif fd == self._pidfd and exited is None:
                    exited = time.perf_counter_ns()
                    status = self._exit_status()
                    poller.unregister(fd)
        assert exited is not None  # (the loop ends once it has exited)
        if out_bytes > self._max_response:
            raise ResponseTooLarge(f"response exceeded {format_cap(self._max_response)} of stdout, killed")
        if stderr_open and len(err) < STDERR_HEAD_BYTES:
            err += self._drain(self._stderr, STDERR_HEAD_BYTES - len(err))
        self.exit_status = status
        if status is None or not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
            line = _stderr_line(bytes(err))
            said = _said(status) if status is not None else "ended (status unknown)"
            raise LaunchFailed(f"the command {said}" + (f": {line}" if line else " (nothing on stderr)"))
        return (first if first is not None else exited), exited, Response(STATUS_OK, b"".join(out))

    def _timeout_line(self, timeout_s: float, sent: int, wanted: int, out_bytes: int) -> str:
        if sent < wanted:
            return (f"timed out after {timeout_s:g} s: the command did not read its whole request "
                    f"({sent:,} of {wanted:,} bytes taken), killed")  # fmt: skip
        return f"timed out after {timeout_s:g} s: the command did not exit ({out_bytes:,} bytes of stdout so far), killed"

    def _exit_status(self) -> int | None:
        """Its wait status, read without reaping it (WNOWAIT: ``stop`` reaps)."""
        try:
            result = os.waitid(os.P_PIDFD, self._pidfd, os.WEXITED | os.WNOWAIT | os.WNOHANG)
        except (ChildProcessError, OSError):
            return None
        if result is None:
            return None
        if result.si_code == os.CLD_EXITED:
            return (result.si_status & 0xFF) << 8
        return result.si_status & 0x7F  # killed (or dumped) by this signal

    @staticmethod
    def _read(fd: int) -> bytes | None:
        try:
            return os.read(fd, _CHUNK)
        except BlockingIOError:
            return None

    @staticmethod
    def _drain(fd: int, limit: int) -> bytes:
        """What a pipe holds now, up to ``limit`` bytes (a descendant still writing to it after
        the command exited never keeps this reading)."""
        parts = []
        while limit > 0:
            try:
                chunk = os.read(fd, min(_CHUNK, limit))
            except OSError:  # (BlockingIOError: empty for now)
                break
            if not chunk:
                break
            parts.append(chunk)
            limit -= len(chunk)
        return b"".join(parts)

    def _close_stdin(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._stdin)
        self._stdin = -1

    def is_waiting(self) -> bool | None:
        """True once it sleeps, interruptibly, in a system call (for a program that reads its
        request first: its read of stdin; not D, which a page fault of its loading is); None
        once it has exited; False while it still runs."""
        poller = select.poll()  # (not select(): a ramp's fds pass FD_SETSIZE)
        poller.register(self._pidfd, select.POLLIN)
        if poller.poll(0):
            return None
        try:
            with open(f"/proc/{self.pid}/stat", "rb") as file:
                state = file.read().rpartition(b")")[2].split()[0]
        except (OSError, IndexError):
            return None
        return state == b"S"

    def stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
        with contextlib.suppress(OSError):
            os.close(self._stderr)
        super().stop()  # (closes stdin, unless already closed, and stdout)
        with contextlib.suppress(OSError):
            os.close(self._pidfd)


def describe(runtime: SubprocessRuntime) -> tuple[tuple[str, ...], str]:
    """(phase names, what the startup includes) of a command launch on this host."""
    mode = runtime.isolation
    if mode.spawn_lib is not None:
        steps = ", ".join((["setgroups/setgid/setuid to a uid of its own"] if mode.drop_uid else [])
                          + ["no_new_privs, RLIMIT_AS"] + (["RLIMIT_NPROC"] if mode.drop_uid else []))  # fmt: skip
        into = " into its cgroup (made ahead)" if mode.cgroup_root else ""
        return PHASES_IN_PROCESS, (
            f"clone (pipes, clone3{into}) + drop privileges ({steps}; no chroot; timed in the child) + exec "
            "of your command, in-process (native_spawn.c); first byte: the request written to its stdin, then "
            "its start and work until the first byte of its stdout (binary given; excludes the rest of its "
            "output, its exit (exit_us) and the kill and reap)"
        )
    return PHASES_OTHERWISE, (
        "posix_spawn of your command (its own process group, the lab's rights) + prlimit RLIMIT_AS; first "
        "byte: the request written to its stdin, then its first byte of stdout (excludes its exit (exit_us) "
        "and the kill and reap)"
    )


def reach(runtime: SubprocessRuntime) -> str:
    """What a command can reach here, in one line (the run's preparation, doctor)."""
    mode = runtime.isolation
    env = "only the --env it is given (no PATH, no HOME)"
    if mode.spawn_lib is not None and mode.drop_uid:
        return (f"the host's files as a uid that owns nothing (world-readable files, world-writable "
                f"folders such as /tmp), the network; no chroot (--dir is a Wasm grant: it does not confine "
                f"a command); environment: {env}; a cgroup, RLIMIT_AS and {COMMAND_NPROC} processes per "
                f"instance")  # fmt: skip
    return (f"everything the lab's own user ({os.geteuid()}) can: no uid of its own, no chroot (--dir is a "
            f"Wasm grant: it does not confine a command); environment: {env}")  # fmt: skip


def spawn(runtime: SubprocessRuntime, workload: Workload, binary: Path,
          steps: list[tuple[int, int]] | None = None) -> CommandInstance:  # fmt: skip
    """Start one instance of the command with its three pipes (the lab's ends non-blocking)
    and track it; nothing is written to its stdin yet. Raises LaunchFailed (one line)."""
    function = workload.function
    assert function is not None and function.command
    argv = list(function.command)
    env = [f"{k}={v}" for k, v in function.env]
    mode = runtime.isolation
    spawner = runtime._spawner
    cgroup = runtime._cgroups_take() if spawner is not None else None
    child_stdin, to_child = os.pipe()
    from_child, child_stdout = os.pipe()
    err_r, child_stderr = os.pipe()
    for fd in (to_child, from_child, err_r):
        os.set_blocking(fd, False)
    ours = (to_child, from_child, err_r)
    theirs = (child_stdin, child_stdout, child_stderr)
    uid_base = isolation.NATIVE_UID_BASE if spawner is not None and mode.drop_uid else 0
    try:
        if spawner is not None:
            pid = spawner.spawn(theirs, str(binary), argv[0], cgroup, None, uid_base, workload.memory_limit_bytes,
                                steps, args=argv[1:], env=env, nproc_limit=COMMAND_NPROC if uid_base else 0)  # fmt: skip
        else:
            file_actions = [(os.POSIX_SPAWN_DUP2, fd, i) for i, fd in enumerate(theirs)]
            environ = dict(function.env)
            pid = os.posix_spawn(str(binary), argv, environ, file_actions=file_actions, setpgroup=0)
            with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
                limit = workload.memory_limit_bytes
                resource.prlimit(pid, resource.RLIMIT_AS, (limit, limit))
    except OSError as exc:
        for fd in ours + theirs:
            os.close(fd)
        if cgroup is not None:
            runtime._cgroups_release(cgroup)
        why = str(exc) if isinstance(exc, isolation.SpawnFailed) else (exc.strerror or str(exc))
        raise LaunchFailed(f"spawn of {argv[0]} failed: {why}") from None
    for fd in theirs:
        os.close(fd)
    # (the sweep, where there is no cgroup, knows its escaped processes by their exe: the real path)
    try:
        instance = CommandInstance(runtime, pid, to_child, from_child, err_r, workload.max_response_bytes, cgroup,
                                   uid_base + pid if uid_base else None, Path(os.path.realpath(binary)))  # fmt: skip
    except OSError as exc:  # its pidfd (out of fds): it must not outlive this
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        for fd in ours:
            os.close(fd)
        if cgroup is not None:
            isolation.reap_pidfds(isolation.kill_cgroup(cgroup), 1.0)
            runtime._cgroups_release(cgroup)
        raise LaunchFailed(f"spawn of {argv[0]} failed: {exc.strerror or exc}") from None
    runtime._track(instance)
    return instance


def launch(runtime: SubprocessRuntime, workload: Workload, binary: Path, request: bytes, timeout_s: float) -> Launch:
    """One cold start of the command: spawn, request to stdin, stdout to EOF, exit. The
    instance is stopped (killed whole, reaped) before this returns, outside the figures."""
    _become_subreaper()
    deadline = time.monotonic() + timeout_s
    steps: list[tuple[int, int]] = []
    started = time.perf_counter_ns()
    instance = spawn(runtime, workload, binary, steps=steps)
    spawned = time.perf_counter_ns()
    try:
        first, exited, response = instance.answer(request, deadline, timeout_s)
    finally:
        instance.stop()
    if runtime._cgroups is not None:
        runtime._cgroups.make_spare()
    if steps:
        child, exec_ = steps[0]
        phases = {"clone": child - started, "drop_privileges": exec_ - child, "exec": spawned - exec_,
                  "first_byte": first - spawned}  # fmt: skip
    else:
        phases = {"spawn": spawned - started, "first_byte": first - spawned}
    return Launch(StoppedInstance(runtime.name), response, first - started, phases, exit_ns=exited - started)


def launch_waiting(runtime: SubprocessRuntime, workload: Workload, binary: Path, n: int, timeout_s: float) -> list[Launch]:
    """``n`` instances spawned and left waiting for their request (stdin open, nothing
    written), each seen asleep in a system call (for a program that reads its request
    first: its read of stdin) before it counts: a ramp's resident command instances. Each
    startup runs from its spawn to that point. All or nothing: on a failure, those made
    here are stopped and the failure raised."""
    _become_subreaper()
    made: list[tuple[CommandInstance, int, int, list[tuple[int, int]]]] = []
    seen: list[int] = []
    try:
        for _ in range(n):  # one at a time, so each is seen waiting as soon as it is
            deadline = time.monotonic() + timeout_s
            started = time.perf_counter_ns()
            steps: list[tuple[int, int]] = []
            instance = spawn(runtime, workload, binary, steps)
            made.append((instance, started, time.perf_counter_ns(), steps))
            while not (state := instance.is_waiting()):
                if state is None:
                    instance.stop()
                    said = _said(instance.exit_status) if instance.exit_status is not None else "ended"
                    raise LaunchFailed(f"the command {said} before its request was sent: a command that does "
                                       "not wait for its stdin cannot be held resident")  # fmt: skip
                if time.monotonic() > deadline:
                    raise LaunchTimeout(f"timed out after {timeout_s:g} s: the command never waited (it kept running)")
                time.sleep(0.0001)
            seen.append(time.perf_counter_ns())
            if runtime._cgroups is not None:
                runtime._cgroups.make_spare()
    except BaseException:
        runtime.stop_many([instance for instance, *_ in made])
        raise
    return [
        Launch(instance, Response(STATUS_OK, b""), seen[i] - started, _spawn_phases(started, steps, spawned), waiting=True)
        for i, (instance, started, spawned, steps) in enumerate(made)
    ]


def _spawn_phases(started: int, steps: list[tuple[int, int]], spawned: int) -> dict[str, int]:
    """A waiting instance's phases up to its exec's return (no first byte: nothing was sent)."""
    if not steps:
        return {"spawn": spawned - started}
    child, exec_ = steps[0]
    return {"clone": child - started, "drop_privileges": exec_ - child, "exec": spawned - exec_}

