"""The SMB2 wire (backdown/smb/wire.py) and the session's transfers against real Samba
servers configured the way difficult offices have them: few credits, small reads and
writes, a full share, a silent network. Each test compares bytes, not just exit codes."""

from __future__ import annotations

import io
import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from helpers import SlowRelay
from samba import SambaServer
from wire_proxy import CMD_READ, HEADER, WireProxy

from backdown.errors import Cancelled, ConnectError, NoAnswer
from backdown.smb import Endpoint, Put, RemoteFileError, SmbSession, connect
from backdown.smb.session import PIPELINE_DEPTH

MiB = 1 << 20
_folders = itertools.count(1)


def _session(server: SambaServer, port: int | None = None, **kw: object) -> SmbSession:
    endpoint = Endpoint(
        "127.0.0.1", port or server.port, "backup", server.user, password=server.password,
        **kw,  # type: ignore[arg-type]
    )  # fmt: skip
    return connect(endpoint)


def _folder(session: SmbSession) -> str:
    name = f"wire_{os.getpid()}_{next(_folders)}"
    session.makedirs(name)
    return name


def _put(session: SmbSession, path: str, data: bytes) -> int:
    return session.put_file(Put(path, 0, len(data), None, None), io.BytesIO(data))


def _get(session: SmbSession, path: str, size: int) -> bytes:
    out = io.BytesIO()
    session.get_file(path, out, 0, size)
    return out.getvalue()


def test_credits_from_interim_replies_are_counted(samba_with) -> None:
    """Samba answers a slow write with STATUS_PENDING first, and that interim reply carries
    the request's credits. Counted exactly, the balance is back at the server's window once
    nothing is in flight; dropping them (as pysmb does) leaves it short for good."""
    window = 128
    # A write that syncs takes the server long enough to answer "pending" first, even on a
    # loaded machine (without it, interim replies come and go with the load).
    server = samba_with(
        extra_global={"smb2 max credits": str(window)},
        extra_share={"strict sync": "yes", "sync always": "yes"},
    )
    data = os.urandom(16 * MiB)
    with _session(server) as s:
        folder = _folder(s)
        for _ in range(4):  # interim replies come with load: retry until some came
            _put(s, f"{folder}/big.bin", data)
            if s.wire.stats.interim:
                break
        stats = s.wire.stats
        assert stats.interim > 0, f"no interim reply in 4 uploads: {stats}"
        assert s.wire.in_flight == 0
        assert s.wire.credits == window, stats
        assert _get(s, f"{folder}/big.bin", len(data)) == data
    assert (server.share_path("backup") / folder / "big.bin").read_bytes() == data


@pytest.mark.parametrize("window", [2, 8])
def test_every_operation_completes_in_a_small_credit_window(samba_with, window: int) -> None:
    server = samba_with(extra_global={"smb2 max credits": str(window)})
    big = os.urandom(3 * MiB + 17)
    small = {f"f{i:04d}.txt": os.urandom(i * 7) for i in range(300)}
    with _session(server) as s:
        folder = _folder(s)
        for name, data in small.items():
            s.put_file(
                Put(f"{folder}/.tmp-{name}", 0, len(data), 1_600_000_000.0, f"{folder}/{name}"),
                io.BytesIO(data),
            )
        _put(s, f"{folder}/big.bin", big)
        entries = {e.name: e for e in s.listdir(folder)}  # 301 names: more than one page
        assert set(entries) == {*small, "big.bin"}
        assert all(entries[n].size == len(d) for n, d in small.items())
        assert all(entries[n].mtime == 1_600_000_000.0 for n in small)
        assert _get(s, f"{folder}/big.bin", len(big)) == big
        s.rename(f"{folder}/big.bin", f"{folder}/moved.bin")
        s.set_mtime(f"{folder}/moved.bin", 1_500_000_000.0)
        entry = s.stat(f"{folder}/moved.bin")
        assert entry is not None and entry.mtime == 1_500_000_000.0
        s.remove(f"{folder}/moved.bin")
        assert s.stat(f"{folder}/moved.bin") is None
        stats = s.wire.stats
        assert s.wire.credits == window, stats  # counted exactly: the whole window is back
        if window < 4:
            assert stats.one_by_one > 0, "a 4-request listing fits no window of 2"
    disk = server.share_path("backup") / folder
    assert {p.name: p.read_bytes() for p in disk.iterdir()} == small


def test_read_and_write_sizes_follow_what_the_server_negotiated(samba_with) -> None:
    server = samba_with(extra_global={"smb2 max read": "32768", "smb2 max write": "32768"})
    files = {"big.bin": os.urandom(MiB + 5), "mid.bin": os.urandom(40_000), "tiny": b"t"}
    with _session(server) as s:
        folder = _folder(s)
        for name, data in files.items():
            _put(s, f"{folder}/{name}", data)
        for name, data in files.items():
            assert _get(s, f"{folder}/{name}", len(data)) == data
    disk = server.share_path("backup") / folder
    assert {p.name: p.read_bytes() for p in disk.iterdir()} == files


