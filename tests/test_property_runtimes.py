"""Property: for any request bytes, every workload answers the same status and body on every
rung usable here (the same C source, built three ways, started every way the registry holds).

Every example asks all workloads on the registry's default rungs (container, subprocess,
wasm), and one sampled workload on two rungs sampled from every other usable one, so the
whole ladder is covered across examples while each example stays fast. One resident
instance per (rung, workload) is launched on first use and answers every later example; an
instance that dies is relaunched (and the failure still fails the example).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgelab.errors import LaunchFailed, RuntimeUnavailable
from edgelab.runtimes import registry
from edgelab.runtimes.base import Instance, Runtime
from edgelab.session import Session
from edgelab.workloads import Workload, load_workloads

RUNTIMES = registry.default_names()
#: Every other registered rung, read at collection; those unusable here are left out by check().
OTHER_RUNGS = tuple(n for n in registry.names() if n not in RUNTIMES)
WORKLOADS = load_workloads()  # the non-hostile ones


class Residents:
    """runtime -> workload -> one live instance, relaunched when it dies."""

    def __init__(self, runtimes: dict[str, Runtime], others: tuple[str, ...] = ()) -> None:
        self.runtimes = runtimes
        self.instances: dict[tuple[str, str], Instance] = {}
        self.relaunches = 0
        #: Other rungs usable here (check() passed), prepared on first use.
        self.others = others
        self._prepared: set[tuple[str, str]] = set()

    def _launch(self, runtime: str, workload: Workload) -> Instance:
        if (runtime, workload.name) not in self._prepared:
            self.runtimes[runtime].prepare(workload)
            self._prepared.add((runtime, workload.name))
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
        others: list[str] = []
        for name in OTHER_RUNGS:
            rt = create_runtime(name, Session())
            try:
                rt.check()
            except RuntimeUnavailable:
                rt.close()
                continue
            runtimes[name] = rt
            others.append(name)
        found = Residents(runtimes, tuple(others))
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
@given(request=requests, data=st.data())
def test_every_runtime_answers_the_same(residents: Residents, request: bytes, data: st.DataObject) -> None:
    for workload in WORKLOADS.values():
        answers = {rt: residents.ask(rt, workload, request) for rt in RUNTIMES}
        assert len(set(answers.values())) == 1, (workload.name, answers)
        assert answers["subprocess"][0] in (0, 1, 2), (workload.name, answers)
    if not residents.others:
        return
    workload = data.draw(st.sampled_from(list(WORKLOADS.values())), label="workload")
    rungs = data.draw(
        st.lists(st.sampled_from(residents.others), min_size=1, max_size=2, unique=True), label="rungs"
    )
    reference = residents.ask("subprocess", workload, request)
    for rung in rungs:
        assert residents.ask(rung, workload, request) == reference, (rung, workload.name, request[:32])


def test_the_property_covers_every_registered_rung() -> None:
    """The rungs the property samples are the registry's, read when this file is collected."""
    assert set(RUNTIMES) | set(OTHER_RUNGS) == set(registry.names())
    assert "subprocess" in RUNTIMES
