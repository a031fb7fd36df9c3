"""Every runtime and every rung of the cold-start ladder, in one table.

A *rung* is one way of starting the same workload: ``wasm`` (a pooled warm slot), ``wasm:jit``
(compile at every launch), ``container:paused`` (unpause a running container) ... Each is one
``RuntimeSpec``: the class that runs it, the options it passes, and what a person needs to know
before running it (what it skips, what keeping it ready costs). Adding a runtime, or a variant
of one, is one module plus one ``register`` call here; the CLI, the TUI, the capability probe,
the fake and the contract tests read this table and nothing else.

Specs are static facts, readable without importing a runtime (so ``edgelab --help`` stays
instant and the UI never instantiates one). What only a live runtime knows (versions, the
phases it really times here, marks such as "emulated") travels as a ``RuntimeInfo`` in the
lab's ``RuntimeDescribed`` event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import import_module
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from edgelab.errors import UsageError

if TYPE_CHECKING:
    from edgelab.runtimes.base import Runtime
    from edgelab.session import Session

#: Which build of a workload a rung runs: its ``.wasm``, its static native binary, its image.
Artifact = Literal["wasm", "native", "image", "none"]


@dataclass(frozen=True)
class RuntimeSpec:
    """One registered runtime or rung. ``name`` is ``family`` or ``family:variant``."""

    name: str
    #: The module and class that run it; imported only when a runtime is created.
    module: str
    cls: str
    #: The runtime family (container, subprocess, wasm, isolate, microvm, fake).
    family: str
    artifact: Artifact
    #: One line: what this rung is.
    summary: str
    #: What this rung skips compared with starting from nothing ("" for the plain cold start).
    skips: str = ""
    #: What keeping one instance ready costs, in words (the figure is measured: the ramp's
    #: memory per resident instance, see ``edgelab ladder``).
    ready_cost: str = ""
    #: Keyword arguments for the class (e.g. ``{"strategy": "jit"}``).
    options: MappingProxyType[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: In the lab's default selection (the three runtimes a first run shows).
    default: bool = False
    #: Left out of listings and ``--runtimes`` (the fake: UI tests only).
    hidden: bool = False
    #: The workload conventions this rung runs (``edgelab.workloads.CONVENTIONS``): ``abi``
    #: (the built-in workloads), ``command`` (a person's own function: stdin to stdout).
    conventions: tuple[str, ...] = ("abi",)

    @property
    def variant(self) -> str | None:
        return self.name.partition(":")[2] or None

    @property
    def slug(self) -> str:
        """The name fit for a CSS id or a file name: ``wasm:jit`` -> ``wasm-jit``."""
        return self.name.replace(":", "-")


@dataclass(frozen=True)
class RuntimeInfo:
    """What a live runtime says about itself, after ``check`` and ``prepare``: sent in events
    and saved with results, so no front end needs a runtime object to label a figure."""

    name: str
    family: str
    artifact: str
    phase_names: tuple[str, ...]
    startup_includes: str
    memory_metric: str
    versions: tuple[tuple[str, str], ...] = ()
    #: Caveats that must stand beside every figure of this runtime (e.g. "emulated (TCG)").
    marks: tuple[str, ...] = ()
    skips: str = ""
    ready_cost: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": self.family,
            "artifact": self.artifact,
            "phase_names": list(self.phase_names),
            "startup_includes": self.startup_includes,
            "memory_metric": self.memory_metric,
            "versions": dict(self.versions),
            "marks": list(self.marks),
            "skips": self.skips,
            "ready_cost": self.ready_cost,
        }


_SPECS: dict[str, RuntimeSpec] = {}


def register(spec: RuntimeSpec, *, replace: bool = False) -> RuntimeSpec:
    """Add a runtime or rung (tests register tiny fakes at run time); a name is taken once."""
    if ":" in spec.name and spec.name.partition(":")[0] != spec.family:
        raise ValueError(f"rung {spec.name!r} must be named after its family {spec.family!r}")
    if spec.name in _SPECS and not replace:
        raise ValueError(f"runtime {spec.name!r} is registered already")
    _SPECS[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a runtime registered at run time (tests)."""
    _SPECS.pop(name, None)


def spec(name: str) -> RuntimeSpec:
    try:
        return _SPECS[name]
    except KeyError:
        raise UsageError(f"unknown runtime '{name}' (choose from {', '.join(names())})") from None


def specs(include_hidden: bool = False) -> list[RuntimeSpec]:
    """Every registered spec in registration order (families together, plain rung first)."""
    return [s for s in _SPECS.values() if include_hidden or not s.hidden]


def names(include_hidden: bool = False) -> tuple[str, ...]:
    return tuple(s.name for s in specs(include_hidden))


def default_names() -> tuple[str, ...]:
    return tuple(s.name for s in specs() if s.default)


