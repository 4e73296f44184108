"""Run one operation for the interface layer (command line and menu alike).

Resolves the password, picks the subscribers (progress bar, notices), calls the engine and
prints the outcome: a human summary, or one JSON object with --json. Errors are left to the
caller, which decides between an exit code (cli) and a message and the menu again (main).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from backdown import engine
from backdown.credentials import resolve_logon
from backdown.environment import Environment
from backdown.errors import ExitStatus
from backdown.initialize import Prompter
from backdown.profile import Profile
from backdown.progress import Fanout, NoticePrinter, RichProgress, Subscriber
from backdown.report import RunReport
from backdown.run_options import RunOptions

OPERATIONS = ("upload", "download", "test")


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
) -> ExitStatus:
    """Run upload, download or test for a profile and print the outcome; returns the code."""
    profile, password = logon_for(profile, env, password_stdin)
    subscriber = subscriber_for(env, out)
    config_dir = env.config_path
    if operation == "upload":
        report = engine.backup(profile, password, options, subscriber, config_dir)
    elif operation == "download":
        report = engine.restore(profile, password, options, subscriber, config_dir)
    else:
        report = engine.check_connection(profile, password)
    print_report(env, report, out)
    return report.exit_status


def print_report(env: Environment, report: RunReport, out: Output) -> None:
    if out.json:
        print(json.dumps(report.to_json() | _extra(report)), file=env.stdout, flush=True)
        return
    if report.operation == "test":
        if not out.quiet:
            for note in report.notes:
                print(f"ok: {note}", file=env.stdout)
            print(f"Profile '{report.profile}' is ready ({report.destination}).", file=env.stdout)
        return
    if out.quiet:  # failures only, on stderr
        for failure in report.files_failed:
            print(f"failed: {failure.path}: {failure.error}", file=env.stderr)
        return
    for line in report.summary_lines(verbose=out.verbose):
        print(line, file=env.stdout)
    env.stdout.flush()


def _extra(report: RunReport) -> dict[str, object]:
    if report.operation == "test":
        return {"checks": report.notes}
    if report.dry_run:
        return {"plan": [{"action": a, "path": p} for a, p in report.planned]}
    return {}
