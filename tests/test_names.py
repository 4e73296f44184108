"""Every name and every neighbour (issue 7), against real Samba shares: one with
`case sensitive = no` (as Windows and most NAS shares behave) and one with Samba's default
(`auto`, which SMB2 clients see as case-insensitive too). Trees are compared byte for byte,
names included, and a second run must send nothing."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import SlowRelay, add_profile, run_cli, spawn_cli, tree_bytes
from samba import SambaServer

pytestmark = pytest.mark.samba

ServerFactory = Callable[..., SambaServer]
DirMaker = Callable[[SambaServer], str]

# Names Linux allows and Windows, NAS boxes or Samba cannot store as they are.
HARD_NAMES = [
    "CON", "aux.txt", "nul.txt", "Com1.log", "trailing.", "trailing space ", "a:b",
    "why?", "st*r", "<tag>", "p|q", 'quo"te', "back\\slash", "tab\there", "ends. ",
    "full＜width", "caret‸1.txt", "quote‛",
]  # fmt: skip


def _server(request: pytest.FixtureRequest, samba: SambaServer, samba_with: ServerFactory,
            which: str) -> SambaServer:  # fmt: skip
    if which == "case-insensitive":
        return samba_with(extra_share={"case sensitive": "no"})
    return samba


def _json(args: list[str], config: Path, code: int = 0) -> dict:
    result = run_cli([*args, "--json"], config)
    assert result.code == code, result
    assert "Traceback" not in result.err
    return json.loads(result.out)


def _files(root: Path) -> dict[str, bytes]:
    """Every file under root with its bytes (folders left out)."""
    return {rel: data for rel, data in tree_bytes(root).items() if data is not None}


def _make(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


@pytest.fixture(params=["case-insensitive", "default"])
def share(
    request: pytest.FixtureRequest,
    samba: SambaServer,
    samba_with: ServerFactory,
    remote_dir_in: DirMaker,
    tmp_path: Path,
) -> tuple[SambaServer, str, Path, Path]:
    """A server, a fresh remote folder on it, a local folder and a config folder with
    profile 'p' for them."""
    server = _server(request, samba, samba_with, request.param)
    remote = remote_dir_in(server)
    local, config = tmp_path / "local", tmp_path / "config"
    local.mkdir()
    add_profile(config, "p", local, server.port, remote, server.user, server.password)
    return server, remote, local, config


def test_names_differing_only_in_case_all_come_back(share, tmp_path: Path) -> None:
    server, remote, local, config = share
    files = {
        "A.txt": b"upper", "a.txt": b"lower", "Dir/f.txt": b"in Dir", "dir/g.txt": b"in dir",
        "dir/G.txt": b"capital G", "REPORT.docx": b"R", "report.docx": b"r", "Report.docx": b"Rr",
    }  # fmt: skip
    _make(local, files)
    up = _json(["upload", "p"], config)
    assert up["files_transferred"] == len(files) and not up["files_failed"]
    on_disk = _files(server.share_path("backup") / remote)
    assert sorted(on_disk.values()) == sorted(files.values()), "a file was overwritten"
    again = _json(["upload", "p"], config)
    assert again["files_transferred"] == 0 and again["files_versioned"] == 0
    target = tmp_path / "restored"
    down = _json(["download", "p", "--to", str(target)], config)
    assert down["files_transferred"] == len(files)
    assert _files(target) == files


def test_names_windows_cannot_store_round_trip(share, tmp_path: Path) -> None:
    server, remote, local, config = share
    files = {name: f"content of {name!r}".encode() for name in HARD_NAMES}
    files["sub:dir/inner?.txt"] = b"nested"
    _make(local, files)
    up = _json(["upload", "p"], config)
    assert not up["files_failed"] and up["files_transferred"] == len(files)
    disk = server.share_path("backup") / remote
    assert not list(disk.rglob(".~bd.*.part")), "temporaries left behind"
    again = _json(["upload", "p"], config)
    assert again["files_transferred"] == 0 and again["files_versioned"] == 0
    target = tmp_path / "restored"
    _json(["download", "p", "--to", str(target)], config)
    assert _files(target) == files


def test_case_only_rename_is_applied_on_the_share(share, tmp_path: Path) -> None:
    server, remote, local, config = share
    _make(local, {"Report.txt": b"the report", "Folder/inner.txt": b"inside"})
    _json(["upload", "p", "--mirror"], config)
    os.rename(local / "Report.txt", local / "report.txt")
    os.rename(local / "Folder", local / "folder")
    renamed = _json(["upload", "p", "--mirror"], config)
    assert not renamed["files_failed"], renamed
    disk = server.share_path("backup") / remote
    assert sorted(p.name for p in disk.iterdir() if p.name != ".backdown") == [
        "folder",
        "report.txt",
    ], json.dumps(renamed)
    assert (disk / "report.txt").read_bytes() == b"the report"
    assert (disk / "folder" / "inner.txt").read_bytes() == b"inside"
    again = _json(["upload", "p", "--mirror"], config)
    assert again["files_transferred"] == 0 and again["files_removed"] == 0
    assert not any("renamed" in n for n in again.get("notes", []))
    target = tmp_path / "restored"
    _json(["download", "p", "--to", str(target)], config)
    assert _files(target) == {"report.txt": b"the report", "folder/inner.txt": b"inside"}


def test_two_computers_on_one_folder_never_disturb_each_other(
    samba: SambaServer, remote_dir: str, tmp_path: Path
) -> None:
    """PC B replaces a large file slowly; PC A (its own config, same remote folder) starts
    meanwhile. A must leave B's upload in progress alone; both end with every file whole."""
    big_old, big_new = os.urandom(24 << 20), os.urandom(24 << 20)
    local_a, local_b = tmp_path / "a", tmp_path / "b"
    _make(local_b, {"big.bin": big_old})
    _make(local_a, {"a-notes.txt": b"from A"})
    config_a, config_b = tmp_path / "config-a", tmp_path / "config-b"
    with SlowRelay(samba.port, rate=8 << 20) as relay:
        add_profile(config_b, "office", local_b, relay.port, remote_dir, samba.user,
                    samba.password, extra=["--client-name", "PCB"])  # fmt: skip
        add_profile(config_a, "office", local_a, samba.port, remote_dir, samba.user,
                    samba.password, extra=["--client-name", "PCA"])  # fmt: skip
        _json(["upload", "office"], config_b)
        (local_b / "big.bin").write_bytes(big_new)
        os.utime(local_b / "big.bin", (time.time() + 10,) * 2)
        b = spawn_cli(["upload", "office", "--json"], config_b)
        try:
            share = samba.share_path("backup") / remote_dir
            deadline = time.monotonic() + 20
            while not list(share.glob(".~bd.*.part")) and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)
            a = _json(["upload", "office"], config_a)
            out, err = b.communicate(timeout=60)
        finally:
            if b.poll() is None:
                b.kill()
    assert b.returncode == 0, err
    b_report = json.loads(out)
    assert b_report["files_transferred"] == 1 and b_report["files_versioned"] == 1
    assert a["files_transferred"] == 1 and not a["files_failed"]
    assert (share / "big.bin").read_bytes() == big_new
    assert (share / "a-notes.txt").read_bytes() == b"from A"
    [kept] = list((share / ".backdown" / "versions").rglob("big.bin"))
    assert kept.read_bytes() == big_old
    assert not list(share.glob(".~bd.*.part"))


