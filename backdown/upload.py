"""Carry out an upload (backup) plan on the share.

Each file goes to a temporary name in its folder and is then put in place. pysmb cannot
rename over an existing file, so an existing target is first moved into the versions area
(.backdown/versions/<UTC time>/<path>) and only then the new file renamed in: at no moment is
the old content gone. A temporary's name encodes the local file's size and time, so a later
run continues it only if the local file is unchanged since, and only from a point below
which the temporary is known to hold the source's bytes (see _resume_offset).
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import threading
from dataclasses import dataclass, field
from typing import BinaryIO

from backdown.filters import META_DIR, TEMP_PREFIX, TEMP_SUFFIX
from backdown.manifest import VERSIONS, Checksum
from backdown.plan import Action, FileInfo, Item, Plan, Tree
from backdown.progress import Subscriber
from backdown.smb import (
    WRITE_WINDOW,
    LocalFileError,
    RemoteExists,
    RemoteFileError,
    RemoteNotFound,
    SmbSession,
)
from backdown.transfer import Failure, Meter, SourceReader
from backdown.walk import rjoin


def temp_name(rel_path: str, info: FileInfo) -> str:
    """The temporary beside rel_path that holds a copy of this exact version of the file."""
    folder, name = posixpath.split(rel_path)
    key = f"{name}\0{info.size}\0{info.mtime:.6f}".encode()
    digest = hashlib.sha256(key).hexdigest()[:16]
    return posixpath.join(folder, f"{TEMP_PREFIX}{digest}{TEMP_SUFFIX}")


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


def local_path(root: str, rel: str) -> str:
    return os.path.join(root, *rel.split("/"))


@dataclass
class Uploader:
    """Puts files from a local folder into a remote folder, one call per file per worker."""

    local_root: str
    remote_root: str
    stamp: str  # this run's versions folder name
    partials: dict[str, int]  # remote temporaries found by the walk
    meter: Meter
    subscriber: Subscriber
    cancel: threading.Event
    checksum: bool = False
    checksums: dict[str, Checksum] = field(default_factory=dict)
    versioned: int = 0
    resumed: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _made: set[str] = field(default_factory=set)

    def version_path(self, rel: str) -> str:
        return rjoin(self.remote_root, META_DIR, VERSIONS, self.stamp, rel)

    def ensure_dir(self, session: SmbSession, path: str) -> None:
        """makedirs, remembering what exists so each folder costs one round trip per run."""
        with self._lock:
            if path in self._made:
                return
        session.makedirs(path)
        with self._lock:
            self._made.add(path)

    def set_aside(self, session: SmbSession, rel: str) -> None:
        """Move a file or folder into this run's versions area."""
        target = self.version_path(rel)
        self.ensure_dir(session, posixpath.dirname(target))
        session.rename(rjoin(self.remote_root, rel), target)

    def upload(self, session: SmbSession, item: Item, attempt: int) -> None:
        """Copy one file: temporary, set its time, version the old one, rename into place."""
        src = item.src
        assert src is not None
        source = local_path(self.local_root, src.path)
        temp_rel = temp_name(src.path, src)
        temp = rjoin(self.remote_root, temp_rel)
        target = rjoin(self.remote_root, src.path)
        offset = self._resume_offset(session, temp_rel, temp, src, attempt)
        self.subscriber.on_file_start(src.path, src.size)
        # A new file is renamed into place in the same exchange as its last write; an
        # existing one must first be moved into the versions area.
        direct = item.action is Action.NEW
        sha, placed = self._send(session, source, temp, src, offset, target if direct else None)
        if not placed:
            self._put_in_place(session, item, temp, target)
        if sha is not None:
            with self._lock:
                self.checksums[src.path] = Checksum(src.size, src.mtime, sha)

    def _resume_offset(
        self, session: SmbSession, temp_rel: str, temp: str, src: FileInfo, attempt: int
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
        session: SmbSession,
        source: str,
        temp: str,
        src: FileInfo,
        offset: int,
        rename_to: str | None,
    ) -> tuple[str | None, bool]:
        """Send the file to temp (and rename it to rename_to); returns (sha256, renamed)."""
        hasher = hashlib.sha256() if self.checksum else None
        try:
            f = open(source, "rb")  # noqa: SIM115 - closed by the with below
        except OSError as exc:
            raise LocalFileError(f"cannot read local file: {exc.strerror or exc}") from None
        with f:
            if offset:
                if hasher is not None:
                    _hash_prefix(f, hasher, offset)
                f.seek(offset)
            reader = SourceReader(f, self.cancel, hasher)
            try:
                session.put_file(
                    temp, reader, offset, src.size, src.mtime, rename_to,
                    before_finish=lambda: _unchanged_since_walk(source, src),
                    on_sent=self.meter.add,
                )  # fmt: skip
            except RemoteExists:
                if rename_to is None:
                    raise
                renamed = False  # a file appeared under the real name since the walk
            else:
                renamed = rename_to is not None
        return (hasher.hexdigest() if hasher is not None else None), renamed

    def _put_in_place(self, session: SmbSession, item: Item, temp: str, target: str) -> None:
        """Move the existing file into the versions area, then the new one into place."""
        moved = self._version_existing(session, item.path)
        try:
            session.rename(temp, target)
        except RemoteExists:
            # Someone put a file there since the walk: keep it as a version too.
            moved = self._version_existing(session, item.path) or moved
            session.rename(temp, target)
        except RemoteFileError:
            if moved:  # put the old file back rather than leave the name empty
                try:
                    session.rename(self.version_path(item.path), target)
                except RemoteFileError:
                    pass
            raise

    def _version_existing(self, session: SmbSession, rel: str) -> bool:
        try:
            self.set_aside(session, rel)
        except RemoteNotFound:
            return False  # gone since the walk: nothing to keep
        with self._lock:
            self.versioned += 1
        return True


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


def create_folders(
    session: SmbSession, uploader: Uploader, plan: Plan
) -> tuple[int, list[Failure]]:
    """Create the plan's missing remote folders, parents first (empty ones too)."""
    created, failures = 0, []
    failed: list[str] = []
    for rel in plan.mkdirs:
        if any(rel.startswith(f + "/") for f in failed):
            continue
        try:
            uploader.ensure_dir(session, rjoin(uploader.remote_root, rel))
            created += 1
        except RemoteFileError as exc:
            failed.append(rel)
            failures.append(Failure(rel + "/", str(exc)))
    return created, failures


def remove_extras(
    session: SmbSession, uploader: Uploader, plan: Plan, dst: Tree
) -> tuple[int, list[Failure]]:
    """Mirror: move files and folders gone from the source into the versions area."""
    moved, failures = 0, []
    for rel in [*plan.extra_dirs, *(i.path for i in plan.by_action(Action.EXTRA))]:
        try:
            uploader.set_aside(session, rel)
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
    session: SmbSession, remote_root: str, partials: dict[str, int], keep: set[str]
) -> None:
    """Delete temporaries no planned copy will continue (left by changed or deleted files)."""
    for rel in partials:
        if rel not in keep:
            try:
                session.remove(rjoin(remote_root, rel))
            except RemoteFileError:
                pass  # best effort: the next run tries again
