"""The guard of the haproxy adapter: while the second node is in maintenance in HAProxy, a deploy
refuses to take the first node out (it is the last server UP) and changes nothing. While another
run holds the environment's run lock, site.yml's API tier is refused and changes nothing."""

from __future__ import annotations

import json

import pytest
from deploy_scenario import LB, NODES, RUN_LOCK, SITE_PLAYBOOKS, aws

LIVE, OTHER = "2.0.0", "1.0.0"


def runtime_api(host_named, command: str) -> str:  # noqa: ANN001
    return host_named(LB).check_output(
        "echo %s | socat stdio UNIX-CONNECT:/run/haproxy/admin.sock", command
    )


@pytest.fixture(scope="module")
def guarded(deploy, host_named):  # noqa: ANN001, ANN201
    runtime_api(host_named, f"disable server api_nodes/{NODES[1]}")
    try:
        yield deploy(OTHER)
    finally:
        runtime_api(host_named, f"enable server api_nodes/{NODES[1]}")


def test_refused_at_the_first_node(guarded, failure, tail):  # noqa: ANN001, ANN201
    assert guarded.returncode != 0, tail(guarded)
    text = failure(guarded, NODES[0])
    assert f"no server of api_nodes other than this batch ({NODES[0]}) is UP" in text, text
    assert "Nothing was changed on it" in text, text


def test_nothing_changed(guarded, changes, host_named, current, tail):  # noqa: ANN001, ANN201
    assert changes(guarded) == [], tail(guarded)
    for node in NODES:
        assert current(host_named(node)) == LIVE


def test_the_api_tier_is_refused_during_a_deploy(ansible_playbook, changes, tail):  # noqa: ANN001, ANN201
    """A deploy holds the lock: playbooks/app.yml (site.yml's API tier) refuses before its first
    change, names the holder and leaves the deploy's lock alone."""
    ssm = aws("ssm")
    holder = {"run_id": "0123456789ab", "owner": "ci@runner", "purpose": "deploy 9.9.9",
              "started": "2026-12-07T12:00:00Z"}  # fmt: skip
    ssm.put_parameter(Name=RUN_LOCK, Value=json.dumps(holder), Type="String")
    try:
        run = ansible_playbook(SITE_PLAYBOOKS[1])
        left = json.loads(ssm.get_parameter(Name=RUN_LOCK)["Parameter"]["Value"])
    finally:
        ssm.delete_parameter(Name=RUN_LOCK)
    assert run.returncode != 0, tail(run)
    text = " ".join((run.stdout + run.stderr).split())
    assert f"Another run holds the run lock {RUN_LOCK}: 'deploy 9.9.9' by ci@runner" in text, tail(
        run
    )
    assert changes(run) == [], tail(run)
    assert "PLAY [Run the API nodes]" not in run.stdout, tail(run)
    assert left == holder
