"""The measuring core's bookkeeping, on the fake runtime: interleaving, warmups, memory, exports.

The fake's timings are fixed, so these tests check what the lab does with samples, not how
fast anything is. Real runtimes are covered in tests/test_run_real.py.
"""

import csv
import io
import json
import threading
from pathlib import Path

import pytest

from edgelab.errors import UsageError
from edgelab.events import MemoryPoint, RuntimeStatus, SampleRecorded, ScenarioFinished
from edgelab.export import to_csv, to_markdown, write_exports
from edgelab.lab import Lab, Settings, parse_resident
from edgelab.runtimes.fake import FakeRuntime


def fake_lab(unavailable: dict[str, str] | None = None) -> Lab:
    unavailable = unavailable or {}
    return Lab(runtime_factory=lambda name, s: FakeRuntime(s, name, unavailable.get(name)))


def test_launch_interleave_takes_turns_launch_by_launch_and_excludes_warmups() -> None:
    events: list = []
    lab = fake_lab()
    result = lab.run(Settings(workload="hello", count=4, warmup=2, interleave="launch"), on_event=events.append)
    order = [e.sample.runtime for e in events if isinstance(e, SampleRecorded)]
    assert order[:6] == ["container", "subprocess", "wasm"] * 2
    for runtime in result.runtimes.values():
        assert runtime.launched == 6
        assert len(runtime.measured) == 4
        assert runtime.summary().n == 4  # type: ignore[union-attr]
    assert isinstance(events[-1], ScenarioFinished)
    assert lab.runtime("wasm").live_instances() == []


def test_json_has_the_documented_fields() -> None:
    result = fake_lab().run(Settings(workload="hello", count=3, warmup=0, resident={"wasm": 5}))
    data = json.loads(json.dumps(result.to_json()))
    assert {"host", "versions", "settings", "session"} <= set(data["metadata"])
    assert data["metadata"]["fake"] is True
    wasm = next(r for r in data["results"] if r["runtime"] == "wasm")
    for key in ("runtime", "count", "ok", "failed", "error", "startup_us", "phases_us", "samples_us",
                "memory_kib_per_instance", "memory_metric", "instances_per_gib"):
        assert key in wasm
    assert set(wasm["startup_us"]) == {"min", "p50", "p90", "p99", "max", "mean", "stdev"}
    assert set(wasm["phases_us"]) == {"instantiate", "first_response"}
    assert len(wasm["samples_us"]) == 3
    assert wasm["memory_kib_per_instance"] == pytest.approx(10.0)  # user-space (PSS)
    # Instances per GiB follows the host figure: the fake's MemAvailable falls 12 KiB each.
    assert wasm["host_kib_per_instance"] == pytest.approx(12.0)
    assert wasm["host_basis"].startswith("fall of MemAvailable")
    assert wasm["instances_per_gib"] == 87381
    container = next(r for r in data["results"] if r["runtime"] == "container")
    assert container["memory_kib_per_instance"] is None and container["instances_per_gib"] is None


def test_unavailable_runtime_reports_reason_and_others_complete() -> None:
    events: list = []
    result = fake_lab({"container": "no engine"}).run(Settings(workload="hello", count=3), on_event=events.append)
    container = result.runtimes["container"]
    assert container.error == "no engine" and container.fix
    assert container.samples == []
    assert result.runtimes["wasm"].ok == 3 and result.runtimes["subprocess"].ok == 3
    assert RuntimeStatus("container", "unavailable", "no engine", "fake: nothing to fix") in events
    assert result.to_json()["results"][0]["error"] == "no engine"


def test_ramp_records_a_memory_curve_and_releases_everything() -> None:
    events: list = []
    lab = fake_lab()
    result = lab.run(
        Settings(workload="hello", scenario="ramp", resident={"wasm": 200, "container": 4}, runtimes=("container", "wasm")),
        on_event=events.append,
    )
    points = [e for e in events if isinstance(e, MemoryPoint) and e.runtime == "wasm"]
    assert points[-1].instances == 200
    assert [p.instances for p in points] == sorted(p.instances for p in points)
    assert result.runtimes["wasm"].memory.pss_bytes_per_instance == 10_240  # type: ignore[union-attr]
    assert result.runtimes["wasm"].memory.mem_available_bytes_per_instance is not None  # type: ignore[union-attr]
    assert result.runtimes["container"].memory.instances == 4  # type: ignore[union-attr]
    assert all(r.running == 0 for r in result.runtimes.values())
    assert lab.runtime("wasm").live_instances() == []


