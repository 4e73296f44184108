"""Retention: which snapshots to keep, and which stored versions may be deleted.

Snapshots are counted as restic's `forget` counts them (internal/restic/snapshot_policy.go,
and borg's `prune` alike): walking newest first, keep-daily N keeps the newest snapshot of
each of the last N calendar days that have one (gaps do not use up the count); weekly
counts ISO weeks, monthly calendar months; keep-last N keeps the N newest; keep-within D
keeps every snapshot less than D seconds older than the newest one. A snapshot kept by any
rule is kept, and the newest is always kept.

Versions (.backdown/versions/<stamp>/<path>) are then kept while a kept snapshot needs them,
while they are young, and while they are the last copy of a file deleted here.

Pure: no I/O and no clock of its own. The caller lists, reads and deletes. It takes
snapshots.SnapshotRef and snapshots.Snapshot by their shape (RefLike, SnapshotLike) rather
than importing them: snapshots.py reads and writes the share, which a part must not import.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, tzinfo
from typing import Generic, Protocol, TypeVar

from backdown.errors import UsageError

DAY = 86400.0

# The order reasons are listed in, whatever order the rules matched in.
REASONS = ("newest", "last", "daily", "weekly", "monthly", "within", "no policy")


class RefLike(Protocol):
    """What retention reads of a snapshots.SnapshotRef."""

    @property
    def id(self) -> str: ...
    @property
    def time(self) -> float: ...
    @property
    def computer(self) -> str: ...


class SnapshotLike(Protocol):
    """What retention reads of a snapshots.Snapshot."""

    @property
    def ref(self) -> RefLike: ...
    @property
    def files(self) -> Mapping[str, tuple[int, float, str | None]]: ...


Ref = TypeVar("Ref", bound=RefLike)


@dataclass(frozen=True)
class Policy:
    """How many snapshots each rule keeps; 0 turns a rule off."""

    keep_last: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    keep_within: float = 0.0  # seconds before the newest snapshot; 0 = off

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            # `not >= 0` also refuses NaN, which every comparison would otherwise pass over.
            if not value >= 0:
                raise UsageError(f"{f.name} must be 0 or more, not {value}")

    @property
    def empty(self) -> bool:
        """True when no rule is set: then every snapshot is kept."""
        return not (
            self.keep_last
            or self.keep_daily
            or self.keep_weekly
            or self.keep_monthly
            or self.keep_within
        )


@dataclass(frozen=True)
class Decision(Generic[Ref]):
    """Which snapshots stay and which go, each list oldest first."""

    keep: list[Ref]
    forget: list[Ref]
    reasons: dict[str, list[str]]  # snapshot id -> why it is kept (kept ones only)


Bucket = Callable[[datetime], Hashable]


def _day(when: datetime) -> Hashable:
    return when.date()


def _iso_week(when: datetime) -> Hashable:
    # The ISO year, not the calendar one: 2025-12-29 belongs to 2026-W01 with 2026-01-02.
    year, week, _ = when.isocalendar()
    return (year, week)


def _month(when: datetime) -> Hashable:
    return (when.year, when.month)


def _newest_first(refs: Iterable[Ref]) -> list[Ref]:
    return sorted(refs, key=lambda r: (r.time, r.computer, r.id), reverse=True)


def _count_buckets(
    ordered: list[Ref], count: int, bucket: Bucket, tz: tzinfo | None
) -> dict[int, str]:
    """Index (into `ordered`, newest first) -> reason prefix ("" or "oldest ") for the
    snapshots one counted rule keeps: the newest of each of the first `count` buckets.
    Like restic (0.17 on), when the count is not used up by then, the oldest snapshot is
    kept too, so a young folder keeps its first state instead of losing it to a rule not
    yet filled."""
    kept: dict[int, str] = {}
    last: Hashable = None
    for index, ref in enumerate(ordered):
        if count <= 0:
            break
        value = bucket(datetime.fromtimestamp(ref.time, tz))
        if value != last:
            kept[index] = ""
        elif index == len(ordered) - 1:
            kept[index] = "oldest "
        else:
            continue
        last = value
        count -= 1
    return kept


def _within_reference(ordered: list[Ref], now: float | None) -> float:
    """The time keep-within counts back from: the newest snapshot, but (as restic does) not
    one dated after `now`, so one computer with its clock years ahead cannot age out all
    the others."""
    if now is not None:
        for ref in ordered:
            if ref.time <= now:
                return ref.time
    return ordered[0].time


def decide(
    refs: list[Ref],
    policy: Policy,
    tz: tzinfo | None = None,
    *,
    now: float | None = None,
) -> Decision[Ref]:
    """Which snapshots the policy keeps and which it forgets, with the reasons for each kept
    one. Days, weeks and months are those of `tz` (None: this computer's zone). keep-within
    counts back from the newest snapshot, not from `now`: a folder whose backups stopped
    keeps its last stretch whole, and the answer depends on the snapshots alone. `now`, when
    given, only keeps a snapshot dated in the future from being that reference."""
    ordered = _newest_first(refs)
    if not ordered:
        return Decision([], [], {})
    matched: list[set[str]] = [set() for _ in ordered]
    matched[0].add("newest")
    if policy.empty:
        for reasons in matched:
            reasons.add("no policy")
    for index in range(min(policy.keep_last, len(ordered))):
        matched[index].add("last")
    rules: tuple[tuple[int, Bucket, str], ...] = (
        (policy.keep_daily, _day, "daily"),
        (policy.keep_weekly, _iso_week, "weekly"),
        (policy.keep_monthly, _month, "monthly"),
    )
    for count, bucket, name in rules:
        for index, prefix in _count_buckets(ordered, count, bucket, tz).items():
            matched[index].add(prefix + name)
    if policy.keep_within > 0:
        since = _within_reference(ordered, now) - policy.keep_within
        for index, ref in enumerate(ordered):
            if ref.time > since:
                matched[index].add("within")
    keep: list[Ref] = []
    forget: list[Ref] = []
    why: dict[str, list[str]] = {}
    for ref, reasons in reversed(list(zip(ordered, matched, strict=True))):
        if reasons:
            keep.append(ref)
            why.setdefault(ref.id, []).extend(sorted(reasons, key=_reason_order))
        else:
            forget.append(ref)
    return Decision(keep, forget, why)


def _reason_order(reason: str) -> tuple[int, str]:
    return (REASONS.index(reason.removeprefix("oldest ")), reason)


@dataclass(frozen=True)
class VersionFile:
    """One file in the versions area."""

    stamp: str  # the version folder's name
    time: float  # parse_stamp(stamp): when the run that moved it aside ran
    path: str  # the file's path (decoded, relative to the backup root)
    size: int
    mtime: float


def _same(size: int, mtime: float, other_size: int, other_mtime: float, window: float) -> bool:
    # The window: shares keep times coarser than local disks (FAT: 2 s).
    return size == other_size and abs(mtime - other_mtime) <= window


def _copy_for(
    candidates: list[VersionFile], size: int, mtime: float, when: float, window: float
) -> VersionFile | None:
    """The stored copy of content (size, mtime) that a snapshot taken at `when` points to."""
    matches = [v for v in candidates if _same(v.size, v.mtime, size, mtime, window)]
    # The content a snapshot saw was moved aside by the first run after it that replaced or
    # removed it. A stamp equal to the snapshot's is its own run's, which moved aside what
    # was there BEFORE it: so "after" is strict.
    after = [v for v in matches if v.time > when]
    if after:
        return min(after, key=lambda v: (v.time, v.stamp))
    if matches:  # clocks disagreed; the latest copy before is the best guess
        return max(matches, key=lambda v: (v.time, v.stamp))
    return None


def needed_versions(
    kept: Sequence[SnapshotLike],
    versions: list[VersionFile],
    current: dict[str, tuple[int, float]],
    window: float,
) -> set[tuple[str, str]]:
    """(stamp, path) of every stored version some kept snapshot needs: for each file of a
    kept snapshot that the current file on the share (current[path] = (size, mtime)) does
    not hold (same size, mtimes at most `window` apart), the version of that path with the
    same size and mtime (within `window`); of several, the one with the earliest stamp after
    the snapshot's time, else the latest before it. These must never be pruned."""
    by_path: dict[str, list[VersionFile]] = {}
    for version in versions:
        by_path.setdefault(version.path, []).append(version)
    needed: set[tuple[str, str]] = set()
    for snapshot in kept:
        for path, (size, mtime, _sha) in snapshot.files.items():
            candidates = by_path.get(path)
            if not candidates:
                continue
            now_there = current.get(path)
            if now_there is not None and _same(*now_there, size, mtime, window):
                continue
            copy = _copy_for(candidates, size, mtime, snapshot.ref.time, window)
            if copy is not None:
                needed.add((copy.stamp, copy.path))
    return needed


def last_copies(
    versions: list[VersionFile], current: dict[str, tuple[int, float]] | None
) -> set[tuple[str, str]]:
    """(stamp, path) of the newest stored version of each path that has no current file on
    the share (with current None, unknown: of every path). That version is what the file
    held when it was deleted here, and nothing else holds it."""
    newest: dict[str, VersionFile] = {}
    for version in versions:
        if current is not None and version.path in current:
            continue
        best = newest.get(version.path)
        if best is None or (version.time, version.stamp) > (best.time, best.stamp):
            newest[version.path] = version
    return {(v.stamp, v.path) for v in newest.values()}


def prunable_versions(
    versions: list[VersionFile],
    needed: set[tuple[str, str]],
    now: float,
    keep_days: int,
    tripped: bool = False,
    *,
    current: dict[str, tuple[int, float]] | None = None,
) -> list[VersionFile]:
    """The versions that may be deleted, in the order given: older than keep_days (0 keeps
    all), not needed by a kept snapshot, and not the last copy of anything. Nothing while
    `tripped` (the ransomware tripwire: what is on the share now may be the damage).

    "The last copy of anything" is read as: the newest version of a path whose current file
    is gone (see last_copies). Older versions of a file, deleted or not, are its history
    and age out; its last content does not, so a file deleted here stays restorable for as
    long as the versions area exists. `current` is what the share holds now
    (path -> (size, mtime)); without it no path is known to be current, so the newest
    version of every path is kept: more kept, never less."""
    if tripped or keep_days <= 0:
        return []
    cutoff = now - keep_days * DAY
    spared = needed | last_copies(versions, current)
    # Strictly older, as prune_versions counts: a version exactly keep_days old stays.
    return [v for v in versions if v.time < cutoff and (v.stamp, v.path) not in spared]
