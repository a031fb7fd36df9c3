"""The simulator's event loop (``kernel.c``), built with zig on first use, and the same loop in
Python where it cannot be built (and as the reference the tests hold the C loop to).

Why an event loop and not a vectorised model: whether a request is warm depends on every
earlier one (a cold start holds its slot longer, which can make the next request cold), so a
vectorised numpy model has to re-pass the whole hour once per link of a cold-start cascade.
``benchmarks/whatif_speed.py`` measured it, simpy and this loop on the same policy.
"""

from __future__ import annotations

import ctypes
import heapq
import math
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

SOURCE = Path(__file__).resolve().parent / "kernel.c"
FLAGS = ("-shared", "-fPIC", "-O2", "-s", "-std=c11", "-ffreestanding", "-nostdlib",
         "-fno-stack-protector", "-Wall", "-Wextra")  # fmt: skip


@dataclass(frozen=True)
class Served:
    """What one pass over the arrivals gives: each request warm or cold, and the instances."""

    cold: np.ndarray  # bool per request
    queue_s: np.ndarray  # per request: arrival to the start of its service (0 without a cap)
    instance_seconds: float  # integral of instances alive over [0, horizon_s]
    peak_instances: int
    engine: str  # "C event loop" or "Python event loop"
    #: With ``ColdBuckets``: per request, the startup a cold one was given (seconds; 0 for warm).
    startup_s: np.ndarray | None = None


@dataclass(frozen=True)
class ColdBuckets:
    """Measured cold starts grouped by how many other starts were under way when each began:
    bucket b holds ``startup_s[offsets[b]:offsets[b + 1]]`` (and, paired, how long each held
    its instance); a start with k others under way draws from bucket ``bucket_of[k]``, or the
    last bucket for k beyond ``bucket_of``. One bucket = independent draws."""

    offsets: np.ndarray  # int64, len = buckets + 1, offsets[0] = 0
    startup_s: np.ndarray
    hold_s: np.ndarray
    bucket_of: np.ndarray  # int64: k others under way -> bucket

    @property
    def count(self) -> int:
        return len(self.offsets) - 1

    def span(self, b: int) -> str:
        """The starts under way bucket ``b`` covers, as ``2``, ``3-5`` or ``6+``."""
        ks = [k for k, of in enumerate(self.bucket_of.tolist()) if of == b]
        if b == self.count - 1:
            return f"{ks[0]}+" if ks else f"{len(self.bucket_of)}+"
        return f"{ks[0]}" if len(ks) == 1 else f"{ks[0]}-{ks[-1]}"


def _command(output: Path) -> list[str]:
    from edgelab.build import host_arch

    return [sys.executable, "-m", "ziglang", "cc", "-target", f"{host_arch()}-linux-musl", *FLAGS,
            "-o", str(output), str(SOURCE)]  # fmt: skip


def _path() -> Path:
    import hashlib

    from edgelab.build import cache_dir, host_arch, zig_version

    digest = hashlib.sha256()
    for part in (zig_version(), host_arch(), " ".join(FLAGS)):
        digest.update(part.encode() + b"\0")
    digest.update(SOURCE.read_bytes())
    return cache_dir() / "host" / f"whatif_kernel-{digest.hexdigest()[:16]}.so"


@lru_cache(maxsize=1)
def _library() -> ctypes.CDLL | None:
    """The built loop, or None when it cannot be built here (the Python loop then runs)."""
    try:
        from edgelab.build import _build

        lib = ctypes.CDLL(str(_build(_path(), _command, "the what-if event loop", None, False)))
    except Exception:  # noqa: BLE001 - any failure to build or load means: use the Python loop
        return None
    double_p = np.ctypeslib.ndpointer(np.float64, flags="C_CONTIGUOUS")
    u8_p = np.ctypeslib.ndpointer(np.uint8, flags="C_CONTIGUOUS")
    lib.whatif_serve.restype = ctypes.c_long
    long_p = np.ctypeslib.ndpointer(np.int64, flags="C_CONTIGUOUS")
    lib.whatif_serve.argtypes = [ctypes.c_long, double_p, double_p, double_p, ctypes.c_double,
                                 ctypes.c_long, ctypes.c_long, ctypes.c_long, ctypes.c_double,
                                 ctypes.c_long, ctypes.c_long, long_p, long_p, double_p, double_p,
                                 double_p, ctypes.c_double,
                                 double_p, u8_p, double_p, double_p, double_p, double_p,
                                 double_p]  # fmt: skip
    return lib


