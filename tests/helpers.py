"""Helpers shared by the tests: run BackDown in-process or as a process, build trees,
compare trees byte for byte, and a throttling TCP relay that slows a connection to the real
Samba server (so a test has time to kill a run or stop the server halfway)."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from backdown.cli import main
from backdown.environment import Environment

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(
    args: list[str],
    config_dir: Path,
    *,
    stdin: str = "",
    environ: dict[str, str] | None = None,
) -> Result:
    """Run the whole program in-process (as `backdown --config-dir DIR ARGS...`)."""
    out, err = io.StringIO(), io.StringIO()
    environ = dict(environ or {})
    # The test's own data folder (conftest sets it), never the user's run history.
    environ.setdefault("BACKDOWN_DATA_DIR", os.environ.get("BACKDOWN_DATA_DIR", ""))
    env = Environment(
        stdin=io.StringIO(stdin),
        stdout=out,
        stderr=err,
        environ=environ,
        config_dir=config_dir,
    )
    code = main(["--config-dir", str(config_dir), *args], env)
    return Result(code, out.getvalue(), err.getvalue())


def spawn_cli(
    args: list[str], config_dir: Path, environ: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """Start `python -m backdown` as a separate process (to kill it, or to run two at once)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKDOWN_")}
    if os.environ.get("BACKDOWN_DATA_DIR"):
        env["BACKDOWN_DATA_DIR"] = os.environ["BACKDOWN_DATA_DIR"]
    env.update(environ or {})
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.Popen(
        [sys.executable, "-m", "backdown", "--config-dir", str(config_dir), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def add_profile(
    config_dir: Path,
    name: str,
    local: Path,
    port: int,
    remote_folder: str,
    user: str,
    password: str,
    share: str = "backup",
    extra: list[str] | None = None,
) -> None:
    """Save a profile through the command line, password via --password-stdin (with the
    transport the `transport` fixture picked, when a test module asks for it)."""
    extra = list(extra or [])
    if os.environ.get("BACKDOWN_TEST_PROTOCOL") and "--protocol" not in extra:
        extra += ["--protocol", os.environ["BACKDOWN_TEST_PROTOCOL"]]
    args = [
        "profile", "add", name, "--local", str(local), "--server", "127.0.0.1",
        "--port", str(port), "--share", share, "--remote-folder", remote_folder,
        "--user", user, "--password-stdin", *(extra or []),
    ]  # fmt: skip
    result = run_cli(args, config_dir, stdin=password + "\n")
    assert result.code == 0, result


def tree_bytes(root: Path, skip: tuple[str, ...] = (".backdown", ".backdown-replaced")) -> dict:
    """{relative path: bytes, or None for a folder} for everything under root."""
    found: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d not in skip]
        for d in dirnames:
            found[os.path.normpath(os.path.join(rel_dir, d))] = None
        for f in filenames:
            rel = os.path.normpath(os.path.join(rel_dir, f))
            found[rel] = Path(dirpath, f).read_bytes()
    return found


def assert_same_tree(a: Path, b: Path) -> None:
    """Both trees hold the same folders and files with the same bytes."""
    left, right = tree_bytes(a), tree_bytes(b)
    assert sorted(left) == sorted(right)
    for path, data in left.items():
        assert data == right[path], f"{path} differs"


def make_tree(root: Path, big_mib: int = 0) -> None:
    """A tree with nested and empty folders, a 0-byte file, unicode and space names."""
    (root / "docs" / "deep" / "deeper").mkdir(parents=True)
    (root / "empty folder").mkdir()
    (root / "docs" / "empty").mkdir()
    (root / "docs" / "report final.txt").write_text("quarterly numbers\n")
    (root / "docs" / "deep" / "deeper" / "note.md").write_text("# deep\n")
    (root / "zero.bin").write_bytes(b"")
    (root / "Ünïcödé café").mkdir()
    (root / "Ünïcödé café" / "日本語のファイル.txt").write_text("こんにちは")
    (root / "emoji 😀 file.txt").write_text("smile")
    (root / "random.bin").write_bytes(os.urandom(100_000))
    if big_mib:
        (root / "big.bin").write_bytes(os.urandom(big_mib << 20))


class SlowRelay:
    """A TCP relay on 127.0.0.1 that passes at most `rate` bytes/s each way per connection.

    It stands between BackDown and the real smbd only to make a transfer last long enough
    for a test to interrupt it; it changes no bytes.
    """

    def __init__(self, target_port: int, rate: int = 2 << 20) -> None:
        self.target_port = target_port
        self.rate = rate
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            self._socks += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        chunk = 16 << 10
        try:
            while True:
                data = src.recv(chunk)
                if not data:
                    break
                dst.sendall(data)
                time.sleep(len(data) / self.rate)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        for s in self._socks:
            try:
                s.close()
            except OSError:
                pass

    def __enter__(self) -> SlowRelay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- hostile servers


def run_bounded(
    args: list[str],
    config_dir: Path,
    timeout: float,
    environ: dict[str, str] | None = None,
) -> Result:
    """Run `python -m backdown ARGS` as a process; a run that outlives `timeout` seconds is
    killed and fails the test (a hang must fail, never hang the suite)."""
    proc = spawn_cli(args, config_dir, environ)
    try:
        out, err = proc.communicate(timeout=max(timeout, 0.1))
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=30)
        raise AssertionError(
            f"backdown {' '.join(args)} did not finish within {timeout:.0f} s (hung?) and was "
            f"killed; its stderr: {err.strip()[-1500:] or '(empty)'}"
        ) from None
    return Result(proc.returncode, out, err)


