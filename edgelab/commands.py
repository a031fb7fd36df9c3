"""The headless subcommands behind ``edgelab run|invoke|build|workloads|doctor|clean``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from edgelab.errors import EdgelabError, RequestRejected, RuntimeUnavailable, UsageError
from edgelab.events import LabEvent, RuntimeStatus, SampleRecorded
from edgelab.lab import REJECTED_PREFIX, Lab, Scenario, Settings, parse_resident
from edgelab.results import MemoryResult, RunResult
from edgelab.runtimes import RUNTIME_NAMES, create_runtime, parse_runtimes
from edgelab.session import Session
from edgelab.stats import format_bytes, format_duration_ns, format_ratio
from edgelab.workloads import get_workload, load_workloads, require_workloads

err = Console(stderr=True)


# -- run ----------------------------------------------------------------------------------------
def settings_from_args(args: argparse.Namespace) -> Settings:
    runtimes = parse_runtimes(args.runtimes)
    resident = parse_resident(args.resident, runtimes)
    scenario: Scenario = args.scenario or "burst"
    if args.request_file is not None:
        try:
            request: bytes | None = args.request_file.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read --request-file {args.request_file}: {exc.strerror}") from None
    else:
        request = args.request.encode() if args.request is not None else None
    settings = Settings(
        workload=args.workload,
        runtimes=runtimes,
        scenario=scenario,
        count=args.count,
        warmup=args.warmup,
        resident=resident,
        rate_per_s=args.rate,
        duration_s=args.duration,
        request=request,
        timeout_s=args.timeout,
    )
    settings.validate()
    get_workload(settings.workload)
    return settings


def check_writable(paths: list[Path | None]) -> None:
    """Fail before a run, not after it, when an export cannot be written (nothing is left)."""
    for path in paths:
        if path is None:
            continue
        if path.is_dir():
            raise EdgelabError(f"cannot write {path}: it is a folder")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        except OSError as exc:
            raise EdgelabError(f"cannot write {path}: {exc.strerror or exc}") from None
        os.close(fd)
        os.unlink(probe)


def cmd_run(args: argparse.Namespace) -> int:
    from edgelab.export import write_exports

    settings = settings_from_args(args)
    check_writable([args.json, args.csv, args.markdown])
    lab = Lab()
    cancel = threading.Event()
    progress = _Progress(settings)
    try:
        with err.status("preparing runtimes…") as status:
            progress.status = status
            result = lab.run(settings, on_event=progress, cancel=cancel)
    except KeyboardInterrupt:
        cancel.set()
        raise
    finally:
        lab.close()
    print_result(result)
    write_exports(result, args.json, args.csv, args.markdown)
    rejected = [r.first_error() for r in result.runtimes.values() if (r.first_error() or "").startswith(REJECTED_PREFIX)]
    if rejected:
        raise RequestRejected(rejected[0] or "request rejected")
    unavailable = [f"{r.runtime}: {r.error}" for r in result.runtimes.values() if r.error and not r.ok]
    if unavailable and len(unavailable) == len(result.runtimes):
        raise EdgelabError(f"no runtime could run {settings.workload}; {unavailable[0]}")
    if all(r.ok == 0 for r in result.runtimes.values()):
        return 1
    return 0


class _Progress:
    """Turns lab events into a one-line status on stderr."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.status: Any = None
        self.done = 0

    def __call__(self, event: LabEvent) -> None:
        if isinstance(event, SampleRecorded):
            self.done += 1
            if self.status is not None and self.done % 10 == 0:
                self.status.update(f"{self.done} launches…")
        elif isinstance(event, RuntimeStatus) and event.state == "unavailable":
            err.print(f"[yellow]{event.runtime} unavailable:[/] {event.reason}" + (f" (fix: {event.fix})" if event.fix else ""), highlight=False, soft_wrap=True)
        elif isinstance(event, RuntimeStatus) and self.status is not None:
            self.status.update(f"{event.runtime}: {event.state}…")


