"""The Wasm host process: every resident Wasm instance of a lab lives here, never in the lab.

Started by ``WasmRuntime`` as ``python -m edgelab.runtimes.wasm.host`` with pipes on stdin and
stdout, so that this process's PSS growth is the Wasm memory figure and a guest that crashes
wasmtime takes down this process only. The pipes carry ``edgelab.ipc`` frames: the lab sends
a ``Call(command, args)``, the host answers ``Ok(value)`` or ``Err(kind, message)`` with kind
"timeout", "limit" or "failed"; launches come back as ``records.LaunchRecord`` or, for a batch,
a packed ``records.LaunchBatch``.

Instances are driven through wasmtime's C API directly (``capi``, the one module that touches
wasmtime's private parts). Normally one foreign call does a whole launch: ``hotpath.c``, built
by ``edgelab.build.ensure_wasm_hotpath`` and handed over by the lab (``use_hotpath``). Without
it, the same calls go one by one through ctypes with untyped pointers and
``wasmtime_func_call_unchecked``. Either way the export signatures are checked once per module
at load. Startup runs from before the module (modes "compile" and "deserialize") or the Store
is made to having the first response's bytes (read with CLOCK_MONOTONIC, the clock of
``perf_counter_ns``), so the pipe to the lab is excluded. ``launch_batch`` of launches that are
not kept runs them back to back in one call.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import hashlib
import mmap
import os
import sys
import threading
import time
from array import array
from collections.abc import Callable
from ctypes import c_char_p, c_void_p
from pathlib import Path
from typing import Any

import wasmtime

from edgelab.ipc import Call, Channel, ChannelClosed, Err, Ok, encode
from edgelab.runtimes.wasm import capi
from edgelab.runtimes.wasm.capi import (
    EXTERN_BYTES as _EXTERN_BYTES,
)
from edgelab.runtimes.wasm.capi import (
    EXTERN_OF as _EXTERN_OF,
)
from edgelab.runtimes.wasm.capi import (
    INSTANCE_BYTES as _INSTANCE_BYTES,
)
from edgelab.runtimes.wasm.capi import (
    address as _addr,
)
from edgelab.runtimes.wasm.capi import (
    call_unchecked as _call,
)
from edgelab.runtimes.wasm.capi import (
    export_get as _export_get,
)
from edgelab.runtimes.wasm.capi import (
    increment_epoch as _increment_epoch,
)
from edgelab.runtimes.wasm.capi import (
    memory_data as _memory_data,
)
from edgelab.runtimes.wasm.capi import (
    memory_data_size as _memory_data_size,
)
from edgelab.runtimes.wasm.capi import (
    pre_instantiate as _pre_instantiate,
)
from edgelab.runtimes.wasm.capi import (
    set_epoch_deadline as _set_epoch_deadline,
)
from edgelab.runtimes.wasm.capi import (
    set_wasi as _set_wasi,
)
from edgelab.runtimes.wasm.capi import (
    store_context as _store_context,
)
from edgelab.runtimes.wasm.capi import (
    store_delete as _store_delete,
)
from edgelab.runtimes.wasm.capi import (
    store_limiter as _store_limiter,
)
from edgelab.runtimes.wasm.capi import (
    store_new as _store_new,
)
from edgelab.runtimes.wasm.capi import (
    wasi_config_new as _wasi_config_new,
)
from edgelab.runtimes.wasm.capi import (
    wasi_config_set_argv as _wasi_config_set_argv,
)
from edgelab.runtimes.wasm.hotpath import (
    CMD_EXIT,
    HOT_STAGES,
    LAUNCHED,
    MODE_COMPILE,
    MODE_DESERIALIZE,
    MODE_PRE,
    HotCall,
    HotCommand,
    HotLaunched,
    HotPath,
    LayoutMismatch,
    arm,
)
from edgelab.runtimes.wasm.limits import (
    MAX_WASM_STACK_BYTES,
    host_out_of_memory,
    pool_slots,
    pooling_fits,
)
from edgelab.runtimes.wasm.limits import (
    wasmtime_version as metadata_wasmtime_version,  # importlib.metadata's: the fallback below
)
from edgelab.runtimes.wasm.records import (
    MODES,
    Answer,
    BatchBuilder,
    CommandBatch,
    LaunchBatch,
    LaunchRecord,
    command_phases,
    phases_of,
)
from edgelab.runtimes.wasm.residents import SLOT_BYTES as _SLOT_BYTES
from edgelab.runtimes.wasm.residents import Residents

# -- engine configuration ------------------------------------------------------------------
#: Instances come from wasmtime's pooling allocator, as in production Wasm hosts: a slot for
#: each instance, linear memory and table is reserved once, and a new instance takes a free
#: slot (the one used last, still warm) instead of mapping fresh memory. A Store and its
#: instance are still new on every launch; the slot's memory is reset to the module's initial
#: image before reuse, so nothing of an earlier instance is visible. Measured on hello, raw C
#: loop, this 2-core VM: ~2-4 us per cold start against ~15-22 us with a fresh mapping per
#: instance, at the same ~11 KiB PSS per resident instance.
#:
#: Capacity, measured on hello: each live pooled instance costs two memory mappings (its
#: memory's accessible part, and the rest of its slot split off), so vm.max_map_count (65,530
#: by default) would stop a pooled host at ~32,400 instances (~31,600 while the pool also
#: kept wasmtime's 1,000 async fiber stacks, two mappings each, which this host never uses:
#: POOL_STACKS is 0). The pool's 30,000 slots stop it first, with one line. And each pooled
#: instance costs a page-table page of its own (4 KiB: its slot spans more than the 2 MiB
#: one page-table page maps), which the kernel spends outside PSS. So resident instances of
#: a ramp live in *on-demand* hosts instead (``ALLOCATORS``): there each memory is mapped at
#: its size, neighbours merge into one mapping (~0.001 mappings per instance) and share page
#: tables (~0.14 KiB per instance); 100,000 fit in one such process, limited by memory.
#: The reservation is address space only (slots x the largest memory a loaded module may
#: grow to, about 1 TiB for 30,000 slots of 36 MiB); the pool's own bookkeeping is ~7 MiB.
#: pool_slots and pooling_fits live in edgelab.runtimes.wasm: the lab names caches by them.
#: A host's configuration is fixed for its life: the pool's size is read once, at start.
POOL_SLOTS = pool_slots()
POOL_STACKS = 0
#: "pool": the pooling allocator where it fits (the burst host); "ondemand": a mapping per
#: memory, made when an instance is (the resident hosts of a ramp).
ALLOCATORS = ("pool", "ondemand")
#: Bytes of each freed linear memory kept resident (zeroed, not returned to the kernel), so a
#: reused slot does not page-fault its first page back in: one Wasm page, the initial memory
#: of every workload here. Only the most recently freed slots stay warm (wasmtime's
#: max_unused_warm_slots, 100 by default); the rest go back to the kernel.
KEEP_RESIDENT_BYTES = 64 * 1024
#: Bounds checks stay explicit (no guard region): slots sit back to back in the reservation.
MEMORY_GUARD_BYTES = 0
#: Copy-on-write memory images save a copy of the data segments per instance but cost two
#: more mappings per live instance (4 instead of 2), halving the density ceiling above;
#: the data segments of these workloads are a few hundred bytes, so they are copied.
MEMORY_INIT_COW = False
#: Untimed, unreported launches before a batch of cold starts (see el_launch_batch): the
#: raw loop (benchmarks/wasm_raw.c) does as many. Measured on hello, blocks of 50 after a
#: pause: the first launch of a block ~17-19 us in both, the next ~2.5, then ~1.7.
WARM_LAUNCHES = 1
#: Epoch tick: the granularity of a guest's timeout; coarse, so the ticker wakes rarely.
EPOCH_TICK_S = 0.1
#: Pool size for each linear memory when the lab does not say (``--max-memory``).
DEFAULT_MAX_MEMORY_BYTES = 64 * 1024 * 1024

_EXPORTS = (b"_initialize", b"edgelab_alloc", b"edgelab_handle", b"memory")
#: An el_launched record read as int64 words: error, trap, stage|detail, t0, tm, t1, t2,
#: response offset, response length.
_RECORD_WORDS = LAUNCHED.size // 8
_STAGE_WORD = 2
_T0_WORD = 3
_AT_WORD = 7
_SIGNATURES = {
    "_initialize": ((), ()),
    "edgelab_alloc": (("i32",), ("i32",)),
    "edgelab_handle": (("i32", "i32"), ("i64",)),
}


def engine_config(max_memory_bytes: int = DEFAULT_MAX_MEMORY_BYTES, pooling: bool = True) -> Any:
    """The Engine configuration shared by the host, its cached modules and the raw baseline.

    ``max_memory_bytes`` is the most any instance's linear memory may grow to: the size of a
    pool slot. A module whose memory could grow further is refused at load. Without
    ``pooling`` (where it does not fit, see ``pooling_fits``) each memory is mapped when an
    instance is made, at exactly its size, and moved when it grows: ~15-25 us more per cold
    start here, the same memory per resident instance.
    """
    config = wasmtime.Config()
    config.memory_guard_size = MEMORY_GUARD_BYTES
    config.memory_reservation_for_growth = 0
    config.memory_init_cow = MEMORY_INIT_COW
    config.epoch_interruption = True
    config.max_wasm_stack = MAX_WASM_STACK_BYTES
    if not pooling:
        config.memory_reservation = 0
        return config
    config.memory_reservation = max_memory_bytes
    capi.set_pooling(
        config,
        slots=POOL_SLOTS,
        stacks=POOL_STACKS,
        max_memory_bytes=max_memory_bytes,
        keep_resident_bytes=KEEP_RESIDENT_BYTES,
    )
    return config


def wasmtime_version() -> str:
    """The version in the metadata installed beside the wasmtime package imported here: read
    directly, because importing importlib.metadata cost ~15-20 ms of every host's start."""
    site = Path(wasmtime.__file__).resolve().parent.parent
    found = list(site.glob("wasmtime-*.dist-info/METADATA"))
    if len(found) == 1:  # more than one (a stale copy beside it): importlib.metadata decides
        try:
            with found[0].open(encoding="utf-8") as lines:
                for line in lines:
                    if line.startswith("Version:"):
                        return line.partition(":")[2].strip()
                    if not line.strip():  # the headers end here
                        break
        except OSError:
            pass
    return metadata_wasmtime_version()


