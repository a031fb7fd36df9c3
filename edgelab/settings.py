"""Numbers from outside the lab, checked where they enter: flags, manifests, environment.

A count, rate, duration, timeout or size that reaches the lab unchecked fails far from where it
was typed: ``--rate inf`` looped forever, ``--rate 1e-300`` overflowed a timestamp,
``timeout_s = nan`` passed a manifest and broke a launch, a 1 TiB ``max_request_bytes``
wrapped to 0 in the C ABI and rejected every request. Every such number goes through one of
these validators, which accept only finite values in a stated range and otherwise raise one
line that says the range. The ranges live here, in one place, so flags, manifests, the TUI
(through ``Settings.validate``) and environment variables agree.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from edgelab.errors import UsageError


class BadNumber(UsageError, argparse.ArgumentTypeError):
    """A number out of its range. An ``ArgumentTypeError`` too, so that argparse prints it as
    ``argument --rate: ...`` when a validator is a flag's ``type=``; a ``UsageError`` elsewhere."""


@dataclass(frozen=True)
class Limit:
    """The accepted range of one kind of number, and its unit in words."""

    lo: float
    hi: float
    unit: str
    #: ``lo`` itself is allowed (counts from 0), or only numbers above it (durations).
    lo_inclusive: bool = True
    whole: bool = False

    def describe(self) -> str:
        lo = _show(self.lo)
        span = f"from {lo} to" if self.lo_inclusive else f"above {lo} and at most"
        return f"{'a whole number' if self.whole else 'a number'} {span} {_show(self.hi)} {self.unit}".rstrip()


GIB = 1 << 30
#: Launches per second per runtime (steady). Below 1 per 100 s a run is not "steady"; above
#: 10,000 no runtime here keeps up, and an unbounded rate was an unbounded loop.
RATE_PER_S = Limit(0.01, 10_000, "launches per second")
#: Seconds of steady traffic: up to a day.
DURATION_S = Limit(0, 86_400, "seconds", lo_inclusive=False)
#: Traffic: seconds an idle instance is kept before it is stopped (scale to zero); 0 stops
#: each instance once it has answered (every request cold).
KEEPALIVE_S = Limit(0, 86_400, "seconds")
#: Traffic: instances kept ready (pre-warmed) per runtime.
PREWARM = Limit(0, 100_000, "instances", whole=True)
#: Seconds a launch may take to answer (flag or manifest): up to an hour.
TIMEOUT_S = Limit(0, 3_600, "seconds", lo_inclusive=False)
COUNT = Limit(1, 1_000_000, "cold starts", whole=True)
WARMUP = Limit(0, 100_000, "launches", whole=True)
RESIDENT = Limit(0, 1_000_000, "instances", whole=True)
#: Launches one steady run may make per runtime (rate x duration): each is a kept sample.
STEADY_LAUNCHES_MAX = 1_000_000
#: A request must fit the C ABI's 32-bit sizes and, twice over (request and answer), a Wasm
#: instance's 4 GiB memory: 1 GiB is the largest that does.
MAX_REQUEST_BYTES = Limit(1, GIB, "bytes", whole=True)
#: The lab holds a response in memory while it reads it.
MAX_RESPONSE_BYTES = Limit(1, GIB, "bytes", whole=True)
#: Docker refuses a memory limit under 6 MiB, and every workload runs in every runtime.
MEMORY_LIMIT_MIB = Limit(6, 65_536, "MiB", whole=True)
#: Docker API calls. Under half a second a healthy but busy engine looks absent.
DOCKER_TIMEOUT_S = Limit(0.5, 3_600, "seconds")
#: Runs the history keeps (``$EDGELAB_HISTORY_KEEP``): each save deletes the oldest beyond
#: them. At least one (the run just saved); a million runs' exports is gigabytes of JSON.
HISTORY_KEEP = Limit(1, 1_000_000, "runs", whole=True)
HISTORY_KEEP_ENV = "EDGELAB_HISTORY_KEEP"
HISTORY_KEEP_DEFAULT = 1_000


def _show(value: float) -> str:
    if not math.isfinite(value) or abs(value) >= 1e15:
        return f"{value:g}"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:g}"


def _bad(what: str, limit: Limit, shown: str) -> BadNumber:
    return BadNumber(f"{what + ' ' if what else ''}must be {limit.describe()}, not {shown}")


