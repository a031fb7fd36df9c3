"""Nothing outlives the lab: SIGKILL, SIGTERM, SIGHUP, SIGINT mid-ramp, and dead sessions' leftovers.

The lab runs as ``python -m edgelab run`` in a session of its own (so its workload processes,
which it spawns in process groups of their own but in its session, can be found by session id),
ramping Wasm, native and container instances at once. After the signal: no container labelled
with its session, no process of its session, and neither its Wasm host nor its watchdog remain.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from edgelab.session import OWNER_PID_LABEL, SESSION_LABEL, Session

pytestmark = pytest.mark.usefixtures("docker_client")


@pytest.fixture(autouse=True)
def _reap_killed_labs_workloads() -> Iterator[None]:
    """A lab killed here leaves its native instances, once its watchdog has killed them,
    re-parented to this test process (a lab made in it earlier set it as the child
    subreaper), where they stand as zombies until reaped: reap those native workloads (dead
    already, so no runtime of this process waits for them), lest later tests count them."""
    yield
    for process in psutil.Process().children():
        try:
            name = process.name()
            if process.status() == psutil.STATUS_ZOMBIE and ("-x86_64" in name or "-aarch64" in name):
                os.waitpid(process.pid, os.WNOHANG)
        except (psutil.Error, ChildProcessError):
            continue

RAMP = ["--scenario", "ramp", "--resident", "wasm=3000,subprocess=30,container=20"]
#: Wasm first, then native, then containers: at 10 containers all three kinds are live.
RUNTIMES = ["-r", "wasm,subprocess,container"]
CONTAINERS_UNDER_WAY = 10
RAMP_WAIT_S = 180.0
KILL_CLEANUP_S = 15.0
CLEAN_EXIT_S = 5.0


# -- helpers ----------------------------------------------------------------------------------
def _session_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return int(data[data.rindex(b")") + 2 :].split()[3])
    except (OSError, ValueError, IndexError):
        return None


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def processes_in_session(sid: int) -> list[psutil.Process]:
    """Live (non-zombie) processes whose session id is ``sid``."""
    found = []
    for pid in psutil.pids():
        if _session_of(pid) == sid:
            try:
                process = psutil.Process(pid)
            except psutil.NoSuchProcess:
                continue
            if _alive(process):
                found.append(process)
    return found


def labelled(client: Any, owner_pid: int) -> list[dict[str, Any]]:
    return list(client.api.containers(all=True, filters={"label": f"{OWNER_PID_LABEL}={owner_pid}"}))


class RunningLab:
    """``edgelab run`` ramping in its own session; its helpers noted while it runs."""

    def __init__(self, tmp_path: Path, client: Any) -> None:
        self.client = client
        self.out = tmp_path / "lab.out"
        self.watchdog_log = tmp_path / "watchdog.log"
        with self.out.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "edgelab", "run", "-w", "hello", *RAMP, *RUNTIMES],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "EDGELAB_WATCHDOG_LOG": str(self.watchdog_log)},
            )
        self.pid = self.process.pid
        self.helpers: dict[int, psutil.Process] = {}  # wasm host, watchdog (own sessions)
        self.session_id = ""

    def wait_until_under_way(self) -> None:
        deadline = time.monotonic() + RAMP_WAIT_S
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"lab exited early: {self.out.read_text()}"
            self._note_helpers()
            containers = labelled(self.client, self.pid)
            if len(containers) >= CONTAINERS_UNDER_WAY:
                self.session_id = containers[0]["Labels"][SESSION_LABEL]
                workloads = processes_in_session(self.pid)
                # the lab itself + 30 native workloads
                assert len(workloads) >= 31, [p.name() for p in workloads]
                assert len(self.helpers) >= 2, "wasm host and watchdog not seen"
                return
            time.sleep(0.2)
        pytest.fail(f"the ramp did not get under way in {RAMP_WAIT_S:g} s: {self.out.read_text()}")

    def _note_helpers(self) -> None:
        try:
            for child in psutil.Process(self.pid).children(recursive=True):
                if _session_of(child.pid) != self.pid:
                    self.helpers.setdefault(child.pid, child)
        except psutil.NoSuchProcess:
            pass

    def leftovers(self) -> tuple[list[str], list[str], list[str]]:
        containers = [c["Id"][:12] for c in labelled(self.client, self.pid)]
        workloads = [f"{p.pid} {p.name()}" for p in processes_in_session(self.pid)]
        helpers = [f"{p.pid} {' '.join(p.cmdline()[1:4])}" for p in self.helpers.values() if _alive(p)]
        return containers, workloads, helpers

    def wait_nothing_left(self, within_s: float) -> float:
        started = time.monotonic()
        while True:
            left = self.leftovers()
            if not any(left):
                return time.monotonic() - started
            if time.monotonic() - started > within_s:
                log = self.watchdog_log.read_text() if self.watchdog_log.exists() else ""
                pytest.fail(f"left after {within_s:g} s: containers, processes, helpers = {left}; watchdog log: {log}")
            time.sleep(0.1)

    def force_cleanup(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for process in [*processes_in_session(self.pid), *self.helpers.values()]:
            try:
                process.kill()
            except psutil.Error:
                pass
        from edgelab.runtimes.container import _remove_all

        _remove_all(self.client, [c["Id"] for c in labelled(self.client, self.pid)])


@pytest.fixture
def lab(tmp_path: Path, docker_client: Any) -> Iterator[RunningLab]:
    running = RunningLab(tmp_path, docker_client)
    try:
        yield running
    finally:
        running.force_cleanup()


# -- SIGKILL: the watchdog removes everything ---------------------------------------------------
def test_sigkill_mid_ramp_leaves_nothing_within_15_s(lab: RunningLab) -> None:
    from edgelab.watchdog import heartbeat_volumes

    lab.wait_until_under_way()
    assert heartbeat_volumes(lab.client, lab.session_id), "the session keeps no heartbeat for other hosts"
    lab.process.send_signal(signal.SIGKILL)
    lab.process.wait()
    took = lab.wait_nothing_left(KILL_CLEANUP_S)
    deadline = time.monotonic() + 5  # the heartbeat goes right after the sweep
    while heartbeat_volumes(lab.client, lab.session_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert heartbeat_volumes(lab.client, lab.session_id) == []
    print(f"everything gone {took:.2f} s after SIGKILL")
    log = lab.watchdog_log.read_text()
    assert "without closing" in log and "container(s) removed" in log, log
    from edgelab.session import lock_is_held, lock_path

    assert not lock_is_held(lab.session_id) and not lock_path(lab.session_id).exists()


# -- SIGTERM / SIGHUP / SIGINT: a clean exit within 5 s -----------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=["SIGTERM", "SIGHUP", "SIGINT"])
def test_signal_mid_ramp_exits_cleanly_within_5_s(lab: RunningLab, sig: signal.Signals) -> None:
    lab.wait_until_under_way()
    sent = time.monotonic()
    lab.process.send_signal(sig)
    try:
        code = lab.process.wait(timeout=CLEAN_EXIT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"edgelab run did not exit within {CLEAN_EXIT_S:g} s of {sig.name}")
    took = time.monotonic() - sent
    output = lab.out.read_text()
    assert code == 130, output
    assert "Traceback" not in output, output
    assert output.strip().splitlines()[-1].startswith("edgelab: interrupted"), output
    # The lab removed its containers and processes itself; its watchdog exits right after.
    containers, workloads, _ = lab.leftovers()
    assert containers == [] and workloads == [], (containers, workloads)
    lab.wait_nothing_left(2.0)
    print(f"{sig.name}: exited in {took:.2f} s")


# -- a stubborn workload: the watchdog kills what ignores EOF -----------------------------------
STUBBORN_LAB = r"""
import os, signal, sys
from edgelab.watchdog import Watchdog

