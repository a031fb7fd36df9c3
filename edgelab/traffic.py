"""What a ``traffic`` run records: every request, warm or cold, and the instances over time.

The ``traffic`` scenario (``edgelab.scenarios.traffic``) fills a ``TrafficResult`` per runtime
(``RuntimeResult.traffic``); exports carry it as ``results[i]["traffic"]`` (``to_json``), and
the simulator (``edgelab.whatif``) reads its samples back with ``TrafficResult.from_json`` so
that what it draws from was measured. Headless: no textual, no runtime imports.

Times: ``*_ns`` are nanoseconds measured with ``perf_counter_ns``; ``*_s`` are seconds from the
run's start (``time.monotonic``). A request's latency is ``queue_ns`` (arrival to the start of
its service: waiting for a free instance) plus its service: ``startup_ns`` if it was cold (a
launch, to the first byte of the response; that includes executing this first request) or
``exec_ns`` if warm (the request's round trip on an idle resident instance).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from rich.console import Console

    from edgelab.results import RunResult

RequestKind = Literal["warm", "cold", "failed"]
#: The arrival patterns ``--pattern`` takes.
PATTERNS: tuple[str, ...] = ("poisson", "onoff", "trace")


@dataclass(frozen=True)
class RequestRecord:
    """One request of a traffic run."""

    index: int
    #: When it arrived (was due), seconds from the run's start.
    arrival_s: float
    kind: RequestKind
    #: Arrival to the start of its service (a free instance, or a launch begun).
    queue_ns: int
    #: Cold only: the launch, to the first byte of the response (None for warm or failed).
    startup_ns: int | None = None
    #: Warm only: the request's round trip on a resident instance (None for cold or failed).
    exec_ns: int | None = None
    error: str | None = None

    @property
    def latency_ns(self) -> int | None:
        """Arrival to the first byte of the response: what the caller waited."""
        service = self.startup_ns if self.kind == "cold" else self.exec_ns
        return None if service is None else self.queue_ns + service


@dataclass
class TrafficResult:
    """One runtime's traffic run: its policy, its requests and its instances over time."""

    pattern: str
    rate_per_s: float
    keepalive_s: float
    prewarm: int
    duration_s: float
    requests: list[RequestRecord] = field(default_factory=list)
    #: (seconds from the start, instances resident) at every change.
    instances_over_time: list[tuple[float, int]] = field(default_factory=list)
    #: Instances stopped because they were idle longer than the keep-alive (scale to zero).
    scaled_down: int = 0
    #: Memory per resident instance measured during the run (bytes, by ``memory_metric``),
    #: and the time-integral of memory held (byte-seconds); None where not measured.
    memory_bytes_per_instance: float | None = None
    memory_metric: str = ""
    memory_byte_seconds: float | None = None
    #: A line saying why a figure is missing or what limited the run (None: nothing to say).
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError  # the traffic scenario's owner writes the summaries

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrafficResult:
        raise NotImplementedError


def print_traffic(result: RunResult, console: Console) -> None:
    """The traffic table ``edgelab run --scenario traffic`` prints under the startup table."""
    raise NotImplementedError
