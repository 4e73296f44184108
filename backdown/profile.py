"""A backup profile and the rules for each of its fields.

The validators are shared by the menu prompts and the command line: each returns the
normalised value or raises UsageError with one line saying why.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from backdown.errors import UsageError, quoted
from backdown.run_options import DEFAULT_TRANSFERS, MAX_TRANSFERS
from backdown.schedule import Schedule
from backdown.share_names import encode

DEFAULT_PORT = 445
MODES = ("copy", "mirror")
DEFAULT_KEEP_VERSIONS_DAYS = 30

PLACEHOLDERS = ("computer", "user", "date")
_PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_]*)\}")
# A profile name is also a file name (its lock, its own credentials file): letters, digits,
# '.', '_', '-' and single spaces between them ("Alice Laptop").
_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]| (?=[A-Za-z0-9._-])){0,63}$")
_HOST_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
# Characters Windows refuses in share and file names.
_BAD_SMB_CHARS = set('"*:<>?|')
_BAD_SHARE_CHARS = _BAD_SMB_CHARS | set("/\\[];,+=")


def default_client_name() -> str:
    """This computer's name as a NetBIOS name: at most 15 characters, no spaces or punctuation."""
    host = socket.gethostname().split(".")[0]
    cleaned = re.sub(r"[^A-Za-z0-9-]", "", host).upper()[:15]
    return cleaned or "BACKDOWN"


@dataclass
class Profile:
    """Where to back up from and to. Holds no password: see credentials.py."""

    name: str
    local: str
    server: str
    share: str
    remote_folder: str = ""
    port: int = DEFAULT_PORT
    user: str = ""
    domain: str = ""
    client_name: str = field(default_factory=default_client_name)
    credentials_file: str = ""
    mode: str = "copy"
    keep_versions_days: int = DEFAULT_KEEP_VERSIONS_DAYS
    excludes: list[str] = field(default_factory=list)
    # Snapshots kept beside the last keep_versions_days: the newest of each of the last N
    # days, weeks, months with one (0: that rule is off).
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    # The transport: auto (pysmb, or SMB 3 when the server needs it), smb2 or smb3; and
    # whether to require encryption even where the server does not.
    protocol: str = "auto"
    encrypt: bool = False
    # How to log on: auto (the password when there is one, else the user's Kerberos ticket
    # if any; a server that refuses NTLM gets the ticket), password (NTLM) or kerberos.
    auth: str = "auto"
    # Parallel connections a run uses (a run's --transfers overrides it).
    transfers: int = DEFAULT_TRANSFERS
    # The schedule (see schedule.py); schedule_every "" means none.
    schedule_every: str = ""
    schedule_between: str = ""
    schedule_days: str = ""
    # Alerts: Apprise URLs, an Apprise config file (for URLs that carry a password), and a
    # healthchecks-style ping URL.
    notify: list[str] = field(default_factory=list)
    notify_config: str = ""
    ping_url: str = ""

    @property
    def schedule(self) -> Schedule | None:
        if not self.schedule_every:
            return None
        return Schedule.parse(self.schedule_every, self.schedule_between, self.schedule_days)

    @property
    def unc(self) -> str:
        """The remote location as a user reads it: //server/share/folder."""
        host = f"[{self.server}]" if ":" in self.server else self.server
        tail = f"/{self.remote_folder}" if self.remote_folder else ""
        port = "" if self.port == DEFAULT_PORT else f" (port {self.port})"
        return f"//{host}/{self.share}{tail}{port}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        """Build a profile from saved data, validating every field; unknown keys are refused."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"unknown setting {quoted(unknown[0])}")
        for required in ("name", "local", "server", "share"):
            if required not in data:
                raise UsageError(f"missing setting {quoted(required)}")
        return validate_profile(cls(**data))