def test_ramp_hold_waits_for_cancel() -> None:
    cancel = threading.Event()
    lab = fake_lab()
    holding = threading.Event()

    def on_event(event: object) -> None:
        if isinstance(event, MemoryPoint) and event.instances == 10:
            holding.set()

    worker = threading.Thread(
        target=lab.run,
        args=(Settings(workload="hello", scenario="ramp", resident={"wasm": 10}, runtimes=("wasm",), hold=True),),
        kwargs={"on_event": on_event, "cancel": cancel},
    )
    worker.start()
    assert holding.wait(5)
    assert len(lab.runtime("wasm").live_instances()) == 10
    cancel.set()
    worker.join(5)
    assert not worker.is_alive()
    assert lab.runtime("wasm").live_instances() == []


def test_steady_paces_launches() -> None:
    result = fake_lab().run(Settings(workload="hello", scenario="steady", rate_per_s=20, duration_s=0.5, runtimes=("wasm",)))
    assert 5 <= result.runtimes["wasm"].launched <= 11


@pytest.mark.parametrize(
    "settings",
    [
        Settings(workload="hello", count=0),
        Settings(workload="hello", count=-3),
        Settings(workload="hello", scenario="ramp"),
        Settings(workload="hello", warmup=-1),
        Settings(workload="nope"),
    ],
)
def test_bad_settings_are_usage_errors(settings: Settings) -> None:
    with pytest.raises(UsageError):
        fake_lab().run(settings)


def test_parse_resident() -> None:
    assert parse_resident("5", ("wasm", "container")) == {"wasm": 5, "container": 5}
    assert parse_resident("wasm=10000,container=50", ("wasm", "container")) == {"wasm": 10000, "container": 50}
    # A runtime named but not selected is left out, not refused (the CLI helper's grammar,
    # tests/test_cli_flags.py): every selected runtime gets a count.
    assert parse_resident("subprocess=3", ("wasm",)) == {"wasm": 0}
    with pytest.raises(UsageError):
        parse_resident("lots", ("wasm",))


def test_exports_are_written_and_consistent(tmp_path: Path) -> None:
    result = fake_lab().run(Settings(workload="hello", count=3, warmup=1))
    paths = write_exports(result, tmp_path / "r.json", tmp_path / "r.csv", tmp_path / "r.md")
    assert [p.name for p in paths] == ["r.json", "r.csv", "r.md"]
    rows = list(csv.DictReader(io.StringIO(to_csv(result))))
    assert len(rows) == 12 and sum(r["warmup"] == "1" for r in rows) == 3
    assert "| wasm |" in to_markdown(result)
    assert json.loads((tmp_path / "r.json").read_text())["results"][2]["runtime"] == "wasm"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_export_to_unwritable_path_fails_cleanly(tmp_path: Path) -> None:
    from edgelab.errors import EdgelabError

    result = fake_lab().run(Settings(workload="hello", count=1, warmup=0))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(EdgelabError, match="cannot write"):
        write_exports(result, json_path=blocker / "r.json")


def _runs(events: list) -> list[tuple[str, int]]:
    """The launch sequence as (runtime, launches in a row)."""
    runs: list[tuple[str, int]] = []
    for event in events:
        if isinstance(event, SampleRecorded):
            name = event.sample.runtime
            if runs and runs[-1][0] == name:
                runs[-1] = (name, runs[-1][1] + 1)
            else:
                runs.append((name, 1))
    return runs


def test_block_interleave_alternates_blocks_and_flips_the_order_every_round() -> None:
    from edgelab.lab import BLOCK_MIN_ROUNDS

    assert BLOCK_MIN_ROUNDS == 2  # 20 launches: blocks of at most 10
    runtimes: dict[str, FakeRuntime] = {}

    def factory(name: str, session: object) -> FakeRuntime:
        runtimes[name] = FakeRuntime(session, name, batched=name == "wasm")  # type: ignore[arg-type]
        return runtimes[name]

    events: list = []
    result = Lab(runtime_factory=factory).run(Settings(workload="hello", count=20, warmup=0), on_event=events.append)
    # Round 0 measures one launch each (c, s, w); then blocks of up to 10 (the fake is
    # instant), the order reversed every round: w s c | c s w, so a runtime's last block and
    # its next one meet.
    assert _runs(events) == [
        ("container", 1), ("subprocess", 1), ("wasm", 11), ("subprocess", 10), ("container", 19),
        ("subprocess", 9), ("wasm", 9),
    ]
    # Wasm's blocks went through its batched path, one call per block.
    assert runtimes["wasm"].batches == [10, 9]
    assert all(r.ok == 20 for r in result.runtimes.values())
    data = json.loads(json.dumps(result.to_json()))
    assert data["metadata"]["settings"]["interleave"] == "block"
    assert data["metadata"]["interleave"]["mode"] == "block"
    assert data["metadata"]["interleave"]["launches_per_block"]["wasm"] == {"blocks": 3, "min": 1, "median": 9, "max": 10}


