"""The container rungs (cli, created, paused, gvisor, crun) against the real engine.

Each usable rung must answer byte for byte what ``container`` answers; the ready pools of
``created`` and ``paused`` must leave no container after close, nor after the lab is
SIGKILLed (the watchdog sweeps by label); an OCI runtime the engine lacks, or crun on a
hybrid cgroup host, must be one line with a fix; a runaway workload under gVisor is stopped
at its timeout like anywhere else.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from edgelab.errors import LaunchTimeout, RuntimeUnavailable
from edgelab.runtimes import create_runtime
from edgelab.runtimes.base import Runtime
from edgelab.runtimes.container import ContainerRuntime, engine, strategies
from edgelab.session import OWNER_PID_LABEL, SESSION_LABEL, Session
from edgelab.workloads import get_workload

pytestmark = pytest.mark.usefixtures("docker_client")

RUNGS = ("container:cli", "container:created", "container:paused", "container:gvisor", "container:crun")
#: (workload, request): hello echoes its request back; sha256 hashes it.
REQUESTS = (("hello", b"ladder"), ("sha256", b"the same bytes on every rung"))
KILL_CLEANUP_S = 15.0


def _labelled(client: Any, label: str) -> list[dict[str, Any]]:
    return list(client.api.containers(all=True, filters={"label": label}))


@pytest.fixture(scope="module")
def expected(docker_client: Any) -> dict[tuple[str, bytes], tuple[int, bytes]]:
    """What plain ``container`` answers to each request, first launch and a second request."""
    rt = create_runtime("container", Session(), client=docker_client)
    answers: dict[tuple[str, bytes], tuple[int, bytes]] = {}
    try:
        for name, request in REQUESTS:
            launch = rt.launch(get_workload(name), request, 30)
            again = launch.instance.request(request, 10)
            assert again.body == launch.response.body
            answers[(name, request)] = (launch.response.status, launch.response.body)
            launch.instance.stop()
    finally:
        rt.close()
    return answers


@pytest.fixture(params=RUNGS)
def rung(request: pytest.FixtureRequest, docker_client: Any) -> Iterator[Runtime]:
    rt = create_runtime(request.param, Session(), client=docker_client)
    try:
        rt.check()
    except RuntimeUnavailable as exc:
        pytest.skip(f"{request.param} unusable here: {exc}")
    try:
        yield rt
    finally:
        rt.close()


def test_each_rung_answers_byte_identically_to_container(
    rung: Runtime, expected: dict[tuple[str, bytes], tuple[int, bytes]]
) -> None:
    for name, request in REQUESTS:
        workload = get_workload(name)
        rung.prepare(workload)
        launch = rung.launch(workload, request, 30)
        assert (launch.response.status, launch.response.body) == expected[(name, request)], rung.name
        assert launch.instance.request(request, 10).body == expected[(name, request)][1]
        # the phases are this rung's and add up to the startup (perf_counter_ns throughout)
        assert tuple(launch.phases_ns) == rung.phase_names
        assert all(v >= 0 for v in launch.phases_ns.values())
        assert abs(sum(launch.phases_ns.values()) - launch.startup_ns) < 1_000, launch.phases_ns
        assert launch.instance.runtime == rung.name
        launch.instance.stop()
    info = rung.describe()
    assert info.name == rung.name and info.family == "container"
    assert info.startup_includes == rung.startup_includes != ""


def test_ready_pools_are_labelled_and_gone_after_close(docker_client: Any) -> None:
    hello = get_workload("hello")
    session = Session()
    rungs = [create_runtime(n, session, client=docker_client) for n in ("container:created", "container:paused")]
    label = f"{SESSION_LABEL}={session.id}"
    try:
        for rt in rungs:
            rt.prepare(hello)  # the ahead-work: one ready container each, before any launch
        states = sorted(c["State"] for c in _labelled(docker_client, label))
        assert states == ["created", "paused"], states
        assert "ready pool" in rungs[1].preparation()
        launch = rungs[1].launch(hello, b"x", 30)  # takes the paused one; the pool refills
        assert launch.response.body == b"hello, x"
        assert len(_labelled(docker_client, label)) == 3
    finally:
        for rt in rungs:
            rt.close()
    assert _labelled(docker_client, label) == []


def test_sigkilled_lab_with_ready_pools_leaves_nothing(docker_client: Any, tmp_path: Path) -> None:
    """A lab ramping the pooled and CLI rungs is SIGKILLed: its watchdog removes every
    container (ready ones included, by label) and kills every docker CLI it spawned."""
    out = tmp_path / "lab.out"
    with out.open("wb") as sink:
        lab = subprocess.Popen(
            [sys.executable, "-m", "edgelab", "run", "-w", "hello", "--no-history",
             "-r", "container:cli,container:paused,container:created",
             "--scenario", "ramp", "--resident", "20"],
            stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "EDGELAB_WATCHDOG_LOG": str(tmp_path / "watchdog.log")},
        )  # fmt: skip
    label = f"{OWNER_PID_LABEL}={lab.pid}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert lab.poll() is None, out.read_text()
            clis = [p for p in psutil.process_iter(["cmdline"]) if label in (p.info["cmdline"] or [])]
            # the two ready pools (made before any ramp) and some of the CLI's containers
            if len(_labelled(docker_client, label)) >= 4 and len(clis) >= 2:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"the ramp did not reach the CLI rung: {out.read_text()}")
        lab.send_signal(signal.SIGKILL)
        lab.wait()
        deadline = time.monotonic() + KILL_CLEANUP_S
        while time.monotonic() < deadline:
            left = _labelled(docker_client, label)
            clis = [p for p in clis if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
            if not left and not clis:
                break
            time.sleep(0.2)
        assert not left and not clis, (left, clis, (tmp_path / "watchdog.log").read_text())
        # the CLI rung's --cidfile directory of the dead lab goes with the next one made
        import tempfile

        strategies.CidWatch().close()
        assert not list(Path(tempfile.gettempdir()).glob(f"edgelab-cid-{lab.pid}-*"))
    finally:
        if lab.poll() is None:
            lab.kill()
            lab.wait()
        from edgelab.runtimes.container import _remove_all

        _remove_all(docker_client, [c["Id"] for c in _labelled(docker_client, label)])


def test_an_oci_runtime_the_engine_lacks_is_one_line_with_a_fix(docker_client: Any) -> None:
    rt = ContainerRuntime(Session(), client=docker_client, oci_runtime="no-such-runtime")
    with pytest.raises(RuntimeUnavailable) as caught:
        rt.check()
    reason, fix = caught.value.reason, caught.value.fix
    assert "\n" not in reason + fix
    assert reason.startswith("the Docker engine has no OCI runtime 'no-such-runtime' registered (it lists")
    assert "runc" in reason and "daemon.json" in fix


def test_gvisor_and_crun_missing_from_the_engine_are_one_line(
    docker_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An engine without runsc or crun registered (simulated: its list holds runc only)."""
    monkeypatch.setattr(engine, "oci_runtimes", lambda client: frozenset({"runc"}))
    for name, oci in (("container:gvisor", "runsc"), ("container:crun", "crun")):
        with pytest.raises(RuntimeUnavailable) as caught:
            create_runtime(name, Session(), client=docker_client).check()
        assert str(caught.value).startswith(f"{name}: the Docker engine has no OCI runtime '{oci}'")
        assert "\n" not in str(caught.value)
    assert '"runtimeArgs": ["--network=none"]' in engine.registration_fix("runsc")


