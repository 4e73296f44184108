"""Which paths take part in a run: gitignore-style patterns (pathspec)."""

from __future__ import annotations

import re
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
        self._any = _one_regex(self._spec)

    def excluded(self, rel_path: str, is_dir: bool) -> bool:
        path = rel_path + "/" if is_dir else rel_path
        if self._any is not None:
            return self._any.match(path) is not None
        return self._spec.match_file(path)


def _one_regex(spec: pathspec.GitIgnoreSpec) -> re.Pattern[str] | None:
    """The patterns as one regular expression, when no pattern re-includes ('!...'): then
    a path is excluded when any pattern matches it, and one search over the path answers
    what pathspec answers by trying each pattern in turn (a walk asks it of every file).
    None when a '!' pattern makes the order matter."""
    parts: list[str] = []
    for pattern in spec.patterns:
        regex = getattr(pattern, "regex", None)
        include = getattr(pattern, "include", None)
        if include is None:
            continue  # a blank line or a comment
        if include is False or not isinstance(regex, re.Pattern):
            return None
        # Each pattern names its folder group alike; one expression may name it once.
        parts.append("(?:" + regex.pattern.replace("(?P<ps_d>", "(?:") + ")")
    return re.compile("|".join(parts)) if parts else re.compile(r"(?!)")


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
