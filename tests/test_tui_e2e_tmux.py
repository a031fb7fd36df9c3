"""The lab end to end, as a person runs it: ``python -m edgelab`` in a real terminal (tmux).

Keys go in with ``tmux send-keys`` and the screen comes back with ``capture-pane``: pick
``fib`` in the workload list, press r for a burst on the real container, subprocess and Wasm
runtimes, wait for all three panels to show startup figures with units, press q. Then the
lab's process must be gone within 5 s and nothing it started may remain: no container
labelled with its pid, no process in its terminal session (native workloads), and no process
carrying this test's marker in its environment (the Wasm host and the session watchdog run
in sessions of their own but inherit the environment).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

REPO = Path(__file__).resolve().parent.parent
COLUMNS, ROWS = 160, 45
MARKER = "EDGELAB_E2E_MARKER"
RESULT_TIMEOUT_S = 60.0
EXIT_TIMEOUT_S = 5.0
#: After the lab has exited, how long what it started may take to go (the watchdog's sweep).
LEFTOVER_GRACE_S = 10.0
#: A figure in text ("46.2 ms"), and a unit on its own (beside the big p50/p99 digits).
FIGURE = re.compile(r"\d[\d,]*(?:\.\d+)? (?:ns|µs|ms)\b")
UNIT = re.compile(r" (?:ns|µs|ms) ")

pytestmark = pytest.mark.docker


class Tmux:
    """One tmux server of our own (``-L``), so other sessions on this machine are untouched."""

    def __init__(self) -> None:
        self.socket = f"edgelab-e2e-{os.getpid()}-{uuid.uuid4().hex[:6]}"

    def __call__(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=10
        )
        if check and done.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "lab", check=False)

    def keys(self, *keys: str) -> None:
        self("send-keys", "-t", "lab", *keys)

    def kill(self) -> None:
        self("kill-server", check=False)


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        print("tmux is not installed (apt package: tmux): skipping the terminal end-to-end test")
        pytest.skip("tmux is not installed (apt package: tmux)")
    server = Tmux()
    yield server
    server.kill()


def wait_for(condition: Any, timeout_s: float, what: str, screen: Any = None) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            shown = f"\n--- screen ---\n{screen()}" if screen else ""
            raise AssertionError(f"{what} (waited {timeout_s:.0f} s){shown}")
        time.sleep(0.2)


def panel_columns(screen: str) -> list[str]:
    """The three panels side by side, cut into one text per panel at their titles."""
    lines = screen.splitlines()
    tops = [i for i, line in enumerate(lines) if "╭─ container " in line and "╭─ wasm " in line]
    if not tops:
        return []
    top = lines[tops[0]]
    starts = [top.index(f"╭─ {name} ") for name in ("container", "subprocess", "wasm")]
    bounds = list(zip(starts, [*starts[1:], len(top) + 1], strict=True))
    body = lines[tops[0] :]
    return ["\n".join(line[a:b] for line in body) for a, b in bounds]


def listed(screen: str) -> list[str]:
    """Workload names in the list, top to bottom (the rows under its header)."""
    names: list[str] = []
    for line in screen.splitlines():
        if "╭─ container " in line:
            break
        match = re.match(r"│ ([a-z0-9_-]+) {2,}\S", line)
        if match and match.group(1) != "workload":
            names.append(match.group(1))
    return names


def shows_figures(panel: str) -> bool:
    """p50 and p99 (big digits, each with its unit) and the phases (figures in text)."""
    return len(UNIT.findall(panel)) >= 2 and FIGURE.search(panel) is not None


def figures_in_all_panels(tmux: Tmux) -> list[str] | None:
    screen = tmux.screen()
    if "burst of fib finished" not in screen:
        return None
    panels = panel_columns(screen)
    if len(panels) == 3 and all(shows_figures(p) for p in panels):
        return panels
    return None


def ours(pane_pid: int, marker: str, seen: dict[int, float]) -> list[str]:
    """Processes the lab started that are still alive (not zombies awaiting their reaper)."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline", "status", "create_time"]):
        try:
            if process.pid == os.getpid() or process.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            seen_before = seen.get(process.pid) == process.info["create_time"]
            mine = seen_before or os.getsid(process.pid) == pane_pid
            if not mine:
                try:
                    mine = process.environ().get(MARKER) == marker
                except (psutil.AccessDenied, psutil.ZombieProcess):
                    mine = False
            if mine:
                found.append(f"{process.pid} {' '.join(process.info['cmdline'] or [])}")
        except (psutil.NoSuchProcess, ProcessLookupError, PermissionError):
            continue
    return found


def descendants(pid: int) -> dict[int, float]:
    """pid -> start time of every live descendant (the start time tells a reused pid apart)."""
    found = {}
    try:
        for child in psutil.Process(pid).children(recursive=True):
            try:
                found[child.pid] = child.create_time()
            except psutil.NoSuchProcess:
                continue
    except psutil.NoSuchProcess:
        pass
    return found


