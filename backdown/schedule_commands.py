"""The commands about backups that run by themselves, for the command line and the menu:
`schedule set | list | remove | run-due`, `status`, `history`, `report`, and the alert
targets every run may use.

Interface layer: it prints and asks. What is due and how healthy a profile is live in
scheduled_runs.py, the rules of a schedule in schedule.py, the OS job in os_scheduler.py.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from backdown import alerts, engine
from backdown.alerts import Message, Targets
from backdown.credentials import (
    forget_keyring_copy,
    resolve_logon,
    resolve_password,
    save_password_to_file,
    unattended_password_problem,
)
from backdown.environment import Environment, default_config_dir
from backdown.errors import CredentialsError, ExitStatus, UsageError
from backdown.history import History
from backdown.profile import Profile, validate_schedule
from backdown.profile_store import ProfileStore
from backdown.progress import Subscriber
from backdown.run_command import Output, logon_for
from backdown.run_options import RunOptions
from backdown.schedule import parse_age
from backdown.scheduled_runs import (
    Health,
    TickDeps,
    age_text,
    health,
    run_due,
    summary_of,
)

if TYPE_CHECKING:  # os_scheduler is imported where a command needs it: most runs never do
    from backdown.os_scheduler import Completed, JobSpec, JobState, Runner, Scheduler

LOG_NAME = "backdown.log"
LOG_BYTES = 1_000_000
LOG_KEEP = 5


def targets_for(profile: Profile, store: ProfileStore) -> Targets:
    """Where alerts for the profile go: its own targets and those set for every profile."""
    return Targets(
        urls=tuple(dict.fromkeys([*store.notify, *profile.notify])),
        config_file=profile.notify_config or store.notify_config,
        ping_url=profile.ping_url,
    )


def lift_lockout(env: Environment, name: str) -> None:
    """A new password lifts the stop that a refused one put on the profile's scheduled runs."""
    history = History.open(env.data_path)
    try:
        history.clear_lockout(name)
    finally:
        history.close()


def rename_in_history(env: Environment, old: str, new: str) -> None:
    """A renamed profile keeps its runs, lock-out and alert state."""
    history = History.open(env.data_path)
    try:
        history.rename_profile(old, new)
    finally:
        history.close()


def before_delete(env: Environment, store: ProfileStore, name: str) -> list[str]:
    """Take a profile's schedule away before it is deleted (and the OS job with the last
    one), so that no job is left behind that nothing can remove."""
    if not store.get(name).schedule_every:
        return []
    return remove_schedule(env, store, name)


def log_path(env: Environment) -> Path:
    return env.data_path / "logs" / LOG_NAME


# --------------------------------------------------------------------------- the OS job


@dataclass
class SchedulerChoice:
    """The OS scheduler for this machine and the job BackDown keeps in it."""

    scheduler: Scheduler
    spec: JobSpec


def scheduler_for(env: Environment) -> SchedulerChoice:
    """This machine's scheduler and the job for this config folder; SchedulerMissing (exit 4)
    when there is none."""
    from backdown.os_scheduler import job_spec, pick_scheduler

    spec = job_spec(
        sys.executable,
        str(env.config_path.resolve()),
        str(env.data_path.resolve()),
        str(default_config_dir({}).resolve()),
    )
    user = engine.local_user()
    domain = env.environ.get("USERDOMAIN", "")
    if sys.platform == "win32" and domain and "\\" not in user:
        user = f"{domain}\\{user}"  # how Task Scheduler names the user whose log-on starts it
    scheduler = pick_scheduler(sys.platform, _runner(env), Path.home(), user, spec=spec)
    return SchedulerChoice(scheduler, spec)


def _runner(env: Environment) -> Runner:
    """Scheduler commands are looked up in the PATH of the environment BackDown was given."""
    from backdown.os_scheduler import Completed, run_program

    path = env.environ.get("PATH") or os.defpath

    def runner(argv: list[str], stdin: str | None) -> Completed:
        found = shutil.which(argv[0], path=path)
        if found is None:
            return Completed(127, "", f"{argv[0]}: command not found")
        return run_program([found, *argv[1:]], stdin)

    return runner


