"""Verify a backup: read files back from the share and compare their SHA-256.

What the remote folder should hold comes from its latest readable snapshot (snapshots.py):
every file it lists must be on the share with the recorded size and time (one listing, no
reads), and the files chosen (all, or a --sample of them) are read back in full through the
worker pool, hashed on the way, and compared with the snapshot's SHA-256 when it recorded
one, else with the local file when that is unchanged since the run. A folder backed up
before snapshots were kept is compared with the local folder alone.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from backdown import snapshots
from backdown.engine import Collaborators, Run, folder_access, prepared
from backdown.errors import Cancelled, RemoteFileError, ShareError, UsageError
from backdown.filters import PathFilter, build_filter
from backdown.manifest import names_encoded
from backdown.paths import local_path, rjoin
from backdown.plan import Action, FileInfo, Item, Plan, Tree
from backdown.profile import Profile
from backdown.progress import Subscriber
from backdown.report import Failure, RunReport
from backdown.run_options import (
    DEFAULT_MODIFY_WINDOW,
    DEFAULT_RETRIES,
    RunOptions,
)
from backdown.smb import Session
from backdown.transfer import Meter, WorkerPool
from backdown.walk import walk_local

THE_SNAPSHOT = "the snapshot's hash"
THE_LOCAL_FILE = "the local file"


@dataclass
class VerifyOptions:
    """The knobs of one verify run."""

    sample: float = 100.0  # percent of the files to read back, chosen at random
    seed: int | None = None  # seeds that choice (tests); None: a new choice each run
    transfers: int | None = None  # None: the profile's
    retries: int = DEFAULT_RETRIES
    modify_window: float = DEFAULT_MODIFY_WINDOW


class ContentDiffers(RemoteFileError):
    """A file read back in full hashes to something else than it should."""


@dataclass(frozen=True)
class Check:
    """One file to read back, and what its content is compared with."""

    path: str  # the local path, relative to the profile's folders
    stored: str  # where it is stored, relative to the remote folder
    size: int
    mtime: float  # as the snapshot (or, without one, the share) records it
    sha256: str | None  # recorded by the snapshot; None: compare with the local file


@dataclass
class Verifier:
    """Reads files back, one call per file per worker, and keeps the counts."""

    remote_root: str
    local_root: str
    window: float
    meter: Meter
    subscriber: Subscriber
    cancel: threading.Event
    files_read: int = 0
    readable_only: int = 0  # read in full, but nothing to compare them with
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, session: Session, item: Check, attempt: int) -> None:
        """Read one file in full; ContentDiffers if it does not hash as it should."""
        self.subscriber.on_file_start(item.path, item.size)
        writer = HashingWriter(self.meter, self.cancel)
        # get_file raises RemoteFileError for a size other than the listing's or a short read.
        session.get_file(rjoin(self.remote_root, item.stored), writer, 0, item.size)
        expected, against = self._expected(item)
        with self._lock:
            self.files_read += 1
            if expected is None:
                self.readable_only += 1
        if expected is not None and writer.hexdigest() != expected:
            raise ContentDiffers(f"content differs from {against}")

    def _expected(self, item: Check) -> tuple[str | None, str]:
        """The SHA-256 the file must have and what it comes from (None: nothing to go by)."""
        if item.sha256:
            return item.sha256, THE_SNAPSHOT
        path = local_path(self.local_root, item.path)
        return local_sha256(path, item.size, item.mtime, self.window, self.cancel), THE_LOCAL_FILE


class HashingWriter:
    """Where get_file writes a file read back: hashes it and counts it, keeps nothing."""

    def __init__(self, meter: Meter, cancel: threading.Event) -> None:
        self._meter = meter
        self._cancel = cancel
        self._hasher = hashlib.sha256()

    def write(self, data: bytes) -> int:
        if self._cancel.is_set():
            raise Cancelled()
        self._hasher.update(data)
        self._meter.add(len(data))
        return len(data)

    def hexdigest(self) -> str:
        return self._hasher.hexdigest()


def local_sha256(
    path: str, size: int, mtime: float, window: float, cancel: threading.Event
) -> str | None:
    """SHA-256 of a local file that still has this size and time (within window), or None
    when it has changed, changes while it is read, or cannot be read."""
    try:
        with open(path, "rb") as f:
            before = os.fstat(f.fileno())
            if not _same(before.st_size, before.st_mtime_ns / 1e9, size, mtime, window):
                return None
            hasher = hashlib.sha256()
            while chunk := f.read(1 << 20):
                if cancel.is_set():
                    raise Cancelled()
                hasher.update(chunk)
            after = os.fstat(f.fileno())
    except OSError:
        return None
    # Written to while it was read: its hash stands for neither the old nor the new content.
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
        return None
    return hasher.hexdigest()


def _same(size: int, mtime: float, want_size: int, want_mtime: float, window: float) -> bool:
    return size == want_size and abs(mtime - want_mtime) <= window


def sample_size(total: int, percent: float) -> int:
    """How many of `total` files a sample of `percent` reads: rounded, at least one when
    the percentage is above 0 (a sample of a few files must still read something)."""
    if total == 0 or percent <= 0:
        return 0
    return min(total, max(1, round(total * percent / 100)))


def choose(paths: list[str], count: int, seed: int | None) -> set[str]:
    """`count` of the paths, chosen at random (the same ones again for one seed)."""
    if count >= len(paths):
        return set(paths)
    return set(random.Random(seed).sample(sorted(paths), count))


def latest_snapshot(session: Session, root: str, notes: list[str]) -> snapshots.Snapshot | None:
    """The newest snapshot that can be read (a damaged one is noted and passed over), or
    None when the folder has none."""
    try:
        refs = snapshots.list_refs(session, root)
    except RemoteFileError as exc:
        notes.append(f"cannot list the snapshots on the share ({exc})")
        return None
    for ref in reversed(refs):
        try:
            return snapshots.read(session, root, ref)
        except snapshots.SnapshotDamaged as exc:
            notes.append(f"{exc}; using the one before it")
    return None


def _shown_time(mtime: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(mtime))


def _unlisted(path: str, errors: dict[str, str]) -> str | None:
    """Why a path's folder could not be listed on the share, or None if it was listed."""
    for folder, why in errors.items():
        if folder == "." or path.startswith(folder + "/"):
            return f"not checked: could not list '{folder}' on the share ({why})"
    return None


