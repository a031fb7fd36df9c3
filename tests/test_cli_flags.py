"""The command line's own parsing and contracts, on fixed input: the shared ``--resident``
parser (both spellings), the run flags, exports named on the command line, exit codes.

Pure units (no runtime starts) unless a test says otherwise.
"""

from __future__ import annotations

import pytest

from edgelab.errors import UsageError
from edgelab.lab import MAX_RESIDENT, parse_resident, resolve_runtime_name, unselected_in_resident

ALL = ("container", "subprocess", "wasm")


# -- --resident: one parser for the CLI and the TUI -----------------------------------------------
@pytest.mark.parametrize(
    ("text", "runtimes", "expected"),
    [
        ("50", ALL, {"container": 50, "subprocess": 50, "wasm": 50}),
        (" 7 ", ("wasm",), {"wasm": 7}),
        ("0", ALL, {"container": 0, "subprocess": 0, "wasm": 0}),
        # the TUI's spelling and the CLI's give the same answer
        ("c=20,s=50,w=2000", ALL, {"container": 20, "subprocess": 50, "wasm": 2000}),
        ("container=20,subprocess=50,wasm=2000", ALL, {"container": 20, "subprocess": 50, "wasm": 2000}),
        ("Cont=1, SUB=2 ,wasm = 3", ALL, {"container": 1, "subprocess": 2, "wasm": 3}),
        ("wasm=10000,container=50", ALL, {"container": 50, "subprocess": 0, "wasm": 10000}),
        # named but not selected: left out (the TUI with container toggled off)
        ("c=10,s=50,w=2000", ("subprocess", "wasm"), {"subprocess": 50, "wasm": 2000}),
        ("1_000", ("wasm",), {"wasm": 1000}),
    ],
)
def test_resident_both_spellings(text: str, runtimes: tuple[str, ...], expected: dict[str, int]) -> None:
    assert parse_resident(text, runtimes) == expected


def test_resident_answers_in_the_order_of_the_runtimes() -> None:
    assert list(parse_resident("w=1,c=2", ALL)) == list(ALL)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "--resident takes N or runtime=N,..."),
        ("x=1", "--resident: 'x' is not a runtime (container, subprocess, wasm, or c, s, w)"),
        ("vm=3", "'vm' is not a runtime"),
        ("c=1,container=2", "--resident names container twice"),
        ("c=-1", "--resident for container must be 0 or more, not -1"),
        ("-4", "--resident must be 0 or more, not -4"),
        ("w=1e3", "--resident for wasm must be a whole number of instances, not '1e3'"),
        ("w=inf", "must be a whole number of instances, not 'inf'"),
        ("2.5", "must be a whole number of instances, not '2.5'"),
        (str(MAX_RESIDENT + 1), f"--resident must be at most {MAX_RESIDENT:,}"),
        ("5,6", "--resident takes N or runtime=N,..."),
        ("=4", "'=4' is neither"),
        ("c=1,,w=2", "'' is neither"),
        ("c=", "--resident for container must be a whole number of instances, not ''"),
    ],
)
def test_resident_bad_input_is_one_line(text: str, says: str) -> None:
    with pytest.raises(UsageError) as raised:
        parse_resident(text, ALL)
    message = str(raised.value)
    assert says in message and "\n" not in message


def test_resident_error_names_the_field_it_came_from() -> None:
    with pytest.raises(UsageError, match=r"^resident N for wasm must be"):
        parse_resident("w=lots", ALL, label="resident N")


def test_runtime_names_by_prefix() -> None:
    assert [resolve_runtime_name(t) for t in ("c", "S", "w", "wa", "container", " sub ")] == [
        "container", "subprocess", "wasm", "wasm", "container", "subprocess",
    ]
    with pytest.raises(UsageError):
        resolve_runtime_name("")
    with pytest.raises(UsageError):
        resolve_runtime_name("containers")


def test_unselected_runtimes_are_reported_for_a_note() -> None:
    assert unselected_in_resident("c=10,s=0,w=5", ("wasm",)) == ["container"]
    assert unselected_in_resident("10", ("wasm",)) == []
    assert unselected_in_resident("w=5", ALL) == []
