"""Durable storage under dbPath: one append-only BSON log per collection, compacted as it grows.

What the server must keep across restarts lives in collections, as in mongod: users in
`admin.system.users`, the replica set config in `local.system.replset`, the term and vote in
`local.replset.election`. The oplog is an append-only file of its own (not queryable as
`local.oplog.rs`); the retryable-write records (mongod's `config.transactions`) are
`transactions.bson`, an append-only log too. The `mongod.lock` file is held with an exclusive
advisory lock for the life of the process.

A write is appended to its file when it is applied, so it survives the process being killed
(SIGKILL) from then on; `sync()` fsyncs the files written since the last one, as mongod's journal
commits a group of writes: the server calls it once per command and once per batch of oplog
entries applied, before it answers. A write costs the size of what it writes, not the size of
its collection: a collection's log is rewritten (write-to-temp, fsync, rename) only when it
holds more than twice as many records as the collection has documents.
"""

from __future__ import annotations

import fcntl
import os
import urllib.parse
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from . import bson_codec
from .bson_codec import Document, ObjectId

# A collection's log: {"m": {"indexes": [...], "uuid": "..."}} first and after an index change,
# then {"p": <document>} for each insert or replacement and {"d": <_id>} for each delete.
_META, _PUT, _DELETE = "m", "p", "d"
# Compaction: a log of more records than this many per document (and this many at least).
_COMPACT_RATIO, _COMPACT_FLOOR = 2, 64


class DBPathInUse(Exception):
    """Another process holds mongod.lock."""


def id_key(value: Any) -> bytes:
    """A hashable identity for an `_id` value, equal exactly when BSON comparison says so."""
    return repr(bson_codec.sort_key(value)).encode()


@dataclass
class Collection:
    docs: dict[bytes, Document] = field(default_factory=dict)
    indexes: list[Document] = field(default_factory=list)
    # The collection's UUID (named the rollback directory, as in mongod); kept in the file.
    uuid: uuid.UUID = field(default_factory=uuid.uuid4)
    # Records in the collection's log file (compaction rewrites it when they outgrow docs).
    records: int = 0

    def meta(self) -> Document:
        return {_META: {"indexes": self.indexes, "uuid": str(self.uuid)}}


def _default_indexes() -> list[Document]:
    return [{"v": 2, "key": {"_id": 1}, "name": "_id_"}]


def _read_log(path: Path) -> list[Document]:
    """A log's records. A record cut short by a kill mid-append was never acknowledged: it is
    cut off, so that the next append follows the last whole record."""
    data = path.read_bytes()
    records, end = bson_codec.decode_prefix(data)
    if end < len(data):
        with path.open("r+b") as handle:
            handle.truncate(end)
    return records


