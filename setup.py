"""Build hook: ship the workloads, the ABI and the image template inside the package.

``modules/`` and ``images/`` stay at the repository's top level (where people look for them and
add a workload by adding a folder); a wheel carries copies under ``edgelab/_shipped/``, so a
non-editable ``pip install .``, a wheel and ``pipx install .`` find them
(``edgelab.workloads.shipped_dir``). A glob rather than package-data lists: a new workload
folder ships without editing this file. An editable install skips the copy and keeps reading
the source tree. Everything else is declared in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
#: Top-level folders copied into the package, as ``edgelab/_shipped/<name>``.
SHIPPED = ("modules", "images")
_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")


class build_py_with_shipped(build_py):  # noqa: N801 - setuptools' command naming
    """``build_py`` plus fresh copies of ``SHIPPED`` (a stale file from an earlier build of a
    removed workload would otherwise ship too, so the copy replaces what was there)."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        target = Path(self.build_lib) / "edgelab" / "_shipped"
        if target.exists():
            shutil.rmtree(target)
        for name in SHIPPED:
            source = ROOT / name
            if not source.is_dir():
                raise SystemExit(f"edgelab build: {source} is missing; it must ship in the package")
            shutil.copytree(source, target / name, ignore=_SKIP)


setup(cmdclass={"build_py": build_py_with_shipped})
