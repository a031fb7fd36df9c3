"""The only module that touches wasmtime-py's private parts: its ctypes bindings (``_ffi``),
its struct layouts, the raw pointers behind its objects, its ``_from_ptr`` constructors.

Why reach past the public API at all: the public objects cost ~150-190 us per cold start here,
the C API the same wheel ships ~2-4 us. Everything private is behind the small functions and
constants below, so a new wasmtime release breaks one file, and ``tests/test_wasm_rungs.py``
proves that no other module of the package names a private wasmtime attribute.

Imported only by the host process and the benchmarks (it imports wasmtime).
"""

from __future__ import annotations

import ctypes
from ctypes import c_bool, c_char_p, c_int64, c_size_t, c_uint64, c_void_p
from pathlib import Path
from typing import Any

import wasmtime
from wasmtime import _ffi as _ffi

VP = c_void_p


def _bind(name: str, restype: Any, *argtypes: Any) -> Any:
    """A C API function with untyped pointers: a fresh function object (the package's own
    keep their types), one foreign call per use."""
    func = _ffi.dll[name]
    func.restype = restype
    func.argtypes = argtypes
    return func


# -- the C API, untyped -----------------------------------------------------------------------
store_new = _bind("wasmtime_store_new", VP, VP, VP, VP)
store_context = _bind("wasmtime_store_context", VP, VP)
store_delete = _bind("wasmtime_store_delete", None, VP)
store_limiter = _bind(
    "wasmtime_store_limiter", None, VP, c_int64, c_int64, c_int64, c_int64, c_int64
)
set_epoch_deadline = _bind("wasmtime_context_set_epoch_deadline", None, VP, c_uint64)
wasi_config_new = _bind("wasi_config_new", VP)
wasi_config_set_argv = _bind("wasi_config_set_argv", c_bool, VP, c_size_t, VP)
set_wasi = _bind("wasmtime_context_set_wasi", VP, VP, VP)
pre_instantiate = _bind("wasmtime_instance_pre_instantiate", VP, VP, VP, VP, VP)
export_get = _bind("wasmtime_instance_export_get", c_bool, VP, VP, c_char_p, c_size_t, VP)
call_unchecked = _bind("wasmtime_func_call_unchecked", VP, VP, VP, VP, c_size_t, VP)
memory_data = _bind("wasmtime_memory_data", VP, VP, VP)
memory_data_size = _bind("wasmtime_memory_data_size", c_size_t, VP, VP)
increment_epoch = _bind("wasmtime_engine_increment_epoch", None, VP)
#: The rungs that make the module at every launch (wasm:jit, wasm:aot).
module_new = _bind("wasmtime_module_new", VP, VP, VP, c_size_t, VP)
module_deserialize = _bind("wasmtime_module_deserialize", VP, VP, VP, c_size_t, VP)
module_delete = _bind("wasmtime_module_delete", None, VP)
linker_instantiate = _bind("wasmtime_linker_instantiate", VP, VP, VP, VP, VP, VP)

#: Struct layouts of the C API, from the wheel's own ctypes definitions.
INSTANCE_BYTES = ctypes.sizeof(_ffi.wasmtime_instance_t)
EXTERN_BYTES = ctypes.sizeof(_ffi.wasmtime_extern_t)
EXTERN_OF = _ffi.wasmtime_extern_t.of.offset
VAL_BYTES = ctypes.sizeof(_ffi.wasmtime_val_raw_t)


def val_raw_array(n: int) -> Any:
    """``n`` wasmtime_val_raw_t, the argument and result buffer of call_unchecked."""
    return (_ffi.wasmtime_val_raw_t * n)()


def address(managed: Any) -> int:
    """The C pointer behind a wasmtime-py object (Engine, Config, InstancePre, Linker)."""
    return ctypes.cast(managed.ptr(), c_void_p).value or 0


def symbol_address(name: str) -> int:
    """The address of a C API function in the wheel's library (for the compiled hot path)."""
    return ctypes.cast(_ffi.dll[name], c_void_p).value or 0


def library_path() -> Path:
    """The wheel's libwasmtime (the raw baseline links against it)."""
    return Path(_ffi.dll._name).resolve()


def set_pooling(
    config: Any,
    *,
    slots: int,
    stacks: int,
    max_memory_bytes: int,
    keep_resident_bytes: int,
) -> None:
    """Give ``config`` wasmtime's pooling allocator (wasmtime-py has no public setter)."""
    pool = _ffi.wasmtime_pooling_allocation_config_new()
    try:
        _ffi.wasmtime_pooling_allocation_config_total_core_instances_set(pool, slots)
        _ffi.wasmtime_pooling_allocation_config_total_memories_set(pool, slots)
        _ffi.wasmtime_pooling_allocation_config_total_tables_set(pool, slots)
        _ffi.wasmtime_pooling_allocation_config_total_stacks_set(pool, stacks)
        _ffi.wasmtime_pooling_allocation_config_max_memory_size_set(pool, max_memory_bytes)
        _ffi.wasmtime_pooling_allocation_config_linear_memory_keep_resident_set(
            pool, keep_resident_bytes
        )
        _ffi.wasmtime_pooling_allocation_config_table_keep_resident_set(pool, keep_resident_bytes)
        _ffi.wasmtime_pooling_allocation_strategy_set(config.ptr(), pool)
    finally:
        _ffi.wasmtime_pooling_allocation_config_delete(pool)


def take_trap(trap_ptr: int) -> tuple[bool, str]:
    """(is the epoch interrupt, message) of a trap pointer the C API returned; frees it."""
    trap = wasmtime.Trap._from_ptr(ctypes.cast(trap_ptr, ctypes.POINTER(_ffi.wasm_trap_t)))
    code, message = trap.trap_code, trap.message
    trap.close()
    return code == wasmtime.TrapCode.INTERRUPT, message


def take_error(error_ptr: int) -> tuple[int | None, str]:
    """(WASI exit code or None, message) of an error pointer the C API returned; frees it."""
    error = wasmtime.WasmtimeError._from_ptr(
        ctypes.cast(error_ptr, ctypes.POINTER(_ffi.wasmtime_error_t))
    )
    if isinstance(error, wasmtime.ExitTrap):
        return error.code, ""
    message = str(error)
    error.close()
    return None, message
