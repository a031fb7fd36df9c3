"""``edgelab compare``: did cold starts get faster or slower between runs, and is it more than noise?

Modelled on ``pyperf compare_to``: what differs between the runs (host, versions, settings) is
listed first, because a change there explains a change in the figures before any code does;
then, per runtime of the workload, p50 and p99 before and after, the change as a ratio of the
p50s, and a rank test on the per-sample startups (Mann-Whitney U, two-sided). The rank test
asks whether one run's cold starts tend to be longer than the other's without assuming a
shape for their distribution: startup times are skewed, with long tails, so a t-test's
normality assumption does not hold. With more than two runs each is compared to the first.
"""

from __future__ import annotations

import argparse
import json
import math
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgelab.errors import UsageError
from edgelab.history import load_export, local_time, resolve, shown_path, text_table
from edgelab.stats import format_bytes_or_dash, format_duration_ns, format_ratio

ALPHA = 0.05
TEST_NAME = "Mann-Whitney U, two-sided"
#: Metadata sections whose every differing key is listed before the figures.
COMPARED_SECTIONS = ("host", "versions", "settings")
#: Per-runtime facts that change what a figure means when they differ.
COMPARED_RUNTIME_KEYS = ("startup_includes", "memory_metric")


@dataclass(frozen=True)
class LoadedRun:
    """One export, with the label (A, B, ...) it has in the tables and the ref it was given by."""

    label: str
    ref: str
    path: Path
    data: dict[str, Any]

    @property
    def metadata(self) -> dict[str, Any]:
        return self.data["metadata"]  # type: ignore[no-any-return]

    @property
    def workload(self) -> str:
        return str(self.metadata["workload"].get("name", "?"))

    def entries(self) -> dict[str, dict[str, Any]]:
        """Each runtime's result entry, by runtime name, in the run's order."""
        return {entry["runtime"]: entry for entry in self.data["results"]}

    def measured(self) -> list[str]:
        """The runtimes with at least one successful cold start."""
        return [name for name, entry in self.entries().items() if entry.get("startup_us")]

    def as_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "ref": self.ref,
            "path": str(self.path),
            "started": self.metadata.get("started"),
            "workload": self.workload,
            "scenario": self.metadata["settings"].get("scenario"),
        }


@dataclass(frozen=True)
class RankTest:
    """A two-sided Mann-Whitney U test of two runs' startup samples."""

    u: float
    p: float
    n_reference: int
    n_changed: int
    alpha: float = ALPHA

    @property
    def significant(self) -> bool:
        return self.p < self.alpha

    @property
    def smallest_p(self) -> float:
        """The smallest p these sample counts can give (every sample of one run below every
        sample of the other): 2 / C(n + m, n). At or above alpha, no change could show."""
        return min(1.0, 2 / math.comb(self.n_reference + self.n_changed, self.n_reference))

    def describe(self) -> str:
        p = "p<0.001" if self.p < 0.001 else f"p={self.p:.3g}"
        if self.significant:
            return f"significant, {p}"
        if self.smallest_p >= self.alpha:
            return f"not significant, {p}: too few samples to tell (use --count 10 or more)"
        return f"not significant, {p}"

    def as_json(self) -> dict[str, Any]:
        return {"test": TEST_NAME, "u": self.u, "p": self.p, "alpha": self.alpha, "significant": self.significant,
                "n_reference": self.n_reference, "n_changed": self.n_changed, "smallest_p": self.smallest_p}


def rank_test(reference: Sequence[float], changed: Sequence[float], alpha: float = ALPHA) -> RankTest | None:
    """Mann-Whitney U on two sets of samples, or None when either set is empty.

    scipy's ``mannwhitneyu`` (method "auto": the exact distribution for up to 8 samples
    without ties, else the normal approximation with tie and continuity correction). scipy is
    imported here, not at the top: ``edgelab --help`` and ``edgelab run`` never pay for it.
    """
    if not reference or not changed:
        return None
    from scipy.stats import mannwhitneyu

    result = mannwhitneyu(list(changed), list(reference), alternative="two-sided")
    p = float(result.pvalue)
    return RankTest(u=float(result.statistic), p=1.0 if p != p else p, n_reference=len(reference),
                    n_changed=len(changed), alpha=alpha)


@dataclass(frozen=True)
class Difference:
    """One metadata key whose value differs between the reference run and another."""

    key: str
    reference: Any
    changed: Any

    def as_json(self) -> dict[str, Any]:
        return {"key": self.key, "reference": self.reference, "changed": self.changed}


