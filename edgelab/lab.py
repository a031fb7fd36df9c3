"""The measuring core: runs a scenario over several runtimes and reports as it goes.

``edgelab run`` and the TUI both drive this class; the same settings give the same code path
and so the same numbers. Runtimes are interleaved (round-robin) so drift and heat favour none.
Everything here is blocking and runs off any UI event loop.
"""

from __future__ import annotations

import errno
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

from edgelab import __version__
from edgelab import settings as limits
from edgelab.errors import EdgelabError, LaunchFailed, LimitReached, UsageError
from edgelab.events import (
    InstanceCounts,
    LabEvent,
    MemoryPoint,
    RampHeld,
    RuntimeDescribed,
    RuntimeStatus,
    SampleRecorded,
    ScenarioFinished,
)
from edgelab.hostinfo import host_facts, mem_available_bytes
from edgelab.protocol import STATUS_REJECTED
from edgelab.results import MemoryResult, RunResult, RuntimeResult, Sample
from edgelab.runtimes import RUNTIME_NAMES, create_runtime
from edgelab.runtimes.base import Instance, Launch, Runtime
from edgelab.session import Session
from edgelab.workloads import Workload, get_workload

if TYPE_CHECKING:
    from edgelab.watchdog import Watchdog

Scenario = Literal["burst", "ramp", "steady"]
SCENARIOS: tuple[Scenario, ...] = ("burst", "ramp", "steady")
#: How a mixed burst takes turns: short blocks of launches per runtime (the default), or one
#: launch each (every launch then starts in the wake of another runtime's work).
Interleave = Literal["block", "launch"]
INTERLEAVE_MODES: tuple[Interleave, ...] = ("block", "launch")
REJECTED_PREFIX = "workload rejected the request: "
#: After this many failed launches in a row a runtime is given up for the rest of the run.
MAX_CONSECUTIVE_FAILURES = 3
#: A burst of one runtime that can batch its cold starts asks for chunks of about this long
#: (and at most this many launches), so that cancel and the live view answer promptly.
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

#: The cancel events of the runs in progress in this process (see ``cancel_all_runs``).
_RUNNING: set[threading.Event] = set()
_RUNNING_LOCK = threading.Lock()


def cancel_all_runs() -> int:
    """Cancel every run in progress in this process (a signal handler's first move, so that
    runs in worker threads, e.g. a ramp holding its instances, wind down and release them).
    Safe in a signal handler: it only sets events. Returns how many runs were cancelled."""
    running = list(_RUNNING)  # no lock: the handler may interrupt a holder of it (atomic in C)
    for event in running:
        event.set()
    return len(running)


@contextmanager
def track_run(cancel: threading.Event) -> Iterator[None]:
    """While inside, ``cancel_all_runs`` (the CLI's signal handler) sets ``cancel``: for code
    that runs a scenario other than through ``Lab.run`` (e.g. in another process)."""
    with _RUNNING_LOCK:
        _RUNNING.add(cancel)
    try:
        yield
    finally:
        with _RUNNING_LOCK:
            _RUNNING.discard(cancel)


RuntimeFactory = Callable[[str, Session], Runtime]
EventSink = Callable[[LabEvent], None]


@dataclass(frozen=True)
class Settings:
    """One obvious way to say what to run; CLI flags and TUI controls both fill this in."""

    workload: str = "hello"
    runtimes: tuple[str, ...] = RUNTIME_NAMES
    scenario: Scenario = "burst"
    count: int = 20
    warmup: int = 1
    #: Resident instances per runtime for a ramp (after a burst too, if set).
    resident: Mapping[str, int] = field(default_factory=dict)
    rate_per_s: float = 10.0
    duration_s: float = 5.0
    request: bytes | None = None
    timeout_s: float | None = None
    #: Ramp only: keep the instances until cancelled (the TUI's density view).
    hold: bool = False
    #: A mixed burst's turn-taking (see ``Interleave``).
    interleave: Interleave = "block"

    def validate(self) -> None:
        if self.scenario not in SCENARIOS:
            raise UsageError(f"unknown scenario '{self.scenario}' (choose from {', '.join(SCENARIOS)})")
        # Every number is finite and in its range (edgelab.settings), whoever filled it in.
        if self.scenario == "burst" and self.count <= 0:
            raise UsageError(f"--count must be a positive number of cold starts, not {self.count}")
        if self.scenario == "burst":
            limits.check(self.count, "--count", limits.COUNT)
        limits.check(self.warmup, "--warmup", limits.WARMUP)
        for name, n in self.resident.items():
            if n < 0:
                raise UsageError(f"--resident for {name} must be 0 or more, not {n}")
            limits.check(n, f"--resident for {name}", limits.RESIDENT)
        if self.scenario == "ramp" and not any(self.resident.get(r, 0) for r in self.runtimes):
            raise UsageError("a ramp needs --resident N (instances to hold per runtime)")
        if self.scenario == "steady":
            limits.check(self.rate_per_s, "--rate", limits.RATE_PER_S)
            limits.check(self.duration_s, "--duration", limits.DURATION_S)
            launches = self.rate_per_s * self.duration_s
            if launches > limits.STEADY_LAUNCHES_MAX:
                raise UsageError(
                    f"--rate {self.rate_per_s:g} for --duration {self.duration_s:g} s is {launches:,.0f} "
                    f"launches per runtime; at most {limits.STEADY_LAUNCHES_MAX:,} are kept"
                )
        if self.timeout_s is not None:
            limits.check(self.timeout_s, "--timeout", limits.TIMEOUT_S)
        if self.interleave not in INTERLEAVE_MODES:
            raise UsageError(f"unknown --interleave '{self.interleave}' (choose from {', '.join(INTERLEAVE_MODES)})")

    def as_json(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "runtimes": list(self.runtimes),
            "scenario": self.scenario,
            "count": self.count,
            "warmup": self.warmup,
            "resident": dict(self.resident),
            "rate_per_s": self.rate_per_s,
            "duration_s": self.duration_s,
            "request_bytes": len(self.request) if self.request is not None else None,
            "timeout_s": self.timeout_s,
            "interleave": self.interleave,
        }


