"""TLS contract: net.tls.mode on one port, client and member certificates, startup refusals.

A throw-away PKI is made for the module with `cryptography`: a CA, a server certificate (SAN DNS
localhost and IP 127.0.0.1, usable by a member as a client of its peers too), a client
certificate (and a revoked one, with the CA's CRL), and a foreign CA with its own client
certificate. Clients are pymongo (tls=True, tlsCAFile, tlsCertificateKeyFile), raw sockets for
what pymongo cannot be made to send (a plaintext message under requireTLS, a TLS 1.1-only
ClientHello), and mongosh. Every test runs unchanged against a real mongod
(MONGODB_CONTRACT_MONGOD), except those marked double_only, which read the double's log lines.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import socket
import ssl
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymongo
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from pymongo.write_concern import WriteConcern

from tests.doubles.polling import wait_for
from tests.harness.pki import Authority, key_file_pem
from tests.prerequisites import missing

from .conftest import (
    Launcher,
    Mongod,
    RawConnection,
    command_error,
    double_only,
    free_port,
    replset_config,
    secured_set,
    wait_healthy,
)
from .test_mongosh import MONGOSH, Shell

ADMIN_PW = "tls-Admin-pw"
KEY_PASSWORD = "pem-Pass-phrase"
REFUSED_MS = 2000


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


@dataclass
class Pki:
    ca: Path  # the CA certificate (net.tls.CAFile, tlsCAFile)
    server: Path  # certificate + key, SAN localhost and 127.0.0.1, server and client usage
    client: Path  # certificate + key of a client
    foreign_ca: Path
    foreign_client: Path  # a client certificate signed by the foreign CA
    localhost_only: Path  # a server certificate whose only SAN is DNS localhost
    mismatched: Path  # the server certificate with another certificate's key
    encrypted: Path  # the server certificate with its key encrypted by KEY_PASSWORD
    revoked_client: Path  # a client certificate of the CA, revoked by `crl`
    crl: Path  # the CA's revocation list


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    base = tmp_path_factory.mktemp("pki")
    ca = Authority.create("clinic test CA")
    foreign = Authority.create("foreign test CA")
    loopback = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    server_key, server_cert = ca.issue("127.0.0.1", loopback, server=True)
    client_key, client_cert = ca.issue("clinic client", [], server=False)
    foreign_key, foreign_cert = foreign.issue("foreign client", [], server=False)
    only_key, only_cert = ca.issue("localhost", [x509.DNSName("localhost")], server=True)
    revoked_key, revoked_cert = ca.issue("revoked client", [], server=False)
    now = datetime.datetime.now(datetime.UTC)
    revocation = (
        x509.RevokedCertificateBuilder()
        .serial_number(revoked_cert.serial_number)
        .revocation_date(now - datetime.timedelta(hours=1))
        .build()
    )
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(now - datetime.timedelta(hours=1))
        .next_update(now + datetime.timedelta(days=1))
        .add_revoked_certificate(revocation)
        .sign(ca.key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return Pki(
        ca=_write(base / "ca.pem", ca.cert.public_bytes(pem)),
        server=_write(base / "server.pem", key_file_pem(server_cert, server_key)),
        client=_write(base / "client.pem", key_file_pem(client_cert, client_key)),
        foreign_ca=_write(base / "foreign-ca.pem", foreign.cert.public_bytes(pem)),
        foreign_client=_write(base / "foreign-client.pem", key_file_pem(foreign_cert, foreign_key)),
        localhost_only=_write(base / "localhost.pem", key_file_pem(only_cert, only_key)),
        mismatched=_write(base / "mismatched.pem", key_file_pem(server_cert, client_key)),
        encrypted=_write(
            base / "encrypted.pem",
            key_file_pem(server_cert, server_key, password=KEY_PASSWORD),
        ),
        revoked_client=_write(base / "revoked-client.pem", key_file_pem(revoked_cert, revoked_key)),
        crl=_write(base / "crl.pem", crl.public_bytes(pem)),
    )


def tls_args(pki: Pki, mode: str = "requireTLS", *extra: str) -> list[str]:
    return [
        "--tlsMode",
        mode,
        "--tlsCertificateKeyFile",
        str(pki.server),
        "--tlsCAFile",
        str(pki.ca),
        *extra,
    ]


def tls_client(pki: Pki, certificate: Path | None = None) -> dict[str, Any]:
    """pymongo options of a TLS client that trusts the test CA and presents `certificate` (None:
    no certificate)."""
    options: dict[str, Any] = {"tls": True, "tlsCAFile": str(pki.ca)}
    if certificate is not None:
        options["tlsCertificateKeyFile"] = str(certificate)
    return options


def _round_trip(node: Mongod, **options: Any) -> None:
    """A write and a read back over a direct connection with these options."""
    client = node.client(**options)
    try:
        client.clinic.tls.insert_one({"via": repr(sorted(options))})
        assert client.clinic.tls.count_documents({}) >= 1
    finally:
        client.close()


def _plaintext(node: Mongod) -> dict[str, Any]:
    """Options that, passed to _refused, make a client without TLS."""
    return {key: None for key in node.client_options} | {"tls": False}


def _refused(node: Mongod, **options: Any) -> pymongo.errors.ConnectionFailure:
    """The error of a client the server (or the client itself) refuses. `options` override the
    node's client options; an option set to None is left out."""
    merged = {**node.client_options, **options, "serverSelectionTimeoutMS": REFUSED_MS}
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        node.host,
        node.port,
        directConnection=True,
        **{key: value for key, value in merged.items() if value is not None},
    )
    try:
        with pytest.raises(pymongo.errors.ConnectionFailure) as info:
            client.admin.command("ping")
    finally:
        client.close()
    return info.value


