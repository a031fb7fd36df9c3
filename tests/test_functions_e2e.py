"""Issue 13's acceptance, end to end through the real CLI: the three artifact kinds of one
function measured side by side in one ``edgelab run`` (a hand-written WAT module, Debian's
``busybox cat`` as a command, and busybox ``FROM scratch`` as an image whose entrypoint is
``cat``), responses compared, JSON with each runtime's exit time and artifact size; a run
whose answers differ showing the first differing byte; a function saved by ``edgelab add`` run
by name; and bad input, each one line, exit 2, nothing written.

Real parts only: wasmtime, a real process, a real container (built FROM scratch here, never
pulled). The conftest's leak check fails the session if a container is left behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

BUSYBOX = Path("/bin/busybox")
WASI_FIXTURES = Path(__file__).parent / "fixtures" / "wasi"
#: The container tests' repository (tests/test_container_function.py), a tag of our own.
IMAGE = "edgelab-test-busybox:cat"
TEST_IMAGE_LABEL = "edgelab.test-image"
REQUEST = "measured side by side by programs no one here wrote\n"

pytestmark = pytest.mark.skipif(not BUSYBOX.is_file(), reason="needs busybox-static (/bin/busybox)")


@pytest.fixture(scope="module")
def cat_image(docker_client: Any) -> str:
    """Busybox FROM scratch with entrypoint ["/busybox", "cat"], built once (reused when the
    engine has it), labelled as a test image, nothing pulled."""
    import docker

    try:
        docker_client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        with tempfile.TemporaryDirectory(prefix="edgelab-test-cat-") as context:
            shutil.copy(BUSYBOX, Path(context) / "busybox")
            (Path(context) / "Dockerfile").write_text(
                'FROM scratch\nCOPY busybox /busybox\nENTRYPOINT ["/busybox", "cat"]\n'
            )
            docker_client.images.build(path=context, tag=IMAGE, pull=False, rm=True, labels={TEST_IMAGE_LABEL: "1"})
    return IMAGE


@pytest.fixture(scope="module")
def modules(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The WASI fixtures as .wasm files: echo (stdin to stdout) and env_import (imports env.foo)."""
    from edgelab.runtimes.wasm.wasi import wat_to_wasm

    folder = tmp_path_factory.mktemp("modules")
    found = {}
    for name in ("echo", "env_import"):
        found[name] = folder / f"{name}.wasm"
        found[name].write_bytes(wat_to_wasm((WASI_FIXTURES / f"{name}.wat").read_text()))
    return found


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    """A data dir (history) and a workloads folder of the test's own, for the CLI's env."""
    return {"EDGELAB_DATA_DIR": str(tmp_path / "data"), "EDGELAB_WORKLOADS_DIR": str(tmp_path / "saved")}


