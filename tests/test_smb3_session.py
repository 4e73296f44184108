"""The SMB 3 session (backdown.smb.smb3, on smbprotocol) against the real Samba server.

The checks test_smb_session.py makes of SmbSession (listings, transfers around the block
sizes, the put_file guarantees, renames, errors) made of Smb3Session, and what SMB 3 is for:
servers that require SMB 3, encryption or signing; logon refusals named one by one; every
wait bounded and Ctrl-C obeyed; replies tampered with on the way (tests/wire_proxy.py).
Everything is checked against the share's folder on the server's disk too.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from samba import SambaServer, smbd_missing_reason
from smbprotocol.exceptions import SMBResponseException
from smbprotocol.header import SMB2HeaderResponse
from wire_proxy import CMD_READ, FLAG_SIGNED, HEADER, WireProxy, join_messages

from backdown.errors import (
    AuthError,
    BackdownError,
    Cancelled,
    ConnectError,
    LocalFileError,
    NoAnswer,
    RemoteAccessDenied,
    RemoteExists,
    RemoteFileError,
    RemoteNotFound,
    ShareError,
)
from backdown.smb import WRITE_WINDOW, Endpoint, Put, connect, logon, smb3, smb3_link
from backdown.smb.smb3 import DialectTooOld, Smb3Session, connect3

pytestmark = pytest.mark.samba

MiB = 1 << 20
BIG = 2 * smb3.MAX_READ + 1  # read in a stream of several reads, not one compound
ServerFactory = Callable[..., SambaServer]
DirMaker = Callable[[SambaServer], str]


def endpoint_for(
    server: SambaServer, share: str = "backup", *, port: int | None = None, **timeouts: float
) -> Endpoint:
    """The server's share as the test user (through `port`, a relay, if given)."""
    return Endpoint("127.0.0.1", port or server.port, share, server.user,
                    password=server.password, **timeouts)  # fmt: skip


@pytest.fixture
def session(samba: SambaServer) -> Iterator[Smb3Session]:
    with connect3(endpoint_for(samba)) as s:
        yield s


def _names(entries: list) -> set[str]:
    return {e.name for e in entries}


def _round_trip(s: Smb3Session, server: SambaServer, folder: str, size: int) -> None:
    """put_file into place and get_file back, checked on the server's disk too."""
    data = os.urandom(size)
    s.put_file(Put(f"{folder}/.t{size}", 0, size, 1e9, f"{folder}/f{size}"), io.BytesIO(data))
    assert (server.share_path("backup") / folder / f"f{size}").read_bytes() == data
    out = io.BytesIO()
    assert s.get_file(f"{folder}/f{size}", out, 0, size) == size
    assert out.getvalue() == data


# ------------------------------------------------------------------ servers pysmb cannot use


class _Smb3Server(SambaServer):
    """A server pysmb cannot log on to (SMB 3 only, or encryption required): SambaServer's
    readiness check is a pysmb logon, so Samba's own smbclient checks it instead."""

    def _login_works(self) -> bool:
        return self.smbclient("backup", "ls", timeout=10).returncode == 0


@pytest.fixture(scope="module")
def smb3_server() -> Iterator[ServerFactory]:
    """``smb3_server(**extra_global)``: a started _Smb3Server, one per configuration."""
    reason = smbd_missing_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"Samba test server unavailable in CI: {reason}")
        pytest.skip(f"Samba test server unavailable: {reason}")
    servers: dict[tuple[tuple[str, str], ...], _Smb3Server] = {}

    def get(**extra_global: str) -> SambaServer:
        key = tuple(sorted(extra_global.items()))
        if key not in servers:
            root = Path(tempfile.mkdtemp(prefix="backdown-samba-smb3-"))
            servers[key] = _Smb3Server(root, extra_global=extra_global)
            servers[key].start()
        return servers[key]

    yield get
    for server in servers.values():
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


# --------------------------------------------------------------------------- listing and stat


def test_listing_agrees_with_the_disk(
    samba: SambaServer, session: Smb3Session, remote_dir: str
) -> None:
    names = ["a.txt", "Ünïcödé café.txt", "日本語.txt", "emoji 😀.txt", "sp ace"]
    for i, name in enumerate(names):
        samba.put_file("backup", f"{remote_dir}/{name}", b"x" * i, mtime=1_600_000_000 + i)
    samba.put_file("backup", f"{remote_dir}/sub/inner.txt", b"in")
    entries = session.listdir(remote_dir)
    assert _names(entries) == {*names, "sub"}
    by_name = {e.name: e for e in entries}
    for i, name in enumerate(names):
        assert by_name[name].size == i and not by_name[name].is_dir
        assert by_name[name].mtime == pytest.approx(1_600_000_000 + i, abs=1e-6)
    assert by_name["sub"].is_dir
    assert sorted(os.listdir(samba.share_path("backup") / remote_dir)) == sorted(_names(entries))


