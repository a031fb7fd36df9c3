"""A person's own function: ``edgelab run --wasm/--image/--command`` measures the artifacts
they give, side by side, without saving anything; ``edgelab add`` saves them as a workload
folder (a ``workload.toml`` of ``kind = "function"``) in the user's workloads folder, so the
TUI and ``edgelab workloads`` list them beside the built-in ones.

Everything a person gives is checked here, before anything runs or is written, so that bad
input is one line and exit 2: a file that is not a WASI core module, an image the engine does
not have (never pulled: no registry need be reachable), a command that is not found or not
executable, a malformed ``--dir``/``--env``. The runtimes check again when they prepare.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import tempfile
from pathlib import Path
from typing import Any

from edgelab.errors import EdgelabError, UsageError
from edgelab.workloads import (
    MANIFEST_NAME,
    Function,
    Workload,
    load_workloads,
    modules_dir,
    parse_dir_grant,
    parse_env_grant,
    user_workloads_dir,
)

#: The flag that gives each artifact kind (the registry's ``RuntimeSpec.artifact``).
FLAGS = {"wasm": "--wasm", "image": "--image", "native": "--command"}
#: A saved function's limits unless its manifest says otherwise: those ``function_workload``
#: gives a function measured straight from the command line, so both measure alike.
DEFAULT_MAX_REQUEST_BYTES = 16 << 20
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MEMORY_LIMIT_MIB = 256
#: A workload name is a folder name and part of file names: letters, digits, ``.``, ``_``, ``-``.
NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
NAME_MAX = 64


# -- from flags to a Function --------------------------------------------------------------------
def given(args: argparse.Namespace) -> bool:
    """Whether any function flag (``--wasm``, ``--image``, ``--command``) was given."""
    return any(getattr(args, key, None) is not None for key in ("wasm", "image", "command_line"))


def function_from_args(args: argparse.Namespace, environ: dict[str, str] | None = None) -> Function | None:
    """The Function the flags describe, checked (``check_function``), or None when no function
    flag was given; ``--dir``/``--env`` without one is one line (they would grant nothing)."""
    dirs, envs = list(getattr(args, "dir", []) or []), list(getattr(args, "env", []) or [])
    if not given(args):
        if dirs or envs:
            raise UsageError("--dir and --env grant a function: give it with --wasm, --image or --command")
        return None
    command = None
    if args.command_line is not None:
        try:
            command = tuple(shlex.split(args.command_line))
        except ValueError as exc:
            raise UsageError(f"--command {args.command_line!r}: {exc}") from None
        if not command:
            raise UsageError("--command is empty: give a program and its arguments (\"./app --flag\")")
    if args.wasm is not None and not args.wasm:
        raise UsageError("--wasm needs a file name")
    if args.image is not None and not args.image.strip():
        raise UsageError("--image needs an image name (e.g. myapp:latest)")
    function = Function(
        wasm=os.path.abspath(os.path.expanduser(args.wasm)) if args.wasm else None,
        image=args.image.strip() if args.image else None,
        command=(resolve_program(command[0]), *command[1:]) if command else None,
        dirs=tuple(_grant("--dir", text, parse_dir_grant) for text in dirs),
        env=tuple(_grant("--env", text, lambda t: parse_env_grant(t, os.environ if environ is None else environ)) for text in envs),
    )
    check_function(function, shown_wasm=args.wasm)
    return function


def _grant(flag: str, text: str, parse: Any) -> tuple[str, str]:
    try:
        return parse(text)
    except ValueError as exc:
        raise UsageError(f"{flag} {exc}") from None


def resolve_program(program: str) -> str:
    """argv[0] as an absolute path (so any runtime can exec it without a PATH of its own): a
    path as given, made absolute; a bare name looked up on PATH, as a shell would. Not found,
    a folder or not executable: one line."""
    if "/" in program:
        path = os.path.abspath(os.path.expanduser(program))
        if not os.path.exists(path):
            raise UsageError(f"--command: {program} not found")
    else:
        found = shutil.which(program)
        if found is None:
            # which() skips files that exist but are not executable: name that case apart.
            on_path = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and os.path.isfile(os.path.join(d, program))]
            if on_path:
                raise UsageError(f"--command: {os.path.join(on_path[0], program)} is not executable")
            raise UsageError(f"--command: {program} not found on PATH")
        path = os.path.abspath(found)
    if os.path.isdir(path):
        raise UsageError(f"--command: {program} is a folder, not a program")
    if not os.access(path, os.X_OK):
        raise UsageError(f"--command: {program} is not executable")
    return path


def check_wasm(path: str, shown: str | None = None) -> int:
    """A WASI preview 1 core command module, or one line (not found, not Wasm, a component,
    imports outside WASI preview 1, no ``_start``); returns its size in bytes. The Wasm
    runtime's own checker (``edgelab.runtimes.wasm.wasi``, no wasmtime import) does the work."""
    from edgelab.runtimes.wasm.wasi import check_module

    return check_module(path).size_bytes