def set_schedule(
    env: Environment,
    store: ProfileStore,
    name: str,
    every: str,
    between: str = "",
    days: str = "",
    *,
    save_password_file: bool = False,
    password_stdin: bool = False,
    confirm: Callable[[str], bool] | None = None,
) -> list[str]:
    """Give the profile a schedule and make sure the OS job exists; returns what to say.

    Checks first that a run with nobody at the keyboard can get the password (offering to
    save it to the 0600 credentials file), then installs the job, then saves the profile:
    whatever fails, nothing is left half done.
    """
    profile = store.get(name)
    if not str(every).strip():
        raise UsageError("give an interval with --every, like 24h ('schedule remove' ends one)")
    every, between, days = validate_schedule(every, between, days)
    lines: list[str] = []
    password = _password_for_the_job(env, profile, every, save_password_file, password_stdin,
                                     confirm)  # fmt: skip
    choice = scheduler_for(env)  # before anything is written: no scheduler, nothing changed
    choice.scheduler.install(choice.spec)
    own_file = None
    try:
        if password is not None:
            lines.append(save_password_to_file(profile, password, env))
            own_file = Path(profile.credentials_file)
        profile.schedule_every, profile.schedule_between = every, between
        profile.schedule_days = days
        store.replace(profile.name, profile)
        store.save()
    except BaseException:
        if own_file is not None:
            own_file.unlink(missing_ok=True)
        if not any(p.schedule_every for p in store.profiles if p is not profile):
            choice.scheduler.remove(choice.spec)
        raise
    if password is not None:
        forget_keyring_copy(profile.name)
    schedule = profile.schedule
    assert schedule is not None
    lines.insert(0, f"'{profile.name}' is backed up {schedule.describe()} when due")
    state = choice.scheduler.state(choice.spec)
    lines.append(f"scheduled job: {_job_line(state)}")
    if state.note:
        lines.append(state.note)
    if profile.auth == "kerberos" and not sys.platform.startswith("win"):
        lines.append(
            "scheduled runs log on with your Kerberos ticket, which lasts about 10 hours: "
            "keep it renewed (k5start, or a keytab in KRB5_CLIENT_KTNAME)"
        )
    lines.append(f"scheduled runs log to {log_path(env)}")
    return lines


def _password_for_the_job(
    env: Environment,
    profile: Profile,
    every: str,
    save_password_file: bool,
    password_stdin: bool,
    confirm: Callable[[str], bool] | None,
) -> str | None:
    """The password to keep in a file for scheduled runs, when they could not get it
    otherwise (asking first, when someone is there to ask); None when they can."""
    problem = unattended_password_problem(profile, sys.platform)
    if problem is None:
        return None
    asked = f"Save the password in {_own_file(env, profile)} (readable only by you)? [y/N] "
    if not save_password_file and not (confirm is not None and confirm(asked)):
        raise CredentialsError(
            f"a scheduled run of '{profile.name}' could not log on: {problem}; run "
            f"'backdown schedule set {profile.name} --every {every} --save-password-file' "
            "to keep it in a file readable only by you"
        )
    prompt = None if confirm is None else _prompt_for(env)
    return resolve_password(profile, env, password_stdin=password_stdin, prompt=prompt)


def _own_file(env: Environment, profile: Profile) -> Path:
    from backdown.credentials import own_credentials_path

    return own_credentials_path(profile.name, env)


def _prompt_for(env: Environment) -> Callable[[str], str]:
    from backdown.initialize import Prompter

    return Prompter.for_environment(env).read_secret


def remove_schedule(env: Environment, store: ProfileStore, name: str) -> list[str]:
    """Take the profile's schedule away; the OS job goes with the last schedule."""
    profile = store.get(name)
    if not profile.schedule_every:
        return [f"'{profile.name}' has no schedule"]
    profile.schedule_every = profile.schedule_between = profile.schedule_days = ""
    store.replace(profile.name, profile)
    store.save()
    lines = [f"'{profile.name}' is no longer backed up on a schedule"]
    if not any(p.schedule_every for p in store.profiles):
        choice = scheduler_for(env)
        choice.scheduler.remove(choice.spec)
        lines.append("no profile has a schedule now: the scheduled job was removed")
    return lines


def _job_line(state: JobState) -> str:
    if not state.installed:
        return f"not installed ({state.kind})"
    return f"{'enabled' if state.enabled else 'DISABLED'} ({state.kind}: {state.where})"


# --------------------------------------------------------------------------- listing


def schedule_rows(env: Environment, store: ProfileStore) -> list[dict[str, object]]:
    """Each scheduled profile: its schedule, last success, next due, state."""
    history = History.open(env.data_path)
    now = time.time()
    try:
        rows = []
        for profile in store.profiles:
            if profile.schedule is None:
                continue
            state = health(profile, history, now)
            rows.append(_health_json(profile, state, now))
        return rows
    finally:
        history.close()


