"""The ``edgelab`` command: the lab (no arguments) and its headless subcommands.

Expected failures print one line, ``edgelab: <what went wrong>``, and exit non-zero; a
traceback only ever means a bug in edgelab.
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from edgelab.errors import EdgelabError, UsageError

_STARTED = time.perf_counter()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"edgelab: {message} (see edgelab {self.prog.split()[-1]} --help)\n"
                  if " " in self.prog else f"edgelab: {message} (see edgelab --help)\n")


def _nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


#: What ``edgelab``'s exit status means (in --help): scripts and CI can trust it.
EXIT_STATUS = """exit status:
  0    every runtime asked for ran every launch (and held its resident target)
  1    a runtime failed or stopped early (unavailable, failed launches, given up, a limit
       reached, the request rejected); the others' results are still printed and written,
       as hyperfine does (--ignore-failure: 0 while one runtime has results)
  2    bad input: a flag, a workload, a manifest, a request
  130  interrupted (ctrl+c, SIGTERM, SIGHUP); everything the lab started is removed
  141  stdout closed early (e.g. | head); the files asked for were written before it"""
#: Exit status when stdout was closed under us: 128 + SIGPIPE, what a shell reports for a
#: tool the closed pipe killed (`yes | head`), so `set -o pipefail` scripts see the same.
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE


def _runtime_name(text: str) -> str:
    """One runtime, by the grammar ``--resident`` and ``--runtimes`` take (c, s, w, names)."""
    from edgelab.runtime_names import resolve_runtime_name  # the lab's grammar, not the lab

    try:
        return resolve_runtime_name(text, "--runtime")
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--runtime: ")) from None


#: ``--runtimes``' default and help, from the registry (filled by ``_read_registry``).
_DEFAULT_RUNTIMES = "container,subprocess,wasm"
_RUNTIMES_HELP = ""


def _read_registry() -> None:
    """The runtime choices come from ``edgelab.runtimes.registry``, the one list (importing it
    imports no runtime); read when run's or probe's parser is built."""
    from edgelab.runtimes import registry

    global _DEFAULT_RUNTIMES, _RUNTIMES_HELP
    _DEFAULT_RUNTIMES = ",".join(registry.default_names())
    _RUNTIMES_HELP = (
        f"comma-separated rungs (default {_DEFAULT_RUNTIMES}), or unique prefixes (c,s,w);"
        " every rung: edgelab runtimes"
    )


def _scenario_names() -> tuple[str, ...]:
    """``--scenario``'s choices: the scenarios' one table (edgelab.scenarios; light to import)."""
    from edgelab.scenarios import scenario_names

    return scenario_names()


def _alias(parser: argparse.ArgumentParser, existing: str, *names: str, help: str) -> None:
    """Another spelling of an option, sharing its destination and its check (its ``type``)."""
    action = parser._option_string_actions[existing]
    checked: dict[str, Any] = {"type": action.type} if action.type is not None else {}
    parser.add_argument(*names, dest=action.dest, default=argparse.SUPPRESS, help=help, **checked)


class _Subcommands(argparse._SubParsersAction):  # type: ignore[type-arg]
    """The subcommands, each parser built only when its command is given: ``edgelab --help``
    lists their names and lines alone, and building every one imported every command's
    module (lab, traffic, serve's asyncio, claims...: ~100 ms) for each ``edgelab invoke``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._builders: dict[str, Callable[[Any], None]] = {}

    def add_later(self, name: str, line: str, build: Callable[[Any], None]) -> None:
        """A stand-in parser (its name and line in --help) until ``name`` is parsed; then
        ``build(self)`` adds the real one with ``self.add_parser(name, ...)``."""
        self.add_parser(name, help=line)
        self._builders[name] = build

    def build(self, name: str) -> argparse.ArgumentParser:
        """``name``'s real parser, built now if it was a stand-in. A ``help=`` the builder gives
        (the modules' ``add_parser`` do) is dropped: the stand-in keeps --help's line."""
        build = self._builders.pop(name, None)
        if build is not None:
            del self._name_parser_map[name]
            listed = len(self._choices_actions)
            build(self)
            del self._choices_actions[listed:]
        parser: argparse.ArgumentParser = self._name_parser_map[name]
        return parser

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:  # fmt: skip
        self.build(values[0])  # argparse has checked it is one of the choices
        super().__call__(parser, namespace, values, option_string)


def _in_module(module: str) -> Callable[[Any], None]:
    """A command whose flags live beside its handler: that module's ``add_parser``."""

    def build(sub: Any) -> None:
        import importlib

        importlib.import_module(module).add_parser(sub)

    return build


def _add_run(sub: Any) -> None:
    from edgelab.settings import (
        COUNT,
        DURATION_S,
        KEEPALIVE_S,
        PREWARM,
        RATE_PER_S,
        TIMEOUT_S,
        WARMUP,
        flag,
        seconds_flag,
    )
    from edgelab.traffic import PATTERNS

    _read_registry()
    run = sub.add_parser(
        "run",
        description="Cold starts of one workload on each runtime, interleaved, then (with\n"
        "--resident) memory per resident instance. Prints a table and a plain-language\n"
        "conclusion; saves the run's JSON in the history (edgelab history, edgelab compare).",
        epilog=EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # -w/-r are edgelab's two everyday choices; hyperfine's meanings (warmup, runs) are the
    # long names --warmup and --runs, and a number given to -w or -r says so.
    # No default object: whether -w was typed matters (it may not name a workload beside --wasm).
    run.add_argument("--workload", "-w", default=None, help="workload to start (default: hello; see edgelab workloads)")
    run.add_argument("--runtimes", "-r", default=_DEFAULT_RUNTIMES, help=_RUNTIMES_HELP)
    run.add_argument("--count", "-n", type=flag(COUNT), default=20, help="measured cold starts per runtime")
    run.add_argument("--warmup", type=flag(WARMUP), default=1, help="launches recorded but not summarised")
    run.add_argument("--resident", default="0", help="resident instances to hold per runtime: N, or runtime=N,... (c=20,s=50,w=2000)")
    run.add_argument("--scenario", choices=_scenario_names(), default=None, help="default: burst")
    run.add_argument("--rate", type=flag(RATE_PER_S), default=10.0, help="steady, traffic: launches (requests) per second per runtime")
    run.add_argument("--duration", type=seconds_flag(DURATION_S), default=5.0, help="steady, traffic: seconds (30, 30s, 2m)")
    traffic = run.add_argument_group("traffic", "requests served by warm instances or cold starts (--scenario traffic)")
    traffic.add_argument("--pattern", choices=PATTERNS, default="poisson", help="arrivals: poisson at --rate, onoff bursts, or a --trace")
    traffic.add_argument("--keepalive", type=seconds_flag(KEEPALIVE_S), default=2.0, help="stop an instance idle this long (2s, 500ms; 0: every request cold)")
    traffic.add_argument("--prewarm", type=flag(PREWARM), default=0, help="instances kept ready (pre-warmed) per runtime")
    traffic.add_argument("--trace", metavar="FILE", help="arrival timestamps in seconds, one per line (--pattern trace)")
    traffic.add_argument("--seed", type=int, default=None, help="seed for the arrivals (default: random, saved in the export)")
    function = run.add_argument_group("your own function", "measure your artifacts instead of a built-in workload (stdin in, stdout out)")
    function.add_argument("--wasm", metavar="FILE", help="a WASI preview 1 core module (.wasm)")
    function.add_argument("--image", metavar="IMAGE", help="an image the engine has locally (never pulled)")
    function.add_argument("--command", dest="command_line", metavar="CMD", help='a command line, split as a shell would but run without one ("./app --flag")')
    function.add_argument("--dir", metavar="HOST::GUEST", action="append", default=[], help="grant the module a directory (as wasmtime --dir); repeatable")
    function.add_argument("--env", metavar="K=V", action="append", default=[], help="give the function an environment variable (as wasmtime --env); repeatable")
    run.add_argument("--timeout", type=flag(TIMEOUT_S), default=None, help="seconds per launch (default: the manifest's)")
    request = run.add_mutually_exclusive_group()
    request.add_argument("--request", help="request text (default: the workload's default request)")
    request.add_argument("--request-file", type=Path, help="request bytes from a file")
    _alias(run, "--count", "--runs", help="same as --count (hyperfine's name for it)")
    run.add_argument(
        "--interleave", choices=("block", "launch"), default="block",
        help="a mixed burst takes turns in short blocks per runtime (default) or one launch each",
    )
    run.add_argument("--json", metavar="FILE", help="write results as JSON (- for stdout)")
    run.add_argument("--csv", metavar="FILE", help="write one row per sample as CSV (- for stdout)")
    run.add_argument("--markdown", metavar="FILE", help="write the table as Markdown (- for stdout)")
    run.add_argument(
        "--export", metavar="FILE", action="append", default=[],
        help="write an export, its format from the extension (.json, .csv, .md); repeatable",
    )
    run.add_argument("--export-hyperfine", metavar="FILE", help="write hyperfine's JSON export schema (- for stdout)")
    run.add_argument("--no-history", action="store_true", default=argparse.SUPPRESS, help="do not save this run in the history")
    run.add_argument(
        "--ignore-failure", "-i", action="store_true",
        help="exit 0 even when a runtime failed, as long as one has results (hyperfine's -i)",
    )


def _add_invoke(sub: Any) -> None:
    from edgelab.settings import TIMEOUT_S, flag

    invoke = sub.add_parser("invoke")
    invoke.add_argument("workload")
    invoke.add_argument(
        "--runtime", "-r", required=True, type=_runtime_name, metavar="RUNTIME",
        help="any rung of edgelab runtimes (e.g. wasm:jit), or a unique prefix (c, s, w)",
    )
    invoke.add_argument("--timeout", type=flag(TIMEOUT_S), default=None)


def _add_build(sub: Any) -> None:
    build = sub.add_parser("build")
    build.add_argument("workloads", nargs="*", help="only these (default: all)")
    build.add_argument("--no-image", action="store_true", help="skip container images")


def _add_workloads(sub: Any) -> None:
    workloads = sub.add_parser("workloads")
    workloads.add_argument("--json", action="store_true", help="machine-readable, with paths and sizes in bytes")


def _add_doctor(sub: Any) -> None:
    sub.add_parser("doctor")


def _add_runtimes(sub: Any) -> None:
    rungs = sub.add_parser("runtimes")
    rungs.add_argument("--json", action="store_true", help="machine-readable")


def _add_probe(sub: Any) -> None:
    _read_registry()
    probe = sub.add_parser("probe")
    probe.add_argument("--runtimes", "-r", default=_DEFAULT_RUNTIMES, help=_RUNTIMES_HELP)
    probe.add_argument("--json", action="store_true", help="machine-readable: verdict and detail per capability")


def _add_clean(sub: Any) -> None:
    clean = sub.add_parser("clean")
    clean.add_argument("--cache", action="store_true", help="also remove built artifacts")


def _add_compare(sub: Any) -> None:
    compare = sub.add_parser("compare")
    compare.add_argument("runs", nargs="+", metavar="RUN", help="an export's path, or last, last~1, ... (see edgelab history)")
    compare.add_argument("--json", action="store_true", help="machine-readable")


def _add_history(sub: Any) -> None:
    history = sub.add_parser("history")
    history.add_argument("--limit", "-n", type=_nonnegative_int, default=20, help="show at most this many (0: all)")
    history.add_argument("--json", action="store_true", help="machine-readable")


#: Every subcommand, in --help's order: its line there, and what adds its parser: a function
#: here, or the module whose ``add_parser`` does (those keep their flags beside their handler).
SUBCOMMANDS: dict[str, tuple[str, Callable[[Any], None] | str]] = {
    "run": ("measure cold starts (and resident memory) headless", _add_run),
    "invoke": ("send stdin as one request to a fresh instance; response to stdout", _add_invoke),
    "build": ("build every workload's artifacts (cached)", _add_build),
    "workloads": ("list workloads and their artifacts", _add_workloads),
    "doctor": ("which runtimes work here, and how to fix those that don't", _add_doctor),
    "runtimes": ("every runtime and rung: what it starts, skips and costs to keep ready", _add_runtimes),
    "probe": ("what a workload can reach in each runtime (files, env, /, network, writes)", _add_probe),
    "clean": ("remove every container and process the lab left behind", _add_clean),
    "ladder": ("every rung usable here: cold starts sorted by p50, idle cost, a log-scale bar each", "edgelab.ladder"),
    "add": ("save your own function (--wasm, --image, --command) as a workload", "edgelab.functions"),
    "whatif": ("simulate hours of traffic from a measured run (marked simulated)", "edgelab.whatif.command"),
    "claims": ("published claims beside what this machine measured, with a verdict", "edgelab.claims"),
    "serve": ("the lab in a browser (textual-serve): every tab gets a lab of its own", "edgelab.serve"),
    "demo": ("a presentation that runs itself: a script of bursts, ramps and views, with captions", "edgelab.demo"),
    "compare": ("compare runs: p50/p99 before and after, change, significance", _add_compare),
    "history": ("the runs saved by edgelab run and the lab, newest first", _add_history),
}


def build_parser(subcommands: bool = True) -> argparse.ArgumentParser:
    """``subcommands=False``: the lab's own flags only, for a bare ``edgelab`` (first paint).
    With them, each subcommand's parser is built when that command is parsed (``_Subcommands``)."""
    from edgelab import __version__

    parser = _Parser(
        prog="edgelab",
        description="Start one workload as a Docker container, a native process and a Wasm\n"
        "instance, side by side, and measure startup and memory. No arguments opens the lab.",
        epilog=EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edgelab {__version__}")
    parser.add_argument("--workload", help="workload to select when the lab opens")
    parser.add_argument("--screenshots", type=Path, default=Path("screenshots"), help="where s saves its screenshots (SVG and PNG)")
    parser.add_argument("--exports", type=Path, default=None, help="where the lab's e writes JSON, CSV and Markdown (default: ./edgelab-exports)")
    parser.add_argument("--theme", choices=("dark", "light"), help="colour theme of the lab")
    parser.add_argument("--no-history", action="store_true", help="do not save the lab's runs in the history")
    parser.add_argument(
        "--runtimes", metavar="RUNGS", default=None,
        help="the lab's panels: comma-separated rungs (default: the registry's default three;"
        " every rung: edgelab runtimes)",
    )
    if not subcommands:
        parser.set_defaults(command=None)
        return parser
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, action=_Subcommands)
    assert isinstance(sub, _Subcommands)
    for name, (line, build) in SUBCOMMANDS.items():
        sub.add_later(name, line, _in_module(build) if isinstance(build, str) else build)
    return parser


#: Subcommands whose handler lives in a module of its own (the rest are in edgelab.commands).
_HANDLER_MODULES = {
    "compare": "edgelab.compare",
    "history": "edgelab.history",
    "ladder": "edgelab.ladder",
    "add": "edgelab.functions",
    "whatif": "edgelab.whatif.command",
    "claims": "edgelab.claims",
    "demo": "edgelab.demo",
    "serve": "edgelab.serve",
    "invoke": "edgelab.invoke",
}


#: The lab's collector thresholds (edgelab.tui.app.GC_THRESHOLDS) while the TUI opens.
_TUI_GC_THRESHOLDS = (20_000, 20, 1_000)


def main(argv: list[str] | None = None) -> int:
    # First paint: the parser, Textual's import and the first frame allocate objects by the
    # hundred thousand, nearly all kept; at Python's default thresholds that was ~175
    # collections (40-130 ms here) before the first frame. The lab's thresholds from the start
    # (EdgelabApp._settle_heap sets them again once it has frozen the heap); every subcommand
    # gets Python's defaults back before it runs.
    defaults = gc.get_threshold()
    gc.set_threshold(*_TUI_GC_THRESHOLDS)
    arguments = sys.argv[1:] if argv is None else argv
    args = build_parser(subcommands=bool(arguments)).parse_args(arguments)
    if args.command is not None:
        gc.set_threshold(*defaults)
    _exit_cleanly_on_sigterm()
    from edgelab.settings import check_environment, check_process_limits, limit_message

    try:
        check_environment()
        check_process_limits()
        if args.command is None:
            return _run_tui(args)
        import importlib

        module = importlib.import_module(_HANDLER_MODULES.get(args.command, "edgelab.commands"))
        handler = getattr(module, f"cmd_{args.command}")
        return int(handler(args) or 0)
    except EdgelabError as exc:
        print(f"edgelab: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("edgelab: interrupted; everything the lab started was removed", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _stdout_closed()
    except (OSError, RuntimeError, MemoryError) as exc:
        limit = limit_message(exc)  # a tight ulimit: name it in one line, not a traceback
        if limit is None:
            raise
        print(f"edgelab: {limit}", file=sys.stderr)
        return 1


def _stdout_closed() -> int:
    """The reader of stdout went away (``| head``): stop quietly, as Unix tools do. stdout
    points at /dev/null from here on, so the interpreter's last flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return EXIT_BROKEN_PIPE


def _lab_rungs(text: str | None) -> tuple[str, ...] | None:
    """``edgelab --runtimes``: exact registered names (the registry alone: no core import
    before first paint); a bad one is a UsageError before the screen is taken."""
    if text is None:
        return None
    from edgelab.runtimes import registry

    return registry.parse_runtimes(text)


def _run_tui(args: argparse.Namespace) -> int:
    """The lab's TUI. An interrupt (SIGTERM, SIGHUP) lands wherever the event loop is; once
    ``run_app`` has closed the lab, restore the terminal and exit at once: the TUI's own threads
    may not have been told to stop, and waiting for them would hang the exit."""
    _check_lab_args(args)
    # No collection until the lab has settled (EdgelabApp._settle_heap collects once, freezes
    # what is built and turns the collector back on at the lab's thresholds): importing Textual
    # and building the first frame allocate objects by the hundred thousand, nearly all kept,
    # and even at the lab's thresholds the collector walked them ~85 times before the first
    # frame (~50 M instructions, ~12 ms here).
    gc.disable()
    from edgelab.tui.app import run_app

    global _TERMINAL
    terminal = _TERMINAL = _terminal_state()
    try:
        return run_app(
            workload=args.workload,
            screenshot_dir=args.screenshots,
            export_dir=args.exports,
            theme=args.theme,
            started_at=_STARTED,
            runtimes=_lab_rungs(args.runtimes),
            history=not args.no_history,
        )
    except KeyboardInterrupt:
        _restore_terminal(terminal)
        print("edgelab: interrupted; everything the lab started was removed", file=sys.stderr)
        sys.stderr.flush()
        os._exit(130)
    finally:
        gc.enable()


def _check_lab_args(args: argparse.Namespace) -> None:
    """Bad input to the lab is one line before its screen, as for every command: an unknown
    --workload (looked up only when one is named: the lab reads its list after the first
    frame), an --exports folder whose parent is missing (e creates the folder, never its
    parents) or that is a file."""
    if args.workload is not None:
        from edgelab.workloads import get_workload

        get_workload(args.workload)
    exports = args.exports
    if exports is not None:
        if exports.exists() and not exports.is_dir():
            raise UsageError(f"--exports {exports}: not a folder")
        if not exports.exists() and not exports.absolute().parent.is_dir():
            raise UsageError(f"--exports {exports}: its folder {exports.absolute().parent} does not exist"
                             " (e creates the export folder, never its parents)")  # fmt: skip


#: The terminal's settings before the TUI took it over (restored on a forced exit).
_TERMINAL: list | None = None  # type: ignore[type-arg]
#: After the first interrupt, exit at the latest this many seconds later, whatever is still
#: running: the session watchdog (and, for the TUI, its measuring process on EOF) removes
#: whatever the lab had not removed by then.
FORCED_EXIT_S = 4.0


def _force_exit(signum: int) -> None:
    _restore_terminal(_TERMINAL)
    try:
        os.write(2, b"edgelab: interrupted; cleanup did not finish in time, the watchdog removes the rest\n")
    except OSError:
        pass
    os._exit(130)


def _terminal_state() -> list | None:  # type: ignore[type-arg]
    try:
        import termios

        return termios.tcgetattr(sys.stdin.fileno())
    except Exception:  # noqa: BLE001 - not a terminal: nothing to restore
        return None


#: Leave the alternate screen, show the cursor, stop mouse reporting and bracketed paste.
_TERMINAL_RESET = "\x1b[?1049l\x1b[?25h\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1006l\x1b[?1015l\x1b[?2004l"


def _restore_terminal(state: list | None) -> None:  # type: ignore[type-arg]
    if state is None:
        return
    try:
        import termios

        termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, state)
        os.write(sys.__stderr__.fileno() if sys.__stderr__ else 2, _TERMINAL_RESET.encode())
    except Exception:  # noqa: BLE001 - best effort: the exit matters more
        pass


def _exit_cleanly_on_sigterm() -> None:
    """SIGTERM, SIGHUP and SIGINT unwind like ctrl+c, so every ``finally`` removes what it started.

    Only the first one interrupts (and cancels every run in progress, in any thread): a second
    one while that cleanup runs is ignored, a third exits at once, and so does the cleanup if
    it has not finished ``FORCED_EXIT_S`` after the first. The session watchdog
    (edgelab.watchdog) then kills and removes whatever the lab had not.
    """
    received = 0

    def interrupt(signum: int, frame: object) -> None:
        nonlocal received
        received += 1
        if received == 1:
            timer = threading.Timer(FORCED_EXIT_S, _force_exit, args=(signal.SIGINT,))
            timer.daemon = True
            timer.start()
            lab = sys.modules.get("edgelab.lab")
            if lab is not None:  # runs in worker threads (the TUI's) stop and release too
                lab.cancel_all_runs()
            raise KeyboardInterrupt
        if received >= 3:
            os._exit(128 + signum)
        try:
            os.write(2, b"edgelab: stopping; interrupt again to exit now\n")
        except OSError:
            pass

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        try:
            signal.signal(sig, interrupt)
        except (ValueError, OSError):
            pass


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())


__all__ = ["UsageError", "build_parser", "main"]
