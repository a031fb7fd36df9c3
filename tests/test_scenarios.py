"""Scenarios are one module behind one interface, read from one table; the lab calls the
runtime contract always; runtime names resolve against the registry; results carry each
runtime's self-description. All on the fake runtime (fast, no engine needed)."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from collections.abc import Iterator, Sequence

import pytest

from edgelab.errors import UsageError
from edgelab.events import RuntimeDescribed, SampleRecorded, ScenarioFinished
from edgelab.lab import Lab, Settings, _Run, parse_resident, resolve_runtime_name
from edgelab.runtime_names import runtime_choices
from edgelab.runtimes import registry
from edgelab.runtimes.base import Instance
from edgelab.runtimes.fake import FakeRuntime
from edgelab.scenarios import (
    BUILTINS,
    SCENARIOS,
    Scenario,
    get_scenario,
    register_scenario,
    scenario_names,
    unregister_scenario,
)


class PairScenario(Scenario):
    """A tiny scenario: two resident instances per runtime, then let them go."""

    name = "pair"
    summary = "two resident instances per runtime (test only)"
    reads = ("count",)

    def validate(self, settings: Settings) -> None:
        if settings.count != 2:
            raise UsageError(f"pair launches exactly 2, not {settings.count}")

    def run(self, run: _Run) -> None:
        for name in run.active():
            run.launch_resident(name, 2, 0)
        self.held = {name: run.held_count(name) for name in run.active()}


@pytest.fixture
def pair() -> Iterator[PairScenario]:
    scenario = register_scenario(PairScenario())
    try:
        assert isinstance(scenario, PairScenario)
        yield scenario
    finally:
        unregister_scenario("pair")


def fake_lab(**options: object) -> Lab:
    return Lab(runtime_factory=lambda name, s: FakeRuntime(s, name, **options))  # type: ignore[arg-type]


# -- the table ----------------------------------------------------------------------------------
def test_the_built_in_scenarios_are_the_table_in_order() -> None:
    assert scenario_names()[:3] == ("burst", "ramp", "steady")
    assert all(get_scenario(name) is SCENARIOS[name] for name in scenario_names())
    assert all(isinstance(s, Scenario) and s.summary for s in SCENARIOS.values())
    assert all(SCENARIOS[name].name == name for name in BUILTINS)  # each entry names its own


def test_the_names_import_no_scenario() -> None:
    """``scenario_names()`` (the CLI's --scenario choices, the TUI's radio buttons) imports no
    scenario's module; looking one up imports that one (and what it uses) only."""
    implementations = [module.partition(":")[0] for module in BUILTINS.values()] + ["edgelab.traffic"]
    code = (
        "import json, sys; from edgelab.scenarios import get_scenario, scenario_names; names = scenario_names();"
        f" loaded = lambda: [m for m in {implementations!r} if m in sys.modules]; before = loaded();"
        " get_scenario('steady'); print(json.dumps([names, before, loaded()]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert json.loads(done.stdout) == [list(BUILTINS), [], ["edgelab.scenarios.steady"]]


def test_a_scenario_registered_at_run_time_runs_through_lab_run_with_no_other_edit(pair: PairScenario) -> None:
    events: list[object] = []
    lab = fake_lab()
    result = lab.run(Settings(workload="hello", scenario="pair", count=2, warmup=0), on_event=events.append)
    assert pair.held == {"container": 2, "subprocess": 2, "wasm": 2}
    for name, runtime in result.runtimes.items():
        assert [s.index for s in runtime.samples] == [0, 1], name
        assert runtime.ok == 2 and runtime.scenario == "pair"
        assert runtime.running == 0  # the run released what the scenario held
        assert lab.runtime(name).live_instances() == []
    assert sum(isinstance(e, SampleRecorded) for e in events) == 6
    assert isinstance(events[-1], ScenarioFinished) and not events[-1].cancelled
    assert result.metadata["settings"]["scenario"] == "pair"


class BrokenScenario(Scenario):
    """Holds two instances per runtime, then fails: a bug in a scenario module."""

    name = "broken"
    summary = "raises mid-run (test only)"

    def run(self, run: _Run) -> None:
        for name in run.active():
            run.launch_resident(name, 2, 0)
        raise RuntimeError("a scenario's bug")


def test_a_scenario_that_raises_leaves_nothing_held() -> None:
    register_scenario(BrokenScenario())
    lab = fake_lab()
    try:
        with pytest.raises(RuntimeError, match="a scenario's bug"):
            lab.run(Settings(workload="hello", scenario="broken", runtimes=("subprocess", "wasm")))
        assert lab.runtime("subprocess").live_instances() == [] and lab.runtime("wasm").live_instances() == []
    finally:
        unregister_scenario("broken")
        lab.close()


def test_a_scenario_validates_its_own_settings(pair: PairScenario) -> None:
    with pytest.raises(UsageError, match="^pair launches exactly 2, not 5$"):
        fake_lab().run(Settings(workload="hello", scenario="pair", count=5))


def test_an_unknown_scenario_is_one_line_listing_the_registered_ones(pair: PairScenario) -> None:
    with pytest.raises(UsageError) as caught:
        Settings(workload="hello", scenario="nope").validate()
    assert str(caught.value) == f"unknown scenario 'nope' (choose from {', '.join(scenario_names())})"
    assert "pair" in str(caught.value)
    with pytest.raises(ValueError, match="registered already"):
        register_scenario(PairScenario())


def test_the_clis_scenario_choices_are_the_table(pair: PairScenario) -> None:
    """``edgelab run --scenario nope`` lists every registered scenario (cli.py reads
    ``scenario_names()`` when it builds its parser), and a registered one is accepted."""
    from edgelab.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["run", "--scenario", "pair"]).scenario == "pair"
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["run", "--scenario", "nope"])
    assert exited.value.code == 2
    for name in scenario_names():
        assert name in err.getvalue()


