"""The saved profiles: profiles.toml in the config directory.

The file holds a format_version, the name of the profile used last, and one [[profile]] table
per profile with every Profile field. It never holds a password (see credentials.py).

Reading never writes: a file that cannot be read or understood raises ConfigError naming the
file and is left byte-for-byte as it was. Writing goes to a temporary file in the same folder
that is then renamed over profiles.toml, so a reader never sees half a file.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any

import tomli_w

from backdown.errors import ConfigError, UsageError, quoted
from backdown.profile import (
    Profile,
    validate_name,
    validate_notify,
    validate_optional_path,
    validate_profile,
)

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

FILE_NAME = "profiles.toml"
FORMAT_VERSION = 1
DEFAULT_NAME_PREFIX = "profile_"

_HEADER = (
    "# BackDown profiles. Written by backdown: comments added here are not kept.\n"
    "# Passwords are never stored in this file.\n"
)
_TOP_LEVEL_KEYS = {"format_version", "last_used", "profile", "notify", "notify_config"}
_TOML_POSITION_RE = re.compile(
    r"^(?P<reason>.*?)\s*\(at (?:line (?P<line>\d+), column (?P<col>\d+)|end of document)\)$"
)
_PROFILE_HEADER_RE = re.compile(r"^[ \t]*\[\[[ \t]*profile[ \t]*\]\]", re.MULTILINE)
_DEFAULT_NAME_RE = re.compile(re.escape(DEFAULT_NAME_PREFIX) + r"(\d+)")


class ProfileStore:
    """The saved profiles, in file order, and the one used last.

    Names are unique ignoring case: a password is stored under the profile's name, and the
    Windows credential store and the default macOS file system do not tell 'Home' from 'home'.
    """

    def __init__(self, config_dir: Path) -> None:
        self.config_dir = Path(config_dir)
        self.path = self.config_dir / FILE_NAME
        self.profiles: list[Profile] = []
        self.last_used: str | None = None
        # Alert targets for every profile (each profile may name more of its own).
        self.notify: list[str] = []
        self.notify_config = ""
        # The file's bytes when this store last read or wrote it (None: there was no file).
        # save() refuses if the file changed meanwhile, so two backdowns cannot silently
        # overwrite each other's edits.
        self._seen: bytes | None = None

    @classmethod
    def load(cls, config_dir: Path) -> ProfileStore:
        """Read the profiles from config_dir; a missing file gives an empty store.

        Never writes; a config folder that others can use is made 0700 (tighten_private_dir).
        """
        store = cls(config_dir)
        tighten_private_dir(store.config_dir)
        raw = _read_bytes(store.path)
        if raw is not None:
            store._parse(raw)
        store._seen = raw
        return store

    def get(self, name: str) -> Profile:
        """The profile with this name (case ignored); UsageError if there is none."""
        profile = self.find(name)
        if profile is None:
            raise UsageError(
                f"no profile named {quoted(name)}; 'backdown profile list' shows the saved ones"
            )
        return profile

    def find(self, name: str) -> Profile | None:
        """The profile with this name, or None: the exact name first, else the one that
        differs only in case (two names never differ only in case: add refuses it)."""
        exact = next((p for p in self.profiles if p.name == name), None)
        if exact is not None:
            return exact
        return next((p for p in self.profiles if p.name.casefold() == name.casefold()), None)

    def names(self) -> list[str]:
        """The profile names in file order."""
        return [p.name for p in self.profiles]

    def next_default_name(self) -> str:
        """A name for a new profile: profile_N, N one more than the highest profile_N in use.

        Counting up instead of filling gaps means a removed profile's name is not handed to a
        new, unrelated profile (its name may still appear in logs, scripts or the share).
        """
        numbers = [
            int(m.group(1))
            for name in self.names()
            if (m := _DEFAULT_NAME_RE.fullmatch(name.lower()))
        ]
        return f"{DEFAULT_NAME_PREFIX}{max(numbers, default=0) + 1}"

    def add(self, profile: Profile) -> None:
        """Validate a new profile and append it; UsageError if its name is taken."""
        validate_profile(profile)
        self._check_name_free(profile.name)
        self.profiles.append(profile)

    def replace(self, name: str, profile: Profile) -> None:
        """Put an edited profile in place of the one called name; renaming is rename()'s job."""
        index = self._index(name)
        if profile.name != name:
            raise ValueError(
                f"replace() got a profile named {profile.name!r} for {name!r}; use rename()"
            )
        self.profiles[index] = validate_profile(profile)

    def rename(self, old: str, new: str) -> Profile:
        """Rename a profile, keeping last_used pointing at it; returns the renamed profile.

        The caller moves its saved password: credentials.rename_password().
        """
        profile = self.get(old)
        new = validate_name(new)
        if new == old:
            return profile
        self._check_name_free(new, ignore=profile)
        profile.name = new
        if self.last_used == old:
            self.last_used = new
        return profile

    def remove(self, name: str) -> Profile:
        """Remove a profile and return it; the caller forgets its password."""
        profile = self.profiles.pop(self._index(name))
        if self.last_used == name:
            self.last_used = None
        return profile

    def current(self) -> Profile | None:
        """The profile used last if it still exists, else the first one, else None."""
        if self.last_used is not None:
            profile = self.find(self.last_used)
            if profile is not None:
                return profile
        return self.profiles[0] if self.profiles else None

    def set_current(self, name: str) -> None:
        """Remember name as the profile used last."""
        self.last_used = self.get(name).name

    def save(self) -> None:
        """Write the profiles atomically, with mode 0600, creating the config folder (0700).

        Refuses with ConfigError if profiles.toml changed since this store read or wrote it.
        """
        data = self._serialize()
        try:
            ensure_private_dir(self.config_dir)
            # A small window remains between this check and the rename; it only matters if
            # two edits are saved within milliseconds of each other.
            if _read_bytes(self.path) != self._seen:
                raise ConfigError(
                    f"{self.path} was changed by someone else since backdown read it (another "
                    "backdown running?); nothing was saved: start again to see that change"
                )
            write_private_file(self.path, data)
        except OSError as err:
            where = f" ({err.filename})" if err.filename and err.filename != str(self.path) else ""
            raise ConfigError(
                f"cannot save {self.path}: {_reason(err)}{where}; check that its folder is "
                "writable (nothing was changed)"
            ) from err
        self._seen = data

    def _index(self, name: str) -> int:
        profile = self.get(name)
        return next(i for i, p in enumerate(self.profiles) if p is profile)

    def _check_name_free(self, name: str, ignore: Profile | None = None) -> None:
        for other in self.profiles:
            if other is not ignore and other.name.casefold() == name.casefold():
                raise UsageError(
                    f"a profile named {quoted(other.name)} already exists (names are compared "
                    "ignoring case); choose another name"
                )

    def _serialize(self) -> bytes:
        doc: dict[str, Any] = {"format_version": FORMAT_VERSION}
        if self.last_used is not None:
            doc["last_used"] = self.last_used
        if self.notify:
            doc["notify"] = list(self.notify)
        if self.notify_config:
            doc["notify_config"] = self.notify_config
        if self.profiles:
            doc["profile"] = [p.to_dict() for p in self.profiles]
        return (_HEADER + "\n" + tomli_w.dumps(doc)).encode("utf-8")

    def _parse(self, raw: bytes) -> None:
        """Fill the store from the file's bytes; ConfigError says what is wrong and where."""
        path = self.path
        try:
            # utf-8-sig: Windows Notepad starts UTF-8 files with a byte order mark.
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise ConfigError(
                f"cannot read {path}: it is not UTF-8 text (bad byte at offset {err.start}); "
                "fix or move the file away (it was left unchanged)"
            ) from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(
                f"cannot read {path}: invalid TOML {_toml_position(err)}; "
                "fix or move the file away (it was left unchanged)"
            ) from None

        def bad(what: str, fix: str = "fix the file or move it away") -> ConfigError:
            return ConfigError(f"cannot read {path}: {what}; {fix} (it was left unchanged)")

        version = data.get("format_version", 1)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise bad(f"format_version must be a whole number from 1, not {quoted(version)}")
        if version > FORMAT_VERSION:
            raise bad(
                f"it was written by a newer backdown (format_version {version}; this one "
                f"reads up to {FORMAT_VERSION})",
                "upgrade backdown",
            )
        data = _migrate(data)

        unknown = sorted(set(data) - _TOP_LEVEL_KEYS)
        if unknown:
            raise bad(f"unknown setting {quoted(unknown[0])} outside the [[profile]] sections")
        last_used = data.get("last_used")
        if last_used is not None and not isinstance(last_used, str):
            raise bad(f"last_used must be a profile name in quotes, not {quoted(last_used)}")

        try:
            self.notify = validate_notify(data.get("notify", []))
            self.notify_config = validate_optional_path(data.get("notify_config", ""))
        except UsageError as err:
            raise bad(f"notify: {err}") from None

        entries = data.get("profile", [])
        if not isinstance(entries, list):
            raise bad("'profile' must be a list of tables: write each one as [[profile]]")
        lines = _profile_lines(text, len(entries))
        profiles: list[Profile] = []
        for number, entry in enumerate(entries, start=1):
            at = f" (line {lines[number - 1]})" if lines else ""
            label = f"profile #{number}"
            if not isinstance(entry, dict):
                raise bad(f"{label}{at} is not a table: write each profile as a [[profile]]")
            if isinstance(entry.get("name"), str):
                label = f"profile {quoted(entry['name'])}"
            if "password" in entry:
                name = entry.get("name", "NAME")
                raise bad(
                    f"{label}{at} has a password, which this file must never hold",
                    f"remove that line and run 'backdown profile edit {name} --password-stdin'",
                )
            try:
                profile = Profile.from_dict(dict(entry))
            except (UsageError, TypeError, ValueError) as err:
                raise bad(f"{label}{at}: {err}") from None
            for index, other in enumerate(profiles):
                if other.name.casefold() == profile.name.casefold():
                    first = f" (line {lines[index]})" if lines else ""
                    raise bad(
                        f"profiles {quoted(other.name)}{first} and {quoted(profile.name)}{at} "
                        "have the same name (names are compared ignoring case)",
                        "rename or remove one of them",
                    )
            profiles.append(profile)
        self.profiles = profiles
        self.last_used = last_used


