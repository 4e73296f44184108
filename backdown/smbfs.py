"""The SMB session: the only module that imports pysmb.

It turns pysmb's exceptions (and its habit of returning False on a wrong password) into
BackDown's errors, so the rest of the program sees one vocabulary:
ConnectError (retry after reconnecting), AuthError, ShareError, RemoteFileError (this file only).
"""

from __future__ import annotations

import hmac
import socket
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from hashlib import sha256
from typing import Any, Protocol

from smb.base import NotConnectedError, NotReadyError, SMBTimeout, _PendingRequest
from smb.smb2_constants import (
    SMB2_FLAGS_RELATED_OPERATIONS,
    SMB2_FLAGS_SIGNED,
    SMB2_INFO_FILE,
)
from smb.smb2_structs import (
    SMB2CloseRequest,
    SMB2CreateRequest,
    SMB2EchoRequest,
    SMB2Message,
    SMB2QueryDirectoryRequest,
    SMB2ReadRequest,
    SMB2SetInfoRequest,
    SMB2TreeConnectRequest,
    SMB2WriteRequest,
)
from smb.smb_constants import (
    DELETE,
    FILE_CREATE,
    FILE_DELETE_ON_CLOSE,
    FILE_DIRECTORY_FILE,
    FILE_NON_DIRECTORY_FILE,
    FILE_OPEN,
    FILE_OPEN_IF,
    FILE_OVERWRITE_IF,
    FILE_READ_ATTRIBUTES,
    FILE_READ_DATA,
    FILE_SHARE_DELETE,
    FILE_SHARE_READ,
    FILE_SHARE_WRITE,
    FILE_WRITE_ATTRIBUTES,
    FILE_WRITE_DATA,
    SYNCHRONIZE,
)
from smb.smb_structs import OperationFailure
from smb.SMBConnection import SMBConnection

from backdown.errors import AuthError, BackdownError, ConnectError, RemoteFileError, ShareError

CONNECT_TIMEOUT = 10.0
OPERATION_TIMEOUT = 60.0

# NTSTATUS codes we tell apart ([MS-ERREF] 2.3.1).
STATUS_ACCESS_DENIED = 0xC0000022
STATUS_OBJECT_NAME_INVALID = 0xC0000033
STATUS_OBJECT_NAME_NOT_FOUND = 0xC0000034
STATUS_OBJECT_NAME_COLLISION = 0xC0000035
STATUS_OBJECT_PATH_NOT_FOUND = 0xC000003A
STATUS_SHARING_VIOLATION = 0xC0000043
STATUS_DISK_FULL = 0xC000007F
STATUS_FILE_IS_A_DIRECTORY = 0xC00000BA
STATUS_BAD_NETWORK_NAME = 0xC00000CC
STATUS_NETWORK_NAME_DELETED = 0xC00000C9
STATUS_DIRECTORY_NOT_EMPTY = 0xC0000101
STATUS_NOT_A_DIRECTORY = 0xC0000103
STATUS_USER_SESSION_DELETED = 0xC0000203
STATUS_QUOTA_EXCEEDED = 0xC0000044
STATUS_CANNOT_DELETE = 0xC0000121

_STATUS_TEXT = {
    STATUS_ACCESS_DENIED: "access denied",
    STATUS_OBJECT_NAME_INVALID: "name not allowed by the server",
    STATUS_OBJECT_NAME_NOT_FOUND: "not found",
    STATUS_OBJECT_NAME_COLLISION: "already exists",
    STATUS_OBJECT_PATH_NOT_FOUND: "folder not found",
    STATUS_SHARING_VIOLATION: "in use by another program",
    STATUS_DISK_FULL: "the share is full",
    STATUS_QUOTA_EXCEEDED: "quota exceeded on the share",
    STATUS_FILE_IS_A_DIRECTORY: "is a folder",
    STATUS_DIRECTORY_NOT_EMPTY: "folder not empty",
    STATUS_NOT_A_DIRECTORY: "not a folder",
    STATUS_CANNOT_DELETE: "cannot be deleted",
}
# The session or tree went away under us: reconnecting may help.
_SESSION_GONE = {STATUS_NETWORK_NAME_DELETED, STATUS_USER_SESSION_DELETED}


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...


class RemoteNotFound(RemoteFileError):
    """The file or folder does not exist on the share."""


class RemoteExists(RemoteFileError):
    """The target name is already taken on the share."""


class RemoteAccessDenied(RemoteFileError):
    """The server refused access to this file or folder."""


