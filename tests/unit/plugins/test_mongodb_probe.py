"""clinic.infra.mongodb_probe against the MongoDB double (or a real mongod, see its README):
it reads the topology before any user exists and tells a wrong password from a good one."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.doubles.mongodb.tests.conftest import Launcher, Mongod, replset_config, wait_primary
from tests.harness.pki import Authority, key_file_pem

ROOT = Path(__file__).resolve().parents[3]
MODULE = ROOT / "plugins" / "modules" / "mongodb_probe.py"
ADMIN_PW = "adm1n-Pw"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mongod]:
    launcher = Launcher(tmp_path_factory.mktemp("probe"))
    key = launcher.key_file()
    mongod = launcher.start(["--replSet", "rs0", "--keyFile", str(key)])
    yield mongod
    launcher.stop_all()


def probe(node: Mongod, **args: object) -> dict:
    """Run the module the way Ansible does (JSON arguments on stdin) and return its result."""
    payload = {"ANSIBLE_MODULE_ARGS": {"login_host": node.host, "login_port": node.port} | args}
    result = subprocess.run(
        [sys.executable, str(MODULE)],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    return json.loads(result.stdout)


def test_reads_the_topology_before_and_after_initiate(node: Mongod) -> None:
    before = probe(node)
    assert before["changed"] is False
    assert before["hello"]["isreplicaset"] is True
    assert "setName" not in before["hello"]
    local = node.client()
    local.admin.command("replSetInitiate", replset_config("rs0", [node]))
    wait_primary(node)
    local.admin.command("createUser", "admin", pwd=ADMIN_PW, roles=["root"])
    local.close()
    after = probe(node)
    assert after["hello"]["setName"] == "rs0"
    assert after["hello"]["primary"] == node.address


def test_tells_which_passwords_authenticate(node: Mongod) -> None:
    result = probe(
        node,
        credentials=[
            {"name": "admin", "password": ADMIN_PW},
            {"name": "admin", "password": "wrong", "database": "clinic"},
        ],
    )
    assert result["authenticated"] == {"admin@admin": True, "admin@clinic": False}
    assert result["errors"]["admin@clinic"]["code"] == 18
    assert ADMIN_PW not in json.dumps(result)


def test_reads_the_members_as_admin(node: Mongod) -> None:
    result = probe(node, credentials=[{"name": "admin", "password": ADMIN_PW}], read_config=True)
    assert result["members"] == [
        {"host": node.address, "priority": 1.0, "votes": 1, "hidden": False}
    ]


def test_an_unreachable_server_fails_with_its_address(node: Mongod) -> None:
    result = probe(node, login_port=1, connect_timeout=0.5)
    assert result["failed"] is True
    assert f"{node.host}:1" in result["msg"]


def test_reading_the_config_needs_credentials(node: Mongod) -> None:
    result = probe(node, read_config=True)
    assert result["failed"] is True
    assert "read_config needs credentials" in result["msg"]


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Mongod, Path, Path]]:
    """A mongod that requires TLS and client certificates; with its CA file and a client's PEM."""
    base = tmp_path_factory.mktemp("probe-tls")
    ca = Authority.create("probe test CA")
    loopback = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    files = {"ca.pem": ca.cert.public_bytes(serialization.Encoding.PEM)}
    files["server.pem"] = key_file_pem(*reversed(ca.issue("127.0.0.1", loopback, server=True)))
    files["client.pem"] = key_file_pem(*reversed(ca.issue("probe client", [], server=False)))
    for name, data in files.items():
        (base / name).write_bytes(data)
        (base / name).chmod(0o600)
    launcher = Launcher(base)
    mongod = launcher.start(
        ["--tlsMode", "requireTLS", "--tlsCertificateKeyFile", str(base / "server.pem"),
         "--tlsCAFile", str(base / "ca.pem")],
        client_options={"tls": True, "tlsCAFile": str(base / "ca.pem"),
                        "tlsCertificateKeyFile": str(base / "client.pem")},
    )  # fmt: skip
    yield mongod, base / "ca.pem", base / "client.pem"
    launcher.stop_all()


def test_connects_with_tls_and_a_client_certificate(tls_node: tuple[Mongod, Path, Path]) -> None:
    node, ca, client = tls_node
    result = probe(node, tls=True, tlsCAFile=str(ca), tlsCertificateKeyFile=str(client))
    assert result.get("failed") is not True, result
    assert result["hello"]["isWritablePrimary"] is True


@pytest.mark.parametrize(
    "args",
    [{"connect_timeout": 2}, {"tls": True, "connect_timeout": 2}],
    ids=["plaintext", "no-client-certificate"],
)
def test_tls_server_refuses_a_probe_without_tls_or_certificate(
    tls_node: tuple[Mongod, Path, Path], args: dict
) -> None:
    node, ca, _ = tls_node
    if args.get("tls"):
        args = args | {"tlsCAFile": str(ca)}
    result = probe(node, **args)
    assert result["failed"] is True
    assert f"{node.host}:{node.port}" in result["msg"]
