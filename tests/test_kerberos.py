"""Kerberos logons against a real Active Directory domain: Samba's domain controller with
its own KDC, provisioned by the test run on loopback (tests/samba_dc.py), tickets from the
real kinit. No password is stored for a Kerberos profile; what fails says why in one line."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import assert_same_tree, make_tree, run_cli
from samba_dc import REALM, SERVER_NAME, SambaDomain, domain_missing_reason, new_domain
from test_transport import checked, one_line

from backdown.errors import KerberosError
from backdown.smb import kerberos

pytestmark = pytest.mark.samba


@pytest.fixture(scope="module")
def domain() -> Iterator[SambaDomain]:
    reason = domain_missing_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"test domain controller unavailable in CI: {reason}")
        pytest.skip(f"test domain controller unavailable: {reason}")
    dc = new_domain()
    dc.add_user("alice")
    dc.add_user("bob")
    yield dc
    dc.stop()


@pytest.fixture
def realm(domain: SambaDomain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's ticket cache (empty until kinit) and the domain's krb5.conf, in the
    environment the in-process run and gssapi read."""
    cache = tmp_path / "krb5cc"
    for key, value in domain.client_env(cache).items():
        monkeypatch.setenv(key, value)
    return cache


def kerberos_profile(tmp: Path, domain: SambaDomain, *extra: str, user: str = "alice") -> Path:
    local, config = tmp / "local", tmp / "config"
    local.mkdir(exist_ok=True)
    make_tree(local)
    args = [
        "profile", "add", "p", "--local", str(local), "--server", SERVER_NAME,
        "--port", str(domain.smb_port), "--share", "backup", "--remote-folder", tmp.name,
        *(["--user", user] if user else []), *extra,
    ]  # fmt: skip
    result = run_cli(args, config)
    assert result.code == 0, result
    return config


def test_a_kerberos_profile_backs_up_and_restores_with_the_ticket_alone(
    domain: SambaDomain, realm: Path, tmp_path: Path
) -> None:
    domain.kinit("alice", realm)
    config = kerberos_profile(tmp_path, domain, "--auth", "kerberos")
    found = checked(config)
    assert found["auth"] == "Kerberos" and found["principal"] == "alice"
    assert found["transport"] == "smb3 (smbprotocol)" and found["dialect"] == "3.1.1"
    assert "Kerberos" in found["transport_because"]
    human = run_cli(["test", "p"], config)
    assert "logged on as 'alice' (Kerberos)" in human.out, human
    assert run_cli(["upload", "p"], config).code == 0
    assert_same_tree(tmp_path / "local", domain.share / tmp_path.name)
    target = tmp_path / "restored"
    assert run_cli(["download", "p", "--to", str(target)], config).code == 0
    assert_same_tree(tmp_path / "local", target)
    # Nothing secret was kept: no credentials file, the password nowhere in the config.
    assert not (config / "credentials").exists()
    for path in config.rglob("*"):
        if path.is_file():
            assert domain.users["alice"].encode() not in path.read_bytes(), path


def test_kerberos_with_encryption_required(
    domain: SambaDomain, realm: Path, tmp_path: Path
) -> None:
    domain.kinit("alice", realm)
    config = kerberos_profile(tmp_path, domain, "--auth", "kerberos", "--encrypt", "yes")
    found = checked(config)
    assert found["auth"] == "Kerberos" and found["encryption"] is True
    assert found["cipher"].startswith("AES-")
    assert run_cli(["upload", "p"], config).code == 0
    assert_same_tree(tmp_path / "local", domain.share / tmp_path.name)


def test_auto_takes_the_ticket_when_no_password_is_saved(
    domain: SambaDomain, realm: Path, tmp_path: Path
) -> None:
    config = kerberos_profile(tmp_path, domain)  # auth auto, a user, no password
    # No ticket either: the usual "no password" answer, which names both ways out.
    line = one_line(run_cli(["test", "p"], config), 2, "no password")
    domain.kinit("alice", realm)
    found = checked(config)
    assert found["auth"] == "Kerberos" and found["transport"] == "smb3 (smbprotocol)"
    assert line  # (kept for the message check above)


