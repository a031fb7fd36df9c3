"""A person's own image on the container rungs: the command convention (issue 13).

The built-in workloads are resident and speak the lab's framed ABI; a *function* image
(``Workload.function.image``) is a command: its own entrypoint reads the request on stdin,
writes the response on stdout and exits, once. So a launch here is: create the container
(attached before start, so no output is lost), start it, write the request through the attach
and half-close stdin (``StdinOnce``: the engine then closes the process's stdin), read stdout
to the end of the stream (stdout and stderr demultiplexed, no TTY), and ask the engine for the
exit status (``wait``). ``startup_ns`` runs from the launch call to the first stdout byte,
``exit_ns`` to ``wait``'s answer. The container is removed after the timing, inside the launch
(the instance it returns has exited: ``StoppedInstance``).

The image is never pulled (no registry may be reachable): ``prepare`` finds it in the engine
(``images.get``) or fails with one line saying how to build or load it.

Hardening is the built-ins' ``host_config`` unchanged (read-only root, every capability
dropped, no-new-privileges, no network, pids and memory limits, no IPC, the session's labels).
What differs, and why:
- the user: the image's own when it names a non-root one (its files may be owned by it);
  otherwise (none, or root) 65534:65534 as for the built-ins. An image that needs root then
  fails at launch with its own error: run as root it would not be hardened as the others are.
- the environment: the function's ``--env`` pairs (the native command gets the same).
- the entrypoint, cmd and working directory: the image's own.
- ``StdinOnce``: so that half-closing the attach ends the process's stdin.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgelab.errors import ArtifactError, EdgelabError, LaunchFailed, LaunchTimeout
from edgelab.protocol import STATUS_OK, Response
from edgelab.runtimes.base import Launch, StoppedInstance

if TYPE_CHECKING:
    from edgelab.runtimes.container import ContainerInstance, ContainerRuntime
    from edgelab.runtimes.container.strategies import CliInstance, ReadyPool
    from edgelab.workloads import Workload

#: How long a launch waits for the engine's exit status once stdout has ended, at most.
WAIT_EXIT_S = 10.0
#: How long a ramp's waiting container is given to block reading its stdin (outside the timing).
WAITING_SETTLE_S = 2.0
#: The read(2) syscall number, by machine, as /proc/PID/syscall shows it.
_READ_SYSCALL = {"x86_64": 0, "aarch64": 63}
_STDERR_HEAD_BYTES = 2048


class ImageMissing(ArtifactError):
    """The function's image is not in the engine: bad input (the lab never pulls)."""

    exit_code = 2


def missing_image_line(ref: str) -> str:
    """The one line for an image the engine does not have: how to build or load it."""
    base = ref.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0] or "image"
    return (
        f"image '{ref}' is not in the engine: build it (docker build -t {ref} .) or load it"
        f" (docker load -i {base}.tar); edgelab never pulls"
    )


