"""The command line: parse arguments, run one command, map every error to one line and an
exit code. With no command, the interactive menu (main.py) runs instead.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import tomli_w

from backdown import __version__, restore_commands, schedule_commands
from backdown.credentials import forget_password, rename_password, save_password
from backdown.environment import Environment
from backdown.errors import BackdownError, ExitStatus, UsageError
from backdown.office_report import DEFAULT_DEPTH
from backdown.profile import Profile, validate_profile, validate_schedule
from backdown.profile_store import ProfileStore, tomllib, write_private_file
from backdown.run_command import Output, run_operation
from backdown.run_options import (
    DEFAULT_MAX_DELETE,
    DEFAULT_MODIFY_WINDOW,
    DEFAULT_RETRIES,
    DEFAULT_TRANSFERS,
    MAX_TRANSFERS,
    RunOptions,
)
from backdown.tripwire import DEFAULT_MAX_CHANGE

PROG = "backdown"

# Profile fields settable from the command line: option -> (Profile field, converter).
_PROFILE_OPTIONS = {
    "local": "local",
    "server": "server",
    "share": "share",
    "remote_folder": "remote_folder",
    "port": "port",
    "user": "user",
    "domain": "domain",
    "client_name": "client_name",
    "credentials_file": "credentials_file",
    "mode": "mode",
    "keep_versions_days": "keep_versions_days",
    "notify_config": "notify_config",
    "ping_url": "ping_url",
    "keep_daily": "keep_daily",
    "keep_weekly": "keep_weekly",
    "keep_monthly": "keep_monthly",
    "protocol": "protocol",
    "encrypt": "encrypt",
    "auth": "auth",
    "transfers": "transfers",
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line and exit code 2, via UsageError.

    Abbreviations are off, so `--password SECRET` is not taken for `--password-stdin`, and
    stray values are never repeated in the message: one of them may be a password.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        choice = re.match(r"argument COMMAND: invalid choice: '([^']*)' \(choose from (.*)\)$",
                          message)  # fmt: skip
        if choice:
            typed, offered = choice.group(1), re.findall(r"'([^']*)'", choice.group(2))
            guess = difflib.get_close_matches(typed, offered, n=1)
            hint = f": did you mean '{guess[0]}'?" if guess else ""
            raise UsageError(f"unknown command '{typed}'{hint} (see '{self.prog} --help')")
        raise UsageError(f"{_without_values(message)}; see '{self.prog} --help'")


def _without_values(message: str) -> str:
    """argparse's message with any value the user typed left out."""
    prefix = "unrecognized arguments: "
    if message.startswith(prefix):
        words = message[len(prefix) :].split()
        options = [w.split("=", 1)[0] for w in words if w.startswith("-")]
        hidden = len(words) - len(options) + sum(1 for w in words if "=" in w)
        shown = " ".join(options)
        if hidden:
            shown += f"{' and ' if shown else ''}{hidden} value(s) not shown"
        return f"unknown argument(s): {shown}"
    if message.startswith("argument ") and "ignored explicit argument" in message:
        return message.split(":", 1)[0] + ": takes no value"
    return message


def _global_options(parser: argparse.ArgumentParser, top: bool) -> None:
    # The same options are accepted before and after the command; below the top level they
    # default to SUPPRESS so that they only override what was given.
    default = None if top else argparse.SUPPRESS
    flag_default = False if top else argparse.SUPPRESS
    parser.add_argument(
        "--config-dir",
        metavar="DIR",
        default=default,
        help="where profiles.toml lives (default: $BACKDOWN_CONFIG_DIR, "
        "else the user config folder)",
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        default=default,
        help="where the run history and the scheduled runs' log live (default: "
        "$BACKDOWN_DATA_DIR, else the user data folder)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=flag_default,
        help="print one JSON object with the outcome",
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=flag_default,
        help="print only errors and failures",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=flag_default,
        help="print each file and notices",
    )
    parser.add_argument(
        "--traceback",
        action="store_true",
        default=flag_default,
        help="show the Python traceback of an unexpected error",
    )
    if top:
        parser.add_argument(
            "--plain",
            action="store_true",
            help="with no command: the numbered menu, not the full-screen UI",
        )