def print_result(result: RunResult, console: Console | None = None) -> None:
    from rich import box

    console = console or Console()
    meta = result.metadata
    fastest = result.fastest()
    fastest_p50 = result.runtimes[fastest].summary().p50_ns if fastest else None  # type: ignore[union-attr]
    table = Table(
        title=f"{meta['workload']['name']}: cold start = launch call → first response byte",
        caption=f"{meta['host']['cpu_model']}, {meta['host']['cpu_cores_logical']} cores · "
        + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 0, 0, 1),
    )
    # p90 and mean are in the exports; the terminal keeps what fits in 80 columns.
    for column in ("runtime", "ok/n", "p50", "p99", "min", "max", "stdev", "×p50"):
        table.add_column(column, justify="left" if column == "runtime" else "right", no_wrap=True)
    for runtime in result.runtimes.values():
        summary = runtime.summary()
        row = [runtime.runtime, f"{runtime.ok}/{len(runtime.measured)}"]
        if summary:
            row += [format_duration_ns(v) for v in (summary.p50_ns, summary.p99_ns, summary.min_ns, summary.max_ns, summary.stdev_ns)]
            row.append(format_ratio(summary.p50_ns / fastest_p50) if fastest_p50 else "–")
        else:
            row += ["–"] * 6
        table.add_row(*row)
    console.print(table)
    if any(r.memory for r in result.runtimes.values()):
        memory_table = Table(
            title="memory per resident instance (growth / instances)", box=box.SIMPLE_HEAD, pad_edge=False
        )
        for column in ("runtime", "held", "per instance", "metric", "per GiB"):
            memory_table.add_column(column, justify="left" if column in ("runtime", "metric") else "right")
        for runtime in result.runtimes.values():
            m = runtime.memory
            if m is None:
                continue
            memory_table.add_row(
                runtime.runtime,
                f"{m.instances:,}",
                format_bytes(m.pss_bytes_per_instance),
                m.metric,
                f"{m.instances_per_gib:,.0f}" if m.instances_per_gib else "–",
            )
        console.print(memory_table)
    for runtime in result.runtimes.values():
        if runtime.error:
            console.print(f"[red]{runtime.runtime}:[/] {runtime.error}" + (f" — fix: {runtime.fix}" if runtime.fix else ""), highlight=False)
            continue
        if runtime.first_error():
            console.print(f"[red]{runtime.runtime}:[/] {runtime.failed} failed; first: {runtime.first_error()}", highlight=False)
        console.print(f"[dim]{runtime.runtime} startup includes: {runtime.startup_includes}[/]", highlight=False)
        prepared = meta.get("preparation", {}).get(runtime.runtime)
        if prepared:
            costs = ", ".join(f"{k} {v}" for k, v in prepared.items())
            console.print(f"[dim]  prepared once, in no startup: {costs}[/]", highlight=False)
        phases = runtime.phase_summaries()
        if phases:
            console.print(
                "[dim]  phases p50: " + " / ".join(f"{k} {format_duration_ns(v.p50_ns)}" for k, v in phases.items()) + "[/]",
                highlight=False,
            )
        if runtime.memory:
            m = runtime.memory
            console.print(f"[dim]  memory cross-check: {memory_cross_check(m)}[/]", highlight=False)
        for warning in runtime.warnings():
            console.print(f"[yellow]  warning ({runtime.runtime}):[/] {warning}", highlight=False)
    if meta.get("responses_identical") is False:
        console.print("[red]the runtimes' responses differ: the workload is not deterministic across runtimes[/]")


#: Below this total, a MemAvailable change is lost in other processes' noise.
CROSS_CHECK_FLOOR_BYTES = 16 << 20


def memory_cross_check(m: MemoryResult) -> str:
    """The MemAvailable cross-check in words, saying when it is too small to read."""
    total = m.mem_available_total_bytes
    if total is None:
        return "MemAvailable not measured"
    text = (
        f"MemAvailable fell {format_bytes(total)} while {m.instances:,} were launched"
        f" ({format_bytes(total / m.instances)} each)"
    )
    if abs(total) < CROSS_CHECK_FLOOR_BYTES:
        text += f"; under {format_bytes(CROSS_CHECK_FLOOR_BYTES)} in all, that is within noise"
    return text


