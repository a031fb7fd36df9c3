"""Bad input, as a person would give it: one clear line, a non-zero exit, nothing half-written.

Every case runs ``python -m edgelab ...`` in a subprocess and checks that stderr ends with one
``edgelab: ...`` line and holds no traceback.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
MODULES = REPO / "modules"


def edgelab(*args: str, stdin: bytes = b"", env: dict[str, str] | None = None,
            prelude: str = "") -> subprocess.CompletedProcess[bytes]:
    """``python -m edgelab args``; ``prelude`` is Python run first (to break one part on purpose)."""
    command = [sys.executable, "-m", "edgelab", *args]
    if prelude:
        code = f"import sys\n{prelude}\nfrom edgelab.cli import main\nraise SystemExit(main(sys.argv[1:]))"
        command = [sys.executable, "-c", code, *args]
    return subprocess.run(command, input=stdin, capture_output=True, timeout=300,
                          env={**os.environ, **(env or {})}, cwd=REPO)


def one_clear_line(done: subprocess.CompletedProcess[bytes]) -> str:
    """Assert a failure told in one ``edgelab:`` line; return that line."""
    err = done.stderr.decode("utf-8", "replace")
    assert done.returncode != 0, f"exit 0; stderr: {err}"
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("edgelab: "), err
    return last


@pytest.fixture
def modules_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "modules"
    shutil.copytree(MODULES, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def _edit(manifest: Path, old: str, new: str) -> None:
    text = manifest.read_text()
    assert old in text
    manifest.write_text(text.replace(old, new))


@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        ("timeout_s = 5\n", "", "missing field 'timeout_s'"),
        ("timeout_s = 5\n", 'timeout_s = "fast"\n', "field 'timeout_s' has the wrong type (str)"),
        ("timeout_s = 5\n", "timeout_s = 5\nname = \"fib\n", "not valid TOML"),
    ],
    ids=["missing-field", "wrong-type", "bad-toml"],
)
def test_malformed_manifest_names_file_and_field(modules_copy: Path, old: str, new: str, says: str) -> None:
    manifest = modules_copy / "fib" / "workload.toml"
    _edit(manifest, old, new)
    # a broken manifest of another workload stops the run before anything starts
    for args in (("run", "-w", "hello", "-n", "1"), ("invoke", "fib", "-r", "wasm")):
        line = one_clear_line(edgelab(*args, env={"EDGELAB_MODULES_DIR": str(modules_copy)}))
        assert str(manifest) in line and says in line


def test_corrupt_cached_artifacts_are_rebuilt_not_used(tmp_path: Path) -> None:
    """The lab's choice: a cached artifact that does not match the digest recorded at build
    time (garbage, or another workload's valid binary) is rebuilt, never used."""
    env = {"EDGELAB_CACHE_DIR": str(tmp_path / "cache")}
    for runtime in ("wasm", "subprocess"):
        done = edgelab("invoke", "hello", "-r", runtime, stdin=b"a", env=env)
        assert (done.returncode, done.stdout) == (0, b"hello, a"), done.stderr
    done = edgelab("invoke", "fib", "-r", "subprocess", stdin=b"10", env=env)
    assert done.stdout == b"55", done.stderr
    (wasm,) = (tmp_path / "cache" / "artifacts").glob("hello-*/hello.wasm")
    (native,) = wasm.parent.glob("hello-*64")
    (fib,) = (tmp_path / "cache" / "artifacts").glob("fib-*/fib-*64")
    wasm.write_bytes(os.urandom(3000))  # garbage
    shutil.copyfile(fib, native)  # wrong but plausible: a valid binary of another workload
    for cwasm in (tmp_path / "cache" / "wasm").glob("*"):
        cwasm.unlink()  # no precompiled module to fall back on: the .wasm itself is loaded
    for runtime in ("wasm", "subprocess"):
        done = edgelab("invoke", "hello", "-r", runtime, stdin=b"b", env=env)
        assert (done.returncode, done.stdout) == (0, b"hello, b"), done.stderr
    for artifact in (wasm, native):
        recorded = artifact.with_name(artifact.name + ".sha256").read_text().strip()
        assert hashlib.sha256(artifact.read_bytes()).hexdigest() == recorded


def test_dockerfile_that_fails_to_build(docker_client: Any, modules_copy: Path, tmp_path: Path) -> None:
    """The image build fails: the container runtime is unavailable (one line), the others run."""
    broken = tmp_path / "Dockerfile"
    broken.write_text("FROM scratch\nCOPY no-such-file /nope\n")
    # a source no image was built from yet, so the broken Dockerfile is really used
    (modules_copy / "hello" / "hello.c").write_text(
        (modules_copy / "hello" / "hello.c").read_text() + f"/* {os.urandom(8).hex()} */\n"
    )
    env = {"EDGELAB_MODULES_DIR": str(modules_copy)}
    prelude = (
        "from pathlib import Path\nimport edgelab.runtimes.container as c\n"
        f"c.DOCKERFILE = Path({str(broken)!r})"
    )
    line = one_clear_line(edgelab("invoke", "hello", "-r", "container", stdin=b"x", env=env, prelude=prelude))
    assert "image build of edgelab/hello:" in line and "failed" in line

    out = tmp_path / "r.json"
    done = edgelab("run", "-w", "hello", "-n", "1", "--json", str(out), "--no-history", env=env, prelude=prelude)
    err = done.stderr.decode()
    # A runtime that failed makes the exit non-zero (issue 10: scripts can tell); the others'
    # results are still written.
    assert done.returncode == 1 and "Traceback" not in err, err
    unavailable = [line for line in err.splitlines() if line.startswith("container unavailable:")]
    assert len(unavailable) == 1 and "image build" in unavailable[0], err
    results = {r["runtime"]: r for r in json.loads(out.read_text())["results"]}
    assert results["container"]["ok"] == 0 and "image build" in results["container"]["error"]
    assert results["subprocess"]["ok"] == 1 and results["wasm"]["ok"] == 1


def test_oversized_request(tmp_path: Path) -> None:
    big = b"x" * (65536 + 1)  # hello's max_request_bytes + 1
    line = one_clear_line(edgelab("invoke", "hello", "-r", "wasm", stdin=big))
    assert "request of 65537 bytes exceeds hello's limit of 65536 bytes" in line
    request = tmp_path / "big.bin"
    request.write_bytes(big)
    out = tmp_path / "r.json"
    line = one_clear_line(edgelab("run", "-w", "hello", "--request-file", str(request), "--json", str(out)))
    assert "exceeds hello's limit" in line
    assert not out.exists()


@pytest.mark.parametrize("cache", ["/proc/forbidden", "/etc/hostname"], ids=["in-proc", "a-file"])
def test_unwritable_cache_dir(tmp_path: Path, cache: str) -> None:
    env = {"EDGELAB_CACHE_DIR": cache}
    for runtime in ("subprocess", "wasm"):
        line = one_clear_line(edgelab("invoke", "hello", "-r", runtime, stdin=b"x", env=env))
        assert f"cannot use the build cache {cache}/" in line and "EDGELAB_CACHE_DIR" in line
    out = tmp_path / "r.json"
    line = one_clear_line(edgelab("run", "-w", "hello", "-r", "subprocess,wasm", "-n", "1", env=env))
    assert line.startswith("edgelab: no runtime could run hello; subprocess: cannot use the build cache")
    assert not out.exists()


@pytest.mark.parametrize("target", ["/proc/x.json", "folder", "/proc/new-dir/x.json"])
def test_unwritable_export_path_fails_before_the_run(tmp_path: Path, target: str) -> None:
    path = tmp_path if target == "folder" else Path(target)
    before = sorted(p.name for p in tmp_path.iterdir())
    done = edgelab("run", "-w", "hello", "-r", "wasm", "-n", "1", "--json", str(path))
    line = one_clear_line(done)
    assert line.startswith(f"edgelab: cannot write {path}")
    assert done.stdout == b""  # failed before running: no table
    assert not Path("/proc/x.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing half-written


@pytest.mark.parametrize("args,says", [
    (("--workload", "nosuch"), "unknown workload 'nosuch' (known: "),
    (("--exports", "/nonexistent/out"), "--exports /nonexistent/out: its folder /nonexistent does not exist"),
    (("--exports", "/etc/hostname"), "--exports /etc/hostname: not a folder"),
])  # fmt: skip
def test_the_lab_refuses_bad_input_before_its_screen(args: tuple[str, ...], says: str) -> None:
    # Before the screen: with no terminal, a lab that opened would hang until the timeout.
    done = subprocess.run([sys.executable, "-m", "edgelab", *args], stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=60, cwd=REPO)  # fmt: skip
    assert done.returncode == 2
    assert one_clear_line(done).startswith(f"edgelab: {says}")
    assert not Path("/nonexistent").exists()


# -- every number is checked where it enters (edgelab.settings) ---------------------------------
def _says_range(line: str, *words: str) -> None:
    assert "must be" in line and all(word in line for word in words), line


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("run", "-r", "wasm", "--scenario", "steady", "--rate", "inf", "--duration", "1"), ("--rate", "0.01 to 10,000", "'inf'")),
        (("run", "-r", "wasm", "--scenario", "steady", "--rate", "1e308", "--duration", "1"), ("--rate", "'1e308'")),
        (("run", "-r", "wasm", "--scenario", "steady", "--rate", "1e-300", "--duration", "1"), ("--rate", "'1e-300'")),
        (("run", "-r", "wasm", "--scenario", "steady", "--rate", "nan"), ("--rate", "'nan'")),
        (("run", "-r", "wasm", "--scenario", "steady", "--duration", "inf"), ("--duration", "86,400 seconds")),
        (("run", "-r", "wasm", "--timeout", "inf"), ("--timeout", "3,600 seconds", "'inf'")),
        (("run", "-r", "wasm", "-n", "1e9"), ("--count", "whole number")),
        (("run", "-r", "wasm", "-n", "2000000"), ("--count", "1,000,000")),
        (("run", "-r", "wasm", "--warmup", "-1"), ("--warmup",)),
        (("invoke", "hello", "-r", "wasm", "--timeout", "inf"), ("--timeout", "'inf'")),
        (("invoke", "hello", "-r", "wasm", "--timeout", "0"), ("--timeout", "above 0")),
    ],
    ids=["rate-inf", "rate-1e308", "rate-1e-300", "rate-nan", "duration-inf", "run-timeout-inf",
         "count-1e9", "count-huge", "warmup-negative", "invoke-timeout-inf", "invoke-timeout-0"],
)
def test_non_finite_or_out_of_range_flags_are_one_line(args: tuple[str, ...], words: tuple[str, ...]) -> None:
    done = edgelab(*args, *(("--no-history",) if args[0] == "run" else ()))
    _says_range(one_clear_line(done), *words)
    assert done.stdout == b""


