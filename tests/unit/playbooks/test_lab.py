"""`make lab` without containers: its settings agree with each other, and the lab inventory finds
the hosts that lab/aws.py registers in moto, the way `make lab` registers them."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab import aws, settings
from tests.harness import apt_repo
from tests.harness.moto_ec2 import inventory_file, list_inventory, moto_environment

ROOT = Path(__file__).resolve().parents[3]
LAB = settings.load()


def networks(cidrs: list[str]) -> list[ipaddress.IPv4Network]:
    return [ipaddress.ip_network(cidr) for cidr in cidrs]


def inside(address: str, cidrs: list[str]) -> bool:
    return any(ipaddress.ip_address(address) in network for network in networks(cidrs))


def test_lab_inventory_follows_the_contract() -> None:
    config = yaml.safe_load(inventory_file("lab").read_text())
    stage = yaml.safe_load(inventory_file("stage").read_text())
    assert config["filters"]["tag:Environment"] == "lab"
    stage["filters"]["tag:Environment"] = "lab"
    assert config == stage, "the lab inventory differs from the others only by its environment"


def test_each_tier_sits_in_its_subnets() -> None:
    network = settings.group_vars("network")
    vpc = ipaddress.ip_network(network["clinic_vpc_cidr"])
    assert vpc == ipaddress.ip_network(LAB.subnet)
    tiers = {
        "app": network["clinic_app_subnet_cidrs"],
        "mongodb": network["clinic_db_subnet_cidrs"],
        "lb": network["clinic_alb_subnet_cidrs"],
    }
    for host in LAB.hosts:
        assert inside(host.address, tiers[host.role]), host
        for role, cidrs in tiers.items():
            assert role == host.role or not inside(host.address, cidrs), (host, role)
    assert inside(LAB.gateway, network["clinic_bastion_subnet_cidrs"])
    assert inside(LAB.apt_repo_address, network["clinic_bastion_subnet_cidrs"])
    all_ranges = [c for key, value in network.items() if key.endswith("_cidrs") for c in value]
    assert all(network.subnet_of(vpc) for network in networks(all_ranges))


def test_only_the_controller_reaches_ssh_and_the_load_balancer() -> None:
    access = settings.group_vars("access")
    controller = [f"{LAB.gateway}/32"]
    assert access["base_hardening_ssh_allowed_cidrs"] == controller
    assert settings.group_vars("network")["clinic_lb_client_cidrs"] == controller
    (user,) = access["base_hardening_users"]
    assert user["name"] == LAB.deploy_user
    # The lockout guard asks the host who Ansible logs in as: the lab exercises that path.
    assert "base_hardening_connection_user" not in access
    assert settings.group_vars("connection")["ansible_user"] == LAB.deploy_user
    assert "ProxyJump" not in str(settings.group_vars("connection"))


def test_mongodb_comes_from_the_lab_apt_repository() -> None:
    path = settings.INVENTORY_DIR / "group_vars" / "role_mongodb" / "mongodb.yml"
    inputs = yaml.safe_load(path.read_text())
    assert inputs["mongodb_replicaset_repo_url"] == f"http://{LAB.apt_repo_address}"
    assert inputs["mongodb_replicaset_repo_key_url"].startswith(
        inputs["mongodb_replicaset_repo_url"]
    )


def test_the_cloudwatch_agent_comes_from_the_lab_apt_repository() -> None:
    inputs = settings.group_vars("cloudwatch")
    assert inputs["cloudwatch_agent_install_method"] == "apt"
    assert inputs["cloudwatch_agent_version"] == apt_repo.CLOUDWATCH_AGENT_VERSION
    # The repository container by name (services.yml names it <scenario>-apt): the MongoDB members
    # name it by address, and apt refuses one source URI with two keyrings (each role has its own).
    assert inputs["cloudwatch_agent_repo_url"] == "http://lab-apt"
    mongodb = yaml.safe_load(
        (settings.INVENTORY_DIR / "group_vars" / "role_mongodb" / "mongodb.yml").read_text()
    )
    assert mongodb["mongodb_replicaset_repo_url"] != inputs["cloudwatch_agent_repo_url"]
    assert inputs["cloudwatch_agent_repo_key_url"].startswith(inputs["cloudwatch_agent_repo_url"])


# --- Against moto --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    state_dir = tmp_path_factory.mktemp("lab-state")
    with moto_environment() as env:
        address, port = env["AWS_ENDPOINT_URL"].removeprefix("http://").rsplit(":", 1)
        lab = replace(LAB, moto_address=address, moto_port=int(port))
        storage = settings.storage()
        first = aws.seed(lab, storage, state_dir)
        second = aws.seed(lab, storage, state_dir)
        _, inventory = list_inventory("lab", env)
        # The same lab without the hidden member's tag, then as it is again.
        untagged = replace(lab, hosts=[replace(host, tags={}) for host in lab.hosts])
        retagged = [aws.seed(untagged, storage, state_dir), aws.seed(lab, storage, state_dir)]
        tags = {
            i["InstanceId"]: {t["Key"]: t["Value"] for t in i["Tags"]}
            for i in aws.running_instances(aws.client("ec2", lab.endpoint))
        }
        yield {
            "lab": lab,
            "first": first,
            "second": second,
            "inventory": inventory,
            "retagged": retagged,
            "tags": tags,
            "dir": state_dir,
        }


def test_a_second_seed_reuses_everything(seeded: dict[str, Any]) -> None:
    first, second = seeded["first"], seeded["second"]
    assert len(first.instances) == len(LAB.hosts)
    assert second.instances == first.instances
    assert second.created == []
    assert first.buckets == aws.bucket_names(settings.storage())
    assert len(first.buckets) == 4


def test_secrets_are_random_kept_and_readable(seeded: dict[str, Any]) -> None:
    lab = seeded["lab"]
    for secret in LAB.secrets:
        value = aws.read_secret(lab, secret.name)
        assert len(value) == secret.length
        assert set(value) <= set(aws.ALPHABET)
        kept = seeded["dir"] / "secrets" / secret.name
        assert kept.read_text() == value
        assert kept.stat().st_mode & 0o777 == 0o600
    assert aws.read_secret(lab, "mongodb/admin_password") != aws.read_secret(
        lab, "mongodb/app_password"
    )


def test_the_lab_inventory_finds_the_containers(seeded: dict[str, Any]) -> None:
    inventory = seeded["inventory"]
    hostvars = inventory["_meta"]["hostvars"]
    by_address = {v["ansible_host"]: name for name, v in hostvars.items()}
    assert set(by_address) == {host.address for host in LAB.hosts}
    for host in LAB.hosts:
        name = by_address[host.address]
        assert name == f"{seeded['first'].instances[host.container]}-{host.name_tag}"
        assert name in inventory[f"role_{host.role}"]["hosts"]
        assert hostvars[name]["clinic_env"] == "lab"
        assert hostvars[name]["ec2_tags"]["Environment"] == "lab"
    assert len(inventory["env_lab"]["hosts"]) == len(LAB.hosts)


def test_the_hidden_member_is_tagged_and_a_changed_tag_is_corrected(
    seeded: dict[str, Any],
) -> None:
    (hidden,) = [h for h in LAB.hosts if h.tags.get("MongoDBMember") == "hidden"]
    assert hidden.role == "mongodb"
    instance = seeded["first"].instances[hidden.container]
    assert seeded["inventory"]["mongodb_hidden"]["hosts"] == [f"{instance}-{hidden.name_tag}"]
    untagged, tagged_again = seeded["retagged"]
    assert untagged.instances == tagged_again.instances == seeded["first"].instances
    assert untagged.created == tagged_again.created == [f"retagged {instance} ({hidden.name_tag})"]
    assert seeded["tags"][instance]["MongoDBMember"] == "hidden"
    others = [
        seeded["tags"][i] for c, i in seeded["first"].instances.items() if c != hidden.container
    ]
    assert all("MongoDBMember" not in tags for tags in others)


def test_the_backup_member_reaches_moto_on_the_gateway() -> None:
    path = settings.INVENTORY_DIR / "group_vars" / "role_mongodb" / "backup.yml"
    inputs = yaml.safe_load(path.read_text())
    assert LAB.moto_address == LAB.gateway
    assert inputs["backup_cron_aws_endpoint_url"] == LAB.endpoint
    bootstrap = yaml.safe_load((ROOT / "lab" / "up.yml").read_text())
    written = [
        task["ansible.builtin.copy"]["dest"]
        for play in bootstrap
        for task in play.get("tasks", [])
        if "ansible.builtin.copy" in task
    ]
    assert inputs["backup_cron_aws_credentials_file"] in written