def _profile_fields(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument("--local", metavar="DIR", required=required, help="local folder")
    parser.add_argument(
        "--server",
        metavar="HOST",
        required=required,
        help="server: IPv4, IPv6 address or host name",
    )
    parser.add_argument("--share", metavar="SHARE", required=required, help="share name")
    parser.add_argument(
        "--remote-folder", metavar="PATH", help="folder inside the share (empty: the share's root)"
    )
    parser.add_argument("--port", metavar="N", help="TCP port (default 445)")
    parser.add_argument("--user", metavar="USER", help="user name (empty: guest)")
    parser.add_argument("--domain", metavar="DOM", help="domain or workgroup")
    parser.add_argument("--client-name", metavar="NAME", help="this computer's SMB name")
    parser.add_argument(
        "--credentials-file",
        metavar="FILE",
        help="file with username=, password=, domain= lines (mode 600)",
    )
    parser.add_argument(
        "--mode",
        choices=("copy", "mirror"),
        help="copy (default) keeps files removed locally; mirror moves them "
        "into the versions area on the share",
    )
    parser.add_argument(
        "--keep-versions-days",
        metavar="N",
        help="prune versions older than N days (default 30; 0 keeps all)",
    )
    parser.add_argument(
        "--protocol",
        choices=("auto", "smb2", "smb3"),
        help="auto (default): SMB 2.0.2 through pysmb, or SMB 3 when the server needs it",
    )
    parser.add_argument(
        "--encrypt",
        choices=("yes", "no"),
        help="require SMB 3 encryption even where the server does not (default no)",
    )
    parser.add_argument(
        "--auth",
        choices=("auto", "password", "kerberos"),
        help="how to log on: auto (default; the password, else your Kerberos ticket), "
        "password (NTLM) or kerberos (your ticket from kinit or the Windows logon, no "
        "password kept; SMB 3 transport)",
    )
    for rule in ("daily", "weekly", "monthly"):
        parser.add_argument(
            f"--keep-{rule}",
            metavar="N",
            help=f"also keep the newest snapshot of each of the last N {rule} periods "
            "(and the versions it needs; default 0: off)",
        )
    parser.add_argument(
        "--exclude",
        metavar="PATTERN",
        action="append",
        dest="excludes",
        help="gitignore-style pattern to skip (repeatable)",
    )
    parser.add_argument(
        "--notify",
        metavar="URL",
        action="append",
        help="alert target as an Apprise URL (mailto://, ntfy://, json://...; repeatable; "
        "'' clears)",
    )
    parser.add_argument(
        "--notify-config",
        metavar="FILE",
        help="Apprise config file (mode 600) for alert targets that carry a password",
    )
    parser.add_argument(
        "--ping-url", metavar="URL", help="healthchecks-style URL pinged at each backup"
    )
    parser.add_argument(
        "--transfers",
        metavar="N",
        help=f"parallel connections a run uses (default {DEFAULT_TRANSFERS}; a run's own "
        "--transfers overrides it)",
    )
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password to save from standard input",
    )


def _run_options(parser: argparse.ArgumentParser, upload: bool) -> None:
    parser.add_argument(
        "--dry-run", action="store_true", help="show what would be done, change nothing"
    )
    parser.add_argument(
        "--transfers",
        type=int,
        metavar="N",
        help=f"parallel connections (default: the profile's, {DEFAULT_TRANSFERS} unless set)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        metavar="N",
        default=DEFAULT_RETRIES,
        help=f"retries after a dropped connection (default {DEFAULT_RETRIES})",
    )
    parser.add_argument(
        "--checksum", action="store_true", help="compare content (SHA-256) instead of size and time"
    )
    parser.add_argument(
        "--modify-window",
        type=float,
        metavar="S",
        default=DEFAULT_MODIFY_WINDOW,
        help=f"equal times within S s (default {DEFAULT_MODIFY_WINDOW:g})",
    )
    parser.add_argument(
        "--exclude",
        metavar="PATTERN",
        action="append",
        default=[],
        help="gitignore-style pattern to skip (repeatable)",
    )
    parser.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    if upload:
        parser.add_argument(
            "--mirror",
            action="store_true",
            default=None,
            help="this run only: move files gone locally into the versions area",
        )
        parser.add_argument(
            "--max-change",
            type=float,
            metavar="PCT",
            default=DEFAULT_MAX_CHANGE,
            help="stop before replacing more than PCT%% of the share's files, or when "
            f"changed files look encrypted (default {DEFAULT_MAX_CHANGE:g})",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="go ahead although the ransomware tripwire stopped the run",
        )
        parser.add_argument(
            "--max-delete",
            type=float,
            metavar="PCT",
            default=DEFAULT_MAX_DELETE,
            help="mirror refuses to move more than PCT%% of the share's files "
            f"(default {DEFAULT_MAX_DELETE:g})",
        )
    else:
        parser.add_argument("--to", metavar="DIR", help="restore here instead of the local folder")
        parser.add_argument(
            "--as-of",
            metavar="WHEN",
            help="the folder as it was then: '2026-11-28 17:00', a date, yesterday, 3d, or "
            "a snapshot id",
        )
        parser.add_argument(
            "--path",
            metavar="PATH",
            action="append",
            default=[],
            dest="paths",
            help="only this file or folder (repeatable)",
        )
        parser.add_argument(
            "--version",
            type=int,
            metavar="N",
            help="with one --path FILE: that stored copy ('backdown versions' numbers them)",
        )
        parser.add_argument(
            "--overwrite",
            action="store_true",
            help="replace differing local files without keeping them aside",
        )


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """parse_args, but an unknown option is named with the command it was given to, that
    command's help, and the option it most likely meant."""
    args, extra = parser.parse_known_args(argv)
    if not extra:
        return args
    command = _subparser(parser, args.command)
    if command is not None and getattr(args, "action", None):
        command = _subparser(command, args.action) or command
    known = [s for a in command._actions for s in a.option_strings] if command else []
    unknown = [w.split("=", 1)[0] for w in extra if w.startswith("-")]
    prog = command.prog if command else parser.prog
    if not unknown:
        raise UsageError(f"unexpected value(s) ({len(extra)} not shown); see '{prog} --help'")
    guess = difflib.get_close_matches(unknown[0], known, n=1)
    hint = f": did you mean {guess[0]}?" if guess else ""
    raise UsageError(f"unknown option {unknown[0]} for '{prog}'{hint} (see '{prog} --help')")


