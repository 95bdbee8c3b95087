"""Contract tests of the mongodump / mongorestore doubles (mongo-tools 100.x semantics, §3.12).

The tools run under the system python3 (no pymongo there), as they do on a target host; pymongo
is only the test's own client. Set MONGODB_TOOLS_BIN to a directory with real mongodump and
mongorestore binaries to run the same tests against mongo-tools.
"""

from __future__ import annotations

import datetime
import gzip
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bson
import pymongo
import pytest
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument

from tests.doubles.polling import wait_for

from .. import bson_codec
from ..tools import archive
from .conftest import (
    AGAINST_DOUBLE,
    REPO,
    Launcher,
    Mongod,
    command_error,
    replset_config,
    wait_primary,
)

TOOLS_BIN = os.environ.get("MONGODB_TOOLS_BIN")
SYSTEM_PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
RAW = CodecOptions(document_class=RawBSONDocument)
MAGIC = bytes.fromhex("6de29981")
FAST = "serverSelectionTimeoutMS=3000"


def tool(name: str, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    if TOOLS_BIN:
        command = [str(Path(TOOLS_BIN) / name)]
    else:
        command = [SYSTEM_PYTHON, "-m", f"tests.doubles.mongodb.tools.{name}"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [*command, *args], input=stdin, capture_output=True, cwd=REPO, env=env, timeout=90
    )


def uri(node: Mongod, extra: str = "") -> str:
    return f"mongodb://{node.address}/?{FAST}{extra}"


def snapshot(client: pymongo.MongoClient[Any], db: str) -> dict[str, Any]:
    """Every collection of db as raw BSON (exact types) plus its index specs."""
    out: dict[str, Any] = {}
    for name in sorted(client[db].list_collection_names()):
        coll = client[db].get_collection(name, codec_options=RAW)
        docs = sorted(bytes(d.raw) for d in coll.find())
        indexes = sorted(
            (i["name"], tuple(i["key"].items()), bool(i.get("unique")))
            for i in client[db][name].list_indexes()
        )
        out[name] = (docs, indexes)
    return out


def populate(client: pymongo.MongoClient[Any]) -> None:
    app = client.app
    app.people.insert_many(
        [
            {
                "_id": i,
                "name": f"p{i}",
                "int64": bson.Int64(2**40 + i),
                "double": 1.5 * i,
                "when": datetime.datetime(2024, 1, 2, 3, 4, 5, 678000),
                "oid": bson.ObjectId(),
                "bin": bson.Binary(bytes([i, 0, 255]), 0),
                "uuid": bson.Binary(bytes(range(16)), 4),
                "dec": bson.Decimal128("12.345"),
                "re": bson.Regex("^p[0-9]+$", "i"),
                "ts": bson.Timestamp(1700000000, i + 1),
                "none": None,
                "flag": i % 2 == 0,
                "nested": {"list": [1, "two", {"three": 3.0}], "empty": {}},
                "min": bson.MinKey(),
                "max": bson.MaxKey(),
            }
            for i in range(30)
        ]
    )
    app.people.create_index([("name", 1)], name="name_1", unique=True)
    app.people.create_index([("int64", -1), ("double", 1)], name="compound")
    app.orders.insert_many([{"n": i, "marker": "marker-string-0123"} for i in range(250)])
    app.create_collection("empty")
    app.empty.create_index([("k", 1)], name="k_1")
    client.other.logs.insert_one({"_id": "only", "msg": "hello"})


def restored_server(launcher: Launcher, archive_bytes: bytes, *args: str) -> Mongod:
    """A fresh server into which mongorestore, given `args`, restored the archive from stdin."""
    target = launcher.start()
    restore = tool("mongorestore", f"--uri={uri(target)}", "--archive", *args, stdin=archive_bytes)
    assert restore.returncode == 0, restore.stderr.decode()
    return target


@pytest.fixture
def source(launcher: Launcher) -> Iterator[Mongod]:
    node = launcher.start()
    client = node.client()
    populate(client)
    client.close()
    yield node


def test_round_trip_gzip_file_into_fresh_server(
    source: Mongod, launcher: Launcher, tmp_path: Path
) -> None:
    path = tmp_path / "backup.archive.gz"
    dump = tool("mongodump", f"--uri={uri(source)}", "--gzip", f"--archive={path}")
    assert dump.returncode == 0, dump.stderr.decode()
    assert dump.stdout == b""
    assert "done dumping app.people (30 documents)" in dump.stderr.decode()
    assert subprocess.run(["gzip", "-t", str(path)], timeout=30).returncode == 0
    assert gzip.decompress(path.read_bytes())[:4] == MAGIC
    target = launcher.start()
    restore = tool("mongorestore", f"--uri={uri(target)}", "--gzip", f"--archive={path}", "--drop")
    assert restore.returncode == 0, restore.stderr.decode()
    assert "281 document(s) restored successfully. 0 document(s) failed" in restore.stderr.decode()
    src, dst = source.client(), target.client()
    try:
        for db in ("app", "other"):
            assert snapshot(dst, db) == snapshot(src, db)
        assert "empty" in dst.app.list_collection_names()
        assert ("k_1", (("k", 1),), False) in snapshot(dst, "app")["empty"][1]
    finally:
        src.close()
        dst.close()


def test_drop_replaces_dumped_collections_only(source: Mongod, tmp_path: Path) -> None:
    path = tmp_path / "a.archive"
    assert tool("mongodump", f"--uri={uri(source)}", f"--archive={path}").returncode == 0
    client = source.client()
    try:
        before = snapshot(client, "app")
        client.app.people.update_one({"_id": 1}, {"$set": {"name": "changed"}})
        client.app.people.insert_one({"_id": 999})
        client.app.extra.insert_one({"_id": "not in the dump"})
        restore = tool("mongorestore", f"--uri={uri(source)}", f"--archive={path}", "--drop")
        assert restore.returncode == 0, restore.stderr.decode()
        after = snapshot(client, "app")
        assert after.pop("extra")[0]  # collections absent from the dump are left alone
        assert after == before
    finally:
        client.close()


def test_duplicates_are_counted_not_fatal_unless_stop_on_error(
    source: Mongod, tmp_path: Path
) -> None:
    path = tmp_path / "a.archive"
    assert (
        tool("mongodump", f"--uri={uri(source)}", "--db=other", f"--archive={path}").returncode == 0
    )
    again = tool("mongorestore", f"--uri={uri(source)}", f"--archive={path}")
    assert again.returncode == 0
    assert "0 document(s) restored successfully. 1 document(s) failed" in again.stderr.decode()
    strict = tool("mongorestore", f"--uri={uri(source)}", f"--archive={path}", "--stopOnError")
    assert strict.returncode == 1
    assert "E11000 duplicate key error" in strict.stderr.decode()


def test_stdout_archive_pipes_into_restore_from_stdin(source: Mongod, launcher: Launcher) -> None:
    plain = tool("mongodump", f"--uri={uri(source)}", "--archive", "--quiet")
    assert plain.returncode == 0, plain.stderr.decode()
    assert plain.stdout[:4] == MAGIC
    assert plain.stderr == b""
    parsed = archive.read_archive(plain.stdout)
    assert parsed.header["version"] == "0.1"
    names = {(m["db"], m["collection"]) for m in parsed.metadata}
    assert {("app", "people"), ("app", "orders"), ("app", "empty"), ("other", "logs")} <= names
    zipped = tool("mongodump", f"--uri={uri(source)}", "--archive=-", "--gzip")
    assert gzip.decompress(zipped.stdout)[:4] == MAGIC
    client = restored_server(launcher, zipped.stdout, "--gzip").client()
    try:
        assert client.app.orders.count_documents({}) == 250
    finally:
        client.close()


def test_ns_include_restores_selected_collections(source: Mongod, launcher: Launcher) -> None:
    dump = tool("mongodump", f"--uri={uri(source)}", "--archive")
    client = restored_server(launcher, dump.stdout, "--nsInclude=app.p*").client()
    try:
        assert client.list_database_names() == ["app"]
        assert client.app.list_collection_names() == ["people"]
    finally:
        client.close()


@pytest.mark.skipif(
    not AGAINST_DOUBLE or bool(TOOLS_BIN), reason="tampers with the double's format"
)
def test_corrupted_archive_fails_crc(source: Mongod) -> None:
    dump = tool("mongodump", f"--uri={uri(source)}", "--archive")
    tampered = dump.stdout.replace(b"marker-string-0123", b"marker-string-XXXX", 1)
    assert tampered != dump.stdout
    restore = tool("mongorestore", f"--uri={uri(source)}", "--archive", stdin=tampered)
    assert restore.returncode == 1
    assert "Failed: CRC mismatch for namespace app.orders" in restore.stderr.decode()
    not_gzip = tool(
        "mongorestore", f"--uri={uri(source)}", "--archive", "--gzip", stdin=dump.stdout
    )
    assert not_gzip.returncode == 1
    plain = tool("mongorestore", f"--uri={uri(source)}", "--archive", stdin=b"not an archive")
    assert plain.returncode == 1
    assert "does not appear to be a mongodump archive" in plain.stderr.decode()


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("mongodump", ["--nope"], "error parsing command line options: unknown option `nope'"),
        ("mongodump", ["--archive", "/tmp/x"], "provide only one MongoDB connection string"),
        (
            "mongodump",
            ["mongodb://a", "mongodb://b", "--archive"],
            "provide only one MongoDB connection string",
        ),
        ("mongodump", ["--db=app", "--oplog", "--archive"], "--oplog mode only supported on full"),
        ("mongodump", ["--out=/tmp/d", "--archive"], "--out not allowed when --archive"),
        ("mongorestore", ["--oplogReplay", "--nsInclude=a.b", "--archive"], "with includes"),
        ("mongorestore", ["--oplogReplay", "--db=a", "--archive"], "with includes specified"),
        ("mongorestore", ["--oplogLimit=5", "--archive"], "without --oplogReplay"),
        ("mongorestore", ["--oplogReplay", "--oplogFile=x", "--archive"], "--oplogFile with"),
    ],
)
def test_bad_options_exit_1(name: str, args: list[str], message: str) -> None:
    proc = tool(name, *args)
    assert proc.returncode == 1
    assert message in proc.stderr.decode()
    assert re.match(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d{4}\t", proc.stderr)


def test_restore_without_oplog_in_archive(source: Mongod) -> None:
    dump = tool("mongodump", f"--uri={uri(source)}", "--archive")
    proc = tool(
        "mongorestore", f"--uri={uri(source)}", "--archive", "--oplogReplay", stdin=dump.stdout
    )
    assert proc.returncode == 1
    assert (
        "no oplog file to replay; make sure you run mongodump with --oplog" in proc.stderr.decode()
    )


def test_oplog_against_standalone_fails(source: Mongod) -> None:
    proc = tool("mongodump", f"--uri={uri(source)}", "--oplog", "--archive")
    assert proc.returncode == 1
    assert "Failed: error getting oplog start" in proc.stderr.decode()


def test_connection_failure(tmp_path: Path) -> None:
    proc = tool(
        "mongodump", "--uri=mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300", "--archive"
    )
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert "Failed: can't create session" in err
    assert "connection refused" in err
    assert proc.stdout == b""


def test_config_file_keys_are_strict(tmp_path: Path) -> None:
    config = tmp_path / "backup.yaml"
    config.write_text("password: x\nuser: backup\n")
    proc = tool("mongodump", f"--config={config}", "--archive")
    assert proc.returncode == 1
    assert "field user not found" in proc.stderr.decode()


@pytest.fixture
def secured(launcher: Launcher) -> Iterator[Mongod]:
    node = launcher.start(["--auth"])
    client = node.client()
    client.admin.command("createUser", "admin", pwd="admin-pw-1", roles=["root"])
    client.close()
    admin = node.client("admin", "admin-pw-1")
    admin.admin.command("createUser", "backup", pwd="b:ck@p pw'1", roles=["backup", "restore"])
    admin.app.command("createUser", "appuser", pwd="app-pw", roles=["readWrite"])
    admin.app.items.insert_many([{"i": i} for i in range(5)])
    admin.close()
    yield node


def test_password_from_config_file_not_argv(secured: Mongod, tmp_path: Path) -> None:
    config = tmp_path / "mongo-backup.yaml"
    config.write_text('# backup credentials\npassword: "b:ck@p pw\'1"\n')
    config.chmod(0o600)
    target = f"mongodb://backup@{secured.address}/?authSource=admin&{FAST}"
    dump = tool("mongodump", f"--uri={target}", f"--config={config}", "--archive", "--gzip")
    assert dump.returncode == 0, dump.stderr.decode()
    parsed = archive.read_archive(gzip.decompress(dump.stdout))
    assert len(parsed.documents[("app", "items")]) == 5
    assert ("admin", "system.users") in parsed.documents
    restore = tool(
        "mongorestore",
        f"--uri={target}",
        f"--config={config}",
        "--archive",
        "--gzip",
        "--drop",
        stdin=dump.stdout,
    )
    assert restore.returncode == 0, restore.stderr.decode()
    assert "restoring users from archive" in restore.stderr.decode()


def test_authentication_failures(secured: Mongod, tmp_path: Path) -> None:
    wrong = tool(
        "mongodump",
        f"--host={secured.address}",
        "-u",
        "backup",
        "-p",
        "nope",
        "--authenticationDatabase=admin",
        "--archive",
    )
    assert wrong.returncode == 1
    err = wrong.stderr.decode()
    assert "Failed: can't create session" in err and "Authentication failed." in err
    assert "nope" not in err
    anonymous = tool("mongodump", f"--uri={uri(secured)}", "--archive")
    assert anonymous.returncode == 1
    assert "requires authentication" in anonymous.stderr.decode()
    app_uri = f"--uri=mongodb://appuser:app-pw@{secured.address}/app?{FAST}"
    own = tool("mongodump", app_uri, "--archive")
    assert own.returncode == 0, own.stderr.decode()
    assert {m["db"] for m in archive.read_archive(own.stdout).metadata} == {"app"}
    scoped = tool("mongodump", app_uri, "--db=admin", "--archive")
    assert scoped.returncode == 1
    assert "not authorized" in scoped.stderr.decode()


ALICE_PW = "alice:pw 1"
TARGET_ADMIN_PW = "target-admin-pw"
TEMPORARY = ("tempusers", "temproles")


def logs_in(node: Mongod, user: str, password: str, source: str = "admin") -> bool:
    """Whether user@source authenticates on node with password (False on 18, any other error
    fails the test)."""
    client = node.client(user, password, authSource=source)
    try:
        client.admin.command("ping")
        return True
    except pymongo.errors.OperationFailure as exc:
        assert exc.code == 18, exc.details
        return False
    finally:
        client.close()


@pytest.fixture
def users_dump(launcher: Launcher) -> bytes:
    """A full gzipped dump of a server with app data and two users: alice@admin (root) and
    carol@app, whose password is carol-source-pw."""
    node = launcher.start()
    client = node.client()
    try:
        client.admin.command("createUser", "alice", pwd=ALICE_PW, roles=["root"])
        client.app.command("createUser", "carol", pwd="carol-source-pw", roles=["readWrite"])
        client.app.items.insert_many([{"_id": i} for i in range(3)])
    finally:
        client.close()
    dump = tool("mongodump", f"--uri={uri(node)}", "--archive", "--gzip")
    assert dump.returncode == 0, dump.stderr.decode()
    assert ("admin", "system.users") in archive.read_archive(gzip.decompress(dump.stdout)).documents
    return dump.stdout


@pytest.fixture
def users_target(launcher: Launcher) -> Mongod:
    """A server with access control and its own users: admin (root), bob@admin and carol@app
    (password carol-target-pw)."""
    node = launcher.start(["--auth"])
    local = node.client()
    local.admin.command("createUser", "admin", pwd=TARGET_ADMIN_PW, roles=["root"])
    local.close()
    admin = node.client("admin", TARGET_ADMIN_PW)
    admin.admin.command("createUser", "bob", pwd="bob-pw", roles=["readAnyDatabase"])
    admin.app.command("createUser", "carol", pwd="carol-target-pw", roles=["read"])
    admin.close()
    return node


def restore_as_admin(target: Mongod, dump: bytes, *args: str) -> str:
    """mongorestore of the gzipped archive as the target's admin: its stderr."""
    login = f"mongodb://admin:{TARGET_ADMIN_PW}@{target.address}/?authSource=admin&{FAST}"
    proc = tool("mongorestore", f"--uri={login}", "--archive", "--gzip", *args, stdin=dump)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stderr.decode()


def test_full_restore_with_drop_replaces_the_target_users(
    users_dump: bytes, users_target: Mongod
) -> None:
    """The hazard of restoring a full dump with --drop: the target's users become the dump's.
    Users missing from the dump are removed, the restoring admin included; users of the dump log
    in with their source passwords (the dump holds their SCRAM keys)."""
    err = restore_as_admin(users_target, users_dump, "--drop")
    assert "restoring users from archive" in err
    assert logs_in(users_target, "alice", ALICE_PW)
    assert logs_in(users_target, "carol", "carol-source-pw", "app")
    assert not logs_in(users_target, "carol", "carol-target-pw", "app")
    assert not logs_in(users_target, "bob", "bob-pw")
    assert not logs_in(users_target, "admin", TARGET_ADMIN_PW)
    alice = users_target.client("alice", ALICE_PW)
    try:
        assert alice.app.items.count_documents({}) == 3
        users = {(u["user"], u["db"]) for u in alice.admin["system.users"].find()}
        assert users == {("alice", "admin"), ("carol", "app")}
    finally:
        alice.close()


def test_full_restore_without_drop_adds_the_dumped_users(
    users_dump: bytes, users_target: Mongod
) -> None:
    """Without --drop the dump's users are added; a user the target already has keeps the
    target's definition (mongod inserts, and a duplicate is skipped with a warning). The
    temporary collections are gone afterwards."""
    restore_as_admin(users_target, users_dump)
    assert logs_in(users_target, "alice", ALICE_PW)
    assert logs_in(users_target, "bob", "bob-pw")
    assert logs_in(users_target, "admin", TARGET_ADMIN_PW)
    assert logs_in(users_target, "carol", "carol-target-pw", "app")
    assert not logs_in(users_target, "carol", "carol-source-pw", "app")
    admin = users_target.client("admin", TARGET_ADMIN_PW)
    try:
        assert not set(TEMPORARY) & set(admin.admin.list_collection_names())
        assert admin.app.items.count_documents({}) == 3
    finally:
        admin.close()


def test_ns_exclude_admin_leaves_the_target_users_alone(
    users_dump: bytes, users_target: Mongod
) -> None:
    err = restore_as_admin(users_target, users_dump, "--drop", "--nsExclude=admin.*")
    assert "restoring users" not in err
    assert logs_in(users_target, "bob", "bob-pw")
    assert logs_in(users_target, "carol", "carol-target-pw", "app")
    assert not logs_in(users_target, "alice", ALICE_PW)
    admin = users_target.client("admin", TARGET_ADMIN_PW)
    try:
        assert admin.app.items.count_documents({}) == 3
        assert not set(TEMPORARY) & set(admin.admin.list_collection_names())
    finally:
        admin.close()


def test_temporary_collections_are_named_by_options_replaced_and_dropped(
    users_dump: bytes, launcher: Launcher
) -> None:
    """--tempUsersColl/--tempRolesColl name the temporary collections; one left over by an
    earlier run is dropped before it is filled, so its documents are not merged. Roles of the
    dump are merged like users."""
    parsed = archive.read_archive(gzip.decompress(users_dump))
    role = {
        "_id": "app.auditor",
        "role": "auditor",
        "db": "app",
        "privileges": [{"resource": {"db": "app", "collection": ""}, "actions": ["find"]}],
        "roles": [],
    }
    spaces = [
        archive.Namespace(
            m["db"], m["collection"], m["metadata"], parsed.documents[(m["db"], m["collection"])]
        )
        for m in parsed.metadata
    ]
    spaces.append(archive.Namespace("admin", "system.roles", "", [bson.encode(role)]))
    path = launcher.base / "with-roles.archive"
    with path.open("wb") as handle:
        archive.write_archive(handle, spaces, "7.0.14", "100.10.0")
    target = launcher.start()
    client = target.client()
    try:
        leftover = {"_id": "admin.mallory", "user": "mallory", "db": "admin", "roles": []}
        client.admin.restusers.insert_one(leftover)
        restore = tool(
            "mongorestore",
            f"--uri={uri(target)}",
            f"--archive={path}",
            "--tempUsersColl=restusers",
            "--tempRolesColl=restroles",
        )
        assert restore.returncode == 0, restore.stderr.decode()
        err = restore.stderr.decode()
        assert "restoring users from archive" in err and "restoring roles from archive" in err
        names = set(client.admin.list_collection_names())
        assert not {"restusers", "restroles", *TEMPORARY} & names
        users = {(u["user"], u["db"]) for u in client.admin["system.users"].find()}
        assert users == {("alice", "admin"), ("carol", "app")}
        roles = list(client.admin["system.roles"].find())
        assert [(r["role"], r["db"]) for r in roles] == [("auditor", "app")]
    finally:
        client.close()
    assert logs_in(target, "alice", ALICE_PW)


def test_merge_authz_collections_needs_restore_privileges(users_target: Mongod) -> None:
    admin = users_target.client("admin", TARGET_ADMIN_PW)
    admin.admin.command("createUser", "writer", pwd="writer-pw", roles=["readWriteAnyDatabase"])
    admin.admin.command("createUser", "useradmin", pwd="ua-pw", roles=["userAdminAnyDatabase"])
    admin.admin.command("createUser", "restorer", pwd="restorer-pw", roles=["restore"])
    merge = {"tempUsersCollection": "admin.tempusers", "drop": True, "db": ""}
    try:
        for user, password in (("writer", "writer-pw"), ("useradmin", "ua-pw")):
            client = users_target.client(user, password)
            try:
                error = command_error(
                    lambda c=client: c.admin.command("_mergeAuthzCollections", 1, **merge)
                )
            finally:
                client.close()
            assert (error["code"], error["codeName"]) == (13, "Unauthorized")
            if user == "useradmin":  # may manage users, may not read the temporary collection
                assert "Not authorized to read admin.tempusers" in error["errmsg"]
        # The restore role may: an empty temporary collection merged without drop changes nothing.
        restorer = users_target.client("restorer", "restorer-pw")
        try:
            body = {**merge, "drop": False}
            assert restorer.admin.command("_mergeAuthzCollections", 1, **body)["ok"] == 1.0
        finally:
            restorer.close()
        assert logs_in(users_target, "bob", "bob-pw")
        unknown = command_error(
            lambda: admin.admin.command("_mergeAuthzCollections", 1, **merge, bogus=1)
        )
        assert unknown["code"] == 40415
        assert "'_mergeAuthzCollections.bogus' is an unknown field" in unknown["errmsg"]
        elsewhere = command_error(lambda: admin.app.command("_mergeAuthzCollections", 1, **merge))
        assert elsewhere["code"] == 13
        assert "may only be run against the admin database" in elsewhere["errmsg"]
    finally:
        admin.close()


@pytest.fixture(scope="module")
def replset(module_launcher: Launcher) -> Iterator[list[Mongod]]:
    nodes = [module_launcher.start(["--replSet", "rs0"]) for _ in range(3)]
    client = nodes[0].client()
    client.admin.command("replSetInitiate", replset_config("rs0", nodes))
    client.close()
    wait_primary(nodes[0])
    yield nodes


def _set_uri(nodes: list[Mongod], extra: str = "") -> str:
    return f"mongodb://{','.join(n.address for n in nodes)}/?replicaSet=rs0&{FAST}{extra}"


def test_read_preference_secondary_reads_from_a_secondary(replset: list[Mongod]) -> None:
    client = pymongo.MongoClient(_set_uri(replset), serverSelectionTimeoutMS=20000)
    direct = [n.client() for n in replset]
    secondaries = [c for c in direct if not c.admin.command("hello")["isWritablePrimary"]]
    assert len(secondaries) == 2
    try:
        client.app.rp.insert_many([{"_id": i} for i in range(3)], ordered=True)
        client.app.rp.with_options(write_concern=pymongo.WriteConcern(w=3)).insert_one({"_id": 3})
        for secondary in secondaries:
            secondary.admin.command("setParameter", 1, replicationApplyDelayMillis=4000)
        # w: 1, not the implicit default (majority), which would wait for a secondary to apply it.
        client.app.rp.with_options(write_concern=pymongo.WriteConcern(w=1)).insert_one(
            {"_id": "late"}
        )
        from_secondary = tool(
            "mongodump", f"--uri={_set_uri(replset)}", "--readPreference=secondary", "--archive"
        )
        from_primary = tool("mongodump", f"--uri={_set_uri(replset)}", "--archive")
    finally:
        for secondary in secondaries:
            secondary.admin.command("setParameter", 1, replicationApplyDelayMillis=50)
        for each in (client, *direct):
            each.close()
    assert from_secondary.returncode == 0, from_secondary.stderr.decode()
    ids = {
        bson.decode(d)["_id"]
        for d in archive.read_archive(from_secondary.stdout).documents[("app", "rp")]
    }
    assert ids == {0, 1, 2, 3}
    ids = {
        bson.decode(d)["_id"]
        for d in archive.read_archive(from_primary.stdout).documents[("app", "rp")]
    }
    assert ids == {0, 1, 2, 3, "late"}


def test_oplog_dump_and_replay(replset: list[Mongod], launcher: Launcher) -> None:
    client = pymongo.MongoClient(_set_uri(replset), serverSelectionTimeoutMS=20000)
    try:
        items = client.shop.get_collection("items", write_concern=pymongo.WriteConcern(w=3))
        items.insert_many([{"_id": i, "qty": i} for i in range(4)])
        dump = tool(
            "mongodump",
            f"--uri={_set_uri(replset)}",
            "--readPreference=secondaryPreferred",
            "--oplog",
            "--gzip",
            "--archive",
        )
        assert dump.returncode == 0, dump.stderr.decode()
        parsed = archive.read_archive(gzip.decompress(dump.stdout))
        assert ("local", "oplog.rs") not in parsed.documents
        entries = [bson_codec.decode(e) for e in parsed.documents[archive.OPLOG]]
        assert entries and all("ts" in e and "op" in e for e in entries)
        # Operations that happen "during" the dump, appended to the captured oplog.
        last = entries[-1]["ts"]
        extra = [
            {"op": "i", "ns": "shop.items", "o": {"_id": 10, "qty": 10}},
            {
                "op": "u",
                "ns": "shop.items",
                "o": {"$v": 2, "diff": {"u": {"qty": 100}}},
                "o2": {"_id": 1},
            },
            {"op": "u", "ns": "shop.items", "o": {"_id": 2, "qty": 200}, "o2": {"_id": 2}},
            {"op": "d", "ns": "shop.items", "o": {"_id": 3}},
            {
                "op": "c",
                "ns": "shop.$cmd",
                "o": {"createIndexes": "items", "v": 2, "key": {"qty": 1}, "name": "qty_1"},
            },
        ]
        oplog = parsed.documents[archive.OPLOG] + [
            bson_codec.encode(
                {
                    "ts": bson_codec.Timestamp(last.time, last.inc + n + 1),
                    "t": bson_codec.Int64(1),
                    **e,
                }
            )
            for n, e in enumerate(extra)
        ]
        spaces = [
            archive.Namespace(
                m["db"],
                m["collection"],
                m["metadata"],
                parsed.documents[(m["db"], m["collection"])],
            )
            for m in parsed.metadata
            if (m["db"], m["collection"]) != archive.OPLOG
        ]
        spaces.append(archive.Namespace(*archive.OPLOG, "", oplog))
        with (Path(launcher.base) / "replay.archive").open("wb") as handle:
            archive.write_archive(handle, spaces, "7.0.14", "100.10.0")
        target = launcher.start()
        restore = tool(
            "mongorestore",
            f"--uri={uri(target)}",
            f"--archive={launcher.base / 'replay.archive'}",
            "--oplogReplay",
            "--drop",
        )
        assert restore.returncode == 0, restore.stderr.decode()
        restored = target.client()
        try:
            docs = {d["_id"]: d["qty"] for d in restored.shop.items.find()}
            assert docs == {0: 0, 1: 100, 2: 200, 10: 10}
            assert "qty_1" in restored.shop.items.index_information()
        finally:
            restored.close()
    finally:
        client.close()


def test_restored_users_replicate_to_every_member(replset: list[Mongod], users_dump: bytes) -> None:
    restore = tool(
        "mongorestore", f"--uri={_set_uri(replset)}", "--archive", "--gzip", stdin=users_dump
    )
    assert restore.returncode == 0, restore.stderr.decode()
    for node in replset:
        wait_for(lambda n=node: logs_in(n, "alice", ALICE_PW), 20, f"alice on {node.address}")
        assert logs_in(node, "carol", "carol-source-pw", "app")


def test_an_oplog_file_replays_onto_a_restored_dump_up_to_the_limit(
    replset: list[Mongod], launcher: Launcher, tmp_path: Path
) -> None:
    """A point-in-time restore: a dump, then the oplog entries written since, read raw from a
    member into a .bson file, replayed with --oplogFile onto the restored dump, up to a limit."""
    client = pymongo.MongoClient(_set_uri(replset), serverSelectionTimeoutMS=20000)
    try:
        notes = client.pitr.get_collection("notes", write_concern=pymongo.WriteConcern(w=3))
        notes.insert_many([{"_id": i, "v": "dumped"} for i in range(3)])
        dump = tool("mongodump", f"--uri={_set_uri(replset)}", "--oplog", "--gzip", "--archive")
        assert dump.returncode == 0, dump.stderr.decode()
        oplog = client.local.get_collection(
            "oplog.rs", codec_options=CodecOptions(document_class=RawBSONDocument)
        )
        since = oplog.find_one({}, sort=[("$natural", -1)])["ts"]
        notes.insert_one({"_id": 10, "v": "before"})
        notes.update_one({"_id": 0}, {"$set": {"v": "updated before"}})
        notes.delete_one({"_id": 1})
        notes.insert_one({"_id": 11, "v": "after"})
        notes.update_one({"_id": 2}, {"$set": {"v": "updated after"}})
        entries = list(oplog.find({"ts": {"$gt": since}, "ns": "pitr.notes"}).sort("$natural", 1))
    finally:
        client.close()
    limit = entries[3]["ts"]  # the insert of 11: it and everything after stay out
    (tmp_path / "oplog.bson").write_bytes(b"".join(e.raw for e in entries))
    (tmp_path / "empty").mkdir()
    target = restored_server(launcher, gzip.decompress(dump.stdout), "--oplogReplay")
    replay = tool(
        "mongorestore",
        f"--uri={uri(target)}",
        "--oplogReplay",
        f"--oplogFile={tmp_path / 'oplog.bson'}",
        f"--oplogLimit={limit.time}:{limit.inc}",
        str(tmp_path / "empty"),
    )
    assert replay.returncode == 0, replay.stderr.decode()
    restored = target.client()
    try:
        docs = {d["_id"]: d["v"] for d in restored.pitr.notes.find()}
    finally:
        restored.close()
    assert docs == {0: "updated before", 2: "dumped", 10: "before"}

    # The same file again onto what it produced changes nothing: replay is idempotent.
    again = tool(
        "mongorestore",
        f"--uri={uri(target)}",
        "--oplogReplay",
        f"--oplogFile={tmp_path / 'oplog.bson'}",
        f"--oplogLimit={limit.time}:{limit.inc}",
        str(tmp_path / "empty"),
    )
    assert again.returncode == 0, again.stderr.decode()
    with target.client() as restored:
        assert {d["_id"]: d["v"] for d in restored.pitr.notes.find()} == docs


def test_an_oplog_file_needs_replay_and_an_existing_file(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    no_replay = tool("mongorestore", f"--oplogFile={tmp_path / 'x'}", str(tmp_path / "empty"))
    assert no_replay.returncode == 1
    assert "cannot use --oplogFile without --oplogReplay enabled" in no_replay.stderr.decode()
    (tmp_path / "bad.bson").write_bytes(b"\x10\x00\x00")
    truncated = tool(
        "mongorestore",
        "--uri=mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=500",
        "--oplogReplay",
        f"--oplogFile={tmp_path / 'bad.bson'}",
        str(tmp_path / "empty"),
    )
    assert truncated.returncode == 1
    assert "error reading oplog file" in truncated.stderr.decode()