def test_steady_rate_times_duration_is_bounded() -> None:
    line = one_clear_line(edgelab("run", "-r", "wasm", "--scenario", "steady", "--rate", "10000", "--duration", "86400"))
    assert "864,000,000 launches per runtime" in line and "1,000,000" in line


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        ("timeout_s = 5\n", "timeout_s = nan\n", ("field 'timeout_s'", "3,600 seconds", "nan")),
        ("timeout_s = 5\n", "timeout_s = inf\n", ("field 'timeout_s'", "inf")),
        ("timeout_s = 5\n", "timeout_s = -inf\n", ("field 'timeout_s'",)),
        ("max_request_bytes = 65536\n", "max_request_bytes = 1099511627776\n", ("field 'max_request_bytes'", "1,073,741,824 bytes")),
        ("max_request_bytes = 65536\n", "max_request_bytes = 0\n", ("field 'max_request_bytes'", "from 1 to")),
        ("memory_limit_mib = 16\n", "memory_limit_mib = 9223372036854775807\n", ("field 'memory_limit_mib'", "65,536 MiB")),
        ("timeout_s = 5\n", "timeout_s = 5\nmax_response_bytes = 1.5\n", ("field 'max_response_bytes'", "whole number")),
        ("timeout_s = 5\n", "timeout_s = 5\nmax_response_bytes = \"big\"\n", ("field 'max_response_bytes'", "'big'")),
        ("memory_limit_mib = 16\n", "memory_limit_mib = 1\n", ("field 'memory_limit_mib'", "from 6 to")),
    ],
    ids=["timeout-nan", "timeout-inf", "timeout-minus-inf", "request-1TiB", "request-0", "memory-huge",
         "response-float", "response-text", "memory-under-docker-minimum"],
)
def test_manifest_numbers_are_finite_and_in_range(modules_copy: Path, old: str, new: str, words: tuple[str, ...]) -> None:
    manifest = modules_copy / "hello" / "workload.toml"
    _edit(manifest, old, new)
    env = {"EDGELAB_MODULES_DIR": str(modules_copy)}
    for args in (("invoke", "hello", "-r", "wasm"), ("run", "-w", "fib", "-r", "wasm", "-n", "1", "--no-history")):
        line = one_clear_line(edgelab(*args, stdin=b"x", env=env))
        assert str(manifest) in line
        _says_range(line, *words)


