"""The lab's AWS side, in moto: network, instances for the containers, secrets, key, buckets.

Every step finds what exists first and creates only what is missing, so a second `make lab`
reuses the instances (same ids, same inventory host names) and never changes a secret. Secret
values live in lab/.state/secrets as well as in moto: moto keeps its data in memory only, and a
restarted moto must give the hosts the keyFile and passwords they already use.
"""

from __future__ import annotations

import json
import secrets
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from lab.settings import ENVIRONMENT, REGION, Host, Lab, Secret
from tests.fixtures.sample_api import build as sample_api

PROJECT = "clinic"
NAME = f"{PROJECT}-{ENVIRONMENT}"
# The API's releases in the artifact bucket (group_vars/all/app.yml), each with its checksum file as
# a build pipeline publishes it, and the release the environment starts from.
APP_NAME = "clinic-api"
FIRST_RELEASE = "1.0.0"
RELEASE_PARAMETER = f"/clinic/{ENVIRONMENT}/app/release"
# Letters and digits only: valid in a MongoDB keyFile (base64 characters) and in any password.
ALPHABET = string.ascii_letters + string.digits


@dataclass
class Seeded:
    """What seed() found or made; `created` lists what this run had to create."""

    instances: dict[str, str] = field(default_factory=dict)  # container -> instance id
    kms_key_id: str = ""
    buckets: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)


def client(service: str, endpoint: str) -> Any:
    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def tags(**extra: str) -> list[dict[str, str]]:
    values = {"Project": PROJECT, "Environment": ENVIRONMENT, **extra}
    return [{"Key": k, "Value": v} for k, v in values.items()]


def ensure_network(ec2: Any, cidr: str, done: Seeded) -> str:
    """The VPC and its one subnet, both the docker network's range; returns the subnet id."""
    filters = [{"Name": "tag:Name", "Values": [NAME]}, {"Name": "cidr-block", "Values": [cidr]}]
    vpcs = ec2.describe_vpcs(Filters=filters)["Vpcs"]
    if vpcs:
        vpc_id = vpcs[0]["VpcId"]
    else:
        vpc_id = ec2.create_vpc(
            CidrBlock=cidr,
            TagSpecifications=[{"ResourceType": "vpc", "Tags": tags(Name=NAME)}],
        )["Vpc"]["VpcId"]
        done.created.append(f"vpc {vpc_id}")
    subnets = ec2.describe_subnets(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "cidr-block", "Values": [cidr]}]
    )["Subnets"]
    if subnets:
        return subnets[0]["SubnetId"]
    subnet_id = ec2.create_subnet(
        VpcId=vpc_id,
        CidrBlock=cidr,
        AvailabilityZone=f"{REGION}a",
        TagSpecifications=[{"ResourceType": "subnet", "Tags": tags(Name=NAME)}],
    )["Subnet"]["SubnetId"]
    done.created.append(f"subnet {subnet_id}")
    return subnet_id


def running_instances(ec2: Any) -> list[dict[str, Any]]:
    filters = [
        {"Name": "tag:Project", "Values": [PROJECT]},
        {"Name": "tag:Environment", "Values": [ENVIRONMENT]},
        {"Name": "instance-state-name", "Values": ["pending", "running"]},
    ]
    pages = ec2.get_paginator("describe_instances").paginate(Filters=filters)
    return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]


def host_tags(host: Host) -> dict[str, str]:
    """The tags of a host's instance: the project's, its Role and Name, and its lab_tags."""
    return {t["Key"]: t["Value"] for t in tags(Role=host.role, Name=host.name_tag, **host.tags)}


