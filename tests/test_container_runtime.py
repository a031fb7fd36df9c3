"""The container runtime against a real Docker engine and real FROM-scratch images.

Most tests use a tiny echo workload compiled here with zig (it answers each frame with its
bytes, and can be told to hang or crash), so they do not depend on any module under modules/.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from edgelab.errors import LaunchFailed, LaunchTimeout, RuntimeUnavailable
from edgelab.runtimes.container import (
    ContainerInstance,
    ContainerRuntime,
    _context_host,
    build_image,
    remove_labelled,
)
from edgelab.session import SESSION_LABEL, Session
from edgelab.workloads import Workload

ECHO_C = r"""
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static int rd(void *b, size_t n) {
  size_t g = 0;
  while (g < n) { ssize_t r = read(0, (char *)b + g, n - g); if (r <= 0) return g == 0 ? 0 : -1; g += r; }
  return 1;
}
static void wr(const void *b, size_t n) {
  size_t g = 0;
  while (g < n) { ssize_t r = write(1, (const char *)b + g, n - g); if (r <= 0) _exit(2); g += r; }
}
int main(void) {
  for (;;) {
    uint8_t h[4]; int r = rd(h, 4); if (r == 0) return 0; if (r < 0) return 3;
    uint32_t n = h[0] | h[1] << 8 | h[2] << 16 | (uint32_t)h[3] << 24;
    char *p = malloc(n ? n : 1); if (!p) return 4;
    if (n && rd(p, n) != 1) return 3;
    if (n == 4 && !memcmp(p, "hang", 4)) for (;;) pause();
    if (n == 5 && !memcmp(p, "crash", 5)) { write(2, "crashing on purpose\n", 20); _exit(7); }
    if (n == 5 && !memcmp(p, "flood", 5)) {  /* announces 4 GiB - 1 and streams it */
      static char z[65536]; uint8_t o[5] = {0xff, 0xff, 0xff, 0xff, 0}; wr(o, 5);
      for (;;) wr(z, sizeof z);
    }
    if (n > 4 && !memcmp(p, "big:", 4)) {  /* answers that many bytes */
      uint32_t size = (uint32_t)strtoul(p + 4, 0, 10); static char z[65536];
      uint8_t o[5] = {size, size >> 8, size >> 16, size >> 24, 0}; wr(o, 5);
      while (size) { uint32_t k = size < sizeof z ? size : sizeof z; wr(z, k); size -= k; }
      free(p); continue;
    }
    if (n == 6 && !memcmp(p, "writes", 6)) {  /* tries to leave something behind, says errno */
      static const char *paths[] = {"/dev/shm/x", "/dev/mqueue/x", "/tmp/x", "/x", "/dev/x"};
      char out[512]; int len = 0;
      for (unsigned i = 0; i < sizeof paths / sizeof *paths; i++) {
        int fd = open(paths[i], O_CREAT | O_WRONLY | O_EXCL, 0600);
        int err = fd < 0 ? errno : 0; if (fd >= 0) { write(fd, "x", 1); close(fd); }
        len += snprintf(out + len, sizeof out - len, "%s=%d\n", paths[i], err);
      }
      mqd_t q = mq_open("/edgelab", O_CREAT | O_WRONLY, 0600, 0);
      len += snprintf(out + len, sizeof out - len, "mq_open=%d\n", q == (mqd_t)-1 ? errno : 0);
      uint8_t o[5] = {len, len >> 8, 0, 0, 0}; wr(o, 5); wr(out, len); free(p); continue;
    }
    uint8_t o[5] = {n, n >> 8, n >> 16, n >> 24, 0}; wr(o, 5); wr(p, n); free(p);
  }
}
"""

pytestmark = pytest.mark.docker


ECHO_FLAGS = ("-target", "x86_64-linux-musl", "-static", "-O2", "-s")


@pytest.fixture(scope="session")
def echo_binary() -> Path:
    """ECHO_C built by ``zig cc`` against its bundled musl, cached by source, flags and zig
    version in the user cache dir (as test_wasi's greet.c and the built-ins' builds are): zig's
    own cache is keyed by the zig install it was built with, so every fresh clone's new .venv built musl
    again (~35 s here, 41 s in CI) for the same 25 KB binary."""
    from edgelab.build import _zig_env, cache_dir, zig_version

    key = hashlib.sha256("\0".join([ECHO_C, *ECHO_FLAGS, zig_version()]).encode()).hexdigest()[:16]
    binary = cache_dir() / "test-fixtures" / f"echo-{key}"
    if not binary.exists():
        binary.parent.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=".echo-", dir=binary.parent))
        try:
            source = folder / "echo.c"
            source.write_text(ECHO_C)
            temp = folder / "echo"
            done = subprocess.run(
                [sys.executable, "-m", "ziglang", "cc", *ECHO_FLAGS, "-o", str(temp), str(source)],
                env=_zig_env(),
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert done.returncode == 0, done.stderr[-2000:]
            os.replace(temp, binary)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return binary


@pytest.fixture(scope="session")
def echo_image(docker_client: Any, echo_binary: Path) -> str:
    if docker_client.info().get("Architecture") not in ("x86_64", "amd64"):
        pytest.skip("the test echo binary is built for x86_64 only")
    digest = hashlib.sha256(echo_binary.read_bytes()).hexdigest()[:16]
    return build_image(docker_client, "echotest", echo_binary, f"edgelab-test/echo:{digest}")


@pytest.fixture
def echo_workload(tmp_path: Path) -> Workload:
    return Workload(
        name="echotest",
        description="echoes each request",
        directory=tmp_path,
        sources=(),
        default_request=b"hello",
        max_request_bytes=16 << 20,
        timeout_s=10.0,
        memory_limit_bytes=64 << 20,
    )


@pytest.fixture
def runtime(docker_client: Any, echo_image: str, echo_workload: Workload) -> Any:
    rt = ContainerRuntime(Session(), client=docker_client)
    rt.use_image(echo_workload, echo_image)
    yield rt
    rt.close()
    assert session_containers(docker_client, rt.session) == []


def session_containers(client: Any, session: Session) -> list[dict]:
    return client.api.containers(all=True, filters={"label": f"{SESSION_LABEL}={session.id}"})


def test_launch_answers_first_request(runtime: ContainerRuntime, echo_workload: Workload) -> None:
    launch = runtime.launch(echo_workload, b"hello \x00\n world", timeout_s=20)
    assert launch.response.status == 0
    assert launch.response.body == b"hello \x00\n world"
    assert tuple(launch.phases_ns) == runtime.phase_names
    assert all(v > 0 for v in launch.phases_ns.values())
    assert launch.startup_ns == sum(launch.phases_ns.values())
    assert runtime.image_sizes_bytes["echotest"] > 0


def test_resident_instance_answers_more(runtime: ContainerRuntime, echo_workload: Workload) -> None:
    instance = runtime.launch(echo_workload, b"first", timeout_s=20).instance
    for payload in (b"", b"second", bytes(range(256)), b"\n" * 1000):
        assert instance.request(payload, timeout_s=10).body == payload


def test_multi_mib_request_round_trips(runtime: ContainerRuntime, echo_workload: Workload) -> None:
    payload = os.urandom(6 * 1024 * 1024 + 123)
    launch = runtime.launch(echo_workload, payload, timeout_s=30)
    assert launch.response.body == payload
    assert launch.instance.request(payload[::-1], timeout_s=30).body == payload[::-1]


def test_hardening_and_labels_are_applied(
    runtime: ContainerRuntime, echo_workload: Workload, docker_client: Any
) -> None:
    instance = runtime.launch(echo_workload, b"x", timeout_s=20).instance
    assert isinstance(instance, ContainerInstance)
    attrs = docker_client.api.inspect_container(instance.container_id)
    host = attrs["HostConfig"]
    assert host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["PidsLimit"] == 64
    assert host["Memory"] == echo_workload.memory_limit_bytes
    assert host["AutoRemove"] is False
    assert attrs["Config"]["User"] == "65534:65534"
    assert attrs["Config"]["Tty"] is False
    labels = attrs["Config"]["Labels"]
    assert labels[SESSION_LABEL] == runtime.session.id
    assert labels["edgelab.pid"] == str(os.getpid())
    assert labels["edgelab.workload"] == "echotest"  # from the image


def test_stop_removes_container_and_is_idempotent(
    runtime: ContainerRuntime, echo_workload: Workload, docker_client: Any
) -> None:
    instance = runtime.launch(echo_workload, b"x", timeout_s=20).instance
    instance.stop()
    assert session_containers(docker_client, runtime.session) == []
    instance.stop()
    assert runtime.live_instances() == []
    with pytest.raises(LaunchFailed):
        instance.request(b"late", timeout_s=2)


def test_stop_tolerates_container_removed_elsewhere(
    runtime: ContainerRuntime, echo_workload: Workload, docker_client: Any
) -> None:
    instance = runtime.launch(echo_workload, b"x", timeout_s=20).instance
    assert isinstance(instance, ContainerInstance)
    docker_client.api.remove_container(instance.container_id, force=True)
    instance.stop()


def test_close_removes_every_container(
    docker_client: Any, echo_image: str, echo_workload: Workload
) -> None:
    rt = ContainerRuntime(Session(), client=docker_client)
    rt.use_image(echo_workload, echo_image)
    try:
        launches = rt.launch_many(echo_workload, b"ramp", n=8, timeout_s=20)
        assert [launch.response.body for launch in launches] == [b"ramp"] * 8
        assert len(session_containers(docker_client, rt.session)) == 8
        started = time.monotonic()
    finally:
        rt.close()
    assert time.monotonic() - started < 20
    assert session_containers(docker_client, rt.session) == []
    assert rt.live_instances() == []


def test_remove_labelled_removes_one_session_only(
    docker_client: Any, echo_image: str, echo_workload: Workload
) -> None:
    mine, other = (ContainerRuntime(Session(), client=docker_client) for _ in range(2))
    try:
        for rt in (mine, other):
            rt.use_image(echo_workload, echo_image)
            rt.launch_many(echo_workload, b"x", n=2, timeout_s=20)
        assert remove_labelled(docker_client, mine.session.id) == 2
        assert session_containers(docker_client, mine.session) == []
        assert len(session_containers(docker_client, other.session)) == 2
        assert remove_labelled(docker_client, other.session.id) == 2
        assert remove_labelled(docker_client, other.session.id) == 0
    finally:
        mine.close()  # the containers are gone already: must not raise
        other.close()


def test_unknown_image_fails_in_one_line_and_leaves_nothing(
    docker_client: Any, echo_workload: Workload
) -> None:
    rt = ContainerRuntime(Session(), client=docker_client)
    rt.use_image(echo_workload, "edgelab-test/does-not-exist:0000")
    with pytest.raises(LaunchFailed) as info:
        rt.launch(echo_workload, b"x", timeout_s=10)
    assert "\n" not in str(info.value)
    assert "not found" in str(info.value)
    assert session_containers(docker_client, rt.session) == []
    assert rt.live_instances() == []


def test_workload_exit_before_answer_fails_and_leaves_nothing(
    runtime: ContainerRuntime, echo_workload: Workload, docker_client: Any
) -> None:
    with pytest.raises(LaunchFailed) as info:
        runtime.launch(echo_workload, b"crash", timeout_s=20)
    message = str(info.value)
    assert "\n" not in message
    assert "code 7" in message and "crashing on purpose" in message
    assert session_containers(docker_client, runtime.session) == []


def test_silent_workload_times_out_and_leaves_nothing(
    runtime: ContainerRuntime, echo_workload: Workload, docker_client: Any
) -> None:
    started = time.monotonic()
    with pytest.raises(LaunchTimeout):
        runtime.launch(echo_workload, b"hang", timeout_s=3)
    assert time.monotonic() - started < 15
    assert session_containers(docker_client, runtime.session) == []


def test_resident_request_timeout(runtime: ContainerRuntime, echo_workload: Workload) -> None:
    instance = runtime.launch(echo_workload, b"x", timeout_s=20).instance
    with pytest.raises(LaunchTimeout):
        instance.request(b"hang", timeout_s=1)
    with pytest.raises(LaunchFailed):  # the stream is mid-frame now: refuse, don't misread
        instance.request(b"y", timeout_s=1)


def test_pss_counts_each_container(runtime: ContainerRuntime, echo_workload: Workload) -> None:
    assert runtime.pss_bytes([]) == 0
    first = runtime.launch(echo_workload, b"x", timeout_s=20).instance
    second = runtime.launch(echo_workload, b"x", timeout_s=20).instance
    one = runtime.pss_bytes([first])
    two = runtime.pss_bytes([first, second])
    assert one > 0
    assert two > one


def test_check_and_versions(runtime: ContainerRuntime) -> None:
    runtime.check()
    versions = runtime.versions()
    assert versions["docker_engine"] and versions["docker_api"]


def test_check_fails_fast_without_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
    monkeypatch.delenv("DOCKER_TLS_VERIFY", raising=False)
    started = time.monotonic()
    with pytest.raises(RuntimeUnavailable) as info:
        ContainerRuntime(Session()).check()
    assert time.monotonic() - started < 4
    message = str(info.value)
    assert "\n" not in message
    assert "tcp://127.0.0.1:1" in message and "DOCKER_HOST" in message


def test_check_reports_missing_socket(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    with pytest.raises(RuntimeUnavailable) as info:
        ContainerRuntime(Session()).check()
    assert "no Docker socket" in str(info.value)


@pytest.mark.parametrize("current", ["lab", None])
def test_context_host_reads_current_context(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, current: str | None
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    (tmp_path / "config.json").write_text(json.dumps({"currentContext": current}))
    meta = tmp_path / "contexts" / "meta" / hashlib.sha256(b"lab").hexdigest()
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(
        json.dumps({"Name": "lab", "Endpoints": {"docker": {"Host": "unix:///run/lab.sock"}}})
    )
    assert _context_host() == ("unix:///run/lab.sock" if current else None)


def test_module_does_not_import_docker() -> None:
    code = "import sys, edgelab.runtimes.container; print('docker' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_ensure_image_for_a_real_workload(docker_client: Any) -> None:
    build = pytest.importorskip("edgelab.build")
    from edgelab.runtimes.container import ensure_image, image_tag
    from edgelab.workloads import load_workloads

    workloads = load_workloads()
    if not workloads:
        pytest.skip("no workload under modules/")
    workload = next(iter(workloads.values()))
    tag = ensure_image(docker_client, workload)
    assert tag == image_tag(workload, build.source_hash(workload))
    image = docker_client.images.get(tag)
    assert image.labels["edgelab.workload"] == workload.name
    assert image.labels["edgelab.image"] == "1"
    assert image.attrs["Config"]["User"] == "65534:65534"
    started = time.monotonic()
    assert ensure_image(docker_client, workload) == tag
    assert time.monotonic() - started < 2  # reused, not rebuilt
    rt = ContainerRuntime(Session(), client=docker_client)
    try:
        rt.prepare(workload)
        launch = rt.launch(workload, workload.default_request, timeout_s=workload.timeout_s)
        assert launch.response.status == 0
    finally:
        rt.close()


# -- bounded responses, nothing writable, memory as docker stats reads it ---------------------
def _rss_bytes() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def test_a_flood_is_cut_at_the_cap_and_the_lab_stays_flat(
    runtime: ContainerRuntime, echo_workload: Workload, docker_client: Any
) -> None:
    """A workload announcing 4 GiB and streaming it: the launch fails in one line naming the
    cap, the container is removed, and the lab's memory does not grow by the flood."""
    runtime.launch(echo_workload, b"warm", timeout_s=20).instance.stop()
    before = _rss_bytes()
    started = time.monotonic()
    with pytest.raises(LaunchFailed) as info:
        runtime.launch(echo_workload, b"flood", timeout_s=20)
    assert time.monotonic() - started < 10
    assert "response exceeded 16 MiB" in str(info.value) and "\n" not in str(info.value)
    assert _rss_bytes() - before < 8 << 20, "the lab buffered the flood"
    assert session_containers(docker_client, runtime.session) == []


