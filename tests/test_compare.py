"""``edgelab compare`` on fixed exports: the listed differences, the ratios, the rank test, and
bad input (one line, non-zero exit).

tests/fixtures/edgelab-run-a.json and -b.json are two real runs of hello on this machine (see
tests/fixtures/README.md): A with all three runtimes, B without the container, so the settings
differ and Wasm and the subprocess start much faster in B.
"""

from __future__ import annotations

import json
from itertools import product
from pathlib import Path
from typing import Any

import pytest

from edgelab.cli import main
from edgelab.compare import compare_runs, load_runs, rank_test, render

FIXTURES = Path(__file__).parent / "fixtures"
A = FIXTURES / "edgelab-run-a.json"
B = FIXTURES / "edgelab-run-b.json"
HYPERFINE = FIXTURES / "hyperfine-1.15.0.json"


def u_statistic(x: list[float], y: list[float]) -> float:
    """Mann-Whitney U of x, counted pair by pair (ties count a half): the check on scipy's."""
    return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in product(x, y))


def samples(path: Path, runtime: str) -> list[float]:
    data = json.loads(path.read_text())
    return next(r["samples_us"] for r in data["results"] if r["runtime"] == runtime)


def write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code != 0
    assert out == ""
    assert err.startswith("edgelab: ") and err.endswith("\n") and err.count("\n") == 1, err
    return err


# -- the comparison ------------------------------------------------------------------------------
def test_two_fixed_exports_give_ratios_significance_and_differences() -> None:
    reference, changed = load_runs([str(A), str(B)])
    comparison = compare_runs(reference, changed)

    assert {d.key: (d.reference, d.changed) for d in comparison.differences} == {
        "versions.docker_engine": ("20.10.24+dfsg1", None),
        "versions.docker_api": ("1.41", None),
        "settings.runtimes": (["container", "subprocess", "wasm"], ["subprocess", "wasm"]),
        "settings.count": (30, 40),
        "settings.resident": ({"container": 3, "subprocess": 20, "wasm": 500}, {"subprocess": 20, "wasm": 500}),
    }
    assert comparison.not_compared == {"container": "measured in A only"}

    by_runtime = {s.runtime: s for s in comparison.startup}
    assert list(by_runtime) == ["subprocess", "wasm"]
    wasm, sub = by_runtime["wasm"], by_runtime["subprocess"]
    assert (wasm.reference.p50_us, wasm.changed.p50_us) == (47.52, 10.07)
    assert (wasm.reference.p99_us, wasm.changed.p99_us) == (71.074, 13.426)
    assert wasm.ratio == pytest.approx(10.07 / 47.52)
    assert wasm.change == "4.72x faster"
    assert sub.ratio == pytest.approx(213.471 / 443.562)
    assert sub.change == "2.08x faster"
    for change, runtime in ((wasm, "wasm"), (sub, "subprocess")):
        assert change.test is not None
        assert change.test.u == u_statistic(samples(B, runtime), samples(A, runtime))
        assert change.test.p < 0.001 and change.test.significant
        assert change.significance == "significant, p<0.001"
    assert (wasm.reference.n, wasm.changed.n) == (30, 40)

    memory = {m.runtime: m for m in comparison.memory}
    assert set(memory) == {"subprocess", "wasm"}
    assert memory["wasm"].reference.user_space_kib == 10.744
    assert memory["wasm"].changed.user_space_kib == 10.13
    assert memory["wasm"].user_space_ratio == pytest.approx(10.13 / 10.744)
    assert memory["wasm"].reference.host_kib == 5.496 and memory["wasm"].changed.host_kib is None
    assert memory["wasm"].host_ratio is None


def test_the_same_samples_in_another_order_are_not_significant(tmp_path: Path) -> None:
    data = json.loads(B.read_text())
    for entry in data["results"]:
        entry["samples_us"] = list(reversed(entry["samples_us"]))
    shuffled = write(tmp_path / "b-reversed.json", data)
    comparison = compare_runs(*load_runs([str(B), str(shuffled)]))
    assert comparison.differences == []
    for change in comparison.startup:
        assert change.change == "same"
        assert change.test is not None and change.test.p == pytest.approx(1.0)
        assert change.significance == "not significant, p=1"


