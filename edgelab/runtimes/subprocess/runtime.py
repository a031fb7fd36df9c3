"""Native subprocess runtime: the workload's static binary, spawned without a shell.

``os.posix_spawn`` (glibc: clone(CLONE_VM|CLONE_VFORK) + exec) with no ``preexec_fn``, an empty
environment, and its own process group. Where the lab can box the workload in
(``edgelab.runtimes.isolation``: a cgroup per instance, and when the lab is root a uid of its
own, no_new_privs and a chroot into a jail holding only its binary), it spawns the tiny
launcher that does that and then execs the workload; otherwise the workload itself.
The memory limit (RLIMIT_AS) is set by the launcher before it execs the workload, or, without
the launcher, with prlimit(2) right after the spawn; either way before the first request.

Hostile workloads: RLIMIT_AS makes an allocation fail (the workload answers status 2 "out of
memory"). There is no pids limit: the forkbomb stops at its own 200 children. Every process an
instance starts dies with it: stop kills its cgroup whole (``cgroup.kill``), setsid or not;
where there is no cgroup, stop kills its process group and sweeps its descendants (and, when
the uid was dropped, every process of its uid). The lab is a child subreaper
(PR_SET_CHILD_SUBREAPER), so orphans are reparented to it and reaped here. Responses are read
up to the workload's ``max_response_bytes``: a larger one kills the instance and fails the
launch ("response exceeded 16 MiB"), so a flood never lands in the lab's memory.

A person's own command (``Workload.convention == "command"``: request on stdin, response on
stdout, exit 0) runs through ``edgelab.runtimes.subprocess.command``: the same cgroup, uid,
no_new_privs and limits, but no chroot, and its own --env (that module says what it reaches).
"""

from __future__ import annotations

import contextlib
import os
import resource
import select
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from edgelab.errors import ArtifactError, LaunchFailed, LaunchTimeout, RuntimeUnavailable
from edgelab.protocol import RESPONSE_HEADER_BYTES, Response, decode_response_header, encode_request
from edgelab.runtimes import isolation
from edgelab.runtimes.base import Instance, Launch, Runtime
from edgelab.runtimes.isolation import NativeSpawner
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


def describe_wait_status(status: int, launcher: bool = False) -> str:
    """'killed by SIGSEGV' or 'exited with code N' for a waitpid status; ``launcher``: the
    process began as the launcher, whose own failures have codes of their own."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            return f"killed by {signal.Signals(sig).name}"
        except ValueError:
            return f"killed by signal {sig}"
    if os.WIFEXITED(status):
        code = os.WEXITSTATUS(status)
        meaning = isolation.describe_launcher_exit(code) if launcher else None
        return f"exited with code {code}" + (f" ({meaning}?)" if meaning else "")
    return f"ended (wait status {status})"


def format_cap(n: int) -> str:
    """A byte cap as people write it: '16 MiB', '64 KiB', '1000 bytes'."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n:,} bytes"


class ResponseTooLarge(LaunchFailed):
    """The workload announced (or sent) more than its ``max_response_bytes``."""


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


def wait_fd(fd: int, events: int, deadline: float, what: str) -> None:
    """Wait until ``fd`` is ready for ``events``; past ``deadline``, a LaunchTimeout naming ``what``."""
    poller = select.poll()
    poller.register(fd, events)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LaunchTimeout(f"timed out waiting for {what}")
        if poller.poll(remaining * 1000):
            return


