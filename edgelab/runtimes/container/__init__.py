"""The container runtime: each instance is a hardened Docker container of a ``FROM scratch`` image.

docker is imported inside functions only, so a missing SDK or engine degrades this runtime
and nothing else. Every Docker call has a deadline, also when the engine is frozen rather
than gone: the client's socket timeout bounds each request (docker-py's ``attach_socket``
sets none, so the attach is made here), and removals after a failure or at close wait a
bounded time, leaving the rest to the session watchdog, which waits for the engine. Every
container carries the session's labels, so ``remove_labelled`` (``edgelab clean``) finds
whatever a crash left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from edgelab.errors import (
    ArtifactError,
    EdgelabError,
    LaunchFailed,
    LaunchTimeout,
    RuntimeUnavailable,
)
from edgelab.protocol import Response, decode_response_header, encode_request
from edgelab.runtimes.base import Instance, Launch, Runtime
from edgelab.session import SESSION_LABEL, Session
from edgelab.workloads import DEFAULT_MAX_RESPONSE_BYTES, Workload, shipped_dir

#: The image template: in the package when installed from a wheel, at the top of a source tree.
DOCKERFILE = shipped_dir("images") / "Dockerfile"
IMAGE_REPOSITORY = "edgelab"
IMAGE_LABEL = "edgelab.image"
#: Timeout of ordinary Docker API calls (create, start, remove, inspect), in seconds.
API_TIMEOUT_S = 30.0
#: How long ``check`` waits for an engine to answer, in seconds.
CHECK_TIMEOUT_S = 2.5
PIDS_LIMIT = 64
CONTAINER_USER = "65534:65534"
REMOVE_WORKERS = 8
#: After a launch fails, wait at most this long for its container's removal (an engine that
#: does not answer must not hold the failure up); what is left goes at close.
FAILED_REMOVAL_WAIT_S = 0.5
#: ``close`` first asks the engine for a ping this long; a frozen engine is left to the watchdog.
CLOSE_PING_S = 2.0
#: How long a suspect engine's ping answer (see ``ContainerRuntime.__init__``) is relied on.
PING_KEEP_S = 5.0
#: /dev/mqueue stays mounted (writable, mode 1777) even with ``ipc_mode="none"``: a read-only
#: tmpfs hides it, and a zero RLIMIT_MSGQUEUE refuses queues made by mq_open directly.
MQUEUE_TMPFS = {"/dev/mqueue": "ro,nosuid,nodev,noexec,size=4k"}
#: runsc mounts a writable tmpfs of its own at /tmp when the spec has none (gVisor's "mountTmp"),
#: which a read-only root does not cover: a workload could write there (``edgelab probe``
#: showed write_tmp and file_left allowed). A read-only one of ours takes its place.
RUNSC_TMPFS = {"/tmp": "ro,nosuid,nodev,noexec,size=4k"}
_FIX = "start the Docker engine (sudo dockerd &, or .ci/start-docker) or set DOCKER_HOST"
_ENGINE_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}
_STDERR_TAIL_BYTES = 2048

Progress = Callable[[str], None]


# -- engine connection ------------------------------------------------------------------------
def _context_host() -> str | None:
    """The endpoint of the docker CLI's current context, when it is not the default one."""
    config_dir = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    name = os.environ.get("DOCKER_CONTEXT")
    if not name:
        try:
            name = json.loads((config_dir / "config.json").read_text()).get("currentContext")
        except (OSError, ValueError, AttributeError):
            return None
    if not name or name == "default":
        return None
    for meta in (config_dir / "contexts" / "meta").glob("*/meta.json"):
        try:
            data = json.loads(meta.read_text())
            if data.get("Name") == name:
                return data["Endpoints"]["docker"]["Host"] or None
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def api_timeout_s() -> float:
    """``API_TIMEOUT_S``, or ``$EDGELAB_DOCKER_TIMEOUT`` seconds; out of range is an error."""
    from edgelab.settings import docker_timeout_s

    return docker_timeout_s(API_TIMEOUT_S)


def connect(timeout_s: float | None = None) -> Any:
    """A docker client for DOCKER_HOST (with its TLS settings) or else the CLI's current context.

    Construction asks the engine its API version, so an absent engine fails here, within
    ``timeout_s``; the docker exception is left for the caller to word.
    """
    import docker

    if timeout_s is None:
        timeout_s = api_timeout_s()
    if not os.environ.get("DOCKER_HOST"):
        host = _context_host()
        if host:
            return docker.DockerClient(base_url=host, timeout=timeout_s)
    return docker.from_env(timeout=timeout_s)


