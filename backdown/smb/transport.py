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
- A Kerberos logon (the endpoint's `kerberos`) always goes over SMB 3: pysmb has NTLM only.
  With `auth = auto`, a server that refuses NTLM altogether (a domain that takes only
  Kerberos) gets the user's Kerberos ticket instead, when there is one: that refusal says
  nothing about the password and counts towards no lock-out.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from backdown.errors import (
    AuthError,
    BackdownError,
    ConnectError,
    NoAnswer,
    NtlmRefused,
    ShareError,
)
from backdown.smb.connect import connect as pysmb_connect
from backdown.smb.endpoint import Endpoint
from backdown.smb.interface import Connector, Session

PROTOCOLS = ("auto", "smb2", "smb3")


def _ticket() -> str | None:
    from backdown.smb.kerberos import ticket_principal

    return ticket_principal(os.environ)


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
    # auth = auto: a server that refuses NTLM gets the user's Kerberos ticket, if any.
    kerberos_fallback: bool = False
    ticket: Callable[[], str | None] = _ticket
    chosen: str | None = None  # "smb2" or "smb3" once decided
    why: str = ""  # why auto chose SMB 3, for `backdown test`
    use_kerberos: bool = False  # set when the fallback to Kerberos was taken
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, endpoint: Endpoint, cancel: threading.Event | None) -> Session:
        with self._lock:
            if self.chosen is None:
                try:
                    return self._first(endpoint, cancel)
                except NtlmRefused:
                    if not self.kerberos_fallback or self.ticket() is None:
                        raise
                    self.use_kerberos = True
                    session = smb3_connector(self.encrypt)(self._endpoint(endpoint), cancel)
                    self.chosen = "smb3"
                    self.why = "the server refuses NTLM: logged on with your Kerberos ticket"
                    return session
        endpoint = self._endpoint(endpoint)
        if self.chosen == "smb3":
            return smb3_connector(self.encrypt)(endpoint, cancel)
        return pysmb_connect(endpoint, cancel)

    def _endpoint(self, endpoint: Endpoint) -> Endpoint:
        if self.use_kerberos:
            return replace(endpoint, kerberos=True, password="")
        return endpoint

    def _first(self, endpoint: Endpoint, cancel: threading.Event | None) -> Session:
        if endpoint.kerberos:
            session = smb3_connector(self.encrypt)(endpoint, cancel)
            self.chosen = "smb3"
            self.why = "Kerberos logon (the SMB 2 transport has NTLM only)"
            return session
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


def connector_for(protocol: str, encrypt: bool, auth: str = "password") -> Chooser:
    """The run's connector for a profile's settings (see the module's docstring)."""
    if protocol not in PROTOCOLS:
        raise ValueError(protocol)
    return Chooser(protocol, encrypt, kerberos_fallback=auth == "auto")
