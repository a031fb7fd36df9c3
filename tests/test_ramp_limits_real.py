"""A ramp that runs into a real limit: the machine's pids (a cgroup v1 pids.max), real processes.

The lab must stop that ramp with one line naming the limit and the instances it reached, keep
the figures for what it held, and still remove everything, even though at that point not one
more thread can start (the stop path used a thread pool, which raised "can't start new
thread" and left the instances behind). The ramp runs in a child interpreter moved into a
pids cgroup of its own, so the limit binds nothing else.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

PIDS_ROOT = Path("/sys/fs/cgroup/pids")
HEADROOM = 40

CHILD = r"""
import json, os, sys
from pathlib import Path
cgroup = Path(sys.argv[1])
(cgroup / "cgroup.procs").write_text(str(os.getpid()))
from edgelab.lab import Lab, Settings
lab = Lab()
lab.runtime("subprocess")  # the watchdog first: its process counts as well
used = int((cgroup / "pids.current").read_text())
(cgroup / "pids.max").write_text(str(used + int(sys.argv[2])))
try:
    result = lab.run(Settings(workload="hello", scenario="ramp", runtimes=("subprocess",), resident={"subprocess": 500}))
    live = len(lab.runtime("subprocess").live_instances())
finally:
    (cgroup / "pids.max").write_text("max")
    lab.close(wait_s=5)
memory = result.runtimes["subprocess"].memory
print(json.dumps({"used": used, "live_after_run": live, "memory": memory.to_json() if memory else None,
                  "error": result.runtimes["subprocess"].error}))
"""


@pytest.mark.skipif(os.geteuid() != 0 or not os.access(PIDS_ROOT, os.W_OK), reason="needs a writable cgroup v1 pids hierarchy (root)")
def test_a_ramp_at_the_pids_limit_stops_with_its_line_and_removes_everything(tmp_path: Path) -> None:
    # Not edgelab-test-<pid>: test_engine_faults' own engine uses that name as its cgroup parent.
    cgroup = PIDS_ROOT / f"edgelab-pids-test-{os.getpid()}-{secrets.token_hex(3)}"
    cgroup.mkdir()
    try:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(cgroup), str(HEADROOM)],
            capture_output=True, text=True, timeout=120,
        )
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout.splitlines()[-1])
        memory = report["memory"]
        assert memory is not None, report
        held = memory["resident_instances"]
        assert 0 < held <= HEADROOM and memory["target_instances"] == 500
        assert memory["limit"].startswith(f"subprocess ramp stopped at {held:,} of 500 instances: out of pids or threads:")
        assert memory["user_space_kib_per_instance"] > 0 and memory["ramp_rate_per_s"] > 0
        assert report["error"] is None  # the limit ended the ramp; it is not a broken runtime
        assert report["live_after_run"] == 0
        # Everything it started is gone: the cgroup holds no process once the child exited.
        assert int((cgroup / "pids.current").read_text()) == 0
    finally:
        for pid in (cgroup / "cgroup.procs").read_text().split():
            (PIDS_ROOT / "cgroup.procs").write_text(pid)
        cgroup.rmdir()
