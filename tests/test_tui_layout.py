"""The lab at 80x24, 120x36 and 160x45 after a burst, holding a ramp, and on the ladder.

Why: on stage (issue 14) the Wasm panel needed the mouse wheel at 80x24, the instance counts
were below the fold at 120x36, and a fixed box cut 'IPC excluded)' and hid a warning even at
160x45. Each case is an SVG snapshot (fake runtime, deterministic) and, beside it, a check of
the rendered characters: every selected runtime's panel lies whole inside the visible body,
with its name, its p50, what its figure includes and every warning it has, none of them cut.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest
from rich.console import Console
from textual.pilot import Pilot
from textual.renderables.digits import Digits
from textual.widgets import Input

from edgelab.tui.app import EdgelabApp
from edgelab.tui.controls import Controls
from edgelab.tui.panels import RuntimePanel

sys.path.insert(0, str(Path(__file__).parent))
from test_tui_snapshots import fake_app, held_ramp, sizes_shown  # noqa: E402

from edgelab.tui.artifacts import PENDING  # noqa: E402

SIZES = {"80x24": (80, 24), "120x36": (120, 36), "160x45": (160, 45)}
#: Under 10 samples every runtime gets a warning ('only 5 samples: percentiles are rough').
BURST_COUNT = "5"


def screen_lines(app: EdgelabApp) -> list[str]:
    """What the terminal shows, one string per row (every cell here is one column wide)."""
    return ["".join(segment.text for segment in strip) for strip in app.screen._compositor.render_strips()]


def words(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def panel_rows(app: EdgelabApp, panel: RuntimePanel) -> list[str]:
    """The panel's rows inside its border, as drawn on screen."""
    region = panel.region
    lines = screen_lines(app)
    return [line[region.x + 1 : region.right - 1] for line in lines[region.y + 1 : region.bottom - 1]]


