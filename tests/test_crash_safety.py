"""Nothing outlives the lab: SIGKILL, SIGTERM, SIGHUP, SIGINT mid-ramp, and dead sessions' leftovers.

The lab runs as ``python -m edgelab run`` in a session of its own (so its workload processes,
which it spawns in process groups of their own but in its session, can be found by session id),
ramping Wasm, native and container instances at once. After the signal: no container labelled
with its session, no process of its session, and neither its Wasm host nor its watchdog remain.
"""

from __future__ import annotations

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
    lab.wait_until_under_way()
    lab.process.send_signal(signal.SIGKILL)
    lab.process.wait()
    took = lab.wait_nothing_left(KILL_CLEANUP_S)
    print(f"everything gone {took:.2f} s after SIGKILL")
    log = lab.watchdog_log.read_text()
    assert "without closing" in log and "container(s) removed" in log, log


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


# -- leftovers of dead sessions are removed when a lab starts -----------------------------------
def test_lab_start_removes_leftovers_of_dead_sessions(docker_client: Any) -> None:
    from edgelab.runtimes.container import ContainerRuntime
    from edgelab.workloads import get_workload

    hello = get_workload("hello")
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = ContainerRuntime(Session(owner_pid=gone.pid), docker_client)  # the owner is gone
    reused = ContainerRuntime(Session(owner_started=1.0), docker_client)  # our pid, another start
    live = ContainerRuntime(Session(), docker_client)  # a live lab's: must survive
    ids = {}
    for name, runtime in (("dead", dead), ("reused", reused), ("live", live)):
        runtime.prepare(hello)
        ids[name], _ = runtime._create(hello, runtime.image_tag(hello))
    try:
        done = subprocess.run(
            [sys.executable, "-m", "edgelab", "run", "-w", "hello", "-r", "container", "-n", "1", "--warmup", "0"],
            capture_output=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr.decode()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            existing = {c["Id"] for c in docker_client.api.containers(all=True, filters={"label": SESSION_LABEL})}
            if ids["dead"] not in existing and ids["reused"] not in existing:
                break
            time.sleep(0.2)
        assert ids["dead"] not in existing, "a dead session's container was left"
        assert ids["reused"] not in existing, "a container of a reused pid's session was left"
        assert ids["live"] in existing, "a live session's container was removed"
    finally:
        from edgelab.runtimes.container import _remove_all

        _remove_all(docker_client, ids.values())


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
