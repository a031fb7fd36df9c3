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
    RampHeld,
    RuntimeDescribed,
    RuntimeStatus,
    SampleRecorded,
    ScenarioFinished,
)
from edgelab.hostinfo import host_facts, mem_available_bytes
from edgelab.protocol import STATUS_REJECTED
from edgelab.results import RunResult, RuntimeResult, Sample

# The runtime-name grammar, where importers of the lab found it before the split.
from edgelab.runtime_names import (  # noqa: F401
    MAX_RESIDENT,
    parse_resident,
    resolve_runtime_name,
    unselected_in_resident,
)
from edgelab.runtimes import RUNTIME_NAMES, create_runtime
from edgelab.runtimes.base import Instance, Launch, Runtime
from edgelab.runtimes.registry import RuntimeInfo
from edgelab.scenarios import get_scenario, scenario_names

# The scenarios' own constants, where importers of the lab found them before the split.
from edgelab.scenarios.burst import (  # noqa: F401
    BLOCK_MAX,
    BLOCK_MIN_ROUNDS,
    BLOCK_S,
    BURST_CHUNK_MAX,
    BURST_CHUNK_S,
    QUIET_BUSY_CORES,
    QUIET_MAX_S,
    QUIET_WINDOW_S,
)
from edgelab.scenarios.ramp import (  # noqa: F401
    IDLE_READING_GAP_S,
    IDLE_READINGS,
    IDLE_WINDOW_MAX_S,
    RAMP_CHUNK_MAX,
    RAMP_POINTS,
    RAMP_SETTLE_S,
)
from edgelab.session import Session
from edgelab.workloads import Function, Workload, resolve_workload

if TYPE_CHECKING:
    from edgelab.watchdog import Watchdog

