"""The full-screen UI's application: its screens, and the environment they share."""

from __future__ import annotations

from textual.app import App
from textual.binding import Binding

from backdown.environment import Environment
from backdown.tui.home import HomeScreen


class BackDownApp(App[int]):
    """Home first; a run, a test and the password question are screens pushed over it."""

    TITLE = "BackDown"
    CSS = """
    #title { padding: 0 1; text-style: bold; }
    #detail { padding: 0 1; height: auto; }
    #empty { padding: 1 2; }
    DataTable { height: 1fr; }
    """
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", show=False)]

    def __init__(self, env: Environment) -> None:
        super().__init__()
        self.env = env

    def on_mount(self) -> None:
        self.push_screen(HomeScreen(self.env))
