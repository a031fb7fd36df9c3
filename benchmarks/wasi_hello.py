"""WASI hello cold start: the lab's ``wasm`` rung against a raw C loop, and the 30 us target.

What is timed, in both: a new Store, a fresh WASI context (argv[0], stdin bytes, stdout and
stderr captured by callbacks), instantiating the module (precompiled once, outside the
timing, from a warm slot of wasmtime's pooling allocator with the host's Engine
configuration), calling ``_start``, up to the first byte written to stdout. Deleting the Store
is outside the timing in both.

- *lab*: ``edgelab run --wasm hello.wasm -r wasm`` through ``Lab`` (a burst of ``--count``
  cold starts; the host process's hot path, ``el_command`` in hotpath.c);
- *raw*: the same calls in a bare C loop (``RAW_SOURCE`` below, built with ``zig cc`` and
  linked against the wheel's libwasmtime): no host process, no IPC, no records, no Python.

Run: ``python benchmarks/wasi_hello.py [--count 2000] [--blocks 5]``. The module is
``tests/fixtures/wasi/hello.wat`` (writes "hello\\n", returns).
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import statistics
import subprocess
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HELLO_WAT = ROOT / "tests" / "fixtures" / "wasi" / "hello.wat"
TARGET_US = 30.0

RAW_SOURCE = r"""
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

typedef struct { uint64_t store_id; size_t private_index; } instance_t;
typedef struct { uint8_t kind; uint8_t pad[7]; uint8_t of[24]; } extern_t;
typedef union { int32_t i32; int64_t i64; uint8_t bytes[16]; } val_raw_t;
typedef struct { size_t size; uint8_t *data; } byte_vec_t;

void *wasmtime_store_new(void *engine, void *data, void (*finalizer)(void *));
void *wasmtime_store_context(void *store);
void wasmtime_store_delete(void *store);
void wasmtime_store_limiter(void *store, int64_t, int64_t, int64_t, int64_t, int64_t);
void wasmtime_context_set_epoch_deadline(void *ctx, uint64_t ticks);
void *wasi_config_new(void);
_Bool wasi_config_set_argv(void *config, size_t argc, const char *const argv[]);
void wasm_byte_vec_new(byte_vec_t *out, size_t len, const uint8_t *data);
void wasi_config_set_stdin_bytes(void *config, byte_vec_t *vec);
void wasi_config_set_stdout_custom(void *config, long (*)(void *, const uint8_t *, size_t),
                                   void *, void (*)(void *));
void wasi_config_set_stderr_custom(void *config, long (*)(void *, const uint8_t *, size_t),
                                   void *, void (*)(void *));
void *wasmtime_context_set_wasi(void *ctx, void *config);
void *wasmtime_instance_pre_instantiate(void *pre, void *ctx, instance_t *out, void **trap);
_Bool wasmtime_instance_export_get(void *ctx, const instance_t *, const char *, size_t,
                                   extern_t *);
void *wasmtime_func_call_unchecked(void *ctx, const void *func, val_raw_t *, size_t, void **);
_Bool wasmtime_error_exit_status(const void *error, int *status);
void wasmtime_error_delete(void *error);

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t first_byte;
static uint8_t out[1 << 16];
static size_t out_len;

static long on_stdout(void *data, const uint8_t *bytes, size_t n) {
    (void)data;
    if (n && !first_byte) first_byte = now_ns();
    if (out_len + n <= sizeof out) { memcpy(out + out_len, bytes, n); out_len += n; }
    return (long)n;
}

static long on_stderr(void *data, const uint8_t *bytes, size_t n) {
    (void)data; (void)bytes;
    return (long)n;
}

/* n timed launches after `warm` untimed ones; startup (to the first stdout byte) in t[i].
 * Returns 0, or -(i + 1) for the launch that failed. */
