"""Where each file's content as of a snapshot lives now, and every stored copy of a file.

The share holds the current files and, under .backdown/versions/<UTC time>/<path>, every
file an upload replaced or a mirror removed (the time is when that happened). A snapshot
says what each file was (size, modification time) after a run. The copy that holds that
content is the current file if it still has that size and time, else the version that does:
the first one stored after the snapshot (that is when this content was replaced). When no
copy matches, the content is no longer kept (pruned), and the restore says so.

Pure: the engine walks the share and hands the trees in.
"""

from __future__ import annotations

import posixpath
import time
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, tzinfo
from datetime import time as clock
from typing import TypeVar

from backdown.errors import UsageError, quoted
from backdown.manifest import VERSIONS, parse_stamp
from backdown.paths import META_DIR
from backdown.plan import FileInfo, Tree
from backdown.snapshots import Snapshot, SnapshotRef

VERSIONS_PREFIX = f"{META_DIR}/{VERSIONS}"
T = TypeVar("T")


@dataclass(frozen=True)
class StoredCopy:
    """One stored copy of a file: the current one (stamp '') or a version."""

    stamp: str  # the version folder's name; '' for the current file
    replaced: float | None  # when it was replaced or removed (None: it is the current file)
    info: FileInfo  # path as the user knows it; stored = where it is, relative to the root

    @property
    def where(self) -> str:
        return "current" if not self.stamp else f"version {self.stamp}"


@dataclass
class VersionIndex:
    """Every version on the share, by path, oldest first."""

    by_path: dict[str, list[StoredCopy]] = field(default_factory=dict)

    @classmethod
    def from_tree(cls, versions: Tree) -> VersionIndex:
        """From the walk of .backdown/versions/: paths '<stamp>/<path>', stored likewise."""
        index = cls()
        for rel, info in versions.files.items():
            stamp, _, path = rel.partition("/")
            when = parse_stamp(stamp)
            if not path or when is None:
                continue  # not one of ours
            stored = f"{VERSIONS_PREFIX}/{info.stored or rel}"
            copy = StoredCopy(stamp, when, replace(info, path=path, stored=stored))
            index.by_path.setdefault(path, []).append(copy)
        for copies in index.by_path.values():
            copies.sort(key=lambda c: (c.replaced or 0.0, c.stamp))
        return index


@dataclass
class Resolution:
    """A snapshot's files as a tree to restore from, each pointing at the copy that holds
    its content, and the files whose content is no longer kept."""

    tree: Tree
    sources: dict[str, str]  # path -> "current" or "version <stamp>"
    missing: list[str]


def copies_of(path: str, current: Tree, index: VersionIndex) -> list[StoredCopy]:
    """Every stored copy of the file, newest first: the current file, then its versions."""
    found = [StoredCopy("", None, current.files[path])] if path in current.files else []
    return found + list(reversed(index.by_path.get(path, [])))


def resolve(snapshot: Snapshot, current: Tree, index: VersionIndex, window: float) -> Resolution:
    """Where each of the snapshot's files is kept now (see the module's docstring)."""
    tree = Tree(dirs=set(snapshot.dirs))
    sources: dict[str, str] = {}
    missing: list[str] = []
    for path, (size, mtime, sha) in sorted(snapshot.files.items()):
        copy = _holding(path, size, mtime, sha, snapshot.ref.time, current, index, window)
        if copy is None:
            missing.append(path)
            continue
        # Under the snapshot's path (a share that ignores case may hold it under another
        # case now), read from wherever the copy is stored.
        stored = copy.info.stored or copy.info.path
        tree.files[path] = replace(
            copy.info, path=path, stored=stored, size=size, sha256=sha or copy.info.sha256
        )
        sources[path] = copy.where
        parent = posixpath.dirname(path)
        while parent and parent not in tree.dirs:
            tree.dirs.add(parent)
            parent = posixpath.dirname(parent)
    return Resolution(tree, sources, missing)


def _folded(found: dict[str, T], path: str) -> T | None:
    """The entry whose path differs only in case: a share that ignores case keeps a file
    renamed only in case under its new name (the size and time still have to agree)."""
    wanted = path.casefold()
    return next((v for p, v in found.items() if p.casefold() == wanted), None)


def _holding(
    path: str,
    size: int,
    mtime: float,
    sha: str | None,
    taken: float,
    current: Tree,
    index: VersionIndex,
    window: float,
) -> StoredCopy | None:
    def same(info: FileInfo) -> bool:
        if info.sha256 and sha and info.sha256 != sha:
            return False  # the size and time agree, the recorded content does not
        return info.size == size and abs(info.mtime - mtime) <= window

    now = current.files.get(path) or _folded(current.files, path)
    if now is not None and same(now):
        return StoredCopy("", None, now)
    copies = index.by_path.get(path) or _folded(index.by_path, path) or []
    matches = [c for c in copies if same(c.info)]
    later = [c for c in matches if (c.replaced or 0.0) >= taken]
    if later:
        return later[0]  # replaced after the snapshot: it held this content at that time
    return matches[-1] if matches else None


