"""Wasm runtime: the workload's reactor module in wasmtime, one Store per instance.

Instances never live in the lab's process: a host process (``edgelab.runtimes.wasm_host``)
holds them all, so its PSS growth is the Wasm memory figure and a guest that brings wasmtime
down ends that process, not the lab. Startup is timed inside the host (Store + instantiate +
first response); loading the precompiled module is a separate, once-per-prepare cost shown
with the versions. wasmtime is imported only inside functions: ``edgelab --help`` stays instant.
"""

from __future__ import annotations

import errno
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgelab.errors import (
    EdgelabError,
    LaunchFailed,
    LaunchTimeout,
    LimitReached,
    RuntimeUnavailable,
)
from edgelab.protocol import Response
from edgelab.runtimes.base import Instance, Launch, Runtime, StoppedInstance
from edgelab.workloads import Workload

_LEN = struct.Struct("<I")
#: Slack on every call to the host beyond the guest's own timeout (which the host enforces).
IPC_MARGIN_S = 5.0
#: Wall time allowed per launch of a batch on top of one guest timeout.
BATCH_PER_LAUNCH_S = 0.05
#: Launches per host round trip in ``launch_many``.
BATCH_CHUNK = 1000
#: Loading a module may compile it (a cold cache): allow that much.
LOAD_TIMEOUT_S = 120.0
EXIT_GRACE_S = 2.0
#: Set to 0 to launch through ctypes call by call instead of the compiled hot path.
HOTPATH_ENV = "EDGELAB_WASM_HOTPATH"
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent.parent


def wasmtime_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("wasmtime")
    except PackageNotFoundError:
        return "unknown"


#: Instance slots in the Wasm host's pool (see wasm_host.engine_config); POOL_ENV overrides.
POOL_SLOTS = 30_000
POOL_ENV = "EDGELAB_WASM_POOL_SLOTS"
#: Resident instances (a ramp's) live in on-demand hosts of at most this many instances each;
#: more start more hosts. Overridable by SHARD_ENV (tests hold several hosts' worth that way).
#: 50,000: two hosts for 100,000 (a host's own cost is ~19 MiB PSS, ~0.2 KiB per instance
#: there), each under its mapping limit even if none of its memories merged into one mapping
#: (one mapping each of vm.max_map_count's 65,530), ~3.5 GiB of address space each. A host
#: that hits a limit of its own first (mappings, ``ulimit -v``) hands over to the next.
SHARD_INSTANCES = 50_000
SHARD_ENV = "EDGELAB_WASM_SHARD_INSTANCES"
#: A resident host that hits a limit before holding this many says the machine, not the
#: host, ran out: the ramp stops there instead of starting host after host.
MIN_SHARD_INSTANCES = 100


