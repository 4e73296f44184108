"""The office-wide report (backdown.office_report): status records found on the real Samba
server below one common folder, and turned into rows.

Two computers are simulated by two config folders whose profiles have different client
names; each uploads through the command line. Records are then changed on the server's disk
(``samba.share_path("backup")``), never through BackDown itself.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import add_profile, run_cli
from samba import SambaServer

from backdown.manifest import iso_time
from backdown.office_report import (
    StatusRow,
    build_rows,
    find_status_records,
    report_root,
)
from backdown.smb import Endpoint, RemoteEntry, SmbSession, connect

DAY = 86400.0
NOON = 1_795_867_200.0  # 2026-11-28T12:00:00Z, the pure tests' clock


# --------------------------------------------------------------------------- the office


@dataclass
class Office:
    """Two PCs that backed up into <remote_dir>/ann/PC1 and <remote_dir>/bob/PC2."""

    samba: SambaServer
    remote_dir: str
    uploaded_at: float

    @property
    def disk(self) -> Path:
        """The common folder, on the server's disk."""
        return self.samba.share_path("backup") / self.remote_dir

    def record_path(self, folder: str, computer: str, profile: str) -> Path:
        return self.disk / folder / ".backdown" / "status" / f"{computer}.{profile}.json"

    def edit_record(self, folder: str, computer: str, profile: str, **changes: Any) -> None:
        """Change fields of a status record in place, on the server's disk."""
        path = self.record_path(folder, computer, profile)
        record = json.loads(path.read_text())
        record.update(changes)
        path.write_text(json.dumps(record))

    def put_record(self, relpath: str, data: bytes) -> None:
        """A file below the common folder, written straight to disk (as the SMB user)."""
        self.samba.put_file("backup", f"{self.remote_dir}/{relpath}", data)


@pytest.fixture
def office(tmp_path: Path, samba: SambaServer, remote_dir: str) -> Office:
    began = time.time()
    for computer, user, profile in (("PC1", "ann", "ann-docs"), ("PC2", "bob", "bob-docs")):
        local = tmp_path / computer / "local"
        (local / "docs").mkdir(parents=True)
        (local / "docs" / "letter.txt").write_text(f"{user}'s letter")
        config = tmp_path / computer / "config"
        folder = f"{remote_dir}/{user}/{computer}"
        add_profile(config, profile, local, samba.port, folder, samba.user, samba.password,
                    extra=["--client-name", computer])  # fmt: skip
        result = run_cli(["upload", profile], config)
        assert result.code == 0, result
    return Office(samba, remote_dir, began)


@pytest.fixture
def session(samba: SambaServer) -> Iterator[SmbSession]:
    endpoint = Endpoint("127.0.0.1", samba.port, "backup", samba.user, password=samba.password)
    with connect(endpoint) as s:
        yield s


class CountingSession:
    """The real session, with every listdir path noted. It only counts: each call goes to
    the real server unchanged."""

    def __init__(self, session: SmbSession) -> None:
        self._session = session
        self.listed: list[str] = []

    def listdir(self, path: str) -> list[RemoteEntry]:
        self.listed.append(path)
        return self._session.listdir(path)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


def _report(session: Any, root: str, depth: int = 3, stale_after: float | None = None) -> tuple:
    found, problems = find_status_records(session, root, depth)
    return build_rows(found, time.time(), stale_after), problems


def _who(rows: list[StatusRow]) -> list[tuple[str, str]]:
    return [(r.computer, r.profile) for r in rows]


# --------------------------------------------------------------------------- on the share


@pytest.mark.samba
def test_one_row_per_computer_and_profile(office: Office, session: SmbSession) -> None:
    rows, problems = _report(session, office.remote_dir)
    assert problems == []
    assert _who(rows) == [("PC1", "ann-docs"), ("PC2", "bob-docs")]
    ann, bob = rows
    assert ann.folder == f"{office.remote_dir}/ann/PC1"
    assert bob.folder == f"{office.remote_dir}/bob/PC2"
    for row in rows:
        assert row.outcome == "ok" and not row.failing and not row.stale
        assert row.last_success is not None and row.last_attempt is not None
        assert office.uploaded_at - 1 <= row.last_success <= time.time() + 1
        assert row.age is not None and 0 <= row.age < 30
        assert row.files_failed == 0 and row.version
        assert row.schedule == "" and row.interval_seconds is None  # no schedule set
        record = office.samba.share_path("backup") / row.folder / ".backdown" / "status"
        on_disk = json.loads((record / f"{row.computer}.{row.profile}.json").read_text())
        assert row.user == on_disk["user"]  # who ran the upload on that computer
    assert ann.to_json()["last_success"] == iso_time(ann.last_success or 0)


