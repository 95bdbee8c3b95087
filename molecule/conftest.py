"""Fixtures shared by every scenario's testinfra tests.

Hosts are reached with testinfra's docker backend by container name; commands that must cross the
network (SSH logins, port probes) run inside a client container against a server's address.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import testinfra
from testinfra.host import Host

PROBE = """
import socket, sys
s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)
s.settimeout(float(sys.argv[3]))
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print('open')
except ConnectionRefusedError:
    print('refused')
except (TimeoutError, socket.timeout):
    print('timeout')
"""


@pytest.fixture(scope="session")
def host_named() -> Callable[[str], Host]:
    """Return the testinfra host of a container of the scenario."""
    return lambda name: testinfra.get_host(f"docker://{name}")


@pytest.fixture(scope="session")
def ephemeral() -> Path:
    """The scenario's ephemeral directory (keys, generated passwords, inventory)."""
    return Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])


@pytest.fixture(scope="session")
def tcp_state() -> Callable[..., str]:
    """'open', 'refused' or 'timeout' for a TCP connection from a client host to address:port."""

    def probe(client: Host, address: str, port: int, timeout: float = 3.0) -> str:
        return client.check_output(
            "python3 -c %s %s %s %s", PROBE, address, str(port), str(timeout)
        ).strip()

    return probe


@pytest.fixture(scope="session")
def playbook_recap() -> Callable[[str, str], dict[str, int]]:
    """The PLAY RECAP counters of one host in an ansible-playbook output."""
    return _playbook_recap


def _playbook_recap(output: str, host: str) -> dict[str, int]:
    match = re.search(rf"^{re.escape(host)}\s+:\s+(.*)$", output, re.MULTILINE)
    if not match:
        raise AssertionError(f"no PLAY RECAP line for {host} in:\n{output[-2000:]}")
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(1))}
