"""Pictures of the lab's screen: the SVG Textual makes, and a PNG beside it drawn cell by cell.

Why not convert the SVG: an SVG screenshot names its font and leaves the drawing to the
viewer. rsvg-convert (and most converters) fall back to a font whose box-drawing glyphs do
not fill the cell, so the big ``Digits`` figures come out as broken strokes (``227.7`` reads
``221.1``). Here the screen is rasterised from the same frame as the SVG: text through a
monospace TrueType font (DejaVu Sans Mono where installed), while block elements
(U+2580-U+259F), box drawing (U+2500-U+257F) and braille (U+2800-U+28FF) are drawn as
rectangles and lines on the cell grid, so they join from one cell to the next as in a terminal.

Pillow is imported only when a PNG is drawn (never on the way to first paint).
"""

from __future__ import annotations

import io
import os
import tempfile
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.segment import Segment
    from rich.terminal_theme import TerminalTheme
    from textual.app import App

#: Pixels per terminal cell, and the font size that fits the font's glyphs in it.
CELL_W = 10
CELL_H = 20
FONT_PX = 16
#: A border of the screen's background around the cells.
PAD = 8
FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/TTF", "/usr/share/fonts/dejavu")
FONT_FILES = {False: "DejaVuSansMono.ttf", True: "DejaVuSansMono-Bold.ttf"}

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Frame:
    """One frame of the screen: its SVG and its cells, taken from the same render."""

    width: int
    height: int
    lines: list[list[Segment]]
    svg: str


def capture(app: App[Any]) -> Frame:
    """The app's screen as Textual's own screenshot draws it (export_screenshot), kept as
    cells too, so the SVG and the PNG are the same frame."""
    from rich.console import Console
    from rich.segment import Segment

    width, height = app.size
    console = Console(
        width=width, height=height, file=io.StringIO(), force_terminal=True,
        color_system="truecolor", record=True, legacy_windows=False, safe_box=False,
    )
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    with console._record_buffer_lock:
        segments = list(Segment.filter_control(console._record_buffer))
    lines = list(Segment.split_and_crop_lines(segments, length=width))
    return Frame(width, height, lines, console.export_svg(title=app.title))


def picture_stem(title: str) -> str:
    """Textual's screenshot name (title and ISO time, reserved characters as _), shared by
    the SVG and the PNG so the two files sort together."""
    stem = f"{title} {datetime.now().isoformat()}"
    for reserved in ' <>:"/\\|?*.':
        stem = stem.replace(reserved, "_")
    return stem


def write_atomically(path: Path, data: bytes) -> None:
    """Into a temporary file beside it, then renamed: a reader never sees half a picture."""
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would hide the picture from others
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process's umask without setting it (os.umask both reads and sets, racing threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


# -- colours -----------------------------------------------------------------------------------
def _default_theme() -> TerminalTheme:
    from rich.terminal_theme import SVG_EXPORT_THEME

    return SVG_EXPORT_THEME


def cell_colours(style: Any, theme: TerminalTheme) -> tuple[RGB, RGB]:
    """Foreground and background of a cell, as export_svg resolves them (reverse swaps,
    dim is the foreground halfway to the background)."""
    fg: RGB = tuple(theme.foreground_color)  # type: ignore[assignment]
    bg: RGB = tuple(theme.background_color)  # type: ignore[assignment]
    if style is not None:
        if style.color is not None and not style.color.is_default:
            fg = tuple(style.color.get_truecolor(theme, foreground=True))  # type: ignore[assignment]
        if style.bgcolor is not None and not style.bgcolor.is_default:
            bg = tuple(style.bgcolor.get_truecolor(theme, foreground=False))  # type: ignore[assignment]
        if style.reverse:
            fg, bg = bg, fg
        if style.dim:
            fg = blend(fg, bg, 0.5)
    return fg, bg