def test_a_folder_larger_than_one_round_trip_lists_completely(
    samba: SambaServer, session: Smb3Session, remote_dir: str
) -> None:
    folder = samba.share_path("backup") / remote_dir
    for i in range(1500):  # far more than the listing's two 64 KiB directory reads hold
        (folder / f"file-with-a-longish-name-{i:05d}.bin").write_bytes(b"")
    samba.chown(folder)
    entries = session.listdir(remote_dir)
    assert len(entries) == 1500
    assert _names(entries) == set(os.listdir(folder))


def test_listing_and_stat_errors(samba: SambaServer, session: Smb3Session, remote_dir: str) -> None:
    with pytest.raises(RemoteNotFound):
        session.listdir(f"{remote_dir}/missing")
    samba.put_file("backup", f"{remote_dir}/file.txt", b"four", mtime=1_234_567_890.25)
    with pytest.raises(RemoteFileError):
        session.listdir(f"{remote_dir}/file.txt")
    assert session.stat(f"{remote_dir}/missing") is None
    assert session.stat(f"{remote_dir}/missing/deeper") is None
    entry = session.stat(f"{remote_dir}/file.txt")
    assert entry is not None and (entry.name, entry.is_dir, entry.size) == ("file.txt", False, 4)
    assert entry.mtime == pytest.approx(1_234_567_890.25, abs=1e-6)
    root = session.stat("")  # the share's root, probed without a listing
    assert root is not None and root.is_dir
    assert _names(session.listdir(remote_dir)) == {"file.txt"}  # still usable
    assert not session.closed and session.link.in_flight == 0


# --------------------------------------------------------------------------- transfers


@pytest.mark.parametrize("size", [0, 1, 65537, 5 * MiB])
def test_put_and_get_round_trip_byte_exact(
    samba: SambaServer, session: Smb3Session, remote_dir: str, size: int
) -> None:
    data = os.urandom(size)
    sent: list[int] = []
    end = session.put_file(
        Put(f"{remote_dir}/.tmp", 0, size, 1_500_000_000.5, f"{remote_dir}/f"),
        io.BytesIO(data),
        on_sent=sent.append,
    )
    assert end == size and sum(sent) == size
    on_disk = samba.share_path("backup") / remote_dir / "f"
    assert on_disk.read_bytes() == data
    assert on_disk.stat().st_mtime_ns == 1_500_000_000_500_000_000
    assert not (samba.share_path("backup") / remote_dir / ".tmp").exists()
    out = io.BytesIO()
    assert session.get_file(f"{remote_dir}/f", out, 0, size) == size
    assert out.getvalue() == data
    out = io.BytesIO()
    assert session.read_file(f"{remote_dir}/f", out) == size
    assert out.getvalue() == data
    assert session.link.in_flight == 0


def test_resume_writes_and_reads_from_an_offset(
    samba: SambaServer, session: Smb3Session, remote_dir: str
) -> None:
    data = os.urandom(BIG + 12345)
    session.put_file(Put(f"{remote_dir}/part", 0, None, None, None), io.BytesIO(data[:MiB]))
    session.put_file(Put(f"{remote_dir}/part", MiB, len(data)), io.BytesIO(data[MiB:]))
    assert (samba.share_path("backup") / remote_dir / "part").read_bytes() == data
    out = io.BytesIO()
    assert session.get_file(f"{remote_dir}/part", out, 250_000, len(data)) == len(data) - 250_000
    assert out.getvalue() == data[250_000:]
    # Stretches in the middle (resume reads back the last MiB): streamed, compounded, tiny.
    for start, end in ((100, BIG - 7), (100, MiB + 7), (10, 20)):
        out = io.BytesIO()
        assert session.get_file(f"{remote_dir}/part", out, start, None, end=end) == end - start
        assert out.getvalue() == data[start:end]
    # Offset 0 truncates: the rest of the old content goes.
    session.write_file(f"{remote_dir}/part", io.BytesIO(b"short"))
    assert (samba.share_path("backup") / remote_dir / "part").read_bytes() == b"short"


@pytest.mark.parametrize("size", [3, 2 * MiB])
def test_rename_to_a_taken_name_is_refused_with_the_file_complete(
    samba: SambaServer, session: Smb3Session, remote_dir: str, size: int
) -> None:
    folder = samba.share_path("backup") / remote_dir
    samba.put_file("backup", f"{remote_dir}/target", b"old")
    data = os.urandom(size)
    with pytest.raises(RemoteExists):
        session.put_file(
            Put(f"{remote_dir}/.tmp", 0, size, 1e9, f"{remote_dir}/target"), io.BytesIO(data)
        )
    assert (folder / "target").read_bytes() == b"old"
    assert (folder / ".tmp").read_bytes() == data  # complete, ready for the next step
    assert (folder / ".tmp").stat().st_mtime == 1e9
    assert not session.closed and session.link.in_flight == 0
    assert samba.open_files() == []  # no handle left open on the server


