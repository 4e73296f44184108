"""BackDown against servers that do not make life easy: few credits, small reads and writes,
a full disk, free space that comes and goes, a server process killed mid-transfer, short
writes and reads (faked by tests/wire_proxy.py, since Samba never answers short), and an
SMB1-only server.

Every test drives the command line (as a separate process, with a time limit, so a hang
fails instead of hanging the suite), compares whole trees byte for byte (random data, so a
hole of zeros shows), and looks at the share's folder on the server's disk as well.  The
servers come from ``samba_with`` (conftest.py): each configuration starts once per session.
"""

from __future__ import annotations

import errno
import io
import json
import os
import random
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import (
    Result,
    SlowRelay,
    add_profile,
    describe_difference,
    run_bounded,
    spawn_cli,
    tree_bytes,
    tree_differences,
)
from samba import SambaServer
from wire_proxy import CMD_READ, CMD_WRITE, WireProxy

pytestmark = pytest.mark.samba

KiB = 1 << 10
MiB = 1 << 20
RUN_TIMEOUT = 60.0  # seconds for one run of a few dozen MiB on loopback (they take ~1-5 s)
ROUND_TRIP_BUDGET = 120.0  # seconds for an upload and a restore together

ServerFactory = Callable[..., SambaServer]
DirMaker = Callable[[SambaServer], str]


# --------------------------------------------------------------------------- helpers


def profile(
    config: Path, local: Path, server: SambaServer, remote: str, port: int | None = None
) -> None:
    """Profile 'p' for local <-> server's backup share / remote (through `port` if given)."""
    add_profile(config, "p", local, port or server.port, remote, server.user, server.password)


def outcome(result: Result) -> str:
    """A run's exit code and the end of its output, for assertion messages."""
    text = (result.err.strip() + "\n" + result.out.strip()).strip()
    return f"exit {result.code}: {text[-1500:] or '(no output)'}"


