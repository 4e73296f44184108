"""Which transport a run uses: pysmb (SMB 2.0.2, the one BackDown is built on) or the SMB 3
one on smbprotocol (smb3.py), chosen once per run from the profile's `protocol` and
`encrypt` settings.

- `smb2`: pysmb only; `smb3`: SMB 3 only (2.1 to 3.1.1, encryption when asked for or
  required).
- `auto` (the default): SMB 3 when encryption is asked for; otherwise pysmb, unless the
  first connection of the run shows the server will not take it (its minimum dialect is
  above 2.0.2, or the share requires encryption), and then SMB 3 for the whole run. A
  refused password is never tried again on the other transport: a second refused logon
  counts towards locking the account.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from backdown.errors import AuthError, BackdownError, ConnectError, NoAnswer, ShareError
from backdown.smb.connect import connect as pysmb_connect
from backdown.smb.endpoint import Endpoint
from backdown.smb.interface import Connector, Session

PROTOCOLS = ("auto", "smb2", "smb3")


def smb3_connector(encrypt: bool) -> Connector:
    def connect(endpoint: Endpoint, cancel: threading.Event | None) -> Session:
        # Imported here: smbprotocol and its cryptography take time to load, and most runs
        # against an ordinary server never need them.
        from backdown.smb.smb3 import connect3

        return connect3(endpoint, cancel, encrypt=encrypt)

    return connect


@dataclass
class Chooser:
    """A Connector that settles on a transport at its first connection and keeps it."""

    protocol: str = "auto"
    encrypt: bool = False
    chosen: str | None = None  # "smb2" or "smb3" once decided
    why: str = ""  # why auto chose SMB 3, for `backdown test`
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, endpoint: Endpoint, cancel: threading.Event | None) -> Session:
        with self._lock:
            if self.chosen is None:
                return self._first(endpoint, cancel)
        if self.chosen == "smb3":
            return smb3_connector(self.encrypt)(endpoint, cancel)
        return pysmb_connect(endpoint, cancel)

    def _first(self, endpoint: Endpoint, cancel: threading.Event | None) -> Session:
        if self.protocol == "smb3" or self.encrypt:
            session = smb3_connector(self.encrypt)(endpoint, cancel)
            self.chosen = "smb3"
            self.why = "asked for" if self.protocol == "smb3" else "encryption asked for"
            return session
        if self.protocol == "smb2":
            session = pysmb_connect(endpoint, cancel)
            self.chosen = "smb2"
            return session
        try:
            session = pysmb_connect(endpoint, cancel)
            session.listdir("")  # a share that requires encryption refuses only here
        except (AuthError, NoAnswer):
            raise  # a wrong password, or a server that does not answer: the same on SMB 3
        except (ConnectError, ShareError) as first:
            return self._fall_back(endpoint, cancel, first)
        self.chosen = "smb2"
        return session

    def _fall_back(
        self, endpoint: Endpoint, cancel: threading.Event | None, first: BackdownError
    ) -> Session:
        try:
            session = smb3_connector(False)(endpoint, cancel)
        except (AuthError, ShareError):
            raise  # SMB 3 got further: its error names the real problem
        except BackdownError:
            raise first from None  # SMB 3 did no better: the first error stands
        self.chosen = "smb3"
        self.why = f"the server would not take SMB 2.0.2 ({first})"
        return session


def connector_for(protocol: str, encrypt: bool) -> Chooser:
    """The run's connector for a profile's settings (see the module's docstring)."""
    if protocol not in PROTOCOLS:
        raise ValueError(protocol)
    return Chooser(protocol, encrypt)
