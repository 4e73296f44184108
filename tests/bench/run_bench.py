#!/usr/bin/env python3
"""BackDown's transfer benchmark: BackDown vs smbclient vs a naive pysmb loop.

    python tests/bench/run_bench.py [--lan] [--runs 3] [--big-mib 1024] [--small-files 5000]
                                    [--snap-files 100000] [--snap-folders 2000]
                                    [--out FILE] [--workdir DIR] [--cases abcds] [--profile DIR]

Starts its own Samba server (tests/samba.py) in a temporary folder, makes the data sets and
times each client as a whole process (interpreter start and logon included), three runs each:

(a) one big file up and down;   (b) many 4 KiB files in 50 folders up and down;
(c) BackDown's upload again with nothing changed;   (d) again after touching 10 files;
(e) the peak RSS of every process of (a) and (b), from wait4() (through rusage_exec.c);
(s) snapshots and restore --as-of over 100,000 files in 2,000 nested folders: the snapshot's
size on the share, the --as-of plan's time (dry run), a no-change upload of that many files.

With --lan every client talks to the server through lanproxy (500 us each way, 1 Gbit/s
shared). A script, not a test: tests/bench/conftest.py keeps pytest out of this folder.
See tests/bench/README.md.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import filecmp
import hashlib
import importlib.util
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
NAIVE_SCRIPT = HERE / "naive_pysmb.py"
# The team's tools live beside the repository: ../shared/tools/lanproxy/.
DEFAULT_LANPROXY_SRC = REPO.parent / "shared" / "tools" / "lanproxy" / "lanproxy.c"
SHARE = "backup"
# The links lanproxy makes: (name, delay each way in us, Mbit/s shared by all connections).
# LAN: an office's switch; VPN: a coworker at home reaching the office.
LINKS = {"lan": ("LAN", 500, 1000), "vpn": ("VPN", 5000, 100)}
BACKDOWN, SMBCLIENT, NAIVE = "BackDown", "smbclient", "naive pysmb"
CLIENTS = (BACKDOWN, SMBCLIENT, NAIVE)
BACKDOWN_META = (".backdown", ".backdown-replaced")  # BackDown's own folders, not user data
TOUCHED = 10
RSS_TARGET_MB = 100.0
RERUN_TARGET_S = 1.0
# The snapshot issue's targets (restore as of a date): a no-change run of 5,000 files on
# loopback, snapshot writing included; the snapshot of 100,000 files on the share; planning
# a restore --as-of of 100,000 files.
NOCHANGE_TARGET_S = 0.5
NOCHANGE_TARGET_FILES = 5000
SNAP_TARGET_FILES = 100_000
SNAPSHOT_TARGET_MB = 10.0
AS_OF_TARGET_S = 5.0
AS_OF_RUNS = 3
# Office scale (100,000 files in 2,000 folders): a no-change re-run on loopback and on the
# LAN, its peak RSS (MiB), and the first upload's files per second.
SCALE_RERUN_TARGET_S = {None: 1.5, "lan": 3.0}
SCALE_FIRST_TARGET_FPS = {None: 2000.0, "lan": 1500.0}
SCALE_RSS_TARGET_MIB = 100.0
SNAP_CHANGED = 1000  # (s): files changed after the first upload, so versions hold some
SNAPSHOTS_DIR = (".backdown", "snapshots")
SIZES_SCRIPT = HERE / "snapshot_sizes.py"


class BenchError(RuntimeError):
    """A run failed or its result is wrong: the benchmark stops with this message."""


def _load_samba() -> ModuleType:
    """tests/samba.py, imported by path (tests/ is not a package)."""
    path = REPO / "tests" / "samba.py"
    spec = importlib.util.spec_from_file_location("backdown_bench_samba", path)
    if spec is None or spec.loader is None:
        raise BenchError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- processes


@dataclass
class Sample:
    """One timed process: wall seconds from spawn to reap, its peak RSS and CPU time."""

    label: str
    seconds: float
    rss_kib: int
    cpu_user: float
    cpu_sys: float
    stdout: str
    stderr: str
    load: float = 0.0  # 1-minute load average when it started: other work skews a run
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def cpu_s(self) -> float:
        return self.cpu_user + self.cpu_sys

    @property
    def rss_mb(self) -> float:
        return self.rss_kib * 1024 / 1e6


class Runner:
    """Runs one child process at a time, with a timeout, and measures it with os.wait4().

    With a launcher (rusage_exec.c, see there why) the peak RSS and CPU time are the ones
    the launcher got from wait4() on the real command; the wall time still spans the whole
    launcher process, which adds one fork and exec (about a millisecond).

    Each child gets a session of its own, so a Ctrl-C on the terminal reaches only the
    benchmark, which then kills the child's whole process group (kill_current).
    """

    def __init__(self, log_dir: Path, timeout: float) -> None:
        # Children run in the work folder: `python -m` puts the current folder first on
        # sys.path, and from the repository that would import backdown/ from the work tree
        # instead of the copy the benchmark measures.
        self.cwd = log_dir.parent
        self.log_dir = log_dir
        self.timeout = timeout
        self.launcher: Path | None = None  # rusage_exec, once built
        self._count = 0
        self._current: subprocess.Popen[bytes] | None = None

    def run(
        self, label: str, cmd: list[str], env: dict[str, str], cwd: Path | None = None
    ) -> Sample:
        self._count += 1
        slug = re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-")
        out_path = self.log_dir / f"{self._count:03d}-{slug}.out"
        err_path = self.log_dir / f"{self._count:03d}-{slug}.err"
        usage_path = self.log_dir / f"{self._count:03d}-{slug}.rusage"
        timed_out = threading.Event()
        spawned = cmd if self.launcher is None else [str(self.launcher), str(usage_path), *cmd]
        load = os.getloadavg()[0]
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            began = time.perf_counter()
            proc = subprocess.Popen(
                spawned,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=env,
                cwd=cwd or self.cwd,
                start_new_session=True,
            )
            self._current = proc
            timer = threading.Timer(self.timeout, self._expire, args=(proc, timed_out))
            timer.daemon = True
            timer.start()
            try:
                _, status, usage = os.wait4(proc.pid, 0)
            finally:
                timer.cancel()
            seconds = time.perf_counter() - began
        proc.returncode = os.waitstatus_to_exitcode(status)
        self._current = None
        stdout = out_path.read_text(errors="replace")
        stderr = err_path.read_text(errors="replace")
        if timed_out.is_set():
            raise BenchError(
                f"{label}: no result after {self.timeout:g} s, killed\n"
                f"command: {' '.join(cmd)}\n--- stderr ---\n{_tail(stderr)}"
            )
        if proc.returncode != 0:
            raise BenchError(
                f"{label}: exit code {proc.returncode}\ncommand: {' '.join(cmd)}\n"
                f"--- stderr ---\n{_tail(stderr)}\n--- stdout (end) ---\n{_tail(stdout, 20)}"
            )
        rss_kib, user, system = int(usage.ru_maxrss), usage.ru_utime, usage.ru_stime
        if self.launcher is not None:
            fields = usage_path.read_text().split()
            rss_kib, user, system = int(fields[0]), float(fields[1]), float(fields[2])
        return Sample(label, seconds, rss_kib, user, system, stdout, stderr, load)

    def _expire(self, proc: subprocess.Popen[bytes], flag: threading.Event) -> None:
        flag.set()
        _kill_group(proc.pid)

    def kill_current(self) -> None:
        proc, self._current = self._current, None
        if proc is not None:
            _kill_group(proc.pid)
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(proc.pid, 0)


def _kill_group(pgid: int) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.05)


def _tail(text: str, lines: int = 60) -> str:
    kept = text.strip().splitlines()[-lines:]
    return "\n".join(kept) if kept else "(empty)"


# --------------------------------------------------------------------------- data sets


@dataclass(frozen=True)
class DataSet:
    key: str  # "big" or "small": also the profile name and the remote folder's suffix
    path: Path
    files: int
    bytes: int
    dirs: int
    title: str


@dataclass(frozen=True)
class TreeCount:
    files: int
    bytes: int
    dirs: int


def count_tree(root: Path) -> TreeCount:
    """Files, bytes and folders under root, leaving out BackDown's own top-level folders."""
    files = size = dirs = 0
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == root:
            dirnames[:] = [d for d in dirnames if d not in BACKDOWN_META]
        dirs += len(dirnames)
        for name in filenames:
            files += 1
            size += os.lstat(os.path.join(dirpath, name)).st_size
    return TreeCount(files, size, dirs)


def make_big(root: Path, mib: int) -> DataSet:
    root.mkdir(parents=True)
    chunk = 4 << 20
    remaining = mib << 20
    with open(root / "big.bin", "wb") as f:
        while remaining:
            n = min(chunk, remaining)
            f.write(os.urandom(n))
            remaining -= n
    return DataSet("big", root, 1, mib << 20, 0, f"one {mib} MiB file")


def make_small(root: Path, files: int, folders: int, size: int = 4096) -> DataSet:
    root.mkdir(parents=True)
    folders = max(1, min(folders, files))
    for i in range(files):
        folder = root / f"d{i % folders:02d}"
        folder.mkdir(exist_ok=True)
        (folder / f"f{i // folders:04d}.bin").write_bytes(os.urandom(size))
    return DataSet(
        "small",
        root,
        files,
        files * size,
        folders,
        f"{files:,} files of {size // 1024} KiB in {folders} folders",
    )


