"""Where a password comes from, and where a saved one goes."""

from __future__ import annotations

import errno
import io
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail
from keyring.errors import KeyringError, KeyringLocked, PasswordDeleteError

import backdown.credentials as credentials_module
from backdown.credentials import (
    SERVICE,
    forget_password,
    read_credentials_file,
    rename_password,
    resolve_logon,
    resolve_password,
    save_password,
)
from backdown.environment import Environment
from backdown.errors import CredentialsError
from backdown.profile import Profile

posix_only = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX only")


class MemoryKeyring(KeyringBackend):
    """A real keyring backend that keeps passwords in a dict.

    A stand-in for the system keyring: CI machines have no desktop keyring, and tests must
    never touch the developer's real one.
    """

    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.entries.pop((service, username), None) is None:
            raise PasswordDeleteError("no such password")


class LockedKeyring(KeyringBackend):
    """A keyring that looks usable but refuses every operation, like a locked one."""

    priority = 1

    def get_password(self, service: str, username: str) -> str | None:
        raise KeyringLocked("locked")

    def set_password(self, service: str, username: str, password: str) -> None:
        raise KeyringLocked("locked")


class FlakyKeyring(KeyringBackend):
    """A keyring that fails on demand and records every call made to it.

    A fake for what the system keyring cannot be made to do on demand in a test: refuse a
    write, lose one without saying so, or ignore the case of names as Windows' Credential
    Manager does.
    """

    priority = 1

    def __init__(self, *, ignore_case: bool = False) -> None:
        super().__init__()
        self.ignore_case = ignore_case
        self.entries: dict[str, str] = {}
        self.refuse: set[str] = set()  # set_password raises for these names
        self.drop: set[str] = set()  # set_password returns but stores nothing
        self.calls: list[tuple[str, str]] = []

    def _key(self, service: str, username: str) -> str:
        assert service == SERVICE
        return username.casefold() if self.ignore_case else username

    def get_password(self, service: str, username: str) -> str | None:
        self.calls.append(("get", username))
        return self.entries.get(self._key(service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.calls.append(("set", username))
        if username in self.refuse:
            raise KeyringError("refused")
        if username not in self.drop:
            self.entries[self._key(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.calls.append(("delete", username))
        if self.entries.pop(self._key(service, username), None) is None:
            raise PasswordDeleteError("no such password")


@contextmanager
def use_keyring(backend: KeyringBackend) -> Iterator[KeyringBackend]:
    """Make backend the keyring for the duration, then put the previous one back."""
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.set_keyring(previous)


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    with use_keyring(MemoryKeyring()) as backend:
        yield backend  # type: ignore[misc]


@pytest.fixture
def no_keyring() -> Iterator[KeyringBackend]:
    with use_keyring(fail.Keyring()) as backend:
        yield backend


def make_env(tmp_path: Path, stdin: str = "", **environ: str) -> Environment:
    return Environment(
        environ=dict(environ), config_dir=tmp_path / "config", stdin=io.StringIO(stdin)
    )


def make_profile(name: str = "home", **changes: object) -> Profile:
    values: dict[str, object] = {
        "name": name,
        "local": "/home/ann/Documents",
        "server": "192.168.1.10",
        "share": "backup",
        "user": "ann",
        "client_name": "LAPTOP",
    }
    values.update(changes)
    return Profile(**values)  # type: ignore[arg-type]


def write_credentials(path: Path, text: str, mode: int = 0o600) -> str:
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return str(path)


class Prompt:
    """Records the prompt text and answers with a fixed password."""

    def __init__(self, answer: str = "from-prompt") -> None:
        self.answer = answer
        self.asked: list[str] = []

    def __call__(self, text: str) -> str:
        self.asked.append(text)
        return self.answer


# --- order of the sources -------------------------------------------------------------


@pytest.fixture
def every_source(tmp_path: Path, memory_keyring: MemoryKeyring) -> tuple[Profile, Prompt]:
    """A profile for which every source has a different password."""
    memory_keyring.set_password(SERVICE, "home", "from-keyring")
    credentials = write_credentials(tmp_path / "cred", "username=ann\npassword=from-file\n")
    return make_profile(credentials_file=credentials), Prompt()


def test_stdin_comes_first(tmp_path: Path, every_source: tuple[Profile, Prompt]) -> None:
    profile, prompt = every_source
    env = make_env(tmp_path, "from-stdin\n", BACKDOWN_PASSWORD="from-env")
    password = resolve_password(profile, env, password_stdin=True, prompt=prompt)
    assert password == "from-stdin"
    assert prompt.asked == []


def test_environment_beats_keyring(tmp_path: Path, every_source: tuple[Profile, Prompt]) -> None:
    profile, prompt = every_source
    env = make_env(tmp_path, "from-stdin\n", BACKDOWN_PASSWORD="from-env")
    assert resolve_password(profile, env, prompt=prompt) == "from-env"


def test_keyring_beats_file(
    tmp_path: Path, every_source: tuple[Profile, Prompt], memory_keyring: MemoryKeyring
) -> None:
    profile, prompt = every_source
    assert resolve_password(profile, make_env(tmp_path), prompt=prompt) == "from-keyring"


def test_file_beats_prompt(
    tmp_path: Path, every_source: tuple[Profile, Prompt], memory_keyring: MemoryKeyring
) -> None:
    profile, prompt = every_source
    memory_keyring.delete_password(SERVICE, "home")
    assert resolve_password(profile, make_env(tmp_path), prompt=prompt) == "from-file"
    assert prompt.asked == []


def test_prompt_is_last(tmp_path: Path, no_keyring: KeyringBackend) -> None:
    prompt = Prompt()
    assert resolve_password(make_profile(), make_env(tmp_path), prompt=prompt) == "from-prompt"
    assert prompt.asked == ["Password for ann@192.168.1.10: "]
    resolve_password(make_profile(domain="HOME"), make_env(tmp_path), prompt=prompt)
    assert prompt.asked[-1] == "Password for HOME\\ann@192.168.1.10: "


def test_no_source_is_a_credentials_error(tmp_path: Path, no_keyring: KeyringBackend) -> None:
    with pytest.raises(CredentialsError) as caught:
        resolve_password(make_profile(), make_env(tmp_path))
    assert str(caught.value) == (
        "no password for profile 'home': give --password-stdin, set BACKDOWN_PASSWORD, "
        "or save one with 'backdown profile edit home --password-stdin'"
    )


def test_guest_needs_no_password(tmp_path: Path, memory_keyring: MemoryKeyring) -> None:
    memory_keyring.set_password(SERVICE, "home", "from-keyring")
    env = make_env(tmp_path, "from-stdin\n", BACKDOWN_PASSWORD="from-env")
    prompt = Prompt()
    guest = make_profile(user="", credentials_file=str(tmp_path / "missing"))
    assert resolve_password(guest, env, password_stdin=True, prompt=prompt) == ""
    assert prompt.asked == []
    assert env.stdin.read() == "from-stdin\n"  # not consumed


def test_empty_environment_variable_counts_as_unset(
    tmp_path: Path, no_keyring: KeyringBackend
) -> None:
    env = make_env(tmp_path, BACKDOWN_PASSWORD="")
    assert resolve_password(make_profile(), env, prompt=Prompt()) == "from-prompt"


def test_locked_keyring_falls_through_to_the_next_source(tmp_path: Path) -> None:
    with use_keyring(LockedKeyring()):
        assert resolve_password(make_profile(), make_env(tmp_path), prompt=Prompt()) == (
            "from-prompt"
        )


# --- standard input ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stdin", "expected"),
    [
        ("pw\n", "pw"),
        ("  spaces kept  \n", "  spaces kept  "),
        ("windows\r\n", "windows"),
        ("no newline", "no newline"),
        ("\n", ""),
        ("first\nsecond\n", "first"),
    ],
)
def test_stdin_strips_only_the_newline(tmp_path: Path, stdin: str, expected: str) -> None:
    env = make_env(tmp_path, stdin)
    assert resolve_password(make_profile(), env, password_stdin=True) == expected


def test_empty_stdin_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="standard input is empty"):
        resolve_password(make_profile(), make_env(tmp_path, ""), password_stdin=True)


# --- credentials files ------------------------------------------------------------------


def test_credentials_file_format(tmp_path: Path) -> None:
    path = write_credentials(
        tmp_path / "cred",
        "# written by hand\n"
        "\n"
        "   username = ann\r\n"
        "PASSWORD =  p=ss#word  \n"
        "  # domain=IGNORED\n"
        "domain=HOME\n"
        "a line without an equals sign\n",
    )
    assert read_credentials_file(path) == {
        "username": "ann",
        # As in Samba: spaces after '=' go, the rest of the line is the password.
        "password": "p=ss#word  ",
        "domain": "HOME",
    }


def test_profile_user_wins_over_file_username(tmp_path: Path, no_keyring: KeyringBackend) -> None:
    path = write_credentials(tmp_path / "cred", "username=bob\npassword=pw\ndomain=FILE\n")
    profile = make_profile(credentials_file=path, domain="HOME")
    assert resolve_logon(profile, make_env(tmp_path)) == (profile, "pw")
    # Without a user in the profile, the file's user and domain log on; the saved profile
    # is left as it is, and a domain in the profile still wins.
    guest = make_profile(user="", credentials_file=path)
    logon, password = resolve_logon(guest, make_env(tmp_path))
    assert (logon.user, logon.domain, password) == ("bob", "FILE", "pw")
    assert (guest.user, guest.domain) == ("", "")
    logon, _ = resolve_logon(
        make_profile(user="", domain="HOME", credentials_file=path), make_env(tmp_path)
    )
    assert (logon.user, logon.domain) == ("bob", "HOME")
    # A file without username= leaves a guest profile a guest, after checking the file.
    path = write_credentials(tmp_path / "cred", "password=pw\n")
    assert resolve_logon(make_profile(user="", credentials_file=path), make_env(tmp_path)) == (
        make_profile(user="", credentials_file=path),
        "",
    )


@posix_only
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_credentials_file_open_to_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = write_credentials(tmp_path / "cred", "password=hunter2\n", mode)
    with pytest.raises(CredentialsError) as caught:
        read_credentials_file(path)
    message = str(caught.value)
    assert message.startswith(f"credentials file {path} is ")
    assert f"by other users (mode {mode:04o}); run: chmod 600 {path}" in message
    assert "hunter2" not in message


@posix_only
@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_private_credentials_file_is_accepted(tmp_path: Path, mode: int) -> None:
    path = write_credentials(tmp_path / "cred", "password=pw\n", mode)
    assert read_credentials_file(path) == {"password": "pw"}


def test_missing_credentials_file_is_named(tmp_path: Path, no_keyring: KeyringBackend) -> None:
    missing = str(tmp_path / "nowhere")
    with pytest.raises(CredentialsError, match=f"credentials file {missing} does not exist"):
        resolve_password(
            make_profile(credentials_file=missing), make_env(tmp_path), prompt=Prompt()
        )


def test_credentials_file_that_is_a_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir(mode=0o700)
    with pytest.raises(CredentialsError) as caught:
        read_credentials_file(str(folder))
    assert str(folder) in str(caught.value)


def test_credentials_file_not_utf8_does_not_quote_it(tmp_path: Path) -> None:
    path = tmp_path / "cred"
    path.write_bytes(b"password=caf\xe9\n")
    path.chmod(0o600)
    with pytest.raises(CredentialsError, match="not UTF-8") as caught:
        read_credentials_file(str(path))
    assert "xe9" not in str(caught.value)


def test_credentials_file_without_password_is_named(
    tmp_path: Path, no_keyring: KeyringBackend
) -> None:
    path = write_credentials(tmp_path / "cred", "username=ann\n")
    with pytest.raises(CredentialsError) as caught:
        resolve_password(make_profile(credentials_file=path), make_env(tmp_path))
    assert f"{path} has no password= line" in str(caught.value)
    # With a prompt the user is simply asked.
    profile = make_profile(credentials_file=path)
    assert resolve_password(profile, make_env(tmp_path), prompt=Prompt()) == "from-prompt"


# --- saving, renaming, forgetting -------------------------------------------------------


def own_file(tmp_path: Path, name: str) -> Path:
    return tmp_path / "config" / "credentials" / name


def test_save_without_keyring_writes_a_private_file(
    tmp_path: Path, no_keyring: KeyringBackend
) -> None:
    env = make_env(tmp_path)
    profile = make_profile(domain="HOME")
    message = save_password(profile, "s3cret Pa55 ", env)

    path = own_file(tmp_path, "home")
    assert profile.credentials_file == str(path)
    assert message == (
        f"no system keyring available; password saved in {path} (readable only by you)"
    )
    assert read_credentials_file(str(path)) == {
        "username": "ann",
        "password": "s3cret Pa55 ",
        "domain": "HOME",
    }
    assert resolve_password(profile, env) == "s3cret Pa55 "
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert os.listdir(path.parent) == ["home"]


def test_save_with_locked_keyring_falls_back_to_the_file(tmp_path: Path) -> None:
    profile = make_profile()
    with use_keyring(LockedKeyring()):
        message = save_password(profile, "pw", make_env(tmp_path))
    assert message.startswith("the system keyring refused the password; password saved in ")
    assert profile.credentials_file == str(own_file(tmp_path, "home"))


def test_save_refuses_a_password_the_file_cannot_hold(
    tmp_path: Path, no_keyring: KeyringBackend
) -> None:
    for password in ["two\nlines", " leading space"]:
        with pytest.raises(CredentialsError) as caught:
            save_password(make_profile(), password, make_env(tmp_path))
        assert password not in str(caught.value)
    assert not own_file(tmp_path, "home").exists()


def test_save_with_keyring_stores_it_there_and_drops_our_old_file(
    tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    env = make_env(tmp_path)
    profile = make_profile()
    with use_keyring(fail.Keyring()):
        save_password(profile, "old", env)
    assert own_file(tmp_path, "home").exists()

    assert save_password(profile, "new", env) == "password saved in the system keyring"
    assert memory_keyring.entries == {(SERVICE, "home"): "new"}
    assert not own_file(tmp_path, "home").exists()
    assert profile.credentials_file == ""
    assert resolve_password(profile, env) == "new"


def test_rename_moves_our_file(tmp_path: Path, no_keyring: KeyringBackend) -> None:
    env = make_env(tmp_path)
    profile = make_profile()
    save_password(profile, "pw", env)
    profile.name = "house"
    rename_password("home", profile, env)
    assert not own_file(tmp_path, "home").exists()
    assert profile.credentials_file == str(own_file(tmp_path, "house"))
    assert resolve_password(profile, env) == "pw"


def test_rename_moves_the_keyring_entry(tmp_path: Path, memory_keyring: MemoryKeyring) -> None:
    env = make_env(tmp_path)
    profile = make_profile()
    save_password(profile, "pw", env)
    profile.name = "Home"
    rename_password("home", profile, env)
    assert memory_keyring.entries == {(SERVICE, "Home"): "pw"}
    assert resolve_password(profile, env) == "pw"


def test_rename_keeps_a_user_credentials_file(tmp_path: Path, no_keyring: KeyringBackend) -> None:
    path = write_credentials(tmp_path / "mine", "password=pw\n")
    profile = make_profile(credentials_file=path)
    profile.name = "house"
    rename_password("home", profile, make_env(tmp_path))
    assert profile.credentials_file == path
    assert Path(path).exists()


def test_forget_removes_our_file_and_keyring_entry(
    tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    env = make_env(tmp_path)
    profile = make_profile()
    with use_keyring(fail.Keyring()):
        save_password(profile, "pw", env)
    memory_keyring.set_password(SERVICE, "home", "pw")

    forget_password(profile, env)
    assert not own_file(tmp_path, "home").exists()
    assert profile.credentials_file == ""
    assert memory_keyring.entries == {}
    forget_password(profile, env)  # forgetting twice is fine


def test_forget_never_deletes_a_user_credentials_file(
    tmp_path: Path, no_keyring: KeyringBackend
) -> None:
    path = write_credentials(tmp_path / "mine", "password=pw\n")
    profile = make_profile(credentials_file=path)
    forget_password(profile, make_env(tmp_path))
    assert Path(path).read_text() == "password=pw\n"
    assert profile.credentials_file == path


# --- renaming with a keyring that fails ---------------------------------------------------
# Each of these loses the password, or checks a step, that the old delete-then-set move did
# not have: they fail if that move comes back.


def flaky_profile(tmp_path: Path, keyring: FlakyKeyring, password: str = "pw") -> Profile:
    """A profile 'home' whose password is saved in the keyring, and no calls recorded."""
    profile = make_profile()
    assert save_password(profile, password, make_env(tmp_path)) == (
        "password saved in the system keyring"
    )
    keyring.calls.clear()
    return profile


def test_rename_writes_the_new_entry_before_deleting_the_old(tmp_path: Path) -> None:
    keyring = FlakyKeyring()
    with use_keyring(keyring):
        profile = flaky_profile(tmp_path, keyring)
        profile.name = "house"
        rename_password("home", profile, make_env(tmp_path))
        assert keyring.calls == [
            ("get", "home"),
            ("set", "house"),
            ("get", "house"),  # confirmed readable before the old entry goes
            ("delete", "home"),
        ]
        assert keyring.entries == {"house": "pw"}
        assert resolve_password(profile, make_env(tmp_path)) == "pw"


@pytest.mark.parametrize("failure", ["refuse", "drop"])
def test_rename_keeps_the_old_entry_when_the_new_one_fails(tmp_path: Path, failure: str) -> None:
    keyring = FlakyKeyring()
    with use_keyring(keyring):
        profile = flaky_profile(tmp_path, keyring)
        # Refused: a keyring locked from now on, so putting the old entry back fails too.
        # Dropped: the write seems to work but nothing can be read back.
        getattr(keyring, failure).update({"house", "home"})
        profile.name = "house"
        rename_password("home", profile, make_env(tmp_path))
        assert ("delete", "home") not in keyring.calls
        assert keyring.entries == {"home": "pw"}


def test_case_only_rename_deletes_first_on_a_keyring_that_ignores_case(tmp_path: Path) -> None:
    keyring = FlakyKeyring(ignore_case=True)
    with use_keyring(keyring):
        profile = flaky_profile(tmp_path, keyring)
        profile.name = "Home"
        rename_password("home", profile, make_env(tmp_path))
        # Writing 'Home' first and then deleting 'home' would delete the only entry.
        assert keyring.calls == [
            ("get", "home"),
            ("delete", "home"),
            ("set", "Home"),
            ("get", "Home"),  # confirmed readable
        ]
        assert keyring.entries == {"home": "pw"}
        assert resolve_password(profile, make_env(tmp_path)) == "pw"


def test_case_only_rename_puts_back_a_write_the_keyring_lost(tmp_path: Path) -> None:
    keyring = FlakyKeyring()
    with use_keyring(keyring):
        profile = flaky_profile(tmp_path, keyring)
        keyring.drop.add("Home")
        profile.name = "Home"
        rename_password("home", profile, make_env(tmp_path))
        assert keyring.entries == {"home": "pw"}
        assert not own_file(tmp_path, "Home").exists()


@pytest.mark.parametrize("failure", ["refuse", "drop"])
def test_case_only_rename_falls_back_to_our_file_when_set_and_restore_fail(
    tmp_path: Path, failure: str
) -> None:
    env = make_env(tmp_path)
    keyring = FlakyKeyring(ignore_case=True)
    with use_keyring(keyring):
        profile = make_profile(domain="HOME")
        # A stale file of ours under the old name: the keyring's password is the current
        # one, and the move of our file must not overwrite it.
        with use_keyring(fail.Keyring()):
            save_password(profile, "stale", env)
        keyring.set_password(SERVICE, "home", "s3cret Pa55 ")
        getattr(keyring, failure).update({"Home", "home"})
        profile.name = "Home"

        rename_password("home", profile, env)

        assert keyring.entries == {}
        path = own_file(tmp_path, "Home")
        assert profile.credentials_file == str(path)
        assert read_credentials_file(str(path)) == {
            "username": "ann",
            "password": "s3cret Pa55 ",
            "domain": "HOME",
        }
        if os.name == "posix":
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert os.listdir(path.parent) == ["Home"]
        assert resolve_password(profile, env) == "s3cret Pa55 "


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("s3cret Pa55", "no space left on device"),
        ("two\nlines", "the password contains a line break or starts with a space"),
    ],
)
def test_case_only_rename_that_cannot_keep_the_password_says_so(
    tmp_path: Path,
    password: str,
    why: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def disk_full(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(credentials_module, "write_private_file", disk_full)
    keyring = FlakyKeyring(ignore_case=True)
    with use_keyring(keyring):
        profile = flaky_profile(tmp_path, keyring, password)
        keyring.refuse.update({"Home", "home"})
        profile.name = "Home"

        with pytest.raises(CredentialsError) as caught:
            rename_password("home", profile, make_env(tmp_path))

    message = str(caught.value)
    assert message == (
        "the system keyring lost the saved password while renaming profile 'home' to 'Home', "
        f"and it could not be saved in {own_file(tmp_path, 'Home')} either ({why}); enter it again "
        "with 'backdown profile edit Home --password-stdin'"
    )
    assert "\n" not in message
    assert password not in message and password not in repr(caught.value)
    assert password not in caplog.text
