"""The backup job on the hidden member: encrypted, verified objects, manifest, pointer, metrics."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from conftest import (
    AUDIT_BUCKET,
    AUDIT_EXPORT,
    BACKUP,
    BUCKET,
    ENV,
    KEY_ALIAS,
    PATIENTS,
    VISITS,
    config_with,
    job_setting,
    latest,
    log_lines,
    metric_points,
)
from testinfra.host import Host


def key_arn() -> str:
    return str(boto3.client("kms").describe_key(KeyId=KEY_ALIAS)["KeyMetadata"]["Arn"])


def test_the_role_runs_on_the_hidden_member_only(host_named: Any) -> None:
    assert host_named("bk2").file("/etc/cron.d/clinic-backup").exists
    assert not host_named("bk1").file("/etc/cron.d/clinic-backup").exists
    assert not host_named("bk1").file("/usr/local/sbin/clinic-backup").exists


def test_cron_runs_the_jobs_as_the_backup_user(bk2: Host) -> None:
    lines = [
        line
        for line in bk2.file("/etc/cron.d/clinic-backup").content_string.splitlines()
        if line and not line.startswith(("#", "SHELL", "PATH"))
    ]
    assert lines == [
        "30 2 * * * clinic-backup /usr/local/sbin/clinic-backup "
        ">>/var/log/clinic-backup/backup.log 2>&1",
        "*/15 * * * * clinic-backup /usr/local/sbin/clinic-oplog-archive "
        ">>/var/log/clinic-backup/oplog-archive.log 2>&1",
        "45 0 * * * clinic-backup /usr/local/sbin/clinic-audit-export "
        ">>/var/log/clinic-backup/audit-export.log 2>&1",
    ]
    assert bk2.service("cron").is_running


def test_the_password_is_only_in_the_tools_config_file(
    bk2: Host, secret: Callable[..., str]
) -> None:
    password = secret("mongodb_backup_password", ENV)
    config = bk2.file("/etc/clinic/backup/mongo-tools.yaml")
    assert (config.user, config.group, config.mode) == ("root", "clinic-backup", 0o640)
    assert password in config.content_string
    for path in ("/etc/clinic/backup/backup.env", "/etc/cron.d/clinic-backup"):
        assert password not in bk2.file(path).content_string, path


def test_a_backup_succeeds_with_json_log_lines(first_backup: dict[str, Any]) -> None:
    result = first_backup["result"]
    assert result.rc == 0, result.stdout + result.stderr
    lines = log_lines(result.stdout)
    assert [line["event"] for line in lines] == ["started", "uploaded", "succeeded"]
    assert all(line["job"] == "backup" and line["environment"] == ENV for line in lines)
    assert 0 <= lines[0]["replication_lag_seconds"] <= 300


def test_archive_and_manifest_are_encrypted_with_the_key(
    first_backup: dict[str, Any], s3: Any
) -> None:
    prefix = first_backup["latest"]["prefix"]
    assert prefix.startswith(f"backups/{ENV}/") and prefix.endswith("Z/")
    for name in ("dump.archive.gz", "manifest.json"):
        head = s3.head_object(Bucket=BUCKET, Key=prefix + name)
        assert head["ServerSideEncryption"] == "aws:kms", name
        assert head["SSEKMSKeyId"] == key_arn(), name
    head = s3.head_object(Bucket=BUCKET, Key=f"backups/{ENV}/latest")
    assert head["ServerSideEncryption"] == "aws:kms"


def test_manifest_matches_the_archive_and_the_data(first_backup: dict[str, Any], s3: Any) -> None:
    pointer = first_backup["latest"]
    archive = s3.get_object(Bucket=BUCKET, Key=pointer["archive"])["Body"].read()
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=pointer["manifest"])["Body"].read())
    assert hashlib.sha256(archive).hexdigest() == manifest["archive"]["sha256"] == pointer["sha256"]
    assert manifest["archive"]["bytes"] == len(archive) == pointer["bytes"]
    assert manifest["environment"] == ENV
    collections = manifest["collections"]
    assert collections["clinic.patients"] == PATIENTS
    assert collections["clinic.visits"] == VISITS
    assert collections["clinic.audit_log"] == 7


def test_metrics_report_the_success_duration_and_size(first_backup: dict[str, Any]) -> None:
    since = first_backup["started"]
    assert [p["Maximum"] for p in metric_points("BackupSuccess", since)] == [1.0]
    assert metric_points("BackupBytes", since)[-1]["Maximum"] == first_backup["latest"]["bytes"]
    assert metric_points("BackupDurationSeconds", since)[-1]["Maximum"] >= 0


def test_the_password_never_appears_on_a_command_line(
    bk2: Host, secret: Callable[..., str]
) -> None:
    """Every process's argv, sampled while a backup runs, never holds the password."""
    password = secret("mongodb_backup_password", ENV)
    script = (
        "(for i in $(seq 1 400); do ps -eo args; sleep 0.02; done) >/tmp/argv.log 2>&1 & "
        "sampler=$!; "
        f"{BACKUP} >/tmp/backup.out 2>&1; rc=$?; kill $sampler; wait $sampler 2>/dev/null; "
        "grep -c mongodump /tmp/argv.log; exit $rc"
    )
    result = bk2.run("bash -c %s", script)
    assert result.rc == 0, bk2.file("/tmp/backup.out").content_string
    assert int(result.stdout.strip()) > 0, "the sampler never saw mongodump running"
    assert password not in bk2.file("/tmp/argv.log").content_string