class GuestError(Exception):
    """A launch or request failed inside the host; ``kind`` is "timeout" or "failed"."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _hot_error(call: HotCall | HotLaunched, cap: int) -> GuestError:
    """The failure a hot-path call stopped at, as one line (and the error or trap freed)."""
    template = HOT_STAGES.get(call.stage, "hot path stopped at unknown stage {stage}")
    if template is None:
        exc = _error_text(call.error or 0, call.trap or 0)
        if call.stage == 11:  # making the module (wasm:jit, wasm:aot)
            return GuestError(exc.kind, f"cannot make the module: {exc}")
        return exc
    export = _EXPORTS[call.detail].decode() if 0 <= call.detail < len(_EXPORTS) else "?"
    return GuestError(
        "failed", template.format(export=export, stage=call.stage, cap=format_cap(cap))
    )


def deadline_ticks(timeout_s: float) -> int:
    """Epoch ticks for ``timeout_s``, rounded up, plus one for the tick already under way."""
    return max(1, int(-(-timeout_s // EPOCH_TICK_S))) + 1


def format_cap(n: int) -> str:
    """A byte cap as the other runtimes write it: "16 MiB", "64 KiB", "1,000 bytes"."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n:,} bytes"


def _error_text(error_ptr: int, trap_ptr: int) -> GuestError:
    """Turn a wasmtime error or trap pointer into one clear line (and free it)."""
    if trap_ptr:
        interrupted, message = capi.take_trap(trap_ptr)
        if interrupted:
            return GuestError("timeout", "timed out")
        return GuestError("failed", f"trapped: {_last_line(message)}")
    exit_code, message = capi.take_error(error_ptr)
    if exit_code is not None:
        return GuestError("failed", f"exited with code {exit_code}")
    lowered = message.lower()
    if "maximum concurrent limit" in lowered:
        return GuestError("limit", f"wasm pool full: {POOL_SLOTS:,} instances per host")
    if "os error 12" in lowered or "cannot allocate memory" in lowered:
        return GuestError("limit", host_out_of_memory(_last_line(message)))
    if "memory" in lowered and ("limit" in lowered or "allocate" in lowered):
        return GuestError("failed", f"out of memory ({_last_line(message)})")
    if "interrupt" in lowered:
        return GuestError("timeout", "timed out")
    return GuestError("failed", f"trapped: {_last_line(message)}")