def _count_from_env(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text.replace(",", "").replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise RuntimeUnavailable(
            "wasm", f"{name}={text!r} is not a positive whole number", f"unset {name}"
        )
    return value


def shard_instances() -> int:
    """Resident instances per on-demand host: SHARD_ENV if set (a positive integer)."""
    return _count_from_env(SHARD_ENV, SHARD_INSTANCES)


#: Resident instances per Store in the resident hosts. 1 (the default): each instance its own
#: Store, the unit a cold start measures, and stopping one frees its memory. More: that many
#: instances of one module share a Store, each with its own linear memory, globals and tables
#: (the memory limit applies to each memory) -- measured on hello, a Store and the Store's
#: share of its first instance are ~5.3 of a resident instance's ~11 KiB, so 8 per Store
#: hold ~6.1 KiB each -- but a Store, and so a stopped instance's memory, is freed only with
#: the last of its instances, and a timeout or trap is per call, not per Store.
STORE_SHARING_ENV = "EDGELAB_WASM_INSTANCES_PER_STORE"
#: wasmtime's default per-Store limits on instances and memories.
MAX_INSTANCES_PER_STORE = 10_000


def instances_per_store() -> int:
    """Resident instances per Store: STORE_SHARING_ENV if set, else 1."""
    value = _count_from_env(STORE_SHARING_ENV, 1)
    if value > MAX_INSTANCES_PER_STORE:
        raise RuntimeUnavailable(
            "wasm",
            f"{STORE_SHARING_ENV}={value:,} is more than wasmtime's "
            f"{MAX_INSTANCES_PER_STORE:,} instances per Store",
            f"set {STORE_SHARING_ENV} to at most {MAX_INSTANCES_PER_STORE:,}",
        )
    return value


def pool_slots() -> int:
    """Slots in the burst host's pool: POOL_ENV if set (a machine with a lower
    vm.max_map_count needs fewer; tests fill a small pool)."""
    return _count_from_env(POOL_ENV, POOL_SLOTS)


def pooling_fits(max_memory_bytes: int) -> bool:
    """Whether the pool's address space fits this process's limit (``ulimit -v``), which the
    host inherits.

    The pool reserves ``pool_slots()`` x ``max_memory_bytes`` up front, and wasmtime aborts
    the process (it does not fail the call) when it cannot.
    """
    import resource

    soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    return soft == resource.RLIM_INFINITY or soft >= 2 * pool_slots() * max_memory_bytes


def cwasm_path(workload: Workload, engine: str) -> Path:
    """Where the workload's precompiled module is cached for this wasmtime version and the
    host's Engine configuration ``engine`` (its ``ping()["engine"]``: the pool's slot size
    sets how bounds checks are compiled)."""
    from edgelab.build import cache_dir, source_hash

    name = f"{source_hash(workload)}-wasmtime{wasmtime_version()}-{engine}.cwasm"
    return cache_dir() / "wasm" / name


def pool_memory_bytes() -> int:
    """The size of the host's pool slot per linear memory: the most any workload's memory may
    grow to (its module's maximum or its memory limit, whichever is less), in whole MiB."""
    from edgelab.build import wasm_max_memory_bytes
    from edgelab.workloads import load_workloads

    most = max(
        (
            min(wasm_max_memory_bytes(w), w.memory_limit_bytes)
            for w in load_workloads(include_hostile=True).values()
        ),
        default=0,
    )
    mib = 1 << 20
    return max(-(-most // mib), 4) * mib


def _failure(kind: str, message: str) -> LaunchFailed:
    """The exception for a host's ("err", kind, message): a limit the host ran into (its pool,
    its mappings, memory) is a LimitReached, which stops a ramp instead of being retried."""
    if kind == "limit":
        return LimitReached(message)
    return (LaunchTimeout if kind == "timeout" else LaunchFailed)(message)


def _raise_for(result: tuple[Any, ...], timeout_s: float) -> None:
    """Raise the failure a host launch result carries, if any."""
    error = result[5]
    if error is not None:
        kind, message = error
        if kind == "timeout":
            raise LaunchTimeout(f"{message} after {timeout_s:g} s")
        raise _failure(kind, message)


class HostProcess:
    """The host child and its pipes: one call at a time, each with a deadline.

    ``allocator`` is the host's instance allocator (wasm_host.ALLOCATORS): "pool" for the
    burst host, "ondemand" for the resident hosts of a ramp. ``held`` counts the resident
    instances the runtime has there.
    """

    def __init__(self, allocator: str = "pool", instances_per_store: int = 1) -> None:
        self.allocator = allocator
        self.held = 0
        #: Set when the host hit a limit of its own (mappings, address space): it keeps what
        #: it holds and takes no more.
        self.full = False
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p
        )
        self._stderr = tempfile.TemporaryFile()
        self._lock = threading.Lock()
        self.exit_message = ""
        try:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "edgelab.runtimes.wasm_host",
                    f"--max-memory={pool_memory_bytes()}",
                    f"--allocator={allocator}",
                    f"--instances-per-store={instances_per_store}",
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                env=env,
                close_fds=True,
                start_new_session=True,  # Ctrl-C at the terminal reaches the lab, which closes us
            )
        except OSError as exc:
            self._stderr.close()
            if exc.errno in (errno.EAGAIN, errno.ENOMEM):
                raise LimitReached(f"cannot start another wasm host process: {exc}") from None
            raise RuntimeUnavailable("wasm", f"cannot start the wasm host process: {exc}") from None
        assert self.process.stdin is not None and self.process.stdout is not None
        self._in = self.process.stdin.fileno()
        self._out = self.process.stdout.fileno()
        os.set_blocking(self._in, False)
        os.set_blocking(self._out, False)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return not self.exit_message and self.process.poll() is None

    def call(self, timeout_s: float, command: str, *args: Any) -> Any:
        """Send one command and return its value; guest errors become LaunchFailed/Timeout."""
        with self._lock:
            if not self.alive:
                raise LaunchFailed(self._died())
            deadline = time.monotonic() + timeout_s
            data = pickle.dumps((command, *args), protocol=pickle.HIGHEST_PROTOCOL)
            try:
                self._write(_LEN.pack(len(data)) + data, deadline)
                (length,) = _LEN.unpack(self._read(_LEN.size, deadline))
                reply = pickle.loads(self._read(length, deadline))
            except KeyboardInterrupt:
                # Cut off mid-call (ctrl+c, SIGTERM): the pipes are out of step with the
                # host, so nothing more can be asked of it. It holds nothing worth keeping.
                self.exit_message = "wasm host process was stopped by an interrupt"
                self.kill()
                raise
        if reply[0] == "ok":
            return reply[1]
        _, kind, message = reply
        raise _failure(kind, message)

    def _write(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._in, view[: 1 << 20]) :]
            except BlockingIOError:
                self._wait(self._in, select.POLLOUT, deadline)
            except (BrokenPipeError, ConnectionResetError):
                raise LaunchFailed(self._died()) from None

    def _read(self, n: int, deadline: float) -> bytes:
        parts: list[bytes] = []
        while n:
            try:
                chunk = os.read(self._out, min(n, 1 << 20))
            except BlockingIOError:
                self._wait(self._out, select.POLLIN, deadline)
                continue
            if not chunk:
                raise LaunchFailed(self._died())
            parts.append(chunk)
            n -= len(chunk)
        return b"".join(parts)

    def _wait(self, fd: int, events: int, deadline: float) -> None:
        poller = select.poll()
        poller.register(fd, events)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                # A host that misses its deadline is wedged: nothing it holds can be trusted.
                self.kill()
                self.exit_message = "wasm host process did not answer in time and was killed"
                raise LaunchTimeout(self.exit_message)
            if poller.poll(remaining * 1000):
                return

    def _died(self) -> str:
        if self.exit_message:
            return self.exit_message
        try:
            code = self.process.wait(timeout=EXIT_GRACE_S)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.process.returncode
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = "unknown"
            how = f"signal {-code}, {name}"
        else:
            how = f"exit code {code}"
        self.exit_message = f"wasm host process exited ({how})"
        last = self._last_stderr_line()
        if last:
            self.exit_message += f": {last}"
        return self.exit_message

    def _last_stderr_line(self) -> str:
        try:
            self._stderr.seek(0, os.SEEK_END)
            size = self._stderr.tell()
            self._stderr.seek(max(0, size - 4096))
            lines = self._stderr.read().decode("utf-8", "replace").strip().splitlines()
        except (OSError, ValueError):
            return ""
        return lines[-1].strip()[:200] if lines else ""

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def close(self) -> None:
        """Ask the host to exit, kill it if it does not within 2 s, and always reap it."""
        if self.process.poll() is None and not self.exit_message:
            try:
                data = pickle.dumps(("exit",))
                self._write(_LEN.pack(len(data)) + data, time.monotonic() + EXIT_GRACE_S)
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
        self.exit_message = self.exit_message or "wasm host process was closed"
        self._stderr.close()


