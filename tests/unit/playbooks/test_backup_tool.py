"""backup_cron's helper: manifest counts read from mongodump archives, head-object checks."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path
from types import ModuleType

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
