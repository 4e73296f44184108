"""Path rules and BackDown's own names: joining remote paths, local paths, temporaries.

A temporary is named `.~bd.<owner>.<version>.part`: <owner> says which computer and profile
is writing it (so no run ever takes another computer's upload in progress for its own
leftover), <version> which size and time of which file it holds (so a later run continues
it only while the source is unchanged).
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from typing import Protocol

META_DIR = ".backdown"  # BackDown's own data on the share, never user data
REPLACED_DIR = ".backdown-replaced"  # local files a restore set aside
TEMP_PREFIX = ".~bd."
TEMP_SUFFIX = ".part"
# A temporary of another computer's (or an older BackDown's) that has not been written to
# for this long is abandoned, and removed.
ABANDONED_SECONDS = 24 * 3600
# This profile's own temporaries that no copy continues are removed once this old: a run of
# the same profile cannot be under way here (the profile's lock), but one of a computer
# with the same name may be.
ABANDONED_OWN_SECONDS = 3600


class Versioned(Protocol):
    """What a temporary's name is keyed on: a file's size and modification time."""

    @property
    def size(self) -> int: ...

    @property
    def mtime(self) -> float: ...


def rjoin(*parts: str) -> str:
    """Join remote path pieces with '/', skipping empty ones."""
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def local_path(root: str, rel: str) -> str:
    return os.path.join(root, *rel.split("/"))


def owner_tag(client: str, profile: str) -> str:
    """Eight hex digits that stand for one computer's profile in temporaries' names."""
    return hashlib.sha256(f"{client}\0{profile}".encode()).hexdigest()[:8]


def temp_name(rel_path: str, info: Versioned, owner: str) -> str:
    """The temporary beside rel_path that holds a copy of this exact version of the file."""
    folder, name = posixpath.split(rel_path)
    key = f"{name}\0{info.size}\0{info.mtime:.6f}".encode()
    digest = hashlib.sha256(key).hexdigest()[:16]
    return posixpath.join(folder, f"{TEMP_PREFIX}{owner}.{digest}{TEMP_SUFFIX}")


def is_temp_name(name: str) -> bool:
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)


def temp_owner(name: str) -> str | None:
    """The owner tag in a temporary's name (None: an older BackDown's, without one)."""
    parts = posixpath.basename(name)[len(TEMP_PREFIX) : -len(TEMP_SUFFIX)].split(".")
    return parts[0] if len(parts) == 2 else None
