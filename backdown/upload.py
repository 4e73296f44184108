"""Carry out an upload (backup) plan on the share.

Each file goes to a temporary name in its folder and is put in place once every byte of it
is acknowledged. An existing target is moved into the versions area
(.backdown/versions/<UTC time>/<path>) and the new file renamed in, in one round trip: at no
moment is the old content gone. A temporary's name encodes the local file's size and time,
so a later run continues it only if the local file is unchanged since, and only from a
point below which the temporary is known to hold the source's bytes (see _resume_offset).
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import BinaryIO

from backdown.errors import BackdownError
from backdown.manifest import VERSIONS, Checksum
from backdown.paths import (
    ABANDONED_OWN_SECONDS,
    ABANDONED_SECONDS,
    META_DIR,
    TEMP_PREFIX,
    TEMP_SUFFIX,
    local_path,
    rjoin,
    temp_name,
    temp_owner,
)
from backdown.plan import Action, FileInfo, Item, Plan, Tree
from backdown.progress import Subscriber
from backdown.report import Failure
from backdown.smb import (
    MAX_IO,
    WRITE_WINDOW,
    LocalFileError,
    Put,
    PutJob,
    RemoteExists,
    RemoteFileError,
    RemoteNotFound,
    Session,
)
from backdown.transfer import Meter, SourceReader

# A file's time on the share as this run set it (FILETIME: 100 ns ticks) against its local
# one: within this, the same moment.
SAME_TIME = 1e-6


def file_sha256(path: str, limit: int | None = None) -> str:
    """SHA-256 of a local file (or of its first `limit` bytes)."""
    h = hashlib.sha256()
    remaining = limit
    with open(path, "rb") as f:
        while remaining is None or remaining > 0:
            chunk = f.read(1 << 20 if remaining is None else min(1 << 20, remaining))
            if not chunk:
                break
            h.update(chunk)
            if remaining is not None:
                remaining -= len(chunk)
    return h.hexdigest()


@dataclass
class Uploader:
    """Puts files from a local folder into a remote folder, one call per file per worker.

    Paths in the plan are local names; `stored` gives the path on the share of each one
    stored under another name (share_names; a path not in it is stored as it is), and
    `moved` the folders renamed on the share during this run.
    """

    local_root: str
    remote_root: str
    stamp: str  # this run's versions folder name
    partials: dict[str, int]  # remote temporaries found by the walk
    meter: Meter
    subscriber: Subscriber
    cancel: threading.Event
    owner: str  # this computer's and profile's tag in temporaries' names
    stored: dict[str, str] = field(default_factory=dict)  # only paths stored otherwise
    checksum: bool = False
    checksums: dict[str, Checksum] = field(default_factory=dict)
    versioned: int = 0
    resumed: int = 0
    moved: list[tuple[str, str]] = field(default_factory=list)  # (old, new) stored folders
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _made: set[str] = field(default_factory=set)

    def remote(self, rel: str) -> str:
        """Where a local path goes on the share."""
        return rjoin(self.remote_root, self.stored.get(rel, rel))

    def current(self, info: FileInfo) -> str:
        """Where a file found on the share is now (its folder may have been renamed)."""
        stored = info.stored or info.path
        for old, new in self.moved:
            if stored.startswith(old + "/"):
                stored = new + stored[len(old) :]
        return rjoin(self.remote_root, stored)

    def temp_for(self, src: FileInfo) -> tuple[str, str]:
        """A file's temporary: its key among the walk's partials, and its path on the share."""
        key = temp_name(src.path, src, self.owner)
        folder = posixpath.dirname(self.stored.get(src.path, src.path))
        return key, rjoin(self.remote_root, folder, posixpath.basename(key))

    def version_path(self, remote: str) -> str:
        """Where this run keeps what was at `remote` (a path on the share)."""
        rel = remote[len(self.remote_root) :].lstrip("/") if self.remote_root else remote
        return rjoin(self.remote_root, META_DIR, VERSIONS, self.stamp, rel)

    def ensure_dir(self, session: Session, path: str) -> None:
        """makedirs, remembering what exists so each folder costs one round trip per run."""
        with self._lock:
            if path in self._made:
                return
        session.makedirs(path)
        with self._lock:
            self._made.add(path)

    def set_aside(self, session: Session, remote: str) -> None:
        """Move a file or folder into this run's versions area."""
        target = self.version_path(remote)
        self.ensure_dir(session, posixpath.dirname(target))
        session.rename(remote, target)

    def move(self, session: Session, old: str, new: str) -> None:
        """Rename on the share, also when only the case changes on a share that ignores it.

        Windows and Samba rename 'Report' to 'report' directly (through a temporary name
        Samba's name cache would bring the old spelling back); a server that refuses says
        the name exists, and then the rename goes through a temporary name.
        """
        try:
            session.rename(old, new)
            return
        except RemoteExists:
            if old.casefold() != new.casefold():
                raise
        digest = hashlib.sha256(new.encode()).hexdigest()[:16]
        middle = rjoin(posixpath.dirname(new), f"{TEMP_PREFIX}{self.owner}.mv{digest}{TEMP_SUFFIX}")
        session.rename_pair((old, middle), (middle, new))

    def upload(self, session: Session, item: Item, attempt: int) -> None:
        """Copy one file: temporary, set its time, version the old one, rename into place."""
        src = item.src
        assert src is not None
        source = local_path(self.local_root, src.path)
        temp_rel, temp = self.temp_for(src)
        target = self.remote(src.path)
        offset = self._resume_offset(session, temp_rel, temp, src, attempt)
        self.subscriber.on_file_start(src.path, src.size)
        # A new file is renamed into place by put_file itself, as soon as every byte is
        # acknowledged; an existing one is first moved into the versions area.
        direct = item.action is Action.NEW
        try:
            sha, placed = self._send(session, source, temp, src, offset,
                                     target if direct else None)  # fmt: skip
            if not placed and not (direct and self._already_there(session, temp, target, src)):
                current = self.current(item.dst) if item.dst is not None else target
                self._put_in_place(session, temp, current, target)
        except RemoteFileError as exc:
            raise _named(exc, temp, target) from None
        self._hashed(src, sha)

    def _already_there(self, session: Session, temp: str, target: str, src: FileInfo) -> bool:
        """A new file found in place with its size and time: this run's own copy, renamed
        in before a lost connection hid the reply (the retry sees it), or the same file
        from another computer. Drop the temporary rather than keep the file's twin as an
        old version."""
        entry = session.stat(target)
        if entry is None or entry.is_dir or entry.size != src.size:
            return False
        if abs(entry.mtime - src.mtime) > SAME_TIME:
            return False
        try:
            session.remove(temp)
        except RemoteFileError:
            pass  # the stale temporaries' clean-up takes it later
        return True

    def batchable(self, item: Item) -> bool:
        """A new file small enough for one write, with no temporary to continue: it may go
        in a batch (upload_many)."""
        src = item.src
        return (
            item.action is Action.NEW
            and src is not None
            and src.size <= MAX_IO
            and temp_name(src.path, src, self.owner) not in self.partials
        )

    @staticmethod
    def size_of(item: Item) -> int:
        return item.src.size if item.src is not None else 0

    def upload_many(
        self, session: Session, items: list[Item], done: Callable[[Item, str | None], None]
    ) -> None:
        """Copy new small files (batchable) with their requests in flight together
        (put_files), each by upload's rules: written to its temporary, renamed into place
        once every byte is acknowledged. (A retry goes through upload, one at a time.)"""
        taken: list[_Sending] = []  # a file appeared under the real name since the walk
        sending: list[_Sending] = []
        for item in items:
            try:
                sending.append(self._sending(item))
            except LocalFileError as exc:
                done(item, str(exc))

        def finished(k: int, error: LocalFileError | RemoteFileError | None) -> None:
            one = sending[k]
            if isinstance(error, RemoteExists):
                taken.append(one)
            elif error is not None:
                done(one.item, str(_named(error, one.put.path, one.target)))
            else:
                self._hashed(one.src, one.sha())
                done(one.item, None)

        session.put_files([one.job for one in sending], finished, self.meter.add)
        for one in taken:
            try:
                if not self._already_there(session, one.put.path, one.target, one.src):
                    self._put_in_place(session, one.put.path, one.target, one.target)
            except RemoteFileError as exc:
                done(one.item, str(_named(exc, one.put.path, one.target)))
                continue
            self._hashed(one.src, one.sha())
            done(one.item, None)

    def _sending(self, item: Item) -> _Sending:
        """A batchable file read for put_files (whole, and closed at once: a batch holds
        no open files), its start told to the subscriber."""
        src = item.src
        assert src is not None
        source = local_path(self.local_root, src.path)
        self.subscriber.on_file_start(src.path, src.size)
        hasher = hashlib.sha256() if self.checksum else None
        with _open_source(source) as f:
            # One byte more than the walk saw: put_files refuses a file that grew.
            data = SourceReader(f, self.cancel, hasher).read(src.size + 1)
        target = self.remote(src.path)
        put = Put(self.temp_for(src)[1], 0, src.size, src.mtime, target)
        job = PutJob(put, io.BytesIO(data), partial(_unchanged_since_walk, source, src))
        return _Sending(item, src, target, put, hasher, job)

    def _hashed(self, src: FileInfo, sha: str | None) -> None:
        """Keep a copied file's checksum (with --checksum) for the manifest."""
        if sha is not None:
            with self._lock:
                self.checksums[src.path] = Checksum(src.size, src.mtime, sha)

    def rename_to_wanted(self, session: Session, item: Item) -> bool:
        """An unchanged file stored under another name than wanted (its case changed
        locally, or BackDown 0.1.0 stored it as it was): rename it. Returns whether a
        rename was needed."""
        assert item.dst is not None
        if not self.moved and (item.dst.stored or item.dst.path) == self.stored.get(
            item.path, item.path
        ):
            return False  # the usual case, decided without building either path
        current, wanted = self.current(item.dst), self.remote(item.path)
        if current == wanted:
            return False
        self.move(session, current, wanted)
        return True

    def _resume_offset(
        self, session: Session, temp_rel: str, temp: str, src: FileInfo, attempt: int
    ) -> int:
        """Where to continue a temporary: its size, less any tail that differs from the source.

        Writes beyond the server's acknowledged prefix may be lost or have landed out of
        order (a crash, a full share), leaving zeros below the temporary's end. The session
        sends a write only within WRITE_WINDOW of that prefix, so only the temporary's last
        WRITE_WINDOW bytes can be wrong: they are read back and compared with the source,
        and the copy continues from the first byte that differs.
        """
        if attempt == 0:
            size = self.partials.get(temp_rel)
        else:  # a retry: what the failed try left behind
            entry = session.stat(temp)
            size = entry.size if entry else None
        if not size or size > src.size:
            return 0
        start = max(0, size - WRITE_WINDOW)
        held = io.BytesIO()
        try:
            session.get_file(temp, held, start, None, end=size)
            with open(local_path(self.local_root, src.path), "rb") as f:
                f.seek(start)
                source = f.read(size - start)
        except (RemoteFileError, OSError):
            return 0  # gone or changed meanwhile, or unreadable here: start again
        good = start + _common_prefix(held.getvalue(), source)
        if good > 0:
            with self._lock:
                self.resumed += 1
        return good

    def _send(
        self,
        session: Session,
        source: str,
        temp: str,
        src: FileInfo,
        offset: int,
        rename_to: str | None,
    ) -> tuple[str | None, bool]:
        """Send the file to temp (and rename it to rename_to); returns (sha256, renamed)."""
        hasher = hashlib.sha256() if self.checksum else None
        with _open_source(source) as f:
            if offset:
                if hasher is not None:
                    _hash_prefix(f, hasher, offset)
                f.seek(offset)
            reader = SourceReader(f, self.cancel, hasher)
            try:
                session.put_file(
                    Put(temp, offset, src.size, src.mtime, rename_to),
                    reader,
                    before_finish=lambda: _unchanged_since_walk(source, src),
                    on_sent=self.meter.add,
                )
            except RemoteExists:
                if rename_to is None:
                    raise
                renamed = False  # a file appeared under the real name since the walk
            else:
                renamed = rename_to is not None
        return (hasher.hexdigest() if hasher is not None else None), renamed

    def _put_in_place(self, session: Session, temp: str, current: str, target: str) -> None:
        """Move the file now at `current` into the versions area and the new one from `temp`
        to `target`, in one round trip: at no moment is the old content gone, and the real
        name is empty only for as long as the server takes between two renames."""
        keep = self.version_path(current)
        self.ensure_dir(session, posixpath.dirname(keep))
        try:
            moved = session.rename_pair((current, keep), (temp, target))
        except RemoteFileError:
            # The new file did not go in (a file appeared under its name since the walk, or
            # it is in use): put the old one back rather than leave the name empty.
            if session.stat(keep) is not None and session.stat(current) is None:
                session.rename(keep, current)
            raise
        if moved:
            with self._lock:
                self.versioned += 1


