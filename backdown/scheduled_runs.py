"""What the scheduled job does on each tick (`backdown schedule run-due`), and how healthy
each profile's backups are (`backdown status`, alerts).

On a tick, each profile with a schedule, one at a time: skipped while it is locked out after
a refused password; skipped when it is not due (schedule.next_due); skipped quietly when
the server cannot be reached (recorded as "unreachable": the laptop is at home, try again
next tick) or when the profile is already running; otherwise backed up. Every run is
recorded in the history, the ping URL hears of it, and an alert goes out when the profile's
health changes (not on every tick).

Everything it needs from outside comes in through TickDeps, so a test can run a tick on a
fake clock with no sleeps.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from backdown.alerts import Message, Targets
from backdown.errors import AuthError, BackdownError, KerberosError, LockedError
from backdown.history import (
    AUTH_FAILED,
    FAILED_OUTCOMES,
    OK,
    SCHEDULED,
    UNREACHABLE,
    History,
    RunRecord,
    outcome_of,
    recorded,
)
from backdown.profile import Profile
from backdown.report import RunReport
from backdown.schedule import next_due, overdue_at

log = logging.getLogger("backdown.schedule")

# Health states, worst first.
LOCKED = "locked-out"
FAILING = "failing"
OVERDUE = "overdue"
NEVER = "never"
HEALTHY = "ok"
NEEDS_ATTENTION = (LOCKED, FAILING, OVERDUE)
REACH_SECONDS = 5.0  # a quick TCP connect tells "at home" from "at the office"


@dataclass(frozen=True)
class Health:
    """How a profile's backups stand at one moment."""

    state: str
    last_success: float | None
    last_attempt: RunRecord | None
    next_due: datetime | None
    detail: str = ""

    @property
    def attention(self) -> bool:
        return self.state in NEEDS_ATTENTION


def health(profile: Profile, history: History, now: float, tz: tzinfo | None = None) -> Health:
    """The profile's state: locked out, failing (its last attempt failed), overdue (no
    success for twice its interval, a week without a schedule), never backed up, or ok."""
    schedule = profile.schedule
    last_success = history.last_success(profile.name)
    attempt = history.last_attempt(profile.name)
    due = None
    if schedule is not None:
        last_failure = history.last_failure(profile.name)
        due = next_due(schedule, datetime.fromtimestamp(now, tz), last_success, last_failure)
    lockout = history.lockout(profile.name)
    if lockout is not None and lockout.fingerprint == fingerprint(profile):
        return Health(LOCKED, last_success, attempt, due, lockout.message)
    if attempt is not None and attempt.outcome in FAILED_OUTCOMES:
        detail = attempt.message or f"{attempt.files_failed} files failed"
        return Health(FAILING, last_success, attempt, due, detail)
    since = last_success if last_success is not None else history.first_attempt(profile.name)
    if since is not None and now > overdue_at(schedule, since, tz):
        return Health(OVERDUE, last_success, attempt, due, _overdue_detail(last_success, now))
    if last_success is None:
        return Health(NEVER, None, attempt, due)
    return Health(HEALTHY, last_success, attempt, due)


def _overdue_detail(last_success: float | None, now: float) -> str:
    if last_success is None:
        return "no backup has ever succeeded"
    return f"last successful backup {age_text(now - last_success)} ago"


def fingerprint(profile: Profile) -> str:
    """Changes when the profile or its credentials file changes: a lock-out after a refused
    password holds until then. Holds no secret (a hash of the settings and file times)."""
    stamps = []
    for path in (profile.credentials_file,):
        try:
            stamps.append(os.stat(path).st_mtime_ns if path else 0)
        except OSError:
            stamps.append(-1)
    data = json.dumps([profile.to_dict(), stamps], sort_keys=True)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()[:32]


def server_reachable(profile: Profile) -> str | None:
    """None when the server answers on its port within a few seconds, else why not."""
    try:
        with socket.create_connection((profile.server, profile.port), timeout=REACH_SECONDS):
            return None
    except OSError as err:
        return f"server not reachable ({(err.strerror or str(err)).lower()})"


