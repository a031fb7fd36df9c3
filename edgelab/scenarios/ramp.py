"""The ramp: bring each runtime up to its resident target and price what it holds.

Runtimes ramp in turn (not interleaved, unlike cold starts) so that the fall of the system's
MemAvailable while one runtime ramps can be attributed to it: that is the cross-check beside
each user-space (PSS) figure. Launches go in chunks through the runtime's ``launch_many``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from edgelab.errors import UsageError
from edgelab.scenarios.base import Scenario

if TYPE_CHECKING:
    from edgelab.lab import Settings, _Run

#: Memory points taken per runtime during a ramp.
RAMP_POINTS = 20
#: A ramp's launch chunk: about a hundredth of the target, at most this many per call (so a
#: ramp of 100,000 makes ~100 calls and cancel still answers within one chunk).
RAMP_CHUNK_MAX = 1_000
#: MemAvailable readings taken before and after each ramp, this far apart, for its idle noise.
IDLE_READINGS = 8
IDLE_READING_GAP_S = 0.025
#: After a ramp, the readings span as long as the ramp took, up to this (loaded here: idle
#: spread ~16 MiB over 0.2 s, ~110 MiB over 2 s, median of 6 windows).
IDLE_WINDOW_MAX_S = 2.0
#: Pause after a ramp before reading MemAvailable, so the kernel's counters catch up.
RAMP_SETTLE_S = 0.3


class RampScenario(Scenario):
    name = "ramp"
    summary = "hold --resident instances per runtime, then price them (user-space and host memory)"
    reads = ("resident", "hold")

    def validate(self, settings: Settings) -> None:
        if not any(settings.resident.get(r, 0) for r in settings.runtimes):
            raise UsageError("a ramp needs --resident N (instances to hold per runtime)")

    def run(self, run: _Run) -> None:
        ramp(run)


def ramp(run: _Run) -> None:
    """Each runtime in turn up to its ``resident`` target; with ``hold``, keep them until
    cancelled (the TUI's density view)."""
    run.scenario = "ramp"
    targets = {n: run.settings.resident.get(n, 0) for n in run.active()}
    for name, target in targets.items():
        if target > 0 and name in run.runtimes and not run.cancel.is_set():
            _ramp_one(run, name, target)
    if run.settings.hold and not run.cancel.is_set():
        run.hold()


def _ramp_one(run: _Run, name: str, target: int) -> None:
    """Ramp one runtime to ``target`` resident instances and price them twice: user-space
    (PSS growth) and host (the fall of MemAvailable, and the cgroups' memory where the
    runtime reads it). A limit the machine or the runtime hits first ends the ramp there;
    the figures then describe what it held."""
    from edgelab.events import RuntimeStatus
    from edgelab.results import MemoryResult

    run.emit(RuntimeStatus(name, "running"))
    rt = run.runtimes[name]
    # The PSS baseline is read with MemAvailable's idle readings before the ramp (the median,
    # and the spread as the PSS noise a growth must clear); after the ramp its instances are
    # held, so there is no idle PSS to read again.
    pss_idle: list[int] = []
    idle_before, noise_before = _mem_available_idle(run, read=lambda: pss_idle.append(rt.pss_bytes([])))
    pss_idle.sort()
    baseline = pss_idle[len(pss_idle) // 2]
    curve: list[tuple[int, int]] = []
    index = len(run.results[name].samples)
    step = max(1, target // RAMP_POINTS)
    chunk_limit = max(1, min(RAMP_CHUNK_MAX, target // (RAMP_POINTS * 5)))
    launching_s = 0.0
    limit: str | None = None
    ramp_started = time.monotonic()
    while not run.cancel.is_set() and name in run.runtimes:
        held = run.held_count(name)
        if held >= target:
            break
        chunk = min(target - held, chunk_limit)
        started = time.monotonic()
        limit = run.launch_resident(name, chunk, index)
        launching_s += time.monotonic() - started
        index += chunk
        if limit is not None:
            break
        if run.held_count(name) // step != held // step:
            _memory_point(run, name, baseline, curve)
    _memory_point(run, name, baseline, curve)
    ramp_s = time.monotonic() - ramp_started
    if not curve or curve[-1][0] == 0:
        if limit is not None:
            run.give_up(name, limit, None)
        return
    held, growth = curve[-1]
    cgroup = _host_memory(run, name)
    time.sleep(RAMP_SETTLE_S)
    # Other processes move MemAvailable more the longer one looks: the noise after the
    # ramp is read over a window as long as the ramp took (within bounds).
    idle_after, noise_after = _mem_available_idle(run, min(IDLE_WINDOW_MAX_S, ramp_s))
    fallen = idle_before - idle_after
    if limit is not None:
        limit = f"{name} ramp stopped at {held:,} of {target:,} instances: {limit.removeprefix(f'{name}: ')}"
    result = run.results[name]
    result.memory = MemoryResult(
        instances=held,
        pss_bytes_per_instance=growth / held,
        metric=result.memory_metric,
        mem_available_bytes_per_instance=fallen / held,
        curve=tuple(curve),
        cgroup_bytes_per_instance=cgroup / held if cgroup is not None else None,
        mem_available_noise_bytes=float(max(noise_before, noise_after)),
        ramp_rate_per_s=held / launching_s if launching_s > 0 else None,
        limit=limit,
        target=target,
        pss_noise_bytes=float(pss_idle[-1] - pss_idle[0]),
    )


def _host_memory(run: _Run, name: str) -> int | None:
    try:
        return run.runtimes[name].host_memory_bytes(run.resident.get(name, []))
    except Exception:  # noqa: BLE001 - an unreadable cgroup leaves the MemAvailable figure
        return None


def _mem_available_idle(
    run: _Run, window_s: float = 0.0, read: Callable[[], None] | None = None
) -> tuple[int, int]:
    """MemAvailable with nothing launched: the median of a few readings spread over
    ``window_s`` (at least IDLE_READING_GAP_S apart), and their spread (max - min), which
    is the noise a fall during a ramp has to stand clear of. ``read``: called beside each
    reading (the PSS baseline's readings)."""
    gap = max(IDLE_READING_GAP_S, window_s / (IDLE_READINGS - 1))
    readings = []
    for i in range(IDLE_READINGS):
        if i:
            time.sleep(gap)
        readings.append(run.lab.mem_available())
        if read is not None:
            read()
    readings.sort()
    return readings[len(readings) // 2], readings[-1] - readings[0]


def _memory_point(run: _Run, name: str, baseline: int, curve: list[tuple[int, int]]) -> None:
    from edgelab.events import MemoryPoint

    held = run.held_count(name)
    if held == 0 or curve and curve[-1][0] == held:
        return
    try:
        growth = run.runtimes[name].pss_bytes(run.resident.get(name, [])) - baseline
    except Exception:  # noqa: BLE001 - a process gone mid-read skips one point
        return
    curve.append((held, growth))
    run.emit(MemoryPoint(name, held, growth, run.runtimes[name].memory_metric))
