"""The SMB 2.1 to 3.1.1 link: smbprotocol's connection with BackDown's wire rules on top.

smbprotocol (>= 1.15) frames, signs, encrypts and decrypts, and a receiver thread of its own
files each reply under its request and counts the credits every reply grants (interim
replies included). What it leaves out, and this module adds, as wire.py does for pysmb:
- a deadline on every wait: its receive() waits forever unless given a timeout, and its
  session setup and tree connect give none. Replies are taken here from the request's
  event with a deadline (an interim "pending" reply restarts it) and the cancel flag looked
  at every POLL_SECONDS; a logon or tree connect runs under a watchdog that closes the socket
  when its time is up or the run is cancelled;
- credits reserved before a request or chain is sent (smbprotocol raises half-way through a
  chain that exceeds them), asked for in advance so several reads or writes can be in flight;
- reply checks smbprotocol skips: on a signed session an unsigned success is refused (it only
  checks signatures that are there), and on an encrypted session or share a reply that was
  not encrypted is refused (it decrypts what is encrypted and takes the rest as it comes);
- any failure of the link itself (timeout, reset, bad signature) breaks it for good.

It relies on a few smbprotocol internals, the same in 1.15 to 1.17 (the Connection's are
checked by check_smbprotocol at connect): Connection.sequence_window/sequence_lock (the
credits), outstanding_requests, _calculate_credit_charge, _t_exc (the receiver's failure);
of its Tcp transport, recv (wrapped by _EncryptionGuard) and _sock (to bound a send the
server stops reading).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from smbprotocol.connection import Connection, Request, SMB2Echo
from smbprotocol.exceptions import SMBAuthenticationError, SMBException, SMBResponseException
from smbprotocol.header import Commands, NtStatus, Smb2Flags
from smbprotocol.session import Session as ProtocolSession
from smbprotocol.tree import TreeConnect

from backdown.errors import (
    AuthError,
    BackdownError,
    Cancelled,
    ConnectError,
    KerberosError,
    NoAnswer,
    UsageError,
)
from backdown.smb import kerberos, logon
from backdown.smb.endpoint import Endpoint, check_request_sizes
from backdown.smb.status import status_error

# smbprotocol logs every request at INFO and its receiver thread's failure with a traceback
# at ERROR; BackDown reports that failure itself, in one line (cli.py quiets pysmb the same way).
logging.getLogger("smbprotocol").setLevel(logging.CRITICAL)

POLL_SECONDS = 0.2  # how often a wait looks at the cancel flag
CREDITS_WANTED = 512  # the credit window asked for: 32 MiB of reads or writes in flight
CREDIT_STEP = 64  # asked for beyond a request's own charge while the window is smaller
_TRANSFORM = b"\xfdSMB"  # an encrypted message ([MS-SMB2] 2.2.41)
RELATED_FID = b"\xff" * 16  # "the handle the previous request of this compound opened"
CREDIT_BYTES = 65536  # what one credit pays for in a read or write ([MS-SMB2] 3.1.5.2)

DIALECTS = {0x0202: "2.0.2", 0x0210: "2.1", 0x0300: "3.0", 0x0302: "3.0.2", 0x0311: "3.1.1"}
_CIPHERS = {1: "AES-128-CCM", 2: "AES-128-GCM", 3: "AES-256-CCM", 4: "AES-256-GCM"}


class DialectTooOld(ConnectError):
    """The server speaks only SMB 2.0.2 (or older): the SMB 2.0.2 transport (pysmb) is for it."""


def check_smbprotocol(conn: Connection) -> None:
    """Refuse an smbprotocol without the internals this link relies on (see the docstring)."""
    missing = [
        name
        for name in ("sequence_window", "sequence_lock", "outstanding_requests", "_t_exc")
        if not hasattr(conn, name)
    ]
    if not callable(getattr(conn, "_calculate_credit_charge", None)):
        missing.append("_calculate_credit_charge")
    if missing:
        raise UsageError(
            "BackDown's SMB 3 layer does not know this version of smbprotocol (missing "
            f"{', '.join(missing)}); install a tested one: pip install 'smbprotocol>=1.15,<1.18'"
        )


@dataclass
class Pending:
    """A request sent and not yet answered, and when it counts as unanswered."""

    request: Request
    deadline: float

    @property
    def mid(self) -> int:
        return int(self.request.message["message_id"].get_value())


@dataclass(frozen=True)
class Reply:
    """A final reply: its status and body (the bytes after the 64-byte SMB2 header)."""

    status: int
    body: bytes


class Link:
    """One logged-on SMB 2.1+ connection, its session and (once opened) its share.

    Not thread-safe: one per thread (smbprotocol's receiver thread is its own).
    """

    def __init__(
        self, conn: Connection, session: ProtocolSession, endpoint: Endpoint,
        cancel: threading.Event | None, guard: _EncryptionGuard,
    ) -> None:  # fmt: skip
        self.conn = conn
        self.session = session
        self.endpoint = endpoint
        self.timeout = endpoint.timeout
        self.where = endpoint.where
        self._cancel = cancel
        self.tree: TreeConnect | None = None
        self.broken: ConnectError | None = None
        self._guard = guard
        self.requests = 0  # sent so far, for tests and the benchmark
        self.one_by_one = 0  # chains sent a request at a time (the credit window was smaller)
        _bound_sends(conn, endpoint.timeout)
        if session.encrypt_data:
            guard.on = True

    # -- what was negotiated -------------------------------------------------------------
    @property
    def dialect(self) -> str:
        return DIALECTS.get(int(self.conn.dialect), f"0x{int(self.conn.dialect):04X}")

    @property
    def signed(self) -> bool:
        """Requests and replies carry signatures (smbprotocol turns signing off when it
        encrypts: the encryption authenticates every message instead)."""
        return bool(self.session.signing_required and self.session.signing_key)

    @property
    def encrypted(self) -> bool:
        """Everything on the share is encrypted (the session's, or the share's own setting)."""
        return bool(self.session.encrypt_data or (self.tree is not None and self.tree.encrypt_data))

    @property
    def cipher(self) -> str | None:
        if not self.encrypted:
            return None
        if int(self.conn.dialect) < 0x0311:
            return "AES-128-CCM"
        return _CIPHERS.get(int(self.conn.cipher_id or 0), "unknown")

    @property
    def credits(self) -> int:
        with self.conn.sequence_lock:
            window = self.conn.sequence_window
            return int(window["high"] - window["low"])

    @property
    def in_flight(self) -> int:
        """Requests sent whose replies were not taken (the receiver's own echoes aside)."""
        return len(self.conn.outstanding_requests)

    def charge(self, message: Any) -> int:
        """The credits a request costs ([MS-SMB2] 3.2.4.1.5), as smbprotocol will charge it."""
        return max(1, int(self.conn._calculate_credit_charge(message)))

    # -- the share -----------------------------------------------------------------------
    @property
    def tid(self) -> int:
        """The share's tree id, connecting to the share on first use."""
        if self.tree is None:
            self.tree = self._tree_connect()
        return int(self.tree.tree_connect_id)

    def _tree_connect(self) -> TreeConnect:
        self._check()
        path = f"\\\\{self.endpoint.server}\\{self.endpoint.share}"
        tree = TreeConnect(self.session, path)
        session = self.session
        # [MS-SMB2] 3.2.4.1.1: in 3.1.1 a TREE_CONNECT is signed even on a session that signs
        # nothing else (Samba refuses it otherwise); smbprotocol signs it only on a signing
        # session, so the session signs for this one request.
        sign_once = (
            int(self.conn.dialect) >= 0x0311
            and session.signing_key is not None
            and not session.signing_required
            and not session.encrypt_data
        )
        try:
            with _watchdog(self.conn, self.timeout, self._cancel) as fired:
                if sign_once:
                    session.signing_required = True
                try:
                    # The 3.0/3.0.2 downgrade check needs a signing key: none for a guest.
                    tree.connect(require_secure_negotiate=session.signing_key is not None)
                finally:
                    if sign_once:
                        session.signing_required = False
        except SMBResponseException as exc:
            raise status_error(exc.status, "opening the share", self.endpoint.server,
                               self.endpoint.share) from None  # fmt: skip
        except (SMBException, OSError, ValueError) as exc:
            raise self._broken_by(fired, exc, "opening the share") from None
        if tree.encrypt_data:
            self._guard.on = True
        return tree

    # -- sending -------------------------------------------------------------------------
    def reserve(self, needed: int) -> bool:
        """Make sure `needed` credits are there; False if the server's window stays smaller.

        Called with nothing of ours in flight (a pipeline waits for its own replies
        instead): an echo asks for more, as wire.py does.
        """
        while self.credits < needed:
            before = self.credits
            if before < 1:
                raise self._break(None, "the server left this connection without credits")
            (pending,) = self.send([SMB2Echo()], ask=needed - before + CREDIT_STEP, tree=False)
            self.wait(pending)
            if self.credits <= before:
                return False  # the echo's reply granted no more than it cost
        return True

    def send(
        self, messages: Sequence[Any], related: bool = False, *, ask: int = 0, tree: bool = True
    ) -> list[Pending]:
        """Send requests as one compound (`related`: a chain on the first one's handle).

        The caller has reserved the credits. `ask`: credits to ask for beyond the charge of
        a single request (the server grants what it will).
        """
        self._check()
        tid = self.tid if tree else None
        sid = self.session.session_id
        try:
            if len(messages) == 1:
                charge = self.charge(messages[0])
                requests = [self.conn.send(messages[0], sid, tid, credit_request=charge + ask)]
            else:
                requests = self.conn.send_compound(list(messages), sid, tid, related=related)
        except (SMBException, OSError, ValueError) as exc:
            # A send the server stopped reading times out (_bound_sends): it is not answering.
            raise self._break(exc, silent=isinstance(exc, TimeoutError)) from None
        self.requests += len(requests)
        deadline = time.monotonic() + self.timeout
        return [Pending(r, deadline) for r in requests]

    def ask_for(self, charge: int) -> int:
        """Credits to ask for beyond `charge` so the window grows to CREDITS_WANTED."""
        return CREDIT_STEP if self.credits - charge < CREDITS_WANTED else 0

    def call(self, messages: Sequence[Any], related: bool = True) -> list[Reply]:
        """Send a chain and take its replies: one round trip when the credits allow."""
        if self.reserve(sum(self.charge(m) for m in messages)):
            return [self.wait(p) for p in self.send(messages, related)]
        return self._one_by_one(messages, related)

    def _one_by_one(self, messages: Sequence[Any], related: bool) -> list[Reply]:
        """A chain the credit window cannot hold, sent a request at a time.

        Related semantics are kept ([MS-SMB2] 3.3.5.2.7.2): a request on RELATED_FID gets
        the handle of the chain's last CREATE, and fails with that CREATE's status if it
        failed; a CREATE needs no handle from before it and always runs.
        """
        self.one_by_one += 1
        replies: list[Reply] = []
        opener: Reply | None = None
        for i, message in enumerate(messages):
            is_create = message.COMMAND == Commands.SMB2_CREATE
            if related and i > 0 and not is_create and opener is not None:
                if opener.status != 0:
                    replies.append(Reply(opener.status, b""))
                    continue
                if "file_id" in message.fields and message["file_id"].get_value() == RELATED_FID:
                    message["file_id"] = opener.body[64:80]  # the CREATE reply's FileId
            if not self.reserve(self.charge(message)):
                raise self._break(None, "the server grants too few credits for one request")
            (pending,) = self.send([message])
            reply = self.wait(pending)
            if is_create:
                opener = reply
            replies.append(reply)
        return replies

    # -- receiving -----------------------------------------------------------------------
    def wait(self, pending: Pending) -> Reply:
        """Block until this request has its final reply; the reply, whatever its status.

        A reply that is there is taken even past the request's deadline (the caller may have
        been busy with the replies before it); one that is not fails the wait then.
        """
        request = pending.request
        while True:
            self._check()
            self.check_cancel()
            left = pending.deadline - time.monotonic()
            if not request.response_event.wait(max(0.0, min(POLL_SECONDS, left))):
                if left <= 0:
                    raise self._break(None, f"no answer in {self.timeout:g} s", silent=True)
                continue
            with request.response_event_lock:
                header = request.response
                status = None if header is None else int(header["status"].get_value())
                if header is None or status == NtStatus.STATUS_PENDING:
                    # No final reply: the receiver ended (it sets every event as it goes),
                    # or the server said "still working on it" and the clock starts again.
                    if not self._alive():
                        raise self._break(self.conn._t_exc)
                    if header is not None:
                        request.response_event.clear()
                        pending.deadline = time.monotonic() + self.timeout
                        continue
                if header is None:
                    time.sleep(POLL_SECONDS / 10)  # (not expected: an event set without a reply)
                    continue
            self.conn.outstanding_requests.pop(pending.mid, None)
            assert status is not None
            self._verify(header, status)
            return Reply(status, header["data"].get_value())

    def check_cancel(self) -> None:
        """Raise Cancelled if the run was interrupted (looked at before each block sent)."""
        if self._cancel is not None and self._cancel.is_set():
            raise Cancelled()

    def _verify(self, header: Any, status: int) -> None:
        """On a signed session a successful reply must be signed ([MS-SMB2] 3.2.5.1.3);
        smbprotocol checked the signature if there was one. An unsigned error reply is
        accepted (it carries no data); an encrypted one was checked by its decryption."""
        if status != 0 or not self.signed or self._guard.on:
            return
        if not header["flags"].has_flag(Smb2Flags.SMB2_FLAGS_SIGNED):
            raise self._break(None, "the server sent an unsigned reply on a signed session")

    # -- failure -------------------------------------------------------------------------
    def _alive(self) -> bool:
        return self.conn._t_exc is None and bool(self.conn.transport.connected)

    def _check(self) -> None:
        if self.broken is not None:
            raise self.broken

    def _broken_by(self, fired: list[str], exc: BaseException, what: str) -> BackdownError:
        """The error for a library call the watchdog may have cut short."""
        if "cancel" in fired:
            self._break(None, "interrupted")
            return Cancelled()
        if "timeout" in fired:
            return self._break(None, f"no answer in {self.timeout:g} s during {what}", silent=True)
        return self._break(exc)

    def _break(
        self, exc: BaseException | None, why: str = "", silent: bool = False
    ) -> ConnectError:
        """Mark the link unusable; the error to raise (every later call raises it too)."""
        if self.broken is not None:
            return self.broken
        if not why:
            why = describe(exc, self.endpoint) if exc is not None else "connection closed"
        kind = NoAnswer if silent else ConnectError
        self.broken = kind(f"lost the connection to {self.where} ({why})")
        self.close()
        return self.broken

    def close(self) -> None:
        """Close the socket and let smbprotocol's receiver thread end (it is joined for up
        to 2 s). No log-off: like the pysmb transport, the server ends the session with the
        connection, and a server that stopped answering cannot hold the close up."""
        try:
            self.conn.disconnect(close=False)
        except Exception:  # closing a dead socket must never mask the real error
            pass


class _EncryptionGuard:
    """Refuses, in smbprotocol's receiver thread, a message in clear once the session or
    the share encrypts.

    smbprotocol decrypts what comes encrypted and takes anything else as it is, so a forged
    reply in clear would be believed ([MS-SMB2] 3.2.5.1.1.1 says disconnect). It wraps the
    transport's recv right after the negotiation, before the logon: the receiver thread is
    then waiting in the unwrapped recv for the first logon reply (in clear anyway), and
    every later message goes through the wrapper. Its own keep-alive echo (sent in clear
    when only the share encrypts) may come back in clear.
    """

    def __init__(self, conn: Connection) -> None:
        self.on = False
        receive = conn.transport.recv

        def recv(timeout: float) -> bytes:
            packet: bytes = receive(timeout)
            if (self.on and packet and packet[:4] != _TRANSFORM
                    and int.from_bytes(packet[12:14], "little") != Commands.SMB2_ECHO):  # fmt: skip
                raise SMBException("a reply came unencrypted on an encrypted session")
            return packet

        conn.transport.recv = recv


# -- opening a link ------------------------------------------------------------------------
def open_link(
    endpoint: Endpoint, cancel: threading.Event | None, *, encrypt: bool, require_signing: bool
) -> Link:
    """TCP, negotiation (SMB 2.0.2 to 3.1.1 offered, 2.1 or later accepted) and logon (NTLM,
    or Kerberos when the endpoint says so), all within endpoint.connect_timeout; the share is
    opened on first use."""
    if endpoint.kerberos and (why := kerberos.missing()) is not None:
        raise KerberosError(why)
    conn = Connection(uuid.uuid4(), endpoint.server, endpoint.port, require_signing=require_signing)
    check_smbprotocol(conn)
    try:
        with _watchdog(conn, endpoint.connect_timeout, cancel) as fired:
            try:
                conn.connect(timeout=endpoint.connect_timeout)
            except BaseException as exc:
                raise _connect_error(exc, fired, endpoint) from None
            _check_dialect(conn, endpoint)
            guard = _EncryptionGuard(conn)
            # Made after the negotiation: it copies require_signing, which the server's
            # answer may just have turned on.
            session = _protocol_session(conn, endpoint, encrypt)
            try:
                session.connect()
            except BaseException as exc:
                dialect = DIALECTS.get(int(conn.dialect), hex(int(conn.dialect)))
                raise _logon_error(exc, fired, endpoint, dialect) from None
        return Link(conn, session, endpoint, cancel, guard)
    except BaseException:
        _drop(conn)
        raise


def _protocol_session(conn: Connection, endpoint: Endpoint, encrypt: bool) -> ProtocolSession:
    if endpoint.kerberos:
        # No password: pyspnego takes the ticket from the user's cache (or the Windows
        # logon) and asks the KDC for one for cifs/<server>.
        principal = kerberos.principal_for(endpoint.user)
        return ProtocolSession(conn, principal, None, require_encryption=encrypt,
                               auth_protocol="kerberos")  # fmt: skip
    # NTLM wants DOMAIN\user; a profile without a user logs on as guest (pyspnego has no
    # anonymous logon: "Guest" with no password is what a server that allows guests maps).
    user = endpoint.user or "Guest"
    if endpoint.user and endpoint.domain and "@" not in endpoint.user:
        user = f"{endpoint.domain}\\{endpoint.user}"
    return ProtocolSession(conn, user, endpoint.password, require_encryption=encrypt,
                           auth_protocol="ntlm")  # fmt: skip


def _drop(conn: Connection) -> None:
    if conn.transport is not None:
        try:
            conn.disconnect(close=False)
        except Exception:
            pass


def _check_dialect(conn: Connection, endpoint: Endpoint) -> None:
    dialect = int(conn.dialect)
    if dialect < 0x0210:
        raise DialectTooOld(
            f"{endpoint.where} speaks only SMB {DIALECTS.get(dialect, hex(dialect))}; the "
            "SMB 3 transport needs SMB 2.1 or later (use the SMB 2 transport for this server)"
        )
    check_request_sizes(endpoint, conn)


def _connect_error(exc: BaseException, fired: list[str], endpoint: Endpoint) -> BaseException:
    """TCP connect and negotiation failures, as one line with what to do."""
    if "cancel" in fired:
        return Cancelled()
    cause = exc.__cause__ if isinstance(exc, ValueError) else exc
    if (
        "timeout" in fired
        or isinstance(cause, (TimeoutError, socket.timeout))
        or (isinstance(exc, SMBException) and "timeout" in str(exc).lower())
    ):
        return NoAnswer(
            f"cannot connect to {endpoint.where}: no answer in time (waited up to "
            f"{endpoint.connect_timeout:g} s); check that the server is on and the address "
            "and port are right"
        )
    if isinstance(cause, socket.gaierror):
        return ConnectError(
            f"cannot find server '{endpoint.server}': the name does not resolve; "
            "check the server address"
        )
    if isinstance(cause, ConnectionRefusedError):
        return ConnectError(
            f"cannot connect to {endpoint.where}: connection refused; check that the server "
            "is on and the address and port are right"
        )
    if isinstance(cause, OSError) or isinstance(exc, ValueError):
        return ConnectError(
            f"cannot connect to {endpoint.where}: {describe(cause, endpoint)}; check that the "
            "server is on and the address and port are right"
        )
    if isinstance(exc, Exception):
        return ConnectError(
            f"cannot talk SMB 2/3 with {endpoint.where} ({describe(exc, endpoint)}); is this "
            "an SMB server and port, and does it offer SMB 2.1 or later?"
        )
    return exc  # KeyboardInterrupt and the like go up as they are


def _logon_error(
    exc: BaseException, fired: list[str], endpoint: Endpoint, dialect: str
) -> BaseException:
    """Session setup failures: the cause in one line, never the password."""
    if "cancel" in fired:
        return Cancelled()
    if "timeout" in fired:
        return NoAnswer(
            f"{endpoint.where} did not finish the logon in {endpoint.connect_timeout:g} s; "
            "check that the server is working"
        )
    who = logon.who(endpoint.user)
    if endpoint.kerberos and isinstance(exc, SMBResponseException):
        who = f"the Kerberos ticket of {endpoint.user or 'this user'}"
    if isinstance(exc, SMBResponseException):
        status = int(exc.status)
        return logon.refused(status, endpoint.where, who, status_name(status),
                             kerberos=endpoint.kerberos)  # fmt: skip
    if endpoint.kerberos and isinstance(exc, ImportError):
        return KerberosError(kerberos.INSTALL)  # a part of pyspnego's Kerberos is missing
    text = describe(exc, endpoint)
    if endpoint.kerberos and isinstance(exc, SMBAuthenticationError):
        return kerberos.failure(exc, endpoint.where, endpoint.server,
                                kerberos.principal_for(endpoint.user))  # fmt: skip
    if isinstance(exc, SMBAuthenticationError):
        return AuthError(f"{endpoint.where} refused {who}: the logon failed ({text}); "
                         f"{logon.CHECK_PASSWORD}")  # fmt: skip
    if isinstance(exc, SMBException) and "guest" in text:
        return AuthError(
            f"{endpoint.where} let {who} in only as guest, which cannot sign or encrypt as "
            "this connection requires; log on with a user name and password"
        )
    if isinstance(exc, SMBException) and "encryption" in text:
        return ConnectError(
            f"{endpoint.where} cannot encrypt this connection (it chose SMB {dialect}; "
            "encryption needs SMB 3); enable SMB 3 on the server or turn encryption off"
        )
    if isinstance(exc, (SMBException, OSError, ValueError)):
        return ConnectError(f"lost the connection to {endpoint.where} during the logon ({text})")
    return exc


def status_name(status: int) -> str:
    """An NTSTATUS as its name and number, e.g. 'STATUS_LOGON_FAILURE (0xC000006D)'."""
    name = next((k for k, v in vars(NtStatus).items() if v == status and k.isupper()), None)
    return f"{name} (0x{status:08X})" if name else f"status 0x{status:08X}"


def describe(exc: BaseException | None, endpoint: Endpoint) -> str:
    """A library error as a short phrase, with the password (if any) blanked out."""
    if exc is None:
        return "connection closed"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        text = "no answer in time"
    elif isinstance(exc, (ConnectionResetError, BrokenPipeError, EOFError)):
        text = "connection closed by the server"
    elif isinstance(exc, ConnectionRefusedError):
        text = "connection refused"
    elif isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    else:
        text = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        if "socket was closed" in text or "SMBConnectionClosed" in text:
            text = "connection closed"
    if endpoint.password:
        text = text.replace(endpoint.password, "***")
    return text[:200]


@contextmanager
def _watchdog(
    conn: Connection, seconds: float, cancel: threading.Event | None
) -> Iterator[list[str]]:
    """Bound a library call that waits without a deadline: when `seconds` pass, or the run
    is cancelled, close the socket (the call then fails at once). Yields what fired."""
    fired: list[str] = []
    done = threading.Event()
    end = time.monotonic() + seconds

    def watch() -> None:
        while not done.wait(min(POLL_SECONDS, max(0.0, end - time.monotonic()))):
            if cancel is not None and cancel.is_set():
                fired.append("cancel")
            elif time.monotonic() >= end:
                fired.append("timeout")
            else:
                continue
            if conn.transport is not None:
                try:
                    conn.transport.close()
                except Exception:
                    pass
            return

    thread = threading.Thread(target=watch, name="backdown-smb3-watchdog", daemon=True)
    thread.start()
    try:
        yield fired
    finally:
        done.set()
        thread.join()


def _bound_sends(conn: Connection, timeout: float) -> None:
    """A send the server stops reading fails after `timeout` instead of blocking forever:
    smbprotocol puts its socket in blocking mode with no timeout (its receiver selects
    before every recv, so a timeout does not change how it reads)."""
    sock = getattr(conn.transport, "_sock", None)
    if isinstance(sock, socket.socket):
        sock.settimeout(timeout)
