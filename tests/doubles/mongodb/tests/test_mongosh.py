"""The contract driven by the real mongosh client (npm package, installed by `make mongosh`).

Each step is a separate `mongosh <uri> --quiet --eval <js>` run, as an operator or a role would
type it: the secured bootstrap through the localhost exception, logins, the replica set helpers
(`rs.status()`, `rs.conf()`, `rs.stepDown()`), a majority write and a refused reconfig. Results come
back as canonical Extended JSON (`--json=canonical`); an uncaught error makes mongosh exit non-zero
and print the server's error document instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymongo
import pytest
from bson import json_util

from tests.prerequisites import missing

from .conftest import REPO, Launcher, Mongod, free_port, replset_config, wait_healthy

ADMIN_PW = "sh-Admin-pw"
AUTH = ("--username", "admin", "--password", ADMIN_PW, "--authenticationDatabase", "admin")
# Member fields of replSetGetConfig in mongod 7.0 (see test_replica_set.py).
MEMBER_FIELDS = {
    "_id",
    "host",
    "arbiterOnly",
    "buildIndexes",
    "hidden",
    "priority",
    "tags",
    "secondaryDelaySecs",
    "votes",
}

# Initiate through the localhost exception (no credentials), wait until this node is writable
# primary, create the first user on it: the sequence the role runs, here typed into mongosh.
BOOTSTRAP_JS = """
const initiated = rs.initiate(%(config)s);
const deadline = Date.now() + 30000;
while (!db.hello().isWritablePrimary) {
  if (Date.now() > deadline) throw new Error("no writable primary within 30 s");
  sleep(100);
}
const created = db.getSiblingDB("admin").createUser(
  {user: "admin", pwd: %(password)s, roles: ["root"]}
);
({initiated: initiated.ok, created: created.ok, primary: db.hello().isWritablePrimary})
"""


def _find_mongosh() -> str | None:
    """$MONGOSH when set, else the copy `make mongosh` installs, else one on PATH."""
    if os.environ.get("MONGOSH"):
        candidates = [os.environ["MONGOSH"]]
    else:
        candidates = [str(REPO / ".venv/mongosh/node_modules/.bin/mongosh"), "mongosh"]
    found = (shutil.which(c) for c in candidates)
    return next((str(Path(c).absolute()) for c in found if c), None)


MONGOSH = _find_mongosh()


@pytest.fixture(autouse=True, scope="module")
def _require_mongosh() -> None:
    if MONGOSH is None:
        missing(
            f"the mongosh binary is missing ({os.environ.get('MONGOSH') or 'not installed'}): "
            "`make mongosh` installs it into .venv/mongosh, or set MONGOSH to one"
        )


@dataclass
class Shell:
    """Runs one mongosh process per call, with a private HOME (mongosh keeps its logs and its
    config there; the config turns telemetry off, as `disableTelemetry()` would)."""

    binary: str
    home: Path

    def run(
        self, uri: str, script: str, *options: str, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.binary, uri, "--quiet", "--norc", "--json=canonical", *options, "--eval", script],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.home,
            env={**os.environ, "HOME": str(self.home)},
            check=False,
        )

    def eval(self, uri: str, script: str, *options: str) -> Any:
        """The value of the script's last expression; mongosh must succeed."""
        result = self.run(uri, script, *options)
        assert result.returncode == 0, (
            f"mongosh exited {result.returncode}: {result.stderr}{result.stdout}"
        )
        return json_util.loads(result.stdout)

    def error(self, uri: str, script: str, *options: str) -> dict[str, Any]:
        """The error mongosh reports for a failing script: it must exit non-zero."""
        result = self.run(uri, script, *options)
        assert result.returncode != 0, f"mongosh succeeded: {result.stdout}"
        error = json_util.loads(result.stdout)
        assert isinstance(error, dict), result.stdout
        return error


def direct(node: Mongod) -> str:
    return f"mongodb://{node.address}/?directConnection=true&serverSelectionTimeoutMS=10000"


def set_uri(nodes: list[Mongod], db: str = "") -> str:
    hosts = ",".join(n.address for n in nodes)
    return f"mongodb://{hosts}/{db}?replicaSet=rs0&serverSelectionTimeoutMS=20000"


