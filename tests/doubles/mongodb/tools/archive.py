"""The mongodump archive format (version 0.1) and canonical Extended JSON v2 for its metadata.

Layout, as mongo-tools 100.x writes it: the magic number 0x8199e26d (little-endian), a header
document, one collection-metadata document per namespace, a terminator (0xffffffff); then
namespace segments (header `{db, collection, EOF: false, CRC: 0}`, documents, terminator) and one
EOF header per namespace (`EOF: true`, `CRC` = CRC-64/ECMA of all its documents) plus terminator.
The oplog of an `--oplog` dump is the namespace with db "" and collection "oplog". With `--gzip`
the whole stream is gzipped.
"""

from __future__ import annotations

import base64
import datetime
import json
import math
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from .. import bson_codec
from ..bson_codec import (
    EPOCH,
    UTC,
    Binary,
    Decimal128,
    Document,
    Int64,
    MaxKey,
    MinKey,
    ObjectId,
    Regex,
    Timestamp,
)

MAGIC = struct.pack("<I", 0x8199E26D)
TERMINATOR = b"\xff\xff\xff\xff"
FORMAT_VERSION = "0.1"
OPLOG = ("", "oplog")


class ArchiveError(ValueError):
    """The stream is not a well-formed mongodump archive."""


# CRC-64/ECMA as Go's hash/crc64 computes it with crc64.MakeTable(crc64.ECMA).


def _crc64_table() -> list[int]:
    poly = 0xC96C5795D7870F42
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC64 = _crc64_table()


def crc64_update(crc: int, data: bytes) -> int:
    crc = ~crc & 0xFFFFFFFFFFFFFFFF
    for byte in data:
        crc = _CRC64[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return ~crc & 0xFFFFFFFFFFFFFFFF


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


# Canonical Extended JSON v2 (the format of metadata.json and of the archive's metadata field).


def to_canonical(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: to_canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_canonical(v) for v in value]
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, Int64):
        return {"$numberLong": str(int(value))}
    if isinstance(value, int):
        if -(2**31) <= value < 2**31:
            return {"$numberInt": str(value)}
        return {"$numberLong": str(value)}
    if isinstance(value, float):
        if math.isnan(value):
            text = "NaN"
        elif math.isinf(value):
            text = "Infinity" if value > 0 else "-Infinity"
        else:
            text = repr(value)
        return {"$numberDouble": text}
    if isinstance(value, ObjectId):
        return {"$oid": str(value)}
    if isinstance(value, bytes):
        value = Binary(0, value)
    if isinstance(value, Binary):
        return {
            "$binary": {
                "base64": base64.b64encode(value.data).decode(),
                "subType": f"{value.subtype:02x}",
            }
        }
    if isinstance(value, datetime.datetime):
        millis = (value.replace(tzinfo=value.tzinfo or UTC) - EPOCH) // datetime.timedelta(
            milliseconds=1
        )
        return {"$date": {"$numberLong": str(millis)}}
    if isinstance(value, Timestamp):
        return {"$timestamp": {"t": value.time, "i": value.inc}}
    if isinstance(value, Regex):
        return {"$regularExpression": {"pattern": value.pattern, "options": value.flags}}
    if isinstance(value, Decimal128):
        return {"$numberDecimal": {"$rawBytes": value.raw.hex()}}
    if isinstance(value, MinKey):
        return {"$minKey": 1}
    if isinstance(value, MaxKey):
        return {"$maxKey": 1}
    raise ArchiveError(f"cannot write {type(value).__name__} as Extended JSON")


