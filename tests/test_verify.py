"""`backdown verify`: files read back from the real Samba server and compared by SHA-256.

Damage is done on the server's disk (``samba.share_path("backup")``), never through
BackDown, so verify has to find it by reading the share itself.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import add_profile, make_tree, run_cli
from samba import SambaServer

from backdown.engine import profile_lock
from backdown.errors import ExitStatus, LockedError, UsageError
from backdown.profile_store import ProfileStore
from backdown.progress import Recording
from backdown.report import Failure, RunReport
from backdown.snapshots import parse_name
from backdown.verify import VerifyOptions, sample_size, verify

pytestmark = pytest.mark.samba

OLD = 1_600_000_000  # a fixed past time: a local file "changed since the backup"
ODD_NAME = 'odd: "name"?.txt'  # stored on the share under another name (share_names)


@dataclass
class Rig:
    """One profile 'p' from a local folder to a fresh folder on the test share."""

    samba: SambaServer
    local: Path
    config: Path
    share: Path  # the profile's remote folder, on the server's disk

    def upload(self, *args: str) -> None:
        result = run_cli(["upload", "p", *args], self.config)
        assert result.code == 0, result

    def verify(self, **options: Any) -> tuple[RunReport, Recording]:
        """verify() on profile 'p' as saved; the report and what the subscriber heard."""
        profile = ProfileStore.load(self.config).get("p")
        heard = Recording()
        report = verify(profile, self.samba.password, VerifyOptions(**options), heard, self.config)
        return report, heard

    def on_share(self, rel: str) -> Path:
        """A file as the server stores it (every test name but ODD_NAME is stored as it is)."""
        return self.share / rel

    def snapshot_files(self) -> list[Path]:
        return sorted((self.share / ".backdown" / "snapshots").iterdir())


@pytest.fixture
def rig(tmp_path: Path, samba: SambaServer, remote_dir: str) -> Rig:
    local = tmp_path / "local"
    local.mkdir()
    config = tmp_path / "config"
    add_profile(config, "p", local, samba.port, remote_dir, samba.user, samba.password)
    return Rig(samba, local, config, samba.share_path("backup") / remote_dir)


def local_files(root: Path) -> dict[str, int]:
    """{relative path: size} of the files under root."""
    return {
        p.relative_to(root).as_posix(): p.stat().st_size for p in root.rglob("*") if p.is_file()
    }


def flip_byte(path: Path, offset: int) -> None:
    """Change one byte of a file in place, keeping its size and modification time."""
    st = path.stat()
    with open(path, "r+b") as f:
        f.seek(offset)
        old = f.read(1)
        f.seek(offset)
        f.write(bytes([old[0] ^ 0xFF]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def change_locally(path: Path) -> None:
    """Rewrite a local file (same size, other bytes) with a time far from the backup's."""
    data = path.read_bytes()
    path.write_bytes(bytes(b ^ 0x55 for b in data))
    os.utime(path, (OLD, OLD))


def full_tree(rig: Rig) -> dict[str, int]:
    make_tree(rig.local)
    (rig.local / ODD_NAME).write_text("stored as look-alikes")
    return local_files(rig.local)


# --------------------------------------------------------------------------- all is well


def test_a_whole_backup_is_read_back_and_matches(rig: Rig) -> None:
    files = full_tree(rig)
    rig.upload()
    assert not (rig.share / ODD_NAME).exists()  # read back from its stored name
    report, heard = rig.verify()
    assert report.files_failed == []
    assert report.exit_status == ExitStatus.SUCCESS
    assert report.operation == "verify"
    assert report.files_transferred == len(files) == 7
    assert report.bytes_transferred == sum(files.values())
    assert heard.bytes == sum(files.values())  # progress counted every byte read
    done = [value for kind, value in heard.events if kind == "done"]
    assert sorted(done) == sorted((path, None) for path in files)
    assert any(n.startswith("checked against the snapshot") for n in report.notes)
    assert not any("only be checked" in n for n in report.notes)


