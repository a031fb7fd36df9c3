"""Raw baseline for the Wasm runtime: bare wasmtime in this process, nothing of the lab.

Same Engine configuration as the host (``host.engine_config``, pooling allocator included)
and the module compiled once, outside the timing. Per iteration, timed: a fresh Store,
instantiate from an InstancePre, ``_initialize``, then ``edgelab_alloc`` + memory write +
``edgelab_handle`` + copying the response out. Dropping the Store is outside the timing, as in
the lab. No IPC, no bookkeeping, no epoch thread.

``api="c"`` (default) is a loop in C (``wasm_raw.c``, built here with ``zig cc`` and linked
against the wheel's libwasmtime): the floor, with no Python between calls. ``api="ctypes"``
makes the same calls from Python through ctypes, one foreign call each; ``api="wasmtime-py"``
uses the public wasmtime-py objects (Store, Func, Memory). The last two show what the host's
compiled hot path saves.
"""

from __future__ import annotations

import ctypes
import hashlib
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

RAW_SOURCE = Path(__file__).resolve().parent / "wasm_raw.c"
MEMORY_LIMIT_BYTES = 64 << 20


@lru_cache(maxsize=1)
def _library() -> ctypes.CDLL:
    """``wasm_raw.c`` built against the wheel's libwasmtime (cached in the edgelab cache)."""
    import subprocess
    import sys

    from edgelab.build import cache_dir
    from edgelab.runtimes.wasm import capi

    wheel_lib = capi.library_path()
    key = hashlib.sha256(RAW_SOURCE.read_bytes() + str(wheel_lib).encode()).hexdigest()[:16]
    output = cache_dir() / "bench" / f"wasm_raw-{key}.so"
    if not output.exists():
        output.parent.mkdir(parents=True, exist_ok=True)
        temp = output.with_name(f".{output.name}.tmp")
        subprocess.run(
            [sys.executable, "-m", "ziglang", "cc", "-shared", "-fPIC", "-O2", "-o", str(temp),
             str(RAW_SOURCE), f"-L{wheel_lib.parent}", f"-l:{wheel_lib.name}",
             f"-Wl,-rpath,{wheel_lib.parent}"],
            check=True,
        )  # fmt: skip
        temp.replace(output)
    lib = ctypes.CDLL(str(output))
    sizes = [ctypes.c_size_t() for _ in range(3)]
    lib.raw_sizes.restype = ctypes.c_size_t
    offset = lib.raw_sizes(*(ctypes.byref(size) for size in sizes))
    want = (capi.INSTANCE_BYTES, capi.EXTERN_BYTES, capi.VAL_BYTES)
    if tuple(size.value for size in sizes) != want or offset != capi.EXTERN_OF:
        raise RuntimeError("wasm_raw.c's struct layout does not match this wasmtime's C API")
    lib.raw_loop.restype = ctypes.c_int
    lib.raw_loop.argtypes = (
        ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_char_p,
        ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_void_p,
    )  # fmt: skip
    lib.raw_loop_source.restype = ctypes.c_int
    lib.raw_loop_source.argtypes = (
        ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int64,
        ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_void_p,
    )  # fmt: skip
    return lib


class _ModuleSource(ctypes.Structure):
    """``module_source`` in wasm_raw.c: how each launch gets its module."""

    _fields_ = [
        ("mode", ctypes.c_int),
        ("linker", ctypes.c_void_p),
        ("bytes", ctypes.c_void_p),
        ("len", ctypes.c_size_t),
    ]


#: rung -> (pooling allocator, mode): the same Engine configuration and module source as the
#: lab's burst host for that rung (edgelab.runtimes.wasm.runtime.STRATEGIES).
RUNGS = {
    "wasm": (True, 0),
    "wasm:mmap": (False, 0),
    "wasm:jit": (False, 1),
    "wasm:aot": (False, 2),
}


@lru_cache(maxsize=8)
def _prepared(wasm_path: Path, pooling: bool = True) -> tuple[Any, Any, bool]:
    """(engine, InstancePre, needs WASI), made once per module: not part of any timing."""
    import wasmtime

    from edgelab.runtimes.wasm import host as H
    from edgelab.runtimes.wasm import pool_memory_bytes

    memory = pool_memory_bytes()
    engine = wasmtime.Engine(H.engine_config(memory, pooling and H.pooling_fits(memory)))
    module = wasmtime.Module.from_file(engine, str(wasm_path))
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    pre = linker.instantiate_pre(module)
    needs_wasi = any(i.module.startswith("wasi") for i in module.imports)  # type: ignore[attr-defined]
    return engine, pre, needs_wasi


