"""Jinja filter that checks a certificate key file and its CA bundle before a service uses them."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

DOCUMENTATION = r"""
---
name: tls_problems
short_description: What is wrong with a certificate key file and its CA bundle
version_added: 0.1.0
description:
  - Checks the contents of a certificate key file (the certificate, any intermediates and its
    private key in one PEM file, as mongod's C(net.tls.certificateKeyFile) holds them) against a CA
    bundle (C(net.tls.CAFile)) and the names the service is reached at, and returns one message
    per problem, each naming the variable to fix; an empty list when they are sound.
  - "Problems: no certificate or no private key in the file; an encrypted private key (the role
    gives the service no passphrase); a key that does not match the certificate; a certificate
    that is expired or not valid yet, or expires within C(min_days) days; a CA bundle none of
    whose certificates signed it (or a signer that has expired); a subjectAltName that does not
    cover every name (DNS names case-insensitively, a wildcard for one leftmost label; IP
    addresses as addresses); an extendedKeyUsage without serverAuth and clientAuth (members
    present the same certificate to each other); an RSA key under 2048 bits."
  - Needs the Python package cryptography on the controller (a community.crypto requirement too).
positional: _input
options:
  _input:
    description: Contents of the certificate key file.
    type: str
    required: true
  ca:
    description: Contents of the CA bundle.
    type: str
    required: true
  names:
    description: Host names and IP addresses the certificate must cover.
    type: list
    elements: str
    required: true
  certificate_var:
    description: The variable that names the certificate key file, for the messages.
    type: str
    required: true
  ca_var:
    description: The variable that names the CA bundle, for the messages.
    type: str
    required: true
  min_days:
    description: Days the certificate must still be valid for.
    type: int
    default: 0
  now:
    description: The time to check validity at (ISO 8601); the current time when omitted.
    type: str
"""

EXAMPLES = r"""
problems: >-
  {{ certificate_key_pem | clinic.infra.tls_problems(ca_pem, ['db1.example.internal', '10.0.1.5'],
     'mongodb_replicaset_tls_certificate_key_file', 'mongodb_replicaset_tls_ca_file') }}
"""

RETURN = r"""
_value:
  description: Messages, one per problem; empty when the files are sound.
  type: list
  elements: str
