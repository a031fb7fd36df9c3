"""Exports of a run: JSON (everything), CSV (one row per sample) and Markdown (the table).

Every file is written atomically: to a temporary file beside it, then renamed, so a failure
leaves nothing half-written. Units are in the column names.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path

from edgelab.errors import EdgelabError
from edgelab.results import RunResult

CSV_FIELDS = (
    "runtime",
    "index",
    "warmup",
    "ok",
    "startup_us",
    "phases_us",
    "response_bytes",
    "error",
)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never half."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise EdgelabError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise EdgelabError(f"cannot write {path}: {exc.strerror or exc}") from None


def to_json(result: RunResult) -> str:
    return json.dumps(result.to_json(), indent=2) + "\n"


def to_csv(result: RunResult) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_FIELDS)
    for runtime in result.runtimes.values():
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
                ]
            )
    return buffer.getvalue()


def _cell(value: float | None, unit: str = "") -> str:
    if value is None:
        return "–"
    return f"{value:,.1f}{unit}"


def to_markdown(result: RunResult) -> str:
    meta = result.metadata
    settings = meta.get("settings", {})
    fastest = result.fastest()
    fastest_p50 = result.runtimes[fastest].summary().p50_ns if fastest else None  # type: ignore[union-attr]
    lines = [
        f"# edgelab: {meta.get('workload', {}).get('name', '?')}, {settings.get('scenario', '?')}",
        "",
        f"Host: {meta.get('host', {}).get('cpu_model', '?')}, "
        f"{meta.get('host', {}).get('cpu_cores_logical', '?')} cores. "
        + ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items()),
        "",
        "Startup = launch call to first byte of the first response, in µs. "
        "Memory = host memory per resident instance, in KiB, by the metric named.",
        "",
        "| runtime | n | ok | failed | p50 µs | p90 µs | p99 µs | min µs | max µs | stdev µs "
        "| vs fastest | KiB/instance | metric | instances/GiB | error |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for runtime in result.runtimes.values():
        row = runtime.to_json()
        startup = row["startup_us"] or {}
        summary = runtime.summary()
        ratio = f"{summary.p50_ns / fastest_p50:,.1f}x" if summary and fastest_p50 else "–"
        lines.append(
            "| "
            + " | ".join(
                [
                    runtime.runtime,
                    str(row["count"]),
                    str(row["ok"]),
                    str(row["failed"]),
                    _cell(startup.get("p50")),
                    _cell(startup.get("p90")),
                    _cell(startup.get("p99")),
                    _cell(startup.get("min")),
                    _cell(startup.get("max")),
                    _cell(startup.get("stdev")),
                    ratio,
                    _cell(row["memory_kib_per_instance"]),
                    row["memory_metric"] or "–",
                    f"{row['instances_per_gib']:,}" if row["instances_per_gib"] else "–",
                    (row["error"] or "").replace("|", "/"),
                ]
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


def write_exports(
    result: RunResult,
    json_path: Path | None = None,
    csv_path: Path | None = None,
    markdown_path: Path | None = None,
) -> list[Path]:
    """Write whichever exports are asked for; returns the paths written."""
    written: list[Path] = []
    for path, render in ((json_path, to_json), (csv_path, to_csv), (markdown_path, to_markdown)):
        if path is not None:
            write_atomic(Path(path), render(result))
            written.append(Path(path))
    return written
