"""File operations on one share over SMB 2.1 to 3.1.1 (smbprotocol): the same Session as
SmbSession (session.py), for servers that require SMB 3, signing or encryption.

Same rules as session.py, so the engine cannot tell the two apart:
- open, operation and close go as one related compound, so most operations cost one round
  trip; large files keep several reads or writes in flight (up to 1 MiB each here: SMB 3
  allows more than SMB 2.0.2's 64 KiB, and the server says how much);
- a file is given its final name only after every byte of it was acknowledged with its full
  count, in a round trip of its own;
- a write is sent only while it lies within WRITE_WINDOW bytes of the contiguous prefix the
  server has acknowledged (upload.py's resume re-reads that much);
- every reply is checked for its full byte count; every wait has a deadline and looks at
  the cancel flag (smb3_link.py).

No operation costs more round trips than with pysmb. rename_pair is one compound here too,
but smbprotocol marks all requests of a compound related or none, so its second rename is
chained to the first (see rename_pair).
"""

from __future__ import annotations

import struct
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from smbprotocol.file_info import (
    FileAttributes,
    FileBasicInformation,
    FileEndOfFileInformation,
    FileInformationClass,
    FileRenameInformation,
    InfoType,
)
from smbprotocol.open import (
    CreateDisposition,
    CreateOptions,
    FilePipePrinterAccessMask,
    ImpersonationLevel,
    ShareAccess,
    SMB2CloseRequest,
    SMB2CreateRequest,
    SMB2QueryDirectoryRequest,
    SMB2ReadRequest,
    SMB2SetInfoRequest,
    SMB2WriteRequest,
)

from backdown.errors import (
    BackdownError,
    ConnectError,
    LocalFileError,
    RemoteFileError,
    RemoteNotFound,
)
from backdown.smb.endpoint import Endpoint
from backdown.smb.session import (
    WRITE_WINDOW,
    Put,
    Readable,
    RemoteEntry,
    SessionCore,
    Writable,
    WriteResult,
    _check_end,
    _filetime,
    _parse_directory,
    _short_write,
)
from backdown.smb.smb3_link import (
    CREDIT_BYTES,
    RELATED_FID,
    DialectTooOld,
    Link,
    Pending,
    Reply,
    open_link,
)
from backdown.smb.status import (
    STATUS_END_OF_FILE,
    STATUS_NO_MORE_FILES,
    STATUS_NO_SUCH_FILE,
    STATUS_OBJECT_NAME_NOT_FOUND,
)

__all__ = ["DialectTooOld", "Smb3Session", "connect3"]

READ_DEPTH = 3  # reads of one file in flight
MAX_READ = 4 << 20  # bytes per read, or less if the server says so
# Bytes per write: WRITE_WINDOW (1 MiB) allows 2 of these in flight.
MAX_WRITE = 512 << 10
MAX_PAGE = 1 << 20  # directory bytes per read when a folder is paged
_LIST_BUFFER = 65536  # two directory reads of this size per listing round trip
_SHARE_ALL = (
    ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE | ShareAccess.FILE_SHARE_DELETE
)
_READ_DATA = FilePipePrinterAccessMask.FILE_READ_DATA
_WRITE_DATA = FilePipePrinterAccessMask.FILE_WRITE_DATA
_READ_ATTRIBUTES = FilePipePrinterAccessMask.FILE_READ_ATTRIBUTES
_WRITE_ATTRIBUTES = FilePipePrinterAccessMask.FILE_WRITE_ATTRIBUTES
_DELETE = FilePipePrinterAccessMask.DELETE
_DIRECTORY = CreateOptions.FILE_DIRECTORY_FILE
_NON_DIRECTORY = CreateOptions.FILE_NON_DIRECTORY_FILE
# SMB2 CREATE response ([MS-SMB2] 2.2.14) up to the file id: parsed here, because
# smbprotocol turns FILETIMEs into datetimes (microseconds) and BackDown keeps 100 ns.
_CREATE_REPLY = struct.Struct("<HBBIQQQQQQII16s")


