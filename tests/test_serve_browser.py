"""``edgelab serve`` in a real headless browser (Debian's chromium, driven by Playwright).

The browser test starts ``edgelab serve`` on a free port with the real Wasm rung (the CLI has no
fake runtime: ``-r wasm`` is the fastest real one), opens the page, records every request the
page makes (HTTP and websocket), waits for the lab's Wasm panel in what the server sends to
xterm.js (the terminal draws on a canvas, so the DOM has no text: the websocket's frames, less
their escape sequences, are the screen's text in drawing order), presses r, waits for the
burst's figures, saves a PNG screenshot and checks it is a picture. Then SIGTERM to the server:
it must exit 0, and the lab it started and everything that lab started must be gone.

Skipped only where chromium or Playwright cannot be had outside CI; in CI (.ci/run installs
chromium) a missing browser is a failure.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import pytest

CHROMIUM = "/usr/bin/chromium"
MARKER = "EDGELAB_SERVE_TEST_MARKER"
#: A figure with its unit, as the panels print them ("2.55 µs").
FIGURE = re.compile(r"\d[\d,]*(?:\.\d+)? (?:ns|µs|ms)\b")
ESCAPE = re.compile(rb"\x1b(?:\[[0-9;?<>=]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[()][0-9A-Za-z]|[=>78DEHM])")
#: After the server exits, how long what its labs started may take to go (watchdog sweep).
LEFTOVER_GRACE_S = 10.0


def _chromium() -> Any:
    """Playwright's sync API, or a skip (never in CI) saying what is missing."""
    missing = None
    if not os.path.exists(CHROMIUM):
        missing = f"{CHROMIUM} is missing (apt package: chromium)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = missing or "playwright is not installed (pip install playwright)"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{missing}: .ci/run installs it; CI must run the browser test")
        pytest.skip(missing)
    return sync_playwright


def start_serve(*flags: str, env: dict[str, str], new_session: bool = False) -> tuple[subprocess.Popen[str], str]:
    """``edgelab serve --port 0 ...`` and the URL it says on stdout."""
    server = subprocess.Popen(
        [sys.executable, "-m", "edgelab", "serve", "--port", "0", *flags],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=new_session,
    )
    assert server.stdout is not None
    line = server.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:\d+/", line)
    if match is None:
        server.kill()
        raise AssertionError(f"no URL on stdout: {line!r} {server.communicate(timeout=5)}")
    return server, match.group(0)


def wait_for(condition: Callable[[], Any], timeout_s: float, what: Callable[[], str],
             pause: Callable[[float], None] = time.sleep) -> Any:
    """Poll ``condition``; ``pause`` is the page's own wait in the browser test (Playwright's
    sync API delivers the page's events only inside its calls, never during a time.sleep)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what()} (waited {timeout_s:.0f} s)")
        pause(0.1)


def marked(marker: str, exclude: set[int]) -> list[str]:
    """Live processes carrying this test's marker in their environment (the server, its labs,
    their Wasm hosts and watchdogs all inherit it), not zombies awaiting their reaper."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline", "status"]):
        if process.pid in exclude or process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            if process.environ().get(MARKER) == marker:
                found.append(f"{process.pid} {' '.join(process.info['cmdline'] or [])}")
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


def labs_of(server: subprocess.Popen[str]) -> list[psutil.Process]:
    """The labs the server started: its children running ``-m edgelab`` (not ``serve``)."""
    try:
        children = psutil.Process(server.pid).children()
    except psutil.NoSuchProcess:
        return []
    labs = []
    for child in children:
        try:
            cmdline = child.cmdline()
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        if "edgelab" in cmdline and "serve" not in cmdline:
            labs.append(child)
    return labs


