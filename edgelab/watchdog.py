"""The session watchdog: whatever happens to the lab, what it started does not outlive it.

The lab starts one watchdog per session (``Lab`` does, lazily, when its first runtime is made)
as ``python -m edgelab.watchdog <session-id>``, in a session of its own (a ctrl+c at the lab's
terminal does not reach it), with the read end of a pipe as its stdin. The lab keeps the only
write end and sends it ``edgelab.ipc`` frames carrying these frozen dataclasses:

``Group(pgid)``
    a process group the lab started (a native workload, the Wasm host). The watchdog notes
    the leader's start time when it reads the frame, so that a reused pid is never killed.
``Cgroup(path)``
    a native session's cgroup directory: everything in it (setsid'd descendants too) dies.
``UsesContainers()``
    the session uses containers: remove the leftovers of dead sessions now (containers whose
    ``edgelab.pid`` is gone or another process), and this session's containers at the end.
``CreatesContainers()``
    the lab is about to create its first container: from now on, an engine that does not
    answer at the end is waited for (up to ENGINE_WAIT_S), not given up on.
``ClosedCleanly()``
    the lab closed cleanly (it stopped and removed what it knew of).

The watchdog also holds the session's lock (``edgelab.session``: it inherits the lab's open
lock file), so the session stays live to other labs until the watchdog has swept, however
the lab ended; and while the session uses containers it keeps a heartbeat volume fresh for
labs on other hosts using the same engine.

The pipe reaches EOF when the lab closes it or dies in any way, SIGKILL included. Then the
watchdog SIGKILLs every registered group still alive, removes every container labelled with
this session (by label, so containers whose create call was cut short are found too; retrying
while the engine is slow or gone, for up to ENGINE_WAIT_S once containers were created), and
exits. A registration is one non-blocking ``write`` of one frame (under 4 KiB, so the pipe
takes it whole or not at all: a full pipe drops it rather than hang a launch, and never leaves
half a frame); a group's frame is patched from a template (see ``_group_frames``). Wasm instances need none (they live in the host
process, which is registered).

The watchdog reads its pipe at most every READ_COALESCE_S. Woken by every registration, it
ran on one of these two cores at each native cold start, beside the workload being spawned,
and cost the lab's subprocess cold starts ~50 us (~15%) against a bare posix_spawn loop.
Frames wait in the pipe meanwhile (64 KiB holds about a thousand), and an EOF is seen at most that
much later. A late read cannot mistake a reused pid: the leader is alive then (and is ours)
or gone (and is skipped); pids are handed out in order, so one reused within 20 ms would need
the whole pid space to wrap around in that time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgelab.errors import EdgelabError
from edgelab.ipc import Channel, encode, take_frames

#: How long, after EOF, the watchdog keeps trying to remove the session's containers.
SWEEP_DEADLINE_S = 12.0
#: Docker API timeout of the watchdog's calls, in seconds.
SWEEP_API_TIMEOUT_S = 5.0
#: A container create cut short by the lab's death may land after the first listing: list
#: again this long after removing something (or after an unclean end).
SETTLE_S = 1.0
#: When no engine listens at all (no socket, connection refused) and the session never
#: created a container, stop trying after this long.
ABSENT_GIVE_UP_S = 2.0
#: Once the session created containers, an unclean end keeps trying to remove them this long
#: while the engine is gone or frozen (it is killed and restarted, say), then gives up.
ENGINE_WAIT_S = 600.0
#: Pause between tries while the engine does not answer, at most (it grows from 0.25 s):
#: containers go within this much (plus one listing) of the engine answering again.
RETRY_MAX_S = 2.0
#: The watchdog reads its pipe at most this often (see above).
READ_COALESCE_S = 0.02
#: Prune groups whose leader is gone once this many are registered.
PRUNE_AT = 4096
#: Registrations are far under PIPE_BUF (4 KiB); a frame claiming more than this is a garbled
#: length prefix, not a frame to wait for.
MAX_FRAME_BYTES = 1 << 16
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent


# =============================================================================================
# What crosses the pipe
# =============================================================================================
@dataclass(frozen=True)
class Group:
    """Kill process group ``pgid`` when the lab goes (if its leader is still the one seen)."""

    pgid: int


@dataclass(frozen=True)
class Cgroup:
    """Kill everything in cgroup directory ``path`` (and its children) when the lab goes."""

    path: str


@dataclass(frozen=True)
class UsesContainers:
    """Reap dead sessions' containers now, and this session's at the end."""


@dataclass(frozen=True)
class CreatesContainers:
    """Containers are being created: at an unclean end, wait for an absent engine."""


@dataclass(frozen=True)
class ClosedCleanly:
    """The lab closed cleanly."""


WatchdogMessage = Group | Cgroup | UsesContainers | CreatesContainers | ClosedCleanly


def _group_frames() -> Callable[[int], bytes]:
    """``pgid -> encode(Group(pgid))`` at the cost of one concatenation.

    A group is registered inside every native cold start, and pickling a dataclass costs
    ~5 us here against ~1 us for the write itself. So the frame of a ``Group`` whose pgid takes
    pickle's 4-byte int (``J``) is made once and each pid is patched into its four bytes: a
    frame of the same length that unpickles to ``Group(pgid)``. Where the template does not
    look as expected (another pickle), every frame is encoded in full.
    """
    marker = 0x7EDC0DE5
    template = encode(Group(marker))
    packed = _BININT.pack(marker)
    at = template.find(b"J" + packed)
    if at < 0 or template.count(packed) != 1:
        return lambda pgid: encode(Group(pgid))
    head, tail = template[: at + 1], template[at + 1 + _BININT.size :]

    def frame(pgid: int) -> bytes:
        if 0 <= pgid <= 0x7FFFFFFF:
            return head + _BININT.pack(pgid) + tail
        return encode(Group(pgid))

    return frame


_BININT = struct.Struct("<i")
_group_frame = _group_frames()


# =============================================================================================
# The lab's side
# =============================================================================================
class Watchdog:
    """The lab's handle on its watchdog process: cheap, non-blocking registrations."""

    def __init__(self, session_id: str, env: dict[str, str] | None = None) -> None:
        from edgelab.session import hold_lock

        try:
            lock_fd: int | None = hold_lock(session_id)  # shared with the watchdog: see above
        except EdgelabError:  # no sessions directory: containers fail to launch, saying so
            lock_fd = None
        read_fd, write_fd = os.pipe()  # both ends non-inheritable: no workload holds them
        environ = dict(os.environ if env is None else env)
        environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_PACKAGE_ROOT), environ.get("PYTHONPATH", "")) if p
        )
        log = environ.get("EDGELAB_WATCHDOG_LOG")
        try:
            stderr: Any = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
            self.process = subprocess.Popen(
                [sys.executable, "-m", "edgelab.watchdog", session_id, *([str(lock_fd)] if lock_fd is not None else [])],
                stdin=read_fd,
                pass_fds=(lock_fd,) if lock_fd is not None else (),
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=environ,
                close_fds=True,
                start_new_session=True,
            )
        finally:
            os.close(read_fd)
            if log:
                stderr.close()
        self._channel: Channel | None = Channel(None, write_fd)  # non-blocking from here
        self._lock = threading.Lock()
        self._closer = weakref.finalize(self, os.close, write_fd)
        self.containers = False
        self.created = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def _send(self, message: WatchdogMessage) -> None:
        self._send_frame(encode(message))

    def _send_frame(self, frame: bytes) -> None:
        with self._lock:
            if self._channel is None:
                return
            try:
                # One try, no wait (the deadline is now): the frame is far under PIPE_BUF, so
                # the pipe takes it whole or refuses it whole.
                self._channel.send_raw(frame, deadline=time.monotonic())
            except (EdgelabError, OSError):
                # A full pipe means the watchdog is stuck; a registration is never worth a
                # hang. The workload still gets EOF on stdin when the lab goes.
                pass

    def register_pgid(self, pgid: int) -> None:
        self._send_frame(_group_frame(pgid))

    def register_cgroup(self, directory: Path) -> None:
        """Kill every process in cgroup ``directory`` (and its children) when the lab goes:
        native instances' setsid'd descendants live there, outside any process group."""
        self._send(Cgroup(os.fspath(directory)))

    def uses_containers(self) -> None:
        if not self.containers:
            self.containers = True
            self._send(UsesContainers())

    def creates_containers(self) -> None:
        """Before the first container create: from now on an engine fault is waited out."""
        if not self.created:
            self.created = True
            self._send(CreatesContainers())

    def close(self, clean: bool = True, wait_s: float = 0.0) -> None:
        """EOF to the watchdog: it kills and removes what is left, then exits."""
        if clean:
            self._send(ClosedCleanly())
        with self._lock:
            channel, self._channel = self._channel, None
        if channel is None:
            return
        self._closer.detach()
        channel.close()
        if wait_s > 0:
            try:
                self.process.wait(timeout=wait_s)
                return
            except subprocess.TimeoutExpired:
                pass
        # Reap it in the background so it never lingers as a zombie of a long-lived lab.
        threading.Thread(target=self.process.wait, name="watchdog-reaper", daemon=True).start()


