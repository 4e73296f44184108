"""What a tick of the scheduled job decides (scheduled_runs.run_due), on a fake clock with no
sleeps: due / not due / catch-up after a gap / outside the time window / server unreachable /
a refused password and then no retry; and alerts, once per change, to a real HTTP endpoint
on loopback.

The backup itself is a recording stand-in here (what a tick decides does not depend on the
share); tests/test_schedule_cli.py runs the job for real against Samba.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from test_alerts import Inbox, smtp  # noqa: F401 (a real SMTP server on loopback)

from backdown import alerts
from backdown.errors import AuthError, ConnectError, LockedError
from backdown.history import AUTH_FAILED, OK, PARTIAL, UNREACHABLE, History
from backdown.profile import Profile
from backdown.report import Failure, RunReport
from backdown.schedule import (
    Schedule,
    days_text,
    interval_text,
    is_due,
    next_due,
    parse_days,
    parse_interval,
    parse_window,
)
from backdown.scheduled_runs import (
    HEALTHY,
    LOCKED,
    NEVER,
    OVERDUE,
    TickDeps,
    health,
    run_due,
)

UTC = timezone.utc
HOUR = 3600.0
DAY = 86400.0


def at(text: str) -> float:
    """A POSIX time from 'YYYY-MM-DD HH:MM' (UTC, the time zone these tests run in)."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC).timestamp()


@dataclass
class FakeWorld:
    """The clock, the server and the backup a tick sees; every call is recorded."""

    now: float
    reachable: bool = True
    outcome: str = "ok"  # "ok", "partial", "auth", "connect", "locked"
    backups: list[str] = field(default_factory=list)
    logons: int = 0

    def clock(self) -> float:
        return self.now

    def logon(self, profile: Profile) -> tuple[Profile, str]:
        self.logons += 1
        return profile, "secret"

    def backup(self, profile: Profile, password: str) -> RunReport:
        self.backups.append(profile.name)
        report = RunReport(profile.name, "upload")
        if self.outcome == "auth":
            raise AuthError("the server refused user 'ann' or the password")
        if self.outcome == "connect":
            raise ConnectError("connection lost")
        if self.outcome == "locked":
            raise LockedError("profile 'docs' is already being backed up")
        if self.outcome == "partial":
            report.files_failed = [Failure("a.txt", "access denied")]
        report.files_transferred = 3
        return report

    def reach(self, profile: Profile) -> str | None:
        return None if self.reachable else "server not reachable (connection refused)"


def profile(every: str = "24h", between: str = "", days: str = "", **more: object) -> Profile:
    p = Profile(name="docs", local="/tmp", server="nas", share="backup", client_name="PC1")
    p.schedule_every, p.schedule_between, p.schedule_days = every, between, days
    return replace(p, **more)  # type: ignore[arg-type]


@pytest.fixture
def history(tmp_path: Path) -> Iterator[History]:
    h = History.open(tmp_path)
    yield h
    h.close()


def tick(world: FakeWorld, history: History, profiles: list[Profile], **deps: object) -> list:
    return run_due(
        profiles,
        history,
        TickDeps(
            logon=world.logon, backup=world.backup, clock=world.clock, tz=UTC,
            reachable=world.reach, **deps,  # type: ignore[arg-type]
        ),
    )  # fmt: skip


# --------------------------------------------------------------------------- the rules


def test_schedule_texts_parse_and_print_back() -> None:
    assert parse_interval("30m") == 1800 and parse_interval("4h") == 4 * 3600
    assert parse_interval("7d") == 7 * 86400 and parse_interval("1h30m") == 5400
    assert [interval_text(s) for s in (1800, 86400, 5400, 7 * 86400)] == [
        "30m",
        "24h",
        "1h30m",
        "7d",
    ]
    assert parse_window("08:00-19:00") == (480, 1140)
    assert parse_window("22:00-06:00") == (1320, 360)
    assert days_text(parse_days("mon-fri")) == "mon-fri"
    assert days_text(parse_days("fri-mon")) == "fri-mon"
    assert days_text(parse_days("Monday,wed,FRI")) == "mon,wed,fri"
    assert parse_days("") == frozenset(range(7))