def validate_profile(p: Profile) -> Profile:
    """Check and normalise every field of a profile."""
    p.name = validate_name(p.name)
    p.local = validate_local(p.local)
    p.server = validate_server(p.server)
    p.share = validate_share(p.share)
    p.remote_folder = validate_remote_folder(p.remote_folder)
    p.port = validate_port(p.port)
    p.user, p.domain = split_domain_user(validate_user(p.user), validate_domain(p.domain))
    p.client_name = validate_client_name(p.client_name)
    p.credentials_file = validate_optional_path(p.credentials_file)
    p.mode = validate_mode(p.mode)
    p.keep_versions_days = validate_keep_days(p.keep_versions_days)
    p.excludes = validate_excludes(p.excludes)
    p.keep_daily = _count(p.keep_daily, "keep_daily")
    p.keep_weekly = _count(p.keep_weekly, "keep_weekly")
    p.keep_monthly = _count(p.keep_monthly, "keep_monthly")
    p.protocol = validate_protocol(p.protocol)
    p.encrypt = validate_flag(p.encrypt, "encrypt")
    p.auth = validate_auth(p.auth)
    p.transfers = validate_transfers(p.transfers)
    if p.auth == "kerberos" and p.protocol == "smb2":
        raise UsageError(
            "a Kerberos logon needs the SMB 3 transport (pysmb, protocol smb2, has NTLM only): "
            "use protocol auto or smb3"
        )
    p.schedule_every, p.schedule_between, p.schedule_days = validate_schedule(
        p.schedule_every, p.schedule_between, p.schedule_days
    )
    p.notify = validate_notify(p.notify)
    p.notify_config = validate_optional_path(p.notify_config)
    p.ping_url = validate_ping_url(p.ping_url)
    return p


def validate_name(value: object) -> str:
    name = str(value).strip()
    if not _NAME_RE.match(name):
        raise UsageError(
            "a profile name must start with a letter or digit and use only letters, digits, "
            "'.', '_', '-' and single spaces (at most 64 characters)"
        )
    return name


def validate_local(value: object) -> str:
    text = str(value).strip()
    if not text:
        raise UsageError("the local folder cannot be empty")
    return os.path.abspath(os.path.expanduser(text))


def validate_server(value: object) -> str:
    text = str(value).strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if not text:
        raise UsageError("the server cannot be empty: give an IP address or a host name")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    host = text.rstrip(".")
    unc = parse_unc(text)
    if unc is not None:
        server, share, folder = unc
        where = f" --share {share}" + (f" --remote-folder {folder}" if folder else "")
        raise UsageError(f"{quoted(text)} is a path, not a server: give --server {server}{where}")
    if len(host) > 253 or not all(_HOST_LABEL_RE.match(label) for label in host.split(".")):
        raise UsageError(
            f"{quoted(text)} is not an IPv4 address, IPv6 address or host name (no spaces, slashes "
            "or ports here: the port has its own setting)"
        )
    return host


def parse_unc(text: str) -> tuple[str, str, str] | None:
    """Server, share and folder from a path as Windows Explorer or a Mac shows it
    (\\\\server\\share\\folder, //server/share/folder, smb://server/share/folder), or None
    when the text is not one. The folder uses '/'; it may be empty."""
    value = text.strip()
    lowered = value.lower()
    if lowered.startswith("smb://"):
        value = value[len("smb://") :]
    elif value.startswith(("\\\\", "//")):
        value = value[2:]
    else:
        return None
    parts = [p for p in value.replace("\\", "/").split("/") if p]
    if len(parts) < 2:
        return None
    server = parts[0].split("@")[-1]  # smb://user@server/share
    return server, parts[1], "/".join(parts[2:])


def validate_port(value: object) -> int:
    return _number_in(value, 1, 65535, "the port")


def _number_in(value: object, low: int, high: int, what: str) -> int:
    """A whole number from low to high, or UsageError saying which range."""
    try:
        number = int(str(value).strip())
    except ValueError:
        raise UsageError(
            f"{what} must be a number from {low} to {high}, not {quoted(value)}"
        ) from None
    if not low <= number <= high:
        raise UsageError(f"{what} must be a number from {low} to {high}, not {number}")
    return number


