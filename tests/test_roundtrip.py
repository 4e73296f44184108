"""Back up then restore through the real Samba server: every byte, name, folder and time comes
back; BackDown's metadata stays on the share; one bad file does not stop the rest; a hostile
name sent by the server never leads to a write outside the target folder."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from helpers import Result, add_profile, assert_same_tree, make_tree, run_cli, tree_bytes
from samba import SambaServer

from backdown import smb

pytestmark = [pytest.mark.samba, pytest.mark.usefixtures("transport")]

BIG_MIB = 20
# A time with a fraction below the microsecond, so the check below shows what precision
# survives: SMB's FILETIME has 100 ns ticks, BackDown carries times as float seconds.
OLD_MTIME_NS = 1_600_000_000_123_456_789


def add_names(root: Path) -> None:
    """More names that must survive: non-BMP emoji folder, CJK folders, doubled spaces."""
    (root / "😀 emoji folder" / "🎉 party.txt").parent.mkdir()
    (root / "😀 emoji folder" / "🎉 party.txt").write_text("party")
    (root / "中文目录" / "子目录").mkdir(parents=True)
    (root / "中文目录" / "子目录" / "文件.dat").write_bytes(bytes(range(256)) * 4)
    (root / "ñandú über" / "résumé  two  spaces.txt").parent.mkdir()
    (root / "ñandú über" / "résumé  two  spaces.txt").write_text("café\n")
    (root / "a" / "b" / "c").mkdir(parents=True)  # an empty chain of folders


def files_in(root: Path) -> dict[str, bytes]:
    return {p: data for p, data in tree_bytes(root).items() if data is not None}


def mtimes_ns(root: Path) -> dict[str, int]:
    return {p: (root / p).stat().st_mtime_ns for p in files_in(root)}


def outside(tmp_path: Path, target: Path, config: Path) -> list[Path]:
    """Everything under tmp_path except the restore target and the config folder."""
    return sorted(
        p
        for p in tmp_path.rglob("*")
        if p != target and target not in p.parents and p != config and config not in p.parents
    )


def check_ok(result: Result) -> Result:
    assert result.code == 0, result
    assert "Traceback" not in result.err
    assert result.err == "", result.err
    return result


def json_of(result: Result) -> dict:
    data = json.loads(result.out)
    assert isinstance(data, dict)
    return data


def round_trip(server: SambaServer, remote_dir: str, tmp_path: Path, big_mib: int) -> None:
    """Upload a rich tree, check the share three ways, restore it elsewhere, compare."""
    config, local, restored = tmp_path / "config", tmp_path / "local", tmp_path / "restored"
    local.mkdir()
    make_tree(local, big_mib=big_mib)
    add_names(local)
    for path in ("zero.bin", "docs/report final.txt", "😀 emoji folder/🎉 party.txt"):
        os.utime(local / path, ns=(OLD_MTIME_NS, OLD_MTIME_NS))
    expected = files_in(local)
    add_profile(config, "rt", local, server.port, remote_dir, server.user, server.password)

    up = json_of(check_ok(run_cli(["upload", "rt", "--json"], config)))
    assert up["ok"] is True and up["files_failed"] == []
    assert up["operation"] == "upload" and up["profile"] == "rt"
    assert up["files_transferred"] == up["files_new"] == len(expected)
    assert up["bytes_transferred"] == sum(len(d) for d in expected.values())

    # 1. The share's folder on the server's disk holds exactly the local tree.
    on_disk = server.share_path("backup") / remote_dir
    assert_same_tree(local, on_disk)
    assert (on_disk / ".backdown").is_dir(), "upload records its run under .backdown/"
    for rel, ns in mtimes_ns(local).items():
        assert abs((on_disk / rel).stat().st_mtime_ns - ns) <= 1000, rel

    # 2. Samba's own client sees the names and returns the same bytes.
    listing = server.smbclient("backup", f'cd "{remote_dir}"; ls')
    assert listing.returncode == 0, listing.stderr
    for name in ("emoji 😀 file.txt", "Ünïcödé café", "😀 emoji folder", "中文目录", "zero.bin"):
        assert name in listing.stdout, name
    fetched = tmp_path / "fetched"
    fetched.mkdir()
    got = server.smbclient(
        "backup",
        f'cd "{remote_dir}/Ünïcödé café"; get "日本語のファイル.txt" one.txt; '
        f'cd "../😀 emoji folder"; get "🎉 party.txt" two.txt',
        cwd=fetched,
    )
    assert got.returncode == 0, got.stderr + got.stdout
    assert (fetched / "one.txt").read_bytes() == expected["Ünïcödé café/日本語のファイル.txt"]
    assert (fetched / "two.txt").read_bytes() == b"party"
    if big_mib:
        got = server.smbclient("backup", f'cd "{remote_dir}"; get big.bin big.bin', cwd=fetched)
        assert got.returncode == 0, got.stderr + got.stdout
        assert (fetched / "big.bin").read_bytes() == expected["big.bin"]

    # 3. A restore into a folder that does not exist yet gives the same tree back.
    down = json_of(check_ok(run_cli(["download", "rt", "--to", str(restored), "--json"], config)))
    assert down["ok"] is True and down["files_failed"] == []
    assert down["operation"] == "download"
    assert down["files_transferred"] == len(expected)
    assert down["bytes_transferred"] == sum(len(d) for d in expected.values())
    assert_same_tree(local, restored)
    assert (restored / "empty folder").is_dir() and (restored / "a" / "b" / "c").is_dir()
    assert (restored / "zero.bin").stat().st_size == 0
    assert not (restored / ".backdown").exists(), "metadata restored as user data"
    assert not any(".backdown" in p or ".~bd." in p for p in tree_bytes(restored, skip=()))

    # Times: exact to the 100 ns FILETIME tick, but a float of seconds since 1970 holds only
    # about 0.24 us at today's dates; allow one microsecond.
    original, back = mtimes_ns(local), mtimes_ns(restored)
    for rel, ns in original.items():
        assert abs(back[rel] - ns) <= 1000, (rel, back[rel] - ns)
    assert abs(back["zero.bin"] - OLD_MTIME_NS) <= 1000


def test_round_trip_keeps_bytes_names_folders_and_times(
    samba: SambaServer, remote_dir: str, tmp_path: Path
) -> None:
    round_trip(samba, remote_dir, tmp_path, big_mib=BIG_MIB)


def test_round_trip_with_mandatory_signing(samba_signing: SambaServer, tmp_path: Path) -> None:
    remote_dir = "t_signing_round_trip"
    folder = samba_signing.share_path("backup") / remote_dir
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    samba_signing.chown(folder)
    try:
        round_trip(samba_signing, remote_dir, tmp_path, big_mib=BIG_MIB)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_second_upload_changes_nothing_and_restore_into_local_folder(
    samba: SambaServer, remote_dir: str, tmp_path: Path
) -> None:
    config, local = tmp_path / "config", tmp_path / "local"
    local.mkdir()
    make_tree(local)
    add_profile(config, "again", local, samba.port, remote_dir, samba.user, samba.password)
    check_ok(run_cli(["upload", "again"], config))

    again = json_of(check_ok(run_cli(["upload", "again", "--json"], config)))
    assert again["files_transferred"] == 0 and again["bytes_transferred"] == 0
    assert again["files_unchanged"] == len(files_in(local))
    assert again["files_new"] == again["files_changed"] == 0

    (local / "docs" / "report final.txt").write_text("revised numbers\n")
    changed = json_of(check_ok(run_cli(["upload", "again", "--json"], config)))
    assert changed["files_changed"] == 1 and changed["files_transferred"] == 1
    assert changed["files_versioned"] == 1
    on_disk = samba.share_path("backup") / remote_dir
    assert (on_disk / "docs" / "report final.txt").read_text() == "revised numbers\n"
    versions = list((on_disk / ".backdown" / "versions").rglob("report final.txt"))
    assert [v.read_text() for v in versions] == ["quarterly numbers\n"]

    # Without --to the restore goes to the profile's own folder, created if it is gone.
    expected = tree_bytes(local)
    shutil.rmtree(local)
    check_ok(run_cli(["download", "again"], config))
    assert tree_bytes(local) == expected
    assert not (local / ".backdown").exists()


def test_local_file_that_cannot_be_sent_is_reported_and_the_rest_uploaded(
    samba: SambaServer, remote_dir: str, tmp_path: Path
) -> None:
    # As root, no file mode stops a read. A name that is not UTF-8 cannot be sent over SMB
    # (names travel as UTF-16), so BackDown cannot back that file up; it must say so.
    config, local = tmp_path / "config", tmp_path / "local"
    local.mkdir()
    make_tree(local)
    good = tree_bytes(local)
    (local / "docs" / "sub").mkdir()
    bad_name = os.fsencode(local / "docs" / "sub") + b"/bad\xff name.txt"
    fd = os.open(bad_name, os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, b"cannot travel")
    os.close(fd)
    good["docs/sub"] = None
    add_profile(config, "bad", local, samba.port, remote_dir, samba.user, samba.password)

    result = run_cli(["upload", "bad", "--json"], config)
    assert result.code == 1, result
    assert "Traceback" not in result.err
    report = json_of(result)
    assert report["ok"] is False
    [failed] = report["files_failed"]
    assert failed["path"].startswith("docs/sub/bad") and "UTF-8" in failed["error"]
    assert report["files_transferred"] == len([d for d in good.values() if d is not None])
    on_disk = samba.share_path("backup") / remote_dir
    assert tree_bytes(on_disk) == good

    text = run_cli(["upload", "bad"], config)
    assert text.code == 1, text
    assert "1 failed" in text.out and "docs/sub/bad" in text.out
    assert "Traceback" not in text.err


def test_restore_refuses_a_name_with_a_backslash(
    samba: SambaServer, remote_dir: str, tmp_path: Path
) -> None:
    # On the server's disk a backslash is an ordinary character; to an SMB client it is the
    # path separator. Whatever the server makes of it, nothing may land outside the target.
    config, local, target = tmp_path / "config", tmp_path / "local", tmp_path / "out" / "target"
    local.mkdir()
    make_tree(local)
    add_profile(config, "evil", local, samba.port, remote_dir, samba.user, samba.password)
    check_ok(run_cli(["upload", "evil"], config))
    samba.put_file("backup", f"{remote_dir}/a\\b.txt", b"backslash")
    samba.put_file("backup", f"{remote_dir}/docs/..\\..\\escape.txt", b"escape")
    target.parent.mkdir()
    before = outside(tmp_path, target, config)

    result = run_cli(["download", "evil", "--to", str(target), "--json"], config)
    assert "Traceback" not in result.err
    after = outside(tmp_path, target, config)
    assert after == before, "a restore wrote outside its target folder"
    restored = tree_bytes(target)
    for rel in tree_bytes(local):
        assert restored[rel] == tree_bytes(local)[rel]
    report = json_of(result)
    odd = {p: d for p, d in restored.items() if p not in tree_bytes(local)}
    # Either refused and reported (exit 1), or Samba mangled the name into a safe one that
    # then sits inside the target: both keep the rest of the restore.
    if result.code == 1:  # the server sent the raw names: the walk must refuse both
        paths = " ".join(f["path"] for f in report["files_failed"])
        assert "b.txt" in paths and "escape" in paths, report
        assert all("refused" in f["error"] for f in report["files_failed"]), report
        assert odd == {}
    else:  # Samba's default: 8.3 mangled names such as AFGDEX~S.TXT, harmless
        assert result.code == 0, result
        assert sorted(odd.values()) == [b"backslash", b"escape"], odd
        for rel in odd:
            assert "\\" not in rel and "~" in rel, rel


def test_restore_never_writes_outside_the_target_whatever_the_server_lists(
    samba: SambaServer, remote_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Samba will not send '..' or a name with '/' or '\', but a hostile or broken server
    # could: make the listing lie and check the walk refuses those names.
    config, local, target = tmp_path / "config", tmp_path / "local", tmp_path / "out" / "target"
    local.mkdir()
    make_tree(local)
    add_profile(config, "liar", local, samba.port, remote_dir, samba.user, samba.password)
    check_ok(run_cli(["upload", "liar"], config))
    hostile = ["..", ".", "../escape.txt", "..\\escape.txt", "/etc/passwd", "a\\..\\..\\x", ""]
    from backdown.smb.smb3 import Smb3Session

    for session_class in (smb.SmbSession, Smb3Session):  # whichever transport runs
        real_listdir = session_class.listdir

        def lying_listdir(self: Any, path: str, real: Any = real_listdir) -> list[smb.RemoteEntry]:
            entries = real(self, path)
            if path == remote_dir:
                entries += [smb.RemoteEntry(n, False, 6, 1_600_000_000.0) for n in hostile]
                entries.append(smb.RemoteEntry("..", True, 0, 1_600_000_000.0))
            return entries

        monkeypatch.setattr(session_class, "listdir", lying_listdir)
    target.parent.mkdir()
    before = outside(tmp_path, target, config)
    result = run_cli(["download", "liar", "--to", str(target), "--json"], config)
    assert result.code == 1, result
    assert "Traceback" not in result.err
    report = json_of(result)
    assert len(report["files_failed"]) == len(hostile) + 1
    assert all("refused" in f["error"] for f in report["files_failed"])
    after = outside(tmp_path, target, config)
    assert after == before
    assert not Path("/etc/escape.txt").exists()
    assert_same_tree(local, target)
