"""Walk the local tree and the remote tree into plan.Tree values.

One listing per remote folder and one scandir per local folder: no per-file round trips.
"""

from __future__ import annotations

import operator
import os
import re
import stat as statmod
import sys
import threading
from collections import deque
from collections.abc import Callable

from backdown.errors import ConnectError
from backdown.filters import PathFilter
from backdown.paths import is_temp_name, rjoin
from backdown.plan import FileInfo, Tree
from backdown.share_names import decode
from backdown.smb import RemoteEntry, RemoteFileError, Session

# What must never be inside one name: a path separator (on the wire, and on this system).
_SMB_SEPARATORS = frozenset({"/", "\x00", "\\"})
_UNSAFE_CHARS = _SMB_SEPARATORS if os.name == "nt" else frozenset({"/", "\x00"})


_BY_NAME = operator.attrgetter("name")
# A lone surrogate: what a name that is not valid UTF-16 decodes to ("surrogatepass").
_SURROGATE = re.compile("[\ud800-\udfff]")
_SEPARATOR_RES = {
    chars: re.compile("[" + "".join(re.escape(c) for c in sorted(chars)) + "]")
    for chars in (_SMB_SEPARATORS, _UNSAFE_CHARS)
}


def unsafe_name(name: str, separators: frozenset[str] = _UNSAFE_CHARS) -> str | None:
    """Why a name sent by the server must not become a local file name, or None if it is safe."""
    if name in ("", ".", ".."):
        return "refused a name that means a parent or current folder"
    found = _SEPARATOR_RES.get(separators)
    if found.search(name) if found else any(c in name for c in separators):
        return "refused a name containing a path separator"
    if _SURROGATE.search(name):
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
            # Interned: the share's walk finds the same paths, and the two trees then hold
            # one string for each (100,000 paths are tens of megabytes).
            rel = sys.intern(f"{rel_dir}/{entry.name}" if rel_dir else entry.name)
            if _SURROGATE.search(entry.name):  # bytes that are not UTF-8 (surrogateescape)
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


# A remote walk opens more connections only for a tree with this many folders waiting: a
# small tree is listed on the one connection it has, paying for no extra logon.
HELP_WHEN_WAITING = 8
# Folders one connection lists at a time, their requests in flight together.
LIST_BATCH = 8


def walk_remote(
    session: Session,
    root: str,
    path_filter: PathFilter,
    decode_names: bool = True,
    more: Callable[[], Session] | None = None,
    width: int = 1,
    done: Callable[[Session], None] = lambda session: session.close(),
) -> Tree | None:
    """The files and folders under a remote folder, or None if the folder does not exist.

    Names are decoded from the way the share stores them (share_names; not in a folder
    BackDown 0.1.0 wrote, which stored them as they were); each entry stored under another
    name than its path records that name.

    With `more` (opens another connection) and a `width` above 1, a large tree is listed
    over up to `width` connections at once: each folder's listing is work the server does
    on its own time, and its processes (one per connection) do it side by side. Each
    helper connection that ends in step with the server goes to `done` (default: closed).
    """
    if root and session.stat(root) is None:
        return None
    walk = _RemoteWalk(root, path_filter, decode_names)
    helpers: list[threading.Thread] = []

    def start_helper() -> None:
        if more is not None and len(helpers) < width - 1:
            helper = threading.Thread(target=walk.help, args=(more, done), daemon=True,
                                      name=f"backdown-list-{len(helpers) + 1}")  # fmt: skip
            helpers.append(helper)
            helper.start()

    try:
        walk.work(session, on_waiting=start_helper)
    finally:
        walk.stop_helpers()
        for helper in helpers:
            helper.join()
    if walk.failure is not None:
        raise walk.failure
    walk.tree.errors.sort()  # the same order whichever connection listed what
    return walk.tree


