"""Backup and restore against the real Samba server, through the command line.

The share's side is checked on the server's disk (``samba.share_path("backup")``), never
through BackDown itself, so a bug cannot hide behind its own reading of the share.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import Result, SlowRelay, add_profile, make_tree, run_cli, spawn_cli, tree_bytes
from samba import SambaServer

pytestmark = pytest.mark.samba

STAMP_RE = re.compile(r"^\d{8}T\d{6}\.\d{3}Z$")
OLD = 1_600_000_000  # a fixed past time for files whose mtime matters


@dataclass
class Rig:
    """One profile 'p' from a local folder to a fresh folder on the test share."""

    samba: SambaServer
    local: Path
    config: Path
    share: Path  # the profile's remote folder, on the server's disk
    remote_dir: str
    tmp: Path

    def run(self, *args: str) -> tuple[Result, dict]:
        """Run `backdown ARGS --json` in-process; the result and its JSON object."""
        result = run_cli([*args, "--json"], self.config)
        lines = result.out.strip().splitlines()
        return result, (json.loads(lines[-1]) if lines else {})

    def upload(self, *args: str, code: int = 0) -> dict:
        result, data = self.run("upload", "p", *args)
        assert result.code == code, result
        return data

    def download(self, *args: str, code: int = 0) -> dict:
        result, data = self.run("download", "p", *args)
        assert result.code == code, result
        return data

    def versions(self) -> Path:
        """The one versions folder of this test's runs (exactly one is expected)."""
        stamps = os.listdir(self.share / ".backdown" / "versions")
        assert len(stamps) == 1, stamps
        assert STAMP_RE.match(stamps[0]), stamps
        return self.share / ".backdown" / "versions" / stamps[0]


@pytest.fixture
def rig(tmp_path: Path, samba: SambaServer, remote_dir: str) -> Rig:
    local = tmp_path / "local"
    local.mkdir()
    config = tmp_path / "config"
    add_profile(config, "p", local, samba.port, remote_dir, samba.user, samba.password)
    share = samba.share_path("backup") / remote_dir
    return Rig(samba, local, config, share, remote_dir, tmp_path)


def snapshot(root: Path) -> dict[str, tuple[bytes | None, int]]:
    """Everything under root (BackDown's own folders too): bytes (None for folders) and mtime."""
    found: dict[str, tuple[bytes | None, int]] = {}
    if not root.exists():
        return found
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = path.relative_to(root).as_posix()
            data = None if path.is_dir() else path.read_bytes()
            found[rel] = (data, path.stat().st_mtime_ns)
    return found


def files_under(root: Path) -> set[str]:
    """Relative paths of the files under root, without BackDown's own folders."""
    return {k for k, v in tree_bytes(root).items() if v is not None}


def assert_same_mtime(a: Path, b: Path) -> None:
    # SMB keeps 100 ns; a float of seconds since 1970 holds ~240 ns. 1 µs covers both.
    diff = abs(a.stat().st_mtime_ns - b.stat().st_mtime_ns)
    assert diff < 1000, f"{a} and {b} differ by {diff} ns"


def set_mtime(path: Path, seconds: float) -> None:
    ns = int(seconds * 1e9)
    os.utime(path, ns=(ns, ns))


# --------------------------------------------------------------------------- incremental


def test_second_run_transfers_nothing_and_is_fast(rig: Rig) -> None:
    make_tree(rig.local)
    first = rig.upload()
    assert first["files_new"] == 6 and first["files_transferred"] == 6
    assert first["bytes_transferred"] == sum(len(v or b"") for v in tree_bytes(rig.local).values())
    began = time.monotonic()
    second = rig.upload()
    elapsed = time.monotonic() - began
    assert second["files_transferred"] == 0
    assert second["bytes_transferred"] == 0
    assert second["files_unchanged"] == 6
    assert second["files_new"] == second["files_changed"] == second["files_versioned"] == 0
    assert elapsed < 3.0, f"a run with nothing to do took {elapsed:.1f} s"
    assert tree_bytes(rig.share) == tree_bytes(rig.local)


