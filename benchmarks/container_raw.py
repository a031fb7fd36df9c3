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
    python benchmarks/container_raw.py --rung container:paused --workload hello [-n 20]

``raw_cold_starts(rung, workload, n)`` (for benchmarks/ladder.py) does each container rung's
work with nothing of the lab: the SDK's create + attach + start + first byte, with
``runtime="runsc"`` or ``"crun"`` for container:gvisor / container:crun; for container:created
the create + attach ahead (untimed) and start + first byte timed; for container:paused also
start and pause ahead, and unpause + first byte timed; for container:cli a bare ``docker run
--rm -i`` subprocess with the request on its stdin, to its first stdout byte. Each stops the
clock where the lab does (the first byte of the response) and removes outside the timing.
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
from edgelab.runtimes.base import Launch
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
    oci_runtime: str | None = None,
    ahead: str = "",
) -> list[int]:
    """``n`` samples of create + attach + start + first response byte, in ns.

    ``request`` is sent as one frame (the lab sends the workload's default request: pass it
    for a like-for-like figure); ``workload`` gives the memory limit (else 64 MiB);
    ``oci_runtime`` the engine's OCI runtime (None: its default). ``ahead``: "" times it all;
    "created" does create + attach before the clock starts (start + first byte timed);
    "paused" also start + pause (unpause + first byte timed).
    """
    session = Session()
    labels = session.labels
    host_config = ContainerRuntime.host_config(
        client, workload.memory_limit_bytes if workload else DEFAULT_MEMORY_LIMIT_BYTES, oci_runtime
    )
    frame = encode_request(request)
    api = client.api
    samples: list[int] = []

    def create(i: int) -> tuple[str, Any]:
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
        return container_id, attach_socket(client, container_id, timeout_s)

    try:
        for i in range(n):
            if ahead:
                container_id, raw = create(i)
                if ahead == "paused":
                    api.start(container_id)
                    _wait_blocked_in_read(api, container_id)
                    api.pause(container_id)
            t0 = time.perf_counter_ns()
            if not ahead:
                container_id, raw = create(i)
            if ahead == "paused":
                api.unpause(container_id)
            else:
                api.start(container_id)
            sock: socket.socket = getattr(raw, "_sock", raw)
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


def _wait_blocked_in_read(api: Any, container_id: str, within_s: float = 2.0) -> None:
    """Until the workload (not runc's init) sleeps in its first read, as the lab's paused pool
    waits before it freezes a container."""
    pid = int(api.inspect_container(container_id)["State"].get("Pid") or 0)
    deadline = time.monotonic() + within_s
    while pid and time.monotonic() < deadline:
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            return
        if comm == "workload" and state == "S":
            return
        time.sleep(0.001)


def raw_cli_cold_start_ns(
    tag: str, n: int, request: bytes, workload: Workload, timeout_s: float = 30.0
) -> list[int]:
    """``n`` samples of a bare ``docker run --rm -i`` (the lab's flags), request on stdin, to
    the first byte of its stdout, in ns; the container is removed outside the timing."""
    import shutil
    import subprocess
    import tempfile

    from edgelab.runtimes.container.strategies import cli_argv

    docker = shutil.which("docker")
    if docker is None:
        raise RuntimeError("no docker CLI on PATH")
    client = connect()
    session = Session()
    frame = encode_request(request)
    samples: list[int] = []
    try:
        for i in range(n):
            name = f"edgelab-raw-{session.id}-{i}"
            cidfile = Path(tempfile.gettempdir()) / f"{name}.cid"
            argv = cli_argv(docker, name, tag, session.labels, workload.memory_limit_bytes, cidfile)
            t0 = time.perf_counter_ns()
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(frame)
            first = proc.stdout.read(1)
            t1 = time.perf_counter_ns()
            if not first:
                raise RuntimeError(f"docker run exited with {proc.wait()} before answering")
            samples.append(t1 - t0)
            client.api.remove_container(name, force=True)
            proc.stdin.close()
            proc.stdout.close()
            proc.wait(timeout_s)
            cidfile.unlink(missing_ok=True)
    finally:
        remove_labelled(client, session.id)
        session.release()
        client.close()
    return samples


#: rung -> (OCI runtime, ahead-work) for the SDK rungs.
_SDK_RUNGS = {
    "container": (None, ""),
    "container:gvisor": ("runsc", ""),
    "container:crun": ("crun", ""),
    "container:created": (None, "created"),
    "container:paused": (None, "paused"),
}
_tags: dict[str, str] = {}


def _image(client: Any, workload: Workload) -> str:
    """The workload's image tag, built once per process (as the lab's prepare does)."""
    from edgelab.runtimes.container import ensure_image

    if workload.name not in _tags:
        _tags[workload.name] = ensure_image(client, workload)
    return _tags[workload.name]


def raw_cold_starts(rung: str, workload: str, n: int) -> list[int]:
    """``n`` raw cold starts of ``rung`` (a container rung) on ``workload``'s default request,
    in ns, timed from the first call to the first response byte, as the lab times that rung."""
    target = get_workload(workload)
    client = connect()
    try:
        tag = _image(client, target)
        if rung == "container:cli":
            return raw_cli_cold_start_ns(tag, n, target.default_request, target)
        if rung not in _SDK_RUNGS:
            raise ValueError(f"no raw baseline for {rung!r} (container rungs: {', '.join([*_SDK_RUNGS, 'container:cli'])})")
        oci_runtime, ahead = _SDK_RUNGS[rung]
        return raw_container_cold_start_ns(
            client, tag, n, target.default_request, target, oci_runtime=oci_runtime, ahead=ahead
        )
    finally:
        client.close()


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
    parser.add_argument("--rung", default="container", help="a container rung (with --workload)")
    args = parser.parse_args()
    if args.tag and args.rung != "container":
        parser.error("--tag measures the plain container rung only")

    from edgelab.runtimes import create_runtime

    client = connect()
    runtime = create_runtime(args.rung, Session(), client=client)
    assert isinstance(runtime, ContainerRuntime), f"{args.rung} is not a container rung"
    runtime.check()
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
            # the lab's burst path: each cold start stopped outside its timing
            for launch in runtime.cold_starts(workload, workload.default_request, count, 30):
                if not isinstance(launch, Launch):
                    raise launch
                startup.append(launch.startup_ns)
                for name, value in launch.phases_ns.items():
                    phases[name].append(value)

        def raw_block(count: int) -> None:
            if args.tag:
                raw.extend(raw_container_cold_start_ns(client, tag, count, workload.default_request, workload))
            else:
                raw.extend(raw_cold_starts(args.rung, workload.name, count))

        # Blocks of BLOCK alternating, the order flipped each time, so drift favours neither
        # and each launch follows one of its own kind (as in benchmarks/startup.py).
        done = 0
        while done < args.n:
            count = min(BLOCK, args.n - done)
            for block in (lab_block, raw_block) if (done // BLOCK) % 2 == 0 else (raw_block, lab_block):
                block(count)
            done += count
        print(f"{args.rung}: n={args.n} p50 (perf_counter_ns), lab and raw in alternating blocks of {BLOCK}")
        print(f"  lab startup includes: {runtime.startup_includes}")
        for name, values in phases.items():
            print(f"  lab {name:<32}{_p50_ms(values)}")
        print(f"  lab startup (to first response byte)  {_p50_ms(startup)}")
        print(f"  raw same work (to first byte)         {_p50_ms(raw)}")
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
