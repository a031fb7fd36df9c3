"""A fake runtime with fixed, deterministic timings: only for stable UI snapshots.

Its figures are not measurements and are never shown outside tests; the lab marks any run that
used it as ``"fake": true`` in the metadata.
"""

from __future__ import annotations

from collections.abc import Sequence

from edgelab.protocol import Response
from edgelab.runtimes.base import Instance, Launch, Runtime
from edgelab.session import Session
from edgelab.workloads import Workload

# Per pretend runtime: phase timings (ns) and bytes per resident instance.
_PROFILES: dict[str, tuple[tuple[tuple[str, int], ...], int]] = {
    "container": ((("create", 95_000_000), ("start", 80_000_000), ("first_response", 1_200_000)), 5_800_000),
    "subprocess": ((("spawn", 150_000), ("first_response", 40_000)), 125_000),
    "wasm": ((("instantiate", 9_000), ("first_response", 3_000)), 10_240),
}


class FakeInstance(Instance):
    def __init__(self, runtime: FakeRuntime) -> None:
        self.runtime = runtime.name
        self._owner = runtime

    def request(self, payload: bytes, timeout_s: float) -> Response:
        return Response(0, b"fake:" + payload[:32])

    def stop(self) -> None:
        self._owner._untrack(self)


class FakeRuntime(Runtime):
    name = "fake"
    phase_names = ()
    memory_metric = "fake (not a measurement)"
    startup_includes = "fixed fake timings for UI tests"

    def __init__(self, session: Session, as_runtime: str = "wasm", unavailable: str | None = None):
        super().__init__(session)
        self.name = as_runtime  # type: ignore[misc]
        phases, self._bytes_per_instance = _PROFILES[as_runtime]
        self._phases = dict(phases)
        self.phase_names = tuple(self._phases)  # type: ignore[misc,assignment]
        self._unavailable = unavailable
        self._launches = 0

    def check(self) -> None:
        if self._unavailable:
            from edgelab.errors import RuntimeUnavailable

            raise RuntimeUnavailable(self.name, self._unavailable, "fake: nothing to fix")

    def prepare(self, workload: Workload) -> None:
        self.check()

    def launch(self, workload: Workload, request: bytes, timeout_s: float) -> Launch:
        # A small deterministic wobble so sparklines and spreads are not flat.
        wobble = 1.0 + ((self._launches * 7) % 5) / 20
        self._launches += 1
        phases = {k: int(v * wobble) for k, v in self._phases.items()}
        instance = FakeInstance(self)
        self._track(instance)
        return Launch(instance, instance.request(request, timeout_s), sum(phases.values()), phases)

    def pss_bytes(self, instances: Sequence[Instance]) -> int:
        return len(instances) * self._bytes_per_instance

    def versions(self) -> dict[str, str]:
        return {"fake": "1"}
