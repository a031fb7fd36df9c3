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