def _last_line(message: str) -> str:
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    line = lines[-1] if lines else "unknown error"
    return line.removeprefix("wasm trap: ")


# -- modules -------------------------------------------------------------------------------
def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        temp.write_bytes(data)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def load_module(
    engine: Any, wasm_path: Path, cwasm_path: Path | None
) -> tuple[Any, dict[str, Any]]:
    """The module from its precompiled cache if intact, else compiled and cached again.

    The cache file's SHA-256 sits beside it: wasmtime trusts precompiled code, so a file that
    does not match its digest is never deserialized.
    """
    info: dict[str, Any] = {"cache": str(cwasm_path) if cwasm_path else ""}
    started = time.perf_counter_ns()
    if cwasm_path is not None:
        digest_path = cwasm_path.with_name(cwasm_path.name + ".sha256")
        try:
            if digest_path.read_text().strip() == _digest(cwasm_path):
                module = wasmtime.Module.deserialize_file(engine, str(cwasm_path))
                info.update(source="cache", load_ns=time.perf_counter_ns() - started)
                return module, info
            info["cache_problem"] = "digest mismatch"
        except FileNotFoundError:
            info["cache_problem"] = "not cached yet"
        except (OSError, wasmtime.WasmtimeError) as exc:
            info["cache_problem"] = _last_line(str(exc))
    module = wasmtime.Module.from_file(engine, str(wasm_path))
    info.update(source="compiled", load_ns=time.perf_counter_ns() - started)
    if cwasm_path is not None:
        data = bytes(module.serialize())
        try:
            _write_atomically(cwasm_path, data)
            _write_atomically(
                cwasm_path.with_name(cwasm_path.name + ".sha256"),
                hashlib.sha256(data).hexdigest().encode(),
            )
        except OSError as exc:
            info["cache_problem"] = f"cannot write cache: {exc}"
    return module, info


def _check_exports(module: Any) -> None:
    found = {e.name: e.type for e in module.exports}
    for name, (params, results) in _SIGNATURES.items():
        kind = found.get(name)
        if not isinstance(kind, wasmtime.FuncType):
            raise GuestError("failed", f"module does not export function {name}")
        got = (tuple(str(p) for p in kind.params), tuple(str(r) for r in kind.results))
        if got != (params, results):
            raise GuestError(
                "failed", f"export {name} has signature {got}, want {(params, results)}"
            )
    if not isinstance(found.get("memory"), wasmtime.MemoryType):
        raise GuestError("failed", "module does not export its memory")


def _memory_maximum_bytes(module: Any) -> int:
    """The most the module's exported memory may grow to, in bytes (4 GiB if unbounded)."""
    for export in module.exports:
        if isinstance(export.type, wasmtime.MemoryType):
            maximum = export.type.limits.max
            return (maximum if maximum is not None else 65536) * 65536
    return 0


class LoadedModule:
    """A module ready to instantiate: imports resolved once, limits per store."""

    def __init__(
        self,
        host: Host,
        name: str,
        module: Any,
        memory_limit: int,
        timeout_s: float,
        max_response_bytes: int,
        source: bytes = b"",
    ) -> None:
        _check_exports(module)
        self.name = name
        self.number = len(host.module_list)
        #: Mode "pre": the module, instantiated from ``pre`` at every launch. The other modes
        #: make the module inside every launch from ``source`` (the .wasm, or the precompiled
        #: bytes) and keep no module between launches.
        self.module = module if host.mode == "pre" else None
        self.pre = host.linker.instantiate_pre(module) if host.mode == "pre" else None
        self.pre_ptr = _addr(self.pre) if self.pre is not None else 0
        self._source = ctypes.create_string_buffer(source, len(source)) if source else None
        self.source_ptr = ctypes.addressof(self._source) if self._source is not None else 0
        self.source_len = len(source)
        self.memory_limit = memory_limit
        self.deadline_ticks = deadline_ticks(timeout_s)
        #: The longest response the lab takes from this workload (``max_response_bytes``):
        #: a longer one fails the launch or request, and the instance is dropped.
        self.max_response = max_response_bytes
        #: A module that imports nothing from WASI cannot use it: a WASI context would cost
        #: time and memory per instance and grant nothing. Modules that do import WASI get a
        #: deny-by-default one (no args but the name, no env, no preopens, no stdio).
        self.wasi = any(i.module.startswith("wasi") for i in module.imports)
        self.argv0 = ctypes.create_string_buffer(name.encode())
        self.argv = (c_char_p * 1)(ctypes.cast(self.argv0, c_char_p))
        #: The hot path's inputs that stay the same for every launch of this module.
        self.call = HotCall(
            engine=host.engine_ptr,
            pre=self.pre_ptr or None,
            memory_limit=memory_limit,
            deadline_ticks=self.deadline_ticks,
            wasi_argv=ctypes.addressof(self.argv) if self.wasi else None,
            max_response=max_response_bytes,
            linker=host.linker_ptr,
            module_bytes=self.source_ptr or None,
            module_len=self.source_len,
            mode={"pre": MODE_PRE, "compile": MODE_COMPILE, "deserialize": MODE_DESERIALIZE}[
                host.mode
            ],
        )
        self.call_ptr = ctypes.addressof(self.call)