def write_all(fd: int, data: bytes | memoryview, deadline: float, ended: str = "workload exited") -> None:
    """Write every byte of ``data`` to a non-blocking fd before ``deadline``; ``ended`` says
    who went away in the failure (the microVM runtime: "the guest ended")."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view[: 1 << 20])
        except BlockingIOError:
            wait_fd(fd, select.POLLOUT, deadline, "the workload to read its request")
            continue
        except BrokenPipeError:
            raise LaunchFailed(f"{ended} before reading its whole request") from None
        view = view[written:]


def read_exact(fd: int, n: int, deadline: float, ended: str = "workload exited") -> bytes:
    """Read exactly ``n`` bytes from a non-blocking fd before ``deadline``, into one buffer
    (the caller has checked ``n`` against the response cap)."""
    if n <= _CHUNK:
        parts: list[bytes] = []
        missing = n
        while missing:
            try:
                chunk = os.read(fd, missing)
            except BlockingIOError:
                wait_fd(fd, select.POLLIN, deadline, "the workload's response")
                continue
            if not chunk:
                raise LaunchFailed(f"{ended} without a complete response")
            parts.append(chunk)
            missing -= len(chunk)
        return b"".join(parts)
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
            raise LaunchFailed(f"{ended} without a complete response")
        got += count
    view.release()
    return bytes(buffer)


def _read_started_pid(fd: int, deadline: float) -> int:
    """The pid the launcher reports for the workload it started in the instance's cgroup."""
    wait_fd(fd, select.POLLIN, deadline, "the launcher")
    data = os.read(fd, 4)
    if len(data) != 4:
        raise LaunchFailed("the launcher ended without starting the workload")
    return int.from_bytes(data, sys.byteorder)


