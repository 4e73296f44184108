"""Kerberos logons: the user's own ticket (kinit, or the Windows logon), no password kept.

pyspnego does the Kerberos work, through GSSAPI (the gssapi package, over MIT or Heimdal
Kerberos) on Linux and macOS and through SSPI on Windows; only the SMB 3 transport can use
it (pysmb has NTLM only). BackDown adds what a user needs around it:
- whether this user has a ticket at all (`auth = auto` takes Kerberos only then);
- which principal logs on: the profile's user when it names one (its ticket must be in the
  cache: a backup is never made under somebody else's name), else the cache's own;
- what a failed logon means, in one line with the fix: no ticket, an expired one, a clock
  too far off, a server the domain does not know, no KDC answering.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Mapping

from backdown.errors import KerberosError

INSTALL = (
    "Kerberos needs the gssapi and krb5 packages, which are not installed: pip install "
    "'backdown[kerberos]' (they build on the system's Kerberos library: on Debian or Ubuntu "
    "install libkrb5-dev and gcc first)"
)
KINIT = "run 'kinit user@REALM' (on Windows, log on to the domain)"

# MIT Kerberos error codes (krb5_err.et), as gssapi's minor status carries them: they name
# the cause where the message cannot (gss_display_status fails without the mechanism).
_SKEW = 0x96C73A25  # KRB5KRB_AP_ERR_SKEW
_EXPIRED = 0x96C73A20  # KRB5KRB_AP_ERR_TKT_EXPIRED
_UNKNOWN_SERVER = 0x96C73A07  # KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN
_NO_KDC = 0x96C73A9C  # KRB5_KDC_UNREACH
_NO_CACHE = 0x96C73A8D  # KRB5_FCC_NOFILE
_REALM_UNKNOWN = 0x96C73A9A  # KRB5_REALM_UNKNOWN


def missing(platform: str = sys.platform) -> str | None:
    """Why Kerberos cannot be used on this computer, or None when it can."""
    if platform == "win32":
        return None  # SSPI, part of Windows
    try:
        # pyspnego's Kerberos needs both (its GSSAPIProxy refuses to start without krb5).
        import gssapi  # noqa: F401
        import krb5  # noqa: F401
    except ImportError:
        return INSTALL
    return None


def ticket_principal(environ: Mapping[str, str], platform: str = sys.platform) -> str | None:
    """The principal of this user's usable ticket (e.g. 'alice@EXAMPLE.COM'), or None.

    On Windows a domain logon has its tickets in the logon session (SSPI asks for more as
    needed) and a local account has none: USERDNSDOMAIN is set for the first only.
    Elsewhere the default credential cache is asked, without contacting the KDC.
    """
    if platform == "win32":
        domain, user = environ.get("USERDNSDOMAIN", ""), environ.get("USERNAME", "")
        return f"{user}@{domain.upper()}" if domain and user else None
    if missing(platform) is not None:
        return None
    import gssapi

    try:
        creds = gssapi.Credentials(usage="initiate")
        if creds.lifetime is not None and creds.lifetime <= 0:
            return None
        return str(creds.name)
    except Exception:  # no cache, an expired ticket, a cache that cannot be read
        return None


def principal_for(user: str, platform: str = sys.platform) -> str | None:
    """Who logs on: the profile's user (a bare name is in the default realm), or None for
    the ticket cache's own principal. On Windows always the logon session's."""
    if platform == "win32" or not user:
        return None
    return user


def failure(exc: BaseException, where: str, server: str, principal: str | None) -> KerberosError:
    """A failed Kerberos logon (pyspnego's or gssapi's error, or SSPI's) in one line."""
    text = _messages(exc)
    lower = text.lower()
    codes = _minor_codes(exc)
    whose = f" for {principal}" if principal else ""
    if _SKEW in codes or "clock skew" in lower or "time skew" in lower:
        return KerberosError(
            f"Kerberos logon to {where} failed: this computer's clock differs from the "
            "domain's by more than 5 minutes (clock skew); set the right time (or turn on "
            "automatic time), then try again"
        )
    if _EXPIRED in codes or "expired" in lower:
        return KerberosError(
            f"Kerberos logon to {where} failed: your Kerberos ticket{whose} has expired; run "
            "'kinit' again (on Windows, lock and unlock the screen or log on again)"
        )
    if _NO_CACHE in codes or any(
        phrase in lower
        for phrase in (
            "no kerberos credentials",
            "no credentials cache",
            "can't find client principal",
            "no credentials were supplied",
            "credentials supplied to the package were not recognized",
        )
    ):
        return KerberosError(
            f"Kerberos logon to {where} failed: no Kerberos ticket{whose}; {KINIT}, then try again"
        )
    if (
        _UNKNOWN_SERVER in codes
        or "server not found in kerberos database" in lower
        or "target principal name is incorrect" in lower
        or "specified target is unknown" in lower
    ):
        hint = (
            f"'{server}' is an IP address, and Kerberos needs the server's name"
            if _is_ip(server)
            else f"the domain knows no server 'cifs/{server}'"
        )
        return KerberosError(
            f"Kerberos logon to {where} failed: {hint}; use the server's full name as the "
            "domain knows it (e.g. fileserver.example.local), not an IP address or alias"
        )
    if _NO_KDC in codes or "cannot contact any kdc" in lower or "no authority could" in lower:
        return KerberosError(
            f"Kerberos logon to {where} failed: no Kerberos server (KDC) of your domain "
            "answers; check the network or VPN connection to the domain"
        )
    if _REALM_UNKNOWN in codes or "cannot find kdc" in lower or "network address for kdc" in lower:
        return KerberosError(
            f"Kerberos logon to {where} failed: this computer does not know where your "
            "domain's Kerberos server (KDC) is; check the realm in krb5.conf or the domain's DNS"
        )
    detail = text.splitlines()[0][:200] if text else type(exc).__name__
    return KerberosError(
        f"Kerberos logon to {where} failed ({detail}); run 'klist' to see your tickets"
    )


def _messages(exc: BaseException) -> str:
    """The text of an error and its causes: the cause (gssapi's minor message) names the
    real problem, the outer layers only that the logon failed."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.append(str(current))
        current = current.__cause__ or current.__context__
    return " | ".join(parts)


def _minor_codes(exc: BaseException) -> set[int]:
    codes: set[int] = set()
    current: BaseException | None = exc
    while current is not None and len(codes) < 10:
        code = getattr(current, "min_code", None)
        if isinstance(code, int):
            codes.add(code & 0xFFFFFFFF)
        current = current.__cause__ or current.__context__
    return codes


def _is_ip(server: str) -> bool:
    try:
        ipaddress.ip_address(server.strip("[]"))
        return True
    except ValueError:
        return False