class LocalFileError(BackdownError):
    """A local file could not be read or written (raised from inside a transfer)."""

    exit_status = RemoteFileError.exit_status


@dataclass(frozen=True)
class RemoteEntry:
    """One entry of a remote folder listing."""

    name: str
    is_dir: bool
    size: int
    mtime: float


@dataclass(frozen=True)
class Endpoint:
    """Everything needed to open a session; the password is kept out of repr()."""

    server: str
    port: int
    share: str
    user: str = ""
    domain: str = ""
    client_name: str = "BACKDOWN"
    password: str = field(default="", repr=False)
    connect_timeout: float = CONNECT_TIMEOUT
    timeout: float = OPERATION_TIMEOUT

    @property
    def where(self) -> str:
        host = f"[{self.server}]" if ":" in self.server else self.server
        return f"{host}:{self.port}"


def _status(exc: OperationFailure) -> int | None:
    for message in reversed(getattr(exc, "smb_messages", []) or []):
        status = getattr(message, "status", 0)
        if status:
            return int(status)
    return None


def _remote_error(exc: OperationFailure, what: str, endpoint: Endpoint) -> BackdownError:
    """Classify one pysmb OperationFailure."""
    text = str(getattr(exc, "message", ""))
    if "Unable to connect to shared device" in text:
        return _status_error(STATUS_BAD_NETWORK_NAME, what, endpoint)
    return _status_error(_status(exc), what, endpoint)


def _status_error(status: int | None, what: str, endpoint: Endpoint) -> BackdownError:
    """Our error for an NTSTATUS a request failed with."""
    if status == STATUS_BAD_NETWORK_NAME:
        return ShareError(
            f"share '{endpoint.share}' not found on {endpoint.server} (or not allowed for "
            f"this user); check the share name with: smbclient -L {endpoint.server}"
        )
    if status in _SESSION_GONE:
        return ConnectError(f"the server closed the session during {what}")
    fallback = f"failed (status 0x{status:08X})" if status else "failed"
    reason = _STATUS_TEXT.get(status or 0, fallback)
    message = f"{what}: {reason}"
    if status == STATUS_ACCESS_DENIED:
        return RemoteAccessDenied(message)
    if status in (STATUS_OBJECT_NAME_NOT_FOUND, STATUS_OBJECT_PATH_NOT_FOUND):
        return RemoteNotFound(message)
    if status == STATUS_OBJECT_NAME_COLLISION:
        return RemoteExists(message)
    return RemoteFileError(message)


# -- SMB2 requests sent by BackDown itself ----------------------------------------------
# pysmb sends one request and waits for its answer; it never asks the server for more than
# one credit, so it cannot have two requests in flight. _Wire builds the same pysmb request
# structures but (1) asks for credits, (2) compounds related requests (open, write, set the
# time, rename, close) into one round trip, and (3) keeps several reads or writes of a large
# file in flight. That is what makes many small files and a high-latency link fast.

_ATTR_DIRECTORY = 0x10
_FILE_BASIC_INFORMATION = 0x04
_FILE_RENAME_INFORMATION = 0x0A
_RELATED_FID = b"\xff" * 16
_CREDITS_WANTED = 256
_PIPELINE_DEPTH = 16  # reads or writes of one file in flight
_CHUNK = 65536  # SMB 2.0.2 allows at most 64 KiB per read or write
STATUS_END_OF_FILE = 0xC0000011
STATUS_NO_SUCH_FILE = 0xC000000F
STATUS_NO_MORE_FILES = 0x80000006
_FILE_ID_BOTH_DIRECTORY_INFORMATION = 0x25
_DIR_ENTRY = struct.Struct("<IIQQQQQQIIIBB24sHQ")
# Two directory reads per listing round trip; 2 x 32 KiB keeps the compound answer under the
# 128 KiB that pysmb's receive loop can frame. A bigger folder falls back to pysmb's listing.
_LIST_BUFFER = 32768
_SEC_IMPERSONATE = 0x02
_SHARE_ALL = FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE


def _filetime(epoch: float) -> int:
    """Seconds since 1970 as a Windows FILETIME (100 ns ticks since 1601)."""
    return int(round(epoch * 10_000_000)) + 116444736000000000


def _create(path: str, access: int, disposition: int, options: int) -> SMB2CreateRequest:
    return SMB2CreateRequest(
        path.replace("/", "\\").strip("\\"),
        file_attributes=0,
        access_mask=access | SYNCHRONIZE,
        share_access=_SHARE_ALL,
        oplock=0,
        impersonation=_SEC_IMPERSONATE,
        create_options=options,
        create_disp=disposition,
    )