@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        ('default_request = "edgelab"\n', 'default_request_file = "/dev/zero"\n', "request exceeds hello's limit of 65536 bytes"),
        ("max_request_bytes = 65536\n", "max_request_bytes = 3\n", "default_request of 7 bytes exceeds max_request_bytes = 3"),
    ],
    ids=["default-request-file-dev-zero", "default-request-too-long"],
)
def test_a_manifests_default_request_fits_its_limit(modules_copy: Path, old: str, new: str, says: str) -> None:
    manifest = modules_copy / "hello" / "workload.toml"
    _edit(manifest, old, new)
    done = subprocess.run(["bash", "-c", f"ulimit -v 4000000; exec {sys.executable} -m edgelab invoke hello -r wasm"],
                          input=b"x", capture_output=True, timeout=120, cwd=REPO,
                          env={**os.environ, "EDGELAB_MODULES_DIR": str(modules_copy)})
    line = one_clear_line(done)
    assert str(manifest) in line and says in line


def test_the_largest_max_request_bytes_still_answers_a_one_byte_request(modules_copy: Path) -> None:
    """1 TiB wrapped to 0 in the C ABI's 32-bit sizes and rejected every request; the maximum
    the manifest now accepts (1 GiB) builds and answers, on the native and the Wasm build."""
    _edit(modules_copy / "hello" / "workload.toml", "max_request_bytes = 65536\n", "max_request_bytes = 1073741824\n")
    env = {"EDGELAB_MODULES_DIR": str(modules_copy)}
    for runtime in ("subprocess", "wasm"):
        done = edgelab("invoke", "hello", "-r", runtime, stdin=b"a", env=env)
        assert (done.returncode, done.stdout) == (0, b"hello, a"), done.stderr.decode()


