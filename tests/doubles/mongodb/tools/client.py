"""A small blocking MongoDB client for the tools: URI, server selection, SCRAM, OP_MSG commands.

Standard library and the double's own codec only, so the tools run under Debian's python3.
Server selection follows the driver rules the tools rely on: one host without `replicaSet` is a
direct connection; otherwise members are discovered from `hello` and chosen by read preference
(hidden members are never listed in `hello`, so they are never chosen). Selection is retried
until `serverSelectionTimeoutMS` (default 30 s) passes. With TLS (tls.py) every connection is
wrapped in one client context and checks the server's certificate against the host name it dials.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import ssl
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field

from .. import bson_codec, wire
from ..auth import ScramClient
from ..bson_codec import Binary, Document
from ..errors import MongoError
from . import tls
from .common import Parsed, ToolError, UsageError, log, read_config_file

MODES = ("primary", "primaryPreferred", "secondary", "secondaryPreferred", "nearest")
_MODE_NAMES = {m.lower(): m for m in MODES}


class CommandFailed(Exception):
    """A command answered ok:0; rendered like the Go driver renders server errors."""

    def __init__(self, reply: Document) -> None:
        self.reply = reply
        self.code = int(reply.get("code", 0))
        name = reply.get("codeName", "")
        super().__init__(f"({name}) {reply.get('errmsg', 'command failed')}")


@dataclass
class Settings:
    hosts: list[tuple[str, int]]
    username: str | None = None
    password: str | None = None
    auth_source: str | None = None
    mechanism: str | None = None
    replica_set: str | None = None
    direct: bool | None = None
    read_preference: str = "primary"
    selection_timeout: float = 30.0
    connect_timeout: float = 10.0
    uri_db: str | None = None
    redacted: str = ""
    options: dict[str, str] = field(default_factory=dict)
    tls: tls.TlsOptions = field(default_factory=tls.TlsOptions)
    # Options of the connection string the Go driver does not parse (mongo-tools warn about them).
    unsupported: list[str] = field(default_factory=list)
    # The TLS client context, made with the options as mongo-tools configure their client before
    # doing anything else (so mongorestore fails on it before reading an archive).
    context: ssl.SSLContext | None = None


def _split_host(text: str) -> tuple[str, int]:
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else 27017
    host, _, port = text.partition(":")
    try:
        return host, int(port) if port else 27017
    except ValueError as exc:
        raise UsageError(f"error parsing uri: invalid port in host {text!r}") from exc


def parse_read_preference(text: str) -> str:
    """A mode name, or the JSON form `{mode: "secondary"}` (keys may be unquoted)."""
    text = text.strip()
    if text.startswith("{"):
        quoted = re.sub(r"([{,]\s*)([A-Za-z_$][\w$]*)\s*:", r'\1"\2":', text).replace("'", '"')
        try:
            mode = str(json.loads(quoted).get("mode", ""))
        except (json.JSONDecodeError, AttributeError) as exc:
            raise UsageError(f"invalid json object: {text}") from exc
    else:
        mode = text
    if mode.lower() not in _MODE_NAMES:
        raise UsageError(f"invalid readPreference mode '{mode}'")
    return _MODE_NAMES[mode.lower()]


def parse_uri(uri: str) -> Settings:
    if uri.startswith("mongodb+srv://"):
        raise UsageError("mongodb+srv:// connection strings are not supported by this test double")
    if not uri.startswith("mongodb://"):
        raise UsageError('error parsing uri: scheme must be "mongodb" or "mongodb+srv"')
    rest = uri[len("mongodb://") :]
    rest, _, query = rest.partition("?")
    hostpart, _, path = rest.partition("/")
    userinfo, at, hostlist = hostpart.rpartition("@")
    settings = Settings(hosts=[_split_host(h) for h in hostlist.split(",") if h])
    if not settings.hosts:
        raise UsageError("error parsing uri: must have at least 1 host")
    if at:
        user, colon, password = userinfo.partition(":")
        settings.username = urllib.parse.unquote(user)
        if colon:
            settings.password = urllib.parse.unquote(password)
    settings.uri_db = urllib.parse.unquote(path) or None
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        settings.options[key.lower()] = value
        if key.lower() in tls.UNSUPPORTED_URI_OPTIONS:
            settings.unsupported.append(key.lower())
        else:
            settings.tls.apply_uri_option(key, value)
    opts = settings.options
    settings.replica_set = opts.get("replicaset")
    settings.auth_source = opts.get("authsource")
    settings.mechanism = opts.get("authmechanism")
    if "directconnection" in opts:
        settings.direct = opts["directconnection"].lower() == "true"
    if "readpreference" in opts:
        settings.read_preference = parse_read_preference(opts["readpreference"])
    if "serverselectiontimeoutms" in opts:
        settings.selection_timeout = int(opts["serverselectiontimeoutms"]) / 1000
    if "connecttimeoutms" in opts:
        settings.connect_timeout = int(opts["connecttimeoutms"]) / 1000
    shown = f"{settings.username}:<redacted>@" if at else ""
    shown_query = tls.redact_uri_query(query)
    settings.redacted = f"mongodb://{shown}{hostlist}/{path}" + (f"?{shown_query}" if query else "")
    return settings


def settings_from_options(opts: Parsed) -> Settings:
    """Merge --uri/positional, --config, --host/--port and credential flags as mongo-tools does."""
    schemes = ("mongodb://", "mongodb+srv://")
    if (
        len(opts.positional) > 1
        or (opts.positional and opts.has("uri"))
        or any(not p.startswith(schemes) for p in opts.positional)
    ):
        raise UsageError(
            "error parsing positional arguments: provide only one MongoDB connection string. "
            "Connection strings must begin with mongodb:// or mongodb+srv:// schemes"
        )
    config = read_config_file(opts.get("config")) if opts.has("config") else {}
    uri = opts.get("uri") or (opts.positional[0] if opts.positional else None) or config.get("uri")
    if uri and (opts.has("host") or opts.has("port")):
        raise UsageError("illegal argument combination: cannot specify --host and --uri")
    if uri:
        settings = parse_uri(uri)
    else:
        host = opts.get("host", "localhost")
        set_name, slash, seeds = host.rpartition("/")
        settings = Settings(hosts=[_split_host(h) for h in seeds.split(",") if h])
        if slash:
            settings.replica_set = set_name
        if opts.has("port"):
            settings.hosts = [(h, int(opts.get("port"))) for h, _ in settings.hosts]
        settings.redacted = "mongodb://" + ",".join(f"{h}:{p}" for h, p in settings.hosts) + "/"
    if opts.has("username"):
        settings.username = opts.get("username")
    if opts.has("password"):
        settings.password = opts.get("password")
    elif settings.password is None and "password" in config:
        settings.password = config["password"]
    if opts.has("authenticationDatabase"):
        settings.auth_source = opts.get("authenticationDatabase")
    if opts.has("authenticationMechanism"):
        settings.mechanism = opts.get("authenticationMechanism")
    if opts.has("readPreference"):
        settings.read_preference = parse_read_preference(opts.get("readPreference"))
    settings.tls = tls.merge_flags(settings.tls, opts, config)
    for name in settings.unsupported:
        log.always(f"WARNING: ignoring unsupported URI parameter '{name}'")
    if settings.username and settings.password is None:
        raise ToolError(
            "can't create session: no password given for user "
            f"{settings.username}: use --password, the uri or --config"
        )
    tls.ask_key_password(settings.tls)
    if settings.tls.enabled:
        settings.context = tls.context(settings.tls)
    return settings


class Connection:
    """One socket to one server, speaking OP_MSG; over TLS when given a client context."""

    def __init__(
        self, host: str, port: int, timeout: float, context: ssl.SSLContext | None = None
    ) -> None:
        self.address = f"{host}:{port}"
        self.host = host
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except ConnectionRefusedError as exc:
            raise OSError(f"dial tcp {self.address}: connect: connection refused") from exc
        except TimeoutError as exc:
            raise OSError(f"dial tcp {self.address}: i/o timeout") from exc
        self.hello: Document = {}
        if context is not None:
            try:
                sock = context.wrap_socket(sock, server_hostname=host)
            except OSError as exc:
                sock.close()
                raise self._failure(exc) from exc
        self.sock = sock
        self.sock.settimeout(max(timeout, 60.0))

    def _failure(self, exc: OSError) -> OSError:
        """A TLS error or a reset as the driver reports it: during the connection handshake (TLS,
        then the first hello, which a server that refuses the client's certificate after TLS
        1.3's handshake may answer with an alert) or on an established connection."""
        detail = tls.describe(exc, self.host)
        if not self.hello:
            return OSError(f"connection() error occurred during connection handshake: {detail}")
        return OSError(f"connection({self.address}) {detail}")

    def close(self) -> None:
        self.sock.close()

    def _read(self, size: int) -> bytes:
        chunks = []
        while size:
            try:
                chunk = self.sock.recv(size)
            except (ssl.SSLError, ConnectionResetError) as exc:
                raise self._failure(exc) from exc
            if not chunk:
                raise OSError(f"connection to {self.address} closed")
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def command(self, db: str, body: Document) -> Document:
        request = dict(body)
        request["$db"] = db
        request_id = wire.next_request_id()
        try:
            self.sock.sendall(wire.encode_op_msg(request_id, 0, request))
        except (ssl.SSLError, ConnectionResetError) as exc:
            raise self._failure(exc) from exc
        header = self._read(wire.HEADER.size)
        length, _, response_to, op_code = wire.HEADER.unpack(header)
        payload = self._read(length - wire.HEADER.size)
        if op_code != wire.OP_MSG or response_to != request_id:
            raise OSError(f"unexpected reply from {self.address}")
        reply = wire.parse_op_msg(response_to, payload).body
        if not reply.get("ok"):
            raise CommandFailed(reply)
        return reply


def _authenticate(conn: Connection, settings: Settings, source: str) -> None:
    assert settings.username is not None and settings.password is not None
    mechanism = settings.mechanism
    if mechanism is None:
        offered = conn.hello.get("saslSupportedMechs") or []
        mechanism = "SCRAM-SHA-1" if offered == ["SCRAM-SHA-1"] else "SCRAM-SHA-256"
    if mechanism not in ("SCRAM-SHA-1", "SCRAM-SHA-256"):
        raise ToolError(
            f"can't create session: authentication mechanism {mechanism} is not "
            "supported by this test double"
        )
    scram = ScramClient(mechanism, settings.username, settings.password)
    try:
        reply = conn.command(
            source,
            {
                "saslStart": 1,
                "mechanism": mechanism,
                "payload": Binary(0, scram.first()),
                "autoAuthorize": 1,
                "options": {"skipEmptyExchange": True},
            },
        )
        final = scram.final(reply["payload"].data)
        reply = conn.command(
            source,
            {
                "saslContinue": 1,
                "conversationId": reply["conversationId"],
                "payload": Binary(0, final),
            },
        )
        scram.verify(reply["payload"].data)
    except (CommandFailed, MongoError) as exc:
        detail = str(exc) if isinstance(exc, CommandFailed) else f"({exc.code}) {exc.errmsg}"
        raise ToolError(
            "can't create session: failed to connect to "
            f"{settings.redacted}: connection() error occurred during connection handshake: "
            f"auth error: sasl conversation error: unable to authenticate using mechanism "
            f'"{mechanism}": {detail}'
        ) from exc


def _kind(hello: Document) -> str:
    if hello.get("isWritablePrimary") or hello.get("ismaster"):
        return "RSPrimary" if hello.get("setName") else "Standalone"
    if hello.get("secondary"):
        return "RSSecondary"
    if hello.get("arbiterOnly"):
        return "RSArbiter"
    return "RSGhost" if hello.get("isreplicaset") else "RSOther"


class Client:
    """Server selection and the authenticated connection the tool works through."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.conn: Connection | None = None
        self.topology = "Single"

    def _probe(self, host: str, port: int) -> Connection:
        conn = Connection(host, port, self.settings.connect_timeout, self.settings.context)
        hello: Document = {"hello": 1, "helloOk": True}
        if self.settings.username:
            source = self._auth_source()
            hello["saslSupportedMechs"] = f"{source}.{self.settings.username}"
        try:
            conn.hello = conn.command("admin", hello)
        except Exception:
            conn.close()
            raise
        return conn

    def _auth_source(self) -> str:
        return self.settings.auth_source or self.settings.uri_db or "admin"

    def _choose(self, found: dict[str, Connection]) -> Connection | None:
        mode = self.settings.read_preference
        kinds = {addr: _kind(conn.hello) for addr, conn in found.items()}
        primaries = [a for a, k in kinds.items() if k == "RSPrimary"]
        secondaries = sorted(a for a, k in kinds.items() if k == "RSSecondary")
        order = {
            "primary": primaries,
            "primaryPreferred": primaries + secondaries,
            "secondary": secondaries,
            "secondaryPreferred": secondaries + primaries,
            "nearest": sorted(primaries + secondaries),
        }[mode]
        return found[order[0]] if order else None

    def connect(self) -> Connection:
        settings = self.settings
        direct = settings.direct
        if direct is None:
            direct = len(settings.hosts) == 1 and not settings.replica_set
        self.topology = "Single" if direct else "ReplicaSetNoPrimary"
        deadline = time.monotonic() + settings.selection_timeout
        errors: dict[str, str] = {}
        while True:
            found: dict[str, Connection] = {}
            queue = [f"{h}:{p}" for h, p in settings.hosts]
            seen: set[str] = set()
            while queue:
                addr = queue.pop(0)
                if addr in seen:
                    continue
                seen.add(addr)
                host, port = _split_host(addr)
                try:
                    conn = self._probe(host, port)
                except (OSError, CommandFailed) as exc:
                    errors[addr] = str(exc)
                    continue
                errors.pop(addr, None)
                name = conn.hello.get("setName")
                if not direct and settings.replica_set and name != settings.replica_set:
                    conn.close()
                    errors[addr] = f"replica set name {name!r} does not match"
                    continue
                found[addr] = conn
                if not direct:
                    queue.extend(conn.hello.get("hosts", []) + conn.hello.get("passives", []))
            chosen = next(iter(found.values()), None) if direct else self._choose(found)
            for conn in found.values():
                if conn is not chosen:
                    conn.close()
            if chosen is not None:
                if not direct:
                    self.topology = "ReplicaSetWithPrimary"
                break
            if time.monotonic() >= deadline:
                servers = ", ".join(
                    f"{{ Addr: {a}, Type: Unknown, Last error: {e} }}" for a, e in errors.items()
                )
                topology = "Single" if direct else "ReplicaSetNoPrimary"
                raise ToolError(
                    f"can't create session: failed to connect to {settings.redacted}: server "
                    f"selection error: server selection timeout, current topology: "
                    f"{{ Type: {topology}, Servers: [{servers}, ] }}"
                )
            time.sleep(0.2)
        if settings.username:
            _authenticate(chosen, settings, self._auth_source())
        self.conn = chosen
        return chosen

    def command(self, db: str, body: Document, read: bool = False) -> Document:
        assert self.conn is not None
        request = dict(body)
        if read:
            mode = self.settings.read_preference
            if self.topology == "Single" and mode == "primary":
                mode = "primaryPreferred"
            request["$readPreference"] = {"mode": mode}
        return self.conn.command(db, request)

    def find_all(self, db: str, coll: str, body: Document | None = None) -> list[bytes]:
        """Every document a find returns, as raw BSON, following getMore."""
        reply = self.command(db, {"find": coll, **(body or {})}, read=True)
        cursor = reply["cursor"]
        out = [bson_codec.encode(d) for d in cursor["firstBatch"]]
        while int(cursor.get("id", 0)):
            reply = self.command(db, {"getMore": cursor["id"], "collection": coll}, read=True)
            cursor = reply["cursor"]
            out.extend(bson_codec.encode(d) for d in cursor["nextBatch"])
        return out

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


@contextlib.contextmanager
def connected(settings: Settings) -> Iterator[Client]:
    """A connected client, closed on leaving; a command failing inside becomes a ToolError."""
    client = Client(settings)
    client.connect()
    try:
        yield client
    except CommandFailed as exc:
        raise ToolError(str(exc)) from exc
    finally:
        client.close()
