"""The run history: every run, by hand or scheduled, in a SQLite file in the user data folder.

One row per run (start, end, operation, what started it, outcome, counts, bytes) and one per
failed file; beside them, per profile, what the scheduler must remember between ticks: an
authentication lock-out (so a wrong password is not retried every 15 minutes until a domain
account locks) and the last state an alert was sent for (so an alert goes out once per
change, not once per tick).

The history must never stop a backup: a file that is not a database is moved aside and a new
one made; a folder where none can be made gives a History that remembers nothing and says so
in `problem`.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from backdown.errors import AuthError, BackdownError, Cancelled, ConnectError, LockedError
from backdown.report import Failure, RunReport

FILE_NAME = "history.sqlite3"
SCHEMA_VERSION = 1
BUSY_SECONDS = 10.0  # another BackDown writing at the same moment: wait at most this long

# Outcomes of a run.
RUNNING = "running"
OK = "ok"
PARTIAL = "partial"  # finished, but some files failed
UNREACHABLE = "unreachable"  # the server could not be reached or the connection was lost
AUTH_FAILED = "auth-failed"
ERROR = "error"  # any other error that stopped the run (share missing, refused, no password)
INTERRUPTED = "interrupted"
SKIPPED = "skipped"  # the profile was already running: this run never started
# Outcomes that say the backup itself has a problem (an unreachable server is only absence).
FAILED_OUTCOMES = (PARTIAL, AUTH_FAILED, ERROR)
# Failures that make the scheduler wait before trying again. A refused password is not one:
# it stops the profile altogether until something changes, and then it may try at once.
RETRY_LATER_OUTCOMES = (PARTIAL, ERROR)

MANUAL = "manual"
SCHEDULED = "scheduled"

log = logging.getLogger("backdown.history")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    profile TEXT NOT NULL,
    operation TEXT NOT NULL,
    trigger TEXT NOT NULL,
    started REAL NOT NULL,
    finished REAL,
    outcome TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    files_transferred INTEGER NOT NULL DEFAULT 0,
    bytes_transferred INTEGER NOT NULL DEFAULT 0,
    files_failed INTEGER NOT NULL DEFAULT 0,
    files_unchanged INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS runs_by_profile ON runs (profile, started);
CREATE TABLE IF NOT EXISTS failures (
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    error TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS failures_by_run ON failures (run_id);
CREATE TABLE IF NOT EXISTS profile_state (
    profile TEXT PRIMARY KEY,
    lockout_since REAL,
    lockout_fingerprint TEXT,
    lockout_message TEXT,
    alerted_state TEXT NOT NULL DEFAULT 'ok'
);
"""


@dataclass(frozen=True)
class RunRecord:
    id: int
    profile: str
    operation: str
    trigger: str
    started: float
    finished: float | None
    outcome: str
    message: str
    files_transferred: int
    bytes_transferred: int
    files_failed: int
    files_unchanged: int
    failures: list[Failure] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "profile": self.profile,
            "operation": self.operation,
            "trigger": self.trigger,
            "started": _iso(self.started),
            "finished": _iso(self.finished) if self.finished is not None else None,
            "outcome": self.outcome,
            "message": self.message,
            "files_transferred": self.files_transferred,
            "bytes_transferred": self.bytes_transferred,
            "files_failed": self.files_failed,
            "files_unchanged": self.files_unchanged,
            "failures": [{"path": f.path, "error": f.error} for f in self.failures],
        }


@dataclass(frozen=True)
class Lockout:
    since: float
    fingerprint: str
    message: str


def outcome_of(error: BaseException | None, report: RunReport | None) -> str:
    """The outcome a run's end says: its report (ok or partial) or the error that ended it."""
    if error is None:
        return OK if report is None or report.ok else PARTIAL
    if isinstance(error, LockedError):
        return SKIPPED
    if isinstance(error, AuthError):
        return AUTH_FAILED
    if isinstance(error, ConnectError):
        return UNREACHABLE
    if isinstance(error, Cancelled | KeyboardInterrupt):
        return INTERRUPTED
    return ERROR


