"""The simulator against the real thing: a real ``traffic`` run, then the simulation fed by
that run on the same inputs, side by side.

For each keep-alive, one real traffic run (``Lab`` with the traffic scenario, wasm, subprocess
and container side by side, Poisson arrivals from a fixed seed) is taken; the simulation is fed
by that run's samples and replays the arrivals each runtime received (``pattern = "trace"``: each
request's due time plus the load generator's lateness, which the export records per request, so
the pool sees what the runtime saw), with the same keep-alive, pre-warm and cap on requests in
flight (the run's worker threads), and no network (no data round trips; the edge's metro round
trip, a constant, is taken off its p50). Bounds (issue 12): cold fraction within +-0.05 and p50
within 15% of the real run's.

    python benchmarks/whatif_vs_real.py [--rate 10] [--duration 30] [--keepalive 0.1 --keepalive 0.5]
                                        [--save DIR | --load DIR]

About 80 s: two 30 s runs of three runtimes, plus preparing them. The simulated figures pool
20 replays of those arrivals with their own draws: the replays are laid end to end in one
simulation, each starting COPY_GAP_S after the one before ended (longer than any keep-alive
and startup here, so each starts from an empty pool, as the real run did), and the cold
fraction and p50 are over all of them. Pooled, not the mean of 20 p50s: where half the
requests are cold, one replay's p50 lands in the warm mode and the next in the cold one, and
their mean is a latency no request had.

What the simulation draws from, beside each request's service: how long the request held its
instance (``held_us``: a Wasm request's round trip to its host, where its service is the host's
own microseconds), and, for cold starts, how many other starts were under way when each began
(containers starting together on 2 cores each take longer; ``edgelab.whatif.feed.cold_buckets``).
Without either, the simulation finds instances free sooner and starts faster than they were,
and gives too few cold starts (0.367 against 0.435 for Wasm at a 0.1 s keep-alive, last round).

At the cold/warm divide the overall p50 is not a fit figure to check, so there each mode's p50
is checked instead. Where the real cold fraction is within the cold bound of one half
(0.45-0.55), a simulation the cold bound accepts may have its median in either mode: a warm
request (~1 ms) or a cold one (hundreds of ms), with np.percentile interpolating between the two
when the count splits evenly. The two bounds of issue 12 cannot then hold together for any
faithful simulation. There the verdict is the warm requests' p50 and the cold requests' p50,
each within the same 15% (what the overall p50 is made of, both well-populated at the divide),
and the line says ``p50 at the cold/warm divide: per-mode p50s checked``. Elsewhere the overall
p50 is checked as the issue asks, and the per-mode p50s are printed beside it; they are not
checked there, where one mode may hold a handful of requests.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgelab.export import to_json  # noqa: E402
from edgelab.lab import Lab, Settings  # noqa: E402
from edgelab.traffic import TrafficResult  # noqa: E402
from edgelab.whatif.engine import simulate  # noqa: E402
from edgelab.whatif.feed import feed_from_export  # noqa: E402
from edgelab.whatif.model import WhatIfInputs  # noqa: E402
from edgelab.whatif.placement import metro_rtt_ms  # noqa: E402

COLD_BOUND = 0.05
P50_BOUND = 0.15
#: Between two replays laid end to end (s): every instance of one has scaled to zero before the next.
COPY_GAP_S = 120.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--replications", type=int, default=20,
                        help="replays of the real arrivals per comparison, each with its own draws (pooled)")
    parser.add_argument("--keepalive", type=float, action="append")
    parser.add_argument("--runtimes", default="wasm,subprocess,container")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--save", type=Path, help="write each real run's export here (traffic-ka<K>.json)")
    parser.add_argument("--load", type=Path, help="compare against the runs --save wrote there instead of running")
    args = parser.parse_args()
    keepalives = args.keepalive or [0.1, 0.5]
    runtimes = tuple(args.runtimes.split(","))
    failures = 0
    print(f"{'runtime':<11} {'keep-alive':>10} {'n':>4} {'cold real':>9} {'cold sim':>8} {'ok':>4}"
          f" {'p50 real':>10} {'p50 sim':>10} {'diff':>6} {'ok':>4} {'queue p99 real':>14}")
    for keepalive in keepalives:
        settings = Settings(workload="hello", runtimes=runtimes, scenario="traffic", rate_per_s=args.rate,
                            duration_s=args.duration, pattern="poisson", keepalive_s=keepalive,
                            prewarm=0, seed=args.seed, timeout_s=15.0)  # fmt: skip
        if args.load:
            export = json.loads((args.load / f"traffic-ka{keepalive:g}.json").read_text())
        else:
            export = json.loads(to_json(Lab().run(settings)))
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            (args.save / f"traffic-ka{keepalive:g}.json").write_text(json.dumps(export))
        feed = feed_from_export(export, f"traffic run, keep-alive {keepalive:g} s")
        for entry in export["results"]:
            name = entry["runtime"]
            if name not in feed.runtimes:
                print(f"{name:<11} {keepalive:>9g}s  no feed: {entry.get('error') or 'no warm samples'}")
                failures += 1
                continue
            real = TrafficResult.from_json(entry["traffic"])
            served = [r for r in real.requests if r.kind != "failed"]
            arrivals = tuple(sorted(r.arrival_s + r.late_ns / 1e9 for r in real.requests))
            real_cold = sum(r.kind == "cold" for r in served) / len(served)
            real_p50_ms = statistics.median(r.latency_ns or 0 for r in served) / 1e6
            real_mode_ms = {kind: _median_ms(r.latency_ns or 0 for r in served if r.kind == kind)
                            for kind in ("warm", "cold")}  # fmt: skip
            span = args.duration + COPY_GAP_S
            copies = tuple(t + c * span for c in range(args.replications) for t in arrivals)
            inputs = WhatIfInputs(pattern="trace", trace=copies, hours=span * args.replications / 3600,
                                  keepalive_s=keepalive, prewarm=0, data_round_trips=0, extra_ms=0.0,
                                  inflation=1.0, seed=args.seed, max_in_flight=real.workers)  # fmt: skip
            edge = next(o for o in simulate(inputs, feed, [name]).outcomes if o.placement == "edge")
            metro = metro_rtt_ms(1.0)
            sim_cold, sim_p50_ms = edge.cold_fraction, edge.p50_ms - metro
            cold_ok = abs(sim_cold - real_cold) <= COLD_BOUND
            diff = sim_p50_ms / real_p50_ms - 1
            sim_mode_ms = {"warm": None if edge.warm_p50_ms is None else edge.warm_p50_ms - metro,
                           "cold": None if edge.cold_p50_ms is None else edge.cold_p50_ms - metro}  # fmt: skip
            at_divide = abs(real_cold - 0.5) <= COLD_BOUND
            modes = {kind: _within(real_mode_ms[kind], sim_mode_ms[kind]) for kind in ("warm", "cold")}
            p50_ok = all(ok for _, ok in modes.values()) if at_divide else abs(diff) <= P50_BOUND
            failures += (not cold_ok) + (not p50_ok)
            failed = len(real.requests) - len(served)
            queue_p99 = sorted(r.queue_ns for r in served)[int(0.99 * (len(served) - 1))] / 1e6
            print(f"{name:<11} {keepalive:>9g}s {len(served):>4} {real_cold:>9.3f} {sim_cold:>8.3f}"
                  f" {'pass' if cold_ok else 'FAIL':>4} {real_p50_ms:>8.3f}ms {sim_p50_ms:>8.3f}ms"
                  f" {diff * 100:>+5.0f}% {('(div)' if at_divide else 'pass' if p50_ok else 'FAIL'):>4}"
                  f" {queue_p99:>12.3f}ms"
                  + (f"  ({failed} failed requests left out)" if failed else ""))
            per_mode = "; ".join(
                f"{kind} p50 real {_ms(real_mode_ms[kind])} sim {_ms(sim_mode_ms[kind])} ({change})"
                + (f" {'pass' if ok else 'FAIL'}" if at_divide else "")
                for kind, (change, ok) in modes.items()
            )
            print(f"{'':<11} " + ("p50 at the cold/warm divide: per-mode p50s checked: " if at_divide else
                                  "per mode (not checked): ") + per_mode)
            print(f"{'':<11} {feed.runtimes[name].held_source}; {feed.runtimes[name].contention_source}")
    print(f"bounds: cold fraction +-{COLD_BOUND}, p50 within {P50_BOUND:.0%} (per mode where the real cold "
          f"fraction is within {COLD_BOUND} of one half); "
          f"{'all within' if not failures else f'{failures} outside'}")
    return 1 if failures else 0


def _median_ms(latencies_ns: Iterable[int]) -> float | None:
    values = list(latencies_ns)
    return statistics.median(values) / 1e6 if values else None


def _within(real_ms: float | None, sim_ms: float | None) -> tuple[str, bool]:
    """The change of one mode's p50 and whether it is within the p50 bound (a mode one side
    has and the other has not is a miss)."""
    if real_ms is None or sim_ms is None:
        return ("no requests" if real_ms is None and sim_ms is None else "one side has none"), real_ms == sim_ms
    change = sim_ms / real_ms - 1
    return f"{change * 100:+.0f}%", abs(change) <= P50_BOUND


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f} ms"


if __name__ == "__main__":
    raise SystemExit(main())
