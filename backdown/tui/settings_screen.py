"""Settings: what a profile has beyond where it goes, which the menu's Edit does not ask:
mode (copy or mirror), excludes, how long versions are kept (and the daily, weekly,
monthly snapshots beside them), parallel transfers, the transport, encryption and logon,
the schedule, and where alerts go.
Each is checked as it changes; Ctrl-S saves them all or says which one is wrong. A changed
schedule goes through the same steps as `backdown schedule set` (the OS job, and the
password a scheduled run can reach)."""

from __future__ import annotations

import dataclasses
import os

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Checkbox, Footer, Header, Input, Label, Select, Static, TextArea

from backdown.environment import Environment
from backdown.errors import BackdownError, UsageError
from backdown.profile import (
    AUTH_METHODS,
    MODES,
    Profile,
    validate_excludes,
    validate_keep_days,
    validate_profile,
    validate_schedule,
)
from backdown.profile_store import ProfileStore
from backdown.schedule_commands import remove_schedule, set_schedule

PROTOCOLS = ("auto", "smb2", "smb3")
COUNTS = ("keep_daily", "keep_weekly", "keep_monthly")


class SettingsScreen(Screen[None]):
    BINDINGS = [Binding("ctrl+s", "save", "Save"), Binding("escape", "app.pop_screen", "Back")]
    DEFAULT_CSS = """
    SettingsScreen Label { margin-top: 1; color: $text-muted; }
    SettingsScreen Input, SettingsScreen Select, SettingsScreen TextArea { margin: 0 1; }
    SettingsScreen TextArea { height: 5; }
    SettingsScreen #problem { color: $error; height: auto; margin: 1 1 0 1; }
    """

    def __init__(self, env: Environment, profile: Profile) -> None:
        super().__init__()
        self.env = env
        self.profile = profile

    def compose(self) -> ComposeResult:
        p = self.profile
        yield Header()
        with VerticalScroll():
            yield Static(f"Settings of '{p.name}' ({p.local} -> {p.unc})")
            yield Label("Mode: copy keeps files deleted here; mirror moves them into versions")
            yield Select([(m, m) for m in MODES], value=p.mode, allow_blank=False, id="mode")
            yield Label("Exclude (one gitignore-style pattern per line, like *.tmp or cache/)")
            yield TextArea("\n".join(p.excludes), id="excludes")
            yield Label("Keep earlier versions for this many days (0: all)")
            yield Input(str(p.keep_versions_days), id="keep_versions_days", compact=True)
            for count in COUNTS:
                yield Label(f"Also keep the newest snapshot of each of the last N "
                            f"{count.removeprefix('keep_')} periods (0: off)")  # fmt: skip
                yield Input(str(getattr(p, count)), id=count, compact=True)
            yield Label("Parallel transfers (connections a run uses, 1 to 64)")
            yield Input(str(p.transfers), id="transfers", compact=True)
            yield Label("Protocol (auto: SMB 2 or SMB 3 as the server needs)")
            yield Select([(x, x) for x in PROTOCOLS], value=p.protocol, allow_blank=False,
                         id="protocol")  # fmt: skip
            yield Checkbox("Require encryption (SMB 3)", value=p.encrypt, id="encrypt")
            yield Label("Log on with (auto: the password, else your Kerberos ticket)")
            yield Select([(x, x) for x in AUTH_METHODS], value=p.auth, allow_blank=False,
                         id="auth")  # fmt: skip
            yield Label("Back up automatically every (like 24h, 4h, 30m; empty: only by hand)")
            yield Input(p.schedule_every, id="every", compact=True)
            yield Label("... only between (HH:MM-HH:MM; empty: any time of day)")
            yield Input(p.schedule_between, id="between", compact=True)
            yield Label("... only on (like mon-fri; empty: every day)")
            yield Input(p.schedule_days, id="days", compact=True)
            yield Checkbox(
                "Keep the password in a file only you can read (scheduled runs on Linux "
                "cannot open the keyring)",
                id="keep_file",
            )
            yield Label("Alert when a backup fails or is overdue (Apprise URLs, one per line, "
                        "like mailto://... or ntfy://...; none with a password in it)")  # fmt: skip
            yield TextArea("\n".join(p.notify), id="notify")
            yield Label("... and the targets in this Apprise config file (mode 600; empty: none)")
            yield Input(p.notify_config, id="notify_config", compact=True)
            yield Label("Ping this healthchecks-style URL at each backup (empty: none)")
            yield Input(p.ping_url, id="ping_url", compact=True)
            yield Static("", id="problem")
        yield Footer()

    def edited(self, base: Profile | None = None) -> Profile:
        """The values on screen over `base` (the profile as saved now: a change made
        meanwhile elsewhere to what this screen does not show is kept); UsageError says
        which value is wrong."""
        values: dict[str, object] = {
            "mode": self.query_one("#mode", Select).value,
            "excludes": validate_excludes(_lines(self.query_one("#excludes", TextArea).text)),
            "keep_versions_days": validate_keep_days(
                self.query_one("#keep_versions_days", Input).value
            ),
            "protocol": self.query_one("#protocol", Select).value,
            "encrypt": self.query_one("#encrypt", Checkbox).value,
            "auth": self.query_one("#auth", Select).value,
            "transfers": self.query_one("#transfers", Input).value,
            "notify": _lines(self.query_one("#notify", TextArea).text),
            "notify_config": self.query_one("#notify_config", Input).value.strip(),
            "ping_url": self.query_one("#ping_url", Input).value.strip(),
        }
        for count in COUNTS:
            values[count] = self.query_one(f"#{count}", Input).value
        every, between, days = self.schedule()
        if every:
            validate_schedule(every, between, days)
        profile = validate_profile(
            dataclasses.replace(base or self.profile, **values)  # type: ignore[arg-type]
        )
        if profile.notify_config and not os.path.isfile(profile.notify_config):
            raise UsageError(f"{profile.notify_config} is not a file: create it (mode 600) first")
        return profile

    def schedule(self) -> tuple[str, str, str]:
        return tuple(  # type: ignore[return-value]
            self.query_one(f"#{f}", Input).value.strip() for f in ("every", "between", "days")
        )

    def on_input_changed(self) -> None:
        self._check()

    def on_select_changed(self) -> None:
        self._check()

    def on_checkbox_changed(self) -> None:
        self._check()

    def _check(self) -> Profile | None:
        problem = self.query_one("#problem", Static)
        try:
            profile = self.edited()
        except UsageError as err:
            problem.update(str(err))
            return None
        problem.update("")
        return profile

    def action_save(self) -> None:
        if self._check() is None:
            return
        try:
            store = ProfileStore.load(self.env.config_path)
            profile = self.edited(store.get(self.profile.name))
            store.replace(profile.name, profile)
            store.save()
            lines = self._save_schedule(store, profile)
        except BackdownError as err:
            self.query_one("#problem", Static).update(f"error: {err}")
            return
        if lines:
            self.app.notify("\n".join(lines), timeout=10)
        self.app.pop_screen()

    def _save_schedule(self, store: ProfileStore, profile: Profile) -> list[str]:
        """The schedule as on screen, when it changed: set (with its OS job) or removed."""
        every, between, days = self.schedule()
        if every:
            every, between, days = validate_schedule(every, between, days)
        now = (profile.schedule_every, profile.schedule_between, profile.schedule_days)
        if (every, between, days) == now:
            return []
        if not every:
            return remove_schedule(self.env, store, profile.name)
        keep_file = self.query_one("#keep_file", Checkbox).value
        return set_schedule(self.env, store, profile.name, every, between, days,
                            save_password_file=keep_file)  # fmt: skip


def _lines(text: str) -> list[str]:
    """A text area's lines that say something, each stripped."""
    return [line.strip() for line in text.splitlines() if line.strip()]
