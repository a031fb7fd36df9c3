"""Pilot tests of the lab's traffic controls, the request field and a person's own function
(issues 12 and 13), on the fake runtime: its traffic runs are real runs of the real scenario
(arrivals, keep-alive, scale to zero) over fixed fake timings."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable, Input

from edgelab.stats import format_bytes
from edgelab.tui.app import EdgelabApp
from edgelab.tui.controls import Controls
from edgelab.tui.state import NOT_APPLICABLE
from tests.test_tui_pilot import SIZE, fake_app, pilot_test, ready, run_to_end, until


def status(app: EdgelabApp) -> str:
    return str(app.query_one("#status").render())


def traffic_controls(app: EdgelabApp, **values: str) -> None:
    app.query_one(Controls).set_scenario("traffic")
    fields = {"rate": "40", "duration": "0.6", "keepalive": "100ms", "prewarm": "0"} | values
    for field, value in fields.items():
        app.query_one(f"#{field}", Input).value = value


@pilot_test
async def test_a_traffic_run_shows_requests_cold_share_and_p99_in_every_panel(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        traffic_controls(app)
        await pilot.pause()
        # Traffic's own inputs are shown, N is not.
        assert app.query_one("#pattern").display and app.query_one("#keepalive").display
        assert not app.query_one("#count").display
        await run_to_end(pilot)
        assert app.settings is not None and app.settings.scenario == "traffic"
        assert app.settings.keepalive_s == pytest.approx(0.1) and app.settings.pattern == "poisson"
        assert app.state.result is not None
        for name, panel in app.panels.items():
            traffic = app.state.result.runtimes[name].traffic
            counts = traffic.counts()
            text = panel.text()
            assert f"{counts['requests']:,} requests" in text, text
            assert f"cold {traffic.cold_fraction:.1%}" in text, text
            assert "latency p50 " in text and " p99 " in text, text
            assert f"scaled down {traffic.scaled_down:,}" in text, text
            assert counts["requests"] > 5  # 40/s for 0.6 s
            held = traffic.memory_bytes_per_instance
            if held is None:
                assert "not measured in this traffic run" in text, text
            else:
                assert f"held {format_bytes(held)}/instance during traffic" in text, text
        assert "keep-alive 0.1 s" in str(app.query_one("#run-line").render())


@pilot_test
async def test_a_bad_traffic_value_is_one_line_and_nothing_runs(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        traffic_controls(app, keepalive="5 min 3")
        await pilot.press("r")
        await pilot.pause()
        assert app.scenario_worker is None
        line = status(app)
        assert "keep-alive must be" in line and "\n" not in line
        traffic_controls(app, pattern="trace")
        await pilot.pause()
        assert app.query_one("#trace-file").display  # a trace pattern asks for its file
        await pilot.press("r")
        await pilot.pause()
        assert app.scenario_worker is None and "needs a trace file" in status(app)


@pilot_test
async def test_the_request_field_reaches_the_runs_settings(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        app.query_one("#count", Input).value = "2"
        app.query_one("#request", Input).value = "edge"
        await run_to_end(pilot)
        assert app.settings is not None and app.settings.request == b"edge"
        assert app.state.result is not None
        assert app.state.result.metadata["settings"]["request_bytes"] == 4
        # A file instead: its bytes, as --request-file reads them.
        request_file = tmp_path / "req.bin"
        request_file.write_bytes(b"\x00from a file")
        app.query_one("#request", Input).value = ""
        app.query_one("#request-file", Input).value = str(request_file)
        await run_to_end(pilot)
        assert app.settings.request == b"\x00from a file"


@pilot_test
async def test_a_request_over_its_limit_or_unreadable_is_one_line(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        limit = app.workloads["hello"].max_request_bytes
        big = tmp_path / "big.bin"
        big.write_bytes(b"x" * (limit + 1))
        app.query_one("#request-file", Input).value = str(big)
        await pilot.press("r")
        await pilot.pause()
        assert app.scenario_worker is None
        assert f"exceeds hello's limit of {limit} bytes" in status(app)
        app.query_one("#request-file", Input).value = str(tmp_path / "missing.bin")
        app.action_run_or_stop()
        await pilot.pause()
        assert app.scenario_worker is None and "cannot read request file" in status(app)


@pilot_test
async def test_a_function_runs_only_on_the_rungs_that_apply(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A person's own command saved by ``edgelab add``: the list marks it a function, the
    container and wasm panels say not applicable (and why), subprocess runs it."""
    from edgelab import cli

    monkeypatch.setenv("EDGELAB_WORKLOADS_DIR", str(tmp_path / "workloads"))
    assert cli.main(["add", "mine", "--command", "busybox cat", "--description", "my cat"]) == 0
    app = fake_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await until(pilot, lambda: "mine" in app.workloads)
        table = app.query_one("#workloads", DataTable)
        table.move_cursor(row=table.get_row_index("mine"))
        assert app.query_one(Controls).workload() == "mine"
        assert str(table.get_row("mine")[-1]).startswith("function · my cat")
        app.query_one("#count", Input).value = "2"
        await run_to_end(pilot)
        assert app.settings is not None and app.settings.runtimes == ("subprocess",)
        for name, flag in (("container", "--image"), ("wasm", "--wasm")):
            assert app.state.runtimes[name].state == NOT_APPLICABLE
            text = app.panels[name].text()
            assert "not applicable" in text and f"needs {flag}" in text, text
        assert app.state.result is not None and app.state.result.runtimes["subprocess"].summary() is not None
        assert set(app.state.result.runtimes) == {"subprocess"}
