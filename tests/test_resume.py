"""Interrupted runs: a killed upload or download continues from its temporary, stale
temporaries are cleaned up, and a server that goes away mid-run is waited for.

A SlowRelay between BackDown and the real Samba server makes a transfer slow enough to kill
the run (or stop the server) halfway; the finishing run then goes straight to the server.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import Result, SlowRelay, add_profile, run_cli, spawn_cli, tree_bytes
from samba import SambaServer

from backdown.paths import owner_tag
from backdown.paths import temp_name as _temp_name
from backdown.plan import FileInfo
from backdown.profile import default_client_name

pytestmark = [pytest.mark.samba, pytest.mark.usefixtures("transport")]

MiB = 1 << 20
BIG = 40 * MiB
RATE = 4 * MiB  # bytes/s through the relay: 8 MiB arrive after about two seconds
HALFWAY = 8 * MiB
OLD = 1_600_000_000


def wait_for(
    what: str, check: Callable[[], bool], proc: subprocess.Popen[str], timeout: float = 30.0
) -> None:
    """Wait until check() holds while proc is still running."""
    deadline = time.monotonic() + timeout
    while not check():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the run ended before {what}: {proc.returncode} {out} {err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def partials(root: Path) -> list[Path]:
    """BackDown's temporaries under root."""
    return sorted(root.rglob(".~bd.*.part"))


def partial_size(root: Path) -> int:
    found = partials(root)
    return found[0].stat().st_size if found else 0


def settled_size(path: Path) -> int:
    """path's size once it has stopped growing (data in flight lands after a kill)."""
    last = -1
    while True:
        size = path.stat().st_size
        if size == last:
            return size
        last = size
        time.sleep(0.3)


def kill(proc: subprocess.Popen[str]) -> None:
    proc.kill()  # SIGKILL: no cleanup of any kind gets to run
    proc.communicate(timeout=10)


def run_json(args: list[str], config: Path, code: int = 0) -> dict:
    result: Result = run_cli([*args, "--json"], config)
    assert result.code == code, result
    return json.loads(result.out)


# local folder, config dir, share folder, relay, config dir of the same profile via the relay
Rig = tuple[Path, Path, Path, SlowRelay, Path]


@pytest.fixture
def two_profiles(tmp_path: Path, samba: SambaServer, remote_dir: str) -> Iterator[Rig]:
    """Profile 'p' twice, straight to the server and (another config folder) through a
    relay: one computer's one profile, so the relayed run's temporaries are its own."""
    local = tmp_path / "local"
    local.mkdir()
    config, slow = tmp_path / "config", tmp_path / "config-slow"
    relay = SlowRelay(samba.port, rate=RATE)
    for folder, port in ((config, samba.port), (slow, relay.port)):
        add_profile(folder, "p", local, port, remote_dir, samba.user, samba.password)
    try:
        yield local, config, samba.share_path("backup") / remote_dir, relay, slow
    finally:
        relay.close()


# --------------------------------------------------------------------------- killed runs


@pytest.mark.slow
def test_killed_upload_keeps_old_version_and_resumes(two_profiles: Rig) -> None:
    local, config, share, relay, slow = two_profiles
    v1, v2 = os.urandom(BIG), os.urandom(BIG)
    (local / "big.bin").write_bytes(v1)
    os.utime(local / "big.bin", (OLD, OLD))  # v2 must not fall within the modify window
    run_json(["upload", "p"], config)
    (local / "big.bin").write_bytes(v2)

    proc = spawn_cli(["upload", "p", "--json"], slow)
    try:
        wait_for("the temporary to pass 8 MiB", lambda: partial_size(share) > HALFWAY, proc)
    finally:
        kill(proc)
    relay.close()
    [temp] = partials(share)
    partial = settled_size(temp)
    assert HALFWAY < partial < BIG

    # The real name still holds the old version, untouched.
    assert (share / "big.bin").read_bytes() == v1
    assert not (share / ".backdown" / "versions").exists()

    data = run_json(["upload", "p"], config)
    assert data["resumed_files"] == 1
    assert data["files_transferred"] == 1
    assert BIG - partial <= data["bytes_transferred"] < BIG - partial + MiB
    assert (share / "big.bin").read_bytes() == v2
    [stamp] = os.listdir(share / ".backdown" / "versions")
    assert (share / ".backdown" / "versions" / stamp / "big.bin").read_bytes() == v1
    assert not partials(share)


