"""The Wasm runtime: wasmtime instances in host processes of their own, one rung per way of
starting them (``wasm``, ``wasm:mmap``, ``wasm:aot``, ``wasm:jit``).

- ``runtime``: the lab's side (``WasmRuntime``, ``WasmInstance``, ``HostProcess``);
- ``host``: the host process (``python -m edgelab.runtimes.wasm.host``);
- ``capi``: the only module touching wasmtime's private API;
- ``hotpath`` + ``hotpath.c``: one foreign call per launch;
- ``limits``: pool, shard and Store-sharing limits from the environment;
- ``records``: what the host sends back for launches.

Importing this package does not import wasmtime (``edgelab --help`` stays instant): only
``host`` and ``capi`` do, in the host process.
"""

from edgelab.runtimes.wasm.limits import (
    MAX_INSTANCES_PER_STORE,
    MIN_SHARD_INSTANCES,
    POOL_ENV,
    POOL_SLOTS,
    SHARD_ENV,
    SHARD_INSTANCES,
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
from edgelab.runtimes.wasm.runtime import (
    EXIT_GRACE_S,
    HOTPATH_ENV,
    IPC_MARGIN_S,
    LOAD_TIMEOUT_S,
    STRATEGIES,
    HostProcess,
    Strategy,
    WasmInstance,
    WasmRuntime,
)

__all__ = [
    "EXIT_GRACE_S",
    "HOTPATH_ENV",
    "IPC_MARGIN_S",
    "LOAD_TIMEOUT_S",
    "MAX_INSTANCES_PER_STORE",
    "MIN_SHARD_INSTANCES",
    "POOL_ENV",
    "POOL_SLOTS",
    "SHARD_ENV",
    "SHARD_INSTANCES",
    "STORE_SHARING_ENV",
    "STRATEGIES",
    "HostProcess",
    "Strategy",
    "WasmInstance",
    "WasmRuntime",
    "cwasm_path",
    "instances_per_store",
    "limits_line",
    "pool_memory_bytes",
    "pool_slots",
    "pooling_fits",
    "shard_instances",
    "wasmtime_version",
]