def _value_text(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return ",".join(f"{k}={_value_text(v)}" for k, v in value.items()) or "(none)"
    if isinstance(value, list):
        return ",".join(_value_text(v) for v in value) or "(none)"
    return str(value)


def differences(reference: LoadedRun, changed: LoadedRun) -> list[Difference]:
    """Host, versions, settings, workload and what each shared runtime's figures include, where
    the two runs differ (run identity such as start time and session is never a difference)."""
    found: list[Difference] = []

    def compare(key: str, before: Any, after: Any) -> None:
        if before != after:
            found.append(Difference(key, before, after))

    ref_meta, new_meta = reference.metadata, changed.metadata
    compare("workload", reference.workload, changed.workload)
    for section in COMPARED_SECTIONS:
        before = ref_meta.get(section) or {}
        after = new_meta.get(section) or {}
        for key in list(before) + [k for k in after if k not in before]:
            compare(f"{section}.{key}", before.get(key), after.get(key))
    compare("fake runtimes", bool(ref_meta.get("fake")), bool(new_meta.get("fake")))
    compare("units", ref_meta.get("units"), new_meta.get("units"))
    ref_entries, new_entries = reference.entries(), changed.entries()
    for name in ref_entries:
        if name in new_entries:
            for key in COMPARED_RUNTIME_KEYS:
                before, after = ref_entries[name].get(key), new_entries[name].get(key)
                if before is not None and after is not None:  # absent: nothing measured to mean anything
                    compare(f"{name}.{key}", before, after)
    return found


@dataclass(frozen=True)
class StartupFigures:
    """What one run says about one runtime's cold starts (microseconds, as exported)."""

    n: int
    p50_us: float
    p99_us: float
    samples_us: tuple[float, ...]

    @classmethod
    def from_entry(cls, entry: dict[str, Any]) -> StartupFigures | None:
        startup = entry.get("startup_us")
        if not startup:
            return None
        samples = tuple(float(v) for v in entry.get("samples_us") or ())
        return cls(n=int(entry.get("ok") or len(samples)), p50_us=float(startup["p50"]),
                   p99_us=float(startup.get("p99", startup["p50"])), samples_us=samples)

    def as_json(self) -> dict[str, Any]:
        return {"n": self.n, "p50_us": self.p50_us, "p99_us": self.p99_us}


def _change_words(ratio: float | None, up: str, down: str) -> str:
    if ratio is None or ratio <= 0:
        return "–"
    if ratio == 1:
        return "same"
    return f"{format_ratio(ratio)} {up}" if ratio > 1 else f"{format_ratio(1 / ratio)} {down}"


@dataclass(frozen=True)
class StartupChange:
    """One runtime's cold starts in the reference run and in another."""

    runtime: str
    reference: StartupFigures
    changed: StartupFigures
    test: RankTest | None

    @property
    def ratio(self) -> float | None:
        """Changed p50 over reference p50: above 1 is slower."""
        return self.changed.p50_us / self.reference.p50_us if self.reference.p50_us > 0 else None

    @property
    def change(self) -> str:
        return _change_words(self.ratio, "slower", "faster")

    @property
    def significance(self) -> str:
        if self.test is not None:
            return self.test.describe()
        return "untested: no samples in the export"

    def as_json(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime,
            "reference": self.reference.as_json(),
            "changed": self.changed.as_json(),
            "ratio": self.ratio,
            "change": self.change,
            "rank_test": self.test.as_json() if self.test else None,
        }


@dataclass(frozen=True)
class MemoryFigures:
    """One run's memory per resident instance for one runtime (KiB, as exported)."""

    instances: int | None
    host_kib: float | None
    host_basis: str | None
    user_space_kib: float | None  # None: the PSS growth was no figure (<= 0 or within its noise)
    user_space_metric: str | None

    @classmethod
    def from_entry(cls, entry: dict[str, Any]) -> MemoryFigures | None:
        """The entry's figures, or None if it has neither (no ramp, or both within noise)."""
        pss = entry.get("memory_kib_per_instance")
        host = entry.get("host_kib_per_instance")
        pss_figure = float(pss) if isinstance(pss, (int, float)) and not isinstance(pss, bool) else None
        host_figure = float(host) if isinstance(host, (int, float)) and not isinstance(host, bool) else None
        if pss_figure is None and host_figure is None:
            return None
        return cls(
            instances=entry.get("memory_resident_instances"),
            host_kib=host_figure,
            host_basis=entry.get("host_basis"),
            user_space_kib=pss_figure,
            user_space_metric=entry.get("memory_metric"),
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "resident_instances": self.instances,
            "host_kib_per_instance": self.host_kib,
            "host_basis": self.host_basis,
            "user_space_kib_per_instance": self.user_space_kib,
            "user_space_metric": self.user_space_metric,
        }


@dataclass(frozen=True)
class MemoryChange:
    runtime: str
    reference: MemoryFigures
    changed: MemoryFigures

    @property
    def host_ratio(self) -> float | None:
        before, after = self.reference.host_kib, self.changed.host_kib
        return after / before if before and after and before > 0 and after > 0 else None

    @property
    def user_space_ratio(self) -> float | None:
        before, after = self.reference.user_space_kib, self.changed.user_space_kib
        return after / before if before and after and before > 0 and after > 0 else None

    def as_json(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime,
            "reference": self.reference.as_json(),
            "changed": self.changed.as_json(),
            "host_ratio": self.host_ratio,
            "user_space_ratio": self.user_space_ratio,
        }


@dataclass(frozen=True)
class Comparison:
    """One run against the reference (the first run named)."""

    reference: LoadedRun
    changed: LoadedRun
    differences: list[Difference]
    startup: list[StartupChange]
    #: Runtime -> why it is not compared (measured in one run only, or no successful start).
    not_compared: dict[str, str] = field(default_factory=dict)
    memory: list[MemoryChange] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference.label,
            "changed": self.changed.label,
            "workload": self.reference.workload,
            "differences": [d.as_json() for d in self.differences],
            "startup": [s.as_json() for s in self.startup],
            "not_compared": self.not_compared,
            "memory": [m.as_json() for m in self.memory],
        }