def against_snapshot(
    snapshot: snapshots.Snapshot,
    share: Tree,
    window: float,
) -> tuple[list[Check], list[Failure]]:
    """Every file of the snapshot checked against the share's listing: the ones to read
    back (those found as recorded), and a failure for each missing or changed one."""
    checks: list[Check] = []
    failures: list[Failure] = []
    errors = dict(share.errors)
    for path, (size, mtime, sha) in sorted(snapshot.files.items()):
        found = share.files.get(path)
        if found is None:
            failures.append(Failure(path, _unlisted(path, errors) or "missing on the share"))
            continue
        if found.size != size:
            what = f"size {found.size}, expected {size}"
        elif abs(found.mtime - mtime) > window:
            what = f"modified {_shown_time(found.mtime)}, expected {_shown_time(mtime)}"
        else:
            checks.append(Check(path, found.stored or path, size, mtime, sha))
            continue
        failures.append(Failure(path, f"changed on the share since the last backup ({what})"))
    return checks, failures


def against_local(share: Tree) -> list[Check]:
    """Without a snapshot: every file on the share, to be compared with the local file
    where that has the same size and time."""
    return [
        Check(path, info.stored or path, info.size, info.mtime, None)
        for path, info in sorted(share.files.items())
    ]


def _not_on_share(profile: Profile, share: Tree) -> list[Failure]:
    """Without a snapshot: the local files the share lacks (an interrupted first backup)."""
    if not os.path.isdir(profile.local):
        return []
    local = walk_local(profile.local, build_filter(profile.local, profile.excludes, []))
    return [
        Failure(path, "missing on the share: this local file is not backed up yet")
        for path in sorted(local.files)
        if path not in share.files
    ]


def _progress_plan(checks: list[Check]) -> Plan:
    """The files to read as a plan, so a progress bar knows the files and bytes to come."""
    items = [Item(Action.NEW, c.path, FileInfo(c.path, c.size, c.mtime), None) for c in checks]
    return Plan(items, [], [])