@pytest.mark.parametrize("value", ["0.000001", "inf", "nan", "-1", "soon"])
def test_docker_timeout_from_the_environment_is_checked(value: str) -> None:
    """Out of range, EDGELAB_DOCKER_TIMEOUT said 'no Docker engine answers' while one was up;
    now it names itself and its range, before any runtime is tried, in every command."""
    env = {"EDGELAB_DOCKER_TIMEOUT": value}
    for args in (("invoke", "hello", "-r", "container"), ("run", "-r", "container", "-n", "1", "--no-history"), ("doctor",)):
        line = one_clear_line(edgelab(*args, stdin=b"x", env=env))
        assert line.startswith("edgelab: EDGELAB_DOCKER_TIMEOUT must be a number from 0.5 to 3,600 seconds"), line


@pytest.mark.docker
def test_docker_timeout_in_range_is_used(docker_client: Any) -> None:
    done = edgelab("invoke", "hello", "-r", "container", stdin=b"t", env={"EDGELAB_DOCKER_TIMEOUT": "7.5"})
    assert (done.returncode, done.stdout) == (0, b"hello, t"), done.stderr.decode()
    code = "from edgelab.runtimes.container import api_timeout_s; print(api_timeout_s())"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "EDGELAB_DOCKER_TIMEOUT": "7.5"},
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "7.5"