def _hello_over(sock: socket.socket) -> dict[str, Any]:
    """A hello on a connected (TLS) socket, through the suite's raw client."""
    return RawConnection.on_socket(sock).command({"hello": 1, "$db": "admin"})


@pytest.fixture(scope="module")
def required(module_launcher: Launcher, pki: Pki) -> Mongod:
    """A standalone under requireTLS that needs client certificates."""
    return module_launcher.start(tls_args(pki), client_options=tls_client(pki, pki.client))


# requireTLS


def test_require_tls_serves_a_client_with_a_valid_certificate(required: Mongod) -> None:
    _round_trip(required)
    client = required.client()
    try:
        assert client.admin.command("hello")["isWritablePrimary"] is True
    finally:
        client.close()


def test_require_tls_refuses_a_plaintext_client(required: Mongod) -> None:
    _refused(required, **_plaintext(required))
    # The connection is closed without a reply to the plaintext message.
    with required.raw() as raw:
        raw.send_msg({"hello": 1, "$db": "admin"})
        with pytest.raises(ConnectionError):
            raw.read_reply()


@double_only
def test_require_tls_logs_the_refused_plaintext_connection(required: Mongod) -> None:
    with required.raw() as raw:
        raw.send_msg({"hello": 1, "$db": "admin"})
        with pytest.raises(ConnectionError):
            raw.read_reply()
    wait_for(
        lambda: any(
            "The server is configured to only allow SSL connections" in line
            for line in required.log_lines()
        ),
        5,
        "the refusal in the log",
    )
    waiting = next(json.loads(x) for x in required.log_lines() if "Waiting for connections" in x)
    assert waiting["attr"]["ssl"] == "on"


def test_require_tls_refuses_a_certificate_from_another_ca(required: Mongod, pki: Pki) -> None:
    _refused(required, tlsCertificateKeyFile=str(pki.foreign_client))


def test_client_that_does_not_trust_the_server_ca_refuses_it(required: Mongod, pki: Pki) -> None:
    error = _refused(required, tlsCAFile=str(pki.foreign_ca))
    assert "certificate verify failed" in str(error)


def test_client_without_certificate_is_refused_by_default(required: Mongod) -> None:
    _refused(required, tlsCertificateKeyFile=None)


@double_only
def test_missing_client_certificate_is_logged(required: Mongod, pki: Pki) -> None:
    context = ssl.create_default_context(cafile=str(pki.ca))
    with (
        socket.create_connection((required.host, required.port), timeout=10) as plain,
        context.wrap_socket(plain, server_hostname=required.host) as sock,
        pytest.raises((ConnectionError, ssl.SSLError)),
    ):
        _hello_over(sock)
    wait_for(
        lambda: any(
            "No SSL certificate provided by peer; connection rejected" in line
            for line in required.log_lines()
        ),
        5,
        "the rejection in the log",
    )


