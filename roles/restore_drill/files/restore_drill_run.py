"""Restore drill, on the target set's primary: restore, mask and verify in a scratch mongod, then
copy only the masked namespaces into the target set.

Run inside a transient systemd unit with a private /tmp (PrivateTmp=yes) and a run-time limit: the
archive, the scratch instance's dbPath and its log live there, and systemd removes them when the
unit stops, however it stops (an error, a kill, the limit). The target set receives nothing but
masked documents, so neither its data files nor its oplog ever hold an original value.

Reads a JSON request on stdin (never argv: it holds the presigned URL and the target's password):
  {"url": "<presigned URL of the archive>", "sha256": "<hex>",
   "mongod": "/usr/bin/mongod", "mongorestore": "/usr/bin/mongorestore", "scratch_port": 27117,
   "tls": {"ca_file": "/etc/clinic/tls/ca.pem", "certificate_key_file": "/etc/clinic/tls/host.pem"},
   "target": {"uri": "mongodb://admin@127.0.0.1:27017/?authSource=admin", "password": "..."},
   "expected": {"db.collection": count, ...},      # the manifest's counts (user databases)
   "rules": [{"namespace": "db.coll", "fields": {"field.path": "generator"}}, ...],
   "unmasked": ["db.coll", ...],                   # namespaces declared to hold no patient data
   "subset": {"db.coll": {"days": 30, "field": "createdAt"} | {"fraction": 0.2}
                         | {"follow": "db.other", "field": "otherId"}, ...},
   "taken_at": "YYYYmmddTHHMMSSZ",                 # the backup's timestamp (days are counted back)
   "point_in_time": "" | "YYYY-MM-DDTHH:MM:SSZ",   # a restore to that time, with:
   "oplog_from": "YYYY-MM-DDTHH:MM:SSZ",           #   the backup's start, and
   "oplog": [{"url": "<presigned URL of a slice>", "sha256": "<hex>"}, ...]}  # its slices
and prints a JSON report, with the seconds each step took (download, restore, replay, mask, copy).
Exit 1 when the drill stops (a count differs from the manifest, a restored namespace has neither a
rule nor an unmasked declaration, an original value survives the masking, the copy is short);
exit 2 on bad input. Nothing it prints quotes a document: tools' output and
exception texts can, so they stay in the private /tmp or are reduced to their type and code.

Fake values are derived from each document's _id and the value's path (the same document always
gets the same fake), so they carry nothing of the original. A path through arrays is masked
element by element. Generators: name, email, phone, date, text, null.

A namespace with a subset rule copies only some documents (validated by the role beforehand): those
whose date field is at most `days` older than the backup, a fixed `fraction` chosen by a hash of
the _id (the same documents every drill), or those whose `field` holds the _id of a document kept
of the namespace they `follow` (visits of the sampled patients). Other namespaces copy whole.

The restore brings the source's users and roles into the scratch instance (mongorestore restores
admin.system.users and admin.system.roles from a full dump, and --oplogReplay admits no
--nsExclude): the masking step drops them first, so the scratch instance holds no credential of
the source while it is masked and copied from; admin.* is never copied.

A restore to a point in time replays the archived oplog onto the restored backup, after its counts
are checked against the manifest and before masking: the entries from the backup's start up to the
point, with mongorestore --oplogReplay --oplogFile --oplogLimit. Masking, the checks and the copy
then run as always.

With `tls` (the host's certificate, which only root and the TLS group can read), the scratch
instance requires TLS and a client certificate of the CA, like the set: no other local user can
connect to it and read the unmasked restore. Without it, the scratch instance is plaintext.
"""

from __future__ import annotations

import contextlib
import datetime
import gzip
import hashlib
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import bson
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient, ReplaceOne, WriteConcern
from pymongo.errors import OperationFailure, PyMongoError

GENERATORS = ("name", "email", "phone", "date", "text", "null")
SYSTEM_DBS = ("admin", "config", "local")
BATCH = 1000
MAJORITY = WriteConcern(w="majority")
POINT = "%Y-%m-%dT%H:%M:%SZ"
RAW = CodecOptions(document_class=RawBSONDocument)


class DrillStopped(Exception):
    """A check failed: the report says why; nothing unmasked left the scratch instance."""


