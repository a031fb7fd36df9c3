"""A real mixed burst in block mode: real Docker, real processes, real wasmtime.

The fake tests (tests/test_lab_fake.py) pin the block sequence exactly; this one checks that
with real timings the blocks come out as designed: one container launch per block (a cold
start takes far longer than a block's target), several subprocess launches, and Wasm blocks
through its batched host path, with the mode recorded in the export and nothing left behind.
"""

from __future__ import annotations

import json
from typing import Any

from edgelab.events import SampleRecorded
from edgelab.lab import BLOCK_MIN_ROUNDS, Lab, Settings


def test_real_mixed_burst_runs_in_blocks_and_records_its_mode(docker_client: Any) -> None:
    events: list = []
    lab = Lab()
    try:
        result = lab.run(Settings(workload="hello", count=16, warmup=1), on_event=events.append)
        order = [e.sample.runtime for e in events if isinstance(e, SampleRecorded)]
        runs: list[list[Any]] = []
        for name in order:
            if runs and runs[-1][0] == name:
                runs[-1][1] += 1
            else:
                runs.append([name, 1])
        assert all(r.ok == 16 and r.failed == 0 for r in result.runtimes.values()), result.to_json()
        blocks = result.metadata["interleave"]["launches_per_block"]
        assert blocks["container"]["max"] == 1  # a container start is longer than a block
        assert blocks["wasm"]["max"] > 1 and blocks["subprocess"]["max"] > 1
        assert max(n for name, n in runs if name == "wasm") > 1
        # Every runtime takes several turns, so drift is shared: the sizing launch, then at
        # least BLOCK_MIN_ROUNDS blocks each; the waits for quiet CPUs between them are said.
        assert all(b["blocks"] >= 1 + BLOCK_MIN_ROUNDS for b in blocks.values())
        assert result.metadata["interleave"]["quiet_wait_ms_total"] >= 0
        data = json.loads(json.dumps(result.to_json()))
        assert data["metadata"]["settings"]["interleave"] == "block"
        assert data["metadata"]["interleave"]["mode"] == "block"
        assert data["metadata"]["responses_identical"] is True
        runtimes = [lab.runtime(name) for name in ("container", "subprocess", "wasm")]
        assert all(rt.live_instances() == [] for rt in runtimes)
    finally:
        lab.close(wait_s=5)
    from edgelab.session import SESSION_LABEL

    left = docker_client.api.containers(all=True, filters={"label": f"{SESSION_LABEL}={lab.session.id}"})
    assert left == []
