"""Replica set contract: initiate rules, a secured 3-member set, replication, reconfig, failover."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import bson
import pymongo
import pytest
from pymongo.write_concern import WriteConcern

from tests.doubles.polling import wait_for

from .conftest import (
    Launcher,
    Mongod,
    command_error,
    free_port,
    replset_config,
    secured_set,
    wait_healthy,
    wait_primary,
)

ADMIN_PW = "rs-Admin-pw"
# Members as mongod 7.0 returns them in replSetGetConfig: every field filled in, except `horizons`
# (absent unless set) and `newlyAdded` (absent once the automatic reconfig has cleared it).
MEMBER_ROLE_FIELDS = {"arbiterOnly", "buildIndexes", "hidden", "priority", "votes"}
STORED_MEMBER_FIELDS = {"_id", "host", "tags", "secondaryDelaySecs", *MEMBER_ROLE_FIELDS}


def _set_uri(nodes: list[Mongod], user: str = "admin", password: str = ADMIN_PW) -> str:
    hosts = ",".join(n.address for n in nodes)
    return f"mongodb://{user}:{password}@{hosts}/?replicaSet=rs0&authSource=admin"


def test_initiate_on_standalone_is_76(launcher: Launcher) -> None:
    node = launcher.start()
    client = node.client()
    try:
        error = command_error(lambda: client.admin.command("replSetInitiate", {}))
        status = command_error(lambda: client.admin.command("replSetGetStatus"))
    finally:
        client.close()
    assert error["code"] == 76
    assert status["code"] == 76


def test_initiate_validation(launcher: Launcher) -> None:
    node = launcher.start(["--replSet", "rs0"])
    client = node.client()

    def initiate(config: dict[str, Any]) -> dict[str, Any]:
        return command_error(lambda: client.admin.command("replSetInitiate", config))

    def with_second(host: str, member_id: int = 1) -> dict[str, Any]:
        """rs0 with this node as member 0 and `host` as a second member."""
        members = [{"_id": 0, "host": node.address}, {"_id": member_id, "host": host}]
        return {"_id": "rs0", "members": members}

    try:
        status = command_error(lambda: client.admin.command("replSetGetStatus"))
        assert status["code"] == 94
        other_port = free_port()
        not_me = initiate(
            {"_id": "rs0", "members": [{"_id": 0, "host": f"127.0.0.1:{other_port}"}]}
        )
        assert not_me["code"] == 93
        assert "maps to this node" in not_me["errmsg"]
        mixed = initiate(with_second("db2.example.invalid:27017"))
        assert mixed["code"] == 93
        assert "found 1 out of 2" in mixed["errmsg"]
        wrong_name = initiate({"_id": "other", "members": [{"_id": 0, "host": node.address}]})
        assert wrong_name["code"] == 93
        duplicate = initiate(with_second(f"127.0.0.1:{other_port}", member_id=0))
        assert duplicate["code"] == 93
        unreachable = initiate(with_second(f"127.0.0.1:{other_port}"))
        assert unreachable["code"] == 74
        assert f"127.0.0.1:{other_port} failed with" in unreachable["errmsg"]
        assert client.admin.command("hello").get("setName") is None
        client.admin.command("replSetInitiate", replset_config("rs0", [node]))
        again = initiate(replset_config("rs0", [node]))
        assert again["code"] == 23
    finally:
        client.close()


def test_added_member_syncs_and_secondary_semantics(launcher: Launcher) -> None:
    first = launcher.start(["--replSet", "rs0"])
    second = launcher.start(["--replSet", "rs0"])
    client = first.client()
    try:
        client.admin.command("replSetInitiate", replset_config("rs0", [first]))
        wait_primary(first)
        client.clinic.visits.insert_one({"_id": "before-add"})
        config = client.admin.command("replSetGetConfig")["config"]
        config["version"] += 1
        config["members"].append({"_id": 1, "host": second.address, "priority": 0})
        client.admin.command("replSetReconfig", config)
        stored = client.admin.command("replSetGetConfig")["config"]
        assert all("newlyAdded" not in m for m in stored["members"])
        assert client.admin.command("hello")["passives"] == [second.address]
        wait_for(
            lambda: (
                client.admin.command("replSetGetConfig")["config"]["version"] > config["version"]
            ),
            20,
            "the automatic reconfig that clears newlyAdded",
        )
        secondary = second.client(readPreference="secondaryPreferred")
        wait_for(
            lambda: secondary.clinic.visits.find_one({"_id": "before-add"}),
            20,
            "initial sync of the added member",
        )
        secondary.close()
        with second.raw() as raw:
            no_opt_in = raw.command({"find": "visits", "$db": "clinic"})
            opt_in = raw.command(
                {
                    "find": "visits",
                    "$db": "clinic",
                    "$readPreference": {"mode": "secondaryPreferred"},
                }
            )
            write = raw.command(
                {
                    "insert": "visits",
                    "documents": [{"x": 1}],
                    "$db": "clinic",
                    "lsid": {"id": bson.Binary(b"s" * 16, 4)},
                    "txnNumber": bson.Int64(1),
                }
            )
        assert no_opt_in["code"] == 13435
        assert no_opt_in["codeName"] == "NotPrimaryNoSecondaryOk"
        assert opt_in["ok"] == 1.0
        assert write["code"] == 10107
        assert write["errorLabels"] == ["RetryableWriteError"]
    finally:
        client.close()


def test_key_file_mismatch_fails_initiate_quorum_check(launcher: Launcher) -> None:
    good = launcher.key_file(name="key-a")
    other = launcher.key_file("b3RoZXIta2V5LWNvbnRlbnQtZm9yLW1lbWJlcg==", name="key-b")
    first = launcher.start(["--replSet", "rs0", "--keyFile", str(good)])
    second = launcher.start(["--replSet", "rs0", "--keyFile", str(other)])
    client = first.client()
    try:
        error = command_error(
            lambda: client.admin.command("replSetInitiate", replset_config("rs0", [first, second]))
        )
    finally:
        client.close()
    assert error["code"] == 74
    assert "Authentication failed" in error["errmsg"]


@pytest.fixture(scope="module")
def rs(module_launcher: Launcher) -> Iterator[list[Mongod]]:
    """Three secured members on loopback, initiated and with an admin user."""
    nodes = secured_set(module_launcher, ADMIN_PW)
    client = pymongo.MongoClient(_set_uri(nodes), serverSelectionTimeoutMS=20000)
    wait_healthy(client)
    client.close()
    yield nodes


@pytest.fixture
def rs_client(rs: list[Mongod]) -> Iterator[pymongo.MongoClient[dict[str, Any]]]:
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        _set_uri(rs), serverSelectionTimeoutMS=20000
    )
    yield client
    client.close()


def _primary(rs: list[Mongod], client: pymongo.MongoClient[dict[str, Any]]) -> Mongod:
    status = client.admin.command("replSetGetStatus")
    name = next(m["name"] for m in status["members"] if m["stateStr"] == "PRIMARY")
    return next(n for n in rs if n.address == name)


def test_status_and_hello_describe_the_set(
    rs: list[Mongod], rs_client: pymongo.MongoClient[Any]
) -> None:
    status = rs_client.admin.command("replSetGetStatus")
    assert status["set"] == "rs0"
    assert [m["name"] for m in status["members"]] == [n.address for n in rs]
    assert all(m["health"] == 1.0 for m in status["members"])
    assert sum(1 for m in status["members"] if m.get("self")) == 1
    assert status["majorityVoteCount"] == 2
    assert status["term"] >= 1
    hello = rs_client.admin.command("hello")
    assert hello["setName"] == "rs0"
    assert hello["hosts"] == [n.address for n in rs]
    assert isinstance(hello["electionId"], bson.ObjectId)


def test_get_config_is_normalized(rs_client: pymongo.MongoClient[Any]) -> None:
    config = rs_client.admin.command("replSetGetConfig")["config"]
    assert config["protocolVersion"] == 1
    assert isinstance(config["protocolVersion"], bson.Int64)
    assert config["writeConcernMajorityJournalDefault"] is True
    assert isinstance(config["settings"]["replicaSetId"], bson.ObjectId)
    assert config["settings"]["heartbeatTimeoutSecs"] == 10
    assert config["settings"]["getLastErrorDefaults"] == {"w": 1, "wtimeout": 0}
    for member in config["members"]:
        assert set(member) == STORED_MEMBER_FIELDS
        assert isinstance(member["priority"], float)
        assert isinstance(member["secondaryDelaySecs"], bson.Int64)


def test_majority_write_reaches_every_secondary(
    rs: list[Mongod], rs_client: pymongo.MongoClient[Any]
) -> None:
    majority = rs_client.clinic.get_collection(
        "visits", write_concern=WriteConcern(w="majority", wtimeout=10000)
    )
    majority.insert_one({"_id": "v1", "who": "Meera"})
    primary = _primary(rs, rs_client)
    for node in (n for n in rs if n is not primary):
        secondary = node.client("admin", ADMIN_PW, readPreference="secondary")
        wait_for(
            lambda s=secondary: s.clinic.visits.find_one({"_id": "v1"}),
            10,
            f"the write on {node.address}",
        )
        secondary.close()


def test_secondary_serves_opted_in_reads_and_refuses_writes(
    rs: list[Mongod], rs_client: pymongo.MongoClient[Any]
) -> None:
    primary = _primary(rs, rs_client)
    node = next(n for n in rs if n is not primary)
    client = node.client("admin", ADMIN_PW)
    try:
        read = client.clinic.command(
            {"find": "visits"}, read_preference=pymongo.ReadPreference.SECONDARY
        )
        assert read["ok"] == 1.0
        write = command_error(lambda: client.clinic.visits.insert_one({"x": 1}))
        assert write["code"] == 10107
        assert "topologyVersion" in write
        status = client.admin.command("replSetGetStatus")
        assert next(m for m in status["members"] if m.get("self"))["stateStr"] == "SECONDARY"
    finally:
        client.close()


def test_an_fsync_locked_secondary_falls_behind_until_unlocked(
    rs: list[Mongod], rs_client: pymongo.MongoClient[Any]
) -> None:
    """fsync with lock: true holds a secondary's oplog application back (its hello's lastWrite
    stays behind the primary's) until fsyncUnlock; a second unlock is refused."""
    primary = _primary(rs, rs_client)
    node = next(n for n in rs if n is not primary)
    secondary = node.client("admin", ADMIN_PW)
    visits = secondary.clinic.get_collection(
        "visits", read_preference=pymongo.ReadPreference.SECONDARY_PREFERRED
    )
    locked = False
    try:
        reply = secondary.admin.command("fsync", lock=True)
        locked = True
        assert reply["lockCount"] == 1
        one = rs_client.clinic.get_collection("visits", write_concern=WriteConcern(w=1))
        one.insert_one({"_id": "while-locked"})
        time.sleep(2)
        assert visits.find_one({"_id": "while-locked"}) is None
        ahead = rs_client.admin.command("hello")["lastWrite"]["opTime"]["ts"]
        behind = secondary.admin.command("hello")["lastWrite"]["opTime"]["ts"]
        assert behind < ahead
        assert secondary.admin.command("fsyncUnlock")["lockCount"] == 0
        locked = False
        wait_for(lambda: visits.find_one({"_id": "while-locked"}), 10, "the write after unlock")
        assert command_error(lambda: secondary.admin.command("fsyncUnlock"))["code"] == 125
    finally:
        if locked:
            secondary.admin.command("fsyncUnlock")
        secondary.close()