watchdog = Watchdog("stubborn-test")
pids = []
for _ in range(3):
    # ignores SIGHUP/SIGTERM and never reads stdin: only SIGKILL ends it
    pid = os.posix_spawn(sys.executable, [sys.executable, "-c",
        "import signal, time\nfor s in (signal.SIGHUP, signal.SIGTERM):\n signal.signal(s, signal.SIG_IGN)\ntime.sleep(600)"],
        os.environ, setpgroup=0)
    watchdog.register_pgid(pid)
    pids.append(pid)
print(" ".join(map(str, [watchdog.pid, *pids])), flush=True)
sys.stdin.read()
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_watchdog_kills_registered_groups_that_ignore_eof() -> None:
    lab = subprocess.Popen(
        [sys.executable, "-c", STUBBORN_LAB], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert lab.stdout is not None and lab.stdin is not None
    watchdog_pid, *pids = map(int, lab.stdout.readline().split())
    processes = [psutil.Process(pid) for pid in (watchdog_pid, *pids)]
    time.sleep(0.3)
    assert all(_alive(p) for p in processes)
    lab.stdin.close()  # the "lab" kills itself with SIGKILL
    lab.wait(timeout=10)
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in processes) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [p.pid for p in processes if _alive(p)]
    for p in processes:
        if _alive(p):
            p.kill()
    assert left == []


