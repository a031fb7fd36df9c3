"""The runs ``edgelab run`` and the lab saved, and the references ``compare`` accepts for them.

Every run's JSON export goes to ``data_dir()/runs/`` under a name that starts with the run's
start time (UTC), so the names sort by time and the newest is simply the last name: no index
file to keep in step, and a half-written file can never appear (``write_atomic``). ``last`` is
the newest run, ``last~N`` the one N runs before it, as in git. Each save keeps the newest
``$EDGELAB_HISTORY_KEEP`` runs (1,000 by default) and deletes the older ones, files with a run's
name only: anything else in the folder is never touched.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Collection
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgelab.errors import EdgelabError, UsageError
from edgelab.results import RunResult
from edgelab.settings import HISTORY_KEEP_ENV, history_keep

DATA_DIR_ENV = "EDGELAB_DATA_DIR"
#: ``20261201T211538.099443Z-da1bd698dd69.json``: start time (UTC, microseconds), session id.
_RUN_NAME = re.compile(r"^\d{8}T\d{6}\.\d{6}Z-[A-Za-z0-9_-]+\.json$")
_REF = re.compile(r"last(?:~(\d+))?")


def data_dir() -> Path:
    """Where edgelab keeps what outlives a run (the platform's user data directory)."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("edgelab"))


def runs_dir() -> Path:
    return data_dir() / "runs"


def _run_file_name(metadata: dict[str, Any]) -> str:
    try:
        started = datetime.fromisoformat(str(metadata["started"])).astimezone(timezone.utc)
    except (KeyError, ValueError):
        started = datetime.now(timezone.utc)
    session = re.sub(r"[^A-Za-z0-9_-]", "", str(metadata.get("session") or "")) or "run"
    return f"{started:%Y%m%dT%H%M%S}.{started.microsecond:06d}Z-{session}.json"


def save_run(result: RunResult) -> Path:
    """Write the run's JSON export into the history, then prune it to the newest
    ``$EDGELAB_HISTORY_KEEP`` runs, and return the export's path.

    The name comes from the run's start time and session; a second run with the same start
    (same microsecond, same session) gets a suffix rather than replacing the first.
    """
    from edgelab.export import to_json, write_atomic

    keep = history_keep()  # first: a bad value writes nothing and deletes nothing
    folder = runs_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgelabError(
            f"cannot save the run in {folder}: {exc.strerror or exc} (set {DATA_DIR_ENV} to a"
            " writable folder)"
        ) from None
    name = _run_file_name(result.metadata)
    path = folder / name
    suffix = 2
    while path.exists():
        path = folder / name.replace(".json", f"-{suffix}.json")
        suffix += 1
    write_atomic(path, to_json(result))
    prune_runs(keep, spare=path)
    return path


def prune_runs(keep: int, spare: Path | None = None) -> list[Path]:
    """Delete the saved runs older than the newest ``keep`` and return those deleted.

    Only names ``list_runs`` counts as runs are candidates (never another file, never a folder);
    ``spare``, the run just saved, is never deleted even if its start makes it older than
    ``keep`` others (a long ramp ended after shorter runs). Best effort: the run is saved
    whatever happens here, a file already gone (another lab pruned it) or that cannot be
    deleted is left, and the next save tries again."""
    try:
        older = list_runs()[keep:]
    except EdgelabError:
        return []
    deleted = []
    for path in older:
        if path == spare:
            continue
        try:
            path.unlink()
        except OSError:  # gone already, a folder by a run's name, a file we may not delete
            continue
        deleted.append(path)
    return deleted


def list_runs() -> list[Path]:
    """The saved runs, newest first (an empty list when none was ever saved)."""
    folder = runs_dir()
    try:
        names = [entry.name for entry in folder.iterdir()]
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise EdgelabError(f"cannot read the run history in {folder}: {exc.strerror or exc}") from None
    return [folder / name for name in sorted((n for n in names if _RUN_NAME.match(n)), reverse=True)]


def _runs_held(count: int) -> str:
    return f"history holds {count} run{'' if count == 1 else 's'}"


def resolve(ref: str) -> Path:
    """An export's path from what a person typed: a path, ``last``, ``last~N``, or the name
    of a file in the history (as ``edgelab history`` lists it)."""
    match = _REF.fullmatch(ref)
    if match:
        back = int(match.group(1) or 0)
        runs = list_runs()
        if back >= len(runs):
            hint = " (edgelab run saves every run)" if not runs else ""
            raise UsageError(f"no run {ref}: {_runs_held(len(runs))}{hint}")
        return runs[back]
    path = Path(ref).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        raise UsageError(f"{ref} is a folder, not a run's JSON export")
    if "/" not in ref:
        saved = runs_dir() / ref
        if saved.is_file():
            return saved
    raise UsageError(f"no such file: {ref} (give an export's path, last or last~N; see edgelab history)")


def load_export(path: Path, ref: str | None = None) -> dict[str, Any]:
    """The parsed JSON export at ``path``, or a one-line error saying why it is not one."""
    shown = ref or str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"no such file: {shown}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{shown} is not an edgelab export: not text") from None
    except OSError as exc:
        raise EdgelabError(f"cannot read {shown}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise UsageError(f"{shown} is not an edgelab export: not JSON") from None
    problem = _export_problem(data)
    if problem:
        raise UsageError(f"{shown} is not an edgelab export: {problem}")
    return data  # type: ignore[no-any-return]


def _export_problem(data: Any) -> str | None:
    """Why ``data`` is not what ``edgelab run --json`` writes, or None if it is."""
    if not isinstance(data, dict):
        return "its JSON is not an object"
    results = data.get("results")
    if "metadata" not in data and isinstance(results, list) and results and isinstance(results[0], dict) \
            and "times" in results[0] and "command" in results[0]:
        return "it is a hyperfine export (compare reads the exports of edgelab run --json)"
    metadata = data.get("metadata")
    if not isinstance(metadata, dict) or not isinstance(results, list):
        return "no metadata and results"
    if not isinstance(metadata.get("settings"), dict) or not isinstance(metadata.get("workload"), dict):
        return "its metadata names no settings or workload"
    for entry in results:
        if not isinstance(entry, dict) or not isinstance(entry.get("runtime"), str):
            return "a result names no runtime"
        samples = entry.get("samples_us", [])
        if not isinstance(samples, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in samples
        ):
            return f"{entry['runtime']}'s samples_us is not a list of numbers"
        startup = entry.get("startup_us")
        if startup is not None and not (isinstance(startup, dict) and isinstance(startup.get("p50"), (int, float))):
            return f"{entry['runtime']}'s startup_us has no p50"
    return None


# -- edgelab history ----------------------------------------------------------------------------
def text_table(rows: list[list[str]], right: Collection[int] = ()) -> list[str]:
    """Rows as aligned lines (two spaces between columns), for output that pipes and greps
    well; ``right``: the columns to right-align (figures)."""
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(max(map(len, rows)))]
    lines = []
    for row in rows:
        cells = [cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
    return lines


def local_time(iso: Any) -> str:
    try:
        return datetime.fromisoformat(str(iso)).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return "?"


def shown_path(path: Path) -> str:
    home = str(Path.home())
    text = str(path)
    return "~" + text[len(home):] if home not in ("", "/") and text.startswith(home + os.sep) else text


def describe_run(path: Path, ref: str) -> dict[str, Any]:
    """One line of history as data: when, what, and each runtime's p50 (None if it had none)."""
    try:
        data = load_export(path, ref)
    except EdgelabError as exc:
        return {"ref": ref, "path": str(path), "error": str(exc)}
    meta = data["metadata"]
    runtimes = {
        entry["runtime"]: {
            "n": entry.get("count"),
            "p50_us": (entry.get("startup_us") or {}).get("p50"),
            "error": entry.get("error"),
        }
        for entry in data["results"]
    }
    return {
        "ref": ref,
        "path": str(path),
        "started": meta.get("started"),
        "workload": meta["workload"].get("name"),
        "scenario": meta["settings"].get("scenario"),
        "runtimes": runtimes,
        "cancelled": bool(meta.get("cancelled")),
        "fake": bool(meta.get("fake")),
        "error": None,
    }


def _p50_text(figures: dict[str, Any]) -> str:
    from edgelab.stats import format_duration_ns

    p50 = figures.get("p50_us")
    return format_duration_ns(p50 * 1_000) if isinstance(p50, (int, float)) else "failed"


def cmd_history(args: argparse.Namespace) -> int:
    runs = list_runs()
    limit = args.limit or len(runs)
    described = [describe_run(path, "last" if i == 0 else f"last~{i}") for i, path in enumerate(runs[:limit])]
    if args.json:
        print(json.dumps(described, indent=2))
        return 0
    if not runs:
        print(f"no runs saved yet in {shown_path(runs_dir())} (edgelab run and the lab save every run there)")
        return 0
    rows = []
    for run in described:
        if run["error"]:
            rows.append([run["ref"], "?", "?", "?", run["error"], shown_path(Path(run["path"]))])
            continue
        notes = [word for word, flag in (("cancelled", run["cancelled"]), ("fake", run["fake"])) if flag]
        figures = " · ".join(f"{name} {_p50_text(f)}" for name, f in run["runtimes"].items())
        rows.append([
            run["ref"],
            local_time(run["started"]),
            str(run["workload"]),
            str(run["scenario"]) + (f" ({', '.join(notes)})" if notes else ""),
            f"p50: {figures}" if figures else "no runtime",
            shown_path(Path(run["path"])),
        ])
    for line in text_table(rows):
        print(line)
    if limit < len(runs):
        print(f"({len(runs) - limit} older runs not shown; --limit 0 shows all)")
    print(f"(the history keeps the newest {history_keep():,} runs; {HISTORY_KEEP_ENV} sets how many)")
    return 0
