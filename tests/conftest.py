"""Shared fixtures: a real Samba server (tests/samba.py), per-test remote folders, and an
environment that keeps tests away from the developer's keyring and backdown settings."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from samba import MountRefused, SambaServer, smbd_missing_reason

# Variables from the outside world that must never leak into a test.
SCRUBBED_ENV = (
    "BACKDOWN_PASSWORD", "BACKDOWN_CONFIG_DIR", "BACKDOWN_DATA_DIR", "BACKDOWN_TEST_PROTOCOL",
)  # fmt: skip
KEYRING_BACKEND = "keyring.backends.fail.Keyring"

_remote_dir_counter = itertools.count(1)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: a long-running test (deselect with -m 'not slow')")
    config.addinivalue_line("markers", "samba: the test talks to the real Samba test server")


# --------------------------------------------------------------------------- environment


@pytest.fixture(scope="session", autouse=True)
def _isolated_environment() -> Iterator[None]:
    """No real keyring, no BACKDOWN_* settings from the developer's shell (whole session)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHON_KEYRING_BACKEND", KEYRING_BACKEND)
        for name in SCRUBBED_ENV:
            mp.delenv(name, raising=False)
        yield


@pytest.fixture(autouse=True)
def _scrub_backdown_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Again per test, so one test's leftovers cannot reach the next one. The run history
    and the scheduled runs' log go to a folder of the test's own, never the user's."""
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", KEYRING_BACKEND)
    for name in SCRUBBED_ENV:
        monkeypatch.delenv(name, raising=False)
    data = tmp_path_factory.mktemp("data")
    # No Kerberos ticket of the developer's reaches a test (auth = auto would use it).
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{data / 'no-ticket-cache'}")
    monkeypatch.setenv("BACKDOWN_DATA_DIR", str(data))
    monkeypatch.setenv("XDG_DATA_HOME", str(data / "xdg"))  # an Environment built with environ={}


# --------------------------------------------------------------------------- samba servers


def _require_smbd() -> None:
    """Skip the test when smbd cannot run here; in CI, fail it instead."""
    reason = smbd_missing_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"Samba test server unavailable in CI: {reason}")
        pytest.skip(f"Samba test server unavailable: {reason}")


