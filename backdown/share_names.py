"""Names as the share stores them, and back: a reversible mapping, no I/O.

Windows servers, NAS boxes and Samba (which mangles such names into `CSHOFG~F`) cannot store
every name Linux and macOS allow. Like rclone's encoder, BackDown stores the characters and
endings SMB forbids as look-alike characters and maps them back on restore:

| in the local name | on the share |
|---|---|
| `< > : " \\ \\| ? *` | `＜ ＞ ： ＂ ＼ ｜ ？ ＊` (full-width forms) |
| control characters 0x01-0x1F, 0x7F | `␁`-`␟`, `␡` (control pictures) |
| a trailing space, a trailing dot | `␠`, `．` |
| a device name (CON, PRN, AUX, NUL, COM1-9, LPT1-9) | its last character full-width |

(device names in any case and with any extension: `CON` -> `COＮ`, `aux.txt` -> `auｘ.txt`)

A look-alike that is really in a local name is kept literally by putting `‛` (U+201B) before
it, and so is a `‛` or a `‸` itself; every local name is stored under exactly one name and
comes back exactly.

A share that ignores case cannot hold `A.txt` beside `a.txt`. There the first of such names
(in code point order) keeps its name and each other one is stored with `‸` and a number
before its extension (`a‸0.txt`): the number records which letters are capitals, so the name
comes back exactly and the same file gets the same stored name on every run.
"""

from __future__ import annotations

import posixpath
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping

ESCAPE = "\u201b"  # ‛
CASE_MARK = "\u2038"  # ‸

_CHARS = {c: chr(ord(c) + 0xFEE0) for c in '<>:"\\|?*'}
_CHARS.update({chr(i): chr(0x2400 + i) for i in range(1, 0x20)})
_CHARS["\x7f"] = "\u2421"
_UNCHARS = {v: k for k, v in _CHARS.items()}
_TRAILING = {" ": "\u2420", ".": "\uff0e"}  # ␠ and ．, only as a name's last character
_UNTRAILING = {v: k for k, v in _TRAILING.items()}
_DEVICES = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
            *(f"LPT{i}" for i in range(1, 10))}  # fmt: skip


# Every character either direction may change: what SMB forbids, the escape and case mark,
# the control pictures and full-width forms. A name with none of them (nearly every name)
# maps to itself, but for a device name or a trailing space or dot (encode checks those).
_DECODED_AS_IS = re.compile("[\u201b\u2038\u2400-\u2421\uff01-\uff5e]")
_ENCODED_AS_IS = re.compile('[\x00-\x1f\x7f<>:"\\\\|?*\u201b\u2038\u2400-\u2421\uff01-\uff5e]')


def _wide(c: str) -> str:
    return chr(ord(c) + 0xFEE0)


def _narrow(c: str) -> str:
    return chr(ord(c) - 0xFEE0) if "\uff01" <= c <= "\uff5e" else c


def _device_base(name: str) -> tuple[str, str]:
    """A name split at its first dot: the part Windows checks for device names, and the rest."""
    base, dot, rest = name.partition(".")
    return base, dot + rest


def encode(name: str) -> str:
    """The name under which the share stores a local file or folder name."""
    if (
        not _ENCODED_AS_IS.search(name)
        and name[-1:] not in _TRAILING
        and name.partition(".")[0].upper() not in _DEVICES
    ):
        return name  # the fast path: the same as _encode gives, checked by the tests
    return _encode(name)


def _encode(name: str) -> str:
    base, rest = _device_base(name)
    device = base.upper() in _DEVICES
    # A device name's last character goes full-width; a real full-width one there is escaped.
    literal_wide = bool(base) and _narrow(base[-1]) != base[-1] and (
        (base[:-1] + _narrow(base[-1])).upper() in _DEVICES
    )  # fmt: skip
    out: list[str] = []
    last = len(name) - 1
    for i, c in enumerate(name):
        if device and i == len(base) - 1:
            out.append(_wide(c))
        elif literal_wide and i == len(base) - 1 or c in (ESCAPE, CASE_MARK) or c in _UNCHARS:
            out.append(ESCAPE + c)
        elif c in _CHARS:
            out.append(_CHARS[c])
        elif i == last and c in _TRAILING:
            out.append(_TRAILING[c])
        elif i == last and c in _UNTRAILING:
            out.append(ESCAPE + c)
        else:
            out.append(c)
    return "".join(out)


def decode(stored: str) -> str:
    """The local name of a name stored on the share (the inverse of encode, case mark too)."""
    if not _DECODED_AS_IS.search(stored):
        return stored  # the fast path: the same as _decode gives, checked by the tests
    return _decode(stored)


