"""The ? screen: every key, and what every number on the panels means."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

# Plain Rich markup in one Static: opens in a frame, where a Markdown widget took most of a second.
HELP = """\
[b]edgelab: keys and numbers[/b]

  [b]r[/b]            run the scenario, or stop the one running
  [b]ctrl+c[/b]       cancel the running scenario (the lab stays open)
  [b]s[/b]            save an SVG screenshot into the screenshot folder
  [b]e[/b]            export the last results as JSON, CSV and Markdown
  [b]c[/b]            clear the panels
  [b]t[/b]            switch between dark and light themes
  [b]?[/b]            this help (escape closes it)
  [b]q[/b], [b]ctrl+q[/b]    quit: stops the scenario and removes every container and process

[b]Scenarios[/b]
- [b]burst[/b]: N cold starts per runtime, the runtimes interleaved (round-robin) so drift
  favours none; one warmup each, not counted.
- [b]ramp[/b]: bring N instances per runtime up and hold them until you stop (r or ctrl+c);
  then they are stopped and the memory per instance is reported.
- [b]steady[/b]: R requests per second for T seconds, each on a fresh instance.

[b]The numbers[/b]
- [b]p50 / p99[/b]: median and 99th percentile of the startup time: from the launch call to
  the first byte of the first response (a cold start). [i]includes[/i] says what that spans for
  each runtime. Warmups are excluded; failed launches are counted apart.
- [b]phases p50[/b]: the median of each part of the startup (e.g. create, start, first response).
- [b]sparkline[/b]: the most recent startups, taller is slower.
- [b]per instance[/b]: growth of host memory divided by the instances held, by the metric
  named beside it (PSS: shared pages split between the processes sharing them).
  [i]so far[/i] marks a live figure during a ramp; the settled one comes when it stops.
- [b]instances per GiB[/b]: 1 GiB divided by the memory per instance.
- [b]running / launched / failed[/b]: instances resident now, launches so far, launches failed.
- [b]starts/s[/b]: launches begun in the last two seconds, per second; after a steady run, the
  rate achieved over the run.
- [b]lab CPU[/b]: the lab's own process, sampled every second (the Wasm host and containers
  are other processes). [b]first paint[/b]: from process start to the first frame.

- [b]⚠[/b]: a warning about the figures above it. [i]high spread[/i] (stdev over 10% of the mean):
  other load on this machine; close other programs, raise N and read p50 rather than the mean.
  [i]only n samples[/i]: percentiles are rough; raise N to 30 or more.

The comparison line is made only from figures measured in this run.
"""


class HelpScreen(Screen[None]):
    """A screen of its own, not a modal: a modal draws the dimmed lab under it on every
    frame, which cost tens of milliseconds per key on a busy lab."""

    BINDINGS = [
        Binding("escape,q,question_mark", "dismiss", "close help"),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body"):
            yield Static(HELP)

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
