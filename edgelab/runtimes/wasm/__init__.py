"""The Wasm runtime: wasmtime instances in host processes of their own, one rung per way of
starting them (``wasm``, ``wasm:mmap``, ``wasm:aot``, ``wasm:jit``).

- ``runtime``: the lab's side (``WasmRuntime``, ``WasmInstance``, ``HostProcess``);
- ``host``: the host process (``python -m edgelab.runtimes.wasm.host``);
- ``capi``: the only module touching wasmtime's private API;
- ``hotpath`` + ``hotpath.c``: one foreign call per launch;
- ``limits``: pool, shard and Store-sharing limits from the environment;
- ``records``: what the host sends back for launches.

Importing this package does not import wasmtime (``edgelab --help`` stays instant): only
``host`` and ``capi`` do, in the host process. Nor does it import ``runtime`` until one of its
names is asked for: the host process imports this package on its way to ``host`` and needs
none of the lab's side (~20 ms of every host's start).
"""

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
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

_FROM_RUNTIME = frozenset({
    "EXIT_GRACE_S", "HOTPATH_ENV", "IPC_MARGIN_S", "LOAD_TIMEOUT_S", "STRATEGIES",
    "HostProcess", "Strategy", "WasmInstance", "WasmRuntime",
})  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _FROM_RUNTIME:
        from edgelab.runtimes.wasm import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

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
