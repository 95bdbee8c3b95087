"""Failover contract: a frozen primary, a partitioned primary, default write concern, rollback.

Every test starts its own three-member set on loopback with short election settings and runs
unchanged against a real mongod (MONGODB_CONTRACT_MONGOD). A freeze is SIGSTOP/SIGCONT of the
member's process (what `docker pause` does); a partition goes through the per-member proxies of
partition.py, whose addresses are the members' hosts in the replica set config.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import bson
import pymongo
import pytest
from pymongo.write_concern import WriteConcern

from tests.doubles.polling import wait_for

from .conftest import Launcher, Mongod
from .partition import Partition

ADMIN_PW = "failover-Admin-pw"
ELECTION_TIMEOUT_MS = 1000
SETTINGS = {
    "electionTimeoutMillis": ELECTION_TIMEOUT_MS,
    "heartbeatIntervalMillis": 200,
    "heartbeatTimeoutSecs": 2,
}
# mongod elects within electionTimeoutMillis plus a few heartbeats; the bounds leave room for a
# loaded CI machine without hiding an election that never finishes.
ELECTION_BOUND = 15.0


class ReplicaSet:
    def __init__(self, nodes: list[Mongod], password: str | None) -> None:
        self.nodes = nodes
        self.password = password

    def client(self, node: Mongod, **options: Any) -> pymongo.MongoClient[dict[str, Any]]:
        options.setdefault("serverSelectionTimeoutMS", 3000)
        options.setdefault("connectTimeoutMS", 2000)
        options.setdefault("socketTimeoutMS", 5000)
        if self.password is not None:
            return node.client("admin", self.password, **options)
        return node.client(**options)

    def hello(self, node: Mongod) -> dict[str, Any] | None:
        client = self.client(node, socketTimeoutMS=2000)
        try:
            return dict(client.admin.command("hello"))
        except pymongo.errors.PyMongoError:
            return None
        finally:
            client.close()

    def primary_among(self, nodes: list[Mongod]) -> Mongod | None:
        for node in nodes:
            hello = self.hello(node)
            if hello and hello.get("isWritablePrimary"):
                return node
        return None

    def term(self, node: Mongod) -> int:
        client = self.client(node)
        try:
            return int(client.admin.command("replSetGetStatus")["term"])
        finally:
            client.close()

    def has_doc(self, node: Mongod, doc_id: str) -> bool:
        client = self.client(node, readPreference="primaryPreferred")
        try:
            return client.clinic.visits.find_one({"_id": doc_id}) is not None
        except pymongo.errors.PyMongoError:
            return False
        finally:
            client.close()


def _start_set(
    launcher: Launcher,
    secured: bool = False,
    partition: Partition | None = None,
    member_options: dict[int, dict[str, Any]] | None = None,
    **settings: Any,
) -> ReplicaSet:
    """Three members, initiated from the first; with `partition`, the config hosts are proxies;
    `member_options` adds fields (priority, ...) to the config of the member at that index."""
    extra = ["--replSet", "rs0"]
    if secured:
        extra += ["--keyFile", str(launcher.key_file())]
    nodes = [launcher.start(extra) for _ in range(3)]
    hosts = [n.address for n in nodes]
    if partition is not None:
        for index, node in enumerate(nodes):
            partition.set_process(index, node.proc.pid)
        hosts = [f"127.0.0.1:{partition.add_member(i, n.port)}" for i, n in enumerate(nodes)]
    config = {
        "_id": "rs0",
        "members": [
            {"_id": i, "host": host, **(member_options or {}).get(i, {})}
            for i, host in enumerate(hosts)
        ],
        "settings": {**SETTINGS, **settings},
    }
    local = nodes[0].client()
    try:
        local.admin.command("replSetInitiate", config)
        wait_for(
            lambda: local.admin.command("hello").get("isWritablePrimary"),
            20,
            "the first primary",
        )
        if secured:
            local.admin.command("createUser", "admin", pwd=ADMIN_PW, roles=["root"])
    finally:
        local.close()
    rs = ReplicaSet(nodes, ADMIN_PW if secured else None)
    wait_for(
        lambda: (
            sorted(str((rs.hello(n) or {}).get("secondary")) for n in nodes)
            == ["False", "True", "True"]
        ),
        20,
        "one primary and two secondaries",
    )
    return rs


@contextmanager
def _frozen(*nodes: Mongod) -> Iterator[None]:
    """SIGSTOP the processes for the block (docker pause); SIGCONT them whatever happens."""
    for node in nodes:
        os.kill(node.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for node in nodes:
            os.kill(node.proc.pid, signal.SIGCONT)


@pytest.fixture
def partition() -> Iterator[Partition]:
    proxies = Partition()
    yield proxies
    proxies.close()


def _majority(client: pymongo.MongoClient[dict[str, Any]]) -> Any:
    return client.clinic.get_collection(
        "visits", write_concern=WriteConcern(w="majority", wtimeout=10000)
    )


def _wait_new_primary(rs: ReplicaSet, old: Mongod, started: float) -> Mongod:
    others = [n for n in rs.nodes if n is not old]
    new = wait_for(lambda: rs.primary_among(others), ELECTION_BOUND, "a new primary")
    assert time.monotonic() - started < ELECTION_BOUND
    return new


def test_frozen_primary_is_replaced_and_rejoins_as_secondary(launcher: Launcher) -> None:
    """The primary's process is stopped for longer than the election timeout: the others elect a
    new primary; after SIGCONT the old primary steps down, follows the new term and replicates."""
    rs = _start_set(launcher, secured=True)
    old = rs.primary_among(rs.nodes)
    assert old is not None
    client = rs.client(old)
    _majority(client).insert_one({"_id": "before-freeze"})
    client.close()
    with _frozen(old):
        started = time.monotonic()
        new = _wait_new_primary(rs, old, started)
        # Frozen longer than the election timeout in any case; a bit more so that the peers'
        # heartbeats to it time out too (the connections it comes back to are stale).
        time.sleep(max(0.0, started + 3 - time.monotonic()))
    wait_for(
        lambda: (rs.hello(old) or {}).get("secondary"),
        10,
        "the thawed primary to step down to SECONDARY",
    )
    assert rs.primary_among(rs.nodes) is new
    wait_for(lambda: rs.term(old) == rs.term(new), 10, "the old primary to follow the new term")
    new_client = rs.client(new)
    try:
        _majority(new_client).insert_one({"_id": "after-thaw"})
    finally:
        new_client.close()
    wait_for(lambda: rs.has_doc(old, "after-thaw"), 10, "replication to the old primary")
    assert rs.has_doc(old, "before-freeze")


def test_lagging_secondary_catches_up_from_the_other_and_is_elected(launcher: Launcher) -> None:
    """The only electable secondary is behind when the primary freezes, and the other voter
    (priority 0) is ahead of it, so it refuses its vote. mongod's secondaries sync from a
    secondary that is ahead when the primary does not answer (chaining, on by default): the
    lagging member catches up from the other one and is elected, with every majority write."""
    rs = _start_set(launcher, member_options={2: {"priority": 0}})
    old, lagging, _ = rs.nodes
    assert rs.primary_among(rs.nodes) is old
    written = [f"while-behind-{i}" for i in range(20)]
    os.kill(lagging.proc.pid, signal.SIGSTOP)
    try:
        client = rs.client(old)
        try:
            for doc_id in written:  # acknowledged by the primary and the priority-0 member
                _majority(client).insert_one({"_id": doc_id})
        finally:
            client.close()
        with _frozen(old):
            os.kill(lagging.proc.pid, signal.SIGCONT)
            started = time.monotonic()
            new = _wait_new_primary(rs, old, started)
            assert new is lagging
            assert all(rs.has_doc(new, doc_id) for doc_id in written)
    finally:
        os.kill(lagging.proc.pid, signal.SIGCONT)


def test_majority_acknowledged_write_survives_failover(launcher: Launcher) -> None:
    rs = _start_set(launcher)
    old = rs.primary_among(rs.nodes)
    assert old is not None
    client = rs.client(old)
    try:
        _majority(client).insert_one({"_id": "acknowledged"})
    finally:
        client.close()
    with _frozen(old):
        new = _wait_new_primary(rs, old, time.monotonic())
        new_client = rs.client(new)
        try:
            found = new_client.clinic.visits.find_one({"_id": "acknowledged"})
        finally:
            new_client.close()
    assert found == {"_id": "acknowledged"}


def test_partitioned_primary_steps_down_and_the_set_converges(
    launcher: Launcher, partition: Partition
) -> None:
    rs = _start_set(launcher, partition=partition)
    old = rs.primary_among(rs.nodes)
    assert old is not None
    partition.isolate(rs.nodes.index(old))
    started = time.monotonic()
    new = _wait_new_primary(rs, old, started)
    wait_for(
        lambda: (rs.hello(old) or {}).get("isWritablePrimary") is False,
        10,
        "the isolated primary to step down",
    )
    # mongod: a primary that cannot see a majority steps down after electionTimeoutMillis.
    assert time.monotonic() - started < ELECTION_TIMEOUT_MS / 1000 + 5
    partition.heal()

    def converged() -> bool:
        hellos = [rs.hello(n) for n in rs.nodes]
        if any(h is None for h in hellos):
            return False
        primaries = [n for n, h in zip(rs.nodes, hellos, strict=True) if h["isWritablePrimary"]]
        agreed = {h.get("primary") for h in hellos}
        return len(primaries) == 1 and len(agreed) == 1 and None not in agreed

    wait_for(converged, 20, "one primary that every member agrees on")
    assert (rs.hello(old) or {}).get("secondary") or rs.primary_among([old]) is old
    assert rs.primary_among(rs.nodes) in (new, old)


def test_write_without_write_concern_waits_for_the_default_majority(
    launcher: Launcher,
) -> None:
    # A longer election timeout: the primary must stay primary while both secondaries are
    # stopped for a moment.
    rs = _start_set(launcher, electionTimeoutMillis=4000)
    primary = rs.primary_among(rs.nodes)
    assert primary is not None
    secondaries = [n for n in rs.nodes if n is not primary]
    client = rs.client(primary)
    try:
        defaults = client.admin.command("getDefaultRWConcern")
        assert defaults["defaultWriteConcern"] == {"w": "majority", "wtimeout": 0}
        assert defaults["defaultWriteConcernSource"] == "implicit"
        assert defaults["defaultReadConcern"] == {"level": "local"}
        assert "localUpdateWallClockTime" in defaults
        client.clinic.visits.insert_one({"_id": "warm-up"})

        # Implicit default: no reply while no secondary can acknowledge, the reply once they can.
        with primary.raw() as raw:
            with _frozen(*secondaries):
                request_id = raw.send_msg(
                    {"insert": "visits", "documents": [{"_id": "implicit"}], "$db": "clinic"}
                )
                raw.sock.settimeout(0.8)
                with pytest.raises(TimeoutError):
                    raw.read_reply()
            raw.sock.settimeout(10)
            response_to, reply = raw.read_reply()
        assert response_to == request_id
        assert reply["ok"] == 1.0
        assert reply["n"] == 1

        # A global default with a wtimeout: the same write now fails with 64 within it.
        changed = client.admin.command(
            "setDefaultRWConcern", defaultWriteConcern={"w": "majority", "wtimeout": 300}
        )
        assert changed["defaultWriteConcernSource"] == "global"
        assert changed["defaultWriteConcern"]["w"] == "majority"
        assert changed["defaultWriteConcern"]["wtimeout"] == 300
        assert isinstance(changed["updateOpTime"], bson.Timestamp)
        assert client.admin.command("getDefaultRWConcern")["defaultWriteConcernSource"] == "global"
        with _frozen(*secondaries):
            started = time.monotonic()
            with pytest.raises(pymongo.errors.WriteConcernError) as info:
                client.clinic.visits.insert_one({"_id": "global-default"})
            elapsed = time.monotonic() - started
        assert info.value.code == 64
        assert info.value.details["errInfo"]["writeConcern"]["provenance"] == "customDefault"
        assert elapsed < 3
    finally:
        client.close()


def _rollback_files(node: Mongod) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted((node.dbpath / "rollback").glob("*/removed.*.bson")):
        docs += bson.decode_all(path.read_bytes())
    return docs


def test_diverged_primary_rolls_back_unreplicated_writes(
    launcher: Launcher, partition: Partition
) -> None:
    rs = _start_set(launcher, partition=partition)
    old = rs.primary_among(rs.nodes)
    assert old is not None
    client = rs.client(old)
    try:
        _majority(client).insert_one({"_id": "base"})
        partition.isolate(rs.nodes.index(old))
        lost = client.clinic.get_collection("visits", write_concern=WriteConcern(w=1))
        lost.insert_one({"_id": "lost", "who": "isolated primary"})
    finally:
        client.close()
    new = _wait_new_primary(rs, old, time.monotonic())
    wait_for(
        lambda: (rs.hello(old) or {}).get("isWritablePrimary") is False,
        10,
        "the isolated primary to step down",
    )
    new_client = rs.client(new)
    try:
        _majority(new_client).insert_one({"_id": "new-side"})
    finally:
        new_client.close()
    partition.heal()
    wait_for(lambda: rs.has_doc(old, "new-side"), 20, "the old primary to follow the new one")
    wait_for(lambda: not rs.has_doc(old, "lost"), 20, "the w:1 write to be rolled back")
    assert all(not rs.has_doc(n, "lost") for n in rs.nodes)
    assert all(rs.has_doc(n, "base") for n in rs.nodes)
    saved = wait_for(
        lambda: [d for d in _rollback_files(old) if d.get("_id") == "lost"],
        10,
        "the rollback file under dbPath/rollback",
    )
    assert saved == [{"_id": "lost", "who": "isolated primary"}]
    assert (rs.hello(old) or {}).get("secondary") is True


def test_partition_proxy_identifies_member_connections(partition: Partition) -> None:
    """The harness itself: a connection is attributed to the process that opened it."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = partition.add_member(0, server.getsockname()[1])
        partition.set_process(1, os.getpid())
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            accepted, _ = server.accept()
            accepted.close()
        conn = wait_for(lambda: list(partition.connections), 5, "the proxied connection")
        assert conn[0].source == 1
        assert conn[0].target == 0