def test_a_resident_instance_past_its_cap_is_removed(
    runtime: ContainerRuntime, echo_workload: Workload, docker_client: Any
) -> None:
    from dataclasses import replace

    capped = replace(echo_workload, max_response_bytes=1 << 20)
    instance = runtime.launch(capped, b"x", timeout_s=20).instance
    assert len(instance.request(b"big:%d" % (1 << 20), timeout_s=20).body) == 1 << 20  # at the cap: fine
    with pytest.raises(LaunchFailed, match="response exceeded 1 MiB"):
        instance.request(b"big:%d" % ((1 << 20) + 1), timeout_s=20)
    deadline = time.monotonic() + 5
    while session_containers(docker_client, runtime.session) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert session_containers(docker_client, runtime.session) == []


def test_containers_cannot_write_shm_or_mqueue(runtime: ContainerRuntime, echo_workload: Workload) -> None:
    """No /dev/shm (ipc none), /dev/mqueue hidden by a read-only tmpfs, RLIMIT_MSGQUEUE 0;
    / is read-only and /dev is root's. Every write fails, each with its real errno."""
    import errno

    body = runtime.launch(echo_workload, b"writes", timeout_s=20).response.body.decode()
    found = dict(line.split("=") for line in body.splitlines())
    assert int(found["/dev/shm/x"]) in (errno.ENOENT, errno.EROFS, errno.EACCES), body
    assert int(found["/dev/mqueue/x"]) == errno.EROFS, body
    assert int(found["/tmp/x"]) == errno.ENOENT and int(found["/x"]) in (errno.EROFS, errno.EACCES), body
    assert int(found["/dev/x"]) == errno.EACCES, body
    assert int(found["mq_open"]) == errno.EMFILE, body  # RLIMIT_MSGQUEUE 0, not a missing mount