def _set_mtime_info(fid: bytes, mtime: float) -> SMB2SetInfoRequest:
    # FILE_BASIC_INFORMATION: creation, access, write, change times, attributes; 0 = unchanged.
    data = struct.pack("<QQQQII", 0, 0, _filetime(mtime), 0, 0, 0)
    return SMB2SetInfoRequest(fid, 0, SMB2_INFO_FILE, _FILE_BASIC_INFORMATION, data)


def _rename_info(fid: bytes, new_path: str) -> SMB2SetInfoRequest:
    # FILE_RENAME_INFORMATION: ReplaceIfExists = 0, so an existing target is never replaced.
    # The length is that of the UTF-16 bytes: pysmb 1.2.15's own rename sends len(str) * 2,
    # which truncates names with characters outside the BMP (emoji).
    name = new_path.replace("/", "\\").strip("\\").encode("utf-16-le")
    data = struct.pack("<B7xQI", 0, 0, len(name)) + name
    return SMB2SetInfoRequest(fid, 0, SMB2_INFO_FILE, _FILE_RENAME_INFORMATION, data)


class _Wire:
    """Sends SMB2 requests on a pysmb connection: compounded, pipelined, with credits."""

    def __init__(self, conn: SMBConnection, endpoint: Endpoint) -> None:
        self.conn = conn
        self.endpoint = endpoint
        self.credits = 1  # what the server has certainly granted and we have not used
        self.replies: dict[int, SMB2Message] = {}

    def _got(self, reply: SMB2Message, **_: Any) -> None:
        self.replies[reply.mid] = reply
        self.credits += int(getattr(reply, "credit_re", 0) or 0)

    def _frame(self, messages: list[SMB2Message], tid: int, related: bool) -> bytearray:
        """Encode (and sign) a chain of requests as one direct-TCP message, ready to send."""
        conn = self.conn
        out = bytearray(4)  # the direct TCP header: the length, filled in at the end
        for i, m in enumerate(messages):
            m.mid = conn._getNextMID_SMB2()
            m.session_id = conn.session_id
            m.tid = tid
            if related and i > 0:
                m.flags |= SMB2_FLAGS_RELATED_OPERATIONS
            if conn.is_signing_active:
                m.flags |= SMB2_FLAGS_SIGNED
            start = len(out)
            out += m.encode()
            # CreditRequest sits at offset 14 of the header; pysmb always sends 0 there.
            struct.pack_into("<H", out, start + 14, _CREDITS_WANTED)
            if i < len(messages) - 1:
                out += b"\0" * ((start - len(out)) % 8)  # the next header is 8-byte aligned
                struct.pack_into("<I", out, start + 20, len(out) - start)  # NextCommand
            if conn.is_signing_active:
                # A compounded request is signed over itself and its padding ([MS-SMB2] 3.1.4.1).
                sig = hmac.new(conn.signing_session_key, out[start:], sha256).digest()[:16]
                out[start + 48 : start + 64] = sig
        struct.pack_into(">I", out, 0, len(out) - 4)
        return out

    def send(self, payloads: list[Any], related: bool = True, tid: int | None = None) -> list[int]:
        """Send requests (compounded if several); returns their message ids."""
        if self.credits < len(payloads):
            self._refill(len(payloads))
        messages = [SMB2Message(p) for p in payloads]
        data = self._frame(messages, self.tree() if tid is None else tid, related)
        expiry = time.time() + self.endpoint.timeout
        for m in messages:
            self.conn.pending_requests[m.mid] = _PendingRequest(m.mid, expiry, self._got, None)
        self.credits -= len(messages)
        self.conn.sock.sendall(data)
        return [m.mid for m in messages]

    def wait(self, mids: list[int]) -> list[SMB2Message]:
        """Block until every one of these requests has its answer."""
        while not all(mid in self.replies for mid in mids):
            self.conn._pollForNetBIOSPacket(self.endpoint.timeout)
        return [self.replies.pop(mid) for mid in mids]

    def wait_any(self, mids: set[int] | dict[int, Any]) -> tuple[int, SMB2Message]:
        """Block until one of these requests has its answer; the lowest id first."""
        while True:
            ready = [mid for mid in mids if mid in self.replies]
            if ready:
                mid = min(ready)
                return mid, self.replies.pop(mid)
            self.conn._pollForNetBIOSPacket(self.endpoint.timeout)

    def call(self, payloads: list[Any], related: bool = True) -> list[SMB2Message]:
        return self.wait(self.send(payloads, related))

    def _refill(self, needed: int) -> None:
        """Ask for credits with an echo until `needed` requests may be in flight."""
        while self.credits < needed:
            self.credits = max(self.credits, 1)
            self.wait(self.send([SMB2EchoRequest()], tid=0))

    def tree(self) -> int:
        """The share's tree id, connecting to the share on first use."""
        share = self.endpoint.share
        tid = self.conn.connected_trees.get(share)
        if tid is None:
            path = f"\\\\{self.conn.remote_name.upper()}\\{share}"
            (reply,) = self.wait(self.send([SMB2TreeConnectRequest(path)], tid=0))
            if reply.status != 0:
                raise _status_error(reply.status, "opening the share", self.endpoint)
            tid = self.conn.connected_trees[share] = reply.tid
        return int(tid)

    def close_quietly(self, fid: bytes) -> None:
        self.call([SMB2CloseRequest(fid)])

    def failed(self, replies: list[SMB2Message], what: str, open_fid: bytes | None) -> None:
        """Raise the first failure of a chain, closing a handle the chain left open."""
        bad = next((r for r in replies if r.status != 0), None)
        if bad is None:
            return
        if open_fid is not None and replies[-1].status != 0:
            self.close_quietly(open_fid)
        raise _status_error(bad.status, what, self.endpoint)