def report_of(result: Result) -> dict:
    """The --json report of a run (an error object for a run that stopped)."""
    try:
        return json.loads(result.out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {}


def failure_text(result: Result) -> str:
    """Everything a run said about failures (its --json report and stderr)."""
    data = report_of(result)
    errors = [f["error"] for f in data.get("files_failed", [])]
    if data.get("error"):
        errors.append(data["error"])
    return " | ".join(errors) + " | " + result.err


def share_tree(server: SambaServer, remote: str) -> dict:
    """tree_bytes() of the remote folder on the server's disk (without .backdown)."""
    return tree_bytes(server.share_path("backup") / remote)


def partials(root: Path) -> list[Path]:
    return sorted(root.rglob(".~bd.*.part"))


def write_random(path: Path, size: int) -> bytes:
    data = os.urandom(size)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def kill(pid: int) -> bool:
    """SIGKILL a server process; False if it had ended already."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def while_running(
    args: list[str], config: Path, step: Callable[[], bool], interval: float
) -> Result:
    """Run the command line, calling step() every `interval` seconds while it runs, until
    step returns True; its Result (a run that outlives RUN_TIMEOUT is killed and fails)."""
    proc = spawn_cli(args, config)
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        while proc.poll() is None and time.monotonic() < deadline and not step():
            time.sleep(interval)
        out, err = proc.communicate(timeout=RUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    return Result(proc.returncode, out, err)


def check_problems(problems: list[str], what: str) -> None:
    assert not problems, f"{what}:\n  - " + "\n  - ".join(problems)


# --------------------------------------------------------------------------- the rigs


def test_rig_server_processes_open_files_and_settings(
    samba_with: ServerFactory, remote_dir_in: DirMaker
) -> None:
    """client_pids(), client_ports(), open_files() and extra settings do what they say."""
    server = samba_with(extra_share={"comment": "hostile rig"})
    assert "comment = hostile rig" in server.conf_path.read_text()
    remote = remote_dir_in(server)
    held = server.put_file("backup", f"{remote}/held.txt", b"x")
    before = set(server.client_pids())
    conn = server.connection()
    try:
        assert conn.connect(server.host, server.port, timeout=10)
        mine = [p for p in server.client_pids() if p not in before]
        assert len(mine) == 1, f"one new client process expected: {mine}"
        assert server.client_ports()[mine[0]] == conn.sock.getsockname()[1]
    finally:
        conn.close()
    # smbclient's "open" holds a file open until smbclient ends.
    client = subprocess.Popen(
        ["smbclient", f"//{server.host}/backup", "-p", str(server.port)]
        + ["-A", str(server.auth_file), "-s", str(server.conf_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert client.stdin is not None
        client.stdin.write(f"open {remote}/held.txt\n")
        client.stdin.flush()
        wait_until("smbstatus to list held.txt", lambda: held in server.open_files())
        serving = server.client_pids()[-1]
        assert Path(f"/proc/{serving}/comm").read_text().strip() == "smbd"
        os.kill(serving, signal.SIGKILL)
        wait_until(
            "the killed child and its open file to go",
            lambda: serving not in server.client_pids() and held not in server.open_files(),
        )
    finally:
        client.kill()
        client.wait(10)


def wait_until(what: str, check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_rig_tmpfs_share(samba_with: ServerFactory, remote_dir_in: DirMaker) -> None:
    server = samba_with(tmpfs_size="256k")
    path = server.share_path("backup")
    assert os.path.ismount(path)
    assert os.stat(path).st_uid == server.uid
    assert 200 * KiB < server.free_bytes() <= 256 * KiB
    remote = remote_dir_in(server)
    try:
        server.resize_tmpfs("512k")
        assert 400 * KiB < server.free_bytes() <= 512 * KiB
        leave_free(server, 12 * KiB)
        assert server.free_bytes() == 12 * KiB
        with pytest.raises(OSError) as full:
            write_random(path / remote / "too-big", 64 * KiB)
        assert full.value.errno == errno.ENOSPC
    finally:
        reset_tmpfs(server, "256k")


def test_rig_wire_proxy_passes_and_tampers(samba: SambaServer, remote_dir: str) -> None:
    """Unchanged traffic through the relay, then one READ answered 100 bytes short."""
    conn = samba.connection()
    with WireProxy(samba.port) as proxy:
        try:
            assert conn.connect(samba.host, proxy.port, timeout=10)
            data = os.urandom(300 * KiB)
            conn.storeFile("backup", f"{remote_dir}/a.bin", io.BytesIO(data))
            got = io.BytesIO()
            conn.retrieveFile("backup", f"{remote_dir}/a.bin", got)
            assert got.getvalue() == data
            assert proxy.count(CMD_WRITE) >= 5 and proxy.count(CMD_READ) >= 5
            assert not proxy.tampered and not proxy.errors
            proxy.short_read(cut=100, nth=1)
            got = io.BytesIO()
            conn.retrieveFileFromOffset("backup", f"{remote_dir}/a.bin", got, 0, 1000)
            [t] = proxy.tampered
            assert (t.kind, t.before, t.after, t.offset) == ("short_read", 1000, 900, 0)
            # pysmb asks again for the missing 100 bytes: the framing held, the data is right
            assert got.getvalue() == data[:1000]
            assert proxy.count(CMD_READ) >= 7
        finally:
            conn.close()
    assert not proxy.errors


# --------------------------------------------------------------------------- few credits, small I/O


def build_big_tree(root: Path) -> None:
    """Several 3-5 MiB files, 200 small files, a folder of 1,500 entries, nested folders."""
    rng = random.Random(20240607)
    for i in range(4):
        write_random(root / "large" / f"big{i}.bin", rng.randint(3 * MiB, 5 * MiB))
    edges = [0, 1, 32767, 32768, 32769, 65535, 65536, 65537, 131073]
    for i in range(200):
        size = edges[i] if i < len(edges) else rng.randint(1, 20_000)
        write_random(root / "small" / f"s{i // 50}" / f"f{i:03}.dat", size)
    many = root / "many"
    many.mkdir()
    for i in range(1490):
        (many / f"entry with a longish name {i:04}.txt").write_bytes(os.urandom(i % 97 + 1))
    for i in range(10):
        (many / f"folder {i}").mkdir()
    deep = root / "n1" / "n2" / "n3" / "n4" / "n5"
    deep.mkdir(parents=True)
    write_random(deep / "deep.bin", 70_000)
    write_random(root / "n1" / "n2" / "mid.bin", 100_000)
    (root / "n1" / "empty").mkdir()


@pytest.fixture(scope="module")
def big_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hostile") / "tree"
    build_big_tree(root)
    return root


LIMITS = {
    "max-credits-2": {"smb2 max credits": "2"},
    "max-credits-8": {"smb2 max credits": "8"},
    "max-io-32k": {"smb2 max read": "32768", "smb2 max write": "32768"},
}


@pytest.mark.parametrize("limit", LIMITS)
def test_round_trip_under_server_limits(
    limit: str,
    samba_with: ServerFactory,
    remote_dir_in: DirMaker,
    big_tree: Path,
    tmp_path: Path,
) -> None:
    server = samba_with(extra_global=LIMITS[limit])
    remote = remote_dir_in(server)
    config = tmp_path / "config"
    profile(config, big_tree, server, remote)
    began = time.monotonic()

    up = run_bounded(["upload", "p", "--json"], config, ROUND_TRIP_BUDGET)
    assert up.code == 0, f"upload with {LIMITS[limit]}: {outcome(up)}"
    source = tree_bytes(big_tree)
    check_problems(
        tree_differences(source, share_tree(server, remote)),
        f"the share's folder after an upload with {LIMITS[limit]}",
    )

    target = tmp_path / "restored"
    left = ROUND_TRIP_BUDGET - (time.monotonic() - began)
    down = run_bounded(["download", "p", "--to", str(target), "--json"], config, left)
    assert down.code == 0, f"restore with {LIMITS[limit]}: {outcome(down)}"
    check_problems(
        tree_differences(source, tree_bytes(target)),
        f"the restored tree after a round trip with {LIMITS[limit]}",
    )


# --------------------------------------------------------------------------- a full disk


def leave_free(server: SambaServer, free: int) -> Path:
    """Fill the share's tmpfs with a filler file (in the share's root) until `free` bytes
    are left (a multiple of the page size)."""
    filler = server.share_path("backup") / ".filler"
    filler.unlink(missing_ok=True)
    size = server.free_bytes() - free
    assert size >= 0, f"rig: only {server.free_bytes()} bytes free, wanted {free}"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        if size:
            os.posix_fallocate(fd, 0, size)
    finally:
        os.close(fd)
    server.chown(filler)
    assert server.free_bytes() == free, f"rig: {server.free_bytes()} bytes free, not {free}"
    return filler


def reset_tmpfs(server: SambaServer, size: str) -> None:
    """Empty the share's tmpfs and give it its original size again."""
    root = server.share_path("backup")
    for entry in root.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    server.resize_tmpfs(size)


