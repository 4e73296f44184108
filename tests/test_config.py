"""The saved profiles: profiles.toml round trips, file modes, errors that leave the file alone."""

from __future__ import annotations

import errno
import io
import os
import signal
import stat
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from helpers import run_cli
from keyring.backends import fail

from backdown.credentials import save_password
from backdown.environment import Environment
from backdown.errors import ConfigError, UsageError
from backdown.profile import Profile
from backdown.profile_store import FILE_NAME, FORMAT_VERSION, ProfileStore

posix_only = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX only")


def make_profile(name: str = "profile_1", **changes: object) -> Profile:
    values: dict[str, object] = {
        "name": name,
        "local": "/home/ann/Documents",
        "server": "192.168.1.10",
        "share": "backup",
        "client_name": "LAPTOP",
    }
    values.update(changes)
    return Profile(**values)  # type: ignore[arg-type]


def full_profile() -> Profile:
    """A profile where no field has its default value."""
    return make_profile(
        "photos",
        local="/home/ann/Pictures",
        server="nas.example.lan",
        share="media",
        remote_folder="ann/photos",
        port=1445,
        user="ann",
        domain="HOME",
        client_name="ANN-LAPTOP",
        credentials_file="/home/ann/.smb-credentials",
        mode="mirror",
        keep_versions_days=7,
        excludes=["*.tmp", "cache/", "Thumbs.db"],
    )


def write_file(config_dir: Path, text: str) -> bytes:
    """Write profiles.toml by hand and return its bytes, to compare after a failed load."""
    config_dir.mkdir(parents=True, exist_ok=True)
    path = config_dir / FILE_NAME
    path.write_text(text, encoding="utf-8")
    return path.read_bytes()


VALID_PROFILE = """
[[profile]]
name = "home"
local = "/home/ann"
server = "192.168.1.10"
share = "backup"
"""


# --- round trip -------------------------------------------------------------------------


def test_save_and_load_keep_every_field_in_order(tmp_path: Path) -> None:
    store = ProfileStore(tmp_path)
    saved = [full_profile(), make_profile("profile_1"), make_profile("work", port=4455)]
    for profile in saved:
        store.add(profile)
    store.set_current("work")
    store.save()

    loaded = ProfileStore.load(tmp_path)
    assert loaded.profiles == saved
    assert loaded.names() == ["photos", "profile_1", "work"]
    assert loaded.last_used == "work"
    assert loaded.current() == saved[2]


def test_file_records_format_version_and_no_password(tmp_path: Path) -> None:
    store = ProfileStore(tmp_path)
    store.add(full_profile())
    store.save()
    text = (tmp_path / FILE_NAME).read_text(encoding="utf-8")
    assert f"format_version = {FORMAT_VERSION}" in text
    assert "[[profile]]" in text
    assert "password =" not in text


def test_missing_file_gives_empty_store_and_writes_nothing(tmp_path: Path) -> None:
    config_dir = tmp_path / "not-yet"
    store = ProfileStore.load(config_dir)
    assert store.profiles == []
    assert store.last_used is None
    assert store.current() is None
    assert store.path == config_dir / FILE_NAME
    assert not config_dir.exists()


def test_missing_format_version_reads_as_version_1(tmp_path: Path) -> None:
    write_file(tmp_path, VALID_PROFILE)
    assert ProfileStore.load(tmp_path).names() == ["home"]


def test_empty_store_round_trips(tmp_path: Path) -> None:
    ProfileStore(tmp_path).save()
    assert ProfileStore.load(tmp_path).profiles == []


# --- modes and atomic writes ------------------------------------------------------------