def blend(a: RGB, b: RGB, amount_of_a: float) -> RGB:
    return tuple(round(x * amount_of_a + y * (1 - amount_of_a)) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


# -- cell geometry: box drawing, blocks, braille -------------------------------------------------
_WEIGHTS = {"LIGHT": 1, "SINGLE": 1, "HEAVY": 2, "DOUBLE": 3}
_DIRECTIONS = {
    "UP": ("up",), "DOWN": ("down",), "LEFT": ("left",), "RIGHT": ("right",),
    "HORIZONTAL": ("left", "right"), "VERTICAL": ("up", "down"),
}


@lru_cache(maxsize=512)
def box_arms(char: str) -> dict[str, int] | None:
    """The arms of a box-drawing character, from its Unicode name: direction -> weight
    (1 light, 2 heavy, 3 double). ``BOX DRAWINGS LIGHT DOWN AND RIGHT`` -> down 1, right 1;
    ``BOX DRAWINGS DOWN SINGLE AND RIGHT DOUBLE`` -> down 1, right 3. Arcs are drawn as
    corners (they join the same way); dashes as whole lines. None: not a line character
    (the diagonals are drawn by the font)."""
    if not "\u2500" <= char <= "\u257f":
        return None
    name = unicodedata.name(char, "")
    if not name.startswith("BOX DRAWINGS ") or "DIAGONAL" in name:
        return None
    words = name.removeprefix("BOX DRAWINGS ").replace(" ARC", "").split()
    words = [w for w in words if w not in ("DASH", "TRIPLE", "QUADRUPLE", "DOUBLE-DASH")] \
        if "DASH" in name else words
    groups: list[tuple[list[str], int | None]] = []
    for part in " ".join(words).split(" AND "):
        tokens = part.split()
        weight = next((_WEIGHTS[t] for t in tokens if t in _WEIGHTS), None)
        directions = [d for t in tokens for d in _DIRECTIONS.get(t, ())]
        groups.append((directions, weight))
    arms: dict[str, int] = {}
    for index, (directions, weight) in enumerate(groups):
        if weight is None:  # "LIGHT DOWN AND RIGHT": the weight is said once, for both
            before = [w for _, w in groups[:index] if w is not None]
            after = [w for _, w in groups[index + 1:] if w is not None]
            weight = before[-1] if before else (after[0] if after else 1)
        for direction in directions:
            arms[direction] = weight
    return arms or None


def _fractions(char: str) -> list[tuple[float, float, float, float]] | None:
    """Block elements as filled parts of the cell (x0, y0, x1, y1 in cell fractions)."""
    code = ord(char)
    if code == 0x2580:
        return [(0, 0, 1, 0.5)]
    if 0x2581 <= code <= 0x2588:
        eighths = code - 0x2580
        return [(0, 1 - eighths / 8, 1, 1)]
    if 0x2589 <= code <= 0x258F:
        eighths = 0x2590 - code
        return [(0, 0, eighths / 8, 1)]
    if code == 0x2590:
        return [(0.5, 0, 1, 1)]
    if code == 0x2594:
        return [(0, 0, 1, 1 / 8)]
    if code == 0x2595:
        return [(7 / 8, 0, 1, 1)]
    quadrants = {
        0x2596: "L", 0x2597: "R", 0x2598: "u", 0x2599: "uLR", 0x259A: "uR", 0x259B: "urL",
        0x259C: "urR", 0x259D: "r", 0x259E: "rL", 0x259F: "rLR",
    }
    if code in quadrants:
        boxes = {"u": (0, 0, 0.5, 0.5), "r": (0.5, 0, 1, 0.5), "L": (0, 0.5, 0.5, 1), "R": (0.5, 0.5, 1, 1)}
        return [boxes[q] for q in quadrants[code]]
    return None


_SHADES = {"\u2591": 0.25, "\u2592": 0.5, "\u2593": 0.75}
#: Braille dot bits -> (column, row) of the 2x4 grid.
_BRAILLE = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (0, 3), (1, 3)]


def light_px() -> int:
    """A light line's width: about what a monospace font draws at this cell size, one pixel
    more so the thin strokes of the big digits read from a distance."""
    return max(1, round(CELL_H / 10))