#: A scenario's name (``edgelab.scenarios.scenario_names()``); kept under this name for importers.
ScenarioName = str
Scenario = ScenarioName
#: The built-in scenarios' names; every registered one: ``scenario_names()``.
SCENARIOS: tuple[str, ...] = scenario_names()
#: How a mixed burst takes turns: short blocks of launches per runtime (the default), or one
#: launch each (every launch then starts in the wake of another runtime's work).
Interleave = Literal["block", "launch"]
INTERLEAVE_MODES: tuple[Interleave, ...] = ("block", "launch")
REJECTED_PREFIX = "workload rejected the request: "
#: How much of each runtime's first answer is kept to say where two answers differ.
RESPONSE_HEAD_BYTES = 64 << 10
#: After this many failed launches in a row a runtime is given up for the rest of the run.
MAX_CONSECUTIVE_FAILURES = 3

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
    scenario: ScenarioName = "burst"
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
    #: Traffic (``edgelab.scenarios.traffic``): arrivals (``edgelab.traffic.PATTERNS``; rate and
    #: duration are ``rate_per_s`` and ``duration_s``), the keep-alive after which an idle
    #: instance is stopped (scale to zero), instances kept ready, and a trace file of arrival
    #: timestamps (pattern ``trace``). ``seed`` makes the arrivals repeatable.
    pattern: str = "poisson"
    keepalive_s: float = 2.0
    prewarm: int = 0
    trace_file: str | None = None
    seed: int | None = None
    #: A person's own function (``edgelab run --wasm/--image/--command``): run it instead of a
    #: workload from the folder (``workload`` is then its display name).
    function: Function | None = None

    def validate(self) -> None:
        # Every number is finite and in its range (edgelab.settings), whoever filled it in;
        # what only one scenario reads, that scenario checks.
        scenario = get_scenario(self.scenario)
        limits.check(self.warmup, "--warmup", limits.WARMUP)
        for name, n in self.resident.items():
            if n < 0:
                raise UsageError(f"--resident for {name} must be 0 or more, not {n}")
            limits.check(n, f"--resident for {name}", limits.RESIDENT)
        scenario.validate(self)
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
            "pattern": self.pattern,
            "keepalive_s": self.keepalive_s,
            "prewarm": self.prewarm,
            "trace_file": self.trace_file,
            "seed": self.seed,
            "function": self.function.as_json() if self.function is not None else None,
        }


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
                    if _family(rt, name) == "container":
                        # Every container rung labels its containers: the watchdog sweeps them
                        # by label, and also removes dead sessions' leftovers, off the lab's path.
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
        workload = resolve_workload(settings.workload, settings.function)
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
    """One scenario over the chosen runtimes; holds the mutable state of a run.

    The bookkeeping every scenario shares lives here (prepare, time and record a launch, give a
    runtime up, release what is held, the result and its metadata); what to launch when is the
    scenario's (``edgelab.scenarios``), which drives the run through the public methods below.
    """

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
        #: Each runtime's first answer: its length and its first RESPONSE_HEAD_BYTES bytes.
        self.response_heads: dict[str, tuple[int, bytes]] = {}
        #: Each ready runtime's self-description, as it said it (saved in the metadata).
        self.described: dict[str, RuntimeInfo] = {}
        self._consecutive_failures: dict[str, int] = {}
        #: Failed launches per runtime so far (RuntimeResult.failed counts them all each time).
        self._failed: dict[str, int] = {}
        self._lock = threading.Lock()
        #: The scenario the samples recorded now belong to (a burst's ramp records "ramp").
        self.scenario = settings.scenario
        self._started = datetime.now(timezone.utc)
        #: A held ramp that reached its targets: ending the hold (r, ctrl+c) completes the run.
        self._held = False
        #: Block mode: the size of each block each runtime ran, in order (for the metadata).
        self.blocks: dict[str, list[int]] = {}
        #: Block mode: time spent waiting for quiet CPUs between blocks (untimed), in seconds.
        self.settle_s = 0.0

    # -- the whole run ----------------------------------------------------------------------
    def execute(self) -> RunResult:
        started = self._started
        scenario = get_scenario(self.settings.scenario)
        with track_run(self.cancel):
            try:
                self._prepare_all()
                scenario.run(self)
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

    def hold(self) -> None:
        """Keep what is resident until cancelled, after saying so with the run so far (a held
        ramp: the TUI's density view); ending the hold is the run's planned end."""
        self._held = True
        self.emit(RampHeld(RunResult(self._metadata(self._started), self.results)))
        self.cancel.wait()

    def _cancelled(self) -> bool:
        """Cancelled before it ended as planned; ending a held ramp is its planned end."""
        return self.cancel.is_set() and not self._held

    def _prepare_all(self) -> None:
        for name in self.settings.runtimes:
            self.emit(RuntimeStatus(name, "preparing"))
            result = RuntimeResult(runtime=name, scenario=self.settings.scenario)
            self.results[name] = result
            from edgelab.runtimes.registry import not_applicable, spec

            try:
                why = not_applicable(spec(name), self.workload) if name != "fake" else None
            except UsageError:
                why = None  # a runtime registered by a test's factory only
            if why is not None:
                self.give_up(name, f"does not apply to {self.workload.name}: {why}", None)
                continue
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
                self.give_up(name, getattr(exc, "reason", str(exc)), getattr(exc, "fix", None))
                continue
            except Exception as exc:  # noqa: BLE001 - one runtime's bug must not stop the others
                self.give_up(name, f"internal error: {type(exc).__name__}: {exc}", None)
                continue
            self.runtimes[name] = rt
            self.described[name] = info
            self.emit(RuntimeDescribed(info))
            self.emit(RuntimeStatus(name, "ready"))

    def give_up(self, name: str, reason: str, fix: str | None) -> None:
        """Take ``name`` out of the run for good, with its one line (and fix) in its result."""
        result = self.results[name]
        line = reason.splitlines()[0] if reason else "unavailable"
        # Errors raised below the lab often name their runtime already; every view does too.
        result.error = line.removeprefix(f"{name}: ")
        result.fix = fix or None
        self.runtimes.pop(name, None)
        self.emit(RuntimeStatus(name, "unavailable", result.error, result.fix))

    def active(self) -> list[str]:
        """The runtimes still in the run, in the order asked for."""
        return [name for name in self.settings.runtimes if name in self.runtimes]

    def held_count(self, name: str) -> int:
        return len(self.resident.get(name, ()))

    # -- recording ----------------------------------------------------------------------------
    def record(self, name: str, sample: Sample, launch: Launch | None, keep: bool) -> None:
        self.record_many(name, [(sample, launch)], keep)

    def record_many(self, name: str, outcomes: list[tuple[Sample, Launch | None]], keep: bool) -> None:
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
            self.give_up(name, f"stopped after {failures} failed launches: {last.error}", None)

    def record_failure(self, name: str, index: int, warmup: bool, started: float, error: str, keep: bool) -> None:
        self.record(name, Sample(name, index, warmup, False, None, error=error, started_at=started, scenario=self.scenario), None, keep)

    def sample_from(self, name: str, index: int, warmup: bool, started: float, launch: Launch) -> Sample:
        response = launch.response
        if response.ok:
            error = None
            if name not in self.response_digests and not launch.waiting:  # the first answer stands for the runtime
                self.response_digests[name] = hashlib.sha256(response.body).hexdigest()
                self.response_heads[name] = (len(response.body), response.body[:RESPONSE_HEAD_BYTES])
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
            scenario=self.scenario,
            exit_ns=launch.exit_ns,
        )

    # -- launching: the primitives scenarios drive ------------------------------------------------
    def launch_once(self, name: str, index: int, warmup: bool, keep: bool) -> None:
        """One launch of ``name``, recorded; kept resident if ``keep`` and it answered."""
        rt = self.runtimes[name]
        started = time.monotonic()
        try:
            launch = rt.launch(self.workload, self.request, self.timeout_s)
        except Exception as exc:  # noqa: BLE001 - recorded as a failed launch, the run goes on
            self.record_failure(name, index, warmup, started, _launch_error(exc), keep)
            return
        sample = self.sample_from(name, index, warmup, started, launch)
        if not (keep and sample.ok):
            _stop_quietly(launch.instance)
        self.record(name, sample, launch, keep)

    def cold_start_batch(self, name: str, first: int, n: int) -> int:
        """One call to the runtime's ``cold_starts``, recorded sample by sample; returns how
        many launches it accounted for (a failure ends the batch, as the runtime does)."""
        rt = self.runtimes[name]
        started = time.monotonic()
        try:
            outcomes = rt.cold_starts(self.workload, self.request, n, self.timeout_s)
        except Exception as exc:  # noqa: BLE001 - one failed launch; the run goes on
            self.record_failure(name, first, first < self.settings.warmup, started, _launch_error(exc), False)
            return 1
        recorded: list[tuple[Sample, Launch | None]] = []
        for index, outcome in enumerate(outcomes, start=first):
            warmup = index < self.settings.warmup
            if isinstance(outcome, LaunchFailed):
                sample = Sample(name, index, warmup, False, None, error=str(outcome), started_at=started, scenario=self.scenario)
                recorded.append((sample, None))
            else:
                recorded.append((self.sample_from(name, index, warmup, started, outcome), outcome))
        self.record_many(name, recorded, False)
        return max(1, len(outcomes))

    def launch_resident(self, name: str, chunk: int, first_index: int) -> str | None:
        """Launch ``chunk`` resident instances (one through ``launch``, more through the
        runtime's ``launch_many``), recorded and kept; returns the line naming a limit if one
        was hit (a ramp then stops there), else None. A limit is not counted towards giving up."""
        if chunk == 1 and self.workload.convention != "command":
            # A command's launch() runs it to its exit; a resident one must be left waiting,
            # which only launch_many does.
            return self._launch_one_resident(name, first_index)
        rt = self.runtimes[name]
        started = time.monotonic()
        try:
            launches = rt.launch_many(self.workload, self.request, chunk, self.timeout_s)
        except EdgelabError as exc:
            limit = limit_line(exc)
            if limit is not None:
                self.record_failure(name, first_index, False, started, str(exc), True)
                return limit
            for i in range(chunk):
                self.record_failure(name, first_index + i, False, started, str(exc), True)
            return None
        outcomes: list[tuple[Sample, Launch | None]] = []
        for i, launch in enumerate(launches):
            sample = self.sample_from(name, first_index + i, False, started, launch)
            if not sample.ok:
                _stop_quietly(launch.instance)
            outcomes.append((sample, launch))
        self.record_many(name, outcomes, keep=True)
        return None

    def _launch_one_resident(self, name: str, index: int) -> str | None:
        rt = self.runtimes[name]
        started = time.monotonic()
        try:
            launch = rt.launch(self.workload, self.request, self.timeout_s)
        except Exception as exc:  # noqa: BLE001 - recorded as a failed launch, the ramp goes on
            limit = limit_line(exc)
            self.record_failure(name, index, False, started, _launch_error(exc), True)
            return limit
        sample = self.sample_from(name, index, False, started, launch)
        if not sample.ok:
            _stop_quietly(launch.instance)
        self.record(name, sample, launch, True)
        return None

    # -- the end ---------------------------------------------------------------------------------
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
            if self.blocks:
                facts["quiet_wait_ms_total"] = round(self.settle_s * 1000, 1)
        blocks = {name: _block_sizes(sizes) for name, sizes in self.blocks.items() if sizes}
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
            "runtimes": {name: info.as_json() for name, info in self.described.items()},
            "preparation": preparation,
            "settings": replace(self.settings, request=None).as_json()
            | {"request_bytes": len(self.request), "timeout_s": self.timeout_s},
            "workload": {
                "name": self.workload.name,
                "description": self.workload.description,
                "convention": self.workload.convention,
            },
            "interleave": self._interleave_facts(),
            "cancelled": self._cancelled(),
            "responses_identical": len(digests) <= 1 if digests else None,
            "response_differences": response_differences(self.response_digests, self.response_heads),
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