def _subparser(parser: argparse.ArgumentParser, name: str | None) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and name in action.choices:
            found: argparse.ArgumentParser = action.choices[name]
            return found
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Back up local folders to an SMB share and "
        "restore them. With no command, an interactive menu opens.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    _global_options(parser, top=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    profile = commands.add_parser("profile", help="add, list, show, edit, rename, remove profiles")
    _global_options(profile, top=False)
    actions = profile.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    actions.required = True
    add = actions.add_parser("add", help="save a new profile")
    add.add_argument("name")
    _profile_fields(add, required=True)
    actions.add_parser("list", help="list saved profiles")
    show = actions.add_parser("show", help="show one profile")
    show.add_argument("name")
    use = actions.add_parser("use", help="make a profile the current one (the menu's, and "
                             "the default of commands given no name)")  # fmt: skip
    use.add_argument("name")
    edit = actions.add_parser("edit", help="change settings of a profile")
    edit.add_argument("name")
    _profile_fields(edit, required=False)
    rename = actions.add_parser("rename", help="rename a profile")
    rename.add_argument("old")
    rename.add_argument("new")
    remove = actions.add_parser("remove", help="delete a profile (not its backups)")
    remove.add_argument("name")
    remove.add_argument("--yes", action="store_true", help="do not ask to confirm")
    export = actions.add_parser("export", help="write a profile to a file, for other PCs")
    export.add_argument("name")
    export.add_argument("--to", metavar="FILE", help="write here instead of standard output")
    imported = actions.add_parser("import", help="add a profile from an exported file")
    imported.add_argument("file", help="the exported file ('-' for standard input)")
    imported.add_argument("--name", help="save it under this name instead")
    imported.add_argument("--local", metavar="DIR", help="this PC's local folder instead")
    imported.add_argument(
        "--password-stdin", action="store_true", help="read the password to save from stdin"
    )
    for sub in (add, show, use, edit, rename, remove, export, imported, actions.choices["list"]):
        _global_options(sub, top=False)
    _schedule_parsers(commands)

    menu = commands.add_parser("menu", help="the numbered menu (the full-screen UI's plain twin)")
    _global_options(menu, top=False)
    test = commands.add_parser("test", help="check server, login, share and write access")
    test.add_argument("name", nargs="?", help="the profile (default: the current one)")
    test.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    upload = commands.add_parser("upload", aliases=["backup"], help="back up a profile")
    upload.add_argument("name", nargs="?", help="the profile (default: the current one)")
    _run_options(upload, upload=True)
    download = commands.add_parser("download", aliases=["restore"], help="restore a profile")
    download.add_argument("name", nargs="?", help="the profile (default: the current one)")
    _run_options(download, upload=False)
    snaps = commands.add_parser("snapshots", help="the snapshots kept on the share")
    snaps.add_argument("name")
    versions = commands.add_parser(
        "versions", help="every stored copy of a file, or (--deleted) what was removed"
    )
    versions.add_argument("name")
    versions.add_argument("path", nargs="?", help="the file")
    versions.add_argument(
        "--deleted",
        nargs="?",
        const="",
        metavar="FOLDER",
        help="list the files removed (from FOLDER, or from anywhere)",
    )
    check = commands.add_parser(
        "verify", help="read the backup back and compare it (SHA-256) with what it should be"
    )
    check.add_argument("name", nargs="?", help="the profile (default: the current one)")
    check.add_argument(
        "--sample",
        type=float,
        default=100.0,
        metavar="PERCENT",
        help="read back only this percentage of the files, chosen at random (default 100)",
    )
    check.add_argument(
        "--transfers",
        type=int,
        metavar="N",
        help=f"parallel connections (default: the profile's, {DEFAULT_TRANSFERS} unless set)",
    )
    prune = commands.add_parser(
        "prune", help="remove old snapshots and versions by the profile's retention rules"
    )
    prune.add_argument("name")
    prune.add_argument("--dry-run", action="store_true", help="only say what would go")
    for sub in (snaps, versions, prune, check):
        sub.add_argument(
            "--password-stdin", action="store_true", help="read the password from stdin"
        )
    for sub in (test, upload, download, snaps, versions, prune, check):
        _global_options(sub, top=False)
    return parser


