"""Does taking turns distort the figures? Each runtime mixed against each runtime alone.

In one invocation, for one workload (hello by default), each runtime's cold-start p50 in a
mixed burst of all three runtimes — once in block mode (the default: short blocks per runtime,
order flipped every round) and once in launch mode (one launch each in turn) — against its p50
in a burst of that runtime alone. The conditions rotate round by round (the order reversed
every round) so drift falls on all of them; samples are pooled over rounds. Each ratio is a
ratio of medians with a 95% bootstrap interval (benchmarks/robust.py).

Targets (issue 8): block mode mixed/solo <= 1.15 for every runtime; Wasm p50 in the mixed
default run (``Settings()``'s count and warmup, block mode) <= 10 µs. Launch mode has no
target: it is shown so that the difference is visible.

    python benchmarks/mixed_vs_solo.py [--workload hello] [--rounds 5] [--count 20]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from robust import machine_load, median_ci, ratio_of_medians_ci

from edgelab.lab import Interleave, Lab, Settings
from edgelab.runtimes import RUNTIME_NAMES
from edgelab.stats import format_duration_ns

TARGET_BLOCK_RATIO = 1.15
TARGET_WASM_MIXED_P50_NS = 10_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="hello")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of every condition")
    parser.add_argument("--count", type=int, default=Settings.count, help="cold starts per runtime per burst")
    parser.add_argument("--runtimes", default=",".join(RUNTIME_NAMES))
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args()
    if args.rounds <= 0 or args.count <= 0:
        print("edgelab: --rounds and --count must be positive", file=sys.stderr)
        return 2
    runtimes = tuple(r.strip() for r in args.runtimes.split(",") if r.strip())

    conditions = [("block", runtimes), ("launch", runtimes)] + [("solo", (r,)) for r in runtimes]
    samples: dict[tuple[str, str], list[int]] = {(c, r): [] for c, _ in conditions for r in runtimes}
    blocks: dict[str, dict[str, int]] = {}
    load_before = machine_load()
    lab = Lab()
    try:
        for round_index in range(args.rounds):
            order = conditions if round_index % 2 == 0 else conditions[::-1]
            for condition, chosen in order:
                mode: Interleave = "launch" if condition == "launch" else "block"
                result = lab.run(Settings(workload=args.workload, runtimes=chosen, count=args.count, interleave=mode))
                for name, runtime_result in result.runtimes.items():
                    if runtime_result.error:
                        print(f"edgelab: {name}: {runtime_result.error}", file=sys.stderr)
                        return 1
                    samples[(condition, name)] += [
                        s.startup_ns for s in runtime_result.measured if s.ok and s.startup_ns is not None
                    ]
                if condition == "block":
                    blocks = result.metadata["interleave"].get("launches_per_block", blocks)
            print(f"round {round_index + 1}/{args.rounds} done ({machine_load()})", file=sys.stderr)
    finally:
        lab.close()

    failures = 0
    report: dict[str, object] = {"workload": args.workload, "rounds": args.rounds, "count": args.count,
                                 "load_before": load_before, "load_after": machine_load(), "modes": {}}
    print(f"\ncold start p50 of {args.workload}, mixed burst of {', '.join(runtimes)} against each alone")
    print(f"({args.rounds} rounds x {args.count} cold starts per runtime per burst, pooled; {load_before} before,"
          f" {machine_load()} after; [95% bootstrap interval])")
    for mode in ("block", "launch"):
        print(f"\ninterleave={mode}" + ("  (the default)" if mode == Settings.interleave else "  (no target: for contrast)"))
        print(f"{'runtime':<11} {'n':>4} {'mixed p50':>10} {'solo p50':>10}  {'mixed/solo':<24} target")
        table: dict[str, object] = {}
        for name in runtimes:
            mixed, solo = samples[(mode, name)], samples[("solo", name)]
            if not mixed or not solo:
                print(f"{name:<11} no samples")
                failures += 1
                continue
            ratio = ratio_of_medians_ci(mixed, solo)
            verdict = ""
            if mode == "block":
                ok = ratio.value <= TARGET_BLOCK_RATIO
                failures += not ok
                verdict = f"<= {TARGET_BLOCK_RATIO} {'ok' if ok else 'MISSED'}"
            print(f"{name:<11} {len(mixed):>4} {format_duration_ns(median_ci(mixed).value):>10}"
                  f" {format_duration_ns(median_ci(solo).value):>10}  {ratio.ratio_text():<24} {verdict}")
            table[name] = {"mixed_p50_us": median_ci(mixed).value / 1e3, "solo_p50_us": median_ci(solo).value / 1e3,
                           "ratio": ratio.value, "ratio_ci95": [ratio.low, ratio.high], "n": len(mixed)}
        report["modes"][mode] = table  # type: ignore[index]
    if blocks:
        sizes = ", ".join(f"{n} {b['min']}-{b['max']} (median {b['median']})" for n, b in blocks.items())
        print(f"\nlaunches per block in the last block-mode burst: {sizes}")
        report["launches_per_block"] = blocks
    if "wasm" in runtimes and samples[("block", "wasm")]:
        wasm = median_ci(samples[("block", "wasm")])
        ok = wasm.value <= TARGET_WASM_MIXED_P50_NS
        failures += not ok
        print(f"wasm p50 in the mixed default run (block mode): {format_duration_ns(wasm.value)}"
              f" [{format_duration_ns(wasm.low)}, {format_duration_ns(wasm.high)}]"
              f" (target <= {format_duration_ns(TARGET_WASM_MIXED_P50_NS)}) {'ok' if ok else 'MISSED'}")
        report["wasm_mixed_block_p50_us"] = wasm.value / 1e3
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
