"""Replica set: config validation, member states, heartbeats, elections, oplog replication.

Members talk to each other over the wire protocol and authenticate as `__system@local` with the
keyFile, so a member with a different keyFile is unreachable for the others, as with mongod.
Secondaries pull the oplog from the primary (no chaining) and apply it after a configurable delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime
import itertools
import os
import random
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import bson_codec
from .auth import ScramClient
from .bson_codec import UTC, Binary, Document, Int64, ObjectId, Timestamp
from .errors import MongoError
from .storage import add_txn_statement, id_key
from .wire import CommandError, ProtocolError, WireClient

if TYPE_CHECKING:
    from .server import Node

STARTUP, PRIMARY, SECONDARY, RECOVERING, STARTUP2, UNKNOWN, ARBITER, DOWN, ROLLBACK, REMOVED = (
    0,
    1,
    2,
    3,
    5,
    6,
    7,
    8,
    9,
    10,
)
STATE_NAMES = {
    STARTUP: "STARTUP",
    PRIMARY: "PRIMARY",
    SECONDARY: "SECONDARY",
    RECOVERING: "RECOVERING",
    STARTUP2: "STARTUP2",
    UNKNOWN: "UNKNOWN",
    ARBITER: "ARBITER",
    DOWN: "(not reachable/healthy)",
    ROLLBACK: "ROLLBACK",
    REMOVED: "REMOVED",
}
DEFAULT_SETTINGS: Document = {
    "chainingAllowed": True,
    "heartbeatIntervalMillis": 2000,
    "heartbeatTimeoutSecs": 10,
    "electionTimeoutMillis": 10000,
    "catchUpTimeoutMillis": -1,
    "catchUpTakeoverDelayMillis": 30000,
    "getLastErrorModes": {},
    "getLastErrorDefaults": {"w": 1, "wtimeout": 0},
}
MEMBER_FIELDS = (
    "_id",
    "host",
    "arbiterOnly",
    "buildIndexes",
    "hidden",
    "priority",
    "tags",
    "secondaryDelaySecs",
    "votes",
    "horizons",
    "newlyAdded",
)
CONFIG_FIELDS = (
    "_id",
    "version",
    "term",
    "members",
    "protocolVersion",
    "writeConcernMajorityJournalDefault",
    "settings",
    "configsvr",
)
ZERO_TS = Timestamp(0, 0)
# Bound of the isSelf slow path (connect + `_isSelf`) for one host.
IS_SELF_TIMEOUT = 2.0
# Bound of one oplog fetch round trip (the source holds an empty answer up to maxAwaitMillis).
OPLOG_FETCH_TIMEOUT = 5.0
# A sync source whose oplog fetch failed is passed over for this long when another member can serve
# (mongod denylists a failed sync source for a while and chooses again).
SYNC_SOURCE_DENYLIST_S = 10.0
OPLOG_FETCH_AWAIT_MILLIS = 500
INITIAL_SYNC_TIMEOUT = 60.0


@dataclass(frozen=True, order=True)
class OpTime:
    """Compared by term first, then timestamp, as mongod does."""

    t: int
    ts: Timestamp

    def doc(self) -> Document:
        return {"ts": self.ts, "t": Int64(self.t)}

    @classmethod
    def from_doc(cls, doc: Document | None) -> OpTime:
        if not doc:
            return NULL_OPTIME
        return cls(int(doc.get("t", -1)), doc.get("ts", ZERO_TS))

    def wall(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.ts.time, UTC)


NULL_OPTIME = OpTime(-1, ZERO_TS)
# How far back (oplog entries) a rollback looks for the common point.
ROLLBACK_MAX_ENTRIES = 10_000
_removed_file_numbers = itertools.count()


def _document_ref(entry: Document) -> Document | None:
    """{ns, _id} of the document a CRUD oplog entry touches; None for other entries."""
    op = entry.get("op")
    if op not in ("i", "u", "d") or not entry.get("ns"):
        return None
    target = entry.get("o2") if op == "u" and entry.get("o2") else entry.get("o")
    if not isinstance(target, dict) or "_id" not in target:
        return None
    return {"ns": entry["ns"], "_id": target["_id"]}


@dataclass
class MemberView:
    """What this node knows about another member from heartbeats and oplog fetches."""

    health: float = 0.0
    state: int = STARTUP
    message: str = ""
    last_heartbeat: datetime.datetime | None = None
    last_heartbeat_recv: datetime.datetime | None = None
    ping_ms: int = 0
    up_since: float | None = None
    applied: OpTime = NULL_OPTIME
    config_version: int | None = None
    config_term: int | None = None
    election_time: Timestamp | None = None
    term: int = -1
    # time.monotonic() at which the last heartbeat that this member answered was sent
    last_ok: float = 0.0
    # time.monotonic() at which this member last reported its progress to this node (its oplog
    # fetch, which stands for mongod's replSetUpdatePosition and its keep-alive)
    last_position: float = 0.0


def split_host(host: str) -> tuple[str, int]:
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        return name, int(rest[1:]) if rest.startswith(":") else 27017
    name, sep, port = host.rpartition(":")
    if not sep:
        return host, 27017
    return name, int(port)


def is_localhost_reference(host: str) -> bool:
    name = split_host(host)[0]
    return name == "localhost" or name.startswith("127.") or name == "::1"


def _address_is_local(address: str) -> bool:
    """Whether an address belongs to this machine: binding to it succeeds only if it does."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((address, 0))
        except OSError:
            return False
    return True


def _bad(message: str) -> MongoError:
    return MongoError(93, message)


def _version_term(cfg: Document) -> str:
    return f"{{version: {cfg['version']}, term: {cfg['term']}}}"


def _no_self(cfg: Document, set_name: str) -> MongoError:
    return _bad(
        f"No host described in new configuration with {_version_term(cfg)} for "
        f"replica set {set_name} maps to this node"
    )


def _not_electable(me: Document, cfg: Document, set_name: str) -> MongoError:
    return _bad(
        f"This node, {me['host']}, with _id {me['_id']} is not "
        f"electable under the new configuration with {_version_term(cfg)} for "
        f"replica set {set_name}"
    )


def normalize_config(raw: Any, set_name: str | None) -> Document:
    """Validate a replica set config document and fill in every default, or raise 93."""
    if not isinstance(raw, dict):
        raise _bad("replica set configuration must be an object")
    for key in raw:
        if key not in CONFIG_FIELDS:
            raise _bad(f"Unexpected field {key} in replica set configuration")
    if not isinstance(raw.get("_id"), str) or not raw["_id"]:
        raise _bad('Missing expected field "_id"')
    members = raw.get("members")
    if not isinstance(members, list) or not members:
        raise _bad("Replica set configuration must contain at least one member")
    settings = dict(DEFAULT_SETTINGS)
    for key, value in (raw.get("settings") or {}).items():
        if key not in DEFAULT_SETTINGS and key != "replicaSetId":
            raise _bad(f"Unexpected field {key} in replica set settings")
        settings[key] = value
    cfg: Document = {
        "_id": raw["_id"],
        "version": int(raw.get("version", 1)),
        "term": int(raw.get("term", 0)),
        "members": [],
        "protocolVersion": Int64(int(raw.get("protocolVersion", 1))),
        "writeConcernMajorityJournalDefault": bool(
            raw.get("writeConcernMajorityJournalDefault", True)
        ),
        "settings": settings,
    }
    if cfg["protocolVersion"] != 1:
        raise _bad("Support for replication protocol version 0 was removed in MongoDB 4.0")
    if cfg["version"] < 1:
        raise _bad(f"version field value of {cfg['version']} is out of range")
    seen_ids: dict[int, int] = {}
    seen_hosts: dict[str, int] = {}
    for index, member in enumerate(members):
        if not isinstance(member, dict):
            raise _bad("members must be objects")
        for key in member:
            if key not in MEMBER_FIELDS:
                raise _bad(f"Unexpected field {key} in replica set member configuration")
        if "_id" not in member or "host" not in member:
            raise _bad(f'Missing expected field "{"_id" if "_id" not in member else "host"}"')
        member_id = int(member["_id"])
        host = str(member["host"])
        if member_id in seen_ids:
            raise _bad(
                f"Found two member configurations with same _id field, "
                f"members.{seen_ids[member_id]}._id == members.{index}._id == {member_id}"
            )
        if host in seen_hosts:
            raise _bad(
                f"Found two member configurations with same host field, "
                f"members.{seen_hosts[host]}.host == members.{index}.host == {host}"
            )
        seen_ids[member_id] = index
        seen_hosts[host] = index
        arbiter = bool(member.get("arbiterOnly", False))
        priority = float(member.get("priority", 0.0 if arbiter else 1.0))
        votes = int(member.get("votes", 1))
        hidden = bool(member.get("hidden", False))
        delay = int(member.get("secondaryDelaySecs", 0))
        if not 0 <= priority <= 1000:
            raise _bad(f"priority must be between 0 and 1000 inclusive for member {host}")
        if votes not in (0, 1):
            raise _bad(f"votes must be 0 or 1 for member {host}")
        if arbiter and priority != 0:
            raise _bad(f"priority must be 0 when arbiterOnly=true for member {host}")
        if arbiter and votes != 1:
            raise _bad(f"arbiter must vote (cannot have 0 votes) for member {host}")
        if votes == 0 and priority != 0:
            raise _bad(f"priority must be 0 when non-voting (votes:0) for member {host}")
        if hidden and priority != 0:
            raise _bad(f"priority must be 0 when hidden=true for member {host}")
        if delay and priority != 0:
            raise _bad(f"priority must be 0 when secondaryDelaySecs is used for member {host}")
        out: Document = {
            "_id": member_id,
            "host": host,
            "arbiterOnly": arbiter,
            "buildIndexes": bool(member.get("buildIndexes", True)),
            "hidden": hidden,
            "priority": priority,
            "tags": dict(member.get("tags") or {}),
            "secondaryDelaySecs": Int64(delay),
            "votes": votes,
        }
        if member.get("horizons"):
            out["horizons"] = dict(member["horizons"])
        if member.get("newlyAdded"):
            out["newlyAdded"] = True
        cfg["members"].append(out)
    local = sum(1 for m in cfg["members"] if is_localhost_reference(m["host"]))
    if 0 < local < len(cfg["members"]):
        raise _bad(
            "Either all host names in a replica set configuration must be localhost references, "
            f"or none must be; found {local} out of {len(cfg['members'])}"
        )
    voters = sum(m["votes"] for m in cfg["members"])
    if not 1 <= voters <= 7:
        raise _bad(
            f"Replica set configuration contains {voters} voting members, but must be at least 1 "
            "and no more than 7"
        )
    if not any(m["priority"] > 0 and not m["arbiterOnly"] for m in cfg["members"]):
        raise _bad(
            "Replica set configuration must contain at least one non-arbiter member with "
            "priority > 0"
        )
    if len(cfg["members"]) > 50:
        raise _bad("Replica set configuration contains more than 50 members")
    if set_name is not None and cfg["_id"] != set_name:
        raise _bad(
            f"Attempting to initiate a replica set with name {cfg['_id']}, but command line "
            f"reports {set_name}; rejecting"
        )
    return cfg