def _one_line(exc: BaseException) -> str:
    """The root cause of a docker/requests failure as one short line."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    chain = []
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    for err in chain:
        if isinstance(err, PermissionError):
            return f"permission denied on the Docker socket ({err.filename or 'socket'})"
        if isinstance(err, FileNotFoundError):
            return f"no Docker socket at {err.filename or 'the configured path'}"
        if isinstance(err, ConnectionRefusedError):
            return "connection refused by the Docker endpoint"
    explanation = getattr(exc, "explanation", None)
    text = str(explanation or exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 200 else line[:197] + "..."


def engine_unavailable_reason(exc: BaseException) -> str:
    where = os.environ.get("DOCKER_HOST") or _context_host() or "the default socket"
    return f"no Docker engine answers at {where}: {_one_line(exc)}"


# -- images -------------------------------------------------------------------------------------
def engine_arch(client: Any) -> str:
    arch = str(client.info().get("Architecture", ""))
    if arch not in _ENGINE_ARCH:
        raise ArtifactError(f"container: engine architecture '{arch}' is not supported")
    return _ENGINE_ARCH[arch]


def image_tag(workload: Workload, source_hash: str) -> str:
    return f"{IMAGE_REPOSITORY}/{workload.name}:{source_hash[:16]}"


def build_image(
    client: Any, name: str, binary: Path, tag: str, progress: Progress | None = None
) -> str:
    """Build ``tag`` from ``images/Dockerfile`` and a static ``binary``; nothing is pulled."""
    import docker

    with tempfile.TemporaryDirectory(prefix="edgelab-image-") as context:
        shutil.copyfile(DOCKERFILE, Path(context) / "Dockerfile")
        target = Path(context) / "workload"
        shutil.copyfile(binary, target)
        target.chmod(0o755)
        if progress:
            progress(f"building image {tag}")
        # The low-level API, then a look-up by tag: docker-py's images.build takes any output
        # line ending in "sha256:<hex>" for the image id, and "Successfully tagged
        # edgelab/sha256:<hash>" (the sha256 workload) is such a line.
        try:
            for chunk in client.api.build(
                path=context,
                tag=tag,
                rm=True,
                forcerm=True,
                pull=False,
                labels={IMAGE_LABEL: "1"},
                buildargs={"WORKLOAD": name},
                decode=True,
                timeout=client.api.timeout,  # docker-py's default here is none: a frozen engine hung it
            ):
                if "error" in chunk:
                    message = str(chunk["error"]).strip().splitlines()
                    raise ArtifactError(
                        f"container: image build of {tag} failed: {message[0] if message else 'error'}"
                    )
            client.images.get(tag)
        except docker.errors.DockerException as exc:
            raise ArtifactError(
                f"container: image build of {tag} failed: {_one_line(exc)}"
            ) from None
    return tag


def ensure_image(client: Any, workload: Workload, progress: Progress | None = None) -> str:
    """The workload's image tag, built for the engine's architecture unless the engine has it."""
    import docker

    from edgelab import build

    tag = image_tag(workload, build.source_hash(workload))
    try:
        client.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    binary = build.ensure_native(workload, arch=engine_arch(client), progress=progress)
    return build_image(client, workload.name, Path(binary), tag, progress)


def image_size_bytes(client: Any, tag: str) -> int:
    """Size of the image as the engine reports it (its layers, uncompressed), in bytes."""
    return int(client.images.get(tag).attrs.get("Size", 0))


# -- cleanup --------------------------------------------------------------------------------------
def _remove_container(client: Any, container_id: str) -> bool:
    """Force-remove one container; False if it was already gone (or going)."""
    import docker

    try:
        client.api.remove_container(container_id, force=True)
        return True
    except docker.errors.NotFound:
        return False
    except docker.errors.APIError as exc:
        if exc.status_code == 409 and "in progress" in str(exc.explanation or ""):
            return False
        raise


def _remove_all(client: Any, container_ids: Iterable[str]) -> int:
    ids = list(container_ids)
    if not ids:
        return 0
    with ThreadPoolExecutor(max_workers=min(REMOVE_WORKERS, len(ids))) as pool:
        return sum(pool.map(lambda cid: _remove_container(client, cid), ids))


def remove_labelled(client: Any, session_id: str | None = None) -> int:
    """Remove every container labelled ``edgelab.session`` (or only one session's); the count.

    Everything (``edgelab clean``) takes every heartbeat volume too: a live session's
    watchdog makes a new one within HEARTBEAT_S, long before anyone judges it stale.
    """
    label = SESSION_LABEL if session_id is None else f"{SESSION_LABEL}={session_id}"
    found = client.api.containers(all=True, quiet=True, filters={"label": label})
    removed = _remove_all(client, (c["Id"] for c in found))
    if session_id is None:
        from edgelab.watchdog import _remove_volume, heartbeat_volumes

        for volume in heartbeat_volumes(client):
            _remove_volume(client, volume["Name"])
    return removed


# -- the attach stream ------------------------------------------------------------------------
class _WorkloadExited(Exception):
    """The attach stream ended: the container's process is gone."""


class _AttachStream:
    """stdin/stdout of a container through one hijacked attach connection.

    With tty=False the engine multiplexes stdout and stderr as frames of an 8-byte header
    (stream id, 3 zero bytes, u32 big-endian length) and a payload. Payloads are consumed
    byte by byte as they arrive, so the first stdout byte is seen as soon as it lands.
    """

    def __init__(self, handle: Any) -> None:
        self._handle = handle  # keeps the HTTP response (and so the connection) alive
        self._sock: socket.socket = getattr(handle, "_sock", handle)
        self._stdout = bytearray()
        self._stderr_tail = bytearray()
        #: The first bytes of stderr: a failed command's first line says why (its last may not).
        self._stderr_head = bytearray()
        self._header = bytearray()
        self._stream = 0
        self._remaining = 0
        self._buffer = bytearray(1 << 20)

    def send(self, data: bytes, deadline: float) -> None:
        self._sock.settimeout(_remaining_s(deadline))
        self._sock.sendall(data)

    def read_stdout(self, n: int, deadline: float) -> bytes:
        while len(self._stdout) < n:
            self._pump(deadline)
        out = bytes(self._stdout[:n])
        del self._stdout[:n]
        return out

    def wait_stdout(self, deadline: float) -> None:
        while not self._stdout:
            self._pump(deadline)

    def stderr_tail(self) -> str:
        text = self._stderr_tail.decode("utf-8", "replace").strip()
        return text.splitlines()[-1] if text else ""

    def stderr_first_line(self) -> str:
        text = self._stderr_head.decode("utf-8", "replace").strip()
        return text.splitlines()[0][:200] if text else ""

    def run_command(self, request: bytes, deadline: float, cap: int) -> tuple[int, bytes]:
        """The command convention over this attach: write ``request`` to the container's
        stdin and half-close it (with StdinOnce the engine then closes the process's stdin),
        while reading stdout to the end of the stream (the process exited). Sending and
        reading interleave (one select loop), so a command that writes before it has read all
        its input cannot deadlock against the lab. Returns (perf_counter_ns of the first
        stdout byte, or 0 if it wrote none; the whole stdout). Raises TimeoutError past
        ``deadline`` and _ResponseTooLarge once stdout passes ``cap`` bytes."""
        import select

        sock = self._sock
        sock.setblocking(False)
        view = memoryview(request)
        sent = 0
        writing = True
        first_ns = 0
        if not request:
            sock.shutdown(socket.SHUT_WR)
            writing = False
        while True:
            left = _remaining_s(deadline)
            readable, writable, _ = select.select([sock], [sock] if writing else [], [], left)
            if not readable and not writable:
                raise TimeoutError("deadline passed")
            if writable:
                try:
                    sent += sock.send(view[sent : sent + (1 << 16)])
                except BlockingIOError:
                    pass
                except (BrokenPipeError, ConnectionResetError):
                    writing = False  # it stopped reading: what it wrote still counts
                if writing and sent == len(view):
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_WR)
                    writing = False
            if readable:
                try:
                    got = sock.recv_into(self._buffer)
                except BlockingIOError:
                    continue
                if not got:
                    return first_ns, bytes(self._stdout)
                had = len(self._stdout)
                self._feed(memoryview(self._buffer)[:got])
                if not first_ns and len(self._stdout) > had:
                    first_ns = time.perf_counter_ns()
                if len(self._stdout) > cap:
                    raise _ResponseTooLarge

    def _pump(self, deadline: float) -> None:
        self._sock.settimeout(_remaining_s(deadline))
        got = self._sock.recv_into(self._buffer)
        if not got:
            raise _WorkloadExited
        self._feed(memoryview(self._buffer)[:got])

    def _feed(self, data: memoryview) -> None:
        i = 0
        while i < len(data):
            if self._remaining == 0:
                take = min(8 - len(self._header), len(data) - i)
                self._header += data[i : i + take]
                i += take
                if len(self._header) == 8:
                    self._stream, self._remaining = struct.unpack(">BxxxL", self._header)
                    self._header.clear()
                continue
            take = min(self._remaining, len(data) - i)
            if self._stream == 2:
                if len(self._stderr_head) < _STDERR_TAIL_BYTES:
                    self._stderr_head += data[i : i + min(take, _STDERR_TAIL_BYTES - len(self._stderr_head))]
                self._stderr_tail += data[i : i + take]
                del self._stderr_tail[:-_STDERR_TAIL_BYTES]
            else:
                self._stdout += data[i : i + take]
            self._remaining -= take
            i += take

    def close(self) -> None:
        for closer in (self._sock, self._handle):
            try:
                closer.close()
            except OSError:
                pass


