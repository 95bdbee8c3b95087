"""The upgrade path to TLS, last because it leaves the set requiring TLS. From the plaintext set the
modules before used, site.yml's MongoDB and API plays (playbooks/mongodb.yml, playbooks/app.yml)
move clinic_mongodb_tls_mode one step per run, allowTLS, preferTLS then requireTLS, while the API
takes reads and writes through HAProxy: no request fails and every record is in the set, those of
before and those acknowledged during the steps. Then the set refuses a client without a
certificate of the environment's CA, the API reaches it with its node's certificate, and a run
at requireTLS changes nothing."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from bson import ObjectId
from deploy_scenario import (
    CA_PARAMETERS,
    CERTIFICATE,
    LB_ADDRESS,
    LOAD_RATE,
    NODES,
    SERVICE,
    STATS_URL,
    admin_client,
    step,
)
from pymongo.errors import PyMongoError

from tests.harness import loadgen

STEPS = ("allowTLS", "preferTLS", "requireTLS")


@pytest.fixture(scope="module")
def upgrade(ansible_playbook: Callable[..., Any], database: Any) -> dict[str, Any]:
    before = database.records.count_documents({})
    with loadgen.load(LB_ADDRESS, rate=LOAD_RATE, stats_url=STATS_URL) as report:
        runs = {mode: step(ansible_playbook, mode) for mode in STEPS}
    return {"before": before, "runs": runs, "report": report}


@pytest.fixture(scope="module")
def tls_database(
    upgrade: dict[str, Any],
    secret: Callable[..., str],
    client_tls_at: Callable[[str], dict[str, Any]],
) -> Iterator[Any]:
    """The API's database as admin, with a client certificate of the environment's CA."""
    with admin_client(secret("mongodb_admin_password"), **client_tls_at(CA_PARAMETERS)) as client:
        yield client["clinic"]


def test_each_step_succeeds(upgrade: dict[str, Any], tail: Any) -> None:
    for mode, runs in upgrade["runs"].items():
        for run in runs:
            assert run.returncode == 0, f"{mode}: {tail(run)}"


def test_no_request_failed_during_the_steps(upgrade: dict[str, Any]) -> None:
    report = upgrade["report"]
    assert report.results, "the load generator sent nothing"
    assert report.failures == [], report.summary()


def test_every_record_is_in_the_set(upgrade: dict[str, Any], tls_database: Any) -> None:
    """Those written before, and every write the API acknowledged during the steps."""
    posted = sum(1 for r in upgrade["report"].results if r.method == "POST" and not r.failed)
    assert posted > 0
    assert tls_database.records.count_documents({}) == upgrade["before"] + posted


@pytest.mark.parametrize(
    "options",
    [{}, {"tls": True}],
    ids=["plaintext", "tls-without-certificate"],
)
def test_a_client_without_a_certificate_of_the_ca_is_refused(
    upgrade: dict[str, Any],
    options: dict[str, Any],
    client_tls_at: Callable[[str], dict[str, Any]],
    secret: Callable[..., str],
) -> None:
    if options:
        options = options | {"tlsCAFile": client_tls_at(CA_PARAMETERS)["tlsCAFile"]}
    client = admin_client(secret("mongodb_admin_password"), 3000, **options)
    with client, pytest.raises(PyMongoError):
        client.admin.command("ping")


@pytest.mark.parametrize("node", NODES)
def test_the_api_presents_its_nodes_certificate(
    upgrade: dict[str, Any], host_named: Any, node: str
) -> None:
    host = host_named(node)
    groups = host.check_output("id -nG %s", SERVICE).split()
    assert "clinic-tls" in groups, groups
    certificate = host.file(CERTIFICATE)
    assert (certificate.user, certificate.group, certificate.mode) == ("root", "clinic-tls", 0o640)
    # The URI holds the application user's password: only its TLS options are read.
    options = host.check_output(
        "sh -c %s",
        f"grep -o 'tls=true&tlsCAFile=[^&]*&tlsCertificateKeyFile=[^&\"]*' /etc/{SERVICE}/app.env",
    )
    assert options.split("&") == [
        "tls=true",
        "tlsCAFile=/etc/clinic/tls/ca.pem",
        f"tlsCertificateKeyFile={CERTIFICATE}",
    ]


def test_a_record_posted_through_the_load_balancer_is_in_the_set(tls_database: Any) -> None:
    request = urllib.request.Request(
        f"http://{LB_ADDRESS}/records",
        data=json.dumps({"source": "tls-test"}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=30) as reply:
        assert reply.status == 201
        record = json.loads(reply.read())
    assert tls_database.records.find_one({"_id": ObjectId(record["id"])})["source"] == "tls-test"


def test_a_run_at_require_tls_changes_nothing(
    upgrade: dict[str, Any], ansible_playbook: Callable[..., Any], changes: Any, tail: Any
) -> None:
    for run in step(ansible_playbook, "requireTLS"):
        assert run.returncode == 0, tail(run)
        assert changes(run) == [], tail(run)
