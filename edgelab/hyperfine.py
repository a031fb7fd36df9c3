"""A run in hyperfine's JSON export schema, so tools written for hyperfine read it unchanged.

The schema is what ``hyperfine --export-json`` writes (1.x; tests/fixtures/ holds one that
hyperfine 1.15.0 wrote on the lab's machine, and tests/test_hyperfine.py checks ours against it
key by key): ``{"results": [{"command", "mean", "stddev", "median", "user", "system", "min",
"max", "times", "exit_codes", "parameters"}]}``, every time in seconds. One result per runtime;
its times are that runtime's measured cold starts (launch call to first response byte, warmups
left out, as hyperfine leaves out its warmup runs).

Where edgelab's figure and hyperfine's differ, the export says what it can honestly say:

- ``command`` is a label, ``edgelab <runtime> <workload>``: a cold start is not a command line,
  and hyperfine's plot scripts use this string as the legend.
- ``user`` and ``system`` are ``null``. hyperfine reports the benchmarked process's mean CPU
  time; edgelab does not measure CPU time per launch (a container's start is spent in dockerd,
  containerd and runc, a Wasm instance's inside a shared host process), and 0 would claim none
  was spent. hyperfine itself writes ``null`` in these objects (``stddev`` after a single run,
  tests/fixtures/hyperfine-1.15.0-one-run.json), so its readers meet null there already, and
  none of its scripts
  (plot_whisker, plot_histogram, plot_progression, advanced_statistics, welch_ttest,
  plot_parametrized) reads ``user`` or ``system``.
- ``exit_codes`` are all 0 and as many as ``times``: a failed launch has no startup time, so it
  is left out of both (hyperfine without ``-i`` would have aborted the benchmark).
- ``parameters`` names the runtime, as ``hyperfine -L runtime container,subprocess,wasm
  'edgelab {runtime} hello'`` would.
"""

from __future__ import annotations

import json
from typing import Any

from edgelab.errors import EdgelabError
from edgelab.results import RunResult, RuntimeResult

NS_PER_S = 1e9


def command_label(runtime: str, workload: str) -> str:
    """The ``command`` of a runtime's result: what was started, in hyperfine's words."""
    return f"edgelab {runtime} {workload}"


def _benchmark(runtime: RuntimeResult, workload: str) -> dict[str, Any] | None:
    times_ns = [s.startup_ns for s in runtime.measured if s.ok and s.startup_ns is not None]
    summary = runtime.summary()
    if not times_ns or summary is None:
        return None
    return {
        "command": command_label(runtime.runtime, workload),
        "mean": summary.mean_ns / NS_PER_S,
        # hyperfine: "not available if only one run has been performed"
        "stddev": summary.stdev_ns / NS_PER_S if summary.n > 1 else None,
        "median": summary.p50_ns / NS_PER_S,
        "user": None,
        "system": None,
        "min": summary.min_ns / NS_PER_S,
        "max": summary.max_ns / NS_PER_S,
        "times": [ns / NS_PER_S for ns in times_ns],
        "exit_codes": [0] * len(times_ns),
        "parameters": {"runtime": runtime.runtime},
    }


def to_hyperfine_dict(result: RunResult) -> dict[str, Any]:
    """The export as data; runtimes without a successful cold start are left out (hyperfine
    has no way to say "no times"), and a run with none at all is an error, not an empty file."""
    workload = str(result.metadata.get("workload", {}).get("name", "?"))
    benchmarks = [b for r in result.runtimes.values() if (b := _benchmark(r, workload)) is not None]
    if not benchmarks:
        raise EdgelabError("no runtime had a successful cold start: nothing to write in hyperfine's format")
    return {"results": benchmarks}


def to_hyperfine_json(result: RunResult) -> str:
    """hyperfine's JSON export of ``result`` (indented by 2 spaces and newline-terminated, as
    hyperfine writes it)."""
    return json.dumps(to_hyperfine_dict(result), indent=2) + "\n"