@pytest.mark.parametrize("how", ["content", "mtime-only"])
def test_only_the_touched_file_travels(rig: Rig, how: str) -> None:
    make_tree(rig.local)
    rig.upload()
    target = rig.local / "docs" / "report final.txt"
    if how == "content":
        target.write_text("quarterly numbers, revised\n")
    else:
        set_mtime(target, target.stat().st_mtime + 60)
    data = rig.upload()
    assert data["files_transferred"] == 1
    assert data["files_changed"] == 1
    assert data["files_new"] == 0
    assert data["files_unchanged"] == 5
    assert data["bytes_transferred"] == target.stat().st_size
    assert (rig.share / "docs" / "report final.txt").read_bytes() == target.read_bytes()
    assert_same_mtime(rig.share / "docs" / "report final.txt", target)


def test_mtime_round_trip(rig: Rig) -> None:
    make_tree(rig.local)
    # Distinct times with sub-second parts, far from "now".
    files = sorted(files_under(rig.local))
    for i, rel in enumerate(files):
        set_mtime(rig.local / rel, OLD + i * 1000 + 0.123456)
    rig.upload()
    for rel in files:
        assert_same_mtime(rig.share / rel, rig.local / rel)

    restored = rig.tmp / "restored"
    data = rig.download("--to", str(restored))
    assert data["files_transferred"] == len(files)
    assert tree_bytes(restored) == tree_bytes(rig.share)
    assert not (restored / ".backdown").exists()  # BackDown's own files stay on the share
    for rel in files:
        assert_same_mtime(restored / rel, rig.share / rel)
    # And the restored copy counts as the same as the share.
    again = rig.download("--to", str(restored))
    assert again["files_transferred"] == 0 and again["files_unchanged"] == len(files)


# --------------------------------------------------------------------------- dry run


def _change_three_ways(local: Path) -> None:
    """One changed, one new, one deleted file (after a first backup of make_tree)."""
    (local / "docs" / "report final.txt").write_text("changed\n")
    (local / "new file.txt").write_text("new\n")
    (local / "random.bin").unlink()


def test_dry_run_upload_changes_nothing(rig: Rig) -> None:
    make_tree(rig.local)
    rig.upload()
    _change_three_ways(rig.local)
    (rig.local / "new folder").mkdir()
    local_before, share_before = snapshot(rig.local), snapshot(rig.share)

    result, data = rig.run("upload", "p", "--dry-run", "--mirror")
    assert result.code == 0, result

    assert snapshot(rig.local) == local_before
    assert snapshot(rig.share) == share_before
    assert data["dry_run"] is True
    assert data["files_transferred"] == 0 and data["bytes_transferred"] == 0
    assert (data["files_new"], data["files_changed"], data["files_removed"]) == (1, 1, 1)
    assert data["files_unchanged"] == 4
    planned = [(p["action"], p["path"]) for p in data["plan"]]
    assert sorted(planned) == sorted(
        [  # each file once: a mirror moves the extra away
            ("new", "new file.txt"),
            ("changed", "docs/report final.txt"),
            ("create-folder", "new folder/"),
            ("move-to-versions", "random.bin"),
        ]
    )


def test_dry_run_first_upload_creates_nothing(rig: Rig) -> None:
    make_tree(rig.local)
    shutil.rmtree(rig.share)  # not even the remote folder exists yet
    local_before = snapshot(rig.local)
    data = rig.upload("--dry-run")
    assert data["files_new"] == 6 and data["files_transferred"] == 0
    assert not rig.share.exists()
    assert snapshot(rig.local) == local_before
    result = run_cli(["upload", "p", "--dry-run"], rig.config)  # the human summary too
    assert result.code == 0 and "would copy 6 new" in result.out
    assert not rig.share.exists()

    data = rig.upload()  # the real run creates the remote folder
    assert data["files_new"] == 6 and data["files_transferred"] == 6
    assert tree_bytes(rig.share) == tree_bytes(rig.local)


