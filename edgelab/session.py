"""A lab session: the id every container and process of one lab run is labelled with."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

SESSION_LABEL = "edgelab.session"
OWNER_PID_LABEL = "edgelab.pid"
#: When the owning process started (seconds since the epoch, 2 decimals, as psutil reports
#: it): with the pid it names the owner even after the pid has been reused.
OWNER_STARTED_LABEL = "edgelab.pid_started"
#: Two readings of one process's start time agree to the clock tick (10 ms); allow slack.
_STARTED_SLACK_S = 0.5


def process_started(pid: int) -> float | None:
    """When ``pid`` started (epoch seconds), or None if there is no such process."""
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.Error, ValueError):
        return None


@dataclass(frozen=True)
class Session:
    """Who owns what the lab starts, so that it can always be found and removed."""

    id: str = field(default_factory=lambda: secrets.token_hex(6))
    owner_pid: int = field(default_factory=os.getpid)
    #: The owner's start time; found from ``owner_pid`` when not given (None: no such process).
    owner_started: float | None = None

    def __post_init__(self) -> None:
        if self.owner_started is None:
            object.__setattr__(self, "owner_started", process_started(self.owner_pid))

    @property
    def labels(self) -> dict[str, str]:
        labels = {SESSION_LABEL: self.id, OWNER_PID_LABEL: str(self.owner_pid)}
        if self.owner_started is not None:
            labels[OWNER_STARTED_LABEL] = f"{self.owner_started:.2f}"
        return labels


def owner_alive(labels: Mapping[str, str], created: float | None = None) -> bool:
    """Is the process that owns a container with these labels still running?

    The owner is gone when no process has its pid, when that process is a zombie, or when the
    process with that pid is another one: it started at another time than the label says
    (or, for a container without that label, after the container was ``created``).
    A container without an owner pid label is treated as owned (never removed as a leftover).
    """
    import psutil

    try:
        pid = int(labels.get(OWNER_PID_LABEL, ""))
    except ValueError:
        return True
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        started = process.create_time()
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True  # exists but cannot be read: assume it is someone's live lab
    label = labels.get(OWNER_STARTED_LABEL)
    if label:
        try:
            return abs(float(label) - started) <= _STARTED_SLACK_S
        except ValueError:
            return True
    if created is not None:
        return started <= created + _STARTED_SLACK_S
    return True
