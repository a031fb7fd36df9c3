"""When requests arrive: Poisson, bursty on/off, or replayed from a trace file.

The real ``traffic`` scenario and the simulator (``edgelab.whatif``) both draw their arrivals
here, so a simulation and the real run it is checked against see the same arrival process
from the same seed. Headless (numpy only); every function returns arrival times in seconds
from the start of the run, sorted, as a float64 array.

Trace files come in the two layouts issue 12 names:

* one timestamp (seconds) per line; ``#`` starts a comment, blank lines are skipped. Times are
  replayed relative to the earliest one (so epoch timestamps work as well as ``0.25``).
* the Azure Functions 2019 per-minute layout (``invocations_per_function_md.anon.d*.csv``): a
  CSV header ``HashOwner,HashApp,HashFunction,Trigger,1,2,...,1440`` and one row per function
  of invocation counts per minute. Rows are summed (the lab serves them as one function) and
  each minute's count is spread uniformly at random within that minute: the layout does not
  say when in the minute they came, and uniform is what "Poisson within a minute" looks like.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from edgelab.errors import UsageError

#: The Azure Functions 2019 layout's leading columns; the per-minute counts follow.
AZURE_COLUMNS: tuple[str, ...] = ("HashOwner", "HashApp", "HashFunction", "Trigger")
#: Most arrivals a trace may expand to: beyond it the arrays alone would take gigabytes.
MAX_TRACE_EVENTS = 20_000_000
#: Default on/off periods (seconds): bursts at 4x the mean rate a quarter of the time.
ON_S = 1.0
OFF_S = 3.0


def _check_rate_duration(rate_per_s: float, duration_s: float) -> None:
    if not (isinstance(rate_per_s, (int, float)) and math.isfinite(rate_per_s) and rate_per_s > 0):
        raise UsageError(f"rate must be a number > 0 requests/s (got {rate_per_s!r})")
    if not (isinstance(duration_s, (int, float)) and math.isfinite(duration_s) and duration_s > 0):
        raise UsageError(f"duration must be a number > 0 s (got {duration_s!r})")


def poisson(rate_per_s: float, duration_s: float, rng: np.random.Generator) -> np.ndarray:
    """Poisson arrivals at ``rate_per_s`` over ``[0, duration_s)``: seconds, sorted.

    Drawn as a Poisson count and then uniform times, which is the same process as
    exponential gaps (given the count, Poisson arrival times are uniform order statistics)
    and needs no loop to know when to stop."""
    _check_rate_duration(rate_per_s, duration_s)
    n = int(rng.poisson(rate_per_s * duration_s))
    return np.sort(rng.uniform(0.0, duration_s, n))


def onoff(
    rate_per_s: float,
    duration_s: float,
    rng: np.random.Generator,
    on_s: float = ON_S,
    off_s: float = OFF_S,
) -> np.ndarray:
    """Bursty arrivals: Poisson at ``rate_per_s / duty`` during on periods, none during off.

    ``duty = on_s / (on_s + off_s)``, so the mean rate over whole cycles stays ``rate_per_s``
    (a burst pattern people compare against plain Poisson at the same load). Cycles start
    with an on period at 0. Seconds, sorted."""
    _check_rate_duration(rate_per_s, duration_s)
    if not (math.isfinite(on_s) and on_s > 0):
        raise UsageError(f"on period must be > 0 s (got {on_s!r})")
    if not (math.isfinite(off_s) and off_s >= 0):
        raise UsageError(f"off period must be >= 0 s (got {off_s!r})")
    cycle = on_s + off_s
    duty = on_s / cycle
    full, rest = divmod(duration_s, cycle)
    on_total = full * on_s + min(rest, on_s)
    # Poisson in "on time" (the on periods laid end to end), then mapped back to the clock.
    n = int(rng.poisson(rate_per_s / duty * on_total))
    u = np.sort(rng.uniform(0.0, on_total, n))
    k = np.floor(u / on_s)
    t = k * cycle + (u - k * on_s)
    return t[t < duration_s]


def read_trace(path: str | Path, rng: np.random.Generator | None = None) -> np.ndarray:
    """A trace file's arrivals (seconds from its start, sorted), in either layout above.

    ``rng`` places the Azure layout's arrivals within their minutes (default: seed 0, so the
    same file gives the same arrivals). Unreadable or malformed: one ``UsageError`` line
    naming the file (and the line)."""
    p = Path(path)
    try:
        with p.open("r", encoding="utf-8", newline="") as f:
            first = ""
            for line in f:
                if line.strip() and not line.lstrip().startswith("#"):
                    first = line
                    break
            f.seek(0)
            if first.lstrip().startswith(AZURE_COLUMNS[0]):
                return _read_azure(p, f, rng if rng is not None else np.random.default_rng(0))
            return _read_timestamps(p, f)
    except UnicodeDecodeError:
        raise UsageError(f"trace {p}: not a text file (one timestamp per line, or the Azure per-minute CSV)") from None
    except OSError as e:
        raise UsageError(f"trace {p}: cannot read it ({e.strerror or e})") from None


def _read_timestamps(p: Path, f) -> np.ndarray:  # noqa: ANN001 - a text file object
    times: list[float] = []
    for lineno, line in enumerate(f, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            t = float(text)
        except ValueError:
            raise UsageError(f"trace {p}:{lineno}: not a timestamp in seconds: {text[:40]!r}") from None
        if not math.isfinite(t) or t < 0:
            raise UsageError(f"trace {p}:{lineno}: a timestamp must be a finite number >= 0 (got {text[:40]})")
        times.append(t)
        if len(times) > MAX_TRACE_EVENTS:
            raise UsageError(f"trace {p}:{lineno}: more than {MAX_TRACE_EVENTS:,} arrivals")
    if not times:
        raise UsageError(f"trace {p}: no timestamps in it")
    arr = np.sort(np.asarray(times, dtype=np.float64))
    return arr - arr[0]


def _read_azure(p: Path, f, rng: np.random.Generator) -> np.ndarray:  # noqa: ANN001
    reader = csv.reader(f)
    header: list[str] | None = None
    counts: np.ndarray | None = None
    for row in reader:
        lineno = reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()) or row[0].lstrip().startswith("#"):
            continue
        if header is None:
            header = [c.strip() for c in row]
            minutes = header[len(AZURE_COLUMNS):]
            if tuple(header[: len(AZURE_COLUMNS)]) != AZURE_COLUMNS or not minutes:
                raise UsageError(
                    f"trace {p}:{lineno}: the Azure layout's header is "
                    f"{','.join(AZURE_COLUMNS)},1,2,...,1440"
                )
            if minutes != [str(i) for i in range(1, len(minutes) + 1)]:
                raise UsageError(f"trace {p}:{lineno}: the minute columns must be 1,2,3,... in order")
            counts = np.zeros(len(minutes), dtype=np.int64)
            continue
        assert counts is not None
        if len(row) != len(header):
            raise UsageError(f"trace {p}:{lineno}: {len(row)} fields, the header has {len(header)}")
        try:
            values = np.asarray([int(v) for v in row[len(AZURE_COLUMNS):]], dtype=np.int64)
        except ValueError:
            raise UsageError(f"trace {p}:{lineno}: a per-minute count is not a whole number") from None
        if (values < 0).any():
            raise UsageError(f"trace {p}:{lineno}: a per-minute count is negative")
        counts += values
        if int(counts.sum()) > MAX_TRACE_EVENTS:
            raise UsageError(f"trace {p}:{lineno}: more than {MAX_TRACE_EVENTS:,} arrivals")
    if counts is None:
        raise UsageError(f"trace {p}: no header")
    total = int(counts.sum())
    if total == 0:
        raise UsageError(f"trace {p}: no invocations in it (every count is 0)")
    minute = np.repeat(np.arange(len(counts), dtype=np.float64), counts)
    return np.sort((minute + rng.random(total)) * 60.0)


def arrivals(
    pattern: str,
    rate_per_s: float,
    duration_s: float,
    rng: np.random.Generator,
    trace_file: str | None = None,
) -> np.ndarray:
    """The arrivals for a pattern name (``edgelab.traffic.PATTERNS``) within ``[0, duration_s)``.

    ``trace`` replays ``trace_file`` (its ``rate_per_s`` is ignored: the trace has its own)."""
    if pattern == "poisson":
        return poisson(rate_per_s, duration_s, rng)
    if pattern == "onoff":
        return onoff(rate_per_s, duration_s, rng)
    if pattern == "trace":
        if not trace_file:
            raise UsageError("pattern 'trace' needs a trace file (--trace FILE)")
        _check_rate_duration(1.0, duration_s)
        t = read_trace(trace_file, rng)
        return t[t < duration_s]
    raise UsageError(f"unknown arrival pattern '{pattern}' (choose from poisson, onoff, trace)")


__all__ = ["AZURE_COLUMNS", "MAX_TRACE_EVENTS", "arrivals", "onoff", "poisson", "read_trace"]
