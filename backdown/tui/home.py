"""Home: every profile as a row (where from and to, the last good backup, next due, state),
one key each for back up now and test; the current profile highlighted."""

from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from backdown.environment import Environment
from backdown.errors import BackdownError
from backdown.history import History
from backdown.overview import ProfileRow, profile_rows
from backdown.profile import Profile
from backdown.profile_store import ProfileStore

# What a coworker looks for first comes first: at 80 columns the route may run off the
# right edge, and the line under the table shows it for the highlighted profile.
COLUMNS = ("profile", "state", "last good backup", "next backup", "from -> to")
NO_PROFILE = "No profile yet: n makes one."


class HomeScreen(Screen[None]):
    BINDINGS = [
        Binding("b", "back_up", "Back up now"),
        Binding("r", "restore", "Restore"),
        Binding("t", "test", "Test"),
        Binding("e", "edit", "Edit"),
        Binding("s", "settings", "Settings"),
        Binding("h", "history", "History", show=False),
        Binding("n", "new", "New"),
        Binding("u", "use", "Make current", show=False),
        Binding("q", "app.quit", "Quit"),
        Binding("f5", "refresh", "Refresh", show=False),
    ]

    def __init__(self, env: Environment) -> None:
        super().__init__()
        self.env = env
        self.rows: list[ProfileRow] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="title")
        yield DataTable(id="profiles", cursor_type="row")
        yield Static(id="detail")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns(*COLUMNS)
        self.reload()
        if not self.rows:
            self.action_new()  # a first run starts with the new-profile form

    def on_screen_resume(self) -> None:
        self.reload()  # back from a run: its outcome shows in the row

    def reload(self) -> None:
        """Read the profiles and the history again (another program may have changed them)."""
        table = self.query_one(DataTable)
        title = self.query_one("#title", Static)
        try:
            store = ProfileStore.load(self.env.config_path)
        except BackdownError as err:
            title.update(f"error: {err}")
            return
        history = History.open(self.env.data_path)
        try:
            self.rows = profile_rows(store, history, time.time())
        finally:
            history.close()
        table.clear()
        for row in self.rows:
            name = f"* {row.name}" if row.current else f"  {row.name}"
            table.add_row(name, row.state, row.last_good, row.next_due, row.route, key=row.name)
        title.update(NO_PROFILE if not self.rows else f"{len(self.rows)} profiles (* = current)")
        current = next((i for i, r in enumerate(self.rows) if r.current), 0)
        if self.rows:
            table.move_cursor(row=current)
        self._show_detail()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        row = self.selected()
        detail = self.query_one("#detail", Static)
        if row is None:
            detail.update("")
            return
        why = f"\n{row.state}: {row.detail}" if row.detail else ""
        detail.update(f"{row.name}: {row.route}{why}")

    def selected(self) -> ProfileRow | None:
        if not self.rows:
            return None
        index = self.query_one(DataTable).cursor_row
        return self.rows[index] if 0 <= index < len(self.rows) else None

    def action_refresh(self) -> None:
        self.reload()

    def action_back_up(self) -> None:
        self._run("upload")

    def action_test(self) -> None:
        self._run("test")

    def action_restore(self) -> None:
        from backdown.tui.restore_screen import RestoreScreen

        row = self.selected()
        if row is not None:
            self.app.push_screen(RestoreScreen(self.env, row.name))

    def action_history(self) -> None:
        from backdown.tui.history_screen import HistoryScreen

        row = self.selected()
        if row is not None:
            self.app.push_screen(HistoryScreen(self.env, row.name))

    def action_new(self) -> None:
        from backdown.tui.profile_form import ProfileForm

        self.app.push_screen(ProfileForm(self.env))

    def action_edit(self) -> None:
        from backdown.tui.profile_form import ProfileForm

        profile = self._selected_profile()
        if profile is not None:
            self.app.push_screen(ProfileForm(self.env, profile))

    def action_settings(self) -> None:
        from backdown.tui.settings_screen import SettingsScreen

        profile = self._selected_profile()
        if profile is not None:
            self.app.push_screen(SettingsScreen(self.env, profile))

    def _selected_profile(self) -> Profile | None:
        """The highlighted profile as saved now (another program may have changed it)."""
        row = self.selected()
        if row is None:
            return None
        try:
            return ProfileStore.load(self.env.config_path).get(row.name)
        except BackdownError as err:
            self.query_one("#title", Static).update(f"error: {err}")
            return None

    def action_use(self) -> None:
        row = self.selected()
        if row is None:
            return
        store = ProfileStore.load(self.env.config_path)
        store.set_current(row.name)
        store.save()
        self.reload()

    def _run(self, operation: str) -> None:
        from backdown.tui.run_screen import RunScreen

        row = self.selected()
        if row is not None:
            self.app.push_screen(RunScreen(self.env, row.name, operation))
