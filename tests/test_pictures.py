"""Pictures out: the PNG beside the SVG reads as the screen does, and the lab stays quick to open.

The PNG is checked by reading it back, OCR-free: each big digit is three cells wide and three
tall, and in every cell the pixels say which of its four arms (up, down, left, right) carry a
stroke, sampled at the cell's own edges, so a glyph that stops short of its cell (the SVG's
font fallback, which made 227.7 read 221.1) reads as no arm. The arms of the nine cells are
then matched against Textual's own glyph table for 0-9.
"""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from textual.app import App, ComposeResult
from textual.renderables.digits import DIGITS, DIGITS3X3
from textual.widgets import Digits

from edgelab.tui import pictures
from edgelab.tui.pictures import CELL_H, CELL_W, PAD, box_arms, capture, render_png

PIL = pytest.importorskip("PIL.Image")


class DigitsApp(App[None]):
    CSS = "Digits { width: auto; }"

    def compose(self) -> ComposeResult:
        yield Digits("227.7")
        yield Digits("221.1")


def shoot(size: tuple[int, int]) -> pictures.Frame:
    async def run() -> pictures.Frame:
        app = DigitsApp()
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            return capture(app)

    return asyncio.run(run())


def cell_arms(image: object, row: int, column: int) -> frozenset[str]:
    """Which arms of cell (row, column) the pixels show: ink at the middle of each edge."""
    x, y = PAD + column * CELL_W, PAD + row * CELL_H
    background = image.getpixel((1, 1))  # type: ignore[attr-defined]

    def ink(px: int, py: int) -> bool:
        return sum(abs(a - b) for a, b in zip(image.getpixel((px, py)), background, strict=False)) > 200  # type: ignore[attr-defined]

    cx, cy = x + CELL_W // 2, y + CELL_H // 2
    probes = {"up": (cx, y), "down": (cx, y + CELL_H - 1), "left": (x, cy), "right": (x + CELL_W - 1, cy)}
    arms = frozenset(d for d, (px, py) in probes.items() if ink(px, py))
    if not arms and any(ink(px, py) for px in range(x + 2, x + CELL_W - 2) for py in range(y + 2, y + CELL_H - 2)):
        return frozenset({"dot"})  # the decimal point: ink inside the cell, no arm
    return arms


def glyph_arms(char: str) -> frozenset[str]:
    return frozenset(box_arms(char) or {}) if char.strip() else frozenset()


#: Each digit's nine cells as Textual draws it (DIGITS3X3: three rows per character).
KNOWN = {
    digit: tuple(
        tuple(glyph_arms(ch) for ch in DIGITS3X3[DIGITS.index(digit) * 3 + r].ljust(3)[:3])
        for r in range(3)
    )
    for digit in "0123456789"
}


def read_digits(png: bytes, top_row: int, columns: int) -> str:
    """The figure drawn at rows top_row..top_row+2, read back from the pixels."""
    image = PIL.open(io.BytesIO(png)).convert("RGB")
    text, column = "", 0
    while column < columns:
        if cell_arms(image, top_row + 2, column) == {"dot"}:
            text, column = text + ".", column + 1
            continue
        cells = tuple(tuple(cell_arms(image, top_row + r, column + c) for c in range(3)) for r in range(3))
        if not any(any(row) for row in cells):
            column += 1
            continue
        found = [digit for digit, known in KNOWN.items() if known == cells]
        assert found, f"cells at column {column} match no digit: {cells}"
        text, column = text + found[0], column + 3
    return text


def test_png_draws_the_big_digits_so_they_read_back_as_written() -> None:
    frame = shoot((40, 8))
    started = time.perf_counter()
    png = render_png(frame.lines, frame.width)
    assert time.perf_counter() - started < 2.0
    assert read_digits(png, 0, 20) == "227.7"
    assert read_digits(png, 3, 20) == "221.1"
    image = PIL.open(io.BytesIO(png))
    assert image.size == (40 * CELL_W + 2 * PAD, 8 * CELL_H + 2 * PAD)


def test_a_glyph_that_stops_short_of_its_cell_does_not_read_as_a_stroke() -> None:
    """The reader can fail: the same screen with each line character drawn by the font (as
    the SVG's fallback does) does not read back as 227.7."""
    frame = shoot((40, 8))
    original = pictures.draw_cell_shape
    try:
        pictures.draw_cell_shape = lambda *args: False  # type: ignore[assignment]
        png = render_png(frame.lines, frame.width)
    finally:
        pictures.draw_cell_shape = original
    try:
        reading = read_digits(png, 0, 20)
    except AssertionError:
        reading = None
    assert reading != "227.7"


def test_box_arms_come_from_the_unicode_names() -> None:
    assert box_arms("┌") == {"down": 1, "right": 1}
    assert box_arms("╮") == {"left": 1, "down": 1}
    assert box_arms("┻") == {"up": 2, "left": 2, "right": 2}
    assert box_arms("╞") == {"up": 1, "down": 1, "right": 3}
    assert box_arms("╸") == {"left": 2}
    assert box_arms("a") is None and box_arms("╱") is None