@pytest.mark.parametrize("size", [10, 3 * MiB])
def test_a_source_that_changes_is_not_put_in_place(
    samba: SambaServer, session: Smb3Session, remote_dir: str, size: int
) -> None:
    calls: list[int] = []
    sent: list[int] = []

    def changed() -> None:
        calls.append(sum(sent))  # by now every byte was acknowledged
        raise LocalFileError("changed while it was being copied")

    folder = samba.share_path("backup") / remote_dir
    with pytest.raises(LocalFileError):
        session.put_file(
            Put(f"{remote_dir}/.tmp", 0, size, 1e9, f"{remote_dir}/real"),
            io.BytesIO(b"z" * size),
            before_finish=changed,
            on_sent=sent.append,
        )
    assert calls == [0 if size == 10 else size]  # a small file is checked before it is sent
    assert not (folder / "real").exists()
    # A source shorter or longer than promised is refused the same way.
    for source in (b"z" * (size - 1), b"z" * (size + 1)):
        with pytest.raises(LocalFileError):
            session.put_file(
                Put(f"{remote_dir}/.tmp", 0, size, 1e9, f"{remote_dir}/real"), io.BytesIO(source)
            )
        assert not (folder / "real").exists()
    assert not session.closed and samba.open_files() == []


def test_a_file_that_changed_on_the_server_is_refused_on_read(
    samba: SambaServer, session: Smb3Session, remote_dir: str
) -> None:
    samba.put_file("backup", f"{remote_dir}/f", b"12345")
    for expected in (4, 6, 100_000, BIG):
        with pytest.raises(RemoteFileError, match="changed on the server"):
            session.get_file(f"{remote_dir}/f", io.BytesIO(), 0, expected)
    with pytest.raises(RemoteFileError, match="changed on the server"):
        session.get_file(f"{remote_dir}/f", io.BytesIO(), 0, None, end=BIG)
    with pytest.raises(RemoteNotFound):
        session.get_file(f"{remote_dir}/missing", io.BytesIO(), 0, 5)
    assert not session.closed and samba.open_files() == []


# --------------------------------------------------------------------------- names and folders


def test_renames_and_rename_pair(samba: SambaServer, session: Smb3Session, remote_dir: str) -> None:
    folder = samba.share_path("backup") / remote_dir

    def at(name: str) -> str:
        return f"{remote_dir}/{name}"

    for name in ("a", "b", "c", "temp"):
        samba.put_file("backup", at(name), name.encode())
    with pytest.raises(RemoteExists):
        session.rename(at("a"), at("b"))
    session.rename(at("a"), at("b"), replace=True)
    assert not (folder / "a").exists() and (folder / "b").read_bytes() == b"a"
    session.makedirs(at("versions"))
    # Both renames: the old file into the versions, the new one into its place.
    assert session.rename_pair((at("b"), at("versions/b")), (at("temp"), at("b")))
    assert (folder / "versions/b").read_bytes() == b"a" and (folder / "b").read_bytes() == b"temp"
    # Nothing to move aside: the second rename happens all the same.
    assert not session.rename_pair((at("gone"), at("versions/gone")), (at("c"), at("d")))
    assert (folder / "d").read_bytes() == b"c" and not (folder / "c").exists()
    # The second fails (its target is taken): its error is raised, the first rename done.
    samba.put_file("backup", at("e"), b"e")
    with pytest.raises(RemoteExists, match="renaming .*/e"):
        session.rename_pair((at("d"), at("versions/d")), (at("e"), at("b")))
    assert (folder / "versions/d").read_bytes() == b"c" and (folder / "e").exists()
    assert not session.closed and samba.open_files() == []


def test_folders_times_and_remove_tree(
    samba: SambaServer, session: Smb3Session, remote_dir: str
) -> None:
    folder = samba.share_path("backup") / remote_dir
    session.mkdir(f"{remote_dir}/m")
    with pytest.raises(RemoteExists):
        session.mkdir(f"{remote_dir}/m")
    session.makedirs(f"{remote_dir}/m/n/o")
    session.makedirs(f"{remote_dir}/m/n/o")  # existing folders on the way are fine
    samba.put_file("backup", f"{remote_dir}/x", b"a file")
    with pytest.raises(RemoteExists, match="a file of that name is in the way"):
        session.makedirs(f"{remote_dir}/x/y")
    session.write_file(f"{remote_dir}/m/n/o/leaf", io.BytesIO(b"leaf"))
    session.set_mtime(f"{remote_dir}/m/n/o/leaf", 1_300_000_000.25)
    assert (folder / "m/n/o/leaf").stat().st_mtime_ns == 1_300_000_000_250_000_000
    try:  # Samba takes delete-on-close on a folder that is not empty, and keeps the folder
        session.rmdir(f"{remote_dir}/m/n/o")  # (as it does for SmbSession's same request)
    except RemoteFileError:
        pass
    assert (folder / "m/n/o/leaf").read_bytes() == b"leaf"
    with pytest.raises(RemoteFileError):
        session.remove(f"{remote_dir}/m")  # a folder is not removed as a file
    session.remove(f"{remote_dir}/x")
    session.remove_tree(f"{remote_dir}/m")
    assert os.listdir(folder) == []


