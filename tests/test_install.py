"""The lab installs anywhere: a wheel outside the source tree, and the Quickstart on a fresh clone.

A wheel must carry the workloads, the ABI and the image template (setup.py copies ``modules/``
and ``images/`` into ``edgelab/_shipped/``); an editable install keeps reading the source tree.
The wheel test installs into a fresh venv in a temporary folder and runs from a cwd outside the
tree, so nothing can be found relative to the repository by accident. It reuses the current
environment's installed dependencies through a ``.pth`` file (no network, seconds), but the
edgelab it runs must be the wheel's: the test checks where it was imported from.

The Quickstart test clones the repository and runs the README's first command verbatim with a
``python3`` that is externally managed (PEP 668): Debian's /usr/bin/python3 here. The command
ends by opening the TUI, so it runs in tmux and the test quits it with q, as a person would.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import uuid
from pathlib import Path

import pytest

import edgelab
from edgelab.workloads import load_workloads, modules_dir, shipped_dir

REPO = Path(__file__).resolve().parent.parent
#: What the wheel test copies out of the working tree (everything but build leftovers and VCS).
_NOT_SOURCE = shutil.ignore_patterns(
    ".git", "build", "dist", "*.egg-info", "__pycache__", ".venv", ".pytest_cache",
    ".hypothesis", ".benchmarks", "screenshots", "exports",
)  # fmt: skip
#: Candidates for an externally managed interpreter (the system Python of Debian/Ubuntu).
SYSTEM_PYTHONS = ("/usr/bin/python3",)


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without anything that would point edgelab back at this tree."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("EDGELAB_MODULES_DIR", "PYTHONPATH", "VIRTUAL_ENV")
    }
    return env | extra


def _run(
    command: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        command, cwd=cwd, env=env or _clean_env(), capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, (
        f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done


def quickstart_commands() -> list[str]:
    """The shell lines of the README's Quickstart code block, as written."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "the Quickstart has no sh code block"
    return [line for line in block.group(1).splitlines() if line.strip()]


# -- fast checks -------------------------------------------------------------------------------
def test_quickstart_is_two_commands_and_ci_runs_the_second_verbatim() -> None:
    commands = quickstart_commands()
    assert len(commands) == 2, commands
    assert commands[0].endswith("edgelab"), "the first command opens the lab"
    assert "pytest" in commands[1], "the second command runs the tests"
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert commands[1] in ci, f".ci/run must run the README's test command verbatim: {commands[1]}"
    assert "bash .ci/start-docker" in ci, ".ci/run starts a Docker engine first"


def test_a_source_tree_reads_its_own_modules_and_images() -> None:
    if Path(edgelab.__file__).resolve().parent != REPO / "edgelab":
        pytest.skip(f"edgelab is imported from {edgelab.__file__}, not this source tree")
    assert shipped_dir("modules") == REPO / "modules"
    assert shipped_dir("images") == REPO / "images"
    assert not (REPO / "edgelab" / "_shipped").exists(), (
        "an editable install must not copy the workloads"
    )


def test_edgelab_modules_dir_overrides_at_each_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(REPO / "modules" / "fib", tmp_path / "fib")
    monkeypatch.setenv("EDGELAB_MODULES_DIR", str(tmp_path))
    assert modules_dir() == tmp_path
    assert list(load_workloads()) == ["fib"]
    monkeypatch.delenv("EDGELAB_MODULES_DIR")
    assert modules_dir() == shipped_dir("modules")


@pytest.mark.parametrize(
    "args",
    [["workloads"], ["workloads", "--json"], ["run", "-w", "hello", "-r", "wasm", "-n", "1"]],
)
def test_no_workloads_found_is_one_line_and_a_failure(tmp_path: Path, args: list[str]) -> None:
    env = _clean_env(EDGELAB_MODULES_DIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "edgelab", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgelab: no workloads found under "), (
        done.stderr
    )
    assert str(tmp_path) in lines[0] and "EDGELAB_MODULES_DIR" in lines[0]


def test_version_flag_prints_the_package_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "edgelab", "--version"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"edgelab {edgelab.__version__}"


# -- a wheel, installed outside the tree ---------------------------------------------------------
def _venv_reusing_installed_dependencies(venv: Path) -> Path:
    """A fresh venv whose only way to the current environment's packages is a .pth file at the
    end of its path: its own site-packages (where the wheel goes) comes first."""
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    here = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site) / "_edgelab_test_dependencies.pth").write_text("\n".join(sorted(here)) + "\n")
    return python


