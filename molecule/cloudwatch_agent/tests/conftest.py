"""Helpers for the CloudWatch agent scenario: the hosts, what each must ship, and playbook runs.

cwa-app is an API node (log sets app and system, installed through the s3_deb path from the
stand-in bucket); cwa-mongodb a MongoDB member on Debian 13 (mongodb and system, through the apt
path). Log groups live in moto, which the tests reach through AWS_ENDPOINT_URL like the role.
"""

from __future__ import annotations

import pytest
from agents import AGENTS


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that takes `agent` runs once per host."""
    if "agent" in metafunc.fixturenames:
        metafunc.parametrize("agent", AGENTS, ids=[agent.name for agent in AGENTS])