def _schedule_parsers(commands: Any) -> None:
    schedule = commands.add_parser("schedule", help="back up automatically: set, list, remove")
    _global_options(schedule, top=False)
    actions = schedule.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    actions.required = True
    set_ = actions.add_parser("set", help="back a profile up on its own when it is due")
    set_.add_argument("name")
    set_.add_argument("--every", required=True, metavar="INTERVAL", help="30m, 4h, 24h, 7d")
    set_.add_argument("--between", default="", metavar="HH:MM-HH:MM", help="only in this time")
    set_.add_argument("--days", default="", metavar="DAYS", help="only on these days: mon-fri")
    set_.add_argument(
        "--save-password-file",
        action="store_true",
        help="keep the password in a file readable only by you, for runs with nobody logged on",
    )
    set_.add_argument(
        "--password-stdin", action="store_true", help="read that password from standard input"
    )
    remove = actions.add_parser("remove", help="stop backing a profile up on a schedule")
    remove.add_argument("name")
    listed = actions.add_parser("list", help="schedules, last success, next due, the OS job")
    due = actions.add_parser("run-due", help="back up the profiles that are due (the OS job)")
    for sub in (set_, remove, listed, due):
        _global_options(sub, top=False)

    status = commands.add_parser(
        "status", help="every profile's state; exit 5 when one is overdue or failing"
    )
    history = commands.add_parser("history", help="the runs recorded on this computer")
    history.add_argument("name", nargs="?")
    history.add_argument("--limit", type=int, default=20, metavar="N", help="default 20")
    report = commands.add_parser(
        "report", help="every computer's last backup below a profile's folder (for the admin)"
    )
    report.add_argument("name")
    report.add_argument(
        "--depth",
        type=int,
        default=DEFAULT_DEPTH,
        metavar="N",
        help=f"folder levels below the profile's folder to look in (default {DEFAULT_DEPTH})",
    )
    report.add_argument(
        "--stale-after",
        default="",
        metavar="AGE",
        help="stale after this long without a success, like 2d (default: twice each "
        "computer's interval, 7 days without one)",
    )
    report.add_argument("--notify", action="store_true", help="send the problems as an alert")
    report.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    alerts = commands.add_parser("alerts", help="alert targets for every profile; send a test")
    alert_actions = alerts.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    alert_actions.required = True
    alert_set = alert_actions.add_parser("set", help="alert targets used for every profile")
    alert_set.add_argument(
        "--notify", metavar="URL", action="append", help="repeatable; '' clears them"
    )
    alert_set.add_argument("--notify-config", metavar="FILE", help="'' clears it")
    alert_show = alert_actions.add_parser("show", help="where alerts go (URLs shortened)")
    alert_show.add_argument("name", nargs="?")
    alert_test = alert_actions.add_parser("test", help="send a test alert")
    alert_test.add_argument("name", nargs="?")
    for sub in (status, history, report, alerts, alert_set, alert_show, alert_test):
        _global_options(sub, top=False)


