"""What boxes a native workload in: a cgroup per instance, a jail, a uid of its own.

``posix_spawn`` cannot change user, start a process in a cgroup or chroot. Where the lab can do
any of that it starts the workload with ``native_spawn.c`` (in-process, through ctypes: clone3
with CLONE_VM | CLONE_VFORK, the steps, exec), else with the launcher (``launcher.c``: its own
posix_spawn, the steps, clone3 into the cgroup, exec). Measured here (2 cores, load ~1.7, hello,
p50 spawn-to-first-byte, interleaved, ``benchmarks/native_spawn_options.py``): posix_spawn
unboxed ~390 us; in-process with cgroup + uid + jail ~550 us (~410 us without the cgroup); the
launcher ~740 us (~500 us without); ``subprocess.Popen(user=...)`` ~2,800 us; ``os.fork`` +
setuid + exec ~2,850 us. Into a cgroup, *moving* a process (a write to cgroup.procs) waits for
an RCU grace period whenever the last move was more than a few ms ago, ~12 ms per launch at one
launch every 50 ms; being born in it (CLONE_INTO_CGROUP) costs ~20 us busy, ~190 us after 20 ms
idle, in a raw loop.

What holds is found out by trying, once per process (``detect``): the launcher, then the
in-process spawn, run every step with an exec that must fail; failing at the exec (125) means
every step before it worked.

- **Containment**: a cgroup v2 directory per instance under ``edgelab-<session>-<pid>-<n>`` beside the
  lab's own cgroup. Every process the instance starts is in it, setsid or not; stop writes
  ``cgroup.kill`` and waits until it is empty. Where no cgroup can be made (not root, no
  cgroup2, read-only, Linux < 5.14), the lab's child subreaper and a sweep on stop: the process
  group, the workload's descendants, every process of the instance's uid (when dropped), and
  the lab's own orphaned children running the workload's binary.
- **Privileges** (root only): uid and gid ``NATIVE_UID_BASE + pid`` (one per instance, no passwd
  entry, no home, no supplementary groups), ``PR_SET_NO_NEW_PRIVS``, and ``chroot`` into a
  jail: a root-owned directory of mode 0111 holding a hard link of the workload's binary and
  nothing else (no /proc, no /etc, no Docker socket, no /tmp). The environment is empty.
  (A person's own command gets the uid, no_new_privs and limits but no jail, and its --env:
  ``edgelab.runtimes.subprocess.command``.)
  When the lab is not root, native workloads have the user's rights, and doctor and the
  probe say so.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

#: Native workloads run as uid/gid NATIVE_UID_BASE + the pid of the instance (pids < 2**22).
NATIVE_UID_BASE = 1_610_612_736  # 0x60000000: far above any passwd or subuid range in use
#: The launcher's exit codes (launcher.c) and what each means.
LAUNCHER_EXITS = {
    120: "the launcher was called wrongly",
    121: "the launcher could not start the workload in the instance's cgroup",
    122: "the launcher could not chroot into the workload's jail",
    123: "the launcher could not drop privileges",
    124: "the launcher could not set no_new_privs",
    125: "the launcher could not exec the workload",
    126: "the launcher could not set the memory limit",
}
#: How long stop waits for a killed cgroup to empty before leaving it for close.
CGROUP_EMPTY_S = 2.0


@dataclass(frozen=True)
class Isolation:
    """How native workloads run here, found by ``detect``."""

    launcher: Path | None  #: None: posix_spawn the workload itself (unless spawn_lib)
    cgroup_root: Path | None  #: where session cgroups are made; None: subreaper and sweep
    drop_uid: bool  #: a uid of its own per instance, chroot into a jail, no_new_privs
    containment: str  #: in words, for doctor
    privileges: str  #: in words, for doctor
    #: The in-process spawn library (native_spawn.c): preferred over the launcher where it
    #: loads and passes the same trial (one exec, no launcher process).
    spawn_lib: Path | None = None

    @property
    def spawn_path(self) -> str:
        """How a native instance is started here, in words."""
        if self.spawn_lib is not None:
            return "in-process clone3(CLONE_VM|CLONE_VFORK) + steps + exec (native_spawn.c, via ctypes)"
        if self.launcher is not None:
            return "posix_spawn of the launcher (launcher.c): steps, clone3 into the cgroup, exec"
        return "posix_spawn of the workload"


class SpawnFailed(OSError):
    """A step of the in-process spawn failed: ``step`` (a LAUNCHER_EXITS code) and errno."""

    def __init__(self, step: int, error: int) -> None:
        super().__init__(error, os.strerror(error) if error else "failed")
        self.step = step

    def __str__(self) -> str:
        what = LAUNCHER_EXITS.get(self.step, f"step {self.step}").replace("the launcher ", "the spawn ")
        return f"{what}: {self.strerror}"


class NativeSpawner:
    """The in-process spawn (``native_spawn.c``) through ctypes: posix_spawn's clone with the
    steps posix_spawn lacks. One object per library path (``native_spawner``)."""

    def __init__(self, library: Path) -> None:
        import ctypes

        class Request(ctypes.Structure):
            _fields_ = [
                ("fds", ctypes.c_int * 3),
                ("cgroup_fd", ctypes.c_int),
                ("jail", ctypes.c_char_p),
                ("exe", ctypes.c_char_p),
                ("argv", ctypes.POINTER(ctypes.c_char_p)),
                ("uid_base", ctypes.c_ulong),
                ("as_limit", ctypes.c_ulong),
                ("parent_mask", ctypes.c_ulong),
                ("failed_step", ctypes.c_int),
                ("error", ctypes.c_int),
                ("child_ns", ctypes.c_ulong),
                ("exec_ns", ctypes.c_ulong),
                ("envp", ctypes.POINTER(ctypes.c_char_p)),
                ("nproc_limit", ctypes.c_ulong),
            ]

        self._ctypes = ctypes
        self._request = Request
        self._lib = ctypes.CDLL(str(library))
        self._lib.el_spawn.argtypes = [ctypes.POINTER(Request)]
        self._lib.el_spawn.restype = ctypes.c_long

    def spawn(
        self,
        fds: tuple[int, int, int],
        exe: str,
        argv0: str,
        cgroup: Path | None = None,
        jail: Path | None = None,
        uid_base: int = 0,
        as_limit: int = 0,
        steps_ns: list[tuple[int, int]] | None = None,
        args: Sequence[str] = (),
        env: Sequence[str] | None = None,
        nproc_limit: int = 0,
    ) -> int:
        """Start ``exe`` (a path inside ``jail`` if given) with fds 0-2, an empty environment
        and its own process group, born in ``cgroup``; returns its pid (raises SpawnFailed).
        ``steps_ns`` gets (start, end) of the child's steps before its exec (chroot, uid drop,
        no_new_privs, limits), by CLOCK_MONOTONIC, the clock of ``time.perf_counter_ns``.
        A person's command (``edgelab.runtimes.subprocess.command``) also passes its ``args``
        after ``argv0``, its environment (``env``: "K=V" strings; None: empty) and a
        RLIMIT_NPROC (``nproc_limit``; 0: none), which the built-in workloads leave out."""
        ctypes = self._ctypes
        if args:
            argv = (ctypes.c_char_p * (len(args) + 2))(argv0.encode(), *(a.encode() for a in args), None)
        else:
            argv = (ctypes.c_char_p * 2)(argv0.encode(), None)
        envp = (ctypes.c_char_p * (len(env) + 1))(*(e.encode() for e in env), None) if env is not None else None
        cgroup_fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) if cgroup is not None else -1
        try:
            request = self._request(
                (ctypes.c_int * 3)(*fds), cgroup_fd, str(jail).encode() if jail is not None else None,
                exe.encode(), argv, uid_base, as_limit, 0, 0, 0, 0, 0, envp, nproc_limit,
            )  # fmt: skip
            pid = int(self._lib.el_spawn(ctypes.byref(request)))
            if steps_ns is not None and pid > 0:
                steps_ns.append((int(request.child_ns), int(request.exec_ns)))
        finally:
            if cgroup_fd >= 0:
                os.close(cgroup_fd)
        if pid < 0:
            raise SpawnFailed(request.failed_step, request.error or (-pid if pid < -1 else 0))
        return pid


@lru_cache(maxsize=4)
def native_spawner(library: Path) -> NativeSpawner:
    return NativeSpawner(library)


def _spawn_trial(library: Path, cgroup: Path | None, uid: bool, jail: Path | None) -> int:
    """The in-process spawn with these steps and an exec that cannot succeed: the failed step
    (125, the exec, means every step before it worked)."""
    try:
        native_spawner(library).spawn((0, 1, 2), "/nonexistent", "trial", cgroup, jail, NATIVE_UID_BASE if uid else 0, 1 << 30)
    except SpawnFailed as exc:
        return exc.step
    except OSError:
        return -1
    return 0


def _cgroup2_dir() -> tuple[Path | None, str]:
    """This process's own cgroup v2 directory, or (None, why not)."""
    mount = None
    with contextlib.suppress(OSError), open("/proc/self/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) > 2 and fields[2] == "cgroup2":
                mount = Path(fields[1])
                break
    if mount is None:
        return None, "no cgroup2 file system is mounted"
    own = None
    with contextlib.suppress(OSError), open("/proc/self/cgroup") as groups:
        for line in groups:
            if line.startswith("0::"):
                own = line[3:].strip()
    if own is None:
        return None, "this process is in no cgroup v2"
    directory = mount / own.lstrip("/")
    if not os.access(directory, os.W_OK):
        return None, f"{directory} is not writable by this user"
    return directory, ""


def _trial(launcher: Path, cgroup: str, uid: bool, jail: str) -> int:
    """Run the launcher with these steps and an exec that cannot succeed; the exit code of the
    process that tried the exec (the launcher's own, or the child it started in ``cgroup``)."""
    argv = [launcher.name, cgroup, str(NATIVE_UID_BASE) if uid else "-", jail, str(1 << 30), "/nonexistent", "trial"]
    report_r, report_w = os.pipe()
    try:
        pid = os.posix_spawn(str(launcher), argv, {}, file_actions=[(os.POSIX_SPAWN_DUP2, report_w, 3)])
        os.close(report_w)
        report_w = -1
        code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        started = os.read(report_r, 4)
        if code == 0 and len(started) == 4:  # the workload's own process, started in the cgroup
            code = os.waitstatus_to_exitcode(os.waitpid(int.from_bytes(started, sys.byteorder), 0)[1])
        return code
    finally:
        os.close(report_r)
        if report_w >= 0:
            os.close(report_w)


@lru_cache(maxsize=1)
def detect() -> Isolation:
    """Find out, by trying, which containment and privilege drop work here (once)."""
    from edgelab.build import ensure_launcher
    from edgelab.errors import ArtifactError

    root = os.geteuid() == 0
    user = f"uid {os.geteuid()}"
    launcher: Path | None
    try:
        launcher = ensure_launcher()
    except ArtifactError as exc:
        rights = "the lab's own rights" + (" (root!)" if root else f" ({user})")
        return Isolation(None, None, False, f"process group + subreaper + sweep (no launcher: {exc})",
                         f"native workloads have {rights}: the launcher could not be built")  # fmt: skip
    cgroup_root, why_not = _cgroup2_dir()
    uid_ok = False
    if root:
        jail = str(empty_jail())
        uid_ok = _trial(launcher, "-", True, jail) == 125
    if cgroup_root is not None:
        try:
            trial_dir = Path(tempfile.mkdtemp(prefix="edgelab-trial-", dir=cgroup_root))
        except OSError as exc:
            cgroup_root, why_not = None, f"cannot make a cgroup in {cgroup_root}: {exc.strerror or exc}"
        else:
            try:
                has_kill = (trial_dir / "cgroup.kill").exists()
                code = _trial(launcher, str(trial_dir), False, "-") if has_kill else 0
            finally:
                with contextlib.suppress(OSError):
                    trial_dir.rmdir()
            if not has_kill:
                cgroup_root, why_not = None, "cgroups have no cgroup.kill here (Linux < 5.14)"
            elif code != 125:  # clone3 into a cgroup: Linux >= 5.7
                cgroup_root, why_not = None, f"cannot start a process in a cgroup ({LAUNCHER_EXITS.get(code, code)})"
    if cgroup_root is not None:
        containment = f"cgroup v2 per instance under {cgroup_root}/edgelab-<session>-… (cgroup.kill on stop)"
    else:
        containment = f"process group + subreaper + sweep on stop ({why_not})"
    if uid_ok:
        privileges = (f"uid/gid {NATIVE_UID_BASE}+pid per instance, no groups, no_new_privs, chroot into a "
                      "jail holding only the binary, empty environment")  # fmt: skip
    elif root:
        privileges = "ROOT: the lab is root but could not drop privileges (setuid/chroot failed)"
    else:
        privileges = f"the user's own rights ({user}): the lab is not root, so it cannot drop them"
    boxes = cgroup_root is not None or uid_ok  # else the launcher would add an exec and box nothing
    return Isolation(launcher if boxes else None, cgroup_root, uid_ok, containment, privileges,
                     _spawn_lib(cgroup_root, uid_ok) if boxes else None)  # fmt: skip


def _spawn_lib(cgroup_root: Path | None, uid_ok: bool) -> Path | None:
    """The in-process spawn library, if it builds, loads and does every step the launcher did."""
    from edgelab.build import ensure_native_spawn
    from edgelab.errors import ArtifactError

    try:
        library = ensure_native_spawn()
        native_spawner(library)
    except (ArtifactError, OSError):
        return None
    trial_dir = None
    try:
        if cgroup_root is not None:
            trial_dir = Path(tempfile.mkdtemp(prefix="edgelab-trial-", dir=cgroup_root))
        step = _spawn_trial(library, trial_dir, uid_ok, empty_jail() if uid_ok else None)
    except OSError:
        return None
    finally:
        if trial_dir is not None:
            with contextlib.suppress(OSError):
                trial_dir.rmdir()
    return library if step == 125 else None


# -- jails ------------------------------------------------------------------------------------
def _jails_dir() -> Path:
    from edgelab.build import cache_dir

    return cache_dir() / "jail"


def _publish_dir(final: Path, fill: Callable[[Path], None]) -> Path:
    """Make directory ``final`` (mode 0111) atomically: filled in a temp dir, then renamed."""
    final.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".jail-", dir=final.parent))
    try:
        fill(scratch)
        scratch.chmod(0o111)
        try:
            os.rename(scratch, final)
        except OSError:  # another lab made it first (or a stale one is there: the caller checks)
            shutil.rmtree(scratch, ignore_errors=True)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return final