def test_only_the_newest_backup_keeps_its_legal_hold(
    bk2: Host, first_backup: dict[str, Any], s3: Any
) -> None:
    """Each backup is put under an Object Lock legal hold, which no lifecycle rule removes; once a
    newer backup is verified and named by latest, the one named before loses it."""
    before = latest(s3)
    assert before is not None
    result = bk2.run(BACKUP)
    assert result.rc == 0, result.stdout + result.stderr
    after = latest(s3)
    assert after is not None and after["prefix"] != before["prefix"]

    def status(pointer: dict[str, Any], name: str) -> str:
        reply = s3.get_object_legal_hold(
            Bucket=BUCKET, Key=pointer[name], VersionId=pointer[f"{name}_version_id"]
        )
        return str(reply["LegalHold"]["Status"])

    for name in ("archive", "manifest"):
        assert status(after, name) == "ON", name
        assert status(before, name) == "OFF", name
        assert status(first_backup["latest"], name) == "OFF", name


def test_the_primary_is_refused(bk2: Host) -> None:
    """The same job pointed at the source's primary fails instead of dumping from it."""
    uri = job_setting(bk2, "MONGODB_URI").replace("@127.0.0.1:", "@172.30.46.11:")
    assert "172.30.46.11" in uri and "tls=true" in uri, uri
    config = config_with(bk2, "primary", MONGODB_URI=uri)
    result = bk2.run(f"CLINIC_BACKUP_CONFIG={config} {BACKUP}")
    assert result.rc == 1
    failure = log_lines(result.stdout)[0]
    assert failure["event"] == "member_state"
    assert "PRIMARY" in failure["message"]


@pytest.fixture(scope="module")
def audit_export(bk2: Host, seeded: dict[str, Any]) -> Any:
    return bk2.run(AUDIT_EXPORT)


def test_audit_export_writes_yesterdays_records(
    audit_export: Any, seeded: dict[str, Any], s3: Any
) -> None:
    assert audit_export.rc == 0, audit_export.stdout + audit_export.stderr
    key = f"audit/{ENV}/{seeded['day'].isoformat()}.jsonl.gz"
    head = s3.head_object(Bucket=AUDIT_BUCKET, Key=key)
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"] == key_arn()
    body = gzip.decompress(s3.get_object(Bucket=AUDIT_BUCKET, Key=key)["Body"].read())
    records = [json.loads(line) for line in body.decode().splitlines()]
    assert [r["_id"] for r in records] == seeded["audit_ids"]
    assert log_lines(audit_export.stdout)[-1]["event"] == "succeeded"


def test_audit_export_leaves_an_exported_day_alone(
    audit_export: Any, bk2: Host, seeded: dict[str, Any], s3: Any
) -> None:
    """S3 itself tells an exported day (the hosts cannot read audit/, and keep no marker): the
    second run's conditional put is refused and the object keeps its one version."""
    key = f"audit/{ENV}/{seeded['day'].isoformat()}.jsonl.gz"
    before = s3.list_object_versions(Bucket=AUDIT_BUCKET, Prefix=key)["Versions"]
    again = bk2.run(AUDIT_EXPORT)
    assert again.rc == 0, again.stdout + again.stderr
    assert [line["event"] for line in log_lines(again.stdout)] == ["exists"]
    after = s3.list_object_versions(Bucket=AUDIT_BUCKET, Prefix=key)["Versions"]
    assert [v["VersionId"] for v in after] == [v["VersionId"] for v in before]
    assert len(after) == 1
    assert not bk2.file("/var/lib/clinic-backup/audit-exported").exists


def test_the_job_cannot_overwrite_a_backup(
    first_backup: dict[str, Any], bk2: Host, s3: Any
) -> None:
    """The jobs' own upload, as the backup user, of another file under an existing backup's key is
    refused by S3 (If-None-Match), and the archive keeps its one version."""
    key = first_backup["latest"]["archive"]
    before = s3.list_object_versions(Bucket=BUCKET, Prefix=key)["Versions"]
    script = (
        ". /usr/local/lib/clinic-backup/common.sh; "
        f's3_put "$BACKUP_BUCKET" /etc/hostname {key} --if-absent'
    )
    result = bk2.run("runuser -u clinic-backup -- bash -c %s", script)
    assert result.rc == 3, result.stdout + result.stderr
    assert "never overwritten" in result.stderr
    after = s3.list_object_versions(Bucket=BUCKET, Prefix=key)["Versions"]
    assert [v["VersionId"] for v in after] == [v["VersionId"] for v in before]
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == first_backup["latest"]["sha256"]
