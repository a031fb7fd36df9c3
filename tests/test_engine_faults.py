"""The Docker engine fails under the lab: absent, or it stops answering mid-run, then comes back.

A unix-socket proxy stands between the lab and the real engine (DOCKER_HOST points at it).
Paused, it still forwards requests to the engine but holds every answer: the engine "stops
answering" after acting (so containers get created that the lab never hears of). Every Docker
call must then give up within its timeout (EDGELAB_DOCKER_TIMEOUT, 3 s here), the container
runtime's launches are marked failed with the reason, the other runtimes keep going; after the
proxy resumes (or is killed and restarted) a new launch works, and closing the lab removes
every container of its session, including those it never heard of, found by label.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgelab.events import LabEvent, SampleRecorded
from edgelab.lab import Lab, Settings
from edgelab.session import SESSION_LABEL

pytestmark = pytest.mark.usefixtures("docker_client")

API_TIMEOUT_S = 3.0
ENGINE_SOCKET = "/var/run/docker.sock"


class PausableProxy:
    """Forwards a unix socket to the engine's; ``pause`` holds the engine's answers."""

    def __init__(self, path: Path, upstream: str = ENGINE_SOCKET) -> None:
        self.path = path
        self.upstream = upstream
        self.answering = threading.Event()
        self.answering.set()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def _keep(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            engine = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                engine.connect(self.upstream)
            except OSError:
                client.close()
                continue
            self._keep(client)
            self._keep(engine)
            threading.Thread(target=self._pump, args=(client, engine, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(engine, client, self.answering), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, gate: threading.Event | None) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if gate is not None:
                    gate.wait()  # paused: the answer is held, the connection stays open
                if self._closed:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def pause(self) -> None:
        self.answering.clear()

    def resume(self) -> None:
        self.answering.set()

    def kill(self) -> None:
        """Close the listener and every connection; the socket file goes too."""
        self._closed = True
        self.server.close()
        with self._lock:
            sockets, self._sockets = list(self._sockets), set()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        self.answering.set()  # release held pumps so their threads end
        self.path.unlink(missing_ok=True)


@pytest.fixture
def engine_client() -> Iterator[Any]:
    """A client of the real engine, not through the proxy."""
    import docker

    client = docker.DockerClient(base_url=f"unix://{ENGINE_SOCKET}", timeout=30)
    yield client
    client.close()


def _session_containers(client: Any, session_id: str) -> list[str]:
    found = client.api.containers(all=True, filters={"label": f"{SESSION_LABEL}={session_id}"})
    return [c["Id"] for c in found]


@pytest.mark.parametrize("recovery", ["resume", "restart"])
def test_engine_stops_answering_mid_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine_client: Any, recovery: str
) -> None:
    sock = Path("/tmp") / f"edgelab-proxy-{os.getpid()}-{recovery}.sock"  # short: AF_UNIX paths
    sock.unlink(missing_ok=True)
    proxy = PausableProxy(sock)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{sock}")
    monkeypatch.setenv("EDGELAB_DOCKER_TIMEOUT", f"{API_TIMEOUT_S:g}")
    monkeypatch.setenv("EDGELAB_WATCHDOG_LOG", str(tmp_path / "watchdog.log"))
    lab = Lab()
    recorded: list[tuple[float, Any]] = []
    paused_at: list[float] = []

    def sink(event: LabEvent) -> None:
        if not isinstance(event, SampleRecorded):
            return
        recorded.append((time.monotonic(), event.sample))
        ok = sum(1 for _, s in recorded if s.runtime == "container" and s.ok)
        if ok == 3 and not paused_at:
            proxy.pause()
            paused_at.append(time.monotonic())

    try:
        settings = Settings(workload="hello", runtimes=("container", "subprocess", "wasm"), count=12, warmup=0)
        result = lab.run(settings, on_event=sink)
        assert paused_at, "the proxy was never paused"
        container = result.runtimes["container"]
        after = [(t, s) for t, s in recorded if s.runtime == "container" and s.started_at >= paused_at[0]]
        assert after and not any(s.ok for _, s in after)
        for done_at, sample in after:
            # One Docker call that times out; removing what was created waits at most 0.5 s.
            took = done_at - sample.started_at
            assert took <= API_TIMEOUT_S + 1, f"a failed launch took {took:.1f} s"
            assert sample.error and "timed out" in sample.error, sample.error
        assert container.error and "stopped after 3 failed launches" in container.error, container.error
        for name in ("subprocess", "wasm"):
            assert result.runtimes[name].ok == 12, (name, result.runtimes[name].first_error())

        # The engine comes back: the lab reconnects on its own.
        if recovery == "resume":
            proxy.resume()
        else:
            proxy.kill()
            proxy = PausableProxy(sock)
        again = lab.run(Settings(workload="hello", runtimes=("container",), count=2, warmup=0))
        assert again.runtimes["container"].ok == 2, again.runtimes["container"].first_error()
        # Creates whose answers were held made containers the lab never heard of.
        orphans = _session_containers(engine_client, lab.session.id)
        assert orphans, "the paused engine created no container: the scenario did not happen"
    finally:
        proxy.resume()
        lab.close(wait_s=20)
        left = _session_containers(engine_client, lab.session.id)
        proxy.kill()
        if left:
            from edgelab.runtimes.container import _remove_all

            _remove_all(engine_client, left)
    assert left == [], f"{len(left)} container(s) of the session were left: {(tmp_path / 'watchdog.log').read_text()}"


def test_no_engine_degrades_only_the_container_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    lab = Lab()
    try:
        started = time.monotonic()
        result = lab.run(Settings(workload="hello", count=2, warmup=0))
        took = time.monotonic() - started
    finally:
        lab.close(wait_s=10)
    container = result.runtimes["container"]
    assert container.ok == 0 and container.error
    assert "no Docker engine answers at unix:///nonexistent/docker.sock" in container.error
    assert container.fix and "DOCKER_HOST" in container.fix
    assert result.runtimes["subprocess"].ok == 2 and result.runtimes["wasm"].ok == 2
    assert took < 30, f"an absent engine slowed the run to {took:.1f} s"


# =============================================================================================
# An engine of our own, to kill and freeze: a second dockerd with its own data root, exec
# root, containerd, socket and cgroup parent (other tests use the machine's engine meanwhile).
# =============================================================================================
OWN_ENGINE_TIMEOUT_S = 3.0
RAMP_UNDER_WAY = 10
GONE_AFTER_ANSWER_S = 15.0


class OwnEngine:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.socket = root / "d.sock"
        self.pidfile = root / "d.pid"
        self.log = root / "dockerd.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def start(self, attempts: int = 3) -> float:
        """Start dockerd and wait until it answers; when it did (monotonic). On a loaded
        machine its containerd can miss dockerd's own start-up timeout: then try again."""
        for attempt in range(attempts):
            try:
                return self._start_once()
            except RuntimeError:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def _start_once(self, within_s: float = 60.0) -> float:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                ["dockerd", "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec"),
                 "--pidfile", str(self.pidfile), "-H", self.host, "--bridge=none", "--iptables=false",
                 "--ip-masq=false", f"--cgroup-parent=/edgelab-test-{os.getpid()}",
                 "--containerd-namespace", f"edgelab-test-{os.getpid()}",
                 "--containerd-plugins-namespace", f"edgelab-test-{os.getpid()}-plugins"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dockerd exited: {self.log.read_text()[-2000:]}")
            try:
                client = self.client(2)
                client.ping()
                client.close()
                return time.monotonic()
            except Exception:  # noqa: BLE001 - not answering yet
                time.sleep(0.1)
        raise RuntimeError("dockerd did not answer")

    def client(self, timeout: float = 30) -> Any:
        import docker

        return docker.DockerClient(base_url=self.host, timeout=timeout)

    def signal(self, sig: signal.Signals) -> None:
        import psutil

        assert self.process is not None
        helpers = psutil.Process(self.process.pid).children() if sig == signal.SIGKILL else []
        os.kill(self.process.pid, sig)
        if sig == signal.SIGKILL:
            self.process.wait()
            for helper in helpers:  # its containerd dies with it; a restart must not find it
                _reap(helper)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _reap(process: Any) -> None:
    """Wait (10 s) for a process to end; reap it if it was handed to this process (a lab in
    this process may be a child subreaper), or dockerd takes the zombie for a live containerd."""
    import psutil

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                if process.ppid() == os.getpid():
                    os.waitpid(process.pid, 0)
                    return
        except (psutil.NoSuchProcess, ChildProcessError):
            return
        time.sleep(0.1)