def _migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Upgrade data from an older format_version to FORMAT_VERSION.

    Version 1 is the first format, so there is nothing to do yet. When the format changes,
    bump FORMAT_VERSION and add one step per version here, e.g.
    `if data.get("format_version", 1) == 1: data = _v1_to_v2(data)`, each step setting the
    new format_version. The upgraded file is written at the next save().
    """
    return data


def _read_bytes(path: Path) -> bytes | None:
    """The file's bytes, or None if it does not exist; ConfigError if it cannot be read."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise ConfigError(f"cannot read {path}: it is a folder, not a file; move it away") from None
    except PermissionError:
        raise ConfigError(
            f"cannot read {path}: permission denied; make it readable by you (chmod 600 {path})"
        ) from None
    except OSError as err:
        raise ConfigError(
            f"cannot read {path}: {_reason(err)}; check the file and its folder"
        ) from None


def _toml_position(err: tomllib.TOMLDecodeError) -> str:
    """'at line N, column M (reason)' from a TOML error, in the words we use."""
    match = _TOML_POSITION_RE.match(str(err))
    if match is None:
        return f"({err})"
    reason = match["reason"][:1].lower() + match["reason"][1:]
    if match["line"] is None:
        return f"at the end of the file ({reason})"
    return f"at line {match['line']}, column {match['col']} ({reason})"


