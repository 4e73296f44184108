"""Run: a backup (or a connection test) with live progress: an overall bar, bytes, files,
a rate smoothed over a few seconds and the time left, the files in flight, a log of
failures; Escape or Ctrl-C cancels cleanly ("run it again to resume"). At the end, the
summary in plain words. The run itself goes in a thread of its own; the screen redraws
from a Tally a few times a second."""

from __future__ import annotations

import os
import threading

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, ProgressBar, RichLog, Static

from backdown.environment import Environment
from backdown.errors import BackdownError, Cancelled
from backdown.paths import REPLACED_DIR
from backdown.profile import Profile
from backdown.progress import Tally
from backdown.report import RunReport, human_size, plural
from backdown.run_command import Output, RunHooks, execute, test_lines
from backdown.run_options import RunOptions
from backdown.scheduled_runs import age_text
from backdown.tui.password import with_logon

TITLES = {"upload": "Backing up", "download": "Restoring", "test": "Testing the connection of"}
REDRAW_SECONDS = 0.25


class RunScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "stop", "Cancel / back"),
        Binding("ctrl+c", "stop", "Cancel", show=False, priority=True),
    ]

    def __init__(
        self, env: Environment, name: str, operation: str, options: RunOptions | None = None
    ) -> None:
        super().__init__()
        self.env = env
        self.profile_name = name
        self.operation = operation
        self.options = options or RunOptions()
        self.tally = Tally()
        self.cancel = threading.Event()
        self.done = False
        self.report: RunReport | None = None
        self.error: str | None = None
        self.logged = 0  # failures written to the log so far

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="title")
        yield ProgressBar(id="bar", show_eta=False)
        yield Static(id="numbers")
        yield Static(id="flight")
        yield RichLog(id="log", wrap=True, markup=False)
        yield Static(id="summary")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#bar", ProgressBar).display = False
        verb = TITLES.get(self.operation, self.operation)
        self.query_one("#title", Static).update(f"{verb} '{self.profile_name}'")
        with_logon(self, self.env, self.profile_name, self._start,
                   lambda line: self._finished(None, line))  # fmt: skip

    def _start(self, logon: tuple[Profile, str]) -> None:
        self.query_one("#title", Static).update(
            f"{TITLES.get(self.operation, self.operation)} '{logon[0].name}': "
            f"{logon[0].local} -> {logon[0].unc}"
        )
        self.set_interval(REDRAW_SECONDS, self.redraw)
        hooks = RunHooks(logon=logon, subscriber=self.tally, cancel=self.cancel)
        self.run_worker(lambda: self._work(logon[0], hooks), thread=True, exit_on_error=False)

    def _work(self, profile: Profile, hooks: RunHooks) -> None:
        """In the worker thread: the run, recorded in the history like any other."""
        try:
            report = execute(self.env, profile, self.operation, self.options, Output(),
                             hooks=hooks)  # fmt: skip
        except Cancelled:
            self.app.call_from_thread(
                self._finished, None,
                "cancelled: nothing more was copied; run it again to resume where it stopped",
            )  # fmt: skip
        except BackdownError as err:
            self.app.call_from_thread(self._finished, None, f"error: {err}")
        else:
            self.app.call_from_thread(self._finished, report, None)

    def redraw(self) -> None:
        tally = self.tally
        tally.sample()
        bar = self.query_one("#bar", ProgressBar)
        # Shown once the plan says how much is to go: no bouncing bar before that.
        bar.display = bool(tally.bytes_total)
        if tally.bytes_total:
            bar.update(total=tally.bytes_total, progress=tally.bytes_done)
        rate, eta = tally.rate(), tally.eta()
        numbers = (
            f"{human_size(tally.bytes_done)} of {human_size(tally.bytes_total)}, "
            f"{tally.files_done:,} of {plural(tally.files_total, 'file')}"
        )
        if rate > 0:
            numbers += f", {human_size(int(rate))}/s"
        if eta is not None:
            numbers += f", about {age_text(eta)} left" if eta >= 60 else ", under a minute left"
        # Nothing to count before the plan (and nothing at all for a run that ended first).
        self.query_one("#numbers", Static).update(numbers if tally.operation else "")
        flight = sorted(tally.in_flight)
        self.query_one("#flight", Static).update(
            "now: " + ", ".join(flight[:4]) + (" ..." if len(flight) > 4 else "") if flight else ""
        )
        log = self.query_one("#log", RichLog)
        for path, error in tally.failures[self.logged :]:
            log.write(f"failed: {path}: {error}")
            self.logged += 1

    def _finished(self, report: RunReport | None, error: str | None) -> None:
        self.done = True
        self.report, self.error = report, error
        if report is not None:
            self.redraw()
            if report.operation == "test":
                lines = test_lines(report)
            else:
                lines = report.summary_lines()
            kept = os.path.join(self.options.target or "", REPLACED_DIR)
            if report.operation == "download" and self.options.target and os.path.isdir(kept):
                lines.append(f"Local files that differed were kept in {kept}")
        else:
            lines = [error or ""]
        self.query_one("#summary", Static).update(
            "\n".join(lines) + "\n\nEscape: back to the profiles"
        )

    def action_stop(self) -> None:
        if self.done:
            self.app.pop_screen()
            return
        self.cancel.set()
        self.query_one("#summary", Static).update("cancelling ...")