@pytest.mark.samba
def test_a_computer_without_a_recent_success_is_stale_and_listed_first(
    office: Office, session: SmbSession
) -> None:
    ten_days_ago = iso_time(time.time() - 10 * DAY)
    office.edit_record("bob/PC2", "PC2", "bob-docs", last_success=ten_days_ago,
                       last_attempt=ten_days_ago, finished=ten_days_ago)  # fmt: skip
    rows, _ = _report(session, office.remote_dir)
    assert _who(rows) == [("PC2", "bob-docs"), ("PC1", "ann-docs")]
    assert [r.stale for r in rows] == [True, False]
    assert rows[0].age == pytest.approx(10 * DAY, abs=60)
    assert not rows[0].failing  # old, but its last run went well
    # An explicit limit replaces every row's own one.
    rows, _ = _report(session, office.remote_dir, stale_after=30 * DAY)
    assert [r.stale for r in rows] == [False, False]
    assert _who(rows) == [("PC1", "ann-docs"), ("PC2", "bob-docs")]


@pytest.mark.samba
def test_a_failing_computer_is_listed_before_the_ok_one(
    office: Office, session: SmbSession
) -> None:
    office.edit_record("bob/PC2", "PC2", "bob-docs", outcome="failed", ok=False, files_failed=3)
    rows, _ = _report(session, office.remote_dir)
    assert _who(rows) == [("PC2", "bob-docs"), ("PC1", "ann-docs")]
    bob = rows[0]
    assert bob.failing and bob.outcome == "failed" and bob.files_failed == 3
    assert not bob.stale  # its last success (the upload) is recent
    assert bob.to_json()["outcome"] == "failed"


@pytest.mark.samba
def test_the_walk_stops_at_backup_folders_and_at_the_depth(
    office: Office, session: SmbSession
) -> None:
    now = iso_time(time.time())
    deep = {"format": 2, "computer": "PC9", "profile": "deep", "outcome": "ok",
            "last_attempt": now, "last_success": now}  # fmt: skip
    office.put_record("a/b/c/d/.backdown/status/PC9.deep.json", json.dumps(deep).encode())
    # A decoy in PC1's user data: someone backed up a folder that holds a .backdown/ of its
    # own. The report must never look inside a backup folder, so it must never find it.
    office.put_record("ann/PC1/docs/.backdown/status/FAKE.p.json", json.dumps(deep).encode())
    counting = CountingSession(session)

    rows, problems = _report(counting, office.remote_dir, depth=3)
    assert problems == []
    assert _who(rows) == [("PC1", "ann-docs"), ("PC2", "bob-docs")]  # d/ is 4 levels down
    r = office.remote_dir
    expected = [r, f"{r}/a", f"{r}/ann", f"{r}/bob", f"{r}/a/b", f"{r}/ann/PC1",
                f"{r}/ann/PC1/.backdown/status", f"{r}/bob/PC2",
                f"{r}/bob/PC2/.backdown/status", f"{r}/a/b/c"]  # fmt: skip
    assert sorted(counting.listed) == sorted(expected)  # each folder once; no user data

    counting.listed.clear()
    rows, problems = _report(counting, office.remote_dir, depth=4)
    assert problems == []
    assert _who(rows) == [("PC1", "ann-docs"), ("PC2", "bob-docs"), ("PC9", "deep")]
    assert rows[2].folder == f"{r}/a/b/c/d"
    assert not [p for p in counting.listed if p.startswith(f"{r}/ann/PC1/docs")]

    # A backup folder as the root itself: its records, and nothing below it listed.
    counting.listed.clear()
    rows, _ = _report(counting, f"{r}/ann/PC1", depth=3)
    assert _who(rows) == [("PC1", "ann-docs")]
    assert counting.listed == [f"{r}/ann/PC1", f"{r}/ann/PC1/.backdown/status"]


