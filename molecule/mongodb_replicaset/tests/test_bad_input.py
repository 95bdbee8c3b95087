"""Bad input is refused before the role changes anything, with a message that says what to fix.

Each case runs bad_input.yml (the role alone, with the scenario's vars.yml) against the converged
set with one input changed by -e.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
from collections.abc import Iterator

import pytest
from cryptography import x509

from tests.harness.pki import Authority, certificate_pem, key_file_pem

REPLSET = ["mdb1", "mdb2", "mdb3"]
REPLSET_PLUS = [*REPLSET, "mdb4"]
MISSING_KEYFILE = "/clinic/molecule/mongodb/no-such-keyfile"

TLS_DIR = "/etc/clinic-bad-tls"


def write_on(host: str, command: str, content: bytes) -> None:
    """Run a shell command in a member's container with content on its standard input."""
    subprocess.run(["docker", "exec", "-i", host, "sh", "-c", command], input=content, check=True)


@pytest.fixture(scope="module")
def tls_files() -> Iterator[None]:
    """A CA and, on every member, a certificate of it whose only SAN is another address."""
    authority = Authority.create("clinic bad-input CA")
    key, cert = authority.issue("elsewhere", [x509.IPAddress(ipaddress.ip_address("172.30.43.99"))])
    files = {"ca.pem": certificate_pem(authority.cert), "member.pem": key_file_pem(cert, key)}
    for host in REPLSET:
        for name, content in files.items():
            write_on(host, f"umask 077 && mkdir -p {TLS_DIR} && cat > {TLS_DIR}/{name}", content)
    yield
    for host in REPLSET:
        subprocess.run(["docker", "exec", host, "rm", "-rf", TLS_DIR], check=True)


# case: (extra vars, hosts of the run, the role's message)
CASES = {
    "even-number-of-voters": (
        # mdb4's host_vars make it non-voting; the -e gives it a vote: 4 voters.
        {"mdb_group": "replset_plus", "mongodb_replicaset_votes": 1},
        REPLSET_PLUS,
        "in group 'replset_plus' has 4 voting members of 4: "
        "it needs an odd number of voting members",
    ),
    "missing-keyfile-secret": (
        {"mdb_keyfile_parameter": MISSING_KEYFILE},
        REPLSET,
        f"Failed to find SSM parameter {MISSING_KEYFILE}",
    ),
    "duplicate-member-address": (
        {"mongodb_replicaset_member_address": "172.30.43.11"},
        REPLSET,
        "Members must have distinct addresses; listed more than once: 172.30.43.11:27017.",
    ),
    "unsupported-version": (
        {"mongodb_replicaset_version": "6.0.15"},
        REPLSET,
        "MongoDB 6.0.15 is not supported: set mongodb_replicaset_version to an exact 7.0.x or "
        "8.0.x version.",
    ),
    # Each member gets a certificate of the test CA for another address (tls_files below).
    "tls-certificate-for-another-address": (
        {
            "mongodb_replicaset_tls_mode": "requireTLS",
            "mongodb_replicaset_tls_certificate_key_file": f"{TLS_DIR}/member.pem",
            "mongodb_replicaset_tls_ca_file": f"{TLS_DIR}/ca.pem",
        },
        REPLSET,
        "mongodb_replicaset_tls_certificate_key_file: the certificate's subjectAltName "
        "(IP:172.30.43.99) does not cover 172.30.43.11",
    ),
    # The set runs requireTLS: plaintext in one step would cut every client and member off.
    "tls-mode-more-than-one-step": (
        {"mongodb_replicaset_tls_mode": "disabled"},
        REPLSET,
        "mongodb_replicaset_tls_mode: mdb1 runs net.tls.mode requireTLS; converge with preferTLS "
        "first.",
    ),
    "unreachable-repository": (
        {"mongodb_replicaset_repo_url": "http://172.30.43.6"},
        REPLSET,
        "The MongoDB repository http://172.30.43.6/dists/bookworm/Release is not reachable from",
    ),
}


def assert_refused_early(result, recap, tail, hosts: list[str], message: str) -> None:  # noqa: ANN001
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, tail(result)
    assert message in output, tail(result)
    counters = recap(result)
    assert sorted(counters) == hosts
    assert {host: c["changed"] for host, c in counters.items()} == dict.fromkeys(hosts, 0)
    assert sum(c["failed"] for c in counters.values()) >= 1
    # No host got past the role's checks (its argument spec, tasks/assert.yml and assert_tls.yml).
    started = re.findall(
        r"^TASK \[clinic\.infra\.mongodb_replicaset : (.*?)\]", result.stdout, re.M
    )
    assert started
    checks = ("Validating arguments against arg spec", "assert | ", "assert_tls | ")
    assert all(name.startswith(checks) for name in started), started


@pytest.mark.parametrize(("overrides", "hosts", "message"), CASES.values(), ids=CASES.keys())
@pytest.mark.usefixtures("tls_files")
def test_bad_input_is_refused_early(ansible_playbook, recap, tail, overrides, hosts, message):  # noqa: ANN001, ANN201
    result = ansible_playbook("bad_input.yml", "-e", json.dumps(overrides), timeout=600)
    assert_refused_early(result, recap, tail, hosts, message)


@pytest.fixture
def half_applied_prefer_tls(host_named) -> Iterator[None]:  # noqa: ANN001
    """mdb1 as a run towards preferTLS leaves it when it stops after writing mongod.conf and before
    the rolling restart: the file says preferTLS, mongod still runs requireTLS."""
    conf = host_named("mdb1").file("/etc/mongod.conf").content
    assert b"mode: requireTLS" in conf, conf
    ahead = conf.replace(b"mode: requireTLS", b"mode: preferTLS")
    write_on("mdb1", "cat > /etc/mongod.conf", ahead)
    yield
    write_on("mdb1", "cat > /etc/mongod.conf", conf)


@pytest.mark.usefixtures("half_applied_prefer_tls")
def test_a_step_is_judged_from_the_mode_mongod_runs(ansible_playbook, recap, tail):  # noqa: ANN001, ANN201
    """allowTLS is one step from mdb1's mongod.conf, but two from the mode its mongod runs."""
    overrides = {"mongodb_replicaset_tls_mode": "allowTLS"}
    result = ansible_playbook("bad_input.yml", "-e", json.dumps(overrides), timeout=600)
    message = (
        "mongodb_replicaset_tls_mode: mdb1 runs net.tls.mode requireTLS; converge with preferTLS "
        "first."
    )
    assert_refused_early(result, recap, tail, REPLSET, message)