def _start_server(signing: str) -> Iterator[SambaServer]:
    _require_smbd()
    # Not pytest's tmp_path: its parents are 0700, and smbd reaches the shares as the
    # unprivileged test user.  /tmp is world-traversable.
    root = Path(tempfile.mkdtemp(prefix=f"backdown-samba-{signing}-"))
    server = SambaServer(root, signing=signing)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        if os.environ.get("BACKDOWN_KEEP_SAMBA"):
            print(f"\nkept Samba test server files in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def samba() -> Iterator[SambaServer]:
    """A started Samba server (``server signing = auto``) shared by the whole session.

    Tests may stop() or restart() it; the next test that uses it gets it running again.
    """
    yield from _start_server("auto")


@pytest.fixture(scope="session")
def samba_signing() -> Iterator[SambaServer]:
    """A second server with ``server signing = mandatory``; started only when asked for."""
    yield from _start_server("mandatory")


@pytest.fixture(autouse=True)
def _samba_running(request: pytest.FixtureRequest) -> None:
    """Bring a session server back up if an earlier test left it stopped (or it died)."""
    for name in ("samba", "samba_signing"):
        if name in request.fixturenames:
            server = request.getfixturevalue(name)
            if not server.running:
                server.stop()  # reap whatever is left of a crashed instance
                server.start()


class SambaFactory:
    """``samba_with(**config)``: a started server for one smb.conf variant, made once.

    Keywords: ``signing``, ``extra_global``, ``extra_share``, ``tmpfs_size`` (see
    SambaServer).  Each distinct configuration is started on first use and kept for the rest
    of the session; a server found stopped (a test stopped it, or it died) is started again
    (a tmpfs share comes back empty).  A tmpfs the kernel will not mount skips the tests
    that ask for it, with the reason.  Tests that change a server (``resize_tmpfs``, files
    written straight into the share) put it back as they found it.
    """

    def __init__(self) -> None:
        self._servers: dict[tuple[object, ...], SambaServer] = {}
        self._refused: dict[tuple[object, ...], str] = {}
        self._roots: list[Path] = []

    def __call__(
        self,
        *,
        signing: str = "auto",
        extra_global: dict[str, str] | None = None,
        extra_share: dict[str, str] | None = None,
        tmpfs_size: str | None = None,
    ) -> SambaServer:
        _require_smbd()
        key = (
            signing,
            tuple(sorted((extra_global or {}).items())),
            tuple(sorted((extra_share or {}).items())),
            tmpfs_size,
        )
        if key in self._refused:
            pytest.skip(self._refused[key])
        server = self._servers.get(key)
        if server is not None:
            if not server.running:
                server.stop()  # reap whatever is left of a crashed instance
                server.start()
            return server
        root = Path(tempfile.mkdtemp(prefix="backdown-samba-with-"))
        self._roots.append(root)
        server = SambaServer(
            root,
            signing=signing,
            extra_global=extra_global,
            extra_share=extra_share,
            tmpfs_size=tmpfs_size,
        )
        try:
            server.start()
        except MountRefused as exc:
            server.stop()
            self._refused[key] = f"no tmpfs share here: {exc}"
            pytest.skip(self._refused[key])
        except BaseException:
            server.stop()
            raise
        self._servers[key] = server
        return server

    def stop_all(self) -> None:
        errors = []
        for server in self._servers.values():
            try:
                server.stop()
            except Exception as exc:  # stop the others all the same
                errors.append(f"{server.root}: {exc}")
        self._servers.clear()
        for root in self._roots:
            if os.environ.get("BACKDOWN_KEEP_SAMBA"):
                print(f"\nkept Samba test server files in {root}")
            else:
                shutil.rmtree(root, ignore_errors=True)
        if errors:
            raise RuntimeError("could not stop every Samba test server: " + "; ".join(errors))


@pytest.fixture(scope="session")
def samba_with() -> Iterator[SambaFactory]:
    """A factory of servers with extra smb.conf settings or a tmpfs share; see SambaFactory.

    ``samba_with(extra_global={"smb2 max credits": "8"})``, ``samba_with(tmpfs_size="64k")``.
    """
    factory = SambaFactory()
    try:
        yield factory
    finally:
        factory.stop_all()


def _test_dir_name(request: pytest.FixtureRequest) -> str:
    name = re.sub(r"[^A-Za-z0-9_]+", "_", request.node.name).strip("_")
    return f"t_{name[:48]}_{next(_remote_dir_counter)}"


@pytest.fixture
def remote_dir(samba: SambaServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty folder in the ``backup`` share, unique to this test; its name.

    The folder exists on disk (``samba.share_path("backup") / remote_dir``), owned by the
    SMB user's Unix account, and is deleted after the test.
    """
    name = _test_dir_name(request)
    path = samba.share_path("backup") / name
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(mode=0o755)
    samba.chown(path)
    yield name
    shutil.rmtree(path, ignore_errors=True)


def make_remote_dir(server: SambaServer, name: str) -> str:
    """Create an empty folder ``name`` in ``server``'s backup share (owned by the SMB user)."""
    path = server.share_path("backup") / name
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(mode=0o755)
    server.chown(path)
    return name


@pytest.fixture
def remote_dir_in(request: pytest.FixtureRequest) -> Iterator[Callable[[SambaServer], str]]:
    """``remote_dir_in(server)``: like ``remote_dir``, for any server (e.g. from samba_with).

    Each call makes a fresh, empty folder in that server's ``backup`` share and returns its
    name; all of them are deleted after the test.
    """
    made: list[Path] = []

    def make(server: SambaServer) -> str:
        name = make_remote_dir(server, _test_dir_name(request))
        made.append(server.share_path("backup") / name)
        return name

    yield make
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- crontab


@pytest.fixture
def crontab() -> Iterator[None]:
    """The real crontab of the user running the tests (CI installs Debian's cron), restored
    afterwards whatever happens."""
    if shutil.which("crontab") is None:
        if os.environ.get("CI"):
            pytest.fail("crontab missing in CI (.ci/run installs Debian's cron)")
        pytest.skip("no crontab command here")
    before = subprocess.run(["crontab", "-l"], capture_output=True, text=True, check=False)
    try:
        yield
    finally:
        if before.returncode == 0:
            subprocess.run(["crontab", "-"], input=before.stdout, text=True, check=True)
        else:
            subprocess.run(["crontab", "-r"], capture_output=True, check=False)


# --------------------------------------------------------------------------- transports


@pytest.fixture(params=["smb2", "smb3"])
def transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test once per transport: profiles made by helpers.add_profile get
    `--protocol smb2` (pysmb) or `--protocol smb3` (smbprotocol). A module opts in with
    `pytestmark = pytest.mark.usefixtures("transport")`."""
    monkeypatch.setenv("BACKDOWN_TEST_PROTOCOL", request.param)
    return str(request.param)