def test_a_computer_placeholder_in_the_remote_folder_is_filled_in(
    tmp_path: Path, samba: SambaServer, remote_dir: str
) -> None:
    local = tmp_path / "local"
    local.mkdir()
    (local / "a.txt").write_text("hello")
    config = tmp_path / "config"
    folder = f"{remote_dir}/{{computer}}"
    add_profile(config, "p", local, samba.port, folder, samba.user, samba.password)
    assert run_cli(["upload", "p"], config).code == 0
    profile = ProfileStore.load(config).get("p")
    assert (samba.share_path("backup") / remote_dir / profile.client_name / "a.txt").exists()
    report = verify(profile, samba.password, VerifyOptions(), Recording(), config)
    assert report.files_failed == [] and report.files_transferred == 1


# --------------------------------------------------------------------------- damage found


def test_a_flipped_byte_on_the_share_is_found_by_the_local_file(rig: Rig) -> None:
    full_tree(rig)
    rig.upload()
    # Past the first 64 KiB: a verify that read only the start of a file would miss it.
    flip_byte(rig.on_share("random.bin"), 90_000)
    report, _ = rig.verify()
    assert report.files_failed == [Failure("random.bin", "content differs from the local file")]
    assert report.exit_status == ExitStatus.FILES_FAILED
    assert report.files_transferred == 7  # the damaged file was read in full too


def test_with_recorded_hashes_a_flipped_byte_is_found_even_after_a_local_change(
    rig: Rig,
) -> None:
    full_tree(rig)
    rig.upload("--checksum")
    flip_byte(rig.on_share("docs/report final.txt"), 3)
    report, _ = rig.verify()
    want = [Failure("docs/report final.txt", "content differs from the snapshot's hash")]
    assert report.files_failed == want
    # The local file changes afterwards: the snapshot's hash is still there to compare with.
    change_locally(rig.local / "docs" / "report final.txt")
    report, _ = rig.verify()
    assert report.files_failed == want
    assert not any("only be checked" in n for n in report.notes)


def test_missing_and_changed_files_on_the_share_are_failures(rig: Rig) -> None:
    files = full_tree(rig)
    rig.upload()
    os.remove(rig.on_share("emoji 😀 file.txt"))
    with open(rig.on_share("docs/deep/deeper/note.md"), "ab") as f:
        f.write(b"more")  # 7 bytes became 11
    os.utime(rig.on_share("zero.bin"), (OLD, OLD))  # same size, another time
    report, _ = rig.verify()
    assert report.exit_status == ExitStatus.FILES_FAILED
    failed = {f.path: f.error for f in report.files_failed}
    assert failed == {
        "emoji 😀 file.txt": "missing on the share",
        "docs/deep/deeper/note.md": "changed on the share since the last backup "
        "(size 11, expected 7)",
        "zero.bin": "changed on the share since the last backup (modified 2020-09-13 "
        f"12:26:40 UTC, expected {time.strftime('%Y-%m-%d %H:%M:%S UTC', _local_mtime(rig))})",
    }
    assert report.files_transferred == len(files) - 3  # only files found as recorded are read


def _local_mtime(rig: Rig) -> time.struct_time:
    return time.gmtime((rig.local / "zero.bin").stat().st_mtime)


def test_a_file_the_server_will_not_read_is_a_failure(rig: Rig) -> None:
    files = full_tree(rig)
    rig.upload()
    rig.on_share("random.bin").chmod(0)  # listed, but smbd (not root) cannot open it
    try:
        report, _ = rig.verify()
    finally:
        rig.on_share("random.bin").chmod(0o644)
    assert [f.path for f in report.files_failed] == ["random.bin"]
    assert "reading" in report.files_failed[0].error
    assert report.files_transferred == len(files) - 1


# --------------------------------------------------------------------------- nothing to compare


def test_a_local_change_without_a_recorded_hash_is_only_checked_for_reading(rig: Rig) -> None:
    files = full_tree(rig)
    rig.upload()
    change_locally(rig.local / "random.bin")
    change_locally(rig.local / "docs" / "report final.txt")
    report, _ = rig.verify()
    assert report.files_failed == []
    assert report.files_transferred == len(files)  # read in full all the same
    assert (
        "2 files could only be checked for being readable: no recorded hash and the local "
        "file changed since"
    ) in report.notes