class CommandModule:
    """A person's WASI command (request on stdin, response on stdout, exit 0) ready to launch:
    its grants as C arrays the hot path reads at every launch (each launch builds a fresh WASI
    context from them), its ``_start`` checked once here."""

    def __init__(
        self,
        host: Host,
        name: str,
        module: Any,
        memory_limit: int,
        timeout_s: float,
        max_response_bytes: int,
        argv0: str,
        dirs: list[tuple[str, str]],
        env: list[tuple[str, str]],
        source: bytes = b"",
    ) -> None:
        start = {e.name: e.type for e in module.exports}.get("_start")
        if not isinstance(start, wasmtime.FuncType) or list(start.params) or list(start.results):
            raise GuestError("failed", f"{name} exports no _start function of type () -> ()")
        self.name = name
        self.number = len(host.module_list)
        self.module = module if host.mode == "pre" else None
        self.pre = host.linker.instantiate_pre(module) if host.mode == "pre" else None
        self.pre_ptr = _addr(self.pre) if self.pre is not None else 0
        self._source = ctypes.create_string_buffer(source, len(source)) if source else None
        self.memory_limit = memory_limit
        self.deadline_ticks = deadline_ticks(timeout_s)
        self.max_response = max_response_bytes
        self._keep: list[Any] = []  # every buffer the C arrays point into

        def strings(values: list[str]) -> Any:
            buffers = [ctypes.create_string_buffer(v.encode()) for v in values]
            self._keep.extend(buffers)
            array_ = (c_char_p * max(1, len(values)))(*[ctypes.cast(b, c_char_p) for b in buffers])
            self._keep.append(array_)
            return ctypes.addressof(array_)

        self.call = HotCommand(
            engine=host.engine_ptr,
            pre=self.pre_ptr or None,
            memory_limit=memory_limit,
            deadline_ticks=self.deadline_ticks,
            argv=strings([argv0]),
            argc=1,
            env_names=strings([k for k, _ in env]),
            env_values=strings([v for _, v in env]),
            envc=len(env),
            dir_hosts=strings([h for h, _ in dirs]),
            dir_guests=strings([g for _, g in dirs]),
            dirc=len(dirs),
            max_response=max_response_bytes,
            linker=host.linker_ptr,
            module_bytes=ctypes.addressof(self._source) if self._source is not None else None,
            module_len=len(source),
            mode={"pre": MODE_PRE, "compile": MODE_COMPILE, "deserialize": MODE_DESERIALIZE}[
                host.mode
            ],
        )
        self.call_ptr = ctypes.addressof(self.call)
        self.dirs = dirs

    def failure(self, call: HotCommand) -> GuestError:
        """The one line a failed command launch says (its error or trap freed), with the first
        line of what it wrote to stderr."""
        stderr = ""
        if call.err_len:
            text = ctypes.string_at(call.err, min(call.err_len, 4096)).decode("utf-8", "replace")
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            stderr = f"; stderr: {lines[0][:200]}" if lines else ""
        stage = call.stage
        if stage in (9, 10) and (call.error or call.trap):
            _error_text(call.error or 0, call.trap or 0)  # freed: the output limit is the line
        if stage == CMD_EXIT:
            return GuestError("failed", f"exited with status {call.exit_code}{stderr}")
        if stage == 10:
            return GuestError(
                "failed",
                f"response exceeded {format_cap(self.max_response)} (stdout past the limit; "
                "the instance was dropped)",
            )
        if stage == 9:
            return GuestError("failed", "the wasm host could not allocate the stdout buffer")
        if stage == 3:
            return GuestError("failed", f"{self.name} has no export _start")
        if stage == 1 and not call.error:
            host_dir, guest = self.dirs[call.exit_code]
            return GuestError("failed", f"cannot preopen {host_dir} as {guest}")
        exc = _error_text(call.error or 0, call.trap or 0)
        if stage == 11:
            return GuestError(exc.kind, f"cannot make the module: {exc}")
        if stage == 1:
            return GuestError(exc.kind, f"cannot set up WASI: {exc}")
        return GuestError(exc.kind, f"{exc}{stderr}")


