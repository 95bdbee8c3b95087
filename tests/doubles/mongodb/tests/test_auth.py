"""Authentication, the localhost exception and built-in role privileges."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bson
import pytest

from .conftest import Launcher, Mongod, command_error, double_only, replset_config, wait_primary

ADMIN_PW = "adm1n-Pw"
APP_PW = "app-Pw"


@pytest.fixture(scope="module")
def secured(module_launcher: Launcher) -> Iterator[Mongod]:
    """A single-member replica set with keyFile, bootstrapped the way the role does it."""
    key = module_launcher.key_file()
    node = module_launcher.start(["--replSet", "rs0", "--keyFile", str(key)])
    local = node.client()
    local.admin.command("replSetInitiate", replset_config("rs0", [node]))
    wait_primary(node)
    local.admin.command("createUser", "admin", pwd=ADMIN_PW, roles=["root"])
    local.close()
    admin = node.client("admin", ADMIN_PW)
    admin.clinic.command("createUser", "appuser", pwd=APP_PW, roles=["readWrite"])
    admin.admin.command("createUser", "monitor", pwd="mon-Pw", roles=["clusterMonitor"])
    admin.admin.command(
        "createUser", "legacy", pwd="sha1-Pw", roles=["read"], mechanisms=["SCRAM-SHA-1"]
    )
    admin.close()
    yield node


def _code(call: Any) -> int:
    return int(command_error(call)["code"])


def test_secured_bootstrap_sequence(launcher: Launcher) -> None:
    key = launcher.key_file()
    node = launcher.start(["--replSet", "rs0", "--keyFile", str(key)])
    local = node.client()
    hello = local.admin.command("hello")
    assert hello["isreplicaset"] is True
    assert "setName" not in hello
    assert _code(lambda: local.admin.command("listDatabases")) == 13
    assert _code(lambda: local.admin.command("usersInfo")) == 13
    assert _code(lambda: local.admin.command("replSetGetConfig")) == 13
    assert _code(lambda: local.app.command("createUser", "x", pwd="p", roles=[])) == 13
    assert local.admin.command("replSetInitiate", replset_config("rs0", [node]))["ok"] == 1.0
    early = command_error(
        lambda: local.admin.command("createUser", "admin", pwd=ADMIN_PW, roles=["root"])
    )
    assert early["code"] == 10107
    wait_primary(node)
    status = local.admin.command("replSetGetStatus")
    assert [m["stateStr"] for m in status["members"]] == ["PRIMARY"]
    assert local.admin.command("createUser", "admin", pwd=ADMIN_PW, roles=["root"])["ok"] == 1.0
    error = command_error(
        lambda: local.admin.command("createUser", "second", pwd="p", roles=["root"])
    )
    assert error["code"] == 13
    assert _code(lambda: local.admin.command("replSetGetStatus")) == 13
    local.close()


def test_loopback_alias_peer_counts_as_localhost(launcher: Launcher) -> None:
    key = launcher.key_file()
    node = launcher.start(["--replSet", "rs0", "--keyFile", str(key)], bind_ip="127.0.0.1")
    with node.raw(source="127.0.0.2") as raw:
        status = raw.command({"replSetGetStatus": 1, "$db": "admin"})
        users = raw.command({"usersInfo": 1, "$db": "admin"})
    assert status["code"] == 94
    assert users["code"] == 13


def _in_process_command(tmp_path: Path, peer: str, body: dict[str, Any]) -> dict[str, Any]:
    """Serve one request through the double's connection handler with a chosen peer address."""
    from .. import config, server, storage

    (tmp_path / "db").mkdir(exist_ok=True)
    settings = config.load_settings(
        [
            "--dbpath",
            str(tmp_path / "db"),
            "--replSet",
            "rs0",
            "--auth",
            "--keyFile",
            str(tmp_path / "key"),
        ]
    )
    assert isinstance(settings, config.Settings)
    log = config.Log(str(tmp_path / "mongod.log"), True, "reopen")
    store = storage.Storage(settings.db_path)

    async def exchange() -> dict[str, Any]:
        node = server.Node(settings, log, store, "a" * 12)
        reader = asyncio.StreamReader()
        request = b"\x00\x00\x00\x00\x00" + bson.encode(body)
        reader.feed_data(struct.pack("<iiii", 16 + len(request), 7, 0, 2013) + request)
        reader.feed_eof()
        replies: list[bytes] = []

        class Writer:
            def write(self, data: bytes) -> None:
                replies.append(data)

            async def drain(self) -> None:
                return None

            def close(self) -> None:
                return None

        await node.serve_connection(reader, Writer(), peer)  # type: ignore[arg-type]
        return bson.decode(replies[0][21:])

    try:
        return asyncio.run(exchange())
    finally:
        log.close()


@double_only
def test_non_loopback_peer_gets_no_localhost_exception(tmp_path: Path) -> None:
    body = {"replSetGetStatus": 1, "$db": "admin"}
    remote = _in_process_command(tmp_path, "192.0.2.10", body)
    loopback = _in_process_command(tmp_path, "127.0.0.5", body)
    mapped = _in_process_command(tmp_path, "::ffff:127.0.0.1", body)
    assert remote["code"] == 13
    assert remote["errmsg"] == "Command replSetGetStatus requires authentication"
    assert loopback["code"] == 94
    assert mapped["code"] == 94


