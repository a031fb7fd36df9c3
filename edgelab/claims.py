"""``edgelab claims``: published claims beside what this machine measured (owner: the claims helper)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    sub.add_parser("claims", help="published claims beside what this machine measured, with a verdict")


def cmd_claims(args: argparse.Namespace) -> int:
    from edgelab.errors import UsageError

    raise UsageError("edgelab claims: not built yet")