@lru_cache(maxsize=8)
def _sources(wasm_path: Path) -> tuple[Any, Any, bytes, bytes]:
    """For the rungs that make the module at every launch: (the on-demand engine, its linker
    with WASI, the .wasm bytes, the module precompiled for that engine), made once."""
    import wasmtime

    engine, _pre, _wasi = _prepared(wasm_path, False)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    wasm = Path(wasm_path).read_bytes()
    return engine, linker, wasm, bytes(wasmtime.Module(engine, wasm).serialize())


def raw_cold_starts(rung: str, workload: str, n: int) -> list[int]:
    """``n`` startup times in ns of the same work the lab times for a Wasm rung, in a bare C
    loop over wasmtime's C API (no host process, IPC, records or Python between calls): a
    fresh Store, instantiate (wasm: a warm pool slot; the others a fresh mapping), the export
    lookups, _initialize and the first request with its response copied out; wasm:jit first
    compiles the .wasm and wasm:aot first deserializes the precompiled module, inside the
    timing, then instantiates through the linker, as the lab's host does. Each loop starts
    with the host's untimed warm-up launches. The workload's default request."""
    from edgelab.build import ensure_wasm
    from edgelab.runtimes.wasm import host as H
    from edgelab.runtimes.wasm.capi import address
    from edgelab.workloads import get_workload

    if rung not in RUNGS:
        raise ValueError(f"no raw wasm baseline for {rung!r} (one of {', '.join(RUNGS)})")
    pooling, mode = RUNGS[rung]
    spec = get_workload(workload)
    path = Path(ensure_wasm(spec))
    request = spec.default_request
    if mode == 0:
        engine, pre, needs_wasi = _prepared(path, pooling)
        pre_ptr, linker_ptr, data = address(pre), 0, b""
    else:
        engine, linker, wasm, compiled = _sources(path)
        _engine, _pre, needs_wasi = _prepared(path, False)
        pre_ptr, linker_ptr, data = 0, address(linker), wasm if mode == 1 else compiled
    buffer = ctypes.create_string_buffer(data, len(data)) if data else None
    source = _ModuleSource(
        mode, linker_ptr or None, ctypes.addressof(buffer) if buffer else None, len(data)
    )
    timings = (ctypes.c_int64 * n)()
    failed = _library().raw_loop_source(
        address(engine), pre_ptr or None, ctypes.byref(source), int(needs_wasi),
        MEMORY_LIMIT_BYTES, request, len(request), n, H.WARM_LAUNCHES, ctypes.addressof(timings),
    )  # fmt: skip
    if failed:
        raise RuntimeError(f"raw {rung} loop failed at iteration {-failed}")
    return list(timings)


