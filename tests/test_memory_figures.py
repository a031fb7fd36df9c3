"""Memory figures that are noise or drift are never shown as measurements.

Hand-made ``MemoryResult`` readings for each case (a PSS growth that is negative, one within
its idle noise, a clear one; MemAvailable that fell within noise, rose within it, or rose far
beyond it) and what each display and export makes of them; then a fake ramp whose host's PSS
falls while it ramps, end to end through the lab. The traffic run's own verdict (drift between
its before/after baselines) is in ``tests/test_traffic.py``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from edgelab.results import MemoryResult, RuntimeResult

KIB = 1024


def memory(**kwargs: Any) -> MemoryResult:
    fields: dict[str, Any] = dict(instances=3, pss_bytes_per_instance=10 * KIB, metric="PSS",
                                  mem_available_bytes_per_instance=None)
    fields.update(kwargs)
    return MemoryResult(**fields)


def exported(m: MemoryResult) -> dict[str, Any]:
    result = RuntimeResult("wasm", memory_metric="PSS", memory=m, scenario="ramp")
    return json.loads(json.dumps(result.to_json()))


# -- the user-space (PSS) figure -------------------------------------------------------------
def test_a_negative_pss_growth_is_no_figure_and_says_it_fell() -> None:
    # The walk-through's wasm:jit ramp: -46 KiB per instance at 3 instances, idle noise 4 KiB.
    m = memory(pss_bytes_per_instance=-46 * KIB, pss_noise_bytes=4 * KIB)
    assert m.pss_figure_bytes_per_instance is None and m.pss_growth_bytes == -138 * KIB
    assert m.instances_per_gib is None  # no host figure and no user-space one: no density
    assert m.warnings() == [
        "user-space memory fell 138 KiB at 3 instances, far more than its idle noise (4 KiB) the other way:"
        " the runtime's own memory moved (drift), not its instances: no user-space figure;"
        " hold at least 30 instances (10x as many), or rerun on a quieter machine"
    ]
    data = exported(m)
    assert data["memory_kib_per_instance"] is None and data["instances_per_gib"] is None
    assert data["memory"]["user_space_kib_per_instance"] is None
    assert data["memory"]["user_space_growth_kib"] == -138 and data["memory"]["user_space_noise_kib"] == 4
    assert data["memory"]["warnings"][0].startswith("user-space memory fell 138 KiB")
    assert data["memory"]["warnings"][0] in data["warnings"]  # the runtime's line too


def test_a_pss_change_within_its_idle_noise_is_no_figure() -> None:
    grew = memory(pss_bytes_per_instance=10 * KIB, pss_noise_bytes=20 * KIB)  # 30 KiB vs 3 x 20 KiB
    assert grew.pss_figure_bytes_per_instance is None
    assert grew.warnings()[0].startswith("user-space memory grew 30 KiB at 3 instances, within 3x its idle noise (20 KiB)")
    flat = memory(pss_bytes_per_instance=-2 * KIB, pss_noise_bytes=20 * KIB)
    assert flat.pss_figure_bytes_per_instance is None
    assert flat.warnings()[0].startswith(
        "user-space memory did not grow at 3 instances (it moved -6 KiB), within 3x its idle noise (20 KiB)"
    )


def test_a_host_figure_prices_how_many_instances_a_user_space_figure_needs() -> None:
    # A container: the cgroups read 6 MiB per instance; PSS moved -1 MiB in all.
    m = memory(instances=2, pss_bytes_per_instance=-512 * KIB, mem_available_bytes_per_instance=100.0,
               mem_available_noise_bytes=50e6, cgroup_bytes_per_instance=6 * 1024 * KIB)
    assert m.host_bytes_per_instance == 6 * 1024 * KIB  # the cgroups, not max(cgroup, a negative PSS)
    assert m.host_basis.startswith("cgroup memory incl. kernel memory")
    # Priced at 6 MiB, 1 MiB of drift needs 1 instance, and 2 are held: the count is no
    # guide here (PSS fell), so ten times as many.
    assert m.warnings()[0].endswith("hold at least 20 instances (10x as many), or rerun on a quieter machine")
    wasm = memory(instances=3, pss_bytes_per_instance=-46 * KIB, pss_noise_bytes=0.0,
                  mem_available_bytes_per_instance=4 * KIB, mem_available_noise_bytes=1 * KIB)
    # 3 x 138 KiB of drift to clear at the 4 KiB per instance MemAvailable fell: over 103.5.
    assert wasm.warnings()[0].endswith("no user-space figure; hold at least 104 instances")


def test_a_clear_pss_growth_stays_a_figure() -> None:
    m = memory(instances=200, pss_bytes_per_instance=11 * KIB, pss_noise_bytes=8 * KIB)
    assert m.pss_figure_bytes_per_instance == 11 * KIB and m.pss_warning() is None
    assert m.instances_per_gib == pytest.approx((1 << 30) / (11 * KIB))
    assert exported(m)["memory_kib_per_instance"] == 11
    assert exported(m)["memory"]["user_space_kib_per_instance"] == 11
    container = memory(instances=4, pss_bytes_per_instance=5_800_000.0)  # no idle PSS (0): no noise
    assert container.pss_figure_bytes_per_instance == 5_800_000.0 and container.warnings() == []


def test_displays_show_a_dash_and_the_reason_for_a_pss_figure_within_noise() -> None:
    from edgelab.export import _memory_figures
    from edgelab.ladder import idle_cost
    from edgelab.tui.state import RuntimeLive
    from edgelab.tui.view import memory_lines, memory_warning

    m = memory(pss_bytes_per_instance=-46 * KIB, pss_noise_bytes=4 * KIB)
    assert idle_cost(m) == ("–", "–")
    assert _memory_figures(RuntimeResult("wasm", memory=m)) == (None, None, None)
    assert memory_warning(m) == (
        "⚠ user-space figure within noise: hold at least 30 instances (10x as many), or rerun on a quieter machine"
    )
    live = RuntimeLive("wasm")
    live.memory = m
    assert live.bytes_per_instance() is None
    user, _, density, warning = memory_lines(live, "ramp")
    assert user == "user-space – (PSS, within noise)" and density == "" and warning == memory_warning(m)
    clear = memory(instances=200, pss_bytes_per_instance=11 * KIB)
    live.memory = clear
    assert memory_lines(live, "ramp")[0] == "user-space 11.0 KiB/instance (PSS)"
    assert idle_cost(clear)[1] == "11.0 KiB"


def test_a_live_mid_ramp_growth_at_or_below_zero_is_no_figure_yet() -> None:
    from edgelab.tui.state import RuntimeLive
    from edgelab.tui.view import memory_lines

    live = RuntimeLive("wasm")
    live.memory_points = [(3, -70 * KIB)]  # the idle host shrank more than 3 instances took
    assert live.bytes_per_instance() is None
    assert memory_lines(live, "ramp")[0] == "–"
    live.memory_points = [(3, -70 * KIB), (30, 330 * KIB)]
    assert live.bytes_per_instance() == 11 * KIB
    assert memory_lines(live, "ramp")[0] == "user-space 11.0 KiB/instance so far (PSS)"


# -- MemAvailable's wording -----------------------------------------------------------------------
def test_mem_available_that_fell_within_noise_says_fell_within() -> None:
    m = memory(instances=20, mem_available_bytes_per_instance=12 * KIB, mem_available_noise_bytes=1024 * KIB)
    assert m.warnings() == [
        "MemAvailable fell 240 KiB at 20 instances, within 10x its idle noise (1,024 KiB);"
        " hold at least 1,024 for a stable host figure"
    ]


def test_mem_available_that_rose_within_noise_says_rose() -> None:
    # "fell -75,676 KiB at 3 instances, within 10x its idle noise (91,632 KiB)" was a rise.
    m = memory(mem_available_bytes_per_instance=-75_676 * KIB / 3, mem_available_noise_bytes=91_632 * KIB)
    (line,) = m.warnings()
    assert line.startswith(
        "MemAvailable rose 75,676 KiB at 3 instances (other processes freed memory), within 10x its idle"
        " noise (91,632 KiB): no host figure from it; hold at least"
    )
    assert "fell" not in line and "-" not in line.split(";")[0]
    assert m.host_basis.startswith("none: MemAvailable rose (other processes freed memory)")
    assert exported(m)["host_kib_per_instance"] is None


def test_mem_available_that_rose_far_beyond_its_noise_is_called_drift() -> None:
    # "fell -32,048 KiB ... within 10x its idle noise (544 KiB)": 59x the noise, not within it.
    m = memory(mem_available_bytes_per_instance=-32_048 * KIB / 3, mem_available_noise_bytes=544 * KIB)
    assert m.warnings() == [
        "MemAvailable rose 32,048 KiB at 3 instances, far more than its idle noise (544 KiB) the other way:"
        " other processes freed memory (drift), so it says nothing of these instances; rerun on a quieter machine"
    ]
    assert m.host_bytes_per_instance is None


# -- end to end: a fake ramp whose host's PSS falls -----------------------------------------------
def test_a_ramp_whose_pss_falls_exports_null_with_the_reason_and_the_raw_growth() -> None:
    from edgelab.lab import Lab, Settings
    from edgelab.runtimes.base import Instance
    from edgelab.runtimes.fake import FakeRuntime

    class Shrinking(FakeRuntime):
        """A host process (idle PSS 40 MiB, +-2 KiB) that frees 100 KiB per instance it holds."""

        readings = 0

        def pss_bytes(self, instances: Sequence[Instance]) -> int:
            Shrinking.readings += 1
            return 40 * 1024 * KIB + 2 * KIB * (Shrinking.readings % 2) - 100 * KIB * len(instances)

    lab = Lab(runtime_factory=lambda name, s: Shrinking(s, name))
    result = lab.run(Settings(workload="hello", scenario="ramp", runtimes=("wasm",), resident={"wasm": 3}))
    m = result.runtimes["wasm"].memory
    assert m is not None and m.instances == 3 and m.pss_noise_bytes == 2 * KIB
    assert m.pss_figure_bytes_per_instance is None
    data = json.loads(json.dumps(result.to_json()))["results"][0]
    assert data["memory_kib_per_instance"] is None
    assert data["memory"]["user_space_kib_per_instance"] is None
    assert data["memory"]["user_space_growth_kib"] in (-300, -302)  # the median baseline, +-2 KiB
    fell = [w for w in data["warnings"] if w.startswith("user-space memory fell 30")]
    assert len(fell) == 1 and "far more than its idle noise (2 KiB)" in fell[0]
    # 3 x 300 KiB to clear at the 12 KiB per instance the fake's MemAvailable fell: over 75.
    assert fell[0].endswith("no user-space figure; hold at least 76 instances")
    assert lab.runtime("wasm").live_instances() == []


def test_the_cli_cross_check_says_fell_rose_or_drift_against_the_measured_noise() -> None:
    from edgelab.commands import memory_cross_check

    fell = memory(instances=20, mem_available_bytes_per_instance=12 * KIB, mem_available_noise_bytes=1024 * KIB)
    assert memory_cross_check(fell) == (
        "MemAvailable fell 240.0 KiB while 20 were launched (12.0 KiB each); within 10x its idle noise (1.0 MiB)"
    )
    rose = memory(mem_available_bytes_per_instance=-32_048 * KIB / 3, mem_available_noise_bytes=544 * KIB)
    assert memory_cross_check(rose) == (
        "MemAvailable rose 31.3 MiB while 3 were launched (10.4 MiB each); far more than its idle noise"
        " (544.0 KiB): other processes freed memory (drift)"
    )
    still = memory(mem_available_bytes_per_instance=0.0, mem_available_noise_bytes=0.0)
    assert memory_cross_check(still) == "MemAvailable did not move while 3 were launched; within 10x its idle noise (0 B)"
    assert still.host_basis.startswith("none: MemAvailable did not move")
    stable = memory(instances=500, mem_available_bytes_per_instance=12 * KIB, mem_available_noise_bytes=100 * KIB)
    assert memory_cross_check(stable) == "MemAvailable fell 5.9 MiB while 500 were launched (12.0 KiB each)"