def attach_socket(client: Any, container_id: str, timeout_s: float) -> Any:
    """docker-py's ``APIClient.attach_socket`` with a timeout: it posts with none, so a frozen
    engine held the lab there for ever (and SIGTERM with it). Same request otherwise."""
    api = client.api
    params = {"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
    response = api.post(
        api._url("/containers/{0}/attach", container_id),
        None,
        params=api._attach_params(params),
        stream=True,
        headers={"Connection": "Upgrade", "Upgrade": "tcp"},
        timeout=timeout_s,
    )
    return api._get_raw_response_socket(response)


def size_text(n: int) -> str:
    """16 MiB, 512 KiB, 1000 bytes: a response cap as people write it."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} bytes"


def container_name(workload: Workload, session_id: str) -> str:
    """``edgelab-<workload>-<session>-<random>``, fit for the engine: a function's workload is
    named after its image ("myapp:latest", "ghcr.io/x/y"), whose ':' and '/' a container name
    may not hold, so anything outside [A-Za-z0-9_.-] becomes '-'."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "-", workload.name)[:64] or "function"
    return f"edgelab-{safe}-{session_id}-{secrets.token_hex(3)}"


def _remaining_s(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("deadline passed")
    return left


# -- instances and the runtime ----------------------------------------------------------------
class _ResponseTooLarge(Exception):
    """The workload announced a response larger than its cap."""


class ContainerInstance(Instance):
    """One resident container, answering requests over its attach connection."""

    runtime = "container"

    def __init__(
        self,
        owner: ContainerRuntime,
        container_id: str,
        name: str,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self._owner = owner
        self.runtime = getattr(owner, "name", "container")  # the rung: container:paused ...
        self.container_id = container_id
        self.name = name
        self.max_response_bytes = max_response_bytes
        self.stream: _AttachStream | None = None
        self._lock = threading.Lock()  # one exchange at a time on the stream
        self._state_lock = threading.Lock()
        self._remove_lock = threading.Lock()  # one removal at a time; retried until it works
        self._stopped = False
        self._removed = False
        self._broken = ""
        self._pid = 0
        self._memory_files: tuple[Path, Path, str] | None = None
        #: "command" for a function's image (``edgelab.runtimes.container.command``): its one
        #: request goes to stdin, its answer is stdout to the end; "abi" for the built-ins.
        self.convention = "abi"

    def request(self, payload: bytes, timeout_s: float) -> Response:
        if self.convention == "command":
            from edgelab.runtimes.container import command

            return command.answer(self, payload, timeout_s)
        with self._lock:
            if self._stopped:
                raise LaunchFailed(f"container {self.name}: already stopped")
            if self._broken:
                raise LaunchFailed(f"container {self.name}: unusable after {self._broken}")
            deadline = time.monotonic() + timeout_s
            try:
                return self._exchange(encode_request(payload), deadline, timeout_s, None)
            except LaunchFailed:
                if self._broken == "a response over its cap":
                    self.stop_within(FAILED_REMOVAL_WAIT_S)
                raise

    def _exchange(
        self, frame: bytes, deadline: float, timeout_s: float, first_byte: list[int] | None
    ) -> Response:
        """Write one frame and read one response; any failure leaves the stream unusable.

        The announced length is checked against the cap before a byte of the body is read,
        and only as many bytes as the answer needs are read (at most 1 MiB at a time), so a
        flood costs the lab no memory: the container is removed instead.
        """
        assert self.stream is not None
        try:
            self.stream.send(frame, deadline)
            self.stream.wait_stdout(deadline)
            if first_byte is not None:
                first_byte.append(time.perf_counter_ns())
            length, status = decode_response_header(self.stream.read_stdout(5, deadline))
            if length > self.max_response_bytes:
                raise _ResponseTooLarge
            body = self.stream.read_stdout(length, deadline)
        except TimeoutError:
            self._broken = "a timeout"
            raise LaunchTimeout(f"container {self.name}: timed out after {timeout_s:g} s") from None
        except _ResponseTooLarge:
            self._broken = "a response over its cap"
            raise LaunchFailed(
                f"container {self.name}: response exceeded {size_text(self.max_response_bytes)}"
            ) from None
        except _WorkloadExited:
            self._broken = "its process exited"
            raise LaunchFailed(f"container {self.name}: {self._exit_reason()}") from None
        except OSError as exc:
            self._broken = "a broken connection"
            raise LaunchFailed(f"container {self.name}: attach connection failed: {exc}") from None
        return Response(status, body)

    def _exit_reason(self) -> str:
        """Why the process ended: "out of memory (OOM-killed)", "exited with code 139 (SIGSEGV)"."""
        api = self._owner.client.api
        how = "workload exited (code ?)"
        with contextlib.suppress(Exception):  # the reason line must not fail itself
            code = int(api.wait(self.container_id, timeout=3)["StatusCode"])
            how = f"exited with code {code}"
            if code > 128:
                with contextlib.suppress(ValueError):
                    how += f" ({signal.Signals(code - 128).name})"
            if api.inspect_container(self.container_id)["State"].get("OOMKilled"):
                how = f"out of memory (OOM-killed; {how})"
            elif code == 2 and getattr(self._owner, "oci_runtime", None) == "runsc":
                how += (
                    f" (under runsc, the code its sandbox exits with when the pids limit ({PIDS_LIMIT}),"
                    " which also counts the sandbox's own threads, stops it)"
                )
        tail = self.stream.stderr_tail() if self.stream else ""
        return f"{how} before answering" + (f": {tail}" if tail else "")

    def pid(self) -> int:
        """Host pid of the container's init process (0 when it is not running).

        Asked of the engine once: a container's init does not change while it runs.
        """
        if self._pid and not _in_container(self._pid, self.container_id):
            self._pid = 0  # it ended (OOM-killed, say): its pid may be someone else's now
        if not self._pid:
            state = self._owner.client.api.inspect_container(self.container_id)["State"]
            self._pid = int(state.get("Pid") or 0) if state.get("Running") else 0
        return self._pid

    def memory_files(self) -> tuple[Path, Path, str] | None:
        """(usage file, stat file, the stat key to subtract) of this container's memory cgroup."""
        if self._memory_files is None:
            pid = self.pid()
            self._memory_files = memory_cgroup_files(pid) if pid else None
        return self._memory_files

    def stop(self) -> None:
        """Remove the container. Idempotent; a removal that fails (the engine does not answer)
        raises and may be tried again (``close``); the instance stays tracked until it works."""
        with self._state_lock:  # not self._lock: stop must not wait for a request in flight
            if self._removed:
                return
            self._stopped = True
        if self.stream is not None:
            self.stream.close()
        with self._remove_lock:
            if self._removed:
                return
            if not self._owner._engine_ok():
                raise LaunchFailed(
                    f"container {self.name}: not removed: the engine does not answer (the"
                    " session watchdog removes it when it does)"
                )
            try:
                _remove_container(self._owner.client, self.container_id)
            except Exception as exc:  # noqa: BLE001 - reworded as one line
                if _is_timeout(exc):
                    self._owner._suspect_engine()
                raise LaunchFailed(
                    f"container {self.name}: removal failed: {_one_line(exc)}"
                ) from None
            self._removed = True
        self._owner._untrack(self)

    def stop_within(self, wait_s: float) -> bool:
        """``stop`` in the background, waiting at most ``wait_s``: True if it is removed."""
        worker = threading.Thread(target=_quietly_stop, args=(self,), daemon=True)
        worker.start()
        worker.join(wait_s)
        return self._removed


def _in_container(pid: int, container_id: str) -> bool:
    """Is ``pid`` still in that container's cgroup (its path names the container id)?"""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return container_id in f.read()
    except OSError:
        return False


def _quietly_stop(instance: Instance) -> None:
    with contextlib.suppress(LaunchFailed):
        instance.stop()


# -- memory as ``docker stats`` reads it ------------------------------------------------------
def _cgroup_mounts() -> tuple[Path | None, Path | None]:
    """(cgroup v1 memory hierarchy, cgroup v2 root) as mounted here."""
    v1 = v2 = None
    with contextlib.suppress(OSError), open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            try:
                fstype = fields[fields.index("-") + 1]
            except (ValueError, IndexError):
                continue
            if fstype == "cgroup" and "memory" in fields[-1].split(","):
                v1 = Path(fields[4])
            elif fstype == "cgroup2":
                v2 = Path(fields[4])
    return v1, v2


def memory_cgroup_files(pid: int) -> tuple[Path, Path, str] | None:
    """The memory cgroup files of process ``pid``: (usage, stat, key to subtract), or None.

    cgroup v1: ``memory.usage_in_bytes`` (which charges kernel memory too: slab, stacks,
    page tables, socket buffers) minus ``total_inactive_file``; cgroup v2: ``memory.current``
    minus ``inactive_file``: what docker stats (CLI 20.10+) shows as MEM USAGE.
    """
    v1, v2 = _cgroup_mounts()
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if v1 is not None and "memory" in controllers.split(","):
            base = v1 / path.lstrip("/")
            return base / "memory.usage_in_bytes", base / "memory.stat", "total_inactive_file"
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if v2 is not None and controllers == "":
            base = v2 / path.lstrip("/")
            return base / "memory.current", base / "memory.stat", "inactive_file"
    return None


def cgroup_memory_bytes(files: tuple[Path, Path, str]) -> int | None:
    """Usage minus inactive file cache, as docker stats computes it; None if unreadable."""
    usage_file, stat_file, key = files
    try:
        usage = int(usage_file.read_text())
        inactive = 0
        with open(stat_file) as f:
            for line in f:
                name, _, value = line.partition(" ")
                if name == key:
                    inactive = int(value)
                    break
    except (OSError, ValueError):
        return None
    return usage - inactive if inactive < usage else usage


class ContainerRuntime(Runtime):
    """Instances are hardened containers; startup is create + start + first response.

    Phases: ``create`` is the create call plus attaching stdin/stdout (before start, so no
    output is lost); ``start`` is the start call (runc sets the container up and execs the
    binary); ``first_response`` runs from there to the first byte of the first response.

    Under runsc the same host config means a little less or more (``edgelab probe`` and the
    hostile workloads show it): runsc mounts a writable /tmp of its own (``RUNSC_TMPFS``
    replaces it); the pids limit counts the sandbox's own host threads (~40 at idle), so a
    workload that forks a few processes ends the sandbox (exit code 2) instead of meeting
    EAGAIN; the network must be off by runsc's own ``--network=none`` (daemon.json).

    ``strategy`` picks the rung (``strategies.STRATEGIES``): ``sdk`` (the above), ``cli``
    (``docker run`` through the docker CLI), ``created`` (created ahead, started on request),
    ``paused`` (started and paused ahead, unpaused on request). ``oci_runtime`` names the
    engine's OCI runtime (``runsc``, ``crun``; None: the engine's default, runc). Every rung
    runs the same image with the same hardening.

    A person's own image (a function workload, ``convention == "command"``) runs on every rung
    by the command convention instead (``edgelab.runtimes.container.command``): its own
    entrypoint, the request on stdin, stdout to its end, the exit status; never pulled.
    """

    name = "container"
    phase_names = ("create", "start", "first_response")
    memory_metric = "PSS of the container's processes + its containerd shim"
    startup_includes = "docker create + start + first response (image prebuilt; excludes removal)"

    def __init__(
        self,
        session: Session,
        client: Any = None,
        strategy: str = "sdk",
        oci_runtime: str | None = None,
    ) -> None:
        from edgelab.runtimes.container import strategies

        super().__init__(session)
        if strategy not in strategies.STRATEGIES:
            raise ValueError(f"container strategy {strategy!r} is not one of {strategies.STRATEGIES}")
        self.strategy = strategy
        self.oci_runtime = oci_runtime or None
        self.phase_names = strategies.uses(strategy)["phase_names"]  # type: ignore[misc]
        includes = strategies.uses(strategy)["startup_includes"]
        if self.oci_runtime:
            includes = f"{includes}; under the OCI runtime {self.oci_runtime}"
        self.startup_includes = includes  # type: ignore[misc]
        self._abi_includes = includes  # what a built-in's figures include (a function's differ)
        self._pool = (
            strategies.ReadyPool(self, paused=strategy == "paused")
            if strategy in ("created", "paused")
            else None
        )
        self._docker_cli: str | None = None
        #: Names of containers asked for but not tracked yet: a signal between the engine's
        #: create and ``_track`` would otherwise leave one that close() does not know of.
        self._unclaimed: set[str] = set()
        self._cid_watch_dir: Any = None
        self._client = client
        self._tags: dict[str, str] = {}
        self.image_sizes_bytes: dict[str, int] = {}
        #: A function's image (issue 13) per workload: ref, id, size_bytes, user, runs.
        self._function_images: dict[str, dict[str, Any]] = {}
        #: The workload last prepared, if a function: ``preparation`` describes its image.
        self._prepared_function: str | None = None
        # Set when an engine call timed out or was cut short: removals then ask for a ping
        # first (one at a time, the answer kept PING_KEEP_S), so that stopping a hundred
        # containers of a frozen engine takes one ping, not a hundred timeouts.
        self._suspect = False
        self._ping_lock = threading.Lock()
        self._ping_at = 0.0
        self._ping_ok = True

    @property
    def client(self) -> Any:
        if self._client is None:
            try:
                self._client = connect()
            except Exception as exc:  # noqa: BLE001 - any failure means: no engine
                raise RuntimeUnavailable(self.name, engine_unavailable_reason(exc), _FIX) from None
        return self._client

    # -- availability -----------------------------------------------------------------------
    def check(self) -> None:
        try:
            client = self._client or connect(CHECK_TIMEOUT_S)
            client.ping()
        except Exception as exc:  # noqa: BLE001 - any failure means: no engine
            raise RuntimeUnavailable(self.name, engine_unavailable_reason(exc), _FIX) from None
        try:
            if self.oci_runtime:
                self._check_oci_runtime(client)
            if self.strategy == "cli":
                self._check_cli()
        finally:
            if self._client is None:
                client.close()

    def _check_oci_runtime(self, client: Any) -> None:
        """The engine must list the OCI runtime (``docker info``, cached), and crun must not
        be facing a hybrid cgroup layout it refuses (see ``engine``)."""
        from edgelab.runtimes.container import engine

        assert self.oci_runtime is not None
        try:
            registered = engine.oci_runtimes(client)
        except Exception as exc:  # noqa: BLE001 - any failure means: no engine
            raise RuntimeUnavailable(self.name, engine_unavailable_reason(exc), _FIX) from None
        if self.oci_runtime not in registered:
            listed = ", ".join(sorted(n for n in registered if not n.startswith("io.containerd")))
            raise RuntimeUnavailable(
                self.name,
                f"the Docker engine has no OCI runtime '{self.oci_runtime}' registered"
                f" (it lists {listed or 'none'})",
                engine.registration_fix(self.oci_runtime),
            )
        if engine.local_engine(client):
            problem = engine.hybrid_cgroup_problem(self.oci_runtime)
            if problem is not None:
                raise RuntimeUnavailable(self.name, *problem)

    def _check_cli(self) -> None:
        from edgelab.runtimes.container import strategies

        self._docker_cli = strategies.docker_cli()
        if self._docker_cli is None:
            raise RuntimeUnavailable(
                self.name,
                "no docker CLI on PATH",
                "install the docker CLI (Debian: apt-get install docker.io; or docker-ce-cli)",
            )

    def versions(self) -> dict[str, str]:
        version = self.client.version()
        found = {
            "docker_engine": str(version.get("Version", "?")),
            "docker_api": str(version.get("ApiVersion", "?")),
        }
        if self.oci_runtime:
            from edgelab.runtimes.container import engine

            # keyed by the OCI runtime's name: a run's metadata merges every rung's versions
            found[self.oci_runtime] = "registered"
            with contextlib.suppress(Exception):  # a version is a courtesy, never a failure
                path = engine.oci_runtime_paths(self.client).get(self.oci_runtime, "")
                if path and engine.local_engine(self.client):
                    version = engine.oci_runtime_version(path)
                    found[self.oci_runtime] = version.removeprefix(f"{self.oci_runtime} version ")
        return found

    def doctor_details(self) -> dict[str, str]:
        """How this rung starts a container here (beside the engine's versions)."""
        details: dict[str, str] = {}
        if self.strategy == "cli":
            details["docker_cli"] = self._docker_cli or "?"
        if self._pool is not None:
            details["ready_pool"] = (
                "1 container per workload, "
                + ("created, started, paused in its first read" if self._pool.paused else "created and attached")
                + "; refilled outside the timing (a burst: after each removal)"
            )
        if self.oci_runtime == "runsc":
            details["gvisor"] = "runsc as the engine registered it; /tmp a read-only tmpfs of the lab's"
        return details

    def preparation(self) -> dict[str, str]:
        """A function's image (size and id, beside the artifact) and what the ready pool holds
        while idle (the rung's cost of being ready), measured."""
        found: dict[str, str] = {}
        facts = self._function_images.get(self._prepared_function or "")
        if facts is not None:
            size = facts["size_bytes"]
            short = facts["id"].removeprefix("sha256:")[:12]
            found["image"] = (
                f"{facts['ref']}, {size:,} bytes ({size / 2**20:.2f} MiB, its uncompressed"
                f" layers as the engine reports them), id {short}"
            )
        if self._pool is None:
            return found
        ready = self._pool.ready()
        if not ready:
            return found
        pss = self.pss_bytes(ready)
        host = self.host_memory_bytes(ready)
        what = "paused container" if self._pool.paused else "created container (no process yet)"
        line = f"{len(ready)} {what}: PSS {pss / 2**20:.2f} MiB"
        if host is not None:
            line += f", cgroup memory {host / 2**10:.0f} KiB"
        return {**found, "ready pool": line}

    # -- lifecycle --------------------------------------------------------------------------
    def prepare(self, workload: Workload, progress: Progress | None = None) -> None:
        if workload.convention == "command":
            self._prepare_function(workload)
            return
        self._prepared_function = None
        self.startup_includes = self._abi_includes  # type: ignore[misc]
        tag = ensure_image(self.client, workload, progress)
        self.use_image(workload, tag)
        if self._pool is not None:
            self._pool.fill(workload)  # the ahead-work: untimed, before any launch

    def _prepare_function(self, workload: Workload) -> None:
        """A person's own image: found in the engine by its name or id (never pulled), its id
        and size kept for ``preparation``; launches use the id, so a re-tag mid-run changes
        nothing measured. A pooled rung makes its ready container now (untimed)."""
        from edgelab.runtimes.container import command

        facts = command.image_facts(self.client, command.image_of(workload))
        self._function_images[workload.name] = facts
        self._prepared_function = workload.name
        self._tags[workload.name] = facts["id"]
        self.image_sizes_bytes[workload.name] = facts["size_bytes"]
        self.startup_includes = command.startup_includes(self.strategy, self.oci_runtime)  # type: ignore[misc]
        if self._pool is not None:
            self._pool.fill(workload)

    def function_image(self, workload: Workload) -> dict[str, Any]:
        """The facts ``prepare`` found about a function's image (see ``command.image_facts``)."""
        if workload.name not in self._function_images:
            self.prepare(workload)
        return self._function_images[workload.name]

    def use_image(self, workload: Workload, tag: str) -> None:
        """Launch ``workload`` from ``tag`` (an image built elsewhere, e.g. by a test)."""
        self._tags[workload.name] = tag
        try:
            self.image_sizes_bytes[workload.name] = image_size_bytes(self.client, tag)
        except Exception:  # noqa: BLE001 - a missing image shows up at launch, as one line
            self.image_sizes_bytes.pop(workload.name, None)

    def image_tag(self, workload: Workload) -> str:
        """The tag ``launch`` uses for ``workload`` (after ``prepare`` or ``use_image``)."""
        return self._tags[workload.name]

    @staticmethod
    def host_config(
        client: Any, memory_limit_bytes: int, oci_runtime: str | None = None
    ) -> dict[str, Any]:
        """The hardening every instance gets (benchmarks/container_raw.py uses it too);
        ``oci_runtime`` picks the engine's OCI runtime (None: its default)."""
        return client.api.create_host_config(
            runtime=oci_runtime,
            network_mode="none",
            read_only=True,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            pids_limit=PIDS_LIMIT,
            mem_limit=memory_limit_bytes,
            memswap_limit=memory_limit_bytes,  # equal: no swap, so a bomb is OOM-killed
            # Nothing writable: no /dev/shm at all, /dev/mqueue hidden, no message queues.
            ipc_mode="none",
            tmpfs={**MQUEUE_TMPFS, **RUNSC_TMPFS} if oci_runtime == "runsc" else MQUEUE_TMPFS,
            ulimits=[{"Name": "msgqueue", "Soft": 0, "Hard": 0}],
            auto_remove=False,
            # stdout is read through attach; logging it to disk as well would only cost.
            log_config={"type": "none"},
        )

    def _create(self, workload: Workload, tag: str) -> tuple[str, str]:
        """Create (not start) one hardened container; (id, name). One API call, no inspect."""
        api = self.client.api
        name = container_name(workload, self.session.id)
        host_config = self.host_config(self.client, workload.memory_limit_bytes, self.oci_runtime)
        self._unclaimed.add(name)  # claimed by _track; close() removes what never was
        if workload.convention == "command":
            # A function's image: its own entrypoint, its user rule and the function's env;
            # detach=False with stdin_open makes docker-py set StdinOnce (and the Attach*
            # flags), so half-closing the attach closes the process's stdin.
            from edgelab.runtimes.container import command

            facts = self.function_image(workload)
            created = api.create_container(
                tag,
                name=name,
                labels=dict(self.session.labels),
                user=command.container_user(facts["user"]),
                environment=command.env_list(workload) or None,
                stdin_open=True,
                tty=False,
                detach=False,
                host_config=host_config,
            )
            return created["Id"], name
        created = api.create_container(
            tag,
            name=name,
            labels=dict(self.session.labels),
            user=CONTAINER_USER,
            stdin_open=True,
            tty=False,
            detach=True,
            host_config=host_config,
        )
        return created["Id"], name

    def _will_create(self) -> None:
        """Before anything carries the session's labels: its lock, and the watchdog told to
        sweep containers by label when the lab dies (the lab tells it only for ``container``)."""
        try:
            self.session.hold()
        except EdgelabError as exc:
            raise LaunchFailed(f"{self.name}: {exc}") from None
        if self.watcher is not None:
            self.watcher.uses_containers()
            self.watcher.creates_containers()

    def _create_attached(self, workload: Workload) -> ContainerInstance:
        """A created (not started) container with its attach stream, tracked (the ahead-work
        of the pooled rungs)."""
        self._will_create()
        container_id, name = self._create(workload, self._tags[workload.name])
        instance = ContainerInstance(self, container_id, name, workload.max_response_bytes)
        instance.convention = workload.convention
        self._track(instance)
        try:
            client = self.client
            instance.stream = _AttachStream(attach_socket(client, container_id, client.api.timeout))
        except BaseException:
            instance.stop_within(FAILED_REMOVAL_WAIT_S)
            raise
        return instance

    def _track(self, instance: Instance) -> None:
        super()._track(instance)
        self._unclaimed.discard(getattr(instance, "name", ""))

    def _remove_unclaimed(self) -> None:
        """Remove, by name, containers whose create was asked for but never tracked (cut off
        by ctrl+c or SIGTERM mid-call); one that never came into being is a 404."""
        names, self._unclaimed = self._unclaimed, set()
        for name in names:
            try:
                self.client.api.remove_container(name, force=True)
            except Exception:  # noqa: BLE001 - gone, never made, or no engine: the watchdog sweeps
                pass

    def _cid_watch(self) -> Any:
        """The watched directory of the CLI rung's --cidfiles (made at its first launch)."""
        from edgelab.runtimes.container import strategies

        if self._cid_watch_dir is None:
            self._cid_watch_dir = strategies.CidWatch()
        return self._cid_watch_dir

    def cold_starts(
        self, workload: Workload, request: bytes, n: int, timeout_s: float
    ) -> list[Launch | LaunchFailed]:
        """The base's loop, except for the pooled rungs, which refill after each removal."""
        from edgelab.runtimes.container import strategies

        if workload.convention == "command":
            from edgelab.runtimes.container import command

            if workload.name not in self._tags:
                self.prepare(workload)
            return command.cold_starts(self, workload, request, n, timeout_s)
        if self._pool is None:
            return super().cold_starts(workload, request, n, timeout_s)
        if workload.name not in self._tags:
            self.prepare(workload)
        self._will_create()
        return strategies.pooled_cold_starts(self, self._pool, workload, request, n, timeout_s)

    def _launch_failure(self, exc: BaseException, step: str) -> None:
        """Raise ``exc`` of a failed launch as one line (a LaunchFailed), or as it is when it
        is one already or not an Exception (KeyboardInterrupt ...)."""
        import docker

        if step != "first request" and (_is_timeout(exc) or not isinstance(exc, Exception)):
            self._suspect_engine()  # an engine call timed out or was cut short
        if isinstance(exc, LaunchFailed) or not isinstance(exc, Exception):
            raise exc
        if isinstance(exc, docker.errors.ImageNotFound):
            from edgelab.runtimes.container import command

            facts = self._function_images.get(self._prepared_function or "")
            if facts is not None:  # a function's image, gone since prepare
                raise LaunchFailed(f"{self.name}: {command.missing_image_line(facts['ref'])}") from None
            raise LaunchFailed(f"{self.name}: image not found (prepare the workload)") from None
        if _is_timeout(exc):
            raise LaunchTimeout(
                f"{self.name}: docker {step} timed out (no answer from the engine in"
                f" {self.client.api.timeout:g} s)"
            ) from None
        raise LaunchFailed(f"{self.name}: docker {step} failed: {_one_line(exc)}") from None

    def launch(self, workload: Workload, request: bytes, timeout_s: float) -> Launch:
        """One launch by this runtime's strategy, timed from this call to the first response
        byte. Each engine call is bounded by the client's timeout and the first response by
        ``timeout_s``."""
        from edgelab.runtimes.container import strategies

        if workload.name not in self._tags:
            self.prepare(workload)
        if workload.convention == "command":
            from edgelab.runtimes.container import command

            if self._pool is not None:
                self._will_create()
                return command.pooled_launch(self, self._pool, workload, request, timeout_s)
            if self.strategy == "cli":
                return command.cli_launch(self, workload, request, timeout_s)
            return command.sdk_launch(self, workload, request, timeout_s)
        if self._pool is not None:
            self._will_create()
            return strategies.pooled_launch(self, self._pool, workload, request, timeout_s)
        if self.strategy == "cli":
            if self._docker_cli is None:
                self._check_cli()
            assert self._docker_cli is not None
            self._will_create()
            return strategies.cli_launch(
                self, self._docker_cli, workload, self._tags[workload.name], request, timeout_s
            )
        return self._sdk_launch(workload, request, timeout_s)

    def _sdk_launch(self, workload: Workload, request: bytes, timeout_s: float) -> Launch:
        """Create, attach, start, first response; a failed launch waits at most
        FAILED_REMOVAL_WAIT_S for its container's removal (the rest goes at close)."""
        import docker

        tag = self._tags[workload.name]
        frame = encode_request(request)
        client = self.client
        self._will_create()
        instance: ContainerInstance | None = None
        step = "create"
        deadline = time.monotonic() + timeout_s
        try:
            t0 = time.perf_counter_ns()
            container_id, name = self._create(workload, tag)
            instance = ContainerInstance(self, container_id, name, workload.max_response_bytes)
            self._track(instance)
            step = "attach"
            instance.stream = _AttachStream(attach_socket(client, container_id, client.api.timeout))
            t1 = time.perf_counter_ns()
            step = "start"
            client.api.start(container_id)
            t2 = time.perf_counter_ns()
            step = "first request"
            first_byte: list[int] = []
            with instance._lock:
                response = instance._exchange(frame, deadline, timeout_s, first_byte)
        except BaseException as exc:
            if step != "first request" and (_is_timeout(exc) or not isinstance(exc, Exception)):
                self._suspect_engine()  # an engine call timed out or was cut short
            if instance is not None:
                instance.stop_within(FAILED_REMOVAL_WAIT_S)
            if isinstance(exc, LaunchFailed) or not isinstance(exc, Exception):
                raise
            if isinstance(exc, docker.errors.ImageNotFound):
                raise LaunchFailed(
                    f"{self.name}: image {tag} not found (prepare the workload)"
                ) from None
            if _is_timeout(exc):
                raise LaunchTimeout(
                    f"{self.name}: docker {step} timed out (no answer from the engine in"
                    f" {client.api.timeout:g} s)"
                ) from None
            raise LaunchFailed(f"{self.name}: docker {step} failed: {_one_line(exc)}") from None
        phases = {"create": t1 - t0, "start": t2 - t1, "first_response": first_byte[0] - t2}
        return Launch(instance, response, first_byte[0] - t0, phases)

    def launch_many(
        self, workload: Workload, request: bytes, n: int, timeout_s: float
    ) -> list[Launch]:
        """A function's image: ``n`` containers left waiting for their request (see
        ``command.launch_waiting``); the built-ins: the base's resident launches."""
        if workload.convention != "command":
            return super().launch_many(workload, request, n, timeout_s)
        from edgelab.runtimes.container import command

        if workload.name not in self._tags:
            self.prepare(workload)
        return command.launch_waiting(self, workload, n, timeout_s)

    def stop_many(self, instances: Sequence[Instance]) -> None:
        """Stop many containers several at a time: each removal is a fraction of a second of
        the engine's work, mostly waiting (12 one by one took 2.0 s here, 0.8 s eight at a
        time). With no thread to spare (a ramp that hit the pids limit), one by one."""
        if len(instances) < 4:
            super().stop_many(instances)
            return
        try:
            with ThreadPoolExecutor(max_workers=8, thread_name_prefix="stop") as pool:
                list(pool.map(_stop_one, instances))
        except RuntimeError:
            super().stop_many(instances)  # stop is idempotent: those reached are cheap

    def pss_bytes(self, instances: Sequence[Instance]) -> int:
        """Summed PSS of each container's process tree and its containerd shim (with all the
        shim started: under runsc, the sandbox's gofer too), in bytes.

        dockerd's and containerd's own growth per container is not included; the lab
        cross-checks the total against MemAvailable.
        """
        import psutil

        pids: set[int] = set()
        for instance in instances:
            if not isinstance(instance, ContainerInstance):
                continue
            pid = 0
            with contextlib.suppress(Exception):  # a container that is gone holds no memory
                pid = instance.pid()
            if not pid:
                continue
            try:
                init = psutil.Process(pid)
                pids.add(pid)
                pids.update(child.pid for child in init.children(recursive=True))
                shim = init.parent()
                if shim is not None and shim.name().startswith("containerd-shim"):
                    pids.add(shim.pid)
                    # runsc's sandbox has a sibling under the shim (its gofer, ~12 MiB PSS):
                    # the shim serves this container alone, so all it started is the container's
                    pids.update(child.pid for child in shim.children(recursive=True))
            except psutil.Error:
                continue
        total = 0
        for pid in pids:
            try:
                total += psutil.Process(pid).memory_full_info().pss
            except psutil.Error:
                continue
        return total

    def host_memory_bytes(self, instances: Sequence[Instance]) -> int | None:
        """Summed cgroup memory of the containers, kernel memory included, as docker stats
        shows it (usage minus inactive file cache), read from the cgroup files (no API call
        per container after the first). The containerd shims live outside these cgroups
        (PSS counts them). None when the engine's cgroups are not visible here (a remote
        engine): the lab then has MemAvailable alone."""
        total = 0
        seen = 0
        for instance in instances:
            if not isinstance(instance, ContainerInstance):
                continue
            files = None
            with contextlib.suppress(Exception):  # a container that is gone holds no memory
                files = instance.memory_files()
            if files is None:
                continue
            value = cgroup_memory_bytes(files)
            if value is not None:
                total += value
                seen += 1
        if instances and not seen:
            return None
        return total

    def _suspect_engine(self) -> None:
        self._suspect = True

    def _engine_ok(self) -> bool:
        """False when the engine is suspect and does not answer a ping (see ``__init__``)."""
        if not self._suspect:
            return True
        with self._ping_lock:
            if time.monotonic() - self._ping_at > PING_KEEP_S:
                self._ping_ok = self._engine_answers(CLOSE_PING_S)
                self._ping_at = time.monotonic()
                if self._ping_ok:
                    self._suspect = False
            return self._ping_ok

    def _engine_answers(self, within_s: float) -> bool:
        """Does the engine answer a ping within ``within_s``? (A frozen one holds a close, and
        with it a SIGTERM, for the whole API timeout otherwise.)"""
        if self._client is None:
            return True  # never connected: nothing was created through this runtime
        api = self._client.api
        try:
            api._raise_for_status(api._get(api._url("/_ping"), timeout=within_s))
            return True
        except Exception:  # noqa: BLE001 - any failure: it does not answer
            return False

    def close(self) -> None:
        """Remove every container this runtime created (the ready pool's too), several at a
        time. When no removal has finished for the client's timeout plus a second (the engine
        does not answer), raise, naming how many are left: the session watchdog removes them
        when it answers."""
        if self._pool is not None:
            self._pool.drop()
        if self._cid_watch_dir is not None:
            self._cid_watch_dir.close()
            self._cid_watch_dir = None
        if self._unclaimed:
            self._remove_unclaimed()
        live = self.live_instances()
        if not live:
            return
        if not (self._engine_ok() if self._suspect else self._engine_answers(CLOSE_PING_S)):
            raise LaunchFailed(
                f"{len(live)} container(s) not removed (the engine did not answer a ping in"
                f" {CLOSE_PING_S:g} s); the session watchdog removes them when it answers"
            )
        errors: list[str] = []
        todo = list(live)
        todo_lock = threading.Lock()

        def worker() -> None:
            while True:
                with todo_lock:
                    if not todo:
                        return
                    instance = todo.pop()
                try:
                    instance.stop()
                except LaunchFailed as exc:
                    errors.append(str(exc))

        patience = (self._client.api.timeout if self._client else API_TIMEOUT_S) + 1.0
        workers = [
            threading.Thread(target=worker, name="container-close", daemon=True)
            for _ in range(min(REMOVE_WORKERS, len(live)))
        ]
        for thread in workers:
            thread.start()
        # Give up when no removal has finished for ``patience``: a frozen engine, not a slow one.
        left = self.live_instances()
        progress_at = time.monotonic()
        while any(thread.is_alive() for thread in workers):
            time.sleep(0.02)
            now_left = self.live_instances()
            if len(now_left) < len(left):
                left, progress_at = now_left, time.monotonic()
            elif time.monotonic() - progress_at > patience:
                break
        left = self.live_instances()
        if left:
            why = errors[0] if errors else "the engine did not answer in time"
            raise LaunchFailed(
                f"{len(left)} container(s) not removed ({why}); the session watchdog removes"
                " them when the engine answers"
            )


def _is_timeout(exc: BaseException) -> bool:
    import requests

    return isinstance(exc, (TimeoutError, requests.exceptions.Timeout))


def _stop_one(instance: Instance) -> None:
    try:
        instance.stop()
    except Exception:  # noqa: BLE001 - stop() is documented never to raise; close() sweeps the rest
        pass
