"""The floor under the container runtime: plain docker SDK create + start + wait, no attach.

``raw_container_cold_start_ns`` times what the engine alone costs to run a container of the
image to completion (stdin closed, so an edgelab workload exits at once on EOF). Compare its
p50 with ContainerRuntime's create + start + first_response to see the lab's own overhead.

    python benchmarks/container_raw.py --workload hello [-n 20]
    python benchmarks/container_raw.py --tag edgelab/<workload>:<hash> --request hello
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgelab.runtimes.container import (
    CONTAINER_USER,
    PIDS_LIMIT,
    ContainerRuntime,
    connect,
    remove_labelled,
)
from edgelab.session import Session
from edgelab.workloads import Workload, get_workload


def raw_container_cold_start_ns(client: Any, tag: str, n: int) -> list[int]:
    """``n`` samples of create + start + wait (exit), in ns; removal is outside the timing.

    Same hardening as the runtime, no attach, no request: the process reads EOF and exits.
    """
    session = Session()
    samples: list[int] = []
    try:
        for _ in range(n):
            t0 = time.perf_counter_ns()
            container = client.containers.create(
                tag,
                labels=session.labels,
                user=CONTAINER_USER,
                network_mode="none",
                read_only=True,
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                pids_limit=PIDS_LIMIT,
                log_config={"type": "none"},
            )
            container.start()
            container.wait(timeout=30)
            samples.append(time.perf_counter_ns() - t0)
            container.remove(force=True)
    finally:
        remove_labelled(client, session.id)
    return samples


def _p50_ms(values: list[int]) -> str:
    return f"{statistics.median(values) / 1e6:8.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--workload", help="a workload under modules/ (its image is built)")
    source.add_argument("--tag", help="an image whose binary follows the workload ABI")
    parser.add_argument("-n", type=int, default=20)
    parser.add_argument("--resident", type=int, default=10, help="containers for the PSS figure")
    parser.add_argument("--request", default="hello")
    args = parser.parse_args()

    client = connect()
    runtime = ContainerRuntime(Session(), client=client)
    if args.workload:
        workload = get_workload(args.workload)
        runtime.prepare(workload)
        tag = runtime.image_tag(workload)
    else:
        tag = args.tag
        workload = Workload(
            name="bench",
            description="",
            directory=Path("."),
            sources=(),
            default_request=args.request.encode(),
            max_request_bytes=1 << 20,
            timeout_s=30.0,
            memory_limit_bytes=64 << 20,
        )
        runtime.use_image(workload, tag)
    print(f"image {tag}: {runtime.image_sizes_bytes.get(workload.name, 0)} bytes")
    phases: dict[str, list[int]] = {name: [] for name in runtime.phase_names}
    startup: list[int] = []
    raw: list[int] = []
    try:
        runtime.launch(workload, workload.default_request, 30).instance.stop()  # warmup
        for _ in range(args.n):  # interleaved, so drift does not favour one
            launch = runtime.launch(workload, workload.default_request, 30)
            launch.instance.stop()
            startup.append(launch.startup_ns)
            for name, value in launch.phases_ns.items():
                phases[name].append(value)
            raw.extend(raw_container_cold_start_ns(client, tag, 1))
        print(f"n={args.n} p50 (perf_counter_ns)")
        for name, values in phases.items():
            print(f"  runtime {name:<15}{_p50_ms(values)}")
        print(f"  runtime startup        {_p50_ms(startup)}  (create+start+first response)")
        print(f"  raw create+start+wait  {_p50_ms(raw)}  (no attach; includes exit)")

        before = runtime.pss_bytes([])
        instances = [
            runtime.launch(workload, workload.default_request, 30).instance
            for _ in range(args.resident)
        ]
        total = runtime.pss_bytes(instances) - before
        print(
            f"  PSS per resident container: {total / args.resident / 2**20:.2f} MiB "
            f"({args.resident} containers; container processes + containerd shim)"
        )
    finally:
        runtime.close()


if __name__ == "__main__":
    main()