def not_applicable(entry: RuntimeSpec, workload: Any) -> str | None:
    """Why rung ``entry`` cannot run ``workload`` (an ``edgelab.workloads.Workload``), in one
    line, or None if it can: a function workload runs on the rungs that take its convention
    and whose artifact kind it gives (its module on the Wasm rungs, its image on the container
    rungs, its command on subprocess)."""
    if workload.convention not in entry.conventions:
        return f"runs {', '.join(entry.conventions)} workloads, not {workload.convention} ones"
    function = getattr(workload, "function", None)
    if function is not None and entry.artifact not in function.artifacts():
        wanted = {"wasm": "--wasm", "image": "--image", "native": "--command"}.get(entry.artifact, entry.artifact)
        return f"needs {wanted}, which this function does not give"
    return None


def applicable_names(workload: Any) -> tuple[str, ...]:
    """Every listed rung that can run ``workload``, in registry order."""
    return tuple(s.name for s in specs() if not_applicable(s, workload) is None)


def family_of(name: str) -> str:
    return spec(name).family


def parse_runtimes(text: str) -> tuple[str, ...]:
    """'container,wasm:jit' -> ('container', 'wasm:jit'); unknown, hidden or repeated names
    and an empty list are a UsageError naming the choices."""
    parts = tuple(part.strip() for part in text.split(",") if part.strip())
    choices = ", ".join(names())
    if not parts:
        raise UsageError(f"no runtime named (choose from {choices})")
    for name in parts:
        if name not in _SPECS or _SPECS[name].hidden:
            raise UsageError(f"unknown runtime '{name}' (choose from {choices})")
    if len(set(parts)) != len(parts):
        raise UsageError(f"runtime named twice in '{text}'")
    return parts


def create_runtime(name: str, session: Session, **overrides: Any) -> Runtime:
    """A runtime object for ``name``, built with its spec's options (``overrides`` win)."""
    entry = spec(name)
    cls = getattr(import_module(entry.module), entry.cls)
    runtime: Runtime = cls(session, **{**entry.options, **overrides})
    runtime.name = entry.name
    runtime.spec = entry
    return runtime


def _options(**kwargs: Any) -> MappingProxyType[str, Any]:
    return MappingProxyType(kwargs)