def serve(arrival_s: np.ndarray, cold_service_s: np.ndarray, warm_service_s: np.ndarray,
          keepalive_s: float, prewarm: int, concurrency: int, horizon_s: float,
          force_python: bool = False, max_in_flight: int = 0, buckets: ColdBuckets | None = None,
          u: np.ndarray | None = None, extra_hold_s: float = 0.0) -> Served:
    """Run the pool over the arrivals: the C loop when it builds, else the Python one.
    ``max_in_flight`` > 0 caps the requests in service at once (the others queue, FIFO).
    With ``buckets`` (and ``u``, one uniform draw in [0, 1) per request), a cold start's time
    comes from the bucket of starts already under way and ``cold_service_s`` is not read; its
    instance is held for the start's measured hold + ``extra_hold_s``."""
    if buckets is not None and (u is None or len(u) != len(arrival_s) or buckets.count < 1):
        raise ValueError("buckets need one uniform draw per request and at least one bucket")
    lib = None if force_python else _library()
    if lib is None:
        return serve_python(arrival_s, cold_service_s, warm_service_s, keepalive_s, prewarm,
                            concurrency, horizon_s, max_in_flight, buckets, u, extra_hold_s)
    n = len(arrival_s)
    a = np.ascontiguousarray(arrival_s, dtype=np.float64)
    st = np.ascontiguousarray(cold_service_s, dtype=np.float64)
    ex = np.ascontiguousarray(warm_service_s, dtype=np.float64)
    cold = np.zeros(n, dtype=np.uint8)
    queue = np.zeros(n, dtype=np.float64)
    heap = np.empty(max(n, 1), dtype=np.float64)
    idle = np.empty(max(n + prewarm * concurrency, 1), dtype=np.float64)
    out = np.zeros(2, dtype=np.float64)
    one = np.zeros(1, dtype=np.float64)
    if buckets is not None:
        offsets = np.ascontiguousarray(buckets.offsets, dtype=np.int64)
        bucket_of = np.ascontiguousarray(buckets.bucket_of, dtype=np.int64)
        nmap = len(bucket_of)
        b_start = np.ascontiguousarray(buckets.startup_s, dtype=np.float64)
        b_hold = np.ascontiguousarray(buckets.hold_s, dtype=np.float64)
        draws = np.ascontiguousarray(u, dtype=np.float64)
        startup = np.zeros(n, dtype=np.float64)
        starting = np.empty(max(n, 1), dtype=np.float64)
        nb = buckets.count
    else:
        offsets, b_start, b_hold, draws = np.zeros(1, dtype=np.int64), one, one, one
        startup, starting, nb = one, one, 0
        bucket_of, nmap = np.zeros(1, dtype=np.int64), 0
    lib.whatif_serve(n, a, st, ex, float(keepalive_s), int(prewarm), int(concurrency),
                     int(max_in_flight), float(horizon_s), nb, nmap, bucket_of, offsets, b_start, b_hold, draws,
                     float(extra_hold_s), startup, cold, queue, heap, idle, starting, out)  # fmt: skip
    return Served(cold.astype(bool), queue, float(out[0]), int(out[1]), "C event loop",
                  startup if buckets is not None else None)


def serve_python(arrival_s: np.ndarray, cold_service_s: np.ndarray, warm_service_s: np.ndarray,
                 keepalive_s: float, prewarm: int, concurrency: int, horizon_s: float,
                 max_in_flight: int = 0, buckets: ColdBuckets | None = None,
                 u: np.ndarray | None = None, extra_hold_s: float = 0.0) -> Served:
    """The same loop as ``kernel.c``, line for line, in Python (~2 us a request)."""
    floor_slots = prewarm * concurrency
    idle: list[float] = [-math.inf] * floor_slots
    lo = 0
    busy: list[float] = []
    alive = floor_slots
    peak = prewarm
    area = 0.0
    last_t = 0.0
    cold = np.zeros(len(arrival_s), dtype=bool)
    queue = np.zeros(len(arrival_s), dtype=np.float64)
    startup = np.zeros(len(arrival_s), dtype=np.float64)
    starting: list[float] = []

    def instances(slots: int) -> int:
        return max(prewarm, -(-slots // concurrency))

    times = [float(t) for t in arrival_s] + [float(horizon_s)]
    for i, t in enumerate(times):
        if i < len(arrival_s):
            if max_in_flight > 0 and len(busy) >= max_in_flight and busy[0] > t:
                t = busy[0]
            queue[i] = t - times[i]
        while busy and busy[0] <= t:
            idle.append(heapq.heappop(busy))
        while lo < len(idle) and alive > floor_slots and idle[lo] + keepalive_s < t:
            gone = max(idle[lo] + keepalive_s, last_t)
            area += (gone - last_t) * instances(alive)
            last_t = gone
            lo += 1
            alive -= 1
        until = min(t, horizon_s)
        if until > last_t:
            area += (until - last_t) * instances(alive)
            last_t = until
        if i == len(arrival_s):
            break
        if len(idle) > lo:
            idle.pop()
            service = float(warm_service_s[i])
        else:
            alive += 1
            cold[i] = True
            if buckets is not None and u is not None:
                while starting and starting[0] <= t:
                    heapq.heappop(starting)
                k = len(starting)
                b = int(buckets.bucket_of[k]) if k < len(buckets.bucket_of) else buckets.count - 1
                first, size = int(buckets.offsets[b]), int(buckets.offsets[b + 1] - buckets.offsets[b])
                j = min(first + int(float(u[i]) * size), first + size - 1)
                startup[i] = float(buckets.startup_s[j])
                service = float(buckets.hold_s[j]) + extra_hold_s
                heapq.heappush(starting, t + float(buckets.startup_s[j]))
            else:
                service = float(cold_service_s[i])
            peak = max(peak, instances(alive))
        heapq.heappush(busy, t + service)
    return Served(cold, queue, area, peak, "Python event loop", startup if buckets is not None else None)