class History:
    """The history file, opened; every method is safe to call when it could not be opened."""

    def __init__(self, path: Path, db: sqlite3.Connection | None, problem: str = "") -> None:
        self.path = path
        self._db = db
        self.problem = problem  # why the history is not being kept, '' when it is

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, data_dir: Path) -> History:
        """Open (or create) the history in data_dir; never raises.

        Only a file that is not a database, or a damaged one, is moved aside and replaced;
        a busy, read-only or newer one is never touched: it is read if it can be, and what
        cannot be written is said in `problem`.
        """
        path = Path(data_dir) / FILE_NAME
        try:
            _private_dir(path.parent)
            return cls(path, _connect(path))
        except _Damaged as err:
            try:
                aside = _move_aside(path)
                fresh = _connect(path)
            except (sqlite3.Error, OSError, _Damaged) as again:
                return cls._read_only(path, f"the run history {path} is damaged ({err}): {again}")
            log.warning("the run history %s was damaged (%s); moved to %s", path, err, aside)
            return cls(path, fresh)
        except (sqlite3.Error, OSError) as err:
            return cls._read_only(path, f"cannot write the run history {path}: {_why(err)}")

    @classmethod
    def _read_only(cls, path: Path, problem: str) -> History:
        """The history for reading only, when it can be read at all; `problem` says why
        (the caller tells the user)."""
        log.info("%s", problem)
        try:
            db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=BUSY_SECONDS)
            db.execute("SELECT 1 FROM runs LIMIT 1").fetchall()
        except (sqlite3.Error, OSError, ValueError):
            return cls(path, None, problem)
        return cls(path, db, problem)

    @property
    def writable(self) -> bool:
        return self._db is not None and not self.problem

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection | None]:
        """A transaction; a database error is logged, never raised (a run goes on)."""
        if self._db is None or self.problem:
            yield None
            return
        try:
            with self._db:
                yield self._db
        except sqlite3.Error as err:
            log.warning("could not write the run history %s: %s", self.path, err)
            self.problem = f"could not write the run history {self.path}: {err}"

    def _rows(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple]:
        if self._db is None:
            return []
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as err:
            log.warning("could not read the run history %s: %s", self.path, err)
            return []

    # ------------------------------------------------------------------ runs

    def begin(self, profile: str, operation: str, trigger: str, started: float) -> int:
        """Record that a run started; returns its id (0 when nothing can be recorded)."""
        with self._write() as db:
            if db is not None:
                cursor = db.execute(
                    "INSERT INTO runs (profile, operation, trigger, started, outcome) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (profile, operation, trigger, started, RUNNING),
                )
                return int(cursor.lastrowid or 0)
        return 0

    def finish(
        self,
        run_id: int,
        outcome: str,
        finished: float,
        report: RunReport | None = None,
        message: str = "",
    ) -> None:
        """Record how a run ended, with its counts and every failed file."""
        if not run_id:
            return
        counts = (0, 0, 0, 0)
        if report is not None:
            counts = (
                report.files_transferred,
                report.bytes_transferred,
                len(report.files_failed),
                report.files_unchanged,
            )
        with self._write() as db:
            if db is None:
                return
            db.execute(
                "UPDATE runs SET finished = ?, outcome = ?, message = ?, files_transferred = ?,"
                " bytes_transferred = ?, files_failed = ?, files_unchanged = ? WHERE id = ?",
                (finished, outcome, message, *counts, run_id),
            )
            if report is not None and report.files_failed:
                db.executemany(
                    "INSERT INTO failures (run_id, path, error) VALUES (?, ?, ?)",
                    [(run_id, f.path, f.error) for f in report.files_failed],
                )

    def runs(
        self, profile: str | None = None, limit: int = 20, with_failures: bool = True
    ) -> list[RunRecord]:
        """The last `limit` runs, newest first (of one profile, or of all)."""
        where, args = ("WHERE profile = ?", (profile,)) if profile else ("", ())
        rows = self._rows(
            f"SELECT {_RUN_COLUMNS} FROM runs {where} ORDER BY started DESC, id DESC LIMIT ?",
            (*args, limit),
        )
        records = [_record(row) for row in rows]
        if with_failures:
            records = [
                _with_failures(r, self._failures(r.id)) if r.files_failed else r for r in records
            ]
        return records

    def _failures(self, run_id: int) -> list[Failure]:
        rows = self._rows(
            "SELECT path, error FROM failures WHERE run_id = ? ORDER BY path", (run_id,)
        )
        return [Failure(path, error) for path, error in rows]

    def last_success(self, profile: str, operation: str = "upload") -> float | None:
        rows = self._rows(
            "SELECT MAX(started) FROM runs WHERE profile = ? AND operation = ? AND outcome = ?",
            (profile, operation, OK),
        )
        return rows[0][0] if rows else None

    def last_attempt(self, profile: str, operation: str = "upload") -> RunRecord | None:
        """The last finished run of the operation (a run still going is not an attempt yet,
        and one that found the profile already running never was one)."""
        rows = self._rows(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE profile = ? AND operation = ? "
            "AND outcome NOT IN (?, ?) ORDER BY started DESC, id DESC LIMIT 1",
            (profile, operation, RUNNING, SKIPPED),
        )
        return _record(rows[0]) if rows else None

    def last_failure(self, profile: str, operation: str = "upload") -> float | None:
        """When the last run failed in a way that makes the scheduler wait (see
        RETRY_LATER_OUTCOMES)."""
        marks = ",".join("?" * len(RETRY_LATER_OUTCOMES))
        rows = self._rows(
            f"SELECT MAX(started) FROM runs WHERE profile = ? AND operation = ? "
            f"AND outcome IN ({marks})",
            (profile, operation, *RETRY_LATER_OUTCOMES),
        )
        return rows[0][0] if rows else None

    def first_attempt(self, profile: str, operation: str = "upload") -> float | None:
        rows = self._rows(
            "SELECT MIN(started) FROM runs WHERE profile = ? AND operation = ?",
            (profile, operation),
        )
        return rows[0][0] if rows else None

    # ------------------------------------------------------------------ per-profile state

    def lockout(self, profile: str) -> Lockout | None:
        rows = self._rows(
            "SELECT lockout_since, lockout_fingerprint, lockout_message FROM profile_state "
            "WHERE profile = ? AND lockout_since IS NOT NULL",
            (profile,),
        )
        return Lockout(rows[0][0], rows[0][1] or "", rows[0][2] or "") if rows else None

    def set_lockout(self, profile: str, since: float, fingerprint: str, message: str) -> None:
        with self._write() as db:
            if db is not None:
                self._ensure_state(db, profile)
                db.execute(
                    "UPDATE profile_state SET lockout_since = ?, lockout_fingerprint = ?, "
                    "lockout_message = ? WHERE profile = ?",
                    (since, fingerprint, message, profile),
                )

    def clear_lockout(self, profile: str) -> bool:
        """Lift the lock-out; True if there was one."""
        had = self.lockout(profile) is not None
        with self._write() as db:
            if db is not None and had:
                db.execute(
                    "UPDATE profile_state SET lockout_since = NULL, lockout_fingerprint = NULL, "
                    "lockout_message = NULL WHERE profile = ?",
                    (profile,),
                )
        return had

    def alerted_state(self, profile: str) -> str:
        rows = self._rows("SELECT alerted_state FROM profile_state WHERE profile = ?", (profile,))
        return rows[0][0] if rows else OK

    def set_alerted_state(self, profile: str, state: str) -> None:
        with self._write() as db:
            if db is not None:
                self._ensure_state(db, profile)
                db.execute(
                    "UPDATE profile_state SET alerted_state = ? WHERE profile = ?", (state, profile)
                )

    def rename_profile(self, old: str, new: str) -> None:
        """Keep a renamed profile's history and state under its new name."""
        with self._write() as db:
            if db is not None:
                db.execute("UPDATE runs SET profile = ? WHERE profile = ?", (new, old))
                db.execute("DELETE FROM profile_state WHERE profile = ?", (new,))
                db.execute("UPDATE profile_state SET profile = ? WHERE profile = ?", (new, old))

    @staticmethod
    def _ensure_state(db: sqlite3.Connection, profile: str) -> None:
        db.execute("INSERT OR IGNORE INTO profile_state (profile) VALUES (?)", (profile,))


