"""The restore drill: the latest verified backup into the fresh target set, verified and masked."""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from typing import Any

import pytest
from conftest import (
    BUCKET,
    ENV,
    PATIENTS,
    ROOT,
    TARGET_ENV,
    latest,
    metric_points,
)
from pymongo import MongoClient

DRILL = str(ROOT / "playbooks" / "restore_drill.yml")
DRILL_ARGS = (
    "-e",
    "restore_drill_group=drill_set",
    "-e",
    f"restore_drill_source_env={ENV}",
    "-e",
    f"restore_drill_target_env={TARGET_ENV}",
)
MASKED = ("name", "email", "phone", "dateOfBirth", "address")


@pytest.fixture(scope="module")
def drill(
    ansible_playbook: Any,
    first_backup: dict[str, Any],
    seeded: dict[str, Any],
    source: MongoClient[dict[str, Any]],
    s3: Any,
) -> dict[str, Any]:
    """More writes on the source after its latest backup, then the drill into bk-restore."""
    pointer = latest(s3)
    assert pointer is not None
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=pointer["manifest"])["Body"].read())
    source["clinic"]["patients"].insert_many(
        [{"_id": f"late{i}", "name": f"Late Original{i}"} for i in range(3)]
    )
    source["clinic"]["visits"].delete_many({"_id": {"$lt": 5}})
    started = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=2)
    result = ansible_playbook(DRILL, *DRILL_ARGS, "-vvv")
    return {"result": result, "manifest": manifest, "pointer": pointer, "started": started}


def test_the_drill_succeeds_and_prints_its_report(drill: dict[str, Any], tail: Any) -> None:
    result = drill["result"]
    assert result.returncode == 0, tail(result)
    assert f"Restore drill {ENV} -> {TARGET_ENV} on bk-restore" in result.stdout
    assert f"sha256 {drill['pointer']['sha256']}" in result.stdout
    assert "RTO: " in result.stdout
    assert "MISMATCH" not in result.stdout


def test_the_verbose_drill_shows_no_secret(
    drill: dict[str, Any], secret: Callable[..., str]
) -> None:
    output = drill["result"].stdout + drill["result"].stderr
    assert secret("mongodb_admin_password", TARGET_ENV) not in output
    assert "X-Amz-Signature" not in output, "the presigned URL of the archive was logged"


def test_counts_are_the_manifests_not_the_sources_later_ones(
    drill: dict[str, Any], target: MongoClient[dict[str, Any]], source: MongoClient[dict[str, Any]]
) -> None:
    collections = drill["manifest"]["collections"]
    for namespace in ("clinic.patients", "clinic.visits", "clinic.audit_log"):
        db, _, coll = namespace.partition(".")
        assert target[db][coll].count_documents({}) == collections[namespace], namespace
    assert collections["clinic.patients"] == PATIENTS
    assert source["clinic"]["patients"].count_documents({}) == PATIENTS + 3


def test_unmasked_fields_are_restored_as_they_were(
    drill: dict[str, Any], target: MongoClient[dict[str, Any]], seeded: dict[str, Any]
) -> None:
    restored = {doc["_id"]: doc for doc in target["clinic"]["patients"].find()}
    for patient in seeded["patients"]:
        assert restored[patient["_id"]]["ward"] == patient["ward"]
    assert target["clinic"]["visits"].find_one({"_id": 0}) == {
        "_id": 0,
        "patient": "p000",
        "notes": "ok",
    }


def test_no_original_patient_value_remains(
    drill: dict[str, Any], target: MongoClient[dict[str, Any]], seeded: dict[str, Any]
) -> None:
    restored = list(target["clinic"]["patients"].find())
    assert len(restored) == PATIENTS
    for field in MASKED:
        originals = {p[field] for p in seeded["patients"]}
        if field == "dateOfBirth":
            originals = {v.replace(tzinfo=None) for v in originals}
        values = [doc[field] for doc in restored]
        assert not originals & set(values), field
        assert len(set(values)) > 1, f"{field}: every document got the same fake"
    assert all(doc["email"].endswith("@example.invalid") for doc in restored)
    assert all(doc["name"].startswith("Masked Patient ") for doc in restored)


def test_the_rto_is_recorded_as_a_metric(drill: dict[str, Any]) -> None:
    points = metric_points("RestoreDurationSeconds", drill["started"], env=TARGET_ENV)
    assert len(points) == 1
    assert points[0]["Maximum"] > 0


def test_prod_is_refused_as_a_target_before_any_change(
    ansible_playbook: Any, drill: dict[str, Any], target: MongoClient[dict[str, Any]], tail: Any
) -> None:
    before = sorted(target["clinic"]["patients"].find(), key=lambda d: d["_id"])
    result = ansible_playbook(
        DRILL,
        "-e",
        "restore_drill_group=drill_set",
        "-e",
        f"restore_drill_source_env={ENV}",
        "-e",
        "restore_drill_target_env=prod",
    )
    assert result.returncode != 0, tail(result)
    text = " ".join((result.stdout + result.stderr).split())
    assert "never prod" in text
    assert "changed=0" in text
    assert sorted(target["clinic"]["patients"].find(), key=lambda d: d["_id"]) == before
