"""The SMB2 wire: framing, credits, signing and waiting, on a socket pysmb logged on.

pysmb negotiates SMB 2.0.2 and authenticates (NTLMv2); from then on this module alone uses
the socket. It encodes requests with pysmb's own structures and decodes replies with them,
but, unlike pysmb, it
- compounds related requests into one round trip and keeps several in flight;
- counts credits as [MS-SMB2] 3.2.4.1.5 and 3.2.5.1.4 say: each request costs one, each
  response grants its CreditResponse, interim (STATUS_PENDING) responses included. Nothing
  is sent without a credit, and none is ever assumed: when the server's window is smaller
  than a chain, the chain goes one request at a time;
- verifies the signature of every reply when the session signs;
- bounds every wait: a request unanswered for `timeout` seconds (an interim response
  restarts its clock) ends the connection with NoAnswer, and `cancel` is checked every
  0.2 s. Any failure of the wire itself (timeout, reset, garbage, bad signature) breaks it
  for good, so that no later request can be matched with an earlier one's reply.

The pysmb internals this relies on are pinned by tests/test_wire_canary.py.
"""

from __future__ import annotations

import hmac
import socket
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

from smb.smb2_structs import SMB2EchoRequest, SMB2Message

from backdown.errors import Cancelled, ConnectError, NoAnswer

STATUS_PENDING = 0x00000103
FLAGS_SERVER_TO_REDIR = 0x01
FLAGS_ASYNC = 0x02
FLAGS_RELATED = 0x04
FLAGS_SIGNED = 0x08
HEADER_SIZE = 64
# Header field offsets ([MS-SMB2] 2.2.1.2), checked against pysmb's encoding by the canary.
OFF_CREDIT_REQUEST = 14
OFF_FLAGS = 16
OFF_NEXT_COMMAND = 20
OFF_SIGNATURE = 48
RELATED_FID = b"\xff" * 16  # "the handle the previous request of this compound opened"

CREDITS_WANTED = 256  # asked for with every request; the server grants what it will
POLL_SECONDS = 0.2  # how often a wait looks at the cancel flag
# Related flags of a compound: True (one chain), False (unrelated), or one flag per request.
Related = bool | Sequence[bool]


@dataclass
class WireStats:
    """What the wire saw: for tests and the benchmark, never for decisions."""

    requests: int = 0
    interim: int = 0
    credits_granted: int = 0
    echoes: int = 0
    peak_in_flight: int = 0
    one_by_one: int = 0  # chains sent unchained because the credit window was too small