def test_block_size_follows_the_time_each_launch_takes() -> None:
    from edgelab.lab import BLOCK_S

    delay = BLOCK_S / 3  # about three launches fill a block
    lab = Lab(runtime_factory=lambda name, s: FakeRuntime(s, name, delay_s=delay if name == "container" else 0.0))
    result = lab.run(Settings(workload="hello", runtimes=("container", "wasm"), count=40, warmup=0))
    blocks = result.metadata["interleave"]["launches_per_block"]
    assert blocks["container"]["min"] == 1 and blocks["container"]["max"] in (2, 3)
    assert blocks["wasm"]["max"] == 20  # half the burst: fast runtimes still take turns
    assert result.runtimes["container"].ok == 40 and result.runtimes["wasm"].ok == 40


def test_launch_interleave_is_recorded_in_the_export() -> None:
    events: list = []
    result = fake_lab().run(Settings(workload="hello", count=3, warmup=0, interleave="launch"), on_event=events.append)
    assert _runs(events) == [(name, 1) for name in ("container", "subprocess", "wasm")] * 3
    data = json.loads(json.dumps(result.to_json()))
    assert data["metadata"]["settings"]["interleave"] == "launch"
    assert data["metadata"]["interleave"] == {"mode": "launch"}


def test_ramp_reports_user_space_and_host_figures_with_their_basis_and_rate() -> None:
    result = fake_lab().run(
        Settings(workload="hello", scenario="ramp", resident={"container": 4, "subprocess": 50, "wasm": 500})
    )
    data = {r["runtime"]: r for r in json.loads(json.dumps(result.to_json()))["results"]}
    container = result.runtimes["container"].memory
    assert container is not None
    assert container.pss_bytes_per_instance == 5_800_000  # user-space: PSS growth / N
    assert container.mem_available_bytes_per_instance == 9_400_000  # host: the fall of MemAvailable
    assert container.cgroup_bytes_per_instance == 1_300_000  # host, by the cgroups: kernel included
    assert container.host_bytes_per_instance == 9_400_000
    assert container.host_basis == "fall of MemAvailable during this runtime's ramp / instances"
    assert container.instances_per_gib == pytest.approx((1 << 30) / 9_400_000)
    for name, user_kib, host_kib in (("subprocess", 125_000 / 1024, 180_000 / 1024), ("wasm", 10.0, 12.0)):
        memory = data[name]["memory"]
        assert memory["user_space_kib_per_instance"] == pytest.approx(user_kib, abs=1e-3)
        assert memory["host_kib_per_instance"] == pytest.approx(host_kib, abs=1e-3)
        assert memory["host_basis"].startswith("fall of MemAvailable")
        assert memory["cgroup_kib_per_instance"] is None
        assert memory["ramp_rate_per_s"] > 0
        assert memory["limit"] is None and memory["warnings"] == []
        assert memory["mem_available_noise_kib"] == 0
    assert data["container"]["memory"]["cgroup_kib_per_instance"] == pytest.approx(1_300_000 / 1024, abs=1e-3)


