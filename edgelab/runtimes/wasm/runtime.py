"""Wasm runtime: the workload's reactor module in wasmtime, one Store per instance.

Instances never live in the lab's process: a host process (``edgelab.runtimes.wasm.host``)
holds them all, so its PSS growth is the Wasm memory figure and a guest that brings wasmtime
down ends that process, not the lab. Startup is timed inside the host (Store + instantiate +
first response); loading the precompiled module is a separate, once-per-prepare cost shown
with the versions. wasmtime is imported only inside functions: ``edgelab --help`` stays instant.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgelab.errors import (
    EdgelabError,
    LaunchFailed,
    LaunchTimeout,
    LimitReached,
    RuntimeUnavailable,
)
from edgelab.protocol import STATUS_OK, Response
from edgelab.runtimes.base import Instance, Launch, Runtime, StoppedInstance
from edgelab.runtimes.hostproc import EXIT_GRACE_S as EXIT_GRACE_S  # the package names it
from edgelab.runtimes.hostproc import HostClient, failure
from edgelab.runtimes.wasm.limits import (
    MAX_WASM_STACK_BYTES,
    MIN_SHARD_INSTANCES,
    STORE_SHARING_ENV,
    cwasm_path,
    instances_per_store,
    limits_line,
    pool_memory_bytes,
    pool_slots,
    pooling_fits,
    shard_instances,
    wasmtime_version,
)
from edgelab.runtimes.wasm.records import (
    COMMAND_PHASES,
    PHASES,
    Answer,
    CommandBatch,
    LaunchBatch,
    LaunchRecord,
)
from edgelab.workloads import Workload

#: Slack on every call to the host beyond the guest's own timeout (which the host enforces).
IPC_MARGIN_S = 5.0
#: Loading a module may compile it (a cold cache): allow that much.
LOAD_TIMEOUT_S = 120.0
#: Set to 0 to launch through ctypes call by call instead of the compiled hot path.
HOTPATH_ENV = "EDGELAB_WASM_HOTPATH"


def _raise_for(record: LaunchRecord | None, timeout_s: float) -> None:
    """Raise the failure a host's launch record carries, if any."""
    if record is not None and record.error is not None:
        kind, message = record.error
        if kind == "timeout":
            raise LaunchTimeout(f"{message} after {timeout_s:g} s")
        raise failure(kind, message)


@dataclass(frozen=True)
class Strategy:
    """How one rung of the Wasm ladder starts an instance: the burst host's allocator, how
    each launch gets its module (``records.MODES``), and what its startup figure includes."""

    name: str
    allocator: str
    mode: str
    includes: str
    #: Wall time allowed per launch of a batch, on top of one guest timeout.
    per_launch_s: float = 0.05
    #: Launches per host round trip in a ramp (a jit launch compiles for milliseconds).
    chunk: int = 1000


STRATEGIES = {
    "pool": Strategy(
        "pool", "pool", "pre",
        "Store + instantiate + first response, timed in the Wasm host process "
        "(module precompiled and loaded once; memory from a warm slot of wasmtime's pool; "
        "IPC excluded)",
    ),
    "mmap": Strategy(
        "mmap", "ondemand", "pre",
        "Store + instantiate (a fresh memory mapping, no pool) + first response, timed in "
        "the Wasm host process (module precompiled and loaded once; IPC excluded)",
    ),
    "aot": Strategy(
        "aot", "ondemand", "deserialize",
        "deserializing the precompiled module + Store + instantiate (imports resolved by "
        "the linker, a fresh memory mapping) + first response, timed in the Wasm host "
        "process (compiled ahead, once; IPC excluded)",
        per_launch_s=0.5, chunk=100,
    ),
    "jit": Strategy(
        "jit", "ondemand", "compile",
        "compiling the .wasm (Cranelift) + Store + instantiate (imports resolved by the "
        "linker, a fresh memory mapping) + first response, timed in the Wasm host process "
        "(IPC excluded)",
        per_launch_s=2.0, chunk=20,
    ),
}  # fmt: skip


