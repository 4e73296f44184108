"""One test per exit code: the code, one line on stderr that says what is wrong and what to do,
and never a traceback. Runs against the real Samba test server where the network is involved."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import Result, SlowRelay, add_profile, make_tree, run_cli, spawn_cli, tree_bytes
from samba import SambaServer, free_port

from backdown.errors import ExitStatus
from backdown.profile_store import FILE_NAME

pytestmark = pytest.mark.samba


def one_line_error(result: Result, code: int, *words: str) -> str:
    """Assert the exit code, a single stderr line with each of words, and no traceback."""
    assert result.code == code, result
    assert "Traceback" not in result.err + result.out
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    line = lines[0]
    assert line.startswith("backdown: "), line
    for word in words:
        assert word.lower() in line.lower(), (word, line)
    return line


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return tmp_path / "config"


@pytest.fixture
def local(tmp_path: Path) -> Path:
    folder = tmp_path / "local"
    folder.mkdir()
    make_tree(folder)
    return folder


def profile(
    config: Path,
    local: Path,
    port: int,
    remote_dir: str,
    server: SambaServer,
    password: str | None = None,
    share: str = "backup",
) -> str:
    """Save profile 'p' (password saved via --password-stdin) and return its name."""
    add_profile(
        config,
        "p",
        local,
        port,
        remote_dir,
        server.user,
        server.password if password is None else password,
        share=share,
    )
    return "p"


def test_all_the_codes_are_the_documented_ones() -> None:
    assert {s.name: int(s) for s in ExitStatus} == {
        "SUCCESS": 0,
        "FILES_FAILED": 1,
        "USAGE": 2,
        "CONNECTION": 3,
        "SHARE": 4,
        "ATTENTION": 5,
        "INTERRUPTED": 130,
    }
    assert ExitStatus.NO_SCHEDULER == 4  # the same code as SHARE, documented together


# --- 3: cannot connect or log on ----------------------------------------------------------


def test_wrong_password_is_3(
    samba: SambaServer, config: Path, local: Path, remote_dir: str
) -> None:
    name = profile(config, local, samba.port, remote_dir, samba, password="not-the-password")
    for command in ("test", "upload", "download"):
        result = run_cli([command, name], config)
        one_line_error(result, 3, "password", samba.user)
        assert "not-the-password" not in result.err + result.out


def test_closed_port_is_3_at_once(samba: SambaServer, config: Path, local: Path) -> None:
    port = free_port()  # nobody listens there: the kernel answers with a reset
    name = profile(config, local, port, "x", samba)
    started = time.monotonic()
    result = run_cli(["upload", name], config)
    assert time.monotonic() - started < 5
    one_line_error(result, 3, f"127.0.0.1:{port}", "refused", "port")


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port on 127.0.0.1 that completes the TCP handshake and then never says a word."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=8)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def test_server_that_never_answers_is_3_within_the_timeout(
    samba: SambaServer, config: Path, local: Path, silent_server: int
) -> None:
    name = profile(config, local, silent_server, "x", samba)
    started = time.monotonic()
    result = run_cli(["test", name], config)
    took = time.monotonic() - started
    one_line_error(result, 3, f"127.0.0.1:{silent_server}", "no answer")
    assert took < 15, f"gave up only after {took:.1f} s"


# --- 4: share or folder missing, access denied ---------------------------------------------


def test_missing_share_is_4(samba: SambaServer, config: Path, local: Path) -> None:
    name = profile(config, local, samba.port, "x", samba, share="nosuchshare")
    for command in ("test", "upload", "download"):
        one_line_error(run_cli([command, name], config), 4, "nosuchshare", "not found")


@pytest.mark.parametrize("folder", ["", "existing", "new/folder"])
def test_upload_to_a_read_only_share_is_4(
    samba: SambaServer, config: Path, local: Path, folder: str
) -> None:
    if folder == "existing":
        (samba.share_path("readonly") / folder).mkdir(exist_ok=True)
    name = profile(config, local, samba.port, folder, samba, share="readonly")
    before = tree_bytes(samba.share_path("readonly"))
    one_line_error(run_cli(["upload", name], config), 4, "readonly", "access denied")
    one_line_error(run_cli(["test", name], config), 4, "access denied")
    assert tree_bytes(samba.share_path("readonly")) == before


def test_remote_folder_without_access_is_4(
    samba: SambaServer, config: Path, local: Path, remote_dir: str, tmp_path: Path
) -> None:
    locked = samba.share_path("backup") / remote_dir / "locked"
    locked.mkdir(mode=0o700)  # owned by root: the SMB user may not even look inside
    (locked / "kept.txt").write_text("kept")
    name = profile(config, local, samba.port, f"{remote_dir}/locked", samba)
    target = tmp_path / "target"
    for command in (["test", name], ["upload", name], ["download", name, "--to", str(target)]):
        one_line_error(run_cli(command, config), 4, f"{remote_dir}/locked", "access denied")
    assert os.listdir(locked) == ["kept.txt"]
    assert not target.exists()


def test_upload_to_a_folder_without_write_access_is_4(
    samba: SambaServer, config: Path, local: Path, remote_dir: str
) -> None:
    folder = samba.share_path("backup") / remote_dir / "not-mine"
    folder.mkdir(mode=0o755)  # owned by root: readable, not writable, by the SMB user
    name = profile(config, local, samba.port, f"{remote_dir}/not-mine", samba)
    for command in ("test", "upload"):
        one_line_error(run_cli([command, name], config), 4, "not-mine", "access denied")
    assert os.listdir(folder) == []


def test_download_of_a_missing_remote_folder_is_4(
    samba: SambaServer, config: Path, local: Path, tmp_path: Path
) -> None:
    name = profile(config, local, samba.port, "never/backed/up", samba)
    target = tmp_path / "target"
    result = run_cli(["download", name, "--to", str(target)], config)
    one_line_error(result, 4, "never/backed/up", "not found", "backup")
    assert not target.exists()


# --- 2: usage or bad input ------------------------------------------------------------------


def test_unknown_profile_is_2(config: Path) -> None:
    for args in (["upload", "ghost"], ["download", "ghost"], ["profile", "show", "ghost"]):
        one_line_error(run_cli(args, config), 2, "'ghost'", "profile list")


@pytest.mark.parametrize(
    "args",
    [
        ["upload"],
        ["upload", "p", "--bogus"],
        ["frobnicate"],
        ["profile"],
        ["upload", "p", "--transfers", "0"],
        ["upload", "p", "--transfers", "many"],
        ["download", "p", "--mirror"],
        ["profile", "add", "p", "--local", "/tmp"],
    ],
)
def test_bad_option_is_2(config: Path, args: list[str]) -> None:
    one_line_error(run_cli(args, config), 2)


@pytest.mark.parametrize(
    ("option", "value", "word"),
    [
        ("--port", "70000", "port"),
        ("--port", "0", "port"),
        ("--port", "http", "port"),
        ("--share", "backup/sub", "share"),
        ("--share", "a\\b", "share"),
        ("--server", "host name", "host name"),
        ("--server", "127.0.0.1:445", "port"),
        ("--remote-folder", "a/../b", ".."),
    ],
)
def test_invalid_value_at_profile_add_is_2(
    config: Path, local: Path, option: str, value: str, word: str
) -> None:
    args = ["profile", "add", "p", "--local", str(local), "--server", "127.0.0.1"]
    args += ["--share", "backup", option, value]
    one_line_error(run_cli(args, config), 2, word)
    assert not (config / FILE_NAME).exists()


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('format_version = 1\n\n[[profile]]\nname = "p"\nlocal = /no/quotes\n', 5),
        ('format_version = 1\n[[profile]]\nname = "p"\nport = 70000\nlocal = "/x"\n'
         'server = "h"\nshare = "s"\n', 2),
    ],
)  # fmt: skip
def test_corrupt_config_is_2_and_left_untouched(config: Path, text: str, line: int) -> None:
    config.mkdir(mode=0o700)
    path = config / FILE_NAME
    path.write_text(text)
    os.chmod(path, 0o600)
    before = path.read_bytes(), path.stat().st_mtime_ns
    for args in (["upload", "p"], ["profile", "list"], ["profile", "rename", "p", "q"]):
        one_line_error(run_cli(args, config), 2, str(path), f"line {line}")
        assert (path.read_bytes(), path.stat().st_mtime_ns) == before
    assert os.listdir(config) == [FILE_NAME]


def test_json_error_object_on_stdout(config: Path) -> None:
    result = run_cli(["upload", "ghost", "--json"], config)
    line = one_line_error(result, 2, "ghost")
    data = json.loads(result.out)
    assert data["ok"] is False and data["exit_code"] == 2
    assert data["error"] in line
    assert (data["profile"], data["operation"]) == ("ghost", "upload")  # as a run's object
    restore = json.loads(run_cli(["restore", "ghost", "--json"], config).out)
    assert (restore["profile"], restore["operation"]) == ("ghost", "download")


def test_missing_password_is_2(samba: SambaServer, config: Path, local: Path) -> None:
    args = ["profile", "add", "p", "--local", str(local), "--server", "127.0.0.1"]
    args += ["--port", str(samba.port), "--share", "backup", "--user", samba.user]
    assert run_cli(args, config).code == 0
    one_line_error(run_cli(["test", "p"], config), 2, "password", "BACKDOWN_PASSWORD")


# --- 1: finished, some files failed -----------------------------------------------------------


def test_one_failed_file_is_1_and_the_rest_is_done(
    samba: SambaServer, config: Path, local: Path, remote_dir: str
) -> None:
    good = tree_bytes(local)
    fd = os.open(os.fsencode(local) + b"/not utf-8 \xfe.txt", os.O_CREAT | os.O_WRONLY, 0o644)
    os.close(fd)
    name = profile(config, local, samba.port, remote_dir, samba)
    result = run_cli(["upload", name], config)
    assert result.code == 1, result
    assert "Traceback" not in result.err + result.out
    assert "1 failed" in result.out and "not UTF-8" in result.out
    assert tree_bytes(samba.share_path("backup") / remote_dir) == good


# --- 130: interrupted ---------------------------------------------------------------------


def test_ctrl_c_is_130_with_one_line(
    samba: SambaServer, config: Path, tmp_path: Path, remote_dir: str
) -> None:
    local = tmp_path / "big"
    local.mkdir()
    (local / "big.bin").write_bytes(os.urandom(24 << 20))
    with SlowRelay(samba.port) as relay:
        name = profile(config, local, relay.port, remote_dir, samba)
        proc = spawn_cli(["upload", name], config)
        try:
            # Wait until bytes are flowing: the temporary file appears on the share.
            deadline = time.monotonic() + 15
            folder = samba.share_path("backup") / remote_dir
            while not any(p.name.startswith(".~bd.") for p in folder.iterdir()):
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the upload never started"
                time.sleep(0.05)
            cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
            assert samba.password.encode() not in cmdline
            started = time.monotonic()
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert time.monotonic() - started < 10
    result = Result(proc.returncode, out, err)
    one_line_error(result, 130, "interrupted", "run the same command again")
    assert samba.password not in out + err

    # The message promises that running again finishes the job.
    edit = run_cli(["profile", "edit", name, "--port", str(samba.port)], config)
    assert edit.code == 0, edit
    again = run_cli(["upload", name], config)
    assert again.code == 0, again
    assert tree_bytes(samba.share_path("backup") / remote_dir) == tree_bytes(local)


def test_ctrl_c_before_any_transfer_is_130(config: Path, tmp_path: Path) -> None:
    # Stuck waiting for a server that does not answer: Ctrl-C must not wait for the timeout.
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        args = ["profile", "add", "p", "--local", str(tmp_path), "--server", "127.0.0.1"]
        args += ["--port", str(listener.getsockname()[1]), "--share", "backup"]
        assert run_cli(args, config).code == 0
        proc = spawn_cli(["test", "p"], config)
        listener.settimeout(10)
        conn, _ = listener.accept()  # connected; now waiting for an answer that never comes
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        conn.close()
    finally:
        listener.close()
    one_line_error(Result(proc.returncode, out, err), 130, "interrupted")
