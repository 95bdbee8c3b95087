"""The tls_certificate role on this machine (connection local, its files under a temporary
directory) against SSM served by moto: the CA created once, the host's certificate signed by it
with the host's names, renewal, and what is refused before anything changes."""

from __future__ import annotations

import base64
import datetime
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.harness.controller_playbook import ROOT, Run, empty_moto, run_playbook
from tests.harness.moto_ec2 import aws_client

PLAYBOOK = ROOT / "tests" / "unit" / "playbooks" / "files" / "tls_certificate.yml"
NAMES = ["api-1.clinic.test", "127.0.0.1", "localhost"]
KMS_KEY = "alias/clinic-test"


@pytest.fixture(scope="module")
def moto() -> Iterator[dict[str, str]]:
    with empty_moto() as env:
        yield env


class Host:
    """One run target: an SSM prefix for its CA and a directory for its files."""

    def __init__(self, env: dict[str, str], directory: Path) -> None:
        self.env = env
        self.prefix = f"/clinic/test-{secrets.token_hex(4)}/tls"
        self.dir = directory

    def run(self, *args: str) -> Run:
        return run_playbook(
            str(PLAYBOOK), Path("localhost,"), self.env,
            "-e", f"ansible_python_interpreter={sys.executable}",
            "-e", f"tls_prefix={self.prefix}", "-e", f"tls_dir={self.dir}", *args,
        )  # fmt: skip

    def parameter(self, name: str) -> dict[str, Any]:
        ssm = aws_client(self.env, "ssm")
        return ssm.get_parameter(Name=f"{self.prefix}/{name}", WithDecryption=True)["Parameter"]

    def key_id(self, name: str) -> str:
        """The KMS key a SecureString is encrypted with, as SSM describes the parameter."""
        ssm = aws_client(self.env, "ssm")
        described = ssm.describe_parameters(
            ParameterFilters=[{"Key": "Name", "Values": [f"{self.prefix}/{name}"]}]
        )["Parameters"]
        return described[0]["KeyId"]

    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate((self.dir / "host.crt").read_bytes())

    def authority(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate((self.dir / "ca.pem").read_bytes())


def private_fragments(pem: str) -> list[str]:
    """What a private key's secret looks like in any text: the part of its PEM that holds the
    private scalar (the rest of an EC key's PEM is framing and the public key), and the scalar in
    hex."""
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    scalar = key.private_numbers().private_value.to_bytes((key.curve.key_size + 7) // 8, "big")
    body = "".join(pem.strip().splitlines()[1:-1])
    der = base64.b64decode(body)
    start = der.index(scalar) * 4 // 3 + 4
    return [body[start : start + 24], scalar.hex()]


def succeeded(run: Run) -> dict[str, int]:
    assert run.returncode == 0, run.output
    return run.recap


@pytest.fixture(scope="module")
def host(moto: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Host:
    """A host converged once, whose run created the CA with the environment's KMS key."""
    host = Host(moto, tmp_path_factory.mktemp("tls") / "etc-tls")
    assert succeeded(host.run("-e", f"tls_certificate_ca_kms_key_alias={KMS_KEY}"))["changed"] > 0
    return host


def test_ca_is_created_in_ssm_with_its_key_encrypted(host: Host) -> None:
    key = host.parameter("ca_key")
    certificate = host.parameter("ca_certificate")
    assert key["Type"] == "SecureString"
    assert host.key_id("ca_key") == KMS_KEY
    assert certificate["Type"] == "String"
    authority = x509.load_pem_x509_certificate(certificate["Value"].encode())
    ca_key = serialization.load_pem_private_key(key["Value"].encode(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey) and ca_key.curve.name == "secp384r1"
    assert authority.public_key() == ca_key.public_key()
    constraints = authority.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    assert (host.dir / "ca.pem").read_text().strip() == certificate["Value"].strip()


def test_host_certificate_is_signed_by_the_ca_for_its_names_and_both_uses(host: Host) -> None:
    certificate = host.certificate()
    certificate.verify_directly_issued_by(host.authority())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(
        [
            *names.get_values_for_type(x509.DNSName),
            *map(str, names.get_values_for_type(x509.IPAddress)),
        ]
    ) == sorted(NAMES)
    usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    lifetime = certificate.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(days=396) < lifetime <= datetime.timedelta(days=397)


def test_combined_file_is_the_certificate_and_the_hosts_own_key(host: Host) -> None:
    key = serialization.load_pem_private_key((host.dir / "host.key").read_bytes(), password=None)
    combined = (host.dir / "host.pem").read_bytes()
    assert x509.load_pem_x509_certificate(combined) == host.certificate()
    assert (
        serialization.load_pem_private_key(combined, password=None).private_numbers()
        == key.private_numbers()
    )
    assert host.certificate().public_key() == key.public_key()


def test_key_files_are_readable_by_owner_and_group_only(host: Host) -> None:
    modes = {
        name: (host.dir / name).stat().st_mode & 0o777
        for name in ("host.key", "host.pem", "ca.pem")
    }
    assert modes == {"host.key": 0o640, "host.pem": 0o640, "ca.pem": 0o644}
    assert host.dir.stat().st_mode & 0o777 == 0o750


def test_rerun_changes_nothing_and_logs_no_key(host: Host) -> None:
    ca_key = host.parameter("ca_key")["Value"]
    run = host.run("-vvv")
    assert succeeded(run)["changed"] == 0
    for pem in (ca_key, (host.dir / "host.key").read_text()):
        for fragment in private_fragments(pem):
            assert fragment not in run.output
    assert host.parameter("ca_key")["Version"] == 1


def test_check_mode_changes_nothing(host: Host) -> None:
    assert succeeded(host.run("--check"))["changed"] == 0


def test_another_host_gets_its_certificate_from_the_same_ca(host: Host, tmp_path: Path) -> None:
    other = Host(host.env, tmp_path / "etc-tls")
    other.prefix = host.prefix
    succeeded(other.run())
    other.certificate().verify_directly_issued_by(host.authority())
    assert other.certificate().public_key() != host.certificate().public_key()
    assert host.parameter("ca_key")["Version"] == 1


def test_certificate_due_for_renewal_is_signed_again_with_the_same_key(
    moto: dict[str, str], tmp_path: Path
) -> None:
    host = Host(moto, tmp_path / "etc-tls")
    succeeded(host.run("-e", "tls_certificate_valid_days=20 tls_certificate_renew_days=10"))
    before = host.certificate()
    # Due: it expires within the default 30 days.
    assert succeeded(host.run())["changed"] > 0
    after = host.certificate()
    assert after.not_valid_after_utc - before.not_valid_after_utc > datetime.timedelta(days=370)
    assert after.serial_number != before.serial_number
    assert after.public_key() == before.public_key()
    after.verify_directly_issued_by(host.authority())
    assert succeeded(host.run())["changed"] == 0


def test_changed_names_are_signed_again(moto: dict[str, str], tmp_path: Path) -> None:
    host = Host(moto, tmp_path / "etc-tls")
    succeeded(host.run())
    # No tls_certificate_ca_kms_key_alias: the CA's key is under SSM's default key.
    assert host.key_id("ca_key") == "alias/aws/ssm"
    names = '{"tls_certificate_subject_alt_names": ["DNS:api-2.clinic.test", "IP:127.0.0.2"]}'
    assert succeeded(host.run("-e", names))["changed"] > 0
    san = host.certificate().extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == ["api-2.clinic.test"]


def test_ca_that_is_half_there_is_refused_and_never_replaced(
    moto: dict[str, str], tmp_path: Path
) -> None:
    host = Host(moto, tmp_path / "etc-tls")
    succeeded(host.run())
    key = host.parameter("ca_key")["Value"]
    aws_client(moto, "ssm").delete_parameter(Name=f"{host.prefix}/ca_certificate")
    run = host.run()
    assert run.returncode != 0
    assert "SSM has the CA's key but not its certificate" in run.output
    assert host.parameter("ca_key")["Value"] == key


def test_ca_is_not_created_unless_allowed(moto: dict[str, str], tmp_path: Path) -> None:
    host = Host(moto, tmp_path / "etc-tls")
    run = host.run("-e", "tls_certificate_ca_create=false")
    assert run.returncode != 0
    assert "tls_certificate_ca_create is false" in run.output
    assert not (tmp_path / "etc-tls").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("tls_certificate_renew_days=400", "tls_certificate_renew_days (400) must be less than"),
        (
            '{"tls_certificate_subject_alt_names": ["IP:10.0.0.0/8"]}',
            "tls_certificate_subject_alt_names",
        ),
        ('{"tls_certificate_subject_alt_names": ["IP:clinic.test"]}', '["IP:clinic.test"]'),
        ("tls_certificate_valid_days=many", "tls_certificate_valid_days"),
    ],
)
def test_bad_input_is_refused_before_any_change(
    moto: dict[str, str], tmp_path: Path, extra: str, message: str
) -> None:
    host = Host(moto, tmp_path / "etc-tls")
    run = host.run("-e", extra)
    assert run.returncode != 0
    assert message in run.output
    assert not (tmp_path / "etc-tls").exists()
    assert not aws_client(moto, "ssm").describe_parameters(
        ParameterFilters=[{"Key": "Name", "Option": "BeginsWith", "Values": [host.prefix]}]
    )["Parameters"]


def test_certificate_of_a_replaced_ca_is_signed_again(moto: dict[str, str], tmp_path: Path) -> None:
    host = Host(moto, tmp_path / "etc-tls")
    succeeded(host.run())
    before = host.certificate()
    ssm = aws_client(moto, "ssm")
    ssm.delete_parameters(Names=[f"{host.prefix}/ca_key", f"{host.prefix}/ca_certificate"])
    assert succeeded(host.run())["changed"] > 0
    after = host.certificate()
    after.verify_directly_issued_by(host.authority())
    assert after.issuer == before.issuer  # the same name: only the key tells the CAs apart
    identifier = x509.AuthorityKeyIdentifier
    assert (
        after.extensions.get_extension_for_class(identifier).value
        != before.extensions.get_extension_for_class(identifier).value
    )
