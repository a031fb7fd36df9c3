"""Build each workload's artifacts with ``zig cc`` and keep them in the user cache.

One C source plus ``modules/abi/*`` builds a static Linux binary (also the container's only
file) and a Wasm module. Both are built freestanding (``-nostdlib``; the ABI files carry
the little runtime they need), so a cold build compiles no C library: all six workloads for
both targets build in seconds, the binaries are tiny and the Wasm modules import nothing.

Artifacts live under ``<cache>/artifacts/<name>-<hash16>/``, where the hash covers everything
that goes into a build, so a cache hit is a stat and a changed input is a new directory.
Builds are atomic (temp file, then ``os.replace``) and serialised per artifact by ``flock``.
Each artifact's SHA-256 is kept beside it (``<artifact>.sha256``) and checked on every use: an
artifact that does not match (truncated, overwritten, swapped for another workload's) is never
used but rebuilt, so a corrupt cache costs a build, not a wrong answer.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

from edgelab.errors import ArtifactError
from edgelab.workloads import ABI_DIR, Workload

Progress = Callable[[str], None]

WASM_TARGET = "wasm32-wasi"
NATIVE_ARCHES = ("x86_64", "aarch64")
#: Wasm linear memory: a 16 KiB stack and one initial 64 KiB page keep a resident instance
#: small; the maximum leaves room for the largest request plus its answer.
WASM_STACK_BYTES = 16 * 1024
WASM_PAGE_BYTES = 64 * 1024
WASM_MAX_MEMORY_BYTES = 4 * 1024 * 1024 * 1024 - WASM_PAGE_BYTES

COMMON_FLAGS = (
    "-std=c11",
    "-O2",
    "-s",
    "-ffreestanding",
    "-nostdlib",
    "-fno-stack-protector",
    "-Wall",
    "-Wextra",
)
WASM_FLAGS = ("-target", WASM_TARGET, "-Wl,--no-entry", f"-Wl,-z,stack-size={WASM_STACK_BYTES}")
NATIVE_FLAGS = ("-static",)
#: Native builds besides the static binary, each a rung of its own (``ensure_native(variant=)``):
#: ``dynamic`` links the same source, as a PIE, against the system glibc (its loader, start
#: files, mem* and malloc: what a binary built the usual way pays at start); ``forkserver``,
#: the static binary with the fork-server mode of modules/abi/el_forkserver.h compiled in.
NATIVE_VARIANTS: dict[str, tuple[str, ...]] = {
    "dynamic": ("-fPIE", "-pie", "-DEDGELAB_DYNAMIC"),
    "forkserver": ("-static", "-DEDGELAB_FORKSERVER"),
}
_BUILD_FORMAT = "edgelab-build-2"


def cache_dir() -> Path:
    """``$EDGELAB_CACHE_DIR`` or the platform's user cache directory for edgelab."""
    override = os.environ.get("EDGELAB_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("edgelab"))


def host_arch() -> str:
    """The native target for this machine: ``x86_64`` or ``aarch64``."""
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        return "x86_64"
    if machine in ("aarch64", "arm64"):
        return "aarch64"
    raise ArtifactError(f"no native build for this machine's architecture '{machine}'")


@lru_cache(maxsize=1)
def zig_version() -> str:
    """The ziglang package version (cheap: package metadata, not a zig subprocess)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ziglang")
    except PackageNotFoundError:
        raise ArtifactError("the ziglang package is not installed (pip install ziglang)") from None


def wasm_max_memory_bytes(workload: Workload) -> int:
    """Room for the request, an answer as large again and 4 MiB of slack, in whole pages."""
    want = 2 * workload.max_request_bytes + 4 * 1024 * 1024
    pages = -(-want // WASM_PAGE_BYTES)
    return min(max(pages, 16) * WASM_PAGE_BYTES, WASM_MAX_MEMORY_BYTES)


def _define_flags(workload: Workload) -> list[str]:
    flags = [f"-DEDGELAB_MAX_REQUEST_BYTES={workload.max_request_bytes}u"]
    for name, value in sorted(workload.defines.items()):
        if not name.isidentifier():
            raise ArtifactError(f"{workload.name}: define name '{name}' is not a C identifier")
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        flags.append(f'-D{name}="{escaped}"')
    return flags


def _split_target(target: str) -> tuple[str, str | None]:
    """'x86_64' -> ('x86_64', None); 'x86_64-dynamic' -> ('x86_64', 'dynamic')."""
    arch, _, variant = target.partition("-")
    return arch, variant or None


def _target_flags(workload: Workload, target: str) -> list[str]:
    if target == WASM_TARGET:
        return [*WASM_FLAGS, f"-Wl,--max-memory={wasm_max_memory_bytes(workload)}"]
    arch, variant = _split_target(target)
    if arch not in NATIVE_ARCHES or (variant is not None and variant not in NATIVE_VARIANTS):
        known = [*NATIVE_ARCHES, *(f"{a}-{v}" for a in NATIVE_ARCHES for v in NATIVE_VARIANTS)]
        raise ArtifactError(f"unknown build target '{target}' (known: wasm, {', '.join(known)})")
    if variant == "dynamic":  # glibc's start files and libc.so.6, through its dynamic loader
        return ["-target", f"{arch}-linux-gnu", *NATIVE_VARIANTS[variant]]
    return ["-target", f"{arch}-linux-musl", *(NATIVE_VARIANTS[variant] if variant else NATIVE_FLAGS)]


def _common_flags(target: str) -> tuple[str, ...]:
    """COMMON_FLAGS, less -nostdlib for the build linked against the system libc."""
    if _split_target(target)[1] == "dynamic":
        return tuple(flag for flag in COMMON_FLAGS if flag != "-nostdlib")
    return COMMON_FLAGS


def _abi_files() -> list[Path]:
    return sorted(p for p in ABI_DIR.iterdir() if p.is_file())


def _compile_sources(workload: Workload) -> list[Path]:
    return [*workload.sources, *(p for p in _abi_files() if p.suffix == ".c")]


def compile_command(workload: Workload, target: str, output: Path) -> list[str]:
    """The exact ``zig cc`` command line for one artifact."""
    return [
        sys.executable,
        "-m",
        "ziglang",
        "cc",
        *_target_flags(workload, target),
        *_common_flags(target),
        f"-I{ABI_DIR}",
        *_define_flags(workload),
        "-o",
        str(output),
        *(str(p) for p in _compile_sources(workload)),
    ]


def source_hash(workload: Workload) -> str:
    """Hash of every build input: sources, ABI files, defines, limits, flags, zig version."""
    digest = hashlib.sha256()

    def add(label: str, data: bytes) -> None:
        digest.update(label.encode() + b"\0" + len(data).to_bytes(8, "little") + data)

    add("format", _BUILD_FORMAT.encode())
    add("zig", zig_version().encode())
    add("name", workload.name.encode())
    for source in workload.sources:
        add(f"src:{source.name}", source.read_bytes())
    for path in _abi_files():
        add(f"abi:{path.name}", path.read_bytes())
    add("defines", "\n".join(_define_flags(workload)).encode())
    add("max_request_bytes", str(workload.max_request_bytes).encode())
    flags = [
        *COMMON_FLAGS,
        "|",
        *WASM_FLAGS,
        str(wasm_max_memory_bytes(workload)),
        "|",
        *NATIVE_FLAGS,
        *(f"{name}:{' '.join(extra)}" for name, extra in sorted(NATIVE_VARIANTS.items())),
    ]
    add("flags", "\n".join(flags).encode())
    return digest.hexdigest()


def artifact_dir(workload: Workload) -> Path:
    return cache_dir() / "artifacts" / f"{workload.name}-{source_hash(workload)[:16]}"


def _artifact_name(workload: Workload, target: str) -> str:
    return f"{workload.name}.wasm" if target == WASM_TARGET else f"{workload.name}-{target}"


def _zig_env() -> dict[str, str]:
    env = dict(os.environ)
    zig_cache = cache_dir() / "zig"
    env["ZIG_GLOBAL_CACHE_DIR"] = str(zig_cache / "global")
    env["ZIG_LOCAL_CACHE_DIR"] = str(zig_cache / "local")
    return env


def _first_error_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if "error" in line.lower():
            return line
    return lines[0] if lines else "no compiler output"


def _digest_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()  # artifacts are tens of KB


def _nonempty(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def _is_built(path: Path) -> bool:
    """The artifact exists, is not empty and matches the digest recorded when it was built."""
    try:
        if path.stat().st_size <= 0:
            return False
        return _digest_path(path).read_text().strip() == _file_digest(path)
    except (OSError, ValueError):
        return False


def _record_digest(path: Path) -> None:
    digest = _digest_path(path)
    temp = digest.with_name(f".{digest.name}.{os.getpid()}.tmp")
    temp.write_text(_file_digest(path) + "\n")
    os.replace(temp, digest)


def _ensure(workload: Workload, target: str, progress: Progress | None) -> Path:
    path = artifact_dir(workload) / _artifact_name(workload, target)
    return _build(
        path,
        lambda output: compile_command(workload, target, output),
        f"{workload.name} for {target}",
        progress,
        executable=target != WASM_TARGET,
    )


def _build(
    path: Path,
    command: Callable[[Path], list[str]],
    what: str,
    progress: Progress | None,
    executable: bool,
) -> Path:
    """Build ``path`` with ``command(output)`` unless an intact copy is cached; one builder at
    a time per artifact (a file lock), and the result appears whole or not at all."""
    if _is_built(path):
        return path
    directory = path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        lock = open(directory / f".{path.name}.lock", "w")  # noqa: SIM115 - held across the build
    except OSError as exc:
        error = ArtifactError(f"cannot use the build cache {directory}: {exc.strerror or exc}")
        error.fix = "set EDGELAB_CACHE_DIR to a writable folder"  # type: ignore[attr-defined]
        raise error from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_built(path):
            return path
        if progress:
            progress(f"building {what}")
        scratch = Path(tempfile.mkdtemp(prefix=".build-", dir=directory))
        try:
            output = scratch / path.name
            try:
                done = subprocess.run(
                    command(output),
                    capture_output=True,
                    text=True,
                    env=_zig_env(),
                    cwd=scratch,
                    timeout=600,
                    check=False,
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise ArtifactError(f"cannot build {what}: {exc}") from None
            if done.returncode != 0 or not _nonempty(output):
                reason = _first_error_line(done.stderr + done.stdout)
                raise ArtifactError(f"cannot build {what}: {reason}")
            if executable:
                output.chmod(0o755)
            try:
                os.replace(output, path)
                _record_digest(path)
            except OSError as exc:
                raise ArtifactError(f"cannot write {path}: {exc.strerror or exc}") from None
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return path


def ensure_wasm(workload: Workload, progress: Progress | None = None) -> Path:
    """Path of the workload's Wasm reactor module, built on first use."""
    return _ensure(workload, WASM_TARGET, progress)


def ensure_native(
    workload: Workload,
    arch: str | None = None,
    progress: Progress | None = None,
    variant: str | None = None,
) -> Path:
    """Path of the workload's static Linux binary for ``arch`` (default: this machine), or of
    one of its ``NATIVE_VARIANTS`` (``dynamic``, ``forkserver``)."""
    target = arch or host_arch()
    return _ensure(workload, f"{target}-{variant}" if variant else target, progress)


def ensure_all(
    workloads: Iterable[Workload],
    targets: Iterable[str] = (WASM_TARGET, "native"),
    progress: Progress | None = None,
    jobs: int = 2,
) -> dict[tuple[str, str], Path]:
    """Build many artifacts on a small thread pool; keys are (workload name, target)."""
    native = host_arch()
    plan = [(w, native if t == "native" else t) for w in workloads for t in targets]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {(w.name, t): pool.submit(_ensure, w, t, progress) for w, t in plan}
        return {key: future.result() for key, future in futures.items()}


def artifact_sizes(workload: Workload) -> dict[str, int]:
    """Sizes in bytes of the artifacts already built for this workload, by target."""
    directory = artifact_dir(workload)
    sizes: dict[str, int] = {}
    variants = (f"{arch}-{variant}" for arch in NATIVE_ARCHES for variant in NATIVE_VARIANTS)
    for target in (WASM_TARGET, *NATIVE_ARCHES, *variants):
        path = directory / _artifact_name(workload, target)
        if _is_built(path):
            sizes[target] = path.stat().st_size
    return sizes


# -- the Wasm host's compiled hot path -------------------------------------------------------
HOTPATH_SOURCE = Path(__file__).resolve().parent / "runtimes" / "wasm" / "hotpath.c"
HOTPATH_FLAGS = (
    "-shared",
    "-fPIC",
    "-O2",
    "-s",
    "-std=c11",
    "-ffreestanding",
    "-nostdlib",
    "-fno-stack-protector",
    "-Wall",
    "-Wextra",
)


def _hotpath_layout() -> dict[str, int]:
    """Sizes and offsets of wasmtime's C API structs, from the wheel's own ctypes bindings."""
    import ctypes

    from wasmtime import _ffi as ffi

    return {
        "EL_INSTANCE_BYTES": ctypes.sizeof(ffi.wasmtime_instance_t),
        "EL_EXTERN_BYTES": ctypes.sizeof(ffi.wasmtime_extern_t),
        "EL_EXTERN_OF": ffi.wasmtime_extern_t.of.offset,
        "EL_VAL_BYTES": ctypes.sizeof(ffi.wasmtime_val_raw_t),
    }


def hotpath_command(output: Path) -> list[str]:
    """The exact ``zig cc`` command line for the Wasm host's hot path (a shared library)."""
    defines = [f"-D{name}={value}" for name, value in sorted(_hotpath_layout().items())]
    target = f"{host_arch()}-linux-musl"  # links nothing: any libc's Python can load it
    return [
        sys.executable, "-m", "ziglang", "cc", "-target", target, *HOTPATH_FLAGS, *defines,
        "-o", str(output), str(HOTPATH_SOURCE),
    ]  # fmt: skip


def hotpath_path() -> Path:
    """Where the hot path for this source, wasmtime layout, zig and machine is cached."""
    from importlib.metadata import version

    digest = hashlib.sha256()
    for part in (
        _BUILD_FORMAT,
        zig_version(),
        version("wasmtime"),
        host_arch(),
        " ".join(HOTPATH_FLAGS),
        repr(sorted(_hotpath_layout().items())),
    ):
        digest.update(part.encode() + b"\0")
    digest.update(HOTPATH_SOURCE.read_bytes())
    return cache_dir() / "host" / f"wasm_hotpath-{digest.hexdigest()[:16]}.so"


def ensure_wasm_hotpath(progress: Progress | None = None) -> Path:
    """Path of the Wasm host's compiled hot path, built on first use (about a second)."""
    return _build(hotpath_path(), hotpath_command, "the wasm host's hot path", progress, False)


# -- the native runtime's launcher -----------------------------------------------------------
LAUNCHER_SOURCE = Path(__file__).resolve().parent / "runtimes" / "launcher.c"
LAUNCHER_FLAGS = ("-static", "-O2", "-s", "-std=c11", "-ffreestanding", "-nostdlib", "-fno-stack-protector", "-Wall", "-Wextra")


def launcher_command(output: Path) -> list[str]:
    """The exact ``zig cc`` command line for the native launcher (a tiny static binary)."""
    target = f"{host_arch()}-linux-musl"  # freestanding: links nothing
    return [sys.executable, "-m", "ziglang", "cc", "-target", target, *LAUNCHER_FLAGS,
            "-o", str(output), str(LAUNCHER_SOURCE)]  # fmt: skip


def launcher_path() -> Path:
    """Where the launcher for this source, zig and machine is cached."""
    digest = hashlib.sha256()
    for part in (_BUILD_FORMAT, zig_version(), host_arch(), " ".join(LAUNCHER_FLAGS)):
        digest.update(part.encode() + b"\0")
    digest.update(LAUNCHER_SOURCE.read_bytes())
    return cache_dir() / "host" / f"launcher-{digest.hexdigest()[:16]}"


def ensure_launcher(progress: Progress | None = None) -> Path:
    """Path of the native runtime's launcher (cgroup join, chroot, uid drop, exec), built on
    first use (a fraction of a second)."""
    return _build(launcher_path(), launcher_command, "the native launcher", progress, True)


# -- the native runtime's in-process spawn ---------------------------------------------------
NATIVE_SPAWN_SOURCE = Path(__file__).resolve().parent / "runtimes" / "native_spawn.c"


def native_spawn_command(output: Path) -> list[str]:
    """The exact ``zig cc`` command line for the native spawn library (loaded by ctypes)."""
    target = f"{host_arch()}-linux-musl"  # freestanding: links nothing, any libc's Python loads it
    return [sys.executable, "-m", "ziglang", "cc", "-target", target, *HOTPATH_FLAGS,
            "-o", str(output), str(NATIVE_SPAWN_SOURCE)]  # fmt: skip


def native_spawn_path() -> Path:
    """Where the native spawn library for this source, zig and machine is cached."""
    digest = hashlib.sha256()
    for part in (_BUILD_FORMAT, zig_version(), host_arch(), " ".join(HOTPATH_FLAGS)):
        digest.update(part.encode() + b"\0")
    digest.update(NATIVE_SPAWN_SOURCE.read_bytes())
    return cache_dir() / "host" / f"native_spawn-{digest.hexdigest()[:16]}.so"


def ensure_native_spawn(progress: Progress | None = None) -> Path:
    """Path of the native runtime's spawn library (clone3 + cgroup + jail + uid drop + exec in
    one call), built on first use (a fraction of a second)."""
    return _build(native_spawn_path(), native_spawn_command, "the native spawn library", progress, False)
