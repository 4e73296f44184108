"""Shared fixtures: a real Samba server (tests/samba.py), per-test remote folders, and an
environment that keeps tests away from the developer's keyring and backdown settings."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from samba import SambaServer, smbd_missing_reason

# Variables from the outside world that must never leak into a test.
SCRUBBED_ENV = ("BACKDOWN_PASSWORD", "BACKDOWN_CONFIG_DIR")
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
def _scrub_backdown_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Again per test, so one test's leftovers cannot reach the next one."""
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", KEYRING_BACKEND)
    for name in SCRUBBED_ENV:
        monkeypatch.delenv(name, raising=False)


# --------------------------------------------------------------------------- samba servers


def _start_server(signing: str) -> Iterator[SambaServer]:
    reason = smbd_missing_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"Samba test server unavailable in CI: {reason}")
        pytest.skip(f"Samba test server unavailable: {reason}")
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