def _state_transitions(node: Mongod) -> list[dict[str, Any]]:
    out = []
    for line in node.log_lines():
        entry = json.loads(line)
        if entry.get("id") == 21358 and "newState" in entry.get("attr", {}):
            out.append(entry["attr"])
    return out


def _retryable_insert(doc_id: str, lsid: bson.Binary) -> dict[str, Any]:
    return {
        "insert": "visits",
        "documents": [{"_id": doc_id}],
        "lsid": {"id": lsid},
        "txnNumber": bson.Int64(1),
        "writeConcern": {"w": "majority"},
        "$db": "clinic",
    }


def test_sigterm_primary_steps_down_hands_off_and_writes_are_retried(launcher: Launcher) -> None:
    """SIGTERM of the primary: it steps down first and hands the election off to a caught-up
    secondary (a new primary within seconds), so a retryable majority write issued at the
    signal succeeds (retried on the new primary) instead of failing on a closed connection."""
    rs = _start_set(launcher)
    old = rs.primary_among(rs.nodes)
    assert old is not None
    client = pymongo.MongoClient(
        [n.address for n in rs.nodes],
        replicaSet="rs0",
        retryWrites=True,
        serverSelectionTimeoutMS=10000,
        socketTimeoutMS=10000,
    )
    try:
        visits = _majority(client)
        visits.insert_one({"_id": "before-signal"})
        started = time.monotonic()
        old.proc.send_signal(signal.SIGTERM)
        visits.insert_one({"_id": "at-signal"})
        others = [n for n in rs.nodes if n is not old]
        new = wait_for(lambda: rs.primary_among(others), ELECTION_BOUND, "a new primary")
        elected_after = time.monotonic() - started
        assert visits.count_documents({"_id": "at-signal"}) == 1
    finally:
        client.close()
    assert elected_after < 5, f"new primary after {elected_after:.1f}s"
    assert new is not old
    assert old.proc.wait(20) == 0
    steps = [t for t in _state_transitions(old) if t["oldState"] == "PRIMARY"]
    assert steps and steps[0]["newState"] == "SECONDARY"


