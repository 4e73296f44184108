"""Where a session goes: server, port, share, who logs on, and how long to wait."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from backdown.errors import ConnectError

CONNECT_TIMEOUT = 10.0  # TCP connect plus logon
# A request unanswered this long means the server or the link is gone. Long enough for a
# busy NAS's slowest answer; an interim reply (the server saying "working on it") restarts it.
OPERATION_TIMEOUT = 20.0


@dataclass(frozen=True)
class Endpoint:
    """Everything needed to open a session; the password is kept out of repr()."""

    server: str
    port: int
    share: str
    user: str = ""
    domain: str = ""
    client_name: str = "BACKDOWN"
    password: str = field(default="", repr=False)
    # Log on with the user's Kerberos ticket instead of the password (SMB 3 transport only).
    kerberos: bool = False
    connect_timeout: float = CONNECT_TIMEOUT
    timeout: float = OPERATION_TIMEOUT

    @property
    def where(self) -> str:
        host = f"[{self.server}]" if ":" in self.server else self.server
        return f"{host}:{self.port}"


SIZE_LIMITS = ("max_read_size", "max_write_size", "max_transact_size")


def check_request_sizes(endpoint: Endpoint, negotiated: Any) -> None:
    """Refuse a server that negotiated absurdly small requests (under 1 KiB), for either
    transport: `negotiated` is the library's connection, with the three sizes."""
    for name in SIZE_LIMITS:
        size = int(getattr(negotiated, name))
        if size < 1024:
            raise ConnectError(
                f"{endpoint.where} allows only {size} bytes per request ({name}); check the "
                "server's settings"
            )
