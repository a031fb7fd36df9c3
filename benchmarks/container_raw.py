"""The floor under the container runtime: plain docker SDK create, attach, start, first byte.

``raw_container_cold_start_ns`` times what the lab's container startup times, with nothing of
the lab around it: the low-level SDK's create (one call, no inspect), an attach socket
(stdin/stdout, before start, so no output is lost), start, then one request frame written
and the first byte of the answer read from the raw socket. The same hardening as the runtime
(``ContainerRuntime.host_config``). Removal is outside the timing, after each sample, as in
the lab's burst.

It timed create + start + *wait for exit* before, through the high-level SDK (whose create
adds an inspect call): two things the lab does not time, so the lab measured 0.80-0.93 of
its "floor". Both sides now stop the clock at the same event.

    python benchmarks/container_raw.py --workload hello [-n 20]
    python benchmarks/container_raw.py --tag edgelab/<workload>:<hash> --request hello
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgelab.protocol import encode_request
from edgelab.runtimes.container import (
    CONTAINER_USER,
    ContainerRuntime,
    attach_socket,
    connect,
    remove_labelled,
)
from edgelab.session import Session
from edgelab.workloads import Workload, get_workload

#: Launches per block in ``main``'s alternation.
BLOCK = 5
#: The memory limit the runtime would set when no workload is named (manifests' usual value).
DEFAULT_MEMORY_LIMIT_BYTES = 64 << 20


def raw_container_cold_start_ns(
    client: Any,
    tag: str,
    n: int,
    request: bytes = b"",
    workload: Workload | None = None,
    timeout_s: float = 30.0,
) -> list[int]:
    """``n`` samples of create + attach + start + first response byte, in ns.

    ``request`` is sent as one frame (the lab sends the workload's default request: pass it
    for a like-for-like figure); ``workload`` gives the memory limit (else 64 MiB).
    """
    session = Session()
    labels = session.labels
    host_config = ContainerRuntime.host_config(
        client, workload.memory_limit_bytes if workload else DEFAULT_MEMORY_LIMIT_BYTES
    )
    frame = encode_request(request)
    api = client.api
    samples: list[int] = []
    try:
        for i in range(n):
            t0 = time.perf_counter_ns()
            container_id = api.create_container(
                tag,
                name=f"edgelab-raw-{session.id}-{i}",
                labels=labels,
                user=CONTAINER_USER,
                stdin_open=True,
                tty=False,
                detach=True,
                host_config=host_config,
            )["Id"]
            raw = attach_socket(client, container_id, timeout_s)
            sock: socket.socket = getattr(raw, "_sock", raw)
            api.start(container_id)
            sock.settimeout(timeout_s)
            sock.sendall(frame)
            first = sock.recv(1)  # the first byte of the multiplexed stream's first frame
            t1 = time.perf_counter_ns()
            if not first:
                raise RuntimeError(f"container {container_id[:12]} closed the stream before answering")
            samples.append(t1 - t0)
            sock.close()
            raw.close()
            api.remove_container(container_id, force=True)
    finally:
        remove_labelled(client, session.id)
        session.release()
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
            memory_limit_bytes=DEFAULT_MEMORY_LIMIT_BYTES,
        )
        runtime.use_image(workload, tag)
    print(f"image {tag}: {runtime.image_sizes_bytes.get(workload.name, 0)} bytes")
    phases: dict[str, list[int]] = {name: [] for name in runtime.phase_names}
    startup: list[int] = []
    raw: list[int] = []
    try:
        runtime.launch(workload, workload.default_request, 30).instance.stop()  # warmup

        def lab_block(count: int) -> None:
            for _ in range(count):
                launch = runtime.launch(workload, workload.default_request, 30)
                launch.instance.stop()
                startup.append(launch.startup_ns)
                for name, value in launch.phases_ns.items():
                    phases[name].append(value)

        def raw_block(count: int) -> None:
            raw.extend(raw_container_cold_start_ns(client, tag, count, workload.default_request, workload))

        # Blocks of BLOCK alternating, the order flipped each time, so drift favours neither
        # and each launch follows one of its own kind (as in benchmarks/startup.py).
        done = 0
        while done < args.n:
            count = min(BLOCK, args.n - done)
            for block in (lab_block, raw_block) if (done // BLOCK) % 2 == 0 else (raw_block, lab_block):
                block(count)
            done += count
        print(f"n={args.n} p50 (perf_counter_ns), lab and raw in alternating blocks of {BLOCK}")
        for name, values in phases.items():
            print(f"  lab {name:<32}{_p50_ms(values)}")
        print(f"  lab startup (create+start+first response) {_p50_ms(startup)}")
        print(f"  raw create+attach+start+first byte    {_p50_ms(raw)}")
        print(f"  lab/raw                               {statistics.median(startup) / statistics.median(raw):8.3f}")

        if args.resident > 0:
            before = runtime.pss_bytes([])
            instances = [
                runtime.launch(workload, workload.default_request, 30).instance
                for _ in range(args.resident)
            ]
            time.sleep(2.0)  # runc's start-up charge leaves the last cgroups within ~1 s
            total = runtime.pss_bytes(instances) - before
            host = runtime.host_memory_bytes(instances)
            print(
                f"  PSS per resident container: {total / args.resident / 2**20:.2f} MiB "
                f"({args.resident} containers; container processes + containerd shim)"
            )
            if host is not None:
                print(
                    f"  cgroup memory per resident container: {host / args.resident / 2**10:.0f} KiB"
                    " (usage - inactive file, kernel memory included: what docker stats shows)"
                )
    finally:
        runtime.close()


if __name__ == "__main__":
    main()
