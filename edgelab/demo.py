"""``edgelab demo``: a presentation that runs itself, from a script a presenter can edit.

A script is TOML: ``[[step]]`` tables, each a ``kind`` (burst, ramp, traffic, ladder, whatif,
claims), its parameters, a one-line ``caption`` shown in large type, and ``advance`` ("key":
space or the right arrow moves on; a number: that many seconds after the step's figures are
in). This module is headless: it reads and checks a script and turns each run step into the
lab's own ``Settings``. Every step is checked before anything runs (a typo in step 5 must not
surface in front of an audience after four steps have played): a bad one is one line naming
the file and the step, exit 2.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from edgelab import settings as limits
from edgelab.errors import UsageError

KINDS = ("burst", "ramp", "traffic", "ladder", "whatif", "claims")
#: The kinds that start a run in the lab (the others open a view over it).
RUN_KINDS = ("burst", "ramp", "traffic")
#: A caption is one line in the banner, which is as wide as an 80-column terminal less its
#: border and padding: a longer one would be cut or wrap, and it must read from the back.
CAPTION_MAX = 76
#: Seconds a timed step may stay on screen.
ADVANCE_S = limits.Limit(0, 3_600, "seconds", lo_inclusive=False)
DEFAULT_SCRIPT = "data/demo.toml"

_COMMON = {"kind", "caption", "advance"}
_PARAMS: dict[str, set[str]] = {
    "burst": {"workload", "runtimes", "count", "interleave"},
    "ramp": {"workload", "runtimes", "resident"},
    "traffic": {"workload", "runtimes", "pattern", "rate_per_s", "duration_s", "keepalive_s", "prewarm"},
    "ladder": {"workload", "runtimes", "count"},  # with any of them, a burst of the rungs first
    "whatif": {"preset"},
    "claims": set(),
}


@dataclass(frozen=True)
class Step:
    """One step of a script, checked. ``settings`` is the run a run step starts (None for a
    view); ``advance_s`` None means the presenter's key moves on."""

    index: int
    kind: str
    caption: str
    advance_s: float | None
    settings: Any = None
    preset: str | None = None

    @property
    def advance_text(self) -> str:
        return "space / → for next" if self.advance_s is None else f"next after {self.advance_s:g} s"


@dataclass(frozen=True)
class Script:
    """A whole script: where it came from, its steps, the panels the lab shows for it, and
    its title (shown in the banner beside the step number)."""

    source: str
    steps: tuple[Step, ...]
    rungs: tuple[str, ...] = field(default=())
    title: str = ""


class _StepError(UsageError):
    pass


def script_text(path: Path | None) -> tuple[str, str]:
    """(source name, text): the file given, or the shipped default script."""
    if path is None:
        return "demo.toml (shipped)", resources.files("edgelab").joinpath(DEFAULT_SCRIPT).read_text(encoding="utf-8")
    try:
        return str(path), path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"demo script {path}: not TOML (not UTF-8 text)") from None
    except OSError as exc:
        raise UsageError(f"demo script {path}: cannot read it: {exc.strerror}") from None


def load_script(path: Path | None = None, rungs: tuple[str, ...] | None = None) -> Script:
    """Read and check a whole script; ``rungs`` are the lab's panels (``--runtimes``), else the
    registry's defaults together with every rung a step names."""
    source, text = script_text(path)
    return parse_script(text, source, rungs)


