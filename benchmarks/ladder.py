"""The whole cold-start ladder, each rung's lab figure against a raw baseline of the same work.

For every rung usable here (or ``--rungs``): blocks of the lab (``Lab.run``, a burst of that
rung alone: the code path of ``edgelab run -r RUNG``) alternate in pairs with blocks of the
rung family's raw baseline, ``raw_cold_starts(rung, workload, n)`` from
benchmarks/{container,subprocess,wasm,isolate,microvm}_raw.py (owned by each family: a bare
mini-racer loop for isolates, ``docker run --runtime runsc`` through the SDK for gVisor, a bare
fork-server loop ...), the order within a pair flipped every pair and the rungs' order flipped
every round, as benchmarks/startup.py does. Each raw block asks for one launch more than it
keeps and drops the first, as the lab's warmup does.

The headline ratio is the median of the *paired* block ratios (a lab block against the raw
block beside it in time, so the VM's drift between pairs cancels) with a 95% bootstrap
interval; the pooled ratio of medians is beside it. Target: lab/raw <= 1.10 per rung.

Block sizes follow each rung's pace (about BLOCK_S of launches, at least one), and each rung's
pairs fit ``--budget-s`` (at least MIN_PAIRS): a microVM under TCG (~3 s a launch) gets a few
one-launch blocks, a Wasm slot (~2 µs) hundreds of launches a block. Then one ramp per rung
(``--resident``, fewer for slow rungs) prices the idle cost of a ready instance, both figures.

Prints the ladder as a Markdown table for the README (stdout); progress on stderr.

    python benchmarks/ladder.py [--workload hello] [--rungs a,b] [--budget-s 20] [--pin off|auto|CPU] [--json F]
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from robust import machine_load, median_ci, ratio_of_medians_ci
from startup import pin

from edgelab.errors import EdgelabError
from edgelab.lab import Lab, Settings
from edgelab.ladder import plan_rung
from edgelab.results import RuntimeResult
from edgelab.runtimes import registry
from edgelab.stats import format_bytes, format_duration_ns, summarize

TARGET_RATIO = 1.10
#: A block aims at about this much wall time of launches (at least one launch).
BLOCK_S = 0.1
BLOCK_MAX = 500
MIN_PAIRS = 3
SLOW_S = 1.0
MAX_PAIRS = 12
RAW_MODULES = ("container", "subprocess", "wasm", "isolate", "microvm")

RawFunction = Callable[[str, str, int], list[int]]


def raw_baseline(rung: str) -> tuple[RawFunction | None, str]:
    """The family's ``raw_cold_starts`` and "", or None and why there is none."""
    family = registry.spec(rung).family
    if family not in RAW_MODULES:
        return None, f"no raw baseline for the {family} family"
    path = Path(__file__).resolve().parent / f"{family}_raw.py"
    if not path.exists():
        return None, f"no raw baseline yet (benchmarks/{family}_raw.py)"
    try:
        module = importlib.import_module(f"{family}_raw")
    except Exception as exc:  # noqa: BLE001 - another family's file: say why, measure the rest
        return None, f"benchmarks/{family}_raw.py does not import: {type(exc).__name__}: {exc}"
    function = getattr(module, "raw_cold_starts", None)
    if function is None:
        return None, f"no raw baseline yet (benchmarks/{family}_raw.py has no raw_cold_starts)"
    return function, ""


@dataclass
class RungBench:
    name: str
    block: int
    pairs: int
    #: A launch's whole wall cost (teardown, a ready pool's refill), s: what a ramp pays too.
    launch_s: float
    raw: RawFunction | None
    why_no_raw: str
    lab_ns: list[int] = field(default_factory=list)
    raw_ns: list[int] = field(default_factory=list)
    pair_ratios: list[float] = field(default_factory=list)
    raw_error: str = ""
    lab_result: RuntimeResult | None = None
    #: Lab launches that failed (and the first one's line): said in the row, never dropped.
    lab_failed: int = 0
    lab_error: str = ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="hello")
    parser.add_argument("--rungs", default=None, help="comma-separated (default: every registered rung)")
    parser.add_argument("--budget-s", type=float, default=20.0, help="seconds of lab+raw launches per rung")
    parser.add_argument("--resident", type=int, default=200, help="at most this many instances per rung's ramp (fewer for slow rungs)")
    parser.add_argument("--pin", default="off", help="off (default), auto (the last allowed CPU), or a CPU number")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args()
    if args.budget_s <= 0 or args.resident < 0:
        print("edgelab: --budget-s must be positive and --resident 0 or more", file=sys.stderr)
        return 2
    try:
        rungs = registry.parse_runtimes(args.rungs) if args.rungs else registry.names()
    except EdgelabError as exc:
        print(f"edgelab: {exc}", file=sys.stderr)
        return 2
    pinned = pin(args.pin)
    lab = Lab()
    try:
        return _bench(lab, args, rungs, pinned)
    finally:
        lab.close()