class WasmInstance(Instance):
    """One Store in a host process, addressed by its id there. Slotted: a ramp of 100,000
    holds as many of these in the lab, and a per-object dict was ~100 bytes of each."""

    __slots__ = ("_runtime", "_host", "instance_id", "_timeout_s", "_stopped")
    runtime = "wasm"

    def __init__(
        self, runtime: WasmRuntime, host: HostProcess, instance_id: int, timeout_s: float
    ) -> None:
        self._runtime = runtime
        self._host = host
        self.instance_id = instance_id
        self._timeout_s = timeout_s
        self._stopped = False

    def request(self, payload: bytes, timeout_s: float) -> Response:
        if self._stopped:
            raise LaunchFailed("instance already stopped")
        try:
            status, body, _elapsed_ns = self._host.call(
                timeout_s + IPC_MARGIN_S, "request", self.instance_id, payload, timeout_s
            )
        except LaunchFailed as exc:
            # The host drops a guest that trapped or timed out; a dead host holds nothing.
            self._forget()
            if isinstance(exc, LaunchTimeout) and str(exc) == "timed out":
                raise LaunchTimeout(f"timed out after {timeout_s:g} s") from None
            raise
        return Response(status, body)

    def stop(self) -> None:
        if self._stopped:
            return
        if self._host.alive:
            try:
                self._host.call(self._timeout_s + IPC_MARGIN_S, "drop", [self.instance_id])
            except EdgelabError:
                pass
        self._forget()

    def _forget(self) -> None:
        if not self._stopped:
            self._stopped = True
            self._host.held -= 1
        self._runtime._untrack(self)


