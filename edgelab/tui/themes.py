"""The lab's two themes, dark and light, with every text colour at WCAG contrast 4.5:1 or more.

Textual's built-in light theme put orange titles on light grey at 1.5:1 and grey labels at
1.8:1: unreadable on a projector, where light is what one uses. Every colour the lab's CSS
(app.tcss) names is set here, in one place, so ``tests/test_theme_contrast.py`` can compute
each pair's contrast with WCAG's relative-luminance formula and fail below 4.5:1.
"""

from __future__ import annotations

from rich.terminal_theme import TerminalTheme
from textual.color import Color
from textual.theme import Theme

#: WCAG 2.x, success criterion 1.4.3 (AA): normal text.
TEXT_CONTRAST = 4.5
#: The same criterion for large text (18 pt, or 14 pt bold). Only the big p50/p99 digits
#: (textual's Digits, three cells tall) use it: they are large bold glyphs, not body text.
LARGE_TEXT_CONTRAST = 3.0

DARK = Theme(
    name="edgelab-dark",
    primary="#5EA8FF",
    secondary="#8FB8FF",
    accent="#FFB454",
    warning="#FFC857",
    error="#FF7A8A",
    success="#6FDC8C",
    foreground="#F2F2F2",
    background="#101010",
    surface="#181818",
    panel="#262626",
    dark=True,
    variables={
        "text-muted": "#BDBDBD",
        "text-accent": "#FFB454",
        "text-warning": "#FFC857",
        "text-error": "#FF8C9A",
        "text-success": "#6FDC8C",
        # A panel toggled off: dimmer than the rest, still readable (WCAG exempts inactive
        # controls; the lab keeps it at 4.5:1 anyway, a projector washes it out further).
        "text-disabled": "#9A9A9A",
        "footer-key-foreground": "#FFB454",
        "block-cursor-foreground": "#101010",
        "block-cursor-background": "#5EA8FF",
        "block-cursor-blurred-foreground": "#F2F2F2",
        "block-cursor-blurred-background": "#2F3F55",
        "input-cursor-foreground": "#101010",
        "input-cursor-background": "#F2F2F2",
        "input-selection-background": "#2F3F55",
        "scrollbar": "#7A7A7A",
        "scrollbar-background": "#181818",
    },
)

LIGHT = Theme(
    name="edgelab-light",
    primary="#0B4F8A",
    secondary="#1F5FA8",
    accent="#8A4500",
    warning="#7A4A00",
    error="#A1122C",
    success="#1B6A30",
    foreground="#111111",
    background="#FFFFFF",
    surface="#F7F7F7",
    panel="#E9E9E9",
    dark=False,
    variables={
        "text-muted": "#474747",
        "text-accent": "#8A4500",
        "text-warning": "#7A4A00",
        "text-error": "#A1122C",
        "text-success": "#1B6A30",
        "text-disabled": "#5E5E5E",
        "footer-key-foreground": "#8A4500",
        "block-cursor-foreground": "#FFFFFF",
        "block-cursor-background": "#0B4F8A",
        "block-cursor-blurred-foreground": "#111111",
        "block-cursor-blurred-background": "#CFE0F2",
        "input-cursor-foreground": "#FFFFFF",
        "input-cursor-background": "#111111",
        "input-selection-background": "#CFE0F2",
        "scrollbar": "#8A8A8A",
        "scrollbar-background": "#EFEFEF",
    },
)

THEMES = {"dark": DARK, "light": LIGHT}

#: The eight terminal colours' names, in ANSI order (what Rich markup like "yellow" means).
ANSI_NAMES = ("black", "red", "green", "yellow", "blue", "magenta", "cyan", "white")

