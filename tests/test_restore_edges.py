"""What an attack round on restoring by date found, each now a test: content that kept its
size and time, a clock far ahead, "keep everything" with rules beside it, excludes, a
case-only rename on a case-insensitive share, a pruned file asked for by --path, a run with
its own --exclude, dry runs that say what they found, and verify without a snapshot."""

from __future__ import annotations

import calendar
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import Result, add_profile, run_cli, tree_bytes
from samba import SambaServer

from backdown import engine
from backdown.engine import Collaborators
from backdown.profile_store import ProfileStore
from backdown.progress import Fanout
from backdown.run_options import RunOptions

pytestmark = pytest.mark.samba
OLD = 1_600_000_000


class Rig:
    def __init__(self, tmp: Path, server: SambaServer, remote_dir: str, *extra: str) -> None:
        self.tmp, self.server = tmp, server
        self.local, self.config = tmp / "local", tmp / "config"
        self.local.mkdir()
        add_profile(self.config, "p", self.local, server.port, remote_dir, server.user,
                    server.password, extra=list(extra))  # fmt: skip
        self.share = server.share_path("backup") / remote_dir

    def cli(self, *args: str) -> Result:
        return run_cli(list(args), self.config)

    def write(self, rel: str, data: bytes, mtime: float = OLD) -> None:
        path = self.local / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (mtime, mtime))

    def snapshot_ids(self) -> list[str]:
        data = json.loads(self.cli("snapshots", "p", "--json").out)
        return [s["id"] for s in data["snapshots"]]

    def restore(self, *args: str) -> tuple[Path, Result]:
        target = self.tmp / f"restored-{time.monotonic_ns()}"
        return target, self.cli("download", "p", "--to", str(target), *args)

    def backup_at(self, when: float) -> None:
        profile = ProfileStore.load(self.config).get("p")
        using = Collaborators(clock=lambda: when, clock_checked_by_server=False)
        report = engine.backup(profile, self.server.password, RunOptions(), Fanout(),
                               self.config, using)  # fmt: skip
        assert report.ok, report


@pytest.fixture
def rig(tmp_path: Path, samba: SambaServer, remote_dir: str) -> Rig:
    return Rig(tmp_path, samba, remote_dir)


def noon(day: int) -> float:
    return float(calendar.timegm((2026, 11, day, 12, 0, 0)))


# --------------------------------------------------------------------------- hashes


def test_content_that_kept_its_size_and_time_is_restored_by_its_hash(rig: Rig) -> None:
    rig.write("f.txt", b"AAAA")
    assert rig.cli("upload", "p", "--checksum").code == 0
    time.sleep(0.01)
    rig.write("f.txt", b"BBBB")  # same size, same time: only the hash tells them apart
    assert rig.cli("upload", "p", "--checksum").code == 0
    first = rig.snapshot_ids()[0]
    target, result = rig.restore("--as-of", first)
    assert result.code == 0, result
    assert tree_bytes(target) == {"f.txt": b"AAAA"}


def test_pruning_keeps_a_version_whose_content_only_the_hash_tells_apart(
    tmp_path: Path, samba: SambaServer, remote_dir: str
) -> None:
    rig = Rig(tmp_path, samba, remote_dir, "--keep-versions-days", "1", "--keep-daily", "10")
    store = ProfileStore.load(rig.config)  # hashes recorded in every snapshot
    rig.write("f.txt", b"AAAA")
    for day, data in ((1, b"AAAA"), (2, b"BBBB"), (5, b"BBBB")):
        rig.write("f.txt", data)
        profile = store.get("p")
        using = Collaborators(clock=lambda day=day: noon(day), clock_checked_by_server=False)
        report = engine.backup(profile, samba.password, RunOptions(checksum=True), Fanout(),
                               rig.config, using)  # fmt: skip
        assert report.ok, report
    kept = [p.read_bytes() for p in (rig.share / ".backdown" / "versions").rglob("f.txt")]
    assert kept == [b"AAAA"], "the first snapshot (kept daily) needs it"
    target, result = rig.restore("--as-of", "2026-11-01")
    assert result.code == 0 and tree_bytes(target) == {"f.txt": b"AAAA"}, result


