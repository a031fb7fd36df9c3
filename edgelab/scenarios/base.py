"""The one interface every scenario implements: burst, ramp, steady, and any registered later.

A scenario decides *what* to launch and when (a burst's turn-taking, a ramp's chunks, a steady
rate); the lab's run (``edgelab.lab._Run``) does the bookkeeping every scenario shares: it
prepares the runtimes, times and records each launch, gives a failing runtime up, releases what
was held and builds the result. So a new scenario is one module and one ``register_scenario``
entry, and neither the lab nor a front end grows an ``if`` for it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from edgelab.lab import Settings, _Run


class Scenario(ABC):
    """One way of driving the chosen runtimes through a run."""

    #: The name ``--scenario`` and ``Settings.scenario`` take.
    name: ClassVar[str]
    #: One line for help texts and choice lists.
    summary: ClassVar[str]
    #: The ``Settings`` fields this scenario reads beyond those every run reads (workload,
    #: runtimes, warmup, request, timeout): front ends show these controls for it.
    reads: ClassVar[tuple[str, ...]] = ()

    def validate(self, settings: Settings) -> None:
        """Raise ``UsageError`` (one line) for settings this scenario cannot run; the lab calls
        it from ``Settings.validate`` before anything is prepared. Nothing to check: None."""
        return None

    @abstractmethod
    def run(self, run: _Run) -> None:
        """Drive the run's active runtimes (``run.active()``) through ``run``'s primitives
        (``launch_once``, ``cold_start_batch``, ``launch_resident``); return when done or
        when ``run.cancel`` is set. Whatever is left resident the run releases afterwards."""