def test_a_noisy_mem_available_is_said_with_the_instances_a_stable_figure_needs() -> None:
    from edgelab.runtimes.fake import fake_mem_available

    wobble = iter(range(10**9))

    def noisy() -> int:  # +-512 KiB of other processes' noise on the fake's MemAvailable
        return fake_mem_available() + (512 << 10) * (-1) ** next(wobble)

    lab = Lab(runtime_factory=lambda name, s: FakeRuntime(s, name), mem_available=noisy)
    result = lab.run(Settings(workload="hello", scenario="ramp", runtimes=("wasm",), resident={"wasm": 20}))
    memory = result.runtimes["wasm"].memory
    assert memory is not None and memory.mem_available_noise_bytes == 1 << 20
    assert not memory.mem_available_stable  # 20 x 12 KiB = 240 KiB, under 10 x 1 MiB
    needed = memory.instances_for_stable_host_figure
    assert needed == -(-10 * (1 << 20) // 10_240)  # ten times the noise at 10 KiB (PSS) each
    # A fall within noise is no host figure: per GiB falls back to PSS, and says so.
    assert memory.host_bytes_per_instance is None
    assert memory.host_basis == f"none: MemAvailable fall within noise (hold at least {needed:,}); per GiB from user-space {memory.metric}"
    assert memory.instances_per_gib == pytest.approx((1 << 30) / 10_240)
    assert any(f"hold at least {needed:,}" in w for w in result.runtimes["wasm"].warnings())


@pytest.mark.parametrize("batched", [False, True], ids=["base-launch_many", "fake-launch_many"])
def test_a_limit_stops_the_ramp_with_its_line_and_keeps_what_it_held(batched: bool) -> None:
    lab = Lab(runtime_factory=lambda name, s: FakeRuntime(s, name, limit_after=135 if name == "wasm" else None, batched=batched))
    result = lab.run(
        Settings(workload="hello", scenario="ramp", runtimes=("wasm", "subprocess"), resident={"wasm": 1000, "subprocess": 30})
    )
    memory = result.runtimes["wasm"].memory
    assert memory is not None
    # launch_many is all or nothing, in Runtime's default as in the fake's own: the chunk that
    # hit the limit is given back.
    held = 130  # chunks of 10: the one from 130 failed at 135
    assert memory.instances == held and memory.target == 1000
    assert memory.limit == f"wasm ramp stopped at {held:,} of 1,000 instances: fake pids limit of 135 instances"
    assert memory.pss_bytes_per_instance == 10_240 and memory.host_bytes_per_instance == 12_288
    assert memory.limit in result.runtimes["wasm"].warnings()
    assert json.loads(json.dumps(result.to_json()))["results"][0]["memory"]["limit"] == memory.limit
    assert result.runtimes["subprocess"].memory.instances == 30  # type: ignore[union-attr]
    assert lab.runtime("wasm").live_instances() == [] and lab.runtime("subprocess").live_instances() == []
    assert all(r.running == 0 for r in result.runtimes.values())


def test_a_container_host_figure_within_noise_falls_back_to_cgroup_or_pss_whichever_is_larger() -> None:
    from edgelab.results import MemoryResult

    mib = 1 << 20
    noise = 400.0 * mib
    above = MemoryResult(50, 2.7 * mib, "PSS", 4.0 * mib, cgroup_bytes_per_instance=4.0 * mib, mem_available_noise_bytes=noise)
    assert above.host_bytes_per_instance == 4.0 * mib and above.host_basis.startswith("cgroup memory incl. kernel")
    below = MemoryResult(5, 4.3 * mib, "PSS", 1.0 * mib, cgroup_bytes_per_instance=0.4 * mib, mem_available_noise_bytes=noise)
    assert below.host_bytes_per_instance == 4.3 * mib  # the cgroups leave out the shim
    assert below.host_basis.startswith("user-space PSS, above the cgroups' memory")
    assert below.instances_per_gib == pytest.approx((1 << 30) / (4.3 * mib))
    stable = MemoryResult(100, 2.7 * mib, "PSS", 5.0 * mib, cgroup_bytes_per_instance=0.4 * mib, mem_available_noise_bytes=mib)
    assert stable.host_bytes_per_instance == 5.0 * mib and stable.host_basis.startswith("fall of MemAvailable")
    assert stable.warnings() == []


def test_a_fall_within_noise_at_a_count_that_should_suffice_says_the_machine_was_busy() -> None:
    from edgelab.results import MemoryResult

    # 30,000 x 11 KiB of PSS is ~330 MiB, 10x a 15 MiB noise would need ~14,000: enough
    # instances, yet the fall was small (other processes freed memory meanwhile).
    memory = MemoryResult(30_000, 11 * 1024.0, "PSS", 100.0, mem_available_noise_bytes=15 << 20)
    assert not memory.mem_available_stable and memory.instances_for_stable_host_figure is None
    assert memory.host_bytes_per_instance is None
    (warning,) = memory.warnings()
    assert warning.endswith("other processes moved it: rerun on a quieter machine")
    assert "hold at least" not in memory.host_basis


def test_a_fall_between_3x_and_10x_its_noise_is_a_rough_host_figure_with_its_uncertainty() -> None:
    from edgelab.results import MemoryResult

    mib = 1 << 20
    # 100,000 x 13.2 KiB fell ~1.26 GiB against 192 MiB of noise: about ±15%.
    memory = MemoryResult(100_000, 11 * 1024.0, "PSS", 13.2 * 1024, mem_available_noise_bytes=192 * mib)
    assert not memory.mem_available_stable
    assert memory.host_bytes_per_instance == 13.2 * 1024
    assert memory.mem_available_uncertainty == pytest.approx(192 * mib / (100_000 * 13.2 * 1024))
    assert memory.host_basis.endswith("(rough: ±15%, idle noise)")
    (warning,) = memory.warnings()
    assert "the host figure is rough (±15%)" in warning and "hold at least 178,735" in warning
    assert memory.to_json()["mem_available_stable"] is False
    # Under 3x its noise the fall is no figure at all.
    assert MemoryResult(1_000, 11 * 1024.0, "PSS", 13.2 * 1024, mem_available_noise_bytes=5 * mib).host_bytes_per_instance is None