def command_includes(strategy: Strategy) -> str:
    """What a WASI command's startup figure includes on this rung (the command convention:
    startup to the first stdout byte, exit to ``_start``'s return or ``proc_exit``)."""
    module = {
        "pre": "module precompiled and loaded once",
        "compile": "compiling the .wasm (Cranelift) first, inside the timing",
        "deserialize": "deserializing the precompiled module first, inside the timing",
    }[strategy.mode]
    memory = (
        "memory from a warm slot of wasmtime's pool" if strategy.allocator == "pool"
        else "a fresh memory mapping"
    )  # fmt: skip
    return (
        "Store + a fresh WASI context (argv[0], the granted env and dirs only, stdin = the "
        "request, stdout captured) + instantiate + _start to its first byte on stdout, timed "
        f"in the Wasm host process ({module}; {memory}; IPC excluded); exit: to _start's "
        "return or proc_exit"
    )


def _command_failure(record: LaunchRecord | None, timeout_s: float) -> None:
    """Raise a command batch's failure: a timeout says the instance is gone."""
    if record is not None and record.error is not None and record.error[0] == "timeout":
        raise LaunchTimeout(
            f"did not exit within {timeout_s:g} s (stopped at the epoch deadline; the "
            "instance is gone)"
        )
    _raise_for(record, timeout_s)


