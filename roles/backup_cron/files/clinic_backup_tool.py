"""Helper of clinic-backup and clinic-audit-export: archive manifest, object checks, audit export.

Sub-commands (each prints its result on stdout and exits non-zero with a reason on stderr):
  member-state URI          hello of the member: PRIMARY, SECONDARY or OTHER (no authentication)
  manifest ARCHIVE ...      the manifest JSON of a `mongodump --oplog --gzip --archive` file
  check-head REPLY_JSON ... a head-object (or put-object) reply against what was uploaded
  audit-export ...          one UTC day of audit records as gzipped JSON lines

The archive reader follows the mongo-tools archive format: a magic number, a prelude (header and
collection metadata documents up to a terminator), then namespace segments, each a header
document {db, collection, EOF, CRC} followed by BSON documents up to a terminator. The oplog of an
--oplog dump is the namespace with an empty db and collection "oplog".
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import hashlib
import json
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

MAGIC = struct.pack("<I", 0x8199E26D)
TERMINATOR = 0xFFFFFFFF
OPLOG_NS = ".oplog"

# Sizes of fixed-width BSON values by type byte.
FIXED = {0x01: 8, 0x06: 0, 0x07: 12, 0x08: 1, 0x09: 8, 0x0A: 0, 0x10: 4, 0x11: 8, 0x12: 8}
FIXED |= {0x13: 16, 0x7F: 0, 0xFF: 0}


class ToolError(Exception):
    """A failure the calling script reports as it is."""


def elements(doc: bytes) -> Iterator[tuple[str, int, bytes]]:
    """(name, type, raw value) of each top-level element of a BSON document."""
    pos, end = 4, len(doc) - 1
    while pos < end:
        kind = doc[pos]
        name_end = doc.index(b"\x00", pos + 1)
        name = doc[pos + 1 : name_end].decode("utf-8", "replace")
        start = name_end + 1
        if kind in FIXED:
            size = FIXED[kind]
        elif kind in (0x02, 0x0D, 0x0E):
            size = 4 + struct.unpack_from("<i", doc, start)[0]
        elif kind in (0x03, 0x04, 0x0F):
            size = struct.unpack_from("<i", doc, start)[0]
        elif kind == 0x05:
            size = 5 + struct.unpack_from("<i", doc, start)[0]
        elif kind == 0x0B:
            size = doc.index(b"\x00", doc.index(b"\x00", start) + 1) + 1 - start
        elif kind == 0x0C:
            size = 4 + struct.unpack_from("<i", doc, start)[0] + 12
        else:
            raise ToolError(f"unknown BSON type 0x{kind:02x} in field {name!r}")
        yield name, kind, doc[start : start + size]
        pos = start + size


def field(doc: bytes, wanted: str) -> tuple[int, bytes] | None:
    for name, kind, raw in elements(doc):
        if name == wanted:
            return kind, raw
    return None


def string_value(raw: bytes) -> str:
    return raw[4:-1].decode("utf-8")


def id_key(doc: bytes) -> bytes | None:
    """The _id of a document as its type byte and raw value bytes (equal encodings, equal ids)."""
    found = field(doc, "_id")
    return None if found is None else bytes([found[0]]) + found[1]


def read_document(stream: IO[bytes]) -> bytes | None:
    """The next BSON document, or None at a terminator."""
    head = stream.read(4)
    if len(head) < 4:
        raise ToolError("archive ends in the middle of a segment")
    (size,) = struct.unpack("<I", head)
    if size == TERMINATOR:
        return None
    if size < 5:
        raise ToolError(f"invalid BSON document size {size}")
    body = stream.read(size - 4)
    if len(body) != size - 4:
        raise ToolError("archive ends in the middle of a document")
    return head + body


def namespace_of(header: bytes) -> str:
    db, coll = field(header, "db"), field(header, "collection")
    if db is None or coll is None:
        raise ToolError("namespace header without db or collection")
    return f"{string_value(db[1])}.{string_value(coll[1])}"


def segments(path: str) -> Iterator[tuple[str, bytes | None]]:
    """(namespace, None) for each namespace of the prelude (empty ones included), then
    (namespace, document) for every document of the archive; the oplog's namespace is '.oplog'."""
    with gzip.open(path, "rb") as stream:
        if stream.read(4) != MAGIC:
            raise ToolError(f"{path} is not a mongodump archive (bad magic number)")
        if read_document(stream) is None:
            raise ToolError(f"{path} has no archive header")
        while (meta := read_document(stream)) is not None:
            yield namespace_of(meta), None
        while True:
            head = stream.read(4)
            if not head:
                return
            header = read_document(_Prefixed(head, stream))
            if header is None:
                raise ToolError("unexpected terminator between segments")
            namespace = namespace_of(header)
            while (doc := read_document(stream)) is not None:
                yield namespace, doc


