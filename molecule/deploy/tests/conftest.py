"""Helpers for the deploy scenario: playbooks/deploy.yml runs, the nodes' releases, the database.

The modules run in file-name order, each starting from where the one before left the nodes:
  test_01_bad_input   every refused deploy leaves the nodes on 1.0.0, untouched
  test_02_rolling     1.0.0 -> 2.0.0 under load through HAProxy, started twice at once (the run lock
                      refuses one); then 2.0.0 again changes nothing
  test_03_guard       with the other node down in HAProxy, a deploy refuses to take a node out
  test_04_broken      3.0.0 under load stops at the first node, which runs 2.0.0 again
  test_05_migration   4.0.0 under load: its failing change set stops the deploy before any node
                      switches; both nodes stay on 2.0.0 and UP in HAProxy
  test_06_alb         2.0.0 -> 1.0.0 through the `alb` adapter against a target group in moto
  test_07_tls_upgrade the plaintext set and the API move to TLS step by step under load; the set
                      requires TLS from then on
  test_08_rotation    every certificate renewed under load: the members restart one by one, the API
                      nodes reload theirs without a restart
  test_09_killed      2.0.0 killed with its first node out of HAProxy; a new run is refused by the
                      dead run's lock, then breaks it and completes under load
The API nodes serve HTTPS to HAProxy throughout (the platform's default).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from deploy_scenario import (
    BASE,
    CA_FILE,
    DEPLOY,
    RELEASE_PARAMETER,
    SECRET_NAMES,
    admin_client,
    aws,
)
from testinfra.host import Host


@pytest.fixture(scope="session")
def sha256() -> Callable[[str], str]:
    """The sha256 the artifact build wrote beside a release's artifact."""
    artifacts = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "artifacts"
    return lambda version: (
        (artifacts / f"sample-api-{version}.tar.gz.sha256").read_text().split()[0]
    )


@pytest.fixture(scope="session")
def deploy(ansible_playbook, sha256) -> Callable[..., Any]:  # noqa: ANN001
    """Run playbooks/deploy.yml for a release (its checksum from the build unless given)."""

    def run(version: str, *args: str, checksum: str | None = None) -> Any:
        digest = sha256(version) if checksum is None else checksum
        extra = ["-e", f"deploy_version={version}"]
        if digest:
            extra += ["-e", f"deploy_sha256={digest}"]
        return ansible_playbook(DEPLOY, *extra, *args)

    return run


@pytest.fixture(scope="session")
def current() -> Callable[[Host], str]:
    """The release a node's current link points at (its version)."""
    return lambda host: Path(host.file(f"{BASE}/current").linked_to).name


@pytest.fixture(scope="session")
def unpacked() -> Callable[[Host], set[str]]:
    """The releases unpacked on a node."""
    return lambda host: set(host.check_output(f"ls {BASE}/releases").split())


@pytest.fixture(scope="session")
def served_version() -> Callable[[Host], str]:
    """The version the API answers on the node itself, over HTTPS verified with the CA."""

    def ask(host: Host) -> str:
        return host.check_output(
            'python3 -c "import json,ssl,urllib.request;print(json.load(urllib.request.urlopen('
            f"'https://127.0.0.1:3000/version', timeout=5, "
            f"context=ssl.create_default_context(cafile='{CA_FILE}')))['version'])\""
        )

    return ask


@pytest.fixture(scope="session")
def live_release() -> Callable[[], dict[str, str]]:
    """The release recorded in SSM as the environment's live one."""
    return lambda: json.loads(
        aws("ssm").get_parameter(Name=RELEASE_PARAMETER)["Parameter"]["Value"]
    )


@pytest.fixture(scope="session")
def secret_values(secret: Callable[..., str]) -> list[str]:
    """The values of the secrets a deploy handles (SECRET_NAMES), which no output may show."""
    return [secret(name) for name in SECRET_NAMES]


@pytest.fixture(scope="session")
def database(secret: Callable[..., str]) -> Any:
    """The API's database, as the replica set's admin (password from SSM)."""
    client = admin_client(secret("mongodb_admin_password"))
    yield client["clinic"]
    client.close()