def check(value: object, what: str, limit: Limit) -> float:
    """``value`` as a number if it is finite and within ``limit``, else one line naming the range.

    Booleans are not numbers here (TOML ``true`` is not a timeout)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(what, limit, repr(value))
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        raise _bad(what, limit, str(value)) from None
    if limit.whole and not (math.isfinite(number) and number.is_integer()):
        raise _bad(what, limit, repr(value))
    low_ok = number >= limit.lo if limit.lo_inclusive else number > limit.lo
    if not (math.isfinite(number) and low_ok and number <= limit.hi):
        raise _bad(what, limit, _show(number))
    return number


def parse_number(text: str, what: str, limit: Limit) -> float:
    """A number typed as text (a flag, an environment variable), checked against ``limit``."""
    try:
        value: float = int(text.strip()) if limit.whole else float(text)
    except (ValueError, AttributeError):
        raise _bad(what, limit, repr(text)) from None
    try:
        return check(value, what, limit)
    except BadNumber:
        raise _bad(what, limit, repr(text)) from None


_SECOND_UNITS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_seconds(text: str, what: str, limit: Limit) -> float:
    """Seconds typed with or without a unit (``2``, ``2s``, ``500ms``, ``1.5m``, ``1h``),
    checked against ``limit``: what ``--keepalive 2s`` and ``--duration 30`` take."""
    stripped = text.strip().lower()
    for unit in sorted(_SECOND_UNITS, key=len, reverse=True):
        if stripped.endswith(unit) and stripped[: -len(unit)].strip():
            number = stripped[: -len(unit)].strip()
            try:
                value = float(number) * _SECOND_UNITS[unit]
            except ValueError:
                raise _bad(what, limit, repr(text)) from None
            try:
                return check(value, what, limit)
            except BadNumber:
                raise _bad(what, limit, repr(text)) from None
    return parse_number(text, what, limit)


def seconds_flag(limit: Limit) -> Callable[[str], float]:
    """An argparse ``type=`` for a duration flag (``parse_seconds``)."""

    def parse(text: str) -> float:
        return parse_seconds(text, "", limit)

    parse.__name__ = "seconds"
    return parse


def positive_finite(text: str, what: str, hi: float) -> float:
    """A finite number above 0 and at most ``hi``."""
    return parse_number(text, what, Limit(0, hi, "", lo_inclusive=False))


def env_seconds(name: str, default: float, lo: float, hi: float) -> float:
    """Seconds from environment variable ``name`` (``default`` when unset or empty); a value that
    is not a finite number in [lo, hi] is an error naming the variable, not a silent default."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    return parse_number(text, name, Limit(lo, hi, "seconds"))


def docker_timeout_s(default: float) -> float:
    """``$EDGELAB_DOCKER_TIMEOUT`` (seconds per Docker API call), or ``default``."""
    return env_seconds("EDGELAB_DOCKER_TIMEOUT", default, DOCKER_TIMEOUT_S.lo, DOCKER_TIMEOUT_S.hi)


def history_keep() -> int:
    """``$EDGELAB_HISTORY_KEEP``, the newest runs the history keeps, or ``HISTORY_KEEP_DEFAULT``
    when unset or empty; anything but a whole number in range is an error naming the variable."""
    text = os.environ.get(HISTORY_KEEP_ENV, "").strip()
    if not text:
        return HISTORY_KEEP_DEFAULT
    return int(parse_number(text, HISTORY_KEEP_ENV, HISTORY_KEEP))


def check_environment() -> None:
    """Every numeric environment variable the lab reads, checked once at start-up, so a bad one
    stops the command with its name and range instead of surfacing later as a runtime's fault."""
    docker_timeout_s(0.0)
    history_keep()


def flag(limit: Limit) -> Callable[[str], float | int]:
    """An argparse ``type=`` for a flag in ``limit`` (argparse prefixes the flag's name)."""

    def parse(text: str) -> float | int:
        value = parse_number(text, "", limit)
        return int(value) if limit.whole else value

    parse.__name__ = limit.unit or "number"
    return parse


# -- the process's own limits (ulimit) ------------------------------------------------------------
#: Open files the lab needs before its first instance (interpreter, engine socket, Wasm host
#: and watchdog pipes, the session lock; ~40 measured), with room for a few instances.
MIN_OPEN_FILES = 64


