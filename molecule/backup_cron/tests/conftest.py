"""Helpers for the backup scenario: seeded data, the jobs run as their user, S3 and metrics in moto.

MongoDB is reached from the test machine (172.30.46.1) as an operator would: the source set's
primary bk1 and its hidden member bk2, the drill's target bk-restore, with the admin passwords read
from SSM like the playbooks read them. Both sets require TLS: the test machine presents a client
certificate of each environment's CA (/clinic/<env>/tls in SSM, created by the first converge).
AWS is moto at AWS_ENDPOINT_URL (the network's gateway).

The modules run in a fixed order (MODULE_ORDER): bad input, which must change nothing, first; then
the backups; the failure paths; the systemd timer option (which ends on cron again); the oplog
archive; the restore drill last, after more writes to the source.
"""

from __future__ import annotations

import datetime
import json
import re
import shlex
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from pymongo import MongoClient
from testinfra.host import Host

ENV = "molecule"
TARGET_ENV = "stage"
BUCKET = "clinic-molecule-backups-ap-south-1"
AUDIT_BUCKET = "clinic-molecule-audit-archive-ap-south-1"
KEY_ALIAS = "alias/clinic-molecule"
NAMESPACE = "Clinic/Backup"
SOURCE_PRIMARY = "172.30.46.11"
BACKUP_MEMBER = "172.30.46.12"
TARGET = "172.30.46.21"
PATIENTS = 40
VISITS = 25
MODULE_ORDER = (
    "test_bad_input",
    "test_backup",
    "test_failures",
    "test_scheduler",
    "test_oplog_archive",
    "test_restore_drill",
)
BACKUP = "runuser -u clinic-backup -- /usr/local/sbin/clinic-backup"
AUDIT_EXPORT = "runuser -u clinic-backup -- /usr/local/sbin/clinic-audit-export"
OPLOG_ARCHIVE = "runuser -u clinic-backup -- /usr/local/sbin/clinic-oplog-archive"
ROOT = Path(__file__).resolve().parents[3]


def client(address: str, password: str, tls: dict[str, Any]) -> MongoClient[dict[str, Any]]:
    """The replica set member at address, as its admin (password: mongodb_admin_password), with
    pymongo's TLS options `tls` (client_tls_at)."""
    return MongoClient(
        f"mongodb://{address}:27017/?directConnection=true&readPreference=secondaryPreferred",
        username="admin",
        password=password,
        authSource="admin",
        serverSelectionTimeoutMS=10000,
        **tls,
    )


@pytest.fixture(scope="session")
def env_tls(client_tls_at: Callable[[str], dict[str, Any]]) -> Callable[[str], dict[str, Any]]:
    """The test machine's TLS options for an environment's set (its CA: group_vars/all/tls.yml)."""
    return lambda env: client_tls_at(f"/clinic/{env}/tls")


@pytest.fixture(scope="session")
def s3() -> Any:
    return boto3.client("s3")


@pytest.fixture(scope="session")
def source(
    secret: Callable[..., str], env_tls: Callable[[str], dict[str, Any]]
) -> Iterator[MongoClient[dict[str, Any]]]:
    with client(SOURCE_PRIMARY, secret("mongodb_admin_password", ENV), env_tls(ENV)) as mongo:
        yield mongo


@pytest.fixture(scope="session")
def backup_member_db(
    secret: Callable[..., str], env_tls: Callable[[str], dict[str, Any]]
) -> Iterator[MongoClient[dict[str, Any]]]:
    with client(BACKUP_MEMBER, secret("mongodb_admin_password", ENV), env_tls(ENV)) as mongo:
        yield mongo


@pytest.fixture(scope="session")
def target(
    secret: Callable[..., str], env_tls: Callable[[str], dict[str, Any]]
) -> Iterator[MongoClient[dict[str, Any]]]:
    with client(TARGET, secret("mongodb_admin_password", TARGET_ENV), env_tls(TARGET_ENV)) as mongo:
        yield mongo


@pytest.fixture(scope="session")
def bk2(host_named: Callable[[str], Host]) -> Host:
    return host_named("bk2")


def yesterday() -> datetime.date:
    return datetime.datetime.now(datetime.UTC).date() - datetime.timedelta(days=1)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.5)


