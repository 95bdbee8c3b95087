"""mongodump (test double of mongo-tools 100.x): archive dumps, optionally gzipped, with --oplog.

Only archive output is implemented (`--archive[=path]`); directory dumps (`--out`) are refused
with a message that says so.
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path
from typing import BinaryIO

from .. import bson_codec
from ..bson_codec import Binary, Document, Timestamp
from . import archive
from .client import Client, CommandFailed, connected, settings_from_options
from .common import (
    NONE,
    REQUIRED,
    TOOL_VERSION,
    Parsed,
    ToolError,
    UsageError,
    log,
    parse_options,
    run_tool,
)

TOOL = "mongodump"
FLAGS = {
    "out": (REQUIRED, "o", False),
    "oplog": (NONE, None, False),
    "excludeCollection": (REQUIRED, None, True),
    "dumpDbUsersAndRoles": (NONE, None, False),
}
USERS_AND_ROLES = ("system.users", "system.roles", "system.version")
USAGE = """Usage:
  mongodump <options> <connection-string>

Export the content of a running server into an archive (test double of mongo-tools).

  --uri=<uri> | -h/--host, --port, -u/--username, -p/--password, --authenticationDatabase,
  --authenticationMechanism, --config=<yaml with password/uri>, --readPreference=<mode|json>,
  -d/--db, -c/--collection, --excludeCollection, --archive[=<file>], --gzip, --oplog,
  -j/--numParallelCollections, --dumpDbUsersAndRoles, -v/--verbose, --quiet, --help, --version
  TLS: --ssl, --sslCAFile, --sslPEMKeyFile, --sslPEMKeyPassword (or sslPEMKeyPassword in --config),
  --tlsInsecure, --sslCRLFile, --sslFIPSMode; uri: tls/ssl, tlsCAFile, tlsCertificateKeyFile,
  tlsCertificateKeyFilePassword, tlsInsecure