def _soft_limit(resource_id: int) -> int | None:
    import resource

    soft, _ = resource.getrlimit(resource_id)
    return None if soft == resource.RLIM_INFINITY else soft


def check_process_limits() -> None:
    """Refuse to start, in one line, under an open-files limit the lab cannot even start with
    (``ulimit -n 16``): failing before anything is launched leaves nothing half-done."""
    import resource

    files = _soft_limit(resource.RLIMIT_NOFILE)
    if files is not None and files < MIN_OPEN_FILES:
        raise UsageError(
            f"ulimit -n is {files}: the lab needs at least {MIN_OPEN_FILES} open files, and one or "
            f"two more per resident instance (raise it, e.g. ulimit -n 4096)"
        )


def _address_space() -> str:
    import resource

    limit = _soft_limit(resource.RLIMIT_AS)
    return f"ulimit -v is {limit // 1024:,} KiB" if limit is not None else "ulimit -v is unlimited"


def limit_message(exc: BaseException) -> str | None:
    """One line naming the process limit behind ``exc`` (or behind what caused it), or None when
    it is not about a limit. The CLI prints it instead of a traceback."""
    import errno
    import resource

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.EMFILE, errno.ENFILE):
            if current.errno == errno.ENFILE:
                return "the system's open-file table is full (fs.file-max); close other programs and retry"
            files = _soft_limit(resource.RLIMIT_NOFILE)
            return (
                f"out of file descriptors: ulimit -n is {files if files is not None else 'unlimited'}; "
                "the lab needs one or two per instance (raise it, e.g. ulimit -n 4096)"
            )
        if isinstance(current, RuntimeError) and "can't start new thread" in str(current):
            threads = _soft_limit(resource.RLIMIT_NPROC)
            return (
                f"cannot start a thread: {_address_space()} (each thread reserves its stack) and "
                f"ulimit -u is {threads if threads is not None else 'unlimited'}; raise them or run fewer instances"
            )
        if isinstance(current, MemoryError) or (isinstance(current, OSError) and current.errno == errno.ENOMEM):
            return f"out of memory: {_address_space()}; raise it (or lift it: ulimit -v unlimited) or hold fewer instances"
        if isinstance(current, OSError) and current.errno == errno.EAGAIN and "fork" in str(current).lower():
            threads = _soft_limit(resource.RLIMIT_NPROC)
            return f"cannot start a process: ulimit -u is {threads if threads is not None else 'unlimited'}; raise it"
        current = current.__cause__ or current.__context__
    return None


# -- requests: read up to their limit and no further ------------------------------------------------
#: After a request passed its limit, how much more is read (and dropped) to say its exact size.
_OVERSIZE_COUNT_BYTES = 16 << 20
_READ_CHUNK = 1 << 20


def read_request(stream: BinaryIO, limit: int, workload: str, source: str) -> bytes:
    """At most ``limit`` bytes from ``stream``; a longer request is one line, and the reading
    stops at ``limit + 1`` bytes kept (``/dev/zero`` is not read to the end of memory).

    The size in the message is exact where it can be had cheaply (a regular file's size, or a
    stream that ends within 16 MiB past the limit)."""
    try:
        size = os.fstat(stream.fileno()).st_size if _is_regular(stream) else None
    except (OSError, ValueError, AttributeError):
        size = None
    if size is not None and size > limit:
        raise _too_large(size, limit, workload)
    kept = bytearray()
    while len(kept) <= limit:
        block = stream.read(min(_READ_CHUNK, limit + 1 - len(kept)))
        if not block:
            return bytes(kept)
        kept += block
    total = len(kept)
    del kept
    while total <= limit + _OVERSIZE_COUNT_BYTES:
        block = stream.read(_READ_CHUNK)
        if not block:
            raise _too_large(total, limit, workload)
        total += len(block)
    raise UsageError(
        f"request exceeds {workload}'s limit of {limit} bytes "
        f"({source} gave more than {limit + _OVERSIZE_COUNT_BYTES} bytes; reading stopped there)"
    )


def _is_regular(stream: BinaryIO) -> bool:
    import stat

    return stat.S_ISREG(os.fstat(stream.fileno()).st_mode)


def _too_large(size: int, limit: int, workload: str) -> UsageError:
    return UsageError(f"request of {size} bytes exceeds {workload}'s limit of {limit} bytes")