def parse_script(text: str, source: str, rungs: tuple[str, ...] | None = None) -> Script:
    """Every step checked, or one ``UsageError`` naming ``source`` and the step."""
    from edgelab.runtimes import registry

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"demo script {source}: not TOML: {exc}") from None
    unknown = sorted(set(data) - {"step", "title"})
    if unknown:
        raise UsageError(f"demo script {source}: unknown top-level key {unknown[0]!r} (a script is [[step]] tables)")
    raw = data.get("step")
    if not isinstance(raw, list) or not raw or not all(isinstance(s, dict) for s in raw):
        raise UsageError(f"demo script {source}: no steps (each step is a [[step]] table with kind and caption)")
    from edgelab.workloads import load_workloads

    workloads = tuple(load_workloads())
    named: list[str] = []
    drafts: list[tuple[int, dict[str, Any], tuple[str, ...] | None]] = []
    for number, entry in enumerate(raw, start=1):
        try:
            step_rungs = _step_rungs(entry)
        except UsageError as exc:
            raise _where(source, number, entry, exc) from None
        drafts.append((number, entry, step_rungs))
        named.extend(step_rungs or ())
    panels = rungs or tuple(dict.fromkeys((*registry.default_names(), *named)))
    steps = []
    for number, entry, step_rungs in drafts:
        try:
            steps.append(_step(number, entry, step_rungs, panels, workloads))
        except UsageError as exc:
            raise _where(source, number, entry, exc) from None
    title = data.get("title", "")
    if not isinstance(title, str) or "\n" in title or len(title) > CAPTION_MAX:
        raise UsageError(f"demo script {source}: title must be one line of at most {CAPTION_MAX} characters")
    return Script(source, tuple(steps), panels, title)


def _where(source: str, number: int, entry: dict[str, Any], exc: UsageError) -> UsageError:
    kind = entry.get("kind")
    what = f" ({kind})" if isinstance(kind, str) and kind in KINDS else ""
    return UsageError(f"demo script {source}: step {number}{what}: {exc}")


def _step_rungs(entry: dict[str, Any]) -> tuple[str, ...] | None:
    """The rungs a step names (``runtimes``, or a ramp's ``resident`` table), checked."""
    from edgelab.runtimes import registry

    names: list[str] = []
    runtimes = entry.get("runtimes")
    if runtimes is not None:
        if not isinstance(runtimes, list) or not all(isinstance(r, str) for r in runtimes):
            raise UsageError("runtimes must be a list of rung names, e.g. [\"wasm\", \"subprocess\"]")
        names.extend(registry.parse_runtimes(",".join(runtimes)))
    resident = entry.get("resident")
    if isinstance(resident, dict):
        names.extend(registry.parse_runtimes(",".join(resident)) if resident else ())
    return tuple(dict.fromkeys(names)) if names else None


def _step(
    number: int,
    entry: dict[str, Any],
    step_rungs: tuple[str, ...] | None,
    panels: tuple[str, ...],
    workloads: tuple[str, ...],
) -> Step:
    from edgelab.lab import Settings

    kind = entry.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        shown = "missing" if kind is None else repr(kind)
        raise UsageError(f"kind is {shown}: choose from {', '.join(KINDS)}")
    extra = sorted(set(entry) - _COMMON - _PARAMS[kind])
    if extra:
        takes = ", ".join(sorted(_PARAMS[kind])) or "no parameters"
        raise UsageError(f"unknown key {extra[0]!r} (a {kind} step takes caption, advance and {takes})")
    caption = entry.get("caption")
    if not isinstance(caption, str) or not caption.strip():
        raise UsageError("caption is missing: every step has a one-line caption")
    if "\n" in caption or len(caption.strip()) > CAPTION_MAX:
        raise UsageError(f"caption must be one line of at most {CAPTION_MAX} characters (it is shown in large type)")
    advance_s = _advance(entry.get("advance", "key"))
    # A ladder step that names rungs (or a workload or count) runs a burst of them first, then
    # shows the ladder of that burst; without, it shows the ladder of the run before it.
    ladder_run = kind == "ladder" and bool(set(entry) & _PARAMS["ladder"])
    if kind not in RUN_KINDS and not ladder_run:
        preset = None
        if kind == "whatif":
            preset = entry.get("preset")
            if not isinstance(preset, str):
                raise UsageError("preset is missing: a whatif step names one (edgelab whatif --list-presets)")
            from edgelab.whatif.presets import preset as find_preset

            find_preset(preset)
        return Step(number, kind, caption.strip(), advance_s, preset=preset)
    runtimes = step_rungs or panels
    outside = [r for r in runtimes if r not in panels]
    if outside:
        raise UsageError(f"{outside[0]} has no panel in this demo (add it to --runtimes)")
    workload = entry.get("workload", "hello")
    if not isinstance(workload, str) or workload not in workloads:
        raise UsageError(f"unknown workload {workload!r} (choose from {', '.join(workloads)})")
    common: dict[str, Any] = {"workload": workload, "runtimes": runtimes, "scenario": "burst" if ladder_run else kind}
    if kind == "burst" or ladder_run:
        settings = Settings(
            **common,
            # A ladder's slow rungs (a microVM boots in seconds) make its default burst short.
            count=int(limits.check(entry.get("count", 5 if ladder_run else 20), "count", limits.COUNT)),
            interleave=entry.get("interleave", "block"),
        )
    elif kind == "ramp":
        settings = Settings(**common, resident=_resident(entry.get("resident"), runtimes), hold=True)
    else:
        settings = Settings(
            **common,
            pattern=_text(entry.get("pattern", "poisson"), "pattern"),
            rate_per_s=limits.check(entry.get("rate_per_s", 10.0), "rate_per_s", limits.RATE_PER_S),
            duration_s=limits.check(entry.get("duration_s", 5.0), "duration_s", limits.DURATION_S),
            keepalive_s=limits.check(entry.get("keepalive_s", 2.0), "keepalive_s", limits.KEEPALIVE_S),
            prewarm=int(limits.check(entry.get("prewarm", 0), "prewarm", limits.PREWARM)),
        )
    settings.validate()
    return Step(number, kind, caption.strip(), advance_s, settings=settings)


