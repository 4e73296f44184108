"""A loopback TCP relay between BackDown and the real smbd that can tamper with SMB2 replies.

Why a fake: a client must cope with a server that acknowledges fewer bytes than it was
sent (a short WRITE) or returns fewer than it was asked for (a short READ); [MS-SMB2]
allows both.  Samba cannot be made to do either on demand: it writes everything or fails
the request (its pwrite loops until done, and ENOSPC becomes STATUS_DISK_FULL), and it reads
short only at the end of the file.  So this relay does it in its place:

* ``short_write(cut)``: in a successful WRITE response (command 0x0009) it lowers Count
  (uint32 at offset 64 + 4 of that message) by ``cut`` bytes.  The server did write every
  byte; only the acknowledgement is short.  With ``truthful=True`` it shortens the WRITE
  *request* instead (its Length, uint32 at 64 + 4, and its data), so the server really
  writes fewer bytes and itself answers with the short Count: the file on the share then
  holds exactly what was acknowledged, as after a real short write.
* ``short_read(cut)``: in a successful READ response (command 0x0008) it drops the last
  ``cut`` bytes of the data and fixes DataLength (uint32 at 64 + 4), the chain's
  NextCommand offsets and the frame length.

Each rule applies to the ``nth`` matching message (1-based, counted across all connections
of this relay) or to every one (``nth=None``); messages of one byte or less are never
matched.  Every change is recorded in ``tampered``; a message that would have to be changed
but is signed is left alone and reported in ``errors`` (changing it would only make the
client reject the signature, which tests nothing), so the tests only work with unsigned
sessions: the default test server has ``server signing = auto`` and pysmb does not sign
then.

Framing: direct TCP ([MS-SMB2] 2.1): a zero byte, then a 24-bit big-endian length, then the
SMB2 messages: 64-byte headers (ProtocolId b"\\xfeSMB", Status uint32 at 8, Command uint16
at 12, Flags uint32 at 16, NextCommand uint32 at 20, MessageId uint64 at 24), several of
them compounded in one frame, each NextCommand bytes after the previous one (8-byte
aligned).  Anything else (SMB1 during negotiation, keep-alives) is passed on unchanged.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections import Counter
from dataclasses import dataclass, field

SMB2_MAGIC = b"\xfeSMB"
HEADER = 64
CMD_READ = 0x0008
CMD_WRITE = 0x0009
FLAG_SERVER_TO_REDIR = 0x00000001
FLAG_SIGNED = 0x00000008
COMMAND_NAMES = {CMD_READ: "READ", CMD_WRITE: "WRITE"}


@dataclass(frozen=True)
class Tampered:
    """One message the relay changed."""

    kind: str  # "short_write" or "short_read"
    connection: int  # 1 for the relay's first connection, and so on
    message_id: int
    offset: int | None  # the file offset of the request, when the relay saw it
    before: int  # bytes written / read, as the server meant it
    after: int  # as the client is told (or, truthful: as the server is asked to write)
    compounded: bool  # the message shared its frame with others


@dataclass
class _Rule:
    kind: str
    cut: int
    nth: int | None
    truthful: bool = False
    frame: str = "any"  # "any", "alone" (one message in its frame) or "compound"
    matched: int = 0


@dataclass
class _Connection:
    number: int
    # message id -> (command, file offset, length) of the requests seen on this connection
    requests: dict[int, tuple[int, int, int]] = field(default_factory=dict)


def split_messages(payload: bytes | bytearray) -> list[bytearray] | None:
    """The SMB2 messages of one frame (each with its padding), or None if not SMB2."""
    messages = []
    start = 0
    while True:
        if len(payload) < start + HEADER or payload[start : start + 4] != SMB2_MAGIC:
            return None
        (next_command,) = struct.unpack_from("<I", payload, start + 20)
        if next_command == 0:
            messages.append(bytearray(payload[start:]))
            return messages
        if next_command < HEADER or start + next_command > len(payload):
            return None
        messages.append(bytearray(payload[start : start + next_command]))
        start += next_command


def join_messages(messages: list[bytearray]) -> bytes:
    """A frame's payload from its messages: 8-byte aligned, NextCommand set, last one 0."""
    out = bytearray()
    for i, message in enumerate(messages):
        message = bytearray(message)
        if i < len(messages) - 1:
            message += b"\0" * (-len(message) % 8)
            struct.pack_into("<I", message, 20, len(message))
        else:
            struct.pack_into("<I", message, 20, 0)
        out += message
    return bytes(out)


