"""What a Wasm host sends back for launches: one record per launch, or a packed batch.

Shared by the host process and the lab side, and free of wasmtime. Every figure is in ns on
the clock of ``time.perf_counter_ns`` (CLOCK_MONOTONIC), read inside the host.

Why a packed batch beside the per-launch record: a burst asks the host for up to thousands of
launches in one round trip, and a frozen dataclass per launch cost ~6 us to make, pickle and
unpickle against ~1.8 us for a tuple (measured here, 10,000 records) -- three times the ~2 us
launch it describes. ``LaunchBatch`` carries the same facts as a few arrays instead: the host
fills them with slices of the hot path's own records, no Python object per launch.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from dataclasses import dataclass

#: How a host makes each instance's module, and the phases its launches are split into.
MODES = ("pre", "compile", "deserialize")
PHASES: dict[str, tuple[str, ...]] = {
    "pre": ("instantiate", "first_response"),
    "compile": ("compile", "instantiate", "first_response"),
    "deserialize": ("deserialize", "instantiate", "first_response"),
}


#: The phases of a WASI command's launch (``Workload.convention == "command"``): "wasi" is a
#: fresh Store and WASI context (argv, env, preopens, stdin bytes, captured stdout), then
#: instantiating, then ``_start`` running to its first byte on stdout.
COMMAND_PHASES: dict[str, tuple[str, ...]] = {
    "pre": ("wasi", "instantiate", "first_output"),
    "compile": ("compile", "wasi", "instantiate", "first_output"),
    "deserialize": ("deserialize", "wasi", "instantiate", "first_output"),
}


def command_phases(
    mode: str, t0: int, tm: int, tw: int, t1: int, tf: int, t2: int
) -> tuple[tuple[int, ...], int, int | None]:
    """(phases, startup, exit) of one command launch from its stamps (see hotpath.c's el_cmd).

    Startup runs to the first stdout byte; a command that wrote nothing has its startup at its
    exit. A waiting instance (``t2`` 0: not started) has startup at its instantiation, no
    output phase time and no exit."""
    if not t2:
        first = 0
        end = t1
        exit_ns = None
    else:
        end = tf if tf else t2
        first = end - t1
        exit_ns = t2 - t0
    phases: tuple[int, ...] = (tw - tm, t1 - tw, first)
    if mode != "pre":
        phases = (tm - t0, *phases)
    return phases, end - t0, exit_ns


@dataclass(frozen=True)
class CommandBatch:
    """Command launches of one batch that succeeded, as rows (instance id or -1, stdout,
    phases, startup, exit or None), then the launch that stopped the batch, if one did.
    Rows are plain tuples: a command's launch is tens of us, its row a few."""

    rows: list[tuple[int, bytes, tuple[int, ...], int, int | None]]
    failure: LaunchRecord | None = None

    def kept_ids(self) -> list[int]:
        return [row[0] for row in self.rows if row[0] >= 0]


def phases_of(mode: str, t0: int, tm: int, t1: int, t2: int) -> tuple[int, ...]:
    """The phases of one launch from its four stamps: before the module (or the Store), the
    module made, instantiated and initialised, the response copied out."""
    if mode == "pre":
        return (t1 - t0, t2 - t1)
    return (tm - t0, t1 - tm, t2 - t1)


@dataclass(frozen=True)
class LaunchRecord:
    """One launch, kept or not: the instance's id in its host (None when not kept or when it
    failed), its first response, its phases (in ``PHASES[mode]`` order) and the startup
    (their sum), or the failure as (kind, one line)."""

    instance_id: int | None
    status: int
    body: bytes
    phases_ns: tuple[int, ...]
    startup_ns: int
    error: tuple[str, str] | None = None
    #: A command's launch to its exit (None: the ABI's, or a command left waiting).
    exit_ns: int | None = None

    @staticmethod
    def failed(kind: str, message: str) -> LaunchRecord:
        return LaunchRecord(None, 2, b"", (), 0, (kind, message))


@dataclass(frozen=True)
class Answer:
    """A resident instance's answer to one more request, and how long it took in the host
    (from the epoch deadline's setting to the response's bytes)."""

    status: int
    body: bytes
    elapsed_ns: int


@dataclass(frozen=True)
class LaunchBatch:
    """Launches of one batch that succeeded, packed: per launch its id (-1: not kept), four
    stamps (t0, tm, t1, t2) and where its response (status byte, then body) sits in
    ``responses``; then ``failure``, the launch that stopped the batch, if one did."""

    mode: str
    ids: array  # 'q'
    stamps: array  # 'q', 4 per launch
    spans: array  # 'q', 2 per launch: offset, length (status byte included)
    responses: bytes
    failure: LaunchRecord | None = None

    def __len__(self) -> int:
        return len(self.ids) + (self.failure is not None)

    def rows(self) -> Iterator[tuple[int | None, int, bytes, tuple[int, ...], int]]:
        """(instance id or None, status, body, phases, startup) of each launch that
        succeeded, in order."""
        mode, stamps, spans, responses = self.mode, self.stamps, self.spans, self.responses
        for i, instance_id in enumerate(self.ids):
            t0, tm, t1, t2 = stamps[4 * i : 4 * i + 4]
            at, length = spans[2 * i], spans[2 * i + 1]
            yield (
                None if instance_id < 0 else instance_id,
                responses[at],
                responses[at + 1 : at + length],
                phases_of(mode, t0, tm, t1, t2),
                t2 - t0,
            )

    def kept_ids(self) -> list[int]:
        return [i for i in self.ids if i >= 0]


class BatchBuilder:
    """Collects launches one by one into a LaunchBatch (the paths that are not one C loop)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.ids = array("q")
        self.stamps = array("q")
        self.spans = array("q")
        self._responses = bytearray()

    def add(
        self, instance_id: int | None, status: int, body: bytes, stamps: tuple[int, int, int, int]
    ) -> None:
        self.ids.append(-1 if instance_id is None else instance_id)
        self.stamps.extend(stamps)
        self.spans.extend((len(self._responses), len(body) + 1))
        self._responses.append(status)
        self._responses += body

    def __len__(self) -> int:
        return len(self.ids)

    def done(self, failure: LaunchRecord | None = None) -> LaunchBatch:
        return LaunchBatch(
            self.mode, self.ids, self.stamps, self.spans, bytes(self._responses), failure
        )