def _labelled_in(engine: OwnEngine) -> list[str]:
    client = engine.client(10)
    try:
        return [c["Id"] for c in client.api.containers(all=True, filters={"label": SESSION_LABEL})]
    finally:
        client.close()


@pytest.fixture(scope="module")
def own_engine(request: pytest.FixtureRequest) -> Iterator[OwnEngine]:
    if os.geteuid() != 0 or not shutil.which("dockerd"):
        pytest.skip("a second Docker engine needs root and dockerd")
    root = Path(f"/tmp/edgelab-engine-{os.getpid()}")  # short: AF_UNIX paths
    root.mkdir(exist_ok=True)
    engine = OwnEngine(root)
    try:
        engine.start()
    except RuntimeError as exc:
        pytest.skip(f"a second dockerd does not start here: {exc}")
    try:
        yield engine
    finally:
        try:
            client = engine.client(10)
            from edgelab.runtimes.container import _remove_all

            _remove_all(client, _labelled_in(engine))
            client.close()
        except Exception:  # noqa: BLE001 - the engine may be the thing that failed
            pass
        engine.stop()
        _kill_orphaned_shims(f"edgelab-test-{os.getpid()}")
        mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
        for mount in sorted((m for m in mounts if m.startswith(f"{root}/") or m == str(root)), reverse=True):
            subprocess.run(["umount", "-l", mount], capture_output=True)
        if request.session.testsfailed:  # kept for a post-mortem of a failed run
            with contextlib.suppress(OSError):
                shutil.copyfile(engine.log, Path("/tmp") / f"edgelab-engine-{os.getpid()}.log")
        shutil.rmtree(root, ignore_errors=True)
        _remove_cgroup_parents(f"edgelab-test-{os.getpid()}")