def _advance(value: object) -> float | None:
    if value == "key":
        return None
    if isinstance(value, str):
        raise UsageError(f"advance must be \"key\" or a number of seconds, not {value!r}")
    return limits.check(value, "advance", ADVANCE_S)


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise UsageError(f"{what} must be text, not {value!r}")
    return value


def _resident(value: object, runtimes: tuple[str, ...]) -> dict[str, int]:
    """A ramp's instances per rung: one count for each, or a table ``{wasm = 10000, ...}``."""
    from edgelab.runtimes import registry

    if isinstance(value, dict):
        names = registry.parse_runtimes(",".join(value)) if value else ()
        counts = {
            name: int(limits.check(count, f"resident for {name}", limits.RESIDENT))
            for name, count in zip(names, value.values(), strict=True)
        }
        return {name: counts.get(name, 0) for name in runtimes}
    if value is None:
        raise UsageError("resident is missing: a ramp step says how many instances, e.g. resident = {wasm = 100}")
    count = int(limits.check(value, "resident", limits.RESIDENT))
    return {name: count for name in runtimes}


# -- the command -----------------------------------------------------------------------------------
def add_parser(sub: Any) -> None:
    demo = sub.add_parser(
        "demo",
        help="a presentation that runs itself: a script of bursts, ramps and views, with captions",
        description="Open the lab and play a script of steps (TOML: [[step]] tables with kind,"
        " caption, advance and the step's parameters; default: the shipped edgelab/data/demo.toml)."
        " Space or the right arrow moves on; q, ctrl+c or SIGTERM stop it and leave nothing running.",
    )
    demo.add_argument("--script", type=Path, default=None, metavar="FILE", help="the script to play (default: the shipped one)")
    demo.add_argument("--loop", action="store_true", help="start again after the last step (a booth)")
    demo.add_argument("--runtimes", metavar="RUNGS", default=None,
                      help="the panels: comma-separated rungs (default: the registry's defaults and every rung the script names)")  # fmt: skip


def cmd_demo(args: argparse.Namespace) -> int:
    """Check the whole script, then play it in the lab; a bad script never opens the screen."""
    from edgelab import cli
    from edgelab.runtimes import registry

    rungs = registry.parse_runtimes(args.runtimes) if args.runtimes else None
    script = load_script(args.script, rungs)
    from edgelab.tui.demo import run_demo

    terminal = cli._TERMINAL = cli._terminal_state()
    try:
        return run_demo(script, loop=args.loop, started_at=cli._STARTED)
    except KeyboardInterrupt:
        # As the lab's own TUI does: run_demo has closed the lab; restore the terminal and go.
        import os
        import sys

        cli._restore_terminal(terminal)
        print("edgelab: interrupted; everything the demo started was removed", file=sys.stderr)
        sys.stderr.flush()
        os._exit(130)
