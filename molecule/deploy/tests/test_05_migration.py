"""4.0.0's third change set fails: under load, the deploy stops at its migration step, before any
node switches. Both nodes keep running 2.0.0 (same process) and stay UP in HAProxy, 2.0.0 stays
the live release, the failed change set is not recorded, and no request through HAProxy fails."""

from __future__ import annotations

import pytest
from deploy_scenario import LB_ADDRESS, NODES, SERVICE, STATS_URL, haproxy_states, run_lock

from tests.harness import loadgen

LIVE, FAILING = "2.0.0", "4.0.0"
FAILED_CHANGE_SET = "003-fail-on-purpose"
RECORDED = ["001-create-records-index", "002-backfill-record-source"]
MIGRATE_TASK = f"migrate | Apply the pending change sets of {FAILING}"


def started_at(host) -> str:  # noqa: ANN001
    """When the API last entered `active` (changes with every restart)."""
    return host.check_output(f"systemctl show {SERVICE} -p ActiveEnterTimestampMonotonic --value")


@pytest.fixture(scope="module")
def stopped(deploy, host_named):  # noqa: ANN001, ANN201
    before = {node: started_at(host_named(node)) for node in NODES}
    with loadgen.load(LB_ADDRESS, rate=60.0, stats_url=STATS_URL) as report:
        run = deploy(FAILING)
    return run, report, before


def test_deploy_fails_at_the_migration(stopped, failure, tail):  # noqa: ANN001, ANN201
    run, _, _ = stopped
    assert run.returncode != 0, tail(run)
    text = failure(run, NODES[0])
    assert f"{FAILING} was not deployed: the migration step failed on {NODES[0]}" in text, text
    assert "so no node was switched" in text, text
    assert f'Failed at "{MIGRATE_TASK}": the migration script exited 1' in text, text
    assert f'"msg":"change set failed","id":"{FAILED_CHANGE_SET}"' in text, text
    assert "fails on purpose" in text, text


def test_deploy_ended_before_the_nodes(stopped, recap, tail):  # noqa: ANN001, ANN201
    """No play after the migrations' started: no node left the load balancer, no release was
    recorded. The second node changed nothing at all."""
    run, _, _ = stopped
    assert "PLAY [Roll the release out" not in run.stdout, tail(run)
    assert "PLAY [Record the environment's live release]" not in run.stdout, tail(run)
    assert recap(run)[NODES[1]]["changed"] == 0, tail(run)


def test_no_request_failed(stopped):  # noqa: ANN001, ANN201
    _, report, _ = stopped
    assert report.results, "the load generator sent nothing"
    assert report.failures == [], report.summary()
    assert report.versions() == [LIVE], report.versions()


def test_both_nodes_stayed_in_the_load_balancer(stopped):  # noqa: ANN001, ANN201
    _, report, _ = stopped
    assert report.outages == {}, report.outages
    assert haproxy_states() == dict.fromkeys(NODES, "UP")


def test_nodes_still_run_the_live_release(stopped, host_named, current, served_version):  # noqa: ANN001, ANN201
    _, _, before = stopped
    for node in NODES:
        host = host_named(node)
        assert current(host) == LIVE, node
        assert served_version(host) == LIVE, node
        assert started_at(host) == before[node], f"the API on {node} was restarted"


def test_release_staged_on_the_first_node_only(stopped, host_named, unpacked):  # noqa: ANN001, ANN201
    """The migrations ran from 4.0.0 unpacked beside the live release on one node; the other
    node never saw it."""
    first, second = NODES
    assert FAILING in unpacked(host_named(first))
    assert FAILING not in unpacked(host_named(second))


def test_failed_change_set_not_recorded(stopped, database):  # noqa: ANN001, ANN201
    recorded = sorted(doc["_id"] for doc in database["_migrations"].find({}))
    assert recorded == RECORDED, recorded


def test_live_release_unchanged(stopped, live_release, sha256):  # noqa: ANN001, ANN201
    assert live_release() == {"version": LIVE, "sha256": sha256(LIVE)}


def test_the_failed_run_gave_the_run_lock_back(stopped):  # noqa: ANN001, ANN201
    assert run_lock() is None
