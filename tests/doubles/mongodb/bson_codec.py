"""BSON encoder and decoder (stdlib only) for the types MongoDB clients send.

Documents are plain ``dict`` objects (insertion order is BSON field order). Types with no natural
Python equivalent get small value classes so that they survive a decode/encode round trip unchanged.
"""

from __future__ import annotations

import base64
import datetime
import itertools
import os
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any

Document = dict[str, Any]

UTC = datetime.UTC
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=UTC)

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


class Int64(int):
    """An integer that is always encoded as BSON int64."""

    def __repr__(self) -> str:
        return f"Int64({int(self)})"


@dataclass(frozen=True, order=True)
class Timestamp:
    """BSON timestamp: seconds since the epoch and an ordinal within that second."""

    time: int
    inc: int


@dataclass(frozen=True)
class Binary:
    subtype: int
    data: bytes


@dataclass(frozen=True)
class Decimal128:
    """Carried as its 16 raw bytes; the double never does decimal arithmetic."""

    raw: bytes


@dataclass(frozen=True)
class Regex:
    pattern: str
    flags: str


class MinKey:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, MinKey)

    def __hash__(self) -> int:
        return hash("MinKey")


class MaxKey:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, MaxKey)

    def __hash__(self) -> int:
        return hash("MaxKey")


class ObjectId:
    """12-byte object id: 4-byte seconds, 5 bytes random per process, 3-byte counter."""

    _random = os.urandom(5)
    _counter = itertools.count(int.from_bytes(os.urandom(3), "big"))
    _lock = threading.Lock()

    __slots__ = ("binary",)

    def __init__(self, value: bytes | str | None = None) -> None:
        if value is None:
            with ObjectId._lock:
                count = next(ObjectId._counter) & 0xFFFFFF
            value = (
                struct.pack(">I", int(time.time())) + ObjectId._random + count.to_bytes(3, "big")
            )
        elif isinstance(value, str):
            value = bytes.fromhex(value)
        if len(value) != 12:
            raise ValueError("an ObjectId is 12 bytes")
        self.binary = value

    @classmethod
    def from_term(cls, term: int) -> ObjectId:
        """The protocol version 1 electionId: max timestamp, then the term; grows with the term."""
        return cls(b"\x7f\xff\xff\xff" + struct.pack(">q", term))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectId) and other.binary == self.binary

    def __lt__(self, other: ObjectId) -> bool:
        return self.binary < other.binary

    def __hash__(self) -> int:
        return hash(self.binary)

    def __str__(self) -> str:
        return self.binary.hex()

    def __repr__(self) -> str:
        return f"ObjectId('{self.binary.hex()}')"


class BSONError(ValueError):
    """Malformed BSON input."""


def _cstring(value: str) -> bytes:
    raw = value.encode()
    if b"\x00" in raw:
        raise BSONError("BSON keys and regex parts cannot contain NUL")
    return raw + b"\x00"


def _string(value: str) -> bytes:
    raw = value.encode() + b"\x00"
    return struct.pack("<i", len(raw)) + raw


def _element(key: str, value: Any) -> bytes:
    name = _cstring(key)
    if value is None:
        return b"\x0a" + name
    if isinstance(value, bool):
        return b"\x08" + name + (b"\x01" if value else b"\x00")
    if isinstance(value, Int64):
        return b"\x12" + name + struct.pack("<q", value)
    if isinstance(value, int):
        if _INT32_MIN <= value <= _INT32_MAX:
            return b"\x10" + name + struct.pack("<i", value)
        return b"\x12" + name + struct.pack("<q", value)
    if isinstance(value, float):
        return b"\x01" + name + struct.pack("<d", value)
    if isinstance(value, str):
        return b"\x02" + name + _string(value)
    if isinstance(value, dict):
        return b"\x03" + name + encode(value)
    if isinstance(value, list | tuple):
        return b"\x04" + name + encode({str(i): v for i, v in enumerate(value)})
    if isinstance(value, bytes):
        value = Binary(0, value)
    if isinstance(value, Binary):
        return b"\x05" + name + struct.pack("<iB", len(value.data), value.subtype) + value.data
    if isinstance(value, ObjectId):
        return b"\x07" + name + value.binary
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        millis = (value - EPOCH) // datetime.timedelta(milliseconds=1)
        return b"\x09" + name + struct.pack("<q", millis)
    if isinstance(value, Regex):
        return b"\x0b" + name + _cstring(value.pattern) + _cstring(value.flags)
    if isinstance(value, Timestamp):
        return b"\x11" + name + struct.pack("<II", value.inc, value.time)
    if isinstance(value, Decimal128):
        return b"\x13" + name + value.raw
    if isinstance(value, MinKey):
        return b"\xff" + name
    if isinstance(value, MaxKey):
        return b"\x7f" + name
    raise BSONError(f"cannot encode {type(value).__name__} as BSON")


def encode(document: Document) -> bytes:
    body = b"".join(_element(k, v) for k, v in document.items())
    return struct.pack("<i", len(body) + 5) + body + b"\x00"


def _read_cstring(data: bytes, pos: int) -> tuple[str, int]:
    end = data.index(b"\x00", pos)
    return data[pos:end].decode(), end + 1