def _profile_lines(text: str, count: int) -> list[int]:
    """The line of each [[profile]] header, or [] if they cannot be matched up cheaply."""
    starts = [text.count("\n", 0, m.start()) + 1 for m in _PROFILE_HEADER_RE.finditer(text)]
    # Inline tables or headers inside multi-line strings would throw the count off;
    # then no line number is better than a wrong one.
    return starts if len(starts) == count else []


def _reason(err: OSError) -> str:
    return (err.strerror or str(err)).lower()


def tighten_private_dir(path: Path) -> None:
    """Make an existing folder that other users can use 0700; a missing one is left alone.

    It holds the profiles, the locks and maybe saved passwords, so group or other bits are
    never kept. ConfigError, one line saying what to do, when chmod is refused (someone
    else owns the folder).
    """
    if os.name != "posix":
        return  # Windows reports made-up modes; its folders are private by their ACLs
    try:
        info = os.stat(path)
    except OSError:
        return  # missing, or not reachable: whoever uses it next says why
    mode = stat.S_IMODE(info.st_mode)
    if not stat.S_ISDIR(info.st_mode) or not mode & 0o077:
        return
    if mode & stat.S_ISVTX or info.st_uid != os.geteuid():
        # A shared folder such as /tmp (sticky bit), or someone else's: never change it.
        raise ConfigError(
            f"the config folder {path} is shared with other users (mode {mode:04o}); choose "
            "a folder of your own with --config-dir (BackDown keeps passwords there)"
        )
    try:
        os.chmod(path, 0o700)
    except OSError as err:
        raise ConfigError(
            f"the config folder {path} is open to other users (mode {mode:04o}) and cannot "
            f"be made private ({_reason(err)}); have its owner run: chmod 700 {path}, or "
            "choose another folder with --config-dir"
        ) from None


def ensure_private_dir(path: Path) -> None:
    """Create a folder readable only by its owner (0700) if it does not exist.

    An existing folder that others can use is made 0700 (tighten_private_dir).
    """
    if path.is_dir():
        tighten_private_dir(path)
        return
    if path.exists():
        raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        if not path.is_dir():
            raise
        return
    # mkdir's mode is filtered by the umask; set it exactly.
    os.chmod(path, 0o700)


def write_private_file(path: Path, data: bytes) -> None:
    """Replace path with data atomically; the file is 0600 from the moment it exists.

    Writes a temporary file in the same folder, fsyncs it, renames it over path and fsyncs
    the folder. A symlink at path is followed, so a dotfiles link keeps working. Raises
    OSError; on failure the old file is untouched and the temporary file is removed.
    """
    target = Path(os.path.realpath(path))
    # mkstemp opens with O_CREAT | O_EXCL and mode 0600: no moment where others can read.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        raise
    _fsync_dir(target.parent)


def _fsync_dir(path: Path) -> None:
    """Make a rename in path durable; a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