#: The most resident instances per runtime one run may ask for: a bound for typos (1000000000),
#: well above the 100,000 Wasm instances the lab is built to hold.
MAX_RESIDENT = 1_000_000


def resolve_runtime_name(given: str, label: str = "--resident") -> str:
    """A runtime's full name or an unambiguous prefix of it, in any case (``c``, ``Wasm``,
    ``sub``): the TUI's one-letter spelling and the CLI's full names are one grammar."""
    key = given.strip().lower()
    named = [name for name in RUNTIME_NAMES if key and name.startswith(key)]
    if key in RUNTIME_NAMES:
        return key
    if len(named) == 1:
        return named[0]
    choices = ", ".join(RUNTIME_NAMES)
    letters = ", ".join(name[0] for name in RUNTIME_NAMES)
    if named:
        raise UsageError(f"{label}: '{given.strip()}' could be {' or '.join(named)}; spell more of it")
    raise UsageError(f"{label}: '{given.strip()}' is not a runtime ({choices}, or {letters})")


def _resident_count(text: str, label: str) -> int:
    value = text.strip().replace("_", "")
    if not value.isdigit():
        if value.startswith("-") and value[1:].isdigit():
            raise UsageError(f"{label} must be 0 or more, not {value}")
        raise UsageError(f"{label} must be a whole number of instances, not '{text.strip()}'")
    count = int(value)
    if count > MAX_RESIDENT:
        raise UsageError(f"{label} must be at most {MAX_RESIDENT:,}, not {count:,}")
    return count


def parse_resident(text: str, runtimes: tuple[str, ...], label: str = "--resident") -> dict[str, int]:
    """Resident instances per runtime, from the one spelling the CLI and the TUI both accept.

    ``N`` holds N of every runtime in ``runtimes``; ``runtime=N,...`` one count per runtime,
    each named in full or by an unambiguous prefix, in any case (``c=20,s=50,w=2000`` is
    ``container=20,subprocess=50,wasm=2000``). The answer has a count for every runtime in
    ``runtimes``: 0 where the text names none.

    A runtime named but not among ``runtimes`` is left out rather than refused: the text is a
    table of counts, and which runtimes run is chosen elsewhere (the TUI's toggles,
    ``--runtimes``), so switching one off never makes the field wrong. ``unselected_in_resident``
    tells a front end which were left out, to say so. Bad input is one ``UsageError`` line
    that starts with ``label`` (the TUI passes the field's name).
    """
    if "=" not in text:
        if "," in text or not text.strip():
            raise UsageError(f"{label} takes N or runtime=N,... (e.g. c=20,s=50,w=2000), not '{text.strip()}'")
        count = _resident_count(text, label)
        return {name: count for name in runtimes}
    found = _named_counts(text, label)
    return {name: found.get(name, 0) for name in runtimes}


def unselected_in_resident(text: str, runtimes: tuple[str, ...]) -> list[str]:
    """The runtimes ``text`` gives a count to that are not among ``runtimes`` (for a note)."""
    if "=" not in text:
        return []
    return [name for name, count in _named_counts(text, "--resident").items() if name not in runtimes and count]


