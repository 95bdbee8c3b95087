"""playbooks/backup_storage.yml against S3 and KMS served by moto, with the stage inventory as an
environment reached over Session Manager (clinic_connection=ssm, as prod is), so that it also
makes the transfer bucket.

What the playbook set is read back with boto3: default SSE-KMS under the environment's key,
versioning, the public access block, ACLs disabled, the lifecycle rules and the bucket policy.

moto cannot enforce the bucket policy: moto 5.2.5 stores it and applies its Deny statements to
object requests, but ignores their conditions, so it refuses every object request a statement names
(TLS or not, the right encryption header or not) and can tell no allowed request from a denied one.
The policy's logic is therefore tested here explicitly, by evaluating its Deny statements against
the request contexts S3 would see (IAM condition semantics for the few operators the policy uses;
an operator this evaluator does not know fails the test).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab import settings
from tests.harness.controller_playbook import (
    ROOT,
    Run,
    empty_moto,
    inventory_copy,
    run_playbook,
    wired,
)
from tests.harness.iam_policy import UnsupportedPolicy
from tests.harness.iam_policy import denies_everyone as denied
from tests.harness.moto_ec2 import aws_client

PLAYBOOK = "backup_storage.yml"
STAGE = ROOT / "inventories" / "stage"
PROD = ROOT / "inventories" / "prod"
STORAGE = settings.storage("stage") | yaml.safe_load(
    (STAGE / "group_vars" / "all" / "storage.yml").read_text()
)
BACKUP_BUCKET = STORAGE["clinic_backup_bucket"]
AUDIT_BUCKET = STORAGE["clinic_audit_archive_bucket"]
TRANSFER_BUCKET = STORAGE["clinic_ssm_transfer_bucket"]
ALL_BUCKETS = [BACKUP_BUCKET, AUDIT_BUCKET, TRANSFER_BUCKET]
SSM = ("-e", "clinic_connection=ssm")
RETENTION = STORAGE["clinic_backup_retention_days"]
ALIAS = STORAGE["clinic_kms_key_alias"]
# The tasks of the role that change AWS resources, as the run names them.
CHANGING_TASKS = (
    "clinic.infra.backup_storage : buckets | ",
    "clinic.infra.backup_storage : lifecycle | ",
)


def create_key(env: dict[str, str], alias: str) -> dict[str, str]:
    """A customer managed key with its alias, as the environment's account holds it."""
    kms = aws_client(env, "kms")
    metadata = kms.create_key(Description=f"clinic {alias}")["KeyMetadata"]
    kms.create_alias(AliasName=alias, TargetKeyId=metadata["KeyId"])
    return {"arn": metadata["Arn"], "id": metadata["KeyId"]}


@pytest.fixture(scope="module")
def converged() -> Iterator[dict[str, Any]]:
    """moto with the stage key; the playbook run three times: first, second, then --check."""
    with empty_moto() as env:
        key = create_key(env, ALIAS)
        other_key = create_key(env, "alias/clinic-other")
        runs = {name: run_playbook(PLAYBOOK, STAGE, env, *SSM) for name in ("first", "second")}
        runs["check"] = run_playbook(PLAYBOOK, STAGE, env, *SSM, "--check")
        yield {"env": env, "key": key, "other_key": other_key, "runs": runs}


@pytest.fixture(scope="module")
def s3(converged: dict[str, Any]) -> Any:
    return aws_client(converged["env"], "s3")


def test_first_run_converges_and_second_run_changes_nothing(converged: dict[str, Any]) -> None:
    runs: dict[str, Run] = converged["runs"]
    for name, run in runs.items():
        assert run.returncode == 0, f"{name} run failed:\n{run.output}"
    assert runs["first"].recap["changed"] == 4
    assert sum(task.startswith(CHANGING_TASKS) for task in runs["first"].tasks) == 4
    assert runs["second"].recap["changed"] == 0, runs["second"].output


def test_check_run_on_the_converged_buckets_is_clean(converged: dict[str, Any]) -> None:
    check: Run = converged["runs"]["check"]
    assert check.recap["changed"] == 0, check.output
    assert check.recap["failed"] == 0


@pytest.mark.parametrize("bucket", ALL_BUCKETS)
def test_default_encryption_is_sse_kms_with_the_environments_key(
    s3: Any, converged: dict[str, Any], bucket: str
) -> None:
    (rule,) = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": converged["key"]["arn"],
    }
    assert rule["BucketKeyEnabled"] is True


