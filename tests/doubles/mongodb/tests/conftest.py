"""Fixtures for the MongoDB double's contract tests.

The suite starts server processes on loopback addresses only. By default the process is the double
(`python -m tests.doubles.mongodb`); set MONGODB_CONTRACT_MONGOD to a real binary (for example
`/usr/bin/mongod`) to run the same tests against mongod. MONGODB_CONTRACT_URI points the tests that
need only a running standalone server (no auth) at an existing one. Tests of the double's internals
are skipped whenever either variable is set.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bson
import pymongo
import pytest

from tests.doubles.polling import wait_for

REPO = Path(__file__).resolve().parents[4]
CONTRACT_URI = os.environ.get("MONGODB_CONTRACT_URI")
CONTRACT_MONGOD = os.environ.get("MONGODB_CONTRACT_MONGOD")
AGAINST_DOUBLE = not CONTRACT_URI and not CONTRACT_MONGOD
KEY = "c2VjcmV0LWtleS1mb3ItdGhlLWNsaW5pYy1yZXBsaWNhLXNldA=="
FAST_SETTINGS = {"electionTimeoutMillis": 1000, "heartbeatIntervalMillis": 200}

double_only = pytest.mark.skipif(
    not AGAINST_DOUBLE, reason="tests the double's internals, not a server contract"
)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def close_pipes(proc: subprocess.Popen[bytes]) -> None:
    for stream in (proc.stdout, proc.stderr):
        if stream:
            stream.close()


def terminate(proc: subprocess.Popen[bytes], timeout: float = 15) -> int:
    """SIGTERM a server process (unless it has exited) and wait: its exit code, its pipes closed."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    finally:
        close_pipes(proc)