class _Prefixed:
    """A stream whose first bytes were already read."""

    def __init__(self, head: bytes, stream: IO[bytes]) -> None:
        self.head, self.stream = head, stream

    def read(self, size: int) -> bytes:
        taken, self.head = self.head[:size], self.head[size:]
        return taken + (self.stream.read(size - len(taken)) if size > len(taken) else b"")


def oplog_effects(path: str) -> tuple[dict[str, int], list[tuple[str, str, bytes | None]], int]:
    """Documents per namespace in the dump, the oplog's insert/delete/drop entries, oplog size."""
    counts: dict[str, int] = {}
    ops: list[tuple[str, str, bytes | None]] = []
    entries = 0
    for namespace, doc in segments(path):
        if namespace != OPLOG_NS:
            counts[namespace] = counts.get(namespace, 0) + (doc is not None)
            continue
        if doc is None:
            continue
        entries += 1
        op, ns, obj = field(doc, "op"), field(doc, "ns"), field(doc, "o")
        if op is None or ns is None or obj is None:
            continue
        kind, name = string_value(op[1]), string_value(ns[1])
        if kind in ("i", "d"):
            ops.append((kind, name, id_key(obj[1])))
        elif kind == "c":
            dropped = field(obj[1], "drop")
            if dropped is not None:
                ops.append(("drop", f"{name.split('.', 1)[0]}.{string_value(dropped[1])}", None))
    return counts, ops, entries


def collection_counts(path: str) -> tuple[dict[str, int], int]:
    """Documents per namespace after the oplog is replayed onto the dump, and the oplog's size."""
    counts, ops, entries = oplog_effects(path)
    watched: dict[str, set[bytes]] = {}
    for _kind, namespace, key in ops:
        if key is not None:
            watched.setdefault(namespace, set()).add(key)
    present: dict[str, set[bytes]] = {ns: set() for ns in watched}
    if watched:
        for namespace, doc in segments(path):
            key = id_key(doc) if doc is not None and namespace in watched else None
            if key is not None and key in watched[namespace]:
                present[namespace].add(key)
    base = {ns: counts.get(ns, 0) - len(present.get(ns, ())) for ns in set(counts) | set(watched)}
    for kind, namespace, key in ops:
        live = present.setdefault(namespace, set())
        base.setdefault(namespace, 0)
        if kind == "drop":
            base[namespace] = 0
            live.clear()
        elif kind == "i" and key is not None:
            live.add(key)
        elif kind == "d" and key is not None:
            live.discard(key)
    final = {ns: base[ns] + len(present.get(ns, ())) for ns in base}
    return dict(sorted(final.items())), entries


