"""A person's own command on the subprocess rung (issue 13), with a program no one here wrote.

Debian's ``busybox-static`` (``/bin/busybox``): ``busybox sha256sum`` answers with the digest
of its stdin, checked against hashlib; its other applets stand for a command that fails,
never exits, never reads, floods its stdout or its stderr. Real processes only, every test
checks that nothing is left (no process of ours, no instance cgroup, no live instance).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import platform
import shutil
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from edgelab.errors import LaunchFailed, LaunchTimeout, RuntimeUnavailable
from edgelab.lab import Lab, Settings
from edgelab.runtimes import create_runtime, isolation
from edgelab.runtimes.subprocess import command
from edgelab.runtimes.subprocess.runtime import SubprocessRuntime
from edgelab.session import Session
from edgelab.workloads import Function, Workload, function_workload

BUSYBOX = "/bin/busybox"
pytestmark = pytest.mark.skipif(not os.access(BUSYBOX, os.X_OK), reason="needs Debian's busybox-static")


def _sha256sum_line(request: bytes) -> bytes:
    return (hashlib.sha256(request).hexdigest() + "  -\n").encode()


def _workload(*argv: str, env: tuple[tuple[str, str], ...] = (), **changes: int) -> Workload:
    workload = function_workload("bb-" + "-".join(a.strip("/").replace("/", "_") for a in argv)[:40],
                                 Function(command=argv, env=env))  # fmt: skip
    return dataclasses.replace(workload, **changes) if changes else workload


def _our_leftovers() -> list[str]:
    """Processes this test process started that still stand (the lab is their subreaper, so
    a leftover would be our child), zombies included; labs' watchdogs are not instances."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "edgelab.watchdog" in child.cmdline():  # a lab's watchdog, not an instance
                continue
            found.append(f"{child.pid} {child.name()} {child.status()}")
        except psutil.Error:
            pass
    return found


def _assert_nothing_left(runtime: SubprocessRuntime) -> None:
    assert runtime.live_instances() == []
    assert _our_leftovers() == []
    cgroups = runtime._cgroups
    if cgroups is not None and cgroups.directory.exists():  # at most the spare made ahead, empty
        children = [p for p in cgroups.directory.iterdir() if p.is_dir()]
        assert len(children) <= 1
        assert all((p / "cgroup.procs").read_text() == "" for p in children)


@pytest.fixture(scope="module")
def runtime() -> Iterator[SubprocessRuntime]:
    made = create_runtime("subprocess", Session())
    made.check()
    assert isinstance(made, SubprocessRuntime)
    try:
        yield made
    finally:
        made.close()
    assert _our_leftovers() == []


# -- the command answers -----------------------------------------------------------------------------
def test_busybox_sha256sum_through_the_lab_answers_as_hashlib() -> None:
    """A burst through Lab.run: every answer is sha256sum's line for the request, each sample
    has its launch-to-exit time after its first byte, and the JSON has exit_us; the binary's
    path and size are in the preparation."""
    request = os.urandom(100_000)
    lab = Lab()
    answers: list[bytes] = []
    try:
        rt = lab.runtime("subprocess")
        launch = rt.launch

        def spy(workload: Workload, payload: bytes, timeout_s: float):  # type: ignore[no-untyped-def]
            done = launch(workload, payload, timeout_s)
            answers.append(done.response.body)
            return done

        rt.launch = spy  # type: ignore[method-assign]  # sees the answers, changes nothing
        result = lab.run(Settings(workload="bb", runtimes=("subprocess",), count=5, warmup=1, request=request,
                                  function=Function(command=(BUSYBOX, "sha256sum"))))  # fmt: skip
        sub = result.runtimes["subprocess"]
        assert sub.error is None, sub.error
        assert answers and set(answers) == {_sha256sum_line(request)}
        measured = [s for s in sub.measured if s.ok]
        assert len(measured) == 5
        assert all(s.exit_ns is not None and s.startup_ns is not None and s.exit_ns >= s.startup_ns for s in measured)
        assert all(s.response_bytes == len(_sha256sum_line(request)) for s in measured)
        as_json = sub.to_json()
        assert as_json["exit_us"]["p50"] >= as_json["startup_us"]["p50"] > 0
        assert set(as_json["phases_us"]) == set(command.describe(rt)[0])  # type: ignore[arg-type]
        prepared = result.metadata["preparation"]["subprocess"]
        assert prepared["command"] == f"{BUSYBOX} ({Path(BUSYBOX).stat().st_size:,} bytes)"
        assert "no chroot" in prepared["reaching"]
        assert "first byte" in sub.startup_includes and "your command" in sub.startup_includes
        assert _our_leftovers() == []
    finally:
        lab.close()


