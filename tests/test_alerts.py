"""Notifications (backdown/alerts.py) sent for real, on loopback: an SMTP server (aiosmtpd),
HTTP servers that record, refuse or never answer, and ports where nothing listens."""

from __future__ import annotations

import email
import email.policy
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from backdown import alerts
from backdown.alerts import Message, Targets, check_url, ping, redact, send

posix_only = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX only")

MESSAGE = Message(
    title="BackDown: backup of 'photos' failed",
    body="3 files could not be read.\nThe share was not changed.",
    kind="failure",
)


# --------------------------------------------------------------------------- servers


@dataclass
class Seen:
    """One request an HTTP recorder received."""

    method: str
    path: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Recorder:
    """An HTTP server on 127.0.0.1 that answers every request with `status` and keeps it."""

    status: int = 200
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                recorder.seen.append(Seen(self.command, self.path, body))
                self.send_response(recorder.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_GET = do_PUT = _record

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep the test output clean

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        # A short poll, so that stop() (which waits for the loop to notice) is quick.
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def url(self, scheme: str, path: str = "") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def http() -> Iterator[Callable[..., Recorder]]:
    """Makes recorders: http() answers 200, http(500) refuses everything."""
    started: list[Recorder] = []

    def start(status: int = 200) -> Recorder:
        started.append(Recorder(status))
        return started[-1]

    yield start
    for recorder in started:
        recorder.stop()


class Inbox:
    """An aiosmtpd handler that keeps every mail it is given."""

    def __init__(self) -> None:
        self.mails: list[tuple[list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.mails.append((list(envelope.rcpt_tos), parsed))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    """A real SMTP server on 127.0.0.1: plain, no TLS, no login. Yields (inbox, port)."""
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port(), ready_timeout=5)
    controller.start()
    try:
        yield inbox, controller.port
    finally:
        controller.stop()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port where nothing listens: bound (so no one else takes it) but not listening, so
    a connection is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that takes connections (the kernel completes them) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


class Collect(logging.Handler):
    """A log handler that keeps every message it handles."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def dripping_port() -> Iterator[int]:
    """An HTTP server that starts an answer and then sends a header line every 0.1 s, never
    ending it: each read returns within any socket timeout, the whole answer never comes
    (it gives up after 5 s, so that a test that waits for it fails instead of hanging)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.05)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\n")
                until = time.monotonic() + 5
                while not stop.is_set() and time.monotonic() < until:
                    conn.sendall(b"X-Drip: 1\r\n")
                    stop.wait(0.1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _mailto(port: int) -> str:
    """A mailto:// URL for a plain SMTP server on 127.0.0.1:port, no TLS and no login."""
    return f"mailto://127.0.0.1:{port}?from=backdown@example.com&to=admin@example.com&mode=insecure"


def _private_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


# --------------------------------------------------------------------------- send


def test_mail_reaches_a_real_smtp_server(smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    assert send(Targets(urls=(_mailto(port),)), MESSAGE, timeout=10) == []
    assert len(inbox.mails) == 1
    recipients, mail = inbox.mails[0]
    assert recipients == ["admin@example.com"]
    assert "admin@example.com" in str(mail["To"])
    assert "backdown@example.com" in str(mail["From"])
    assert MESSAGE.title in str(mail["Subject"])
    body = mail.get_body(preferencelist=("plain", "html"))
    assert body is not None
    assert "3 files could not be read." in body.get_content()


def test_a_json_webhook_gets_one_post_with_title_body_and_type(
    http: Callable[..., Recorder],
) -> None:
    hook = http()
    assert send(Targets(urls=(hook.url("json", "/hooks/backdown"),)), MESSAGE) == []
    assert [(seen.method, seen.path) for seen in hook.seen] == [("POST", "/hooks/backdown")]
    payload = hook.seen[0].json()
    assert payload["title"] == MESSAGE.title
    assert payload["message"] == MESSAGE.body
    assert payload["type"] == "failure"


@pytest.mark.parametrize(
    ("kind", "notify_type"),
    [("overdue", "warning"), ("recovered", "success"), ("report", "info"), ("new-kind", "info")],
)
def test_the_kind_of_message_picks_apprise_notify_type(
    http: Callable[..., Recorder], kind: str, notify_type: str
) -> None:
    hook = http()
    assert send(Targets(urls=(hook.url("json"),)), Message("t", "b", kind)) == []
    assert hook.seen[0].json()["type"] == notify_type


@pytest.mark.parametrize("form", ["yaml", "text"])
def test_a_private_config_file_is_used(
    http: Callable[..., Recorder], tmp_path: Path, form: str
) -> None:
    hook = http()
    url = hook.url("json", "/from-config")
    text = f"urls:\n  - {url}\n" if form == "yaml" else f"# BackDown's targets\n{url}\n"
    config = _private_file(tmp_path / "apprise.conf", text)
    assert send(Targets(config_file=str(config)), MESSAGE) == []
    assert [seen.path for seen in hook.seen] == ["/from-config"]
    assert hook.seen[0].json()["title"] == MESSAGE.title


@posix_only
def test_a_config_file_others_can_read_is_not_used(
    http: Callable[..., Recorder], tmp_path: Path
) -> None:
    hook = http()
    config = _private_file(tmp_path / "apprise.yml", f"urls:\n  - {hook.url('json')}\n", 0o644)
    problems = send(Targets(config_file=str(config)), MESSAGE)
    assert len(problems) == 1
    assert "readable by other users" in problems[0]
    assert f"chmod 600 {config}" in problems[0]
    time.sleep(0.2)  # a stray delivery would have arrived by now
    assert hook.seen == []


def test_a_config_file_include_line_is_not_followed(
    http: Callable[..., Recorder], tmp_path: Path
) -> None:
    hook, more = http(), http()
    text = f"{hook.url('json')}\ninclude {more.url('http', '/more.conf')}\n"
    config = _private_file(tmp_path / "apprise.conf", text)
    assert send(Targets(config_file=str(config)), MESSAGE) == []
    assert len(hook.seen) == 1
    assert more.seen == []


def test_a_config_file_that_is_missing_or_lists_nothing_is_a_problem(tmp_path: Path) -> None:
    missing = send(Targets(config_file=str(tmp_path / "nope.yml")), MESSAGE)
    assert len(missing) == 1 and "does not exist" in missing[0]
    empty = _private_file(tmp_path / "empty.conf", "# nothing yet\n")
    nothing = send(Targets(config_file=str(empty)), MESSAGE)
    assert len(nothing) == 1 and "holds no URL Apprise knows" in nothing[0]


def test_each_target_that_refuses_is_a_problem_and_the_others_still_get_the_message(
    http: Callable[..., Recorder], closed_port: int
) -> None:
    refusing, good = http(500), http()
    urls = (refusing.url("json", "/a"), _mailto(closed_port), good.url("json", "/b"))
    problems = send(Targets(urls=urls), MESSAGE, timeout=10)
    assert len(problems) == 2, problems
    assert problems[0].startswith(f"json://127.0.0.1:{refusing.port}: not delivered")
    assert "500" in problems[0]
    assert problems[1].startswith(f"mailto://127.0.0.1:{closed_port}: not delivered")
    assert len(refusing.seen) == 1  # asked, and refused
    assert [seen.path for seen in good.seen] == ["/b"]


def test_a_url_apprise_does_not_know_is_a_problem_and_the_others_still_get_the_message(
    http: Callable[..., Recorder],
) -> None:
    hook = http()
    problems = send(Targets(urls=("foo://bar.example.com/x", hook.url("json"))), MESSAGE)
    assert problems == [
        "not a notification URL Apprise knows: foo://bar.example.com; "
        "see the Apprise wiki for the forms"
    ]
    assert len(hook.seen) == 1


def test_a_server_that_never_answers_is_given_up_on_after_the_timeout(
    http: Callable[..., Recorder], silent_port: int
) -> None:
    hook = http()
    urls = (f"json://127.0.0.1:{silent_port}/hook", hook.url("json"))
    started = time.monotonic()
    problems = send(Targets(urls=urls), MESSAGE, timeout=1)
    assert time.monotonic() - started < 2
    assert problems == [f"json://127.0.0.1:{silent_port}: timed out after 1 s"]
    assert len(hook.seen) == 1  # sent at the same time, not after the silent one


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[], list[str]]]:
    """logged(): every line logged so far at any level, through the root logger (caplog)
    and on the loggers of apprise and urllib3 themselves, where a handler may be attached."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="apprise")
    direct = Collect()
    loggers = [logging.getLogger(name) for name in ("apprise", "urllib3.connectionpool")]
    for logger in loggers:
        logger.addHandler(direct)
    try:
        yield lambda: direct.lines + [record.getMessage() for record in caplog.records]
    finally:
        for logger in loggers:
            logger.removeHandler(direct)


def test_no_secret_reaches_a_problem_or_the_log(
    http: Callable[..., Recorder], tmp_path: Path, logged: Callable[[], list[str]]
) -> None:
    # Each secret in one place only: one caught cannot hide another's leak.
    token, password = "T0KEN-in-the-path-7f3a9", "pa55-in-the-config-file"
    other_password, other_token = "pa55-in-a-broken-file", "T0KEN-of-an-unknown-scheme"
    refusing = http(500)
    config = _private_file(
        tmp_path / "apprise.conf",
        f"urls:\n  - json://backdown:{password}@127.0.0.1:{refusing.port}/cfg\n",
    )
    targets = Targets(urls=(refusing.url("json", f"/hooks/{token}"),), config_file=str(config))
    problems = send(targets, MESSAGE)
    # A config file Apprise cannot read: its complaint quotes the lines.
    broken = _private_file(
        tmp_path / "broken.yml", f"urls:\n  - json://x:{other_password}@127.0.0.1/\n  bad: [\n"
    )
    problems += send(Targets(config_file=str(broken)), MESSAGE)
    garbled = _private_file(tmp_path / "garbled.conf", f"json://127.0.0.1/\n==={other_password}\n")
    problems += send(Targets(config_file=str(garbled)), MESSAGE)
    problems += send(Targets(urls=(f"nosuch://{other_token}@127.0.0.1",)), MESSAGE)
    assert len(problems) == 5, problems
    assert len(refusing.seen) == 2  # both were really tried
    assert "error=500" in problems[0]  # what the service said is still shown
    assert problems[0] in logged()  # the log was looked at, and has BackDown's line
    assert "holds no URL" in problems[2] and "holds no URL" in problems[3]
    said = problems + logged()
    for secret in (token, password, other_password, other_token):
        assert not [line for line in said if secret in line], secret


def test_an_apprise_warning_that_quotes_a_secret_is_dropped(closed_port: int) -> None:
    token = "T0KEN-only-in-the-path-b41c"
    send(Targets(urls=(f"json://127.0.0.1:{closed_port}/hooks/{token}",)), MESSAGE, timeout=5)
    seen = Collect()
    apprise_log = logging.getLogger("apprise")
    apprise_log.addHandler(seen)
    try:
        apprise_log.warning("Failed to post to /hooks/%s", token)  # as a plugin might
        apprise_log.warning("Failed to post to another target")
    finally:
        apprise_log.removeHandler(seen)
    assert seen.lines == ["Failed to post to another target"]


def test_send_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any) -> Any:
        raise RuntimeError("json://user:secret@host/token")

    monkeypatch.setattr(alerts, "_load", broken)
    assert send(Targets(urls=("json://127.0.0.1/x",)), MESSAGE) == [
        "notifications not sent: unexpected RuntimeError"
    ]


def test_importing_alerts_leaves_apprise_unimported() -> None:
    # apprise is slow to import and most runs never send: it is imported on first use.
    code = "import sys, backdown.alerts; print('apprise' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_targets_empty() -> None:
    assert Targets().empty
    assert not Targets(urls=("json://h.example.com",)).empty
    assert not Targets(config_file="apprise.yml").empty
    assert not Targets(ping_url="https://hc-ping.com/x").empty


# --------------------------------------------------------------------------- ping


@pytest.mark.parametrize(
    ("event", "suffix"), [("start", "/start"), ("success", ""), ("fail", "/fail")]
)
def test_ping_posts_the_body_to_the_event_path(
    http: Callable[..., Recorder], event: str, suffix: str
) -> None:
    check = http()
    url = check.url("http", "/ping/5f1c0e3a/")  # the trailing "/" is dropped
    assert ping(url, event, "12 files copied, 0 failed") is None
    assert [(seen.method, seen.path) for seen in check.seen] == [
        ("POST", f"/ping/5f1c0e3a{suffix}")
    ]
    assert check.seen[0].body == b"12 files copied, 0 failed"


def test_ping_cuts_the_body_at_10_kb(http: Callable[..., Recorder]) -> None:
    check = http()
    assert ping(check.url("http", "/p"), "fail", "é" * 20_000) is None
    body = check.seen[0].body
    assert len(body) == 10 * 1024
    assert body.decode("utf-8") == "é" * (5 * 1024)


def test_ping_problems_are_one_line_and_never_raise(
    http: Callable[..., Recorder], closed_port: int, silent_port: int
) -> None:
    not_found = http(404)
    answer = ping(not_found.url("http", "/ping/abc"), "success")
    assert (
        answer == f"ping http://127.0.0.1:{not_found.port}: the server answered HTTP 404 Not Found"
    )
    refused = ping(f"http://127.0.0.1:{closed_port}/ping/abc", "start")
    assert refused == f"ping http://127.0.0.1:{closed_port}: cannot reach it (connection refused)"
    started = time.monotonic()
    silent = ping(f"http://127.0.0.1:{silent_port}/ping/abc", "fail", timeout=0.5)
    assert time.monotonic() - started < 1.5
    assert silent == f"ping http://127.0.0.1:{silent_port}: timed out after 0.5 s"
    assert ping("ftp://127.0.0.1/ping", "start") is not None
    assert ping("http://127.0.0.1:1/ping", "finished") is not None
    assert not_found.seen and all(seen.path == "/ping/abc" for seen in not_found.seen)


def test_ping_gives_up_on_a_server_that_answers_too_slowly(dripping_port: int) -> None:
    started = time.monotonic()
    answer = ping(f"http://127.0.0.1:{dripping_port}/ping/abc", "success", timeout=0.5)
    assert time.monotonic() - started < 1.5
    assert answer == f"ping http://127.0.0.1:{dripping_port}: timed out after 0.5 s"


def test_ping_problems_name_the_host_only(closed_port: int) -> None:
    answer = ping(f"http://127.0.0.1:{closed_port}/ping/SECRET-UUID", "start")
    assert answer is not None and "SECRET-UUID" not in answer


# --------------------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    "url",
    [
        "mailto://user@mail.example.com?to=admin@example.com",
        "mailto://127.0.0.1:2525?from=backdown@example.com&to=admin@example.com&mode=insecure",
        "json://127.0.0.1:8080/hooks/backdown",
        "ntfy://ntfy.sh/backdown-alerts",
        "ntfys://ntfy.example.com/backdown",
    ],
)
def test_check_url_accepts_what_apprise_knows(url: str) -> None:
    assert check_url(url) is None


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("foo://bar", "foo://***"),
        ("not a url", "(not a URL)"),
        ("", "(not a URL)"),
        ("json://a.example.com,json://b.example.com", "json://***"),  # two, not one
    ],
)
def test_check_url_refuses_the_rest_in_one_line(url: str, shown: str) -> None:
    assert check_url(url) == (
        f"not a notification URL Apprise knows: {shown}; see the Apprise wiki for the forms"
    )


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "mailto://user:s3cret@mail.example.com:587?to=a@example.com",
            "mailto://mail.example.com:587",
        ),
        ("json://127.0.0.1:8080/hooks/T0KEN?x=1", "json://127.0.0.1:8080"),
        ("JSON://Hooks.Example.COM/t", "json://hooks.example.com"),
        ("https://hooks.slack.com/services/T00/B00/XXXX", "https://hooks.slack.com"),
        ("ntfys://ntfy.example.com/secret-topic", "ntfys://ntfy.example.com"),
        ("json://[::1]:8080/x", "json://[::1]:8080"),
        ("mailto://localhost", "mailto://localhost"),
        # tokens where the host would be
        ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnl/#general", "slack://***"),
        ("ntfy://secret-topic", "ntfy://***"),
        ("tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/12315544", "tgram://***"),
        ("pbul://o.gn5kj6nfhv736I7jC3cj3QLRiyhgl98b", "pbul://***"),
        # not URLs at all
        ("hooks.example.com/token", "(not a URL)"),
        ("", "(not a URL)"),
    ],
)
def test_redact_shows_scheme_and_host_only(url: str, shown: str) -> None:
    assert redact(url) == shown
