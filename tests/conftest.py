"""Shared fixtures. Sections are owned by topic; add new ones below their own heading."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

# =============================================================================================
# Docker engine
# =============================================================================================
# A test that needs an engine takes ``docker_client``. Without an engine it is skipped with the
# reason, except under CI (CI=true), which starts one (.ci/start-docker): there a missing engine
# is a failure. After the whole session, no container labelled edgelab.session that appeared
# during the run may remain: ``_no_leaked_containers`` removes any such container and fails.
# Only containers this run owns count (edgelab.pid is this process, one of its descendants, or
# a process gone): another lab or test run on the same engine is left alone.

_IN_CI = os.environ.get("CI", "").lower() == "true"


def _try_docker_client(timeout_s: float) -> tuple[Any, str]:
    """(client, "") when an engine answers, else (None, reason)."""
    from edgelab.runtimes.container import connect, engine_unavailable_reason

    try:
        client = connect(timeout_s)
        client.ping()
        return client, ""
    except Exception as exc:  # noqa: BLE001 - any failure means: no engine
        return None, engine_unavailable_reason(exc)


def _labelled_containers(client: Any) -> dict[str, str]:
    """Id -> owner pid label of every container labelled edgelab.session."""
    from edgelab.session import OWNER_PID_LABEL, SESSION_LABEL

    found = client.api.containers(all=True, filters={"label": SESSION_LABEL})
    return {c["Id"]: (c.get("Labels") or {}).get(OWNER_PID_LABEL, "") for c in found}


def _owned_by_this_run(owner_pid: str) -> bool:
    import psutil

    try:
        owner = psutil.Process(int(owner_pid))
    except (ValueError, psutil.NoSuchProcess):
        return True  # owner unknown or gone: nobody else will remove it
    except psutil.Error:
        return False
    try:
        return owner.pid == os.getpid() or os.getpid() in {p.pid for p in owner.parents()}
    except psutil.Error:
        return True


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    client, reason = _try_docker_client(timeout_s=30.0)
    if client is None:
        if _IN_CI:
            pytest.fail(f"no Docker engine under CI (.ci/start-docker should start one): {reason}")
        pytest.skip(f"no Docker engine: {reason}")
    yield client
    client.close()


@pytest.fixture(scope="session", autouse=True)
def _no_leaked_containers() -> Iterator[None]:
    client, _ = _try_docker_client(timeout_s=5.0)
    before = set(_labelled_containers(client)) if client is not None else set()
    yield
    if client is None:
        client, _ = _try_docker_client(timeout_s=5.0)
        if client is None:
            return
    try:
        leaked = {
            cid
            for cid, owner in _labelled_containers(client).items()
            if cid not in before and _owned_by_this_run(owner)
        }
        if leaked:
            from edgelab.runtimes.container import _remove_all

            _remove_all(client, leaked)
            pytest.fail(
                f"LEAK: {len(leaked)} container(s) labelled edgelab.session were left behind "
                f"by the tests (now removed): {', '.join(sorted(c[:12] for c in leaked))}"
            )
    finally:
        client.close()


# =============================================================================================
# Run history
# =============================================================================================
# Every ``edgelab run`` saves its JSON into the user data dir (edgelab.history). Tests must not
# fill a real user's history, so the whole session (and every process it spawns, which inherits
# the environment) writes into a folder of its own; tests of the history point it elsewhere again.


@pytest.fixture(scope="session", autouse=True)
def _private_history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    previous = os.environ.get("EDGELAB_DATA_DIR")
    os.environ["EDGELAB_DATA_DIR"] = str(tmp_path_factory.mktemp("edgelab-data"))
    yield
    if previous is None:
        os.environ.pop("EDGELAB_DATA_DIR", None)
    else:
        os.environ["EDGELAB_DATA_DIR"] = previous


# =============================================================================================
# Byte-compiled sources for the processes the tests start
# =============================================================================================
# Hundreds of tests start Python processes that import edgelab: the CLI under test, and every
# Lab's watchdog and Wasm host. Where PYTHONDONTWRITEBYTECODE is set (this machine's CI has it)
# none of them may write a .pyc, so each compiled the package's sources again (~0.12 s of a
# 0.5 s ``edgelab invoke``). Compiled once here, before the first test; checked-hash .pyc files,
# so an edited source is never stale (Python compares the source's hash, not its mtime) and an
# edit just means that module compiles from source again, as before. __pycache__ is ignored by
# git, MANIFEST.in and the tests that copy the tree.


@pytest.fixture(scope="session", autouse=True)
def _compiled_package() -> None:
    import compileall
    import py_compile
    from pathlib import Path

    import edgelab

    compileall.compile_dir(
        Path(edgelab.__file__).parent,
        quiet=2,
        invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH,
    )
