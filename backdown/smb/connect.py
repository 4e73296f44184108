"""Open a session: TCP, SMB 2.0.2 negotiation and NTLMv2 logon by pysmb, then our wire."""

from __future__ import annotations

import functools
import ipaddress
import socket
import threading
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from smb.base import NotConnectedError, NotReadyError, SharedDevice, SMBTimeout
from smb.smb2_constants import SMB2_COM_SESSION_SETUP
from smb.smb_structs import ProtocolError
from smb.SMBConnection import SMBConnection

from backdown.errors import ConnectError, KerberosError, NoAnswer, UsageError
from backdown.smb import logon
from backdown.smb.endpoint import Endpoint, check_request_sizes
from backdown.smb.session import SmbSession
from backdown.smb.wire import Wire

# The wire uses pysmb's internals (request structures, session key, message ids): it is
# pinned to the version it was written and tested against (tests/test_wire_canary.py).
PYSMB_VERSION = "1.2.15"
DIALECT_202 = 0x0202
STATUS_MORE_PROCESSING_REQUIRED = 0xC0000016


class _Connection(SMBConnection):
    """pysmb's connection, remembering the dialect the server chose and the status of its
    last session setup reply (pysmb reports a refused logon only as False)."""

    dialect = 0
    setup_status = 0

    def _updateServerInfo_SMB2(self, payload: Any) -> None:
        super()._updateServerInfo_SMB2(payload)
        self.dialect = int(payload.dialect_revision)

    def _updateState_SMB2(self, message: Any) -> None:
        if message.command == SMB2_COM_SESSION_SETUP:
            self.setup_status = int(message.status)
        super()._updateState_SMB2(message)


@functools.cache
def check_pysmb() -> None:
    """Refuse to run on a pysmb other than the one the wire was tested with."""
    try:
        found = metadata.version("pysmb")
    except metadata.PackageNotFoundError:
        found = "(unknown)"
    if found != PYSMB_VERSION:
        raise UsageError(
            f"BackDown's SMB layer was tested with pysmb {PYSMB_VERSION}, but pysmb {found} is "
            f"installed; install the tested one: pip install pysmb=={PYSMB_VERSION}"
        )


def connect(endpoint: Endpoint, cancel: threading.Event | None = None) -> SmbSession:
    """Open and authenticate a session (NTLMv2, direct TCP), bounded by connect_timeout.

    `cancel`, when set, ends any wait of the session within a fraction of a second.
    """
    check_pysmb()
    if endpoint.kerberos:
        raise KerberosError(
            "the SMB 2 transport (pysmb) has no Kerberos logon; use --protocol auto or smb3"
        )
    conn = _new_connection(endpoint)
    try:
        ok = _logon(conn, endpoint)
        if not ok:
            status = conn.setup_status or logon.STATUS_LOGON_FAILURE
            raise logon.refused(
                status, endpoint.where, logon.who(endpoint.user), f"status 0x{status:08X}"
            )
        _check_dialect(conn, endpoint)
        wire = Wire(
            conn.sock,
            session_id=conn.session_id,
            next_mid=conn.mid + 1,
            signing_key=conn.signing_session_key if conn.is_signing_active else None,
            timeout=endpoint.timeout,
            where=endpoint.where,
            cancel=cancel,
        )
    except BaseException:
        conn.close()
        raise
    return SmbSession(
        endpoint,
        wire,
        max_read=int(conn.max_read_size),
        max_write=int(conn.max_write_size),
        max_transact=int(conn.max_transact_size),
        close=conn.close,
    )


def _new_connection(endpoint: Endpoint) -> _Connection:
    return _Connection(
        endpoint.user,
        endpoint.password,
        endpoint.client_name,
        "*SMBSERVER" if _is_ip(endpoint.server) else endpoint.server.split(".")[0].upper()[:15],
        domain=endpoint.domain,
        use_ntlm_v2=True,
        is_direct_tcp=True,
    )


