"""Your own image on the container rungs (issue 13): a program no one here wrote.

The image is Debian's static busybox FROM scratch (``tests/fixtures/busybox-image``), built
once per session and labelled so it can be found and removed. Its entrypoint is the command
convention: the request on stdin, the answer on stdout, exit 0. The answers are checked
against hashlib; bad input (an image the engine lacks, a non-zero exit, a command that never
exits, output without end) is one line each, and no container is left behind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgelab.errors import LaunchFailed
from edgelab.lab import Lab, Settings
from edgelab.runtimes import create_runtime
from edgelab.runtimes.base import Launch, StoppedInstance
from edgelab.runtimes.container import ContainerRuntime
from edgelab.runtimes.container.command import blocked_reading_stdin
from edgelab.session import SESSION_LABEL, Session
from edgelab.workloads import Function, function_workload

pytestmark = pytest.mark.usefixtures("docker_client")

FIXTURE = Path(__file__).parent / "fixtures" / "busybox-image"
BUSYBOX = Path("/bin/busybox")
REPOSITORY = "edgelab-test-busybox"
#: Images built by these tests carry it (``docker image prune --filter label=...`` finds them).
TEST_IMAGE_LABEL = "edgelab.test-image"
#: tag -> the Dockerfile in the fixture that builds it.
VARIANTS = {
    "sha256": "Dockerfile", "exit3": "Dockerfile.exit3", "sleep": "Dockerfile.sleep",
    "yes": "Dockerfile.yes", "env": "Dockerfile.env",
}  # fmt: skip
REQUEST = b"measured by a program no one here wrote\n"


def expected(request: bytes) -> bytes:
    """What ``busybox sha256sum`` prints for its stdin."""
    return (hashlib.sha256(request).hexdigest() + "  -\n").encode()


@pytest.fixture(scope="session")
def busybox_images(docker_client: Any) -> dict[str, str]:
    """tag -> image reference of each variant, built once (reused if present), nothing pulled."""
    import docker

    if not BUSYBOX.is_file():
        pytest.skip("no /bin/busybox (apt-get install busybox-static)")
    refs: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="edgelab-test-busybox-") as context:
        shutil.copy(BUSYBOX, Path(context) / "busybox")
        for name in VARIANTS.values():
            shutil.copy(FIXTURE / name, Path(context) / name)
        for tag, dockerfile in VARIANTS.items():
            ref = f"{REPOSITORY}:{tag}"
            try:
                docker_client.images.get(ref)
            except docker.errors.ImageNotFound:
                docker_client.images.build(
                    path=context, dockerfile=dockerfile, tag=ref, pull=False, rm=True,
                    labels={TEST_IMAGE_LABEL: "1"},
                )  # fmt: skip
            refs[tag] = ref
    return refs


def _left(client: Any, session_id: str) -> list[str]:
    found = client.api.containers(all=True, filters={"label": f"{SESSION_LABEL}={session_id}"})
    return [c["Names"][0] for c in found]


def _run(images: str, settings: dict[str, Any]) -> tuple[Any, Lab]:
    function = Function(image=images)
    lab = Lab()
    try:
        result = lab.run(Settings(workload=images, function=function, warmup=0, **settings))
    finally:
        lab.close()
    return result, lab


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Launch]]:
    """Every launch of the unpooled container rungs (their bodies: the lab keeps digests);
    their bursts' ``cold_starts`` goes through ``launch`` too."""
    launches: list[Launch] = []
    original = ContainerRuntime.launch

    def recording(self: ContainerRuntime, *args: Any, **kwargs: Any) -> Launch:
        launch = original(self, *args, **kwargs)
        launches.append(launch)
        return launch

    monkeypatch.setattr(ContainerRuntime, "launch", recording)
    yield launches