# -- requests are read up to their limit and no further ---------------------------------------
def _shell(script: str, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    """``script`` in bash, with ``EDGELAB`` standing for this interpreter's ``-m edgelab``."""
    return subprocess.run(["bash", "-c", script], capture_output=True, timeout=timeout, cwd=REPO,
                          env={**os.environ, "EDGELAB": f"{sys.executable} -m edgelab"})


@pytest.mark.parametrize(
    "script",
    [
        "ulimit -v 4000000; $EDGELAB invoke hello -r wasm < /dev/zero",
        "ulimit -v 4000000; $EDGELAB invoke sha256 -r wasm < /dev/zero",
        "ulimit -v 4000000; $EDGELAB run -w hello -r wasm --request-file /dev/zero --no-history",
        "ulimit -v 4000000; head -c 100000000 /dev/zero | $EDGELAB invoke hello -r wasm",
    ],
    ids=["invoke-dev-zero", "invoke-16MiB-limit", "run-request-file", "pipe-100MB"],
)
def test_endless_request_stops_at_the_limit(script: str) -> None:
    done = _shell(script)
    line = one_clear_line(done)
    assert "exceeds" in line and "limit of" in line and "MemoryError" not in done.stderr.decode()
    assert done.stdout == b""


def test_closed_stdin_is_one_line() -> None:
    """The lab's choice: a closed stdin (``<&-``) is a scripting mistake, not an empty request;
    sending one silently would answer a question nobody asked. ``</dev/null`` sends an empty one."""
    line = one_clear_line(_shell("$EDGELAB invoke hello -r wasm <&-"))
    assert "stdin is closed" in line and "/dev/null" in line
    done = _shell("$EDGELAB invoke hello -r wasm </dev/null")
    assert (done.returncode, done.stdout) == (0, b"hello, world"), done.stderr.decode()


def test_invoke_writes_every_byte_to_a_non_blocking_pipe() -> None:
    """A non-blocking stdout takes only what its pipe holds per write: invoke waits and goes on
    until every byte is out (a single write lost the rest, or raised BlockingIOError)."""
    import fcntl

    request = os.urandom(32768).hex().encode()  # 65,536 bytes: hello's largest request
    expected = b"hello, " + request
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETFL, fcntl.fcntl(write_end, fcntl.F_GETFL) | os.O_NONBLOCK)
    child = subprocess.Popen([sys.executable, "-m", "edgelab", "invoke", "hello", "-r", "wasm"],
                             stdin=subprocess.PIPE, stdout=write_end, stderr=subprocess.PIPE, cwd=REPO)
    os.close(write_end)
    assert child.stdin is not None and child.stderr is not None
    child.stdin.write(request)
    child.stdin.close()
    import array
    import termios
    import time

    # Read nothing until the pipe is full (64 KiB, less than the answer): the child's next
    # write must then meet EAGAIN, and only a writer that waits and goes on gets it all out.
    deadline = time.monotonic() + 60
    queued = array.array("i", [0])
    while child.poll() is None and time.monotonic() < deadline:
        fcntl.ioctl(read_end, termios.FIONREAD, queued)
        if queued[0] >= 65536:
            break
        time.sleep(0.05)
    received = bytearray()
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        while chunk := pipe.read(4096):
            received += chunk
    assert child.wait(timeout=60) == 0, child.stderr.read().decode()
    assert bytes(received) == expected


# -- tight process limits: one line naming the limit ----------------------------------------------
def test_ulimit_n_16_names_the_limit() -> None:
    done = _shell("ulimit -n 16; $EDGELAB run -w hello -r subprocess,wasm -n 3 --no-history")
    line = one_clear_line(done)
    assert "ulimit -n is 16" in line and "Errno" not in done.stderr.decode()


def test_running_out_of_file_descriptors_mid_run_names_the_limit() -> None:
    """Past the start-up floor, the fds run out while instances are held: one line, the limit."""
    done = _shell("ulimit -n 64; $EDGELAB run -w hello -r subprocess,wasm -n 1 --resident 60 --no-history")
    line = one_clear_line(done)
    assert "ulimit -n is 64" in line, done.stderr.decode()


