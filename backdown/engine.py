"""The engine's entry points: test a profile, back it up, restore it.

Each run: take the profile's lock, walk both trees, plan, check the plan (mirror limits,
--dry-run), then carry it out with a pool of connections and report. The interface layer
(cli.py, main.py) resolves the password and picks the subscribers; nothing here prints.
"""

from __future__ import annotations

import io
import os
import posixpath
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from backdown import __version__, point_in_time, pruning, snapshots, tripwire
from backdown.download import Downloader, create_local_folders
from backdown.download import remove_stale_partials as remove_local_partials
from backdown.errors import (
    ConnectError,
    LockedError,
    RefusedError,
    ShareError,
    UsageError,
    quoted,
)
from backdown.filters import PathFilter, build_filter
from backdown.manifest import (
    MANIFEST,
    VERSIONS,
    Checksum,
    load_manifest,
    load_status,
    mark_names_encoded,
    names_encoded,
    save_manifest,
    save_status,
    status_record,
    utc_stamp,
)
from backdown.office_report import StatusRow, build_rows, find_status_records, report_root
from backdown.paths import META_DIR, local_path, owner_tag, rjoin, temp_name
from backdown.plan import (
    Action,
    CompareRules,
    FileInfo,
    Item,
    Plan,
    Tree,
    make_plan,
    match_case,
    mirror_refusal,
)
from backdown.profile import Profile, expand_remote_folder
from backdown.progress import Subscriber
from backdown.report import Failure, RunReport
from backdown.run_options import DEFAULT_MODIFY_WINDOW, RunOptions
from backdown.share_names import decode, store_paths
from backdown.smb import (
    Connector,
    Endpoint,
    RemoteAccessDenied,
    RemoteExists,
    RemoteFileError,
    Session,
)
from backdown.smb.connect import ShareInfo, list_shares
from backdown.smb.kerberos import principal_for, ticket_principal
from backdown.smb.transport import connector_for
from backdown.snapshots import FileRecord
from backdown.transfer import Batching, Meter, WorkerPool
from backdown.upload import (
    Uploader,
    create_folders,
    file_sha256,
    remove_extras,
    remove_stale_partials,
    rename_folders,
)
from backdown.walk import walk_local, walk_remote


def local_user() -> str:
    """The name of the user running BackDown on this computer ('' if it cannot be told)."""
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no USER variable and no password database entry (a bare container)
        return ""


_T = TypeVar("_T")


def prepared(profile: Profile, using: Collaborators) -> tuple[Profile, Collaborators]:
    """The profile for this computer (for_this_computer) and the collaborators with the
    transport it asks for (smb.transport: chosen once, at the run's first connection)."""
    using = with_transport(profile, using)
    return for_this_computer(profile, using), using


def with_transport(profile: Profile, using: Collaborators) -> Collaborators:
    """The collaborators with the profile's transport, unless one was given."""
    if using.connect is None:
        using = replace(
            using, connect=connector_for(profile.protocol, profile.encrypt, profile.auth)
        )
    return using


def for_this_computer(profile: Profile, using: Collaborators) -> Profile:
    """The profile with {computer}, {user} and {date} in its remote folder filled in for this
    computer, its user and today (local time); the profile itself when it has none."""
    if "{" not in profile.remote_folder:
        return profile
    today = time.strftime("%Y-%m-%d", time.localtime(using.clock()))
    folder = expand_remote_folder(profile.remote_folder, profile.client_name, using.user, today)
    return replace(profile, remote_folder=folder)


def endpoint_for(profile: Profile, password: str) -> Endpoint:
    return Endpoint(
        server=profile.server,
        port=profile.port,
        share=profile.share,
        user=profile.user,
        domain=profile.domain,
        client_name=profile.client_name,
        password=password,
        kerberos=profile.auth == "kerberos",
    )