def test_image_answers_as_hashlib_on_container_and_cli(
    busybox_images: dict[str, str], docker_client: Any, recorded: list[Launch]
) -> None:
    ref = busybox_images["sha256"]
    result, lab = _run(ref, {"runtimes": ("container", "container:cli"), "count": 2, "request": REQUEST})
    assert len(recorded) == 4
    for launch in recorded:
        assert launch.response.ok and launch.response.body == expected(REQUEST)
        assert isinstance(launch.instance, StoppedInstance)  # the command has exited: answered once
        assert launch.exit_ns is not None and launch.exit_ns >= launch.startup_ns > 0
    for name in ("container", "container:cli"):
        runtime = result.runtimes[name]
        assert runtime.error is None and len(runtime.measured) == 2
        exported = runtime.to_json()
        assert exported["exit_us"]["p50"] >= exported["startup_us"]["p50"] > 0
        assert sum(runtime.measured[0].phases_ns.values()) == runtime.measured[0].startup_ns
        prepared = result.metadata["preparation"][name]["image"]
        size = docker_client.images.get(ref).attrs["Size"]
        assert f"{size:,} bytes" in prepared and ref in prepared
    assert result.metadata["responses_identical"] is True
    assert "first stdout byte" in result.runtimes["container"].startup_includes
    assert _left(docker_client, lab.session.id) == []