def validate_share(value: object) -> str:
    share = str(value).strip()
    if not share:
        raise UsageError("the share cannot be empty: give the share's name, like 'backup'")
    bad = sorted(set(share) & _BAD_SHARE_CHARS)
    if bad:
        raise UsageError(
            f"a share name cannot contain {' '.join(bad)}: give only the share's name "
            "(the folder inside it has its own setting)"
        )
    if len(share) > 80 or any(ord(c) < 32 for c in share):
        raise UsageError("the share name is too long or contains control characters")
    return share


def validate_remote_folder(value: object) -> str:
    """Normalise a folder inside the share to 'a/b' form; '' is the share's root.

    It may hold {computer}, {user} and {date}, filled in on each computer at each run (see
    expand_remote_folder), so that one profile serves every PC.
    """
    text = str(value or "").strip().replace("\\", "/")
    parts = [p for p in text.split("/") if p]
    for field_name in _PLACEHOLDER_RE.findall(text):
        if field_name not in PLACEHOLDERS:
            raise UsageError(
                f"the folder inside the share has an unknown placeholder {{{field_name}}}: "
                f"use {', '.join('{' + p + '}' for p in PLACEHOLDERS)}"
            )
    if _PLACEHOLDER_RE.sub("", text).count("{") or _PLACEHOLDER_RE.sub("", text).count("}"):
        raise UsageError(
            "the folder inside the share has a '{' or '}' that is not part of a placeholder "
            "like {computer}"
        )
    for part in parts:
        if part in (".", ".."):
            raise UsageError("the folder inside the share cannot contain '.' or '..'")
        bad = sorted(set(part) & _BAD_SMB_CHARS)
        if bad or any(ord(c) < 32 for c in part):
            shown = " ".join(bad) or "control characters"
            raise UsageError(f"the folder inside the share cannot contain {shown}")
    return "/".join(parts)


def expand_remote_folder(folder: str, computer: str, user: str, today: str) -> str:
    """The folder with {computer}, {user} and {date} (YYYY-MM-DD) filled in.

    A value that a share cannot hold as one folder name (a '/' or a character Windows
    refuses) is refused, rather than quietly backing up somewhere else.
    """
    values = {"computer": computer, "user": user, "date": today}

    def fill(match: re.Match[str]) -> str:
        value = values[match.group(1)]
        if not value.strip(" .") or "/" in value or "\\" in value:
            raise UsageError(
                f"{{{match.group(1)}}} in the remote folder would be {quoted(value)}, which cannot "
                "be a folder name on the share; change the remote folder"
            )
        # Stored as any file name is: a trailing dot or space, 'con', ':' and the like come
        # out as names every server can hold (share_names.encode), the same on every run.
        return encode(value)

    return validate_remote_folder(_PLACEHOLDER_RE.sub(fill, folder))


def validate_user(value: object) -> str:
    """A user name, 'user@domain' or 'DOMAIN\\user' (split by split_domain_user)."""
    user = str(value or "").strip()
    if any(ord(c) < 32 for c in user) or any(c in user for c in '"/[]:;|=,+*?<>'):
        raise UsageError("the user name contains characters SMB does not allow")
    if "\\" in user:
        domain, _, name = user.partition("\\")
        if not domain.strip() or not name.strip() or "\\" in name:
            raise UsageError("give the user name as USER or DOMAIN\\USER (one backslash)")
        validate_domain(domain)
        user = f"{domain.strip()}\\{name.strip()}"
    return user


def split_domain_user(user: str, domain: str) -> tuple[str, str]:
    """(user, domain) from a validated user name that may be 'DOMAIN\\user'.

    'user@domain' stays as it is: NTLM takes it as given. A DOMAIN\\ part that disagrees
    with a domain given as well is a UsageError.
    """
    if "\\" not in user:
        return user, domain
    named, _, user = user.partition("\\")
    if domain and domain.casefold() != named.casefold():
        raise UsageError(
            f"the user name says domain {quoted(named)} but the domain is {quoted(domain)}; "
            "give one domain, or the same one in both"
        )
    return user, domain or named


def validate_domain(value: object) -> str:
    domain = str(value or "").strip()
    if any(ord(c) < 32 for c in domain) or any(c in domain for c in '"/\\[]:;|=,+*?<> '):
        raise UsageError("the domain contains characters SMB does not allow")
    return domain