class _Module:
    """What a host needs to load one workload's module: kept so that a host started later
    (another resident host of a ramp) loads what the first one did."""

    def __init__(self, workload: Workload, wasm: Path, cwasm: Path | None, engine: str) -> None:
        self.workload = workload
        self.wasm = wasm
        self._cwasm = cwasm
        self._engine = engine

    def cwasm(self, engine: str) -> Path | None:
        """The precompiled-module cache for a host whose Engine configuration is ``engine``
        (code compiled for one configuration does not load into another)."""
        if self._cwasm is None or engine == self._engine:
            return self._cwasm
        if self._engine and self._engine in self._cwasm.name:
            return self._cwasm.with_name(self._cwasm.name.replace(self._engine, engine))
        return self._cwasm.with_name(f"{self._cwasm.stem}-{engine}{self._cwasm.suffix}")


class WasmRuntime(Runtime):
    """Wasm instances in host processes: one pooled *burst host* for cold starts (warm pool
    slots, the fast path), and *resident hosts* (on-demand allocator) for the instances a ramp
    keeps, each holding up to ``shard_instances()``; more are started as a ramp needs them.
    Every host is registered with the session watchdog, and memory is their PSS summed."""

    name = "wasm"
    phase_names = ("instantiate", "first_response")
    memory_metric = "PSS growth of the Wasm host processes (summed over all of them)"
    startup_includes = (
        "Store + instantiate + first response, timed in the Wasm host process "
        "(module precompiled; memory from wasmtime's pool; IPC excluded)"
    )

    def __init__(self, session: Any) -> None:
        super().__init__(session)
        self._host: HostProcess | None = None
        #: The resident hosts, in the order they were started (filled in that order).
        self._shards: list[HostProcess] = []
        self._host_lock = threading.RLock()
        self._loaded: set[str] = set()
        self._modules: dict[str, _Module] = {}
        #: workload name -> what loading its module cost and where it came from.
        self.load_info: dict[str, dict[str, Any]] = {}
        #: How the current host launches: "compiled" (one foreign call) or "ctypes (why)".
        self.launch_path = ""
        #: How the current host allocates instances (the pool, or on demand where it cannot).
        self.allocator = ""
        #: The current host's Engine configuration, which names the precompiled-module cache.
        self.engine = ""
        #: Most resident hosts alive at once in this runtime's life, for the preparation line.
        self.most_shards = 0

    # -- availability -------------------------------------------------------------------
    def check(self) -> None:
        try:
            import wasmtime  # noqa: F401
        except Exception as exc:  # noqa: BLE001 - a broken wheel is as unavailable as none
            raise RuntimeUnavailable(
                self.name, f"wasmtime cannot be imported ({exc})", "pip install 'wasmtime>=50'"
            ) from None

    def versions(self) -> dict[str, str]:
        return {"wasmtime": wasmtime_version()}

    def doctor_details(self) -> dict[str, str]:
        memory = pool_memory_bytes()
        details = {
            "allocator": f"pooling ({pool_slots():,} slots) for cold starts, "
            "on demand for resident instances"
            if pooling_fits(memory)
            else "on demand (ulimit -v is too small for the instance pool)",
            "per-host limit": limits_line(),
        }
        if os.environ.get(HOTPATH_ENV, "1") == "0":
            details["launch path"] = f"ctypes ({HOTPATH_ENV}=0)"
            return details
        from edgelab.build import _is_built, hotpath_path

        try:
            built = _is_built(hotpath_path())
        except (EdgelabError, OSError, ImportError) as exc:
            details["launch path"] = f"ctypes (no compiled hot path: {exc})"
            return details
        details["launch path"] = "compiled" + ("" if built else " (built on first use)")
        return details

    def preparation(self) -> dict[str, str]:
        found = {}
        if self.launch_path:
            found["launch path"] = self.launch_path
        if self.allocator:
            found["instance allocator"] = self.allocator
        if self.most_shards:
            hosts = "host" if self.most_shards == 1 else "hosts"
            found["resident hosts"] = (
                f"{self.most_shards} on-demand {hosts}, up to {shard_instances():,} instances each"
            )
            sharing = instances_per_store()
            found["resident instances per Store"] = (
                "1 (each its own Store, as each cold start)"
                if sharing == 1
                else f"{sharing} share a Store ({STORE_SHARING_ENV}): a stopped instance's "
                "memory is freed with the last of its Store's"
            )
        found["per-host limit"] = limits_line()
        for name, info in sorted(self.load_info.items()):
            how = "deserialized from cache" if info.get("source") == "cache" else "compiled"
            found[f"module load ({name})"] = f"{info.get('load_ns', 0) / 1e6:.2f} ms, {how}"
        return found

    # -- lifecycle ------------------------------------------------------------------------
    def _live_host(self) -> HostProcess:
        with self._host_lock:
            if self._host is None or not self._host.alive:
                if self._host is not None:
                    self._abandon(self._host)
                self.check()
                self._host = self._start_host("pool")
                self._loaded.clear()
                facts = self._host.call(LOAD_TIMEOUT_S, "ping")
                self.allocator, self.engine = facts["allocator"], facts["engine"]
                self._host.engine = facts["engine"]  # type: ignore[attr-defined]
            return self._host

    def _start_host(self, allocator: str) -> HostProcess:
        sharing = instances_per_store() if allocator == "ondemand" else 1
        host = HostProcess(allocator, sharing)
        self._watch_pgid(host.pid)  # its own session: pid == process group
        try:
            path = self._use_hotpath(host)
        except BaseException:
            host.close()
            raise
        if allocator == "pool":
            self.launch_path = path
        return host

    def _abandon(self, host: HostProcess) -> None:
        """The host is gone: its instances are too; reap it."""
        if host is self._host:
            self._host = None
        if host in self._shards:
            self._shards.remove(host)
        for instance in self.live_instances():
            if isinstance(instance, WasmInstance) and instance._host is host:
                instance._forget()
        host.close()

    def _abandon_host(self) -> None:
        if self._host is not None:
            self._abandon(self._host)

    def prepare(self, workload: Workload) -> None:
        from edgelab.build import ensure_wasm

        try:
            wasm = ensure_wasm(workload)
        except EdgelabError as exc:
            fix = getattr(exc, "fix", None) or "edgelab build shows the compiler's error"
            raise RuntimeUnavailable(self.name, str(exc), fix) from None
        self._live_host()
        self.prepare_module(workload, wasm, cwasm_path(workload, self.engine))
        # The first resident host is started here, not by a ramp's first launch: a ramp's
        # baseline memory then holds its one-time cost, as it holds the burst host's.
        with self._host_lock:
            if not any(shard.alive for shard in self._shards):
                self._new_shard()

    def prepare_module(self, workload: Workload, wasm: Path, cwasm: Path | None) -> None:
        """Load ``wasm`` (through the ``cwasm`` cache) into the hosts, then launch and drop one
        warm-up instance so that a host's baseline PSS holds its one-time allocations."""
        host = self._live_host()
        with self._host_lock:
            if workload.name in self._loaded:
                return
            module = _Module(workload, wasm, cwasm, self.engine)
            self.load_info[workload.name] = self._load_into(host, module)
            self._modules[workload.name] = module
            self._loaded.add(workload.name)
            for shard in list(self._shards):
                if shard.alive:
                    self._load_into(shard, module)

    def _load_into(self, host: HostProcess, module: _Module) -> dict[str, Any]:
        workload = module.workload
        cwasm = module.cwasm(getattr(host, "engine", ""))
        info: dict[str, Any] = host.call(
            LOAD_TIMEOUT_S,
            "load",
            workload.name,
            str(module.wasm),
            str(cwasm) if cwasm else None,
            workload.memory_limit_bytes,
            workload.timeout_s,
            workload.max_response_bytes,
        )
        if not workload.hostile:  # its default request misbehaves by design: no warm-up
            warm_up = host.call(
                workload.timeout_s + IPC_MARGIN_S,
                "launch",
                workload.name,
                workload.default_request,
                False,
                workload.timeout_s,
            )
            _raise_for(warm_up, workload.timeout_s)
        return info

    def _new_shard(self) -> HostProcess:
        """Start one more resident host and load every prepared module into it."""
        shard = self._start_host("ondemand")
        try:
            shard.engine = shard.call(LOAD_TIMEOUT_S, "ping")["engine"]  # type: ignore[attr-defined]
            for module in self._modules.values():
                self._load_into(shard, module)
        except BaseException:
            shard.close()
            raise
        self._shards.append(shard)
        self.most_shards = max(self.most_shards, len(self._shards))
        return shard

    def _shard_with_room(self, cap: int) -> HostProcess:
        """The first resident host with room for another instance, or a new one."""
        with self._host_lock:
            for shard in list(self._shards):
                if not shard.alive:
                    self._abandon(shard)
                elif shard.held < cap and not shard.full:
                    return shard
            return self._new_shard()

    def _use_hotpath(self, host: HostProcess) -> str:
        """Hand the host its compiled hot path; where there is none, it stays on ctypes."""
        if os.environ.get(HOTPATH_ENV, "1") == "0":
            return f"ctypes, a foreign call per C API call ({HOTPATH_ENV}=0)"
        from edgelab.build import ensure_wasm_hotpath

        try:
            path = ensure_wasm_hotpath()
            host.call(LOAD_TIMEOUT_S, "use_hotpath", str(path))
        except EdgelabError as exc:
            return f"ctypes, a foreign call per C API call (no compiled hot path: {exc})"
        return "compiled hot path (wasm_hotpath.c), one foreign call per launch"

    def _ready_host(self, workload: Workload) -> HostProcess:
        host = self._host
        if host is None or not host.alive:
            if host is not None:
                raise LaunchFailed(host._died())
            raise LaunchFailed(f"wasm: {workload.name} was not prepared")
        if workload.name not in self._loaded:
            raise LaunchFailed(f"wasm: {workload.name} was not prepared")
        return host

    def launch(self, workload: Workload, request: bytes, timeout_s: float) -> Launch:
        host = self._ready_host(workload)
        try:
            result = host.call(
                timeout_s + IPC_MARGIN_S, "launch", workload.name, request, True, timeout_s
            )
            return self._launch_from(host, result, timeout_s)
        except LimitReached as exc:
            raise LimitReached(exc.limit, len(self.live_instances())) from None

    def launch_many(
        self, workload: Workload, request: bytes, n: int, timeout_s: float
    ) -> list[Launch]:
        """``n`` resident instances in few round trips, for ramps, in the resident hosts:
        each filled to ``shard_instances()`` before the next is started. A host that hits a
        limit of its own (its mappings, its ``ulimit -v``) keeps what it holds and the next
        host takes over; one that cannot take even MIN_SHARD_INSTANCES means the machine is
        out, and that is raised.

        All or nothing: if one launch fails, those this call made are stopped and the failure
        is raised (saying how many had succeeded); a limit is a LimitReached naming it and the
        instances this runtime then holds.
        """
        self._ready_host(workload)
        cap = shard_instances()
        launches: list[Launch] = []
        try:
            while len(launches) < n:
                shard = self._shard_with_room(cap)
                chunk = min(BATCH_CHUNK, n - len(launches), cap - shard.held)
                budget = timeout_s + IPC_MARGIN_S + chunk * BATCH_PER_LAUNCH_S
                try:
                    results = shard.call(
                        budget, "launch_batch", workload.name, request, chunk, True, timeout_s
                    )
                    for result in results:
                        launches.append(self._launch_from(shard, result, timeout_s))
                except LimitReached:
                    if shard.held < MIN_SHARD_INSTANCES:
                        raise
                    shard.full = True
        except EdgelabError as exc:  # a failed launch, or a host that could not start
            self.stop_many([launch.instance for launch in launches])
            if isinstance(exc, LimitReached):
                raise LimitReached(exc.limit, len(self.live_instances())) from None
            if not launches:
                raise
            kind = type(exc) if isinstance(exc, LaunchFailed) else LaunchFailed
            raise kind(f"{exc} (after {len(launches)} of {n} launches)") from None
        return launches

    def cold_starts(
        self, workload: Workload, request: bytes, n: int, timeout_s: float
    ) -> list[Launch | LaunchFailed]:
        """Up to ``n`` cold starts back to back in one round trip, none kept: a burst of this
        runtime alone. Each is timed as ``launch`` times it (in the host, from the Store's
        creation to the response's bytes); the Store is deleted outside the timing. Stops at
        the first failure, which is then the last item."""
        host = self._ready_host(workload)
        budget = timeout_s + IPC_MARGIN_S + n * BATCH_PER_LAUNCH_S
        results = host.call(budget, "launch_batch", workload.name, request, n, False, timeout_s)
        outcomes: list[Launch | LaunchFailed] = []
        stopped = StoppedInstance(self.name)  # stands for every one of them: it holds nothing
        for result in results:
            try:
                _raise_for(result, timeout_s)
            except LaunchFailed as exc:
                outcomes.append(exc)
                break
            _id, status, body, phases, startup_ns, _error = result
            # phases is the host's fresh dict, keyed by phase_names in their order
            outcomes.append(Launch(stopped, Response(status, body), startup_ns, phases))
        return outcomes

    def _launch_from(self, host: HostProcess, result: tuple[Any, ...], timeout_s: float) -> Launch:
        _raise_for(result, timeout_s)
        instance_id, status, body, phases, startup_ns, _error = result
        instance = WasmInstance(self, host, instance_id, timeout_s)
        host.held += 1
        self._track(instance)
        return Launch(
            instance,
            Response(status, body),
            startup_ns,
            {name: phases[name] for name in self.phase_names},
        )

    def _hosts(self) -> list[HostProcess]:
        with self._host_lock:
            return [h for h in (self._host, *self._shards) if h is not None]

    def pss_bytes(self, instances: Sequence[Instance]) -> int:
        """The PSS of every host process summed: the burst host and each resident host
        (one started during a ramp counts whole, its interpreter and wasmtime included)."""
        import psutil

        host = self._host
        if host is None or not host.alive:
            raise LaunchFailed(
                host._died() if host is not None else "wasm host process not started"
            )
        total = 0
        for each in self._hosts():
            if not each.alive:
                raise LaunchFailed(each._died())
            try:
                total += int(psutil.Process(each.pid).memory_full_info().pss)
            except psutil.Error as exc:
                raise LaunchFailed(f"cannot read the wasm host's memory: {exc}") from None
        return total

    def stop_many(self, instances: Sequence[Instance]) -> None:
        """Stop many instances in one round trip per host (the end of a ramp)."""
        wasm = [i for i in instances if isinstance(i, WasmInstance) and not i._stopped]
        by_host: dict[int, list[WasmInstance]] = {}
        for instance in wasm:
            by_host.setdefault(id(instance._host), []).append(instance)
        for group in by_host.values():
            host = group[0]._host
            if host.alive:
                try:
                    host.call(IPC_MARGIN_S + 30, "drop", [i.instance_id for i in group])
                except EdgelabError:
                    pass
            for instance in group:
                instance._forget()

    @property
    def host_pid(self) -> int | None:
        """The burst host's pid (the one cold starts run in)."""
        return self._host.pid if self._host is not None else None

    @property
    def host_pids(self) -> list[int]:
        """Every host process's pid: the burst host first, then the resident hosts."""
        return [host.pid for host in self._hosts()]

    def close(self) -> None:
        with self._host_lock:
            for host in self._hosts():
                if host.alive:
                    try:
                        host.call(IPC_MARGIN_S + 30, "drop_all")
                    except EdgelabError:
                        pass
            for instance in self.live_instances():
                if isinstance(instance, WasmInstance):
                    instance._forget()
                else:  # pragma: no cover - only WasmInstances are tracked here
                    instance.stop()
            for host in self._hosts():
                self._abandon(host)
            self._loaded.clear()


def limits_line() -> str:
    """What stops one host process, measured here (hello; see wasm_host's Capacity note)."""
    try:
        with open("/proc/sys/vm/max_map_count") as limit:
            most = f"{int(limit.read()):,}"
    except (OSError, ValueError):
        most = "?"
    return (
        f"pool {pool_slots():,} slots (2 of vm.max_map_count's {most} mappings each); "
        f"resident hosts {shard_instances():,} each, then another (memory is their limit)"
    )
