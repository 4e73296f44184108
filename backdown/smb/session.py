"""File operations on one share over the wire: list, stat, read, write, rename, delete.

Each operation is a chain of requests (open, the operation, close) sent as one compound, so
most cost one round trip; large files keep several reads or writes in flight. Two rules
keep the bytes right whatever the server does:
- a file is given its final name only after every byte of it was acknowledged with its full
  count, in a round trip of its own (a server runs the rest of a related compound even
  after a write in it failed);
- a write is sent only while it lies within WRITE_WINDOW bytes of the contiguous prefix
  that the server has acknowledged, so a temporary file left by a failure or a crash is
  good except perhaps in its last WRITE_WINDOW bytes (see upload.py's resume).
"""

from __future__ import annotations

import codecs
import struct
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from smb.smb2_constants import SMB2_INFO_FILE
from smb.smb2_structs import (
    SMB2CloseRequest,
    SMB2CreateRequest,
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

from backdown.errors import (
    BackdownError,
    ConnectError,
    LocalFileError,
    RemoteExists,
    RemoteFileError,
    RemoteNotFound,
)
from backdown.smb.endpoint import Endpoint
from backdown.smb.status import (
    STATUS_END_OF_FILE,
    STATUS_NO_MORE_FILES,
    STATUS_NO_SUCH_FILE,
    STATUS_OBJECT_NAME_NOT_FOUND,
    status_error,
)
from backdown.smb.wire import RELATED_FID, Related, Wire

PIPELINE_DEPTH = 16  # reads or writes of one file in flight
MAX_IO = 65536  # SMB 2.0.2 allows at most 64 KiB per read or write; the server may say less
# A write is sent only within this many bytes of the acknowledged prefix; the resume of a
# temporary re-checks its last WRITE_WINDOW bytes (upload.py).
WRITE_WINDOW = PIPELINE_DEPTH * MAX_IO

_ATTR_DIRECTORY = 0x10
_FILE_BASIC_INFORMATION = 0x04
_FILE_RENAME_INFORMATION = 0x0A
_FILE_END_OF_FILE_INFORMATION = 0x14
_FILE_ID_BOTH_DIRECTORY_INFORMATION = 0x25
_DIR_ENTRY = struct.Struct("<IIQQQQQQIIIBB24sHQ")
# Two directory reads per listing round trip; a bigger folder is paged afterwards.
_LIST_BUFFER = 32768
_SEC_IMPERSONATE = 0x02
_SHARE_ALL = FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...


class RemoteEntry(NamedTuple):
    """One entry of a remote folder listing (a tuple: a listing makes one per file, and a
    tuple is the cheapest object to make)."""

    name: str
    is_dir: bool
    size: int
    mtime: float


@dataclass(frozen=True)
class Put:
    """Where put_file writes: into `path` from `offset`; with `size`, a source that does not
    end exactly there is refused; then the file gets `mtime` and is renamed to `rename_to`."""

    path: str
    offset: int = 0
    size: int | None = None
    mtime: float | None = None
    rename_to: str | None = None


class PutJob(NamedTuple):
    """One file of put_files: where it goes, its bytes, and put_file's `before_finish`."""

    put: Put
    source: Readable
    before_finish: Callable[[], None] | None = None


# put_files reports each file's outcome: None once it is in place, else its error.
Outcome = Callable[[int, "LocalFileError | RemoteFileError | None"], None]


@dataclass(frozen=True)
class WriteResult:
    """How far a write stream got: `end` sent, `acked` the contiguous acknowledged prefix."""

    end: int
    acked: int
    error: BackdownError | None


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


def _set_eof_info(fid: bytes, size: int) -> SMB2SetInfoRequest:
    return SMB2SetInfoRequest(
        fid, 0, SMB2_INFO_FILE, _FILE_END_OF_FILE_INFORMATION, struct.pack("<Q", size)
    )


def _rename_info(fid: bytes, new_path: str, replace: bool = False) -> SMB2SetInfoRequest:
    # FILE_RENAME_INFORMATION. The length is that of the UTF-16 bytes: pysmb 1.2.15's own
    # rename sends len(str) * 2, which truncates names with characters outside the BMP.
    name = new_path.replace("/", "\\").strip("\\").encode("utf-16-le")
    data = struct.pack("<B7xQI", int(replace), 0, len(name)) + name
    return SMB2SetInfoRequest(fid, 0, SMB2_INFO_FILE, _FILE_RENAME_INFORMATION, data)


class SessionCore:
    """What every transport's session does the same way on top of its own requests: the
    one error wrapper (`_op`), status errors, and the operations made of others (listing,
    whole-file read and write, makedirs, remove_tree, closing on exit). A transport provides
    endpoint, closed, close, _list, get_file, put_file, mkdir, rmdir and remove."""

    endpoint: Endpoint
    closed: bool

    def close(self) -> None:
        raise NotImplementedError

    def _list(self, path: str, what: str) -> list[RemoteEntry]:
        raise NotImplementedError

    def _read_outcome(self, error: int | None, position: int, end: int, offset: int) -> int | None:
        """How a pipelined read ended: the bytes read when it reached `end` cleanly; None
        when the file ended sooner (or no error came at all before `end`: the caller
        rereads); the server's error otherwise."""
        if error is None and position == end:
            return position - offset
        if error is None or error == STATUS_END_OF_FILE:
            return None
        raise self._error(error, f"reading at offset {position}")

    def get_file(
        self,
        path: str,
        fileobj: Writable,
        offset: int,
        expected_size: int | None,
        end: int | None = None,
    ) -> int:
        raise NotImplementedError

    def put_file(
        self,
        put: Put,
        fileobj: Readable,
        *,
        before_finish: Callable[[], None] | None = None,
        on_sent: Callable[[int], None] | None = None,
    ) -> int:
        raise NotImplementedError

    def put_files(
        self,
        jobs: Sequence[PutJob],
        on_done: Outcome,
        on_sent: Callable[[int], None] | None = None,
    ) -> None:
        """put_file for each job, telling on_done(index, error) as each file ends; a
        transport may keep several files' requests in flight together. A lost connection
        raises, as put_file: the files told done before it are done."""
        each_put(self.put_file, jobs, on_done, on_sent)

    def stat(self, path: str) -> RemoteEntry | None:
        raise NotImplementedError

    def mkdir(self, path: str) -> None:
        raise NotImplementedError

    def remove(self, path: str) -> None:
        raise NotImplementedError

    def rmdir(self, path: str) -> None:
        raise NotImplementedError

    def _error(self, status: int, what: str) -> BackdownError:
        return status_error(status, what, self.endpoint.server, self.endpoint.share)

    @contextmanager
    def _op(self, what: str) -> Iterator[None]:
        """Run one operation; a failure of the connection closes it (reconnect to go on)."""
        if self.closed:
            raise ConnectError(f"the connection to {self.endpoint.where} is closed")
        try:
            yield
        except (RemoteFileError, LocalFileError):
            raise  # every request had its answer: the connection is still in step
        except ConnectError as exc:
            self.close()
            raise type(exc)(f"{exc} during {what}") from None
        except OSError as exc:
            self.close()
            raise ConnectError(f"lost the connection to {self.endpoint.where} during {what} "
                               f"({exc.strerror or exc})") from None  # fmt: skip
        except BaseException:
            # Cancelled, a share error (or a bug): the connection may hold half an exchange.
            self.close()
            raise

    def listdir(self, path: str) -> list[RemoteEntry]:
        """The entries of a remote folder, without '.' and '..'.

        One round trip for most folders: open, two directory reads and close, compounded.
        """
        what = f"listing '{path or '/'}'"
        with self._op(what):
            return self._list(path, what)

    def listdirs(self, paths: Sequence[str]) -> list[list[RemoteEntry] | RemoteFileError]:
        """Each folder's entries, or the RemoteFileError its listing raised; a transport
        may keep the listings in flight together. A lost connection raises, as listdir."""
        return each_listed(self.listdir, paths)

    def read_file(self, path: str, fileobj: Writable, offset: int = 0) -> int:
        """Stream a remote file (from offset) into fileobj; returns the bytes read."""
        return self.get_file(path, fileobj, offset, None)

    def write_file(self, path: str, fileobj: Readable, offset: int = 0) -> int:
        """Stream fileobj into a remote file; offset 0 truncates, else writes from offset."""
        return self.put_file(Put(path, offset), fileobj)

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
                entry = self.stat(sub)
                if entry is not None and not entry.is_dir:
                    raise RemoteExists(
                        f"creating folder '{sub}': a file of that name is in the way"
                    ) from None
                continue
            except RemoteFileError:
                entry = self.stat(sub)
                if entry is None or not entry.is_dir:
                    raise

    def remove_tree(self, path: str) -> None:
        """Delete a folder and everything in it (used only on BackDown's own metadata)."""
        for entry in self.listdir(path):
            child = f"{path}/{entry.name}"
            if entry.is_dir:
                self.remove_tree(child)
            else:
                self.remove(child)
        self.rmdir(path)

    def __exit__(self, *exc: Any) -> None:
        self.close()


class SmbSession(SessionCore):
    """One authenticated SMB2 connection to one share. Not thread-safe: one per thread."""

    def __init__(
        self,
        endpoint: Endpoint,
        wire: Wire,
        *,
        max_read: int,
        max_write: int,
        max_transact: int,
        close: Callable[[], None],
    ) -> None:
        self.endpoint = endpoint
        self.wire = wire
        self.closed = False
        self._tid: int | None = None
        self._read_size = min(MAX_IO, max_read)
        self._write_size = min(MAX_IO, max_write)
        self._page = min(MAX_IO, max_transact)
        self._close_socket = close

    # -- requests ------------------------------------------------------------------------
    @property
    def tid(self) -> int:
        """The share's tree id, connecting to the share on first use."""
        if self._tid is None:
            path = f"\\\\{self.endpoint.server}\\{self.endpoint.share}"
            (reply,) = self.wire.call([SMB2TreeConnectRequest(path)], tid=0)
            if reply.status != 0:
                raise self._error(reply.status, "opening the share")
            self._tid = int(reply.tid)
        return self._tid

    def _call(self, chain: Sequence[Any], related: Related = True) -> list[SMB2Message]:
        return self.wire.call(chain, self.tid, related)

    def _simple(
        self, what: str, path: str, access: int, disposition: int, options: int,
        middle: Sequence[Any] = (),
    ) -> list[SMB2Message]:  # fmt: skip
        """Open path, run `middle` on the handle, close it: one round trip; raises the first
        failure (closing the handle if the chain's own close did not)."""
        chain = [_create(path, access, disposition, options), *middle]
        replies = self._call([*chain, SMB2CloseRequest(RELATED_FID)])
        self._raise_chain(replies, what)
        return replies

    def _close_quietly(self, fid: bytes) -> None:
        """Close a handle after an error; never waits on a dead wire, never masks the error."""
        if self.wire.broken is not None:
            return
        try:
            self._call([SMB2CloseRequest(fid)], related=False)
        except (ConnectError, RemoteFileError):
            pass

    # -- reading -------------------------------------------------------------------------
    def _list(self, path: str, what: str) -> list[RemoteEntry]:
        return self._listed(path, what, self._call(self._list_chain(path)))

    def listdirs(self, paths: Sequence[str]) -> list[list[RemoteEntry] | RemoteFileError]:
        """Several folders' listings with their compounds in flight together (one round trip
        for all of them where the credits allow, else one after the other)."""
        chains = [self._list_chain(path) for path in paths]
        if len(paths) < 2:
            return super().listdirs(paths)
        with self._op("listing folders"):
            together = self.wire.reserve(sum(map(len, chains)))
        if not together:  # a server that grants few credits: one listing at a time
            return super().listdirs(paths)
        with self._op("listing folders"):
            sent = [self.wire.send(chain, self.tid) for chain in chains]
            outcomes: list[list[RemoteEntry] | RemoteFileError] = []
            for path, mids in zip(paths, sent, strict=True):
                replies = self.wire.wait(mids)
                try:
                    outcomes.append(self._listed(path, f"listing '{path or '/'}'", replies))
                except RemoteFileError as exc:
                    outcomes.append(exc)
            return outcomes

    def _list_chain(self, path: str) -> list[Any]:
        """Open, two directory reads and close: one compound."""
        query = [
            SMB2QueryDirectoryRequest(
                RELATED_FID, "*", _FILE_ID_BOTH_DIRECTORY_INFORMATION, 0, _LIST_BUFFER
            )
            for _ in range(2)
        ]
        return [self._open_dir(path), *query, SMB2CloseRequest(RELATED_FID)]

    def _listed(self, path: str, what: str, replies: list[SMB2Message]) -> list[RemoteEntry]:
        """A listing's entries from its compound's replies."""
        opened, first, second, closed = replies
        if opened.status == 0 and closed.status != 0:
            self._close_quietly(opened.payload.fid)
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
        return _parse_directory(first.payload.data)

    def _open_dir(self, path: str) -> SMB2CreateRequest:
        return _create(path, FILE_READ_DATA | FILE_READ_ATTRIBUTES, FILE_OPEN, FILE_DIRECTORY_FILE)

    def _list_paged(self, path: str, what: str) -> list[RemoteEntry]:
        """A large folder: open it, read pages until the server says there are no more."""
        (opened,) = self._call([self._open_dir(path)])
        if opened.status != 0:
            raise self._error(opened.status, what)
        fid = opened.payload.fid
        entries: list[RemoteEntry] = []
        try:
            while True:
                request = SMB2QueryDirectoryRequest(
                    fid, "*", _FILE_ID_BOTH_DIRECTORY_INFORMATION, 0, self._page
                )
                (reply,) = self._call([request], related=False)
                if reply.status in (STATUS_NO_MORE_FILES, STATUS_NO_SUCH_FILE):
                    return entries
                if reply.status != 0:
                    raise self._error(reply.status, what)
                entries += _parse_directory(reply.payload.data)
        finally:
            self._close_quietly(fid)

    def stat(self, path: str) -> RemoteEntry | None:
        """An entry's metadata, or None if it does not exist."""
        what = f"reading attributes of '{path}'"
        try:
            with self._op(what):
                replies = self._simple(what, path, FILE_READ_ATTRIBUTES, FILE_OPEN, 0)
        except RemoteNotFound:
            return None
        info = replies[0].payload
        is_dir = bool(info.file_attributes & _ATTR_DIRECTORY)
        name = path.rsplit("/", 1)[-1]
        return RemoteEntry(name, is_dir, int(info.file_size), float(info.lastwrite_time))

    def get_file(
        self,
        path: str,
        fileobj: Writable,
        offset: int,
        expected_size: int | None,
        end: int | None = None,
    ) -> int:
        """Stream a remote file from offset (to `end`, default its end) into fileobj.

        Returns the bytes read. With the size known from a listing, a small file costs one
        round trip (open, read, close compounded); a large one keeps several reads in
        flight. A file whose size is no longer the expected one raises RemoteFileError
        (it changed on the server), and so does every short read.
        """
        what = f"reading '{path}'"
        changed = RemoteFileError(f"{what}: it changed on the server; run again")
        with self._op(what):
            open_req = _create(path, FILE_READ_DATA | FILE_READ_ATTRIBUTES, FILE_OPEN,
                               FILE_NON_DIRECTORY_FILE)  # fmt: skip
            stop = expected_size if end is None else end
            remaining = None if stop is None else stop - offset
            if remaining is not None and 0 <= remaining <= self._read_size:
                middle = [SMB2ReadRequest(RELATED_FID, offset, remaining)] if remaining else []
                chain = [open_req, *middle, SMB2CloseRequest(RELATED_FID)]
                replies = self._call(chain)
                self._raise_chain(replies, what)
                if expected_size is not None and replies[0].payload.file_size != expected_size:
                    raise changed
                data = replies[1].payload.data if remaining else b""
                if len(data) != remaining:
                    raise changed
                if data:
                    fileobj.write(data)
                return len(data)
            (reply,) = self._call([open_req])
            if reply.status != 0:
                raise self._error(reply.status, what)
            fid = reply.payload.fid
            try:
                size = int(reply.payload.file_size)
                if expected_size is not None and size != expected_size:
                    raise changed
                count = self._read_stream(fid, fileobj, offset, size if end is None else end)
            finally:
                self._close_quietly(fid)
            if count is None:
                raise changed
            return count

    def _raise_chain(self, replies: list[SMB2Message], what: str) -> None:
        """Raise a compound's first failure, closing a handle its own close left open."""
        bad = next((r for r in replies if r.status != 0), None)
        if bad is None:
            return
        if replies[0].status == 0 and replies[-1].status != 0:
            self._close_quietly(replies[0].payload.fid)
        raise self._error(bad.status, what)

    def _read_stream(self, fid: bytes, fileobj: Writable, offset: int, end: int) -> int | None:
        """Read [offset, end) with several reads in flight, written in order.

        Returns the bytes read, or None if the file ended early or a read came back short.
        """
        wire = self.wire
        in_flight: dict[int, tuple[int, int]] = {}
        arrived: dict[int, bytes] = {}
        next_offset = position = offset
        error: int | None = None
        while (position < end and error is None) or in_flight:
            while (error is None and next_offset < end and len(in_flight) < PIPELINE_DEPTH
                   and wire.credits > 0):  # fmt: skip
                n = min(self._read_size, end - next_offset)
                (mid,) = wire.send([SMB2ReadRequest(fid, next_offset, n)], self.tid)
                in_flight[mid] = (next_offset, n)
                next_offset += n
            if not in_flight:
                if next_offset >= end:
                    break  # everything was asked for and answered, yet a gap remains
                if not wire.reserve(1):
                    raise ConnectError(f"the server at {self.endpoint.where} grants no credits")
                continue
            mid, reply = wire.wait_any(in_flight)
            at, n = in_flight.pop(mid)
            if reply.status != 0 or len(reply.payload.data) != n:
                error = error or reply.status or STATUS_END_OF_FILE
                continue
            arrived[at] = reply.payload.data
            while position in arrived:
                data = arrived.pop(position)
                try:
                    fileobj.write(data)
                except LocalFileError:
                    wire.wait(list(in_flight))  # stay in step: collect what is in flight
                    raise
                position += len(data)
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
        path, offset, size, mtime, rename_to = (
            put.path,
            put.offset,
            put.size,
            put.mtime,
            put.rename_to,
        )
        check = before_finish or (lambda: None)
        sent = on_sent or (lambda n: None)
        what = f"writing '{path}'"
        with self._op(what):
            if self._fits_one_write(put):
                return self._put_small(put, fileobj, check, sent)
            (reply,) = self._call([self._put_open(put)])
            if reply.status != 0:
                raise self._error(reply.status, what)
            fid = reply.payload.fid
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
            self._finish(fid, mtime, rename_to, path)
            return result.end

    def _put_open(self, put: Put) -> SMB2CreateRequest:
        """The open of put_file's target: truncated from 0, else kept (a resume)."""
        access = FILE_READ_DATA | FILE_WRITE_DATA | FILE_READ_ATTRIBUTES | FILE_WRITE_ATTRIBUTES
        if put.rename_to is not None:
            access |= DELETE
        disposition = FILE_OVERWRITE_IF if put.offset == 0 else FILE_OPEN_IF
        return _create(put.path, access, disposition, FILE_NON_DIRECTORY_FILE)

    def _put_small(
        self, put: Put, fileobj: Readable, check: Callable[[], None], sent: Callable[[int], None]
    ) -> int:
        """A file that fits one write: open, write, set the time (and close) compounded; the
        rename goes in a second round trip, once the write is known to be whole."""
        data, chain = self._small_chain(put, fileobj, check)
        fid = self._small_written(put.path, data, put.rename_to, self._call(chain))
        if data:
            sent(len(data))
        if put.rename_to is not None:
            self._finish(fid, None, put.rename_to, put.path)
        return put.offset + len(data)

    def _small_chain(
        self, put: Put, fileobj: Readable, check: Callable[[], None]
    ) -> tuple[bytes, list[Any]]:
        """Read a small file whole and check it, and the compound that writes it: open,
        write, set the time, and close unless a rename is to follow."""
        remaining = 0 if put.size is None else put.size - put.offset
        data = fileobj.read(remaining + 1)
        _check_end(put.offset + len(data), put.size)
        check()
        chain: list[Any] = [self._put_open(put)]
        if data:
            chain.append(SMB2WriteRequest(RELATED_FID, data, put.offset))
        if put.mtime is not None:
            chain.append(_set_mtime_info(RELATED_FID, put.mtime))
        if put.rename_to is None:
            chain.append(SMB2CloseRequest(RELATED_FID))
        assert len(chain) == _small_requests(put)  # what put_files reserved credits for
        return data, chain

    def _small_written(
        self, path: str, data: bytes, rename_to: str | None, replies: list[SMB2Message]
    ) -> bytes:
        """The handle of a small file whose compound wrote every byte; else its error
        (with the handle closed)."""
        what = f"writing '{path}'"
        if replies[0].status != 0:
            raise self._error(replies[0].status, what)
        fid: bytes = replies[0].payload.fid
        failed = next((r for r in replies[1:] if r.status != 0), None)
        error = None if failed is None else self._error(failed.status, what)
        if error is None and data and replies[1].payload.count != len(data):
            error = _short_write(what)
        if error is not None:
            if rename_to is not None or replies[-1].status != 0:  # the handle is still open
                self._close_quietly(fid)
            raise error
        return fid

    def put_files(
        self,
        jobs: Sequence[PutJob],
        on_done: Outcome,
        on_sent: Callable[[int], None] | None = None,
    ) -> None:
        """Small files with their requests in flight together: every file's open, write and
        time go out at once (as the credits allow), then each one's rename and close as soon
        as its write is known whole. Over a link with latency that is two round trips for
        the lot instead of two per file. A file too big for one write goes afterwards, alone.
        """
        sent = on_sent or (lambda n: None)
        small = [i for i, job in enumerate(jobs) if self._fits_one_write(job.put)]
        alone = sorted(set(range(len(jobs))) - set(small))
        if len(small) >= 2:
            with self._op("writing files"):
                alone = self._put_together(jobs, small, on_done, sent) + alone
        each_put(self.put_file, [jobs[i] for i in alone],
                 lambda k, error: on_done(alone[k], error), on_sent)  # fmt: skip

    def _fits_one_write(self, put: Put) -> bool:
        return put.size is not None and 0 <= put.size - put.offset <= self._write_size

    def _put_together(
        self,
        jobs: Sequence[PutJob],
        indexes: list[int],
        on_done: Outcome,
        sent: Callable[[int], None],
    ) -> list[int]:
        """put_files' pipeline; returns the jobs left for one at a time (the credit window
        did not hold one more file's compound)."""
        wire = self.wire
        written: list[tuple[int, bytes, list[int]]] = []  # (job, data, message ids)
        left: list[int] = []
        for n, i in enumerate(indexes):
            put = jobs[i].put
            # The credits first, so that a file left for later is not read yet.
            if not wire.reserve(_small_requests(put)):
                left = indexes[n:]
                break
            check = jobs[i].before_finish or (lambda: None)
            try:
                data, chain = self._small_chain(put, jobs[i].source, check)
            except LocalFileError as exc:
                on_done(i, exc)
                continue
            written.append((i, data, wire.send(chain, self.tid)))
        finishing: list[tuple[int, bytes, list[int]]] = []  # (job, handle, message ids)
        for i, data, mids in written:
            put = jobs[i].put
            try:
                fid = self._small_written(put.path, data, put.rename_to, wire.wait(mids))
            except RemoteFileError as exc:
                on_done(i, exc)
                continue
            if data:
                sent(len(data))
            if put.rename_to is None:
                on_done(i, None)
                continue
            chain = self._finish_chain(fid, None, put.rename_to)
            if wire.reserve(len(chain)):
                finishing.append((i, fid, wire.send(chain, self.tid, related=False)))
                continue
            try:  # a window too small for the pair: one request at a time
                self._finished(fid, put.rename_to, put.path, self._call(chain, related=False))
            except RemoteFileError as exc:
                on_done(i, exc)
                continue
            on_done(i, None)
        for i, fid, mids in finishing:
            put = jobs[i].put
            try:
                self._finished(fid, put.rename_to, put.path, wire.wait(mids))
            except RemoteFileError as exc:
                on_done(i, exc)
                continue
            on_done(i, None)
        return left

    def _finish(self, fid: bytes, mtime: float | None, rename_to: str | None, path: str) -> None:
        """Set the time, rename and close a fully written file: one round trip."""
        chain = self._finish_chain(fid, mtime, rename_to)
        self._finished(fid, rename_to, path, self._call(chain, related=False))

    def _finish_chain(self, fid: bytes, mtime: float | None, rename_to: str | None) -> list[Any]:
        chain: list[Any] = []
        if mtime is not None:
            chain.append(_set_mtime_info(fid, mtime))
        if rename_to is not None:
            chain.append(_rename_info(fid, rename_to))
        return [*chain, SMB2CloseRequest(fid)]

    def _finished(
        self, fid: bytes, rename_to: str | None, path: str, replies: list[SMB2Message]
    ) -> None:
        """Raise the error of a finishing compound, if any (closing the handle if its close
        failed)."""
        if replies[-1].status != 0:
            self._close_quietly(fid)
        if rename_to is not None and replies[-2].status != 0:
            status = replies[-2].status
            raise self._error(status, f"renaming '{path}' to '{rename_to}'")
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
        wire = self.wire
        in_flight: dict[int, tuple[int, int]] = {}
        done: dict[int, int] = {}  # acknowledged writes above the prefix: offset -> length
        acked = position = offset
        pending = b""
        eof = False
        error: BackdownError | None = None
        while True:
            while (error is None and not eof and len(in_flight) < PIPELINE_DEPTH
                   and wire.credits > 0):  # fmt: skip
                if not pending:
                    try:
                        pending = fileobj.read(self._write_size)
                    except BaseException:
                        wire.wait(list(in_flight))  # stay in step: collect what is in flight
                        raise
                    if not pending:
                        eof = True
                        break
                if position + len(pending) > acked + WRITE_WINDOW:
                    break  # wait until the prefix moves up
                (mid,) = wire.send([SMB2WriteRequest(fid, pending, position)], self.tid)
                in_flight[mid] = (position, len(pending))
                position += len(pending)
                pending = b""
            if not in_flight:
                if error is not None or eof:
                    return WriteResult(position, acked, error)
                if not wire.reserve(1):
                    raise ConnectError(f"the server at {self.endpoint.where} grants no credits")
                continue
            mid, reply = wire.wait_any(in_flight)
            at, n = in_flight.pop(mid)
            if reply.status != 0:
                error = error or self._error(reply.status, f"writing at offset {at}")
            elif reply.payload.count != n:
                error = error or _short_write(f"writing at offset {at}")
            else:
                done[at] = n
                while acked in done:
                    step = done.pop(acked)
                    acked += step
                    sent(step)

    def _cut_back(self, fid: bytes, acked: int) -> None:
        """After a failed write, end the file at its acknowledged prefix (best effort)."""
        if self.wire.broken is not None:
            return
        try:
            self._call([_set_eof_info(fid, acked)], related=False)
        except (ConnectError, RemoteFileError):
            pass

    def set_mtime(self, path: str, mtime: float) -> None:
        what = f"setting the time of '{path}'"
        with self._op(what):
            self._simple(what, path, FILE_WRITE_ATTRIBUTES | FILE_READ_ATTRIBUTES, FILE_OPEN, 0,
                         [_set_mtime_info(RELATED_FID, mtime)])  # fmt: skip

    def mkdir(self, path: str) -> None:
        what = f"creating folder '{path}'"
        with self._op(what):
            self._simple(what, path, FILE_READ_ATTRIBUTES, FILE_CREATE, FILE_DIRECTORY_FILE)

    def rename(self, old: str, new: str, replace: bool = False) -> None:
        """Rename within the share; an existing target is replaced only if `replace`."""
        what = f"renaming '{old}' to '{new}'"
        with self._op(what):
            self._simple(what, old, DELETE | FILE_READ_ATTRIBUTES, FILE_OPEN, 0,
                         [_rename_info(RELATED_FID, new, replace)])  # fmt: skip

    def rename_pair(self, first: tuple[str, str], second: tuple[str, str]) -> bool:
        """Rename first[0] to first[1], then second[0] to second[1], in one round trip, so
        that no failure of ours can fall between the two (the window is the server's alone).

        Returns whether the first rename happened (False: first[0] did not exist). If the
        second fails, its error is raised, with the first rename done.
        """
        chain: list[Any] = []
        for old, new in (first, second):
            chain += [_create(old, DELETE | FILE_READ_ATTRIBUTES, FILE_OPEN, 0),
                      _rename_info(RELATED_FID, new), SMB2CloseRequest(RELATED_FID)]  # fmt: skip
        what = f"renaming '{first[0]}' to '{first[1]}'"
        with self._op(what):
            replies = self._call(chain, related=[False, True, True] * 2)
            for half in (replies[:3], replies[3:]):
                if half[0].status == 0 and half[2].status != 0:
                    self._close_quietly(half[0].payload.fid)
            moved = all(r.status == 0 for r in replies[:2])
            if not moved and replies[0].status != STATUS_OBJECT_NAME_NOT_FOUND:
                raise self._error(next(r.status for r in replies[:3] if r.status), what)
            bad = next((r for r in replies[3:] if r.status != 0), None)
            if bad is not None:
                raise self._error(bad.status, f"renaming '{second[0]}' to '{second[1]}'")
            return moved

    def remove(self, path: str) -> None:
        self._delete(path, f"deleting '{path}'", FILE_NON_DIRECTORY_FILE)

    def rmdir(self, path: str) -> None:
        self._delete(path, f"deleting folder '{path}'", FILE_DIRECTORY_FILE)

    def _delete(self, path: str, what: str, kind: int) -> None:
        with self._op(what):
            self._simple(what, path, DELETE | FILE_READ_ATTRIBUTES, FILE_OPEN,
                         kind | FILE_DELETE_ON_CLOSE)  # fmt: skip

    # -- lifetime ------------------------------------------------------------------------
    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self._close_socket()
            except Exception:  # closing a dead socket must never mask the real error
                pass

    def __enter__(self) -> SmbSession:
        return self


def each_listed(
    listdir: Callable[[str], list[RemoteEntry]], paths: Sequence[str]
) -> list[list[RemoteEntry] | RemoteFileError]:
    """listdirs one folder after the other: each one's entries, or its RemoteFileError."""
    outcomes: list[list[RemoteEntry] | RemoteFileError] = []
    for path in paths:
        try:
            outcomes.append(listdir(path))
        except RemoteFileError as exc:
            outcomes.append(exc)
    return outcomes


def _small_requests(put: Put) -> int:
    """The requests of _small_chain for `put` (known before its file is read): open, the
    write unless there is nothing to write, the time if given, the close unless a rename
    follows."""
    return 1 + (put.size != put.offset) + (put.mtime is not None) + (put.rename_to is None)


def each_put(
    put_file: Callable[..., int],
    jobs: Sequence[PutJob],
    on_done: Outcome,
    on_sent: Callable[[int], None] | None,
) -> None:
    """put_files one file after the other."""
    for i, job in enumerate(jobs):
        try:
            put_file(job.put, job.source, before_finish=job.before_finish, on_sent=on_sent)
        except (RemoteFileError, LocalFileError) as exc:
            on_done(i, exc)
            continue
        on_done(i, None)


# The codec itself: bytes.decode looks the codec up by name on every call (a listing of
# 100,000 names spent 0.15 s there).
_utf16 = codecs.utf_16_le_decode


def _parse_directory(data: bytes) -> list[RemoteEntry]:
    """Entries of a FILE_ID_BOTH_DIRECTORY_INFORMATION buffer ([MS-FSCC] 2.4.17)."""
    entries = []
    offset = 0
    while offset + _DIR_ENTRY.size <= len(data):
        (next_offset, _, _, _, write_time, _, size, _, attributes, name_length,
         *_) = _DIR_ENTRY.unpack_from(data, offset)  # fmt: skip
        start = offset + _DIR_ENTRY.size
        # Lone surrogates survive decoding, so such a name can be refused, not mangled.
        name = _utf16(data[start : start + name_length], "surrogatepass")[0]
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


def _short_write(what: str) -> RemoteFileError:
    return RemoteFileError(f"{what}: the server stored fewer bytes than were sent")
