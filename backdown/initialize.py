"""The questions that build a new Profile or edit one, and the Prompter they are asked through.

input(), print() and getpass live here and in main.py only. Every answer is checked on the
spot with the validators in profile.py: a bad one prints the validator's one-line reason and
the same question is asked again. Ctrl-D (EOFError) and Ctrl-C (KeyboardInterrupt) are not
caught here: the menu decides what they mean.
"""

from __future__ import annotations

import copy
import getpass
import os
import shutil
import sys
import textwrap
from collections.abc import Callable
from typing import IO, TypeVar

from backdown.environment import Environment
from backdown.errors import UsageError, quoted
from backdown.profile import (
    DEFAULT_PORT,
    Profile,
    validate_domain,
    validate_local,
    validate_name,
    validate_port,
    validate_remote_folder,
    validate_server,
    validate_share,
    validate_user,
)
from backdown.profile_store import ProfileStore

T = TypeVar("T")

# Typed at an optional question while editing, it empties the field (Enter keeps it).
CLEAR = "-"


class Prompter:
    """Asks questions and prints lines; the menu, prompt_profile and the tests share it.

    read(prompt) shows the prompt and returns the line typed, read_secret(prompt) does the
    same without echoing, write(text) prints a line on stdout and write_error(text) on
    stderr. Reading raises EOFError at end of input (Ctrl-D).
    """

    def __init__(
        self,
        read: Callable[[str], str] = input,
        read_secret: Callable[[str], str] = getpass.getpass,
        write: Callable[[str], None] = print,
        write_error: Callable[[str], None] | None = None,
    ) -> None:
        self.read = read
        self.read_secret = read_secret
        self.write = write
        self.write_error = write_error or (lambda text: print(text, file=sys.stderr, flush=True))

    @classmethod
    def for_environment(cls, env: Environment) -> Prompter:
        """A Prompter on env's streams: input() and getpass on a terminal, plain lines otherwise."""
        console = env.stdin is sys.stdin and env.stdout is sys.stdout

        def read(prompt: str) -> str:
            if console:
                return input(prompt)
            return _read_line(env.stdin, env.stdout, prompt)

        # getpass reads the terminal itself; with piped input there is nothing to hide.
        read_secret = getpass.getpass if console and env.stdin_isatty else read
        # On a terminal, long lines are wrapped between words to its width (the terminal
        # itself would cut them mid-word); piped output is left as it is.
        width = shutil.get_terminal_size().columns if env.stdout_isatty else 0
        return cls(
            read=read,
            read_secret=read_secret,
            write=lambda text: print(wrap(text, width), file=env.stdout, flush=True),
            write_error=lambda text: print(wrap(text, width), file=env.stderr, flush=True),
        )

    def say(self, text: str = "") -> None:
        self.write(text)

    def warn(self, text: str) -> None:
        self.write_error(text)

    def ask(self, question: str, default: str = "") -> str:
        """Ask once; Enter gives the default, shown in brackets when there is one."""
        shown = f" [{default}]" if default else ""
        answer = self.read(f"{question}{shown}: ").strip()
        return answer or default

    def ask_valid(self, question: str, check: Callable[[str], T], default: str = "") -> T:
        """Ask until check(answer) accepts it; each refusal prints check's reason."""
        while True:
            answer = self.ask(question, default)
            try:
                return check(answer)
            except UsageError as err:
                self.say(str(err))

    def ask_secret(self, question: str) -> str:
        """Ask without echoing what is typed; the answer is kept exactly, spaces and all."""
        return self.read_secret(f"{question}: ")

    def confirm(self, question: str, default: bool) -> bool:
        """Ask a yes/no question; Enter gives the default, shown as [Y/n] or [y/N]."""
        choices = "[Y/n]" if default else "[y/N]"
        while True:
            answer = self.read(f"{question} {choices} ").strip().lower()
            if not answer:
                return default
            if answer in ("y", "yes"):
                return True
            if answer in ("n", "no"):
                return False
            self.say("please answer y or n")