def test_watchdog_never_kills_a_reused_pid() -> None:
    from edgelab.watchdog import Registry

    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        registry = Registry()
        registry.register(bystander.pid)
        registry.groups[bystander.pid] -= 1  # as if the registered leader had another start time
        registry.register(999_999_999)  # no such process: not recorded
        assert list(registry.groups) == [bystander.pid]
        assert registry.kill_all() == 0
        time.sleep(0.1)
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


STUBBORN_CHILD = "import signal, time\nfor s in (signal.SIGHUP, signal.SIGTERM):\n signal.signal(s, signal.SIG_IGN)\ntime.sleep(600)"


def test_a_garbled_frame_costs_the_watchdog_only_itself() -> None:
    """The watchdog reads edgelab.ipc frames; one that does not unpickle (or is no watchdog
    message) is dropped alone: the groups registered before and after it still die when the
    lab's end of the pipe closes (the lab died: no ClosedCleanly)."""
    from edgelab.ipc import Ok, encode
    from edgelab.watchdog import Watchdog

    watchdog = Watchdog("garbled-frame-test")
    children = [
        subprocess.Popen([sys.executable, "-c", STUBBORN_CHILD], start_new_session=True) for _ in range(2)
    ]
    try:
        channel = watchdog._channel
        assert channel is not None
        watchdog.register_pgid(children[0].pid)
        channel.send_raw(b"\x06\x00\x00\x00junk!!")  # a whole frame, not a pickle
        channel.send_raw(encode(Ok("not a watchdog message")))
        watchdog.register_pgid(children[1].pid)
        time.sleep(0.3)
        assert all(child.poll() is None for child in children)
        with watchdog._lock:  # the lab dies: its end closes without a ClosedCleanly
            watchdog._channel = None
        watchdog._closer.detach()
        channel.close()
        for child in children:
            assert child.wait(10) == -signal.SIGKILL
        watchdog.process.wait(10)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()


def test_watchdog_registrations_are_frames_the_pipe_takes_whole() -> None:
    """A registration is one non-blocking write: under PIPE_BUF, so never half a frame."""
    import select

    from edgelab.ipc import encode, take_frames
    from edgelab.watchdog import Cgroup, ClosedCleanly, CreatesContainers, Group, UsesContainers

    messages = [Group(4_194_304), Cgroup("/sys/fs/cgroup/edgelab/" + "s" * 200), UsesContainers(), CreatesContainers(), ClosedCleanly()]
    frames = [encode(m) for m in messages]
    assert max(len(f) for f in frames) < select.PIPE_BUF
    assert take_frames(bytearray(b"".join(frames))) == messages
    # A group's frame is patched from a template (it is sent inside every native cold
    # start): for every pid, the frame unpickles to that Group, as a full encode would.
    from edgelab.watchdog import _group_frame

    pids = [0, 1, 255, 256, 65_535, 65_536, 4_194_304, 2**31 - 1, 2**31, 2**40]
    assert take_frames(bytearray(b"".join(_group_frame(pid) for pid in pids))) == [Group(pid) for pid in pids]
    assert _group_frame.__qualname__.endswith("frame")  # the patched path, not the fallback


# -- leftovers of dead sessions are removed when a lab starts; live sessions' never -------------
DEAD_LAB = r"""
import os, signal, sys
from edgelab.runtimes.container import ContainerRuntime, connect
from edgelab.workloads import get_workload
from edgelab.session import Session

hello = get_workload("hello")
runtime = ContainerRuntime(Session(), connect())
runtime.prepare(hello)
ids = [runtime._create(hello, runtime.image_tag(hello))[0] for _ in range(2)]
print(" ".join([runtime.session.id, *ids]), flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # no watchdog, no cleanup: only its lock goes with it
"""


def _existing(client: Any) -> set[str]:
    return {c["Id"] for c in client.api.containers(all=True, filters={"label": SESSION_LABEL})}


