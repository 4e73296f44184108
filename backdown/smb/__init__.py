"""The SMB layer: the only package that imports pysmb.

- `wire`: framing, credits, signing and deadlines on the connection pysmb logged on;
- `session`: file operations (list, stat, read, write, rename, delete) over the wire;
- `status`: the server's NTSTATUS codes turned into BackDown's errors;
- `connect`: TCP, negotiation and logon, then a session; `endpoint`: where to connect;
- `interface`: the Session protocol and Connector type the engine is written against.
"""

from backdown.errors import (
    LocalFileError,
    RemoteAccessDenied,
    RemoteExists,
    RemoteFileError,
    RemoteNotFound,
)
from backdown.smb.connect import PYSMB_VERSION, check_pysmb, connect
from backdown.smb.endpoint import CONNECT_TIMEOUT, OPERATION_TIMEOUT, Endpoint
from backdown.smb.interface import Connector, Session
from backdown.smb.session import (
    MAX_IO,
    WRITE_WINDOW,
    Put,
    PutJob,
    Readable,
    RemoteEntry,
    SmbSession,
    Writable,
)

__all__ = [
    "CONNECT_TIMEOUT",
    "Connector",
    "Session",
    "OPERATION_TIMEOUT",
    "PYSMB_VERSION",
    "MAX_IO",
    "Put",
    "PutJob",
    "WRITE_WINDOW",
    "Endpoint",
    "LocalFileError",
    "Readable",
    "RemoteAccessDenied",
    "RemoteEntry",
    "RemoteExists",
    "RemoteFileError",
    "RemoteNotFound",
    "SmbSession",
    "Writable",
    "check_pysmb",
    "connect",
]
