"""Notifications: Apprise messages for failed, overdue and recovered backups, and a
healthchecks-style ping.

Nothing here raises and nothing here fails a backup: a notification that cannot be
delivered becomes one line in the list send() returns (and in the log). Targets are shown
and logged only through redact(), never whole: a Slack or ntfy URL's path is a secret, and
the Apprise config file exists so that URLs holding passwords stay out of profiles.toml.

Apprise is imported inside the functions that use it: most runs never send anything.
Every wait has a deadline: each target is sent to in a daemon thread that send() gives up
on when its time is over, so a server that never answers cannot hold a scheduled run (or
the process's exit) hostage.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote, unquote_plus

from backdown.errors import quoted

if TYPE_CHECKING:
    import apprise

log = logging.getLogger("backdown.alerts")

# BackDown's kinds of message -> Apprise's notify types (a service's colour or icon).
NOTIFY_TYPES = {
    "failure": "failure",
    "overdue": "warning",
    "locked": "warning",
    "recovered": "success",
    "report": "info",
    "test": "info",
}

# healthchecks.io's ping API: the URL itself is "success".
PING_SUFFIXES = {"start": "/start", "success": "", "fail": "/fail"}
PING_BODY_LIMIT = 10 * 1024

# An Apprise config file is a few lines; anything much bigger is not one.
CONFIG_FILE_LIMIT = 1024 * 1024

# A problem line quotes at most this much of what a service said.
REASON_LIMIT = 200

_URL = re.compile(r"\s*([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)")
_NETLOC = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?")
_DNS_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_IPV4 = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
# scheme://[user[:password]@]host[:port][path][?query]; the path keeps any #fragment.
_PARTS = re.compile(r"\s*[^:/?#]+://(?:([^/?#]*)@)?([^/?#]*)([^?]*)(?:\?(.*))?", re.S)


@dataclass(frozen=True)
class Targets:
    """Where a profile's notifications go."""

    urls: tuple[str, ...] = ()
    # An Apprise config file (text or YAML), for URLs that carry a password. Refused when
    # other users can read or change it, like a credentials file.
    config_file: str = ""
    ping_url: str = ""

    @property
    def empty(self) -> bool:
        """True when there is nothing to notify and nothing to ping."""
        return not (self.urls or self.config_file or self.ping_url)


@dataclass(frozen=True)
class Message:
    """One notification: a title, a plain-text body and what kind of news it is."""

    title: str
    body: str
    kind: str  # a key of NOTIFY_TYPES: "failure", "overdue", "recovered", ...


@dataclass(frozen=True)
class _Delivery:
    """One Apprise service to send to, and the name it is shown by."""

    label: str
    service: apprise.Apprise