@dataclass(frozen=True)
class TickDeps:
    """What a tick is given: the clock and time zone, how to get a password with nobody at
    the keyboard, how to back up, how to tell whether the server is there, how to alert."""

    logon: Callable[[Profile], tuple[Profile, str]]
    backup: Callable[[Profile, str], RunReport]
    clock: Callable[[], float] = time.time
    tz: tzinfo | None = None
    reachable: Callable[[Profile], str | None] = server_reachable
    targets: Callable[[Profile], Targets] = lambda profile: Targets()
    send: Callable[[Targets, Message], list[str]] | None = None
    ping: Callable[[str, str, str], str | None] | None = None


@dataclass
class TickResult:
    """What a tick did with one profile."""

    profile: str
    action: str  # "not-due", "locked-out", "already-running", "unreachable", "ran"
    outcome: str = ""  # for "ran": the history outcome
    message: str = ""
    problems: list[str] = field(default_factory=list)  # alerts or pings that failed

    @property
    def failed(self) -> bool:
        return self.action == "ran" and self.outcome != OK


def run_due(profiles: list[Profile], history: History, deps: TickDeps) -> list[TickResult]:
    """One tick: back up every scheduled profile that is due, one after the other."""
    results = []
    for profile in profiles:
        if profile.schedule is None:
            continue
        result = _tick_one(profile, history, deps)
        result.problems += update_alerts(
            profile, history, deps.clock(), deps.targets(profile), deps.send, deps.tz
        )
        log.info("%s: %s %s %s", profile.name, result.action, result.outcome, result.message)
        results.append(result)
    return results


def _tick_one(profile: Profile, history: History, deps: TickDeps) -> TickResult:
    now = deps.clock()
    lockout = history.lockout(profile.name)
    if lockout is not None:
        if lockout.fingerprint == fingerprint(profile):
            return TickResult(profile.name, "locked-out", message=lockout.message)
        history.clear_lockout(profile.name)  # the profile or its password file changed
        log.info("%s: settings changed since the refused logon; trying again", profile.name)
    schedule = profile.schedule
    assert schedule is not None
    # Compared as datetimes: a float time and back can come out a microsecond later.
    moment = datetime.fromtimestamp(now, deps.tz)
    last_failure = history.last_failure(profile.name)
    due = next_due(schedule, moment, history.last_success(profile.name), last_failure)
    if due > moment:
        return TickResult(profile.name, "not-due", message=f"next due {due.isoformat()}")
    why = deps.reachable(profile)
    if why is not None:
        run_id = history.begin(profile.name, "upload", SCHEDULED, now)
        history.finish(run_id, UNREACHABLE, deps.clock(), None, why)
        return TickResult(profile.name, "unreachable", UNREACHABLE, why)
    return _back_up(profile, history, deps)


def _back_up(profile: Profile, history: History, deps: TickDeps) -> TickResult:
    targets = deps.targets(profile)
    problems = _ping(deps, targets, "start", "")
    result = TickResult(profile.name, "ran")
    try:
        with recorded(history, profile.name, "upload", SCHEDULED, deps.clock) as slot:
            logon_profile, password = deps.logon(profile)
            slot.report = deps.backup(logon_profile, password)
    except LockedError:
        # Someone started this profile by hand meanwhile: not a failure; its run is recorded.
        return TickResult(profile.name, "already-running", problems=problems)
    except BackdownError as err:
        result.outcome, result.message = outcome_of(err, None), str(err)
        # A refused password stops the schedule (the next tries would lock the account);
        # a Kerberos failure sent no password: the next tick tries again (after kinit).
        if isinstance(err, AuthError) and not isinstance(err, KerberosError):
            history.set_lockout(profile.name, deps.clock(), fingerprint(profile), str(err))
    else:
        report = slot.report
        result.outcome = outcome_of(None, report)
        if report is not None and not report.ok:
            result.message = f"{len(report.files_failed)} files failed"
    # A started ping is always closed, so the monitor never waits for a run that ended.
    event = "success" if result.outcome == OK else "fail"
    problems += _ping(deps, targets, event, result.message or "backup finished")
    result.problems = problems
    return result


