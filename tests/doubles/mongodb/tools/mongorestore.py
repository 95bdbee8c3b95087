"""mongorestore (test double of mongo-tools 100.x): restore an archive, --drop, --oplogReplay.

Documents go in with ordinary `insert` commands; duplicate keys and other per-document failures
are counted, not fatal, unless `--stopOnError`. The oplog is replayed with ordinary CRUD and
collection commands (real mongorestore uses `applyOps`), which works against the double and a
real server alike. `--oplogReplay --oplogFile=<file>` with a directory target replays that .bson
file of oplog entries (a point-in-time restore onto data restored before); the directory may hold
no dump of collections (directory restores are not implemented).

Users and roles of the archive (`admin.system.users`/`system.roles`, when the namespace filters
let them through) are restored as mongo-tools restores them, after the collections and before
the oplog: the documents go into temporary collections (`admin.tempusers`/`admin.temproles`,
`--tempUsersColl`/`--tempRolesColl`), the server's `_mergeAuthzCollections` moves them into
place (`drop: true` with `--drop`, so the target's users and roles that are not in the archive
are removed), and the temporary collections are dropped whatever the merge's outcome.
`admin.system.version` and other `system.*` collections are not restored.
"""

from __future__ import annotations

import gzip
import json
import re
import sys
import zlib
from pathlib import Path

from .. import bson_codec
from ..bson_codec import Document, Timestamp
from . import archive
from .client import Client, CommandFailed, Settings, connected, settings_from_options
from .common import NONE, REQUIRED, Parsed, ToolError, UsageError, log, parse_options, run_tool

TOOL = "mongorestore"
FLAGS = {
    "drop": (NONE, None, False),
    "oplogReplay": (NONE, None, False),
    "oplogLimit": (REQUIRED, None, False),
    "oplogFile": (REQUIRED, None, False),
    "nsInclude": (REQUIRED, None, True),
    "nsExclude": (REQUIRED, None, True),
    "stopOnError": (NONE, None, False),
    "writeConcern": (REQUIRED, None, False),
    "noIndexRestore": (NONE, None, False),
    "maintainInsertionOrder": (NONE, None, False),
    "numInsertionWorkersPerCollection": (REQUIRED, None, False),
    "dir": (REQUIRED, None, False),
    "tempUsersColl": (REQUIRED, None, False),
    "tempRolesColl": (REQUIRED, None, False),
}
# admin.<collection> of the archive -> what it holds, _mergeAuthzCollections' field, the option
# naming its temporary collection and that option's default.
AUTHZ_COLLECTIONS = {
    "system.users": ("users", "tempUsersCollection", "tempUsersColl", "tempusers"),
    "system.roles": ("roles", "tempRolesCollection", "tempRolesColl", "temproles"),
}
BATCH_DOCS = 1000
BATCH_BYTES = 8 * 1024 * 1024
USAGE = """Usage:
  mongorestore <options> <connection-string>

Restore an archive made by mongodump (test double of mongo-tools).

  --uri=<uri> | -h/--host, --port, -u/--username, -p/--password, --authenticationDatabase,
  --config=<yaml with password/uri>, --archive[=<file>], --gzip, --drop, --oplogReplay,
  --oplogLimit=<secs>[:ord], --nsInclude, --nsExclude, -d/--db, -c/--collection, --stopOnError,
  --writeConcern, --noIndexRestore, --maintainInsertionOrder, --tempUsersColl, --tempRolesColl,
  -v/--verbose, --quiet, --help
  TLS: --ssl, --sslCAFile, --sslPEMKeyFile, --sslPEMKeyPassword (or sslPEMKeyPassword in --config),
  --tlsInsecure, --sslCRLFile, --sslFIPSMode; uri: tls/ssl, tlsCAFile, tlsCertificateKeyFile,
  tlsCertificateKeyFilePassword, tlsInsecure
"""


