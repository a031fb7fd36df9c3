"""The hyperfine export: key by key (names, order, types, nesting) against exports hyperfine
itself wrote, the committed ones and, where hyperfine is installed, a fresh one."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edgelab.errors import EdgelabError
from edgelab.hyperfine import to_hyperfine_json
from edgelab.lab import Lab, Settings
from edgelab.results import RunResult, RuntimeResult, Sample

FIXTURES = Path(__file__).parent / "fixtures"
#: Keys whose value we set to null where hyperfine writes a number (see edgelab/hyperfine.py:
#: edgelab does not measure CPU time per launch, and 0 would be a lie).
NULL_BY_CHOICE = {"user", "system"}


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def assert_same_schema(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    """Same keys, in the same order, with the same JSON types, at every level."""
    assert list(ours) == list(theirs) == ["results"]
    assert isinstance(ours["results"], list) and ours["results"]
    reference = theirs["results"][0]
    for result in ours["results"]:
        assert list(result) == list(reference), "keys or their order differ from hyperfine's"
        for key, value in result.items():
            expected = reference[key]
            if key in NULL_BY_CHOICE:
                assert value is None and json_type(expected) == "number"
            elif key == "stddev" and expected is None:
                assert value is None or json_type(value) == "number"
            else:
                assert json_type(value) == json_type(expected), key
        for key in ("times", "exit_codes"):
            assert {json_type(v) for v in result[key]} == {json_type(v) for v in reference[key]}, key
        assert all(isinstance(v, int) for v in result["exit_codes"])
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in result["parameters"].items())


def fixed_run(startups_ns: dict[str, list[int | None]]) -> RunResult:
    """A run with exactly these cold starts per runtime (None: a failed launch), plus a warmup."""
    runtimes = {}
    for name, values in startups_ns.items():
        result = RuntimeResult(runtime=name)
        result.samples.append(Sample(name, 0, True, True, 1_000_000_000))
        for i, ns in enumerate(values, start=1):
            result.samples.append(Sample(name, i, False, ns is not None, ns, error=None if ns else "boom"))
        runtimes[name] = result
    return RunResult({"workload": {"name": "hello"}}, runtimes)


def test_matches_hyperfines_own_export_key_by_key() -> None:
    theirs = json.loads((FIXTURES / "hyperfine-1.15.0.json").read_text())
    ours = json.loads(to_hyperfine_json(fixed_run({"subprocess": [300_000, 310_000, 290_000], "wasm": [4_000, 3_000]})))
    assert_same_schema(ours, theirs)


def test_one_sample_has_null_stddev_like_hyperfine_after_one_run() -> None:
    theirs = json.loads((FIXTURES / "hyperfine-1.15.0-one-run.json").read_text())
    assert theirs["results"][0]["stddev"] is None
    ours = json.loads(to_hyperfine_json(fixed_run({"wasm": [4_000]})))
    assert ours["results"][0]["stddev"] is None
    assert [k for k in ours["results"][0] if k != "parameters"] == list(theirs["results"][0])


def test_times_are_the_measured_cold_starts_in_seconds() -> None:
    text = to_hyperfine_json(fixed_run({"subprocess": [300_000, None, 310_000, 290_000], "wasm": [4_000, 3_000]}))
    assert text.endswith("}\n")
    results = {r["parameters"]["runtime"]: r for r in json.loads(text)["results"]}
    sub = results["subprocess"]
    assert sub["command"] == "edgelab subprocess hello"
    assert sub["parameters"] == {"runtime": "subprocess"}
    # The warmup (1 s) and the failed launch are left out; exit codes match the times one to one.
    assert sub["times"] == [300e-6, 310e-6, 290e-6]
    assert sub["exit_codes"] == [0, 0, 0]
    assert sub["mean"] == pytest.approx(statistics.fmean(sub["times"]))
    assert sub["stddev"] == pytest.approx(statistics.stdev(sub["times"]))
    assert sub["median"] == pytest.approx(300e-6)
    assert (sub["min"], sub["max"]) == (pytest.approx(290e-6), pytest.approx(310e-6))
    assert results["wasm"]["times"] == [4e-6, 3e-6]


def test_a_runtime_without_a_successful_start_is_left_out() -> None:
    data = json.loads(to_hyperfine_json(fixed_run({"container": [None, None], "wasm": [4_000]})))
    assert [r["command"] for r in data["results"]] == ["edgelab wasm hello"]
    with pytest.raises(EdgelabError, match="no runtime had a successful cold start"):
        to_hyperfine_json(fixed_run({"container": [None]}))


def test_a_real_run_exports_its_samples() -> None:
    lab = Lab()
    try:
        result = lab.run(Settings(workload="hello", runtimes=("subprocess", "wasm"), count=5, warmup=1))
    finally:
        lab.close()
    data = json.loads(to_hyperfine_json(result))
    assert_same_schema(data, json.loads((FIXTURES / "hyperfine-1.15.0.json").read_text()))
    for entry in data["results"]:
        runtime = result.runtimes[entry["parameters"]["runtime"]]
        assert entry["times"] == [s.startup_ns / 1e9 for s in runtime.measured if s.ok and s.startup_ns is not None]
        assert len(entry["times"]) == 5


def test_matches_a_fresh_export_of_the_installed_hyperfine(tmp_path: Path) -> None:
    if shutil.which("hyperfine") is None:  # never skipped in CI: .ci/run installs it
        if os.environ.get("CI"):
            pytest.fail("hyperfine is not installed: .ci/run installs it; CI must check against it")
        pytest.skip("hyperfine is not installed (apt-get install hyperfine)")
    out = tmp_path / "hyperfine.json"
    subprocess.run(
        ["hyperfine", "--runs", "3", "-L", "n", "0,1", "--export-json", str(out), "sleep 0.00{n}"],
        check=True, capture_output=True, timeout=60,
    )
    theirs = json.loads(out.read_text())
    ours = json.loads(to_hyperfine_json(fixed_run({"wasm": [4_000, 3_000, 5_000]})))
    assert_same_schema(ours, theirs)


def test_edgelab_run_export_hyperfine_writes_the_schema(tmp_path: Path) -> None:
    out = tmp_path / "hf.json"
    done = subprocess.run(
        [sys.executable, "-m", "edgelab", "run", "-w", "hello", "-r", "subprocess,wasm", "-n", "5",
         "--no-history", "--export-hyperfine", str(out)],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, EDGELAB_DATA_DIR=str(tmp_path / "data")),
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    assert_same_schema(data, json.loads((FIXTURES / "hyperfine-1.15.0.json").read_text()))
    assert [r["command"] for r in data["results"]] == ["edgelab subprocess hello", "edgelab wasm hello"]
    assert all(len(r["times"]) == 5 for r in data["results"])
    assert not (tmp_path / "data").exists()