def _remove_cgroup_parents(name: str) -> None:
    """The engine's --cgroup-parent, in every hierarchy (empty once its containers are gone)."""
    for parent in Path("/sys/fs/cgroup").glob(f"*/{name}"):
        for directory in sorted(parent.rglob("*"), key=lambda d: len(d.parts), reverse=True):
            if directory.is_dir():
                with contextlib.suppress(OSError):
                    directory.rmdir()
        with contextlib.suppress(OSError):
            parent.rmdir()


def _kill_orphaned_shims(namespace: str) -> None:
    """A dockerd killed mid-create can leave a shim (and its workload) that no restarted
    engine knows of; ours run in a containerd namespace of this test's own: kill those."""
    import psutil

    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "-namespace" in cmdline and namespace in cmdline and "containerd-shim" in " ".join(cmdline[:1]):
            with contextlib.suppress(psutil.Error):
                for child in process.children(recursive=True):
                    child.kill()
                process.kill()


class LabProcess:
    """``edgelab run`` against ``own_engine``, in a session of its own."""

    def __init__(self, engine: OwnEngine, tmp_path: Path, args: list[str]) -> None:
        self.out = tmp_path / "lab.out"
        self.watchdog_log = tmp_path / "watchdog.log"
        env = {**os.environ, "DOCKER_HOST": engine.host, "EDGELAB_DOCKER_TIMEOUT": f"{OWN_ENGINE_TIMEOUT_S:g}",
               "EDGELAB_WATCHDOG_LOG": str(self.watchdog_log)}
        with self.out.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "edgelab", "run", "-w", "hello", "-r", "container", *args],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )
        self.engine = engine

    def wait_for_containers(self, n: int, within_s: float = 120) -> None:
        deadline = time.monotonic() + within_s
        while len(_labelled_in(self.engine)) < n:
            assert self.process.poll() is None, self.out.read_text()
            assert time.monotonic() < deadline, f"fewer than {n} containers in {within_s:g} s"
            time.sleep(0.1)

    def watchdogs(self) -> list[int]:
        import psutil

        found = []
        for process in psutil.process_iter(["cmdline"]):
            cmdline = process.info["cmdline"] or []
            if "edgelab.watchdog" in cmdline and process.pid != os.getpid():
                try:
                    if process.environ().get("EDGELAB_WATCHDOG_LOG") == str(self.watchdog_log):
                        found.append(process.pid)
                except psutil.Error:
                    continue
        return found

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _wait_gone(engine: OwnEngine, since: float, lab: LabProcess) -> float:
    """Seconds from ``since`` until no labelled container is left (fails past the bound)."""
    while True:
        left = _labelled_in(engine)
        took = time.monotonic() - since
        if not left:
            return took
        log = lab.watchdog_log.read_text() if lab.watchdog_log.exists() else ""
        assert took < GONE_AFTER_ANSWER_S, f"{len(left)} container(s) left {took:.1f} s after the engine answered: {log}"
        time.sleep(0.2)


def test_engine_killed_mid_ramp_leaves_nothing_once_it_is_back(own_engine: OwnEngine, tmp_path: Path) -> None:
    """dockerd SIGKILLed mid-ramp: the lab says so in one line and exits non-zero; dockerd
    restarted (no other lab started): no labelled container 15 s after it answers."""
    lab = LabProcess(own_engine, tmp_path, ["--scenario", "ramp", "--resident", "container=200"])
    try:
        lab.wait_for_containers(RAMP_UNDER_WAY)
        own_engine.signal(signal.SIGKILL)
        code = lab.process.wait(timeout=60)
        output = lab.out.read_text()
        assert code != 0, output
        assert "Traceback" not in output, output
        assert output.strip().splitlines()[-1].startswith("edgelab: "), output
        watchdogs = lab.watchdogs()
        assert watchdogs, "no watchdog waits for the engine"
        time.sleep(3.0)  # the engine stays away a while; the watchdog keeps trying
        answered = own_engine.start()
        took = _wait_gone(own_engine, answered, lab)
        print(f"no labelled container {took:.2f} s after the engine answered again")
        deadline = time.monotonic() + 10
        while lab.watchdogs() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert lab.watchdogs() == [], "the watchdog did not exit after its sweep"
    finally:
        lab.kill()


