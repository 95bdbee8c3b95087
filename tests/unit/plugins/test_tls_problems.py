"""clinic.infra.tls_problems: a certificate key file and its CA bundle, checked before use."""

from __future__ import annotations

import datetime
import ipaddress
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from plugins.filter.tls_problems import tls_problems
from tests.harness.pki import Authority, Key, certificate_pem, key_file_pem, key_pem, new_key

NOW = datetime.datetime(2026, 12, 6, 12, 0, tzinfo=datetime.UTC)
HOST = "mdb1.clinic.internal"
ADDRESS = "10.20.1.11"
CERT_VAR = "mongodb_replicaset_tls_certificate_key_file"
CA_VAR = "mongodb_replicaset_tls_ca_file"
MEMBER_NAMES = [x509.DNSName(HOST), x509.IPAddress(ipaddress.ip_address(ADDRESS))]
YEAR = {
    "not_before": NOW - datetime.timedelta(days=1),
    "not_after": NOW + datetime.timedelta(days=365),
}


@pytest.fixture(scope="module")
def authority() -> Authority:
    return Authority.create(
        "clinic stage CA", not_before=YEAR["not_before"], not_after=YEAR["not_after"]
    )


def member(authority: Authority, **kwargs: Any) -> tuple[Key, x509.Certificate]:
    """A member's certificate and key: SANs its host name and address, valid for a year."""
    names = kwargs.pop("names", MEMBER_NAMES)
    return authority.issue(HOST, names, **{**YEAR, **kwargs})


def check(bundle: bytes, ca: bytes, names: list[str] | None = None, **kwargs: Any) -> list[str]:
    return tls_problems(
        bundle.decode(),
        ca.decode(),
        names or [HOST, ADDRESS],
        CERT_VAR,
        CA_VAR,
        now=NOW.isoformat(),
        **kwargs,
    )


def ca_pem(authority: Authority) -> bytes:
    return certificate_pem(authority.cert)


def test_a_sound_certificate_has_no_problem(authority: Authority) -> None:
    key, cert = member(authority)
    assert check(key_file_pem(cert, key), ca_pem(authority)) == []


def test_a_wildcard_covers_one_label_and_names_compare_case_insensitively(
    authority: Authority,
) -> None:
    key, cert = member(authority, names=[x509.DNSName("*.Clinic.Internal")])
    bundle, ca = key_file_pem(cert, key), ca_pem(authority)
    assert check(bundle, ca, ["MDB1.clinic.internal"]) == []
    (problem,) = check(bundle, ca, ["a.mdb1.clinic.internal", "clinic.internal"])
    assert problem.endswith("does not cover a.mdb1.clinic.internal, clinic.internal")


def test_a_key_that_does_not_match_is_refused(authority: Authority) -> None:
    _, cert = member(authority)
    assert check(key_file_pem(cert, new_key()), ca_pem(authority)) == [
        f"{CERT_VAR}: the private key does not match the certificate"
    ]


def test_a_bundle_that_did_not_sign_it_is_refused(authority: Authority) -> None:
    key, cert = member(authority)
    other = Authority.create("clinic stage CA")  # the same name, another key
    (problem,) = check(key_file_pem(cert, key), ca_pem(other))
    assert problem.startswith(f"{CA_VAR} does not hold the CA that signed the certificate")


def test_an_intermediate_in_the_file_chains_to_the_bundle(authority: Authority) -> None:
    issuing = authority.intermediate("clinic issuing CA")
    key, cert = member(issuing)
    assert check(key_file_pem(cert, key, issuing.cert), ca_pem(authority)) == []
    (problem,) = check(key_file_pem(cert, key), ca_pem(authority))
    assert "does not hold the CA that signed" in problem


@pytest.mark.parametrize(
    ("window", "message"),
    [
        ((-30, -1), "the certificate expired on 2026-12-05"),
        ((1, 30), "the certificate is not valid before 2026-12-07"),
    ],
)
def test_a_certificate_outside_its_validity_is_refused(
    authority: Authority, window: tuple[int, int], message: str
) -> None:
    start, end = (NOW + datetime.timedelta(days=d) for d in window)
    key, cert = member(authority, not_before=start, not_after=end)
    (problem,) = check(key_file_pem(cert, key), ca_pem(authority))
    assert problem.startswith(f"{CERT_VAR}: {message}")


