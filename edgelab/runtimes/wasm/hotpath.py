"""The host's side of the compiled hot path (``hotpath.c``): its structs, as ctypes sees them,
and loading it.

Through ctypes a launch is about twenty foreign calls of 0.4-0.9 us each, more than wasmtime's
own work; ``hotpath.c`` makes it one. The layouts here must match the C file's ``el_api``,
``el_call`` and ``el_launched`` field for field: ``el_hotpath_init`` returns the size of its
``el_call`` and the host refuses a library whose size differs.
"""

from __future__ import annotations

import ctypes
import struct
from ctypes import c_char_p, c_int64, c_size_t, c_uint64, c_void_p

from edgelab.runtimes.wasm import capi

#: How a launch gets its module, ``el_call.mode`` (the rungs of the ladder).
MODE_PRE = 0  #: instantiate a module prepared once (wasm, wasm:mmap)
MODE_COMPILE = 1  #: compile the .wasm first, inside the timing (wasm:jit)
MODE_DESERIALIZE = 2  #: deserialize the precompiled module first, inside the timing (wasm:aot)

#: The function table the hot path calls through, in the order of ``el_api`` in the C source.
HOT_API = (
    ("store_new", "wasmtime_store_new"),
    ("store_context", "wasmtime_store_context"),
    ("store_delete", "wasmtime_store_delete"),
    ("store_limiter", "wasmtime_store_limiter"),
    ("set_epoch_deadline", "wasmtime_context_set_epoch_deadline"),
    ("wasi_config_new", "wasi_config_new"),
    ("wasi_config_set_argv", "wasi_config_set_argv"),
    ("set_wasi", "wasmtime_context_set_wasi"),
    ("pre_instantiate", "wasmtime_instance_pre_instantiate"),
    ("export_get", "wasmtime_instance_export_get"),
    ("call_unchecked", "wasmtime_func_call_unchecked"),
    ("memory_data", "wasmtime_memory_data"),
    ("memory_data_size", "wasmtime_memory_data_size"),
    ("clock_gettime", "libc:clock_gettime"),
    ("memcpy", "libc:memcpy"),
    ("realloc", "libc:realloc"),
    ("module_new", "wasmtime_module_new"),
    ("module_deserialize", "wasmtime_module_deserialize"),
    ("module_delete", "wasmtime_module_delete"),
    ("linker_instantiate", "wasmtime_linker_instantiate"),
    # WASI commands (el_command)
    ("byte_vec_new", "wasm_byte_vec_new"),
    ("wasi_set_stdin_bytes", "wasi_config_set_stdin_bytes"),
    ("wasi_set_stdout_custom", "wasi_config_set_stdout_custom"),
    ("wasi_set_stderr_custom", "wasi_config_set_stderr_custom"),
    ("wasi_set_env", "wasi_config_set_env"),
    ("wasi_preopen_dir", "wasi_config_preopen_dir"),
    ("error_exit_status", "wasmtime_error_exit_status"),
    ("error_delete", "wasmtime_error_delete"),
    ("wasi_config_delete", "wasi_config_delete"),
)


class HotApi(ctypes.Structure):
    _fields_ = [(field, c_void_p) for field, _symbol in HOT_API]


class HotCall(ctypes.Structure):
    """``el_call`` in hotpath.c: one launch or request, inputs then outputs."""

    _fields_ = [
        ("engine", c_void_p),
        ("pre", c_void_p),
        ("memory_limit", c_int64),
        ("deadline_ticks", c_uint64),
        ("wasi_argv", c_void_p),
        ("request", c_char_p),
        ("request_len", c_size_t),
        ("max_response", c_size_t),
        ("slot", c_void_p),
        ("reuse_store", c_void_p),
        ("linker", c_void_p),
        ("module_bytes", c_void_p),
        ("module_len", c_size_t),
        ("mode", ctypes.c_int32),
        ("_pad", ctypes.c_int32),
        ("store", c_void_p),
        ("ctx", c_void_p),
        ("error", c_void_p),
        ("trap", c_void_p),
        ("stage", ctypes.c_int32),
        ("detail", ctypes.c_int32),
        ("t0", c_int64),
        ("tm", c_int64),
        ("t1", c_int64),
        ("t2", c_int64),
        ("response", c_void_p),
        ("response_len", c_size_t),
    ]


class HotLaunched(ctypes.Structure):
    """``el_launched`` in hotpath.c: one launch of a batch."""

    _fields_ = [
        ("error", c_void_p),
        ("trap", c_void_p),
        ("stage", ctypes.c_int32),
        ("detail", ctypes.c_int32),
        ("t0", c_int64),
        ("tm", c_int64),
        ("t1", c_int64),
        ("t2", c_int64),
        ("response_at", c_size_t),
        ("response_len", c_size_t),
    ]


