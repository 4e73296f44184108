"""Why a server refused a logon, in one line that says what to do: the NT status codes of a
refused session setup ([MS-ERREF] 2.3.1), the same for both transports."""

from __future__ import annotations

from backdown.errors import AuthError, KerberosError, NtlmRefused

STATUS_ACCESS_DENIED = 0xC0000022
STATUS_NO_SUCH_USER = 0xC0000064
STATUS_WRONG_PASSWORD = 0xC000006A
STATUS_LOGON_FAILURE = 0xC000006D
STATUS_ACCOUNT_RESTRICTION = 0xC000006E
STATUS_INVALID_LOGON_HOURS = 0xC000006F
STATUS_INVALID_WORKSTATION = 0xC0000070
STATUS_PASSWORD_EXPIRED = 0xC0000071
STATUS_ACCOUNT_DISABLED = 0xC0000072
STATUS_LOGON_TYPE_NOT_GRANTED = 0xC000015B
STATUS_TRUSTED_DOMAIN_FAILURE = 0xC000018C
STATUS_TRUSTED_RELATIONSHIP_FAILURE = 0xC000018D
STATUS_ACCOUNT_EXPIRED = 0xC0000193
STATUS_PASSWORD_MUST_CHANGE = 0xC0000224
STATUS_ACCOUNT_LOCKED_OUT = 0xC0000234
STATUS_NTLM_BLOCKED = 0xC0000418

CHECK_PASSWORD = "check them in the profile (edit it) or the saved password"
ASK_ADMIN = "ask the server's administrator"
USE_KERBEROS = (
    "log on with Kerberos instead: --auth kerberos, after 'kinit user@REALM' (on Windows, "
    "log on to the domain)"
)
_REFUSED = {
    STATUS_LOGON_FAILURE: f"wrong user name or password (or domain); {CHECK_PASSWORD}",
    STATUS_WRONG_PASSWORD: f"wrong password; {CHECK_PASSWORD}",
    STATUS_NO_SUCH_USER: f"no such user; {CHECK_PASSWORD}",
    STATUS_ACCOUNT_LOCKED_OUT: "the account is locked out (too many wrong passwords); wait "
    f"until the server unlocks it or {ASK_ADMIN}, then check the saved password",
    STATUS_PASSWORD_EXPIRED: "the password has expired; change it (on a computer of the "
    "domain, or ask the server's administrator), then save the new one in the profile",
    STATUS_PASSWORD_MUST_CHANGE: "the password must be changed before the next logon; change "
    "it (on a computer of the domain, or ask the server's administrator), then save it",
    STATUS_INVALID_LOGON_HOURS: "the account may not log on at this time of day (its logon "
    f"hours); run the backup within them or {ASK_ADMIN}",
    STATUS_ACCOUNT_DISABLED: f"the account is disabled; {ASK_ADMIN}",
    STATUS_ACCOUNT_EXPIRED: f"the account has expired; {ASK_ADMIN}",
    STATUS_INVALID_WORKSTATION: f"the account may not log on from this computer; {ASK_ADMIN}",
    STATUS_ACCOUNT_RESTRICTION: "the account may not log on over the network (an empty "
    f"password, or a policy); {ASK_ADMIN}",
    STATUS_LOGON_TYPE_NOT_GRANTED: f"the account may not log on over the network; {ASK_ADMIN}",
    STATUS_TRUSTED_DOMAIN_FAILURE: f"the server does not trust the account's domain; {ASK_ADMIN}",
    STATUS_TRUSTED_RELATIONSHIP_FAILURE: "the server's trust with its domain is broken; "
    f"{ASK_ADMIN}",
    STATUS_ACCESS_DENIED: f"access denied to this account; {ASK_ADMIN}",
}


_NOT_THE_PASSWORD = (STATUS_LOGON_FAILURE, STATUS_WRONG_PASSWORD, STATUS_NO_SUCH_USER)


def refused(status: int, where: str, who: str, name: str, *, kerberos: bool = False) -> AuthError:
    """The error for a session setup the server answered with `status` (`name` is the
    status's own name, for one the table does not know). A refused Kerberos ticket is a
    KerberosError: no password was sent, so none can be wrong or lock the account."""
    if kerberos:
        reason = _REFUSED.get(status) or f"{name}; {ASK_ADMIN}"
        if status in _NOT_THE_PASSWORD:
            reason = (
                "the server could not accept the ticket (its own Kerberos key may be out of "
                f"date, or its clock off); {ASK_ADMIN}"
            )
        return KerberosError(f"{where} refused {who}: {reason}")
    if status == STATUS_NTLM_BLOCKED:
        return NtlmRefused(
            f"{where} refused {who}: NTLM is refused by the server (its domain takes only "
            f"Kerberos); {USE_KERBEROS}"
        )
    reason = _REFUSED.get(status) or f"{name}; {ASK_ADMIN}"
    return AuthError(f"{where} refused {who}: {reason}")


def who(user: str) -> str:
    return f"user '{user}'" if user else "guest access"