# -- invoke ---------------------------------------------------------------------------------------
def cmd_invoke(args: argparse.Namespace) -> int:
    workload = get_workload(args.workload)
    request = sys.stdin.buffer.read()
    if len(request) > workload.max_request_bytes:
        raise UsageError(f"request of {len(request)} bytes exceeds {workload.name}'s limit of {workload.max_request_bytes} bytes")
    runtime = create_runtime(args.runtime, Session())
    try:
        runtime.check()
        runtime.prepare(workload)
        launch = runtime.launch(workload, request, args.timeout or workload.timeout_s)
        launch.instance.stop()
    finally:
        runtime.close()
    if not launch.response.ok:
        raise RequestRejected(f"{workload.name} ({args.runtime}) rejected the request: {launch.response.reason()}")
    sys.stdout.buffer.write(launch.response.body)
    sys.stdout.buffer.flush()
    return 0


# -- build / workloads -------------------------------------------------------------------------
def _selected(names: list[str]) -> list:
    workloads = load_workloads()
    for name in names:
        get_workload(name)
    return [w for n, w in workloads.items() if not names or n in names]


def _usable_engine() -> tuple[Any, RuntimeUnavailable | None]:
    """A checked container runtime (for its docker client), or why there is none."""
    from edgelab.runtimes.container import ContainerRuntime

    runtime = ContainerRuntime(Session())
    try:
        runtime.check()
    except RuntimeUnavailable as exc:
        return None, exc
    return runtime, None


