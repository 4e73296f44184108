"""What a run did: the summary printed at the end and the --json object."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from backdown.errors import ExitStatus


@dataclass(frozen=True)
class Failure:
    """One file or folder that failed, and why (one line)."""

    path: str
    error: str


@dataclass
class RunReport:
    profile: str
    operation: str  # "upload", "download" or "test"
    dry_run: bool = False
    files_transferred: int = 0
    bytes_transferred: int = 0
    files_failed: list[Failure] = field(default_factory=list)
    seconds: float = 0.0
    files_new: int = 0
    files_changed: int = 0
    files_unchanged: int = 0
    files_versioned: int = 0  # existing files moved into the versions area (or set aside locally)
    files_removed: int = 0  # mirror: files gone from the source, moved into the versions area
    folders_created: int = 0
    resumed_files: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    planned: list[tuple[str, str]] = field(default_factory=list)  # (action, path) for --dry-run
    notes: list[str] = field(default_factory=list)
    destination: str = ""
    details: dict[str, Any] = field(default_factory=dict)  # test: what the connection is

    @property
    def ok(self) -> bool:
        return not self.files_failed

    @property
    def exit_status(self) -> ExitStatus:
        return ExitStatus.SUCCESS if self.ok else ExitStatus.FILES_FAILED

    @property
    def rate_mb_s(self) -> float:
        return self.bytes_transferred / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "operation": self.operation,
            "ok": self.ok,
            "dry_run": self.dry_run,
            "files_transferred": self.files_transferred,
            "bytes_transferred": self.bytes_transferred,
            "files_failed": [{"path": f.path, "error": f.error} for f in self.files_failed],
            "seconds": round(self.seconds, 3),
            "files_new": self.files_new,
            "files_changed": self.files_changed,
            "files_unchanged": self.files_unchanged,
            "files_versioned": self.files_versioned,
            "files_removed": self.files_removed,
            "folders_created": self.folders_created,
            "resumed_files": self.resumed_files,
            "destination": self.destination,
            "notes": list(self.notes),
        }

    def _verify_lines(self) -> list[str]:
        lines = [
            f"Verified '{self.profile}' ({self.destination}): read back "
            f"{plural(self.files_transferred, 'file')} ({_human(self.bytes_transferred)}) in "
            f"{self.seconds:.1f} s{_rate(self.bytes_transferred, self.seconds)}."
        ]
        lines += [f"  note: {n}" for n in self.notes]
        if not self.files_failed:
            return [*lines, "  every file checked is whole."]
        lines.append(f"  {len(self.files_failed)} failed:")
        lines += [f"    {f.path}: {f.error}" for f in self.files_failed]
        lines.append(
            "  A file whose copy on the share differs keeps its size and time there, so the "
            "next backup does not send it again: change (or touch) the local file, then back "
            "up."
        )
        return lines

    def summary_lines(self, verbose: bool = False) -> list[str]:
        """The end-of-run summary, a few lines a person reads."""
        if self.operation == "verify":
            return self._verify_lines()
        if self.dry_run:
            return self._dry_run_lines(verbose)
        verb = {"upload": "Backed up", "download": "Restored"}.get(self.operation, "Done")
        moved = "sent" if self.operation == "upload" else "received"
        lines = [
            f"{verb} '{self.profile}': {plural(self.files_transferred, 'file')} {moved} "
            f"({_human(self.bytes_transferred)}) in {self.seconds:.1f} s"
            f"{_rate(self.bytes_transferred, self.seconds)}; {self.files_new} new, "
            f"{self.files_changed} changed, {self.files_unchanged} unchanged.",
        ]
        if self.operation == "download" and self.files_versioned:
            lines.append(
                f"  {plural(self.files_versioned, 'local file')} that differed kept aside "
                "(the folder is named below)."
            )
        elif self.files_versioned or self.files_removed:
            lines.append(
                f"  {plural(self.files_versioned, 'replaced file')} and "
                f"{plural(self.files_removed, 'removed file')} kept on the share as earlier "
                "versions ('backdown versions' lists them)."
            )
        if self.resumed_files:
            lines.append(f"  {plural(self.resumed_files, 'interrupted transfer')} resumed.")
        lines += [f"  note: {n}" for n in self.notes]
        if verbose:
            lines += [f"  skipped {path}: {why}" for path, why in self.skipped]
        if self.files_failed:
            lines.append(f"  {len(self.files_failed)} failed:")
            lines += [f"    {f.path}: {f.error}" for f in self.files_failed]
        else:
            lines.append("  0 failed.")
        return lines

    def _dry_run_lines(self, verbose: bool) -> list[str]:
        if self.operation == "download":
            aside = (
                f"would keep aside {plural(self.files_versioned, 'local file')} that "
                + ("differs" if self.files_versioned == 1 else "differ")
                if self.files_versioned
                else "nothing local would be replaced"
            )
        else:
            aside = (
                f"would move {plural(self.files_removed, 'file')} deleted here into the "
                "versions area on the share"
                if self.files_removed
                else "nothing would be removed from the share"
            )
        copied = "copy" if self.operation == "upload" else "restore"
        lines = [
            f"Dry run of {self.operation} for '{self.profile}' to {self.destination}: "
            "nothing was changed.",
            f"  would {copied} {self.files_new} new and "
            f"{plural(self.files_changed, 'changed file')}, {self.files_unchanged} unchanged; "
            f"{aside}",
        ]
        if verbose:
            lines += [f"  {action:<20} {path}" for action, path in self.planned]
        lines += [f"  note: {n}" for n in self.notes]
        if self.files_failed:
            lines.append(f"  {len(self.files_failed)} would fail:")
            lines += [f"    {f.path}: {f.error}" for f in self.files_failed]
        return lines


def plural(n: int, noun: str) -> str:
    """'1 file', '2 files', '1,200 files'."""
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _rate(n: int, seconds: float) -> str:
    """', 12.0 MB/s', or nothing when the run was too short or too small to say."""
    if seconds < 0.5 or n < 1_000_000:
        return ""
    return f", {_human(int(n / seconds))}/s"


def human_size(n: int) -> str:
    """Bytes as a person reads them: 4.1 KB, 12.0 MB."""
    return _human(n)


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"
