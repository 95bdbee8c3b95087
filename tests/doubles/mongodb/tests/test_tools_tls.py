"""Contract tests of the mongodump / mongorestore doubles over TLS (mongo-tools 100.x semantics).

The servers run under requireTLS with the CA of test_tls.py's throw-away PKI, so every client
must present a certificate that CA signed. The tools get TLS through mongo-tools' flags (`--ssl`,
`--sslCAFile`, `--sslPEMKeyFile`; mongo-tools have no `--tls`, `--tlsCAFile`... flags) or through
the connection string (`tls=true`, `tlsCAFile`, `tlsCertificateKeyFile`), and the client key's
password through the `sslPEMKeyPassword` key of a --config file. Set MONGODB_TOOLS_BIN (and
MONGODB_CONTRACT_MONGOD) to run the same tests against mongo-tools and mongod; the assertions on
the double's own wording of a failure are skipped then.
"""

from __future__ import annotations

import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..tools import archive
from . import test_tls
from .conftest import AGAINST_DOUBLE, Launcher, Mongod
from .test_tls import KEY_PASSWORD, Pki, tls_args, tls_client
from .test_tools import FAST, MAGIC, TOOLS_BIN, populate, snapshot, tool

# test_tls.py's throw-away PKI (a CA, server and client certificates, a foreign CA), made afresh
# for this module by the same fixture.
pki = test_tls.pki
# The double's own wording (OpenSSL's reasons) is asserted only when the tools are the doubles.
DOUBLE_TOOLS = AGAINST_DOUBLE and not TOOLS_BIN


def flags(pki: Pki, ca: Path | None = None, certificate: Path | None = None) -> list[str]:
    """mongo-tools' TLS flags: the test CA (or `ca`) and the client certificate (or
    `certificate`)."""
    return [
        "--ssl",
        f"--sslCAFile={ca or pki.ca}",
        f"--sslPEMKeyFile={certificate or pki.client}",
    ]


def plain_uri(node: Mongod, extra: str = "") -> str:
    return f"mongodb://{node.address}/?{FAST}{extra}"


def tls_uri(node: Mongod, pki: Pki, tls_key: str = "tls", **options: str) -> str:
    """A connection string that enables TLS by itself (`tls_key`=true, CA, client certificate)."""
    query = {tls_key: "true", "tlsCAFile": str(pki.ca), "tlsCertificateKeyFile": str(pki.client)}
    query.update(options)
    return plain_uri(node, "&" + urllib.parse.urlencode(query, safe="/"))


def start_required(launcher: Launcher, pki: Pki) -> Mongod:
    """A standalone under requireTLS that needs client certificates of the test CA."""
    return launcher.start(tls_args(pki), client_options=tls_client(pki, pki.client))


@pytest.fixture(scope="module")
def source(module_launcher: Launcher, pki: Pki) -> Iterator[Mongod]:
    node = start_required(module_launcher, pki)
    client = node.client()
    try:
        populate(client)
    finally:
        client.close()
    yield node


@pytest.fixture(scope="module")
def tls_dump(source: Mongod, pki: Pki) -> bytes:
    """An archive of the source, dumped over TLS with the flags."""
    dump = tool("mongodump", f"--uri={plain_uri(source)}", *flags(pki), "--archive")
    assert dump.returncode == 0, dump.stderr.decode()
    return dump.stdout


def assert_same_data(source: Mongod, target: Mongod) -> None:
    src, dst = source.client(), target.client()
    try:
        for db in ("app", "other"):
            assert snapshot(dst, db) == snapshot(src, db)
    finally:
        src.close()
        dst.close()


def connection_failure(proc: subprocess.CompletedProcess[bytes]) -> str:
    """The stderr of a tool that could not connect (exit 1, nothing on stdout)."""
    assert proc.returncode == 1, proc.stderr.decode()
    assert proc.stdout == b""
    return proc.stderr.decode()