def edgelab(*args: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI in a process of its own (what a person types)."""
    return subprocess.run(
        [sys.executable, "-m", "edgelab", *args],
        capture_output=True, text=True, timeout=120, cwd=cwd, env={**os.environ, **env},
    )  # fmt: skip


def in_process(
    argv: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> subprocess.CompletedProcess[str]:
    """The CLI's own entry point (``edgelab.cli.main``) in this process, for the commands that
    run nothing: the same exit status and lines, without a second of interpreter start-up each."""
    from edgelab import cli

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    code = cli.main(argv)
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, captured.out, captured.err)


def test_three_artifact_kinds_side_by_side_in_one_run(
    modules: dict[str, Path], cat_image: str, docker_client: Any, home: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "out.json"
    done = edgelab(
        "run", "--wasm", str(modules["echo"]), "--command", f"{BUSYBOX} cat", "--image", cat_image,
        "-r", "wasm,subprocess,container", "-n", "3", "--warmup", "0", "--request", REQUEST,
        "--json", str(out), "--no-history", env=home,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "echo: cold start = launch → first stdout byte" in done.stdout
    assert "responses identical across the runtimes" in done.stdout
    assert "exit p50 (launch → exit): wasm " in done.stdout
    data = json.loads(out.read_text())
    meta = data["metadata"]
    assert meta["responses_identical"] is True and meta["response_differences"] == []
    assert meta["settings"]["function"]["image"] == cat_image
    results = {r["runtime"]: r for r in data["results"]}
    assert list(results) == ["wasm", "subprocess", "container"]
    sizes = {
        "wasm": modules["echo"].stat().st_size,
        "native": BUSYBOX.stat().st_size,
        "image": int(docker_client.images.get(cat_image).attrs["Size"]),
    }
    for name, kind in (("wasm", "wasm"), ("subprocess", "native"), ("container", "image")):
        r = results[name]
        assert r["ok"] == 3 and r["failed"] == 0, r
        # Each launch exits after its first stdout byte, so the exit p50 is no earlier.
        assert r["exit_us"]["p50"] >= r["startup_us"]["p50"] > 0
        assert r["artifact"]["kind"] == kind and r["artifact"]["size_bytes"] == sizes[kind]
    assert meta["artifacts"]["native"]["path"] == str(BUSYBOX)


def test_answers_that_differ_show_the_first_differing_byte_and_both_lengths(
    modules: dict[str, Path], home: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "out.json"
    done = edgelab(
        "run", "--wasm", str(modules["echo"]), "--command", f"{BUSYBOX} sha256sum", "-r", "wasm,subprocess",
        "-n", "3", "--warmup", "0", "--request", "hello", "--json", str(out), "--no-history", env=home,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    digest = hashlib.sha256(b"hello").hexdigest() + "  -\n"  # what busybox sha256sum says, by hashlib
    line = f"subprocess answered {len(digest)} bytes, wasm 5 bytes: first differing byte at offset 0"
    assert "the responses differ:" in done.stdout and line in done.stdout
    meta = json.loads(out.read_text())["metadata"]
    assert meta["responses_identical"] is False
    assert meta["response_differences"] == [
        {"runtime": "subprocess", "against": "wasm", "first_differing_byte": 0, "bytes": len(digest), "against_bytes": 5}
    ]


def test_a_saved_function_runs_by_name(
    modules: dict[str, Path], home: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    added = in_process(["add", "echoer", "--wasm", str(modules["echo"]), "--command", f"{BUSYBOX} cat", "--request", "hi"], home, monkeypatch, capsys)
    assert added.returncode == 0, added.stderr
    # No built-in workloads here (an empty modules folder): listing them would build them all.
    (tmp_path / "no-builtins").mkdir()
    only_saved = {**home, "EDGELAB_MODULES_DIR": str(tmp_path / "no-builtins")}
    listed = in_process(["workloads", "--json"], only_saved, monkeypatch, capsys)
    assert listed.returncode == 0, listed.stderr
    [entry] = json.loads(listed.stdout)
    assert entry["name"] == "echoer" and entry["kind"] == "function"
    assert entry["wasm"]["size_bytes"] == modules["echo"].stat().st_size
    assert entry["native"]["size_bytes"] == BUSYBOX.stat().st_size and entry["image"] is None
    table = in_process(["workloads"], only_saved, monkeypatch, capsys)
    assert table.returncode == 0 and "│ echoer │ function │" in table.stdout, table.stdout + table.stderr
    built = in_process(["build", "--no-image"], only_saved, monkeypatch, capsys)
    assert built.returncode == 0 and "echoer: skipped, a function (its artifacts are yours, nothing to build)" in built.stderr
    monkeypatch.delenv("EDGELAB_MODULES_DIR")
    out = tmp_path / "saved.json"
    done = edgelab("run", "-w", "echoer", "-r", "wasm,subprocess", "-n", "3", "--warmup", "0", "--json", str(out), "--no-history", env=home)
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    assert data["metadata"]["responses_identical"] is True and data["metadata"]["settings"]["request_bytes"] == 2
    assert all(r["ok"] == 3 and r["exit_us"] for r in data["results"])
    assert data["metadata"]["artifacts"]["wasm"]["path"] == str(Path(home["EDGELAB_WORKLOADS_DIR"]) / "echoer" / "echo.wasm")
    assert "echoer: cold start = launch → first stdout byte" in done.stdout


def test_bad_input_through_the_cli_is_one_line_exit_2_and_writes_nothing(
    modules: dict[str, Path], docker_client: Any, home: dict[str, str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    not_wasm = tmp_path / "app.wasm"
    not_wasm.write_text("#!/bin/sh\necho hi\n")
    out = tmp_path / "out.json"
    cases = [
        # -w as typed (a string from argv, not the parser's default one): in its own process.
        (["run", "-w", "hello", "--command", f"{BUSYBOX} cat"], "-w hello and --wasm/--image/--command both name"),
        (["run", "--wasm", str(not_wasm)], "is not a WebAssembly module"),
        (["run", "--wasm", str(modules["env_import"])], "outside wasi_snapshot_preview1: env.foo"),
        (["run", "--image", "edgelab-test-never-built:nope"], "the engine has no such image, and edgelab never pulls"),
        (["run", "--command", "h8-no-such-program"], "h8-no-such-program not found on PATH"),
    ]
    for i, (argv, expected) in enumerate(cases):
        args = [*argv, "-n", "3", "--json", str(out)]
        done = edgelab(*args, env=home) if i == 0 else in_process(args, home, monkeypatch, capsys)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("edgelab: "), done.stderr
        assert expected in lines[0] and done.stdout == ""
    first = in_process(["add", "twice", "--command", f"{BUSYBOX} cat"], home, monkeypatch, capsys)
    assert first.returncode == 0, first.stderr
    manifest = Path(home["EDGELAB_WORKLOADS_DIR"]) / "twice" / "workload.toml"
    before = manifest.read_text()
    again = edgelab("add", "twice", "--wasm", str(modules["echo"]), env=home)
    assert again.returncode == 2 and again.stderr.strip().splitlines() == [
        f"edgelab: workload 'twice' exists already ({manifest.parent}): choose another name, or remove that folder"
    ]
    assert manifest.read_text() == before and sorted(os.listdir(manifest.parent)) == ["workload.toml"]
    assert not out.exists()  # no export of a run that never ran
    assert not (Path(home["EDGELAB_DATA_DIR"]) / "runs").exists()  # nor a history entry