def test_without_a_snapshot_the_share_is_compared_with_the_local_folder(rig: Rig) -> None:
    files = full_tree(rig)
    rig.upload()
    shutil.rmtree(rig.share / ".backdown" / "snapshots")  # as an older BackDown left it
    flip_byte(rig.on_share("random.bin"), 99_999)
    change_locally(rig.local / "docs" / "report final.txt")
    report, _ = rig.verify()
    assert report.files_failed == [Failure("random.bin", "content differs from the local file")]
    assert report.files_transferred == len(files)
    assert any(n.startswith("no snapshot on the share") for n in report.notes)
    assert (
        "1 files could not be compared (no local file of the same size and time) and could "
        "only be checked for being readable"
    ) in report.notes


# --------------------------------------------------------------------------- sample, snapshots


def test_a_sample_reads_a_share_of_the_files_but_checks_every_listing(rig: Rig) -> None:
    for i in range(50):
        (rig.local / f"f{i:02d}.txt").write_text(f"file {i}\n" * (i + 1))
    rig.upload()
    os.remove(rig.on_share("f17.txt"))
    report, heard = rig.verify(sample=10, seed=7)
    assert report.files_transferred == round(50 * 0.1) == 5
    assert report.files_failed == [Failure("f17.txt", "missing on the share")]
    read = sorted(p for kind, p in heard.events if kind == "start")
    assert len(read) == 5 and "f17.txt" not in read
    sizes = local_files(rig.local)
    assert report.bytes_transferred == sum(sizes[p] for p in read)
    again, heard_again = rig.verify(sample=10, seed=7)
    assert sorted(p for kind, p in heard_again.events if kind == "start") == read  # repeatable
    assert "read back 5 of 50 files (a 10% sample)" in again.notes


def test_sample_sizes_and_bounds(rig: Rig) -> None:
    assert [sample_size(50, p) for p in (0, 1, 10, 100)] == [0, 1, 5, 50]
    assert sample_size(0, 50) == 0
    with pytest.raises(UsageError, match="--sample"):
        rig.verify(sample=150)


def test_a_damaged_newest_snapshot_is_passed_over_for_the_one_before(rig: Rig) -> None:
    full_tree(rig)
    rig.upload()
    time.sleep(0.01)  # snapshots are named to the millisecond
    rig.upload()
    older, newest = rig.snapshot_files()
    newest.write_bytes(b"not a snapshot at all")
    os.remove(rig.on_share("zero.bin"))  # only a snapshot can tell it is missing
    report, _ = rig.verify()
    assert report.files_failed == [Failure("zero.bin", "missing on the share")]
    assert any("cannot be read" in n and "using the one before it" in n for n in report.notes)
    older_ref = parse_name(older.name)
    assert older_ref is not None
    assert any(n.startswith(f"checked against the snapshot {older_ref.id} ") for n in report.notes)


def test_verify_is_refused_while_the_profile_runs(rig: Rig) -> None:
    full_tree(rig)
    rig.upload()
    with profile_lock(rig.config, "p"), pytest.raises(LockedError):
        rig.verify()


def test_the_command_line_exit_codes_summary_and_json(rig: Rig) -> None:
    full_tree(rig)
    rig.upload()
    good = run_cli(["verify", "p"], rig.config)
    assert good.code == 0 and "every file checked is whole" in good.out, good
    flip_byte(rig.share / "docs" / "report final.txt", 3)
    bad = run_cli(["verify", "p", "--json"], rig.config)
    assert bad.code == 1, bad
    data = json.loads(bad.out)
    assert data["operation"] == "verify" and not data["ok"]
    assert [f["path"] for f in data["files_failed"]] == ["docs/report final.txt"]
    text = run_cli(["verify", "p"], rig.config)
    assert "change (or touch) the local file, then back up" in text.out
    for args in (["--sample", "0"], ["--sample", "101"]):
        wrong = run_cli(["verify", "p", *args], rig.config)
        assert wrong.code == 2 and "--sample" in wrong.err, wrong
    [last] = json.loads(run_cli(["history", "p", "--limit", "1", "--json"], rig.config).out)
    assert (last["operation"], last["outcome"]) == ("verify", "partial")
