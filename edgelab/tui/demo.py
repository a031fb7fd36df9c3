"""The demo's driver: the lab itself, playing a checked script (``edgelab.demo``) step by step.

``DemoApp`` is the lab (``EdgelabApp``) with a caption banner on top and a driver that starts
each step with the lab's own entry points: a run through ``start_scenario`` (the same worker,
panels and teardown as r), a view by pushing the same screen L, w or K opens. So stopping
is the lab's own too: q goes through ``shutdown`` (cancel, bounded wait, ``lab.close``), and
SIGTERM through the CLI's interrupt, which cancels every run and closes the lab in
``run_demo``'s ``finally``. The driver never starts a step once stopping has begun.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any, ClassVar, cast

from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Select, Static

from edgelab.demo import Script, Step
from edgelab.errors import EdgelabError
from edgelab.tui.app import EdgelabApp

#: How often the driver looks at the lab's state (and the countdown is redrawn).
TICK_S = 0.1


class DemoCaption(Static):
    """The step's caption in a full-width inverse banner (black on white or white on black:
    the highest contrast a theme has), bold, with the step number and what moves on below.
    Not docked: a second widget docked at the top lies over the host bar instead of below it."""

    DEFAULT_CSS = """
    DemoCaption {
        height: 3;
        padding: 0 1;
        background: $foreground;
        color: $background;
        text-style: bold;
        content-align: center middle;
        text-align: center;
    }
    /* Below 30 rows every row goes to the panels (the lab hides its host line there too). */
    Screen.-short DemoCaption { height: 2; }
    """


class DemoApp(EdgelabApp):
    """The lab playing a script; space or → moves on, q (or ctrl+q) stops and quits."""

    BINDINGS: ClassVar[list[BindingType]] = [
        # Priority: on the what-if screen a field would take the space and the arrow.
        Binding("space", "advance", "next", priority=True),
        Binding("right", "advance", "next", show=False, priority=True),
        Binding("q", "quit", "quit", priority=True),
        # In a demo ctrl+c stops everything and quits (in the lab it cancels the run only).
        Binding("ctrl+c", "quit", "quit", show=False, priority=True),
    ]

    def __init__(self, script: Script, loop: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("runtimes", script.rungs)
        super().__init__(**kwargs)
        self.script = script
        self.loop = loop
        self.step: Step | None = None
        #: Steps played to their end, by number (a test reads the order and the wrap).
        self.played: list[int] = []
        #: The captions shown, in order.
        self.shown_captions: list[str] = []
        self.loops = 0
        self.finished = False
        self.stopping = False
        self.remaining_s: float | None = None
        self._advance = asyncio.Event()
        self._captions: list[DemoCaption] = []
        #: The newest burst or traffic result: what the what-if step is fed (a ramp's has no
        #: cold starts to speak of).
        self._timed_result: Any = None

    def compose(self) -> Any:
        caption = DemoCaption("", id="demo-caption")
        self._captions.append(caption)
        yield caption
        yield from super().compose()

    def on_mount(self) -> None:
        super().on_mount()
        self.run_worker(self.play(), group="demo", exclusive=True, exit_on_error=False)

    # -- keys --------------------------------------------------------------------------------------
    def action_advance(self) -> None:
        self._key_handled("space")
        self._advance.set()

    async def shutdown(self) -> None:
        """Stop the driver first, so that no next step starts while the lab tears down."""
        self.stopping = True
        self._advance.set()
        await super().shutdown()

    def on_unmount(self) -> None:
        self.stopping = True
        super().on_unmount()

    # -- the caption -------------------------------------------------------------------------------
    def show_caption(self) -> None:
        step = self.step
        if step is None:
            return
        total = len(self.script.steps)
        if self.finished:
            below = "end of the demo · q quits"
        elif step.advance_s is None:
            below = f"step {step.index}/{total} · space / → next · q quits"
        elif self.remaining_s is None:
            below = f"step {step.index}/{total} · {step.kind} under way · space / → next · q quits"
        else:
            below = f"step {step.index}/{total} · next in {math.ceil(self.remaining_s)} s · space / → next · q quits"
        if self.loop and not self.finished:
            below += f" · loop {self.loops + 1}"
        if self.script.title:
            below = f"{self.script.title} · {below}"
        text = f"{step.caption}\n[not bold]{below}[/]"
        for caption in self._captions:
            if caption.is_attached:
                caption.update(text)

    # -- the driver --------------------------------------------------------------------------------
    async def _until(self, condition: Callable[[], bool]) -> bool:
        """Wait for ``condition``; False if the demo is stopping or a key moved on first."""
        while not condition():
            if self.stopping or self._advance.is_set():
                return False
            await asyncio.sleep(TICK_S)
        return not self.stopping

    async def play(self) -> None:
        while not self.catalog_loaded:
            if self.stopping:
                return
            await asyncio.sleep(TICK_S)
        index = 0
        steps = self.script.steps
        while not self.stopping:
            await self.play_step(steps[index])
            if self.stopping:
                return
            self.played.append(steps[index].index)
            index += 1
            if index == len(steps):
                if not self.loop:
                    break
                index = 0
                self.loops += 1
        self.finished = True
        self.show_caption()

    async def play_step(self, step: Step) -> None:
        self.step = step
        self._advance.clear()
        self.remaining_s = None
        self.shown_captions.append(step.caption)
        self.show_caption()
        pushed: Screen[Any] | None = None
        if step.settings is not None:
            try:
                # A saved function runs on the rungs that take it, as r runs it; the others'
                # panels say why not.
                settings, left_out = self._applicable(step.settings)
            except EdgelabError as exc:
                self.report_error(f"step {step.index}: {exc}")
                settings, left_out = None, {}
            if settings is not None:
                self.start_scenario(settings, left_out)
            if step.kind == "ladder":
                pushed = await self._open(step)  # over the burst just started: its rows fill in live
            ramp = step.kind == "ramp"
            await self._until(lambda: not self.running or (ramp and self.state.held))
            if step.kind != "ramp" and not self.running:
                self._timed_result = self.state.result
            if pushed is not None:
                cast(Any, pushed).redraw()  # the run's last figures, before the timer starts
        else:
            pushed = await self._open(step)
        if not self.stopping and not self._advance.is_set():
            await self._wait_to_advance(step)
        await self._end_step(pushed)

    async def _open(self, step: Step) -> Screen[Any]:
        """The view the step shows, as L, w and K open it, with the caption banner on top."""
        screen: Screen[Any]
        if step.kind == "ladder":
            from edgelab.tui.ladder import LadderScreen

            screen = LadderScreen(self.state)
        elif step.kind == "whatif":
            from edgelab.tui.whatif import WhatIfScreen

            measured = self._lab is not None and not self._lab.fake
            screen = WhatIfScreen(self.whatif_api, session_result=self._timed_result if measured else None)
        else:
            from edgelab.tui.claims import ClaimsScreen

            screen = ClaimsScreen(self.claims_loader)
        await self.push_screen(screen)
        caption = DemoCaption("", classes="demo-caption")
        self._captions.append(caption)
        await screen.mount(caption, before=0)
        self.show_caption()
        if step.kind == "whatif" and step.preset is not None:
            whatif: Any = screen
            if await self._until(lambda: bool(whatif.presets)):
                whatif.query_one("#whatif-preset", Select).value = step.preset
        return screen

    async def _wait_to_advance(self, step: Step) -> None:
        if step.advance_s is None:
            self.show_caption()
            await self._until(lambda: False)
            return
        deadline = time.monotonic() + step.advance_s
        while not self.stopping and not self._advance.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if self.remaining_s is None or math.ceil(left) != math.ceil(self.remaining_s):
                self.remaining_s = left
                self.show_caption()
            self.remaining_s = left
            await asyncio.sleep(min(TICK_S, left))
        self.remaining_s = None

    async def _end_step(self, pushed: Screen[Any] | None) -> None:
        """A run still going (a held ramp, or a burst a key moved on from) is stopped the way
        r stops it, and the driver waits for its teardown; a view closes."""
        if self.running:
            self.stop_scenario("stopping")
            while self.running:
                await asyncio.sleep(TICK_S)
        if pushed is not None and not self.stopping:  # quitting: the app closes every screen
            del self._captions[1:]  # the view's banner goes with it; the lab's stays
            if pushed.is_current:
                await self.pop_screen()
        self._advance.clear()


def run_demo(script: Script, loop: bool = False, started_at: float | None = None) -> int:
    """Play ``script`` in the lab; whatever happens, every container and process it started
    is removed (the lab's close, as ``run_app``)."""
    app = DemoApp(script, loop=loop, started_at=started_at)
    try:
        code = app.run()
    finally:
        app.lab.close()
    return int(code or 0)
