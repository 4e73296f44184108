"""The Samba test server behaves the way backdown will use it through pysmb.

These tests also pin down pysmb 1.2.15's behaviour against Samba 4.17 (SMB 2.0.2 is what
pysmb negotiates with ``is_direct_tcp=True``), which the product's error mapping relies on:

* ``connect()`` with a wrong password (or an unknown user) returns ``False``; it does not
  raise.  Any later call on that connection raises ``smb.base.NotReadyError`` ("SMB
  connection not authenticated").
* Failures are ``smb.smb_structs.OperationFailure``; ``e.message`` is the one-line text
  (``str(e)`` adds a multi-line packet dump) and ``e.smb_messages[-1].status`` the NTSTATUS.
* ``setLastWriteTime`` exists for SMB2 only and keeps 100 ns precision end to end.
"""

from __future__ import annotations

import io
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from samba import SambaServer
from smb.base import NotReadyError
from smb.smb_structs import OperationFailure
from smb.SMBConnection import SMBConnection

# NTSTATUS codes seen from Samba 4.17 for the failures below.
STATUS_ACCESS_DENIED = 0xC0000022
STATUS_OBJECT_NAME_COLLISION = 0xC0000035
STATUS_BAD_NETWORK_NAME = 0xC00000CC


def connect(server: SambaServer, password: str | None = None, **kwargs: object) -> SMBConnection:
    """Connect the way backdown does; assert that authentication succeeded."""
    conn = SMBConnection(
        server.user,
        server.password if password is None else password,
        "CLIENT",
        "SERVER",
        use_ntlm_v2=True,
        is_direct_tcp=True,
        **kwargs,
    )
    assert conn.connect(server.host, server.port, timeout=10) is True
    return conn


def failed_status(exc: OperationFailure) -> int:
    """The NTSTATUS of the failing reply (pysmb may append e.g. a successful CLOSE after it)."""
    return next(int(m.status) for m in exc.smb_messages if m.status)


@pytest.fixture
def conn(samba: SambaServer) -> Iterator[SMBConnection]:
    c = connect(samba)
    yield c
    c.close()


def test_connect_and_attributes(samba: SambaServer, conn: SMBConnection) -> None:
    assert samba.host == "127.0.0.1"
    assert samba.user == "bdtest"
    assert samba.password and samba.port > 1024
    assert conn.isUsingSMB2  # pysmb ends up on SMB 2.0.2
    shares = {s.name for s in conn.listShares(timeout=10)}
    assert {"backup", "readonly"} <= shares


def test_listens_on_loopback_only(samba: SambaServer) -> None:
    with socket.create_connection((samba.host, samba.port), timeout=5):
        pass
    conf = samba.conf_path.read_text()
    assert "interfaces = 127.0.0.1" in conf and "bind interfaces only = yes" in conf


def test_wrong_password_returns_false(samba: SambaServer) -> None:
    bad = SMBConnection(
        samba.user, samba.password + "x", "CLIENT", "SERVER", use_ntlm_v2=True, is_direct_tcp=True
    )
    try:
        # pysmb 1.2.15: returns False (no exception) when the server rejects the login.
        assert bad.connect(samba.host, samba.port, timeout=10) is False
        with pytest.raises(NotReadyError, match="SMB connection not authenticated"):
            bad.listPath("backup", "/")
    finally:
        bad.close()


def test_unknown_user_returns_false(samba: SambaServer) -> None:
    bad = SMBConnection("nosuchuser", "pw", "CLIENT", "SERVER", is_direct_tcp=True)
    try:
        assert bad.connect(samba.host, samba.port, timeout=10) is False
    finally:
        bad.close()


def test_store_retrieve_round_trip(
    samba: SambaServer, conn: SMBConnection, remote_dir: str
) -> None:
    data = os.urandom(300_000) + b"\0end"
    assert conn.storeFile("backup", f"{remote_dir}/blob.bin", io.BytesIO(data)) == len(data)
    out = io.BytesIO()
    conn.retrieveFile("backup", f"{remote_dir}/blob.bin", out)
    assert out.getvalue() == data
    assert (samba.share_path("backup") / remote_dir / "blob.bin").read_bytes() == data


def test_set_last_write_time(samba: SambaServer, conn: SMBConnection, remote_dir: str) -> None:
    path = f"{remote_dir}/stamp.txt"
    conn.storeFile("backup", path, io.BytesIO(b"stamp"))
    wanted = 1_600_000_000.1234567  # a 100 ns tick: the SMB FILETIME resolution
    conn.setLastWriteTime("backup", path, wanted)
    [entry] = [e for e in conn.listPath("backup", remote_dir) if e.filename == "stamp.txt"]
    # Seen: exact to the 100 ns FILETIME tick (diff 0.0); on disk st_mtime_ns=...123456800.
    assert abs(entry.last_write_time - wanted) < 1e-6
    assert abs(conn.getAttributes("backup", path).last_write_time - wanted) < 1e-6
    on_disk = (samba.share_path("backup") / path).stat().st_mtime_ns
    assert abs(on_disk - 1_600_000_000_123_456_700) <= 100