def test_crun_on_a_hybrid_cgroup_host_names_the_controllers_and_the_mount(tmp_path: Path) -> None:
    (tmp_path / "unified").mkdir()
    (tmp_path / "unified" / "cgroup.controllers").write_text("hugetlb\n")
    reason, fix = engine.hybrid_cgroup_problem("crun", tmp_path) or ("", "")
    assert reason == "crun refuses cgroups in hybrid mode while cgroup v2 holds controllers (hugetlb)"
    assert f"mount -t cgroup -o hugetlb cgroup {tmp_path}/hugetlb" in fix
    assert engine.hybrid_cgroup_problem("runsc", tmp_path) is None
    (tmp_path / "unified" / "cgroup.controllers").write_text("")
    assert engine.hybrid_cgroup_problem("crun", tmp_path) is None  # v2 holds none: crun runs
    assert engine.hybrid_cgroup_problem("crun", tmp_path / "absent") is None  # not hybrid


def test_the_cli_rung_types_the_same_hardening_as_the_sdk(docker_client: Any) -> None:
    argv = strategies.cli_argv("docker", "n", "img:tag", {"k": "v"}, 64 << 20, Path("/tmp/x.cid"), "runsc")
    text = " ".join(argv)
    for flag in ("run --rm -i", "--network none", "--read-only", "--cap-drop ALL",
                 "--security-opt no-new-privileges", "--pids-limit 64", f"--memory {64 << 20}",
                 f"--memory-swap {64 << 20}", "--ipc none", "--ulimit msgqueue=0:0",
                 "--log-driver none", "--user 65534:65534", "--label k=v", "--runtime runsc"):  # fmt: skip
        assert flag in text, flag
    assert argv[-1] == "img:tag"
    config = ContainerRuntime.host_config(docker_client, 64 << 20, "runsc")
    assert config["NetworkMode"] == "none" and config["ReadonlyRootfs"] and config["CapDrop"] == ["ALL"]
    assert config["PidsLimit"] == 64 and config["IpcMode"] == "none" and config["Runtime"] == "runsc"


