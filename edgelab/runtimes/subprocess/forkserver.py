"""``subprocess:forkserver``: a resident parent that forks an instance per launch, as zygotes do.

Per workload one fork server is started ahead, untimed (``prepare``): the workload's static
binary built with its fork-server mode (``modules/abi/el_forkserver.h``), spawned as a
``subprocess`` instance is (its own cgroup, chroot into its jail, no_new_privs, RLIMIT_AS,
empty environment) but keeping the lab's uid, so that it can give each instance a uid of its
own. Its fd 0 is a SOCK_SEQPACKET socket to the lab. A launch makes the instance's pipes and
cgroup, writes the request, and *asks*: one message carrying the pipes and the cgroup's
directory fd. The server clones the instance with CLONE_PARENT (so it is the lab's own child:
the lab waits for it, reads its exit status, kills and reaps it exactly as a spawned instance)
and CLONE_INTO_CGROUP (born in its own cgroup, killed whole on stop). The instance takes its
own process group, drops to uid/gid NATIVE_UID_BASE + its pid, sets no_new_privs and
RLIMIT_AS, reports (pid, timestamps) on the socket, puts its pipes on fds 0 and 1 and answers.

Timed: from the launch call (pipes, the ask) through the fork to the first response byte, in
two phases: *fork* (until the instance's first instruction, by its CLOCK_MONOTONIC stamp) and
*first response* (its steps and its answer). It skips the exec and the loader. What differs
from ``subprocess``: every instance inherits the server's address-space layout (one ASLR draw
for all, the zygote's known weakness), and the server itself runs as the lab's uid (root,
chrooted, never running the handler): both said in ``marks`` and ``startup_includes``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import select
import signal
import socket
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from edgelab.errors import ArtifactError, LaunchFailed, LaunchTimeout, RuntimeUnavailable
from edgelab.protocol import encode_request
from edgelab.runtimes import isolation
from edgelab.runtimes.base import Launch
from edgelab.runtimes.subprocess.runtime import SubprocessInstance, SubprocessRuntime, _devnull
from edgelab.workloads import Workload

#: struct el_fs_ask and struct el_fs_report of el_forkserver.h.
ASK = struct.Struct("<QQQ")
REPORT = struct.Struct("<QiiiiQQ")
VARIANT = "forkserver"
PHASES = ("fork", "first_response")
#: How long a fork server may take to answer its first (empty) ask after its spawn.
SERVER_START_S = 5.0
#: EL_FS_STEP_ASK: the report of an ask without pipes (how the lab knows a new server serves).
STEP_MALFORMED_ASK = 128


@dataclass(frozen=True)
class Report:
    """What the instance (or, when it could not fork, the server) says about one ask."""

    seq: int
    pid: int
    step: int
    error: int
    child_ns: int
    ready_ns: int


class ForkServer:
    """One resident fork server: its pid (= its process group), its cgroup and the lab's end
    of its socket. Thread-safe: asks are numbered, reports kept until their asker takes them."""

    def __init__(self, pid: int, sock: socket.socket, cgroup: Path | None, binary: Path) -> None:
        self.pid = pid
        self.sock = sock
        self.cgroup = cgroup
        self.binary = binary
        self._seq = itertools.count(1)
        self._send_lock = threading.Lock()
        self._recv_lock = threading.Lock()
        self._reports: dict[int, Report] = {}
        self.exit_status: int | None = None
        #: From the spawn to its answer to the first (empty) ask: what a ready server cost to get.
        self.start_ns = 0

    def ask(self, fds: list[int], uid_base: int, as_limit: int, seq: int | None = None) -> int:
        """Ask for one instance on ``fds`` (stdin, stdout[, cgroup dir]); returns the ask's
        number. Raises OSError when the server is gone."""
        with self._send_lock:
            number = next(self._seq) if seq is None else seq
            if fds:
                socket.send_fds(self.sock, [ASK.pack(number, uid_base, as_limit)], fds)
            else:
                self.sock.send(ASK.pack(number, uid_base, as_limit))
        return number

    def report(self, seq: int, deadline: float) -> Report:
        """The report of ask ``seq``, waiting until ``deadline`` (LaunchTimeout) or until the
        server is gone (LaunchFailed)."""
        while True:
            with self._recv_lock:
                found = self._reports.pop(seq, None)
                if found is not None:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise LaunchTimeout("timed out waiting for the fork server's report")
                try:  # poll, not select: a held ramp takes the lab's fds past FD_SETSIZE
                    poller = select.poll()
                    poller.register(self.sock.fileno(), select.POLLIN)
                    ready = poller.poll(min(remaining, 0.05) * 1000)
                except (ValueError, OSError):  # closed meanwhile (the runtime's close)
                    raise LaunchFailed("the fork server was stopped") from None
                if not ready:
                    continue
                try:
                    data = self.sock.recv(REPORT.size)
                except OSError as exc:
                    raise LaunchFailed(f"the fork server is gone: {exc.strerror or exc}") from None
                if len(data) != REPORT.size:
                    raise LaunchFailed("the fork server is gone")
                number, pid, step, error, _, child_ns, ready_ns = REPORT.unpack(data)
                report = Report(number, pid, step, error, child_ns, ready_ns)
                if number == seq:
                    return report
                self._reports[number] = report

    def alive(self) -> bool:
        if self.exit_status is not None:
            return False
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            self.exit_status = -1
            return False
        if pid:
            self.exit_status = status
            return False
        return True

    def stop(self) -> None:
        """Kill the server (its instances are not its children and live on until stopped)."""
        with contextlib.suppress(OSError):
            self.sock.close()
        if self.cgroup is not None:
            isolation.reap_pidfds(isolation.kill_cgroup(self.cgroup), 1.0)
        if self.exit_status is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                self.exit_status = os.waitpid(self.pid, 0)[1]


class ForkServerInstance(SubprocessInstance):
    """An instance forked by a fork server: its pid is known once its report is read (after
    the first response byte, outside the figure)."""

    def __init__(self, owner: ForkServerRuntime, server: ForkServer, seq: int, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(owner, 0, *args, **kwargs)
        self.server = server
        self.seq = seq
        self.report: Report | None = None

    def watch_pgid(self) -> int | None:
        if self.cgroup is not None or not self.pid:  # (its cgroup is the session's, registered)
            return None
        return self.pid

    def learn(self, deadline: float) -> Report:
        """Read this instance's report; ``pid`` (and ``uid``) become the instance's. A failed
        step or fork is a LaunchFailed naming it."""
        if self.report is None:
            self.report = self.server.report(self.seq, deadline)
            self.pid = self.report.pid
            if self.pid and self.uid_base is not None:
                self.uid = self.uid_base + self.pid
        if self.report.step:
            raise LaunchFailed(self._step_failure())
        return self.report

    def _failed(self, exc: LaunchFailed, timeout_s: float) -> LaunchFailed:
        with contextlib.suppress(LaunchFailed):
            if self.seq >= 0:
                self.learn(time.monotonic() + 1.0)
        if not self.pid:  # no instance was made (or it never reported): nothing to wait for
            self.stop()
            return exc
        if self.report is not None and self.report.step:
            self.stop()
            return LaunchFailed(self._step_failure())
        return super()._failed(exc, timeout_s)

    def _step_failure(self) -> str:
        assert self.report is not None
        return str(isolation.SpawnFailed(self.report.step, self.report.error)).replace("the spawn", "the fork server")

    def stop(self) -> None:
        if not self.pid and self.seq >= 0:  # its pid is needed to reap it: a report may still come
            with contextlib.suppress(LaunchFailed):
                self.learn(time.monotonic() + (0.2 if self.cgroup is None else 0.0))
        if self.pid:
            super().stop()
            return
        with self._lock:  # never forked, or not yet known: its cgroup holds whatever there is
            if self._stopped:
                return
            self._stopped = True
        for fd in (self._stdin, self._stdout):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self.cgroup is not None:
            isolation.reap_pidfds(isolation.kill_cgroup(self.cgroup), 1.0)
            self._owner._cgroups_release(self.cgroup)
        self._owner._untrack(self)


class ForkServerRuntime(SubprocessRuntime):
    """Instances forked from a resident, ready fork server per workload."""

    name = "subprocess:forkserver"
    memory_metric = "PSS of the process (pages shared copy-on-write with its fork server split among them)"

    def __init__(self, session, isolation_mode: isolation.Isolation | None = None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(session, isolation_mode)
        self._servers: dict[str, ForkServer] = {}
        self._servers_lock = threading.Lock()

    @property  # type: ignore[misc]
    def phase_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return PHASES

    @property  # type: ignore[misc]
    def startup_includes(self) -> str:  # type: ignore[override]
        mode = self.isolation
        steps = ", ".join(["setpgid"] + (["setgroups/setgid/setuid"] if mode.drop_uid else []) + ["no_new_privs, RLIMIT_AS"])
        into = "|CLONE_INTO_CGROUP" if mode.cgroup_root else ""
        jail = "; its jail inherited" if mode.drop_uid and mode.spawn_lib else ""
        return (f"fork: pipes{' and the instance cgroup (made ahead)' if mode.cgroup_root else ''}, the ask to the "
                f"resident fork server (sendmsg), its clone3(CLONE_PARENT{into}) until the instance runs; first "
                f"response: the instance's steps ({steps}{jail}) and its answer (server started ahead, untimed; "
                "no exec, no loader; instances share the server's memory layout; excludes kill and reap)")  # fmt: skip

    def check(self) -> None:
        super().check()
        import platform

        release = tuple(int(part) for part in re.findall(r"\d+", platform.release())[:2])
        if len(release) == 2 and release < (5, 3):  # clone3 (CLONE_PARENT as a clone3 flag)
            raise RuntimeUnavailable(self.name, f"the fork server needs clone3: Linux 5.3 or later (this is {platform.release()})",
                                     "run on a newer kernel")  # fmt: skip
        if not hasattr(socket, "send_fds"):
            raise RuntimeUnavailable(self.name, "socket.send_fds is not available (Python >= 3.9 on Unix)", "run on Linux")

    def marks(self) -> tuple[str, ...]:
        marks = ["instances share the fork server's address-space layout (one ASLR draw)"]
        if self.isolation.drop_uid and self.isolation.spawn_lib is None:
            marks.append("not chrooted: the in-process spawn that jails the fork server is unavailable here")
        return tuple(marks)

    def doctor_details(self) -> dict[str, str]:
        details = super().doctor_details()
        uid = "the lab's uid (root: it gives each instance a uid of its own)" if self.isolation.drop_uid else "the lab's uid"
        details["fork server"] = f"one per workload, started ahead, running as {uid}; never runs the handler"
        return details

    def spare_pids(self) -> frozenset[int]:
        with self._servers_lock:
            servers = frozenset(server.pid for server in self._servers.values())
        return super().spare_pids() | servers

    def prepare(self, workload: Workload) -> None:
        from edgelab.build import ensure_native, host_arch

        try:
            binary = ensure_native(workload, host_arch(), variant=VARIANT)
            jail = None
            if self.isolation.drop_uid and self.isolation.spawn_lib is not None:
                jail = isolation.ensure_jail(binary, f"{binary.parent.name}-{VARIANT}")
        except ArtifactError as exc:
            fix = getattr(exc, "fix", None) or "edgelab build shows the compiler's error"
            raise RuntimeUnavailable(self.name, str(exc), fix) from None
        if jail is not None:
            self._jails[workload.name] = jail
        self._binaries[workload.name] = binary
        self._server(workload)

    def _server(self, workload: Workload) -> ForkServer:
        """The workload's fork server, started (and proven to answer) if none is alive."""
        with self._servers_lock:
            server = self._servers.get(workload.name)
            if server is not None and server.alive():
                return server
            if server is not None:
                server.stop()
            try:
                server = self._start_server(workload)
            except (OSError, LaunchFailed) as exc:
                reason = getattr(exc, "strerror", None) or str(exc)
                raise RuntimeUnavailable(self.name, f"cannot start the fork server of {workload.name}: {reason}",
                                         "edgelab doctor shows how native workloads are started here") from None  # fmt: skip
            self._servers[workload.name] = server
            return server

    def _start_server(self, workload: Workload) -> ForkServer:
        binary = self._binaries[workload.name]
        jail = self._jails.get(workload.name)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        cgroup = self._cgroups_take()
        spawner = self._spawner
        started = time.perf_counter_ns()
        try:
            if spawner is not None:  # its jail and cgroup, the lab's uid: it gives the instances theirs
                exe = f"/{binary.name}" if jail is not None else str(binary)
                fds = (theirs.fileno(), _devnull(), _devnull())
                pid = spawner.spawn(fds, exe, workload.name, cgroup, jail, 0, workload.memory_limit_bytes)
            else:
                actions = [(os.POSIX_SPAWN_DUP2, theirs.fileno(), 0), (os.POSIX_SPAWN_DUP2, _devnull(), 1),
                           (os.POSIX_SPAWN_DUP2, _devnull(), 2)]  # fmt: skip
                pid = os.posix_spawn(str(binary), [workload.name], {}, file_actions=actions, setpgroup=0)
        except BaseException:
            ours.close()
            if cgroup is not None:
                self._cgroups_release(cgroup)
            raise
        finally:
            theirs.close()
        self._watch_pgid(pid)
        server = ForkServer(pid, ours, cgroup, binary)
        try:  # an ask without pipes: the server answers it with a report, so it is serving
            server.ask([], 0, 0, seq=0)
            report = server.report(0, time.monotonic() + SERVER_START_S)
        except (OSError, LaunchFailed) as exc:
            server.stop()
            raise LaunchFailed(f"it did not answer ({exc})") from None
        if report.step != STEP_MALFORMED_ASK:  # as it should be
            server.stop()
            raise LaunchFailed(f"it answered an empty ask with step {report.step}")
        server.start_ns = time.perf_counter_ns() - started
        return server

    def preparation(self) -> dict[str, str]:
        """What keeping each workload's fork server ready cost: its start (untimed) and its
        memory now (while its instances share its pages, its PSS is split with them)."""
        import psutil

        with self._servers_lock:
            servers = dict(self._servers)
        found = {}
        for name, server in servers.items():
            try:
                memory = psutil.Process(server.pid).memory_full_info()
                held = f"PSS {memory.pss / 1024:.1f} KiB, RSS {memory.rss / 1024:.0f} KiB"  # type: ignore[attr-defined]
            except psutil.Error:
                held = "memory unknown (gone)"
            found[f"fork server of {name}"] = f"started ahead in {server.start_ns / 1e6:.2f} ms (untimed); {held}"
        return found

    def launch(self, workload: Workload, request: bytes, timeout_s: float) -> Launch:
        if workload.name not in self._binaries:
            self.prepare(workload)
        server = self._server(workload)  # alive, else restarted here: before the clock starts
        deadline = time.monotonic() + timeout_s
        frame = encode_request(request)
        dropped = self.isolation.drop_uid
        started = time.perf_counter_ns()
        cgroup = self._cgroups_take()
        child_stdin, to_child = os.pipe()
        from_child, child_stdout = os.pipe()
        os.set_blocking(to_child, False)
        os.set_blocking(from_child, False)
        try:  # the request waits in the pipe: the instance reads it as soon as it runs
            sent = os.write(to_child, frame)
        except BlockingIOError:
            sent = 0
        # The instance exists before the ask: once asked, the lab only waits (on 2 cores its
        # bookkeeping after the ask delayed the forked instance: lab/raw 1.06 at the call).
        instance = ForkServerInstance(self, server, -1, to_child, from_child, workload.max_response_bytes, cgroup)
        instance.uid_base = isolation.NATIVE_UID_BASE if dropped else None
        instance.binary = server.binary
        self._track(instance)  # (the watchdog hears of it once its pid is read, if it must)
        passed = [child_stdin, child_stdout]
        try:
            if cgroup is not None:
                passed.append(os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
            instance.seq = server.ask(passed, isolation.NATIVE_UID_BASE if dropped else 0, workload.memory_limit_bytes)
        except OSError as exc:
            instance.stop()
            raise LaunchFailed(f"the fork server of {workload.name} is gone: {exc.strerror or exc}") from None
        finally:
            for fd in passed:
                os.close(fd)
        try:
            first, response = instance._exchange_frame(memoryview(frame)[sent:], deadline)
            report = instance.learn(deadline)  # after the first byte: outside the figure
        except LaunchFailed as exc:
            raise instance._failed(exc, timeout_s) from None
        except BaseException:
            instance.stop()
            raise
        if cgroup is None:  # (else the session's cgroups, registered whole, hold it for the watchdog)
            self._watch_pgid(instance.pid)
        if self._cgroups is not None:
            self._cgroups.make_spare()
        return Launch(
            instance=instance,
            response=response,
            startup_ns=first - started,
            phases_ns={"fork": report.child_ns - started, "first_response": first - report.child_ns},
        )

    def close(self) -> None:
        for instance in self.live_instances():
            instance.stop()
        with self._servers_lock:
            servers, self._servers = list(self._servers.values()), {}
        for server in servers:
            server.stop()
            if server.cgroup is not None:
                self._cgroups_release(server.cgroup)
        super().close()
