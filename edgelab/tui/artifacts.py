"""Sizes of each workload's artifacts, and building the missing ones in the background.

Blocking (file stats, Docker API calls, compiler runs): the app calls these from a worker
thread. Builds are the same cached, flock-guarded ``edgelab.build`` calls a run makes, so a
run started meanwhile waits for (or reuses) an artifact instead of building it twice.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from edgelab.catalog import Artifact, artifact, artifact_kinds

if TYPE_CHECKING:
    from edgelab.workloads import Workload

#: The kinds the registered rungs start (wasm, native, image), one column each.
ARTIFACT_KINDS = artifact_kinds()
PENDING = "…"
NOT_BUILT = "not built"
BUILDING = "building…"
FAILED = "build failed"
UNKNOWN = "–"
#: Compiles at a time, and how much they yield the CPU to a run the user starts meanwhile.
BUILD_JOBS = 2
BUILD_NICENESS = 10
#: Bytes when known, a short word when not, None while still being looked up.
Size = int | str | None


def cell(found: Artifact) -> Size:
    """A catalog artifact as a cell: its bytes, "not built", or why it is unknown."""
    if found.built and found.size_bytes is not None:
        return found.size_bytes
    if found.note:
        return "no engine" if found.where is None else UNKNOWN
    return NOT_BUILT


def artifact_sizes(workload: Workload, client: Any = None, why_not: str = "no engine") -> dict[str, Size]:
    """Each kind's cell for ``workload``, read from the catalog (nothing is built here).
    ``client``: a docker client for the image column (None: the column says why not)."""
    sizes: dict[str, Size] = {}
    for kind in ARTIFACT_KINDS:
        try:
            sizes[kind] = cell(artifact(workload, kind, client=client, why_not=why_not))
        except Exception:  # noqa: BLE001 - a size we cannot read is shown as unknown
            sizes[kind] = UNKNOWN
    return sizes


def engine_versions(client: Any) -> dict[str, str]:
    """The engine's version for the top line, from a client of the TUI's own: no runtime is
    built for it (runtimes describe themselves in the lab's RuntimeDescribed events)."""
    if client is None:
        return {"docker_engine": "unavailable"}
    try:
        return {"docker_engine": str(client.version().get("Version", "?"))}
    except Exception:  # noqa: BLE001 - the engine went away: say so, the panel says why
        return {"docker_engine": "unavailable"}


def engine_client() -> Any:
    """A client of its own for image builds (None without an engine): the lab's stays free."""
    try:
        from edgelab.runtimes.container import connect

        client = connect()
        client.ping()
        return client
    except Exception:  # noqa: BLE001 - no engine: images stay as they are
        return None


def _lower_priority() -> None:
    # Niceness is per thread on Linux and inherited by the compilers this thread starts.
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BUILD_NICENESS)
    except (AttributeError, OSError):
        pass


def build_missing(
    missing: Iterable[tuple[Workload, tuple[str, ...]]],
    report: Callable[[str, dict[str, Size]], object],
    stop: threading.Event,
    jobs: int = BUILD_JOBS,
) -> list[str]:
    """Build each (workload, kinds) pair's missing artifacts, ``jobs`` workloads at a time.

    ``report(name, {kind: size})`` is called as each artifact lands; once ``stop`` is set no
    new build starts. Returns one line per failed build (the cells say "build failed").
    """
    from edgelab import build
    from edgelab.errors import EdgelabError

    plan = [(w, kinds) for w, kinds in missing if kinds]
    if not plan:
        return []
    client = engine_client() if any("image" in kinds for _, kinds in plan) else None
    failures: list[str] = []

    def one(workload: Workload, kinds: tuple[str, ...]) -> None:
        steps: list[tuple[str, Callable[[], Size]]] = []
        if "wasm" in kinds:
            steps.append(("wasm", lambda: build.ensure_wasm(workload).stat().st_size))
        if "native" in kinds:
            steps.append(("native", lambda: build.ensure_native(workload).stat().st_size))
        if "image" in kinds and client is not None:
            steps.append(("image", lambda: _build_image(client, workload)))
        for kind, step in steps:
            if stop.is_set():
                return
            try:
                size: Size = step()
            except Exception as exc:  # noqa: BLE001 - one cell fails, the others still build
                words = str(exc) if isinstance(exc, EdgelabError) else f"{type(exc).__name__}: {exc}"
                failures.append(f"{workload.name} {kind}: {words.splitlines()[0] if words else '?'}")
                size = FAILED
            report(workload.name, {kind: size})

    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs), initializer=_lower_priority) as pool:
            for future in [pool.submit(one, w, kinds) for w, kinds in plan]:
                future.result()
    finally:
        if client is not None:
            client.close()
    return failures


def _build_image(client: Any, workload: Workload) -> int:
    from edgelab.runtimes.container import ensure_image, image_size_bytes

    return image_size_bytes(client, ensure_image(client, workload))
