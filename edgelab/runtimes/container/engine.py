"""Which OCI runtimes the Docker engine can start a container with, and why one cannot.

``docker info`` lists the runtimes the daemon registered (``runc`` always; ``runsc``, ``crun``
when /etc/docker/daemon.json names them, see ``.ci/start-docker``). Asking costs one API call
(~5 ms), so the answer is kept per engine for ``RUNTIMES_KEEP_S``: ``check`` runs before every
run and the doctor asks for every rung.

A registered runtime can still be unusable: crun (1.x) refuses every container on a cgroup v1
host whose cgroup v2 hierarchy (mounted at /sys/fs/cgroup/unified, "hybrid" mode) holds any
controller, with "cgroups in hybrid mode not supported, drop all controllers from cgroupv2".
Its cgroup managers (cgroupfs, systemd, disabled) all refuse alike: the test comes before
the manager is chosen. What does work, without restarting the engine, is binding that
controller (here hugetlb, the only one v1 had not claimed) to a v1 hierarchy of its own,
which leaves cgroup v2 with none; ``hybrid_cgroup_problem`` says which and how.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

#: How long one engine's list of runtimes is relied on, in seconds.
RUNTIMES_KEEP_S = 30.0
#: The OCI runtime docker uses when none is named.
DEFAULT_OCI_RUNTIME = "runc"
CGROUP_ROOT = Path("/sys/fs/cgroup")

_cache_lock = threading.Lock()
_cache: dict[str, tuple[float, dict[str, str]]] = {}
_versions: dict[str, str] = {}


def engine_key(client: Any) -> str:
    """One engine, however many clients talk to it: its endpoint."""
    return str(getattr(client.api, "base_url", "") or id(client))


def oci_runtime_paths(client: Any) -> dict[str, str]:
    """Name -> path of each OCI runtime the engine registered (``docker info`` Runtimes),
    cached per engine."""
    key = engine_key(client)
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and now - hit[0] < RUNTIMES_KEEP_S:
            return dict(hit[1])
    listed = client.info().get("Runtimes") or {}
    paths = {str(name): str((entry or {}).get("path", "")) for name, entry in listed.items()}
    with _cache_lock:
        _cache[key] = (now, paths)
    return dict(paths)


def oci_runtimes(client: Any) -> frozenset[str]:
    """The names of the OCI runtimes the engine registered (cached per engine)."""
    return frozenset(oci_runtime_paths(client))


def oci_runtime_version(path: str) -> str:
    """The first line of ``path --version`` (a local engine's runtime binary), or "?"; asked
    once per path and process."""
    if path not in _versions:
        import subprocess

        try:
            done = subprocess.run([path, "--version"], capture_output=True, timeout=5, check=False)
            lines = done.stdout.decode("utf-8", "replace").strip().splitlines()
            _versions[path] = lines[0].strip() if done.returncode == 0 and lines else "?"
        except (OSError, subprocess.SubprocessError):
            _versions[path] = "?"
    return _versions[path]


def forget_runtimes() -> None:
    """Drop every cached list (tests; after the daemon was reconfigured)."""
    with _cache_lock:
        _cache.clear()


def registration_fix(oci_runtime: str) -> str:
    """How to register ``oci_runtime`` with the engine (one line)."""
    args = ', "runtimeArgs": ["--network=none"]' if oci_runtime == "runsc" else ""
    return (
        f'install {oci_runtime} and add "runtimes": {{"{oci_runtime}": {{"path":'
        f' "/usr/bin/{oci_runtime}"{args}}}}} to /etc/docker/daemon.json, then start dockerd'
        " (.ci/start-docker does both on a fresh machine)"
    )


def hybrid_cgroup_problem(oci_runtime: str, root: Path = CGROUP_ROOT) -> tuple[str, str] | None:
    """(reason, fix) when ``oci_runtime`` is crun and this host's cgroup layout makes it refuse
    every container; None otherwise (or when the layout cannot be read: the launch says then).

    Only meaningful for a local engine (its cgroups are this machine's)."""
    if oci_runtime != "crun":
        return None
    try:
        controllers = (root / "unified" / "cgroup.controllers").read_text().split()
    except OSError:
        return None  # not hybrid (no v2 beside v1), or not readable: nothing to say
    if not controllers:
        return None
    mounts = " && ".join(
        f"mkdir -p {root}/{name} && mount -t cgroup -o {name} cgroup {root}/{name}"
        for name in controllers
    )
    return (
        f"crun refuses cgroups in hybrid mode while cgroup v2 holds controllers"
        f" ({', '.join(controllers)})",
        f"give them v1 hierarchies (as root: {mounts}; no engine restart) or boot with"
        " cgroup v2 only (systemd.unified_cgroup_hierarchy=1)",
    )


def local_engine(client: Any) -> bool:
    """Is the engine on this machine (a unix socket), so its cgroups are ours to read?"""
    return str(getattr(client.api, "base_url", "")).startswith(("http+docker://localhost", "unix:"))
