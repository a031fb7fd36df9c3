"""V8 isolates (mini-racer) running the workload's same ``.wasm`` through V8's WebAssembly API,
the way Cloudflare Workers run C and Rust.

Isolates never live in the lab's process: host processes (``edgelab.runtimes.isolate.host``)
hold them, over ``edgelab.ipc``, each registered with the session watchdog, so a SIGKILLed
lab leaves none and V8 aborting takes down one host only. Memory is the hosts' PSS summed;
V8's own heap statistics for the residents stand beside it in the run's preparation. mini-racer
is imported only in the host (and in ``check``): ``edgelab --help`` stays instant.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from edgelab.errors import (
    EdgelabError,
    LaunchFailed,
    LaunchTimeout,
    LimitReached,
    RuntimeUnavailable,
)
from edgelab.protocol import Response
from edgelab.runtimes.base import Instance, Launch, Runtime, StoppedInstance
from edgelab.runtimes.hostproc import HostClient, failure
from edgelab.workloads import Workload

#: Slack on every call to a host beyond the guest's own timeout (which the host enforces).
IPC_MARGIN_S = 5.0
#: Wall time allowed per launch of a batch on top of one guest timeout (a fresh isolate takes
#: ~3-6 ms here; a loaded machine several times that).
BATCH_PER_LAUNCH_S = 0.1
#: Launches per host round trip in ``launch_many``.
BATCH_CHUNK = 250
#: Starting a host (an interpreter, mini-racer, V8's initialisation) and loading a module.
START_TIMEOUT_S = 60.0
#: Resident instances per host process before another is started. Measured here (hello):
#: one process holds ~3,200 isolates at ~705 KiB PSS each, then V8 aborts it ("Fatal process
#: out of memory: ExternalEntityTable::InitializeTable": a table every isolate of a process
#: takes a segment of). 2,000 keeps well clear of that; SHARD_ENV overrides (tests).
SHARD_INSTANCES = 2_000
#: isolate:context holds instances, not isolates, in one warm isolate: measured here, one
#: host held 20,000 (hello) at ~7.8 KiB PSS each (92 s of launches), no limit reached.
CONTEXT_SHARD_INSTANCES = 20_000
SHARD_ENV = "EDGELAB_ISOLATE_SHARD_INSTANCES"


def shard_instances(default: int = SHARD_INSTANCES) -> int:
    """Resident instances per host: SHARD_ENV if set (a positive integer), else ``default``."""
    text = os.environ.get(SHARD_ENV, "").strip()
    if not text:
        return default
    try:
        value = int(text.replace(",", "").replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise RuntimeUnavailable(
            "isolate", f"{SHARD_ENV}={text!r} is not a positive whole number", f"unset {SHARD_ENV}"
        )
    return value


def mini_racer_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mini-racer")
    except PackageNotFoundError:
        return "not installed"


#: What a host's last words say when it died of holding too much, not of a fault: V8's fatal
#: out-of-memory (its per-process tables, or memory), or no thread left for another isolate
#: (mini-racer gives each isolate a thread; threads-max or a pids limit).
_OUT_OF_ROOM = ("Fatal process out of memory", "Resource temporarily unavailable", "std::bad_alloc")


def out_of_room(message: str) -> bool:
    """Whether a host's exit message names a limit (a ramp then stops there with its figures)
    rather than a failure."""
    return any(words in message for words in _OUT_OF_ROOM)


class IsolateHost(HostClient):
    """One isolate host process (``edgelab.runtimes.isolate.host``) and its channel.
    ``facts`` is what its ping said (V8's version among them)."""

    host_module = "edgelab.runtimes.isolate.host"
    runtime = "isolate"
    label = "isolate host process"
    odd_reply = "isolate host sent {kind}, not an answer"
    name_signals = False
    #: V8's fatal line is followed by a stack trace: read far enough back to find it.
    stderr_tail_bytes = 16384

    def __init__(self) -> None:
        self.facts: dict[str, Any] = {}
        super().__init__()

    def _died_in_call(self, message: str) -> LaunchFailed:
        return (LimitReached if out_of_room(message) else LaunchFailed)(message)

    def _telling_line(self, lines: list[str]) -> str:
        """V8's "# Fatal ..." or a C++ exception's "what(): ..." when there is one (a stack
        trace follows V8's), else the last."""
        fatal = [
            ln.lstrip("# ") for ln in lines if ln.startswith("# Fatal") or ln.startswith("what():")
        ]
        return fatal[-1] if fatal else lines[-1]


class IsolateInstance(Instance):
    """One resident instance in a host, by its id there. Slotted: a ramp holds thousands."""

    __slots__ = ("_runtime", "_host", "instance_id", "_timeout_s", "_stopped")

    @property
    def runtime(self) -> str:  # type: ignore[override]  # the rung's name: isolate or isolate:context
        return self._runtime.name

    def __init__(
        self, runtime: IsolateRuntime, host: IsolateHost, instance_id: int, timeout_s: float
    ) -> None:
        self._runtime = runtime
        self._host = host
        self.instance_id = instance_id
        self._timeout_s = timeout_s
        self._stopped = False

    def request(self, payload: bytes, timeout_s: float) -> Response:
        if self._stopped:
            raise LaunchFailed("isolate instance already stopped")
        try:
            answer = self._host.call(
                timeout_s + IPC_MARGIN_S, "request", self.instance_id, payload, timeout_s
            )
        except LaunchFailed as exc:
            self._forget()  # the host drops a guest that trapped or timed out
            if isinstance(exc, LaunchTimeout) and str(exc) == "timed out":
                raise LaunchTimeout(f"timed out after {timeout_s:g} s") from None
            raise
        return Response(answer.status, answer.body)

    def stop(self) -> None:
        if self._stopped:
            return
        if self._host.alive:
            try:
                self._host.call(self._timeout_s + IPC_MARGIN_S, "drop", [self.instance_id])
            except EdgelabError:
                pass
        self._forget()

    def _forget(self) -> None:
        if not self._stopped:
            self._stopped = True
            self._host.held -= 1
        self._runtime._untrack(self)


class IsolateRuntime(Runtime):
    """A fresh V8 isolate per instance (``isolate``), in host processes of up to
    ``shard_instances()`` residents each; more are started as a ramp needs them."""

    name = "isolate"
    #: How the host starts an instance (see edgelab.runtimes.isolate.host).
    mode = "isolate"
    phase_names: ClassVar[tuple[str, ...]] = ("isolate", "compile", "instantiate", "first_response")
    memory_metric = "PSS growth of the isolate host processes (summed over all of them)"
    startup_includes = (
        "new V8 isolate and context (MiniRacer(), its setTimeout shim included) + compile (the module's bytes as a base64 "
        "literal in the glue script, decoded and compiled by new WebAssembly.Module) + "
        "new WebAssembly.Instance + _initialize + first response, timed in the isolate host "
        "(each step one mini-racer call, its hop to V8's thread included; IPC excluded)"
    )

    def __init__(self, session: Any) -> None:
        super().__init__(session)
        self._hosts: list[IsolateHost] = []
        self._host_lock = threading.RLock()
        self._workloads: dict[str, tuple[Workload, Path]] = {}
        self.load_info: dict[str, dict[str, Any]] = {}
        self.most_hosts = 0
        #: V8's heap statistics summed over the residents, at the last memory reading.
        self.heap: dict[str, int] = {}

    # -- availability -------------------------------------------------------------------------
    def check(self) -> None:
        try:
            import py_mini_racer  # noqa: F401
        except Exception as exc:  # noqa: BLE001 - a broken wheel is as unavailable as none
            raise RuntimeUnavailable(
                self.name,
                f"mini-racer cannot be imported ({exc})",
                "pip install 'mini-racer>=0.12'",
            ) from None

    def versions(self) -> dict[str, str]:
        found = {"mini-racer": mini_racer_version()}
        for host in self._hosts:
            if host.facts.get("v8"):
                found["v8"] = host.facts["v8"]
                break
        return found

    def doctor_details(self) -> dict[str, str]:
        return {
            "isolates": f"{self._how()}; in host processes of up to {self._shard_cap():,} "
            "instances each (V8 aborts a process holding ~3,200 isolates here)",
            "limits": "the launch timeout terminates a runaway guest (V8 TerminateExecution); "
            "linear memory capped at the workload's memory limit; V8's heap limit per isolate",
        }

    def _how(self) -> str:
        return "a fresh V8 isolate per instance (mini-racer)"

    def _shard_cap(self) -> int:
        return shard_instances(SHARD_INSTANCES)

    def preparation(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for name, info in sorted(self.load_info.items()):
            found[f"module load ({name})"] = (
                f"{info.get('load_ns', 0) / 1e6:.2f} ms; linear memory capped at "
                f"{info.get('memory_max_bytes', 0) >> 20} MiB, V8 heap limit "
                f"{info.get('heap_limit_bytes', 0) >> 20} MiB per isolate"
            )
        if self.most_hosts:
            found["isolate hosts"] = (
                f"{self.most_hosts}, up to {self._shard_cap():,} instances each"
            )
        heap = self.heap
        sampled, count = heap.get("sampled", 0), heap.get("instances", 0)
        if sampled:
            # Per isolate read; an isolate of isolate:context holds many instances, so its
            # share per instance is the isolates' total over the instances.
            share = heap.get("isolates", 0) / count if count else 0
            found["V8 heap per resident instance"] = (
                f"{heap.get('used_heap_size', 0) / sampled * share / 1024:,.1f} KiB used, "
                f"{heap.get('total_physical_size', 0) / sampled * share / 1024:,.1f} KiB "
                f"physical (MiniRacer.heap_stats of {sampled:,} of the {heap.get('isolates', 0):,} "
                f"isolates holding {count:,} instances; linear memory is outside V8's heap)"
            )
        return found

    # -- hosts ---------------------------------------------------------------------------------
    def _start_host(self) -> IsolateHost:
        self.check()
        host = IsolateHost()
        self._watch_pgid(host.pid)  # its own session: pid == process group
        try:
            host.facts = host.call(START_TIMEOUT_S, "ping")
            for workload, wasm in self._workloads.values():
                self.load_info[workload.name] = self._load_into(host, workload, wasm)
        except BaseException:
            host.close()
            raise
        self._hosts.append(host)
        self.most_hosts = max(self.most_hosts, len(self._hosts))
        return host

    def _load_into(self, host: IsolateHost, workload: Workload, wasm: Path) -> dict[str, Any]:
        info: dict[str, Any] = host.call(
            START_TIMEOUT_S,
            "load",
            workload.name,
            str(wasm),
            workload.memory_limit_bytes,
            workload.max_request_bytes,
            workload.timeout_s,
            workload.max_response_bytes,
            self.mode == "context",
        )
        if not workload.hostile:  # a warm-up: the host's one-time costs land in its baseline
            warm_up = host.call(
                workload.timeout_s + IPC_MARGIN_S, "launch", workload.name, workload.default_request,
                False, workload.timeout_s, self.mode,
            )  # fmt: skip
            if warm_up.error is not None:
                raise failure(*warm_up.error)
        return info

    def _live_hosts(self) -> list[IsolateHost]:
        with self._host_lock:
            for host in [h for h in self._hosts if not h.alive]:
                self._abandon(host)
            return list(self._hosts)

    def _abandon(self, host: IsolateHost) -> None:
        if host in self._hosts:
            self._hosts.remove(host)
        for instance in self.live_instances():
            if isinstance(instance, IsolateInstance) and instance._host is host:
                instance._forget()
        host.close()

    def _first_host(self, workload: Workload) -> IsolateHost:
        if workload.name not in self._workloads:
            raise LaunchFailed(f"{self.name}: {workload.name} was not prepared")
        with self._host_lock:
            if not self._hosts:
                raise LaunchFailed(f"{self.name}: no isolate host (was the runtime prepared?)")
            host = self._hosts[0]
            if not host.alive:
                raise LaunchFailed(host.died())
            return host

    def _host_with_room(self, cap: int) -> IsolateHost:
        with self._host_lock:
            for host in self._live_hosts():
                if host.held < cap:
                    return host
            return self._start_host()

    # -- lifecycle -----------------------------------------------------------------------------
    def prepare(self, workload: Workload) -> None:
        from edgelab.build import ensure_wasm

        try:
            wasm = ensure_wasm(workload)
        except EdgelabError as exc:
            fix = getattr(exc, "fix", None) or "edgelab build shows the compiler's error"
            raise RuntimeUnavailable(self.name, str(exc), fix) from None
        with self._host_lock:
            fresh = workload.name not in self._workloads
            self._workloads[workload.name] = (workload, wasm)
            hosts = self._live_hosts()
            if not hosts:
                self._start_host()  # loads every prepared workload, this one too
            elif fresh:
                for host in hosts:
                    self.load_info[workload.name] = self._load_into(host, workload, wasm)

    def launch(self, workload: Workload, request: bytes, timeout_s: float) -> Launch:
        host = self._host_with_room_for(workload)
        result = host.call(
            timeout_s + IPC_MARGIN_S, "launch", workload.name, request, True, timeout_s, self.mode
        )
        return self._launch_from(host, result, timeout_s)

    def _host_with_room_for(self, workload: Workload) -> IsolateHost:
        self._first_host(workload)  # says why when it was never prepared or died
        return self._host_with_room(self._shard_cap())

    def cold_starts(
        self, workload: Workload, request: bytes, n: int, timeout_s: float
    ) -> list[Launch | LaunchFailed]:
        """Up to ``n`` cold starts in one round trip, none kept; each timed in the host as
        ``launch`` times it, the isolate closed outside the timing."""
        host = self._first_host(workload)
        budget = timeout_s + IPC_MARGIN_S + n * BATCH_PER_LAUNCH_S
        results = host.call(
            budget, "launch_batch", workload.name, request, n, False, timeout_s, self.mode
        )
        outcomes: list[Launch | LaunchFailed] = []
        stopped = StoppedInstance(self.name)
        for result in results:
            if result.error is not None:
                outcomes.append(self._error(result.error, timeout_s))
                break
            outcomes.append(
                Launch(
                    stopped,
                    Response(result.status, result.body),
                    result.startup_ns,
                    result.phases_ns,
                )
            )
        return outcomes

    def launch_many(
        self, workload: Workload, request: bytes, n: int, timeout_s: float
    ) -> list[Launch]:
        """``n`` resident instances in few round trips, each host filled to
        ``_shard_cap()`` before the next is started. All or nothing."""
        self._first_host(workload)
        cap = self._shard_cap()
        launches: list[Launch] = []
        try:
            while len(launches) < n:
                host = self._host_with_room(cap)
                chunk = min(BATCH_CHUNK, n - len(launches), cap - host.held)
                budget = timeout_s + IPC_MARGIN_S + chunk * BATCH_PER_LAUNCH_S
                results = host.call(
                    budget,
                    "launch_batch",
                    workload.name,
                    request,
                    chunk,
                    True,
                    timeout_s,
                    self.mode,
                )
                for result in results:
                    launches.append(self._launch_from(host, result, timeout_s))
        except EdgelabError as exc:
            self.stop_many([launch.instance for launch in launches])
            if isinstance(exc, LimitReached):
                raise LimitReached(exc.limit, len(self.live_instances())) from None
            if not launches:
                raise
            kind = type(exc) if isinstance(exc, LaunchFailed) else LaunchFailed
            raise kind(f"{exc} (after {len(launches)} of {n} launches)") from None
        return launches

    def _error(self, error: tuple[str, str], timeout_s: float) -> LaunchFailed:
        kind, message = error
        if kind == "timeout":
            return LaunchTimeout(f"{message} after {timeout_s:g} s")
        return failure(kind, message)

    def _launch_from(self, host: IsolateHost, result: Any, timeout_s: float) -> Launch:
        if result.error is not None:
            raise self._error(result.error, timeout_s)
        instance = IsolateInstance(self, host, result.instance_id, timeout_s)
        host.held += 1
        self._track(instance)
        phases = {name: result.phases_ns[name] for name in self.phase_names}
        return Launch(instance, Response(result.status, result.body), result.startup_ns, phases)

    def pss_bytes(self, instances: Sequence[Instance]) -> int:
        """The PSS of every host process summed (one started during a ramp counts whole, its
        interpreter and V8 included). With residents, V8's heap statistics are read too."""
        import psutil

        dead = [host.died() for host in self._hosts if not host.alive]
        hosts = self._live_hosts()  # a dead host holds nothing: its instances are forgotten
        if not hosts:
            raise LaunchFailed(dead[0] if dead else "isolate host process not started")
        total = 0
        for host in hosts:
            try:
                total += int(psutil.Process(host.pid).memory_full_info().pss)
            except psutil.Error as exc:
                raise LaunchFailed(f"cannot read the isolate host's memory: {exc}") from None
        if instances:
            heap: dict[str, int] = {}
            for host in hosts:
                try:
                    for key, value in host.call(IPC_MARGIN_S + 30, "heap_stats").items():
                        heap[key] = heap.get(key, 0) + value
                except EdgelabError:
                    pass
            self.heap = heap
        return total

    def stop_many(self, instances: Sequence[Instance]) -> None:
        """Stop many instances in one round trip per host (the end of a ramp)."""
        by_host: dict[int, list[IsolateInstance]] = {}
        for instance in instances:
            if isinstance(instance, IsolateInstance) and not instance._stopped:
                by_host.setdefault(id(instance._host), []).append(instance)
        for group in by_host.values():
            host = group[0]._host
            if host.alive:
                try:
                    host.call(IPC_MARGIN_S + 30, "drop", [i.instance_id for i in group])
                except EdgelabError:
                    pass
            for instance in group:
                instance._forget()

    @property
    def host_pids(self) -> list[int]:
        return [host.pid for host in self._hosts]

    def close(self) -> None:
        with self._host_lock:
            for host in list(self._hosts):
                if host.alive:
                    try:
                        host.call(IPC_MARGIN_S + 30, "drop_all")
                    except EdgelabError:
                        pass
            for instance in self.live_instances():
                if isinstance(instance, IsolateInstance):
                    instance._forget()
            for host in list(self._hosts):
                self._abandon(host)


class IsolateContextRuntime(IsolateRuntime):
    """``isolate:context``: instances in a warm isolate each host keeps per workload, the
    module compiled there once. Not a fresh V8 context (mini-racer makes one per isolate and
    offers no second): a fresh ``WebAssembly.Instance`` sharing the isolate's global object."""

    mode = "context"
    phase_names = ("instantiate", "first_response")
    startup_includes = (
        "new WebAssembly.Instance of the module compiled once in a warm V8 isolate + "
        "_initialize + first response, timed in the isolate host (each step one mini-racer "
        "call, its hop to V8's thread included; IPC excluded). No fresh V8 context: "
        "mini-racer makes one per isolate"
    )

    def _how(self) -> str:
        return (
            "a warm V8 isolate per host and workload, a fresh WebAssembly.Instance per "
            "instance (mini-racer offers no second context in an isolate)"
        )

    def _shard_cap(self) -> int:
        return shard_instances(CONTEXT_SHARD_INSTANCES)