def test_dry_run_download_changes_nothing(rig: Rig) -> None:
    make_tree(rig.local)
    rig.upload()
    _change_three_ways(rig.local)
    local_before, share_before = snapshot(rig.local), snapshot(rig.share)

    data = rig.download("--dry-run")

    assert snapshot(rig.local) == local_before
    assert snapshot(rig.share) == share_before
    assert not (rig.local / ".backdown-replaced").exists()
    assert data["dry_run"] is True and data["files_transferred"] == 0
    assert (data["files_new"], data["files_changed"]) == (1, 1)
    planned = {(p["action"], p["path"]) for p in data["plan"]}
    assert planned == {
        ("new", "random.bin"),
        ("changed", "docs/report final.txt"),
        ("only-on-destination", "new file.txt"),  # listed, never touched by a restore
    }

    elsewhere = rig.tmp / "not-yet"
    data = rig.download("--dry-run", "--to", str(elsewhere))
    assert data["files_new"] == 6
    assert not elsewhere.exists()


# --------------------------------------------------------------------------- versions


def test_changed_file_old_content_kept_in_versions(rig: Rig) -> None:
    make_tree(rig.local)
    rig.upload()
    old = (rig.local / "docs" / "report final.txt").read_bytes()
    new = b"completely new numbers\n" * 10
    (rig.local / "docs" / "report final.txt").write_bytes(new)

    data = rig.upload()

    assert data["files_versioned"] == 1
    assert (rig.share / "docs" / "report final.txt").read_bytes() == new
    kept = rig.versions() / "docs" / "report final.txt"
    assert kept.read_bytes() == old
    assert files_under(rig.versions()) == {"docs/report final.txt"}


# --------------------------------------------------------------------------- mirror


def _deleted_locally(rig: Rig) -> dict[str, bytes | None]:
    """Back up make_tree, then delete a file and a folder locally; what was deleted."""
    make_tree(rig.local)
    rig.upload()
    before = tree_bytes(rig.share)
    (rig.local / "random.bin").unlink()
    shutil.rmtree(rig.local / "docs")
    return {k: v for k, v in before.items() if k == "random.bin" or k.startswith("docs")}


def _assert_moved_to_versions(rig: Rig, gone: dict[str, bytes | None]) -> None:
    now = tree_bytes(rig.share)
    assert not set(gone) & set(now), "deleted paths are still in place on the share"
    kept = tree_bytes(rig.versions())
    assert kept == gone  # byte for byte, empty folders too
    assert tree_bytes(rig.share) == tree_bytes(rig.local)


def test_mirror_option_moves_deleted_file_and_folder_to_versions(rig: Rig) -> None:
    gone = _deleted_locally(rig)
    # 3 of 6 files: exactly the default --max-delete of 50 %, which is allowed.
    data = rig.upload("--mirror")
    assert data["files_removed"] == 3
    assert data["files_transferred"] == 0
    _assert_moved_to_versions(rig, gone)


def test_mirror_mode_of_the_profile(rig: Rig) -> None:
    gone = _deleted_locally(rig)
    data = rig.upload()  # copy mode: files gone locally stay on the share
    assert data["files_removed"] == 0
    assert set(gone) <= set(tree_bytes(rig.share))
    assert not (rig.share / ".backdown" / "versions").exists()

    result = run_cli(["profile", "edit", "p", "--mode", "mirror"], rig.config)
    assert result.code == 0, result
    data = rig.upload()
    assert data["files_removed"] == 3
    _assert_moved_to_versions(rig, gone)


def test_mirror_refuses_an_empty_local_folder(rig: Rig) -> None:
    make_tree(rig.local)
    rig.upload()
    for child in rig.local.iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()
    share_before = snapshot(rig.share)

    result = run_cli(["upload", "p", "--mirror"], rig.config)

    assert result.code == 2, result
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert "empty" in result.err
    assert snapshot(rig.share) == share_before


def test_mirror_refuses_above_max_delete(rig: Rig) -> None:
    make_tree(rig.local)
    rig.upload()
    (rig.local / "random.bin").unlink()
    (rig.local / "zero.bin").unlink()  # 2 of 6 files = 33 %
    share_before = snapshot(rig.share)

    result = run_cli(["upload", "p", "--mirror", "--max-delete", "30"], rig.config)

    assert result.code == 2, result
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert "max-delete" in result.err
    assert snapshot(rig.share) == share_before

    data = rig.upload("--mirror", "--max-delete", "34")
    assert data["files_removed"] == 2


