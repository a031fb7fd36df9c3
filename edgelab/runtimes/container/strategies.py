"""The container rungs that do not start a container the SDK way: ahead-of-time pools
(``created``, ``paused``) and the docker CLI (``cli``).

A ready pool holds containers whose ahead-work is done: ``created`` ones were created and
attached (start is left for the request), ``paused`` ones were also started, reached the
workload's read of its first request and were frozen (``docker pause``: the cgroup freezer),
the warm pool a "provisioned concurrency" platform keeps. The pool is refilled right after a
launch's first response, in the launch call but outside its timing, so that no ahead-work
runs while a launch is being timed (a background refill on two cores would slow the launch
it is meant to serve); in a burst (``pooled_cold_starts``) after the removal instead, as the
raw baseline does, so the engine's clean-up of a removed container stays out of the next
timed launch. Pool containers carry the session's labels like every other one, are
tracked by the runtime (so ``close`` removes them) and are found by the watchdog by label.

The CLI rung runs ``docker run --rm -i`` as a person types it, with the same hardening as
flags, the request on its stdin and the first byte of its stdout as the end of the cold
start. ``--cidfile`` splits that: the CLI writes the file as soon as its create call returns,
into a directory watched with inotify (``CidWatch``), so the split costs no polling.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import select
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgelab.errors import LaunchFailed, LaunchTimeout
from edgelab.protocol import RESPONSE_HEADER_BYTES, Response, decode_response_header, encode_request
from edgelab.runtimes.base import Instance, Launch
from edgelab.runtimes.container import (
    CONTAINER_USER,
    FAILED_REMOVAL_WAIT_S,
    MQUEUE_TMPFS,
    PIDS_LIMIT,
    ContainerInstance,
    _one_line,
    _remove_container,
    container_name,
    size_text,
)

if TYPE_CHECKING:
    from edgelab.runtimes.container import ContainerRuntime
    from edgelab.workloads import Workload

#: Ready containers kept per workload (one suffices for launches one after another; a refill
#: follows every launch).
POOL_SIZE = 1
#: How long a paused rung waits for its container's workload to block on its first read
#: before it freezes it anyway, in seconds.
SETTLE_S = 2.0
#: Where inotify is not to be had: while the CLI's create call is under way, how often its
#: --cidfile is looked for, in seconds.
CIDFILE_POLL_S = 0.002
_IN_MODIFY = 0x00000002
_IN_NONBLOCK_CLOEXEC = os.O_NONBLOCK | os.O_CLOEXEC
_STDERR_TAIL_BYTES = 2048


# -- ready pools (created, paused) ------------------------------------------------------------
class ReadyPool:
    """Containers made ahead for one runtime, per workload, at most ``POOL_SIZE`` each."""

    def __init__(self, runtime: ContainerRuntime, paused: bool) -> None:
        self._runtime = runtime
        self.paused = paused
        self._ready: dict[str, list[ContainerInstance]] = {}
        self._lock = threading.Lock()

    def fill(self, workload: Workload) -> None:
        """Make ready containers until the pool for ``workload`` is full (untimed work)."""
        while True:
            with self._lock:
                if len(self._ready.get(workload.name, ())) >= POOL_SIZE:
                    return
            instance = self._make(workload)
            with self._lock:
                self._ready.setdefault(workload.name, []).append(instance)

    def take(self, workload: Workload) -> ContainerInstance | None:
        with self._lock:
            ready = self._ready.get(workload.name)
            return ready.pop(0) if ready else None

    def ready(self) -> list[ContainerInstance]:
        with self._lock:
            return [i for ready in self._ready.values() for i in ready]

    def drop(self) -> None:
        """Forget every ready container (``close`` removes them: they are tracked)."""
        with self._lock:
            self._ready.clear()

    def _make(self, workload: Workload) -> ContainerInstance:
        runtime = self._runtime
        instance = runtime._create_attached(workload)  # tracked: a failure below still removes it
        try:
            if self.paused and workload.convention == "command":
                from edgelab.runtimes.container import command

                command.make_paused(runtime, instance, workload)  # frozen in its read of stdin
            elif self.paused:
                api = runtime.client.api
                api.start(instance.container_id)
                _settle(instance, SETTLE_S)
                api.pause(instance.container_id)
        except BaseException:
            instance.stop_within(1.0)
            raise
        return instance


def _settle(instance: ContainerInstance, within_s: float) -> None:
    """Wait until the workload itself (not runc's init) sleeps in its first read, so that the
    frozen container is one waiting for its request; give up quietly after ``within_s``."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        pid = 0
        with contextlib.suppress(Exception):
            pid = instance.pid()
        if pid:
            try:
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
                state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
            except OSError:
                return  # a remote engine, or it is gone: the launch will say
            if comm == "workload" and state == "S":
                return
        time.sleep(0.001)


@dataclasses.dataclass(frozen=True)
class Woken:
    """A ready container taken from its pool and started (created) or unpaused (paused)."""

    instance: ContainerInstance
    #: The launch call, before the take (perf_counter_ns).
    t0_ns: int
    #: The start (or unpause) call returned (perf_counter_ns).
    woken_ns: int
    #: The launch's ``timeout_s`` from after the take (time.monotonic).
    deadline: float
    #: The wake's phase: "start" or "unpause".
    wake: str

    def phases_ns(self, first_ns: int) -> dict[str, int]:
        return {self.wake: self.woken_ns - self.t0_ns, "first_response": first_ns - self.woken_ns}


@contextlib.contextmanager
def take_and_wake(
    runtime: ContainerRuntime, pool: ReadyPool, workload: Workload, timeout_s: float
) -> Iterator[Woken]:
    """Take a ready container (or make one now, in the timing, if a refill failed), start or
    unpause it, and hold it for the ``with`` body, which sends the first request its own way
    (a resident's frame, a command's stdin). A failure of the wake or of the body removes the
    container, waiting FAILED_REMOVAL_WAIT_S at most (``close`` sweeps the rest), and is
    raised as one line naming its step. The refill is the caller's: it knows when."""
    t0 = time.perf_counter_ns()
    instance = pool.take(workload)
    if instance is None:  # nothing ready (a failed refill): make one now, in the timing
        pool.fill(workload)
        instance = pool.take(workload)
        assert instance is not None
    deadline = time.monotonic() + timeout_s
    wake = "unpause" if pool.paused else "start"
    step = wake
    try:
        api = runtime.client.api
        if pool.paused:
            api.unpause(instance.container_id)
        else:
            api.start(instance.container_id)
        woken = Woken(instance, t0, time.perf_counter_ns(), deadline, wake)
        step = "first request"
        with instance._lock:
            yield woken
    except BaseException as exc:
        instance.stop_within(FAILED_REMOVAL_WAIT_S)
        runtime._launch_failure(exc, step)
        raise


def pooled_launch(
    runtime: ContainerRuntime, pool: ReadyPool, workload: Workload, request: bytes, timeout_s: float,
    refill: bool = True,
) -> Launch:  # fmt: skip
    """Start (created) or unpause (paused) a ready container and time its first response from
    the launch call; refill the pool after it, outside the timing (unless ``refill`` is False:
    ``pooled_cold_starts`` refills after the stop instead)."""
    frame = encode_request(request)
    first_byte: list[int] = []
    with take_and_wake(runtime, pool, workload, timeout_s) as woken:
        response = woken.instance._exchange(frame, woken.deadline, timeout_s, first_byte)
    launch = Launch(woken.instance, response, first_byte[0] - woken.t0_ns, woken.phases_ns(first_byte[0]))
    if refill:
        _quietly_fill(pool, workload)
    return launch


def _quietly_fill(pool: ReadyPool, workload: Workload) -> None:
    try:
        pool.fill(workload)
    except Exception:  # noqa: BLE001 - the next launch makes its own, timed, and says why if it fails
        pass


def pooled_cold_starts(
    runtime: ContainerRuntime, pool: ReadyPool, workload: Workload, request: bytes, n: int,
    timeout_s: float,
) -> list[Launch | LaunchFailed]:  # fmt: skip
    """Cold starts of a pooled rung in the order a platform's warm pool works: take a ready
    container, answer, remove it, then make the next ready one. Refilling before the removal
    put the engine's clean-up of the removed container into the next timed launch (containerd
    and dockerd finish a removal after the call returns)."""
    from edgelab.errors import EdgelabError
    from edgelab.runtimes.base import StoppedInstance

    outcomes: list[Launch | LaunchFailed] = []
    for _ in range(n):
        try:
            launch = pooled_launch(runtime, pool, workload, request, timeout_s, refill=False)
        except EdgelabError as exc:
            outcomes.append(exc if isinstance(exc, LaunchFailed) else LaunchFailed(str(exc)))
            break
        with contextlib.suppress(Exception):
            launch.instance.stop()
        _quietly_fill(pool, workload)
        outcomes.append(Launch(StoppedInstance(runtime.name), launch.response, launch.startup_ns, launch.phases_ns))
    return outcomes


# -- the docker CLI -------------------------------------------------------------------------
_WATCH_PREFIX = "edgelab-cid-"


def _remove_dead_watch_dirs() -> None:
    """Remove the --cidfile directories of labs that died without closing (SIGKILL): each is
    named after its process, which no longer exists."""
    import shutil

    for directory in Path(tempfile.gettempdir()).glob(f"{_WATCH_PREFIX}*-*"):
        try:
            pid = int(directory.name[len(_WATCH_PREFIX) :].split("-", 1)[0])
            os.kill(pid, 0)
        except ValueError:
            continue
        except ProcessLookupError:
            shutil.rmtree(directory, ignore_errors=True)
        except PermissionError:
            continue  # alive, someone else's


class CidWatch:
    """A directory for the CLI's --cidfiles, watched with inotify, so the moment the CLI
    writes one wakes the launch (no polling while it is being timed). ``fd`` is -1 where
    inotify cannot be had; the launch then looks every CIDFILE_POLL_S."""

    def __init__(self) -> None:
        _remove_dead_watch_dirs()
        self.directory = Path(tempfile.mkdtemp(prefix=f"{_WATCH_PREFIX}{os.getpid()}-"))
        self.fd = -1
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(_IN_NONBLOCK_CLOEXEC)
            if fd >= 0:
                if libc.inotify_add_watch(fd, os.fsencode(self.directory), _IN_MODIFY) >= 0:
                    self.fd = fd
                else:
                    os.close(fd)

    def written(self, fd_readable: bool) -> set[str]:
        """Names of files written since the last call (inotify), read when the fd is readable."""
        names: set[str] = set()
        if self.fd < 0 or not fd_readable:
            return names
        with contextlib.suppress(BlockingIOError, InterruptedError):
            data = os.read(self.fd, 65536)
            i = 0
            while i + 16 <= len(data):  # struct inotify_event: wd, mask, cookie, len, name
                length = int.from_bytes(data[i + 12 : i + 16], "little")
                names.add(os.fsdecode(data[i + 16 : i + 16 + length].rstrip(b"\0")))
                i += 16 + length
        return names

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1
        import shutil

        shutil.rmtree(self.directory, ignore_errors=True)


def cli_argv(
    docker: str, name: str, tag: str, labels: dict[str, str], memory_limit_bytes: int,
    cidfile: Path, oci_runtime: str | None = None,
) -> list[str]:
    """``docker run`` as a person types it, with the hardening ``host_config`` sets."""
    argv = [docker, "run", "--rm", "-i", "--network", "none", "--name", name,
            "--cidfile", str(cidfile), "--user", CONTAINER_USER, "--read-only",
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--pids-limit", str(PIDS_LIMIT), "--memory", str(memory_limit_bytes),
            "--memory-swap", str(memory_limit_bytes), "--ipc", "none",
            "--ulimit", "msgqueue=0:0", "--log-driver", "none"]  # fmt: skip
    for path, options in MQUEUE_TMPFS.items():
        argv += ["--tmpfs", f"{path}:{options}"]
    for key, value in labels.items():
        argv += ["--label", f"{key}={value}"]
    if oci_runtime:
        argv += ["--runtime", oci_runtime]
    return [*argv, tag]


class CliInstance(ContainerInstance):
    """A container started by ``docker run -i``: requests on the CLI's stdin, responses on its
    stdout (the CLI demultiplexes the attach stream). Removed through the engine's API (killing
    the CLI does not stop its container). ``container_id`` is its name until the CLI has
    written the id (memory is then read as for any container)."""

    def __init__(
        self, owner: ContainerRuntime, proc: subprocess.Popen[bytes], name: str,
        cidfile: Path, max_response_bytes: int, watch: CidWatch | None = None,
    ) -> None:  # fmt: skip
        super().__init__(owner, name, name, max_response_bytes)
        self.proc = proc
        self.cidfile = cidfile
        self._watch = watch
        self._stdout = bytearray()
        self._stderr_tail = bytearray()

    def watch_pgid(self) -> int | None:
        return self.proc.pid  # start_new_session: its own group; the watchdog kills it with the lab

    def learn_id(self) -> None:
        """Take the container's id from the --cidfile (the engine's cgroups are named by it)."""
        with contextlib.suppress(OSError):
            cid = self.cidfile.read_text().strip()
            if cid:
                self.container_id = cid

    def cid_written(self) -> bool:
        try:
            return self.cidfile.stat().st_size > 0
        except OSError:
            return False

    def request(self, payload: bytes, timeout_s: float) -> Response:
        if self.convention == "command":
            from edgelab.runtimes.container import command

            return command.answer(self, payload, timeout_s)
        with self._lock:
            if self._stopped:
                raise LaunchFailed(f"container {self.name}: already stopped")
            if self._broken:
                raise LaunchFailed(f"container {self.name}: unusable after {self._broken}")
            return self.exchange(encode_request(payload), time.monotonic() + timeout_s, timeout_s)

    def exchange(
        self, frame: bytes, deadline: float, timeout_s: float,
        marks: list[int] | None = None,
    ) -> Response:  # fmt: skip
        """Write one frame, read one response. With ``marks``, append the time the cidfile
        appeared (the CLI's create returned) and the time of the first stdout byte."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(frame)
            self.proc.stdin.flush()
            self._read(1, deadline, marks)
            if marks is not None:
                marks.append(time.perf_counter_ns())
            length, status = decode_response_header(self._read(RESPONSE_HEADER_BYTES, deadline, None))
            if length > self.max_response_bytes:
                self._broken = "a response over its cap"
                raise LaunchFailed(
                    f"container {self.name}: response exceeded {size_text(self.max_response_bytes)}"
                )
            body = self._read(length, deadline, None)
        except TimeoutError:
            self._broken = "a timeout"
            raise LaunchTimeout(f"container {self.name}: timed out after {timeout_s:g} s") from None
        except EOFError:
            self._broken = "its CLI exited"
            raise LaunchFailed(f"container {self.name}: {self._exit_reason()}") from None
        except (BrokenPipeError, OSError) as exc:
            self._broken = "a broken pipe"
            raise LaunchFailed(f"container {self.name}: docker run's pipes failed: {exc}") from None
        return Response(status, body)

    def _read(self, n: int, deadline: float, marks: list[int] | None) -> bytes:
        """``n`` bytes of stdout (kept until taken; the first call only waits for one)."""
        assert self.proc.stdout is not None and self.proc.stderr is not None
        out_fd, err_fd = self.proc.stdout.fileno(), self.proc.stderr.fileno()
        watching = marks is not None
        watch_fd = self._watch.fd if self._watch is not None else -1
        readable: list[int] = []
        while len(self._stdout) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            if watching:
                seen = (
                    self.cidfile.name in self._watch.written(watch_fd in readable)
                    if self._watch is not None and watch_fd >= 0
                    else self.cid_written()
                )
                if seen:
                    assert marks is not None
                    marks.append(time.perf_counter_ns())
                    watching = False
            fds = [out_fd, err_fd, watch_fd] if watching and watch_fd >= 0 else [out_fd, err_fd]
            wait = min(left, CIDFILE_POLL_S) if watching and watch_fd < 0 else left
            readable, _, _ = select.select(fds, [], [], wait)
            if err_fd in readable:
                chunk = os.read(err_fd, 65536)
                self._stderr_tail += chunk
                del self._stderr_tail[:-_STDERR_TAIL_BYTES]
            if out_fd in readable:
                chunk = os.read(out_fd, 1 << 20)
                if not chunk:
                    raise EOFError
                self._stdout += chunk
        if watching and marks is not None:  # answered before the file was seen: split at the byte
            marks.append(time.perf_counter_ns())
        if n == 1:
            return bytes(self._stdout[:1])
        out = bytes(self._stdout[:n])
        del self._stdout[:n]
        return out

    def _exit_reason(self) -> str:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(3)
        code = self.proc.returncode
        tail = self._stderr_tail.decode("utf-8", "replace").strip()
        line = tail.splitlines()[-1] if tail else ""
        how = f"docker run exited with code {code}" if code is not None else "docker run closed stdout"
        if code is not None and code > 128:
            with contextlib.suppress(ValueError):
                how += f" ({signal.Signals(code - 128).name})"
        return f"{how} before answering" + (f": {line}" if line else "")

    def stop(self) -> None:
        """Remove the container (by name), then end and reap the CLI. Idempotent."""
        with self._state_lock:
            if self._removed:
                return
            self._stopped = True
        owner = self._owner
        if not owner._engine_ok():
            self._end_cli()
            raise LaunchFailed(
                f"container {self.name}: not removed: the engine does not answer (the session"
                " watchdog removes it when it does)"
            )
        try:
            _remove_container(owner.client, self.container_id)
        except Exception as exc:  # noqa: BLE001 - reworded as one line
            self._end_cli()
            raise LaunchFailed(f"container {self.name}: removal failed: {_one_line(exc)}") from None
        self._end_cli()
        with self._state_lock:
            self._removed = True
        with contextlib.suppress(OSError):
            self.cidfile.unlink()
        owner._untrack(self)

    def _end_cli(self) -> None:
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(OSError):
                if pipe is not None:
                    pipe.close()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)


def cli_launch(
    runtime: ContainerRuntime, docker: str, workload: Workload, tag: str, request: bytes,
    timeout_s: float,
) -> Launch:  # fmt: skip
    """Spawn ``docker run``, send the request on its stdin and time its first stdout byte."""
    name = container_name(workload, runtime.session.id)
    watch = runtime._cid_watch()
    cidfile = watch.directory / f"{name}.cid"
    argv = cli_argv(docker, name, tag, dict(runtime.session.labels), workload.memory_limit_bytes,
                    cidfile, runtime.oci_runtime)  # fmt: skip
    frame = encode_request(request)
    deadline = time.monotonic() + timeout_s
    t0 = time.perf_counter_ns()
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            bufsize=0, start_new_session=True, close_fds=True,
        )  # fmt: skip
    except OSError as exc:
        raise LaunchFailed(f"{runtime.name}: cannot run {docker}: {exc.strerror}") from None
    instance = CliInstance(runtime, proc, name, cidfile, workload.max_response_bytes, watch)
    runtime._track(instance)
    marks: list[int] = []
    try:
        with instance._lock:
            response = instance.exchange(frame, deadline, timeout_s, marks)
    except BaseException:
        worker = threading.Thread(target=_quietly_stop, args=(instance,), daemon=True)
        worker.start()
        worker.join(0.5)
        raise
    instance.learn_id()
    with contextlib.suppress(OSError):
        cidfile.unlink()  # read: nothing of it need outlive the launch
    created, first = marks[0], marks[1]
    phases = {"cli": created - t0, "first_response": first - created}
    return Launch(instance, response, first - t0, phases)


def _quietly_stop(instance: Instance) -> None:
    with contextlib.suppress(LaunchFailed):
        instance.stop()


def docker_cli() -> str | None:
    """The docker CLI on PATH, or None."""
    import shutil

    return shutil.which("docker")


def uses(strategy: str) -> dict[str, Any]:
    """Phases and what a figure includes, per strategy (the runtime's own attributes)."""
    return _STRATEGIES[strategy]


_STRATEGIES: dict[str, dict[str, Any]] = {
    "sdk": {
        "phase_names": ("create", "start", "first_response"),
        "startup_includes": "docker create + start + first response (image prebuilt; excludes removal)",
    },
    "cli": {
        "phase_names": ("cli", "first_response"),
        "startup_includes": (
            "docker run through the docker CLI: its process spawn and create call (until it writes"
            " --cidfile), then attach, start and first response byte on its stdout (image"
            " prebuilt; excludes removal)"
        ),
    },
    "created": {
        "phase_names": ("start", "first_response"),
        "startup_includes": (
            "docker start of a container created and attached ahead + first response (a ready"
            " pool of 1, made in prepare and refilled outside the timing: after each removal in a"
            " burst, after each first response in a ramp; image prebuilt; excludes removal)"
        ),
    },
    "paused": {
        "phase_names": ("unpause", "first_response"),
        "startup_includes": (
            "docker unpause of a container created, started and paused ahead, waiting in its first"
            " read + first response (a ready pool of 1, made in prepare and refilled outside the"
            " timing: after each removal in a burst, after each first response in a ramp; image"
            " prebuilt; excludes removal)"
        ),
    },
}
STRATEGIES = tuple(_STRATEGIES)