class HostProcess(HostClient):
    """The Wasm host child (``edgelab.runtimes.wasm.host``) and its pipes.

    ``allocator`` is the host's instance allocator (host.ALLOCATORS): "pool" for the burst
    host of the plain rung, "ondemand" for the other rungs' and for the resident hosts of a
    ramp; ``mode`` how its launches get their module (records.MODES). ``held`` counts the
    resident instances the runtime has there.
    """

    host_module = "edgelab.runtimes.wasm.host"
    runtime = "wasm"
    label = "wasm host process"

    def __init__(
        self, allocator: str = "pool", instances_per_store: int = 1, mode: str = "pre"
    ) -> None:
        self.allocator = allocator
        self.mode = mode
        #: Set when the host hit a limit of its own (mappings, address space): it keeps what
        #: it holds and takes no more.
        self.full = False
        super().__init__(
            f"--max-memory={pool_memory_bytes()}",
            f"--allocator={allocator}",
            f"--instances-per-store={instances_per_store}",
            f"--mode={mode}",
        )


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
            answer: Answer = self._host.call(
                timeout_s + IPC_MARGIN_S, "request", self.instance_id, payload, timeout_s
            )
        except LaunchFailed as exc:
            # The host drops a guest that trapped or timed out; a dead host holds nothing.
            self._forget()
            if isinstance(exc, LaunchTimeout) and str(exc) == "timed out":
                raise LaunchTimeout(f"timed out after {timeout_s:g} s") from None
            raise
        return Response(answer.status, answer.body)

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
        #: A WASI command (``workload.convention == "command"``): loaded with its grants.
        self.command = workload.convention == "command"
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
    """Wasm instances in host processes: one *burst host* for cold starts, and *resident
    hosts* (on-demand allocator) for the instances a ramp keeps, each holding up to
    ``shard_instances()``; more are started as a ramp needs them. Every host is registered
    with the session watchdog, and memory is their PSS summed.

    ``strategy`` is the rung (``STRATEGIES``): "pool" (wasm: a warm slot of the pool, the
    fast path), "mmap" (wasm:mmap: a fresh mapping per instance), "aot" (wasm:aot: the
    precompiled module deserialized at every launch), "jit" (wasm:jit: the .wasm compiled at
    every launch). A rung's resident instances are made the same way as its cold starts, so
    a ramp's memory per instance is what keeping one of that rung ready costs (a jit or aot
    instance holds its own copy of the code).

    ``resident_host_at_prepare``: ``prepare`` starts the first resident host too, so that a
    ramp's baseline memory holds its one-time cost as it holds the burst host's. False for
    callers that launch once and keep nothing (``edgelab invoke``, the WASI grants probe):
    they run in the burst host alone, and a resident host is started only if
    ``launch_many`` needs one.
    """

    name = "wasm"
    phase_names = PHASES["pre"]
    memory_metric = "PSS growth of the Wasm host processes (summed over all of them)"
    startup_includes = STRATEGIES["pool"].includes

    def __init__(
        self, session: Any, strategy: str = "pool", resident_host_at_prepare: bool = True
    ) -> None:
        super().__init__(session)
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown wasm strategy {strategy!r} (one of {', '.join(STRATEGIES)})")
        self.strategy = STRATEGIES[strategy]
        self.resident_host_at_prepare = resident_host_at_prepare
        self.phase_names = PHASES[self.strategy.mode]  # type: ignore[misc]
        self.startup_includes = self.strategy.includes  # type: ignore[misc]
        self._host: HostProcess | None = None
        #: The resident hosts, in the order they were started (filled in that order).
        self._shards: list[HostProcess] = []
        self._host_lock = threading.RLock()
        self._loaded: set[str] = set()
        self._modules: dict[str, _Module] = {}
        #: workload name -> what loading its module cost and where it came from.
        self.load_info: dict[str, dict[str, Any]] = {}
        #: WASI command workload name -> its module (path, bytes) and grants, for preparation().
        self.command_info: dict[str, dict[str, str]] = {}
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
        if self.strategy.allocator != "pool":
            allocator = (
                "on demand (a fresh mapping per instance), for cold starts and resident ones"
            )
        elif pooling_fits(memory):
            allocator = f"pooling ({pool_slots():,} slots) for cold starts, on demand for resident instances"
        else:
            allocator = "on demand (ulimit -v is too small for the instance pool)"
        module = {
            "pre": "precompiled and loaded once per host",
            "compile": "the .wasm compiled at every launch (inside the timing)",
            "deserialize": "precompiled once, deserialized at every launch (inside the timing)",
        }[self.strategy.mode]
        details = {
            "allocator": allocator,
            "module": module,
            "per-host limit": limits_line(self.strategy.allocator == "pool"),
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
        found["per-host limit"] = limits_line(self.strategy.allocator == "pool")
        for name, facts in sorted(self.command_info.items()):
            found[f"module ({name})"] = facts["module"]
            found[f"WASI grants ({name})"] = facts["grants"]
            limit = self.load_info.get(name, {}).get("memory_limit")
            if limit:
                found[f"memory limit ({name})"] = (
                    f"{limit >> 20} MiB per linear memory (the workload's limit or the host's "
                    "pool slot, whichever is less); stack "
                    f"{MAX_WASM_STACK_BYTES >> 10} KiB; deadline: the timeout (epoch)"
                )
        for name, info in sorted(self.load_info.items()):
            how = "deserialized from cache" if info.get("source") == "cache" else "compiled"
            found[f"module load ({name})"] = (
                f"{info.get('load_ns', 0) / 1e6:.2f} ms, {how}"
                + {
                    "pre": "",
                    "compile": " (for its checks: every launch compiles its own)",
                    "deserialize": " (for its checks: every launch deserializes its own)",
                }[self.strategy.mode]
            )
        return found

    # -- lifecycle ------------------------------------------------------------------------
    def _live_host(self, meanwhile: Callable[[], object] | None = None) -> HostProcess:
        """The burst host, started if there is none. ``meanwhile`` is the lab's own work that
        can run while a new host boots (an interpreter and wasmtime, ~0.1 s); it runs at once
        if the host is up, and a host it fails in is closed."""
        with self._host_lock:
            if self._host is None or not self._host.alive:
                if self._host is not None:
                    self._abandon(self._host)
                self.check()
                self._host = self._start_host(
                    self.strategy.allocator, resident=False, meanwhile=meanwhile
                )
                self._loaded.clear()
                facts = self._host.call(LOAD_TIMEOUT_S, "ping")
                self.allocator, self.engine = facts["allocator"], facts["engine"]
                self._host.engine = facts["engine"]  # type: ignore[attr-defined]
            elif meanwhile is not None:
                meanwhile()
            return self._host

    def _start_host(
        self, allocator: str, resident: bool, meanwhile: Callable[[], object] | None = None
    ) -> HostProcess:
        sharing = instances_per_store() if resident else 1
        host = HostProcess(allocator, sharing, self.strategy.mode)
        self._watch_pgid(host.pid)  # its own session: pid == process group
        try:
            if meanwhile is not None:
                meanwhile()
            path = self._use_hotpath(host)
        except BaseException:
            host.close()
            raise
        if not resident:
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

        if workload.convention == "command":
            self._prepare_command(workload)
            return
        self.phase_names = PHASES[self.strategy.mode]  # type: ignore[misc]
        self.startup_includes = self.strategy.includes  # type: ignore[misc]
        built: list[Path] = []

        def find_module() -> None:  # hashing the sources (or building) while the host boots
            try:
                built.append(ensure_wasm(workload))
            except EdgelabError as exc:
                fix = getattr(exc, "fix", None) or "edgelab build shows the compiler's error"
                raise RuntimeUnavailable(self.name, str(exc), fix) from None

        self._live_host(meanwhile=find_module)
        self.prepare_module(workload, built[0], cwasm_path(workload, self.engine))
        self._resident_host_ahead()

    def _prepare_command(self, workload: Workload) -> None:
        """A person's WASI command: checked in the lab (one line for a file that is not a
        WASI preview 1 core command), compiled once in the host (cached by its digest)."""
        import hashlib

        from edgelab.build import cache_dir
        from edgelab.runtimes.wasm.wasi import check_grants, check_module, describe_grants

        function = workload.function
        if function is None or not function.wasm:
            raise RuntimeUnavailable(self.name, "this function gives no --wasm module")
        module = check_module(function.wasm)
        check_grants(function.dirs)
        self.phase_names = COMMAND_PHASES[self.strategy.mode]  # type: ignore[misc]
        self.startup_includes = command_includes(self.strategy)  # type: ignore[misc]
        self._live_host()
        if not self.launch_path.startswith("compiled"):
            raise RuntimeUnavailable(
                self.name,
                f"WASI commands run through the compiled hot path only, and here: {self.launch_path}",
                "edgelab build (zig builds the hot path); do not set EDGELAB_WASM_HOTPATH=0",
            )
        digest = hashlib.sha256(module.data).hexdigest()[:16]
        cwasm = (
            cache_dir() / "wasm"
            / f"function-{digest}-wasmtime{wasmtime_version()}-{self.engine}.cwasm"
        )  # fmt: skip
        self.command_info[workload.name] = {
            "module": f"{module.path} ({module.size_bytes:,} bytes), a WASI preview 1 command",
            "grants": describe_grants(function.dirs, function.env),
        }
        self.prepare_module(workload, module.path, cwasm)
        self._resident_host_ahead()

    def _resident_host_ahead(self) -> None:
        """The first resident host is started by ``prepare``, not by a ramp's first launch: a
        ramp's baseline memory then holds its one-time cost, as it holds the burst host's."""
        if not self.resident_host_at_prepare:
            return
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
        if module.command:
            return self._load_command_into(host, module, cwasm)
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

    def _load_command_into(
        self, host: HostProcess, module: _Module, cwasm: Path | None
    ) -> dict[str, Any]:
        """Load a WASI command with its grants, then make and drop one waiting instance (never
        ``_start``: a module that never exits cannot hang the preparation) so the host's
        baseline memory holds the one-time cost of a Store, a WASI context and an instance."""
        workload = module.workload
        function = workload.function
        assert function is not None
        info: dict[str, Any] = host.call(
            LOAD_TIMEOUT_S,
            "load_command",
            workload.name,
            str(module.wasm),
            str(cwasm) if cwasm else None,
            workload.memory_limit_bytes,
            workload.timeout_s,
            workload.max_response_bytes,
            module.wasm.name,
            [list(pair) for pair in function.dirs],
            [list(pair) for pair in function.env],
        )
        batch: CommandBatch = host.call(
            workload.timeout_s + IPC_MARGIN_S,
            "command_batch", workload.name, workload.default_request, 1, True, workload.timeout_s,
        )  # fmt: skip
        if batch.kept_ids():
            host.call(IPC_MARGIN_S, "drop", batch.kept_ids())
        _command_failure(batch.failure, workload.timeout_s)
        return info

    def _command_rows(
        self, host: HostProcess, workload: Workload, request: bytes, n: int, keep: bool,
        timeout_s: float, warm: bool,
    ) -> CommandBatch:  # fmt: skip
        budget = timeout_s + IPC_MARGIN_S + n * self.strategy.per_launch_s
        return host.call(budget, "command_batch", workload.name, request, n, keep, timeout_s, warm)

    def _command_launch(
        self, row: tuple, keep_host: HostProcess | None, timeout_s: float
    ) -> Launch:
        """A Launch of one command row: finished (stdout as its response), or, kept, an
        instance waiting for its request."""
        instance_id, body, phases, startup_ns, exit_ns = row
        phases_ns = dict(zip(self.phase_names, phases, strict=True))
        if keep_host is None:
            return Launch(
                StoppedInstance(self.name), Response(STATUS_OK, body), startup_ns, phases_ns,
                exit_ns=exit_ns,
            )  # fmt: skip
        instance = WasmInstance(self, keep_host, instance_id, timeout_s)
        keep_host.held += 1
        self._track(instance)
        return Launch(instance, Response(STATUS_OK, b""), startup_ns, phases_ns, waiting=True)

    def _new_shard(self) -> HostProcess:
        """Start one more resident host and load every prepared module into it."""
        shard = self._start_host("ondemand", resident=True)
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
        return "compiled hot path (wasm/hotpath.c), one foreign call per launch"

    def _ready_host(self, workload: Workload) -> HostProcess:
        host = self._host
        if host is None or not host.alive:
            if host is not None:
                raise LaunchFailed(host.died())
            raise LaunchFailed(f"wasm: {workload.name} was not prepared")
        if workload.name not in self._loaded:
            raise LaunchFailed(f"wasm: {workload.name} was not prepared")
        return host

    def launch(self, workload: Workload, request: bytes, timeout_s: float) -> Launch:
        host = self._ready_host(workload)
        if workload.convention == "command":
            batch = self._command_rows(host, workload, request, 1, False, timeout_s, False)
            _command_failure(batch.failure, timeout_s)
            return self._command_launch(batch.rows[0], None, timeout_s)
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
        command = workload.convention == "command"
        try:
            while len(launches) < n:
                shard = self._shard_with_room(cap)
                chunk = min(self.strategy.chunk, n - len(launches), cap - shard.held)
                budget = timeout_s + IPC_MARGIN_S + chunk * self.strategy.per_launch_s
                if command:  # left waiting for their request: instantiated, not started
                    try:
                        rows = self._command_rows(
                            shard, workload, request, chunk, True, timeout_s, False
                        )
                        for row in rows.rows:
                            launches.append(self._command_launch(row, shard, timeout_s))
                        _command_failure(rows.failure, timeout_s)
                    except LimitReached:
                        if shard.held < MIN_SHARD_INSTANCES:
                            raise
                        shard.full = True
                    continue
                try:
                    batch: LaunchBatch = shard.call(
                        budget, "launch_batch", workload.name, request, chunk, True, timeout_s
                    )
                    for instance_id, status, body, phases, startup_ns in batch.rows():
                        launches.append(
                            self._kept(
                                shard, instance_id, status, body, phases, startup_ns, timeout_s
                            )
                        )
                    _raise_for(batch.failure, timeout_s)
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
        if workload.convention == "command":
            rows = self._command_rows(host, workload, request, n, False, timeout_s, True)
            done: list[Launch | LaunchFailed] = [
                self._command_launch(row, None, timeout_s) for row in rows.rows
            ]
            try:
                _command_failure(rows.failure, timeout_s)
            except LaunchFailed as exc:
                done.append(exc)
            return done
        budget = timeout_s + IPC_MARGIN_S + n * self.strategy.per_launch_s
        batch: LaunchBatch = host.call(
            budget, "launch_batch", workload.name, request, n, False, timeout_s
        )
        outcomes: list[Launch | LaunchFailed] = []
        stopped = StoppedInstance(self.name)  # stands for every one of them: it holds nothing
        names = self.phase_names
        for _id, status, body, phases, startup_ns in batch.rows():
            outcomes.append(
                Launch(
                    stopped,
                    Response(status, body),
                    startup_ns,
                    dict(zip(names, phases, strict=True)),
                )
            )
        try:
            _raise_for(batch.failure, timeout_s)
        except LaunchFailed as exc:
            outcomes.append(exc)
        return outcomes

    def _launch_from(self, host: HostProcess, record: LaunchRecord, timeout_s: float) -> Launch:
        _raise_for(record, timeout_s)
        return self._kept(
            host, record.instance_id, record.status, record.body, record.phases_ns,
            record.startup_ns, timeout_s,
        )  # fmt: skip

    def _kept(
        self,
        host: HostProcess,
        instance_id: int | None,
        status: int,
        body: bytes,
        phases: tuple[int, ...],
        startup_ns: int,
        timeout_s: float,
    ) -> Launch:
        """A resident instance the host made: tracked from here on."""
        assert instance_id is not None, "a kept launch has an instance id"
        instance = WasmInstance(self, host, instance_id, timeout_s)
        host.held += 1
        self._track(instance)
        return Launch(
            instance,
            Response(status, body),
            startup_ns,
            dict(zip(self.phase_names, phases, strict=True)),
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
                host.died() if host is not None else "wasm host process not started"
            )
        total = 0
        for each in self._hosts():
            if not each.alive:
                raise LaunchFailed(each.died())
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
