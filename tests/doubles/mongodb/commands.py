"""The command table: authentication and authorization checks, state checks, and the handlers.

Replica set logic lives in replication.py; this module only routes those commands to it.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import auth, bson_codec, config, query
from .bson_codec import (
    UTC,
    Binary,
    Decimal128,
    Document,
    Int64,
    MaxKey,
    MinKey,
    ObjectId,
    Regex,
    Timestamp,
    shell_repr,
)
from .errors import NOT_PRIMARY_OR_SHUTDOWN, RETRYABLE_WRITE_CODES, MongoError, unauthorized

if TYPE_CHECKING:
    from .server import Node

HELLO_NAMES = ("hello", "isMaster", "ismaster")
RW_DEFAULTS_ID = "ReadWriteConcernDefaults"
DEFAULT_BATCH = 101
# A batch of a cursor ends once its documents reach this many bytes (mongod: 16 MiB), whatever
# batchSize asks for; at least one document goes in each.
MAX_BATCH_BYTES = 16 * 1024 * 1024
MERGE_AUTHZ = "_mergeAuthzCollections"
# Fields every command accepts besides its own (mongod's generic_argument.idl); a strict command
# refuses any other unknown field.
GENERIC_ARGUMENTS = frozenset(
    {
        "$db",
        "$readPreference",
        "$clusterTime",
        "$audit",
        "$client",
        "lsid",
        "txnNumber",
        "stmtId",
        "autocommit",
        "startTransaction",
        "writeConcern",
        "readConcern",
        "maxTimeMS",
        "comment",
        "apiVersion",
        "apiStrict",
        "apiDeprecationErrors",
        "clientOperationKey",
        "mayBypassWriteBlocking",
    }
)


@dataclass
class RetryableWrite:
    """The session of the retryable write being executed, and the statements (stmtId → record)
    this member's retryable-write records say were already executed for it."""

    lsid: Document
    txn_number: Int64
    executed: dict[int, Document]


# Set by _with_retry for the task (connection) running a retryable write on a replica set.
_RETRYABLE: contextvars.ContextVar[RetryableWrite | None] = contextvars.ContextVar(
    "retryable_write", default=None
)


class CloseConnection(Exception):
    """Close the client connection without a reply (the shutdown command does this)."""


@dataclass
class Connection:
    conn_id: int
    peer: str | None
    principals: list[tuple[str, str]] = field(default_factory=list)
    conversations: dict[int, auth.ScramConversation] = field(default_factory=dict)
    next_conversation: int = 1
    hello_count: int = 0
    client_metadata: Document | None = None


Resource = tuple[str, ...]
Requirement = list[tuple[Resource, set[str]]]
Handler = Callable[[Connection, str, Document], Awaitable[Document]]


@dataclass
class Command:
    handler: Handler
    privileges: Callable[[Node, Connection, str, Document], Requirement] | None
    # "always": any state; "optIn": a secondary answers only with secondaryOk/readPreference;
    # "primary": only a writable primary answers (writes).
    secondary: str = "always"
    write_label: bool = False
    # The errmsg of a refused privilege, when the command has its own (mongod's typed commands);
    # otherwise "not authorized on <db> to execute command ...".
    denied: Callable[[Resource], str] | None = None


def _batch(docs: list[Document], count: int) -> tuple[list[Document], list[Document]]:
    """A cursor's next batch (at most `count` documents and MAX_BATCH_BYTES) and the rest."""
    size = 0
    for taken, doc in enumerate(docs[:count]):
        size += len(bson_codec.encode(doc))
        if size > MAX_BATCH_BYTES and taken:
            return docs[:taken], docs[taken:]
    return docs[:count], docs[count:]


def _coll(db: str, body: Document) -> str:
    name = next(iter(body.values()))
    if not isinstance(name, str) or not name:
        raise MongoError(73, f"Invalid namespace specified '{db}.{name}'")
    return name


def _ns(action: str) -> Callable[[Node, Connection, str, Document], Requirement]:
    def required(node: Node, conn: Connection, db: str, body: Document) -> Requirement:
        value = next(iter(body.values()))
        if isinstance(value, str):
            return [(("ns", db, value), {action})]
        return [(("db", db), {action})]

    return required


def _db(action: str) -> Callable[[Node, Connection, str, Document], Requirement]:
    return lambda node, conn, db, body: [(("db", db), {action})]


def _cluster(action: str) -> Callable[[Node, Connection, str, Document], Requirement]:
    return lambda node, conn, db, body: [(("cluster",), {action})]


def _role_dbs(db: str, roles: Any) -> list[tuple[str, str]]:
    out = []
    for role in roles or []:
        if isinstance(role, str):
            out.append((role, db))
        elif isinstance(role, dict) and "role" in role and "db" in role:
            out.append((str(role["role"]), str(role["db"])))
        else:
            raise MongoError(2, "role names must be either strings or objects")
    return out


def _user_admin_req(node: Node, conn: Connection, db: str, body: Document) -> Requirement:
    name = next(iter(body))
    if name == "createUser":
        req: Requirement = [(("db", db), {"createUser"})]
        req += [(("db", rdb), {"grantRole"}) for _, rdb in _role_dbs(db, body.get("roles"))]
        return req
    if name == "updateUser":
        req = []
        if "pwd" in body:
            req.append((("db", db), {"changePassword"}))
        if "customData" in body:
            req.append((("db", db), {"changeCustomData"}))
        if "roles" in body:
            req += [
                (("db", rdb), {"grantRole", "revokeRole"})
                for _, rdb in _role_dbs(db, body["roles"])
            ] or [(("db", db), {"revokeRole"})]
        return req
    if name == "grantRolesToUser":
        return [(("db", rdb), {"grantRole"}) for _, rdb in _role_dbs(db, body.get("roles"))]
    if name == "revokeRolesFromUser":
        return [(("db", rdb), {"revokeRole"}) for _, rdb in _role_dbs(db, body.get("roles"))]
    return [(("db", db), {"dropUser"})]


def _users_info_req(node: Node, conn: Connection, db: str, body: Document) -> Requirement:
    target = body["usersInfo"]
    if isinstance(target, str) and (target, db) in conn.principals:
        return []
    if isinstance(target, dict) and (target.get("user"), target.get("db")) in conn.principals:
        return []
    return [(("db", db), {"viewUser"})]


def _list_databases_req(node: Node, conn: Connection, db: str, body: Document) -> Requirement:
    # Authenticated users without the privilege get the databases they can read (handler).
    return [] if conn.principals else [(("cluster",), {"listDatabases"})]


def _write_req(action: str) -> Callable[[Node, Connection, str, Document], Requirement]:
    def required(node: Node, conn: Connection, db: str, body: Document) -> Requirement:
        actions = {action}
        if action == "update" and any(u.get("upsert") for u in body.get("updates", [])):
            actions.add("insert")
        return [(("ns", db, _coll(db, body)), actions)]

    return required


def _bson_type_name(value: Any) -> str:
    """The BSON type name mongod quotes in "is the wrong type" errors."""
    names: list[tuple[type | tuple[type, ...], str]] = [
        (bool, "bool"),
        (Int64, "long"),
        (int, "int"),
        (float, "double"),
        (str, "string"),
        (dict, "object"),
        (list, "array"),
        (Binary, "binData"),
        (ObjectId, "objectId"),
        (datetime.datetime, "date"),
        (type(None), "null"),
        (Regex, "regex"),
        (Timestamp, "timestamp"),
        (Decimal128, "decimal"),
        (MinKey, "minKey"),
        (MaxKey, "maxKey"),
    ]
    return next((name for kind, name in names if isinstance(value, kind)), "unknown")