def test_write_concern_error_after_step_down_is_labelled_retryable(launcher: Launcher) -> None:
    """A retryable write waiting for a majority when the primary steps down: writeConcernError
    PrimarySteppedDown (189) with the RetryableWriteError label, so drivers retry it."""
    # A long election timeout: the primary must not step down by itself while both
    # secondaries are stopped.
    rs = _start_set(launcher, electionTimeoutMillis=5000)
    primary = rs.primary_among(rs.nodes)
    assert primary is not None
    secondaries = [n for n in rs.nodes if n is not primary]
    warm = rs.client(primary)
    try:
        _majority(warm).insert_one({"_id": "warm-up"})
    finally:
        warm.close()
    body = _retryable_insert("waiting", bson.Binary(uuid.uuid4().bytes, 4))
    with primary.raw() as raw, primary.raw() as control, _frozen(*secondaries):
        request_id = raw.send_msg(body)
        time.sleep(0.3)  # the insert is applied and waits for the majority
        stepped = control.command(
            {
                "replSetStepDown": 5,
                "secondaryCatchUpPeriodSecs": 1,
                "force": True,
                "$db": "admin",
            }
        )
        assert stepped["ok"] == 1.0
        raw.sock.settimeout(5)
        response_to, reply = raw.read_reply()
    assert response_to == request_id
    assert reply["ok"] == 1.0
    assert reply["n"] == 1
    assert reply["writeConcernError"]["code"] == 189
    assert "RetryableWriteError" in reply.get("errorLabels", [])


