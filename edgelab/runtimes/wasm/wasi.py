"""A person's own WASI preview 1 command module: checked before any host sees it, and the
capability probe of its grants.

Why a parser of our own instead of asking wasmtime: the lab process never imports wasmtime
(``edgelab --help`` stays instant, and a bad file is refused in the lab with one line before
a host process is started). The checks are the ones a person can act on: not Wasm at all, a
component instead of a core module, imports outside ``wasi_snapshot_preview1`` (every one
listed), no ``_start`` export. wasmtime still validates the whole module when it compiles it.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgelab.errors import UsageError

WASM_MAGIC = b"\0asm"
CORE_VERSION = b"\x01\x00\x00\x00"
#: The only import module a WASI preview 1 command may use.
WASI_MODULE = "wasi_snapshot_preview1"
#: How to get a core module from the usual toolchains (the component's refusal says it).
BUILD_HINT = (
    "build for wasm32-wasip1 (or wasm32-wasi), or take the core module out of the component "
    "(e.g. the one your toolchain wrote before 'wasm-tools component new')"
)


@dataclass(frozen=True)
class WasiModule:
    """What the lab knows of a checked module: where it is, its size and its imports."""

    path: Path
    size_bytes: int
    imports: tuple[tuple[str, str], ...]
    data: bytes

    @property
    def uses_wasi(self) -> bool:
        return any(module == WASI_MODULE for module, _ in self.imports)


class _Reader:
    """LEB128 and names over the module's bytes; running off the end is a ValueError."""

    def __init__(self, data: bytes, at: int = 0, end: int | None = None) -> None:
        self.data, self.at, self.end = data, at, len(data) if end is None else end

    def byte(self) -> int:
        if self.at >= self.end:
            raise ValueError("unexpected end")
        value = self.data[self.at]
        self.at += 1
        return value

    def uleb(self) -> int:
        result = shift = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift > 63:
                raise ValueError("LEB128 too long")

    def name(self) -> str:
        n = self.uleb()
        if self.at + n > self.end:
            raise ValueError("name runs past its section")
        raw = self.data[self.at : self.at + n]
        self.at += n
        return raw.decode("utf-8", "replace")

    def limits(self) -> None:
        flags = self.byte()
        self.uleb()
        if flags & 1:
            self.uleb()


def _import_desc(reader: _Reader) -> None:
    kind = reader.byte()
    if kind == 0x00:  # func: type index
        reader.uleb()
    elif kind == 0x01:  # table: reftype, limits
        reader.byte()
        reader.limits()
    elif kind == 0x02:  # memory: limits
        reader.limits()
    elif kind == 0x03:  # global: valtype, mutability
        reader.byte()
        reader.byte()
    elif kind == 0x04:  # tag: attribute, type index
        reader.byte()
        reader.uleb()
    else:
        raise ValueError(f"unknown import kind {kind:#x}")


def parse_module(data: bytes, shown: str) -> tuple[list[tuple[str, str]], dict[str, int]]:
    """(imports as (module, name), exports name -> kind) of a core module's bytes, or a
    UsageError saying in one line why ``shown`` is not a WASI core module."""
    if data[:4] != WASM_MAGIC:
        raise UsageError(f"{shown} is not a WebAssembly module (it does not start with \\0asm)")
    version = data[4:8]
    if len(version) == 4 and version[2:4] == b"\x01\x00":
        raise UsageError(
            f"{shown} is a WebAssembly component, not a core module: edgelab runs WASI preview 1 "
            f"core modules; {BUILD_HINT}"
        )
    if version != CORE_VERSION:
        raise UsageError(
            f"{shown} is WebAssembly of version {version.hex()}, not a core module (01000000)"
        )
    imports: list[tuple[str, str]] = []
    exports: dict[str, int] = {}
    at = 8
    try:
        while at < len(data):
            head = _Reader(data, at)
            section = head.byte()
            size = head.uleb()
            start, end = head.at, head.at + size
            if end > len(data):
                raise ValueError("a section runs past the end of the file")
            body = _Reader(data, start, end)
            if section == 2:
                for _ in range(body.uleb()):
                    module, name = body.name(), body.name()
                    _import_desc(body)
                    imports.append((module, name))
            elif section == 7:
                for _ in range(body.uleb()):
                    name = body.name()
                    exports[name] = body.byte()
                    body.uleb()
            at = end
    except ValueError as exc:
        raise UsageError(f"{shown} is not a valid WebAssembly module ({exc})") from None
    return imports, exports


