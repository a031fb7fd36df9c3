"""The claims view (k): each published claim beside what this machine measured, with a verdict.

The table is ``edgelab.claims.check_claims`` over the history's newest runs, the same answer
``edgelab claims`` prints; it is read in a thread worker (the history is files on disk) and
nothing here measures or launches anything.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Static

from edgelab.errors import EdgelabError

#: The verdict beside the figures, before the long why and the source: at 120 columns it shows.
COLUMNS = ("claim", "stated", "measured here", "verdict", "why", "source", "run")
VERDICT_STYLE = {"holds": "green", "doesn't hold": "red", "not comparable": "yellow", "not measured yet": "dim"}
NO_RUNS = "no saved runs yet: edgelab run -w hello (or a ladder) saves one; then press k again"

#: What the view shows: the checks, and one line per run it could not read.
ClaimsLoader = Callable[[], tuple[Sequence[Any], Sequence[str]]]


def history_checks() -> tuple[list[Any], list[str]]:
    """``check_claims`` over the newest saved runs, read as ``edgelab claims`` reads them."""
    from edgelab.claims import artifact_sizes, check_claims, load_claims, load_runs

    runs, labels, notes = load_runs()
    if not runs:
        notes.append(NO_RUNS)
    claims = load_claims()
    return check_claims(runs, labels, claims=claims, sizes=artifact_sizes(claims)), notes


#: A source's title in the table (the whole title is in edgelab claims --json and the data file).
SOURCE_CHARS = 32


def _short(text: str, limit: int = SOURCE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


class ClaimsLoaded(Message):
    def __init__(self, checks: Sequence[Any], notes: Sequence[str], error: str | None) -> None:
        super().__init__()
        self.checks = list(checks)
        self.notes = list(notes)
        self.error = error


def check_row(check: Any) -> tuple[str | Text, ...]:
    """One claim's row; cells are plain text (a claim may hold brackets), the verdict coloured."""
    verdict = Text(check.verdict, style=VERDICT_STYLE.get(check.verdict, ""))
    return (
        check.claim.short,
        check.claim.stated,
        check.measured or "–",
        verdict,
        check.why,
        _short(check.claim.source.title),
        check.run or "–",
    )


class ClaimsScreen(Screen[None]):
    """Published claims and this machine's figures; escape goes back to the lab."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q", "dismiss", "back to the lab")]

    def __init__(self, loader: ClaimsLoader | None = None) -> None:
        super().__init__(id="claims")
        self.loader = loader or history_checks
        self.checks: list[Any] = []

    def compose(self) -> ComposeResult:
        yield Static(
            "[b]claims[/b] · each published claim beside what this machine measured"
            " (the newest saved run that has the figure; fake runs are never read)",
            id="claims-title",
        )
        yield Static("reading the history…", id="claims-status")
        table: DataTable[str | Text] = DataTable(id="claims-table", cursor_type="row", zebra_stripes=True)
        yield table
        yield Static("", id="claims-detail")
        yield Static("[b $accent]esc[/] back to the lab  · the same table as edgelab claims", id="claims-keys")

    def on_mount(self) -> None:
        table = self.query_one("#claims-table", DataTable)
        for column in COLUMNS:
            table.add_column(column, key=column)
        self.load()

    @work(thread=True, exclusive=True, group="claims", exit_on_error=False)
    def load(self) -> None:
        try:
            checks, notes = self.loader()
        except EdgelabError as exc:
            self.post_message(ClaimsLoaded([], [], str(exc)))
            return
        self.post_message(ClaimsLoaded(checks, notes, None))

    def on_claims_loaded(self, message: ClaimsLoaded) -> None:
        status = self.query_one("#claims-status", Static)
        if message.error is not None:
            status.update(f"⚠ {message.error}")
            return
        self.checks = message.checks
        table = self.query_one("#claims-table", DataTable)
        table.clear()
        for check in message.checks:
            table.add_row(*(Text(c) if isinstance(c, str) else c for c in check_row(check)))
        counts: dict[str, int] = {}
        for check in message.checks:
            counts[check.verdict] = counts.get(check.verdict, 0) + 1
        summary = " · ".join(f"{n} {verdict}" for verdict, n in counts.items())
        notes = f" · {'; '.join(message.notes)}" if message.notes else ""
        status.update(f"{len(message.checks)} claims: {summary or 'none'}{notes}")

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """The highlighted claim in full below the table: its why is longer than a column."""
        index = event.cursor_row
        if not 0 <= index < len(self.checks):
            return
        check = self.checks[index]
        source = check.claim.source
        where = f" · {source.url}" if source.url else ""
        self.query_one("#claims-detail", Static).update(
            Text(f"{check.claim.claim}\n{check.verdict}: {check.why}\nsource: {source.title}{where}")
        )

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