def _newer(cfg: Document, term: int, version: int) -> bool:
    """Whether `cfg` is newer than (term, version); a force reconfig (term -1) compares versions."""
    if -1 in (cfg["term"], term):
        return bool(cfg["version"] > version)
    return bool((cfg["term"], cfg["version"]) > (term, version))


def public_config(cfg: Document) -> Document:
    """replSetGetConfig output: the stored config without internal flags (newlyAdded)."""
    out = copy.deepcopy(cfg)
    for member in out["members"]:
        member.pop("newlyAdded", None)
    return out


def voting(member: Document) -> bool:
    return member["votes"] > 0 and not member.get("newlyAdded")


def electable(member: Document) -> bool:
    return member["priority"] > 0 and not member["arbiterOnly"] and voting(member)


class Replication:
    def __init__(self, node: Node, set_name: str) -> None:
        self.node = node
        self.set_name = set_name
        self.config: Document | None = None
        self.self_id: int | None = None
        self.state = STARTUP
        self.term = 0
        self.voted_for: tuple[int, int] | None = None
        self.oplog: list[Document] = []
        self.last_applied = NULL_OPTIME
        self.commit_point = NULL_OPTIME
        self.members: dict[int, MemberView] = {}
        self.primary_id: int | None = None
        self.election_time: Timestamp | None = None
        self.last_primary_contact = time.monotonic()
        self.frozen_until = 0.0
        self.needs_initial_sync = False
        self.started = time.monotonic()
        self.progress = asyncio.Condition()
        self.new_oplog = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.heartbeat_tasks: dict[int, asyncio.Task[None]] = {}
        self.clients: dict[tuple[str, str], WireClient] = {}
        self._stopping = False
        self._last_takeover_check = 0.0
        self._majority_seen = 0.0
        self._is_self_answers: dict[str, bool] = {}
        # host -> time.monotonic() until which a sync source that failed is passed over
        self._sync_source_denied: dict[str, float] = {}
        self.default_rw: Document | None = None
        # A primary stepping down (shutdown): writes are refused, hello no longer says writable.
        self.stepping_down = False
        # Retryable-write records (mongod's config.transactions): per session, the newest
        # txnNumber and the statements it executed, built from the stamped oplog entries.
        self.txn_records: dict[bytes, Document] = {}

    # Persistence and startup

    def load(self) -> None:
        storage = self.node.storage
        self.oplog = storage.read_oplog()
        for record in storage.read_txn_records():
            self.txn_records[id_key(record["_id"]["id"])] = record
        if self.oplog:
            last = self.oplog[-1]
            self.last_applied = OpTime(int(last["t"]), last["ts"])
        election = storage.find_by_id("local", "replset.election", "election")
        if election is not None:
            self.term = int(election["term"])
            self.voted_for = (int(election["term"]), int(election["candidateIndex"]))
        stored = storage.find_by_id("local", "system.replset", self.set_name)
        if stored is not None:
            cfg = {k: v for k, v in stored.items() if k != "_id"}
            cfg = {"_id": self.set_name, **cfg}
            self.config = cfg

    async def start(self) -> None:
        if self.config is not None:
            await self._install_config(self.config, persist=False)
        loop_tasks = (
            self._election_loop(),
            self._fetch_loop(),
            self._housekeeping_loop(),
            self._noop_writer_loop(),
        )
        self.tasks = [asyncio.create_task(coro) for coro in loop_tasks]

    async def stop(self) -> None:
        self._stopping = True
        for task in [*self.tasks, *self.heartbeat_tasks.values()]:
            task.cancel()
        await asyncio.gather(*self.tasks, *self.heartbeat_tasks.values(), return_exceptions=True)
        for client in self.clients.values():
            client.close()

    def _persist_config(self) -> None:
        assert self.config is not None
        self.node.storage.replace("local", "system.replset", copy.deepcopy(self.config))
        self.node.storage.sync()

    def _persist_term(self) -> None:
        voted = self.voted_for or (self.term, -1)
        self.node.storage.replace(
            "local",
            "replset.election",
            {"_id": "election", "term": Int64(voted[0]), "candidateIndex": Int64(voted[1])},
        )
        self.node.storage.sync()

    def _set_term(self, term: int) -> None:
        if term > self.term:
            self.term = term
            self._persist_term()
            if self.state == PRIMARY:
                self._step_down("a newer term was seen")

    # Small queries

    def settings(self, name: str) -> Any:
        assert self.config is not None
        return self.config["settings"][name]

    def me(self) -> Document | None:
        if self.config is None or self.self_id is None:
            return None
        return self.member(self.self_id)

    def member(self, member_id: int | None) -> Document | None:
        for member in (self.config or {}).get("members", []):
            if member["_id"] == member_id:
                return member
        return None

    def others(self) -> list[Document]:
        return [m for m in (self.config or {}).get("members", []) if m["_id"] != self.self_id]

    def is_writable_primary(self) -> bool:
        # The liveness check first: a primary that was stopped (SIGSTOP) and has not seen a
        # majority for electionTimeoutMillis steps down on its first command after SIGCONT.
        return self._check_primary_majority() and not self.stepping_down

    def is_readable(self) -> bool:
        return self.state in (PRIMARY, SECONDARY)

    def _healthy(self, member_id: int) -> bool:
        if member_id == self.self_id:
            return True
        view = self.members.get(member_id)
        return view is not None and view.health > 0

    def _applied(self, member_id: int) -> OpTime:
        if member_id == self.self_id:
            return self.last_applied
        view = self.members.get(member_id)
        return view.applied if view else NULL_OPTIME

    def majority_vote_count(self) -> int:
        voters = [m for m in (self.config or {}).get("members", []) if voting(m)]
        return len(voters) // 2 + 1

    def write_majority_count(self) -> int:
        writable = [
            m for m in (self.config or {}).get("members", []) if voting(m) and not m["arbiterOnly"]
        ]
        return min(self.majority_vote_count(), len(writable))

    def _set_state(self, state: int) -> None:
        if state != self.state:
            self.node.log.info(
                "REPL",
                21358,
                "ReplCoord",
                "Replica set state transition",
                newState=STATE_NAMES[state],
                oldState=STATE_NAMES[self.state],
            )
            self.state = state
            self.node.bump_topology()

    # isSelf

    async def is_self(self, host: str) -> bool:
        """mongod's isSelf: a fast path by bound address and port, then a slow path that asks
        whoever answers at `host` for its process id (`_isSelf`), whatever the port: a member
        behind a proxy or a port mapping is still recognised, as with mongod."""
        name, port = split_host(host)
        loop = asyncio.get_running_loop()
        if port == self.node.settings.port:
            try:
                infos = await loop.getaddrinfo(name, port, type=socket.SOCK_STREAM)
            except OSError:
                return False
            addresses = {info[4][0] for info in infos}
            bound = set(self.node.listen_addresses)
            for address in addresses:
                if address in bound:
                    return True
                if bound & {"0.0.0.0", "::"} and _address_is_local(address):
                    return True
        if host in self._is_self_answers:
            return self._is_self_answers[host]
        try:
            client = await WireClient.connect(
                name, port, timeout=IS_SELF_TIMEOUT, tls=self.node.egress_tls
            )
        except (OSError, TimeoutError):
            return False
        try:
            reply = await client.command("admin", {"_isSelf": 1}, timeout=IS_SELF_TIMEOUT)
        except (OSError, TimeoutError, CommandError, ProtocolError, asyncio.IncompleteReadError):
            return False
        finally:
            client.close()
        # A definitive answer names the process serving `host`; it holds for our lifetime.
        answer = reply.get("id") == self.node.process_id
        self._is_self_answers[host] = answer
        return answer

    async def _find_self(self, cfg: Document) -> list[Document]:
        """The members that map to this node; every member is probed at once (bounded)."""
        answers = await asyncio.gather(*(self.is_self(m["host"]) for m in cfg["members"]))
        return [m for m, me in zip(cfg["members"], answers, strict=True) if me]

    # Peer connections. Every call to a peer is bounded: a frozen or partitioned peer costs the
    # caller its timeout, never a hung task, and a connection whose call failed or timed out is
    # closed and reopened on the next call (a late reply must never answer a later request).

    async def _client(self, host: str, purpose: str, timeout: float) -> WireClient:
        """The cached connection for (host, purpose), opened and authenticated within `timeout`."""
        key = (host, purpose)
        client = self.clients.get(key)
        if client is not None and not client.broken:
            return client
        self.clients.pop(key, None)
        name, port = split_host(host)
        deadline = time.monotonic() + timeout
        try:
            client = await WireClient.connect(name, port, timeout=timeout, tls=self.node.egress_tls)
        except ConnectionRefusedError as exc:
            raise ConnectionError(
                f"Error connecting to {host} :: caused by :: Connection refused"
            ) from exc
        except TimeoutError as exc:
            raise ConnectionError(f"Error connecting to {host} :: caused by :: timed out") from exc
        except OSError as exc:
            raise ConnectionError(f"Error connecting to {host} :: caused by :: {exc}") from exc
        if self.node.key is not None:
            try:
                await self._authenticate(client, max(0.001, deadline - time.monotonic()))
            except CommandError as exc:
                client.close()
                raise ConnectionError(
                    str(exc.reply.get("errmsg", "Authentication failed."))
                ) from exc
            except MongoError as exc:
                client.close()
                raise ConnectionError(exc.errmsg) from exc
            except (OSError, TimeoutError, ProtocolError, asyncio.IncompleteReadError) as exc:
                client.close()
                message = "timed out" if isinstance(exc, TimeoutError) else str(exc) or "closed"
                raise ConnectionError(
                    f"Error connecting to {host} :: caused by :: {message}"
                ) from exc
            except BaseException:
                client.close()
                raise
        self.clients[key] = client
        return client

    async def _authenticate(self, client: WireClient, timeout: float) -> None:
        assert self.node.key is not None
        deadline = time.monotonic() + timeout
        scram = ScramClient("SCRAM-SHA-256", "__system", self.node.key)
        reply = await client.command(
            "local",
            {
                "saslStart": 1,
                "mechanism": "SCRAM-SHA-256",
                "payload": Binary(0, scram.first()),
                "options": {"skipEmptyExchange": True},
            },
            timeout,
        )
        final = scram.final(reply["payload"].data)
        reply = await client.command(
            "local",
            {
                "saslContinue": 1,
                "conversationId": reply["conversationId"],
                "payload": Binary(0, final),
            },
            max(0.001, deadline - time.monotonic()),
        )
        scram.verify(reply["payload"].data)

    async def _call(self, host: str, purpose: str, body: Document, timeout: float) -> Document:
        """Run an internal command on a member within `timeout` seconds (connect and
        authentication included); transport errors and timeouts drop the cached connection and
        surface as ConnectionError."""
        deadline = time.monotonic() + timeout
        client = await self._client(host, purpose, timeout)
        try:
            return await client.command("admin", body, max(0.001, deadline - time.monotonic()))
        except CommandError:
            raise
        except (OSError, TimeoutError, ProtocolError, asyncio.IncompleteReadError) as exc:
            message = "timed out" if isinstance(exc, TimeoutError) else str(exc) or "closed"
            raise ConnectionError(f"Error connecting to {host} :: caused by :: {message}") from exc
        finally:
            if client.broken and self.clients.get((host, purpose)) is client:
                del self.clients[(host, purpose)]

    # Oplog

    def _next_ts(self) -> Timestamp:
        now = int(time.time())
        last = self.last_applied.ts
        if now > last.time:
            return Timestamp(now, 1)
        return Timestamp(last.time, last.inc + 1)

    def log_op(
        self,
        op: str,
        ns: str,
        o: Document,
        o2: Document | None = None,
        session: Document | None = None,
    ) -> None:
        """Append an entry; `session` ({lsid, txnNumber, stmtId}) stamps a retryable write."""
        entry: Document = {"op": op, "ns": ns, "o": copy.deepcopy(o)}
        if o2 is not None:
            entry["o2"] = o2
        if session is not None:
            entry.update(session)
        entry.update(
            {
                "ts": self._next_ts(),
                "t": Int64(self.term),
                "v": Int64(2),
                "wall": datetime.datetime.now(UTC),
            }
        )
        self._append(entry)

    def _append(self, entry: Document) -> None:
        self.node.storage.append_oplog(entry)
        self.oplog.append(entry)
        self._note_retryable(entry)
        self.last_applied = OpTime(int(entry["t"]), entry["ts"])
        self.new_oplog.set()
        self.new_oplog = asyncio.Event()
        self._progress_changed()

    def _apply(self, entry: Document) -> None:
        storage = self.node.storage
        op = entry["op"]
        db, _, coll = entry["ns"].partition(".")
        if op == "i":
            storage.insert(db, coll, entry["o"])
        elif op == "u":
            storage.replace(db, coll, entry["o"])
        elif op == "d":
            storage.delete(db, coll, entry["o"]["_id"])
        elif op == "c":
            command = entry["o"]
            if "create" in command:
                storage.create_collection(db, command["create"])
            elif "drop" in command:
                storage.drop_collection(db, command["drop"])
            elif "dropDatabase" in command:
                storage.drop_database(db)
            elif "createIndexes" in command:
                spec = {k: v for k, v in command.items() if k != "createIndexes"}
                storage.add_index(db, command["createIndexes"], spec)
        self._append(entry)

    # Retryable-write records

    def _note_retryable(self, entry: Document) -> None:
        """Record a stamped entry's statement for its session (primary and secondaries alike)."""
        lsid, txn, stmt = entry.get("lsid"), entry.get("txnNumber"), entry.get("stmtId")
        if not isinstance(lsid, dict) or txn is None or stmt is None:
            return
        ref = _document_ref(entry)
        statement = {
            "_id": {"id": lsid.get("id")},
            "txnNum": Int64(int(txn)),
            "stmt": {
                "stmtId": int(stmt),
                "op": entry["op"],
                "_id": ref["_id"] if ref is not None else None,
                "ts": entry["ts"],
            },
            "lastWriteOpTime": {"ts": entry["ts"], "t": entry["t"]},
        }
        if add_txn_statement(self.txn_records, statement):
            self.node.storage.log_txn_statement(statement, self.txn_records)

    def _persist_txn_records(self) -> None:
        self.node.storage.write_txn_records(list(self.txn_records.values()))

    def executed_statements(self, session_id: Any, txn: int) -> dict[int, Document] | None:
        """The statements of (session, txnNumber) this member has in its records, by stmtId;
        None when the records hold nothing for that txnNumber."""
        record = self.txn_records.get(id_key(session_id))
        if record is None or int(record["txnNum"]) != txn:
            return None
        return {int(s["stmtId"]): s for s in record["stmts"]}

    def _forget_rolled_back(self, undone: list[Document]) -> None:
        gone = {
            (id_key(e["lsid"].get("id")), int(e["txnNumber"]), e["ts"])
            for e in undone
            if isinstance(e.get("lsid"), dict) and e.get("txnNumber") is not None
        }
        if not gone:
            return
        for key, record in list(self.txn_records.items()):
            txn = int(record["txnNum"])
            record["stmts"] = [s for s in record["stmts"] if (key, txn, s["ts"]) not in gone]
            if not record["stmts"]:
                del self.txn_records[key]
        self._persist_txn_records()

    def _progress_changed(self) -> None:
        members = [
            m for m in (self.config or {}).get("members", []) if voting(m) and not m["arbiterOnly"]
        ]
        applied = sorted((self._applied(m["_id"]) for m in members), reverse=True)
        needed = self.write_majority_count()
        if applied and needed and len(applied) >= needed:
            candidate = applied[needed - 1]
            if candidate > self.commit_point and candidate.t == self.term:
                self.commit_point = candidate
        asyncio.get_running_loop().create_task(self._notify_progress())

    async def _notify_progress(self) -> None:
        async with self.progress:
            self.progress.notify_all()

    def implicit_default_write_concern(self) -> Document:
        """MongoDB 5.0+: {w: 1} when arbiters exist and the data-bearing voters are no more than
        a voting majority (PSA-like sets), otherwise {w: "majority"}."""
        members = (self.config or {}).get("members", [])
        arbiters = sum(1 for m in members if m["arbiterOnly"])
        data_voters = sum(1 for m in members if voting(m) and not m["arbiterOnly"])
        if arbiters and data_voters <= self.majority_vote_count():
            return {"w": 1, "wtimeout": 0}
        return {"w": "majority", "wtimeout": 0}

    def default_write_concern(self) -> tuple[Document, str]:
        """The write concern of a write that has none, and its provenance."""
        stored = self.node.storage.find_by_id("config", "settings", "ReadWriteConcernDefaults")
        if stored is not None and stored.get("defaultWriteConcern"):
            return dict(stored["defaultWriteConcern"]), "customDefault"
        return self.implicit_default_write_concern(), "implicitDefault"

    async def await_write_concern(
        self, concern: Document, provenance: str = "clientSupplied"
    ) -> Document | None:
        w = concern.get("w", 1)
        wtimeout = int(concern.get("wtimeout", 0) or 0)
        if w in (0, 1) or (isinstance(w, int) and w < 0):
            return None
        target = self.last_applied
        term = self.term
        data_members = [m for m in (self.config or {}).get("members", []) if not m["arbiterOnly"]]
        if w == "majority":
            needed = self.write_majority_count()
            pool = [m for m in data_members if voting(m)]
        elif isinstance(w, int):
            needed = w
            pool = data_members
            if w > len(data_members):
                return {
                    "code": 100,
                    "codeName": "UnsatisfiableWriteConcern",
                    "errmsg": "Not enough data-bearing nodes",
                    "errInfo": {},
                }
        else:
            return {
                "code": 79,
                "codeName": "UnknownReplWriteConcern",
                "errmsg": f"No write concern mode named '{w}' found in replica set configuration",
                "errInfo": {},
            }
        echoed = {"w": w, "wtimeout": wtimeout, "provenance": provenance}

        def stepped_down() -> bool:
            return self.state != PRIMARY or self.term != term

        def satisfied() -> bool:
            if stepped_down():
                return True
            return sum(1 for m in pool if self._applied(m["_id"]) >= target) >= needed

        # A primary that cannot see a majority (for instance one that was just thawed after
        # SIGSTOP) steps down here rather than wait on members that moved on.
        self._check_primary_majority()
        async with self.progress:
            try:
                if wtimeout > 0:
                    await asyncio.wait_for(self.progress.wait_for(satisfied), wtimeout / 1000)
                else:
                    await self.progress.wait_for(satisfied)
            except TimeoutError:
                return {
                    "code": 64,
                    "codeName": "WriteConcernFailed",
                    "errmsg": "waiting for replication timed out",
                    "errInfo": {"wtimeout": True, "writeConcern": echoed},
                }
        if stepped_down() and not sum(1 for m in pool if self._applied(m["_id"]) >= target) >= (
            needed
        ):
            return {
                "code": 189,
                "codeName": "PrimarySteppedDown",
                "errmsg": "Primary stepped down while waiting for replication",
                "errInfo": {"writeConcern": echoed},
            }
        return None

    # Config installation

    async def _install_config(self, cfg: Document, persist: bool = True) -> None:
        previous_id = self.self_id
        self.config = cfg
        selves = await self._find_self(cfg)
        self.self_id = selves[0]["_id"] if len(selves) == 1 else None
        if persist:
            self._persist_config()
        for member_id in list(self.heartbeat_tasks):
            if self.member(member_id) is None or member_id == self.self_id:
                self.heartbeat_tasks.pop(member_id).cancel()
                self.members.pop(member_id, None)
        for member in self.others():
            self.members.setdefault(member["_id"], MemberView())
            if member["_id"] not in self.heartbeat_tasks:
                self.heartbeat_tasks[member["_id"]] = asyncio.create_task(
                    self._heartbeat_loop(member["_id"])
                )
        if self.self_id is None:
            self._set_state(REMOVED)
        elif self.state in (STARTUP, REMOVED) or previous_id != self.self_id:
            if self.needs_initial_sync:
                self._set_state(STARTUP2)
            else:
                self._set_state(SECONDARY)
            self.last_primary_contact = time.monotonic()
        self.node.log.info(
            "REPL", 21392, "ReplCoord", "New replica set config in use", config=public_config(cfg)
        )
        self.node.bump_topology()
        self._progress_changed()

    # Commands

    def _log_parses_ok(self, command: str, log_id: int, cfg: Document) -> None:
        self.node.log.info(
            "REPL",
            log_id,
            "conn",
            f"{command} config object parses ok",
            numMembers=len(cfg["members"]),
        )

    async def initiate(self, body: Document) -> Document:
        if self.config is not None:
            raise MongoError(
                23,
                "already initialized",
                info="try querying local.system.replset to see current configuration",
            )
        raw = body["replSetInitiate"]
        if not isinstance(raw, dict) or not raw:
            raw = {
                "_id": self.set_name,
                "version": 1,
                "members": [{"_id": 0, "host": f"{self.node.hostname}:{self.node.settings.port}"}],
            }
        if any(isinstance(m, dict) and m.get("newlyAdded") for m in raw.get("members") or []):
            raise _bad("newlyAdded field is not allowed in replSetInitiate")
        cfg = normalize_config(raw, self.set_name)
        if cfg["version"] != 1:
            raise _bad(
                f"The first version of a replica set config must be 1, but found {cfg['version']}"
            )
        if cfg["term"] != 0:
            raise _bad(
                f"The initial term of a replica set config must be 0, but found {cfg['term']}"
            )
        selves = await self._find_self(cfg)
        if not selves:
            raise _no_self(cfg, self.set_name)
        if len(selves) > 1:
            raise _bad(
                f"The hosts {selves[0]['host']} and {selves[1]['host']} all map to this "
                f"node in new configuration with {_version_term(cfg)} for replica set "
                f"{self.set_name}"
            )
        if not electable(selves[0]):
            raise _not_electable(selves[0], cfg, self.set_name)
        await self._initiate_quorum_check(cfg, selves[0])
        if self.config is not None:
            raise MongoError(23, "already initialized")
        cfg["settings"].setdefault("replicaSetId", ObjectId())
        self._log_parses_ok("replSetInitiate", 21356, cfg)
        self.needs_initial_sync = False
        await self._install_config(cfg)
        self.log_op("n", "", {"msg": "initiating set"})
        return {"ok": 1.0}

    async def _initiate_quorum_check(self, cfg: Document, me: Document) -> None:
        failures: list[str] = []
        incompatible: list[str] = []

        async def probe(member: Document) -> None:
            body = {
                "replSetHeartbeat": cfg["_id"],
                "checkEmpty": True,
                "configVersion": 1,
                "configTerm": 0,
                "from": me["host"],
                "fromId": me["_id"],
                "term": 0,
            }
            try:
                reply = await self._call(member["host"], "quorum", body, 10.0)
            except CommandError as exc:
                if exc.code == 103:
                    incompatible.append(
                        str(exc.reply.get("errmsg")).replace("{host}", member["host"])
                    )
                else:
                    failures.append(f"{member['host']} failed with {exc.reply.get('errmsg')}")
                return
            except ConnectionError as exc:
                failures.append(f"{member['host']} failed with {exc}")
                return
            if reply.get("setName") not in (None, cfg["_id"]):
                incompatible.append(f"Our set name did not match that of {member['host']}")

        await asyncio.gather(*(probe(m) for m in cfg["members"] if m is not me))
        for key in [k for k in self.clients if k[1] == "quorum"]:
            self.clients.pop(key).close()
        if incompatible:
            raise MongoError(103, incompatible[0])
        if failures:
            raise MongoError(
                74,
                "replSetInitiate quorum check failed because not all proposed "
                "set members responded affirmatively: " + ", ".join(failures),
            )

    def _require_config(self) -> Document:
        if self.config is None:
            raise MongoError(
                94,
                "no replset config has been received",
                info="run rs.initiate(...) if not yet done for the set",
            )
        if self.self_id is None:
            raise MongoError(93, "Our replica set config is invalid or we are not a member of it")
        return self.config

    def get_config(self) -> Document:
        return {"config": public_config(self._require_config()), "ok": 1.0}

    def get_status(self) -> Document:
        cfg = self._require_config()
        now = datetime.datetime.now(UTC)
        source = self._sync_source()
        members = []
        for member in cfg["members"]:
            member_id = member["_id"]
            if member_id == self.self_id:
                entry: Document = {
                    "_id": member_id,
                    "name": member["host"],
                    "health": 1.0,
                    "state": self.state,
                    "stateStr": STATE_NAMES[self.state],
                    "uptime": int(time.monotonic() - self.started),
                    "optime": self.last_applied.doc(),
                    "optimeDate": self.last_applied.wall(),
                    "lastAppliedWallTime": self.last_applied.wall(),
                    "syncSourceHost": source["host"] if source else "",
                    "syncSourceId": source["_id"] if source else -1,
                    "infoMessage": "",
                    "configVersion": cfg["version"],
                    "configTerm": cfg["term"],
                    "self": True,
                    "lastHeartbeatMessage": "",
                }
                if self.state == PRIMARY and self.election_time is not None:
                    entry["electionTime"] = self.election_time
                    entry["electionDate"] = datetime.datetime.fromtimestamp(
                        self.election_time.time, UTC
                    )
            else:
                view = self.members.get(member_id, MemberView())
                state = (
                    view.state if view.health > 0 else (DOWN if view.last_heartbeat else UNKNOWN)
                )
                entry = {
                    "_id": member_id,
                    "name": member["host"],
                    "health": view.health,
                    "state": state,
                    "stateStr": STATE_NAMES[state],
                    "uptime": int(time.monotonic() - view.up_since) if view.up_since else 0,
                    "optime": view.applied.doc(),
                    "optimeDurable": view.applied.doc(),
                    "optimeDate": view.applied.wall(),
                    "lastHeartbeat": view.last_heartbeat or now,
                    "lastHeartbeatRecv": view.last_heartbeat_recv
                    or datetime.datetime(1970, 1, 1, tzinfo=UTC),
                    "pingMs": Int64(view.ping_ms),
                    "lastHeartbeatMessage": view.message,
                    "syncSourceHost": "",
                    "syncSourceId": -1,
                    "infoMessage": "",
                    "configVersion": view.config_version if view.config_version is not None else -1,
                    "configTerm": view.config_term if view.config_term is not None else -1,
                }
                if state == PRIMARY and view.election_time is not None:
                    entry["electionTime"] = view.election_time
            members.append(entry)
        voters = [m for m in cfg["members"] if voting(m)]
        return {
            "set": self.set_name,
            "date": now,
            "myState": self.state,
            "term": Int64(self.term),
            "syncSourceHost": source["host"] if source else "",
            "syncSourceId": source["_id"] if source else -1,
            "heartbeatIntervalMillis": Int64(self.settings("heartbeatIntervalMillis")),
            "majorityVoteCount": self.majority_vote_count(),
            "writeMajorityCount": self.write_majority_count(),
            "votingMembersCount": len(voters),
            "writableVotingMembersCount": len([m for m in voters if not m["arbiterOnly"]]),
            "optimes": {
                "lastCommittedOpTime": self.commit_point.doc(),
                "lastCommittedWallTime": self.commit_point.wall(),
                "appliedOpTime": self.last_applied.doc(),
                "durableOpTime": self.last_applied.doc(),
                "lastAppliedWallTime": self.last_applied.wall(),
                "lastDurableWallTime": self.last_applied.wall(),
            },
            "members": members,
            "ok": 1.0,
        }

    def _sync_source(self) -> Document | None:
        """mongod's choice of a sync source, simplified: the primary while its oplog answers.
        When there is no primary, or fetching from it has just failed (a frozen or partitioned
        primary), a secondary whose last applied optime is ahead of this node's, the closest by
        ping, a visible member before a hidden or delayed one: mongod chains through secondaries
        (settings.chainingAllowed, on by default), so a member that fell behind catches up from
        another and can be elected without the primary. Initial sync copies from the primary."""
        if self.state not in (SECONDARY, STARTUP2):
            return None
        now = time.monotonic()
        primary = self.member(self.primary_id)
        if primary is not None and self._sync_source_denied.get(primary["host"], 0.0) <= now:
            return primary
        if self.state == SECONDARY and self.settings("chainingAllowed"):
            ahead = [
                (member, view)
                for member in self.others()
                if (view := self.members.get(member["_id"])) is not None
                and view.health > 0
                and view.state in (PRIMARY, SECONDARY)
                and view.applied > self.last_applied
                and self._sync_source_denied.get(member["host"], 0.0) <= now
            ]
            if ahead:
                member, _ = min(
                    ahead,
                    key=lambda pair: (
                        bool(pair[0].get("hidden")) or pair[0].get("secondaryDelaySecs", 0) > 0,
                        pair[1].ping_ms,
                    ),
                )
                return member
        return primary

    def _config_committed(self) -> bool:
        cfg = self.config
        assert cfg is not None
        have = 0
        for member in cfg["members"]:
            if not voting(member):
                continue
            if member["_id"] == self.self_id:
                have += 1
                continue
            view = self.members.get(member["_id"])
            if (
                view
                and view.health > 0
                and (view.config_version, view.config_term) == (cfg["version"], cfg["term"])
            ):
                have += 1
        return have >= self.majority_vote_count()

    async def reconfig(self, body: Document) -> Document:
        force = bool(body.get("force"))
        if self.config is None:
            raise MongoError(
                94,
                "no replset config has been received",
                info="run rs.initiate(...) if not yet done for the set",
            )
        if not force and self.state != PRIMARY:
            raise MongoError(
                10107,
                "New config is rejected :: caused by :: replSetReconfig "
                "should only be run on a writable PRIMARY. Current state "
                f"{STATE_NAMES[self.state]};",
            )
        old = self.config
        raw = body["replSetReconfig"]
        if not isinstance(raw, dict):
            raise _bad("replSetReconfig requires a config object")
        raw = copy.deepcopy(raw)
        if isinstance(raw.get("members"), list):
            for member in raw["members"]:
                if isinstance(member, dict):
                    member.pop("newlyAdded", None)
        if raw.get("_id") != old["_id"]:
            raise MongoError(
                103,
                "New and old configurations differ in replica set name; old "
                f"was {old['_id']}, and new is {raw.get('_id')}",
            )
        new = normalize_config(raw, None)
        old_rsid = old["settings"].get("replicaSetId")
        new_rsid = new["settings"].get("replicaSetId")
        if new_rsid is not None and new_rsid != old_rsid:
            raise MongoError(
                103,
                "New and old configurations differ in replica set ID; old was "
                f"{old_rsid}, and new is {new_rsid}",
            )
        if old_rsid is not None:
            new["settings"]["replicaSetId"] = old_rsid
        if force:
            new["version"] = new["version"] + random.randint(10_000, 100_000)
            new["term"] = -1
        else:
            new["term"] = self.term
            if (new["version"], new["term"]) <= (old["version"], old["term"]) or (
                new["version"] <= old["version"] and new["term"] == old["term"]
            ):
                raise MongoError(
                    103,
                    "New replica set configuration version and term must be greater than "
                    f"old, but {_version_term(new)} is not greater than "
                    f"{_version_term(old)} for replica set {self.set_name}",
                )
        old_by_host = {m["host"]: m for m in old["members"]}
        old_by_id = {m["_id"]: m for m in old["members"]}
        for member in new["members"]:
            prior = old_by_host.get(member["host"])
            if prior is not None and prior["_id"] != member["_id"]:
                raise MongoError(
                    103,
                    f"New and old configurations both have members with host of "
                    f"{member['host']} but in the new configuration the _id field is "
                    f"{member['_id']} and in the old configuration it is {prior['_id']} "
                    f"for replica set {self.set_name}",
                )
            prior = old_by_id.get(member["_id"])
            if prior is not None:
                for flag in ("arbiterOnly", "buildIndexes"):
                    if prior[flag] != member[flag]:
                        raise MongoError(
                            103,
                            f"New and old configurations differ in the setting of the "
                            f"{flag} field for member {member['host']}; to make this "
                            "change, remove then re-add the member",
                        )
        if not force:
            old_voters = {m["_id"] for m in old["members"] if m["votes"] > 0}
            new_voters = {m["_id"] for m in new["members"] if m["votes"] > 0}
            if len(old_voters ^ new_voters) > 1:
                raise _bad(
                    "Non force replica set reconfig can only add or remove at most 1 voting member."
                )
        selves = await self._find_self(new)
        if len(selves) != 1:
            raise _no_self(new, self.set_name)
        if not force and not electable(selves[0]):
            raise _not_electable(selves[0], new, self.set_name)
        if not force:
            if not self._config_committed():
                raise MongoError(
                    308,
                    "Cannot run replSetReconfig because the current config: "
                    f"{_version_term(old)} is not yet committed.",
                )
            for member in new["members"]:
                if member["_id"] not in old_by_id and member["votes"] > 0:
                    member["newlyAdded"] = True
            await self._reconfig_quorum_check(new, selves[0])
        self._log_parses_ok("replSetReconfig", 21353, new)
        await self._install_config(new)
        return {"ok": 1.0}

    async def _reconfig_quorum_check(self, cfg: Document, me: Document) -> None:
        responded = [me["host"]]
        failures: list[str] = []

        async def probe(member: Document) -> None:
            body = {
                "replSetHeartbeat": cfg["_id"],
                "configVersion": cfg["version"],
                "configTerm": cfg["term"],
                "from": me["host"],
                "fromId": me["_id"],
                "term": self.term,
            }
            try:
                await self._call(member["host"], "quorum", body, 10.0)
            except (CommandError, ConnectionError) as exc:
                reason = exc.reply.get("errmsg") if isinstance(exc, CommandError) else str(exc)
                failures.append(f"{member['host']} failed with {reason}")
                return
            if member["votes"] > 0:
                responded.append(member["host"])

        await asyncio.gather(*(probe(m) for m in cfg["members"] if m["_id"] != me["_id"]))
        for key in [k for k in self.clients if k[1] == "quorum"]:
            self.clients.pop(key).close()
        voters = [m for m in cfg["members"] if m["votes"] > 0]
        required = len(voters) // 2 + 1
        if len([h for h in responded if h in {m["host"] for m in voters}]) < required:
            raise MongoError(
                74,
                f"Quorum check failed because not enough voting nodes responded; required "
                f"{required} but only the following {len(responded)} voting nodes "
                f"responded: {', '.join(responded)}; the following nodes did not respond "
                f"affirmatively: {', '.join(failures)}",
            )

    def _caught_up_electable(self) -> list[Document]:
        out = []
        for member in self.others():
            view = self.members.get(member["_id"])
            if (
                view
                and view.health > 0
                and view.state == SECONDARY
                and electable(member)
                and view.applied >= self.last_applied
            ):
                out.append(member)
        return sorted(out, key=lambda m: (-m["priority"], m["_id"]))

    async def _wait_for_caught_up(self, seconds: float) -> list[Document]:
        deadline = time.monotonic() + seconds
        while True:
            ready = self._caught_up_electable()
            if ready or time.monotonic() >= deadline:
                return ready
            async with self.progress:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self.progress.wait(), min(0.2, max(0.0, deadline - time.monotonic()))
                    )

    async def step_down(self, body: Document) -> Document:
        if self.state != PRIMARY:
            raise MongoError(10107, "not primary so can't step down")
        secs = float(body.get("replSetStepDown") or 60)
        catch_up = float(body.get("secondaryCatchUpPeriodSecs", 10))
        force = bool(body.get("force"))
        if secs < catch_up:
            raise MongoError(2, "stepdown period must be longer than secondaryCatchUpPeriodSecs")
        ready = await self._wait_for_caught_up(catch_up)
        if not ready and not force:
            raise MongoError(
                262,
                "No electable secondaries caught up as of "
                f"{datetime.datetime.now(UTC).isoformat(timespec='milliseconds')}. Please "
                "use the replSetStepDown command with the argument {force: true} to force "
                "node to step down.",
            )
        if self.state != PRIMARY:
            raise MongoError(189, "primary stepped down while waiting for secondaries")
        self.frozen_until = time.monotonic() + secs
        self._step_down("replSetStepDown command")
        if ready:
            asyncio.get_running_loop().create_task(self._hand_off(ready[0]))
        return {"ok": 1.0}

    async def step_down_for_shutdown(self, timeout: float, signalled: bool = False) -> None:
        """Step down before shutting down: writes are refused from the start (10107), the wait
        for an electable secondary to catch up lasts up to `timeout`, then the election is
        handed off to it. The shutdown command fails (262) if none caught up; a signalled
        shutdown steps down and goes on anyway."""
        if not self.others() or self.state != PRIMARY:
            return
        self.stepping_down = True
        self.node.bump_topology()
        try:
            ready = await self._wait_for_caught_up(timeout)
            if not ready and not signalled:
                raise MongoError(
                    262,
                    "No electable secondaries caught up as of "
                    f"{datetime.datetime.now(UTC).isoformat()}. Please use "
                    "{force: true} to force node to step down.",
                )
            self._step_down("signal" if signalled else "shutdown command")
        finally:
            if self.stepping_down:
                self.stepping_down = False
                self.node.bump_topology()
        if ready:
            await self._hand_off(ready[0])

    async def _hand_off(self, member: Document) -> None:
        try:
            await self._call(
                member["host"],
                "control",
                {"replSetStepUp": 1, "skipDryRun": True},
                float(self.settings("electionTimeoutMillis")) / 1000,
            )
        except (CommandError, ConnectionError):
            self.node.log.info(
                "REPL", 21441, "ReplCoord", "Election handoff failed", target=member["host"]
            )

    def freeze(self, body: Document) -> Document:
        self._require_config()
        if self.state == PRIMARY:
            raise MongoError(
                95, "cannot freeze node when primary or running for election. state: Primary"
            )
        secs = int(body.get("replSetFreeze") or 0)
        self.frozen_until = time.monotonic() + secs if secs else 0.0
        reply: Document = {"ok": 1.0}
        if not secs:
            reply["info"] = "unfreezing"
        return reply

    def _step_down(self, reason: str) -> None:
        if self.state != PRIMARY:
            return
        self.node.log.info("REPL", 21358, "ReplCoord", "Stepping down", reason=reason)
        self.stepping_down = False
        self.primary_id = None
        self.last_primary_contact = time.monotonic()
        self._set_state(SECONDARY)
        self._progress_changed()  # write-concern waiters fail with PrimarySteppedDown

    # hello

    def hello_fields(self, legacy: bool) -> Document:
        key = "ismaster" if legacy else "isWritablePrimary"
        me = self.me()
        if self.config is None or me is None:
            return {
                key: False,
                "secondary": False,
                "info": "Does not have a valid replica set config",
                "isreplicaset": True,
            }
        cfg = self.config
        visible = [m for m in cfg["members"] if not m["hidden"]]
        out: Document = {
            "topologyVersion": None,
            "hosts": [m["host"] for m in visible if not m["arbiterOnly"] and m["priority"] > 0],
        }
        passives = [m["host"] for m in visible if not m["arbiterOnly"] and m["priority"] == 0]
        arbiters = [m["host"] for m in visible if m["arbiterOnly"]]
        if passives:
            out["passives"] = passives
        if arbiters:
            out["arbiters"] = arbiters
        out.update(
            {
                "setName": self.set_name,
                "setVersion": cfg["version"],
                key: self.state == PRIMARY and not self.stepping_down,
                "secondary": self.state == SECONDARY,
            }
        )
        primary = self.member(self.primary_id)
        if primary is not None:
            out["primary"] = primary["host"]
        out["me"] = me["host"]
        if me["arbiterOnly"]:
            out["arbiterOnly"] = True
        if me["priority"] == 0 and not me["arbiterOnly"]:
            out["passive"] = True
        if me["hidden"]:
            out["hidden"] = True
        if me["tags"]:
            out["tags"] = me["tags"]
        if self.state == PRIMARY:
            out["electionId"] = ObjectId.from_term(self.term)
        out["lastWrite"] = {
            "opTime": self.last_applied.doc(),
            "lastWriteDate": self.last_applied.wall(),
            "majorityOpTime": self.commit_point.doc(),
            "majorityWriteDate": self.commit_point.wall(),
        }
        del out["topologyVersion"]
        return out

    # Internal commands (only __system may run them)

    async def internal(self, name: str, body: Document) -> Document:
        if name == "replSetHeartbeat":
            return await self._on_heartbeat(body)
        if name == "replSetRequestVotes":
            return self._on_request_votes(body)
        if name == "replSetStepUp":
            return await self._on_step_up()
        if name == "_oplogFetch":
            return await self._on_oplog_fetch(body)
        if name == "_rollbackInfo":
            return self._on_rollback_info(body)
        return self._on_initial_sync()

    def _heartbeat_reply(self) -> Document:
        cfg = self.config
        reply: Document = {
            "ok": 1.0,
            "setName": self.set_name,
            "state": self.state,
            "term": Int64(self.term),
            "configVersion": cfg["version"] if cfg else -2,
            "configTerm": cfg["term"] if cfg else -1,
            "appliedOpTime": self.last_applied.doc(),
            "durableOpTime": self.last_applied.doc(),
            "primaryId": self.primary_id if self.primary_id is not None else -1,
        }
        if self.state == PRIMARY and self.election_time is not None:
            reply["electionTime"] = self.election_time
        return reply

    async def _on_heartbeat(self, body: Document) -> Document:
        if body["replSetHeartbeat"] != self.set_name:
            raise MongoError(103, "Our set name did not match that of {host}")
        cfg = self.config
        if body.get("checkEmpty") and cfg is not None:
            raise MongoError(
                103,
                f"Our config version of {body.get('configVersion')} is no "
                f"larger than the version on {{host}}, which is "
                f"{cfg['version']}",
            )
        self._set_term(int(body.get("term", -1)))
        sender = body.get("fromId")
        if isinstance(sender, int) and sender in self.members:
            self.members[sender].last_heartbeat_recv = datetime.datetime.now(UTC)
        pushed = body.get("config")
        if isinstance(pushed, dict) and not body.get("checkEmpty"):
            await self._maybe_adopt(pushed)
        reply = self._heartbeat_reply()
        if cfg is not None and _newer(
            cfg, body.get("configTerm", -1), body.get("configVersion", -2)
        ):
            reply["config"] = cfg
        return reply

    async def _maybe_adopt(self, pushed: Document) -> None:
        cfg = self.config
        if cfg is not None and not _newer(pushed, cfg["term"], cfg["version"]):
            return
        if cfg is None:
            self.needs_initial_sync = not self.oplog
        await self._install_config(copy.deepcopy(pushed))

    def _on_request_votes(self, body: Document) -> Document:
        term = int(body["term"])
        candidate = int(body["candidateIndex"])
        last = OpTime.from_doc(body.get("lastAppliedOpTime"))
        dry_run = bool(body.get("dryRun"))
        reason = ""
        if body.get("setName") != self.set_name:
            reason = "candidate's set name differs from mine"
        elif term < self.term:
            reason = f"candidate's term ({term}) is lower than mine ({self.term})"
        elif (
            not dry_run
            and self.voted_for is not None
            and self.voted_for[0] == term
            and self.voted_for[1] != candidate
        ):
            reason = f"already voted for another candidate in term {term}"
        elif last < self.last_applied:
            reason = "candidate's data is staler than mine"
        if not dry_run:
            self._set_term(term)
        if reason:
            return {"term": Int64(self.term), "voteGranted": False, "reason": reason, "ok": 1.0}
        if not dry_run:
            self.voted_for = (term, candidate)
            self._persist_term()
            self.last_primary_contact = time.monotonic()
        return {"term": Int64(self.term), "voteGranted": True, "reason": "", "ok": 1.0}

    async def _on_step_up(self) -> Document:
        me = self.me()
        if self.state != SECONDARY or me is None or not electable(me):
            raise MongoError(95, "Node is not electable or not a secondary")
        await self._run_election("step-up request", skip_dry_run=True)
        return {"ok": 1.0}

    async def _on_oplog_fetch(self, body: Document) -> Document:
        """The sync source's side of an oplog fetch. The fetcher sends its term (a higher one
        makes a stale primary step down, as mongod's oplog getMore does) and the optime of its
        last entry, which must be in this oplog: otherwise the histories diverged and the fetcher
        has to roll back (OplogStartMissing)."""
        self._set_term(int(body.get("term", -1)))
        if self.state not in (PRIMARY, SECONDARY):
            raise MongoError(13436, "node is not in primary or recovering state")
        member_id = body.get("memberId")
        if isinstance(member_id, int) and member_id in self.members:
            view = self.members[member_id]
            view.applied = max(view.applied, OpTime.from_doc(body.get("appliedOpTime")))
            view.last_position = time.monotonic()
            self._progress_changed()
        last = OpTime.from_doc(body.get("lastFetched"))
        if last != NULL_OPTIME and not self._has_optime(last):
            raise MongoError(
                120,
                "Our last optime fetched "
                f"{{ ts: {last.ts}, t: {last.t} }} is not in the sync source's oplog",
            )
        after: Timestamp = body.get("after") or ZERO_TS
        entries = [e for e in self.oplog if e["ts"] > after]
        if not entries:
            waiter = self.new_oplog
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.wait(), int(body.get("maxAwaitMillis", 500)) / 1000)
            entries = [e for e in self.oplog if e["ts"] > after]
        return {"entries": entries[:1000], "ok": 1.0}

    def _has_optime(self, optime: OpTime) -> bool:
        for entry in reversed(self.oplog):
            if entry["ts"] == optime.ts:
                return int(entry["t"]) == optime.t
            if entry["ts"] < optime.ts:
                return False
        return False

    def _on_rollback_info(self, body: Document) -> Document:
        """For a member that rolls back: the newest of its optimes that this oplog holds (the
        common point) and this node's current version of each document it asks for (mongod's
        "refetch" of rolled-back documents from the sync source)."""
        common = None
        for doc in body.get("optimes") or []:
            optime = OpTime.from_doc(doc)
            if self._has_optime(optime):
                common = optime.doc()
                break
        docs = []
        for ref in body.get("refetch") or []:
            db, _, coll = str(ref.get("ns", "")).partition(".")
            found = self.node.storage.find_by_id(db, coll, ref.get("_id"))
            item: Document = {"ns": ref.get("ns"), "_id": ref.get("_id")}
            if found is not None:
                item["doc"] = found
            docs.append(item)
        return {"commonPoint": common, "docs": docs, "ok": 1.0}

    def _on_initial_sync(self) -> Document:
        if self.state != PRIMARY:
            raise MongoError(10107, "not primary")
        collections = []
        for db in self.node.storage.database_names():
            if db == "local":
                continue
            for coll in self.node.storage.collection_names(db):
                collection = self.node.storage.collection(db, coll)
                assert collection is not None
                collections.append(
                    {
                        "db": db,
                        "coll": coll,
                        "indexes": collection.indexes,
                        "docs": list(collection.docs.values()),
                    }
                )
        return {
            "collections": collections,
            "txnRecords": list(self.txn_records.values()),
            "lastEntry": self.oplog[-1] if self.oplog else None,
            "ok": 1.0,
        }

    # Background loops

    async def _heartbeat_loop(self, member_id: int) -> None:
        """Heartbeats to one member, each bounded by settings.heartbeatTimeoutSecs: a member that
        does not answer in time is marked DOWN, and the next heartbeat opens a new connection."""
        while not self._stopping:
            member = self.member(member_id)
            if member is None:
                return
            interval = float(self.settings("heartbeatIntervalMillis")) / 1000
            started = time.monotonic()
            try:
                await self._heartbeat_once(member_id, member, started)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let one bad exchange end the member's heartbeats
                self._heartbeat_failed(member_id, member, f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    async def _heartbeat_once(self, member_id: int, member: Document, started: float) -> None:
        me = self.me()
        timeout = float(self.settings("heartbeatTimeoutSecs"))
        view = self.members.setdefault(member_id, MemberView())
        cfg = self.config
        assert cfg is not None
        body: Document = {
            "replSetHeartbeat": self.set_name,
            "configVersion": cfg["version"],
            "configTerm": cfg["term"],
            "from": me["host"] if me else "",
            "fromId": me["_id"] if me else -1,
            "term": Int64(self.term),
        }
        if (view.config_term, view.config_version) != (cfg["term"], cfg["version"]):
            body["config"] = cfg
        try:
            reply = await self._call(member["host"], "heartbeat", body, timeout)
        except (CommandError, ConnectionError) as exc:
            message = str(exc.reply.get("errmsg")) if isinstance(exc, CommandError) else str(exc)
            self._heartbeat_failed(member_id, member, message)
            return
        if self.member(member_id) is not None:
            self._on_heartbeat_reply(member_id, reply, started)

    def _heartbeat_failed(self, member_id: int, member: Document, message: str) -> None:
        view = self.members.setdefault(member_id, MemberView())
        if view.health != 0.0 or view.message != message:
            self.node.log.info(
                "REPL",
                23974,
                "ReplCoord",
                "Heartbeat failed",
                target=member["host"],
                error=message,
            )
        view.health = 0.0
        view.state = DOWN
        view.message = message
        view.up_since = None
        view.last_heartbeat = datetime.datetime.now(UTC)
        if self.primary_id == member_id:
            self.primary_id = None
            self.node.bump_topology()

    def _on_heartbeat_reply(self, member_id: int, reply: Document, started: float) -> None:
        """A heartbeat answer. Liveness is dated by when the request was *sent*: an answer that
        sat in a socket buffer while this process was stopped proves nothing about now."""
        view = self.members[member_id]
        if view.health == 0.0:
            view.up_since = time.monotonic()
        view.health = 1.0
        view.message = ""
        view.last_ok = max(view.last_ok, started)
        view.state = int(reply.get("state", UNKNOWN))
        view.applied = max(view.applied, OpTime.from_doc(reply.get("appliedOpTime")))
        view.config_version = reply.get("configVersion")
        view.config_term = reply.get("configTerm")
        view.election_time = reply.get("electionTime")
        view.term = int(reply.get("term", -1))
        view.ping_ms = int((time.monotonic() - started) * 1000)
        view.last_heartbeat = datetime.datetime.now(UTC)
        self._set_term(view.term)
        if view.state == PRIMARY and view.term >= self.term:
            if self.primary_id != member_id:
                self.primary_id = member_id
                self.node.bump_topology()
            self.last_primary_contact = max(self.last_primary_contact, started)
        elif self.primary_id == member_id:
            self.primary_id = None
            self.node.bump_topology()
        pushed = reply.get("config")
        if isinstance(pushed, dict):
            asyncio.get_running_loop().create_task(self._maybe_adopt(pushed))
        self._progress_changed()

    def _election_delay(self) -> float:
        """Seconds without a primary before this node stands; higher priority stands first."""
        cfg = self.config
        assert cfg is not None
        timeout = float(self.settings("electionTimeoutMillis")) / 1000
        candidates = sorted(
            (m for m in cfg["members"] if electable(m)), key=lambda m: (-m["priority"], m["_id"])
        )
        if len([m for m in cfg["members"] if voting(m)]) == 1:
            return float(self.node.settings.parameter("singleNodeElectionDelayMillis")) / 1000
        rank = next((i for i, m in enumerate(candidates) if m["_id"] == self.self_id), 0)
        return timeout + rank * 0.15 * timeout

    async def _election_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(0.05)
            try:
                await self._election_tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the loop must outlive any one failed round
                self.node.log.warning(
                    "ELECTION", None, "ReplCoord", "Election round failed", error=repr(exc)
                )

    async def _election_tick(self) -> None:
        me = self.me()
        if me is None:
            return
        now = time.monotonic()
        if self.state == PRIMARY:
            self._check_primary_majority()
            return
        if self.state != SECONDARY or not electable(me) or now < self.frozen_until:
            return
        primary = self.member(self.primary_id)
        # mongod's election timeout: no heartbeat answer from a primary for
        # electionTimeoutMillis (plus this node's offset), whether or not the primary is
        # already marked DOWN (that takes heartbeatTimeoutSecs).
        if now - self.last_primary_contact >= self._election_delay():
            await self._run_election("election timeout")
        elif (
            primary is not None
            and me["priority"] > primary["priority"]
            and self.last_applied >= self._applied(primary["_id"])
            and now - self.last_primary_contact < 1.0
        ):
            takeover_after = float(self.settings("heartbeatIntervalMillis")) / 1000 * 2
            if now - self.started > takeover_after and (
                now - self._last_takeover_check >= takeover_after
            ):
                self._last_takeover_check = now
                await self._run_election("priority takeover")

    def _live_voters(self, now: float) -> int:
        """Voting members heard from within the election timeout, this node included: mongod's
        liveness rule for a primary. A member is heard from by a heartbeat answer (dated when the
        request was sent) or by a progress report (its oplog fetch), as mongod's liveness is
        renewed by heartbeat responses and by replSetUpdatePosition."""
        cfg = self.config
        assert cfg is not None
        window = float(self.settings("electionTimeoutMillis")) / 1000
        alive = 0
        for member in cfg["members"]:
            if not voting(member):
                continue
            if member["_id"] == self.self_id:
                alive += 1
                continue
            view = self.members.get(member["_id"])
            if view is not None and now - max(view.last_ok, view.last_position) < window:
                alive += 1
        return alive

    def _check_primary_majority(self) -> bool:
        """Step down if a majority of voters has not been heard from for electionTimeoutMillis.

        A process that was stopped (SIGSTOP) runs this on its first turn after SIGCONT: the
        liveness dates are all older than the window then, so it steps down before it can
        acknowledge anything that needs other members. Returns whether this node is still
        primary."""
        if self.state != PRIMARY:
            return False
        now = time.monotonic()
        if self._live_voters(now) >= self.majority_vote_count():
            return True
        window = float(self.settings("electionTimeoutMillis")) / 1000
        if now - self._majority_seen < window:  # grace period right after the election
            return True
        self.node.log.info(
            "REPL", 21809, "ReplCoord", "Can't see a majority of the set, relinquishing primary"
        )
        self._step_down("can't see a majority of the set")
        return False

    async def _request_votes(self, term: int, dry_run: bool) -> int:
        """Ask every other voter for its vote in `term`; stop as soon as a majority has granted
        it, when every voter answered, or when the election timeout passes."""
        cfg = self.config
        me = self.me()
        assert cfg is not None and me is not None
        timeout = float(self.settings("electionTimeoutMillis")) / 1000
        body = {
            "replSetRequestVotes": 1,
            "setName": self.set_name,
            "dryRun": dry_run,
            "term": Int64(term),
            "candidateIndex": me["_id"],
            "configVersion": cfg["version"],
            "configTerm": cfg["term"],
            "lastAppliedOpTime": self.last_applied.doc(),
        }

        async def ask(member: Document) -> bool:
            try:
                reply = await self._call(member["host"], "election", body, timeout)
            except (CommandError, ConnectionError):
                return False
            self._set_term(int(reply.get("term", -1)))
            return bool(reply.get("voteGranted"))

        needed = self.majority_vote_count()
        votes = 1
        pending = {asyncio.ensure_future(ask(m)) for m in self.others() if voting(m)}
        deadline = time.monotonic() + timeout
        try:
            while pending and votes < needed:
                done, pending = await asyncio.wait(
                    pending,
                    timeout=max(0.0, deadline - time.monotonic()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if not done:
                    break
                votes += sum(1 for task in done if task.result())
        finally:
            for task in pending:
                task.cancel()
        return votes

    async def _run_election(self, reason: str, skip_dry_run: bool = False) -> None:
        """A dry run for term + 1 first (it changes no term, so an isolated member cannot raise
        the set's term while it cannot win), then the real election."""
        cfg = self.config
        me = self.me()
        assert cfg is not None and me is not None
        needed = self.majority_vote_count()
        if not skip_dry_run:
            votes = await self._request_votes(self.term + 1, dry_run=True)
            if self.state != SECONDARY or self.config is not cfg:
                return
            if votes < needed:
                self.node.log.info(
                    "ELECTION",
                    21447,
                    "ReplCoord",
                    "Not becoming primary",
                    reason="dry run lost",
                    votes=votes,
                    needed=needed,
                )
                self.last_primary_contact = time.monotonic()
                return
        self.term += 1
        term = self.term
        self.voted_for = (term, me["_id"])
        self._persist_term()
        self.node.log.info(
            "ELECTION", 21444, "ReplCoord", "Starting an election", reason=reason, term=term
        )
        votes = await self._request_votes(term, dry_run=False)
        if self.term != term or self.state != SECONDARY or self.config is not cfg:
            return
        if votes >= needed:
            self._become_primary()
        else:
            self.node.log.info(
                "ELECTION", 21447, "ReplCoord", "Not becoming primary", votes=votes, needed=needed
            )
            self.last_primary_contact = time.monotonic()

    def _become_primary(self) -> None:
        self.primary_id = self.self_id
        self.election_time = Timestamp(int(time.time()), 1)
        self._majority_seen = time.monotonic()
        self.node.log.info(
            "REPL",
            21331,
            "ReplCoord",
            "Transition to primary complete; database writes are now permitted",
            term=self.term,
        )
        self._set_state(PRIMARY)
        if (
            self.config is not None
            and self.config["term"] != self.term
            and (self.config["term"] != -1)
        ):
            self.config = {**self.config, "term": self.term}
            self._persist_config()
        self.log_op("n", "", {"msg": "new primary"})

    async def _fetch_loop(self) -> None:
        while not self._stopping:
            member = self._sync_source()
            if member is None:
                await asyncio.sleep(0.05)
                continue
            source = member["host"]
            try:
                if self.state == STARTUP2:
                    await self._initial_sync(source)
                    continue
                await self._fetch_once(source)
            except asyncio.CancelledError:
                raise
            except CommandError as exc:
                if exc.code == 120 and self.state == SECONDARY:
                    await self._rollback_safely(source)
                    continue
                self._sync_source_failed(source, str(exc.reply.get("errmsg")))
                await asyncio.sleep(0.2)
            except Exception as exc:  # ConnectionError, or anything that must not end the loop
                self._sync_source_failed(source, f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(0.2)

    async def _rollback_safely(self, source: str) -> None:
        try:
            await self._rollback(source)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the fetch loop retries; it must never end
            self.node.log.error(
                "ROLLBACK", None, "BackgroundSync", "Rollback failed", error=repr(exc)
            )
            await asyncio.sleep(0.2)

    def _sync_source_failed(self, source: str, error: str) -> None:
        self._sync_source_denied[source] = time.monotonic() + SYNC_SOURCE_DENYLIST_S
        self.node.log.info(
            "REPL",
            21799,
            "BackgroundSync",
            "Sync source unavailable",
            syncSource=source,
            error=error,
        )

    async def _initial_sync(self, source: str) -> None:
        self.node.log.info(
            "INITSYNC", 21173, "ReplCoordExtern-0", "Starting initial sync", syncSource=source
        )
        reply = await self._call(source, "fetch", {"_initialSync": 1}, INITIAL_SYNC_TIMEOUT)
        storage = self.node.storage
        for db in storage.database_names():
            if db != "local":
                storage.drop_database(db)
        for item in reply["collections"]:
            storage.replace_all(item["db"], item["coll"], item["docs"])
            for spec in item["indexes"]:
                storage.add_index(item["db"], item["coll"], spec)
        self.txn_records = {id_key(r["_id"]["id"]): r for r in reply.get("txnRecords") or []}
        self._persist_txn_records()
        if reply.get("lastEntry"):
            self._append(reply["lastEntry"])
        storage.sync()
        self.needs_initial_sync = False
        self.node.log.info("INITSYNC", 21192, "ReplCoordExtern-0", "Initial sync done")
        self._set_state(SECONDARY)

    async def _fetch_once(self, source: str) -> None:
        me = self.me()
        body = {
            "_oplogFetch": 1,
            "after": self.last_applied.ts,
            "lastFetched": self.last_applied.doc(),
            "appliedOpTime": self.last_applied.doc(),
            "memberId": me["_id"] if me else -1,
            "term": Int64(self.term),
            "maxAwaitMillis": OPLOG_FETCH_AWAIT_MILLIS,
        }
        reply = await self._call(source, "fetch", body, OPLOG_FETCH_TIMEOUT)
        entries = reply.get("entries") or []
        if not entries:
            return
        delay = int(self.node.settings.parameter("replicationApplyDelayMillis"))
        if delay > 0:
            await asyncio.sleep(delay / 1000 * random.uniform(0.8, 1.2))
        await self.node.writes_allowed()
        for entry in entries:
            if self.state not in (SECONDARY, STARTUP2) or entry["ts"] <= self.last_applied.ts:
                continue
            self._apply(entry)
        self.node.storage.sync()

    # Rollback

    async def _rollback(self, source: str) -> None:
        """Undo this node's oplog entries after the common point with the sync source.

        mongod 4.0+ recovers to a stable timestamp; the double does what mongod's older "refetch"
        rollback did, with the same outcome: each document touched by a rolled-back insert,
        update or delete is replaced by the sync source's current version (or removed if the
        source has none), the local oplog is truncated to the common point, and fetching resumes
        from there. The local versions of those documents are written, as mongod does, to
        <dbPath>/rollback/<collection UUID>/removed.<time>.<n>.bson (a file of concatenated BSON
        documents). Collection-level commands (create/drop/createIndexes) are not undone."""
        self.node.log.info("ROLLBACK", 21593, "BackgroundSync", "Transition to ROLLBACK")
        self._set_state(ROLLBACK)
        started = datetime.datetime.now(UTC)
        try:
            await self._rollback_to_common_point(source, started)
        finally:
            if self.state == ROLLBACK:
                self.node.log.info("ROLLBACK", 21611, "BackgroundSync", "Transition to SECONDARY")
                self._set_state(SECONDARY)

    async def _rollback_to_common_point(self, source: str, started: datetime.datetime) -> None:
        self.node.log.info("ROLLBACK", 21606, "BackgroundSync", "Finding common point")
        candidates = list(reversed(self.oplog[-ROLLBACK_MAX_ENTRIES:]))
        refetch: list[Document] = []
        seen: set[tuple[str, bytes]] = set()
        for entry in candidates:
            ref = _document_ref(entry)
            if ref is not None and (ref["ns"], id_key(ref["_id"])) not in seen:
                seen.add((ref["ns"], id_key(ref["_id"])))
                refetch.append(ref)
        reply = await self._call(
            source,
            "fetch",
            {
                "_rollbackInfo": 1,
                "optimes": [{"ts": e["ts"], "t": e["t"]} for e in candidates],
                "refetch": refetch,
            },
            OPLOG_FETCH_TIMEOUT,
        )
        if reply.get("commonPoint") is None:
            self.node.log.error(
                "ROLLBACK",
                None,
                "BackgroundSync",
                "Rollback failed: no common point with the sync source within the last "
                f"{ROLLBACK_MAX_ENTRIES} oplog entries",
                syncSource=source,
            )
            return
        common = OpTime.from_doc(reply["commonPoint"])
        self.node.log.info(
            "ROLLBACK",
            21607,
            "BackgroundSync",
            "Rollback common point",
            commonPointOpTime=common.doc(),
        )
        keep = [e for e in self.oplog if e["ts"] <= common.ts]
        undone = self.oplog[len(keep) :]
        remote = {(str(d["ns"]), id_key(d["_id"])): d.get("doc") for d in reply.get("docs") or []}
        touched: dict[tuple[str, bytes], Document] = {}
        for entry in undone:
            ref = _document_ref(entry)
            if ref is not None:
                touched.setdefault((ref["ns"], id_key(ref["_id"])), ref)
        storage = self.node.storage
        saved: dict[str, list[Document]] = {}
        for key, ref in touched.items():
            db, _, coll = ref["ns"].partition(".")
            local = storage.find_by_id(db, coll, ref["_id"])
            if local is not None:
                saved.setdefault(ref["ns"], []).append(local)
            theirs = remote.get(key)
            if theirs is not None:
                storage.replace(db, coll, theirs)
            elif local is not None:
                storage.delete(db, coll, ref["_id"])
        directories = []
        for ns, docs in saved.items():
            directories.append(str(self._write_rollback_file(ns, docs)))
        storage.rewrite_oplog(keep)
        self.oplog = keep
        self._forget_rolled_back(undone)
        self.last_applied = common
        self.commit_point = min(self.commit_point, common)
        self._progress_changed()
        self.node.log.info("ROLLBACK", 21592, "BackgroundSync", "Rollback complete")
        summary: Document = {
            "startTime": started,
            "endTime": datetime.datetime.now(UTC),
            "syncSource": source,
            "commonPoint": common.doc(),
            "lastOptimeRolledBack": OpTime(int(undone[-1]["t"]), undone[-1]["ts"]).doc()
            if undone
            else common.doc(),
            "rollbackNamespaces": sorted(touched_ns for touched_ns, _ in touched),
            "totalEntriesRolledBackIncludingNoops": len(undone),
        }
        if directories:
            summary["rollbackDataFileDirectory"] = os.path.commonpath(directories)
        self.node.log.info("ROLLBACK", 21612, "BackgroundSync", "Rollback summary", **summary)

    def _write_rollback_file(self, ns: str, docs: list[Document]) -> Path:
        """mongod's RemoveSaver: <dbPath>/rollback/<uuid>/removed.<time>.<n>.bson."""
        db, _, coll = ns.partition(".")
        collection_uuid = self.node.storage.collection_uuid(db, coll)
        directory = Path(self.node.storage.db_path) / "rollback" / str(collection_uuid)
        stamp = datetime.datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%S")
        path = directory / f"removed.{stamp}.{next(_removed_file_numbers)}.bson"
        self.node.log.info(
            "ROLLBACK",
            21609,
            "BackgroundSync",
            "Preparing to write deleted documents to a rollback file",
            namespace=ns,
            uuid=str(collection_uuid),
            file=str(path),
        )
        directory.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            for doc in docs:
                handle.write(bson_codec.encode(doc))
            handle.flush()
            os.fsync(handle.fileno())
        return directory

    async def _noop_writer_loop(self) -> None:
        """mongod's periodic no-op writer: a primary whose last write is periodicNoopIntervalSecs
        old writes a no-op entry, so every member's lastWrite follows the clock and a member that
        stops replicating falls behind even when clients write nothing."""
        while not self._stopping:
            await asyncio.sleep(1)
            interval = int(self.node.settings.parameter("periodicNoopIntervalSecs"))
            if self.node.fsync_locks or not self.is_writable_primary():
                continue
            if time.time() - self.last_applied.ts.time >= interval:
                self.log_op("n", "", {"msg": "periodic noop"})

    async def _housekeeping_loop(self) -> None:
        """On the primary: drop `newlyAdded` once a new member is a healthy SECONDARY."""
        while not self._stopping:
            await asyncio.sleep(0.2)
            cfg = self.config
            if self.state != PRIMARY or cfg is None:
                continue
            ready = [
                m
                for m in cfg["members"]
                if m.get("newlyAdded")
                and self.members.get(m["_id"], MemberView()).state == SECONDARY
                and self._healthy(m["_id"])
            ]
            if not ready:
                continue
            new = copy.deepcopy(cfg)
            for member in new["members"]:
                if member["_id"] in {m["_id"] for m in ready}:
                    member.pop("newlyAdded", None)
            new["version"] += 1
            new["term"] = self.term
            await self._install_config(new)
