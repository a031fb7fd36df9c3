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