def fake(generator: str, doc_id: Any, path: str) -> Any:
    digest = hashlib.sha256(bson.encode({"i": doc_id, "p": path})).hexdigest()
    number = int(digest[:12], 16)
    if generator == "name":
        return f"Masked Patient {digest[:8]}"
    if generator == "email":
        return f"patient-{digest[:12]}@example.invalid"
    if generator == "phone":
        return f"+91 00000 {number % 100000:05d}"
    if generator == "date":
        # A day of 1900: far from any living patient's date, so a fake never equals an original.
        epoch = datetime.datetime(1900, 1, 1, tzinfo=datetime.UTC)
        return epoch + datetime.timedelta(days=number % 365)
    if generator == "text":
        return f"masked-{digest[:16]}"
    return None


def leaves(node: Any, parts: list[str], trail: tuple[str, ...]) -> Iterator[tuple[Any, Any, str]]:
    """(container, key, concrete path) of every value at a dotted path, through arrays element by
    element: `contacts.phone` reaches the phone of every contact, `tags` every tag."""
    if isinstance(node, list):
        for index, item in enumerate(node):
            yield from leaves(item, parts, (*trail, str(index)))
        return
    if not isinstance(node, dict) or parts[0] not in node:
        return
    key, rest = parts[0], parts[1:]
    if rest:
        yield from leaves(node[key], rest, (*trail, key))
    elif isinstance(node[key], list):
        for index in range(len(node[key])):
            yield node[key], index, ".".join((*trail, key, str(index)))
    else:
        yield node, key, ".".join((*trail, key))


def fingerprint(value: Any) -> str:
    return hashlib.sha256(bson.encode({"v": value})).hexdigest()


def mask(scratch: MongoClient[dict[str, Any]], rule: dict[str, Any]) -> dict[str, Any]:
    db_name, _, coll_name = rule["namespace"].partition(".")
    coll = scratch[db_name][coll_name]
    fields: dict[str, str] = rule["fields"]
    originals: dict[str, set[str]] = {path: set() for path in fields}
    masked = dict.fromkeys(fields, 0)
    writes: list[ReplaceOne[dict[str, Any]]] = []
    # Read, change in memory, replace: the cursor never walks over documents it has changed.
    for doc in coll.find({}):
        changed = False
        for path, generator in fields.items():
            for container, key, concrete in leaves(doc, path.split("."), ()):
                if container[key] is None:
                    continue
                originals[path].add(fingerprint(container[key]))
                container[key] = fake(generator, doc["_id"], concrete)
                masked[path] += 1
                changed = True
        if changed:
            writes.append(ReplaceOne({"_id": doc["_id"]}, doc))
        if len(writes) >= BATCH:
            coll.bulk_write(writes, ordered=False)
            writes = []
    if writes:
        coll.bulk_write(writes, ordered=False)
    remaining = dict.fromkeys(fields, 0)
    for doc in coll.find({}):
        for path in fields:
            for container, key, _ in leaves(doc, path.split("."), ()):
                if container[key] is not None and fingerprint(container[key]) in originals[path]:
                    remaining[path] += 1
    return {"namespace": rule["namespace"], "masked": masked, "originals_remaining": remaining}


def check_request(request: dict[str, Any]) -> str | None:
    rules = request["rules"]
    if not rules or any(not rule["fields"] for rule in rules):
        return "the masking rules are empty: a drill masks at least one field"
    for rule in rules:
        unknown = sorted(set(rule["fields"].values()) - set(GENERATORS))
        if unknown or "." not in rule["namespace"]:
            return (
                f"bad masking rule for {rule['namespace']}: generators are {', '.join(GENERATORS)}"
            )
    overlap = {rule["namespace"] for rule in rules} & set(request["unmasked"])
    if overlap:
        return f"{', '.join(sorted(overlap))}: both masked and declared unmasked"
    return None


def download(url: str, sha256: str, dest: Path, what: str = "archive") -> int:
    digest = hashlib.sha256()
    size = 0
    with urllib.request.urlopen(url, timeout=60) as response, dest.open("wb") as out:
        while chunk := response.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
    if digest.hexdigest() != sha256:
        raise DrillStopped(f"the {what}'s sha256 is not the manifest's")
    return size


