"""The aws_ec2 inventories against EC2 served by moto: each environment sees exactly its hosts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.harness.moto_ec2 import (
    REGION,
    clinic_tags,
    ec2_client,
    inventory_file,
    launch,
    list_inventory,
    moto_environment,
)

ENVIRONMENTS = ("dev", "stage", "prod")


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
    with moto_environment() as env:
        yield env


# label(s) -> tags; several labels launched together share their tags, like an auto scaling group.
FLEET: list[tuple[tuple[str, ...], dict[str, str]]] = [
    (("stage_app_1", "stage_app_2"), clinic_tags("stage", "app")),
    (("stage_mongodb",), clinic_tags("stage", "mongodb")),
    (("stage_mongodb_hidden",), {**clinic_tags("stage", "mongodb"), "MongoDBMember": "hidden"}),
    (("stage_no_role",), {"Project": "clinic", "Environment": "stage", "Name": "stray"}),
    (("stage_no_name",), {"Project": "clinic", "Environment": "stage", "Role": "worker"}),
    (("stage_stopped",), clinic_tags("stage", "app")),
    (("dev_app",), clinic_tags("dev", "app")),
    (("prod_app",), clinic_tags("prod", "app")),
    (("prod_mongodb",), clinic_tags("prod", "mongodb")),
    (("no_environment",), {"Project": "clinic", "Role": "app", "Name": "clinic-app"}),
    (("other_project",), {**clinic_tags("stage", "app"), "Project": "billing"}),
]


@pytest.fixture(scope="module")
def ec2(aws_env: dict[str, str]) -> Any:
    return ec2_client(aws_env)


@pytest.fixture(scope="module")
def fleet(ec2: Any) -> dict[str, str]:
    """Seed EC2 with FLEET and return instance ids by label."""
    ids: dict[str, str] = {}
    for labels, tags in FLEET:
        ids.update(zip(labels, launch(ec2, tags, len(labels)), strict=True))
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
    return {env: list_inventory(env, aws_env, timeout=120)[1] for env in ENVIRONMENTS}


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
    stage = {
        "stage_app_1",
        "stage_app_2",
        "stage_mongodb",
        "stage_mongodb_hidden",
        "stage_no_role",
        "stage_no_name",
    }
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
    assert group_ids(stage, "role_mongodb") == {
        fleet["stage_mongodb"],
        fleet["stage_mongodb_hidden"],
    }
    assert group_ids(stage, "role_worker") == {fleet["stage_no_name"]}
    assert group_ids(prod, "role_app") == {fleet["prod_app"]}
    assert group_ids(prod, "role_mongodb") == {fleet["prod_mongodb"]}
    assert group_ids(stage, "env_stage") == ids_of(stage)
    assert group_ids(prod, "env_prod") == ids_of(prod)


def test_the_member_tagged_hidden_is_the_only_one_in_mongodb_hidden(
    inventories: dict[str, dict[str, Any]], fleet: dict[str, str]
) -> None:
    # group_vars/mongodb_hidden/ makes that member hidden with priority 0: the backup member.
    assert group_ids(inventories["stage"], "mongodb_hidden") == {fleet["stage_mongodb_hidden"]}
    assert "mongodb_hidden" not in inventories["prod"]
    assert "mongodb_hidden" not in inventories["dev"]


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
    assert checked == 9


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