@pytest.mark.parametrize("kib", [400000, 100000])
def test_ulimit_v_gives_results_or_one_line_naming_it(kib: int) -> None:
    """Under ``ulimit -v`` the Wasm pool falls back to on-demand memories (so 400,000 KiB runs);
    where even a thread's stack no longer fits, the one line names ulimit -v, never a traceback."""
    done = _shell(f"ulimit -v {kib}; $EDGELAB run -w hello -r subprocess,wasm -n 3 --resident 5 --no-history")
    err = done.stderr.decode()
    assert "Traceback" not in err and "RuntimeError" not in err, err
    if done.returncode != 0:
        assert one_clear_line(done).count("ulimit -v") == 1, err
    else:
        assert b"wasm" in done.stdout and b"subprocess" in done.stdout


def test_limit_messages_name_the_limit() -> None:
    import errno

    from edgelab.settings import limit_message

    assert "ulimit -n is" in (limit_message(OSError(errno.EMFILE, "Too many open files")) or "")
    assert "ulimit -v is" in (limit_message(RuntimeError("can't start new thread")) or "")
    assert "ulimit -v is" in (limit_message(MemoryError()) or "")
    wrapped = ValueError("while reading")
    wrapped.__context__ = OSError(errno.EMFILE, "Too many open files")
    assert "ulimit -n is" in (limit_message(wrapped) or "")
    assert limit_message(OSError(errno.ENOENT, "No such file")) is None
    assert limit_message(RuntimeError("something else")) is None


# -- doctor and clean tell the truth about the user's files ---------------------------------------
def test_doctor_names_a_malformed_manifest_as_the_users_file(modules_copy: Path) -> None:
    manifest = modules_copy / "fib" / "workload.toml"
    manifest.write_text(manifest.read_text() + 'name = "fib\n')
    done = edgelab("doctor", env={"EDGELAB_MODULES_DIR": str(modules_copy), "COLUMNS": "400"})
    out = done.stdout.decode()
    assert done.returncode == 1, out
    workloads_row = next(line for line in out.splitlines() if line.startswith("│ workloads"))
    assert str(manifest) in workloads_row and "not valid TOML" in workloads_row and "line 8" in workloads_row
    assert "fix that workload.toml" in workloads_row
    assert "report this as a bug" not in out and "ManifestError" not in out, out


def test_doctor_lists_the_workloads_it_found() -> None:
    done = edgelab("doctor", env={"COLUMNS": "400"})
    row = next(line for line in done.stdout.decode().splitlines() if line.startswith("│ workloads"))
    assert "│ yes" in row and f"under {MODULES}" in row


def test_clean_cache_on_a_read_only_cache_does_not_claim_success(tmp_path: Path) -> None:
    """A read-only bind mount (in a mount namespace of the test's own) holds the cache: clean
    must say it could not remove it, exit non-zero, and the files stay. No engine is reachable
    for it (DOCKER_HOST), so it cannot touch other labs' containers."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is needed for a read-only mount")
    cache = tmp_path / "cache"
    (cache / "artifacts" / "hello-0").mkdir(parents=True)
    (cache / "artifacts" / "hello-0" / "hello.wasm").write_bytes(b"\0asm")
    script = (
        f"mount --bind -o ro {cache} {cache} || exit 77; "
        f"DOCKER_HOST=unix:///nonexistent EDGELAB_CACHE_DIR={cache} {sys.executable} -m edgelab clean --cache"
    )
    done = subprocess.run(["unshare", "--mount", "bash", "-c", script], capture_output=True, timeout=60, cwd=REPO)
    if done.returncode == 77 or b"unshare failed" in done.stderr:
        pytest.skip(f"no read-only bind mount here: {done.stderr.decode().strip()}")
    line = one_clear_line(done)
    assert line.startswith(f"edgelab: could not remove the build cache under {cache}") and "Read-only" in line
    assert b"removed built artifacts" not in done.stdout
    assert (cache / "artifacts" / "hello-0" / "hello.wasm").exists()


def test_clean_cache_removes_a_writable_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    (cache / "artifacts" / "hello-0").mkdir(parents=True)
    (cache / "wasm").mkdir()
    done = edgelab("clean", "--cache", env={"DOCKER_HOST": "unix:///nonexistent", "EDGELAB_CACHE_DIR": str(cache)})
    assert done.returncode == 0, done.stderr.decode()
    assert f"removed built artifacts under {cache}" in done.stdout.decode()
    assert not (cache / "artifacts").exists() and not (cache / "wasm").exists()
