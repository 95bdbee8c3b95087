"""Process contract: command line, strict mongod.conf, startup checks, log, signals, restarts."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
from pathlib import Path

import bson
import pytest
from pymongo import WriteConcern

from tests.doubles.polling import wait_for

from .conftest import (
    AGAINST_DOUBLE,
    KEY,
    Launcher,
    double_only,
    free_port,
    replset_config,
    terminate,
    wait_primary,
)


def _conf(tmp: Path, text: str) -> str:
    path = tmp / "mongod.conf"
    path.write_text(text, encoding="utf-8")
    return str(path)


def _base_conf(launcher: Launcher, extra: str = "") -> str:
    work = launcher.workdir()
    return _conf(
        work,
        f"""
storage:
  dbPath: {work / "db"}
systemLog:
  destination: file
  path: {work / "mongod.log"}
  logAppend: true
net:
  port: {free_port()}
  bindIp: 127.0.0.1
{extra}""",
    )


def test_version_prints_db_version_and_exits_0(launcher: Launcher) -> None:
    code, output = launcher.run_to_exit(["--version"])
    assert code == 0
    assert re.search(r"^db version v(\d+\.\d+\.\d+)$", output, re.MULTILINE)
    assert "Build Info:" in output


def test_help_exits_0_and_unknown_flag_exits_2(launcher: Launcher) -> None:
    assert launcher.run_to_exit(["--help"])[0] == 0
    code, output = launcher.run_to_exit(["--no-such-flag"])
    assert code == 2
    assert "--help" in output


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        (
            "storage:\n  journal:\n    enabled: true\n",
            "Unrecognized option: storage.journal.enabled",
        ),
        ("net:\n  http:\n    enabled: false\n", "Unrecognized option: net.http.enabled"),
        ("storage:\n  indexBuildRetry: true\n", "Unrecognized option: storage.indexBuildRetry"),
        ("processManagement:\n  forkk: true\n", "Unrecognized option: processManagement.forkk"),
    ],
)
def test_unknown_or_removed_config_key_exits_2(
    launcher: Launcher, snippet: str, message: str
) -> None:
    conf = _conf(launcher.workdir(), snippet)
    code, output = launcher.run_to_exit(["--config", conf])
    assert code == 2
    assert message in output


@pytest.mark.parametrize(
    "snippet",
    [
        "security:\n  authorization: yes-please\n",
        "net:\n  port: twenty\n",
        "net:\n  bindIp: 127.0.0.1\n  bindIpAll: true\n",
    ],
)
def test_bad_value_or_conflicting_options_exit_2(launcher: Launcher, snippet: str) -> None:
    work = launcher.workdir()
    code, _ = launcher.run_to_exit(["-f", _conf(work, snippet)])
    assert code == 2


def test_auth_with_repl_set_requires_key_file(launcher: Launcher) -> None:
    conf = _base_conf(
        launcher, "security:\n  authorization: enabled\nreplication:\n  replSetName: rs0\n"
    )
    code, output = launcher.run_to_exit(["--config", conf])
    assert code == 2
    assert "security.keyFile is required when authorization is enabled with replica sets" in output


@pytest.mark.parametrize(
    ("content", "mode", "message"),
    [
        (KEY, 0o644, "are too open"),
        (KEY, 0o440, "are too open"),
        ("abc", 0o400, "must be between 6 and 1024"),
        ("abcdef!ghijk", 0o400, "invalid char in key file"),
    ],
)
def test_bad_key_file_refuses_to_start(
    launcher: Launcher, content: str, mode: int, message: str
) -> None:
    key = launcher.key_file(content, mode)
    work = launcher.workdir()
    code, output = launcher.run_to_exit(
        [
            "--port",
            str(free_port()),
            "--dbpath",
            str(work / "db"),
            "--keyFile",
            str(key),
            "--replSet",
            "rs0",
            "--logpath",
            str(work / "mongod.log"),
        ]
    )
    assert code != 0
    assert message in output + (work / "mongod.log").read_text()


def test_missing_db_path_exits_100(launcher: Launcher, tmp_path: Path) -> None:
    code, output = launcher.run_to_exit(
        ["--port", str(free_port()), "--dbpath", str(tmp_path / "absent")]
    )
    assert code == 100
    assert "not found" in output


def test_db_path_in_use_exits_100(launcher: Launcher) -> None:
    node = launcher.start()
    code, output = launcher.run_to_exit(["--port", str(free_port()), "--dbpath", str(node.dbpath)])
    assert code == 100
    assert "DBPathInUse" in output


def test_port_in_use_exits_48(launcher: Launcher) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        work = launcher.workdir()
        code, _ = launcher.run_to_exit(
            [
                "--port",
                str(busy.getsockname()[1]),
                "--bind_ip",
                "127.0.0.1",
                "--dbpath",
                str(work / "db"),
            ]
        )
    assert code == 48


def test_listens_only_on_bind_ip(launcher: Launcher) -> None:
    node = launcher.start()
    with socket.create_connection(("127.0.0.1", node.port), timeout=2):
        pass
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.2", node.port), timeout=2)


def test_json_log_and_clean_sigterm_shutdown(launcher: Launcher) -> None:
    node = launcher.start()
    node.client().admin.command("ping")
    assert node.stop(signal.SIGTERM) == 0
    entries = [json.loads(line) for line in node.log_lines()]
    for entry in entries:
        assert set(entry) >= {"t", "s", "c", "id", "ctx", "msg"}
        assert "$date" in entry["t"]
    waiting = [e for e in entries if e["msg"] == "Waiting for connections"]
    assert waiting and waiting[0]["attr"]["port"] == node.port
    assert waiting[0]["id"] == 23016


def test_sigusr1_rotates_log_by_rename(launcher: Launcher) -> None:
    node = launcher.start()
    os.kill(node.proc.pid, signal.SIGUSR1)
    rotated = wait_for(
        lambda: [p for p in node.log_path.parent.iterdir() if p.name.startswith("mongod.log.")],
        10,
        "a rotated log file",
    )
    assert "Waiting for connections" in rotated[0].read_text()
    wait_for(node.log_path.exists, 10, "a reopened log file")
    node.client().admin.command("ping")
    assert node.stop() == 0


def test_fork_is_overridden_by_systemd_environment(launcher: Launcher) -> None:
    conf = _base_conf(launcher, "processManagement:\n  fork: true\n")
    port = int(re.search(r"port: (\d+)", Path(conf).read_text()).group(1))
    proc = launcher.popen(["--config", conf], env={"MONGODB_CONFIG_OVERRIDE_NOFORK": "1"})
    log = Path(conf).parent / "mongod.log"
    try:
        wait_for(
            lambda: log.exists() and "Waiting for connections" in log.read_text(),
            20,
            "the server to listen in the foreground",
        )
        assert proc.poll() is None
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
        if AGAINST_DOUBLE:
            assert "overriding processManagement.fork to false" in log.read_text()
    finally:
        assert terminate(proc) == 0


def test_users_and_data_survive_restart(launcher: Launcher) -> None:
    key = launcher.key_file()
    node = launcher.start(["--keyFile", str(key)])
    local = node.client()
    local.admin.command("createUser", "admin", pwd="s3cret-pw", roles=["root"])
    local.close()
    admin = node.client("admin", "s3cret-pw")
    admin.clinic.patients.insert_one({"_id": "p1", "name": "Asha"})
    admin.close()
    node = launcher.restart(node)
    admin = node.client("admin", "s3cret-pw")
    try:
        assert admin.clinic.patients.find_one({"_id": "p1"}) == {"_id": "p1", "name": "Asha"}
    finally:
        admin.close()


def test_journaled_writes_survive_a_killed_process(launcher: Launcher) -> None:
    """Inserts, replacements, deletes and an index, each acknowledged with j: true, then SIGKILL:
    the restarted server holds exactly what was acknowledged."""
    node = launcher.start()
    client = node.client()
    patients = client.clinic.get_collection("patients", write_concern=WriteConcern(j=True))
    patients.insert_many([{"_id": i, "name": f"p{i}", "visits": 0} for i in range(300)])
    for i in range(0, 300, 3):
        patients.update_one({"_id": i}, {"$inc": {"visits": 1}})
    patients.delete_many({"_id": {"$gte": 250}})
    patients.create_index("name", name="by_name")
    expected = sorted(patients.find(), key=lambda d: d["_id"])
    client.close()
    node = launcher.restart(node, signal.SIGKILL)
    client = node.client()
    try:
        patients = client.clinic.patients
        assert sorted(patients.find(), key=lambda d: d["_id"]) == expected
        assert "by_name" in patients.index_information()
    finally:
        client.close()


def test_a_retried_write_is_applied_once_after_a_killed_process(launcher: Launcher) -> None:
    """A retryable insert of 200 documents (one session, one txnNumber), acknowledged with j:
    true; after SIGKILL and restart, its retry answers n: 200 and inserts nothing again."""
    node = launcher.start(["--replSet", "rs0"])
    client = node.client()
    client.admin.command("replSetInitiate", replset_config("rs0", [node]))
    client.close()
    wait_primary(node)
    body = {
        "insert": "retry",
        "documents": [{"_id": i} for i in range(200)],
        "lsid": {"id": bson.Binary(b"k" * 16, 4)},
        "txnNumber": bson.Int64(7),
        "writeConcern": {"w": 1, "j": True},
        "$db": "clinic",
    }
    with node.raw() as raw:
        assert raw.command(dict(body))["n"] == 200
    node = launcher.restart(node, signal.SIGKILL)
    wait_primary(node)
    with node.raw() as raw:
        retried = raw.command(dict(body))
    client = node.client()
    try:
        assert retried["n"] == 200, retried
        assert "writeErrors" not in retried
        assert client.clinic.retry.count_documents({}) == 200
    finally:
        client.close()


@double_only
def test_a_collections_log_is_compacted_and_a_torn_last_record_dropped(launcher: Launcher) -> None:
    """A write appends to its collection's file (dbPath/db-<db>/<coll>.bson), which is rewritten
    when its records outgrow the documents; a record cut short by a kill is not acknowledged:
    the restarted server drops it and appends after the last whole one."""
    node = launcher.start()
    client = node.client()
    for n in range(1000):
        client.clinic.counters.replace_one({"_id": "c"}, {"_id": "c", "n": n}, upsert=True)
    client.close()
    path = node.dbpath / "db-clinic" / "counters.bson"
    assert len(bson.decode_all(path.read_bytes())) <= 64
    node.stop(signal.SIGKILL)
    with path.open("ab") as handle:
        handle.write(bson.encode({"p": {"_id": "torn", "n": -1}})[:-7])
    node = launcher.restart(node)
    client = node.client()
    try:
        assert list(client.clinic.counters.find()) == [{"_id": "c", "n": 999}]
        client.clinic.counters.insert_one({"_id": "after"})
        assert client.clinic.counters.count_documents({}) == 2
    finally:
        client.close()
    node = launcher.restart(node)
    client = node.client()
    try:
        assert client.clinic.counters.count_documents({}) == 2
    finally:
        client.close()


@pytest.mark.skipif(not AGAINST_DOUBLE, reason="the socket path is shared with any real mongod")
def test_unix_socket_is_created_with_mode_0700(launcher: Launcher, tmp_path: Path) -> None:
    work = launcher.workdir()
    port = free_port()
    proc = launcher.popen(
        [
            "--port",
            str(port),
            "--dbpath",
            str(work / "db"),
            "--unixSocketPrefix",
            str(tmp_path),
            "--logpath",
            str(work / "mongod.log"),
        ]
    )
    sock_path = tmp_path / f"mongodb-{port}.sock"
    try:
        wait_for(sock_path.exists, 20, "the unix socket")
        assert stat.S_IMODE(sock_path.stat().st_mode) == 0o700
    finally:
        assert terminate(proc) == 0
    assert not sock_path.exists()


def test_shutdown_command_closes_without_reply_and_exits_0(launcher: Launcher) -> None:
    node = launcher.start()
    with node.raw() as raw:
        raw.send_msg({"shutdown": 1, "$db": "admin"})
        with pytest.raises((ConnectionError, OSError)):
            raw.read_reply()
    assert node.proc.wait(15) == 0