@posix_only
def test_new_config_dir_is_0700_and_file_0600_even_with_a_lax_umask(tmp_path: Path) -> None:
    config_dir = tmp_path / "config" / "backdown"
    old_umask = os.umask(0)
    try:
        store = ProfileStore(config_dir)
        store.add(make_profile())
        store.save()
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(config_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((config_dir / FILE_NAME).stat().st_mode) == 0o600


@posix_only
@pytest.mark.parametrize("mode", [0o777, 0o755, 0o750, 0o701], ids=lambda m: f"{m:04o}")
def test_existing_config_dir_open_to_others_is_tightened_to_0700(tmp_path: Path, mode: int) -> None:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    store = ProfileStore(config_dir)
    store.add(make_profile())
    store.save()
    # Opening it (every command, and the menu) tightens it.
    config_dir.chmod(mode)
    result = run_cli(["profile", "list"], config_dir)
    assert result.code == 0, result
    assert stat.S_IMODE(config_dir.stat().st_mode) == 0o700
    # So does saving into it.
    store = ProfileStore.load(config_dir)
    config_dir.chmod(mode)
    store.save()
    assert stat.S_IMODE(config_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((config_dir / FILE_NAME).stat().st_mode) == 0o600


@posix_only
def test_config_dir_that_cannot_be_tightened_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    ProfileStore(config_dir).save()
    config_dir.chmod(0o777)
    before = (config_dir / FILE_NAME).read_bytes()

    def not_the_owner(path: object, mode: int, *args: object, **kwargs: object) -> None:
        # What chmod says to anyone but the folder's owner (and root, who runs the tests).
        raise PermissionError(errno.EPERM, "Operation not permitted", str(path))

    monkeypatch.setattr(os, "chmod", not_the_owner)
    result = run_cli(["profile", "list"], config_dir)
    monkeypatch.undo()
    assert result.code == 2, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert str(config_dir) in lines[0] and "chmod 700" in lines[0]
    assert (config_dir / FILE_NAME).read_bytes() == before
    assert stat.S_IMODE(config_dir.stat().st_mode) == 0o777


@posix_only
def test_a_shared_folder_like_tmp_is_never_changed(tmp_path: Path) -> None:
    """`--config-dir /tmp` by mistake, as root, must not make /tmp private."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    result = run_cli(["profile", "list"], shared)
    assert result.code == 2, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and str(shared) in lines[0] and "--config-dir" in lines[0]
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777


def test_saves_leave_no_temporary_files(tmp_path: Path) -> None:
    store = ProfileStore(tmp_path)
    for number in range(1, 4):
        store.add(make_profile(f"profile_{number}"))
        store.save()
    assert sorted(os.listdir(tmp_path)) == [FILE_NAME]


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs POSIX file size limits")
def test_failed_write_leaves_old_file_and_no_temporary_file(tmp_path: Path) -> None:
    import resource

    store = ProfileStore(tmp_path)
    store.add(make_profile())
    store.save()
    before = (tmp_path / FILE_NAME).read_bytes()
    store.add(make_profile("profile_2", excludes=["x" * 50] * 100))

    # A file size limit makes the write fail even for root, where chmod would not.
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) + 10, old_limit[1]))
    try:
        with pytest.raises(ConfigError) as caught:
            store.save()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)

    assert str(tmp_path / FILE_NAME) in str(caught.value)
    assert "nothing was changed" in str(caught.value)
    assert (tmp_path / FILE_NAME).read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == [FILE_NAME]


def test_save_into_a_config_dir_that_is_a_file_is_a_config_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "config"
    not_a_dir.write_text("")
    with pytest.raises(ConfigError, match="cannot save"):
        ProfileStore(not_a_dir).save()


@posix_only
def test_symlinked_file_stays_a_symlink(tmp_path: Path) -> None:
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    real = dotfiles / "profiles.toml"
    real.write_text(VALID_PROFILE)
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / FILE_NAME).symlink_to(real)

    store = ProfileStore.load(config_dir)
    store.add(make_profile())
    store.save()
    assert (config_dir / FILE_NAME).is_symlink()
    assert ProfileStore.load(dotfiles).names() == ["home", "profile_1"]


def test_save_refuses_when_the_file_changed_since_it_was_read(tmp_path: Path) -> None:
    first = ProfileStore.load(tmp_path)
    second = ProfileStore.load(tmp_path)
    first.add(make_profile("profile_1"))
    first.save()
    first.add(make_profile("profile_2"))
    first.save()  # its own earlier save is no conflict

    second.add(make_profile("other"))
    with pytest.raises(ConfigError, match="changed"):
        second.save()
    assert ProfileStore.load(tmp_path).names() == ["profile_1", "profile_2"]


# --- editing ----------------------------------------------------------------------------


def test_next_default_name_counts_up_from_the_highest(tmp_path: Path) -> None:
    store = ProfileStore(tmp_path)
    assert store.next_default_name() == "profile_1"
    store.add(make_profile("profile_1"))
    assert store.next_default_name() == "profile_2"
    store.add(make_profile("Profile_3"))
    store.add(make_profile("photos"))
    assert store.next_default_name() == "profile_4"
    store.remove("Profile_3")
    assert store.next_default_name() == "profile_2"


def test_add_refuses_a_taken_name_even_in_another_case(tmp_path: Path) -> None:
    store = ProfileStore(tmp_path)
    store.add(make_profile("home"))
    with pytest.raises(UsageError, match="'home' already exists"):
        store.add(make_profile("home"))
    with pytest.raises(UsageError, match="'home' already exists"):
        store.add(make_profile("HOME"))
    assert store.names() == ["home"]


def test_add_validates_the_profile(tmp_path: Path) -> None:
    store = ProfileStore(tmp_path)
    with pytest.raises(UsageError, match="port"):
        store.add(make_profile(port=0))
    assert store.profiles == []


def test_get_unknown_name_says_how_to_list(tmp_path: Path) -> None:
    store = ProfileStore(tmp_path)
    store.add(make_profile("home"))
    assert store.find("nope") is None
    with pytest.raises(UsageError) as caught:
        store.get("nope")
    assert str(caught.value) == (
        "no profile named 'nope'; 'backdown profile list' shows the saved ones"
    )


def test_rename_updates_last_used_and_checks_the_new_name(tmp_path: Path) -> None:
    store = ProfileStore(tmp_path)
    store.add(make_profile("home"))
    store.add(make_profile("work"))
    store.set_current("home")

    renamed = store.rename("home", "house")
    assert renamed.name == "house"
    assert store.names() == ["house", "work"]
    assert store.last_used == "house"
    with pytest.raises(UsageError, match="already exists"):
        store.rename("house", "WORK")
    with pytest.raises(UsageError, match="profile name"):
        store.rename("house", "bad name/")
    assert store.rename("house", "House").name == "House"  # a change of case only is fine
    with pytest.raises(UsageError, match="no profile named"):
        store.rename("home", "x")


def test_remove_returns_the_profile_and_forgets_last_used(tmp_path: Path) -> None:
    store = ProfileStore(tmp_path)
    store.add(make_profile("home"))
    store.add(make_profile("work"))
    store.set_current("work")
    assert store.remove("work").name == "work"
    assert store.last_used is None
    assert store.current() is not None and store.current().name == "home"  # type: ignore[union-attr]
    store.save()
    assert ProfileStore.load(tmp_path).names() == ["home"]


def test_replace_edits_in_place_but_does_not_rename(tmp_path: Path) -> None:
    store = ProfileStore(tmp_path)
    store.add(make_profile("home"))
    store.add(make_profile("work"))
    store.replace("home", make_profile("home", share="other"))
    assert store.get("home").share == "other"
    assert store.names() == ["home", "work"]
    with pytest.raises(ValueError, match="rename"):
        store.replace("home", make_profile("elsewhere"))


def test_current_falls_back_to_the_first_profile(tmp_path: Path) -> None:
    write_file(tmp_path, 'last_used = "gone"\n' + VALID_PROFILE)
    store = ProfileStore.load(tmp_path)
    assert store.current() is not None and store.current().name == "home"  # type: ignore[union-attr]
    with pytest.raises(UsageError):
        store.set_current("gone")


# --- files that cannot be used ----------------------------------------------------------


def test_invalid_toml_names_file_and_line_and_leaves_it_alone(tmp_path: Path) -> None:
    before = write_file(tmp_path, 'format_version = 1\n\n[[profile]\nname = "x"\n')
    with pytest.raises(ConfigError) as caught:
        ProfileStore.load(tmp_path)
    message = str(caught.value)
    path = tmp_path / FILE_NAME
    assert message.startswith(f"cannot read {path}: invalid TOML at line 3, column ")
    assert message.endswith("; fix or move the file away (it was left unchanged)")
    assert "\n" not in message
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == [FILE_NAME]


def test_truncated_toml_is_reported_at_the_end_of_the_file(tmp_path: Path) -> None:
    write_file(tmp_path, 'last_used = "unterminated')
    with pytest.raises(ConfigError, match="at the end of the file"):
        ProfileStore.load(tmp_path)


WRONG_CONTENT = {
    "bad port": (VALID_PROFILE + "port = 70000\n", ["profile 'home' (line 2)", "65535"]),
    "missing server": (
        '[[profile]]\nname = "home"\nlocal = "/home/ann"\nshare = "backup"\n',
        ["profile 'home' (line 1)", "'server'"],
    ),
    "unknown key": (VALID_PROFILE + 'colour = "blue"\n', ["'home'", "'colour'"]),
    "unknown top-level key": ('colour = "blue"\n' + VALID_PROFILE, ["'colour'"]),
    "duplicate names": (
        VALID_PROFILE + VALID_PROFILE.replace('"home"', '"Home"'),
        ["'home' (line 2)", "'Home' (line 8)", "same name"],
    ),
    "future format_version": (
        f"format_version = {FORMAT_VERSION + 1}\n" + VALID_PROFILE,
        ["newer backdown", "upgrade"],
    ),
    "password in the file": (
        VALID_PROFILE + 'password = "hunter2"\n',
        ["'home'", "must never hold", "--password-stdin"],
    ),
    "profile not a list": (VALID_PROFILE.replace("[[profile]]", "[profile]"), ["[[profile]]"]),
    "format_version not a number": ('format_version = "one"\n', ["format_version"]),
}


@pytest.mark.parametrize("case", WRONG_CONTENT, ids=list(WRONG_CONTENT))
def test_wrong_content_names_file_and_profile_and_leaves_it_alone(
    tmp_path: Path, case: str
) -> None:
    text, expected = WRONG_CONTENT[case]
    before = write_file(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        ProfileStore.load(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"cannot read {tmp_path / FILE_NAME}: ")
    for part in expected:
        assert part in message
    assert "hunter2" not in message
    assert "\n" not in message
    assert (tmp_path / FILE_NAME).read_bytes() == before
    assert os.listdir(tmp_path) == [FILE_NAME]


def test_file_that_is_a_folder_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).mkdir()
    with pytest.raises(ConfigError) as caught:
        ProfileStore.load(tmp_path)
    assert str(caught.value).startswith(f"cannot read {tmp_path / FILE_NAME}: it is a folder")


def test_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    path.write_bytes(b'last_used = "caf\xe9"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        ProfileStore.load(tmp_path)
    assert path.read_bytes() == b'last_used = "caf\xe9"\n'


@posix_only
@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads anything")
def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    path.write_text(VALID_PROFILE)
    path.chmod(0)
    with pytest.raises(ConfigError, match="permission denied"):
        ProfileStore.load(tmp_path)


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_bytes(b"\xef\xbb\xbf" + VALID_PROFILE.encode())
    assert ProfileStore.load(tmp_path).names() == ["home"]


# --- passwords --------------------------------------------------------------------------


@pytest.fixture
def no_keyring() -> Iterator[None]:
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    yield
    keyring.set_keyring(previous)


def test_password_saved_without_keyring_never_reaches_profiles_toml(
    tmp_path: Path, no_keyring: None
) -> None:
    env = Environment(environ={}, config_dir=tmp_path, stdin=io.StringIO(""))
    store = ProfileStore.load(tmp_path)
    profile = make_profile("home", user="ann")
    store.add(profile)
    save_password(profile, "s3cret-Pa55", env)
    store.save()

    assert "s3cret-Pa55" not in (tmp_path / FILE_NAME).read_text(encoding="utf-8")
    assert ProfileStore.load(tmp_path).get("home").credentials_file == str(
        tmp_path / "credentials" / "home"
    )