def test_lab_start_removes_leftovers_of_dead_sessions(docker_client: Any) -> None:
    from edgelab.runtimes.container import ContainerRuntime, _remove_all
    from edgelab.session import lock_is_held
    from edgelab.workloads import get_workload

    hello = get_workload("hello")
    dead = subprocess.run([sys.executable, "-c", DEAD_LAB], capture_output=True, timeout=120)
    dead_session, *dead_ids = dead.stdout.decode().split()
    assert dead_ids, dead.stderr.decode()
    assert not lock_is_held(dead_session), "a SIGKILLed lab's lock is still held"
    live = ContainerRuntime(Session(), docker_client)  # this process's: live, and must survive
    live.prepare(hello)
    live_id, _ = live._create(hello, live.image_tag(hello))
    try:
        from edgelab.watchdog import live_and_dead

        sessions = live_and_dead(docker_client)  # what edgelab clean can say before removing
        assert sessions[dead_session] == (2, False) and sessions[live.session.id] == (1, True), sessions
        done = subprocess.run(
            [sys.executable, "-m", "edgelab", "run", "-w", "hello", "-r", "container", "-n", "1", "--warmup", "0"],
            capture_output=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr.decode()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and set(dead_ids) & _existing(docker_client):
            time.sleep(0.2)
        existing = _existing(docker_client)
        assert not set(dead_ids) & existing, "a dead session's containers were left"
        assert live_id in existing, "a live session's container was removed"
    finally:
        _remove_all(docker_client, [*dead_ids, live_id])


#: The issue's case: a lab in another PID namespace (where this process's pid names nobody,
#: or someone else) must remove none of a live lab's containers.
UNSHARED_RUN = ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-m", "edgelab",
                "run", "-w", "hello", "-r", "container", "-n", "3", "--warmup", "0"]
HELD = 6


def _can_unshare() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, timeout=10)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_unshare(), reason="unshare --pid --fork --mount-proc is not permitted here")
def test_lab_in_another_pid_namespace_removes_none_of_a_live_labs_containers(docker_client: Any) -> None:
    from edgelab.runtimes.container import ContainerRuntime
    from edgelab.workloads import get_workload

    hello = get_workload("hello")
    first = ContainerRuntime(Session(), docker_client)
    try:
        first.prepare(hello)
        instances = [first.launch(hello, hello.default_request, 30).instance for _ in range(HELD)]
        ids = {i.container_id for i in instances}  # type: ignore[attr-defined]
        # The user-space figure: cgroup usage moves by up to 64 pages per CPU per container
        # whenever another cgroup charges on that CPU (the kernel batches charges), so the
        # second lab's own containers shift it without anything of ours changing.
        before = first.pss_bytes(instances)
        assert before and first.host_memory_bytes(instances)
        done = subprocess.run(UNSHARED_RUN, capture_output=True, timeout=180)
        assert done.returncode == 0, done.stderr.decode()
        time.sleep(2.0)  # the second lab's watchdog reaps "dead" sessions off its path: let it
        existing = _existing(docker_client)
        assert ids <= existing, f"{len(ids - existing)} of the live lab's {HELD} containers were removed"
        for instance in instances:  # and each still answers
            assert instance.request(hello.default_request, 10).status == 0
        after = first.pss_bytes(instances)
        assert 0.8 * before <= after <= 1.25 * before, (before, after)
    finally:
        first.close()
    assert not ids & _existing(docker_client)


def test_watchdog_holds_the_lock_until_it_has_swept(tmp_path: Path) -> None:
    """A lab killed with SIGKILL: its session stays live to other labs while its watchdog
    sweeps (it inherited the lock), and is dead as soon as the watchdog is done."""
    from edgelab.session import lock_is_held, lock_path

    script = tmp_path / "lab.py"
    script.write_text(
        "import os, sys\n"
        "from edgelab.session import Session\n"
        "from edgelab.watchdog import Watchdog\n"
        "s = Session(); s.hold(); w = Watchdog(s.id)\n"
        "print(s.id, w.pid, flush=True)\n"
        "sys.stdin.read()\n"
    )
    lab = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert lab.stdout is not None
    session_id, watchdog_pid = lab.stdout.readline().split()
    watchdog = psutil.Process(int(watchdog_pid))
    session = session_id.decode()
    try:
        assert lock_is_held(session)
        watchdog.suspend()  # as if it were still sweeping when the lab died
        lab.kill()
        lab.wait()
        assert lock_is_held(session), "the lock went with the lab, before the watchdog swept"
        watchdog.resume()
        watchdog.wait(10)
        assert not lock_is_held(session)
        assert not lock_path(session).exists(), "the watchdog left its session's lock file"
    finally:
        with contextlib.suppress(psutil.Error):
            watchdog.resume()
            watchdog.kill()
        if lab.poll() is None:
            lab.kill()


