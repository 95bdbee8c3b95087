"""The sample API (tests/fixtures/sample_api): release artifacts, the Node server, migrate.js.

The artifact tests need only Python. The others run `node` (skipped when it is missing, failed when
CI=true) and, for /records and migrations, the MongoDB double as a one-member replica set with
keyFile and access control, started the way the double's own contract tests start it.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import bson
import pytest

from tests.doubles.mongodb.tests.conftest import (
    Launcher,
    Mongod,
    free_port,
    replset_config,
    wait_primary,
)
from tests.doubles.polling import wait_for
from tests.fixtures.sample_api import build
from tests.prerequisites import missing

NODE = shutil.which("node")
JWT_SECRET = "jwt-Secret-value-4f1c9a"
ADMIN_PW = "adm1n-Pw"
API_PW = "api:Pw/with@odd chars"  # percent-encoded in URIs
CLINIC_PW = "clinic-app-Pw"
VERSIONS = [r.version for r in build.RELEASES]


@pytest.fixture
def node() -> str:
    if NODE:
        return NODE
    missing("node is not installed (the sample API needs node >= 18)")


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build.build(tmp_path_factory.mktemp("artifacts"))


@pytest.fixture(scope="module")
def releases(
    artifacts: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Each artifact unpacked once (tests that change a release unpack their own copy)."""
    base = tmp_path_factory.mktemp("releases")
    return {version: unpack(path, base / version) for version, path in artifacts.items()}


def unpack(artifact: Path, dest: Path) -> Path:
    dest.mkdir(parents=True)
    with tarfile.open(artifact) as tar:
        tar.extractall(dest, filter="data")
    return dest


# --------------------------------------------------------------------------- running the server


@dataclass
class Api:
    proc: subprocess.Popen[bytes]
    port: int
    log_file: Path

    def request(
        self, method: str, path: str, body: Any = None
    ) -> tuple[int, http.client.HTTPMessage, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            payload = None if body is None else json.dumps(body)
            headers = {"Content-Type": "application/json"} if payload else {}
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            return response.status, response.headers, json.loads(response.read())
        finally:
            conn.close()

    def log_text(self) -> str:
        return self.log_file.read_text(encoding="utf-8") if self.log_file.exists() else ""

    def log_records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log_text().splitlines()]

    def logged(self, msg: str, **fields: Any) -> dict[str, Any] | None:
        for record in self.log_records():
            if record["msg"] == msg and all(record.get(k) == v for k, v in fields.items()):
                return record
        return None


@dataclass
class ApiLauncher:
    node: str
    base: Path
    started: list[Api] = field(default_factory=list)

    def env(self, extra: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("MONGODB_URI", "APP_VERSION")}
        env.update(HOST="127.0.0.1", NODE_ENV="test", JWT_SECRET=JWT_SECRET)
        env.update(extra)
        return {k: v for k, v in env.items() if v != ""}

    def start(self, release: Path, **extra: str) -> Api:
        port = free_port()
        log_file = self.base / f"api-{port}.log"
        proc = subprocess.Popen(
            [self.node, "server.js"],
            cwd=release,
            env=self.env({"PORT": str(port), "LOG_FILE": str(log_file), **extra}),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        api = Api(proc, port, log_file)
        self.started.append(api)

        def listening() -> bool:
            if proc.poll() is not None:
                stderr = proc.stderr.read().decode() if proc.stderr else ""
                pytest.fail(f"server exited with {proc.returncode}: {stderr}")
            return api.logged("listening") is not None

        wait_for(listening, 10, f"the sample API on port {port}")
        return api

    def stop_all(self) -> None:
        for api in self.started:
            if api.proc.poll() is None:
                api.proc.kill()
            api.proc.wait(10)
            for stream in (api.proc.stdout, api.proc.stderr):
                if stream:
                    stream.close()


@pytest.fixture
def api(node: str, tmp_path: Path) -> Iterator[ApiLauncher]:
    launcher = ApiLauncher(node, tmp_path)
    yield launcher
    launcher.stop_all()


# ----------------------------------------------------------------------------- the MongoDB double


@dataclass
class MongoTarget:
    node: Mongod

    def uri(
        self, db: str, user: str = "api", password: str = API_PW, auth_source: str = "admin"
    ) -> str:
        return (
            f"mongodb://{quote(user, safe='')}:{quote(password, safe='')}@{self.node.address}/{db}"
            f"?replicaSet=rs0&authSource={auth_source}"
        )


@pytest.fixture(scope="module")
def mongo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoTarget]:
    """A single-member replica set with keyFile and access control, and two application users."""
    launcher = Launcher(tmp_path_factory.mktemp("mongod"))
    key = launcher.key_file()
    node = launcher.start(["--replSet", "rs0", "--keyFile", str(key)])
    try:
        local = node.client()
        local.admin.command("replSetInitiate", replset_config("rs0", [node]))
        wait_primary(node)
        local.admin.command("createUser", "admin", pwd=ADMIN_PW, roles=["root"])
        local.close()
        admin = node.client("admin", ADMIN_PW)
        dbs = ["records_api", "migrate_once", "migrate_fail", "migrate_v4", "migrate_dry", "cursor"]
        roles = [{"role": "readWrite", "db": db} for db in dbs]
        admin.admin.command("createUser", "api", pwd=API_PW, roles=roles)
        admin.clinic.command("createUser", "clinicapp", pwd=CLINIC_PW, roles=["readWrite"])
        admin.close()
        yield MongoTarget(node)
    finally:
        launcher.stop_all()


