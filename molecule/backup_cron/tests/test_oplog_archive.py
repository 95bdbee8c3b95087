"""The oplog archive (point-in-time recovery): slices of the hidden member's oplog in S3, each going
on from the one before, write-once and encrypted, with the achieved RPO as a metric.

Cron may start the job on its own (every 15 minutes) while these tests run: a run that finds the
lock taken is retried, and the slices are checked as a chain, whichever run wrote each.
"""

from __future__ import annotations

import datetime
import gzip
import hashlib
import itertools
import json
from typing import Any

import boto3
import bson
import pytest
from conftest import BUCKET, ENV, KEY_ALIAS, archive_oplog, metric_points, wait_for
from pymongo import MongoClient
from pymongo.write_concern import WriteConcern
from testinfra.host import Host

POINTER = f"backups/{ENV}/oplog-latest"
SLICES = f"backups/{ENV}/oplog/"


def pointer(s3: Any) -> dict[str, Any]:
    return dict(json.loads(s3.get_object(Bucket=BUCKET, Key=POINTER)["Body"].read()))


def ts(text: str) -> bson.Timestamp:
    seconds, increment = text.split(":")
    return bson.Timestamp(int(seconds), int(increment))


def manifests(s3: Any) -> list[dict[str, Any]]:
    """Every slice's manifest, by the last entry each holds (a slice after a gap starts at the
    oldest entry of the oplog, so by its first entry it would sort before the others)."""
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix=SLICES)
    keys = [o["Key"] for o in listing.get("Contents", []) if o["Key"].endswith(".json")]
    found = [json.loads(s3.get_object(Bucket=BUCKET, Key=k)["Body"].read()) for k in keys]
    return sorted(found, key=lambda m: ts(m["last"]))


def entries(s3: Any, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    body = s3.get_object(Bucket=BUCKET, Key=manifest["slice"])["Body"].read()
    return list(bson.decode_all(gzip.decompress(body)))


@pytest.fixture(scope="module")
def chain(
    bk2: Host, source: MongoClient[dict[str, Any]], backup_member_db: Any, s3: Any
) -> dict[str, Any]:
    """A run, writes on the primary, then another run once the hidden member has them."""
    started = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=2)
    first = archive_oplog(bk2)
    visits = source["clinic"].get_collection("visits", write_concern=WriteConcern(w="majority"))
    written = [{"_id": f"pitr-{i}", "patient": "p001", "notes": "new"} for i in range(3)]
    visits.insert_many(written)
    ids = [w["_id"] for w in written]
    wait_for(
        lambda: (
            backup_member_db["clinic"]["visits"].count_documents({"_id": {"$in": ids}})
            == len(written)
        ),
        "the hidden member to replicate the new visits",
    )
    second = archive_oplog(bk2)
    return {"first": first, "second": second, "written": written, "started": started}


def test_each_run_archives_and_names_the_newest_slice(chain: dict[str, Any], s3: Any) -> None:
    for name in ("first", "second"):
        result, lines = chain[name]
        assert result.rc == 0, result.stdout + result.stderr
        assert lines[-1]["event"] == "succeeded", lines
    # Cron may have archived again since: the pointer names the newest slice, at or after it.
    newest = pointer(s3)["last"]
    assert ts(newest) >= ts(chain["second"][1][-1]["last"])
    assert manifests(s3)[-1]["last"] == newest


def test_the_slices_form_a_chain_that_holds_every_new_write(chain: dict[str, Any], s3: Any) -> None:
    found = manifests(s3)
    assert found, "no slice was archived"
    for before, after in itertools.pairwise(found):
        assert after["continuous"] is True, after
        assert after["after"] == before["last"], (before, after)
        assert ts(after["first"]) > ts(before["last"])
    inserted = [
        e["o"]["_id"]
        for m in found
        for e in entries(s3, m)
        if e["op"] == "i" and e["ns"] == "clinic.visits" and str(e["o"]["_id"]).startswith("pitr-")
    ]
    assert inserted == [w["_id"] for w in chain["written"]]