@pytest.fixture(scope="module")
def shell(tmp_path_factory: pytest.TempPathFactory) -> Shell:
    assert MONGOSH is not None
    home = tmp_path_factory.mktemp("mongosh-home")
    config = home / ".mongodb" / "mongosh" / "config"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"enableTelemetry": False}), encoding="utf-8")
    return Shell(MONGOSH, home)


def _bootstrap(shell: Shell, nodes: list[Mongod], config: dict[str, Any]) -> Any:
    script = BOOTSTRAP_JS % {"config": json.dumps(config), "password": json.dumps(ADMIN_PW)}
    return shell.eval(direct(nodes[0]), script)


@dataclass
class Bootstrapped:
    nodes: list[Mongod]
    result: Any


@pytest.fixture(scope="module")
def single(module_launcher: Launcher, shell: Shell) -> Bootstrapped:
    """One secured member (keyFile), initiated and given its first user through mongosh."""
    key = module_launcher.key_file(name="single-key")
    node = module_launcher.start(["--replSet", "rs0", "--keyFile", str(key)])
    return Bootstrapped([node], _bootstrap(shell, [node], replset_config("rs0", [node])))


@pytest.fixture(scope="module")
def replset(module_launcher: Launcher, shell: Shell) -> Iterator[Bootstrapped]:
    """Three secured members bootstrapped through mongosh on the first one, which is preferred
    (priority 2) so that it is the primary the localhost exception needs, on real mongod too."""
    key = module_launcher.key_file(name="set-key")
    nodes = [module_launcher.start(["--replSet", "rs0", "--keyFile", str(key)]) for _ in range(3)]
    config = replset_config("rs0", nodes)
    config["members"][0]["priority"] = 2
    result = _bootstrap(shell, nodes, config)
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        set_uri(nodes), username="admin", password=ADMIN_PW, authSource="admin"
    )
    try:
        wait_healthy(client)
    finally:
        client.close()
    yield Bootstrapped(nodes, result)


# A single secured member.


def test_bootstrap_through_the_localhost_exception(single: Bootstrapped) -> None:
    assert single.result == {"initiated": 1, "created": 1, "primary": True}


def test_second_user_without_credentials_is_refused(single: Bootstrapped, shell: Shell) -> None:
    error = shell.error(
        direct(single.nodes[0]),
        'db.getSiblingDB("admin").createUser({user: "late", pwd: "x", roles: ["root"]})',
    )
    assert error["code"] == 13
    assert error["codeName"] == "Unauthorized"


def test_login_with_username_and_password(single: Bootstrapped, shell: Shell) -> None:
    info = shell.eval(
        direct(single.nodes[0]), "db.runCommand({connectionStatus: 1}).authInfo", *AUTH
    )
    assert info["authenticatedUsers"] == [{"user": "admin", "db": "admin"}]
    assert info["authenticatedUserRoles"] == [{"role": "root", "db": "admin"}]


@pytest.mark.parametrize(
    ("user", "password"), [("admin", "wrong-pw"), ("nobody", ADMIN_PW)], ids=["password", "user"]
)
def test_failed_login_exits_non_zero(
    single: Bootstrapped, shell: Shell, user: str, password: str
) -> None:
    result = shell.run(
        direct(single.nodes[0]),
        "db.hello().ok",
        "--username",
        user,
        "--password",
        password,
        "--authenticationDatabase",
        "admin",
    )
    assert result.returncode != 0
    assert "Authentication failed" in result.stderr
    assert result.stdout.strip() == ""


# Three secured members.


def test_replset_bootstrap_and_status(replset: Bootstrapped, shell: Shell) -> None:
    assert replset.result == {"initiated": 1, "created": 1, "primary": True}
    status = shell.eval(set_uri(replset.nodes), "rs.status()", *AUTH)
    assert status["set"] == "rs0"
    assert status["ok"] == 1
    members = status["members"]
    assert [m["name"] for m in members] == [n.address for n in replset.nodes]
    assert sorted(m["stateStr"] for m in members) == ["PRIMARY", "SECONDARY", "SECONDARY"]
    assert all(m["health"] == 1 for m in members)
    assert sum(1 for m in members if m.get("self")) == 1


