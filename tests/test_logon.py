"""Who logs on for a run: the user and domain from the profile, or from its credentials
file when the profile names no user, and DOMAIN\\user typed as a user name."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import run_cli
from samba import SambaServer

from backdown.errors import UsageError
from backdown.profile import Profile, validate_profile, validate_user

pytestmark = pytest.mark.samba

posix_only = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX only")

WORKGROUP = "BDTEST"  # the test server's workgroup (tests/samba.py)


def _credentials(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def _add_without_user(config: Path, name: str, samba: SambaServer, remote: str, cred: Path) -> None:
    args = [
        "profile", "add", name, "--local", str(config.parent / "local"), "--server", "127.0.0.1",
        "--port", str(samba.port), "--share", "backup", "--remote-folder", remote,
        "--credentials-file", str(cred),
    ]  # fmt: skip
    result = run_cli(args, config)
    assert result.code == 0, result


def test_credentials_file_gives_user_domain_and_password(
    samba: SambaServer, remote_dir: str, tmp_path: Path
) -> None:
    cred = _credentials(
        tmp_path / "cred",
        f"username={samba.user}\npassword={samba.password}\ndomain={WORKGROUP}\n",
    )
    config = tmp_path / "config"
    _add_without_user(config, "filed", samba, remote_dir, cred)
    result = run_cli(["test", "filed"], config)
    assert result.code == 0, result
    assert f"logged on as '{samba.user}'" in result.out
    # Nothing from the file is copied into the saved profile.
    shown = run_cli(["profile", "show", "filed", "--json"], config)
    assert '"user": ""' in shown.out


@posix_only
def test_credentials_file_open_to_others_is_refused_without_a_user(
    samba: SambaServer, remote_dir: str, tmp_path: Path
) -> None:
    cred = _credentials(
        tmp_path / "cred",
        f"username={samba.user}\npassword={samba.password}\ndomain={WORKGROUP}\n",
        mode=0o644,
    )
    config = tmp_path / "config"
    _add_without_user(config, "open", samba, remote_dir, cred)
    result = run_cli(["test", "open"], config)
    assert result.code == 2, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert str(cred) in lines[0] and "chmod 600" in lines[0]
    assert samba.password not in result.err + result.out


def test_domain_backslash_user_is_split(
    samba: SambaServer, remote_dir: str, tmp_path: Path
) -> None:
    config = tmp_path / "config"
    args = [
        "profile", "add", "split", "--local", str(tmp_path / "local"), "--server", "127.0.0.1",
        "--port", str(samba.port), "--share", "backup", "--remote-folder", remote_dir,
        "--user", f"{WORKGROUP}\\{samba.user}", "--password-stdin",
    ]  # fmt: skip
    result = run_cli(args, config, stdin=samba.password + "\n")
    assert result.code == 0, result
    shown = run_cli(["profile", "show", "split"], config)
    assert shown.code == 0, shown
    fields = dict(line.split(None, 1) for line in shown.out.splitlines() if " " in line.strip())
    assert fields["user"] == samba.user
    assert fields["domain"] == WORKGROUP
    result = run_cli(["test", "split"], config)
    assert result.code == 0, result


def test_domain_backslash_user_against_another_domain_is_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "config"
    args = [
        "profile", "add", "clash", "--local", str(tmp_path / "local"), "--server", "nas",
        "--share", "backup", "--user", "HOME\\ann", "--domain", "OFFICE",
    ]  # fmt: skip
    result = run_cli(args, config)
    assert result.code == 2, result
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert "HOME" in result.err and "OFFICE" in result.err
    # The same domain twice (in any case) is not a clash.
    args[-1] = "home"
    assert run_cli(args, config).code == 0


@pytest.mark.parametrize(
    ("typed", "domain", "expected"),
    [
        ("HOME\\ann", "", ("ann", "HOME")),
        (" HOME\\ann ", "home", ("ann", "home")),
        ("ann@home.example", "", ("ann@home.example", "")),
        ("ann", "HOME", ("ann", "HOME")),
    ],
)
def test_profile_validation_splits_domain_and_user(
    typed: str, domain: str, expected: tuple[str, str]
) -> None:
    profile = validate_profile(
        Profile(name="p", local="/tmp", server="nas", share="s", user=typed, domain=domain)
    )
    assert (profile.user, profile.domain) == expected


@pytest.mark.parametrize("typed", ["\\ann", "HOME\\", "A\\B\\ann", "BAD DOM\\ann"])
def test_user_validator_refuses_a_broken_domain_form(typed: str) -> None:
    # The menu's prompt uses the same validator, so the mistake is caught on the spot.
    with pytest.raises(UsageError):
        validate_user(typed)
