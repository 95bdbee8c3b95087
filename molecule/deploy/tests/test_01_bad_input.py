"""Deploys that are refused before anything changes: each fails with a message that says what to
fix, no host reports a change, and both nodes still run 1.0.0 in HAProxy."""

from __future__ import annotations

import pytest
from deploy_scenario import NODES

LIVE = "1.0.0"

CASES = {
    "missing checksum": (
        ("2.0.0",),
        {"checksum": ""},
        "-e deploy_sha256=<the artifact's sha256",
    ),
    "unknown adapter": (
        ("2.0.0", "-e", "deploy_lb_adapter=nginx"),
        {},
        "deploy_lb_adapter must be alb or haproxy (got 'nginx'",
    ),
    "serial 0": (
        ("2.0.0", "-e", "deploy_serial=0"),
        {},
        "deploy_serial a number of nodes >= 1 or a percentage 1%-100% (got '0')",
    ),
    "missing secret": (
        ("2.0.0", "-e", "clinic_app_jwt_secret_parameter=/clinic/molecule/app/no_such_secret"),
        {},
        "The SSM parameter /clinic/molecule/app/no_such_secret is missing or empty",
    ),
    "unknown version": (
        ("9.9.9",),
        {"checksum": "0" * 64},
        "There is no release 9.9.9: s3://clinic-molecule-artifacts-ap-south-1/releases/clinic-api-9.9.9.tar.gz",
    ),
    # The artifact in the bucket is not the one named (replaced, or another build's checksum):
    # refused on the controller, before any node leaves the load balancer.
    "wrong checksum": (
        ("2.0.0",),
        {"checksum": "0" * 64},
        f"not {'0' * 64}: it was not installed. Check deploy_sha256",
    ),
    # Both nodes in one batch would leave the load balancer nothing to send traffic to.
    "every node at once": (
        ("2.0.0", "-e", "deploy_serial=100%"),
        {},
        "deploy_serial=100% takes 2 of the 2 nodes out of the load balancer at once",
    ),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def refused(request, deploy):  # noqa: ANN001, ANN201
    args, kwargs, message = CASES[request.param]
    return request.param, deploy(*args, **kwargs), message


def test_refused_with_a_clear_message(refused, tail):  # noqa: ANN001, ANN201
    case, run, message = refused
    assert run.returncode != 0, f"{case}: {tail(run)}"
    assert message in " ".join((run.stdout + run.stderr).split()), f"{case}: {tail(run)}"
    assert "Nothing was changed" in run.stdout + run.stderr, f"{case}: {tail(run)}"


def test_refused_before_any_change(refused, recap, changes, tail):  # noqa: ANN001, ANN201
    case, run, _ = refused
    assert changes(run) == [], f"{case}: {tail(run)}"
    counters = recap(run)
    assert all(counters[node]["changed"] == 0 for node in NODES if node in counters), counters


def test_nodes_still_run_the_live_release(refused, host_named, current, unpacked, served_version):  # noqa: ANN001, ANN201
    for node in NODES:
        host = host_named(node)
        assert current(host) == LIVE
        assert served_version(host) == LIVE
        assert unpacked(host) == {LIVE}, "a refused deploy unpacked a release"


def test_refused_runs_print_no_secret(refused, secret_values):  # noqa: ANN001, ANN201
    _, run, _ = refused
    for value in secret_values:
        assert value not in run.stdout + run.stderr