def test_a_runaway_workload_under_gvisor_is_stopped_at_its_timeout(docker_client: Any) -> None:
    rt = create_runtime("container:gvisor", Session(), client=docker_client)
    try:
        rt.check()
    except RuntimeUnavailable as exc:
        pytest.skip(f"container:gvisor unusable here: {exc}")
    spin = get_workload("spin")
    label = f"{SESSION_LABEL}={rt.session.id}"
    try:
        rt.prepare(spin)
        started = time.monotonic()
        with pytest.raises(LaunchTimeout, match=r"timed out after 2 s$"):
            rt.launch(spin, b"spin", 2.0)
        took = time.monotonic() - started
        assert took < 3.0, f"spin under gVisor held the launch {took:.2f} s (limit 2 s + 1 s)"
    finally:
        rt.close()
    assert _labelled(docker_client, label) == []


def test_start_docker_writes_the_runtimes_it_registers(tmp_path: Path) -> None:
    """``.ci/start-docker --configure-only`` on a fresh machine writes what this machine's
    daemon.json holds, and merges into an existing file without dropping its keys."""
    script = Path(__file__).resolve().parent.parent / ".ci" / "start-docker"
    fresh = tmp_path / "fresh" / "daemon.json"
    env = {**os.environ, "EDGELAB_DOCKER_DAEMON_JSON": str(fresh), "EDGELAB_SKIP_RUNTIME_INSTALL": "1"}
    done = subprocess.run([str(script), "--configure-only"], env=env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    written = json.loads(fresh.read_text())
    assert written == {
        "runtimes": {
            "runsc": {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=none"]},
            "crun": {"path": "/usr/bin/crun"},
        }
    }
    live = Path("/etc/docker/daemon.json")  # read only: what the lead wrote on this machine
    if live.exists():
        registered = json.loads(live.read_text()).get("runtimes", {})
        for name, entry in written["runtimes"].items():
            assert registered.get(name, entry) == entry, (name, registered)
    existing = tmp_path / "existing.json"
    existing.write_text(json.dumps({"log-level": "warn", "runtimes": {"kata": {"path": "/opt/kata"}}}))
    env["EDGELAB_DOCKER_DAEMON_JSON"] = str(existing)
    done = subprocess.run([str(script), "--configure-only"], env=env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    merged = json.loads(existing.read_text())
    assert merged["log-level"] == "warn"
    assert merged["runtimes"] == {"kata": {"path": "/opt/kata"}, **written["runtimes"]}
    again = existing.read_text()
    subprocess.run([str(script), "--configure-only"], env=env, capture_output=True, timeout=60, check=True)
    assert existing.read_text() == again  # idempotent: nothing rewritten


#: What the probe must find denied on every container rung (list_root and read_env may differ:
#: gVisor's root holds a /dev of its own).
DENIED = ("root", "read_file", "read_shadow", "parent_env", "parent_mem", "docker_socket", "network",
          "write_tmp", "write_dev_shm", "write_dev_mqueue", "write_root", "file_left")  # fmt: skip


def test_gvisor_keeps_the_hardening_edgelab_probe_checks(docker_client: Any) -> None:
    """Under runsc the read-only root leaves a writable /tmp of gVisor's own unless the lab
    mounts one: the probe must find everything denied there as under runc."""
    rt = create_runtime("container:gvisor", Session(), client=docker_client)
    try:
        rt.check()
    except RuntimeUnavailable as exc:
        pytest.skip(f"container:gvisor unusable here: {exc}")
    probe = get_workload("probe")
    try:
        rt.prepare(probe)
        launch = rt.launch(probe, probe.default_request, 30)
        found = dict(line.split("=", 1) for line in launch.response.body.decode().splitlines() if "=" in line)
    finally:
        rt.close()
    for capability in DENIED:
        assert found.get(capability, "").startswith("denied"), (capability, found.get(capability))


def test_launch_many_is_all_or_nothing(docker_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The third launch of a chunk fails: the two made before it are removed (the base
    contract; the ramp would not know them), the ready pool's container stays."""
    from edgelab.errors import LaunchFailed

    rt = create_runtime("container:paused", Session(), client=docker_client)
    hello = get_workload("hello")
    real, calls = strategies.pooled_launch, []

    def third_fails(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise LaunchFailed("container:paused: the third launch fails (test)")
        return real(*args, **kwargs)

    monkeypatch.setattr(strategies, "pooled_launch", third_fails)
    label = f"{SESSION_LABEL}={rt.session.id}"
    try:
        rt.prepare(hello)
        with pytest.raises(LaunchFailed, match="third launch"):
            rt.launch_many(hello, b"x", 4, 30)
        assert [c["State"] for c in _labelled(docker_client, label)] == ["paused"]
        assert len(rt.live_instances()) == 1
    finally:
        rt.close()
    assert _labelled(docker_client, label) == []


def test_doctor_gives_one_line_per_oci_runtime_the_engine_lacks(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgelab.commands import diagnose

    monkeypatch.setattr(engine, "oci_runtimes", lambda client: frozenset({"runc"}))
    rows = {name: (usable, reason, fix) for name, usable, reason, fix, _ in diagnose()}
    for name, oci in (("container:gvisor", "runsc"), ("container:crun", "crun")):
        usable, reason, fix = rows[name]
        assert not usable and "\n" not in reason + fix, rows[name]
        assert reason.startswith(f"the Docker engine has no OCI runtime '{oci}' registered"), reason
        assert "daemon.json" in fix
    assert rows["container:paused"][0] and rows["container:cli"][0], rows  # runc's rungs still run


@pytest.mark.parametrize("name", ["container:paused", "container:created"])
def test_pooled_cold_starts_refill_after_each_removal(docker_client: Any, name: str) -> None:
    from edgelab.runtimes.base import Launch

    rt = create_runtime(name, Session(), client=docker_client)
    hello = get_workload("hello")
    label = f"{SESSION_LABEL}={rt.session.id}"
    try:
        rt.prepare(hello)
        outcomes = rt.cold_starts(hello, b"cold", 2, 30)
        assert [o.response.body for o in outcomes if isinstance(o, Launch)] == [b"hello, cold"] * 2, outcomes
        assert all(tuple(o.phases_ns) == rt.phase_names for o in outcomes if isinstance(o, Launch))
        # each started one is gone; one ready container waits for the next burst
        assert len(_labelled(docker_client, label)) == 1 and len(rt.live_instances()) == 1
    finally:
        rt.close()
    assert _labelled(docker_client, label) == []


def _gone_within(rt: Runtime, client: Any, label: str, within_s: float) -> bool:
    """Within ``within_s``, no container carries ``label`` and ``rt`` tracks none (a failed
    launch's removal runs on after the launch has returned, at most FAILED_REMOVAL_WAIT_S of
    it waited for)."""
    until = time.monotonic() + within_s
    while _labelled(client, label) or rt.live_instances():
        if time.monotonic() > until:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.parametrize(("name", "wake"), [("container:created", "start"), ("container:paused", "unpause")])
def test_a_failed_pooled_launch_is_one_line_and_removes_its_container(
    docker_client: Any, name: str, wake: str
) -> None:
    """The taken container fails at its start/unpause (removed behind the lab's back) or at
    its first request (the deadline passed): one line naming the step, the container removed
    while the runtime is open, no refill; the next launch makes its own, in the timing."""
    from edgelab.errors import LaunchFailed

    rt = create_runtime(name, Session(), client=docker_client)
    hello = get_workload("hello")
    label = f"{SESSION_LABEL}={rt.session.id}"
    try:
        rt.prepare(hello)
        [ready] = _labelled(docker_client, label)
        docker_client.api.remove_container(ready["Id"], force=True)
        with pytest.raises(LaunchFailed) as caught:
            rt.launch(hello, b"x", 30)
        message = str(caught.value)
        assert message.startswith(f"{name}: docker {wake} failed: ") and "\n" not in message, message
        assert _gone_within(rt, docker_client, label, 10.0), rt.live_instances()
        launch = rt.launch(hello, b"again", 30)  # nothing ready: made now, inside its timing
        assert launch.response.body == b"hello, again"
        assert tuple(launch.phases_ns) == rt.phase_names
        assert abs(sum(launch.phases_ns.values()) - launch.startup_ns) < 1_000, launch.phases_ns
        launch.instance.stop()
        assert len(_labelled(docker_client, label)) == 1  # the refill
        with pytest.raises(LaunchTimeout, match=r"timed out after 0\.001 s$"):
            rt.launch(hello, b"late", 0.001)
        assert _gone_within(rt, docker_client, label, 10.0), _labelled(docker_client, label)
    finally:
        rt.close()
    assert _labelled(docker_client, label) == []


def test_a_fork_bomb_under_gvisor_ends_the_sandbox_within_its_timeout(docker_client: Any) -> None:
    """Under runsc the pids limit counts the sandbox's own threads: the fork bomb ends the
    sandbox (exit code 2) rather than meeting EAGAIN. Bounded, said in one line, nothing left."""
    from edgelab.errors import LaunchFailed

    rt = create_runtime("container:gvisor", Session(), client=docker_client)
    try:
        rt.check()
    except RuntimeUnavailable as exc:
        pytest.skip(f"container:gvisor unusable here: {exc}")
    bomb = get_workload("forkbomb")
    label = f"{SESSION_LABEL}={rt.session.id}"
    try:
        rt.prepare(bomb)
        started = time.monotonic()
        with pytest.raises(LaunchFailed) as caught:
            rt.launch(bomb, bomb.default_request, bomb.timeout_s)
        assert time.monotonic() - started < bomb.timeout_s + 1.5
        message = str(caught.value)
        assert "\n" not in message
        assert "timed out" in message or "exited with code 2 (under runsc" in message, message
    finally:
        rt.close()
    assert _labelled(docker_client, label) == []


def test_gvisor_memory_counts_every_process_of_the_sandbox(docker_client: Any) -> None:
    """runsc's gofer is the shim's child beside the sandbox, not the sandbox's: PSS must
    count it too (every process of the container's cgroup)."""
    rt = create_runtime("container:gvisor", Session(), client=docker_client)
    try:
        rt.check()
    except RuntimeUnavailable as exc:
        pytest.skip(f"container:gvisor unusable here: {exc}")
    hello = get_workload("hello")
    try:
        rt.prepare(hello)
        instance = rt.launch(hello, b"x", 30).instance
        files = instance.memory_files()  # type: ignore[attr-defined]
        if files is None:
            pytest.skip("the engine's cgroups are not visible here")
        procs = [int(p) for p in (files[0].parent / "cgroup.procs").read_text().split()]
        assert len(procs) >= 2, procs  # the sandbox and its gofer at least
        in_cgroup = sum(psutil.Process(pid).memory_full_info().pss for pid in procs)
        assert rt.pss_bytes([instance]) >= in_cgroup * 0.9, (rt.pss_bytes([instance]), in_cgroup)
    finally:
        rt.close()
