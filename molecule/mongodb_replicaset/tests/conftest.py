"""Helpers for the replica set scenario: secrets, MongoDB clients, playbook runs and polling.

Everything MongoDB-related connects from the test machine (172.30.43.1 on the scenario network), the
way an application or an operator would, with the secrets read from SSM like the role reads them.
The set requires TLS: clients verify the members against the scenario's CA and present a client
certificate that CA signed for the test machine (its key and certificate read from moto's SSM).
Members are known to the set as "<address>:27017"; their containers are named mdb1..mdb3.

The modules run in a fixed order (MODULE_ORDER): bad input, which must change nothing, first; then
the freeze and the membership changes, which leave the set as they found it; the checks of the
converged set; the certificate renewal, and right after it the stop of the primary, whose converge
is the first run after the renewal (both must find nothing to change); last the rolling restart,
which leaves its parameter set (`pristine` takes it out when verify runs again on the same set).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import pytest
from pymongo import MongoClient
from pymongo.errors import PyMongoError
from rollouts import has_parameter

from tests.harness.pki import Authority

SET_NAME = "rs0"
PORT = 27017
HEALTHY_STATES = ("PRIMARY", "SECONDARY")
MODULE_ORDER = (
    "test_bad_input",
    "test_freeze",
    "test_membership",
    "test_replicaset",
    "test_tls",
    "test_failover",
    "test_rolling_restart",
)
# The scenario's CA in moto's SSM (vars.yml: tls_certificate_ca_*_parameter).
CA_PARAMETERS = "/clinic/molecule/mongodb/tls"


class Member(NamedTuple):
    name: str
    address: str

    @property
    def host(self) -> str:
        """The member's name in the replica set config."""
        return f"{self.address}:{PORT}"


MEMBERS = (
    Member("mdb1", "172.30.43.11"),
    Member("mdb2", "172.30.43.12"),
    Member("mdb3", "172.30.43.13"),
)
SPARE = Member("mdb4", "172.30.43.14")
BY_HOST = {member.host: member for member in (*MEMBERS, SPARE)}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that takes `member` runs once per member of the 3-member set."""
    if "member" in metafunc.fixturenames:
        metafunc.parametrize("member", MEMBERS, ids=[member.name for member in MEMBERS])


@pytest.fixture(scope="session", autouse=True)
def pristine(host_named, converge, tail) -> None:  # noqa: ANN001
    """The set as converge.yml makes it, before the first test. The rolling restart test comes
    last and leaves its setParameter behind, since molecule destroys the set next; when verify runs
    again on the same set, a converge takes the parameter out first."""
    if any(has_parameter(host_named(member.name)) for member in MEMBERS):
        result = converge()
        assert result.returncode == 0, tail(result)


@pytest.fixture(scope="session")
def members() -> tuple[Member, ...]:
    return MEMBERS


@pytest.fixture(scope="session")
def spare() -> Member:
    """mdb4: the host the membership test adds as a hidden, non-voting member."""
    return SPARE


@pytest.fixture(scope="session")
def password(secret: Callable[[str], str]) -> Callable[[str], str]:
    """The password of admin, app, backup or monitor."""
    return lambda user: secret(f"mongodb_{user}_password")


@pytest.fixture(scope="session")
def authority(authority_at: Callable[[str], Authority]) -> Authority:
    """The scenario's CA, as the tls_certificate role created it in SSM."""
    return authority_at(CA_PARAMETERS)


