"""backup_cron's helper: manifest counts read from mongodump archives, head-object checks, and
write-once uploads (against moto)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import bson
import pytest
from bson import ObjectId

from tests.doubles.mongodb.tools import archive as mongo_archive
from tests.unit.playbooks import role_scripts


@pytest.fixture(scope="module")
def tool() -> ModuleType:
    return role_scripts.load("backup_cron", "clinic_backup_tool")


def namespace(db: str, coll: str, docs: list[dict]) -> mongo_archive.Namespace:
    return mongo_archive.Namespace(db, coll, "{}", [bson.encode(d) for d in docs])


def write(path: Path, spaces: list[mongo_archive.Namespace]) -> Path:
    raw = io.BytesIO()
    mongo_archive.write_archive(raw, spaces, "7.0.14", "100.10.0")
    path.write_bytes(gzip.compress(raw.getvalue()))
    return path


def oplog(*entries: dict) -> mongo_archive.Namespace:
    return namespace(
        "", "oplog", [{"ts": bson.Timestamp(1, i), **e} for i, e in enumerate(entries)]
    )


def test_counts_every_collection_of_a_dump(tool: ModuleType, tmp_path: Path) -> None:
    path = write(
        tmp_path / "a.gz",
        [
            namespace("clinic", "patients", [{"_id": ObjectId(), "n": i} for i in range(5)]),
            namespace("clinic", "visits", [{"_id": i} for i in range(3)]),
            namespace("clinic", "empty", []),
            oplog(),
        ],
    )
    counts, entries = tool.collection_counts(str(path))
    assert counts == {"clinic.empty": 0, "clinic.patients": 5, "clinic.visits": 3}
    assert entries == 0


def test_counts_replay_the_oplog_onto_the_dump(tool: ModuleType, tmp_path: Path) -> None:
    path = write(
        tmp_path / "b.gz",
        [
            namespace("clinic", "patients", [{"_id": i, "v": "x" * i} for i in range(4)]),
            namespace("clinic", "gone", [{"_id": 1}, {"_id": 2}]),
            oplog(
                {"op": "i", "ns": "clinic.patients", "o": {"_id": 3, "v": "again"}},  # in the dump
                {"op": "i", "ns": "clinic.patients", "o": {"_id": 10}},  # new
                {"op": "d", "ns": "clinic.patients", "o": {"_id": 0}},  # in the dump
                {"op": "d", "ns": "clinic.patients", "o": {"_id": 99}},  # never existed
                {"op": "u", "ns": "clinic.patients", "o": {"$set": {"v": 1}}, "o2": {"_id": 1}},
                {"op": "c", "ns": "clinic.$cmd", "o": {"drop": "gone"}},
                {"op": "i", "ns": "clinic.gone", "o": {"_id": "new"}},
                {"op": "i", "ns": "clinic.later", "o": {"_id": "created-during-dump"}},
                {"op": "n", "ns": "", "o": {"msg": "periodic noop"}},
            ),
        ],
    )
    counts, entries = tool.collection_counts(str(path))
    assert counts == {"clinic.gone": 1, "clinic.later": 1, "clinic.patients": 4}
    assert entries == 9


def test_refuses_a_file_that_is_not_an_archive(tool: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "c.gz"
    path.write_bytes(gzip.compress(b"not an archive at all"))
    assert tool.main(["manifest", str(path), *manifest_args()]) == 1


def manifest_args() -> list[str]:
    pairs = {"--env": "stage", "--timestamp": "20260101T000000Z", "--host": "h", "--key": "k"}
    pairs |= {"--sha256": "0" * 64, "--started": "s", "--finished": "f", "--bytes": "10"}
    return [item for pair in pairs.items() for item in pair]


def test_manifest_names_the_archive_and_its_counts(
    tool: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "d.gz", [namespace("clinic", "p", [{"_id": 1}]), oplog()])
    assert tool.main(["manifest", str(path), *manifest_args()]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["collections"] == {"clinic.p": 1}
    assert manifest["archive"] == {
        "key": "k",
        "sha256": "0" * 64,
        "bytes": 10,
        "format": "mongodump --oplog --gzip --archive",
    }
    assert manifest["environment"] == "stage"


ARN = "arn:aws:kms:ap-south-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
GOOD = {
    "ServerSideEncryption": "aws:kms",
    "SSEKMSKeyId": ARN,
    "ContentLength": 10,
    "Metadata": {"sha256": "ab" * 32},
}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({}, None),
        ({"ServerSideEncryption": "AES256"}, "not 'aws:kms'"),
        ({"SSEKMSKeyId": ARN.replace("1234abcd", "99999999")}, "SSEKMSKeyId"),
        ({"ContentLength": 9}, "ContentLength is 9"),
        ({"Metadata": {}}, "sha256 metadata"),
    ],
)
def test_check_head_accepts_only_the_uploaded_object_under_the_key(
    tool: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    change: dict,
    reason: str | None,
) -> None:
    head = tmp_path / "head.json"
    head.write_text(json.dumps(GOOD | change))
    args = ["check-head", str(head), "--bytes", "10", "--sha256", "ab" * 32, "--key-id", ARN]
    rc = tool.main(args)
    err = capsys.readouterr().err
    if reason is None:
        assert rc == 0
    else:
        assert rc == 1
        assert reason in err


# --- write-once uploads ---------------------------------------------------------------------

BUCKET = "clinic-test-backups"
REGION = "ap-south-1"


@pytest.fixture
def s3_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str]]:
    """A bucket with Object Lock (so versioning) and a KMS key in moto: (S3 client, key ARN)."""
    from moto import mock_aws

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        import boto3

        key_arn = boto3.client("kms", region_name=REGION).create_key()["KeyMetadata"]["Arn"]
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(
            Bucket=BUCKET,
            CreateBucketConfiguration={"LocationConstraint": REGION},
            ObjectLockEnabledForBucket=True,
        )
        yield s3, key_arn


def put(tool: ModuleType, path: Path, key: str, key_arn: str, *extra: str) -> int:
    return int(
        tool.main(["put", BUCKET, str(path), key, "--key-id", key_arn, "--region", REGION, *extra])
    )


def versions(s3: Any, key: str) -> list[str]:
    listed = s3.list_object_versions(Bucket=BUCKET, Prefix=key).get("Versions", [])
    return [v["VersionId"] for v in listed if v["Key"] == key]


@pytest.mark.parametrize("size", [10, 11 * 1024 * 1024], ids=["one put", "multipart"])
def test_a_write_once_key_is_never_overwritten(
    tool: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    s3_key: tuple[Any, str],
    size: int,
) -> None:
    s3, key_arn = s3_key
    monkeypatch.setattr(tool, "PART_BYTES", 5 * 1024 * 1024)
    key = "backups/test/20261126T020000Z/dump.archive.gz"
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_bytes(b"a" * size)
    second.write_bytes(b"b" * size)
    assert put(tool, first, key, key_arn, "--if-absent") == 0
    written = json.loads(capsys.readouterr().out)
    assert written["sha256"] == hashlib.sha256(first.read_bytes()).hexdigest()
    head = s3.head_object(Bucket=BUCKET, Key=key)
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", key_arn)
    assert head["Metadata"]["sha256"] == written["sha256"]

    assert put(tool, second, key, key_arn, "--if-absent") == tool.EXIT_EXISTS
    assert "exists" in capsys.readouterr().err
    assert len(versions(s3, key)) == 1
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == first.read_bytes()
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_the_pointer_is_rewritten(
    tool: ModuleType, tmp_path: Path, s3_key: tuple[Any, str]
) -> None:
    s3, key_arn = s3_key
    pointer = tmp_path / "latest.json"
    for text in ("one", "two"):
        pointer.write_text(text)
        assert put(tool, pointer, "backups/test/latest", key_arn) == 0
    assert s3.get_object(Bucket=BUCKET, Key="backups/test/latest")["Body"].read() == b"two"
    assert len(versions(s3, "backups/test/latest")) == 2


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        (
            "mongodb://backup@127.0.0.1:27017/?authSource=admin&directConnection=true",
            "mongodb://db1.internal:27017/?authSource=admin&directConnection=true",
        ),
        ("mongodb://127.0.0.1:27017", "mongodb://db1.internal:27017"),
    ],
)
def test_the_primary_is_asked_with_the_members_options_and_no_user(
    tool: ModuleType, uri: str, expected: str
) -> None:
    assert tool.with_host(uri, "db1.internal:27017") == expected


def hold(s3: Any, key: str, version: str) -> str:
    reply = s3.get_object_legal_hold(Bucket=BUCKET, Key=key, VersionId=version)
    return str(reply["LegalHold"]["Status"])


def test_the_newest_backup_is_held_until_a_newer_one_replaces_it(
    tool: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    s3_key: tuple[Any, str],
) -> None:
    s3, key_arn = s3_key
    region = ["--region", REGION]
    data = tmp_path / "archive"
    data.write_bytes(b"dump")
    pointer_key = "backups/test/latest"
    saved = tmp_path / "previous.json"
    assert tool.main(["save-pointer", BUCKET, pointer_key, str(saved), *region]) == 0
    assert capsys.readouterr().out.strip() == "absent"

    written = {}
    for stamp in ("20261125T020000Z", "20261126T020000Z"):
        key = f"backups/test/{stamp}/dump.archive.gz"
        assert put(tool, data, key, key_arn, "--if-absent", "--legal-hold") == 0
        written[stamp] = json.loads(capsys.readouterr().out)["version_id"]
        assert hold(s3, key, written[stamp]) == "ON"
    first = {"archive": "backups/test/20261125T020000Z/dump.archive.gz"}
    first["archive_version_id"] = written["20261125T020000Z"]
    s3.put_object(Bucket=BUCKET, Key=pointer_key, Body=json.dumps(first).encode())

    assert tool.main(["save-pointer", BUCKET, pointer_key, str(saved), *region]) == 0
    assert capsys.readouterr().out.strip() == "saved"
    assert json.loads(saved.read_text()) == first
    assert tool.main(["release-holds", str(saved), "--bucket", BUCKET, *region]) == 0
    assert json.loads(capsys.readouterr().out) == {"released": [first["archive"]]}
    assert hold(s3, first["archive"], written["20261125T020000Z"]) == "OFF"
    newest = "backups/test/20261126T020000Z/dump.archive.gz"
    assert hold(s3, newest, written["20261126T020000Z"]) == "ON"