def _lab_block(lab: Lab, workload: str, rung: str, count: int) -> tuple[list[int], RuntimeResult]:
    result = lab.run(Settings(workload=workload, runtimes=(rung,), count=count, warmup=1))
    runtime = result.runtimes[rung]
    return [s.startup_ns for s in runtime.measured if s.ok and s.startup_ns is not None], runtime


def _bench(lab: Lab, args: argparse.Namespace, rungs: tuple[str, ...], pinned: str) -> int:
    workload = args.workload
    load_before = machine_load()
    # Price each rung: one untimed block (prepare, warm), then two timed ones.
    benches: dict[str, RungBench] = {}
    unusable: dict[str, str] = {}
    for rung in rungs:
        _, first = _lab_block(lab, workload, rung, 1)
        if first.error:
            unusable[rung] = first.error + (f" (fix: {first.fix})" if first.fix else "")
            print(f"{rung}: unavailable: {unusable[rung]}", file=sys.stderr)
            continue
        # Two timed blocks, of 1 + 1 and 1 + 3 launches: the slope is a launch's whole cost
        # (teardown and a ready pool's refill included), the intercept a run's own cost.
        # A rung slower than SLOW_S a launch (a microVM under TCG) skips the second block: a
        # run's own cost is noise beside its launches.
        walls = []
        for count in (1, 3):
            started = time.monotonic()
            _, timed = _lab_block(lab, workload, rung, count)
            walls.append(time.monotonic() - started)
            if walls[0] / 2 > SLOW_S:
                break
        startups = [s.startup_ns for s in timed.samples if s.ok and s.startup_ns]
        startup_s = min(startups) / 1e9 if startups else 0.0
        slope = (walls[1] - walls[0]) / 2 if len(walls) == 2 else walls[0] / 2
        per_launch = max(startup_s, slope, 1e-7)
        overhead_s = max(0.0, walls[0] - 2 * per_launch)
        raw, why = raw_baseline(rung)
        block = max(1, min(BLOCK_MAX, int(BLOCK_S / per_launch)))
        sides = 2 if raw is not None else 1
        pair_s = sides * (block * per_launch + overhead_s)
        pairs = max(MIN_PAIRS, min(MAX_PAIRS, int(args.budget_s / max(pair_s, 1e-6))))
        benches[rung] = RungBench(rung, block, pairs, per_launch, raw, why)
        print(f"{rung}: ~{format_duration_ns(per_launch * 1e9)} a launch (wall) -> {pairs} pairs of {block}"
              + ("" if raw else f"; {why}"), file=sys.stderr)

    flip = False
    rounds = max((b.pairs for b in benches.values()), default=0)
    order = list(benches)
    for round_index in range(rounds):
        for rung in order if round_index % 2 == 0 else order[::-1]:
            bench = benches[rung]
            if round_index >= bench.pairs:
                continue
            got: dict[str, list[int]] = {}
            for side in (("raw", "lab") if flip else ("lab", "raw")):
                if side == "lab":
                    got["lab"], bench.lab_result = _lab_block(lab, workload, rung, bench.block)
                    failed = bench.lab_result.failed
                    if failed or bench.lab_result.error:
                        bench.lab_failed += failed
                        bench.lab_error = bench.lab_error or (bench.lab_result.first_error() or "")
                        print(f"{rung}: lab block: {failed} failed; {bench.lab_result.first_error()}", file=sys.stderr)
                elif bench.raw is not None and not bench.raw_error:
                    try:
                        got["raw"] = list(bench.raw(rung, workload, bench.block + 1))[1:]
                    except Exception as exc:  # noqa: BLE001 - a family's baseline failing: say so, go on
                        bench.raw_error = f"raw baseline failed: {type(exc).__name__}: {exc}"
                        print(f"{rung}: {bench.raw_error}", file=sys.stderr)
            flip = not flip
            bench.lab_ns += got["lab"]
            bench.raw_ns += got.get("raw", [])
            if got["lab"] and got.get("raw"):
                bench.pair_ratios.append(statistics.median(got["lab"]) / statistics.median(got["raw"]))
        print(f"round {round_index + 1}/{rounds} done ({machine_load()})", file=sys.stderr)

    memory = _ramps(lab, workload, benches, args)
    return _report(benches, unusable, memory, workload, pinned, load_before, args)


