"""The command line, command by command, in-process against a temporary config folder and the
real Samba test server: profiles, test, upload/backup, download/restore, global options,
--json and --quiet, and where passwords come from (and never go)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from helpers import Result, add_profile, assert_same_tree, make_tree, run_cli, spawn_cli, tree_bytes
from samba import SambaServer

from backdown import __version__
from backdown.profile import parse_unc
from backdown.profile_store import FILE_NAME

REPORT_KEYS = {
    "profile",
    "operation",
    "ok",
    "files_transferred",
    "bytes_transferred",
    "files_failed",
    "seconds",
    "files_new",
    "files_changed",
    "files_unchanged",
    "files_versioned",
}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return tmp_path / "config"


@pytest.fixture
def local(tmp_path: Path) -> Path:
    folder = tmp_path / "local"
    folder.mkdir()
    make_tree(folder)
    return folder


def ok(result: Result) -> Result:
    assert result.code == 0, result
    assert "Traceback" not in result.err
    return result


def error(result: Result, code: int, *words: str) -> str:
    assert result.code == code, result
    assert "Traceback" not in result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def json_of(result: Result) -> dict:
    data = json.loads(result.out)
    assert isinstance(data, dict)
    return data


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def add_args(name: str, local: Path, port: int, *more: str) -> list[str]:
    return [
        "profile", "add", name, "--local", str(local), "--server", "127.0.0.1",
        "--port", str(port), "--share", "backup", *more,
    ]  # fmt: skip


def names(config: Path) -> list[str]:
    return [row["name"] for row in json.loads(run_cli(["profile", "list", "--json"], config).out)]


def file_count(root: Path) -> tuple[int, int]:
    files = [d for d in tree_bytes(root).values() if d is not None]
    return len(files), sum(len(d) for d in files)


# --- version -------------------------------------------------------------------------------


def test_version(config: Path) -> None:
    proc = spawn_cli(["--version"], config)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.strip() == f"backdown {__version__}"
    assert not config.exists(), "--version must not create the config folder"


def test_version_in_process_returns_through_main(config: Path) -> None:
    try:
        result = run_cli(["--version"], config)
    except SystemExit as exc:
        pytest.fail(f"main() raised SystemExit({exc.code!r}) instead of returning")
    assert result.code == 0 and __version__ in result.out


# --- profile add / list / show / edit / rename / remove ------------------------------------------


def test_profile_add_saves_the_password_in_a_private_file_and_says_where(
    samba: SambaServer, config: Path, local: Path
) -> None:
    args = add_args("home", local, samba.port, "--remote-folder", "pc/docs")
    args += ["--user", samba.user, "--password-stdin"]
    result = ok(run_cli(args, config, stdin=samba.password + "\n"))
    saved = config / "credentials" / "home"
    assert f"profile 'home' saved: {local} -> //127.0.0.1/backup/pc/docs" in result.out
    assert f"password saved in {saved}" in result.out
    assert mode(saved) == 0o600 and mode(saved.parent) == 0o700
    assert f"password={samba.password}\n" in saved.read_text()
    assert mode(config) == 0o700 and mode(config / FILE_NAME) == 0o600
    toml = (config / FILE_NAME).read_text()
    assert "format_version = 1" in toml and samba.password not in toml
    assert samba.password not in result.out + result.err
    assert sorted(os.listdir(config)) == ["credentials", FILE_NAME]  # no temporary left
    ok(run_cli(["test", "home"], config))


def test_password_stdin_needs_a_user(config: Path, local: Path) -> None:
    result = run_cli(add_args("guest", local, 445, "--password-stdin"), config, stdin="pw\n")
    error(result, 2, "--user")
    assert not (config / FILE_NAME).exists()


def test_profile_list_and_show(config: Path, local: Path) -> None:
    ok(run_cli(add_args("alpha", local, 445, "--remote-folder", "a/b"), config))
    ok(run_cli(add_args("beta", local, 1445, "--user", "ann", "--domain", "HOME"), config))

    listed = ok(run_cli(["profile", "list"], config)).out
    rows = {line.lstrip("* ").split()[0]: line for line in listed.splitlines()[1:]}
    assert rows["beta"].startswith("*"), "the profile added last is the current one"
    assert not rows["alpha"].startswith("*")
    assert "//127.0.0.1/backup/a/b" in rows["alpha"] and "(guest)" in rows["alpha"]
    assert "ann" in rows["beta"] and "//127.0.0.1/backup (port 1445)" in rows["beta"]
    assert str(local) in rows["alpha"], "piped output must not cut paths short"

    data = json.loads(ok(run_cli(["profile", "list", "--json"], config)).out)
    assert [(p["name"], p["current"]) for p in data] == [("alpha", False), ("beta", True)]

    shown = ok(run_cli(["profile", "show", "alpha"], config)).out
    assert shown.splitlines()[0].split() == ["name", "alpha"]
    assert f"local               {local}" in shown
    assert "remote              //127.0.0.1/backup/a/b" in shown
    beta = json_of(ok(run_cli(["profile", "show", "beta", "--json"], config)))
    assert beta | {"client_name": "X"} == {
        "name": "beta",
        "local": str(local),
        "server": "127.0.0.1",
        "share": "backup",
        "remote_folder": "",
        "port": 1445,
        "user": "ann",
        "domain": "HOME",
        "client_name": "X",
        "credentials_file": "",
        "mode": "copy",
        "keep_versions_days": 30,
        "excludes": [],
        "keep_daily": 0,
        "keep_weekly": 0,
        "keep_monthly": 0,
        "protocol": "auto",
        "encrypt": False,
        "auth": "auto",
        "transfers": 4,
        "schedule_every": "",
        "schedule_between": "",
        "schedule_days": "",
        "notify": [],
        "notify_config": "",
        "ping_url": "",
    }
    ok(run_cli(["profile", "edit", "beta", "--transfers", "2"], config))
    assert json_of(ok(run_cli(["profile", "show", "beta", "--json"], config)))["transfers"] == 2
    error(run_cli(["profile", "edit", "beta", "--transfers", "65"], config), 2,
          "transfers must be a number from 1 to 64, not 65")  # fmt: skip


def test_profile_list_when_there_is_none(config: Path) -> None:
    assert "no profiles yet" in ok(run_cli(["profile", "list"], config)).out
    assert json.loads(ok(run_cli(["profile", "list", "--json"], config)).out) == []
    assert not (config / FILE_NAME).exists(), "listing must not write"


def test_profile_edit_changes_only_the_given_fields(config: Path, local: Path) -> None:
    ok(run_cli(add_args("p", local, 445, "--user", "ann"), config))
    before = json_of(run_cli(["profile", "show", "p", "--json"], config))
    edit = ["profile", "edit", "p", "--port", "4455", "--remote-folder", "x/y"]
    result = ok(run_cli(edit, config))
    assert "profile 'p' updated" in result.out
    after = json_of(run_cli(["profile", "show", "p", "--json"], config))
    assert after == before | {"port": 4455, "remote_folder": "x/y"}

    saved = (config / FILE_NAME).read_bytes()
    error(run_cli(["profile", "edit", "p", "--port", "0"], config), 2, "port")
    error(run_cli(["profile", "edit", "ghost", "--port", "1"], config), 2, "ghost")
    assert (config / FILE_NAME).read_bytes() == saved


def test_profile_edit_password_stdin_replaces_the_saved_password(
    samba: SambaServer, config: Path, local: Path, remote_dir: str
) -> None:
    add_profile(config, "p", local, samba.port, remote_dir, samba.user, "wrong-password")
    assert run_cli(["test", "p"], config).code == 3
    result = ok(run_cli(["profile", "edit", "p", "--password-stdin"], config, stdin=samba.password))
    assert "password saved in" in result.out and samba.password not in result.out
    ok(run_cli(["test", "p"], config))


def test_profile_rename_moves_the_saved_password(
    samba: SambaServer, config: Path, local: Path, remote_dir: str
) -> None:
    add_profile(config, "old", local, samba.port, remote_dir, samba.user, samba.password)
    result = ok(run_cli(["profile", "rename", "old", "new"], config))
    assert "profile 'old' renamed to 'new'" in result.out
    assert not (config / "credentials" / "old").exists()
    assert mode(config / "credentials" / "new") == 0o600
    shown = json_of(run_cli(["profile", "show", "new", "--json"], config))
    assert shown["credentials_file"] == str(config / "credentials" / "new")
    ok(run_cli(["test", "new"], config))
    error(run_cli(["test", "old"], config), 2, "'old'")
    listed = json.loads(run_cli(["profile", "list", "--json"], config).out)
    assert [(p["name"], p["current"]) for p in listed] == [("new", True)]
    error(run_cli(["profile", "rename", "new", "../x"], config), 2, "name")


def test_profile_remove_needs_yes_when_not_interactive(
    samba: SambaServer, config: Path, local: Path
) -> None:
    add_profile(config, "p", local, samba.port, "x", samba.user, samba.password)
    saved = config / "credentials" / "p"
    error(run_cli(["profile", "remove", "p"], config), 2, "--yes")
    assert saved.exists()
    assert names(config) == ["p"]

    result = ok(run_cli(["profile", "remove", "p", "--yes"], config))
    assert "profile 'p' removed" in result.out and "kept" in result.out
    assert names(config) == []
    assert not saved.exists(), "the saved password must go with the profile"
    error(run_cli(["profile", "remove", "p", "--yes"], config), 2, "'p'")


# --- test, upload/backup, download/restore ----------------------------------------------


def test_test_command(samba: SambaServer, config: Path, local: Path, remote_dir: str) -> None:
    add_profile(config, "p", local, samba.port, f"{remote_dir}/new", samba.user, samba.password)
    result = ok(run_cli(["test", "p"], config))
    assert "Profile 'p' is ready" in result.out
    assert "does not exist on the share yet" in result.out  # the first backup creates the folder
    data = json_of(ok(run_cli(["test", "p", "--json"], config)))
    assert data.keys() >= REPORT_KEYS
    assert data["ok"] is True and data["operation"] == "test" and data["profile"] == "p"
    assert data["files_failed"] == [] and data["checks"]
    assert os.listdir(samba.share_path("backup") / remote_dir) == [], "the probe is cleaned up"


def test_upload_download_and_their_aliases(
    samba: SambaServer, config: Path, local: Path, remote_dir: str, tmp_path: Path
) -> None:
    add_profile(config, "p", local, samba.port, remote_dir, samba.user, samba.password)
    count, size = file_count(local)

    up = json_of(ok(run_cli(["backup", "p", "--json"], config)))
    assert up.keys() >= REPORT_KEYS
    assert (up["profile"], up["operation"], up["ok"]) == ("p", "upload", True)
    assert (up["files_transferred"], up["bytes_transferred"]) == (count, size)
    assert (up["files_new"], up["files_changed"], up["files_unchanged"]) == (count, 0, 0)
    assert up["files_failed"] == [] and up["files_versioned"] == 0
    assert isinstance(up["seconds"], (int, float)) and up["seconds"] >= 0
    assert_same_tree(local, samba.share_path("backup") / remote_dir)

    text = ok(run_cli(["upload", "p"], config))
    assert text.out.startswith("Backed up 'p': 0 files") and "0 failed." in text.out
    assert f"{count} unchanged" in text.out and text.err == ""

    restored = ok(run_cli(["restore", "p", "--to", str(tmp_path / "r1")], config))
    assert restored.out.startswith(f"Restored 'p': {count} files")
    assert_same_tree(local, tmp_path / "r1")

    down = json_of(ok(run_cli(["download", "p", "--to", str(tmp_path / "r2"), "--json"], config)))
    assert down.keys() >= REPORT_KEYS
    assert (down["operation"], down["ok"], down["files_failed"]) == ("download", True, [])
    assert (down["files_transferred"], down["bytes_transferred"]) == (count, size)
    assert down["files_new"] == count
    assert_same_tree(local, tmp_path / "r2")

    # Without --to: into the profile's own folder, where everything is already in place.
    home = json_of(ok(run_cli(["download", "p", "--json"], config)))
    assert home["destination"] == str(local)
    assert (home["files_unchanged"], home["files_transferred"]) == (count, 0)
    (local / "zero.bin").unlink()
    home = json_of(ok(run_cli(["restore", "p", "--json"], config)))
    assert (home["files_new"], home["files_transferred"]) == (1, 1)
    assert (local / "zero.bin").read_bytes() == b""


def test_global_options_after_the_command(
    samba: SambaServer, config: Path, local: Path, remote_dir: str, tmp_path: Path
) -> None:
    add_profile(config, "p", local, samba.port, remote_dir, samba.user, samba.password)
    quiet = ok(run_cli(["upload", "p", "--quiet"], config))
    assert (quiet.out, quiet.err) == ("", "")
    as_json = ok(run_cli(["upload", "p", "--json"], config))
    assert json_of(as_json)["files_unchanged"] == file_count(local)[0]
    before = ok(run_cli(["--json", "profile", "list"], config))
    after = ok(run_cli(["profile", "list", "--json"], config))
    assert json.loads(before.out) == json.loads(after.out)

    # run_cli puts --config-dir first; given again after the command, the later one wins.
    other = tmp_path / "other-config"
    elsewhere = ok(run_cli(["profile", "list", "--config-dir", str(other)], config))
    assert "no profiles yet" in elsewhere.out
    error(run_cli(["upload", "p", "--config-dir", str(other)], config), 2, "'p'")
    verbose = ok(run_cli(["download", "p", "--to", str(tmp_path / "v"), "--verbose"], config))
    assert "Restored 'p'" in verbose.out
    ok(run_cli(["upload", "p", "--traceback"], config))


def test_quiet_prints_nothing_on_success(
    samba: SambaServer, config: Path, local: Path, remote_dir: str, tmp_path: Path
) -> None:
    args = add_args("p", local, samba.port, "--remote-folder", remote_dir, "--user", samba.user)
    runs = [
        run_cli([*args, "--password-stdin", "--quiet"], config, stdin=samba.password),
        run_cli(["--quiet", "test", "p"], config),
        run_cli(["upload", "p", "-q"], config),
        run_cli(["download", "p", "--to", str(tmp_path / "t"), "--quiet"], config),
        run_cli(["profile", "edit", "p", "--port", str(samba.port), "--quiet"], config),
        run_cli(["profile", "rename", "p", "q", "--quiet"], config),
        run_cli(["profile", "remove", "q", "--yes", "--quiet"], config),
    ]
    for result in runs:
        assert (result.code, result.out, result.err) == (0, "", ""), result
    assert_same_tree(local, tmp_path / "t")


# --- passwords ------------------------------------------------------------------------------


def test_password_never_shown_or_stored_in_profiles(
    samba: SambaServer, config: Path, local: Path, remote_dir: str, tmp_path: Path
) -> None:
    secret = samba.password
    args = add_args("p", local, samba.port, "--remote-folder", remote_dir, "--user", samba.user)
    runs = [run_cli([*args, "--password-stdin"], config, stdin=secret + "\n")]
    for command in (
        ["profile", "list"],
        ["profile", "list", "--json"],
        ["profile", "show", "p"],
        ["profile", "show", "p", "--json"],
        ["test", "p", "--verbose"],
        ["upload", "p", "--verbose"],
        ["upload", "p", "--json"],
        ["download", "p", "--to", str(tmp_path / "t"), "--verbose"],
        ["--json", "download", "p", "--to", str(tmp_path / "t")],
    ):
        runs.append(ok(run_cli(command, config)))
    runs.append(run_cli(["test", "p"], config, environ={"BACKDOWN_PASSWORD": secret + "x"}))
    assert runs[-1].code == 3
    for result in runs:
        assert secret not in result.out + result.err, result
    # Only our 0600 credentials file holds it; nothing else in the config folder does.
    holders = [
        p.relative_to(config).as_posix()
        for p in config.rglob("*")
        if p.is_file() and secret.encode() in p.read_bytes()
    ]
    assert holders == ["credentials/p"]


@pytest.mark.parametrize("given", [["--password", "S3cret-given"], ["--password=S3cret-given"]])
def test_a_password_on_the_command_line_is_refused_without_echoing_it(
    config: Path, local: Path, given: list[str]
) -> None:
    result = run_cli([*add_args("p", local, 445, "--user", "ann"), *given], config)
    error(result, 2)
    assert "S3cret-given" not in result.out + result.err
    assert not (config / FILE_NAME).exists()


def test_credentials_file_open_to_others_is_refused(
    samba: SambaServer, config: Path, local: Path, remote_dir: str, tmp_path: Path
) -> None:
    creds = tmp_path / "smb-credentials"
    creds.write_text(f"username={samba.user}\npassword={samba.password}\n")
    os.chmod(creds, 0o644)
    args = add_args("p", local, samba.port, "--remote-folder", remote_dir)
    ok(run_cli([*args, "--user", samba.user, "--credentials-file", str(creds)], config))
    line = error(run_cli(["test", "p"], config), 2, str(creds), f"chmod 600 {creds}")
    assert samba.password not in line
    os.chmod(creds, 0o600)
    ok(run_cli(["test", "p"], config))
    ok(run_cli(["upload", "p"], config))
    assert_same_tree(local, samba.share_path("backup") / remote_dir)


def test_backdown_password_environment_variable(
    samba: SambaServer, config: Path, local: Path, remote_dir: str
) -> None:
    args = add_args("p", local, samba.port, "--remote-folder", remote_dir, "--user", samba.user)
    ok(run_cli(args, config))
    error(run_cli(["test", "p"], config), 2, "BACKDOWN_PASSWORD", "--password-stdin")
    env = {"BACKDOWN_PASSWORD": samba.password}
    ok(run_cli(["test", "p"], config, environ=env))
    ok(run_cli(["upload", "p"], config, environ=env))
    assert_same_tree(local, samba.share_path("backup") / remote_dir)
    assert not (config / "credentials").exists(), "a password from the environment is not saved"


def test_password_stdin_at_run_time_comes_first(
    samba: SambaServer, config: Path, local: Path, remote_dir: str
) -> None:
    add_profile(config, "p", local, samba.port, remote_dir, samba.user, "saved-but-wrong")
    wrong = {"BACKDOWN_PASSWORD": "env-but-wrong"}
    error(run_cli(["test", "p"], config, environ=wrong), 3)  # the environment beats the file
    result = run_cli(
        ["upload", "p", "--password-stdin"], config, stdin=samba.password + "\n", environ=wrong
    )
    ok(result)
    assert_same_tree(local, samba.share_path("backup") / remote_dir)
    error(run_cli(["test", "p", "--password-stdin"], config, stdin=""), 2, "standard input")


def test_only_profile_use_changes_the_current_profile(
    samba: SambaServer, config: Path, local: Path, remote_dir: str
) -> None:
    add_profile(config, "first", local, samba.port, remote_dir, samba.user, samba.password)
    add_profile(config, "second", local, samba.port, remote_dir, samba.user, samba.password)

    def current() -> list[str]:
        rows = json.loads(run_cli(["profile", "list", "--json"], config).out)
        return [p["name"] for p in rows if p["current"]]

    assert current() == ["second"]
    ok(run_cli(["upload", "first"], config))
    ok(run_cli(["test", "first"], config))
    assert current() == ["second"], "a run leaves the menu's current profile alone"
    ok(run_cli(["profile", "use", "FIRST"], config))  # names are matched ignoring case
    assert current() == ["first"]
    assert 'last_used = "first"' in (config / FILE_NAME).read_text()
    star = [line for line in run_cli(["profile", "list"], config).out.splitlines() if "*" in line]
    assert len(star) == 1 and "first" in star[0]
    error(run_cli(["profile", "use", "ghost"], config), 2)
    assert current() == ["first"], "a failed command does not change the current profile"
    # A run given no name is the current profile's.
    tested = json.loads(ok(run_cli(["test", "--json"], config)).out)
    assert tested["profile"] == "first"
    assert_same_tree(local, samba.share_path("backup") / remote_dir)


def test_a_run_without_a_name_needs_a_current_profile(config: Path) -> None:
    error(run_cli(["upload"], config), 2, "no profile named and no current one")


def test_runs_as_a_module(config: Path) -> None:
    proc = spawn_cli(["profile", "list"], config)
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) == (0, "")
    assert "no profiles yet" in out


def test_a_typo_gets_a_did_you_mean_and_the_right_help(config: Path) -> None:
    line = error(run_cli(["uplaod"], config), 2, "unknown command 'uplaod'")
    assert "did you mean 'upload'?" in line and "'backdown --help'" in line
    line = error(run_cli(["upload", "p", "--dryrun"], config), 2, "unknown option --dryrun")
    assert "did you mean --dry-run?" in line and "'backdown upload --help'" in line
    line = error(run_cli(["profile", "edit", "p", "--keep-version-days", "3"], config), 2)
    assert "--keep-versions-days" in line and "'backdown profile edit --help'" in line
    assert "3" not in line.replace("--help", ""), "values typed are never echoed"


def test_a_windows_path_given_as_the_server_is_read_back_as_typed(
    config: Path, local: Path
) -> None:
    typed = "\\\\nas\\share\\docs\\2024"  # as pasted from Windows Explorer
    line = error(run_cli(["profile", "add", "p", "--local", str(local), "--server", typed,
                          "--share", "s"], config), 2)  # fmt: skip
    assert f"'{typed}' is a path" in line, "quoted as typed, no doubled backslashes"
    assert "--server nas --share share --remote-folder docs/2024" in line


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("\\\\nas\\share\\docs\\2024", ("nas", "share", "docs/2024")),
        ("//nas.local/backup", ("nas.local", "backup", "")),
        ("smb://ann@nas.local/backup/ann/", ("nas.local", "backup", "ann")),
        ("SMB://10.0.0.5/b", ("10.0.0.5", "b", "")),
        ("nas", None),
        ("\\\\nas", None),
        ("smb://nas/", None),
    ],
)
def test_paths_as_explorer_or_a_mac_shows_them(text: str, parts: tuple[str, ...] | None) -> None:
    assert parse_unc(text) == parts