@pytest.mark.parametrize("bucket", ALL_BUCKETS)
def test_public_access_block_ownership_and_tags(s3: Any, bucket: str) -> None:
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert block == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    (ownership,) = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
    assert ownership == {"ObjectOwnership": "BucketOwnerEnforced"}
    tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]}
    assert tags == {"Project": "clinic", "Environment": "stage"}


@pytest.mark.parametrize("bucket", [BACKUP_BUCKET, AUDIT_BUCKET])
def test_the_data_buckets_are_versioned(s3: Any, bucket: str) -> None:
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"


def test_the_transfer_bucket_keeps_no_version_and_no_lock(s3: Any) -> None:
    """A module file deleted after its task is gone: no noncurrent version keeps the keyFile."""
    assert "Status" not in s3.get_bucket_versioning(Bucket=TRANSFER_BUCKET)
    with pytest.raises(s3.exceptions.ClientError, match="ObjectLockConfigurationNotFound"):
        s3.get_object_lock_configuration(Bucket=TRANSFER_BUCKET)


def test_the_transfer_bucket_empties_itself_within_a_day(s3: Any) -> None:
    (rule,) = s3.get_bucket_lifecycle_configuration(Bucket=TRANSFER_BUCKET)["Rules"]
    assert rule == {
        "ID": "transfer",
        "Filter": {"Prefix": ""},
        "Status": "Enabled",
        "Expiration": {"Days": 1},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
    }


def test_backups_expire_after_the_retention(s3: Any) -> None:
    (rule,) = s3.get_bucket_lifecycle_configuration(Bucket=BACKUP_BUCKET)["Rules"]
    assert rule == {
        "ID": "backups",
        "Filter": {"Prefix": "backups/stage/"},
        "Status": "Enabled",
        "Expiration": {"Days": RETENTION},
        "NoncurrentVersionExpiration": {"NoncurrentDays": RETENTION},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
    }


def test_audit_exports_move_to_glacier_and_never_expire(s3: Any) -> None:
    (rule,) = s3.get_bucket_lifecycle_configuration(Bucket=AUDIT_BUCKET)["Rules"]
    assert rule == {
        "ID": "audit",
        "Filter": {"Prefix": "audit/stage/"},
        "Status": "Enabled",
        "Transitions": [{"Days": 90, "StorageClass": "GLACIER"}],
        "NoncurrentVersionExpiration": {"NoncurrentDays": RETENTION},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
    }


@pytest.mark.parametrize(
    ("bucket", "days"), [(BACKUP_BUCKET, RETENTION), (AUDIT_BUCKET, 365)], ids=["backups", "audit"]
)
def test_every_new_version_is_locked_in_the_environments_mode(
    s3: Any, bucket: str, days: int
) -> None:
    config = s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    assert config == {
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": days}},
    }


def test_a_backup_version_cannot_be_deleted_during_its_lock(s3: Any) -> None:
    """The lock, not the policy, refuses: moto applies the policy's denies to every object request,
    so the policy is set aside for this one and put back."""
    policy = s3.get_bucket_policy(Bucket=BACKUP_BUCKET)["Policy"]
    s3.delete_bucket_policy(Bucket=BACKUP_BUCKET)
    try:
        key = "backups/stage/20260101T000000Z/dump.archive.gz"
        first = s3.put_object(Bucket=BACKUP_BUCKET, Key=key, Body=b"first")["VersionId"]
        s3.put_object(Bucket=BACKUP_BUCKET, Key=key, Body=b"overwrite")
        head = s3.head_object(Bucket=BACKUP_BUCKET, Key=key, VersionId=first)
        assert head["ObjectLockMode"] == "GOVERNANCE"
        with pytest.raises(s3.exceptions.ClientError, match="AccessDenied"):
            s3.delete_object(Bucket=BACKUP_BUCKET, Key=key, VersionId=first)
        body = s3.get_object(Bucket=BACKUP_BUCKET, Key=key, VersionId=first)["Body"].read()
        assert body == b"first"
    finally:
        s3.put_bucket_policy(Bucket=BACKUP_BUCKET, Policy=policy)


