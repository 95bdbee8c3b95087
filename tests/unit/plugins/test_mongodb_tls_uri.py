"""clinic.infra.mongodb_tls_uri: the TLS options of a client, in its connection string."""

from __future__ import annotations

from pathlib import Path

import pytest
from pymongo.uri_parser import parse_uri

from plugins.filter.mongodb_tls_uri import mongodb_tls_uri

CA = "/etc/clinic/tls/ca.pem"
CERT = "/etc/clinic/tls/host.pem"


@pytest.fixture
def files(tmp_path: Path) -> tuple[str, str]:
    """A CA file and a certificate key file: pymongo opens both when it parses the options."""
    paths = (tmp_path / "ca.pem", tmp_path / "host.pem")
    for path in paths:
        path.write_text("")
    return str(paths[0]), str(paths[1])


@pytest.mark.parametrize(
    "uri",
    [
        "mongodb://backup@127.0.0.1:27017/?authSource=admin&directConnection=true",
        "mongodb://127.0.0.1:27017/",
        "mongodb://127.0.0.1:27017",
        "mongodb://app@10.0.1.1:27017,10.0.1.2:27017/clinic?replicaSet=rs0",
        "mongodb://127.0.0.1:27017/?",
    ],
)
def test_the_options_reach_the_driver_and_the_rest_is_kept(
    uri: str, files: tuple[str, str]
) -> None:
    ca, cert = files
    before = parse_uri(uri)
    after = parse_uri(mongodb_tls_uri(uri, ca, cert))
    assert after["options"]["tls"] is True
    assert after["options"]["tlsCAFile"] == ca
    assert after["options"]["tlsCertificateKeyFile"] == cert
    assert after["nodelist"] == before["nodelist"]
    assert after["database"] == before["database"]
    assert after["username"] == before["username"]
    kept = {key: value for key, value in after["options"].items() if not key.startswith("tls")}
    assert kept == dict(before["options"])


def test_a_path_with_uri_characters_arrives_whole(tmp_path: Path) -> None:
    odd = str(tmp_path / "clinic tls" / "a&b?%.pem")
    Path(odd).parent.mkdir()
    Path(odd).write_text("")
    options = parse_uri(mongodb_tls_uri("mongodb://h:27017/", odd, odd))["options"]
    assert options["tlsCAFile"] == odd
    assert options["tlsCertificateKeyFile"] == odd


def test_no_ca_file_leaves_the_connection_string_in_plaintext() -> None:
    uri = "mongodb://127.0.0.1:27017/?directConnection=true"
    assert mongodb_tls_uri(uri, "", "") == uri


@pytest.mark.parametrize(
    ("uri", "ca", "cert", "message"),
    [
        ("mongodb://h/?tls=false", CA, CERT, "already names a TLS option"),
        ("mongodb://h/?ssl=true", "", "", "already names a TLS option"),
        ("mongodb://h/?a=1&tlsCAFile=/x", CA, CERT, "already names a TLS option"),
        ("http://h/", CA, CERT, "not a MongoDB connection string"),
        ("mongodb://h/", CA, "", "needs certificate_key_file"),
    ],
)
def test_bad_input_is_refused(uri: str, ca: str, cert: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        mongodb_tls_uri(uri, ca, cert)