@dataclass
class MergeAuthzRequest:
    """A parsed _mergeAuthzCollections: temporary namespaces ("" if absent), db ("" = every
    database) and drop."""

    users: str
    roles: str
    db: str
    drop: bool


def _admin_only(name: str, db: str) -> None:
    if db != "admin":
        raise unauthorized(f"{name} may only be run against the admin database.")


def _parse_merge_authz(body: Document) -> MergeAuthzRequest:
    """mongod's strict IDL parse of _mergeAuthzCollections (unknown field 40415, wrong type 14,
    missing required field 40414)."""
    expected = {"tempUsersCollection": str, "tempRolesCollection": str, "db": str, "drop": bool}
    for key, value in list(body.items())[1:]:
        if key in GENERIC_ARGUMENTS:
            continue
        kind = expected.get(key)
        if kind is None:
            raise MongoError(40415, f"BSON field '{MERGE_AUTHZ}.{key}' is an unknown field.")
        if not isinstance(value, kind) or (kind is str and isinstance(value, bool)):
            wanted = "bool" if kind is bool else "string"
            raise MongoError(
                14,
                f"BSON field '{MERGE_AUTHZ}.{key}' is the wrong type "
                f"'{_bson_type_name(value)}', expected type '{wanted}'",
            )
    if "db" not in body:
        raise MongoError(40414, f"BSON field '{MERGE_AUTHZ}.db' is missing but a required field")
    return MergeAuthzRequest(
        body.get("tempUsersCollection", ""),
        body.get("tempRolesCollection", ""),
        body["db"],
        body.get("drop", False),
    )


def _authz_name(doc: Document, field: str) -> tuple[str, str]:
    """(name, db) of a user or role document, as mongod extracts it (4 missing, 14 not a string)."""
    out = []
    for key in (field, "db"):
        if key not in doc:
            raise MongoError(4, f'Missing expected field "{key}"')
        if not isinstance(doc[key], str):
            raise MongoError(
                14,
                f'"{key}" had the wrong type. Expected string, found {_bson_type_name(doc[key])}',
            )
        out.append(doc[key])
    return out[0], out[1]


def _merge_authz_req(node: Node, conn: Connection, db: str, body: Document) -> Requirement:
    """mongod's order: admin only, then authentication, then the request's own privileges: the
    user-management actions on every normal collection (with drop, dropUser and dropRole too),
    then find on each temporary collection. The restore role grants find on admin.tempusers and
    admin.temproles only, so other temporary names need more than restore."""
    _admin_only(MERGE_AUTHZ, db)
    actions = {"createUser", "createRole", "grantRole", "revokeRole"}
    if not conn.principals:  # refused as unauthenticated before the request is parsed
        return [(("anyNormal",), actions)]
    request = _parse_merge_authz(body)
    if request.drop:
        actions |= {"dropUser", "dropRole"}
    requirement: Requirement = [(("anyNormal",), actions)]
    for namespace in (request.users, request.roles):
        if namespace:
            temp_db, _, temp_coll = namespace.partition(".")
            requirement.append((("ns", temp_db, temp_coll), {"find"}))
    return requirement


def _merge_authz_denied(resource: Resource) -> str:
    if resource == ("anyNormal",):
        return f"Not authorized to update user/role data using {MERGE_AUTHZ} a command"
    return f"Not authorized to read {resource[1]}.{resource[2]}"


def _render_command(body: Document) -> str:
    shown = {k: v for k, v in body.items() if k not in ("pwd", "payload", "lsid", "$clusterTime")}
    return shell_repr(shown)