def test_an_idle_primary_writes_a_periodic_noop(
    rs: list[Mongod], rs_client: pymongo.MongoClient[Any]
) -> None:
    """With no client write, the primary's lastWrite still moves within about 10 seconds (mongod's
    periodic no-op writer)."""
    start = rs_client.admin.command("hello")["lastWrite"]["opTime"]["ts"]
    wait_for(
        lambda: rs_client.admin.command("hello")["lastWrite"]["opTime"]["ts"] > start,
        15,
        "a periodic no-op on the idle primary",
    )
    noop = rs_client.local["oplog.rs"].find_one({"ts": {"$gt": start}, "op": "n"})
    assert noop is not None and noop["ns"] == "" and noop["o"] == {"msg": "periodic noop"}


def test_localhost_exception_closed_on_secondaries(
    rs: list[Mongod], rs_client: pymongo.MongoClient[Any]
) -> None:
    primary = _primary(rs, rs_client)
    for node in (n for n in rs if n is not primary):
        with node.raw() as raw:
            reply = raw.command(
                {"createUser": "late", "pwd": "x", "roles": ["root"], "$db": "admin"}
            )
        assert reply["code"] == 13


def test_reconfig_rules(rs: list[Mongod], rs_client: pymongo.MongoClient[Any]) -> None:
    config = rs_client.admin.command("replSetGetConfig")["config"]

    def reconfig(new: dict[str, Any]) -> dict[str, Any]:
        return command_error(lambda: rs_client.admin.command("replSetReconfig", new))

    same_version = reconfig(dict(config))
    assert same_version["code"] == 103
    swapped = dict(
        config,
        version=config["version"] + 1,
        members=[dict(m, _id=(m["_id"] + 1) % 3) for m in config["members"]],
    )
    assert reconfig(swapped)["code"] == 103
    arbiter_flip = dict(
        config,
        version=config["version"] + 1,
        members=[
            dict(m, arbiterOnly=True, priority=0.0) if m["_id"] == 2 else m
            for m in config["members"]
        ],
    )
    assert reconfig(arbiter_flip)["code"] == 103
    two_voters = dict(
        config,
        version=config["version"] + 1,
        members=[
            dict(m, votes=0, priority=0.0) if m["_id"] in (1, 2) else m for m in config["members"]
        ],
    )
    assert reconfig(two_voters)["code"] == 93
    primary = _primary(rs, rs_client)
    secondary = next(n for n in rs if n is not primary).client("admin", ADMIN_PW)
    try:
        refused = command_error(
            lambda: secondary.admin.command(
                "replSetReconfig", dict(config, version=config["version"] + 1)
            )
        )
    finally:
        secondary.close()
    assert refused["code"] == 10107
    assert "topologyVersion" in refused


