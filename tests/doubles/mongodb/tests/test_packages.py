"""The .deb packages of the MongoDB double: names, layout, unit keys, and a packaged mongod run."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pymongo
import pytest

from tests.doubles.polling import wait_for

from .conftest import REPO, free_port, terminate

SERVER = "mongodb-org-server_7.0.14_all.deb"
TOOLS = "mongodb-database-tools_100.10.0_all.deb"


def run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=REPO)


def build(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    module = "tests.doubles.mongodb.packaging.build"
    return run([sys.executable, "-m", module, "--out", str(out), *extra])


@pytest.fixture(scope="module")
def debs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("debs")
    proc = build(out)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted([SERVER, TOOLS])
    return out


@pytest.fixture(scope="module")
def root(debs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tree = tmp_path_factory.mktemp("root")
    for deb in (SERVER, TOOLS):
        assert run(["dpkg-deb", "-x", str(debs / deb), str(tree)]).returncode == 0
    return tree


def field(deb: Path, name: str) -> str:
    return run(["dpkg-deb", "-f", str(deb), name]).stdout.strip()


def listing(deb: Path) -> dict[str, tuple[str, str]]:
    out = {}
    for line in run(["dpkg-deb", "-c", str(deb)]).stdout.splitlines():
        parts = line.split()
        out[parts[-1].removeprefix(".")] = (parts[0], parts[1])
    return out


def test_control_fields(debs: Path) -> None:
    server, tools = debs / SERVER, debs / TOOLS
    assert field(server, "Package") == "mongodb-org-server"
    assert field(server, "Version") == "7.0.14"
    assert field(server, "Depends") == "python3, python3-yaml, adduser"
    assert field(server, "Description").startswith("test double of MongoDB's mongod")
    assert "test double" in field(server, "Maintainer")
    assert field(tools, "Package") == "mongodb-database-tools"
    assert field(tools, "Depends") == "python3"
    assert field(tools, "Description").startswith("test double of MongoDB's mongodump")
    info = run(["dpkg-deb", "-I", str(server)]).stdout
    assert " conffiles" in info and " postinst" in info


def test_file_layout_and_modes(debs: Path) -> None:
    server = listing(debs / SERVER)
    assert server["/usr/bin/mongod"] == ("-rwxr-xr-x", "root/root")
    assert server["/lib/systemd/system/mongod.service"] == ("-rw-r--r--", "root/root")
    assert server["/etc/mongod.conf"] == ("-rw-r--r--", "root/root")
    assert server["/usr/lib/mongodb-double/mongodb_double/server.py"][0] == "-rw-r--r--"
    assert not [p for p in server if "/tests/" in p or "/packaging/" in p]
    tools = listing(debs / TOOLS)
    for name in ("mongodump", "mongorestore"):
        assert tools[f"/usr/bin/{name}"] == ("-rwxr-xr-x", "root/root")
    assert "/usr/lib/mongodb-database-tools-double/mongodb_double/tools/archive.py" in tools


def test_unit_conffile_and_postinst(root: Path, debs: Path, tmp_path: Path) -> None:
    unit = (root / "lib/systemd/system/mongod.service").read_text()
    keys = [line for line in unit.splitlines() if "=" in line and not line.startswith("#")]
    for expected in (
        "User=mongodb",
        "Group=mongodb",
        "EnvironmentFile=-/etc/default/mongod",
        'Environment="MONGODB_CONFIG_OVERRIDE_NOFORK=1"',
        "ExecStart=/usr/bin/mongod --config /etc/mongod.conf",
        "RuntimeDirectory=mongodb",
        "LimitFSIZE=infinity",
        "LimitCPU=infinity",
        "LimitAS=infinity",
        "LimitNOFILE=64000",
        "LimitNPROC=64000",
        "LimitMEMLOCK=infinity",
        "TasksMax=infinity",
        "TasksAccounting=false",
        "WantedBy=multi-user.target",
    ):
        assert expected in keys, expected
    conf = (root / "etc/mongod.conf").read_text()
    for line in ("dbPath: /var/lib/mongodb", "path: /var/log/mongodb/mongod.log", "port: 27017"):
        assert line in conf
    assert "bindIp: 127.0.0.1\n" in conf and "logAppend: true" in conf and "timeZoneInfo" in conf
    assert run(["dpkg-deb", "-e", str(debs / SERVER), str(tmp_path / "ctl")]).returncode == 0
    assert (tmp_path / "ctl/conffiles").read_text() == "/etc/mongod.conf\n"
    postinst = (tmp_path / "ctl/postinst").read_text()
    assert "adduser --system" in postinst and "--ingroup mongodb" in postinst
    assert "install -d -o mongodb -g mongodb -m 0755 /var/lib/mongodb /var/log/mongodb" in postinst
    assert run(["sh", "-n", str(tmp_path / "ctl/postinst")]).returncode == 0


def test_version_must_match_the_emulated_server(tmp_path: Path) -> None:
    proc = build(tmp_path, "--version", "8.0.4")
    assert proc.returncode == 1
    assert "emulates mongod 7.0" in proc.stderr
    assert build(tmp_path, "--version", "7.0.15").returncode == 0
    assert (tmp_path / "mongodb-org-server_7.0.15_all.deb").exists()


@pytest.fixture
def packaged_mongod(root: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    (tmp_path / "db").mkdir()
    conf = tmp_path / "mongod.conf"
    conf.write_text(
        f"storage:\n  dbPath: {tmp_path / 'db'}\n"
        f"systemLog:\n  destination: file\n  logAppend: true\n  path: {tmp_path / 'mongod.log'}\n"
        f"net:\n  port: {port}\n  bindIp: 127.0.0.1\n  unixDomainSocket:\n    enabled: false\n"
        "processManagement:\n  timeZoneInfo: /usr/share/zoneinfo\n"
    )
    proc = subprocess.Popen(
        [str(root / "usr/bin/mongod"), "--config", str(conf)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd="/",
    )
    log = tmp_path / "mongod.log"
    try:
        wait_for(
            lambda: (
                proc.poll() is not None
                or (log.exists() and "Waiting for connections" in log.read_text())
            ),
            20,
            "the packaged mongod to listen",
        )
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        yield proc, port
    finally:
        terminate(proc)


def test_packaged_mongod_starts_and_answers_hello(
    packaged_mongod: tuple[subprocess.Popen[bytes], int], root: Path
) -> None:
    proc, port = packaged_mongod
    assert Path(f"/proc/{proc.pid}/comm").read_text().strip() == "mongod"
    client = pymongo.MongoClient(
        "127.0.0.1", port, directConnection=True, serverSelectionTimeoutMS=5000
    )
    try:
        hello = client.admin.command("hello")
        assert hello["isWritablePrimary"] is True
        assert hello["maxWireVersion"] == 21
        client.app.items.insert_one({"_id": 1})
    finally:
        client.close()
    version = run([str(root / "usr/bin/mongod"), "--version"])
    assert version.returncode == 0
    assert version.stdout.startswith("db version v7.0.14\n")
    dump = subprocess.run(
        [str(root / "usr/bin/mongodump"), f"--uri=mongodb://127.0.0.1:{port}/", "--archive"],
        capture_output=True,
        timeout=60,
        cwd="/",
    )
    assert dump.returncode == 0, dump.stderr.decode()
    assert dump.stdout[:4] == bytes.fromhex("6de29981")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