# =============================================================================================
# The watchdog's side
# =============================================================================================
def _log(message: str) -> None:
    try:
        sys.stderr.write(f"edgelab watchdog {os.getpid()}: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def start_time_ticks(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot (/proc/<pid>/stat field 22)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    try:
        return int(data[data.rindex(b")") + 2 :].split()[19])
    except (ValueError, IndexError):
        return None


def _kill_cgroup_tree(directory: str) -> int:
    """SIGKILL everything in a native session's cgroups and remove them (see isolation)."""
    from edgelab.runtimes.isolation import _remove_tree, kill_cgroup

    path = Path(directory)
    if not path.is_dir():
        return 0
    pidfds = kill_cgroup(path)
    for pidfd in pidfds:
        os.close(pidfd)  # their parent (the dead lab's subreaper role passed to init) reaps
    _remove_tree(path)
    return len(pidfds)


class Registry:
    """Process groups by leader pid, with the leader's start time when registered."""

    def __init__(self) -> None:
        self.groups: dict[int, int] = {}
        self._prune_at = PRUNE_AT

    def register(self, pgid: int) -> None:
        started = start_time_ticks(pgid)
        if started is None:
            return  # already gone (and reaped): nothing to kill, nothing to mistake
        self.groups[pgid] = started
        if len(self.groups) >= self._prune_at:
            self.prune()
            self._prune_at = max(PRUNE_AT, 2 * len(self.groups))  # amortised: O(1) each

    def prune(self) -> None:
        for pgid, started in list(self.groups.items()):
            if start_time_ticks(pgid) != started and not _group_has_members(pgid):
                del self.groups[pgid]

    def kill_all(self) -> int:
        """SIGKILL every registered group that is still ours; how many were signalled."""
        killed = 0
        for pgid, started in self.groups.items():
            now = start_time_ticks(pgid)
            if now is not None and now != started:
                continue  # the pid is another process's now: its group is not ours
            # The leader is ours, or gone: while any member of its group lives, the kernel
            # does not hand out its pid again, so the group can only be ours.
            try:
                os.killpg(pgid, signal.SIGKILL)
                killed += 1
            except (ProcessLookupError, PermissionError):
                pass
        return killed


def _group_has_members(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _containers(client: Any, label: str) -> list[dict[str, Any]]:
    return list(client.api.containers(all=True, filters={"label": label}))


# -- heartbeat ----------------------------------------------------------------------------------
def heartbeat_volumes(client: Any, session_id: str | None = None) -> list[dict[str, Any]]:
    """Heartbeat volumes (of one session, or all), as the engine lists them."""
    from edgelab.session import HEARTBEAT_LABEL

    label = HEARTBEAT_LABEL if session_id is None else f"{HEARTBEAT_LABEL}={session_id}"
    return list((client.api.volumes(filters={"label": label}) or {}).get("Volumes") or [])


def beat(client: Any, session_id: str, sequence: int) -> None:
    """Create this session's next heartbeat volume, then remove its older ones.

    A volume, because it is the cheapest object whose creation time the engine records in its
    own clock (labs on other hosts compare it with the engine's ``SystemTime``, not theirs),
    and it never shows among containers.
    """
    from edgelab.session import HEARTBEAT_LABEL, HOST_LABEL, host_id

    name = f"edgelab-heartbeat-{session_id}-{sequence}"
    client.api.create_volume(name=name, labels={HEARTBEAT_LABEL: session_id, HOST_LABEL: host_id()})
    for volume in heartbeat_volumes(client, session_id):
        if volume.get("Name") != name:
            _remove_volume(client, volume["Name"])


def _remove_volume(client: Any, name: str) -> None:
    import docker

    try:
        client.api.remove_volume(name, force=True)
    except docker.errors.NotFound:
        pass


def _heartbeat(session_id: str, stop: threading.Event) -> None:
    from edgelab.runtimes.container import connect
    from edgelab.session import HEARTBEAT_S

    sequence = 0
    client = None
    while not stop.is_set():
        try:
            if client is None:
                client = connect(SWEEP_API_TIMEOUT_S)
            beat(client, session_id, sequence)
            sequence += 1
        except Exception as exc:  # noqa: BLE001 - a missed beat is retried at the next
            _log(f"heartbeat: {type(exc).__name__}: {exc}")
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()
                client = None
        stop.wait(HEARTBEAT_S)
    if client is not None:
        with contextlib.suppress(Exception):
            client.close()


# -- leftovers of dead sessions -----------------------------------------------------------------
def dead_sessions(client: Any, own_session: str | None = None) -> dict[str, list[str]]:
    """Container ids of every session that is dead by ``edgelab.session.session_alive``.

    Sessions are judged once each (not per container): by their lock when they locked in
    our sessions directory, else by their heartbeat in the engine's clock.
    """
    from edgelab.session import (
        HEARTBEAT_LABEL,
        HOST_LABEL,
        SESSION_LABEL,
        host_id,
        parse_engine_time,
        session_alive,
    )

    by_session: dict[str, list[dict[str, Any]]] = {}
    for container in _containers(client, SESSION_LABEL):
        sid = (container.get("Labels") or {}).get(SESSION_LABEL, "")
        if sid and sid != own_session:
            by_session.setdefault(sid, []).append(container)
    if not by_session:
        return {}
    own_host = host_id()
    foreign = any(
        (c[0].get("Labels") or {}).get(HOST_LABEL, own_host) != own_host for c in by_session.values()
    )
    engine_now: float | None = None
    beats: dict[str, float] = {}
    if foreign:  # only then is the engine's clock needed
        engine_now = parse_engine_time(str(client.info().get("SystemTime", "")))
        for volume in heartbeat_volumes(client):
            sid = (volume.get("Labels") or {}).get(HEARTBEAT_LABEL, "")
            at = parse_engine_time(str(volume.get("CreatedAt", "")))
            if sid and at is not None:
                beats[sid] = max(at, beats.get(sid, at))
    dead: dict[str, list[str]] = {}
    for sid, containers in by_session.items():
        labels = containers[0].get("Labels") or {}
        newest = max((float(c.get("Created") or 0) for c in containers), default=None)
        if not session_alive(
            labels, engine_now=engine_now, heartbeat_at=beats.get(sid), newest_created=newest, own_host=own_host
        ):
            dead[sid] = [c["Id"] for c in containers]
    return dead


def live_and_dead(client: Any) -> dict[str, tuple[int, bool]]:
    """Every session with labelled containers: (how many, alive?). What ``edgelab clean``
    can say before it removes them all."""
    from edgelab.session import SESSION_LABEL

    counts: dict[str, int] = {}
    for container in _containers(client, SESSION_LABEL):
        sid = (container.get("Labels") or {}).get(SESSION_LABEL, "")
        counts[sid] = counts.get(sid, 0) + 1
    dead = dead_sessions(client)
    return {sid: (n, sid not in dead) for sid, n in counts.items()}


def _prune_heartbeats(client: Any, dead: dict[str, list[str]]) -> None:
    """Remove heartbeat volumes nobody renews: of dead sessions, of this host's sessions
    whose lock is free, of other hosts' sessions silent for twice the staleness."""
    from edgelab.session import (
        HEARTBEAT_LABEL,
        HEARTBEAT_STALE_S,
        HOST_LABEL,
        host_id,
        lock_is_held,
        parse_engine_time,
    )

    volumes = heartbeat_volumes(client)
    if not volumes:
        return
    own_host = host_id()
    engine_now = None
    for volume in volumes:
        labels = volume.get("Labels") or {}
        sid = labels.get(HEARTBEAT_LABEL, "")
        if sid in dead:
            stale = True
        elif labels.get(HOST_LABEL) == own_host:
            stale = not lock_is_held(sid)
        else:
            if engine_now is None:
                engine_now = parse_engine_time(str(client.info().get("SystemTime", ""))) or 0.0
            created = parse_engine_time(str(volume.get("CreatedAt", "")))
            stale = bool(engine_now and created and engine_now - created > 2 * HEARTBEAT_STALE_S)
        if stale:
            _remove_volume(client, volume["Name"])


def reap_dead_sessions(session_id: str) -> int:
    """Remove containers (and heartbeats, and lock files) of dead sessions; how many containers."""
    from edgelab.runtimes.container import _remove_all, connect
    from edgelab.session import prune_lock_files, reap_lock

    client = connect(SWEEP_API_TIMEOUT_S)
    try:
        dead = dead_sessions(client, session_id)
        removed = _remove_all(client, [cid for ids in dead.values() for cid in ids])
        _prune_heartbeats(client, dead)
    finally:
        client.close()
    for sid in dead:
        reap_lock(sid)
    prune_lock_files()
    if dead:
        _log(f"removed {removed} container(s) of {len(dead)} dead session(s)")
    return removed


# -- this session's end -------------------------------------------------------------------------
def sweep_session(session_id: str, clean: bool, deadline: float, wait_for_engine: bool = False) -> int:
    """Remove every container labelled ``session_id``, retrying until ``deadline``.

    ``wait_for_engine``: containers were created and the lab did not close cleanly, so an
    engine that is absent (killed, restarting) is waited for until ``deadline`` too, instead
    of being given up on after ABSENT_GIVE_UP_S.
    """
    from edgelab.runtimes.container import _remove_all, connect
    from edgelab.session import SESSION_LABEL

    label = f"{SESSION_LABEL}={session_id}"
    removed = 0
    settle_until = 0.0 if clean else time.monotonic() + SETTLE_S
    client = None
    absent_since = 0.0
    pause = 0.25
    while time.monotonic() < deadline:
        try:
            if client is None:
                client = connect(SWEEP_API_TIMEOUT_S)
            found = [c["Id"] for c in _containers(client, label)]
            pause = 0.25
            if found:
                _remove_all(client, found)
                removed += len(found)
                settle_until = time.monotonic() + SETTLE_S
                continue
            if time.monotonic() >= settle_until:
                break
            time.sleep(0.25)
        except Exception as exc:  # noqa: BLE001 - an engine that is slow or gone: retry
            _log(f"sweep: {type(exc).__name__}: {exc}")
            if _engine_absent(exc) and not wait_for_engine:
                absent_since = absent_since or time.monotonic()
                if time.monotonic() - absent_since > ABSENT_GIVE_UP_S:
                    break  # no engine listens at all (a slow one times out instead)
            else:
                absent_since = 0.0
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()
                client = None
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(RETRY_MAX_S, pause * 2) if wait_for_engine else 0.5
    if client is not None:
        with contextlib.suppress(Exception):
            client.close()
    return removed


def remove_heartbeats(session_id: str) -> None:
    from edgelab.runtimes.container import connect

    client = connect(SWEEP_API_TIMEOUT_S)
    try:
        for volume in heartbeat_volumes(client, session_id):
            _remove_volume(client, volume["Name"])
    finally:
        client.close()


def _engine_absent(exc: BaseException) -> bool:
    """Nothing listens where the engine should be (no socket, connection refused)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, (FileNotFoundError, ConnectionRefusedError)):
            return True
        cause = cause.__cause__ or cause.__context__
    text = str(exc)
    return "No such file or directory" in text or "Connection refused" in text


def watch(
    read_fd: int,
    session_id: str,
    sweep: Callable[..., int] = sweep_session,
    reap: Callable[[str], int] = reap_dead_sessions,
    coalesce_s: float = READ_COALESCE_S,
    lock_fd: int | None = None,
    heartbeat: Callable[[str, threading.Event], None] = _heartbeat,
) -> None:
    registry = Registry()
    reaper: threading.Thread | None = None
    beating = threading.Event()
    beater: threading.Thread | None = None
    containers = False
    created = False
    clean = False
    cgroups: list[Path] = []
    pending = bytearray()
    while True:
        try:
            chunk = os.read(read_fd, 65536)
        except InterruptedError:  # pragma: no cover - PEP 475 retries
            continue
        except OSError:
            break
        if not chunk:
            break
        time.sleep(coalesce_s)
        pending += chunk
        for message in _messages(pending):
            if isinstance(message, Group):
                registry.register(message.pgid)
            elif isinstance(message, UsesContainers) and not containers:
                containers = True
                reaper = threading.Thread(target=_quietly, args=(reap, session_id), daemon=True)
                reaper.start()
                beater = threading.Thread(target=heartbeat, args=(session_id, beating), daemon=True)
                beater.start()
            elif isinstance(message, CreatesContainers):
                created = True
            elif isinstance(message, Cgroup) and message.path:
                cgroups.append(Path(message.path))
            elif isinstance(message, ClosedCleanly):
                clean = True
    started = time.monotonic()
    killed = registry.kill_all()
    for cgroup in cgroups:
        _quietly(_kill_cgroup_tree, str(cgroup))
    beating.set()
    removed = 0
    if containers:
        wait = created and not clean
        bound = started + (ENGINE_WAIT_S if wait else SWEEP_DEADLINE_S)
        removed = sweep(session_id, clean, bound, wait)
    if reaper is not None:  # let a reap of dead sessions that is under way finish
        reaper.join(max(0.0, started + SWEEP_DEADLINE_S - time.monotonic()))
    if beater is not None:
        beater.join(SWEEP_API_TIMEOUT_S)
        _quietly(remove_heartbeats, session_id)
    if lock_fd is not None:  # the session is over: other labs may now see it dead
        from edgelab.session import reap_lock

        with contextlib.suppress(OSError):
            os.close(lock_fd)
        reap_lock(session_id)
    if killed or removed or not clean:
        _log(
            f"session {session_id} ended ({'cleanly' if clean else 'without closing'}): "
            f"{killed} process group(s) signalled, {removed} container(s) removed "
            f"in {time.monotonic() - started:.2f} s"
        )


def _messages(pending: bytearray) -> list[Any]:
    """The complete frames off the front of ``pending``, one at a time, so that a frame that
    does not unpickle is dropped alone (and logged): no garbled frame costs the sweep the
    registrations around it. A length no frame can have (a garbled prefix) drops the rest."""
    found: list[Any] = []
    while len(pending) >= 4:
        length = int.from_bytes(pending[:4], "little")
        if length > MAX_FRAME_BYTES:
            _log(f"garbled frame length {length}: {len(pending)} bytes dropped")
            pending.clear()
            break
        if len(pending) < 4 + length:
            break
        frame = bytearray(pending[: 4 + length])
        del pending[: 4 + length]
        try:
            found.extend(take_frames(frame))
        except Exception as exc:  # noqa: BLE001 - a garbled frame must not cost the sweep
            _log(f"unreadable frame dropped: {type(exc).__name__}: {exc}")
    return found


def _quietly(job: Callable[[str], Any], session_id: str) -> None:
    try:
        job(session_id)
    except Exception as exc:  # noqa: BLE001 - a failed reap is retried by the next lab
        _log(f"{getattr(job, '__name__', 'job')} failed: {type(exc).__name__}: {exc}")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (1, 2):
        print(
            "usage: python -m edgelab.watchdog SESSION_ID [LOCK_FD]  (stdin: the lab's pipe)",
            file=sys.stderr,
        )
        return 2
    lock_fd: int | None = None
    if len(args) == 2:
        try:
            lock_fd = int(args[1])
            os.fstat(lock_fd)
        except (ValueError, OSError):
            lock_fd = None
    # Only EOF ends the watch: a terminal's or a process group's signals are the lab's.
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)
    read_fd = os.dup(0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    watch(read_fd, args[0], lock_fd=lock_fd)
    return 0


if __name__ == "__main__":
    # Run as the module imported under its own name: the frames unpickle as
    # ``edgelab.watchdog``'s messages, which ``watch`` must recognise (not ``__main__``'s).
    from edgelab.watchdog import main as _main

    raise SystemExit(_main())
