"""The burst: ``warmup + count`` cold starts per runtime, none kept, runtimes taking turns.

Runtimes are interleaved so that drift and heat favour none: in short blocks (the default) or
one launch each (``--interleave launch``). A runtime alone has nothing to take turns with, so
its cold starts run back to back through its ``cold_starts`` (as a bare loop would run them).
If ``resident`` counts are set, a ramp follows (``edgelab.scenarios.ramp``).
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING

from edgelab import settings as limits
from edgelab.errors import UsageError
from edgelab.scenarios.base import Scenario
from edgelab.scenarios.ramp import ramp

if TYPE_CHECKING:
    from edgelab.lab import Settings, _Run

# Events and results are imported where a run needs them: the CLI reads this table to build
# its parser, and ``edgelab --help`` stays instant.

#: A burst of one runtime asks its ``cold_starts`` for chunks of about this long (and at most
#: this many launches), so that cancel and the live view answer promptly.
BURST_CHUNK_S = 0.02
BURST_CHUNK_MAX = 256
#: A mixed burst in block mode: each runtime's block aims at about this long (at least one
#: launch, at most BLOCK_MAX), and a block is at most 1/BLOCK_MIN_ROUNDS of the burst. The
#: first launches of a block after another runtime's are slower (cold caches, a host process
#: woken: Wasm ~50 µs against ~2 µs), so short bursts take few, long turns: with 4 turns a
#: 20-launch Wasm p50 was ~3 µs, with 2 turns ~2 µs, as alone.
BLOCK_S = 0.03
BLOCK_MAX = 2_048
BLOCK_MIN_ROUNDS = 2
#: Between two runtimes' blocks: wait until, over a QUIET_WINDOW_S window, the CPUs were busy
#: less than QUIET_BUSY_CORES cores' worth, but no longer than QUIET_MAX_S.
QUIET_WINDOW_S = 0.005
QUIET_BUSY_CORES = 0.5
QUIET_MAX_S = 0.1


class BurstScenario(Scenario):
    name = "burst"
    summary = "warmup + count cold starts per runtime, none kept, runtimes taking turns"
    reads = ("count", "interleave", "resident")

    def validate(self, settings: Settings) -> None:
        if settings.count <= 0:
            raise UsageError(f"--count must be a positive number of cold starts, not {settings.count}")
        limits.check(settings.count, "--count", limits.COUNT)

    def run(self, run: _Run) -> None:
        burst(run)
        if any(run.settings.resident.values()):
            ramp(run)


def burst(run: _Run) -> None:
    from edgelab.events import RuntimeStatus

    total = run.settings.warmup + run.settings.count
    for name in run.active():
        run.emit(RuntimeStatus(name, "running"))
    active = run.active()
    if len(active) == 1:
        _burst_alone(run, active[0], total)
        return
    if run.settings.interleave == "block":
        _burst_blocks(run, total)
        return
    for index in range(total):
        for name in run.active():
            if run.cancel.is_set():
                return
            run.launch_once(name, index, index < run.settings.warmup, keep=False)


def _burst_blocks(run: _Run, total: int) -> None:
    """A mixed burst in blocks: each runtime in turn runs a short block of launches (about
    BLOCK_S, at least one), and the order flips every round, so no runtime's launch starts
    in the wake of another's work, yet drift still falls on all of them alike. A block's
    size comes from the runtime's last block (the first is one launch, to measure); at
    most 1/BLOCK_MIN_ROUNDS of the burst, so even a short burst takes several turns.
    Between two runtimes' blocks the lab waits (untimed, at most QUIET_MAX_S) until the
    CPUs are quiet: a container's removal goes on in dockerd and containerd after the
    call returns, and a block started in that wake measures it too."""
    order = run.active()
    done = dict.fromkeys(order, 0)
    size = dict.fromkeys(order, 1)
    cap = max(1, -(-total // BLOCK_MIN_ROUNDS))
    run.blocks = {name: [] for name in order}
    rounds = 0
    previous: str | None = None
    while not run.cancel.is_set():
        pending = [n for n in order if n in run.runtimes and done[n] < total]
        if not pending:
            break
        for name in pending if rounds % 2 == 0 else reversed(pending):
            if run.cancel.is_set() or name not in run.runtimes:
                continue
            if previous not in (None, name) and not run.lab.fake:
                run.settle_s += wait_until_quiet(run.cancel)
            previous = name
            n = min(size[name], total - done[name])
            started = time.monotonic()
            ran = _block(run, name, done[name], n)
            elapsed = time.monotonic() - started
            done[name] += ran
            run.blocks[name].append(ran)
            per_launch = elapsed / max(1, ran)
            size[name] = max(1, min(cap, BLOCK_MAX, int(BLOCK_S / max(per_launch, 1e-7))))
        rounds += 1


def _block(run: _Run, name: str, first: int, n: int) -> int:
    """``n`` cold starts of one runtime back to back through its ``cold_starts`` (a single
    launch alone through ``launch``), numbered from ``first``; returns how many it ran."""
    if n > 1:
        return run.cold_start_batch(name, first, n)
    run.launch_once(name, first, first < run.settings.warmup, keep=False)
    return 1


def _burst_alone(run: _Run, name: str, total: int) -> None:
    """A burst of one runtime: nothing to interleave with, so its cold starts run back to
    back in the runtime (as a bare loop would run them), in chunks sized to take about
    BURST_CHUNK_S each so that cancelling and the live view stay prompt."""
    index = 0
    chunk = 1
    while index < total and name in run.runtimes and not run.cancel.is_set():
        started = time.monotonic()
        ran = run.cold_start_batch(name, index, min(chunk, total - index))
        index += ran
        per_launch = (time.monotonic() - started) / ran
        chunk = max(1, min(BURST_CHUNK_MAX, int(BURST_CHUNK_S / max(per_launch, 1e-6))))


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs from /proc/stat, or None where it cannot be read."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields[:8]) - idle, sum(fields[:8])


def wait_until_quiet(cancel: threading.Event) -> float:
    """Wait until the CPUs were quiet for one QUIET_WINDOW_S (see QUIET_BUSY_CORES), at most
    QUIET_MAX_S; returns the time waited. Jiffies are coarse (10 ms), so a window whose counters
    did not move at all counts as quiet only after a full jiffy has passed."""
    started = time.monotonic()
    cores = os.cpu_count() or 1
    before = _cpu_times()
    if before is None:
        return 0.0
    while not cancel.wait(QUIET_WINDOW_S):
        now = _cpu_times()
        if now is None:
            break
        busy, total = now[0] - before[0], now[1] - before[1]
        if total > 0 and busy / total * cores < QUIET_BUSY_CORES:
            break
        if time.monotonic() - started >= QUIET_MAX_S:
            break
        if total > 0:
            before = now
    return time.monotonic() - started
