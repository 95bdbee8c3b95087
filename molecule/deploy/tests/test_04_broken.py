"""3.0.0 fails its health check: the deploy stops at the first node, puts it back on 2.0.0 and
into HAProxy, leaves the second node untouched and keeps 2.0.0 as the live release, while no
request through HAProxy fails."""

from __future__ import annotations

import pytest
from deploy_scenario import LB_ADDRESS, NODES, STATS_URL, run_lock

from tests.harness import loadgen

LIVE, BROKEN = "2.0.0", "3.0.0"


@pytest.fixture(scope="module")
def stopped(deploy):  # noqa: ANN001, ANN201
    with loadgen.load(LB_ADDRESS, rate=60.0, stats_url=STATS_URL) as report:
        run = deploy(BROKEN)
    return run, report


def test_deploy_fails_at_the_first_node(stopped, failure, recap, tail):  # noqa: ANN001, ANN201
    run, _ = stopped
    assert run.returncode != 0, tail(run)
    first, second = NODES
    text = failure(run, first)
    assert f"{BROKEN} failed on {first}" in text, text
    assert f"The node runs {LIVE} again and is back in the load balancer" in text, text
    assert recap(run)[second]["failed"] == 0


def test_no_request_failed(stopped):  # noqa: ANN001, ANN201
    _, report = stopped
    assert report.results, "the load generator sent nothing"
    assert report.failures == [], report.summary()
    assert report.none_up == [], "HAProxy had no server UP"


def test_first_node_is_back_on_the_live_release(stopped, host_named, current, served_version):  # noqa: ANN001, ANN201
    host = host_named(NODES[0])
    assert current(host) == LIVE
    assert served_version(host) == LIVE


def test_first_node_is_back_in_the_load_balancer(stopped):  # noqa: ANN001, ANN201
    _, report = stopped
    outages = report.outages.get(NODES[0], [])
    assert len(outages) == 1 and outages[0][1] is not None, report.outages


def test_second_node_untouched(stopped, host_named, current, unpacked):  # noqa: ANN001, ANN201
    _, report = stopped
    host = host_named(NODES[1])
    assert current(host) == LIVE
    assert BROKEN not in unpacked(host)
    assert NODES[1] not in report.outages


def test_live_release_unchanged(stopped, live_release, sha256):  # noqa: ANN001, ANN201
    assert live_release() == {"version": LIVE, "sha256": sha256(LIVE)}


def test_the_failed_run_gave_the_run_lock_back(stopped):  # noqa: ANN001, ANN201
    assert run_lock() is None