def test_engine_frozen_mid_run_ends_the_run_on_time(own_engine: OwnEngine, tmp_path: Path) -> None:
    """dockerd SIGSTOPped mid-burst: the container runtime's launches fail (timed out) and the
    run ends by itself, non-zero, while the engine is still frozen; after SIGCONT nothing stays."""
    lab = LabProcess(own_engine, tmp_path, ["-n", "500", "--warmup", "0"])
    try:
        lab.wait_for_containers(1)
        time.sleep(1.0)
        own_engine.signal(signal.SIGSTOP)
        frozen_at = time.monotonic()
        # 3 failed launches (each the timeout + at most 0.5 s), then close gives up after the
        # timeout + 1 s: ~15 s; allow for a loaded machine.
        try:
            code = lab.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the run did not end while the engine was frozen: {lab.out.read_text()}")
        took = time.monotonic() - frozen_at
        output = lab.out.read_text()
        assert code != 0 and "timed out" in output and "Traceback" not in output, output
        print(f"run ended {took:.1f} s after the engine froze")
        own_engine.signal(signal.SIGCONT)
        _wait_gone(own_engine, time.monotonic(), lab)
    finally:
        own_engine.signal(signal.SIGCONT)
        lab.kill()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_exits_within_5_s_while_the_engine_is_frozen(
    own_engine: OwnEngine, tmp_path: Path, sig: signal.Signals
) -> None:
    lab = LabProcess(own_engine, tmp_path, ["--scenario", "ramp", "--resident", "container=200"])
    try:
        lab.wait_for_containers(3)
        own_engine.signal(signal.SIGSTOP)
        time.sleep(1.0)  # a launch is now stuck in a Docker call
        sent = time.monotonic()
        lab.process.send_signal(sig)
        try:
            code = lab.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pytest.fail(f"edgelab run did not exit within 5 s of {sig.name} with the engine frozen")
        took = time.monotonic() - sent
        output = lab.out.read_text()
        assert code == 130 and "Traceback" not in output, output
        print(f"{sig.name} with a frozen engine: exited in {took:.2f} s")
        own_engine.signal(signal.SIGCONT)
        _wait_gone(own_engine, time.monotonic(), lab)
    finally:
        own_engine.signal(signal.SIGCONT)
        lab.kill()


@pytest.mark.parametrize("wait_for_engine", [True, False], ids=["created", "never-created"])
def test_watchdog_waits_for_an_absent_engine_only_once_containers_were_made(
    monkeypatch: pytest.MonkeyPatch, wait_for_engine: bool
) -> None:
    """A session that created containers keeps sweeping while no engine listens, until its
    bound (ENGINE_WAIT_S in the watchdog; 4 s here); one that never created any gives up
    after ABSENT_GIVE_UP_S."""
    from edgelab.watchdog import ABSENT_GIVE_UP_S, sweep_session

    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    bound_s = 4.0
    started = time.monotonic()
    assert sweep_session("0123456789ab", False, started + bound_s, wait_for_engine) == 0
    took = time.monotonic() - started
    if wait_for_engine:
        assert bound_s - 0.1 <= took <= bound_s + 1.0, took
    else:
        assert ABSENT_GIVE_UP_S <= took < bound_s - 0.5, took


def test_clean_says_which_live_sessions_it_removed_from(own_engine: OwnEngine, tmp_path: Path) -> None:
    """``edgelab clean`` removes every labelled container (it is explicit), and says how many of
    them belonged to a lab that is still running, naming its session."""
    lab = LabProcess(own_engine, tmp_path, ["--scenario", "ramp", "--resident", "container=200"])
    try:
        lab.wait_for_containers(2)
        sessions = {
            (c.get("Labels") or {}).get("edgelab.session")
            for c in own_engine.client().api.containers(all=True, filters={"label": "edgelab.session"})
        }
        done = subprocess.run(
            [sys.executable, "-m", "edgelab", "clean"],
            env={**os.environ, "DOCKER_HOST": own_engine.host}, capture_output=True, text=True, timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert "live session" in done.stdout, done.stdout
        assert all(sid in done.stdout for sid in sessions), (sessions, done.stdout)
    finally:
        lab.kill()
        _wait_gone(own_engine, time.monotonic(), lab)