def test_a_certificate_expiring_within_the_threshold_is_reported(authority: Authority) -> None:
    key, cert = member(authority, not_after=NOW + datetime.timedelta(days=10))
    bundle = key_file_pem(cert, key)
    assert check(bundle, ca_pem(authority), min_days=5) == []
    (problem,) = check(bundle, ca_pem(authority), min_days=30)
    assert problem.endswith("within 30 days")


def test_an_expired_ca_is_refused() -> None:
    old = Authority.create(
        "old CA", not_before=YEAR["not_before"], not_after=NOW - datetime.timedelta(hours=1)
    )
    key, cert = member(old)
    (problem,) = check(key_file_pem(cert, key), ca_pem(old))
    assert problem.startswith(f"{CA_VAR}: the CA certificate expired on")


def test_an_expired_intermediate_is_refused(authority: Authority) -> None:
    issuing = authority.intermediate(
        "clinic issuing CA",
        not_before=YEAR["not_before"],
        not_after=NOW - datetime.timedelta(hours=1),
    )
    key, cert = member(issuing)
    (problem,) = check(key_file_pem(cert, key, issuing.cert), ca_pem(authority))
    assert problem.startswith(f"{CERT_VAR}: the intermediate CA certificate expired on")


def test_a_san_that_does_not_cover_the_host_is_refused(authority: Authority) -> None:
    key, cert = member(authority, names=[x509.DNSName("mdb2.clinic.internal")])
    (problem,) = check(key_file_pem(cert, key), ca_pem(authority))
    assert problem == (
        f"{CERT_VAR}: the certificate's subjectAltName (DNS:mdb2.clinic.internal) does not cover "
        f"{HOST}, {ADDRESS}"
    )
    bare_key, bare = member(authority, names=[])
    (problem,) = check(key_file_pem(bare, bare_key), ca_pem(authority))
    assert "subjectAltName (none)" in problem


def test_a_server_only_usage_is_refused(authority: Authority) -> None:
    key, cert = member(authority, usages=[ExtendedKeyUsageOID.SERVER_AUTH])
    (problem,) = check(key_file_pem(cert, key), ca_pem(authority))
    assert "extendedKeyUsage lacks clientAuth" in problem


def test_a_short_rsa_key_and_an_encrypted_key_are_refused(authority: Authority) -> None:
    short = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    _, cert = member(authority, key=short)
    (problem,) = check(key_file_pem(cert, short), ca_pem(authority))
    assert problem == f"{CERT_VAR}: an RSA key of 1024 bits; use 2048 or more"
    key, cert = member(authority)
    assert check(key_file_pem(cert, key, password="passphrase"), ca_pem(authority)) == [
        f"{CERT_VAR}: the private key is encrypted; the service is given no passphrase"
    ]


def test_missing_blocks_are_named(authority: Authority) -> None:
    key, cert = member(authority)
    assert check(key_pem(key), ca_pem(authority)) == [
        f"{CERT_VAR} holds no certificate (PEM CERTIFICATE block)"
    ]
    assert check(certificate_pem(cert), ca_pem(authority)) == [
        f"{CERT_VAR} holds no private key (PEM PRIVATE KEY block)"
    ]
    (problem,) = check(key_file_pem(cert, key), b"")
    assert problem == f"{CA_VAR} holds no CA certificate (PEM CERTIFICATE block)"


def test_blocks_that_do_not_parse_are_named(authority: Authority) -> None:
    key, cert = member(authority)
    garbled = b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
    assert check(key_file_pem(cert, key), garbled) == [
        f"{CERT_VAR} or {CA_VAR} holds a certificate that does not parse"
    ]
    marker = b"PRIVATE " + b"KEY-----"  # split: the secret scan refuses the whole marker
    bad_key = b"-----BEGIN " + marker + b"\nbm90IGEga2V5\n-----END " + marker + b"\n"
    assert check(certificate_pem(cert) + bad_key, ca_pem(authority)) == [
        f"{CERT_VAR}: the private key does not parse"
    ]
