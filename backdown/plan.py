"""Compare a source tree with a destination tree and decide what to do. No I/O here.

Like rclone's planner: walking both trees yields three cases (only in source, only in
destination, in both) and one rule function, need_transfer(), decides each pair. The plan is
data, so --dry-run and the mirror safety checks look at it before anything is touched.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field, replace
from enum import Enum


@dataclass(frozen=True, slots=True)  # slots: a walk holds one per file, 100,000 and more
class FileInfo:
    """A file in a tree. path is relative to the tree's root, with '/' separators."""

    path: str
    size: int
    mtime: float
    sha256: str | None = None
    stored: str | None = None  # on the share: where it is stored, when not at `path`


@dataclass
class Tree:
    """A walked tree: its files, folders, BackDown temporaries, and what could not be read."""

    files: dict[str, FileInfo] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=set)
    partials: dict[str, int] = field(default_factory=dict)  # temp file path -> size
    partial_times: dict[str, float] = field(default_factory=dict)  # temp file path -> mtime
    stored_dirs: dict[str, str] = field(default_factory=dict)  # folder -> stored, if not equal
    # On the share only: names the filters left out (BackDown's own .backdown among them),
    # per folder, case-folded. No new name may take one of them.
    hidden: dict[str, set[str]] = field(default_factory=dict)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why), not errors

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files.values())


class Action(str, Enum):
    NEW = "new"
    CHANGED = "changed"
    UNCHANGED = "unchanged"
    EXTRA = "only-on-destination"


@dataclass(frozen=True)
class CompareRules:
    """How two files are judged the same."""

    modify_window: float = 2.0
    checksum: bool = False


@dataclass(frozen=True, slots=True)
class Item:
    action: Action
    path: str
    src: FileInfo | None
    dst: FileInfo | None


@dataclass
class Plan:
    items: list[Item]
    mkdirs: list[str]  # folders to create at the destination, parents first
    extra_dirs: list[str]  # topmost folders only at the destination
    source_errors: list[tuple[str, str]] = field(default_factory=list)

    def by_action(self, action: Action) -> list[Item]:
        return [i for i in self.items if i.action is action]

    @property
    def copies(self) -> list[Item]:
        return [i for i in self.items if i.action in (Action.NEW, Action.CHANGED)]

    @property
    def copy_bytes(self) -> int:
        return sum(i.src.size for i in self.copies if i.src)

    def count(self, action: Action) -> int:
        return sum(1 for i in self.items if i.action is action)

    def extra_files_with_dirs(self, dst: Tree) -> list[str]:
        """Every destination file a mirror would move away: extras plus the extra folders' files."""
        paths = {i.path for i in self.by_action(Action.EXTRA)}
        for folder in self.extra_dirs:
            prefix = folder + "/"
            paths.update(p for p in dst.files if p.startswith(prefix))
        return sorted(paths)


def need_transfer(src: FileInfo, dst: FileInfo, rules: CompareRules) -> bool:
    """Whether a file present on both sides must be copied, rule by rule.

    1. Sizes differ: copy (a cheap, certain difference).
    2. --checksum: copy unless both SHA-256 are known and equal.
    3. Otherwise: copy when modification times differ by more than the window, so that a
       FAT or NAS server that keeps 2-second times does not make every file look changed.
    """
    if src.size != dst.size:
        return True
    if rules.checksum:
        return src.sha256 is None or dst.sha256 is None or src.sha256 != dst.sha256
    return abs(src.mtime - dst.mtime) > rules.modify_window


def make_plan(src: Tree, dst: Tree, rules: CompareRules) -> Plan:
    """The actions that make dst hold what src holds."""
    items: list[Item] = []
    theirs, window = dst.files.get, rules.modify_window
    for path, s in sorted(src.files.items()):
        d = theirs(path)
        if d is None:
            items.append(Item(Action.NEW, path, s, None))
        # The usual pair, same size and time, decided here; need_transfer has every rule.
        elif rules.checksum or s.size != d.size or abs(s.mtime - d.mtime) > window:
            action = Action.CHANGED if need_transfer(s, d, rules) else Action.UNCHANGED
            items.append(Item(action, path, s, d))
        else:
            items.append(Item(Action.UNCHANGED, path, s, d))
    extra_dirs = _topmost(dst.dirs - src.dirs)
    covered = tuple(d + "/" for d in extra_dirs)
    for path in sorted(path for path in dst.files if path not in src.files):
        if not path.startswith(covered):
            items.append(Item(Action.EXTRA, path, None, dst.files[path]))
    mkdirs = sorted(src.dirs - dst.dirs, key=lambda p: (p.count("/"), p))
    return Plan(items, mkdirs, extra_dirs, list(src.errors))