# --------------------------------------------------------------------------- errors


def test_access_denied_and_a_missing_share(samba: SambaServer) -> None:
    with connect3(endpoint_for(samba, "readonly")) as s:
        with pytest.raises(RemoteAccessDenied):
            s.write_file("nope", io.BytesIO(b"x"))
        with pytest.raises(RemoteAccessDenied):
            s.mkdir("nope")
        assert _names(s.listdir("")) == set(os.listdir(samba.share_path("readonly")))
        assert not s.closed
    with connect3(endpoint_for(samba, "nosuch")) as s, pytest.raises(ShareError, match="nosuch"):
        s.stat("anything")  # the share is opened by the first operation, as with pysmb


def test_wrong_password_is_an_auth_error_without_the_password(samba: SambaServer) -> None:
    secret = "Wr0ng-" + samba.password
    endpoint = Endpoint("127.0.0.1", samba.port, "backup", samba.user, password=secret)
    with pytest.raises(AuthError) as caught:
        connect3(endpoint)
    message = str(caught.value)
    assert "wrong user name or password" in message and samba.user in message
    assert secret not in message and samba.password not in message and "\n" not in message
    no_user = Endpoint("127.0.0.1", samba.port, "backup")  # guest, which this server refuses
    with pytest.raises(AuthError, match="refused guest access"):
        connect3(no_user)


def _pdbedit(server: SambaServer, *args: str) -> None:
    subprocess.run(["pdbedit", "-s", str(server.conf_path), "-u", server.user, *args],
                   capture_output=True, check=True)  # fmt: skip


def _net_sam(server: SambaServer, what: str, value: str) -> None:
    user = f"BDTESTSRV\\{server.user}"  # the server's netbios name (tests/samba.py)
    subprocess.run(["net", "-s", str(server.conf_path), "sam", "set", what, user, value],
                   capture_output=True, check=True)  # fmt: skip


ACCOUNT_STATES = {
    "disabled": (lambda s: _pdbedit(s, "-c", "[D]"), lambda s: _pdbedit(s, "-c", "[]"),
                 "account is disabled"),
    "locked out": (lambda s: _pdbedit(s, "-c", "[L]"), lambda s: _pdbedit(s, "-c", "[]"),
                   "account is locked out"),
    "must change": (lambda s: _net_sam(s, "pwdmustchangenow", "yes"),
                    lambda s: _net_sam(s, "pwdmustchangenow", "no"),
                    "password must be changed"),
    "workstations": (lambda s: _net_sam(s, "workstations", "OTHERPC"),
                     lambda s: _net_sam(s, "workstations", ""), "from this computer"),
    "expired": (lambda s: _pdbedit(s, "--kickoff-time=1"),
                lambda s: _pdbedit(s, "--kickoff-time=never"), "account has expired"),
}  # fmt: skip


@pytest.mark.parametrize("transport", ["smb2", "smb3"])
@pytest.mark.parametrize("state", ACCOUNT_STATES)
def test_a_refused_account_is_named_for_what_it_is(
    state: str, transport: str, smb3_server: ServerFactory, samba_with: Callable[..., SambaServer]
) -> None:
    """Both transports name the refusal (pysmb says only False: its transport keeps the
    status of the session setup's reply and names it)."""
    if transport == "smb3":
        server, open_session = smb3_server(**{"server min protocol": "SMB3"}), connect3
    else:
        server, open_session = samba_with(extra_global={"comment": "account states"}), connect
    make, undo, words = ACCOUNT_STATES[state]
    make(server)
    try:
        with pytest.raises(AuthError) as caught:
            open_session(endpoint_for(server))
    finally:
        undo(server)
    message = str(caught.value)
    assert words in message and server.user in message, message
    assert server.password not in message and "\n" not in message
    with open_session(endpoint_for(server)) as s:  # and the account works again
        s.stat("")


def _logon_refused(status: int) -> str:
    header = SMB2HeaderResponse()
    header["status"] = status
    exc = SMBResponseException(header)
    error = smb3_link._logon_error(exc, [], Endpoint("nas", 445, "s", "ann", password="pw"), "3")
    assert isinstance(error, AuthError)
    return str(error)


def test_refusals_samba_cannot_stage_are_named_too() -> None:
    assert "logon hours" in _logon_refused(logon.STATUS_INVALID_LOGON_HOURS)
    assert "password has expired" in _logon_refused(logon.STATUS_PASSWORD_EXPIRED)
    assert "over the network" in _logon_refused(logon.STATUS_LOGON_TYPE_NOT_GRANTED)
    # A status without a sentence of its own is named, and numbered.
    other = _logon_refused(0xC000009A)
    assert "STATUS_INSUFFICIENT_RESOURCES (0xC000009A)" in other
    assert other.startswith("nas:445 refused user 'ann': ") and "pw" not in other.split(": ", 1)[1]


