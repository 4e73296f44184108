"""Run one operation for the interface layer (command line and menu alike).

Resolves the password, picks the subscribers (progress bar, notices), calls the engine and
prints the outcome: a human summary, or one JSON object with --json. Errors are left to the
caller, which decides between an exit code (cli) and a message and the menu again (main).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass

from backdown import alerts, engine
from backdown.alerts import Targets
from backdown.credentials import resolve_logon
from backdown.environment import Environment
from backdown.errors import ExitStatus
from backdown.history import MANUAL, History, recorded
from backdown.initialize import Prompter
from backdown.profile import Profile
from backdown.progress import Fanout, NoticePrinter, RichProgress, Subscriber
from backdown.report import RunReport
from backdown.run_options import RunOptions
from backdown.scheduled_runs import update_alerts
from backdown.verify import VerifyOptions, verify

OPERATIONS = ("upload", "download", "test", "verify")


@dataclass
class RunHooks:
    """What an interface other than the command line brings to a run: the logon it settled
    itself (a password typed into its own field), its own subscriber, and a flag that
    stops the run from another thread (its Cancel button)."""

    logon: tuple[Profile, str] | None = None
    subscriber: Subscriber | None = None
    cancel: threading.Event | None = None


@dataclass
class Output:
    """How much the user wants to see."""

    json: bool = False
    quiet: bool = False
    verbose: bool = False


def logon_for(
    profile: Profile, env: Environment, password_stdin: bool = False
) -> tuple[Profile, str]:
    """The profile as it logs on (user and domain filled from its credentials file when it
    names no user) and the password; see credentials.resolve_logon."""
    prompt = Prompter.for_environment(env).read_secret if env.stdin_isatty else None
    return resolve_logon(profile, env, password_stdin=password_stdin, prompt=prompt)


def subscriber_for(env: Environment, out: Output) -> Subscriber:
    parts: list[Subscriber] = []
    if env.stdout_isatty and not out.quiet and not out.json:
        parts.append(RichProgress(env.stdout))
    if out.verbose and not out.json:
        parts.append(NoticePrinter(env.stderr, verbose=True))
    return Fanout(*parts)


def run_operation(
    env: Environment,
    profile: Profile,
    operation: str,
    options: RunOptions,
    out: Output,
    password_stdin: bool = False,
    notify: Targets | None = None,
) -> ExitStatus:
    """Run upload, download or test for a profile and print the outcome; returns the code.

    The run is recorded in the history (a dry run as "dry-run"); a test that succeeds lifts
    a lock-out left by a refused password; after an upload, an alert goes out if the
    profile's health changed (to `notify`, when given).
    """
    report = execute(env, profile, operation, options, out, password_stdin, notify)
    print_report(env, report, out)
    return report.exit_status


def execute(
    env: Environment,
    profile: Profile,
    operation: str,
    options: RunOptions,
    out: Output,
    password_stdin: bool = False,
    notify: Targets | None = None,
    hooks: RunHooks | None = None,
) -> RunReport:
    """run_operation without the printing of its report, for a caller that shows it its
    own way (the menu offers a dry run's list of changes on request; the full-screen UI
    draws its own progress and summary)."""
    hooks = hooks or RunHooks()
    history = History.open(env.data_path)
    if history.problem:
        print(f"backdown: note: {history.problem}; this run is not recorded", file=env.stderr)
    kind = "dry-run" if options.dry_run else operation
    try:
        with recorded(history, profile.name, kind, MANUAL, time.time) as slot:
            slot.report = _run_engine(env, profile, operation, options, out, password_stdin,
                                      hooks)  # fmt: skip
        report = slot.report
        assert report is not None
        if operation == "test" and history.clear_lockout(profile.name):
            print(
                "scheduled backups of this profile were stopped after a refused password; "
                "they start again now",
                file=env.stderr,
            )
        return report
    finally:
        if operation == "upload" and notify is not None and not options.dry_run:
            update_alerts(profile, history, time.time(), notify, alerts.send)
        history.close()


def _run_engine(
    env: Environment,
    profile: Profile,
    operation: str,
    options: RunOptions,
    out: Output,
    password_stdin: bool,
    hooks: RunHooks,
) -> RunReport:
    if hooks.logon is not None:
        profile, password = hooks.logon
    else:
        profile, password = logon_for(profile, env, password_stdin)
    subscriber = hooks.subscriber or subscriber_for(env, out)
    using = engine.Collaborators(cancel=hooks.cancel)
    config_dir = env.config_path
    if operation == "upload":
        return engine.backup(profile, password, options, subscriber, config_dir, using)
    if operation == "download":
        return engine.restore(profile, password, options, subscriber, config_dir, using)
    if operation == "verify":
        checks = VerifyOptions(
            sample=options.sample,
            transfers=options.transfers,
            retries=options.retries,
            modify_window=options.modify_window,
        )
        return verify(profile, password, checks, subscriber, config_dir, using)
    return engine.check_connection(profile, password, using)


def print_report(env: Environment, report: RunReport, out: Output) -> None:
    if out.json:
        print(json.dumps(report.to_json() | _extra(report)), file=env.stdout, flush=True)
        return
    if report.operation == "test":
        if not out.quiet:
            for line in test_lines(report):
                print(line, file=env.stdout)
        return
    if out.quiet:  # failures only, on stderr
        for failure in report.files_failed:
            print(f"failed: {failure.path}: {failure.error}", file=env.stderr)
        return
    for line in report.summary_lines(verbose=out.verbose):
        print(line, file=env.stdout)
    env.stdout.flush()


def test_lines(report: RunReport) -> list[str]:
    """What a connection test checked, in words, and whether the profile is ready."""
    present = bool(report.details.get("local_folder_present", True))
    lines = [
        f"NOT OK: {note}" if not present and note.startswith("local folder ") else f"ok: {note}"
        for note in report.notes
    ]
    if present:
        lines.append(f"Profile '{report.profile}' is ready ({report.destination}).")
    else:
        lines.append(
            f"Profile '{report.profile}' reaches its share ({report.destination}), but its "
            "local folder is missing: create it (or edit the profile) before backing up; a "
            "restore creates it."
        )
    return lines


def _extra(report: RunReport) -> dict[str, object]:
    if report.operation == "test":
        return {"checks": report.notes, **report.details}
    if report.dry_run:
        return {"plan": [{"action": a, "path": p} for a, p in report.planned]}
    return {}