def retag(
    ec2: Any, instance_id: str, have: dict[str, str], want: dict[str, str], done: Seeded
) -> None:
    """Make an instance's tags exactly `want`."""
    stale = [{"Key": k} for k in have if k not in want]
    if stale:
        ec2.delete_tags(Resources=[instance_id], Tags=stale)
    missing = {k: v for k, v in want.items() if have.get(k) != v}
    if missing:
        ec2.create_tags(
            Resources=[instance_id], Tags=[{"Key": k, "Value": v} for k, v in missing.items()]
        )
    if stale or missing:
        done.created.append(f"retagged {instance_id} ({want['Name']})")


def ensure_instances(ec2: Any, hosts: list[Host], subnet_id: str, done: Seeded) -> None:
    """One running instance per host, tagged as a real one, its private address the container's.

    An instance whose Name tag no longer matches a host, or whose address or Role changed, is
    terminated; one whose other tags changed is retagged. So the inventory always equals
    lab/platforms.yml.
    """
    wanted = {host.name_tag: host for host in hosts}
    image_id = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    for instance in running_instances(ec2):
        tag = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
        host = wanted.pop(tag.get("Name", ""), None)
        if (
            host
            and instance.get("PrivateIpAddress") == host.address
            and tag.get("Role") == host.role
        ):
            instance_id = instance["InstanceId"]
            done.instances[host.container] = instance_id
            retag(ec2, instance_id, tag, host_tags(host), done)
            continue
        ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])
        done.created.append(f"terminated {instance['InstanceId']} ({tag.get('Name', 'no name')})")
        if host:
            wanted[host.name_tag] = host
    for host in wanted.values():
        reply = ec2.run_instances(
            ImageId=image_id,
            InstanceType="t3.small",
            MinCount=1,
            MaxCount=1,
            SubnetId=subnet_id,
            PrivateIpAddress=host.address,
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [{"Key": k, "Value": v} for k, v in host_tags(host).items()],
                }
            ],
        )
        instance_id = reply["Instances"][0]["InstanceId"]
        done.instances[host.container] = instance_id
        done.created.append(f"instance {instance_id} ({host.name_tag}, {host.address})")


def secret_value(secret: Secret, state_dir: Path) -> str:
    """The secret's value, generated once into lab/.state/secrets (0600) and kept from then on."""
    path = state_dir / "secrets" / secret.name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        value = "".join(secrets.choice(ALPHABET) for _ in range(secret.length))
        path.touch(mode=0o600)
        path.write_text(value)
    return path.read_text()


