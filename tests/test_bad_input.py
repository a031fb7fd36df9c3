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
    done = edgelab("run", "-w", "hello", "-n", "1", "--json", str(out), env=env, prelude=prelude)
    err = done.stderr.decode()
    assert done.returncode == 0 and "Traceback" not in err, err
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