def upload_once_there_is_room(
    server: SambaServer, config: Path, local: Path, share: Path
) -> list[str]:
    """Grow the share's tmpfs to 2 MiB and upload again: what is wrong after."""
    server.resize_tmpfs("2m")
    again = run_bounded(["upload", "p", "--json"], config, RUN_TIMEOUT)
    problems = [] if again.code == 0 else [f"the upload once there is room: {outcome(again)}"]
    return problems + [
        f"share: {p}" for p in tree_differences(tree_bytes(local), tree_bytes(share))
    ]


@pytest.fixture
def tiny_share(samba_with: ServerFactory) -> Iterator[SambaServer]:
    """A server whose backup share is a 256 KiB tmpfs, emptied and reset after the test."""
    server = samba_with(tmpfs_size="256k")
    reset_tmpfs(server, "256k")
    try:
        yield server
    finally:
        reset_tmpfs(server, "256k")


@pytest.mark.parametrize(
    ("size", "free"),
    [(20_000, 12 * KiB), (600_000, 160 * KiB)],
    ids=["small-file-one-round-trip", "large-file-mid-file"],
)
def test_disk_full_leaves_no_wrong_file_and_resumes_once_there_is_room(
    size: int, free: int, tiny_share: SambaServer, remote_dir_in: DirMaker, tmp_path: Path
) -> None:
    server = tiny_share
    remote = remote_dir_in(server)
    local = tmp_path / "local"
    data = write_random(local / "doc.bin", size)
    config = tmp_path / "config"
    profile(config, local, server, remote)
    share = server.share_path("backup") / remote
    leave_free(server, free)
    problems: list[str] = []

    up = run_bounded(["upload", "p", "--json"], config, RUN_TIMEOUT)
    if up.code != 1:
        problems.append(f"upload of {size} bytes with {free} free: not exit 1 but {outcome(up)}")
    elif "full" not in failure_text(up).lower():
        problems.append(f"the failure does not say the share is full: {outcome(up)}")
    if (share / "doc.bin").exists():
        wrong = describe_difference(data, (share / "doc.bin").read_bytes())
        if wrong:
            problems.append(f"after the failed upload the share holds doc.bin with {wrong}")

    restored = tmp_path / "restored"
    down = run_bounded(["download", "p", "--to", str(restored), "--json"], config, RUN_TIMEOUT)
    if down.code == 0 and (restored / "doc.bin").exists():
        wrong = describe_difference(data, (restored / "doc.bin").read_bytes())
        if wrong:
            problems.append(f"a restore ended with exit 0 and gave back doc.bin with {wrong}")

    problems += upload_once_there_is_room(server, config, local, share)
    final = tmp_path / "restored-again"
    down = run_bounded(["download", "p", "--to", str(final), "--json"], config, RUN_TIMEOUT)
    if down.code != 0:
        problems.append(f"the restore after the good upload: {outcome(down)}")
    problems += [f"restored: {p}" for p in tree_differences(tree_bytes(local), tree_bytes(final))]
    check_problems(problems, f"a {size}-byte upload onto a share with {free} bytes free")