def test_a_write_to_a_full_share_closes_its_handle_and_keeps_only_good_bytes(
    samba_with,
) -> None:
    server = samba_with(tmpfs_size="512k")
    data = os.urandom(2 * MiB)
    with _session(server) as s:
        folder = _folder(s)
        with pytest.raises(RemoteFileError, match="full"):
            s.put_file(
                Put(f"{folder}/t.part", 0, len(data), 1.0e9, f"{folder}/real.bin"), io.BytesIO(data)
            )
        assert s.stat(f"{folder}/real.bin") is None  # never renamed into place
        assert server.open_files() == [], "the failed write left a handle open"
        kept = (server.share_path("backup") / folder / "t.part").read_bytes()
        assert kept == data[: len(kept)], "the temporary holds bytes that were not acked"
        s.remove(f"{folder}/t.part")
        _put(s, f"{folder}/after.txt", b"the session still works")  # still in step
        assert _get(s, f"{folder}/after.txt", 23) == b"the session still works"
        s.remove(f"{folder}/after.txt")


def test_large_transfers_keep_many_requests_in_flight(samba: SambaServer) -> None:
    data = os.urandom(4 * MiB)
    with _session(samba) as s:
        folder = _folder(s)
        _put(s, f"{folder}/big.bin", data)
        assert s.wire.stats.peak_in_flight >= PIPELINE_DEPTH // 2
        assert _get(s, f"{folder}/big.bin", len(data)) == data
        assert s.wire.credits == 8192, s.wire.stats  # Samba's default window, all of it back


def test_the_server_is_asked_for_enough_credits(samba: SambaServer) -> None:
    """Each request asks for 256 credits; Samba's default window is 8192."""
    with _session(samba) as s:
        s.listdir("")
        assert s.wire.credits >= 200, s.wire.stats


class _FreezableRelay(SlowRelay):
    """A relay that stops passing bytes (both ways) while `frozen` is set: a dead link."""

    def __init__(self, target_port: int) -> None:
        self.frozen = threading.Event()
        super().__init__(target_port, rate=1 << 40)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                while self.frozen.is_set():
                    time.sleep(0.02)
                data = src.recv(1 << 16)
                if not data:
                    break
                while self.frozen.is_set():  # swallow nothing: hold it until thawed
                    time.sleep(0.02)
                dst.sendall(data)
        except OSError:
            pass


@pytest.fixture
def frozen_link(samba: SambaServer) -> Iterator[_FreezableRelay]:
    with _FreezableRelay(samba.port) as relay:
        yield relay


def test_a_silent_server_is_declared_dead_within_the_timeout(
    samba: SambaServer, frozen_link: _FreezableRelay
) -> None:
    with _session(samba, frozen_link.port, timeout=2.0) as s:
        s.listdir("")
        frozen_link.frozen.set()
        started = time.monotonic()
        with pytest.raises(NoAnswer, match="no answer in 2 s"):
            s.stat("anything")
        took = time.monotonic() - started
        assert 1.9 <= took < 3.5, took
        assert s.closed
        with pytest.raises(ConnectError):  # and it stays dead: no reply can be mismatched
            s.stat("anything")


def test_cancel_ends_a_wait_at_once(samba: SambaServer, frozen_link: _FreezableRelay) -> None:
    cancel = threading.Event()
    endpoint = Endpoint("127.0.0.1", frozen_link.port, "backup", samba.user,
                        password=samba.password, timeout=60.0)  # fmt: skip
    with connect(endpoint, cancel) as s:
        s.listdir("")
        frozen_link.frozen.set()
        threading.Timer(0.3, cancel.set).start()
        started = time.monotonic()
        with pytest.raises(Cancelled):
            s.stat("anything")
        assert time.monotonic() - started < 1.5


class _BitFlipper(WireProxy):
    """Flips one bit of the data in the first READ reply it sees, signed or not: what a
    faulty NIC, middlebox or attacker would do, and what a real server cannot be made to do
    on demand (a fake on purpose)."""

    flipped = 0

    def _apply(self, conn, message, direction, command, status, flags, mid, compounded):  # type: ignore[no-untyped-def,override]
        if direction != "s2c" or command != CMD_READ or status != 0 or self.flipped:
            return None
        if len(message) <= HEADER + 16 + 100:
            return None
        self.flipped += 1
        changed = bytearray(message)
        changed[HEADER + 16 + 100] ^= 0x01
        return changed


def test_a_reply_altered_on_the_way_is_refused_when_the_session_signs(
    samba_signing: SambaServer,
) -> None:
    data = os.urandom(300_000)
    with _session(samba_signing) as s:
        assert s.wire.signing
        folder = _folder(s)
        _put(s, f"{folder}/f.bin", data)
    with _BitFlipper(samba_signing.port) as relay, _session(samba_signing, relay.port) as s:
        with pytest.raises(ConnectError, match="signature"):
            _get(s, f"{folder}/f.bin", len(data))
        assert relay.flipped == 1
    with _session(samba_signing) as s:  # and the file itself is fine
        assert _get(s, f"{folder}/f.bin", len(data)) == data