def test_round_trip_with_the_tls_flags(
    source: Mongod, tls_dump: bytes, launcher: Launcher, pki: Pki, tmp_path: Path
) -> None:
    assert tls_dump[:4] == MAGIC
    names = {(m["db"], m["collection"]) for m in archive.read_archive(tls_dump).metadata}
    assert {("app", "people"), ("app", "orders"), ("other", "logs")} <= names
    path = tmp_path / "tls.archive.gz"
    dump = tool(
        "mongodump", f"--uri={plain_uri(source)}", *flags(pki), "--gzip", f"--archive={path}"
    )
    assert dump.returncode == 0, dump.stderr.decode()
    assert "done dumping app.people (30 documents)" in dump.stderr.decode()
    target = start_required(launcher, pki)
    restore = tool(
        "mongorestore", f"--uri={plain_uri(target)}", *flags(pki), "--gzip", f"--archive={path}"
    )
    assert restore.returncode == 0, restore.stderr.decode()
    assert "281 document(s) restored successfully. 0 document(s) failed" in restore.stderr.decode()
    assert_same_data(source, target)


def test_round_trip_with_uri_options(source: Mongod, launcher: Launcher, pki: Pki) -> None:
    dump = tool("mongodump", f"--uri={tls_uri(source, pki)}", "--archive")
    assert dump.returncode == 0, dump.stderr.decode()
    target = start_required(launcher, pki)
    # `ssl` is the older name of `tls`, and a connection string may be a positional argument.
    restore = tool("mongorestore", tls_uri(target, pki, "ssl"), "--archive", stdin=dump.stdout)
    assert restore.returncode == 0, restore.stderr.decode()
    assert_same_data(source, target)


def test_without_ssl_the_tools_fail_against_require_tls(
    source: Mongod, tls_dump: bytes, pki: Pki
) -> None:
    # The CA and the certificate alone do not turn TLS on: the connection stays plaintext and the
    # server closes it.
    files = flags(pki)[1:]
    dump = tool("mongodump", f"--uri={plain_uri(source)}", *files, "--archive")
    assert "can't create session" in connection_failure(dump)
    restore = tool(
        "mongorestore", f"--uri={plain_uri(source)}", *files, "--archive", stdin=tls_dump
    )
    connection_failure(restore)
    client = source.client()
    try:
        assert client.app.orders.count_documents({}) == 250
    finally:
        client.close()


def test_a_ca_that_did_not_sign_the_server_certificate_fails_verification(
    source: Mongod, tls_dump: bytes, pki: Pki
) -> None:
    dump = tool("mongodump", f"--uri={plain_uri(source)}", *flags(pki, pki.foreign_ca), "--archive")
    err = connection_failure(dump)
    assert "can't create session" in err
    assert "certificate signed by unknown authority" in err
    if DOUBLE_TOOLS:
        assert "(certificate verify failed: " in err
    foreign = tls_uri(source, pki, tlsCAFile=str(pki.foreign_ca))
    restore = tool("mongorestore", f"--uri={foreign}", "--archive", stdin=tls_dump)
    assert "certificate signed by unknown authority" in connection_failure(restore)


def test_a_client_certificate_from_a_foreign_ca_is_refused(
    source: Mongod, tls_dump: bytes, pki: Pki
) -> None:
    foreign = flags(pki, certificate=pki.foreign_client)
    dump = tool("mongodump", f"--uri={plain_uri(source)}", *foreign, "--archive")
    # The server refuses the certificate after the client's side of the handshake (TLS 1.3):
    # the tool sees the connection closed, or an alert.
    assert "can't create session" in connection_failure(dump)
    restore = tool(
        "mongorestore", f"--uri={plain_uri(source)}", *foreign, "--archive", stdin=tls_dump
    )
    connection_failure(restore)


def test_a_client_without_certificate_is_refused(source: Mongod, pki: Pki) -> None:
    dump = tool(
        "mongodump", f"--uri={plain_uri(source)}", "--ssl", f"--sslCAFile={pki.ca}", "--archive"
    )
    assert "can't create session" in connection_failure(dump)


