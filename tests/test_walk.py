"""Listing a remote tree over several connections (backdown.walk.walk_remote with `more`):
the same tree as one connection lists, against real Samba; and what happens when a helper's
connection cannot open, drops, or fails otherwise."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from local_session import local_connector
from samba import SambaServer

from backdown.errors import ConnectError
from backdown.filters import PathFilter
from backdown.plan import Tree
from backdown.smb import Endpoint, Session, connect
from backdown.walk import HELP_WHEN_WAITING, walk_remote


def _tree_on(put: Callable[[str, bytes], None], folders: int) -> None:
    """`folders` folders two levels deep, three files each, and a few odd entries."""
    for n in range(folders):
        for f in range(3):
            put(f"d{n % 5}/sub {n}/file {f}.txt", b"x" * (n + f))
    put("top.txt", b"top")
    put("d0/~$lock.docx", b"office lock file: left out by the defaults")


def _same(one: Tree, other: Tree) -> None:
    assert one.files == other.files and one.dirs == other.dirs
    assert one.errors == other.errors and one.hidden == other.hidden


@pytest.fixture
def endpoint(samba: SambaServer) -> Endpoint:
    return Endpoint("127.0.0.1", samba.port, "backup", samba.user, password=samba.password)


@pytest.fixture
def opened(endpoint: Endpoint) -> Iterator[list[Session]]:
    """Connections to the server, all closed at the end."""
    sessions: list[Session] = []
    yield sessions
    for session in sessions:
        session.close()


def test_several_connections_list_the_same_tree_as_one(
    samba: SambaServer, remote_dir: str, endpoint: Endpoint, opened: list[Session]
) -> None:
    _tree_on(lambda rel, data: samba.put_file("backup", f"{remote_dir}/{rel}", data), 40)

    def more() -> Session:
        opened.append(connect(endpoint))
        return opened[-1]

    alone = walk_remote(more(), remote_dir, PathFilter())
    assert alone is not None and len(alone.files) == 121 and len(alone.dirs) == 45
    assert "d0/~$lock.docx" not in alone.files
    first = more()
    together = walk_remote(first, remote_dir, PathFilter(), True, more, width=4)
    assert together is not None
    _same(together, alone)
    assert 2 + 1 <= len(opened) <= 2 + 3, "helpers (at most 3) joined the first connection"
    assert all(s.closed for s in opened[2:]) and not first.closed, "a helper closes its own"


def _local_share(tmp_path: Path) -> tuple[Path, Callable[[], Session]]:
    share = tmp_path / "server" / "backup"

    def put(rel: str, data: bytes) -> None:
        (share / "t" / rel).parent.mkdir(parents=True, exist_ok=True)
        (share / "t" / rel).write_bytes(data)

    _tree_on(put, 60)
    connector = local_connector(tmp_path / "server")
    endpoint = Endpoint("nas", 445, "backup", "")
    return share, lambda: connector(endpoint, None)


class Dropping:
    """A connection that drops (ConnectError) at its `after`-th batch of listings, or fails with
    `fault`. A stand-in: a real server cannot be made to drop one chosen connection of
    several at one chosen request on demand (tests of a killed smbd are elsewhere)."""

    def __init__(self, session: Session, after: int, fault: type[Exception] = ConnectError):
        self.session, self.after, self.fault = session, after, fault
        self.closed = False

    def listdirs(self, paths: list[str]):  # type: ignore[no-untyped-def]
        self.after -= 1
        if self.after <= 0:
            raise self.fault("the connection dropped")
        return self.session.listdirs(paths)

    def close(self) -> None:
        self.closed = True


class Slow:
    """A first connection that takes its time (as one over a network does), so that the
    helpers started meanwhile get folders to list."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def listdirs(self, paths: list[str]):  # type: ignore[no-untyped-def]
        time.sleep(0.02)
        return self.session.listdirs(paths)

    def stat(self, path: str):  # type: ignore[no-untyped-def]
        return self.session.stat(path)


def test_a_helper_that_cannot_connect_or_drops_leaves_its_folders_to_the_others(
    tmp_path: Path,
) -> None:
    _share, open_local = _local_share(tmp_path)
    alone = walk_remote(open_local(), "t", PathFilter())
    assert alone is not None
    tries = []

    def unreliable() -> Session:
        tries.append(1)
        if len(tries) == 1:
            raise ConnectError("the server allows no more connections")
        return Dropping(open_local(), after=len(tries))  # type: ignore[return-value]

    together = walk_remote(Slow(open_local()), "t", PathFilter(), True, unreliable, width=4)
    assert together is not None
    _same(together, alone)
    assert len(tries) == 3 and len(alone.dirs) > HELP_WHEN_WAITING


def test_a_fault_in_a_helper_fails_the_walk(tmp_path: Path) -> None:
    _share, open_local = _local_share(tmp_path)
    helpers: list[Dropping] = []

    def faulty() -> Session:
        helpers.append(Dropping(open_local(), after=1, fault=ValueError))
        return helpers[-1]  # type: ignore[return-value]

    with pytest.raises(ValueError, match="dropped"):
        walk_remote(Slow(open_local()), "t", PathFilter(), True, faulty, width=2)
    assert helpers and all(h.closed for h in helpers)
    assert threading.active_count() == 1 or all(
        not t.name.startswith("backdown-list") for t in threading.enumerate()
    ), "no helper thread is left behind"