def test_session_alive_by_lock_and_by_heartbeat() -> None:
    """Units: one host's sessions by their lock, another host's by heartbeat age (engine time)."""
    from edgelab.session import HEARTBEAT_STALE_S, HOST_LABEL, host_id, session_alive

    mine = Session()
    labels = mine.labels
    assert session_alive(labels, engine_now=None, heartbeat_at=None, newest_created=None)
    unlocked = {**labels, SESSION_LABEL: "0123456789ab"}  # our host, no lock file: dead
    assert not session_alive(unlocked, engine_now=None, heartbeat_at=None, newest_created=None)
    foreign = {**unlocked, HOST_LABEL: "another-host"}
    now = 1_000_000.0
    fresh, stale = now - 5, now - HEARTBEAT_STALE_S - 1
    assert session_alive(foreign, engine_now=now, heartbeat_at=fresh, newest_created=stale)
    assert not session_alive(foreign, engine_now=now, heartbeat_at=stale, newest_created=stale)
    assert session_alive(foreign, engine_now=now, heartbeat_at=None, newest_created=fresh)
    assert not session_alive(foreign, engine_now=now, heartbeat_at=None, newest_created=stale)
    assert session_alive(foreign, engine_now=None, heartbeat_at=None, newest_created=stale)  # in doubt
    assert session_alive({SESSION_LABEL: "x"}, engine_now=now, heartbeat_at=None, newest_created=stale)
    assert labels[HOST_LABEL] == host_id()


def test_a_fresh_heartbeat_keeps_another_hosts_session(docker_client: Any, tmp_path: Path) -> None:
    """A session whose lock we cannot see (another sessions directory: another host) with a
    fresh heartbeat volume is live; without one and with young containers, live too; its
    heartbeat removed and the engine's clock moved past staleness, dead."""
    from edgelab.runtimes.container import _remove_all
    from edgelab.session import HEARTBEAT_STALE_S
    from edgelab.watchdog import beat, dead_sessions, heartbeat_volumes

    env = {**os.environ, "EDGELAB_SESSION_DIR": str(tmp_path / "other-host")}
    other = subprocess.run([sys.executable, "-c", DEAD_LAB], capture_output=True, timeout=120, env=env)
    other_session, *other_ids = other.stdout.decode().split()
    assert other_ids, other.stderr.decode()
    try:
        beat(docker_client, other_session, 0)
        assert other_session not in dead_sessions(docker_client)
        for volume in heartbeat_volumes(docker_client, other_session):
            docker_client.api.remove_volume(volume["Name"])
        assert other_session not in dead_sessions(docker_client)  # no beat, but young containers
        info = docker_client.info
        later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + HEARTBEAT_STALE_S + 5))
        docker_client.info = lambda: {**info(), "SystemTime": later}
        try:
            assert set(dead_sessions(docker_client)[other_session]) == set(other_ids)
        finally:
            del docker_client.info
    finally:
        _remove_all(docker_client, other_ids)
        for volume in heartbeat_volumes(docker_client, other_session):
            docker_client.api.remove_volume(volume["Name"])


# -- the TUI: SIGTERM / SIGHUP mid-ramp, in a real terminal (tmux) -------------------------------
TUI_RESIDENT = 10
#: From the workload table: tab to the scenario radio set, pick ramp, tab to N, type it,
#: shift+tab off the input and press r (run).
TUI_KEYS = ["Tab", "Tab", "Tab", "Tab", "Right", "Enter", "Tab", "C-a", "C-k", str(TUI_RESIDENT), "BTab", "r"]


class Tmux:
    def __init__(self, name: str) -> None:
        self.base = ["tmux", "-L", f"edgelab-test-{os.getpid()}"]
        self.name = name

    def __call__(self, *args: str) -> str:
        return subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=10).stdout

    def screen(self) -> str:
        return "\n".join(line.rstrip() for line in self("capture-pane", "-t", self.name, "-p").splitlines() if line.strip())


def _owned_containers(client: Any, owners: set[int]) -> list[str]:
    """Labelled containers whose edgelab.pid is one of ``owners``."""
    found = client.api.containers(all=True, filters={"label": SESSION_LABEL})
    return [c["Id"][:12] for c in found if (c.get("Labels") or {}).get(OWNER_PID_LABEL, "") in {str(o) for o in owners}]


