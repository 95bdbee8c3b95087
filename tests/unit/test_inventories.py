"""The aws_ec2 inventories against EC2 served by moto: each environment sees exactly its hosts."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from moto.server import ThreadedMotoServer

ROOT = Path(__file__).resolve().parents[2]
ENVIRONMENTS = ("dev", "stage", "prod")
REGION = "ap-south-1"
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_REGION": REGION,
    "AWS_DEFAULT_REGION": REGION,
}
INVENTORY_TIMEOUT_S = 120


def inventory_file(env: str) -> Path:
    return ROOT / "inventories" / env / f"{env}.aws_ec2.yml"


# --- The inventory files themselves (no AWS needed) -------------------------------------------


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_inventory_file_follows_the_contract(env: str) -> None:
    config = yaml.safe_load(inventory_file(env).read_text())
    assert config["plugin"] == "amazon.aws.aws_ec2"
    assert config["regions"] == [REGION]
    assert config["strict"] is True
    assert config["filters"] == {
        "tag:Project": "clinic",
        "tag:Environment": env,
        "instance-state-name": "running",
    }
    assert config["hostvars_prefix"] == "ec2_"
    assert config["compose"]["ansible_host"] == "ec2_private_ip_address"
    assert not {"endpoint_url", "aws_access_key", "aws_secret_key"} & set(config)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_tag_lookup_has_a_default(env: str) -> None:
    config = yaml.safe_load(inventory_file(env).read_text())
    expressions = [group["key"] for group in config["keyed_groups"]]
    expressions += list(config["compose"].values())
    assert any("ec2_tags.Role" in e for e in expressions)
    for expression in expressions:
        if "ec2_tags" in expression:
            assert "| default(" in expression, expression


# --- Against moto --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def aws_env() -> Iterator[dict[str, str]]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request lines
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        **os.environ,
        **FAKE_CREDENTIALS,
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        # An inventory the plugin cannot parse is otherwise only a warning (and an empty list).
        "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        env.pop(name, None)
    try:
        yield env
    finally:
        server.stop()


def _tags(tags: dict[str, str]) -> list[dict[str, Any]]:
    return [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]


def _clinic(env: str, role: str) -> dict[str, str]:
    return {"Project": "clinic", "Environment": env, "Role": role, "Name": f"clinic-{env}-{role}"}


# label(s) -> tags; several labels launched together share their tags, like an auto scaling group.
FLEET: list[tuple[tuple[str, ...], dict[str, str]]] = [
    (("stage_app_1", "stage_app_2"), _clinic("stage", "app")),
    (("stage_mongodb",), _clinic("stage", "mongodb")),
    (("stage_no_role",), {"Project": "clinic", "Environment": "stage", "Name": "stray"}),
    (("stage_no_name",), {"Project": "clinic", "Environment": "stage", "Role": "worker"}),
    (("stage_stopped",), _clinic("stage", "app")),
    (("dev_app",), _clinic("dev", "app")),
    (("prod_app",), _clinic("prod", "app")),
    (("prod_mongodb",), _clinic("prod", "mongodb")),
    (("no_environment",), {"Project": "clinic", "Role": "app", "Name": "clinic-app"}),
    (("other_project",), {**_clinic("stage", "app"), "Project": "billing"}),
]


@pytest.fixture(scope="module")
def ec2(aws_env: dict[str, str]) -> Any:
    return boto3.client(
        "ec2",
        region_name=REGION,
        endpoint_url=aws_env["AWS_ENDPOINT_URL"],
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


@pytest.fixture(scope="module")
def fleet(ec2: Any) -> dict[str, str]:
    """Seed EC2 with FLEET and return instance ids by label."""
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ids: dict[str, str] = {}
    for labels, tags in FLEET:
        reply = ec2.run_instances(
            ImageId=image,
            InstanceType="t3.small",
            MinCount=len(labels),
            MaxCount=len(labels),
            TagSpecifications=_tags(tags),
        )
        ids.update(zip(labels, (i["InstanceId"] for i in reply["Instances"]), strict=True))
    ec2.stop_instances(InstanceIds=[ids["stage_stopped"]])
    return ids


@pytest.fixture(scope="module")
def private_ips(ec2: Any, fleet: dict[str, str]) -> dict[str, str]:
    reservations = ec2.describe_instances(InstanceIds=list(fleet.values()))["Reservations"]
    return {i["InstanceId"]: i["PrivateIpAddress"] for r in reservations for i in r["Instances"]}


@pytest.fixture(scope="module")
def inventories(aws_env: dict[str, str], fleet: dict[str, str]) -> dict[str, dict[str, Any]]:
    """`ansible-inventory --list` of every environment, run once and shared by the tests."""
    assert fleet
    listed = {}
    for env in ENVIRONMENTS:
        result = subprocess.run(
            ["ansible-inventory", "-i", str(inventory_file(env)), "--list"],
            cwd=ROOT,
            env=aws_env,
            capture_output=True,
            text=True,
            timeout=INVENTORY_TIMEOUT_S,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        listed[env] = json.loads(result.stdout, object_hook=_unwrap_unsafe)
    return listed


def _unwrap_unsafe(value: dict[str, Any]) -> Any:
    """ansible-inventory marks values from the plugin as {"__ansible_unsafe": value}."""
    return value["__ansible_unsafe"] if set(value) == {"__ansible_unsafe"} else value


def hostvars(inventory: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return inventory["_meta"]["hostvars"]


def ids_of(inventory: dict[str, Any], hosts: list[str] | None = None) -> set[str]:
    chosen = hostvars(inventory) if hosts is None else hosts
    return {hostvars(inventory)[h]["ec2_instance_id"] for h in chosen}


def group_ids(inventory: dict[str, Any], group: str) -> set[str]:
    return ids_of(inventory, inventory.get(group, {}).get("hosts", []))


def test_each_environment_holds_exactly_its_running_instances(
    inventories: dict[str, dict[str, Any]], fleet: dict[str, str]
) -> None:
    stage = {"stage_app_1", "stage_app_2", "stage_mongodb", "stage_no_role", "stage_no_name"}
    assert ids_of(inventories["stage"]) == {fleet[k] for k in stage}
    assert ids_of(inventories["prod"]) == {fleet["prod_app"], fleet["prod_mongodb"]}
    assert ids_of(inventories["dev"]) == {fleet["dev_app"]}


def test_stopped_other_environment_and_other_project_instances_are_absent(
    inventories: dict[str, dict[str, Any]], fleet: dict[str, str]
) -> None:
    everywhere = set().union(*(ids_of(inv) for inv in inventories.values()))
    for label in ("stage_stopped", "no_environment", "other_project"):
        assert fleet[label] not in everywhere, label


def test_members_of_one_auto_scaling_group_are_distinct_hosts(
    inventories: dict[str, dict[str, Any]], fleet: dict[str, str]
) -> None:
    names = {v["ec2_instance_id"]: h for h, v in hostvars(inventories["stage"]).items()}
    first, second = names[fleet["stage_app_1"]], names[fleet["stage_app_2"]]
    assert first != second
    assert first == f"{fleet['stage_app_1']}-clinic-stage-app"
    assert names[fleet["stage_no_name"]] == fleet["stage_no_name"]


def test_role_groups_hold_the_right_hosts(
    inventories: dict[str, dict[str, Any]], fleet: dict[str, str]
) -> None:
    stage, prod = inventories["stage"], inventories["prod"]
    assert group_ids(stage, "role_app") == {fleet["stage_app_1"], fleet["stage_app_2"]}
    assert group_ids(stage, "role_mongodb") == {fleet["stage_mongodb"]}
    assert group_ids(stage, "role_worker") == {fleet["stage_no_name"]}
    assert group_ids(prod, "role_app") == {fleet["prod_app"]}
    assert group_ids(prod, "role_mongodb") == {fleet["prod_mongodb"]}
    assert group_ids(stage, "env_stage") == ids_of(stage)
    assert group_ids(prod, "env_prod") == ids_of(prod)


def test_an_instance_without_a_role_tag_is_in_no_role_group(
    inventories: dict[str, dict[str, Any]], fleet: dict[str, str]
) -> None:
    stage = inventories["stage"]
    role_groups = [g for g in stage if g.startswith("role_")]
    assert role_groups
    for group in role_groups:
        assert fleet["stage_no_role"] not in group_ids(stage, group), group
    assert fleet["stage_no_role"] in group_ids(stage, "env_stage")


def test_ansible_host_is_the_private_address(
    inventories: dict[str, dict[str, Any]], private_ips: dict[str, str]
) -> None:
    checked = 0
    for inventory in inventories.values():
        for variables in hostvars(inventory).values():
            assert variables["ansible_host"] == private_ips[variables["ec2_instance_id"]]
            checked += 1
    assert checked == 8


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_clinic_env_comes_from_the_environments_group_vars(
    inventories: dict[str, dict[str, Any]], env: str
) -> None:
    variables = hostvars(inventories[env])
    assert variables
    assert {v["clinic_env"] for v in variables.values()} == {env}
    assert {v["ec2_tags"]["Environment"] for v in variables.values()} == {env}


def test_prod_connects_through_session_manager_and_the_others_through_the_bastion(
    inventories: dict[str, dict[str, Any]],
) -> None:
    prod = next(iter(hostvars(inventories["prod"]).values()))
    assert prod["clinic_connection"] == "ssm"
    assert "amazon.aws.aws_ssm" in prod["ansible_connection"]
    assert prod["ansible_aws_ssm_instance_id"] == "{{ ec2_instance_id }}"
    stage = next(iter(hostvars(inventories["stage"]).values()))
    assert "ansible_connection" not in stage
    assert "ProxyJump={{ clinic_bastion_host }}" in stage["ansible_ssh_common_args"]