def _round(config: Path, target: Path, *args: str) -> dict:
    """Upload (with args), check a second upload sends nothing, restore into target."""
    up = _json(["upload", "p", *args], config)
    again = _json(["upload", "p", *args], config)
    assert again["files_transferred"] == 0 and again["files_versioned"] == 0, again
    assert not again["files_failed"], again
    if target.exists():
        import shutil

        shutil.rmtree(target)
    _json(["download", "p", "--to", str(target)], config)
    return up


@pytest.mark.parametrize("same_size_and_time", [False, True])
def test_a_twin_appearing_beside_a_backed_up_name_never_replaces_it(
    share, tmp_path: Path, same_size_and_time: bool
) -> None:
    server, remote, local, config = share
    _make(local, {"a.txt": b"lower", "docs/x": b"docs x"})
    _json(["upload", "p"], config)
    _make(local, {"A.txt": b"UPPER" if same_size_and_time else b"UPPER CONTENT!",
                  "Docs/x": b"Docs x", "Docs/y": b"Docs y"})  # fmt: skip
    if same_size_and_time:
        os.utime(local / "A.txt", ((local / "a.txt").stat().st_mtime,) * 2)
    up = _round(config, tmp_path / "r")
    assert up["files_versioned"] == 0 and not up["files_failed"], up
    assert _files(tmp_path / "r") == _files(local)


def test_removing_or_renaming_one_of_a_folder_pair_keeps_the_other(share, tmp_path: Path) -> None:
    server, remote, local, config = share
    _make(local, {"A/f1": b"one", "a/f2": b"two", "Dir/x": b"x", "dir/y": b"y"})
    _json(["upload", "p", "--mirror"], config)
    import shutil

    shutil.rmtree(local / "A")
    os.rename(local / "dir", local / "DIR")
    _round(config, tmp_path / "r", "--mirror")
    assert _files(tmp_path / "r") == {"a/f2": b"two", "Dir/x": b"x", "DIR/y": b"y"}
    disk = _files(server.share_path("backup") / remote)
    assert sorted(disk.values()) == [b"two", b"x", b"y"]


def test_deleting_the_plain_one_of_a_pair_converges(share, tmp_path: Path) -> None:
    server, remote, local, config = share
    _make(local, {"A.txt": b"upper", "a.txt": b"lower"})
    _json(["upload", "p", "--mirror"], config)
    (local / "A.txt").unlink()
    up = _round(config, tmp_path / "r", "--mirror")
    assert up["files_removed"] == 1 and not up["files_failed"], up
    assert _files(tmp_path / "r") == {"a.txt": b"lower"}