def big_digits(value: str) -> list[str]:
    """The rows textual's Digits draws for ``value`` (how a wide panel shows its p50)."""
    console = Console(width=60, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(Digits(value))
    return [row.rstrip() for row in console.export_text().splitlines() if row.strip()]


def assert_every_panel_whole(app: EdgelabApp) -> None:
    body = app.query_one("#body").region
    assert app.panels, "no panels"
    for name, panel in app.panels.items():
        view = panel.view
        assert view is not None and view.p50 != "–", (name, "no figures")
        # Whole: from its top border to its last row inside what the body shows (no scroll).
        assert body.contains_region(panel.region), (name, panel.region, body)
        rows = panel_rows(app, panel)
        title = screen_lines(app)[panel.region.y][panel.region.x : panel.region.right]
        assert f" {name} " in title, (name, title)
        text = words(" ".join(rows))
        if panel.query_one(".startup-line").display and app.screen.has_class("-narrow"):
            assert f"p50 {view.p50}" in text, (name, view.p50, text)
        else:
            value, _, unit = view.p50.partition(" ")
            drawn = "\n".join(rows)
            for glyphs in big_digits(value):
                assert glyphs.strip() in drawn, (name, view.p50, glyphs)
            assert unit in text
        # What the figure includes, whole (a wrapped sentence reads the same, never cut).
        # Under 30 rows it is abbreviated (what it excludes kept; whole on p and in exports).
        includes = view.includes_short_line if app.screen.has_class("-short") else view.includes_line
        assert words(includes) in text, (name, includes, text)
        warnings = [*view.warning_lines, view.memory_warning_line]
        for warning in filter(None, warnings):
            assert words(warning) in text, (name, warning, text)
    # The strip under the panels says its whole sentence, and names only runtimes on screen
    # (an s screenshot then shows every panel it talks about).
    strip = str(app.query_one("#comparison").content)
    assert words(strip) in words(" ".join(screen_lines(app))), strip
    named = [name for name in app.panels if re.search(rf"(^|\s){re.escape(name)}(\s|$)", strip)]
    assert named, strip
    # No scrollbar pieces anywhere on the lab's screen.
    bars = [
        (str(widget), widget.show_vertical_scrollbar, widget.size, widget.virtual_size)
        for widget in app.screen.query("*")
        # Shown: on screen with an area (a folded control keeps its flags at size 0).
        if widget.display and widget.region and (widget.show_vertical_scrollbar or widget.show_horizontal_scrollbar)
    ]  # fmt: skip
    assert not bars, bars


async def loaded(pilot: Pilot) -> EdgelabApp:
    app = pilot.app
    assert isinstance(app, EdgelabApp)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while app.query_one(Controls).workload() is None or PENDING in sizes_shown(app):
        assert loop.time() < deadline, "workload list never loaded"
        await asyncio.sleep(0.05)
    return app


async def short_burst(pilot: Pilot) -> None:
    """A burst of 5 cold starts per runtime: few enough that each panel has a warning."""
    app = await loaded(pilot)
    app.query_one("#count", Input).value = BURST_COUNT
    await pilot.press("r")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while app.state.result is None or app.running:
        assert loop.time() < deadline, "burst never finished"
        await asyncio.sleep(0.05)
    await pilot.pause()
    await pilot.pause()
    assert all(panel.view and panel.view.warning_lines for panel in app.panels.values())
    assert_every_panel_whole(app)


async def ramp_held(pilot: Pilot) -> None:
    await held_ramp(pilot)
    # Two frames: the panels' texts are measured again after the figures' last change.
    await pilot.pause()
    await pilot.pause()
    assert_every_panel_whole(pilot.app)  # type: ignore[arg-type]


async def ladder_after_a_burst(pilot: Pilot) -> None:
    await short_burst(pilot)
    app = pilot.app
    assert isinstance(app, EdgelabApp)
    # o unfolds the controls a small screen's run folded away (focus on the list), o again
    # folds them; a 160x45 screen kept them.
    controls = app.query_one(Controls)
    folded = app.size != (160, 45)
    assert controls.has_class("-folded") is folded and controls.display is not folded
    await pilot.press("o")
    await pilot.pause()
    assert controls.has_class("-folded") is not folded
    if folded:
        assert app.focused is app.query_one("#workloads")
    await pilot.press("o")
    await pilot.pause()
    assert controls.has_class("-folded") is folded
    await pilot.press("L")
    await pilot.pause()
    lines = screen_lines(app)
    for name in app.state.runtimes:
        p50 = app.panels[name].view.p50  # type: ignore[union-attr]
        row = [line for line in lines if re.search(rf"(^|\s){re.escape(name)}\s", line)]
        assert row and p50 in row[0], (name, p50, row)


CASES = {"burst": short_burst, "ramp": ramp_held, "ladder": ladder_after_a_burst}


PARAMS = [
    pytest.param(case, size, id=f"{case}-{label}") for case in CASES for label, size in SIZES.items()
]


@pytest.fixture
def quick_ramp(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ramp's pauses for the kernel's counters (0.3 s settle, 8 readings 25 ms apart, per
    runtime) mean nothing on the fake runtime: shortened, a held ramp takes ~0.5 s, not 3."""
    import edgelab.scenarios.ramp as ramp

    monkeypatch.setattr(ramp, "RAMP_SETTLE_S", 0.01)
    monkeypatch.setattr(ramp, "IDLE_READING_GAP_S", 0.001)
    monkeypatch.setattr(ramp, "IDLE_WINDOW_MAX_S", 0.01)


@pytest.mark.parametrize(("case", "size"), PARAMS)
def test_every_runtime_whole_on_screen(snap_compare, tmp_path: Path, case: str, size: tuple[int, int], quick_ramp: None) -> None:  # type: ignore[no-untyped-def]
    app = fake_app(tmp_path)
    try:
        assert snap_compare(app, terminal_size=size, run_before=CASES[case])
    finally:
        if app.cancel_event is not None:
            app.cancel_event.set()


def test_descriptions_are_shortened_at_a_word() -> None:
    from edgelab.tui.controls import _short

    text = 'Answers "hello, <request>" ("hello, world" for an empty one)'
    assert _short(text, 100) == text
    for limit in range(8, len(text)):
        short = _short(text, limit)
        assert len(short) <= limit and short.endswith("…"), (limit, short)
        kept = short[:-1]
        # Whole words only: what is kept is the text up to a space (punctuation trimmed).
        assert text.startswith(kept) and (text[len(kept)] in " ·,;:(" or kept == ""), (limit, short)


def test_the_host_line_keeps_whole_facts() -> None:
    """'8.0 GiB RAM ·…' at 80 columns: now whole facts, then '…' for those left out."""
    from edgelab.tui.header import host_line

    facts = {"cpu_model": "AMD EPYC 7B13 64-Core Processor", "cpu_cores_logical": 2, "memory_total_bytes": 8 << 30}
    versions = {"docker_engine": "28.1.1", "wasmtime": "36.0.0"}
    whole = host_line(facts, versions)
    assert whole.endswith("wasmtime 36.0.0") and host_line(facts, versions, len(whole)) == whole
    parts = whole.split(" · ")
    for width in range(8, len(whole)):
        line = host_line(facts, versions, width)
        assert len(line) <= width and line.endswith("…"), (width, line)
        shown = line.removesuffix("…").removesuffix(" · ").split(" · ")
        if len(shown) > 1 or shown[0] in parts:
            assert all(part in parts for part in shown), (width, line)
        else:  # only the CPU's name, cut after a word
            assert parts[0].startswith(shown[0]) and parts[0][len(shown[0])] == " ", (width, line)


def long_includes_app(tmp_path: Path) -> EdgelabApp:
    """The fake lab with the Wasm pool's real includes sentence (163 characters, the issue's
    '…IPC excluded)') on every panel: the fake's own is 33, far shorter than any real one."""
    from edgelab.lab import Lab
    from edgelab.runtimes.fake import FakeRuntime
    from edgelab.runtimes.wasm.runtime import STRATEGIES

    def runtime(name: str, session: object) -> FakeRuntime:
        made = FakeRuntime(session, as_runtime=name)  # type: ignore[arg-type]
        made.startup_includes = STRATEGIES["pool"].includes  # type: ignore[misc]
        return made

    return EdgelabApp(
        lab=Lab(runtime_factory=runtime), screenshot_dir=tmp_path, export_dir=tmp_path,
        deterministic=True, only_workloads=("hello",),
    )  # fmt: skip


LONG_CASES = [
    pytest.param("burst", (80, 24), id="burst-80x24"),
    pytest.param("ramp", (120, 36), id="ramp-120x36"),
    # Under 30 rows the includes sentence is abbreviated (what it excludes kept), each memory
    # line names its basis by its first word, and the count and the ramp rate take one line
    # each: a held ramp with the real 163-character sentence took 24 rows at 26 columns, where
    # 80x24 leaves 19.
    pytest.param("ramp", (80, 24), id="ramp-80x24"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "size"), LONG_CASES)
def test_real_length_includes_fit(tmp_path: Path, case: str, size: tuple[int, int], quick_ramp: None) -> None:
    async def check() -> None:
        app = long_includes_app(tmp_path)
        async with app.run_test(size=size) as pilot:
            try:
                await CASES[case](pilot)
            finally:
                if app.cancel_event is not None:
                    app.cancel_event.set()
                while app.running:  # the held ramp's teardown, before the app goes
                    await asyncio.sleep(0.02)

    asyncio.run(check())
