"""The transport a run uses (backdown/smb/transport.py), chosen once per run from the
profile's `protocol` and `encrypt`, against real Samba servers configured as offices have
them: SMB 3 only, encryption required, SMB 2.0.2 only, signing mandatory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import Result, add_profile, assert_same_tree, make_tree, run_cli
from samba import SambaServer
from test_smb3_session import ServerFactory, smb3_server  # noqa: F401 (the fixture)

pytestmark = pytest.mark.samba


def profile_on(tmp: Path, server: SambaServer, *extra: str) -> tuple[Path, Path]:
    local, config = tmp / "local", tmp / "config"
    local.mkdir(exist_ok=True)
    make_tree(local)
    add_profile(config, "p", local, server.port, "", server.user, server.password,
                extra=list(extra))  # fmt: skip
    return local, config


def checked(config: Path) -> dict:
    result = run_cli(["test", "p", "--json"], config)
    assert result.code == 0, result
    return json.loads(result.out)


def one_line(result: Result, code: int, *words: str) -> str:
    """The one line on stderr, with the exit code and the words expected; returned."""
    assert result.code == code, result
    line = result.err.strip()
    assert "\n" not in line and "Traceback" not in line, result
    for word in words:
        assert word in line, result
    return line


def round_trip(tmp: Path, local: Path, config: Path) -> None:
    assert run_cli(["upload", "p"], config).code == 0
    target = tmp / "restored"
    assert run_cli(["download", "p", "--to", str(target)], config).code == 0
    assert_same_tree(local, target)


def test_an_smb3_only_server_is_reached_through_smb3_by_auto(
    tmp_path: Path,
    smb3_server: ServerFactory,  # noqa: F811
) -> None:
    server = smb3_server(**{"server min protocol": "SMB3"})
    local, config = profile_on(tmp_path, server)
    found = checked(config)
    assert found["transport"] == "smb3 (smbprotocol)" and found["dialect"].startswith("3")
    assert "would not take SMB 2.0.2" in found["transport_because"]
    round_trip(tmp_path, local, config)
    assert run_cli(["profile", "edit", "p", "--protocol", "smb2"], config).code == 0
    one_line(run_cli(["test", "p"], config), 3, "requires SMB 3", "--protocol auto")


def test_a_share_that_requires_encryption(
    tmp_path: Path,
    smb3_server: ServerFactory,  # noqa: F811
) -> None:
    server = smb3_server(**{"smb encrypt": "required"})
    local, config = profile_on(tmp_path, server)
    found = checked(config)
    assert found["encryption"] is True and found["cipher"], found
    round_trip(tmp_path, local, config)
    assert run_cli(["profile", "edit", "p", "--protocol", "smb2"], config).code == 0
    assert run_cli(["test", "p"], config).code in (3, 4)


def test_encryption_asked_for_on_an_ordinary_server(tmp_path: Path, samba: SambaServer) -> None:
    local, config = profile_on(tmp_path, samba, "--encrypt", "yes")
    found = checked(config)
    assert (found["transport"], found["encryption"]) == ("smb3 (smbprotocol)", True)
    assert found["transport_because"] == "encryption asked for"
    (tmp_path / "plain").mkdir()
    _, plain = profile_on(tmp_path / "plain", samba)
    assert checked(plain)["transport"] == "smb2 (pysmb)", "auto keeps pysmb where it works"


def test_smb3_asked_of_a_server_that_speaks_only_smb_2_0_2(
    tmp_path: Path, samba_with: ServerFactory
) -> None:
    server = samba_with(extra_global={"server max protocol": "SMB2_02"})
    local, config = profile_on(tmp_path, server, "--protocol", "smb3")
    one_line(run_cli(["test", "p"], config), 3, "2.0.2")
    assert run_cli(["profile", "edit", "p", "--protocol", "auto"], config).code == 0
    assert checked(config)["transport"] == "smb2 (pysmb)"


def test_signing_mandatory_on_both_transports(tmp_path: Path, samba_signing: SambaServer) -> None:
    for protocol in ("smb2", "smb3"):
        folder = tmp_path / protocol
        folder.mkdir()
        local, config = profile_on(folder, samba_signing, "--protocol", protocol)
        assert checked(config)["signing"] is True, protocol


def bad_password_count(server: SambaServer) -> int:
    """Samba's own count of refused logons for the test user (pdbedit -v)."""
    import re
    import shutil
    import subprocess

    pdbedit = shutil.which("pdbedit") or "/usr/sbin/pdbedit"
    shown = subprocess.run([pdbedit, "-s", str(server.conf_path), "-v", "-u", server.user],
                           capture_output=True, text=True, check=True).stdout  # fmt: skip
    match = re.search(r"Bad password count\s*:\s*(\d+)", shown)
    assert match, shown
    return int(match.group(1))


def _count_bad_passwords(server: SambaServer) -> None:
    """Samba counts refused passwords only under a lock-out policy: one far above what a
    test reaches (the server is shared with other tests)."""
    import shutil
    import subprocess

    pdbedit = shutil.which("pdbedit") or "/usr/sbin/pdbedit"
    subprocess.run([pdbedit, "-s", str(server.conf_path), "-P", "bad lockout attempt",
                    "-C", "1000"], capture_output=True, check=True)  # fmt: skip


def test_a_wrong_password_is_not_tried_again_on_smb3(tmp_path: Path, samba: SambaServer) -> None:
    local, config = tmp_path / "local", tmp_path / "config"
    local.mkdir()
    add_profile(config, "p", local, samba.port, "", samba.user, "wrong")
    _count_bad_passwords(samba)
    before = bad_password_count(samba)
    one_line(run_cli(["test", "p"], config), 3, "refused")
    assert bad_password_count(samba) == before + 1, "one logon refused, not two"
