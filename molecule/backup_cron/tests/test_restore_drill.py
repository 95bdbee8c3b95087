"""The restore drill: the latest verified backup restored and masked in a scratch instance, then
copied into the fresh target set; refusals and an interrupted drill leave the target unchanged."""

from __future__ import annotations

import datetime
import hashlib
import json
import subprocess
import time
from collections.abc import Callable
from typing import Any

import boto3
import bson
import pytest
from conftest import (
    BACKUP,
    BUCKET,
    ENV,
    PATIENTS,
    ROOT,
    TARGET_ENV,
    VISITS,
    archive_oplog,
    latest,
    metric_points,
    wait_for,
)
from pymongo import MongoClient
from pymongo.write_concern import WriteConcern
from testinfra.host import Host

DRILL = str(ROOT / "playbooks" / "restore_drill.yml")
# The target environment's run lock (group_vars/all/clinic.yml), which the drill holds throughout.
TARGET_LOCK = f"/clinic/{TARGET_ENV}/run-lock"
DRILL_ARGS = (
    "-e",
    "restore_drill_group=drill_set",
    "-e",
    f"restore_drill_source_env={ENV}",
    "-e",
    f"restore_drill_target_env={TARGET_ENV}",
)
MASKED = ("name", "email", "phone", "dateOfBirth", "address")
SCRATCH_PORT = 27117
UNIT = "clinic-restore-drill"
# Pieces of every original value of the seeded patients (conftest.seeded), as they would appear in
# a document or an oplog entry.
ORIGINAL_MARKERS = (
    b"Original",
    b"@clinic.example",
    b"MG Road",
    b"+91 98450",
    b"+91 99000",
    b"+91 99111",
)


@pytest.fixture(scope="module")
def drill_host(host_named: Callable[[str], Host]) -> Host:
    return host_named("bk-restore")