def test_disk_full_in_a_batch_of_small_files_leaves_only_whole_files(
    tiny_share: SambaServer, remote_dir_in: DirMaker, tmp_path: Path
) -> None:
    """40 new files of 20,000 bytes (written in batches, their requests in flight together)
    onto a share with 100 KiB free: those that fit are in place whole, the others fail
    saying the share is full; with room, the next run completes."""
    server = tiny_share
    remote = remote_dir_in(server)
    local = tmp_path / "local"
    data = {f"d{i // 10}/f{i:02}.bin": write_random(local / f"d{i // 10}/f{i:02}.bin", 20_000)
            for i in range(40)}  # fmt: skip
    config = tmp_path / "config"
    profile(config, local, server, remote)
    share = server.share_path("backup") / remote
    leave_free(server, 100 * KiB)
    problems: list[str] = []

    up = run_bounded(["upload", "p", "--json"], config, RUN_TIMEOUT)
    failed = {f["path"] for f in report_of(up).get("files_failed", [])}
    if up.code != 1:
        problems.append(f"upload with 100 KiB free: not exit 1 but {outcome(up)}")
    elif "full" not in failure_text(up).lower():
        problems.append(f"the failure does not say the share is full: {outcome(up)}")
    placed = {name for name in data if (share / name).exists()}
    if not placed or len(placed) == len(data):
        problems.append(f"rig: {len(placed)} of {len(data)} files fit, not some")
    for name in placed:
        wrong = describe_difference(data[name], (share / name).read_bytes())
        if wrong:
            problems.append(f"after the full share, {name} is in place with {wrong}")
    if failed & placed:
        problems.append(f"reported failed yet in place: {sorted(failed & placed)}")
    if not failed and up.code == 1:
        problems.append(f"no file reported failed: {outcome(up)}")

    problems += upload_once_there_is_room(server, config, local, share)
    if partials(share):
        problems.append(f"temporaries left: {partials(share)}")
    check_problems(problems, "a batch of small files onto a share with 100 KiB free")


