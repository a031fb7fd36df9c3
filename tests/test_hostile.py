"""Runaway and hostile workloads on the real runtimes: each ends with a clear outcome within
its timeout + 1 s, nothing of it remains, and the same runtime object launches ``hello`` right
after. The workloads are under modules/ with ``hostile = true`` (see modules/README.md).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from edgelab.errors import LaunchFailed, LaunchTimeout
from edgelab.runtimes.base import Runtime
from edgelab.session import SESSION_LABEL, Session
from edgelab.workloads import get_workload

RUNTIMES = ("container", "subprocess", "wasm")
_SIG_TRAP = r"(SIGILL|SIGTRAP)"  # __builtin_trap: ud2 on x86_64, brk on aarch64
TIMED_OUT = ("timeout", r"timed out after 2 s")

#: (workload, request) -> per runtime: ("timeout" | "failed", message regex) for a launch that
#: raises, or (status, body regex) for one the workload answers.
CASES: dict[tuple[str, str], dict[str, tuple[Any, str]]] = {
    ("spin", "spin"): {rt: TIMED_OUT for rt in RUNTIMES},
    ("mute", "hello?"): {rt: TIMED_OUT for rt in RUNTIMES},
    ("crash", "abort"): {
        "subprocess": ("failed", r"^killed by SIGABRT before answering$"),
        # PID 1 of a pid namespace cannot signal itself: crash falls back to a trap, like abort()
        "container": ("failed", rf"exited with code 13[23] \({_SIG_TRAP}\) before answering"),
        "wasm": ("failed", r"^trapped: .*unreachable"),
    },
    ("crash", "segv"): {
        "subprocess": ("failed", r"^killed by SIGSEGV before answering$"),
        "container": ("failed", r"exited with code 139 \(SIGSEGV\) before answering"),
        "wasm": ("failed", r"^trapped: out of bounds memory access"),
    },
    ("crash", "trap"): {
        "subprocess": ("failed", rf"^killed by {_SIG_TRAP} before answering$"),
        "container": ("failed", rf"exited with code 13[23] \({_SIG_TRAP}\) before answering"),
        "wasm": ("failed", r"^trapped: .*unreachable"),
    },
    ("membomb", "eat"): {
        "subprocess": (2, r"^out of memory after allocating \d+ MiB$"),  # RLIMIT_AS
        "container": ("failed", r"out of memory \(OOM-killed; exited with code 137"),  # cgroup
        "wasm": (2, r"^out of memory after allocating \d+ MiB$"),  # the module's memory maximum
    },
    ("forkbomb", "fork"): {
        "subprocess": TIMED_OUT,  # no pids limit natively: it stops at 200 children and blocks
        "container": (2, r"^fork limit reached after \d+ processes \(EAGAIN\)$"),  # pids_limit
        "wasm": (1, r"^fork is not available in Wasm$"),
    },
}


def _make(name: str, docker_client: Any) -> Runtime:
    if name == "container":
        from edgelab.runtimes.container import ContainerRuntime

        return ContainerRuntime(Session(), client=docker_client)
    from edgelab.runtimes import create_runtime

    return create_runtime(name, Session())


@pytest.fixture(scope="module", params=RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> Iterator[Runtime]:
    client = request.getfixturevalue("docker_client") if request.param == "container" else None
    rt = _make(request.param, client)
    rt.check()
    rt.prepare(get_workload("hello"))
    try:
        yield rt
    finally:
        rt.close()


def _leftovers(rt: Runtime, workload: str) -> list[str]:
    """What of the hostile launch is still there: processes, containers, Wasm instances."""
    found = [
        f"process {p.pid} ({p.info['name']}, {p.info['status']})"
        for p in psutil.process_iter(["name", "status"])
        if (p.info["name"] or "").startswith(f"{workload}-")
    ]
    if rt.name == "container":
        containers = rt.client.api.containers(  # type: ignore[attr-defined]
            all=True, filters={"label": f"{SESSION_LABEL}={rt.session.id}"}
        )
        found += [f"container {c['Id'][:12]}" for c in containers]
    if rt.name == "wasm":
        held = rt._host.call(5, "ping")["instances"]  # type: ignore[attr-defined]
        found += [f"{held} wasm instance(s) in the host"] if held else []
    return found + [f"tracked instance {i!r}" for i in rt.live_instances()]


@pytest.mark.parametrize("case", list(CASES), ids=[f"{w}-{r}" for w, r in CASES])
def test_hostile_workload_is_contained(runtime: Runtime, case: tuple[str, str]) -> None:
    name, request = case
    workload = get_workload(name)
    assert workload.hostile
    runtime.prepare(workload)
    kind, pattern = CASES[case][runtime.name]

    started = time.monotonic()
    try:
        launch = runtime.launch(workload, request.encode(), workload.timeout_s)
    except LaunchTimeout as exc:
        outcome: tuple[Any, str] = ("timeout", str(exc))
    except LaunchFailed as exc:
        outcome = ("failed", str(exc))
    else:
        launch.instance.stop()
        outcome = (launch.response.status, launch.response.body.decode("utf-8", "replace"))
    elapsed = time.monotonic() - started

    assert outcome[0] == kind, f"{runtime.name}: {outcome}"
    assert re.search(pattern, outcome[1]), f"{runtime.name}: {outcome[1]!r} !~ {pattern!r}"
    assert elapsed <= workload.timeout_s + 1.0, f"{runtime.name}: took {elapsed:.2f} s"

    deadline = time.monotonic() + 2
    while (left := _leftovers(runtime, name)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert left == [], f"{runtime.name}: left behind: {left}"

    hello = get_workload("hello")
    after = runtime.launch(hello, b"after", hello.timeout_s)
    after.instance.stop()
    assert (after.response.status, after.response.body) == (0, b"hello, after")