def test_retry_on_new_primary_returns_the_original_outcome(launcher: Launcher) -> None:
    """A retryable insert replicated before a failover, retried with the same lsid and
    txnNumber on the new primary: answered from the replicated retryable-write record
    (n as first executed), not executed again (no duplicate key error)."""
    rs = _start_set(launcher)
    old = rs.primary_among(rs.nodes)
    assert old is not None
    body = _retryable_insert("retried", bson.Binary(uuid.uuid4().bytes, 4))
    with old.raw() as raw:
        first = raw.command(dict(body))
        assert first["ok"] == 1.0 and first["n"] == 1
        assert "writeConcernError" not in first
        stepped = raw.command(
            {"replSetStepDown": 10, "secondaryCatchUpPeriodSecs": 5, "$db": "admin"}
        )
        assert stepped["ok"] == 1.0
    others = [n for n in rs.nodes if n is not old]
    new = wait_for(lambda: rs.primary_among(others), ELECTION_BOUND, "a new primary")
    with new.raw() as raw:
        again = raw.command(dict(body))
    assert again["ok"] == 1.0
    assert again["n"] == first["n"]
    assert "writeErrors" not in again
    client = rs.client(new)
    try:
        assert client.clinic.visits.count_documents({"_id": "retried"}) == 1
    finally:
        client.close()