def test_argv_is_resolved_as_execvp_does(tmp_path: Path) -> None:
    """A bare name is looked up along PATH (the first executable one wins, a non-executable
    one before it is skipped); a name with a slash is taken as given, relative to the cwd."""
    shadow = tmp_path / "a"
    shadow.mkdir()
    (shadow / "busybox").write_bytes(b"not a program")  # no +x: execvp skips it
    found = command.resolve("busybox", f"{shadow}:{Path(BUSYBOX).parent}")
    assert found == Path(BUSYBOX)
    assert command.resolve("./busybox", cwd=str(Path(BUSYBOX).parent)) == Path(BUSYBOX)
    with pytest.raises(command.CommandNotUsable, match=r"not executable \("):
        command.resolve("busybox", str(shadow))


def test_environment_is_only_what_is_given_and_limits_hold(runtime: SubprocessRuntime) -> None:
    """Deny by default: ``busybox env`` prints the given variables and nothing else (no
    PATH, none of the lab's); where the lab is root the command runs as a uid of its own
    with RLIMIT_NPROC as its pids cap."""
    env = _workload(BUSYBOX, "env", env=(("GREETING", "hello world"), ("EMPTY", "")))
    assert runtime.launch(env, b"", 10).response.body == b"GREETING=hello world\nEMPTY=\n"
    if runtime.isolation.spawn_lib is not None and runtime.isolation.drop_uid:
        facts = _workload(BUSYBOX, "sh", "-c", f"{BUSYBOX} id -u; {BUSYBOX} id -G; ulimit -u")
        uid, groups, nproc = runtime.launch(facts, b"", 10).response.body.decode().split("\n")[:3]
        assert int(uid) >= isolation.NATIVE_UID_BASE and groups == uid
        assert int(nproc) == command.COMMAND_NPROC
    _assert_nothing_left(runtime)


def test_a_chatty_stderr_never_blocks_the_command(runtime: SubprocessRuntime) -> None:
    """1 MB on stderr (more than a pipe holds) and then the answer: stderr is drained."""
    chatty = _workload(BUSYBOX, "sh", "-c", f"{BUSYBOX} yes | {BUSYBOX} head -c 1000000 >&2; echo done")
    launch = runtime.launch(chatty, b"", 10)
    assert launch.response.body == b"done\n"
    _assert_nothing_left(runtime)


def test_without_the_in_process_spawn_a_command_is_posix_spawned_and_says_so() -> None:
    """Where native_spawn cannot be used (no cgroup, no uid drop), posix_spawn runs the
    command with its environment in its own process group, and the lab says it has the lab's
    rights; it answers, waits in a ramp and leaves nothing the same."""
    bare = isolation.Isolation(None, None, False, "process group + subreaper + sweep (test)", "the lab's rights (test)")
    runtime = SubprocessRuntime(Session(), bare)
    runtime.name = "subprocess"
    try:
        workload = _workload(BUSYBOX, "sha256sum")
        runtime.prepare(workload)
        assert runtime.describe().phase_names == command.PHASES_OTHERWISE
        assert "the lab's own user" in runtime.preparation()["reaching"]
        launch = runtime.launch(workload, b"abc", 10)
        assert launch.response.body == _sha256sum_line(b"abc") and set(launch.phases_ns) == {"spawn", "first_byte"}
        env = runtime.launch(_workload(BUSYBOX, "env", env=(("ONLY", "this"),)), b"", 10)
        assert env.response.body == b"ONLY=this\n"
        waiting = runtime.launch_many(workload, b"", 3, 10)
        assert all(w.waiting for w in waiting) and runtime.pss_bytes([w.instance for w in waiting]) > 0
        runtime.stop_many([w.instance for w in waiting])
        _assert_nothing_left(runtime)
    finally:
        runtime.close()


