"""The text a runtime panel shows, derived from its state: pure, so equal views skip a repaint."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgelab.stats import format_bytes, format_duration_ns
from edgelab.tui.charts import log_histogram
from edgelab.tui.state import NOT_APPLICABLE, RuntimeLive, TrafficFigures

if TYPE_CHECKING:
    from edgelab.lab import Settings
    from edgelab.results import MemoryResult

NOT_YET = "–"
#: A mixed burst's turn-taking, in words (Settings.interleave).
INTERLEAVE_WORDS = {"block": "block", "launch": "launch by launch"}


@dataclass(frozen=True)
class PanelView:
    state: str
    state_line: str
    p50: str
    p99: str
    n_line: str
    recent_ns: tuple[float, ...]
    phases_line: str
    includes_line: str
    memory_line: str
    host_line: str
    density_line: str
    memory_warning_line: str
    memory_curve: tuple[float, ...]
    instances_line: str
    rate_line: str
    warning_line: str
    #: Traffic only: requests, cold share and request latency; instances now and scaled down.
    traffic_line: str = ""
    #: The includes sentence abbreviated for short screens (``abbreviate_includes``).
    includes_short_line: str = ""
    #: The count as the one-line (narrow) startup figure says it: "n=20, warmups excluded".
    n_short: str = ""
    #: The memory lines for short screens: each basis named by its first word ("(PSS…)").
    memory_short_lines: tuple[str, ...] = ()
    #: Every measured cold start counted in the log bins all panels share (charts.log_histogram).
    histogram: tuple[int, ...] = ()
    #: Every warning, each in its short form (warning_line is the first): none hidden.
    warning_lines: tuple[str, ...] = ()
    #: A ramp's (instances resident, PSS growth bytes) readings, for the memory curve.
    memory_points: tuple[tuple[int, int], ...] = ()


def _state_line(live: RuntimeLive) -> str:
    if live.state == "unavailable":
        line = f"unavailable: {live.reason or 'no reason given'}"
        return line + (f"\nfix: {live.fix}" if live.fix else "")
    if live.state == NOT_APPLICABLE:
        return f"not applicable: {live.reason or 'this rung cannot run the workload'}"
    if live.state == "off":
        return "off (toggle it on to include it)"
    if live.reason:
        return f"stopped: {live.reason}"
    if live.last_error and live.failed:
        return f"last failure: {live.last_error}"
    return ""


def short_warning(warning: str) -> str:
    """The finding without the advice after its colon: the panel has one line for it (the
    help screen and the exports carry the advice)."""
    finding, colon, _ = warning.partition(": ")
    return finding if colon else warning


def split_duration(value_ns: float | None) -> str:
    return NOT_YET if value_ns is None else format_duration_ns(value_ns)


def host_basis_words(memory: MemoryResult) -> str:
    """Which figure the host one is, in a few words for the panel (``MemoryResult.host_basis``
    has the sentence, in the exports): told apart by which source it equals."""
    host = memory.host_bytes_per_instance
    if host is not None:
        if host == memory.mem_available_bytes_per_instance:
            rough = memory.mem_available_uncertainty
            if not memory.mem_available_stable and rough is not None:
                return f"MemAvailable fall, rough: ±{rough:.0%}"
            return "MemAvailable fall"
        if host == memory.cgroup_bytes_per_instance:
            return "cgroup incl. kernel"
        return f"{memory.metric}, above its cgroup"
    if memory.mem_available_bytes_per_instance is None:
        return "not measured"
    return "MemAvailable fall within noise"  # how many would do: the warning line below


def memory_lines(live: RuntimeLive, scenario: str) -> tuple[str, str, str, str]:
    """Per resident instance: the user-space figure (PSS), the host figure (what the machine
    loses) with its basis, instances per GiB from the host figure, and the first thing a
    reader must know (a limit that stopped the ramp, a host figure lost in noise)."""
    memory = live.memory
    traffic = live.final.traffic if live.final is not None else None
    if memory is None and traffic is not None:
        if traffic.memory_bytes_per_instance is None:
            return ("per instance: not measured in this traffic run (a ramp measures it)", "", "", "")
        metric = traffic.memory_metric or "PSS"
        return (f"held {format_bytes(traffic.memory_bytes_per_instance)}/instance during traffic ({metric})", "", "", "")
    if memory is None:
        per_instance = live.bytes_per_instance()
        if per_instance is None:
            return ("per instance: run a ramp to measure" if scenario != "ramp" else NOT_YET, "", "", "")
        metric = live.memory_metric or "PSS"
        return (
            f"user-space {format_bytes(per_instance)}/instance so far ({metric})",
            "host: when the ramp has settled",
            "",
            "",
        )
    user_bytes = memory.pss_figure_bytes_per_instance
    user_figure = format_bytes(user_bytes) + "/instance" if user_bytes is not None else "–"
    user = f"user-space {user_figure} ({memory.metric}{'' if user_bytes is not None else ', within noise'})"
    host_bytes = memory.host_bytes_per_instance
    host_figure = format_bytes(host_bytes) + "/instance" if host_bytes is not None else NOT_YET
    host = f"host {host_figure} ({host_basis_words(memory)})"
    per_gib = memory.instances_per_gib
    source = "host" if host_bytes is not None else "user-space: no host figure"
    density = f"{per_gib:,.0f} instances per GiB (from {source})" if per_gib else ""
    return user, host, density, memory_warning(memory)


def memory_warning(memory: MemoryResult) -> str:
    """The one thing to know before trusting the figures, in one panel line: a limit that
    stopped the ramp (the lab's own line), a user-space figure lost in noise, else what would
    make the host figure stable. The full
    sentences (``MemoryResult.warnings``) are in the exports."""
    if memory.limit:
        return f"⚠ {memory.limit}"
    if memory.pss_figure_bytes_per_instance is None:
        return f"⚠ user-space figure within noise: {memory.hold_for_user_space_figure()}"
    if memory.mem_available_bytes_per_instance is None or memory.mem_available_stable:
        return ""
    needed = memory.instances_for_stable_host_figure
    if needed:
        return f"⚠ hold {needed:,}+ instances for a stable host figure"
    return "⚠ MemAvailable moved with other processes: rerun on a quieter machine"


def rate_line(live: RuntimeLive, now: float | None, scenario: str) -> str:
    """A ramp's rate once it has one; while running, launches of the last two seconds; after a
    steady run, the rate it achieved."""
    if live.memory is not None and live.memory.ramp_rate_per_s:
        return f"ramp {live.memory.ramp_rate_per_s:,.0f} instances/s"
    if now is not None:
        return f"{live.starts_per_s(now):,.1f} starts/s (last 2 s)"
    average = live.average_starts_per_s()
    if average is None or scenario != "steady":
        return ""
    asked = f" of {live.rate_asked_per_s:,.4g}/s asked" if live.rate_asked_per_s else ""
    return f"{average:,.2f} starts/s achieved{asked}"


def traffic_lines(figures: TrafficFigures | None, live: RuntimeLive, now: float | None) -> str:
    """Three lines for a traffic run: what the callers saw (requests, cold share, latency from
    arrival to first byte) and what was held (instances now, scaled down to zero). While it
    runs, only what the lab's events say: instances resident and cold starts so far."""
    if figures is None:
        if now is None:
            return ""
        return f"traffic: {live.startup_n:,} cold starts so far\nlatency: when the run ends\ninstances now {live.running:,}"
    cold = figures.cold_fraction
    cold_text = f"cold {cold:.1%}" if cold is not None else "cold –"
    failed = f" · failed {figures.failed:,}" if figures.failed else ""
    latency = (
        f"latency p50 {split_duration(figures.latency_p50_ns)} · p99 {split_duration(figures.latency_p99_ns)}"
    )
    held = (
        f"instances now {figures.instances_now:,} · peak {figures.instances_peak:,}"
        f" · scaled down {figures.scaled_down:,}"
    )
    if figures.note:
        held += f" · ⚠ {figures.note}"
    # Three short lines: a panel a third of 160 columns wide cuts a long one before its p99.
    return f"{figures.requests:,} requests · {cold_text}{failed}\n{latency}\n{held}"


def panel_view(live: RuntimeLive, now: float | None, scenario: str) -> PanelView:
    """``now`` is None when no scenario runs: the live rate gives way to the run's average."""
    phases = " · ".join(f"{name} {format_duration_ns(p50)}" for name, p50 in live.phase_p50s())
    memory_line, host_line, density_line, memory_warning_line = memory_lines(live, scenario)
    # Memory warnings have their own line in the memory block.
    memory_warnings = live.memory.warnings() if live.memory is not None else []
    warnings = [w for w in live.final.warnings if w not in memory_warnings] if live.final else []
    # A rung's marks (e.g. "emulated (TCG)") stand beside its figures from the first sample.
    if live.startup_n:
        warnings = [m for m in live.marks if m not in warnings] + warnings
    return PanelView(
        state=live.state,
        state_line=_state_line(live),
        p50=split_duration(live.p50_ns()),
        p99=split_duration(live.p99_ns()),
        n_line=f"{live.startup_n:,} cold starts (warmups excluded)" if live.startup_n else "",
        n_short=f"n={live.startup_n:,}, warmups excluded" if live.startup_n else "",
        recent_ns=tuple(float(v) for v in live.recent_startups_ns),
        phases_line=f"phases p50: {phases}" if phases else "",
        includes_line=f"includes: {live.startup_includes}" if live.startup_includes else "",
        includes_short_line=(
            f"includes: {abbreviate_includes(live.startup_includes)}" if live.startup_includes else ""
        ),
        memory_line=memory_line,
        memory_short_lines=tuple(
            abbreviate_basis(line) for line in (memory_line, host_line, density_line) if line
        ),
        host_line=host_line,
        density_line=density_line,
        memory_warning_line=memory_warning_line,
        memory_curve=tuple(float(growth) for _, growth in live.memory_points),
        instances_line=(
            f"running {live.running:,} · launched {live.launched:,} · failed {live.failed:,}"
        ),
        rate_line=rate_line(live, now, scenario),
        warning_line=f"⚠ {short_warning(warnings[0])}" if warnings else "",
        traffic_line=(
            traffic_lines(live.final.traffic if live.final else None, live, now) if scenario == "traffic" else ""
        ),
        histogram=log_histogram(live.sorted_startups_ns, presorted=True) if live.sorted_startups_ns else (),
        warning_lines=tuple(f"⚠ {short_warning(w)}" for w in warnings),
        memory_points=tuple(live.memory_points),
    )


def settings_line(settings: Settings) -> str:
    """The run's settings in one line above the panels: how a mixed burst took turns moves a
    fast runtime's figures several-fold (Wasm right after a container start pays for the
    caches dockerd just used), so the mode is on screen beside the figures it explains."""
    head = f"{settings.scenario} of {settings.workload}"
    if settings.scenario == "burst":
        warmup = f" (+{settings.warmup} warmup)" if settings.warmup else ""
        if len(settings.runtimes) > 1:
            turns = f"interleave: {INTERLEAVE_WORDS.get(settings.interleave, settings.interleave)}"
        else:
            turns = "one runtime: back to back"
        return f"{head} · {settings.count:,} cold starts per runtime{warmup} · {turns}"
    if settings.scenario == "ramp":
        held = " · ".join(f"{name} {settings.resident.get(name, 0):,}" for name in settings.runtimes)
        return f"{head} · hold {held} · runtimes ramp one after another"
    if settings.scenario == "traffic":
        arrivals = f"trace {settings.trace_file}" if settings.pattern == "trace" else f"{settings.pattern} {settings.rate_per_s:g}/s"
        return (
            f"{head} · {arrivals} for {settings.duration_s:g} s · keep-alive {settings.keepalive_s:g} s"
            f" · pre-warm {settings.prewarm:,} per runtime"
        )
    return (
        f"{head} · {settings.rate_per_s:g}/s for {settings.duration_s:g} s per runtime,"
        " runtimes at the same time"
    )


def abbreviate_includes(sentence: str) -> str:
    """What a figure includes, abbreviated for a short screen without cutting it in half: each
    parenthetical detail becomes "(…)", except what it says is *excluded*, which stays (the
    trap the issue names: "…IPC" cut before "excluded)" read as if IPC were included). The
    whole sentence is on the presentation screen (p) and in every export.

    >>> abbreviate_includes("docker create + start + first response (image prebuilt; excludes removal)")
    'docker create + start + first response (…; excludes removal)'
    """
    out: list[str] = []
    depth = 0
    group: list[str] = []
    for char in sentence:
        if char == "(":
            depth += 1
            if depth == 1:
                group = []
                continue
        elif char == ")" and depth:
            depth -= 1
            if depth == 0:
                clauses = [c.strip() for c in "".join(group).split(";")]
                kept = [c for c in clauses if "exclud" in c.lower()]
                out.append("(" + "; ".join((["…"] if len(kept) < len(clauses) else []) + kept) + ")")
                continue
        if depth:
            group.append(char)
        else:
            out.append(char)
    if depth:  # unbalanced: leave the sentence as it is
        return sentence
    short = "".join(out)
    return short if len(short) < len(sentence) else sentence


def abbreviate_basis(line: str) -> str:
    """A memory line for a short screen: its closing parenthetical basis named by its first word
    ("user-space 10.0 KiB/instance (PSS…)" for "(PSS growth of the Wasm host processes …)"), so
    which figure it is stays said; the whole basis is on taller screens and in every export."""
    if not line.endswith(")"):
        return line
    depth, start = 0, None
    for index in range(len(line) - 1, -1, -1):
        depth += {")": 1, "(": -1}.get(line[index], 0)
        if depth == 0:
            start = index
            break
    if start is None:
        return line
    inner = line[start + 1 : -1]
    first = inner.split()[0] if inner.split() else ""
    if not first or first == inner or first in ("from",):
        return line  # one word already, or "(from host)": nothing to gain
    return f"{line[:start]}({first.rstrip(',;:')}…)"