# ------------------------------------------------------------------ servers that want SMB 3


def test_an_smb3_only_server_refuses_pysmb_and_takes_smb3(smb3_server: ServerFactory) -> None:
    server = smb3_server(**{"server min protocol": "SMB3"})
    with pytest.raises(ConnectError):
        connect(endpoint_for(server)).close()
    with connect3(endpoint_for(server)) as s:
        assert s.dialect.startswith("3"), s.dialect
        s.makedirs("three")
        for size in (0, 65537, BIG):
            _round_trip(s, server, "three", size)
        s.remove_tree("three")


def test_a_server_that_requires_encryption(smb3_server: ServerFactory) -> None:
    server = smb3_server(**{"smb encrypt": "required"})
    with pytest.raises(BackdownError):
        connect(endpoint_for(server)).close()
    with connect3(endpoint_for(server)) as s:
        assert s.encrypted and s.cipher and s.dialect == "3.1.1"
        s.makedirs("secret")
        for size in (1, BIG):
            _round_trip(s, server, "secret", size)
        assert _names(s.listdir("secret")) == {"f1", f"f{BIG}"}
        s.remove_tree("secret")


def test_encryption_asked_for_on_an_ordinary_server(samba: SambaServer, remote_dir: str) -> None:
    with connect3(endpoint_for(samba)) as plain:
        assert not plain.encrypted and not plain.signed and plain.cipher is None
    with connect3(endpoint_for(samba), encrypt=True) as s:
        assert s.encrypted and s.cipher == "AES-128-GCM"
        _round_trip(s, samba, remote_dir, BIG)


def test_signing_mandatory_server_signs_everything(
    samba_signing: SambaServer, samba: SambaServer, remote_dir: str
) -> None:
    with connect3(endpoint_for(samba_signing)) as s:
        assert s.signed and not s.encrypted
        s.makedirs("signed/deep")
        _round_trip(s, samba_signing, "signed", 10)
        _round_trip(s, samba_signing, "signed/deep", BIG)
        assert _names(s.listdir("signed")) == {"f10", "deep"}
        s.remove_tree("signed")
    with connect3(endpoint_for(samba), require_signing=True) as s:  # asked for by us
        assert s.signed
        _round_trip(s, samba, remote_dir, 70_000)


def test_an_smb21_server_works_but_cannot_encrypt(
    samba_with: ServerFactory, remote_dir_in: DirMaker
) -> None:
    server = samba_with(extra_global={"server max protocol": "SMB2_10"})
    remote = remote_dir_in(server)
    with connect3(endpoint_for(server)) as s:
        assert s.dialect == "2.1" and not s.encrypted
        _round_trip(s, server, remote, 2 * MiB + 3)
    with pytest.raises(ConnectError, match="cannot encrypt") as caught:
        connect3(endpoint_for(server), encrypt=True)
    assert "\n" not in str(caught.value)


def test_an_smb202_only_server_is_left_to_pysmb(samba_with: ServerFactory) -> None:
    server = samba_with(extra_global={"server max protocol": "SMB2_02"})
    with pytest.raises(DialectTooOld, match="2.0.2"):
        connect3(endpoint_for(server))
    connect(endpoint_for(server)).close()  # which the SMB 2 transport takes


def test_guest_logs_on_without_a_user(samba_with: ServerFactory) -> None:
    server = samba_with(
        extra_global={"map to guest": "Bad User", "restrict anonymous": "0"},
        extra_share={"guest ok": "yes", "valid users": ""},
    )
    with connect3(Endpoint("127.0.0.1", server.port, "backup")) as s:
        assert s.listdir("") is not None and not s.signed


@pytest.mark.parametrize(
    "limits",
    [{"smb2 max credits": "2"}, {"smb2 max read": "32768", "smb2 max write": "32768",
                                 "smb2 max trans": "32768"}],
    ids=["two-credits", "32k-io"],
)  # fmt: skip
def test_a_server_with_few_credits_or_small_io(
    limits: dict[str, str], samba_with: ServerFactory, remote_dir_in: DirMaker
) -> None:
    server = samba_with(extra_global=limits)
    remote = remote_dir_in(server)
    folder = server.share_path("backup") / remote
    for i in range(1500):
        (folder / f"entry-with-a-longish-name-{i:05d}").write_bytes(b"")
    server.chown(folder)
    with connect3(endpoint_for(server)) as s:
        assert len(s.listdir(remote)) == 1500
        for size in (1, 5, 65537, 3 * MiB):
            _round_trip(s, server, remote, size)
        s.makedirs(f"{remote}/v")
        moved = s.rename_pair((f"{remote}/f5", f"{remote}/v/f5"), (f"{remote}/f1", f"{remote}/f5"))
        assert moved and (folder / "f5").stat().st_size == 1
        if limits.get("smb2 max credits") == "2":
            assert s.link.one_by_one > 0  # the rig: chains really went a request at a time


# --------------------------------------------------------------------------- deadlines and Ctrl-C


