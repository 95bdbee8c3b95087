"""A release that fails its health check (3.0.0 answers 503 by design) fails the run, and a run
back to 1.0.0 restores the service. The module leaves the nodes on 1.0.0, even when a test fails.
"""

from __future__ import annotations

import pytest

BROKEN_RELEASE = "3.0.0"
LIVE_RELEASE = "1.0.0"
HEALTH_PATH = "/healthz"
HEALTH_TIMEOUT = 20  # app_node_health_timeout in vars.yml
NODES = ["app1", "app2"]


@pytest.fixture(scope="module")
def broken_run(converge, restore_live_release):  # noqa: ANN001, ANN201
    yield converge(BROKEN_RELEASE)
    restore_live_release()  # a no-op when test_converge_back_restores_health ran


@pytest.fixture(scope="module")
def restore_run(broken_run, converge):  # noqa: ANN001, ANN201
    return converge(LIVE_RELEASE)


def test_run_fails_on_each_node_with_the_health_message(broken_run, recap, tail, failure):  # noqa: ANN001, ANN201
    assert broken_run.returncode != 0, tail(broken_run)
    counters = recap(broken_run)
    assert {host: c["failed"] for host, c in counters.items()} == dict.fromkeys(NODES, 1)
    for host in NODES:
        text = failure(broken_run, host)
        assert (
            f"clinic-api {BROKEN_RELEASE} is not healthy on {host}: {HEALTH_PATH} answered 503 "
            f"for {HEALTH_TIMEOUT} s."
        ) in text, text
        # The journal tail follows, with systemd's own lines about the unit.
        _, _, journal = text.partition("Last lines of its journal:")
        assert "Started clinic-api.service" in journal, text


def test_failed_run_prints_no_secret(broken_run, secret):  # noqa: ANN001, ANN201
    output = broken_run.stdout + broken_run.stderr
    for name in ("app_jwt_secret", "mongodb_app_password"):
        assert secret(name) not in output, f"the {name} appears in the output of the failed run"


def test_cleanup_keeps_two_releases_and_current(broken_run, node, host_named, current, releases):  # noqa: ANN001, ANN201
    host = host_named(node.name)
    kept = releases(host)
    # The role does not roll back by itself: current is the broken release (the deploy playbook
    # rolls back with app_node_previous_release); the previous one is kept for that.
    assert current(host) == f"releases/{BROKEN_RELEASE}"
    assert len(kept) <= 2, kept
    assert BROKEN_RELEASE in kept and LIVE_RELEASE in kept, kept


def test_converge_back_restores_health(restore_run, node, host_named, current, http_get, tail):  # noqa: ANN001, ANN201
    assert restore_run.returncode == 0, tail(restore_run)
    assert current(host_named(node.name)) == f"releases/{LIVE_RELEASE}"
    assert http_get(node.address, HEALTH_PATH)[0] == 200
    status, body = http_get(node.address, "/version")
    assert status == 200 and f'"version":"{LIVE_RELEASE}"' in body, body