def _decode_value(kind: int, data: bytes, pos: int) -> tuple[Any, int]:
    if kind == 0x01:
        return struct.unpack_from("<d", data, pos)[0], pos + 8
    if kind == 0x02:
        (size,) = struct.unpack_from("<i", data, pos)
        if size < 1 or data[pos + 3 + size] != 0:
            raise BSONError("bad string length")
        return data[pos + 4 : pos + 3 + size].decode(), pos + 4 + size
    if kind in (0x03, 0x04):
        (size,) = struct.unpack_from("<i", data, pos)
        sub = decode(data[pos : pos + size])
        return (list(sub.values()) if kind == 0x04 else sub), pos + size
    if kind == 0x05:
        size, subtype = struct.unpack_from("<iB", data, pos)
        return Binary(subtype, data[pos + 5 : pos + 5 + size]), pos + 5 + size
    if kind == 0x07:
        return ObjectId(data[pos : pos + 12]), pos + 12
    if kind == 0x08:
        return data[pos] == 1, pos + 1
    if kind == 0x09:
        (millis,) = struct.unpack_from("<q", data, pos)
        return EPOCH + datetime.timedelta(milliseconds=millis), pos + 8
    if kind == 0x0A:
        return None, pos
    if kind == 0x0B:
        pattern, pos = _read_cstring(data, pos)
        flags, pos = _read_cstring(data, pos)
        return Regex(pattern, flags), pos
    if kind == 0x10:
        return struct.unpack_from("<i", data, pos)[0], pos + 4
    if kind == 0x11:
        inc, secs = struct.unpack_from("<II", data, pos)
        return Timestamp(secs, inc), pos + 8
    if kind == 0x12:
        return Int64(struct.unpack_from("<q", data, pos)[0]), pos + 8
    if kind == 0x13:
        return Decimal128(data[pos : pos + 16]), pos + 16
    if kind == 0xFF:
        return MinKey(), pos
    if kind == 0x7F:
        return MaxKey(), pos
    raise BSONError(f"unsupported BSON type 0x{kind:02x}")


def decode(data: bytes) -> Document:
    if len(data) < 5:
        raise BSONError("document too short")
    (size,) = struct.unpack_from("<i", data, 0)
    if size != len(data) or data[-1] != 0:
        raise BSONError("document length mismatch")
    out: Document = {}
    pos = 4
    try:
        while pos < size - 1:
            kind = data[pos]
            key, pos = _read_cstring(data, pos + 1)
            out[key], pos = _decode_value(kind, data, pos)
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise BSONError(str(exc)) from exc
    if pos != size - 1:
        raise BSONError("trailing bytes in document")
    return out


def decode_all(data: bytes) -> list[Document]:
    """Decode a concatenation of documents (a .bson file, an OP_MSG document sequence)."""
    docs, end = decode_prefix(data)
    if end < len(data):
        raise BSONError("truncated document sequence")
    return docs


def decode_prefix(data: bytes) -> tuple[list[Document], int]:
    """The whole documents a concatenation starts with, and where they end (a log whose last
    append was cut short)."""
    docs = []
    pos = 0
    while pos + 4 <= len(data):
        (size,) = struct.unpack_from("<i", data, pos)
        if size < 5 or pos + size > len(data):
            break
        docs.append(decode(data[pos : pos + size]))
        pos += size
    return docs, pos


_TYPE_ORDER: list[tuple[type, int]] = [
    (MinKey, 0),
    (type(None), 1),
    (bool, 8),
    (int, 2),
    (float, 2),
    (Decimal128, 2),
    (str, 3),
    (dict, 4),
    (list, 5),
    (Binary, 6),
    (bytes, 6),
    (ObjectId, 7),
    (datetime.datetime, 9),
    (Timestamp, 10),
    (Regex, 11),
    (MaxKey, 12),
]


def type_rank(value: Any) -> int:
    for kind, rank in _TYPE_ORDER:
        if isinstance(value, kind):
            return rank
    return 13


def sort_key(value: Any) -> tuple[Any, ...]:
    """A key that orders values the way MongoDB's BSON comparison does for the supported types."""
    rank = type_rank(value)
    if rank == 2 and not isinstance(value, Decimal128):
        return (rank, float(value))
    if rank == 4:
        return (rank, tuple((k, sort_key(v)) for k, v in value.items()))
    if rank == 5:
        return (rank, tuple(sort_key(v) for v in value))
    if rank == 6:
        data = value if isinstance(value, bytes) else value.data
        return (rank, len(data), data)
    if rank == 7:
        return (rank, value.binary)
    if rank in (3, 8, 9, 10):
        return (rank, value)
    if rank == 11:
        return (rank, value.pattern, value.flags)
    return (rank,)


def to_extended_json(value: Any) -> Any:
    """Relaxed extended JSON, used for log attributes and error messages."""
    if isinstance(value, dict):
        return {k: to_extended_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_extended_json(v) for v in value]
    if isinstance(value, ObjectId):
        return {"$oid": str(value)}
    if isinstance(value, datetime.datetime):
        return {"$date": value.astimezone(UTC).isoformat(timespec="milliseconds")}
    if isinstance(value, Timestamp):
        return {"$timestamp": {"t": value.time, "i": value.inc}}
    if isinstance(value, Binary):
        return {
            "$binary": {
                "base64": base64.b64encode(value.data).decode(),
                "subType": f"{value.subtype:02x}",
            }
        }
    if isinstance(value, bytes):
        return {"$binary": {"base64": base64.b64encode(value).decode(), "subType": "00"}}
    if isinstance(value, Decimal128 | Regex | MinKey | MaxKey):
        return repr(value)
    return value


def shell_repr(value: Any) -> str:
    """Render a value the way server error messages do: `{ _id: 1, name: "x" }`."""
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{k}: {shell_repr(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[ " + ", ".join(shell_repr(v) for v in value) + " ]"
    if isinstance(value, str):
        return '"' + value.replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)