def _bands(weight: int) -> list[tuple[int, int]]:
    """A line's strokes across its run, as pixel offsets (first, last) from the centre."""
    thin = light_px()
    if weight == 2:
        return [(-thin, thin)]
    if weight == 3:
        low = -(3 * thin) // 2
        return [(low, low + thin - 1), (low + 2 * thin, low + 3 * thin - 1)]
    return [(-(thin // 2), -(thin // 2) + thin - 1)]


def draw_cell_shape(draw: Any, char: str, x: int, y: int, fg: RGB, bg: RGB) -> bool:
    """Draw ``char`` at cell pixel (x, y) as geometry; False if it is not such a character."""
    if char in _SHADES:
        draw.rectangle((x, y, x + CELL_W - 1, y + CELL_H - 1), fill=blend(fg, bg, _SHADES[char]))
        return True
    parts = _fractions(char) if "\u2580" <= char <= "\u259f" else None
    if parts is not None:
        for x0, y0, x1, y1 in parts:
            left, top = x + round(x0 * CELL_W), y + round(y0 * CELL_H)
            right, bottom = x + round(x1 * CELL_W) - 1, y + round(y1 * CELL_H) - 1
            if right >= left and bottom >= top:
                draw.rectangle((left, top, right, bottom), fill=fg)
        return True
    if "\u2801" <= char <= "\u28ff":
        bits = ord(char) - 0x2800
        dot = max(2, CELL_W // 4)
        for bit, (column, row) in enumerate(_BRAILLE):
            if bits & (1 << bit):
                cx = x + round((column + 0.5) * CELL_W / 2)
                cy = y + round((row + 0.5) * CELL_H / 4)
                draw.rectangle((cx - dot // 2, cy - dot // 2, cx - dot // 2 + dot - 1, cy - dot // 2 + dot - 1), fill=fg)
        return True
    arms = box_arms(char)
    if arms is None:
        return False
    _draw_arms(draw, arms, x, y, fg)
    return True


def _draw_arms(draw: Any, arms: dict[str, int], x: int, y: int, fg: RGB) -> None:
    """Each arm from the cell's edge to the far side of the lines it meets at the centre, so a
    corner is closed, a tee has no notch and nothing sticks out; a lone half line ends at the
    centre."""
    cx, cy = x + CELL_W // 2, y + CELL_H // 2

    def extent(directions: tuple[str, ...]) -> tuple[int, int]:
        offsets = [o for d in directions if d in arms for band in _bands(arms[d]) for o in band]
        return (min(offsets), max(offsets)) if offsets else (0, 0)

    across_v, across_h = extent(("up", "down")), extent(("left", "right"))
    for direction, weight in arms.items():
        for low, high in _bands(weight):
            if direction == "left":
                draw.rectangle((x, cy + low, cx + across_v[1], cy + high), fill=fg)
            elif direction == "right":
                draw.rectangle((cx + across_v[0], cy + low, x + CELL_W - 1, cy + high), fill=fg)
            elif direction == "up":
                draw.rectangle((cx + low, y, cx + high, cy + across_h[1]), fill=fg)
            else:
                draw.rectangle((cx + low, cy + across_h[0], cx + high, y + CELL_H - 1), fill=fg)


# -- the picture -------------------------------------------------------------------------------
@lru_cache(maxsize=2)
def _font(bold: bool) -> Any:
    from PIL import ImageFont

    for folder in FONT_DIRS:
        path = Path(folder) / FONT_FILES[bold]
        if path.is_file():
            return ImageFont.truetype(str(path), FONT_PX)
    if bold:
        return _font(False)
    return ImageFont.load_default(FONT_PX)


def render_png(lines: Sequence[Iterable[Segment]], width: int, theme: TerminalTheme | None = None) -> bytes:
    """The cells as a PNG: CELL_W x CELL_H pixels each, PAD around them."""
    from PIL import Image, ImageDraw
    from rich.cells import cell_len

    theme = theme or _default_theme()
    rows = [list(line) for line in lines]
    # The border in the screen's own background (its first cell's), not a dark frame around a
    # light theme.
    first = next((segment for row in rows for segment in row if segment.text), None)
    border = cell_colours(first.style, theme)[1] if first is not None else tuple(theme.background_color)
    image = Image.new("RGB", (width * CELL_W + 2 * PAD, len(rows) * CELL_H + 2 * PAD), border)
    draw = ImageDraw.Draw(image)
    ascent, descent = _font(False).getmetrics()
    baseline = (CELL_H - (ascent + descent)) // 2 + ascent
    for row, line in enumerate(rows):
        y = PAD + row * CELL_H
        column = 0
        for text, style, _control in line:
            fg, bg = cell_colours(style, theme)
            span = cell_len(text)
            if span == 0:
                continue
            x0 = PAD + column * CELL_W
            draw.rectangle((x0, y, x0 + span * CELL_W - 1, y + CELL_H - 1), fill=bg)
            bold = bool(style is not None and style.bold)
            for char in text:
                x = PAD + column * CELL_W
                cells = cell_len(char)
                if not char.isspace() and not draw_cell_shape(draw, char, x, y, fg, bg):
                    draw.text(
                        (x + cells * CELL_W / 2, y + baseline), char, fill=fg,
                        font=_font(bold), anchor="ms",
                    )
                if style is not None and style.underline:
                    draw.line((x, y + CELL_H - 2, x + cells * CELL_W - 1, y + CELL_H - 2), fill=fg)
                column += cells
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()