class Filler:
    """Fills the share's tmpfs and frees it again, over and over, from its own thread.

    It waits until a temporary under `watch` has passed `start_at` bytes (so the first fill
    lands in the middle of a transfer), then alternates: fill every free byte, hold it a
    few milliseconds, free it, wait a little.
    """

    def __init__(self, server: SambaServer, watch: Path, start_at: int, seed: int) -> None:
        self.server = server
        self.watch = watch
        self.start_at = start_at
        self.rng = random.Random(seed)
        self.path = server.share_path("backup") / ".filler"
        self.fills = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Filler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.path.unlink(missing_ok=True)

    def _started(self) -> bool:
        return any(p.stat().st_size > self.start_at for p in partials(self.watch))

    def _run(self) -> None:
        while not self._stop.is_set() and self.start_at and not self._safe(self._started):
            time.sleep(0.005)
        while not self._stop.is_set():
            self._fill()
            self._stop.wait(self.rng.uniform(0.005, 0.08))
            self.path.unlink(missing_ok=True)
            self._stop.wait(self.rng.uniform(0.05, 0.4))

    @staticmethod
    def _safe(check: Callable[[], bool]) -> bool:
        try:
            return check()
        except OSError:
            return False

    def _fill(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.fchown(fd, self.server.uid, self.server.gid)
            size = self.server.free_bytes()
            while size > 0:
                try:
                    os.posix_fallocate(fd, 0, size)
                    break
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    size -= 64 * KiB  # the transfer took some since: try a little less
            self.fills += 1
        finally:
            os.close(fd)


def test_free_space_that_comes_and_goes_never_leaves_a_hole(
    samba_with: ServerFactory, remote_dir_in: DirMaker, tmp_path: Path
) -> None:
    """The "589,824 zero bytes after resume" bug: writes fail while the disk is full, later
    ones in flight succeed once it is not, and the next run resumes from the file's end."""
    server = samba_with(tmpfs_size="64m")
    reset_tmpfs(server, "64m")
    remote = remote_dir_in(server)
    local = tmp_path / "local"
    data = write_random(local / "video.bin", 45_000_000)
    config = tmp_path / "config"
    share = server.share_path("backup") / remote
    runs: list[str] = []
    fills_mid_transfer = 0
    try:
        with SlowRelay(server.port, rate=24 * MiB) as relay:
            profile(config, local, server, remote, port=relay.port)
            for attempt in range(8):
                filling = attempt < 5
                if filling:
                    with Filler(server, share, 8 * MiB if attempt == 0 else 0, attempt) as filler:
                        result = run_bounded(["upload", "p", "--json"], config, RUN_TIMEOUT)
                    fills_mid_transfer += filler.fills
                    runs.append(f"run {attempt + 1} ({filler.fills} fills): {outcome(result)}")
                else:
                    result = run_bounded(["upload", "p", "--json"], config, RUN_TIMEOUT)
                    runs.append(f"run {attempt + 1} (no filler): {outcome(result)}")
                if result.code == 0:
                    break
        history = "\n".join(runs)
        print(history)  # shown with -rP: how the runs went
        assert result.code == 0, f"no upload succeeded in 8 runs:\n{history}"
        assert fills_mid_transfer, f"the filler never filled the share (proves nothing):\n{history}"
        wrong = describe_difference(data, (share / "video.bin").read_bytes())
        assert wrong is None, f"the share's video.bin after resuming has {wrong}\n{history}"
        assert not partials(share), f"temporaries left: {partials(share)}"
        restored = tmp_path / "restored"
        add_profile(config, "direct", local, server.port, remote, server.user, server.password)
        down = run_bounded(["download", "direct", "--to", str(restored)], config, RUN_TIMEOUT)
        assert down.code == 0, outcome(down)
        wrong = describe_difference(data, (restored / "video.bin").read_bytes())
        assert wrong is None, f"the restored video.bin has {wrong}"
    finally:
        reset_tmpfs(server, "64m")


# --------------------------------------------------------------------------- killed server process


KILLS_WANTED = 30
KILL_FILE_SIZE = 24 * MiB
KILL_BUDGET = 80.0  # seconds


def test_killed_smbd_child_mid_transfer_resumes_without_damage(
    samba: SambaServer, remote_dir: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """SIGKILL the smbd child serving an upload at a random moment, 30 times and more.

    Each run copies several fresh random files one at a time (--transfers 1); during each
    file the newest client process of the server (the worker's; the run's own bookkeeping
    connection is older) is killed once, when the temporary has reached a random size.
    The run reconnects after its 1 s backoff (the command line has no option to shorten it),
    resumes, and must end with exit 0 and every file on the share equal to its source.
    """
    share = samba.share_path("backup") / remote_dir
    config = tmp_path / "config"
    # Close to a GiB of sources: not left for pytest's last three runs to keep.
    request.addfinalizer(lambda: [shutil.rmtree(p) for p in tmp_path.glob("local*")])
    rng = random.Random()
    kills = 0
    runs = 0
    files: list[str] = []
    log: list[str] = []
    began = time.monotonic()
    while kills < KILLS_WANTED and time.monotonic() - began < KILL_BUDGET:
        runs += 1
        local = tmp_path / f"local{runs}"
        local.mkdir()
        batch = min(12, KILLS_WANTED - kills + 2)
        for i in range(batch):
            name = f"run{runs:02}/file{i:02}.bin"
            write_random(local / name, KILL_FILE_SIZE)
            files.append(f"{runs}/{name}")
        add_profile(config, f"k{runs}", local, samba.port, remote_dir, samba.user, samba.password)
        proc = spawn_cli(
            ["upload", f"k{runs}", "--transfers", "1", "--retries", "5", "--json"], config
        )
        killed_for: set[str] = set()
        threshold = rng.uniform(0.05, 0.95) * KILL_FILE_SIZE
        try:
            while proc.poll() is None and time.monotonic() - began < KILL_BUDGET + RUN_TIMEOUT:
                current = [p for p in partials(share / f"run{runs:02}") if p.name not in killed_for]
                try:
                    size = current[0].stat().st_size if current else -1
                except OSError:
                    size = -1
                children = samba.client_pids() if size >= threshold else []
                if children:
                    try:
                        os.kill(children[-1], signal.SIGKILL)
                    except ProcessLookupError:
                        continue  # it ended on its own meanwhile: try again
                    kills += 1
                    killed_for.add(current[0].name)
                    log.append(f"run {runs}: killed pid {children[-1]} at {size} bytes")
                    threshold = rng.uniform(0.05, 0.95) * KILL_FILE_SIZE
                time.sleep(0.0005)
            out, err = proc.communicate(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"run {runs} did not finish (hung?); kills: {log}") from None
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=30)
        result = Result(proc.returncode, out, err)
        assert result.code == 0, f"run {runs} after {len(killed_for)} kills: {outcome(result)}"
    print("\n".join(log))  # shown with -rP: where the kills landed
    assert kills >= KILLS_WANTED, (
        f"only {kills} kills landed mid-transfer in {time.monotonic() - began:.0f} s"
    )
    damaged = []
    for entry in files:
        run, name = entry.split("/", 1)
        data = (tmp_path / f"local{run}" / name).read_bytes()
        wrong = describe_difference(data, (share / name).read_bytes())
        if wrong:
            damaged.append(f"{name}: {wrong}")
    check_problems(damaged, f"files on the share after {kills} kills of the smbd child")
    assert not partials(share)


BATCH_FILES = 3000
BATCH_KILLS_AT = (600, 1400, 2200)  # files on the share when a copying connection is killed


def test_killed_smbd_child_mid_batch_of_small_files_loses_nothing(
    samba: SambaServer, remote_dir: str, tmp_path: Path
) -> None:
    """SIGKILL a copying connection's smbd child three times while 3,000 new small files go
    over 2 connections in batches (several files' requests in flight together).

    The files told done before a kill are not sent again; the rest are retried. The run
    must end with exit 0 (or stop naming the connection, and the next run completes); the
    share then holds the tree byte for byte, with no temporary left and no file kept as an
    old version of itself (a file renamed in just before the kill is found in place).
    """
    rng = random.Random(7)
    local = tmp_path / "local"
    for i in range(BATCH_FILES):
        write_random(local / f"d{i % 30:02}" / f"f{i:04}.dat", rng.randint(1, 8000))
    config = tmp_path / "config"
    profile(config, local, samba, remote_dir)
    share = samba.share_path("backup") / remote_dir
    before = set(samba.client_pids())
    log: list[str] = []

    def kill_at_the_marks() -> bool:
        there = sum(1 for _ in share.rglob("f*.dat"))
        new = [p for p in samba.client_pids() if p not in before]
        # A copying worker's: the run's own connection is the oldest.
        if there >= BATCH_KILLS_AT[len(log)] and len(new) >= 2 and kill(new[-1]):
            log.append(f"killed pid {new[-1]} of {len(new)} with {there} files there")
        return len(log) == len(BATCH_KILLS_AT)

    args = ["upload", "p", "--transfers", "2", "--retries", "5", "--json"]
    result = while_running(args, config, kill_at_the_marks, 0.01)
    print("\n".join(log))  # shown with -rP: where the kills landed
    assert log, f"no kill landed while the files went over: {outcome(result)}"
    if result.code != 0:  # a kill met a retry that had run out, or the run's own connection
        assert "connection" in outcome(result).lower(), outcome(result)
        result = run_bounded(["upload", "p", "--json"], config, RUN_TIMEOUT)
        assert result.code == 0, outcome(result)
    problems = tree_differences(tree_bytes(local), tree_bytes(share))
    if partials(share):
        problems.append(f"{len(partials(share))} temporaries left, first {partials(share)[0]}")
    versions = share / ".backdown" / "versions"
    kept = [p for p in versions.rglob("*") if p.is_file()] if versions.exists() else []
    if kept:
        problems.append(f"{len(kept)} files kept as old versions of themselves: {kept[:3]}")
    check_problems(problems, f"the share after {len(log)} kills mid-batch ({log})")


# --------------------------------------------------------------------------- short writes and reads


SIZES = {"small": 40_000, "large": 5 * MiB + 12_345}
# Files of a run: one small, one large, or many small new ones (written in batches with
# their requests in flight together, each renamed only once its own write is whole).
SHAPES = {"small": (1, 40_000), "large": (1, SIZES["large"]), "small-batched": (24, 20_000)}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mode", ["acknowledged", "truthful"])
def test_short_write_is_never_success(
    mode: str, shape: str, samba: SambaServer, remote_dir: str, tmp_path: Path
) -> None:
    """Every WRITE comes back 4 KiB short: the run must fail and put nothing wrong in place.

    acknowledged: the server wrote everything but said less; truthful: the relay shortened
    the request, so the server wrote exactly what it acknowledged.
    """
    count, size = SHAPES[shape]
    local = tmp_path / "local"
    data = {f"doc{i}.bin": write_random(local / f"doc{i}.bin", size) for i in range(count)}
    config = tmp_path / "config"
    share = samba.share_path("backup") / remote_dir
    with WireProxy(samba.port) as proxy:
        profile(config, local, samba, remote_dir, port=proxy.port)
        proxy.short_write(cut=4 * KiB, nth=None, truthful=mode == "truthful")
        result = run_bounded(["upload", "p", "--json"], config, RUN_TIMEOUT)
        proxy.clear()
        assert proxy.tampered, "rig: the relay shortened no WRITE"
        assert not proxy.errors, proxy.errors
        problems = []
        if result.code == 0:
            problems.append(
                f"exit 0 although {len(proxy.tampered)} WRITE(s) came back short "
                f"(first: {proxy.tampered[0]})"
            )
        failed = len(report_of(result).get("files_failed", []))
        if failed != count:
            problems.append(f"{failed} of {count} files reported failed: {outcome(result)}")
        for name, content in data.items():
            if (share / name).exists():
                wrong = describe_difference(content, (share / name).read_bytes())
                problems.append(f"the share holds {name}" + (f" with {wrong}" if wrong else ""))
        again = run_bounded(["upload", "p", "--json"], config, RUN_TIMEOUT)
        if again.code != 0:
            problems.append(f"a clean run afterwards: {outcome(again)}")
        problems += [
            f"after a clean run: {p}"
            for p in tree_differences(tree_bytes(local), tree_bytes(share))
        ]
    check_problems(problems, f"short WRITEs ({mode}) of {count} file(s) of {size} bytes")


@pytest.mark.parametrize("size", SIZES)
def test_short_read_is_never_success(
    size: str, samba: SambaServer, remote_dir: str, tmp_path: Path
) -> None:
    local = tmp_path / "local"
    data = write_random(local / "doc.bin", SIZES[size])
    config = tmp_path / "config"
    profile(config, local, samba, remote_dir)
    up = run_bounded(["upload", "p", "--json"], config, RUN_TIMEOUT)
    assert up.code == 0, outcome(up)
    target = tmp_path / "restored"
    with WireProxy(samba.port) as proxy:
        add_profile(config, "via-proxy", local, proxy.port, remote_dir, samba.user, samba.password)
        proxy.short_read(cut=4 * KiB, nth=None)
        args = ["download", "via-proxy", "--to", str(target), "--json"]
        result = run_bounded(args, config, RUN_TIMEOUT)
        proxy.clear()
        assert proxy.tampered, "rig: the relay shortened no READ"
        assert not proxy.errors, proxy.errors
        problems = []
        if result.code == 0:
            problems.append(
                f"exit 0 although {len(proxy.tampered)} READ(s) came back short "
                f"(first: {proxy.tampered[0]})"
            )
        if (target / "doc.bin").exists():
            wrong = describe_difference(data, (target / "doc.bin").read_bytes())
            if wrong:
                problems.append(f"the restore left doc.bin with {wrong}")
        again = run_bounded(args, config, RUN_TIMEOUT)
        if again.code != 0:
            problems.append(f"a clean restore afterwards: {outcome(again)}")
        problems += [
            f"after a clean restore: {p}"
            for p in tree_differences(tree_bytes(local), tree_bytes(target))
        ]
    check_problems(problems, f"short READs of a {SIZES[size]}-byte restore")


# --------------------------------------------------------------------------- SMB1 only


@pytest.mark.parametrize("command", ["test", "upload"])
def test_smb1_only_server_is_refused_in_one_line(
    command: str, samba_with: ServerFactory, remote_dir_in: DirMaker, tmp_path: Path
) -> None:
    server = samba_with(extra_global={"server max protocol": "NT1"})
    remote = remote_dir_in(server)
    local = tmp_path / "local"
    write_random(local / "doc.bin", 1000)
    config = tmp_path / "config"
    profile(config, local, server, remote)
    result = run_bounded([command, "p"], config, RUN_TIMEOUT)
    lines = result.err.strip().splitlines()
    assert result.code == 3, f"{command} against an SMB1-only server: {outcome(result)}"
    assert len(lines) == 1 and "SMB1" in lines[0], f"stderr should be one line about SMB1: {lines}"
    assert "Traceback" not in result.err


# --------------------------------------------------------------------------- killed while listing


LISTING_FOLDERS = 4000
LISTING_CHANGED = 20


def test_killed_smbd_child_while_the_share_is_listed_loses_no_folder(
    samba: SambaServer, remote_dir: str, tmp_path: Path
) -> None:
    """SIGKILL a listing helper's smbd child while a re-run lists a tree of 4,000 folders
    over several connections (the second-oldest new child: the run's own is the oldest).

    The helper's folders go back to the other connections. A run that ends with exit 0
    must have sent exactly the changed files (a folder whose listing was lost would send
    its files again as new); any run that stops says why, and the next one completes.
    In the end the share holds the local tree byte for byte.
    """
    local = tmp_path / "local"
    for n in range(LISTING_FOLDERS):
        doc = local / f"f{n % 40:02}" / f"sub {n}" / "doc.txt"
        doc.parent.mkdir(parents=True, exist_ok=True)
        doc.write_bytes(f"first {n}".encode())
    config = tmp_path / "config"
    profile(config, local, samba, remote_dir)
    first = run_bounded(["upload", "p", "--json"], config, RUN_TIMEOUT)
    assert first.code == 0, outcome(first)
    killed: list[str] = []
    for attempt in range(3):
        for n in range(attempt, LISTING_FOLDERS, LISTING_FOLDERS // LISTING_CHANGED):
            (local / f"f{n % 40:02}" / f"sub {n}" / "doc.txt").write_bytes(
                f"changed {attempt} {n}".encode()
            )
        before = set(samba.client_pids())

        def kill_a_listing_helper(before: set[int] = before, attempt: int = attempt) -> bool:
            new = [p for p in samba.client_pids() if p not in before]
            # The run's own connection and two helpers: the share is listed in
            # parallel. The first helper is past its logon and listing: kill it.
            if len(new) >= 3 and kill(new[1]):
                killed.append(f"run {attempt}: pid {new[1]} of {len(new)}")
                return True
            return False

        result = while_running(["upload", "p", "--json"], config, kill_a_listing_helper, 0.0005)
        if result.code == 0:
            sent = report_of(result)["files_transferred"]
            assert sent == LISTING_CHANGED, f"{sent} files sent, {killed}: {outcome(result)}"
        else:  # the kill hit a copy's connection past its retries, or the run's own
            assert "connection" in outcome(result).lower(), outcome(result)
            again = run_bounded(["upload", "p", "--json"], config, RUN_TIMEOUT)
            assert again.code == 0, outcome(again)
        on_share = tree_bytes(samba.share_path("backup") / remote_dir)
        check_problems(
            tree_differences(tree_bytes(local), on_share),
            f"the share after a kill while listing ({killed})",
        )
        killed.append(f"  -> exit {result.code}")
    print("\n".join(killed))  # shown with -rP: which process each kill hit, and the outcome
    assert any("pid" in k for k in killed), "no kill landed while several connections listed"
