"""What a simulation is fed: a measured run's samples, per runtime, and nothing invented.

From an export (``edgelab run --json`` or a saved run): cold starts (a traffic run's cold
requests, else the burst's ``samples_us``), warm executions (a traffic run's warm requests: only
a ``traffic`` run has them) and memory per resident instance (the host figure, else user-space
PSS, said which). A runtime without warm samples is left out with a note naming the run that
would give them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgelab.errors import UsageError

TRAFFIC_HINT = "edgelab run --scenario traffic --rate 20 --keepalive 2s --duration 30 -r {runtime}"


@dataclass(frozen=True)
class RuntimeFeed:
    """One runtime's measured samples, in seconds, and its memory per instance."""

    runtime: str
    cold_s: np.ndarray  # startup to first response (includes executing that first request)
    warm_s: np.ndarray  # a request's round trip on an idle resident instance
    cold_source: str  # "traffic cold requests" | "burst cold starts (samples_us)"
    memory_bytes: float | None
    memory_basis: str  # what the memory figure is ("host: fall of MemAvailable ...", "user-space: PSS ...")


@dataclass(frozen=True)
class Feed:
    source: str  # the path or ref as shown
    started: str  # the run's start (ISO), as its metadata says
    workload: str
    runtimes: dict[str, RuntimeFeed] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # runtimes left out and why
    fake: bool = False

    @property
    def fed_by(self) -> str:
        fake = " -- FAKE runtime, not a measurement" if self.fake else ""
        return f"{self.source} (workload {self.workload}, started {self.started}){fake}"


def load_feed(ref: str = "last") -> Feed:
    """The feed from an export path or a history ref (``last``, ``last~N``, a saved name)."""
    from edgelab.history import load_export, resolve

    path = resolve(ref)
    data = load_export(path, ref if ref != str(path) else None)
    shown = ref if ref.startswith("last") else str(path)
    return feed_from_export(data, shown if not ref.startswith("last") else f"{ref} = {Path(path).name}")


def _memory(entry: dict[str, Any], traffic: Any) -> tuple[float | None, str]:
    found = entry.get("memory")
    memory: dict[str, Any] = found if isinstance(found, dict) else {}
    host = memory.get("host_kib_per_instance", entry.get("host_kib_per_instance"))
    if isinstance(host, (int, float)) and host > 0:
        return float(host) * 1024, f"host: {memory.get('host_basis') or entry.get('host_basis') or 'host figure'}"
    user = memory.get("user_space_kib_per_instance", entry.get("memory_kib_per_instance"))
    if isinstance(user, (int, float)) and user > 0:
        metric = memory.get("user_space_metric") or entry.get("memory_metric") or "PSS"
        return float(user) * 1024, f"user-space: {metric} (no host figure measured)"
    if traffic is not None and traffic.memory_bytes_per_instance and traffic.memory_bytes_per_instance > 0:
        return float(traffic.memory_bytes_per_instance), f"traffic run: {traffic.memory_metric}"
    return None, "not measured"


def feed_from_export(data: dict[str, Any], source: str) -> Feed:
    """The feed from a parsed export (``edgelab.history.load_export`` checked its shape)."""
    from edgelab.traffic import TrafficResult

    meta = data.get("metadata") or {}
    workload = str((meta.get("workload") or {}).get("name") or "?")
    runtimes: dict[str, RuntimeFeed] = {}
    notes: list[str] = []
    for entry in data.get("results") or []:
        name = str(entry.get("runtime"))
        if entry.get("error"):
            notes.append(f"{name} left out: its run failed ({entry['error']})")
            continue
        traffic = None
        if isinstance(entry.get("traffic"), dict):
            try:
                traffic = TrafficResult.from_json(entry["traffic"])
            except ValueError as exc:
                raise UsageError(f"{source} is not an edgelab export: {name}'s traffic record: {exc}") from None
        warm: list[float] = [r.exec_ns for r in traffic.requests if r.kind == "warm" and r.exec_ns] if traffic else []
        cold: list[float] = [r.startup_ns for r in traffic.requests if r.kind == "cold" and r.startup_ns] if traffic else []
        cold_source = "traffic cold requests"
        if not cold:
            cold = [float(v) * 1000 for v in entry.get("samples_us") or [] if v > 0]
            cold_source = "burst cold starts (samples_us)"
        if not warm:
            why = "its run was not a traffic run" if traffic is None else "its traffic run had no warm request"
            notes.append(f"{name} left out: no warm samples ({why}); to get them: {TRAFFIC_HINT.format(runtime=name)}")
            continue
        if not cold:
            notes.append(f"{name} left out: no cold-start samples in the run")
            continue
        memory, basis = _memory(entry, traffic)
        runtimes[name] = RuntimeFeed(name, np.asarray(cold, dtype=np.float64) / 1e9,
                                     np.asarray(warm, dtype=np.float64) / 1e9, cold_source, memory, basis)
    if not runtimes:
        raise UsageError(
            f"{source} gives the simulator nothing to draw from: "
            + ("; ".join(notes) if notes else "no runtime in it")
        )
    return Feed(source, str(meta.get("started") or "?"), workload, runtimes, tuple(notes), bool(meta.get("fake")))