"""

BEGIN = "-----BEGIN "
MIN_RSA_BITS = 2048


def _blocks(pem: str) -> list[tuple[str, bytes]]:
    """(label, PEM block) for each block of a PEM text."""
    out = []
    for part in pem.split(BEGIN)[1:]:
        label = part.split("-----", 1)[0]
        out.append((label, (BEGIN + part).strip().encode() + b"\n"))
    return out


def _utc(value: str | None) -> datetime.datetime:
    if not value:
        return datetime.datetime.now(datetime.UTC)
    moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def _day(moment: datetime.datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def _covers(pattern: str, name: str) -> bool:
    """A DNS name of a subjectAltName covers a host name (a wildcard: one leftmost label)."""
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == name


def _validity(leaf: Any, moment: datetime.datetime, min_days: int) -> str | None:
    if leaf.not_valid_before_utc > moment:
        return f"the certificate is not valid before {_day(leaf.not_valid_before_utc)}"
    if leaf.not_valid_after_utc <= moment:
        return f"the certificate expired on {_day(leaf.not_valid_after_utc)}"
    if leaf.not_valid_after_utc <= moment + datetime.timedelta(days=min_days):
        return (
            f"the certificate expires on {_day(leaf.not_valid_after_utc)}, within {min_days} days"
        )
    return None


def _issued_by(certificate: Any, authority: Any) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        certificate.verify_directly_issued_by(authority)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _issuers(leaf: Any, intermediates: list[Any], authorities: list[Any]) -> list[Any]:
    """The certificates that issued the leaf up to one of the bundle's, directly or through an
    intermediate of the certificate key file; empty when the bundle did not sign it."""
    for authority in authorities:
        if _issued_by(leaf, authority):
            return [authority]
    for intermediate in intermediates:
        if _issued_by(leaf, intermediate):
            root = next((a for a in authorities if _issued_by(intermediate, a)), None)
            return [intermediate, root] if root is not None else []
    return []


def _uncovered(leaf: Any, names: Sequence[str]) -> tuple[list[str], str]:
    """The names the subjectAltName does not cover, and what it holds."""
    from cryptography import x509

    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return list(names), "none"
    dns = san.get_values_for_type(x509.DNSName)
    ips = san.get_values_for_type(x509.IPAddress)
    uncovered = []
    for name in names:
        try:
            covered = ipaddress.ip_address(name) in ips
        except ValueError:
            covered = any(_covers(pattern, name) for pattern in dns)
        if not covered:
            uncovered.append(name)
    held = ", ".join([f"DNS:{d}" for d in dns] + [f"IP:{i}" for i in ips]) or "none"
    return uncovered, held


def _missing_usages(leaf: Any) -> list[str]:
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    try:
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return []
    wanted = (
        ("serverAuth", ExtendedKeyUsageOID.SERVER_AUTH),
        ("clientAuth", ExtendedKeyUsageOID.CLIENT_AUTH),
    )
    return [label for label, oid in wanted if oid not in usages]


def tls_problems(
    certificate_key: str,
    ca: str,
    names: Sequence[str],
    certificate_var: str,
    ca_var: str,
    min_days: int = 0,
    now: str | None = None,
) -> list[str]:
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
    except ImportError as exc:  # pragma: no cover - a controller without the package
        raise RuntimeError(
            "clinic.infra.tls_problems needs the Python package cryptography"
        ) from exc

    blocks = _blocks(certificate_key or "")
    try:
        certificates = [
            x509.load_pem_x509_certificate(b) for label, b in blocks if label == "CERTIFICATE"
        ]
        authorities = [
            x509.load_pem_x509_certificate(b)
            for label, b in _blocks(ca or "")
            if label == "CERTIFICATE"
        ]
    except ValueError:
        return [f"{certificate_var} or {ca_var} holds a certificate that does not parse"]
    keys = [b for label, b in blocks if label.endswith("PRIVATE KEY")]
    missing = [
        f"{what} ({label} block)"
        for what, label, found in (
            ("certificate", "PEM CERTIFICATE", certificates),
            ("private key", "PEM PRIVATE KEY", keys),
        )
        if not found
    ]
    if missing:
        return [f"{certificate_var} holds no {what}" for what in missing]
    leaf, intermediates = certificates[0], certificates[1:]
    try:
        key = serialization.load_pem_private_key(keys[0], password=None)
    except TypeError:
        return [
            f"{certificate_var}: the private key is encrypted; the service is given no passphrase"
        ]
    except ValueError:
        return [f"{certificate_var}: the private key does not parse"]

    problems = []
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if key.public_key().public_bytes(*spki) != leaf.public_key().public_bytes(*spki):
        problems.append(f"{certificate_var}: the private key does not match the certificate")
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < MIN_RSA_BITS:
        problems.append(
            f"{certificate_var}: an RSA key of {key.key_size} bits; use {MIN_RSA_BITS} or more"
        )
    moment = _utc(now)
    validity = _validity(leaf, moment, min_days)
    if validity:
        problems.append(f"{certificate_var}: {validity}")

    issuers = _issuers(leaf, intermediates, authorities)
    expired = next((c for c in issuers if c.not_valid_after_utc <= moment), None)
    if not authorities:
        problems.append(f"{ca_var} holds no CA certificate (PEM CERTIFICATE block)")
    elif not issuers:
        problems.append(
            f"{ca_var} does not hold the CA that signed the certificate in {certificate_var} "
            f"(issuer: {leaf.issuer.rfc4514_string()})"
        )
    elif expired is not None:
        where = f"{ca_var}: the"
        if expired not in authorities:
            where = f"{certificate_var}: the intermediate"
        problems.append(f"{where} CA certificate expired on {_day(expired.not_valid_after_utc)}")

    uncovered, held = _uncovered(leaf, names)
    if uncovered:
        problems.append(
            f"{certificate_var}: the certificate's subjectAltName ({held}) does not cover "
            + ", ".join(uncovered)
        )
    usages = _missing_usages(leaf)
    if usages:
        problems.append(
            f"{certificate_var}: the certificate's extendedKeyUsage lacks {' and '.join(usages)} "
            "(members present it to clients and to each other)"
        )
    return problems


class FilterModule:
    def filters(self) -> Mapping[str, Any]:
        return {"tls_problems": tls_problems}
