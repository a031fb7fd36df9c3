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

These work whatever has focus: a text field takes only the characters its value can
hold (digits; in a ramp's N also = , and a runtime's letter or name where one can stand,
as in c=20 or wasm=2000) and passes every other key on: r after a count or letter runs.

  [b]r[/b]            run the scenario, or stop the one running (a held ramp: completes it)
  [b]enter[/b]        in N, rate or duration: run (it never stops a run)
  [b]ctrl+c[/b]       cancel the running scenario (the lab stays open)
  [b]s[/b]            save the screen as SVG and PNG into the screenshot folder (--screenshots)
  [b]e[/b]            export the last results as JSON, CSV and Markdown into the exports
               folder (--exports; default ./edgelab-exports); a held ramp: as it holds
  [b]c[/b]            clear the panels
  [b]i[/b]            switch how the next mixed burst interleaves: block (default) or launch
  [b]t[/b]            switch between dark and light themes
  [b]L[/b]            the ladder view: every selected rung on one log-scale axis
  [b]w[/b]            what-if: the simulator over hours of traffic, fed by the newest saved
               run; [i]every figure on it is simulated[/i] (escape goes back)
  [b]K[/b]            claims: each published claim beside what this machine measured
  [b]g[/b]            chart: every runtime on one log-scale axis, histograms, memory curves
  [b]p[/b]            presentation: each p50 in large digits and one big ratio
  [b]o[/b]            show or hide the options (a run on a small screen folds them away)
  [b]?[/b]            this help (escape, q or ? closes it)
  [b]q[/b], [b]ctrl+q[/b]    quit: stops the scenario and removes every container and process

[b]Moving around[/b]
  [b]tab[/b], [b]shift+tab[/b]   next, previous control or panel: workload list, runtimes, scenario,
                   N (or rate and duration), then the three runtime panels
  [b]][/b], [b]\\[[/b]             next, previous runtime panel, from anywhere, scrolled into view
  [b]← →[/b], [b]h l[/b]         on a panel: the panel beside it
  [b]↑ ↓[/b], [b]j k[/b]         on a panel: scroll the lab a line
  [b]home[/b], [b]end[/b]        on a panel: the top, the bottom of the lab
  [b]pgup[/b], [b]pgdn[/b]       scroll the lab a page (in the workload list: move a page)
  [b]↑ ↓[/b]              in the workload list: pick the workload to run
  [b]space[/b], [b]enter[/b]     on a runtime: toggle it; on a scenario: pick it
  [b]← →[/b]              in the scenario row: the scenario beside it
  [b]mouse[/b]            click anything; the wheel scrolls

[b]N[/b]: a burst's cold starts per runtime; a ramp's resident instances, one number for every
  runtime or one each by first letter or name: [b]c=20,s=50,w=2000[/b] (container,
  subprocess, wasm); a runtime left out holds none. As edgelab run --resident.

[b]Scenarios[/b]
- [b]burst[/b]: N cold starts per runtime, the runtimes interleaved so drift favours none;
  one warmup each, not counted. [i]interleave: block[/i] (the default): each runtime takes its
  turn in a short block of launches, so none starts in the wake of another's work;
  [i]launch by launch[/i] (i switches): one launch each in turn, which makes a Wasm cold start
  pay for the caches a container start just used. The line above the panels says which.
- [b]ramp[/b]: bring N instances per runtime up and hold them until you stop (r or ctrl+c);
  then they are stopped and the memory per instance is reported.
- [b]steady[/b]: R requests per second for T seconds, each on a fresh instance.
- [b]traffic[/b]: requests at a rate (pattern poisson, onoff, or a trace file of arrival
  times), each served warm by an idle instance or cold by a new one; an instance idle
  longer than the keep-alive is stopped (scale to zero); pre-warm keeps K ready. Its
  panels add requests, cold %, latency p50/p99 (arrival to first byte) and instances.
- [b]request[/b] (any scenario): typed text, or a file's path; empty: the workload's own
  default. Limited to the workload's max_request_bytes.

[b]The numbers[/b]
- [b]p50 / p99[/b]: median and 99th percentile of the startup time: from the launch call to
  the first byte of the first response (a cold start). [i]includes[/i] says what that spans for
  each runtime. Warmups are excluded; failed launches are counted apart.
- [b]phases p50[/b]: the median of each part of the startup (e.g. create, start, first response).
- [b]sparkline[/b]: the most recent startups, taller is slower.
- [b]user-space[/b] per instance: growth of the instances' PSS (shared pages split between
  the processes sharing them) divided by the instances held. It leaves out what the kernel
  spends per instance (page tables, kernel stacks, task and cgroup structures).
  [i]so far[/i] marks a live figure during a ramp; the settled ones come when it holds.
- [b]host[/b] per instance: what the machine loses per instance, the figure a fleet planner
  pays. Its basis is named beside it: [i]MemAvailable fall[/i] (how far the system's
  MemAvailable fell while this runtime alone ramped up, per instance), [i]cgroup incl.
  kernel[/i] (containers: their cgroups' memory with kernel memory, as docker stats reads it),
  or [i]PSS, above its cgroup[/i]. A fall within MemAvailable's idle noise is no figure: the
  panel says how many instances a stable one needs.
- [b]instances per GiB[/b]: 1 GiB divided by the host figure (by the user-space one only
  where there is no host figure, and then it says so).
- [b]ramp N instances/s[/b]: instances brought up per second during the ramp. A [b]⚠[/b] under the
  memory figures names a limit that stopped the ramp early (and the instances it reached).
- [b]running / launched / failed[/b]: instances resident now, launches so far, launches failed.
- [b]starts/s[/b]: launches begun in the last two seconds, per second; after a steady run, the
  rate achieved over the run.
- [b]lab CPU[/b]: the lab's own process, sampled every second (the Wasm host and containers
  are other processes). [b]first paint[/b]: from process start to the first frame.

- [b]⚠[/b]: a warning about the figures above it. [i]high spread[/i] (stdev over 10% of the mean):
  other load on this machine; close other programs, raise N, read p50 rather than the mean.
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
