"""The password question, when a run finds none saved: masked, used for this run only
(the menu's "Change the password" and `profile edit --password-stdin` save one)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Input, Label

from backdown.credentials import resolve_logon
from backdown.environment import Environment
from backdown.errors import BackdownError, CredentialsError
from backdown.profile import Profile
from backdown.profile_store import ProfileStore


class PasswordScreen(ModalScreen[str | None]):
    """Dismissed with the password typed, or None (Escape)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    PasswordScreen { align: center middle; }
    PasswordScreen > Vertical { width: 60; height: auto; border: round $accent; padding: 1 2; }
    """

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question)
            yield Input(password=True, id="password")
            yield Label("Enter = go on, Escape = cancel")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


def with_logon(
    screen: Screen[Any],
    env: Environment,
    name: str,
    then: Callable[[tuple[Profile, str]], None],
    fail: Callable[[str], None],
) -> None:
    """Settle how profile `name` logs on, asking for the password in a masked field when
    none is saved (for this run only), then call `then(profile, password)`; `fail(line)`
    when the profile cannot be read or the question is cancelled."""
    try:
        profile = ProfileStore.load(env.config_path).get(name)
        logon = resolve_logon(profile, env)
    except CredentialsError:
        screen.app.push_screen(
            PasswordScreen(f"Password for '{name}' (not saved):"),
            lambda typed: then((profile, typed)) if typed else fail("cancelled: no password given"),
        )
        return
    except BackdownError as err:
        fail(f"error: {err}")
        return
    then(logon)