"""


def _validate(opts: Parsed) -> None:
    if opts.has("out") and opts.has("archive"):
        raise ToolError("bad option: --out not allowed when --archive is specified")
    if opts.has("collection") and not opts.has("db"):
        raise ToolError("bad option: cannot dump a collection without a specified database")
    if opts.has("oplog") and (opts.has("db") or opts.has("collection")):
        raise ToolError("bad option: --oplog mode only supported on full dumps")
    if opts.has("excludeCollection") and not opts.has("db"):
        raise ToolError("bad option: --excludeCollection is only allowed when --db is specified")
    if opts.has("dumpDbUsersAndRoles") and not opts.has("db"):
        raise ToolError("bad option: can't dump users and roles without specifying a database")
    if opts.get("out") == "-" and opts.has("gzip"):
        raise ToolError("bad option: --gzip cannot be used when dumping to standard output")
    if not opts.has("archive"):
        raise ToolError(
            "directory dumps (--out) are not implemented by this test double; use --archive"
        )
    jobs = opts.get("numParallelCollections", "4")
    if not str(jobs).isdigit() or int(jobs) < 1:
        raise UsageError(f"invalid argument for flag `--numParallelCollections': {jobs}")


def _archive_target(value: str, gzipped: bool) -> Path | None:
    if value in ("", "-"):
        return None
    path = Path(value)
    if path.is_dir():
        return path / ("archive.gz" if gzipped else "archive")
    return path


def _last_oplog_ts(client: Client, coll: str) -> Timestamp:
    try:
        reply = client.command(
            "local", {"find": coll, "sort": {"$natural": -1}, "limit": 1, "singleBatch": True}, True
        )
    except CommandFailed as exc:
        raise ToolError(f"error getting oplog start: {exc}") from exc
    batch = reply["cursor"]["firstBatch"]
    if not batch:
        raise ToolError("error getting oplog start: mongo: no documents in result")
    return batch[0]["ts"]


def _oplog_collection(client: Client) -> str:
    hello = client.command("admin", {"hello": 1})
    if "hosts" in hello:
        return "oplog.rs"
    if not (hello.get("isWritablePrimary") or hello.get("ismaster")):
        raise ToolError("not connected to master")
    return "oplog.$main"


def _collections(client: Client, opts: Parsed) -> list[tuple[str, str, Document]]:
    if opts.has("db"):
        dbs = [opts.get("db")]
    else:
        reply = client.command("admin", {"listDatabases": 1, "nameOnly": True}, True)
        dbs = [d["name"] for d in reply["databases"] if d["name"] not in ("local", "config")]
    excluded = set(opts.get("excludeCollection", []))
    out = []
    for db in dbs:
        reply = client.command(db, {"listCollections": 1}, True)
        entries = list(reply["cursor"]["firstBatch"])
        for entry in entries:
            name = entry["name"]
            if entry.get("type", "collection") != "collection" or name in excluded:
                continue
            if opts.has("collection") and name != opts.get("collection"):
                continue
            if name.startswith("system."):
                keep_users = db == "admin" and (
                    not opts.has("db") or opts.has("dumpDbUsersAndRoles")
                )
                if not (keep_users and name in USERS_AND_ROLES):
                    continue
            out.append((db, name, entry))
    return out


def _namespace(client: Client, db: str, coll: str, entry: Document) -> archive.Namespace:
    indexes = client.command(db, {"listIndexes": coll}, True)["cursor"]["firstBatch"]
    uuid = (entry.get("info") or {}).get("uuid")
    uuid_hex = uuid.data.hex() if isinstance(uuid, Binary) else ""
    metadata = archive.metadata_json(entry.get("options") or {}, indexes, uuid_hex, coll)
    return archive.Namespace(db, coll, metadata, client.find_all(db, coll))


def _dump(argv: list[str]) -> None:
    opts = parse_options(TOOL, USAGE, FLAGS, argv, _validate)
    if opts is None:
        return
    settings = settings_from_options(opts)
    gzipped = bool(opts.get("gzip"))
    target = _archive_target(opts.get("archive"), gzipped)
    where = "on stdout" if target is None else f"'{target}'"
    with connected(settings) as client:
        version = str(client.command("admin", {"buildInfo": 1}).get("version", ""))
        oplog_coll = ""
        start: Timestamp | None = None
        if opts.has("oplog"):
            oplog_coll = _oplog_collection(client)
            start = _last_oplog_ts(client, oplog_coll)
        spaces = []
        for db, coll, entry in _collections(client, opts):
            log.info(f"writing {db}.{coll} to archive {where}")
            space = _namespace(client, db, coll, entry)
            spaces.append(space)
            log.info(f"done dumping {db}.{coll} ({len(space.documents)} documents)")
        if opts.has("oplog"):
            assert start is not None
            end = _last_oplog_ts(client, oplog_coll)
            log.info("writing captured oplog to ")
            entries = client.find_all(
                "local", oplog_coll, {"filter": {"ts": {"$gte": start, "$lte": end}}}
            )
            if not entries or bson_codec.decode(entries[0])["ts"] != start:
                raise ToolError(
                    "oplog overflow: mongodump was unable to capture all new oplog entries "
                    "during execution"
                )
            spaces.append(archive.Namespace(*archive.OPLOG, "", entries))
            log.info(f"\tdumped {len(entries)} oplog entries")
    _write(spaces, target, gzipped, version, int(opts.get("numParallelCollections", "4")))


def _write(
    spaces: list[archive.Namespace], target: Path | None, gzipped: bool, version: str, jobs: int
) -> None:
    try:
        raw: BinaryIO = sys.stdout.buffer if target is None else target.open("wb")
    except OSError as exc:
        raise ToolError(f"error opening archive file: {exc.strerror}: {target}") from exc
    try:
        out: BinaryIO = gzip.GzipFile(fileobj=raw, mode="wb") if gzipped else raw  # type: ignore[assignment]
        archive.write_archive(out, spaces, version, TOOL_VERSION, jobs)
        if gzipped:
            out.close()
        raw.flush()
    finally:
        if target is not None:
            raw.close()


def main(argv: list[str]) -> int:
    return run_tool(TOOL, _dump, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
