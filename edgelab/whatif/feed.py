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
from edgelab.stats import format_duration_ns
from edgelab.whatif.kernel import ColdBuckets

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
    #: Paired with ``cold_s`` / ``warm_s`` (same index, same request): how long each request
    #: held its instance (service start until it was idle again, ``RequestRecord.held_ns``),
    #: which is what keeps the next request from finding it free. None where the run did not
    #: record it (a burst's cold starts, an older export): the service stands in for it.
    cold_held_s: np.ndarray | None = None
    warm_held_s: np.ndarray | None = None
    #: The cold starts grouped by how many others were under way when each began (a traffic
    #: run's own timing); None with no timing (a burst) or with every start alone.
    cold_buckets: ColdBuckets | None = None

    @property
    def contention_source(self) -> str:
        b = self.cold_buckets
        if b is None:
            return "cold starts drawn independently (too few overlapped in the run to measure how they slow each other)"
        parts = []
        for k in range(b.count):
            part = b.startup_s[b.offsets[k]:b.offsets[k + 1]]
            parts.append(f"{b.span(k)}: {format_duration_ns(float(np.median(part)) * 1e9)} (n={part.size})")
        if len(parts) > 4:  # the first two and the last two groups; the export has them all
            parts = [*parts[:2], f"... {len(parts) - 4} more", *parts[-2:]]
        return (f"cold starts drawn by how many others were starting ({b.count} groups), as measured,"
                f" median: " + ", ".join(parts))

    @property
    def held_source(self) -> str:
        if self.warm_held_s is None:
            return "instances held for their service only (the run did not record held time)"
        extra = float(np.median(self.warm_held_s - self.warm_s)) * 1e6
        return f"instances held as measured (warm: service + {extra:,.0f} us median of the lab's own work)"


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
        warm_records = [r for r in traffic.requests if r.kind == "warm" and r.exec_ns] if traffic else []
        cold_records = [r for r in traffic.requests if r.kind == "cold" and r.startup_ns] if traffic else []
        warm: list[float] = [r.exec_ns or 0 for r in warm_records]
        cold: list[float] = [r.startup_ns or 0 for r in cold_records]
        warm_held = _held(warm_records, warm)
        cold_held = _held(cold_records, cold)
        cold_source = "traffic cold requests"
        if not cold:
            cold = [float(v) * 1000 for v in entry.get("samples_us") or [] if v > 0]
            cold_source = "burst cold starts (samples_us)"
            cold_held = None
        if not warm:
            why = "its run was not a traffic run" if traffic is None else "its traffic run had no warm request"
            notes.append(f"{name} left out: no warm samples ({why}); to get them: {TRAFFIC_HINT.format(runtime=name)}")
            continue
        if not cold:
            notes.append(f"{name} left out: no cold-start samples in the run")
            continue
        memory, basis = _memory(entry, traffic)
        buckets = cold_buckets(cold_records) if cold_held is not None else None
        runtimes[name] = RuntimeFeed(name, np.asarray(cold, dtype=np.float64) / 1e9,
                                     np.asarray(warm, dtype=np.float64) / 1e9, cold_source, memory, basis,
                                     cold_held, warm_held, buckets)  # fmt: skip
    if not runtimes:
        raise UsageError(
            f"{source} gives the simulator nothing to draw from: "
            + ("; ".join(notes) if notes else "no runtime in it")
        )
    return Feed(source, str(meta.get("started") or "?"), workload, runtimes, tuple(notes), bool(meta.get("fake")))


def _held(records: list[Any], service_ns: list[float]) -> np.ndarray | None:
    """Each record's held time (s), never below its service; None unless every one has it."""
    if not records or any(r.held_ns is None for r in records):
        return None
    return np.maximum(np.asarray([r.held_ns for r in records], dtype=np.float64),
                      np.asarray(service_ns, dtype=np.float64)) / 1e9  # fmt: skip


#: Fewest measured starts a contention bucket holds; the rest merge into the last ("k or more").
MIN_PER_BUCKET = 8


def cold_buckets(records: list[Any]) -> ColdBuckets | None:
    """A traffic run's cold starts grouped by how many other cold starts were under way when
    each began (each under way from its service start, arrival + lateness + queue, for its
    ``startup_ns``), in runs of k of at least ``MIN_PER_BUCKET`` starts each (``0``, ``1-2``,
    ``3+``). None if they make fewer than two buckets (then starts are drawn independently)."""
    if len(records) < 2 * MIN_PER_BUCKET:
        return None
    begin = np.asarray([r.arrival_s + (r.late_ns + r.queue_ns) / 1e9 for r in records], dtype=np.float64)
    startup = np.asarray([r.startup_ns for r in records], dtype=np.float64) / 1e9
    hold = np.maximum(np.asarray([r.held_ns for r in records], dtype=np.float64) / 1e9, startup)
    order = np.argsort(begin, kind="stable")
    begin, startup, hold = begin[order], startup[order], hold[order]
    ends = begin + startup
    # Others under way at each start: begun before it (in order) and not yet answered. A start
    # that answered by then began before it (startups are > 0), so: i - those answered by then.
    under_way = np.arange(begin.size) - np.searchsorted(np.sort(ends), begin, side="right")
    # Runs of k (0, 1, 2, ...) are closed into a bucket once it holds MIN_PER_BUCKET starts and
    # at least as many are left for the ones after; the last bucket takes the rest (k or more).
    counts = np.bincount(under_way)
    bucket_of: list[int] = []
    sizes = [0]
    left = int(under_way.size)
    for k, n in enumerate(counts.tolist()):
        bucket_of.append(len(sizes) - 1)
        sizes[-1] += n
        left -= n
        if sizes[-1] >= MIN_PER_BUCKET and left >= MIN_PER_BUCKET and k + 1 < len(counts):
            sizes.append(0)
    if len(sizes) < 2:
        return None
    of = np.asarray(bucket_of, dtype=np.int64)
    picked = [np.nonzero(of[under_way] == b)[0] for b in range(len(sizes))]
    offsets = np.concatenate([[0], np.cumsum([p.size for p in picked])])
    index = np.concatenate(picked)
    return ColdBuckets(offsets.astype(np.int64), startup[index], hold[index], of)
