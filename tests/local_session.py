"""A second implementation of the engine's Session interface: a share that is a local folder.

Not a model of SMB (every SMB behaviour has its test against real Samba): it lets the
engine's own logic (plan, versions, mirror, resume bookkeeping, the clock) be tested
without root or a server, and proves the engine depends on the interface, not on pysmb.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from backdown.errors import LocalFileError, RemoteExists, RemoteFileError, RemoteNotFound
from backdown.smb import Endpoint, Put, PutJob, Readable, RemoteEntry, Writable
from backdown.smb.session import Outcome, each_listed, each_put


class LocalSession:
    """Session over `root` (the share's root folder)."""

    def __init__(self, root: Path, endpoint: Endpoint) -> None:
        self.root = root
        self.endpoint = endpoint
        self.closed = False

    def _p(self, path: str) -> Path:
        return self.root.joinpath(*[p for p in path.split("/") if p])

    @staticmethod
    def _entry(path: Path) -> RemoteEntry:
        st = path.stat()
        return RemoteEntry(path.name, path.is_dir(), 0 if path.is_dir() else st.st_size,
                           st.st_mtime_ns / 1e9)  # fmt: skip

    def listdir(self, path: str) -> list[RemoteEntry]:
        folder = self._p(path)
        if not folder.is_dir():
            raise RemoteNotFound(f"listing '{path}': not found")
        return [self._entry(child) for child in folder.iterdir()]

    def listdirs(self, paths: list[str]) -> list[list[RemoteEntry] | RemoteFileError]:
        return each_listed(self.listdir, paths)

    def stat(self, path: str) -> RemoteEntry | None:
        target = self._p(path)
        return self._entry(target) if target.exists() else None

    def read_file(self, path: str, fileobj: Writable, offset: int = 0) -> int:
        return self.get_file(path, fileobj, offset, None)

    def get_file(
        self, path: str, fileobj: Writable, offset: int, expected_size: int | None,
        end: int | None = None,
    ) -> int:  # fmt: skip
        source = self._p(path)
        if not source.is_file():
            raise RemoteNotFound(f"reading '{path}': not found")
        if expected_size is not None and source.stat().st_size != expected_size:
            raise RemoteFileError(f"reading '{path}': it changed on the server; run again")
        with open(source, "rb") as f:
            f.seek(offset)
            data = f.read() if end is None else f.read(end - offset)
        fileobj.write(data)
        return len(data)

    def write_file(self, path: str, fileobj: Readable, offset: int = 0) -> int:
        return self.put_file(Put(path, offset), fileobj)

    def put_file(
        self, put: Put, fileobj: Readable, *, before_finish: Callable[[], None] | None = None,
        on_sent: Callable[[int], None] | None = None,
    ) -> int:  # fmt: skip
        target = self._p(put.path)
        if not target.parent.is_dir():
            raise RemoteNotFound(f"writing '{put.path}': folder not found")
        with open(target, "r+b" if put.offset and target.exists() else "wb") as f:
            f.seek(put.offset)
            f.truncate()
            end = put.offset
            while chunk := fileobj.read(1 << 16):
                f.write(chunk)
                end += len(chunk)
                if on_sent:
                    on_sent(len(chunk))
        if put.size is not None and end != put.size:
            raise LocalFileError("changed while it was being copied; it will go on the next run")
        if before_finish:
            before_finish()
        if put.mtime is not None:
            os.utime(target, (put.mtime, put.mtime))
        if put.rename_to is not None:
            self.rename(put.path, put.rename_to)
        return end

    def put_files(
        self, jobs: Sequence[PutJob], on_done: Outcome, on_sent: Callable[[int], None] | None = None
    ) -> None:
        each_put(self.put_file, jobs, on_done, on_sent)

    def set_mtime(self, path: str, mtime: float) -> None:
        os.utime(self._p(path), (mtime, mtime))

    def mkdir(self, path: str) -> None:
        target = self._p(path)
        if target.exists():
            raise RemoteExists(f"creating folder '{path}': already exists")
        target.mkdir()

    def makedirs(self, path: str) -> None:
        self._p(path).mkdir(parents=True, exist_ok=True)

    def rename(self, old: str, new: str, replace: bool = False) -> None:
        source, target = self._p(old), self._p(new)
        if not source.exists():
            raise RemoteNotFound(f"renaming '{old}' to '{new}': not found")
        if target.exists() and not replace:
            raise RemoteExists(f"renaming '{old}' to '{new}': already exists")
        os.replace(source, target)

    def rename_pair(self, first: tuple[str, str], second: tuple[str, str]) -> bool:
        try:
            self.rename(*first)
            moved = True
        except RemoteNotFound:
            moved = False
        self.rename(*second)
        return moved

    def remove(self, path: str) -> None:
        target = self._p(path)
        if not target.is_file():
            raise RemoteNotFound(f"deleting '{path}': not found")
        target.unlink()

    def rmdir(self, path: str) -> None:
        self._p(path).rmdir()

    def remove_tree(self, path: str) -> None:
        shutil.rmtree(self._p(path))

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> LocalSession:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def local_connector(root: Path) -> Callable[[Endpoint, threading.Event | None], LocalSession]:
    """A Connector whose share is `root/<share name>`."""

    def connect(endpoint: Endpoint, cancel: threading.Event | None) -> LocalSession:
        share = root / endpoint.share
        share.mkdir(parents=True, exist_ok=True)
        return LocalSession(share, endpoint)

    return connect
