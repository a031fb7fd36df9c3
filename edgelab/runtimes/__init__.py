"""The runtimes by name. Each is imported only when asked for, so a missing engine or wheel
degrades one runtime and ``edgelab --help`` stays instant."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from edgelab.errors import UsageError

if TYPE_CHECKING:
    from edgelab.runtimes.base import Runtime
    from edgelab.session import Session

RUNTIME_NAMES = ("container", "subprocess", "wasm")

_CLASSES = {
    "container": ("edgelab.runtimes.container", "ContainerRuntime"),
    "subprocess": ("edgelab.runtimes.subprocess", "SubprocessRuntime"),
    "wasm": ("edgelab.runtimes.wasm", "WasmRuntime"),
    "fake": ("edgelab.runtimes.fake", "FakeRuntime"),
}


def parse_runtimes(text: str) -> tuple[str, ...]:
    """'container,wasm' -> ('container', 'wasm'); unknown or empty names are a UsageError."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise UsageError("no runtime named (choose from container, subprocess, wasm)")
    for name in names:
        if name not in RUNTIME_NAMES:
            raise UsageError(f"unknown runtime '{name}' (choose from {', '.join(RUNTIME_NAMES)})")
    if len(set(names)) != len(names):
        raise UsageError(f"runtime named twice in '{text}'")
    return names


def create_runtime(name: str, session: Session) -> Runtime:
    try:
        module_name, class_name = _CLASSES[name]
    except KeyError:
        raise UsageError(f"unknown runtime '{name}'") from None
    cls = getattr(import_module(module_name), class_name)
    runtime: Runtime = cls(session)
    return runtime