def test_a_missing_image_is_one_line_never_pulled(docker_client: Any) -> None:
    ref = "edgelab-test-busybox:never-built"
    result, lab = _run(ref, {"runtimes": ("container", "container:created"), "count": 1})
    for name in ("container", "container:created"):
        error = result.runtimes[name].error
        assert error == (
            f"image '{ref}' is not in the engine: build it (docker build -t {ref} .) or load it"
            " (docker load -i edgelab-test-busybox.tar); edgelab never pulls"
        )
        assert result.runtimes[name].samples == []
    assert _left(docker_client, lab.session.id) == []
    done = subprocess.run(
        [sys.executable, "-m", "edgelab", "run", "--image", ref, "--runtimes", "container", "-n", "1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgelab: ") and "never pulls" in lines[0], done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_a_non_zero_exit_is_a_failed_launch_with_status_and_first_stderr_line(
    busybox_images: dict[str, str], docker_client: Any
) -> None:
    result, lab = _run(busybox_images["exit3"], {"runtimes": ("container",), "count": 1})
    [sample] = result.runtimes["container"].samples
    assert not sample.ok
    assert sample.error is not None and sample.error.endswith("exited with code 3: no such thing")
    assert _left(docker_client, lab.session.id) == []


def test_a_command_that_never_exits_times_out_and_paused_says_why_it_does_not_apply(
    busybox_images: dict[str, str], docker_client: Any
) -> None:
    ref = busybox_images["sleep"]
    result, lab = _run(ref, {"runtimes": ("container", "container:paused"), "count": 1, "timeout_s": 1.0})
    [sample] = result.runtimes["container"].samples
    assert not sample.ok and sample.error is not None
    assert "timed out after 1 s" in sample.error and "\n" not in sample.error
    # sleep never reads its stdin: no container of it is "paused in its first read"
    paused = result.runtimes["container:paused"]
    assert paused.samples == [] and paused.error is not None
    assert "did not block reading its stdin" in paused.error
    assert _left(docker_client, lab.session.id) == []


def test_output_over_the_cap_is_killed_with_one_line(
    busybox_images: dict[str, str], docker_client: Any
) -> None:
    workload = dataclasses.replace(
        function_workload("yes", Function(image=busybox_images["yes"])), max_response_bytes=64 << 10
    )
    rt = create_runtime("container", Session(), client=docker_client)
    try:
        rt.prepare(workload)
        with pytest.raises(LaunchFailed, match=r"output exceeded 64 KiB \(killed\)$"):
            rt.launch(workload, b"", 10)
    finally:
        rt.close()
    assert _left(docker_client, rt.session.id) == []


def test_a_ramp_leaves_containers_waiting_for_their_request(
    busybox_images: dict[str, str], docker_client: Any
) -> None:
    workload = function_workload("bb", Function(image=busybox_images["sha256"]))
    rt = create_runtime("container", Session(), client=docker_client)
    try:
        rt.prepare(workload)
        launches = rt.launch_many(workload, REQUEST, 2, 10)
        assert [launch.waiting for launch in launches] == [True, True]
        assert all(launch.response.body == b"" and launch.exit_ns is None for launch in launches)
        instances = [launch.instance for launch in launches]
        # each is blocked in read(2) on its stdin: an idle instance, not one at work
        assert all(blocked_reading_stdin(instance.pid()) for instance in instances)  # type: ignore[attr-defined]
        assert rt.pss_bytes(instances) > 0
        memory = rt.host_memory_bytes(instances)
        assert memory is not None and memory > 0
        # a waiting instance answers its one request by the convention, then it is gone
        assert instances[0].request(REQUEST, 10).body == expected(REQUEST)
        with pytest.raises(LaunchFailed, match="answers once"):
            instances[0].request(REQUEST, 10)
        rt.stop_many(instances)
        assert rt.live_instances() == []
    finally:
        rt.close()
    assert _left(docker_client, rt.session.id) == []


def test_paused_freezes_the_image_blocked_in_its_read_of_stdin_and_answers_on_unpause(
    busybox_images: dict[str, str], docker_client: Any
) -> None:
    workload = function_workload("bb", Function(image=busybox_images["sha256"]))
    rt = create_runtime("container:paused", Session(), client=docker_client)
    try:
        rt.prepare(workload)  # the ready pool: created, started, blocked reading stdin, paused
        [ready] = rt._pool.ready()  # type: ignore[attr-defined]
        state = docker_client.api.inspect_container(ready.container_id)["State"]
        assert state["Paused"] is True
        assert blocked_reading_stdin(ready.pid())
        launch = rt.launch(workload, REQUEST, 10)
        assert launch.response.body == expected(REQUEST)
        assert list(launch.phases_ns) == ["unpause", "first_response"]
        assert launch.exit_ns is not None and launch.exit_ns >= launch.startup_ns
    finally:
        rt.close()
    assert _left(docker_client, rt.session.id) == []


def test_created_starts_a_ready_container_of_the_image_and_a_failed_one_is_removed(
    busybox_images: dict[str, str], docker_client: Any
) -> None:
    """The created pool on an image: the taken container is started, answers, is removed
    inside the launch and the pool refilled after it; one whose command fails is one line,
    removed while the runtime is open, and the pool is not refilled for it."""
    import time

    good = function_workload("bb", Function(image=busybox_images["sha256"]))
    bad = function_workload("bb3", Function(image=busybox_images["exit3"]))
    rt = create_runtime("container:created", Session(), client=docker_client)
    try:
        rt.prepare(good)
        launch = rt.launch(good, REQUEST, 10)
        assert launch.response.body == expected(REQUEST)
        assert isinstance(launch.instance, StoppedInstance)
        assert list(launch.phases_ns) == ["start", "first_response"]
        assert sum(launch.phases_ns.values()) == launch.startup_ns
        assert launch.exit_ns is not None and launch.exit_ns >= launch.startup_ns
        [refill] = rt.live_instances()
        state = docker_client.api.inspect_container(refill.container_id)["State"]  # type: ignore[attr-defined]
        assert state["Status"] == "created"
        rt.close()
        assert _left(docker_client, rt.session.id) == []
        rt = create_runtime("container:created", Session(), client=docker_client)
        rt.prepare(bad)
        with pytest.raises(LaunchFailed) as caught:
            rt.launch(bad, REQUEST, 10)
        assert str(caught.value).endswith("exited with code 3: no such thing"), caught.value
        until = time.monotonic() + 10.0
        while (_left(docker_client, rt.session.id) or rt.live_instances()) and time.monotonic() < until:
            time.sleep(0.05)
        assert _left(docker_client, rt.session.id) == [] and rt.live_instances() == []
    finally:
        rt.close()
    assert _left(docker_client, rt.session.id) == []


@pytest.mark.parametrize("rung", ["container", "container:cli"])
def test_the_image_gets_the_granted_env_only_and_runs_as_nobody(
    rung: str, busybox_images: dict[str, str], docker_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGELAB_TEST_UNGRANTED", "the lab's own, never the function's")
    function = Function(image=busybox_images["env"], env=(("GREETING", "hi there"),))
    workload = function_workload("env", function)
    rt = create_runtime(rung, Session(), client=docker_client)
    try:
        rt.check()
        rt.prepare(workload)
        lines = rt.launch(workload, b"", 20).response.body.decode().splitlines()
    finally:
        rt.close()
    assert "GREETING=hi there" in lines
    assert not any(line.startswith("EDGELAB_TEST_UNGRANTED=") for line in lines)
    assert lines[-1] == "65534"  # the image names no user: nobody, as the built-ins run
    assert _left(docker_client, rt.session.id) == []
