"""``edgelab whatif``: the simulator on the command line, every figure marked simulated.

Inputs start from the defaults (or ``--preset``) and each flag given overrides one; every value
is checked before anything is read or drawn (one line, exit 2), and nothing is written.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from typing import Any

from edgelab.errors import UsageError


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "whatif",
        help="simulate hours of traffic from a measured run (marked simulated)",
        description="Replays hours of traffic through a keep-alive pool, edge against region, with "
        "startup and execution times drawn from a measured traffic run. Every figure is simulated.",
    )
    p.add_argument("--from", dest="from_ref", default="last", metavar="REF",
                   help="the measured run: an export's path, last or last~N (default: last)")
    p.add_argument("--preset", metavar="NAME", help="start from a story's inputs (--list-presets)")
    p.add_argument("--rate", metavar="REQ_PER_S", help="mean requests per second (default 100)")
    p.add_argument("--pattern", choices=("poisson", "onoff", "trace"), help="arrivals (default poisson)")
    p.add_argument("--trace", metavar="FILE",
                   help="replay arrivals: one timestamp (s) per line, or the Azure 2019 per-minute CSV")
    p.add_argument("--hours", metavar="H", help="simulated hours (default 1)")
    p.add_argument("--keepalive", metavar="SECONDS", help="idle time before an instance is stopped (300, 2s, 500ms)")
    p.add_argument("--prewarm", metavar="N", help="instances kept ready (default 0)")
    p.add_argument("--concurrency", metavar="N", help="requests one instance serves at once (default 1)")
    p.add_argument("--host-memory", dest="host_memory", metavar="GIB", help="memory per host (default 64 GiB)")
    p.add_argument("--user", metavar="CITY", help="where the user is (default Tokyo; --list-places)")
    p.add_argument("--region", metavar="REGION", help="where central code and data live (default us-east-1)")
    p.add_argument("--inflation", metavar="X", help="path length over the great circle (default 1.5)")
    p.add_argument("--data-trips", dest="data_trips", metavar="N", help="round trips to central data per request (default 1)")
    p.add_argument("--extra-ms", dest="extra_ms", metavar="MS", help="time per request spent elsewhere, e.g. an LLM call (an assumption)")
    p.add_argument("--max-in-flight", dest="max_in_flight", metavar="N",
                   help="cap on requests in service at once per runtime; the rest queue (default: no cap)")
    p.add_argument("--seed", metavar="N", help="seed for arrivals and draws (default 0)")
    p.add_argument("-r", "--runtimes", metavar="LIST", help="only these runtimes of the fed run (comma-separated)")
    p.add_argument("--json", action="store_true", help="machine-readable result (every figure still simulated)")
    p.add_argument("--list-places", action="store_true", help="the cities and regions known, then exit")
    p.add_argument("--list-presets", action="store_true", help="the presets and their assumptions, then exit")


def _number(text: str, flag: str, whole: bool = False) -> Any:
    try:
        value = int(text.strip()) if whole else float(text)
    except ValueError:
        kind = "a whole number" if whole else "a number"
        raise UsageError(f"{flag} must be {kind}, not {text!r}") from None
    if not whole and not math.isfinite(value):
        raise UsageError(f"{flag} must be a finite number, not {text!r}")
    return value


def inputs_from_args(args: argparse.Namespace) -> tuple[Any, tuple[str, ...]]:
    """The inputs the flags ask for (over the preset's), checked; and the preset's assumptions."""
    from edgelab.settings import KEEPALIVE_S, parse_seconds
    from edgelab.whatif.model import WhatIfInputs
    from edgelab.whatif.presets import preset

    assumptions: tuple[str, ...] = ()
    base = WhatIfInputs()
    if args.preset:
        chosen = preset(args.preset)
        base, assumptions = chosen.inputs, tuple(f"preset {chosen.name}: {a}" for a in chosen.assumptions)
    changes: dict[str, Any] = {}
    numeric = (("rate", "rate_per_s", False), ("hours", "hours", False), ("prewarm", "prewarm", True),
               ("concurrency", "concurrency", True), ("host_memory", "host_memory_gib", False),
               ("inflation", "inflation", False), ("data_trips", "data_round_trips", True),
               ("extra_ms", "extra_ms", False), ("seed", "seed", True),
               ("max_in_flight", "max_in_flight", True))  # fmt: skip
    for attr, name, whole in numeric:
        text = getattr(args, attr)
        if text is not None:
            changes[name] = _number(text, f"--{attr.replace('_', '-')}", whole)
    if args.keepalive is not None:
        changes["keepalive_s"] = parse_seconds(args.keepalive, "--keepalive", KEEPALIVE_S)
    if args.user is not None:
        changes["user_city"] = args.user
    if args.region is not None:
        changes["region"] = args.region
    if args.pattern is not None:
        changes["pattern"] = args.pattern
    if args.trace is not None:
        if args.pattern not in (None, "trace"):
            raise UsageError(f"--trace replays a file: it needs --pattern trace (or none), not {args.pattern}")
        from edgelab.arrivals import read_trace

        changes["pattern"] = "trace"
        changes["trace"] = tuple(read_trace(args.trace).tolist())
        if "hours" not in changes:  # the whole trace, unless --hours says otherwise
            from edgelab.whatif.model import MAX_HOURS

            changes["hours"] = min(MAX_HOURS, max(changes["trace"][-1] + 1e-6, 1.0) / 3600)
    elif changes.get("pattern") == "trace":
        raise UsageError("--pattern trace needs --trace FILE (timestamps, or the Azure per-minute CSV)")
    inputs = dataclasses.replace(base, **changes)
    inputs.validate()
    return inputs, assumptions


def cmd_whatif(args: argparse.Namespace) -> int:
    if args.list_places:
        return _list_places(args.json)
    if args.list_presets:
        return _list_presets(args.json)
    inputs, assumptions = inputs_from_args(args)  # every input checked before the feed is read
    from edgelab.whatif.engine import simulate
    from edgelab.whatif.feed import load_feed

    feed = load_feed(args.from_ref)
    runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()] if args.runtimes else None
    result = simulate(inputs, feed, runtimes)
    notes = (*result.notes, *assumptions)
    if args.json:
        print(json.dumps(result_json(result, notes), indent=2))
        return 0
    _print_table(result, notes)
    return 0


def result_json(result: Any, notes: tuple[str, ...]) -> dict[str, Any]:
    inputs = dataclasses.asdict(result.inputs)
    if inputs.get("trace") is not None:
        inputs["trace"] = f"{len(inputs['trace'])} arrivals from the trace file"
    return {
        "simulated": True,
        "what": "every figure below is simulated from a measured run's samples; none was measured at this traffic",
        "fed_by": result.fed_by,
        "inputs": inputs,
        "units": {"p50_ms": "ms end to end", "p99_ms": "ms end to end",
                  "warm_p50_ms": "ms end to end, requests served warm", "cold_p50_ms": "ms end to end, requests served cold",
                  "cold_fraction": "of requests",
                  "mean_instances": "time-average", "memory_gib_hours": "GiB x hours",
                  "instances_per_host": "host memory / memory per instance"},
        "outcomes": [dataclasses.asdict(o) for o in result.outcomes],
        "notes": list(notes),
        "elapsed_s": round(result.elapsed_s, 4),
    }


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def _compact(value: float | None) -> str:
    """A large count in 4-5 characters (12.2k, 2.71M): the table fits 80 columns."""
    if value is None:
        return "–"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.0f}"


def _ms(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:,.1f}" if value >= 10 else f"{value:.3f}"


def _print_table(result: Any, notes: tuple[str, ...]) -> None:
    from rich import box
    from rich.table import Table

    from edgelab.commands import _Console

    inputs = result.inputs
    table = Table(
        title=f"SIMULATED what-if: {inputs.pattern} at {inputs.rate_per_s:g} req/s for {inputs.hours:g} h, "
        f"keep-alive {inputs.keepalive_s:g} s, pre-warm {inputs.prewarm}, user in {inputs.user_city}, "
        f"region {inputs.region} (every figure simulated)",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        show_edge=False,
        collapse_padding=True,
    )
    table.add_column("runtime", no_wrap=True)
    table.add_column("where", no_wrap=True)
    for name in ("p50 ms", "p99 ms", "cold %", "inst", "peak", "GiB·h", "/host", "hosts"):
        table.add_column(f"sim.\n{name}", justify="right", no_wrap=True)
    for o in result.outcomes:
        table.add_row(o.runtime, o.placement, _ms(o.p50_ms), _ms(o.p99_ms), f"{o.cold_fraction * 100:.2f}",
                      _fmt(o.mean_instances, 1), str(o.peak_instances), _fmt(o.memory_gib_hours, 3),
                      _compact(o.instances_per_host), _fmt(o.hosts_needed))  # fmt: skip
    console = _Console()
    console.print(table)
    console.print(f"fed by {result.fed_by}", highlight=False, soft_wrap=True)
    console.print("p50/p99: end to end = user RTT + data RTT x trips + queue + startup (cold) or exec (warm) + extra; "
                  "inst: mean instances alive; GiB·h: inst x measured memory per instance x hours; "
                  "/host: host memory / memory per instance; hosts: for the peak", highlight=False, soft_wrap=True)
    for note in notes[1:]:
        console.print(f"  {note}", highlight=False, soft_wrap=True)
    console.print(f"simulated in {result.elapsed_s:.2f} s", highlight=False)


def _list_places(as_json: bool) -> int:
    from edgelab.whatif.placement import places

    known = places()
    if as_json:
        print(json.dumps([dataclasses.asdict(p) for p in known.values()], indent=2))
        return 0
    from edgelab.history import text_table

    rows = [["name", "kind", "where", "lat", "lon"]]
    rows += [[p.name, p.kind, p.label, f"{p.lat:.2f}", f"{p.lon:.2f}"] for p in known.values()]
    sys.stdout.write("\n".join(text_table(rows, right={3, 4})) + "\n")
    return 0


def _list_presets(as_json: bool) -> int:
    from edgelab.whatif.presets import presets

    table = presets()
    if as_json:
        print(json.dumps([{"name": p.name, "title": p.title, "summary": p.summary,
                           "inputs": dataclasses.asdict(p.inputs), "assumptions": list(p.assumptions)}
                          for p in table.values()], indent=2))  # fmt: skip
        return 0
    for p in table.values():
        print(f"{p.name}: {p.title}\n  {p.summary}")
        for line in p.assumptions:
            print(f"  assumed: {line}")
    return 0