def test_rank_test_small_samples_use_the_exact_distribution() -> None:
    # Exact two-sided p for complete separation: 2 / C(n+m, n).
    assert rank_test([1, 2, 3], [4, 5, 6]).p == pytest.approx(2 / 20)  # type: ignore[union-attr]
    assert not rank_test([1, 2, 3], [4, 5, 6]).significant  # type: ignore[union-attr]
    assert rank_test(list(range(8)), list(range(8, 16))).p == pytest.approx(2 / 12870)  # type: ignore[union-attr]
    assert rank_test(list(range(8)), list(range(8, 16))).significant  # type: ignore[union-attr]
    assert rank_test([], [1.0]) is None


def test_too_few_samples_to_tell_says_so() -> None:
    few = rank_test([1, 2, 3], [4, 5, 6])
    assert few is not None and few.smallest_p == pytest.approx(0.1)
    assert few.describe() == "not significant, p=0.1: too few samples to tell (use --count 10 or more)"
    enough = rank_test([1, 2, 3, 4, 5], [3, 4, 5, 6, 2])
    assert enough is not None and enough.smallest_p < 0.05
    assert enough.describe() == f"not significant, p={enough.p:.3g}"


def test_text_lists_differences_before_the_figures(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(A), str(B)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    differs = lines.index("B differs from A in:")
    startup = next(i for i, line in enumerate(lines) if line.startswith("Cold start of hello"))
    assert differs < startup
    assert any(line.split()[:3] == ["settings.count", "30", "→"] and line.split()[3] == "40" for line in lines)
    wasm_row = next(line for line in lines[startup:] if line.startswith("wasm "))
    assert wasm_row.split()[3:11] == ["47.5", "µs", "10.1", "µs", "71.1", "µs", "13.4", "µs"]
    assert "4.72x faster" in wasm_row and wasm_row.endswith("significant, p<0.001")
    assert "container: not compared, measured in A only" in lines
    assert any(line.startswith("Memory per resident instance") for line in lines)


def test_json_output_carries_every_figure(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(A), str(B), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["label"] for r in data["runs"]] == ["A", "B"]
    assert data["test"] == "Mann-Whitney U, two-sided" and data["alpha"] == 0.05
    (comparison,) = data["comparisons"]
    assert {d["key"] for d in comparison["differences"]} >= {"settings.count", "settings.runtimes"}
    wasm = next(s for s in comparison["startup"] if s["runtime"] == "wasm")
    assert wasm["reference"] == {"n": 30, "p50_us": 47.52, "p99_us": 71.074}
    assert wasm["changed"] == {"n": 40, "p50_us": 10.07, "p99_us": 13.426}
    assert wasm["ratio"] == pytest.approx(10.07 / 47.52)
    assert wasm["rank_test"]["significant"] is True and wasm["rank_test"]["p"] < 0.001
    assert comparison["not_compared"] == {"container": "measured in A only"}


def test_more_than_two_runs_are_each_compared_to_the_first(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(A), str(B), str(A), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(c["reference"], c["changed"]) for c in data["comparisons"]] == [("A", "B"), ("A", "C")]
    against_itself = data["comparisons"][1]
    assert against_itself["differences"] == [] and against_itself["not_compared"] == {}
    assert [s["runtime"] for s in against_itself["startup"]] == ["container", "subprocess", "wasm"]
    assert all(not s["rank_test"]["significant"] and s["ratio"] == 1 for s in against_itself["startup"])


def test_a_runtime_that_failed_in_one_run_is_named_with_its_error(tmp_path: Path) -> None:
    data = json.loads(A.read_text())
    container = next(r for r in data["results"] if r["runtime"] == "container")
    container.update(startup_us=None, samples_us=[], ok=0, error="engine did not answer")
    failed = write(tmp_path / "a-no-engine.json", data)
    comparison = compare_runs(*load_runs([str(A), str(failed)]))
    assert comparison.not_compared == {"container": "no successful cold start in B (engine did not answer)"}


# -- bad input: one line, non-zero exit -------------------------------------------------------------
def test_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    err = one_line_error(capsys, ["compare", str(A), str(tmp_path / "nope.json")])
    assert "no such file" in err and "nope.json" in err


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("not json at all", "not JSON"),
        ("", "not JSON"),
        ('{"foo": 1}', "no metadata and results"),
        ("[1, 2]", "not an object"),
        ('{"metadata": {"settings": {}, "workload": {}}, "results": [{"count": 3}]}', "names no runtime"),
        ('{"metadata": {"settings": {}, "workload": {}}, "results": [{"runtime": "wasm", "samples_us": ["x"]}]}',
         "not a list of numbers"),
    ],
)
def test_a_file_that_is_not_an_export(capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str, why: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    err = one_line_error(capsys, ["compare", str(A), str(bad)])
    assert "is not an edgelab export" in err and why in err


def test_binary_file_and_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    binary = tmp_path / "x.bin"
    binary.write_bytes(b"\xff\xfe\x00\x81" * 64)
    assert "not an edgelab export: not text" in one_line_error(capsys, ["compare", str(A), str(binary)])
    assert "is a folder" in one_line_error(capsys, ["compare", str(A), str(tmp_path)])


def test_a_hyperfine_export_is_named_as_such(capsys: pytest.CaptureFixture[str]) -> None:
    err = one_line_error(capsys, ["compare", str(A), str(HYPERFINE)])
    assert "not an edgelab export: it is a hyperfine export" in err


def test_exports_with_no_runtime_in_common(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = json.loads(A.read_text())
    data["results"] = [r for r in data["results"] if r["runtime"] == "container"]
    only_container = write(tmp_path / "container.json", data)
    err = one_line_error(capsys, ["compare", str(only_container), str(B)])
    assert "no runtime in common" in err and "hello on container" in err and "hello on subprocess, wasm" in err


def test_different_workloads_are_said_to_be_different(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = json.loads(B.read_text())
    data["metadata"]["workload"]["name"] = "fib"
    fib = write(tmp_path / "fib.json", data)
    err = one_line_error(capsys, ["compare", str(A), str(fib)])
    # the runtimes are shared: what differs is the workload, and the line says so
    assert "measure different workloads" in err and "no runtime in common" not in err
    assert "fib on subprocess, wasm" in err and "compare sets runs of one workload side by side" in err


def test_one_run_is_not_a_comparison(capsys: pytest.CaptureFixture[str]) -> None:
    assert "two runs or more" in one_line_error(capsys, ["compare", str(A)])


def test_last_beyond_the_history(capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGELAB_DATA_DIR", str(tmp_path / "data"))
    err = one_line_error(capsys, ["compare", "last~1", "last"])
    assert err == "edgelab: no run last~1: history holds 0 runs (edgelab run saves every run)\n"


def test_importing_compare_history_and_hyperfine_loads_no_heavy_module() -> None:
    import subprocess
    import sys

    code = (
        "import sys, edgelab.compare, edgelab.history, edgelab.hyperfine; "
        "print(','.join(m for m in ('scipy', 'numpy', 'textual', 'docker', 'wasmtime') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == ""


def test_a_fake_run_is_flagged(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = json.loads(B.read_text())
    data["metadata"]["fake"] = True
    fake = write(tmp_path / "fake.json", data)
    assert main(["compare", str(B), str(fake)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "note: B ran on the fake runtime; its figures are not measurements." in lines
    assert any(line.split() == ["fake", "runtimes", "false", "→", "true"] for line in lines)


def test_what_a_figure_includes_is_a_difference_when_both_runs_say(tmp_path: Path) -> None:
    data = json.loads(B.read_text())
    wasm = next(r for r in data["results"] if r["runtime"] == "wasm")
    wasm["startup_includes"] = "instantiate only"
    sub = next(r for r in data["results"] if r["runtime"] == "subprocess")
    sub.update(memory_kib_per_instance=None, memory_metric=None)
    changed = write(tmp_path / "changed.json", data)
    comparison = compare_runs(*load_runs([str(B), str(changed)]))
    assert [d.key for d in comparison.differences] == ["wasm.startup_includes"]
    assert comparison.differences[0].changed == "instantiate only"
    assert [m.runtime for m in comparison.memory] == ["wasm"]


def test_a_host_figure_is_compared_when_the_user_space_one_is_no_figure(tmp_path: Path) -> None:
    # A PSS growth within its noise exports null; the host figure beside it still compares.
    runs = []
    for name, host in (("a", 20.0), ("b", 30.0)):
        data = json.loads(B.read_text())
        wasm = next(r for r in data["results"] if r["runtime"] == "wasm")
        wasm.update(memory_kib_per_instance=None, host_kib_per_instance=host, host_basis="fall of MemAvailable")
        runs.append(str(write(tmp_path / f"{name}.json", data)))
    comparison = compare_runs(*load_runs(runs))
    wasm_change = next(m for m in comparison.memory if m.runtime == "wasm")
    assert wasm_change.host_ratio == pytest.approx(1.5)
    assert wasm_change.user_space_ratio is None and wasm_change.reference.user_space_kib is None
    lines = render(load_runs(runs), [comparison])
    assert any(line.split()[:1] == ["wasm"] and "1.50x more" in line and "–" in line for line in lines), lines
