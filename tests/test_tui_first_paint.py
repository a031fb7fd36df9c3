"""First paint: the work the lab skips before its first frame loses nothing.

The lab's screen (``edgelab.tui.app.LabScreen``) does not restyle the whole tree on its first
resume and does not lay out again a size it has laid out; these tests show that doing that
work anyway changes no widget's styles and nothing on the screen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from textual.geometry import Size

from edgelab.tui.app import EdgelabApp, LabScreen
from tests.test_tui_pilot import FakeLab


def _at_first_paint(app: EdgelabApp, observe: Callable[[], None]) -> None:
    """Call ``observe`` as the first-paint frame is noted, before the app's own handling."""
    original = app._first_painted

    def first_painted() -> None:
        observe()
        original()

    app._first_painted = first_painted  # type: ignore[method-assign]


async def _painted_and_loaded(app: EdgelabApp) -> None:
    """Until the first frame is painted and the workload list is in."""
    while app.first_paint_s is None or not app.catalog_loaded:
        await asyncio.sleep(0.01)


def _styles(app: EdgelabApp) -> dict[str, str]:
    """Every node's combined CSS (its stylesheet rules and inline styles), by its place in the tree."""
    found: dict[str, str] = {}
    for index, node in enumerate(app.screen.walk_children(with_self=True)):
        found[f"{index}:{type(node).__name__}#{node.id}"] = node.styles.css
    return found


@pytest.mark.parametrize("size", [(160, 45), (120, 36), (80, 24)])
def test_the_restyle_skipped_on_the_first_resume_changes_nothing(size: tuple[int, int]) -> None:
    async def run() -> tuple[dict[str, str], dict[str, str], str, str]:
        app = EdgelabApp(lab=FakeLab(), deterministic=True)
        async with app.run_test(size=size) as pilot:
            await _painted_and_loaded(app)
            await app.workers.wait_for_complete()  # the list and its sizes are in
            await pilot.pause()
            await pilot.pause()
            assert isinstance(app.screen, LabScreen)
            before, shown = _styles(app), app.export_screenshot()
            app.screen.update_node_styles(animate=False)  # what Textual's resume would do
            await pilot.pause()
            return before, _styles(app), shown, app.export_screenshot()

    before, after, shown_before, shown_after = asyncio.run(run())
    changed = [key for key in before if before[key] != after.get(key)]
    assert not changed, changed
    assert shown_before == shown_after


def test_a_size_already_laid_out_is_not_laid_out_again_and_a_new_one_is() -> None:
    layouts: list[object] = []

    async def run() -> tuple[int, int, tuple[int, int]]:
        app = EdgelabApp(lab=FakeLab(), deterministic=True)
        async with app.run_test(size=(120, 36)) as pilot:
            while app.first_paint_s is None:
                await asyncio.sleep(0.01)
            await pilot.pause()
            screen = app.screen
            original = screen._refresh_layout

            def counted(size: Size | None = None, scroll: bool = False) -> None:
                layouts.append(size)
                original(size, scroll)

            screen._refresh_layout = counted  # type: ignore[method-assign]
            screen._screen_resized(screen.outer_size)  # the terminal says its size again
            same = len(layouts)
            await pilot.resize_terminal(100, 30)
            await pilot.pause()
            return same, len(layouts), tuple(screen.outer_size)  # type: ignore[return-value]

    same, after_resize, size = asyncio.run(run())
    assert same == 0
    assert after_resize >= 1 and size == (100, 30)


#: A panel's blocks in screen order, as it composed all of them before blocks moved after
#: the first frame: mounted later, each must land in its own place.
PANEL_ORDER = [
    "state-line", "section", "big-figures", "n-line", "startup-line", "startup-histogram",
    "startup-phases", "startup-notes", "startup-notes-short", "startup-warnings", "section",
    "memory-lines", "memory-lines-short", "memory-warnings", "memory-curve", "section",
    "instance-lines", "traffic-lines",
]


def test_the_blocks_an_idle_panel_hides_come_after_the_first_frame_each_in_its_place() -> None:
    async def run() -> tuple[dict[str, int], dict[str, list[str]]]:
        app = EdgelabApp(lab=FakeLab(), deterministic=True)
        at_first_paint: dict[str, int] = {}
        _at_first_paint(app, lambda: at_first_paint.update({name: len(p.children) for name, p in app.panels.items()}))
        async with app.run_test(size=(160, 45)) as pilot:
            await _painted_and_loaded(app)
            await pilot.pause()
            order = {
                name: [next(c for c in PANEL_ORDER if c in child.classes) for child in panel.children]
                for name, panel in app.panels.items()
            }
        return at_first_paint, order

    at_first_paint, order = asyncio.run(run())
    assert set(at_first_paint.values()) == {9}
    assert all(found == PANEL_ORDER for found in order.values()), order