def ensure_secrets(ssm: Any, wanted: list[Secret], state_dir: Path, done: Seeded) -> None:
    """SecureStrings under /clinic/lab/; a parameter that exists keeps its value."""
    for secret in wanted:
        value = secret_value(secret, state_dir)
        try:
            ssm.put_parameter(
                Name=secret.parameter, Value=value, Type="SecureString", Overwrite=False
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ParameterAlreadyExists":
                raise
            continue
        done.created.append(f"parameter {secret.parameter}")


def ensure_kms_key(kms: Any, alias: str, done: Seeded) -> str:
    for existing in kms.list_aliases()["Aliases"]:
        if existing["AliasName"] == alias and existing.get("TargetKeyId"):
            return existing["TargetKeyId"]
    key_id = kms.create_key(
        Description=f"{NAME}: buckets and secrets of the lab",
        Tags=[{"TagKey": t["Key"], "TagValue": t["Value"]} for t in tags(Name=NAME)],
    )["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    done.created.append(f"kms key {key_id} ({alias})")
    return key_id


def ensure_buckets(s3: Any, names: list[str], locked: set[str], key_id: str, done: Seeded) -> None:
    """The environment's buckets, encrypted by default with its KMS key; those in `locked` with
    Object Lock (and so versioning), as backup_storage creates the backup and audit buckets."""
    existing = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    for name in names:
        if name in existing:
            continue
        s3.create_bucket(
            Bucket=name,
            CreateBucketConfiguration={"LocationConstraint": REGION},
            ObjectLockEnabledForBucket=name in locked,
        )
        s3.put_bucket_encryption(
            Bucket=name,
            ServerSideEncryptionConfiguration={
                "Rules": [
                    {
                        "ApplyServerSideEncryptionByDefault": {
                            "SSEAlgorithm": "aws:kms",
                            "KMSMasterKeyID": key_id,
                        },
                        "BucketKeyEnabled": True,
                    }
                ]
            },
        )
        s3.put_public_access_block(
            Bucket=name,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )
        done.created.append(f"bucket {name}")


def release_key(version: str) -> str:
    return f"releases/{APP_NAME}-{version}.tar.gz"


def ensure_releases(s3: Any, ssm: Any, bucket: str, state_dir: Path, done: Seeded) -> None:
    """The sample API's releases (tests/fixtures/sample_api) as the API's artifacts, and
    FIRST_RELEASE recorded as the live release unless a deploy has recorded another."""
    artifacts = sample_api.build(state_dir / "artifacts")
    present = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}
    checksums = {}
    for version, path in artifacts.items():
        checksum_file = path.with_name(path.name + ".sha256")
        checksums[version] = checksum_file.read_text().split()[0]
        for key, source in (
            (release_key(version), path),
            (release_key(version) + ".sha256", checksum_file),
        ):
            if key not in present:
                s3.put_object(Bucket=bucket, Key=key, Body=source.read_bytes())
                done.created.append(f"object s3://{bucket}/{key}")
    try:
        ssm.put_parameter(
            Name=RELEASE_PARAMETER,
            Value=json.dumps({"version": FIRST_RELEASE, "sha256": checksums[FIRST_RELEASE]}),
            Type="String",
            Overwrite=False,
        )
    except ClientError as error:
        if error.response["Error"]["Code"] != "ParameterAlreadyExists":
            raise
        return
    done.created.append(f"parameter {RELEASE_PARAMETER} ({FIRST_RELEASE})")


def release_checksum(lab: Lab, bucket: str, version: str) -> str | None:
    """The sha256 published beside a release's artifact, or None when there is no such release."""
    try:
        body = client("s3", lab.endpoint).get_object(
            Bucket=bucket, Key=release_key(version) + ".sha256"
        )
    except ClientError:
        return None
    return body["Body"].read().decode().split()[0]


def bucket_names(storage: dict[str, Any]) -> list[str]:
    """The environment's buckets the lab makes: all but Session Manager's transfer bucket, which
    the lab has no use for (it reaches its containers directly)."""
    return sorted(
        v for k, v in storage.items() if k.endswith("_bucket") and k != "clinic_ssm_transfer_bucket"
    )


def seed(lab: Lab, storage: dict[str, Any], state_dir: Path) -> Seeded:
    """Make moto hold the lab's AWS side; storage holds its names (lab.settings.storage)."""
    done = Seeded()
    ec2 = client("ec2", lab.endpoint)
    subnet_id = ensure_network(ec2, lab.subnet, done)
    ensure_instances(ec2, lab.hosts, subnet_id, done)
    ensure_secrets(client("ssm", lab.endpoint), lab.secrets, state_dir, done)
    done.kms_key_id = ensure_kms_key(
        client("kms", lab.endpoint), storage["clinic_kms_key_alias"], done
    )
    done.buckets = bucket_names(storage)
    locked = {storage["clinic_backup_bucket"], storage["clinic_audit_archive_bucket"]}
    ensure_buckets(client("s3", lab.endpoint), done.buckets, locked, done.kms_key_id, done)
    ensure_releases(
        client("s3", lab.endpoint),
        client("ssm", lab.endpoint),
        storage["clinic_artifact_bucket"],
        state_dir,
        done,
    )
    return done


def read_secret(lab: Lab, name: str) -> str:
    """A secret as the hosts' wiring reads it: decrypted from moto's SSM."""
    ssm = client("ssm", lab.endpoint)
    parameter = f"/clinic/{ENVIRONMENT}/{name}"
    return ssm.get_parameter(Name=parameter, WithDecryption=True)["Parameter"]["Value"]
