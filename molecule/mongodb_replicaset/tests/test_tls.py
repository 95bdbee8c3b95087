"""The set requires TLS with the certificates tls_certificate issued: a client that speaks
plaintext, presents no certificate or one of another CA is refused from an allowed host; a
certificate renewal is rolled out one member at a time while writes go on.

The renewal is forced by asking for certificates that are due (valid_days 398, renew_days 397:
every 397-day certificate expires within 397 days). The run after it, with the defaults, must be
idle: that run is test_failover's converge, which comes next (conftest.py: MODULE_ORDER) and
asserts that nothing changed.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from typing import Any

import pytest
from cryptography import x509
from pymongo import MongoClient, WriteConcern
from pymongo.errors import PyMongoError
from rollouts import NO_PRIMARY_LONGEST, Watcher, Writer

from tests.harness.pki import Authority, key_file_pem

RENEW_ALL = (
    "-e",
    json.dumps({"tls_certificate_valid_days": 398, "tls_certificate_renew_days": 397}),
)
TLS_DIR = "/etc/clinic/tls"


def served_certificate(address: str, client_tls: dict[str, Any]) -> x509.Certificate:
    """The certificate a member presents in a TLS handshake (verified against the CA)."""
    context = ssl.create_default_context(cafile=client_tls["tlsCAFile"])
    context.load_cert_chain(client_tls["tlsCertificateKeyFile"])
    with (
        socket.create_connection((address, 27017), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=address) as tls,
    ):
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def refused(client: MongoClient) -> None:
    with pytest.raises(PyMongoError):
        client.admin.command("ping")


def test_plaintext_client_from_an_allowed_host_is_refused(member):  # noqa: ANN001, ANN201
    # The test machine is inside the firewall's allow-list (test_replicaset: the port is open).
    client = MongoClient(member.host, directConnection=True, serverSelectionTimeoutMS=3000)
    try:
        refused(client)
    finally:
        client.close()


def test_client_without_certificate_is_refused(client_tls, member):  # noqa: ANN001, ANN201
    client = MongoClient(member.host, directConnection=True, serverSelectionTimeoutMS=3000,
                         tls=True, tlsCAFile=client_tls["tlsCAFile"])  # fmt: skip
    try:
        refused(client)
    finally:
        client.close()


def test_client_certificate_of_another_ca_is_refused(mongo, tmp_path, member):  # noqa: ANN001, ANN201
    other = Authority.create("another CA")
    key, cert = other.issue("molecule operator", [], server=False)
    foreign = tmp_path / "foreign.pem"
    foreign.write_bytes(key_file_pem(cert, key))
    foreign.chmod(0o600)
    refused(
        mongo(
            address=member.host, tlsCertificateKeyFile=str(foreign), serverSelectionTimeoutMS=3000
        )
    )


def test_member_serves_a_certificate_of_the_ca_for_its_address(client_tls, authority, member):  # noqa: ANN001, ANN201
    certificate = served_certificate(member.address, client_tls)
    certificate.verify_directly_issued_by(authority.cert)
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert member.address in map(str, names.get_values_for_type(x509.IPAddress))


def test_tls_files_are_readable_by_mongod_and_root_only(host_named, member):  # noqa: ANN001, ANN201
    node = host_named(member.name)
    for name in ("host.pem", "host.key"):
        file = node.file(f"{TLS_DIR}/{name}")
        assert (file.user, file.group, file.mode) == ("root", "clinic-tls", 0o640), name
    assert "clinic-tls" in node.user("mongodb").groups
    assert node.file(TLS_DIR).mode == 0o750


@pytest.fixture(scope="module")
def rotation(replset, mongo, password, members, member_clients, client_tls, converge, tail):  # noqa: ANN001, ANN201
    replset.wait_healthy()
    before = {m.name: served_certificate(m.address, client_tls) for m in members}
    writes = mongo(
        "admin", password("admin"), serverSelectionTimeoutMS=30000, socketTimeoutMS=30000
    ).tls_rotation.get_collection("writes", write_concern=WriteConcern("majority", wtimeout=20000))
    with Watcher(member_clients) as watcher, Writer(writes, 0.05) as writer:
        time.sleep(1)
        result = converge(*RENEW_ALL)
        time.sleep(1)
    assert result.returncode == 0, tail(result)
    after = {m.name: served_certificate(m.address, client_tls) for m in members}
    yield {"before": before, "after": after, "watcher": watcher, "writer": writer, "writes": writes}


def test_renewed_certificates_are_served_by_every_member(rotation, authority, members):  # noqa: ANN001, ANN201
    for member in members:
        old, new = rotation["before"][member.name], rotation["after"][member.name]
        assert new.serial_number != old.serial_number, member.name
        assert new.public_key() == old.public_key(), member.name
        new.verify_directly_issued_by(authority.cert)


def test_renewal_keeps_a_primary_and_loses_no_acknowledged_write(rotation):  # noqa: ANN001, ANN201
    watcher, writer = rotation["watcher"], rotation["writer"]
    print("\n".join(watcher.transitions()))
    assert max(len(sample.down) for sample in watcher.samples) <= 1, watcher.transitions()
    assert any(sample.down for sample in watcher.samples), "no member was restarted"
    windows = watcher.no_primary_windows()
    assert len(windows) <= 1 and all(w < NO_PRIMARY_LONGEST for w in windows), windows
    assert writer.failed == [], writer.failed[:5]
    assert len(writer.acknowledged) > 20
    stored = {doc["_id"] for doc in rotation["writes"].find({}, {"_id": 1})}
    assert set(writer.acknowledged) <= stored
