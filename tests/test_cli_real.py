"""The command line as a person runs it, on the real runtimes: invoke, run, errors.

``edgelab invoke`` must give byte-identical responses from every rung usable here, for every
workload; sha256 and fib are checked against Python itself. The default rungs answer every
workload; every other registered rung answers hello and sha256 (every workload under CI=true,
where the minutes are there), a rung unusable here skipped with its own check() reason.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edgelab.errors import RuntimeUnavailable
from edgelab.runtimes import registry
from edgelab.session import Session
from edgelab.workloads import load_workloads

RUNTIMES = registry.default_names()
#: Every other registered rung, read at collection.
OTHER_RUNGS = tuple(n for n in registry.names() if n not in RUNTIMES)
IN_CI = os.environ.get("CI", "").lower() == "true"
pytestmark = pytest.mark.usefixtures("docker_client")


def _unusable_reason(rung: str) -> str | None:
    runtime = registry.create_runtime(rung, Session())
    try:
        runtime.check()
    except RuntimeUnavailable as exc:
        return exc.reason
    finally:
        runtime.close()
    return None


def edgelab(*args: str, stdin: bytes = b"", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "edgelab", *args],
        input=stdin,
        capture_output=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def invoke_all(workload: str, request: bytes) -> dict[str, bytes]:
    answers = {}
    for runtime in RUNTIMES:
        done = edgelab("invoke", workload, "--runtime", runtime, stdin=request)
        assert done.returncode == 0, f"{runtime}: {done.stderr.decode()}"
        answers[runtime] = done.stdout
    return answers


@pytest.mark.parametrize("name", sorted(load_workloads()))
def test_invoke_is_byte_identical_across_runtimes(name: str) -> None:
    request = load_workloads()[name].default_request
    answers = invoke_all(name, request)
    assert answers["container"] == answers["subprocess"] == answers["wasm"]
    assert answers["wasm"], "empty response to the default request"


#: The truth for the workloads checked on every rung: what their C sources answer.
_TRUTH = {
    "hello": lambda request: b"hello, " + (request or b"world"),
    "sha256": lambda request: hashlib.sha256(request).hexdigest().encode(),
}


@pytest.mark.parametrize("rung", OTHER_RUNGS)
def test_invoke_on_every_rung_is_byte_identical(rung: str) -> None:
    """hello and sha256 against the truth; under CI every workload against subprocess too.
    The workloads' invocations run a few at a time: each is a process of its own, mostly
    waiting on the interpreter's start, and their answers do not depend on timing."""
    from concurrent.futures import ThreadPoolExecutor

    reason = _unusable_reason(rung)
    if reason is not None:
        pytest.skip(f"{rung}: {reason}")
    names = sorted(load_workloads()) if IN_CI else ["hello"]

    def check(name: str) -> None:
        request = load_workloads()[name].default_request + bytes(range(256)) * (name in _TRUTH)
        done = edgelab("invoke", name, "--runtime", rung, stdin=request)
        assert done.returncode == 0, f"{rung} {name}: {done.stderr.decode()}"
        expected = _TRUTH[name](request) if name in _TRUTH else _subprocess_answer(name, request)
        assert done.stdout == expected and expected, {name: done.stdout, "expected": expected}

    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(check, names))


WASM_RUNGS = tuple(n for n in registry.names() if registry.spec(n).family == "wasm")


@pytest.mark.parametrize("rung", WASM_RUNGS)
def test_invoke_on_a_wasm_rung_starts_one_wasm_host(
    rung: str, monkeypatch: pytest.MonkeyPatch, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    """One request to a fresh instance needs the host it runs in, not the resident host that
    preparing for a ramp starts ahead: every Wasm host is a HostProcess, so count those."""
    import io

    from edgelab import cli
    from edgelab.runtimes.wasm import HostProcess

    started: list[str] = []
    real_init = HostProcess.__init__

    def counting_init(self: HostProcess, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        started.append(self.allocator)

    monkeypatch.setattr(HostProcess, "__init__", counting_init)
    request = b"one host"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(request)))
    code = cli.main(["invoke", "hello", "-r", rung])
    out, err = capfdbinary.readouterr()
    assert code == 0, err.decode()
    assert out == _TRUTH["hello"](request)
    assert started == ["pool" if rung == "wasm" else "ondemand"], started