def test_every_environment_sets_its_lock_mode() -> None:
    modes = {
        storage.parents[2].name: yaml.safe_load(storage.read_text()).get("clinic_object_lock_mode")
        for storage in ROOT.glob("inventories/*/group_vars/all/storage.yml")
    }
    assert modes == {
        "dev": "GOVERNANCE",
        "lab": "GOVERNANCE",
        "stage": "GOVERNANCE",
        "prod": "COMPLIANCE",
    }


def test_the_lifecycle_prefixes_are_where_the_backup_job_writes() -> None:
    # The role reads clinic_backup_prefix and clinic_audit_prefix (as the IAM grants do); the
    # backup job spells the same layout in its scripts, from backup_cron_env.
    wiring = yaml.safe_load((ROOT / "group_vars" / "all" / "backup.yml").read_text())
    inputs = yaml.safe_load((ROOT / "group_vars" / "all" / "backup_storage.yml").read_text())
    assert inputs["backup_storage_backup_prefix"] == "{{ clinic_backup_prefix }}"
    assert inputs["backup_storage_audit_prefix"] == "{{ clinic_audit_prefix }}"
    assert wiring["clinic_backup_prefix_format"] == "backups/{env}/"
    derived = "{{ clinic_backup_prefix_format.format(env=clinic_env) }}"
    assert wiring["clinic_backup_prefix"] == derived
    assert wiring["clinic_audit_prefix"] == "audit/{{ clinic_env }}/"
    assert wiring["backup_cron_env"] == "{{ clinic_env }}"
    scripts = ROOT / "roles" / "backup_cron" / "files"
    backup = (scripts / "clinic-backup").read_text()
    assert 'PREFIX="backups/$BACKUP_ENV/$TS"' in backup
    assert '"backups/$BACKUP_ENV/latest"' in backup
    assert 'KEY="audit/$BACKUP_ENV/$DAY.jsonl.gz"' in (scripts / "clinic-audit-export").read_text()


def test_every_environment_sets_a_retention_the_playbook_accepts() -> None:
    for storage in sorted(ROOT.glob("inventories/*/group_vars/all/storage.yml")):
        retention = yaml.safe_load(storage.read_text()).get("clinic_backup_retention_days")
        assert isinstance(retention, int) and 1 <= retention <= 3650, storage


# --- The bucket policy (moto stores it but never enforces it) ---------------------------------


# A request by one of the environment's principals (its roles carry these tags), over TLS or not.
OWN = {"aws:PrincipalTag/Project": "clinic", "aws:PrincipalTag/Environment": "stage"}
TLS = {"aws:SecureTransport": "true"} | OWN
PLAIN = {"aws:SecureTransport": "false"} | OWN
SSE = "s3:x-amz-server-side-encryption"
KEY_ID = "s3:x-amz-server-side-encryption-aws-kms-key-id"


@pytest.fixture(scope="module")
def policies(s3: Any) -> dict[str, dict[str, Any]]:
    return {b: json.loads(s3.get_bucket_policy(Bucket=b)["Policy"]) for b in ALL_BUCKETS}


def test_the_evaluator_refuses_an_operator_it_does_not_know() -> None:
    policy = {
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": "*",
                "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
            }
        ]
    }
    with pytest.raises(UnsupportedPolicy, match="IpAddress"):
        denied(policy, "s3:GetObject", "arn:aws:s3:::b/k", TLS)


@pytest.mark.parametrize("bucket", ALL_BUCKETS)
def test_requests_without_tls_are_denied(policies: dict[str, Any], bucket: str) -> None:
    policy = policies[bucket]
    assert denied(policy, "s3:GetObject", f"arn:aws:s3:::{bucket}/backups/a", PLAIN)
    assert denied(policy, "s3:ListBucket", f"arn:aws:s3:::{bucket}", PLAIN)
    assert denied(policy, "s3:PutObject", f"arn:aws:s3:::{bucket}/a", PLAIN | {SSE: "aws:kms"})
    assert not denied(policy, "s3:GetObject", f"arn:aws:s3:::{bucket}/backups/a", TLS)
    assert not denied(policy, "s3:ListBucket", f"arn:aws:s3:::{bucket}", TLS)