@pytest.mark.skipif(not shutil.which("tmux"), reason="tmux is not installed")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_tui_signal_mid_ramp_exits_cleanly_within_5_s(docker_client: Any, tmp_path: Path, sig: signal.Signals) -> None:
    """The TUI (which may run its lab in a helper process, edgelab.remote) holding a ramp gets
    ``sig``: it exits within 5 s, and then no process it started (however deep) and no
    container any of them owns remains."""
    tmux = Tmux(f"tui-{sig.name}")
    lab_command = f"{shlex.quote(sys.executable)} -m edgelab --workload hello"
    command = f'cd {shlex.quote(os.getcwd())} && {lab_command}; echo "exit status $?"; sleep 120'
    shell = int(tmux(
        "new-session", "-d", "-P", "-F", "#{pane_pid}", "-s", tmux.name, "-x", "160", "-y", "50",
        "-e", f"EDGELAB_WATCHDOG_LOG={tmp_path / 'watchdog.log'}", command,
    ).strip())
    tmux("resize-window", "-t", tmux.name, "-x", "160", "-y", "50")
    descendants: dict[int, psutil.Process] = {}
    pid = 0

    def scan() -> None:
        try:
            for child in psutil.Process(pid).children(recursive=True):
                descendants.setdefault(child.pid, child)
        except psutil.NoSuchProcess:
            pass

    def live() -> list[str]:
        return [f"{p.pid} {p.name()}" for p in descendants.values() if _alive(p)]

    def owned() -> list[str]:
        return _owned_containers(docker_client, {pid, *descendants})

    try:
        deadline = time.monotonic() + 60
        while "idle" not in tmux.screen() and time.monotonic() < deadline:
            time.sleep(0.2)
        pid = next(c.pid for c in psutil.Process(shell).children() if "python" in c.name())
        time.sleep(1.0)  # the workload table fills in
        for key in TUI_KEYS:
            tmux("send-keys", "-t", tmux.name, key)
            time.sleep(0.3)
        # The ramp holds its instances (N each, or the TUI's default N if the keys above no
        # longer reach the N field in a changed layout): every runtime has some live.
        deadline = time.monotonic() + 120
        while not (
            "holding until you press r" in tmux.screen()
            and owned()
            and any(p.name().startswith("hello") for p in descendants.values() if _alive(p))
        ):
            assert time.monotonic() < deadline, f"the TUI ramp did not start; screen:\n{tmux.screen()}"
            scan()
            time.sleep(0.2)
        time.sleep(0.5)
        scan()
        sent = time.monotonic()
        os.kill(pid, sig)
        while psutil.pid_exists(pid) and _alive(psutil.Process(pid)):
            if time.monotonic() - sent > CLEAN_EXIT_S:
                pytest.fail(f"the TUI did not exit within {CLEAN_EXIT_S:g} s of {sig.name}; screen:\n{tmux.screen()}")
            time.sleep(0.05)
        took = time.monotonic() - sent
        screen = ""
        deadline = time.monotonic() + 3
        while "exit status" not in screen and time.monotonic() < deadline:
            screen = tmux.screen()
            time.sleep(0.05)
        assert "exit status 130" in screen, screen
        assert "Traceback" not in screen, screen
        deadline = time.monotonic() + 2  # the watchdog finishes just after the lab
        while (live() or owned()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert owned() == [], "containers left"
        assert live() == [], "processes left"
        print(f"TUI {sig.name}: exited in {took:.2f} s")
    finally:
        tmux("kill-server")
        for process in descendants.values():
            try:
                process.kill()
            except psutil.Error:
                pass
        if pid:
            from edgelab.runtimes.container import _remove_all

            _remove_all(docker_client, owned())


def test_heartbeats_nobody_renews_are_pruned(docker_client: Any) -> None:
    """A heartbeat of this host's session whose lock is free goes at the next reap; a live
    session's stays."""
    from edgelab.watchdog import _prune_heartbeats, beat, heartbeat_volumes

    live = Session()
    live.hold()
    dead_id = "feedfacecafe"  # no lock file: not a live session of this host
    try:
        beat(docker_client, live.id, 0)
        beat(docker_client, dead_id, 0)
        _prune_heartbeats(docker_client, {})
        assert heartbeat_volumes(docker_client, live.id)
        assert heartbeat_volumes(docker_client, dead_id) == []
    finally:
        for sid in (live.id, dead_id):
            for volume in heartbeat_volumes(docker_client, sid):
                docker_client.api.remove_volume(volume["Name"])
        live.release()
