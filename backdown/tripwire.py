"""The ransomware tripwire: whether an upload plan looks like damage rather than work.

Checked after planning and before anything on the share is replaced. Two rules:

1. Too much at once: the upload would replace more than --max-change percent of the files
   already on the share (a folder encrypted in place, or the wrong local folder).
2. Unreadable-looking content: most changed files sampled now look like random bytes while
   their old copies on the share did not (documents replaced by ciphertext).

No I/O of its own: the engine passes two readers, one for the local file and one for the
copy on the share. --force (the engine's business) overrides a tripped verdict.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from backdown.errors import BackdownError, Cancelled, ConnectError
from backdown.plan import Action, Plan, Tree

DEFAULT_MAX_CHANGE = 50.0
# Below 20 files on the share the percentage says little: with 10 files, editing 6 in a
# day is ordinary work and already 60%. From 20 on one file is at most 5% of the folder, so
# crossing 50% takes 11 replaced files. Small folders are still covered by rule 2, which
# needs only MIN_SAMPLED changed files.
MIN_FILES = 20
SAMPLE = 32  # changed files sampled for the entropy rule
MIN_SAMPLED = 8  # fewer sampled files than this decide nothing: rule 2 is skipped
HEAD = 64 * 1024  # bytes read from the start of each side of a sampled file
WINDOW = 4 * 1024  # the first bytes measured apart, for files encrypted only at the start
MIN_BYTES = 256  # a new file shorter than this is never judged: too few bytes to tell
RANDOM = 7.5  # a head at or above this many bits per byte looks random...
NOT_RANDOM = 7.0  # ...and an old head below this did not
FORCE = "if this is what you meant, run again with --force"


@dataclass(frozen=True)
class Verdict:
    """The tripwire's answer. reason is empty unless tripped; then it is one line with the
    numbers, ending with what to do."""

    tripped: bool
    reason: str
    changed: int  # files already on the share the upload would replace
    on_share: int  # files on the share
    suspicious: int  # sampled files that now look encrypted
    sampled: int  # changed files read on both sides


def entropy(data: bytes) -> float:
    """Shannon entropy of the bytes, in bits per byte: 0 for none or one repeated byte,
    8 for every byte value equally often."""
    n = len(data)
    if not n:
        return 0.0
    return -sum(c / n * math.log2(c / n) for c in Counter(data).values()) + 0.0  # never -0.0


def looks_encrypted(new_head: bytes, old_head: bytes) -> bool:
    """Whether the new content looks random while the old did not: the new head measures
    at least 7.5 bits per byte, the old one below 7.0, so that a compressed file (zip, docx,
    jpg: random-looking already) replaced by another one does not count. A new file under
    256 bytes never counts.

    Each head is measured over all of it (up to 64 KiB) and over its first 4 KiB, and the
    higher reading counts, so a file encrypted only at the start (as some ransomware does
    for speed) is seen too. A short sample of random bytes reads below 8 (the byte values
    seen are too few to be equally often), so each reading is raised by what random bytes of
    that length fall short by, about 255 / (2 n ln 2) bits: 0.72 at 256 bytes, 0.04 at 4 KiB.

    Measured, in bits per byte over the first 4 KiB / 64 KiB: text 4.9 / 4.9, Python source
    4.7 / 4.6, CSV of numbers 4.3 / 4.3, SQLite database 0.2 / 5.7, PCM wav 7.47 / 7.62,
    docx 7.94 / 7.97, jpg 7.90 / 7.98 and 4.5 / 7.90 (EXIF at the start) and 6.4 / 7.32 (a
    mostly white diagram), png 7.70 / 7.94, pdf 7.87 / 7.98, gzip 7.88 / 7.99, zip 7.91 /
    7.99, bz2 7.71 / 7.97, random bytes 7.95 / 7.997. At 256 bytes to 4 KiB, as raised here:
    random bytes 7.74 and up, zlib output 7.72 and up, text 5.7 and below. So documents stay
    below 6, compressed data is above 7.3 and random bytes above 7.7: 7.0 and 7.5 leave
    room on both sides.
    """
    if len(new_head) < MIN_BYTES or len(old_head) < MIN_BYTES:
        return False  # too short to tell, or an empty placeholder filled in: not encryption
    return _randomness(new_head) >= RANDOM and _randomness(old_head) < NOT_RANDOM


def check(
    plan: Plan,
    dst: Tree,
    max_change: float,
    read_new: Callable[[str, int], bytes],
    read_old: Callable[[str, int], bytes],
) -> Verdict:
    """Whether the upload in plan must stop before replacing anything, and why.

    Rule 1: with at least MIN_FILES files on the share, more than max_change percent of them
    would be replaced. Rule 2 (only when rule 1 did not trip and at least MIN_SAMPLED files
    changed): of up to SAMPLE changed files, evenly spread over their sorted paths, more than
    half look encrypted (looks_encrypted), with at least MIN_SAMPLED read. read_new(path, n)
    and read_old(path, n) return the first n bytes of the local file and of its copy on the
    share; a read that fails leaves that file out of the sample. A lost connection and an
    interrupted run are not read failures: they propagate.
    """
    changed = sorted(i.path for i in plan.items if i.action is Action.CHANGED)
    on_share = len(dst.files)
    if on_share >= MIN_FILES and len(changed) * 100 > max_change * on_share:
        share = _percent(len(changed) * 100 / on_share, max_change)
        reason = (
            f"{len(changed)} of {on_share} files on the share ({share}%) would be replaced, "
            f"more than --max-change {max_change:g}%: stopped before replacing anything, in case "
            f"ransomware or a wrong local folder changed them; {FORCE}"
        )
        return Verdict(True, reason, len(changed), on_share, 0, 0)
    if len(changed) < MIN_SAMPLED:
        return Verdict(False, "", len(changed), on_share, 0, 0)
    sampled = 0
    suspicious: list[str] = []
    for path in _spread(changed, SAMPLE):
        heads = _read_both(path, read_new, read_old)
        if heads is None:
            continue
        sampled += 1
        if looks_encrypted(*heads):
            suspicious.append(path)
    if sampled < MIN_SAMPLED or len(suspicious) * 2 <= sampled:
        return Verdict(False, "", len(changed), on_share, len(suspicious), sampled)
    examples = ", ".join(_printable(p) for p in suspicious[:3])
    reason = (
        f"{len(suspicious)} of {sampled} changed files sampled now look encrypted (random "
        f"bytes), their old copies did not ({examples}{', ...' if len(suspicious) > 3 else ''})"
        f": stopped before replacing anything, in case ransomware encrypted them; {FORCE}"
    )
    return Verdict(True, reason, len(changed), on_share, len(suspicious), sampled)


def _read_both(
    path: str,
    read_new: Callable[[str, int], bytes],
    read_old: Callable[[str, int], bytes],
) -> tuple[bytes, bytes] | None:
    """The heads of the local file and of its copy on the share, or None if either read
    fails (a file that vanished, access denied): it cannot be judged, so it is not."""
    try:
        return read_new(path, HEAD), read_old(path, HEAD)
    except (ConnectError, Cancelled):
        raise
    except (OSError, BackdownError):
        return None


def _randomness(head: bytes) -> float:
    """How random the head looks, on the scale of a long sample: the higher reading of its
    first WINDOW bytes and of all of it, each raised by what random bytes of that length
    fall short of 8 bits per byte."""
    return max(_long_run(head[:WINDOW]), _long_run(head))


def _long_run(data: bytes) -> float:
    """entropy(data) raised by the small-sample shortfall of random bytes, 255 / (2 n ln 2)
    (Miller and Madow), taken at MIN_BYTES for shorter data so it stays bounded."""
    if not data:
        return 0.0
    return entropy(data) + 255 / (2 * max(len(data), MIN_BYTES) * math.log(2))


def _spread(paths: list[str], k: int) -> list[str]:
    """k of the sorted paths evenly spread from first to last (all of them if k or fewer)."""
    if len(paths) <= k:
        return paths
    return [paths[i * len(paths) // k] for i in range(k)]


def _percent(value: float, limit: float) -> str:
    """82, 50.5, 50.01: as few decimals as show it is more than the limit."""
    for decimals in range(3):
        shown = f"{value:.{decimals}f}"
        if float(shown) > limit:
            return shown
    return f"{value:.3f}"


def _printable(path: str) -> str:
    """The path on one line: control characters shown escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in path)
