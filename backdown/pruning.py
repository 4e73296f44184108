"""Pruning what the share keeps: snapshots by the profile's retention rules, and stored
versions that are old, needed by no kept snapshot, and not the last copy of anything
(retention.py holds the rules; this module finds what is there and deletes).

The policy: every snapshot of the last keep_versions_days (counted back from the newest,
as restic's --keep-within does), plus the newest of each of the last keep_daily days,
keep_weekly weeks and keep_monthly months that have one. keep_versions_days 0 and no rule:
everything is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from backdown import point_in_time, snapshots
from backdown.filters import PathFilter
from backdown.manifest import VERSIONS, parse_stamp
from backdown.paths import META_DIR, rjoin
from backdown.plan import Tree
from backdown.profile import Profile
from backdown.retention import (
    Policy,
    VersionFile,
    decide,
    last_copies,
    needed_versions,
    prunable_versions,
)
from backdown.smb import RemoteFileError, RemoteNotFound, Session
from backdown.walk import walk_remote

DAY = 86400


def policy_for(profile: Profile) -> Policy:
    """The snapshots to keep. keep_versions_days 0 means keep everything: the other rules
    only ever add to what is kept, so with it there is nothing to forget."""
    if profile.keep_versions_days <= 0:
        return Policy()  # empty: every snapshot kept
    return Policy(
        # The one before the newest too: a laptop back after longer than keep_versions_days
        # away still has the state it left with.
        keep_last=2,
        keep_daily=profile.keep_daily,
        keep_weekly=profile.keep_weekly,
        keep_monthly=profile.keep_monthly,
        keep_within=float(profile.keep_versions_days * DAY),
    )


@dataclass
class PrunePlan:
    """What a prune would remove and what it keeps, and why."""

    keep: list[snapshots.SnapshotRef] = field(default_factory=list)
    forget: list[snapshots.SnapshotRef] = field(default_factory=list)
    reasons: dict[str, list[str]] = field(default_factory=dict)
    delete: list[VersionFile] = field(default_factory=list)
    stored: dict[tuple[str, str], str] = field(default_factory=dict)  # (stamp, path) -> stored
    whole_folders: list[str] = field(default_factory=list)  # version folders emptied whole
    kept_for_snapshots: int = 0  # old versions a kept snapshot still needs
    kept_as_last_copy: int = 0  # old versions that are the last copy of a removed file
    problems: list[str] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(v.size for v in self.delete)


def worth_a_look(session: Session, root: str, profile: Profile, now: float) -> bool:
    """Cheaply (two listings): is any version folder old enough, or any snapshot forgotten
    by the policy? Most runs have nothing to prune and stop here."""
    if profile.keep_versions_days <= 0 and policy_for(profile).empty:
        return False
    cutoff = now - profile.keep_versions_days * DAY
    try:
        stamps = session.listdir(rjoin(root, META_DIR, VERSIONS))
    except RemoteNotFound:
        stamps = []
    if profile.keep_versions_days > 0 and any(
        (when := parse_stamp(e.name)) is not None and when < cutoff for e in stamps if e.is_dir
    ):
        return True
    refs = snapshots.list_refs(session, root)
    return bool(decide(refs, policy_for(profile), now=now).forget)


def plan(
    session: Session,
    root: str,
    profile: Profile,
    now: float,
    current: Tree,
    window: float,
    path_filter: PathFilter,
    encoded: bool = True,
) -> PrunePlan:
    """What pruning would do now (nothing is changed)."""
    result = PrunePlan()
    refs = snapshots.list_refs(session, root)
    decision = decide(refs, policy_for(profile), now=now)
    result.keep, result.forget, result.reasons = decision.keep, decision.forget, decision.reasons
    where = rjoin(root, META_DIR, VERSIONS)
    tree = walk_remote(session, where, path_filter, encoded) or Tree()
    index = point_in_time.VersionIndex.from_tree(tree)
    versions: list[VersionFile] = []
    for path, copies in index.by_path.items():
        for copy in copies:
            versions.append(
                VersionFile(
                    copy.stamp, copy.replaced or 0.0, path, copy.info.size, copy.info.mtime
                )  # fmt: skip
            )
            result.stored[(copy.stamp, path)] = copy.info.stored or ""
    now_held = {p: (i.size, i.mtime) for p, i in current.files.items()}
    needed: set[tuple[str, str]] = set()
    held_sha: dict[str, str] = {}
    by_path: dict[str, list[VersionFile]] = {}
    for version in versions:
        by_path.setdefault(version.path, []).append(version)
    # One snapshot in memory at a time, newest first (it tells the current files' hashes).
    for ref in reversed(decision.keep):
        try:
            snap = snapshots.read(session, root, ref)
        except snapshots.SnapshotDamaged as err:
            # Without it, what it needs is unknown: keep every version (prune nothing).
            result.problems.append(f"{err}; no version is pruned until it is readable")
            result.delete = []
            return result
        if not held_sha:
            held_sha = _hashes_held(snap, now_held, window)
        needed |= needed_versions([snap], versions, now_held, window)
        needed |= _needed_by_hash(snap, by_path, held_sha, window)
    result.delete = prunable_versions(
        versions, needed, now, profile.keep_versions_days, current=now_held
    )
    old = [v for v in versions if v.time < now - profile.keep_versions_days * DAY]
    deleting = {(v.stamp, v.path) for v in result.delete}
    last = last_copies(versions, now_held)
    for v in old:
        key = (v.stamp, v.path)
        if key in deleting:
            continue
        if key in needed:
            result.kept_for_snapshots += 1
        elif key in last:
            result.kept_as_last_copy += 1
    by_stamp: dict[str, int] = {}
    for v in versions:
        by_stamp[v.stamp] = by_stamp.get(v.stamp, 0) + 1
    for stamp, count in by_stamp.items():
        if sum(1 for v in result.delete if v.stamp == stamp) == count:
            result.whole_folders.append(stamp)
    return result


def _hashes_held(
    newest: snapshots.Snapshot, now_held: dict[str, tuple[int, float]], window: float
) -> dict[str, str]:
    """The SHA-256 of each current file, as the newest snapshot recorded it (when the size
    and time still agree)."""
    found = {}
    for path, (size, mtime, sha) in newest.files.items():
        held = now_held.get(path)
        if sha and held and held[0] == size and abs(held[1] - mtime) <= window:
            found[path] = sha
    return found


def _needed_by_hash(
    snap: snapshots.Snapshot,
    by_path: dict[str, list[VersionFile]],
    held_sha: dict[str, str],
    window: float,
) -> set[tuple[str, str]]:
    """Versions a snapshot needs although the current file has the same size and time: its
    recorded content differs (an edit that kept both). Which version holds it cannot be told
    without reading, so every one with that size and time is kept."""
    needed = set()
    for path, (size, mtime, sha) in snap.files.items():
        if not sha or path not in held_sha or held_sha[path] == sha:
            continue
        for v in by_path.get(path, []):
            if v.size == size and abs(v.mtime - mtime) <= window:
                needed.add((v.stamp, v.path))
    return needed


def carry_out(session: Session, root: str, todo: PrunePlan) -> list[str]:
    """Delete what the plan says: versions first (a folder emptied whole in one go), then
    the snapshots forgotten. Returns one line per thing that could not be deleted."""
    problems: list[str] = []
    whole = set(todo.whole_folders)
    for stamp in sorted(whole):
        try:
            session.remove_tree(rjoin(root, META_DIR, VERSIONS, stamp))
        except RemoteFileError as err:
            problems.append(f"versions {stamp}: {err}")
    for v in todo.delete:
        if v.stamp in whole:
            continue
        try:
            session.remove(rjoin(root, todo.stored[(v.stamp, v.path)]))
        except RemoteFileError as err:
            problems.append(f"{v.path} (version {v.stamp}): {err}")
    for ref in todo.forget:
        try:
            session.remove(rjoin(snapshots.folder(root), ref.name))
        except RemoteFileError as err:
            problems.append(f"snapshot {ref.id}: {err}")
    return problems
