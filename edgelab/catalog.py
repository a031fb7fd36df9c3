"""What can be run: the workloads, and per artifact kind (Wasm module, native binary, image)
where its build is, its size in bytes and whether it is built. A saved function's artifacts
are the person's own files and image: read as they are, never built.

Headless (never imports textual): ``edgelab workloads`` prints it and the TUI's workload list
shows it, so the two never disagree. Reading the catalog builds nothing unless asked
(``ensure=True``, what ``edgelab workloads`` does); the artifact kinds are those the registered
rungs start (``RuntimeSpec.artifact``), so a rung of a new kind gets a column with no edit here
beyond teaching ``_artifact`` where that kind lives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgelab.runtimes import registry
from edgelab.workloads import Workload, load_workloads

#: The kinds in the order columns show them; kinds the registry names beyond these follow.
_ORDER = ("wasm", "native", "image")


def artifact_kinds() -> tuple[str, ...]:
    """Every artifact kind a registered (non-hidden) rung starts, in column order."""
    used = {entry.artifact for entry in registry.specs()} - {"none"}
    return tuple(k for k in _ORDER if k in used) + tuple(sorted(used - set(_ORDER)))


def kind_rungs(kind: str) -> tuple[str, ...]:
    """The rungs that start artifact ``kind`` (which runtimes a missing build would hold back)."""
    return tuple(entry.name for entry in registry.specs() if entry.artifact == kind)


@dataclass(frozen=True)
class Artifact:
    """One build of one workload. ``size_bytes`` is None while it is not built (or unknown)."""

    kind: str
    built: bool
    size_bytes: int | None = None
    #: The file (wasm, native) or image tag (image); None where not known.
    where: str | None = None
    #: Why the state is unknown (e.g. "no engine: ..."), "" when it is known.
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        key = "tag" if self.kind == "image" else "path"
        found: dict[str, Any] = {key: self.where, "size_bytes": self.size_bytes, "built": self.built}
        if self.note:
            found["note"] = self.note
        return found


@dataclass(frozen=True)
class Entry:
    """A workload and its artifacts, by kind."""

    workload: Workload
    artifacts: dict[str, Artifact]

    def as_json(self) -> dict[str, Any]:
        w = self.workload
        found: dict[str, Any] = {
            "name": w.name,
            "kind": w.kind,
            "description": w.description,
            "default_request_bytes": len(w.default_request),
            "max_request_bytes": w.max_request_bytes,
        }
        for kind, artifact in self.artifacts.items():
            if artifact.note == NOT_GIVEN:
                found[kind] = None  # a function without this kind: nothing to say, no error
            elif artifact.where is None and artifact.note:  # unknowable here (no engine): say why
                found[kind] = None
                found[f"{kind}_error"] = artifact.note
            else:
                found[kind] = artifact.as_json()
        return found


def _file_artifact(workload: Workload, kind: str, ensure: bool) -> Artifact:
    from edgelab import build

    target = build.WASM_TARGET if kind == "wasm" else build.host_arch()
    if ensure:
        path = build.ensure_wasm(workload) if kind == "wasm" else build.ensure_native(workload, target)
        return Artifact(kind, True, path.stat().st_size, str(path))
    path = build.artifact_dir(workload) / build._artifact_name(workload, target)
    size = build.artifact_sizes(workload).get(target)
    return Artifact(kind, size is not None, size, str(path))


def _image_artifact(workload: Workload, client: Any, ensure: bool, why_not: str) -> Artifact:
    if client is None:
        return Artifact("image", False, note=why_not or "no engine")
    import docker

    from edgelab import build
    from edgelab.runtimes.container import ensure_image, image_size_bytes, image_tag

    tag = ensure_image(client, workload) if ensure else image_tag(workload, build.source_hash(workload))
    try:
        return Artifact("image", True, image_size_bytes(client, tag), tag)
    except docker.errors.ImageNotFound:
        return Artifact("image", False, where=tag)
    except Exception as exc:  # noqa: BLE001 - the engine went away meanwhile: unknown, said why
        return Artifact("image", False, where=tag, note=f"{type(exc).__name__}: {exc}")


def engine() -> tuple[Any, str]:
    """A docker client of its own (closed by the caller), or why there is none."""
    try:
        from edgelab.runtimes.container import connect, engine_unavailable_reason
    except ImportError as exc:  # the docker SDK is missing
        return None, f"docker SDK not importable: {exc}"
    try:
        client = connect()
        client.ping()
        return client, ""
    except Exception as exc:  # noqa: BLE001 - any failure means: no engine
        return None, engine_unavailable_reason(exc)


#: Said in place of a size for an artifact kind a function does not give.
NOT_GIVEN = "not given by this function"


def _function_artifact(workload: Workload, kind: str, client: Any, why_not: str) -> Artifact:
    """A function's own artifact as it is (nothing is ever built or pulled for one): the
    module's bytes, the program's bytes (argv[0], found as a run finds it), the image's size
    as the engine reports it. ``built`` means present; a missing one says why in ``note``."""
    import os
    import shutil

    function = workload.function
    assert function is not None
    given = function.artifacts()
    if kind not in given:
        return Artifact(kind, False, where="", note=NOT_GIVEN)
    if kind == "image":
        if client is None:
            return Artifact("image", False, note=why_not or "no engine")
        import docker

        from edgelab.runtimes.container import image_size_bytes

        tag = str(function.image)
        try:
            return Artifact("image", True, image_size_bytes(client, tag), tag)
        except docker.errors.ImageNotFound:
            return Artifact("image", False, where=tag, note="the engine has no such image (never pulled)")
        except Exception as exc:  # noqa: BLE001 - the engine went away meanwhile: unknown, said why
            return Artifact("image", False, where=tag, note=f"{type(exc).__name__}: {exc}")
    if kind == "wasm":
        path = str(function.wasm)
    else:
        assert function.command
        program = function.command[0]
        path = program if "/" in program else (shutil.which(program) or program)
    try:
        return Artifact(kind, True, os.stat(path).st_size, path)
    except OSError as exc:
        return Artifact(kind, False, where=path, note=exc.strerror or str(exc))


def artifact(workload: Workload, kind: str, ensure: bool = False, client: Any = None, why_not: str = "") -> Artifact:
    """One artifact's state; ``ensure`` builds it first (the cached, locked build a run makes).
    A function workload's artifacts are the person's own: read, never built."""
    if workload.function is not None:
        return _function_artifact(workload, kind, client, why_not)
    if kind in ("wasm", "native"):
        return _file_artifact(workload, kind, ensure)
    if kind == "image":
        return _image_artifact(workload, client, ensure, why_not)
    return Artifact(kind, False, note=f"the catalog does not know where {kind} artifacts live")


def catalog(
    *, ensure: bool = False, images: bool = True, include_hostile: bool = False
) -> list[Entry]:
    """Every workload with each artifact kind's state. ``images=False`` skips the engine (the
    image column then says why); a build that fails raises its EdgelabError."""
    kinds = artifact_kinds()
    client, why_not = engine() if images and "image" in kinds else (None, "" if images else "not asked")
    try:
        return [
            Entry(w, {kind: artifact(w, kind, ensure, client, why_not) for kind in kinds})
            for w in load_workloads(include_hostile=include_hostile).values()
        ]
    finally:
        if client is not None:
            client.close()
