"""BackDown's errors and exit codes: the one place that knows which failure means which code."""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    """Process exit codes, as documented in the README."""

    SUCCESS = 0
    FILES_FAILED = 1  # the run finished but some files failed
    USAGE = 2  # usage or bad input: unknown profile, bad option, corrupt config
    CONNECTION = 3  # cannot connect or authenticate
    SHARE = 4  # share or remote folder missing, or access denied
    NO_SCHEDULER = 4  # (same code) no scheduler to install the automatic backup job in
    ATTENTION = 5  # status/report: a backup is overdue, failing, locked out or stale
    INTERRUPTED = 130  # Ctrl-C


class BackdownError(Exception):
    """An error the user can act on: its message is one line saying what is wrong and what to do."""

    exit_status: ExitStatus = ExitStatus.USAGE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(BackdownError):
    """Bad input: an unknown profile, an invalid value, a bad option."""


class ConfigError(BackdownError):
    """The saved profiles cannot be read or written."""


class CredentialsError(BackdownError):
    """No usable password, or an unsafe credentials file."""


class LockedError(BackdownError):
    """Another run of the same profile is in progress."""


class RefusedError(BackdownError):
    """A safety check refused the run (for example a mirror that would remove too much)."""


class SchedulerMissing(BackdownError):
    """This machine has no scheduler BackDown can install its job in (no systemd, no cron)."""

    exit_status = ExitStatus.NO_SCHEDULER


class SchedulerError(BackdownError):
    """The operating system's scheduler refused to install, list or remove the job."""

    exit_status = ExitStatus.NO_SCHEDULER


class ConnectError(BackdownError):
    """The server cannot be reached, or the session dropped; worth retrying."""

    exit_status = ExitStatus.CONNECTION


class NoAnswer(ConnectError):
    """The server (or the network) stopped answering: no reply within the deadline."""


class AuthError(BackdownError):
    """The server refused the user name or password; retrying will not help."""

    exit_status = ExitStatus.CONNECTION


class NtlmRefused(AuthError):
    """The server takes no NTLM (password) logon at all: its domain allows only Kerberos."""


class KerberosError(AuthError):
    """A Kerberos logon failed on this side (no ticket, an expired one, a clock too far off,
    a server the domain does not know, no KDC): no password was tried, so it never counts
    towards a lock-out, and it is fixed here (kinit, the clock), not in the profile."""


class ShareError(BackdownError):
    """The share or remote folder is missing, or access to it is denied."""

    exit_status = ExitStatus.SHARE


class RemoteFileError(BackdownError):
    """One file or folder on the share failed (access denied, invalid name); the run goes on."""

    exit_status = ExitStatus.FILES_FAILED


class RemoteNotFound(RemoteFileError):
    """The file or folder does not exist on the share."""


class RemoteExists(RemoteFileError):
    """The target name is already taken on the share."""


class RemoteAccessDenied(RemoteFileError):
    """The server refused access to this file or folder."""


class LocalFileError(BackdownError):
    """A local file could not be read or written (raised from inside a transfer)."""

    exit_status = ExitStatus.FILES_FAILED


class Cancelled(BackdownError):
    """The user interrupted the run."""

    exit_status = ExitStatus.INTERRUPTED

    def __init__(self, message: str = "interrupted") -> None:
        super().__init__(message)


def quoted(value: object) -> str:
    """A value the user gave, in quotes as typed, for a message: repr() would double every
    backslash of a Windows path (\\\\nas\\share); control characters are still shown."""
    text = str(value)
    shown = "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )
    return f"'{shown}'"