def check_module(path: str | os.PathLike[str]) -> WasiModule:
    """Read and check a person's module: a WASI preview 1 core command, or one UsageError line
    (not found, not Wasm, a component, unknown imports listed, no ``_start``)."""
    file = Path(path).expanduser()
    shown = str(path)
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"--wasm {shown}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"--wasm {shown}: is a directory, not a .wasm file") from None
    except OSError as exc:
        raise UsageError(f"--wasm {shown}: cannot read it ({exc.strerror or exc})") from None
    imports, exports = parse_module(data, shown)
    unknown = [f"{module}.{name}" for module, name in imports if module != WASI_MODULE]
    if unknown:
        raise UsageError(
            f"{shown} imports {len(unknown)} function(s) outside {WASI_MODULE}: "
            f"{', '.join(unknown)} (edgelab gives a module WASI preview 1 only)"
        )
    if exports.get("_start") != 0x00:
        raise UsageError(
            f"{shown} exports no _start function: it is not a WASI command (a reactor or a "
            "library); build it as an executable (a main function)"
        )
    return WasiModule(file.resolve(), len(data), tuple(imports), data)


def describe_grants(dirs: tuple[tuple[str, str], ...], env: tuple[tuple[str, str], ...]) -> str:
    """The grants in one line, as the run's settings show them (env values are not shown:
    they may be secrets)."""
    parts = ["stdin (the request), stdout (the response), stderr (kept for errors)"]
    parts.append(
        "dirs " + ", ".join(f"{host}::{guest} (read-write)" for host, guest in dirs)
        if dirs else "no directories"
    )  # fmt: skip
    parts.append("env " + ", ".join(name for name, _ in env) if env else "no environment")
    return "; ".join(parts) + "; argv[0] only; nothing else (deny by default)"


def check_grants(dirs: tuple[tuple[str, str], ...]) -> None:
    """Every granted host directory exists and is a directory, or one UsageError line."""
    for host, guest in dirs:
        if not Path(host).is_dir():
            raise UsageError(f"--dir {host}::{guest}: {host} is not a directory")
        if not guest:
            raise UsageError(f"--dir {host}::{guest}: the guest path is empty")


# -- the capability probe ------------------------------------------------------------------
#: The probe module, by hand in WAT (instant to compile, no toolchain): tries a second preopen
#: (fd 4, never granted), opening and reading ``probe.txt`` under its one preopen (fd 3), and
#: escaping that preopen to ``../ungranted/probe.txt``, then reads its whole environment. It
#: writes 20 bytes of results (WASI errno bytes at 0 open, 1 read, 8 escape, 9 fd 4, 10 and 11
#: the environment calls; bytes read as u32 at 4; variables and their size as u32 at 12 and
#: 16) followed by the environment block (NAME=value, NUL-terminated).
PROBE_WAT = """
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get"
    (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get"
    (func $environ_get (param i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 100) "probe.txt")
  (data (i32.const 120) "../ungranted/probe.txt")
  (func (export "_start")
    ;; C: a second preopen (fd 4), which nothing granted (tried first: A's file takes fd 4)
    (i32.store8 (i32.const 309)
      (call $path_open (i32.const 4) (i32.const 1) (i32.const 100) (i32.const 9)
        (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 200)))
    ;; A: the granted directory (preopen fd 3): open probe.txt and read it
    (i32.store8 (i32.const 300)
      (call $path_open (i32.const 3) (i32.const 1) (i32.const 100) (i32.const 9)
        (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 200)))
    (if (i32.eqz (i32.load8_u (i32.const 300)))
      (then
        (i32.store (i32.const 208) (i32.const 1024))
        (i32.store (i32.const 212) (i32.const 256))
        (i32.store8 (i32.const 301)
          (call $fd_read (i32.load (i32.const 200)) (i32.const 208) (i32.const 1) (i32.const 304)))))
    ;; B: the ungranted sibling directory, reached by escaping the preopen with ..
    (i32.store8 (i32.const 308)
      (call $path_open (i32.const 3) (i32.const 1) (i32.const 120) (i32.const 22)
        (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 200)))
    ;; the environment: every NAME=value the module can see
    (i32.store8 (i32.const 310) (call $environ_sizes_get (i32.const 312) (i32.const 316)))
    (if (i32.and (i32.le_u (i32.load (i32.const 312)) (i32.const 256))
                 (i32.le_u (i32.load (i32.const 316)) (i32.const 61440)))
      (then (i32.store8 (i32.const 311) (call $environ_get (i32.const 2048) (i32.const 4096))))
      (else (i32.store8 (i32.const 311) (i32.const 255)) (i32.store (i32.const 316) (i32.const 0))))
    ;; out: the 20 result bytes at 300, then the environment block
    (i32.store (i32.const 0) (i32.const 300))
    (i32.store (i32.const 4) (i32.const 20))
    (i32.store (i32.const 8) (i32.const 4096))
    (i32.store (i32.const 12) (i32.load (i32.const 316)))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 24)))
    (drop (call $fd_write (i32.const 1) (i32.const 8) (i32.const 1) (i32.const 24)))))
"""
#: WASI errno values the probe may see, by name.
WASI_ERRNO = {0: "success", 8: "EBADF", 44: "ENOENT", 54: "ENOTDIR", 63: "EPERM", 76: "ENOTCAPABLE"}
#: The variable the probe is given, and its value.
PROBE_GIVEN = ("EDGELAB_PROBE_GIVEN", "granted")