def connect3(
    endpoint: Endpoint,
    cancel: threading.Event | None = None,
    *,
    encrypt: bool = False,
    require_signing: bool = False,
) -> Smb3Session:
    """Open and authenticate an SMB 2.1 to 3.1.1 session (NTLM), within connect_timeout.

    Signing is used when the server requires it or `require_signing`; encryption when
    `encrypt`, or when the server or the share requires it. A server that speaks only SMB
    2.0.2 raises DialectTooOld (a ConnectError). `cancel`, when set, ends any wait of the
    session within a fraction of a second.
    """
    link = open_link(endpoint, cancel, encrypt=encrypt, require_signing=require_signing)
    return Smb3Session(endpoint, link)


def _utf16(path: str) -> bytes:
    """A share-relative '/' path as SMB sends it: '\\'-separated UTF-16."""
    try:
        return path.replace("/", "\\").strip("\\").encode("utf-16-le")
    except UnicodeEncodeError:
        raise RemoteFileError(f"'{path}': the name is not valid Unicode") from None


def _create(path: str, access: int, disposition: int, options: int) -> SMB2CreateRequest:
    request = SMB2CreateRequest()
    request["impersonation_level"] = ImpersonationLevel.Impersonation
    request["desired_access"] = access | FilePipePrinterAccessMask.SYNCHRONIZE
    request["file_attributes"] = 0
    request["share_access"] = _SHARE_ALL
    request["create_disposition"] = disposition
    request["create_options"] = options
    # The share's root is an empty name, which smbprotocol sends as a lone NUL.
    request["buffer_path"] = _utf16(path) or b"\x00\x00"
    return request


def _close(fid: bytes) -> SMB2CloseRequest:
    request = SMB2CloseRequest()
    request["file_id"] = fid
    return request


def _read(fid: bytes, offset: int, length: int) -> SMB2ReadRequest:
    request = SMB2ReadRequest()
    request["padding"] = 0x50  # where the data starts in the reply, as Windows asks
    request["length"] = length
    request["offset"] = offset
    request["file_id"] = fid
    return request


def _write(fid: bytes, offset: int, data: bytes) -> SMB2WriteRequest:
    request = SMB2WriteRequest()
    request["offset"] = offset
    request["file_id"] = fid
    request["buffer"] = data
    return request


def _query_directory(fid: bytes, size: int) -> SMB2QueryDirectoryRequest:
    request = SMB2QueryDirectoryRequest()
    request["file_information_class"] = FileInformationClass.FILE_ID_BOTH_DIRECTORY_INFORMATION
    request["file_id"] = fid
    request["output_buffer_length"] = size
    request["buffer"] = "*".encode("utf-16-le")
    return request


def _set_info(fid: bytes, info_class: int, data: bytes) -> SMB2SetInfoRequest:
    request = SMB2SetInfoRequest()
    request["info_type"] = InfoType.SMB2_0_INFO_FILE
    request["file_info_class"] = info_class
    request["file_id"] = fid
    request["buffer"] = data
    return request


def _set_mtime_info(fid: bytes, mtime: float) -> SMB2SetInfoRequest:
    # FILE_BASIC_INFORMATION: creation, access, write, change times, attributes; 0 = unchanged.
    data = struct.pack("<QQQQII", 0, 0, _filetime(mtime), 0, 0, 0)
    return _set_info(fid, FileBasicInformation.INFO_CLASS, data)


def _set_eof_info(fid: bytes, size: int) -> SMB2SetInfoRequest:
    return _set_info(fid, FileEndOfFileInformation.INFO_CLASS, struct.pack("<Q", size))


def _rename_info(fid: bytes, new_path: str, replace: bool = False) -> SMB2SetInfoRequest:
    # FILE_RENAME_INFORMATION for SMB2 ([MS-FSCC] 2.4.37.2), its name's length in bytes.
    name = _utf16(new_path)
    data = struct.pack("<B7xQI", int(replace), 0, len(name)) + name
    return _set_info(fid, FileRenameInformation.INFO_CLASS, data)


class _Created:
    """What a CREATE reply says about the file it opened."""

    def __init__(self, body: bytes) -> None:
        if len(body) < _CREATE_REPLY.size:
            raise ConnectError("the server sent a CREATE reply too short to read")
        (_, _, _, _, _, _, write_time, _, _, size, attributes, _,
         fid) = _CREATE_REPLY.unpack_from(body)  # fmt: skip
        self.fid: bytes = fid
        self.size = int(size)
        self.is_dir = bool(attributes & FileAttributes.FILE_ATTRIBUTE_DIRECTORY)
        self.mtime = (write_time - 116444736000000000) / 10_000_000


