"""The subprocess rungs beside ``subprocess``: the dynamically linked build and the fork server.

Real processes only: each rung answers every built-in workload with the same bytes as the
static spawn, holds and stops a ramp leaving nothing, survives a SIGKILLed lab leaving nothing
(the watchdog), and bounds the hostile workloads as ``subprocess`` does (tests/test_hostile.py).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgelab.errors import LaunchFailed, LaunchTimeout, RuntimeUnavailable
from edgelab.runtimes import create_runtime, isolation
from edgelab.runtimes.base import Runtime
from edgelab.session import Session
from edgelab.workloads import Workload, get_workload, load_workloads

RUNGS = ("subprocess:dynamic", "subprocess:forkserver")


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture(scope="module")
def runtimes() -> Iterator[dict[str, Runtime]]:
    made: dict[str, Runtime] = {}
    try:
        for name in ("subprocess", *RUNGS):
            made[name] = create_runtime(name, Session())
            made[name].check()
        yield made
    finally:
        for runtime in made.values():
            runtime.close()


def _requests(workload: Workload) -> list[bytes]:
    """The default request, an empty one, binary bytes, and one just over the limit (where
    that is small enough to send quickly)."""
    requests = [workload.default_request, b"", bytes(range(256)) + b"edgelab"]
    if workload.max_request_bytes <= 1 << 16:
        requests.append(b"7" * (workload.max_request_bytes + 1))
    return requests


@pytest.mark.parametrize("rung", RUNGS)
def test_every_workload_answers_byte_identical_to_subprocess(runtimes: dict[str, Runtime], rung: str) -> None:
    """First answers (the cold start's) and a resident instance's next answers, for every
    built-in workload and several requests, are the static spawn's bytes exactly."""
    static, other = runtimes["subprocess"], runtimes[rung]
    compared = 0
    for name, workload in load_workloads().items():
        static.prepare(workload)
        other.prepare(workload)
        for request in _requests(workload):
            answers = []
            for runtime in (static, other):
                launch = runtime.launch(workload, request, workload.timeout_s)
                try:
                    again = launch.instance.request(workload.default_request, workload.timeout_s)
                finally:
                    launch.instance.stop()
                answers.append(((launch.response.status, launch.response.body), (again.status, again.body)))
            assert answers[0] == answers[1], f"{rung} {name} {request[:40]!r}"
            compared += 1
    assert compared >= 6 * 3


_any_request = st.one_of(
    st.binary(max_size=64),  # within every workload's limit (fib's is 64 bytes)
    st.binary(max_size=2048),
    st.sampled_from([w.default_request for w in load_workloads().values()]).flatmap(
        lambda base: st.binary(max_size=16).map(lambda tail: base + tail)
    ),
)


@pytest.fixture(scope="module")
def prepared(runtimes: dict[str, Runtime]) -> dict[str, Runtime]:
    for runtime in runtimes.values():
        for workload in load_workloads().values():
            runtime.prepare(workload)
    return runtimes


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(request=_any_request)
def test_any_request_gets_the_same_first_answer_on_every_rung(prepared: dict[str, Runtime], request: bytes) -> None:
    """Property: for any request bytes, a cold start of every workload answers the same status
    and body on the dynamic and fork-server rungs as on subprocess."""
    for workload in load_workloads().values():
        answers = {}
        for name in ("subprocess", *RUNGS):
            launch = prepared[name].launch(workload, request, workload.timeout_s)
            launch.instance.stop()
            answers[name] = (launch.response.status, launch.response.body)
        assert len(set(answers.values())) == 1, (workload.name, answers)
        assert answers["subprocess"][0] in (0, 1, 2)


def test_dynamic_build_is_dynamically_linked_and_jailed_with_its_loader(runtimes: dict[str, Runtime]) -> None:
    """The rung runs what it says: a PIE with glibc's loader as its interpreter, and (as root)
    a jail holding that loader and libc, read-only, and nothing else but the binary."""
    runtime = runtimes["subprocess:dynamic"]
    hello = get_workload("hello")
    runtime.prepare(hello)
    binary = runtime._binaries["hello"]  # type: ignore[attr-defined]
    interpreter = isolation.elf_interpreter(binary)
    assert interpreter is not None and "ld-linux" in interpreter.name
    static_binary = runtimes["subprocess"]._binaries.get("hello")  # type: ignore[attr-defined]
    if static_binary is not None:
        assert isolation.elf_interpreter(static_binary) is None
    if not runtime.isolation.drop_uid:  # type: ignore[attr-defined]
        pytest.skip("not root: no jail")
    jail = runtime._jails["hello"]  # type: ignore[attr-defined]
    held = sorted(str(p.relative_to(jail)) for p in jail.rglob("*") if p.is_file())
    libraries = isolation.dynamic_libraries(binary)
    assert held == sorted([binary.name, *(str(lib.relative_to("/")) for lib in libraries)])
    for path in held:
        assert (jail / path).stat().st_mode & 0o222 == 0 or path == binary.name, path
    launch = runtime.launch(hello, b"jail", hello.timeout_s)
    try:
        maps = Path(f"/proc/{launch.instance.pid}/maps").read_text()  # type: ignore[attr-defined]
        assert "libc.so.6" in maps and "ld-linux" in maps, maps[:500]
    finally:
        launch.instance.stop()


def test_dynamic_without_a_glibc_loader_is_unavailable_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgelab.runtimes.subprocess import dynamic

    monkeypatch.setattr(dynamic, "GLIBC_LOADERS", {arch: Path("/nonexistent/ld.so") for arch in dynamic.GLIBC_LOADERS})
    runtime = create_runtime("subprocess:dynamic", Session())
    with pytest.raises(RuntimeUnavailable) as caught:
        runtime.check()
    assert "no glibc dynamic loader at /nonexistent/ld.so" in str(caught.value)
    assert "\n" not in str(caught.value)


def _server_pids(runtime: Runtime) -> set[int]:
    return {server.pid for server in runtime._servers.values()}  # type: ignore[attr-defined]


def test_forkserver_instances_are_boxed_in_as_subprocess_instances(runtimes: dict[str, Runtime]) -> None:
    """Each forked instance: the lab's own child, its own process group, cgroup and (as root)
    uid, RLIMIT_AS at the workload's limit, no_new_privs, the jail as its root."""
    runtime = runtimes["subprocess:forkserver"]
    hello = get_workload("hello")
    runtime.prepare(hello)
    launches = [runtime.launch(hello, b"box", hello.timeout_s) for _ in range(3)]
    try:
        pids = [launch.instance.pid for launch in launches]  # type: ignore[attr-defined]
        assert len(set(pids)) == 3 and not _server_pids(runtime) & set(pids)
        mode = runtime.isolation  # type: ignore[attr-defined]
        for launch, pid in zip(launches, pids, strict=True):
            process = psutil.Process(pid)
            assert process.ppid() == os.getpid()
            assert os.getpgid(pid) == pid
            limit = re.search(r"^Max address space\s+(\d+)\s+(\d+)", Path(f"/proc/{pid}/limits").read_text(), re.M)
            assert limit and limit.groups() == (str(hello.memory_limit_bytes),) * 2
            status = Path(f"/proc/{pid}/status").read_text()
            assert re.search(r"^NoNewPrivs:\s+1$", status, re.M), status
            if mode.cgroup_root is not None:
                cgroup = Path(f"/proc/{pid}/cgroup").read_text().strip().partition("::")[2]
                assert cgroup.endswith(launch.instance.cgroup.name), cgroup  # type: ignore[attr-defined]
            if mode.drop_uid:
                assert process.uids().real == isolation.NATIVE_UID_BASE + pid
                assert process.gids().real == isolation.NATIVE_UID_BASE + pid
                assert os.readlink(f"/proc/{pid}/root") == str(runtime._jails["hello"])  # type: ignore[attr-defined]
            assert set(launch.phases_ns) == {"fork", "first_response"}
            assert sum(launch.phases_ns.values()) == launch.startup_ns
            assert all(value > 0 for value in launch.phases_ns.values()), launch.phases_ns
    finally:
        runtime.stop_many([launch.instance for launch in launches])
    assert not any(_alive(pid) for pid in pids)


def test_forkserver_ramp_of_100_held_and_stopped_leaves_nothing() -> None:
    others = {p.pid for p in psutil.Process().children(recursive=True)}  # other tests' servers
    runtime = create_runtime("subprocess:forkserver", Session())
    hello = get_workload("hello")
    runtime.check()
    runtime.prepare(hello)
    servers = _server_pids(runtime)
    try:
        launches = runtime.launch_many(hello, b"ramp", 100, hello.timeout_s)
        pids = {launch.instance.pid for launch in launches}  # type: ignore[attr-defined]
        assert len(pids) == 100 and all(_alive(pid) for pid in pids)
        assert runtime.pss_bytes([launch.instance for launch in launches]) > 0
        held = launches[42].instance.request(b"still here", hello.timeout_s)
        assert (held.status, held.body) == (0, b"hello, still here")
        runtime.stop_many([launch.instance for launch in launches])
        assert runtime.live_instances() == []
        assert not any(_alive(pid) for pid in pids)
        assert all(_alive(pid) for pid in servers)  # the server stays ready until close
    finally:
        runtime.close()
    assert not any(_alive(pid) for pid in servers | pids)
    cgroups = runtime._cgroups  # type: ignore[attr-defined]
    if cgroups is not None:
        assert not cgroups.directory.exists()
    mine = [p for p in psutil.Process().children(recursive=True) if p.pid not in others and _alive(p.pid)]
    assert mine == [], mine


def test_a_dead_fork_server_is_restarted_before_the_next_launch() -> None:
    runtime = create_runtime("subprocess:forkserver", Session())
    hello = get_workload("hello")
    try:
        runtime.prepare(hello)
        (old,) = _server_pids(runtime)
        os.kill(old, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while _alive(old) and time.monotonic() < deadline:
            time.sleep(0.01)
        launch = runtime.launch(hello, b"again", hello.timeout_s)
        launch.instance.stop()
        assert launch.response.body == b"hello, again"
        assert _server_pids(runtime) and old not in _server_pids(runtime)
    finally:
        runtime.close()


# -- hostile workloads: bounded on the fork server as on subprocess -----------------------------
HOSTILE = {
    ("spin", "spin"): ("timeout", r"^timed out after 2 s$"),
    ("membomb", "eat"): (2, r"^out of memory after allocating \d+ MiB$"),  # RLIMIT_AS
    ("forkbomb", "fork"): ("timeout", r"^timed out after 2 s$"),  # stops at its own 200 children
    ("crash", "segv"): ("failed", r"^killed by SIGSEGV before answering$"),
    ("flood", "flood"): ("failed", r"^response exceeded 16 MiB$"),  # announces 4 GiB
    ("escape", "escape"): (0, r"^escaped: grandchild \d+$"),  # it must die with the instance
}


@pytest.mark.parametrize("case", list(HOSTILE), ids=[f"{w}-{r}" for w, r in HOSTILE])
def test_hostile_workload_is_bounded_on_the_fork_server(runtimes: dict[str, Runtime], case: tuple[str, str]) -> None:
    runtime = runtimes["subprocess:forkserver"]
    name, request = case
    workload = get_workload(name)
    assert workload.hostile
    runtime.prepare(workload)
    servers = _server_pids(runtime)
    kind, pattern = HOSTILE[case]
    started = time.monotonic()
    outcome: tuple[Any, str]
    try:
        launch = runtime.launch(workload, request.encode(), workload.timeout_s)
    except LaunchTimeout as exc:
        outcome = ("timeout", str(exc))
    except LaunchFailed as exc:
        outcome = ("failed", str(exc))
    else:
        launch.instance.stop()
        outcome = (launch.response.status, launch.response.body.decode("utf-8", "replace"))
    elapsed = time.monotonic() - started
    assert outcome[0] == kind and re.search(pattern, outcome[1]), outcome
    assert elapsed <= workload.timeout_s + 1.0, f"took {elapsed:.2f} s"

    def left() -> list[str]:
        return [
            f"{p.pid} {p.info['name']} {p.info['status']}"
            for p in psutil.process_iter(["name", "status"])
            if (p.info["name"] or "").startswith(f"{name}-") and p.pid not in servers
        ] + [f"tracked {i!r}" for i in runtime.live_instances()]

    deadline = time.monotonic() + 2
    while (leftover := left()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert leftover == []
    hello = get_workload("hello")
    after = runtime.launch(hello, b"after", hello.timeout_s)
    after.instance.stop()
    assert (after.response.status, after.response.body) == (0, b"hello, after")


# -- a SIGKILLed lab with resident forked instances: the watchdog leaves nothing ----------------
def _session_members(sid: int) -> list[str]:
    found = []
    for process in psutil.process_iter(["name", "status"]):
        try:
            if os.getsid(process.pid) == sid and process.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(f"{process.pid} {process.info['name']}")
        except OSError:
            continue
    return found


@pytest.mark.parametrize("rung", ["subprocess:forkserver", "subprocess"])
def test_sigkill_of_the_lab_with_resident_instances_leaves_none(tmp_path: Path, rung: str) -> None:
    """Also for plain subprocess: where instances have cgroups the watchdog hears of the
    session's cgroups once, not of each instance's process group."""
    out = tmp_path / "lab.out"
    with out.open("wb") as sink:
        lab = subprocess.Popen(
            [sys.executable, "-m", "edgelab", "run", "-w", "hello", "-r", rung,
             "--scenario", "ramp", "--resident", "3000", "--no-history"],
            stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    helpers: dict[int, psutil.Process] = {}
    try:
        deadline = time.monotonic() + 60
        while len(members := _session_members(lab.pid)) < 52:  # the lab, (its fork server,) 50 instances
            assert lab.poll() is None, out.read_text()
            assert time.monotonic() < deadline, f"no ramp under way: {members[:5]} {out.read_text()}"
            for child in psutil.Process(lab.pid).children(recursive=True):
                if os.getsid(child.pid) != lab.pid:
                    helpers.setdefault(child.pid, child)  # the watchdog
            time.sleep(0.05)
        assert sum(member.split()[1].startswith("hello-") for member in members) >= 50, members[:5]
        lab.send_signal(signal.SIGKILL)
        lab.wait()
        deadline = time.monotonic() + 15
        while (left := _session_members(lab.pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert left == [], f"left 15 s after SIGKILL: {left[:10]} ({len(left)})"
    finally:
        if lab.poll() is None:
            lab.kill()
            lab.wait()
        for member in _session_members(lab.pid):
            with_pid = int(member.split()[0])
            try:
                os.kill(with_pid, signal.SIGKILL)
            except OSError:
                pass
        for helper in helpers.values():
            try:
                helper.wait(10)
            except psutil.Error:
                pass
        _reap_orphaned_zombies("hello-")


def _reap_orphaned_zombies(prefix: str) -> None:
    """The killed lab's instances, once dead, are re-parented to this test process (a lab
    made in it earlier set it as the child subreaper) and stay zombies until it reaps them:
    reap those, and only those (dead already, so no runtime here is waiting for them)."""
    for process in psutil.Process().children():
        try:
            if process.status() == psutil.STATUS_ZOMBIE and process.name().startswith(prefix):
                os.waitpid(process.pid, os.WNOHANG)
        except (psutil.Error, ChildProcessError):
            continue


def test_forkserver_on_a_kernel_without_clone3_is_unavailable_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import platform

    monkeypatch.setattr(platform, "release", lambda: "5.2.21-old")
    runtime = create_runtime("subprocess:forkserver", Session())
    with pytest.raises(RuntimeUnavailable) as caught:
        runtime.check()
    assert "needs clone3: Linux 5.3 or later (this is 5.2.21-old)" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_probe_reaches_on_each_rung_exactly_what_it_reaches_on_subprocess() -> None:
    """The isolation claim, by the probe workload itself: every capability's verdict and
    detail (its errno) on the dynamic and the fork-server rung are subprocess's, pids and uids
    aside."""
    from edgelab.capabilities import CAPABILITIES, probe_report

    report = probe_report(("subprocess", *RUNGS))

    def normal(caps: dict[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
        return {cap: (verdict, re.sub(r"\d{3,}", "N", detail)) for cap, (verdict, detail) in caps.items()}

    assert set(report["subprocess"]) == set(CAPABILITIES)
    assert all(verdict in ("allowed", "denied") for verdict, _ in report["subprocess"].values()), report["subprocess"]
    for rung in RUNGS:
        assert normal(report[rung]) == normal(report["subprocess"]), rung


@pytest.mark.parametrize("rung", RUNGS)
def test_many_launches_leave_the_labs_fds_and_cgroups_at_baseline(prepared: dict[str, Runtime], rung: str) -> None:
    runtime = prepared[rung]
    hello = get_workload("hello")
    runtime.launch(hello, b"warm", hello.timeout_s).instance.stop()

    def held() -> tuple[int, int]:
        cgroups = runtime._cgroups  # type: ignore[attr-defined]
        made = sum(1 for _ in cgroups.directory.iterdir() if _.is_dir()) if cgroups is not None else 0
        return len(os.listdir("/proc/self/fd")), made

    before = held()
    runs = int(os.environ.get("EDGELAB_LEAK_RUNS", "200"))
    for index in range(runs):
        launch = runtime.launch(hello, b"%d" % index, hello.timeout_s)
        launch.instance.stop()
        assert launch.response.body == b"hello, %d" % index
    assert held() == before
    assert runtime.live_instances() == []
    if rung == "subprocess:forkserver":
        assert all(not server._reports for server in runtime._servers.values())  # type: ignore[attr-defined]
