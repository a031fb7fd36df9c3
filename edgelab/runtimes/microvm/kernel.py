"""The guest kernel: Debian's cloud kernel, fetched once into the artifact cache, never installed.

``apt-get download`` the package ``linux-image-cloud-amd64`` depends on (the metapackage itself
holds no kernel) into a scratch folder, ``dpkg-deb -x`` it there, and keep only what a microVM
boots with: the bzImage and the four virtio modules init.c loads (the cloud kernel builds
virtio-mmio and the virtio console as modules). Nothing is installed and nothing outside the
cache is written. One fetch at a time per cache (``flock``); the kept folder appears whole
(a rename) or not at all, so a killed fetch leaves no half kernel.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgelab.build import cache_dir
from edgelab.errors import RuntimeUnavailable

#: The metapackage whose dependency is the kernel we boot (amd64 only: microvm's guest).
KERNEL_PACKAGE = "linux-image-cloud-amd64"
#: Modules init.c loads, in its order, with where they live under lib/modules/<release>/kernel.
MODULES = (
    ("virtio_ring.ko", "drivers/virtio/virtio_ring.ko"),
    ("virtio.ko", "drivers/virtio/virtio.ko"),
    ("virtio_mmio.ko", "drivers/virtio/virtio_mmio.ko"),
    ("virtio_console.ko", "drivers/char/virtio_console.ko"),
)
_APT_TIMEOUT_S = 120
FIX = "apt-get update, then retry with Debian's archive reachable (or copy a cache from a machine that has it)"


@dataclass(frozen=True)
class Kernel:
    """A kernel ready to boot: ``vmlinuz`` and the modules init.c loads, in load order."""

    directory: Path
    package: str
    version: str
    release: str

    @property
    def vmlinuz(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def modules(self) -> list[Path]:
        return [self.directory / name for name, _ in MODULES]


def kernels_dir() -> Path:
    return cache_dir() / "microvm"


def _unavailable(runtime: str, reason: str, fix: str = FIX) -> RuntimeUnavailable:
    return RuntimeUnavailable(runtime, reason, fix)


def _run(argv: list[str], cwd: Path | None, runtime: str) -> str:
    """Run an apt/dpkg tool; its failure is one line naming the tool and its first error."""
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=_APT_TIMEOUT_S, check=False)
    except FileNotFoundError:
        raise _unavailable(runtime, f"{argv[0]} not found: the guest kernel comes from Debian's archive",
                           "run on Debian/Ubuntu, or copy ~/.cache/edgelab/microvm from a machine that has it") from None  # fmt: skip
    except subprocess.TimeoutExpired:
        raise _unavailable(runtime, f"{' '.join(argv[:2])} took over {_APT_TIMEOUT_S} s") from None
    if done.returncode != 0:
        lines = [ln.strip() for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("E:")] or lines or [f"exit status {done.returncode}"]
        raise _unavailable(runtime, f"{' '.join(argv[:2])} {argv[-1]} failed: {errors[0]}")
    return done.stdout


def resolve_package(metapackage: str, runtime: str) -> str:
    """The versioned kernel package the metapackage depends on (``linux-image-6.1.0-57-cloud-amd64``)."""
    out = _run(["apt-cache", "depends", metapackage], None, runtime)
    for line in out.splitlines():
        match = re.match(r"\s*Depends:\s*(linux-image-\S+)", line)
        if match:
            return match.group(1)
    raise _unavailable(runtime, f"{metapackage} depends on no linux-image package here")


def cached_kernel(metapackage: str = KERNEL_PACKAGE) -> Kernel | None:
    """The kernel fetched earlier for ``metapackage``, if the cache holds a whole one."""
    link = kernels_dir() / f"{metapackage}.current"
    try:
        name = link.read_text().strip()
    except OSError:
        return None
    return _load(kernels_dir() / name)


def _load(directory: Path) -> Kernel | None:
    try:
        package, version, release = (directory / "KERNEL").read_text().split()
    except (OSError, ValueError):
        return None
    kernel = Kernel(directory, package, version, release)
    if not all(path.is_file() and path.stat().st_size > 0 for path in (kernel.vmlinuz, *kernel.modules)):
        return None
    return kernel


def ensure_kernel(metapackage: str = KERNEL_PACKAGE, runtime: str = "microvm") -> Kernel:
    """The cached kernel, fetched and unpacked on first use (~27 MB download, a few seconds).
    Raises RuntimeUnavailable (one line, with the fix) when it cannot be had."""
    kernel = cached_kernel(metapackage)
    if kernel is not None:
        return kernel
    root = kernels_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = open(root / f".{metapackage}.lock", "w")  # noqa: SIM115 - held across the fetch
    except OSError as exc:
        raise _unavailable(runtime, f"cannot use the cache {root}: {exc.strerror or exc}",
                           "set EDGELAB_CACHE_DIR to a writable folder") from None  # fmt: skip
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        kernel = cached_kernel(metapackage)  # another process fetched it while we waited
        if kernel is not None:
            return kernel
        return _fetch(metapackage, root, runtime)


def _fetch(metapackage: str, root: Path, runtime: str) -> Kernel:
    package = resolve_package(metapackage, runtime)
    scratch = Path(tempfile.mkdtemp(prefix=".fetch-", dir=root))
    try:
        os.chmod(scratch, 0o755)  # apt's _apt user writes the download when it can
        _run(["apt-get", "download", "-q", package], scratch, runtime)
        debs = sorted(scratch.glob("*.deb"))
        if not debs:
            raise _unavailable(runtime, f"apt-get download {package} wrote no .deb")
        unpacked = scratch / "x"
        _run(["dpkg-deb", "-x", str(debs[0]), str(unpacked)], None, runtime)
        version = debs[0].name.split("_")[1].replace("%3a", ":")
        vmlinuz = sorted((unpacked / "boot").glob("vmlinuz-*"))
        if not vmlinuz:
            raise _unavailable(runtime, f"{package} holds no /boot/vmlinuz-*")
        release = vmlinuz[0].name.removeprefix("vmlinuz-")
        keep = scratch / "kernel"
        keep.mkdir()
        shutil.move(vmlinuz[0], keep / "vmlinuz")
        for name, relative in MODULES:
            source = unpacked / "lib" / "modules" / release / "kernel" / relative
            if not source.is_file():
                raise _unavailable(runtime, f"{package} has no {relative}: its virtio console cannot be loaded")
            shutil.move(source, keep / name)
        (keep / "KERNEL").write_text(f"{package} {version} {release}\n")
        final = root / f"{package}_{version}"
        if final.exists():
            shutil.rmtree(final)
        os.replace(keep, final)
        current = root / f".{metapackage}.current.tmp"
        current.write_text(final.name + "\n")
        os.replace(current, root / f"{metapackage}.current")
    except OSError as exc:
        raise _unavailable(runtime, f"cannot unpack the kernel into {root}: {exc.strerror or exc}",
                           "set EDGELAB_CACHE_DIR to a writable folder with ~100 MB free") from None  # fmt: skip
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    kernel = _load(final)
    if kernel is None:  # (just written whole: only a disk failing under us gets here)
        raise _unavailable(runtime, f"the kernel unpacked into {final} is incomplete")
    return kernel