# --------------------------------------------------------------------------- retention


def test_a_clock_far_ahead_prunes_nothing(
    tmp_path: Path, samba: SambaServer, remote_dir: str
) -> None:
    rig = Rig(tmp_path, samba, remote_dir, "--keep-versions-days", "3")
    now = time.time()
    for day in range(5):
        rig.write("f.txt", f"day {day}".encode(), OLD + day * 100)
        assert rig.cli("upload", "p").code == 0
    before = sorted(os.listdir(rig.share / ".backdown" / "snapshots"))
    rig.write("f.txt", b"from the future", OLD + 9999)
    profile = ProfileStore.load(rig.config).get("p")
    ahead = Collaborators(clock=lambda: now + 400 * 86400)  # checked against the server
    report = engine.backup(profile, samba.password, RunOptions(), Fanout(), rig.config, ahead)
    assert report.ok and any("days off the server's" in n for n in report.notes), report.notes
    after = sorted(os.listdir(rig.share / ".backdown" / "snapshots"))
    assert set(before) < set(after), "nothing was pruned"
    assert len(os.listdir(rig.share / ".backdown" / "versions")) == 5  # 4 before, 1 now


def test_keep_versions_days_zero_keeps_every_snapshot_whatever_the_rules(
    tmp_path: Path, samba: SambaServer, remote_dir: str
) -> None:
    rig = Rig(tmp_path, samba, remote_dir, "--keep-versions-days", "0", "--keep-daily", "2")
    for day in range(1, 8):
        rig.write("f.txt", f"day {day}".encode(), OLD + day)
        rig.backup_at(noon(day))
    assert len(os.listdir(rig.share / ".backdown" / "snapshots")) == 7
    dry = json.loads(rig.cli("prune", "p", "--dry-run", "--json").out)
    assert dry["snapshots_forgotten"] == [] and dry["versions_removed"] == []


# --------------------------------------------------------------------------- restoring


def test_excluded_files_are_left_out_of_an_as_of_restore_not_called_pruned(rig: Rig) -> None:
    rig.write("a.txt", b"a")
    rig.write("big.iso", b"x" * 1000)
    assert rig.cli("upload", "p").code == 0
    first = rig.snapshot_ids()[0]
    target, result = rig.restore("--as-of", first, "--exclude", "*.iso")
    assert result.code == 0, result
    assert tree_bytes(target) == {"a.txt": b"a"}
    assert rig.cli("profile", "edit", "p", "--exclude", "*.iso").code == 0
    listed = json.loads(rig.cli("versions", "p", "big.iso", "--json").out)
    assert [c["where"] for c in listed] == ["current"]


def test_a_path_whose_content_is_gone_is_a_failure_not_unknown(rig: Rig) -> None:
    rig.write("a.txt", b"one")
    rig.write("b.txt", b"keep")
    assert rig.cli("upload", "p").code == 0
    rig.write("a.txt", b"two, longer", OLD + 100)
    assert rig.cli("upload", "p").code == 0
    shutil.rmtree(rig.share / ".backdown" / "versions")  # pruned by hand
    first = rig.snapshot_ids()[0]
    target, result = rig.restore("--as-of", first, "--path", "a.txt", "--json")
    assert result.code == 1, result
    [failed] = json.loads(result.out)["files_failed"]
    assert failed["path"] == "a.txt" and "no longer kept" in failed["error"]
    dry = rig.cli("download", "p", "--to", str(rig.tmp / "dry"), "--as-of", first, "--dry-run")
    assert "would fail" in dry.out and "a.txt: its content" in dry.out, dry
    assert "restoring the folder as it was" in dry.out