def main(argv: Sequence[str] | None = None, env: Environment | None = None) -> int:
    """Run the program; returns the exit code. Nothing else in BackDown exits."""
    argv = list(sys.argv[1:] if argv is None else argv)
    env = env or Environment()
    show_traceback = "--traceback" in argv
    args: argparse.Namespace | None = None
    try:
        with contextlib.redirect_stdout(env.stdout):  # --help and --version print there
            args = _parse(build_parser(), argv)
        if args.config_dir:
            env.config_dir = Path(args.config_dir).expanduser()
        if args.data_dir:
            env.data_dir = Path(args.data_dir).expanduser()
        _setup_logging(args.verbose)
        with _terminate_as_interrupt():
            return int(_dispatch(args, env))
    except BackdownError as exc:
        _report_error(env, exc, argv, args)
        return int(exc.exit_status)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=env.stderr)
        return int(ExitStatus.INTERRUPTED)
    except SystemExit as exc:  # argparse after --help or --version
        return int(exc.code or 0) if isinstance(exc.code, int | None) else 2
    except Exception as exc:
        if show_traceback:
            raise
        print(
            f"{PROG}: error: unexpected {exc.__class__.__name__}: {exc}; run again with "
            "--traceback and report it",
            file=env.stderr,
        )
        return int(ExitStatus.FILES_FAILED)


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a shutdown, a scheduler stopping the job) ends a run as Ctrl-C does: cleanly,
    and recorded in the history as interrupted rather than left "running"."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set a signal handler (tests run main() in threads)
        return

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _report_error(
    env: Environment, exc: BackdownError, argv: list[str], args: argparse.Namespace | None
) -> None:
    message = str(exc)
    if exc.exit_status == ExitStatus.INTERRUPTED:
        print(f"{PROG}: interrupted; run the same command again to resume", file=env.stderr)
    else:
        print(f"{PROG}: error: {message}", file=env.stderr)
    if "--json" in argv:
        command = str(getattr(args, "command", None) or "") or None
        failed = {
            # The same keys a finished run's object has, so a script reads both alike.
            "profile": getattr(args, "name", None) or getattr(args, "old", None),
            "operation": {"backup": "upload", "restore": "download"}.get(command or "", command),
            "ok": False,
            "error": message,
            "exit_code": int(exc.exit_status),
        }
        print(json.dumps(failed), file=env.stdout)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format=f"{PROG}: %(message)s"
    )
    logging.getLogger("SMB").setLevel(logging.ERROR)  # pysmb is chatty at INFO


def _dispatch(args: argparse.Namespace, env: Environment) -> int:
    store = ProfileStore.load(env.config_path)
    out = Output(json=args.json, quiet=args.quiet, verbose=args.verbose)
    if args.command is None and not args.plain:
        from backdown.tui import run_tui, unavailable

        if unavailable(env) is None:
            return run_tui(env)
    if args.command in (None, "menu"):
        from backdown.main import run_menu

        return run_menu(env, store)
    if args.command == "profile":
        return _profile_command(args, env, store, out)
    if args.command in ("schedule", "status", "history", "report", "alerts"):
        return _schedule_command(args, env, store, out)
    if args.command == "snapshots":
        return restore_commands.list_snapshots(env, store.get(args.name), out, args.password_stdin)
    if args.command == "prune":
        return restore_commands.prune(
            env, store.get(args.name), args.dry_run, out, args.password_stdin
        )
    if args.command == "versions":
        deleted = args.deleted is not None
        if deleted == bool(args.path):
            raise UsageError("give the file's path, or --deleted [FOLDER] to list removed files")
        path = args.deleted if deleted else args.path
        return restore_commands.list_versions(
            env, store.get(args.name), path, deleted, out, args.password_stdin
        )
    profile = _named_or_current(store, args.name)
    operation = {"backup": "upload", "restore": "download"}.get(args.command, args.command)
    options = RunOptions()
    if operation == "verify":
        if not 0 < args.sample <= 100:
            raise UsageError("--sample is a percentage above 0, at most 100")
        _check_transfers(args.transfers)
        options = RunOptions(sample=args.sample, transfers=args.transfers)
    elif operation != "test":
        options = _options_from(args, operation)
    notify = schedule_commands.targets_for(profile, store)
    # A run never changes the menu's current profile: only Switch and `profile use` do.
    return run_operation(env, profile, operation, options, out, args.password_stdin, notify)


def _check_transfers(transfers: int | None) -> None:
    if transfers is not None and not 1 <= transfers <= MAX_TRANSFERS:
        raise UsageError(f"--transfers must be between 1 and {MAX_TRANSFERS}")