def empty_jail() -> Path:
    """A jail with nothing in it (for the trial launch)."""
    final = _jails_dir() / ".empty"
    return final if final.is_dir() else _publish_dir(final, lambda d: None)


def _same_file(inside: Path, outside: Path) -> bool:
    try:
        return os.path.samefile(inside, outside) or inside.read_bytes() == outside.read_bytes()
    except OSError:
        return False


def _holds(jail: Path, binary: Path, libraries: Sequence[Path] = ()) -> bool:
    return _same_file(jail / binary.name, binary) and all(
        _same_file(jail / library.relative_to("/"), library) for library in libraries
    )


def ensure_jail(binary: Path, name: str | None = None, libraries: Sequence[Path] = ()) -> Path:
    """The jail of ``binary``: a root-owned directory, mode 0111 (enter, not list), holding a
    hard link (or copy) of it and nothing else but ``libraries`` (absolute paths: a dynamic
    binary's loader and libc, copied to the same paths inside, read-only, in directories of
    mode 0111). Made once per artifact (``name``: the artifact directory's, else its own, so
    two builds of one workload never share a jail); remade if stale."""
    final = _jails_dir() / (name or binary.parent.name)
    if _holds(final, binary, libraries):
        return final
    if final.exists():
        shutil.rmtree(final, ignore_errors=True)

    def fill(directory: Path) -> None:
        try:
            os.link(binary, directory / binary.name)
        except OSError:
            shutil.copy2(binary, directory / binary.name)
        made: list[Path] = []
        for library in libraries:
            inside = directory / library.relative_to("/")
            for parent in reversed(inside.relative_to(directory).parents[:-1]):
                if not (directory / parent).is_dir():
                    (directory / parent).mkdir()
                    made.append(directory / parent)
            shutil.copyfile(library, inside)  # the file itself, never a symlink out of the jail
            inside.chmod(0o555)
        for folder in reversed(made):
            folder.chmod(0o111)

    _publish_dir(final, fill)
    if not _holds(final, binary, libraries):
        from edgelab.errors import ArtifactError

        raise ArtifactError(f"cannot make the jail {final} for {binary.name}")
    return final


