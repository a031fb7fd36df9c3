"""Many runs leave the lab where it started: the same open file descriptors, the same memory.

N cold starts per runtime (container, subprocess, Wasm) through ``Lab.run``, after a warm-up
run that brings every lazily made thing into being (docker client and its connection pool,
the Wasm host, the watchdog and its pipe, imports, caches). Then: the lab process's open file
descriptors are exactly what they were after the warm-up, and its RSS is within a few MiB.

The issue asks for 1,000 container runs; on the 2-core test machine one takes ~0.5 s (create +
attach + start + first response + removal), so 1,000 take ~7 minutes. CI (CI=true) runs the
full count; a developer's run does ``DEFAULT_RUNS`` (about a minute) unless EDGELAB_LEAK_RUNS
says otherwise.
"""

from __future__ import annotations

import gc
import os
import time

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
    lab = Lab()
    try:
        settings = Settings(workload="hello", runtimes=("container", "subprocess", "wasm"), count=WARMUP_RUNS, warmup=0)
        warm = lab.run(settings)
        assert all(r.ok == WARMUP_RUNS for r in warm.runtimes.values()), {
            n: r.first_error() for n, r in warm.runtimes.items()
        }
        del warm
        fds_before, rss_before = open_fds(), rss_bytes()
        started = time.monotonic()
        result = lab.run(Settings(workload="hello", runtimes=("container", "subprocess", "wasm"), count=runs, warmup=0))
        took = time.monotonic() - started
        ok = {n: r.ok for n, r in result.runtimes.items()}
        errors = {n: r.first_error() for n, r in result.runtimes.items()}
        del result
        fds_after, rss_after = open_fds(), rss_bytes()
    finally:
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
