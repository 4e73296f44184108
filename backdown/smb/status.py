"""NTSTATUS codes the server answers with, turned into BackDown's errors."""

from __future__ import annotations

from backdown.errors import (
    BackdownError,
    ConnectError,
    RemoteAccessDenied,
    RemoteExists,
    RemoteFileError,
    RemoteNotFound,
    ShareError,
)

# [MS-ERREF] 2.3.1
STATUS_NO_MORE_FILES = 0x80000006
STATUS_NO_SUCH_FILE = 0xC000000F
STATUS_END_OF_FILE = 0xC0000011
STATUS_ACCESS_DENIED = 0xC0000022
STATUS_OBJECT_NAME_INVALID = 0xC0000033
STATUS_OBJECT_NAME_NOT_FOUND = 0xC0000034
STATUS_OBJECT_NAME_COLLISION = 0xC0000035
STATUS_OBJECT_PATH_NOT_FOUND = 0xC000003A
STATUS_SHARING_VIOLATION = 0xC0000043
STATUS_QUOTA_EXCEEDED = 0xC0000044
STATUS_DISK_FULL = 0xC000007F
STATUS_FILE_IS_A_DIRECTORY = 0xC00000BA
STATUS_NETWORK_NAME_DELETED = 0xC00000C9
STATUS_BAD_NETWORK_NAME = 0xC00000CC
STATUS_DIRECTORY_NOT_EMPTY = 0xC0000101
STATUS_NOT_A_DIRECTORY = 0xC0000103
STATUS_CANNOT_DELETE = 0xC0000121
STATUS_USER_SESSION_DELETED = 0xC0000203
STATUS_NETWORK_SESSION_EXPIRED = 0xC000035C

_TEXT = {
    STATUS_ACCESS_DENIED: "access denied",
    STATUS_OBJECT_NAME_INVALID: "name not allowed by the server",
    STATUS_OBJECT_NAME_NOT_FOUND: "not found",
    STATUS_OBJECT_NAME_COLLISION: "already exists",
    STATUS_OBJECT_PATH_NOT_FOUND: "folder not found",
    STATUS_SHARING_VIOLATION: "in use by another program",
    STATUS_DISK_FULL: "the share is full",
    STATUS_QUOTA_EXCEEDED: "quota exceeded on the share",
    STATUS_FILE_IS_A_DIRECTORY: "is a folder",
    STATUS_DIRECTORY_NOT_EMPTY: "folder not empty",
    STATUS_NOT_A_DIRECTORY: "not a folder",
    STATUS_CANNOT_DELETE: "cannot be deleted",
}
# The session or tree went away under us: reconnecting may help.
_SESSION_GONE = {
    STATUS_NETWORK_NAME_DELETED,
    STATUS_USER_SESSION_DELETED,
    STATUS_NETWORK_SESSION_EXPIRED,
}


def status_error(status: int, what: str, server: str, share: str) -> BackdownError:
    """Our error for the NTSTATUS a request on `share` of `server` failed with."""
    if status == STATUS_BAD_NETWORK_NAME:
        return ShareError(
            f"share '{share}' not found on {server} (or not allowed for this user); check "
            f"the share name with: smbclient -L {server}"
        )
    if status in _SESSION_GONE:
        return ConnectError(f"the server closed the session during {what}")
    reason = _TEXT.get(status, f"failed (status 0x{status:08X})")
    message = f"{what}: {reason}"
    if status == STATUS_ACCESS_DENIED:
        return RemoteAccessDenied(message)
    if status in (STATUS_OBJECT_NAME_NOT_FOUND, STATUS_OBJECT_PATH_NOT_FOUND):
        return RemoteNotFound(message)
    if status == STATUS_OBJECT_NAME_COLLISION:
        return RemoteExists(message)
    return RemoteFileError(message)