def test_s_writes_an_svg_and_a_png_of_the_same_frame(tmp_path: Path) -> None:
    from edgelab.tui.app import EdgelabApp
    from tests.test_tui_pilot import FakeLab, ready

    shots = tmp_path / "shots"

    async def run() -> None:
        app = EdgelabApp(lab=FakeLab(), screenshot_dir=shots, deterministic=True)
        async with app.run_test(size=(120, 36)) as pilot:
            await ready(pilot)
            await pilot.press("s")
            deadline = time.monotonic() + 10
            while not list(shots.glob("*.png")) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)

    asyncio.run(run())
    svgs, pngs = list(shots.glob("*.svg")), list(shots.glob("*.png"))
    assert len(svgs) == 1 and len(pngs) == 1 and svgs[0].stem == pngs[0].stem
    assert svgs[0].read_text().startswith("<svg")
    image = PIL.open(pngs[0])
    assert image.size == (120 * CELL_W + 2 * PAD, 36 * CELL_H + 2 * PAD)
    assert len(image.convert("RGB").getcolors(1 << 16) or ()) > 3, "a blank picture"
    assert sorted(p.name for p in shots.iterdir()) == sorted([svgs[0].name, pngs[0].name])
    umask = os.umask(0o022)
    os.umask(umask)
    for picture in (svgs[0], pngs[0]):  # as readable as any file the user makes, not 0600
        assert picture.stat().st_mode & 0o777 == 0o666 & ~umask


def test_opening_the_lab_imports_no_heavy_library() -> None:
    """What first paint does not wait for: importing the app (as the CLI does before the
    first frame) loads none of these; each is imported when it is first needed."""
    heavy = (
        "numpy", "scipy", "docker", "PIL", "psutil", "wasmtime", "edgelab.lab", "edgelab.remote",
        # the subcommands' modules: a bare edgelab builds only the lab's own flags
        "edgelab.claims", "edgelab.serve", "edgelab.demo", "edgelab.whatif.command",
    )
    code = (
        "import sys, edgelab.cli as c; c.build_parser(subcommands=False).parse_args([]);"
        f" import edgelab.tui.app; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == ""


def test_a_bare_edgelab_parses_as_the_full_parser_does() -> None:
    import edgelab.cli as cli

    assert vars(cli.build_parser(subcommands=False).parse_args([])) == vars(cli.build_parser().parse_args([]))


def test_the_first_frame_parses_the_stylesheets_once_and_keeps_the_theme(monkeypatch: pytest.MonkeyPatch) -> None:
    """The theme set in __init__ no longer re-parses every stylesheet twice before the first
    frame (EdgelabApp.refresh_css), and the light theme is still the light theme."""
    from textual.css.stylesheet import Stylesheet

    from edgelab.tui.app import EdgelabApp
    from tests.test_tui_pilot import FakeLab

    reparses: list[int] = []
    original = Stylesheet.reparse

    def counted(self: Stylesheet) -> None:
        reparses.append(1)
        original(self)

    monkeypatch.setattr(Stylesheet, "reparse", counted)

    async def run() -> tuple[int, object, int]:
        app = EdgelabApp(lab=FakeLab(), deterministic=True, theme="light")
        async with app.run_test(size=(80, 24)) as pilot:
            while app.first_paint_s is None:
                await asyncio.sleep(0.01)
            before_paint = len(reparses)
            background = app.screen.styles.background
            await pilot.press("t")  # a theme change after the first frame still restyles
            await pilot.pause()
            return before_paint, background, len(reparses)

    before_paint, background, after_toggle = asyncio.run(run())
    assert before_paint == 0
    assert background.brightness > 0.9, background  # type: ignore[attr-defined]
    assert after_toggle > 0


def test_the_lab_opens_with_the_labs_gc_thresholds_and_a_command_keeps_pythons(monkeypatch: pytest.MonkeyPatch) -> None:
    """~175 collections before the first frame at Python's thresholds, ~14 at the lab's; a
    headless command (measurements) runs at Python's defaults as before."""
    import gc

    import edgelab.cli as cli
    import edgelab.history

    seen: dict[str, tuple[int, ...]] = {}

    def record(name: str) -> int:
        seen[name] = gc.get_threshold()
        return 0

    monkeypatch.setattr(cli, "_run_tui", lambda args: record("tui"))
    monkeypatch.setattr(edgelab.history, "cmd_history", lambda args: record("history"))
    original = gc.get_threshold()
    # Python's own defaults to start from: a pilot test earlier in this process may have left
    # the lab's thresholds set (EdgelabApp._settle_heap sets them, as the lab process does).
    gc.set_threshold(700, 10, 10)
    before = gc.get_threshold()
    try:
        assert cli.main([]) == 0
        gc.set_threshold(*before)  # the real lab process ends with its TUI
        assert cli.main(["history"]) == 0
    finally:
        gc.set_threshold(*original)
    assert seen["tui"] == cli._TUI_GC_THRESHOLDS != before
    assert seen["history"] == before
