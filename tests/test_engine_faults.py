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

import os
import socket
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
            # One Docker call that times out, plus at most one more (removing what was created).
            took = done_at - sample.started_at
            assert took <= 2 * (API_TIMEOUT_S + 1), f"a failed launch took {took:.1f} s"
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
