"""A person's own function: ``edgelab add`` saves artifacts as a workload folder; ``edgelab run
--wasm/--image/--command`` measures them without saving (owner: the functions helper)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    add = sub.add_parser("add", help="save your own function (--wasm, --image, --command) as a workload")
    add.add_argument("name")


def cmd_add(args: argparse.Namespace) -> int:
    from edgelab.errors import UsageError

    raise UsageError("edgelab add: not built yet")