class _Job:
    """One piece of work in a daemon thread, waited for until a deadline. The work returns
    None or what went wrong (the caller puts the target's label in front).

    A daemon so that a service that never answers cannot keep BackDown from exiting; the
    abandoned thread ends on its own socket timeout or with the process.
    """

    def __init__(self, label: str, work: Callable[[], str | None]) -> None:
        self.label = label
        self._work = work
        self.problem: str | None = "not delivered (it stopped without an answer)"
        self._thread = threading.Thread(target=self._run, name="backdown-alert", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.problem = self._work()
        except Exception as err:
            # The exception's text may quote a URL; its type is enough to go on.
            self.problem = f"not delivered (unexpected {type(err).__name__})"

    def wait(self, deadline: float) -> bool:
        """Wait for the work until the monotonic deadline; True if it finished."""
        self._thread.join(max(0.0, deadline - time.monotonic()))
        return not self._thread.is_alive()


class _LogPrivacy(logging.Filter):
    """Keeps secrets out of the logs of the libraries that send: apprise's debug lines
    quote whole URLs and config files (passwords included) and urllib3's quote request
    paths (a Slack or ntfy token). Installed on those loggers, so that no handler (the
    CLI's, a test's) ever sees such a line; BackDown logs one redacted line per problem.

    Drops apprise's records below WARNING, all of them while quiet() (reading a config
    file: its complaints quote the lines, passwords and all), and any record that holds a
    secret of a target sent to in this process (kept for the process's life: an abandoned
    send may still log).
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._secrets: frozenset[str] = frozenset()
        self._quiet = threading.local()  # filters run in the thread that logs

    def learn(self, secrets: tuple[str, ...]) -> None:
        """Add secrets to those no log line may hold."""
        with self._lock:
            self._secrets = self._secrets | {secret.lower() for secret in secrets}

    @contextmanager
    def quiet(self) -> Iterator[None]:
        """Drop every apprise record this thread logs meanwhile."""
        self._quiet.on = True
        try:
            yield
        finally:
            self._quiet.on = False

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("apprise") and (
            record.levelno < logging.WARNING or getattr(self._quiet, "on", False)
        ):
            return False
        try:
            text = record.getMessage().lower()
        except Exception:
            return False  # a record that cannot be formatted cannot be checked
        return not _mentions(text, tuple(self._secrets))


_PRIVACY = _LogPrivacy()
# apprise's own logger, and the one through which requests (used by apprise) logs requests.
_FILTERED_LOGGERS = ("apprise", "urllib3.connectionpool")


def send(targets: Targets, message: Message, *, timeout: float = 30.0) -> list[str]:
    """Send the message to every URL of targets and every URL in its config file.

    Returns one line per problem (an empty list: all delivered), each already logged.
    Never raises. All targets are sent to at once, each in a daemon thread; those not done
    after `timeout` seconds are given up on and reported as timed out. The ping URL is
    not used here: see ping().
    """
    problems: list[str] = []
    try:
        deliveries = _load(targets, problems)
        deadline = time.monotonic() + max(0.0, timeout)
        jobs = [_Job(delivery.label, _sender(delivery, message)) for delivery in deliveries]
        for job in jobs:
            if not job.wait(deadline):
                problems.append(f"{job.label}: timed out after {timeout:g} s")
            elif job.problem:
                problems.append(f"{job.label}: {job.problem}")
    except Exception as err:
        # A bug here must not fail the backup; the type says enough, the text may not be safe.
        problems.append(f"notifications not sent: unexpected {type(err).__name__}")
    for problem in problems:
        log.info("%s", problem)  # at info: the caller decides what the user sees
    return problems


def ping(url: str, event: str, body: str = "", *, timeout: float = 10.0) -> str | None:
    """Ping a healthchecks.io-style URL: POST to url + "/start", url, or url + "/fail"
    for the events "start", "success" and "fail", with body (the run's summary, cut to
    10 KB) as the request body.

    Returns None when the server answered 2xx, else one line saying what went wrong (also
    logged). Never raises; gives up after `timeout` seconds, name lookup included.
    """
    shown = f"ping {redact(url)}"
    try:
        job = _Job(shown, lambda: _ping(url, event, body, timeout))
        if not job.wait(time.monotonic() + max(0.0, timeout)):
            problem: str | None = f"timed out after {timeout:g} s"
        else:
            problem = job.problem
        # The URL's path is the check's secret; an error that quotes it says too much.
        if problem and _mentions(problem, _secret_parts(url, "")):
            problem = "failed"
    except Exception as err:
        problem = f"not sent (unexpected {type(err).__name__})"
    if problem is None:
        return None
    log.info("%s: %s", shown, problem)
    return f"{shown}: {problem}"


def redact(url: str) -> str:
    """What may be shown or logged of a target: its scheme and host, e.g.
    'mailto://mail.example.com' or 'json://127.0.0.1:8080'.

    Never the user, password, path or query. A "host" that does not look like a host name
    or an IP address is shown as *** (Slack, Discord, Telegram and ntfy put tokens where
    the host would be); something that is not scheme://... at all is '(not a URL)'.
    """
    match = _URL.match(url)
    if not match:
        return "(not a URL)"
    scheme = match.group(1).lower()
    # After the last "@": what comes before it is a user and maybe a password.
    netloc = match.group(2).rpartition("@")[2]
    return f"{scheme}://{_public_host(netloc) or '***'}"


def check_url(url: str) -> str | None:
    """None if Apprise knows the URL as exactly one notification target, else one line
    saying it does not (with the URL redacted)."""
    try:
        if _service_for(url) is not None:
            return None
    except Exception:
        pass
    return (
        f"not a notification URL Apprise knows: {redact(url)}; see the Apprise wiki for the forms"
    )


# --------------------------------------------------------------------------- sending


def _load(targets: Targets, problems: list[str]) -> list[_Delivery]:
    """The services to send to, one per URL; what cannot be used goes to problems."""
    deliveries: list[_Delivery] = []
    for url in targets.urls:
        service = _service_for(url)
        if service is None:
            problems.append(check_url(url) or f"{redact(url)}: not usable")
        else:
            deliveries.append(_delivery(redact(url), url, service))
    if targets.config_file:
        deliveries.extend(_config_deliveries(targets.config_file, problems))
    return deliveries


def _service_for(url: str) -> apprise.Apprise | None:
    """An Apprise holding the one service url names, or None if Apprise does not know it."""
    asset = _asset()
    import apprise

    service = apprise.Apprise(asset=asset)
    with _PRIVACY.quiet():  # its complaints may quote the URL; check_url() says it in one line
        added = service.add(url)
    # add() splits a string at commas and spaces; one target must be one service.
    return service if added and len(service) == 1 else None


def _config_deliveries(path: str, problems: list[str]) -> list[_Delivery]:
    """The services listed in an Apprise config file; problems if it cannot be used."""
    text = _read_config_file(path, problems)
    if text is None:
        return []
    asset = _asset()
    import apprise

    # No "include" lines followed: they could fetch more config over the network, with no
    # deadline of ours; BackDown's config file is a list of URLs.
    config = apprise.AppriseConfig(asset=asset, recursion=0)
    with _PRIVACY.quiet():
        found = config.services() if config.add_config(text, asset=asset) else []
    if not found:
        problems.append(
            f"notification config file {path} holds no URL Apprise knows (or a line it "
            "cannot read); see the Apprise wiki for its text and YAML forms"
        )
    deliveries = []
    for plugin in found:
        service = apprise.Apprise(asset=asset)
        service.add(plugin)
        # Apprise's private form already hides passwords; redact() hides the rest.
        label = f"{redact(plugin.url(privacy=True))} (from {path})"
        deliveries.append(_delivery(label, plugin.url(privacy=False), service))
    return deliveries


def _delivery(label: str, written: str, service: apprise.Apprise) -> _Delivery:
    """A delivery to the one service in `service`, its secrets known to the log filter."""
    plugin = next(iter(service))
    _PRIVACY.learn(_secret_parts(written, plugin.url(privacy=True)))
    return _Delivery(label, service)


def _read_config_file(path: str, problems: list[str]) -> str | None:
    """The text of an Apprise config file, or None (and a problem) if it cannot be used:
    missing, unreadable, not UTF-8, or open to other users."""
    what = f"notification config file {path}"
    try:
        # O_NONBLOCK: a FIFO put where the file should be must not hang the run.
        fd = os.open(os.path.expanduser(path), os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        problems.append(f"{what} does not exist; create it (mode 600) or change the profile")
        return None
    except OSError as err:
        problems.append(f"cannot read {what}: {(err.strerror or 'error').lower()}")
        return None
    try:
        # fstat the open file, not the path: the file checked is the file read.
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            problems.append(f"{what} is not a file; give a file")
            return None
        mode = stat.S_IMODE(info.st_mode)
        # Windows has no such modes (os.stat reports 0666), so the check is POSIX only.
        if os.name == "posix" and mode & 0o077:
            how = "readable" if mode & 0o044 else "writable" if mode & 0o022 else "usable"
            problems.append(
                f"{what} is {how} by other users (mode {mode:04o}), so it was not used; "
                f"run: chmod 600 {path}"
            )
            return None
        with os.fdopen(fd, "rb", closefd=False) as file:
            raw = file.read(CONFIG_FILE_LIMIT + 1)
    except OSError as err:
        problems.append(f"cannot read {what}: {(err.strerror or 'error').lower()}")
        return None
    finally:
        os.close(fd)
    if len(raw) > CONFIG_FILE_LIMIT:
        problems.append(f"{what} is larger than {CONFIG_FILE_LIMIT // 1024} KB; not used")
        return None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        # The decoder's message quotes the bad byte, which may belong to a password.
        problems.append(f"{what} is not UTF-8 text; save it as UTF-8")
        return None


def _sender(delivery: _Delivery, message: Message) -> Callable[[], str | None]:
    """The work of sending message to one service: None if delivered, else a problem."""

    def work() -> str | None:
        import apprise

        notify_type = apprise.NotifyType(NOTIFY_TYPES.get(message.kind, "info"))
        with delivery.service.notify(
            body=message.body or message.title,
            title=message.title,
            notify_type=notify_type,
            body_format=apprise.NotifyFormat.TEXT,
        ) as result:
            if result:
                return None
            said = [entry.message for entry in result.logs()]
        reason = _reason(said)
        return f"not delivered ({reason})" if reason else "not delivered"

    return work


def _reason(said: list[str]) -> str:
    """The last thing Apprise said about a failed delivery, on one line.

    Apprise's warnings say what the service answered ("error=500"), worth showing; one that
    quotes a secret of the URL never gets this far: _LogPrivacy drops it on the way in.
    """
    for text in reversed(said):
        line = _one_line(text).rstrip(".")
        if line:
            return line
    return ""


def _mentions(text: str, secrets: tuple[str, ...]) -> bool:
    """True if text holds any of secrets, in any case."""
    lowered = text.lower()
    return any(secret.lower() in lowered for secret in secrets)


def _secret_parts(written: str, private: str) -> tuple[str, ...]:
    """What a problem line or a log line about a target must never contain: the user,
    password and path of its URL as written (and unquoted), its host when redact() hides
    it, and the query values Apprise's private form of the URL hides. (The values it shows
    are settings, such as method=POST; counting them would keep most of Apprise's
    explanations out of the problem lines.)"""
    userinfo, host, path, query = _url_parts(written)
    settings = set(_url_parts(private)[3])
    shown = _public_host(host).lower()
    pieces = [userinfo, path] + [value for value in query if value not in settings]
    if not shown:
        pieces.append(host)
    forms = {
        form
        for text in pieces
        for piece in [text, *re.split(r"[/?&#:@=,;+\s]+", text)]
        for form in (piece, unquote(piece), unquote_plus(piece))
    }
    # Shorter pieces (a port, "to", "tls") would keep most reasons out and hide no secret.
    return tuple(sorted(f for f in forms if len(f) >= 4 and f.lower() not in shown))


def _url_parts(url: str) -> tuple[str, str, str, list[str]]:
    """(user and password, host and port, path, query values) of a scheme://... URL, as
    written; all of something that is not such a URL counts as user and password."""
    match = _PARTS.match(url)
    if not match:
        return url, "", "", []
    userinfo, host, path, query = (group or "" for group in match.groups())
    values = [pair.partition("=")[2] for pair in query.split("&")]
    return userinfo, host, path, [value for value in values if value]


def _public_host(netloc: str) -> str:
    """netloc (host[:port]) if its host looks like a host name or an IP address, else ''."""
    match = _NETLOC.fullmatch(netloc)
    if not match:
        return ""
    host = match.group(1)
    labels = host.split(".")
    looks_like_host = (
        host.startswith("[")
        or host.lower() == "localhost"
        or _IPV4.fullmatch(host) is not None
        # A DNS name: labels of letters, digits and '-', the last one letters only (a
        # token such as Pushbullet's "o.Xy3..." has a dot but no such ending).
        or (
            len(labels) >= 2
            and all(_DNS_LABEL.fullmatch(label) for label in labels)
            and labels[-1].isalpha()
        )
    )
    return netloc.lower() if looks_like_host else ""


# --------------------------------------------------------------------------- ping


def _ping(url: str, event: str, body: str, timeout: float) -> str | None:
    """One ping request; None if answered 2xx, else what went wrong."""
    suffix = PING_SUFFIXES.get(event)
    if suffix is None:
        return f"unknown event {quoted(event)} (start, success or fail)"
    if not url.strip().lower().startswith(("http://", "https://")):
        return "not sent; the ping URL must start with http:// or https://"
    # Cut at a character boundary, so the body stays valid UTF-8.
    data = body.encode("utf-8")[:PING_BODY_LIMIT].decode("utf-8", "ignore").encode("utf-8")
    import urllib.error  # here, not at the top: most runs never ping
    import urllib.request

    request = urllib.request.Request(
        url.strip().rstrip("/") + suffix,
        data=data,
        method="POST",
        headers={"Content-Type": "text/plain; charset=utf-8", "User-Agent": "BackDown"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as err:
        return f"the server answered HTTP {err.code} {_one_line(str(err.reason))}"
    except urllib.error.URLError as err:
        return f"cannot reach it ({_os_reason(err.reason)})"
    except TimeoutError:
        return f"timed out after {timeout:g} s"
    except OSError as err:
        return f"failed ({_os_reason(err)})"
    except ValueError:
        # urllib's ValueError quotes the whole URL.
        return "not sent; the ping URL is not a valid URL"
    if not 200 <= status < 300:
        return f"the server answered HTTP {status}"
    return None


def _os_reason(reason: object) -> str:
    """What an OS error or a URLError's reason says, without its errno."""
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, OSError) and reason.strerror:
        return _one_line(reason.strerror.lower())
    return _one_line(str(reason))


def _one_line(text: str) -> str:
    return " ".join(text.split())[:REASON_LIMIT]


# --------------------------------------------------------------------------- apprise


def _asset() -> apprise.AppriseAsset:
    """Apprise's settings for BackDown: nothing written to disk, and services run in the
    calling thread (the deadline is send()'s, not that of a pool the process would wait
    for at exit). Called before any other use of apprise, so that its log is filtered
    from the start, and kept from the user's screen: BackDown says what went wrong in its
    own words, once."""
    import apprise

    for name in _FILTERED_LOGGERS:
        logging.getLogger(name).addFilter(_PRIVACY)  # (once: addFilter skips one it has)
    logging.getLogger(apprise.LOGGER_NAME).propagate = False
    return apprise.AppriseAsset(storage_mode="memory", async_mode=False, service_timeout=0)
