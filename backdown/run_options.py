"""The knobs of one run, filled by the command line or the menu."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_TRANSFERS = 4
MAX_TRANSFERS = 64
DEFAULT_RETRIES = 3
BACKOFF_SECONDS = 1.0  # waits 1 s, 2 s, 4 s, ... between tries
DEFAULT_MODIFY_WINDOW = 2.0
DEFAULT_MAX_DELETE = 50.0  # percent of the destination's files


@dataclass
class RunOptions:
    dry_run: bool = False
    mirror: bool | None = None  # None: the profile's mode decides
    transfers: int | None = None  # None: the profile's (DEFAULT_TRANSFERS unless set)
    retries: int = DEFAULT_RETRIES
    checksum: bool = False
    modify_window: float = DEFAULT_MODIFY_WINDOW
    excludes: list[str] = field(default_factory=list)
    max_delete: float = DEFAULT_MAX_DELETE
    overwrite: bool = False  # restore: replace differing local files without keeping them
    target: str | None = None  # restore: where to, instead of the profile's local folder
    backoff: float = BACKOFF_SECONDS  # first wait between tries, doubling each time
    as_of: str | None = None  # restore: the tree as it was then (a time, an age, a snapshot id)
    paths: list[str] = field(default_factory=list)  # restore: only these files or folders
    version: int | None = None  # restore: this copy of the one --path (1 = newest)
    max_change: float = 50.0  # upload: the tripwire's limit, percent of the share's files
    force: bool = False  # upload: go ahead although the tripwire tripped
    sample: float = 100.0  # verify: the percentage of files read back