def wrap(text: str, width: int) -> str:
    """Each line of text wrapped between words to width (0: as it is); a wrapped line's
    continuation keeps its indentation, and a long path or word is never cut."""
    if width < 20:
        return text
    out = []
    for line in text.split("\n"):
        indent = line[: len(line) - len(line.lstrip(" "))]
        out.append(
            textwrap.fill(
                line,
                width - 1,
                subsequent_indent=indent + "  ",
                break_long_words=False,
                break_on_hyphens=False,
            )  # fmt: skip
            if len(line) >= width
            else line
        )
    return "\n".join(out)


def _read_line(stdin: IO[str], stdout: IO[str], prompt: str) -> str:
    stdout.write(prompt)
    stdout.flush()
    line = stdin.readline()
    if not line:
        raise EOFError
    return line.rstrip("\r\n")


def prompt_profile(
    io: Prompter, store: ProfileStore, existing: Profile | None = None
) -> tuple[Profile, str | None]:
    """Ask for a new profile's settings, or new values for existing's; nothing is saved.

    Returns the profile and the password typed, or None when none was typed (a guest, a
    password left to be asked at each run, or, when editing, the saved one kept). Editing
    never asks the name: renaming is its own menu choice. The profile returned is a new
    object; existing is left untouched, so an edit cancelled half-way changes nothing.
    """
    old = existing
    if old is None:
        name = io.ask_valid("Profile name", new_name_check(store), store.next_default_name())
    else:
        name = old.name
    local = _ask_local(io, old.local if old else "")
    server = io.ask_valid("Server (IP address or host name)", validate_server, _was(old, "server"))
    port = io.ask_valid("Port", validate_port, str(old.port if old else DEFAULT_PORT))
    share = io.ask_valid("Share name", validate_share, _was(old, "share"))
    remote_folder = _ask_optional(
        io,
        "Folder inside the share",
        "the share's root",
        validate_remote_folder,
        _was(old, "remote_folder"),
    )
    user = _ask_optional(io, "User name", "guest", validate_user, _was(old, "user"))
    domain = _ask_optional(io, "Domain", "none", validate_domain, _was(old, "domain"))
    password: str | None = None
    if user:
        keep = "keep the saved one" if old else "ask at each run"
        typed = io.ask_secret(f"Password for {user} (hidden; Enter = {keep})")
        password = typed or None
    if old is None:
        profile = Profile(name=name, local=local, server=server, share=share)
    else:
        profile = copy.deepcopy(old)
    profile.local = local
    profile.server = server
    profile.port = port
    profile.share = share
    profile.remote_folder = remote_folder
    profile.user = user
    profile.domain = domain
    return profile, password


def _was(profile: Profile | None, field: str) -> str:
    return str(getattr(profile, field)) if profile is not None else ""


def new_name_check(store: ProfileStore, renaming: str | None = None) -> Callable[[str], str]:
    """A check for a profile name not taken by another profile than the one being renamed."""

    def check(answer: str) -> str:
        name = validate_name(answer)
        for other in store.names():
            # Compared ignoring case, as ProfileStore does: the keyring key is the name.
            if other != renaming and other.casefold() == name.casefold():
                raise UsageError(
                    f"a profile named {quoted(other)} already exists; choose another name"
                )
        return name

    return check


def _ask_optional(
    io: Prompter, question: str, empty_means: str, check: Callable[[str], str], current: str
) -> str:
    """Ask an optional setting: Enter keeps the current value, '-' empties a current one."""
    if not current:
        return io.ask_valid(f"{question} (Enter = {empty_means})", check)
    hint = f"'{CLEAR}' = {empty_means}"
    return io.ask_valid(
        f"{question} ({hint})", lambda answer: "" if answer == CLEAR else check(answer), current
    )


def _ask_local(io: Prompter, current: str) -> str:
    """Ask for the local folder; offer to create a missing one, or keep it with a warning.

    Saying no keeps the path: restoring onto a new computer creates the folder, and a backup
    says clearly that it is missing.
    """
    while True:
        path = io.ask_valid("Local folder", validate_local, current)
        if os.path.isdir(path):
            return path
        if os.path.exists(path):
            io.say(f"{path} is a file, not a folder; give a folder")
            continue
        if not io.confirm(f"{path} does not exist. Create it?", default=True):
            io.say(f"kept {path}; it must exist before a backup (a restore creates it)")
            return path
        try:
            os.makedirs(path)
        except OSError as err:
            io.say(f"cannot create {path}: {(err.strerror or str(err)).lower()}")
            continue
        io.say(f"created {path}")
        return path