def _body_length(message: bytearray, command: int, is_reply: bool) -> int:
    """Where a READ reply's or WRITE request's data ends inside its message (no padding)."""
    if is_reply:  # READ response: DataOffset (uint8 at 64 + 2), DataLength (uint32 at 64 + 4)
        offset = message[HEADER + 2]
    else:  # WRITE request: DataOffset (uint16 at 64 + 2), Length (uint32 at 64 + 4)
        (offset,) = struct.unpack_from("<H", message, HEADER + 2)
    (length,) = struct.unpack_from("<I", message, HEADER + 4)
    return int(offset) + int(length)


class WireProxy:
    """A relay on 127.0.0.1 to ``target_port`` that tampers with SMB2 messages on request.

    See the module docstring.  Use ``port`` in the profile; ``close()`` (or ``with``) ends
    every connection.
    """

    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (host, target_port)
        self._listener = socket.create_server((host, 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._socks: list[socket.socket] = []
        self._closed = False
        self.tampered: list[Tampered] = []
        self.errors: list[str] = []
        # (direction, command) -> messages seen; direction "c2s" or "s2c"
        self.seen: Counter[tuple[str, int]] = Counter()
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True, name="wire-proxy").start()

    # ------------------------------------------------------------------ rules

    def short_write(
        self, cut: int = 4096, nth: int | None = 1, *, truthful: bool = False, frame: str = "any"
    ) -> None:
        """Acknowledge the nth successful WRITE (every one: nth=None) ``cut`` bytes short.

        ``truthful``: shorten the request instead, so the server writes that much less.
        """
        self._add(_Rule("short_write", cut, nth, truthful, frame))

    def short_read(self, cut: int = 4096, nth: int | None = 1, *, frame: str = "any") -> None:
        """Return ``cut`` bytes less data in the nth successful READ (every one: nth=None)."""
        self._add(_Rule("short_read", cut, nth, False, frame))

    def clear(self) -> None:
        """Stop tampering (what was changed stays recorded)."""
        with self._lock:
            self._rules.clear()

    def _add(self, rule: _Rule) -> None:
        if rule.cut < 1:
            raise ValueError("cut must be at least 1 byte")
        if rule.nth is not None and rule.nth < 1:
            raise ValueError("nth counts from 1 (None: every matching message)")
        if rule.frame not in ("any", "alone", "compound"):
            raise ValueError(f"bad frame filter {rule.frame!r}")
        with self._lock:
            self._rules.append(rule)

    def count(self, command: int, direction: str = "s2c") -> int:
        """How many messages of this command passed (requests: "c2s", replies: "s2c")."""
        with self._lock:
            return self.seen[(direction, command)]

    # ------------------------------------------------------------------ relaying

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=10)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._closed:
                    client.close()
                    server.close()
                    return
                self.connections += 1
                conn = _Connection(self.connections)
                self._socks += [client, server]
            for src, dst, direction in ((client, server, "c2s"), (server, client, "s2c")):
                threading.Thread(
                    target=self._pump, args=(src, dst, direction, conn), daemon=True
                ).start()

    def _pump(
        self, src: socket.socket, dst: socket.socket, direction: str, conn: _Connection
    ) -> None:
        buf = bytearray()
        try:
            while True:
                data = src.recv(262144)
                if not data:
                    break
                buf += data
                out = bytearray()
                while len(buf) >= 4:
                    length = int.from_bytes(buf[1:4], "big")
                    if len(buf) < 4 + length:
                        break
                    frame = bytes(buf[: 4 + length])
                    del buf[: 4 + length]
                    out += self._frame(frame, direction, conn) if frame[0] == 0 else frame
                if out:
                    dst.sendall(out)
        except OSError:
            pass
        except Exception as exc:  # a bug here must show in the test, not vanish in a thread
            with self._lock:
                self.errors.append(f"relay {direction} failed: {exc.__class__.__name__}: {exc}")
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _frame(self, frame: bytes, direction: str, conn: _Connection) -> bytes:
        """One direct-TCP frame, changed if a rule says so."""
        messages = split_messages(frame[4:])
        if messages is None:
            return frame
        changed = False
        compounded = len(messages) > 1
        for i, message in enumerate(messages):
            (status, command, _, flags) = struct.unpack_from("<IHHI", message, 8)
            (mid,) = struct.unpack_from("<Q", message, 24)
            is_reply = bool(flags & FLAG_SERVER_TO_REDIR)
            with self._lock:
                self.seen[(direction, command)] += 1
            if direction == "c2s" and not is_reply and command in COMMAND_NAMES:
                self._note_request(conn, message, command, mid)
            new = self._apply(conn, message, direction, command, status, flags, mid, compounded)
            if new is not None:
                messages[i] = new
                changed = True
        if not changed:
            return frame
        payload = join_messages(messages)
        return struct.pack(">I", len(payload)) + payload

    @staticmethod
    def _note_request(conn: _Connection, message: bytearray, command: int, mid: int) -> None:
        if len(message) < HEADER + 16:
            return
        # READ and WRITE requests alike: Length uint32 at 64 + 4, Offset uint64 at 64 + 8.
        length, offset = struct.unpack_from("<IQ", message, HEADER + 4)
        conn.requests[mid] = (command, int(offset), int(length))
        if len(conn.requests) > 4096:  # old entries: their replies came long ago
            for old in sorted(conn.requests)[:2048]:
                del conn.requests[old]

    def _apply(
        self,
        conn: _Connection,
        message: bytearray,
        direction: str,
        command: int,
        status: int,
        flags: int,
        mid: int,
        compounded: bool,
    ) -> bytearray | None:
        """The changed message if a rule matches it, else None."""
        is_reply = bool(flags & FLAG_SERVER_TO_REDIR)
        with self._lock:
            for rule in self._rules:
                if (rule.frame == "alone" and compounded) or (
                    rule.frame == "compound" and not compounded
                ):
                    continue
                wanted = {"short_write": CMD_WRITE, "short_read": CMD_READ}[rule.kind]
                if command != wanted:
                    continue
                on_request = rule.kind == "short_write" and rule.truthful
                if on_request != (direction == "c2s") or is_reply == on_request:
                    continue
                if is_reply and status != 0:
                    continue
                if len(message) < HEADER + 8:
                    continue
                (length,) = struct.unpack_from("<I", message, HEADER + 4)
                if length <= 1:
                    continue
                rule.matched += 1
                if rule.nth is not None and rule.matched != rule.nth:
                    continue
                if flags & FLAG_SIGNED:
                    self.errors.append(
                        f"{rule.kind}: message {mid} is signed; left unchanged "
                        "(the relay only works with unsigned sessions)"
                    )
                    continue
                after = length - min(rule.cut, length - 1)
                new = self._shorten(message, command, is_reply, after)
                if new is None:
                    self.errors.append(f"{rule.kind}: message {mid} is malformed; left unchanged")
                    continue
                request = conn.requests.get(mid)
                self.tampered.append(
                    Tampered(
                        rule.kind,
                        conn.number,
                        mid,
                        request[1] if request else None,
                        int(length),
                        int(after),
                        compounded,
                    )
                )
                return new
        return None

    @staticmethod
    def _shorten(message: bytearray, command: int, is_reply: bool, after: int) -> bytearray | None:
        new = bytearray(message)
        struct.pack_into("<I", new, HEADER + 4, after)
        if command == CMD_WRITE and is_reply:
            return new  # only the acknowledged Count changes
        # A READ reply's or WRITE request's data: keep the first `after` bytes.
        end = _body_length(message, command, is_reply)
        if end > len(message):
            return None
        start = end - struct.unpack_from("<I", message, HEADER + 4)[0]
        del new[start + after :]
        return new

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        with self._lock:
            self._closed = True
            socks = list(self._socks)
        try:
            self._listener.close()
        except OSError:
            pass
        for s in socks:
            for step in (lambda s=s: s.shutdown(socket.SHUT_RDWR), s.close):
                try:
                    step()
                except OSError:
                    pass

    def __enter__(self) -> WireProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