def list_schedules(env: Environment, store: ProfileStore, out: Output) -> int:
    rows = schedule_rows(env, store)
    job: JobState | None = None
    job_problem = ""
    if rows:
        try:
            choice = scheduler_for(env)
            job = choice.scheduler.state(choice.spec)
        except Exception as err:  # no scheduler: the list still shows what is set
            job_problem = str(err)
    if out.json:
        data: dict[str, object] = {
            "profiles": rows,
            "job": None if job is None else _job_json(job),
            "log": str(log_path(env)),
        }
        if job_problem:
            data["job_problem"] = job_problem
        print(json.dumps(data), file=env.stdout)
        return int(ExitStatus.SUCCESS)
    if not rows:
        print(
            "no profile has a schedule: set one with 'backdown schedule set NAME --every 24h'",
            file=env.stdout,
        )
        return int(ExitStatus.SUCCESS)
    for row in rows:
        print(
            f"{row['profile']}: {row['schedule']}; last success {row['last_success_text']}; "
            f"next due {row['next_due_text']}; {row['state']}",
            file=env.stdout,
        )
    print(f"scheduled job: {_job_line(job) if job else job_problem}", file=env.stdout)
    if job and job.note:
        print(job.note, file=env.stdout)
    print(f"log: {log_path(env)}", file=env.stdout)
    return int(ExitStatus.SUCCESS)


def _job_json(job: JobState) -> dict[str, object]:
    return {
        "kind": job.kind,
        "installed": job.installed,
        "enabled": job.enabled,
        "where": job.where,
        "note": job.note,
    }


def _health_json(profile: Profile, state: Health, now: float) -> dict[str, object]:
    schedule = profile.schedule
    attempt = state.last_attempt
    return {
        "profile": profile.name,
        "schedule": schedule.describe() if schedule else "not scheduled",
        "interval_seconds": schedule.every if schedule else None,
        "state": state.state,
        "detail": state.detail,
        "last_success": _iso(state.last_success),
        "last_success_text": _ago(state.last_success, now),
        "last_attempt": _iso(attempt.started) if attempt else None,
        "last_attempt_text": _ago(attempt.started if attempt else None, now),
        "last_outcome": attempt.outcome if attempt else None,
        "next_due": state.next_due.isoformat(timespec="minutes") if state.next_due else None,
        "next_due_text": _due_text(state, now),
    }


def _due_text(state: Health, now: float) -> str:
    if state.next_due is None:
        return "-"
    if state.next_due.timestamp() <= now + 60:
        return "now"
    return state.next_due.strftime("%a %Y-%m-%d %H:%M")


def _ago(when: float | None, now: float) -> str:
    return "never" if when is None else f"{age_text(now - when)} ago"


def _iso(when: float | None) -> str | None:
    return None if when is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


# --------------------------------------------------------------------------- status, history


def status(env: Environment, store: ProfileStore, out: Output) -> int:
    """Every profile's state; exit 5 when any is overdue, failing or locked out."""
    history = History.open(env.data_path)
    now = time.time()
    try:
        states = [(p, health(p, history, now)) for p in store.profiles]
        problem = history.problem
    finally:
        history.close()
    # A history that cannot be written means scheduled backups are paused: attention.
    attention = bool(problem) or any(state.attention for _, state in states)
    code = ExitStatus.ATTENTION if attention else ExitStatus.SUCCESS
    if out.json:
        rows = [_health_json(p, state, now) for p, state in states]
        data = {"ok": not attention, "profiles": rows, "history_problem": problem or None}
        print(json.dumps(data), file=env.stdout)
        return int(code)
    if problem:
        print(f"HISTORY: {problem}; scheduled backups are paused", file=env.stdout)
    if not states:
        print("no profiles yet: add one with 'backdown profile add'", file=env.stdout)
    for profile, state in states:
        row = _health_json(profile, state, now)
        outcome = f" ({row['last_outcome']})" if row["last_outcome"] else ""
        detail = f": {state.detail}" if state.detail else ""
        print(
            f"{profile.name}: {state.state.upper() if state.attention else state.state}{detail}"
            f"; {row['schedule']}; last success {row['last_success_text']}; last attempt "
            f"{row['last_attempt_text']}{outcome}",
            file=env.stdout,
        )
    return int(code)


def show_history(
    env: Environment, store: ProfileStore, name: str | None, limit: int, out: Output
) -> int:
    if not 1 <= limit <= 1_000_000:
        raise UsageError("--limit must be a number from 1 to 1000000")
    if name is not None:
        name = store.get(name).name
    history = History.open(env.data_path)
    try:
        records = history.runs(name, limit)
    finally:
        history.close()
    if out.json:
        print(json.dumps([r.to_json() for r in records]), file=env.stdout)
        return int(ExitStatus.SUCCESS)
    if not records:
        print("no runs recorded yet", file=env.stdout)
    for r in records:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.started))
        took = f"{r.finished - r.started:.1f} s" if r.finished is not None else "-"
        counts = f"{r.files_transferred} files, {r.bytes_transferred} bytes"
        message = f": {r.message}" if r.message else ""
        print(
            f"{started}  {r.profile}  {r.operation} ({r.trigger})  {r.outcome}{message}  "
            f"{counts}, {r.files_failed} failed, {took}",
            file=env.stdout,
        )
        for failure in r.failures:
            print(f"    failed: {failure.path}: {failure.error}", file=env.stdout)
    return int(ExitStatus.SUCCESS)