# -- a ramp's instances wait for their request -------------------------------------------------------
def test_ramp_of_20_waiting_instances_has_a_memory_figure_and_leaves_nothing(runtime: SubprocessRuntime) -> None:
    """launch_many leaves each instance waiting for its request (asleep reading its stdin,
    nothing sent): Launch.waiting, an empty response, a PSS per instance; one of them then
    answers its request once; stop_many leaves nothing."""
    workload = _workload(BUSYBOX, "sha256sum")
    runtime.prepare(workload)
    baseline = runtime.pss_bytes([])
    launches = runtime.launch_many(workload, b"ignored: nothing is sent", 20, 10)
    try:
        assert len(launches) == 20
        assert all(launch.waiting and launch.response.body == b"" and launch.exit_ns is None for launch in launches)
        assert all(launch.startup_ns > 0 for launch in launches)
        instances = [launch.instance for launch in launches]
        for instance in instances:
            state = Path(f"/proc/{instance.pid}/stat").read_text().rpartition(")")[2].split()[0]  # type: ignore[attr-defined]
            assert state == "S"
            if platform.machine() == "x86_64":  # read(2) is syscall 0 there: read(0, ...), its stdin
                assert Path(f"/proc/{instance.pid}/syscall").read_text().split()[:2] == ["0", "0x0"]  # type: ignore[attr-defined]
        per_instance = (runtime.pss_bytes(instances) - baseline) / 20
        assert 4 << 10 < per_instance < 8 << 20, per_instance  # a static busybox: ~60-130 KiB here
        assert instances[0].request(b"abc", 10).body == _sha256sum_line(b"abc")
        with pytest.raises(LaunchFailed, match="answers once"):
            instances[0].request(b"abc", 10)
    finally:
        runtime.stop_many([launch.instance for launch in launches])
    _assert_nothing_left(runtime)


def test_a_command_that_does_not_wait_cannot_be_held(runtime: SubprocessRuntime) -> None:
    """``busybox true`` exits before any request: a ramp cannot hold it, one line."""
    with pytest.raises(LaunchFailed, match=r"exited with code 0 before its request was sent"):
        runtime.launch_many(_workload(BUSYBOX, "true"), b"", 3, 10)
    _assert_nothing_left(runtime)


def test_lab_ramp_of_20_holds_waiting_instances() -> None:
    lab = Lab()
    try:
        result = lab.run(Settings(workload="bb", runtimes=("subprocess",), scenario="ramp", resident={"subprocess": 20},
                                  function=Function(command=(BUSYBOX, "sha256sum"))))  # fmt: skip
        memory = result.runtimes["subprocess"].memory
        assert memory is not None and memory.instances == 20 and memory.pss_bytes_per_instance > 4 << 10
    finally:
        lab.close()
    assert _our_leftovers() == []


# -- bad input: one line each, nothing left ----------------------------------------------------------
def test_not_found_is_one_line_naming_path(runtime: SubprocessRuntime) -> None:
    with pytest.raises(RuntimeUnavailable) as caught:
        runtime.prepare(_workload("edgelab-no-such-program-xyz"))
    assert "command 'edgelab-no-such-program-xyz' not found (PATH=" in caught.value.reason
    assert "\n" not in str(caught.value)
    with pytest.raises(RuntimeUnavailable, match=r"not found \(/nonexistent/app does not exist\)"):
        runtime.prepare(_workload("/nonexistent/app"))