def _named_counts(text: str, label: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for part in text.split(","):
        given, equals, value = part.partition("=")
        if not equals or not given.strip():
            raise UsageError(f"{label} takes N or runtime=N,... (e.g. c=20,s=50,w=2000); '{part.strip()}' is neither")
        name = resolve_runtime_name(given, label)
        if name in found:
            raise UsageError(f"{label} names {name} twice")
        found[name] = _resident_count(value, f"{label} for {name}")
    return found


class Lab:
    """Owns the runtimes of one session and runs scenarios on them."""

    def __init__(
        self,
        session: Session | None = None,
        runtime_factory: RuntimeFactory = create_runtime,
        watchdog: bool | None = None,
        mem_available: Callable[[], int] | None = None,
    ) -> None:
        self.session = session or Session()
        self._factory = runtime_factory
        self._runtimes: dict[str, Runtime] = {}
        self._lock = threading.Lock()
        self.fake = runtime_factory is not create_runtime
        if mem_available is None and self.fake:
            from edgelab.runtimes.fake import fake_mem_available

            mem_available = fake_mem_available
        #: The system's MemAvailable in bytes; a lab of fakes reads a fake one, so that its
        #: host figures are as deterministic as the rest of a fake run.
        self.mem_available: Callable[[], int] = mem_available or mem_available_bytes
        #: Start a session watchdog (edgelab.watchdog) with the first runtime; default: real runtimes.
        self.use_watchdog = not self.fake if watchdog is None else watchdog
        self.watchdog: Watchdog | None = None

    def runtime(self, name: str) -> Runtime:
        with self._lock:
            if name not in self._runtimes:
                rt = self._factory(name, self.session)
                if self.use_watchdog:
                    if self.watchdog is None:
                        from edgelab.watchdog import Watchdog

                        self.watchdog = Watchdog(self.session.id)
                    rt.watcher = self.watchdog
                    if name == "container":
                        # It also removes the leftovers of dead sessions, off the lab's path.
                        self.watchdog.uses_containers()
                self._runtimes[name] = rt
            return self._runtimes[name]

    def close(self, wait_s: float = 0.0) -> None:
        """Stop every instance of every runtime; safe to call more than once.

        Then the watchdog sweeps by label and exits (``wait_s``: wait that long for it).
        """
        with self._lock:
            runtimes = list(self._runtimes.values())
            self._runtimes.clear()
            watchdog, self.watchdog = self.watchdog, None
        clean = True
        for rt in runtimes:
            try:
                rt.close()
            except Exception:  # noqa: BLE001 - closing must reach every runtime
                clean = False
        if watchdog is not None:
            watchdog.close(clean=clean, wait_s=wait_s)

    # ------------------------------------------------------------------------------------
    def run(
        self,
        settings: Settings,
        on_event: EventSink | None = None,
        cancel: threading.Event | None = None,
    ) -> RunResult:
        settings.validate()
        workload = get_workload(settings.workload)
        request = workload.default_request if settings.request is None else settings.request
        if len(request) > workload.max_request_bytes:
            raise UsageError(
                f"request of {len(request)} bytes exceeds {workload.name}'s limit of"
                f" {workload.max_request_bytes} bytes"
            )
        timeout_s = settings.timeout_s or workload.timeout_s
        run = _Run(self, settings, workload, request, timeout_s, on_event, cancel)
        return run.execute()


class _Run:
    """One scenario over the chosen runtimes; holds the mutable state of a run."""

    def __init__(
        self,
        lab: Lab,
        settings: Settings,
        workload: Workload,
        request: bytes,
        timeout_s: float,
        on_event: EventSink | None,
        cancel: threading.Event | None,
    ) -> None:
        self.lab = lab
        self.settings = settings
        self.workload = workload
        self.request = request
        self.timeout_s = timeout_s
        self.emit: EventSink = on_event if on_event is not None else (lambda event: None)
        self.cancel = cancel or threading.Event()
        self.results: dict[str, RuntimeResult] = {}
        self.runtimes: dict[str, Runtime] = {}
        self.resident: dict[str, list[Instance]] = {}
        self.response_digests: dict[str, str] = {}
        self._consecutive_failures: dict[str, int] = {}
        #: Failed launches per runtime so far (RuntimeResult.failed counts them all each time).
        self._failed: dict[str, int] = {}
        self._lock = threading.Lock()
        self._scenario = settings.scenario
        self._started = datetime.now(timezone.utc)
        #: A held ramp that reached its targets: ending the hold (r, ctrl+c) completes the run.
        self._held = False
        #: Block mode: the size of each block each runtime ran, in order (for the metadata).
        self._blocks: dict[str, list[int]] = {}
        #: Block mode: time spent waiting for quiet CPUs between blocks (untimed), in seconds.
        self._settle_s = 0.0

    # -- the whole run ----------------------------------------------------------------------
    def execute(self) -> RunResult:
        started = self._started
        with track_run(self.cancel):
            try:
                self._prepare_all()
                if self.settings.scenario == "burst":
                    self._burst()
                    if any(self.settings.resident.values()):
                        self._ramp()
                elif self.settings.scenario == "ramp":
                    self._ramp()
                else:
                    self._steady()
            except BaseException:
                self.cancel.set()  # an interrupt: threads of this run stop launching at once
                raise
            finally:
                self._release_resident()
        for name, runtime_result in self.results.items():
            if runtime_result.error is None:
                self.emit(RuntimeStatus(name, "done"))
        result = RunResult(self._metadata(started), self.results)
        self.emit(ScenarioFinished(result, cancelled=self._cancelled()))
        return result

    def _cancelled(self) -> bool:
        """Cancelled before it ended as planned; ending a held ramp is its planned end."""
        return self.cancel.is_set() and not self._held

    def _prepare_all(self) -> None:
        for name in self.settings.runtimes:
            self.emit(RuntimeStatus(name, "preparing"))
            result = RuntimeResult(runtime=name, scenario=self.settings.scenario)
            self.results[name] = result
            try:
                rt = self.lab.runtime(name)
                result.startup_includes = rt.startup_includes
                result.memory_metric = rt.memory_metric
                result.phase_names = rt.phase_names
                rt.check()
                rt.prepare(self.workload)
                info = rt.describe()
                result.startup_includes = info.startup_includes
                result.phase_names = info.phase_names
                result.family, result.skips, result.ready_cost = info.family, info.skips, info.ready_cost
                result.marks = info.marks
            except EdgelabError as exc:
                self._give_up(name, getattr(exc, "reason", str(exc)), getattr(exc, "fix", None))
                continue
            except Exception as exc:  # noqa: BLE001 - one runtime's bug must not stop the others
                self._give_up(name, f"internal error: {type(exc).__name__}: {exc}", None)
                continue
            self.runtimes[name] = rt
            self.emit(RuntimeDescribed(info))
            self.emit(RuntimeStatus(name, "ready"))

    def _give_up(self, name: str, reason: str, fix: str | None) -> None:
        result = self.results[name]
        line = reason.splitlines()[0] if reason else "unavailable"
        # Errors raised below the lab often name their runtime already; every view does too.
        result.error = line.removeprefix(f"{name}: ")
        result.fix = fix or None
        self.runtimes.pop(name, None)
        self.emit(RuntimeStatus(name, "unavailable", result.error, result.fix))

    def _active(self) -> list[str]:
        return [name for name in self.settings.runtimes if name in self.runtimes]

    # -- one launch ---------------------------------------------------------------------------
    def _record(self, name: str, sample: Sample, launch: Launch | None, keep: bool) -> None:
        self._record_many(name, [(sample, launch)], keep)

    def _record_many(self, name: str, outcomes: list[tuple[Sample, Launch | None]], keep: bool) -> None:
        """Record launches of one runtime in order: one lock and one InstanceCounts for all of
        them (a ramp records its chunks of up to RAMP_CHUNK_MAX this way), a SampleRecorded each."""
        if not outcomes:
            return
        result = self.results[name]
        with self._lock:
            resident = self.resident.setdefault(name, [])
            failures = self._consecutive_failures.get(name, 0)
            failed = self._failed.get(name, 0)
            for sample, launch in outcomes:
                result.samples.append(sample)
                if launch is not None and keep and sample.ok:
                    resident.append(launch.instance)
                failures = 0 if sample.ok else failures + 1
                failed += not sample.ok
            result.running = len(resident)
            self._consecutive_failures[name] = failures
            self._failed[name] = failed
        for sample, _ in outcomes:
            self.emit(SampleRecorded(sample))
        self.emit(InstanceCounts(name, result.running, result.launched, failed))
        if failures >= MAX_CONSECUTIVE_FAILURES and name in self.runtimes:
            last = outcomes[-1][0]
            self._give_up(name, f"stopped after {failures} failed launches: {last.error}", None)

    def _record_failure(self, name: str, index: int, warmup: bool, started: float, error: str, keep: bool) -> None:
        self._record(name, Sample(name, index, warmup, False, None, error=error, started_at=started, scenario=self._scenario), None, keep)

    def _sample_from(self, name: str, index: int, warmup: bool, started: float, launch: Launch) -> Sample:
        response = launch.response
        if response.ok:
            error = None
            if name not in self.response_digests:  # the first answer stands for the runtime
                self.response_digests[name] = hashlib.sha256(response.body).hexdigest()
        elif response.status == STATUS_REJECTED:
            error = REJECTED_PREFIX + response.reason()
        else:
            error = f"workload failed (status {response.status}): {response.reason()}"
        return Sample(
            runtime=name,
            index=index,
            warmup=warmup,
            ok=response.ok,
            startup_ns=launch.startup_ns,
            phases_ns=dict(launch.phases_ns),
            error=error,
            response_bytes=len(response.body),
            started_at=started,
            scenario=self._scenario,
        )

    def _launch_once(self, name: str, index: int, warmup: bool, keep: bool) -> None:
        rt = self.runtimes[name]
        started = time.monotonic()
        try:
            launch = rt.launch(self.workload, self.request, self.timeout_s)
        except Exception as exc:  # noqa: BLE001 - recorded as a failed launch, the run goes on
            self._record_failure(name, index, warmup, started, _launch_error(exc), keep)
            return
        sample = self._sample_from(name, index, warmup, started, launch)
        if not (keep and sample.ok):
            _stop_quietly(launch.instance)
        self._record(name, sample, launch, keep)

    # -- scenarios ------------------------------------------------------------------------------
    def _burst(self) -> None:
        total = self.settings.warmup + self.settings.count
        for name in self._active():
            self.emit(RuntimeStatus(name, "running"))
        active = self._active()
        if len(active) == 1 and hasattr(self.runtimes[active[0]], "cold_starts"):
            self._burst_batched(active[0], total)
            return
        if self.settings.interleave == "block":
            self._burst_blocks(total)
            return
        for index in range(total):
            for name in self._active():
                if self.cancel.is_set():
                    return
                self._launch_once(name, index, index < self.settings.warmup, keep=False)

    def _burst_blocks(self, total: int) -> None:
        """A mixed burst in blocks: each runtime in turn runs a short block of launches (about
        BLOCK_S, at least one), and the order flips every round, so no runtime's launch starts
        in the wake of another's work, yet drift still falls on all of them alike. A block's
        size comes from the runtime's last block (the first is one launch, to measure); at
        most 1/BLOCK_MIN_ROUNDS of the burst, so even a short burst takes several turns.
        Between two runtimes' blocks the lab waits (untimed, at most QUIET_MAX_S) until the
        CPUs are quiet: a container's removal goes on in dockerd and containerd after the
        call returns, and a block started in that wake measures it too."""
        order = self._active()
        done = dict.fromkeys(order, 0)
        size = dict.fromkeys(order, 1)
        cap = max(1, -(-total // BLOCK_MIN_ROUNDS))
        self._blocks = {name: [] for name in order}
        rounds = 0
        previous: str | None = None
        while not self.cancel.is_set():
            pending = [n for n in order if n in self.runtimes and done[n] < total]
            if not pending:
                break
            for name in pending if rounds % 2 == 0 else reversed(pending):
                if self.cancel.is_set() or name not in self.runtimes:
                    continue
                if previous not in (None, name) and not self.lab.fake:
                    self._settle_s += _wait_until_quiet(self.cancel)
                previous = name
                n = min(size[name], total - done[name])
                started = time.monotonic()
                ran = self._block(name, done[name], n)
                elapsed = time.monotonic() - started
                done[name] += ran
                self._blocks[name].append(ran)
                per_launch = elapsed / max(1, ran)
                size[name] = max(1, min(cap, BLOCK_MAX, int(BLOCK_S / max(per_launch, 1e-7))))
            rounds += 1

    def _block(self, name: str, first: int, n: int) -> int:
        """``n`` cold starts of one runtime back to back (by its batched path where it has
        one), numbered from ``first``; returns how many it ran."""
        rt = self.runtimes[name]
        if n > 1 and hasattr(rt, "cold_starts"):
            return self._cold_start_batch(name, first, n)
        for i in range(n):
            if self.cancel.is_set() or name not in self.runtimes:
                return i
            self._launch_once(name, first + i, first + i < self.settings.warmup, keep=False)
        return n

    def _cold_start_batch(self, name: str, first: int, n: int) -> int:
        """One call to the runtime's ``cold_starts``, recorded sample by sample; returns how
        many launches it accounted for (a failure ends the batch, as the runtime does)."""
        rt = self.runtimes[name]
        started = time.monotonic()
        try:
            outcomes = rt.cold_starts(self.workload, self.request, n, self.timeout_s)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - one failed launch; the run goes on
            self._record_failure(name, first, first < self.settings.warmup, started, _launch_error(exc), False)
            return 1
        recorded: list[tuple[Sample, Launch | None]] = []
        for index, outcome in enumerate(outcomes, start=first):
            warmup = index < self.settings.warmup
            if isinstance(outcome, LaunchFailed):
                sample = Sample(name, index, warmup, False, None, error=str(outcome), started_at=started, scenario=self._scenario)
                recorded.append((sample, None))
            else:
                recorded.append((self._sample_from(name, index, warmup, started, outcome), outcome))
        self._record_many(name, recorded, False)
        return max(1, len(outcomes))

    def _burst_batched(self, name: str, total: int) -> None:
        """A burst of one runtime: nothing to interleave with, so its cold starts run back to
        back in the runtime (as a bare loop would run them), in chunks sized to take about
        BURST_CHUNK_S each so that cancelling and the live view stay prompt."""
        index = 0
        chunk = 1
        while index < total and name in self.runtimes and not self.cancel.is_set():
            started = time.monotonic()
            ran = self._cold_start_batch(name, index, min(chunk, total - index))
            index += ran
            per_launch = (time.monotonic() - started) / ran
            chunk = max(1, min(BURST_CHUNK_MAX, int(BURST_CHUNK_S / max(per_launch, 1e-6))))

    def _ramp(self) -> None:
        """Bring each runtime up to its resident target, one runtime after the other.

        Runtimes ramp in turn (not interleaved, unlike cold starts) so that the fall of the
        system's MemAvailable while one runtime ramps can be attributed to it: that is the
        cross-check beside each PSS figure.
        """
        self._scenario = "ramp"
        targets = {n: self.settings.resident.get(n, 0) for n in self._active()}
        for name, target in targets.items():
            if target > 0 and name in self.runtimes and not self.cancel.is_set():
                self._ramp_one(name, target)
        if self.settings.hold and not self.cancel.is_set():
            self._held = True
            self.emit(RampHeld(RunResult(self._metadata(self._started), self.results)))
            self.cancel.wait()

    def _ramp_one(self, name: str, target: int) -> None:
        """Ramp one runtime to ``target`` resident instances and price them twice: user-space
        (PSS growth) and host (the fall of MemAvailable, and the cgroups' memory where the
        runtime reads it). A limit the machine or the runtime hits first ends the ramp there;
        the figures then describe what it held."""
        self.emit(RuntimeStatus(name, "running"))
        rt = self.runtimes[name]
        baseline = rt.pss_bytes([])
        idle_before, noise_before = self._mem_available_idle()
        curve: list[tuple[int, int]] = []
        index = len(self.results[name].samples)
        step = max(1, target // RAMP_POINTS)
        chunk_limit = max(1, min(RAMP_CHUNK_MAX, target // (RAMP_POINTS * 5)))
        launching_s = 0.0
        limit: str | None = None
        ramp_started = time.monotonic()
        while not self.cancel.is_set() and name in self.runtimes:
            held = self._held_count(name)
            if held >= target:
                break
            chunk = min(target - held, chunk_limit)
            started = time.monotonic()
            limit = self._launch_chunk(name, chunk, index)
            launching_s += time.monotonic() - started
            index += chunk
            if limit is not None:
                break
            if self._held_count(name) // step != held // step:
                self._memory_point(name, baseline, curve)
        self._memory_point(name, baseline, curve)
        ramp_s = time.monotonic() - ramp_started
        if not curve or curve[-1][0] == 0:
            if limit is not None:
                self._give_up(name, limit, None)
            return
        held, growth = curve[-1]
        cgroup = self._host_memory(name)
        time.sleep(RAMP_SETTLE_S)
        # Other processes move MemAvailable more the longer one looks: the noise after the
        # ramp is read over a window as long as the ramp took (within bounds).
        idle_after, noise_after = self._mem_available_idle(min(IDLE_WINDOW_MAX_S, ramp_s))
        fallen = idle_before - idle_after
        if limit is not None:
            limit = f"{name} ramp stopped at {held:,} of {target:,} instances: {limit.removeprefix(f'{name}: ')}"
        result = self.results[name]
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
        )

    def _held_count(self, name: str) -> int:
        return len(self.resident.get(name, ()))

    def _host_memory(self, name: str) -> int | None:
        try:
            return self.runtimes[name].host_memory_bytes(self.resident.get(name, []))
        except Exception:  # noqa: BLE001 - an unreadable cgroup leaves the MemAvailable figure
            return None

    def _mem_available_idle(self, window_s: float = 0.0) -> tuple[int, int]:
        """MemAvailable with nothing launched: the median of a few readings spread over
        ``window_s`` (at least IDLE_READING_GAP_S apart), and their spread (max - min), which
        is the noise a fall during a ramp has to stand clear of."""
        gap = max(IDLE_READING_GAP_S, window_s / (IDLE_READINGS - 1))
        readings = []
        for i in range(IDLE_READINGS):
            if i:
                time.sleep(gap)
            readings.append(self.lab.mem_available())
        readings.sort()
        return readings[len(readings) // 2], readings[-1] - readings[0]

    def _launch_chunk(self, name: str, chunk: int, first_index: int) -> str | None:
        """Launch ``chunk`` resident instances; returns the line naming a limit if one was
        hit (the ramp then stops), else None."""
        rt = self.runtimes[name]
        launch_many = getattr(rt, "launch_many", None)
        if chunk == 1 or launch_many is None:
            for i in range(chunk):
                if name not in self.runtimes:
                    return None
                limit = self._launch_resident(name, first_index + i)
                if limit is not None:
                    return limit
            return None
        started = time.monotonic()
        try:
            launches: list[Launch] = launch_many(self.workload, self.request, chunk, self.timeout_s)
        except EdgelabError as exc:
            limit = limit_line(exc)
            if limit is not None:
                self._record_failure(name, first_index, False, started, str(exc), True)
                return limit
            for i in range(chunk):
                self._record_failure(name, first_index + i, False, started, str(exc), True)
            return None
        outcomes: list[tuple[Sample, Launch | None]] = []
        for i, launch in enumerate(launches):
            sample = self._sample_from(name, first_index + i, False, started, launch)
            if not sample.ok:
                _stop_quietly(launch.instance)
            outcomes.append((sample, launch))
        self._record_many(name, outcomes, keep=True)
        return None

    def _launch_resident(self, name: str, index: int) -> str | None:
        """One resident launch for a ramp; a limit is returned, not counted towards giving up."""
        rt = self.runtimes[name]
        started = time.monotonic()
        try:
            launch = rt.launch(self.workload, self.request, self.timeout_s)
        except Exception as exc:  # noqa: BLE001 - recorded as a failed launch, the ramp goes on
            limit = limit_line(exc)
            self._record_failure(name, index, False, started, _launch_error(exc), True)
            return limit
        sample = self._sample_from(name, index, False, started, launch)
        if not sample.ok:
            _stop_quietly(launch.instance)
        self._record(name, sample, launch, True)
        return None

    def _memory_point(self, name: str, baseline: int, curve: list[tuple[int, int]]) -> None:
        held = len(self.resident.get(name, ()))
        if held == 0 or curve and curve[-1][0] == held:
            return
        try:
            growth = self.runtimes[name].pss_bytes(self.resident.get(name, [])) - baseline
        except Exception:  # noqa: BLE001 - a process gone mid-read skips one point
            return
        curve.append((held, growth))
        self.emit(MemoryPoint(name, held, growth, self.runtimes[name].memory_metric))

    def _steady(self) -> None:
        """The asked rate per runtime for ``duration_s`` of wall time: no launch starts after the
        deadline (one in flight ends within its timeout). Runtimes run side by side, each in a
        thread of its own, one launch at a time: a runtime slower than the rate launches back to
        back, with no burst to catch up, and its achieved rate (and a warning) says how far it
        fell short."""
        interval = 1.0 / self.settings.rate_per_s
        started = time.monotonic()
        deadline = started + self.settings.duration_s

        def drive(name: str) -> None:
            result = self.results[name]
            launches = 0
            due = started
            while name in self.runtimes and not self.cancel.is_set():
                now = time.monotonic()
                if now >= deadline:
                    break
                if due > now:
                    self.cancel.wait(min(due, deadline) - now)
                    continue
                self._launch_once(name, launches, False, keep=False)
                launches += 1
                due = max(due + interval, time.monotonic())
            window = min(time.monotonic(), deadline) - started
            result.rate_achieved_per_s = launches / window if window > 0 else 0.0

        for name in self._active():
            result = self.results[name]
            result.clock_origin = started
            result.rate_asked_per_s = self.settings.rate_per_s
        threads = [threading.Thread(target=drive, args=(n,), name=f"steady-{n}") for n in self._active()]
        for name in self._active():
            self.emit(RuntimeStatus(name, "running"))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _release_resident(self) -> None:
        for name, instances in list(self.resident.items()):
            self.emit(RuntimeStatus(name, "stopping"))
            _stop_all(self.runtimes.get(name) or self.lab.runtime(name), instances)
            result = self.results[name]
            result.running = 0
            self.emit(InstanceCounts(name, 0, result.launched, result.failed))
        self.resident.clear()

    def _interleave_facts(self) -> dict[str, Any]:
        """How the burst took turns, so an export says what a figure was measured beside."""
        facts: dict[str, Any] = {"mode": self.settings.interleave}
        if self.settings.interleave == "block":
            facts["block_target_ms"] = BLOCK_S * 1000
            if self._blocks:
                facts["quiet_wait_ms_total"] = round(self._settle_s * 1000, 1)
        blocks = {name: _block_sizes(sizes) for name, sizes in self._blocks.items() if sizes}
        if blocks:
            facts["launches_per_block"] = blocks
        return facts

    def _metadata(self, started: datetime) -> dict[str, Any]:
        versions: dict[str, str] = {"edgelab": __version__}
        for rt in self.runtimes.values():
            try:
                versions.update(rt.versions())
            except Exception:  # noqa: BLE001 - a version we cannot read is left out
                pass
        preparation = {}
        for name, rt in self.runtimes.items():
            try:
                preparation[name] = rt.preparation()
            except Exception:  # noqa: BLE001 - a cost we cannot read is left out
                pass
        digests = set(self.response_digests.values())
        return {
            "started": started.isoformat(),
            "finished": datetime.now(timezone.utc).isoformat(),
            "session": self.lab.session.id,
            "host": host_facts(),
            "versions": versions,
            "preparation": preparation,
            "settings": replace(self.settings, request=None).as_json()
            | {"request_bytes": len(self.request), "timeout_s": self.timeout_s},
            "workload": {"name": self.workload.name, "description": self.workload.description},
            "interleave": self._interleave_facts(),
            "cancelled": self._cancelled(),
            "responses_identical": len(digests) <= 1 if digests else None,
            "units": "startup in microseconds (us), memory in KiB (1024 bytes)",
            "fake": self.lab.fake,
        }


#: errno values that mean the machine ran out of something rather than that a launch went wrong.
_LIMIT_ERRNOS = {errno.EAGAIN: "pids or threads", errno.ENOMEM: "memory", errno.EMFILE: "open files",
                 errno.ENFILE: "open files (system)", errno.ENOSPC: "space"}
#: How runtimes' own launch errors name such a limit (os.strerror of the errnos above).
_LIMIT_PHRASES = {os.strerror(code): what for code, what in _LIMIT_ERRNOS.items()}


def limit_line(exc: BaseException) -> str | None:
    """The one line naming the limit ``exc`` says the machine or runtime hit, or None if it
    is an ordinary failed launch. ``LimitReached`` says so itself; an ``OSError`` by errno; a
    runtime's ``LaunchFailed`` by the strerror text it carries (a spawn that hit the pids
    limit reads "Resource temporarily unavailable")."""
    if isinstance(exc, LimitReached):
        return exc.limit
    if isinstance(exc, MemoryError):
        return "out of memory in the lab process"
    if isinstance(exc, OSError) and exc.errno in _LIMIT_ERRNOS:
        return f"out of {_LIMIT_ERRNOS[exc.errno]}: {exc.strerror}"
    if isinstance(exc, LaunchFailed):
        text = str(exc)
        for phrase, what in _LIMIT_PHRASES.items():
            if phrase in text:
                return f"out of {what}: {text.splitlines()[0]}"
    return None


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs from /proc/stat, or None where it cannot be read."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields[:8]) - idle, sum(fields[:8])


def _wait_until_quiet(cancel: threading.Event) -> float:
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


def _block_sizes(sizes: list[int]) -> dict[str, int]:
    ordered = sorted(sizes)
    return {"blocks": len(sizes), "min": ordered[0], "median": ordered[len(ordered) // 2], "max": ordered[-1]}


def _launch_error(exc: Exception) -> str:
    """A failed launch's line: the lab's own errors as they are, a process limit by its name
    (``ulimit -n is 64``, not ``OSError: [Errno 24]``), anything else with its type."""
    if isinstance(exc, LaunchFailed):
        return str(exc)
    return limits.limit_message(exc) or f"{type(exc).__name__}: {exc}"


def _stop_quietly(instance: Instance) -> None:
    try:
        instance.stop()
    except Exception:  # noqa: BLE001 - stop is best effort here; close() sweeps the rest
        pass


def _stop_all(rt: Runtime, instances: list[Instance]) -> None:
    stop_many = getattr(rt, "stop_many", None)
    if stop_many is not None:
        try:
            stop_many(instances)
            return
        except Exception:  # noqa: BLE001 - fall back to one by one
            pass
    if len(instances) < 4:
        for instance in instances:
            _stop_quietly(instance)
        return
    # Containers take a fraction of a second each to remove: several at a time.
    from concurrent.futures import ThreadPoolExecutor

    try:
        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="stop") as pool:
            list(pool.map(_stop_quietly, instances))
    except RuntimeError:
        # No thread can start (a ramp that ran into the pids limit): one by one, then; stop
        # is idempotent, so those the pool reached are skipped cheaply.
        for instance in instances:
            _stop_quietly(instance)
