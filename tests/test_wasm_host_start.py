"""What a Wasm host process imports and reads when it starts: every invoke and every lab pays
it once per host, before the first launch."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("wasmtime")


def test_the_host_imports_none_of_the_labs_side() -> None:
    """The host reaches ``edgelab.runtimes.wasm.host`` through its package: the package must
    not pull in the lab's runtime, the manifest reader or importlib.metadata on the way."""
    lab_side = ("edgelab.runtimes.wasm.runtime", "edgelab.workloads", "edgelab.session", "importlib.metadata")
    code = (
        "import sys, edgelab.runtimes.wasm.host; "
        f"print(','.join(m for m in {lab_side!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"the host imported {out.stdout.strip()}"


def test_the_host_reads_the_wasmtime_version_importlib_metadata_reads() -> None:
    from importlib.metadata import version

    from edgelab.runtimes.wasm import host

    assert host.wasmtime_version() == version("wasmtime")
    assert host.Host(4 << 20).ping()["wasmtime"] == version("wasmtime")


def test_the_lab_side_names_still_come_from_the_package() -> None:
    import edgelab.runtimes.wasm as wasm
    from edgelab.runtimes.wasm.runtime import HostProcess, WasmRuntime

    assert (wasm.WasmRuntime, wasm.HostProcess) == (WasmRuntime, HostProcess)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        wasm.Nope  # noqa: B018


def test_a_module_that_cannot_be_built_leaves_no_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lab finds (or builds) the module while a new host boots: when that fails, prepare
    says why in one RuntimeUnavailable and the host it started is gone, reaped."""
    from edgelab import build
    from edgelab.errors import EdgelabError, RuntimeUnavailable
    from edgelab.runtimes.wasm import HostProcess, WasmRuntime
    from edgelab.session import Session
    from edgelab.workloads import get_workload

    started: list[HostProcess] = []
    real_init = HostProcess.__init__

    def counting_init(self: HostProcess, *args: object, **kwargs: object) -> None:
        real_init(self, *args, **kwargs)  # type: ignore[arg-type]
        started.append(self)

    def no_compiler(*_args: object, **_kwargs: object) -> None:
        raise EdgelabError("zig exited 1: no compiler here")

    monkeypatch.setattr(HostProcess, "__init__", counting_init)
    monkeypatch.setattr(build, "ensure_wasm", no_compiler)
    runtime = WasmRuntime(Session(), resident_host_at_prepare=False)
    try:
        with pytest.raises(RuntimeUnavailable) as caught:
            runtime.prepare(get_workload("hello"))
        assert caught.value.reason == "zig exited 1: no compiler here"
        assert caught.value.fix == "edgelab build shows the compiler's error"
        assert runtime.host_pids == []
        assert len(started) <= 1 and all(host.process.poll() is not None for host in started)
    finally:
        runtime.close()