def image_facts(client: Any, ref: str) -> dict[str, Any]:
    """{"ref", "id", "size_bytes", "user", "runs"} of a local image; ImageMissing if the engine
    does not have it; an image with nothing to run is an ArtifactError too."""
    import docker

    try:
        image = client.images.get(ref)
    except docker.errors.ImageNotFound:
        raise ImageMissing(missing_image_line(ref)) from None
    except docker.errors.APIError as exc:
        if exc.status_code in (400, 404):  # an invalid reference: no image by that name either
            raise ImageMissing(missing_image_line(ref)) from None
        raise
    config = image.attrs.get("Config") or {}
    runs = [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
    if not runs:
        raise ArtifactError(f"image '{ref}' has no entrypoint or cmd: nothing to run")
    return {
        "ref": ref,
        "id": str(image.id),
        "size_bytes": int(image.attrs.get("Size", 0)),
        "user": str(config.get("User") or ""),
        "runs": runs,
    }


def container_user(image_user: str) -> str:
    """The user a function's container runs as: the image's own if non-root, else nobody."""
    from edgelab.runtimes.container import CONTAINER_USER

    name = image_user.split(":", 1)[0].strip()
    return CONTAINER_USER if name in ("", "root", "0") else image_user


def image_of(workload: Workload) -> str:
    """The function's image; one that gives none is one line (the lab's ``not_applicable``
    keeps such a workload off these rungs; a direct caller gets this, not an assertion)."""
    if workload.function is None or not workload.function.image:
        raise ArtifactError(f"{workload.name} gives no image (--image) for the container rungs to run")
    return workload.function.image


def env_list(workload: Workload) -> list[str]:
    assert workload.function is not None
    return [f"{key}={value}" for key, value in workload.function.env]


# -- includes per strategy --------------------------------------------------------------------
_INCLUDES = {
    "sdk": (
        "docker create + attach + start, the request written to stdin and half-closed, to the"
        " first stdout byte of the image's own entrypoint (image local, never pulled; exit:"
        " to the engine's wait status; excludes removal)"
    ),
    "cli": (
        "docker run --rm -i through the docker CLI: its spawn and create call (until it writes"
        " --cidfile), then attach, start and the request on its stdin, to the first stdout byte"
        " (image local, never pulled; exit: to the CLI's exit, which waits for --rm's removal)"
    ),
    "created": (
        "docker start of a container of the image created and attached ahead, the request on"
        " stdin, to the first stdout byte (a ready pool of 1 refilled outside the timing; exit:"
        " to the engine's wait status; excludes removal)"
    ),
    "paused": (
        "docker unpause of a container of the image started ahead and frozen while blocked"
        " reading its stdin, the request on stdin, to the first stdout byte (a ready pool of 1"
        " refilled outside the timing; exit: to the engine's wait status; excludes removal)"
    ),
}


def startup_includes(strategy: str, oci_runtime: str | None) -> str:
    text = _INCLUDES[strategy]
    return f"{text}; under the OCI runtime {oci_runtime}" if oci_runtime else text


# -- the SDK path (container, container:gvisor, container:crun) and the pools ------------------
def _finish(
    runtime: ContainerRuntime, instance: ContainerInstance, request: bytes, deadline: float,
    timeout_s: float, cap: int,
) -> tuple[int, bytes, int]:  # fmt: skip
    """Run the exchange on a started (or unpaused) container: (first byte ns, stdout, exit
    ns). Raises the one-line failures: timeout, output over the cap, non-zero exit."""
    from edgelab.runtimes.container import _ResponseTooLarge, size_text

    assert instance.stream is not None
    try:
        first_ns, stdout = instance.stream.run_command(request, deadline, cap)
    except TimeoutError:
        instance._broken = "a timeout"
        raise LaunchTimeout(
            f"container {instance.name}: timed out after {timeout_s:g} s (the command did not"
            " exit: it never finished, or never read its stdin)"
        ) from None
    except _ResponseTooLarge:
        instance._broken = "output over its cap"
        raise LaunchFailed(
            f"container {instance.name}: output exceeded {size_text(cap)} (killed)"
        ) from None
    except OSError as exc:
        instance._broken = "a broken connection"
        raise LaunchFailed(f"container {instance.name}: attach connection failed: {exc}") from None
    api = runtime.client.api
    wait_s = max(0.5, min(WAIT_EXIT_S, deadline - time.monotonic()))
    try:
        code = int(api.wait(instance.container_id, timeout=wait_s)["StatusCode"])
    except Exception as exc:  # noqa: BLE001 - worded as one line below
        from edgelab.runtimes.container import _is_timeout

        if _is_timeout(exc):
            raise LaunchTimeout(
                f"container {instance.name}: stdout ended but the engine gave no exit status in"
                f" {wait_s:g} s"
            ) from None
        raise
    exit_ns = time.perf_counter_ns()
    if code != 0:
        raise LaunchFailed(f"container {instance.name}: {_exit_words(runtime, instance, code)}")
    return first_ns, stdout, exit_ns


def _exit_words(runtime: ContainerRuntime, instance: ContainerInstance, code: int) -> str:
    how = f"exited with code {code}"
    if code > 128:
        with contextlib.suppress(ValueError):
            how += f" ({signal.Signals(code - 128).name})"
    with contextlib.suppress(Exception):  # the line must not fail itself
        if runtime.client.api.inspect_container(instance.container_id)["State"].get("OOMKilled"):
            how = f"out of memory (OOM-killed; {how})"
    line = instance.stream.stderr_first_line() if instance.stream else ""
    return how + (f": {line}" if line else "")


def sdk_launch(runtime: ContainerRuntime, workload: Workload, request: bytes, timeout_s: float) -> Launch:
    """Create + attach, start, the request on stdin, stdout to its end, the exit status."""
    from edgelab.runtimes.container import FAILED_REMOVAL_WAIT_S, ContainerInstance, attach_socket

    tag = runtime.image_tag(workload)
    client = runtime.client
    runtime._will_create()
    instance: ContainerInstance | None = None
    step = "create"
    deadline = time.monotonic() + timeout_s
    try:
        t0 = time.perf_counter_ns()
        container_id, name = runtime._create(workload, tag)
        instance = ContainerInstance(runtime, container_id, name, workload.max_response_bytes)
        instance.convention = "command"
        runtime._track(instance)
        step = "attach"
        from edgelab.runtimes.container import _AttachStream

        instance.stream = _AttachStream(attach_socket(client, container_id, client.api.timeout))
        t1 = time.perf_counter_ns()
        step = "start"
        client.api.start(container_id)
        t2 = time.perf_counter_ns()
        step = "first request"
        with instance._lock:
            first_ns, stdout, exit_ns = _finish(
                runtime, instance, request, deadline, timeout_s, workload.max_response_bytes
            )
    except BaseException as exc:
        if instance is not None:
            instance.stop_within(FAILED_REMOVAL_WAIT_S)
        runtime._launch_failure(exc, step)
        raise
    _remove_after(instance)
    if not first_ns:
        first_ns = exit_ns  # no stdout at all: the answer (empty) is complete at the exit
    phases = {"create": t1 - t0, "start": t2 - t1, "first_response": first_ns - t2}
    return Launch(
        StoppedInstance(runtime.name), Response(STATUS_OK, stdout), first_ns - t0, phases,
        exit_ns=exit_ns - t0,
    )  # fmt: skip


def _remove_after(instance: ContainerInstance) -> None:
    """Remove an exited container after its timing; one the engine does not remove now stays
    tracked, so ``close`` (or the watchdog) removes it."""
    from edgelab.runtimes.container import FAILED_REMOVAL_WAIT_S

    try:
        instance.stop()
    except LaunchFailed:
        instance.stop_within(FAILED_REMOVAL_WAIT_S)


def pooled_launch(
    runtime: ContainerRuntime, pool: ReadyPool, workload: Workload, request: bytes,
    timeout_s: float, refill: bool = True,
) -> Launch:  # fmt: skip
    """Start (created) or unpause (paused) a ready container of the image, then the exchange;
    the exited container is removed, then the pool refilled, both outside the timing."""
    from edgelab.runtimes.container import strategies

    with strategies.take_and_wake(runtime, pool, workload, timeout_s) as woken:
        first_ns, stdout, exit_ns = _finish(
            runtime, woken.instance, request, woken.deadline, timeout_s, workload.max_response_bytes
        )
    _remove_after(woken.instance)
    if refill:
        strategies._quietly_fill(pool, workload)
    if not first_ns:
        first_ns = exit_ns
    return Launch(
        StoppedInstance(runtime.name), Response(STATUS_OK, stdout), first_ns - woken.t0_ns,
        woken.phases_ns(first_ns), exit_ns=exit_ns - woken.t0_ns,
    )  # fmt: skip


def cold_starts(
    runtime: ContainerRuntime, workload: Workload, request: bytes, n: int, timeout_s: float
) -> list[Launch | LaunchFailed]:
    """Back-to-back launches, each already removed (as the base's loop, keeping ``exit_ns``);
    a pooled rung refills after each removal, as its built-in bursts do."""
    outcomes: list[Launch | LaunchFailed] = []
    pool = runtime._pool
    for _ in range(n):
        try:
            if pool is not None:
                runtime._will_create()
                launch = pooled_launch(runtime, pool, workload, request, timeout_s, refill=False)
            else:
                launch = runtime.launch(workload, request, timeout_s)
        except EdgelabError as exc:
            outcomes.append(exc if isinstance(exc, LaunchFailed) else LaunchFailed(str(exc)))
            break
        finally:
            if pool is not None:
                from edgelab.runtimes.container import strategies

                strategies._quietly_fill(pool, workload)
        outcomes.append(launch)
    return outcomes


# -- waiting instances (a ramp) and the paused pool's first read ---------------------------------
def blocked_reading_stdin(pid: int) -> bool:
    """Is process ``pid`` asleep in read(2) on fd 0 (/proc/PID/syscall)? False if unreadable."""
    number = _READ_SYSCALL.get(os.uname().machine)
    try:
        fields = Path(f"/proc/{pid}/syscall").read_text().split()
    except OSError:
        return False
    return number is not None and len(fields) > 1 and fields[0] == str(number) and int(fields[1], 16) == 0


def settle_reading(instance: ContainerInstance, within_s: float) -> bool:
    """Wait until the container's process blocks reading its stdin; False after ``within_s``."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        pid = 0
        with contextlib.suppress(Exception):
            pid = instance.pid()
        if pid and blocked_reading_stdin(pid):
            return True
        time.sleep(0.001)
    return False


def _settle_all(runtime: ContainerRuntime, instances: Sequence[ContainerInstance]) -> None:
    """Give a chunk's containers WAITING_SETTLE_S in all to block reading stdin (outside any
    timing). Under runsc the host sees the sandbox, not the command's syscalls: not waited for."""
    if runtime.oci_runtime == "runsc":
        return
    until = time.monotonic() + WAITING_SETTLE_S
    for instance in instances:
        settle_reading(instance, until - time.monotonic())