@pytest.mark.samba
def test_old_broken_and_unlistable_records(
    samba: SambaServer, remote_dir: str, session: SmbSession
) -> None:
    office = Office(samba, remote_dir, time.time())
    old = {"client": "PC3", "profile": "old", "finished": "2026-11-20T08:00:00Z", "ok": True,
           "files_transferred": 2, "bytes_transferred": 10, "files_failed": 0}  # fmt: skip
    office.put_record("carl/PC3/.backdown/status/PC3.old.json", json.dumps(old).encode())
    old_failed = {**old, "client": "PC5", "ok": False, "files_failed": 2}
    office.put_record("eve/PC5/.backdown/status/PC5.old.json", json.dumps(old_failed).encode())
    office.put_record("dave/PC4/.backdown/status/PC4.x.json", b"not json {")
    office.put_record("dave/PC4/.backdown/status/PC4.y.json", b'["not", "a record"]')
    office.put_record("dave/PC4/.backdown/status/PC4.w.json", b'{"profile": "w"}')
    office.put_record("dave/PC4/.backdown/status/PC4.z.json.new", b"half-written")
    office.put_record("locked/away/.backdown/status/PC6.p.json", json.dumps(old).encode())
    os.chmod(office.disk / "locked", 0o000)  # the SMB user may not list it
    try:
        found, problems = find_status_records(session, remote_dir, 3)
    finally:
        os.chmod(office.disk / "locked", 0o755)
    rows = build_rows(found, NOON, None)
    assert _who(rows) == [("PC5", "old"), ("PC3", "old")]
    carl = next(r for r in rows if r.computer == "PC3")
    finished = 1_795_161_600.0  # 2026-11-20T08:00:00Z
    assert carl.last_attempt == carl.last_success == finished
    assert carl.outcome == "ok" and not carl.failing
    assert carl.stale  # 8 days 4 hours before NOON, and no schedule: over a week
    assert carl.user == carl.schedule == carl.version == "" and carl.interval_seconds is None
    eve = rows[0]
    assert eve.last_attempt == finished and eve.last_success is None
    assert eve.outcome == "failed" and eve.stale and eve.failing and eve.files_failed == 2
    assert len(problems) == 4, problems
    assert any("PC4.x.json" in p and "not JSON" in p for p in problems)
    assert any("PC4.y.json" in p and "not a status record" in p for p in problems)
    assert any("PC4.w.json" in p and "no computer" in p for p in problems)
    assert any("locked" in p and "access denied" in p for p in problems)


# --------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    ("folder", "root"),
    [
        ("backup/{user}/{computer}", "backup"),
        ("backup", "backup"),
        ("backup/office", "backup/office"),
        ("backup/pc-{computer}/{date}", "backup"),
        ("{computer}", ""),
        ("", ""),
        ("a/b/{user}", "a/b"),
    ],
)
def test_report_root(folder: str, root: str) -> None:
    assert report_root(folder) == root


def _record(computer: str, success_days_ago: float | None, **fields: Any) -> dict[str, Any]:
    success = None if success_days_ago is None else iso_time(NOON - success_days_ago * DAY)
    return {"format": 2, "computer": computer, "user": "u", "profile": "p", "schedule": "",
            "interval_seconds": None, "last_attempt": iso_time(NOON - DAY),
            "last_success": success, "outcome": "ok", "ok": True, "files_failed": 0,
            "version": "0.3.0", **fields}  # fmt: skip


