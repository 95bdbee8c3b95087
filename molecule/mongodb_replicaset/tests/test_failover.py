"""Losing the primary: the set elects another member, keeps taking writes, and takes the old
primary back as a secondary; the role then finds nothing to change.

The tests of this module run in order against one stop of the primary (the `stopped` fixture).
The module comes right after test_tls: its converge is also the first run after the certificate
renewal, which must not sign or restart anything again.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from pymongo.write_concern import WriteConcern

NEW_PRIMARY_WITHIN = 30
# mongod 7.0 gives a primary's step-down 15 s on SIGTERM, then exits.
STOP_WITHIN = 60
REJOIN_WITHIN = 60


@dataclass
class Stopped:
    host: str  # the old primary, as the set names it
    node: Any  # its testinfra host
    at: float  # when mongod was told to stop
    marker: dict[str, str]  # written while it is down

    def unit(self, prop: str) -> str:
        return self.node.check_output("systemctl show mongod.service -p %s --value", prop)


@pytest.fixture(scope="module")
def stopped(replset, host_named, members):  # noqa: ANN001, ANN201
    """Stop mongod on the primary, without waiting: the clock runs from the stop request."""
    replset.wait_healthy()
    old = replset.primary()
    node = host_named({member.host: member.name for member in members}[old])
    node.check_output("systemctl stop --no-block mongod.service")
    state = Stopped(old, node, time.monotonic(), {"_id": f"failover-{uuid.uuid4().hex}"})
    yield state
    # Whatever failed above, the member is left running.
    if state.unit("ActiveState") == "deactivating":
        node.run("systemctl kill --signal=SIGKILL mongod.service")
    node.run("systemctl start mongod.service")


def test_another_member_takes_over_and_takes_writes(stopped, mongo, members, replset, wait_for):  # noqa: ANN001, ANN201
    survivors = {m.host: mongo(address=m.host) for m in members if m.host != stopped.host}

    def new_primary() -> str | None:
        return next(
            (
                host
                for host, client in survivors.items()
                if client.admin.command("hello").get("isWritablePrimary")
            ),
            None,
        )

    elected = wait_for(new_primary, NEW_PRIMARY_WITHIN, f"a new PRIMARY once {stopped.host} stops")
    print(f"{elected} PRIMARY {time.monotonic() - stopped.at:.1f} s after {stopped.host} stopped")
    collection = replset.admin.clinic.get_collection(
        "verify_failover", write_concern=WriteConcern("majority", wtimeout=10000)
    )

    def write() -> bool:
        # An upsert, so that a retry after an unanswered attempt is harmless.
        result = collection.update_one(stopped.marker, {"$set": {"at": time.time()}}, upsert=True)
        return result.acknowledged

    wait_for(write, NEW_PRIMARY_WITHIN, "a majority write while the old primary is down")


def test_old_primary_exits_on_sigterm_without_being_killed(stopped, wait_for):  # noqa: ANN001, ANN201
    wait_for(
        lambda: stopped.unit("ActiveState") in {"inactive", "failed"},
        max(0.0, STOP_WITHIN - (time.monotonic() - stopped.at)),
        f"mongod on {stopped.host} stopped",
    )
    assert stopped.unit("Result") == "success"


def test_old_primary_rejoins_and_catches_up(stopped, replset, mongo, password, wait_for):  # noqa: ANN001, ANN201
    if stopped.unit("ActiveState") == "deactivating":
        # Still not down (the previous test reports it): end it, to test the way back.
        stopped.node.run("systemctl kill --signal=SIGKILL mongod.service")
    stopped.node.check_output("systemctl start mongod.service")
    wait_for(
        lambda: replset.states().get(stopped.host) == "SECONDARY",
        REJOIN_WITHIN,
        f"{stopped.host} SECONDARY again",
    )
    replset.wait_healthy()
    # What was written while it was down reaches it.
    direct = mongo("admin", password("admin"), address=stopped.host, readPreference="secondary")
    wait_for(
        lambda: direct.clinic.verify_failover.find_one(stopped.marker),
        10,
        f"{stopped.marker} on {stopped.host}",
    )


@pytest.fixture(scope="module")
def reconverge(stopped, replset, converge):  # noqa: ANN001, ANN201
    """A verbose converge after the failover (the primary may now be another member)."""
    replset.wait_healthy()
    return converge("-vvv")


def test_reconverge_after_failover_changes_nothing(reconverge, recap, members, tail, changes):  # noqa: ANN001, ANN201
    assert reconverge.returncode == 0, tail(reconverge)
    counters = recap(reconverge)
    assert sorted(counters) == [member.name for member in members]
    assert all(c["changed"] == 0 for c in counters.values()), changes(reconverge)


def test_verbose_run_shows_no_secret(reconverge, secret, secret_names):  # noqa: ANN001, ANN201
    output = reconverge.stdout + reconverge.stderr
    # The -vvv run really handled the secrets: the censored keyFile and user tasks are in it.
    assert "the output has been hidden due to the fact that" in output
    names = [name for name in secret_names if name.startswith("mongodb_")]
    # Reported by name only: a value must not reach the test log either.
    leaked = [name for name in names if secret(name) in output]
    assert not leaked