def _ramps(lab: Lab, workload: str, benches: dict[str, RungBench], args: argparse.Namespace) -> dict[str, Any]:
    """One ramp over every rung (each ramps alone, in turn), sized by its pace within budget."""
    resident: dict[str, int] = {}
    for rung, bench in benches.items():
        resident[rung] = plan_rung(rung, bench.launch_s, 0.0, 1, args.resident, args.budget_s).resident
    resident = {rung: n for rung, n in resident.items() if n > 0}
    if not resident:
        return {}
    print(f"ramps: {', '.join(f'{r} x{n}' for r, n in resident.items())}", file=sys.stderr)
    result = lab.run(Settings(workload=workload, scenario="ramp", runtimes=tuple(resident), resident=resident, warmup=0))
    for rung in resident:
        runtime = result.runtimes[rung]
        if runtime.memory is None or runtime.memory.limit:
            why = runtime.memory.limit if runtime.memory else runtime.first_error() or "no instance held"
            print(f"{rung}: ramp: {why}", file=sys.stderr)
    return {rung: result.runtimes[rung].memory for rung in resident}


def _report(
    benches: dict[str, RungBench],
    unusable: dict[str, str],
    memory: dict[str, Any],
    workload: str,
    pinned: str,
    load_before: str,
    args: argparse.Namespace,
) -> int:
    rows = []
    for rung, bench in benches.items():
        summary = summarize(bench.lab_ns)
        rows.append((summary.p50_ns if summary else float("inf"), rung, bench, summary))
    rows.sort(key=lambda row: row[0])
    print(f"\n**The cold-start ladder** — `python benchmarks/ladder.py` ({workload}; lab = a burst of the rung alone,"
          f" raw = its family's bare loop of the same work, in alternating block pairs; {pinned};"
          f" {load_before} before, {machine_load()} after; lab/raw: median of paired block ratios [95% bootstrap"
          " interval], pooled ratio of medians beside it; idle: memory per ready instance after a short ramp):\n")
    print("| rung | n | p50 | p99 | raw p50 | lab/raw (paired) | pooled | target ≤ 1.10 | idle host | idle user-space | skips | marks |")
    print("|---|---:|---:|---:|---:|---:|---:|:---:|---:|---:|---|---|")
    report: dict[str, Any] = {"workload": workload, "pinned": pinned, "load_before": load_before, "rungs": {}, "unusable": unusable}
    missed = 0
    for _, rung, bench, summary in rows:
        missed += bench.lab_failed > 0
        result = bench.lab_result
        marks = "; ".join(result.marks) if result else ""
        skips = result.skips if result else ""
        m = memory.get(rung)
        host = m.host_bytes_per_instance if m else None
        idle_host = format_bytes(host) if host is not None else "–"
        idle_user = format_bytes(m.pss_bytes_per_instance) if m else "–"
        p50 = format_duration_ns(summary.p50_ns) if summary else "–"
        p99 = format_duration_ns(summary.p99_ns) if summary else "–"
        if bench.pair_ratios:
            paired = median_ci(bench.pair_ratios)
            pooled = ratio_of_medians_ci(bench.lab_ns, bench.raw_ns)
            ok = paired.value <= TARGET_RATIO
            missed += not ok
            ratio, pooled_text, verdict = paired.ratio_text(), pooled.ratio_text(), "ok" if ok else "MISSED"
        else:
            ratio, pooled_text, verdict = bench.raw_error or bench.why_no_raw, "–", "–"
        n = f"{len(bench.lab_ns)}" + (f" ({bench.lab_failed} failed: {bench.lab_error})" if bench.lab_failed else "")
        raw_p50 = format_duration_ns(statistics.median(bench.raw_ns)) if bench.raw_ns else "–"
        print(f"| {rung} | {n} | {p50} | {p99} | {raw_p50} | {ratio} | {pooled_text} | {verdict} | {idle_host} | {idle_user} | {skips} | {marks} |")
        report["rungs"][rung] = {
            "n": len(bench.lab_ns), "lab_failed": bench.lab_failed, "lab_error": bench.lab_error or None, "raw_n": len(bench.raw_ns), "pairs": len(bench.pair_ratios), "block": bench.block,
            "lab_p50_us": summary.p50_ns / 1e3 if summary else None, "lab_p99_us": summary.p99_ns / 1e3 if summary else None,
            "raw_p50_us": statistics.median(bench.raw_ns) / 1e3 if bench.raw_ns else None,
            "ratio_paired": median_ci(bench.pair_ratios).__dict__ if bench.pair_ratios else None,
            "no_raw": bench.raw_error or bench.why_no_raw or None,
            "memory": m.to_json() if m else None, "marks": list(result.marks) if result else [],
            "startup_includes": result.startup_includes if result else "",
        }
    for rung, why in unusable.items():
        print(f"\n{rung}: unavailable here: {why}")
    print("\nWhat each figure includes:\n")
    for _, rung, bench, _ in rows:
        if bench.lab_result is not None:
            print(f"- **{rung}**: {bench.lab_result.startup_includes}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
