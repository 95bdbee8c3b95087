"""A renewal of every certificate on the running platform, at requireTLS (where test_07 leaves the
set), while the API takes reads and writes through HAProxy: site.yml's MongoDB and API plays asking
for certificates valid 398 days and renewed 397 days before they expire, so that every certificate
(valid 397 days) is due.
The member restarts with its new certificate; each API node loads its own on SIGHUP, without a
restart, serves it to HAProxy and presents it to the set. No request fails and every record the
API acknowledged is in the set."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from deploy_scenario import (
    CA_FILE,
    CA_PARAMETERS,
    DB_ADDRESS,
    LB_ADDRESS,
    LOAD_RATE,
    NODES,
    SERVICE,
    STATS_URL,
    admin_client,
    step,
)
from testinfra.host import Host

from tests.harness import loadgen

# A certificate of the default validity (397 days) expires within 397 days: each one is due.
RENEW_ALL = ("-e", '{"tls_certificate_valid_days": 398, "tls_certificate_renew_days": 397}')

# Run on an API node: the serial number (hex) of the certificate the API serves on 127.0.0.1.
SERVED_SERIAL = (
    "import socket,ssl\n"
    f"c = ssl.create_default_context(cafile='{CA_FILE}')\n"
    "with socket.create_connection(('127.0.0.1', 3000), timeout=5) as raw:\n"
    "    with c.wrap_socket(raw, server_hostname='127.0.0.1') as s:\n"
    "        print(s.getpeercert()['serialNumber'])\n"
)


def node_state(host: Host) -> dict[str, str]:
    """The serial the API serves, the one of the node's certificate file, and the API's PID."""
    return {
        "served": host.check_output("python3 -c %s", SERVED_SERIAL),
        "file": host.check_output(
            "openssl x509 -noout -serial -in /etc/clinic/tls/host.crt"
        ).removeprefix("serial="),
        "pid": host.check_output("systemctl show --property MainPID --value %s", SERVICE),
    }


def member_serial(tls: dict[str, Any]) -> str:
    """The serial number of the certificate the replica set's member serves."""
    context = ssl.create_default_context(cafile=tls["tlsCAFile"])
    context.load_cert_chain(tls["tlsCertificateKeyFile"])
    with (
        socket.create_connection((DB_ADDRESS, 27017), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=DB_ADDRESS) as conn,
    ):
        return conn.getpeercert()["serialNumber"]  # type: ignore[index,return-value]


@pytest.fixture(scope="module")
def tls(client_tls_at: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    return client_tls_at(CA_PARAMETERS)


@pytest.fixture(scope="module")
def tls_database(secret: Callable[..., str], tls: dict[str, Any]) -> Iterator[Any]:
    with admin_client(secret("mongodb_admin_password"), **tls) as client:
        yield client["clinic"]


@pytest.fixture(scope="module")
def rotation(
    ansible_playbook: Callable[..., Any],
    host_named: Callable[[str], Host],
    tls: dict[str, Any],
    tls_database: Any,
) -> dict[str, Any]:
    nodes = {name: host_named(name) for name in NODES}
    before = {name: node_state(host) for name, host in nodes.items()}
    member_before = member_serial(tls)
    records_before = tls_database.records.count_documents({})
    with loadgen.load(LB_ADDRESS, rate=LOAD_RATE, stats_url=STATS_URL) as report:
        runs = step(ansible_playbook, "requireTLS", *RENEW_ALL)
    return {
        "runs": runs,
        "report": report,
        "records_before": records_before,
        "nodes": {name: (before[name], node_state(host)) for name, host in nodes.items()},
        "member": (member_before, member_serial(tls)),
    }


def test_the_runs_succeed(rotation: dict[str, Any], tail: Any) -> None:
    for run in rotation["runs"]:
        assert run.returncode == 0, tail(run)


def test_no_request_failed_during_the_rotation(rotation: dict[str, Any]) -> None:
    report = rotation["report"]
    assert report.results, "the load generator sent nothing"
    assert report.failures == [], report.summary()


def test_every_acknowledged_record_is_in_the_set(
    rotation: dict[str, Any], tls_database: Any
) -> None:
    posted = sum(1 for r in rotation["report"].results if r.method == "POST" and not r.failed)
    assert posted > 0
    assert tls_database.records.count_documents({}) == rotation["records_before"] + posted


def test_the_member_serves_its_new_certificate(rotation: dict[str, Any]) -> None:
    before, after = rotation["member"]
    assert after != before


@pytest.mark.parametrize("node", NODES)
def test_each_node_serves_its_new_certificate_without_a_restart(
    rotation: dict[str, Any], node: str
) -> None:
    before, after = rotation["nodes"][node]
    assert before["served"] == before["file"], "the API served another certificate before"
    assert after["file"] != before["file"], "the node's certificate was not renewed"
    assert after["served"] == after["file"], "the API does not serve its renewed certificate"
    assert after["pid"] == before["pid"], "the API was restarted rather than reloaded"