def _logon(conn: _Connection, endpoint: Endpoint) -> bool:
    """pysmb's connect, its failures turned into ConnectError with what to do."""
    try:
        return bool(conn.connect(endpoint.server, endpoint.port, timeout=endpoint.connect_timeout))
    except socket.gaierror:
        raise ConnectError(
            f"cannot find server '{endpoint.server}': the name does not resolve; "
            "check the server address"
        ) from None
    except (TimeoutError, SMBTimeout):
        raise NoAnswer(
            f"cannot connect to {endpoint.where}: no answer in time (waited up to "
            f"{endpoint.connect_timeout:g} s); check that the server is on and the address "
            "and port are right"
        ) from None
    except ConnectionRefusedError:
        raise ConnectError(
            f"cannot connect to {endpoint.where}: connection refused; check that the server "
            "is on and the address and port are right"
        ) from None
    except (OSError, NotConnectedError, NotReadyError) as exc:
        why = "connection closed by the server" if not str(exc) else str(exc)
        raise ConnectError(
            f"cannot connect to {endpoint.where}: {why}; check that the server is on and the "
            "address and port are right"
        ) from None
    except ProtocolError as exc:
        status = conn.setup_status
        if status == logon.STATUS_ACCESS_DENIED:
            # How a server that requires encryption answers a client that cannot encrypt.
            raise DialectRefused(
                f"{endpoint.where} refused the SMB 2.0.2 logon (access denied): it most likely "
                "requires encryption, which needs SMB 3; use --protocol auto or smb3"
            ) from None
        if status >= 0xC0000000 and status != STATUS_MORE_PROCESSING_REQUIRED:
            # A logon refusal pysmb has no case for (NTLM blocked, password must change).
            raise logon.refused(
                status, endpoint.where, logon.who(endpoint.user), f"status 0x{status:08X}"
            ) from None
        if "does not support any of the pysmb dialects" in str(exc):
            raise DialectRefused(
                f"{endpoint.where} requires SMB 3 (its minimum dialect is above 2.0.2, or it "
                "requires encryption): use --protocol auto or smb3, which BackDown's SMB 3 "
                "transport serves"
            ) from None
        raise ConnectError(
            f"cannot talk SMB with {endpoint.where} (ProtocolError); is this an SMB server "
            "and port?"
        ) from None
    except Exception as exc:  # pysmb raises bare errors on malformed replies
        raise ConnectError(
            f"cannot talk SMB with {endpoint.where} ({exc.__class__.__name__}); is this an SMB "
            "server and port?"
        ) from None


@dataclass(frozen=True)
class ShareInfo:
    name: str
    comment: str


def list_shares(endpoint: Endpoint) -> list[ShareInfo]:
    """The server's disk shares, as a user would pick one (no IPC$, printers or the hidden
    administrative shares), through pysmb's NetShareEnum on IPC$ (SMB 2.0.2 servers; an
    SMB 3-only server refuses with DialectRefused). The endpoint's share is not used."""
    check_pysmb()
    if endpoint.kerberos:
        raise KerberosError(
            "listing the shares needs an NTLM logon (the SMB 2 transport has no Kerberos); "
            "type the share's name"
        )
    conn = _new_connection(endpoint)
    try:
        if not _logon(conn, endpoint):
            status = conn.setup_status or logon.STATUS_LOGON_FAILURE
            raise logon.refused(
                status, endpoint.where, logon.who(endpoint.user), f"status 0x{status:08X}"
            )
        try:
            found = conn.listShares(timeout=int(endpoint.timeout))
        except Exception as exc:  # pysmb's RPC errors come bare
            raise ConnectError(
                f"{endpoint.where} would not list its shares ({exc.__class__.__name__}); "
                "type the share's name"
            ) from None
    finally:
        conn.close()
    return sorted(
        (ShareInfo(s.name, s.comments or "") for s in found
         if s.type == SharedDevice.DISK_TREE and not s.isSpecial and not s.name.endswith("$")),
        key=lambda s: s.name.casefold(),
    )  # fmt: skip


class DialectRefused(ConnectError):
    """The server will not speak SMB 2.0.2 (pysmb's dialect): it wants SMB 3."""


def _check_dialect(conn: _Connection, endpoint: Endpoint) -> None:
    """SMB 2.0.2 with sane sizes, or one line that says why not."""
    if not conn.isUsingSMB2:
        raise ConnectError(
            f"{endpoint.where} offers only SMB1, which BackDown does not use (it is outdated "
            "and unsafe); enable SMB2 or later on the server (Samba: server max protocol)"
        )
    if conn.dialect != DIALECT_202:
        raise ConnectError(
            f"{endpoint.where} chose SMB dialect 0x{conn.dialect:04X}, but only 2.0.2 was "
            "offered; this server is not speaking SMB2 correctly"
        )
    check_request_sizes(endpoint, conn)


def _is_ip(server: str) -> bool:
    try:
        ipaddress.ip_address(server)
        return True
    except ValueError:
        return False
