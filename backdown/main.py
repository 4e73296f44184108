"""The interactive menu: the saved profiles, the current one, and what to do with it.

`backdown menu` (and `backdown` where the full-screen UI cannot run) lands here (cli.py calls
run_menu). Every action works on the current profile, which the menu names; "Switch
profile" picks another and is remembered. The coworker's actions come first: back up now
(with the profile's settings, no questions), restore, test; the admin's after them.

What the keys do: Ctrl-C or Ctrl-D at a question, or Ctrl-C during a backup or restore,
cancels that action and comes back to the menu (a backup or restore run again resumes
where it stopped). At the menu's own prompt, Ctrl-D quits (status 0) and Ctrl-C quits with
status 130. The menu is shown once, then again on Enter, so an action's result stays on
screen. An error the user can act on (a wrong password, an unreachable server) is printed
as one line and the menu comes back. The profiles are read again before every action: an
edit made meanwhile from another terminal is seen.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable

from backdown import engine
from backdown.credentials import forget_password, rename_password, save_password
from backdown.environment import Environment
from backdown.errors import BackdownError, Cancelled, ConfigError, ExitStatus, UsageError
from backdown.initialize import Prompter, new_name_check, prompt_profile
from backdown.manifest import parse_stamp
from backdown.paths import REPLACED_DIR
from backdown.point_in_time import parse_moment
from backdown.profile import (
    Profile,
    validate_auth,
    validate_local,
    validate_profile,
    validate_protocol,
    validate_transfers,
)
from backdown.profile_store import ProfileStore
from backdown.report import plural
from backdown.run_command import Output, execute, logon_for, print_report, run_operation
from backdown.run_options import RunOptions
from backdown.schedule import days_text, interval_text, parse_days, parse_interval, parse_window
from backdown.schedule_commands import (
    before_delete,
    lift_lockout,
    remove_schedule,
    rename_in_history,
    set_schedule,
    status,
)

QUIT = "q"
NO_PROFILE = "no profile yet: create one first"


def _show_menu() -> None:
    """The answer Enter gives after an action: show the menu again (never performed)."""


_SHOW_MENU = _show_menu


def run_menu(env: Environment, store: ProfileStore, io: Prompter | None = None) -> int:
    """Show the menu until the user quits; returns the exit code."""
    io = io or Prompter.for_environment(env)
    try:
        return Menu(env, store, io).loop()
    except (KeyboardInterrupt, Cancelled):
        # A newline first: the cursor is usually still on a prompt line.
        io.warn("\ninterrupted")
        return int(ExitStatus.INTERRUPTED)


class Menu:
    """The menu's state (environment, saved profiles, prompter) and one method per choice."""

    def __init__(self, env: Environment, store: ProfileStore, io: Prompter) -> None:
        self.env = env
        self.store = store
        self.io = io
        # (label, action); an action needing a profile gets the current one.
        self.choices: list[tuple[str, Callable[[], None]]] = [
            ("Back up now", self._with_profile(self.back_up)),
            ("Restore files", self._with_profile(self.download)),
            ("Test the connection", self._with_profile(self.test)),
            ("Status of every profile", self.status),
            ("Switch profile", self.switch),
            ("Create a profile", self.create),
            ("Edit {name}", self._with_profile(self.edit)),
            ("Change the password of {name}", self._with_profile(self.change_password)),
            ("Schedule automatic backups of {name}", self._with_profile(self.schedule)),
            ("Connection settings of {name}", self._with_profile(self.connection)),
            ("Back up with options (dry run, mirror, transfers)", self._with_profile(self.upload)),
            ("Rename {name}", self._with_profile(self.rename)),
            ("Delete {name}", self._with_profile(self.delete)),
            ("List profiles", self.list_profiles),
        ]

    def loop(self) -> int:
        menu_shown = False
        while True:
            if not menu_shown:
                self.show()
            try:
                action = self.ask_choice(first=not menu_shown)
            except EOFError:
                self.io.say("\nbye")
                return int(ExitStatus.SUCCESS)
            if action is None:
                return int(ExitStatus.SUCCESS)
            if action is _SHOW_MENU:
                menu_shown = False
                continue
            self.io.say()
            self.perform(action)
            menu_shown = True  # the result stays on screen; Enter shows the menu again

    def show(self) -> None:
        current = self.store.current()
        self.io.say()
        if current is None:
            create = next(i for i, (_, a) in enumerate(self.choices, 1) if a == self.create)
            self.io.say(f"No profile yet: choose {create} to create one.")
            name = "the current profile"
        else:
            self.io.say(f"Current profile: {current.name}")
            self.io.say(f"  {current.local}  ->  {current.unc}")
            name = f"'{current.name}'"
        self.io.say()
        for number, (label, _) in enumerate(self.choices, start=1):
            self.io.say(f"  {number}) {label.format(name=name)}")
        self.io.say(f"  {QUIT}) Quit")
        self.io.say("Ctrl-C or Ctrl-D cancels a question or a running backup.")

    def ask_choice(self, first: bool = True) -> Callable[[], None] | None:
        """The action chosen, _SHOW_MENU (Enter), or None to quit; a choice that is not on
        the menu is asked again."""
        last = len(self.choices)
        hint = f"{QUIT} to quit" if first else f"Enter = the menu, {QUIT} = quit"
        while True:
            answer = self.io.read(f"Choose 1-{last} ({hint}): ").strip().lower()
            if answer in (QUIT, "quit"):
                return None
            if answer.isdecimal() and 1 <= int(answer) <= last:
                return self.choices[int(answer) - 1][1]
            if not answer:
                if not first:
                    return _SHOW_MENU
                continue
            self.io.say(f"'{answer}' is not on the menu: type a number from 1 to {last}")

    def perform(self, action: Callable[[], None]) -> None:
        """Run one action; its errors are reported and the menu goes on. Ctrl-C (or a
        cancelled run) ends the action only."""
        self._reload()
        try:
            action()
        except EOFError:
            self.io.say("\ncancelled")
        except (KeyboardInterrupt, Cancelled):
            self.io.warn(
                "\ncancelled; back to the menu (a backup or restore run again resumes where "
                "it stopped)"
            )
        except BackdownError as err:
            self.io.warn(f"error: {err}")
            if isinstance(err, ConfigError):
                self._reload()
        except OSError as err:
            # The engine turns SMB errors into ours; a local one (a full disk, a folder that
            # cannot be read) may still arrive as it is.
            where = f" ({err.filename})" if err.filename else ""
            self.io.warn(f"error: {(err.strerror or str(err)).lower()}{where}")

    def _reload(self) -> None:
        """Read the profiles again: before each action (another terminal may have changed
        them), and after a save failed, so the menu does not pretend."""
        try:
            self.store = ProfileStore.load(self.store.config_dir)
        except BackdownError as err:
            self.io.warn(f"error: {err}")

    def _with_profile(self, action: Callable[[Profile], None]) -> Callable[[], None]:
        def run() -> None:
            profile = self.store.current()
            if profile is None:
                self.io.say(NO_PROFILE)
                return
            action(profile)

        return run

    # ----------------------------------------------------------------- profiles

    def list_profiles(self) -> None:
        if not self.store.profiles:
            self.io.say(NO_PROFILE)
            return
        current = self.store.current()
        width = max(len(name) for name in self.store.names())
        self.io.say("Profiles (* = current):")
        for p in self.store.profiles:
            mark = "*" if p is current else " "
            who = p.user or "guest"
            self.io.say(f"{mark} {p.name:<{width}}  {p.local}  ->  {p.unc}  as {who}")

    def create(self) -> None:
        profile, password = prompt_profile(self.io, self.store)
        self.store.add(profile)
        self.store.set_current(profile.name)
        self.store.save()
        self.io.say(f"profile '{profile.name}' saved; it is now the current profile")
        if password is not None:
            self.io.say(save_password(profile, password, self.env))
            # save_password may have pointed the profile at its own credentials file.
            self.store.save()
            lift_lockout(self.env, profile.name)

    def switch(self) -> None:
        current = self.store.current()
        if current is None:
            self.io.say(NO_PROFILE)
            return
        names = self.store.names()
        for number, name in enumerate(names, start=1):
            mark = "*" if name == current.name else " "
            self.io.say(f"{mark} {number}) {name}")

        def check(answer: str) -> str:
            if answer.isdecimal() and 1 <= int(answer) <= len(names):
                return names[int(answer) - 1]
            for name in names:
                if name.casefold() == answer.casefold():
                    return name
            raise UsageError(f"'{answer}' is neither a number from 1 to {len(names)} nor a name")

        name = self.io.ask_valid("Switch to (number or name)", check, current.name)
        self.store.set_current(name)
        self.store.save()
        self.io.say(f"current profile: {name}")

    def edit(self, profile: Profile) -> None:
        self.io.say(f"Editing '{profile.name}': Enter keeps the value in brackets.")
        edited, password = prompt_profile(self.io, self.store, existing=profile)
        self.store.replace(profile.name, edited)
        message = ""
        if password is not None:
            message = save_password(edited, password, self.env)
            lift_lockout(self.env, edited.name)
        elif profile.user and not edited.user:
            forget_password(edited, self.env)
            message = "the saved password was removed: the profile now logs on as guest"
        self.store.save()
        self.io.say(f"profile '{edited.name}' saved")
        if message:
            self.io.say(message)

    def rename(self, profile: Profile) -> None:
        old = profile.name
        new = self.io.ask_valid(f"New name for '{old}'", new_name_check(self.store, old), old)
        if new == old:
            self.io.say("name unchanged")
            return
        self.store.rename(old, new)
        self.store.save()  # first: a password that cannot be moved is asked for by the new name
        rename_password(old, profile, self.env)
        self.store.save()
        rename_in_history(self.env, old, new)
        self.io.say(f"profile '{old}' renamed to '{new}'")

    def delete(self, profile: Profile) -> None:
        question = f"Delete profile '{profile.name}' and its saved password?"
        if profile.schedule_every:
            question = f"Delete profile '{profile.name}', its saved password and its schedule?"
        if not self.io.confirm(question, default=False):
            self.io.say("not deleted")
            return
        for line in before_delete(self.env, self.store, profile.name):
            self.io.say(line)
        self.store.remove(profile.name)
        self.store.save()
        forget_password(profile, self.env)
        self.io.say(f"profile '{profile.name}' deleted (its backups on the share are kept)")

    # --------------------------------------------------------------- operations

    def test(self, profile: Profile) -> None:
        self._run(profile, "test", RunOptions())

    def back_up(self, profile: Profile) -> None:
        """The profile's backup as it is set up: no questions."""
        self._run(profile, "upload", RunOptions())

    def change_password(self, profile: Profile) -> None:
        if profile.auth == "kerberos":
            self.io.say(f"'{profile.name}' logs on with your Kerberos ticket: it has no password")
            return
        if not profile.user:
            self.io.say(f"'{profile.name}' logs on as guest: it has no password (Edit sets a user)")
            return
        typed = self.io.ask_secret(f"New password for {profile.user} (hidden; Enter = keep)")
        if not typed:
            self.io.say("password unchanged")
            return
        message = save_password(profile, typed, self.env)
        self.store.save()  # save_password may have pointed the profile at its own file
        lift_lockout(self.env, profile.name)
        self.io.say(message)

    def upload(self, profile: Profile) -> None:
        dry_run = self.io.confirm("Dry run first (show what would change, change nothing)?", False)
        mirror = self.io.confirm(
            "Mirror (files deleted here are moved into the versions area on the share)?",
            profile.mode == "mirror",
        )
        transfers = self.io.ask_valid("Parallel transfers", validate_transfers,
                                      str(profile.transfers))  # fmt: skip
        options = RunOptions(mirror=mirror, transfers=transfers)
        if dry_run and not self._dry_run(profile, "upload", options, "Upload now?"):
            return
        self._run(profile, "upload", options)

    def download(self, profile: Profile) -> None:
        """Restore in plain words: what, as of when, where (a new folder unless chosen)."""
        paths = self._pick_paths(profile)
        as_of = self.io.ask_valid(
            "Restore the latest backup, or as of when? (Enter = latest; or like "
            "'2026-11-28 17:00', 'yesterday', '3d')",
            _moment_or_latest,
            "latest",
        )
        stamp = time.strftime("%Y%m%d-%H%M")
        suggested = f"{profile.local.rstrip(os.sep)}-restored-{stamp}"
        target = self.io.ask_valid("Restore into which folder", validate_local, suggested)
        if os.path.realpath(target) == os.path.realpath(profile.local):
            self.io.say(
                "Restoring over the original folder: local files that differ are not "
                f"overwritten but kept in {os.path.join(target, REPLACED_DIR)}."
            )
        dry_run = self.io.confirm("Dry run first (show what would change, change nothing)?", False)
        options = RunOptions(target=target, paths=paths,
                             as_of=None if as_of == "latest" else as_of)  # fmt: skip
        if dry_run and not self._dry_run(profile, "download", options, "Download now?"):
            return
        self._run(profile, "download", options)

    def _pick_paths(self, profile: Profile) -> list[str]:
        """Everything ([]), or files and folders picked from the backup's top level."""
        if not self.io.confirm("Restore only some files or folders (not everything)?", False):
            return []
        logon, password = logon_for(profile, self.env)
        names = engine.top_level(logon, password)
        for number, name in enumerate(names, start=1):
            self.io.say(f"  {number}) {name}")

        def check(answer: str) -> list[str]:
            picked = []
            for part in (p.strip() for p in answer.split(",")):
                if part.isdecimal() and 1 <= int(part) <= len(names):
                    picked.append(names[int(part) - 1].rstrip("/"))
                elif part:
                    picked.append(part.strip("/"))
            if not picked:
                raise UsageError("give numbers from the list or paths, separated by commas")
            return picked

        return self.io.ask_valid(
            "Which? (numbers from the list, or paths like budget/2026.xlsx; commas between)",
            check,
        )

    def schedule(self, profile: Profile) -> None:
        current = profile.schedule
        if current is None:
            self.io.say(f"'{profile.name}' has no schedule: it is backed up only when you ask.")
        else:
            self.io.say(f"'{profile.name}' is backed up {current.describe()} when due.")
        every = self.io.ask_valid(
            "Back up every (like 24h, 4h, 30m, 7d; 'off' for no schedule)",
            _interval_or_off,
            current.every_text if current else "24h",
        )
        if every == "off":
            for line in remove_schedule(self.env, self.store, profile.name):
                self.io.say(line)
            return
        between = self.io.ask_valid(
            "Only between (HH:MM-HH:MM; '-' for any time of day)",
            _window_or_any,
            (current.window_text if current else "") or "-",
        )
        days = self.io.ask_valid(
            "Only on (like mon-fri or mon,wed,fri; 'daily' for every day)",
            lambda answer: days_text(parse_days(answer)),
            current.days_text if current else "daily",
        )
        lines = set_schedule(
            self.env, self.store, profile.name, every, between, "" if days == "daily" else days,
            confirm=lambda question: self.io.confirm(question.removesuffix(" [y/N] "), False),
        )  # fmt: skip
        for line in lines:
            self.io.say(line)

    def connection(self, profile: Profile) -> None:
        """The transport, encryption and logon settings (the command line's --protocol,
        --encrypt and --auth), each with its current value as the default."""
        edited = dataclasses.replace(profile)
        edited.protocol = self.io.ask_valid(
            "Protocol (auto: SMB 2 or SMB 3 as the server needs; smb2; smb3)",
            validate_protocol,
            profile.protocol,
        )
        edited.encrypt = self.io.confirm("Require encryption (SMB 3)?", profile.encrypt)
        edited.auth = self.io.ask_valid(
            "Log on with (auto: the password, else your Kerberos ticket; password; kerberos)",
            validate_auth,
            profile.auth,
        )
        validate_profile(edited)
        self.store.replace(profile.name, edited)
        self.store.save()
        self.io.say(
            f"profile '{profile.name}' saved: protocol {edited.protocol}, encryption "
            f"{'required' if edited.encrypt else 'as the server wants'}, logon {edited.auth}"
        )

    def status(self) -> None:
        status(self.env, self.store, Output())

    def _dry_run(self, profile: Profile, operation: str, options: RunOptions, go: str) -> bool:
        """Show the plan, then ask whether to carry it out."""
        plan = dataclasses.replace(options, dry_run=True)
        report = execute(self.env, profile, operation, plan, Output())
        print_report(self.env, report, Output())
        if report.planned and self.io.confirm(
            f"List the {plural(len(report.planned), 'planned change')}?", default=False
        ):
            for action, path in report.planned:
                self.io.say(f"  {action:<20} {path}")
        if self.io.confirm(go, default=False):
            return True
        self.io.say("nothing was changed")
        return False

    def _run(self, profile: Profile, operation: str, options: RunOptions) -> None:
        status = run_operation(self.env, profile, operation, options, Output())
        if operation == "download" and options.target:
            kept = os.path.join(options.target, REPLACED_DIR)
            if os.path.isdir(kept):
                self.io.say(f"Local files that differed were kept in {kept}")
        if status != ExitStatus.SUCCESS:
            self.io.warn(f"the {operation} finished, but not everything went through (see above)")


def _moment_or_latest(answer: str) -> str:
    text = answer.strip()
    if text.lower() in ("", "latest", "now"):
        return "latest"
    if parse_stamp(text) is not None:
        return text  # a snapshot id, as 'backdown snapshots' shows them
    parse_moment(text, time.time(), None)  # one line saying what is wrong, asked again
    return text


def _interval_or_off(answer: str) -> str:
    if answer.strip().lower() in ("off", "none", "no"):
        return "off"
    return interval_text(parse_interval(answer))


def _window_or_any(answer: str) -> str:
    if answer.strip() in ("-", ""):
        return ""
    window = parse_window(answer)
    return "-".join(f"{m // 60:02d}:{m % 60:02d}" for m in window or ())