def test_auto_with_a_password_logs_on_with_ntlm_through_pysmb(
    domain: SambaDomain, realm: Path, tmp_path: Path
) -> None:
    domain.kinit("alice", realm)  # a ticket is there, but the password comes first
    config = kerberos_profile(tmp_path, domain)
    stdin = domain.users["alice"] + "\n"
    assert run_cli(["profile", "edit", "p", "--password-stdin"], config, stdin=stdin).code == 0
    found = checked(config)
    assert found["auth"] == "NTLM" and found["transport"] == "smb2 (pysmb)"
    assert run_cli(["upload", "p"], config).code == 0
    assert_same_tree(tmp_path / "local", domain.share / tmp_path.name)


@pytest.fixture
def ntlm_refused(domain: SambaDomain) -> Iterator[None]:
    """The domain takes Kerberos only (Samba's `ntlm auth = disabled`, which the file
    server reads at each new connection), as Microsoft plans for Windows domains."""
    domain.set_option("ntlm auth", "disabled")
    yield
    domain.set_option("ntlm auth", "ntlmv2-only")


@pytest.mark.usefixtures("ntlm_refused")
@pytest.mark.parametrize("protocol", ["smb2", "smb3"])
def test_a_domain_that_refuses_ntlm_says_to_use_kerberos(
    domain: SambaDomain, realm: Path, tmp_path: Path, protocol: str
) -> None:
    config = kerberos_profile(tmp_path, domain, "--auth", "password", "--protocol", protocol)
    stdin = domain.users["alice"] + "\n"
    assert run_cli(["profile", "edit", "p", "--password-stdin"], config, stdin=stdin).code == 0
    one_line(run_cli(["test", "p"], config), 3, "NTLM is refused", "--auth kerberos", "kinit")


@pytest.mark.usefixtures("ntlm_refused")
def test_auto_falls_back_to_the_ticket_when_ntlm_is_refused(
    domain: SambaDomain, realm: Path, tmp_path: Path
) -> None:
    config = kerberos_profile(tmp_path, domain)
    stdin = domain.users["alice"] + "\n"
    assert run_cli(["profile", "edit", "p", "--password-stdin"], config, stdin=stdin).code == 0
    # Without a ticket, the refusal stands, and says what to do.
    one_line(run_cli(["test", "p"], config), 3, "NTLM is refused")
    domain.kinit("alice", realm)
    found = checked(config)
    assert found["auth"] == "Kerberos" and "refuses NTLM" in found["transport_because"]
    assert run_cli(["upload", "p"], config).code == 0
    assert_same_tree(tmp_path / "local", domain.share / tmp_path.name)


def test_no_ticket_is_one_line_with_kinit(domain: SambaDomain, realm: Path, tmp_path: Path) -> None:
    config = kerberos_profile(tmp_path, domain, "--auth", "kerberos")
    line = one_line(run_cli(["upload", "p"], config), 3, "no Kerberos ticket", "kinit")
    assert "for alice" in line
    result = run_cli(["test", "p", "--json"], config)
    assert result.code == 3 and "no Kerberos ticket" in json.loads(result.out)["error"]


def test_a_ticket_of_somebody_else_is_not_used(
    domain: SambaDomain, realm: Path, tmp_path: Path
) -> None:
    domain.kinit("alice", realm)
    config = kerberos_profile(tmp_path, domain, "--auth", "kerberos", user="bob")
    one_line(run_cli(["test", "p"], config), 3, "no Kerberos ticket for bob", "kinit")


def test_a_profile_without_a_user_logs_on_as_the_tickets_owner(
    domain: SambaDomain, realm: Path, tmp_path: Path
) -> None:
    domain.kinit("bob", realm)
    config = kerberos_profile(tmp_path, domain, "--auth", "kerberos", user="")
    found = checked(config)
    assert found["auth"] == "Kerberos" and found["principal"] == f"bob@{REALM}"


def test_a_server_given_by_ip_address_is_unknown_to_kerberos(
    domain: SambaDomain, realm: Path, tmp_path: Path
) -> None:
    domain.kinit("alice", realm)
    config = kerberos_profile(tmp_path, domain, "--auth", "kerberos")
    assert run_cli(["profile", "edit", "p", "--server", "127.0.0.1"], config).code == 0
    one_line(run_cli(["test", "p"], config), 3, "IP address", "server's full name")


