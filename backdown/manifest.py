"""BackDown's own files on the share, under <remote-folder>/.backdown/.

- manifest.json: SHA-256 of files uploaded with --checksum, keyed by path, valid only while
  the file's size and time still match the listing;
- status/<client>.<profile>.json: the last run of each computer, for an office-wide report;
- versions/<UTC time>/<path>: replaced and removed files (see upload.py).
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from typing import Any

from backdown.paths import META_DIR, rjoin
from backdown.profile import Profile
from backdown.report import RunReport
from backdown.smb import RemoteFileError, RemoteNotFound, Session

MANIFEST = "manifest.json"
# Present when every name in the remote folder is stored the share_names way; a folder with
# .backdown/ but without it was written by BackDown 0.1.0, which stored names as they were.
NAMES_MARK = "names-encoded"
FORMAT = 1
VERSIONS = "versions"
STATUS = "status"
STATUS_FORMAT = 2


def utc_stamp(when: float | None = None) -> str:
    """A folder name for one run's versions: sortable, to the millisecond (two runs in one
    second must not collide), no characters SMB refuses. Example: 20261130T174512.123Z"""
    when = time.time() if when is None else when
    millis = int(when * 1000) % 1000
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(when)) + f".{millis:03d}Z"


def parse_stamp(name: str) -> float | None:
    """The time a version folder's name stands for, or None if it is not one of ours."""
    import calendar

    head, _, tail = name.partition(".")
    if not tail.endswith("Z") or not tail[:-1].isdigit():
        return None
    try:
        return calendar.timegm(time.strptime(head, "%Y%m%dT%H%M%S")) + int(tail[:-1]) / 1000
    except ValueError:
        return None


@dataclass(frozen=True)
class Checksum:
    size: int
    mtime: float
    sha256: str


def read_json(session: Session, path: str) -> Any | None:
    """A small JSON file from the share, or None if it is missing or unreadable."""
    buf = io.BytesIO()
    try:
        session.read_file(path, buf)
    except (RemoteNotFound, RemoteFileError):
        return None
    try:
        return json.loads(buf.getvalue().decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None


def write_json(session: Session, path: str, data: Any) -> None:
    """Write a small metadata file: to a temporary name, then renamed over the old one in
    one step, so a reader finds the old file or the new one, never none."""
    temp = path + ".new"
    session.write_file(temp, io.BytesIO(json.dumps(data, indent=1).encode("utf-8")))
    session.rename(temp, path, replace=True)


def names_encoded(session: Session, root: str) -> bool | None:
    """True: names are stored the share_names way; False: as they are (written by BackDown
    0.1.0, or by anything else); None: an empty or missing folder, nothing stored yet."""
    if session.stat(rjoin(root, META_DIR, NAMES_MARK)) is not None:
        return True
    try:
        return False if session.listdir(root) else None
    except RemoteNotFound:
        return None


def mark_names_encoded(session: Session, root: str) -> None:
    session.makedirs(rjoin(root, META_DIR))
    session.write_file(rjoin(root, META_DIR, NAMES_MARK), io.BytesIO(b""))


def load_manifest(session: Session, root: str) -> dict[str, Checksum]:
    data = read_json(session, rjoin(root, META_DIR, MANIFEST))
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return {}
    out: dict[str, Checksum] = {}
    for path, entry in (data.get("files") or {}).items():
        try:
            out[path] = Checksum(int(entry[0]), float(entry[1]), str(entry[2]))
        except (TypeError, ValueError, IndexError):
            continue
    return out


def save_manifest(session: Session, root: str, entries: dict[str, Checksum]) -> None:
    files = {p: [c.size, c.mtime, c.sha256] for p, c in sorted(entries.items())}
    session.makedirs(rjoin(root, META_DIR))
    write_json(session, rjoin(root, META_DIR, MANIFEST), {"format": FORMAT, "files": files})


def status_path(root: str, client: str, profile: str) -> str:
    return rjoin(root, META_DIR, STATUS, f"{client}.{profile}.json")


def load_status(session: Session, root: str, client: str, profile: str) -> dict[str, Any]:
    """This computer's last status record for the profile, or {} if there is none."""
    data = read_json(session, status_path(root, client, profile))
    return data if isinstance(data, dict) else {}


def save_status(
    session: Session, root: str, client: str, profile: str, record: dict[str, Any]
) -> None:
    """Record this computer's last run where an office-wide report can read it."""
    session.makedirs(rjoin(root, META_DIR, STATUS))
    write_json(session, status_path(root, client, profile), record)


def iso_time(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


def _utc_offset_minutes(when: float) -> int:
    offset = time.localtime(when).tm_gmtoff
    return int(offset // 60)


def status_record(
    profile: Profile,
    report: RunReport,
    now: float,
    *,
    user: str,
    previous: dict[str, Any],
    version: str,
) -> dict[str, Any]:
    """What an upload leaves on the share about itself (format 2): who, which profile and
    schedule, the last attempt and its outcome, and the last success (kept from the
    previous record when this run failed), so that `backdown report` needs only the share."""
    schedule = profile.schedule
    stamp = iso_time(now)
    last_success = stamp if report.ok else previous.get("last_success")
    return {
        "format": STATUS_FORMAT,
        "computer": profile.client_name,
        "client": profile.client_name,  # the format 1 name of the same field
        "user": user,
        "profile": profile.name,
        "remote_folder": profile.remote_folder,
        "schedule": schedule.describe() if schedule else "",
        "interval_seconds": schedule.every if schedule else None,
        # The schedule as set, and this computer's offset from UTC: the report judges
        # "stale" by the window and days in the computer's own local time.
        "every": profile.schedule_every,
        "between": profile.schedule_between,
        "days": profile.schedule_days,
        "utc_offset_minutes": _utc_offset_minutes(now),
        "last_attempt": stamp,
        "last_success": last_success if isinstance(last_success, str) else None,
        "outcome": "ok" if report.ok else "failed",
        "ok": report.ok,
        "finished": stamp,
        "files_transferred": report.files_transferred,
        "bytes_transferred": report.bytes_transferred,
        "files_failed": len(report.files_failed),
        "files_unchanged": report.files_unchanged,
        "version": version,
    }


def prune_versions(session: Session, root: str, keep_days: int, now: float) -> int:
    """Delete version folders older than keep_days (0 keeps everything); returns how many."""
    if keep_days <= 0:
        return 0
    folder = rjoin(root, META_DIR, VERSIONS)
    try:
        entries = session.listdir(folder)
    except RemoteNotFound:
        return 0
    removed = 0
    for entry in entries:
        when = parse_stamp(entry.name) if entry.is_dir else None
        if when is not None and now - when > keep_days * 86400:
            session.remove_tree(rjoin(folder, entry.name))
            removed += 1
    return removed
