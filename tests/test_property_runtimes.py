"""Property: for any request bytes, every workload answers the same status and body in all
three runtimes (the same C source, built three ways).

One resident instance per runtime per workload is launched once and answers every example,
so the container runtime costs one launch per workload, not one per example. An instance
that dies is relaunched (and the failure still fails the example).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgelab.errors import LaunchFailed
from edgelab.runtimes.base import Instance, Runtime
from edgelab.session import Session
from edgelab.workloads import Workload, load_workloads

RUNTIMES = ("container", "subprocess", "wasm")
WORKLOADS = load_workloads()  # the non-hostile ones


class Residents:
    """runtime -> workload -> one live instance, relaunched when it dies."""

    def __init__(self, runtimes: dict[str, Runtime]) -> None:
        self.runtimes = runtimes
        self.instances: dict[tuple[str, str], Instance] = {}
        self.relaunches = 0

    def _launch(self, runtime: str, workload: Workload) -> Instance:
        launch = self.runtimes[runtime].launch(workload, workload.default_request, workload.timeout_s)
        self.instances[(runtime, workload.name)] = launch.instance
        return launch.instance

    def ask(self, runtime: str, workload: Workload, request: bytes) -> tuple[int, bytes]:
        instance = self.instances.get((runtime, workload.name)) or self._launch(runtime, workload)
        try:
            response = instance.request(request, workload.timeout_s)
        except LaunchFailed as exc:
            self.relaunches += 1
            try:
                instance.stop()
            except LaunchFailed:
                pass
            self._launch(runtime, workload)
            return (-1, f"{type(exc).__name__}: {exc}".encode())
        return response.status, response.body


@pytest.fixture(scope="module")
def residents(docker_client: Any) -> Iterator[Residents]:
    from edgelab.runtimes import create_runtime
    from edgelab.runtimes.container import ContainerRuntime

    runtimes: dict[str, Runtime] = {}
    try:
        for name in RUNTIMES:
            rt = ContainerRuntime(Session(), client=docker_client) if name == "container" else create_runtime(name, Session())
            runtimes[name] = rt
            rt.check()
            for workload in WORKLOADS.values():
                rt.prepare(workload)
        found = Residents(runtimes)
        for name in RUNTIMES:
            for workload in WORKLOADS.values():
                found._launch(name, workload)
        yield found
    finally:
        for rt in runtimes.values():
            rt.close()


requests = st.one_of(
    st.binary(max_size=64),  # within every workload's limit (fib's is 64 bytes)
    st.binary(max_size=4096),
    st.sampled_from([w.default_request for w in WORKLOADS.values()]).flatmap(
        lambda base: st.binary(max_size=16).map(lambda tail: base + tail)
    ),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=requests)
def test_every_runtime_answers_the_same(residents: Residents, request: bytes) -> None:
    for workload in WORKLOADS.values():
        answers = {rt: residents.ask(rt, workload, request) for rt in RUNTIMES}
        assert answers["container"] == answers["subprocess"] == answers["wasm"], (workload.name, answers)
        assert answers["wasm"][0] in (0, 1, 2), (workload.name, answers)