@pytest.mark.slow
def test_killed_download_keeps_local_file_and_resumes(two_profiles: Rig, tmp_path: Path) -> None:
    local, config, share, relay, slow = two_profiles
    server = os.urandom(BIG)
    (local / "big.bin").write_bytes(server)
    run_json(["upload", "p"], config)
    target = tmp_path / "target"
    target.mkdir()
    mine = b"an older local copy\n"
    (target / "big.bin").write_bytes(mine)

    proc = spawn_cli(["download", "p", "--to", str(target), "--json"], slow)
    try:
        wait_for("the local temporary to pass 8 MiB", lambda: partial_size(target) > HALFWAY, proc)
    finally:
        kill(proc)
    relay.close()
    [temp] = partials(target)
    partial = settled_size(temp)
    assert HALFWAY < partial < BIG
    assert (target / "big.bin").read_bytes() == mine

    data = run_json(["download", "p", "--to", str(target)], config)
    assert data["resumed_files"] == 1
    assert data["files_transferred"] == 1
    assert BIG - partial <= data["bytes_transferred"] < BIG - partial + MiB
    assert (target / "big.bin").read_bytes() == server
    assert not partials(target)
    [stamp] = os.listdir(target / ".backdown-replaced")
    assert (target / ".backdown-replaced" / stamp / "big.bin").read_bytes() == mine


# --------------------------------------------------------------------------- stale temporaries


OWNER = owner_tag(default_client_name(), "p")  # profile "p" on this computer


def temp_name(rel: str, info: FileInfo, owner: str = OWNER) -> str:
    return _temp_name(rel, info, owner)


def _info(path: Path, rel: str) -> FileInfo:
    """The FileInfo a walk of the local folder gives this file."""
    st = path.stat()
    return FileInfo(rel, st.st_size, st.st_mtime_ns / 1e9)


def _plant(root: Path, rel_temp: str, data: bytes, samba: SambaServer | None = None) -> Path:
    """Write a temporary as an earlier run would have left it (owned by the SMB user)."""
    path = root / rel_temp
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if samba is not None:
        samba.chown(root)
    return path


def test_stale_upload_temporaries_are_removed(
    tmp_path: Path, samba: SambaServer, remote_dir: str
) -> None:
    local = tmp_path / "local"
    (local / "sub").mkdir(parents=True)
    config = tmp_path / "config"
    share = samba.share_path("backup") / remote_dir
    add_profile(config, "p", local, samba.port, remote_dir, samba.user, samba.password)
    doc, keep = local / "sub" / "doc.txt", local / "keep.txt"
    doc.write_bytes(b"A" * 5000)
    keep.write_bytes(b"K" * 4000)
    # As if a killed run had left halves of both files behind...
    stale = _plant(share, temp_name("sub/doc.txt", _info(doc, "sub/doc.txt")), b"A" * 2500, samba)
    live = _plant(share, temp_name("keep.txt", _info(keep, "keep.txt")), b"K" * 1000, samba)
    # ...and then doc.txt changed: its temporary no longer matches it.
    doc.write_bytes(b"B" * 6000)
    gone = _plant(share, temp_name("x", FileInfo("x", 23, 1.0)), b"of a file deleted since", samba)
    # Another computer's upload in progress, and one it abandoned two days ago.
    theirs = _plant(share, temp_name("keep.txt", FileInfo("k", 9, 1.0), "0thercmp"), b"live", samba)
    dead = _plant(share, temp_name("sub/x", FileInfo("x", 9, 1.0), "0thercmp"), b"dead", samba)
    older = _plant(share, ".~bd.0123456789abcdef.part", b"an older BackDown's", samba)
    for path in (dead, older):
        os.utime(path, (time.time() - 2 * 86400,) * 2)
    for path in (stale, gone):  # ours, from a run killed two hours ago
        os.utime(path, (time.time() - 2 * 3600,) * 2)
    # Ours by name, but written a minute ago: a computer with the same name is at it.
    recent = _plant(share, temp_name("y", FileInfo("y", 5, 1.0)), b"busy", samba)

    data = run_json(["upload", "p"], config)

    assert data["files_transferred"] == 2
    assert data["resumed_files"] == 1  # keep.txt continued from its 1000 bytes
    assert data["bytes_transferred"] == 6000 + 3000
    assert not stale.exists() and not live.exists() and not gone.exists()
    assert not dead.exists() and not older.exists()
    assert theirs.read_bytes() == b"live", "another computer's upload was disturbed"
    assert recent.read_bytes() == b"busy", "an upload in progress was disturbed"
    assert partials(share) == sorted([theirs, recent])
    theirs.unlink()
    recent.unlink()
    assert tree_bytes(share) == tree_bytes(local)


