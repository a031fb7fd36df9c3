"""The contract every registered runtime keeps, one suite for all (as harlequin runs one set of
adapter tests against each database).

The rungs come from ``edgelab.runtimes.registry`` *at collection time*: a rung another helper
registers, or one a test registers (``tiny`` below), is tested with no edit here. A rung that
cannot run here is skipped with its own ``check()`` reason. Slow rungs (containers' variants,
microVMs) get the reduced set: describe, one launch byte-identical, stop twice, close.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from edgelab.errors import LaunchFailed, RuntimeUnavailable
from edgelab.protocol import Response
from edgelab.runtimes import registry
from edgelab.runtimes.base import Instance, Launch, Runtime
from edgelab.runtimes.registry import RuntimeInfo, RuntimeSpec
from edgelab.session import Session
from edgelab.workloads import Workload, get_workload

#: A fixed payload holding every byte value once (the "echo" request: hello echoes its request).
EVERY_BYTE = bytes(range(256))
#: Each rung answers these (workload, request) exactly as the subprocess rung does.
REQUESTS = (("hello", None), ("hello", EVERY_BYTE), ("sha256", EVERY_BYTE))
#: What ``check()`` may take at most on a loaded machine; it is called before every run.
CHECK_BOUND_S = 10.0


def is_slow(entry: RuntimeSpec) -> bool:
    """Rungs whose every launch costs ~0.2-3 s: they get the reduced set."""
    return entry.family == "microvm" or (entry.family == "container" and entry.variant is not None)


def contract_specs() -> list[RuntimeSpec]:
    """Every registered, non-hidden rung, read when pytest collects this file."""
    return registry.specs()


FULL = [s.name for s in contract_specs() if not is_slow(s)]
EVERY = [s.name for s in contract_specs()]


# -- a live runtime per rung, checked once ------------------------------------------------------
class Runtimes:
    """rung -> a checked and prepared runtime (or why it cannot run here); closed at the end."""

    def __init__(self) -> None:
        self.live: dict[str, Runtime] = {}
        self.unusable: dict[str, str] = {}
        self.check_s: dict[str, float] = {}
        self.check_error: dict[str, BaseException] = {}

    def get(self, name: str) -> Runtime:
        if name in self.unusable:
            pytest.skip(f"{name}: {self.unusable[name]}")
        if name not in self.live:
            runtime = registry.create_runtime(name, Session())
            started = time.monotonic()
            try:
                runtime.check()
            except RuntimeUnavailable as exc:
                self.unusable[name] = exc.reason + (f" (fix: {exc.fix})" if exc.fix else "")
                runtime.close()
                pytest.skip(f"{name}: {self.unusable[name]}")
            except BaseException as exc:  # noqa: BLE001 - recorded: the check test fails on it
                self.check_error[name] = exc
                self.unusable[name] = f"check() raised {type(exc).__name__}: {exc}"
                raise
            finally:
                self.check_s[name] = time.monotonic() - started
            for workload, _ in REQUESTS:
                runtime.prepare(get_workload(workload))
            self.live[name] = runtime
        return self.live[name]

    def close(self) -> None:
        for runtime in self.live.values():
            runtime.close()


@pytest.fixture(scope="module")
def runtimes() -> Iterator[Runtimes]:
    found = Runtimes()
    try:
        yield found
    finally:
        found.close()


@pytest.fixture(scope="module")
def reference(runtimes: Runtimes) -> dict[tuple[str, bytes], tuple[int, bytes]]:
    """The subprocess rung's answers, which every rung must give byte for byte."""
    runtime = runtimes.get("subprocess")
    answers: dict[tuple[str, bytes], tuple[int, bytes]] = {}
    for name, payload in REQUESTS:
        workload = get_workload(name)
        request = workload.default_request if payload is None else payload
        launch = runtime.launch(workload, request, workload.timeout_s)
        launch.instance.stop()
        answers[(name, request)] = (launch.response.status, launch.response.body)
    return answers