# -- the lab calls the contract always -------------------------------------------------------------
class CountingFake(FakeRuntime):
    """The fake with the contract's three batch calls counted (base defaults underneath)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.calls: list[tuple[str, int]] = []

    def cold_starts(self, workload, request, n, timeout_s):  # type: ignore[no-untyped-def]
        self.calls.append(("cold_starts", n))
        return super().cold_starts(workload, request, n, timeout_s)

    def launch_many(self, workload, request, n, timeout_s):  # type: ignore[no-untyped-def]
        self.calls.append(("launch_many", n))
        return super().launch_many(workload, request, n, timeout_s)

    def stop_many(self, instances: Sequence[Instance]) -> None:
        self.calls.append(("stop_many", len(instances)))
        super().stop_many(instances)


def counting_lab() -> tuple[Lab, dict[str, CountingFake]]:
    made: dict[str, CountingFake] = {}

    def factory(name: str, session: object) -> CountingFake:
        made[name] = CountingFake(session, name)
        return made[name]

    return Lab(runtime_factory=factory), made  # type: ignore[arg-type]


def test_a_burst_alone_goes_through_cold_starts_even_with_the_base_default() -> None:
    lab, made = counting_lab()
    result = lab.run(Settings(workload="hello", runtimes=("subprocess",), count=30, warmup=2))
    calls = [call for call in made["subprocess"].calls if call[0] != "stop_many"]  # the release: none held
    assert calls and {kind for kind, _ in calls} == {"cold_starts"}
    assert sum(n for _, n in calls) == 32
    assert [s.index for s in result.runtimes["subprocess"].samples] == list(range(32))


def test_a_ramp_goes_through_launch_many_chunks_and_releases_through_stop_many() -> None:
    lab, made = counting_lab()
    result = lab.run(Settings(workload="hello", scenario="ramp", runtimes=("wasm",), resident={"wasm": 300}))
    calls = made["wasm"].calls
    chunks = [n for kind, n in calls if kind == "launch_many"]
    assert chunks == [3] * 100  # a hundredth of the target per call
    assert calls[-1] == ("stop_many", 300)
    assert result.runtimes["wasm"].memory.instances == 300  # type: ignore[union-attr]
    assert lab.runtime("wasm").live_instances() == []


# -- names from the registry --------------------------------------------------------------------------
@pytest.fixture
def jit_rung() -> Iterator[str]:
    """``wasm:jit`` in the registry (the wasm helper's entry where it is there already)."""
    added = "wasm:jit" not in registry.names()
    if added:
        registry.register(registry.RuntimeSpec("wasm:jit", "edgelab.runtimes.fake", "FakeRuntime", "wasm", "wasm", "test rung"))
    try:
        yield "wasm:jit"
    finally:
        if added:
            registry.unregister("wasm:jit")


def test_resident_takes_a_rungs_full_name_and_prefixes(jit_rung: str) -> None:
    assert parse_resident("wasm:jit=5", ("wasm:jit",)) == {"wasm:jit": 5}
    assert parse_resident("WASM:J=7,w=2", ("wasm", "wasm:jit")) == {"wasm": 2, "wasm:jit": 7}
    # One letter still names a family's plain rung, however many variants it has.
    assert resolve_runtime_name("w") == "wasm" and resolve_runtime_name("c") == "container"
    settings = Settings(workload="hello", scenario="ramp", runtimes=("wasm:jit",), resident=parse_resident("wasm:jit=5", ("wasm:jit",)))
    settings.validate()


def test_an_ambiguous_prefix_is_one_line_listing_the_matches() -> None:
    added = [n for n in ("container:zeta", "container:zulu") if n not in registry.names()]
    for name in added:
        registry.register(registry.RuntimeSpec(name, "edgelab.runtimes.fake", "FakeRuntime", "container", "image", "test rung"))
    try:
        with pytest.raises(UsageError) as caught:
            resolve_runtime_name("container:z")
        assert str(caught.value) == "--resident: 'container:z' could be container:zeta or container:zulu; spell more of it"
        assert resolve_runtime_name("container:zu") == "container:zulu"
    finally:
        for name in added:
            registry.unregister(name)


def test_a_name_that_is_no_runtime_is_one_short_line_however_many_rungs(jit_rung: str) -> None:
    with pytest.raises(UsageError) as caught:
        resolve_runtime_name("vm", "--runtime")
    line = str(caught.value)
    plain = [name for name in registry.names() if ":" not in name]
    assert line.startswith(f"--runtime: 'vm' is not a runtime ({', '.join(plain)}, a rung such as ")
    assert line.endswith("; edgelab runtimes lists every rung)") and "\n" not in line
    assert "c, s, w" in line and len(line) < 200
    assert line == f"--runtime: 'vm' is not a runtime ({runtime_choices()})"


# -- results carry the runtime's self-description -----------------------------------------------------------
class MarkedFake(FakeRuntime):
    def marks(self) -> tuple[str, ...]:
        return ("emulated (TCG): no KVM here",)

    def versions(self) -> dict[str, str]:
        return {"fakevm": "1.2.3"}


def test_metadata_carries_each_runtimes_description_and_marks_stand_in_the_warnings() -> None:
    events: list[object] = []
    lab = Lab(runtime_factory=lambda name, s: (MarkedFake if name == "wasm" else FakeRuntime)(s, name))
    result = lab.run(Settings(workload="hello", count=3, warmup=0), on_event=events.append)
    data = json.loads(json.dumps(result.to_json()))
    described = data["metadata"]["runtimes"]
    assert list(described) == ["container", "subprocess", "wasm"]
    assert described["wasm"]["versions"] == {"fakevm": "1.2.3"}
    assert described["wasm"]["marks"] == ["emulated (TCG): no KVM here"]
    assert described["container"]["family"] == "container"
    infos = [e.info for e in events if isinstance(e, RuntimeDescribed)]
    assert [info.as_json() for info in infos] == list(described.values())
    wasm = next(r for r in data["results"] if r["runtime"] == "wasm")
    assert wasm["warnings"][0] == "emulated (TCG): no KVM here"
    assert "emulated (TCG): no KVM here" in result.runtimes["wasm"].warnings()
    assert not any("emulated" in w for w in result.runtimes["container"].warnings())