@pytest.mark.parametrize("bucket", ALL_BUCKETS)
def test_puts_asking_for_other_encryption_or_another_key_are_denied(
    policies: dict[str, Any], converged: dict[str, Any], bucket: str
) -> None:
    policy, key, other = policies[bucket], converged["key"], converged["other_key"]
    obj = f"arn:aws:s3:::{bucket}/x/archive.gz"
    assert denied(policy, "s3:PutObject", obj, TLS | {SSE: "AES256"})
    assert denied(policy, "s3:PutObject", obj, TLS | {SSE: "aws:kms:dsse", KEY_ID: key["arn"]})
    assert denied(policy, "s3:PutObject", obj, TLS | {SSE: "aws:kms"}), "aws:kms without a key"
    assert denied(policy, "s3:PutObject", obj, TLS | {SSE: "aws:kms", KEY_ID: other["arn"]})
    assert denied(policy, "s3:PutObject", obj, TLS | {SSE: "aws:kms", KEY_ID: "alias/clinic-other"})


@pytest.mark.parametrize("bucket", ALL_BUCKETS)
def test_puts_under_the_environments_key_are_allowed(
    policies: dict[str, Any], converged: dict[str, Any], bucket: str
) -> None:
    policy, key = policies[bucket], converged["key"]
    obj = f"arn:aws:s3:::{bucket}/x/archive.gz"
    account_alias_arn = key["arn"].split(":key/")[0] + ":" + ALIAS
    for name in (key["arn"], key["id"], ALIAS, account_alias_arn):
        assert not denied(policy, "s3:PutObject", obj, TLS | {SSE: "aws:kms", KEY_ID: name}), name


@pytest.mark.parametrize("bucket", ALL_BUCKETS)
def test_a_put_without_encryption_headers_is_left_to_default_encryption(
    policies: dict[str, Any], s3: Any, converged: dict[str, Any], bucket: str
) -> None:
    # Allowed by the policy on purpose: default encryption stores it under the environment's key.
    assert not denied(policies[bucket], "s3:PutObject", f"arn:aws:s3:::{bucket}/x", TLS)
    default = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    assert (
        default["Rules"][0]["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"]
        == converged["key"]["arn"]
    )


@pytest.mark.parametrize(
    "principal",
    [
        {},
        {"aws:PrincipalTag/Project": "clinic"},
        {"aws:PrincipalTag/Project": "clinic", "aws:PrincipalTag/Environment": "prod"},
        {"aws:PrincipalTag/Project": "other", "aws:PrincipalTag/Environment": "stage"},
    ],
    ids=["untagged", "no environment", "another environment", "another project"],
)
def test_only_the_environments_principals_may_use_the_transfer_bucket(
    policies: dict[str, Any], principal: dict[str, str]
) -> None:
    policy = policies[TRANSFER_BUCKET]
    request = {"aws:SecureTransport": "true"} | principal
    for action, resource in [
        ("s3:GetObject", f"arn:aws:s3:::{TRANSFER_BUCKET}/i-0abc/module.py"),
        ("s3:PutObject", f"arn:aws:s3:::{TRANSFER_BUCKET}/i-0abc/module.py"),
        ("s3:ListBucket", f"arn:aws:s3:::{TRANSFER_BUCKET}"),
        ("s3:PutBucketPolicy", f"arn:aws:s3:::{TRANSFER_BUCKET}"),
    ]:
        assert denied(policy, action, resource, request), (action, principal)
        assert not denied(policy, action, resource, TLS), action


def transfer_bucket(env: str, *extra: str) -> str:
    return str(
        wired(env, ["backup_storage_transfer_bucket"], *extra)["backup_storage_transfer_bucket"]
    )


def test_prod_reaches_its_hosts_through_the_transfer_bucket_the_role_makes() -> None:
    prod = settings.storage("prod")["clinic_ssm_transfer_bucket"]
    assert prod == "clinic-prod-ansible-ssm-ap-south-1"
    connection = yaml.safe_load((PROD / "group_vars/all/connection.yml").read_text())
    assert connection["ansible_aws_ssm_bucket_name"] == "{{ clinic_ssm_transfer_bucket }}"
    assert connection["clinic_connection"] == "ssm"
    assert transfer_bucket("prod", "-e", "clinic_connection=ssm") == prod
    # Break-glass over SSH, and the environments reached over SSH, have no transfer bucket.
    assert transfer_bucket("prod", "-e", "clinic_connection=ssh") == ""
    assert transfer_bucket("stage") == ""


# --- Bad input: a clear message, and nothing created -------------------------------------------


@pytest.fixture(scope="module")
def empty_account() -> Iterator[dict[str, str]]:
    """moto with the stage key and no bucket: a refused run must leave it so."""
    with empty_moto() as env:
        create_key(env, ALIAS)
        yield env


