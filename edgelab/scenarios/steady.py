"""Steady traffic: the asked rate per runtime for a fixed wall-clock duration.

No launch starts after the deadline (one in flight ends within its timeout). Runtimes run side
by side, each in a thread of its own, one launch at a time: a runtime slower than the rate
launches back to back, with no burst to catch up, and its achieved rate (and a warning) says
how far it fell short.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from edgelab import settings as limits
from edgelab.errors import UsageError
from edgelab.scenarios.base import Scenario

if TYPE_CHECKING:
    from edgelab.lab import Settings, _Run


class SteadyScenario(Scenario):
    name = "steady"
    summary = "--rate launches per second per runtime for --duration seconds"
    reads = ("rate_per_s", "duration_s")

    def validate(self, settings: Settings) -> None:
        limits.check(settings.rate_per_s, "--rate", limits.RATE_PER_S)
        limits.check(settings.duration_s, "--duration", limits.DURATION_S)
        launches = settings.rate_per_s * settings.duration_s
        if launches > limits.STEADY_LAUNCHES_MAX:
            raise UsageError(
                f"--rate {settings.rate_per_s:g} for --duration {settings.duration_s:g} s is {launches:,.0f} "
                f"launches per runtime; at most {limits.STEADY_LAUNCHES_MAX:,} are kept"
            )

    def run(self, run: _Run) -> None:
        from edgelab.events import RuntimeStatus

        interval = 1.0 / run.settings.rate_per_s
        started = time.monotonic()
        deadline = started + run.settings.duration_s

        def drive(name: str) -> None:
            result = run.results[name]
            launches = 0
            due = started
            while name in run.runtimes and not run.cancel.is_set():
                now = time.monotonic()
                if now >= deadline:
                    break
                if due > now:
                    run.cancel.wait(min(due, deadline) - now)
                    continue
                run.launch_once(name, launches, False, keep=False)
                launches += 1
                due = max(due + interval, time.monotonic())
            window = min(time.monotonic(), deadline) - started
            result.rate_achieved_per_s = launches / window if window > 0 else 0.0

        for name in run.active():
            result = run.results[name]
            result.clock_origin = started
            result.rate_asked_per_s = run.settings.rate_per_s
        threads = [threading.Thread(target=drive, args=(n,), name=f"steady-{n}") for n in run.active()]
        for name in run.active():
            run.emit(RuntimeStatus(name, "running"))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