class Scratch(NamedTuple):
    """The throw-away mongod: its port and, with TLS, the CA file and the host's certificate."""

    port: int
    ca_file: str = ""
    certificate_key_file: str = ""

    @classmethod
    def of(cls, request: dict[str, Any]) -> Scratch:
        tls = request.get("tls") or {}
        return cls(
            int(request["scratch_port"]),
            tls.get("ca_file", ""),
            tls.get("certificate_key_file", ""),
        )

    def mongod_options(self) -> list[str]:
        if not self.ca_file:
            return []
        return [
            "--tlsMode", "requireTLS",
            "--tlsCAFile", self.ca_file,
            "--tlsCertificateKeyFile", self.certificate_key_file,
            "--tlsDisabledProtocols", "TLS1_0,TLS1_1",
        ]  # fmt: skip

    def client(self, timeout_ms: int = 30000) -> MongoClient[dict[str, Any]]:
        tls: dict[str, Any] = (
            {
                "tls": True,
                "tlsCAFile": self.ca_file,
                "tlsCertificateKeyFile": self.certificate_key_file,
            }
            if self.ca_file
            else {}
        )
        return MongoClient(
            f"mongodb://127.0.0.1:{self.port}/?directConnection=true",
            serverSelectionTimeoutMS=timeout_ms,
            **tls,
        )

    def tool_options(self) -> list[str]:
        """mongo-tools' TLS flags (their --ssl names)."""
        if not self.ca_file:
            return []
        return [
            "--ssl",
            f"--sslCAFile={self.ca_file}",
            f"--sslPEMKeyFile={self.certificate_key_file}",
        ]


def start_scratch(mongod: str, scratch: Scratch, work: Path) -> subprocess.Popen[bytes]:
    """A throw-away standalone mongod: its own dbPath, 127.0.0.1 only, no replica set, no users,
    no unix socket, the TTL monitor off (it would delete restored documents), its log private."""
    (work / "db").mkdir(mode=0o700)
    argv = [
        mongod,
        "--dbpath", str(work / "db"),
        "--port", str(scratch.port),
        "--bind_ip", "127.0.0.1",
        "--nounixsocket",
        "--setParameter", "ttlMonitorEnabled=false",
        "--logpath", str(work / "mongod.log"),
        *scratch.mongod_options(),
    ]  # fmt: skip
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DrillStopped(f"the scratch mongod exited {process.returncode} at start")
        try:
            with scratch.client(1000) as probe:
                probe.admin.command("ping")
            return process
        except PyMongoError:
            time.sleep(0.5)
    raise DrillStopped("the scratch mongod did not answer within 60 s")


def run_mongorestore(
    mongorestore: str, scratch: Scratch, options: list[str], work: Path, what: str
) -> None:
    """mongorestore into the scratch instance. Its output can quote documents (duplicate keys): it
    stays in the private /tmp."""
    uri = f"--uri=mongodb://127.0.0.1:{scratch.port}/?directConnection=true"
    with (work / "mongorestore.log").open("ab") as log:
        rc = subprocess.run(
            [mongorestore, uri, *scratch.tool_options(), *options],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            check=False,
        ).returncode
    if rc != 0:
        raise DrillStopped(f"{what} into the scratch instance: mongorestore exited {rc}")


def restore(mongorestore: str, scratch: Scratch, archive: Path, work: Path) -> None:
    """The archive with its oplog into the scratch instance."""
    options = ["--gzip", f"--archive={archive}", "--oplogReplay", "--drop"]
    run_mongorestore(mongorestore, scratch, options, work, "the restore of the archive")


def replay_oplog(request: dict[str, Any], work: Path, report: dict[str, Any]) -> None:
    """A restore to a point in time: the archived oplog slices (gzipped raw entries, in oplog
    order) joined into one file, then every entry from the backup's start up to the point
    (`--oplogLimit`: the entries before that second) replayed onto the restored backup. Entries the
    backup already holds are replayed again, which oplog application allows (it is idempotent)."""
    since, until = (
        int(datetime.datetime.strptime(request[k], POINT).replace(tzinfo=datetime.UTC).timestamp())
        for k in ("oplog_from", "point_in_time")
    )
    since_ts = bson.Timestamp(since, 0)
    joined = work / "oplog.bson"
    entries = 0
    with joined.open("wb") as out:
        for index, piece in enumerate(request["oplog"]):
            part = work / f"oplog-{index}.bson.gz"
            download(piece["url"], piece["sha256"], part, "oplog slice")
            with gzip.open(part, "rb") as slice_file:
                for raw in bson.decode_file_iter(slice_file, RAW):
                    if raw["ts"] >= since_ts:
                        out.write(raw.raw)
                        entries += raw["ts"].time < until
            part.unlink()
    (work / "empty").mkdir()
    run_mongorestore(
        request["mongorestore"],
        Scratch.of(request),
        ["--oplogReplay", f"--oplogFile={joined}", f"--oplogLimit={until}:0", str(work / "empty")],
        work,
        "the oplog replay",
    )
    joined.unlink()
    report["oplog_entries"] = entries