def _options_from(args: argparse.Namespace, operation: str) -> RunOptions:
    _check_transfers(args.transfers)
    if args.retries < 0:
        raise UsageError("--retries cannot be negative")
    if args.modify_window < 0:
        raise UsageError("--modify-window cannot be negative")
    options = RunOptions(
        dry_run=args.dry_run,
        transfers=args.transfers,
        retries=args.retries,
        checksum=args.checksum,
        modify_window=args.modify_window,
        excludes=list(args.exclude),
    )
    if operation == "upload":
        if not 0 <= args.max_delete <= 100:
            raise UsageError("--max-delete is a percentage from 0 to 100")
        options.mirror = True if args.mirror else None
        options.max_delete = args.max_delete
        if not 0 <= args.max_change <= 100:
            raise UsageError("--max-change is a percentage from 0 to 100")
        options.max_change = args.max_change
        options.force = args.force
    else:
        options.target = args.to
        options.overwrite = args.overwrite
        options.as_of = args.as_of
        options.paths = list(args.paths)
        options.version = args.version
        if args.version is not None and args.as_of is not None:
            raise UsageError("give --version or --as-of, not both")
    return options


def _named_or_current(store: ProfileStore, name: str | None) -> Profile:
    """The profile named, or the current one (the menu's) when none is named."""
    if name:
        return store.get(name)
    current = store.current()
    if current is None:
        raise UsageError(
            "no profile named and no current one; name one ('backdown profile list' shows them)"
        )
    return current


def _profile_command(
    args: argparse.Namespace, env: Environment, store: ProfileStore, out: Output
) -> int:
    if args.action == "list":
        return _list_profiles(env, store, out)
    if args.action == "show":
        _show_profile(env, store.get(args.name), out)
        return ExitStatus.SUCCESS
    if args.action == "add":
        profile = Profile(name=args.name, local=args.local, server=args.server, share=args.share)
        _apply_fields(profile, args)
        store.add(profile)
        message = _maybe_save_password(profile, args, env)
        store.set_current(profile.name)
        store.save()
        _say(env, out, f"profile '{profile.name}' saved: {profile.local} -> {profile.unc}", message)
    elif args.action == "edit":
        profile = store.get(args.name)
        _apply_fields(profile, args)
        store.replace(profile.name, profile)
        message = _maybe_save_password(profile, args, env)
        store.save()
        _say(env, out, f"profile '{profile.name}' updated", message)
    elif args.action == "rename":
        profile = store.rename(args.old, args.new)
        store.save()  # first: a password that cannot be moved is asked for by the new name
        rename_password(args.old, profile, env)
        store.save()
        schedule_commands.rename_in_history(env, args.old, profile.name)
        _say(env, out, f"profile '{args.old}' renamed to '{profile.name}'")
    elif args.action == "use":
        profile = store.get(args.name)
        store.set_current(profile.name)
        store.save()
        _say(env, out, f"current profile: {profile.name}")
    elif args.action == "export":
        _export_profile(env, store.get(args.name), args.to)
    elif args.action == "import":
        _import_profile(args, env, store, out)
    elif args.action == "remove":
        profile = store.get(args.name)
        if not args.yes and not _confirm(env, f"Remove profile '{profile.name}'? [y/N] "):
            raise UsageError(f"profile '{profile.name}' not removed: confirm with --yes")
        lines = schedule_commands.before_delete(env, store, profile.name)
        store.remove(profile.name)
        store.save()
        forget_password(profile, env)
        _say(env, out, *lines,
             f"profile '{profile.name}' removed (the backups on the share are kept)")  # fmt: skip
    return ExitStatus.SUCCESS


# Settings that belong to one computer and stay out of an exported profile.
_NOT_EXPORTED = ("credentials_file", "client_name", "ping_url")


def _export_profile(env: Environment, profile: Profile, to: str | None) -> None:
    """Write the profile as TOML for other PCs: no password, nothing that belongs to this
    computer, and the local folder relative to the home folder where it is inside it."""
    data = {k: v for k, v in profile.to_dict().items() if k not in _NOT_EXPORTED and v != ""}
    home = os.path.expanduser("~")
    if data["local"] == home or data["local"].startswith(home + os.sep):
        data["local"] = "~" + data["local"][len(home) :].replace(os.sep, "/")
    text = (
        "# A BackDown profile: 'backdown profile import FILE' on each PC. No password inside.\n"
        + tomli_w.dumps({"profile": data})
    )
    if not to:
        env.stdout.write(text)
        return
    try:
        # 0600 like profiles.toml: alert URLs may carry tokens. Copy it to the other PCs
        # by a way only their users can read.
        write_private_file(Path(to).expanduser(), text.encode("utf-8"))
    except OSError as err:
        raise UsageError(f"cannot write {to}: {(err.strerror or 'error').lower()}") from None
    print(f"profile '{profile.name}' written to {to} (no password inside)", file=env.stdout)