class _RemoteWalk:
    """The folders still to list, shared by the connections listing them; the tree they
    fill. A folder is listed and entered by one connection, under the lock."""

    def __init__(self, root: str, path_filter: PathFilter, decode_names: bool) -> None:
        self.root, self.path_filter, self.decode_names = root, path_filter, decode_names
        self.tree = Tree()
        self.pending: deque[tuple[str, str]] = deque([("", "")])  # (folder, where stored)
        self.busy = 0  # folders being listed now
        self.stopping = False
        self.failure: BaseException | None = None
        self.cond = threading.Condition()

    def work(self, session: Session, on_waiting: Callable[[], None] = lambda: None) -> None:
        """List folders on this connection until none is left (or the walk stops): up to
        LIST_BATCH at a time, their requests in flight together (on a link with latency,
        one round trip lists them all)."""
        while jobs := self._take():
            try:
                outcomes = session.listdirs([rjoin(self.root, stored) for _, stored in jobs])
            except BaseException:
                self._give_back(jobs)
                raise
            if self._finish(jobs, outcomes) >= HELP_WHEN_WAITING:
                on_waiting()

    def help(self, more: Callable[[], Session], done: Callable[[Session], None]) -> None:
        """A helper thread: its own connection, handed to `done` at the end when it is in
        step with the server, closed otherwise. A helper that cannot connect, or whose
        connection drops, hands its folders back and stops: the first connection lists
        whatever is left, and fails the walk as it would alone."""
        try:
            session = more()
        except Exception:  # noqa: BLE001 (a server may allow fewer connections: go on)
            return
        try:
            self.work(session)
        except (ConnectError, OSError):
            _close_quietly(session)
        except BaseException as exc:  # anything else is a fault the caller must see
            _close_quietly(session)  # it may hold half an exchange
            with self.cond:
                self.failure = self.failure or exc
                self.stopping = True
                self.cond.notify_all()
        else:
            done(session)

    def stop_helpers(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()

    def _take(self) -> list[tuple[str, str]]:
        """The next folders to list (none: the walk is over)."""
        with self.cond:
            # Another connection's listing may still add folders: wait for it. Its own
            # requests have a deadline, so this wait ends too.
            while not self.pending and self.busy and not self.stopping:
                self.cond.wait(timeout=1.0)
            if self.stopping:
                return []
            jobs = [self.pending.popleft() for _ in range(min(LIST_BATCH, len(self.pending)))]
            self.busy += len(jobs)
            return jobs

    def _give_back(self, jobs: list[tuple[str, str]]) -> None:
        with self.cond:
            self.pending.extendleft(reversed(jobs))
            self.busy -= len(jobs)
            self.cond.notify_all()

    def _finish(
        self, jobs: list[tuple[str, str]], outcomes: list[list[RemoteEntry] | RemoteFileError]
    ) -> int:
        """Enter these folders' listings into the tree; how many folders wait after them."""
        with self.cond:
            try:
                for (rel_dir, stored_dir), outcome in zip(jobs, outcomes, strict=True):
                    if isinstance(outcome, RemoteFileError):
                        self.tree.errors.append((rel_dir or ".", str(outcome)))
                    else:
                        self.pending.extend(self._enter(rel_dir, stored_dir, outcome))
            finally:  # whatever happened, no connection waits for these folders any more
                self.busy -= len(jobs)
                self.cond.notify_all()
            return len(self.pending)

    def _enter(
        self, rel_dir: str, stored_dir: str, entries: list[RemoteEntry]
    ) -> list[tuple[str, str]]:
        """One folder's entries into the tree; its subfolders, to list next."""
        tree, path_filter = self.tree, self.path_filter
        subfolders: list[tuple[str, str]] = []
        for entry in sorted(entries, key=_BY_NAME):
            # A name on the wire never holds a separator; one that does is a lying server's.
            name = decode(entry.name) if self.decode_names else entry.name
            why = unsafe_name(entry.name, _SMB_SEPARATORS)
            if why is None and name is not entry.name:  # the stored name is checked already
                why = unsafe_name(name)
            if why:
                shown = f"{rel_dir}/{entry.name!r}" if rel_dir else repr(entry.name)
                tree.errors.append((shown, why))
                continue
            rel = sys.intern(f"{rel_dir}/{name}" if rel_dir else name)  # as walk_local's
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
                subfolders.append((rel, stored))
            else:
                kept = stored if stored != rel else None
                tree.files[rel] = FileInfo(rel, entry.size, entry.mtime, stored=kept)
        return subfolders


def _close_quietly(session: Session) -> None:
    try:
        session.close()
    except Exception:  # noqa: BLE001 (it is closed either way)
        pass