def drop_source_credentials(scratch: MongoClient[dict[str, Any]]) -> None:
    """Drop the users and roles the restore brought, in every database that defines some."""
    for coll, command in (
        ("system.users", "dropAllUsersFromDatabase"),
        ("system.roles", "dropAllRolesFromDatabase"),
    ):
        defined = scratch.admin[coll]
        for db_name in sorted({doc["db"] for doc in defined.find({}, {"db": 1})}):
            scratch[db_name].command(command)
        if defined.count_documents({}):
            raise DrillStopped(f"admin.{coll}: the source's entries remain in the scratch instance")


def user_namespaces(client: MongoClient[dict[str, Any]]) -> set[str]:
    return {
        f"{db}.{coll}"
        for db in client.list_database_names()
        if db not in SYSTEM_DBS
        for coll in client[db].list_collection_names()
        if not coll.startswith("system.")
    }


def value_key(value: Any) -> bytes:
    """A value as comparable bytes (equal BSON encodings, equal values)."""
    return bson.encode({"v": value})


def sample_point(doc_id: Any) -> float:
    """Where a document falls in [0, 1): the same for an _id in every drill."""
    return int(hashlib.sha256(value_key(doc_id)).hexdigest()[:8], 16) / 0x100000000


def field_value(doc: dict[str, Any], path: str) -> Any:
    node: Any = doc
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def selection(
    rule: dict[str, Any] | None, taken_at: datetime.datetime, kept: dict[str, set[bytes]]
) -> tuple[dict[str, Any], Callable[[dict[str, Any]], bool]]:
    """The scratch query and the per-document test that choose what a namespace copies."""
    if rule is None:
        return {}, lambda doc: True
    if "days" in rule:
        since = taken_at - datetime.timedelta(days=int(rule["days"]))
        return {rule["field"]: {"$gte": since}}, lambda doc: True
    if "fraction" in rule:
        fraction = float(rule["fraction"])
        return {}, lambda doc: sample_point(doc["_id"]) < fraction
    if "follow" in rule:
        ids = kept[rule["follow"]]
        return {}, lambda doc: value_key(field_value(doc, rule["field"])) in ids
    raise DrillStopped(f"unknown subset rule {sorted(rule)}")


def copy(
    scratch: MongoClient[dict[str, Any]],
    target: MongoClient[dict[str, Any]],
    namespace: str,
    chosen: tuple[dict[str, Any], Callable[[dict[str, Any]], bool]],
    kept_ids: set[bytes] | None = None,
) -> tuple[int, int]:
    """Replace a namespace of the target set with the chosen documents of the scratch instance's
    masked copy (adding their _ids to kept_ids); (documents in the target, documents chosen)."""
    db_name, _, coll_name = namespace.partition(".")
    source = scratch[db_name][coll_name]
    dest = target[db_name].get_collection(coll_name, write_concern=MAJORITY)
    dest.drop()
    target[db_name].create_collection(coll_name, write_concern=MAJORITY)
    for spec in source.list_indexes():
        if spec["name"] != "_id_":
            options = {k: v for k, v in spec.items() if k not in ("key", "v", "ns")}
            dest.create_index(list(spec["key"].items()), **options)
    query, keep = chosen
    batch: list[dict[str, Any]] = []
    selected = 0
    for doc in source.find(query):
        if not keep(doc):
            continue
        selected += 1
        if kept_ids is not None:
            kept_ids.add(value_key(doc["_id"]))
        batch.append(doc)
        if len(batch) >= BATCH:
            dest.insert_many(batch, ordered=True)
            batch = []
    if batch:
        dest.insert_many(batch, ordered=True)
    return dest.count_documents({}), selected