def labelled_containers(client: Any, pane_pid: int) -> list[str]:
    from edgelab.session import OWNER_PID_LABEL

    found = client.api.containers(all=True, filters={"label": f"{OWNER_PID_LABEL}={pane_pid}"})
    return [c["Id"][:12] for c in found]


def test_a_person_runs_a_burst_of_fib_on_all_three_and_quits(
    tmux: Tmux, docker_client: Any
) -> None:
    marker = uuid.uuid4().hex
    # Without -u, a COLUMNS/LINES put into the C environment (some pytest plugins do) would
    # pin the lab to 80x24 whatever the pane size.
    command = f"exec env -u COLUMNS -u LINES {MARKER}={marker} {sys.executable} -m edgelab"
    tmux(
        "new-session", "-d", "-s", "lab", "-x", str(COLUMNS), "-y", str(ROWS),
        "-c", str(REPO), command,
    )
    pane_pid = int(tmux("display-message", "-p", "-t", "lab", "#{pane_pid}").strip())
    seen: dict[int, float] = {}
    try:
        wait_for(lambda: "first paint" in tmux.screen(), 20, "the lab never painted", tmux.screen)
        # The list fills in after first paint; go to its top, then down to fib.
        wait_for(lambda: "fib" in listed(tmux.screen()), 20, "no fib in the list", tmux.screen)
        names = listed(tmux.screen())
        for _ in range(len(names)):
            tmux.keys("Up")
        for _ in range(names.index("fib")):
            tmux.keys("Down")
        time.sleep(0.3)
        tmux.keys("r")
        deadline = time.monotonic() + RESULT_TIMEOUT_S
        panels = None
        while panels is None:
            seen.update(descendants(pane_pid))
            panels = figures_in_all_panels(tmux)
            if panels is None and time.monotonic() > deadline:
                raise AssertionError(
                    f"the burst never showed figures in all three panels\n{tmux.screen()}"
                )
            time.sleep(0.2)
        screen = tmux.screen()
        for name, panel in zip(("container", "subprocess", "wasm"), panels, strict=True):
            assert name in panel, (name, panel)
            assert "20 cold starts" in panel, (name, panel)
            assert "phases p50:" in panel, (name, panel)
            assert "unavailable" not in panel, (name, panel)
        assert "faster than" in screen
        assert seen, "no process of the lab was ever seen (the Wasm host at least should be)"

        tmux.keys("q")
        wait_for(
            lambda: not psutil.pid_exists(pane_pid)
            or psutil.Process(pane_pid).status() == psutil.STATUS_ZOMBIE,
            EXIT_TIMEOUT_S,
            "the lab did not exit within 5 s of q",
            tmux.screen,
        )
    finally:
        if psutil.pid_exists(pane_pid):
            seen.update(descendants(pane_pid))
        tmux.kill()

    assert labelled_containers(docker_client, pane_pid) == [], "containers left behind"
    deadline = time.monotonic() + LEFTOVER_GRACE_S
    while (leftovers := ours(pane_pid, marker, seen)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert leftovers == [], "processes the lab started outlived it"


def test_at_80x24_r_straight_away_runs_and_the_keyboard_reaches_the_wasm_panel(
    tmux: Tmux, docker_client: Any
) -> None:
    """What issue 9 saw in a real terminal: r pressed as soon as the lab appears must run (or
    say the list is loading), never 'no workload to run'; at 80x24, ] reaches the Wasm panel
    below the fold without a mouse; q then leaves nothing behind."""
    marker = uuid.uuid4().hex
    command = f"exec env -u COLUMNS -u LINES {MARKER}={marker} {sys.executable} -m edgelab"
    tmux("new-session", "-d", "-s", "lab", "-x", "80", "-y", "24", "-c", str(REPO), command)
    pane_pid = int(tmux("display-message", "-p", "-t", "lab", "#{pane_pid}").strip())
    seen: dict[int, float] = {}
    try:
        wait_for(lambda: "press r to run" in tmux.screen(), 20, "the lab never painted", tmux.screen)
        tmux.keys("r")
        screens: list[str] = []

        def finished() -> bool:
            seen.update(descendants(pane_pid))
            screens.append(tmux.screen())
            return "burst of hello finished" in screens[-1]

        wait_for(finished, RESULT_TIMEOUT_S, "r pressed at first paint never ran a burst", tmux.screen)
        assert not any("no workload" in s for s in screens), next(s for s in screens if "no workload" in s)
        # A run on a screen under 45 rows folds the options away (o unfolds them) and gives
        # the focus to the first runtime panel, so that every panel is on an 80x24 screen and
        # the keyboard is where the figures are; ] then walks the panels from there.
        assert re.search(r"┏━* ?container ", tmux.screen()), "the first panel did not get the focus when the options folded"
        for _ in range(2):
            tmux.keys("]")
            time.sleep(0.3)
        def focused_wasm_panel() -> str | None:
            screen = tmux.screen()
            return screen if re.search(r"┏━* ?wasm ", screen) else None

        screen = wait_for(
            focused_wasm_panel,
            5,
            "] twice from the first panel did not bring the focused Wasm panel into view",
            tmux.screen,
        )
        below = screen[screen.index("wasm ") :]
        # A compact panel says its count as "n=20, warmups excluded".
        assert re.search(r"n=\d+, warmups excluded|\d+ cold starts", below) and FIGURE.search(below), screen
        tmux.keys("q")
        wait_for(
            lambda: not psutil.pid_exists(pane_pid)
            or psutil.Process(pane_pid).status() == psutil.STATUS_ZOMBIE,
            EXIT_TIMEOUT_S,
            "the lab did not exit within 5 s of q",
            tmux.screen,
        )
    finally:
        if psutil.pid_exists(pane_pid):
            seen.update(descendants(pane_pid))
        tmux.kill()

    assert labelled_containers(docker_client, pane_pid) == [], "containers left behind"
    deadline = time.monotonic() + LEFTOVER_GRACE_S
    while (leftovers := ours(pane_pid, marker, seen)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert leftovers == [], "processes the lab started outlived it"


REAL_DEMO = """
[[step]]
kind = "burst"
caption = "hello on wasm and subprocess"
runtimes = ["wasm", "subprocess"]
count = 10
advance = 1

[[step]]
kind = "ramp"
caption = "a ramp of 100 wasm instances"
runtimes = ["wasm"]
resident = 100
advance = "key"
"""


def test_a_real_demo_plays_its_steps_and_sigterm_mid_ramp_leaves_nothing(
    tmux: Tmux, docker_client: Any, tmp_path: Path
) -> None:
    """edgelab demo for real: a burst of hello on wasm and subprocess shows its caption and
    both panels' figures, the timer moves on to a ramp of 100 Wasm instances, and SIGTERM
    while the ramp holds them ends the process within 5 s with nothing of it left."""
    import signal

    script = tmp_path / "demo.toml"
    script.write_text(REAL_DEMO)
    marker = uuid.uuid4().hex
    command = (
        f"exec env -u COLUMNS -u LINES {MARKER}={marker} {sys.executable} -m edgelab demo"
        f" --script {script} --runtimes subprocess,wasm"
    )
    tmux("new-session", "-d", "-s", "lab", "-x", "120", "-y", "36", "-c", str(REPO), command)
    pane_pid = int(tmux("display-message", "-p", "-t", "lab", "#{pane_pid}").strip())
    seen: dict[int, float] = {}

    def burst_shown() -> str | None:
        seen.update(descendants(pane_pid))
        screen = tmux.screen()
        done = "hello on wasm and subprocess" in screen and "burst of hello finished" in screen
        return screen if done else None

    def ramp_holding() -> str | None:
        seen.update(descendants(pane_pid))
        screen = tmux.screen()
        return screen if "a ramp of 100 wasm instances" in screen and "holding 100 instances" in screen else None

    try:
        screen = wait_for(burst_shown, RESULT_TIMEOUT_S, "the demo's burst never finished", tmux.screen)
        assert "step 1/2" in screen
        lines = screen.splitlines()
        top = next(line for line in lines if re.search(r"[─━] subprocess .*[─━] wasm ", line))
        cut = re.search(r"[╭┏][─━] wasm ", top).start()  # type: ignore[union-attr]
        body = lines[lines.index(top) :]
        for panel in ("\n".join(line[:cut] for line in body), "\n".join(line[cut:] for line in body)):
            assert "10 cold starts" in panel and FIGURE.search(panel), (panel, screen)
        # advance = 1: the next step comes on its own, no key pressed.
        screen = wait_for(ramp_holding, RESULT_TIMEOUT_S, "the demo never moved on to the ramp", tmux.screen)
        # "holding 100 instances" (the status line) is the lab's count of what it holds; the
        # panel's own "running 100" may be below the fold at 120x36.
        assert "step 2/2" in screen, screen
        assert seen, "no process of the demo was ever seen (the Wasm host at least should be)"
        os.kill(pane_pid, signal.SIGTERM)
        wait_for(
            lambda: not psutil.pid_exists(pane_pid)
            or psutil.Process(pane_pid).status() == psutil.STATUS_ZOMBIE,
            EXIT_TIMEOUT_S,
            "the demo did not exit within 5 s of SIGTERM",
            tmux.screen,
        )
    finally:
        if psutil.pid_exists(pane_pid):
            seen.update(descendants(pane_pid))
        tmux.kill()

    assert labelled_containers(docker_client, pane_pid) == [], "containers left behind"
    deadline = time.monotonic() + LEFTOVER_GRACE_S
    while (leftovers := ours(pane_pid, marker, seen)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert leftovers == [], "processes the demo started outlived it"