def cmd_build(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from edgelab.build import ensure_native, ensure_wasm, ensure_wasm_hotpath, host_arch

    selected = _selected(args.workloads)
    images = None
    if not args.no_image:
        images, missing = _usable_engine()
        if missing is not None:
            err.print(f"[yellow]skipping images:[/] {missing.reason}" + (f" (fix: {missing.fix})" if missing.fix else ""), highlight=False)
    steps = 1 + len(selected) * (3 if images else 2)
    failures = 0
    with Progress(console=err, transient=False) as progress:
        task = progress.add_task("building", total=steps)
        progress.update(task, description="wasm host: hot path")
        try:
            ensure_wasm_hotpath()
        except (EdgelabError, ImportError) as exc:
            failures += 1
            err.print(f"[red]wasm host hot path:[/] {exc} (Wasm launches fall back to ctypes)", highlight=False)
        progress.advance(task)
        for workload in selected:
            jobs: list[tuple[str, Callable[[], object]]] = [
                ("wasm", partial(ensure_wasm, workload)),
                ("native", partial(ensure_native, workload, host_arch())),
            ]
            if images is not None:
                jobs.append(("image", partial(images.prepare, workload)))
            for kind, job in jobs:
                progress.update(task, description=f"{workload.name}: {kind}")
                try:
                    job()
                except EdgelabError as exc:
                    failures += 1
                    err.print(f"[red]{workload.name} {kind}:[/] {exc}", highlight=False)
                progress.advance(task)
        progress.update(task, description="done")
    return 1 if failures else 0


def workload_listing(include_images: bool = True) -> list[dict[str, Any]]:
    from edgelab.build import ensure_native, ensure_wasm, host_arch

    image_info = None
    image_error = None
    if include_images:
        image_info, missing = _usable_engine()
        if missing is not None:
            image_error = missing.reason
    listing = []
    for workload in load_workloads().values():
        wasm = ensure_wasm(workload)
        native = ensure_native(workload, host_arch())
        entry: dict[str, Any] = {
            "name": workload.name,
            "description": workload.description,
            "default_request_bytes": len(workload.default_request),
            "max_request_bytes": workload.max_request_bytes,
            "wasm": {"path": str(wasm), "size_bytes": wasm.stat().st_size},
            "native": {"path": str(native), "size_bytes": native.stat().st_size},
            "image": None,
        }
        if image_info is not None:
            from edgelab.runtimes.container import ensure_image, image_size_bytes

            tag = ensure_image(image_info.client, workload)
            entry["image"] = {"tag": tag, "size_bytes": image_size_bytes(image_info.client, tag)}
        elif image_error:
            entry["image_error"] = image_error
        listing.append(entry)
    return listing


def cmd_workloads(args: argparse.Namespace) -> int:
    require_workloads()  # none found is an error (a broken install), not an empty table
    listing = workload_listing()
    if args.json:
        print(json.dumps(listing, indent=2))
        return 0
    table = Table(title="workloads (sizes of the artifacts each runtime starts)")
    for column in ("name", "description", "wasm", "native", "image"):
        table.add_column(column, justify="right" if column in ("wasm", "native", "image") else "left")
    for entry in listing:
        image = entry["image"]
        table.add_row(
            entry["name"],
            entry["description"],
            format_bytes(entry["wasm"]["size_bytes"]),
            format_bytes(entry["native"]["size_bytes"]),
            format_bytes(image["size_bytes"]) if image else "–",
        )
    Console().print(table)
    return 0


# -- probe ------------------------------------------------------------------------------------------
def cmd_probe(args: argparse.Namespace) -> int:
    from edgelab.capabilities import CAPABILITIES, probe_report

    report = probe_report(parse_runtimes(args.runtimes))
    if args.json:
        print(json.dumps(
            {rt: {cap: {"verdict": v, "detail": d} for cap, (v, d) in caps.items()} for rt, caps in report.items()},
            indent=2,
        ))
    else:
        table = Table(title="what the probe workload could do from inside each runtime")
        table.add_column("capability")
        for runtime in report:
            table.add_column(runtime)
        colour = {"allowed": "yellow", "denied": "green"}
        for cap in CAPABILITIES:
            cells = []
            for caps in report.values():
                verdict, detail = caps[cap]
                cells.append(f"[{colour.get(verdict, 'red')}]{verdict}[/] [dim]{detail}[/]")
            table.add_row(cap, *cells)
        Console().print(table)
    errors = [f"{rt}: {caps[CAPABILITIES[0]][1]}" for rt, caps in report.items() if caps[CAPABILITIES[0]][0] == "error"]
    if errors and len(errors) == len(report):
        raise EdgelabError(f"the probe could not run in any runtime; {errors[0]}")
    return 0


# -- doctor / clean ------------------------------------------------------------------------------
def diagnose() -> list[tuple[str, bool, str, str, dict[str, str]]]:
    """Per runtime: (name, usable, reason, fix, versions)."""
    rows = []
    session = Session()
    for name in RUNTIME_NAMES:
        try:
            runtime = create_runtime(name, session)
            runtime.check()
            rows.append((name, True, "", "", runtime.versions() | runtime.doctor_details()))
            runtime.close()
        except RuntimeUnavailable as exc:
            rows.append((name, False, exc.reason, exc.fix, {}))
        except Exception as exc:  # noqa: BLE001 - doctor reports, never crashes
            rows.append((name, False, f"{type(exc).__name__}: {exc}", "report this as a bug", {}))
    return rows


def cmd_doctor(args: argparse.Namespace) -> int:
    table = Table(title="edgelab doctor")
    for column in ("runtime", "usable", "details", "fix"):
        table.add_column(column)
    rows = diagnose()
    for name, usable, reason, fix, versions in rows:
        details = ", ".join(f"{k} {v}" for k, v in versions.items()) if usable else reason
        table.add_row(name, "[green]yes[/]" if usable else "[red]no[/]", details, fix)
    Console().print(table)
    return 0 if all(row[1] for row in rows) else 1


def cmd_clean(args: argparse.Namespace) -> int:
    from edgelab.runtimes.container import remove_labelled

    runtime, missing = _usable_engine()
    if missing is not None:
        print(f"containers: skipped ({missing.reason})")
    else:
        removed = remove_labelled(runtime.client)
        print(f"removed {removed} container(s) labelled edgelab.session")
    if args.cache:
        import shutil

        from edgelab.build import cache_dir

        shutil.rmtree(cache_dir() / "artifacts", ignore_errors=True)
        shutil.rmtree(cache_dir() / "wasm", ignore_errors=True)
        shutil.rmtree(cache_dir() / "host", ignore_errors=True)
        print(f"removed built artifacts under {cache_dir()}")
    return 0
