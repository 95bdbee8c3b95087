"""Durable storage under dbPath: one BSON file per collection, written atomically.

What the server must keep across restarts lives in collections, as in mongod: users in
`admin.system.users`, the replica set config in `local.system.replset`, the term and vote in
`local.replset.election`. The oplog is an append-only file of its own (not queryable as
`local.oplog.rs`); the retryable-write records (mongod's `config.transactions`) are
`transactions.bson`. The `mongod.lock` file is held with an exclusive advisory lock for the life of
the process.
"""

from __future__ import annotations

import fcntl
import os
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from . import bson_codec
from .bson_codec import Document, ObjectId


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


def _default_indexes() -> list[Document]:
    return [{"v": 2, "key": {"_id": 1}, "name": "_id_"}]


class Storage:
    def __init__(self, db_path: str) -> None:
        self.db_path = db_path
        self.root = Path(db_path)
        self.dbs: dict[str, dict[str, Collection]] = {}
        self._lock_handle: IO[str] | None = None

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
                records = bson_codec.decode_all(path.read_bytes())
                meta, docs = records[0], records[1:]
                collection = Collection(indexes=meta.get("indexes", _default_indexes()))
                if isinstance(meta.get("uuid"), str):
                    collection.uuid = uuid.UUID(meta["uuid"])
                for doc in docs:
                    collection.docs[id_key(doc["_id"])] = doc
                self.dbs.setdefault(db, {})[coll] = collection

    def persist(self, db: str, coll: str) -> None:
        """Write one collection with write-to-temp, fsync, rename."""
        collection = self.dbs.get(db, {}).get(coll)
        path = self._file(db, coll)
        if collection is None:
            path.unlink(missing_ok=True)
            return
        self._dir(db).mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as handle:
            meta = {"indexes": collection.indexes, "uuid": str(collection.uuid)}
            handle.write(bson_codec.encode(meta))
            for doc in collection.docs.values():
                handle.write(bson_codec.encode(doc))
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)

    def persist_db_removal(self, db: str) -> None:
        directory = self._dir(db)
        if directory.is_dir():
            for path in directory.iterdir():
                path.unlink()
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

    # Writes: each applies to memory and persists the collection.

    def create_collection(self, db: str, coll: str) -> bool:
        colls = self.dbs.setdefault(db, {})
        if coll in colls:
            return False
        colls[coll] = Collection(indexes=_default_indexes())
        self.persist(db, coll)
        return True

    def insert(self, db: str, coll: str, doc: Document) -> None:
        if "_id" not in doc:
            doc = {"_id": ObjectId(), **doc}
        self.dbs.setdefault(db, {}).setdefault(coll, Collection(indexes=_default_indexes()))
        self.dbs[db][coll].docs[id_key(doc["_id"])] = doc
        self.persist(db, coll)

    def replace(self, db: str, coll: str, doc: Document) -> None:
        self.insert(db, coll, doc)

    def delete(self, db: str, coll: str, doc_id: Any) -> bool:
        collection = self.collection(db, coll)
        if collection is None or collection.docs.pop(id_key(doc_id), None) is None:
            return False
        self.persist(db, coll)
        return True

    def find_by_id(self, db: str, coll: str, doc_id: Any) -> Document | None:
        collection = self.collection(db, coll)
        return collection.docs.get(id_key(doc_id)) if collection else None

    def drop_collection(self, db: str, coll: str) -> bool:
        colls = self.dbs.get(db, {})
        if coll not in colls:
            return False
        del colls[coll]
        self.persist(db, coll)
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
        self.persist(db, coll)
        return True

    # The oplog is append-only: one file of concatenated entries, fsynced per append.

    def _oplog_file(self) -> Path:
        return self.root / "oplog.rs.bson"

    def read_oplog(self) -> list[Document]:
        path = self._oplog_file()
        return bson_codec.decode_all(path.read_bytes()) if path.exists() else []

    def rewrite_oplog(self, entries: list[Document]) -> None:
        """Rollback: replace the oplog with `entries` (write-to-temp, fsync, rename)."""
        path = self._oplog_file()
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as handle:
            for entry in entries:
                handle.write(bson_codec.encode(entry))
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)

    # Retryable-write records (mongod's config.transactions): one file, rewritten atomically.

    def _txn_file(self) -> Path:
        return self.root / "transactions.bson"

    def read_txn_records(self) -> list[Document]:
        path = self._txn_file()
        return bson_codec.decode_all(path.read_bytes()) if path.exists() else []

    def write_txn_records(self, records: list[Document]) -> None:
        path = self._txn_file()
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as handle:
            for record in records:
                handle.write(bson_codec.encode(record))
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)

    def collection_uuid(self, db: str, coll: str) -> uuid.UUID:
        """The UUID of a collection; one that no longer exists gets a fresh one."""
        collection = self.collection(db, coll)
        return collection.uuid if collection is not None else uuid.uuid4()

    def append_oplog(self, entry: Document) -> None:
        with self._oplog_file().open("ab") as handle:
            handle.write(bson_codec.encode(entry))
            handle.flush()
            os.fsync(handle.fileno())

    def replace_all(self, db: str, coll: str, docs: list[Document]) -> None:
        """Initial sync: replace a collection's contents wholesale."""
        collection = Collection(indexes=_default_indexes())
        for doc in docs:
            collection.docs[id_key(doc["_id"])] = doc
        self.dbs.setdefault(db, {})[coll] = collection
        self.persist(db, coll)