def snapshot(target: MongoClient[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(target["clinic"]["patients"].find(), key=lambda d: d["_id"])


def originals_in_oplog(target: MongoClient[dict[str, Any]]) -> int:
    """Entries of the target's oplog that carry an original patient value."""
    return sum(
        1
        for entry in target["local"]["oplog.rs"].find({})
        if any(marker in bson.encode(entry) for marker in ORIGINAL_MARKERS)
    )


@pytest.fixture(scope="module")
def drill(
    ansible_playbook: Any,
    first_backup: dict[str, Any],
    seeded: dict[str, Any],
    source: MongoClient[dict[str, Any]],
    target: MongoClient[dict[str, Any]],
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
    users = target["admin"].command("usersInfo")["users"]
    started = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=2)
    result = ansible_playbook(DRILL, *DRILL_ARGS, "-vvv")
    return {
        "result": result,
        "manifest": manifest,
        "pointer": pointer,
        "started": started,
        "users": users,
    }


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


def test_array_paths_are_masked_element_by_element(
    drill: dict[str, Any], target: MongoClient[dict[str, Any]], seeded: dict[str, Any]
) -> None:
    originals = {c["phone"] for p in seeded["patients"] for c in p["contacts"]}
    restored = list(target["clinic"]["patients"].find())
    contacts = [c for doc in restored for c in doc["contacts"]]
    assert len(contacts) == 2 * PATIENTS
    assert not originals & {c["phone"] for c in contacts}
    assert {c["relation"] for c in contacts} == {"spouse", "parent"}, "unlisted fields were changed"
    assert len({c["phone"] for c in contacts}) > PATIENTS, "contacts share a fake"


def test_the_targets_oplog_never_held_an_original_value(
    drill: dict[str, Any], target: MongoClient[dict[str, Any]]
) -> None:
    assert target["local"]["oplog.rs"].count_documents({"ns": "clinic.patients"}) >= PATIENTS
    assert originals_in_oplog(target) == 0


def test_the_targets_users_survive_the_drill(
    drill: dict[str, Any], target: MongoClient[dict[str, Any]]
) -> None:
    assert target["admin"].command("usersInfo")["users"] == drill["users"]


def assert_no_scratch_left(drill_host: Host) -> None:
    """No scratch instance listens, the unit is gone, and so is its private /tmp."""
    assert not drill_host.socket(f"tcp://127.0.0.1:{SCRATCH_PORT}").is_listening
    assert drill_host.run("systemctl is-active %s.service", UNIT).stdout.strip() in (
        "inactive",
        "unknown",
    )
    leftovers = drill_host.run(
        "find /tmp /var/tmp -maxdepth 1 -name 'systemd-private-*%s*'", UNIT
    ).stdout
    assert leftovers == ""


def test_no_scratch_instance_or_file_is_left(drill: dict[str, Any], drill_host: Host) -> None:
    assert_no_scratch_left(drill_host)


def test_the_rto_is_recorded_as_a_metric(drill: dict[str, Any]) -> None:
    points = metric_points("RestoreDurationSeconds", drill["started"], env=TARGET_ENV)
    assert len(points) == 1
    assert points[0]["Maximum"] > 0


RUN_TASK = "run | Run the drill in its transient unit"
# The tasks that change the primary: a refused drill runs none of them (the S3 reads before them,
# delegated to the controller, report changed and change nothing).
HOST_TASKS = (
    "run | Install D-Bus",
    "run | Start the system bus",
    "run | Install the drill script",
    RUN_TASK,
)


def reached_the_host(result: Any) -> bool:
    return any(f"restore_drill : {task}" in result.stdout for task in HOST_TASKS)


RULE = {"namespace": "clinic.patients"}
UNMASKED = ["clinic.visits", "clinic.audit_log"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("-e", "restore_drill_target_env=prod"), "never prod or dev"),
        (("-e", "restore_drill_target_env=dev"), "never prod or dev"),
        # The checks tagged always skipped: the destructive tasks' own condition still refuses.
        (
            (
                "--skip-tags", "always",
                "-e", "restore_drill_target_env=prod",
                "-e", "restore_drill_env=prod",
            ),
            "is not a drill target",
        ),
        # Every variable the check reads says dev: dev is still not on the allow-list.
        (
            (
                "--skip-tags", "always",
                "-e", "restore_drill_target_env=dev",
                "-e", "restore_drill_env=dev",
                "-e", "restore_drill_host_env=dev",
            ),
            "is not a drill target",
        ),
        # The host says stage: an inventory and target of another name are refused.
        (
            (
                "--skip-tags", "always",
                "-e", "restore_drill_target_env=lab",
                "-e", "restore_drill_env=lab",
            ),
            "is not a drill target",
        ),
        (("-e", '{"restore_drill_masking_rules": []}'), "must be a non-empty list"),
        (
            ("-e", json.dumps({"restore_drill_masking_rules": [{**RULE, "fields": {}}]})),
            "at least one field each",
        ),
        (
            (
                "-e",
                json.dumps({"restore_drill_masking_rules": [{**RULE, "fields": {"a": "b"}}]}),
            ),
            "generators being name, email",
        ),
        (
            (
                "-e",
                json.dumps({"restore_drill_unmasked_namespaces": [*UNMASKED, "clinic.patients"]}),
            ),
            "that no rule names",
        ),
        (
            ("-e", '{"restore_drill_unmasked_namespaces": ["clinic.visits"]}'),
            "The backup holds clinic.audit_log, which no rule of restore_drill_masking_rules masks",
        ),
        (("-e", "restore_drill_scratch_port=scratch"), "restore_drill_scratch_port"),
        (
            ("-e", '{"restore_drill_subset": {"clinic.patients": {"fraction": 0}}}'),
            "restore_drill_subset['clinic.patients']: fraction must be a number above 0",
        ),
        (
            ("-e", '{"restore_drill_subset": {"clinic.absent": {"fraction": 0.5}}}'),
            "restore_drill_subset names clinic.absent, which the backup",
        ),
    ],
    ids=[
        "prod-target",
        "dev-target",
        "prod-skip-always",
        "dev-everything-overridden",
        "inventory-not-the-host",
        "empty-rules",
        "rule-without-fields",
        "unknown-generator",
        "masked-and-unmasked",
        "namespace-without-rule",
        "scratch-port-not-a-number",
        "subset-fraction-zero",
        "subset-of-an-absent-namespace",
    ],
)  # fmt: skip
def test_a_refused_drill_changes_nothing(
    ansible_playbook: Any,
    drill: dict[str, Any],
    target: MongoClient[dict[str, Any]],
    tail: Any,
    args: tuple[str, ...],
    message: str,
) -> None:
    before = snapshot(target)
    # The later -e of a variable wins.
    result = ansible_playbook(DRILL, *DRILL_ARGS, *args)
    assert result.returncode != 0, tail(result)
    text = " ".join((result.stdout + result.stderr).split())
    assert message in text, tail(result)
    assert not reached_the_host(result), tail(result)
    assert snapshot(target) == before