def _ping(deps: TickDeps, targets: Targets, event: str, body: str) -> list[str]:
    if not targets.ping_url or deps.ping is None:
        return []
    problem = deps.ping(targets.ping_url, event, body)
    if problem:
        log.warning("ping failed: %s", problem)
        return [f"ping: {problem}"]
    return []


def update_alerts(
    profile: Profile,
    history: History,
    now: float,
    targets: Targets,
    send: Callable[[Targets, Message], list[str]] | None,
    tz: tzinfo | None = None,
) -> list[str]:
    """Send an alert when the profile's health changed since the last one sent: to a bad
    state (failing, overdue, locked out), or back to ok from one. Once per change."""
    state = health(profile, history, now, tz)
    current = state.state if state.attention else HEALTHY
    previous = history.alerted_state(profile.name)
    if current == previous:
        return []
    reachable_by = len(targets.urls) + (1 if targets.config_file else 0)
    if send is None or not reachable_by:
        history.set_alerted_state(profile.name, current)
        return []
    problems = send(targets, alert_message(profile, state, previous, now))
    for problem in problems:
        log.warning("alert not delivered: %s", problem)
    # Told when at least one target heard it; when none did (the mail server down at that
    # moment), the next tick tries again.
    if len(problems) < reachable_by:
        history.set_alerted_state(profile.name, current)
    return problems


def alert_message(profile: Profile, state: Health, previous: str, now: float) -> Message:
    """The words of an alert: what changed, since when, and what to do."""
    where = f"'{profile.name}' on {profile.client_name} ({profile.local} -> {profile.unc})"
    last = (
        f"last successful backup {age_text(now - state.last_success)} ago"
        if state.last_success is not None
        else "no successful backup yet"
    )
    if not state.attention:
        return Message(
            f"BackDown: backups of {profile.name} work again",
            f"Backups of {where} work again (were: {previous}); {last}.",
            "recovered",
        )
    what = {
        LOCKED: "stopped: the server refused the password",
        FAILING: "is failing",
        OVERDUE: "is overdue",
    }[state.state]
    advice = {
        LOCKED: f"Scheduled runs stop until the password or profile is changed or "
        f"'backdown test {profile.name}' succeeds, so that the account is not locked.",
        FAILING: f"See 'backdown history {profile.name}' on {profile.client_name}.",
        OVERDUE: f"Is {profile.client_name} switched off or away from the office? "
        f"'backdown status' on it tells more.",
    }[state.state]
    detail = f" ({state.detail})" if state.detail else ""
    kind = {LOCKED: "locked", FAILING: "failure", OVERDUE: "overdue"}[state.state]
    return Message(
        f"BackDown: backup of {profile.name} on {profile.client_name} {what}",
        f"The backup of {where} {what}{detail}; {last}. {advice}",
        kind,
    )


def age_text(seconds: float) -> str:
    """An age in words: '40 minutes', '5 hours', '3 days'."""
    minutes = max(0, int(seconds // 60))
    if minutes < 90:
        return f"{minutes} minute{'s' * (minutes != 1)}"
    hours = minutes // 60
    if hours < 48:
        return f"{hours} hours"
    return f"{hours // 24} days"


def auth_failed(result: TickResult) -> bool:
    return result.outcome == AUTH_FAILED


def summary_of(results: list[TickResult]) -> list[str]:
    """The lines run-due prints: only what failed (it is quiet otherwise)."""
    lines = []
    for r in results:
        if r.failed:
            lines.append(f"{r.profile}: backup {r.outcome}: {r.message}")
    # Alerts and pings that failed are in the log only: printing them would have cron mail
    # the same line every 15 minutes.
    return lines