def validate_client_name(value: object) -> str:
    name = str(value or "").strip().upper()
    if not name:
        return default_client_name()
    if not re.match(r"^[A-Z0-9-]{1,15}$", name):
        raise UsageError("the client name must be 1 to 15 letters, digits or '-'")
    return name


def validate_optional_path(value: object) -> str:
    text = str(value or "").strip()
    return os.path.abspath(os.path.expanduser(text)) if text else ""


def validate_mode(value: object) -> str:
    mode = str(value).strip().lower()
    if mode not in MODES:
        raise UsageError(f"the mode must be 'copy' or 'mirror', not {quoted(value)}")
    return mode


def validate_keep_days(value: object) -> int:
    try:
        days = int(str(value).strip())
    except ValueError:
        raise UsageError(
            f"keep_versions_days must be a whole number, not {quoted(value)}"
        ) from None
    if days < 0:
        raise UsageError("keep_versions_days cannot be negative")
    return days


def validate_protocol(value: object) -> str:
    text = str(value or "auto").strip().lower()
    if text not in ("auto", "smb2", "smb3"):
        raise UsageError(f"the protocol must be auto, smb2 or smb3, not {quoted(value)}")
    return text


AUTH_METHODS = ("auto", "password", "kerberos")


def validate_auth(value: object) -> str:
    text = str(value or "auto").strip().lower()
    if text not in AUTH_METHODS:
        raise UsageError(f"auth must be auto, password or kerberos, not {quoted(value)}")
    return text


def validate_flag(value: object, what: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("yes", "true", "on", "1"):
        return True
    if text in ("no", "false", "off", "0", ""):
        return False
    raise UsageError(f"{what} must be yes or no, not {quoted(value)}")


def validate_transfers(value: object) -> int:
    """Parallel connections: 1 to MAX_TRANSFERS (a server gives each its own smbd)."""
    return _number_in(value, 1, MAX_TRANSFERS, "transfers")


def _count(value: object, what: str) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise UsageError(f"{what} must be a whole number, not {quoted(value)}") from None
    if not 0 <= number <= 10_000:
        raise UsageError(f"{what} must be from 0 to 10000")
    return number


def validate_excludes(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError("excludes must be a list of patterns")
    return [v for v in (s.strip() for s in value) if v]


def validate_schedule(every: object, between: object, days: object) -> tuple[str, str, str]:
    """The schedule's three settings in their shortest form; every '' means no schedule."""
    every_text = str(every or "").strip()
    if not every_text:
        if str(between or "").strip() or str(days or "").strip():
            raise UsageError("a time range or weekdays need an interval too: give --every")
        return "", "", ""
    schedule = Schedule.parse(every_text, str(between or ""), str(days or ""))
    days_shown = "" if schedule.days == frozenset(range(7)) else schedule.days_text
    return schedule.every_text, schedule.window_text, days_shown


def validate_notify(value: object) -> list[str]:
    """Notification target URLs (Apprise's form: mailto://, ntfy://, json://, ...).

    A URL holding a password (user:password@) is refused: profiles.toml never holds a
    password. Such targets go into an Apprise config file named by notify_config.
    """
    urls = validate_excludes(value)  # the same shape: a list of non-empty strings
    for url in urls:
        _check_url(url, "a notification target")
    return urls


def validate_ping_url(value: object) -> str:
    url = str(value or "").strip()
    if url:
        _check_url(url, "the ping URL")
        if not url.lower().startswith(("http://", "https://")):
            raise UsageError("the ping URL must start with http:// or https://")
    return url


def _check_url(url: str, what: str) -> None:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        raise UsageError(f"{what} is not a URL: give it as scheme://...") from None
    if not parts.scheme or "://" not in url or any(c.isspace() for c in url):
        raise UsageError(f"{what} is not a URL: give it as scheme://... (no spaces)")
    if password:
        raise UsageError(
            f"{what} holds a password, which BackDown never keeps in profiles.toml: put the "
            "URL in an Apprise config file (mode 600) and give it with --notify-config FILE"
        )
