"""Workloads: one folder under ``modules/`` each, with a ``workload.toml`` manifest.

Adding a workload is adding a folder; nothing else lists them. Beside the built-in ones, the
user's workloads folder (``user_workloads_dir()``: ``$EDGELAB_WORKLOADS_DIR``, else
``<data dir>/workloads``) holds the functions ``edgelab add`` saved: folders of the same shape
whose manifest says ``kind = "function"`` and names the person's own artifacts in a
``[function]`` section instead of sources.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from edgelab import settings as limits
from edgelab.errors import ManifestError, UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

MANIFEST_NAME = "workload.toml"
#: Responses larger than this are cut off (the instance killed) unless the manifest says more.
DEFAULT_MAX_RESPONSE_BYTES = 16 << 20
_PACKAGE_DIR = Path(__file__).resolve().parent


def shipped_dir(name: str) -> Path:
    """Where a folder that ships with edgelab (``modules``, ``images``) is.

    A wheel carries copies under ``edgelab/_shipped/`` (setup.py's build hook); a source tree,
    and so an editable install, has them beside the package, where people edit them.
    """
    inside = _PACKAGE_DIR / "_shipped" / name
    return inside if inside.is_dir() else _PACKAGE_DIR.parent / name


def modules_dir() -> Path:
    """The workloads' folder: ``$EDGELAB_MODULES_DIR`` (read at each call), else the shipped one."""
    override = os.environ.get("EDGELAB_MODULES_DIR")
    return Path(override).expanduser() if override else shipped_dir("modules")


#: The workloads' folder as found at import; the functions below call ``modules_dir()`` instead.
MODULES_DIR = modules_dir()
#: The ABI every workload is built against: always the lab's own, whatever EDGELAB_MODULES_DIR says.
ABI_DIR = shipped_dir("modules") / "abi"
#: Where ``edgelab add`` saves functions unless ``$EDGELAB_WORKLOADS_DIR`` says otherwise.
WORKLOADS_DIR_ENV = "EDGELAB_WORKLOADS_DIR"
#: A manifest's ``kind``: the built-in ABI workloads (the default) or a saved function.
KINDS = ("abi", "function")


def user_workloads_dir() -> Path:
    """The user's workloads folder (read at each call): ``$EDGELAB_WORKLOADS_DIR``, else
    ``workloads`` in edgelab's data dir (beside the run history: what outlives a run)."""
    override = os.environ.get(WORKLOADS_DIR_ENV)
    if override:
        return Path(override).expanduser()
    from edgelab.history import data_dir

    return data_dir() / "workloads"


#: How a workload talks: ``abi`` is the lab's own resident framed ABI (the built-in C
#: workloads, ``modules/abi``); ``command`` is the CGI/WAGI convention every toolchain emits:
#: the request on stdin, the response on stdout, exit 0. An instance of a command answers once.
Convention = str
CONVENTIONS: tuple[str, ...] = ("abi", "command")


@dataclass(frozen=True)
class Function:
    """A person's own function: the artifacts they give (any of the three), run as commands.

    ``wasm``: a WASI preview 1 core module (a path); ``image``: an image the engine has
    locally (never pulled); ``command``: argv run without a shell. ``dirs`` and ``env`` are
    the grants the Wasm module gets (deny by default), as the wasmtime CLI's ``--dir
    HOST::GUEST`` and ``--env K=V``; the native command and the image get the same env.
    """

    wasm: str | None = None
    image: str | None = None
    command: tuple[str, ...] | None = None
    #: (host path, guest path) pairs.
    dirs: tuple[tuple[str, str], ...] = ()
    #: (name, value) pairs.
    env: tuple[tuple[str, str], ...] = ()

    def artifacts(self) -> dict[str, str]:
        """Which artifact kinds (the registry's ``Artifact``: wasm, image, native) it gives."""
        found: dict[str, str] = {}
        if self.wasm:
            found["wasm"] = self.wasm
        if self.image:
            found["image"] = self.image
        if self.command:
            found["native"] = " ".join(self.command)
        return found

    def as_json(self) -> dict[str, Any]:
        return {
            "wasm": self.wasm,
            "image": self.image,
            "command": list(self.command) if self.command else None,
            "dirs": [f"{host}::{guest}" for host, guest in self.dirs],
            "env": [name for name, _ in self.env],  # names only: values may be secrets
        }


def parse_dir_grant(text: str, base: Path | None = None) -> tuple[str, str]:
    """A directory grant as wasmtime's ``--dir`` takes it: ``HOST::GUEST``, or ``HOST`` alone
    (the same path inside). A relative host path resolves against ``base`` (default: the
    working directory), so a saved grant means the same folder from wherever the lab runs.
    ValueError says what is wrong in words; whether the folder exists is the caller's check."""
    host, sep, guest = text.partition("::")
    if not host:
        raise ValueError(f"'{text}' names no host directory (HOST::GUEST)")
    if sep and not guest:
        raise ValueError(f"'{text}' names no guest path after '::' (HOST::GUEST)")
    if "\0" in text:
        raise ValueError(f"{text!r} holds a NUL byte")
    host_path = Path(host).expanduser()
    if not host_path.is_absolute():
        host_path = (base or Path.cwd()) / host_path
    return os.path.normpath(host_path), guest if sep else host


def parse_env_grant(text: str, environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """An environment grant as wasmtime's ``--env``: ``K=V``, or ``K`` alone for this
    process's own value of K (``environ``; None: no inheriting, as in a saved manifest)."""
    name, sep, value = text.partition("=")
    if not name:
        raise ValueError(f"'{text}' names no variable (K=V)")
    if "\0" in text:
        raise ValueError(f"{text!r} holds a NUL byte")
    if not sep:
        if environ is None:
            raise ValueError(f"'{text}' has no value (K=V)")
        if name not in environ:
            raise ValueError(f"'{text}' gives no value and {name} is not set here (K=V)")
        value = environ[name]
    return name, value


@dataclass(frozen=True)
class Workload:
    """A workload as its manifest describes it; the same source builds all three artifacts.

    A *function* workload (``function`` set, ``convention == "command"``) has no sources: its
    artifacts are the person's own (``edgelab run --wasm/--image/--command``, ``edgelab add``).
    """

    name: str
    description: str
    directory: Path
    sources: tuple[Path, ...]
    default_request: bytes
    max_request_bytes: int
    timeout_s: float
    memory_limit_bytes: int
    defines: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    #: Set only for workloads that exist to misbehave (fault-injection tests); not listed by default.
    hostile: bool = False
    #: The largest response the lab reads from one instance; past it the instance is killed and
    #: the launch fails with "response exceeded ...". Manifest field ``max_response_bytes``.
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    #: A person's own artifacts (command convention); None for the built-in ABI workloads.
    function: Function | None = None

    @property
    def manifest(self) -> Path:
        return self.directory / MANIFEST_NAME

    @property
    def convention(self) -> Convention:
        return "command" if self.function is not None else "abi"

    @property
    def kind(self) -> str:
        """The manifest's ``kind`` (``KINDS``): what ``edgelab workloads`` and the TUI list."""
        return "function" if self.function is not None else "abi"


def _require(data: dict, key: str, kind: type | tuple[type, ...], path: Path) -> Any:
    if key not in data:
        raise ManifestError(f"{path}: missing field '{key}'")
    value = data[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ManifestError(f"{path}: field '{key}' has the wrong type ({type(value).__name__})")
    return value


def _limit(path: Path, key: str, value: object, limit: limits.Limit) -> float:
    """A manifest's number, finite and in range (TOML allows nan, inf and 2**63-1)."""
    try:
        return limits.check(value, f"field '{key}'", limit)
    except limits.BadNumber as exc:
        raise ManifestError(f"{path}: {exc}") from None


def load_manifest(path: Path) -> Workload:
    """Read one manifest; any problem is a ManifestError naming the file and the field."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read manifest ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{path}: not valid TOML ({exc})") from None
    directory = path.parent
    name = str(_require(data, "name", str, path))
    if name != directory.name:
        raise ManifestError(f"{path}: name '{name}' differs from its folder '{directory.name}'")
    kind = data.get("kind", "abi")
    if kind not in KINDS:
        raise ManifestError(f"{path}: field 'kind' is '{kind}' (choose from {', '.join(KINDS)})")
    function: Function | None = None
    if kind == "function":
        if "sources" in data:
            raise ManifestError(f"{path}: a function workload has no 'sources' (its artifacts are in [function])")
        source_paths: tuple[Path, ...] = ()
        function = _function_section(data, path)
    else:
        if "function" in data:
            raise ManifestError(f"{path}: a [function] section needs kind = \"function\"")
        sources = _require(data, "sources", list, path)
        source_paths = tuple(directory / str(s) for s in sources)
        for source in source_paths:
            if not source.is_file():
                raise ManifestError(f"{path}: source {source.name} does not exist")
    max_request = int(
        _limit(
            path,
            "max_request_bytes",
            _require(data, "max_request_bytes", int, path),
            limits.MAX_REQUEST_BYTES,
        )
    )
    # The default request is a request like any other: read to the limit and no further.
    if "default_request_file" in data:
        request_path = directory / str(data["default_request_file"])
        try:
            with open(request_path, "rb") as stream:
                default_request = limits.read_request(stream, max_request, name, str(request_path))
        except OSError as exc:
            raise ManifestError(f"{path}: cannot read default_request_file ({exc})") from None
        except UsageError as exc:
            raise ManifestError(f"{path}: default_request_file: {exc}") from None
    else:
        default_request = str(_require(data, "default_request", str, path)).encode()
        if len(default_request) > max_request:
            raise ManifestError(
                f"{path}: default_request of {len(default_request)} bytes exceeds max_request_bytes = {max_request}"
            )
    max_response = int(
        _limit(
            path,
            "max_response_bytes",
            data.get("max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES),
            limits.MAX_RESPONSE_BYTES,
        )
    )
    timeout_s = _limit(
        path, "timeout_s", _require(data, "timeout_s", (int, float), path), limits.TIMEOUT_S
    )
    memory_mib = int(
        _limit(
            path,
            "memory_limit_mib",
            _require(data, "memory_limit_mib", int, path),
            limits.MEMORY_LIMIT_MIB,
        )
    )
    defines = data.get("defines", {})
    if not isinstance(defines, dict) or not all(isinstance(v, str) for v in defines.values()):
        raise ManifestError(f"{path}: [defines] must map names to strings")
    return Workload(
        name=name,
        description=str(_require(data, "description", str, path)),
        directory=directory,
        sources=source_paths,
        default_request=default_request,
        max_request_bytes=max_request,
        timeout_s=timeout_s,
        memory_limit_bytes=memory_mib * 1024 * 1024,
        defines=MappingProxyType(dict(defines)),
        hostile=bool(data.get("hostile", False)),
        max_response_bytes=max_response,
        function=function,
    )


def _function_section(data: dict, path: Path) -> Function:
    """A saved function's ``[function]``: ``wasm`` (a file, relative to the folder), ``image``
    (a tag), ``command`` (argv; a relative program path with a slash resolves against the
    folder, a bare name is looked up on PATH when run), ``dirs`` (``"HOST::GUEST"``) and
    ``env`` (``"K=V"``): the same grammar as ``edgelab run``'s flags. At least one artifact."""
    section = data.get("function")
    if not isinstance(section, dict):
        raise ManifestError(f"{path}: kind = \"function\" needs a [function] section")
    known = {"wasm", "image", "command", "dirs", "env"}
    unknown = sorted(set(section) - known)
    if unknown:
        raise ManifestError(f"{path}: [function] has unknown field '{unknown[0]}' (known: {', '.join(sorted(known))})")
    directory = path.parent
    wasm = section.get("wasm")
    if wasm is not None:
        if not isinstance(wasm, str) or not wasm:
            raise ManifestError(f"{path}: [function] wasm must be a file name")
        wasm_path = Path(wasm) if Path(wasm).is_absolute() else directory / wasm
        if not wasm_path.is_file():
            raise ManifestError(f"{path}: [function] wasm {wasm} does not exist")
        wasm = str(wasm_path)
    image = section.get("image")
    if image is not None and (not isinstance(image, str) or not image.strip()):
        raise ManifestError(f"{path}: [function] image must be an image name")
    command = section.get("command")
    if command is not None:
        if not isinstance(command, list) or not command or not all(isinstance(a, str) and a for a in command):
            raise ManifestError(f"{path}: [function] command must be a list of non-empty strings (argv)")
        program = command[0]
        if "/" in program and not Path(program).is_absolute():
            program = os.path.normpath(directory / program)
        command = [program, *command[1:]]
    if wasm is None and image is None and command is None:
        raise ManifestError(f"{path}: [function] gives no artifact (wasm, image or command)")
    grants: dict[str, list[tuple[str, str]]] = {}
    for key, parse in (("dirs", lambda t: parse_dir_grant(t, directory)), ("env", parse_env_grant)):
        entries = section.get(key, [])
        if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
            raise ManifestError(f"{path}: [function] {key} must be a list of strings")
        try:
            grants[key] = [parse(entry) for entry in entries]
        except ValueError as exc:
            raise ManifestError(f"{path}: [function] {key}: {exc}") from None
    return Function(
        wasm=wasm,
        image=image,
        command=tuple(command) if command else None,
        dirs=tuple(grants["dirs"]),
        env=tuple(grants["env"]),
    )


def _manifests(root: Path) -> list[Path]:
    """The manifests of ``root``'s folders, sorted; a folder whose name starts with a dot is
    skipped (``edgelab add`` writes a function there before renaming it into place)."""
    return sorted(m for m in root.glob(f"*/{MANIFEST_NAME}") if not m.parent.name.startswith("."))


def load_workloads(root: Path | None = None, include_hostile: bool = False) -> dict[str, Workload]:
    """Every workload under ``root``, by name, sorted; hostile test workloads only on request.

    With no ``root``: the built-in ones (``modules_dir()``), then the functions saved in the
    user's workloads folder (``user_workloads_dir()``, if it exists). A saved one may not take
    a built-in's name (one line naming its file: ``edgelab add`` refuses such names)."""
    found: dict[str, Workload] = {}
    seen: set[str] = set()  # hostile ones too: a saved function may not shadow one either
    roots = [modules_dir(), user_workloads_dir()] if root is None else [root]
    for index, folder in enumerate(roots):
        if index and not folder.is_dir():
            continue
        for manifest in _manifests(folder):
            workload = load_manifest(manifest)
            if workload.name in seen:
                raise ManifestError(
                    f"{manifest}: the name '{workload.name}' is a built-in workload's (rename its folder)"
                )
            seen.add(workload.name)
            if workload.hostile and not include_hostile:
                continue
            found[workload.name] = workload
    return found


def no_workloads_error(root: Path) -> UsageError:
    """The one line for a lab that finds nothing to run: where it looked and how to point it."""
    where = (
        "EDGELAB_MODULES_DIR" if os.environ.get("EDGELAB_MODULES_DIR") else "the installed package"
    )
    return UsageError(
        f"no workloads found under {root} (from {where}; each needs a folder with a {MANIFEST_NAME})"
    )


def require_workloads(root: Path | None = None) -> dict[str, Workload]:
    """``load_workloads`` (saved functions too when no ``root``), but finding none is an
    error, not an empty table."""
    workloads = load_workloads(root)
    if not workloads:
        raise no_workloads_error(modules_dir() if root is None else root)
    return workloads


def get_workload(name: str, root: Path | None = None) -> Workload:
    """One workload by name: built-in or saved (no ``root``), or from ``root`` alone."""
    workloads = load_workloads(root, include_hostile=True)
    if name not in workloads:
        if not workloads:
            raise no_workloads_error(modules_dir() if root is None else root)
        known = ", ".join(w for w, spec in workloads.items() if not spec.hostile) or "none"
        raise UsageError(f"unknown workload '{name}' (known: {known})")
    return workloads[name]


def function_workload(name: str, function: Function, request: bytes = b"", timeout_s: float = 10.0) -> Workload:
    """A workload standing for a person's own function (``edgelab run --wasm/--image/--command``):
    no sources, no folder of its own; its limits are the lab's defaults."""
    return Workload(
        name=name,
        description=f"your function ({', '.join(function.artifacts())})",
        directory=Path.cwd(),
        sources=(),
        default_request=request,
        max_request_bytes=16 << 20,
        timeout_s=timeout_s,
        memory_limit_bytes=256 << 20,
        function=function,
    )


def resolve_workload(name: str, function: Function | None = None) -> Workload:
    """The workload a run's settings name: a function given on the command line, else one from
    the workloads' folders by name."""
    if function is not None:
        return function_workload(name, function)
    return get_workload(name)