@dataclass
class _Sending:
    """A file of upload_many on its way."""

    item: Item
    src: FileInfo
    target: str  # its path on the share
    put: Put  # put.path: its temporary
    hasher: hashlib._Hash | None
    job: PutJob

    def sha(self) -> str | None:
        return self.hasher.hexdigest() if self.hasher is not None else None


def _named(exc: RemoteFileError | LocalFileError, temp: str, target: str) -> BackdownError:
    """The error naming the user's file, not our temporary."""
    return type(exc)(str(exc).replace(f"'{temp}'", f"'{target}'"))


def _open_source(source: str) -> BinaryIO:
    try:
        return open(source, "rb")  # noqa: SIM115 - the caller closes it
    except OSError as exc:
        raise LocalFileError(f"cannot read local file: {exc.strerror or exc}") from None


def _unchanged_since_walk(source: str, src: FileInfo) -> None:
    """Refuse to finish a copy whose source changed while it was read."""
    try:
        st = os.stat(source)
    except OSError as exc:
        raise LocalFileError(f"cannot read local file: {exc.strerror or exc}") from None
    if st.st_size != src.size or st.st_mtime_ns / 1e9 != src.mtime:
        raise LocalFileError("changed while it was being copied; it will go on the next run")


def _common_prefix(a: bytes, b: bytes) -> int:
    """How many leading bytes a and b share."""
    n = min(len(a), len(b))
    block = 4096
    at = 0
    while at < n and a[at : at + block] == b[at : at + block]:
        at += block
    while at < n and a[at] == b[at]:
        at += 1
    return min(at, n)


