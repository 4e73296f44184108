"""Which paths take part in a run: gitignore-style patterns (pathspec)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pathspec

from backdown.paths import META_DIR, REPLACED_DIR, TEMP_PREFIX, TEMP_SUFFIX

IGNORE_FILE = ".backdownignore"

# Files no one wants backed up, and BackDown's own working files.
DEFAULT_EXCLUDES = (
    "Thumbs.db",
    "desktop.ini",
    ".DS_Store",
    "~$*",
    f"{TEMP_PREFIX}*{TEMP_SUFFIX}",
    f"/{META_DIR}/",
    f"/{REPLACED_DIR}/",
)


class PathFilter:
    """Decides whether a relative POSIX path is excluded."""

    def __init__(self, patterns: Iterable[str] = ()) -> None:
        self.patterns = [*DEFAULT_EXCLUDES, *patterns]
        self._spec = pathspec.GitIgnoreSpec.from_lines(self.patterns)

    def excluded(self, rel_path: str, is_dir: bool) -> bool:
        return self._spec.match_file(rel_path + "/" if is_dir else rel_path)


def read_ignore_file(local_root: str | Path) -> list[str]:
    """Patterns from the local folder's .backdownignore, if there is one."""
    path = Path(local_root) / IGNORE_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError):
        return []
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def build_filter(
    local_root: str | Path, profile_excludes: Iterable[str], extra: Iterable[str]
) -> PathFilter:
    """The filter for a run: defaults, the profile's patterns, .backdownignore, --exclude."""
    return PathFilter([*profile_excludes, *read_ignore_file(local_root), *extra])
