"""History: the runs recorded on this computer for one profile, newest first: when, what
(backup, restore, test; by hand or scheduled), how it ended, what it moved, and each
failed file of the run highlighted."""

from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from backdown.environment import Environment
from backdown.history import History, RunRecord
from backdown.report import human_size

COLUMNS = ("when", "what", "outcome", "files", "size", "took")
LIMIT = 200


class HistoryScreen(Screen[None]):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]
    DEFAULT_CSS = """
    HistoryScreen DataTable { height: 1fr; }
    HistoryScreen #detail { height: auto; max-height: 10; padding: 0 1; }
    """

    def __init__(self, env: Environment, name: str) -> None:
        super().__init__()
        self.env = env
        self.profile_name = name
        self.records: list[RunRecord] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="title")
        yield DataTable(id="runs", cursor_type="row")
        yield Static(id="detail")
        yield Footer()

    def on_mount(self) -> None:
        history = History.open(self.env.data_path)
        try:
            self.records = history.runs(self.profile_name, LIMIT)
            problem = history.problem
        finally:
            history.close()
        table = self.query_one(DataTable)
        table.add_columns(*COLUMNS)
        for r in self.records:
            took = f"{r.finished - r.started:.0f} s" if r.finished is not None else "-"
            failed = f" ({r.files_failed} failed)" if r.files_failed else ""
            table.add_row(
                time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started)),
                f"{r.operation} ({r.trigger})",
                r.outcome,
                f"{r.files_transferred:,}{failed}",
                human_size(r.bytes_transferred),
                took,
            )
        title = f"Runs of '{self.profile_name}' on this computer, newest first"
        if not self.records:
            title = f"No run of '{self.profile_name}' is recorded on this computer yet"
        if problem:
            title += f" (note: {problem})"
        self.query_one("#title", Static).update(title)
        self._show_detail()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        detail = self.query_one("#detail", Static)
        index = self.query_one(DataTable).cursor_row
        if not 0 <= index < len(self.records):
            detail.update("")
            return
        record = self.records[index]
        lines = [record.message] if record.message else []
        lines += [f"failed: {f.path}: {f.error}" for f in record.failures]
        detail.update("\n".join(lines))