@contextmanager
def recorded(
    history: History,
    profile: str,
    operation: str,
    trigger: str,
    clock: Callable[[], float],
) -> Iterator[RunSlot]:
    """Record the run inside the block: begun now, finished with the report put into the
    slot, or with the error that left the block (which goes on up)."""
    slot = RunSlot(history.begin(profile, operation, trigger, clock()))
    try:
        yield slot
    except BaseException as err:
        message = str(err) if isinstance(err, BackdownError) else type(err).__name__
        history.finish(slot.run_id, outcome_of(err, None), clock(), None, message)
        raise
    outcome = outcome_of(None, slot.report)
    history.finish(slot.run_id, outcome, clock(), slot.report, slot.message)


@dataclass
class RunSlot:
    run_id: int
    report: RunReport | None = None
    message: str = ""


_RUN_COLUMNS = (
    "id, profile, operation, trigger, started, finished, outcome, message, "
    "files_transferred, bytes_transferred, files_failed, files_unchanged"
)


def _record(row: tuple) -> RunRecord:
    return RunRecord(*row)


def _with_failures(record: RunRecord, failures: list[Failure]) -> RunRecord:
    from dataclasses import replace

    return replace(record, failures=failures)


class _Damaged(Exception):
    """The history file is not a database, or a damaged one: it may be moved aside."""