def _validate(opts: Parsed) -> None:
    replay = opts.has("oplogReplay")
    if replay and (opts.has("nsInclude") or opts.has("db") or opts.has("collection")):
        raise ToolError("cannot use --oplogReplay with includes specified")
    if replay and opts.has("nsExclude"):
        raise ToolError("cannot use --oplogReplay with excludes specified")
    if opts.has("oplogLimit") and not replay:
        raise ToolError("cannot use --oplogLimit without --oplogReplay enabled")
    if opts.has("oplogFile") and not replay:
        raise ToolError("cannot use --oplogFile without --oplogReplay enabled")
    if opts.has("oplogFile") and opts.has("archive"):
        raise ToolError("cannot use --oplogFile with --archive specified")
    if opts.has("collection") and not opts.has("db"):
        raise ToolError("cannot use --collection without --db")
    targets = [p for p in opts.positional if not p.startswith("mongodb")]
    if targets or opts.has("dir"):
        if opts.has("archive"):
            raise ToolError(
                f"cannot specify both --archive and a target directory ({(targets or [''])[0]})"
            )
        directory = opts.get("dir") if opts.has("dir") else targets[0]
        if not opts.has("oplogFile"):
            raise ToolError(
                "directory restores are not implemented by this test double; use --archive"
            )
        _check_oplog_only(directory)
        opts.values["dir"] = directory
    elif not opts.has("archive"):
        raise ToolError("directory restores are not implemented by this test double; use --archive")
    opts.positional = [p for p in opts.positional if p.startswith("mongodb")]


def _check_oplog_only(directory: str) -> None:
    """A directory target with --oplogFile: replaying that file is all the double restores, so the
    directory must hold no dump of collections."""
    path = Path(directory)
    if not path.is_dir():
        raise ToolError(
            f"mongorestore target '{directory}' invalid: stat {directory}: no such file"
        )
    dumped = [p for p in path.rglob("*") if p.name.endswith((".bson", ".bson.gz", ".json"))]
    if dumped:
        raise ToolError(
            "directory restores are not implemented by this test double; use --archive "
            f"({dumped[0]} is a dump file)"
        )


def _bson_file(value: str) -> list[bytes]:
    """The documents of a .bson file (mongodump's collection and oplog format), raw."""
    try:
        data = Path(value).read_bytes()
    except OSError as exc:
        raise ToolError(f"error reading oplog file: {exc.strerror}: {value}") from exc
    docs, offset = [], 0
    while offset < len(data):
        if len(data) - offset < 5:
            raise ToolError(f"error reading oplog file {value}: truncated document")
        size = int.from_bytes(data[offset : offset + 4], "little")
        if size < 5 or offset + size > len(data) or data[offset + size - 1] != 0:
            raise ToolError(f"error reading oplog file {value}: invalid BSON length {size}")
        docs.append(data[offset : offset + size])
        offset += size
    return docs


def _oplog_limit(text: str) -> Timestamp:
    secs, _, ordinal = text.partition(":")
    if not secs.isdigit() or (ordinal and not ordinal.isdigit()):
        raise UsageError(f"error parsing timestamp argument to --oplogLimit: {text}")
    return Timestamp(int(secs), int(ordinal or 0))


def _write_concern(text: str) -> Document:
    text = text.strip()
    if text.startswith("{"):
        quoted = re.sub(r"([{,]\s*)([A-Za-z_$][\w$]*)\s*:", r'\1"\2":', text).replace("'", '"')
        try:
            value = json.loads(quoted)
        except json.JSONDecodeError as exc:
            raise UsageError(f"invalid --writeConcern: {text}") from exc
        return dict(value)
    return {"w": int(text) if text.isdigit() else text}


def _matcher(patterns: list[str]) -> re.Pattern[str]:
    parts = ["".join(".*" if c == "*" else re.escape(c) for c in p) for p in patterns]
    return re.compile("^(?:" + "|".join(parts) + ")$")


