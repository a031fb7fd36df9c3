"""How fast can the what-if recompute an hour at 100 req/s for 3 runtimes x 2 placements?

The target is <= 0.3 s (the TUI recomputes as inputs change). Four engines run the same policy
(the traffic scenario's: most recently idle first, scale to zero after the keep-alive, no cap)
on the same arrivals and the same drawn startup/exec times, and each is checked against the
shipped one, request by request:

* ``shipped``: ``edgelab.whatif.engine.simulate`` end to end (the C event loop, kernel.c);
* ``python loop``: the same loop in Python (the fallback where zig cannot build the C);
* ``numpy``: a vectorised model. Request i is cold iff its slot level (requests in service
  just before it, plus one) was not reached within the keep-alive before it; each level test
  is a sorted search and a sparse-table range maximum, but whether request i is cold changes
  its service, which changes later levels: so the whole hour is re-passed until no flag moves
  (a fixed point, then exact), one pass per link of the longest cold-start cascade;
* ``simpy``: the discrete-event library (``pip install simpy``), one process per arrival stream
  and a timer per completion and per idle instance.

    python benchmarks/whatif_speed.py [--from EXPORT] [--keepalive 300] [--simpy-combos 1]

simpy is slow enough that by default it runs one runtime x placement and the six are that
time x 6 (said on its line).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgelab.whatif import kernel  # noqa: E402
from edgelab.whatif.engine import PLACEMENTS, arrivals_for, round_trips_ms, simulate  # noqa: E402
from edgelab.whatif.feed import load_feed  # noqa: E402
from edgelab.whatif.model import WhatIfInputs  # noqa: E402


def numpy_model(a: np.ndarray, st: np.ndarray, ex: np.ndarray, keepalive: float,
                max_passes: int = 400) -> tuple[np.ndarray, int, bool]:
    """The vectorised model (concurrency 1, no pre-warm): cold flags, passes, settled."""
    n = a.size
    idx = np.arange(n)
    lo = np.searchsorted(a, a - keepalive, "left")  # window [a - T, a): arrivals lo..i-1
    before = np.minimum(np.searchsorted(a, a - keepalive, "right"), idx)
    length = idx - lo
    has = length > 0
    k = np.zeros(n, dtype=np.int64)
    k[has] = np.floor(np.log2(length[has])).astype(np.int64)
    levels = max(1, int(length.max(initial=1)).bit_length())
    cold = np.zeros(n, dtype=bool)
    for passes in range(1, max_passes + 1):
        ds = np.sort(a + np.where(cold, st, ex))
        level = idx + 1 - np.searchsorted(ds, a, "right")
        at_start = before - np.searchsorted(ds, a - keepalive, "right")
        table = np.empty((levels, n), dtype=level.dtype)
        table[0] = level
        h = 1
        for j in range(1, levels):
            table[j] = table[j - 1]
            table[j, :-h] = np.maximum(table[j - 1, :-h], table[j - 1, h:])
            h *= 2
        flat = table.ravel()
        window = np.maximum(flat[k * n + lo], flat[k * n + np.maximum(idx - (1 << k), 0)])
        window = np.maximum(np.where(has, window, 0), at_start)
        new = window < level
        if np.array_equal(new, cold):
            return cold, passes, True
        cold = new
    return cold, max_passes, False


def simpy_model(a: np.ndarray, st: np.ndarray, ex: np.ndarray, keepalive: float) -> np.ndarray:
    """The same policy in simpy (concurrency 1, no pre-warm): cold flags."""
    import simpy

    env = simpy.Environment()
    idle: list[list[float]] = []  # [idle since, alive] per idle instance, most recent last
    cold = np.zeros(a.size, dtype=bool)

    def expire(slot: list[float]) -> simpy.events.ProcessGenerator:
        yield env.timeout(keepalive)
        if slot[1] and idle and slot in idle:
            idle.remove(slot)

    def done(_: object) -> None:
        slot = [env.now, 1.0]
        idle.append(slot)
        env.process(expire(slot))

    def arrivals() -> simpy.events.ProcessGenerator:
        for i, t in enumerate(a):
            yield env.timeout(t - env.now)
            while idle and idle[0][0] + keepalive < env.now:  # due now, its timer not yet run
                idle.pop(0)
            if idle:
                idle.pop()[1] = 0.0
                service = ex[i]
            else:
                cold[i] = True
                service = st[i]
            env.timeout(service).callbacks.append(done)

    env.process(arrivals())
    env.run()
    return cold


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="ref", default=str(ROOT / "tests/fixtures/edgelab-traffic-a.json"))
    parser.add_argument("--keepalive", type=float, default=300.0)
    parser.add_argument("--simpy-combos", type=int, default=1)
    args = parser.parse_args()
    feed = load_feed(args.ref)
    inputs = WhatIfInputs(rate_per_s=100.0, hours=1.0, keepalive_s=args.keepalive)
    horizon = inputs.hours * 3600
    runs = []
    for _ in range(5):
        runs.append(simulate(inputs, feed).elapsed_s)
    print(f"fed by {feed.fed_by}")
    print(f"1 h at 100 req/s, keep-alive {args.keepalive:g} s, {len(feed.runtimes)} runtimes x 2 placements; target <= 0.3 s")
    print(f"  shipped (C event loop), simulate() end to end: median {statistics.median(runs):.3f} s "
          f"(first {runs[0]:.3f} s, 5 runs)")

    a = arrivals_for(inputs)
    combos = []
    for index, name in enumerate(feed.runtimes):
        rf = feed.runtimes[name]
        rng = np.random.default_rng([inputs.seed, index, 1])
        st, ex = rng.choice(rf.cold_s, a.size), rng.choice(rf.warm_s, a.size)
        for where in PLACEMENTS:
            _, data_ms = round_trips_ms(inputs, where)
            held = data_ms * inputs.data_round_trips / 1000
            combos.append((f"{name}/{where}", st + held, ex + held))

    def timed(label: str, fn, limit: int | None = None) -> None:  # noqa: ANN001
        chosen = combos if limit is None else combos[:limit]
        total, agree, notes = 0.0, 0, []
        for name, st, ex in chosen:
            ref = kernel.serve(a, st, ex, inputs.keepalive_s, 0, 1, horizon).cold
            t0 = time.perf_counter()
            got = fn(st, ex)
            total += time.perf_counter() - t0
            extra = ""
            if isinstance(got, tuple):
                got, passes, settled = got
                extra = f"{passes} passes{'' if settled else ' (did not settle)'}"
            agree += int(np.array_equal(got, ref))
            notes.append(f"{name} {extra}".strip())
        scale = len(combos) / len(chosen)
        shown = f"{total:.3f} s" if scale == 1 else f"{total * scale:.2f} s (= {total:.2f} s for {len(chosen)} x {scale:g})"
        print(f"  {label}: {shown}; identical cold flags in {agree}/{len(chosen)}; {', '.join(notes)}")

    timed("python loop", lambda st, ex: kernel.serve(a, st, ex, inputs.keepalive_s, 0, 1, horizon, force_python=True).cold)
    timed("numpy vectorised", lambda st, ex: numpy_model(a, st, ex, inputs.keepalive_s))
    try:
        import simpy  # noqa: F401
    except ImportError:
        print("  simpy: not installed (pip install simpy)")
    else:
        timed("simpy", lambda st, ex: simpy_model(a, st, ex, inputs.keepalive_s), limit=args.simpy_combos)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
