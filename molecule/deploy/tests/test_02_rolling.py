"""1.0.0 -> 2.0.0 under steady load through HAProxy, started twice at once: the run lock refuses one
run before it changes anything, and with the other no request fails, the migrations run once
before any node switches, one node at a time leaves the load balancer, every node ends on 2.0.0
and 2.0.0 becomes the live release. Deploying 2.0.0 again changes nothing."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from deploy_scenario import LB_ADDRESS, NODES, RUN_LOCK, STATS_URL, run_lock

from tests.harness import loadgen

OLD, NEW = "1.0.0", "2.0.0"
RATE = 60.0  # requests per second through HAProxy, above the 50/s the deploy must carry


@pytest.fixture(scope="module")
def both(deploy):  # noqa: ANN001, ANN201
    """Two deploys of NEW started together, as two engineers would: the environment's run lock
    lets one through and refuses the other."""
    with (
        loadgen.load(LB_ADDRESS, rate=RATE, stats_url=STATS_URL) as report,
        ThreadPoolExecutor(2) as pool,
    ):
        runs = list(pool.map(lambda _: deploy(NEW, "-vvv"), range(2)))
    return runs, report


@pytest.fixture(scope="module")
def rolled(both, tail):  # noqa: ANN001, ANN201
    runs, report = both
    done = [run for run in runs if run.returncode == 0]
    assert len(done) == 1, "\n\n".join(tail(run) for run in runs)
    return done[0], report


def test_the_other_deploy_was_refused_by_the_run_lock(both, rolled, recap, tail):  # noqa: ANN001, ANN201
    runs, _ = both
    (refused,) = [run for run in runs if run is not rolled[0]]
    assert refused.returncode != 0, tail(refused)
    text = " ".join((refused.stdout + refused.stderr).split())
    assert f"Another run holds the run lock {RUN_LOCK}: 'deploy {NEW}' by " in text, tail(refused)
    assert "Nothing was changed" in text and "-e run_lock_break=" in text, tail(refused)
    for node in NODES:
        assert recap(refused)[node]["changed"] == 0, tail(refused)
    assert "PLAY [Roll the release out" not in refused.stdout, tail(refused)


def test_the_run_lock_was_given_back(rolled):  # noqa: ANN001, ANN201
    assert run_lock() is None


def test_deploy_succeeds(rolled, tail):  # noqa: ANN001, ANN201
    run, _ = rolled
    assert run.returncode == 0, tail(run)


def test_no_request_failed(rolled):  # noqa: ANN001, ANN201
    _, report = rolled
    assert report.results, "the load generator sent nothing"
    assert report.failures == [], report.summary()
    assert report.rate >= 50, report.summary()


def test_clients_saw_the_switch(rolled):  # noqa: ANN001, ANN201
    _, report = rolled
    versions = report.versions()
    assert versions[0] == OLD and versions[-1] == NEW, versions


def test_one_node_at_a_time_left_the_load_balancer(rolled):  # noqa: ANN001, ANN201
    _, report = rolled
    assert sorted(report.outages) == sorted(NODES), report.outages
    (first,), (second,) = report.outages[NODES[0]], report.outages[NODES[1]]
    assert first[1] is not None and second[1] is not None, report.outages
    assert first[1] <= second[0], f"both nodes were out at once: {report.outages}"
    assert report.none_up == [], "HAProxy had no server UP"


def test_every_node_runs_the_new_release(rolled, host_named, current, served_version):  # noqa: ANN001, ANN201
    for node in NODES:
        host = host_named(node)
        assert current(host) == NEW
        assert served_version(host) == NEW


def test_migrations_applied_once(rolled, database):  # noqa: ANN001, ANN201
    applied = [doc["_id"] for doc in database["_migrations"].find({})]
    assert sorted(applied) == ["001-create-records-index", "002-backfill-record-source"], applied


def test_new_release_is_the_live_one(rolled, live_release, sha256):  # noqa: ANN001, ANN201
    assert live_release() == {"version": NEW, "sha256": sha256(NEW)}


def test_verbose_deploy_prints_no_secret(rolled, secret_values):  # noqa: ANN001, ANN201
    """At -vvv the run shows every module's arguments and results: the migration (with the
    environment file), the environment file's template and the health checks print no secret."""
    run, _ = rolled
    # At -vvv each task result carries its module's arguments (invocation.module_args).
    assert "module_args:" in run.stdout, "the run was not verbose"
    for value in secret_values:
        assert value not in run.stdout + run.stderr


@pytest.fixture(scope="module")
def again(rolled, deploy):  # noqa: ANN001, ANN201
    with loadgen.load(LB_ADDRESS, rate=RATE, stats_url=STATS_URL) as report:
        run = deploy(NEW)
    return run, report


def test_deploying_the_live_release_changes_nothing(again, changes, tail):  # noqa: ANN001, ANN201
    run, report = again
    assert run.returncode == 0, tail(run)
    assert changes(run) == [], tail(run)
    assert report.outages == {}, "a node left the load balancer"
    assert report.failures == [], report.summary()


def test_migrations_are_not_applied_twice(again, database):  # noqa: ANN001, ANN201
    assert database["_migrations"].count_documents({}) == 2
