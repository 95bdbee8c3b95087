"""Authentication (SCRAM-SHA-1/256, server and client side) and authorization (built-in roles).

Credentials are stored as mongod stores them in `admin.system.users`: per mechanism a salt, an
iteration count, StoredKey and ServerKey. Plaintext passwords are never stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import stringprep
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from .bson_codec import Document
from .errors import MongoError

MECHANISMS = ("SCRAM-SHA-1", "SCRAM-SHA-256")
_DIGESTS = {"SCRAM-SHA-1": "sha1", "SCRAM-SHA-256": "sha256"}
AUTH_FAILED = "Authentication failed."


def saslprep(text: str) -> str:
    """RFC 4013 SASLprep (stored strings), enough for MongoDB SCRAM-SHA-256 passwords."""
    mapped = "".join(
        " " if stringprep.in_table_c12(c) else c for c in text if not stringprep.in_table_b1(c)
    )
    normalized = unicodedata.normalize("NFKC", mapped)
    prohibited = (
        stringprep.in_table_c12,
        stringprep.in_table_c21_c22,
        stringprep.in_table_c3,
        stringprep.in_table_c4,
        stringprep.in_table_c5,
        stringprep.in_table_c6,
        stringprep.in_table_c7,
        stringprep.in_table_c8,
        stringprep.in_table_c9,
        stringprep.in_table_a1,
    )
    for char in normalized:
        if any(check(char) for check in prohibited):
            raise MongoError(2, "SASLprep: prohibited character in password")
    if any(stringprep.in_table_d1(c) for c in normalized):
        if not (stringprep.in_table_d1(normalized[0]) and stringprep.in_table_d1(normalized[-1])):
            raise MongoError(2, "SASLprep: bidirectional rules violated")
        if any(stringprep.in_table_d2(c) for c in normalized):
            raise MongoError(2, "SASLprep: bidirectional rules violated")
    return normalized


def _password_input(mechanism: str, user: str, password: str) -> bytes:
    if mechanism == "SCRAM-SHA-1":
        return hashlib.md5(f"{user}:mongo:{password}".encode()).hexdigest().encode()
    return saslprep(password).encode()


def _salted(mechanism: str, user: str, password: str, salt: bytes, iterations: int) -> bytes:
    digest = _DIGESTS[mechanism]
    return hashlib.pbkdf2_hmac(digest, _password_input(mechanism, user, password), salt, iterations)


def _hmac(mechanism: str, key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, _DIGESTS[mechanism]).digest()


def _h(mechanism: str, data: bytes) -> bytes:
    return hashlib.new(_DIGESTS[mechanism], data).digest()


def make_credentials(
    user: str, password: str, mechanisms: list[str], iterations: dict[str, int]
) -> Document:
    out: Document = {}
    for mechanism in mechanisms:
        salt = os.urandom(16 if mechanism == "SCRAM-SHA-1" else 28)
        salted = _salted(mechanism, user, password, salt, iterations[mechanism])
        client_key = _hmac(mechanism, salted, b"Client Key")
        out[mechanism] = {
            "iterationCount": iterations[mechanism],
            "salt": base64.b64encode(salt).decode(),
            "storedKey": base64.b64encode(_h(mechanism, client_key)).decode(),
            "serverKey": base64.b64encode(_hmac(mechanism, salted, b"Server Key")).decode(),
        }
    return out


def _parse_fields(message: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in message.split(","):
        if len(part) >= 2 and part[1] == "=":
            fields[part[0]] = part[2:]
    return fields


@dataclass
class ScramConversation:
    """Server side of one SCRAM exchange."""

    mechanism: str
    user: str
    db: str
    credentials: Document | None
    skip_empty_exchange: bool
    client_first_bare: str = ""
    server_first: str = ""
    nonce: str = ""
    step: int = 0
    server_signature: bytes = b""

    def start(self, payload: bytes) -> bytes:
        text = payload.decode()
        if not text.startswith("n,"):
            raise MongoError(2, "SCRAM: channel binding is not supported")
        self.client_first_bare = text.split(",", 2)[2]
        fields = _parse_fields(self.client_first_bare)
        if self.credentials is None:
            raise MongoError(18, AUTH_FAILED)
        self.nonce = fields["r"] + base64.b64encode(os.urandom(24)).decode()
        self.server_first = (
            f"r={self.nonce},s={self.credentials['salt']},i={self.credentials['iterationCount']}"
        )
        self.step = 1
        return self.server_first.encode()

    def proceed(self, payload: bytes) -> tuple[bytes, bool]:
        """Return (reply payload, done)."""
        if self.step == 2:
            self.step = 3
            return b"", True
        if self.step != 1 or self.credentials is None:
            raise MongoError(18, AUTH_FAILED)
        text = payload.decode()
        fields = _parse_fields(text)
        if fields.get("r") != self.nonce or "p" not in fields:
            raise MongoError(18, AUTH_FAILED)
        without_proof = text[: text.rindex(",p=")]
        auth_message = f"{self.client_first_bare},{self.server_first},{without_proof}".encode()
        stored_key = base64.b64decode(self.credentials["storedKey"])
        signature = _hmac(self.mechanism, stored_key, auth_message)
        proof = base64.b64decode(fields["p"])
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=False))
        if len(proof) != len(signature) or not hmac.compare_digest(
            _h(self.mechanism, client_key), stored_key
        ):
            raise MongoError(18, AUTH_FAILED)
        server_key = base64.b64decode(self.credentials["serverKey"])
        self.server_signature = _hmac(self.mechanism, server_key, auth_message)
        self.step = 3 if self.skip_empty_exchange else 2
        reply = b"v=" + base64.b64encode(self.server_signature)
        return reply, self.skip_empty_exchange


class ScramClient:
    """Client side of SCRAM, used by members authenticating to each other as __system."""

    def __init__(self, mechanism: str, user: str, password: str) -> None:
        self.mechanism = mechanism
        self.user = user
        self.password = password
        self.client_nonce = base64.b64encode(os.urandom(24)).decode()
        self.client_first_bare = f"n={user},r={self.client_nonce}"
        self.server_signature = b""

    def first(self) -> bytes:
        return f"n,,{self.client_first_bare}".encode()

    def final(self, server_first: bytes) -> bytes:
        text = server_first.decode()
        fields = _parse_fields(text)
        if not fields["r"].startswith(self.client_nonce):
            raise MongoError(18, "server nonce does not extend the client nonce")
        salt = base64.b64decode(fields["s"])
        salted = _salted(self.mechanism, self.user, self.password, salt, int(fields["i"]))
        client_key = _hmac(self.mechanism, salted, b"Client Key")
        without_proof = f"c=biws,r={fields['r']}"
        auth_message = f"{self.client_first_bare},{text},{without_proof}".encode()
        signature = _hmac(self.mechanism, _h(self.mechanism, client_key), auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_key = _hmac(self.mechanism, salted, b"Server Key")
        self.server_signature = _hmac(self.mechanism, server_key, auth_message)
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify(self, server_final: bytes) -> None:
        fields = _parse_fields(server_final.decode())
        if base64.b64decode(fields.get("v", "")) != self.server_signature:
            raise MongoError(18, "server signature mismatch")


def is_loopback_peer(peer: str | None) -> bool:
    """The localhost exception's test: 127.0.0.0/8, ::1 or a unix socket (peer None)."""
    if peer is None or peer.startswith("/"):
        return True
    try:
        address = ipaddress.ip_address(peer.split("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


# Authorization. A privilege is (resource, actions); resources:
#   ("db", name)          every non-system collection of one database, and the database itself
#   ("ns", db, coll)      one collection (used for system collections)
#   ("anyNormal",)        every non-system collection of every database but local and config
#   ("cluster",)          cluster-wide actions
#   ("any",)              everything (the __system role)
Resource = tuple[str, ...]
Privilege = tuple[Resource, frozenset[str]]

READ = frozenset({"find", "listCollections", "listIndexes", "collStats", "dbStats", "killCursors"})
WRITE = frozenset(
    {
        "insert",
        "update",
        "remove",
        "createCollection",
        "createIndex",
        "dropCollection",
        "dropIndex",
        "killCursors",
    }
)
DB_ADMIN = frozenset(
    {
        "listCollections",
        "listIndexes",
        "collStats",
        "dbStats",
        "createCollection",
        "createIndex",
        "dropCollection",
        "dropDatabase",
        "dropIndex",
        "killCursors",
    }
)
USER_ADMIN = frozenset(
    {
        "createUser",
        "dropUser",
        "grantRole",
        "revokeRole",
        "viewUser",
        "viewRole",
        "changePassword",
        "changeCustomData",
        "createRole",
        "dropRole",
    }
)
CLUSTER_MONITOR = frozenset(
    {
        "replSetGetStatus",
        "replSetGetConfig",
        "serverStatus",
        "getCmdLineOpts",
        "getParameter",
        "listDatabases",
        "connPoolStats",
        "top",
        "getDefaultRWConcern",
    }
)
CLUSTER_MANAGER = frozenset(
    {"replSetConfigure", "replSetStateChange", "setParameter", "setDefaultRWConcern"}
)
HOST_MANAGER = frozenset({"shutdown", "setParameter", "killop", "logRotate", "fsync", "unlock"})

DB_ROLES = ("read", "readWrite", "dbAdmin", "userAdmin", "dbOwner")
ADMIN_ONLY_ROLES = (
    "readAnyDatabase",
    "readWriteAnyDatabase",
    "dbAdminAnyDatabase",
    "userAdminAnyDatabase",
    "clusterMonitor",
    "clusterManager",
    "hostManager",
    "clusterAdmin",
    "backup",
    "restore",
    "root",
    "__system",
)


def role_exists(role: str, db: str) -> bool:
    return role in DB_ROLES or (db == "admin" and role in ADMIN_ONLY_ROLES)


def role_privileges(role: str, db: str) -> list[Privilege]:
    users = ("ns", "admin", "system.users")
    if role == "read":
        return [(("db", db), READ)]
    if role == "readWrite":
        return [(("db", db), READ | WRITE)]
    if role == "dbAdmin":
        return [(("db", db), DB_ADMIN)]
    if role == "userAdmin":
        return [(("db", db), USER_ADMIN)]
    if role == "dbOwner":
        return [(("db", db), READ | WRITE | DB_ADMIN | USER_ADMIN)]
    if role == "readAnyDatabase":
        return [(("anyNormal",), READ), (("cluster",), frozenset({"listDatabases"}))]
    if role == "readWriteAnyDatabase":
        return [(("anyNormal",), READ | WRITE), (("cluster",), frozenset({"listDatabases"}))]
    if role == "dbAdminAnyDatabase":
        return [(("anyNormal",), DB_ADMIN), (("cluster",), frozenset({"listDatabases"}))]
    if role == "userAdminAnyDatabase":
        return [
            (("anyNormal",), USER_ADMIN),
            (("cluster",), frozenset({"listDatabases"})),
            (users, frozenset({"find"})),
        ]
    if role == "clusterMonitor":
        return [
            (("cluster",), CLUSTER_MONITOR),
            (("ns", "local", "oplog.rs"), READ),
            (("ns", "local", "system.replset"), frozenset({"find"})),
        ]
    if role == "clusterManager":
        return [
            (("cluster",), CLUSTER_MANAGER | frozenset({"listDatabases"})),
            (("ns", "local", "system.replset"), READ),
        ]
    if role == "hostManager":
        return [(("cluster",), HOST_MANAGER)]
    if role == "clusterAdmin":
        return [
            *role_privileges("clusterMonitor", db),
            *role_privileges("clusterManager", db),
            *role_privileges("hostManager", db),
            (("anyNormal",), frozenset({"dropDatabase"})),
        ]
    if role == "backup":
        return [
            (("anyNormal",), READ),
            (("cluster",), frozenset({"listDatabases", "serverStatus", "replSetGetStatus"})),
            (("ns", "local", "oplog.rs"), READ),
            (("db", "config"), READ),
            (("db", "local"), READ),
            (users, READ),
        ]
    if role == "restore":
        return [
            (("anyNormal",), WRITE | frozenset({"listCollections", "listIndexes"})),
            (("anyNormal",), USER_ADMIN),
            (("cluster",), frozenset({"listDatabases"})),
            (users, WRITE | READ),
            # mongorestore's default temporary collections, which _mergeAuthzCollections reads
            (("ns", "admin", "tempusers"), frozenset({"find"})),
            (("ns", "admin", "temproles"), frozenset({"find"})),
        ]
    if role == "root":
        return [
            privilege
            for sub in (
                "readWriteAnyDatabase",
                "dbAdminAnyDatabase",
                "userAdminAnyDatabase",
                "clusterAdmin",
                "restore",
                "backup",
            )
            for privilege in role_privileges(sub, "admin")
        ]
    if role == "__system":
        return [(("any",), frozenset({"*"}))]
    return []


def _resource_covers(have: Resource, want: Resource) -> bool:
    if have == ("any",):
        return True
    if want == ("anyNormal",):  # asked of the pattern itself (mongod: forAnyNormalResource)
        return have == want
    if want == ("cluster",) or have == ("cluster",):
        return have == want
    want_db = want[1]
    want_coll = want[2] if want[0] == "ns" else None
    system = want_coll is not None and want_coll.startswith("system.")
    if have[0] == "ns":
        return want[0] == "ns" and have[1:] == want[1:]
    if have[0] == "db":
        return have[1] == want_db and not system
    # anyNormal
    return not system and want_db not in ("local", "config")


@dataclass
class Principal:
    user: str
    db: str
    roles: list[Document] = field(default_factory=list)

    def privileges(self) -> list[Privilege]:
        return [p for role in self.roles for p in role_privileges(role["role"], role["db"])]


def is_authorized(principals: list[Principal], resource: Resource, actions: set[str]) -> bool:
    needed = set(actions)
    for principal in principals:
        for have, granted in principal.privileges():
            if _resource_covers(have, resource):
                if "*" in granted:
                    return True
                needed -= granted
                if not needed:
                    return True
    return not needed


LOCALHOST_EXCEPTION: list[Privilege] = [
    (("db", "admin"), frozenset({"createUser", "grantRole"})),
    (("db", "$external"), frozenset({"createUser"})),
    (("cluster",), frozenset({"replSetConfigure", "replSetGetStatus", "addShard"})),
]


def localhost_exception_allows(resource: Resource, actions: set[str]) -> bool:
    """The bypass grants only its fixed privileges (database-level on admin and $external)."""
    for have, granted in LOCALHOST_EXCEPTION:
        if have == ("cluster",):
            matches = resource == ("cluster",)
        else:
            matches = resource[0] in ("db", "ns") and resource[1] == have[1]
        if matches and actions <= granted:
            return True
    return False


def builtin_role_info(role: str, db: str, show_privileges: bool) -> dict[str, Any]:
    info: dict[str, Any] = {
        "role": role,
        "db": db,
        "isBuiltin": True,
        "roles": [],
        "inheritedRoles": [],
    }
    if show_privileges:
        info["privileges"] = [
            {"resource": _render_resource(res), "actions": sorted(actions)}
            for res, actions in role_privileges(role, db)
        ]
    return info


def _render_resource(resource: Resource) -> Document:
    if resource == ("cluster",):
        return {"cluster": True}
    if resource == ("any",):
        return {"anyResource": True}
    if resource == ("anyNormal",):
        return {"db": "", "collection": ""}
    if resource[0] == "db":
        return {"db": resource[1], "collection": ""}
    return {"db": resource[1], "collection": resource[2]}