def test_a_drill_is_refused_while_another_run_holds_the_targets_lock(
    ansible_playbook: Any, drill: dict[str, Any], target: MongoClient[dict[str, Any]], tail: Any
) -> None:
    """A deploy (or site.yml's API tier) of the target environment holds its run lock: the drill
    is refused before it reaches the host, names the holder and leaves its lock alone."""
    ssm = boto3.client("ssm")
    holder = {"run_id": "0123456789ab", "owner": "qa@controller", "purpose": "deploy 2.0.0",
              "started": "2026-12-07T12:00:00Z"}  # fmt: skip
    ssm.put_parameter(Name=TARGET_LOCK, Value=json.dumps(holder), Type="String")
    before = snapshot(target)
    try:
        result = ansible_playbook(DRILL, *DRILL_ARGS)
        left = ssm.get_parameter(Name=TARGET_LOCK)["Parameter"]["Value"]
    finally:
        ssm.delete_parameter(Name=TARGET_LOCK)
    assert result.returncode != 0, tail(result)
    text = " ".join((result.stdout + result.stderr).split())
    assert f"Another run holds the run lock {TARGET_LOCK}: 'deploy 2.0.0' by qa@controller" in text
    assert not reached_the_host(result), tail(result)
    assert json.loads(left) == holder
    assert snapshot(target) == before


def test_a_drill_started_at_the_restore_task_reaches_no_host(
    ansible_playbook: Any, drill: dict[str, Any], target: MongoClient[dict[str, Any]], tail: Any
) -> None:
    """--start-at-task skips the probe, so the second play has no primary to run on."""
    before = snapshot(target)
    result = ansible_playbook(
        DRILL, *DRILL_ARGS, "-e", "restore_drill_target_env=dev", "--start-at-task", RUN_TASK
    )
    assert not reached_the_host(result), tail(result)
    assert snapshot(target) == before


# Steps the drill is killed at (drill_killer.py holds it there with a held mongorestore or an
# fsync lock, then SIGKILLs its unit).
KILL_POINTS = ("during-restore", "after-restore", "during-masking", "before-copy")
KILLER = "/root/drill_killer.py"
HELD_RESTORE = """#!/bin/sh
# mongorestore, then held until drill_killer.py lets it go (at most five minutes).
/usr/bin/mongorestore "$@"
rc=$?
touch /run/clinic-drill-test/restored
timeout 300 sh -c 'until [ -e /run/clinic-drill-test/release ]; do sleep 0.05; done'
exit $rc
"""


