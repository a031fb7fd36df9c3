"""The top line: host facts and versions (filled in by a worker) and the lab's own cost."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.widgets import Static

from edgelab.stats import format_bytes

PENDING = "…"


def host_line(
    facts: Mapping[str, Any] | None, versions: Mapping[str, str] | None, width: int | None = None
) -> str:
    """'Xeon E5 · 2 cores · 7.8 GiB · Docker 20.10.24 · wasmtime 50.0.1'; … while unknown.
    Within ``width``: as many whole facts as fit, then '…' (never '8.0 GiB RAM ·…')."""
    if facts is None:
        parts = [f"CPU {PENDING}"]
    else:
        memory = facts.get("memory_total_bytes")
        parts = [
            str(facts.get("cpu_model", "?")),
            f"{facts.get('cpu_cores_logical', '?')} cores",
            f"{format_bytes(memory)} RAM" if memory else "RAM ?",
        ]
    if versions is None:
        parts += [f"Docker {PENDING}", f"wasmtime {PENDING}"]
    else:
        parts.append(f"Docker {versions.get('docker_engine', 'n/a')}")
        parts.append(f"wasmtime {versions.get('wasmtime', 'n/a')}")
    return fit_parts(parts, width)


def fit_parts(parts: list[str], width: int | None, sep: str = " · ") -> str:
    """``parts`` joined, keeping only whole parts within ``width`` (a '…' says some are left
    out); a first part longer than the width is the one thing cut."""
    line = sep.join(parts)
    if width is None or len(line) <= width:
        return line
    kept: list[str] = []
    for part in parts:
        if len(sep.join([*kept, part, "…"])) > width:
            break
        kept.append(part)
    if not kept:
        cut = parts[0][: max(0, width - 1)]
        return (cut.rsplit(" ", 1)[0] if " " in cut else cut) + "…"
    return sep.join([*kept, "…"])


class HostBar(Horizontal):
    """Host facts on the left, the lab's CPU use and first-paint time on the right."""

    facts: reactive[dict[str, Any] | None] = reactive(None)
    versions: reactive[dict[str, str] | None] = reactive(None)
    cost: reactive[str] = reactive("")

    def compose(self) -> ComposeResult:
        yield Static("edgelab", id="brand")
        yield Static(host_line(None, None), id="host-facts")
        yield Static("", id="lab-cost")

    def watch_facts(self) -> None:
        self._show_facts()

    def watch_versions(self) -> None:
        self._show_facts()

    def watch_cost(self, old: str, cost: str) -> None:
        if self.is_mounted:
            # As wide as its text: a layout pass only when the text's length changes.
            self.query_one("#lab-cost", Static).update(cost, layout=len(old) != len(cost))
            self.call_after_refresh(self._show_facts)

    def on_resize(self) -> None:
        self.call_after_refresh(self._show_facts)

    def _show_facts(self) -> None:
        if self.is_mounted:
            shown = self.query_one("#host-facts", Static)
            width = shown.content_size.width or None
            shown.update(host_line(self.facts, self.versions, width))