def verify(
    profile: Profile,
    password: str,
    options: VerifyOptions,
    subscriber: Subscriber,
    config_dir: Path,
    using: Collaborators = Collaborators(),  # noqa: B008 (frozen, as in engine.py)
) -> RunReport:
    """Read the backup back from the share and compare it with what it should hold; every
    mismatch, missing and unreadable file is a failure in the report."""
    if not 0 <= options.sample <= 100:
        raise UsageError(f"--sample must be a percentage from 0 to 100, not {options.sample:g}")
    profile, using = prepared(profile, using)
    report = RunReport(profile.name, "verify", destination=profile.unc)
    root = profile.remote_folder
    window = options.modify_window
    run_options = RunOptions(
        transfers=options.transfers, retries=options.retries, modify_window=window
    )
    run = Run.start(profile, password, run_options, subscriber, using, report)
    with run.locked(config_dir):
        session = run.sessions.get()
        with folder_access(profile):
            # Only BackDown's own files are left out: the snapshot says what must be there,
            # whatever the profile's patterns are now.
            encoded = names_encoded(session, root)
            share = run.walk_remote(session, root, PathFilter(), encoded is not False)
            if share is None:
                raise ShareError(
                    f"folder '{root}' not found on share '{profile.share}'; check the "
                    "profile's remote folder (nothing has been backed up there yet?)"
                )
            snapshot = latest_snapshot(session, root, report.notes)
        if snapshot is not None:
            report.notes.append(
                f"checked against the snapshot {snapshot.ref.id} written by "
                f"{snapshot.ref.computer} ({len(snapshot.files)} files)"
            )
            checks, failures = against_snapshot(snapshot, share, window)
            total = len(snapshot.files)
        else:
            report.notes.append(
                "no snapshot on the share (backed up before snapshots were kept, or none "
                "could be read): the share's files were compared with the local folder"
            )
            checks, failures = against_local(share), _not_on_share(profile, share)
            total = len(share.files)
        # The share of all the files the backup holds, drawn from those found as recorded
        # (a missing or changed file has failed already, and cannot be read as it was).
        count = sample_size(total, options.sample)
        chosen = choose([c.path for c in checks], count, options.seed)
        checks = [c for c in checks if c.path in chosen]
        if options.sample < 100:
            report.notes.append(
                f"read back {len(checks)} of {total} files (a {options.sample:g}% sample)"
            )
        report.notes += [f"could not list '{p}' on the share ({why})" for p, why in share.errors]
        failures += _read_back(run, checks, report, has_snapshot=snapshot is not None)
    report.files_failed = sorted(failures, key=lambda f: f.path)
    return report


def _read_back(
    run: Run, checks: list[Check], report: RunReport, has_snapshot: bool
) -> list[Failure]:
    """Read every check's file through the worker pool; the files that failed."""
    meter = Meter(run.subscriber)
    verifier = Verifier(
        remote_root=run.profile.remote_folder,
        local_root=run.profile.local,
        window=run.options.modify_window,
        meter=meter,
        subscriber=run.subscriber,
        cancel=run.cancel,
    )
    run.subscriber.on_plan("verify", _progress_plan(checks))
    options = run.options
    pool: WorkerPool[Check] = WorkerPool(
        run.sessions.another, run.transfers, options.retries,
        run.subscriber, run.cancel, options.backoff,
    )  # fmt: skip
    try:
        return pool.run(checks, verifier.check, lambda c: c.path)
    finally:
        report.files_transferred = verifier.files_read
        report.bytes_transferred = meter.bytes
        if verifier.readable_only:
            report.notes.append(_uncompared(verifier.readable_only, has_snapshot))


def _uncompared(count: int, has_snapshot: bool) -> str:
    """The note for files read in full with nothing to compare them with."""
    if has_snapshot:
        return (
            f"{count} files could only be checked for being readable: no recorded hash and "
            "the local file changed since"
        )
    return (
        f"{count} files could not be compared (no local file of the same size and time) "
        "and could only be checked for being readable"
    )