def _bounded(fn: Callable[[], object], seconds: float = 10.0) -> object:
    """fn() in a thread: its result or its exception, or a failure instead of a hung suite
    (the suite has no time limit per test, and these tests are about waits that end)."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the test's thread
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"still waiting after {seconds:g} s: a wait without a deadline")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box.get("value")


def _serving(samba: SambaServer, s: Smb3Session) -> int:
    """The pid of the smbd child that serves this session's connection."""
    port = s.link.conn.transport._sock.getsockname()[1]  # smbprotocol's socket (Tcp)
    return next(pid for pid, p in samba.client_ports().items() if p == port)


def test_a_server_that_stops_answering_is_no_answer_in_time(samba: SambaServer) -> None:
    with connect3(endpoint_for(samba, timeout=1.0)) as s:
        s.stat("")
        pid = _serving(samba, s)
        os.kill(pid, signal.SIGSTOP)
        try:
            began = time.monotonic()
            with pytest.raises(NoAnswer, match="no answer in 1 s"):
                _bounded(lambda: s.listdir(""))
            assert time.monotonic() - began < 3 and s.closed
        finally:
            os.kill(pid, signal.SIGCONT)
    cancel = threading.Event()
    with connect3(endpoint_for(samba), cancel) as s:  # 20 s to answer: Ctrl-C comes first
        s.stat("")
        pid = _serving(samba, s)
        os.kill(pid, signal.SIGSTOP)
        try:
            threading.Timer(0.3, cancel.set).start()
            began = time.monotonic()
            with pytest.raises(Cancelled):
                _bounded(lambda: s.listdir(""))
            assert time.monotonic() - began < 2 and s.closed
        finally:
            os.kill(pid, signal.SIGCONT)


def test_connecting_to_a_server_that_never_answers(samba: SambaServer) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never says a word
        port = silent.getsockname()[1]
        endpoint = Endpoint("127.0.0.1", port, "backup", "u", password="pw", connect_timeout=1)
        began = time.monotonic()
        with pytest.raises(NoAnswer):
            _bounded(lambda: connect3(endpoint))
        assert time.monotonic() - began < 3
        cancel = threading.Event()
        threading.Timer(0.3, cancel.set).start()
        began = time.monotonic()
        with pytest.raises(Cancelled):
            _bounded(lambda: connect3(Endpoint("127.0.0.1", port, "backup", "u", password="pw"),
                                      cancel))  # fmt: skip
        assert time.monotonic() - began < 2


class _Staller(WireProxy):
    """Passes the first `replies` frames from the server, then swallows every later one: a
    server that hangs in the middle of the logon or of opening the share."""

    def __init__(self, port: int, replies: int) -> None:
        super().__init__(port)
        self.left = replies

    def _frame(self, frame, direction, conn):  # type: ignore[no-untyped-def]
        if direction == "s2c":
            if self.left <= 0:
                return b""
            self.left -= 1
        return super()._frame(frame, direction, conn)


@pytest.mark.parametrize(("replies", "where"), [(1, "logon"), (3, "opening the share")])
def test_a_server_that_hangs_after_the_negotiation(
    samba: SambaServer, replies: int, where: str
) -> None:
    # Negotiation is one reply, the NTLM logon two; smbprotocol waits for the next ones
    # without a deadline of its own: the watchdog ends the wait.
    with _Staller(samba.port, replies) as proxy:
        endpoint = endpoint_for(samba, port=proxy.port, connect_timeout=1, timeout=1)
        began = time.monotonic()

        def stat_of_the_root() -> None:
            with connect3(endpoint) as s:
                s.stat("")

        with pytest.raises(NoAnswer, match=where):
            _bounded(stat_of_the_root)
        assert time.monotonic() - began < 3


class _SlowDisk:
    """A local disk that takes `pause` seconds over its first block."""

    def __init__(self, pause: float) -> None:
        self.pause = pause
        self.data = io.BytesIO()

    def write(self, data: bytes) -> int:
        if not self.data.tell():
            time.sleep(self.pause)
        return self.data.write(data)


def test_replies_that_came_in_time_count_after_a_slow_local_write(
    samba: SambaServer, remote_dir: str
) -> None:
    data = os.urandom(BIG)
    samba.put_file("backup", f"{remote_dir}/f", data)
    with connect3(endpoint_for(samba, timeout=1.0)) as s:
        s.get_file(f"{remote_dir}/f", io.BytesIO(), 0, len(data))  # credits for 3 in flight
        disk = _SlowDisk(1.5)  # past the deadline of the reads sent with the first
        assert s.get_file(f"{remote_dir}/f", disk, 0, len(data)) == len(data)
        assert disk.data.getvalue() == data and not s.closed


class _CancellingWriter:
    """A local file that presses Ctrl-C (sets the run's cancel flag) after its first block."""

    def __init__(self, cancel: threading.Event) -> None:
        self.cancel = cancel
        self.blocks = 0

    def write(self, data: bytes) -> int:
        self.blocks += 1
        self.cancel.set()
        return len(data)


