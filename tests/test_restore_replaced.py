"""A restore never loses what was at a restore path, even what the local walk does not list
(a symbolic link): it is set aside under .backdown-replaced/<time>/ unless --overwrite."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import add_profile, run_cli
from samba import SambaServer

pytestmark = pytest.mark.samba

posix_only = pytest.mark.skipif(os.name != "posix", reason="needs symbolic links")


@posix_only
def test_restore_over_a_symlink_keeps_the_link(
    samba: SambaServer, remote_dir: str, tmp_path: Path
) -> None:
    local = tmp_path / "local"
    (local / "docs").mkdir(parents=True)
    (local / "a.txt").write_bytes(b"backed up a")
    (local / "docs" / "b.txt").write_bytes(b"backed up b")
    config = tmp_path / "config"
    add_profile(config, "links", local, samba.port, remote_dir, samba.user, samba.password)
    assert run_cli(["upload", "links"], config).code == 0

    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_bytes(b"not part of the backup")
    restore = tmp_path / "restore"
    (restore / "docs").mkdir(parents=True)
    os.symlink(elsewhere, restore / "a.txt")
    os.symlink("../nowhere", restore / "docs" / "b.txt")  # dangling, relative

    result = run_cli(["download", "links", "--to", str(restore), "--json"], config)
    assert result.code == 0, result
    assert json.loads(result.out)["files_versioned"] == 2
    for rel, data in (("a.txt", b"backed up a"), ("docs/b.txt", b"backed up b")):
        assert not (restore / rel).is_symlink()
        assert (restore / rel).read_bytes() == data
    [stamp] = os.listdir(restore / ".backdown-replaced")
    kept = restore / ".backdown-replaced" / stamp
    assert (kept / "a.txt").is_symlink()
    assert os.readlink(kept / "a.txt") == str(elsewhere)
    assert os.readlink(kept / "docs" / "b.txt") == "../nowhere"
    assert elsewhere.read_bytes() == b"not part of the backup"

    # With --overwrite nothing is kept, as for a replaced file.
    again = tmp_path / "again"
    again.mkdir()
    os.symlink(elsewhere, again / "a.txt")
    result = run_cli(["download", "links", "--to", str(again), "--overwrite"], config)
    assert result.code == 0, result
    assert (again / "a.txt").read_bytes() == b"backed up a"
    assert not (again / ".backdown-replaced").exists()
    assert elsewhere.read_bytes() == b"not part of the backup"
