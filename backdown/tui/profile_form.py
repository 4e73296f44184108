"""The profile form: every field on one screen, each checked as it is typed (the check's
one line under the field), defaults shown. A path pasted from Windows Explorer
(\\\\server\\share\\folder) or a Mac (smb://server/share/folder) into Server fills server,
share and folder; DOMAIN\\user in User fills user and domain. "Test" (Ctrl-T) checks the
connection in place with what is typed, before anything is saved, and puts the cause
under the field at fault; "Save" (Ctrl-S) saves it, the password into the keyring or
the credentials file as the command line does."""

from __future__ import annotations

import dataclasses
import posixpath
from collections.abc import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Label, Static

from backdown import engine
from backdown.credentials import resolve_logon, save_password
from backdown.environment import Environment
from backdown.errors import (
    AuthError,
    BackdownError,
    ConnectError,
    CredentialsError,
    ShareError,
    UsageError,
)
from backdown.profile import (
    DEFAULT_PORT,
    Profile,
    parse_unc,
    split_domain_user,
    validate_domain,
    validate_local,
    validate_name,
    validate_port,
    validate_profile,
    validate_remote_folder,
    validate_server,
    validate_share,
    validate_user,
)
from backdown.profile_store import ProfileStore
from backdown.run_command import test_lines
from backdown.schedule_commands import lift_lockout

Check = Callable[[str], object]

# (field, label, placeholder): the order on screen.
FIELDS = (
    ("name", "Profile name", "like Documents or Alice Laptop"),
    ("local", "Local folder", "the folder to back up, like /home/alice/Documents"),
    ("server", "Server", "nas.example.lan, or paste \\\\server\\share\\folder"),
    ("port", "Port", str(DEFAULT_PORT)),
    ("share", "Share", "the share's name, like backup"),
    ("remote_folder", "Folder inside the share", "empty: the share's root"),
    ("user", "User", "empty: guest; DOMAIN\\user fills the domain"),
    ("domain", "Domain", "empty: none"),
    ("password", "Password", "hidden; empty keeps the saved one"),
)
CHECKS: dict[str, Check] = {
    "name": validate_name,
    "local": validate_local,
    "server": validate_server,
    "port": validate_port,
    "share": validate_share,
    "remote_folder": validate_remote_folder,
    "user": validate_user,
    "domain": validate_domain,
}
REQUIRED = ("name", "local", "server", "share")


