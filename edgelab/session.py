"""A lab session: the id every container and process of one lab run is labelled with, and the
proof that the session is alive.

A pid cannot prove that: a pid from another PID namespace (``unshare --pid``, a lab inside a
container) names another process here, or none, and a lab once removed another lab's live
containers because of that. So each session holds an exclusive ``flock`` on
``<sessions dir>/<id>.lock`` for as long as it lives; its watchdog inherits the same open file
(so the lock outlives a SIGKILLed lab until the watchdog has swept, then goes with it). A
session is dead only when its lock can be taken, or its lock file is gone. Locks are kernel
objects on an inode: every lab that sees the same directory sees them, whatever its PID or
mount namespace (``unshare --mount-proc`` only remounts /proc).

Labs that do not share the directory (another host, or a container, using the same engine)
cannot see the lock. The directory has a random id (``host-id``), carried by every container
as ``edgelab.host``; a session of another id is judged by its heartbeat instead: a Docker
volume its watchdog re-creates every ``HEARTBEAT_S`` (``edgelab.watchdog``), dated by the
engine's own clock. While the newest is younger than ``HEARTBEAT_STALE_S`` the session is live.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from edgelab.errors import EdgelabError

SESSION_LABEL = "edgelab.session"
#: The owner's pid *in its own PID namespace*: shown to people, never trusted for liveness.
OWNER_PID_LABEL = "edgelab.pid"
#: When the owning process started (epoch seconds), shown with the pid; informative only.
OWNER_STARTED_LABEL = "edgelab.pid_started"
#: The id of the sessions directory the owner locks in (see the module docstring).
HOST_LABEL = "edgelab.host"
#: On heartbeat volumes: the session they speak for.
HEARTBEAT_LABEL = "edgelab.heartbeat"
#: The watchdog re-creates its heartbeat this often, in seconds.
HEARTBEAT_S = 10.0
#: A session of another host is live while its newest heartbeat is younger than this, and a
#: session of another host that never sent one is live while its newest container is.
HEARTBEAT_STALE_S = 60.0
_HOST_ID_FILE = "host-id"


def process_started(pid: int) -> float | None:
    """When ``pid`` started (epoch seconds), or None if there is no such process."""
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.Error, ValueError):
        return None


# -- the sessions directory -------------------------------------------------------------------
def sessions_dir() -> Path:
    """Where sessions keep their locks: ``$EDGELAB_SESSION_DIR``, else ``/run/edgelab`` for root
    (tmpfs that no tmp cleaner sweeps), else ``/tmp/edgelab-sessions-<uid>`` (mode 0700)."""
    override = os.environ.get("EDGELAB_SESSION_DIR")
    if override:
        path = Path(override)
    elif os.geteuid() == 0 and os.access("/run", os.W_OK):
        path = Path("/run/edgelab")
    else:
        path = Path("/tmp") / f"edgelab-sessions-{os.geteuid()}"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def host_id(directory: Path | None = None) -> str:
    """The random id of ``directory`` (created once, atomically): labs that see the same
    directory see each other's locks, so the id says whose lock can be checked."""
    directory = sessions_dir() if directory is None else directory
    path = directory / _HOST_ID_FILE
    with contextlib.suppress(OSError):
        text = path.read_text().strip()
        if text:
            return text
    candidate = directory / f".{_HOST_ID_FILE}.{secrets.token_hex(4)}"
    candidate.write_text(secrets.token_hex(8) + "\n")
    try:
        os.link(candidate, path)  # fails if another lab got there first: then use theirs
    except FileExistsError:
        pass
    finally:
        candidate.unlink(missing_ok=True)
    return path.read_text().strip()


def lock_path(session_id: str, directory: Path | None = None) -> Path:
    return (sessions_dir() if directory is None else directory) / f"{session_id}.lock"


_held: dict[str, int] = {}
_held_lock = threading.Lock()


def _acquire(session_id: str) -> int:
    """Create ``<id>.lock`` already locked (a temporary name, locked, then renamed), so that no
    other lab can ever see it unlocked while this session lives; the open fd."""
    directory = sessions_dir()
    temporary = directory / f".{session_id}.{secrets.token_hex(4)}.tmp"
    fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, f"{os.getpid()}\n".encode())
        final = lock_path(session_id, directory)
        try:
            os.link(temporary, final)  # never replaces a file: that would steal its session's proof
        except FileExistsError:
            if not reap_lock(session_id, directory):  # a dead session's file may go; a live one's not
                raise EdgelabError(f"session id {session_id} is in use by a live lab") from None
            os.link(temporary, final)
    except BaseException:
        os.close(fd)
        raise
    finally:
        temporary.unlink(missing_ok=True)
    return fd


def hold_lock(session_id: str) -> int:
    """Take ``session_id``'s lock in this process if it is not held yet; its fd. Released by
    ``Session.release``, when the Session is collected, or at exit. EdgelabError (one line)
    when the sessions directory cannot be used: nothing may then be labelled, since a
    session without its lock file reads as dead to every other lab."""
    with _held_lock:
        fd = _held.get(session_id)
        if fd is None:
            try:
                fd = _held[session_id] = _acquire(session_id)
            except OSError as exc:
                where = os.environ.get("EDGELAB_SESSION_DIR") or "the sessions directory"
                raise EdgelabError(
                    f"cannot keep the session's lock in {where}: {exc.strerror or exc}"
                    " (set EDGELAB_SESSION_DIR to a writable folder)"
                ) from None
        return fd


