"""Carry out a download (restore) plan into a local folder.

Each file is written to a temporary beside its target, given the server's time and then
os.replace()d into place, so a reader never sees half a file under the real name. A local
file that differs is set aside under <target>/.backdown-replaced/<UTC time>/<path> unless
--overwrite. Names from the server were checked by the walk; every path is checked again to
stay inside the target folder.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, field

from backdown.errors import BackdownError
from backdown.paths import (
    ABANDONED_SECONDS,
    REPLACED_DIR,
    local_path,
    rjoin,
    temp_name,
    temp_owner,
)
from backdown.plan import Action, Item, Plan
from backdown.progress import Subscriber
from backdown.report import Failure
from backdown.smb import LocalFileError, RemoteFileError, Session
from backdown.transfer import Meter, MeteredWriter


class UnsafePath(RemoteFileError):
    """A server-supplied path would land outside the target folder."""


def inside(root_real: str, folder: str) -> bool:
    """Whether a folder, resolved through symlinks, lies inside root_real."""
    real = os.path.realpath(folder)
    return real == root_real or real.startswith(root_real + os.sep)


@dataclass
class Downloader:
    """Puts files from a remote folder into a local folder, one call per file per worker."""

    target_root: str
    remote_root: str
    stamp: str
    partials: dict[str, int]  # local temporaries found by the walk
    meter: Meter
    subscriber: Subscriber
    cancel: threading.Event
    owner: str  # this computer's and profile's tag in temporaries' names
    overwrite: bool = False
    set_aside_count: int = 0
    resumed: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _safe_folders: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._root_real = os.path.realpath(self.target_root)

    def checked_path(self, rel: str) -> str:
        """The local path for rel, refused if its folder resolves outside the target."""
        path = local_path(self.target_root, rel)
        folder = os.path.dirname(path)
        if folder not in self._safe_folders:  # one realpath per folder, not per file
            if not inside(self._root_real, folder):
                raise UnsafePath("refused: this path would be written outside the target folder")
            with self._lock:
                self._safe_folders.add(folder)
        return path

    def download(self, session: Session, item: Item, attempt: int) -> None:
        src = item.src
        assert src is not None
        dest = self.checked_path(src.path)
        temp_rel = temp_name(src.path, src, self.owner)
        temp = self.checked_path(temp_rel)
        # The walk saw what earlier runs left; a retry looks at what the failed try left.
        found = self.partials.get(temp_rel, 0) if attempt == 0 else _partial_size(temp)
        offset = found if found <= src.size else 0
        if offset:
            with self._lock:
                self.resumed += 1
        self.subscriber.on_file_start(src.path, src.size)
        try:
            with open(temp, "ab" if offset else "wb") as f:
                writer = MeteredWriter(f, self.meter, self.cancel)
                hashed = _Hashing(writer, temp, offset) if src.sha256 else None
                session.get_file(
                    rjoin(self.remote_root, src.stored or src.path),
                    hashed or writer,
                    offset,
                    src.size,
                )
                f.flush()
                if os.fstat(f.fileno()).st_size != src.size:
                    raise RemoteFileError("changed on the server during the restore; run again")
                if hashed is not None and hashed.hexdigest() != src.sha256:
                    # Never a wrong file under the right name: the copy found for this
                    # content (by size and time) holds something else.
                    os.remove(temp)
                    raise RemoteFileError(
                        "the stored copy does not hold the content recorded for it (its "
                        "SHA-256 differs); nothing was written"
                    )
                mtime_ns = int(src.mtime * 1e9)
                os.utime(f.fileno(), ns=(mtime_ns, mtime_ns))
                # On disk before it takes the real name: after a power cut the name holds the
                # whole new file or the old one, never an empty or partial one.
                os.fsync(f.fileno())
            # The walk does not list symbolic links, so a NEW file may still find something
            # at dest: that is kept too, never silently replaced.
            if not self.overwrite and (item.action is Action.CHANGED or os.path.lexists(dest)):
                self._set_aside(src.path, dest)
            os.replace(temp, dest)
        except OSError as exc:
            raise LocalFileError(f"cannot write local file: {exc.strerror or exc}") from None

    def _set_aside(self, rel: str, dest: str) -> None:
        if not os.path.lexists(dest):
            return
        keep = local_path(os.path.join(self.target_root, REPLACED_DIR, self.stamp), rel)
        os.makedirs(os.path.dirname(keep), exist_ok=True)
        os.replace(dest, keep)
        with self._lock:
            self.set_aside_count += 1


class _Hashing:
    """Passes writes on and hashes them (and what a resumed temporary already holds)."""

    def __init__(self, inner: MeteredWriter, temp: str, offset: int) -> None:
        self.inner = inner
        self.digest = hashlib.sha256()
        if offset:
            with open(temp, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    self.digest.update(block)

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.inner.write(data)

    def hexdigest(self) -> str:
        return self.digest.hexdigest()


def _partial_size(temp: str) -> int:
    """How much of a temporary is on disk (0 if none)."""
    try:
        return os.path.getsize(temp)
    except OSError:
        return 0


def create_local_folders(downloader: Downloader, plan: Plan) -> tuple[int, list[Failure]]:
    """Create the target and the plan's missing local folders (empty ones too)."""
    created, failures = 0, []
    try:
        os.makedirs(downloader.target_root, exist_ok=True)
    except OSError as exc:
        raise BackdownError(
            f"cannot create the target folder {downloader.target_root}: {exc.strerror}; "
            "choose another with --to"
        ) from None
    for rel in plan.mkdirs:
        try:
            os.makedirs(downloader.checked_path(rel), exist_ok=True)
            created += 1
        except (OSError, UnsafePath) as exc:
            failures.append(Failure(rel + "/", getattr(exc, "strerror", None) or str(exc)))
    return created, failures


def remove_stale_partials(
    target_root: str, partials: dict[str, int], keep: set[str], owner: str, now: float
) -> None:
    """Delete local temporaries no planned copy continues: this profile's own, and any
    other's left alone for ABANDONED_SECONDS (another profile may be restoring here)."""
    for rel in partials:
        if rel in keep:
            continue
        path = local_path(target_root, rel)
        try:
            if temp_owner(rel) != owner and now - os.path.getmtime(path) < ABANDONED_SECONDS:
                continue
            os.remove(path)
        except OSError:
            pass
