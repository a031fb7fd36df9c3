"""Real traffic with scale to zero: requests served warm by kept instances, or cold by launches.

Arrivals are drawn ahead (``edgelab.arrivals``, seeded; the seed used is saved) and are the
same for every runtime. Each runtime has its own driver, side by side as in ``steady``: a
dispatcher thread releases each request when it is due into a pool of ``WORKERS`` threads.
A request takes the most recently idle resident instance (warm: ``instance.request``, timed
as ``exec_ns``) or, when every instance is busy or none is left, a new launch (cold:
``rt.launch``, its ``startup_ns`` to the first response byte; the instance then stays
resident). An instance idle longer than the keep-alive is stopped (scale to zero) unless
that would leave fewer than ``prewarm``, which are launched before the clock starts
(untimed, not requests). The policy is written down in ``edgelab.traffic``: the simulator
mirrors it.

Every cold launch is also a ``Sample`` (so the startup table shows the cold starts); every
request is a ``RequestRecord`` in ``RuntimeResult.traffic``. Memory held is read off the
request path: ``rt.pss_bytes`` of the resident instances about every ``MEMORY_EVERY_S``.
Everything this scenario launched is stopped before it returns, also when the run is
cancelled (ctrl+c, SIGTERM) or a runtime is given up; the lab's runtimes' ``close`` and the
session watchdog remain the backstop.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from edgelab import settings as limits
from edgelab.errors import UsageError
from edgelab.protocol import Response
from edgelab.scenarios.base import Scenario
from edgelab.traffic import PATTERNS, WORKERS, RequestRecord, TrafficResult

if TYPE_CHECKING:
    from edgelab.lab import Settings, _Run
    from edgelab.runtimes.base import Instance

#: Most requests one traffic run may serve per runtime: each is a kept record.
MAX_REQUESTS = 1_000_000
#: How often the memory held is read (seconds), off the request path.
MEMORY_EVERY_S = 0.5
#: Idle readings the memory baseline is the median of, and their spacing (seconds), taken
#: before the clock and again once everything is stopped: their spreads and the baseline's
#: move between the two are the noise a growth must clear (``TrafficResult.judge_memory``).
BASELINE_READINGS = 3
BASELINE_GAP_S = 0.05
#: Longest a waiting thread sleeps before looking at the cancel flag again (seconds).
POLL_S = 0.05


class TrafficScenario(Scenario):
    name = "traffic"
    summary = "requests at --rate (--pattern) served warm by kept instances or cold; idle ones stopped after --keepalive"
    reads = ("rate_per_s", "duration_s", "pattern", "keepalive_s", "prewarm", "trace_file")

    def validate(self, settings: Settings) -> None:
        limits.check(settings.duration_s, "--duration", limits.DURATION_S)
        limits.check(settings.keepalive_s, "--keepalive", limits.KEEPALIVE_S)
        limits.check(settings.prewarm, "--prewarm", limits.PREWARM)
        if settings.pattern not in PATTERNS:
            raise UsageError(f"unknown --pattern '{settings.pattern}' (choose from {', '.join(PATTERNS)})")
        if settings.pattern != "trace":
            if settings.trace_file:
                raise UsageError(f"--trace replays a file with --pattern trace, not with --pattern {settings.pattern}")
            limits.check(settings.rate_per_s, "--rate", limits.RATE_PER_S)
            expected = settings.rate_per_s * settings.duration_s
            if expected > MAX_REQUESTS:
                raise UsageError(
                    f"--rate {settings.rate_per_s:g} for --duration {settings.duration_s:g} s is {expected:,.0f} "
                    f"requests per runtime; at most {MAX_REQUESTS:,} are kept"
                )
            return
        if not settings.trace_file:
            raise UsageError("--pattern trace needs --trace FILE (timestamps in seconds, or the Azure per-minute CSV)")
        # Parsed here, so that a bad trace fails before anything launches.
        from edgelab.arrivals import read_trace

        times = read_trace(settings.trace_file)
        within = int((times < settings.duration_s).sum())
        if within == 0:
            raise UsageError(
                f"trace {settings.trace_file}: no arrival within --duration {settings.duration_s:g} s"
                f" (its first is at {times[0]:g} s, its last at {times[-1]:g} s)"
            )
        if within > MAX_REQUESTS:
            raise UsageError(
                f"trace {settings.trace_file}: {within:,} arrivals within --duration {settings.duration_s:g} s;"
                f" at most {MAX_REQUESTS:,} are kept"
            )

    def run(self, run: _Run) -> None:
        import numpy as np

        from edgelab.arrivals import arrivals
        from edgelab.events import RuntimeStatus

        s = run.settings
        seed = s.seed if s.seed is not None else secrets.randbits(32)
        times = arrivals(s.pattern, s.rate_per_s, s.duration_s, np.random.default_rng(seed), s.trace_file).tolist()
        drivers = [_Driver(run, name, times, seed) for name in run.active()]
        try:
            _each(drivers, _Driver.before_clock, "traffic-prepare")
            ready = [d for d in drivers if d.name in run.runtimes]
            for driver in ready:
                driver.spawn()
            started = time.monotonic()
            for driver in ready:
                run.emit(RuntimeStatus(driver.name, "running"))
            _each(ready, lambda d: d.drive(started), "traffic")
        finally:
            # Whatever happened (a cancel, an interrupt, a crash in a driver), nothing this run
            # launched stays: stop what is held, let launches in flight end (within their
            # timeout), and stop what they brought.
            for driver in drivers:
                driver.stop_everything()
            deadline = time.monotonic() + run.timeout_s + 2
            for driver in drivers:
                for thread in driver.workers:
                    thread.join(max(0.0, deadline - time.monotonic()))
                driver.stop_everything()


def _each(drivers: list[_Driver], what, prefix: str) -> None:  # noqa: ANN001 - a driver method
    """``what(driver)`` for every driver at once, one thread each; a driver that raises gives
    its runtime up with the error's line (one runtime's bug must not stop the others)."""

    def guarded(driver: _Driver) -> None:
        try:
            what(driver)
        except Exception as exc:  # noqa: BLE001 - said in the runtime's result
            if driver.name in driver.run.runtimes:
                driver.run.give_up(driver.name, f"internal error: {type(exc).__name__}: {exc}", None)

    threads = [threading.Thread(target=guarded, args=(d,), name=f"{prefix}-{d.name}") for d in drivers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


class _Driver:
    """One runtime's traffic: its instances (idle, busy, launching), its requests, its memory."""

    def __init__(self, run: _Run, name: str, times: list[float], seed: int) -> None:
        s = run.settings
        self.run = run
        self.name = name
        self.rt = run.runtimes[name]
        self.times = times
        self.command = run.workload.convention == "command"
        self.keepalive_s = s.keepalive_s
        self.prewarm = 0 if self.command else int(s.prewarm)
        self.result = run.results[name]
        notes = []
        if self.command:
            notes.append(
                "a command workload answers once: every request is a cold start and its instance is gone"
                " after it, so keep-alive and pre-warm have nothing to keep"
            )
        self.traffic = TrafficResult(
            pattern=s.pattern,
            rate_per_s=s.rate_per_s,
            keepalive_s=s.keepalive_s,
            prewarm=self.prewarm,
            duration_s=s.duration_s,
            seed=seed,
            trace_file=s.trace_file,
            workers=WORKERS,
            memory_metric=self.rt.memory_metric,
        )
        self.notes = notes
        self.traffic.service_includes = (
            "cold: the runtime's startup (launch to first response byte, as the startup table);"
            + (
                " warm: the Wasm host's own time for the request (IPC to the host excluded, as in its startup)"
                if type(self.rt).__module__.startswith("edgelab.runtimes.wasm")
                else " warm: the lab's round trip around the request (the runtime's pipes or stream included,"
                " as in its startup's first response)"
            )
        )
        self.result.traffic = self.traffic
        self.cond = threading.Condition()
        #: Idle resident instances with the monotonic time they went idle; the end is the most recent.
        self.idle: list[tuple[Instance, float]] = []
        #: Resident instances serving a warm request now.
        self.busy: set[Instance] = set()
        #: Instances held: idle + busy + launches in progress.
        self.count = 0
        self.records: list[RequestRecord | None] = [None] * len(times)
        self.started = 0.0
        self.launches = 0  # sample indexes: warmups first, then the cold starts
        self.stopper = ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"traffic-stop-{name}")
        self.memory: list[tuple[float, int, int]] = []  # (t_s, instances, growth bytes)
        self.baseline: int | None = None
        self.baseline_noise = 0
        self.done = threading.Event()
        #: Set when the clock starts (workers wait for it with their first arrival taken).
        self.go = threading.Event()
        self.next_index = 0
        self.workers: list[threading.Thread] = []
        self.helpers: list[threading.Thread] = []
        self.stopped_all = False

    # -- before the clock --------------------------------------------------------------------
    def before_clock(self) -> None:
        """Warm-up launches (recorded as warmups, not kept), the memory baseline, then the
        pre-warmed instances; none of it is a request or timed in the traffic."""
        run, name = self.run, self.name
        for i in range(run.settings.warmup):
            if name not in run.runtimes or run.cancel.is_set():
                return
            run.launch_once(name, i, True, keep=False)
            self.launches += 1
        if self.command:
            return
        try:
            self.baseline, self.baseline_noise = self._idle_memory()
        except Exception as exc:  # noqa: BLE001 - no memory figure then, said in the note
            self.notes.append(f"memory not measured: {_line(exc)}")
        for k in range(self.prewarm):
            if name not in run.runtimes or run.cancel.is_set():
                return
            try:
                launch = self.rt.launch(run.workload, run.request, run.timeout_s)
            except Exception as exc:  # noqa: BLE001 - the run goes on with fewer, said so
                self.notes.append(f"pre-warmed {k} of {self.prewarm}: {_line(exc)}")
                return
            if not launch.response.ok:
                _stop_quietly(launch.instance)
                self.notes.append(f"pre-warmed {k} of {self.prewarm}: a pre-warm launch answered status {launch.response.status}")
                return
            with self.cond:
                self.idle.append((launch.instance, 0.0))
                self.count += 1

    # -- the clock runs ----------------------------------------------------------------------
    def spawn(self) -> None:
        """Start the workers before the clock: each takes its first arrival now and waits for
        ``go``, so a request due at 0 finds a worker waiting, as later ones do."""
        name = self.name
        self.helpers = [threading.Thread(target=self._reaper, name=f"traffic-reap-{name}", daemon=True)]
        if self.baseline is not None:
            self.helpers.append(
                threading.Thread(target=self._sample_memory, name=f"traffic-memory-{name}", daemon=True)
            )
        self.workers = [
            threading.Thread(target=self._worker, name=f"traffic-{name}-{i}", daemon=True)
            for i in range(min(WORKERS, len(self.times)))
        ]
        for thread in self.workers:
            thread.start()

    def drive(self, started: float) -> None:
        """Run the clock from ``started``: ``WORKERS`` threads take the arrivals in order, each
        sleeping until its request is due; a reaper stops instances whose keep-alive ran out;
        a sampler reads memory. Returns at the end of the duration, everything stopped."""
        run = self.run
        self.started = started
        self.result.clock_origin = started
        with self.cond:
            self.idle = [(instance, started) for instance, _ in self.idle]
            self.traffic.instances_over_time.append((0.0, self.count))
        self.go.set()
        self._counts()
        try:
            for thread in self.helpers:
                thread.start()
            for thread in self.workers:
                thread.join()  # requests in flight finish within their timeout
            self._sleep_until(started + run.settings.duration_s)  # the reaper goes on to the end
        finally:
            self.done.set()
            self.go.set()
            with self.cond:
                self.cond.notify_all()
            for thread in self.workers + [h for h in self.helpers if h.ident is not None]:
                thread.join()
            self._finish()

    def _sleep_until(self, due: float) -> bool:
        """Sleep until ``due``; False if the run was cancelled or this runtime given up first."""
        run = self.run
        while True:
            if run.cancel.is_set() or self.name not in run.runtimes:
                return False
            now = time.monotonic()
            if now >= due:
                return True
            run.cancel.wait(min(due - now, POLL_S))

    def _worker(self) -> None:
        """Take the next arrival, sleep until it is due, serve it; until none is left. A
        request nobody was free to take when it was due waited for a worker: ``queue_ns``."""
        while True:
            with self.cond:
                index = self.next_index
                if index >= len(self.times) or self.done.is_set():
                    return
                self.next_index += 1
            claimed = time.monotonic()
            self.go.wait()
            if self.done.is_set():
                return
            t = self.times[index]
            due = self.started + t
            if not self._sleep_until(due):
                return  # cancelled, or the runtime given up: not served (the note counts them)
            now = time.monotonic()
            if claimed <= due:
                self._serve(index, t, 0, max(0, int((now - due) * 1e9)), now)
            else:
                self._serve(index, t, max(0, int((now - due) * 1e9)), 0, now)

    def _reaper(self) -> None:
        """Stop instances idle past the keep-alive as they expire, until the run ends."""
        with self.cond:
            while not self.done.is_set() and not self.run.cancel.is_set():
                now = time.monotonic()
                expiry = self._reap(now)
                self.cond.wait(max(0.0, min(expiry, now + POLL_S) - now))

    def _reap(self, now: float) -> float:
        """Stop idle instances past the keep-alive (never below ``prewarm``), oldest first;
        returns when the next one will expire. Call with ``cond`` held."""
        while self.idle and self.count > self.prewarm:
            instance, since = self.idle[0]
            if now - since <= self.keepalive_s and self.keepalive_s > 0:
                return since + self.keepalive_s
            self.idle.pop(0)
            self._stop_one(instance, now)
        return float("inf")

    def _stop_one(self, instance: Instance, now: float) -> None:
        """Scale one instance down (with ``cond`` held): counted now, stopped off the path."""
        self.count = max(0, self.count - 1)
        self.traffic.scaled_down += 1
        self.traffic.instances_over_time.append((now - self.started, self.count))
        self._stop_later(instance)

    def _serve(self, index: int, t: float, queue_ns: int, late_ns: int, now: float) -> None:
        with self.cond:
            instance = None
            self._reap(now)
            if self.idle:
                instance, _ = self.idle.pop()  # the most recently idle one (LIFO)
                self.busy.add(instance)
            else:
                self.count += 1
                self.traffic.instances_over_time.append((now - self.started, self.count))
        self._counts()
        if instance is not None:
            self._warm(index, t, queue_ns, late_ns, instance)
        else:
            self._cold(index, t, queue_ns, late_ns)

    def _warm(self, index: int, t: float, queue_ns: int, late_ns: int, instance: Instance) -> None:
        run = self.run
        error = None
        began = time.monotonic_ns()
        try:
            response, exec_ns = _timed_request(instance, run.request, run.timeout_s)
            if not response.ok:
                error = f"workload failed (status {response.status}): {response.reason()}"
        except Exception as exc:  # noqa: BLE001 - a failed request; the run goes on
            error = _line(exc)
        with self.cond:
            self.busy.discard(instance)
            if error is None:
                idle_at = time.monotonic_ns()
                self.records[index] = RequestRecord(index, t, "warm", queue_ns, exec_ns=exec_ns, late_ns=late_ns,
                                                    held_ns=idle_at - began)  # fmt: skip
                self._went_idle(instance, idle_at)
            else:
                # An instance that failed a request is not trusted with another: stopped.
                self.records[index] = RequestRecord(index, t, "failed", queue_ns, error=error, late_ns=late_ns)
                self.count = max(0, self.count - 1)
                self.traffic.instances_over_time.append((time.monotonic() - self.started, self.count))
                self._stop_later(instance)
        self._counts()

    def _cold(self, index: int, t: float, queue_ns: int, late_ns: int) -> None:
        from edgelab.lab import _launch_error

        run, name = self.run, self.name
        with self.cond:
            sample_index = self.launches
            self.launches += 1
        began = time.monotonic()
        began_ns = time.monotonic_ns()
        try:
            launch = self.rt.launch(run.workload, run.request, run.timeout_s)
        except Exception as exc:  # noqa: BLE001 - recorded as a failed launch, the run goes on
            error = _launch_error(exc)
            run.record_failure(name, sample_index, False, began, error, False)
            with self.cond:
                self.records[index] = RequestRecord(index, t, "failed", queue_ns, error=error, late_ns=late_ns)
                self.count = max(0, self.count - 1)
                self.traffic.instances_over_time.append((time.monotonic() - self.started, self.count))
            self._counts()
            return
        sample = run.sample_from(name, sample_index, False, began, launch)
        keep = sample.ok and not self.command and not self.stopped_all
        with self.cond:
            idle_at = time.monotonic_ns()
            if sample.ok:
                self.records[index] = RequestRecord(
                    index, t, "cold", queue_ns, startup_ns=launch.startup_ns, late_ns=late_ns,
                    held_ns=idle_at - began_ns,
                )
            else:
                self.records[index] = RequestRecord(index, t, "failed", queue_ns, error=sample.error, late_ns=late_ns)
            if keep:
                self._went_idle(launch.instance, idle_at)
            else:
                self.count = max(0, self.count - 1)
                self.traffic.instances_over_time.append((time.monotonic() - self.started, self.count))
                self._stop_later(launch.instance)
        run.record(name, sample, launch, keep=False)  # the driver keeps it, not the lab's list
        self._counts()

    def _went_idle(self, instance: Instance, idle_at_ns: int) -> None:
        """An instance answered (``cond`` held): idle from ``idle_at_ns`` (``monotonic_ns``,
        the end of the request's ``held_ns``) on, or stopped at once with a keep-alive of 0
        (above the pre-warmed floor)."""
        now = idle_at_ns / 1e9
        if self.stopped_all:
            self.count = max(0, self.count - 1)
            self._stop_later(instance)
            return
        self.idle.append((instance, now))
        if self.keepalive_s == 0:
            self._reap(now)
        self.cond.notify_all()  # the dispatcher's next expiry may be sooner now

    def _stop_later(self, instance: Instance) -> None:
        """Stop ``instance`` off the request path; once the stopper is shut (the end), here."""
        try:
            self.stopper.submit(_stop_quietly, instance)
        except RuntimeError:
            _stop_quietly(instance)

    def _counts(self) -> None:
        from edgelab.events import InstanceCounts

        self.result.running = self.count
        self.run.emit(InstanceCounts(self.name, self.count, self.result.launched, self.result.failed))

    # -- memory ------------------------------------------------------------------------------
    def _idle_memory(self) -> tuple[int, int]:
        """The runtime's memory with no instance: the median of BASELINE_READINGS readings
        BASELINE_GAP_S apart, and their spread (max - min), in bytes."""
        readings = []
        for i in range(BASELINE_READINGS):
            if i:
                time.sleep(BASELINE_GAP_S)
            readings.append(self.rt.pss_bytes([]))
        readings.sort()
        return readings[len(readings) // 2], readings[-1] - readings[0]

    def _sample_memory(self) -> None:
        """PSS of the resident instances about every MEMORY_EVERY_S, as growth over the idle
        baseline; a reading that fails is skipped (the count of readings says how many held)."""
        assert self.baseline is not None
        while not self.done.wait(MEMORY_EVERY_S):
            with self.cond:
                instances = [i for i, _ in self.idle] + list(self.busy)
            try:
                pss = self.rt.pss_bytes(instances)
            except Exception:  # noqa: BLE001 - one reading missing, not the run
                continue
            self.memory.append((time.monotonic() - self.started, len(instances), pss - self.baseline))

    # -- the end -----------------------------------------------------------------------------
    def _finish(self) -> None:
        self.stop_everything()
        t = self.traffic
        t.requests = [r for r in self.records if r is not None]
        if not self.times:
            self.notes.append(f"no request arrived within the {self.run.settings.duration_s:g} s (pattern {t.pattern})")
        dropped = len(self.times) - len(t.requests)
        if dropped:
            why = "cancelled" if self.run.cancel.is_set() else f"given up ({self.result.error})"
            self.notes.append(f"{why}: {dropped:,} of {len(self.times):,} requests not served")
        held = [(float(growth), n) for _, n, growth in self.memory if n > 0]
        t.memory_samples = len(self.memory)
        t.memory_baseline_bytes = float(self.baseline) if self.baseline is not None else None
        t.memory_baseline_noise_bytes = float(self.baseline_noise) if self.baseline is not None else None
        if held:
            # Everything is stopped: the idle figure again, so that its drift over the run is
            # counted as noise (see judge_memory). Unreadable now: no figure, said so.
            with contextlib.suppress(Exception):
                after, after_noise = self._idle_memory()
                t.memory_baseline_after_bytes, t.memory_baseline_after_noise_bytes = float(after), float(after_noise)
            note = t.judge_memory(held)
            if note:
                self.notes.append(note)
        elif not self.command and self.baseline is not None:
            self.notes.append("memory not measured: no reading while an instance was held")
        t.note = "; ".join(self.notes) or None

    def stop_everything(self) -> None:
        """Stop every instance this driver holds and wait for the stops under way (idempotent)."""
        with self.cond:
            self.stopped_all = True
            self.done.set()
            self.go.set()
            self.cond.notify_all()
            instances = [i for i, _ in self.idle] + list(self.busy)
            self.idle.clear()
            self.busy.clear()
            held = self.count
            self.count = 0
            if held and self.started:
                self.traffic.instances_over_time.append((time.monotonic() - self.started, 0))
        if instances:
            from edgelab.lab import _stop_all

            _stop_all(self.rt, instances)
        self.stopper.shutdown(wait=True)
        if held:
            self._counts()


def _stop_quietly(instance: Instance) -> None:
    from edgelab.lab import _stop_quietly as stop

    stop(instance)


def _line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _timed_request(instance: Instance, payload: bytes, timeout_s: float) -> tuple[Response, int]:
    """One warm request and its exec time, on the same basis as the runtime's startup: a
    Wasm instance's is the host's own figure (epoch deadline set to response bytes, the IPC
    to the host excluded, as its cold start excludes it); elsewhere the lab's round trip
    around ``request`` (pipes or the container's stream included, as in their startups)."""
    if type(instance).__module__.startswith("edgelab.runtimes.wasm"):
        timed = _wasm_request(instance, payload, timeout_s)
        if timed is not None:
            return timed
    began = time.perf_counter_ns()
    response = instance.request(payload, timeout_s)
    return response, time.perf_counter_ns() - began


def _wasm_request(instance: Instance, payload: bytes, timeout_s: float) -> tuple[Response, int] | None:
    """The Wasm host's answer with its in-host time, or None if this is not the instance
    this expects (then the lab times the round trip). Mirrors ``WasmInstance.request``,
    which keeps only the response: a dropped guest is forgotten as it forgets it."""
    from edgelab.errors import LaunchFailed, LaunchTimeout
    from edgelab.runtimes.wasm.runtime import IPC_MARGIN_S, WasmInstance

    if not isinstance(instance, WasmInstance) or instance._stopped:
        return None
    began = time.perf_counter_ns()
    try:
        answer = instance._host.call(timeout_s + IPC_MARGIN_S, "request", instance.instance_id, payload, timeout_s)
    except LaunchFailed as exc:
        instance._forget()  # the host drops a guest that trapped or timed out
        if isinstance(exc, LaunchTimeout) and str(exc) == "timed out":
            raise LaunchTimeout(f"timed out after {timeout_s:g} s") from None
        raise
    round_trip = time.perf_counter_ns() - began
    elapsed = getattr(answer, "elapsed_ns", None)
    return Response(answer.status, answer.body), elapsed if isinstance(elapsed, int) else round_trip