def make_paused(runtime: ContainerRuntime, instance: ContainerInstance, workload: Workload) -> None:
    """Start a created container of the image and freeze it once its entrypoint blocks reading
    stdin: only then is it "paused in its first read". One that does not get there (it reads
    nothing, or reads elsewhere first) has no honest paused rung: one line, the rung given up."""
    from edgelab.runtimes.container import engine, strategies

    if not engine.local_engine(runtime.client):
        raise ArtifactError(
            f"{runtime.name}: the engine is not on this machine, so whether image"
            f" '{image_of(workload)}' blocks reading its stdin cannot be seen here, and no"
            " container of it can honestly be said to be paused in its first read"
        )
    api = runtime.client.api
    api.start(instance.container_id)

    if not settle_reading(instance, strategies.SETTLE_S):
        raise ArtifactError(
            f"{runtime.name}: image '{image_of(workload)}' did not block reading its stdin within"
            f" {strategies.SETTLE_S:g} s of its start, so no container of it can be paused in its"
            " first read (container:created starts one on request instead)"
        )
    api.pause(instance.container_id)


def launch_waiting(
    runtime: ContainerRuntime, workload: Workload, n: int, timeout_s: float
) -> list[Launch]:
    """``n`` containers of the image created, attached and started (a pooled rung: taken from
    its pool and started or unpaused), left waiting for their request: stdin open, nothing
    sent. ``startup_ns`` runs to the start (or unpause) call's return; each is then given up
    to WAITING_SETTLE_S, outside the timing, to block reading its stdin, so the memory the
    ramp reads is that of an idle instance. All or nothing, as the base's ``launch_many``."""
    from edgelab.runtimes.container import strategies

    if runtime.strategy == "cli":
        return _cli_waiting(runtime, workload, n, timeout_s)
    launches: list[Launch] = []
    made: list[ContainerInstance] = []
    pool = runtime._pool
    try:
        for _ in range(n):
            runtime._will_create()
            t0 = time.perf_counter_ns()
            instance = pool.take(workload) if pool is not None else None
            if instance is None:
                instance = runtime._create_attached(workload)
                fresh = True
            else:
                fresh = False
            made.append(instance)
            t1 = time.perf_counter_ns()
            api = runtime.client.api
            step = "start"
            try:
                if pool is not None and pool.paused and not fresh:
                    step = "unpause"
                    api.unpause(instance.container_id)
                else:
                    api.start(instance.container_id)
            except BaseException as exc:
                runtime._launch_failure(exc, step)
                raise
            t2 = time.perf_counter_ns()
            phases = {"create": t1 - t0, step: t2 - t1} if fresh else {step: t2 - t0}
            launches.append(
                Launch(instance, Response(STATUS_OK, b""), t2 - t0, phases, waiting=True)
            )
            if pool is not None:
                strategies._quietly_fill(pool, workload)
        _settle_all(runtime, made)
    except BaseException:
        runtime.stop_many(made)
        raise
    return launches