@pytest.mark.parametrize(
    ("every", "between", "days", "says"),
    [
        ("5m", "", "", "too short"),
        ("24", "", "", "not an interval"),
        ("1y", "", "", "not an interval"),
        ("24h", "8-19", "", "not a time range"),
        ("24h", "25:00-19:00", "", "not a time range"),
        ("24h", "08:00-08:00", "", "empty"),
        ("24h", "", "mon-fry", "not a weekday"),
    ],
)
def test_bad_schedules_are_refused_in_one_line(
    every: str, between: str, days: str, says: str
) -> None:
    from backdown.errors import UsageError

    with pytest.raises(UsageError) as caught:
        Schedule.parse(every, between, days)
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_the_window_over_midnight_belongs_to_the_day_it_starts() -> None:
    night = Schedule.parse("24h", "22:00-06:00", "fri")
    friday_night, saturday_small_hours = at("2026-12-04 23:00"), at("2026-12-05 03:00")
    assert night.allows(datetime.fromtimestamp(friday_night, UTC))
    assert night.allows(datetime.fromtimestamp(saturday_small_hours, UTC))
    assert not night.allows(datetime.fromtimestamp(at("2026-12-05 23:00"), UTC))
    assert not night.allows(datetime.fromtimestamp(at("2026-12-04 03:00"), UTC))  # Thu's


def test_a_daily_backup_does_not_creep_later_each_day() -> None:
    daily = Schedule.parse("24h")
    last = at("2026-12-01 08:05")
    # The job looks every 15 minutes; the tick at 08:00 the next day is not too early.
    assert is_due(daily, datetime.fromtimestamp(at("2026-12-02 08:00"), UTC), last)
    assert not is_due(daily, datetime.fromtimestamp(at("2026-12-02 07:45"), UTC), last)


# --------------------------------------------------------------------------- ticks


def test_never_backed_up_is_due_at_once_and_then_not_until_the_interval(
    history: History,
) -> None:
    world = FakeWorld(now=at("2026-12-01 10:00"))
    [result] = tick(world, history, [profile("4h")])
    assert (result.action, result.outcome) == ("ran", OK) and world.backups == ["docs"]

    world.now += 3 * HOUR
    [result] = tick(world, history, [profile("4h")])
    assert result.action == "not-due" and world.backups == ["docs"]

    world.now += 1 * HOUR
    [result] = tick(world, history, [profile("4h")])
    assert result.action == "ran" and world.backups == ["docs", "docs"]
    assert [r.outcome for r in history.runs("docs")] == [OK, OK]


def test_a_laptop_back_after_the_weekend_catches_up_once_inside_its_window(
    history: History,
) -> None:
    office = profile("24h", "08:00-19:00", "mon-fri")
    world = FakeWorld(now=at("2026-12-04 17:00"))  # Friday
    tick(world, history, [office])
    assert world.backups == ["docs"]
    # Shut over the weekend: no tick at all until Monday 07:50, before the window opens.
    world.now = at("2026-12-07 07:50")
    [result] = tick(world, history, [office])
    assert result.action == "not-due" and "2026-12-07T08:00" in result.message
    world.now = at("2026-12-07 08:05")
    [result] = tick(world, history, [office])
    assert result.action == "ran" and world.backups == ["docs", "docs"]
    world.now += 15 * 60  # the next tick: caught up, one run only
    [result] = tick(world, history, [office])
    assert result.action == "not-due" and len(world.backups) == 2


def test_outside_the_window_or_days_nothing_runs(history: History) -> None:
    office = profile("4h", "08:00-19:00", "mon-fri")
    world = FakeWorld(now=at("2026-12-01 20:00"))  # Tuesday evening, never backed up
    [result] = tick(world, history, [office])
    assert result.action == "not-due" and "2026-12-02T08:00" in result.message
    world.now = at("2026-12-05 10:00")  # Saturday
    [result] = tick(world, history, [office])
    assert result.action == "not-due" and "2026-12-07T08:00" in result.message
    assert world.backups == []


