"""The engine run over a second Session implementation (tests/local_session.py), with its
collaborators passed in: no root, no server. What crosses the wire is tested against real
Samba elsewhere; here it is the engine's own logic, and the injected clock."""

from __future__ import annotations

import calendar
import os
import shutil
import sys
import time
from pathlib import Path

import pytest
from helpers import tree_bytes
from local_session import local_connector

from backdown import engine
from backdown.engine import Collaborators
from backdown.profile import Profile
from backdown.progress import Fanout
from backdown.run_options import RunOptions

NOON = calendar.timegm((2026, 11, 28, 12, 0, 0))


class Clock:
    """A clock the test moves."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def rig(tmp_path: Path) -> tuple[Profile, Path, Path, Clock, Collaborators]:
    local, server = tmp_path / "local", tmp_path / "server"
    local.mkdir()
    profile = Profile("p", str(local), "nas", "backup", remote_folder="ann", keep_versions_days=7)
    clock = Clock(NOON)
    using = Collaborators(
        connect=local_connector(server), clock=clock, clock_checked_by_server=False
    )
    return profile, local, server / "backup" / "ann", clock, using


def _up(profile: Profile, config: Path, using: Collaborators, **options: object):
    return engine.backup(profile, "", RunOptions(**options), Fanout(), config, using)  # type: ignore[arg-type]


def test_backup_and_restore_run_over_any_session(rig, tmp_path: Path) -> None:
    profile, local, share, clock, using = rig
    (local / "docs").mkdir()
    (local / "docs" / "a.txt").write_bytes(b"alpha")
    (local / "b.bin").write_bytes(os.urandom(300_000))
    report = _up(profile, tmp_path / "config", using)
    assert report.ok and report.files_transferred == 2
    assert tree_bytes(share) == tree_bytes(local)
    assert _up(profile, tmp_path / "config", using).files_transferred == 0
    target = tmp_path / "restored"
    down = engine.restore(profile, "", RunOptions(target=str(target)), Fanout(),
                          tmp_path / "config", using)  # fmt: skip
    assert down.ok and tree_bytes(target) == tree_bytes(local)


def test_versions_are_named_and_pruned_by_the_clock_given(rig, tmp_path: Path) -> None:
    profile, local, share, clock, using = rig
    doc = local / "doc.txt"
    doc.write_bytes(b"version 1")
    os.utime(doc, (NOON - 3600,) * 2)
    _up(profile, tmp_path / "config", using)
    doc.write_bytes(b"version 2")
    report = _up(profile, tmp_path / "config", using)
    assert report.files_versioned == 1
    versions = share / ".backdown" / "versions"
    assert os.listdir(versions) == ["20261128T120000.000Z"]  # the injected clock's time
    assert (versions / "20261128T120000.000Z" / "doc.txt").read_bytes() == b"version 1"
    record = (share / ".backdown" / "status").iterdir().__next__().read_text()
    assert '"finished": "2026-11-28T12:00:00Z"' in record
    clock.now = NOON + 8 * 86400  # past keep_versions_days = 7
    _up(profile, tmp_path / "config", using)
    assert os.listdir(versions) == []


def test_mirror_moves_what_is_gone_into_versions(rig, tmp_path: Path) -> None:
    profile, local, share, clock, using = rig
    for name in ("keep.txt", "gone.txt", "old/inner.txt"):
        (local / name).parent.mkdir(exist_ok=True)
        (local / name).write_text(name)
    _up(profile, tmp_path / "config", using)
    (local / "gone.txt").unlink()
    (local / "old" / "inner.txt").unlink()
    (local / "old").rmdir()
    clock.now += 60
    report = _up(profile, tmp_path / "config", using, mirror=True, max_delete=100.0)
    assert report.ok and report.files_removed == 2
    assert tree_bytes(share) == tree_bytes(local)
    stamp = time.strftime("%Y%m%dT%H%M%S.000Z", time.gmtime(clock.now))
    kept = share / ".backdown" / "versions" / stamp
    assert (kept / "gone.txt").read_text() == "gone.txt"
    assert (kept / "old" / "inner.txt").read_text() == "old/inner.txt"


def _opens_in_a_first_backup(rig, config: Path, setting: int, **options: object) -> int:
    """How many connections a first backup of 100 small files opened (4 batches of up to
    32: work for more workers than asked for)."""
    profile, local, _share, _clock, using = rig
    for n in range(100):
        (local / f"f{n}").write_bytes(b"x" * n)
    opened = []

    def counting(endpoint, cancel):
        opened.append(1)
        time.sleep(0.05)  # as a logon takes a while: every worker has its job before it ends
        return using.connect(endpoint, cancel)

    profile.transfers = setting
    counted = Collaborators(connect=counting, clock=using.clock, clock_checked_by_server=False)
    assert engine.backup(profile, "", RunOptions(**options), Fanout(), config, counted).ok  # type: ignore[arg-type]
    return len(opened)


def test_the_profiles_transfers_set_the_connections_unless_the_run_says(rig, tmp_path) -> None:
    profile, _local, share, _clock, _using = rig
    one = _opens_in_a_first_backup(rig, tmp_path / "c1", 1)
    shutil.rmtree(share)
    three = _opens_in_a_first_backup(rig, tmp_path / "c3", 3)
    shutil.rmtree(share)
    overridden = _opens_in_a_first_backup(rig, tmp_path / "c5", 3, transfers=1)
    assert (three, overridden) == (one + 2, one)


def test_the_connections_that_listed_the_share_copy_the_files_after(rig, tmp_path) -> None:
    """A large tree is listed over up to 4 connections; the copies then take those up
    rather than logging on again: never more than the run's own and 4, where opening anew
    would make 1 + the listing's helpers (at least 1: 30 folders wait) + 4."""
    profile, local, share, _clock, using = rig
    for n in range(30):
        (local / f"folder {n}").mkdir()
        (local / f"folder {n}" / "doc.txt").write_bytes(b"first")
    assert _up(profile, tmp_path / "config", using).ok
    for n in range(12):
        (local / f"folder {n}" / "doc.txt").write_bytes(b"second, longer")
    opened = []

    def counting(endpoint, cancel):
        opened.append(1)
        time.sleep(0.05)  # as a logon takes a while
        return using.connect(endpoint, cancel)

    counted = Collaborators(connect=counting, clock=using.clock, clock_checked_by_server=False)
    report = _up(profile, tmp_path / "config", counted, transfers=4)
    assert report.ok and report.files_transferred == 12
    assert tree_bytes(share) == tree_bytes(local)
    assert len(opened) <= 1 + 4