def _requests(name: str) -> list[tuple[Workload, bytes]]:
    found = [(get_workload(w), p) for w, p in REQUESTS]
    return [(w, w.default_request if p is None else p) for w, p in found]


def _live(runtime: Runtime) -> list[Instance]:
    return runtime.live_instances()


# -- the contract ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", EVERY)
def test_check_is_fast_and_raises_only_unavailable(runtimes: Runtimes, name: str) -> None:
    try:
        runtimes.get(name)
    except pytest.skip.Exception:
        assert name not in runtimes.check_error
        assert runtimes.check_s[name] < CHECK_BOUND_S, f"{name}: check() took {runtimes.check_s[name]:.1f} s"
        raise
    assert runtimes.check_s[name] < CHECK_BOUND_S, f"{name}: check() took {runtimes.check_s[name]:.1f} s"


@pytest.mark.parametrize("name", EVERY)
def test_describe_matches_a_real_launch(runtimes: Runtimes, name: str) -> None:
    runtime = runtimes.get(name)
    entry = registry.spec(name)
    info = runtime.describe()
    assert isinstance(info, RuntimeInfo)
    assert (info.name, info.family, info.artifact) == (name, entry.family, entry.artifact)
    assert info.startup_includes and info.memory_metric
    assert (info.skips, info.ready_cost) == (entry.skips, entry.ready_cost)
    hello = get_workload("hello")
    launch = runtime.launch(hello, hello.default_request, hello.timeout_s)
    try:
        assert tuple(launch.phases_ns) == info.phase_names, (launch.phases_ns, info.phase_names)
        assert all(v >= 0 for v in launch.phases_ns.values())
        assert sum(launch.phases_ns.values()) <= launch.startup_ns
        assert launch.startup_ns > 0
    finally:
        launch.instance.stop()
    assert info.as_json()["name"] == name  # it travels in events and exports


@pytest.mark.parametrize("name", EVERY)
def test_launch_answers_byte_identical_to_subprocess(
    runtimes: Runtimes, reference: dict[tuple[str, bytes], tuple[int, bytes]], name: str
) -> None:
    runtime = runtimes.get(name)
    asked = _requests(name) if not is_slow(registry.spec(name)) else _requests(name)[1:2]
    for workload, request in asked:
        launch = runtime.launch(workload, request, workload.timeout_s)
        try:
            got = (launch.response.status, launch.response.body)
        finally:
            launch.instance.stop()
        assert got == reference[(workload.name, request)], (workload.name, request[:16], got[1][:64])
    # The truth, not only two runtimes agreeing:
    assert reference[("hello", EVERY_BYTE)] == (0, b"hello, " + EVERY_BYTE)
    assert reference[("sha256", EVERY_BYTE)] == (0, hashlib.sha256(EVERY_BYTE).hexdigest().encode())


@pytest.mark.parametrize("name", EVERY)
def test_resident_instance_answers_again_and_stop_is_idempotent(runtimes: Runtimes, name: str) -> None:
    runtime = runtimes.get(name)
    hello = get_workload("hello")
    launch = runtime.launch(hello, b"first", hello.timeout_s)
    try:
        assert launch.response == Response(0, b"hello, first")
        assert launch.instance in _live(runtime)
        assert launch.instance.request(EVERY_BYTE, hello.timeout_s) == Response(0, b"hello, " + EVERY_BYTE)
    finally:
        launch.instance.stop()
    launch.instance.stop()  # again: never raises
    assert launch.instance not in _live(runtime)


@pytest.mark.parametrize("name", FULL)
def test_cold_starts_times_three_and_keeps_none(runtimes: Runtimes, name: str) -> None:
    runtime = runtimes.get(name)
    hello = get_workload("hello")
    before = len(_live(runtime))
    outcomes = runtime.cold_starts(hello, b"cold", 3, hello.timeout_s)
    assert len(outcomes) == 3, outcomes
    for outcome in outcomes:
        assert isinstance(outcome, Launch), outcome
        assert outcome.response == Response(0, b"hello, cold")
        assert outcome.startup_ns > 0 and sum(outcome.phases_ns.values()) <= outcome.startup_ns
    assert len(_live(runtime)) == before


