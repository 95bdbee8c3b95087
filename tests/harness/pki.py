"""A throw-away PKI for tests: CAs, intermediates, server and client certificates, as PEM.

Keys are P-256 unless one is given. Certificates are valid from a day ago for 30 days unless told
otherwise; a leaf has serverAuth and clientAuth (or clientAuth only for a client) unless its
usages are given.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Any private key cryptography can sign with (EC or RSA here).
Key = Any


def new_key() -> Key:
    return ec.generate_private_key(ec.SECP256R1())


def name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "clinic tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _builder(
    subject: str,
    issuer: x509.Name,
    key: Key,
    not_before: datetime.datetime | None,
    not_after: datetime.datetime | None,
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - datetime.timedelta(days=1))
        .not_valid_after(not_after or now + datetime.timedelta(days=30))
    )


def _ca_extensions(builder: x509.CertificateBuilder, key: Key) -> x509.CertificateBuilder:
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    return (
        builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )


@dataclass
class Authority:
    key: Key
    cert: x509.Certificate

    @classmethod
    def create(
        cls,
        common_name: str,
        key: Key | None = None,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
    ) -> Authority:
        """A self-signed CA."""
        key = key or new_key()
        builder = _builder(common_name, name(common_name), key, not_before, not_after)
        return cls(key, _ca_extensions(builder, key).sign(key, hashes.SHA256()))

    def intermediate(
        self,
        common_name: str,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
    ) -> Authority:
        """A CA this one signs."""
        key = new_key()
        builder = _builder(common_name, self.cert.subject, key, not_before, not_after)
        return Authority(key, _ca_extensions(builder, key).sign(self.key, hashes.SHA256()))

    def issue(
        self,
        common_name: str,
        names: list[x509.GeneralName],
        server: bool = True,
        key: Key | None = None,
        usages: list[x509.ObjectIdentifier] | None = None,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
    ) -> tuple[Key, x509.Certificate]:
        """A leaf certificate with subjectAltName `names` (none when empty); its key and itself."""
        key = key or new_key()
        if usages is None:
            usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
            if server:
                usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
        builder = (
            _builder(common_name, self.cert.subject, key, not_before, not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), False
            )
        )
        if usages:
            builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return key, builder.sign(self.key, hashes.SHA256())


def certificate_pem(*certs: x509.Certificate) -> bytes:
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certs)


def key_pem(key: Key, password: str | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode())
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def key_file_pem(
    cert: x509.Certificate, key: Key, *chain: x509.Certificate, password: str | None = None
) -> bytes:
    """A certificate key file as mongod reads it: the certificate, its chain, then the key."""
    return certificate_pem(cert, *chain) + key_pem(key, password)