def test_mirror_moves_nothing_when_a_file_failed(rig: Rig) -> None:
    (rig.local / "locked").mkdir()
    (rig.local / "locked" / "a.txt").write_text("one")
    (rig.local / "keep.txt").write_text("keep")
    (rig.local / "gone.txt").write_text("gone")
    rig.upload()
    (rig.local / "gone.txt").unlink()
    (rig.local / "locked" / "a.txt").write_text("two, longer")
    # The SMB user may no longer write into this folder on the server: the copy fails.
    os.chown(rig.share / "locked", 0, 0)
    try:
        result, data = rig.run("upload", "p", "--mirror")
    finally:
        rig.samba.chown(rig.share / "locked")
    assert result.code == 1, result
    assert [f["path"] for f in data["files_failed"]] == ["locked/a.txt"]
    assert data["files_removed"] == 0
    assert (rig.share / "gone.txt").read_bytes() == b"gone"
    assert (rig.share / "locked" / "a.txt").read_bytes() == b"one"
    assert not (rig.share / ".backdown" / "versions").exists()

    data = rig.upload("--mirror")  # fixed: now the mirror goes ahead
    assert data["files_removed"] == 1
    assert not (rig.share / "gone.txt").exists()
    assert (rig.versions() / "gone.txt").read_bytes() == b"gone"


def test_mirror_leaves_excluded_files_on_the_share(rig: Rig) -> None:
    make_tree(rig.local)
    rig.upload()
    rel_root = Path(rig.remote_dir)
    rig.samba.put_file("backup", str(rel_root / "notes.tmp"), b"someone else's")
    rig.samba.put_file("backup", str(rel_root / "cache" / "blob"), b"cached")

    data = rig.upload("--mirror", "--exclude", "*.tmp", "--exclude", "cache/")

    assert data["files_removed"] == 0
    assert (rig.share / "notes.tmp").read_bytes() == b"someone else's"
    assert (rig.share / "cache" / "blob").read_bytes() == b"cached"
    assert not (rig.share / ".backdown" / "versions").exists()


def test_a_failed_file_adds_no_bytes_transferred(rig: Rig) -> None:
    (rig.local / "locked").mkdir()
    (rig.local / "ok.txt").write_bytes(b"o" * 3000)
    rig.upload()
    (rig.local / "locked" / "refused.txt").write_bytes(b"r" * 5000)
    os.chown(rig.share / "locked", 0, 0)  # the SMB user may not create files there
    try:
        result, data = rig.run("upload", "p")
    finally:
        rig.samba.chown(rig.share / "locked")
    assert result.code == 1, result
    assert [f["path"] for f in data["files_failed"]] == ["locked/refused.txt"]
    assert data["bytes_transferred"] == 0


# --------------------------------------------------------------------------- excludes


def test_excludes_from_option_ignore_file_profile_and_defaults(
    tmp_path: Path, samba: SambaServer, remote_dir: str
) -> None:
    local = tmp_path / "local"
    config = tmp_path / "config"
    share = samba.share_path("backup") / remote_dir
    wanted = {"keep.txt", "sub/keep.txt", "doc.docx"}
    unwanted = {
        "scratch.tmp",  # --exclude '*.tmp'
        "sub/debug.log",  # .backdownignore
        "cache/blob.bin",  # .backdownignore, a folder pattern
        "old.bak",  # profile add --exclude
        "Thumbs.db",
        "sub/Thumbs.db",
        "desktop.ini",
        ".DS_Store",
        "~$doc.docx",
    }
    for rel in wanted | unwanted:
        (local / rel).parent.mkdir(parents=True, exist_ok=True)
        (local / rel).write_text(rel)
    (local / ".backdownignore").write_text("# ours\n*.log\ncache/\n")
    add_profile(
        config, "p", local, samba.port, remote_dir, samba.user, samba.password,
        extra=["--exclude", "*.bak"],
    )  # fmt: skip

    result = run_cli(["upload", "p", "--exclude", "*.tmp", "--json"], config)

    assert result.code == 0, result
    uploaded = files_under(share) - {".backdownignore"}
    assert uploaded == wanted
    assert not (share / "cache").exists()

    # profile edit --exclude replaces the profile's patterns.
    (local / "late.old").write_text("late")
    result = run_cli(["profile", "edit", "p", "--exclude", "*.bak", "--exclude", "*.old"], config)
    assert result.code == 0, result
    result = run_cli(["upload", "p", "--exclude", "*.tmp", "--json"], config)
    assert result.code == 0, result
    assert json.loads(result.out)["files_transferred"] == 0
    assert files_under(share) - {".backdownignore"} == wanted