def check_image(image: str, client: Any = None) -> int | None:
    """The image's size in bytes if the engine has it locally; one line if it does not (it is
    never pulled: how to build or load it); None when no engine answers (the container rungs
    then say so themselves, and the other rungs still run)."""
    own = client is None
    if own:
        try:
            from edgelab.runtimes.container import connect

            client = connect(10.0)
            client.ping()
        except Exception:  # noqa: BLE001 - no engine: the container rungs say it, not this
            return None
    try:
        import docker

        try:
            return int(client.images.get(image).attrs.get("Size", 0))
        except docker.errors.ImageNotFound:
            raise UsageError(
                f"--image {image}: the engine has no such image, and edgelab never pulls"
                f" (build it with docker build -t {image} . or load it with docker load -i FILE.tar)"
            ) from None
        except docker.errors.APIError as exc:
            raise UsageError(f"--image {image}: {exc.explanation or exc}") from None
    finally:
        if own:
            client.close()


def check_function(function: Function, shown_wasm: str | None = None, client: Any = None) -> None:
    """Every artifact and grant a function names, or the first problem as one line."""
    if function.wasm:
        check_wasm(function.wasm, shown_wasm)
    if function.command:
        resolve_program(function.command[0])
    for host, guest in function.dirs:
        if not os.path.isdir(host):
            raise UsageError(f"--dir {host}::{guest}: {host} is not a directory")
    if function.image:
        check_image(function.image, client)


def display_name(function: Function) -> str:
    """The name a run of a function is shown under: the module's stem, else the image, else
    the program's base name."""
    if function.wasm:
        return Path(function.wasm).stem
    if function.image:
        return function.image
    assert function.command
    return os.path.basename(function.command[0])


def describe_grants(function: Function) -> str:
    """What the function is given beyond stdin and stdout, in one line (env: names only)."""
    dirs = ", ".join(f"{host}::{guest}" for host, guest in function.dirs) or "none"
    env = ", ".join(name for name, _ in function.env) or "none"
    return f"grants: dirs {dirs}; env {env} (deny by default: stdin, stdout, stderr only otherwise)"


