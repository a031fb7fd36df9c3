"""Many runs leave the lab where it started: the same open file descriptors, the same memory.

N cold starts per runtime (container, subprocess, Wasm) through ``Lab.run``, after a warm-up
run that brings every lazily made thing into being (docker client and its connection pool,
the Wasm host, the watchdog and its pipe, imports, caches). Then: the lab process's open file
descriptors are exactly what they were after the warm-up, and its RSS is within a few MiB.

The issue asks for 1,000 container runs; on the 2-core test machine one takes ~0.3 s (create +
attach + start + first response + removal), mostly waiting on the engine, so half of them go
through a second lab in a worker thread at the same time (1.6x less wall time). That thread is
made, and its lab warmed up *in it*, before the baseline is read: a thread's malloc arena and
stack are then part of the baseline, not of the growth (a thread started after the baseline
once cost 5.6 MiB of RSS, which is no leak). CI (CI=true) runs the full count; a developer's run
does ``DEFAULT_RUNS`` (about a minute) unless EDGELAB_LEAK_RUNS says otherwise.
"""

from __future__ import annotations

import gc
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psutil
import pytest

from edgelab.lab import Lab, Settings

pytestmark = pytest.mark.usefixtures("docker_client")

DEFAULT_RUNS = 100
#: The issue's count; CI runs it (about 7 minutes here), a developer's run the quicker default.
CI_RUNS = 1000
WARMUP_RUNS = 20
RSS_SLACK_BYTES = 4 << 20


def open_fds() -> int:
    gc.collect()  # objects of earlier tests that hold fds go now, not during the measured runs
    return len(os.listdir("/proc/self/fd"))


def rss_bytes() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


def test_many_runs_leave_fds_and_memory_at_baseline() -> None:
    default = CI_RUNS if os.environ.get("CI") == "true" else DEFAULT_RUNS
    runs = int(os.environ.get("EDGELAB_LEAK_RUNS", default))
    lab, second = Lab(), Lab()
    beside = ThreadPoolExecutor(max_workers=1, thread_name_prefix="second-lab")
    try:
        everything = ("container", "subprocess", "wasm")
        warm_beside = beside.submit(second.run, Settings(workload="hello", runtimes=("container",), count=WARMUP_RUNS, warmup=0))
        warm = [lab.run(Settings(workload="hello", runtimes=everything, count=WARMUP_RUNS, warmup=0)), warm_beside.result()]
        assert all(r.ok == WARMUP_RUNS for w in warm for r in w.runtimes.values()), [
            {n: r.first_error() for n, r in w.runtimes.items()} for w in warm
        ]
        del warm, warm_beside
        fds_before, rss_before = open_fds(), rss_bytes()
        started = time.monotonic()
        results: list[Any] = []
        half = beside.submit(second.run, Settings(workload="hello", runtimes=("container",), count=runs // 2, warmup=0))
        results.append(lab.run(Settings(workload="hello", runtimes=everything, count=runs - runs // 2, warmup=0)))
        results.append(lab.run(Settings(workload="hello", runtimes=("subprocess", "wasm"), count=runs // 2, warmup=0)))
        results.append(half.result())
        took = time.monotonic() - started
        ok: dict[str, int] = {}
        errors: dict[str, str | None] = {}
        for result in results:
            for name, r in result.runtimes.items():
                ok[name] = ok.get(name, 0) + r.ok
                errors[name] = errors.get(name) or r.first_error()
        results.clear()
        del half
        fds_after, rss_after = open_fds(), rss_bytes()
    finally:
        beside.shutdown(wait=True)
        second.close(wait_s=10)
        lab.close(wait_s=10)
    assert ok == {"container": runs, "subprocess": runs, "wasm": runs}, errors
    print(
        f"{runs} runs per runtime in {took:.1f} s; fds {fds_before} -> {fds_after};"
        f" RSS {rss_before / 2**20:.1f} -> {rss_after / 2**20:.1f} MiB"
    )
    # Exactly the baseline. (Compared by count: a pooled keep-alive connection to the engine
    # may be replaced by a new one, with a new inode, and that is no leak.)
    assert fds_after == fds_before, f"open fds went from {fds_before} to {fds_after}"
    assert rss_after - rss_before <= RSS_SLACK_BYTES, (
        f"RSS grew {(rss_after - rss_before) / 2**20:.1f} MiB over {runs} runs"
    )
