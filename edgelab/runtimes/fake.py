"""A fake runtime with fixed, deterministic timings: only for stable UI snapshots and the lab's
bookkeeping tests.

Its figures are not measurements and are never shown outside tests; the lab marks any run that
used it as ``"fake": true`` in the metadata. A lab of fakes also reads a fake MemAvailable
(``fake_mem_available``) that falls by each live fake instance's pretend host cost, so the host
figure of a fake run is as deterministic as its PSS.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

from edgelab.errors import EdgelabError, LaunchFailed, LimitReached
from edgelab.protocol import Response
from edgelab.runtimes.base import Instance, Launch, Runtime, StoppedInstance
from edgelab.session import Session
from edgelab.workloads import Workload

if TYPE_CHECKING:
    from edgelab.runtimes.registry import RuntimeSpec

# Per runtime *family*: phase timings (ns), user-space (PSS) bytes and host bytes per instance.
# Every registered rung takes its family's profile scaled by ``rung_factor``, so a snapshot can
# show any rung the registry holds; a family not listed here gets ``_GENERIC``.
_PROFILES: dict[str, tuple[tuple[tuple[str, int], ...], int, int]] = {
    "container": (
        (("create", 95_000_000), ("start", 80_000_000), ("first_response", 1_200_000)),
        5_800_000,
        9_400_000,
    ),
    "subprocess": ((("spawn", 150_000), ("first_response", 40_000)), 125_000, 180_000),
    "wasm": ((("instantiate", 9_000), ("first_response", 3_000)), 10_240, 12_288),
    "isolate": (
        (("isolate", 1_900_000), ("compile", 900_000), ("instantiate", 400_000), ("first_response", 200_000)),
        1_600_000,
        2_100_000,
    ),
    "microvm": (
        (("boot", 2_400_000_000), ("first_response", 4_000_000)),  # the real rung's phases
        48_000_000,
        64_000_000,
    ),
}
_GENERIC: tuple[tuple[tuple[str, int], ...], int, int] = (
    (("launch", 1_000_000), ("first_response", 100_000)), 1_000_000, 1_200_000
)


def rung_factor(name: str) -> float:
    """1.0 for a family's plain rung; a fixed factor in [0.25, 2.25) per variant, from its
    name alone (crc32), so a fake rung's figures differ from its family's yet never move."""
    variant = name.partition(":")[2]
    if not variant:
        return 1.0
    return 0.25 + (zlib.crc32(variant.encode()) % 200) / 100


def fake_profile(name: str) -> tuple[tuple[tuple[str, int], ...], int, int]:
    """The fake figures for registered rung (or family) ``name``: its family's, scaled."""
    from edgelab.runtimes import registry

    try:
        family = registry.spec(name).family
    except EdgelabError:
        family = name.partition(":")[0]
    phases, pss, host = _PROFILES.get(family, _GENERIC)
    factor = rung_factor(name)
    return tuple((k, round(v * factor)) for k, v in phases), round(pss * factor), round(host * factor)


#: The fake container's cgroup memory per instance (kernel memory included, pretend).
_FAKE_CGROUP_BYTES = 1_300_000
#: What the fake MemAvailable starts at.
_FAKE_MEMORY_BYTES = 8 << 30

_fake_lock = threading.Lock()
_fake_used = 0


def fake_mem_available() -> int:
    """The fake MemAvailable: a fixed total less the host cost of every live fake instance."""
    with _fake_lock:
        return _FAKE_MEMORY_BYTES - _fake_used


def _fake_use(delta: int) -> None:
    global _fake_used
    with _fake_lock:
        _fake_used += delta


def _registered(name: str) -> RuntimeSpec | None:
    """The spec the fake stands in for, so ``describe()`` says its family and artifact."""
    from edgelab.runtimes import registry

    try:
        return registry.spec(name)
    except EdgelabError:
        return None


class FakeInstance(Instance):
    def __init__(self, runtime: FakeRuntime) -> None:
        self.runtime = runtime.name
        self._owner = runtime
        self._stopped = False
        _fake_use(runtime.host_bytes_per_instance)

    def request(self, payload: bytes, timeout_s: float) -> Response:
        return Response(0, b"fake:" + payload[:32])

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            _fake_use(-self._owner.host_bytes_per_instance)
        self._owner._untrack(self)