# -- edgelab add ----------------------------------------------------------------------------------
def add_parser(sub: Any) -> None:
    add = sub.add_parser(
        "add",
        help="save your own function (--wasm, --image, --command) as a workload",
        description="Save your artifacts as a workload folder (NAME/workload.toml, the module\n"
        "copied beside it) in your workloads folder ($EDGELAB_WORKLOADS_DIR, else the data dir's\n"
        "workloads/), so edgelab run -w NAME and the lab list it beside the built-in ones.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add.add_argument("name", help="the workload's name (letters, digits, . _ -)")
    add.add_argument("--wasm", metavar="FILE", help="a WASI preview 1 core module (.wasm), copied into the folder")
    add.add_argument("--image", metavar="IMAGE", help="an image the engine has locally (never pulled)")
    add.add_argument("--command", dest="command_line", metavar="CMD", help='a command line, split as a shell would but run without one ("./app --flag")')
    add.add_argument("--dir", metavar="HOST::GUEST", action="append", default=[], help="grant the module a directory (as wasmtime --dir); repeatable")
    add.add_argument("--env", metavar="K=V", action="append", default=[], help="give the function an environment variable (as wasmtime --env); repeatable")
    add.add_argument("--request", help="its default request (text; default: empty)")
    add.add_argument("--description", help="one line saying what it does")


def check_name(name: str) -> None:
    """A name fit for a folder and a file name, not taken by a built-in or a saved workload."""
    if not name or len(name) > NAME_MAX or not set(name) <= NAME_CHARS or name[0] in ".-":
        raise UsageError(
            f"workload name {name!r}: use up to {NAME_MAX} letters, digits, '.', '_' or '-', not starting with '.' or '-'"
        )
    builtin = load_workloads(modules_dir(), include_hostile=True)
    if name in builtin:
        raise UsageError(f"workload name '{name}' is a built-in workload's: choose another")
    folder = user_workloads_dir() / name
    if folder.exists():
        raise UsageError(f"workload '{name}' exists already ({folder}): choose another name, or remove that folder")


def cmd_add(args: argparse.Namespace) -> int:
    check_name(args.name)
    function = function_from_args(args)
    if function is None:
        raise UsageError("edgelab add needs an artifact: --wasm FILE, --image IMAGE and/or --command CMD")
    request = (args.request or "").encode()
    if len(request) > DEFAULT_MAX_REQUEST_BYTES:
        raise UsageError(f"--request of {len(request)} bytes exceeds the limit of {DEFAULT_MAX_REQUEST_BYTES} bytes")
    description = args.description or f"your function ({', '.join(function.artifacts())})"
    folder = save_function(args.name, function, request.decode(), description)
    print(f"saved {args.name} in {folder} (edgelab run -w {args.name}; edgelab workloads lists it)")
    return 0


def save_function(name: str, function: Function, request: str, description: str, root: Path | None = None) -> Path:
    """Write ``NAME/`` (its manifest and a copy of the module) into ``root`` (default: the
    user's workloads folder): built inside a dot-named folder beside it (which no listing
    reads), read back as the lab will read it, then renamed into place, so a failure leaves
    nothing and a reader never sees half a workload. Returns the folder."""
    from edgelab.workloads import load_manifest

    root = user_workloads_dir() if root is None else root
    try:
        root.mkdir(parents=True, exist_ok=True)  # the lab's own folder, as the history's
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    except OSError as exc:
        raise EdgelabError(f"cannot write in the workloads folder {root}: {exc.strerror or exc}") from None
    final = root / name
    try:
        folder = staging / name
        folder.mkdir()
        module_name = None
        if function.wasm:
            module_name = Path(function.wasm).name
            if module_name == MANIFEST_NAME or module_name.startswith("."):
                module_name = "module.wasm"
            shutil.copyfile(function.wasm, folder / module_name)
        with open(folder / MANIFEST_NAME, "w", encoding="utf-8") as manifest:
            manifest.write(manifest_text(name, function, module_name, request, description))
            manifest.flush()
            os.fsync(manifest.fileno())
        load_manifest(folder / MANIFEST_NAME)  # what is renamed into place loads
        if final.exists():
            raise UsageError(f"workload '{name}' exists already ({final}): choose another name")
        os.rename(folder, final)
    except OSError as exc:
        raise EdgelabError(f"cannot save {name} in {root}: {exc.strerror or exc} (nothing was saved)") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _toml_string(text: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, but for DEL, which TOML wants escaped."""
    import json

    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(_toml_string(item) for item in items) + "]"


def manifest_text(name: str, function: Function, module_name: str | None, request: str, description: str) -> str:
    """The ``workload.toml`` of a saved function (``load_manifest`` reads it back)."""
    lines = [
        "# Saved by edgelab add: your own function, run as a command (request on stdin,",
        "# response on stdout, exit 0). Paths relative to this folder resolve against it.",
        f"name = {_toml_string(name)}",
        'kind = "function"',
        f"description = {_toml_string(description)}",
        f"default_request = {_toml_string(request)}",
        f"max_request_bytes = {DEFAULT_MAX_REQUEST_BYTES}",
        f"timeout_s = {DEFAULT_TIMEOUT_S}",
        f"memory_limit_mib = {DEFAULT_MEMORY_LIMIT_MIB}",
        "",
        "[function]",
    ]
    if module_name:
        lines.append(f"wasm = {_toml_string(module_name)}")
    if function.image:
        lines.append(f"image = {_toml_string(function.image)}")
    if function.command:
        lines.append(f"command = {_toml_list(list(function.command))}")
    lines.append(f"dirs = {_toml_list([f'{host}::{guest}' for host, guest in function.dirs])}")
    lines.append(f"env = {_toml_list([f'{k}={v}' for k, v in function.env])}")
    return "\n".join(lines) + "\n"


# -- sizes --------------------------------------------------------------------------------------
def artifact_sizes(workload: Workload, client: Any = None, why_not: str = "") -> dict[str, dict[str, Any]]:
    """Each artifact a function workload gives, as the catalog sees it (path or tag, size in
    bytes): what a run's metadata carries as ``artifacts`` and ``print_result`` shows."""
    from edgelab.catalog import artifact

    assert workload.function is not None
    return {
        kind: artifact(workload, kind, client=client, why_not=why_not).as_json()
        for kind in workload.function.artifacts()
    }