def _hash_prefix(f: BinaryIO, hasher: hashlib._Hash, length: int) -> None:
    remaining = length
    while remaining > 0:
        chunk = f.read(min(1 << 20, remaining))
        if not chunk:
            break
        hasher.update(chunk)
        remaining -= len(chunk)


def create_folders(session: Session, uploader: Uploader, plan: Plan) -> tuple[int, list[Failure]]:
    """Create the plan's missing remote folders, parents first (empty ones too)."""
    created, failures = 0, []
    failed: list[str] = []
    for rel in plan.mkdirs:
        if any(rel.startswith(f + "/") for f in failed):
            continue
        try:
            uploader.ensure_dir(session, uploader.remote(rel))
            created += 1
        except RemoteFileError as exc:
            failed.append(rel)
            failures.append(Failure(rel + "/", str(exc)))
    return created, failures


def rename_folders(
    session: Session, uploader: Uploader, dst: Tree, local_dirs: set[str]
) -> tuple[int, list[Failure]]:
    """Rename folders stored under another name than wanted (the case changed locally, or
    a name BackDown 0.1.0 stored as it was), parents first."""
    count, failures = 0, []
    for rel in sorted(dst.dirs & local_dirs, key=lambda p: (p.count("/"), p)):
        info = FileInfo(rel, 0, 0.0, stored=dst.stored_dirs.get(rel, rel))
        current, wanted = uploader.current(info), uploader.remote(rel)
        if current == wanted:
            continue
        try:
            uploader.move(session, current, wanted)
        except RemoteFileError as exc:
            failures.append(Failure(rel + "/", str(exc)))
            continue
        root = uploader.remote_root
        uploader.moved.append((current[len(root) :].lstrip("/"), wanted[len(root) :].lstrip("/")))
        count += 1
    return count, failures


