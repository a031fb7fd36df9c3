"""The headless subcommands behind ``edgelab run|build|workloads|doctor|clean`` (``invoke``
is in ``edgelab.invoke``)."""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from edgelab.errors import EdgelabError, RequestRejected, RuntimeUnavailable, UsageError
from edgelab.events import LabEvent, RuntimeStatus, SampleRecorded
from edgelab.lab import (
    REJECTED_PREFIX,
    Lab,
    Scenario,
    Settings,
    parse_resident,
    resolve_runtime_name,
    unselected_in_resident,
)
from edgelab.results import MemoryResult, RunResult
from edgelab.runtimes import create_runtime, parse_runtimes, registry
from edgelab.session import Session
from edgelab.settings import read_request
from edgelab.stats import format_bytes, format_bytes_or_dash, format_duration_ns, format_ratio
from edgelab.workloads import (
    Function,
    Workload,
    function_workload,
    get_workload,
    load_workloads,
    require_workloads,
    resolve_workload,
)

if TYPE_CHECKING:
    from edgelab.export import ExportTarget



class _Console(Console):
    """A rich Console whose closed pipe is a BrokenPipeError, as for any other write: rich's own
    answer (exit 1 on the spot) would skip what the CLI does for it (exit 141, quietly)."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


err = _Console(stderr=True)


# -- run ----------------------------------------------------------------------------------------
def _runtimes_given(args: argparse.Namespace) -> bool:
    """Whether ``-r`` was on the command line: argparse hands back its default object itself
    when it was not (the same ``str``), so identity tells a typed ``-r`` from the default even
    when both read alike."""
    from edgelab import cli

    return args.runtimes is not cli._DEFAULT_RUNTIMES


def _workload_given(args: argparse.Namespace) -> bool:
    """Whether ``-w`` was on the command line (its default is None: ``hello`` is filled in
    only when neither ``-w`` nor a function flag names what to run)."""
    return args.workload is not None


def run_workload(args: argparse.Namespace) -> tuple[Workload, Function | None]:
    """The workload ``edgelab run`` measures: your own function from ``--wasm/--image/
    --command`` (checked: one line for a file that is not Wasm, a missing image, a command not
    found), else ``-w``'s, built-in or saved. Both at once is one line."""
    from edgelab.functions import display_name, function_from_args, given

    if given(args) and _workload_given(args):
        raise UsageError(
            f"-w {args.workload} and --wasm/--image/--command both name what to run: give one"
            " (a saved function: edgelab run -w NAME)"
        )
    function = function_from_args(args)
    if function is not None:
        return function_workload(display_name(function), function), function
    name = "hello" if args.workload is None else args.workload
    if name.strip().isdigit():
        raise UsageError(
            f"unknown workload '{name}': -w is --workload here (hyperfine's warmup is"
            f" --warmup {name})"
        )
    return get_workload(name), None


def run_runtimes(args: argparse.Namespace, workload: Workload) -> tuple[str, ...]:
    """``-r``'s rungs, every one of which must run ``workload`` (else one line naming why);
    without ``-r``, a function runs on every rung that applies to it, a built-in workload on
    the default ones."""
    if not _runtimes_given(args) and workload.function is not None:
        return registry.applicable_names(workload)
    runtimes = runtimes_from_text(args.runtimes)
    for name in runtimes:
        why = registry.not_applicable(registry.spec(name), workload)
        if why is not None:
            raise UsageError(f"-r {name} does not apply to {workload.name}: {why}")
    return runtimes


def settings_from_args(args: argparse.Namespace) -> Settings:
    workload, function = run_workload(args)
    runtimes = run_runtimes(args, workload)
    resident = parse_resident(args.resident, runtimes)
    ignored = unselected_in_resident(args.resident, runtimes)
    if ignored:
        err.print(f"[yellow]--resident:[/] {', '.join(ignored)} not among --runtimes, left out", highlight=False)
    scenario: Scenario = args.scenario or "burst"
    if args.request_file is not None:
        limit = workload  # its max_request_bytes bounds the read
        try:
            with open(args.request_file, "rb") as source:
                request: bytes | None = read_request(
                    source, limit.max_request_bytes, limit.name, f"--request-file {args.request_file}"
                )
        except OSError as exc:
            raise UsageError(f"cannot read --request-file {args.request_file}: {exc.strerror}") from None
    else:
        request = args.request.encode() if args.request is not None else None
    settings = Settings(
        workload=workload.name,
        runtimes=runtimes,
        scenario=scenario,
        count=args.count,
        warmup=args.warmup,
        resident=resident,
        rate_per_s=args.rate,
        duration_s=args.duration,
        request=request,
        timeout_s=args.timeout,
        interleave=args.interleave,
        pattern=args.pattern,
        keepalive_s=args.keepalive,
        prewarm=args.prewarm,
        trace_file=args.trace,
        seed=args.seed,
        function=function,
    )
    settings.validate()
    return settings


