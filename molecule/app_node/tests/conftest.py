"""Helpers for the API node scenario: the nodes, HTTP from the load balancer's subnet, secrets from
SSM, converge runs with other releases and the parsing of their output.

Traffic to the API starts inside app-lb (172.30.45.21, in the allowed 172.30.45.16/28), the way
the load balancer reaches the nodes; app-out (172.30.45.99) is outside the allow-list. Files and
units are read inside the nodes through testinfra's docker backend.

The modules run in a fixed order (see MODULE_ORDER): first the checks of the converged nodes, which
change nothing; then the runs that must fail before they change anything (bad input, a bad checksum
of 2.0.0 while 2.0.0 is not unpacked yet); then the deploys of 2.0.0, its redeploy and the rollback;
then 1.0.0 published again with another artifact; last the broken 3.0.0, after which the nodes are
converged back to 1.0.0.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from testinfra.host import Host

SERVICE = "clinic-api"
BASE = f"/opt/{SERVICE}"
PORT = 3000
HEALTH_PATH = "/healthz"
LIVE_RELEASE = "1.0.0"
MODULE_ORDER = (
    "test_service",
    "test_bad_input",
    "test_bad_checksum",
    "test_releases",
    "test_republished",
    "test_broken_release",
)

# Run inside app-lb: GET http://<address>:<port><path>, print {"status": ..., "body": ...} as JSON.
HTTP_GET = """
import json, sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])) as reply:
        status, body = reply.status, reply.read().decode()
except urllib.error.HTTPError as error:
    status, body = error.code, error.read().decode()
print(json.dumps({"status": status, "body": body}))
"""


class Node(NamedTuple):
    name: str
    address: str


NODES = (Node("app1", "172.30.45.11"), Node("app2", "172.30.45.12"))
NODE_NAMES = [node.name for node in NODES]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that takes `node` runs once per API node."""
    if "node" in metafunc.fixturenames:
        metafunc.parametrize("node", NODES, ids=NODE_NAMES)


@pytest.fixture(scope="session")
def lb(host_named: Callable[[str], Host]) -> Host:
    """app-lb: the client in the load balancer's subnet."""
    return host_named("app-lb")


@pytest.fixture(scope="session")
def outsider(host_named: Callable[[str], Host]) -> Host:
    """app-out: a client outside the allow-list."""
    return host_named("app-out")


@pytest.fixture(scope="session")
def http_get(lb: Host) -> Callable[..., tuple[int, str]]:
    """(status, body) of GET http://<address>:3000<path>, sent from app-lb."""

    def get(address: str, path: str, timeout: float = 5.0) -> tuple[int, str]:
        url = f"http://{address}:{PORT}{path}"
        reply = json.loads(lb.check_output("python3 -c %s %s %s", HTTP_GET, url, str(timeout)))
        return reply["status"], reply["body"]

    return get


@pytest.fixture(scope="session")
def served_version(http_get: Callable[..., tuple[int, str]]) -> Callable[[Node], str]:
    """The version a node's /version answers with, asked from app-lb (fails on any other status)."""

    def version(node: Node) -> str:
        status, body = http_get(node.address, "/version")
        assert status == 200, f"{node.name} /version answered {status}: {body}"
        return json.loads(body)["version"]

    return version


@pytest.fixture(scope="session")
def artifact_sha256(ephemeral: Path) -> Callable[[str], str]:
    """The sha256 the build wrote beside the artifact of a release."""
    return lambda release: (
        (ephemeral / "artifacts" / f"sample-api-{release}.tar.gz.sha256").read_text().split()[0]
    )


def link_target(host: Host) -> str:
    """Where /opt/clinic-api/current points ('' when there is no link)."""
    return host.run("readlink %s", f"{BASE}/current").stdout.strip()


def release_dirs(host: Host) -> list[str]:
    """The names of the directories under /opt/clinic-api/releases."""
    listing = host.check_output(
        "find %s -mindepth 1 -maxdepth 1 -type d -printf '%%f\\n'", f"{BASE}/releases"
    )
    return sorted(listing.split())


@pytest.fixture(scope="session")
def current() -> Callable[[Host], str]:
    return link_target


@pytest.fixture(scope="session")
def releases() -> Callable[[Host], list[str]]:
    return release_dirs


@pytest.fixture(scope="session")
def converge(
    ansible_playbook: Callable[..., subprocess.CompletedProcess[str]],
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run converge.yml with a release (scenario_release) and extra ansible-playbook arguments."""

    def run(release: str, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        extra = ("-e", f"scenario_release={release}")
        return ansible_playbook("converge.yml", *extra, *args, **kwargs)

    return run


@pytest.fixture(scope="session")
def restore_live_release(
    converge: Callable[..., subprocess.CompletedProcess[str]],
    host_named: Callable[[str], Host],
) -> Callable[[], None]:
    """Converge back to 1.0.0 unless every node is on it already (for teardowns)."""

    def restore() -> None:
        wanted = f"releases/{LIVE_RELEASE}"
        if any(link_target(host_named(name)) != wanted for name in NODE_NAMES):
            converge(LIVE_RELEASE)

    return restore


def role_tasks(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The names of the app_node tasks a run started, in order."""
    return re.findall(r"^TASK \[clinic\.infra\.app_node : (.*?)\]", result.stdout, re.MULTILINE)


@pytest.fixture(scope="session")
def tasks() -> Callable[[subprocess.CompletedProcess[str]], list[str]]:
    return role_tasks


def poll(probe: Callable[[], Any], timeout: float, what: str, step: float = 0.5) -> Any:
    """Call probe() until it returns something truthy and return that; fail at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() >= deadline:
            pytest.fail(f"not within {timeout} s: {what} (last: {last!r})")
        time.sleep(step)


@pytest.fixture(scope="session")
def wait_for() -> Callable[..., Any]:
    """poll(probe, timeout, what, step=0.5): see poll()."""
    return poll