class SubprocessInstance(Instance):
    """One live native process: its pid (= its process group), the two pipe ends, and the
    cgroup that holds it and everything it starts (None where there is none)."""

    runtime = "subprocess"

    def __init__(
        self,
        owner: SubprocessRuntime,
        pid: int,
        stdin_fd: int,
        stdout_fd: int,
        max_response_bytes: int,
        cgroup: Path | None = None,
        uid: int | None = None,
        binary: Path | None = None,
    ) -> None:
        self._owner = owner
        self.pid = pid
        self._stdin = stdin_fd
        self._stdout = stdout_fd
        self._max_response = max_response_bytes
        #: The instance's cgroup (killed whole on stop), None where there is none.
        self.cgroup = cgroup
        #: The uid the workload runs as (None: the lab's own).
        self.uid = uid
        #: The workload's binary, by which the sweep knows an escaped process without a uid.
        self.binary = binary
        #: The launcher, when it starts the workload in a cgroup; until the workload's pid is
        #: read from ``_report_fd``, ``pid`` is the launcher's.
        self.launcher_pid: int | None = None
        self._report_fd = -1
        #: Set: the workload runs as uid_base + its pid.
        self.uid_base: int | None = None
        self._stopped = False
        self._lock = threading.Lock()
        #: The workload's waitpid status once it has been reaped.
        self.exit_status: int | None = None

    def _exchange(self, payload: bytes, deadline: float) -> tuple[int, Response]:
        """Send one request frame; return (ns when the first response byte came, response)."""
        return self._exchange_frame(encode_request(payload), deadline)

    def _exchange_frame(self, frame: bytes | memoryview, deadline: float) -> tuple[int, Response]:
        write_all(self._stdin, frame, deadline)
        wait_fd(self._stdout, select.POLLIN, deadline, "the workload's response")
        first = time.perf_counter_ns()
        header = read_exact(self._stdout, RESPONSE_HEADER_BYTES, deadline)
        length, status = decode_response_header(header)
        if length > self._max_response:  # announced: refuse before reading a byte of it
            raise ResponseTooLarge(f"response exceeded {format_cap(self._max_response)}")
        return first, Response(status, read_exact(self._stdout, length, deadline))

    def watch_pgid(self) -> int | None:
        if self.cgroup is not None:
            # Held by the session's cgroups, which the watchdog has (registered whole at the
            # first one): a message per launch woke the watchdog inside the next cold start,
            # +8% on the lab's p50 on 2 loaded cores (paired blocks), for nothing it lacked.
            return None
        if self._report_fd >= 0:
            return None  # not known yet: the runtime registers it once read
        return self.pid  # its own process group: the pid is the group's id

    def learn_pid(self, deadline: float) -> None:
        """Read the pid of the workload the launcher started (born in the instance's cgroup,
        the lab's child by CLONE_PARENT, its own group's leader); ``pid`` becomes it."""
        fd, self._report_fd = self._report_fd, -1
        if fd < 0:
            return
        try:
            self.pid = _read_started_pid(fd, deadline)
        finally:
            os.close(fd)
        if self.uid_base is not None:
            self.uid = self.uid_base + self.pid

    def reap_launcher(self) -> None:
        """Reap the launcher, which exits as soon as it has started the workload."""
        launcher, self.launcher_pid = self.launcher_pid, None
        if launcher is not None:
            try:
                os.waitpid(launcher, 0)
            except ChildProcessError:
                pass

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
        if self._report_fd >= 0:  # whose exit to report: the workload's if it was started
            with contextlib.suppress(LaunchFailed):
                self.learn_pid(time.monotonic() + EXIT_GRACE_S)
        if isinstance(exc, LaunchTimeout):
            self.stop()
            return LaunchTimeout(f"timed out after {timeout_s:g} s")
        if isinstance(exc, ResponseTooLarge):  # alive and still writing: no exit to wait for
            self.stop()
            return LaunchFailed(str(exc))
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
        launched = self._owner.isolation.launcher is not None
        return LaunchFailed(f"{describe_wait_status(self.exit_status, launched)} before answering")

    def stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        for fd in (self._stdin, self._stdout, self._report_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        self._report_fd = -1
        # Everything it started, first: a cgroup (setsid or not), else a sweep of what can be found.
        if self.cgroup is not None:
            pidfds = isolation.kill_cgroup(self.cgroup)
        else:
            spare = self._owner.spare_pids()
            pidfds = isolation.sweep(self.pid, self.uid, self.binary, spare)
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
        isolation.reap_pidfds(pidfds, GROUP_REAP_S)
        if self.launcher_pid is not None and self.launcher_pid != self.pid:
            try:  # not reaped yet (reap_launcher is what reaps it): the pid is still its own
                os.kill(self.launcher_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.reap_launcher()
        self.launcher_pid = None  # (the same process as pid: reaped above)
        _reap_group(self.pid)
        if self.cgroup is not None:
            self._owner._cgroups_release(self.cgroup)
        self._owner._untrack(self)


#: Phases of a launch through the in-process spawn, which times the child's own steps.
PHASES_IN_PROCESS = ("clone", "drop_privileges", "exec", "first_response")
PHASES_OTHERWISE = ("spawn", "first_response")


def _phases(started: int, steps: list[tuple[int, int]], spawned: int, first: int) -> dict[str, int]:
    """clone: the lab's pipes and cgroup, then clone3 until the child runs; drop_privileges: the
    child's chroot, uid drop, no_new_privs and limits (timed in the child); exec: its execve and
    the lab handing over the request; first_response. Without the child's timestamps (the
    launcher, posix_spawn) the first three are one ``spawn``."""
    if not steps:
        return {"spawn": spawned - started, "first_response": first - spawned}
    child, exec_ = steps[0]
    return {"clone": child - started, "drop_privileges": exec_ - child, "exec": spawned - exec_,
            "first_response": first - spawned}  # fmt: skip


class SubprocessRuntime(Runtime):
    name = "subprocess"
    memory_metric = "PSS of the process"
    #: What the figure includes when the launcher boxes the workload in (see ``isolation``).
    STARTUP_INCLUDES_LAUNCHER = (
        "spawn: {cgroup}posix_spawn of the launcher; first response: the launcher's {steps} and exec "
        "of the workload, then its answer (binary prebuilt; excludes kill and reap)"
    )
    STARTUP_INCLUDES_BARE = "posix_spawn + first response (binary prebuilt; excludes kill and reap)"

    def __init__(self, session, isolation_mode: isolation.Isolation | None = None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(session)
        self._binaries: dict[str, Path] = {}
        self._jails: dict[str, Path] = {}
        self._isolation = isolation_mode
        self._cgroups: isolation.SessionCgroups | None = None
        #: A person's commands (``edgelab.runtimes.subprocess.command``): workload name ->
        #: (its resolved binary, its size in bytes), by ``prepare``.
        self._commands: dict[str, tuple[Path, int]] = {}

    @property
    def isolation(self) -> isolation.Isolation:
        """How this runtime boxes its workloads in (found by trying, once per process)."""
        if self._isolation is None:
            self._isolation = isolation.detect()
        return self._isolation

    @property
    def _spawner(self) -> NativeSpawner | None:
        library = self.isolation.spawn_lib
        return isolation.native_spawner(library) if library is not None else None

    @property  # type: ignore[misc]  # the base declares a class constant; here it depends on the host
    def phase_names(self) -> tuple[str, ...]:  # type: ignore[override]
        if self._commands:  # a run has one workload: a person's command, once prepared
            from edgelab.runtimes.subprocess import command

            return command.describe(self)[0]
        return PHASES_IN_PROCESS if self.isolation.spawn_lib is not None else PHASES_OTHERWISE

    @property  # type: ignore[misc]  # the base declares a class constant; here it depends on the host
    def startup_includes(self) -> str:  # type: ignore[override]
        if self._commands:
            from edgelab.runtimes.subprocess import command

            return command.describe(self)[1]
        mode = self.isolation
        if mode.spawn_lib is not None:
            steps = ", ".join((["chroot, setgroups/setgid/setuid"] if mode.drop_uid else []) + ["no_new_privs, RLIMIT_AS"])
            into = " into its cgroup (made ahead)" if mode.cgroup_root else ""
            return (f"clone (pipes, clone3{into}) + drop privileges ({steps}; timed in the child) + exec, "
                    "in-process (native_spawn.c); first response (binary prebuilt; excludes kill and reap)")  # fmt: skip
        if mode.launcher is None:
            return self.STARTUP_INCLUDES_BARE
        steps = ", ".join(
            (["clone3 into the cgroup"] if mode.cgroup_root else [])
            + (["chroot, setgroups/setgid/setuid, no_new_privs"] if mode.drop_uid else [])
            + ["RLIMIT_AS"]
        )
        cgroup = "mkdir of its cgroup + " if mode.cgroup_root else ""
        return self.STARTUP_INCLUDES_LAUNCHER.format(cgroup=cgroup, steps=steps)

    def check(self) -> None:
        if not hasattr(os, "posix_spawn"):
            raise RuntimeUnavailable(self.name, "os.posix_spawn is not available on this platform", "run on Linux")

    def doctor_details(self) -> dict[str, str]:
        from edgelab.runtimes.subprocess import command

        mode = self.isolation
        return {"containment": mode.containment, "privileges": mode.privileges, "spawn": mode.spawn_path,
                "your commands": command.reach(self)}  # fmt: skip

    def preparation(self) -> dict[str, str]:
        """A person's command: the binary argv[0] resolved to, its size, and what it can reach."""
        from edgelab.runtimes.subprocess import command

        found = {}
        for name, (binary, size) in self._commands.items():  # (a run has one: then its keys read as words)
            of = f" of {name}" if len(self._commands) > 1 else ""
            found[f"command{of}"] = f"{binary} ({size:,} bytes)"
            found[f"reaching{of}"] = command.reach(self)
        return found

    def _prepare_command(self, workload: Workload) -> None:
        """Resolve a person's command as execvp would (one line if it cannot run)."""
        from edgelab.runtimes.subprocess import command

        assert workload.function is not None and workload.function.command
        try:
            binary = command.resolve(workload.function.command[0])
            if self.isolation.spawn_lib is not None and self.isolation.drop_uid:
                why = command.unreachable_by_other(binary)
                if why is not None:
                    raise command.CommandNotUsable(
                        f"command '{workload.function.command[0]}' cannot be run by the unprivileged uid "
                        f"the lab gives each instance: {why}",
                        "make the program and its folders readable and executable by others (chmod o+rx), "
                        "or put it elsewhere",
                    )
        except command.CommandNotUsable as exc:
            raise RuntimeUnavailable(self.name, exc.reason, exc.fix) from None
        except OSError as exc:
            raise RuntimeUnavailable(self.name, f"cannot read the command: {exc}") from None
        self._commands[workload.name] = (binary, binary.stat().st_size)

    def _command_binary(self, workload: Workload) -> Path:
        if workload.name not in self._commands:
            self._prepare_command(workload)
        return self._commands[workload.name][0]

    def prepare(self, workload: Workload) -> None:
        if workload.convention == "command":
            self._prepare_command(workload)
            return
        from edgelab.build import ensure_native, host_arch

        try:
            binary = ensure_native(workload, host_arch())
            jail = isolation.ensure_jail(binary) if self.isolation.drop_uid else None
        except ArtifactError as exc:
            fix = getattr(exc, "fix", None) or "edgelab build shows the compiler's error"
            raise RuntimeUnavailable(self.name, str(exc), fix) from None
        if not os.access(binary, os.X_OK):
            raise RuntimeUnavailable(self.name, f"{binary} is not executable", "edgelab clean --cache")
        if jail is not None:
            self._jails[workload.name] = jail
        self._binaries[workload.name] = binary

    def _cgroups_take(self) -> Path | None:
        root = self.isolation.cgroup_root
        if root is None:
            return None
        if self._cgroups is None:
            self._cgroups = isolation.SessionCgroups(root, self.session.id)
            if self.watcher is not None:  # a lab that dies: its watchdog kills the cgroups
                self.watcher.register_cgroup(self._cgroups.directory)
        try:
            return self._cgroups.take()
        except OSError as exc:
            raise LaunchFailed(f"cannot make the instance's cgroup: {exc.strerror or exc}") from None

    def _cgroups_release(self, cgroup: Path) -> None:
        if self._cgroups is not None:
            self._cgroups.release(cgroup)

    def close(self) -> None:
        super().close()
        if self._cgroups is not None:
            self._cgroups.close()

    def spare_pids(self) -> frozenset[int]:
        """This runtime's own children running a workload's binary that a sweep (where there
        is no cgroup) must leave alone: its live instances (a fork server adds itself)."""
        return frozenset(getattr(i, "pid", 0) for i in self.live_instances())

    def _spawn_argv(self, workload: Workload, binary: Path, cgroup: Path | None) -> tuple[str, list[str]]:
        """(program, argv) for one launch: the launcher and its steps (the memory limit among
        them), or the workload itself."""
        mode = self.isolation
        if mode.launcher is None:
            return str(binary), [workload.name]
        jail = self._jails.get(workload.name)
        return str(mode.launcher), [
            mode.launcher.name,
            str(cgroup) if cgroup is not None else "-",
            str(isolation.NATIVE_UID_BASE) if jail is not None else "-",
            str(jail) if jail is not None else "-",
            str(workload.memory_limit_bytes),
            f"/{binary.name}" if jail is not None else str(binary),
            workload.name,
        ]

    def spawn_process(
        self, workload: Workload, binary: Path, stdin_fd: int, stdout_fd: int, cgroup: Path | None,
        report_fd: int = -1, steps_ns: list[tuple[int, int]] | None = None,
    ) -> int:  # fmt: skip
        """Start one instance's process exactly as ``launch`` does and nothing else (raw
        baselines call it too): the in-process spawn, else the launcher (with a cgroup it
        starts the workload as the lab's child and writes its pid to ``report_fd``), else
        posix_spawn. Returns the pid spawned. Raises SpawnFailed or OSError."""
        spawner = self._spawner
        if spawner is not None:  # one call: clone3 + the steps + exec of the workload
            jail = self._jails.get(workload.name)
            return spawner.spawn(
                (stdin_fd, stdout_fd, _devnull()), f"/{binary.name}" if jail else str(binary),
                workload.name, cgroup, jail, isolation.NATIVE_UID_BASE if jail else 0,
                workload.memory_limit_bytes, steps_ns,
            )  # fmt: skip
        program, argv = self._spawn_argv(workload, binary, cgroup)
        file_actions = [
            (os.POSIX_SPAWN_DUP2, stdin_fd, 0),
            (os.POSIX_SPAWN_DUP2, stdout_fd, 1),
            (os.POSIX_SPAWN_DUP2, _devnull(), 2),
        ]
        if report_fd >= 0:
            file_actions.append((os.POSIX_SPAWN_DUP2, report_fd, 3))
        return os.posix_spawn(program, argv, {}, file_actions=file_actions, setpgroup=0)

    def cold_starts(
        self, workload: Workload, request: bytes, n: int, timeout_s: float
    ) -> list[Launch | LaunchFailed]:
        """A command's cold starts keep their exit time (each launch has stopped its instance
        already); the built-in workloads' as the base does them."""
        if workload.convention != "command":
            return super().cold_starts(workload, request, n, timeout_s)
        outcomes: list[Launch | LaunchFailed] = []
        for _ in range(n):
            try:
                outcomes.append(self.launch(workload, request, timeout_s))
            except LaunchFailed as exc:
                outcomes.append(exc)
                break
        return outcomes

    def launch_many(self, workload: Workload, request: bytes, n: int, timeout_s: float) -> list[Launch]:
        """A command's resident instances are left waiting for their request (nothing
        written: ``Launch.waiting``); the built-in workloads' answer their first request."""
        if workload.convention != "command":
            return super().launch_many(workload, request, n, timeout_s)
        from edgelab.runtimes.subprocess import command

        return command.launch_waiting(self, workload, self._command_binary(workload), n, timeout_s)

    def launch(self, workload: Workload, request: bytes, timeout_s: float) -> Launch:
        if workload.convention == "command":
            from edgelab.runtimes.subprocess import command

            return command.launch(self, workload, self._command_binary(workload), request, timeout_s)
        binary = self._binaries.get(workload.name)
        if binary is None:
            self.prepare(workload)
            binary = self._binaries[workload.name]
        _become_subreaper()
        deadline = time.monotonic() + timeout_s
        frame = encode_request(request)
        dropped = workload.name in self._jails
        started = time.perf_counter_ns()
        cgroup = self._cgroups_take()
        spawner = self._spawner
        steps: list[tuple[int, int]] = []
        child_stdin, to_child = os.pipe()
        from_child, child_stdout = os.pipe()
        # Where the launcher starts the workload in a cgroup, it reports its pid on this pipe.
        report_r, report_w = os.pipe() if cgroup is not None and spawner is None else (-1, -1)
        # Everything that can be done before the spawn is: on these small machines the new
        # process often waits for this one's core, so each step between the spawn and the
        # first wait delays its answer (by ~15% against a bare posix_spawn loop, measured).
        os.set_blocking(to_child, False)
        os.set_blocking(from_child, False)
        try:
            pid = self.spawn_process(workload, binary, child_stdin, child_stdout, cgroup, report_w, steps)
        except isolation.SpawnFailed as exc:
            for fd in (child_stdin, to_child, from_child, child_stdout):
                os.close(fd)
            if cgroup is not None:
                self._cgroups_release(cgroup)
            raise LaunchFailed(f"spawn of {binary.name} failed: {exc}") from None
        except OSError as exc:
            for fd in (child_stdin, to_child, from_child, child_stdout, report_r, report_w):
                if fd >= 0:
                    os.close(fd)
            if cgroup is not None:
                self._cgroups_release(cgroup)
            raise LaunchFailed(f"spawn of {binary.name} failed: {exc.strerror}") from None
        os.close(child_stdin)
        os.close(child_stdout)
        if report_w >= 0:
            os.close(report_w)
        if spawner is None and self.isolation.launcher is None:  # (else set before the exec)
            try:  # the memory limit is in place before the workload sees its request
                limit = workload.memory_limit_bytes
                resource.prlimit(pid, resource.RLIMIT_AS, (limit, limit))
            except (ProcessLookupError, PermissionError, ValueError):
                pass
        try:  # as much of the request as the pipe takes now; the rest below
            sent = os.write(to_child, frame)
        except (BlockingIOError, BrokenPipeError):
            sent = 0  # a workload already gone is reported by the exchange
        instance = SubprocessInstance(self, pid, to_child, from_child, workload.max_response_bytes, cgroup)
        instance.uid_base = isolation.NATIVE_UID_BASE if dropped else None
        instance.binary = binary
        if report_r >= 0:  # the launcher's child will be the workload; its pid is read later
            instance.launcher_pid, instance._report_fd = pid, report_r
        elif dropped:
            instance.uid = isolation.NATIVE_UID_BASE + pid
        self._track(instance)  # (registered with the watchdog as soon as its pid is known)
        spawned = time.perf_counter_ns()
        try:
            first, response = instance._exchange_frame(memoryview(frame)[sent:], deadline)
        except LaunchFailed as exc:
            raise instance._failed(exc, timeout_s) from None
        except BaseException:
            instance.stop()
            raise
        # After the first byte, outside the figure: the workload's pid (by then it is written),
        # the watchdog, the launcher's exit, and the next launch's cgroup.
        if instance.launcher_pid is not None:
            try:
                instance.learn_pid(deadline)
            except LaunchFailed as exc:
                raise instance._failed(exc, timeout_s) from None
            if instance.cgroup is None:  # (else the session's cgroups hold it for the watchdog)
                self._watch_pgid(instance.pid)
        instance.reap_launcher()
        if self._cgroups is not None:
            self._cgroups.make_spare()
        return Launch(
            instance=instance,
            response=response,
            startup_ns=first - started,
            phases_ns=_phases(started, steps, spawned, first),
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