def test_invoke_imports_only_what_one_launch_needs() -> None:
    """A Wasm invoke imports neither docker nor the other subcommands' module (rich and the
    run's reporting): the CLI hands it to ``edgelab.invoke``."""
    code = (
        "import sys; from edgelab.cli import main; code = main(['invoke', 'hello', '-r', 'wasm']); "
        "print(code, *(m for m in ('docker', 'rich', 'edgelab.commands', 'textual') if m in sys.modules), "
        "file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], input=b"", capture_output=True, timeout=120)
    assert done.stdout == b"hello, world"
    assert done.stderr.decode().split() == ["0"], done.stderr.decode()


@functools.cache
def _subprocess_answer(name: str, request: bytes) -> bytes:
    """The plain subprocess rung's answer, asked once per workload for all the rungs."""
    done = edgelab("invoke", name, "--runtime", "subprocess", stdin=request)
    assert done.returncode == 0, f"subprocess: {done.stderr.decode()}"
    return done.stdout


@pytest.mark.parametrize(
    "request_bytes",
    [b"", b"x", b"a\x00b\x00\xff\x00" * 100, os.urandom(3 * 1024 * 1024 + 7)],
    ids=["empty", "one-byte", "binary-with-nul", "multi-mib"],
)
def test_sha256_matches_hashlib(request_bytes: bytes) -> None:
    answers = invoke_all("sha256", request_bytes)
    expected = hashlib.sha256(request_bytes).hexdigest().encode()
    assert answers == {runtime: expected for runtime in RUNTIMES}


def _fib(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


@pytest.mark.parametrize("n", [0, 1, 2, 47, 90])
def test_fib_matches_python(n: int) -> None:
    answers = invoke_all("fib", str(n).encode())
    assert answers == {runtime: str(_fib(n)).encode() for runtime in RUNTIMES}


def test_rejected_request_is_one_line_and_non_zero() -> None:
    for runtime in RUNTIMES:
        done = edgelab("invoke", "fib", "--runtime", runtime, stdin=b"91")
        assert done.returncode != 0
        err = done.stderr.decode().strip()
        assert err.startswith("edgelab: ") and "\n" not in err and "Traceback" not in err
        assert done.stdout == b""


@pytest.mark.parametrize(
    "args",
    [
        ("run", "--workload", "nope"),
        ("run", "--runtimes", "vm"),
        ("run", "--count", "0"),
        ("run", "--count", "-2"),
        ("invoke", "nope", "--runtime", "wasm"),
        ("invoke", "fib", "--runtime", "vm"),
        ("run", "--workload", "fib", "--request", "abc", "--runtimes", "subprocess,wasm", "--count", "1"),
    ],
)
def test_bad_input_is_one_clear_line(args: tuple[str, ...]) -> None:
    done = edgelab(*args)
    assert done.returncode != 0
    err = done.stderr.decode().strip()
    assert "Traceback" not in err
    assert err.splitlines()[-1].startswith("edgelab: ")


def test_run_writes_all_exports(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    done = edgelab(
        # Wasm's PSS growth over 2 instances is within a few pages' noise (it read -10 KiB once):
        # 50 lift it clear; the TUI's short spelling goes through the CLI on the way.
        "run", "--workload", "fib", "--count", "3", "--resident", "c=2,s=2,w=50",
        "--json", str(out), "--csv", str(tmp_path / "r.csv"), "--markdown", str(tmp_path / "r.md"),
        env={"EDGELAB_DATA_DIR": str(tmp_path / "data")},
    )
    assert done.returncode == 0, done.stderr.decode()
    data = json.loads(out.read_text())
    assert data["metadata"]["versions"]["wasmtime"]
    assert data["metadata"]["versions"]["docker_engine"]
    assert data["metadata"]["responses_identical"] is True
    by_runtime = {r["runtime"]: r for r in data["results"]}
    assert set(by_runtime) == set(RUNTIMES)
    for runtime, r in by_runtime.items():
        assert r["error"] is None, f"{runtime}: {r['error']}"
        assert r["count"] == 3 and r["ok"] == 3 and r["failed"] == 0
        assert 0 < r["startup_us"]["min"] <= r["startup_us"]["p50"] <= r["startup_us"]["max"]
        assert len(r["samples_us"]) == 3
        assert r["memory_kib_per_instance"] > 0 and r["memory_metric"] and r["instances_per_gib"] > 0
    # The story the lab exists to show, with generous margins for a noisy machine.
    p50 = {rt: by_runtime[rt]["startup_us"]["p50"] for rt in RUNTIMES}
    assert p50["wasm"] < p50["subprocess"] < p50["container"]
    markdown = (tmp_path / "r.md").read_text()
    assert "| container |" in markdown
    assert len((tmp_path / "r.csv").read_text().splitlines()) > 9
    # One sentence from the same figures in the terminal and in the exports.
    sentence = data["metadata"]["conclusion"]
    assert sentence.startswith("wasm started ") and " faster than container" in sentence
    assert sentence in done.stdout.decode().splitlines() and sentence in markdown
    ratios = {rt: by_runtime[rt]["p50_vs_fastest"] for rt in RUNTIMES}
    assert ratios["wasm"] == 1.0 and ratios["container"] > ratios["subprocess"] > 1.0
    container_row = next(line for line in markdown.splitlines() if line.startswith("| container |"))
    assert " ms |" in container_row and "µs" not in container_row.split("|")[5]  # p50 in ms


def test_unavailable_engine_degrades_only_the_container_runtime(tmp_path: Path) -> None:
    """The others run and are written; the exit status says a runtime failed (issue 10 item 8)."""
    out = tmp_path / "r.json"
    done = edgelab("run", "--workload", "hello", "--count", "2", "--json", str(out), "--no-history", env={"DOCKER_HOST": "tcp://127.0.0.1:1"})
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("edgelab: container: no Docker engine answers")
    assert "| wasm" in done.stdout.decode() or "wasm " in done.stdout.decode()
    by_runtime = {r["runtime"]: r for r in json.loads(out.read_text())["results"]}
    assert by_runtime["container"]["error"] and by_runtime["container"]["ok"] == 0
    assert by_runtime["wasm"]["ok"] == 2 and by_runtime["subprocess"]["ok"] == 2


def test_doctor_and_workloads_json() -> None:
    done = edgelab("doctor", env={"COLUMNS": "1000"})  # one line per row: details grow
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    wasm_row = next(line for line in done.stdout.decode().splitlines() if "│ wasm" in line)
    # the wording is the Wasm runtime's (doctor_details); what must be there: the pool, its
    # size, and the compiled launch path
    assert "allocator pooling" in wasm_row and "30,000 slots" in wasm_row and "launch path compiled" in wasm_row
    off = edgelab("doctor", env={"COLUMNS": "1000", "EDGELAB_WASM_HOTPATH": "0"}).stdout.decode()
    assert "launch path ctypes (EDGELAB_WASM_HOTPATH=0)" in off
    listing = json.loads(edgelab("workloads", "--json").stdout)
    assert {w["name"] for w in listing} >= {"hello", "fib", "sha256", "jwt", "resize", "iot"}
    for entry in listing:
        for kind in ("wasm", "native"):
            assert Path(entry[kind]["path"]).is_file()
            assert entry[kind]["size_bytes"] == Path(entry[kind]["path"]).stat().st_size
        assert entry["image"]["tag"].startswith("edgelab/") and entry["image"]["size_bytes"] > 0


def test_a_runtime_killed_mid_run_makes_the_exit_non_zero(tmp_path: Path) -> None:
    """Issue 10 item 8: the Wasm host SIGKILLed mid-run. The run goes on with the container,
    whose results are printed and written; the exit status is 1 and the last line says why."""
    import signal
    import time

    import psutil

    out = tmp_path / "r.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgelab", "run", "-w", "hello", "-r", "container,wasm", "-n", "12",
         "--interleave", "launch", "--warmup", "0", "--json", str(out), "--no-history"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        host = None
        while host is None and time.monotonic() < deadline and proc.poll() is None:
            for child in psutil.Process(proc.pid).children(recursive=True):
                try:
                    if "edgelab.runtimes.wasm.host" in " ".join(child.cmdline()):
                        host = child
                except psutil.Error:
                    continue
            time.sleep(0.05)
        assert host is not None, "no Wasm host process appeared"
        time.sleep(1.0)  # a few interleaved launches in
        host.send_signal(signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = stderr.decode()
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("edgelab: wasm: "), err
    results = {r["runtime"]: r for r in json.loads(out.read_text())["results"]}
    assert results["container"]["ok"] == 12 and results["container"]["failed"] == 0
    assert results["wasm"]["failed"] > 0 or results["wasm"]["error"]
    assert "container" in stdout.decode()