def from_canonical(value: Any) -> Any:
    if isinstance(value, list):
        return [from_canonical(v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        key, inner = next(iter(value.items()))
        if key == "$numberInt":
            return int(inner)
        if key == "$numberLong":
            return Int64(int(inner))
        if key == "$numberDouble":
            return float(inner.replace("Infinity", "inf"))
        if key == "$oid":
            return ObjectId(inner)
        if key == "$binary":
            return Binary(int(inner["subType"], 16), base64.b64decode(inner["base64"]))
        if key == "$date":
            millis = int(inner["$numberLong"]) if isinstance(inner, dict) else int(inner)
            return EPOCH + datetime.timedelta(milliseconds=millis)
        if key == "$timestamp":
            return Timestamp(int(inner["t"]), int(inner["i"]))
        if key == "$regularExpression":
            return Regex(inner["pattern"], inner["options"])
        if key == "$numberDecimal" and isinstance(inner, dict):
            return Decimal128(bytes.fromhex(inner["$rawBytes"]))
        if key == "$minKey":
            return MinKey()
        if key == "$maxKey":
            return MaxKey()
    return {k: from_canonical(v) for k, v in value.items()}


def metadata_json(options: Document, indexes: list[Document], uuid: str, name: str) -> str:
    meta: Document = {}
    if options:
        meta["options"] = options
    meta["indexes"] = indexes
    if uuid:
        meta["uuid"] = uuid
    meta["collectionName"] = name
    meta["type"] = "collection"
    return json.dumps(to_canonical(meta), separators=(",", ":"))


# Writing


@dataclass
class Namespace:
    db: str
    collection: str
    metadata: str
    documents: list[bytes]

    @property
    def size(self) -> int:
        return sum(len(d) for d in self.documents)


def write_archive(
    out: BinaryIO,
    namespaces: Iterable[Namespace],
    server_version: str,
    tool_version: str,
    concurrent: int = 4,
) -> None:
    spaces = list(namespaces)
    out.write(MAGIC)
    out.write(
        bson_codec.encode(
            {
                "concurrent_collections": concurrent,
                "version": FORMAT_VERSION,
                "server_version": server_version,
                "tool_version": tool_version,
            }
        )
    )
    for ns in spaces:
        out.write(
            bson_codec.encode(
                {
                    "db": ns.db,
                    "collection": ns.collection,
                    "metadata": ns.metadata,
                    "size": ns.size,
                }
            )
        )
    out.write(TERMINATOR)
    for ns in spaces:
        crc = 0
        if ns.documents:
            header = {"db": ns.db, "collection": ns.collection, "EOF": False, "CRC": Int64(0)}
            out.write(bson_codec.encode(header))
            for doc in ns.documents:
                out.write(doc)
                crc = crc64_update(crc, doc)
            out.write(TERMINATOR)
        eof = {"db": ns.db, "collection": ns.collection, "EOF": True}
        eof["CRC"] = Int64(_signed64(crc))
        out.write(bson_codec.encode(eof))
        out.write(TERMINATOR)


# Reading


@dataclass
class Archive:
    header: Document
    metadata: list[Document] = field(default_factory=list)
    documents: dict[tuple[str, str], list[bytes]] = field(default_factory=dict)


def _read_document(data: bytes, pos: int) -> tuple[bytes | None, int]:
    """The raw document at pos, or None at a terminator."""
    if data[pos : pos + 4] == TERMINATOR:
        return None, pos + 4
    if pos + 4 > len(data):
        raise ArchiveError("archive ends in the middle of a document")
    (size,) = struct.unpack_from("<i", data, pos)
    if size < 5 or pos + size > len(data):
        raise ArchiveError("archive ends in the middle of a document")
    return data[pos : pos + size], pos + size


def read_archive(data: bytes) -> Archive:
    if data[:4] != MAGIC:
        raise ArchiveError("stream or file does not appear to be a mongodump archive")
    raw, pos = _read_document(data, 4)
    if raw is None:
        raise ArchiveError("archive has no header")
    archive = Archive(bson_codec.decode(raw))
    if archive.header.get("version") != FORMAT_VERSION:
        raise ArchiveError(f"unsupported archive format version {archive.header.get('version')}")
    while True:
        raw, pos = _read_document(data, pos)
        if raw is None:
            break
        meta = bson_codec.decode(raw)
        archive.metadata.append(meta)
        archive.documents[(meta["db"], meta["collection"])] = []
    crcs: dict[tuple[str, str], int] = {}
    finished: set[tuple[str, str]] = set()
    while pos < len(data):
        raw, pos = _read_document(data, pos)
        if raw is None:
            raise ArchiveError("unexpected terminator where a namespace header was expected")
        header = bson_codec.decode(raw)
        key = (header["db"], header["collection"])
        if key not in archive.documents or key in finished:
            raise ArchiveError(f"archive data for unknown namespace {'.'.join(key)}")
        if header.get("EOF"):
            raw, pos = _read_document(data, pos)
            if raw is not None:
                raise ArchiveError("EOF header not followed by a terminator")
            expected = _signed64(crcs.get(key, 0))
            if int(header.get("CRC", 0)) != expected:
                raise ArchiveError(f"CRC mismatch for namespace {'.'.join(key)}")
            finished.add(key)
            continue
        while True:
            raw, pos = _read_document(data, pos)
            if raw is None:
                break
            archive.documents[key].append(raw)
            crcs[key] = crc64_update(crcs.get(key, 0), raw)
    missing = set(archive.documents) - finished
    if missing:
        names = ", ".join(sorted(".".join(k) for k in missing))
        raise ArchiveError(f"archive ended before the end of namespaces: {names}")
    return archive
