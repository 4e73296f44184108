"""The office-wide report: one row per computer and profile, from the share alone.

Every upload leaves a status record in its backup folder, under
.backdown/status/<COMPUTER>.<profile>.json (manifest.status_record). In an office each PC
backs up into its own folder below one common folder (a remote folder such as
'backup/{user}/{computer}'), so the report looks in that common folder (report_root) and
in the folders below it, stopping at each backup folder: what a backup folder holds besides
.backdown/ is someone's data, which the report never lists.
"""

from __future__ import annotations

import calendar
import io
import json
import time
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta, timezone
from typing import Any

from backdown.errors import RemoteFileError, UsageError
from backdown.manifest import STATUS, iso_time
from backdown.paths import META_DIR, rjoin
from backdown.schedule import UNSCHEDULED_OVERDUE, Schedule, overdue_at
from backdown.smb import RemoteEntry, RemoteNotFound, Session

# How many levels of folders below the report's root are looked in: enough for
# 'backup/{user}/{computer}' and one more level of grouping.
DEFAULT_DEPTH = 3
# A status record is a few hundred bytes; anything much larger in status/ is not one, and
# is not read into memory.
MAX_RECORD_BYTES = 1 << 20
# A last success this far in the future is not believed (clocks drift a little; not a day).
FUTURE_SLACK = 86400

Found = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class StatusRow:
    """One computer's profile as its last status record tells it, judged at `now`."""

    folder: str  # the backup folder (relative to the share) the record was found in
    computer: str
    user: str
    profile: str
    schedule: str
    interval_seconds: int | None
    last_success: float | None  # POSIX time; None: never succeeded, or not known
    last_attempt: float | None
    outcome: str  # "ok" | "failed" | "unknown"
    files_failed: int
    version: str
    age: float | None  # seconds since the last success (None: never succeeded)
    stale: bool  # no success within the stale limit (or never)
    failing: bool  # the last attempt did not end "ok"

    def to_json(self) -> dict[str, Any]:
        """The row as JSON-ready data: times as ISO 8601 UTC, age in whole seconds."""
        return {
            "folder": self.folder,
            "computer": self.computer,
            "user": self.user,
            "profile": self.profile,
            "schedule": self.schedule,
            "interval_seconds": self.interval_seconds,
            "last_success": _iso_or_none(self.last_success),
            "last_attempt": _iso_or_none(self.last_attempt),
            "outcome": self.outcome,
            "files_failed": self.files_failed,
            "version": self.version,
            "age": None if self.age is None else round(self.age),
            "stale": self.stale,
            "failing": self.failing,
        }


def report_root(profile_remote_folder: str) -> str:
    """The folder a report starts from: the remote folder up to, not including, its first
    component with a placeholder ('backup/{user}/{computer}' -> 'backup'; '' is the
    share's root)."""
    kept: list[str] = []
    for part in profile_remote_folder.split("/"):
        if "{" in part:
            break
        kept.append(part)
    return rjoin(*kept)


def find_status_records(session: Session, root: str, depth: int) -> tuple[list[Found], list[str]]:
    """(folder, record) for every status record in `root` and in its sub-folders down to
    `depth` levels below it; and one line per folder that could not be listed or record
    that could not be read.

    A folder holding .backdown/ is a backup folder: its records are read and it is never
    descended into. Other folders are walked level by level, one listing each.
    """
    found: list[Found] = []
    problems: list[str] = []
    level = [root]
    for _ in range(depth + 1):  # the root, then `depth` levels below it
        deeper: list[str] = []
        for folder in level:
            try:
                entries = session.listdir(folder)
            except RemoteFileError as exc:
                problems.append(str(exc))
                continue
            if any(e.is_dir and e.name == META_DIR for e in entries):
                # Everything else in a backup folder is user data: never listed.
                found += _read_records(session, folder, problems)
            else:
                deeper += [rjoin(folder, e.name) for e in _sorted(entries) if _may_hold(e)]
        level = deeper
    return found, problems


def _sorted(entries: Iterable[RemoteEntry]) -> list[RemoteEntry]:
    return sorted(entries, key=lambda e: e.name)


def _may_hold(entry: RemoteEntry) -> bool:
    """Whether an entry of a folder that is not a backup folder is worth listing: any
    sub-folder. (.backdown/ is never met here: a folder holding it is a backup folder, not
    walked; BackDown's temporaries are files.)"""
    # A name with a separator is a lying server's; following it would leave the walk's tree.
    return entry.is_dir and "/" not in entry.name and "\\" not in entry.name


def _read_records(session: Session, folder: str, problems: list[str]) -> list[Found]:
    """The status records of one backup folder (none if it has no status/ yet)."""
    status_dir = rjoin(folder, META_DIR, STATUS)
    try:
        entries = session.listdir(status_dir)
    except RemoteNotFound:
        return []  # backed up by a BackDown that wrote no records, or restored only
    except RemoteFileError as exc:
        problems.append(str(exc))
        return []
    found: list[Found] = []
    for entry in _sorted(entries):
        # Only finished records: write_json's '<name>.json.new' may be half-written.
        if entry.is_dir or not entry.name.endswith(".json"):
            continue
        path = rjoin(status_dir, entry.name)
        if entry.size > MAX_RECORD_BYTES:
            problems.append(f"'{path}' is not a status record ({entry.size} bytes)")
            continue
        record = _read_record(session, path, problems)
        if record is not None:
            found.append((folder, record))
    return found