int raw_wasi_loop(void *engine, void *pre, const uint8_t *request, size_t len, int n, int warm,
                  int64_t *t) {
    static const char *const argv[] = {"hello.wasm"};
    for (int i = -warm; i < n; i++) {
        instance_t instance;
        extern_t start;
        val_raw_t args[1];
        void *trap = NULL;
        first_byte = 0;
        out_len = 0;
        int64_t t0 = now_ns();
        void *store = wasmtime_store_new(engine, NULL, NULL);
        void *ctx = wasmtime_store_context(store);
        void *config = wasi_config_new();
        wasi_config_set_argv(config, 1, argv);
        byte_vec_t vec;
        wasm_byte_vec_new(&vec, len, request);
        wasi_config_set_stdin_bytes(config, &vec);
        wasi_config_set_stdout_custom(config, on_stdout, NULL, NULL);
        wasi_config_set_stderr_custom(config, on_stderr, NULL, NULL);
        int failed = wasmtime_context_set_wasi(ctx, config) != NULL;
        if (!failed) {
            wasmtime_store_limiter(store, 64 << 20, -1, -1, -1, -1);
            wasmtime_context_set_epoch_deadline(ctx, 1u << 30);
            failed = wasmtime_instance_pre_instantiate(pre, ctx, &instance, &trap) || trap;
        }
        if (!failed) failed = !wasmtime_instance_export_get(ctx, &instance, "_start", 6, &start);
        if (!failed) {
            void *err = wasmtime_func_call_unchecked(ctx, start.of, args, 0, &trap);
            int status = 0;
            if (err && wasmtime_error_exit_status(err, &status) && status == 0) {
                wasmtime_error_delete(err);
                err = NULL;
            }
            failed = err || trap || !first_byte;
        }
        wasmtime_store_delete(store);
        if (failed) return -(i + warm + 1);
        if (i >= 0) t[i] = first_byte - t0;
    }
    return 0;
}
"""


@lru_cache(maxsize=1)
def _library() -> ctypes.CDLL:
    """RAW_SOURCE built against the wheel's libwasmtime, cached in the edgelab cache."""
    from edgelab.build import _zig_env, cache_dir
    from edgelab.runtimes.wasm import capi

    wheel_lib = capi.library_path()
    key = hashlib.sha256(RAW_SOURCE.encode() + str(wheel_lib).encode()).hexdigest()[:16]
    output = cache_dir() / "bench" / f"wasi_hello_raw-{key}.so"
    if not output.exists():
        output.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as work:
            source = Path(work) / "wasi_hello_raw.c"
            source.write_text(RAW_SOURCE)
            temp = output.with_name(f".{output.name}.tmp")
            subprocess.run(
                [sys.executable, "-m", "ziglang", "cc", "-shared", "-fPIC", "-O2", "-o", str(temp),
                 str(source), f"-L{wheel_lib.parent}", f"-l:{wheel_lib.name}",
                 f"-Wl,-rpath,{wheel_lib.parent}"],
                check=True, env=_zig_env(),
            )  # fmt: skip
            temp.replace(output)
    lib = ctypes.CDLL(str(output))
    lib.raw_wasi_loop.restype = ctypes.c_int
    lib.raw_wasi_loop.argtypes = (
        ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int,
        ctypes.c_int, ctypes.c_void_p,
    )  # fmt: skip
    return lib


def hello_wasm(directory: Path) -> Path:
    import wasmtime

    path = directory / "hello.wasm"
    path.write_bytes(wasmtime.wat2wasm(HELLO_WAT.read_text()))
    return path


def raw_cold_starts(wasm: Path, n: int) -> list[int]:
    """``n`` raw WASI hello cold starts (ns to the first stdout byte), after the host's
    untimed warm-up launches, with the host's pooled Engine configuration."""
    import wasmtime

    from edgelab.runtimes.wasm import host as H
    from edgelab.runtimes.wasm import pool_memory_bytes
    from edgelab.runtimes.wasm.capi import address

    memory = pool_memory_bytes()
    engine = wasmtime.Engine(H.engine_config(memory, H.pooling_fits(memory)))
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    pre = linker.instantiate_pre(wasmtime.Module.from_file(engine, str(wasm)))
    timings = (ctypes.c_int64 * n)()
    failed = _library().raw_wasi_loop(
        address(engine), address(pre), b"", 0, n, H.WARM_LAUNCHES, ctypes.addressof(timings)
    )
    if failed:
        raise RuntimeError(f"raw WASI loop failed at launch {-failed}")
    return list(timings)


def lab_cold_starts(wasm: Path, n: int) -> tuple[list[int], list[int]]:
    """``n`` cold starts of the module on the lab's ``wasm`` rung: (startup ns, exit ns)."""
    from edgelab.lab import Lab, Settings
    from edgelab.workloads import Function

    lab = Lab()
    try:
        result = lab.run(
            Settings(
                workload="hello",
                runtimes=("wasm",),
                count=n,
                request=b"",
                function=Function(wasm=str(wasm)),
            )  # fmt: skip
        )
    finally:
        lab.close()
    runtime = result.runtimes["wasm"]
    if runtime.error or runtime.failed:
        raise RuntimeError(f"lab run failed: {runtime.error or runtime.first_error()}")
    measured = [s for s in runtime.measured if s.ok]
    return [s.startup_ns for s in measured], [s.exit_ns for s in measured if s.exit_ns]  # type: ignore[misc]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="cold starts per block")
    parser.add_argument("--blocks", type=int, default=5, help="blocks, lab and raw alternating")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        wasm = hello_wasm(Path(work))
        lab_p50, exit_p50, raw_p50 = [], [], []
        for _ in range(options.blocks):
            startups, exits = lab_cold_starts(wasm, options.count)
            lab_p50.append(statistics.median(startups) / 1e3)
            exit_p50.append(statistics.median(exits) / 1e3)
            raw_p50.append(statistics.median(raw_cold_starts(wasm, options.count)) / 1e3)
    lab, raw = statistics.median(lab_p50), statistics.median(raw_p50)
    print(f"WASI hello cold start, p50 over {options.blocks} blocks of {options.count} "
          "(new Store + WASI context + instantiate + _start, to the first stdout byte):")  # fmt: skip
    print(f"  lab (wasm rung)  {lab:7.2f} us   (blocks: {', '.join(f'{v:.2f}' for v in lab_p50)})")
    print(f"  raw C loop       {raw:7.2f} us   (blocks: {', '.join(f'{v:.2f}' for v in raw_p50)})")
    print(f"  lab / raw        {lab / raw:7.2f}x")
    print(f"  lab exit p50     {statistics.median(exit_p50):7.2f} us   (to _start's return)")
    verdict = "met" if lab <= TARGET_US else "MISSED"
    print(f"  target           {TARGET_US:7.2f} us   {verdict}")
    sys.exit(0 if lab <= TARGET_US else 1)


if __name__ == "__main__":
    main()
