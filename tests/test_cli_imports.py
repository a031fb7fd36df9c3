"""The CLI imports what the command it runs needs: ``edgelab --help`` and ``edgelab invoke``
build no other subcommand's parser, so they import none of the modules those read.

Each import check runs in a fresh interpreter (as tests/test_core_headless.py does), since
this one has imported everything already.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from edgelab import cli

#: What building every subcommand's parser used to import for any command: the modules whose
#: flags or choices the parsers read, and what those pull in (serve's asyncio).
LAZY = (
    "edgelab.settings", "edgelab.runtimes.registry", "edgelab.traffic", "edgelab.scenarios",
    "edgelab.ladder", "edgelab.claims", "edgelab.functions", "edgelab.whatif.command",
    "edgelab.serve", "edgelab.demo", "edgelab.lab", "asyncio",
)  # fmt: skip


def _imported_by_parsing(argv: list[str]) -> tuple[str, list[str]]:
    """(what stdout got, which of LAZY were imported) when ``edgelab argv`` is parsed."""
    code = (
        "import contextlib, io, sys\n"
        "from edgelab.cli import build_parser\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    try:\n"
        f"        build_parser().parse_args({argv!r})\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0, exc.code\n"
        "sys.stdout.write(out.getvalue())\n"
        f"print('imported:', ','.join(m for m in {LAZY!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    printed, _, imported = done.stdout.rpartition("imported: ")
    return printed, [m for m in imported.strip().split(",") if m]


def test_help_imports_none_of_the_subcommands_modules() -> None:
    printed, imported = _imported_by_parsing(["--help"])
    assert "exit status:" in printed and all(name in printed for name in cli.SUBCOMMANDS)
    assert imported == []


def test_invoke_builds_its_own_parser_only() -> None:
    printed, imported = _imported_by_parsing(["invoke", "hello", "-r", "w"])
    assert printed == ""
    # Its --timeout reads the limits, -r the registry (its names); nothing else of LAZY.
    assert sorted(imported) == ["edgelab.runtimes.registry", "edgelab.settings"]


def _subcommands(parser: argparse.ArgumentParser) -> cli._Subcommands:
    return next(a for a in parser._actions if isinstance(a, cli._Subcommands))


def test_building_every_subcommand_leaves_the_listing_as_it_was() -> None:
    parser = cli.build_parser()
    listing = parser.format_help()
    sub = _subcommands(parser)
    built = {name: sub.build(name) for name in cli.SUBCOMMANDS}
    assert parser.format_help() == listing
    assert all(built[name] is sub.build(name) for name in cli.SUBCOMMANDS)  # built once
    assert [a.option_strings for a in built["run"]._actions][:3] == [["-h", "--help"], ["--workload", "-w"], ["--runtimes", "-r"]]
    assert parser.parse_args(["run", "-n", "3"]).count == 3


@pytest.mark.parametrize("name", list(cli.SUBCOMMANDS))
def test_a_command_with_its_flags_in_its_module_is_listed_with_that_modules_line(name: str) -> None:
    """The line ``edgelab --help`` shows before a module is imported is the one its own
    ``add_parser`` gives (cli.py's builders give none: the table is theirs)."""
    line, build = cli.SUBCOMMANDS[name]
    scratch = argparse.ArgumentParser().add_subparsers()
    (cli._in_module(build) if isinstance(build, str) else build)(scratch)
    assert list(scratch.choices) == [name]
    given = [action.help for action in scratch._choices_actions]
    assert given == ([line] if isinstance(build, str) else [])


def test_every_listed_command_has_its_handler() -> None:
    import importlib

    for name in cli.SUBCOMMANDS:
        module = importlib.import_module(cli._HANDLER_MODULES.get(name, "edgelab.commands"))
        assert callable(getattr(module, f"cmd_{name}")), name