def test_a_new_file_found_in_place_with_its_size_and_time_is_not_its_own_old_version(
    rig, tmp_path: Path
) -> None:
    """Between the walk and a new file's rename, its name is taken on the share. By a file of
    the same size and time (this run's own copy, renamed in before a lost connection hid the
    reply; or the same file from another computer), the temporary is dropped and nothing is
    kept as a version; by another file, that one is kept as a version, as ever. Small files
    go in a batch, the large one alone: both ways are checked."""
    profile, local, share, _clock, using = rig
    files = {"same.txt": b"same", "other.txt": b"mine", "big.bin": os.urandom(200_000)}
    when = NOON - 3600
    for name, data in files.items():
        (local / name).write_bytes(data)
        os.utime(local / name, (when, when))

    def name_taken_first(endpoint, cancel):
        session = using.connect(endpoint, cancel)
        put_file = session.put_file

        def taking(put, fileobj, **kw):
            if put.rename_to is not None:
                name = put.rename_to.rsplit("/", 1)[-1]
                there = share / name
                there.write_bytes(b"theirs!" if name == "other.txt" else files[name])
                os.utime(there, (when, when))
            return put_file(put, fileobj, **kw)

        session.put_file = taking  # put_files goes through it too
        return session

    taken = Collaborators(connect=name_taken_first, clock=using.clock,
                          clock_checked_by_server=False)  # fmt: skip
    report = _up(profile, tmp_path / "config", taken)
    assert report.ok and report.files_transferred == 3
    assert report.files_versioned == 1
    assert tree_bytes(share) == tree_bytes(local)
    versions = share / ".backdown" / "versions"
    kept = {p.name: p.read_bytes() for p in versions.rglob("*") if p.is_file()}
    assert kept == {"other.txt": b"theirs!"}
    assert not list(share.rglob(".~bd.*")), "a temporary was left behind"


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_NOFILE is POSIX")
def test_batches_hold_no_files_open(rig, tmp_path: Path) -> None:
    """8 connections with batches of 32 small files would hold 256 files open if a batch
    kept its sources open until sent; under a limit of 48 more descriptors than the test
    has open, every file must still go."""
    import resource

    profile, local, share, _clock, using = rig
    for n in range(512):
        (local / f"d{n % 8}").mkdir(exist_ok=True)
        (local / f"d{n % 8}" / f"f{n}").write_bytes(b"y" * (n % 300))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    in_use = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 64
    resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + 48, hard))
    try:
        report = _up(profile, tmp_path / "config", using, transfers=8)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert report.ok, report.files_failed[:3]
    assert report.files_transferred == 512
    assert tree_bytes(share) == tree_bytes(local)