#: The options in tree order, as they were composed before steady's and traffic's rows moved
#: after the first frame: (type, id or classes).
OPTIONS_ORDER = [
    ("Horizontal", "option-row"), ("Label", "option-label"), ("Checkbox", "use-container"),
    ("Checkbox", "use-subprocess"), ("Checkbox", "use-wasm"), ("Horizontal", "option-row"),
    ("Label", "option-label"), ("RadioSet", "scenario"), ("RadioButton", "scenario-burst"),
    ("RadioButton", "scenario-ramp"), ("RadioButton", "scenario-steady"), ("RadioButton", "scenario-traffic"),
    ("Horizontal", "option-row"), ("Label", "count-label"), ("FieldInput", "count"), ("Label", "count-hint"),
    ("Label", "for-steady option-label"), ("FieldInput", "rate"), ("Label", "for-steady option-label"),
    ("FieldInput", "duration"), ("Horizontal", "for-traffic option-row"), ("Label", "option-label"),
    ("FieldInput", "pattern"), ("Label", "option-label"), ("FieldInput", "keepalive"), ("Label", "option-label"),
    ("FieldInput", "prewarm"), ("Horizontal", "for-trace option-row"), ("Label", "option-label"),
    ("FieldInput", "trace-file"), ("Horizontal", "option-row"), ("Label", "option-label"),
    ("FieldInput", "request"), ("Label", "option-label"), ("FieldInput", "request-file"),
]


def test_steady_and_traffic_inputs_come_after_the_first_frame_in_their_place_or_when_read() -> None:
    from textual.widgets import Input

    from edgelab.tui.controls import Controls

    def options(app: EdgelabApp) -> list[tuple[str, str]]:
        return [
            (type(n).__name__, n.id or " ".join(sorted(n.classes)))
            for n in app.query_one("#options").walk_children()
        ]

    async def run() -> tuple[bool, list[tuple[str, str]], bool]:
        app = EdgelabApp(lab=FakeLab(), deterministic=True)
        seen: list[bool] = []
        _at_first_paint(app, lambda: seen.append(bool(app.query("#rate"))))
        async with app.run_test(size=(160, 45)) as pilot:
            await _painted_and_loaded(app)
            await pilot.pause()
            after = options(app)
        # Steady chosen at once, whether or not they are mounted yet: its inputs are shown.
        early = EdgelabApp(lab=FakeLab(), deterministic=True)
        async with early.run_test(size=(160, 45)) as pilot:
            early.query_one(Controls).set_scenario("steady")
            await pilot.pause()
            rate = early.query_one("#rate", Input)
            shown = rate.display and rate.value == "10"
        return seen[0], after, shown

    at_first_paint, after, rate = asyncio.run(run())
    assert not at_first_paint
    assert after == OPTIONS_ORDER
    assert rate


def test_the_collector_is_off_until_the_lab_settles_and_on_again_whatever_happens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """edgelab's TUI runs with the collector off until EdgelabApp._settle_heap (one full
    collection, the heap frozen, the lab's thresholds); it is on again when the lab returns
    or fails."""
    import gc

    import edgelab.tui.app
    from edgelab.cli import _run_tui, build_parser
    from edgelab.errors import UsageError

    seen: list[bool] = []

    def run_app(**kwargs: object) -> int:
        seen.append(gc.isenabled())
        return 0

    monkeypatch.setattr(edgelab.tui.app, "run_app", run_app)
    assert gc.isenabled()
    assert _run_tui(build_parser().parse_args([])) == 0
    assert seen == [False] and gc.isenabled()
    with pytest.raises(UsageError):
        _run_tui(build_parser().parse_args(["--runtimes", "no-such-rung"]))
    assert gc.isenabled()

    async def settle() -> bool:
        app = EdgelabApp(lab=FakeLab(), deterministic=True)
        async with app.run_test(size=(80, 24)):
            gc.disable()
            app._settle_heap()
            return gc.isenabled()

    try:
        assert asyncio.run(settle())
    finally:
        gc.enable()
        gc.unfreeze()