@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_drill_killed_at_any_step_leaves_no_unmasked_value(
    ansible_playbook: Any,
    drill: dict[str, Any],
    drill_host: Host,
    target: MongoClient[dict[str, Any]],
    tail: Any,
    point: str,
) -> None:
    """The unit is SIGKILLed (as by an OOM kill or a lost host) at a step of the drill: the target
    set holds no original value, in its documents or its oplog, and no scratch instance or file
    is left. Killed before the copy, the target holds what it held."""
    before = snapshot(target)
    subprocess.run(
        ["docker", "cp", str(ROOT / "molecule" / "backup_cron" / "drill_killer.py"),
         f"bk-restore:{KILLER}"],
        check=True,
    )  # fmt: skip
    setup = drill_host.run(
        "rm -rf /run/clinic-drill-test && install -d -m 0700 /run/clinic-drill-test"
        " && printf %%s %s > /usr/local/bin/mongorestore-held"
        " && chmod 0755 /usr/local/bin/mongorestore-held",
        HELD_RESTORE,  # testinfra quotes the arguments of run()
    )
    assert setup.rc == 0, setup.stderr
    args = list(DRILL_ARGS)
    if point in ("after-restore", "during-masking"):
        args += ["-e", "restore_drill_mongorestore=/usr/local/bin/mongorestore-held"]
    killer = [
        "docker", "exec", "-d", "bk-restore", "/opt/clinic/mongodb-ansible/bin/python", KILLER,
        point, str(SCRATCH_PORT), UNIT, *(m.decode() for m in ORIGINAL_MARKERS),
    ]  # fmt: skip
    if point == "before-copy":
        target.admin.command("fsync", lock=True)
    try:
        subprocess.run(killer, check=True)
        result = ansible_playbook(DRILL, *args)
    finally:
        if point == "before-copy":
            target.admin.command("fsyncUnlock")
    assert drill_host.file("/run/clinic-drill-test/killed").exists, tail(result)
    assert result.returncode != 0, tail(result)
    assert "The drill stopped" in result.stdout + result.stderr, tail(result)
    stage = [bson.encode(doc) for doc in target["clinic"]["patients"].find()]
    assert not any(marker in doc for doc in stage for marker in ORIGINAL_MARKERS)
    assert originals_in_oplog(target) == 0
    if point != "before-copy":
        assert snapshot(target) == before
    assert_no_scratch_left(drill_host)
    if point == "after-restore":
        # The scratch instance held every original value: no client without the host's
        # certificate, plaintext or not, could read it.
        strangers = drill_host.file("/run/clinic-drill-test/strangers").content_string
        assert strangers == "plaintext=refused no-certificate=refused", strangers
    if point != "during-restore":
        # The source's users came with the restore; masking drops them before anything is copied.
        users = int(drill_host.file("/run/clinic-drill-test/scratch_users").content_string)
        assert (users == 0) == (point == "before-copy"), users


def sample_point(doc_id: Any) -> float:
    """The documented fraction rule: the first 32 bits of the sha256 of the BSON {v: _id}."""
    return int(hashlib.sha256(bson.encode({"v": doc_id})).hexdigest()[:8], 16) / 0x100000000


def test_a_subset_drill_copies_only_the_chosen_documents_masked(
    ansible_playbook: Any,
    drill: dict[str, Any],
    source: MongoClient[dict[str, Any]],
    target: MongoClient[dict[str, Any]],
    s3: Any,
    tail: Any,
) -> None:
    """Half the patients (a fixed sample), their visits, and the audit records of the last day
    before the backup: nothing else reaches the target, and the patients are masked."""
    subset = {
        "clinic.patients": {"fraction": 0.5},
        "clinic.visits": {"follow": "clinic.patients", "field": "patient"},
        "clinic.audit_log": {"days": 1, "field": "createdAt"},
    }
    pointer = latest(s3)
    assert pointer is not None
    taken_at = datetime.datetime.strptime(pointer["timestamp"], "%Y%m%dT%H%M%SZ")
    result = ansible_playbook(
        DRILL, *DRILL_ARGS, "-e", json.dumps({"restore_drill_subset": subset})
    )
    assert result.returncode == 0, tail(result)

    sampled = {f"p{i:03d}" for i in range(PATIENTS) if sample_point(f"p{i:03d}") < 0.5}
    assert 0 < len(sampled) < PATIENTS
    patients = list(target["clinic"]["patients"].find())
    assert {p["_id"] for p in patients} == sampled
    assert all(p["name"].startswith("Masked Patient") for p in patients)
    visits = {v["_id"] for v in target["clinic"]["visits"].find()}
    assert visits == {i for i in range(VISITS) if f"p{i:03d}" in sampled}
    cutoff = taken_at - datetime.timedelta(days=1)
    audit = list(source["clinic"]["audit_log"].find())
    recent = {a["_id"] for a in audit if a["createdAt"] >= cutoff}
    assert 0 < len(recent) < len(audit)
    assert {a["_id"] for a in target["clinic"]["audit_log"].find()} == recent
    assert originals_in_oplog(target) == 0