def _read_record(session: Session, path: str, problems: list[str]) -> dict[str, Any] | None:
    """One status record, or None (and a problem line) if it cannot be read or is not one."""
    buf = io.BytesIO()
    try:
        session.read_file(path, buf)
    except RemoteFileError as exc:
        problems.append(str(exc))
        return None
    try:
        record = json.loads(buf.getvalue().decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        problems.append(f"'{path}' is not a status record (not JSON)")
        return None
    computer = record.get("computer", record.get("client")) if isinstance(record, dict) else None
    if not isinstance(computer, str) or not isinstance(record.get("profile"), str):
        problems.append(f"'{path}' is not a status record (no computer or profile in it)")
        return None
    return record


def build_rows(found: Iterable[Found], now: float, stale_after: float | None) -> list[StatusRow]:
    """One row per record, judged at `now`: stale and failing first (stale and failing,
    then stale, then failing, then ok), then by computer and profile.

    A row is stale when its last success is older than `stale_after` or, without one,
    than twice its schedule's interval (a week for a profile without a schedule).
    """
    rows = [_row(folder, record, now, stale_after) for folder, record in found]
    return sorted(rows, key=_order)


# (stale, failing) -> place: what needs the admin most comes first.
_RANK = {(True, True): 0, (True, False): 1, (False, True): 2, (False, False): 3}


def _order(row: StatusRow) -> tuple[int, str, str, str]:
    return (
        _RANK[row.stale, row.failing],
        row.computer.casefold(),
        row.profile.casefold(),
        row.folder,
    )


def _row(folder: str, record: dict[str, Any], now: float, stale_after: float | None) -> StatusRow:
    """A record of either format as a row. Format 1 (before schedules) has only `finished`
    and `ok`: its last success is `finished` when ok, otherwise not known."""
    ok = record.get("ok")
    if "last_attempt" in record or "outcome" in record:  # format 2
        last_attempt = _parse_time(record.get("last_attempt"))
        last_success = _parse_time(record.get("last_success"))
        outcome = record.get("outcome")
    else:
        last_attempt = _parse_time(record.get("finished"))
        last_success = last_attempt if ok is True else None
        outcome = None
    if outcome not in ("ok", "failed"):
        outcome = "ok" if ok is True else "failed" if ok is False else "unknown"
    interval = _positive_int(record.get("interval_seconds"))
    if last_success is not None and last_success > now + FUTURE_SLACK:
        last_success = None  # a clock far ahead, or an edited record: not a success to trust
    age = None if last_success is None else now - last_success
    if last_success is None or age is None:
        stale = True
    elif stale_after is not None:
        stale = age > stale_after
    else:
        stale = now > _overdue_at(record, interval, last_success)
    return StatusRow(
        folder=folder,
        computer=_text(record.get("computer", record.get("client", ""))),
        user=_text(record.get("user")),
        profile=_text(record.get("profile", "")),
        schedule=_text(record.get("schedule")),
        interval_seconds=interval,
        last_success=last_success,
        last_attempt=last_attempt,
        outcome=outcome,
        files_failed=_positive_int(record.get("files_failed")) or 0,
        version=_text(record.get("version")),
        age=age,
        stale=stale,
        failing=outcome != "ok",
    )


def _overdue_at(record: dict[str, Any], interval: int | None, last_success: float) -> float:
    """When the record's profile becomes stale: by its schedule's window and days, in its
    computer's time zone (format 2 records of this version), else by twice its interval, or
    a week without one."""
    offset = record.get("utc_offset_minutes")
    every = record.get("every")
    if isinstance(every, str) and every and isinstance(offset, int) and abs(offset) < 1440:
        try:
            schedule = Schedule.parse(
                every, _text(record.get("between")), _text(record.get("days"))
            )
        except UsageError:
            schedule = None
        if schedule is not None:
            zone = timezone(timedelta(minutes=offset))
            return overdue_at(schedule, last_success, zone)
    return last_success + (2 * interval if interval else UNSCHEDULED_OVERDUE)


def _positive_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _text(value: object) -> str:
    """A record's text as it may be shown: control characters (terminal escapes, line
    breaks that would forge a row) become '?'. Any computer can write a record."""
    if not isinstance(value, str):
        return ""
    return "".join("?" if unicodedata.category(c) in ("Cc", "Cf") else c for c in value)[:200]


def _parse_time(value: object) -> float | None:
    """A record's 'YYYY-MM-DDTHH:MM:SSZ' (UTC) as POSIX time; None if absent or malformed."""
    if not isinstance(value, str):
        return None
    try:
        return float(calendar.timegm(time.strptime(value, "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return None


def _iso_or_none(when: float | None) -> str | None:
    return None if when is None else iso_time(when)