def held_lock_fd(session_id: str) -> int | None:
    """The fd of the lock this process holds for ``session_id`` (the watchdog inherits it)."""
    with _held_lock:
        return _held.get(session_id)


def _release(session_id: str) -> None:
    with _held_lock:
        fd = _held.pop(session_id, None)
    if fd is None:
        return
    os.close(fd)
    # The file goes only if nobody holds the lock now: a watchdog that inherited it still
    # sweeps, and removes the file itself when done (or the next lab's reaper does).
    with contextlib.suppress(OSError):
        reap_lock(session_id)


def _same_file(fd: int, path: Path) -> bool:
    try:
        st, own = os.stat(path), os.fstat(fd)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


@dataclass(frozen=True)
class Session:
    """Who owns what the lab starts, so that it can always be found and removed.

    The session takes its lock when it first labels something (``labels``) or hands the lock
    to a watchdog (``hold``), and keeps it until ``release`` or until it is garbage-collected
    (also at interpreter exit): a session that labels nothing creates no file.
    """

    id: str = field(default_factory=lambda: secrets.token_hex(6))
    owner_pid: int = field(default_factory=os.getpid)
    #: The owner's start time; found from ``owner_pid`` when not given (None: no such process).
    owner_started: float | None = None

    def __post_init__(self) -> None:
        if self.owner_started is None:
            object.__setattr__(self, "owner_started", process_started(self.owner_pid))

    def hold(self) -> int:
        """Take this session's lock if not held yet; the lock's fd."""
        fd = hold_lock(self.id)
        if "_finalizer" not in self.__dict__:
            object.__setattr__(self, "_finalizer", weakref.finalize(self, _release, self.id))
        return fd

    def release(self) -> None:
        """Give the lock up (the session is over: nothing labelled with it remains)."""
        _release(self.id)

    @property
    def labels(self) -> dict[str, str]:
        """The labels of everything this session starts (taking its lock first); computed once."""
        cached = self.__dict__.get("_labels")
        if cached is not None:
            return dict(cached)
        self.hold()
        labels = {
            SESSION_LABEL: self.id,
            OWNER_PID_LABEL: str(self.owner_pid),
            HOST_LABEL: host_id(),
        }
        if self.owner_started is not None:
            labels[OWNER_STARTED_LABEL] = f"{self.owner_started:.2f}"
        object.__setattr__(self, "_labels", labels)
        return dict(labels)


# -- is a session alive? ------------------------------------------------------------------------
def lock_is_held(session_id: str, directory: Path | None = None) -> bool:
    """Does a live process hold ``session_id``'s lock? False when the file is gone.

    This process's own sessions are live. The check takes the lock for an instant and gives
    it back; it never removes the file (a reaper does, see ``reap_lock``).
    """
    if held_lock_fd(session_id) is not None:
        return True
    try:
        fd = os.open(lock_path(session_id, directory), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError:
        return True  # exists but cannot be opened: assume a live session of someone else
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        return exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
    finally:
        os.close(fd)
    return False


def reap_lock(session_id: str, directory: Path | None = None) -> bool:
    """Remove a dead session's lock file (taking its lock first); False if it is live."""
    path = lock_path(session_id, directory)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    try:
        if _same_file(fd, path):
            path.unlink()
    except OSError:
        pass
    finally:
        os.close(fd)
    return True


def prune_lock_files(directory: Path | None = None) -> int:
    """Remove the lock files of sessions that ended (lab and watchdog both gone); the count."""
    directory = sessions_dir() if directory is None else directory
    removed = 0
    for path in directory.glob("*.lock"):
        session_id = path.name[: -len(".lock")]
        if held_lock_fd(session_id) is None and not lock_is_held(session_id, directory):
            removed += reap_lock(session_id, directory)
    return removed


def parse_engine_time(text: str) -> float | None:
    """Seconds since the epoch from an engine timestamp (RFC 3339, nanoseconds allowed)."""
    if not text:
        return None
    text = text.strip().replace("Z", "+00:00")
    date, dot, rest = text.partition(".")
    if dot:  # trim the fraction to microseconds, keep the zone
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits) :]
        text = f"{date}.{digits[:6] or '0'}{zone}"
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def session_alive(
    labels: Mapping[str, str],
    *,
    engine_now: float | None,
    heartbeat_at: float | None,
    newest_created: float | None,
    own_host: str | None = None,
) -> bool:
    """Is the session that labelled a container with ``labels`` alive? In doubt: yes.

    Same sessions directory (``edgelab.host`` is ours): alive exactly while its lock is held.
    Another host: alive while its newest heartbeat (engine time) is fresh, or, if it never
    sent one, while its newest container is younger than ``HEARTBEAT_STALE_S``. A container
    without a session or host label (an older lab's) is never judged dead.
    """
    session_id = labels.get(SESSION_LABEL, "")
    host = labels.get(HOST_LABEL, "")
    if not session_id or not host:
        return True
    if host == (host_id() if own_host is None else own_host):
        return lock_is_held(session_id)
    if engine_now is None:
        return True
    latest = heartbeat_at if heartbeat_at is not None else newest_created
    if latest is None:
        return True
    return engine_now - latest < HEARTBEAT_STALE_S