# -- the docker CLI (container:cli) -------------------------------------------------------------
def cli_argv(runtime: ContainerRuntime, workload: Workload, name: str, cidfile: Path, docker: str) -> list[str]:
    """``docker run --rm -i`` with the built-ins' hardening flags, the image's own entrypoint,
    its user rule and the function's env, passed by name (``--env K``: the values travel in
    the CLI's environment, not its argv, which any process may read)."""
    from edgelab.runtimes.container import strategies

    facts = runtime.function_image(workload)
    argv = strategies.cli_argv(
        docker, name, facts["id"], dict(runtime.session.labels), workload.memory_limit_bytes,
        cidfile, runtime.oci_runtime,
    )  # fmt: skip
    image = argv.pop()
    user_at = argv.index("--user") + 1
    argv[user_at] = container_user(facts["user"])
    for key, _ in workload.function.env if workload.function else ():
        argv += ["--env", key]
    return [*argv, image]


def _cli_env(workload: Workload) -> dict[str, str]:
    env = dict(os.environ)
    if workload.function is not None:
        env.update(dict(workload.function.env))
    return env


def _spawn_cli(runtime: ContainerRuntime, workload: Workload) -> tuple[CliInstance, int]:
    from edgelab.runtimes.container.strategies import CliInstance

    if runtime._docker_cli is None:
        runtime._check_cli()
    assert runtime._docker_cli is not None
    runtime._will_create()
    from edgelab.runtimes.container import container_name

    name = container_name(workload, runtime.session.id)
    watch = runtime._cid_watch()
    cidfile = watch.directory / f"{name}.cid"
    argv = cli_argv(runtime, workload, name, cidfile, runtime._docker_cli)
    t0 = time.perf_counter_ns()
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            bufsize=0, start_new_session=True, close_fds=True, env=_cli_env(workload),
        )  # fmt: skip
    except OSError as exc:
        raise LaunchFailed(f"{runtime.name}: cannot run {runtime._docker_cli}: {exc.strerror}") from None
    instance = CliInstance(runtime, proc, name, cidfile, workload.max_response_bytes, watch)
    instance.convention = "command"
    runtime._track(instance)
    return instance, t0