@pytest.mark.parametrize("name", FULL)
def test_launch_many_then_stop_many(runtimes: Runtimes, name: str) -> None:
    runtime = runtimes.get(name)
    hello = get_workload("hello")
    launches = runtime.launch_many(hello, b"many", 3, hello.timeout_s)
    try:
        assert len(launches) == 3
        assert {launch.response for launch in launches} == {Response(0, b"hello, many")}
        live = _live(runtime)
        assert all(launch.instance in live for launch in launches)
    finally:
        runtime.stop_many([launch.instance for launch in launches])
    live = _live(runtime)
    assert not any(launch.instance in live for launch in launches)


@pytest.mark.parametrize("name", EVERY)
def test_close_leaves_nothing_live(name: str) -> None:
    runtime = registry.create_runtime(name, Session())
    try:
        runtime.check()
    except RuntimeUnavailable as exc:
        runtime.close()
        pytest.skip(f"{name}: {exc.reason}")
    hello = get_workload("hello")
    try:
        runtime.prepare(hello)
        kept = [runtime.launch(hello, b"x", hello.timeout_s).instance for _ in range(1 if is_slow(registry.spec(name)) else 2)]
        live = _live(runtime)
        # A rung may hold ready instances of its own (container:created's pool) beside these.
        assert all(instance in live for instance in kept)
    finally:
        runtime.close()
    assert _live(runtime) == []
    runtime.close()  # twice: nothing left to do, nothing raised


@pytest.mark.parametrize("name", FULL)
def test_response_cap_is_enforced(name: str) -> None:
    """A response past the workload's ``max_response_bytes`` fails the launch; one within it
    passes (hello answers 7 bytes more than its request)."""
    runtime = registry.create_runtime(name, Session())
    try:
        runtime.check()
    except RuntimeUnavailable as exc:
        runtime.close()
        pytest.skip(f"{name}: {exc.reason}")
    capped = dataclasses.replace(get_workload("hello"), max_response_bytes=1024)
    try:
        runtime.prepare(capped)
        fits = runtime.launch(capped, b"a" * (1024 - 7), capped.timeout_s)
        fits.instance.stop()
        assert len(fits.response.body) == 1024
        with pytest.raises(LaunchFailed, match="response exceeded"):
            runtime.launch(capped, b"a" * 4096, capped.timeout_s).instance.stop()
    finally:
        runtime.close()
    assert _live(runtime) == []


def test_every_registered_rung_is_in_this_suite() -> None:
    """No rung escapes the contract: the suite's list is the registry's, hidden ones aside."""
    assert EVERY == list(registry.names())
    assert {"container", "subprocess", "wasm"} <= set(EVERY)
    assert set(FULL) <= set(EVERY) and "subprocess" in FULL


# -- a runtime registered at run time needs no other edit ---------------------------------------------
def _tiny_answer(workload: str, payload: bytes) -> bytes:
    """hello and sha256 as their C sources answer (modules/hello, modules/sha256)."""
    if workload == "sha256":
        return hashlib.sha256(payload).hexdigest().encode()
    return b"hello, " + (payload or b"world")


class TinyInstance(Instance):
    """Answers as the hello and sha256 workloads do, in Python: enough to keep the contract."""

    def __init__(self, owner: TinyRuntime, workload: Workload) -> None:
        self.runtime = owner.name
        self._owner = owner
        self._workload = workload.name
        self._max = workload.max_response_bytes

    def request(self, payload: bytes, timeout_s: float) -> Response:
        body = _tiny_answer(self._workload, payload)
        if len(body) > self._max:
            self.stop()
            raise LaunchFailed("response exceeded the cap")
        return Response(0, body)

    def stop(self) -> None:
        self._owner._untrack(self)


