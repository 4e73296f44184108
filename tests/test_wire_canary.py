"""Canaries for the pysmb internals BackDown's SMB layer relies on (no server needed).

backdown/smb/ encodes requests and decodes replies with pysmb's structures and takes over
the socket pysmb logged on. A new pysmb that moves any of this must fail here, loudly,
before it can corrupt a transfer.
"""

from __future__ import annotations

import importlib
import struct
from importlib import metadata

import pytest
from smb import smb2_structs
from smb.smb2_structs import (
    SMB2CloseRequest,
    SMB2CreateRequest,
    SMB2EchoRequest,
    SMB2Message,
    SMB2QueryDirectoryRequest,
    SMB2ReadRequest,
    SMB2SetInfoRequest,
    SMB2WriteRequest,
)
from smb.SMBConnection import SMBConnection

from backdown.errors import UsageError
from backdown.smb import PYSMB_VERSION, check_pysmb
from backdown.smb.wire import (
    FLAGS_ASYNC,
    FLAGS_SERVER_TO_REDIR,
    OFF_CREDIT_REQUEST,
    OFF_FLAGS,
    OFF_NEXT_COMMAND,
    OFF_SIGNATURE,
    STATUS_PENDING,
)

FID = bytes(range(16))
# The module, not the function of the same name that backdown.smb exports.
connect_module = importlib.import_module("backdown.smb.connect")


def test_the_installed_pysmb_is_the_pinned_one() -> None:
    assert metadata.version("pysmb") == PYSMB_VERSION
    check_pysmb()  # and the run-time check agrees


def test_another_pysmb_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connect_module.metadata, "version", lambda name: "1.2.99")
    with pytest.raises(UsageError) as caught:
        check_pysmb.__wrapped__()  # type: ignore[attr-defined]
    message = str(caught.value)
    assert "1.2.99" in message and f"pip install pysmb=={PYSMB_VERSION}" in message
    assert "\n" not in message


def test_request_header_fields_sit_where_the_wire_writes_them() -> None:
    message = SMB2Message(SMB2EchoRequest())
    message.mid, message.session_id, message.tid = 0x1122334455, 0xABCDEF, 7
    message.flags = 0x08
    raw = message.encode()
    assert raw[:4] == b"\xfeSMB" and len(raw) >= 64
    assert struct.unpack_from("<H", raw, OFF_CREDIT_REQUEST)[0] == 0  # pysmb asks for none
    assert struct.unpack_from("<I", raw, OFF_FLAGS)[0] == 0x08
    assert struct.unpack_from("<I", raw, OFF_NEXT_COMMAND)[0] == 0
    assert struct.unpack_from("<Q", raw, 24)[0] == 0x1122334455  # MessageId
    assert struct.unpack_from("<I", raw, 36)[0] == 7  # TreeId
    assert struct.unpack_from("<Q", raw, 40)[0] == 0xABCDEF  # SessionId
    assert raw[OFF_SIGNATURE : OFF_SIGNATURE + 16] == b"\0" * 16


@pytest.mark.parametrize(
    "payload, command",
    [
        (SMB2CreateRequest("a\\b", 0, 0, 0, 0, 2, 0, 1), 0x05),
        (SMB2CloseRequest(FID), 0x06),
        (SMB2ReadRequest(FID, 5, 6), 0x08),
        (SMB2WriteRequest(FID, b"xyz", 9), 0x09),
        (SMB2QueryDirectoryRequest(FID, "*", 0x25, 0, 4096), 0x0E),
        (SMB2SetInfoRequest(FID, 0, 1, 0x0A, b"d"), 0x11),
        (SMB2EchoRequest(), 0x0D),
    ],
)
def test_requests_encode_their_command_and_handle(payload: object, command: int) -> None:
    raw = SMB2Message(payload).encode()
    assert struct.unpack_from("<H", raw, 12)[0] == command
    if hasattr(payload, "fid"):
        assert FID in raw[64:] or command == 0x05  # the handle travels in the body
        payload.fid = b"\xee" * 16  # type: ignore[attr-defined]  # the one-by-one path sets it
        assert b"\xee" * 16 in SMB2Message(payload).encode()[64:]


def test_write_request_layout() -> None:
    raw = SMB2Message(SMB2WriteRequest(FID, b"hello", 1234)).encode()
    size, data_offset, length, offset = struct.unpack_from("<HHIQ", raw, 64)
    assert (size, data_offset, length, offset) == (49, 64 + 48, 5, 1234)
    assert raw[data_offset:] == b"hello"


def _reply(command: int, status: int, body: bytes, *, flags: int = 0, mid: int = 9,
           credits: int = 3) -> bytes:  # fmt: skip
    flags |= FLAGS_SERVER_TO_REDIR
    header = struct.pack("<4sHHIHHI", b"\xfeSMB", 64, 0, status, command, credits, flags)
    if flags & FLAGS_ASYNC:
        header += struct.pack("<IQQQ16s", 0, mid, 0xA5, 1, b"\0" * 16)
    else:
        header += struct.pack("<IQIIQ16s", 0, mid, 0, 1, 1, b"\0" * 16)
    return header + body


def test_an_interim_reply_decodes_with_its_id_and_credits() -> None:
    message = SMB2Message()
    message.decode(_reply(0x09, STATUS_PENDING, b"\x09\0\0\0\0\0\0\0\0", flags=FLAGS_ASYNC))
    assert message.isAsync and message.status == STATUS_PENDING
    assert message.mid == 9 and message.credit_re == 3


def test_write_and_read_replies_decode_count_and_data() -> None:
    write = SMB2Message()
    write.decode(_reply(0x09, 0, struct.pack("<HHIIHH", 17, 0, 4096, 0, 0, 0)))
    assert write.payload.count == 4096
    read = SMB2Message()
    body = struct.pack("<HBBIII", 17, 64 + 16, 0, 5, 0, 0) + b"abcde"
    read.decode(_reply(0x08, 0, body))
    assert read.payload.data == b"abcde"


def test_create_reply_decodes_what_stat_uses() -> None:
    body = struct.pack("<HBBIQQQQQQII16sII", 89, 0, 0, 1, 0, 0, 0x01D0000000000000, 0,
                       4096, 1234, 0x10, 0, FID, 0, 0)  # fmt: skip
    message = SMB2Message()
    message.decode(_reply(0x05, 0, body))
    info = message.payload
    assert (info.fid, info.file_size, info.file_attributes) == (FID, 1234, 0x10)
    assert isinstance(info.lastwrite_time, float)


def test_the_connection_exposes_what_the_wire_takes_over() -> None:
    conn = SMBConnection("u", "p", "c", "s", use_ntlm_v2=True, is_direct_tcp=True)
    for name in ("sock", "session_id", "mid", "is_signing_active", "signing_session_key",
                 "max_read_size", "max_write_size", "max_transact_size"):  # fmt: skip
        assert hasattr(conn, name), name
    assert isinstance(conn.mid, int)
    assert hasattr(SMBConnection, "_updateServerInfo_SMB2")  # overridden to learn the dialect
    assert hasattr(SMBConnection, "isUsingSMB2")
    assert "dialect_revision" in smb2_structs.SMB2NegotiateResponse.decode.__code__.co_names
