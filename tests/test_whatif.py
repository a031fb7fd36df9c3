"""The what-if simulator: closed forms on fixed seeds, the C loop against an independent pool,
RTT floors, both trace layouts, and ``edgelab whatif`` on a real traffic export (fixtures)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgelab.cli import main
from edgelab.errors import UsageError
from edgelab.traffic import RequestRecord
from edgelab.whatif import kernel
from edgelab.whatif.engine import simulate
from edgelab.whatif.feed import Feed, RuntimeFeed, cold_buckets, feed_from_export, load_feed
from edgelab.whatif.model import WhatIfInputs
from edgelab.whatif.placement import great_circle_km, metro_rtt_ms, rtt_floor_ms
from edgelab.whatif.presets import parse_presets, presets

FIXTURES = Path(__file__).parent / "fixtures"
TRAFFIC = FIXTURES / "edgelab-traffic-a.json"
BURST = FIXTURES / "edgelab-run-a.json"


def _feed(cold_s: float = 1e-6, warm_s: float = 1e-6) -> Feed:
    """A feed whose startup and execution are negligible beside the gaps: one instance, no
    overlap, which is what the closed forms assume."""
    rf = RuntimeFeed("wasm", np.array([cold_s]), np.array([warm_s]), "test", 10 * 1024.0, "test")
    return Feed("hand-made", "now", "hello", {"wasm": rf})


def _quiet(**changes: object) -> WhatIfInputs:
    return WhatIfInputs(**{"data_round_trips": 0, "extra_ms": 0.0, "seed": 3, **changes})  # type: ignore[arg-type]


def test_poisson_one_instance_cold_fraction_is_exp_minus_lambda_t() -> None:
    rate, keepalive = 10.0, 0.1  # P(cold) = e^-1 = 0.368
    result = simulate(_quiet(rate_per_s=rate, keepalive_s=keepalive, hours=1.0), _feed())
    expected = math.exp(-rate * keepalive)
    n = rate * 3600
    for outcome in result.outcomes:
        assert abs(outcome.cold_fraction - expected) < 4 * math.sqrt(expected * (1 - expected) / n)
        assert outcome.peak_instances == 1
        # the one instance is alive a time E[min(gap, T)] per request: rate x E[min(gap, T)] = 1 - e^-λT
        assert outcome.mean_instances == pytest.approx(1 - expected, rel=0.05)


def test_keepalive_zero_makes_every_request_cold_and_prewarm_above_peak_none() -> None:
    every = simulate(_quiet(rate_per_s=50.0, keepalive_s=0.0, hours=0.2), _feed(0.01, 0.001))
    assert all(o.cold_fraction == 1.0 for o in every.outcomes)
    peak = max(o.peak_instances for o in every.outcomes)
    none = simulate(_quiet(rate_per_s=50.0, keepalive_s=0.0, hours=0.2, prewarm=peak), _feed(0.01, 0.001))
    assert all(o.cold_fraction == 0.0 for o in none.outcomes)
    assert all(o.mean_instances == pytest.approx(peak) for o in none.outcomes)


def test_per_mode_p50s_split_the_requests_at_the_cold_warm_divide() -> None:
    # e^-λT = 0.5: about half the requests cold (10 ms) and half warm (0.1 ms); the overall p50
    # falls between the modes, each mode's p50 is its own service (plus the metro round trip)
    rate = 10.0
    result = simulate(_quiet(rate_per_s=rate, keepalive_s=math.log(2) / rate, hours=0.5, inflation=1.0),
                      _feed(0.01, 0.0001))
    edge = next(o for o in result.outcomes if o.placement == "edge")
    metro = metro_rtt_ms(1.0)
    assert 0.45 < edge.cold_fraction < 0.6
    assert edge.warm_p50_ms == pytest.approx(0.1 + metro, abs=1e-6)
    assert edge.cold_p50_ms == pytest.approx(10.0 + metro, abs=1e-6)
    assert edge.warm_p50_ms is not None and edge.cold_p50_ms is not None
    assert edge.warm_p50_ms <= edge.p50_ms <= edge.cold_p50_ms
    every = simulate(_quiet(rate_per_s=50.0, keepalive_s=0.0, hours=0.05), _feed(0.01, 0.001)).outcomes[0]
    assert every.warm_p50_ms is None and every.cold_p50_ms == pytest.approx(every.p50_ms)


def test_keepalive_zero_mean_instances_is_littles_law() -> None:
    # every request holds a fresh instance for exactly its service: L = rate x service
    result = simulate(_quiet(rate_per_s=40.0, keepalive_s=0.0, hours=0.5), _feed(0.05, 0.001))
    for o in result.outcomes:
        assert o.mean_instances == pytest.approx(40.0 * 0.05, rel=0.03)


class _Instance:
    def __init__(self) -> None:
        self.busy_until = 0.0
        self.idle_since = -math.inf


def _independent_pool(a: np.ndarray, cold_s: np.ndarray, warm_s: np.ndarray, keepalive: float, prewarm: int) -> np.ndarray:
    """The policy written as plainly as possible: explicit instances, the most recently idle
    taken first, the longest idle stopped after the keep-alive while more than the floor live."""
    pool = [_Instance() for _ in range(prewarm)]
    cold = np.zeros(len(a), dtype=bool)
    for i, t in enumerate(a):
        for inst in pool:
            if inst.busy_until <= t and inst.idle_since < inst.busy_until:
                inst.idle_since = inst.busy_until
        idle = sorted((x for x in pool if x.busy_until <= t), key=lambda x: x.idle_since)
        for inst in idle:
            if len(pool) > prewarm and inst.idle_since + keepalive < t:
                pool.remove(inst)
        idle = [x for x in idle if x in pool]
        if idle:
            inst = idle[-1]
            inst.busy_until = t + warm_s[i]
        else:
            inst = _Instance()
            pool.append(inst)
            cold[i] = True
            inst.busy_until = t + cold_s[i]
        inst.idle_since = -math.inf
    return cold


@pytest.mark.parametrize("keepalive,prewarm", [(0.0, 0), (0.05, 0), (0.3, 2), (5.0, 0)])
def test_event_loop_matches_an_independent_pool(keepalive: float, prewarm: int) -> None:
    rng = np.random.default_rng(11)
    a = np.sort(rng.uniform(0, 60, 1500))
    cold_s = rng.choice([0.2, 0.3, 0.05], a.size)
    warm_s = rng.choice([0.001, 0.02], a.size)
    expected = _independent_pool(a, cold_s, warm_s, keepalive, prewarm)
    for force_python in (False, True):
        served = kernel.serve(a, cold_s, warm_s, keepalive, prewarm, 1, 60.0, force_python=force_python)
        assert np.array_equal(served.cold, expected)
    c_loop = kernel.serve(a, cold_s, warm_s, keepalive, prewarm, 3, 60.0)
    py_loop = kernel.serve(a, cold_s, warm_s, keepalive, prewarm, 3, 60.0, force_python=True)
    assert np.array_equal(c_loop.cold, py_loop.cold)
    assert c_loop.instance_seconds == pytest.approx(py_loop.instance_seconds)
    assert c_loop.peak_instances == py_loop.peak_instances


def test_a_cap_on_requests_in_flight_queues_first_come_first_served() -> None:
    a = np.array([0.0, 0.0, 0.0, 10.0])
    for force_python in (False, True):
        served = kernel.serve(a, np.full(4, 1.0), np.full(4, 0.5), 60.0, 0, 1, 20.0,
                              force_python=force_python, max_in_flight=1)  # fmt: skip
        assert served.queue_s.tolist() == [0.0, 1.0, 1.5, 0.0]
        assert served.cold.tolist() == [True, False, False, False]  # the one instance, reused
        assert served.peak_instances == 1
    free = kernel.serve(a, np.full(4, 1.0), np.full(4, 0.5), 60.0, 0, 1, 20.0)
    assert free.queue_s.tolist() == [0.0] * 4 and free.cold.tolist() == [True, True, True, False]


def test_cold_starts_are_taken_from_the_bucket_of_starts_under_way() -> None:
    # Bucket 0 (alone) starts in 0.1 s, bucket 1+ (with others under way) in 1.0 s, held 0.1 s longer.
    buckets = kernel.ColdBuckets(np.array([0, 2, 4]), np.array([0.1, 0.1, 1.0, 1.0]), np.array([0.2, 0.2, 1.1, 1.1]),
                                 np.array([0]))  # fmt: skip
    a = np.array([0.0, 0.0, 0.05, 5.0])
    u = np.full(4, 0.5)
    for force_python in (False, True):
        served = kernel.serve(a, np.full(4, 9.0), np.full(4, 0.01), 0.0, 0, 1, 10.0, force_python=force_python,
                              buckets=buckets, u=u, extra_hold_s=0.5)  # fmt: skip
        assert served.cold.tolist() == [True, True, True, True]
        # alone; one under way; two under way (the 1+ bucket); all answered by 5.0: alone again.
        assert served.startup_s is not None and served.startup_s.tolist() == [0.1, 1.0, 1.0, 0.1]
        assert served.peak_instances == 3
    # The instance is held for the start's hold + the extra: the first is busy until 0.7 s.
    again = kernel.serve(np.array([0.0, 0.69, 0.71]), np.full(3, 9.0), np.full(3, 0.01), 60.0, 0, 1, 10.0,
                         buckets=buckets, u=np.zeros(3), extra_hold_s=0.5)  # fmt: skip
    assert again.cold.tolist() == [True, True, False]


def test_bucketed_c_loop_matches_the_python_loop() -> None:
    rng = np.random.default_rng(5)
    a = np.sort(rng.uniform(0, 60, 2000))
    startup = rng.uniform(0.05, 0.6, 30)
    buckets = kernel.ColdBuckets(np.array([0, 10, 20, 30]), startup, startup + rng.uniform(0, 0.01, 30),
                                 np.array([0, 1, 1, 2]))  # 0 | 1-2 | 3+ under way
    u = rng.random(a.size)
    warm = rng.choice([0.001, 0.02], a.size)
    args = (a, np.zeros(a.size), warm, 0.3, 1, 2, 60.0)
    c_loop = kernel.serve(*args, max_in_flight=4, buckets=buckets, u=u, extra_hold_s=0.002)
    py_loop = kernel.serve(*args, force_python=True, max_in_flight=4, buckets=buckets, u=u, extra_hold_s=0.002)
    assert c_loop.engine == "C event loop"
    assert np.array_equal(c_loop.cold, py_loop.cold) and c_loop.cold.sum() > 50
    assert np.array_equal(c_loop.startup_s, py_loop.startup_s)
    assert np.allclose(c_loop.queue_s, py_loop.queue_s)
    assert c_loop.instance_seconds == pytest.approx(py_loop.instance_seconds)


def _cold(index: int, begin_s: float, startup_s: float) -> RequestRecord:
    return RequestRecord(index, begin_s, "cold", 0, startup_ns=int(startup_s * 1e9), held_ns=int(startup_s * 1e9) + 1000)


def test_a_runs_cold_starts_are_grouped_by_the_starts_under_way_when_each_began() -> None:
    lone = [_cold(i, 10.0 * i, 0.1) for i in range(10)]  # 0 under way
    pairs = [r for i in range(10) for r in (_cold(100 + 2 * i, 200.0 + 10 * i, 0.5), _cold(101 + 2 * i, 200.1 + 10 * i, 0.4))]
    buckets = cold_buckets(lone + pairs)
    assert buckets is not None and buckets.offsets.tolist() == [0, 20, 30]
    assert sorted(buckets.startup_s[:20].tolist()) == [0.1] * 10 + [0.5] * 10  # alone: the lone ones, each pair's first
    assert buckets.startup_s[20:].tolist() == pytest.approx([0.4] * 10)  # one under way: each pair's second
    assert cold_buckets(lone) is None  # nothing overlapped: independent draws
    # Too few for a bucket of their own: the last bucket takes "k or more".
    few = cold_buckets(lone + pairs + [_cold(500, 500.0, 1.0), _cold(501, 500.01, 1.0), _cold(502, 500.02, 1.0)])
    assert few is not None and few.offsets.tolist() == [0, 21, 33]  # the first of the three began alone
    assert few.bucket_of.tolist() == [0, 1, 1] and few.span(0) == "0" and few.span(1) == "1+"
    # On a busy host hardly any start is alone: runs of k share a bucket until it holds enough.
    quads = [_cold(1000 + 4 * i + j, 1000.0 + 10 * i + 0.01 * j, 1.0) for i in range(6) for j in range(4)]
    crowded = cold_buckets(quads)
    assert crowded is not None and crowded.offsets.tolist() == [0, 12, 24]
    assert crowded.span(0) == "0-1" and crowded.span(1) == "2+"


def test_a_fed_slowdown_under_contention_shows_in_simulated_latency() -> None:
    lone = [_cold(i, 10.0 * i, 0.1) for i in range(10)]
    crowd = [_cold(100 + i, 200.0 + 0.01 * i, 2.0) for i in range(10)]
    buckets = cold_buckets(lone + crowd)
    assert buckets is not None and buckets.count >= 2
    rf = RuntimeFeed("container", np.array([0.1] * 10 + [2.0] * 10), np.array([0.001]), "test", None, "test",
                     None, None, buckets)  # fmt: skip
    feed = Feed("hand-made", "now", "hello", {"container": rf})
    assert "drawn by how many others were starting" in rf.contention_source
    spread = simulate(_quiet(rate_per_s=0.05, hours=2.0, keepalive_s=0.0, inflation=1.0), feed).outcomes[0]
    crowded = simulate(_quiet(rate_per_s=50.0, hours=0.01, keepalive_s=0.0, inflation=1.0), feed).outcomes[0]
    assert spread.p50_ms < 150 and crowded.p50_ms > 1500  # alone 0.1 s; under way together 2 s


def test_shipped_engine_is_the_c_loop() -> None:
    served = kernel.serve(np.array([0.0, 1.0]), np.array([0.1, 0.1]), np.array([0.01, 0.01]), 5.0, 0, 1, 2.0)
    assert served.engine == "C event loop"
    assert served.cold.tolist() == [True, False]
    assert served.instance_seconds == pytest.approx(2.0)  # alive from 0 to the horizon


@pytest.mark.parametrize("a,b,km", [("Tokyo", "us-east-1", 10_874), ("London", "us-east-1", 5_917),
                                    ("Sydney", "Singapore", 6_306)])
def test_rtt_floor_from_physics(a: str, b: str, km: float) -> None:
    assert great_circle_km(a, b) == pytest.approx(km, abs=15)
    assert rtt_floor_ms(a, b) == pytest.approx(2 * km / 200, abs=0.2)
    assert rtt_floor_ms(a, b, inflation=2.0) == pytest.approx(2 * rtt_floor_ms(a, b))
    assert rtt_floor_ms("tokyo", "Tokyo") == 0.0
    with pytest.raises(UsageError, match="unknown place 'Atlantis'"):
        rtt_floor_ms("Atlantis", b)


def test_edge_pays_the_data_round_trip_region_pays_the_user_one() -> None:
    feed = _feed(0.0005, 0.0001)
    one = simulate(_quiet(rate_per_s=5.0, hours=0.1, data_round_trips=1, inflation=1.0), feed)
    edge, region = one.outcomes
    floor = rtt_floor_ms("Tokyo", "us-east-1")
    assert edge.placement == "edge" and region.placement == "region"
    assert edge.p50_ms == pytest.approx(region.p50_ms, abs=0.01)  # one long trip either way
    assert edge.p50_ms == pytest.approx(floor + 0.5 + 0.1, abs=0.05)
    none = simulate(_quiet(rate_per_s=5.0, hours=0.1, data_round_trips=0, inflation=1.0), feed)
    assert none.outcomes[0].p50_ms < 1.0 < floor < none.outcomes[1].p50_ms


def test_feed_from_a_real_traffic_export() -> None:
    feed = load_feed(str(TRAFFIC))
    assert set(feed.runtimes) == {"container", "subprocess", "wasm"}
    data = json.loads(TRAFFIC.read_text())
    for entry in data["results"]:
        rows = entry["traffic"]["requests"]
        warm = [r[3] for r in rows if r[1] == "warm"]
        assert sorted(feed.runtimes[entry["runtime"]].warm_s * 1e6) == pytest.approx(sorted(warm))
    assert "traffic" in feed.runtimes["container"].memory_basis


def test_a_burst_run_feeds_nothing_and_says_how_to_get_warm_samples() -> None:
    data = json.loads(BURST.read_text())
    with pytest.raises(UsageError, match="edgelab run --scenario traffic"):
        feed_from_export(data, "run-a")
    mixed = json.loads(TRAFFIC.read_text())
    mixed["results"][0].pop("traffic")
    feed = feed_from_export(mixed, "mixed")
    assert "container" not in feed.runtimes
    assert any("container left out" in n and "--scenario traffic" in n for n in feed.notes)


def test_presets_list_their_assumptions_and_bad_ones_are_one_line() -> None:
    table = presets()
    assert {"agent-llm", "jwt-auth", "iot-gateway"} <= set(table)
    assert table["agent-llm"].inputs.extra_ms == 1000.0
    assert all(p.assumptions for p in table.values())
    with pytest.raises(UsageError, match="unknown input speed"):
        parse_presets('[preset.x]\ntitle="t"\nsummary="s"\nassumptions=["a"]\n[preset.x.inputs]\nspeed=1\n')
    with pytest.raises(UsageError, match="must list its assumptions"):
        parse_presets('[preset.x]\ntitle="t"\nsummary="s"\n')


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["whatif", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_table_on_the_fixture_says_simulated_and_fed_by(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "--from", str(TRAFFIC), "--hours", "0.25", "--keepalive", "2s")
    assert code == 0
    assert out.startswith("SIMULATED what-if") and "every figure simulated" in out
    assert f"fed by {TRAFFIC}" in out
    header = next(line for line in out.splitlines() if "p50 ms" in line)
    assert header.count("sim.") == 0 and out.splitlines()[out.splitlines().index(header) - 1].count("sim.") == 8
    for runtime in ("container", "subprocess", "wasm"):
        assert sum(line.split()[:2] in ([runtime, "edge"], [runtime, "region"]) for line in out.splitlines()) == 2
    code, out, _ = _run(capsys, "--from", str(TRAFFIC), "--preset", "agent-llm", "--json", "-r", "wasm")
    data = json.loads(out)
    assert code == 0 and data["simulated"] is True and len(data["outcomes"]) == 2
    assert data["inputs"]["extra_ms"] == 1000.0
    assert any(n.startswith("preset agent-llm:") for n in data["notes"])


def test_cli_replays_both_trace_layouts(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    stamps = tmp_path / "stamps.txt"
    stamps.write_text("# arrivals\n1700000000.0\n1700000000.5\n\n1700000002.25\n1700000030\n")
    azure = tmp_path / "azure.csv"
    azure.write_text("HashOwner,HashApp,HashFunction,Trigger,1,2,3\no,a,f,http,3,0,2\no,a,g,timer,1,1,0\n")
    for path, count in ((stamps, 4), (azure, 7)):
        code, out, err = _run(capsys, "--from", str(TRAFFIC), "--trace", str(path), "--json", "--keepalive", "1")
        assert code == 0, err
        data = json.loads(out)
        assert any(n.startswith(f"{count} requests (trace)") for n in data["notes"])
        assert data["inputs"]["trace"] == f"{count} arrivals from the trace file"
    code, out, _ = _run(capsys, "--from", str(TRAFFIC), "--trace", str(azure), "--json", "--hours", str(90 / 3600))
    notes = json.loads(out)["notes"]
    assert code == 0 and any(n.startswith("trace: ") and "of its 7 arrivals fall within" in n for n in notes)


@pytest.mark.parametrize("argv,says", [
    (["--rate", "0"], "rate must be a number above 0"),
    (["--rate", "-5"], "rate must be a number above 0"),
    (["--rate", "nan"], "--rate must be a finite number"),
    (["--keepalive", "-1"], "--keepalive must be"),
    (["--hours", "0"], "hours must be a number above 0"),
    (["--user", "Atlantis"], "unknown place 'Atlantis'"),
    (["--region", "mars-1"], "unknown place 'mars-1'"),
    (["--inflation", "0.5"], "path inflation"),
    (["--max-in-flight", "-1"], "max in flight must be a whole number"),
    (["--preset", "nope"], "unknown preset 'nope'"),
    (["--pattern", "trace"], "--pattern trace needs --trace"),
    (["--trace", "MISSING"], "cannot read it"),
    (["--trace", "MALFORMED"], ":2: not a timestamp"),
    (["--from", str(BURST)], "no warm samples"),
    (["--from", str(FIXTURES / "hyperfine-1.15.0.json")], "not an edgelab export"),
    (["--from", "README"], "not an edgelab export: not JSON"),
])  # fmt: skip
def test_cli_bad_input_is_one_line_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                          argv: list[str], says: str) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("0.5\nsoon\n")
    argv = [str(tmp_path / "missing.txt") if a == "MISSING" else str(bad) if a == "MALFORMED"
            else str(FIXTURES / "README.md") if a == "README" else a for a in argv]  # fmt: skip
    if "--from" not in argv:
        argv = ["--from", str(TRAFFIC), *argv]
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = _run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.startswith("edgelab: ") and err.count("\n") == 1 and says in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_cli_lists_places_and_presets_in_a_real_process() -> None:
    done = subprocess.run([sys.executable, "-m", "edgelab", "whatif", "--list-places"],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert any(line.split()[:2] == ["Tokyo", "city"] for line in lines)
    assert any(line.startswith("us-east-1") and "Ashburn" in line for line in lines)
    assert sum(" city " in f" {line} " for line in lines) >= 20
    assert sum(" region " in f" {line} " for line in lines) >= 12