def test_hidden_member_leaves_hello_lists(
    rs: list[Mongod], rs_client: pymongo.MongoClient[Any]
) -> None:
    config = rs_client.admin.command("replSetGetConfig")["config"]
    primary = _primary(rs, rs_client)
    target = next(m for m in config["members"] if m["host"] != primary.address)
    hidden = _next_version(config, target["_id"], hidden=True, priority=0.0)
    rs_client.admin.command("replSetReconfig", hidden)
    hello = rs_client.admin.command("hello")
    assert target["host"] not in hello["hosts"]
    assert target["host"] not in hello.get("passives", [])
    wait_for(
        lambda: (
            rs_client.admin.command("replSetGetConfig")["config"]["version"] > config["version"]
        ),
        5,
        "the new config",
    )
    current = rs_client.admin.command("replSetGetConfig")["config"]
    restored = _next_version(current, target["_id"], hidden=False, priority=1.0)
    wait_for(lambda: _try_reconfig(rs_client, restored), 10, "the restoring reconfig")
    assert target["host"] in rs_client.admin.command("hello")["hosts"]


def _next_version(config: dict[str, Any], member_id: int, **changes: Any) -> dict[str, Any]:
    """The next version of `config`, with `changes` made to the member with _id `member_id`."""
    members = [dict(m, **changes) if m["_id"] == member_id else m for m in config["members"]]
    return dict(config, version=config["version"] + 1, members=members)