def test_allow_connections_without_certificates(launcher: Launcher, pki: Pki) -> None:
    node = launcher.start(
        tls_args(pki, "requireTLS", "--tlsAllowConnectionsWithoutCertificates"),
        client_options=tls_client(pki),
    )
    _round_trip(node)  # no certificate
    _round_trip(node, tlsCertificateKeyFile=str(pki.client))
    # A certificate that is presented must still verify.
    _refused(node, tlsCertificateKeyFile=str(pki.foreign_client))
    _refused(node, **_plaintext(node))


def test_certificate_revoked_by_the_crl_file_is_refused(launcher: Launcher, pki: Pki) -> None:
    node = launcher.start(
        tls_args(pki, "requireTLS", "--tlsCRLFile", str(pki.crl)),
        client_options=tls_client(pki, pki.client),
    )
    _round_trip(node)
    _refused(node, tlsCertificateKeyFile=str(pki.revoked_client))


def test_encrypted_key_with_its_password(launcher: Launcher, pki: Pki) -> None:
    node = launcher.start(
        [
            "--tlsMode",
            "requireTLS",
            "--tlsCertificateKeyFile",
            str(pki.encrypted),
            "--tlsCertificateKeyFilePassword",
            KEY_PASSWORD,
            "--tlsCAFile",
            str(pki.ca),
        ],
        client_options=tls_client(pki, pki.client),
    )
    _round_trip(node)
    client = node.client()
    try:
        opts = client.admin.command("getCmdLineOpts")
    finally:
        client.close()
    tls = opts["parsed"]["net"]["tls"]
    assert tls["mode"] == "requireTLS"
    assert tls["certificateKeyFile"] == str(pki.encrypted)
    assert tls["CAFile"] == str(pki.ca)
    assert tls["certificateKeyFilePassword"] == "<password>"
    assert KEY_PASSWORD not in opts["argv"]
    assert KEY_PASSWORD not in node.log_path.read_text(encoding="utf-8")


# preferTLS and allowTLS accept both on one port.


@pytest.mark.parametrize("mode", ["preferTLS", "allowTLS"])
def test_prefer_and_allow_tls_serve_plaintext_and_tls_clients(
    launcher: Launcher, pki: Pki, mode: str
) -> None:
    node = launcher.start(tls_args(pki, mode))
    _round_trip(node)
    _round_trip(node, **tls_client(pki, pki.client))
    _refused(node, **tls_client(pki, pki.foreign_client))


# Protocol versions


def _tls11_client() -> ssl.SSLContext | None:
    """A client context that offers TLS 1.1 only, if this OpenSSL can still complete a TLS 1.1
    handshake (checked against a local TLS 1.1 server on a socket pair); else None."""

    def context(protocol: int) -> ssl.SSLContext:
        ctx = ssl.SSLContext(protocol)
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.1 is, on purpose
            ctx.minimum_version = ssl.TLSVersion.TLSv1_1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        return ctx

    try:
        client = context(ssl.PROTOCOL_TLS_CLIENT)
        client.check_hostname = False
        client.verify_mode = ssl.CERT_NONE
        server = context(ssl.PROTOCOL_TLS_SERVER)
        probe_ca = Authority.create("probe")
        key, cert = probe_ca.key, probe_ca.cert
        probe = Path(os.environ.get("TMPDIR", "/tmp")) / f"tls11-probe-{os.getpid()}.pem"
        _write(probe, key_file_pem(cert, key))
        try:
            server.load_cert_chain(probe)
        finally:
            probe.unlink()
    except (ssl.SSLError, ValueError, AttributeError):
        return None
    left, right = socket.socketpair()
    outcome: dict[str, bool] = {}

    def serve() -> None:
        try:
            with server.wrap_socket(right, server_side=True) as tls:
                outcome["server"] = tls.version() == "TLSv1.1"
        except (ssl.SSLError, OSError):
            outcome["server"] = False

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        left.settimeout(5)
        with client.wrap_socket(left) as tls:
            ok = tls.version() == "TLSv1.1"
    except (ssl.SSLError, OSError):
        ok = False
    finally:
        left.close()
        thread.join(5)
        right.close()
    return client if ok and outcome.get("server") else None