def test_missing_share_raises(conn: SMBConnection) -> None:
    with pytest.raises(OperationFailure) as info:
        conn.listPath("nosuchshare", "/")
    assert (
        info.value.message == "Failed to list  on nosuchshare: Unable to connect to shared device"
    )
    assert failed_status(info.value) == STATUS_BAD_NETWORK_NAME


def test_readonly_share_refuses_store(samba: SambaServer, conn: SMBConnection) -> None:
    # Tests can still put files there directly on disk, as root.
    (samba.share_path("readonly") / "given.txt").write_bytes(b"given")
    out = io.BytesIO()
    conn.retrieveFile("readonly", "given.txt", out)
    assert out.getvalue() == b"given"
    with pytest.raises(OperationFailure) as info:
        conn.storeFile("readonly", "new.txt", io.BytesIO(b"nope"))
    assert info.value.message == "Failed to store new.txt on readonly: Unable to open file"
    assert failed_status(info.value) == STATUS_ACCESS_DENIED
    assert not (samba.share_path("readonly") / "new.txt").exists()


def test_rename_onto_existing_fails(
    samba: SambaServer, conn: SMBConnection, remote_dir: str
) -> None:
    conn.storeFile("backup", f"{remote_dir}/a.txt", io.BytesIO(b"a"))
    conn.storeFile("backup", f"{remote_dir}/b.txt", io.BytesIO(b"b"))
    with pytest.raises(OperationFailure) as info:
        conn.rename("backup", f"{remote_dir}/a.txt", f"{remote_dir}/b.txt")
    # pysmb reports the path with backslashes: "Failed to rename t_x\\a.txt on backup: ..."
    assert info.value.message == f"Failed to rename {remote_dir}\\a.txt on backup: Rename failed"
    assert failed_status(info.value) == STATUS_OBJECT_NAME_COLLISION
    assert (samba.share_path("backup") / remote_dir / "b.txt").read_bytes() == b"b"
    conn.rename("backup", f"{remote_dir}/a.txt", f"{remote_dir}/c.txt")  # free target: fine
    assert (samba.share_path("backup") / remote_dir / "c.txt").read_bytes() == b"a"


def test_signing_mandatory_server(samba_signing: SambaServer) -> None:
    assert "server signing = mandatory" in samba_signing.conf_path.read_text()
    c = connect(samba_signing)  # default sign_options=SIGN_WHEN_REQUIRED
    try:
        c.storeFile("backup", "signed.txt", io.BytesIO(b"signed"))
        out = io.BytesIO()
        c.retrieveFile("backup", "signed.txt", out)
        assert out.getvalue() == b"signed"
        c.deleteFiles("backup", "signed.txt")
    finally:
        c.close()


def test_smbclient_sees_pysmb_file(
    samba: SambaServer, conn: SMBConnection, remote_dir: str, tmp_path: Path
) -> None:
    conn.storeFile("backup", f"{remote_dir}/seen.txt", io.BytesIO(b"seen by smbclient"))
    listing = samba.smbclient("backup", f"cd {remote_dir}; ls")
    assert listing.returncode == 0, listing.stderr
    assert "seen.txt" in listing.stdout
    got = samba.smbclient("backup", f"get {remote_dir}/seen.txt copy.txt", cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "copy.txt").read_bytes() == b"seen by smbclient"
    # The password is never on smbclient's command line: it comes from a 0600 file.
    assert samba.auth_file.stat().st_mode & 0o777 == 0o600


def test_restart_keeps_port_and_data(samba: SambaServer, remote_dir: str) -> None:
    c = connect(samba)
    c.storeFile("backup", f"{remote_dir}/kept.txt", io.BytesIO(b"kept"))
    port = samba.port
    started = time.monotonic()
    samba.restart()
    assert time.monotonic() - started < 10
    assert samba.port == port
    c.close()
    c = connect(samba)
    try:
        out = io.BytesIO()
        c.retrieveFile("backup", f"{remote_dir}/kept.txt", out)
        assert out.getvalue() == b"kept"
    finally:
        c.close()


def test_remote_dir_is_fresh_and_writable(samba: SambaServer, remote_dir: str) -> None:
    path = samba.share_path("backup") / remote_dir
    assert path.is_dir() and not any(path.iterdir())
    assert remote_dir.startswith("t_test_remote_dir_is_fresh_and_writable_")
    assert path.stat().st_uid == samba.uid