class Wire:
    """SMB2 requests on one authenticated connection. Not thread-safe: one per thread."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        session_id: int,
        next_mid: int,
        signing_key: bytes | None,
        timeout: float,
        where: str,
        cancel: threading.Event | None = None,
    ) -> None:
        self._sock = sock
        self._session_id = session_id
        self._mid = next_mid
        self._key = signing_key
        self.timeout = timeout
        self.where = where
        self._cancel = cancel
        self.credits = 1  # the session setup response granted at least one ([MS-SMB2] 3.3.1.2)
        self._deadline: dict[int, float] = {}  # message id -> when it counts as unanswered
        self._replies: dict[int, SMB2Message] = {}
        self._buf = bytearray()
        self.broken: ConnectError | None = None
        self.stats = WireStats()

    # -- sending -------------------------------------------------------------------------
    @property
    def signing(self) -> bool:
        return self._key is not None

    @property
    def in_flight(self) -> int:
        return len(self._deadline)

    def send(self, payloads: Sequence[Any], tid: int, related: Related = True) -> list[int]:
        """Send requests as one compound; the caller has made sure of the credits."""
        self._check()
        if len(payloads) > self.credits:
            raise AssertionError(f"{len(payloads)} requests with {self.credits} credits")
        messages = [SMB2Message(p) for p in payloads]
        data = self._frame(messages, tid, _flags(related, len(messages)))
        self.credits -= len(messages)
        expiry = time.monotonic() + self.timeout
        for m in messages:
            self._deadline[m.mid] = expiry
        self.stats.requests += len(messages)
        self.stats.peak_in_flight = max(self.stats.peak_in_flight, len(self._deadline))
        try:
            self._sock.settimeout(self.timeout)
            self._sock.sendall(data)
        except OSError as exc:
            raise self._break(exc) from None
        return [m.mid for m in messages]

    def _frame(self, messages: list[SMB2Message], tid: int, related: list[bool]) -> bytearray:
        """Encode (and sign) a chain of requests as one direct-TCP message."""
        out = bytearray(4)  # the direct TCP header: the length, filled in at the end
        for i, m in enumerate(messages):
            m.mid = self._mid
            self._mid += 1
            m.session_id = self._session_id
            m.tid = tid
            if related[i]:
                m.flags |= FLAGS_RELATED
            if self._key is not None:
                m.flags |= FLAGS_SIGNED
            start = len(out)
            out += m.encode()
            struct.pack_into("<H", out, start + OFF_CREDIT_REQUEST, CREDITS_WANTED)
            if i < len(messages) - 1:
                out += b"\0" * ((start - len(out)) % 8)  # the next header is 8-byte aligned
                struct.pack_into("<I", out, start + OFF_NEXT_COMMAND, len(out) - start)
            if self._key is not None:
                # Each request of a compound is signed over itself and its padding
                # ([MS-SMB2] 3.1.4.1); pysmb's encode() leaves the signature zero.
                sig = hmac.new(self._key, out[start:], sha256).digest()[:16]
                out[start + OFF_SIGNATURE : start + OFF_SIGNATURE + 16] = sig
        struct.pack_into(">I", out, 0, len(out) - 4)
        return out

    def reserve(self, needed: int) -> bool:
        """Wait until `needed` requests may be sent; False if the server's window is smaller.

        Credits come back with replies, so while requests are in flight it waits for them;
        with none in flight it asks with an echo (which costs one of the credits held).
        """
        while self.credits < needed:
            if self._deadline:
                self._receive()
                continue
            if self.credits < 1:
                raise self._break(None, "the server left this connection without credits")
            before = self.credits
            self.stats.echoes += 1
            (mid,) = self.send([SMB2EchoRequest()], tid=0)
            self.wait([mid])
            if self.credits <= before:
                return False  # the echo's reply granted no more than it cost
        return True

    def call(self, payloads: Sequence[Any], tid: int, related: Related = True) -> list[SMB2Message]:
        """Send a chain and return its replies, in one round trip when credits allow."""
        if self.reserve(len(payloads)):
            return self.wait(self.send(payloads, tid, related))
        return self._one_by_one(payloads, tid, related)

    def _one_by_one(self, payloads: Sequence[Any], tid: int, related: Related) -> list[SMB2Message]:
        """A compound the credit window cannot hold, sent a request at a time.

        Related semantics are kept: the handle the chain's first request opened replaces
        RELATED_FID in the others, and if that open failed every other request of the chain
        fails with its status, as a server does ([MS-SMB2] 3.3.5.2.7.2).
        """
        self.stats.one_by_one += 1
        flags = _flags(related, len(payloads))
        replies: list[SMB2Message] = []
        opener: SMB2Message | None = None  # the reply to the current chain's first request
        for payload, chained in zip(payloads, flags, strict=True):
            if chained and opener is not None:
                if opener.status != 0:
                    replies.append(_not_run(payload, opener.status))
                    continue
                if getattr(payload, "fid", None) == RELATED_FID:
                    payload.fid = opener.payload.fid
            if not self.reserve(1):
                raise self._break(None, "the server grants no credits")
            (reply,) = self.wait(self.send([payload], tid, related=False))
            if not chained:
                opener = reply
            replies.append(reply)
        return replies

    # -- receiving -----------------------------------------------------------------------
    def wait(self, mids: Sequence[int]) -> list[SMB2Message]:
        """Block until each of these requests has its final reply."""
        while not all(mid in self._replies for mid in mids):
            self._receive()
        return [self._replies.pop(mid) for mid in mids]

    def wait_any(self, mids: Sequence[int] | dict[int, Any]) -> tuple[int, SMB2Message]:
        """Block until one of these requests has its final reply; the lowest id first."""
        while True:
            ready = [mid for mid in mids if mid in self._replies]
            if ready:
                mid = min(ready)
                return mid, self._replies.pop(mid)
            self._receive()

    def _receive(self) -> None:
        """Read one direct-TCP message and file the replies in it."""
        self._check()
        if not self._deadline:
            raise AssertionError("waiting with nothing in flight")
        try:
            header = self._read(4)
            if header[0] != 0:
                raise self._break(None, "the server sent something that is not SMB")
            frame = self._read(int.from_bytes(header[1:4], "big"))
        except (OSError, EOFError) as exc:
            raise self._break(exc) from None
        offset = 0
        while offset < len(frame):
            if len(frame) - offset < HEADER_SIZE:
                raise self._break(None, "the server sent a truncated reply")
            (next_command,) = struct.unpack_from("<I", frame, offset + OFF_NEXT_COMMAND)
            end = offset + next_command if next_command else len(frame)
            if end > len(frame) or end <= offset:
                raise self._break(None, "the server sent a malformed compound reply")
            self._file(bytes(frame[offset:end]))
            offset = end

    def _file(self, raw: bytes) -> None:
        """Check one reply, count its credits, and keep it if it is final."""
        message = SMB2Message()
        try:
            message.decode(raw)
        except Exception:  # pysmb raises ProtocolError, struct.error, ...
            raise self._break(None, "the server sent a reply that cannot be decoded") from None
        if not message.flags & FLAGS_SERVER_TO_REDIR:
            raise self._break(None, "the server sent a request instead of a reply")
        interim = message.status == STATUS_PENDING and bool(message.flags & FLAGS_ASYNC)
        self._verify(raw, message, interim)
        granted = int(getattr(message, "credit_re", 0) or 0)
        self.credits += granted
        self.stats.credits_granted += granted
        if message.mid not in self._deadline:
            return  # not ours (an oplock break; we ask for none): nothing waits for it
        if interim:
            self.stats.interim += 1
            self._deadline[message.mid] = time.monotonic() + self.timeout
            return
        del self._deadline[message.mid]
        self._replies[message.mid] = message

    def _verify(self, raw: bytes, message: SMB2Message, interim: bool) -> None:
        """On a signed session, a reply must carry a good signature ([MS-SMB2] 3.2.5.1.3).

        Interim replies carry nothing but credits and are not checked; an unsigned error
        reply is accepted (it carries no data), an unsigned success is not.
        """
        if self._key is None or interim:
            return
        if not message.flags & FLAGS_SIGNED:
            if message.status == 0:
                raise self._break(None, "the server sent an unsigned reply on a signed session")
            return
        blank = raw[:OFF_SIGNATURE] + b"\0" * 16 + raw[OFF_SIGNATURE + 16 :]
        expected = hmac.new(self._key, blank, sha256).digest()[:16]
        if not hmac.compare_digest(expected, raw[OFF_SIGNATURE : OFF_SIGNATURE + 16]):
            raise self._break(None, "a reply's signature is wrong (altered on the way?)")

    def _read(self, n: int) -> bytes:
        """n bytes from the socket, or NoAnswer once the oldest request is overdue."""
        while len(self._buf) < n:
            if self._cancel is not None and self._cancel.is_set():
                raise Cancelled()
            now = time.monotonic()
            if now >= min(self._deadline.values()):
                raise self._break(None, f"no answer in {self.timeout:g} s", silent=True)
            self._sock.settimeout(min(POLL_SECONDS, min(self._deadline.values()) - now))
            try:
                chunk = self._sock.recv(max(65536, n - len(self._buf)))
            except TimeoutError:
                continue
            if not chunk:
                raise EOFError("connection closed by the server")
            self._buf += chunk
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    # -- failure -------------------------------------------------------------------------
    def _check(self) -> None:
        if self.broken is not None:
            raise self.broken

    def _break(
        self, exc: BaseException | None, why: str = "", silent: bool = False
    ) -> ConnectError:
        """Mark the wire unusable; the error to raise (every later call raises it too)."""
        if not why and exc is not None:
            why = _describe(exc)
        kind = NoAnswer if silent else ConnectError
        self.broken = kind(f"lost the connection to {self.where} ({why})")
        self._deadline.clear()
        self._replies.clear()
        return self.broken


def _flags(related: Related, n: int) -> list[bool]:
    """Which requests carry SMB2_FLAGS_RELATED_OPERATIONS: all but the first (True), none
    (False), or as listed (several chains in one compound)."""
    if isinstance(related, bool):
        return [related and i > 0 for i in range(n)]
    flags = list(related)
    if len(flags) != n or (flags and flags[0]):
        raise AssertionError(f"bad related flags {flags} for {n} requests")
    return flags


def _not_run(payload: Any, status: int) -> SMB2Message:
    """The reply a server gives a related request whose open failed."""
    message = SMB2Message()
    message.command = SMB2Message(payload).command
    message.status = status
    return message


def _describe(exc: BaseException) -> str:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "no answer in time"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, EOFError)):
        return "connection closed by the server"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return str(exc) or exc.__class__.__name__