def admin_client(mongo: MongoTarget) -> Any:
    return mongo.node.client("admin", ADMIN_PW)


def migrate(node: str, release: Path, uri: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "JWT_SECRET"}
    env.update(MONGODB_URI=uri, APP_VERSION=(release / "VERSION").read_text().strip())
    return subprocess.run(
        [node, "migrate.js", *args],
        cwd=release,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def summary(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines, result.stderr
    assert lines[-1]["msg"] == "migrations complete", lines
    return lines[-1]


# -------------------------------------------------------------------------------------- artifacts


def test_build_is_reproducible(tmp_path: Path) -> None:
    first = build.build(tmp_path / "a")
    second = build.build(tmp_path / "b")
    assert sorted(first) == VERSIONS == ["1.0.0", "2.0.0", "3.0.0", "4.0.0"]
    for version in VERSIONS:
        data = first[version].read_bytes()
        assert data == second[version].read_bytes(), version
        digest = hashlib.sha256(data).hexdigest()
        sha_file = first[version].with_name(f"sample-api-{version}.tar.gz.sha256")
        assert sha_file.read_text() == f"{digest}  sample-api-{version}.tar.gz\n"
        with tarfile.open(first[version]) as tar:
            members = tar.getmembers()
        names = [m.name for m in members]
        assert names == sorted(names)
        for member in members:
            assert (member.mtime, member.uid, member.gid) == (build.MTIME, 0, 0), member.name
            assert member.mode == (0o755 if member.isdir() else 0o644), member.name


def test_releases_differ_as_intended(releases: dict[str, Path]) -> None:
    for version, path in releases.items():
        assert (path / "VERSION").read_text() == f"{version}\n"
        assert all((path / name).is_file() for name in build.APP_FILES)
        assert (path / "HEALTH_BROKEN").exists() == (version == "3.0.0")
    assert sorted(p.name for p in (releases["1.0.0"] / "migrations").iterdir()) == [
        "001-create-records-index.js"
    ]
    assert sorted(p.name for p in (releases["2.0.0"] / "migrations").iterdir()) == [
        "001-create-records-index.js",
        "002-backfill-record-source.js",
    ]
    assert sorted(p.name for p in (releases["4.0.0"] / "migrations").iterdir()) == [
        "001-create-records-index.js",
        "002-backfill-record-source.js",
        "003-fail-on-purpose.js",
    ]
    assert json.loads((releases["1.0.0"] / "package.json").read_text()).get("dependencies") is None


def test_cli_builds_only_the_requested_release(tmp_path: Path) -> None:
    assert build.main(["--out", str(tmp_path), "--release", "2.0.0"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "sample-api-2.0.0.tar.gz",
        "sample-api-2.0.0.tar.gz.sha256",
    ]
    with pytest.raises(ValueError, match="unknown release"):
        build.build(tmp_path, ["9.9.9"])


# ------------------------------------------------------------------------------------------ server


@pytest.mark.parametrize(
    ("version", "health", "migrations"),
    [
        ("1.0.0", 200, ["001-create-records-index"]),
        ("2.0.0", 200, ["001-create-records-index", "002-backfill-record-source"]),
        ("3.0.0", 503, ["001-create-records-index", "002-backfill-record-source"]),
        (
            "4.0.0",
            200,
            ["001-create-records-index", "002-backfill-record-source", "003-fail-on-purpose"],
        ),
    ],
)
def test_health_and_version(
    api: ApiLauncher,
    releases: dict[str, Path],
    version: str,
    health: int,
    migrations: list[str],
) -> None:
    server = api.start(releases[version])
    status, _, body = server.request("GET", "/healthz")
    assert status == health
    assert body == {"status": "ok" if health == 200 else "broken", "version": version}
    status, _, body = server.request("GET", "/version")
    assert status == 200
    assert (body["name"], body["version"], body["migrations"]) == (
        "sample-api",
        version,
        migrations,
    )


def test_health_broken_is_not_fixed_by_the_environment(
    api: ApiLauncher, releases: dict[str, Path]
) -> None:
    server = api.start(releases["3.0.0"], APP_VERSION="2.0.0", HEALTH_BROKEN="0")
    assert server.request("GET", "/healthz")[0] == 503


def test_logs_are_json_lines_without_the_secret(
    api: ApiLauncher, releases: dict[str, Path]
) -> None:
    server = api.start(releases["1.0.0"], LOG_LEVEL="info")
    server.request("GET", "/healthz")
    server.request("GET", "/nowhere")
    server.request("POST", "/records", {"a": 1})
    wait_for(lambda: server.logged("request", path="/records"), 5, "the /records log line")
    records = server.log_records()
    for record in records:
        assert list(record)[:3] == ["time", "level", "msg"]
        assert record["level"] in ("debug", "info", "warn", "error")
    assert server.logged("listening")["version"] == "1.0.0"
    health = server.logged("request", path="/healthz")
    assert health is not None
    assert (health["method"], health["status"]) == ("GET", 200)
    assert isinstance(health["duration_ms"], (int, float))
    assert server.logged("request", path="/nowhere", status=404)
    assert server.logged("request", method="POST", path="/records", status=503)
    assert JWT_SECRET not in server.log_text()


def test_refuses_to_start_without_jwt_secret(
    node: str, releases: dict[str, Path], tmp_path: Path
) -> None:
    log_file = tmp_path / "api.log"
    env = {k: v for k, v in os.environ.items() if k != "JWT_SECRET"}
    env.update(PORT=str(free_port()), LOG_FILE=str(log_file))
    result = subprocess.run(
        [node, "server.js"],
        cwd=releases["1.0.0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert result.returncode == 78
    assert "JWT_SECRET is not set" in result.stderr
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert [(r["level"], "JWT_SECRET" in r["msg"]) for r in lines] == [("error", True)]


def test_keep_alive_outlasts_the_alb_idle_timeout(
    api: ApiLauncher, releases: dict[str, Path]
) -> None:
    server = api.start(releases["1.0.0"])
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("GET", "/healthz")
        first = conn.getresponse()
        first.read()
        assert first.headers["Connection"] == "keep-alive"
        assert first.headers["Keep-Alive"] == "timeout=65"
        assert int(first.headers["Keep-Alive"].split("=")[1]) > 60
        local_port = conn.sock.getsockname()[1]
        conn.request("GET", "/version")
        second = conn.getresponse()
        second.read()
        assert second.status == 200
        assert conn.sock.getsockname()[1] == local_port  # same connection reused
    finally:
        conn.close()


def test_sigterm_drains_in_flight_requests(api: ApiLauncher, releases: dict[str, Path]) -> None:
    server = api.start(releases["1.0.0"], LOG_LEVEL="debug")
    idle = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    idle.request("GET", "/healthz")
    idle.getresponse().read()
    result: dict[str, Any] = {}

    def slow_request() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", "/slow?ms=1500")
        response = conn.getresponse()
        result.update(status=response.status, headers=response.headers, body=response.read())
        conn.close()

    thread = threading.Thread(target=slow_request)
    thread.start()
    wait_for(lambda: server.logged("request started", path="/slow"), 5, "the slow request")
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: server.logged("draining", in_flight=1), 5, "the drain to start")

    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
    assert idle.sock is not None
    idle.sock.settimeout(3)
    assert idle.sock.recv(1) == b""  # the idle keep-alive connection was closed
    idle.close()

    thread.join(10)
    assert result["status"] == 200
    assert json.loads(result["body"]) == {"slept_ms": 1500}
    assert result["headers"]["Connection"] == "close"
    assert server.proc.wait(5) == 0
    assert time.monotonic() - started >= 1.0  # it waited for the request rather than dropping it
    assert server.logged("request", path="/slow", status=200)
    assert server.logged("stopped", exit_code=0)


def test_drain_is_bounded(api: ApiLauncher, releases: dict[str, Path]) -> None:
    server = api.start(releases["1.0.0"], LOG_LEVEL="debug", DRAIN_TIMEOUT_MS="300")
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", "/slow?ms=20000")
    wait_for(lambda: server.logged("request started", path="/slow"), 5, "the slow request")
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(5) == 1
    assert time.monotonic() - started < 3
    assert server.logged("drain timed out; closing connections", in_flight=1)
    conn.close()


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("mongodb://h:27017/db?tls=true", "TLS is not supported"),
        ("mongodb://u:p@h/db?authMechanism=SCRAM-SHA-1", "authMechanism SCRAM-SHA-1"),
        ("mongodb+srv://cluster.example.invalid/db", "mongodb+srv URIs are not supported"),
    ],
)
def test_unsupported_mongodb_uris_stop_the_start(
    node: str, releases: dict[str, Path], tmp_path: Path, uri: str, problem: str
) -> None:
    env = {**os.environ, "JWT_SECRET": JWT_SECRET, "PORT": str(free_port()), "MONGODB_URI": uri}
    result = subprocess.run(
        [node, "server.js"],
        cwd=releases["1.0.0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert result.returncode == 78
    assert problem in result.stderr


def test_records_need_a_mongodb_uri(api: ApiLauncher, releases: dict[str, Path]) -> None:
    server = api.start(releases["1.0.0"])
    status, _, body = server.request("GET", "/records")
    assert (status, body) == (503, {"error": "MONGODB_URI is not set"})
    assert server.request("POST", "/records", [1])[0] == 400
    assert server.request("POST", "/records", {"$set": 1})[0] == 400


# -------------------------------------------------------------------------------------- MongoDB


def test_records_round_trip(
    api: ApiLauncher, releases: dict[str, Path], mongo: MongoTarget
) -> None:
    uri = mongo.uri("records_api")
    server = api.start(releases["2.0.0"], MONGODB_URI=uri)
    ids = []
    for patient in ("p-1", "p-2"):
        status, _, body = server.request("POST", "/records", {"patient": patient, "n": 7})
        assert status == 201, body
        ids.append(body["id"])
    status, _, body = server.request("GET", "/records")
    assert status == 200
    assert [r["_id"] for r in body["records"]] == ids[::-1]
    assert body["records"][0]["patient"] == "p-2"
    assert body["records"][0]["version"] == "2.0.0"

    client = admin_client(mongo)
    try:
        stored = list(client.records_api.records.find({}, sort=[("_id", 1)]))
    finally:
        client.close()
    assert [str(doc["_id"]) for doc in stored] == ids
    assert stored[0]["n"] == 7
    assert stored[0]["created_at"].year >= 2024

    text = server.log_text()
    assert API_PW not in text
    assert quote(API_PW, safe="") not in text
    assert "api:***@" in server.logged("listening")["mongodb"]


def test_records_with_the_app_users_own_database(
    api: ApiLauncher, releases: dict[str, Path], mongo: MongoTarget
) -> None:
    address = mongo.node.address
    uri = f"mongodb://clinicapp:{CLINIC_PW}@{address}/clinic?replicaSet=rs0"  # authSource: clinic
    server = api.start(releases["1.0.0"], MONGODB_URI=uri)
    assert server.request("POST", "/records", {"kind": "visit"})[0] == 201
    status, _, body = server.request("GET", "/records")
    assert (status, body["records"][0]["kind"]) == (200, "visit")


def test_wrong_password_fails_closed_without_logging_it(
    api: ApiLauncher, releases: dict[str, Path], mongo: MongoTarget
) -> None:
    wrong = "not-the-Pw-8d2e"
    server = api.start(releases["1.0.0"], MONGODB_URI=mongo.uri("records_api", password=wrong))
    status, _, body = server.request("GET", "/records")
    assert (status, body) == (503, {"error": "database unavailable"})
    failure = server.logged("database error")
    assert failure is not None
    assert failure["code"] == 18
    assert wrong not in server.log_text()


def test_migrations_apply_once_and_in_order(
    node: str, releases: dict[str, Path], mongo: MongoTarget
) -> None:
    uri = mongo.uri("migrate_once")
    client = admin_client(mongo)
    try:
        client.migrate_once.records.insert_one({"patient": "before-v2"})

        first = migrate(node, releases["1.0.0"], uri)
        assert first.returncode == 0, first.stdout + first.stderr
        assert summary(first)["applied"] == ["001-create-records-index"]

        again = migrate(node, releases["1.0.0"], uri)
        assert again.returncode == 0, again.stdout + again.stderr
        assert (summary(again)["applied"], summary(again)["already_applied"]) == ([], 1)

        upgrade = migrate(node, releases["2.0.0"], uri)
        assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
        assert summary(upgrade)["applied"] == ["002-backfill-record-source"]

        recorded = list(client.migrate_once["_migrations"].find({}, sort=[("_id", 1)]))
        assert [(d["_id"], d["version"]) for d in recorded] == [
            ("001-create-records-index", "1.0.0"),
            ("002-backfill-record-source", "2.0.0"),
        ]
        assert client.migrate_once.records.find_one({"patient": "before-v2"})["version"] == "1.0.0"
        assert migrate(node, releases["2.0.0"], uri).returncode == 0
        assert client.migrate_once["_migrations"].count_documents({}) == 2
    finally:
        client.close()
    assert API_PW not in first.stdout + first.stderr


def test_dry_run_lists_pending_change_sets(
    node: str, releases: dict[str, Path], mongo: MongoTarget
) -> None:
    result = migrate(node, releases["2.0.0"], mongo.uri("migrate_dry"), "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert summary(result)["pending"] == ["001-create-records-index", "002-backfill-record-source"]
    assert summary(result)["applied"] == []
    client = admin_client(mongo)
    try:
        assert client.migrate_dry["_migrations"].count_documents({}) == 0
    finally:
        client.close()


def test_failing_change_set_exits_non_zero_and_is_not_recorded(
    node: str, artifacts: dict[str, Path], mongo: MongoTarget, tmp_path: Path
) -> None:
    release = unpack(artifacts["1.0.0"], tmp_path / "release")
    (release / "migrations" / "002-broken.js").write_text(
        "module.exports = { id: '002-broken', async up() { throw new Error('boom in 002'); } };\n"
    )
    uri = mongo.uri("migrate_fail")
    for _ in range(2):  # a re-run does not re-apply 001 and still fails on 002
        result = migrate(node, release, uri)
        assert result.returncode == 1, result.stdout + result.stderr
        failure = json.loads(result.stdout.splitlines()[-1])
        assert (failure["msg"], failure["id"], failure["error"]) == (
            "change set failed",
            "002-broken",
            "boom in 002",
        )
    client = admin_client(mongo)
    try:
        recorded = [d["_id"] for d in client.migrate_fail["_migrations"].find({})]
    finally:
        client.close()
    assert recorded == ["001-create-records-index"]


def test_release_4_fails_at_its_third_change_set(
    node: str, releases: dict[str, Path], mongo: MongoTarget
) -> None:
    """4.0.0 as shipped: on a new database 001 and 002 are applied and recorded, 003 throws and is
    not recorded, and the run exits 1; a second run applies nothing again and fails the same way."""
    uri = mongo.uri("migrate_v4")
    failures = []
    for _ in range(2):
        result = migrate(node, releases["4.0.0"], uri)
        assert result.returncode == 1, result.stdout + result.stderr
        failures.append(json.loads(result.stdout.splitlines()[-1]))
    for failure in failures:
        assert (failure["level"], failure["msg"], failure["id"]) == (
            "error",
            "change set failed",
            "003-fail-on-purpose",
        )
        assert "fails on purpose" in failure["error"], failure
    assert failures[0]["applied"] == ["001-create-records-index", "002-backfill-record-source"]
    assert failures[1]["applied"] == []
    client = admin_client(mongo)
    try:
        recorded = list(client.migrate_v4["_migrations"].find({}, sort=[("_id", 1)]))
    finally:
        client.close()
    assert [(d["_id"], d["version"]) for d in recorded] == [
        ("001-create-records-index", "4.0.0"),
        ("002-backfill-record-source", "4.0.0"),
    ]


def test_client_follows_cursors_with_get_more(
    node: str, releases: dict[str, Path], mongo: MongoTarget
) -> None:
    client = admin_client(mongo)
    try:
        client.cursor.items.insert_many([{"n": i} for i in range(130)])
    finally:
        client.close()
    script = (
        "const { MongoClient } = require('./mongo');"
        "const c = new MongoClient(process.env.MONGODB_URI);"
        "c.db().collection('items').find({}, { batchSize: 20, sort: { n: 1 } })"
        ".then((docs) => { console.log(JSON.stringify(docs.map((d) => d.n))); return c.close(); })"
        ".catch((e) => { console.error(e.message); process.exitCode = 1; });"
    )
    result = run_node(node, releases["1.0.0"], script, MONGODB_URI=mongo.uri("cursor"))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == list(range(130))


def run_node(node: str, cwd: Path, script: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [node, "-e", script],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


def _fake_mongod_with_a_forged_signature(listener: socket.socket) -> None:
    """Answers hello and a SCRAM exchange whose final server signature is wrong, then anything."""
    conn, _ = listener.accept()
    with conn:
        while True:
            header = conn.recv(16, socket.MSG_WAITALL)
            if len(header) < 16:
                return
            length, request_id, _, _ = struct.unpack("<iiii", header)
            body = bson.decode(conn.recv(length - 16, socket.MSG_WAITALL)[5:])
            if "hello" in body:
                reply: dict[str, Any] = {"isWritablePrimary": True, "maxWireVersion": 21}
            elif "saslStart" in body:
                nonce = bytes(body["payload"]).decode().split("r=")[1]
                payload = f"r={nonce}server,s={base64.b64encode(b'salt').decode()},i=4096"
                reply = {"conversationId": 1, "done": False, "payload": payload.encode()}
            elif "saslContinue" in body:
                forged = b"v=" + base64.b64encode(bytes(32))
                reply = {"conversationId": 1, "done": True, "payload": forged}
            else:
                reply = {"n": 0}
            doc = bson.encode({**reply, "ok": 1.0})
            frame = struct.pack("<iiiiIB", 21 + len(doc), 1, request_id, 2013, 0, 0) + doc
            conn.sendall(frame)


def test_client_rejects_a_server_that_cannot_prove_the_password(
    node: str, releases: dict[str, Path]
) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        fake = threading.Thread(target=_fake_mongod_with_a_forged_signature, args=(listener,))
        fake.start()
        script = (
            "const { MongoClient } = require('./mongo');"
            "const c = new MongoClient(process.env.MONGODB_URI);"
            "c.db().command({ ping: 1 })"
            ".then(() => console.log('accepted'), (e) => console.log(e.message))"
            ".finally(() => c.close());"
        )
        result = run_node(
            node, releases["1.0.0"], script, MONGODB_URI=f"mongodb://u:pw@127.0.0.1:{port}/x"
        )
        fake.join(10)
    assert result.stdout.strip() == "SCRAM: the server signature does not match", result.stderr


def test_logger_scrubs_known_secrets(node: str, releases: dict[str, Path]) -> None:
    script = (
        "const { createLogger } = require('./log');"
        "const log = createLogger({ secrets: ['s3cret\"quoted', 'abc'] });"
        "log.info('leak s3cret\"quoted', { also: 'x s3cret\"quoted y', short: 'abc' });"
        "log.debug('below the level');"
    )
    result = run_node(node, releases["1.0.0"], script)
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    record = json.loads(line)
    assert (record["msg"], record["also"]) == ("leak [redacted]", "x [redacted] y")
    assert record["short"] == "abc"  # secrets under 4 characters are not scrubbed