def _errno(value: int) -> str:
    return f"errno {value} ({WASI_ERRNO.get(value, 'other')})"


def read_probe(output: bytes, hidden: str) -> list[tuple[str, str, str]]:
    """(capability, verdict "allowed"/"denied", detail) from the probe module's stdout."""
    import struct

    if len(output) < 20:
        raise ValueError(f"the probe wrote {len(output)} bytes, not its 20 result bytes")
    opened, read, escaped, other_fd = output[0], output[1], output[8], output[9]
    (n_read,) = struct.unpack_from("<I", output, 4)
    names = {
        entry.split(b"=", 1)[0].decode("utf-8", "replace")
        for entry in output[20:].split(b"\0")
        if entry
    }
    given = PROBE_GIVEN[0]
    rows = [
        (
            "wasi: granted dir (--dir HOST::/data)",
            "allowed" if opened == 0 and read == 0 else "denied",
            f"opened /data/probe.txt and read {n_read} bytes" if opened == 0 and read == 0
            else f"open: {_errno(opened)}, read: {_errno(read)}",
        ),
        (
            "wasi: ungranted dir (../ungranted beside /data)",
            "allowed" if escaped == 0 else "denied",
            f"path_open: {_errno(escaped)}",
        ),
        (
            "wasi: ungranted preopen (fd 4)",
            "allowed" if other_fd == 0 else "denied",
            f"path_open: {_errno(other_fd)}",
        ),
        (
            f"wasi: granted env ({given})",
            "allowed" if given in names else "denied",
            "in the module's environment" if given in names else "not in the module's environment",
        ),
        (
            f"wasi: ungranted env ({hidden}, set in the host process)",
            "allowed" if hidden in names else "denied",
            "in the module's environment" if hidden in names else "not in the module's environment",
        ),
    ]  # fmt: skip
    return rows


def probe_grants(timeout_s: float = 10.0) -> list[tuple[str, str, str]]:
    """Run the probe module on the ``wasm`` rung with one granted directory (a temporary
    ``granted/`` as ``/data``) beside an ungranted one, one granted variable
    (``PROBE_GIVEN``) and one the host process has but the module is not given (PATH or HOME,
    else one set for the probe), and report what it could reach: (capability, "allowed" or
    "denied", detail). Starts and closes one Wasm host of its own; leaves nothing behind."""
    import shutil

    from edgelab.runtimes.wasm.runtime import WasmRuntime
    from edgelab.session import Session
    from edgelab.workloads import Function, function_workload

    hidden = next((name for name in ("PATH", "HOME") if os.environ.get(name)), "")
    restore = None
    if not hidden:  # pragma: no cover - a host with neither PATH nor HOME
        hidden, restore = "EDGELAB_PROBE_HIDDEN", True
        os.environ[hidden] = "hidden"
    root = Path(tempfile.mkdtemp(prefix="edgelab-wasi-probe-"))
    runtime = None
    try:
        for name, text in (("granted", "granted\n"), ("ungranted", "not granted\n")):
            (root / name).mkdir()
            (root / name / "probe.txt").write_text(text)
        module = root / "probe.wasm"
        module.write_bytes(wat_to_wasm(PROBE_WAT))
        function = Function(
            wasm=str(module), dirs=((str(root / "granted"), "/data"),), env=(PROBE_GIVEN,)
        )
        workload = function_workload("wasi-probe", function, b"", timeout_s)
        runtime = WasmRuntime(Session(), resident_host_at_prepare=False)  # one launch
        runtime.check()
        runtime.prepare(workload)
        launch = runtime.launch(workload, b"", timeout_s)
        return read_probe(launch.response.body, hidden)
    finally:
        if runtime is not None:
            runtime.close()
        shutil.rmtree(root, ignore_errors=True)
        if restore:  # pragma: no cover
            os.environ.pop(hidden, None)


def wat_to_wasm(source: str) -> bytes:
    """WAT text as module bytes (wasmtime's wat2wasm; imports wasmtime: tests and probes)."""
    import wasmtime

    return bytes(wasmtime.wat2wasm(source))