def only(tree: Tree, paths: list[str], also: list[str] | None = None) -> Tree:
    """The part of a tree under the given files or folders; UsageError for a path neither
    the tree nor `also` (files the backup held whose content is gone) has."""
    picked = Tree()
    for wanted in paths:
        wanted = wanted.strip("/")
        hit = any(p == wanted or p.startswith(wanted + "/") for p in also or [])
        for path, info in tree.files.items():
            if path == wanted or path.startswith(wanted + "/"):
                picked.files[path] = info
                hit = True
        for folder in tree.dirs:
            if folder == wanted or folder.startswith(wanted + "/"):
                picked.dirs.add(folder)
                hit = True
        if not hit:
            raise UsageError(
                f"'{wanted}' is not in the backup at that time; 'backdown versions NAME "
                f"{wanted}' lists every copy kept, '--deleted' what was removed"
            )
    for path in list(picked.files):  # the folders leading to each file
        parent = posixpath.dirname(path)
        while parent and parent not in picked.dirs:
            picked.dirs.add(parent)
            parent = posixpath.dirname(parent)
    return picked


@dataclass(frozen=True)
class Deleted:
    path: str
    removed: float  # when it was moved into the versions area
    stamp: str
    size: int


def deleted(current: Tree, index: VersionIndex, folder: str = "") -> list[Deleted]:
    """Files kept as versions that the share no longer holds, newest removal first."""
    prefix = folder.strip("/")
    found = []
    for path, copies in index.by_path.items():
        if path in current.files or (prefix and not path.startswith(prefix + "/")):
            continue
        last = copies[-1]
        found.append(Deleted(path, last.replaced or 0.0, last.stamp, last.info.size))
    return sorted(found, key=lambda d: (-d.removed, d.path))


# --------------------------------------------------------------------------- --as-of


def pick_snapshot(
    refs: list[SnapshotRef], as_of: str, now: float, tz: tzinfo | None
) -> list[SnapshotRef]:
    """The snapshots to try for --as-of, best first: the newest taken at or before that
    moment, then older ones (a damaged snapshot is skipped for the next older one)."""
    by_id = [r for r in refs if r.id == as_of.strip() or r.name == as_of.strip()]
    if by_id:
        return by_id
    moment = parse_moment(as_of, now, tz)
    usable = [r for r in refs if r.time <= moment]
    if not usable:
        first = time.strftime("%Y-%m-%d %H:%M", time.localtime(refs[0].time)) if refs else None
        raise UsageError(
            f"no backup as old as {quoted(as_of)}: "
            + (f"the first snapshot is from {first}" if first else "no snapshot yet")
        )
    return sorted(usable, key=lambda r: r.time, reverse=True)


def parse_moment(text: str, now: float, tz: tzinfo | None) -> float:
    """'2026-11-28 17:00', '2026-11-28' (its end), 'yesterday' (its end), 'today', '3d',
    '12h', '90m' ago -> a POSIX time. Local time unless tz is given."""
    raw = text.strip().lower()
    local_now = datetime.fromtimestamp(now, tz)
    if raw in ("now", "today"):
        return now
    if raw == "yesterday":
        day = (local_now - timedelta(days=1)).date()
        return _end_of(day, tz)
    if raw and raw[-1] in "mhdw" and raw[:-1].isdigit():
        units = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
        return now - int(raw[:-1]) * units[raw[-1]]
    for form in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d"):
        try:
            parsed = datetime.strptime(raw.upper() if "T" in form else raw, form)
            if form == "%Y-%m-%d":
                return _end_of(parsed.date(), tz)
            return _timestamp(parsed, tz)
        except (ValueError, OverflowError, OSError):
            continue  # not this form, or a year no clock can hold
    raise UsageError(
        f"--as-of {quoted(text)} is not a time: give '2026-11-28 17:00', a date, 'yesterday', "
        "an age like 3d or 12h, or a snapshot id from 'backdown snapshots NAME'"
    )


def _end_of(day: date, tz: tzinfo | None) -> float:
    """The last moment of the day: just before the next midnight (a snapshot taken at
    23:59:59.7 still belongs to it)."""
    midnight = datetime.combine(day + timedelta(days=1), clock(0, 0))
    return _timestamp(midnight, tz) - 1e-3


def _timestamp(naive: datetime, tz: tzinfo | None) -> float:
    return (naive.replace(tzinfo=tz) if tz else naive).timestamp()
