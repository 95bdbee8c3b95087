"""The process: startup checks in mongod's order, listeners, connections, signals, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import socket
import ssl
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from . import auth, config, tls, wire
from .bson_codec import Document, Int64, ObjectId
from .commands import HELLO_NAMES, CloseConnection, Commands, Connection
from .errors import MongoError
from .replication import PRIMARY, Replication
from .storage import DBPathInUse, Storage

# Upper bound of each shutdown step (replication, listeners, connections).
SHUTDOWN_STEP_SECONDS = 10.0


class StartupError(Exception):
    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Node:
    """One mongod process: settings, storage, replication state and the client connections."""

    def __init__(
        self,
        settings: config.Settings,
        log: config.Log,
        storage: Storage,
        key: str | None,
        tls_state: tls.Tls | None = None,
    ) -> None:
        self.settings = settings
        self.log = log
        self.storage = storage
        self.key = key
        self.tls = tls_state
        self.hostname = socket.gethostname()
        self.process_id = ObjectId()
        self.topology_counter = 0
        self._topology_event = asyncio.Event()
        self.started = time.monotonic()
        self.open_connections = 0
        self.total_connections = 0
        self.listen_addresses: list[str] = []
        self.system_credentials: Document | None = None
        if key is not None:
            self.system_credentials = auth.make_credentials(
                "__system", key, ["SCRAM-SHA-256"], {"SCRAM-SHA-256": 15000}
            )
        self.repl = Replication(self, settings.repl_set) if settings.repl_set else None
        self.commands = Commands(self)
        self._shutdown = asyncio.Event()
        self._signalled = False
        self._servers: list[asyncio.base_events.Server] = []
        # Each client connection's task and its stream, so that shutdown can close the socket.
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._socket_path: str | None = None
        # fsync with lock: true: writes, client and replicated, wait until the last unlock.
        self.fsync_locks = 0
        self._fsync_unlocked = asyncio.Event()
        self._fsync_unlocked.set()

    # Shared state used by commands and replication

    def uptime(self) -> float:
        return time.monotonic() - self.started

    def topology_version(self) -> Document:
        return {"processId": self.process_id, "counter": Int64(self.topology_counter)}

    def fsync_lock(self, delta: int) -> int:
        self.fsync_locks += delta
        if self.fsync_locks:
            self._fsync_unlocked.clear()
        else:
            self._fsync_unlocked.set()
        return self.fsync_locks

    async def writes_allowed(self) -> None:
        """Return once no fsync lock holds writes back."""
        await self._fsync_unlocked.wait()

    def bump_topology(self) -> None:
        self.topology_counter += 1
        self._topology_event.set()
        self._topology_event = asyncio.Event()

    async def await_topology_change(self, requested: Any, timeout: float) -> None:
        """Awaitable hello: hold the reply while the client's topologyVersion is current."""
        if not isinstance(requested, dict):
            return
        if requested.get("processId") != self.process_id:
            return
        if int(requested.get("counter", -1)) != self.topology_counter:
            return
        event = self._topology_event
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.shield(asyncio.ensure_future(self._wait_either(event))), timeout
            )

    async def _wait_either(self, event: asyncio.Event) -> None:
        waiters = [
            asyncio.ensure_future(event.wait()),
            asyncio.ensure_future(self._shutdown.wait()),
        ]
        _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()

    @property
    def egress_tls(self) -> ssl.SSLContext | None:
        """The TLS context of this member's connections to its peers (heartbeats, oplog fetch,
        elections, isSelf): None, plaintext, unless net.tls.mode is preferTLS or requireTLS."""
        return self.tls.egress if self.tls is not None else None

    def hello_fields(self, legacy: bool) -> Document:
        if self.repl is None:
            return {"ismaster" if legacy else "isWritablePrimary": True}
        return self.repl.hello_fields(legacy)

    def credentials_for(self, user: str, db: str, mechanism: str) -> Document | None:
        if (user, db) == ("__system", "local"):
            return (self.system_credentials or {}).get(mechanism)
        doc = self.storage.find_by_id("admin", "system.users", f"{db}.{user}")
        if doc is None:
            return None
        return doc.get("credentials", {}).get(mechanism)

    async def await_write_concern(
        self, concern: Any, provenance: str = "clientSupplied"
    ) -> Document | None:
        if not isinstance(concern, dict):
            return None
        if self.repl is None:
            w = concern.get("w", 1)
            if isinstance(w, int) and w > 1:
                return {
                    "code": 2,
                    "codeName": "BadValue",
                    "errmsg": "cannot use 'w' > 1 on a standalone",
                    "errInfo": {},
                }
            return None
        return await self.repl.await_write_concern(concern, provenance)

    def request_shutdown(self, reason: str) -> None:
        self.log.info("CONTROL", 4784900, "conn", "Shutdown requested", reason=reason)
        self._shutdown.set()

    def _on_signal(self, name: str) -> None:
        self._signalled = True
        self.request_shutdown(name)

    # Replica set command entry points (routed from the command table)

    def _repl(self) -> Replication:
        if self.repl is None:
            raise MongoError(76, "server is not running with --replSet")
        return self.repl

    async def repl_initiate(self, conn: Connection, db: str, body: Document) -> Document:
        return await self._repl().initiate(body)

    async def repl_status(self, conn: Connection, db: str, body: Document) -> Document:
        if self.repl is None:
            raise MongoError(76, "not running with --replSet")
        return self.repl.get_status()

    async def repl_get_config(self, conn: Connection, db: str, body: Document) -> Document:
        return self._repl().get_config()

    async def repl_reconfig(self, conn: Connection, db: str, body: Document) -> Document:
        return await self._repl().reconfig(body)

    async def repl_step_down(self, conn: Connection, db: str, body: Document) -> Document:
        return await self._repl().step_down(body)

    async def repl_freeze(self, conn: Connection, db: str, body: Document) -> Document:
        return self._repl().freeze(body)

    async def repl_internal(self, conn: Connection, db: str, body: Document) -> Document:
        return await self._repl().internal(next(iter(body)), body)

    # Connections

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peername = writer.get_extra_info("peername")
        peer = peername[0] if isinstance(peername, tuple) else None
        await self.serve_connection(reader, writer, peer, sniff_tls=self.tls is not None)

    async def serve_connection(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: str | None,
        sniff_tls: bool = False,
    ) -> None:
        """Serve one client; `peer` is the remote IP address, None for the unix socket.

        With `sniff_tls` the transport has not read anything yet (tls.HeldReadingProtocol): the
        first bytes decide between a TLS handshake and plaintext, as net.tls.mode allows."""
        self.total_connections += 1
        self.open_connections += 1
        conn = Connection(self.total_connections, peer)
        self.log.info(
            "NETWORK",
            22943,
            "listener",
            "Connection accepted",
            remote=peer or "anonymous unix socket",
            connectionId=conn.conn_id,
            connectionCount=self.open_connections,
        )
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            if sniff_tls and not await self._ingress_tls(conn, writer, peer):
                return
            while True:
                request_id, _, op_code, payload = await wire.read_frame(reader)
                async for reply in self._handle(conn, request_id, op_code, payload):
                    writer.write(reply)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, CloseConnection):
            pass
        except (wire.ProtocolError, ValueError) as exc:
            self.log.warning(
                "NETWORK",
                22988,
                f"conn{conn.conn_id}",
                "Error receiving request from client; closing connection",
                error=str(exc),
            )
        finally:
            self._connections.pop(task, None)
            self.open_connections -= 1
            self.log.info(
                "NETWORK",
                22944,
                f"conn{conn.conn_id}",
                "Connection ended",
                remote=peer or "anonymous unix socket",
                connectionId=conn.conn_id,
            )
            writer.close()

    async def _ingress_tls(
        self, conn: Connection, writer: asyncio.StreamWriter, peer: str | None
    ) -> bool:
        """TLS or plaintext for an accepted connection, as mongod decides: False when the
        connection must be closed (plaintext under requireTLS, a failed handshake, a client
        certificate missing where one is required), with mongod's log lines."""
        assert self.tls is not None
        ctx = f"conn{conn.conn_id}"
        remote = peer or "anonymous unix socket"
        header = await tls.peek_header(writer)
        if len(header) < tls.HEADER_SIZE:
            return False  # closed by the client before sending a message
        transport = writer.transport
        assert isinstance(transport, asyncio.ReadTransport)
        if not tls.is_tls_hello(header):
            if self.tls.require:
                self._end_with_error(
                    ctx,
                    "SSLHandshakeFailed: The server is configured to only allow SSL connections",
                )
                return False
            if self.tls.options.mode == "preferTLS":
                self.log.info(
                    "NETWORK",
                    23838,
                    ctx,
                    "SSL mode is set to 'preferred' and connection to remote is not using SSL.",
                    connectionId=conn.conn_id,
                    remote=remote,
                )
            transport.resume_reading()
            return True
        try:
            await writer.start_tls(self.tls.ingress)
        except (ssl.SSLError, OSError, EOFError) as exc:
            reason = tls.verify_failure(exc)
            if reason is not None:
                message = f"SSL peer certificate validation failed: {reason}"
                self.log.error(
                    "NETWORK", 23256, ctx, "SSL peer certificate validation failed", error=message
                )
            else:
                message = str(exc) or type(exc).__name__
            self._end_with_error(ctx, f"SSLHandshakeFailed: {message}")
            return False
        ssl_object = writer.get_extra_info("ssl_object")
        has_certificate = ssl_object is not None and ssl_object.getpeercert() is not None
        if not has_certificate and self.tls.requests_certificates:
            if not self.tls.options.allow_connections_without_certificates:
                self.log.error(
                    "NETWORK",
                    23255,
                    ctx,
                    "No SSL certificate provided by peer; connection rejected",
                )
                self._end_with_error(
                    ctx,
                    "SSLHandshakeFailed: no SSL certificate provided by peer; connection rejected",
                )
                return False
            self.log.warning("NETWORK", 23234, ctx, "No SSL certificate provided by peer")
        return True

    def _end_with_error(self, ctx: str, error: str) -> None:
        self.log.warning(
            "NETWORK",
            22988,
            ctx,
            "Error receiving request from client; closing connection",
            error=error,
        )

    async def _handle(
        self, conn: Connection, request_id: int, op_code: int, payload: bytes
    ) -> AsyncIterator[bytes]:
        """The replies to one request: none (moreToCome), one, or a stream (exhaust hello)."""
        if op_code == wire.OP_MSG:
            header = wire.HEADER.pack(len(payload) + wire.HEADER.size, request_id, 0, op_code)
            msg = wire.parse_op_msg(request_id, payload, header)
            if self._streams(msg):
                async for reply in self._hello_stream(conn, request_id, msg.body):
                    yield reply
                return
            reply = await self.commands.run(conn, msg.body, secondary_ok=False)
            if not msg.more_to_come:
                yield wire.encode_op_msg(wire.next_request_id(), request_id, reply)
            return
        if op_code == wire.OP_QUERY:
            msg, namespace = wire.parse_op_query(request_id, payload)
            name = next(iter(msg.body), "") if namespace.endswith(".$cmd") else "find"
            if name in HELLO_NAMES:
                body = dict(msg.body)
                body["$db"] = namespace.split(".", 1)[0]
                reply = await self.commands.run(conn, body, secondary_ok=msg.secondary_ok)
            else:
                reply = MongoError(
                    352,
                    f"Unsupported OP_QUERY command: {name}. The client driver may require "
                    "an upgrade. For more details see "
                    "https://dochub.mongodb.org/core/legacy-opcode-removal",
                ).reply()
            yield wire.encode_op_reply(wire.next_request_id(), request_id, reply)
            return
        raise wire.ProtocolError(f"unsupported opcode {op_code}")

    @staticmethod
    def _streams(msg: wire.Message) -> bool:
        """An awaitable hello from a client that allows exhaust: the streaming protocol that
        drivers' server monitors use (MongoDB 4.4+)."""
        body = msg.body
        return (
            bool(msg.flags & wire.EXHAUST_ALLOWED)
            and next(iter(body), "") in HELLO_NAMES
            and "topologyVersion" in body
            and "maxAwaitTimeMS" in body
        )

    async def _hello_stream(
        self, conn: Connection, request_id: int, body: Document
    ) -> AsyncIterator[bytes]:
        """Replies with moreToCome set, each once the topology changes or maxAwaitTimeMS passes,
        each answering the previous one (responseTo), until a reply is an error: that one ends
        the stream, as mongod ends it."""
        response_to = request_id
        while True:
            reply = await self.commands.run(conn, body, secondary_ok=False)
            more = reply.get("ok") == 1.0 and "topologyVersion" in reply
            own_id = wire.next_request_id()
            flags = wire.MORE_TO_COME if more else 0
            yield wire.encode_op_msg(own_id, response_to, reply, flags=flags)
            if not more:
                return
            body = {**body, "topologyVersion": reply["topologyVersion"]}
            response_to = own_id

    # Lifecycle

    def _protocol(self) -> asyncio.StreamReaderProtocol:
        """asyncio.start_server's protocol; with TLS enabled, one that holds reading back until
        the first bytes have been peeked at (see _ingress_tls)."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=2**16, loop=loop)
        if self.tls is None:
            return asyncio.StreamReaderProtocol(reader, self._serve_connection, loop=loop)
        return tls.HeldReadingProtocol(reader, self._serve_connection, loop=loop)

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        for address in self.settings.bind_ips:
            try:
                server = await loop.create_server(
                    self._protocol, address, self.settings.port, reuse_address=True
                )
            except OSError as exc:
                message = (
                    "Address already in use"
                    if exc.errno == errno.EADDRINUSE
                    else exc.strerror or str(exc)
                )
                self.log.error(
                    "NETWORK",
                    23024,
                    "initandlisten",
                    "Failed to set up listener",
                    error=f"SocketException: {message}",
                )
                raise StartupError(config.EXIT_NET_ERROR, message) from exc
            self._servers.append(server)
            self.listen_addresses.append(address)
        if self.settings.unix_socket:
            path = Path(self.settings.unix_socket_prefix) / f"mongodb-{self.settings.port}.sock"
            path.unlink(missing_ok=True)
            server = await loop.create_unix_server(self._protocol, path)
            path.chmod(self.settings.unix_socket_mode)
            self._socket_path = str(path)
            self._servers.append(server)

    async def run(self, ready: Any = None) -> int:
        loop = asyncio.get_running_loop()
        self._topology_event = asyncio.Event()
        self._shutdown = asyncio.Event()
        try:
            await self._listen()
        except StartupError as exc:
            await self._close_servers()
            return exc.exit_code
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signal.Signals(signum).name)
        loop.add_signal_handler(signal.SIGUSR1, self.log.rotate)
        if self.repl is not None:
            await self.repl.start()
        self.log.info(
            "NETWORK",
            23015,
            "listener",
            "Listening on",
            address=self.listen_addresses + ([self._socket_path] if self._socket_path else []),
        )
        self.log.info(
            "NETWORK",
            23016,
            "listener",
            "Waiting for connections",
            port=self.settings.port,
            ssl="on" if self.tls is not None else "off",
        )
        if ready is not None:
            ready()
        await self._shutdown.wait()
        self.log.info("CONTROL", 23377, "SignalHandler", "Received signal or shutdown command")
        # Each step is bounded, as mongod's own shutdown is: a task that does not finish on
        # cancellation must not keep the process alive until systemd kills it.
        if self.repl is not None and self._signalled and self.repl.state == PRIMARY:
            # mongod steps a primary down first (writes get 10107), waiting up to
            # shutdownTimeoutMillisForSignaledShutdown for an electable secondary to catch up,
            # hands the election off to it, and only then closes connections.
            timeout = int(self.settings.parameter("shutdownTimeoutMillisForSignaledShutdown"))
            await self._bounded(
                "step down",
                self.repl.step_down_for_shutdown(timeout / 1000, signalled=True),
                timeout / 1000 + SHUTDOWN_STEP_SECONDS,
            )
        if self.repl is not None:
            await self._bounded("replication", self.repl.stop())
        await self._bounded("listeners", self._close_servers())
        # mongod closes every client socket. Aborting the transport ends a connection's read
        # loop even where a cancellation was absorbed by a step that completed at that moment.
        for task, writer in list(self._connections.items()):
            task.cancel()
            writer.transport.abort()
        if self._connections:
            await self._bounded("connections", asyncio.wait(list(self._connections)))
        self.storage.unlock()
        self.log.info("CONTROL", 20565, "SignalHandler", "Now exiting")
        self.log.info("CONTROL", 23138, "SignalHandler", "Shutting down", exitCode=0)
        return config.EXIT_CLEAN

    async def _bounded(self, what: str, step: Any, timeout: float = SHUTDOWN_STEP_SECONDS) -> None:
        """Run one shutdown step for at most `timeout` seconds. A step past its time is
        cancelled and left behind, not awaited: asyncio.wait_for would wait for the cancellation
        to finish, and a task that does not finish on cancellation would hold shutdown."""
        task = asyncio.ensure_future(step)
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            task.cancel()
            self.log.warning(
                "CONTROL", 4784901, "SignalHandler", "Shutdown step timed out", step=what
            )

    async def _close_servers(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        if self._socket_path is not None:
            Path(self._socket_path).unlink(missing_ok=True)


def _daemonize(pid_file: str | None) -> Any:
    """Double-fork like mongod --fork; the parent exits 0 once the child listens, else 1."""
    read_fd, write_fd = os.pipe()
    if os.fork() > 0:
        os.close(write_fd)
        status = os.read(read_fd, 1)
        if status == b"1":
            print("child process started successfully, parent exiting")
            os._exit(0)
        print("ERROR: child process failed, exited with error number 1", file=sys.stderr)
        os._exit(1)
    os.close(read_fd)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    if pid_file:
        Path(pid_file).write_text(f"{os.getpid()}\n", encoding="ascii")

    def ready() -> None:
        os.write(write_fd, b"1")
        os.close(write_fd)

    return ready


def main(argv: list[str]) -> int:
    result = config.load_settings(argv)
    if isinstance(result, str):
        sys.stdout.write(result)
        return config.EXIT_CLEAN
    settings = result
    try:
        log = config.Log(settings.log_path, settings.log_append, settings.log_rotate)
    except OSError as exc:
        print(f"Failed to open {settings.log_path}: {exc.strerror}", file=sys.stderr)
        return config.EXIT_FAILURE
    if settings.tls.implicit_tls10_disabled:
        log.info(
            "CONTROL",
            23285,
            "main",
            "Automatically disabling TLS 1.0, to force-enable TLS 1.0 specify "
            "--sslDisabledProtocols 'none'",
        )
    # mongod sets TLS up during its global initialization, before forking and before the
    # "MongoDB starting" line; a failure ends the process with exit code 1.
    try:
        tls_state = tls.setup(settings.tls, log)
    except tls.TlsSetupError as exc:
        log.write(
            "F",
            "CONTROL",
            20574,
            "main",
            "Error during global initialization",
            {"error": exc.error()},
        )
        print(f"{exc.code_name}: {exc}", file=sys.stderr)
        log.close()
        return config.EXIT_FAILURE
    ready = None
    if settings.fork:
        if os.environ.get("MONGODB_CONFIG_OVERRIDE_NOFORK") == "1":
            log.info("CONTROL", 4615611, "main", "overriding processManagement.fork to false")
        else:
            ready = _daemonize(settings.pid_file)
    elif settings.pid_file:
        Path(settings.pid_file).write_text(f"{os.getpid()}\n", encoding="ascii")
    log.info(
        "CONTROL",
        4615611,
        "initandlisten",
        "MongoDB starting",
        pid=os.getpid(),
        port=settings.port,
        dbPath=settings.db_path,
        architecture="64-bit",
        host=socket.gethostname(),
    )
    log.info(
        "CONTROL",
        23403,
        "initandlisten",
        "Build Info",
        buildInfo={"version": config.VERSION, "gitVersion": config.GIT_VERSION},
    )
    log.info(
        "CONTROL", 21951, "initandlisten", "Options set by command line", options=settings.parsed
    )
    if os.geteuid() == 0:
        log.warning(
            "CONTROL",
            22120,
            "initandlisten",
            "You are running this process as the root user, which is not recommended",
        )
    try:
        key, storage = _startup_checks(settings, log)
    except StartupError as exc:
        log.error("CONTROL", 20575, "initandlisten", "Error during startup", error=str(exc))
        log.info("CONTROL", 23138, "initandlisten", "Shutting down", exitCode=exc.exit_code)
        print(str(exc), file=sys.stderr)
        return exc.exit_code
    if not settings.authorization:
        log.warning(
            "CONTROL",
            22120,
            "initandlisten",
            "Access control is not enabled for the database. Read and write access to "
            "data and configuration is unrestricted",
        )

    async def run() -> int:
        node = Node(settings, log, storage, key, tls_state)
        if node.repl is not None:
            node.repl.load()
        return await node.run(ready)

    code = _run_to_exit(run())
    storage.unlock()
    log.close()
    return code


def _run_to_exit(main_coroutine: Any) -> int:
    """asyncio.run, except that the tasks left when the node has shut down get one bounded
    step to end on cancellation, not an unbounded wait: the process exits either way."""
    loop = asyncio.new_event_loop()
    try:
        code = loop.run_until_complete(main_coroutine)
        leftover = asyncio.all_tasks(loop)
        for task in leftover:
            task.cancel()
        if leftover:
            loop.run_until_complete(asyncio.wait(leftover, timeout=SHUTDOWN_STEP_SECONDS))
        return int(code)
    finally:
        loop.close()


def _startup_checks(settings: config.Settings, log: config.Log) -> tuple[str | None, Storage]:
    key = None
    if settings.key_file is not None:
        try:
            key = config.read_key_file(settings.key_file)
        except config.KeyFileError as exc:
            log.error("ACCESS", 20254, "initandlisten", "Read security file failed", error=str(exc))
            raise StartupError(config.EXIT_FAILURE, str(exc)) from exc
    if not Path(settings.db_path).is_dir():
        raise StartupError(
            config.EXIT_NEED_UPGRADE_OR_DBPATH,
            f"NonExistentPath: Data directory {settings.db_path} not found. Create the missing "
            "directory or specify another path using (1) the --dbpath command line option, or "
            "(2) by adding the 'storage.dbPath' option in the configuration file.",
        )
    if not os.access(settings.db_path, os.W_OK | os.X_OK):
        raise StartupError(
            config.EXIT_NEED_UPGRADE_OR_DBPATH,
            f"IllegalOperation: Attempted to create a lock file on a read-only "
            f"directory: {settings.db_path}",
        )
    storage = Storage(settings.db_path)
    try:
        storage.lock()
    except DBPathInUse as exc:
        raise StartupError(config.EXIT_NEED_UPGRADE_OR_DBPATH, f"DBPathInUse: {exc}") from exc
    storage.load()
    return key, storage