class Host:
    """Every module and resident instance of one host process, keyed by integer ids.

    ``mode`` is how each launch gets its module (``records.MODES``): "pre" instantiates one
    prepared at load (the wasm and wasm:mmap rungs), "compile" compiles the ``.wasm`` inside
    every launch (wasm:jit), "deserialize" deserializes the precompiled module inside every
    launch (wasm:aot).
    """

    def __init__(
        self,
        max_memory_bytes: int = DEFAULT_MAX_MEMORY_BYTES,
        allocator: str = "pool",
        instances_per_store: int = 1,
        mode: str = "pre",
    ) -> None:
        if allocator not in ALLOCATORS:
            raise ValueError(f"unknown allocator {allocator!r}")
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        if instances_per_store < 1:
            raise ValueError(f"instances per Store must be at least 1, not {instances_per_store}")
        self.max_memory_bytes = max_memory_bytes
        self.mode = mode
        pooling = allocator == "pool" and pooling_fits(max_memory_bytes)
        if pooling:
            self.allocator = f"pooling ({POOL_SLOTS:,} slots of {max_memory_bytes >> 20} MiB)"
        elif allocator == "pool":
            self.allocator = "on demand (the instance pool does not fit under ulimit -v)"
        else:
            self.allocator = "on demand (a fresh mapping per memory)"
        #: The Engine configuration in a word, for naming caches of code compiled for it.
        self.engine_tag = f"pool{max_memory_bytes >> 20}m" if pooling else "ondemand"
        self.engine = wasmtime.Engine(engine_config(max_memory_bytes, pooling))
        self.engine_ptr = _addr(self.engine)
        self.linker = wasmtime.Linker(self.engine)
        self.linker.define_wasi()
        self.linker_ptr = _addr(self.linker)
        self.modules: dict[str, LoadedModule] = {}
        self.module_list: list[LoadedModule] = []
        self.residents = Residents(instances_per_store)
        #: The compiled hot path once the lab hands one over (``use_hotpath``); until then,
        #: or if it cannot be loaded, launches go through ctypes call by call.
        self.hot: HotPath | None = None
        self._scratch_slot = ctypes.create_string_buffer(_SLOT_BYTES)
        self._scratch = ctypes.addressof(self._scratch_slot)
        self._args = capi.val_raw_array(2)
        self._args_ptr = ctypes.addressof(self._args)
        self._trap = c_void_p()
        self._trap_ptr = ctypes.addressof(self._trap)
        self._module_out = c_void_p()
        self._module_out_ptr = ctypes.addressof(self._module_out)
        self._ticker = threading.Thread(target=self._tick, name="epoch", daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        engine = self.engine_ptr
        while True:
            time.sleep(EPOCH_TICK_S)
            _increment_epoch(engine)

    # -- commands ------------------------------------------------------------------------
    def use_hotpath(self, path: str) -> dict[str, Any]:
        """Launch through the compiled hot path at ``path`` from now on."""
        try:
            self.hot = HotPath(path)
        except LayoutMismatch as exc:
            raise GuestError("failed", str(exc)) from None
        return {"launch_path": "compiled", "path": path}

    def load(
        self,
        name: str,
        wasm_path: str,
        cwasm_path: str | None,
        memory_limit: int,
        timeout_s: float,
        max_response_bytes: int | None = None,
    ) -> dict[str, Any]:
        if max_response_bytes is None:
            # The lab always sends it: only a direct call imports the manifest reader.
            from edgelab.workloads import DEFAULT_MAX_RESPONSE_BYTES

            max_response_bytes = DEFAULT_MAX_RESPONSE_BYTES
        module, info = load_module(
            self.engine, Path(wasm_path), Path(cwasm_path) if cwasm_path else None
        )
        grows_to = min(memory_limit, _memory_maximum_bytes(module))
        if grows_to > self.max_memory_bytes:
            raise GuestError(
                "failed",
                f"{name}'s memory may grow to {grows_to >> 20} MiB, more than the "
                f"{self.max_memory_bytes >> 20} MiB of a pool slot in this wasm host",
            )
        if self.mode == "compile":
            source = Path(wasm_path).read_bytes()
        elif self.mode == "deserialize":
            source = bytes(module.serialize())
        else:
            source = b""
        loaded = LoadedModule(
            self, name, module, memory_limit, timeout_s, max_response_bytes, source
        )
        old = self.modules.get(name)
        if old is not None:
            loaded.number = old.number  # resident instances of it keep their module number
        self.modules[name] = loaded
        if loaded.number == len(self.module_list):
            self.module_list.append(loaded)
        else:
            self.module_list[loaded.number] = loaded
        info["mode"] = self.mode
        if source:
            info["source_bytes"] = len(source)
        return info

    def load_command(
        self,
        name: str,
        wasm_path: str,
        cwasm_path: str | None,
        memory_limit: int,
        timeout_s: float,
        max_response_bytes: int,
        argv0: str,
        dirs: list[tuple[str, str]],
        env: list[tuple[str, str]],
    ) -> dict[str, Any]:
        """Load a person's WASI command (compiled once, cached as ``cwasm_path``). Its memory
        limit is the workload's or this host's pool slot, whichever is less (both said)."""
        module, info = load_module(
            self.engine, Path(wasm_path), Path(cwasm_path) if cwasm_path else None
        )
        limit = min(memory_limit, self.max_memory_bytes)
        if self.mode == "compile":
            source = Path(wasm_path).read_bytes()
        elif self.mode == "deserialize":
            source = bytes(module.serialize())
        else:
            source = b""
        loaded = CommandModule(
            self, name, module, limit, timeout_s, max_response_bytes, argv0,
            [tuple(d) for d in dirs], [tuple(e) for e in env], source,  # type: ignore[misc]
        )  # fmt: skip
        old = self.modules.get(name)
        if old is not None:
            loaded.number = old.number
        self.modules[name] = loaded  # type: ignore[assignment]
        if loaded.number == len(self.module_list):
            self.module_list.append(loaded)  # type: ignore[arg-type]
        else:
            self.module_list[loaded.number] = loaded  # type: ignore[call-overload]
        info.update(mode=self.mode, memory_limit=limit)
        if source:
            info["source_bytes"] = len(source)
        return info

    def _command_one(
        self, module: CommandModule, request: bytes, keep: bool, ticks: int
    ) -> tuple[int, bytes, tuple[int, ...], int, int | None]:
        """One command launch: (id or -1, stdout, phases, startup, exit). Kept: instantiated
        with its WASI context and left waiting (``_start`` not called). Raises GuestError with
        nothing left behind."""
        hot = self.hot
        if hot is None:
            raise GuestError(
                "failed",
                "WASI commands run through the compiled hot path only, and this host has none",
            )
        residents = self.residents
        index = residents.reserve() if keep else -1
        call = module.call
        call.slot = residents.slot_address(index) if keep else self._scratch
        call.deadline_ticks = ticks
        call.request = request
        call.request_len = len(request)
        call.run = 0 if keep else 1
        failed = hot.command(module.call_ptr)
        call.request = None
        if failed:
            raise module.failure(call)
        phases, startup, exit_ns = command_phases(
            self.mode, call.t0, call.tm, call.tw, call.t1, call.tf, call.t2
        )
        if keep:
            return residents.add(index, call.store, module.number), b"", phases, startup, None
        body = ctypes.string_at(call.out, call.out_len) if call.out_len else b""
        _store_delete(call.store)
        return -1, body, phases, startup, exit_ns

    def command_batch(
        self,
        name: str,
        request: bytes,
        n: int,
        keep: bool,
        timeout_s: float | None = None,
        warm: bool = True,
    ) -> CommandBatch:
        """Up to ``n`` command launches (kept: left waiting), after one untimed warm-up when
        none is kept and ``warm`` (a burst's block, as el_launch_batch warms up); stops at the
        first failure (the batch's ``failure``)."""
        module = self._module(name)
        if not isinstance(module, CommandModule):
            raise GuestError("failed", f"{name} is not a WASI command in this host")
        ticks = module.deadline_ticks if timeout_s is None else deadline_ticks(timeout_s)
        rows: list[tuple[int, bytes, tuple[int, ...], int, int | None]] = []
        try:
            if warm and not keep and n > 0:
                for _ in range(WARM_LAUNCHES):
                    self._command_one(module, request, False, ticks)
            for _ in range(n):
                rows.append(self._command_one(module, request, keep, ticks))
        except GuestError as exc:
            return CommandBatch(rows, LaunchRecord.failed(exc.kind, str(exc)))
        except MemoryError:
            return CommandBatch(
                rows, LaunchRecord.failed("limit", host_out_of_memory("MemoryError"))
            )
        return CommandBatch(rows)

    def _module(self, name: str) -> LoadedModule:
        module = self.modules.get(name)
        if module is None:
            raise GuestError("failed", f"module {name} is not loaded in the wasm host")
        return module

    def launch(
        self, name: str, request: bytes, keep: bool, timeout_s: float | None = None
    ) -> LaunchRecord:
        """One launch; a failure is a record too (its ``error`` set), never an exception."""
        module = self._module(name)
        ticks = module.deadline_ticks if timeout_s is None else deadline_ticks(timeout_s)
        try:
            instance_id, status, body, stamps = self._launch_one(module, request, keep, ticks)
        except GuestError as exc:
            return LaunchRecord.failed(exc.kind, str(exc))
        t0, tm, t1, t2 = stamps
        return LaunchRecord(instance_id, status, body, phases_of(self.mode, *stamps), t2 - t0)

    def _launch_one(
        self, module: LoadedModule, request: bytes, keep: bool, ticks: int
    ) -> tuple[int | None, int, bytes, tuple[int, int, int, int]]:
        """(id or None, status, body, stamps); raises GuestError with nothing left behind."""
        residents = self.residents
        index = residents.reserve() if keep else -1
        base = residents.slot_address(index) if keep else self._scratch
        reuse = residents.store_to_share(module.number) if keep else 0
        store = 0
        try:
            if self.hot is not None:
                store, status, body, stamps = self._launch_hot(
                    self.hot, module, request, base, ticks, reuse
                )
            else:
                store, status, body, stamps = self._launch_ctypes(
                    module, request, base, ticks, reuse
                )
        finally:
            if keep:
                residents.made(reuse or store, module.number, bool(reuse))
        if not keep:
            _store_delete(store)
            return None, status, body, stamps
        return residents.add(index, store, module.number), status, body, stamps

    def _make_module(self, module: LoadedModule) -> int:
        """Compile or deserialize the module (modes "compile", "deserialize"): the pointer."""
        make = capi.module_new if self.mode == "compile" else capi.module_deserialize
        self._module_out.value = None
        err = make(self.engine_ptr, module.source_ptr, module.source_len, self._module_out_ptr)
        if err:
            exc = _error_text(err, 0)
            raise GuestError(exc.kind, f"cannot make the module: {exc}")
        return self._module_out.value or 0

    def _launch_ctypes(
        self, module: LoadedModule, request: bytes, base: int, ticks: int, reuse: int = 0
    ) -> tuple[int, int, bytes, tuple[int, int, int, int]]:
        """A launch through ctypes call by call: (store, status, body, stamps); on a failure
        GuestError, with the Store already deleted (unless it was ``reuse``, a Store other
        instances live in)."""
        trap_ptr = self._trap_ptr
        self._trap.value = None
        t0 = time.perf_counter_ns()
        made = self._make_module(module) if self.mode != "pre" else 0
        tm = time.perf_counter_ns() if made else t0
        store = reuse or _store_new(self.engine_ptr, None, None)
        ctx = _store_context(store)
        err = None
        if module.wasi and not reuse:
            wasi = _wasi_config_new()  # deny by default: no env, preopens, stdin or stdio
            _wasi_config_set_argv(wasi, 1, module.argv)
            err = _set_wasi(ctx, wasi)
        try:
            if err:
                raise _error_text(err, 0)
            if not reuse:
                _store_limiter(store, module.memory_limit, -1, -1, -1, -1)  # per memory
            _set_epoch_deadline(ctx, ticks)
            if made:
                err = capi.linker_instantiate(self.linker_ptr, ctx, made, base, trap_ptr)
                capi.module_delete(made)  # the instance keeps what it needs of it
                made = 0
            else:
                err = _pre_instantiate(module.pre_ptr, ctx, base, trap_ptr)
            if err or self._trap.value:
                raise _error_text(err, self._trap.value or 0)
            offset = base + _INSTANCE_BYTES
            for export in _EXPORTS:
                if not _export_get(ctx, base, export, len(export), offset):
                    raise GuestError("failed", f"module has no export {export.decode()}")
                offset += _EXTERN_BYTES
            err = _call(ctx, base + _INSTANCE_BYTES + _EXTERN_OF, self._args_ptr, 0, trap_ptr)
            if err or self._trap.value:
                raise _error_text(err, self._trap.value or 0)
            t1 = time.perf_counter_ns()
            status, body = self._handle(ctx, base, request, module.max_response)
            t2 = time.perf_counter_ns()
        except BaseException:
            if made:
                capi.module_delete(made)
            if not reuse:
                _store_delete(store)
            raise
        return store, status, body, (t0, tm, t1, t2)

    def _launch_hot(
        self,
        hot: HotPath,
        module: LoadedModule,
        request: bytes,
        base: int,
        ticks: int,
        reuse: int = 0,
    ) -> tuple[int, int, bytes, tuple[int, int, int, int]]:
        """``launch`` in one foreign call: the timestamps are taken inside it."""
        call = module.call
        arm(call, base, ticks, request, reuse)
        failed = hot.launch(module.call_ptr)
        call.request = None  # the call holds no reference to the request between calls
        if failed:
            raise _hot_error(call, module.max_response)
        raw = ctypes.string_at(call.response, call.response_len)
        return call.store, raw[0], raw[1:], (call.t0, call.tm, call.t1, call.t2)

    def _launch_batch_hot(
        self, hot: HotPath, module: LoadedModule, request: bytes, n: int, ticks: int
    ) -> LaunchBatch:
        call = module.call
        arm(call, self._scratch, ticks, request)
        records = (HotLaunched * n)()
        done = hot.launch_batch(module.call_ptr, n, WARM_LAUNCHES, records)
        call.request = None
        # The records' fields as strided slices, the responses in one copy: no Python object
        # per launch (field by field through ctypes cost ~3 us per launch, more than the
        # launch itself). A record is _RECORD_WORDS int64s (see hotpath.LAUNCHED).
        words = memoryview(records).cast("B")[: done * LAUNCHED.size].cast("q")
        stages = words[_STAGE_WORD::_RECORD_WORDS]
        ok = done if not done or not (stages[done - 1] & 0xFFFF_FFFF) else done - 1
        stamps = array("q", bytes(4 * 8 * ok))
        for k, word in enumerate((_T0_WORD, _T0_WORD + 1, _T0_WORD + 2, _T0_WORD + 3)):
            stamps[k::4] = array("q", words[word : ok * _RECORD_WORDS : _RECORD_WORDS])
        spans = array("q", bytes(2 * 8 * ok))
        spans[0::2] = array("q", words[_AT_WORD : ok * _RECORD_WORDS : _RECORD_WORDS])
        spans[1::2] = array("q", words[_AT_WORD + 1 : ok * _RECORD_WORDS : _RECORD_WORDS])
        end = spans[-2] + spans[-1] if ok else 0
        responses = ctypes.string_at(call.response, end) if end else b""
        failure = None
        if ok < done:
            exc = _hot_error(records[ok], module.max_response)
            failure = LaunchRecord.failed(exc.kind, str(exc))
        return LaunchBatch(self.mode, array("q", [-1]) * ok, stamps, spans, responses, failure)

    def _request_hot(
        self, hot: HotPath, module: LoadedModule, store: int, base: int, payload: bytes, ticks: int
    ) -> tuple[int, bytes, int]:
        call = module.call
        call.ctx = _store_context(store)
        arm(call, base, ticks, payload)
        failed = hot.request(module.call_ptr)
        call.request = None
        if failed:
            raise _hot_error(call, module.max_response)
        raw = ctypes.string_at(call.response, call.response_len)
        return raw[0], raw[1:], call.t2 - call.t0

    def _handle(self, ctx: int, base: int, payload: bytes, cap: int) -> tuple[int, bytes]:
        """alloc + write + handle + read on one instance: (status, body)."""
        args = self._args
        trap_ptr = self._trap_ptr
        externs = base + _INSTANCE_BYTES + _EXTERN_OF
        length = len(payload)
        args[0].i32 = length
        err = _call(ctx, externs + _EXTERN_BYTES, self._args_ptr, 1, trap_ptr)
        if err or self._trap.value:
            raise _error_text(err, self._trap.value or 0)
        pointer = args[0].i32 & 0xFFFFFFFF
        memory = externs + 3 * _EXTERN_BYTES
        data = _memory_data(ctx, memory)
        size = _memory_data_size(ctx, memory)
        if pointer == 0:
            # No buffer (the request exceeds the workload's limit, or memory ran out): as the
            # ABI says, edgelab_handle(0, len) answers the same rejection or "out of memory
            # for the request" a native instance gives. The request bytes are not written.
            pass
        elif pointer + length > size:
            raise GuestError("failed", "edgelab_alloc returned a buffer outside linear memory")
        elif length:
            ctypes.memmove(data + pointer, payload, length)
        args[0].i32 = pointer
        args[1].i32 = length
        err = _call(ctx, externs + 2 * _EXTERN_BYTES, self._args_ptr, 2, trap_ptr)
        if err or self._trap.value:
            raise _error_text(err, self._trap.value or 0)
        packed = args[0].i64 & 0xFFFF_FFFF_FFFF_FFFF
        response, response_len = packed >> 32, packed & 0xFFFF_FFFF
        data = _memory_data(ctx, memory)  # the memory may have grown and moved
        size = _memory_data_size(ctx, memory)
        if response_len == 0 or response + response_len > size:
            raise GuestError("failed", "edgelab_handle returned no response inside linear memory")
        if response_len - 1 > cap:  # the body (after the status byte), as natively
            raise GuestError("failed", f"response exceeded {format_cap(cap)}")
        raw = ctypes.string_at(data + response, response_len)
        return raw[0], raw[1:]

    def launch_batch(
        self, name: str, request: bytes, n: int, keep: bool, timeout_s: float | None = None
    ) -> LaunchBatch:
        """Up to ``n`` launches; stops at the first one that fails (the batch's ``failure``).

        Launches that are not kept (a burst of one rung) run back to back inside the hot
        path, each timed as ``launch`` times it; kept ones go one by one, each to its own slot.
        """
        module = self._module(name)
        ticks = module.deadline_ticks if timeout_s is None else deadline_ticks(timeout_s)
        if self.hot is not None and not keep and n > 0:
            return self._launch_batch_hot(self.hot, module, request, n, ticks)
        batch = BatchBuilder(self.mode)
        if not keep and n > 0:
            for _ in range(WARM_LAUNCHES):  # as el_launch_batch warms up: untimed, unreported
                try:
                    self._launch_one(module, request, False, ticks)
                except GuestError as exc:
                    return batch.done(LaunchRecord.failed(exc.kind, str(exc)))
        for _ in range(n):
            try:
                batch.add(*self._launch_one(module, request, keep, ticks))
            except GuestError as exc:
                return batch.done(LaunchRecord.failed(exc.kind, str(exc)))
            except MemoryError:
                # What this batch made so far is resident: it must reach the lab, not leak.
                return batch.done(LaunchRecord.failed("limit", host_out_of_memory("MemoryError")))
        return batch.done()

    def request(self, instance_id: int, payload: bytes, timeout_s: float | None = None) -> Answer:
        """One more request to a resident instance; a guest that traps or times out is
        dropped."""
        residents = self.residents
        index = residents.find(instance_id)
        if index is None:
            raise GuestError("failed", f"wasm instance {instance_id} is not running")
        store = residents.stores[index]
        base = residents.slot_address(index)
        module = self.module_list[residents.modules[index]]
        if isinstance(module, CommandModule):
            raise GuestError(
                "failed", "a WASI command instance answers once: it was launched waiting, not asked"
            )
        ticks = module.deadline_ticks if timeout_s is None else deadline_ticks(timeout_s)
        try:
            if self.hot is not None:
                return Answer(*self._request_hot(self.hot, module, store, base, payload, ticks))
            self._trap.value = None
            started = time.perf_counter_ns()
            ctx = _store_context(store)
            _set_epoch_deadline(ctx, ticks)
            status, body = self._handle(ctx, base, payload, module.max_response)
            return Answer(status, body, time.perf_counter_ns() - started)
        except GuestError:
            self.drop([instance_id])
            raise

    def drop(self, ids: list[int]) -> int:
        dropped = 0
        residents = self.residents
        for instance_id in ids:
            index = residents.find(instance_id)
            if index is not None:
                store = residents.remove(index)
                if store:
                    _store_delete(store)
                dropped += 1
        return dropped

    def drop_all(self) -> int:
        residents = self.residents
        live = residents.live()
        for index in live:
            store = residents.remove(index)
            if store:
                _store_delete(store)
        return len(live)

    def ping(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "instances": self.residents.count,
            "launch_path": "compiled" if self.hot is not None else "ctypes",
            "allocator": self.allocator,
            "engine": self.engine_tag,
            "instances_per_store": self.residents.per_store,
            "stores": len(self.residents.refs) if self.residents.per_store > 1 else None,
            "wasmtime": wasmtime_version(),
            "mode": self.mode,
        }


# -- the loop ------------------------------------------------------------------------------
#: Address space set aside at start (an untouched mapping: no memory) and given back when an
#: allocation fails, so that the host can still read the next command and send its answer
#: (saying which limit it hit) instead of dying with what it holds.
RESERVE_BYTES = 16 << 20


def _reserve() -> mmap.mmap | None:
    try:
        return mmap.mmap(-1, RESERVE_BYTES)
    except (MemoryError, OSError):
        return None


def _release(reserve: mmap.mmap | None) -> None:
    if reserve is not None:
        reserve.close()


def serve(
    in_fd: int,
    out_fd: int,
    max_memory_bytes: int = DEFAULT_MAX_MEMORY_BYTES,
    allocator: str = "pool",
    instances_per_store: int = 1,
    mode: str = "pre",
) -> None:
    """Answer the lab's ``Call``s with ``Ok``/``Err`` over the one IPC channel until it says
    "exit" or closes its end. The lab keeps the deadlines: this side waits for ever."""
    gc.disable()  # no cycles are made here; a collection would land inside a cold start
    host = Host(max_memory_bytes, allocator, instances_per_store, mode)
    channel = Channel(in_fd, out_fd)
    #: The reply when not even a reply can be made: framed before memory runs out.
    out_of_memory = encode(Err("limit", "wasm host out of memory"))
    reserve = _reserve()
    commands: dict[str, Callable[..., Any]] = {
        "use_hotpath": host.use_hotpath,
        "load": host.load,
        "launch": host.launch,
        "launch_batch": host.launch_batch,
        "load_command": host.load_command,
        "command_batch": host.command_batch,
        "request": host.request,
        "drop": host.drop,
        "drop_all": host.drop_all,
        "ping": host.ping,
    }
    while True:
        try:
            call = channel.recv(None)
        except ChannelClosed:
            break
        except MemoryError:
            _release(reserve)  # give it back and try again: the lab is waiting for an answer
            reserve = None
            continue  # pragma: no cover - only under a memory limit
        if not isinstance(call, Call) or call.command == "exit":
            break
        reply: Ok | Err
        try:
            reply = Ok(commands[call.command](*call.args))
        except GuestError as exc:
            reply = Err(exc.kind, str(exc))
        except MemoryError:
            _release(reserve)
            reserve = None
            reply = Err("limit", host_out_of_memory("MemoryError"))
        except Exception as exc:  # noqa: BLE001 - one bad command must not end the host
            reply = Err("failed", f"{type(exc).__name__}: {_last_line(str(exc))}")
        try:
            try:
                frame = encode(reply)
            except MemoryError:
                _release(reserve)
                reserve = None
                frame = encode(reply)
        except MemoryError:
            if isinstance(reply, Ok) and isinstance(reply.value, (LaunchBatch, CommandBatch)):
                host.drop(reply.value.kept_ids())  # never unseen
            frame = out_of_memory
        try:
            channel.send_raw(frame)
        except ChannelClosed:
            break
        if reserve is None:
            reserve = _reserve()
    host.drop_all()


def main() -> None:
    # The pipes are the protocol: keep stray prints (ours or a library's) off them.
    in_fd = os.dup(0)
    out_fd = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    sys.stdin = open(os.devnull)  # noqa: SIM115
    sys.stdout = sys.stderr
    parser = argparse.ArgumentParser(prog="python -m edgelab.runtimes.wasm.host")
    parser.add_argument("--max-memory", type=int, default=DEFAULT_MAX_MEMORY_BYTES)
    parser.add_argument("--allocator", choices=ALLOCATORS, default="pool")
    parser.add_argument("--instances-per-store", type=int, default=1)
    parser.add_argument("--mode", choices=MODES, default="pre")
    options = parser.parse_args()
    serve(
        in_fd,
        out_fd,
        options.max_memory,
        options.allocator,
        options.instances_per_store,
        options.mode,
    )
    # Every instance is dropped and every cache file written by now: tearing the interpreter
    # down (a last collection, module teardown) only made the lab wait ~50 ms at each close.
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