class FakeRuntime(Runtime):
    name = "fake"
    phase_names = ()
    memory_metric = "fake (not a measurement)"
    startup_includes = "fixed fake timings for UI tests"

    def __init__(
        self,
        session: Session,
        as_runtime: str = "wasm",
        unavailable: str | None = None,
        limit_after: int | None = None,
        batched: bool = False,
        delay_s: float = 0.0,
    ):
        """``limit_after``: a launch with that many instances live raises ``LimitReached``
        (a pretend pids limit), for the lab's limit handling. ``batched``: the fake offers
        ``cold_starts`` and ``launch_many`` as the Wasm runtime does, so bursts and ramps can
        take the batched paths. ``delay_s``: each launch really takes that long (for block
        sizing, which follows wall time)."""
        super().__init__(session)
        self.name = as_runtime  # type: ignore[misc]
        self.spec = _registered(as_runtime)
        self.family = self.spec.family if self.spec else as_runtime.partition(":")[0]
        phases, self._bytes_per_instance, self.host_bytes_per_instance = fake_profile(as_runtime)
        self._phases = dict(phases)
        self.phase_names = tuple(self._phases)  # type: ignore[misc,assignment]
        self._unavailable = unavailable
        self._limit_after = limit_after
        self._launches = 0
        #: The size of every ``cold_starts`` call, in order (what the lab asked for).
        self.batches: list[int] = []
        self._delay_s = delay_s
        if batched:
            self.cold_starts = self._cold_starts  # type: ignore[method-assign]
            self.launch_many = self._launch_many  # type: ignore[method-assign]

    def check(self) -> None:
        if self._unavailable:
            from edgelab.errors import RuntimeUnavailable

            raise RuntimeUnavailable(self.name, self._unavailable, "fake: nothing to fix")

    def prepare(self, workload: Workload) -> None:
        self.check()

    def _timings(self) -> dict[str, int]:
        # A small deterministic wobble so sparklines and spreads are not flat.
        wobble = 1.0 + ((self._launches * 7) % 5) / 20
        self._launches += 1
        return {k: int(v * wobble) for k, v in self._phases.items()}

    def launch(self, workload: Workload, request: bytes, timeout_s: float) -> Launch:
        live = len(self._live)
        if self._limit_after is not None and live >= self._limit_after:
            raise LimitReached(f"{self.name}: fake pids limit of {self._limit_after:,} instances", live)
        if self._delay_s:
            time.sleep(self._delay_s)
        phases = self._timings()
        instance = FakeInstance(self)
        self._track(instance)
        return Launch(instance, instance.request(request, timeout_s), sum(phases.values()), phases)

    def _cold_starts(self, workload: Workload, request: bytes, n: int, timeout_s: float) -> list[Launch | LaunchFailed]:
        self.batches.append(n)
        outcomes: list[Launch | LaunchFailed] = []
        for _ in range(n):
            phases = self._timings()
            response = Response(0, b"fake:" + request[:32])
            outcomes.append(Launch(StoppedInstance(self.name), response, sum(phases.values()), phases))
        return outcomes

    def _launch_many(self, workload: Workload, request: bytes, n: int, timeout_s: float) -> list[Launch]:
        """All or nothing, like the Wasm runtime's: a limit stops the ones made and is raised."""
        self.batches.append(n)
        launches: list[Launch] = []
        try:
            for _ in range(n):
                launches.append(self.launch(workload, request, timeout_s))
        except LimitReached:
            for launch in launches:
                launch.instance.stop()
            raise
        return launches

    def pss_bytes(self, instances: Sequence[Instance]) -> int:
        return len(instances) * self._bytes_per_instance

    def host_memory_bytes(self, instances: Sequence[Instance]) -> int | None:
        if self.family != "container":
            return None
        return len(instances) * _FAKE_CGROUP_BYTES

    def versions(self) -> dict[str, str]:
        return {"fake": "1"}
