"""``edgelab claims``: the published claims about serverless at the edge, each beside the figure
this machine measured, with a verdict and one line why.

The claims live in ``edgelab/data/claims.toml`` (quoted as their sources state them, with the
sources' titles and, where there is one, a URL), so adding one is an edit to data, not code.
Each entry names the figure of this machine it is set beside (``measure``: a rung's cold-start
p50 or p99, one phase of it, a ratio between two rungs, memory per resident instance, an
artifact's size, a physics RTT floor, the capability probe) and the run it must come from
(workload ``hello`` unless it says otherwise, a burst or a ladder for start-up figures). Every
claim takes its figure from the newest run that has it, so a burst and a ramp saved one after
the other together cover start-up and density; a ratio comes from one run holding both sides.
Runs of the fake runtime are never read: they are not measurements.

Verdict rules (the same for every claim; ``DRIFT`` is this shared VM's own ±30% drift within
seconds, README "Measured here", so a figure closer than that to a claim's edge cannot be told
from it):

- **holds**: the figure is within the claim's own stated band or better, or past the band's
  edge by at most ``DRIFT`` (1.3x; the why line then says "within this machine's drift").
  Vague wording is turned into a bound once, in the data file: "sub-1 ms" is ≤ 1 ms,
  "double digits" ≤ 99 ms, "hundreds of ms" ≥ 100 ms, "~2.85 ms" ≤ 2.85 ms. "Better" is the
  direction the claim argues for: lower for a time, a size or memory (``kind = "at_most"``),
  higher for an advantage ratio or a distance (``"at_least"``). A claim that states the *cost of
  the slow side* ("a Docker container takes 1–2 s", ``"band"``) has no better side: a container
  starting 4x faster than the band shows the claim overstates the gap, so both edges count.
- **doesn't hold**: off the band by more than ``DRIFT`` (the why line says by how much).
- **not comparable**: the claim measures something else (the data file's ``differs`` says what:
  an end-to-end latency over the internet, a platform's policy, an OCI runtime alone, ...) or
  another machine class (AWS's fleet; a microVM figure marked "emulated" under TCG against
  Firecracker under KVM). The figure measured here is still shown beside it, never judged.
  A whole request path (the agent calling an LLM: 1.7 s against 1.0 s) is not measured by any
  run: its verdict only points to ``edgelab whatif --preset agent-llm``, the simulator, whose
  every figure says it is simulated.
- **not measured yet**: no run read has the figure; the why line names the command that
  measures it.

Headless (no textual): the TUI's claims view calls ``load_claims`` and ``check_claims``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from edgelab.errors import EdgelabError
from edgelab.stats import format_bytes, format_duration_ns, format_ratio

#: This VM drifts by ±30% within seconds (README, "Measured here"): a figure within 1.3x of a
#: claim's edge cannot be told from it, so it holds; farther than that, it doesn't.
DRIFT = 1.3
VERDICTS = ("holds", "doesn't hold", "not comparable", "not measured yet")
#: How many of the newest saved runs ``edgelab claims`` reads by default: enough that a burst,
#: a ramp and a ladder run apart from each other are all found.
HISTORY_RUNS = 20
CLAIMS_FILE = Path(__file__).resolve().parent / "data" / "claims.toml"

#: Each measure: what kind of quantity it is (its unit's dimension).
MEASURES = {
    "startup_p50": "time",
    "startup_p99": "time",
    "phase_p50": "time",
    "startup_ratio": "ratio",
    "density_ratio": "ratio",
    "memory_host_per_instance": "memory",
    "artifact_size": "size",
    "rtt_floor": "time",
    "capability_denials": "probe",
    "simulated": "simulated",
    "none": "none",
}
#: Units a claim's low/high may be stated in, as a factor to seconds, bytes or a plain ratio.
UNITS = {
    "us": ("time", 1e-6), "ms": ("time", 1e-3), "s": ("time", 1.0),
    "B": ("size", 1.0), "kB": ("size", 1e3), "KiB": ("memory", 1024.0), "MiB": ("memory", 1024.0**2),
    "x": ("ratio", 1.0),
}  # fmt: skip
KINDS = ("at_most", "at_least", "band")
#: Measures that need a rung named (``runtime``), and those that need a second one (``versus``).
_NEEDS_RUNTIME = {"startup_p50", "startup_p99", "phase_p50", "startup_ratio", "density_ratio",
                  "memory_host_per_instance", "capability_denials"}  # fmt: skip
_NEEDS_VERSUS = {"startup_ratio", "density_ratio"}
#: The scenarios whose start-up figures are cold starts of a burst (a ladder is a burst in blocks).
_BURSTS = ("burst", "ladder")


@dataclass(frozen=True)
class Source:
    key: str
    title: str
    url: str | None = None
    about: str | None = None


@dataclass(frozen=True)
class Claim:
    """One checkable figure of a published claim (``claims.toml``'s keys, described there)."""

    id: str
    source: Source
    claim: str
    short: str
    stated: str
    measures: str
    measure: str
    runtime: str | None = None
    versus: str | None = None
    phase: str | None = None
    context_phase: str | None = None
    workload: str = "hello"
    scenario: str = "burst"
    kind: str | None = None
    low: float | None = None
    high: float | None = None
    unit: str | None = None
    comparable: bool = True
    differs: str | None = None
    not_comparable_marks: tuple[str, ...] = ()
    min_instances: int = 20
    artifact: str | None = None
    a: str | None = None
    b: str | None = None
    inflation: float = 1.0
    preset: str | None = None
    command: str | None = None
    note: str | None = None

    def bounds(self) -> tuple[float | None, float | None]:
        """low and high in seconds, bytes or a plain ratio."""
        if self.unit is None:
            return None, None
        factor = UNITS[self.unit][1]
        return (
            self.low * factor if self.low is not None else None,
            self.high * factor if self.high is not None else None,
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "source": self.source.key, "source_title": self.source.title,
            "source_url": self.source.url, "claim": self.claim, "short": self.short,
            "stated": self.stated, "measures": self.measures, "measure": self.measure,
            "runtime": self.runtime, "versus": self.versus, "phase": self.phase,
            "workload": self.workload, "kind": self.kind, "low": self.low, "high": self.high,
            "unit": self.unit, "comparable": self.comparable, "differs": self.differs,
        }  # fmt: skip


@dataclass(frozen=True)
class ClaimCheck:
    """A claim beside this machine's figure: the verdict, the figure as text (None where there
    is none), one line why, and the run the figure came from (its ref, or None)."""

    claim: Claim
    verdict: str
    measured: str | None
    why: str
    run: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {**self.claim.as_json(), "verdict": self.verdict, "measured": self.measured,
                "why": self.why, "run": self.run}  # fmt: skip


# -- the data file ---------------------------------------------------------------------------------
def _toml() -> Any:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    return tomllib


def _bad(where: str, why: str) -> EdgelabError:
    return EdgelabError(f"{CLAIMS_FILE.name}: {where}: {why}")


def parse_claims(text: str) -> list[Claim]:
    """The claims in ``text`` (claims.toml's layout), every entry checked: a known source with a
    title, a known measure, a kind with the bounds it needs in a unit of the measure's kind."""
    try:
        data = _toml().loads(text)
    except ValueError as exc:
        raise _bad("not TOML", str(exc)) from None
    sources: dict[str, Source] = {}
    for key, entry in (data.get("sources") or {}).items():
        if not isinstance(entry, dict) or not str(entry.get("title") or "").strip():
            raise _bad(f"source {key}", "has no title")
        sources[key] = Source(key, str(entry["title"]), entry.get("url"), entry.get("about"))
    claims: list[Claim] = []
    seen: set[str] = set()
    fields = set(Claim.__dataclass_fields__) - {"source"}
    for index, entry in enumerate(data.get("claim") or []):
        where = f"claim {entry.get('id') or index + 1}"
        unknown = set(entry) - fields - {"source"}
        if unknown:
            raise _bad(where, f"unknown keys {', '.join(sorted(unknown))}")
        for key in ("id", "source", "claim", "short", "stated", "measures", "measure"):
            if not str(entry.get(key) or "").strip():
                raise _bad(where, f"no {key}")
        if entry["id"] in seen:
            raise _bad(where, "a second entry with this id")
        seen.add(entry["id"])
        if entry["source"] not in sources:
            raise _bad(where, f"source {entry['source']} is not in [sources]")
        measure = entry["measure"]
        if measure not in MEASURES:
            raise _bad(where, f"unknown measure {measure} (known: {', '.join(MEASURES)})")
        values = dict(entry)
        values["source"] = sources[entry["source"]]
        values["not_comparable_marks"] = tuple(entry.get("not_comparable_marks", ()))
        claim = Claim(**values)
        _check_claim(claim, where)
        claims.append(claim)
    if not claims:
        raise _bad("claims", "none")
    return claims


def _check_claim(claim: Claim, where: str) -> None:
    dimension = MEASURES[claim.measure]
    if claim.measure in _NEEDS_RUNTIME and not claim.runtime:
        raise _bad(where, f"{claim.measure} needs a runtime")
    if claim.measure in _NEEDS_VERSUS and not claim.versus:
        raise _bad(where, f"{claim.measure} needs versus (the other runtime)")
    if claim.measure == "phase_p50" and not claim.phase:
        raise _bad(where, "phase_p50 needs a phase")
    if claim.measure == "rtt_floor" and not (claim.a and claim.b):
        raise _bad(where, "rtt_floor needs a and b (two places)")
    if claim.measure == "artifact_size" and not claim.artifact:
        raise _bad(where, "artifact_size needs an artifact kind")
    if claim.measure == "simulated" and not claim.preset:
        raise _bad(where, "simulated needs a preset (edgelab whatif --preset)")
    if claim.scenario not in (*_BURSTS, "any"):
        raise _bad(where, f"scenario {claim.scenario}: burst, ladder or any")
    if not claim.comparable or dimension in ("none", "simulated"):
        if not claim.comparable and not claim.differs:
            raise _bad(where, "comparable = false needs differs (what the claim measures instead)")
        if claim.measure not in ("none", "simulated") and not claim.command:
            raise _bad(where, "a measured figure needs the command that measures it")
        return
    if dimension == "probe":
        if not claim.command:
            raise _bad(where, "needs the command that measures it")
        return
    if claim.kind not in KINDS:
        raise _bad(where, f"kind {claim.kind}: one of {', '.join(KINDS)}")
    if claim.unit not in UNITS:
        raise _bad(where, f"unit {claim.unit}: one of {', '.join(UNITS)}")
    unit_dimension = UNITS[claim.unit][0]
    if unit_dimension != dimension and not (dimension == "size" and unit_dimension == "memory"):
        raise _bad(where, f"unit {claim.unit} is a {unit_dimension}, {claim.measure} a {dimension}")
    needs = {"at_most": ("high",), "at_least": ("low",), "band": ("low", "high")}[claim.kind]
    for key in needs:
        value = getattr(claim, key)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not (value > 0 and math.isfinite(value)):
            raise _bad(where, f"{claim.kind} needs {key} > 0")
    if claim.kind == "band" and claim.low >= claim.high:  # type: ignore[operator]
        raise _bad(where, "band needs low < high")
    if not claim.command:
        raise _bad(where, "needs the command that measures it")


@lru_cache(maxsize=1)
def _load_default() -> tuple[Claim, ...]:
    try:
        text = CLAIMS_FILE.read_text(encoding="utf-8")
    except OSError as exc:
        raise EdgelabError(f"cannot read the claims file {CLAIMS_FILE}: {exc.strerror or exc}") from None
    return tuple(parse_claims(text))


def load_claims(path: Path | None = None) -> list[Claim]:
    """Every claim of the shipped data file (or of ``path``), in the file's order."""
    if path is None:
        return list(_load_default())
    try:
        return parse_claims(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise EdgelabError(f"cannot read the claims file {path}: {exc.strerror or exc}") from None


# -- figures from runs ------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Figure:
    """A figure of this machine: its value (seconds, bytes or a ratio), as shown, in words."""

    value: float
    text: str
    detail: str
    run: str | None = None
    #: Why it is another machine class than the claim's (a mark of the rung), if it is.
    other_class: str | None = None


@dataclass
class _Run:
    label: str
    data: Mapping[str, Any]
    results: dict[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def workload(self) -> str | None:
        meta = self.data.get("metadata") or {}
        return (meta.get("settings") or {}).get("workload") or (meta.get("workload") or {}).get("name")

    @property
    def scenario(self) -> str | None:
        return ((self.data.get("metadata") or {}).get("settings") or {}).get("scenario")


def run_label(run: Mapping[str, Any]) -> str:
    """A run in words where no ref names it: when it started (local time) and its scenario."""
    meta = run.get("metadata") or {}
    try:
        started = datetime.fromisoformat(str(meta.get("started"))).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        started = "?"
    return f"{started} {(meta.get('settings') or {}).get('scenario') or '?'}"


def _time(seconds: float) -> str:
    return format_duration_ns(seconds * 1e9)


def _us(value: Any) -> float | None:
    return float(value) * 1e-6 if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _p(summary: Any, key: str) -> float | None:
    return _us(summary.get(key)) if isinstance(summary, Mapping) else None


def _startup(result: Mapping[str, Any], key: str = "p50") -> float | None:
    return _p(result.get("startup_us"), key)


def _phase(result: Mapping[str, Any], phase: str) -> float | None:
    phases = result.get("phases_us")
    return _p(phases.get(phase), "p50") if isinstance(phases, Mapping) else None


def _marks(result: Mapping[str, Any]) -> list[str]:
    marks = result.get("marks")
    return [str(m) for m in marks] if isinstance(marks, list) else []


def _memory_kib(result: Mapping[str, Any], min_instances: int) -> dict[str, float] | None:
    """Memory per resident instance (KiB) by basis ("host", "user-space PSS"), or None when
    fewer than ``min_instances`` were held (a few instances give no stable figure)."""
    memory = result.get("memory")
    if not isinstance(memory, Mapping):
        memory = {}
    held = memory.get("resident_instances", result.get("memory_resident_instances"))
    if not isinstance(held, int) or held < min_instances:
        return None
    found: dict[str, float] = {}
    for basis, value in (
        ("host", memory.get("host_kib_per_instance", result.get("host_kib_per_instance"))),
        ("user-space PSS", memory.get("user_space_kib_per_instance", result.get("memory_kib_per_instance"))),
    ):
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            found[basis] = float(value)
    return found or None


def _density(dense: dict[str, float], sparse: dict[str, float]) -> tuple[float, float, str] | None:
    """Instances per GiB of each side on one basis for both (host where both have a host
    figure, else user-space PSS): a ratio across two bases would compare different things."""
    for basis in ("host", "user-space PSS"):
        if basis in dense and basis in sparse:
            return (1 << 20) / dense[basis], (1 << 20) / sparse[basis], basis
    return None


def _from_run(claim: Claim, run: _Run) -> _Figure | None:
    """``claim``'s figure in ``run``, or None where it has none."""
    if claim.workload != run.workload:
        return None
    if claim.scenario != "any" and run.scenario not in _BURSTS:
        return None
    measure = claim.measure
    main = run.results.get(claim.runtime or "")
    if main is None:
        return None
    other_class = next(
        (mark for mark in _marks(main) if any(word in mark for word in claim.not_comparable_marks)), None
    )
    rt = claim.runtime
    if measure in ("startup_p50", "startup_p99"):
        key = measure.rpartition("_")[2]
        value = _startup(main, key)
        if value is None:
            return None
        detail = f"{rt} cold start {key} = {_time(value)}"
        if claim.context_phase and (phase := _phase(main, claim.context_phase)) is not None:
            detail += f" (its {claim.context_phase} phase p50 {_time(phase)})"
        return _Figure(value, _time(value), detail, run.label, other_class)
    if measure == "phase_p50":
        value = _phase(main, claim.phase or "")
        if value is None:
            return None
        whole = _startup(main)
        detail = f"{rt}'s {claim.phase} phase p50 = {_time(value)}"
        if whole is not None:
            detail += f" (whole cold start p50 {_time(whole)})"
        return _Figure(value, _time(value), detail, run.label, other_class)
    versus = run.results.get(claim.versus or "")
    if measure == "startup_ratio":
        fast, slow = _startup(main), _startup(versus) if versus else None
        if not fast or not slow:
            return None
        ratio = slow / fast
        return _Figure(ratio, format_ratio(ratio),
                       f"{claim.versus} p50 {_time(slow)} / {rt} p50 {_time(fast)} = {format_ratio(ratio)}",
                       run.label, other_class)  # fmt: skip
    if measure == "density_ratio":
        dense = _memory_kib(main, claim.min_instances)
        sparse = _memory_kib(versus, claim.min_instances) if versus else None
        both = _density(dense, sparse) if dense and sparse else None
        if both is None:
            return None
        ratio = both[0] / both[1]
        return _Figure(ratio, format_ratio(ratio),
                       f"{rt} {both[0]:,.0f} vs {claim.versus} {both[1]:,.0f} instances per GiB of {both[2]}"
                       f" memory = {format_ratio(ratio)}", run.label, other_class)  # fmt: skip
    if measure == "memory_host_per_instance":
        found = _memory_kib(main, claim.min_instances)
        if not found:
            return None
        what, value = next(iter(found.items()))  # host where there is one
        shown = format_bytes(value * 1024)
        return _Figure(value * 1024, shown, f"{rt} {what} memory per resident instance = {shown}",
                       run.label, other_class)  # fmt: skip
    return None


def _size_figure(claim: Claim, sizes: Mapping[tuple[str, str], int] | None) -> _Figure | None:
    size = (sizes or {}).get((claim.workload, claim.artifact or ""))
    if size is None:
        return None
    return _Figure(float(size), f"{size:,} B",
                   f"{claim.workload}'s built {claim.artifact} artifact = {size:,} bytes ({format_bytes(size)})", "built artifact")  # fmt: skip


def _rtt_figure(claim: Claim) -> tuple[_Figure | None, str | None]:
    """The RTT floor between the claim's two places (computed, not measured), or why not."""
    try:
        from edgelab.whatif.placement import rtt_floor_ms
    except ImportError as exc:
        return None, f"the RTT floor needs edgelab.whatif.placement ({exc})"
    try:
        ms = float(rtt_floor_ms(claim.a or "", claim.b or "", claim.inflation))
    except (KeyError, ValueError, EdgelabError) as exc:
        return None, f"no RTT floor for {claim.a}–{claim.b}: {exc}"
    inflation = "" if claim.inflation == 1.0 else f" x {claim.inflation:g} path inflation"
    return _Figure(ms / 1e3, f"≥ {_time(ms / 1e3)}",
                   f"physics floor {claim.a}–{claim.b} = {_time(ms / 1e3)} (2 x great-circle distance / 200 km/ms"
                   f"{inflation}; computed, not measured)", "computed"), None  # fmt: skip


def _probe_figure(claim: Claim, probe: Mapping[str, Mapping[str, tuple[str, str]]] | None) -> _Figure | None:
    caps = (probe or {}).get(claim.runtime or "")
    if not caps:
        return None
    allowed = [cap for cap, (verdict, _) in caps.items() if verdict == "allowed"]
    errors = [cap for cap, (verdict, _) in caps.items() if verdict not in ("allowed", "denied")]
    if errors:
        return None
    denied = len(caps) - len(allowed)
    detail = f"the probe in {claim.runtime}, no grants: {denied} of {len(caps)} capabilities denied"
    if allowed:
        detail += f", allowed: {', '.join(allowed)}"
    return _Figure(float(len(allowed)), f"{denied}/{len(caps)} denied", detail, "edgelab claims --probe")


# -- verdicts ------------------------------------------------------------------------------------------
def _judge(claim: Claim, figure: _Figure) -> tuple[str, str]:
    """(verdict, why) of a comparable numeric claim against ``figure``: the module's rules."""
    low, high = claim.bounds()
    value = figure.value
    stated = f"the stated {claim.stated}"
    if claim.kind in ("at_most", "band") and high is not None and value > high:
        off = value / high
        verdict = "holds" if off <= DRIFT else "doesn't hold"
        relation = f"{format_ratio(off)} over {stated}"
    elif claim.kind in ("at_least", "band") and low is not None and value < low:
        off = low / value if value > 0 else math.inf
        verdict = "holds" if off <= DRIFT else "doesn't hold"
        relation = f"{format_ratio(off)} below {stated}"
    else:
        return "holds", f"here {figure.detail}: within {stated}" + _better(claim, value)
    if verdict == "holds":
        relation += f", within this machine's {DRIFT:g}x drift"
    return verdict, f"here {figure.detail}: {relation}"


def _better(claim: Claim, value: float) -> str:
    low, high = claim.bounds()
    if claim.kind == "at_most" and high and value < high / DRIFT:
        return f" ({format_ratio(high / value)} better)" if value > 0 else ""
    if claim.kind == "at_least" and low and value > low * DRIFT:
        return f" ({format_ratio(value / low)} beyond it)"
    return ""


def _lead(claim: Claim) -> str:
    """The why line's start: the claim's figure and what it says it measures."""
    return f"{claim.stated}: {claim.measures}"


def check_claim(
    claim: Claim,
    runs: Sequence[_Run],
    sizes: Mapping[tuple[str, str], int] | None = None,
    probe: Mapping[str, Mapping[str, tuple[str, str]]] | None = None,
) -> ClaimCheck:
    """One claim against the newest of ``runs`` that has its figure."""
    if claim.measure == "simulated":
        return ClaimCheck(claim, "not comparable", None,
                          f"{_lead(claim)}: not measured by any run here; simulated only, see "
                          f"edgelab whatif --preset {claim.preset} (every figure there is marked simulated)")  # fmt: skip
    if claim.measure == "none":
        return ClaimCheck(claim, "not comparable", None, f"{claim.stated}: {claim.differs}")
    figure: _Figure | None = None
    missing: str | None = None
    if claim.measure == "artifact_size":
        figure = _size_figure(claim, sizes)
        missing = f"{claim.workload}'s {claim.artifact} artifact is not built"
    elif claim.measure == "rtt_floor":
        figure, missing = _rtt_figure(claim)
    elif claim.measure == "capability_denials":
        figure = _probe_figure(claim, probe)
        missing = f"the capability probe did not run in {claim.runtime}"
    else:
        figure = next((f for run in runs if (f := _from_run(claim, run)) is not None), None)
    if not claim.comparable:
        why = f"{claim.stated}: {claim.differs}"
        if figure is not None:
            why += f"; here {figure.detail}"
        return ClaimCheck(claim, "not comparable", figure.text if figure else None, why,
                          figure.run if figure else None)  # fmt: skip
    if figure is None:
        what = missing or f"no run read has {_wanted(claim)}"
        return ClaimCheck(claim, "not measured yet", None, f"{what}: run {claim.command}")
    if figure.other_class:
        return ClaimCheck(claim, "not comparable", figure.text,
                          f"{_lead(claim)}; here another machine class: {figure.other_class}; {figure.detail}",
                          figure.run)  # fmt: skip
    if claim.measure == "capability_denials":
        verdict = "holds" if figure.value == 0 else "doesn't hold"
        return ClaimCheck(claim, verdict, figure.text, f"{_lead(claim)}; here {figure.detail}", figure.run)
    verdict, why = _judge(claim, figure)
    if claim.note:
        why += f"; {claim.note}"
    return ClaimCheck(claim, verdict, figure.text, f"{_lead(claim)}; {why}", figure.run)


def _wanted(claim: Claim) -> str:
    scenario = "a burst or ladder of" if claim.scenario != "any" else "a run of"
    if claim.measure in ("startup_ratio", "density_ratio"):
        return f"{scenario} {claim.workload} with both {claim.runtime} and {claim.versus}" + (
            f" each holding ≥ {claim.min_instances} instances" if claim.measure == "density_ratio" else ""
        )
    if claim.measure == "memory_host_per_instance":
        return f"{scenario} {claim.workload} holding ≥ {claim.min_instances} {claim.runtime} instances"
    what = f"the {claim.phase} phase" if claim.measure == "phase_p50" else "cold starts"
    return f"{scenario} {claim.workload} with {what} of {claim.runtime}"


def check_claims(
    runs: Sequence[Mapping[str, Any]],
    labels: Sequence[str] | None = None,
    *,
    claims: Sequence[Claim] | None = None,
    sizes: Mapping[tuple[str, str], int] | None = None,
    probe: Mapping[str, Mapping[str, tuple[str, str]]] | None = None,
) -> list[ClaimCheck]:
    """Every claim beside the newest of ``runs`` (loaded exports, newest first, as
    ``edgelab.history.load_export`` returns them) that has its figure. ``labels``: each run's
    ref (``last~2``, a path) for ``ClaimCheck.run``; ``sizes``: built artifacts' sizes in bytes
    by (workload, kind); ``probe``: ``capabilities.probe_report``'s answer. Runs of the fake
    runtime are skipped: they are not measurements."""
    prepared: list[_Run] = []
    for index, data in enumerate(runs):
        if (data.get("metadata") or {}).get("fake"):
            continue
        label = labels[index] if labels is not None and index < len(labels) else run_label(data)
        results = {
            str(entry["runtime"]): entry
            for entry in data.get("results") or []
            if isinstance(entry, Mapping) and isinstance(entry.get("runtime"), str)
        }
        prepared.append(_Run(label, data, results))
    return [check_claim(c, prepared, sizes, probe) for c in (load_claims() if claims is None else claims)]


# -- edgelab claims -----------------------------------------------------------------------------------
def add_parser(sub: Any) -> None:
    claims = sub.add_parser(
        "claims",
        help="published claims beside what this machine measured, with a verdict",
        description="Each published claim (edgelab/data/claims.toml) beside the figure this machine"
        f" measured, from the newest of the last {HISTORY_RUNS} saved runs that has it (or the"
        " runs --from names): holds, doesn't hold, not comparable, not measured yet.",
    )
    claims.add_argument("--from", dest="from_refs", action="append", metavar="REF",
                        help="read this run only (an export's path, last, last~N); repeat for more, newest first")  # fmt: skip
    output = claims.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="machine-readable, with the sources' titles and URLs")
    output.add_argument("--markdown", action="store_true", help="the table as Markdown, with the sources below it")
    claims.add_argument("--probe", action="store_true",
                        help="also run the capability probe in wasm (~3 s) for the deny-by-default claim")  # fmt: skip


def load_runs(refs: Sequence[str] | None = None) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """(runs, their labels, skipped-run notes). ``--from``: every ref must be an export, else one
    line (exit 2) before anything is printed; the history: an unreadable file is skipped, said."""
    from edgelab.history import list_runs, load_export, resolve

    runs: list[dict[str, Any]] = []
    labels: list[str] = []
    notes: list[str] = []
    if refs:
        for ref in refs:
            runs.append(load_export(resolve(ref), ref))
            labels.append(ref)
    else:
        for index, path in enumerate(list_runs()[:HISTORY_RUNS]):
            ref = "last" if index == 0 else f"last~{index}"
            try:
                runs.append(load_export(path, ref))
            except EdgelabError as exc:
                notes.append(f"skipped {exc}")
                continue
            labels.append(ref)
    for run, label in zip(runs, labels, strict=True):
        if (run.get("metadata") or {}).get("fake"):
            notes.append(f"skipped {label}: a run of the fake runtime, not a measurement")
    return runs, labels, notes


def artifact_sizes(claims: Sequence[Claim]) -> dict[tuple[str, str], int]:
    """Sizes of the built artifacts the size claims name (nothing is built here)."""
    from edgelab.catalog import artifact
    from edgelab.workloads import get_workload

    sizes: dict[tuple[str, str], int] = {}
    for claim in claims:
        if claim.measure != "artifact_size" or (claim.workload, claim.artifact or "") in sizes:
            continue
        try:
            found = artifact(get_workload(claim.workload), claim.artifact or "")
        except (EdgelabError, OSError):
            continue
        if found.built and found.size_bytes is not None:
            sizes[(claim.workload, claim.artifact or "")] = found.size_bytes
    return sizes


#: The name the TUI's claims view first imported (kept so it keeps working).


def to_markdown(checks: Sequence[ClaimCheck]) -> str:
    """The table as Markdown (for a README), the sources and the rules below it."""

    def cell(text: str | None) -> str:
        return (text or "–").replace("|", "\\|").replace("\n", " ")

    lines = ["| claim | source | stated | measured here | verdict | run | why |", "|---|---|---|---:|---|---|---|"]
    for c in checks:
        lines.append("| " + " | ".join(cell(x) for x in (c.claim.short, c.claim.source.key, c.claim.stated,
                                                        c.measured, c.verdict, c.run, c.why)) + " |")  # fmt: skip
    lines.append("")
    sources = {c.claim.source.key: c.claim.source for c in checks}
    lines += [f"- **{s.key}**: {s.title}" + (f" <{s.url}>" if s.url else "") for s in sources.values()]
    lines.append("")
    lines.append(f"holds: within the claim's stated band or better, or past it by at most {DRIFT:g}x (this VM's"
                 " drift); doesn't hold: farther; not comparable: another quantity or machine class.")  # fmt: skip
    return "\n".join(lines) + "\n"


_COLOURS = {"holds": "green", "doesn't hold": "red", "not comparable": "yellow", "not measured yet": "dim"}


def cmd_claims(args: argparse.Namespace) -> int:
    runs, labels, notes = load_runs(args.from_refs)
    claims = load_claims()
    probe = None
    if args.probe:
        from edgelab.capabilities import probe_report

        probe = probe_report(("wasm",))
    checks = check_claims(runs, labels, claims=claims, sizes=artifact_sizes(claims), probe=probe)
    for note in notes:
        print(f"edgelab claims: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps({
            "rules": {"drift_factor": DRIFT, "verdicts": list(VERDICTS),
                      "holds": f"within the claim's stated band or better, or past it by at most {DRIFT:g}x"},
            "runs": [{"ref": label, "run": run_label(run)} for run, label in zip(runs, labels, strict=True)],
            "claims": [check.as_json() for check in checks],
        }, indent=2))  # fmt: skip
        return 0
    if args.markdown:
        sys.stdout.write(to_markdown(checks))
        return 0
    from rich import box
    from rich.table import Table

    from edgelab.commands import _Console

    table = Table(title="published claims beside this machine's figures", box=box.SIMPLE_HEAD)
    for name in ("claim", "src", "stated", "measured here", "verdict", "run", "why"):
        table.add_column(name, overflow="fold")
    for check in checks:
        colour = _COLOURS[check.verdict]
        table.add_row(check.claim.short, check.claim.source.key, check.claim.stated, check.measured or "–",
                      f"[{colour}]{check.verdict}[/]", check.run or "–", check.why)  # fmt: skip
    console = _Console()
    console.print(table)
    counts = {verdict: sum(1 for c in checks if c.verdict == verdict) for verdict in VERDICTS}
    console.print(", ".join(f"{n} {verdict}" for verdict, n in counts.items() if n), highlight=False)
    sources = {c.claim.source.key: c.claim.source for c in checks}
    console.print(
        "sources: " + "; ".join(f"{s.key} \"{s.title}\"" + (f" {s.url}" if s.url else "") for s in sources.values()),
        highlight=False, soft_wrap=True,
    )
    console.print(
        f"holds: within the claim's stated band or better, or past it by ≤ {DRIFT:g}x (this VM's drift);"
        " doesn't hold: farther; rules in edgelab/claims.py", highlight=False, soft_wrap=True,
    )
    if not runs:
        console.print("no run saved yet: each 'not measured yet' row names the command that measures it",
                      highlight=False)  # fmt: skip
    return 0
