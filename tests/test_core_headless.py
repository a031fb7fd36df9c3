"""The measuring core runs headless: importing it must not pull in textual (harlequin's check)."""

import subprocess
import sys

import pytest

CORE_MODULES = [
    "edgelab.cli",
    "edgelab.commands",
    "edgelab.invoke",
    "edgelab.lab",
    "edgelab.stats",
    "edgelab.results",
    "edgelab.export",
    "edgelab.workloads",
    "edgelab.build",
    "edgelab.runtimes.subprocess",
    "edgelab.runtimes.container",
    "edgelab.runtimes.wasm",
    "edgelab.runtimes.fake",
    "edgelab.catalog",
    "edgelab.capabilities",
]
# Every registered runtime's module too, read from the registry (a new rung needs no edit here).
from edgelab.runtimes import registry  # noqa: E402

CORE_MODULES += sorted({s.module for s in registry.specs(include_hidden=True)} - set(CORE_MODULES))


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_module_does_not_import_textual(module: str) -> None:
    code = (
        f"import sys, {module}; "
        "heavy = [m for m in ('textual', 'docker', 'wasmtime') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{module} imported {out.stdout.strip()} at import time"