def test_each_slice_matches_its_manifest_and_is_encrypted(chain: dict[str, Any], s3: Any) -> None:
    key_arn = boto3.client("kms").describe_key(KeyId=KEY_ALIAS)["KeyMetadata"]["Arn"]
    for manifest in manifests(s3):
        body = s3.get_object(Bucket=BUCKET, Key=manifest["slice"])["Body"].read()
        raw = gzip.decompress(body)
        assert manifest["bytes"] == len(body)
        assert manifest["sha256"] == hashlib.sha256(body).hexdigest()
        assert manifest["bson_sha256"] == hashlib.sha256(raw).hexdigest()
        docs = bson.decode_all(raw)
        assert manifest["entries"] == len(docs)
        assert [manifest["first"], manifest["last"]] == [
            f"{docs[0]['ts'].time}:{docs[0]['ts'].inc}",
            f"{docs[-1]['ts'].time}:{docs[-1]['ts'].inc}",
        ]
        for key in (manifest["slice"], manifest["slice"].removesuffix(".bson.gz") + ".json"):
            head = s3.head_object(Bucket=BUCKET, Key=key)
            assert head["ServerSideEncryption"] == "aws:kms", key
            assert head["SSEKMSKeyId"] == key_arn, key


def test_the_achieved_rpo_is_reported(chain: dict[str, Any]) -> None:
    success = metric_points("OplogArchiveSuccess", chain["started"])
    assert sum(p["SampleCount"] for p in success) >= 2
    assert min(p["Minimum"] for p in success) == 1
    age = metric_points("RecoveryPointAgeSeconds", chain["started"])
    assert age, "no RecoveryPointAgeSeconds datum"
    # A primary writes a no-op every 10 s, so the newest entry is seconds old.
    assert max(p["Maximum"] for p in age) <= 60
    assert chain["second"][1][-1]["recovery_point_age_seconds"] <= 60


def test_a_gap_in_the_chain_fails_and_the_next_run_goes_on(
    chain: dict[str, Any],
    bk2: Host,
    source: MongoClient[dict[str, Any]],
    backup_member_db: Any,
    s3: Any,
) -> None:
    """A pointer older than the oplog's oldest entry: the entries after it are gone (the oplog
    rolled over). The run archives what there is, marks the slice, and fails with the metric."""
    since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=2)
    s3.put_object(
        Bucket=BUCKET,
        Key=POINTER,
        Body=json.dumps({"environment": ENV, "last": "1:1"}).encode(),
    )
    result, lines = archive_oplog(bk2)
    assert result.rc == 1, result.stdout
    assert lines[-2]["event"] == "metrics" and "gap" in lines[-2]["message"], lines
    (gapped,) = [m for m in manifests(s3) if m["after"] == "1:1"]
    assert gapped["continuous"] is False
    assert min(p["Minimum"] for p in metric_points("OplogArchiveSuccess", since)) == 0

    # A new entry to archive (the primary's no-op comes only every 10 s).
    source["clinic"]["visits"].insert_one({"_id": "after-the-gap", "patient": "p001"})
    wait_for(
        lambda: backup_member_db["clinic"]["visits"].find_one({"_id": "after-the-gap"}) is not None,
        "the hidden member to replicate the write after the gap",
    )
    result, lines = archive_oplog(bk2)
    assert result.rc == 0, result.stdout
    # The slices after the gap go on from it, link by link (cron may have archived some of them).
    found = manifests(s3)
    following = [gapped]
    while successors := [m for m in found if m["after"] == following[-1]["last"]]:
        (successor,) = successors
        assert successor["continuous"] is True, successor
        following.append(successor)
    assert len(following) >= 2, "no slice went on from the one after the gap"
    assert pointer(s3)["last"] == following[-1]["last"]
    assert "after-the-gap" in [
        e["o"]["_id"] for m in following[1:] for e in entries(s3, m) if e["op"] == "i"
    ]


def test_the_primary_does_not_archive(host_named: Any) -> None:
    assert not host_named("bk1").file("/usr/local/sbin/clinic-oplog-archive").exists
