"""The one contract every runtime implements: container, subprocess, Wasm, and the fake.

A runtime launches *instances* of a workload. A launch is timed from the launch call to the
first byte of the response to the instance's first request (the cold start), split into
named phases whose sum is the startup. An instance stays resident until stopped and answers
more requests. ``close`` stops every instance the runtime launched, whatever happened.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from edgelab.errors import EdgelabError, LaunchFailed
from edgelab.protocol import Response
from edgelab.session import Session
from edgelab.workloads import Workload

if TYPE_CHECKING:
    from edgelab.runtimes.registry import RuntimeInfo, RuntimeSpec


class Instance(ABC):
    """A live workload instance: answers requests until stopped."""

    runtime: str

    @abstractmethod
    def request(self, payload: bytes, timeout_s: float) -> Response:
        """Send one request and wait for its response (raises LaunchTimeout / LaunchFailed)."""

    @abstractmethod
    def stop(self) -> None:
        """Stop and reap the instance. Idempotent; never raises for an instance already gone."""

    def watch_pgid(self) -> int | None:
        """The process group the session watchdog must kill if the lab dies (None: none).

        Runtimes whose instances are found otherwise (containers by label, Wasm instances
        inside the registered host process) keep the default.
        """
        return None


class StoppedInstance(Instance):
    """Stands for an instance that was stopped as soon as its first response was out (the
    cold starts of a batch, see ``WasmRuntime.cold_starts``): it answers nothing more."""

    def __init__(self, runtime: str) -> None:
        self.runtime = runtime

    def request(self, payload: bytes, timeout_s: float) -> Response:
        raise LaunchFailed("instance already stopped")

    def stop(self) -> None:
        pass


@dataclass(frozen=True)
class Launch:
    """What one launch produced: the live instance, its first response and the timing.

    ``phases_ns`` is ordered as the runtime's ``phase_names``; ``startup_ns`` is the time from
    the launch call to the first byte of the first response, measured by ``perf_counter_ns``.

    A *command* workload (``Workload.convention == "command"``) answers once: ``startup_ns``
    runs to the first byte of its stdout, ``exit_ns`` to its exit (stdout closed, status 0
    read), and ``response`` is its whole stdout (status OK only on exit 0). Its instance has
    exited by then (``StoppedInstance``). In a ramp (``launch_many``) a command instance is
    left *waiting for its request* (spawned, stdin open, nothing sent): ``waiting`` is True,
    ``response`` is empty and ``startup_ns`` runs to that point, so its memory is what an idle
    instance holds.
    """

    instance: Instance
    response: Response
    startup_ns: int
    phases_ns: dict[str, int] = field(default_factory=dict)
    #: Command workloads: launch call to the instance's exit (None: the ABI's resident ones).
    exit_ns: int | None = None
    #: A command instance launched and left waiting for its request (a ramp's resident one).
    waiting: bool = False


class Runtime(ABC):
    """One way of running a workload. Subclasses: container, subprocess, wasm, fake, and
    the rest registered in ``edgelab.runtimes.registry``.

    The whole contract is here. The optional capabilities (``cold_starts``, ``launch_many``,
    ``stop_many``) have default implementations written once below, and the lab always calls
    them; a runtime overrides one only where it can do better (the Wasm host runs a batch in
    one round trip).
    """

    #: The registered name (``family`` or ``family:variant``), set by ``create_runtime``.
    name: str
    #: The registry entry this runtime was created from (set by ``create_runtime``).
    spec: RuntimeSpec | None = None
    phase_names: ClassVar[tuple[str, ...]]
    #: What ``pss_bytes`` measures, shown beside every memory figure.
    memory_metric: ClassVar[str]
    #: What ``startup_ns`` includes, in plain words, shown beside startup figures.
    startup_includes: ClassVar[str]

    #: The session watchdog (``edgelab.watchdog.Watchdog``) the lab gave this runtime, if any.
    watcher: Any = None

    def __init__(self, session: Session) -> None:
        self.session = session
        self._live: set[Instance] = set()
        self._live_lock = threading.Lock()

    # -- availability -------------------------------------------------------------------
    @abstractmethod
    def check(self) -> None:
        """Raise RuntimeUnavailable (with a fix) if this runtime cannot run here. Fast."""

    def doctor_details(self) -> dict[str, str]:
        """How this runtime will run here, beyond versions, for ``edgelab doctor``. Cheap."""
        return {}

    def versions(self) -> dict[str, str]:
        """Versions worth recording with results (engine, wasmtime)."""
        return {}

    def marks(self) -> tuple[str, ...]:
        """Caveats that must stand beside every figure of this runtime, e.g. ``("emulated
        (TCG): no KVM here",)``. Known after ``check``."""
        return ()

    def describe(self) -> RuntimeInfo:
        """This runtime's self-description, sent in events and saved with results (call after
        ``check``/``prepare``: phases and includes may depend on the host)."""
        from edgelab.runtimes.registry import RuntimeInfo

        entry = self.spec
        return RuntimeInfo(
            name=self.name,
            family=entry.family if entry else self.name.partition(":")[0],
            artifact=entry.artifact if entry else "none",
            phase_names=tuple(self.phase_names),
            startup_includes=self.startup_includes,
            memory_metric=self.memory_metric,
            versions=tuple(sorted(self.versions().items())),
            marks=self.marks(),
            skips=entry.skips if entry else "",
            ready_cost=entry.ready_cost if entry else "",
        )

    def preparation(self) -> dict[str, str]:
        """One-time costs of ``prepare`` (e.g. loading a module), part of no startup figure."""
        return {}

    # -- lifecycle ------------------------------------------------------------------------
    @abstractmethod
    def prepare(self, workload: Workload) -> None:
        """Make the workload launchable: build or load its artifact. Not timed as startup."""

    @abstractmethod
    def launch(self, workload: Workload, request: bytes, timeout_s: float) -> Launch:
        """Launch one instance and send it ``request``; the instance stays resident."""

    def cold_starts(
        self, workload: Workload, request: bytes, n: int, timeout_s: float
    ) -> list[Launch | LaunchFailed]:
        """Up to ``n`` cold starts back to back, none kept (a block of a burst). Each is timed
        as ``launch`` times it; the instance is stopped outside the timing. Stops at the
        first failure, which is then the last item. Runtimes that can batch override this."""
        outcomes: list[Launch | LaunchFailed] = []
        for _ in range(n):
            try:
                launch = self.launch(workload, request, timeout_s)
            except EdgelabError as exc:
                outcomes.append(exc if isinstance(exc, LaunchFailed) else LaunchFailed(str(exc)))
                break
            try:
                launch.instance.stop()
            except Exception:  # noqa: BLE001 - stop() must not raise; a stop that does costs nothing here
                pass
            outcomes.append(
                Launch(StoppedInstance(self.name), launch.response, launch.startup_ns, launch.phases_ns, exit_ns=launch.exit_ns)
            )
        return outcomes

    def launch_many(
        self, workload: Workload, request: bytes, n: int, timeout_s: float
    ) -> list[Launch]:
        """``n`` resident instances (a chunk of a ramp). All or nothing: on a failure those
        this call made are stopped and the failure is raised (a limit as LimitReached)."""
        launches: list[Launch] = []
        try:
            for _ in range(n):
                launches.append(self.launch(workload, request, timeout_s))
        except BaseException:
            self.stop_many([launch.instance for launch in launches])
            raise
        return launches

    def stop_many(self, instances: Sequence[Instance]) -> None:
        """Stop many instances (the end of a ramp); runtimes that can batch override this."""
        for instance in instances:
            try:
                instance.stop()
            except Exception:  # noqa: BLE001 - stop() is documented never to raise
                pass

    @abstractmethod
    def pss_bytes(self, instances: Sequence[Instance]) -> int:
        """Host memory attributable to ``instances`` now, by ``memory_metric``.

        The resident-memory measurement calls this before launching (with no instances) and
        after, and divides the growth by the count, so a runtime whose instances share one
        host process (Wasm) returns that process's whole PSS here.
        """

    def host_memory_bytes(self, instances: Sequence[Instance]) -> int | None:
        """Memory the host spends on ``instances`` now *including the kernel's share* (page
        tables, kernel stacks, socket buffers), where the runtime can read it per instance
        (containers: their cgroups' memory with kernel memory, as ``docker stats`` reads it).
        None where it cannot: the lab then relies on the fall of MemAvailable alone."""
        return None

    def close(self) -> None:
        """Stop every instance this runtime launched and release what it holds."""
        for instance in self.live_instances():
            instance.stop()

    # -- bookkeeping for subclasses --------------------------------------------------------
    def _track(self, instance: Instance) -> None:
        """Note a new instance; call it right after the spawn, before the first request."""
        with self._live_lock:
            self._live.add(instance)
        if self.watcher is not None:
            pgid = instance.watch_pgid()
            if pgid:
                self.watcher.register_pgid(pgid)

    def _watch_pgid(self, pgid: int) -> None:
        """Have the session watchdog kill process group ``pgid`` if the lab dies."""
        if self.watcher is not None:
            self.watcher.register_pgid(pgid)

    def _untrack(self, instance: Instance) -> None:
        with self._live_lock:
            self._live.discard(instance)

    def live_instances(self) -> list[Instance]:
        with self._live_lock:
            return list(self._live)