@pytest.fixture(scope="session")
def seeded(
    source: MongoClient[dict[str, Any]], backup_member_db: MongoClient[dict[str, Any]]
) -> dict[str, Any]:
    """Patients, visits and audit records (yesterday's, today's) on the source set, replicated to
    the hidden member."""
    db = source["clinic"]
    for name in ("patients", "visits", "audit_log"):
        db[name].drop()
    patients = [
        {
            "_id": f"p{i:03d}",
            "name": f"Asha Original{i}",
            "email": f"asha.original{i}@clinic.example",
            "phone": f"+91 98450 {i:05d}",
            "dateOfBirth": datetime.datetime(1980, 1, 1 + i % 28, tzinfo=datetime.UTC),
            "address": f"{i} MG Road, Bengaluru",
            "ward": f"ward-{i % 4}",
            "contacts": [
                {"relation": "spouse", "phone": f"+91 99000 {i:05d}"},
                {"relation": "parent", "phone": f"+91 99111 {i:05d}"},
            ],
        }
        for i in range(PATIENTS)
    ]
    db["patients"].insert_many(patients, bypass_document_validation=False)
    db["visits"].insert_many(
        [{"_id": i, "patient": f"p{i:03d}", "notes": "ok"} for i in range(VISITS)]
    )
    day = yesterday()
    start = datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.UTC)
    audit = [
        {"_id": f"a{i}", "createdAt": start + datetime.timedelta(hours=i), "action": f"read-{i}"}
        for i in range(5)
    ]
    audit += [
        {"_id": "today", "createdAt": start + datetime.timedelta(days=1, hours=1), "action": "x"}
    ]
    audit += [{"_id": "older", "createdAt": start - datetime.timedelta(seconds=1), "action": "y"}]
    db["audit_log"].insert_many(audit)
    replica = backup_member_db["clinic"]
    wait_for(
        lambda: (
            replica["patients"].count_documents({}) == PATIENTS
            and replica["audit_log"].count_documents({}) == len(audit)
            and replica["visits"].count_documents({}) == VISITS
        ),
        "the hidden member to replicate the seeded data",
    )
    return {"patients": patients, "audit_ids": [f"a{i}" for i in range(5)], "day": day}


def job_setting(host: Host, name: str) -> str:
    """A value of the jobs' settings (/etc/clinic/backup/backup.env), as the scripts read it."""
    script = f'. /etc/clinic/backup/backup.env && printf %s "${name}"'
    return str(host.check_output("sh -c %s", script))


def config_with(host: Host, name: str, **overrides: str) -> str:
    """A copy of the jobs' settings with some values replaced (later assignments win when the
    scripts source it); the path to pass as CLINIC_BACKUP_CONFIG."""
    path = f"/tmp/{name}.env"
    lines = "".join(f"{key}={shlex.quote(value)}\n" for key, value in overrides.items())
    host.run("cp /etc/clinic/backup/backup.env %s && chmod 0644 %s", path, path)
    host.run("printf %s >>%s", lines, path)
    return path


def log_lines(output: str) -> list[dict[str, Any]]:
    """The JSON log lines of a job's stdout (every line must be JSON)."""
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def latest(s3: Any) -> dict[str, Any] | None:
    try:
        body = s3.get_object(Bucket=BUCKET, Key=f"backups/{ENV}/latest")["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    return dict(json.loads(body))


def backup_prefixes(s3: Any) -> set[str]:
    """The backups' prefixes (backups/ENV/<UTC timestamp>/), not the oplog archive's sibling that
    its cron job may write at any time."""
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"backups/{ENV}/", Delimiter="/")
    prefixes = {p["Prefix"] for p in listing.get("CommonPrefixes", [])}
    return {p for p in prefixes if re.fullmatch(rf"backups/{ENV}/\d{{8}}T\d{{6}}Z/", p)}


def metric_points(name: str, since: datetime.datetime, env: str = ENV) -> list[dict[str, Any]]:
    """Per-minute statistics of a metric (Environment=env) since `since`, oldest first."""
    response = boto3.client("cloudwatch").get_metric_statistics(
        Namespace=NAMESPACE,
        MetricName=name,
        Dimensions=[{"Name": "Environment", "Value": env}],
        StartTime=since - datetime.timedelta(minutes=1),
        EndTime=datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=1),
        Period=60,
        Statistics=["Minimum", "Maximum", "SampleCount", "Sum"],
    )
    return sorted(response["Datapoints"], key=lambda point: point["Timestamp"])


def metric_totals(name: str, since: datetime.datetime, env: str = ENV) -> tuple[int, float]:
    """(number of data, their sum) of a metric since `since`: a failure adds a datum of 0."""
    points = metric_points(name, since, env)
    return int(sum(p["SampleCount"] for p in points)), float(sum(p["Sum"] for p in points))


@pytest.fixture(scope="session")
def first_backup(bk2: Host, seeded: dict[str, Any], s3: Any) -> dict[str, Any]:
    """The scenario's first backup, run as cron runs it, with its output and what it left in S3."""
    started = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=2)
    result = bk2.run(BACKUP)
    pointer = latest(s3)
    return {"result": result, "latest": pointer, "started": started}


def archive_oplog(bk2: Host) -> tuple[Any, list[dict[str, Any]]]:
    """One run of the oplog archive as cron runs it, with its JSON log lines; a run that skipped
    (cron's own run held the lock) is tried again."""
    for _ in range(10):
        result = bk2.run(OPLOG_ARCHIVE)
        lines = log_lines(result.stdout)
        if not (result.rc == 0 and lines and lines[-1]["event"] == "skipped"):
            return result, lines
        time.sleep(3)
    raise AssertionError("the oplog archive kept finding its lock taken")