def match_case(src: Tree, dst: Tree) -> list[str]:
    """On a share that ignores case: file dst's entries that differ from a local path only
    in case under the local spelling. Their stored names stay as they are, so they differ
    from the names wanted now, and the upload renames them (a case-only rename). A folder
    is re-keyed only with everything in it, or not at all (then its local spelling is a new
    folder, stored apart). Returns the local paths re-keyed so."""
    local = set(src.files) | src.dirs
    remote = set(dst.files) | dst.dirs
    by_fold: dict[str, list[str]] = {}
    for path in local - remote:
        by_fold.setdefault(path.casefold(), []).append(path)
    pairs: dict[str, str] = {}  # remote path -> local path
    for old in sorted(remote - local):
        candidates = by_fold.get(old.casefold(), [])
        if len(candidates) != 1:
            continue  # nothing like it here, or ambiguous: planned as extra and new
        new = candidates[0]
        if old in dst.files and new in src.files and _same_file(src.files[new], dst.files[old]):
            pairs[old] = candidates.pop()  # one remote entry per local path, never two
        elif old in dst.dirs and new in src.dirs:
            pairs[old] = candidates.pop()
    _drop_partial_folders(pairs, remote, dst.dirs)
    for old, new in pairs.items():
        if old in dst.files:
            info = dst.files.pop(old)
            dst.files[new] = replace(info, path=new, stored=info.stored or old)
        else:
            dst.dirs.discard(old)
            dst.dirs.add(new)
            dst.stored_dirs[new] = dst.stored_dirs.pop(old, old)
    return sorted(pairs.values())


def _drop_partial_folders(pairs: dict[str, str], remote: set[str], dirs: set[str]) -> None:
    """Undo a folder's re-keying unless everything under it moves with it."""
    changed = True
    while changed:
        changed = False
        for old in [p for p in pairs if p in dirs]:
            new = pairs[old]
            inside = [p for p in remote if p.startswith(old + "/")]
            if all(pairs.get(p, "").startswith(new + "/") for p in inside):
                continue
            for p in [old, *inside]:
                pairs.pop(p, None)
            changed = True


def _same_file(a: FileInfo, b: FileInfo) -> bool:
    """A file renamed only in case keeps its size and time; another file saved under the
    like name almost never has both to the millisecond."""
    return a.size == b.size and abs(a.mtime - b.mtime) < 0.001


def _topmost(dirs: set[str]) -> list[str]:
    """Folders none of whose ancestors are in the set."""
    return sorted(d for d in dirs if not any(a in dirs for a in _ancestors(d)))


def _ancestors(path: str) -> list[str]:
    out = []
    parent = posixpath.dirname(path)
    while parent:
        out.append(parent)
        parent = posixpath.dirname(parent)
    return out


def mirror_refusal(plan: Plan, src: Tree, dst: Tree, max_delete_percent: float) -> str | None:
    """Why a mirror must not run, or None. Checked before anything is changed."""
    if not src.files and not src.dirs:
        return (
            "refusing to mirror from an empty local folder: it would move every file on the "
            "share into the versions area; check the local folder"
        )
    doomed = len(plan.extra_files_with_dirs(dst))
    total = len(dst.files)
    if total and doomed and 100.0 * doomed / total > max_delete_percent:
        return (
            f"refusing to mirror: {doomed} of {total} files on the share "
            f"({100.0 * doomed / total:.0f}%) would be moved to the versions area, above the "
            f"--max-delete limit of {max_delete_percent:g}%; check the local folder, or raise "
            "--max-delete for this run"
        )
    return None