def describe_difference(expected: bytes, actual: bytes, limit: int = 3) -> str | None:
    """None if equal; else what differs, e.g. "589824 zero bytes (a hole) at offset 3145728"."""
    if expected == actual:
        return None
    common = min(len(expected), len(actual))
    sizes = f"{len(actual)} bytes instead of {len(expected)}"
    if actual[:common] == expected[:common]:
        what = "truncated" if len(actual) < len(expected) else "extra bytes at the end"
        return f"{sizes}: the first {common} bytes are right, {what}"
    regions: list[str] = []
    block = 4096
    pos = 0
    while pos < common and len(regions) < limit:
        if expected[pos : pos + block] == actual[pos : pos + block]:
            pos += block
            continue
        start = pos
        while start < common and expected[start] == actual[start]:
            start += 1
        if start == common:  # only the lengths differ from here on
            break
        end = start
        while end < common and expected[end : end + block] != actual[end : end + block]:
            end += block
        end = min(end, common)
        while expected[end - 1] == actual[end - 1]:  # back to the last byte that differs
            end -= 1
        kind = "zero bytes (a hole)" if actual[start:end].count(0) == end - start else "wrong bytes"
        regions.append(f"{end - start} {kind} at offset {start}")
        pos = end
    found = "; ".join(regions) if regions else "differences"
    return found if len(actual) == len(expected) else f"{sizes}; {found}"


def tree_differences(expected: dict, actual: dict) -> list[str]:
    """What differs between two tree_bytes() results, one line per path."""
    problems = []
    for path in sorted(set(expected) - set(actual)):
        problems.append(f"{path}: missing")
    for path in sorted(set(actual) - set(expected)):
        problems.append(f"{path}: unexpected")
    for path in sorted(set(expected) & set(actual)):
        a, b = expected[path], actual[path]
        if (a is None) != (b is None):
            problems.append(f"{path}: a folder on one side, a file on the other")
        elif a is not None and a != b:
            problems.append(f"{path}: {describe_difference(a, b)}")
    return problems


def crontab_text() -> str:
    """The crontab of the user running the tests, or '<none>' when there is none."""
    listed = subprocess.run(["crontab", "-l"], capture_output=True, text=True, check=False)
    return listed.stdout if listed.returncode == 0 else "<none>"
