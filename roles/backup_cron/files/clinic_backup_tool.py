"""Helper of clinic-backup, clinic-oplog-archive and clinic-audit-export: archive manifest, object
checks, oplog slices, audit export.

Sub-commands (each prints its result on stdout and exits non-zero with a reason on stderr):
  member-state URI          hello of the member: PRIMARY, SECONDARY or OTHER (no authentication)
  replication-lag URI       seconds the member's last write is behind its primary's (hello of both)
  manifest ARCHIVE ...      the manifest JSON of a `mongodump --oplog --gzip --archive` file
  check-head HEAD_JSON ...  a head-object reply against what was uploaded
  put BUCKET FILE KEY ...   one upload with SSE-KMS, its reply checked; --if-absent: write-once;
                            --legal-hold: an Object Lock legal hold on the new version
  save-pointer BUCKET KEY OUT ...  the latest pointer before it is replaced: "saved" or "absent"
  release-holds POINTER ... lift the legal holds of the backup a former latest pointer names
  oplog-slice ...           the oplog entries after a timestamp as a gzipped BSON file (the
                            format of mongorestore's --oplogFile)
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


# Uploads larger than one part go up in parts of this size (S3 allows 10,000 parts: 640 GB).
PART_BYTES = 64 * 1024 * 1024
# Exit status of `put --if-absent` when the key exists already (S3 answered 412).
EXIT_EXISTS = 3


class ToolError(Exception):
    """A failure the calling script reports as it is."""


class KeyExists(ToolError):
    """A write-once key that S3 holds already."""


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


def object_problems(
    reply: dict[str, Any], key_ids: list[str], size: int | None = None, sha256: str = ""
) -> list[str]:
    """What in a head-object or put reply differs from an upload encrypted with one of key_ids."""
    problems = []
    if reply.get("ServerSideEncryption") != "aws:kms":
        problems.append(
            f"ServerSideEncryption is {reply.get('ServerSideEncryption')!r}, not 'aws:kms'"
        )
    key = reply.get("SSEKMSKeyId")
    if key not in key_ids:
        problems.append(f"SSEKMSKeyId is {key!r}, not the key {key_ids[0]}")
    if size is not None and int(reply.get("ContentLength", -1)) != size:
        problems.append(f"ContentLength is {reply.get('ContentLength')}, {size} were uploaded")
    if sha256 and reply.get("Metadata", {}).get("sha256") != sha256:
        problems.append("the sha256 metadata differs from the uploaded file's")
    return problems


def cmd_check_head(args: argparse.Namespace) -> None:
    with Path(args.head_json).open(encoding="utf-8") as handle:
        head: dict[str, Any] = json.load(handle)
    problems = object_problems(head, args.key_id, args.bytes, args.sha256)
    if problems:
        raise ToolError("; ".join(problems))
    print("verified")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def s3_client(region: str, endpoint: str) -> Any:
    """An S3 client with the default credential chain (AWS_SHARED_CREDENTIALS_FILE, then the
    instance profile) and the retry settings the calling script exports."""
    import botocore.session
    from botocore.config import Config

    return botocore.session.get_session().create_client(
        "s3",
        region_name=region,
        endpoint_url=endpoint or None,
        config=Config(connect_timeout=10, read_timeout=120),
    )


def upload(
    client: Any, bucket: str, path: Path, key: str, extra: dict[str, Any], if_absent: bool
) -> dict[str, Any]:
    """One put, or a multipart upload for a file larger than a part. With if_absent, S3 itself
    refuses (412) when the key exists: If-None-Match on the put, or on completing the parts."""
    condition = {"IfNoneMatch": "*"} if if_absent else {}
    size = path.stat().st_size
    with path.open("rb") as handle:
        if size <= PART_BYTES:
            return dict(
                client.put_object(Bucket=bucket, Key=key, Body=handle, **extra, **condition)
            )
        upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, **extra)["UploadId"]
        try:
            parts = []
            while chunk := handle.read(PART_BYTES):
                number = len(parts) + 1
                reply = client.upload_part(
                    Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk
                )
                parts.append({"PartNumber": number, "ETag": reply["ETag"]})
            return dict(
                client.complete_multipart_upload(
                    Bucket=bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                    **condition,
                )
            )
        except BaseException:
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            raise


def cmd_put(args: argparse.Namespace) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    path = Path(args.file)
    sha256 = sha256_of(path)
    extra: dict[str, Any] = {
        "ServerSideEncryption": "aws:kms",
        "SSEKMSKeyId": args.key_id[0],
        "Metadata": {"sha256": sha256},
    }
    if args.legal_hold:
        extra["ObjectLockLegalHoldStatus"] = "ON"
    client = s3_client(args.region, args.endpoint)
    where = f"s3://{args.bucket}/{args.key}"
    try:
        reply = upload(client, args.bucket, path, args.key, extra, args.if_absent)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code == "PreconditionFailed":
            raise KeyExists(f"{where} exists: it is never overwritten") from None
        raise ToolError(f"upload of {where} failed: {code}") from None
    except BotoCoreError as exc:
        raise ToolError(f"upload of {where} failed: {exc}") from None
    problems = object_problems(reply, args.key_id)
    if problems:
        raise ToolError(f"{where} was not stored as asked: " + "; ".join(problems))
    written = {"key": args.key, "sha256": sha256, "bytes": path.stat().st_size}
    print(json.dumps(written | {"version_id": reply.get("VersionId", "")}))


def cmd_save_pointer(args: argparse.Namespace) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    client = s3_client(args.region, args.endpoint)
    try:
        body = client.get_object(Bucket=args.bucket, Key=args.key)["Body"].read()
    except ClientError as exc:
        # Without s3:ListBucket, S3 answers 403 for a missing key; the hosts' read of the prefix
        # was just proven by the head-object checks, so 403 here means no pointer yet.
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "AccessDenied"):
            print("absent")
            return
        raise ToolError(f"s3://{args.bucket}/{args.key} could not be read: {exc}") from None
    except BotoCoreError as exc:
        raise ToolError(f"s3://{args.bucket}/{args.key} could not be read: {exc}") from None
    Path(args.out).write_bytes(body)
    print("saved")


def cmd_release_holds(args: argparse.Namespace) -> None:
    """The newest verified backup keeps a legal hold, which no lifecycle rule can remove, so that
    expiry by age never deletes the last good backup; once a newer one is verified and named by
    latest, the holds of the one the former pointer named are lifted."""
    from botocore.exceptions import BotoCoreError, ClientError

    with Path(args.pointer).open(encoding="utf-8") as handle:
        pointer = json.load(handle)
    held = [
        (pointer[name], pointer.get(f"{name}_version_id"))
        for name in ("archive", "manifest")
        if pointer.get(name)
    ]
    client = s3_client(args.region, args.endpoint)
    released = []
    for key, version in held:
        if not version:
            continue  # written before backups were held
        try:
            client.put_object_legal_hold(
                Bucket=args.bucket, Key=key, VersionId=version, LegalHold={"Status": "OFF"}
            )
        except (BotoCoreError, ClientError) as exc:
            raise ToolError(f"the legal hold of s3://{args.bucket}/{key} stays: {exc}") from None
        released.append(key)
    print(json.dumps({"released": released}))


def without_user(uri: str) -> str:
    """The connection string without its user: hello needs no authentication."""
    return "mongodb://" + uri.split("@", 1)[1] if "@" in uri else uri


def with_host(uri: str, host: str) -> str:
    """The connection string (without its user) pointed at another host:port, options kept."""
    rest = without_user(uri).removeprefix("mongodb://")
    _, slash, options = rest.partition("/")
    return f"mongodb://{host}{slash}{options}"


def hello(uri: str) -> dict[str, Any]:
    from pymongo import MongoClient

    client: MongoClient[dict[str, Any]] = MongoClient(uri, serverSelectionTimeoutMS=10000)
    try:
        return dict(client.admin.command("hello"))
    finally:
        client.close()


def cmd_member_state(args: argparse.Namespace) -> None:
    reply = hello(without_user(args.uri))
    if reply.get("isWritablePrimary"):
        print("PRIMARY")
    elif reply.get("secondary"):
        print("SECONDARY")
    else:
        print("OTHER")


def cmd_replication_lag(args: argparse.Namespace) -> None:
    """mongod's primary writes a no-op every 10 s when idle, so a member that replicates is never
    much more than that behind; one that stopped replicating falls behind by the time since."""
    member = hello(without_user(args.uri))
    primary = member.get("primary")
    if not primary:
        raise ToolError("this member knows no primary: its lag cannot be measured")
    try:
        ahead = hello(with_host(args.uri, primary))
    except Exception as exc:  # any driver error: the primary could not answer
        raise ToolError(f"the primary {primary} did not answer: {exc}") from None
    if not ahead.get("isWritablePrimary"):
        raise ToolError(f"{primary} is no longer primary: the lag cannot be measured")
    lag = ahead["lastWrite"]["opTime"]["ts"].time - member["lastWrite"]["opTime"]["ts"].time
    print(max(0, lag))


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


def parse_ts(text: str) -> tuple[int, int]:
    """A BSON timestamp written as seconds:increment (mongorestore's --oplogLimit form)."""
    seconds, _, increment = text.partition(":")
    if not seconds.isdigit() or not increment.isdigit():
        raise ToolError(f"not a timestamp <seconds>:<increment>: {text!r}")
    return int(seconds), int(increment)


def cmd_oplog_slice(args: argparse.Namespace) -> None:
    """Every oplog entry after --after up to the newest one at the start of the run, in oplog
    order, raw (byte for byte as the member holds them), gzipped. Without --after, or when the
    oplog no longer holds the entry after it (the oplog rolled over since the last slice), the
    slice starts at the oldest entry, and `continuous` says false: the chain of slices has a gap."""
    from bson.raw_bson import RawBSONDocument
    from bson.timestamp import Timestamp
    from pymongo import MongoClient

    client: MongoClient[RawBSONDocument] = MongoClient(
        args.uri,
        password=read_password(args.config),
        serverSelectionTimeoutMS=10000,
        document_class=RawBSONDocument,
    )
    digest = hashlib.sha256()
    entries = 0
    first = last = None
    try:
        oplog = client.local["oplog.rs"]
        oldest = oplog.find_one({}, {"ts": 1}, sort=[("$natural", 1)])
        newest = oplog.find_one({}, {"ts": 1}, sort=[("$natural", -1)])
        if oldest is None or newest is None:
            raise ToolError("this member's oplog is empty: it is not a replica set member")
        after = Timestamp(*parse_ts(args.after)) if args.after else None
        # The entry after the last slice must still be there: the oldest entry is at most the
        # last sliced one (that one may be gone, the next one may not).
        continuous = after is not None and oldest["ts"] <= after
        bounds = {"$lte": newest["ts"]} | ({"$gt": after} if continuous else {})
        with gzip.open(args.out, "wb") as out:
            for doc in oplog.find({"ts": bounds}).sort("$natural", 1):
                data = doc.raw
                digest.update(data)
                out.write(data)
                entries += 1
                first = first or doc["ts"]
                last = doc["ts"]
    finally:
        client.close()

    def text(ts: Any) -> str | None:
        return f"{ts.time}:{ts.inc}" if ts is not None else None

    print(
        json.dumps(
            {
                "entries": entries,
                "first": text(first),
                "last": text(last),
                "oldest": text(oldest["ts"]),
                "continuous": continuous,
                "bson_sha256": digest.hexdigest(),
            }
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clinic_backup_tool")
    sub = parser.add_subparsers(dest="command", required=True)
    state = sub.add_parser("member-state")
    state.add_argument("uri")
    state.set_defaults(run=cmd_member_state)
    lag = sub.add_parser("replication-lag")
    lag.add_argument("uri")
    lag.set_defaults(run=cmd_replication_lag)
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
    put = sub.add_parser("put")
    for name in ("bucket", "file", "key"):
        put.add_argument(name)
    put.add_argument("--key-id", action="append", required=True)
    put.add_argument("--region", required=True)
    put.add_argument("--endpoint", default="")
    put.add_argument("--if-absent", action="store_true")
    put.add_argument("--legal-hold", action="store_true")
    put.set_defaults(run=cmd_put)
    save = sub.add_parser("save-pointer")
    for name in ("bucket", "key", "out"):
        save.add_argument(name)
    save.add_argument("--region", required=True)
    save.add_argument("--endpoint", default="")
    save.set_defaults(run=cmd_save_pointer)
    release = sub.add_parser("release-holds")
    release.add_argument("pointer")
    for name in ("--bucket", "--region"):
        release.add_argument(name, required=True)
    release.add_argument("--endpoint", default="")
    release.set_defaults(run=cmd_release_holds)
    oplog = sub.add_parser("oplog-slice")
    for name in ("--uri", "--config", "--out"):
        oplog.add_argument(name, required=True)
    oplog.add_argument("--after", default="")
    oplog.set_defaults(run=cmd_oplog_slice)
    audit = sub.add_parser("audit-export")
    for name in ("--uri", "--config", "--database", "--collection", "--field", "--day", "--out"):
        audit.add_argument(name, required=True)
    audit.set_defaults(run=cmd_audit_export)
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except KeyExists as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_EXISTS
    except ToolError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
