"""Failure paths of the backup job: S3 unreachable, a member behind its primary, two runs."""

from __future__ import annotations

import datetime
import time
from typing import Any

from conftest import BACKUP, backup_prefixes, config_with, latest, log_lines, metric_totals
from pymongo import MongoClient
from pymongo.write_concern import WriteConcern
from testinfra.host import Host

# A closed port on the test machine: S3 refuses every connection, CloudWatch (moto) still answers.
UNREACHABLE_S3 = "http://172.30.46.1:9"


def test_s3_unreachable_fails_with_a_failure_metric_and_keeps_latest(
    bk2: Host, first_backup: dict[str, Any], s3: Any
) -> None:
    before = latest(s3)
    prefixes = backup_prefixes(s3)
    since = first_backup["started"] - datetime.timedelta(minutes=5)
    count, total = metric_totals("BackupSuccess", since)
    config = config_with(bk2, "no-s3", S3_ENDPOINT_URL=UNREACHABLE_S3)
    result = bk2.run(f"CLINIC_BACKUP_CONFIG={config} {BACKUP}")
    assert result.rc == 1, result.stdout
    events = [line["event"] for line in log_lines(result.stdout)]
    assert events[-2:] == ["upload", "failed"], events
    assert "172.30.46.1:9" in log_lines(result.stdout)[-2]["message"]
    assert latest(s3) == before
    assert backup_prefixes(s3) == prefixes
    assert metric_totals("BackupSuccess", since) == (count + 1, total), "no BackupSuccess=0 datum"
    leftovers = bk2.run("find /var/lib/clinic-backup -mindepth 1 -maxdepth 1 -newer %s", config)
    assert leftovers.stdout.strip() == "", "the failed run left its files behind"


def test_a_member_behind_its_primary_refuses_with_a_failure_metric(
    bk2: Host,
    first_backup: dict[str, Any],
    s3: Any,
    source: MongoClient[dict[str, Any]],
    backup_member_db: MongoClient[dict[str, Any]],
) -> None:
    """The hidden member stops applying the oplog (fsync lock) while the primary takes a write: the
    backup measures the lag from both members' hello and refuses instead of dumping stale data."""
    before = latest(s3)
    prefixes = backup_prefixes(s3)
    since = first_backup["started"] - datetime.timedelta(minutes=5)
    count, total = metric_totals("BackupSuccess", since)
    config = config_with(bk2, "lagging", MAX_LAG_SECONDS="1")
    visits = source.clinic.get_collection("visits", write_concern=WriteConcern(w=1))
    backup_member_db.admin.command("fsync", lock=True)
    try:
        time.sleep(2.5)  # the probe's write is at least this much newer than the member's last
        visits.insert_one({"_id": "lag-probe"})
        result = bk2.run(f"CLINIC_BACKUP_CONFIG={config} {BACKUP}")
    finally:
        backup_member_db.admin.command("fsyncUnlock")
        visits.delete_one({"_id": "lag-probe"})
    assert result.rc == 1, result.stdout + result.stderr
    lines = log_lines(result.stdout)
    assert [line["event"] for line in lines] == ["replication_lag", "failed"], lines
    assert "behind the primary, more than 1s (backup_cron_max_lag_seconds)" in lines[0]["message"]
    assert latest(s3) == before
    assert backup_prefixes(s3) == prefixes
    assert metric_totals("BackupSuccess", since) == (count + 1, total), "no BackupSuccess=0 datum"


def test_a_concurrent_run_skips_and_says_so(
    bk2: Host, first_backup: dict[str, Any], s3: Any
) -> None:
    prefixes = backup_prefixes(s3)
    script = (
        f"{BACKUP} >/tmp/first.out 2>&1 & first=$!; sleep 0.3; "
        f"{BACKUP} >/tmp/second.out 2>&1; echo second=$?; wait $first; echo first=$?"
    )
    result = bk2.run("bash -c %s", script)
    assert "second=0" in result.stdout and "first=0" in result.stdout, result.stdout
    first = log_lines(bk2.file("/tmp/first.out").content_string)
    second = log_lines(bk2.file("/tmp/second.out").content_string)
    assert [line["event"] for line in second] == ["skipped"]
    assert "another backup run holds /run/lock/clinic-backup.lock" in second[0]["message"]
    assert first[-1]["event"] == "succeeded"
    assert len(backup_prefixes(s3) - prefixes) == 1