@contextmanager
def profile_lock(config_dir: Path, name: str) -> Iterator[None]:
    """Hold the profile's lock for the run; a second run of the same profile is refused."""
    from filelock import FileLock, Timeout

    folder = config_dir / "locks"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = FileLock(str(folder / f"{name}.lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise LockedError(
            f"profile '{name}' is already being backed up or restored by another BackDown "
            "process; wait for it to finish"
        ) from None
    try:
        yield
    finally:
        lock.release()


# Automatic pruning: at most this often (judged by the server's clock), and not at all when
# this computer's clock is further than this from the server's.
PRUNE_EVERY = 86400 - 600
PRUNE_CLOCK_SLACK = 86400
PRUNED_MARK = "pruned"


@dataclass(frozen=True)
class Collaborators:
    """What the engine is given rather than reaching for: how to open a session on the
    share (None: the transport the profile asks for, see smb/transport.py), what time it
    is, and who the local user is (for the status record an office-wide report reads)."""

    connect: Connector | None = None  # None: the transport the profile asks for
    clock: Callable[[], float] = time.time
    # Prune only when this clock agrees with the server's within a day. A test that runs
    # the engine on a clock of its own (days away from the real server's) turns it off.
    clock_checked_by_server: bool = True
    user: str = field(default_factory=lambda: local_user())
    # Set from another thread to stop the run (the full-screen UI's Cancel); a run in the
    # main thread is stopped by Ctrl-C instead.
    cancel: threading.Event | None = None

    @property
    def open(self) -> Connector:
        """The connector to use; prepared() has chosen it when none was given."""
        assert self.connect is not None, "prepared() chooses the transport"
        return self.connect


class _Sessions:
    """The run's own session for walking and bookkeeping (reopened if the server dropped
    it), and the spare connections the share's walk opened, which the copies take up
    rather than logging on again."""

    def __init__(self, endpoint: Endpoint, connect: Connector) -> None:
        self.endpoint = endpoint
        self.connect = connect
        self._session: Session | None = None
        self._spare: list[Session] = []
        self._lock = threading.Lock()

    def get(self) -> Session:
        if self._session is None or self._session.closed:
            self._session = self.connect(self.endpoint, None)
        return self._session

    def another(self, cancel: threading.Event | None) -> Session:
        """A spare connection of this run that is still open, else a new one."""
        with self._lock:
            while self._spare:
                session = self._spare.pop()
                if not session.closed:
                    return session
        return self.connect(self.endpoint, cancel)

    def keep(self, session: Session) -> None:
        """A connection done with its work, in step with the server: kept for another."""
        if session.closed:
            return
        with self._lock:
            self._spare.append(session)

    def close(self) -> None:
        with self._lock:
            spare, self._spare = self._spare, []
        for session in [*spare, *([self._session] if self._session is not None else [])]:
            session.close()


def check_connection(
    profile: Profile, password: str, using: Collaborators = Collaborators()
) -> RunReport:
    """Reach the server, log on, open the share, and check the remote folder is writable."""
    profile, using = prepared(profile, using)
    began = time.monotonic()
    report = RunReport(profile.name, "test", destination=profile.unc)
    endpoint = endpoint_for(profile, password)
    with using.open(endpoint, None) as session:
        report.details = connection_details(session, using.open)
        who = report.details.get("principal") or profile.user
        how = report.details["auth"]
        as_whom = f"as '{who}'" if who else "as guest"
        report.notes.append(f"server {endpoint.where} answered; logged on {as_whom} ({how})")
        report.notes.append(_details_line(report.details))
        session.listdir("")
        report.notes.append(f"share '{profile.share}' opened")
        folder = profile.remote_folder
        with folder_access(profile):
            existing = _nearest_existing(session, folder)
        _probe_writable(session, existing, profile)
        if existing != folder:
            report.notes.append(
                f"folder '{folder}' does not exist on the share yet: the first backup creates "
                f"it ('{existing or '/'}' is writable)"
            )
        else:
            report.notes.append(f"folder '{folder or '/'}' on the share is writable")
    present = os.path.isdir(profile.local)
    report.details["local_folder_present"] = present
    report.notes.append(
        f"local folder {profile.local} is present"
        if present
        else f"local folder {profile.local} is missing"
    )
    report.seconds = time.monotonic() - began
    return report


def office_report(
    profile: Profile,
    password: str,
    depth: int,
    stale_after: float | None,
    using: Collaborators = Collaborators(),
) -> tuple[list[StatusRow], list[str]]:
    """Every computer's status record below the profile's folder (up to the first
    {placeholder}), as report rows, stale and failing first; and what could not be read."""
    using = with_transport(profile, using)  # the folder keeps its {placeholders} here
    root = report_root(profile.remote_folder)
    with using.open(endpoint_for(profile, password), None) as session, folder_access(profile):
        if root and session.stat(root) is None:
            raise ShareError(f"folder '{root}' not found on share '{profile.share}'")
        found, problems = find_status_records(session, root, depth)
    return build_rows(found, using.clock(), stale_after), problems


def connection_details(session: Session, connector: Connector) -> dict[str, object]:
    """What the connection turned out to be: transport, dialect, signing, encryption."""
    smb3 = hasattr(session, "encrypted")
    wire = getattr(session, "wire", None)
    details: dict[str, object] = {
        "transport": "smb3 (smbprotocol)" if smb3 else "smb2 (pysmb)",
        "dialect": getattr(session, "dialect", "2.0.2"),
        "signing": bool(getattr(session, "signed", False) or getattr(wire, "signing", False)),
        "encryption": bool(getattr(session, "encrypted", False)),
        "cipher": getattr(session, "cipher", None),
        "auth": "NTLM",
    }
    endpoint = getattr(session, "endpoint", None)
    if endpoint is not None and endpoint.kerberos:
        details["auth"] = "Kerberos"
        details["principal"] = principal_for(endpoint.user) or ticket_principal(os.environ)
    why = getattr(connector, "why", "")
    if why:
        details["transport_because"] = why
    return details


def _details_line(details: dict[str, object]) -> str:
    line = (
        f"transport {details['transport']}, dialect {details['dialect']}, signing "
        f"{'on' if details['signing'] else 'off'}, encryption "
        f"{details['cipher'] or 'on' if details['encryption'] else 'off'}"
    )
    if details.get("transport_because"):
        line += f" (SMB 3 because {details['transport_because']})"
    return line


def _nearest_existing(session: Session, folder: str) -> str:
    parts = folder.split("/") if folder else []
    while parts:
        entry = session.stat("/".join(parts))
        if entry is not None:
            if not entry.is_dir:
                raise ShareError(f"'{'/'.join(parts)}' on the share is a file, not a folder")
            return "/".join(parts)
        parts.pop()
    return ""


@contextmanager
def folder_access(profile: Profile) -> Iterator[None]:
    """Access denied on the remote folder itself stops the run (exit 4), not just one file."""
    try:
        yield
    except RemoteAccessDenied:
        who = f"user '{profile.user}'" if profile.user else "guest"
        raise ShareError(
            f"{who} has no access to {profile.unc}: access denied; ask the share's "
            "administrator for access, or choose another remote folder"
        ) from None


def _probe_writable(session: Session, folder: str, profile: Profile) -> None:
    """Create and delete a small file, so a read-only share fails before any work starts."""
    probe = rjoin(folder, f".backdown-probe.{profile.client_name}.{os.getpid()}")
    try:
        session.write_file(probe, _Empty())
        session.remove(probe)
    except RemoteAccessDenied:
        who = f"user '{profile.user}'" if profile.user else "guest"
        raise ShareError(
            f"{who} cannot write to {profile.unc}: access denied; a backup needs write access "
            "(ask the share's administrator, or restore only)"
        ) from None


class _Empty:
    def read(self, n: int = -1) -> bytes:
        return b""


def _fill_counts(report: RunReport, plan: Plan, dst: Tree) -> None:
    report.files_new = plan.count(Action.NEW)
    report.files_changed = plan.count(Action.CHANGED)
    report.files_unchanged = plan.count(Action.UNCHANGED)
    report.planned = [
        (i.action.value, i.path) for i in plan.items if i.action is not Action.UNCHANGED
    ]
    report.planned += [("create-folder", d + "/") for d in plan.mkdirs]


def _attach_checksums(
    src: Tree,
    dst: Tree,
    manifest: dict[str, Checksum],
    hashed_side: Tree,
    root: str,
    window: float,
) -> None:
    """Put manifest SHA-256s on the share's side and hash the local side where sizes match."""
    remote = dst if hashed_side is src else src
    for path, info in list(remote.files.items()):
        c = manifest.get(path)
        if c and c.size == info.size and abs(c.mtime - info.mtime) <= window:
            remote.files[path] = replace(info, sha256=c.sha256)
    other = remote.files
    for path, info in list(hashed_side.files.items()):
        peer = other.get(path)
        if peer is not None and peer.size == info.size and peer.sha256:
            try:
                hashed_side.files[path] = replace(info, sha256=file_sha256(local_path(root, path)))
            except OSError:
                pass  # unreadable: left without a hash, so it counts as changed


def _local_source(profile: Profile) -> str:
    root = profile.local
    if not os.path.isdir(root):
        raise UsageError(
            f"local folder {root} does not exist or is not a folder; create it, or edit "
            f"profile '{profile.name}' to point at the right folder"
        )
    return root


@dataclass
class Run:
    """What every step of one run needs: who, how, where it reports, its connections."""

    profile: Profile
    options: RunOptions
    subscriber: Subscriber
    using: Collaborators
    sessions: _Sessions
    report: RunReport
    cancel: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def start(
        cls, profile: Profile, password: str, options: RunOptions, subscriber: Subscriber,
        using: Collaborators, report: RunReport,
    ) -> Run:  # fmt: skip
        sessions = _Sessions(endpoint_for(profile, password), using.open)
        cancel = using.cancel if using.cancel is not None else threading.Event()
        return cls(profile, options, subscriber, using, sessions, report, cancel)

    @property
    def transfers(self) -> int:
        """Parallel connections: the run's own choice, else the profile's setting."""
        return self.options.transfers or self.profile.transfers

    def walk_remote(
        self, session: Session, root: str, path_filter: PathFilter, decode_names: bool
    ) -> Tree | None:
        """walk_remote over this session and, for a large tree, up to `transfers` - 1 more
        connections, kept afterwards for the run's copies."""
        sessions, cancel = self.sessions, self.cancel
        more = lambda: sessions.another(cancel)  # noqa: E731
        return walk_remote(
            session, root, path_filter, decode_names, more, self.transfers, sessions.keep
        )

    @property
    def owner(self) -> str:
        return owner_tag(self.profile.client_name, self.profile.name)

    @contextmanager
    def locked(self, config_dir: Path) -> Iterator[None]:
        """The run itself: holds the profile's lock; then closes, reports, times it."""
        began = time.monotonic()
        try:
            with profile_lock(config_dir, self.profile.name):
                yield
        finally:
            self.sessions.close()
            self.subscriber.on_finish()
            self.report.seconds = time.monotonic() - began


def backup(
    profile: Profile,
    password: str,
    options: RunOptions,
    subscriber: Subscriber,
    config_dir: Path,
    using: Collaborators = Collaborators(),
) -> RunReport:
    """Upload the local folder's contents into share/remote-folder, as options say."""
    profile, using = prepared(profile, using)
    mirror = profile.mode == "mirror" if options.mirror is None else options.mirror
    report = RunReport(profile.name, "upload", dry_run=options.dry_run, destination=profile.unc)
    local_root = _local_source(profile)
    path_filter = build_filter(local_root, profile.excludes, options.excludes)
    root = profile.remote_folder
    run = Run.start(profile, password, options, subscriber, using, report)
    with run.locked(config_dir):
        # The local disk is walked while the share is listed: both are mostly waiting.
        local_walk = _started(lambda: walk_local(local_root, path_filter))
        session = run.sessions.get()
        with folder_access(profile):
            encoded = names_encoded(session, root)
            dst = run.walk_remote(session, root, path_filter, encoded is not False) or Tree()
        src = local_walk()
        ignore_case = share_ignores_case(session, root, dst, may_write=not options.dry_run)
        renamed = match_case(src, dst) if ignore_case else []
        stored = store_paths([*src.files, *src.dirs], ignore_case, *_on_share(dst))
        # Only the paths stored under another name: the Uploader reads it with .get(p, p).
        stored = {path: where for path, where in stored.items() if where != path}
        if options.checksum:
            manifest = load_manifest(session, root)
            _attach_checksums(src, dst, manifest, src, local_root, options.modify_window)
        else:
            manifest = {}
        plan = make_plan(src, dst, CompareRules(options.modify_window, options.checksum))
        if mirror:
            why = mirror_refusal(plan, src, dst, options.max_delete)
            if why is None and any(p == "." for p, _ in src.errors):
                why = f"refusing to mirror: cannot read the local folder {local_root}"
            if why:
                raise RefusedError(why)
        if not options.force:
            _check_tripwire(run, session, plan, dst, local_root)
        _fill_counts(report, plan, dst)
        doomed = plan.extra_files_with_dirs(dst) if mirror else []
        if mirror:
            # Each file once: a mirror moves the extras away rather than leaving them.
            moved = set(doomed)
            report.planned = [
                (a, p) for a, p in report.planned if not (a == Action.EXTRA.value and p in moved)
            ]
            report.planned += [("move-to-versions", p) for p in doomed]
        report.files_removed = len(doomed) if options.dry_run else 0
        report.skipped = list(src.skipped)
        subscriber.on_plan("upload", plan)
        if options.dry_run:
            return report
        uploader = Uploader(
            local_root=profile.local,
            remote_root=root,
            stamp=utc_stamp(using.clock()),
            partials=dst.partials,
            meter=Meter(subscriber),
            subscriber=subscriber,
            cancel=run.cancel,
            owner=run.owner,
            stored=stored,
            checksum=options.checksum,
            checksums=dict(manifest),
        )
        _upload(run, uploader, plan, src, dst, mirror, renamed, encoded)
    return report


def _started(work: Callable[[], _T]) -> Callable[[], _T]:
    """Start work in a thread of its own; the function returned waits for it and gives its
    result, or raises what it raised."""
    outcome: list[_T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(work())
        except BaseException as exc:  # handed to whoever waits for it
            failure.append(exc)

    thread = threading.Thread(target=run, name="backdown-walk-local", daemon=True)
    thread.start()

    def result() -> _T:
        thread.join()
        if failure:
            raise failure[0]
        return outcome[0]

    return result


def _check_tripwire(run: Run, session: Session, plan: Plan, dst: Tree, local_root: str) -> None:
    """Stop before replacing anything when the plan looks like ransomware at work (too many
    files replaced, or documents turned into random bytes): RefusedError, exit 2, unless
    --force. A dry run only says so."""
    root = run.profile.remote_folder

    def read_new(path: str, n: int) -> bytes:
        with open(local_path(local_root, path), "rb") as f:
            return f.read(n)

    def read_old(path: str, n: int) -> bytes:
        info = dst.files[path]
        buf = io.BytesIO()
        session.get_file(rjoin(root, info.stored or path), buf, 0, info.size, min(n, info.size))
        return buf.getvalue()

    if run.options.checksum:
        # A first --checksum run plans every file without a recorded hash as changed; one
        # whose size and time are the same is only being hashed, not replaced by something.
        window = run.options.modify_window
        plan = replace(plan, items=[i for i in plan.items if not _same_but_unhashed(i, window)])
    verdict = tripwire.check(plan, dst, run.options.max_change, read_new, read_old)
    if not verdict.tripped:
        return
    if run.options.dry_run:
        run.report.notes.append(verdict.reason)
        return
    raise RefusedError(verdict.reason)


def _same_but_unhashed(item: Item, window: float) -> bool:
    src, dst = item.src, item.dst
    return (
        item.action is Action.CHANGED and src is not None and dst is not None
        and dst.sha256 is None  # a recorded hash that differs is a real change
        and src.size == dst.size and abs(src.mtime - dst.mtime) <= window
    )  # fmt: skip


def _on_share(
    dst: Tree,
) -> tuple[dict[str, str], Callable[[], dict[str, set[str]]]]:
    """Where each path the share holds is stored, and a function giving the case-folded
    stored names in each of its folders (for share_names.store_paths, which asks for them
    only when a path is new)."""
    on_share = {path: info.stored or path for path, info in dst.files.items()}
    on_share.update({d: dst.stored_dirs.get(d, d) for d in dst.dirs})

    def occupied() -> dict[str, set[str]]:
        names = {folder: set(hidden) for folder, hidden in dst.hidden.items()}
        for path, stored in on_share.items():
            names.setdefault(posixpath.dirname(path), set()).add(
                posixpath.basename(stored).casefold()
            )
        return names

    return on_share, occupied


def share_ignores_case(session: Session, root: str, dst: Tree, may_write: bool) -> bool:
    """Whether the share takes 'A' and 'a' for one name (Windows, most NAS, Samba's default).

    Asked once per run, cheaply: by looking up a file of the remote folder under its name
    with the case of its ASCII letters swapped (the same file answering means the share
    ignores case), or else by writing a probe into .backdown/. Only ASCII letters are
    swapped: 'ß' and its like have no single-letter other case.
    """
    for info in sorted(dst.files.values(), key=lambda i: len(i.path))[:3]:
        stored = info.stored or info.path
        folder, name = posixpath.split(stored)
        swapped = "".join(c.swapcase() if c.isascii() else c for c in name)
        if swapped == name or posixpath.join(folder, swapped) in _stored_files(dst):
            continue  # no letter to swap, or a share that holds both spellings
        found = session.stat(rjoin(root, folder, swapped))
        if found is None or found.size != info.size:
            return False
        return abs(found.mtime - info.mtime) < 0.001
    if not may_write:
        return True  # a dry run guesses the common case
    folder = rjoin(root, META_DIR)
    try:
        session.makedirs(folder)
        probe = f"case-probe-{os.getpid()}-x"
        session.write_file(rjoin(folder, probe), _Empty())
        try:
            return session.stat(rjoin(folder, probe.upper())) is not None
        finally:
            session.remove(rjoin(folder, probe))
    except RemoteAccessDenied:
        return True  # read-only: the backup fails at its own write probe, with its message


def _stored_as_they_were(src: Tree, dst: Tree) -> bool:
    """Whether the share keeps a name that is not here any more (copy mode) and that the
    new way of storing would read as another name: then the folder must stay read as it
    is stored."""
    gone = (set(dst.files) | dst.dirs) - (set(src.files) | src.dirs)
    return any(decode(posixpath.basename(p)) != posixpath.basename(p) for p in gone)


def _stored_files(dst: Tree) -> set[str]:
    return {info.stored or info.path for info in dst.files.values()}


def _upload(
    run: Run,
    uploader: Uploader,
    plan: Plan,
    src: Tree,
    dst: Tree,
    mirror: bool,
    renamed: list[str],
    encoded: bool | None,
) -> None:
    profile, report, root = run.profile, run.report, run.profile.remote_folder
    has_work = bool(
        plan.copies or plan.mkdirs or renamed
        or (mirror and (plan.extra_dirs or plan.by_action(Action.EXTRA)))
    )  # fmt: skip
    session = run.sessions.get()
    if has_work:
        try:
            session.makedirs(root)
        except RemoteAccessDenied:
            # A read-only share or folder: the whole run cannot work, not one file (exit 4).
            who = f"user '{profile.user}'" if profile.user else "guest"
            raise ShareError(
                f"{who} cannot create folder '{root}' in {profile.unc}: access denied; a backup "
                "needs write access (ask the share's administrator, or restore only)"
            ) from None
        _probe_writable(session, root, profile)
    folders_renamed, rename_failures = rename_folders(session, uploader, dst, src.dirs)
    not_renamed = tuple(f.path for f in rename_failures)  # folders, with their '/'
    files_renamed = 0
    for item in plan.by_action(Action.UNCHANGED):
        if item.path.startswith(not_renamed):
            continue  # its folder kept its old name: so does the file, until the next run
        try:
            files_renamed += uploader.rename_to_wanted(session, item)
        except RemoteFileError as exc:
            rename_failures.append(Failure(item.path, str(exc)))
    if encoded is not True and not rename_failures and not _stored_as_they_were(src, dst):
        mark_names_encoded(session, root)  # every name is now stored the new way
    if folders_renamed or files_renamed:
        report.notes.append(
            f"renamed {folders_renamed + files_renamed} files and folders on the share to "
            "their local names"
        )
    created, folder_failures = create_folders(session, uploader, plan)
    report.folders_created = created
    batching = Batching(uploader.batchable, uploader.upload_many, weight=Uploader.size_of)
    earlier = rename_failures + folder_failures
    copies, failures = _copy_all(run, uploader.meter, plan, earlier, uploader.upload, src, batching)
    report.resumed_files = uploader.resumed
    report.notes += [f"could not list '{p}' on the share ({why})" for p, why in dst.errors]
    session = _reopen(run.sessions)
    if mirror and (plan.extra_dirs or plan.by_action(Action.EXTRA)):
        if failures or dst.errors:
            report.notes.append(
                "nothing was moved to the versions area because some files or folders "
                "failed; fix them and run again"
            )
        else:
            removed, more = remove_extras(session, uploader, plan, dst)
            report.files_removed = removed
            failures += more
    keep = {temp_name(i.path, i.src, run.owner) for i in copies if i.src}
    remove_stale_partials(session, uploader, dst, keep, run.using.clock())
    if run.options.checksum and has_work:
        for path in list(uploader.checksums):
            if path not in src.files:
                del uploader.checksums[path]
        try:
            save_manifest(session, root, uploader.checksums)
        except RemoteFileError as exc:  # the files are safe; --checksum re-hashes next time
            failures.append(Failure(f"{META_DIR}/{MANIFEST}", str(exc)))
    report.files_versioned = uploader.versioned
    report.files_failed = failures
    if not failures:
        written = _write_snapshot(session, run, src, dst, mirror, uploader.checksums)
        try:
            if written is not None:
                _prune_after(session, run, *written, encoded is not False)
        except RemoteFileError as exc:  # old versions stay; the backup itself is done
            report.notes.append(f"could not remove old versions ({exc})")
    # Every run is recorded, no-op runs too, so an office-wide "who is overdue" report sees them.
    _record_status(session, run, report)


def _write_snapshot(
    session: Session,
    run: Run,
    src: Tree,
    dst: Tree,
    mirror: bool,
    checksums: dict[str, Checksum],
) -> tuple[Mapping[str, FileRecord], float] | None:
    """Record what the remote folder holds now that the run went through: every local file
    (as uploaded or unchanged) and, in copy mode, what the share kept that is gone here.
    Returns those files (path: size, mtime, SHA-256) and the server's time of writing the
    snapshot (for pruning), or None when no snapshot was written."""
    if run.options.excludes:
        # This run's own patterns hid files that are still on the share: a snapshot would
        # say they were gone. (The profile's patterns are the backup's own: those it keeps.)
        run.report.notes.append("no snapshot of this run: --exclude left files out of it")
        return None
    files = _HeldFiles(src, None if mirror else dst, checksums)
    dirs = set(src.dirs) if mirror else src.dirs | dst.dirs
    profile = run.profile
    try:
        ref = _write_new_snapshot(session, run, files, sorted(dirs))
        written = session.stat(rjoin(snapshots.folder(profile.remote_folder), ref.name))
    except RemoteFileError as exc:  # the backup is whole; only "as of now" is not recorded
        run.report.notes.append(f"could not record this run's snapshot ({exc})")
        return None
    if written is None:
        return None
    # The file's time is the server's clock: pruning checks ours against it (_prune_after).
    return files, written.mtime


class _HeldFiles(Mapping[str, FileRecord]):
    """What the share holds once the run went through, as its snapshot records it: every
    local file (with the manifest's SHA-256 under --checksum) and, in copy mode, the files
    the share kept that are gone here. Read from the trees when asked: a copy would be one
    more record per file at the run's peak (10 MB for 100,000 files)."""

    def __init__(self, src: Tree, kept: Tree | None, checksums: dict[str, Checksum]) -> None:
        self.src, self.kept, self.checksums = src.files, kept.files if kept else {}, checksums

    def __getitem__(self, path: str) -> FileRecord:
        info = self.src.get(path)
        if info is not None:
            known = self.checksums.get(path)
            sha = known.sha256 if known is not None and known.size == info.size else None
            return info.size, info.mtime, sha or info.sha256
        info = self.kept[path]  # KeyError: not held
        return info.size, info.mtime, None

    def __iter__(self) -> Iterator[str]:
        yield from self.src
        yield from (path for path in self.kept if path not in self.src)

    def __len__(self) -> int:
        return len(self.src) + sum(1 for path in self.kept if path not in self.src)


def _write_new_snapshot(
    session: Session, run: Run, files: Mapping[str, FileRecord], dirs: list[str]
) -> snapshots.SnapshotRef:
    """Write the snapshot under a name of its own: a name already taken (two runs in one
    millisecond) moves it a millisecond later, never over the other one."""
    profile, when = run.profile, run.using.clock()
    for attempt in range(10):
        stamp = utc_stamp(when + attempt / 1000)
        ref = snapshots.parse_name(snapshots.file_name(stamp, profile.client_name))
        assert ref is not None
        try:
            snapshots.write(session, profile.remote_folder,
                            snapshots.Snapshot(ref, profile.name, files, dirs))  # fmt: skip
            return ref
        except RemoteExists:
            session.remove(rjoin(snapshots.folder(profile.remote_folder), ref.name + ".new"))
    raise RemoteExists("every name tried for this run's snapshot was taken")


def _prune_after(
    session: Session,
    run: Run,
    files: Mapping[str, FileRecord],
    server_now: float,
    encoded: bool,
) -> None:
    """After a run without failures, at most once a day: prune what the retention rules let
    go. Not when this computer's clock is more than a day off the server's: a clock years
    ahead would make every snapshot and version look old."""
    profile, now = run.profile, run.using.clock()
    root = profile.remote_folder
    if not run.using.clock_checked_by_server:
        server_now = now
    if abs(server_now - now) > PRUNE_CLOCK_SLACK:
        days = abs(server_now - now) / 86400
        run.report.notes.append(
            f"this computer's clock is {days:.0f} days off the server's: nothing old was "
            "pruned; set the clock right"
        )
        return
    mark = session.stat(rjoin(root, META_DIR, PRUNED_MARK))
    if mark is not None and 0 <= server_now - mark.mtime < PRUNE_EVERY:
        return
    if not pruning.worth_a_look(session, root, profile, now):
        return
    session.write_file(rjoin(root, META_DIR, PRUNED_MARK), _Empty())
    held = Tree(files={p: FileInfo(p, size, mtime) for p, (size, mtime, _) in files.items()})
    todo = pruning.plan(session, profile.remote_folder, profile, now, held,
                        run.options.modify_window, PathFilter([]), encoded)  # fmt: skip
    problems = todo.problems + pruning.carry_out(session, profile.remote_folder, todo)
    run.report.notes += [f"pruning: {p}" for p in problems]


def _copy_all(
    run: Run,
    meter: Meter,
    plan: Plan,
    earlier_failures: list[Failure],
    work: Callable[[Session, Item, int], None],
    src: Tree,
    batching: Batching[Item] | None = None,
) -> tuple[list[Item], list[Failure]]:
    """Copy the plan's files with the worker pool (skipping folders that failed earlier);
    returns the copies tried and every failure of the run so far."""
    failed_dirs = tuple(f.path for f in earlier_failures if f.path.endswith("/"))
    copies = [i for i in plan.copies if not i.path.startswith(failed_dirs)]
    options = run.options
    pool: WorkerPool[Item] = WorkerPool(
        run.sessions.another, run.transfers, options.retries,
        run.subscriber, run.cancel, options.backoff,
    )  # fmt: skip
    failures = list(earlier_failures)
    try:
        failures += pool.run(copies, work, lambda i: i.path, batching)
    finally:
        run.report.bytes_transferred = meter.bytes
    failures += [Failure(p, why) for p, why in src.errors]
    failed = {f.path for f in failures}
    run.report.files_transferred = sum(1 for c in copies if c.path not in failed)
    return copies, failures


def _record_status(session: Session, run: Run, report: RunReport) -> None:
    """Write this computer's status record for the profile (see manifest.status_record);
    the last success is carried over from the record it replaces when this run failed."""
    profile, now = run.profile, run.using.clock()
    previous = load_status(session, profile.remote_folder, profile.client_name, profile.name)
    record = status_record(
        profile, report, now, user=run.using.user, previous=previous, version=__version__
    )
    try:
        save_status(session, profile.remote_folder, profile.client_name, profile.name, record)
    except RemoteFileError as exc:
        report.notes.append(f"could not record this run on the share ({exc})")


def _reopen(sessions: _Sessions) -> Session:
    """The bookkeeping session, reconnecting if the server dropped it during the copies."""
    session = sessions.get()
    try:
        session.stat("")  # one compounded open and close of the share's root: no listing
        return session
    except ConnectError:
        return sessions.get()


def restore(
    profile: Profile,
    password: str,
    options: RunOptions,
    subscriber: Subscriber,
    config_dir: Path,
    using: Collaborators = Collaborators(),
) -> RunReport:
    """Download the remote folder's contents into the target (default: the local folder)."""
    profile, using = prepared(profile, using)
    target = os.path.abspath(os.path.expanduser(options.target or profile.local))
    report = RunReport(profile.name, "download", dry_run=options.dry_run, destination=target)
    path_filter = PathFilter([*profile.excludes, *options.excludes])
    root = profile.remote_folder
    run = Run.start(profile, password, options, subscriber, using, report)
    with run.locked(config_dir):
        session = run.sessions.get()
        with folder_access(profile):
            encoded = names_encoded(session, root)
            src = run.walk_remote(session, root, path_filter, encoded is not False)
        if src is None:
            raise ShareError(
                f"folder '{root}' not found on share '{profile.share}'; check the profile's "
                "remote folder (nothing has been backed up there yet?)"
            )
        if os.path.exists(target) and not os.path.isdir(target):
            raise UsageError(f"{target} exists and is not a folder; choose another with --to")
        src, sources, missing = _what_to_restore(run, session, src, path_filter)
        dst = walk_local(target, path_filter) if os.path.isdir(target) else Tree()
        if options.checksum:
            manifest = load_manifest(session, root)
            _attach_checksums(src, dst, manifest, dst, target, options.modify_window)
        plan = make_plan(src, dst, CompareRules(options.modify_window, options.checksum))
        _fill_counts(report, plan, dst)
        if sources:
            report.planned = [
                (f"{action} (from {sources.get(path, 'current')})", path)
                for action, path in report.planned
            ]
        gone = [Failure(p, "its content at that time is no longer kept (pruned)") for p in missing]
        subscriber.on_plan("download", plan)
        if options.dry_run:
            report.files_failed = gone
            return report
        _download(run, plan, src, dst, target)
        report.files_failed += gone
    return report


def _what_to_restore(
    run: Run, session: Session, current: Tree, path_filter: PathFilter
) -> tuple[Tree, dict[str, str], list[str]]:
    """The tree a restore copies from, where each file's content comes from, and what is
    no longer kept: the share as it is now, or as of --as-of, or one --version of a file;
    cut down to --path."""
    options = run.options
    if options.version is not None:
        return _one_version(run, session, current, path_filter)
    if options.as_of is None:
        tree = point_in_time.only(current, options.paths) if options.paths else current
        return tree, {}, []
    resolution = _as_of(run, session, current, path_filter)
    tree = resolution.tree
    missing = resolution.missing
    if options.paths:
        tree = point_in_time.only(tree, options.paths, also=missing)
        missing = [m for m in missing if _under(m, options.paths)]
    return tree, resolution.sources, missing


def _under(path: str, wanted: list[str]) -> bool:
    return any(path == w.strip("/") or path.startswith(w.strip("/") + "/") for w in wanted)


def _as_of(
    run: Run, session: Session, current: Tree, path_filter: PathFilter
) -> point_in_time.Resolution:
    root, options = run.profile.remote_folder, run.options
    assert options.as_of is not None
    refs = snapshots.list_refs(session, root)
    for ref in point_in_time.pick_snapshot(refs, options.as_of, run.using.clock(), None):
        try:
            snapshot = snapshots.read(session, root, ref)
        except snapshots.SnapshotDamaged as err:
            run.report.notes.append(f"{err}; the next older snapshot is used")
            continue
        run.report.notes.append(
            f"restoring the folder as it was at {_local_time(ref.time)} (snapshot {ref.id}, "
            f"from {ref.computer})"
        )
        # What the filters leave out is not restored: as a plain restore does.
        snapshot.files = {
            p: v for p, v in snapshot.files.items() if not path_filter.excluded(p, False)
        }
        _hashes_of_current(session, root, refs, ref, current)
        index = _versions_index(session, root, PathFilter([]))
        return point_in_time.resolve(snapshot, current, index, options.modify_window)
    raise ShareError(
        f"no readable snapshot at or before {quoted(options.as_of)} on the share; 'backdown "
        f"snapshots {run.profile.name}' lists them"
    )


def _hashes_of_current(
    session: Session,
    root: str,
    refs: list[snapshots.SnapshotRef],
    chosen: snapshots.SnapshotRef,
    current: Tree,
) -> None:
    """Give the current files the SHA-256 the newest snapshot recorded for them (same size
    and time), so that a file whose content changed while keeping its size and time is not
    taken for the content of an older snapshot."""
    newest = refs[-1] if refs else None
    if newest is None or newest == chosen:
        return
    try:
        latest = snapshots.read(session, root, newest)
    except snapshots.SnapshotDamaged:
        return  # no hashes: the copies are chosen by size and time, and checked on arrival
    for path, info in list(current.files.items()):
        entry = latest.files.get(path)
        if entry and entry[2] and entry[0] == info.size and abs(entry[1] - info.mtime) < 1e-3:
            current.files[path] = replace(info, sha256=entry[2])


def _one_version(
    run: Run, session: Session, current: Tree, path_filter: PathFilter
) -> tuple[Tree, dict[str, str], list[str]]:
    options = run.options
    if len(options.paths) != 1:
        raise UsageError("--version needs exactly one --path FILE")
    path = options.paths[0].strip("/")
    copies = point_in_time.copies_of(
        path, current, _versions_index(session, run.profile.remote_folder, PathFilter([]))
    )
    assert options.version is not None
    if not 1 <= options.version <= len(copies):
        raise UsageError(
            f"'{path}' has {len(copies)} stored copies: give --version from 1 to "
            f"{len(copies)} ('backdown versions {run.profile.name} {path}' lists them)"
            if copies
            else f"no stored copy of '{path}'; 'backdown versions {run.profile.name} "
            "--deleted' lists removed files"
        )
    copy = copies[options.version - 1]
    tree = Tree(files={path: copy.info})
    tree = point_in_time.only(tree, [path])
    return tree, {path: copy.where}, []


def _versions_index(
    session: Session, root: str, path_filter: PathFilter
) -> point_in_time.VersionIndex:
    """Every file in the versions area, by the path it had."""
    where = rjoin(root, META_DIR, VERSIONS)
    tree = walk_remote(session, where, path_filter, names_encoded(session, root) is not False)
    return point_in_time.VersionIndex.from_tree(tree or Tree())


def _local_time(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))


def _download(run: Run, plan: Plan, src: Tree, dst: Tree, target: str) -> None:
    meter = Meter(run.subscriber)
    downloader = Downloader(
        target_root=target,
        remote_root=run.profile.remote_folder,
        stamp=utc_stamp(run.using.clock()),
        partials=dst.partials,
        meter=meter,
        subscriber=run.subscriber,
        cancel=run.cancel,
        owner=run.owner,
        overwrite=run.options.overwrite,
    )
    created, folder_failures = create_local_folders(downloader, plan)
    run.report.folders_created = created
    copies, failures = _copy_all(run, meter, plan, folder_failures, downloader.download, src)
    keep = {temp_name(i.path, i.src, run.owner) for i in copies if i.src}
    remove_local_partials(target, dst.partials, keep, run.owner, run.using.clock())
    run.report.files_versioned = downloader.set_aside_count
    run.report.resumed_files = downloader.resumed
    run.report.files_failed = failures


# --------------------------------------------------------------------------- what is kept


@dataclass
class Kept:
    """What the share keeps of a profile's backups: its snapshots, and the stored copies
    of one file or the files removed (for `snapshots` and `versions`)."""

    snapshots: list[snapshots.Snapshot] = field(default_factory=list)
    copies: list[point_in_time.StoredCopy] = field(default_factory=list)
    deleted: list[point_in_time.Deleted] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def kept(
    profile: Profile,
    password: str,
    *,
    path: str | None = None,
    deleted_under: str | None = None,
    using: Collaborators = Collaborators(),
) -> Kept:
    """The snapshots (no path given), every copy of `path`, or what was removed under
    `deleted_under` ('' for the whole folder)."""
    profile, using = prepared(profile, using)
    root = profile.remote_folder
    path_filter = PathFilter([])  # what is kept, whatever the patterns say today
    found = Kept()
    with using.open(endpoint_for(profile, password), None) as session, folder_access(profile):
        if root and session.stat(root) is None:
            raise ShareError(f"folder '{root}' not found on share '{profile.share}'")
        if path is None and deleted_under is None:
            for ref in snapshots.list_refs(session, root):
                try:
                    found.snapshots.append(snapshots.read(session, root, ref))
                except snapshots.SnapshotDamaged as err:
                    found.problems.append(str(err))
            return found
        encoded = names_encoded(session, root) is not False
        current = walk_remote(session, root, path_filter, encoded) or Tree()
        index = _versions_index(session, root, path_filter)
    if path is not None:
        found.copies = point_in_time.copies_of(path.strip("/"), current, index)
    else:
        found.deleted = point_in_time.deleted(current, index, deleted_under or "")
    return found


def prune(
    profile: Profile,
    password: str,
    dry_run: bool,
    config_dir: Path,
    using: Collaborators = Collaborators(),
) -> pruning.PrunePlan:
    """Prune by the profile's retention rules now (`backdown prune`), or only say what
    would go (dry_run). Holds the profile's lock: never beside a backup of it."""
    profile, using = prepared(profile, using)
    root = profile.remote_folder
    with (
        profile_lock(config_dir, profile.name),
        using.open(endpoint_for(profile, password), None) as session,
        folder_access(profile),
    ):
        encoded = names_encoded(session, root) is not False
        current = walk_remote(session, root, PathFilter([]), encoded)
        if current is None:
            raise ShareError(f"folder '{root}' not found on share '{profile.share}'")
        todo = pruning.plan(session, root, profile, using.clock(), current,
                            DEFAULT_MODIFY_WINDOW, PathFilter([]), encoded)  # fmt: skip
        if not dry_run:
            todo.problems += pruning.carry_out(session, root, todo)
    return todo


def backed_up(
    profile: Profile, password: str, using: Collaborators = Collaborators()
) -> tuple[list[str], list[str]]:
    """What the backup holds now: its files and its folders ('/'-separated, relative to
    the remote folder), for picking what to restore; BackDown's own folder and temporaries
    left out."""
    profile, using = prepared(profile, using)
    root = profile.remote_folder
    with using.open(endpoint_for(profile, password), None) as session, folder_access(profile):
        if root and session.stat(root) is None:
            raise ShareError(
                f"folder '{root}' not found on share '{profile.share}': nothing is backed up yet"
            )
        encoded = names_encoded(session, root) is not False
        tree = walk_remote(session, root, PathFilter(profile.excludes), encoded) or Tree()
    return sorted(tree.files), sorted(tree.dirs)


def shares_on(profile: Profile, password: str) -> list[ShareInfo]:
    """The server's disk shares, for picking one (the profile's share is not opened)."""
    return list_shares(endpoint_for(profile, password))


def folders_in(
    profile: Profile, password: str, path: str = "", using: Collaborators = Collaborators()
) -> list[str]:
    """The folders in `path` of the profile's share (its root by default), for picking the
    remote folder; BackDown's own folder left out."""
    profile, using = prepared(profile, using)
    with using.open(endpoint_for(profile, password), None) as session:
        entries = session.listdir(path)
    return sorted(
        (e.name for e in entries if e.is_dir and e.name not in (".", "..", META_DIR)),
        key=str.casefold,
    )


def top_level(profile: Profile, password: str, using: Collaborators = Collaborators()) -> list[str]:
    """The names at the top of the backup (folders end in '/')."""
    files, dirs = backed_up(profile, password, using)
    names = {p.split("/")[0] for p in files} | {d.split("/")[0] for d in dirs}
    return sorted(n + "/" if n in dirs else n for n in names)
