"""The ``traffic`` scenario: arrivals, the warm/cold/scale-to-zero policy, the record, real runs.

Policy logic runs on the fake runtime (instant, deterministic launches) with arrivals given
as trace files, so each case knows exactly which request should be warm or cold. The real
runs are short: wasm and subprocess prove warm requests went to resident instances (no
launch, exec far below a cold start) and that nothing is left; one container run proves no
container outlives the scenario. Bad input goes through ``python -m edgelab``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgelab.arrivals import onoff, poisson, read_trace
from edgelab.errors import UsageError
from edgelab.lab import Lab, Settings
from edgelab.runtimes.fake import FakeRuntime
from edgelab.traffic import RequestRecord, TrafficResult

REPO = Path(__file__).resolve().parent.parent


# -- arrivals ------------------------------------------------------------------------------
def test_poisson_mean_gap_is_one_over_the_rate_on_a_fixed_seed() -> None:
    times = poisson(20, 500, np.random.default_rng(1))
    assert (np.diff(times) >= 0).all() and times[0] >= 0 and times[-1] < 500
    assert np.diff(times).mean() == pytest.approx(1 / 20, rel=0.03)
    # The gaps of a Poisson process are exponential: their spread equals their mean.
    assert np.diff(times).std() == pytest.approx(1 / 20, rel=0.05)
    assert (poisson(20, 5, np.random.default_rng(7)) == poisson(20, 5, np.random.default_rng(7))).all()


def test_onoff_keeps_the_mean_rate_and_is_silent_in_the_off_periods() -> None:
    times = onoff(20, 400, np.random.default_rng(2), on_s=1.0, off_s=3.0)
    assert len(times) / 400 == pytest.approx(20, rel=0.05)
    assert ((times % 4.0) < 1.0).all()


def test_a_timestamp_trace_is_read_sorted_from_its_first_time(tmp_path: Path) -> None:
    trace = tmp_path / "t.txt"
    trace.write_text("# seconds\n100.5\n\n101.0  # later\n100.25\n")
    assert read_trace(trace).tolist() == [0.0, 0.25, 0.75]


def test_an_azure_trace_sums_rows_and_spreads_each_minute_within_it(tmp_path: Path) -> None:
    trace = tmp_path / "invocations_per_function_md.anon.d01.csv"
    trace.write_text("HashOwner,HashApp,HashFunction,Trigger,1,2,3\n"
                     "o1,a1,f1,http,2,0,1\n"
                     "o1,a1,f2,timer,1,1,0\n")
    times = read_trace(trace, np.random.default_rng(3))
    minutes = np.floor(times / 60).astype(int).tolist()
    assert minutes == [0, 0, 0, 1, 2]  # minute 1 has 2+1, minute 2 has 0+1, minute 3 has 1+0
    assert (np.diff(times) >= 0).all()


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("0.5\nsoon\n", ":2: not a timestamp"),
        ("0.5\n-1\n", ":2: a timestamp must be"),
        ("# nothing\n\n", "no timestamps"),
        ("HashOwner,HashApp,HashFunction,Trigger,1,2\no,a,f,http,1\n", ":2: 5 fields, the header has 6"),
        ("HashOwner,HashApp,HashFunction,Trigger,1,2\no,a,f,http,1,x\n", ":2: a per-minute count"),
        ("HashOwner,HashApp,HashFunction,Trigger,1,3\n", ":1: the minute columns"),
    ],
)
def test_a_malformed_trace_names_its_file_and_line(tmp_path: Path, content: str, says: str) -> None:
    trace = tmp_path / "bad.txt"
    trace.write_text(content)
    with pytest.raises(UsageError) as raised:
        read_trace(trace)
    assert str(raised.value).startswith(f"trace {trace}") and says in str(raised.value)
    assert "\n" not in str(raised.value)


# -- the record ----------------------------------------------------------------------------
def test_the_traffic_record_reads_back_exactly_and_summarises() -> None:
    record = TrafficResult(
        "poisson", 20.0, 2.0, 1, 3.0,
        requests=[
            RequestRecord(0, 0.123456789012, "cold", 1_234, startup_ns=5_000_123, late_ns=17, held_ns=5_100_000),
            RequestRecord(1, 0.5, "warm", 0, exec_ns=33_001, held_ns=540_002),
            RequestRecord(2, 0.7, "failed", 5, error="boom"),
        ],
        instances_over_time=[(0.0, 1), (0.1234, 2), (2.5, 1)],
        scaled_down=1, memory_bytes_per_instance=12_345.5, memory_metric="PSS",
        memory_byte_seconds=3e6, seed=7, memory_samples=5, memory_baseline_bytes=1e6,
    )
    data = json.loads(json.dumps(record.to_json()))
    assert TrafficResult.from_json(data) == record
    assert data["counts"] == {"requests": 3, "warm": 1, "cold": 1, "failed": 1}
    assert data["cold_fraction"] == 0.5
    assert data["latency_us"]["cold"]["p50"] == pytest.approx(5_001.357)
    assert data["instances"] == {"mean": pytest.approx((0.1234 * 1 + (2.5 - 0.1234) * 2 + 0.5 * 1) / 3, abs=1e-4), "peak": 2}
    assert data["policy"]["seed"] == 7 and data["columns"][:4] == ["t_s", "kind", "queue_us", "service_us"]
    assert data["columns"][-1] == "held_us" and data["requests"][1][-1] == 540.002
    with pytest.raises(ValueError, match="not a traffic record|kind"):
        TrafficResult.from_json({**data, "requests": [[0.1, "tepid", 1, 1, 0, None, None]]})
    with pytest.raises(ValueError, match="request 0: 5 fields, expected 7"):
        TrafficResult.from_json({**data, "requests": [[0.1, "warm", 1, 1, 0]]})
    # An export from before held time was recorded (six columns) reads back without it.
    old = {**data, "columns": data["columns"][:6], "requests": [row[:6] for row in data["requests"]]}
    assert [r.held_ns for r in TrafficResult.from_json(old).requests] == [None, None, None]


# -- the policy, on the fake runtime -----------------------------------------------------------
def fake_lab(delay_s: float = 0.0) -> Lab:
    return Lab(runtime_factory=lambda name, s: FakeRuntime(s, name, delay_s=delay_s))


def traffic(lab: Lab, tmp_path: Path, times: list[float], duration_s: float, **settings: Any) -> Any:
    trace = tmp_path / "arrivals.txt"
    trace.write_text("".join(f"{t}\n" for t in times))
    result = lab.run(Settings(workload="hello", runtimes=("wasm",), scenario="traffic", pattern="trace",
                              trace_file=str(trace), duration_s=duration_s, warmup=0, **settings))
    assert lab.runtime("wasm").live_instances() == []  # nothing left, whatever the policy
    return result.runtimes["wasm"]


def kinds(runtime: Any) -> list[str]:
    return [r.kind for r in runtime.traffic.requests]


def test_a_keepalive_longer_than_the_gaps_serves_warm_from_one_instance(tmp_path: Path) -> None:
    rt = traffic(fake_lab(), tmp_path, [0, 0.1, 0.2, 0.3], 0.5, keepalive_s=1.0)
    assert kinds(rt) == ["cold", "warm", "warm", "warm"]
    # Each request held its instance at least as long as its service, and not until the next.
    for r in rt.traffic.requests:
        service = r.startup_ns if r.kind == "cold" else r.exec_ns
        assert r.held_ns is not None and service is not None and service <= r.held_ns < 100_000_000, r
    assert rt.traffic.scaled_down == 0 and rt.traffic.instances_peak() == 1
    assert len(rt.measured) == 1  # one launch: the warm requests launched nothing


def test_a_keepalive_shorter_than_the_gaps_scales_to_zero_between_requests(tmp_path: Path) -> None:
    rt = traffic(fake_lab(), tmp_path, [0, 0.2, 0.4], 0.6, keepalive_s=0.05)
    assert kinds(rt) == ["cold", "cold", "cold"]
    assert rt.traffic.scaled_down == 3  # each stopped 0.05 s after its answer, the last too
    counts = [n for _, n in rt.traffic.instances_over_time]
    assert counts == [0, 1, 0, 1, 0, 1, 0]
    assert len(rt.measured) == 3 and rt.summary() is not None  # cold starts reach the startup table


def test_keepalive_zero_makes_every_request_cold(tmp_path: Path) -> None:
    result = fake_lab().run(Settings(workload="hello", runtimes=("wasm",), scenario="traffic", rate_per_s=100,
                                     duration_s=0.5, keepalive_s=0, seed=4, warmup=0))
    record = result.runtimes["wasm"].traffic
    assert record.counts()["requests"] > 20 and record.counts()["warm"] == 0
    assert record.cold_fraction == 1.0 and record.seed == 4


def test_prewarmed_instances_serve_the_first_requests_and_are_never_scaled_down(tmp_path: Path) -> None:
    rt = traffic(fake_lab(), tmp_path, [0, 0, 0, 0.3], 0.5, keepalive_s=0.05, prewarm=3)
    assert kinds(rt) == ["warm", "warm", "warm", "warm"]
    assert rt.traffic.scaled_down == 0 and rt.traffic.instances_over_time[0] == (0.0, 3)
    assert len(rt.measured) == 0  # pre-warming is untimed and no request


def test_requests_beyond_the_workers_queue_and_the_wait_is_queue_time(tmp_path: Path) -> None:
    rt = traffic(fake_lab(delay_s=0.2), tmp_path, [0.0] * 20, 0.5, keepalive_s=5.0)
    record = rt.traffic
    assert record.counts() == {"requests": 20, "warm": 4, "cold": 16, "failed": 0}
    assert record.instances_peak() == 16
    waited = sorted(r.queue_ns for r in record.requests)
    assert waited[:16] == [0] * 16 and all(q >= 0.15e9 for q in waited[16:])
    assert all(r.latency_ns >= 0.15e9 for r in record.requests if r.kind == "warm")


def test_a_cancel_mid_traffic_returns_quickly_and_stops_everything() -> None:
    lab = fake_lab()
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    began = time.monotonic()
    result = lab.run(Settings(workload="hello", runtimes=("wasm", "subprocess"), scenario="traffic", rate_per_s=50,
                              duration_s=30, keepalive_s=10, warmup=0), cancel=cancel)
    assert time.monotonic() - began < 2
    assert result.metadata["cancelled"] is True
    for name in ("wasm", "subprocess"):
        assert lab.runtime(name).live_instances() == []
        assert 0 < result.runtimes[name].traffic.counts()["requests"] < 50


def test_the_traffic_table_says_its_units(tmp_path: Path) -> None:
    from rich.console import Console

    from edgelab.results import RunResult
    from edgelab.traffic import print_traffic

    rt = traffic(fake_lab(), tmp_path, [0, 0.1], 0.3, keepalive_s=1.0)
    console = Console(width=80, record=True)
    print_traffic(RunResult({}, {"wasm": rt}), console)
    text = console.export_text()
    assert "latency = arrival → first response byte" in text and "KiB" in text and "50.0" in text
    assert max(len(line) for line in text.splitlines()) <= 80


# -- bad input ----------------------------------------------------------------------------------
def edgelab(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EDGELAB_DATA_DIR": str(tmp_path / "data")}
    return subprocess.run([sys.executable, "-m", "edgelab", "run", "--scenario", "traffic", "-r", "wasm",
                           "--json", str(tmp_path / "out.json"), *args],
                          capture_output=True, text=True, timeout=60, env=env, cwd=REPO)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--rate", "0"], "--rate"),
        (["--pattern", "trace", "--trace", "missing.txt"], "trace missing.txt: cannot read it"),
        (["--pattern", "trace", "--trace", "{bad}"], "bad.txt:2: not a timestamp"),
    ],
)
def test_bad_traffic_input_is_one_line_exit_2_and_nothing_written(tmp_path: Path, args: list[str], says: str) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("0.1\nlater\n")
    done = edgelab(tmp_path, *[a.replace("{bad}", str(bad)) for a in args])
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and lines[-1].startswith("edgelab: ") and says in lines[-1], done.stderr
    assert not (tmp_path / "out.json").exists() and not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"keepalive_s": -1.0}, "--keepalive must be"),
        ({"duration_s": 0.0}, "--duration must be"),
        ({"prewarm": -2}, "--prewarm must be"),
        ({"rate_per_s": float("nan")}, "--rate must be"),
        ({"pattern": "burst"}, "unknown --pattern 'burst'"),
        ({"pattern": "trace"}, "--pattern trace needs --trace"),
        ({"trace_file": "t.txt"}, "--trace replays a file with --pattern trace"),
        ({"rate_per_s": 10_000.0, "duration_s": 101.0}, "at most 1,000,000 are kept"),
    ],
)
def test_traffic_settings_from_any_front_end_are_checked_in_one_line(settings: dict[str, Any], says: str) -> None:
    with pytest.raises(UsageError) as raised:
        Settings(scenario="traffic", **settings).validate()
    assert says in str(raised.value) and "\n" not in str(raised.value)


# -- real runtimes -------------------------------------------------------------------------------
def test_real_warm_requests_go_to_resident_instances_and_nothing_is_left() -> None:
    lab = Lab()
    try:
        result = lab.run(Settings(workload="hello", runtimes=("wasm", "subprocess"), scenario="traffic",
                                  rate_per_s=20, duration_s=1.5, keepalive_s=0.4, seed=11, warmup=1))
        for name in ("wasm", "subprocess"):
            rt = result.runtimes[name]
            assert rt.error is None, rt.error
            record = rt.traffic
            counts = record.counts()
            assert counts["failed"] == 0 and counts["warm"] >= 8 and counts["cold"] >= 1, (name, counts)
            # Every cold request was a launch, and no warm one was.
            assert len(rt.measured) == counts["cold"]
            warm = record.latency_summary("warm")
            exec_p50 = sorted(r.exec_ns for r in record.requests if r.kind == "warm")[counts["warm"] // 2]
            cold_p50 = rt.summary().p50_ns
            assert exec_p50 * 2 < cold_p50, (name, exec_p50, cold_p50)
            # The pool sees the instance busy for the lab's round trip too: for Wasm, whose
            # exec is the host's own time, held is longer than exec by that trip.
            held = [(r.held_ns, r.exec_ns) for r in record.requests if r.kind == "warm"]
            assert all(h is not None and e is not None and h >= e for h, e in held), (name, held)
            assert warm is not None
            assert lab.runtime(name).live_instances() == [], name
    finally:
        lab.close()


def test_real_container_traffic_leaves_no_container(docker_client: Any) -> None:
    from edgelab.session import SESSION_LABEL

    lab = Lab()
    try:
        result = lab.run(Settings(workload="hello", runtimes=("container",), scenario="traffic",
                                  rate_per_s=4, duration_s=1.5, keepalive_s=0.5, seed=2, warmup=0))
        rt = result.runtimes["container"]
        assert rt.error is None, rt.error
        assert rt.traffic.counts()["requests"] >= 1 and rt.traffic.counts()["failed"] == 0
        # Before the lab closes (whose sweep would hide a leak): the scenario removed its own.
        left = docker_client.api.containers(all=True, filters={"label": f"{SESSION_LABEL}={lab.session.id}"})
        assert left == []
    finally:
        lab.close()


def test_real_command_workload_is_cold_for_every_request_and_says_why() -> None:
    from edgelab.workloads import Function

    lab = Lab()
    try:
        result = lab.run(Settings(workload="cat", function=Function(command=("/bin/cat",)), runtimes=("subprocess",),
                                  scenario="traffic", rate_per_s=10, duration_s=1.0, keepalive_s=2, prewarm=2,
                                  seed=1, request=b"hi", warmup=0))
        rt = result.runtimes["subprocess"]
        assert rt.error is None, rt.error
        counts = rt.traffic.counts()
        assert counts["requests"] >= 3 and counts["cold"] == counts["requests"], counts
        assert "answers once" in (rt.traffic.note or "") and rt.traffic.prewarm == 0
        assert rt.exit_summary() is not None  # launch to exit, as any command's
        assert lab.runtime("subprocess").live_instances() == []
    finally:
        lab.close()


def test_memory_held_is_per_instance_growth_times_instance_seconds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgelab.scenarios import traffic as scenario

    monkeypatch.setattr(scenario, "MEMORY_EVERY_S", 0.1)
    rt = traffic(fake_lab(), tmp_path, [0, 0.1], 0.5, keepalive_s=5.0)
    record = rt.traffic
    assert record.memory_samples >= 2 and record.memory_baseline_bytes == 0
    assert record.memory_baseline_after_bytes == 0 and record.memory_noise_bytes == 0
    assert record.memory_bytes_per_instance == 10_240  # the fake's pretend PSS per instance
    assert record.memory_byte_seconds == pytest.approx(10_240 * record.instances_mean() * 0.5)
    assert record.memory_metric == "fake (not a measurement)"


def _judged(held: list[tuple[float, int]], before: float, spread: float, after: float | None,
            after_spread: float = 0.0) -> tuple[TrafficResult, str | None]:
    """A record judged on hand-made readings: (growth over the baseline, instances) pairs."""
    record = TrafficResult("poisson", 20.0, 2.0, 0, 30.0, instances_over_time=[(0.0, 2), (30.0, 0)],
                           memory_metric="PSS", memory_baseline_bytes=before, memory_baseline_noise_bytes=spread,
                           memory_baseline_after_bytes=after,
                           memory_baseline_after_noise_bytes=after_spread if after is not None else None)
    return record, record.judge_memory(held)


def test_a_growth_that_is_the_hosts_drift_is_no_figure() -> None:
    # The walk-through's Wasm host: ~7.4 MiB growth at 2 instances over 30 s, idle spread
    # 40 KiB before the clock, and the idle PSS 7 MiB higher once everything was stopped.
    record, note = _judged([(7_400 * 1024, 2)] * 10, 40e6, 40 * 1024, 40e6 + 7 * 1024 * 1024)
    assert record.memory_bytes_per_instance is None and record.memory_byte_seconds is None
    assert note is not None and "within 3x the drift" in note and "+7,168 KiB from before the run to after it" in note
    assert record.memory_noise_bytes == 7 * 1024 * 1024
    assert record.memory_growth_bytes == 7_400 * 1024 and record.memory_instances_read == 2


def test_a_growth_within_the_idle_spread_is_no_figure() -> None:
    record, note = _judged([(100 * 1024, 3)] * 4, 40e6, 50 * 1024, 40e6 + 10 * 1024)
    assert record.memory_bytes_per_instance is None
    assert note == ("memory not measurable: growth 100 KiB at 3.0 instances is within 3x the idle noise (50 KiB);"
                    " a ramp measures it")


def test_a_negative_growth_says_it_fell_and_whether_that_is_drift() -> None:
    _, within = _judged([(-100 * 1024, 2)] * 3, 40e6, 78 * 1024, 40e6)
    assert within is not None and "memory fell 100 KiB below the idle baseline at 2.0 instances" in within
    assert "within 3x the idle noise (78 KiB)" in within and "growth -" not in within
    # A real wasm run: the host's PSS 78 KiB under the baseline, which itself rose 72 KiB.
    _, drifted = _judged([(-78 * 1024, 1)] * 3, 40e6, 0, 40e6 + 72 * 1024)
    assert drifted == (
        "memory not measurable: memory fell 78 KiB below the idle baseline at 1.0 instances (instances add"
        " memory: this is the runtime's own change), within 3x the drift: the idle memory moved +72 KiB from"
        " before the run to after it (idle spread 0 KiB); a ramp measures it"
    )
    record, far = _judged([(-5_000 * 1024, 2)] * 3, 40e6, 78 * 1024, 40e6 + 1024)
    assert record.memory_bytes_per_instance is None
    assert far is not None and "memory fell 5,000 KiB" in far and "far more than the idle noise (78 KiB)" in far
    assert "drift" in far and "quieter machine" in far and "within" not in far


def test_a_clear_growth_stays_a_figure_and_an_unreadable_after_baseline_is_none() -> None:
    # A container: one process per instance, so the idle figure is 0 before and after.
    record, note = _judged([(2 * 6 * 1024 * 1024, 2), (6 * 1024 * 1024, 1)], 0, 0, 0)
    assert note is None and record.memory_bytes_per_instance == 6 * 1024 * 1024
    assert record.memory_byte_seconds == pytest.approx(6 * 1024 * 1024 * record.instances_mean() * 30.0)
    # A Wasm host's real growth well clear of a small drift stays a figure too.
    record, note = _judged([(3_000 * 1024, 200)], 40e6, 20 * 1024, 40e6 + 100 * 1024, 30 * 1024)
    assert note is None and record.memory_bytes_per_instance == pytest.approx(15 * 1024)
    record, note = _judged([(6 * 1024 * 1024, 1)], 0, 0, None)
    assert record.memory_bytes_per_instance is None and note is not None and "drift is unknown" in note


def test_the_traffic_export_carries_the_noise_the_verdict_was_judged_against() -> None:
    record, _ = _judged([(7_400 * 1024, 2)] * 10, 40e6, 40 * 1024, 40e6 + 7 * 1024 * 1024, 8 * 1024)
    data = json.loads(json.dumps(record.to_json()))
    memory = data["memory"]
    assert memory["bytes_per_instance"] is None
    assert memory["baseline_bytes"] == 40e6 and memory["baseline_noise_bytes"] == 40 * 1024
    assert memory["baseline_after_bytes"] == 40e6 + 7 * 1024 * 1024 and memory["baseline_after_noise_bytes"] == 8 * 1024
    assert memory["drift_bytes"] == 7 * 1024 * 1024 and memory["noise_bytes"] == 7 * 1024 * 1024
    assert memory["noise_factor"] == 3 and memory["growth_bytes"] == 7_400 * 1024 and memory["instances_read"] == 2
    assert TrafficResult.from_json(data) == record


def test_sigterm_mid_traffic_stops_everything_and_returns_quickly(tmp_path: Path) -> None:
    import signal

    import psutil

    env = {**os.environ, "EDGELAB_DATA_DIR": str(tmp_path / "data")}
    lab = subprocess.Popen([sys.executable, "-m", "edgelab", "run", "--scenario", "traffic", "-w", "hello",
                            "-r", "subprocess,wasm", "--rate", "20", "--keepalive", "5s", "--prewarm", "2",
                            "--duration", "30", "--no-history"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        parent = psutil.Process(lab.pid)
        deadline = time.monotonic() + 20
        # Under way once the two pre-warmed native instances (hello-<arch>) are up: the clock
        # starts right after them.
        def natives() -> list[psutil.Process]:
            found = []
            for child in parent.children(recursive=True):
                try:
                    if child.name().startswith("hello"):
                        found.append(child)
                except psutil.Error:
                    pass  # gone between the listing and the look
            return found

        while len(natives()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        started = parent.children(recursive=True)
        assert len(natives()) >= 2 and len(started) >= 3  # the natives and the Wasm host at least
        lab.send_signal(signal.SIGTERM)
        began = time.monotonic()
        _, err = lab.communicate(timeout=15)
        assert time.monotonic() - began < 5
    finally:
        if lab.poll() is None:
            lab.kill()
            lab.wait()
    assert lab.returncode != 0 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("edgelab: interrupted"), err
    gone, alive = psutil.wait_procs(started, timeout=2)
    assert alive == []
