"""The worker pool: one SMB connection per worker, retries with backoff, cancellation.

Errors are classified the rclone way:
- ConnectError (dropped connection, timeout): reconnect and retry the file, with backoff;
  if every retry of one file fails so, the connection is gone for all of them and the run
  stops (exit 3) instead of waiting out every file; a server that stops answering is
  declared dead sooner: if reconnecting after that also meets silence (NoAnswer);
- RemoteFileError / LocalFileError (this file only): record it and go on;
- anything else BackDown raises (AuthError, ShareError): fatal, stop the run.

A worker may take several jobs at once (Batching: small new files, whose requests then
share round trips). A connection lost mid-batch retries only the jobs not yet told done,
one at a time; a batch that got some done before the loss starts its count of tries again.

The pool opens its sessions with the `connect` it is given (smb.connect in a real run), so
a test can run the engine over another session implementation.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Generic, TypeVar

from backdown.errors import (
    BackdownError,
    Cancelled,
    ConnectError,
    LocalFileError,
    NoAnswer,
    RemoteFileError,
)
from backdown.progress import Subscriber
from backdown.report import Failure
from backdown.run_options import BACKOFF_SECONDS
from backdown.smb import Session

T = TypeVar("T")


class Meter:
    """Counts bytes that crossed the wire, across threads."""

    def __init__(self, subscriber: Subscriber) -> None:
        self.subscriber = subscriber
        self._lock = threading.Lock()
        self.bytes = 0

    def add(self, n: int) -> None:
        with self._lock:
            self.bytes += n
        self.subscriber.on_progress(n)


class SourceReader:
    """A local file as the SMB session reads it: honours cancel, hashes if asked.

    Bytes are counted when the server acknowledges them (put_file's on_sent), not here:
    a read is not yet a transfer.
    """

    def __init__(self, f: IO[bytes], cancel: threading.Event, hasher: hashlib._Hash | None) -> None:
        self._f = f
        self._cancel = cancel
        self._hasher = hasher

    def read(self, n: int = -1) -> bytes:
        if self._cancel.is_set():
            raise Cancelled()
        try:
            data = self._f.read(n)
        except OSError as exc:
            raise LocalFileError(f"cannot read local file: {exc.strerror or exc}") from None
        if self._hasher is not None:
            self._hasher.update(data)
        return data


class MeteredWriter:
    """A local file as pysmb writes it: counts bytes, honours cancel."""

    def __init__(self, f: IO[bytes], meter: Meter, cancel: threading.Event) -> None:
        self._f = f
        self._meter = meter
        self._cancel = cancel

    def write(self, data: bytes) -> int:
        if self._cancel.is_set():
            raise Cancelled()
        try:
            n = self._f.write(data)
        except OSError as exc:
            raise LocalFileError(f"cannot write local file: {exc.strerror or exc}") from None
        self._meter.add(len(data))
        return n


@dataclass(frozen=True)
class Batching(Generic[T]):
    """Jobs a worker may do several at a time over its one connection (small new files:
    their requests then share round trips). `work` does `jobs` and tells done(job, error)
    as each one ends; after a ConnectError it raises, the jobs not told done are retried
    one at a time."""

    fits: Callable[[T], bool]
    work: Callable[[Session, list[T], Callable[[T, str | None], None]], None]
    size: int = 32  # jobs in a batch at most
    weight: Callable[[T], int] = lambda job: 0  # a job's bytes, for the budget
    budget: int = 1 << 20  # bytes in a batch at most (a batch is read whole before it goes)


class WorkerPool(Generic[T]):
    """Runs one function over many jobs on N threads, each with its own SMB session."""

    def __init__(
        self,
        connect: Callable[[threading.Event], Session],
        workers: int,
        retries: int,
        subscriber: Subscriber,
        cancel: threading.Event,
        backoff: float = BACKOFF_SECONDS,
    ) -> None:
        self.connect = connect
        self.workers = max(1, workers)
        self.retries = max(0, retries)
        self.subscriber = subscriber
        self.cancel = cancel
        self.backoff = backoff
        self.failures: list[Failure] = []
        self.fatal: BaseException | None = None
        self._lock = threading.Lock()

    def run(
        self,
        jobs: Sequence[T],
        work: Callable[[Session, T, int], None],
        name: Callable[[T], str],
        batching: Batching[T] | None = None,
    ) -> list[Failure]:
        """Do every job; returns the failures. Raises the first fatal error, or Cancelled."""
        todo: queue.SimpleQueue[list[T]] = queue.SimpleQueue()
        units = _units(jobs, batching)
        for unit in units:
            todo.put(unit)
        threads = [
            threading.Thread(target=self._worker, args=(todo, work, name, batching), daemon=True)
            for _ in range(min(self.workers, len(units)))
        ]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.2)
        except KeyboardInterrupt:
            self.cancel.set()
            for t in threads:
                t.join(5.0)
            raise Cancelled() from None
        if self.fatal is not None:
            raise self.fatal
        if self.cancel.is_set():
            raise Cancelled()
        return self.failures

    def _stop_with(self, exc: BaseException) -> None:
        with self._lock:
            if self.fatal is None:
                self.fatal = exc
        self.cancel.set()

    def _worker(
        self,
        todo: queue.SimpleQueue[list[T]],
        work: Callable[[Session, T, int], None],
        name: Callable[[T], str],
        batching: Batching[T] | None,
    ) -> None:
        session: Session | None = None
        try:
            while not self.cancel.is_set():
                try:
                    unit = todo.get_nowait()
                except queue.Empty:
                    return
                session = self._do(unit, session, work, name, batching)
        except BaseException as exc:  # a fatal error in any worker stops them all
            if not isinstance(exc, Cancelled):
                self._stop_with(exc)
        finally:
            if session is not None:
                session.close()

    def _do(
        self,
        unit: list[T],
        session: Session | None,
        work: Callable[[Session, T, int], None],
        name: Callable[[T], str],
        batching: Batching[T] | None,
    ) -> Session | None:
        """One job (or a batch of them) with its retries; returns the session to reuse
        (None if it died)."""
        left = list(unit)

        def done(job: T, error: str | None) -> None:
            left.pop(next(k for k, other in enumerate(left) if other is job))
            if error is None:
                self.subscriber.on_file_done(name(job), None)
            else:
                self._fail(name(job), error)

        attempt = 0
        silent = False  # the last try ended with the server not answering
        while True:
            connecting = session is None or session.closed
            before = len(left)
            try:
                if session is None or session.closed:
                    session = self.connect(self.cancel)
                connecting = False
                if batching is not None and len(left) > 1 and attempt == 0:
                    try:
                        batching.work(session, list(left), done)
                    except (RemoteFileError, LocalFileError) as exc:  # not one file's: all
                        for job in list(left):
                            done(job, str(exc))
                # Alone: a single job, a retry (each with its own resume checks), or one a
                # batch never told of (done rather than dropped).
                for job in list(left):
                    _one(session, job, attempt, work, done)
                return session
            except ConnectError as exc:
                if session is not None:
                    session.close()
                session = None
                if self.cancel.is_set():
                    raise Cancelled() from None
                if connecting and silent and isinstance(exc, NoAnswer):
                    raise  # silent, and silent again on reconnecting: the link is dead
                silent = isinstance(exc, NoAnswer)
                # A batch that got some of its files done before the connection went is
                # making headway: its count of tries starts again.
                tries = 0 if len(left) < before else attempt
                if tries >= self.retries:
                    # A connection that stays lost for every retry of one file is lost for
                    # all of them: stop the run (exit 3) rather than wait out each file.
                    raise type(exc)(
                        f"{exc} (gave up on '{name(left[0])}' after {tries + 1} tries); run "
                        "again to resume"
                    ) from None
                wait = self.backoff * (2**tries)
                self.subscriber.on_notice(f"{name(left[0])}: {exc}; retrying in {wait:g} s")
                attempt = tries + 1
                if self.cancel.wait(wait):
                    raise Cancelled() from None
            except Cancelled:
                raise
            except BackdownError:
                raise

    def _fail(self, path: str, error: str) -> None:
        with self._lock:
            self.failures.append(Failure(path, error))
        self.subscriber.on_file_done(path, error)


def _one(
    session: Session,
    job: T,
    attempt: int,
    work: Callable[[Session, T, int], None],
    done: Callable[[T, str | None], None],
) -> None:
    """One job: its own failure (this file only) is told, not raised."""
    try:
        work(session, job, attempt)
    except (RemoteFileError, LocalFileError) as exc:
        done(job, str(exc))
        return
    done(job, None)


def _units(jobs: Sequence[T], batching: Batching[T] | None) -> list[list[T]]:
    """The jobs as the workers take them: alone, or in batches of those that fit (each
    batch where its first job was, so the order of the work stays as given)."""
    if batching is None:
        return [[job] for job in jobs]
    units: list[list[T]] = []
    open_batch: list[T] | None = None
    weight = 0
    for job in jobs:
        if not batching.fits(job):
            units.append([job])
            continue
        heavy = weight + batching.weight(job) > batching.budget
        if open_batch is None or len(open_batch) >= batching.size or heavy:
            open_batch, weight = [], 0
            units.append(open_batch)
        open_batch.append(job)
        weight += batching.weight(job)
    return units