def _import_profile(
    args: argparse.Namespace, env: Environment, store: ProfileStore, out: Output
) -> None:
    try:
        raw = env.stdin.read() if args.file == "-" else Path(args.file).read_text("utf-8-sig")
        data = tomllib.loads(raw).get("profile")
    except OSError as err:
        raise UsageError(f"cannot read {args.file}: {(err.strerror or 'error').lower()}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise UsageError(f"{args.file} is not an exported profile: {err}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{args.file} is not an exported profile: it has no [profile] table")
    data = {k: v for k, v in data.items() if k not in _NOT_EXPORTED}
    schedule = (data.pop("schedule_every", ""), data.pop("schedule_between", ""),
                data.pop("schedule_days", ""))  # fmt: skip
    if args.name:
        data["name"] = args.name
    if args.local:
        data["local"] = args.local
    try:
        profile = Profile.from_dict(data)
    except (UsageError, TypeError) as err:
        raise UsageError(f"{args.file}: {err}") from None
    store.add(profile)
    message = _maybe_save_password(profile, args, env)
    store.set_current(profile.name)
    store.save()
    lines = [f"profile '{profile.name}' imported: {profile.local} -> {profile.unc}", message]
    try:
        schedule = validate_schedule(*schedule)
    except UsageError as err:
        lines.append(f"the exported schedule was not used: {err}")
        schedule = ("", "", "")
    if schedule[0]:
        every = f"--every {schedule[0]}"
        every += f" --between {schedule[1]}" if schedule[1] else ""
        every += f" --days {schedule[2]}" if schedule[2] else ""
        lines.append(
            f"the exported profile is backed up {every.replace('--', '').strip()}: turn that "
            f"on here with 'backdown schedule set {profile.name} {every}'"
        )
    _say(env, out, *lines)


def _apply_fields(profile: Profile, args: argparse.Namespace) -> None:
    for option, field_name in _PROFILE_OPTIONS.items():
        value = getattr(args, option, None)
        if value is not None:
            setattr(profile, field_name, value)
    if getattr(args, "excludes", None):
        profile.excludes = list(args.excludes)
    if getattr(args, "notify", None) is not None:
        profile.notify = list(args.notify)
    validate_profile(profile)
    if getattr(args, "notify_config", None):
        _existing_file(profile.notify_config)


def _existing_file(path: str) -> str:
    """A file named on the command line must be there now (it is read at each alert)."""
    if path and not os.path.isfile(path):
        raise UsageError(f"{path} does not exist or is not a file; create it (mode 600) first")
    return path


def _maybe_save_password(profile: Profile, args: argparse.Namespace, env: Environment) -> str:
    if not args.password_stdin:
        return ""
    if not profile.user:
        raise UsageError("--password-stdin needs a --user: a guest profile has no password")
    from backdown.credentials import resolve_password

    password = resolve_password(profile, env, password_stdin=True)
    message = save_password(profile, password, env)
    schedule_commands.lift_lockout(env, profile.name)
    return message


def _confirm(env: Environment, question: str) -> bool:
    if not env.stdin_isatty:
        return False
    print(question, end="", file=env.stdout, flush=True)
    answer = env.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


def _say(env: Environment, out: Output, *lines: str) -> None:
    if out.json:
        print(
            json.dumps({"ok": True, "message": "; ".join(line for line in lines if line)}),
            file=env.stdout,
        )
        return
    if out.quiet:
        return
    for line in lines:
        if line:
            print(line, file=env.stdout)


def _list_profiles(env: Environment, store: ProfileStore, out: Output) -> int:
    current = store.current()
    if out.json:
        rows = [p.to_dict() | {"current": p is current} for p in store.profiles]
        print(json.dumps(rows), file=env.stdout)
        return ExitStatus.SUCCESS
    if not store.profiles:
        print(
            "no profiles yet: add one with 'backdown profile add' or run 'backdown'",
            file=env.stdout,
        )
        return ExitStatus.SUCCESS
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("", "name", "local folder", "remote", "user", "mode"):
        table.add_column(column)
    for p in store.profiles:
        table.add_row(
            "*" if p is current else "", p.name, p.local, p.unc, p.user or "(guest)", p.mode
        )
    # Piped or redirected: no terminal width to fit, so never cut a path short with '…'.
    width = None if env.stdout_isatty else 10_000
    Console(file=env.stdout, soft_wrap=True, width=width).print(table)
    return ExitStatus.SUCCESS


def _show_profile(env: Environment, profile: Profile, out: Output) -> None:
    data = profile.to_dict()
    if out.json:
        print(json.dumps(data), file=env.stdout)
        return
    for key, value in data.items():
        shown = ", ".join(value) if isinstance(value, list) else value
        print(f"{key:<19} {shown}", file=env.stdout)
    print(f"{'remote':<19} {profile.unc}", file=env.stdout)


def _schedule_command(
    args: argparse.Namespace, env: Environment, store: ProfileStore, out: Output
) -> int:
    if args.command == "status":
        return schedule_commands.status(env, store, out)
    if args.command == "history":
        return schedule_commands.show_history(env, store, args.name, args.limit, out)
    if args.command == "report":
        return schedule_commands.office_report(
            env, store, args.name, args.depth, args.stale_after, out, args.notify,
            args.password_stdin,
        )  # fmt: skip
    if args.command == "alerts":
        return _alerts_command(args, env, store, out)
    if args.action == "list":
        return schedule_commands.list_schedules(env, store, out)
    if args.action == "run-due":
        return schedule_commands.run_due_command(env, store)
    if args.action == "remove":
        lines = schedule_commands.remove_schedule(env, store, args.name)
    else:
        confirm = (lambda q: _confirm(env, q)) if env.stdin_isatty else None
        lines = schedule_commands.set_schedule(
            env, store, args.name, args.every, args.between, args.days,
            save_password_file=args.save_password_file, password_stdin=args.password_stdin,
            confirm=confirm,
        )  # fmt: skip
    _say(env, out, *lines)
    return ExitStatus.SUCCESS


def _alerts_command(
    args: argparse.Namespace, env: Environment, store: ProfileStore, out: Output
) -> int:
    from backdown import alerts
    from backdown.profile import validate_notify, validate_optional_path

    if args.action == "set":
        if args.notify is None and args.notify_config is None:
            raise UsageError("give --notify URL (repeatable) and/or --notify-config FILE")
        if args.notify is not None:
            store.notify = validate_notify(args.notify)
        if args.notify_config is not None:
            store.notify_config = _existing_file(validate_optional_path(args.notify_config))
        store.save()
        _say(env, out, f"alerts for every profile go to {len(store.notify)} URL(s)"
             + (f" and {store.notify_config}" if store.notify_config else ""))  # fmt: skip
        return ExitStatus.SUCCESS
    profile = store.get(args.name) if args.name else None
    targets = (
        schedule_commands.targets_for(profile, store)
        if profile
        else alerts.Targets(tuple(store.notify), store.notify_config)
    )
    if args.action == "show":
        shown = {
            "urls": [alerts.redact(u) for u in targets.urls],
            "config_file": targets.config_file,
            "ping_url": alerts.redact(targets.ping_url) if targets.ping_url else "",
        }
        if out.json:
            print(json.dumps(shown), file=env.stdout)
        else:
            for key, value in shown.items():
                print(f"{key:<12} {', '.join(value) if isinstance(value, list) else value}",
                      file=env.stdout)  # fmt: skip
        return ExitStatus.SUCCESS
    if targets.empty:
        raise UsageError("no alert targets: add one with 'backdown alerts set --notify URL' or "
                         "'backdown profile edit NAME --notify URL'")  # fmt: skip
    what = f"profile '{profile.name}'" if profile else "every profile"
    problems = alerts.send(
        targets,
        alerts.Message("BackDown test alert", f"A test alert for {what}.", "test"),
    )
    if targets.ping_url:
        problem = alerts.ping(targets.ping_url, "success", "BackDown test ping")
        problems += [f"ping: {problem}"] if problem else []
    if out.json:
        print(json.dumps({"ok": not problems, "problems": problems}), file=env.stdout)
    for problem in problems:
        print(f"{PROG}: {problem}", file=env.stderr)
    if problems:
        return ExitStatus.FILES_FAILED
    if not out.json:
        _say(env, out, "test alert sent")
    return ExitStatus.SUCCESS