def _write_atomically(path: Path, records: Iterable[Document]) -> None:
    """Replace a file with `records`: write-to-temp, fsync, rename."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        for record in records:
            handle.write(bson_codec.encode(record))
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


class Storage:
    def __init__(self, db_path: str) -> None:
        self.db_path = db_path
        self.root = Path(db_path)
        self.dbs: dict[str, dict[str, Collection]] = {}
        self._lock_handle: IO[str] | None = None
        # Files appended to since the last sync().
        self._unsynced: set[Path] = set()
        # Records in transactions.bson (compacted like a collection's log).
        self._txn_log_records = 0

    def lock(self) -> None:
        path = self.root / "mongod.lock"
        handle = path.open("a+", encoding="ascii")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.close()
            raise DBPathInUse(
                f"Unable to lock the lock file: {path} ({exc.strerror}). Another mongod instance "
                f"is already running on the {self.db_path} directory"
            ) from exc
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._lock_handle = handle

    def unlock(self) -> None:
        if self._lock_handle is not None:
            self._lock_handle.truncate(0)
            self._lock_handle.close()
            self._lock_handle = None

    def _dir(self, db: str) -> Path:
        return self.root / ("db-" + urllib.parse.quote(db, safe=""))

    def _file(self, db: str, coll: str) -> Path:
        return self._dir(db) / (urllib.parse.quote(coll, safe="") + ".bson")

    def load(self) -> None:
        for directory in sorted(self.root.iterdir()):
            if not directory.name.startswith("db-") or not directory.is_dir():
                continue
            db = urllib.parse.unquote(directory.name[3:])
            for path in sorted(directory.iterdir()):
                if path.suffix != ".bson":
                    continue
                coll = urllib.parse.unquote(path.stem)
                self.dbs.setdefault(db, {})[coll] = self._replay(path)

    @staticmethod
    def _replay(path: Path) -> Collection:
        """A collection from its log."""
        collection = Collection(indexes=_default_indexes())
        for record in _read_log(path):
            collection.records += 1
            if _PUT in record:
                doc = record[_PUT]
                collection.docs[id_key(doc["_id"])] = doc
            elif _DELETE in record:
                collection.docs.pop(id_key(record[_DELETE]), None)
            elif _META in record:
                meta = record[_META]
                collection.indexes = meta.get("indexes", _default_indexes())
                if isinstance(meta.get("uuid"), str):
                    collection.uuid = uuid.UUID(meta["uuid"])
        return collection

    def _append(self, path: Path, records: list[Document]) -> None:
        """Append records to a file; durable against a killed process at once, fsynced by sync()."""
        with path.open("ab") as handle:
            handle.write(b"".join(bson_codec.encode(record) for record in records))
        self._unsynced.add(path)

    def sync(self) -> None:
        """fsync what was appended since the last call (the journal's group commit)."""
        for path in self._unsynced:
            try:
                descriptor = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        self._unsynced.clear()

    def _log(self, db: str, coll: str, *records: Document) -> None:
        """Append a collection's records, or rewrite its log when it has outgrown its documents."""
        collection = self.dbs[db][coll]
        path = self._file(db, coll)
        limit = max(_COMPACT_FLOOR, _COMPACT_RATIO * len(collection.docs))
        if not path.exists() or collection.records + len(records) > limit:
            self._compact(db, coll)
            return
        self._append(path, list(records))
        collection.records += len(records)

    def _compact(self, db: str, coll: str) -> None:
        collection = self.dbs[db][coll]
        self._dir(db).mkdir(parents=True, exist_ok=True)
        path = self._file(db, coll)
        _write_atomically(
            path, [collection.meta(), *({_PUT: doc} for doc in collection.docs.values())]
        )
        self._unsynced.discard(path)
        collection.records = 1 + len(collection.docs)

    def persist_db_removal(self, db: str) -> None:
        directory = self._dir(db)
        if directory.is_dir():
            for path in directory.iterdir():
                path.unlink()
                self._unsynced.discard(path)
            directory.rmdir()

    # Reads

    def collection(self, db: str, coll: str) -> Collection | None:
        return self.dbs.get(db, {}).get(coll)

    def documents(self, db: str, coll: str) -> list[Document]:
        collection = self.collection(db, coll)
        return list(collection.docs.values()) if collection else []

    def database_names(self) -> list[str]:
        return sorted(db for db, colls in self.dbs.items() if colls)

    def collection_names(self, db: str) -> list[str]:
        return sorted(self.dbs.get(db, {}))

    def size_on_disk(self, db: str) -> int:
        total = 0
        for coll in self.dbs.get(db, {}):
            path = self._file(db, coll)
            if path.exists():
                total += path.stat().st_size
        return total

    # Writes: each applies to memory and appends to the collection's log.

    def create_collection(self, db: str, coll: str) -> bool:
        colls = self.dbs.setdefault(db, {})
        if coll in colls:
            return False
        colls[coll] = Collection(indexes=_default_indexes())
        self._compact(db, coll)
        return True

    def insert(self, db: str, coll: str, doc: Document) -> None:
        if "_id" not in doc:
            doc = {"_id": ObjectId(), **doc}
        self.create_collection(db, coll)
        self.dbs[db][coll].docs[id_key(doc["_id"])] = doc
        self._log(db, coll, {_PUT: doc})

    def replace(self, db: str, coll: str, doc: Document) -> None:
        self.insert(db, coll, doc)

    def delete(self, db: str, coll: str, doc_id: Any) -> bool:
        collection = self.collection(db, coll)
        if collection is None or collection.docs.pop(id_key(doc_id), None) is None:
            return False
        self._log(db, coll, {_DELETE: doc_id})
        return True

    def find_by_id(self, db: str, coll: str, doc_id: Any) -> Document | None:
        collection = self.collection(db, coll)
        return collection.docs.get(id_key(doc_id)) if collection else None

    def drop_collection(self, db: str, coll: str) -> bool:
        colls = self.dbs.get(db, {})
        if coll not in colls:
            return False
        del colls[coll]
        path = self._file(db, coll)
        path.unlink(missing_ok=True)
        self._unsynced.discard(path)
        return True

    def drop_database(self, db: str) -> None:
        self.dbs.pop(db, None)
        self.persist_db_removal(db)

    def add_index(self, db: str, coll: str, spec: Document) -> bool:
        self.create_collection(db, coll)
        collection = self.dbs[db][coll]
        if any(index["name"] == spec["name"] for index in collection.indexes):
            return False
        collection.indexes.append(spec)
        self._log(db, coll, collection.meta())
        return True

    def replace_all(self, db: str, coll: str, docs: list[Document]) -> None:
        """Initial sync: replace a collection's contents wholesale."""
        collection = Collection(indexes=_default_indexes())
        for doc in docs:
            collection.docs[id_key(doc["_id"])] = doc
        self.dbs.setdefault(db, {})[coll] = collection
        self._compact(db, coll)

    def collection_uuid(self, db: str, coll: str) -> uuid.UUID:
        """The UUID of a collection; one that no longer exists gets a fresh one."""
        collection = self.collection(db, coll)
        return collection.uuid if collection is not None else uuid.uuid4()

    # The oplog is append-only: one file of concatenated entries.

    def _oplog_file(self) -> Path:
        return self.root / "oplog.rs.bson"

    def read_oplog(self) -> list[Document]:
        path = self._oplog_file()
        return _read_log(path) if path.exists() else []

    def append_oplog(self, entry: Document) -> None:
        self._append(self._oplog_file(), [entry])

    def rewrite_oplog(self, entries: list[Document]) -> None:
        """Rollback: replace the oplog with `entries`."""
        self.sync()
        _write_atomically(self._oplog_file(), entries)

    # Retryable-write records (mongod's config.transactions): a log of whole records (written
    # together, after initial sync or rollback and to compact) and of the statements added since.

    def _txn_file(self) -> Path:
        return self.root / "transactions.bson"

    def read_txn_records(self) -> list[Document]:
        path = self._txn_file()
        if not path.exists():
            return []
        records: dict[bytes, Document] = {}
        for record in _read_log(path):
            self._txn_log_records += 1
            if "stmts" in record:
                records[id_key(record["_id"]["id"])] = record
            else:
                add_txn_statement(records, record)
        return list(records.values())

    def log_txn_statement(self, statement: Document, records: dict[bytes, Document]) -> None:
        """Append a statement add_txn_statement took into `records`; all of them are written
        instead when the log has outgrown them."""
        live = sum(len(record["stmts"]) for record in records.values())
        if self._txn_log_records + 1 > max(_COMPACT_FLOOR, _COMPACT_RATIO * live):
            self.write_txn_records(list(records.values()))
            return
        self._append(self._txn_file(), [statement])
        self._txn_log_records += 1

    def write_txn_records(self, records: list[Document]) -> None:
        """All sessions' records at once."""
        self.sync()
        _write_atomically(self._txn_file(), records)
        self._txn_log_records = len(records)


def add_txn_statement(records: dict[bytes, Document], statement: Document) -> bool:
    """Add a statement, {"_id": {"id": <session>}, "txnNum", "stmt", "lastWriteOpTime"}, to its
    session's record: a newer txnNumber starts the record afresh, an older one is ignored
    (False)."""
    key = id_key(statement["_id"]["id"])
    record = records.get(key)
    txn = int(statement["txnNum"])
    if record is None or int(record["txnNum"]) < txn:
        record = {"_id": statement["_id"], "txnNum": statement["txnNum"], "stmts": []}
        records[key] = record
    elif int(record["txnNum"]) > txn:
        return False
    record["stmts"].append(statement["stmt"])
    record["lastWriteOpTime"] = statement["lastWriteOpTime"]
    return True
