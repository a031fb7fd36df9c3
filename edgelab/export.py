"""Exports of a run: JSON (everything), CSV (one row per sample), Markdown (the table) and
hyperfine's JSON schema, written the way Unix tools write files.

Where an export goes follows what the path names, as ``>`` in a shell would: a regular file is
replaced atomically (a temporary file beside it, then a rename) keeping its mode and owner, so a
failure leaves the old file or the new one and never half of one; a device, a FIFO or a socket
is written in place (``--json /dev/null`` never replaces /dev/null); a symlink is followed and
its target written (the link stays); a file with other hard links is rewritten in place, its
space reserved first, so every link sees the new content (so is a writable file in a folder
that takes no new file); ``/dev/stderr`` or ``/dev/fd/N`` is written to that inherited fd, as
a shell would. A file this user may not write is refused, not replaced. A new file gets
``0666 & ~umask``. No folder is ever created: a missing one is one line. ``-`` (or
``/dev/stdout``) is stdout.

Units are in the column names (CSV) or beside each figure (Markdown: the unit that suits it).
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import re
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgelab.errors import EdgelabError, UsageError
from edgelab.results import MemoryResult, RunResult
from edgelab.stats import (
    format_bytes,
    format_bytes_or_dash,
    format_duration_ns,
    format_ratio,
    plain_conclusion,
)

#: The path that means stdout.
STDOUT = "-"
#: Export formats by name, and the file extensions that choose them in ``--export FILE``.
FORMATS = ("json", "csv", "markdown", "hyperfine")
EXTENSIONS = {".json": "json", ".csv": "csv", ".md": "markdown", ".markdown": "markdown"}
#: Where the TUI puts its exports unless told otherwise (``EDGELAB_EXPORT_DIR`` overrides).
DEFAULT_EXPORT_DIR = "edgelab-exports"

CSV_FIELDS = (
    "runtime",
    "index",
    "warmup",
    "ok",
    "startup_us",
    "phases_us",
    "response_bytes",
    "error",
    "p50_vs_fastest",
    "t_s",  # when the launch began, seconds from the run's clock origin (steady: its start)
    "rate_asked_per_s",  # steady only: launches per second asked for, and reached, per runtime
    "rate_achieved_per_s",
    "exit_us",  # command workloads (your own function): launch to exit; empty for the built-in ones
)


# -- what the exports say ---------------------------------------------------------------------
def relative_p50(result: RunResult) -> dict[str, float | None]:
    """Each runtime's p50 startup as a multiple of the fastest runtime's (1.0 for the fastest;
    None for a runtime with no successful launch): the ratio every export carries."""
    fastest = result.fastest()
    best = result.runtimes[fastest].summary() if fastest else None
    ratios: dict[str, float | None] = {}
    for name, runtime in result.runtimes.items():
        summary = runtime.summary()
        ratios[name] = summary.p50_ns / best.p50_ns if summary and best and best.p50_ns > 0 else None
    return ratios


def _memory_figures(runtime: Any) -> tuple[float | None, float | None, float | None]:
    """(user-space bytes, host bytes, instances per GiB) per resident instance, or Nones."""
    m = runtime.memory
    if m is None:
        return None, None, None
    return m.pss_figure_bytes_per_instance, getattr(m, "host_bytes_per_instance", None), m.instances_per_gib


def solid_instances_per_gib(memory: MemoryResult | None) -> float | None:
    """Instances per GiB of *host* memory, only where the host figure stands clear of noise
    (a stable MemAvailable fall, or a container's cgroup reading): a sentence in plain words
    must not rank runtimes on a figure its own warnings call noise, nor on a PSS fallback.
    Front ends pass this, not ``instances_per_gib``, to ``plain_conclusion``."""
    if memory is None or memory.host_bytes_per_instance is None:
        return None
    if not (memory.mem_available_stable or (memory.cgroup_bytes_per_instance or 0) > 0):
        return None
    return memory.instances_per_gib


def conclusion(result: RunResult) -> str:
    """The run's figures in plain words (``edgelab.stats.plain_conclusion``), as the CLI
    prints them and the Markdown and JSON exports carry them."""
    startups = {name: (s.p50_ns if (s := r.summary()) else None) for name, r in result.runtimes.items()}
    density = {name: solid_instances_per_gib(r.memory) for name, r in result.runtimes.items()}
    return plain_conclusion(startups, density)


def is_command_run(result: RunResult) -> bool:
    """Whether the run measured a command workload (your own function: request on stdin,
    response on stdout, exit 0), whose startup runs to the first stdout byte: given by flags
    (settings ``function``), saved (the run's ``artifacts``, or the workload's convention when
    the lab records it) or, failing those, seen in its samples' exit times."""
    meta = result.metadata
    if (meta.get("settings") or {}).get("function") or meta.get("artifacts"):
        return True
    if (meta.get("workload") or {}).get("convention") == "command":
        return True
    return any(s.exit_ns is not None for r in result.runtimes.values() for s in r.samples)


def response_difference_lines(result: RunResult) -> list[str]:
    """One line per runtime whose answer differs from the first runtime's (the lab's
    ``response_differences``): where the first differing byte is, and both lengths."""
    lines = []
    for d in result.metadata.get("response_differences") or []:
        where = (
            f"first differing byte at offset {d['first_differing_byte']:,}"
            if d.get("first_differing_byte") is not None
            else "the first bytes agree, the rest differs"
        )
        lines.append(
            f"{d['runtime']} answered {d['bytes']:,} bytes, {d['against']} {d['against_bytes']:,} bytes: {where}"
        )
    return lines


def artifact_size_lines(result: RunResult) -> list[str]:
    """A function run's artifacts with their sizes (module bytes, binary, image), one each."""
    names = {"wasm": "module", "native": "binary", "image": "image"}
    lines = []
    for kind, found in (result.metadata.get("artifacts") or {}).items():
        where = found.get("path") or found.get("tag") or "?"
        size = found.get("size_bytes")
        shown = f"{format_bytes(size)} ({size:,} bytes)" if size is not None else found.get("note") or "size unknown"
        lines.append(f"{names.get(kind, kind)} {where}: {shown}")
    return lines


def runtime_artifact(name: Any) -> str | None:
    """The artifact kind a rung starts (the registry's), None for a name it does not know."""
    from edgelab.runtimes.registry import spec

    try:
        return spec(str(name)).artifact
    except Exception:  # noqa: BLE001 - a test's own runtime, or a rung since removed
        return None


def to_json(result: RunResult) -> str:
    data = result.to_json()
    ratios = relative_p50(result)
    artifacts = data.get("metadata", {}).get("artifacts") or {}
    for entry in data.get("results", []):
        ratio = ratios.get(entry.get("runtime"))
        entry["p50_vs_fastest"] = round(ratio, 4) if ratio is not None else None
        kind = runtime_artifact(entry.get("runtime"))
        if kind in artifacts:  # a function's run: the artifact this rung started, and its size
            entry["artifact"] = {"kind": kind, **artifacts[kind]}
    data.setdefault("metadata", {})["conclusion"] = conclusion(result)
    return json.dumps(data, indent=2) + "\n"


def to_csv(result: RunResult) -> str:
    ratios = relative_p50(result)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_FIELDS)
    for runtime in result.runtimes.values():
        ratio = ratios.get(runtime.runtime)
        origin = runtime.time_origin()
        for s in runtime.samples:
            phases = ";".join(f"{k}={v / 1000:.3f}" for k, v in s.phases_ns.items())
            writer.writerow(
                [
                    s.runtime,
                    s.index,
                    int(s.warmup),
                    int(s.ok),
                    f"{s.startup_ns / 1000:.3f}" if s.startup_ns is not None else "",
                    phases,
                    s.response_bytes,
                    s.error or "",
                    f"{ratio:.4f}" if ratio is not None else "",
                    f"{runtime.sample_time_s(s, origin):.6f}",
                    _rate(runtime.rate_asked_per_s),
                    _rate(runtime.rate_achieved_per_s),
                    f"{s.exit_ns / 1000:.3f}" if s.exit_ns is not None else "",
                ]
            )
    return buffer.getvalue()


