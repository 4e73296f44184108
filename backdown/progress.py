"""Subscribers: how a run reports what it does. The engine calls them; it never prints.

A progress bar is one subscriber, a verbose log another, and tests use Recording.
Methods may be called from worker threads.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from backdown.plan import Plan


class Subscriber:
    """Receives a run's events; every method is optional."""

    def on_plan(self, operation: str, plan: Plan) -> None:
        """The plan is known; copies are about to start."""

    def on_file_start(self, path: str, size: int) -> None:
        """A file transfer starts (again, on a retry)."""

    def on_progress(self, nbytes: int) -> None:
        """nbytes more have crossed the wire."""

    def on_file_done(self, path: str, error: str | None) -> None:
        """A file finished: error is None on success."""

    def on_notice(self, message: str) -> None:
        """Something worth telling a user who asked for detail (a retry, a skipped link)."""

    def on_finish(self) -> None:
        """The run is over; release the terminal."""


class Fanout(Subscriber):
    """Sends each event to several subscribers."""

    def __init__(self, *subscribers: Subscriber) -> None:
        self.subscribers = subscribers

    def on_plan(self, operation: str, plan: Plan) -> None:
        for s in self.subscribers:
            s.on_plan(operation, plan)

    def on_file_start(self, path: str, size: int) -> None:
        for s in self.subscribers:
            s.on_file_start(path, size)

    def on_progress(self, nbytes: int) -> None:
        for s in self.subscribers:
            s.on_progress(nbytes)

    def on_file_done(self, path: str, error: str | None) -> None:
        for s in self.subscribers:
            s.on_file_done(path, error)

    def on_notice(self, message: str) -> None:
        for s in self.subscribers:
            s.on_notice(message)

    def on_finish(self) -> None:
        for s in self.subscribers:
            s.on_finish()