#: What Rich's named colours ("yellow", "green", "dim cyan") draw as in each theme. Screens
#: colour verdicts and statuses by name; Textual maps a name through the app's ANSI theme,
#: and its default light one drew "not comparable" in yellow at 2.6:1 on the light surface.
#: "white" and "black" are the text colour of the theme (white on white would vanish).
ANSI_DARK = TerminalTheme(
    (16, 16, 16),
    (242, 242, 242),
    [(242, 242, 242), (255, 122, 138), (111, 220, 140), (255, 200, 87),
     (94, 168, 255), (230, 140, 255), (90, 210, 230), (242, 242, 242)],
    [(189, 189, 189), (255, 150, 162), (140, 235, 165), (255, 215, 120),
     (140, 190, 255), (240, 170, 255), (130, 225, 240), (255, 255, 255)],
)
ANSI_LIGHT = TerminalTheme(
    (255, 255, 255),
    (17, 17, 17),
    [(17, 17, 17), (161, 18, 44), (27, 106, 48), (122, 74, 0),
     (11, 79, 138), (123, 31, 138), (0, 95, 115), (17, 17, 17)],
    [(71, 71, 71), (140, 10, 35), (20, 90, 40), (100, 60, 0),
     (10, 65, 115), (100, 25, 115), (0, 80, 98), (17, 17, 17)],
)
ANSI = {DARK.name: ANSI_DARK, LIGHT.name: ANSI_LIGHT}

#: Every text colour app.tcss (or the key bar's markup) uses, over each background it is
#: drawn on: (text variable, background variable, where). The test checks each pair in
#: both themes and that app.tcss names no text colour missing from this list.
TEXT_PAIRS: tuple[tuple[str, str, str], ...] = (
    ("foreground", "background", "body text"),
    ("foreground", "surface", "help screen"),
    ("foreground", "panel", "top line, status, key bar"),
    ("accent", "panel", "brand, key names in the key bar"),
    ("accent", "background", "panel titles"),
    ("text-muted", "panel", "lab cost"),
    ("text-muted", "background", "labels, hints, panel subtitles, run line"),
    ("text-accent", "background", "section labels"),
    ("text-warning", "background", "warnings"),
    ("text-error", "background", "unavailable runtimes"),
    ("text-success", "boost", "comparison strip"),
    ("text-disabled", "background", "a runtime toggled off"),
    ("block-cursor-foreground", "block-cursor-background", "the workload list's cursor row"),
    ("block-cursor-blurred-foreground", "block-cursor-blurred-background", "the cursor row, list not focused"),
    ("input-cursor-foreground", "input-cursor-background", "the character under an input's cursor"),
    ("foreground", "input-selection-background", "selected text in an input"),
)


def ansi_colors(theme: Theme) -> dict[str, Color]:
    """Every named terminal colour (normal and bright_) as ``theme`` draws it."""
    terminal = ANSI[theme.name]
    found: dict[str, Color] = {}
    for index, name in enumerate(ANSI_NAMES):
        found[name] = Color(*terminal.ansi_colors[index])
        found[f"bright_{name}"] = Color(*terminal.ansi_colors[index + 8])
    return found


def variables(theme: Theme) -> dict[str, str]:
    """The CSS variables Textual derives from ``theme`` (what ``$name`` means in app.tcss)."""
    return theme.to_color_system().generate()


def resolve(value: str, over: Color) -> Color:
    """A variable's colour as drawn over ``over``: 'auto 87%' is Textual's contrasting text
    at that alpha, and any alpha is blended onto the background (what the eye sees)."""
    if value.startswith("auto"):
        alpha = float(value.split()[1].rstrip("%")) / 100 if " " in value else 1.0
        color = over.get_contrast_text(alpha)
    else:
        color = Color.parse(value)
    return over + color if color.a < 1 else color


def luminance(color: Color) -> float:
    """WCAG 2.x relative luminance of an opaque sRGB colour."""

    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    return 0.2126 * channel(color.r) + 0.7152 * channel(color.g) + 0.0722 * channel(color.b)


def contrast(a: Color, b: Color) -> float:
    """WCAG contrast ratio, 1 (same) to 21 (black on white)."""
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def pair_contrast(theme: Theme, text: str, background: str) -> float:
    """The contrast of variable ``text`` drawn over variable ``background`` in ``theme``
    (a translucent background is first laid over the theme's own background)."""
    found = variables(theme)
    base = Color.parse(found["background"])
    ground = resolve(found[background], base)
    return contrast(resolve(found[text], ground), ground)