def _try_reconfig(client: pymongo.MongoClient[Any], config: dict[str, Any]) -> bool:
    try:
        client.admin.command("replSetReconfig", config)
    except pymongo.errors.OperationFailure as exc:
        if exc.code == 308:
            return False
        raise
    return True


def test_write_concern_times_out_with_64_while_a_member_is_down(
    rs: list[Mongod], rs_client: pymongo.MongoClient[Any], module_launcher: Launcher
) -> None:
    primary = _primary(rs, rs_client)
    index, victim = next((i, n) for i, n in enumerate(rs) if n is not primary)
    assert victim.stop() == 0
    all_three = rs_client.clinic.get_collection(
        "visits", write_concern=WriteConcern(w=3, wtimeout=300)
    )
    with pytest.raises(pymongo.errors.WriteConcernError) as info:
        all_three.insert_one({"_id": "wc-timeout"})
    assert info.value.code == 64
    assert info.value.details["errInfo"]["wtimeout"] is True
    rs[index] = module_launcher.restart(victim)
    restarted = rs[index].client("admin", ADMIN_PW)
    try:
        wait_for(
            lambda: restarted.admin.command("hello").get("secondary"),
            20,
            "the restarted member to rejoin as SECONDARY",
        )
        wait_for(
            lambda: restarted.clinic.get_collection(
                "visits", read_preference=pymongo.ReadPreference.SECONDARY
            ).find_one({"_id": "wc-timeout"}),
            20,
            "the missed write to replicate",
        )
    finally:
        restarted.close()