# --------------------------------------------------------------------------- restore


@pytest.mark.parametrize("overwrite", [False, True])
def test_restore_keeps_a_differing_local_file(rig: Rig, overwrite: bool) -> None:
    make_tree(rig.local)
    rig.upload()
    rel = "docs/report final.txt"
    server_bytes = (rig.share / rel).read_bytes()
    mine = b"my local edit, not backed up\n"
    (rig.local / rel).write_bytes(mine)

    data = rig.download(*(["--overwrite"] if overwrite else []))

    assert data["files_changed"] == 1 and data["files_transferred"] == 1
    assert (rig.local / rel).read_bytes() == server_bytes
    assert_same_mtime(rig.local / rel, rig.share / rel)
    replaced = rig.local / ".backdown-replaced"
    if overwrite:
        assert data["files_versioned"] == 0
        assert not replaced.exists() or not files_under(replaced)
    else:
        assert data["files_versioned"] == 1
        stamps = os.listdir(replaced)
        assert len(stamps) == 1 and STAMP_RE.match(stamps[0]), stamps
        assert (replaced / stamps[0] / rel).read_bytes() == mine
        # The set-aside copy is not backed up by the next upload.
        assert rig.upload()["files_transferred"] == 0
        assert not (rig.share / ".backdown-replaced").exists()


# --------------------------------------------------------------------------- locking


def wait_for(what: str, check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def partials(root: Path) -> list[Path]:
    return list(root.rglob(".~bd.*.part"))


def test_second_concurrent_run_of_a_profile_is_refused(
    tmp_path: Path, samba: SambaServer, remote_dir: str
) -> None:
    local = tmp_path / "local"
    local.mkdir()
    big = os.urandom(2 << 20)
    (local / "big.bin").write_bytes(big)
    config = tmp_path / "config"
    share = samba.share_path("backup") / remote_dir
    with SlowRelay(samba.port, rate=1 << 20) as relay:
        add_profile(config, "p", local, relay.port, remote_dir, samba.user, samba.password)
        first = spawn_cli(["upload", "p", "--json"], config)
        try:
            wait_for(
                "the first run to transfer", lambda: any(p.stat().st_size for p in partials(share))
            )
            (local / "late.txt").write_text("arrived after the first run's walk")
            began = time.monotonic()
            second = run_cli(["upload", "p"], config)
            assert time.monotonic() - began < 2.0, "the second run waited for the lock"
            assert first.poll() is None, "the first run was over too soon to test anything"
            out, err = first.communicate(timeout=60)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
    assert second.code == 2, second
    assert len(second.err.strip().splitlines()) == 1 and "already" in second.err, second.err
    assert first.returncode == 0, err
    assert json.loads(out)["files_transferred"] == 1
    assert (share / "big.bin").read_bytes() == big
    assert not (share / "late.txt").exists()  # the refused run uploaded nothing
    assert not partials(share)


# --------------------------------------------------------------------------- checksum


def test_checksum_detects_same_size_same_time_other_content(rig: Rig) -> None:
    path = rig.local / "ledger.txt"
    path.write_bytes(b"balance: 1000\n")
    set_mtime(path, OLD + 0.5)
    (rig.local / "other.txt").write_text("other")
    first = rig.upload("--checksum")
    assert first["files_new"] == 2
    manifest = json.loads((rig.share / ".backdown" / "manifest.json").read_text())
    assert set(manifest["files"]) == {"ledger.txt", "other.txt"}

    path.write_bytes(b"balance: 9000\n")  # same size
    set_mtime(path, OLD + 0.5)  # and the same time again
    assert rig.upload()["files_transferred"] == 0  # size and time cannot see it

    data = rig.upload("--checksum")
    assert data["files_changed"] == 1 and data["files_transferred"] == 1
    assert data["files_unchanged"] == 1
    assert (rig.share / "ledger.txt").read_bytes() == b"balance: 9000\n"
    assert (rig.versions() / "ledger.txt").read_bytes() == b"balance: 1000\n"

    again = rig.upload("--checksum")
    assert again["files_transferred"] == 0 and again["files_unchanged"] == 2