def test_a_drill_to_a_point_in_time_restores_exactly_the_writes_before_it(
    ansible_playbook: Any,
    drill: dict[str, Any],
    bk2: Host,
    source: MongoClient[dict[str, Any]],
    backup_member_db: MongoClient[dict[str, Any]],
    target: MongoClient[dict[str, Any]],
    tail: Any,
) -> None:
    """A nightly backup, writes, an oplog slice, the point, more writes, another slice: the drill
    to the point restores the backup and replays exactly the writes before the point, masked."""
    assert bk2.run(BACKUP).rc == 0
    db = source["clinic"].with_options(write_concern=WriteConcern(w="majority"))
    db["visits"].insert_many([{"_id": f"before-{i}", "patient": "p002"} for i in range(3)])
    db["patients"].update_one({"_id": "p003"}, {"$set": {"ward": "before"}})
    db["visits"].delete_one({"_id": 7})
    wait_for(
        lambda: backup_member_db["clinic"]["visits"].find_one({"_id": "before-2"}) is not None,
        "the hidden member to replicate the writes before the point",
    )
    assert archive_oplog(bk2)[0].rc == 0
    point = datetime.datetime.now(datetime.UTC).replace(microsecond=0) + datetime.timedelta(
        seconds=1
    )
    time.sleep((point - datetime.datetime.now(datetime.UTC)).total_seconds() + 1)
    expected_visits = {v["_id"] for v in source["clinic"]["visits"].find()}
    expected_patients = {p["_id"] for p in source["clinic"]["patients"].find()}
    db["visits"].insert_many([{"_id": f"after-{i}", "patient": "p002"} for i in range(3)])
    db["patients"].update_one({"_id": "p003"}, {"$set": {"ward": "after"}})
    db["patients"].insert_one({"_id": "after-patient", "name": "After Original"})
    db["visits"].delete_one({"_id": 8})
    wait_for(
        lambda: backup_member_db["clinic"]["visits"].find_one({"_id": "after-2"}) is not None,
        "the hidden member to replicate the writes after the point",
    )
    assert archive_oplog(bk2)[0].rc == 0

    at = point.strftime("%Y-%m-%dT%H:%M:%SZ")
    result = ansible_playbook(DRILL, *DRILL_ARGS, "-e", f"restore_drill_point_in_time={at}")
    assert result.returncode == 0, tail(result)
    assert f"Point in time: {at}," in " ".join(result.stdout.split())

    assert {v["_id"] for v in target["clinic"]["visits"].find()} == expected_visits
    patients = {p["_id"]: p for p in target["clinic"]["patients"].find()}
    assert set(patients) == expected_patients
    assert patients["p003"]["ward"] == "before"
    assert all(p["name"].startswith("Masked Patient") for p in patients.values())
    assert originals_in_oplog(target) == 0


def test_a_point_in_time_the_oplog_archive_does_not_reach_is_refused(
    ansible_playbook: Any, drill: dict[str, Any], target: MongoClient[dict[str, Any]], tail: Any
) -> None:
    """A point after the newest archived entry: refused before anything changes."""
    before = snapshot(target)
    soon = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)
    # The newest slice ends before `soon` unless cron archived in the last second: write after it.
    time.sleep(2)
    at = soon.strftime("%Y-%m-%dT%H:%M:%SZ")
    result = ansible_playbook(DRILL, *DRILL_ARGS, "-e", f"restore_drill_point_in_time={at}")
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    assert "the oplog archive does not reach the point. Nothing was changed." in output, tail(
        result
    )
    assert snapshot(target) == before