def _read_input(value: str, gzipped: bool) -> tuple[bytes, str]:
    if value in ("", "-"):
        data, where = sys.stdin.buffer.read(), "on stdin"
    else:
        try:
            data, where = Path(value).read_bytes(), f"'{value}'"
        except OSError as exc:
            raise ToolError(f"error opening archive file: {exc.strerror}: {value}") from exc
    if gzipped:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise ToolError(f"error reading archive {where}: gzip: {exc}") from exc
    return data, where


class Restore:
    def __init__(self, client: Client, opts: Parsed, where: str) -> None:
        self.client = client
        self.opts = opts
        self.where = where
        self.restored = 0
        self.failed = 0
        self.concern: Document | None = None
        if opts.has("writeConcern"):
            self.concern = _write_concern(opts.get("writeConcern"))
        elif client.command("admin", {"hello": 1}).get("setName"):
            self.concern = {"w": "majority"}

    def _cmd(self, db: str, body: Document) -> Document:
        if self.concern is not None and next(iter(body)) in (
            "insert",
            "update",
            "delete",
            "create",
            "drop",
            "createIndexes",
            "_mergeAuthzCollections",
        ):
            body = {**body, "writeConcern": self.concern}
        reply = self.client.command(db, body)
        error = reply.get("writeConcernError")
        if error:
            raise ToolError(f"write concern error: {error.get('errmsg', error)}")
        return reply

    def collection(self, meta: Document, docs: list[bytes]) -> None:
        db, coll = meta["db"], meta["collection"]
        info = archive.from_canonical(json.loads(meta["metadata"])) if meta["metadata"] else {}
        if self.opts.has("drop"):
            log.info(f"dropping collection {db}.{coll} before restoring")
            try:
                self._cmd(db, {"drop": coll})
            except CommandFailed as exc:
                if exc.code != 26:
                    raise
        existing = self.client.command(db, {"listCollections": 1, "filter": {"name": coll}})
        if not existing["cursor"]["firstBatch"]:
            try:
                self._cmd(db, {"create": coll, **(info.get("options") or {})})
            except CommandFailed as exc:
                if exc.code != 48:
                    raise
        log.info(f"restoring {db}.{coll} from archive {self.where}")
        restored, failed = self._insert_all(db, coll, docs)
        log.info(f"finished restoring {db}.{coll} ({restored} documents, {failed} failures)")
        self.restored += restored
        self.failed += failed
        indexes = [
            {k: v for k, v in spec.items() if k != "ns"}
            for spec in info.get("indexes", [])
            if spec.get("name") != "_id_"
        ]
        if indexes and not self.opts.has("noIndexRestore"):
            log.info(f"restoring indexes for collection {db}.{coll} from metadata")
            try:
                self._cmd(db, {"createIndexes": coll, "indexes": indexes})
            except CommandFailed as exc:
                raise ToolError(
                    f"{db}.{coll}: error creating indexes for {db}.{coll}: createIndex error: {exc}"
                ) from exc

    def _insert_all(
        self, db: str, coll: str, docs: list[bytes], counted: bool = True
    ) -> tuple[int, int]:
        """Insert the documents in batches: (restored, failed); --stopOnError fails on the first
        write error (the documents restored until then are counted if `counted`)."""
        restored = failed = 0
        batch: list[Document] = []
        size = 0
        for raw in [*docs, None]:
            if raw is not None:
                batch.append(bson_codec.decode(raw))
                size += len(raw)
            if batch and (raw is None or len(batch) >= BATCH_DOCS or size >= BATCH_BYTES):
                ordered = bool(self.opts.get("maintainInsertionOrder"))
                reply = self._cmd(db, {"insert": coll, "documents": batch, "ordered": ordered})
                errors = reply.get("writeErrors") or []
                restored += int(reply.get("n", 0))
                failed += len(batch) - int(reply.get("n", 0))
                for error in errors:
                    log.always(f"continuing through error: {error.get('errmsg')}")
                if errors and self.opts.has("stopOnError"):
                    self.restored += restored if counted else 0
                    raise ToolError(
                        f"{db}.{coll}: error restoring from archive {self.where}: "
                        f"{errors[0].get('errmsg')}"
                    )
                batch, size = [], 0
        return restored, failed

    def users_and_roles(self, spaces: dict[str, list[bytes]]) -> None:
        """mongo-tools' RestoreUsersOrRoles: each of admin.system.users/roles into its temporary
        collection (one left over from an earlier run is dropped first), then
        _mergeAuthzCollections on admin with db "" (every database) and drop iff --drop. Each
        temporary collection, once filled, is dropped afterwards even when the merge fails; a
        failed drop is only logged. The documents are not counted in the restored total."""
        merge: Document = {"_mergeAuthzCollections": 1}
        filled: list[str] = []
        try:
            for coll, (kind, field, option, default) in AUTHZ_COLLECTIONS.items():
                if coll not in spaces:
                    continue
                temp = str(self.opts.get(option, default))
                log.always(f"restoring {kind} from archive {self.where}")
                merge[field] = f"admin.{temp}"
                listed = self.client.command(
                    "admin", {"listCollections": 1, "filter": {"name": temp}}
                )
                if listed["cursor"]["firstBatch"]:
                    log.info(f"dropping preexisting temporary collection admin.{temp}")
                    try:
                        self._cmd("admin", {"drop": temp})
                    except CommandFailed as exc:
                        raise ToolError(
                            f"restore error: error dropping preexisting temporary collection "
                            f"{temp}: {exc}"
                        ) from exc
                try:
                    self._insert_all("admin", temp, spaces[coll], counted=False)
                except (CommandFailed, ToolError) as exc:
                    raise ToolError(f"restore error: error restoring {kind}: {exc}") from exc
                filled.append(temp)
            merge["drop"] = bool(self.opts.get("drop"))
            merge["db"] = ""
            try:
                self._cmd("admin", merge)
            except CommandFailed as exc:
                raise ToolError(f"restore error: error running merge command: {exc}") from exc
        finally:
            for temp in filled:
                try:
                    self.client.command("admin", {"drop": temp})
                except (CommandFailed, OSError) as exc:
                    log.info(f"error dropping temporary collection admin.{temp}: {exc}")

    def replay(self, entries: list[bytes], limit: Timestamp | None) -> int:
        applied = 0
        for raw in entries:
            entry = bson_codec.decode(raw)
            if limit is not None and entry["ts"] >= limit:
                break
            ns: str = entry.get("ns", "")
            if entry["op"] == "n" or ns.startswith(("config.", "local.", "admin.system.")):
                continue
            try:
                self._apply(entry)
            except CommandFailed as exc:
                raise ToolError(f"error applying oplog: applyOps: {exc}") from exc
            applied += 1
        return applied

    def _apply(self, entry: Document) -> None:
        db, _, coll = entry["ns"].partition(".")
        op, o = entry["op"], entry["o"]
        if op == "i":
            self._update(db, coll, {"_id": o["_id"]}, o, upsert=True)
        elif op == "u":
            update = _update_document(o)
            self._update(db, coll, entry["o2"], update, upsert=not _is_operator(update))
        elif op == "d":
            self._cmd(db, {"delete": coll, "deletes": [{"q": o, "limit": 1}]})
        elif op == "c":
            self._command_op(db, o)
        else:
            raise ToolError(f"error applying oplog: unknown op type {op!r}")

    def _update(self, db: str, coll: str, q: Document, u: Document, upsert: bool) -> None:
        self._cmd(db, {"update": coll, "updates": [{"q": q, "u": u, "upsert": upsert}]})

    def _command_op(self, db: str, o: Document) -> None:
        name = next(iter(o))
        if name == "createIndexes":
            spec = {k: v for k, v in o.items() if k != "createIndexes"}
            self._cmd(db, {"createIndexes": o["createIndexes"], "indexes": [spec]})
        elif name in ("create", "drop", "dropDatabase"):
            try:
                self._cmd(db, dict(o))
            except CommandFailed as exc:
                if exc.code not in (26, 48):
                    raise
        else:
            raise ToolError(
                f"error applying oplog: command {name} is not replayed by this test double"
            )


