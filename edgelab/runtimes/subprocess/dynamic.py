"""``subprocess:dynamic``: the same workload source linked, as a PIE, against the system glibc.

Everything ``subprocess`` does (the same spawn, cgroup, uid drop, no_new_privs, RLIMIT_AS,
jail), with the binary a usual build gives: before the handler's first instruction the kernel
maps the loader (``ld-linux``), which maps and relocates ``libc.so.6`` and the binary, resolves
symbols, and glibc's start files run (TLS, IRELATIVE ifuncs, ``__libc_start_main``). That is
what this rung adds over the static binary. The handler then uses glibc's ``malloc`` and
``mem*`` in place of the ABI's own (``-DEDGELAB_DYNAMIC``), the answers are the same bytes.

The jail holds the loader and libc, copied (read-only, root-owned) to the paths the loader
lists (``isolation.dynamic_libraries``: ``ld.so --list``), so the loader finds libc in the
chroot through its default search path, with no ``/etc/ld.so.cache``.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgelab.errors import ArtifactError, RuntimeUnavailable
from edgelab.runtimes import isolation
from edgelab.runtimes.subprocess.runtime import SubprocessRuntime
from edgelab.workloads import Workload

#: Where glibc's loader lives for each architecture the lab builds for (the PT_INTERP that
#: ``zig cc -target <arch>-linux-gnu`` writes).
GLIBC_LOADERS = {
    "x86_64": Path("/lib64/ld-linux-x86-64.so.2"),
    "aarch64": Path("/lib/ld-linux-aarch64.so.1"),
}
VARIANT = "dynamic"


def _glibc_version() -> str:
    """'glibc 2.36', the C library this process runs on (the one the jail copies)."""
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") or "glibc (version unknown)"
    except (ValueError, OSError):
        return "glibc (version unknown)"


class DynamicSubprocessRuntime(SubprocessRuntime):
    """The subprocess runtime with the dynamically linked build and a jail that holds its
    loader and libc."""

    name = "subprocess:dynamic"
    memory_metric = "PSS of the process (libc's shared pages split among their users)"

    @property  # type: ignore[misc]  # the base declares a class constant; here it depends on the host
    def startup_includes(self) -> str:  # type: ignore[override]
        loader = ("the kernel's exec of a PIE with its interpreter, then the dynamic loader mapping and relocating "
                  "libc.so.6 and glibc's start-up before the handler runs (in the exec and first-response phases)")
        jail = "; the jail holds the loader and libc" if self.isolation.drop_uid else ""
        return f"{super().startup_includes}; dynamically linked (PIE, glibc): {loader}{jail}"

    def check(self) -> None:
        super().check()
        from edgelab.build import host_arch

        try:
            loader = GLIBC_LOADERS[host_arch()]
        except (KeyError, ArtifactError):
            raise RuntimeUnavailable(self.name, "no glibc build for this machine", "run on x86_64 or aarch64 Linux") from None
        if not os.access(loader, os.X_OK):
            raise RuntimeUnavailable(self.name, f"no glibc dynamic loader at {loader} (not a glibc system?)",
                                     "install glibc (Debian: libc6)")  # fmt: skip

    def doctor_details(self) -> dict[str, str]:
        details = super().doctor_details()
        details["privileges"] = details["privileges"].replace(
            "a jail holding only the binary", "a jail holding only the binary, its loader and libc (read-only)"
        )
        return details

    def versions(self) -> dict[str, str]:
        return {"glibc": _glibc_version().removeprefix("glibc ")}

    def marks(self) -> tuple[str, ...]:
        return (f"linked against this host's {_glibc_version()}: its loader's and libc's start-up",)

    def prepare(self, workload: Workload) -> None:
        from edgelab.build import ensure_native, host_arch

        try:
            binary = ensure_native(workload, host_arch(), variant=VARIANT)
            jail = None
            if self.isolation.drop_uid:
                libraries = isolation.dynamic_libraries(binary)
                jail = isolation.ensure_jail(binary, f"{binary.parent.name}-{VARIANT}", libraries)
        except ArtifactError as exc:
            fix = getattr(exc, "fix", None) or "edgelab build shows the compiler's error"
            raise RuntimeUnavailable(self.name, str(exc), fix) from None
        if not os.access(binary, os.X_OK):
            raise RuntimeUnavailable(self.name, f"{binary} is not executable", "edgelab clean --cache")
        if jail is not None:
            self._jails[workload.name] = jail
        self._binaries[workload.name] = binary