def test_conf_members_are_normalized(replset: Bootstrapped, shell: Shell) -> None:
    config = shell.eval(set_uri(replset.nodes), "rs.conf()", *AUTH)
    assert config["_id"] == "rs0"
    assert config["protocolVersion"] == 1
    assert config["settings"]["electionTimeoutMillis"] == 1000
    # mongosh turns BSON doubles into JavaScript numbers: values are checked, not BSON types.
    assert [m["host"] for m in config["members"]] == [n.address for n in replset.nodes]
    for member in config["members"]:
        assert set(member) == MEMBER_FIELDS
        assert member["votes"] == 1
        assert member["hidden"] is False
        assert member["arbiterOnly"] is False
        assert member["secondaryDelaySecs"] == 0
    assert [m["priority"] for m in config["members"]] == [2, 1, 1]


def test_majority_insert_then_find(replset: Bootstrapped, shell: Shell) -> None:
    result = shell.eval(
        set_uri(replset.nodes, "clinic"),
        """
        const inserted = db.visits.insertOne(
          {_id: "sh-1", who: "Meera"}, {writeConcern: {w: "majority", wtimeout: 10000}}
        );
        ({inserted, found: db.visits.find({_id: "sh-1"}).toArray()})
        """,
        *AUTH,
    )
    assert result["inserted"] == {"acknowledged": True, "insertedId": "sh-1"}
    assert result["found"] == [{"_id": "sh-1", "who": "Meera"}]


def test_secondary_replication_info_reads_the_stored_config(
    replset: Bootstrapped, shell: Shell
) -> None:
    """rs.printSecondaryReplicationInfo() counts local.system.replset first (a root privilege)."""
    info = shell.eval(set_uri(replset.nodes), "rs.printSecondaryReplicationInfo()", *AUTH)
    sources = sorted(info["value"])
    assert len(sources) == 2
    assert all(source.startswith("source: 127.0.0.1:") for source in sources)


def test_reconfig_adding_two_voting_members_is_93(replset: Bootstrapped, shell: Shell) -> None:
    new_hosts = json.dumps([f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"])
    error = shell.error(
        set_uri(replset.nodes),
        f"""
        const config = rs.conf();
        config.version += 1;
        {new_hosts}.forEach((host, i) => config.members.push({{_id: 10 + i, host}}));
        db.getSiblingDB("admin").runCommand({{replSetReconfig: config}})
        """,
        *AUTH,
    )
    assert error["code"] == 93
    assert error["codeName"] == "InvalidReplicaSetConfig"
    members = shell.eval(set_uri(replset.nodes), "rs.conf().members.length", *AUTH)
    assert members == 3


def test_step_down_elects_another_primary(replset: Bootstrapped, shell: Shell) -> None:
    status = shell.eval(set_uri(replset.nodes), "rs.status()", *AUTH)
    old = next(m["name"] for m in status["members"] if m["stateStr"] == "PRIMARY")
    primary = next(n for n in replset.nodes if n.address == old)
    stepped = shell.eval(
        direct(primary), "const r = rs.stepDown(); ({ok: r.ok, hello: db.hello()})", *AUTH
    )
    assert stepped["ok"] == 1
    assert stepped["hello"]["isWritablePrimary"] is False
    assert stepped["hello"]["secondary"] is True
    other = next(n for n in replset.nodes if n is not primary)
    new = shell.eval(
        direct(other),
        f"""
        const deadline = Date.now() + 30000;
        let primary;
        while (!(primary = rs.status().members.find(
            m => m.stateStr === "PRIMARY" && m.name !== {json.dumps(old)}))) {{
          if (Date.now() > deadline) throw new Error("no new primary within 30 s");
          sleep(100);
        }}
        primary.name
        """,
        *AUTH,
    )
    assert new != old
    assert new in [n.address for n in replset.nodes]
    written = shell.eval(
        set_uri(replset.nodes, "clinic"),
        'db.visits.insertOne({_id: "after"}, {writeConcern: {w: "majority"}}).acknowledged',
        *AUTH,
    )
    assert written is True
