"""MongoDB wire protocol framing: OP_MSG, legacy OP_QUERY/OP_REPLY, and a small async client."""

from __future__ import annotations

import asyncio
import itertools
import ssl
import struct
from dataclasses import dataclass, field

from . import bson_codec
from .bson_codec import Document

OP_REPLY = 1
OP_QUERY = 2004
OP_MSG = 2013

CHECKSUM_PRESENT = 1 << 0
MORE_TO_COME = 1 << 1
EXHAUST_ALLOWED = 1 << 16
_KNOWN_FLAGS = CHECKSUM_PRESENT | MORE_TO_COME | EXHAUST_ALLOWED

QUERY_SECONDARY_OK = 1 << 2

MAX_MESSAGE_SIZE = 48_000_000
HEADER = struct.Struct("<iiii")


class ProtocolError(Exception):
    """A message the server cannot parse; the connection is closed, as mongod does."""


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


@dataclass
class Message:
    """A decoded request: the command body with kind-1 sequences merged in as arrays."""

    request_id: int
    op_code: int
    body: Document
    flags: int = 0
    secondary_ok: bool = False
    sequences: dict[str, list[Document]] = field(default_factory=dict)

    @property
    def more_to_come(self) -> bool:
        return self.op_code == OP_MSG and bool(self.flags & MORE_TO_COME)


def parse_op_msg(request_id: int, payload: bytes, header: bytes = b"") -> Message:
    """Parse an OP_MSG payload; `header` is the raw 16-byte header, needed to verify a checksum."""
    (flags,) = struct.unpack_from("<I", payload, 0)
    if flags & 0xFFFF & ~_KNOWN_FLAGS:
        raise ProtocolError(f"unsupported OP_MSG flag bits {flags:#x}")
    end = len(payload)
    if flags & CHECKSUM_PRESENT:
        end -= 4
        (expected,) = struct.unpack_from("<I", payload, end)
        # The checksum covers the whole message, header included, except the checksum itself.
        if crc32c(header + payload[:end]) != expected:
            raise ProtocolError("OP_MSG checksum mismatch")
    pos = 4
    body: Document | None = None
    sequences: dict[str, list[Document]] = {}
    while pos < end:
        kind = payload[pos]
        pos += 1
        if kind == 0:
            (size,) = struct.unpack_from("<i", payload, pos)
            if body is not None:
                raise ProtocolError("OP_MSG with more than one kind-0 section")
            body = bson_codec.decode(payload[pos : pos + size])
            pos += size
        elif kind == 1:
            (size,) = struct.unpack_from("<i", payload, pos)
            section = payload[pos + 4 : pos + size]
            name_end = section.index(b"\x00")
            ident = section[:name_end].decode()
            sequences[ident] = bson_codec.decode_all(section[name_end + 1 :])
            pos += size
        else:
            raise ProtocolError(f"unknown OP_MSG section kind {kind}")
    if body is None:
        raise ProtocolError("OP_MSG without a body section")
    for ident, docs in sequences.items():
        if ident in body:
            raise ProtocolError(f"duplicate field {ident} in body and document sequence")
        body[ident] = docs
    return Message(request_id, OP_MSG, body, flags=flags, sequences=sequences)


def parse_op_query(request_id: int, payload: bytes) -> tuple[Message, str]:
    (flags,) = struct.unpack_from("<i", payload, 0)
    end = payload.index(b"\x00", 4)
    namespace = payload[4:end].decode()
    pos = end + 1 + 8  # numberToSkip, numberToReturn
    (size,) = struct.unpack_from("<i", payload, pos)
    query = bson_codec.decode(payload[pos : pos + size])
    if "$query" in query:  # wrapped form: {$query: {...}, $readPreference: {...}}
        inner = dict(query["$query"])
        for key, value in query.items():
            if key != "$query":
                inner[key] = value
        query = inner
    msg = Message(request_id, OP_QUERY, query, secondary_ok=bool(flags & QUERY_SECONDARY_OK))
    return msg, namespace


def encode_op_msg(request_id: int, response_to: int, body: Document, flags: int = 0) -> bytes:
    payload = struct.pack("<I", flags) + b"\x00" + bson_codec.encode(body)
    return HEADER.pack(HEADER.size + len(payload), request_id, response_to, OP_MSG) + payload


def encode_op_reply(request_id: int, response_to: int, doc: Document) -> bytes:
    payload = struct.pack("<iqii", 0, 0, 0, 1) + bson_codec.encode(doc)
    return HEADER.pack(HEADER.size + len(payload), request_id, response_to, OP_REPLY) + payload


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, int, int, bytes]:
    """Read one message; returns (requestID, responseTo, opCode, payload after the header)."""
    header = await reader.readexactly(HEADER.size)
    length, request_id, response_to, op_code = HEADER.unpack(header)
    if length < HEADER.size or length > MAX_MESSAGE_SIZE:
        raise ProtocolError(f"invalid message length {length}")
    payload = await reader.readexactly(length - HEADER.size)
    return request_id, response_to, op_code, payload


_request_ids = itertools.count(1)


def next_request_id() -> int:
    return next(_request_ids) & 0x7FFFFFFF


class CommandError(Exception):
    """A command answered with ok:0."""

    def __init__(self, reply: Document) -> None:
        super().__init__(reply.get("errmsg", "command failed"))
        self.reply = reply
        self.code = int(reply.get("code", 0))


class WireClient:
    """A minimal OP_MSG client; the server uses it for member-to-member traffic."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._lock = asyncio.Lock()
        self.broken = False

    @classmethod
    async def connect(
        cls, host: str, port: int, timeout: float, tls: ssl.SSLContext | None = None
    ) -> WireClient:
        """Open a connection within `timeout` (TLS handshake included). With `tls`, the peer's
        certificate is verified against `host` as the context says (check_hostname)."""
        opening = asyncio.open_connection(
            host, port, ssl=tls, server_hostname=host if tls is not None else None
        )
        reader, writer = await asyncio.wait_for(opening, timeout)
        return cls(reader, writer)

    async def command(self, db: str, body: Document, timeout: float) -> Document:
        """Send a command; raise CommandError on ok:0, TimeoutError/OSError on transport errors.

        `timeout` bounds the whole exchange (waiting for the connection, sending, reading). A
        connection whose exchange timed out or failed is in an unknown state (a late reply could
        be read as the answer to the next request), so it is closed and must not be reused.
        """
        if self.broken:
            raise ConnectionResetError("connection was discarded after an earlier failure")
        try:
            return await asyncio.wait_for(self._exchange(db, body), timeout)
        except CommandError:
            raise
        except BaseException:
            self.broken = True
            self.close()
            raise

    async def _exchange(self, db: str, body: Document) -> Document:
        request = dict(body)
        request["$db"] = db
        async with self._lock:
            request_id = next_request_id()
            self.writer.write(encode_op_msg(request_id, 0, request))
            await self.writer.drain()
            _, response_to, op_code, payload = await read_frame(self.reader)
        if op_code != OP_MSG or response_to != request_id:
            raise ProtocolError("unexpected reply")
        reply = parse_op_msg(response_to, payload).body
        if not reply.get("ok"):
            raise CommandError(reply)
        return reply

    def close(self) -> None:
        self.broken = True
        self.writer.close()
