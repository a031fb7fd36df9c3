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
#: What the probe module tries, one path or variable per argv entry: it opens each path under
#: its preopen and reads each variable, and writes one line per try ("ok" or "denied").
PROBE_FIXTURE = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "wasi" / "probe.wat"


def probe_grants() -> list[tuple[str, str, str]]:
    """Run the WASI probe module (``tests/fixtures/wasi/probe.wat``) through the ``wasm`` rung
    with one granted and one ungranted directory and one granted and one ungranted variable,
    and report (capability, verdict, detail) for each: what deny-by-default really holds."""
    from edgelab.runtimes.wasm.probe import run_probe

    return run_probe()


def wat_to_wasm(source: str) -> bytes:
    """WAT text as module bytes (wasmtime's wat2wasm; imports wasmtime: tests and probes)."""
    import wasmtime

    return bytes(wasmtime.wat2wasm(source))


def write_temp_module(data: bytes, directory: Path | None = None) -> Path:
    """``data`` as a .wasm file (for a probe or a test), written whole or not at all."""
    fd, name = tempfile.mkstemp(suffix=".wasm", dir=directory)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    return Path(name)