class SmbSession:
    """One authenticated SMB connection to one share. Not thread-safe: one per thread."""

    def __init__(self, conn: SMBConnection, endpoint: Endpoint) -> None:
        self._conn = conn
        self.endpoint = endpoint
        self.closed = False
        self._wire = _Wire(conn, endpoint) if conn.isUsingSMB2 else None

    @contextmanager
    def _op(self, what: str) -> Iterator[None]:
        """Run one request or chain, turning pysmb's and the socket's exceptions into ours."""
        if self.closed:
            raise ConnectError(f"the connection to {self.endpoint.where} is closed")
        try:
            yield
        except OperationFailure as exc:
            error = _remote_error(exc, what, self.endpoint)
            if isinstance(error, ConnectError):
                self.close()
            raise error from None
        except ConnectError:
            self.close()
            raise
        except (RemoteFileError, LocalFileError):
            raise  # every request had its answer: the connection is still in step
        except (NotConnectedError, NotReadyError, SMBTimeout, OSError) as exc:
            self.close()
            raise ConnectError(
                f"lost the connection to {self.endpoint.where} during {what} "
                f"({_describe_network_error(exc)})"
            ) from None
        except BaseException:
            # Cancelled (or a bug): the connection may hold half an exchange, so it
            # cannot be used again.
            self.close()
            raise

    # -- reading -------------------------------------------------------------------------
    def listdir(self, path: str) -> list[RemoteEntry]:
        """The entries of a remote folder, without '.' and '..'.

        One round trip for most folders: open, two directory reads and close, compounded.
        """
        what = f"listing '{path or '/'}'"
        with self._op(what):
            if self._wire is not None:
                entries = self._list_compound(path, what)
                if entries is not None:
                    return entries
            found = self._conn.listPath(self.endpoint.share, path or "/", timeout=self._t)
        return [
            RemoteEntry(e.filename, e.isDirectory, int(e.file_size), float(e.last_write_time))
            for e in found
            if e.filename not in (".", "..")
        ]

    def _list_compound(self, path: str, what: str) -> list[RemoteEntry] | None:
        """A folder's entries in one round trip, or None if it holds more than that brings."""
        assert self._wire is not None
        query = [
            SMB2QueryDirectoryRequest(
                _RELATED_FID, "*", _FILE_ID_BOTH_DIRECTORY_INFORMATION, 0, _LIST_BUFFER
            )
            for _ in range(2)
        ]
        replies = self._wire.call(
            [_create(path, FILE_READ_DATA | FILE_READ_ATTRIBUTES, FILE_OPEN, FILE_DIRECTORY_FILE),
             *query, SMB2CloseRequest(_RELATED_FID)]
        )  # fmt: skip
        opened, first, second, closed = replies
        fid = opened.payload.fid if opened.status == 0 else None
        if fid is not None and closed.status != 0:
            self._wire.close_quietly(fid)
        if opened.status != 0:
            raise _status_error(opened.status, what, self.endpoint)
        done = (STATUS_NO_MORE_FILES, STATUS_NO_SUCH_FILE)
        if first.status in done:
            return []
        if first.status != 0:
            raise _status_error(first.status, what, self.endpoint)
        if second.status == 0:
            return None  # there may be more: let pysmb page through it
        if second.status not in done:
            raise _status_error(second.status, what, self.endpoint)
        return _parse_directory(first.payload.data)

    def stat(self, path: str) -> RemoteEntry | None:
        """An entry's metadata, or None if it does not exist."""
        what = f"reading attributes of '{path}'"
        name = path.rsplit("/", 1)[-1]
        try:
            with self._op(what):
                if self._wire is None:
                    e = self._conn.getAttributes(self.endpoint.share, path, timeout=self._t)
                    return RemoteEntry(
                        name, e.isDirectory, int(e.file_size), float(e.last_write_time)
                    )
                replies = self._wire.call(
                    [_create(path, FILE_READ_ATTRIBUTES, FILE_OPEN, 0),
                     SMB2CloseRequest(_RELATED_FID)]
                )  # fmt: skip
                self._wire.failed(replies, what, None)
        except RemoteNotFound:
            return None
        info = replies[0].payload
        is_dir = bool(info.file_attributes & _ATTR_DIRECTORY)
        return RemoteEntry(name, is_dir, int(info.file_size), float(info.lastwrite_time))

    def read_file(self, path: str, fileobj: Writable, offset: int = 0) -> int:
        """Stream a remote file (from offset) into fileobj; returns the bytes read."""
        return self.get_file(path, fileobj, offset, None)

    def get_file(self, path: str, fileobj: Writable, offset: int, expected_size: int | None) -> int:
        """Stream a remote file from offset into fileobj; returns the bytes read.

        With the size known from a listing, a small file costs one round trip (open, read,
        close compounded); a large one keeps several reads in flight. A file whose size is
        no longer the expected one raises RemoteFileError (it changed on the server).
        """
        what = f"reading '{path}'"
        with self._op(what):
            if self._wire is None:
                _, count = self._conn.retrieveFileFromOffset(
                    self.endpoint.share, path, fileobj, offset, -1, timeout=self._t
                )
                return int(count)
            wire = self._wire
            open_req = _create(path, FILE_READ_DATA | FILE_READ_ATTRIBUTES, FILE_OPEN,
                               FILE_NON_DIRECTORY_FILE)  # fmt: skip
            remaining = None if expected_size is None else expected_size - offset
            if remaining is not None and 0 <= remaining <= _CHUNK:
                chain = [open_req]
                if remaining:
                    chain.append(SMB2ReadRequest(_RELATED_FID, offset, remaining))
                chain.append(SMB2CloseRequest(_RELATED_FID))
                replies = wire.call(chain)
                fid = replies[0].payload.fid if replies[0].status == 0 else None
                wire.failed(replies, what, fid)
                size = int(replies[0].payload.file_size)
                if size != expected_size:
                    raise RemoteFileError(f"{what}: it changed on the server; run again")
                data = replies[1].payload.data if remaining else b""
                if len(data) != remaining:
                    raise RemoteFileError(f"{what}: it changed on the server; run again")
                if data:
                    fileobj.write(data)
                return len(data)
            (reply,) = wire.call([open_req])
            wire.failed([reply], what, None)
            fid = reply.payload.fid
            size = int(reply.payload.file_size)
            if expected_size is not None and size != expected_size:
                wire.close_quietly(fid)
                raise RemoteFileError(f"{what}: it changed on the server; run again")
            try:
                count = self._read_stream(fid, fileobj, offset, size, what)
            finally:
                wire.close_quietly(fid)
            return count

    def _read_stream(self, fid: bytes, fileobj: Writable, offset: int, end: int, what: str) -> int:
        """Read [offset, end) with several reads in flight, writing in order."""
        wire = self._wire
        assert wire is not None
        in_flight: dict[int, tuple[int, int]] = {}
        arrived: dict[int, bytes] = {}
        next_offset = position = offset
        error: int | None = None
        while position < end and error is None or in_flight:
            while error is None and next_offset < end and len(in_flight) < _PIPELINE_DEPTH:
                n = min(_CHUNK, end - next_offset)
                (mid,) = wire.send([SMB2ReadRequest(fid, next_offset, n)])
                in_flight[mid] = (next_offset, n)
                next_offset += n
            if not in_flight:
                break
            mid, reply = wire.wait_any(in_flight)
            at, n = in_flight.pop(mid)
            if reply.status != 0 or len(reply.payload.data) != n:
                error = error or (reply.status or STATUS_END_OF_FILE)
                continue
            arrived[at] = reply.payload.data
            while position in arrived:
                data = arrived.pop(position)
                fileobj.write(data)
                position += len(data)
        if error is not None:
            if error == STATUS_END_OF_FILE:
                raise RemoteFileError(f"{what}: it changed on the server; run again")
            raise _status_error(error, what, self.endpoint)
        return position - offset

    # -- writing -------------------------------------------------------------------------
    def write_file(self, path: str, fileobj: Readable, offset: int = 0) -> int:
        """Stream fileobj into a remote file; offset 0 truncates, else writes from offset."""
        if self._wire is None:
            with self._op(f"writing '{path}'"):
                end = self._conn.storeFileFromOffset(
                    self.endpoint.share, path, fileobj, offset, offset == 0, timeout=self._t
                )
            return int(end)
        return self.put_file(path, fileobj, offset, None, None, None)

    def put_file(
        self,
        path: str,
        fileobj: Readable,
        offset: int,
        size: int | None,
        mtime: float | None,
        rename_to: str | None,
        before_finish: Callable[[], None] | None = None,
        on_sent: Callable[[int], None] | None = None,
    ) -> int:
        """Write fileobj into `path` from offset, set its time, and rename it to `rename_to`.

        Returns the end offset. With `size` given, a file that does not end exactly there is
        neither given its time nor renamed (LocalFileError: it changed while being read). A
        small file costs one round trip: open, write, set time, rename and close compounded.
        If `rename_to` exists, RemoteExists is raised with the file complete under `path`.
        `before_finish` runs once all data is sent and before the time and name are set: it
        may raise to leave the file unfinished (the source changed meanwhile). `on_sent`
        hears of each block of data once the server has acknowledged it.
        """
        check = before_finish or (lambda: None)
        sent = on_sent or (lambda n: None)
        what = f"writing '{path}'"
        with self._op(what):
            if self._wire is None:
                end = self._conn.storeFileFromOffset(
                    self.endpoint.share, path, fileobj, offset, offset == 0, timeout=self._t
                )
                _check_end(end, size)
                sent(int(end) - offset)
                check()
                if mtime is not None:
                    self._conn.setLastWriteTime(self.endpoint.share, path, mtime, self._t)
                if rename_to is not None:
                    self._conn.rename(self.endpoint.share, path, rename_to, timeout=self._t)
                return int(end)
            wire = self._wire
            access = FILE_READ_DATA | FILE_WRITE_DATA | FILE_READ_ATTRIBUTES | FILE_WRITE_ATTRIBUTES
            if rename_to is not None:
                access |= DELETE
            disposition = FILE_OVERWRITE_IF if offset == 0 else FILE_OPEN_IF
            open_req = _create(path, access, disposition, FILE_NON_DIRECTORY_FILE)
            remaining = None if size is None else size - offset
            if remaining is not None and 0 <= remaining <= _CHUNK:
                data = fileobj.read(remaining + 1) if remaining else fileobj.read(1)
                _check_end(offset + len(data), size)
                check()
                chain: list[Any] = [open_req]
                if data:
                    chain.append(SMB2WriteRequest(_RELATED_FID, data, offset))
                chain += self._finish(_RELATED_FID, mtime, rename_to)
                replies = wire.call(chain)
                fid = replies[0].payload.fid if replies[0].status == 0 else None
                if data and replies[1].status == 0:
                    sent(len(data))
                self._finish_failed(replies, what, fid, path, rename_to)
                return offset + len(data)
            (reply,) = wire.call([open_req])
            wire.failed([reply], what, None)
            fid = reply.payload.fid
            try:
                end = self._write_stream(fid, fileobj, offset, what, sent)
                _check_end(end, size)
                check()
            except BaseException:
                if not self.closed:
                    wire.close_quietly(fid)
                raise
            replies = wire.call(self._finish(fid, mtime, rename_to))
            self._finish_failed([reply, *replies], what, fid, path, rename_to)
            return end

    @staticmethod
    def _finish(fid: bytes, mtime: float | None, rename_to: str | None) -> list[Any]:
        chain: list[Any] = []
        if mtime is not None:
            chain.append(_set_mtime_info(fid, mtime))
        if rename_to is not None:
            chain.append(_rename_info(fid, rename_to))
        chain.append(SMB2CloseRequest(fid))
        return chain

    def _finish_failed(
        self,
        replies: list[SMB2Message],
        what: str,
        fid: bytes | None,
        path: str,
        rename_to: str | None,
    ) -> None:
        """Raise the chain's failure; a failed rename is reported as such (RemoteExists)."""
        assert self._wire is not None
        if rename_to is not None and len(replies) >= 2 and replies[-2].status != 0:
            rename_what = f"renaming '{path}' to '{rename_to}'"
            if replies[-1].status != 0 and fid is not None:
                self._wire.close_quietly(fid)
            if all(r.status == 0 for r in replies[:-2]):
                raise _status_error(replies[-2].status, rename_what, self.endpoint)
        self._wire.failed(replies, what, fid)

    def _write_stream(
        self, fid: bytes, fileobj: Readable, offset: int, what: str, sent: Callable[[int], None]
    ) -> int:
        """Write fileobj from offset with several writes in flight; returns the end."""
        wire = self._wire
        assert wire is not None
        in_flight: dict[int, int] = {}
        position = offset
        eof = False
        error: int | None = None
        while not eof or in_flight:
            while error is None and not eof and len(in_flight) < _PIPELINE_DEPTH:
                try:
                    data = fileobj.read(_CHUNK)
                except LocalFileError:
                    wire.wait(list(in_flight))  # stay in step: collect what is in flight
                    raise
                if not data:
                    eof = True
                    break
                (mid,) = wire.send([SMB2WriteRequest(fid, data, position)])
                in_flight[mid] = len(data)
                position += len(data)
            if not in_flight:
                break
            mid, reply = wire.wait_any(in_flight)
            n = in_flight.pop(mid)
            if reply.status != 0 or reply.payload.count != n:
                error = error or reply.status or STATUS_DISK_FULL
                eof = True
            else:
                sent(n)
        if error is not None:
            raise _status_error(error, what, self.endpoint)
        return position

    def set_mtime(self, path: str, mtime: float) -> None:
        what = f"setting the time of '{path}'"
        with self._op(what):
            if self._wire is None:
                self._conn.setLastWriteTime(self.endpoint.share, path, mtime, timeout=self._t)
                return
            replies = self._wire.call(
                [_create(path, FILE_WRITE_ATTRIBUTES | FILE_READ_ATTRIBUTES, FILE_OPEN, 0),
                 _set_mtime_info(_RELATED_FID, mtime), SMB2CloseRequest(_RELATED_FID)]
            )  # fmt: skip
            fid = replies[0].payload.fid if replies[0].status == 0 else None
            self._wire.failed(replies, what, fid)

    def mkdir(self, path: str) -> None:
        what = f"creating folder '{path}'"
        with self._op(what):
            if self._wire is None:
                self._conn.createDirectory(self.endpoint.share, path, timeout=self._t)
                return
            replies = self._wire.call(
                [_create(path, FILE_READ_ATTRIBUTES, FILE_CREATE, FILE_DIRECTORY_FILE),
                 SMB2CloseRequest(_RELATED_FID)]
            )  # fmt: skip
            self._wire.failed(replies, what, None)

    def makedirs(self, path: str) -> None:
        """Create a folder and its missing parents; an existing folder is fine."""
        if not path:
            return
        parts = path.split("/")
        for depth in range(1, len(parts) + 1):
            sub = "/".join(parts[:depth])
            try:
                self.mkdir(sub)
            except RemoteExists:
                continue
            except RemoteFileError:
                entry = self.stat(sub)
                if entry is None or not entry.is_dir:
                    raise

    def rename(self, old: str, new: str) -> None:
        """Rename within the share; never replaces an existing target (SMB semantics)."""
        what = f"renaming '{old}' to '{new}'"
        with self._op(what):
            if self._wire is None:
                self._conn.rename(self.endpoint.share, old, new, timeout=self._t)
                return
            replies = self._wire.call(
                [_create(old, DELETE | FILE_READ_ATTRIBUTES, FILE_OPEN, 0),
                 _rename_info(_RELATED_FID, new), SMB2CloseRequest(_RELATED_FID)]
            )  # fmt: skip
            fid = replies[0].payload.fid if replies[0].status == 0 else None
            self._wire.failed(replies, what, fid)

    def remove(self, path: str) -> None:
        self._delete(path, f"deleting '{path}'", FILE_NON_DIRECTORY_FILE)

    def rmdir(self, path: str) -> None:
        self._delete(path, f"deleting folder '{path}'", FILE_DIRECTORY_FILE)

    def _delete(self, path: str, what: str, kind: int) -> None:
        with self._op(what):
            if self._wire is None:
                if kind == FILE_DIRECTORY_FILE:
                    self._conn.deleteDirectory(self.endpoint.share, path, timeout=self._t)
                else:
                    self._conn.deleteFiles(self.endpoint.share, path, timeout=self._t)
                return
            replies = self._wire.call(
                [_create(path, DELETE | FILE_READ_ATTRIBUTES, FILE_OPEN,
                         kind | FILE_DELETE_ON_CLOSE),
                 SMB2CloseRequest(_RELATED_FID)]
            )  # fmt: skip
            self._wire.failed(replies, what, None)

    def remove_tree(self, path: str) -> None:
        """Delete a folder and everything in it (used only on BackDown's own metadata)."""
        for entry in self.listdir(path):
            child = f"{path}/{entry.name}"
            if entry.is_dir:
                self.remove_tree(child)
            else:
                self.remove(child)
        self.rmdir(path)

    # -- lifetime ------------------------------------------------------------------------
    @property
    def _t(self) -> float:
        return self.endpoint.timeout

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self._conn.close()
            except Exception:  # closing a dead socket must never mask the real error
                pass

    def __enter__(self) -> SmbSession:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _parse_directory(data: bytes) -> list[RemoteEntry]:
    """Entries of a FILE_ID_BOTH_DIRECTORY_INFORMATION buffer ([MS-FSCC] 2.4.17)."""
    entries = []
    offset = 0
    while offset + _DIR_ENTRY.size <= len(data):
        (next_offset, _, _, _, write_time, _, size, _, attributes, name_length,
         *_) = _DIR_ENTRY.unpack_from(data, offset)  # fmt: skip
        start = offset + _DIR_ENTRY.size
        # Lone surrogates survive decoding, so such a name can be refused, not mangled.
        name = data[start : start + name_length].decode("utf-16-le", "surrogatepass")
        if name not in (".", ".."):
            is_dir = bool(attributes & _ATTR_DIRECTORY)
            mtime = (write_time - 116444736000000000) / 10_000_000
            entries.append(RemoteEntry(name, is_dir, int(size), mtime))
        if not next_offset:
            break
        offset += next_offset
    return entries


