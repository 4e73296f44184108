"""The run history (backdown/history.py) never stops a backup and never loses itself: a
damaged file is moved aside, but a busy, read-only or newer one is left alone; a history
that cannot be written pauses the scheduled job (which needs it) but never a backup."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import SlowRelay, add_profile, run_cli, spawn_cli
from samba import SambaServer

from backdown import history as history_module
from backdown.history import OK, History
from backdown.profile_store import ProfileStore
from backdown.report import RunReport


def _names(folder: Path) -> list[str]:
    """The files in the data folder, but SQLite's own -wal and -shm companions."""
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(("-wal", "-shm")))


def _one_run(data: Path) -> None:
    h = History.open(data)
    run_id = h.begin("docs", "upload", "manual", 1000.0)
    h.finish(run_id, OK, 1001.0, RunReport("docs", "upload"))
    h.close()


@pytest.fixture
def held(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A history another process is writing to (an exclusive transaction held open)."""
    monkeypatch.setattr(history_module, "BUSY_SECONDS", 0.2)
    _one_run(tmp_path)
    other = sqlite3.connect(str(tmp_path / "history.sqlite3"), isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    yield tmp_path
    other.execute("ROLLBACK")
    other.close()


def test_a_busy_history_is_never_moved_aside(held: Path) -> None:
    h = History.open(held)
    assert not h.writable and "locked" in h.problem
    assert h.begin("docs", "upload", "manual", 2000.0) == 0  # nothing recorded, no error
    h.close()
    assert _names(held) == ["history.sqlite3"]


def test_the_history_survives_being_busy(held: Path) -> None:
    History.open(held).close()
    assert _names(held) == ["history.sqlite3"]


def test_a_history_from_a_newer_backdown_is_left_alone(tmp_path: Path) -> None:
    _one_run(tmp_path)
    db = sqlite3.connect(str(tmp_path / "history.sqlite3"))
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    h = History.open(tmp_path)
    assert not h.writable and "newer BackDown" in h.problem
    assert [r.outcome for r in h.runs("docs")] == [OK], "still read"
    h.close()
    assert _names(tmp_path) == ["history.sqlite3"]


def test_damaged_files_moved_aside_in_one_second_keep_their_own_names(tmp_path: Path) -> None:
    for n in range(3):
        (tmp_path / "history.sqlite3").write_bytes(b"damaged %d " % n * 100)
        History.open(tmp_path).close()
    aside = sorted(p for p in tmp_path.iterdir() if ".damaged-" in p.name)
    assert [p.read_bytes()[:9] for p in aside] == [b"damaged 0", b"damaged 1", b"damaged 2"]


def test_a_data_folder_that_cannot_be_made_gives_a_history_that_remembers_nothing(
    tmp_path: Path,
) -> None:
    (tmp_path / "a-file").write_text("x")
    h = History.open(tmp_path / "a-file" / "data")
    assert not h.writable and h.problem
    assert h.begin("docs", "upload", "manual", 1.0) == 0
    assert h.runs() == [] and h.last_success("docs") is None and h.lockout("docs") is None
    h.close()


# --------------------------------------------------------------------------- through the CLI


@pytest.fixture
def profile_dir(tmp_path: Path, samba: SambaServer, remote_dir: str) -> Path:
    local = tmp_path / "local"
    local.mkdir()
    (local / "a.txt").write_text("a")
    config = tmp_path / "config"
    add_profile(config, "docs", local, samba.port, remote_dir, samba.user, samba.password)
    store = ProfileStore.load(config)
    store.get("docs").schedule_every = "24h"
    store.save()
    return config


def test_without_a_history_backups_run_and_the_scheduled_job_pauses(
    profile_dir: Path, tmp_path: Path, samba: SambaServer, remote_dir: str
) -> None:
    (tmp_path / "a-file").write_text("x")
    nowhere = {"BACKDOWN_DATA_DIR": str(tmp_path / "a-file" / "data")}
    upload = run_cli(["upload", "docs"], profile_dir, environ=nowhere)
    assert upload.code == 0, upload
    assert (samba.share_path("backup") / remote_dir / "a.txt").read_text() == "a"
    assert "cannot write the run history" in upload.err

    due = run_cli(["schedule", "run-due"], profile_dir, environ=nowhere)
    assert due.code == 1 and "scheduled backups are paused" in due.err, due
    status = run_cli(["status"], profile_dir, environ=nowhere)
    assert status.code == 5 and "HISTORY:" in status.out, status


def test_a_busy_history_pauses_the_job_and_keeps_the_lockout(
    profile_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history_module, "BUSY_SECONDS", 0.2)
    data = Path(os.environ["BACKDOWN_DATA_DIR"])
    h = History.open(data)
    h.set_lockout("docs", time.time(), "fingerprint", "refused")
    h.close()
    other = sqlite3.connect(str(data / "history.sqlite3"), isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        due = run_cli(["schedule", "run-due"], profile_dir)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert due.code == 1 and "paused" in due.err and "locked" in due.err, due
    h = History.open(data)
    assert h.lockout("docs") is not None, "the lock-out was kept"
    h.close()


def test_a_run_stopped_with_sigterm_is_recorded_as_interrupted(
    profile_dir: Path, tmp_path: Path, samba: SambaServer, remote_dir: str
) -> None:
    local = tmp_path / "local"
    (local / "big.bin").write_bytes(os.urandom(24 << 20))
    slow_config = tmp_path / "slow"
    with SlowRelay(samba.port, rate=2 << 20) as relay:
        add_profile(slow_config, "docs", local, relay.port, remote_dir, samba.user,
                    samba.password)  # fmt: skip
        proc = spawn_cli(["upload", "docs"], slow_config)
        deadline = time.monotonic() + 20
        share = samba.share_path("backup") / remote_dir
        while time.monotonic() < deadline and not any(
            p.name.endswith(".part") for p in share.iterdir()
        ):
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    [run] = History.open(Path(os.environ["BACKDOWN_DATA_DIR"])).runs("docs")
    assert run.outcome == "interrupted" and run.finished is not None
