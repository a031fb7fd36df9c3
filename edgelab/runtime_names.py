"""Runtime names and resident counts as people type them: one grammar for the CLI and the TUI.

``--runtime``, ``--runtimes`` and ``--resident`` (and the TUI's resident field) name runtimes
in full (``wasm:jit``) or by an unambiguous prefix (``c``, ``Wasm``), read from the registry,
so a rung registered later is spelled like the rest with no edit here.
"""

from __future__ import annotations

from edgelab.errors import UsageError
from edgelab.runtimes import registry

#: The most resident instances per runtime one run may ask for: a bound for typos (1000000000),
#: well above the 100,000 Wasm instances the lab is built to hold.
MAX_RESIDENT = 1_000_000


def resolve_runtime_name(given: str, label: str = "--resident") -> str:
    """A registered runtime's or rung's name, or an unambiguous prefix of one, in any case
    (``c``, ``Wasm``, ``wasm:j``): the TUI's one-letter spelling and the CLI's full names are
    one grammar, read from the registry. A prefix whose matches are one family's plain rung and
    its variants names the plain rung (``c`` is ``container``, not ``container:paused``); any
    other prefix with several matches is one ``UsageError`` line listing them."""
    key = given.strip().lower()
    if key in registry.names(include_hidden=True):
        return key
    known = registry.names()
    named = [name for name in known if key and name.startswith(key)]
    if len(named) == 1:
        return named[0]
    families = {registry.family_of(name) for name in named}
    if len(families) == 1 and (plain := families.pop()) in named:
        return plain
    if named:
        raise UsageError(f"{label}: '{given.strip()}' could be {' or '.join(named)}; spell more of it")
    raise UsageError(f"{label}: '{given.strip()}' is not a runtime ({runtime_choices(known)})")


def runtime_choices(known: tuple[str, ...] | None = None) -> str:
    """What a bad runtime name's line offers instead: the families, one rung as an example and
    the letters, so the line stays short however many rungs are registered (``edgelab
    runtimes`` lists them all). Tests build the expected line from it."""
    known = registry.names() if known is None else known
    plain = [name for name in known if ":" not in name]
    rungs = [name for name in known if ":" in name]
    letters = ", ".join(_family_letters(known))
    if not rungs:
        return f"{', '.join(plain)}, or {letters}"
    return f"{', '.join(plain)}, a rung such as {rungs[0]}, or {letters}; edgelab runtimes lists every rung"


def _family_letters(known: tuple[str, ...]) -> list[str]:
    """The one-letter spellings that name a runtime (each family's first letter, where no other
    family starts with it), in registry order."""
    plain = [name for name in known if ":" not in name]
    firsts = [name[0] for name in plain]
    return [letter for letter in dict.fromkeys(firsts) if firsts.count(letter) == 1]


def _resident_count(text: str, label: str) -> int:
    value = text.strip().replace("_", "")
    if not value.isdigit():
        if value.startswith("-") and value[1:].isdigit():
            raise UsageError(f"{label} must be 0 or more, not {value}")
        raise UsageError(f"{label} must be a whole number of instances, not '{text.strip()}'")
    count = int(value)
    if count > MAX_RESIDENT:
        raise UsageError(f"{label} must be at most {MAX_RESIDENT:,}, not {count:,}")
    return count


def parse_resident(text: str, runtimes: tuple[str, ...], label: str = "--resident") -> dict[str, int]:
    """Resident instances per runtime, from the one spelling the CLI and the TUI both accept.

    ``N`` holds N of every runtime in ``runtimes``; ``runtime=N,...`` one count per runtime,
    each named in full or by an unambiguous prefix, in any case (``c=20,s=50,w=2000`` is
    ``container=20,subprocess=50,wasm=2000``). The answer has a count for every runtime in
    ``runtimes``: 0 where the text names none.

    A runtime named but not among ``runtimes`` is left out rather than refused: the text is a
    table of counts, and which runtimes run is chosen elsewhere (the TUI's toggles,
    ``--runtimes``), so switching one off never makes the field wrong. ``unselected_in_resident``
    tells a front end which were left out, to say so. Bad input is one ``UsageError`` line
    that starts with ``label`` (the TUI passes the field's name).
    """
    if "=" not in text:
        if "," in text or not text.strip():
            raise UsageError(f"{label} takes N or runtime=N,... (e.g. c=20,s=50,w=2000), not '{text.strip()}'")
        count = _resident_count(text, label)
        return {name: count for name in runtimes}
    found = _named_counts(text, label)
    return {name: found.get(name, 0) for name in runtimes}


def unselected_in_resident(text: str, runtimes: tuple[str, ...]) -> list[str]:
    """The runtimes ``text`` gives a count to that are not among ``runtimes`` (for a note)."""
    if "=" not in text:
        return []
    return [name for name, count in _named_counts(text, "--resident").items() if name not in runtimes and count]


def _named_counts(text: str, label: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for part in text.split(","):
        given, equals, value = part.partition("=")
        if not equals or not given.strip():
            raise UsageError(f"{label} takes N or runtime=N,... (e.g. c=20,s=50,w=2000); '{part.strip()}' is neither")
        name = resolve_runtime_name(given, label)
        if name in found:
            raise UsageError(f"{label} names {name} twice")
        found[name] = _resident_count(value, f"{label} for {name}")
    return found