class HotCommand(ctypes.Structure):
    """``el_cmd`` in hotpath.c: one launch of a WASI command (request on stdin, response on
    stdout), inputs then outputs. Stamps: t0 before the module or Store, tm module made, tw
    WASI context set, t1 instantiated, tf first stdout byte (0: none), t2 ``_start`` done."""

    _fields_ = [
        ("engine", c_void_p),
        ("pre", c_void_p),
        ("memory_limit", c_int64),
        ("deadline_ticks", c_uint64),
        ("argv", c_void_p),
        ("argc", c_size_t),
        ("env_names", c_void_p),
        ("env_values", c_void_p),
        ("envc", c_size_t),
        ("dir_hosts", c_void_p),
        ("dir_guests", c_void_p),
        ("dirc", c_size_t),
        ("request", c_char_p),
        ("request_len", c_size_t),
        ("max_response", c_size_t),
        ("slot", c_void_p),
        ("linker", c_void_p),
        ("module_bytes", c_void_p),
        ("module_len", c_size_t),
        ("mode", ctypes.c_int32),
        ("run", ctypes.c_int32),
        ("store", c_void_p),
        ("ctx", c_void_p),
        ("error", c_void_p),
        ("trap", c_void_p),
        ("stage", ctypes.c_int32),
        ("exit_code", ctypes.c_int32),
        ("t0", c_int64),
        ("tm", c_int64),
        ("tw", c_int64),
        ("t1", c_int64),
        ("tf", c_int64),
        ("t2", c_int64),
        ("out", c_void_p),
        ("out_len", c_size_t),
        ("err", c_void_p),
        ("err_len", c_size_t),
        ("too_long", ctypes.c_int32),
        ("_pad1", ctypes.c_int32),
    ]


#: ``stage`` values of el_command beyond HOT_STAGES' (1 WASI, 2 instantiate, 3 no _start,
#: 9 no memory for stdout, 10 stdout over the cap, 11 making the module).
CMD_START = 12  #: an error or trap in _start
CMD_EXIT = 13  #: proc_exit with a non-zero status

#: One el_launched record, for reading a batch's records in one pass.
LAUNCHED = struct.Struct("@PPiiqqqqNN")

#: ``stage`` values of el_call (0 is success), and the line each failure becomes (None: the
#: error or trap says why).
HOT_STAGES = {
    1: None,  # setting up WASI
    2: None,  # instantiate: error or trap
    3: "module has no export {export}",
    4: None,  # _initialize
    5: None,  # edgelab_alloc
    6: "edgelab_alloc returned a buffer outside linear memory",
    7: None,  # edgelab_handle
    8: "edgelab_handle returned no response inside linear memory",
    9: "the wasm host could not allocate the response buffer",
    10: "response exceeded {cap}",
    11: None,  # compiling or deserializing the module (wasm:jit, wasm:aot)
}


def arm(call: HotCall, slot: int, ticks: int, request: bytes, reuse_store: int = 0) -> None:
    """Set a call's per-launch inputs: the instance's slot, its deadline, the request, and
    the Store to instantiate into (0: a fresh one)."""
    call.slot = slot
    call.reuse_store = reuse_store or None
    call.deadline_ticks = ticks
    call.request = request
    call.request_len = len(request)


class LayoutMismatch(Exception):
    """The library's structs are not the ones this file reads (a stale or foreign build)."""


class HotPath:
    """The compiled launch and request functions, bound to this process's wasmtime and libc."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lib = ctypes.CDLL(path)  # CDLL releases the GIL: the epoch ticker keeps ticking
        libc = ctypes.CDLL(None)
        self.api = HotApi()
        for field, symbol in HOT_API:
            if symbol.startswith("libc:"):
                address = ctypes.cast(getattr(libc, symbol.removeprefix("libc:")), c_void_p).value
            else:
                address = capi.symbol_address(symbol)
            setattr(self.api, field, address)
        init = self.lib.el_hotpath_init
        init.restype = c_size_t
        init.argtypes = (c_void_p,)
        size = init(ctypes.addressof(self.api))
        if size != ctypes.sizeof(HotCall):
            raise LayoutMismatch(
                f"hot path {path} has an el_call of {size} bytes, the host expects "
                f"{ctypes.sizeof(HotCall)}"
            )
        if LAUNCHED.size != ctypes.sizeof(HotLaunched):  # pragma: no cover - a new ABI
            raise LayoutMismatch("el_launched's layout differs from the host's reading")
        self.launch = self.lib.el_launch
        self.request = self.lib.el_request
        for function in (self.launch, self.request):
            function.restype = ctypes.c_int
            function.argtypes = (c_void_p,)
        size_of = self.lib.el_command_size
        size_of.restype = c_size_t
        size_of.argtypes = ()
        if size_of() != ctypes.sizeof(HotCommand):
            raise LayoutMismatch(
                f"hot path {path} has an el_cmd of {size_of()} bytes, the host expects "
                f"{ctypes.sizeof(HotCommand)}"
            )
        self.command = self.lib.el_command
        self.command.restype = ctypes.c_int
        self.command.argtypes = (c_void_p,)
        self.launch_batch = self.lib.el_launch_batch
        self.launch_batch.restype = ctypes.c_int
        self.launch_batch.argtypes = (c_void_p, ctypes.c_int, ctypes.c_int, c_void_p)