def _connect(path: Path) -> sqlite3.Connection:
    """Open the file and make sure it is our database, in our schema. Raises _Damaged for a
    file that is not a database or is damaged; sqlite3.Error or OSError for one that is
    busy, read-only, written by a newer BackDown, or cannot be made."""
    db = sqlite3.connect(str(path), timeout=BUSY_SECONDS, isolation_level=None)
    try:
        db.execute("PRAGMA foreign_keys = ON")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            ok = db.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.OperationalError:
            raise  # locked, unreadable: not damaged
        except sqlite3.DatabaseError as err:  # "file is not a database", "malformed"
            raise _Damaged(str(err)) from None
        if ok != "ok":
            raise _Damaged(f"damaged: {ok}")
        if version > SCHEMA_VERSION:
            raise sqlite3.OperationalError(f"written by a newer BackDown (schema {version})")
        # WAL with NORMAL sync: one fsync per checkpoint rather than per run recorded; a
        # power cut may lose the last record, never the file.
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.executescript(_SCHEMA)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.isolation_level = "DEFERRED"  # back to transactions for `with db:`
    except BaseException:
        db.close()
        raise
    try:
        path.chmod(0o600)
    except OSError:
        pass
    return db


def _move_aside(path: Path) -> Path:
    """Rename the damaged file to a name of its own (never deleted: it may still be read)."""
    stamp = time.strftime("%Y%m%dT%H%M%S") + f".{time.time_ns() % 1_000_000_000:09d}"
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    path.replace(aside)
    for suffix in ("-journal", "-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.replace(aside.with_name(aside.name + suffix))
    return aside


def _why(err: BaseException) -> str:
    if isinstance(err, OSError):
        return (err.strerror or str(err)).lower()
    return str(err)


def _private_dir(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)


def _iso(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))
