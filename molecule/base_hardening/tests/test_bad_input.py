"""Bad input is refused before the role changes anything, with a message that says what to fix."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

PLAYBOOK = Path(__file__).resolve().parents[1] / "bad_input.yml"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEKZqRpIKeNyYaWhZZXQdKiQgpQdlR9xBl0S4TWS2s9c test"
GROUPS = [{"name": "admins", "sudo": "nopasswd"}, {"name": "engineers"}]
ADMIN = {"name": "alice", "groups": ["admins"], "authorized_keys": [KEY]}

CASES = {
    "cidr-with-host-bits": (
        {"base_hardening_ssh_allowed_cidrs": ["10.0.0.1/16"]},
        "'10.0.0.1/16' is not a network in CIDR notation",
    ),
    "allow-list-source-not-a-network": (
        {"base_hardening_firewall_allow": [{"name": "app", "ports": [3000], "sources": ["lb"]}]},
        "'lb' is not a network in CIDR notation",
    ),
    "unknown-access-group": (
        {"base_hardening_users": [ADMIN, {"name": "eve", "groups": ["wizards"]}]},
        "User eve names unknown access group(s) wizards",
    ),
    "no-admin-with-a-key": (
        {"base_hardening_users": [{"name": "alice", "groups": ["admins"]}]},
        "nobody could administer the host after this run",
    ),
    "no-group-may-use-ssh": (
        {"base_hardening_access_groups": [{"name": "admins", "sudo": "nopasswd", "ssh": False}]},
        "AllowGroups would be empty",
    ),
    "ssh-port-out-of-range": (
        {"base_hardening_ssh_port": 70000},
        "Port 70000 is outside 1-65535",
    ),
    "allow-list-port-zero": (
        {"base_hardening_firewall_allow": [{"name": "x", "ports": [0], "sources": ["10.0.0.0/8"]}]},
        "Port 0 is outside 1-65535",
    ),
    "firewall-without-ssh-networks": (
        {"base_hardening_ssh_allowed_cidrs": []},
        "which must be non-empty",
    ),
    "connection-user-not-managed": (
        {"base_hardening_connection_user": "deploy"},
        "Ansible connects as 'deploy', who would lose SSH access",
    ),
    "connection-user-root": (
        {"base_hardening_connection_user": "root"},
        "Ansible connects as 'root', who would lose SSH access",
    ),
    "duplicate-user": (
        {"base_hardening_users": [ADMIN, ADMIN]},
        "Each user and each access group may be listed once; duplicates: alice",
    ),
    "unknown-sudo-mode": (
        {"base_hardening_access_groups": [{"name": "admins", "sudo": "always"}]},
        "value of sudo must be one of: none, password, nopasswd, got: always",
    ),
    "port-not-a-number": (
        {"base_hardening_ssh_max_auth_tries": "many"},
        "base_hardening_ssh_max_auth_tries",
    ),
    "access-groups-missing": (
        {"base_hardening_access_groups": None},
        "base_hardening_access_groups",
    ),
}


def run_role(ephemeral: Path, overrides: dict) -> subprocess.CompletedProcess[str]:
    """Run the role on the pristine host with the scenario's inputs changed by overrides."""
    varsfile = ephemeral / "bad_input.json"
    varsfile.write_text(
        json.dumps(
            {"base_hardening_access_groups": GROUPS, "base_hardening_users": [ADMIN]} | overrides
        )
    )
    command = ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(PLAYBOOK)]
    # Plain, unwrapped output: the recap line is parsed.
    env = os.environ | {"ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", "COLUMNS": "300"}
    return subprocess.run(
        [*command, "-e", f"@{varsfile}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize(("overrides", "message"), CASES.values(), ids=CASES.keys())
def test_bad_input_fails_early_and_changes_nothing(ephemeral, playbook_recap, overrides, message):  # noqa: ANN001, ANN201
    result = run_role(ephemeral, overrides)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    assert message in output, result.stdout[-3000:]
    recap = playbook_recap(result.stdout, "bh-pristine")
    assert recap["failed"] == 1
    assert recap["changed"] == 0