def _runtime_list(run: LoadedRun) -> str:
    return ", ".join(run.measured()) or "none with a successful cold start"


def compare_runs(reference: LoadedRun, changed: LoadedRun) -> Comparison:
    """The comparison of ``changed`` against ``reference``; a UsageError when they share no
    runtime of the same workload with successful cold starts in both."""
    common = [name for name in reference.measured() if name in changed.measured()]
    if reference.workload != changed.workload or not common:
        both = (f" ({reference.ref}: {reference.workload} on {_runtime_list(reference)};"
                f" {changed.ref}: {changed.workload} on {_runtime_list(changed)})")  # fmt: skip
        if reference.workload != changed.workload:
            raise UsageError(f"{changed.ref} and {reference.ref} measure different workloads{both}:"
                             " compare sets runs of one workload side by side")  # fmt: skip
        raise UsageError(f"{changed.ref} and {reference.ref} have no runtime in common{both}")
    ref_entries, new_entries = reference.entries(), changed.entries()
    startup: list[StartupChange] = []
    memory: list[MemoryChange] = []
    for name in common:
        before = StartupFigures.from_entry(ref_entries[name])
        after = StartupFigures.from_entry(new_entries[name])
        assert before is not None and after is not None  # measured() guarantees a summary
        startup.append(StartupChange(name, before, after, rank_test(before.samples_us, after.samples_us)))
        mem_before = MemoryFigures.from_entry(ref_entries[name])
        mem_after = MemoryFigures.from_entry(new_entries[name])
        if mem_before and mem_after:
            memory.append(MemoryChange(name, mem_before, mem_after))
    not_compared: dict[str, str] = {}
    for run, other in ((reference, changed), (changed, reference)):
        for name in run.entries():
            if name in common or name in not_compared:
                continue
            if name not in other.entries():
                not_compared[name] = f"measured in {run.label} only"
            else:
                failed = [r for r in (reference, changed) if name not in r.measured()]
                reason = next((r.entries()[name].get("error") for r in failed if r.entries()[name].get("error")), None)
                not_compared[name] = f"no successful cold start in {', '.join(r.label for r in failed)}" + (
                    f" ({reason})" if reason else "")
    return Comparison(reference, changed, differences(reference, changed), startup, not_compared, memory)


def load_runs(refs: Iterable[str]) -> list[LoadedRun]:
    """Every run named, resolved and parsed before anything is printed."""
    refs = list(refs)
    if len(refs) < 2:
        raise UsageError("compare needs two runs or more (e.g. edgelab compare last~1 last)")
    if len(refs) > len(string.ascii_uppercase):
        raise UsageError(f"compare takes at most {len(string.ascii_uppercase)} runs, not {len(refs)}")
    runs = []
    for label, ref in zip(string.ascii_uppercase, refs, strict=False):
        path = resolve(ref)
        runs.append(LoadedRun(label, ref, path, load_export(path, ref)))
    return runs