def test_wrong_password_and_unknown_user_fail_identically(secured: Mongod) -> None:
    failures = []
    for user, password in (("admin", "wrong"), ("nobody", "wrong")):
        client = secured.client(user, password)
        failures.append(command_error(lambda c=client: c.admin.command("ping")))
        client.close()
    assert [f["code"] for f in failures] == [18, 18]
    assert failures[0]["errmsg"] == failures[1]["errmsg"] == "Authentication failed."


@pytest.mark.parametrize(
    ("user", "password", "mechanism"),
    [
        ("admin", ADMIN_PW, "SCRAM-SHA-256"),
        ("admin", ADMIN_PW, "SCRAM-SHA-1"),
        ("legacy", "sha1-Pw", "SCRAM-SHA-1"),
    ],
)
def test_scram_mechanisms_authenticate(
    secured: Mongod, user: str, password: str, mechanism: str
) -> None:
    client = secured.client(user, password, authMechanism=mechanism)
    try:
        status = client.admin.command("connectionStatus")
    finally:
        client.close()
    assert status["authInfo"]["authenticatedUsers"] == [{"user": user, "db": "admin"}]


def test_sha1_only_user_cannot_use_sha256(secured: Mongod) -> None:
    client = secured.client("legacy", "sha1-Pw", authMechanism="SCRAM-SHA-256")
    try:
        assert command_error(lambda: client.admin.command("ping"))["code"] == 18
    finally:
        client.close()


def test_user_exists_only_in_its_database(secured: Mongod) -> None:
    right = secured.client("appuser", APP_PW, authSource="clinic")
    wrong = secured.client("appuser", APP_PW, authSource="admin")
    try:
        right.clinic.visits.insert_one({"ok": True})
        assert command_error(lambda: wrong.clinic.visits.find_one())["code"] == 18
    finally:
        right.close()
        wrong.close()


def test_sasl_supported_mechs_only_for_existing_users(secured: Mongod) -> None:
    with secured.raw() as raw:
        known = raw.command({"hello": 1, "saslSupportedMechs": "admin.admin", "$db": "admin"})
        legacy = raw.command({"hello": 1, "saslSupportedMechs": "admin.legacy", "$db": "admin"})
        unknown = raw.command({"hello": 1, "saslSupportedMechs": "admin.ghost", "$db": "admin"})
    assert sorted(known["saslSupportedMechs"]) == ["SCRAM-SHA-1", "SCRAM-SHA-256"]
    assert legacy["saslSupportedMechs"] == ["SCRAM-SHA-1"]
    assert "saslSupportedMechs" not in unknown


def test_speculative_authenticate_only_for_existing_users(secured: Mongod) -> None:
    def hello(user: str) -> dict[str, Any]:
        with secured.raw() as raw:
            return raw.command(
                {
                    "hello": 1,
                    "speculativeAuthenticate": {
                        "saslStart": 1,
                        "mechanism": "SCRAM-SHA-256",
                        "payload": bson.Binary(f"n,,n={user},r=clientnonce123".encode()),
                        "options": {"skipEmptyExchange": True},
                        "db": "admin",
                    },
                    "$db": "admin",
                }
            )

    known = hello("admin")["speculativeAuthenticate"]
    assert known["done"] is False
    assert known["payload"].startswith(b"r=clientnonce123")
    assert b",i=15000" in known["payload"]
    assert "speculativeAuthenticate" not in hello("ghost")


def test_unauthenticated_commands_require_authentication(secured: Mongod) -> None:
    client = secured.client()
    try:
        error = command_error(lambda: client.admin.command("listDatabases"))
        assert error["code"] == 13
        assert error["codeName"] == "Unauthorized"
        assert client.admin.command("ping")["ok"] == 1.0
        assert client.admin.command("buildInfo")["ok"] == 1.0
    finally:
        client.close()


def test_app_user_is_confined_to_its_database(secured: Mongod) -> None:
    app = secured.client("appuser", APP_PW, authSource="clinic")
    try:
        app.clinic.patients.insert_one({"name": "Ravi"})
        assert app.clinic.patients.find_one({"name": "Ravi"})["name"] == "Ravi"
        assert _code(lambda: app.admin.things.insert_one({"x": 1})) == 13
        assert _code(lambda: app.other.things.find_one()) == 13
        assert _code(lambda: app.admin.command("replSetGetStatus")) == 13
        assert _code(lambda: app.clinic.command("createUser", "x", pwd="p", roles=[])) == 13
        names = app.admin.command("listDatabases", nameOnly=True)["databases"]
        assert [d["name"] for d in names] == ["clinic"]
    finally:
        app.close()