def without(inventory: Path, name: str) -> Path:
    storage = inventory / "group_vars" / "all" / "storage.yml"
    facts = yaml.safe_load(storage.read_text())
    del facts[name]
    storage.write_text(yaml.safe_dump(facts, explicit_start=True))
    return inventory


BAD_INPUT = {
    "missing backup bucket": (
        {"extra": ["-e", '{"clinic_storage_names": {"backup_bucket": ""}}']},
        "clinic_backup_bucket is not set",
    ),
    "invalid audit bucket": (
        {"extra": ["-e", '{"clinic_storage_names": {"audit_archive_bucket": "Audit_Archive"}}']},
        'clinic_audit_archive_bucket is "Audit_Archive"',
    ),
    "same bucket twice": (
        {"extra": ["-e", f"clinic_audit_archive_bucket={BACKUP_BUCKET}"]},
        f"clinic_backup_bucket is {BACKUP_BUCKET}, as clinic_audit_archive_bucket is",
    ),
    "transfer bucket is the backup bucket": (
        {"extra": [*SSM, "-e", f"clinic_ssm_transfer_bucket={BACKUP_BUCKET}"]},
        "as clinic_ssm_transfer_bucket is: their lifecycle rules and policies differ",
    ),
    "invalid transfer bucket": (
        {"extra": [*SSM, "-e", '{"clinic_storage_names": {"ssm_transfer_bucket": "SSM_x"}}']},
        'clinic_ssm_transfer_bucket is "SSM_x"',
    ),
    "missing key alias": (
        {"extra": ["-e", '{"clinic_storage_names": {"kms_key_alias": ""}}']},
        "clinic_kms_key_alias is not set",
    ),
    "AWS managed key": (
        {"extra": ["-e", "clinic_kms_key_alias=alias/aws/s3"]},
        "AWS managed keys",
    ),
    "alias without a key": (
        {"extra": ["-e", "clinic_kms_key_alias=alias/clinic-nowhere"]},
        "No KMS key has the alias alias/clinic-nowhere",
    ),
    "missing retention": (
        {"drop": "clinic_backup_retention_days"},
        "clinic_backup_retention_days is not set",
    ),
    "zero retention": (
        {"extra": ["-e", "clinic_backup_retention_days=0"]},
        'clinic_backup_retention_days is "0": it must be a whole number of days from 1 to 3650',
    ),
    "retention with a unit": (
        {"extra": ["-e", "clinic_backup_retention_days=30d"]},
        'clinic_backup_retention_days is "30d"',
    ),
    "retention too long": (
        {"extra": ["-e", '{"clinic_backup_retention_days": 4000}']},
        'clinic_backup_retention_days is "4000"',
    ),
    "missing lock mode": (
        {"drop": "clinic_object_lock_mode"},
        "clinic_object_lock_mode is not set: set it in "
        "inventories/stage/group_vars/all/storage.yml to GOVERNANCE",
    ),
    "unknown lock mode": (
        {"extra": ["-e", "clinic_object_lock_mode=governance"]},
        'clinic_object_lock_mode is "governance"',
    ),
    "noncurrent versions shorter than the retention": (
        {"extra": ["-e", "backup_storage_noncurrent_days=7"]},
        "backup_storage_noncurrent_days (7) and backup_storage_lock_days",
    ),
    "lock shorter than the retention": (
        {"extra": ["-e", "backup_storage_lock_days=1"]},
        "must each be at least clinic_backup_retention_days",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUT), ids=list(BAD_INPUT))
def test_bad_input_fails_with_a_clear_message_before_any_change(
    empty_account: dict[str, str], tmp_path: Path, case: str
) -> None:
    change, message = BAD_INPUT[case]
    inventory = inventory_copy("stage", tmp_path)
    if "drop" in change:
        without(inventory, change["drop"])
    run = run_playbook(PLAYBOOK, inventory, empty_account, *change.get("extra", []))
    assert run.returncode != 0, run.output
    assert message in " ".join(run.output.split()), run.output
    assert "Nothing was changed." in " ".join(run.output.split())
    assert run.recap["changed"] == 0
    assert not any(task.startswith(CHANGING_TASKS) for task in run.tasks)
    assert aws_client(empty_account, "s3").list_buckets()["Buckets"] == []