@pytest.mark.slow
@pytest.mark.docker
def test_wheel_outside_the_tree_lists_six_workloads_and_runs_all_three_runtimes(
    tmp_path: Path, docker_client: object
) -> None:
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=_NOT_SOURCE)  # the working tree, without build leftovers
    dist = tmp_path / "dist"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(source)],
        tmp_path,
        300,
    )
    wheels = list(dist.glob("edgelab-*.whl"))
    assert len(wheels) == 1, wheels
    shutil.rmtree(source)  # nothing may be read from the sources from here on
    python = _venv_reusing_installed_dependencies(tmp_path / "venv")
    _run([str(python), "-m", "pip", "install", "--no-deps", "-q", str(wheels[0])], tmp_path, 300)
    outside = tmp_path / "elsewhere"
    outside.mkdir()

    where = _run(
        [
            str(python),
            "-c",
            "import edgelab, edgelab.workloads as w; print(edgelab.__file__); print(w.modules_dir())",
        ],
        outside,
        60,
    )
    package_file, found_modules = where.stdout.split()
    assert Path(package_file).is_relative_to(tmp_path / "venv"), (
        f"edgelab came from {package_file}, not the wheel"
    )
    assert Path(found_modules).is_relative_to(tmp_path / "venv")

    edgelab_bin = str(tmp_path / "venv" / "bin" / "edgelab")
    listing = json.loads(_run([edgelab_bin, "workloads", "--json"], outside, 300).stdout)
    names = [entry["name"] for entry in listing]
    assert len(names) == 6 and names == sorted(load_workloads(REPO / "modules")), names
    assert all(entry["image"] is not None for entry in listing), "the image template ships too"

    export = outside / "burst.json"
    _run(
        [
            edgelab_bin,
            "run",
            "-w",
            "hello",
            "-r",
            "container,subprocess,wasm",
            "-n",
            "3",
            "--json",
            str(export),
        ],
        outside,
        300,
    )
    results = {r["runtime"]: r for r in json.loads(export.read_text())["results"]}
    assert sorted(results) == ["container", "subprocess", "wasm"]
    for runtime, result in results.items():
        assert result["ok"] == 3 and result["failed"] == 0, f"{runtime}: {result['error']}"


# -- the Quickstart on a fresh clone, with an externally managed Python ---------------------------
def _externally_managed_python() -> str | None:
    """A system python3 ≥ 3.10 with a PEP 668 marker and a working venv module, if there is one."""
    probe = (
        "import ensurepip, os, sys, sysconfig, venv; "
        "marker = os.path.join(sysconfig.get_path('stdlib'), 'EXTERNALLY-MANAGED'); "
        "print(sys.version_info >= (3, 10) and os.path.exists(marker) and sys.prefix == sys.base_prefix)"
    )
    for candidate in SYSTEM_PYTHONS:
        if not os.access(candidate, os.X_OK):
            continue
        done = subprocess.run([candidate, "-c", probe], capture_output=True, text=True, timeout=30)
        if done.returncode == 0 and done.stdout.strip() == "True":
            return candidate
    return None


class _Tmux:
    """A tmux server of our own (``-L``): other sessions on the machine are untouched."""

    def __init__(self, env: dict[str, str]) -> None:
        self.socket = f"edgelab-install-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.env = env  # the server's, and so the session's, environment

    def __call__(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "quickstart")


def _wait(condition: object, timeout_s: float, what: str, screen: object) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} (waited {timeout_s:.0f} s)\n--- screen ---\n{screen()}")  # type: ignore[operator]
        time.sleep(0.3)


@pytest.mark.slow
def test_quickstart_on_a_fresh_clone_with_an_externally_managed_python(tmp_path: Path) -> None:
    system_python = _externally_managed_python()
    if system_python is None:
        pytest.skip(
            f"no externally managed python3 with venv among {', '.join(SYSTEM_PYTHONS)} (Debian: apt install python3-venv)"
        )
    if shutil.which("tmux") is None or shutil.which("git") is None:
        pytest.skip("tmux and git are needed to run the Quickstart as a person would")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=120)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(system_python)
    env = _clean_env(PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("PIP_REQUIRE_VIRTUALENV", None)

    # The marker is in force: the old Quickstart (pip into the system Python) is refused.
    refused = subprocess.run(
        ["python3", "-m", "pip", "install", "-e", "."],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if "No module named pip" not in refused.stderr:
        assert refused.returncode != 0 and "externally-managed-environment" in refused.stderr, (
            refused.stderr
        )

    first, second = quickstart_commands()
    exit_file = tmp_path / "first.exit"
    tmux = _Tmux(env)
    script = f"cd {clone} && {first}; echo $? > {exit_file}"
    try:
        tmux("new-session", "-d", "-s", "quickstart", "-x", "120", "-y", "36", "bash", "-c", script)
        _wait(
            lambda: "╭─ wasm " in tmux.screen() and "hello" in tmux.screen(),
            240,
            "the lab never opened",
            tmux.screen,
        )
        tmux("send-keys", "-t", "quickstart", "q")
        _wait(exit_file.exists, 30, "the lab did not exit on q", tmux.screen)
    finally:
        tmux("kill-server")
        socket_dir = Path(os.environ.get("TMUX_TMPDIR", "/tmp")) / f"tmux-{os.getuid()}"
        (socket_dir / tmux.socket).unlink(missing_ok=True)
    assert exit_file.read_text().strip() == "0"
    imported = _run(
        [str(clone / ".venv" / "bin" / "python"), "-c", "import edgelab; print(edgelab.__file__)"],
        clone,
        60,
        env,
    )
    assert Path(imported.stdout.strip()) == clone / "edgelab" / "__init__.py", (
        "an editable install of the clone"
    )

    # The second command as written, pointed at one small test file rather than the whole suite
    # (that would run this test again).
    assert second.endswith("python -m pytest"), second
    done = subprocess.run(
        ["bash", "-c", f"{second} -q -p no:cacheprovider tests/test_stats.py"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(r"\d+ passed", done.stdout), done.stdout[-2000:]