@pytest.fixture(scope="session")
def client_tls(client_tls_at: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    """pymongo's TLS options of the test machine: the CA file and a client certificate."""
    return client_tls_at(CA_PARAMETERS)


@pytest.fixture(scope="module")
def mongo(client_tls: dict[str, Any]) -> Iterator[Callable[..., MongoClient]]:
    """Open clients from the test machine; closed when the module is done.

    mongo() is the replica set client (discovery over the three members); mongo(address=...)
    connects to that one member directly. Credentials are optional; the timeouts are short so
    that a test fails quickly instead of hanging on a member that is down. Every client uses TLS
    (client_tls) unless the options say otherwise.
    """
    clients: list[MongoClient] = []

    def connect(
        user: str | None = None,
        password: str | None = None,
        *,
        source: str = "admin",
        address: str | None = None,
        **options: Any,
    ) -> MongoClient:
        settings: dict[str, Any] = client_tls | {
            "serverSelectionTimeoutMS": 5000,
            "connectTimeoutMS": 3000,
            "socketTimeoutMS": 15000,
        }
        if address is None:
            hosts = [member.host for member in MEMBERS]
            settings["replicaSet"] = SET_NAME
        else:
            hosts = [address if ":" in address else f"{address}:{PORT}"]
            settings["directConnection"] = True
        if user is not None:
            settings |= {"username": user, "password": password, "authSource": source}
        client: MongoClient = MongoClient(hosts, **(settings | options))
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


@pytest.fixture(scope="module")
def member_clients(
    mongo: Callable[..., MongoClient], password: Callable[[str], str]
) -> dict[str, MongoClient]:
    """Member host -> an admin client connected to that member alone, for a Watcher (rollouts.py).

    A member that is down refuses connections at once, so server selection gives up within a
    second. Connecting, the TLS handshake and the answer may take up to 3 s each: a member that is
    up but busy (catching up after its restart, under writes, on a loaded machine) is not taken
    for down.
    """
    return {
        member.host: mongo(
            "admin",
            password("admin"),
            address=member.host,
            serverSelectionTimeoutMS=1000,
            connectTimeoutMS=3000,
            socketTimeoutMS=3000,
            heartbeatFrequencyMS=500,
        )
        for member in MEMBERS
    }


def poll(probe: Callable[[], Any], timeout: float, what: str, step: float = 0.5) -> Any:
    """Call probe() until it returns something truthy and return that; fail at the deadline.

    A MongoDB error raised by the probe counts as "not yet" (members restart, elections happen)
    and is reported with the last value if the deadline passes.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = probe()
        except PyMongoError as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            pytest.fail(f"not within {timeout} s: {what} (last: {last!r})")
        time.sleep(step)


@pytest.fixture(scope="session")
def wait_for() -> Callable[..., Any]:
    """poll(probe, timeout, what, step=0.5): see poll()."""
    return poll


def member_states(status: dict[str, Any]) -> dict[str, str]:
    """Member name -> state from a replSetGetStatus reply; DOWN for members not heard from."""
    return {
        member["name"]: member["stateStr"] if member["health"] == 1 else "DOWN"
        for member in status["members"]
    }


def is_healthy(status: dict[str, Any], hosts: list[str]) -> bool:
    """Exactly the given members, all healthy: one PRIMARY, the others SECONDARY."""
    states = member_states(status)
    return sorted(states) == sorted(hosts) and sorted(states.values()) == [
        "PRIMARY",
        *["SECONDARY"] * (len(hosts) - 1),
    ]


class ReplicaSet:
    """The set as its administrator sees it from the test machine."""

    def __init__(self, admin: MongoClient) -> None:
        self.admin = admin

    def status(self) -> dict[str, Any]:
        return self.admin.admin.command("replSetGetStatus")

    def config(self) -> dict[str, Any]:
        return self.admin.admin.command("replSetGetConfig")["config"]

    def states(self) -> dict[str, str]:
        return member_states(self.status())

    def primary(self) -> str:
        """The host of the PRIMARY (fails if there is none right now)."""
        primaries = [host for host, state in self.states().items() if state == "PRIMARY"]
        assert len(primaries) == 1, primaries
        return primaries[0]

    def wait_healthy(self, hosts: list[str] | None = None, timeout: float = 60) -> dict[str, Any]:
        """Wait until the set has exactly `hosts` (default: the 3 members), one PRIMARY, the
        others SECONDARY; return that replSetGetStatus reply."""
        hosts = hosts or [member.host for member in MEMBERS]

        def healthy() -> dict[str, Any] | None:
            status = self.status()
            return status if is_healthy(status, hosts) else None

        return poll(healthy, timeout, f"one PRIMARY and the other members SECONDARY of {hosts}")


@pytest.fixture(scope="module")
def replset(mongo: Callable[..., MongoClient], password: Callable[[str], str]) -> ReplicaSet:
    return ReplicaSet(mongo("admin", password("admin")))