def test_step_down_elects_another_primary(
    rs: list[Mongod], rs_client: pymongo.MongoClient[Any]
) -> None:
    wait_healthy(rs_client, 20)
    old = _primary(rs, rs_client)
    old_client = old.client("admin", ADMIN_PW)
    secondary = next(n for n in rs if n is not old).client("admin", ADMIN_PW)
    try:
        term = rs_client.admin.command("replSetGetStatus")["term"]
        election_id = old_client.admin.command("hello")["electionId"]
        bad = command_error(
            lambda: old_client.admin.command("replSetStepDown", 5, secondaryCatchUpPeriodSecs=10)
        )
        assert bad["code"] == 2
        assert (
            command_error(lambda: secondary.admin.command("replSetStepDown", 60))["code"] == 10107
        )
        old_client.admin.command("replSetStepDown", 60)
        assert old_client.admin.command("hello")["secondary"] is True
        new_primary = wait_for(
            lambda: next(
                (
                    n
                    for n in rs
                    if n is not old
                    and n.client("admin", ADMIN_PW).admin.command("hello").get("isWritablePrimary")
                ),
                None,
            ),
            20,
            "a new primary",
        )
        new_client = new_primary.client("admin", ADMIN_PW)
        hello = new_client.admin.command("hello")
        new_client.close()
        assert hello["electionId"] > election_id
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                rs_client.clinic.visits.insert_one({"after": "failover"})
                break
            except pymongo.errors.AutoReconnect:
                time.sleep(0.1)
        assert rs_client.admin.command("replSetGetStatus")["term"] > term
    finally:
        old_client.close()
        secondary.close()


def test_primary_exits_cleanly_on_sigterm_and_the_set_elects_another(launcher: Launcher) -> None:
    """A unit stop (SIGTERM) of the primary, with clients connected, ends the process with exit 0
    well within systemd's stop timeout, and a secondary takes over."""
    nodes = secured_set(launcher, ADMIN_PW)
    client = pymongo.MongoClient(_set_uri(nodes), serverSelectionTimeoutMS=20000)
    try:
        client.clinic.visits.insert_one({"_id": "before-stop"})
        primary = _primary(nodes, client)
        started = time.monotonic()
        assert primary.stop(timeout=30) == 0
        assert time.monotonic() - started < 20
        survivors = {n.address for n in nodes if n is not primary}

        def new_primary() -> bool:
            status = client.admin.command("replSetGetStatus")
            return any(
                m["stateStr"] == "PRIMARY" and m["name"] in survivors for m in status["members"]
            )

        wait_for(new_primary, 30, "a new primary among the other members")
    finally:
        client.close()