def assert_nothing_left(server: subprocess.Popen[str], labs: list[psutil.Process], marker: str) -> None:
    for lab in labs:
        assert not lab.is_running() or lab.status() == psutil.STATUS_ZOMBIE, f"lab {lab.pid} still running"
    me = {os.getpid()}
    deadline = time.monotonic() + LEFTOVER_GRACE_S
    while (left := marked(marker, me)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"left behind after edgelab serve exited: {left}"


@pytest.fixture
def env() -> Iterator[dict[str, str]]:
    """The environment for edgelab serve, with a marker its labs and theirs inherit."""
    yield {**os.environ, MARKER: uuid.uuid4().hex, "PYTHONUNBUFFERED": "1"}


def screen_text(frames: list[bytes]) -> str:
    """What the server has sent xterm.js so far, less the escape sequences."""
    return ESCAPE.sub(b"", b"".join(frames)).decode("utf-8", "replace")


def test_the_lab_in_a_browser(env: dict[str, str], tmp_path: Path) -> None:
    sync_playwright = _chromium()
    server, url = start_serve("-r", "wasm", "--screenshots", str(tmp_path / "svg"), env=env)
    origin = urlsplit(url).netloc
    labs: list[psutil.Process] = []
    try:
        # Another origin's page may not open a lab (a browser always sends its Origin).
        refused = http.client.HTTPConnection(origin, timeout=5)
        refused.request("GET", "/ws", headers={
            "Origin": "http://elsewhere.example", "Connection": "Upgrade", "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        })
        assert refused.getresponse().status == 403
        refused.close()

        requests: list[str] = []
        frames: list[bytes] = []

        def on_websocket(ws: Any) -> None:
            requests.append(ws.url)
            ws.on("framereceived", lambda f: frames.append(f if isinstance(f, bytes) else f.encode()))

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                page.on("request", lambda r: requests.append(r.url))
                page.on("websocket", on_websocket)
                page.goto(url)
                pause = lambda s: page.wait_for_timeout(s * 1000)  # noqa: E731
                wait_for(lambda: re.search(r"[─━]+ wasm\b", screen_text(frames)) and "p50" in screen_text(frames),
                         20, lambda: f"the lab's wasm panel (its title and p50) never reached the page:"
                         f" {screen_text(frames)[-2000:]!r}", pause)
                labs = labs_of(server)
                assert len(labs) == 1, f"one tab, one lab: {labs}"
                assert not FIGURE.search(screen_text(frames).split("p50", 1)[1].split("memory", 1)[0]), \
                    "figures before any burst: the test could not tell the burst's from them"
                sent = len(frames)
                page.locator(".xterm-helper-textarea").focus()
                page.keyboard.press("r")
                after = lambda: screen_text(frames[sent:])  # noqa: E731
                wait_for(lambda: "burst of hello finished" in after() and FIGURE.search(after()),
                         20, lambda: f"no figures after r: {after()[-2000:]!r}", pause)
                shot = tmp_path / "browser.png"
                page.screenshot(path=str(shot))
            finally:
                browser.close()

        # Every request the page made went to the server's host:port (HTTP and websocket).
        assert requests and any(r.startswith("ws://") for r in requests), requests
        elsewhere = [r for r in requests if urlsplit(r).netloc != origin]
        assert not elsewhere, f"the page fetched from another host: {elsewhere}"
        assert any("/static/fonts/" in r for r in requests), "the page's font did not come from the server"

        from PIL import Image

        with Image.open(shot) as picture:
            assert picture.format == "PNG" and picture.size == (1280, 800)
            colours = picture.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) >= 8, f"a flat picture: {colours}"
        # No one colour covers it all: the lab's text and panels are drawn on it.
        assert max(count for count, _ in colours) < 0.98 * 1280 * 800
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=15)
    assert server.returncode == 0, err
    assert "every lab it started has exited" in err, err
    assert_nothing_left(server, labs, env[MARKER])


def test_a_closed_tab_stops_its_lab_and_ctrl_c_stops_the_server_and_a_running_lab(env: dict[str, str]) -> None:
    """A closed (or reloaded) tab stops its lab and the server serves on (a booth reloads all
    day); then ctrl+c in the server's terminal, SIGINT to its process group (server and labs),
    with a lab open stops both."""
    import asyncio

    import aiohttp

    server, url = start_serve("-r", "wasm", env=env, new_session=True)
    closed: list[psutil.Process] = []
    labs: list[psutil.Process] = []

    def running(processes: list[psutil.Process]) -> bool:
        return any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in processes)

    async def tabs() -> None:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{url}ws", origin=url.rstrip("/")) as ws:
                await ws.receive(timeout=15)  # the lab's first bytes: it runs
                closed.extend(labs_of(server))
            deadline = time.monotonic() + 10
            while running(closed) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert closed and not running(closed), f"a closed tab's lab still runs: {closed}"
            assert server.poll() is None, "the server stopped with its tab"
            async with session.ws_connect(f"{url}ws?width=100&height=30", origin=url.rstrip("/")) as ws:
                await ws.receive(timeout=15)
                labs.extend(labs_of(server))
                os.killpg(server.pid, signal.SIGINT)
                while not ws.closed:
                    if (await ws.receive(timeout=15)).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                        break

    try:
        asyncio.run(tabs())
        _, err = server.communicate(timeout=15)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate(timeout=5)
    assert len(closed) == 1 and len(labs) == 1 and labs != closed, (closed, labs)
    assert server.returncode == 0, err
    assert_nothing_left(server, closed + labs, env[MARKER])


def test_a_killed_server_leaves_no_lab(env: dict[str, str]) -> None:
    """The server SIGKILLed (or crashed) with a lab open: the kernel's SIGTERM to the lab
    (its death signal) has it unwind and remove what it started."""
    import asyncio

    import aiohttp

    server, url = start_serve("-r", "wasm", env=env)
    labs: list[psutil.Process] = []

    async def tab() -> None:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{url}ws", origin=url.rstrip("/")) as ws:
                await ws.receive(timeout=15)
                labs.extend(labs_of(server))
                server.kill()

    try:
        asyncio.run(tab())
    finally:
        server.kill()
        server.communicate(timeout=5)
    assert len(labs) == 1, labs
    deadline = time.monotonic() + LEFTOVER_GRACE_S
    while labs[0].is_running() and labs[0].status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.05)
    assert_nothing_left(server, labs, env[MARKER])


def test_a_port_in_use_is_one_line_and_exit_2(env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "edgelab", "serve", "--port", str(port)],
                              capture_output=True, text=True, env=env, timeout=30)
    assert done.returncode == 2
    assert done.stderr == f"edgelab: port {port} on 127.0.0.1 is in use (choose another with --port, or 0 for any free one)\n"
    assert done.stdout == ""


def test_a_host_beyond_loopback_is_warned_about(env: dict[str, str]) -> None:
    server = subprocess.Popen([sys.executable, "-m", "edgelab", "serve", "--host", "0.0.0.0", "--port", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert server.stdout is not None
    line = server.stdout.readline()
    server.send_signal(signal.SIGTERM)
    _, err = server.communicate(timeout=15)
    assert "http://127.0.0.1:" in line
    port = urlsplit(re.search(r"http://\S+", line).group(0)).port
    assert err.splitlines()[0] == (f"edgelab serve: warning: listening on 0.0.0.0: anyone who can reach"
                                   f" port {port} can run workloads on this machine")
    assert server.returncode == 0


def test_chromium_is_installed_by_ci() -> None:
    """.ci/run installs chromium where it is missing, so CI never skips the browser test."""
    script = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert re.search(r"command -v chromium .*apt-get install -y -qq chromium", script, re.S), script