def _payload(body: bytes, offset_at: int, offset_format: str) -> memoryview:
    """The data of a READ or QUERY_DIRECTORY reply: its offset (from the start of the SMB2
    header) and length, as the reply states them."""
    offset, length = struct.unpack_from(offset_format, body, offset_at)
    start = offset - 64
    if start < 0 or start + length > len(body):
        raise ConnectError("the server sent a reply whose data lies outside it")
    return memoryview(body)[start : start + length]


def _read_data(reply: Reply) -> memoryview:
    # READ response ([MS-SMB2] 2.2.20): DataOffset (1 byte) at 2, DataLength (4) at 4.
    return _payload(reply.body, 2, "<B1xI")


def _directory_data(reply: Reply) -> bytes:
    # QUERY_DIRECTORY response ([MS-SMB2] 2.2.34): OutputBufferOffset (2), Length (4) at 2.
    return bytes(_payload(reply.body, 2, "<HI"))


def _write_count(reply: Reply) -> int:
    # WRITE response ([MS-SMB2] 2.2.22): Count (4 bytes) at 4.
    return int(struct.unpack_from("<I", reply.body, 4)[0])


class Smb3Session(SessionCore):
    """One authenticated SMB 2.1+ connection to one share. Not thread-safe: one per thread.

    Besides the Session protocol: `dialect` ("2.1" to "3.1.1"), `signed` (requests and
    replies are signed), `encrypted` (everything is encrypted; a share that asks for it
    shows once it is opened, by the first operation), `cipher`, and `link` (smb3_link.Link).
    """

    def __init__(self, endpoint: Endpoint, link: Link) -> None:
        self.endpoint = endpoint
        self.link = link
        self.closed = False
        conn = link.conn
        # Without multi-credit requests (an SMB 2.1 server without large MTU), 64 KiB each.
        cap = 1 << 62 if conn.supports_multi_credit else CREDIT_BYTES
        self._read_size = min(MAX_READ, int(conn.max_read_size), cap)
        self._write_size = min(MAX_WRITE, WRITE_WINDOW, int(conn.max_write_size), cap)
        self._page = min(MAX_PAGE, int(conn.max_transact_size), cap)
        self._list_buffer = min(_LIST_BUFFER, self._page)

    @property
    def dialect(self) -> str:
        return self.link.dialect

    @property
    def signed(self) -> bool:
        return self.link.signed

    @property
    def encrypted(self) -> bool:
        return self.link.encrypted

    @property
    def cipher(self) -> str | None:
        return self.link.cipher

    # -- requests ------------------------------------------------------------------------
    def _simple(
        self, what: str, path: str, access: int, disposition: int, options: int,
        middle: Sequence[Any] = (),
    ) -> list[Reply]:  # fmt: skip
        """Open path, run `middle` on the handle, close it: one round trip; raises the first
        failure (closing the handle if the chain's own close did not)."""
        chain = [_create(path, access, disposition, options), *middle, _close(RELATED_FID)]
        replies = self.link.call(chain)
        self._raise_chain(replies, what)
        return replies

    def _raise_chain(self, replies: list[Reply], what: str) -> None:
        """Raise a compound's first failure, closing a handle its own close left open."""
        bad = next((r for r in replies if r.status != 0), None)
        if bad is None:
            return
        if replies[0].status == 0 and replies[-1].status != 0:
            self._close_quietly(_Created(replies[0].body).fid)
        raise self._error(bad.status, what)

    def _close_quietly(self, fid: bytes) -> None:
        """Close a handle after an error; never waits on a dead link, never masks the error."""
        if self.link.broken is not None:
            return
        try:
            self.link.call([_close(fid)], related=False)
        except (ConnectError, RemoteFileError):
            pass

    def _drain(self, in_flight: deque[tuple[Pending, int, int]]) -> None:
        """Take the replies still due, so the connection stays in step after a local error."""
        while in_flight:
            self.link.wait(in_flight.popleft()[0])

    def _chained(self, size: int, others: int) -> int:
        """The most bytes a read or write may carry in a chain with `others` requests: what
        the credit window holds (a server may grant only a few), at most `size`."""
        return min(size, max(0, self.link.credits - others) * CREDIT_BYTES)

    def _room(self, wanted: int, busy: bool) -> int:
        """How many bytes a read or write may carry now: `wanted`, or what the credits pay
        for; 0 when it must wait for a reply in flight (`busy`) to bring credits back."""
        credits = self.link.credits
        if wanted <= credits * CREDIT_BYTES:
            return wanted
        if busy:
            return 0
        if credits < 1 and not self.link.reserve(1):
            raise ConnectError(f"the server at {self.endpoint.where} grants no credits")
        return min(wanted, max(1, self.link.credits) * CREDIT_BYTES)

    # -- reading -------------------------------------------------------------------------
    def _open_dir(self, path: str) -> SMB2CreateRequest:
        return _create(path, _READ_DATA | _READ_ATTRIBUTES, CreateDisposition.FILE_OPEN, _DIRECTORY)

    def _list(self, path: str, what: str) -> list[RemoteEntry]:
        query = [_query_directory(RELATED_FID, self._list_buffer) for _ in range(2)]
        opened, first, second, closed = self.link.call(
            [self._open_dir(path), *query, _close(RELATED_FID)]
        )
        if opened.status == 0 and closed.status != 0:
            self._close_quietly(_Created(opened.body).fid)
        if opened.status != 0:
            raise self._error(opened.status, what)
        done = (STATUS_NO_MORE_FILES, STATUS_NO_SUCH_FILE)
        if first.status in done:
            return []
        for reply in (first, second):
            if reply.status not in (0, *done):
                raise self._error(reply.status, what)
        if second.status == 0:
            return self._list_paged(path, what)  # there is more than one round trip brings
        return _parse_directory(_directory_data(first))

    def _list_paged(self, path: str, what: str) -> list[RemoteEntry]:
        """A large folder: open it, read pages until the server says there are no more."""
        (opened,) = self.link.call([self._open_dir(path)])
        if opened.status != 0:
            raise self._error(opened.status, what)
        fid = _Created(opened.body).fid
        entries: list[RemoteEntry] = []
        try:
            while True:
                page = self._chained(self._page, 0) or min(self._page, CREDIT_BYTES)
                (reply,) = self.link.call([_query_directory(fid, page)], related=False)
                if reply.status in (STATUS_NO_MORE_FILES, STATUS_NO_SUCH_FILE):
                    return entries
                if reply.status != 0:
                    raise self._error(reply.status, what)
                entries += _parse_directory(_directory_data(reply))
        finally:
            self._close_quietly(fid)

    def stat(self, path: str) -> RemoteEntry | None:
        """An entry's metadata, or None if it does not exist."""
        what = f"reading attributes of '{path}'"
        try:
            with self._op(what):
                replies = self._simple(what, path, _READ_ATTRIBUTES, CreateDisposition.FILE_OPEN, 0)
        except RemoteNotFound:
            return None
        info = _Created(replies[0].body)
        return RemoteEntry(path.rsplit("/", 1)[-1], info.is_dir, info.size, info.mtime)

    def get_file(
        self,
        path: str,
        fileobj: Writable,
        offset: int,
        expected_size: int | None,
        end: int | None = None,
    ) -> int:
        """Stream a remote file from offset (to `end`, default its end) into fileobj.

        Returns the bytes read. With the size known from a listing, a file that fits one
        read costs one round trip (open, read, close compounded); a larger one keeps
        several reads in flight. A file whose size is no longer the expected one raises
        RemoteFileError (it changed on the server), and so does every short read.
        """
        what = f"reading '{path}'"
        changed = RemoteFileError(f"{what}: it changed on the server; run again")
        with self._op(what):
            open_req = _create(path, _READ_DATA | _READ_ATTRIBUTES, CreateDisposition.FILE_OPEN,
                               _NON_DIRECTORY)  # fmt: skip
            stop = expected_size if end is None else end
            remaining = None if stop is None else stop - offset
            if remaining is not None and 0 <= remaining <= self._chained(self._read_size, 2):
                middle = [_read(RELATED_FID, offset, remaining)] if remaining else []
                replies = self.link.call([open_req, *middle, _close(RELATED_FID)])
                if replies[0].status == 0 and (
                    (expected_size is not None and _Created(replies[0].body).size != expected_size)
                    or (remaining and replies[1].status == STATUS_END_OF_FILE)
                ):
                    self._close_left_open(replies)
                    raise changed
                self._raise_chain(replies, what)
                data = _read_data(replies[1]) if remaining else memoryview(b"")
                if len(data) != remaining:
                    raise changed
                if data:
                    fileobj.write(bytes(data))
                return len(data)
            (reply,) = self.link.call([open_req])
            if reply.status != 0:
                raise self._error(reply.status, what)
            info = _Created(reply.body)
            try:
                if expected_size is not None and info.size != expected_size:
                    raise changed
                count = self._read_stream(info.fid, fileobj, offset,
                                          info.size if end is None else end)  # fmt: skip
            finally:
                self._close_quietly(info.fid)
            if count is None:
                raise changed
            return count

    def _read_stream(self, fid: bytes, fileobj: Writable, offset: int, end: int) -> int | None:
        """Read [offset, end) with several reads in flight, written in order.

        Returns the bytes read, or None if the file ended early or a read came back short.
        """
        link = self.link
        in_flight: deque[tuple[Pending, int, int]] = deque()  # oldest first
        next_offset = position = offset
        error: int | None = None
        while True:
            while error is None and next_offset < end and len(in_flight) < READ_DEPTH:
                n = self._room(min(self._read_size, end - next_offset), bool(in_flight))
                if not n:
                    break
                link.check_cancel()
                request = _read(fid, next_offset, n)
                charge = link.charge(request)
                (pending,) = link.send([request], ask=link.ask_for(charge))
                in_flight.append((pending, next_offset, n))
                next_offset += n
            if not in_flight:
                break
            pending, at, n = in_flight.popleft()
            reply = link.wait(pending)
            data = _read_data(reply) if reply.status == 0 else None
            if data is None or len(data) != n:
                error = error or reply.status or STATUS_END_OF_FILE
                continue
            if error is not None:
                continue  # taking the replies still due; nothing more is written
            try:
                fileobj.write(bytes(data))
            except LocalFileError:
                self._drain(in_flight)
                raise
            position += n
        return self._read_outcome(error, position, end, offset)

    # -- writing -------------------------------------------------------------------------
    def put_file(
        self,
        put: Put,
        fileobj: Readable,
        *,
        before_finish: Callable[[], None] | None = None,
        on_sent: Callable[[int], None] | None = None,
    ) -> int:
        """Write fileobj into put.path from put.offset, set its time, and rename it.

        Returns the end offset. With a size given, a file that does not end exactly there is
        neither given its time nor renamed (LocalFileError: it changed while being read).
        If `rename_to` exists, RemoteExists is raised with the file complete under `path`.
        `before_finish` runs once all data is acknowledged and before the time and name are
        set: it may raise to leave the file unfinished (the source changed meanwhile).
        `on_sent` hears of each block of data once the server has acknowledged it in full.
        A small file costs one round trip, two when it is renamed.
        """
        path, offset, size = put.path, put.offset, put.size
        check = before_finish or (lambda: None)
        sent = on_sent or (lambda n: None)
        what = f"writing '{path}'"
        with self._op(what):
            access = _READ_DATA | _WRITE_DATA | _READ_ATTRIBUTES | _WRITE_ATTRIBUTES
            if put.rename_to is not None:
                access |= _DELETE
            disposition = (CreateDisposition.FILE_OVERWRITE_IF if offset == 0
                           else CreateDisposition.FILE_OPEN_IF)  # fmt: skip
            open_req = _create(path, access, disposition, _NON_DIRECTORY)
            remaining = None if size is None else size - offset
            if remaining is not None and 0 <= remaining <= self._chained(self._write_size, 3):
                return self._put_small(put, open_req, fileobj, check, sent)
            (reply,) = self.link.call([open_req])
            if reply.status != 0:
                raise self._error(reply.status, what)
            fid = _Created(reply.body).fid
            try:
                result = self._write_stream(fid, fileobj, offset, sent)
                if result.error is not None:
                    self._cut_back(fid, result.acked)
                    raise result.error
                _check_end(result.end, size)
                check()
            except BaseException:
                self._close_quietly(fid)
                raise
            self._finish(fid, put.mtime, put.rename_to, path)
            return result.end

    def _put_small(
        self, put: Put, open_req: SMB2CreateRequest, fileobj: Readable,
        check: Callable[[], None], sent: Callable[[int], None],
    ) -> int:  # fmt: skip
        """A file that fits one write: open, write, set the time (and close) compounded; the
        rename goes in a second round trip, once the write is known to be whole."""
        what = f"writing '{put.path}'"
        remaining = 0 if put.size is None else put.size - put.offset
        data = fileobj.read(remaining + 1)
        _check_end(put.offset + len(data), put.size)
        check()
        chain: list[Any] = [open_req]
        if data:
            chain.append(_write(RELATED_FID, put.offset, data))
        if put.mtime is not None:
            chain.append(_set_mtime_info(RELATED_FID, put.mtime))
        if put.rename_to is None:
            chain.append(_close(RELATED_FID))
        replies = self.link.call(chain)
        if replies[0].status != 0:
            raise self._error(replies[0].status, what)
        fid = _Created(replies[0].body).fid
        failed = next((r for r in replies[1:] if r.status != 0), None)
        error = None if failed is None else self._error(failed.status, what)
        if error is None and data and _write_count(replies[1]) != len(data):
            error = _short_write(what)
        if error is not None:
            if put.rename_to is not None or replies[-1].status != 0:  # the handle is open
                self._close_quietly(fid)
            raise error
        if data:
            sent(len(data))
        if put.rename_to is not None:
            self._finish(fid, None, put.rename_to, put.path)
        return put.offset + len(data)

    def _finish(self, fid: bytes, mtime: float | None, rename_to: str | None, path: str) -> None:
        """Set the time, rename and close a fully written file: one round trip."""
        chain: list[Any] = []
        if mtime is not None:
            chain.append(_set_mtime_info(fid, mtime))
        if rename_to is not None:
            chain.append(_rename_info(fid, rename_to))
        replies = self.link.call([*chain, _close(fid)], related=False)
        if replies[-1].status != 0:
            self._close_quietly(fid)
        if rename_to is not None and replies[-2].status != 0:
            raise self._error(replies[-2].status, f"renaming '{path}' to '{rename_to}'")
        bad = next((r for r in replies if r.status != 0), None)
        if bad is not None:  # the handle is closed above: nothing left to close here
            raise self._error(bad.status, f"writing '{path}'")

    def _write_stream(
        self, fid: bytes, fileobj: Readable, offset: int, sent: Callable[[int], None]
    ) -> WriteResult:
        """Write fileobj from offset with several writes in flight.

        A write goes out only while it ends within WRITE_WINDOW of `acked`, the prefix every
        byte of which the server has acknowledged with its full count. The first failure
        stops new writes; the result says where the good prefix ends.
        """
        link = self.link
        in_flight: deque[tuple[Pending, int, int]] = deque()  # oldest first
        acked = position = offset
        pending = b""
        eof = False
        error: BackdownError | None = None
        while True:
            while error is None and not eof:
                if not pending:
                    try:
                        pending = fileobj.read(self._write_size)
                    except BaseException:
                        self._drain(in_flight)  # stay in step: take what is in flight
                        raise
                    if not pending:
                        eof = True
                        break
                n = self._room(len(pending), bool(in_flight))
                if not n or position + n > acked + WRITE_WINDOW:
                    break  # wait until a reply brings credits, or the prefix moves up
                link.check_cancel()
                request = _write(fid, position, pending[:n])
                charge = link.charge(request)
                (sent_request,) = link.send([request], ask=link.ask_for(charge))
                in_flight.append((sent_request, position, n))
                position += n
                pending = pending[n:]
            if not in_flight:
                return WriteResult(position, acked, error)
            request_pending, at, n = in_flight.popleft()
            reply = link.wait(request_pending)
            if reply.status != 0:
                error = error or self._error(reply.status, f"writing at offset {at}")
            elif _write_count(reply) != n:
                error = error or _short_write(f"writing at offset {at}")
            elif error is None:
                acked += n
                sent(n)

    def _cut_back(self, fid: bytes, acked: int) -> None:
        """After a failed write, end the file at its acknowledged prefix (best effort)."""
        if self.link.broken is not None:
            return
        try:
            self.link.call([_set_eof_info(fid, acked)], related=False)
        except (ConnectError, RemoteFileError):
            pass

    def set_mtime(self, path: str, mtime: float) -> None:
        what = f"setting the time of '{path}'"
        with self._op(what):
            self._simple(what, path, _WRITE_ATTRIBUTES | _READ_ATTRIBUTES,
                         CreateDisposition.FILE_OPEN, 0,
                         [_set_mtime_info(RELATED_FID, mtime)])  # fmt: skip

    def mkdir(self, path: str) -> None:
        what = f"creating folder '{path}'"
        with self._op(what):
            self._simple(what, path, _READ_ATTRIBUTES, CreateDisposition.FILE_CREATE, _DIRECTORY)

    def rename(self, old: str, new: str, replace: bool = False) -> None:
        """Rename within the share; an existing target is replaced only if `replace`."""
        what = f"renaming '{old}' to '{new}'"
        with self._op(what):
            self._simple(what, old, _DELETE | _READ_ATTRIBUTES, CreateDisposition.FILE_OPEN, 0,
                         [_rename_info(RELATED_FID, new, replace)])  # fmt: skip

    def rename_pair(self, first: tuple[str, str], second: tuple[str, str]) -> bool:
        """Rename first[0] to first[1], then second[0] to second[1], in one round trip, so
        that no failure of ours can fall between the two (the window is the server's alone).

        Returns whether the first rename happened (False: first[0] did not exist). If the
        second fails, its error is raised, with the first rename done.
        """
        what = f"renaming '{first[0]}' to '{first[1]}'"
        with self._op(what):
            # smbprotocol flags every request of a compound related, or none (the pysmb
            # wire sends the two chains unrelated in one compound), so the second chain is
            # related to the first. Its CREATE needs no handle from before it, so a server
            # runs it whatever the first chain did ([MS-SMB2] 3.3.5.2.7.2; Samba does); one
            # that fails it with the first chain's error anyway gets it again on its own.
            replies = self.link.call([*self._rename_chain(*first), *self._rename_chain(*second)])
            head, tail = replies[:3], replies[3:]
            self._close_left_open(head)
            self._close_left_open(tail)
            moved = all(r.status == 0 for r in head[:2])
            if not moved and head[0].status != STATUS_OBJECT_NAME_NOT_FOUND:
                raise self._error(next(r.status for r in head if r.status), what)
            if not moved and tail[0].status == head[0].status:
                tail = self.link.call(self._rename_chain(*second))
                self._close_left_open(tail)
            bad = next((r for r in tail if r.status != 0), None)
            if bad is not None:
                raise self._error(bad.status, f"renaming '{second[0]}' to '{second[1]}'")
            return moved

    def _rename_chain(self, old: str, new: str) -> list[Any]:
        return [_create(old, _DELETE | _READ_ATTRIBUTES, CreateDisposition.FILE_OPEN, 0),
                _rename_info(RELATED_FID, new), _close(RELATED_FID)]  # fmt: skip

    def _close_left_open(self, chain: list[Reply]) -> None:
        if chain[0].status == 0 and chain[-1].status != 0:
            self._close_quietly(_Created(chain[0].body).fid)

    def remove(self, path: str) -> None:
        self._delete(path, f"deleting '{path}'", _NON_DIRECTORY)

    def rmdir(self, path: str) -> None:
        self._delete(path, f"deleting folder '{path}'", _DIRECTORY)

    def _delete(self, path: str, what: str, kind: int) -> None:
        with self._op(what):
            self._simple(what, path, _DELETE | _READ_ATTRIBUTES, CreateDisposition.FILE_OPEN,
                         kind | CreateOptions.FILE_DELETE_ON_CLOSE)  # fmt: skip

    # -- lifetime ------------------------------------------------------------------------
    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.link.close()

    def __enter__(self) -> Smb3Session:
        return self