class ProfileForm(Screen[str | None]):
    """A new profile (existing None) or an edit of one; dismissed with the name saved."""

    BINDINGS = [
        Binding("ctrl+s", "save", "Save"),
        Binding("ctrl+t", "test", "Test"),
        Binding("ctrl+b", "browse", "Browse shares and folders"),
        Binding("escape", "cancel", "Cancel"),
    ]
    DEFAULT_CSS = """
    ProfileForm Label.field { margin-top: 1; color: $text-muted; }
    ProfileForm Input { margin: 0 1; }
    ProfileForm Static.error { color: $error; height: auto; margin: 0 1; }
    ProfileForm #result { height: auto; margin-top: 1; }
    ProfileForm Horizontal { height: auto; margin-top: 1; }
    """

    def __init__(self, env: Environment, existing: Profile | None = None) -> None:
        super().__init__()
        self.env = env
        self.existing = existing
        self.filling = False  # set while the form fills fields itself (no re-checks)

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll():
            for field, label, placeholder in FIELDS:
                yield Label(label, classes="field")
                yield Input(
                    value=self._initial(field),
                    placeholder=placeholder,
                    password=field == "password",
                    id=field,
                    disabled=field == "name" and self.existing is not None,
                    compact=True,
                )
                yield Static("", id=f"{field}-error", classes="error")
            with Horizontal():
                yield Button("Browse", id="browse")
                yield Button("Test", id="test")
                yield Button("Save", id="save", variant="primary")
                yield Button("Cancel", id="cancel")
            yield Static("", id="result")
        yield Footer()

    def _initial(self, field: str) -> str:
        if self.existing is None:
            return str(DEFAULT_PORT) if field == "port" else ""
        if field == "password":
            return ""
        return str(getattr(self.existing, field))

    # ------------------------------------------------------------------ checking

    def value(self, field: str) -> str:
        return self.query_one(f"#{field}", Input).value.strip()

    def on_input_changed(self, event: Input.Changed) -> None:
        field = event.input.id or ""
        if self.filling:
            return
        if field == "server" and (unc := parse_unc(event.value)) is not None:
            self._fill(server=unc[0], share=unc[1], remote_folder=unc[2])
        elif field == "user" and "\\" in event.value:
            try:
                user, domain = split_domain_user(event.value.strip(), self.value("domain"))
            except UsageError as err:
                self._show_error("user", str(err))
                return
            self._fill(user=user, domain=domain)
        self.check(field)

    def _fill(self, **values: str) -> None:
        self.filling = True
        try:
            for field, text in values.items():
                self.query_one(f"#{field}", Input).value = text
        finally:
            self.filling = False
        for field in values:
            self.check(field)

    def check(self, field: str) -> bool:
        """Check one field now; its line under it says what is wrong, or nothing."""
        check = CHECKS.get(field)
        text = self.value(field) if field != "password" else ""
        problem = ""
        if field in REQUIRED and not text:
            problem = "needed"
        elif check is not None and text:
            try:
                check(text)
            except UsageError as err:
                problem = str(err)
        if field == "name" and not problem and self.existing is None:
            problem = self._name_taken(text)
        self._show_error(field, problem)
        return not problem

    def _name_taken(self, name: str) -> str:
        try:
            store = ProfileStore.load(self.env.config_path)
        except BackdownError as err:
            return str(err)
        taken = store.find(name)
        return f"a profile named '{taken.name}' already exists" if taken else ""

    def _show_error(self, field: str, text: str) -> None:
        self.query_one(f"#{field}-error", Static).update(text)

    def profile(self, base: Profile | None = None) -> Profile | None:
        """The profile as typed, over `base` (the profile as saved now, so a setting this
        form does not show keeps a change made meanwhile elsewhere), or None (and every
        field's problem shown)."""
        valid = [self.check(field) for field, _, _ in FIELDS if field != "password"]
        if not all(valid):
            return None
        base = base or self.existing or Profile(name="", local="", server="", share="")
        profile = dataclasses.replace(
            base,
            name=self.value("name"),
            local=self.value("local"),
            server=self.value("server"),
            port=int(self.value("port") or DEFAULT_PORT),
            share=self.value("share"),
            remote_folder=self.value("remote_folder"),
            user=self.value("user"),
            domain=self.value("domain"),
        )
        try:
            return validate_profile(profile)
        except UsageError as err:
            self.query_one("#result", Static).update(f"error: {err}")
            return None

    # ------------------------------------------------------------------ actions

    def on_button_pressed(self, event: Button.Pressed) -> None:
        actions = {"test": self.action_test, "save": self.action_save,
                   "cancel": self.action_cancel, "browse": self.action_browse}  # fmt: skip
        actions[event.button.id or "cancel"]()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_save(self) -> None:
        password = self.query_one("#password", Input).value
        try:
            store = ProfileStore.load(self.env.config_path)
            saved = store.get(self.existing.name) if self.existing is not None else None
            profile = self.profile(saved)
            if profile is None:
                return
            if self.existing is None:
                store.add(profile)
                store.set_current(profile.name)
            else:
                store.replace(profile.name, profile)
            store.save()
            if password and profile.user:
                save_password(profile, password, self.env)
                store.replace(profile.name, profile)  # it may point at its own file now
                store.save()
                lift_lockout(self.env, profile.name)
        except BackdownError as err:
            self.query_one("#result", Static).update(f"error: {err}")
            return
        self.dismiss(profile.name)

    def _logon(self, profile: Profile) -> tuple[Profile, str] | None:
        """How a test or a browse logs on: with the password typed; else the one saved for
        this profile, or the user's Kerberos ticket (auth auto). None, and why shown under
        Password, when there is none: an empty password is never tried (a server counts it
        as a failed logon)."""
        typed = self.query_one("#password", Input).value
        if typed or not profile.user:
            return profile, typed
        if self.existing is not None:  # the saved password is filed under the real name
            profile = dataclasses.replace(profile, name=self.existing.name)
        try:
            return resolve_logon(profile, self.env)
        except CredentialsError:
            self._show_error("password", "type the password first")
        except BackdownError as err:
            self._show_error("password", str(err))
        return None

    def action_browse(self) -> None:
        """Pick the share from the server's list, then the folder from the share's."""
        if not all(self.check(field) for field in ("server", "port", "user", "domain")):
            return
        share = self.value("share")
        draft = Profile(name="browse", local=".", server=self.value("server"),
                        share=share or "IPC$", port=int(self.value("port") or DEFAULT_PORT),
                        user=self.value("user"), domain=self.value("domain"),
                        remote_folder=self.value("remote_folder"))  # fmt: skip
        logon = self._logon(draft)
        if logon is None:
            return
        self.query_one("#result", Static).update("listing ...")
        self.run_worker(lambda: self._browse(*logon, bool(share)), thread=True,
                        exit_on_error=False)  # fmt: skip

    def _browse(self, draft: Profile, password: str, has_share: bool) -> None:
        """In a worker thread: the shares (no share typed yet) or the folders below the
        folder typed; the pick is offered on the screen."""
        try:
            if not has_share:
                shares = engine.shares_on(draft, password)
                choices = [(f"{s.name}  {s.comment}".rstrip(), s.name) for s in shares]
                title, field = f"Shares on {draft.server}", "share"
            else:
                folders = engine.folders_in(draft, password, draft.remote_folder)
                base = draft.remote_folder.strip("/")
                choices = [(f"(this folder: {base or 'the share root'})", base)]
                if base:
                    up = posixpath.dirname(base)
                    choices.append((f"../  (up to {up or 'the share root'})", up))
                choices += [(name + "/", f"{base}/{name}" if base else name) for name in folders]
                title, field = f"Folders in {draft.share}/{base}", "remote_folder"
        except BackdownError as err:
            self.app.call_from_thread(self._tested, None, err)
            return
        self.app.call_from_thread(self._offer, title, field, choices)

    def _offer(self, title: str, field: str, choices: list[tuple[str, str]]) -> None:
        from backdown.tui.choice import ChoiceScreen

        self.query_one("#result", Static).update("")
        if not choices:
            self.query_one("#result", Static).update(f"{title}: none found; type it")
            return
        self.app.push_screen(
            ChoiceScreen(title, choices), lambda picked: self._picked(field, picked)
        )

    def _picked(self, field: str, value: str | None) -> None:
        if value is None:
            return
        browsed = self.value("remote_folder").strip("/")
        self._fill(**{field: value})
        if field == "remote_folder" and value != browsed:
            self.action_browse()  # into the folder picked (or up): its own list next

    def action_test(self) -> None:
        profile = self.profile()
        if profile is None:
            return
        logon = self._logon(profile)
        if logon is None:
            return
        self.query_one("#result", Static).update("testing ...")
        self.run_worker(lambda: self._test(*logon), thread=True, exit_on_error=False)

    def _test(self, profile: Profile, password: str) -> None:
        """In a worker thread: the connection check, its outcome shown in place."""
        try:
            report = engine.check_connection(profile, password)
        except BackdownError as err:
            self.app.call_from_thread(self._tested, None, err)
        else:
            self.app.call_from_thread(self._tested, test_lines(report), None)

    def _tested(self, lines: list[str] | None, error: BackdownError | None) -> None:
        result = self.query_one("#result", Static)
        if error is None:
            result.update("\n".join(lines or []))
            return
        result.update(f"error: {error}")
        self._show_error(_field_at_fault(error), str(error))


def _field_at_fault(error: BackdownError) -> str:
    """The field a failed test points at: the password for a refused logon, the share for
    a missing share or folder, the server for a server that cannot be reached."""
    if isinstance(error, AuthError):
        return "password"
    if isinstance(error, ShareError):
        return "share"
    if isinstance(error, ConnectError):
        return "server"
    return "server"
