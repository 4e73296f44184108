"""The session interface the engine sees: what any transport to a share must offer.

SmbSession (pysmb, SMB 2.0.2) is one; an SMB 3 transport will be another; tests run the
engine over a local folder with a third. The engine types against Session and receives a
Connector, never a concrete class.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from backdown.errors import RemoteFileError
from backdown.smb.endpoint import Endpoint
from backdown.smb.session import Outcome, Put, PutJob, Readable, RemoteEntry, Writable


class Session(Protocol):
    """One connection to one share. Not thread-safe: one per thread.

    Errors are BackDown's: ConnectError (reconnect and retry), RemoteFileError and its kinds
    (this file only), ShareError / AuthError (the run cannot go on).
    """

    endpoint: Endpoint
    closed: bool

    def listdir(self, path: str) -> list[RemoteEntry]: ...
    def listdirs(self, paths: Sequence[str]) -> list[list[RemoteEntry] | RemoteFileError]: ...
    def stat(self, path: str) -> RemoteEntry | None: ...
    def read_file(self, path: str, fileobj: Writable, offset: int = 0) -> int: ...
    def get_file(
        self,
        path: str,
        fileobj: Writable,
        offset: int,
        expected_size: int | None,
        end: int | None = None,
    ) -> int: ...
    def write_file(self, path: str, fileobj: Readable, offset: int = 0) -> int: ...
    def put_file(
        self,
        put: Put,
        fileobj: Readable,
        *,
        before_finish: Callable[[], None] | None = None,
        on_sent: Callable[[int], None] | None = None,
    ) -> int: ...
    def put_files(
        self,
        jobs: Sequence[PutJob],
        on_done: Outcome,
        on_sent: Callable[[int], None] | None = None,
    ) -> None: ...
    def set_mtime(self, path: str, mtime: float) -> None: ...
    def mkdir(self, path: str) -> None: ...
    def makedirs(self, path: str) -> None: ...
    def rename(self, old: str, new: str, replace: bool = False) -> None: ...
    def rename_pair(self, first: tuple[str, str], second: tuple[str, str]) -> bool: ...
    def remove(self, path: str) -> None: ...
    def rmdir(self, path: str) -> None: ...
    def remove_tree(self, path: str) -> None: ...
    def close(self) -> None: ...
    def __enter__(self) -> Session: ...
    def __exit__(self, *exc: Any) -> None: ...


# How the engine opens a session: an endpoint, and the run's cancel flag (or None).
Connector = Callable[[Endpoint, "threading.Event | None"], Session]
