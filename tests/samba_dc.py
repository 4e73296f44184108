"""A real, throw-away Active Directory domain for the Kerberos tests: Samba's own domain
controller (``samba``, with its KDC), provisioned by the test run in a temporary folder.

What it is:
- ``samba-tool domain provision`` makes a domain (realm ``BACKDOWN.TEST``) under a
  temporary folder in a few seconds; ``samba -i`` then runs only what the tests need: the
  KDC, the file server (smbd) and winbindd (which maps domain users to Unix ids for smbd).
- Everything listens on 127.0.0.1 only, each on a free high port: SMB, Kerberos and
  kpasswd (Samba's ``smb ports``, ``krb5 port``, ``kpasswd port``); no DNS, LDAP or RPC
  server is started.
- winbindd's socket has no setting the file server's client library obeys (it always looks
  in /run/samba/winbindd), so the DC runs in a mount namespace of its own (``unshare
  --mount``) with a private folder mounted on /run/samba: nothing of the machine's is
  touched, and two domains (or a system Samba) do not collide.
- The server's name for Kerberos is ``localhost`` (an extra service principal,
  ``cifs/localhost``): clients reach it as ``localhost`` and ask for that ticket, as a
  domain PC asks for ``cifs/fileserver.example.local``.
- A ``krb5.conf`` of its own points the realm at the KDC's port; tests give it to clients
  in KRB5_CONFIG, with a ticket cache of their own in KRB5CCNAME, and get tickets with the
  real ``kinit``.

Needs root, Debian's samba-ad-dc, samba-ad-provision and krb5-user (``.ci/run`` installs
them), and ``unshare``; ``domain_missing_reason()`` says what is missing.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from samba import HOST, _set_parent_death_signal, _terminate_group, free_port

REALM = "BACKDOWN.TEST"
DOMAIN = "BACKDOWN"
SERVER_NAME = "localhost"  # what clients connect to, and the ticket they ask for
START_TIMEOUT = 60.0
PROVISION_FILE = Path(
    "/usr/share/samba/setup/ad-schema/AD_DS_Attributes__Windows_Server_2012_R2.ldf"
)


def domain_missing_reason() -> str | None:
    """Why this machine cannot run the test domain, or None when it can."""
    if os.geteuid() != 0:
        return "the test domain controller needs root"
    for tool in ("samba", "samba-tool", "kinit", "unshare"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"{tool} is not installed (Debian: samba-ad-dc, krb5-user)"
    if not PROVISION_FILE.exists():
        return "samba-ad-provision is not installed"
    from backdown.smb.kerberos import missing

    return missing()
    return None


def _tool(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


class SambaDomain:
    """One private domain controller; see the module docstring."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dc = root / "dc"
        self.share = root / "share"
        self.run = root / "run"  # mounted on /run/samba inside the DC's namespace
        self.logs = root / "log"
        self.krb5_conf = root / "krb5.conf"
        self.smb_port = free_port()
        self.kdc_port = free_port()
        self.kpasswd_port = free_port()
        self.users: dict[str, str] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._admin_password = "Adm-" + secrets.token_urlsafe(12) + "9a"

    # ----------------------------------------------------------------- set-up

    @property
    def conf(self) -> Path:
        return self.dc / "etc" / "smb.conf"

    def provision(self) -> None:
        for folder in (self.share, self.run, self.logs):
            folder.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        self.share.chmod(0o1777)  # domain users map to ids winbindd picks: let any write
        options = {
            "interfaces": HOST,
            "bind interfaces only": "yes",
            "smb ports": str(self.smb_port),
            "krb5 port": str(self.kdc_port),
            "kpasswd port": str(self.kpasswd_port),
            "server services": "s3fs, kdc, winbindd",
        }
        command = [
            _tool("samba-tool"), "domain", "provision", f"--realm={REALM}",
            f"--domain={DOMAIN}", "--server-role=dc", "--dns-backend=NONE",
            f"--adminpass={self._admin_password}", f"--targetdir={self.dc}",
            "--host-name=bddc",
        ] + [f"--option={key}={value}" for key, value in options.items()]  # fmt: skip
        self._run(command, "provision")
        text = self.conf.read_text()
        # The provisioned file keeps a log under /var/log and offers printers and homes.
        text = text.split("[homes]")[0].replace(
            "\tlog file = /var/log/samba/log.%m\n",
            f"\tlog file = {self.logs}/log.%m\n\tlog level = 1\n\tpid directory = {self.run}\n"
            "\twinbindd socket directory = /run/samba/winbindd\n"
            "\tload printers = no\n\tprinting = bsd\n\tprintcap name = /dev/null\n"
            "\tdisable spoolss = yes\n",
        )
        text += f"\n[backup]\n\tpath = {self.share}\n\tread only = no\n"
        self.conf.write_text(text)
        self._run(self._samba_tool("spn", "add", f"cifs/{SERVER_NAME}", "BDDC$"), "spn add")
        self.krb5_conf.write_text(
            "[libdefaults]\n"
            f"\tdefault_realm = {REALM}\n"
            "\tdns_lookup_kdc = false\n\tdns_lookup_realm = false\n"
            "\trdns = false\n\tdns_canonicalize_hostname = false\n"
            f"[realms]\n\t{REALM} = {{\n\t\tkdc = {HOST}:{self.kdc_port}\n\t}}\n"
            f"[domain_realm]\n\t{SERVER_NAME} = {REALM}\n"
        )

    def add_user(self, name: str) -> str:
        """A domain user with a random password (returned)."""
        password = "Pw-" + secrets.token_urlsafe(12) + "7b"
        self._run(self._samba_tool("user", "create", name, password), "user create")
        self.users[name] = password
        return password

    def set_option(self, key: str, value: str) -> None:
        """Change a [global] setting; the file server reads it at the next connection."""
        text = self.conf.read_text()
        lines = [line for line in text.splitlines() if not line.strip().startswith(f"{key} =")]
        head = lines.index("[global]")
        lines.insert(head + 1, f"\t{key} = {value}")
        self.conf.write_text("\n".join(lines) + "\n")

    def _samba_tool(self, *args: str) -> list[str]:
        return [_tool("samba-tool"), *args, "-s", str(self.conf)]

    def _run(self, command: list[str], what: str) -> None:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"samba-tool {what} failed ({proc.returncode}):\n{proc.stderr}")

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> SambaDomain:
        script = 'set -e; mkdir -p /run/samba; mount --bind "$1" /run/samba; exec "$2" -i -s "$3"'
        with open(self.logs / "samba.out", "ab") as out:
            self._proc = subprocess.Popen(
                [_tool("unshare"), "--mount", "--propagation", "private", "sh", "-c", script,
                 "sh", str(self.run), _tool("samba"), str(self.conf)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_set_parent_death_signal,
            )  # fmt: skip
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"samba exited during start-up:\n{self.log_tail()}")
            if (
                all(_listening(port) for port in (self.smb_port, self.kdc_port))
                and (self.run / "winbindd" / "pipe").exists()
            ):
                return
            time.sleep(0.2)
        raise RuntimeError(f"samba not ready after {START_TIMEOUT:.0f} s\n{self.log_tail()}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(RuntimeError):
                _terminate_group(proc.pid, proc, 15.0)

    def log_tail(self, lines: int = 30) -> str:
        text = ""
        for path in sorted(self.logs.glob("*")):
            if path.is_file():
                text += f"--- {path.name}\n" + "\n".join(path.read_text().splitlines()[-lines:])
        return text

    # ----------------------------------------------------------------- clients

    def client_env(self, cache: Path) -> dict[str, str]:
        """Environment variables that give a client this realm and a ticket cache."""
        return {"KRB5_CONFIG": str(self.krb5_conf), "KRB5CCNAME": f"FILE:{cache}"}

    def kinit(self, user: str, cache: Path, lifetime: str = "") -> None:
        """Get `user` a ticket into `cache` with the real kinit (password on its stdin)."""
        command = [_tool("kinit")] + (["-l", lifetime] if lifetime else []) + [user]
        proc = subprocess.run(
            command, input=self.users[user] + "\n", capture_output=True, text=True,
            timeout=30, env={**os.environ, **self.client_env(cache)},
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"kinit {user} failed: {proc.stderr.strip()}")


def _listening(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return True
    except OSError:
        return False


def new_domain() -> SambaDomain:
    """Provision and start a domain in a new temporary folder (the caller stops it)."""
    domain = SambaDomain(Path(tempfile.mkdtemp(prefix="backdown-samba-dc-")))
    domain.provision()
    return domain.start()