# Words an office's folders and files are named with: English, German, French, Spanish,
# Nordic, Polish, Greek, Russian, Japanese and Chinese, with spaces, accents and non-Latin
# scripts (all NFC; nothing SMB refuses, so every name is stored as it is).
_WORDS = (
    "Projects", "Invoices", "Clients", "Archive", "Photos", "Reports", "Budget", "Minutes",
    "Meeting notes", "Contracts", "Templates", "Scans", "Drafts", "Final", "old", "misc",
    "Marketing", "HR", "Payroll", "Tax", "Quotes", "Offers", "Suppliers", "Website", "Logos",
    "Verträge", "Rechnungen", "Übersicht", "Angebote", "Kundenliste", "Steuererklärung",
    "Sonstiges", "Café", "Résumé", "Dossiers clients", "Bilan", "Fiche de paie", "Été",
    "Señales", "Presupuesto", "Año", "Ångström", "Øresund", "Kraków", "Łódź", "Zażółć",
    "Προσφορά", "Λογαριασμοί", "Отчёт", "Документы", "Счета", "東京", "報告書", "見積書",
    "議事録", "客户", "合同", "ÉQUIPE", "naïve", "Straße", "Müller GmbH", "Nordlicht",
)  # fmt: skip
_EXTS = (
    ".pdf", ".docx", ".xlsx", ".pptx", ".odt", ".txt", ".md", ".csv", ".jpg", ".jpeg", ".png",
    ".heic", ".eml", ".msg", ".zip", ".json", ".xml", ".py", ".mp3", ".dwg", ".ods", "",
)  # fmt: skip


def _name(rng: random.Random, longest: int) -> str:
    """A file or folder name people give: words, a date, a number, a copy marker."""
    parts = rng.sample(_WORDS, rng.choice((1, 1, 1, 2, 2, 3, 4)))
    if rng.random() < 0.3:
        parts.append(f"{rng.randint(2009, 2026)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}")
    if rng.random() < 0.25:
        parts.append(str(rng.randint(1, 999)))
    joiner = rng.choice((" ", " ", " ", "_", "-", " - "))
    name = joiner.join(parts)[:longest].strip(" -_.")
    if rng.random() < 0.05:
        name += " (1)"
    return name or "x"


def make_named_tree(root: Path, files: int, folders: int, seed: int = 9) -> DataSet:
    """files small files (0 to 32 KiB, most a few KiB) spread over exactly folders nested
    folders (1 to 6 deep, most 3 or 4), named like an office's: varied lengths, spaces,
    accents, other scripts. The same seed gives the same names and sizes (not bytes)."""
    rng = random.Random(seed)
    root.mkdir(parents=True)
    made: list[str] = []
    at_depth: dict[int, list[str]] = defaultdict(list)
    at_depth[0].append("")
    taken: dict[str, set[str]] = defaultdict(set)  # folder -> its children's names, casefolded
    while len(made) < folders:
        depth = rng.choices((1, 2, 3, 4, 5, 6), weights=(1, 10, 35, 35, 15, 4))[0]
        while not at_depth[depth - 1]:
            depth -= 1
        parent = rng.choice(at_depth[depth - 1])
        name = _name(rng, 32)
        if name.casefold() in taken[parent]:
            continue
        taken[parent].add(name.casefold())
        rel = f"{parent}/{name}" if parent else name
        (root / rel).mkdir()
        made.append(rel)
        at_depth[depth].append(rel)
    total = 0
    for _ in range(files):
        folder = rng.choice(made)
        while True:
            name = _name(rng, 80) + rng.choice(_EXTS)
            if name.casefold() not in taken[folder] and not name.startswith("~$"):
                break
        taken[folder].add(name.casefold())
        size = min(int(rng.expovariate(1 / 2500)), 32 * 1024)
        (root / folder / name).write_bytes(os.urandom(size))
        total += size
    return DataSet(
        "snap",
        root,
        files,
        total,
        folders,
        f"{files:,} small files in {folders:,} nested folders",
    )


# --------------------------------------------------------------------------- the benchmark


@dataclass
class Results:
    # (case, client, direction) -> samples, in run order
    samples: dict[tuple[str, str, str], list[Sample]] = field(
        default_factory=lambda: defaultdict(list)
    )
    rerun: list[Sample] = field(default_factory=list)  # (c)
    touched: list[Sample] = field(default_factory=list)  # (d)
    snap: SnapResults | None = None  # (s)


