"""``edgelab whatif``: the simulator on the command line (owner: the simulator helper)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    sub.add_parser("whatif", help="simulate hours of traffic from a measured run (marked simulated)")


def cmd_whatif(args: argparse.Namespace) -> int:
    from edgelab.errors import UsageError

    raise UsageError("edgelab whatif: not built yet")