def test_a_run_with_its_own_exclude_writes_no_snapshot(rig: Rig) -> None:
    rig.write("a.txt", b"a")
    rig.write("big.iso", b"iso")
    assert rig.cli("upload", "p").code == 0
    result = rig.cli("upload", "p", "--exclude", "*.iso", "--json")
    assert result.code == 0 and "no snapshot of this run" in " ".join(
        json.loads(result.out)["notes"]
    )
    assert len(rig.snapshot_ids()) == 1


def test_an_upload_dry_run_says_the_tripwire_tripped(rig: Rig) -> None:
    for n in range(25):
        rig.write(f"d/{n}.txt", f"text {n}".encode())
    assert rig.cli("upload", "p").code == 0
    for n in range(20):
        rig.write(f"d/{n}.txt", f"changed {n}".encode(), OLD + 50)
    dry = rig.cli("upload", "p", "--dry-run")
    assert dry.code == 0 and "--force" in dry.out and "20 of 25" in dry.out, dry


def test_a_case_only_rename_on_a_case_insensitive_share_restores_as_of_before(
    tmp_path: Path, samba_with: Callable[..., SambaServer], remote_dir_in: Callable
) -> None:
    server = samba_with(extra_share={"case sensitive": "no"})
    rig = Rig(tmp_path, server, remote_dir_in(server))
    rig.write("report.txt", b"the report")
    rig.write("Docs/n.txt", b"a note")
    assert rig.cli("upload", "p").code == 0
    first = rig.snapshot_ids()[0]
    os.rename(rig.local / "report.txt", rig.local / "Report.txt")
    os.rename(rig.local / "Docs", rig.local / "docs")
    assert rig.cli("upload", "p").code == 0
    target, result = rig.restore("--as-of", first)
    assert result.code == 0, result
    assert tree_bytes(target) == {"report.txt": b"the report", "Docs": None,
                                  "Docs/n.txt": b"a note"}  # fmt: skip


def test_verify_without_a_snapshot_reports_local_files_missing_on_the_share(rig: Rig) -> None:
    rig.write("a.txt", b"a")
    rig.write("b.txt", b"b")
    assert rig.cli("upload", "p").code == 0
    shutil.rmtree(rig.share / ".backdown" / "snapshots")
    (rig.share / "b.txt").unlink()  # as an interrupted first backup leaves it
    result = rig.cli("verify", "p", "--json")
    assert result.code == 1, result
    [failed] = json.loads(result.out)["files_failed"]
    assert failed["path"] == "b.txt" and "not backed up" in failed["error"]


def test_dates_and_years_as_of(rig: Rig) -> None:
    rig.write("a.txt", b"a")
    assert rig.cli("upload", "p").code == 0
    for bad in ("0001-01-01 00:00", "9999-12-31"):
        _, result = rig.restore("--as-of", bad)
        assert result.code == 2 and "Traceback" not in result.err, (bad, result)


# --------------------------------------------------------------------------- pure rules


def test_an_empty_placeholder_filled_with_a_photo_is_not_encryption() -> None:
    from backdown.tripwire import looks_encrypted

    photo_like = os.urandom(8192)
    assert not looks_encrypted(photo_like, b"")
    assert looks_encrypted(photo_like, b"a plain letter, " * 100)


def test_a_day_ends_just_before_the_next_midnight() -> None:
    from datetime import timezone

    from backdown.point_in_time import parse_moment

    end = parse_moment("2026-11-28", 0.0, timezone.utc)
    last_moment = calendar.timegm((2026, 11, 28, 23, 59, 59)) + 0.7
    assert last_moment <= end < calendar.timegm((2026, 11, 29, 0, 0, 0))


def test_a_snapshot_with_odd_numbers_is_damaged_not_a_crash() -> None:
    import gzip

    from backdown.snapshots import SnapshotDamaged, decode, parse_name

    ref = parse_name("20261128T120000.000Z.PC.json.gz")
    assert ref is not None
    for entry in ([True, 5, None], [5, 1e400, None], [-1, 5, None]):
        raw = gzip.compress(json.dumps({"format": 1, "files": {"a": entry}}).encode())
        with pytest.raises(SnapshotDamaged):
            decode(raw, ref)