class _CancellingReader:
    """A local file of `size` bytes that presses Ctrl-C as its first block is read."""

    def __init__(self, cancel: threading.Event, size: int) -> None:
        self.cancel = cancel
        self.left = size
        self.blocks = 0

    def read(self, n: int = -1) -> bytes:
        self.blocks += 1
        self.cancel.set()
        n = min(n, self.left)
        self.left -= n
        return b"r" * n


def test_ctrl_c_stops_a_long_read_and_write_soon(samba: SambaServer, remote_dir: str) -> None:
    samba.put_file("backup", f"{remote_dir}/big", os.urandom(32 * MiB))
    cancel = threading.Event()
    with connect3(endpoint_for(samba), cancel) as s:
        writer = _CancellingWriter(cancel)
        with pytest.raises(Cancelled):
            s.get_file(f"{remote_dir}/big", writer, 0, 32 * MiB)
        assert writer.blocks == 1 and s.closed
    cancel.clear()
    with connect3(endpoint_for(samba), cancel) as s:
        reader = _CancellingReader(cancel, 64 * MiB)
        with pytest.raises(Cancelled):
            s.put_file(Put(f"{remote_dir}/.up", 0, 64 * MiB, 1e9, f"{remote_dir}/up"), reader)
        assert reader.blocks <= 5 and s.closed  # what the write window lets out, no more
    assert not (samba.share_path("backup") / remote_dir / "up").exists()


class _Source:
    """A local file that records, at each block read, how many bytes it has handed out
    beyond those the server has acknowledged (put_file's on_sent)."""

    def __init__(self, data: bytes) -> None:
        self.file = io.BytesIO(data)
        self.acked = 0
        self.ahead: list[int] = []

    def read(self, n: int = -1) -> bytes:
        self.ahead.append(self.file.tell() - self.acked)  # all of it sent by now
        return self.file.read(n)

    def sent(self, n: int) -> None:
        self.acked += n


def test_writes_stay_within_the_window_of_acknowledged_bytes(
    samba: SambaServer, session: Smb3Session, remote_dir: str
) -> None:
    # What upload.py's resume relies on: only the last WRITE_WINDOW bytes can be wrong.
    data = os.urandom(24 * MiB)  # enough requests for the credit window to grow past it
    source = _Source(data)
    session.put_file(Put(f"{remote_dir}/w", 0, len(data)), source, on_sent=source.sent)
    assert (samba.share_path("backup") / remote_dir / "w").read_bytes() == data
    assert max(source.ahead) <= WRITE_WINDOW
    assert max(source.ahead) > smb3.MAX_WRITE  # several writes were in flight


class _FailingReader:
    """A local file whose disk fails after a few blocks."""

    def __init__(self, good_blocks: int) -> None:
        self.left = good_blocks

    def read(self, n: int = -1) -> bytes:
        if self.left == 0:
            raise LocalFileError("cannot read local file: Input/output error")
        self.left -= 1
        return b"b" * n


class _FailingWriter:
    """A local disk that fills up after `room` bytes."""

    def __init__(self, room: int) -> None:
        self.room = room

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            raise LocalFileError("cannot write local file: No space left on device")
        self.room -= len(data)
        return len(data)


def test_a_local_error_mid_file_leaves_the_session_in_step(
    samba: SambaServer, session: Smb3Session, remote_dir: str
) -> None:
    with pytest.raises(LocalFileError):
        session.put_file(Put(f"{remote_dir}/.tmp", 0, 20 * MiB, 1e9, f"{remote_dir}/big"),
                         _FailingReader(10))  # fmt: skip
    assert not session.closed and session.link.in_flight == 0
    assert not (samba.share_path("backup") / remote_dir / "big").exists()
    data = os.urandom(BIG)
    samba.put_file("backup", f"{remote_dir}/down", data)
    with pytest.raises(LocalFileError):
        session.get_file(f"{remote_dir}/down", _FailingWriter(3 * MiB), 0, len(data))
    assert not session.closed and session.link.in_flight == 0
    out = io.BytesIO()
    session.get_file(f"{remote_dir}/down", out, 0, len(data))  # the next request still works
    assert out.getvalue() == data
    assert samba.open_files() == []


# --------------------------------------------------------------------------- replies tampered with


def test_short_reads_and_writes_are_never_success(samba: SambaServer, remote_dir: str) -> None:
    folder = samba.share_path("backup") / remote_dir
    data = os.urandom(BIG)  # three reads in the stream, the 2nd shortened
    samba.put_file("backup", f"{remote_dir}/src", data)
    with WireProxy(samba.port) as proxy, connect3(endpoint_for(samba, port=proxy.port)) as s:
        for size, nth in ((100, 1), (len(data), 2)):  # compounded, then in the stream
            proxy.short_read(cut=7, nth=nth)
            with pytest.raises(RemoteFileError):
                s.get_file(f"{remote_dir}/src", io.BytesIO(), 0, None, end=size)
            proxy.clear()
        for size, nth in ((1000, 1), (3 * smb3.MAX_WRITE, 3)):  # compounded, then streamed
            proxy.short_write(cut=4096 if size > 1000 else 10, nth=nth)
            with pytest.raises(RemoteFileError, match="fewer bytes"):
                s.put_file(Put(f"{remote_dir}/.t", 0, size, 1e9, f"{remote_dir}/dst"),
                           io.BytesIO(data[:size]))  # fmt: skip
            proxy.clear()
            assert not (folder / "dst").exists()
        assert len(proxy.tampered) == 4 and not proxy.errors
        assert not s.closed