def _is_operator(update: Document) -> bool:
    return any(k.startswith("$") for k in update)


def _diff_to_operators(diff: Document, prefix: str, out: dict[str, Document]) -> None:
    if diff.get("a") is True:
        raise ToolError("error applying oplog: array diffs are not replayed by this test double")
    for key, value in diff.items():
        if key == "d":
            for name in value:
                out.setdefault("$unset", {})[prefix + name] = ""
        elif key in ("u", "i"):
            for name, new in value.items():
                out.setdefault("$set", {})[prefix + name] = new
        elif key.startswith("s"):
            _diff_to_operators(value, f"{prefix}{key[1:]}.", out)


def _update_document(o: Document) -> Document:
    """An oplog update entry as an update command's `u`: replacement, $set/$unset or a v2 diff."""
    if not _is_operator(o):
        return o
    if int(o.get("$v", 1)) == 2 and "diff" in o:
        out: dict[str, Document] = {}
        _diff_to_operators(o["diff"], "", out)
        return dict(out) or {"$set": {}}
    return {k: v for k, v in o.items() if k != "$v"}


def _restore(argv: list[str]) -> None:
    opts = parse_options(TOOL, USAGE, FLAGS, argv, _validate)
    if opts is None:
        return
    limit = _oplog_limit(opts.get("oplogLimit")) if opts.has("oplogLimit") else None
    settings = settings_from_options(opts)
    if opts.has("oplogFile"):
        _replay_oplog_file(opts, settings, limit)
        return
    data, where = _read_input(opts.get("archive"), bool(opts.get("gzip")))
    try:
        parsed = archive.read_archive(data)
    except archive.ArchiveError as exc:
        raise ToolError(str(exc)) from exc
    include: list[str] = list(opts.get("nsInclude", []))
    if opts.has("db"):
        include.append(f"{opts.get('db')}.{opts.get('collection', '*')}")
    included = _matcher(include) if include else None
    excluded = _matcher(list(opts.get("nsExclude", []))) if opts.has("nsExclude") else None
    with connected(settings) as client:
        restore = Restore(client, opts, where)
        log.info(f"preparing collections to restore from archive {where}")
        authz: dict[str, list[bytes]] = {}
        for meta in parsed.metadata:
            key = (meta["db"], meta["collection"])
            ns = ".".join(key)
            if key == archive.OPLOG:
                continue
            if (included and not included.match(ns)) or (excluded and excluded.match(ns)):
                continue
            if key[0] == "admin" and key[1] in AUTHZ_COLLECTIONS:
                authz[key[1]] = parsed.documents[key]
                continue
            if key[1].startswith("system."):
                continue
            restore.collection(meta, parsed.documents[key])
        if authz:
            restore.users_and_roles(authz)
        if opts.has("oplogReplay"):
            if archive.OPLOG not in parsed.documents:
                raise ToolError("no oplog file to replay; make sure you run mongodump with --oplog")
            log.info("replaying oplog")
            applied = restore.replay(parsed.documents[archive.OPLOG], limit)
            log.info(f"applied {applied} oplog entries")
    log.always(
        f"{restore.restored} document(s) restored successfully. "
        f"{restore.failed} document(s) failed to restore."
    )


def _replay_oplog_file(opts: Parsed, settings: Settings, limit: Timestamp | None) -> None:
    """--oplogReplay --oplogFile=<file> <directory>: the file's entries in order, to the limit."""
    entries = _bson_file(opts.get("oplogFile"))
    with connected(settings) as client:
        restore = Restore(client, opts, f"'{opts.get('dir')}'")
        log.info("replaying oplog")
        applied = restore.replay(entries, limit)
        log.info(f"applied {applied} oplog entries")
    log.always("0 document(s) restored successfully. 0 document(s) failed to restore.")


def main(argv: list[str]) -> int:
    return run_tool(TOOL, _restore, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
