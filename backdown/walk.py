"""Walk the local tree and the remote tree into plan.Tree values.

One listing per remote folder and one scandir per local folder: no per-file round trips.
"""

from __future__ import annotations

import os
import stat as statmod
from collections import deque

from backdown.filters import PathFilter
from backdown.paths import is_temp_name, rjoin
from backdown.plan import FileInfo, Tree
from backdown.share_names import decode
from backdown.smb import RemoteFileError, Session

# What must never be inside one name: a path separator (on the wire, and on this system).
_SMB_SEPARATORS = frozenset({"/", "\x00", "\\"})
_UNSAFE_CHARS = _SMB_SEPARATORS if os.name == "nt" else frozenset({"/", "\x00"})


def unsafe_name(name: str, separators: frozenset[str] = _UNSAFE_CHARS) -> str | None:
    """Why a name sent by the server must not become a local file name, or None if it is safe."""
    if name in ("", ".", ".."):
        return "refused a name that means a parent or current folder"
    if any(c in name for c in separators):
        return "refused a name containing a path separator"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "refused a name that is not valid Unicode"
    if os.name == "nt" and (set(name) & set('<>:"|?*') or name.rstrip(" .") != name):
        return "refused a name Windows cannot store"
    return None


def walk_local(root: str, path_filter: PathFilter) -> Tree:
    """The files and folders under root (which must exist); symlinks are skipped and noted."""
    tree = Tree()
    pending: deque[str] = deque([""])
    while pending:
        rel_dir = pending.popleft()
        abs_dir = os.path.join(root, rel_dir) if rel_dir else root
        try:
            entries = list(os.scandir(abs_dir))
        except OSError as exc:
            tree.errors.append((rel_dir or ".", f"cannot read folder: {exc.strerror or exc}"))
            continue
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            try:
                rel.encode("utf-8")
            except UnicodeEncodeError:
                tree.errors.append((rel.encode("utf-8", "replace").decode(), "name is not UTF-8"))
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as exc:
                tree.errors.append((rel, f"cannot read: {exc.strerror or exc}"))
                continue
            if statmod.S_ISLNK(st.st_mode):
                tree.skipped.append((rel, "symbolic link, not followed"))
                continue
            is_dir = statmod.S_ISDIR(st.st_mode)
            if is_temp_name(entry.name) and not is_dir:
                tree.partials[rel] = st.st_size
                continue
            if path_filter.excluded(rel, is_dir):
                continue
            if is_dir:
                tree.dirs.add(rel)
                pending.append(rel)
            elif statmod.S_ISREG(st.st_mode):
                tree.files[rel] = FileInfo(rel, st.st_size, st.st_mtime_ns / 1e9)
            else:
                tree.skipped.append((rel, "not a regular file"))
    return tree


def walk_remote(
    session: Session, root: str, path_filter: PathFilter, decode_names: bool = True
) -> Tree | None:
    """The files and folders under a remote folder, or None if the folder does not exist.

    Names are decoded from the way the share stores them (share_names; not in a folder
    BackDown 0.1.0 wrote, which stored them as they were); each entry stored under another
    name than its path records that name.
    """
    tree = Tree()
    if root and session.stat(root) is None:
        return None
    pending: deque[tuple[str, str]] = deque([("", "")])  # (folder, where it is stored)
    while pending:
        rel_dir, stored_dir = pending.popleft()
        try:
            entries = session.listdir(rjoin(root, stored_dir))
        except RemoteFileError as exc:
            tree.errors.append((rel_dir or ".", str(exc)))
            continue
        for entry in sorted(entries, key=lambda e: e.name):
            # A name on the wire never holds a separator; one that does is a lying server's.
            name = decode(entry.name) if decode_names else entry.name
            why = unsafe_name(entry.name, _SMB_SEPARATORS) or unsafe_name(name)
            if why:
                shown = f"{rel_dir}/{entry.name!r}" if rel_dir else repr(entry.name)
                tree.errors.append((shown, why))
                continue
            rel = f"{rel_dir}/{name}" if rel_dir else name
            stored = f"{stored_dir}/{entry.name}" if stored_dir else entry.name
            if not entry.is_dir and is_temp_name(entry.name):
                tree.partials[rel] = entry.size
                tree.partial_times[rel] = entry.mtime
                continue
            if path_filter.excluded(rel, entry.is_dir):
                tree.hidden.setdefault(rel_dir, set()).add(entry.name.casefold())
                continue
            if rel in tree.files or rel in tree.dirs:
                tree.errors.append((rel, f"stored twice on the share (also as '{stored}')"))
                continue
            if entry.is_dir:
                tree.dirs.add(rel)
                if stored != rel:
                    tree.stored_dirs[rel] = stored
                pending.append((rel, stored))
            else:
                kept = stored if stored != rel else None
                tree.files[rel] = FileInfo(rel, entry.size, entry.mtime, stored=kept)
    return tree