def test_stale_download_temporaries_are_removed(
    tmp_path: Path, samba: SambaServer, remote_dir: str
) -> None:
    local = tmp_path / "local"
    local.mkdir()
    config = tmp_path / "config"
    add_profile(config, "p", local, samba.port, remote_dir, samba.user, samba.password)
    doc = local / "doc.txt"
    doc.write_bytes(b"A" * 5000)
    os.utime(doc, (OLD + 0.25, OLD + 0.25))  # exact in SMB's 100 ns and in a float
    run_json(["upload", "p"], config)
    target = tmp_path / "target"
    # A download of this version was killed halfway...
    stale = _plant(target, temp_name("doc.txt", _info(doc, "doc.txt")), b"A" * 2500)
    # ...and since then a newer version was backed up.
    doc.write_bytes(b"B" * 6000)
    run_json(["upload", "p"], config)

    # Another profile's restore into the same folder is under way.
    theirs = _plant(target, temp_name("x", FileInfo("x", 9, 1.0), "0thercmp"), b"live")

    data = run_json(["download", "p", "--to", str(target)], config)

    assert data["resumed_files"] == 0
    assert data["bytes_transferred"] == 6000
    assert not stale.exists()
    assert theirs.read_bytes() == b"live", "another restore in progress was disturbed"
    theirs.unlink()
    assert not partials(target)
    assert (target / "doc.txt").read_bytes() == b"B" * 6000


# --------------------------------------------------------------------------- server restart


@pytest.mark.slow
def test_server_restarted_mid_run_is_waited_for(
    tmp_path: Path, samba: SambaServer, remote_dir: str
) -> None:
    local = tmp_path / "local"
    local.mkdir()
    config = tmp_path / "config"
    share = samba.share_path("backup") / remote_dir
    files = {f"file{i}.bin": os.urandom(2 * MiB) for i in range(4)}
    for name, data in files.items():
        (local / name).write_bytes(data)
    with SlowRelay(samba.port, rate=1 * MiB) as relay:
        add_profile(config, "p", local, relay.port, remote_dir, samba.user, samba.password)
        proc = spawn_cli(["upload", "p", "--json", "--transfers", "2"], config)
        try:
            wait_for("the copies to be under way", lambda: partial_size(share) > MiB // 2, proc)
            samba.stop()
            complete = {p.name for p in share.glob("file*.bin")}
            assert len(complete) < len(files), "all files were in place before the stop"
            time.sleep(1.0)
            samba.start()
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                kill(proc)
    assert proc.returncode == 0, err
    report = json.loads(out)
    assert report["ok"] is True and report["files_transferred"] == 4
    assert tree_bytes(share) == files
    assert not partials(share)


@pytest.mark.parametrize("existing", [False, True], ids=["new", "changed"])
def test_complete_upload_temporary_is_put_in_place(
    tmp_path: Path, samba: SambaServer, remote_dir: str, existing: bool
) -> None:
    """Killed after the last byte but before the rename: the next run only renames."""
    local = tmp_path / "local"
    local.mkdir()
    config = tmp_path / "config"
    share = samba.share_path("backup") / remote_dir
    add_profile(config, "p", local, samba.port, remote_dir, samba.user, samba.password)
    doc = local / "doc.txt"
    if existing:
        doc.write_bytes(b"old version\n")
        os.utime(doc, (OLD, OLD))
        run_json(["upload", "p"], config)
    doc.write_bytes(b"N" * 7000)
    _plant(share, temp_name("doc.txt", _info(doc, "doc.txt")), b"N" * 7000, samba)

    data = run_json(["upload", "p"], config)

    assert data["files_transferred"] == 1 and data["resumed_files"] == 1
    assert data["bytes_transferred"] == 0
    assert (share / "doc.txt").read_bytes() == b"N" * 7000
    assert abs((share / "doc.txt").stat().st_mtime_ns - doc.stat().st_mtime_ns) < 1000
    assert not partials(share)
    if existing:
        [stamp] = os.listdir(share / ".backdown" / "versions")
        assert (
            share / ".backdown" / "versions" / stamp / "doc.txt"
        ).read_bytes() == b"old version\n"


def test_complete_download_temporary_is_put_in_place(
    tmp_path: Path, samba: SambaServer, remote_dir: str
) -> None:
    local = tmp_path / "local"
    local.mkdir()
    config = tmp_path / "config"
    add_profile(config, "p", local, samba.port, remote_dir, samba.user, samba.password)
    doc = local / "doc.txt"
    doc.write_bytes(b"D" * 7000)
    os.utime(doc, (OLD + 0.25, OLD + 0.25))  # exact in SMB's 100 ns and in a float
    run_json(["upload", "p"], config)
    target = tmp_path / "target"
    _plant(target, temp_name("doc.txt", _info(doc, "doc.txt")), b"D" * 7000)

    data = run_json(["download", "p", "--to", str(target)], config)

    assert data["files_transferred"] == 1 and data["resumed_files"] == 1
    assert data["bytes_transferred"] == 0
    assert (target / "doc.txt").read_bytes() == b"D" * 7000
    assert not partials(target)
