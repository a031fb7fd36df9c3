"""Artifact builds: cache keys, cache hits, atomic rebuilds and one-line build errors."""

from __future__ import annotations

import dataclasses
import shutil
import threading
import time
from pathlib import Path
from types import MappingProxyType

import pytest

from edgelab import build
from edgelab.errors import ArtifactError
from edgelab.workloads import Workload, get_workload, load_manifest


@pytest.fixture(scope="session")
def hello() -> Workload:
    return get_workload("hello")


def test_cache_hit_returns_same_path_quickly_without_rebuilding(hello: Workload) -> None:
    first = build.ensure_native(hello)
    mtime = first.stat().st_mtime_ns
    calls: list[str] = []
    started = time.perf_counter()
    again = build.ensure_native(hello, progress=calls.append)
    elapsed = time.perf_counter() - started
    assert again == first
    assert again.stat().st_mtime_ns == mtime
    assert calls == []
    assert elapsed < 0.1, f"cache hit took {elapsed * 1000:.1f} ms"


def test_artifact_paths_follow_the_layout(hello: Workload) -> None:
    key = build.source_hash(hello)[:16]
    wasm = build.ensure_wasm(hello)
    assert wasm == build.cache_dir() / "artifacts" / f"hello-{key}" / "hello.wasm"
    assert wasm.read_bytes()[:4] == b"\0asm"
    native = build.ensure_native(hello, build.host_arch())
    assert native.name == f"hello-{build.host_arch()}"
    assert native.read_bytes()[:4] == b"\x7fELF"
    assert set(build.artifact_sizes(hello)) >= {"wasm32-wasi", build.host_arch()}


def test_source_hash_changes_with_every_input(hello: Workload) -> None:
    base = build.source_hash(hello)
    assert build.source_hash(hello) == base
    with_define = dataclasses.replace(hello, defines=MappingProxyType({"EDGELAB_X": "1"}))
    other_value = dataclasses.replace(hello, defines=MappingProxyType({"EDGELAB_X": "2"}))
    bigger = dataclasses.replace(hello, max_request_bytes=hello.max_request_bytes + 1)
    hashes = {
        base,
        build.source_hash(with_define),
        build.source_hash(other_value),
        build.source_hash(bigger),
    }
    assert len(hashes) == 4


def test_source_hash_changes_with_the_source(tmp_path: Path, hello: Workload) -> None:
    copy = tmp_path / "hello"
    shutil.copytree(hello.directory, copy)
    assert build.source_hash(load_manifest(copy / "workload.toml")) == build.source_hash(hello)
    (copy / "hello.c").write_text((copy / "hello.c").read_text() + "\n/* changed */\n")
    assert build.source_hash(load_manifest(copy / "workload.toml")) != build.source_hash(hello)


def test_broken_source_raises_one_line_artifact_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGELAB_CACHE_DIR", str(tmp_path / "cache"))
    copy = tmp_path / "fib"
    shutil.copytree(get_workload("fib").directory, copy)
    (copy / "fib.c").write_text((copy / "fib.c").read_text() + "\nint broken( {\n")
    broken = load_manifest(copy / "workload.toml")
    for ensure, target in (
        (build.ensure_native, build.host_arch()),
        (build.ensure_wasm, "wasm32-wasi"),
    ):
        with pytest.raises(ArtifactError) as failure:
            ensure(broken)
        message = str(failure.value)
        assert "\n" not in message
        assert message.startswith(f"cannot build fib for {target}: ")
        assert "error" in message and "fib.c" in message
    leftovers = [
        p.name
        for p in (tmp_path / "cache" / "artifacts").glob("*/*")
        if not p.name.endswith(".lock")
    ]
    assert leftovers == []  # no artifact and no scratch directory left behind


def test_empty_artifact_is_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hello: Workload
) -> None:
    monkeypatch.setenv("EDGELAB_CACHE_DIR", str(tmp_path / "cache"))
    path = build.ensure_wasm(hello)
    path.write_bytes(b"")
    assert build.ensure_wasm(hello) == path
    assert path.stat().st_size > 0


def test_concurrent_builds_build_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hello: Workload
) -> None:
    monkeypatch.setenv("EDGELAB_CACHE_DIR", str(tmp_path / "cache"))
    built: list[str] = []
    results: list[Path] = []

    def worker() -> None:
        results.append(build.ensure_wasm(hello, progress=built.append))

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(built) == 1 and len(set(results)) == 1
    assert sorted(p.name for p in results[0].parent.iterdir() if not p.name.endswith(".lock")) == [
        "hello.wasm",
        "hello.wasm.sha256",  # the digest checked on every use
    ]


def test_zig_caches_live_under_the_cache_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGELAB_CACHE_DIR", str(tmp_path))
    env = build._zig_env()
    assert env["ZIG_GLOBAL_CACHE_DIR"].startswith(str(tmp_path))
    assert env["ZIG_LOCAL_CACHE_DIR"].startswith(str(tmp_path))


def test_unknown_target_is_an_artifact_error(hello: Workload) -> None:
    with pytest.raises(ArtifactError, match="unknown build target"):
        build.ensure_native(hello, "riscv64")


def test_build_module_imports_no_heavy_packages() -> None:
    import subprocess
    import sys

    code = "import sys, edgelab.build; print(sorted({'textual','docker','wasmtime'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