class Recording(Subscriber):
    """Keeps every event, for tests and for the JSON summary."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[tuple[str, object]] = []
        self.bytes = 0

    def _add(self, kind: str, value: object) -> None:
        with self._lock:
            self.events.append((kind, value))

    def on_file_start(self, path: str, size: int) -> None:
        self._add("start", path)

    def on_progress(self, nbytes: int) -> None:
        with self._lock:
            self.bytes += nbytes

    def on_file_done(self, path: str, error: str | None) -> None:
        self._add("done", (path, error))

    def on_notice(self, message: str) -> None:
        self._add("notice", message)


class NoticePrinter(Subscriber):
    """Prints notices (and, when verbose, each finished file) on a stream."""

    def __init__(self, stream: IO[str], verbose: bool) -> None:
        self.stream = stream
        self.verbose = verbose
        self._lock = threading.Lock()

    def on_notice(self, message: str) -> None:
        with self._lock:
            print(f"note: {message}", file=self.stream, flush=True)

    def on_file_done(self, path: str, error: str | None) -> None:
        if self.verbose and error is None:
            with self._lock:
                print(f"  done  {path}", file=self.stream, flush=True)


class RichProgress(Subscriber):
    """A rich progress bar with bytes, files, rate and ETA; appears once a run passes 1 s.

    The rate and the time left come from a Tally (over the last 5 s), not rich's own
    estimate, which swung with every burst of small files."""

    DELAY = 1.0
    REDRAW = 0.25  # seconds between updates of the rate and time left

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self._lock = threading.Lock()
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._tally = Tally()
        self._began = time.monotonic()
        self._sampled = 0.0
        self._operation = "Restoring"

    def on_plan(self, operation: str, plan: Plan) -> None:
        self._tally.on_plan(operation, plan)
        self._operation = {"upload": "Backing up", "verify": "Verifying"}.get(
            operation, "Restoring"
        )
        self._began = time.monotonic()

    def _ensure_started(self) -> None:
        if self._progress is not None or time.monotonic() - self._began < self.DELAY:
            return
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[files]}"),
            TextColumn("{task.fields[eta]}"),
            console=Console(file=self.stream),
            transient=True,
        )
        self._task = self._progress.add_task(
            self._operation,
            total=self._tally.bytes_total or None,
            completed=self._tally.bytes_done,
            files=self._files_text(),
            rate="",
            eta="",
        )
        self._progress.start()

    def _files_text(self) -> str:
        return f"{self._tally.files_done:,}/{self._tally.files_total:,} files"

    def _update(self) -> None:
        self._ensure_started()
        if self._progress is None or self._task is None:
            return
        now = time.monotonic()
        if now - self._sampled >= self.REDRAW:
            self._sampled = now
            self._tally.sample()
            rate, eta = self._tally.rate(), self._tally.eta()
            self._progress.update(
                self._task,
                rate=f"{rate / 1e6:.1f} MB/s" if rate > 0 else "",
                eta=_clock(eta) if eta is not None else "",
            )
        self._progress.update(
            self._task, completed=self._tally.bytes_done, files=self._files_text()
        )

    def on_progress(self, nbytes: int) -> None:
        with self._lock:
            self._tally.on_progress(nbytes)
            self._update()

    def on_file_done(self, path: str, error: str | None) -> None:
        with self._lock:
            self._tally.on_file_done(path, error)
            self._update()

    def on_finish(self) -> None:
        with self._lock:
            if self._progress is not None:
                self._progress.stop()
                self._progress = None


def _clock(seconds: float) -> str:
    """Time left as h:mm:ss."""
    whole = int(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


class Tally(Subscriber):
    """A run's progress as numbers an interface polls (the full-screen UI redraws from it a
    few times a second): totals, what is done, the files in flight, failures so far, and a
    rate smoothed over the last few seconds, so it and the ETA do not swing with every
    chunk. Thread-safe: the engine's workers report from their own threads."""

    WINDOW = 5.0  # seconds the rate is taken over

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.operation = ""
        self.files_total = 0
        self.bytes_total = 0
        self.files_done = 0
        self.bytes_done = 0
        self.in_flight: dict[str, int] = {}  # path -> size
        self.failures: list[tuple[str, str]] = []
        self.notices: list[str] = []
        self.finished = False
        self._samples: deque[tuple[float, int]] = deque()

    def on_plan(self, operation: str, plan: Plan) -> None:
        with self._lock:
            self.operation = operation
            self.files_total = len(plan.copies)
            self.bytes_total = plan.copy_bytes
            self._samples.append((self._clock(), 0))

    def on_file_start(self, path: str, size: int) -> None:
        with self._lock:
            self.in_flight[path] = size

    def on_progress(self, nbytes: int) -> None:
        with self._lock:
            self.bytes_done += nbytes

    def on_file_done(self, path: str, error: str | None) -> None:
        with self._lock:
            self.files_done += 1
            self.in_flight.pop(path, None)
            if error is not None:
                self.failures.append((path, error))

    def on_notice(self, message: str) -> None:
        with self._lock:
            self.notices.append(message)

    def on_finish(self) -> None:
        with self._lock:
            self.finished = True

    def sample(self) -> None:
        """Note the bytes done now (the interface calls this at each redraw)."""
        now = self._clock()
        with self._lock:
            self._samples.append((now, self.bytes_done))
            while len(self._samples) > 2 and now - self._samples[1][0] >= self.WINDOW:
                self._samples.popleft()

    def rate(self) -> float:
        """Bytes per second over the last WINDOW seconds (0 until two samples apart)."""
        with self._lock:
            if len(self._samples) < 2:
                return 0.0
            (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0

    def eta(self) -> float | None:
        """Seconds left at the smoothed rate, or None when it cannot be told yet."""
        rate = self.rate()
        if rate <= 0 or not self.bytes_total:
            return None
        return max(0.0, (self.bytes_total - self.bytes_done) / rate)