def copy_into_target(
    scratch: MongoClient[dict[str, Any]],
    request: dict[str, Any],
    restored: set[str],
    report: dict[str, Any],
) -> None:
    """Every restored namespace, whole or its subset, into the target set."""
    subset = request.get("subset") or {}
    taken_at = datetime.datetime.strptime(request["taken_at"], "%Y%m%dT%H%M%SZ").replace(
        tzinfo=datetime.UTC
    )
    followed = {rule["follow"] for rule in subset.values() if "follow" in rule}
    kept: dict[str, set[bytes]] = {namespace: set() for namespace in followed}
    # Followed namespaces first: their kept _ids choose the documents of the others.
    order = sorted(restored, key=lambda ns: ("follow" in subset.get(ns, {}), ns))
    with MongoClient(request["target"]["uri"], password=request["target"]["password"]) as target:
        for namespace in order:
            chosen = selection(subset.get(namespace), taken_at, kept)
            copied, selected = copy(scratch, target, namespace, chosen, kept.get(namespace))
            report["copied"][namespace] = copied
            if copied != selected:
                raise DrillStopped(
                    f"{namespace}: {copied} documents copied into the target, {selected} chosen"
                )


@contextlib.contextmanager
def timed(report: dict[str, Any], step: str) -> Iterator[None]:
    """The seconds a step of the drill took, in the report's `seconds`."""
    started = time.monotonic()
    try:
        yield
    finally:
        report["seconds"][step] = round(time.monotonic() - started, 1)


def drill(request: dict[str, Any], work: Path, report: dict[str, Any]) -> None:
    archive = work / "dump.archive.gz"
    with timed(report, "download"):
        report["archive_bytes"] = download(request["url"], request["sha256"], archive)
    instance = Scratch.of(request)
    scratch_process = start_scratch(request["mongod"], instance, work)
    try:
        with timed(report, "restore"):
            restore(request["mongorestore"], instance, archive, work)
        archive.unlink()
        with instance.client() as scratch:
            covered = {rule["namespace"] for rule in request["rules"]} | set(request["unmasked"])
            restored = user_namespaces(scratch)
            uncovered = sorted(restored - covered)
            if uncovered:
                raise DrillStopped(
                    f"{', '.join(uncovered)}: restored but neither masked by a rule nor declared "
                    "unmasked (restore_drill_unmasked_namespaces)"
                )
            for namespace, expected in sorted(request["expected"].items()):
                db_name, _, coll_name = namespace.partition(".")
                actual = scratch[db_name][coll_name].count_documents({})
                report["counts"][namespace] = {"expected": expected, "restored": actual}
                if actual != expected:
                    raise DrillStopped(
                        f"{namespace}: {actual} documents, the manifest says {expected}"
                    )
            if request.get("point_in_time"):
                with timed(report, "replay"):
                    replay_oplog(request, work, report)
            with timed(report, "mask"):
                drop_source_credentials(scratch)
                for rule in request["rules"]:
                    result = mask(scratch, rule)
                    report["masking"].append(result)
                    left = {k: v for k, v in result["originals_remaining"].items() if v}
                    if left:
                        raise DrillStopped(f"{rule['namespace']}: original values remain in {left}")
            with timed(report, "copy"):
                copy_into_target(scratch, request, restored, report)
    finally:
        scratch_process.terminate()
        scratch_process.wait(timeout=60)


def main() -> int:
    request = json.load(sys.stdin)
    problem = check_request(request)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    report: dict[str, Any] = {
        "counts": {},
        "masking": [],
        "copied": {},
        "problems": [],
        "seconds": {},
    }
    try:
        with tempfile.TemporaryDirectory(prefix="clinic-restore-drill-") as work:
            drill(request, Path(work), report)
    except DrillStopped as exc:
        report["problems"].append(str(exc))
    except OperationFailure as exc:
        # Server error texts can quote a document (a duplicate key): the code only.
        report["problems"].append(
            f"MongoDB error {exc.code} ({exc.details and exc.details.get('codeName')})"
        )
    except (PyMongoError, OSError) as exc:
        report["problems"].append(f"{type(exc).__name__} during the drill")
    json.dump(report, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