def remove_extras(
    session: Session, uploader: Uploader, plan: Plan, dst: Tree
) -> tuple[int, list[Failure]]:
    """Mirror: move files and folders gone from the source into the versions area."""
    moved, failures = 0, []
    extras = [FileInfo(d, 0, 0.0, stored=dst.stored_dirs.get(d)) for d in plan.extra_dirs]
    extras += [i.dst for i in plan.by_action(Action.EXTRA) if i.dst is not None]
    for info in extras:
        rel = info.path
        try:
            uploader.set_aside(session, uploader.current(info))
        except RemoteNotFound:
            continue
        except RemoteFileError as exc:
            failures.append(Failure(rel, str(exc)))
            continue
        if rel in dst.dirs:
            moved += sum(1 for p in dst.files if p.startswith(rel + "/"))
        else:
            moved += 1
    return moved, failures


def remove_stale_partials(
    session: Session, uploader: Uploader, dst: Tree, keep: set[str], now: float
) -> None:
    """Delete temporaries no planned copy will continue and no one is writing: this
    profile's own (left by changed or deleted files) not written to for
    ABANDONED_OWN_SECONDS, anyone's for ABANDONED_SECONDS. Another computer's upload in
    progress is never touched."""
    for rel in dst.partials:
        if rel in keep:
            continue
        ours = temp_owner(rel) == uploader.owner
        idle = now - dst.partial_times.get(rel, now)
        if idle < (ABANDONED_OWN_SECONDS if ours else ABANDONED_SECONDS):
            continue
        folder = posixpath.dirname(rel)
        stored = dst.stored_dirs.get(folder, folder) if folder else ""
        try:
            session.remove(rjoin(uploader.remote_root, stored, posixpath.basename(rel)))
        except RemoteFileError:
            pass  # best effort: the next run tries again
