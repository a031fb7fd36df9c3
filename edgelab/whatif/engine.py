"""The what-if: hours of traffic through a keep-alive pool, timed by a measured run's samples.

Per runtime, every request's startup and execution are drawn (seeded) from the feed's samples;
the same draws serve both placements, so edge against region differs only by where the code
runs. The pool is the real traffic scenario's (``edgelab.scenarios.traffic``): most recently
idle first, scale to zero after the keep-alive, never below the pre-warmed floor, scaling
without a cap (so no request queues) unless ``max_in_flight`` caps the requests in service. Placement adds round trips from physics
(``placement``): end-to-end = user RTT + data RTT x round trips + queue + startup (cold) or exec
(warm) + extra. The instance is held while it waits on its data and on the extra time (an LLM call is
time the function sits in), so both count in the instances it keeps.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np

from edgelab.errors import UsageError
from edgelab.whatif import placement as geo
from edgelab.whatif.feed import Feed
from edgelab.whatif.kernel import serve
from edgelab.whatif.model import Outcome, WhatIfInputs, WhatIfResult

GIB = float(1 << 30)
PLACEMENTS = ("edge", "region")


def arrivals_for(inputs: WhatIfInputs) -> np.ndarray:
    """The simulated arrivals (s, sorted) over ``inputs.hours``, from the traffic scenario's own
    generators (``edgelab.arrivals``) and the seed, or the given trace cut at the horizon."""
    from edgelab import arrivals

    horizon = inputs.hours * 3600.0
    if inputs.pattern == "trace":
        times = np.sort(np.asarray(inputs.trace or (), dtype=np.float64))
        return times[times < horizon]
    rng = np.random.default_rng(inputs.seed)
    return arrivals.arrivals(inputs.pattern, inputs.rate_per_s, horizon, rng)


def round_trips_ms(inputs: WhatIfInputs, where: str) -> tuple[float, float]:
    """(user round trip, one data round trip) in ms for a placement: floors from physics."""
    metro = geo.metro_rtt_ms(inputs.inflation)
    far = geo.rtt_floor_ms(inputs.user_city, inputs.region, inputs.inflation)
    if where == "edge":  # code at the user's PoP; the data stays in the region
        return metro, max(far, metro)
    return max(far, metro), metro  # code beside its data in the region


def simulate(inputs: WhatIfInputs, feed: Feed, runtimes: Sequence[str] | None = None) -> WhatIfResult:
    """Every runtime of the feed (or those named) x edge and region; all figures simulated."""
    started = time.perf_counter()
    inputs.validate()
    notes: list[str] = [f"SIMULATED: every figure is drawn from the samples of {feed.fed_by}; none was measured at this traffic"]
    notes.extend(feed.notes)
    names = list(feed.runtimes) if runtimes is None else []
    for name in runtimes or ():
        if name in feed.runtimes:
            names.append(name)
        else:
            notes.append(f"{name} left out: not in the fed run with warm samples")
    if not names:
        raise UsageError("no runtime to simulate: " + "; ".join(notes[1:]) if notes[1:] else "no runtime to simulate")
    a = arrivals_for(inputs)
    if inputs.pattern == "trace" and inputs.trace and a.size < len(inputs.trace):
        notes.append(f"trace: {a.size:,} of its {len(inputs.trace):,} arrivals fall within the {inputs.hours:g} h "
                     "simulated (--hours); the rest are left out")
    if a.size == 0:
        raise UsageError("no request arrives within the simulated hours (raise --rate or --hours)")
    horizon = inputs.hours * 3600.0
    outcomes: list[Outcome] = []
    engine = ""
    for index, name in enumerate(names):
        rf = feed.runtimes[name]
        rng = np.random.default_rng([inputs.seed, index, 1])
        # One draw of a measured request each: its service (what the caller waits) and how
        # long it held its instance (what the next request finds), from the same request.
        cold_pick = rng.integers(0, rf.cold_s.size, a.size)
        warm_pick = rng.integers(0, rf.warm_s.size, a.size)
        st, ex = rf.cold_s[cold_pick], rf.warm_s[warm_pick]
        st_held = rf.cold_held_s[cold_pick] if rf.cold_held_s is not None else st
        ex_held = rf.warm_held_s[warm_pick] if rf.warm_held_s is not None else ex
        # Cold starts that overlapped in the run were slower: with buckets, each simulated
        # start is drawn (at this quantile) from the measured starts with as many under way.
        u = rng.random(a.size) if rf.cold_buckets is not None else None
        for where in PLACEMENTS:
            user_ms, data_ms = round_trips_ms(inputs, where)
            held_s = (data_ms * inputs.data_round_trips + inputs.extra_ms) / 1000.0
            served = serve(a, st_held + held_s, ex_held + held_s, inputs.keepalive_s, inputs.prewarm,
                           inputs.concurrency, horizon, max_in_flight=inputs.max_in_flight,
                           buckets=rf.cold_buckets, u=u, extra_hold_s=held_s)  # fmt: skip
            engine = served.engine
            startup = served.startup_s if served.startup_s is not None else st
            latency_ms = (np.where(served.cold, startup, ex) + served.queue_s + held_s) * 1000.0 + user_ms
            p50, p99 = np.percentile(latency_ms, [50, 99])
            # Per mode: where about half the requests are cold, the overall p50 falls between
            # the warm mode and the cold one, and these are what it is made of.
            warm_ms, cold_ms = latency_ms[~served.cold], latency_ms[served.cold]
            mean = served.instance_seconds / horizon
            mem = rf.memory_bytes
            per_host = inputs.host_memory_gib * GIB / mem if mem else None
            hosts = max(1, math.ceil(served.peak_instances / per_host)) if per_host else None
            outcomes.append(Outcome(
                runtime=name, placement=where, p50_ms=float(p50), p99_ms=float(p99),
                cold_fraction=float(served.cold.mean()), mean_instances=float(mean),
                warm_p50_ms=float(np.median(warm_ms)) if warm_ms.size else None,
                cold_p50_ms=float(np.median(cold_ms)) if cold_ms.size else None,
                peak_instances=served.peak_instances,
                memory_gib_hours=mean * mem / GIB * inputs.hours if mem else None,
                instances_per_host=per_host, hosts_needed=hosts,
            ))  # fmt: skip
        notes.append(
            f"{name}: {rf.cold_s.size} cold-start samples ({rf.cold_source}), {rf.warm_s.size} warm, "
            f"{rf.held_source}, {rf.contention_source}; "
            + (f"memory per instance {rf.memory_bytes / 1024:.1f} KiB ({rf.memory_basis})" if rf.memory_bytes else
               "memory per instance not measured in the fed run, so no GiB·h or hosts (a ramp measures it)")
        )
    notes.extend(_assumptions(inputs, a.size, engine))
    return WhatIfResult(inputs, tuple(outcomes), feed.fed_by, tuple(notes), time.perf_counter() - started)


def _assumptions(inputs: WhatIfInputs, requests: int, engine: str) -> list[str]:
    edge_user, edge_data = round_trips_ms(inputs, "edge")
    region_user, region_data = round_trips_ms(inputs, "region")
    lines = [
        f"{requests:,} requests ({inputs.pattern}) over {inputs.hours:g} h, seed {inputs.seed}; {engine}",
        f"round trips are floors: 2 x great-circle / {geo.fibre_km_per_ms():g} km/ms x inflation {inputs.inflation:g}; "
        f"edge: user {edge_user:.1f} ms (same metro, <= {geo.metro_km():g} km: an assumption), data {edge_data:.1f} ms "
        f"x {inputs.data_round_trips}; region: user {region_user:.1f} ms, data {region_data:.1f} ms x {inputs.data_round_trips}",
        f"data stays in {inputs.region} for both placements; the access network (last mile) is not counted (the same for both)",
        "instances scale without a cap, so no request queues" if not inputs.max_in_flight else
        f"at most {inputs.max_in_flight} requests in service at once per runtime; the others queue (first come, first served)",
        "an instance is held through its data round trips and the extra time",
    ]
    if inputs.extra_ms:
        lines.append(f"extra {inputs.extra_ms:g} ms per request (e.g. an LLM call) is an assumption, not measured")
    if inputs.concurrency > 1:
        lines.append(
            f"concurrency {inputs.concurrency}: a request takes any free slot, instances = ceil(slots alive / "
            f"{inputs.concurrency}) (ideal packing: a floor on the instances a real router keeps)"
        )
    return lines
