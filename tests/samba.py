"""A real, throw-away Samba server for the tests.

``SambaServer`` runs Debian's ``smbd`` (no nmbd, no winbindd) as its own instance: its
smb.conf, passdb, lock/state/cache/pid dirs, logs and share folders all live under one
temporary folder, and it listens on 127.0.0.1 only, on a free high port.

The Unix account question
-------------------------
Samba needs a Unix account behind every SMB user: the tdbsam passdb refuses to add a user
``getpwnam()`` does not know, and after authentication smbd switches to that account's
uid/gid to touch the share.  We use one dedicated, login-less system account, ``bdtest``
(``TEST_UNIX_USER``), created with ``useradd --system --no-create-home`` only when
``getpwnam("bdtest")`` does not know it yet (``ensure_unix_user``).  Creation is serialized
by a lock file, because two racing ``useradd`` runs can both succeed with different uids;
so it is idempotent across runs, across the servers of one session and across concurrent
sessions, works as root on a fresh Debian machine, and keeps tests away from real accounts.
The SMB password is *not* the Unix one (the account has none and cannot log in): it lives
only in this server's private ``passdb.tdb``, random for every server instance, so nothing
persists between runs.  The share folders are chowned to ``bdtest`` so the SMB user can
write there (``chown()``/``put_file()`` do the same for files a test writes directly as
root); the temporary root is made world-traversable (0755) because smbd reaches the shares
as ``bdtest``.

Processes
---------
smbd runs in the foreground in a session of its own (``start_new_session``,
``--no-process-group``), so ``stop()`` can end it with all its children by process group.
smbd also starts ``samba-dcerpcd`` on demand (e.g. for ``listShares``), which daemonizes
into a session of its own; ``stop()`` finds it by our smb.conf path on its command line.
Servers still running at interpreter exit are stopped by an atexit hook, and smbd gets
SIGTERM from the kernel if the test process dies without running it (PR_SET_PDEATHSIG; an
orphaned samba-dcerpcd then exits by itself when idle, about a minute later).

Running the server requires root (smbd has to switch uids); ``smbd_missing_reason()``
tells whether this machine can run it.

Hostile configurations
----------------------
``extra_global`` and ``extra_share`` add smb.conf settings to ``[global]`` and to the
``[backup]`` share (written after the defaults, so they override them: smb.conf keeps the
last value of a parameter).  ``tmpfs_size`` (e.g. ``"64k"``) mounts a tmpfs of that size on
the ``backup`` share's folder in ``start()`` (unmounted again by ``stop()``, so a restart
empties the share) for disk-full tests; ``resize_tmpfs()`` changes its size on the fly.
A mount the kernel refuses (no CAP_SYS_ADMIN, e.g. an unprivileged container) raises
``MountRefused``.

Client processes (Samba 4.17): smbd's parent process forks ``smbd-notifyd`` and
``cleanupd`` (their /proc comm names) at start-up, and one child named ``smbd`` (like the
parent) per client connection, which switches to the test user after the session setup.
``client_pids()`` lists those (to SIGKILL the one serving a transfer), ``client_ports()``
maps them to the client's TCP port, and ``open_files()`` lists what the server has open
right now (``smbstatus -L --json``), for leaked-handle checks.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import fcntl
import grp
import json
import os
import pwd
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from smb.SMBConnection import SMBConnection

HOST = "127.0.0.1"
TEST_UNIX_USER = "bdtest"
SHARES = ("backup", "readonly")
START_TIMEOUT = 15.0

# Servers that have been started and not stopped yet; stopped at interpreter exit.
_running: set[SambaServer] = set()


def smbd_missing_reason() -> str | None:
    """Why a SambaServer cannot run on this machine, or None when it can."""
    for tool in ("smbd", "smbclient", "pdbedit"):
        if _which(tool) is None:
            return f"{tool} not found (apt-get install samba smbclient)"
    if os.geteuid() != 0:
        return "smbd test server needs root"
    return None


def _which(tool: str) -> str | None:
    # smbd and pdbedit live in /usr/sbin, which is not always on a non-login PATH.
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/usr/local/sbin:/sbin"
    return shutil.which(tool, path=path)


def ensure_unix_user(name: str = TEST_UNIX_USER) -> pwd.struct_passwd:
    """Return the Unix account ``name``, creating it as a system user if it is missing.

    Safe to run concurrently (several pytest sessions on one machine): useradd itself is
    not (two racing useradds can both "succeed" with different uids, the second one
    overwriting the first), so creation is serialized with a lock file in the temp dir.
    """
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    useradd = _which("useradd")
    if useradd is None:
        raise RuntimeError(f"Unix user {name!r} is missing and useradd is not available")
    nologin = "/usr/sbin/nologin" if os.path.exists("/usr/sbin/nologin") else "/bin/false"
    lock_path = os.path.join(tempfile.gettempdir(), "backdown-tests-useradd.lock")
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return pwd.getpwnam(name)  # created by whoever held the lock before us
        except KeyError:
            pass
        try:
            grp.getgrnam(name)
            group_opts = ["--gid", name]  # a group of that name is left over: join it
        except KeyError:
            group_opts = ["--user-group"]
        proc = subprocess.run(
            [useradd, "--system", "--no-create-home", "--home-dir", "/nonexistent"]
            + ["--shell", nologin, *group_opts, name],
            capture_output=True,
            text=True,
            check=False,
        )
        try:
            return pwd.getpwnam(name)
        except KeyError:
            raise RuntimeError(
                f"useradd {name} failed ({proc.returncode}): {proc.stderr.strip()}"
            ) from None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now.

    Picked below the kernel's ephemeral range when possible: a port from that range could be
    taken as the source port of some outgoing connection while the server is stopped for a
    restart(), and smbd could then not bind it again.
    """
    low = 32768
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
            low = int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    candidates = [random.randint(20000, low - 1) for _ in range(50)] if low > 20100 else []
    for port in candidates + [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise RuntimeError("no free TCP port on 127.0.0.1")


def _set_parent_death_signal() -> None:
    """In the child before exec: get SIGTERM when the test process dies (Linux only).

    Our atexit hook cannot run when pytest is SIGKILLed; this makes smbd go away then too.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    except Exception:
        pass


class _PortInUse(RuntimeError):
    pass


class MountRefused(RuntimeError):
    """The tmpfs for ``tmpfs_size`` could not be mounted (not permitted here)."""


def _conf_lines(settings: dict[str, str] | None, what: str) -> str:
    """smb.conf lines for extra settings, refusing what would break the file's syntax."""
    lines = []
    for key, value in (settings or {}).items():
        for text in (key, value):
            if "\n" in text or "\r" in text or text.lstrip().startswith("["):
                raise ValueError(f"bad {what} setting: {key!r} = {value!r}")
        lines.append(f"    {key.strip()} = {value.strip()}\n")
    if not lines:
        return ""
    return f"    # {what} settings from the test\n" + "".join(lines)


class SambaServer:
    """One private smbd instance; see the module docstring.

    ``signing`` is the ``server signing`` setting: "auto" (default) or "mandatory".
    ``extra_global`` / ``extra_share``: more smb.conf settings for ``[global]`` / the
    ``[backup]`` share; ``tmpfs_size``: a tmpfs of that size (``mount -o size=``) on the
    ``backup`` share's folder while the server runs.
    """

    host = HOST

    def __init__(
        self,
        root: Path | str,
        *,
        signing: str = "auto",
        port: int | None = None,
        log_level: int = 1,
        extra_global: dict[str, str] | None = None,
        extra_share: dict[str, str] | None = None,
        tmpfs_size: str | None = None,
    ) -> None:
        if signing not in ("auto", "mandatory", "disabled", "default"):
            raise ValueError(f"bad server signing value: {signing!r}")
        _conf_lines(extra_global, "[global]")  # validate now, not at start()
        _conf_lines(extra_share, "[backup]")
        if tmpfs_size is not None:
            _check_size(tmpfs_size)
        self.extra_global = dict(extra_global or {})
        self.extra_share = dict(extra_share or {})
        self.tmpfs_size = tmpfs_size
        self._tmpfs_mounted = False
        self.root = Path(root).resolve()
        self.signing = signing
        self._auto_port = port is None
        self.port = port if port is not None else free_port()
        self.log_level = log_level
        self.user = TEST_UNIX_USER
        self.password = secrets.token_urlsafe(18)
        self.conf_path = self.root / "smb.conf"
        self.auth_file = self.root / "smbclient.auth"
        self.private_dir = self.root / "private"
        self.log_dir = self.root / "logs"
        self.stdout_log = self.log_dir / "smbd.stdout"
        self.smbd_log = self.log_dir / "log.smbd"
        self._proc: subprocess.Popen[bytes] | None = None
        self._pgid: int | None = None
        self._prepared = False
        self._started_once = False

    # ----------------------------------------------------------------- layout / config

    def share_path(self, share: str) -> Path:
        """Local folder behind ``share`` (the server side on disk)."""
        if share not in SHARES:
            raise KeyError(f"no such share: {share!r}")
        return self.root / "shares" / share

    @property
    def uid(self) -> int:
        return pwd.getpwnam(self.user).pw_uid

    @property
    def gid(self) -> int:
        return pwd.getpwnam(self.user).pw_gid

    def chown(self, path: Path | str) -> None:
        """Hand ``path`` (recursively) to the SMB user's Unix account.

        Use it after writing into a share directly as root, so the SMB user may change or
        delete what was written.
        """
        uid, gid = self.uid, self.gid
        path = Path(path)
        os.chown(path, uid, gid, follow_symlinks=False)
        if path.is_dir() and not path.is_symlink():
            for dirpath, dirnames, filenames in os.walk(path):
                for name in dirnames + filenames:
                    os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)

    def put_file(
        self, share: str, relpath: str, data: bytes, *, mtime: float | None = None
    ) -> Path:
        """Write a file straight into a share on disk (parents created, owned by the user)."""
        base = self.share_path(share)
        target = base / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        if mtime is not None:
            os.utime(target, (mtime, mtime))
        # chown every component from the share root down to the file
        node = target
        while node != base:
            os.chown(node, self.uid, self.gid)
            node = node.parent
        return target

    def _config_text(self) -> str:
        r = self.root
        shares = "".join(
            f"""
[{name}]
    path = {self.share_path(name)}
    read only = {"no" if name == "backup" else "yes"}
    browseable = yes
    guest ok = no
    valid users = {self.user}
    create mask = 0644
    directory mask = 0755
{_conf_lines(self.extra_share, "[backup]") if name == "backup" else ""}"""
            for name in SHARES
        )
        return f"""# generated by tests/samba.py; a private smbd for the backdown tests
[global]
    server role = standalone server
    workgroup = BDTEST
    netbios name = BDTESTSRV
    server string = backdown test server
    smb ports = {self.port}
    interfaces = {HOST}
    bind interfaces only = yes
    disable netbios = yes
    # pysmb speaks SMB1 and SMB 2.0.2; NT1 as the floor keeps both paths available.
    server min protocol = NT1
    client min protocol = SMB2
    server signing = {self.signing}
    # A wrong password must fail authentication, never fall back to the guest account.
    map to guest = Never
    restrict anonymous = 2
    passdb backend = tdbsam:{r}/private/passdb.tdb
    private dir = {r}/private
    lock directory = {r}/lock
    state directory = {r}/state
    cache directory = {r}/cache
    pid directory = {r}/run
    ncalrpc dir = {r}/run/ncalrpc
    binddns dir = {r}/bind-dns
    usershare path =
    log file = {r}/logs/log.%m
    max log size = 0
    log level = {self.log_level}
    load printers = no
    printing = bsd
    printcap name = /dev/null
    disable spoolss = yes
    obey pam restrictions = no
    unix password sync = no
    unix extensions = no
    host msdfs = no
    dns proxy = no
    kernel oplocks = no
    kernel change notify = no
    # DOS attributes and create times in xattrs, so timestamps set over SMB stick.
    ea support = yes
    store dos attributes = yes
{_conf_lines(self.extra_global, "[global]")}{shares}"""

    def _write_config(self) -> None:
        self.conf_path.write_text(self._config_text())

    def _prepare(self) -> None:
        if self._prepared:
            return
        reason = smbd_missing_reason()
        if reason is not None:
            raise RuntimeError(reason)
        ensure_unix_user(self.user)
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        for parent in self.root.parents:
            if not os.stat(parent).st_mode & 0o001:
                raise RuntimeError(
                    f"{parent} is not traversable by others; smbd (as {self.user}) "
                    f"could not reach the shares under {self.root}"
                )
        for sub in ("lock", "state", "cache", "run", "logs", "bind-dns", "shares"):
            (self.root / sub).mkdir(mode=0o755, exist_ok=True)
        self.private_dir.mkdir(mode=0o700, exist_ok=True)
        for name in SHARES:
            path = self.share_path(name)
            path.mkdir(mode=0o755, exist_ok=True)
            os.chown(path, self.uid, self.gid)
        self._write_config()
        fd = os.open(self.auth_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"username = {self.user}\npassword = {self.password}\ndomain = BDTEST\n")
        proc = subprocess.run(
            [_which("pdbedit") or "pdbedit", "-s", str(self.conf_path)]
            + ["-a", "-u", self.user, "-t"],
            input=f"{self.password}\n{self.password}\n",
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"pdbedit -a failed ({proc.returncode}):\n{proc.stderr}")
        self._prepared = True

    # ----------------------------------------------------------------- lifecycle

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> SambaServer:
        """Start smbd and wait until a pysmb login works (at most ~15 s)."""
        if self.running:
            raise RuntimeError("smbd already started")
        if self._proc is not None:
            self.stop()  # it died: reap it and whatever it left
        self._prepare()
        if self.tmpfs_size is not None and not self._tmpfs_mounted:
            self._mount_tmpfs()
        # A port picked by free_port() can be taken by someone else before smbd binds it; on
        # the first start only (restart() must keep the port), pick another one and retry.
        attempts = 3 if self._auto_port and not self._started_once else 1
        try:
            for attempt in range(attempts):
                try:
                    self._start_once()
                except _PortInUse:
                    if attempt == attempts - 1:
                        raise
                    self.port = free_port()
                    self._write_config()
                    continue
                self._started_once = True
                return self
        except BaseException:
            self._unmount_tmpfs()
            raise
        raise AssertionError("unreachable")

    def _start_once(self) -> None:
        log_offset = self.smbd_log.stat().st_size if self.smbd_log.exists() else 0
        with open(self.stdout_log, "ab") as out:
            out.write(f"--- start {time.strftime('%H:%M:%S')} port {self.port}\n".encode())
            out.flush()
            self._proc = subprocess.Popen(
                [_which("smbd") or "smbd", "--foreground", "--no-process-group"]
                + ["-s", str(self.conf_path)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_set_parent_death_signal,
                env={**os.environ, "SMB_CONF_PATH": str(self.conf_path)},
            )
        self._pgid = self._proc.pid  # session leader: its pid is the process group id
        _running.add(self)
        try:
            self._wait_ready(log_offset)
        except BaseException:
            self._stop_processes(10.0)  # the tmpfs stays for another attempt; start() decides
            raise

    def _wait_ready(self, log_offset: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        last_error = "no attempt made"
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                if self._log_since(log_offset).count("Address already in use"):
                    raise _PortInUse(f"port {self.port} is taken\n" + self.log_tail())
                raise RuntimeError(
                    f"smbd exited with code {self._proc.returncode} during start-up\n"
                    + self.log_tail()
                )
            try:
                with socket.create_connection((HOST, self.port), timeout=1):
                    pass
                if self._login_works():
                    return
                last_error = "pysmb login returned False"
            except OSError as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # pysmb errors while smbd is still coming up
                last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.1)
        raise RuntimeError(
            f"smbd not ready on {HOST}:{self.port} after {START_TIMEOUT:.0f} s "
            f"(last: {last_error})\n" + self.log_tail()
        )

    def _login_works(self) -> bool:
        conn = self.connection()
        try:
            return bool(conn.connect(HOST, self.port, timeout=5))
        finally:
            conn.close()

    def connection(self, *, password: str | None = None, **kwargs: Any) -> SMBConnection:
        """An unconnected pysmb SMBConnection set up the way backdown makes one."""
        return SMBConnection(
            self.user,
            self.password if password is None else password,
            "CLIENT",
            "SERVER",
            use_ntlm_v2=True,
            is_direct_tcp=True,
            **kwargs,
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Stop smbd and everything it started; return once they are all gone."""
        try:
            self._stop_processes(timeout)
        finally:
            self._unmount_tmpfs()

    def _stop_processes(self, timeout: float) -> None:
        proc, pgid = self._proc, self._pgid
        self._proc = None
        self._pgid = None
        _running.discard(self)
        if proc is None or pgid is None:
            return
        # smbd starts samba-dcerpcd on demand (e.g. for listShares); that one daemonizes
        # into a session of its own, so find it (and its rpcd_* workers) by our smb.conf.
        helper_groups = {
            pg for pid in _processes_using(self.conf_path) if (pg := _pgid_of(pid)) != pgid
        }
        _terminate_group(pgid, proc, timeout)
        for helper in helper_groups:
            if helper is not None:
                _terminate_group(helper, None, timeout)

    def restart(self) -> SambaServer:
        """Stop and start again: same port, same user and password, same files."""
        self.stop()
        return self.start()

    def __enter__(self) -> SambaServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ----------------------------------------------------------------- tmpfs share

    def _mount_tmpfs(self) -> None:
        """Mount a tmpfs of ``tmpfs_size`` on the backup share's folder, owned by the user."""
        assert self.tmpfs_size is not None
        path = self.share_path("backup")
        if os.path.ismount(path):
            raise RuntimeError(f"{path} is already a mount point; not mounting over it")
        mount = _which("mount") or "mount"
        proc = subprocess.run(
            [mount, "-t", "tmpfs", "-o", f"size={self.tmpfs_size},mode=0755", "tmpfs", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if proc.returncode != 0 or not os.path.ismount(path):
            raise MountRefused(
                f"cannot mount a {self.tmpfs_size} tmpfs on {path} "
                f"({proc.returncode}): {(proc.stderr or proc.stdout).strip() or 'no message'}"
            )
        self._tmpfs_mounted = True
        os.chown(path, self.uid, self.gid)
        os.chmod(path, 0o755)

    def _unmount_tmpfs(self) -> None:
        """Unmount the share's tmpfs (lazily if something still holds it)."""
        if not self._tmpfs_mounted:
            return
        path = self.share_path("backup")
        umount = _which("umount") or "umount"
        for args in ([], ["-l"]):
            proc = subprocess.run(
                [umount, *args, str(path)], capture_output=True, text=True, timeout=30, check=False
            )
            if proc.returncode == 0 or not os.path.ismount(path):
                self._tmpfs_mounted = False
                return
        raise RuntimeError(f"cannot unmount the tmpfs on {path}: {proc.stderr.strip()}")

    def resize_tmpfs(self, size: str) -> None:
        """Give the backup share's tmpfs a new size (``mount -o remount,size=SIZE``).

        The kernel refuses to shrink it below what is in use.
        """
        _check_size(size)
        if not self._tmpfs_mounted:
            raise RuntimeError("this server has no tmpfs share mounted (tmpfs_size, start())")
        path = self.share_path("backup")
        proc = subprocess.run(
            [_which("mount") or "mount", "-o", f"remount,size={size}", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"cannot resize the tmpfs on {path} to {size}: {proc.stderr.strip()}"
            )
        self.tmpfs_size = size

    def free_bytes(self, share: str = "backup") -> int:
        """Free space (for unprivileged users) of the filesystem behind ``share``."""
        st = os.statvfs(self.share_path(share))
        return st.f_bavail * st.f_frsize

    # ----------------------------------------------------------------- client processes

    def client_pids(self) -> list[int]:
        """PIDs of the smbd children serving client connections, oldest first.

        Children of this server's smbd parent named like it ("smbd" in Samba 4.17; later
        versions may say "smbd[ADDR]"), not its helpers (smbd-notifyd, cleanupd; and
        samba-dcerpcd, which is no child of it), zombies left out.
        """
        if self._proc is None:
            return []
        parent = self._proc.pid
        found = []
        for pid in _all_pids():
            fields = _proc_stat(pid)
            if not fields or len(fields) < 20 or fields[0] == "Z" or int(fields[1]) != parent:
                continue
            comm = _comm(pid)
            if comm is None or not comm.startswith("smbd") or comm in _SMBD_HELPERS:
                continue
            found.append((int(fields[19]), pid))  # field 22, starttime
        return [pid for _, pid in sorted(found)]

    def client_ports(self) -> dict[int, int | None]:
        """{pid of a client smbd child: the TCP port of the client it serves (None: unknown)}.

        From the child's socket inodes (/proc/PID/fd) and the kernel's TCP table.
        """
        peers = _tcp_peers(self.port)
        result: dict[int, int | None] = {}
        for pid in self.client_pids():
            port = None
            for inode in _socket_inodes(pid):
                if inode in peers:
                    port = peers[inode]
                    break
            result[pid] = port
        return result

    def open_files(self) -> list[Path]:
        """Absolute paths the server holds open right now (any client), sorted.

        From ``smbstatus -L --json`` (Samba 4.16 and later), else its text output.
        A share's root opened as a folder shows as the share's path.
        """
        smbstatus = _which("smbstatus") or "smbstatus"
        base = [smbstatus, "-s", str(self.conf_path), "-L"]
        proc = subprocess.run(
            [*base, "--json"], capture_output=True, text=True, timeout=30, check=False
        )
        if proc.returncode == 0:
            try:
                data = json.loads(proc.stdout)
            except ValueError:
                data = None
            if isinstance(data, dict):
                return sorted({Path(os.path.normpath(p)) for p in data.get("open_files", {})})
        proc = subprocess.run(base, capture_output=True, text=True, timeout=30, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"smbstatus -L failed ({proc.returncode}): {proc.stderr.strip()}")
        return _parse_locked_files(proc.stdout, [self.share_path(n) for n in SHARES])

    # ----------------------------------------------------------------- diagnostics

    def _log_since(self, offset: int) -> str:
        try:
            with open(self.smbd_log, "rb") as fh:
                fh.seek(offset)
                return fh.read().decode(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for path in sorted(self.log_dir.glob("log.*")) + [self.stdout_log]:
            if path.is_file():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"==> {path} <==\n" + "\n".join(text))
        return "\n".join(parts) if parts else "(no smbd logs)"

    def smbclient(
        self, share: str, commands: str, cwd: Path | str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run Samba's smbclient against a share, for independent server-side checks."""
        return subprocess.run(
            [_which("smbclient") or "smbclient", f"//{HOST}/{share}"]
            + ["-p", str(self.port), "-A", str(self.auth_file), "-s", str(self.conf_path)]
            + ["-c", commands],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


# /proc comm names of smbd's helper processes (Samba 4.17 starts the first two).
_SMBD_HELPERS = frozenset({"smbd-notifyd", "cleanupd", "smbd-cleanupd", "smbd-scavenger"})
_TMPFS_SIZE = re.compile(r"^[0-9]+[kmgKMG%]?$")
_LOCKED_LINE = re.compile(
    r"\s(?P<share>/\S.*?)\s{2,}(?P<name>\S.*?)\s{2,}"
    r"(?P<time>\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4})\s*$"
)


def _check_size(size: str) -> None:
    if not _TMPFS_SIZE.match(size):
        raise ValueError(f"bad tmpfs size: {size!r} (like '64k', '48m' or '50%')")


def _comm(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/comm") as fh:
            return fh.read().strip()
    except OSError:
        return None


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(int(link[8:-1]))
    return inodes


def _tcp_peers(local_port: int) -> dict[int, int]:
    """{socket inode: remote port} of TCP connections whose local port is ``local_port``."""
    peers = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                rows = fh.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) < 10:
                continue
            local, remote, inode = cols[1], cols[2], int(cols[9])
            if inode and int(local.rsplit(":", 1)[1], 16) == local_port:
                peers[inode] = int(remote.rsplit(":", 1)[1], 16)
    return peers


def _parse_locked_files(text: str, share_paths: list[Path]) -> list[Path]:
    """Open paths from smbstatus -L's table (for an smbstatus without --json)."""
    found = set()
    roots = {str(p) for p in share_paths}
    for line in text.splitlines():
        m = _LOCKED_LINE.search(line)
        if m and m.group("share") in roots:
            name = m.group("name")
            path = m.group("share") if name == "." else os.path.join(m.group("share"), name)
            found.add(Path(os.path.normpath(path)))
    return sorted(found)


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after "(comm)": state, ppid, pgrp, ...; None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()


def _pgid_of(pid: int) -> int | None:
    fields = _proc_stat(pid)
    return int(fields[2]) if fields and len(fields) >= 3 else None


def _all_pids() -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit()]


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    members = []
    for pid in _all_pids():
        fields = _proc_stat(pid)
        if fields and len(fields) >= 3 and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(pid)
    return members


def _processes_using(conf_path: Path) -> list[int]:
    """Live processes whose command line names ``conf_path`` (our smb.conf)."""
    needle = str(conf_path).encode()
    found = []
    for pid in _all_pids():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmdline = fh.read()
        except OSError:
            continue
        fields = _proc_stat(pid)
        if needle in cmdline and fields and fields[0] != "Z":
            found.append(pid)
    return found


def _wait_group_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _group_members(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _terminate_group(pgid: int, leader: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """SIGTERM a process group, SIGKILL it if it lingers; wait until none of it is alive.

    Members whose parent died first stay zombies until init reaps them; they are dead
    already and not waited for.
    """
    # Members first, so that the leader (still alive) reaps them: killed together, children
    # that outlive their parent become zombies until init gets round to them.
    members = [pid for pid in _group_members(pgid) if pid != pgid]
    for pid in members:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") for p in members):
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    if leader is not None:
        try:
            leader.wait(timeout=timeout / 2)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            leader.wait(timeout=timeout / 2)
    if not _wait_group_gone(pgid, timeout / 2):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        if not _wait_group_gone(pgid, timeout / 2):
            raise RuntimeError(f"process group {pgid} (smbd) did not go away")


@atexit.register
def _stop_all() -> None:
    for server in list(_running):
        with contextlib.suppress(Exception):
            server.stop()
