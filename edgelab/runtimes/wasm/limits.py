"""What bounds the Wasm hosts, read from the environment: pool slots, instances per resident
host, instances per Store, the pool slot's size, and where precompiled modules are cached.

Shared by the lab side (``runtime``) and the host process (``host``), and free of wasmtime, so
that importing the runtime stays instant and the host reads the same numbers the lab names its
caches by.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path
from typing import TYPE_CHECKING

from edgelab.errors import RuntimeUnavailable

if TYPE_CHECKING:  # the host imports this module and needs no manifest reader
    from edgelab.workloads import Workload


def wasmtime_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("wasmtime")
    except PackageNotFoundError:
        return "unknown"


#: wasmtime's max_wasm_stack for every instance (Config.max_wasm_stack): the stack limit.
MAX_WASM_STACK_BYTES = 512 * 1024

#: Instance slots in the Wasm host's pool (see host.engine_config); POOL_ENV overrides.
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
    from edgelab.workloads import load_workloads, modules_dir

    # The built-in workloads' folder only: a saved function's limits must not move every Wasm
    # run's pool slot (and with it the .cwasm cache key); its own memory limit is its store's.
    most = max(
        (
            min(wasm_max_memory_bytes(w), w.memory_limit_bytes)
            for w in load_workloads(modules_dir(), include_hostile=True).values()
        ),
        default=0,
    )
    mib = 1 << 20
    return max(-(-most // mib), 4) * mib


def limits_line(pooled: bool = True) -> str:
    """What stops one host process, measured here (hello; see host.py's Capacity note).
    ``pooled``: the rung's burst host uses the pool (the plain wasm rung)."""
    try:
        with open("/proc/sys/vm/max_map_count") as limit:
            most = f"{int(limit.read()):,}"
    except (OSError, ValueError):
        most = "?"
    resident = f"resident hosts {shard_instances():,} each, then another"
    if not pooled:
        return (
            f"no pool; {resident} (memory, or vm.max_map_count's {most} mappings where each "
            "instance holds its own code, is their limit)"
        )
    return (
        f"pool {pool_slots():,} slots (2 of vm.max_map_count's {most} mappings each); "
        f"{resident} (memory is their limit)"
    )


# -- when a host's memory runs out (called in the host, where allocations fail) ------------
#: Mappings a process keeps for itself (libraries, heap, thread stacks) near the top of
#: vm.max_map_count: within this many of it, an ENOMEM is the mapping limit, not memory.
MAPPING_SLACK = 64


#: Where /proc/self/maps is read when mappings may have run out: a buffer made in advance,
#: since reading the file whole would need a mapping of its own.
_MAPS_BUFFER = bytearray(64 * 1024)


def _count_mappings() -> int:
    fd = os.open("/proc/self/maps", os.O_RDONLY)
    try:
        lines = 0
        while True:
            n = os.readv(fd, [_MAPS_BUFFER])
            if n == 0:
                return lines
            lines += _MAPS_BUFFER.count(b"\n", 0, n)
    finally:
        os.close(fd)


def host_out_of_memory(detail: str) -> str:
    """The line for an ENOMEM from mmap or mprotect (or a MemoryError here), which means one
    of three limits: this process's memory mappings (vm.max_map_count), its address space
    (``ulimit -v``, per process) or the machine's memory. Never raises: it is called when
    allocations fail."""
    try:
        mappings = _count_mappings()
        with open("/proc/sys/vm/max_map_count", "rb") as limit:
            most = int(limit.read())
        with open("/proc/self/statm", "rb") as statm:
            size_bytes = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        if mappings >= most - MAPPING_SLACK:
            return f"wasm host out of memory mappings: vm.max_map_count is {most:,} per process"
        soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY and size_bytes >= soft - ADDRESS_SPACE_SLACK_BYTES:
            return f"wasm host out of address space: ulimit -v is {soft >> 10:,} KiB per process"
        return f"wasm host out of memory ({detail})"
    except (MemoryError, OSError, ValueError):
        return "wasm host out of memory or memory mappings"


#: Within this much of ``ulimit -v``, a failed allocation is the address-space limit.
ADDRESS_SPACE_SLACK_BYTES = 64 << 20