def test_tls_1_1_only_client_is_refused(required: Mongod, pki: Pki) -> None:
    tls11 = _tls11_client()
    if tls11 is None:
        missing(
            "an OpenSSL that completes a TLS 1.1 handshake (with itself), to build the TLS "
            "1.1-only client of test_tls_1_1_only_client_is_refused"
        )
    with (
        socket.create_connection((required.host, required.port), timeout=10) as plain,
        pytest.raises((ssl.SSLError, ConnectionError)),
    ):
        tls11.wrap_socket(plain, server_hostname=required.host).close()
    # The same handshake with TLS 1.2 or later, and the client's certificate, is served.
    modern = ssl.create_default_context(cafile=str(pki.ca))
    modern.load_cert_chain(pki.client)
    with (
        socket.create_connection((required.host, required.port), timeout=10) as plain,
        modern.wrap_socket(plain, server_hostname=required.host) as sock,
    ):
        assert _hello_over(sock)["ok"] == 1.0


# Startup refusals: exit code 1 ("Error during global initialization"), as mongod.


def _startup(launcher: Launcher, args: list[str], expected: str) -> None:
    work = launcher.workdir()
    log_path = work / "mongod.log"
    code, output = launcher.run_to_exit(
        [
            "--port",
            str(free_port()),
            "--bind_ip",
            "127.0.0.1",
            "--dbpath",
            str(work / "db"),
            "--logpath",
            str(log_path),
            "--nounixsocket",
            *args,
        ]
    )
    log = log_path.read_text(encoding="utf-8") if log_path.exists() else ""
    assert code == 1, output + log
    assert expected in output + log
    assert "Waiting for connections" not in log


def test_require_tls_without_certificate_key_file_refuses_to_start(
    launcher: Launcher, pki: Pki
) -> None:
    _startup(
        launcher,
        ["--tlsMode", "requireTLS", "--tlsCAFile", str(pki.ca)],
        "need tlsCertificateKeyFile or certificateSelector when TLS is enabled",
    )


def test_key_that_does_not_match_the_certificate_refuses_to_start(
    launcher: Launcher, pki: Pki
) -> None:
    args = tls_args(pki)
    args[args.index(str(pki.server))] = str(pki.mismatched)
    _startup(launcher, args, "Can not set up PEM key file.")


def test_unreadable_certificate_key_file_refuses_to_start(
    launcher: Launcher, pki: Pki, tmp_path: Path
) -> None:
    args = tls_args(pki)
    args[args.index(str(pki.server))] = str(tmp_path / "absent.pem")
    _startup(launcher, args, "Can not set up PEM key file.")


def test_encrypted_key_with_a_wrong_password_refuses_to_start(launcher: Launcher, pki: Pki) -> None:
    _startup(
        launcher,
        [
            "--tlsMode",
            "requireTLS",
            "--tlsCertificateKeyFile",
            str(pki.encrypted),
            "--tlsCertificateKeyFilePassword",
            "not-the-pass-phrase",
            "--tlsCAFile",
            str(pki.ca),
        ],
        "Can not set up PEM key file.",
    )


def test_tls_without_a_ca_file_refuses_to_start(launcher: Launcher, pki: Pki) -> None:
    _startup(
        launcher,
        ["--tlsMode", "requireTLS", "--tlsCertificateKeyFile", str(pki.server)],
        "The use of TLS without specifying a chain of trust is no longer supported",
    )


def test_tls_options_with_tls_disabled_refuse_to_start(launcher: Launcher, pki: Pki) -> None:
    _startup(
        launcher,
        ["--tlsCertificateKeyFile", str(pki.server), "--tlsCAFile", str(pki.ca)],
        "need to enable TLS via the sslMode/tlsMode flag when using TLS configuration parameters",
    )


# Replica sets: members reach each other over TLS, presenting their certificates.


