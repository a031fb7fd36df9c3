"""Sizes of the artifacts a workload already has in the cache; never builds anything.

Blocking (file stats, one Docker API call): the app calls it from a worker thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgelab.lab import Lab
    from edgelab.workloads import Workload

ARTIFACT_KINDS = ("wasm", "native", "image")
PENDING = "…"
NOT_BUILT = "not built"
UNKNOWN = "–"
#: Bytes when known, a short word when not, None while still being looked up.
Size = int | str | None


def artifact_sizes(workload: Workload, lab: Lab) -> dict[str, Size]:
    sizes: dict[str, Size] = {"wasm": NOT_BUILT, "native": NOT_BUILT, "image": NOT_BUILT}
    try:
        from edgelab import build

        built = build.artifact_sizes(workload)
        sizes["wasm"] = built.get(build.WASM_TARGET, NOT_BUILT)
        sizes["native"] = built.get(build.host_arch(), NOT_BUILT)
    except Exception:  # noqa: BLE001 - a size we cannot read is shown as unknown
        sizes["wasm"] = sizes["native"] = UNKNOWN
    sizes["image"] = image_size(workload, lab)
    return sizes


def image_size(workload: Workload, lab: Lab) -> Size:
    try:
        runtime = lab.runtime("container")
    except Exception:  # noqa: BLE001
        return UNKNOWN
    if not hasattr(runtime, "client"):
        return UNKNOWN
    try:
        import docker

        from edgelab import build
        from edgelab.runtimes.container import image_size_bytes, image_tag

        tag = image_tag(workload, build.source_hash(workload))
    except Exception:  # noqa: BLE001
        return UNKNOWN
    try:
        return image_size_bytes(runtime.client, tag)
    except docker.errors.ImageNotFound:
        return NOT_BUILT
    except Exception:  # noqa: BLE001 - no engine: the container panel says why
        return "no engine"