def test_cluster_monitor_can_read_status_but_not_write(secured: Mongod) -> None:
    monitor = secured.client("monitor", "mon-Pw")
    try:
        status = monitor.admin.command("replSetGetStatus")
        assert status["set"] == "rs0"
        assert monitor.admin.command("replSetGetConfig")["config"]["_id"] == "rs0"
        assert _code(lambda: monitor.clinic.patients.insert_one({"x": 1})) == 13
        assert _code(lambda: monitor.admin.command("replSetStepDown", 60)) == 13
    finally:
        monitor.close()


def test_cluster_roles_read_the_stored_replset_config(secured: Mongod) -> None:
    """clusterMonitor (and root through clusterAdmin) may read local.system.replset, which
    mongosh's rs.printSecondaryReplicationInfo() counts; other roles may not."""
    monitor = secured.client("monitor", "mon-Pw")
    admin = secured.client("admin", ADMIN_PW)
    app = secured.client("appuser", APP_PW, authSource="clinic")
    try:
        assert monitor.local["system.replset"].find_one()["_id"] == "rs0"
        assert admin.local["system.replset"].count_documents({}) == 1
        assert _code(lambda: app.local["system.replset"].find_one()) == 13
        assert _code(lambda: monitor.local["system.replset"].insert_one({"x": 1})) == 13
    finally:
        monitor.close()
        admin.close()
        app.close()


def test_user_management_errors(secured: Mongod) -> None:
    admin = secured.client("admin", ADMIN_PW)
    try:
        exists = command_error(
            lambda: admin.clinic.command("createUser", "appuser", pwd="x", roles=["read"])
        )
        assert exists["code"] == 51003
        assert exists["errmsg"] == 'User "appuser@clinic" already exists'
        role = command_error(
            lambda: admin.clinic.command("createUser", "u1", pwd="x", roles=["clusterAdmin"])
        )
        assert role["code"] == 31
        assert _code(lambda: admin.clinic.command("createUser", "u2", roles=["read"])) == 2
        assert _code(lambda: admin.clinic.command("updateUser", "ghost", pwd="x")) == 11
        assert _code(lambda: admin.clinic.command("dropUser", "ghost")) == 11
    finally:
        admin.close()


def test_drop_all_users_from_a_database_leaves_the_others(secured: Mongod) -> None:
    admin = secured.client("admin", ADMIN_PW)
    try:
        for name in ("u1", "u2"):
            admin.wipe.command("createUser", name, pwd="Pw-1", roles=["read"])
        admin.keep.command("createUser", "u1", pwd="Pw-1", roles=["read"])
        assert admin.wipe.command("dropAllUsersFromDatabase")["n"] == 2
        assert admin.wipe.command("usersInfo", 1)["users"] == []
        assert [u["user"] for u in admin.keep.command("usersInfo", 1)["users"]] == ["u1"]
        assert admin.wipe.command("dropAllRolesFromDatabase")["n"] == 0
    finally:
        admin.keep.command("dropUser", "u1")
        admin.close()


def test_users_info_shape_and_role_changes(secured: Mongod) -> None:
    admin = secured.client("admin", ADMIN_PW)
    try:
        admin.clinic.command("createUser", "reporter", pwd="rep-Pw", roles=["read"])
        info = admin.clinic.command("usersInfo", "reporter")["users"][0]
        assert info["_id"] == "clinic.reporter"
        assert info["db"] == "clinic"
        assert info["roles"] == [{"role": "read", "db": "clinic"}]
        assert isinstance(info["userId"], bson.Binary) and info["userId"].subtype == 4
        assert sorted(info["mechanisms"]) == ["SCRAM-SHA-1", "SCRAM-SHA-256"]
        assert "credentials" not in info
        listed = [u["user"] for u in admin.clinic.command("usersInfo", 1)["users"]]
        assert sorted(listed) == ["appuser", "reporter"]
        reporter = secured.client("reporter", "rep-Pw", authSource="clinic")
        assert _code(lambda: reporter.clinic.notes.insert_one({"a": 1})) == 13
        admin.clinic.command("grantRolesToUser", "reporter", roles=["readWrite"])
        reporter.clinic.notes.insert_one({"a": 1})
        admin.clinic.command("revokeRolesFromUser", "reporter", roles=["readWrite"])
        assert _code(lambda: reporter.clinic.notes.insert_one({"a": 2})) == 13
        admin.clinic.command("updateUser", "reporter", pwd="new-Pw")
        reporter.close()
        stale = secured.client("reporter", "rep-Pw", authSource="clinic")
        assert _code(lambda: stale.clinic.notes.find_one()) == 18
        stale.close()
        admin.clinic.command("dropUser", "reporter")
        assert admin.clinic.command("usersInfo", "reporter")["users"] == []
    finally:
        admin.close()


def test_roles_info_lists_builtin_roles(secured: Mongod) -> None:
    admin = secured.client("admin", ADMIN_PW)
    try:
        roles = admin.admin.command({"rolesInfo": 1, "showBuiltinRoles": True})["roles"]
    finally:
        admin.close()
    names = {r["role"] for r in roles}
    assert {"read", "readWrite", "root", "clusterMonitor", "backup", "restore"} <= names
    assert all(r["isBuiltin"] for r in roles)