@dataclass
class SnapResults:
    """(s): the named tree's uploads, its first snapshot and the --as-of plans over it."""

    generate_s: float = 0.0  # writing the data set
    first: Sample | None = None  # the first upload, which writes the snapshot measured
    sizes: dict[str, Any] = field(default_factory=dict)  # snapshot_sizes.py's JSON
    disk_bytes: int = 0  # the snapshot file on the server's disk
    rerun: list[Sample] = field(default_factory=list)  # uploads again, nothing changed
    touched: list[Sample] = field(default_factory=list)  # again, TOUCHED files touched
    changed: Sample | None = None  # the upload after changing SNAP_CHANGED files
    versions: int = 0  # files in the versions area when --as-of plans
    as_of: list[Sample] = field(default_factory=list)  # download --as-of --dry-run --json
    plan_now: list[Sample] = field(default_factory=list)  # download --dry-run --json
    old_bytes_back: str = ""  # which changed file a real --as-of restore brought back
    took_s: float = 0.0  # the whole case

    @property
    def samples(self) -> list[Sample]:
        """Every timed run, in run order."""
        first = [self.first] if self.first else []
        changed = [self.changed] if self.changed else []
        plans = [s for pair in zip(self.plan_now, self.as_of, strict=False) for s in pair]
        return first + self.rerun + self.touched + changed + plans


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        base = Path(args.workdir).resolve() if args.workdir else Path(tempfile.gettempdir())
        base.mkdir(parents=True, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix="backdown-bench-", dir=base))
        os.chmod(self.work, 0o755)  # smbd reaches its shares as an unprivileged user
        self.log_dir = self.work / "logs"
        self.log_dir.mkdir()
        self.runner = Runner(self.log_dir, args.timeout)
        self.samba_mod: ModuleType | None = None
        self.server: Any = None
        self.proxy: subprocess.Popen[bytes] | None = None
        self.port = 0  # where the clients connect: smbd, or lanproxy in front of it
        self.config_dir = self.work / "config"
        self.results = Results()
        self.datasets: dict[str, DataSet] = {}
        self._smbd_baseline: set[int] = set()
        self.notes: list[str] = []
        self.load_before = os.getloadavg()
        # Others may edit backdown/ while this runs for half an hour: every run uses one copy.
        self.src = self.work / "src"
        self.source_digest = ""
        self.snap_profiles: list[str] = []  # (s) under --profile: sections for the summary

    # ----------------------------------------------------------------- set-up, clean-up

    def setup(self) -> bool:
        """Server, proxy, data sets, profiles. False if --lan was asked and cannot be had."""
        shutil.copytree(
            Path(self.args.backdown_src),
            self.src / "backdown",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        # Byte-compiled, as pip installs a package: with PYTHONDONTWRITEBYTECODE set (as on
        # some machines) every run would otherwise compile BackDown's source again, 0.3 s
        # of each process that no installed copy pays.
        if not compileall.compile_dir(self.src / "backdown", quiet=1):
            raise BenchError(f"could not byte-compile the copy of backdown in {self.src}")
        self.source_digest = source_digest(self.src / "backdown")
        probe = subprocess.run(
            [sys.executable, "-c", "import backdown; print(backdown.__file__)"],
            env=self._env(),
            cwd=self.runner.cwd,
            capture_output=True,
            text=True,
            check=False,
        )
        if not probe.stdout.strip().startswith(str(self.src)):
            raise BenchError(
                f"the clients would import backdown from {probe.stdout.strip() or '?'}, not "
                f"from the copy in {self.src}:\n{probe.stderr}"
            )
        self.runner.launcher = self._build_launcher()
        lanproxy = None
        if self.args.link:
            lanproxy = self._build_lanproxy()
            if lanproxy is None:
                return False
        self.samba_mod = _load_samba()
        reason = self.samba_mod.smbd_missing_reason()
        if reason:
            raise BenchError(f"cannot run the Samba server: {reason}")
        say("starting smbd ...")
        self.server = self.samba_mod.SambaServer(
            self.work / "samba", signing="mandatory" if self.args.signing else "auto"
        )
        self.server.start()
        self.port = self.server.port
        time.sleep(0.5)  # let the log-on check's connection go
        self._smbd_baseline = set(self._smbd_processes())
        if lanproxy is not None:
            self._start_proxy(lanproxy)
        say("writing the data sets ...")
        data = self.work / "data"
        cases = self.args.cases
        if "a" in cases:
            self.datasets["big"] = make_big(data / "big", self.args.big_mib)
        if set("bcd") & set(cases):
            self.datasets["small"] = make_small(
                data / "small", self.args.small_files, self.args.folders
            )
        for ds in self.datasets.values():
            self._add_profile(ds)
        os.sync()  # the first run must not pay for writing the data sets back to disk
        return True

    def _compile(self, src: Path, name: str, *flags: str) -> tuple[Path | None, str]:
        """Compile one C file into the work folder: (binary, "") or (None, why not)."""
        cc = shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            return None, "no C compiler (cc)"
        out = self.work / "bin" / name
        out.parent.mkdir(exist_ok=True)
        proc = subprocess.run(
            [cc, "-O2", *flags, "-o", str(out), str(src)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            return None, f"{cc} {src.name} failed:\n{proc.stderr}"
        return out, ""

    def _build_launcher(self) -> Path | None:
        launcher, why = self._compile(HERE / "rusage_exec.c", "rusage_exec")
        if launcher is None:
            self.notes.append(
                f"rusage_exec could not be built ({why.strip()}): every peak RSS below is at "
                "least the benchmark's own RSS when it started the process"
            )
            say(f"warning: {self.notes[-1]}")
            return None
        floor = self.work / "floor.rusage"
        subprocess.run([str(launcher), str(floor), "true"], check=True)
        kib = int(floor.read_text().split()[0])
        self.notes.append(
            f"peak RSS measured through rusage_exec; a process that does nothing shows "
            f"{kib * 1024 / 1e6:.1f} MB"
        )
        return launcher

    def _build_lanproxy(self) -> Path | None:
        src = Path(self.args.lanproxy_src)
        if not src.is_file():
            say(f"lanproxy source not found at {src}: skipping the LAN part (--lanproxy-src PATH)")
            return None
        binary, why = self._compile(src, "lanproxy", "-pthread")
        if binary is None:
            say(f"cannot build lanproxy ({why.strip()}): skipping the LAN part")
        return binary

    def _start_proxy(self, binary: Path) -> None:
        assert self.samba_mod is not None
        port = self.samba_mod.free_port()
        log = open(self.log_dir / "lanproxy.log", "wb")  # noqa: SIM115 - lives with the proxy
        self.proxy = subprocess.Popen(
            [str(binary), "--listen", f"127.0.0.1:{port}", "--connect"]
            + [f"127.0.0.1:{self.server.port}", "--delay-us", str(LINKS[self.args.link][1])]
            + ["--rate-mbit", str(LINKS[self.args.link][2]), "--quiet"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 10
        while True:
            if self.proxy.poll() is not None:
                text = (self.log_dir / "lanproxy.log").read_text(errors="replace")
                raise BenchError(f"lanproxy exited with {self.proxy.returncode}:\n{text}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise BenchError(f"lanproxy does not listen on 127.0.0.1:{port}") from None
                time.sleep(0.05)
        self.port = port
        say(f"lanproxy on 127.0.0.1:{port} -> smbd on {self.server.port}")

    def _smbd_processes(self) -> dict[int, list[str]]:
        """pid -> /proc/pid/stat fields after "(comm)", for our smbd and its children."""
        main = self.server._proc.pid if self.server._proc is not None else -1
        found = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[-1].split()
            except OSError:
                continue
            if int(entry) == main or int(fields[1]) == main:
                found[int(entry)] = fields
        return found

    def server_cpu(self, wait_for_exit: bool = False) -> float:
        """CPU seconds our smbd has used so far, the children it has reaped included.

        With wait_for_exit, first wait (at most 5 s) until the children that served the
        last client have exited and been reaped, so their time is counted.
        """
        deadline = time.monotonic() + 5
        while wait_for_exit and time.monotonic() < deadline:
            if set(self._smbd_processes()) <= self._smbd_baseline:
                break
            time.sleep(0.02)
        ticks = os.sysconf("SC_CLK_TCK")
        # fields[11:15]: utime, stime, cutime, cstime (stat fields 14 to 17)
        return sum(
            sum(int(x) for x in fields[11:15]) for fields in self._smbd_processes().values()
        ) / float(ticks)

    def timed(self, label: str, cmd: list[str], env: dict[str, str]) -> Sample:
        """runner.run, and the server's CPU time spent on it (extra["server_cpu"])."""
        before = self.server_cpu(wait_for_exit=True)
        sample = self.runner.run(label, cmd, env)
        sample.extra["server_cpu"] = self.server_cpu(wait_for_exit=True) - before
        return sample

    def _add_profile(self, ds: DataSet) -> None:
        cmd = [sys.executable, "-m", "backdown", "--config-dir", str(self.config_dir)]
        cmd += ["profile", "add", ds.key, "--local", str(ds.path), "--server", "127.0.0.1"]
        cmd += ["--port", str(self.port), "--share", SHARE, "--remote-folder", self.remote(ds)]
        cmd += ["--user", self.server.user]
        cmd += ["--protocol", self.args.protocol, "--encrypt", "yes" if self.args.encrypt else "no"]
        self.runner.run(f"profile add {ds.key}", cmd, self._env())

    def cleanup(self) -> None:
        self.runner.kill_current()
        if self.proxy is not None:
            _kill_group(self.proxy.pid)
            with contextlib.suppress(Exception):
                self.proxy.wait(5)
            self.proxy = None
        if self.server is not None:
            try:
                self.server.stop()
            except Exception as exc:
                say(f"warning: stopping smbd: {exc}")
            self.server = None
        if self.args.keep:
            say(f"kept the work folder {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)

    # ----------------------------------------------------------------- helpers

    def _env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BACKDOWN_")}
        env["PYTHONPATH"] = str(self.src) + (
            os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
        )
        env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
        env.update(extra)
        return env

    def remote(self, ds: DataSet) -> str:
        return f"bench_{ds.key}"

    def remote_disk(self, ds: DataSet) -> Path:
        return Path(self.server.share_path(SHARE)) / self.remote(ds)

    def reset_remote(self, ds: DataSet) -> None:
        """The remote folder, deleted on the server's disk and made again, empty."""
        path = self.remote_disk(ds)
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir()
        self.server.chown(path)

    def fresh_local(self, name: str) -> Path:
        path = self.work / "restore" / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def check_count(self, what: str, root: Path, ds: DataSet) -> None:
        got = count_tree(root)
        want = TreeCount(ds.files, ds.bytes, ds.dirs)
        if got != want:
            raise BenchError(
                f"{what}: {root} holds {got.files} files, {got.bytes} bytes, {got.dirs} folders; "
                f"expected {want.files} files, {want.bytes} bytes, {want.dirs} folders"
            )

    def snapshot_files(self, ds: DataSet) -> list[Path]:
        """The snapshot files BackDown has written for ds, on the server's disk, oldest first
        (their names start with the UTC time)."""
        folder = self.remote_disk(ds).joinpath(*SNAPSHOTS_DIR)
        return sorted(folder.glob("*.json.gz")) if folder.is_dir() else []

    # ----------------------------------------------------------------- the clients

    def command(
        self, client: str, direction: str, ds: DataSet, local: Path
    ) -> tuple[list[str], dict[str, str]]:
        """Command line and environment for one client moving ds up (from local) or down."""
        remote = self.remote(ds)
        password = self.server.password
        if client == BACKDOWN:
            base = [sys.executable, "-m", "backdown", "--config-dir", str(self.config_dir)]
            env = self._env(BACKDOWN_PASSWORD=password)
            if direction == "up":
                return [*base, "upload", ds.key, "--json"], env
            return [*base, "download", ds.key, "--to", str(local), "--json"], env
        if client == NAIVE:
            cmd = [sys.executable, str(NAIVE_SCRIPT), direction, "--port", str(self.port)]
            cmd += ["--share", SHARE, "--remote", remote, "--local", str(local)]
            cmd += ["--user", self.server.user, "--timeout", str(self.args.timeout)]
            return cmd, self._env(BENCH_SMB_PASSWORD=password)
        if client == SMBCLIENT:
            if ds.key == "big":
                verb = "put" if direction == "up" else "get"
                steps = [f'{verb} "{p.name}"' for p in sorted(ds.path.iterdir())]
            else:
                steps = ["recurse ON", "mput *" if direction == "up" else "mget *"]
            script = "; ".join(["prompt OFF", f'lcd "{local}"', f'cd "{remote}"', *steps])
            cmd = [_tool("smbclient"), f"//127.0.0.1/{SHARE}", "-p", str(self.port)]
            cmd += ["-A", str(self.server.auth_file), "-s", str(self.server.conf_path)]
            return [*cmd, "-c", script], self._env()
        raise ValueError(client)

    def transfer(self, case: str, client: str, direction: str, ds: DataSet, run: int) -> Sample:
        """One timed up- or download, checked: nothing dropped, every byte arrived."""
        label = f"({case}) {client} {'upload' if direction == 'up' else 'download'} run {run + 1}"
        if direction == "up":
            self.reset_remote(ds)
            local = ds.path
        else:
            local = self.fresh_local(f"{case}-{client.replace(' ', '-')}")
        cmd, env = self.command(client, direction, ds, local)
        sample = self.timed(label, cmd, env)
        self._check_output(client, sample, expected=ds.files)
        self.check_count(label, self.remote_disk(ds) if direction == "up" else local, ds)
        self.results.samples[(case, client, direction)].append(sample)
        return sample

    def _check_output(self, client: str, sample: Sample, expected: int | None) -> None:
        if client == BACKDOWN:
            report = _last_json(sample.stdout)
            if report is None:
                raise BenchError(f"{sample.label}: no JSON on stdout:\n{_tail(sample.stdout)}")
            if not report.get("ok", False):
                raise BenchError(f"{sample.label}: not ok: {json.dumps(report)}")
            sample.extra["engine_s"] = float(report.get("seconds", 0.0))
            sample.extra["files_transferred"] = int(report.get("files_transferred", -1))
            got = sample.extra["files_transferred"]
        elif client == NAIVE:
            report = _last_json(sample.stdout) or {}
            got = int(report.get("files", -1))
        else:
            text = sample.stdout + sample.stderr
            errors = sorted(set(re.findall(r"NT_STATUS_[A-Z_]+", text)))
            if errors:
                raise BenchError(
                    f"{sample.label}: smbclient reported {', '.join(errors)}\n{_tail(text)}"
                )
            got = expected
        if expected is not None and got != expected:
            raise BenchError(f"{sample.label}: moved {got} files, expected {expected}")

    # ----------------------------------------------------------------- the cases

    def run_transfers(self, case: str, ds: DataSet) -> None:
        """(a) or (b): every client up then down, runs times, the order rotating each run."""
        for run in range(self.args.runs):
            order = CLIENTS[run % 3 :] + CLIENTS[: run % 3]
            for client in order:
                up = self.transfer(case, client, "up", ds, run)
                down = self.transfer(case, client, "down", ds, run)
                restored = self.work / "restore" / f"{case}-{client.replace(' ', '-')}"
                if client == BACKDOWN and run == 0:
                    say(f"  comparing BackDown's restore of {ds.title} byte for byte ...")
                    compare_trees(ds.path, restored)
                    sample_note = "restored byte-identical"
                    up.extra["checked"] = down.extra["checked"] = sample_note
                shutil.rmtree(restored, ignore_errors=True)
                shutil.rmtree(self.remote_disk(ds), ignore_errors=True)
                os.sync()  # the next run starts with nothing left to write back
                say(
                    f"  ({case}) run {run + 1}/{self.args.runs} {client:<12} "
                    f"up {up.seconds:7.2f} s {up.rss_mb:6.1f} MB   "
                    f"down {down.seconds:7.2f} s {down.rss_mb:6.1f} MB"
                )

    def run_reruns(self, ds: DataSet) -> None:
        """(c) and (d): BackDown's upload again over an up-to-date copy of the small set."""
        self.reset_remote(ds)
        cmd, env = self.command(BACKDOWN, "up", ds, ds.path)
        first = self.runner.run("(c) set-up: first BackDown upload", cmd, env)
        self._check_output(BACKDOWN, first, expected=ds.files)
        self.check_count(first.label, self.remote_disk(ds), ds)
        os.sync()
        if "c" in self.args.cases:
            for run in range(self.args.runs):
                before = len(self.snapshot_files(ds))
                sample = self.timed(
                    f"(c) BackDown re-run, nothing changed, run {run + 1}", cmd, env
                )
                self._check_output(BACKDOWN, sample, expected=None)
                # Each successful upload writes a snapshot, a no-change one too: that is
                # what the 0.5 s target is about, so count it.
                sample.extra["snapshots_written"] = len(self.snapshot_files(ds)) - before
                self.results.rerun.append(sample)
                say(
                    f"  (c) run {run + 1}/{self.args.runs} {sample.seconds:6.2f} s, "
                    f"files_transferred {sample.extra['files_transferred']}, "
                    f"snapshots written {sample.extra['snapshots_written']}"
                )
        if "d" in self.args.cases:
            files = sorted(p for p in ds.path.rglob("*") if p.is_file())
            for run in range(self.args.runs):
                picked = _touch(files, run, self.args.runs)
                sample = self.timed(
                    f"(d) BackDown re-run, {TOUCHED} touched, run {run + 1}", cmd, env
                )
                self._check_output(BACKDOWN, sample, expected=None)
                self.check_count(sample.label, self.remote_disk(ds), ds)
                sample.extra["touched"] = len(set(picked))
                self.results.touched.append(sample)
                say(
                    f"  (d) run {run + 1}/{self.args.runs} {sample.seconds:6.2f} s, "
                    f"files_transferred {sample.extra['files_transferred']}"
                )
        shutil.rmtree(self.remote_disk(ds), ignore_errors=True)

    def run_snapshots(self) -> None:
        """(s): snapshots and restore --as-of over --snap-files files in --snap-folders
        nested folders with office-like names.

        First upload (writes the snapshot measured: its bytes on the server's disk), the
        uploads again with nothing changed, then SNAP_CHANGED files changed and uploaded
        (their old copies go to the versions area), then `download --as-of <first snapshot>
        --dry-run --json` AS_OF_RUNS times: a plan that takes each file from the current
        copy or from a version. Last, one real --as-of restore of a changed file must bring
        its old bytes back.
        """
        began = time.perf_counter()
        args = self.args
        snap = self.results.snap = SnapResults()
        say(f"  writing {args.snap_files:,} files in {args.snap_folders:,} folders ...")
        ds = make_named_tree(self.work / "data" / "snap", args.snap_files, args.snap_folders)
        snap.generate_s = time.perf_counter() - began
        self.datasets["snap"] = ds
        self._add_profile(ds)
        os.sync()
        say(f"  {ds.files:,} files, {ds.bytes / 1e6:.1f} MB in {snap.generate_s:.1f} s; uploading")
        self.reset_remote(ds)
        cmd, env = self.command(BACKDOWN, "up", ds, ds.path)
        first = snap.first = self.timed("(s) first BackDown upload", cmd, env)
        self._check_output(BACKDOWN, first, expected=ds.files)
        self.check_count(first.label, self.remote_disk(ds), ds)
        written = self.snapshot_files(ds)
        if len(written) != 1:
            raise BenchError(f"{first.label}: {len(written)} snapshot files on the share, not 1")
        snap.disk_bytes = written[0].stat().st_size
        sizes = self.runner.run(
            "(s) snapshot sizes", [sys.executable, str(SIZES_SCRIPT), str(written[0])], self._env()
        )
        snap.sizes = _last_json(sizes.stdout) or {}
        if snap.sizes.get("files") != ds.files or snap.sizes.get("dirs") != ds.dirs:
            raise BenchError(
                f"the first snapshot lists {snap.sizes.get('files')} files and "
                f"{snap.sizes.get('dirs')} folders, not {ds.files} and {ds.dirs}"
            )
        say(
            f"  (s) first upload {first.seconds:.1f} s, {first.rss_mb:.1f} MB; snapshot "
            f"{snap.disk_bytes / 1e6:.2f} MB on the share"
        )
        os.sync()
        for run in range(args.runs):
            sample = self.timed(f"(s) BackDown re-run, nothing changed, run {run + 1}", cmd, env)
            self._check_output(BACKDOWN, sample, expected=0)
            sample.extra["snapshots_written"] = len(self.snapshot_files(ds)) - 1 - run
            snap.rerun.append(sample)
            say(
                f"  (s) re-run {run + 1}/{args.runs} {sample.seconds:6.2f} s, "
                f"{sample.rss_mb:.1f} MB, snapshots written {sample.extra['snapshots_written']}"
            )
        original = self._change_files(ds, SNAP_CHANGED)
        changed = snap.changed = self.timed(
            f"(s) BackDown upload after changing {len(original)} files", cmd, env
        )
        self._check_output(BACKDOWN, changed, expected=len(original))
        self.check_count(changed.label, self.remote_disk(ds), ds)
        versions = self.remote_disk(ds) / ".backdown" / "versions"
        snap.versions = count_tree(versions).files if versions.is_dir() else 0
        if snap.versions != len(original):
            raise BenchError(f"{changed.label}: {snap.versions} files in the versions area")
        say(f"  (s) {len(original)} files changed and uploaded in {changed.seconds:.1f} s")
        os.sync()
        as_of = str(snap.sizes["id"])
        target = self.work / "restore" / "s-as-of"  # a dry run must not make it
        base = [sys.executable, "-m", "backdown", "--config-dir", str(self.config_dir)]
        plan_cmd = [*base, "download", ds.key, "--to", str(target), "--as-of", as_of]
        plan_cmd += ["--dry-run", "--json"]
        now_cmd = plan_cmd[: plan_cmd.index("--as-of")] + ["--dry-run", "--json"]
        for run in range(AS_OF_RUNS):
            # The plan of the folder as it is now, each time before the --as-of one: the same
            # walk of the share, so the difference is what --as-of adds.
            sample = self.timed(f"(s) download --dry-run (now), run {run + 1}", now_cmd, env)
            self._check_plan(sample, ds, None, target, 0)
            snap.plan_now.append(sample)
            sample = self.timed(f"(s) download --as-of --dry-run, run {run + 1}", plan_cmd, env)
            self._check_plan(sample, ds, as_of, target, len(original))
            snap.as_of.append(sample)
            say(
                f"  (s) plan {run + 1}/{AS_OF_RUNS}: now {snap.plan_now[-1].seconds:6.2f} s, "
                f"--as-of {sample.seconds:6.2f} s, {sample.rss_mb:.1f} MB, "
                f"files_new {sample.extra['files_new']:,}, "
                f"from versions {sample.extra['from_versions']:,}"
            )
        snap.old_bytes_back = self._restore_old_bytes(ds, as_of, base, env, original)
        # Last: each touched file's upload moves its old copy into the versions area,
        # which the --as-of checks above count.
        self._touch_and_upload(ds, cmd, env, snap)
        if args.profile:
            out_dir = Path(args.profile).resolve()
            self.snap_profiles.append(self.profile_one("s-as-of-plan", plan_cmd, env, out_dir))
            self.snap_profiles.append(self.profile_one("s-rerun", cmd, env, out_dir))
        shutil.rmtree(self.remote_disk(ds), ignore_errors=True)
        snap.took_s = time.perf_counter() - began
        say(f"  (s) took {snap.took_s / 60:.1f} min")

    def _change_files(self, ds: DataSet, count: int) -> dict[Path, bytes]:
        """New bytes (same size) and a later time for count files spread over the tree;
        returns their old bytes."""
        files = sorted(p for p in ds.path.rglob("*") if p.is_file())
        step = max(1, len(files) // count)
        original: dict[Path, bytes] = {}
        for path in files[::step][:count]:
            st = path.stat()
            original[path] = path.read_bytes()
            path.write_bytes(os.urandom(st.st_size))
            when = max(time.time(), st.st_mtime + 10)  # beyond --modify-window for sure
            os.utime(path, (when, when))
        os.sync()
        return original

    def _touch_and_upload(
        self, ds: DataSet, cmd: list[str], env: dict[str, str], snap: SnapResults
    ) -> None:
        """(s): --runs uploads after touching TOUCHED files each; exactly those travel."""
        files = sorted(p for p in ds.path.rglob("*") if p.is_file())
        for run in range(self.args.runs):
            picked = _touch(files, run, self.args.runs)
            sample = self.timed(f"(s) BackDown re-run, {TOUCHED} touched, run {run + 1}", cmd, env)
            self._check_output(BACKDOWN, sample, expected=len(set(picked)))
            snap.touched.append(sample)
            say(f"  (s) touched re-run {run + 1}/{self.args.runs} {sample.seconds:6.2f} s")
        os.sync()

    def _check_plan(
        self, sample: Sample, ds: DataSet, as_of: str | None, target: Path, from_versions: int
    ) -> None:
        """A dry run's plan into an empty folder: every file new (as of the snapshot, or now),
        from_versions of them from the versions area, the snapshot named in a note; nothing
        made."""
        self._check_output(BACKDOWN, sample, expected=0)
        report = _last_json(sample.stdout) or {}
        sample.extra["files_new"] = int(report.get("files_new", -1))
        # With --as-of each planned file says where its content comes from:
        # "new (from current)" or "new (from version <stamp>)".
        actions = [str(step.get("action", "")) for step in report.get("plan", [])]
        sample.extra["from_versions"] = sum("(from version " in a for a in actions)
        problems = []
        if not report.get("dry_run"):
            problems.append("not reported as a dry run")
        if report.get("files_new") != ds.files or report.get("files_changed") != 0:
            problems.append(
                f"plans {report.get('files_new')} new and {report.get('files_changed')} "
                f"changed files, not {ds.files} new"
            )
        if sample.extra["from_versions"] != from_versions:
            problems.append(
                f"{sample.extra['from_versions']} files from versions, not {from_versions}"
            )
        if as_of and not any(as_of in note for note in report.get("notes", [])):
            problems.append(f"no note says snapshot {as_of} is used: {report.get('notes')}")
        if target.exists():
            problems.append(f"{target} was made")
        if problems:
            raise BenchError(f"{sample.label}: " + "; ".join(problems))

    def _restore_old_bytes(
        self,
        ds: DataSet,
        as_of: str,
        base: list[str],
        env: dict[str, str],
        original: dict[Path, bytes],
    ) -> str:
        """Restore one changed file --as-of the first snapshot (from the versions area):
        it must come back with its bytes from before the change. Returns its path."""
        path, old = next(((p, b) for p, b in original.items() if b), next(iter(original.items())))
        rel = path.relative_to(ds.path).as_posix()
        target = self.fresh_local("s-as-of-one")
        cmd = [*base, "download", ds.key, "--to", str(target), "--as-of", as_of]
        sample = self.runner.run(
            "(s) restore one changed file --as-of", [*cmd, "--path", rel, "--json"], env
        )
        self._check_output(BACKDOWN, sample, expected=1)
        got = target / rel
        if not got.is_file() or got.read_bytes() != old:
            raise BenchError(
                f"{sample.label}: {got} does not hold the bytes from before the change"
            )
        if path.read_bytes() == old:
            raise BenchError(f"{sample.label}: {path} was not changed")
        shutil.rmtree(target, ignore_errors=True)
        return rel

    # ----------------------------------------------------------------- profiles

    def run_profiles(self, out_dir: Path) -> str:
        """BackDown once more per case under py-spy (cProfile without it); a markdown summary.

        Not timed: it only shows where a run spends its time, on the same server and code.
        """
        spy = shutil.which("py-spy")
        tool = "py-spy" if spy else "cProfile"
        say(f"profiling BackDown with {tool} into {out_dir} ...")
        jobs: list[tuple[str, DataSet, str]] = []
        if "small" in self.datasets and "b" in self.args.cases:
            ds = self.datasets["small"]
            jobs += [("b-upload", ds, "up"), ("b-download", ds, "down")]
            if "c" in self.args.cases:
                jobs.append(("c-rerun", ds, "rerun"))
        if "big" in self.datasets:
            ds = self.datasets["big"]
            jobs += [("a-upload", ds, "up"), ("a-download", ds, "down")]
        sections = []
        for name, ds, kind in jobs:
            local = ds.path
            if kind == "up":
                self.reset_remote(ds)
            elif kind == "down":
                local = self.fresh_local(f"profile-{name}")
            cmd, env = self.command(BACKDOWN, "down" if kind == "down" else "up", ds, local)
            sections.append(self.profile_one(name, cmd, env, out_dir))
            if kind == "down":
                shutil.rmtree(local, ignore_errors=True)
            os.sync()
        sections += self.snap_profiles  # (s), taken while its data was on the share
        for ds in self.datasets.values():
            shutil.rmtree(self.remote_disk(ds), ignore_errors=True)
        mode = link_name(self.args)
        head = [
            f"# Where BackDown's time goes: {mode}",
            "",
            f"One run per case, code sha256 {self.source_digest}, same server and data as the "
            f"timed runs. Tool: {tool}"
            + (
                f" (`record --idle --threads --nonblocking --rate {PROFILE_RATE}`: samples of "
                "every thread, "
                "waiting included, so a thread's samples add up to its wall time). "
                "Seconds = samples / rate. Inclusive: time with the function anywhere on the "
                "stack; self: time with it on top (where the thread actually was)."
                if spy
                else " (main thread only: cProfile does not see the worker threads)."
            ),
            f"Raw data: {out_dir}.",
            "",
        ]
        return "\n".join(head + sections)

    def profile_one(self, name: str, cmd: list[str], env: dict[str, str], out_dir: Path) -> str:
        """One BackDown run under py-spy (cProfile without it): its markdown section."""
        out_dir.mkdir(parents=True, exist_ok=True)
        spy = shutil.which("py-spy")
        if spy:
            data = out_dir / f"{name}.collapsed.txt"
            wrapped = [spy, "record", "--idle", "--threads", "--nonblocking"]
            wrapped += ["--rate", str(PROFILE_RATE)]
            wrapped += ["--format", "raw", "--output", str(data), "--", *cmd]
        else:
            data = out_dir / f"{name}.prof"
            wrapped = [cmd[0], "-m", "cProfile", "-o", str(data), *cmd[1:]]
        sample = self.runner.run(f"profile {name}", wrapped, env)
        self._check_output(BACKDOWN, sample, expected=None)
        title = (
            f"### {name}: {sample.seconds:.2f} s under {'py-spy' if spy else 'cProfile'} "
            f"(BackDown's own {sample.extra['engine_s']:.2f} s, "
            f"files_transferred {sample.extra['files_transferred']})"
        )
        body = summarize_collapsed(data) if spy else summarize_pstats(data)
        return "\n".join([title, "", *body, ""])

    def run(self) -> None:
        cases = self.args.cases
        if "a" in cases:
            say(f"(a) {self.datasets['big'].title}, up and down, {self.args.runs} runs")
            self.run_transfers("a", self.datasets["big"])
        if "b" in cases:
            say(f"(b) {self.datasets['small'].title}, up and down, {self.args.runs} runs")
            self.run_transfers("b", self.datasets["small"])
        if "c" in cases or "d" in cases:
            say("(c)/(d) BackDown upload re-runs over the small set")
            self.run_reruns(self.datasets["small"])
        if "s" in cases:
            say("(s) snapshots and --as-of planning over a big named tree")
            self.run_snapshots()


PROFILE_RATE = 250  # py-spy samples per second
# Frames that only carry the stack (interpreter start, thread start-up, imports' machinery).
_PLUMBING = re.compile(
    r"<frozen |threading\.py|runpy|^_run_module|^_run_code|^<module> \(backdown/__main__"
)


def summarize_collapsed(path: Path, top: int = 22) -> list[str]:
    """Per-thread wall time, top inclusive and top self functions from py-spy raw output."""
    threads: dict[str, int] = defaultdict(int)
    roles: dict[str, str] = {}
    inclusive: dict[tuple[str, str], int] = defaultdict(int)
    self_time: dict[tuple[str, str], int] = defaultdict(int)
    # A thread's role shows only on some of its stacks, so first read them all.
    records: list[tuple[str, list[str], str, int]] = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        label = frames.pop(0) if frames and frames[0].startswith("thread") else "thread (?)"
        # "thread (ID)", later "thread (ID): NAME" once py-spy has seen the name: key on ID.
        thread = label.split(")", 1)[0] + ")"
        joined = ";".join(frames)
        if "_run_module_as_main" in joined or "MainThread" in label:
            roles[thread] = "main"
        elif "_worker" in joined or "_worker" in label:
            roles.setdefault(thread, "worker")
        threads[thread] += n
        names = [re.sub(r":\d+\)$", ")", f) for f in frames if not _PLUMBING.search(f)]
        records.append((thread, names, frames[-1] if frames else "?", n))
    for thread, names, leaf, n in records:
        role = roles.get(thread, "other")
        for name in dict.fromkeys(names):
            inclusive[(role, name)] += n
        self_time[(role, leaf)] += n
    rate = float(PROFILE_RATE)
    by_role: dict[str, list[int]] = defaultdict(list)
    for thread, n in threads.items():
        by_role[roles.get(thread, "other")].append(n)
    out = [
        "threads (wall s each): "
        + "; ".join(
            f"{role} x{len(ns)}: {', '.join(f'{n / rate:.2f}' for n in ns)}"
            for role, ns in sorted(by_role.items())
        ),
        "",
        "| inclusive s | thread | function |",
        "|--:|---|---|",
    ]
    for (role, name), n in sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]:
        out.append(f"| {n / rate:.2f} | {role} | `{name}` |")
    out += ["", "| self s | thread | where |", "|--:|---|---|"]
    for (role, name), n in sorted(self_time.items(), key=lambda kv: -kv[1])[: top // 2]:
        out.append(f"| {n / rate:.2f} | {role} | `{name}` |")
    return out


def summarize_pstats(path: Path, top: int = 25) -> list[str]:
    import io
    import pstats

    buf = io.StringIO()
    pstats.Stats(str(path), stream=buf).sort_stats("cumulative").print_stats(top)
    return ["```", buf.getvalue().strip(), "```"]


def compare_trees(a: Path, b: Path) -> None:
    """Every file under a is in b with the same bytes (b may hold BackDown's own folders)."""
    for dirpath, _, filenames in os.walk(a):
        rel = os.path.relpath(dirpath, a)
        for name in filenames:
            left = os.path.join(dirpath, name)
            right = os.path.join(b, rel, name)
            if not os.path.isfile(right):
                raise BenchError(f"restore check: {right} is missing")
            if os.path.getsize(left) > (64 << 20):
                same = subprocess.run(["cmp", "-s", left, right], check=False).returncode == 0
            else:
                same = filecmp.cmp(left, right, shallow=False)
            if not same:
                raise BenchError(f"restore check: {right} differs from {left}")


def _last_json(text: str) -> dict[str, Any] | None:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


def _tool(name: str) -> str:
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/usr/local/sbin:/sbin"
    return shutil.which(name, path=path) or name


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the report


def _cmd_output(cmd: list[str]) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    return (
        (proc.stdout or proc.stderr).strip().splitlines()[0]
        if (proc.stdout or proc.stderr)
        else "?"
    )


def machine_lines(bench: Bench) -> list[str]:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
        mem = f"{kib / (1 << 20):.1f} GiB"
    try:
        from importlib.metadata import version

        pysmb = version("pysmb")
    except Exception:
        pysmb = "?"
    return [
        f"- machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {model}, "
        f"{mem} RAM, {platform.system()} {platform.release()}",
        f"- python {platform.python_version()}, pysmb {pysmb}, "
        f"smbclient {_cmd_output([_tool('smbclient'), '--version'])}, "
        f"smbd {_cmd_output([_tool('smbd'), '--version'])}",
        f"- backdown {_package_version(bench.src / 'backdown')}: a copy of backdown/ taken at "
        f"the start (sha256 of its .py files {bench.source_digest})"
        + (
            ""
            if source_digest(Path(bench.args.backdown_src)) == bench.source_digest
            else f"; {_shown(Path(bench.args.backdown_src))} has changed since"
        ),
    ]


def _shown(path: Path) -> str:
    """A path as the report names it: relative to the repository when inside it."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return path.name


def source_digest(package: Path) -> str:
    """A short hash of a package's .py files, to tell which code a report measured."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def _package_version(package: Path) -> str:
    text = (package / "__init__.py").read_text()
    found = re.search(r"__version__\s*=\s*[\"']([^\"']+)", text)
    return found.group(1) if found else "?"


def _med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _fmt(x: float, digits: int = 2) -> str:
    return "n/a" if x != x else f"{x:,.{digits}f}"


class Report:
    def __init__(self, bench: Bench, began: float) -> None:
        self.b = bench
        self.r = bench.results
        self.began = began
        self.targets: list[tuple[str, str, bool | None]] = []

    def secs(self, case: str, client: str, direction: str) -> float:
        return _med([s.seconds for s in self.r.samples.get((case, client, direction), [])])

    def rss(self, case: str, client: str, direction: str) -> float:
        return _med([s.rss_mb for s in self.r.samples.get((case, client, direction), [])])

    def cpu(self, case: str, client: str, direction: str) -> float:
        return _med([s.cpu_s for s in self.r.samples.get((case, client, direction), [])])

    def server_cpu(self, case: str, client: str, direction: str) -> float:
        samples = self.r.samples.get((case, client, direction), [])
        return _med([s.extra.get("server_cpu", float("nan")) for s in samples])

    def render(self) -> str:
        b, args = self.b, self.b.args
        if args.link:
            name, delay_us, mbit = LINKS[args.link]
            mode = (
                f"{name}: every client through lanproxy, {delay_us} us each way "
                f"({2 * delay_us / 1000:g} ms round trip), {mbit} Mbit/s shared"
            )
        else:
            mode = "loopback: every client straight to smbd on 127.0.0.1"
        load_after = os.getloadavg()
        command = " ".join(["python", "tests/bench/run_bench.py", *sys.argv[1:]])
        out = [
            f"# BackDown benchmark: {link_name(args)}"
            + (f", BackDown on --protocol {args.protocol}" if args.protocol != "auto" else "")
            + (" with encryption" if args.encrypt else "")
            + (", server signing mandatory" if args.signing else ""),
            "",
            f"- {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, "
            f"took {(time.time() - self.began) / 60:.1f} min: `{command}`",
            f"- {mode}",
            *machine_lines(b),
            f"- load average before {b.load_before[0]:.2f}, after {load_after[0]:.2f} "
            "(other work on the machine skews the numbers)",
            f"- {args.runs} run(s) per figure; medians. A time is a whole process from spawn to "
            "exit: interpreter start, imports (BackDown byte-compiled, as pip installs it), "
            "connect and logon included. MB = 10^6 bytes. "
            "Peak RSS is the process's ru_maxrss from wait4(); CPU is its user + system time; "
            "smbd CPU is what the server's processes spent meanwhile (/proc, reaped children "
            "included). "
            "BackDown runs with its default "
            "--transfers 4; smbclient and the naive loop use one connection.",
            "- Ratios are BackDown's time divided by the other client's time: below 1.00 "
            "BackDown is faster.",
            *(f"- {note}" for note in b.notes),
            "",
        ]
        if ("a", BACKDOWN, "up") in self.r.samples:
            ds = b.datasets["big"]
            out += self.transfer_section("a", ds, "MB/s", ds.bytes / 1e6)
        if ("b", BACKDOWN, "up") in self.r.samples:
            ds = b.datasets["small"]
            out += self.transfer_section("b", ds, "files/s", float(ds.files))
        if self.r.rerun:
            out += self.rerun_section()
        if self.r.touched:
            out += self.touched_section()
        if any(k[0] in "ab" for k in self.r.samples):
            out += self.rss_section()
        if self.r.snap is not None and self.r.snap.as_of:
            out += self.snap_section(self.r.snap)
        out += self.targets_section()
        out += self.raw_section()
        return "\n".join(out) + "\n"

    def transfer_section(self, case: str, ds: DataSet, unit: str, amount: float) -> list[str]:
        out = [
            f"## ({case}) {ds.title}, up and down",
            "",
            f"| client | upload s | upload {unit} | download s | download {unit} "
            "| peak RSS up / down MB | CPU up / down s | smbd CPU up / down s |",
            "|---|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for client in CLIENTS:
            up, down = self.secs(case, client, "up"), self.secs(case, client, "down")
            out.append(
                f"| {client} | {_fmt(up)} | {_fmt(amount / up, 1)} | {_fmt(down)} "
                f"| {_fmt(amount / down, 1)} | {_fmt(self.rss(case, client, 'up'), 1)} / "
                f"{_fmt(self.rss(case, client, 'down'), 1)} | {_fmt(self.cpu(case, client, 'up'))}"
                f" / {_fmt(self.cpu(case, client, 'down'))} "
                f"| {_fmt(self.server_cpu(case, client, 'up'))}"
                f" / {_fmt(self.server_cpu(case, client, 'down'))} |"
            )
        engine = {
            d: _med([s.extra.get("engine_s", 0.0) for s in self.r.samples[(case, BACKDOWN, d)]])
            for d in ("up", "down")
        }
        out += [
            "",
            "| ratio (time) | upload | download |",
            "|---|--:|--:|",
        ]
        for other in (SMBCLIENT, NAIVE):
            out.append(
                f"| BackDown / {other} | "
                + " | ".join(
                    _fmt(self.secs(case, BACKDOWN, d) / self.secs(case, other, d))
                    for d in ("up", "down")
                )
                + " |"
            )
        out += [
            "",
            f"BackDown's own `seconds` (its JSON report, from the start of the run to the end) "
            f"median: upload {_fmt(engine['up'])} s, download {_fmt(engine['down'])} s; the rest "
            "of the process time is interpreter start, imports and loading the profile.",
            "",
        ]
        for d, word in (("up", "upload"), ("down", "download")):
            bd = self.secs(case, BACKDOWN, d)
            if case == "a":
                naive = self.secs(case, NAIVE, d)
                self.targets.append(
                    (
                        f"(a) {word}: BackDown at least as fast as the naive pysmb loop",
                        f"{_fmt(bd)} s vs {_fmt(naive)} s (ratio {_fmt(bd / naive)})",
                        bd <= naive,
                    )
                )
            else:
                smbc = self.secs(case, SMBCLIENT, d)
                self.targets.append(
                    (
                        f"(b) {word}: BackDown more files/s than smbclient",
                        f"{_fmt(amount / bd, 0)} vs {_fmt(amount / smbc, 0)} files/s "
                        f"(time ratio {_fmt(bd / smbc)})",
                        bd < smbc,
                    )
                )
        return out

    def rerun_section(self) -> list[str]:
        runs = self.r.rerun
        wall = _med([s.seconds for s in runs])
        engine = _med([s.extra["engine_s"] for s in runs])
        counts = [s.extra["files_transferred"] for s in runs]
        written = [s.extra.get("snapshots_written", 0) for s in runs]
        files = self.b.datasets["small"].files
        self.targets.append(
            (
                "(c) re-run with nothing changed: under 1 s",
                f"{_fmt(wall)} s whole process ({_fmt(engine)} s BackDown's own)",
                wall < RERUN_TARGET_S,
            )
        )
        applies = files == NOCHANGE_TARGET_FILES and not self.b.args.link
        self.targets.append(
            (
                f"(c) re-run with nothing changed, snapshot written: under "
                f"{NOCHANGE_TARGET_S:g} s for {NOCHANGE_TARGET_FILES:,} files on loopback "
                "(snapshots issue)",
                f"{_fmt(wall)} s whole process, {files:,} files"
                f"{'' if not self.b.args.link else ' through lanproxy'}, "
                f"snapshots written per run {written}"
                + ("" if applies else " (target not for this set-up)"),
                (wall < NOCHANGE_TARGET_S and all(w == 1 for w in written)) if applies else None,
            )
        )
        self.targets.append(
            (
                "(c) re-run with nothing changed: files_transferred 0",
                str(counts),
                all(c == 0 for c in counts),
            )
        )
        return [
            f"## (c) BackDown upload again, nothing changed ({self.b.datasets['small'].title})",
            "",
            "| median s (process) | median s (BackDown's own) | peak RSS MB "
            "| files_transferred per run | snapshots written per run |",
            "|--:|--:|--:|---|---|",
            f"| {_fmt(wall)} | {_fmt(engine)} | {_fmt(_med([s.rss_mb for s in runs]), 1)} "
            f"| {counts} | {written} |",
            "",
        ]

    def touched_section(self) -> list[str]:
        runs = self.r.touched
        wall = _med([s.seconds for s in runs])
        engine = _med([s.extra["engine_s"] for s in runs])
        counts = [s.extra["files_transferred"] for s in runs]
        self.targets.append(
            (
                f"(d) re-run after touching {TOUCHED} files: files_transferred exactly {TOUCHED}",
                str(counts),
                all(c == TOUCHED for c in counts),
            )
        )
        return [
            f"## (d) BackDown upload again after touching {TOUCHED} files",
            "",
            "| median s (process) | median s (BackDown's own) | files_transferred per run |",
            "|--:|--:|---|",
            f"| {_fmt(wall)} | {_fmt(engine)} | {counts} |",
            "",
        ]

    def _scale_targets(
        self, snap: SnapResults, ds: DataSet, applies: bool
    ) -> list[tuple[str, str, bool | None]]:
        """Office scale: the no-change and touched re-runs, their memory, the first upload."""
        link = self.b.args.link
        rerun_s = _med([s.seconds for s in snap.rerun])
        touched_s = _med([s.seconds for s in snap.touched])
        mib = max((s.rss_kib / 1024 for s in snap.rerun + snap.touched), default=float("nan"))
        assert snap.first is not None
        fps = ds.files / snap.first.seconds
        limit, first_fps = SCALE_RERUN_TARGET_S.get(link), SCALE_FIRST_TARGET_FPS.get(link)
        here = applies and limit is not None and first_fps is not None
        scale = "" if here else " (no target for this set-up)"
        # "The same plus the 10 files": each touched file at the first upload's pace.
        touched_limit = (limit or 0.0) + TOUCHED / (first_fps or 1.0)
        return [
            (
                f"(s) no-change re-run of {SNAP_TARGET_FILES:,} files: at most {limit} s "
                "(loopback 1.5, LAN 3)",
                f"{_fmt(rerun_s)} s whole process, median of {len(snap.rerun)}{scale}",
                rerun_s <= (limit or 0.0) if here else None,
            ),
            (
                f"(s) re-run after touching {TOUCHED} files: the same plus those files "
                f"({_fmt(touched_limit)} s)",
                f"{_fmt(touched_s)} s, median of {len(snap.touched)}{scale}",
                touched_s <= touched_limit if here and snap.touched else None,
            ),
            (
                f"(s) peak RSS of those re-runs at most {SCALE_RSS_TARGET_MIB:g} MiB",
                f"{_fmt(mib, 1)} MiB (ru_maxrss)",
                mib <= SCALE_RSS_TARGET_MIB if applies else None,
            ),
            (
                f"(s) first upload of {SNAP_TARGET_FILES:,} files at least {first_fps} files/s "
                "(loopback 2,000, LAN 1,500)",
                f"{fps:,.0f} files/s ({_fmt(snap.first.seconds)} s){scale}",
                fps >= (first_fps or 0.0) if here else None,
            ),
        ]

    def snap_section(self, snap: SnapResults) -> list[str]:
        """(s): the snapshot's size, the --as-of plan's time, the uploads' times."""
        ds = self.b.datasets["snap"]
        sizes = snap.sizes
        mb, sha_mb = snap.disk_bytes / 1e6, sizes["with_sha256_bytes"] / 1e6
        plan_s = _med([s.seconds for s in snap.as_of])
        plan_own = _med([s.extra["engine_s"] for s in snap.as_of])
        applies = ds.files == SNAP_TARGET_FILES
        scale = "" if applies else f" (targets are for {SNAP_TARGET_FILES:,} files)"
        self.targets += [
            (
                f"(s) snapshot of {SNAP_TARGET_FILES:,} files under {SNAPSHOT_TARGET_MB:g} MB "
                "on the share",
                f"{_fmt(mb)} MB on the server's disk ({ds.files:,} files, no SHA-256, as a "
                f"default upload writes it){scale}",
                mb < SNAPSHOT_TARGET_MB if applies else None,
            ),
            (
                f"(s) the same with a SHA-256 for every file (upper bound, encoded in-process) "
                f"under {SNAPSHOT_TARGET_MB:g} MB",
                f"{_fmt(sha_mb)} MB{scale}",
                sha_mb < SNAPSHOT_TARGET_MB if applies else None,
            ),
            (
                f"(s) restore --as-of planning of {SNAP_TARGET_FILES:,} files under "
                f"{AS_OF_TARGET_S:g} s (dry run, whole process, median of {len(snap.as_of)})",
                f"{_fmt(plan_s)} s ({_fmt(plan_own)} s BackDown's own){scale}",
                plan_s < AS_OF_TARGET_S if applies else None,
            ),
            (
                "(s) the --as-of plan restores every file of the snapshot, the changed ones "
                "from versions",
                f"files_new per run {[s.extra['files_new'] for s in snap.as_of]} of "
                f"{ds.files:,}; from versions {[s.extra['from_versions'] for s in snap.as_of]}"
                f" of {snap.versions:,}",
                all(
                    s.extra["files_new"] == ds.files and s.extra["from_versions"] == snap.versions
                    for s in snap.as_of
                ),
            ),
            (
                "(s) a restore --as-of brings a changed file's old bytes back (from versions)",
                f"`{snap.old_bytes_back}`",
                bool(snap.old_bytes_back),
            ),
            *self._scale_targets(snap, ds, applies),
        ]

        def row(what: str, runs: list[Sample]) -> str:
            if not runs:
                return f"| {what} | n/a | | | | | 0 |"
            return (
                f"| {what} | {_fmt(_med([s.seconds for s in runs]))} "
                f"| {_fmt(_med([s.extra['engine_s'] for s in runs]))} "
                f"| {_fmt(_med([s.rss_mb for s in runs]), 1)} "
                f"| {_fmt(_med([s.cpu_s for s in runs]))} "
                f"| {_fmt(_med([s.extra.get('server_cpu', float('nan')) for s in runs]))} "
                f"| {len(runs)} |"
            )

        assert snap.first is not None and snap.changed is not None
        per_file = snap.disk_bytes / ds.files
        return [
            f"## (s) snapshots and restore --as-of: {ds.title}",
            "",
            f"{ds.bytes / 1e6:,.1f} MB (0 to 32 KiB a file), names like an office's: 1 to 6 "
            "folders deep, spaces, dates, accents, Greek, Cyrillic, Japanese and Chinese. "
            f"Written in {snap.generate_s:.1f} s; the whole case took "
            f"{snap.took_s / 60:.1f} min. After the first upload and the re-runs, "
            f"{SNAP_CHANGED:,} files got new bytes and were uploaded, so the versions area "
            f"holds {snap.versions:,} files when `--as-of` plans: the plan takes "
            f"{ds.files - snap.versions:,} files from the current copies and "
            f"{snap.versions:,} from versions.",
            "",
            "| step | median s (process) | BackDown's own s | peak RSS MB | CPU s "
            "| smbd CPU s | runs |",
            "|---|--:|--:|--:|--:|--:|--:|",
            row(f"first upload, {ds.files:,} files (writes the snapshot below)", [snap.first]),
            row("upload again, nothing changed (writes a snapshot)", snap.rerun),
            row(f"upload again after touching {TOUCHED} files", snap.touched),
            row(f"upload after changing {SNAP_CHANGED:,} files", [snap.changed]),
            row(
                "`download NAME --dry-run --json` (plan of the folder as it is now)", snap.plan_now
            ),
            row(
                f"`download NAME --as-of {sizes['id']} --dry-run --json` (plan only)",
                snap.as_of,
            ),
            "",
            f"`--as-of` adds {_fmt(plan_s - _med([s.seconds for s in snap.plan_now]))} s to the "
            "plan of the folder as it is now (median against median): reading and decoding "
            "the snapshot, walking the versions area and resolving each file. The rest is "
            "what every restore does: start, log on, walk the share, plan; both dry runs print "
            "the whole plan as JSON.",
            "",
            "| snapshot of the first upload | bytes | MB | bytes per file |",
            "|---|--:|--:|--:|",
            f"| on the share (server's disk), as a default upload writes it (no SHA-256) "
            f"| {snap.disk_bytes:,} | {_fmt(mb)} | {_fmt(per_file, 1)} |",
            f"| its JSON, uncompressed | {sizes['json_bytes']:,} "
            f"| {_fmt(sizes['json_bytes'] / 1e6)} | {_fmt(sizes['json_bytes'] / ds.files, 1)} |",
            f"| the same with a random 64-hex SHA-256 per file (backdown.snapshots.encode, "
            f"in-process) | {sizes['with_sha256_bytes']:,} | {_fmt(sha_mb)} "
            f"| {_fmt(sizes['with_sha256_bytes'] / ds.files, 1)} |",
            f"| its JSON, uncompressed | {sizes['with_sha256_json_bytes']:,} "
            f"| {_fmt(sizes['with_sha256_json_bytes'] / 1e6)} "
            f"| {_fmt(sizes['with_sha256_json_bytes'] / ds.files, 1)} |",
            "",
            f"The snapshot lists {sizes['files']:,} files and {sizes['dirs']:,} folders "
            f"({sizes['sha256_recorded']:,} with a SHA-256); re-encoding it in-process gives "
            f"{sizes['reencoded_bytes']:,} bytes. In one process, decoding it took "
            f"{sizes['decode_s']:.2f} s and encoding it {sizes['encode_s']:.2f} s.",
            "",
        ]

    def rss_section(self) -> list[str]:
        cols = [(c, d) for c in "ab" for d in ("up", "down") if (c, BACKDOWN, d) in self.r.samples]
        head = " | ".join(f"({c}) {'upload' if d == 'up' else 'download'}" for c, d in cols)
        out = [
            "## (e) peak RSS per process, MB (median, max in brackets)",
            "",
            f"| client | {head} |",
            "|---|" + "--:|" * len(cols),
        ]
        for client in CLIENTS:
            cells = []
            for c, d in cols:
                values = [s.rss_mb for s in self.r.samples.get((c, client, d), [])]
                cells.append(
                    f"{_fmt(_med(values), 1)} ({_fmt(max(values), 1)})" if values else "n/a"
                )
            out.append(f"| {client} | " + " | ".join(cells) + " |")
        peak = max(
            s.rss_mb for (c, cl, _), ss in self.r.samples.items() if cl == BACKDOWN for s in ss
        )
        self.targets.append(
            (
                f"(e) BackDown peak RSS under {RSS_TARGET_MB:g} MB",
                f"{_fmt(peak, 1)} MB at most",
                peak < RSS_TARGET_MB,
            )
        )
        return out + [""]

    def targets_section(self) -> list[str]:
        out = ["## Targets", "", "| target | measured | result |", "|---|---|---|"]
        for what, measured, ok in self.targets:
            verdict = "n/a" if ok is None else "PASS" if ok else "**FAIL**"
            out.append(f"| {what} | {measured} | {verdict} |")
        return out + [""]

    def raw_section(self) -> list[str]:
        out = [
            "## Every run",
            "",
            "| run | s | BackDown's own s | peak RSS MB | CPU user + sys s | smbd CPU s "
            "| load at start |",
            "|---|--:|--:|--:|--:|--:|--:|",
        ]
        every = [s for ss in self.r.samples.values() for s in ss] + self.r.rerun + self.r.touched
        if self.r.snap is not None:
            every += self.r.snap.samples
        for s in every:
            engine = s.extra.get("engine_s")
            out.append(
                f"| {s.label} | {s.seconds:.3f} | {'' if engine is None else f'{engine:.3f}'} "
                f"| {s.rss_mb:.1f} | {s.cpu_user:.2f} + {s.cpu_sys:.2f} "
                f"| {s.extra.get('server_cpu', float('nan')):.2f} | {s.load:.2f} |"
            )
        return out


# --------------------------------------------------------------------------- main


def _touch(files: list[Path], run: int, runs: int) -> list[Path]:
    """TOUCHED files spread over the list, other ones each run: a later time, the same bytes."""
    step = max(1, len(files) // (TOUCHED * runs))
    picked = [files[((run * TOUCHED + k) * step) % len(files)] for k in range(TOUCHED)]
    for path in picked:
        st = path.stat()
        when = max(time.time(), st.st_mtime + 10)  # beyond --modify-window for sure
        os.utime(path, (when, when))
    return picked


def link_name(args: argparse.Namespace) -> str:
    return f"{LINKS[args.link][0]} (lanproxy)" if args.link else "loopback"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark BackDown against smbclient and a naive pysmb loop "
        "(see tests/bench/README.md)."
    )
    link = parser.add_mutually_exclusive_group()
    link.add_argument("--lan", action="store_true", help="go through lanproxy (1 ms RTT, 1 Gbit/s)")
    link.add_argument(
        "--vpn", action="store_true", help="go through lanproxy (10 ms RTT, 100 Mbit/s)"
    )
    parser.add_argument(
        "--protocol",
        choices=("auto", "smb2", "smb3"),
        default="auto",
        help="BackDown's transport: auto (default; pysmb here), smb2 (pysmb), smb3 (smbprotocol)",
    )
    parser.add_argument(
        "--encrypt", action="store_true", help="BackDown with SMB 3 encryption (AES-128-GCM)"
    )
    parser.add_argument(
        "--signing",
        action="store_true",
        help="the server requires signing (server signing = mandatory): every client signs",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (default 3)")
    parser.add_argument(
        "--big-mib", type=int, default=1024, help="size of the big file (default 1024)"
    )
    parser.add_argument(
        "--small-files", type=int, default=5000, help="number of small files (default 5000)"
    )
    parser.add_argument(
        "--folders", type=int, default=50, help="folders for the small files (default 50)"
    )
    parser.add_argument(
        "--snap-files",
        type=int,
        default=SNAP_TARGET_FILES,
        help=f"files for case s (default {SNAP_TARGET_FILES}; the targets are for that many)",
    )
    parser.add_argument(
        "--snap-folders", type=int, default=2000, help="folders for case s (default 2000)"
    )
    parser.add_argument(
        "--cases", default="abcds", help="which of a, b, c, d, s to run (default abcds)"
    )
    parser.add_argument("--out", metavar="FILE", help="also write the markdown report here")
    parser.add_argument(
        "--workdir", metavar="DIR", help="make the temporary folder here (default /tmp)"
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="afterwards, profile one BackDown run per case (py-spy, else cProfile) into DIR",
    )
    parser.add_argument(
        "--backdown-src",
        metavar="DIR",
        default=str(REPO / "backdown"),
        help="the backdown package to measure (default: this work tree's; it is copied first)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary folder (logs, data)"
    )
    parser.add_argument(
        "--timeout", type=float, default=1200, help="seconds allowed per process (default 1200)"
    )
    parser.add_argument(
        "--lanproxy-src",
        default=str(DEFAULT_LANPROXY_SRC),
        metavar="PATH",
        help=f"lanproxy.c to compile (default {DEFAULT_LANPROXY_SRC})",
    )
    args = parser.parse_args(argv)
    args.link = "vpn" if args.vpn else "lan" if args.lan else None
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if not (Path(args.backdown_src) / "__main__.py").is_file():
        parser.error(f"{args.backdown_src} is not the backdown package (no __main__.py)")
    args.backdown_src = str(Path(args.backdown_src).resolve())
    if not args.cases or set(args.cases) - set("abcds"):
        parser.error("--cases takes letters from abcds")
    if args.snap_files < SNAP_CHANGED or args.snap_folders < 1:
        parser.error(f"--snap-files must be at least {SNAP_CHANGED}, --snap-folders at least 1")
    return args


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    # A shell starts background jobs with SIGINT ignored; Ctrl-C or kill -INT must still
    # stop the benchmark and clean up.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    began = time.time()
    bench = Bench(args)
    try:
        if not bench.setup():
            return 0
        bench.run()
        text = Report(bench, began).render()
        if args.profile:
            profile_dir = Path(args.profile).resolve()
            profile_dir.mkdir(parents=True, exist_ok=True)  # a new folder is fine to name
            summary = profile_dir / "summary.md"
            profile_text = bench.run_profiles(profile_dir)
            summary.write_text(profile_text + "\n")
            say(f"profile summary: {summary}")
    except KeyboardInterrupt:
        say("interrupted: stopping the clients and the server, removing the temporary files")
        return 130
    except BenchError as exc:
        say(f"\nBENCHMARK FAILED: {exc}")
        if bench.server is not None:
            say("--- smbd log (end) ---\n" + bench.server.log_tail(20))
        return 1
    finally:
        bench.cleanup()
    print(text)
    if args.out:
        Path(args.out).write_text(text)
        say(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