def _rate(per_s: float | None) -> str:
    return "" if per_s is None else f"{per_s:.4f}"


def _duration(value_ns: float | None) -> str:
    return "–" if value_ns is None else format_duration_ns(value_ns)


def to_markdown(result: RunResult) -> str:
    meta = result.metadata
    settings = meta.get("settings", {})
    ratios = relative_p50(result)
    lines = [
        f"# edgelab: {meta.get('workload', {}).get('name', '?')}, {settings.get('scenario', '?')}",
        "",
        f"Host: {meta.get('host', {}).get('cpu_model', '?')}, "
        f"{meta.get('host', {}).get('cpu_cores_logical', '?')} cores. "
        + ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items()),
        "",
        "Startup = launch call to first byte of the first response; each figure in the unit that"
        " suits it. vs fastest = p50 / the fastest runtime's p50. Memory = per resident instance:"
        " user-space by the metric named, host = what the machine loses per instance."
        + (
            " A command (your own function): startup = launch to its first stdout byte;"
            " exit p50 = launch to its exit."
            if is_command_run(result)
            else ""
        ),
        "",
        "| runtime | n | ok | failed | p50 | p90 | p99 | min | max | stdev "
        "| vs fastest | user-space/instance | metric | host/instance | instances/GiB | error | exit p50 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|---:|",
    ]
    for runtime in result.runtimes.values():
        row = runtime.to_json()
        summary = runtime.summary()
        ratio = ratios.get(runtime.runtime)
        user_bytes, host_bytes, per_gib = _memory_figures(runtime)
        figures = (
            [summary.p50_ns, summary.p90_ns, summary.p99_ns, summary.min_ns, summary.max_ns, summary.stdev_ns]
            if summary
            else [None] * 6
        )
        cells = [
            runtime.runtime,
            str(row["count"]),
            str(row["ok"]),
            str(row["failed"]),
            *(_duration(v) for v in figures),
            format_ratio(ratio) if ratio is not None else "–",
            format_bytes_or_dash(user_bytes),
            (runtime.memory.metric if runtime.memory else None) or "–",
            format_bytes_or_dash(host_bytes),
            f"{per_gib:,.0f}" if per_gib else "–",
            (row["error"] or "").replace("|", "/"),
            _duration(exit_summary.p50_ns) if (exit_summary := runtime.exit_summary()) else "–",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    sizes = artifact_size_lines(result)
    if sizes:
        lines += ["", "Artifacts: " + "; ".join(sizes) + "."]
    differences = response_difference_lines(result)
    if differences:
        lines += ["", "The responses differ:", ""] + [f"- {line}" for line in differences]
    sentence = conclusion(result)
    if sentence:
        lines += ["", sentence]
    return "\n".join(lines) + "\n"


def _to_hyperfine(result: RunResult) -> str:
    from edgelab.hyperfine import to_hyperfine_json

    return to_hyperfine_json(result)


RENDERERS: dict[str, Callable[[RunResult], str]] = {
    "json": to_json,
    "csv": to_csv,
    "markdown": to_markdown,
    "hyperfine": _to_hyperfine,
}


# -- where they go ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ExportTarget:
    """One export asked for: its format and where it goes (``path`` None: stdout)."""

    fmt: str
    path: Path | None

    @property
    def to_stdout(self) -> bool:
        return self.path is None

    def __str__(self) -> str:
        return "stdout" if self.path is None else str(self.path)


def target(text: str, fmt: str | None = None, flag: str = "--export") -> ExportTarget:
    """An export named on the command line: ``--json F`` (fmt given) or ``--export F`` (the
    format from F's extension). ``-`` is stdout, which needs the format said outright
    (``--json -``): there is no extension to read it from."""
    if not text:
        raise UsageError(f"{flag} needs a file name (or - for stdout)")
    if fmt is None:
        if text == STDOUT:
            raise UsageError("--export - has no extension to choose a format from: use --json -, --csv - or --markdown -")
        fmt = EXTENSIONS.get(Path(text).suffix.lower())
        if fmt is None:
            known = ", ".join(EXTENSIONS)
            raise UsageError(f"--export {text}: cannot tell the format from its extension (use {known}, or --json/--csv/--markdown)")
    if fmt not in RENDERERS:
        raise UsageError(f"unknown export format '{fmt}' (choose from {', '.join(FORMATS)})")
    stdout = text == STDOUT or inherited_fd(Path(text)) == 1  # --json /dev/stdout is stdout too
    return ExportTarget(fmt, None if stdout else Path(text))


#: Names of file descriptors this process inherited: writing to them means writing to the fd
#: (as a shell's redirection does), not opening the file again at offset 0 or replacing it.
_FD_PATHS = re.compile(r"^/(?:dev/fd|proc/self/fd)/(\d+)$")


def inherited_fd(path: Path) -> int | None:
    """The fd ``path`` names (/dev/stdout, /dev/stderr, /dev/fd/N, /proc/self/fd/N), or None."""
    text = os.path.normpath(str(path))
    named = {"/dev/stdin": 0, "/dev/stdout": 1, "/dev/stderr": 2}.get(text)
    if named is not None:
        return named
    match = _FD_PATHS.match(text)
    return int(match.group(1)) if match else None


def check_targets(targets: Iterable[ExportTarget]) -> None:
    """Refuse, before anything runs, exports that could not all be written: two to one place
    (the same path, spelled differently, linked, or stdout twice), a folder, a missing folder,
    a place this user cannot write. Creates and leaves nothing."""
    seen: dict[Any, ExportTarget] = {}
    for t in targets:
        key = "stdout" if t.path is None else _identity(t.path)
        if key in seen:
            raise UsageError(f"two exports to {t} ({seen[key].fmt} and {t.fmt}): give each its own path")
        seen[key] = t
        if t.path is not None:
            try:
                check_writable(t.path)
            except UsageError:
                raise
            except EdgelabError as exc:  # before the run, a path that cannot be written is bad input
                raise UsageError(str(exc)) from None


def _identity(path: Path) -> Any:
    """What two spellings of one destination share: the file's (device, inode) if it exists,
    else its resolved path."""
    fd = inherited_fd(path)
    if fd is not None:
        return "stdout" if fd == 1 else ("fd", fd)
    try:
        st = os.stat(path)
        return (st.st_dev, st.st_ino)
    except OSError:
        return os.path.realpath(path)


def _cannot(path: Path, why: str) -> EdgelabError:
    return EdgelabError(f"cannot write {path}: {why}")


def _target(path: Path) -> tuple[Path, os.stat_result | None]:
    """What ``path`` names (through any link, /proc's magic ones too) and its stat, None if it
    does not exist yet; a folder or a file this user may not write is one line."""
    real = Path(os.path.realpath(path))
    try:
        st: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise _cannot(path, exc.strerror or str(exc)) from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise _cannot(path, "it is a folder")
    if st is not None and not os.access(path, os.W_OK):
        raise _cannot(path, "permission denied")  # as `>` would say: replacing it is no way round
    return real, st


def check_writable(path: Path) -> None:
    """Fail now, with one line, if ``write_text(path, ...)`` would fail for want of a folder or
    of permission (leaves nothing behind)."""
    fd = inherited_fd(path)
    if fd is not None:
        try:
            os.fstat(fd)
        except OSError as exc:
            raise _cannot(path, f"{exc.strerror} (fd {fd} is not open)") from None
        return
    real, st = _target(path)
    if st is not None and not stat.S_ISREG(st.st_mode):
        return  # written in place; opening a FIFO now would block until it has a reader
    parent = real.parent
    if not parent.is_dir():
        raise _cannot(path, f"folder {parent} does not exist (edgelab creates no folders: make it first)")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{real.name}.", dir=parent)
    except OSError as exc:
        if st is not None and exc.errno in _NO_NEW_FILE:
            return  # the folder takes no new file, the file itself is writable: in place
        raise _cannot(path, exc.strerror or str(exc)) from None
    os.close(fd)
    os.unlink(probe)


def current_umask() -> int:
    """The process's umask, read without changing it (os.umask would, for a moment, for every
    thread: the TUI writes exports from a worker)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` as the module docstring says; one-line EdgelabError if not."""
    data = text.encode("utf-8")
    fd = inherited_fd(path)
    if fd is not None:
        try:
            _write_all(fd, data)
        except OSError as exc:
            raise _cannot(path, exc.strerror or str(exc)) from None
        return
    real, st = _target(path)
    try:
        if st is not None and not stat.S_ISREG(st.st_mode):
            _write_in_place(Path(path), data, reserve=False)
        elif st is not None and st.st_nlink > 1:
            _write_in_place(Path(path), data, reserve=True)
        else:
            _replace_atomically(path, real, data, st)
    except OSError as exc:
        raise _cannot(path, exc.strerror or str(exc)) from None


def write_atomic(path: Path, text: str) -> None:
    """The old name of ``write_text`` (history.py and others call it): same rules."""
    write_text(path, text)


def _write_all(fd: int, data: bytes) -> None:
    """Every byte, however many calls the kernel wants (a pipe takes 64 KiB at a time)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _write_in_place(path: Path, data: bytes, reserve: bool) -> None:
    """Devices, FIFOs and hard-linked files: write what the path names, not a new file."""
    flags = os.O_WRONLY | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags if reserve else flags | os.O_TRUNC)
    try:
        if reserve and data:
            os.posix_fallocate(fd, 0, len(data))  # no space: fails here, the file untouched
        _write_all(fd, data)
        if reserve:
            os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


#: Why a folder may refuse a new (temporary) file while a file in it stays writable.
_NO_NEW_FILE = (errno.EACCES, errno.EPERM, errno.EROFS)


def _replace_atomically(path: Path, real: Path, data: bytes, st: os.stat_result | None) -> None:
    parent = real.parent
    if not parent.is_dir():
        raise _cannot(path, f"folder {parent} does not exist (edgelab creates no folders: make it first)")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{real.name}.", dir=parent)
    except OSError as exc:
        if st is not None and exc.errno in _NO_NEW_FILE:
            # A writable file in a folder we may not add to: write it in place, as `>` would
            # (space reserved first, so a full disk fails before the old content is touched).
            _write_in_place(Path(path), data, reserve=True)
            return
        raise
    try:
        try:
            if st is not None:
                os.fchmod(fd, stat.S_IMODE(st.st_mode))
                if (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
                    try:
                        os.fchown(fd, st.st_uid, st.st_gid)
                    except PermissionError:
                        pass  # not root: the file becomes ours, as any editor would leave it
            else:
                os.fchmod(fd, 0o666 & ~current_umask())
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, real)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_stdout(text: str) -> None:
    """An export to stdout, every byte; a closed pipe raises BrokenPipeError for the CLI to
    exit on. Written to the fd itself: ``sys.stdout.write`` of a few MiB into a pipe whose
    reader left returned quietly here (Python 3.11), so ``| head`` looked like success."""
    stream = sys.stdout
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (a test's capture): as it is
        stream.write(text)
        stream.flush()
        return
    stream.flush()
    _write_all(fd, text.encode("utf-8"))


def write_targets(result: RunResult, targets: Iterable[ExportTarget]) -> list[ExportTarget]:
    """Write every file export first, then those to stdout (a reader that closes the pipe
    early cannot cost a file). Returns the targets written, in that order."""
    ordered = sorted(targets, key=lambda t: t.to_stdout)
    for t in ordered:
        text = RENDERERS[t.fmt](result)
        if t.path is None:
            write_stdout(text)
        else:
            write_text(t.path, text)
    return ordered


def write_exports(
    result: RunResult,
    json_path: Path | None = None,
    csv_path: Path | None = None,
    markdown_path: Path | None = None,
) -> list[Path]:
    """Write whichever of the three file exports are asked for; returns the paths written."""
    targets = [
        ExportTarget(fmt, Path(path))
        for fmt, path in (("json", json_path), ("csv", csv_path), ("markdown", markdown_path))
        if path is not None
    ]
    check_targets(targets)
    write_targets(result, targets)
    return [t.path for t in targets if t.path is not None]


# -- the TUI's exports ---------------------------------------------------------------------------
def default_export_dir() -> Path:
    """The folder the lab's own exports go to: ``EDGELAB_EXPORT_DIR``, else
    ``./edgelab-exports`` (work products belong beside the work, as screenshots/ does, not
    in a hidden data dir; and not among the screenshots)."""
    configured = os.environ.get("EDGELAB_EXPORT_DIR")
    return Path(configured) if configured else Path(DEFAULT_EXPORT_DIR)


def export_stem(result: RunResult) -> str:
    """``edgelab-<workload>-<scenario>-<start time>``: names that sort by time, one per run."""
    settings = result.metadata.get("settings", {})
    stamp = str(result.metadata.get("started", "run"))[:19].replace(":", "-")
    workload = str(settings.get("workload", "run")).replace(os.sep, "_")  # an image: repo/name:tag
    return f"edgelab-{workload}-{settings.get('scenario', 'run')}-{stamp}"


def export_run(result: RunResult, folder: Path | None = None) -> list[Path]:
    """JSON, CSV and Markdown of ``result`` in ``folder`` (default: ``default_export_dir()``),
    creating that one folder if needed: it is the lab's own, named in its settings."""
    folder = default_export_dir() if folder is None else Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _cannot(folder, exc.strerror or str(exc)) from None
    stem = export_stem(result)
    return write_exports(
        result,
        json_path=folder / f"{stem}.json",
        csv_path=folder / f"{stem}.csv",
        markdown_path=folder / f"{stem}.md",
    )