def test_the_server_host_name_is_checked(launcher: Launcher, pki: Pki) -> None:
    # This server's certificate names DNS localhost only: not the address 127.0.0.1.
    args = ["--tlsMode", "requireTLS", "--tlsCAFile", str(pki.ca)]
    node = launcher.start([*args, "--tlsCertificateKeyFile", str(pki.localhost_only)])
    by_address = tool("mongodump", f"--uri={plain_uri(node)}", *flags(pki), "--archive")
    err = connection_failure(by_address)
    assert "can't create session" in err and "x509: " in err
    if DOUBLE_TOOLS:
        assert "certificate is not valid for 127.0.0.1" in err
        assert "(certificate verify failed: IP address mismatch" in err
    by_name = f"--uri=mongodb://localhost:{node.port}/?{FAST}"
    named = tool("mongodump", by_name, *flags(pki), "--archive")
    assert named.returncode == 0, named.stderr.decode()
    assert named.stdout[:4] == MAGIC
    insecure = tool(
        "mongodump", f"--uri={plain_uri(node)}", *flags(pki), "--tlsInsecure", "--archive"
    )
    assert insecure.returncode == 0, insecure.stderr.decode()


def test_key_password_from_the_config_file(source: Mongod, pki: Pki, tmp_path: Path) -> None:
    config = tmp_path / "mongo-backup.yaml"
    config.write_text(f'# client key\nsslPEMKeyPassword: "{KEY_PASSWORD}"\n')
    config.chmod(0o600)
    # The encrypted key is the server's, whose certificate (CA-signed) is usable by a client too.
    args = [f"--uri={plain_uri(source)}", *flags(pki, certificate=pki.encrypted)]
    args.append(f"--config={config}")
    assert all(KEY_PASSWORD not in arg for arg in args)
    dump = tool("mongodump", *args, "--archive", "--gzip")
    assert dump.returncode == 0, dump.stderr.decode()
    assert KEY_PASSWORD not in dump.stderr.decode()
    restore = tool("mongorestore", *args, "--archive", "--gzip", "--drop", stdin=dump.stdout)
    assert restore.returncode == 0, restore.stderr.decode()
    assert "281 document(s) restored successfully" in restore.stderr.decode()
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("sslPEMKeyPassword: not-the-pass-phrase\n")
    failed = tool("mongodump", *args[:-1], f"--config={wrong}", "--archive")
    assert "can't load client certificate" in connection_failure(failed)


def test_an_encrypted_key_without_password_is_refused(source: Mongod, pki: Pki) -> None:
    # mongo-tools ask for the password; without a terminal they read one line of stdin (empty).
    dump = tool(
        "mongodump",
        f"--uri={plain_uri(source)}",
        *flags(pki, certificate=pki.encrypted),
        "--archive",
        stdin=b"",
    )
    err = connection_failure(dump)
    assert "Enter password for client certificate:" in err
    assert "no password provided to decrypt private key" in err


def test_tls_insecure_skips_the_server_certificate_checks(
    source: Mongod, pki: Pki, tmp_path: Path
) -> None:
    insecure = tool(
        "mongodump",
        f"--uri={plain_uri(source)}",
        *flags(pki, pki.foreign_ca),
        "--tlsInsecure",
        "--db=other",
        "--archive",
    )
    assert insecure.returncode == 0, insecure.stderr.decode()
    assert len(archive.read_archive(insecure.stdout).documents[("other", "logs")]) == 1
    # The deprecated flags turn every check off as well, with a warning.
    hostnames = tool(
        "mongodump",
        f"--uri={plain_uri(source)}",
        *flags(pki, pki.foreign_ca),
        "--sslAllowInvalidHostnames",
        "--db=other",
        "--archive",
    )
    assert hostnames.returncode == 0, hostnames.stderr.decode()
    assert "--sslAllowInvalidHostnames are deprecated" in hostnames.stderr.decode()
    in_uri = tool(
        "mongodump",
        f"--uri={tls_uri(source, pki, tlsCAFile=str(pki.foreign_ca), tlsInsecure='true')}",
        "--db=other",
        "--archive",
    )
    assert in_uri.returncode == 0, in_uri.stderr.decode()


