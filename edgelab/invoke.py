"""``edgelab invoke``: one request to a fresh instance, every byte of its response to stdout.

A module of its own so that invoke imports what one launch needs and no more: the other
subcommands' module (``edgelab.commands``) brings rich and the run's reporting, ~40 ms here
of a ~0.4 s invoke.
"""

from __future__ import annotations

import argparse
import os
import sys

from edgelab.errors import EdgelabError, RequestRejected, UsageError
from edgelab.runtimes import create_runtime, registry
from edgelab.session import Session
from edgelab.settings import read_request
from edgelab.workloads import get_workload


def cmd_invoke(args: argparse.Namespace) -> int:
    workload = get_workload(args.workload)
    if sys.stdin is None:  # started with <&-: a closed stdin is a mistake, not an empty request
        raise UsageError("stdin is closed: invoke reads the request from it (</dev/null sends an empty one)")
    entry = registry.spec(args.runtime)
    why = registry.not_applicable(entry, workload)
    if why is not None:  # a function lacking this rung's artifact, an ABI-only rung for a function
        raise UsageError(f"-r {args.runtime} does not apply to {workload.name}: {why}")
    request = read_request(sys.stdin.buffer, workload.max_request_bytes, workload.name, "stdin")
    # One launch, nothing kept: a Wasm rung needs the host that launch runs in, not the
    # resident host it starts ahead for a ramp (a second interpreter, ~0.2 s here).
    options = {"resident_host_at_prepare": False} if entry.family == "wasm" else {}
    runtime = create_runtime(args.runtime, Session(), **options)
    try:
        runtime.check()
        runtime.prepare(workload)
        launch = runtime.launch(workload, request, args.timeout or workload.timeout_s)
        launch.instance.stop()
    finally:
        runtime.close()
    if not launch.response.ok:
        raise RequestRejected(f"{workload.name} ({args.runtime}) rejected the request: {launch.response.reason()}")
    write_all_to_stdout(launch.response.body)
    return 0


def write_all_to_stdout(body: bytes) -> None:
    """Every byte of ``body`` to stdout, or one line saying how far it got and why: one write(2)
    moves at most ~2 GiB and a pipe may take less, so a single write is not enough."""
    if sys.stdout is None:
        raise EdgelabError(f"stdout is closed: the {len(body)}-byte response was not written")
    sys.stdout.flush()
    fd = sys.stdout.fileno()
    view = memoryview(body)
    written = 0
    while written < len(body):
        try:
            written += os.write(fd, view[written:])
        except BlockingIOError:  # a non-blocking stdout: wait until it drains
            import select

            select.select([], [fd], [])
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise EdgelabError(
                f"cannot write the response to stdout: {exc.strerror} ({written} of {len(body)} bytes written)"
            ) from None
