"""The command line: parse arguments, run one command, map every error to one line and an
exit code. With no command, the interactive menu (main.py) runs instead.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from backdown import __version__
from backdown.credentials import forget_password, rename_password, save_password
from backdown.environment import Environment
from backdown.errors import BackdownError, ExitStatus, UsageError
from backdown.profile import Profile, validate_profile
from backdown.profile_store import ProfileStore
from backdown.run_command import Output, run_operation
from backdown.run_options import (
    DEFAULT_MAX_DELETE,
    DEFAULT_MODIFY_WINDOW,
    DEFAULT_RETRIES,
    DEFAULT_TRANSFERS,
    RunOptions,
)

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
        "--exclude",
        metavar="PATTERN",
        action="append",
        dest="excludes",
        help="gitignore-style pattern to skip (repeatable)",
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
        default=DEFAULT_TRANSFERS,
        help=f"parallel connections (default {DEFAULT_TRANSFERS})",
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
            "--overwrite",
            action="store_true",
            help="replace differing local files without keeping them aside",
        )


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
    edit = actions.add_parser("edit", help="change settings of a profile")
    edit.add_argument("name")
    _profile_fields(edit, required=False)
    rename = actions.add_parser("rename", help="rename a profile")
    rename.add_argument("old")
    rename.add_argument("new")
    remove = actions.add_parser("remove", help="delete a profile (not its backups)")
    remove.add_argument("name")
    remove.add_argument("--yes", action="store_true", help="do not ask to confirm")
    for sub in (add, show, edit, rename, remove, actions.choices["list"]):
        _global_options(sub, top=False)

    test = commands.add_parser("test", help="check server, login, share and write access")
    test.add_argument("name")
    test.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    upload = commands.add_parser("upload", aliases=["backup"], help="back up a profile")
    upload.add_argument("name")
    _run_options(upload, upload=True)
    download = commands.add_parser("download", aliases=["restore"], help="restore a profile")
    download.add_argument("name")
    _run_options(download, upload=False)
    for sub in (test, upload, download):
        _global_options(sub, top=False)
    return parser


def main(argv: Sequence[str] | None = None, env: Environment | None = None) -> int:
    """Run the program; returns the exit code. Nothing else in BackDown exits."""
    argv = list(sys.argv[1:] if argv is None else argv)
    env = env or Environment()
    show_traceback = "--traceback" in argv
    try:
        with contextlib.redirect_stdout(env.stdout):  # --help and --version print there
            args = build_parser().parse_args(argv)
        if args.config_dir:
            env.config_dir = Path(args.config_dir).expanduser()
        if args.data_dir:
            env.data_dir = Path(args.data_dir).expanduser()
        _setup_logging(args.verbose)
        return int(_dispatch(args, env))
    except BackdownError as exc:
        _report_error(env, exc, argv)
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


def _report_error(env: Environment, exc: BackdownError, argv: list[str]) -> None:
    message = str(exc)
    if exc.exit_status == ExitStatus.INTERRUPTED:
        print(f"{PROG}: interrupted; run the same command again to resume", file=env.stderr)
    else:
        print(f"{PROG}: error: {message}", file=env.stderr)
    if "--json" in argv:
        print(
            json.dumps({"ok": False, "error": message, "exit_code": int(exc.exit_status)}),
            file=env.stdout,
        )


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format=f"{PROG}: %(message)s"
    )
    logging.getLogger("SMB").setLevel(logging.ERROR)  # pysmb is chatty at INFO


def _dispatch(args: argparse.Namespace, env: Environment) -> int:
    store = ProfileStore.load(env.config_path)
    out = Output(json=args.json, quiet=args.quiet, verbose=args.verbose)
    if args.command is None:
        from backdown.main import run_menu

        return run_menu(env, store)
    if args.command == "profile":
        return _profile_command(args, env, store, out)
    profile = store.get(args.name)
    operation = {"backup": "upload", "restore": "download"}.get(args.command, args.command)
    options = RunOptions()
    if operation != "test":
        options = _options_from(args, operation)
    status = run_operation(env, profile, operation, options, out, args.password_stdin)
    if store.last_used != profile.name:
        store.set_current(profile.name)
        store.save()
    return status


def _options_from(args: argparse.Namespace, operation: str) -> RunOptions:
    if args.transfers < 1 or args.transfers > 64:
        raise UsageError("--transfers must be between 1 and 64")
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
    else:
        options.target = args.to
        options.overwrite = args.overwrite
    return options


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
        _say(env, out, f"profile '{args.old}' renamed to '{profile.name}'")
    elif args.action == "remove":
        profile = store.get(args.name)
        if not args.yes and not _confirm(env, f"Remove profile '{profile.name}'? [y/N] "):
            raise UsageError(f"profile '{profile.name}' not removed: confirm with --yes")
        store.remove(profile.name)
        store.save()
        forget_password(profile, env)
        _say(env, out, f"profile '{profile.name}' removed (the backups on the share are kept)")
    return ExitStatus.SUCCESS


def _apply_fields(profile: Profile, args: argparse.Namespace) -> None:
    for option, field_name in _PROFILE_OPTIONS.items():
        value = getattr(args, option, None)
        if value is not None:
            setattr(profile, field_name, value)
    if getattr(args, "excludes", None):
        profile.excludes = list(args.excludes)
    validate_profile(profile)


def _maybe_save_password(profile: Profile, args: argparse.Namespace, env: Environment) -> str:
    if not args.password_stdin:
        return ""
    if not profile.user:
        raise UsageError("--password-stdin needs a --user: a guest profile has no password")
    from backdown.credentials import resolve_password

    password = resolve_password(profile, env, password_stdin=True)
    return save_password(profile, password, env)


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