def test_uri_allow_invalid_certificates_is_ignored(source: Mongod, pki: Pki) -> None:
    # The Go driver's connection string parser does not know these options: they change nothing.
    uri = tls_uri(
        source,
        pki,
        tlsCAFile=str(pki.foreign_ca),
        tlsAllowInvalidCertificates="true",
        tlsAllowInvalidHostnames="true",
    )
    dump = tool("mongodump", f"--uri={uri}", "--archive")
    err = connection_failure(dump)
    assert "certificate signed by unknown authority" in err
    if DOUBLE_TOOLS:
        assert "ignoring unsupported URI parameter 'tlsallowinvalidcertificates'" in err
        assert "ignoring unsupported URI parameter 'tlsallowinvalidhostnames'" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--uri=mongodb://127.0.0.1:1/?tls=false", "--ssl"],
            "error parsing command line options: Invalid Options: Cannot specify different ssl "
            'in connection URI and command-line option ("false" was specified in the URI and '
            '"true" was specified in the --ssl option)',
        ),
        (
            ["--uri=mongodb://127.0.0.1:1/?tls=true&ssl=false"],
            "tls and ssl options, when both specified, must be equivalent",
        ),
        (
            ["--uri=mongodb://127.0.0.1:1/?tlsCAFile=/a.pem", "--ssl", "--sslCAFile=/b.pem"],
            "Cannot specify different sslCAFile in connection URI and command-line option",
        ),
        (
            ["--uri=mongodb://127.0.0.1:1/?tlsInsecure=false", "--ssl", "--tlsInsecure"],
            "Cannot specify different sslInsecure or tlsInsecure in connection URI",
        ),
        (["--tls", "--uri=mongodb://127.0.0.1:1/"], "unknown option"),
        (["--tlsCAFile=/a.pem", "--uri=mongodb://127.0.0.1:1/"], "unknown option"),
        (
            ["--uri=mongodb://127.0.0.1:1/", "--ssl", "--sslCRLFile=/crl.pem"],
            "Failed: can't create session: error configuring the connector: CRL files are not "
            "supported on this platform",
        ),
        (
            ["--uri=mongodb://127.0.0.1:1/", "--ssl", "--sslFIPSMode"],
            "error configuring the connector: FIPS mode not supported",
        ),
        (
            ["--uri=mongodb://127.0.0.1:1/", "--ssl", "--sslCAFile=/no/such/ca.pem"],
            "error configuring client, can't load CA file: open /no/such/ca.pem: no such file",
        ),
    ],
)
def test_tls_option_errors_exit_1(args: list[str], message: str) -> None:
    for name in ("mongodump", "mongorestore"):
        proc = tool(name, *args, "--archive", stdin=b"")
        assert proc.returncode == 1, proc.stderr.decode()
        if name == "mongodump" or DOUBLE_TOOLS:
            assert message in proc.stderr.decode()


@pytest.mark.skipif(not DOUBLE_TOOLS, reason="reads the double's redaction of the URI")
def test_the_key_password_of_the_uri_is_not_logged(pki: Pki) -> None:
    uri = (
        "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300&tls=true"
        f"&tlsCertificateKeyFile={pki.encrypted}&tlsCertificateKeyFilePassword={KEY_PASSWORD}"
    )
    proc = tool("mongodump", f"--uri={uri}", "--archive")
    err = proc.stderr.decode()
    assert proc.returncode == 1
    assert "connection refused" in err
    assert KEY_PASSWORD not in err
    assert "tlsCertificateKeyFilePassword=<redacted>" in err