class Commands:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.cursors: dict[int, tuple[str, list[Document]]] = {}
        self.retried: dict[tuple[bytes, int], Document] = {}
        self._rw_defaults_loaded = datetime.datetime.now(UTC)
        n = self.node
        self.table: dict[str, Command] = {
            "hello": Command(self.hello, None),
            "isMaster": Command(self.hello, None),
            "ismaster": Command(self.hello, None),
            "ping": Command(self.ping, None),
            "buildInfo": Command(self.build_info, None),
            "buildinfo": Command(self.build_info, None),
            "endSessions": Command(self.ping, None),
            "saslStart": Command(self.sasl_start, None),
            "saslContinue": Command(self.sasl_continue, None),
            "connectionStatus": Command(self.connection_status, None),
            "_isSelf": Command(self.is_self, None),
            "getParameter": Command(self.get_parameter, _cluster("getParameter")),
            "setParameter": Command(self.set_parameter, _cluster("setParameter")),
            "getCmdLineOpts": Command(self.get_cmd_line_opts, _cluster("getCmdLineOpts")),
            "serverStatus": Command(self.server_status, _cluster("serverStatus")),
            "shutdown": Command(self.shutdown, _cluster("shutdown")),
            "logRotate": Command(self.log_rotate, _cluster("logRotate")),
            "fsync": Command(self.fsync, _cluster("fsync")),
            "fsyncUnlock": Command(self.fsync_unlock, _cluster("unlock")),
            "getDefaultRWConcern": Command(
                self.get_default_rw_concern, _cluster("getDefaultRWConcern")
            ),
            "setDefaultRWConcern": Command(
                self.set_default_rw_concern, _cluster("setDefaultRWConcern"), "primary"
            ),
            "usersInfo": Command(self.users_info, _users_info_req, "optIn"),
            "createUser": Command(self.create_user, _user_admin_req, "primary"),
            "updateUser": Command(self.update_user, _user_admin_req, "primary"),
            "dropUser": Command(self.drop_user, _user_admin_req, "primary"),
            "dropAllUsersFromDatabase": Command(self.drop_all_users, _db("dropUser"), "primary"),
            "dropAllRolesFromDatabase": Command(self.drop_all_roles, _db("dropRole"), "primary"),
            "grantRolesToUser": Command(self.grant_roles, _user_admin_req, "primary"),
            "revokeRolesFromUser": Command(self.revoke_roles, _user_admin_req, "primary"),
            "rolesInfo": Command(self.roles_info, _db("viewRole"), "optIn"),
            MERGE_AUTHZ: Command(
                self.merge_authz_collections,
                _merge_authz_req,
                "primary",
                denied=_merge_authz_denied,
            ),
            "insert": Command(self.insert, _write_req("insert"), "primary", True),
            "update": Command(self.update, _write_req("update"), "primary", True),
            "delete": Command(self.delete, _write_req("remove"), "primary", True),
            "find": Command(self.find, _ns("find"), "optIn"),
            "count": Command(self.count, _ns("find"), "optIn"),
            "aggregate": Command(self.aggregate, _ns("find"), "optIn"),
            "getMore": Command(self.get_more, self._get_more_req, "optIn"),
            "killCursors": Command(self.kill_cursors, _ns("killCursors")),
            "listDatabases": Command(self.list_databases, _list_databases_req, "optIn"),
            "listCollections": Command(self.list_collections, _db("listCollections"), "optIn"),
            "listIndexes": Command(self.list_indexes, _ns("listIndexes"), "optIn"),
            "dbStats": Command(self.db_stats, _db("dbStats"), "optIn"),
            "create": Command(self.create, _ns("createCollection"), "primary"),
            "createIndexes": Command(self.create_indexes, _ns("createIndex"), "primary"),
            "drop": Command(self.drop, _ns("dropCollection"), "primary"),
            "dropDatabase": Command(self.drop_database, _db("dropDatabase"), "primary"),
            "replSetInitiate": Command(n.repl_initiate, _cluster("replSetConfigure")),
            "replSetGetStatus": Command(n.repl_status, _cluster("replSetGetStatus")),
            "replSetGetConfig": Command(n.repl_get_config, _cluster("replSetGetConfig")),
            "replSetReconfig": Command(n.repl_reconfig, _cluster("replSetConfigure")),
            "replSetStepDown": Command(n.repl_step_down, _cluster("replSetStateChange")),
            "replSetFreeze": Command(n.repl_freeze, _cluster("replSetStateChange")),
            "replSetHeartbeat": Command(n.repl_internal, _cluster("internal")),
            "replSetRequestVotes": Command(n.repl_internal, _cluster("internal")),
            "replSetStepUp": Command(n.repl_internal, _cluster("internal")),
            "_oplogFetch": Command(n.repl_internal, _cluster("internal")),
            "_initialSync": Command(n.repl_internal, _cluster("internal")),
            "_rollbackInfo": Command(n.repl_internal, _cluster("internal")),
        }

    # Dispatch

    async def run(self, conn: Connection, body: Document, secondary_ok: bool) -> Document:
        name = next(iter(body), "")
        db = body.get("$db", "")
        try:
            command = self.table.get(name)
            if command is None:
                raise MongoError(59, f"no such command: '{name}'")
            if body.get("startTransaction") or "autocommit" in body:
                raise MongoError(20, "Transactions are not supported by this server")
            self._authorize(conn, name, db, body, command)
            self._check_state(name, db, body, command, secondary_ok)
            if command.secondary == "primary":
                await self.node.writes_allowed()
                self._check_state(name, db, body, command, secondary_ok)
            reply = await self._with_retry(conn, name, db, body, command)
            concern_error = reply.get("writeConcernError")
            if (
                command.write_label
                and "txnNumber" in body
                and isinstance(concern_error, dict)
                and concern_error.get("code") in RETRYABLE_WRITE_CODES
            ):
                reply["errorLabels"] = ["RetryableWriteError"]
            return reply
        except MongoError as exc:
            reply = exc.reply()
            if exc.code in NOT_PRIMARY_OR_SHUTDOWN:
                reply.setdefault("topologyVersion", self.node.topology_version())
                if command is not None and command.write_label and "txnNumber" in body:
                    reply["errorLabels"] = ["RetryableWriteError"]
            return reply
        finally:
            self.node.storage.sync()

    def _localhost_exception(self, conn: Connection) -> bool:
        return (
            not conn.principals
            and bool(self.node.settings.parameter("enableLocalhostAuthBypass"))
            and auth.is_loopback_peer(conn.peer)
            and not self.node.storage.documents("admin", "system.users")
            and not self.node.storage.documents("admin", "system.roles")
        )

    def principal_objects(self, conn: Connection) -> list[auth.Principal]:
        out = []
        for user, db in conn.principals:
            if user == "__system" and db == "local":
                out.append(auth.Principal(user, db, [{"role": "__system", "db": "admin"}]))
                continue
            doc = self.node.storage.find_by_id("admin", "system.users", f"{db}.{user}")
            if doc is not None:
                out.append(auth.Principal(user, db, list(doc.get("roles", []))))
        return out

    def _authorize(
        self, conn: Connection, name: str, db: str, body: Document, command: Command
    ) -> None:
        if not self.node.settings.authorization or command.privileges is None:
            return
        requirement = command.privileges(self.node, conn, db, body)

        def denied(resource: Resource) -> MongoError:
            if command.denied is not None:
                return unauthorized(command.denied(resource))
            return unauthorized(
                f"not authorized on {db} to execute command {_render_command(body)}"
            )

        if not conn.principals:
            if self._localhost_exception(conn):
                for resource, actions in requirement:
                    if not auth.localhost_exception_allows(resource, actions):
                        raise denied(resource)
                return
            raise unauthorized(f"Command {name} requires authentication")
        principals = self.principal_objects(conn)
        for resource, actions in requirement:
            if not auth.is_authorized(principals, resource, actions):
                raise denied(resource)

    def _check_state(
        self, name: str, db: str, body: Document, command: Command, secondary_ok: bool
    ) -> None:
        repl = self.node.repl
        if repl is None or command.secondary == "always" or db == "local":
            return
        if command.secondary == "primary":
            if not repl.is_writable_primary():
                raise MongoError(10107, "not primary")
            return
        mode = (body.get("$readPreference") or {}).get("mode", "primary")
        if repl.is_writable_primary():
            return
        if not (secondary_ok or mode != "primary"):
            raise MongoError(13435, "not primary and secondaryOk=false")
        if not repl.is_readable():
            raise MongoError(13436, "node is not in primary or recovering state")

    async def _with_retry(
        self, conn: Connection, name: str, db: str, body: Document, command: Command
    ) -> Document:
        lsid = body.get("lsid")
        txn = body.get("txnNumber")
        if not command.write_label or txn is None or not isinstance(lsid, dict):
            return await command.handler(conn, db, body)
        session_id = lsid.get("id")
        repl = self.node.repl
        if repl is not None and repl.config is not None:
            # Replica set: the oplog entries of the write carry lsid/txnNumber/stmtId, and every
            # member keeps the executed statements (replication.py, config.transactions in
            # mongod), so whichever member is primary answers a retry without executing again.
            executed = repl.executed_statements(session_id, int(txn)) or {}
            token = _RETRYABLE.set(RetryableWrite(dict(lsid), Int64(int(txn)), executed))
            try:
                return await command.handler(conn, db, body)
            finally:
                _RETRYABLE.reset(token)
        raw = session_id.data if isinstance(session_id, Binary) else repr(session_id).encode()
        key = (raw, int(txn))
        if key in self.retried:
            return self.retried[key]
        reply = await command.handler(conn, db, body)
        self.retried[key] = reply
        return reply

    @staticmethod
    def _executed(stmt_id: int) -> Document | None:
        """The record of statement `stmt_id` of the current retryable write, if it already ran."""
        current = _RETRYABLE.get()
        return current.executed.get(stmt_id) if current is not None else None

    def _get_more_req(self, node: Node, conn: Connection, db: str, body: Document) -> Requirement:
        return [(("ns", db, str(body.get("collection", ""))), {"find"})]

    # Writes that replicate

    def _record(
        self, op: str, ns: str, o: Document, o2: Document | None = None, stmt: int | None = None
    ) -> None:
        if self.node.repl is not None and not ns.startswith("local."):
            current = _RETRYABLE.get()
            session = None
            if current is not None and stmt is not None:
                session = {"lsid": current.lsid, "txnNumber": current.txn_number, "stmtId": stmt}
            self.node.repl.log_op(op, ns, o, o2, session)

    def _insert_doc(self, db: str, coll: str, doc: Document, stmt: int | None = None) -> None:
        self.node.storage.insert(db, coll, doc)
        self._record("i", f"{db}.{coll}", doc, stmt=stmt)

    def _replace_doc(self, db: str, coll: str, doc: Document, stmt: int | None = None) -> None:
        self.node.storage.replace(db, coll, doc)
        self._record("u", f"{db}.{coll}", doc, {"_id": doc["_id"]}, stmt)

    def _delete_doc(self, db: str, coll: str, doc_id: Any, stmt: int | None = None) -> None:
        self.node.storage.delete(db, coll, doc_id)
        self._record("d", f"{db}.{coll}", {"_id": doc_id}, stmt=stmt)

    async def _acknowledge(self, body: Document, reply: Document, default: Any = None) -> Document:
        """`reply` once the write concern is met or has failed. A write without one (or without
        `w`) gets `default` if given (user management: majority), else the cluster-wide default
        of a replica set (setDefaultRWConcern, or the implicit default of MongoDB 5.0+)."""
        concern = body.get("writeConcern")
        provenance = "clientSupplied"
        if not isinstance(concern, dict) or "w" not in concern:
            given = dict(concern) if isinstance(concern, dict) else {}
            if default is not None:
                concern, provenance = {**default, **given}, "internalWriteDefault"
            elif self.node.repl is not None and self.node.repl.config is not None:
                fallback, provenance = self.node.repl.default_write_concern()
                concern = {**fallback, **given}
            else:
                concern = None
        if concern is not None:
            error = await self.node.await_write_concern(concern, provenance)
            if error is not None:
                reply["writeConcernError"] = error
        return reply

    async def _user_written(self, body: Document) -> Document:
        """The reply of a user-management write: it waits for a majority unless told otherwise."""
        return await self._acknowledge(body, {"ok": 1.0}, {"w": "majority"})

    # Cluster-wide read/write concern defaults (stored like mongod: config.settings)

    def _rw_defaults_reply(self) -> Document:
        repl = self.node.repl
        stored = self.node.storage.find_by_id("config", "settings", RW_DEFAULTS_ID) or {}
        implicit = (
            repl.implicit_default_write_concern()
            if repl is not None and repl.config is not None
            else {"w": 1, "wtimeout": 0}
        )
        reply: Document = {
            "defaultReadConcern": stored.get("defaultReadConcern") or {"level": "local"},
            "defaultWriteConcern": stored.get("defaultWriteConcern") or implicit,
        }
        for key in ("updateOpTime", "updateWallClockTime"):
            if key in stored:
                reply[key] = stored[key]
        reply["defaultWriteConcernSource"] = (
            "global" if stored.get("defaultWriteConcern") else "implicit"
        )
        reply["defaultReadConcernSource"] = (
            "global" if stored.get("defaultReadConcern") else "implicit"
        )
        reply["localUpdateWallClockTime"] = self._rw_defaults_loaded
        reply["ok"] = 1.0
        return reply

    async def get_default_rw_concern(self, conn: Connection, db: str, body: Document) -> Document:
        if db != "admin":
            raise MongoError(13, "getDefaultRWConcern may only be run against the admin database.")
        return self._rw_defaults_reply()

    async def set_default_rw_concern(self, conn: Connection, db: str, body: Document) -> Document:
        if db != "admin":
            raise MongoError(13, "setDefaultRWConcern may only be run against the admin database.")
        repl = self.node.repl
        if repl is None:
            raise MongoError(20, "setDefaultRWConcern is only supported on replica sets")
        read = body.get("defaultReadConcern")
        write = body.get("defaultWriteConcern")
        if read is None and write is None:
            raise MongoError(
                2,
                'At least one of the "defaultReadConcern" or "defaultWriteConcern" fields '
                "must be present",
            )
        stored = dict(self.node.storage.find_by_id("config", "settings", RW_DEFAULTS_ID) or {})
        if write is not None:
            if not isinstance(write, dict):
                raise MongoError(14, "defaultWriteConcern must be an object")
            if not write:
                if stored.get("defaultWriteConcern"):
                    raise MongoError(
                        2, "The global default write concern cannot be unset once it is set."
                    )
            else:
                w = write.get("w", 1)
                if w == 0 or (isinstance(w, int) and w < 0):
                    raise MongoError(2, "Unacknowledged write concern is not allowed as default")
                if not isinstance(w, int | str):
                    raise MongoError(14, "w has to be a number or string")
                stored["defaultWriteConcern"] = {
                    "w": w,
                    "wtimeout": int(write.get("wtimeout", 0) or 0),
                    **({"j": bool(write["j"])} if "j" in write else {}),
                }
        if read is not None:
            if not isinstance(read, dict):
                raise MongoError(14, "defaultReadConcern must be an object")
            level = read.get("level")
            if read and level not in ("local", "available", "majority"):
                raise MongoError(
                    2, f"Default read concern level must be local, available or majority; {level}"
                )
            if read:
                stored["defaultReadConcern"] = {"level": level}
            else:
                stored.pop("defaultReadConcern", None)
        stored["_id"] = RW_DEFAULTS_ID
        stored["updateOpTime"] = repl._next_ts()
        stored["updateWallClockTime"] = datetime.datetime.now(UTC)
        self._replace_doc("config", "settings", stored)
        self._rw_defaults_loaded = datetime.datetime.now(UTC)
        error = await self.node.await_write_concern({"w": "majority"}, "internalWriteDefault")
        if error is not None:
            raise MongoError(int(error["code"]), str(error["errmsg"]))
        return self._rw_defaults_reply()

    # Handshake and meta commands

    async def hello(self, conn: Connection, db: str, body: Document) -> Document:
        conn.hello_count += 1
        if "client" in body:
            if conn.hello_count > 1:
                raise MongoError(
                    186, "The client metadata document may only be sent in the first hello"
                )
            conn.client_metadata = body["client"]
        if body.get("loadBalanced"):
            raise MongoError(20, "The server is not configured for load balanced mode")
        if "maxAwaitTimeMS" in body and "topologyVersion" in body:
            await self.node.await_topology_change(
                body["topologyVersion"], int(body["maxAwaitTimeMS"]) / 1000.0
            )
        legacy = next(iter(body)) != "hello"
        reply = self.node.hello_fields(legacy)
        if legacy and body.get("helloOk"):
            reply["helloOk"] = True
        reply.update(
            {
                "topologyVersion": self.node.topology_version(),
                "maxBsonObjectSize": 16777216,
                "maxMessageSizeBytes": 48000000,
                "maxWriteBatchSize": 100000,
                "localTime": datetime.datetime.now(UTC),
                "logicalSessionTimeoutMinutes": 30,
                "connectionId": conn.conn_id,
                "minWireVersion": 0,
                "maxWireVersion": config.MAX_WIRE_VERSION,
                "readOnly": False,
            }
        )
        mechs = body.get("saslSupportedMechs")
        if isinstance(mechs, str) and "." in mechs:
            user_db, _, user = mechs.partition(".")
            doc = self.node.storage.find_by_id("admin", "system.users", f"{user_db}.{user}")
            if doc is not None:
                reply["saslSupportedMechs"] = list(doc.get("credentials", {}))
            elif (user_db, user) == ("local", "__system") and self.node.key is not None:
                reply["saslSupportedMechs"] = ["SCRAM-SHA-256"]
        speculative = body.get("speculativeAuthenticate")
        if isinstance(speculative, dict) and "saslStart" in speculative:
            # A failed speculative step is omitted; the driver then authenticates normally.
            with contextlib.suppress(MongoError):
                reply["speculativeAuthenticate"] = self._sasl_start(
                    conn, str(speculative.get("db", db)), speculative
                )
        reply["ok"] = 1.0
        return reply

    async def ping(self, conn: Connection, db: str, body: Document) -> Document:
        return {"ok": 1.0}

    async def build_info(self, conn: Connection, db: str, body: Document) -> Document:
        return {
            "version": config.VERSION,
            "gitVersion": config.GIT_VERSION,
            "modules": [],
            "allocator": "tcmalloc",
            "javascriptEngine": "mozjs",
            "sysInfo": "deprecated",
            "versionArray": list(config.VERSION_ARRAY),
            "openssl": {"running": "disabled", "compiled": "disabled"},
            "buildEnvironment": {"distmod": "debian12", "distarch": "x86_64"},
            "bits": 64,
            "debug": False,
            "maxBsonObjectSize": 16777216,
            "storageEngines": ["devnull", "wiredTiger"],
            "ok": 1.0,
        }

    async def connection_status(self, conn: Connection, db: str, body: Document) -> Document:
        principals = self.principal_objects(conn)
        return {
            "authInfo": {
                "authenticatedUsers": [{"user": p.user, "db": p.db} for p in principals],
                "authenticatedUserRoles": [r for p in principals for r in p.roles],
            },
            "ok": 1.0,
        }

    async def is_self(self, conn: Connection, db: str, body: Document) -> Document:
        return {"id": self.node.process_id, "ok": 1.0}

    async def get_parameter(self, conn: Connection, db: str, body: Document) -> Document:
        params = dict(self.node.settings.parameters)
        params["featureCompatibilityVersion"] = {"version": params["featureCompatibilityVersion"]}
        if body["getParameter"] == "*":
            return {**params, "ok": 1.0}
        wanted = {k: v for k, v in params.items() if k in body and k != "getParameter"}
        if not wanted:
            raise MongoError(72, "no option found to get")
        return {**wanted, "ok": 1.0}

    async def set_parameter(self, conn: Connection, db: str, body: Document) -> Document:
        changes = {
            k: v
            for k, v in body.items()
            if k != "setParameter" and not k.startswith("$") and k not in ("lsid", "comment")
        }
        if len(changes) != 1:
            raise MongoError(2, "setParameter requires exactly one parameter")
        name, value = next(iter(changes.items()))
        startup_only = ("enableLocalhostAuthBypass", "authenticationMechanisms")
        if name in startup_only:
            raise MongoError(2, f"not allowed to change [{name}] at runtime")
        if name not in self.node.settings.parameters:
            raise MongoError(
                2, f"attempted to set unrecognized parameter [{name}], use help:true to see options"
            )
        was = self.node.settings.parameters[name]
        self.node.settings.parameters[name] = value
        return {"was": was, "ok": 1.0}

    async def get_cmd_line_opts(self, conn: Connection, db: str, body: Document) -> Document:
        parsed: Document = {}
        for path, value in self.node.settings.parsed.items():
            if path == "setParameter" and not value:
                continue
            node = parsed
            parts = path.split(".")
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = value
        return {"argv": ["mongod", *self.node.settings.argv], "parsed": parsed, "ok": 1.0}

    async def server_status(self, conn: Connection, db: str, body: Document) -> Document:
        uptime = self.node.uptime()
        reply: Document = {
            "host": self.node.hostname,
            "version": config.VERSION,
            "process": "mongod",
            "pid": Int64(os.getpid()),
            "uptime": float(int(uptime)),
            "uptimeMillis": Int64(int(uptime * 1000)),
            "localTime": datetime.datetime.now(UTC),
            "connections": {
                "current": self.node.open_connections,
                "available": 51200 - self.node.open_connections,
                "totalCreated": self.node.total_connections,
            },
        }
        if self.node.repl is not None:
            reply["repl"] = self.node.hello_fields(legacy=False)
        reply["ok"] = 1.0
        return reply

    async def log_rotate(self, conn: Connection, db: str, body: Document) -> Document:
        self.node.log.rotate()
        return {"ok": 1.0}

    async def fsync(self, conn: Connection, db: str, body: Document) -> Document:
        if db != "admin":
            raise MongoError(13, "fsync may only be run against the admin database.")
        if not body.get("lock"):
            return {"numFiles": 1, "ok": 1.0}
        count = self.node.fsync_lock(+1)
        self.node.log.info("COMMAND", 20461, "conn", "Lock count is now", lockCount=count)
        return {
            "info": "now locked against writes, use db.fsyncUnlock() to unlock",
            "lockCount": Int64(count),
            "seeAlso": "http://dochub.mongodb.org/core/fsynccommand",
            "ok": 1.0,
        }

    async def fsync_unlock(self, conn: Connection, db: str, body: Document) -> Document:
        if db != "admin":
            raise MongoError(13, "fsyncUnlock may only be run against the admin database.")
        if not self.node.fsync_locks:
            raise MongoError(125, "fsyncUnlock called when not locked")
        count = self.node.fsync_lock(-1)
        return {"info": "fsyncUnlock completed", "lockCount": Int64(count), "ok": 1.0}

    async def shutdown(self, conn: Connection, db: str, body: Document) -> Document:
        if db != "admin":
            raise MongoError(13, "shutdown must run from admin db")
        force = bool(body.get("force"))
        if self.node.repl is not None and self.node.repl.is_writable_primary() and not force:
            timeout = float(body.get("timeoutSecs", 15))
            await self.node.repl.step_down_for_shutdown(timeout)
        self.node.request_shutdown("shutdown command")
        raise CloseConnection()

    # Authentication

    def _sasl_start(self, conn: Connection, db: str, body: Document) -> Document:
        mechanism = str(body.get("mechanism", ""))
        enabled = str(self.node.settings.parameter("authenticationMechanisms")).split(",")
        if mechanism not in auth.MECHANISMS or mechanism not in enabled:
            raise MongoError(
                334, f"Received authentication for mechanism {mechanism} which is not enabled"
            )
        payload = body.get("payload", b"")
        raw = payload.data if isinstance(payload, Binary) else bytes(payload)
        bare = raw.decode(errors="replace").split(",", 2)[-1]
        user = next((p[2:] for p in bare.split(",") if p.startswith("n=")), "")
        user = user.replace("=2C", ",").replace("=3D", "=")
        credentials = self.node.credentials_for(user, db, mechanism)
        options = body.get("options") or {}
        conversation = auth.ScramConversation(
            mechanism, user, db, credentials, bool(options.get("skipEmptyExchange"))
        )
        reply_payload = conversation.start(raw)
        conversation_id = conn.next_conversation
        conn.next_conversation += 1
        conn.conversations = {conversation_id: conversation}
        return {
            "conversationId": conversation_id,
            "done": False,
            "payload": Binary(0, reply_payload),
        }

    def _log_access(self, conn: Connection, log_id: int, message: str, **attr: Any) -> None:
        self.node.log.info("ACCESS", log_id, f"conn{conn.conn_id}", message, **attr)

    async def sasl_start(self, conn: Connection, db: str, body: Document) -> Document:
        try:
            reply = self._sasl_start(conn, db, body)
        except MongoError as exc:
            if exc.code == 18:
                self._log_access(
                    conn,
                    5286307,
                    "Failed to authenticate",
                    mechanism=body.get("mechanism"),
                    db=db,
                    error=exc.errmsg,
                )
            raise
        return {**reply, "ok": 1.0}

    async def sasl_continue(self, conn: Connection, db: str, body: Document) -> Document:
        conversation = conn.conversations.get(int(body.get("conversationId", 0)))
        if conversation is None or conversation.db != db:
            raise MongoError(17, "No SASL session state found")
        payload = body.get("payload", b"")
        raw = payload.data if isinstance(payload, Binary) else bytes(payload)
        try:
            reply_payload, done = conversation.proceed(raw)
        except MongoError:
            conn.conversations.clear()
            self._log_access(
                conn,
                5286307,
                "Failed to authenticate",
                mechanism=conversation.mechanism,
                user=conversation.user,
                db=db,
            )
            raise
        if conversation.step >= 2:
            principal = (conversation.user, conversation.db)
            if principal not in conn.principals:
                conn.principals.append(principal)
            if done:
                conn.conversations.clear()
                self._log_access(
                    conn,
                    5286306,
                    "Successfully authenticated",
                    user=conversation.user,
                    db=db,
                    mechanism=conversation.mechanism,
                )
        return {
            "conversationId": body.get("conversationId"),
            "done": done,
            "payload": Binary(0, reply_payload),
            "ok": 1.0,
        }

    # User management (users live in admin.system.users and replicate like any data)

    def _resolve_roles(self, db: str, roles: Any) -> list[Document]:
        out = []
        for role, rdb in _role_dbs(db, roles):
            if not auth.role_exists(role, rdb):
                raise MongoError(31, f"Could not find role: {role}@{rdb}")
            out.append({"role": role, "db": rdb})
        return out

    def _user(self, name: Any, db: str) -> Document:
        doc = self.node.storage.find_by_id("admin", "system.users", f"{db}.{name}")
        if doc is None:
            raise MongoError(11, f'Could not find user "{name}@{db}"')
        return doc

    def _mechanisms(self, body: Document) -> list[str]:
        enabled = [
            m
            for m in auth.MECHANISMS
            if m in str(self.node.settings.parameter("authenticationMechanisms"))
        ]
        requested = body.get("mechanisms") or enabled
        for mechanism in requested:
            if mechanism not in enabled:
                raise MongoError(2, f"Unknown auth mechanism '{mechanism}'")
        return list(requested)

    def _credentials(self, user: str, password: Any, mechanisms: list[str]) -> Document:
        if not isinstance(password, str) or not password:
            raise MongoError(2, "Password cannot be empty")
        iterations = {
            "SCRAM-SHA-1": int(self.node.settings.parameter("scramIterationCount")),
            "SCRAM-SHA-256": int(self.node.settings.parameter("scramSHA256IterationCount")),
        }
        return auth.make_credentials(user, password, mechanisms, iterations)

    async def create_user(self, conn: Connection, db: str, body: Document) -> Document:
        name = body["createUser"]
        if not isinstance(name, str) or not name:
            raise MongoError(2, "User name must be a non-empty string")
        if db == "local":
            raise MongoError(2, "Cannot create users in the local database")
        if "roles" not in body:
            raise MongoError(2, '"createUser" command requires a "roles" array')
        if self.node.storage.find_by_id("admin", "system.users", f"{db}.{name}") is not None:
            raise MongoError(51003, f'User "{name}@{db}" already exists')
        roles = self._resolve_roles(db, body["roles"])
        doc: Document = {
            "_id": f"{db}.{name}",
            "userId": Binary(4, uuid.uuid4().bytes),
            "user": name,
            "db": db,
        }
        if db != "$external":
            if "pwd" not in body:
                raise MongoError(
                    2,
                    "Must provide a 'pwd' field for all user documents, except "
                    "those with '$external' as the user's source db",
                )
            doc["credentials"] = self._credentials(name, body["pwd"], self._mechanisms(body))
        doc["roles"] = roles
        if "customData" in body:
            doc["customData"] = body["customData"]
        self._insert_doc("admin", "system.users", doc)
        return await self._user_written(body)

    async def update_user(self, conn: Connection, db: str, body: Document) -> Document:
        name = body["updateUser"]
        doc = dict(self._user(name, db))
        if "pwd" in body:
            doc["credentials"] = self._credentials(name, body["pwd"], self._mechanisms(body))
        if "roles" in body:
            doc["roles"] = self._resolve_roles(db, body["roles"])
        if "customData" in body:
            doc["customData"] = body["customData"]
        self._replace_doc("admin", "system.users", doc)
        return await self._user_written(body)

    async def drop_user(self, conn: Connection, db: str, body: Document) -> Document:
        doc = self._user(body["dropUser"], db)
        self._delete_doc("admin", "system.users", doc["_id"])
        return await self._user_written(body)

    async def drop_all_users(self, conn: Connection, db: str, body: Document) -> Document:
        return await self._drop_all_defined_in(db, "system.users", body)

    async def drop_all_roles(self, conn: Connection, db: str, body: Document) -> Document:
        return await self._drop_all_defined_in(db, "system.roles", body)

    async def _drop_all_defined_in(self, db: str, coll: str, body: Document) -> Document:
        """Delete the users (or roles) defined in `db`: {n: how many, ok: 1}."""
        defined = [d for d in self.node.storage.documents("admin", coll) if d.get("db") == db]
        for doc in defined:
            self._delete_doc("admin", coll, doc["_id"])
        return await self._acknowledge(body, {"n": len(defined), "ok": 1.0}, {"w": "majority"})

    async def grant_roles(self, conn: Connection, db: str, body: Document) -> Document:
        doc = dict(self._user(body["grantRolesToUser"], db))
        roles = list(doc.get("roles", []))
        for role in self._resolve_roles(db, body.get("roles")):
            if role not in roles:
                roles.append(role)
        doc["roles"] = roles
        self._replace_doc("admin", "system.users", doc)
        return await self._user_written(body)

    async def revoke_roles(self, conn: Connection, db: str, body: Document) -> Document:
        doc = dict(self._user(body["revokeRolesFromUser"], db))
        revoked = self._resolve_roles(db, body.get("roles"))
        doc["roles"] = [r for r in doc.get("roles", []) if r not in revoked]
        self._replace_doc("admin", "system.users", doc)
        return await self._user_written(body)

    async def users_info(self, conn: Connection, db: str, body: Document) -> Document:
        target = body["usersInfo"]
        users = self.node.storage.documents("admin", "system.users")
        wanted: list[tuple[str, str]] | None = None
        if isinstance(target, str):
            wanted = [(target, db)]
        elif isinstance(target, dict):
            wanted = [(str(target.get("user")), str(target.get("db")))]
        elif isinstance(target, list):
            wanted = [
                (t, db) if isinstance(t, str) else (str(t.get("user")), str(t.get("db")))
                for t in target
            ]
        if wanted is None:
            selected = [u for u in users if u["db"] == db]
        else:
            selected = [u for u in users if (u["user"], u["db"]) in wanted]
        out = []
        for user in sorted(selected, key=lambda u: u["_id"]):
            entry = {k: user[k] for k in ("_id", "userId", "user", "db") if k in user}
            if "customData" in user:
                entry["customData"] = user["customData"]
            entry["roles"] = user.get("roles", [])
            if body.get("showCredentials"):
                entry["credentials"] = user.get("credentials", {})
            entry["mechanisms"] = list(user.get("credentials", {}))
            out.append(entry)
        return {"users": out, "ok": 1.0}

    async def roles_info(self, conn: Connection, db: str, body: Document) -> Document:
        target = body["rolesInfo"]
        show = bool(body.get("showPrivileges"))
        if target == 1 or target is True:
            names = list(auth.DB_ROLES)
            if db == "admin":
                names += [r for r in auth.ADMIN_ONLY_ROLES if r != "__system"]
            roles = [auth.builtin_role_info(r, db, show) for r in names]
            if not body.get("showBuiltinRoles"):
                roles = []
            return {"roles": roles, "ok": 1.0}
        wanted = _role_dbs(db, target if isinstance(target, list) else [target])
        roles = [
            auth.builtin_role_info(r, rdb, show) for r, rdb in wanted if auth.role_exists(r, rdb)
        ]
        return {"roles": roles, "ok": 1.0}

    # mongorestore's merge of dumped users and roles (user_management_commands.cpp)

    async def merge_authz_collections(self, conn: Connection, db: str, body: Document) -> Document:
        """Move the users and roles mongorestore put in temporary collections into
        admin.system.users / admin.system.roles, through the writes of the other user-management
        commands (so they replicate like createUser's). Documents are taken as they are: the
        stored SCRAM keys keep working, nothing is hashed again."""
        _admin_only(MERGE_AUTHZ, db)
        request = _parse_merge_authz(body)
        if not request.users and not request.roles:
            raise MongoError(
                2,
                'Must provide at least one of "tempUsersCollection" and "tempRolescollection"',
            )
        if request.users:
            self._merge_authz(conn, request, request.users, "system.users", "user")
        if request.roles:
            self._merge_authz(conn, request, request.roles, "system.roles", "role")
        return await self._user_written(body)

    def _merge_authz(
        self, conn: Connection, request: MergeAuthzRequest, source: str, target: str, field: str
    ) -> None:
        """mongod's _processUsers/_processRoles. With drop, a user (role) already defined (in
        `request.db`, or anywhere when it is "") is replaced by the temporary collection's
        document of the same name, and the ones the temporary collection lacks are removed
        afterwards (never all of them first). Without drop each document is inserted, and one
        whose _id exists already is left as it is, with a warning (mongod carries on past
        failed inserts, as mongorestore does)."""
        storage = self.node.storage
        to_drop: dict[tuple[str, str], Document] = {}
        if request.drop:
            for doc in storage.documents("admin", target):
                name = _authz_name(doc, field)
                if not request.db or name[1] == request.db:
                    to_drop[name] = doc
        source_db, _, source_coll = source.partition(".")
        for doc in storage.documents(source_db, source_coll):
            name = _authz_name(doc, field)
            if request.db and name[1] != request.db:
                continue
            current = to_drop.pop(name, None)
            if current is not None and current["_id"] != doc.get("_id"):
                error = (
                    "Performing an update on the path '_id' would modify the immutable field '_id'"
                )
                self._merge_warning(conn, field, name, "update", error)
            elif current is not None:
                self._replace_doc("admin", target, dict(doc))
            elif storage.find_by_id("admin", target, doc.get("_id")) is not None:
                error = (
                    f"E11000 duplicate key error collection: admin.{target} index: _id_ "
                    f"dup key: {{ _id: {shell_repr(doc.get('_id'))} }}"
                )
                self._merge_warning(conn, field, name, "insert", error)
            else:
                self._insert_doc("admin", target, dict(doc))
        for doc in to_drop.values():
            self._delete_doc("admin", target, doc["_id"])

    def _merge_warning(
        self, conn: Connection, field: str, name: tuple[str, str], verb: str, error: str
    ) -> None:
        # mongod's ids: 20510/20511 (update/insert of a user), 20512/20513 (of a role)
        log_id = 20510 + (verb == "insert") + (2 if field == "role" else 0)
        self.node.log.warning(
            "ACCESS",
            log_id,
            f"conn{conn.conn_id}",
            f"Could not {verb} {field} during {MERGE_AUTHZ} command",
            **{field: f"{name[0]}@{name[1]}", "error": error},
        )

    # Data plane

    async def insert(self, conn: Connection, db: str, body: Document) -> Document:
        coll = _coll(db, body)
        docs = body.get("documents") or []
        ordered = body.get("ordered", True)
        errors = []
        n = 0
        for index, doc in enumerate(docs):
            if self._executed(index) is not None:  # a retry: statement already executed
                n += 1
                continue
            if "_id" not in doc:
                doc = {"_id": ObjectId(), **doc}
            if self.node.storage.find_by_id(db, coll, doc["_id"]) is not None:
                errors.append(
                    {
                        "index": index,
                        "code": 11000,
                        "errmsg": f"E11000 duplicate key error collection: {db}.{coll} index: _id_ "
                        f"dup key: {{ _id: {shell_repr(doc['_id'])} }}",
                        "keyPattern": {"_id": 1},
                        "keyValue": {"_id": doc["_id"]},
                    }
                )
                if ordered:
                    break
                continue
            self._insert_doc(db, coll, doc, index)
            n += 1
        return await self._write_reply(body, {"n": n}, "writeErrors", errors)

    async def update(self, conn: Connection, db: str, body: Document) -> Document:
        coll = _coll(db, body)
        n = modified = 0
        upserted = []
        for index, spec in enumerate(body.get("updates") or []):
            update = spec.get("u")
            if not isinstance(update, dict):
                raise MongoError(9, "pipeline-style updates are not supported by this server")
            multi = bool(spec.get("multi"))
            done = None if multi else self._executed(index)
            if done is not None:  # a retry: answer with what the statement did
                n += 1
                if done["op"] == "i":
                    upserted.append({"index": index, "_id": done["_id"]})
                else:
                    modified += 1
                continue
            stmt = None if multi else index  # multi-updates are not retryable statements
            filter_ = spec.get("q") or {}
            targets = self._select(db, coll, filter_)
            if not spec.get("multi"):
                targets = targets[:1]
            elif not query.is_operator_update(update):
                raise MongoError(9, "multi update is not supported for replacement-style update")
            for doc in targets:
                new = query.apply_update(doc, update)
                n += 1
                if new != doc:
                    modified += 1
                    self._replace_doc(db, coll, new, stmt)
            if not targets and spec.get("upsert"):
                seed = query.upsert_seed(filter_)
                new = query.apply_update(seed, update, inserting=True)
                if "_id" not in new:
                    new = {"_id": ObjectId(), **new}
                self._insert_doc(db, coll, new, stmt)
                n += 1
                upserted.append({"index": index, "_id": new["_id"]})
        return await self._write_reply(body, {"n": n, "nModified": modified}, "upserted", upserted)

    async def delete(self, conn: Connection, db: str, body: Document) -> Document:
        coll = _coll(db, body)
        n = 0
        for index, spec in enumerate(body.get("deletes") or []):
            single = spec.get("limit", 0) == 1
            if single and self._executed(index) is not None:  # a retry
                n += 1
                continue
            targets = self._select(db, coll, spec.get("q"))
            if spec.get("limit", 0) == 1:
                targets = targets[:1]
            for doc in targets:
                self._delete_doc(db, coll, doc["_id"], index if single else None)
                n += 1
        return await self._acknowledge(body, {"n": n, "ok": 1.0})

    async def _write_reply(
        self, body: Document, counts: Document, key: str, entries: list[Document]
    ) -> Document:
        """A CRUD write's reply: the counts, `key` with `entries` if there are any, then ok."""
        reply = {**counts, key: entries} if entries else dict(counts)
        reply["ok"] = 1.0
        return await self._acknowledge(body, reply)

    def _select(self, db: str, coll: str, filter_: Document | None) -> list[Document]:
        """The documents a filter matches; by the `_id` index when it pins `_id` values."""
        filter_ = filter_ or {}
        ids = query.id_values(filter_)
        if db == "local" and coll == "oplog.rs" and self.node.repl is not None:
            source = list(self.node.repl.oplog)  # read-only view of the replication oplog
        elif ids is not None:
            found = (self.node.storage.find_by_id(db, coll, value) for value in ids)
            source = [doc for doc in found if doc is not None]
        else:
            source = self.node.storage.documents(db, coll)
        return [d for d in source if query.matches(d, filter_)]

    def _cursor_reply(
        self,
        ns: str,
        docs: list[Document],
        batch_size: int | None,
        single_batch: bool,
        key: str = "firstBatch",
    ) -> Document:
        first, rest = _batch(docs, DEFAULT_BATCH if batch_size is None else batch_size)
        cursor_id = 0
        if rest and not single_batch:
            cursor_id = int.from_bytes(os.urandom(7), "big") or 1
            self.cursors[cursor_id] = (ns, rest)
        return {"cursor": {key: first, "id": Int64(cursor_id), "ns": ns}, "ok": 1.0}

    async def find(self, conn: Connection, db: str, body: Document) -> Document:
        coll = _coll(db, body)
        docs = query.sort_documents(self._select(db, coll, body.get("filter")), body.get("sort"))
        skip = int(body.get("skip", 0))
        limit = int(body.get("limit", 0))
        docs = docs[skip:]
        single = bool(body.get("singleBatch")) or limit < 0
        if limit:
            docs = docs[: abs(limit)]
        docs = [query.project(d, body.get("projection")) for d in docs]
        batch = body.get("batchSize")
        return self._cursor_reply(
            f"{db}.{coll}", docs, None if batch is None else int(batch), single
        )

    async def get_more(self, conn: Connection, db: str, body: Document) -> Document:
        cursor_id = int(body["getMore"])
        entry = self.cursors.pop(cursor_id, None)
        if entry is None:
            raise MongoError(43, f"cursor id {cursor_id} not found")
        ns, docs = entry
        batch = body.get("batchSize")
        first, rest = _batch(docs, len(docs) if batch is None else int(batch))
        if rest:
            self.cursors[cursor_id] = (ns, rest)
        return {
            "cursor": {"nextBatch": first, "id": Int64(cursor_id if rest else 0), "ns": ns},
            "ok": 1.0,
        }

    async def kill_cursors(self, conn: Connection, db: str, body: Document) -> Document:
        killed, missing = [], []
        for cursor_id in body.get("cursors") or []:
            (killed if self.cursors.pop(int(cursor_id), None) else missing).append(cursor_id)
        return {
            "cursorsKilled": killed,
            "cursorsNotFound": missing,
            "cursorsAlive": [],
            "cursorsUnknown": [],
            "ok": 1.0,
        }

    async def count(self, conn: Connection, db: str, body: Document) -> Document:
        docs = self._select(db, _coll(db, body), body.get("query"))
        docs = docs[int(body.get("skip", 0)) :]
        if body.get("limit"):
            docs = docs[: abs(int(body["limit"]))]
        return {"n": len(docs), "ok": 1.0}

    async def aggregate(self, conn: Connection, db: str, body: Document) -> Document:
        target = body["aggregate"]
        docs = self._select(db, target, None) if isinstance(target, str) else []
        for stage in body.get("pipeline") or []:
            name, arg = next(iter(stage.items()))
            if name == "$match":
                docs = [d for d in docs if query.matches(d, arg)]
            elif name == "$skip":
                docs = docs[int(arg) :]
            elif name == "$limit":
                docs = docs[: int(arg)]
            elif name == "$sort":
                docs = query.sort_documents(docs, arg)
            elif (
                name == "$group"
                and all(v == {"$sum": 1} for k, v in arg.items() if k != "_id")
                and not isinstance(arg.get("_id"), str | dict)
            ):
                counts = {k: len(docs) for k in arg if k != "_id"}
                docs = [{"_id": arg.get("_id"), **counts}] if docs else []
            else:
                raise MongoError(
                    2,
                    f"aggregation stage {name} is not supported by this server; supported: "
                    "$match, $skip, $limit, $sort, $group counting with {$sum: 1}",
                )
        ns = f"{db}.{target}" if isinstance(target, str) else f"{db}.$cmd.aggregate"
        batch = (body.get("cursor") or {}).get("batchSize")
        return self._cursor_reply(ns, docs, None if batch is None else int(batch), False)

    async def list_databases(self, conn: Connection, db: str, body: Document) -> Document:
        if db != "admin":
            raise MongoError(13, "listDatabases may only be run against the admin database.")
        names = self.node.storage.database_names()
        if self.node.settings.authorization:
            principals = self.principal_objects(conn)
            if not conn.principals and not self._localhost_exception(conn):
                raise unauthorized("Command listDatabases requires authentication")
            if not auth.is_authorized(principals, ("cluster",), {"listDatabases"}):
                if not principals or body.get("authorizedDatabases") is False:
                    raise unauthorized(
                        f"not authorized on admin to execute command {_render_command(body)}"
                    )
                names = [n for n in names if auth.is_authorized(principals, ("db", n), {"find"})]
        entries = []
        for name in names:
            size = self.node.storage.size_on_disk(name)
            entries.append({"name": name, "sizeOnDisk": Int64(size), "empty": size == 0})
        if body.get("filter"):
            entries = [e for e in entries if query.matches(e, body["filter"])]
        if body.get("nameOnly"):
            return {"databases": [{"name": e["name"]} for e in entries], "ok": 1.0}
        total = sum(int(e["sizeOnDisk"]) for e in entries)
        return {
            "databases": entries,
            "totalSize": Int64(total),
            "totalSizeMb": Int64(total // (1024 * 1024)),
            "ok": 1.0,
        }

    async def list_collections(self, conn: Connection, db: str, body: Document) -> Document:
        entries = []
        for name in self.node.storage.collection_names(db):
            entries.append(
                {
                    "name": name,
                    "type": "collection",
                    "options": {},
                    "info": {"readOnly": False},
                    "idIndex": {"v": 2, "key": {"_id": 1}, "name": "_id_"},
                }
            )
        if body.get("filter"):
            entries = [e for e in entries if query.matches(e, body["filter"])]
        if body.get("nameOnly"):
            entries = [{"name": e["name"], "type": e["type"]} for e in entries]
        batch = (body.get("cursor") or {}).get("batchSize")
        return self._cursor_reply(
            f"{db}.$cmd.listCollections", entries, None if batch is None else int(batch), False
        )

    async def list_indexes(self, conn: Connection, db: str, body: Document) -> Document:
        coll = _coll(db, body)
        collection = self.node.storage.collection(db, coll)
        if collection is None:
            raise MongoError(26, f"ns does not exist: {db}.{coll}")
        return self._cursor_reply(
            f"{db}.$cmd.listIndexes.{coll}", list(collection.indexes), None, False
        )

    async def db_stats(self, conn: Connection, db: str, body: Document) -> Document:
        colls = self.node.storage.collection_names(db)
        objects = sum(len(self.node.storage.documents(db, c)) for c in colls)
        size = self.node.storage.size_on_disk(db)
        return {
            "db": db,
            "collections": len(colls),
            "objects": objects,
            "dataSize": float(size),
            "storageSize": float(size),
            "ok": 1.0,
        }

    async def create(self, conn: Connection, db: str, body: Document) -> Document:
        coll = _coll(db, body)
        if not self.node.storage.create_collection(db, coll):
            raise MongoError(48, f"Collection {db}.{coll} already exists.")
        self._record("c", f"{db}.$cmd", {"create": coll})
        return await self._acknowledge(body, {"ok": 1.0})

    async def create_indexes(self, conn: Connection, db: str, body: Document) -> Document:
        coll = _coll(db, body)
        existed = self.node.storage.collection(db, coll) is not None
        before = len(self.node.storage.collection(db, coll).indexes) if existed else 1
        if not existed:
            self.node.storage.create_collection(db, coll)
            self._record("c", f"{db}.$cmd", {"create": coll})
        for spec in body.get("indexes") or []:
            if "key" not in spec or "name" not in spec:
                raise MongoError(9, "index specification must have 'key' and 'name'")
            full = {"v": 2, **spec}
            if self.node.storage.add_index(db, coll, full):
                self._record("c", f"{db}.$cmd", {"createIndexes": coll, **full})
        after = len(self.node.storage.collection(db, coll).indexes)
        return await self._acknowledge(
            body,
            {
                "numIndexesBefore": before,
                "numIndexesAfter": after,
                "createdCollectionAutomatically": not existed,
                "ok": 1.0,
            },
        )

    async def drop(self, conn: Connection, db: str, body: Document) -> Document:
        coll = _coll(db, body)
        collection = self.node.storage.collection(db, coll)
        indexes = len(collection.indexes) if collection else 0
        if self.node.storage.drop_collection(db, coll):
            self._record("c", f"{db}.$cmd", {"drop": coll})
        return await self._acknowledge(
            body, {"nIndexesWas": indexes, "ns": f"{db}.{coll}", "ok": 1.0}
        )

    async def drop_database(self, conn: Connection, db: str, body: Document) -> Document:
        if db in ("local", "admin", "config") and self.node.repl is not None:
            raise MongoError(20, f"Cannot drop '{db}' database while replication is active")
        self.node.storage.drop_database(db)
        self._record("c", f"{db}.$cmd", {"dropDatabase": 1})
        return await self._acknowledge(body, {"dropped": db, "ok": 1.0})