def test_an_unreachable_server_is_recorded_and_tried_again_next_tick(history: History) -> None:
    world = FakeWorld(now=at("2026-12-01 10:00"), reachable=False)
    [result] = tick(world, history, [profile()])
    assert result.action == "unreachable" and world.backups == [] and world.logons == 0
    assert not result.failed, "a laptop at home is not a failure"
    [run] = history.runs("docs")
    assert run.outcome == UNREACHABLE and "not reachable" in run.message
    world.now += 15 * 60
    world.reachable = True
    [result] = tick(world, history, [profile()])
    assert result.action == "ran" and world.backups == ["docs"]


def test_a_refused_password_stops_the_profile_until_it_changes(history: History) -> None:
    world = FakeWorld(now=at("2026-12-01 10:00"), outcome="auth")
    [result] = tick(world, history, [profile()])
    assert result.outcome == AUTH_FAILED and world.backups == ["docs"]
    # A day later it is due again, but a second refused logon could lock the account.
    for _ in range(3):
        world.now += DAY
        [result] = tick(world, history, [profile()])
        assert result.action == "locked-out"
    assert world.backups == ["docs"] and world.logons == 1
    assert health(profile(), history, world.now, UTC).state == LOCKED

    # The profile is edited (a new user name): tried again.
    world.outcome = "ok"
    [result] = tick(world, history, [profile(user="ann2")])
    assert (result.action, result.outcome) == ("ran", OK)


def test_a_lifted_lockout_lets_the_next_tick_run(history: History) -> None:
    world = FakeWorld(now=at("2026-12-01 10:00"), outcome="auth")
    tick(world, history, [profile()])
    world.now += DAY
    assert tick(world, history, [profile()])[0].action == "locked-out"
    assert history.clear_lockout("docs")  # what 'backdown test' and a saved password do
    world.outcome = "ok"
    assert tick(world, history, [profile()])[0].outcome == OK


def test_a_partial_failure_is_retried_after_an_hour_not_every_tick(history: History) -> None:
    world = FakeWorld(now=at("2026-12-01 10:00"), outcome="partial")
    [result] = tick(world, history, [profile("24h")])
    assert result.outcome == PARTIAL and result.failed
    world.now += 30 * 60
    assert tick(world, history, [profile("24h")])[0].action == "not-due"
    world.now += 31 * 60
    assert tick(world, history, [profile("24h")])[0].action == "ran"
    assert len(world.backups) == 2
    [latest, first] = history.runs("docs")
    assert first.failures == [Failure("a.txt", "access denied")]


def test_a_profile_already_running_is_skipped_quietly(history: History) -> None:
    world = FakeWorld(now=at("2026-12-01 10:00"), outcome="locked")
    [result] = tick(world, history, [profile()])
    assert result.action == "already-running" and not result.failed
    assert health(profile(), history, world.now, UTC).state == NEVER


def test_profiles_without_a_schedule_are_left_alone(history: History) -> None:
    world = FakeWorld(now=at("2026-12-01 10:00"))
    assert tick(world, history, [profile(every="")]) == []
    assert world.backups == []


def test_health_says_overdue_after_twice_the_interval(history: History) -> None:
    world = FakeWorld(now=at("2026-12-01 10:00"))
    tick(world, history, [profile("24h")])
    assert health(profile("24h"), history, world.now + 47 * HOUR, UTC).state == HEALTHY
    assert health(profile("24h"), history, world.now + 49 * HOUR, UTC).state == OVERDUE
    # Without a schedule: a week.
    assert health(profile(""), history, world.now + 6 * DAY, UTC).state == HEALTHY
    assert health(profile(""), history, world.now + 8 * DAY, UTC).state == OVERDUE


def test_next_due_after_a_failure_waits_for_the_retry() -> None:
    daily = Schedule.parse("24h")
    now = datetime.fromtimestamp(at("2026-12-01 10:00"), UTC)
    failed = at("2026-12-01 09:50")
    assert next_due(daily, now, None, failed) == datetime.fromtimestamp(failed + HOUR, UTC)


# --------------------------------------------------------------------------- alerts