class TinyRuntime(Runtime):
    """A hello-only runtime in a few lines: the suite, the CLI, the doctor and the lab must take it."""

    phase_names = ("spawn", "first_response")
    memory_metric = "none (a Python object)"
    startup_includes = "a Python object and one call"

    def __init__(self, session: Session, greeting: str = "hello") -> None:
        super().__init__(session)
        self.greeting = greeting

    def check(self) -> None:
        pass

    def prepare(self, workload: Workload) -> None:
        if workload.name not in ("hello", "sha256"):
            raise RuntimeUnavailable(self.name, f"tiny answers hello and sha256 only, not {workload.name}")

    def launch(self, workload: Workload, request: bytes, timeout_s: float) -> Launch:
        started = time.perf_counter_ns()
        instance = TinyInstance(self, workload)
        self._track(instance)
        spawned = time.perf_counter_ns()
        try:
            response = instance.request(request, timeout_s)
        except LaunchFailed:
            instance.stop()
            raise
        done = time.perf_counter_ns()
        return Launch(instance, response, done - started, {"spawn": spawned - started, "first_response": done - spawned})

    def pss_bytes(self, instances: Sequence[Instance]) -> int:
        return 0


TINY = RuntimeSpec(
    "tiny", __name__, "TinyRuntime", "tiny", "none", "a runtime registered by a test",
    options=registry._options(greeting="hello"),
)  # fmt: skip


@pytest.fixture
def tiny() -> Iterator[RuntimeSpec]:
    registry.register(TINY)
    try:
        yield TINY
    finally:
        registry.unregister(TINY.name)
    assert "tiny" not in registry.names()


def test_a_rung_registered_at_run_time_reaches_cli_doctor_and_lab(tiny: RuntimeSpec) -> None:
    from edgelab.commands import diagnose, runtimes_from_text
    from edgelab.lab import Lab, Settings

    assert registry.parse_runtimes("subprocess,tiny") == ("subprocess", "tiny")
    assert runtimes_from_text("tiny") == ("tiny",)  # the CLI's -r, and -r ti
    assert runtimes_from_text("ti") == ("tiny",)
    rows = {row[0]: row for row in diagnose()}
    assert rows["tiny"][1] is True, rows["tiny"]
    runtime = registry.create_runtime("tiny", Session())
    assert runtime.describe().family == "tiny" and runtime.greeting == "hello"  # type: ignore[attr-defined]
    lab = Lab()
    try:
        result = lab.run(Settings(workload="hello", runtimes=("tiny",), count=3, warmup=0))
    finally:
        lab.close()
    tiny_result = result.runtimes["tiny"]
    assert tiny_result.ok == 3 and not tiny_result.error, tiny_result.error


_PLUGIN = '''
"""Registers a rung when pytest starts, as a helper's commit would."""
from edgelab.runtimes import registry
registry.register(registry.RuntimeSpec(
    "tiny", "test_contract", "TinyRuntime", "tiny", "none", "a runtime registered by a plugin"))
'''


@pytest.mark.skipif(os.environ.get("EDGELAB_CONTRACT_NESTED") == "1", reason="already the nested run")
def test_the_suite_picks_up_a_rung_registered_before_collection(tmp_path: Path) -> None:
    """Run this very file with a plugin that registers ``tiny``: every contract test is
    collected for it and passes, with no edit to the suite."""
    (tmp_path / "tiny_plugin.py").write_text(textwrap.dedent(_PLUGIN))
    here = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(here)]), "EDGELAB_CONTRACT_NESTED": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", str(Path(__file__).resolve()), "-q", "-p", "tiny_plugin",
         "-k", "tiny and not registered", "-p", "no:cacheprovider", "-x"],
        capture_output=True, text=True, env=env, timeout=120, cwd=here.parent,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    # The reference answers come from subprocess (its fixture, not its tests): every tiny test ran.
    ran = [line for line in done.stdout.splitlines() if "passed" in line]
    assert ran and "8 passed" in ran[-1], done.stdout[-2000:]
