"""The small data plane: CRUD, cursors, counting, namespaces, retryable writes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import bson
import pymongo
import pytest

from .conftest import Target, command_error


@pytest.fixture
def db(standalone: Target, request: pytest.FixtureRequest) -> Iterator[Any]:
    client = standalone.client()
    name = f"dp_{request.node.name[:40]}"
    client.drop_database(name)
    yield client[name]
    client.drop_database(name)
    client.close()


def test_find_filters_sorts_and_projects(db: Any) -> None:
    db.p.insert_many(
        [
            {"_id": i, "n": i, "tag": "even" if i % 2 == 0 else "odd", "sub": {"k": i * 10}}
            for i in range(10)
        ]
    )
    assert [d["_id"] for d in db.p.find({"n": {"$gte": 3, "$lt": 6}})] == [3, 4, 5]
    assert [d["_id"] for d in db.p.find({"tag": {"$in": ["odd"]}, "n": {"$ne": 1}})] == [3, 5, 7, 9]
    assert [d["_id"] for d in db.p.find({"$or": [{"n": 0}, {"sub.k": 90}]})] == [0, 9]
    assert [
        d["_id"]
        for d in db.p.find(
            {"missing": {"$exists": False}, "n": {"$nin": [0, 1]}},
            sort=[("n", -1)],
            skip=1,
            limit=2,
        )
    ] == [8, 7]
    assert db.p.find_one({"_id": 2}, {"sub": 1, "_id": 0}) == {"sub": {"k": 20}}


def test_cursor_batches_get_more_and_kill(db: Any) -> None:
    db.p.insert_many([{"_id": i} for i in range(250)])
    assert len(list(db.p.find({}, batch_size=7))) == 250
    first = db.command("find", "p", batchSize=5)
    cursor_id = first["cursor"]["id"]
    assert cursor_id != 0
    assert len(first["cursor"]["firstBatch"]) == 5
    more = db.command("getMore", cursor_id, collection="p", batchSize=10)
    assert len(more["cursor"]["nextBatch"]) == 10
    killed = db.command("killCursors", "p", cursors=[cursor_id])
    assert killed["cursorsKilled"] == [cursor_id]
    error = command_error(lambda: db.command("getMore", cursor_id, collection="p"))
    assert error["code"] == 43
    assert error["codeName"] == "CursorNotFound"


def test_a_batch_ends_at_16_mib(db: Any) -> None:
    """getMore without batchSize returns at most 16 MiB of documents: a cursor over 40 MB
    takes several batches, each a reply a driver accepts (48 MB messages at most)."""
    note = "x" * (1024 * 1024)
    for start in range(0, 40, 10):
        db.big.insert_many([{"_id": i, "note": note} for i in range(start, start + 10)])
    reply = db.command("find", "big", batchSize=1)
    cursor_id = reply["cursor"]["id"]
    sizes = []
    while cursor_id:
        more = db.command("getMore", cursor_id, collection="big")
        sizes.append(len(more["cursor"]["nextBatch"]))
        cursor_id = more["cursor"]["id"]
    assert sum(sizes) == 39
    assert len(sizes) == 3
    assert max(sizes) <= 16


def test_update_operators_and_upsert(db: Any) -> None:
    db.p.insert_one({"_id": 1, "count": 1, "name": "a"})
    result = db.p.update_one({"_id": 1}, {"$inc": {"count": 2}, "$set": {"name": "b"}})
    assert (result.matched_count, result.modified_count) == (1, 1)
    assert db.p.find_one({"_id": 1}) == {"_id": 1, "count": 3, "name": "b"}
    upsert = db.p.update_one({"_id": 2}, {"$set": {"name": "new"}}, upsert=True)
    assert upsert.upserted_id == 2
    db.p.replace_one({"_id": 2}, {"name": "replaced"})
    assert db.p.find_one({"_id": 2}) == {"_id": 2, "name": "replaced"}
    error = command_error(lambda: db.p.update_one({"_id": 1}, {"$bogus": {"a": 1}}))
    assert error["code"] == 9


def test_delete_and_count_documents(db: Any) -> None:
    db.p.insert_many([{"_id": i, "even": i % 2 == 0} for i in range(6)])
    assert db.p.count_documents({"even": True}) == 3
    assert db.p.delete_one({"even": True}).deleted_count == 1
    assert db.p.delete_many({"even": False}).deleted_count == 3
    assert db.p.count_documents({}) == 2
    assert db.command("count", "p")["n"] == 2


def test_queries_by_id_compare_as_bson_does(db: Any) -> None:
    """_id equality, $eq and $in (the _id index's queries) match numbers across types and
    sub-documents by value, and still apply the rest of the filter."""
    db.docs.insert_many(
        [{"_id": 1, "v": "a"}, {"_id": 2.5, "v": "b"}, {"_id": {"k": 3}, "v": "c"}, {"_id": "4"}]
    )
    assert db.docs.find_one({"_id": 1.0})["v"] == "a"
    assert db.docs.find_one({"_id": {"$eq": {"k": 3}}})["v"] == "c"
    assert db.docs.find_one({"_id": 1, "v": "b"}) is None
    found = db.docs.find({"_id": {"$in": ["4", 2.5, 1, 1.0, 9]}})
    assert sorted(str(doc["_id"]) for doc in found) == ["1", "2.5", "4"]
    assert db.docs.update_one({"_id": 2.5}, {"$set": {"v": "B"}}).modified_count == 1
    assert db.docs.delete_one({"_id": {"$in": [9, "4"]}}).deleted_count == 1
    assert db.docs.count_documents({"_id": {"$gte": 1}}) == 2
    assert db.docs.find_one({"_id": 2.5})["v"] == "B"


def test_duplicate_id_is_11000_write_error(db: Any) -> None:
    db.p.insert_one({"_id": 7})
    with pytest.raises(pymongo.errors.BulkWriteError) as info:
        db.p.insert_many([{"_id": 8}, {"_id": 7}, {"_id": 9}], ordered=True)
    details = info.value.details
    assert details["nInserted"] == 1
    error = details["writeErrors"][0]
    assert error["index"] == 1
    assert error["code"] == 11000
    assert error["errmsg"].startswith(
        f"E11000 duplicate key error collection: {db.name}.p index: _id_ dup key:"
    )
    assert db.p.count_documents({}) == 2


def test_namespaces_and_indexes(db: Any) -> None:
    db.create_collection("made")
    error = command_error(lambda: db.command("create", "made"))
    assert error["code"] == 48
    db.p.create_index([("name", 1)], name="name_1")
    assert sorted(i["name"] for i in db.p.list_indexes()) == ["_id_", "name_1"]
    assert sorted(db.list_collection_names()) == ["made", "p"]
    listing = db.client.admin.command("listDatabases")
    entry = next(d for d in listing["databases"] if d["name"] == db.name)
    assert isinstance(entry["sizeOnDisk"], bson.Int64)
    assert isinstance(listing["totalSize"], bson.Int64)
    db.drop_collection("made")
    assert db.list_collection_names() == ["p"]
    error = command_error(lambda: db.command("listIndexes", "missing"))
    assert error["code"] == 26
    db.client.drop_database(db.name)
    assert db.name not in db.client.list_database_names()


def test_retried_write_is_applied_once(standalone: Target) -> None:
    body = {
        "insert": "retry",
        "documents": [{"v": 1}],
        "lsid": {"id": bson.Binary(b"r" * 16, 4)},
        "txnNumber": bson.Int64(1),
        "$db": "dp_retry",
    }
    with standalone.raw() as raw:
        first = raw.command(dict(body))
        second = raw.command(dict(body))
    client = standalone.client()
    try:
        assert first["n"] == 1
        assert second["n"] == 1
        assert client.dp_retry.retry.count_documents({}) == 1
    finally:
        client.drop_database("dp_retry")
        client.close()