# -- the table ---------------------------------------------------------------------------------
# Each family's plain rung first, then its variants. Runtimes added this round register their
# rungs here, one entry each.
register(RuntimeSpec(
    "container", "edgelab.runtimes.container", "ContainerRuntime", "container", "image",
    "a FROM scratch image under runc, created and started through the engine's API",
    ready_cost="one running container: its process, its containerd shim and its cgroup",
    default=True,
    conventions=("abi", "command"),
))  # fmt: skip
register(RuntimeSpec(
    "subprocess", "edgelab.runtimes.subprocess", "SubprocessRuntime", "subprocess", "native",
    "the static native binary, spawned into its own cgroup and jail",
    ready_cost="one resident process: its pages, page tables and cgroup",
    default=True,
    conventions=("abi", "command"),
))  # fmt: skip
register(RuntimeSpec(
    "wasm", "edgelab.runtimes.wasm", "WasmRuntime", "wasm", "wasm",
    "a wasmtime instance in a pooled warm slot of a precompiled module",
    skips="compiling the module (done once ahead) and mapping memory (the slot is reused)",
    ready_cost="one resident instance: its Store, instance and touched memory (code shared)",
    default=True,
    conventions=("abi", "command"),
))  # fmt: skip
# -- container rungs (owner: the containers helper) ----------------------------------------------
register(RuntimeSpec(
    "container:cli", "edgelab.runtimes.container", "ContainerRuntime", "container", "image",
    "docker run --rm -i through the docker CLI, as people type it (request on stdin)",
    ready_cost="one running container, as container (the CLI process exits once it is attached)",
    options=_options(strategy="cli"),
    conventions=("abi", "command"),
))  # fmt: skip
register(RuntimeSpec(
    "container:created", "edgelab.runtimes.container", "ContainerRuntime", "container", "image",
    "a container created and attached ahead, started on request",
    skips="docker create (done ahead, untimed)",
    ready_cost="one created container: engine state only, no process until started",
    options=_options(strategy="created"),
    conventions=("abi", "command"),
))  # fmt: skip
register(RuntimeSpec(
    "container:paused", "edgelab.runtimes.container", "ContainerRuntime", "container", "image",
    "a container started ahead and paused in its first read, unpaused on request (a warm pool)",
    skips="docker create and start (done ahead, untimed): a warm pool, provisioned concurrency",
    ready_cost="one paused container: its processes' memory while idle, as a resident one",
    options=_options(strategy="paused"),
    conventions=("abi", "command"),
))  # fmt: skip
register(RuntimeSpec(
    "container:gvisor", "edgelab.runtimes.container", "ContainerRuntime", "container", "image",
    "the same image and hardening under gVisor's runsc (a user-space kernel), via the SDK",
    ready_cost="one running sandbox: its Sentry, its gofer and its shim",
    options=_options(oci_runtime="runsc"),
    conventions=("abi", "command"),
))  # fmt: skip
register(RuntimeSpec(
    "container:crun", "edgelab.runtimes.container", "ContainerRuntime", "container", "image",
    "the same image and hardening under crun (the OCI runtime in C) instead of runc, via the SDK",
    ready_cost="one running container, as container",
    options=_options(oci_runtime="crun"),
    conventions=("abi", "command"),
))  # fmt: skip
# -- subprocess rungs (owner: the subprocess helper) --------------------------------------------
register(RuntimeSpec(
    "subprocess:dynamic", "edgelab.runtimes.subprocess.dynamic", "DynamicSubprocessRuntime",
    "subprocess", "native",
    "the same source linked dynamically (PIE) against the system glibc, spawned as subprocess is",
    ready_cost="one resident process, as subprocess, plus its private pages of the loader and libc",
))  # fmt: skip
register(RuntimeSpec(
    "subprocess:forkserver", "edgelab.runtimes.subprocess.forkserver", "ForkServerRuntime",
    "subprocess", "native",
    "instances forked by a resident fork server (a zygote) into their own cgroup and uid",
    skips="exec and the loader: the fork server, started ahead and untimed, has the workload loaded",
    ready_cost="one resident fork server per workload (its PSS while idle); instances share its pages",
))  # fmt: skip
# -- wasm rungs (owner: the wasm helper) --------------------------------------------------------
register(RuntimeSpec(
    "wasm:mmap", "edgelab.runtimes.wasm", "WasmRuntime", "wasm", "wasm",
    "a wasmtime instance of a module precompiled and loaded once, its memory freshly mapped",
    skips="compiling and loading the module (done once ahead); not mapping memory (no pool)",
    ready_cost="one resident instance: its Store, instance and touched memory (code shared)",
    options=_options(strategy="mmap"),
    conventions=("abi", "command"),
))  # fmt: skip
register(RuntimeSpec(
    "wasm:aot", "edgelab.runtimes.wasm", "WasmRuntime", "wasm", "wasm",
    "the precompiled module deserialized at every launch, then instantiated (AOT)",
    skips="compiling (done once ahead); every launch deserializes the code and maps memory",
    ready_cost="one resident instance with its own deserialized copy of the code",
    options=_options(strategy="aot"),
    conventions=("abi", "command"),
))  # fmt: skip
register(RuntimeSpec(
    "wasm:jit", "edgelab.runtimes.wasm", "WasmRuntime", "wasm", "wasm",
    "the .wasm compiled (Cranelift) at every launch, then instantiated: a generic Wasm runtime",
    ready_cost="one resident instance with its own compiled copy of the code",
    options=_options(strategy="jit"),
    conventions=("abi", "command"),
))  # fmt: skip
# -- isolate rungs (owner: the isolate helper) --------------------------------------------------
register(RuntimeSpec(
    "isolate", "edgelab.runtimes.isolate.runtime", "IsolateRuntime", "isolate", "wasm",
    "a fresh V8 isolate (mini-racer) per instance running the same .wasm through V8's "
    "WebAssembly API, as Workers run C and Rust",
    ready_cost="a V8 isolate and its context per resident instance, in an isolate host process",
))  # fmt: skip
register(RuntimeSpec(
    "isolate:context", "edgelab.runtimes.isolate.runtime", "IsolateContextRuntime", "isolate",
    "wasm",
    "a fresh WebAssembly.Instance in a warm V8 isolate (mini-racer): not a fresh V8 context, "
    "which mini-racer cannot make (one context per isolate), so instances share its globals",
    skips="creating the isolate and its context, and compiling the module (once per host)",
    ready_cost="one warm isolate per host and workload, plus each resident instance's memory",
))  # fmt: skip
# -- microvm rungs (owner: the microvm helper) --------------------------------------------------
register(RuntimeSpec(
    "microvm", "edgelab.runtimes.microvm.runtime", "MicrovmRuntime", "microvm", "native",
    "a QEMU microvm guest (virtio-mmio, no PCI, qboot, no BIOS) booting Debian's cloud kernel with "
    "the static native binary as its init; KVM where it works, else emulated (TCG, marked)",
    ready_cost="one running guest: its qemu process, guest RAM included (the boot touches all of it)",
))  # fmt: skip

register(RuntimeSpec(
    "fake", "edgelab.runtimes.fake", "FakeRuntime", "fake", "none",
    "fixed fake timings for UI snapshots (not a measurement)",
    hidden=True,
))  # fmt: skip