def response_differences(
    digests: Mapping[str, str], heads: Mapping[str, tuple[int, bytes]]
) -> list[dict[str, Any]]:
    """Where each runtime's first answer differs from the first runtime's: the first differing
    byte (an offset; None when the kept heads agree and only the rest differs) and both
    lengths. Empty when every answer is the same."""
    names = [name for name in digests if name in heads]
    if not names:
        return []
    first = names[0]
    found: list[dict[str, Any]] = []
    for other in names[1:]:
        if digests[other] == digests[first]:
            continue
        (len_a, head_a), (len_b, head_b) = heads[first], heads[other]
        offset = next((i for i, (x, y) in enumerate(zip(head_a, head_b, strict=False)) if x != y), None)
        if offset is None and len(head_a) != len(head_b) and min(len_a, len_b) <= RESPONSE_HEAD_BYTES:
            offset = min(len(head_a), len(head_b))  # one is a prefix of the other
        found.append({"runtime": other, "against": first, "first_differing_byte": offset, "bytes": len_b, "against_bytes": len_a})
    return found


def _block_sizes(sizes: list[int]) -> dict[str, int]:
    ordered = sorted(sizes)
    return {"blocks": len(sizes), "min": ordered[0], "median": ordered[len(ordered) // 2], "max": ordered[-1]}


def _launch_error(exc: Exception) -> str:
    """A failed launch's line: the lab's own errors as they are, a process limit by its name
    (``ulimit -n is 64``, not ``OSError: [Errno 24]``), anything else with its type."""
    if isinstance(exc, LaunchFailed):
        return str(exc)
    return limits.limit_message(exc) or f"{type(exc).__name__}: {exc}"


def _family(rt: Runtime, name: str) -> str:
    """The runtime's family from the registry entry it was made from; a runtime made by a
    test's factory without one is of the family its name says (``container:paused``)."""
    return rt.spec.family if rt.spec is not None else name.partition(":")[0]


def _stop_quietly(instance: Instance) -> None:
    try:
        instance.stop()
    except Exception:  # noqa: BLE001 - stop is best effort here; close() sweeps the rest
        pass


def _stop_all(rt: Runtime, instances: list[Instance]) -> None:
    """Release what a run held through the runtime's ``stop_many``; should that fail, each
    instance is stopped on its own (several at a time), so that nothing is left behind."""
    try:
        rt.stop_many(instances)
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