def test_host_memory_matches_docker_stats(
    runtime: ContainerRuntime, echo_workload: Workload, docker_client: Any
) -> None:
    """host_memory_bytes reads the containers' cgroups; the engine's stats API (what
    ``docker stats`` shows: usage minus inactive file) is the independent instrument."""
    assert runtime.host_memory_bytes([]) == 0
    instances = [runtime.launch(echo_workload, b"x", timeout_s=20).instance for _ in range(3)]
    one = runtime.host_memory_bytes(instances[:1])
    total = runtime.host_memory_bytes(instances)
    assert one and total and total > one
    by_api = 0
    for instance in instances:
        memory = docker_client.api.stats(instance.container_id, stream=False)["memory_stats"]  # type: ignore[attr-defined]
        stats = memory.get("stats") or {}
        inactive = stats.get("total_inactive_file", stats.get("inactive_file", 0))
        by_api += memory["usage"] - (inactive if inactive < memory["usage"] else 0)
    again = runtime.host_memory_bytes(instances)
    assert again is not None
    low, high = min(total, again), max(total, again)
    assert 0.9 * low - (64 << 10) <= by_api <= 1.1 * high + (64 << 10), (total, by_api, again)


def _peak_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def test_the_flood_workload_is_cut_at_16_mib(docker_client: Any) -> None:
    """modules/flood in a container: its 4 GiB answer fails at the cap, in one line, the
    container removed and the lab's peak RSS flat; an answer of exactly 16 MiB is fine."""
    from edgelab.workloads import get_workload

    flood = get_workload("flood")
    rt = ContainerRuntime(Session(), client=docker_client)
    try:
        rt.prepare(flood)
        ok = rt.launch(flood, b"%d" % flood.max_response_bytes, timeout_s=30)
        assert len(ok.response.body) == flood.max_response_bytes
        ok.instance.stop()
        del ok
        peak = _peak_rss_bytes()
        for request in (flood.default_request, b"%d" % (flood.max_response_bytes + 1)):
            with pytest.raises(LaunchFailed) as info:
                rt.launch(flood, request, timeout_s=30)
            assert str(info.value).endswith("response exceeded 16 MiB"), str(info.value)
        assert _peak_rss_bytes() - peak < 8 << 20, "the lab's peak RSS grew with the flood"
        assert session_containers(docker_client, rt.session) == []
    finally:
        rt.close()