def test_replica_set_under_require_tls_elects_and_replicates(launcher: Launcher, pki: Pki) -> None:
    options = tls_client(pki, pki.client)
    nodes = secured_set(launcher, ADMIN_PW, extra=tls_args(pki), client_options=options)
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        [n.address for n in nodes],
        replicaSet="rs0",
        username="admin",
        password=ADMIN_PW,
        authSource="admin",
        serverSelectionTimeoutMS=20000,
        **options,
    )
    try:
        wait_healthy(client)
        visits = client.clinic.get_collection(
            "visits", write_concern=WriteConcern(w="majority", wtimeout=10000)
        )
        visits.insert_one({"_id": "over-tls", "who": "Meera"})
        for node in nodes:
            direct = node.client("admin", ADMIN_PW, readPreference="secondaryPreferred")
            try:
                wait_for(
                    lambda d=direct: d.clinic.visits.find_one({"_id": "over-tls"}),
                    10,
                    f"the write on {node.address}",
                )
            finally:
                direct.close()
    finally:
        client.close()
    # Plaintext is refused by every member: the set did form over TLS.
    _refused(nodes[1], **_plaintext(nodes[1]))


def _two_members(launcher: Launcher, extra: list[str], options: dict[str, Any]) -> list[Mongod]:
    key = launcher.key_file()
    args = ["--replSet", "rs0", "--keyFile", str(key)]
    return [launcher.start(args + extra, client_options=options) for _ in range(2)]


def test_member_verifies_the_peer_host_name(launcher: Launcher, pki: Pki) -> None:
    """Members are named 127.0.0.1 in the config; a certificate for localhost only does not
    match, so the quorum check of replSetInitiate cannot reach the other member."""
    options = {**tls_client(pki, pki.client), "tlsAllowInvalidHostnames": True}
    args = tls_args(pki)
    args[args.index(str(pki.server))] = str(pki.localhost_only)
    nodes = _two_members(launcher, args, options)
    client = nodes[0].client()
    try:
        error = command_error(
            lambda: client.admin.command("replSetInitiate", replset_config("rs0", nodes))
        )
    finally:
        client.close()
    assert error["code"] == 74


def test_allow_invalid_hostnames_lets_members_connect(launcher: Launcher, pki: Pki) -> None:
    options = {**tls_client(pki, pki.client), "tlsAllowInvalidHostnames": True}
    args = tls_args(pki, "requireTLS", "--tlsAllowInvalidHostnames")
    args[args.index(str(pki.server))] = str(pki.localhost_only)
    nodes = _two_members(launcher, args, options)
    client = nodes[0].client()
    try:
        reply = client.admin.command("replSetInitiate", replset_config("rs0", nodes))
    finally:
        client.close()
    assert reply["ok"] == 1.0


def test_member_presents_its_cluster_file_to_peers(launcher: Launcher, pki: Pki) -> None:
    """The first member presents a certificate of the foreign CA on its own connections: the
    second member refuses them, and the quorum check of replSetInitiate fails."""
    options = tls_client(pki, pki.client)
    key = launcher.key_file()
    base = ["--replSet", "rs0", "--keyFile", str(key), *tls_args(pki)]
    first = launcher.start(
        [*base, "--tlsClusterFile", str(pki.foreign_client)], client_options=options
    )
    second = launcher.start(base, client_options=options)
    client = first.client()
    try:
        error = command_error(
            lambda: client.admin.command("replSetInitiate", replset_config("rs0", [first, second]))
        )
    finally:
        client.close()
    assert error["code"] == 74


# mongosh


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[Shell]:
    if MONGOSH is None:
        missing(
            f"the mongosh binary is missing ({os.environ.get('MONGOSH') or 'not installed'}): "
            "`make mongosh` installs it into .venv/mongosh, or set MONGOSH to one"
        )
    config = tmp_path / ".mongodb" / "mongosh" / "config"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"enableTelemetry": False}), encoding="utf-8")
    yield Shell(MONGOSH, tmp_path)


def test_mongosh_connects_with_tls_and_fails_without(
    required: Mongod, pki: Pki, shell: Shell
) -> None:
    uri = f"mongodb://{required.address}/?directConnection=true&serverSelectionTimeoutMS=3000"
    tls = ("--tls", "--tlsCAFile", str(pki.ca), "--tlsCertificateKeyFile", str(pki.client))
    assert shell.eval(uri, "db.hello().isWritablePrimary", *tls) is True
    refused = shell.run(uri, "db.hello().isWritablePrimary")
    assert refused.returncode != 0