class _Tamperer(WireProxy):
    """Flips the first data byte of successful READ replies once armed; with `strip` it also
    removes the signature (flag cleared, bytes zeroed), as a forger without the key must."""

    def __init__(self, port: int, strip: bool) -> None:
        super().__init__(port)
        self.strip = strip
        self.armed = False
        self.changed = 0

    def _apply(self, conn, message, direction, command, status, flags, mid, compounded):  # type: ignore[no-untyped-def]
        if not self.armed or direction != "s2c" or command != CMD_READ or status != 0:
            return None
        new = bytearray(message)
        new[new[HEADER + 2]] ^= 0xFF  # DataOffset counts from the header's start
        if self.strip:
            struct.pack_into("<I", new, 16, flags & ~FLAG_SIGNED)
            new[48:64] = bytes(16)
        self.changed += 1
        return new


@pytest.mark.parametrize("strip", [False, True], ids=["bad-signature", "signature-removed"])
def test_a_reply_tampered_with_on_a_signed_session_is_refused(
    samba: SambaServer, remote_dir: str, strip: bool
) -> None:
    data = os.urandom(BIG)
    samba.put_file("backup", f"{remote_dir}/f", data)
    with _Tamperer(samba.port, strip) as proxy:
        endpoint = endpoint_for(samba, port=proxy.port)
        with connect3(endpoint, require_signing=True) as s:
            assert s.signed
            proxy.armed = True
            out = io.BytesIO()
            with pytest.raises(ConnectError) as caught:
                s.get_file(f"{remote_dir}/f", out, 0, len(data))
            assert proxy.changed >= 1 and s.closed
            assert data.startswith(out.getvalue())  # not one altered byte was written
            assert "\n" not in str(caught.value)


def _clear_error_reply(command: int, mid: int, status: int) -> bytearray:
    """A reply in clear ([MS-SMB2] 2.2.1.2 header, 2.2.2 error body) failing with `status`."""
    header = struct.pack("<4sHHIHHIIQIIQ16s", b"\xfeSMB", 64, 0, status, command, 1, 1, 0,
                         mid, 0, 0, 0, bytes(16))  # fmt: skip
    return bytearray(header + struct.pack("<HBBI", 9, 0, 0, 0) + b"\0")


class _Forger(WireProxy):
    """Replaces the next encrypted reply by replies in clear, one per (command, status),
    for message ids from `forge` on: what someone on the path without the key can send."""

    forge: int | None = None
    replies: tuple[tuple[int, int], ...] = ()

    def _frame(self, frame, direction, conn):  # type: ignore[no-untyped-def]
        if direction == "s2c" and self.forge is not None and frame[4:8] == b"\xfdSMB":
            mid, self.forge = self.forge, None
            forged = [_clear_error_reply(command, mid + i, status)
                      for i, (command, status) in enumerate(self.replies)]  # fmt: skip
            payload = join_messages(forged)
            return struct.pack(">I", len(payload)) + payload
        return super()._frame(frame, direction, conn)


NOT_FOUND, BAD_NETWORK_NAME = 0xC0000034, 0xC00000CC
CREATE, CLOSE, TREE_CONNECT = 5, 6, 3


@pytest.mark.parametrize("first", [True, False], ids=["first-reply-after-logon", "later"])
def test_a_reply_in_clear_on_an_encrypted_session_is_refused(
    samba: SambaServer, remote_dir: str, first: bool
) -> None:
    # Believed, the first would say "no such share" and the later one "no such file".
    samba.put_file("backup", f"{remote_dir}/here", b"here")
    with _Forger(samba.port) as proxy, connect3(endpoint_for(samba, port=proxy.port),
                                                encrypt=True) as s:  # fmt: skip
        assert s.encrypted
        if first:  # the share is opened by the first operation: its reply is forged
            proxy.replies = ((TREE_CONNECT, BAD_NETWORK_NAME),)
        else:
            assert s.stat(f"{remote_dir}/here") is not None
            proxy.replies = ((CREATE, NOT_FOUND), (CLOSE, NOT_FOUND))
        with s.link.conn.sequence_lock:
            proxy.forge = s.link.conn.sequence_window["low"]  # the next message id
        with pytest.raises(ConnectError, match="unencrypted"):
            s.stat(f"{remote_dir}/here")
        assert proxy.forge is None and s.closed
