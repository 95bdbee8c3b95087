"""Helpers for the CloudWatch agent scenario: the hosts, what each must ship, and playbook runs.

cwa-app is an API node (log sets app and system, installed through the s3_deb path from the
stand-in bucket); cwa-mongodb a MongoDB member on Debian 13 (mongodb and system, through the apt
path). Log groups live in moto, which the tests reach through AWS_ENDPOINT_URL like the role.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable

import pytest
from agents import AGENTS, SCENARIO


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that takes `agent` runs once per host."""
    if "agent" in metafunc.fixturenames:
        metafunc.parametrize("agent", AGENTS, ids=[agent.name for agent in AGENTS])


@pytest.fixture(scope="session")
def ansible_playbook() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run one of the scenario's playbooks against the scenario inventory, like molecule does."""

    def run(playbook: str, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        inventory = os.environ["MOLECULE_INVENTORY_FILE"]
        command = ["ansible-playbook", "-i", inventory, str(SCENARIO / playbook), *args]
        env = os.environ | {"ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", "COLUMNS": "300"}
        return subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=timeout, check=False
        )

    return run


@pytest.fixture(scope="session")
def recap() -> Callable[[subprocess.CompletedProcess[str]], dict[str, dict[str, int]]]:
    """Host -> PLAY RECAP counters of every host of a run (fails if the run has no recap)."""

    def parse(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, int]]:
        _, found, tail = result.stdout.rpartition("PLAY RECAP")
        if not found:
            pytest.fail(f"no PLAY RECAP in:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        counters: dict[str, dict[str, int]] = {}
        for line in tail.splitlines():
            match = re.match(r"^(\S+)\s+:\s+(ok=.*)$", line)
            if match:
                pairs = re.findall(r"(\w+)=(\d+)", match.group(2))
                counters[match.group(1)] = {key: int(value) for key, value in pairs}
        return counters

    return parse


@pytest.fixture(scope="session")
def tail() -> Callable[[subprocess.CompletedProcess[str]], str]:
    """The end of a run's output, for assertion messages."""
    return lambda result: (
        f"rc={result.returncode}\n{result.stdout[-5000:]}\n{result.stderr[-3000:]}"
    )