def cmd_manifest(args: argparse.Namespace) -> None:
    counts, entries = collection_counts(args.archive)
    manifest = {
        "format": 1,
        "environment": args.env,
        "timestamp": args.timestamp,
        "host": args.host,
        "started_at": args.started,
        "finished_at": args.finished,
        "archive": {
            "key": args.key,
            "sha256": args.sha256,
            "bytes": args.bytes,
            "format": "mongodump --oplog --gzip --archive",
        },
        "oplog_entries": entries,
        "collections": counts,
    }
    json.dump(manifest, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


def cmd_check_head(args: argparse.Namespace) -> None:
    with Path(args.head_json).open(encoding="utf-8") as handle:
        head: dict[str, Any] = json.load(handle)
    problems = []
    if head.get("ServerSideEncryption") != "aws:kms":
        problems.append(
            f"ServerSideEncryption is {head.get('ServerSideEncryption')!r}, not 'aws:kms'"
        )
    key = head.get("SSEKMSKeyId")
    if key not in args.key_id:
        problems.append(f"SSEKMSKeyId is {key!r}, not the key {args.key_id[0]}")
    if args.bytes is not None and int(head.get("ContentLength", -1)) != args.bytes:
        problems.append(f"ContentLength is {head.get('ContentLength')}, {args.bytes} were uploaded")
    if args.sha256 and head.get("Metadata", {}).get("sha256") != args.sha256:
        problems.append("the sha256 metadata differs from the uploaded file's")
    if problems:
        raise ToolError("; ".join(problems))
    print("verified")


def cmd_member_state(args: argparse.Namespace) -> None:
    from pymongo import MongoClient

    # hello needs no authentication: the user is left out of the connection string.
    uri = "mongodb://" + args.uri.split("@", 1)[1] if "@" in args.uri else args.uri
    client: MongoClient[dict[str, Any]] = MongoClient(uri, serverSelectionTimeoutMS=10000)
    try:
        hello = client.admin.command("hello")
    finally:
        client.close()
    if hello.get("isWritablePrimary"):
        print("PRIMARY")
    elif hello.get("secondary"):
        print("SECONDARY")
    else:
        print("OTHER")


def read_password(config: str) -> str:
    with Path(config).open(encoding="utf-8") as handle:
        for line in handle:
            name, _, value = line.partition(":")
            if name.strip() == "password":
                value = value.strip()
                return str(json.loads(value)) if value.startswith('"') else value
    raise ToolError(f"no password in {config}")


def cmd_audit_export(args: argparse.Namespace) -> None:
    from bson import json_util
    from pymongo import MongoClient

    day = datetime.datetime.strptime(args.day, "%Y-%m-%d").replace(tzinfo=datetime.UTC)
    query = {args.field: {"$gte": day, "$lt": day + datetime.timedelta(days=1)}}
    client: MongoClient[dict[str, Any]] = MongoClient(
        args.uri, password=read_password(args.config), serverSelectionTimeoutMS=10000
    )
    digest = hashlib.sha256()
    count = 0
    try:
        cursor = client[args.database][args.collection].find(query).sort(args.field, 1)
        with gzip.open(args.out, "wb") as out:
            for doc in cursor:
                line = json_util.dumps(doc, json_options=json_util.RELAXED_JSON_OPTIONS) + "\n"
                data = line.encode("utf-8")
                digest.update(data)
                out.write(data)
                count += 1
    finally:
        client.close()
    print(json.dumps({"records": count, "jsonl_sha256": digest.hexdigest()}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clinic_backup_tool")
    sub = parser.add_subparsers(dest="command", required=True)
    state = sub.add_parser("member-state")
    state.add_argument("uri")
    state.set_defaults(run=cmd_member_state)
    manifest = sub.add_parser("manifest")
    manifest.add_argument("archive")
    for name in ("--env", "--timestamp", "--host", "--key", "--sha256", "--started", "--finished"):
        manifest.add_argument(name, required=True)
    manifest.add_argument("--bytes", type=int, required=True)
    manifest.set_defaults(run=cmd_manifest)
    head = sub.add_parser("check-head")
    head.add_argument("head_json")
    head.add_argument("--bytes", type=int, default=None)
    head.add_argument("--sha256", default="")
    head.add_argument("--key-id", action="append", required=True)
    head.set_defaults(run=cmd_check_head)
    audit = sub.add_parser("audit-export")
    for name in ("--uri", "--config", "--database", "--collection", "--field", "--day", "--out"):
        audit.add_argument(name, required=True)
    audit.set_defaults(run=cmd_audit_export)
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except ToolError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