def _feed_stdin(proc: subprocess.Popen[bytes], request: bytes) -> None:
    """Write the request to the CLI's stdin and close it (a thread: a command that never reads
    must not block the lab, whose deadline kills the CLI and so ends this write)."""
    assert proc.stdin is not None
    with contextlib.suppress(OSError, ValueError):
        proc.stdin.write(request)
    with contextlib.suppress(OSError, ValueError):
        proc.stdin.close()


def _cli_drain(
    instance: CliInstance, deadline: float, timeout_s: float, cap: int, created_ns: int
) -> tuple[int, int, bytes, int]:  # fmt: skip
    """Read the CLI's stdout to its end and its exit status: (created ns, first stdout byte
    ns, stdout, exit ns). ``created_ns`` 0: also watch for the --cidfile (the CLI's create
    call returned) and stamp it. Failures are one line: a timeout, output over ``cap``
    (killed), a non-zero exit with the first stderr line (the CLI's own error if it failed)."""
    from edgelab.runtimes.container import size_text

    proc = instance.proc
    first_ns = 0
    out = bytearray()
    head = bytearray()
    assert proc.stdout is not None and proc.stderr is not None
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    watch = instance._watch
    watch_fd = watch.fd if watch is not None else -1
    open_fds = {out_fd, err_fd}
    readable: list[int] = []
    while out_fd in open_fds:
        left = deadline - time.monotonic()
        if left <= 0:
            raise LaunchTimeout(
                f"container {instance.name}: timed out after {timeout_s:g} s (the command did"
                " not exit: it never finished, or never read its stdin)"
            )
        if not created_ns:
            seen = (
                instance.cidfile.name in watch.written(watch_fd in readable)
                if watch is not None and watch_fd >= 0
                else instance.cid_written()
            )
            if seen:
                created_ns = time.perf_counter_ns()
        fds = list(open_fds) + ([watch_fd] if not created_ns and watch_fd >= 0 else [])
        wait = left if created_ns or watch_fd >= 0 else min(left, 0.002)
        readable, _, _ = select.select(fds, [], [], wait)
        if err_fd in readable:
            chunk = os.read(err_fd, 65536)
            if not chunk:
                open_fds.discard(err_fd)
            elif len(head) < _STDERR_HEAD_BYTES:
                head += chunk[: _STDERR_HEAD_BYTES - len(head)]
        if out_fd in readable:
            chunk = os.read(out_fd, 1 << 20)
            if not chunk:
                open_fds.discard(out_fd)
                continue
            if not first_ns:
                first_ns = time.perf_counter_ns()
            out += chunk
            if len(out) > cap:
                raise LaunchFailed(f"container {instance.name}: output exceeded {size_text(cap)} (killed)")
    try:
        code = proc.wait(max(0.01, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise LaunchTimeout(
            f"container {instance.name}: timed out after {timeout_s:g} s (stdout ended, the"
            " docker CLI did not exit)"
        ) from None
    exit_ns = time.perf_counter_ns()
    if code != 0:
        text = head.decode("utf-8", "replace").strip()
        line = text.splitlines()[0][:200] if text else ""
        why = {125: " (the docker CLI's own error)", 126: " (cannot be run)", 127: " (not found)"}
        raise LaunchFailed(
            f"container {instance.name}: exited with code {code}{why.get(code, '')}"
            + (f": {line}" if line else "")
        )
    return created_ns, first_ns or exit_ns, bytes(out), exit_ns


def _stop_soon(instance: Any) -> None:
    """A failed CLI launch's removal, waited for at most half a second (close sweeps the rest)."""
    worker = threading.Thread(target=_quiet_stop, args=(instance,), daemon=True)
    worker.start()
    worker.join(0.5)


def cli_launch(runtime: ContainerRuntime, workload: Workload, request: bytes, timeout_s: float) -> Launch:
    """``docker run --rm -i IMAGE`` with the request on its stdin: the cidfile splits the CLI's
    create from the rest, stdout is read to its end, the CLI's exit status is the container's."""
    deadline = time.monotonic() + timeout_s
    instance, t0 = _spawn_cli(runtime, workload)
    threading.Thread(target=_feed_stdin, args=(instance.proc, request), daemon=True).start()
    try:
        created_ns, first_ns, out, exit_ns = _cli_drain(
            instance, deadline, timeout_s, workload.max_response_bytes, 0
        )
    except BaseException:
        _stop_soon(instance)
        raise
    instance.learn_id()
    _quiet_stop(instance)
    if not created_ns or created_ns > first_ns:
        created_ns = first_ns  # answered before the file was seen: split at the byte
    phases = {"cli": created_ns - t0, "first_response": first_ns - created_ns}
    return Launch(
        StoppedInstance(runtime.name), Response(STATUS_OK, out), first_ns - t0, phases,
        exit_ns=exit_ns - t0,
    )  # fmt: skip


def answer(instance: ContainerInstance, payload: bytes, timeout_s: float) -> Response:
    """A waiting command container (a ramp's, a traffic run's prewarmed one) answers its one
    request by the convention: the request on stdin, stdout to its end, exit 0. It has exited
    then, and is removed; asking it again is a failure."""
    from edgelab.runtimes.container.strategies import CliInstance

    with instance._lock:
        if instance._stopped or instance._broken:
            raise LaunchFailed(f"container {instance.name}: a command answers once (already used or stopped)")
        deadline = time.monotonic() + timeout_s
        try:
            if isinstance(instance, CliInstance):
                threading.Thread(target=_feed_stdin, args=(instance.proc, payload), daemon=True).start()
                _, _, out, _ = _cli_drain(instance, deadline, timeout_s, instance.max_response_bytes, 1)
            else:
                _, out, _ = _finish(instance._owner, instance, payload, deadline, timeout_s, instance.max_response_bytes)
        except BaseException:
            instance._broken = instance._broken or "a failed request"
            _stop_soon(instance)
            raise
        instance._broken = "its one answer"
    _remove_after(instance)
    return Response(STATUS_OK, out)


def _quiet_stop(instance: Any) -> None:
    with contextlib.suppress(LaunchFailed):
        instance.stop()


def _cli_waiting(runtime: ContainerRuntime, workload: Workload, n: int, timeout_s: float) -> list[Launch]:
    """``docker run -i`` left with its stdin open: ``startup_ns`` runs to the engine saying the
    container runs (the CLI has created, attached and started it)."""
    launches: list[Launch] = []
    made: list[Any] = []
    try:
        for _ in range(n):
            deadline = time.monotonic() + timeout_s
            instance, t0 = _spawn_cli(runtime, workload)
            made.append(instance)
            created_ns = 0
            while True:
                if not created_ns and instance.cid_written():
                    created_ns = time.perf_counter_ns()
                    instance.learn_id()
                if created_ns:
                    pid = 0
                    with contextlib.suppress(Exception):
                        pid = instance.pid()
                    if pid:
                        break
                if instance.proc.poll() is not None:
                    raise LaunchFailed(f"container {instance.name}: {instance._exit_reason()}")
                if time.monotonic() > deadline:
                    raise LaunchTimeout(
                        f"container {instance.name}: not running after {timeout_s:g} s"
                    )
                time.sleep(0.002)
            running_ns = time.perf_counter_ns()
            phases = {"cli": created_ns - t0}
            launches.append(Launch(instance, Response(STATUS_OK, b""), running_ns - t0, phases, waiting=True))
        _settle_all(runtime, made)
    except BaseException:
        runtime.stop_many(made)
        raise
    return launches