def test_an_expired_ticket_says_kinit_again(
    domain: SambaDomain, realm: Path, tmp_path: Path
) -> None:
    domain.kinit("alice", realm, lifetime="2s")
    config = kerberos_profile(tmp_path, domain, "--auth", "kerberos")
    time.sleep(3)
    one_line(run_cli(["test", "p"], config), 3, "expired", "kinit")


def test_no_kdc_answering_is_named(
    domain: SambaDomain, realm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    domain.kinit("alice", realm)  # a ticket-granting ticket, but none for the server yet
    config = kerberos_profile(tmp_path, domain, "--auth", "kerberos")
    closed = tmp_path / "krb5-closed.conf"
    text = domain.krb5_conf.read_text()
    closed.write_text(text.replace(f":{domain.kdc_port}", ":1"))  # nothing listens on port 1
    monkeypatch.setenv("KRB5_CONFIG", str(closed))
    one_line(run_cli(["test", "p"], config), 3, "no Kerberos server (KDC)", "network")


def test_scheduled_runs_are_not_locked_out_by_a_missing_ticket(
    domain: SambaDomain, realm: Path, tmp_path: Path, crontab: None
) -> None:
    config = kerberos_profile(tmp_path, domain, "--auth", "kerberos")
    # No password file is asked for: a Kerberos profile keeps none.
    result = run_cli(["schedule", "set", "p", "--every", "1h"], config)
    assert result.code == 0 and "keep it renewed" in result.out, result
    assert not (config / "credentials").exists()
    due = run_cli(["schedule", "run-due"], config)
    assert "no Kerberos ticket" in due.err, due
    status = json.loads(run_cli(["status", "--json"], config).out)
    row = status["profiles"][0] if "profiles" in status else status[0]
    assert row["state"] != "LOCKED-OUT", status
    domain.kinit("alice", realm)  # the next tick, after kinit, backs up
    assert run_cli(["schedule", "run-due"], config).code == 0
    assert_same_tree(tmp_path / "local", domain.share / tmp_path.name)


def test_kerberos_needs_the_smb3_transport(tmp_path: Path) -> None:
    local = tmp_path / "local"
    local.mkdir()
    args = ["profile", "add", "p", "--local", str(local), "--server", "nas", "--share", "s",
            "--auth", "kerberos", "--protocol", "smb2"]  # fmt: skip
    one_line(run_cli(args, tmp_path / "config"), 2, "Kerberos", "protocol auto or smb3")


# A fake, and why: the clock of this machine (and so of the test KDC beside it) cannot be
# set 5 minutes off the KDC's on demand. The error is gssapi's own, with the MIT Kerberos
# code for clock skew (KRB5KRB_AP_ERR_SKEW), as pyspnego raises it.
def test_clock_skew_is_named() -> None:
    gssapi = pytest.importorskip("gssapi")
    skew = gssapi.raw.misc.GSSError(851968, 0x96C73A25)  # -1765328347 as unsigned
    try:
        raise RuntimeError("Failed to authenticate with server") from skew
    except RuntimeError as outer:
        error = kerberos.failure(outer, "nas:445", "nas", "alice")
    assert isinstance(error, KerberosError) and "clock" in str(error) and "5 minutes" in str(error)


def test_on_windows_the_domain_logon_is_the_ticket() -> None:
    # Windows' SSPI needs no package, and a domain logon (USERDNSDOMAIN set) has tickets.
    assert kerberos.missing("win32") is None
    environ = {"USERDNSDOMAIN": "corp.example.com", "USERNAME": "alice"}
    assert kerberos.ticket_principal(environ, "win32") == "alice@CORP.EXAMPLE.COM"
    assert kerberos.ticket_principal({"USERNAME": "alice"}, "win32") is None  # local account
    assert kerberos.principal_for("alice", "win32") is None  # the logon session's own
    assert kerberos.principal_for("alice", "linux") == "alice"


def test_without_gssapi_kerberos_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "krb5", None)  # import krb5 now raises ImportError
    assert kerberos.ticket_principal({}, "linux") is None
    local = tmp_path / "local"
    local.mkdir()
    config = tmp_path / "config"
    args = ["profile", "add", "p", "--local", str(local), "--server", "127.0.0.1",
            "--port", "1", "--share", "s", "--auth", "kerberos"]  # fmt: skip
    assert run_cli(args, config).code == 0
    one_line(run_cli(["test", "p"], config), 3, "krb5", "pip install 'backdown[kerberos]'")