def _decode(stored: str) -> str:
    tokens: list[tuple[str, bool]] = []  # (character, escaped)
    i = 0
    while i < len(stored):
        if stored[i] == ESCAPE and i + 1 < len(stored):
            tokens.append((stored[i + 1], True))
            i += 2
        else:
            tokens.append((stored[i], False))
            i += 1
    tokens = _without_case_mark(tokens)
    out: list[str] = []
    wide_at: set[int] = set()  # where unescaped full-width characters stand
    for n, (c, escaped) in enumerate(tokens):
        if escaped:
            out.append(c)
        elif c in _UNCHARS:
            out.append(_UNCHARS[c])
        elif n == len(tokens) - 1 and c in _UNTRAILING:
            out.append(_UNTRAILING[c])
        else:
            if _narrow(c) != c:
                wide_at.add(len(out))
            out.append(c)
    name = "".join(out)
    base, _ = _device_base(name)
    if len(base) - 1 in wide_at:
        narrowed = base[:-1] + _narrow(base[-1])
        if narrowed.upper() in _DEVICES:
            name = narrowed + name[len(base) :]
    return name


def _without_case_mark(tokens: list[tuple[str, bool]]) -> list[tuple[str, bool]]:
    """Drop an unescaped `‸` and the hex digits after it from the end of the stem."""
    stem_len = len(_stem("".join(c for c, _ in tokens)))
    end = stem_len
    while end > 0 and not tokens[end - 1][1] and tokens[end - 1][0] in "0123456789abcdef":
        end -= 1
    if end < stem_len and end > 0 and tokens[end - 1] == (CASE_MARK, False):
        return tokens[: end - 1] + tokens[stem_len:]
    return tokens


def _stem(name: str) -> str:
    """A name without its extension (a leading dot starts no extension)."""
    root, ext = posixpath.splitext(name)
    return root if ext else name


def case_marked(name: str) -> str:
    """A stored name that cannot be confused with any other spelling of it on a share that
    ignores case: `‸` and which letters are capitals, before the extension."""
    mask = sum(1 << i for i, c in enumerate(name) if c != c.lower())
    stored = encode(name)
    stem = _stem(stored)
    return f"{stem}{CASE_MARK}{mask:x}{stored[len(stem) :]}"


def store_paths(
    paths: Iterable[str],
    ignore_case: bool,
    on_share: Mapping[str, str] | None = None,
    occupied: Mapping[str, set[str]] | Callable[[], Mapping[str, set[str]]] | None = None,
) -> dict[str, str]:
    """The stored path of every local path (files and folders alike, '/'-separated).

    `on_share` gives the stored path of each local path the share already holds (exactly,
    or renamed locally only in case); `occupied` the case-folded stored names in each
    folder of the share. A name keeps the stored name it has, so nothing already backed up
    moves because a new name appeared beside it; a change of case only takes the new
    spelling; a new name gets its plain stored name unless, on a share that ignores case,
    that is taken, and then a case_marked one. `occupied` may be a function giving it: it
    is then called only when some path is not on the share as it is (a run with nothing
    new never needs it).
    """
    on_share = on_share or {}
    stored_paths: dict[str, str] = {}
    folders: dict[str, list[str]] = defaultdict(list)
    for path in set(paths):
        # Nearly every path of a re-run: on the share under its own name, with nothing in
        # it to map. It stays (each of its folders is such a path too), as the same string.
        if on_share.get(path) == path and not _DECODED_AS_IS.search(path):
            stored_paths[path] = path
        else:
            folders[posixpath.dirname(path)].append(path)
    for members in folders.values():
        members.sort()
    if callable(occupied):
        occupied = occupied() if folders else {}
    occupied = occupied or {}
    names: dict[str, str] = {}
    for folder, members in folders.items():
        taken = set(occupied.get(folder, ()))
        new: list[str] = []
        for path in members:
            name = posixpath.basename(path)
            current = on_share.get(path)
            if current is None:
                new.append(path)
                continue
            stored = posixpath.basename(current)
            if decode(stored) == name:
                names[path] = stored  # as it is: nothing already backed up moves
            elif encode(name).casefold() == stored.casefold():
                names[path] = encode(name)  # renamed only in case: the same slot
            else:
                new.append(path)
        for path in new:
            name = posixpath.basename(path)
            chosen = encode(name)
            if ignore_case and chosen.casefold() in taken:  # members are sorted: first wins
                chosen = case_marked(name)
            taken.add(chosen.casefold())
            names[path] = chosen
    for path in sorted(names):  # sorted, so a folder comes before what is in it
        folder = posixpath.dirname(path)
        prefix = stored_paths.get(folder) if folder else ""
        if prefix is None:
            prefix = "/".join(encode(p) for p in folder.split("/"))
        stored_paths[path] = f"{prefix}/{names[path]}" if prefix else names[path]
    return stored_paths


def decode_path(stored: str) -> str:
    return "/".join(decode(part) for part in stored.split("/"))
