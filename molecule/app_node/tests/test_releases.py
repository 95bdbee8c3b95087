"""Deploying a new release, deploying it again, and rolling back to the previous one.

The steps build on each other (module fixtures, in order): 1.0.0 is live, 2.0.0 is deployed, 2.0.0
is deployed again, then 1.0.0 again, which must be a rollback to a release still on disk.
"""

from __future__ import annotations

import pytest

LIVE_RELEASE = "1.0.0"
NEW_RELEASE = "2.0.0"
BASE = "/opt/clinic-api"
NODES = ["app1", "app2"]
SWITCH = "release | Switch current to the release"


def marker(host, release: str) -> str:  # noqa: ANN001
    """Inode and mtime of a release's .release-complete: they change whenever it is unpacked."""
    result = host.run("stat -c '%%i %%Y' %s", f"{BASE}/releases/{release}/.release-complete")
    return result.stdout.strip() if result.rc == 0 else "absent"


@pytest.fixture(scope="module")
def live_markers(host_named):  # noqa: ANN001, ANN201
    """The live release's marker on each node, before anything is deployed."""
    return {name: marker(host_named(name), LIVE_RELEASE) for name in NODES}


@pytest.fixture(scope="module")
def deploy(live_markers, converge):  # noqa: ANN001, ANN201
    assert "absent" not in live_markers.values(), live_markers
    return converge(NEW_RELEASE)


@pytest.fixture(scope="module")
def redeploy(deploy, converge):  # noqa: ANN001, ANN201
    return converge(NEW_RELEASE)


@pytest.fixture(scope="module")
def rollback(redeploy, converge):  # noqa: ANN001, ANN201
    return converge(LIVE_RELEASE)


def test_deploy_switches_and_reports_changed(deploy, recap, tail, changes):  # noqa: ANN001, ANN201
    assert deploy.returncode == 0, tail(deploy)
    counters = recap(deploy)
    assert {host: c["failed"] for host, c in counters.items()} == dict.fromkeys(NODES, 0)
    assert all(counters[host]["changed"] > 0 for host in NODES), counters
    switched = sorted(c.rpartition(": ")[2] for c in changes(deploy) if SWITCH in c)
    assert switched == NODES, changes(deploy)


def test_deploy_serves_the_new_release(deploy, node, host_named, current, served_version):  # noqa: ANN001, ANN201
    assert current(host_named(node.name)) == f"releases/{NEW_RELEASE}"
    assert served_version(node) == NEW_RELEASE


def test_deploying_the_live_release_again_changes_nothing(redeploy, recap, tail, changes):  # noqa: ANN001, ANN201
    assert redeploy.returncode == 0, tail(redeploy)
    counters = recap(redeploy)
    assert {host: c["changed"] for host, c in counters.items()} == dict.fromkeys(NODES, 0), changes(
        redeploy
    )


def test_redeploy_keeps_the_previous_release_for_rollback(redeploy, node, host_named, releases):  # noqa: ANN001, ANN201
    # keep_releases is 2: the current release (2.0.0) and the previous one (1.0.0).
    assert releases(host_named(node.name)) == [LIVE_RELEASE, NEW_RELEASE]


def test_rollback_serves_the_previous_release(rollback, node, host_named, current, served_version):  # noqa: ANN001, ANN201
    assert rollback.returncode == 0
    assert current(host_named(node.name)) == f"releases/{LIVE_RELEASE}"
    assert served_version(node) == LIVE_RELEASE


def test_rollback_reuses_the_unpacked_release(rollback, live_markers, host_named, tasks, tail):  # noqa: ANN001, ANN201
    assert rollback.returncode == 0, tail(rollback)
    # Quick: nothing fetched or unpacked again; the release on disk is the one from before 2.0.0.
    assert [name for name in tasks(rollback) if name.startswith("unpack | ")] == []
    assert {name: marker(host_named(name), LIVE_RELEASE) for name in NODES} == live_markers
