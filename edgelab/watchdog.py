"""The session watchdog: whatever happens to the lab, what it started does not outlive it.

The lab starts one watchdog per session (``Lab`` does, lazily, when its first runtime is made)
as ``python -m edgelab.watchdog <session-id>``, in a session of its own (a ctrl+c at the lab's
terminal does not reach it), with the read end of a pipe as its stdin. The lab keeps the only
write end and writes short lines to it:

``g <pgid>``
    a process group the lab started (a native workload, the Wasm host). The watchdog notes
    the leader's start time when it reads the line, so that a reused pid is never killed.
``c``
    the session uses containers: remove the leftovers of dead sessions now (containers whose
    ``edgelab.pid`` is gone or another process), and this session's containers at the end.
``d``
    the lab closed cleanly (it stopped and removed what it knew of).

The pipe reaches EOF when the lab closes it or dies in any way, SIGKILL included. Then the
watchdog SIGKILLs every registered group still alive, removes every container labelled with
this session (by label, so containers whose create call was cut short are found too; retrying
while the engine is slow), and exits. A registration is one ``write`` of a few bytes; Wasm
instances need none (they live in the host process, which is registered).

The watchdog reads its pipe at most every READ_COALESCE_S. Woken by every registration, it
ran on one of these two cores at each native cold start, beside the workload being spawned,
and cost the lab's subprocess cold starts ~50 us (~15%) against a bare posix_spawn loop.
Lines wait in the pipe meanwhile (64 KiB holds thousands), and an EOF is seen at most that
much later. A late read cannot mistake a reused pid: the leader is alive then (and is ours)
or gone (and is skipped); pids are handed out in order, so one reused within 20 ms would need
the whole pid space to wrap around in that time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: How long, after EOF, the watchdog keeps trying to remove the session's containers.
SWEEP_DEADLINE_S = 12.0
#: Docker API timeout of the watchdog's calls, in seconds.
SWEEP_API_TIMEOUT_S = 5.0
#: A container create cut short by the lab's death may land after the first listing: list
#: again this long after removing something (or after an unclean end).
SETTLE_S = 1.0
#: When no engine listens at all (no socket, connection refused), stop trying after this long.
ABSENT_GIVE_UP_S = 2.0
#: The watchdog reads its pipe at most this often (see above).
READ_COALESCE_S = 0.02
#: Prune groups whose leader is gone once this many are registered.
PRUNE_AT = 4096
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent


# =============================================================================================
# The lab's side
# =============================================================================================
class Watchdog:
    """The lab's handle on its watchdog process: cheap, non-blocking registrations."""

    def __init__(self, session_id: str, env: dict[str, str] | None = None) -> None:
        read_fd, write_fd = os.pipe()  # both ends non-inheritable: no workload holds them
        environ = dict(os.environ if env is None else env)
        environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_PACKAGE_ROOT), environ.get("PYTHONPATH", "")) if p
        )
        log = environ.get("EDGELAB_WATCHDOG_LOG")
        try:
            stderr: Any = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
            self.process = subprocess.Popen(
                [sys.executable, "-m", "edgelab.watchdog", session_id],
                stdin=read_fd,
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
        os.set_blocking(write_fd, False)
        self._fd: int | None = write_fd
        self._lock = threading.Lock()
        self._closer = weakref.finalize(self, os.close, write_fd)
        self.containers = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def _send(self, line: bytes) -> None:
        with self._lock:
            if self._fd is None:
                return
            try:
                os.write(self._fd, line)
            except (BlockingIOError, BrokenPipeError, OSError):
                # A full pipe means the watchdog is stuck; a registration is never worth a
                # hang. The workload still gets EOF on stdin when the lab goes.
                pass

    def register_pgid(self, pgid: int) -> None:
        self._send(b"g %d\n" % pgid)

    def uses_containers(self) -> None:
        if not self.containers:
            self.containers = True
            self._send(b"c\n")

    def close(self, clean: bool = True, wait_s: float = 0.0) -> None:
        """EOF to the watchdog: it kills and removes what is left, then exits."""
        if clean:
            self._send(b"d\n")
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is None:
            return
        self._closer.detach()
        os.close(fd)
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


def reap_dead_sessions(session_id: str) -> int:
    """Remove containers of sessions whose owning process is gone; how many were removed."""
    from edgelab.runtimes.container import _remove_all, connect
    from edgelab.session import SESSION_LABEL, owner_alive

    client = connect(SWEEP_API_TIMEOUT_S)
    try:
        dead = [
            c["Id"]
            for c in _containers(client, SESSION_LABEL)
            if (c.get("Labels") or {}).get(SESSION_LABEL) != session_id
            and not owner_alive(c.get("Labels") or {}, c.get("Created"))
        ]
        removed = _remove_all(client, dead)
    finally:
        client.close()
    if dead:
        _log(f"removed {len(dead)} container(s) of dead sessions")
    return removed


def sweep_session(session_id: str, clean: bool, deadline: float) -> int:
    """Remove every container labelled with ``session_id``, retrying until ``deadline``."""
    from edgelab.runtimes.container import _remove_all, connect
    from edgelab.session import SESSION_LABEL

    label = f"{SESSION_LABEL}={session_id}"
    removed = 0
    settle_until = 0.0 if clean else time.monotonic() + SETTLE_S
    client = None
    absent_since = 0.0
    while time.monotonic() < deadline:
        try:
            if client is None:
                client = connect(SWEEP_API_TIMEOUT_S)
            found = [c["Id"] for c in _containers(client, label)]
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
            if _engine_absent(exc):
                absent_since = absent_since or time.monotonic()
                if time.monotonic() - absent_since > ABSENT_GIVE_UP_S:
                    break  # no engine listens at all (a slow one times out instead)
            else:
                absent_since = 0.0
            if client is not None:
                try:
                    client.close()
                except Exception:  # noqa: BLE001
                    pass
                client = None
            time.sleep(0.5)
    if client is not None:
        client.close()
    return removed


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
    sweep: Callable[[str, bool, float], int] = sweep_session,
    reap: Callable[[str], int] = reap_dead_sessions,
    coalesce_s: float = READ_COALESCE_S,
) -> None:
    registry = Registry()
    reaper: threading.Thread | None = None
    containers = False
    clean = False
    pending = b""
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
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        for line in lines:
            kind, _, arg = line.partition(b" ")
            if kind == b"g":
                try:
                    registry.register(int(arg))
                except ValueError:
                    pass
            elif kind == b"c" and not containers:
                containers = True
                reaper = threading.Thread(target=_quietly, args=(reap, session_id), daemon=True)
                reaper.start()
            elif kind == b"d":
                clean = True
    started = time.monotonic()
    killed = registry.kill_all()
    removed = sweep(session_id, clean, started + SWEEP_DEADLINE_S) if containers else 0
    if reaper is not None:  # let a reap of dead sessions that is under way finish
        reaper.join(max(0.0, started + SWEEP_DEADLINE_S - time.monotonic()))
    if killed or removed or not clean:
        _log(
            f"session {session_id} ended ({'cleanly' if clean else 'without closing'}): "
            f"{killed} process group(s) signalled, {removed} container(s) removed "
            f"in {time.monotonic() - started:.2f} s"
        )


def _quietly(job: Callable[[str], int], session_id: str) -> None:
    try:
        job(session_id)
    except Exception as exc:  # noqa: BLE001 - a failed reap is retried by the next lab
        _log(f"reaping dead sessions failed: {type(exc).__name__}: {exc}")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m edgelab.watchdog SESSION_ID  (stdin: the lab's pipe)", file=sys.stderr)
        return 2
    # Only EOF ends the watch: a terminal's or a process group's signals are the lab's.
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)
    read_fd = os.dup(0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    watch(read_fd, args[0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