def compare_all(runs: Sequence[LoadedRun]) -> list[Comparison]:
    """Each run after the first against the first."""
    return [compare_runs(runs[0], run) for run in runs[1:]]


# -- output ---------------------------------------------------------------------------------------
def _us(value: float | None) -> str:
    return format_duration_ns(value * 1_000) if value is not None else "–"


def _kib(value: float | None) -> str:
    return format_bytes_or_dash(value * 1024 if value is not None else None)


def render(runs: Sequence[LoadedRun], comparisons: Sequence[Comparison]) -> list[str]:
    """The text ``edgelab compare`` prints: the runs, then per comparison its differences, the
    startup table and, where both runs held instances, the memory table."""
    lines = text_table([
        [run.label, local_time(run.metadata.get("started")), run.workload,
         str(run.metadata["settings"].get("scenario", "?")),
         shown_path(run.path) if Path(run.ref).expanduser() == run.path else f"{run.ref} = {shown_path(run.path)}"]
        for run in runs
    ])
    for comparison in comparisons:
        a, b = comparison.reference.label, comparison.changed.label
        lines.append("")
        if comparison.differences:
            lines.append(f"{b} differs from {a} in:")
            width = max(len(d.key) for d in comparison.differences)
            lines += [f"  {d.key:<{width}}  {_value_text(d.reference)} → {_value_text(d.changed)}"
                      for d in comparison.differences]
        else:
            lines.append(f"{b} and {a}: same host, versions and settings.")
        for run in (comparison.reference, comparison.changed):
            if run.metadata.get("cancelled"):
                lines.append(f"note: {run.label} was cancelled; its figures cover the launches before that.")
            if run.metadata.get("fake"):
                lines.append(f"note: {run.label} ran on the fake runtime; its figures are not measurements.")
        lines.append("")
        lines.append(
            f"Cold start of {comparison.reference.workload} (launch call → first response byte), {b} against {a};"
            f" rank test on the samples: {TEST_NAME}, alpha {ALPHA}:"
        )
        rows = [["runtime", f"n {a}", f"n {b}", f"p50 {a}", f"p50 {b}", f"p99 {a}", f"p99 {b}", "change (p50)", "significance"]]
        for s in comparison.startup:
            rows.append([s.runtime, str(s.reference.n), str(s.changed.n), _us(s.reference.p50_us), _us(s.changed.p50_us),
                         _us(s.reference.p99_us), _us(s.changed.p99_us), s.change, s.significance])
        lines += text_table(rows, right=set(range(1, 7)))
        for name, why in comparison.not_compared.items():
            lines.append(f"{name}: not compared, {why}")
        if comparison.memory:
            lines.append("")
            lines.append(f"Memory per resident instance, {b} against {a} (host: what the machine loses; user-space: PSS):")
            rows = [["runtime", f"held {a}", f"held {b}", f"host {a}", f"host {b}", "change (host)", f"user-space {a}", f"user-space {b}",
                     "change (user-space)"]]
            for m in comparison.memory:
                rows.append([
                    m.runtime,
                    f"{m.reference.instances:,}" if m.reference.instances is not None else "–",
                    f"{m.changed.instances:,}" if m.changed.instances is not None else "–",
                    _kib(m.reference.host_kib), _kib(m.changed.host_kib),
                    _change_words(m.host_ratio, "more", "less"),
                    _kib(m.reference.user_space_kib), _kib(m.changed.user_space_kib),
                    _change_words(m.user_space_ratio, "more", "less"),
                ])
            lines += text_table(rows, right={1, 2, 3, 4, 6, 7})
            for m in comparison.memory:
                if m.reference.host_basis != m.changed.host_basis:
                    lines.append(f"{m.runtime}: host figure in {a} is {m.reference.host_basis or 'not measured'};"
                                 f" in {b} {m.changed.host_basis or 'not measured'}")
    return lines


def to_json(runs: Sequence[LoadedRun], comparisons: Sequence[Comparison]) -> dict[str, Any]:
    return {
        "runs": [run.as_json() for run in runs],
        "test": TEST_NAME,
        "alpha": ALPHA,
        "units": "startup in microseconds (us), memory in KiB (1024 bytes); ratio = changed / reference",
        "comparisons": [c.as_json() for c in comparisons],
    }


def cmd_compare(args: argparse.Namespace) -> int:
    runs = load_runs(args.runs)
    comparisons = compare_all(runs)
    if args.json:
        print(json.dumps(to_json(runs, comparisons), indent=2))
    else:
        print("\n".join(render(runs, comparisons)))
    return 0
