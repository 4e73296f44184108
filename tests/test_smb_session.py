"""The SMB session (backdown.smb) against the real Samba server: compounded listings,
pipelined transfers and the errors they map to. Checked against the share's disk and
against pysmb's own calls, which BackDown's requests must agree with."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from samba import SambaServer

from backdown.errors import ShareError
from backdown.smb import (
    Endpoint,
    LocalFileError,
    Put,
    PutJob,
    RemoteExists,
    RemoteFileError,
    RemoteNotFound,
    SmbSession,
    connect,
)


@pytest.fixture
def session(samba: SambaServer) -> Iterator[SmbSession]:
    endpoint = Endpoint("127.0.0.1", samba.port, "backup", samba.user, password=samba.password)
    with connect(endpoint) as s:
        yield s


def _names(entries: list) -> set[str]:
    return {e.name for e in entries}


def test_listing_agrees_with_the_disk_and_with_pysmb(
    samba: SambaServer, session: SmbSession, remote_dir: str
) -> None:
    folder = samba.share_path("backup") / remote_dir
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
    reference = samba.connection()  # pysmb's own listing, the reference implementation
    assert reference.connect(samba.host, samba.port)
    try:
        pysmb = reference.listPath("backup", remote_dir)
    finally:
        reference.close()
    assert {e.filename for e in pysmb} - {".", ".."} == _names(entries)
    assert sorted(os.listdir(folder)) == sorted(_names(entries))


def test_a_folder_larger_than_one_round_trip_lists_completely(
    samba: SambaServer, session: SmbSession, remote_dir: str
) -> None:
    folder = samba.share_path("backup") / remote_dir
    for i in range(1500):  # far more than two 32 KiB directory reads hold
        (folder / f"file-with-a-longish-name-{i:05d}.bin").write_bytes(b"")
    samba.chown(folder)
    entries = session.listdir(remote_dir)
    assert len(entries) == 1500
    assert _names(entries) == set(os.listdir(folder))


def test_listing_errors(samba: SambaServer, session: SmbSession, remote_dir: str) -> None:
    with pytest.raises(RemoteNotFound):
        session.listdir(f"{remote_dir}/missing")
    samba.put_file("backup", f"{remote_dir}/file.txt", b"f")
    with pytest.raises(RemoteFileError):
        session.listdir(f"{remote_dir}/file.txt")
    assert session.listdir(remote_dir)  # the connection is still usable


def test_missing_share_is_a_share_error(samba: SambaServer) -> None:
    endpoint = Endpoint("127.0.0.1", samba.port, "nosuch", samba.user, password=samba.password)
    with connect(endpoint) as s, pytest.raises(ShareError):
        s.stat("anything")


@pytest.mark.parametrize("size", [0, 1, 65536, 65537, 3 * 65536 + 5])
def test_put_and_get_round_trip_around_the_block_size(
    samba: SambaServer, session: SmbSession, remote_dir: str, size: int
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


def test_resume_writes_and_reads_from_an_offset(
    samba: SambaServer, session: SmbSession, remote_dir: str
) -> None:
    data = os.urandom(300_000)
    session.put_file(Put(f"{remote_dir}/part", 0, None, None, None), io.BytesIO(data[:100_000]))
    rest = io.BytesIO(data[100_000:])
    session.put_file(Put(f"{remote_dir}/part", 100_000, len(data), None, None), rest)
    assert (samba.share_path("backup") / remote_dir / "part").read_bytes() == data
    out = io.BytesIO()
    assert session.get_file(f"{remote_dir}/part", out, 250_000, len(data)) == 50_000
    assert out.getvalue() == data[250_000:]


def test_rename_never_replaces_and_keeps_the_complete_file(
    samba: SambaServer, session: SmbSession, remote_dir: str
) -> None:
    folder = samba.share_path("backup") / remote_dir
    samba.put_file("backup", f"{remote_dir}/target", b"old")
    with pytest.raises(RemoteExists):
        session.put_file(
            Put(f"{remote_dir}/.tmp", 0, 3, 1e9, f"{remote_dir}/target"), io.BytesIO(b"new")
        )
    assert (folder / "target").read_bytes() == b"old"
    assert (folder / ".tmp").read_bytes() == b"new"  # complete, ready for the next step
    session.rename(f"{remote_dir}/target", f"{remote_dir}/old")
    session.rename(f"{remote_dir}/.tmp", f"{remote_dir}/target")
    assert (folder / "target").read_bytes() == b"new" and (folder / "old").read_bytes() == b"old"


def test_a_source_that_changes_is_not_put_in_place(
    samba: SambaServer, session: SmbSession, remote_dir: str
) -> None:
    def changed() -> None:
        raise LocalFileError("changed while it was being copied")

    for size in (10, 200_000):
        with pytest.raises(LocalFileError):
            session.put_file(
                Put(f"{remote_dir}/.tmp{size}", 0, size, 1e9, f"{remote_dir}/real{size}"),
                io.BytesIO(b"z" * size),
                before_finish=changed,
            )
        assert not (samba.share_path("backup") / remote_dir / f"real{size}").exists()
    # A short source (fewer bytes than promised) is refused the same way.
    with pytest.raises(LocalFileError):
        session.put_file(
            Put(f"{remote_dir}/.tmp", 0, 10, 1e9, f"{remote_dir}/r"), io.BytesIO(b"abc")
        )
    assert not (samba.share_path("backup") / remote_dir / "r").exists()


def test_a_file_that_changed_on_the_server_is_refused_on_read(
    samba: SambaServer, session: SmbSession, remote_dir: str
) -> None:
    samba.put_file("backup", f"{remote_dir}/f", b"12345")
    with pytest.raises(RemoteFileError, match="changed on the server"):
        session.get_file(f"{remote_dir}/f", io.BytesIO(), 0, 4)
    with pytest.raises(RemoteFileError, match="changed on the server"):
        session.get_file(f"{remote_dir}/f", io.BytesIO(), 0, 100_000)


def test_signing_mandatory_server_takes_compounded_requests(
    samba_signing: SambaServer, tmp_path: Path
) -> None:
    endpoint = Endpoint(
        "127.0.0.1", samba_signing.port, "backup", samba_signing.user,
        password=samba_signing.password,
    )  # fmt: skip
    data = os.urandom(150_000)
    with connect(endpoint) as s:
        s.makedirs("signed/deep")
        s.put_file(Put("signed/.t", 0, 10, 1e9, "signed/small"), io.BytesIO(data[:10]))
        s.put_file(Put("signed/.u", 0, len(data), 1e9, "signed/deep/big"), io.BytesIO(data))
        assert _names(s.listdir("signed")) == {"small", "deep"}
        out = io.BytesIO()
        s.get_file("signed/deep/big", out, 0, len(data))
        assert out.getvalue() == data
        s.remove("signed/small")
        assert _names(s.listdir("signed")) == {"deep"}


class _FailingReader:
    """A local file whose disk fails after a few blocks (a real disk cannot be made to
    fail on demand, so this stand-in raises the error the real reader raises)."""

    def __init__(self, good_blocks: int) -> None:
        self.left = good_blocks

    def read(self, n: int = -1) -> bytes:
        if self.left == 0:
            raise LocalFileError("cannot read local file: Input/output error")
        self.left -= 1
        return b"b" * n


def test_a_local_read_error_mid_file_leaves_the_session_usable(
    samba: SambaServer, session: SmbSession, remote_dir: str
) -> None:
    with pytest.raises(LocalFileError):
        session.put_file(
            Put(f"{remote_dir}/.tmp", 0, 100 * 65536, 1e9, f"{remote_dir}/big"), _FailingReader(40)
        )
    assert not session.closed
    assert not (samba.share_path("backup") / remote_dir / "big").exists()
    session.put_file(Put(f"{remote_dir}/.t2", 0, 2, 1e9, f"{remote_dir}/ok"), io.BytesIO(b"ok"))
    assert _names(session.listdir(remote_dir)) >= {"ok", ".tmp"}


def test_the_share_root_can_be_probed_without_a_listing(session: SmbSession) -> None:
    root = session.stat("")
    assert root is not None and root.is_dir


def test_a_file_in_the_way_of_a_folder_is_named_as_such(
    samba: SambaServer, session: SmbSession, remote_dir: str
) -> None:
    samba.put_file("backup", f"{remote_dir}/x", b"a file")
    with pytest.raises(RemoteExists, match="a file of that name is in the way"):
        session.makedirs(f"{remote_dir}/x/y")
    session.makedirs(f"{remote_dir}/z/y")  # and existing folders on the way are fine
    session.makedirs(f"{remote_dir}/z/y")


class _FailingWriter:
    """A local disk that fills up after `room` bytes."""

    def __init__(self, room: int) -> None:
        self.room = room

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            raise LocalFileError("cannot write local file: No space left on device")
        self.room -= len(data)
        return len(data)


def test_a_local_write_error_mid_download_leaves_the_session_in_step(
    samba: SambaServer, session: SmbSession, remote_dir: str
) -> None:
    data = os.urandom(4 << 20)
    samba.put_file("backup", f"{remote_dir}/big", data)
    with pytest.raises(LocalFileError):
        session.get_file(f"{remote_dir}/big", _FailingWriter(300_000), 0, len(data))
    assert not session.closed and session.wire.in_flight == 0
    out = io.BytesIO()
    session.get_file(f"{remote_dir}/big", out, 0, len(data))  # the next request still works
    assert out.getvalue() == data


def test_listdirs_keeps_listings_in_flight_and_each_outcome_apart(
    samba: SambaServer, session: SmbSession, remote_dir: str
) -> None:
    """Several folders listed together: a plain one, one of 1,500 entries (paged), a missing
    one, an empty one; each as listdir gives it, the missing one's error in its place, all
    in one go (the wire counts the requests in flight)."""
    for i in range(3):
        samba.put_file("backup", f"{remote_dir}/plain/f{i}.txt", b"x" * i)
    for i in range(1500):
        samba.put_file("backup", f"{remote_dir}/many/entry with a longish name {i:04}.txt", b"")
    (samba.share_path("backup") / remote_dir / "empty").mkdir()
    samba.chown(samba.share_path("backup") / remote_dir)
    paths = [f"{remote_dir}/{name}" for name in ("plain", "many", "missing", "empty")]
    outcomes = session.listdirs(paths)
    assert session.wire.stats.peak_in_flight >= 4 * len(paths)
    for path, outcome in zip(paths, outcomes, strict=True):
        if path.endswith("missing"):
            assert isinstance(outcome, RemoteNotFound)
            continue
        assert not isinstance(outcome, RemoteFileError)
        assert sorted(outcome) == sorted(session.listdir(path)), path
    assert len(outcomes[1]) == 1500 and outcomes[3] == []


def test_put_files_keeps_small_files_in_flight_and_each_outcome_apart(
    samba: SambaServer, session: SmbSession, remote_dir: str
) -> None:
    """Files put together: small ones of 0, 1 and 65,536 bytes, one whose name is taken on
    the share, one whose source changed, one shorter than promised, one too big for one
    write, one with no rename. Each is told once with its own outcome; only the good ones
    are in place, with their times; the small ones' requests were in flight together."""
    folder = samba.share_path("backup") / remote_dir
    samba.put_file("backup", f"{remote_dir}/taken", b"old")

    def changed() -> None:
        raise LocalFileError("changed while it was being copied")

    cases = {  # name: (bytes, size promised, before_finish)
        "empty": (b"", 0, None),
        "one": (b"1", 1, None),
        "block": (os.urandom(65536), 65536, None),
        "taken": (b"new", 3, None),
        "moved": (b"zz", 2, changed),
        "short": (b"abc", 10, None),
        "big": (os.urandom(65537), 65537, None),
    }
    jobs = [
        PutJob(
            Put(f"{remote_dir}/.tmp-{name}", 0, size, 1e9 + n, f"{remote_dir}/{name}"),
            io.BytesIO(data),
            check,
        )
        for n, (name, (data, size, check)) in enumerate(cases.items())
    ]
    jobs.append(PutJob(Put(f"{remote_dir}/kept", 0, 4, 1e9 + 99), io.BytesIO(b"kept")))
    told: list[tuple[int, object]] = []
    sent: list[int] = []
    session.put_files(jobs, lambda k, error: told.append((k, error)), sent.append)

    assert sorted(k for k, _ in told) == list(range(len(jobs)))  # each once
    outcome = dict(told)
    names = [*cases, "kept"]
    for k, name in enumerate(names):
        error = outcome[k]
        if name == "taken":
            assert isinstance(error, RemoteExists), error
        elif name in ("moved", "short"):
            assert isinstance(error, LocalFileError), (name, error)
        else:
            assert error is None, (name, error)
    for n, name in enumerate(names):
        if name in ("moved", "short"):
            assert not (folder / name).exists(), name
            continue
        data = b"kept" if name == "kept" else cases[name][0]
        placed = folder / (".tmp-taken" if name == "taken" else name)
        assert placed.read_bytes() == data, name
        assert placed.stat().st_mtime == (1e9 + 99 if name == "kept" else 1e9 + n), name
    assert (folder / "taken").read_bytes() == b"old"
    assert sum(sent) == sum(len(cases[n][0]) for n in ("one", "block", "taken", "big")) + 4
    # open, write and time for each of the five good small files and two refused: in flight
    # together before the first rename
    assert session.wire.stats.peak_in_flight >= 15
    assert session.stat(remote_dir) is not None  # and the connection is still in step