def test_the_default_stale_limit_is_twice_the_interval_or_a_week() -> None:
    hourly = {"schedule": "every 1h", "interval_seconds": 3600}
    found = [
        ("f", _record("HOURLY-FRESH", 1.5 / 24, **hourly)),  # 1.5 h < 2 h
        ("f", _record("HOURLY-LATE", 3 / 24, **hourly)),  # 3 h > 2 h
        ("f", _record("NONE-FRESH", 6.9)),  # no schedule: a week
        ("f", _record("NONE-LATE", 7.1)),
        ("f", _record("NEVER", None)),
    ]
    rows = {r.computer: r for r in build_rows(found, NOON, None)}
    assert {name for name, r in rows.items() if r.stale} == {"HOURLY-LATE", "NONE-LATE", "NEVER"}
    assert rows["NEVER"].age is None
    assert rows["HOURLY-FRESH"].age == pytest.approx(1.5 * 3600)
    assert rows["HOURLY-FRESH"].schedule == "every 1h"
    assert rows["HOURLY-FRESH"].interval_seconds == 3600
    # An explicit limit overrides every row's own one, both ways.
    rows = {r.computer: r for r in build_rows(found, NOON, 2 * 3600.0)}
    assert {name for name, r in rows.items() if r.stale} == {
        "HOURLY-LATE", "NONE-FRESH", "NONE-LATE", "NEVER"
    }  # fmt: skip


def test_rows_are_sorted_stale_and_failing_first_then_by_computer_and_profile() -> None:
    failed = {"outcome": "failed", "ok": False}
    found = [
        ("f", _record("A-OK", 0.5)),
        ("f", _record("B-FAILING", 0.5, **failed)),
        ("f", _record("C-STALE", 30)),
        ("f", _record("D-BOTH", 30, **failed)),
        ("f", _record("a-ok", 0.5, profile="b")),
        ("f", _record("A-OK", 0.5, profile="a")),
        ("f", _record("E-BOTH", None, outcome="weird", ok=None)),  # never succeeded, unknown
    ]
    rows = build_rows(found, NOON, None)
    # Computers compare without regard to case: 'a-ok' falls between the two 'A-OK's.
    assert [(r.computer, r.profile) for r in rows] == [
        ("D-BOTH", "p"), ("E-BOTH", "p"), ("C-STALE", "p"), ("B-FAILING", "p"),
        ("A-OK", "a"), ("a-ok", "b"), ("A-OK", "p"),
    ]  # fmt: skip
    assert rows[1].outcome == "unknown" and rows[1].failing


def test_a_row_as_json() -> None:
    (row,) = build_rows([("backup/ann/PC1", _record("PC1", 2.0))], NOON, None)
    assert row.to_json() == {
        "folder": "backup/ann/PC1", "computer": "PC1", "user": "u", "profile": "p",
        "schedule": "", "interval_seconds": None, "last_success": "2026-11-26T12:00:00Z",
        "last_attempt": "2026-11-27T12:00:00Z", "outcome": "ok", "files_failed": 0,
        "version": "0.3.0", "age": 172800, "stale": False, "failing": False,
    }  # fmt: skip
    json.dumps(row.to_json())  # JSON-ready as it is


def test_a_weekday_schedule_is_not_stale_over_the_weekend() -> None:
    # Last success Friday 2026-12-04 18:30 at UTC+1; every 24h, 08:00-19:00, mon-fri.
    friday = calendar_time("2026-12-04 17:30")  # 18:30 local
    weekdays = {"every": "24h", "between": "08:00-19:00", "days": "mon-fri",
                "utc_offset_minutes": 60, "interval_seconds": 86400}  # fmt: skip
    record = _record("PC", None, **weekdays) | {"last_success": iso_time(friday)}
    for now, stale in (
        ("2026-12-06 18:00", False),  # Sunday evening
        ("2026-12-08 06:59", False),  # Tuesday, just before 08:00 local
        ("2026-12-08 07:01", True),  # a whole interval after Monday's window opened
    ):
        [row] = build_rows([("f", record)], calendar_time(now), None)
        assert row.stale is stale, now


def test_a_record_cannot_reach_the_admins_terminal_or_claim_the_future() -> None:
    evil = _record("EVIL\x1b[2J\x1b[31mRED\x07", 0.1, user="u\nFAKE-LINE ok", profile="p\r")
    [row] = build_rows([("f", evil)], NOON, None)
    assert row.computer == "EVIL?[2J?[31mRED?" and row.user == "u?FAKE-LINE ok"
    assert row.profile == "p?"
    future = _record("LATER", None) | {"last_success": "2099-01-01T00:00:00Z"}
    [row] = build_rows([("f", future)], NOON, None)
    assert row.stale and row.last_success is None


def calendar_time(text: str) -> float:
    import calendar

    return float(calendar.timegm(time.strptime(text, "%Y-%m-%d %H:%M")))
