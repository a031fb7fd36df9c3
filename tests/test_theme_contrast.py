"""WCAG contrast of both lab themes, computed from the themes' own colours.

Why: on a projector (light theme) Textual's defaults put orange panel titles at 1.5:1 and grey
labels at 1.8:1. The themes (edgelab/tui/themes.py) are checked two ways: every text/background
pair the stylesheet uses, from the theme's variables; and every character of rendered screens,
from the colours Textual actually drew (which catches widget defaults and Rich markup).
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest
from textual.color import Color

from edgelab.tui import themes
from edgelab.tui.app import EdgelabApp

sys.path.insert(0, str(Path(__file__).parent))
from test_tui_snapshots import completed_burst, fake_app  # noqa: E402

TCSS = Path(themes.__file__).with_name("app.tcss")
THEMES = list(themes.THEMES.values())
IDS = [theme.name for theme in THEMES]
#: Properties whose value is a colour text is drawn in.
TEXT_PROPERTIES = ("color", "border-title-color", "border-subtitle-color")


def test_the_formula_is_wcags() -> None:
    """Known ratios: black on white 21:1, #777 on white 4.48:1 (just under AA), equal 1:1."""
    white, black = Color.parse("#FFFFFF"), Color.parse("#000000")
    assert themes.contrast(black, white) == pytest.approx(21.0)
    assert themes.contrast(Color.parse("#777777"), white) == pytest.approx(4.48, abs=0.01)
    assert themes.contrast(white, white) == pytest.approx(1.0)
    # Translucent text is what the eye sees over its background: 'auto 60%' on white is grey.
    muted = themes.resolve("auto 60%", white)
    assert muted.a == 1 and 2.0 < themes.contrast(muted, white) < 10.0


@pytest.mark.parametrize("theme", THEMES, ids=IDS)
def test_every_text_pair_passes_aa(theme: themes.Theme) -> None:
    failing = {
        f"{text} on {ground} ({where})": round(themes.pair_contrast(theme, text, ground), 2)
        for text, ground, where in themes.TEXT_PAIRS
        if themes.pair_contrast(theme, text, ground) < themes.TEXT_CONTRAST
    }
    assert not failing, failing


@pytest.mark.parametrize("theme", THEMES, ids=IDS)
def test_named_colours_read_on_every_background(theme: themes.Theme) -> None:
    """Screens colour a verdict or status by name ("yellow"): each name as the theme maps it."""
    found = themes.variables(theme)
    base = Color.parse(found["background"])
    failing = {}
    for ground in ("background", "surface", "panel"):
        colour = themes.resolve(found[ground], base)
        for name, text in themes.ansi_colors(theme).items():
            ratio = themes.contrast(text, colour)
            if ratio < themes.TEXT_CONTRAST:
                failing[f"{name} on {ground}"] = round(ratio, 2)
    assert not failing, failing


def test_the_stylesheet_uses_only_checked_text_colours() -> None:
    """A colour added to app.tcss without its pair in themes.TEXT_PAIRS fails here."""
    css = re.sub(r"/\*.*?\*/", "", TCSS.read_text(), flags=re.S)
    used = set()
    for prop in TEXT_PROPERTIES:
        used |= set(re.findall(rf"(?<![\w-]){prop}\s*:\s*\$([\w-]+)", css))
    assert "text-muted" in used and "accent" in used  # the parse found the stylesheet's colours
    checked = {text for text, _, _ in themes.TEXT_PAIRS}
    assert used <= checked, sorted(used - checked)
    grounds = set(re.findall(r"(?<![\w-])background\s*:\s*\$([\w-]+)", css))
    checked_grounds = {ground for _, ground, _ in themes.TEXT_PAIRS}
    assert grounds <= checked_grounds, sorted(grounds - checked_grounds)


def _is_graphic(character: str) -> bool:
    """Box drawing, block elements and geometric shapes: borders, bars and the big Digits.
    WCAG asks 3:1 of those (1.4.11 for graphics and edges, 1.4.3 for large text)."""
    return 0x2500 <= ord(character) <= 0x25FF


def low_contrast_cells(app: EdgelabApp) -> dict[str, float]:
    """Every character on screen whose drawn colours fall under its WCAG minimum."""
    failing: dict[str, float] = {}
    for strip in app.screen._compositor.render_strips():
        for segment in strip:
            style = segment.style
            if style is None or style.color is None or style.bgcolor is None:
                continue
            ratio = themes.contrast(Color.from_rich_color(style.color), Color.from_rich_color(style.bgcolor))
            for character in set(segment.text) - {" "}:
                need = themes.LARGE_TEXT_CONTRAST if _is_graphic(character) else themes.TEXT_CONTRAST
                if ratio < need:
                    failing[f"{character!r} in {segment.text.strip()[:30]!r}"] = round(ratio, 2)
    return failing


def test_rendered_lab_and_ladder_pass_in_both_themes(tmp_path: Path) -> None:
    asyncio.run(_rendered_lab_and_ladder(tmp_path))


async def _rendered_lab_and_ladder(tmp_path: Path) -> None:
    """After a burst (fake runtime) at 80x24: the lab, then the ladder (L), cell by cell, in
    the dark theme and again after t switched to the light one."""
    app = fake_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await completed_burst(pilot)
        for theme in ("dark", "light"):
            assert app.theme == themes.THEMES[theme].name
            drawn = sum(len(segment.text.strip()) for strip in app.screen._compositor.render_strips() for segment in strip)
            assert drawn > 500  # a full screen was checked, not a blank one
            assert low_contrast_cells(app) == {}, theme
            await pilot.press("L")
            await pilot.pause()
            assert low_contrast_cells(app) == {}, (theme, "ladder")
            await pilot.press("escape", "t")
            await pilot.pause()
