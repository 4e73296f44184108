"""The interactive menu, driven through a pseudo-terminal as a person would use it.

Most tests run the real program (`python -m backdown --config-dir DIR`, no command) under
pexpect and answer its prompts; profiles point at the Samba test server. The last few run
cli.main in-process with the answers on a pipe, the way a script would feed the menu.
"""

from __future__ import annotations

import filecmp
import io
import os
import re
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest
from helpers import crontab_text, run_cli, tree_bytes
from samba import SambaServer

from backdown import cli
from backdown.credentials import save_password
from backdown.environment import Environment
from backdown.profile import Profile
from backdown.profile_store import ProfileStore

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 20
MENU_PROMPT = r"Choose 1-14 \([^)\n]*\): "

# The menu's items, coworker's first (backdown/main.py).
(BACKUP, DOWNLOAD, TEST, STATUS, SWITCH, CREATE, EDIT, PASSWORD, SCHEDULE, CONNECTION, UPLOAD,
 RENAME, DELETE, LIST) = map(str, range(1, 15))  # fmt: skip


class MenuSession:
    """One run of `backdown` with no command; everything it prints is kept in `output`."""

    def __init__(self, config_dir: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BACKDOWN_")}
        env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        env["TERM"] = "dumb"
        self.log = io.StringIO()
        self.child = pexpect.spawn(
            sys.executable,
            ["-m", "backdown", "--config-dir", str(config_dir)],
            cwd=str(ROOT),
            env=env,
            encoding="utf-8",
            timeout=TIMEOUT,
            dimensions=(50, 200),
        )
        self.child.logfile_read = self.log

    @property
    def output(self) -> str:
        return self.log.getvalue().replace("\r\n", "\n")

    def expect(self, pattern: str) -> str:
        """Wait for pattern (a regular expression); returns what was printed before it.

        pexpect matches with re.DOTALL: patterns say [^\\n]* rather than .*, which would
        swallow the next prompt too.
        """
        try:
            self.child.expect(pattern)
        except (pexpect.TIMEOUT, pexpect.EOF) as err:
            raise AssertionError(
                f"waited for {pattern!r}; the screen so far:\n{self.output}"
            ) from err
        return str(self.child.before)

    def answer(self, question: str, text: str) -> str:
        before = self.expect(question)
        self.child.sendline(text)
        return before

    def choose(self, choice: str) -> str:
        """Pick a menu entry; returns what was shown before the prompt (after an action,
        the action's result: the menu itself is shown again only on Enter)."""
        return self.answer(MENU_PROMPT, choice)

    def choose_from_menu(self, choice: str) -> str:
        """Enter (the menu again), then pick an entry; returns the menu screen."""
        self.answer(MENU_PROMPT, "")
        screen = self.expect(MENU_PROMPT)
        self.child.sendline(choice)
        return screen

    def finish(self) -> int:
        """Wait for the program to end; its exit status."""
        self.expect(pexpect.EOF)
        self.child.close()
        assert self.child.exitstatus is not None, f"killed by signal {self.child.signalstatus}"
        return int(self.child.exitstatus)

    def quit(self) -> int:
        self.choose("q")
        return self.finish()

    def create_profile(
        self,
        name: str,
        local: Path,
        samba: SambaServer,
        remote_dir: str,
        password: str | None = None,
    ) -> None:
        """Create a profile through the prompts, pointing at the Samba test server."""
        self.choose(CREATE)
        self.answer(r"Profile name \[profile_\d+\]: ", name)
        self.answer(r"Local folder: ", str(local))
        if not local.exists():
            self.answer(r"Create it\? \[Y/n\] ", "")
        self.answer(r"Server \(IP address or host name\): ", samba.host)
        self.answer(r"Port \[445\]: ", str(samba.port))
        self.answer(r"Share name: ", "backup")
        self.answer(r"Folder inside the share \(Enter = the share's root\): ", remote_dir)
        self.answer(r"User name \(Enter = guest\): ", samba.user)
        self.answer(r"Domain \(Enter = none\): ", "")
        self.answer(
            rf"Password for {samba.user} \(hidden; Enter = ask at each run\): ",
            samba.password if password is None else password,
        )
        self.expect(rf"profile '{name}' saved; it is now the current profile")


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    return tmp_path / "config"


@pytest.fixture
def menu(config_dir: Path) -> Iterator[MenuSession]:
    session = MenuSession(config_dir)
    yield session
    if session.child.isalive():
        session.child.terminate(force=True)


def folder(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.mkdir()
    return path


def assert_clean(output: str) -> None:
    assert "Traceback" not in output, output


# ---------------------------------------------------------------------- profiles


def test_profiles_are_created_switched_saved_and_remembered(
    menu: MenuSession, samba: SambaServer, remote_dir: str, tmp_path: Path, config_dir: Path
) -> None:
    home, work = folder(tmp_path, "home"), tmp_path / "work-not-there-yet"

    assert f"No profile yet: choose {CREATE} to create one." in menu.choose(LIST)
    menu.expect("no profile yet: create one first")
    menu.create_profile("home", home, samba, remote_dir)
    screen = menu.choose_from_menu(LIST)
    assert "Current profile: home" in screen
    assert f"{home}  ->  //127.0.0.1/backup/{remote_dir} (port {samba.port})" in screen

    menu.create_profile("work", work, samba, remote_dir + "/work")
    assert work.is_dir(), "the missing local folder was created when accepted"
    assert "Current profile: work" in menu.choose_from_menu(SWITCH)
    menu.answer(r"Switch to \(number or name\) \[work\]: ", "1")
    menu.expect("current profile: home")
    assert "Current profile: home" in menu.choose_from_menu(LIST)
    listing = menu.expect(MENU_PROMPT)
    assert re.search(r"^\* home ", listing, re.MULTILINE), listing
    assert re.search(r"^  work ", listing, re.MULTILINE), listing
    menu.child.sendline("q")
    assert menu.finish() == 0

    saved = (config_dir / "profiles.toml").read_text()
    assert 'name = "home"' in saved and 'name = "work"' in saved
    assert 'last_used = "home"' in saved
    assert samba.password not in saved, "profiles.toml must never hold a password"
    assert samba.password not in menu.output, "the password is typed without echo"
    # No keyring in the tests: the password went to a file only its owner can read.
    for name in ("home", "work"):
        credentials = config_dir / "credentials" / name
        assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    assert_clean(menu.output)

    again = MenuSession(config_dir)
    assert "Current profile: home" in again.expect(MENU_PROMPT)
    again.child.sendeof()
    assert again.finish() == 0


def test_rename_and_delete_with_confirmation(
    menu: MenuSession, samba: SambaServer, remote_dir: str, tmp_path: Path, config_dir: Path
) -> None:
    menu.create_profile("home", folder(tmp_path, "home"), samba, remote_dir)
    credentials = config_dir / "credentials"

    assert f"{RENAME}) Rename 'home'" in menu.choose_from_menu(RENAME)
    menu.answer(r"New name for 'home' \[home\]: ", "my/office")
    menu.expect("a profile name must start with a letter or digit")
    menu.answer(r"New name for 'home' \[home\]: ", "office")
    menu.expect("profile 'home' renamed to 'office'")
    assert "Current profile: office" in menu.choose_from_menu(DELETE)
    saved = (config_dir / "profiles.toml").read_text()
    assert 'name = "office"' in saved and 'name = "home"' not in saved
    assert sorted(os.listdir(credentials)) == ["office"], "the saved password moved along"

    menu.answer(r"Delete profile 'office' and its saved password\? \[y/N\] ", "")
    menu.expect("not deleted")
    assert "Current profile: office" in menu.choose_from_menu(DELETE)
    menu.answer(r"Delete profile 'office' and its saved password\? \[y/N\] ", "y")
    menu.expect(r"profile 'office' deleted \(its backups on the share are kept\)")
    assert "No profile yet" in menu.choose_from_menu("q")
    assert menu.finish() == 0

    assert "[[profile]]" not in (config_dir / "profiles.toml").read_text()
    assert os.listdir(credentials) == [], "the saved password was forgotten"
    assert_clean(menu.output)


def test_a_bad_menu_choice_is_asked_again(menu: MenuSession) -> None:
    for bad in ("0", "15", "x"):
        menu.choose(bad)
        menu.expect(f"'{bad}' is not on the menu: type a number from 1 to 14")
    menu.choose(LIST)
    menu.expect("no profile yet: create one first")
    assert menu.quit() == 0


def test_actions_without_a_profile_say_so(menu: MenuSession) -> None:
    for choice in (SWITCH, EDIT, RENAME, DELETE, TEST, UPLOAD, DOWNLOAD):
        menu.choose(choice)
        menu.expect("no profile yet: create one first")
    assert menu.quit() == 0


# ------------------------------------------------------------------ Ctrl-C, Ctrl-D


def test_ctrl_c_at_the_menu_leaves_with_status_130(menu: MenuSession, config_dir: Path) -> None:
    menu.expect(MENU_PROMPT)
    menu.child.sendintr()
    assert menu.finish() == 130
    assert "interrupted" in menu.output
    assert_clean(menu.output)


@pytest.mark.parametrize("where", ["question", "password"])
def test_ctrl_c_at_a_question_cancels_only_that_action(
    menu: MenuSession, config_dir: Path, where: str
) -> None:
    menu.expect("Ctrl-C or Ctrl-D cancels a question or a running backup.")
    menu.choose(CREATE)
    menu.answer(r"Profile name \[profile_1\]: ", "")
    menu.answer(r"Local folder: ", str(config_dir.parent))
    menu.answer(r"Server \(IP address or host name\): ", "127.0.0.1")
    if where == "password":
        menu.answer(r"Port \[445\]: ", "")
        menu.answer(r"Share name: ", "backup")
        menu.answer(r"Folder inside the share [^\n]*: ", "")
        menu.answer(r"User name [^\n]*: ", "alice")
        menu.answer(r"Domain [^\n]*: ", "")
        menu.expect(r"Password for alice [^\n]*: ")
    else:
        menu.expect(r"Port \[445\]: ")
    menu.child.sendintr()
    menu.expect("cancelled; back to the menu")
    assert menu.quit() == 0
    assert_clean(menu.output)
    assert not (config_dir / "profiles.toml").exists()


def test_ctrl_d_at_the_menu_quits(menu: MenuSession) -> None:
    menu.expect(MENU_PROMPT)
    menu.child.sendeof()
    assert menu.finish() == 0
    assert "bye" in menu.output
    assert_clean(menu.output)


def test_ctrl_d_inside_an_action_cancels_only_that_action(
    menu: MenuSession, config_dir: Path
) -> None:
    menu.choose(CREATE)
    menu.answer(r"Profile name \[profile_1\]: ", "home")
    menu.answer(r"Local folder: ", str(config_dir.parent))
    menu.answer(r"Server \(IP address or host name\): ", "127.0.0.1")
    menu.expect(r"Port \[445\]: ")
    menu.child.sendeof()
    menu.expect("cancelled")
    assert "No profile yet" in menu.choose_from_menu(LIST)
    menu.expect("no profile yet: create one first")
    assert menu.quit() == 0
    assert not (config_dir / "profiles.toml").exists()


# ------------------------------------------------------------------ against Samba


def test_a_wrong_password_leaves_the_menu_running(
    menu: MenuSession, samba: SambaServer, remote_dir: str, tmp_path: Path
) -> None:
    menu.create_profile("home", folder(tmp_path, "home"), samba, remote_dir, password="wrong")
    menu.choose(TEST)
    menu.expect(r"error: [^\n]*wrong user name or password")
    menu.choose(PASSWORD)
    menu.answer(r"New password for [^\n]*\(hidden; Enter = keep\): ", samba.password)
    menu.expect("password saved")
    menu.choose(TEST)
    menu.expect(r"Profile 'home' is ready")
    assert menu.quit() == 0
    assert_clean(menu.output)


def write_tree(root: Path) -> None:
    (root / "docs" / "2024" / "empty folder").mkdir(parents=True)
    (root / "docs" / "letter.txt").write_text("Dear Samba,\n" * 100)
    (root / "docs" / "2024" / "report é ü.txt").write_text("unicode name\n", encoding="utf-8")
    (root / "photo.bin").write_bytes(os.urandom(1_500_000))
    (root / "empty.txt").write_bytes(b"")
    (root / ".hidden").write_bytes(b"dot file")


def assert_same_tree(left: Path, right: Path) -> None:
    """Same folders, same file names, same bytes, all the way down."""
    compared = filecmp.dircmp(left, right)
    assert compared.left_only == [] and compared.right_only == [], (left, right)
    _, mismatch, errors = filecmp.cmpfiles(left, right, compared.common_files, shallow=False)
    assert mismatch == [] and errors == [], (left, mismatch, errors)
    for name in compared.common_dirs:
        assert_same_tree(left / name, right / name)


def test_upload_then_download_through_the_menu(
    menu: MenuSession, samba: SambaServer, remote_dir: str, tmp_path: Path
) -> None:
    local = folder(tmp_path, "local")
    write_tree(local)
    restored = tmp_path / "restored"
    menu.create_profile("home", local, samba, remote_dir)

    menu.choose(UPLOAD)
    menu.answer(r"Dry run first [^\n]*\[y/N\] ", "y")
    menu.answer(r"Mirror [^\n]*\[y/N\] ", "")
    menu.answer(r"Parallel transfers \[4\]: ", "")
    menu.expect(r"Dry run of upload for 'home'")
    menu.answer(r"List the \d+ planned changes\? \[y/N\] ", "")
    menu.answer(r"Upload now\? \[y/N\] ", "y")
    menu.expect(r"Backed up 'home': 5 files")
    menu.expect(r"0 failed")

    share_copy = samba.share_path("backup") / remote_dir
    for path in local.rglob("*"):
        if path.is_file():
            assert (share_copy / path.relative_to(local)).read_bytes() == path.read_bytes()

    menu.choose(DOWNLOAD)
    menu.answer(r"Restore only some files or folders [^\n]*\[y/N\] ", "")
    menu.answer(r"Restore the latest backup, or as of when\?[^\n]*\[latest\]: ", "")
    # A new folder beside the original by default, never over it unless chosen.
    menu.answer(rf"Restore into which folder \[{re.escape(str(local))}-restored-[0-9-]+\]: ",
                str(restored))  # fmt: skip
    menu.answer(r"Dry run first [^\n]*\[y/N\] ", "")
    menu.expect(r"Restored 'home': 5 files")
    menu.expect(r"0 failed")
    assert menu.quit() == 0
    assert_clean(menu.output)

    assert_same_tree(local, restored)


def test_ctrl_c_during_a_backup_goes_back_to_the_menu_and_the_next_one_resumes(
    menu: MenuSession, samba: SambaServer, remote_dir: str, tmp_path: Path
) -> None:
    local = folder(tmp_path, "local")
    for number in range(1500):
        (local / f"f{number}.txt").write_bytes(b"x" * 1000)
    menu.create_profile("home", local, samba, remote_dir)
    menu.choose(UPLOAD)
    menu.answer(r"Dry run first [^\n]*\[y/N\] ", "")
    menu.answer(r"Mirror [^\n]*\[y/N\] ", "")
    menu.answer(r"Parallel transfers \[4\]: ", "1")
    on_share = samba.share_path("backup") / remote_dir
    deadline = time.monotonic() + TIMEOUT
    while len(list(on_share.glob("*.txt"))) < 100:
        assert time.monotonic() < deadline, f"the upload did not start:\n{menu.output}"
        time.sleep(0.02)
    menu.child.sendintr()
    menu.expect("cancelled; back to the menu [^\n]*resumes where it stopped")
    assert "Backed up" not in menu.output
    menu.choose(BACKUP)  # one key, the profile's settings, no questions
    menu.expect(r"Backed up 'home': [0-9,]+ files sent")
    menu.expect(r"0 failed")
    assert menu.quit() == 0
    assert_clean(menu.output)
    assert tree_bytes(on_share) == tree_bytes(local)


# ------------------------------------------------------- piped input, in-process


def run_piped(config_dir: Path, answers: list[str], environ: dict[str, str]) -> tuple[int, str]:
    """Run `backdown --config-dir DIR` in-process with answers on a pipe; (status, output)."""
    out = io.StringIO()
    env = Environment(
        stdin=io.StringIO("".join(f"{a}\n" for a in answers)),
        stdout=out,
        stderr=out,
        environ=environ,
        config_dir=config_dir,
    )
    status = cli.main(["--config-dir", str(config_dir)], env=env)
    return status, out.getvalue()


def test_the_menu_reads_piped_answers_and_ends_at_end_of_input(
    tmp_path: Path, config_dir: Path
) -> None:
    local = folder(tmp_path, "local")
    answers = [CREATE, "home", str(local), "nas.example.lan", "", "backup", "", "", "", LIST]

    status, output = run_piped(config_dir, answers, {})

    assert status == 0, output
    assert "Port [445]: " in output
    assert "profile 'home' saved; it is now the current profile" in output
    assert "* home" in output and "as guest" in output
    assert output.rstrip().endswith("bye")
    assert 'name = "home"' in (config_dir / "profiles.toml").read_text()


def test_a_dry_run_first_shows_the_plan_and_may_stop_there(
    samba: SambaServer, remote_dir: str, tmp_path: Path, config_dir: Path
) -> None:
    local = folder(tmp_path, "local")
    (local / "a.txt").write_text("a")
    store = ProfileStore.load(config_dir)
    store.add(
        Profile(
            name="home",
            local=str(local),
            server=samba.host,
            port=samba.port,
            share="backup",
            remote_folder=remote_dir,
            user=samba.user,
            mode="mirror",
        )
    )
    store.save()

    answers = [UPLOAD, "y", "", "", "y", "n", "q"]
    status, output = run_piped(config_dir, answers, {"BACKDOWN_PASSWORD": samba.password})

    assert status == 0, output
    assert "[Y/n]" in output.split("Mirror", 1)[1].splitlines()[0], "a mirror profile says yes"
    assert "Dry run of upload for 'home'" in output
    summary, listed = output.split("List the 1 planned change? [y/N]", 1)
    assert "a.txt" not in summary, "the paths come on request, after the summary"
    assert re.search(r"new +a\.txt", listed), output
    assert "nothing was changed" in output
    assert list((samba.share_path("backup") / remote_dir).iterdir()) == []


def test_editing_a_profile_into_a_guest_forgets_its_password(
    tmp_path: Path, config_dir: Path
) -> None:
    local = folder(tmp_path, "local")
    store = ProfileStore.load(config_dir)
    profile = Profile(name="home", local=str(local), server="nas", share="backup", user="bob")
    store.add(profile)
    env = Environment(environ={}, config_dir=config_dir)
    save_password(profile, "s3cret", env)
    store.save()
    saved = config_dir / "credentials" / "home"
    assert saved.exists()

    # local, server, port, share, folder kept; user cleared; domain left empty.
    answers = [EDIT, "", "", "", "", "", "-", "", "q"]
    status, output = run_piped(config_dir, answers, {})

    assert status == 0, output
    assert "the saved password was removed: the profile now logs on as guest" in output
    assert not saved.exists()
    reloaded = ProfileStore.load(config_dir).get("home")
    assert (reloaded.user, reloaded.credentials_file) == ("", "")


def test_schedule_and_status_from_the_menu(
    menu: MenuSession, tmp_path: Path, samba: SambaServer, remote_dir: str, crontab: None
) -> None:
    menu.create_profile("office", tmp_path / "docs", samba, remote_dir)
    menu.choose(SCHEDULE)
    menu.expect("'office' has no schedule")
    menu.answer(r"Back up every[^\n]*\[24h\]: ", "4h")
    menu.answer(r"Only between[^\n]*\[-\]: ", "08:00-19:00")
    menu.answer(r"Only on[^\n]*\[daily\]: ", "mon-fri")
    menu.expect(r"'office' is backed up every 4h, 08:00-19:00, mon-fri when due")
    menu.expect(r"scheduled job: enabled \(cron")
    assert "# backdown:run-due-" in crontab_text()
    menu.choose(STATUS)
    menu.expect(r"office: never; every 4h, 08:00-19:00, mon-fri; last success never")
    menu.choose(SCHEDULE)
    menu.answer(r"Back up every[^\n]*\[4h\]: ", "off")
    menu.expect("no profile has a schedule now: the scheduled job was removed")
    assert menu.quit() == 0
    assert "backdown:run-due" not in crontab_text()


def test_restore_chosen_folders_as_of_a_date_from_the_menu(
    menu: MenuSession, samba: SambaServer, remote_dir: str, tmp_path: Path
) -> None:
    local = folder(tmp_path, "local")
    (local / "letters").mkdir()
    (local / "letters" / "a.txt").write_text("first")
    (local / "photos").mkdir()
    (local / "photos" / "p.jpg").write_text("picture")
    menu.create_profile("home", local, samba, remote_dir)
    menu.choose(UPLOAD)
    menu.answer(r"Dry run first [^\n]*\[y/N\] ", "")
    menu.answer(r"Mirror [^\n]*\[y/N\] ", "")
    menu.answer(r"Parallel transfers \[4\]: ", "")
    menu.expect(r"0 failed")
    time.sleep(1.1)
    between = time.strftime("%Y-%m-%d %H:%M:%S")
    time.sleep(1.1)
    (local / "letters" / "a.txt").write_text("second, longer")
    menu.choose(UPLOAD)
    menu.answer(r"Dry run first [^\n]*\[y/N\] ", "")
    menu.answer(r"Mirror [^\n]*\[y/N\] ", "")
    menu.answer(r"Parallel transfers \[4\]: ", "")
    menu.expect(r"0 failed")

    menu.choose(DOWNLOAD)
    menu.answer(r"Restore only some files or folders [^\n]*\[y/N\] ", "y")
    menu.expect(r"1\) letters/")
    menu.expect(r"2\) photos/")
    menu.answer(r"Which\?[^\n]*: ", "1")
    menu.answer(r"Restore the latest backup, or as of when\?[^\n]*\[latest\]: ", "last tuesday")
    menu.expect(r"is not a time")
    menu.answer(r"Restore the latest backup, or as of when\?[^\n]*\[latest\]: ", between)
    menu.answer(r"Restore into which folder [^\n]*: ", str(local))
    menu.expect(r"kept in [^\n]*\.backdown-replaced")
    menu.answer(r"Dry run first [^\n]*\[y/N\] ", "")
    menu.expect(r"Restored 'home': 1 file received")
    menu.expect(r"Local files that differed were kept in ")
    assert menu.quit() == 0
    assert (local / "letters" / "a.txt").read_text() == "first"
    [kept] = (local / ".backdown-replaced").rglob("a.txt")
    assert kept.read_text() == "second, longer"


def test_connection_settings_from_the_menu(
    menu: MenuSession, tmp_path: Path, samba: SambaServer, remote_dir: str, config_dir: Path
) -> None:
    menu.create_profile("office", tmp_path / "docs", samba, remote_dir)
    menu.choose(CONNECTION)
    menu.answer(r"Protocol [^\n]*\[auto\]: ", "smb2")
    menu.answer(r"Require encryption \(SMB 3\)\? \[y/N\] ", "")
    menu.answer(r"Log on with [^\n]*\[auto\]: ", "kerberos")
    menu.expect("a Kerberos logon needs the SMB 3 transport")  # refused, nothing saved
    menu.choose(CONNECTION)
    menu.answer(r"Protocol [^\n]*\[auto\]: ", "smb3")
    menu.answer(r"Require encryption \(SMB 3\)\? \[y/N\] ", "y")
    menu.answer(r"Log on with [^\n]*\[auto\]: ", "password")
    menu.expect("profile 'office' saved: protocol smb3, encryption required, logon password")
    menu.choose(TEST)
    menu.expect(r"transport smb3 \(smbprotocol\), dialect 3\.1\.1, signing \w+, encryption AES")
    assert menu.quit() == 0
    saved = ProfileStore.load(config_dir).get("office")
    assert (saved.protocol, saved.encrypt, saved.auth) == ("smb3", True, "password")


def test_the_menu_sees_edits_made_meanwhile_and_switches_ignoring_case(
    menu: MenuSession, tmp_path: Path, samba: SambaServer, remote_dir: str, config_dir: Path
) -> None:
    menu.create_profile("Alice Laptop", folder(tmp_path, "docs"), samba, remote_dir)
    menu.create_profile("office", folder(tmp_path, "office"), samba, remote_dir)
    menu.expect(MENU_PROMPT)  # the menu is done saving, and waits
    # Another terminal changes the first profile while the menu is open.
    edited = run_cli(["profile", "edit", "Alice Laptop", "--keep-versions-days", "7"], config_dir)
    assert edited.code == 0, edited
    menu.child.sendline(SWITCH)
    menu.answer(r"Switch to \(number or name\) \[office\]: ", "alice laptop")
    menu.expect("current profile: Alice Laptop")
    menu.choose(CONNECTION)  # a save of the menu's own: no "changed by someone else"
    menu.answer(r"Protocol [^\n]*\[auto\]: ", "")
    menu.answer(r"Require encryption \(SMB 3\)\? \[y/N\] ", "")
    menu.answer(r"Log on with [^\n]*\[auto\]: ", "")
    menu.expect("profile 'Alice Laptop' saved")
    assert menu.quit() == 0
    saved = ProfileStore.load(config_dir).get("Alice Laptop")
    assert saved.keep_versions_days == 7, "the other terminal's edit was kept"
    assert "changed by someone else" not in menu.output


def test_a_result_stays_on_screen_and_the_test_says_what_it_checked(
    menu: MenuSession, tmp_path: Path, samba: SambaServer, remote_dir: str
) -> None:
    local = folder(tmp_path, "docs")
    menu.create_profile("home", local, samba, remote_dir)
    menu.choose(TEST)
    checked = menu.expect(r"Profile 'home' is ready")
    for words in ("answered; logged on as", "share 'backup' opened", "is writable",
                  f"local folder {local} is present"):  # fmt: skip
        assert words in checked, checked
    after = menu.expect(MENU_PROMPT)
    assert "Back up now" not in after, "the menu is not printed over the result"
    assert "Enter = the menu" in menu.child.after
    menu.child.sendline("")  # Enter: the menu again
    assert "Back up now" in menu.expect(MENU_PROMPT)
    local.rmdir()
    menu.child.sendline(TEST)
    menu.expect(rf"NOT OK: local folder {re.escape(str(local))} is missing")
    menu.expect("its local folder is missing: create it")
    assert menu.quit() == 0
