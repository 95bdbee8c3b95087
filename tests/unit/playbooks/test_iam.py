"""playbooks/iam.yml against AWS served by moto: roles, policies, instance profiles and security
groups of an environment, what the policies allow, idempotence, check mode and refused inputs.

One moto server for the module holds the stage and prod VPCs and KMS keys, as the environments'
accounts would. Bad inputs run first, against that empty account, and must change nothing; then
stage runs --check on the empty account, then for real twice, then --check again; prod runs once.

What a role may do is proven two ways. moto enforces IAM for S3 object requests signed with the
role's credentials (assumed through STS), so S3 is checked there for real. moto gives every SSM
request the resource "*" and denies any request whose matching statement has a condition, so the
SSM, KMS, CloudWatch and S3-encryption limits are evaluated with tests/harness/iam_policy.py (its
own tests: tests/unit/harness/test_iam_policy.py), which also has to agree with moto on the S3
requests.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from botocore.exceptions import ClientError

from lab import settings
from plugins.filter.security_group_rules import security_group_rules
from tests.harness.iam_policy import allows
from tests.harness.moto_ec2 import REGION, aws_client, moto_environment

ROOT = Path(__file__).resolve().parents[3]
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
ACCOUNT = "123456789012"  # moto's default account
SECRETS = {"app": ["jwt_secret", "mongodb_uri"], "mongodb": ["keyfile", "admin_password"]}


def facts(env: str) -> dict[str, Any]:
    """An environment's facts, as its inventory's group_vars/all/*.yml define them, and the storage
    names derived from them."""
    values: dict[str, Any] = {}
    for path in sorted((ROOT / "inventories" / env / "group_vars" / "all").glob("*.yml")):
        values.update(yaml.safe_load(path.read_text()) or {})
    return values | settings.storage(env)


STAGE, PROD = facts("stage"), facts("prod")


def run(env: dict[str, str], inventory: str, *args: str) -> tuple[int, str]:
    """ansible-playbook playbooks/iam.yml; its exit status and output (stdout and stderr)."""
    result = subprocess.run(
        [ANSIBLE_PLAYBOOK, "playbooks/iam.yml", "-i", inventory, *args],
        cwd=ROOT,
        env=env | {"ANSIBLE_NOCOLOR": "1", "ANSIBLE_STDOUT_CALLBACK": "default"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr


def recap(output: str) -> dict[str, int]:
    line = re.search(r"^localhost\s+:(.*)$", output, flags=re.MULTILINE)
    assert line, output
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", line.group(1))}


def flat(output: str) -> str:
    return " ".join(output.split())


def seed_environment(env: dict[str, str], values: dict[str, Any]) -> dict[str, str]:
    """The VPC (tagged Project and Environment) and the KMS key an environment's account holds."""
    ec2, kms = aws_client(env, "ec2"), aws_client(env, "kms")
    tags = [
        {"Key": "Project", "Value": "clinic"},
        {"Key": "Environment", "Value": values["clinic_env"]},
    ]
    vpc = ec2.create_vpc(
        CidrBlock=values["clinic_vpc_cidr"],
        TagSpecifications=[{"ResourceType": "vpc", "Tags": tags}],
    )["Vpc"]["VpcId"]
    key = kms.create_key(Description=f"clinic {values['clinic_env']}")["KeyMetadata"]
    kms.create_alias(AliasName=values["clinic_kms_key_alias"], TargetKeyId=key["KeyId"])
    return {"vpc": vpc, "key_arn": key["Arn"]}


def seed_objects(env: dict[str, str]) -> None:
    """Buckets with an object under each prefix a test request reads, and the SSM parameters."""
    s3, ssm = aws_client(env, "s3"), aws_client(env, "ssm")
    for values in (STAGE, PROD):
        for bucket in ("clinic_artifact_bucket", "clinic_backup_bucket"):
            s3.create_bucket(
                Bucket=values[bucket], CreateBucketConfiguration={"LocationConstraint": REGION}
            )
            for key in ("releases/1.4.0/api.tar.gz", f"backups/{values['clinic_env']}/latest"):
                s3.put_object(Bucket=values[bucket], Key=key, Body=b"x")
        for tier, names in SECRETS.items():
            for name in names:
                ssm.put_parameter(
                    Name=f"/clinic/{values['clinic_env']}/{tier}/{name}",
                    Value="not a real secret",
                    Type="SecureString",
                )


def account_is_empty(env: dict[str, str]) -> bool:
    iam, ec2 = aws_client(env, "iam"), aws_client(env, "ec2")
    groups = ec2.describe_security_groups()["SecurityGroups"]
    return (
        not iam.list_roles()["Roles"]
        and not iam.list_instance_profiles()["InstanceProfiles"]
        and all(group["GroupName"] == "default" for group in groups)
    )


@pytest.fixture(scope="module")
def aws() -> Iterator[dict[str, Any]]:
    with moto_environment() as env:
        seeded = {"stage": seed_environment(env, STAGE), "prod": seed_environment(env, PROD)}
        refused = {
            "no inventory": run(env, "localhost,"),
            "malformed CIDR": run(
                env,
                "inventories/stage",
                "-e",
                json.dumps({"clinic_app_subnet_cidrs": ["10.20.300.0/24", "10.99.20.0/24"]}),
            ),
            "bad SSH rule": run(
                env,
                "inventories/stage",
                "-e",
                json.dumps(
                    {
                        "base_hardening_ssh_allowed_cidrs": ["10.20.0.0/33"],
                        "base_hardening_ssh_port": 70000,
                    }
                ),
            ),
            "VPC of prod": run(
                env, "inventories/stage", "-e", f"clinic_vpc_id={seeded['prod']['vpc']}"
            ),
            "missing key": run(
                env, "inventories/stage", "-e", "clinic_kms_key_alias=alias/clinic-none"
            ),
        }
        empty_after_refusals = account_is_empty(env)
        check_first = run(env, "inventories/stage", "--check")
        empty_after_check = account_is_empty(env)
        runs = {
            "check first": check_first,
            "first": run(env, "inventories/stage"),
            "second": run(env, "inventories/stage"),
            "check": run(env, "inventories/stage", "--check", "--diff"),
            "prod": run(env, "inventories/prod"),
        }
        seed_objects(env)
        yield {
            "env": env,
            "seeded": seeded,
            "refused": refused,
            "empty_after_refusals": empty_after_refusals,
            "empty_after_check": empty_after_check,
            "runs": runs,
        }


def policy_of(aws: dict[str, Any], name: str) -> dict[str, Any]:
    iam = aws_client(aws["env"], "iam")
    assert iam.list_role_policies(RoleName=name)["PolicyNames"] == [name]
    assert iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"] == []
    return iam.get_role_policy(RoleName=name, PolicyName=name)["PolicyDocument"]


def arn(service: str, resource: str) -> str:
    if service == "s3":
        return f"arn:aws:s3:::{resource}"
    return f"arn:aws:{service}:{REGION}:{ACCOUNT}:{resource}"


def parameter(env: str, tier: str, name: str) -> str:
    return arn("ssm", f"parameter/clinic/{env}/{tier}/{name}")


# --- Refused inputs ---------------------------------------------------------------------------


def test_refused_inputs_change_nothing(aws: dict[str, Any]) -> None:
    for case, (rc, output) in aws["refused"].items():
        assert rc != 0, f"{case}:\n{output}"
        assert recap(output)["changed"] == 0, f"{case}:\n{output}"
        assert "Create the roles" not in output, f"{case}:\n{output}"
    assert aws["empty_after_refusals"], "a refused run created roles or security groups"


def test_refusals_say_what_to_change(aws: dict[str, Any]) -> None:
    refused = {case: flat(output) for case, (_, output) in aws["refused"].items()}
    assert "clinic_env is not set: nothing was changed" in refused["no inventory"]
    assert "Not valid: 10.20.300.0/24, 10.99.20.0/24." in refused["malformed CIDR"]
    assert "inventories/stage/group_vars/all/network.yml" in refused["malformed CIDR"]
    assert "ports must be 1-65535 (got 3000, 27017, 70000)" in refused["bad SSH rule"]
    assert "not valid: 10.20.0.0/33" in refused["bad SSH rule"]
    vpc = aws["seeded"]["prod"]["vpc"]
    assert (
        f"VPC {vpc} is tagged Environment=prod but this run is for clinic_env=stage"
        in refused["VPC of prod"]
    )
    assert "The KMS key alias/clinic-none does not exist in ap-south-1" in refused["missing key"]


# --- Convergence ------------------------------------------------------------------------------


def test_a_first_run_creates_and_a_second_changes_nothing(aws: dict[str, Any]) -> None:
    first_rc, first = aws["runs"]["first"]
    assert first_rc == 0, first
    assert recap(first)["changed"] >= 4, first
    second_rc, second = aws["runs"]["second"]
    assert second_rc == 0, second
    assert recap(second)["changed"] == 0, second


def test_check_mode_before_the_first_run_changes_nothing(aws: dict[str, Any]) -> None:
    rc, output = aws["runs"]["check first"]
    assert rc == 0, output
    assert recap(output)["changed"] > 0, "--check does not report the roles it would create"
    assert aws["empty_after_check"], "a --check run created roles or security groups"


def test_check_mode_on_the_converged_state_is_clean(aws: dict[str, Any]) -> None:
    rc, output = aws["runs"]["check"]
    assert rc == 0, output
    assert recap(output)["changed"] == 0, output


def test_roles_are_for_ec2_and_have_their_instance_profiles(aws: dict[str, Any]) -> None:
    iam = aws_client(aws["env"], "iam")
    for env in ("stage", "prod"):
        for tier in ("app", "mongodb"):
            name = f"clinic-{env}-{tier}"
            role = iam.get_role(RoleName=name)["Role"]
            (statement,) = role["AssumeRolePolicyDocument"]["Statement"]
            assert statement["Principal"] == {"Service": "ec2.amazonaws.com"}
            assert statement["Action"] == "sts:AssumeRole"
            tags = {tag["Key"]: tag["Value"] for tag in role["Tags"]}
            assert tags == {"Project": "clinic", "Environment": env, "Role": tier}
            profile = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
            assert [r["RoleName"] for r in profile["Roles"]] == [name]


def ingress(aws: dict[str, Any], name: str) -> dict[tuple[str, int, int], set[str]]:
    ec2 = aws_client(aws["env"], "ec2")
    filters = [{"Name": "group-name", "Values": [name]}]
    (group,) = ec2.describe_security_groups(Filters=filters)["SecurityGroups"]
    env = name.split("-")[1]
    assert group["VpcId"] == aws["seeded"][env]["vpc"]
    return {
        (p["IpProtocol"], p["FromPort"], p["ToPort"]): {r["CidrIp"] for r in p["IpRanges"]}
        for p in group["IpPermissions"]
    }


def test_security_groups_open_only_what_the_host_firewalls_open(aws: dict[str, Any]) -> None:
    app_port = yaml.safe_load((ROOT / "roles/app_node/defaults/main.yml").read_text())[
        "app_node_port"
    ]
    assert ingress(aws, "clinic-stage-app") == {
        ("tcp", app_port, app_port): set(STAGE["clinic_alb_subnet_cidrs"]),
        ("tcp", 22, 22): set(STAGE["clinic_bastion_subnet_cidrs"]),
    }
    assert ingress(aws, "clinic-stage-mongodb") == {
        ("tcp", 27017, 27017): set(
            STAGE["clinic_app_subnet_cidrs"] + STAGE["clinic_db_subnet_cidrs"]
        ),
        ("tcp", 22, 22): set(STAGE["clinic_bastion_subnet_cidrs"]),
    }
    # prod is reached through Session Manager: no SSH at all.
    assert ingress(aws, "clinic-prod-app") == {
        ("tcp", app_port, app_port): set(PROD["clinic_alb_subnet_cidrs"]),
    }
    assert ingress(aws, "clinic-prod-mongodb") == {
        ("tcp", 27017, 27017): set(
            PROD["clinic_app_subnet_cidrs"] + PROD["clinic_db_subnet_cidrs"]
        ),
    }


def test_the_app_firewall_opens_app_node_port() -> None:
    defaults = yaml.safe_load((ROOT / "roles/app_node/defaults/main.yml").read_text())
    wiring = yaml.safe_load((ROOT / "group_vars/all/app.yml").read_text())
    (rule,) = yaml.safe_load((ROOT / "group_vars/role_app/firewall.yml").read_text())[
        "base_hardening_firewall_allow"
    ]
    assert rule["ports"] == ["{{ app_node_port }}"]
    assert wiring["app_node_port"] == defaults["app_node_port"]
    assert rule["sources"] == "{{ clinic_alb_subnet_cidrs }}"


def test_security_group_rules_filter() -> None:
    allow_list = [
        {"name": "mongodb", "ports": [27017], "sources": ["10.0.20.0/24", "10.0.30.0/24"]},
        {"name": "dns", "ports": ["53"], "proto": "udp", "sources": ["10.0.0.2/32"]},
        {"name": "ssh", "ports": [22], "sources": []},
    ]
    assert security_group_rules(allow_list) == [
        {
            "proto": "tcp",
            "ports": [27017],
            "cidr_ip": ["10.0.20.0/24", "10.0.30.0/24"],
            "rule_desc": "mongodb",
        },
        {"proto": "udp", "ports": [53], "cidr_ip": ["10.0.0.2/32"], "rule_desc": "dns"},
    ]


# --- What the policies allow --------------------------------------------------------------------


def test_session_manager_only_where_the_controller_uses_it(aws: dict[str, Any]) -> None:
    for tier in ("app", "mongodb"):
        stage_sids = {s["Sid"] for s in policy_of(aws, f"clinic-stage-{tier}")["Statement"]}
        prod_sids = {s["Sid"] for s in policy_of(aws, f"clinic-prod-{tier}")["Statement"]}
        assert prod_sids - stage_sids == {"SessionManager"}
        prod = [policy_of(aws, f"clinic-prod-{tier}")]
        assert allows(prod, "ssmmessages:OpenDataChannel", "*")
        assert not allows(
            [policy_of(aws, f"clinic-stage-{tier}")], "ssmmessages:OpenDataChannel", "*"
        )


def test_an_app_node_reads_its_own_parameters_only(aws: dict[str, Any]) -> None:
    app = [policy_of(aws, "clinic-stage-app")]
    assert allows(app, "ssm:GetParameter", parameter("stage", "app", "jwt_secret"))
    assert allows(app, "ssm:GetParametersByPath", arn("ssm", "parameter/clinic/stage/app"))
    assert not allows(app, "ssm:GetParameter", parameter("prod", "app", "jwt_secret"))
    assert not allows(app, "ssm:GetParametersByPath", arn("ssm", "parameter/clinic/prod/app"))
    assert not allows(app, "ssm:GetParameter", parameter("stage", "mongodb", "admin_password"))
    assert not allows(app, "ssm:GetParametersByPath", arn("ssm", "parameter/clinic/stage"))
    assert not allows(app, "ssm:PutParameter", parameter("stage", "app", "jwt_secret"))


def test_an_app_node_reads_artifacts_and_not_backups(aws: dict[str, Any]) -> None:
    app = [policy_of(aws, "clinic-stage-app")]
    artifacts, backups = STAGE["clinic_artifact_bucket"], STAGE["clinic_backup_bucket"]
    assert allows(app, "s3:GetObject", arn("s3", f"{artifacts}/releases/1.4.0/api.tar.gz"))
    assert not allows(app, "s3:GetObject", arn("s3", f"{artifacts}/other/api.tar.gz"))
    assert not allows(app, "s3:PutObject", arn("s3", f"{artifacts}/releases/1.4.0/api.tar.gz"))
    assert not allows(app, "s3:GetObject", arn("s3", f"{backups}/backups/stage/latest"))
    assert not allows(
        app, "s3:GetObject", arn("s3", f"{PROD['clinic_artifact_bucket']}/releases/x")
    )
    assert not allows(app, "s3:ListBucket", arn("s3", backups))


def test_an_app_node_uses_its_key_logs_and_namespace_only(aws: dict[str, Any]) -> None:
    app = [policy_of(aws, "clinic-stage-app")]
    stage_key, prod_key = aws["seeded"]["stage"]["key_arn"], aws["seeded"]["prod"]["key_arn"]
    via_ssm = {"kms:ViaService": f"ssm.{REGION}.amazonaws.com"}
    via_s3 = {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}
    assert allows(app, "kms:Decrypt", stage_key, via_ssm)
    assert allows(app, "kms:GenerateDataKey", stage_key, via_s3)
    assert not allows(app, "kms:Decrypt", stage_key)  # directly, not through SSM or S3
    assert not allows(app, "kms:Decrypt", stage_key, {"kms:ViaService": "ec2.amazonaws.com"})
    assert not allows(app, "kms:Decrypt", prod_key, via_ssm)
    assert not allows(app, "kms:ScheduleKeyDeletion", stage_key)
    stream = arn("logs", "log-group:/clinic/stage/app:log-stream:i-0abc")
    assert allows(app, "logs:PutLogEvents", stream)
    assert allows(app, "logs:CreateLogStream", arn("logs", "log-group:/clinic/stage/syslog"))
    assert not allows(app, "logs:PutLogEvents", stream.replace("/stage/", "/prod/"))
    assert not allows(app, "logs:PutLogEvents", stream.replace("/app:", "/mongodb:"))
    assert not allows(app, "logs:CreateLogGroup", arn("logs", "log-group:/clinic/stage/app"))
    assert allows(app, "cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "Clinic/EC2"})
    assert not allows(
        app, "cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "Clinic/Backup"}
    )
    assert not allows(app, "cloudwatch:PutMetricData", "*")


def test_a_mongodb_member_reads_no_secret(aws: dict[str, Any]) -> None:
    """The controller reads the keyFile and the passwords and writes what each host needs: a
    member that is broken into cannot read the admin password or the keyFile from SSM."""
    member = [policy_of(aws, "clinic-stage-mongodb")]
    for name in ("keyfile", "admin_password", "backup_password"):
        assert not allows(member, "ssm:GetParameter", parameter("stage", "mongodb", name))
    assert not allows(member, "ssm:GetParametersByPath", arn("ssm", "parameter/clinic/stage"))
    assert not allows(member, "ssm:GetParameter", parameter("stage", "app", "jwt_secret"))
    via_ssm = {"kms:ViaService": f"ssm.{REGION}.amazonaws.com"}
    assert not allows(member, "kms:Decrypt", aws["seeded"]["stage"]["key_arn"], via_ssm)


def test_a_mongodb_member_puts_kms_encrypted_backups_under_its_prefix(aws: dict[str, Any]) -> None:
    member = [policy_of(aws, "clinic-stage-mongodb")]
    key_arn = aws["seeded"]["stage"]["key_arn"]
    dump = arn(
        "s3", f"{STAGE['clinic_backup_bucket']}/backups/stage/20261126T020000Z/dump.archive.gz"
    )
    audit = arn("s3", f"{STAGE['clinic_audit_archive_bucket']}/audit/stage/2026-11-25.jsonl.gz")
    sse = "s3:x-amz-server-side-encryption"
    with_alias = {sse: "aws:kms", f"{sse}-aws-kms-key-id": "alias/clinic-stage"}
    assert allows(member, "s3:PutObject", dump, with_alias)
    assert allows(member, "s3:PutObject", audit, {sse: "aws:kms", f"{sse}-aws-kms-key-id": key_arn})
    assert allows(member, "s3:PutObject", dump)  # a multipart part carries no encryption header
    assert not allows(member, "s3:PutObject", dump, {sse: "AES256"})
    assert not allows(member, "s3:PutObject", dump, {sse: "aws:kms"})  # would use aws/s3
    other_key = {sse: "aws:kms", f"{sse}-aws-kms-key-id": aws["seeded"]["prod"]["key_arn"]}
    assert not allows(member, "s3:PutObject", dump, other_key)
    assert not allows(
        member, "s3:PutObject", dump.replace("/backups/stage/", "/backups/prod/"), with_alias
    )
    assert not allows(member, "s3:PutObject", dump.replace("/backups/", "/other/"), with_alias)
    assert allows(member, "s3:GetObject", dump)
    assert not allows(member, "s3:GetObject", audit)
    assert not allows(member, "s3:DeleteObject", dump)
    via_s3 = {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}
    assert allows(member, "kms:GenerateDataKey", key_arn, via_s3)
    assert not allows(member, "kms:GenerateDataKey", key_arn)  # directly, not through S3
    assert not allows(member, "kms:Decrypt", aws["seeded"]["prod"]["key_arn"], via_s3)


def test_a_mongodb_member_cannot_overwrite_a_backup_or_an_audit_export(aws: dict[str, Any]) -> None:
    """A put of a backup's objects or of an audit export must carry If-None-Match, so S3 refuses
    one over an existing key (oplog slices too); the parts of a multipart upload carry no
    condition and stay allowed, and only the two pointers may be rewritten."""
    member = [policy_of(aws, "clinic-stage-mongodb")]
    key_arn = aws["seeded"]["stage"]["key_arn"]
    sse = "s3:x-amz-server-side-encryption"
    encrypted = {sse: "aws:kms", f"{sse}-aws-kms-key-id": key_arn}
    creates = {**encrypted, "s3:ObjectCreationOperation": "true"}
    backup = f"{STAGE['clinic_backup_bucket']}/backups/stage"
    write_once = [
        arn("s3", f"{backup}/20261126T020000Z/dump.archive.gz"),
        arn("s3", f"{backup}/20261126T020000Z/manifest.json"),
        arn("s3", f"{STAGE['clinic_audit_archive_bucket']}/audit/stage/2026-11-25.jsonl.gz"),
        arn("s3", f"{backup}/oplog/1796584281.1-1796585181.7.bson.gz"),
        arn("s3", f"{backup}/oplog/1796584281.1-1796585181.7.json"),
    ]
    for resource in write_once:
        assert not allows(member, "s3:PutObject", resource, creates), resource
        assert allows(member, "s3:PutObject", resource, {**creates, "s3:if-none-match": "*"})
        part = {"s3:ObjectCreationOperation": "false"}
        assert allows(member, "s3:PutObject", resource, part), resource
    for pointer in (arn("s3", f"{backup}/latest"), arn("s3", f"{backup}/oplog-latest")):
        assert allows(member, "s3:PutObject", pointer, creates)
    assert allows(member, "s3:PutObjectLegalHold", write_once[0])
    assert not allows(member, "s3:PutObjectLegalHold", write_once[2])  # the audit bucket
    assert not allows(member, "s3:PutObjectRetention", write_once[0])
    assert not allows(member, "s3:BypassGovernanceRetention", write_once[0])


def test_a_mongodb_member_puts_backup_and_host_metrics(aws: dict[str, Any]) -> None:
    member = [policy_of(aws, "clinic-stage-mongodb")]
    for namespace in ("Clinic/Backup", "Clinic/EC2"):
        assert allows(member, "cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": namespace})
    assert not allows(
        member, "cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "Clinic/App"}
    )
    assert allows(
        member, "logs:PutLogEvents", arn("logs", "log-group:/clinic/stage/mongodb:log-stream:i")
    )
    assert not allows(
        member, "logs:PutLogEvents", arn("logs", "log-group:/clinic/stage/app:log-stream:i")
    )


# --- moto enforcing the app role on S3 --------------------------------------------------------


def s3_get(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.get_object(Bucket=bucket, Key=key)
    except ClientError as error:
        assert error.response["Error"]["Code"] == "AccessDenied", error
        return False
    return True


def test_moto_enforces_the_app_role_on_s3(aws: dict[str, Any]) -> None:
    env = aws["env"]
    role = f"arn:aws:iam::{ACCOUNT}:role/clinic-stage-app"
    credentials = aws_client(env, "sts").assume_role(RoleArn=role, RoleSessionName="i-0test")[
        "Credentials"
    ]
    s3 = aws_client(
        env,
        "s3",
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )
    requests_made = [
        (STAGE["clinic_artifact_bucket"], "releases/1.4.0/api.tar.gz"),
        (STAGE["clinic_artifact_bucket"], "backups/stage/latest"),
        (STAGE["clinic_backup_bucket"], "backups/stage/latest"),
        (STAGE["clinic_backup_bucket"], "releases/1.4.0/api.tar.gz"),
        (PROD["clinic_artifact_bucket"], "releases/1.4.0/api.tar.gz"),
        (PROD["clinic_backup_bucket"], "backups/prod/latest"),
    ]
    reset = f"{env['AWS_ENDPOINT_URL']}/moto-api/reset-auth"
    requests.post(reset, data=b"0", timeout=10).raise_for_status()
    try:
        decided = {(bucket, key): s3_get(s3, bucket, key) for bucket, key in requests_made}
    finally:
        requests.post(reset, data=b"inf", timeout=10).raise_for_status()
    assert decided == {
        (STAGE["clinic_artifact_bucket"], "releases/1.4.0/api.tar.gz"): True,
        (STAGE["clinic_artifact_bucket"], "backups/stage/latest"): False,
        (STAGE["clinic_backup_bucket"], "backups/stage/latest"): False,
        (STAGE["clinic_backup_bucket"], "releases/1.4.0/api.tar.gz"): False,
        (PROD["clinic_artifact_bucket"], "releases/1.4.0/api.tar.gz"): False,
        (PROD["clinic_backup_bucket"], "backups/prod/latest"): False,
    }
    app = [policy_of(aws, "clinic-stage-app")]
    for (bucket, key), allowed in decided.items():
        assert allows(app, "s3:GetObject", arn("s3", f"{bucket}/{key}")) is allowed, (bucket, key)


def test_each_secret_is_granted_to_the_tier_its_path_names(aws: dict[str, Any]) -> None:
    # The grants and the list of secrets (group_vars/all/secrets.yml) agree: a secret under app/ is
    # the API nodes'; one under mongodb/ is read by the controller only, no host tier.
    wiring = yaml.safe_load((ROOT / "group_vars" / "all" / "secrets.yml").read_text())
    tiers = {"app": "clinic-stage-app", "mongodb": "clinic-stage-mongodb"}
    for name, secret in wiring["clinic_secrets"].items():
        owner, _, rest = secret["path"].partition("/")
        assert owner in tiers, f"{name}: no host tier reads {secret['path']}"
        for tier, role in tiers.items():
            granted = allows(
                [policy_of(aws, role)], "ssm:GetParameter", parameter("stage", owner, rest)
            )
            assert granted == (tier == owner == "app"), f"{name} for {role}"