class RawConnection:
    """A bare wire-protocol client, for what pymongo never sends (bad checksums, OP_QUERY...)."""

    def __init__(self, host: str, port: int, source: str | None = None) -> None:
        self.sock = socket.create_connection(
            (host, port), timeout=10, source_address=(source, 0) if source else None
        )
        self.next_id = 100

    @classmethod
    def on_socket(cls, sock: socket.socket) -> RawConnection:
        """A raw client over a socket connected elsewhere (a TLS socket, for one)."""
        raw = cls.__new__(cls)
        raw.sock = sock
        raw.next_id = 100
        return raw

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def send_msg(
        self,
        body: dict[str, Any],
        flags: int = 0,
        sequences: dict[str, list[dict[str, Any]]] | None = None,
        checksum: bool = False,
        corrupt: bool = False,
    ) -> int:
        self.next_id += 1
        payload = b"\x00" + bson.encode(body)
        for ident, docs in (sequences or {}).items():
            section = ident.encode() + b"\x00" + b"".join(bson.encode(d) for d in docs)
            payload += b"\x01" + struct.pack("<i", len(section) + 4) + section
        if checksum:
            flags |= 1
        message_flags = struct.pack("<I", flags)
        length = 16 + 4 + len(payload) + (4 if checksum else 0)
        data = struct.pack("<iiii", length, self.next_id, 0, 2013) + message_flags + payload
        if checksum:
            crc = _crc32c(data) ^ (1 if corrupt else 0)
            data += struct.pack("<I", crc)
        self.sock.sendall(data)
        return self.next_id

    def _read_exact(self, size: int) -> bytes:
        out = b""
        while len(out) < size:
            chunk = self.sock.recv(size - len(out))
            if not chunk:
                raise ConnectionError("connection closed by server")
            out += chunk
        return out

    def read_reply(self) -> tuple[int, dict[str, Any]]:
        length, _, response_to, op_code = struct.unpack("<iiii", self._read_exact(16))
        payload = self._read_exact(length - 16)
        if op_code == 1:
            return response_to, bson.decode(payload[20:])
        assert op_code == 2013
        return response_to, bson.decode(payload[5:])

    def read_msg(self) -> tuple[int, int, int, dict[str, Any]]:
        """One OP_MSG reply: its requestId, its responseTo, its flag bits and its body."""
        length, request_id, response_to, op_code = struct.unpack("<iiii", self._read_exact(16))
        payload = self._read_exact(length - 16)
        assert op_code == 2013
        (flags,) = struct.unpack_from("<I", payload, 0)
        return request_id, response_to, flags, bson.decode(payload[5:])

    def command(self, body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        request_id = self.send_msg(body, **kwargs)
        response_to, reply = self.read_reply()
        assert response_to == request_id
        return reply

    def op_query(self, namespace: str, query: dict[str, Any], flags: int = 0) -> dict[str, Any]:
        self.next_id += 1
        payload = (
            struct.pack("<i", flags)
            + namespace.encode()
            + b"\x00"
            + struct.pack("<ii", 0, -1)
            + bson.encode(query)
        )
        self.sock.sendall(struct.pack("<iiii", 16 + len(payload), self.next_id, 0, 2004) + payload)
        response_to, reply = self.read_reply()
        assert response_to == self.next_id
        return reply


@dataclass
class Mongod:
    port: int
    dbpath: Path
    log_path: Path
    proc: subprocess.Popen[bytes]
    host: str = "127.0.0.1"
    extra: list[str] = field(default_factory=list)
    # pymongo options every client of this server needs (TLS: tls, tlsCAFile, ...).
    client_options: dict[str, Any] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def client(
        self, user: str | None = None, password: str | None = None, **options: Any
    ) -> pymongo.MongoClient[dict[str, Any]]:
        kwargs: dict[str, Any] = {"directConnection": True, "serverSelectionTimeoutMS": 5000}
        kwargs.update(self.client_options)
        if user is not None:
            kwargs.update(username=user, password=password)
        kwargs.update(options)
        return pymongo.MongoClient(self.host, self.port, **kwargs)

    def raw(self, source: str | None = None) -> RawConnection:
        return RawConnection(self.host, self.port, source)

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(encoding="utf-8").splitlines()

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        return self.proc.wait(timeout)


class Launcher:
    """Starts server processes for a test and stops them afterwards."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.started: list[Mongod] = []
        self.count = 0

    def command(self) -> list[str]:
        if CONTRACT_MONGOD:
            return shlex.split(CONTRACT_MONGOD)
        return [sys.executable, "-m", "tests.doubles.mongodb"]

    def workdir(self) -> Path:
        self.count += 1
        path = self.base / f"node{self.count}"
        (path / "db").mkdir(parents=True)
        return path

    def key_file(self, content: str = KEY, mode: int = 0o400, name: str = "keyfile") -> Path:
        path = self.base / name
        path.write_text(content + "\n", encoding="ascii")
        path.chmod(mode)
        return path

    def popen(self, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        full_env = dict(os.environ)
        full_env.update(env or {})
        return subprocess.Popen(
            [*self.command(), *args],
            cwd=REPO,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def run_to_exit(
        self, args: list[str], timeout: float = 20, env: dict[str, str] | None = None
    ) -> tuple[int, str]:
        """Run a server expected to exit; returns (exit code, stdout + stderr)."""
        proc = self.popen(args, env)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            pytest.fail(f"server with {args} did not exit within {timeout}s")
        return proc.returncode, (out + err).decode()

    def start(
        self,
        extra: list[str] | None = None,
        port: int | None = None,
        workdir: Path | None = None,
        env: dict[str, str] | None = None,
        bind_ip: str = "127.0.0.1",
        client_options: dict[str, Any] | None = None,
    ) -> Mongod:
        """Start a server and wait until it listens. `client_options` are the pymongo options
        its clients need (a TLS server: tls=True, tlsCAFile, tlsCertificateKeyFile)."""
        work = workdir or self.workdir()
        port = port or free_port()
        log_path = work / "mongod.log"
        args = [
            "--port",
            str(port),
            "--bind_ip",
            bind_ip,
            "--dbpath",
            str(work / "db"),
            "--logpath",
            str(log_path),
            "--logappend",
            "--nounixsocket",
            *(extra or []),
        ]
        proc = self.popen(args, env)
        node = Mongod(
            port,
            work / "db",
            log_path,
            proc,
            host=bind_ip.split(",")[0],
            extra=list(extra or []),
            client_options=dict(client_options or {}),
        )
        self.started.append(node)

        def ready() -> bool:
            if proc.poll() is not None:
                pytest.fail(
                    f"server exited with {proc.returncode}: {proc.stderr.read().decode()}"
                    if proc.stderr
                    else "server exited"
                )
            return log_path.exists() and "Waiting for connections" in log_path.read_text()

        wait_for(ready, 20, f"server on port {port} to listen")
        return node

    def restart(self, node: Mongod, signum: int = signal.SIGTERM) -> Mongod:
        """Stop a server (SIGKILL: as the OOM killer or a lost host would) and start it again."""
        node.stop(signum)
        self.started.remove(node)
        return self.start(
            node.extra,
            port=node.port,
            workdir=node.dbpath.parent,
            bind_ip=node.host,
            client_options=node.client_options,
        )

    def stop_all(self, grace: float = 3.0) -> None:
        """SIGTERM every server, SIGKILL those still running after `grace` seconds: a primary
        whose peers exit with it waits (mongod: shutdownTimeoutMillisForSignaledShutdown, 15 s)
        for a secondary to catch up before stepping down, which no teardown needs to sit out."""
        for node in self.started:
            if node.proc.poll() is None:
                node.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for node in self.started:
            try:
                node.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait()
            close_pipes(node.proc)


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Launcher]:
    if CONTRACT_URI and not CONTRACT_MONGOD:
        pytest.skip("starts its own server processes; MONGODB_CONTRACT_MONGOD is not set")
    launch = Launcher(tmp_path)
    yield launch
    launch.stop_all()


@pytest.fixture(scope="module")
def module_launcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    if CONTRACT_URI and not CONTRACT_MONGOD:
        pytest.skip("starts its own server processes; MONGODB_CONTRACT_MONGOD is not set")
    launch = Launcher(tmp_path_factory.mktemp("mongod"))
    yield launch
    launch.stop_all()


@dataclass
class Target:
    """A running standalone server without access control."""

    host: str
    port: int

    def client(self, **options: Any) -> pymongo.MongoClient[dict[str, Any]]:
        return pymongo.MongoClient(
            self.host, self.port, directConnection=True, serverSelectionTimeoutMS=5000, **options
        )

    def raw(self) -> RawConnection:
        return RawConnection(self.host, self.port)


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    if CONTRACT_URI:
        parsed = pymongo.uri_parser.parse_uri(CONTRACT_URI)
        host, port = parsed["nodelist"][0]
        yield Target(host, port)
        return
    launch = Launcher(tmp_path_factory.mktemp("standalone"))
    node = launch.start()
    yield Target(node.host, node.port)
    launch.stop_all()


def replset_config(name: str, nodes: list[Mongod], **settings: Any) -> dict[str, Any]:
    return {
        "_id": name,
        "members": [{"_id": i, "host": n.address} for i, n in enumerate(nodes)],
        "settings": {**FAST_SETTINGS, **settings},
    }


def wait_primary(node: Mongod, timeout: float = 20) -> None:
    client = node.client()
    try:
        wait_for(
            lambda: client.admin.command("hello").get("isWritablePrimary"),
            timeout,
            f"{node.address} to become primary",
        )
    finally:
        client.close()


def member_states(client: pymongo.MongoClient[dict[str, Any]]) -> list[str]:
    """Every member's stateStr, sorted, as replSetGetStatus reports them."""
    return sorted(m["stateStr"] for m in client.admin.command("replSetGetStatus")["members"])


def wait_healthy(client: pymongo.MongoClient[dict[str, Any]], timeout: float = 30) -> None:
    """Until a three-member set has one primary and two secondaries."""
    wait_for(
        lambda: member_states(client) == ["PRIMARY", "SECONDARY", "SECONDARY"],
        timeout,
        "one primary and two secondaries",
    )


def secured_set(
    launcher: Launcher,
    admin_password: str,
    extra: list[str] | None = None,
    client_options: dict[str, Any] | None = None,
) -> list[Mongod]:
    """Three members with a keyFile, initiated through the localhost exception, with an admin
    (user admin, role root) whose password is admin_password. `extra` options (TLS, for one) go
    to every member, whose clients use `client_options`."""
    key = launcher.key_file()
    args = ["--replSet", "rs0", "--keyFile", str(key), *(extra or [])]
    nodes = [launcher.start(args, client_options=client_options) for _ in range(3)]
    local = nodes[0].client()
    local.admin.command("replSetInitiate", replset_config("rs0", nodes))
    wait_primary(nodes[0])
    local.admin.command("createUser", "admin", pwd=admin_password, roles=["root"])
    local.close()
    return nodes


def command_error(call: Callable[[], Any]) -> dict[str, Any]:
    """Run a pymongo call that must fail; return the server's error document."""
    with pytest.raises(pymongo.errors.PyMongoError) as info:
        call()
    details = getattr(info.value, "details", None)
    assert isinstance(details, dict), f"no server reply in {info.value!r}"
    return details