def test_not_executable_is_one_line(runtime: SubprocessRuntime, tmp_path: Path) -> None:
    program = tmp_path / "app"
    program.write_bytes(Path(BUSYBOX).read_bytes()[:4096])
    program.chmod(0o644)
    with pytest.raises(RuntimeUnavailable) as caught:
        runtime.prepare(_workload(str(program)))
    assert caught.value.reason == f"command '{program}' is not executable ({program}: -rw-r--r--)"
    assert caught.value.fix == f"chmod +x {program}"


def test_a_program_its_own_uid_cannot_reach_is_refused_at_prepare(runtime: SubprocessRuntime, tmp_path: Path) -> None:
    """Where each instance runs as a uid of its own, a program in a folder others cannot
    search (pytest's tmp folders are 0700) is one line at prepare, not a spawn failure."""
    if not (runtime.isolation.spawn_lib is not None and runtime.isolation.drop_uid):
        pytest.skip("the lab cannot drop privileges here: commands run with its own rights")
    folder = tmp_path / "private"
    folder.mkdir(mode=0o700)
    program = folder / "busybox"
    shutil.copy(BUSYBOX, program)
    program.chmod(0o755)
    with pytest.raises(RuntimeUnavailable, match=r"cannot be run by the unprivileged uid .*not searchable by others"):
        runtime.prepare(_workload(str(program), "true"))


def test_exit_3_is_a_failed_launch_with_its_status_and_first_stderr_line(runtime: SubprocessRuntime) -> None:
    with pytest.raises(LaunchFailed) as caught:
        runtime.launch(_workload(BUSYBOX, "sh", "-c", "exit 3"), b"request", 10)
    assert str(caught.value) == "the command exited with code 3 (nothing on stderr)"
    said = _workload(BUSYBOX, "sh", "-c", "echo; echo 'bad request: no' >&2; echo second >&2; exit 3")
    with pytest.raises(LaunchFailed) as caught:
        runtime.launch(said, b"", 10)
    assert str(caught.value) == "the command exited with code 3: bad request: no"
    with pytest.raises(LaunchFailed) as caught:
        runtime.launch(_workload(BUSYBOX, "sh", "-c", "kill -SEGV $$"), b"", 10)
    assert str(caught.value) == "the command was killed by SIGSEGV (nothing on stderr)"
    _assert_nothing_left(runtime)


def test_never_exits_is_killed_at_the_timeout(runtime: SubprocessRuntime) -> None:
    with pytest.raises(LaunchTimeout) as caught:
        runtime.launch(_workload(BUSYBOX, "sleep", "100"), b"", 1.0)
    assert str(caught.value) == "timed out after 1 s: the command did not exit (0 bytes of stdout so far), killed"
    _assert_nothing_left(runtime)


def test_never_reads_is_killed_at_the_timeout(runtime: SubprocessRuntime) -> None:
    request = b"r" * (4 << 20)  # far more than a pipe holds
    with pytest.raises(LaunchTimeout, match=r"^timed out after 1 s: the command did not read its whole request "
                       r"\([\d,]+ of 4,194,304 bytes taken\), killed$"):  # fmt: skip
        runtime.launch(_workload(BUSYBOX, "sleep", "100"), request, 1.0)
    _assert_nothing_left(runtime)


def test_output_over_the_limit_is_killed(runtime: SubprocessRuntime) -> None:
    flood = _workload(BUSYBOX, "yes", max_response_bytes=1 << 20)
    with pytest.raises(LaunchFailed) as caught:
        runtime.launch(flood, b"", 10)
    assert str(caught.value) == "response exceeded 1 MiB of stdout, killed"
    _assert_nothing_left(runtime)