# --------------------------------------------------------------------------- run-due


def run_due_command(env: Environment, store: ProfileStore) -> int:
    """One tick of the scheduled job: never asks, prints only what failed."""
    with _logging_to_file(env):
        history = History.open(env.data_path)
        try:
            if not history.writable:
                # Without a history there is no "due" and no lock-out after a refused
                # password: backing up anyway could run every tick or lock an account.
                print(
                    f"backdown: scheduled backups are paused: {history.problem}; fix that "
                    "(or give another --data-dir) and they start again",
                    file=env.stderr,
                )
                return int(ExitStatus.FILES_FAILED)
            deps = TickDeps(
                # No prompt, even when started from a terminal: the job has nobody to ask.
                logon=lambda profile: resolve_logon(profile, env),
                backup=lambda profile, password: engine.backup(
                    profile, password, RunOptions(), Subscriber(), env.config_path
                ),
                targets=lambda profile: targets_for(profile, store),
                send=alerts.send,
                ping=alerts.ping,
            )
            results = run_due(store.profiles, history, deps)
        finally:
            history.close()
    lines = summary_of(results)
    for line in lines:
        print(f"backdown: {line}", file=env.stderr)
    return int(ExitStatus.FILES_FAILED if lines else ExitStatus.SUCCESS)


@contextmanager
def _logging_to_file(env: Environment) -> Iterator[None]:
    """Log to a rotating file in the data folder, and not to stderr (cron mails whatever a
    job prints), for the length of the block."""
    path = log_path(env)
    handler: logging.Handler
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=LOG_BYTES, backupCount=LOG_KEEP, encoding="utf-8"
        )
    except OSError as err:
        # No log file: say so once, and log to stderr (warnings only) instead.
        print(f"backdown: cannot write the log {path}: {err.strerror or err}", file=env.stderr)
        handler = logging.StreamHandler(env.stderr)
        handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("backdown")
    saved = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
        handler.close()


# --------------------------------------------------------------------------- report


def office_report(
    env: Environment,
    store: ProfileStore,
    name: str,
    depth: int,
    stale_after: str,
    out: Output,
    notify: bool = False,
    password_stdin: bool = False,
) -> int:
    """One row per computer and profile found below the profile's folder; exit 5 when any
    is stale or failing."""
    if not 0 <= depth <= 10:
        raise UsageError("--depth must be from 0 to 10")
    limit = float(parse_age(stale_after, "--stale-after")) if stale_after else None
    profile, password = logon_for(store.get(name), env, password_stdin)
    rows, problems = engine.office_report(profile, password, depth, limit)
    bad = [r for r in rows if r.stale or r.failing]
    code = ExitStatus.ATTENTION if bad else ExitStatus.SUCCESS
    lines = [_report_line(r) for r in rows]
    if notify and bad:
        targets = targets_for(profile, store)
        title = f"BackDown report: {len(bad)} of {len(rows)} backups need attention"
        body = "\n".join(_report_line(r) for r in bad)
        problems += [f"alert: {p}" for p in alerts.send(targets, Message(title, body, "report"))]
    if out.json:
        data = {"ok": not bad, "rows": [r.to_json() for r in rows], "problems": problems}
        print(json.dumps(data), file=env.stdout)
        return int(code)
    if not rows:
        print(f"no status records found below {profile.unc}", file=env.stdout)
    for line in lines:
        print(line, file=env.stdout)
    for problem in problems:
        print(f"note: {problem}", file=env.stderr)
    return int(code)


def _report_line(row: object) -> str:
    from backdown.office_report import StatusRow

    assert isinstance(row, StatusRow)
    flags = [word for word, on in (("STALE", row.stale), ("FAILING", row.failing)) if on]
    state = " ".join(flags) or "ok"
    age = "never" if row.age is None else f"{age_text(row.age)} ago"
    who = f"{row.computer} ({row.user})" if row.user else row.computer
    return (
        f"{state:<13} {who:<24} {row.profile:<16} last good backup {age}; "
        f"{row.schedule or 'no schedule'}; {row.folder or '/'}"
    )