def test_case_detection_is_not_fooled_by_letters_without_a_simple_other_case(
    samba_with: ServerFactory, remote_dir_in: DirMaker, tmp_path: Path
) -> None:
    server = samba_with(extra_share={"case sensitive": "no"})
    remote = remote_dir_in(server) + "/Maße"
    (server.share_path("backup") / remote).mkdir()
    server.chown(server.share_path("backup") / remote)
    local, config = tmp_path / "local", tmp_path / "config"
    _make(local, {"ß": b"eszett", "A.txt": b"upper", "a.txt": b"lower"})
    # The folder already holds a file (put there by another tool): BackDown's first run
    # must learn the share's case rule from it, and 'ß' has no simple other case.
    server.put_file("backup", f"{remote}/ß", b"eszett")
    add_profile(config, "p", local, server.port, remote, server.user, server.password)
    _round(config, tmp_path / "r")
    assert _files(tmp_path / "r") == _files(local)


def test_a_folder_written_by_backdown_0_1_0_keeps_its_names(
    samba: SambaServer, remote_dir: str, tmp_path: Path
) -> None:
    """0.1.0 stored names as they were: full-width punctuation (normal in Japanese and
    Chinese names), '．', '‸' mean themselves there. They restore as they are, and the
    first upload moves them to the new way of storing, sending nothing."""
    names = ["議事録：2024.txt", "Ｑ＆Ａ？.txt", "memo．", "draft‸1.txt", "plain.txt"]
    files = {name: name.encode() for name in names}
    files["sub＊/x.txt"] = b"in a folder"
    local, config = tmp_path / "local", tmp_path / "config"
    _make(local, files)
    for rel, data in files.items():  # as 0.1.0 left them: same names, bytes and times
        placed = samba.put_file("backup", f"{remote_dir}/{rel}", data)
        os.utime(placed, ((local / rel).stat().st_atime, (local / rel).stat().st_mtime))
    samba.put_file("backup", f"{remote_dir}/.backdown/status/PC.p.json", b"{}")
    add_profile(config, "p", local, samba.port, remote_dir, samba.user, samba.password)
    _json(["download", "p", "--to", str(tmp_path / "before")], config)
    assert _files(tmp_path / "before") == files
    up = _json(["upload", "p"], config)
    assert up["files_transferred"] == 0 and up["files_versioned"] == 0, up
    _round(config, tmp_path / "after")
    assert _files(tmp_path / "after") == files
    disk = samba.share_path("backup") / remote_dir
    assert (disk / "議事録‛：2024.txt").is_file() and (disk / "plain.txt").is_file()


def test_a_folder_renamed_in_case_over_twin_subfolders_loses_nothing(share, tmp_path: Path) -> None:
    server, remote, local, config = share
    _make(local, {"Proj/Data/a.txt": b"a", "Proj/data/b.txt": b"b", "Proj/readme": b"r"})
    _json(["upload", "p", "--mirror"], config)
    os.rename(local / "Proj", local / "proj")
    _make(local, {"proj/Data/new.txt": b"new"})
    # Not a rename that BackDown can follow (the subfolders are twins): the old folder would
    # go to versions, which the mirror's safety limit refuses until it is raised.
    refused = run_cli(["upload", "p", "--mirror"], config)
    assert refused.code == 2 and "max-delete" in refused.err, refused
    up = _json(["upload", "p", "--mirror", "--max-delete", "100"], config)
    assert not up["files_failed"], up
    _round(config, tmp_path / "r", "--mirror", "--max-delete", "100")
    assert _files(tmp_path / "r") == _files(local)


def test_another_file_under_a_like_name_is_not_taken_for_a_rename(share, tmp_path: Path) -> None:
    server, remote, local, config = share
    _make(local, {"Invoice.pdf": b"january"})
    _json(["upload", "p"], config)
    mtime = (local / "Invoice.pdf").stat().st_mtime
    (local / "Invoice.pdf").unlink()
    _make(local, {"invoice.pdf": b"febuary"})  # same size, saved a second later
    os.utime(local / "invoice.pdf", (mtime + 1, mtime + 1))
    up = _json(["upload", "p"], config)
    assert up["files_transferred"] == 1, up
    _round(config, tmp_path / "r")
    assert _files(tmp_path / "r")["invoice.pdf"] == b"febuary"


def test_an_excluded_name_is_never_taken_by_its_twin(share, tmp_path: Path) -> None:
    server, remote, local, config = share
    _make(local, {"Notes.txt": b"kept on the share"})
    _json(["upload", "p"], config)
    _make(local, {"notes.txt": b"the twin"})
    up = _json(["upload", "p", "--exclude", "Notes.txt"], config)
    assert up["files_transferred"] == 1 and up["files_versioned"] == 0, up
    on_disk = _files(server.share_path("backup") / remote)
    assert sorted(on_disk.values()) == [b"kept on the share", b"the twin"]