def test_a_background_child_flooding_stdout_after_the_exit_is_cut_off(runtime: SubprocessRuntime) -> None:
    """The command exits at once; the child it left keeps writing to the stdout it inherited:
    the launch ends at the exit (what the pipe held, within the cap), never reads on, and
    the child dies with the instance."""
    import time

    flood = _workload(BUSYBOX, "sh", "-c", f"{BUSYBOX} yes & echo first", max_response_bytes=1 << 20)
    started = time.monotonic()
    try:
        launch = runtime.launch(flood, b"", 10)
        assert launch.exit_ns is not None and launch.startup_ns <= launch.exit_ns
        assert len(launch.response.body) <= 1 << 20
    except LaunchFailed as exc:  # the child filled the cap before the exit was seen
        assert str(exc) == "response exceeded 1 MiB of stdout, killed"
    assert time.monotonic() - started < 5
    _assert_nothing_left(runtime)


def test_bad_commands_through_the_lab_are_one_line_results() -> None:
    """The lab gives the rung up with the prepare's line, or after the launches' lines."""
    lab = Lab()
    try:
        missing = lab.run(Settings(workload="nope", runtimes=("subprocess",), count=2, warmup=0,
                                   function=Function(command=("edgelab-no-such-program-xyz",))))  # fmt: skip
        error = missing.runtimes["subprocess"].error
        assert error is not None and error.startswith("command 'edgelab-no-such-program-xyz' not found (PATH=")
        failing = lab.run(Settings(workload="three", runtimes=("subprocess",), count=3, warmup=0,
                                   function=Function(command=(BUSYBOX, "sh", "-c", "exit 3"))))  # fmt: skip
        result = failing.runtimes["subprocess"]
        assert result.error == "stopped after 3 failed launches: the command exited with code 3 (nothing on stderr)"
        assert [s.ok for s in result.samples] == [False, False, False]
    finally:
        lab.close()
    assert _our_leftovers() == []


# -- a SIGKILLed lab with waiting command instances: the watchdog leaves nothing -----------------
_HOLDER = f"""
import sys, time
from edgelab.lab import Lab
from edgelab.workloads import Function, function_workload
lab = Lab()
runtime = lab.runtime("subprocess")
# reads its request, then outlives the lab (a stdin closed by the lab's death ends its read)
workload = function_workload("bb", Function(command=({BUSYBOX!r}, "sh", "-c", "read line; exec {BUSYBOX} sleep 100")))
runtime.prepare(workload)
launches = runtime.launch_many(workload, b"", 20, 10)
print(" ".join(str(launch.instance.pid) for launch in launches), flush=True)
time.sleep(60)
"""


def test_sigkill_of_a_lab_holding_waiting_commands_leaves_none() -> None:
    """The lab's watchdog kills what a SIGKILLed lab held: 20 instances waiting for their
    request, which would outlive it (tried: with ``Lab(watchdog=False)`` all 20 are still
    alive 3 s later); none is left 10 s after."""
    import signal
    import subprocess
    import sys
    import time

    holder = subprocess.Popen([sys.executable, "-c", _HOLDER], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    pids: list[int] = []
    try:
        assert holder.stdout is not None
        line = holder.stdout.readline().decode()
        pids = [int(pid) for pid in line.split()]
        assert len(pids) == 20, holder.stderr.read().decode() if holder.stderr else line
        assert all(psutil.Process(pid).exe() == str(Path(BUSYBOX).resolve()) for pid in pids)
        holder.send_signal(signal.SIGKILL)
        holder.wait()

        def alive() -> list[int]:
            found = []
            for pid in pids:
                try:
                    if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                        found.append(pid)
                except psutil.NoSuchProcess:
                    pass
            return found

        deadline = time.monotonic() + 10
        while (left := alive()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert left == [], f"left 10 s after SIGKILL: {left}"
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        for pid in pids:  # dead: re-parented to this process (its subreaper), reap them
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