def dynamic_libraries(binary: Path, timeout_s: float = 10.0) -> list[Path]:
    """What a dynamically linked ``binary`` loads, as its loader lists it: the loader itself
    (its PT_INTERP path) and each library's resolved path. Raises ArtifactError with the
    reason when the loader is missing or cannot list it (not glibc's ld.so)."""
    import subprocess

    from edgelab.errors import ArtifactError

    interpreter = elf_interpreter(binary)
    if interpreter is None:
        raise ArtifactError(f"{binary.name} is not dynamically linked (no PT_INTERP)")
    if not os.access(interpreter, os.X_OK):
        raise ArtifactError(f"no dynamic loader at {interpreter}")
    try:
        done = subprocess.run([str(interpreter), "--list", str(binary)], capture_output=True,
                              text=True, timeout=timeout_s, env={}, check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ArtifactError(f"{interpreter} --list {binary.name} failed: {exc}") from None
    if done.returncode != 0:
        raise ArtifactError(f"{interpreter} cannot list {binary.name}: {(done.stderr or done.stdout).strip()[:200]}")
    found = [interpreter]
    for line in done.stdout.splitlines():
        path = line.partition("=>")[2].strip().partition(" (")[0] if "=>" in line else ""
        if path.startswith("/"):
            found.append(Path(path))
        elif "=>" in line and "vdso" not in line:
            raise ArtifactError(f"{binary.name}: the loader found no {line.split()[0]}")
    return found


def elf_interpreter(binary: Path) -> Path | None:
    """The PT_INTERP path of a 64-bit little-endian ELF file, None for a static one."""
    import struct

    with open(binary, "rb") as file:
        header = file.read(64)
        if header[:6] != b"\x7fELF\x02\x01":
            return None
        phoff, = struct.unpack_from("<Q", header, 32)
        phentsize, phnum = struct.unpack_from("<HH", header, 54)
        for index in range(phnum):
            file.seek(phoff + index * phentsize)
            kind, _, offset, _, _, size = struct.unpack("<IIQQQQ", file.read(40))
            if kind == 3:  # PT_INTERP
                file.seek(offset)
                return Path(file.read(size).rstrip(b"\0").decode())
    return None


# -- cgroups ----------------------------------------------------------------------------------
def _populated(cgroup: Path) -> bool:
    try:
        return "populated 1" in (cgroup / "cgroup.events").read_text()
    except OSError:
        return False


def _remove_tree(cgroup: Path) -> None:
    """rmdir an (empty) cgroup and its children, deepest first."""
    for child in sorted((p for p in cgroup.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        with contextlib.suppress(OSError):
            child.rmdir()
    with contextlib.suppress(OSError):
        cgroup.rmdir()


def kill_cgroup(cgroup: Path, wait_s: float = CGROUP_EMPTY_S) -> list[int]:
    """SIGKILL every process in ``cgroup`` and its children; wait until it is empty. Returns
    pidfds of the processes that were in it (opened before the kill: never a reused pid),
    for the caller to reap."""
    pidfds: list[int] = []
    with contextlib.suppress(OSError):
        for pid in (cgroup / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError):
                pidfds.append(os.pidfd_open(int(pid)))
    with contextlib.suppress(OSError):
        (cgroup / "cgroup.kill").write_text("1")
    end = time.monotonic() + wait_s
    while _populated(cgroup) and time.monotonic() < end:
        time.sleep(0.001)
    return pidfds


def reap_pidfds(pidfds: list[int], wait_s: float) -> None:
    """Reap the processes behind ``pidfds`` as they become this process's children (the lab is
    their subreaper); a process reaped by its own parent is simply gone. Closes the fds."""
    pending = list(pidfds)
    end = time.monotonic() + wait_s
    while pending:
        for fd in list(pending):
            try:
                if os.waitid(os.P_PIDFD, fd, os.WEXITED | os.WNOHANG) is None:
                    continue  # alive still (killed: it will not be for long)
            except ChildProcessError:  # not (yet) ours: gone, or its parent is still dying
                try:
                    signal.pidfd_send_signal(fd, 0)
                    continue
                except ProcessLookupError:
                    pass
                except OSError:
                    continue
            except OSError:
                pass
            pending.remove(fd)
            os.close(fd)
        if not pending or time.monotonic() > end:
            break
        time.sleep(0.001)
    for fd in pending:
        os.close(fd)


def _locks_dir() -> Path:
    from edgelab.build import cache_dir

    return cache_dir() / "cgroups"


_OWNERS = itertools.count(1)


def _try_lock(path: Path) -> int | None:
    """An fd holding an exclusive flock on ``path``, or None when another process holds it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


class SessionCgroups:
    """``edgelab-<session>-<pid>-<n>`` under the lab's cgroup, one child per live instance, removed at
    its stop. Never reused: once killed (cgroup.kill), a cgroup SIGKILLs every process later
    *born* in it with CLONE_INTO_CGROUP (Linux 6.18 here, measured), so a killed cgroup is
    spent. One fresh cgroup is made ahead (``make_spare``, after a launch's first response):
    a mkdir costs 50-220 us here (more after idle), which a cold start need not wait for.

    Liveness is a lock, not a pid: the owning process holds an flock on
    ``<cache>/cgroups/<session>-<pid>-<n>.lock`` for as long as its cgroups exist (a pid from another
    PID namespace would look dead). A lab that can take another session's lock knows that
    session is gone and kills and removes its cgroups (what a SIGKILLed lab left, setsid'd
    descendants included); a cgroup with no lock file is someone else's and left alone."""

    def __init__(self, root: Path, session_id: str) -> None:
        # one directory (and lock) per runtime object: two runtimes of one session never share
        owner = f"{session_id}-{os.getpid()}-{next(_OWNERS)}"
        self.directory = root / f"edgelab-{owner}"
        self._root = root
        self._lock_path = _locks_dir() / f"{owner}.lock"
        self._lock_fd: int | None = None
        self._spare: Path | None = None
        self._count = 0
        self._lock = threading.Lock()

    def _make(self) -> None:
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _try_lock(self._lock_path)
        if self._lock_fd is None:
            raise OSError(f"cannot lock {self._lock_path}")
        self.directory.mkdir(exist_ok=True)
        remove_dead_sessions(self._root, keep=self.directory)

    def take(self) -> Path:
        """A fresh cgroup for one new instance: the one made ahead, else a new one."""
        with self._lock:
            spare, self._spare = self._spare, None
        return spare if spare is not None else self._new()

    def _new(self) -> Path:
        with self._lock:
            if self._lock_fd is None:
                self._make()
            self._count += 1
            cgroup = self.directory / f"i{self._count}"
        cgroup.mkdir()
        return cgroup

    def make_spare(self) -> None:
        """Make the next launch's cgroup now, if none is ready (never fails a launch)."""
        if self._spare is not None or self._lock_fd is None:
            return
        try:
            cgroup = self._new()
        except OSError:
            return
        with self._lock:
            keep = self._spare is None and self._lock_fd is not None
            if keep:
                self._spare = cgroup
        if not keep:
            with contextlib.suppress(OSError):
                cgroup.rmdir()

    def release(self, cgroup: Path) -> None:
        """Remove an instance's cgroup (emptied by its stop; one that is not stays for close)."""
        with contextlib.suppress(OSError):
            cgroup.rmdir()

    def close(self) -> None:
        """Kill whatever is left in the session's cgroups and remove them all."""
        with self._lock:
            lock_fd, self._lock_fd = self._lock_fd, None
            self._spare = None
        if lock_fd is None:
            return
        if self.directory.exists():
            reap_pidfds(kill_cgroup(self.directory), 1.0)
            _remove_tree(self.directory)
        with contextlib.suppress(OSError):
            self._lock_path.unlink()
        os.close(lock_fd)


def remove_dead_sessions(root: Path, keep: Path | None = None) -> int:
    """Kill and remove the cgroups of sessions whose lock nobody holds; returns how many."""
    removed = 0
    for directory in root.glob("edgelab-*"):
        session_id = directory.name.removeprefix("edgelab-")
        lock_path = _locks_dir() / f"{session_id}.lock"
        if directory == keep or not lock_path.exists():
            continue
        fd = _try_lock(lock_path)
        if fd is None:
            continue  # alive
        try:
            for pidfd in kill_cgroup(directory):
                os.close(pidfd)  # not ours to reap: their parents or init do
            _remove_tree(directory)
            with contextlib.suppress(OSError):
                lock_path.unlink()
            removed += 1
        finally:
            os.close(fd)
    return removed


# -- the sweep, where there is no cgroup ------------------------------------------------------
def sweep(pid: int, uid: int | None, binary: Path | None = None, spare: frozenset[int] = frozenset()) -> list[int]:
    """Kill what an instance left outside its process group, where no cgroup holds it: its
    descendants; every process of its own uid (when it has one, that finds everything); and,
    without one, this process's own children running ``binary`` that are not live instances
    (``spare``): an escaped process whose parent died is reparented to the lab (its subreaper),
    and without a uid or a cgroup it cannot be told from a sibling instance's. Returns pidfds
    to reap."""
    import psutil

    found: set[int] = set()
    with contextlib.suppress(psutil.Error):
        found.update(child.pid for child in psutil.Process(pid).children(recursive=True))
    if uid is not None:
        for process in psutil.process_iter(["uids"]):
            uids = process.info["uids"]
            if uids is not None and uid in (uids.real, uids.effective):
                found.add(process.pid)
    elif binary is not None:
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process().children():
                with contextlib.suppress(psutil.Error, OSError):
                    if child.pid not in spare and Path(child.exe()) == binary:
                        found.add(child.pid)
    pidfds = []
    for member in found - {pid}:
        with contextlib.suppress(OSError):
            fd = os.pidfd_open(member)
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(fd, signal.SIGKILL)
            pidfds.append(fd)
    return pidfds


def describe_launcher_exit(code: int) -> str | None:
    """What a launcher exit code means, or None for a code the launcher does not use."""
    return LAUNCHER_EXITS.get(code)


__all__ = [
    "NATIVE_UID_BASE",
    "Isolation",
    "SessionCgroups",
    "describe_launcher_exit",
    "detect",
    "dynamic_libraries",
    "elf_interpreter",
    "ensure_jail",
    "kill_cgroup",
    "reap_pidfds",
    "sweep",
]