class _Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.seen.append(json.loads(body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict]]]:
    """A real HTTP endpoint on loopback that keeps every JSON notification it gets."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"json://127.0.0.1:{server.server_port}/hook", server.seen  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


def test_alerts_go_out_once_per_change_of_state(
    history: History, webhook: tuple[str, list[dict]]
) -> None:
    url, seen = webhook
    targets = alerts.Targets(urls=(url,))
    world = FakeWorld(now=at("2026-12-01 10:00"), outcome="partial")

    def run_tick() -> None:
        tick(world, history, [profile("4h")], targets=lambda p: targets, send=alerts.send)

    run_tick()
    assert [m["title"] for m in seen] == ["BackDown: backup of docs on PC1 is failing"]
    assert "1 files failed" in seen[0]["message"]
    for _ in range(3):  # still failing at each retry: no more alerts
        world.now += 2 * HOUR
        run_tick()
    assert len(seen) == 1 and len(world.backups) == 4

    world.outcome = "ok"
    world.now += 2 * HOUR
    run_tick()
    assert [m["title"] for m in seen][1:] == ["BackDown: backups of docs work again"]

    # Away for three days (the server cannot be reached): overdue, once.
    world.reachable = False
    for _ in range(12):
        world.now += 6 * HOUR
        run_tick()
    titles = [m["title"] for m in seen]
    assert titles[2:] == ["BackDown: backup of docs on PC1 is overdue"], titles
    assert "Is PC1 switched off or away" in seen[2]["message"]


def test_an_alert_that_cannot_be_sent_never_fails_the_backup_and_is_tried_again(
    history: History, webhook: tuple[str, list[dict]]
) -> None:
    world = FakeWorld(now=at("2026-12-01 10:00"), outcome="partial")
    nowhere = alerts.Targets(urls=("json://127.0.0.1:9/nothing-listens",))
    targets = [nowhere]
    [result] = tick(world, history, [profile()], targets=lambda p: targets[0], send=alerts.send)
    assert result.outcome == PARTIAL and world.backups == ["docs"]
    assert result.problems and "127.0.0.1" in result.problems[0]
    assert history.alerted_state("docs") == HEALTHY, "nobody was told yet"
    url, seen = webhook
    targets[0] = alerts.Targets(urls=(url,))  # the target is back
    world.now += 15 * 60
    [result] = tick(world, history, [profile()], targets=lambda p: targets[0], send=alerts.send)
    assert result.action == "not-due" and len(seen) == 1 and "failing" in seen[0]["title"]
    world.now += 15 * 60
    tick(world, history, [profile()], targets=lambda p: targets[0], send=alerts.send)
    assert len(seen) == 1, "told once"


def test_an_overdue_laptop_sends_one_mail_and_one_when_it_is_back(
    history: History,
    smtp: tuple[Inbox, int],  # noqa: F811
) -> None:
    inbox, port = smtp
    mail = f"mailto://127.0.0.1:{port}?from=backdown@example.com&to=admin@example.com&mode=insecure"
    targets = alerts.Targets(urls=(mail,))
    world = FakeWorld(now=at("2026-12-01 10:00"))

    def run_tick() -> None:
        tick(world, history, [profile("24h")], targets=lambda p: targets, send=alerts.send)

    run_tick()
    world.reachable = False
    for _ in range(4 * 24 * 3):  # three days away, a tick every 15 minutes
        world.now += 15 * 60
        run_tick()
    assert [m["Subject"] for _, m in inbox.mails] == ["BackDown: backup of docs on PC1 is overdue"]
    assert inbox.mails[0][0] == ["admin@example.com"]
    world.reachable = True
    world.now += 15 * 60
    run_tick()
    subjects = [m["Subject"] for _, m in inbox.mails]
    assert subjects[1:] == ["BackDown: backups of docs work again"]
    assert len(world.backups) == 2


def test_a_weekday_schedule_is_not_overdue_over_the_weekend(history: History) -> None:
    office = profile("24h", "08:00-19:00", "mon-fri")
    world = FakeWorld(now=at("2026-12-04 18:30"))  # Friday
    tick(world, history, [office])
    for when, state in (
        ("2026-12-05 12:00", HEALTHY),
        ("2026-12-06 19:00", HEALTHY),  # Sunday evening: not overdue
        ("2026-12-07 07:00", HEALTHY),
        ("2026-12-08 07:59", HEALTHY),  # Monday's backup missed, not a whole day yet
        ("2026-12-08 08:01", OVERDUE),
    ):
        assert health(office, history, at(when), UTC).state == state, when