def runtimes_from_text(text: str) -> tuple[str, ...]:
    """``--runtimes``: full names or the prefixes ``--resident`` takes (c,s,w), in any case."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    for part in parts:
        if part.isdigit():
            raise UsageError(
                f"unknown runtime '{part}': -r is --runtimes here (hyperfine's runs is --runs {part})"
            )
    names = [resolve_runtime_name(part, "--runtimes") for part in parts]
    return parse_runtimes(",".join(names)) if names else parse_runtimes(text)


def export_targets(args: argparse.Namespace) -> list[ExportTarget]:
    """Every export the command line asks for, checked before anything runs: one line and
    nothing run or written when one could not be written or two share a destination."""
    from edgelab.export import check_targets, target

    targets = [
        target(text, fmt, flag)
        for fmt, flag, text in (
            ("json", "--json", args.json),
            ("csv", "--csv", args.csv),
            ("markdown", "--markdown", args.markdown),
            ("hyperfine", "--export-hyperfine", args.export_hyperfine),
        )
        if text is not None
    ]
    targets += [target(text) for text in args.export]
    check_targets(targets)
    return targets


def cmd_run(args: argparse.Namespace) -> int:
    from edgelab.export import write_targets

    settings = settings_from_args(args)
    targets = export_targets(args)
    artifacts = function_artifacts(resolve_workload(settings.workload, settings.function))
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
    if artifacts:
        result.metadata["artifacts"] = artifacts  # sizes beside each artifact, in every export
    files = [t for t in targets if not t.to_stdout]
    write_targets(result, files)  # first: a reader closing stdout early cannot cost a file
    saved = None if args.no_history else _save_in_history(result)  # a file too: before stdout
    # With an export on stdout, stdout carries only that export (for jq and friends).
    stdout_exports = [t for t in targets if t.to_stdout]
    print_result(result, err if stdout_exports else _Console())
    write_targets(result, stdout_exports)
    if saved:
        err.print(saved, highlight=False, soft_wrap=True)
    return run_exit_status(result, settings, ignore_failure=args.ignore_failure)


def function_artifacts(workload: Workload) -> dict[str, dict[str, Any]]:
    """A function's artifacts with their sizes (module bytes, binary, image), read before the
    run (``{}`` for a built-in workload: its sizes are ``edgelab workloads``')."""
    if workload.function is None:
        return {}
    from edgelab.catalog import engine
    from edgelab.functions import artifact_sizes

    client, why_not = engine() if workload.function.image else (None, "")
    try:
        return artifact_sizes(workload, client, why_not)
    finally:
        if client is not None:
            client.close()


def _save_in_history(result: RunResult) -> str | None:
    """Every run goes in the history (``edgelab history``, ``compare last``); returns the line
    that says where (shown after the table). A history that cannot be written is a warning:
    the run's results are printed and written anyway, and the exit status is the run's."""
    from edgelab.history import save_run

    try:
        path = save_run(result)
    except (EdgelabError, OSError) as exc:
        return f"[yellow]not saved in the history:[/] {exc}"
    return f"[dim]saved in the history as last: {path}[/]"


def runtime_failures(result: RunResult, settings: Settings) -> list[str]:
    """One line per runtime that failed or stopped early, for the exit status: unavailable or
    given up, any failed launch (warmups too), fewer cold starts than asked, a ramp that did not
    reach its target (a limit, most often)."""
    lines: list[str] = []
    for name, runtime in result.runtimes.items():
        if runtime.error:
            lines.append(f"{name}: {runtime.error}")
            continue
        traffic_failed = runtime.traffic.counts()["failed"] if runtime.traffic is not None else 0
        if traffic_failed and not runtime.failed:
            lines.append(f"{name}: {traffic_failed} of {runtime.traffic.counts()['requests']} requests failed")
            continue
        failed = runtime.failed
        if failed:
            lines.append(f"{name}: {failed} of {runtime.launched} launches failed; first: {runtime.first_error()}")
            continue
        if settings.scenario == "burst" and runtime.ok < settings.count:
            lines.append(f"{name}: {runtime.ok} of {settings.count} cold starts done")
            continue
        target = settings.resident.get(name, 0) if settings.scenario in ("burst", "ramp") else 0
        memory = runtime.memory
        held = memory.instances if memory is not None else 0
        limit = getattr(memory, "limit", None)
        if limit:
            lines.append(f"{name}: the ramp stopped at {held:,} of {target:,}: {limit}")
        elif target and held < target:
            lines.append(f"{name}: the ramp reached {held:,} of {target:,} resident instances")
    return lines


def run_exit_status(result: RunResult, settings: Settings, ignore_failure: bool = False) -> int:
    """0 when every runtime did all it was asked; else one line and 1 (see ``edgelab --help``)."""
    rejected = [r.first_error() for r in result.runtimes.values() if (r.first_error() or "").startswith(REJECTED_PREFIX)]
    if rejected:
        raise RequestRejected(rejected[0] or "request rejected")
    unavailable = [f"{r.runtime}: {r.error}" for r in result.runtimes.values() if r.error and not r.ok]
    if unavailable and len(unavailable) == len(result.runtimes):
        raise EdgelabError(f"no runtime could run {settings.workload}; {unavailable[0]}")
    if all(r.ok == 0 and not _served_requests(r) for r in result.runtimes.values()):
        raise EdgelabError(f"no runtime has results for {settings.workload}; see above")
    failures = runtime_failures(result, settings)
    if not failures or ignore_failure:
        return 0
    more = f" (and {len(failures) - 1} more above)" if len(failures) > 1 else ""
    raise EdgelabError(f"{failures[0]}{more}; the other results are above and in the exports")


def _served_requests(runtime: Any) -> int:
    """Traffic requests a runtime answered (a traffic run whose requests were all warm has no
    cold-start sample, and still has results)."""
    traffic = runtime.traffic
    if traffic is None:
        return 0
    counts = traffic.counts()
    return int(counts.get("warm", 0)) + int(counts.get("cold", 0))


class _Progress:
    """Turns lab events into a one-line status on stderr: launches done of the planned total,
    time so far and an ETA.

    The ETA prices each runtime's remaining launches at its own pace: the wall time between
    one sample and the one before it is charged to the later sample's runtime (its launch,
    and what the lab did since: a container's removal, the pause between blocks), so a
    runtime's pace is its share of the clock. One average over all runtimes would be wrong by
    the 10,000x between a container's start and a Wasm instance's; mean startups alone missed
    the removals and pauses and said 1.5-2x too long. A runtime with no launch yet has no
    pace, so the ETA waits for it ("ETA …").
    """

    #: Redraw at most this often (a Wasm burst records thousands of samples a second).
    REFRESH_S = 0.1

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.status: Any = None
        self.clock = clock
        self.planned = planned_launches(settings)
        self.done = dict.fromkeys(self.planned, 0)
        self.wall_s = dict.fromkeys(self.planned, 0.0)
        self.started: float | None = None
        self._last_sample: float | None = None
        self.phase = "preparing runtimes"
        self._shown = 0.0

    @property
    def total(self) -> int:
        return sum(self.planned.values())

    def __call__(self, event: LabEvent) -> None:
        if isinstance(event, SampleRecorded):
            name = event.sample.runtime
            now = self.clock()
            if self.started is None:
                self.started = self._last_sample = now - (event.sample.startup_ns or 0) / 1e9
            self.done[name] = self.done.get(name, 0) + 1
            self.wall_s[name] = self.wall_s.get(name, 0.0) + now - (self._last_sample or now)
            self._last_sample = now
            self.planned[name] = max(self.planned.get(name, 0), self.done[name])
            if now - self._shown >= self.REFRESH_S:
                self._update(now)
        elif isinstance(event, RuntimeStatus):
            if event.state == "unavailable":
                self.planned[event.runtime] = self.done.get(event.runtime, 0)  # no more from it
                err.print(f"[yellow]{event.runtime} unavailable:[/] {event.reason}" + (f" (fix: {event.fix})" if event.fix else ""), highlight=False, soft_wrap=True)
            elif event.state in ("preparing", "stopping"):
                self.phase = f"{event.runtime}: {event.state}"
            elif event.state == "running":
                self.phase = ""  # the counts say it; one runtime's name would mislead in a mix
            self._update(self.clock())

    def _update(self, now: float) -> None:
        self._shown = now
        if self.status is not None:
            self.status.update(self.line(now))

    def eta_s(self, now: float) -> float | None:
        """Seconds until the planned launches are done, or None while it cannot be priced."""
        if self.started is None:
            return None
        elapsed = max(0.0, now - self.started)
        if self.settings.scenario in ("steady", "traffic"):  # bounded by the clock, not a count
            return max(0.0, self.settings.duration_s - elapsed)
        eta = 0.0
        for name, planned in self.planned.items():
            remaining = planned - self.done.get(name, 0)
            if remaining <= 0:
                continue
            if not self.done.get(name):
                return None
            eta += remaining * self.wall_s[name] / self.done[name]
        return eta

    def line(self, now: float) -> str:
        done = sum(self.done.values())
        approx = "~" if self.settings.scenario == "steady" else ""
        if self.settings.scenario == "traffic":  # cold starts only: how many is what it measures
            text = f"{done:,} cold starts"
        else:
            text = f"{done:,}/{approx}{self.total:,} launches"
        if self.started is not None:
            text += f" · {format_seconds(now - self.started)}"
            eta = self.eta_s(now)
            text += f" · ETA {format_seconds(eta)}" if eta is not None else " · ETA …"
        return f"{text} · {self.phase}…" if self.phase else text


def planned_launches(settings: Settings) -> dict[str, int]:
    """Launches the run will make per runtime if nothing fails (steady: at the asked rate)."""
    planned: dict[str, int] = {}
    for name in settings.runtimes:
        resident = settings.resident.get(name, 0)
        if settings.scenario == "burst":
            planned[name] = settings.warmup + settings.count + resident
        elif settings.scenario == "ramp":
            planned[name] = resident
        else:
            planned[name] = max(1, round(settings.rate_per_s * settings.duration_s))
    return planned


def format_seconds(seconds: float) -> str:
    """Elapsed time and ETAs: 0.4 s, 12 s, 3 min 05 s."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest:02d} s"


def print_result(result: RunResult, console: Console | None = None) -> None:
    from rich import box

    console = console or _Console()
    meta = result.metadata
    fastest = result.fastest()
    fastest_p50 = result.runtimes[fastest].summary().p50_ns if fastest else None  # type: ignore[union-attr]
    from edgelab.export import artifact_size_lines, is_command_run, response_difference_lines

    command = is_command_run(result)  # your own function: it answers once, then exits
    what = "launch → first stdout byte" if command else "launch call → first response byte"
    table = Table(
        title=f"{meta['workload']['name']}: cold start = {what}",
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
    # A command's extra facts are lines, not columns: the table keeps to 80 columns. What the
    # person gave (paths, tags, names) is printed as text: no markup, no :emoji: codes.
    plain: dict[str, Any] = {"highlight": False, "soft_wrap": True, "markup": False, "emoji": False}
    if command:
        exits = [
            f"{r.runtime} {format_duration_ns(e.p50_ns)}" for r in result.runtimes.values() if (e := r.exit_summary())
        ]
        if exits:
            console.print("exit p50 (launch → exit): " + " · ".join(exits), **plain)
    sizes = artifact_size_lines(result)
    if sizes:
        console.print("artifacts: " + " · ".join(sizes), style="dim", **plain)
    function = (meta.get("settings") or {}).get("function")
    if function:
        dirs = ", ".join(function.get("dirs") or []) or "none"
        env = ", ".join(function.get("env") or []) or "none"
        console.print(f"grants: dirs {dirs}; env {env} (beyond stdin, stdout, stderr: deny by default)", style="dim", **plain)
    if any(r.traffic is not None for r in result.runtimes.values()):
        from edgelab.traffic import print_traffic  # the traffic scenario's own table

        print_traffic(result, console)
    if any(r.memory for r in result.runtimes.values()):
        memory_table = Table(
            title="memory per resident instance: user-space (PSS growth / N) and host (what the machine loses / N)",
            box=box.SIMPLE_HEAD, pad_edge=False,
        )
        for column in ("runtime", "held", "user-space", "host", "cgroup", "per GiB (host)", "ramp /s"):
            memory_table.add_column(column, justify="left" if column == "runtime" else "right")
        bases: list[str] = []
        for runtime in result.runtimes.values():
            m = runtime.memory
            if m is None:
                continue
            host, cgroup = m.host_bytes_per_instance, m.cgroup_bytes_per_instance
            memory_table.add_row(
                runtime.runtime,
                f"{m.instances:,}",
                format_bytes_or_dash(m.pss_figure_bytes_per_instance),
                format_bytes_or_dash(host),
                format_bytes_or_dash(cgroup),
                f"{m.instances_per_gib:,.0f}" if m.instances_per_gib else "–",
                f"{m.ramp_rate_per_s:,.0f}" if m.ramp_rate_per_s else "–",
            )
            bases.append(f"{runtime.runtime}: user-space = {m.metric}; host = {m.host_basis}")
        console.print(memory_table)
        for line in bases:
            console.print(f"[dim]  {line}[/]", highlight=False)
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
        if runtime.rate_asked_per_s is not None and runtime.rate_achieved_per_s is not None:
            console.print(
                f"[dim]  steady: {runtime.rate_achieved_per_s:,.2f} launches/s achieved of"
                f" {runtime.rate_asked_per_s:,.2f} asked[/]",
                highlight=False,
            )
        if runtime.memory:
            m = runtime.memory
            console.print(f"[dim]  memory cross-check: {memory_cross_check(m)}[/]", highlight=False)
        for warning in runtime.warnings():
            console.print(f"[yellow]  warning ({runtime.runtime}):[/] {warning}", highlight=False)
    if meta.get("responses_identical") is False:
        if command:
            console.print("[red]the responses differ:[/]", highlight=False)
        else:
            console.print("[red]the runtimes' responses differ: the workload is not deterministic across runtimes[/]")
        for line in response_difference_lines(result):
            console.print(f"  {line}", style="red", highlight=False, soft_wrap=True, markup=False, emoji=False)
    elif command and meta.get("responses_identical") and len([r for r in result.runtimes.values() if r.ok]) > 1:
        console.print("[green]responses identical across the runtimes[/]", highlight=False)
    from edgelab.export import conclusion

    sentence = conclusion(result)
    if sentence:
        console.print(f"[bold]{sentence}[/]", highlight=False, soft_wrap=True)


#: Below this total, a MemAvailable change is lost in other processes' noise.
CROSS_CHECK_FLOOR_BYTES = 16 << 20


def memory_cross_check(m: MemoryResult) -> str:
    """The MemAvailable cross-check in words, saying when it is too small to read: against
    the idle noise the ramp measured where it did (a rise far beyond it is drift), else
    against CROSS_CHECK_FLOOR_BYTES."""
    from edgelab.results import NOISE_FACTOR

    total = m.mem_available_total_bytes
    if total is None:
        return "MemAvailable not measured"
    moved = "fell" if total > 0 else "rose" if total < 0 else "did not move"
    text = f"MemAvailable {moved} while {m.instances:,} were launched" if total == 0 else (
        f"MemAvailable {moved} {format_bytes(abs(total))} while {m.instances:,} were launched"
        f" ({format_bytes(abs(total) / m.instances)} each)"
    )
    noise = m.mem_available_noise_bytes
    if noise is not None:
        if total > 0 and m.mem_available_stable:
            return text
        if abs(total) <= NOISE_FACTOR * noise:
            return text + f"; within {NOISE_FACTOR}x its idle noise ({format_bytes(noise)})"
        if total < 0:
            return text + f"; far more than its idle noise ({format_bytes(noise)}): other processes freed memory (drift)"
        return text
    if abs(total) < CROSS_CHECK_FLOOR_BYTES:
        text += f"; under {format_bytes(CROSS_CHECK_FLOOR_BYTES)} in all, that is within noise"
    return text


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

    selected = []
    for workload in _selected(args.workloads):
        if workload.function is not None:  # your own artifacts: there is nothing to build
            err.print(f"[dim]{workload.name}: skipped, a function (its artifacts are yours, nothing to build)[/]", highlight=False)
        else:
            selected.append(workload)
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
    """The catalog as JSON, every artifact built first (what ``edgelab workloads`` shows)."""
    from edgelab.catalog import catalog

    return [entry.as_json() for entry in catalog(ensure=True, images=include_images)]


def cmd_workloads(args: argparse.Namespace) -> int:
    require_workloads()  # none found is an error (a broken install), not an empty table
    listing = workload_listing()
    if args.json:
        print(json.dumps(listing, indent=2))
        return 0
    from edgelab.catalog import artifact_kinds

    kinds = artifact_kinds()
    table = Table(title="workloads (sizes of the artifacts each runtime starts)")
    table.add_column("name")
    table.add_column("kind")  # abi: built in (edgelab's own ABI); function: yours (edgelab add)
    table.add_column("description")
    for kind in kinds:
        table.add_column(kind, justify="right")
    for entry in listing:
        cells = []
        for kind in kinds:
            found = entry.get(kind)
            if found and found["size_bytes"] is not None:
                cells.append(format_bytes(found["size_bytes"]))
            else:  # a function's artifact that is not there (never built for it): say so
                cells.append("missing" if found and entry["kind"] == "function" else "–")
        table.add_row(entry["name"], entry["kind"], entry["description"], *cells)
    Console().print(table)
    notes = {entry[f"{k}_error"] for entry in listing for k in kinds if entry.get(f"{k}_error")}
    for note in sorted(notes):
        err.print(f"[yellow]images:[/] {note}", highlight=False)
    return 0


# -- probe ------------------------------------------------------------------------------------------
def cmd_probe(args: argparse.Namespace) -> int:
    from edgelab.capabilities import CAPABILITIES, probe_report

    rungs = runtimes_from_text(args.runtimes)
    report = probe_report(rungs)
    grants = _wasi_grants(rungs)
    if args.json:
        data: dict[str, Any] = {
            rt: {cap: {"verdict": v, "detail": d} for cap, (v, d) in caps.items()} for rt, caps in report.items()
        }
        if grants is not None:  # capabilities of the Wasm rung too: for your own module's grants
            wasm = next(rt for rt in data if registry.family_of(rt) == "wasm")
            data[wasm].update({cap: {"verdict": v, "detail": d} for cap, v, d in grants})
        print(json.dumps(data, indent=2))
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
        if grants is not None:
            granted = Table(title="your own WASI module (edgelab run --wasm): one granted and one ungranted directory and variable")
            granted.add_column("capability")
            granted.add_column("wasm")
            for cap, verdict, detail in grants:
                granted.add_row(cap, f"[{colour.get(verdict, 'red')}]{verdict}[/] [dim]{detail}[/]")
            Console().print(granted)
    errors = [f"{rt}: {caps[CAPABILITIES[0]][1]}" for rt, caps in report.items() if caps[CAPABILITIES[0]][0] == "error"]
    if errors and len(errors) == len(report):
        raise EdgelabError(f"the probe could not run in any runtime; {errors[0]}")
    return 0


def _wasi_grants(rungs: tuple[str, ...]) -> list[tuple[str, str, str]] | None:
    """The WASI grant probe (``--dir``/``--env`` granted and not), when a Wasm rung is probed;
    a host that cannot run it is one row saying why, not a failed probe."""
    if not any(registry.family_of(name) == "wasm" for name in rungs):
        return None
    from edgelab.runtimes.wasm.wasi import probe_grants

    try:
        return probe_grants()
    except EdgelabError as exc:
        return [("WASI grants", "error", str(exc).splitlines()[0])]


# -- doctor / clean ------------------------------------------------------------------------------
def diagnose() -> list[tuple[str, bool, str, str, dict[str, str]]]:
    """Per runtime: (name, usable, reason, fix, versions); first the workloads themselves, so a
    malformed manifest is named as the user's file, not as a runtime's fault or a bug."""
    from edgelab.errors import ManifestError
    from edgelab.workloads import modules_dir, no_workloads_error, user_workloads_dir

    rows: list[tuple[str, bool, str, str, dict[str, str]]] = []
    try:
        workloads = load_workloads(include_hostile=True)
        if workloads:
            saved = sum(w.function is not None for w in workloads.values())
            where = f"under {modules_dir()}" + (f" ({saved} saved under {user_workloads_dir()})" if saved else "")
            rows.append(("workloads", True, "", "", {f"{len(workloads)} found": where}))
        else:
            rows.append(("workloads", False, str(no_workloads_error(modules_dir())), "", {}))
    except ManifestError as exc:
        rows.append(("workloads", False, str(exc), "fix that workload.toml (a workload's own file)", {}))
    session = Session()
    for name in registry.names():  # every registered rung, one row each
        try:
            runtime = create_runtime(name, session)
            runtime.check()
            marks = runtime.marks()  # e.g. "emulated (TCG)": said beside the verdict too
            found = runtime.versions() | runtime.doctor_details() | ({"marks": "; ".join(marks)} if marks else {})
            rows.append((name, True, "", "", found))
            runtime.close()
        except RuntimeUnavailable as exc:
            rows.append((name, False, exc.reason, exc.fix, {}))
        except ManifestError:
            rows.append((name, False, "not checked: a workload manifest is malformed (see workloads)", "", {}))
        except EdgelabError as exc:
            rows.append((name, False, str(exc), "", {}))
        except Exception as exc:  # noqa: BLE001 - doctor reports, never crashes
            rows.append((name, False, f"{type(exc).__name__}: {exc}", "report this as a bug", {}))
    return rows


def runtime_listing() -> list[dict[str, Any]]:
    """Every registered rung as the registry states it (no runtime is created: instant)."""
    return [
        {
            "name": entry.name,
            "family": entry.family,
            "artifact": entry.artifact,
            "default": entry.default,
            "summary": entry.summary,
            "skips": entry.skips,
            "ready_cost": entry.ready_cost,
        }
        for entry in registry.specs()
    ]


def cmd_runtimes(args: argparse.Namespace) -> int:
    listing = runtime_listing()
    if args.json:
        print(json.dumps(listing, indent=2))
        return 0
    table = Table(title="runtimes and rungs (-r takes any name; * in the default selection)")
    for column in ("rung", "starts", "what it is", "skips", "kept ready costs"):
        table.add_column(column, overflow="fold", no_wrap=column in ("rung", "starts"))
    for entry in listing:
        table.add_row(
            entry["name"] + (" *" if entry["default"] else ""),
            entry["artifact"],
            entry["summary"],
            entry["skips"] or "–",
            entry["ready_cost"] or "–",
        )
    Console().print(table)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    table = Table(title="edgelab doctor")
    for column in ("runtime", "usable", "details", "fix"):
        table.add_column(column, overflow="fold")  # a manifest's path is shown whole
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
        from edgelab.watchdog import live_and_dead

        try:
            live = {sid: n for sid, (n, alive) in live_and_dead(runtime.client).items() if alive}
        except Exception:  # noqa: BLE001 - what clean says is a courtesy; removing is the job
            live = {}
        removed = remove_labelled(runtime.client)
        line = f"removed {removed} container(s) labelled edgelab.session"
        if live:
            ids = ", ".join(sorted(live))
            line += (
                f"; {sum(live.values())} of them belonged to {len(live)} live session(s) ({ids}):"
                " those labs will see their launches fail"
            )
        print(line)
    if args.cache:
        import shutil

        from edgelab.build import cache_dir

        problems: list[str] = []

        def note(function: object, path: str, exc_info: object) -> None:
            error = exc_info[1] if isinstance(exc_info, tuple) else exc_info
            if not isinstance(error, FileNotFoundError):
                problems.append(f"{path}: {getattr(error, 'strerror', None) or error}")

        handler = {"onexc": note} if sys.version_info >= (3, 12) else {"onerror": note}
        for kind in ("artifacts", "wasm", "host"):
            shutil.rmtree(cache_dir() / kind, **handler)  # type: ignore[arg-type]
        left = [kind for kind in ("artifacts", "wasm", "host") if (cache_dir() / kind).exists()]
        if problems or left:
            first = problems[0] if problems else f"{cache_dir() / left[0]} is still there"
            raise EdgelabError(f"could not remove the build cache under {cache_dir()}: {first}")
        print(f"removed built artifacts under {cache_dir()}")
    return 0