def raw_wasm_cold_start_ns(
    wasm_path: Path, request: bytes, n: int, api: str = "c", warm: int | None = None
) -> list[int]:
    """``n`` timed cold starts after ``warm`` untimed ones (by default as many as the lab's
    host runs before each batch, ``host.WARM_LAUNCHES``)."""
    from edgelab.runtimes.wasm import capi
    from edgelab.runtimes.wasm import host as H

    warm = H.WARM_LAUNCHES if warm is None else warm
    engine, pre, needs_wasi = _prepared(Path(wasm_path))
    if api == "c":
        timings = (ctypes.c_int64 * n)()
        failed = _library().raw_loop(
            capi.address(engine), capi.address(pre), int(needs_wasi), MEMORY_LIMIT_BYTES,
            request, len(request), n, warm, ctypes.addressof(timings),
        )  # fmt: skip
        if failed:
            raise RuntimeError(f"raw wasm loop failed at iteration {-failed}")
        return list(timings)
    if warm:
        raw_wasm_cold_start_ns(wasm_path, request, warm, api, 0)
    if api == "wasmtime-py":
        return _public_api(engine, pre, request, n, needs_wasi)
    if api != "ctypes":
        raise ValueError(f"unknown api {api!r} (c, ctypes or wasmtime-py)")

    engine_ptr = capi.address(engine)
    pre_ptr = capi.address(pre)
    args = capi.val_raw_array(2)
    args_ptr = ctypes.addressof(args)
    trap = ctypes.c_void_p()
    trap_ptr = ctypes.addressof(trap)
    argv0 = ctypes.create_string_buffer(b"raw")
    argv = (ctypes.c_char_p * 1)(ctypes.cast(argv0, ctypes.c_char_p))
    exports = H._EXPORTS
    inst_bytes, extern_bytes, extern_of = capi.INSTANCE_BYTES, capi.EXTERN_BYTES, capi.EXTERN_OF
    length = len(request)
    timings_ns: list[int] = []
    for _ in range(n):
        started = time.perf_counter_ns()
        store = capi.store_new(engine_ptr, None, None)
        ctx = capi.store_context(store)
        if needs_wasi:
            wasi = capi.wasi_config_new()
            capi.wasi_config_set_argv(wasi, 1, argv)
            capi.set_wasi(ctx, wasi)
        capi.store_limiter(store, MEMORY_LIMIT_BYTES, -1, -1, -1, -1)
        capi.set_epoch_deadline(ctx, 1 << 30)
        slot = ctypes.create_string_buffer(H._SLOT_BYTES)
        base = ctypes.addressof(slot)
        if capi.pre_instantiate(pre_ptr, ctx, base, trap_ptr) or trap.value:
            raise RuntimeError("instantiate failed")
        offset = base + inst_bytes
        for name in exports:
            capi.export_get(ctx, base, name, len(name), offset)
            offset += extern_bytes
        funcs = base + inst_bytes + extern_of
        capi.call_unchecked(ctx, funcs, args_ptr, 0, trap_ptr)
        args[0].i32 = length
        capi.call_unchecked(ctx, funcs + extern_bytes, args_ptr, 1, trap_ptr)
        pointer = args[0].i32 & 0xFFFFFFFF
        memory = funcs + 3 * extern_bytes
        ctypes.memmove(capi.memory_data(ctx, memory) + pointer, request, length)
        args[0].i32 = pointer
        args[1].i32 = length
        capi.call_unchecked(ctx, funcs + 2 * extern_bytes, args_ptr, 2, trap_ptr)
        packed = args[0].i64 & 0xFFFF_FFFF_FFFF_FFFF
        response = ctypes.string_at(
            capi.memory_data(ctx, memory) + (packed >> 32), packed & 0xFFFF_FFFF
        )
        timings_ns.append(time.perf_counter_ns() - started)
        if not response:
            raise RuntimeError("empty response")
        capi.store_delete(store)
    return timings_ns


def _public_api(engine: object, pre: object, request: bytes, n: int, needs_wasi: bool) -> list[int]:
    import wasmtime

    timings: list[int] = []
    for _ in range(n):
        started = time.perf_counter_ns()
        store = wasmtime.Store(engine)  # type: ignore[arg-type]
        if needs_wasi:
            wasi = wasmtime.WasiConfig()
            wasi.argv = ["raw"]
            store.set_wasi(wasi)
        store.set_limits(memory_size=MEMORY_LIMIT_BYTES)
        store.set_epoch_deadline(1 << 30)
        instance = pre.instantiate(store)  # type: ignore[attr-defined]
        exports = instance.exports(store)
        exports["_initialize"](store)
        pointer = exports["edgelab_alloc"](store, len(request))
        memory = exports["memory"]
        memory.write(store, request, pointer)
        packed = exports["edgelab_handle"](store, pointer, len(request)) & 0xFFFF_FFFF_FFFF_FFFF
        response = memory.read(store, packed >> 32, (packed >> 32) + (packed & 0xFFFF_FFFF))
        timings.append(time.perf_counter_ns() - started)
        if not response:
            raise RuntimeError("empty response")
        store.close()
    return timings


if __name__ == "__main__":
    import argparse
    import statistics

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload", nargs="?", default="hello")
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--api", choices=("c", "ctypes", "wasmtime-py"), default="c")
    parser.add_argument("--rung", choices=tuple(RUNGS), help="the C loop of one rung instead")
    options = parser.parse_args()
    if options.rung:
        samples = raw_cold_starts(options.rung, options.workload, options.n)
        print(
            f"{options.workload} raw {options.rung}: p50 "
            f"{statistics.median(samples) / 1000:.1f} us over {len(samples)} launches"
        )
        raise SystemExit(0)
    from edgelab.build import ensure_wasm
    from edgelab.workloads import get_workload

    workload = get_workload(options.workload)
    samples = raw_wasm_cold_start_ns(
        ensure_wasm(workload), workload.default_request, options.n, options.api
    )
    print(
        f"{workload.name} raw wasm ({options.api}): p50 {statistics.median(samples) / 1000:.1f} us "
        f"over {len(samples)} launches"
    )