def _check_end(end: int, size: int | None) -> None:
    if size is not None and end != size:
        raise LocalFileError("changed while it was being copied; it will go on the next run")


def _describe_network_error(exc: BaseException) -> str:
    if isinstance(exc, (SMBTimeout, socket.timeout, TimeoutError)):
        return "no answer in time"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, NotConnectedError)):
        return "connection closed by the server"
    return exc.__class__.__name__ if not str(exc) else str(exc)


def connect(endpoint: Endpoint) -> SmbSession:
    """Open and authenticate a session (NTLMv2, direct TCP), bounded by connect_timeout."""
    conn = SMBConnection(
        endpoint.user,
        endpoint.password,
        endpoint.client_name,
        endpoint.server.split(".")[0].upper()[:15] if not _is_ip(endpoint.server) else "*SMBSERVER",
        domain=endpoint.domain,
        use_ntlm_v2=True,
        is_direct_tcp=True,
    )
    try:
        ok = conn.connect(endpoint.server, endpoint.port, timeout=endpoint.connect_timeout)
    except socket.gaierror:
        conn.close()
        raise ConnectError(
            f"cannot find server '{endpoint.server}': the name does not resolve; "
            "check the server address"
        ) from None
    except (ConnectionRefusedError, TimeoutError, SMBTimeout) as exc:
        conn.close()
        raise ConnectError(
            f"cannot connect to {endpoint.where}: {_describe_network_error(exc)} "
            f"(waited up to {endpoint.connect_timeout:g} s); check that the server is on and "
            "the address and port are right"
        ) from None
    except (OSError, NotConnectedError, NotReadyError) as exc:
        conn.close()
        raise ConnectError(
            f"cannot connect to {endpoint.where}: {_describe_network_error(exc)}; check "
            "that the server is on and the address and port are right"
        ) from None
    except Exception as exc:  # pysmb raises bare errors on malformed replies
        conn.close()
        raise ConnectError(
            f"cannot talk SMB with {endpoint.where} ({exc.__class__.__name__}); is this an SMB "
            "server and port?"
        ) from None
    if not ok:
        conn.close()
        who = f"user '{endpoint.user}'" if endpoint.user else "guest access"
        raise AuthError(
            f"{endpoint.where} refused {who}: wrong user name or password (or domain); "
            "check them in the profile (edit it) or the saved password"
        )
    return SmbSession(conn, endpoint)


def _is_ip(server: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(server)
        return True
    except ValueError:
        return False
