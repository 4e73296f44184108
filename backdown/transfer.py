"""The worker pool: one SMB connection per worker, retries with backoff, cancellation.

Errors are classified the rclone way:
- ConnectError (dropped connection, timeout): reconnect and retry the file, with backoff;
  if every retry of one file fails so, the connection is gone for all of them and the run
  stops (exit 3) instead of waiting out every file; a server that stops answering is
  declared dead sooner: if reconnecting after that also meets silence (NoAnswer);
- RemoteFileError / LocalFileError (this file only): record it and go on;
- anything else BackDown raises (AuthError, ShareError): fatal, stop the run.

The pool opens its sessions with the `connect` it is given (smb.connect in a real run), so
a test can run the engine over another session implementation.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable, Sequence
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
    ) -> list[Failure]:
        """Do every job; returns the failures. Raises the first fatal error, or Cancelled."""
        todo: queue.SimpleQueue[T] = queue.SimpleQueue()
        for job in jobs:
            todo.put(job)
        threads = [
            threading.Thread(target=self._worker, args=(todo, work, name), daemon=True)
            for _ in range(min(self.workers, len(jobs)))
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
        todo: queue.SimpleQueue[T],
        work: Callable[[Session, T, int], None],
        name: Callable[[T], str],
    ) -> None:
        session: Session | None = None
        try:
            while not self.cancel.is_set():
                try:
                    job = todo.get_nowait()
                except queue.Empty:
                    return
                session = self._do(job, session, work, name)
        except BaseException as exc:  # a fatal error in any worker stops them all
            if not isinstance(exc, Cancelled):
                self._stop_with(exc)
        finally:
            if session is not None:
                session.close()

    def _do(
        self,
        job: T,
        session: Session | None,
        work: Callable[[Session, T, int], None],
        name: Callable[[T], str],
    ) -> Session | None:
        """One job with its retries; returns the session to reuse (None if it died)."""
        attempt = 0
        silent = False  # the last try ended with the server not answering
        while True:
            connecting = session is None or session.closed
            try:
                if session is None or session.closed:
                    session = self.connect(self.cancel)
                connecting = False
                work(session, job, attempt)
                self.subscriber.on_file_done(name(job), None)
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
                if attempt >= self.retries:
                    # A connection that stays lost for every retry of one file is lost for
                    # all of them: stop the run (exit 3) rather than wait out each file.
                    raise type(exc)(
                        f"{exc} (gave up on '{name(job)}' after {attempt + 1} tries); run "
                        "again to resume"
                    ) from None
                wait = self.backoff * (2**attempt)
                self.subscriber.on_notice(f"{name(job)}: {exc}; retrying in {wait:g} s")
                attempt += 1
                if self.cancel.wait(wait):
                    raise Cancelled() from None
            except (RemoteFileError, LocalFileError) as exc:
                self._fail(name(job), str(exc))
                return session
            except Cancelled:
                raise
            except BackdownError:
                raise

    def _fail(self, path: str, error: str) -> None:
        with self._lock:
            self.failures.append(Failure(path, error))
        self.subscriber.on_file_done(path, error)
