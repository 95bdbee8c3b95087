"""Restore benchmark: the nightly backup, an oplog slice and the restore drill to a point in time.

Everything runs on 127.0.0.1 against the MongoDB double (tests/doubles/mongodb, Python), so the
times are the double's, not mongod's. Two one-member replica sets with a keyFile and an admin
user: the source, seeded with at least 200 MB (BSON, MB = 2^20 bytes) of a `clinic` database
(patients with contacts, their visits with clinical notes, audit records), and the stage set the
drill fills. Then, as the platform does it:

1. the nightly backup: `mongodump --oplog --gzip --archive` of the source as the backup user
   (roles/backup_cron/files/clinic-backup), and its manifest (`clinic_backup_tool.py manifest`);
2. after the dump, a few thousand writes on the source (visits inserted and updated, audit
   records deleted), then one more write a second later, after the point in time; then the oplog
   slice (`clinic_backup_tool.py oplog-slice`, going on from an earlier slice as the 15-minute
   chain does), checked as the role checks slices (restore_drill_pitr_problems);
3. the drill (roles/restore_drill/files/restore_drill_run.py), fed its JSON request on stdin as
   roles/restore_drill/tasks/run.yml does: the archive and the slice served over HTTP from this
   process, `mongod` and `mongorestore` small scripts that start the double and its tool, the
   stage set as the target, clinic.patients masked, the point in time just after the writes.

The run fails (exit 1, no figures) unless the drill exits 0, no original value survives the
masking, and the stage set holds what the source held at the point in time: the writes before it
replayed (counts, the updated visits), the write after it absent.

Figures: archive_mb, the gzipped archive; restore_s, the drill's restore of the archive plus the
replay of the slice (seconds.restore + seconds.replay of its report); mask_s, its masking;
pitr_rpo_s, the worst-case age of the newest recoverable write with the default schedule: a slice
every 900 s (backup_cron_oplog_interval_minutes: 15) plus the time one slice takes (slice_s; the
upload to S3 not counted); rto_s, the wall time of the whole drill command (download, scratch
mongod, restore, replay, mask, copy into the stage set). Then: docs and data_mb seeded, the
writes after the dump, dump_s, replay_s, slice_s, copy_s.

Run from the repository root: python -m tests.bench.restore [--mb N]
(--mb: the data to seed, 200 unless given; smaller sizes only try the benchmark out)
Last line: archive_mb=<MB> restore_s=<s> mask_s=<s> pitr_rpo_s=<s> rto_s=<s> docs=<n> data_mb=<MB>
writes=<n> dump_s=<s> replay_s=<s> slice_s=<s> copy_s=<s>
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import functools
import hashlib
import http.server
import json
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bson
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient, UpdateOne

from plugins.filter.restore_drill_pitr_problems import restore_drill_pitr_problems

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "roles/backup_cron/files/clinic_backup_tool.py"
DRILL = REPO / "roles/restore_drill/files/restore_drill_run.py"
MB = 1 << 20
DATA_MB = 200
# backup_cron_oplog_interval_minutes (15): a write is at most this old when the next slice runs.
SLICE_INTERVAL_S = 900
# Writes between the dump and the point in time (fewer only when a small --mb seeds fewer visits
# or audit records than that).
NEW_VISITS, UPDATED_VISITS, DELETED_AUDIT = 2000, 1000, 1000
PATIENTS_PER_BATCH = 10
POINT = "%Y-%m-%dT%H:%M:%SZ"
STAMP = "%Y%m%dT%H%M%SZ"
# The drill's masking rules for the patients (restore_drill_masking_rules) and the namespaces
# declared to hold no patient data.
RULES = [
    {
        "namespace": "clinic.patients",
        "fields": {
            "name": "name",
            "email": "email",
            "phone": "phone",
            "dateOfBirth": "date",
            "address": "text",
            "contacts.phone": "phone",
        },
    }
]
UNMASKED = ["clinic.audit_log", "clinic.visits"]

FIRST = [
    "Asha", "Ravi", "Meera", "Arjun", "Kavya", "Vikram", "Divya", "Rahul", "Lakshmi", "Suresh",
    "Anita", "Karthik", "Priya",
]  # fmt: skip
LAST = [
    "Rao", "Iyer", "Nair", "Reddy", "Sharma", "Menon", "Gowda", "Pillai", "Shetty", "Kulkarni",
    "Das", "Bhat", "Joshi",
]  # fmt: skip
STREETS = ["MG Road", "Brigade Road", "Residency Road", "Church Street", "Hosur Road"]
CITIES = ["Bengaluru", "Mysuru", "Mangaluru", "Hubballi", "Chennai", "Kochi"]
DEPARTMENTS = ["general", "cardiology", "orthopaedics", "paediatrics", "dermatology", "ent"]
DRUGS = ["paracetamol", "amoxicillin", "metformin", "amlodipine", "cetirizine", "omeprazole"]
# The notes are random words of this vocabulary, so that gzip does not reduce them to nothing.
NOTES_VOCABULARY = (
    "patient reports mild moderate severe pain fever cough fatigue since days weeks history of "
    "hypertension diabetes asthma no known allergies examination reveals chest clear abdomen soft "
    "non tender pulse regular blood pressure stable advised rest fluids review after follow up "
    "prescribed tablets twice daily once after food investigations ordered complete blood count "
    "lipid profile thyroid function x ray ultrasound ecg normal findings within limits wound "
    "dressing changed healing well sutures removed physiotherapy continue diet exercise sleep "
    "counselled regarding medication adherence symptoms improved worsened unchanged referred to "
    "specialist plan discussed with family consent obtained vaccination due next visit"
)
WORDS = NOTES_VOCABULARY.split()


class BenchFailed(Exception):
    """A step failed or a check did not hold: no figures are printed."""


def stop_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(f"stopped by signal {signum}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise BenchFailed(f"timed out after {timeout:.0f} s waiting for {what}")


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class ReplicaSet:
    """A one-member replica set of the double, with a keyFile and an admin user (root)."""

    name: str
    port: int
    work: Path
    process: subprocess.Popen[bytes]
    password: str

    def client(self, user: str = "admin", password: str | None = None) -> MongoClient[Any]:
        # The double answers nothing else while it runs a write command: the driver's monitor
        # must not give up on the server (and cancel the write) while a long insert runs.
        return MongoClient(
            "127.0.0.1",
            self.port,
            directConnection=True,
            username=user,
            password=password or self.password,
            authSource="admin",
            connectTimeoutMS=3_600_000,
            serverSelectionTimeoutMS=30_000,
            w=1,
        )

    def uri(self, user: str) -> str:
        return f"mongodb://{user}@127.0.0.1:{self.port}/?authSource=admin&directConnection=true"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_set(name: str, base: Path, key_file: Path, started: list[ReplicaSet]) -> ReplicaSet:
    """Start the double with --replSet and --keyFile, initiate the set through the localhost
    exception and create the admin user, as the secured sets of the double's tests are made."""
    work = base / name
    (work / "db").mkdir(parents=True)
    port = free_port()
    log = work / "mongod.log"
    argv = [
        sys.executable, "-m", "tests.doubles.mongodb",
        "--port", str(port), "--bind_ip", "127.0.0.1", "--nounixsocket",
        "--dbpath", str(work / "db"), "--logpath", str(log),
        "--replSet", name, "--keyFile", str(key_file),
    ]  # fmt: skip
    with (work / "console.log").open("wb") as console:
        process = subprocess.Popen(argv, cwd=REPO, stdout=console, stderr=console)
    node = ReplicaSet(name, port, work, process, base64.b32encode(os.urandom(10)).decode())
    started.append(node)

    def listening() -> bool:
        if process.poll() is not None:
            raise BenchFailed(f"the {name} set's server exited {process.returncode} at start")
        return log.exists() and "Waiting for connections" in log.read_text(encoding="utf-8")

    wait_until(listening, 30, f"the {name} set's server to listen")
    with MongoClient("127.0.0.1", port, directConnection=True) as local:
        config = {"_id": name, "members": [{"_id": 0, "host": f"127.0.0.1:{port}"}]}
        local.admin.command("replSetInitiate", config)
        wait_until(
            lambda: local.admin.command("hello").get("isWritablePrimary"),
            30,
            f"the {name} set to elect its primary",
        )
        local.admin.command("createUser", "admin", pwd=node.password, roles=["root"])
    return node


def text(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(low, high)))


def phone(rng: random.Random) -> str:
    return f"+91 9{rng.randrange(1000, 10000)} {rng.randrange(100000):05d}"


def patient(rng: random.Random, index: int) -> dict[str, Any]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    born = datetime.datetime(1940, 1, 1, tzinfo=datetime.UTC)
    return {
        "_id": f"p{index:07d}",
        "name": f"{first} {last}",
        "email": f"{first}.{last}{index}@mail.example".lower(),
        "phone": phone(rng),
        "dateOfBirth": born + datetime.timedelta(days=rng.randrange(30_000)),
        "address": f"{rng.randrange(1, 500)} {rng.choice(STREETS)}, {rng.choice(CITIES)}",
        "ward": f"ward-{index % 12}",
        "bloodGroup": rng.choice(["A+", "B+", "O+", "AB+", "A-", "O-"]),
        "contacts": [
            {"relation": relation, "name": f"{rng.choice(FIRST)} {last}", "phone": phone(rng)}
            for relation in ("spouse", "parent")
        ],
        "history": text(rng, 50, 110),
        "createdAt": utc_now() - datetime.timedelta(days=rng.randrange(3000)),
    }


def visit(rng: random.Random, visit_id: int, patient_id: str) -> dict[str, Any]:
    return {
        "_id": visit_id,
        "patient": patient_id,
        "at": utc_now() - datetime.timedelta(minutes=rng.randrange(2_000_000)),
        "department": rng.choice(DEPARTMENTS),
        "doctor": f"dr-{rng.randrange(200):03d}",
        "diagnosis": [f"J{rng.randrange(100):02d}.{rng.randrange(10)}"],
        "vitals": {
            "pulse": rng.randrange(55, 120),
            "bp": f"{rng.randrange(100, 170)}/{rng.randrange(60, 100)}",
            "tempC": round(rng.uniform(36.0, 39.5), 1),
        },
        "prescriptions": [
            {"drug": rng.choice(DRUGS), "dose": f"{rng.choice([250, 500, 650])} mg", "days": 5}
            for _ in range(rng.randrange(1, 4))
        ],
        "notes": text(rng, 250, 450),
        "status": "open",
    }


def audit(rng: random.Random, audit_id: int, patient_id: str) -> dict[str, Any]:
    return {
        "_id": audit_id,
        "createdAt": utc_now() - datetime.timedelta(seconds=rng.randrange(10_000_000)),
        "actor": f"user-{rng.randrange(500)}",
        "action": rng.choice(["read", "update", "print", "export"]),
        "patient": patient_id,
        "ip": f"10.0.{rng.randrange(256)}.{rng.randrange(256)}",
        "detail": text(rng, 10, 30),
    }


def raw(doc: dict[str, Any]) -> RawBSONDocument:
    return RawBSONDocument(bson.encode(doc))


def seed(source: ReplicaSet, data_mb: float) -> dict[str, int]:
    """Patients, their visits and audit records, inserted in batches until the BSON size of the
    documents reaches data_mb."""
    rng = random.Random(20240601)
    counts = {"patients": 0, "visits": 0, "audit_log": 0}
    size = 0
    started = time.monotonic()
    reported = 0
    with source.client() as client:
        db = client["clinic"]
        while size < data_mb * MB:
            batch: dict[str, list[RawBSONDocument]] = {name: [] for name in counts}
            for _ in range(PATIENTS_PER_BATCH):
                pid = f"p{counts['patients']:07d}"
                batch["patients"].append(raw(patient(rng, counts["patients"])))
                counts["patients"] += 1
                for _ in range(rng.randint(2, 8)):
                    batch["visits"].append(raw(visit(rng, counts["visits"], pid)))
                    counts["visits"] += 1
                for _ in range(rng.randint(5, 15)):
                    batch["audit_log"].append(raw(audit(rng, counts["audit_log"], pid)))
                    counts["audit_log"] += 1
            for name, docs in batch.items():
                db[name].insert_many(docs, ordered=False)
                size += sum(len(doc.raw) for doc in docs)
            if size * 20 // (data_mb * MB) > reported or size >= data_mb * MB:
                reported = size * 20 // (data_mb * MB)
                elapsed = time.monotonic() - started
                progress(
                    f"seeded {size / MB:.1f} of {data_mb:g} MB ({sum(counts.values())} documents)"
                    f" in {elapsed:.0f} s"
                )
    return {**counts, "bytes": size}


def run(argv: list[str], what: str, **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
    done = subprocess.run(argv, cwd=REPO, capture_output=True, check=False, **kwargs)
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise BenchFailed(f"{what} exited {done.returncode}: {' / '.join(message)}")
    return done


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(MB):
            digest.update(chunk)
    return digest.hexdigest()


def nightly_backup(source: ReplicaSet, config: Path, out: Path) -> tuple[dict[str, Any], float]:
    """mongodump --oplog --gzip --archive as the backup user, and the manifest of the archive:
    (manifest, seconds of the dump)."""
    archive = out / "dump.archive.gz"
    now = utc_now()
    stamp, started_at = now.strftime(STAMP), now.strftime(POINT)
    began = time.monotonic()
    dump = run(
        [
            sys.executable, "-m", "tests.doubles.mongodb.tools.mongodump",
            f"--uri={source.uri('backup')}", f"--config={config}",
            "--oplog", "--gzip", f"--archive={archive}",
        ],
        "mongodump",
    )  # fmt: skip
    dump_s = time.monotonic() - began
    if b"Failed:" in dump.stderr:
        raise BenchFailed("mongodump reported a failure")
    manifest = run(
        [
            sys.executable, str(TOOL), "manifest", str(archive),
            "--env", "bench", "--timestamp", stamp, "--host", "bench",
            "--key", f"backups/bench/{stamp}/dump.archive.gz",
            "--sha256", sha256_of(archive), "--bytes", str(archive.stat().st_size),
            "--started", started_at, "--finished", utc_now().strftime(POINT),
        ],
        "the manifest",
    )  # fmt: skip
    return json.loads(manifest.stdout), dump_s


def newest_entries(client: MongoClient[Any], count: int) -> list[Any]:
    oplog = client.local["oplog.rs"]
    return [doc["ts"] for doc in oplog.find({}, {"ts": 1}).sort("$natural", -1).limit(count)]


def after_dump_plan(seeded: dict[str, int]) -> dict[str, int]:
    """How many visits to insert and update and audit records to delete after the dump."""
    return {
        "new_visits": min(NEW_VISITS, seeded["visits"]),
        "updated_visits": min(UPDATED_VISITS, seeded["visits"] // 2),
        "deleted_audit": min(DELETED_AUDIT, seeded["audit_log"] // 2),
    }


def writes_after_dump(source: ReplicaSet, seeded: dict[str, int], plan: dict[str, int]) -> int:
    """Visits inserted and updated, audit records deleted: the epoch second just after the last
    of them, the point in time. One more audit record is written once that second has come."""
    with source.client() as client:
        db = client["clinic"]
        first, last = seeded["visits"], seeded["visits"] + plan["new_visits"]
        rng = random.Random(7)
        for start in range(first, last, 500):
            db.visits.insert_many(
                [
                    raw(visit(rng, i, f"p{i % seeded['patients']:07d}"))
                    for i in range(start, min(start + 500, last))
                ]
            )
        closed = {"$set": {"status": "closed", "closedAt": utc_now()}}
        updates = [UpdateOne({"_id": i}, closed) for i in range(plan["updated_visits"])]
        db.visits.bulk_write(updates)
        gone = list(range(0, 2 * plan["deleted_audit"], 2))
        deleted = db.audit_log.delete_many({"_id": {"$in": gone}}).deleted_count
        if deleted != plan["deleted_audit"]:
            raise BenchFailed(f"{deleted} audit records deleted, {plan['deleted_audit']} meant")
        point = int(time.time()) + 1
        time.sleep(max(0.0, point - time.time()) + 0.1)
        db.audit_log.insert_one(raw(audit(rng, -1, "p0000000")))
    return point


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def http_server(directory: Path) -> Iterator[str]:
    """The files of directory over HTTP on 127.0.0.1, standing in for presigned S3 URLs."""
    handler = functools.partial(QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def wrapper(path: Path, module: str) -> str:
    """An executable that runs the double's program `module` with this interpreter."""
    path.write_text(
        "#!/bin/sh\n"
        f"PYTHONPATH={shlex.quote(str(REPO))} exec {shlex.quote(sys.executable)} -m {module} "
        '"$@"\n',
        encoding="utf-8",
    )
    path.chmod(0o755)
    return str(path)


def run_drill(request: dict[str, Any], tmp: Path) -> tuple[int, dict[str, Any], str, float]:
    """restore_drill_run.py with the request on stdin, its temporary files under tmp and its
    processes in a group of their own (stopped with it): exit code, report, stderr, seconds."""
    env = dict(os.environ, TMPDIR=str(tmp), no_proxy="127.0.0.1,localhost")
    began = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, str(DRILL)],
        cwd=tmp,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(json.dumps(request).encode())
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait()
    elapsed = time.monotonic() - began
    try:
        report = json.loads(out.decode().strip().splitlines()[-1])
    except (IndexError, ValueError):
        report = {}
    return process.returncode, report, err.decode(errors="replace"), elapsed


def check_drill(
    report: dict[str, Any], stage: ReplicaSet, expected: dict[str, int], updated: int
) -> None:
    """No original value left; the stage set holds the source's data at the point in time."""
    masking = report.get("masking", [])
    if len(masking) != len(RULES):
        raise BenchFailed(f"the report masks {len(masking)} namespaces, {len(RULES)} meant")
    for result in masking:
        remaining = {k: v for k, v in result["originals_remaining"].items() if v}
        if remaining or not all(result["masked"].values()):
            raise BenchFailed(f"{result['namespace']}: masked {result['masked']}, {remaining} left")
    if report.get("copied") != expected:
        raise BenchFailed(f"the stage set holds {report.get('copied')}, expected {expected}")
    with stage.client() as client:
        db = client["clinic"]
        closed = db.visits.count_documents({"status": "closed"})
        if closed != updated:
            raise BenchFailed(f"{closed} closed visits in the stage set, {updated} meant")
        if db.audit_log.find_one({"_id": -1}) is not None:
            raise BenchFailed("the write after the point in time reached the stage set")
        sample = db.patients.find_one({"_id": "p0000000"}) or {}
        if not str(sample.get("email", "")).endswith("@example.invalid"):
            raise BenchFailed("a patient's email in the stage set is not a masked one")


def bench(data_mb: float, base: Path, started: list[ReplicaSet]) -> str:
    key_file = base / "keyfile"
    key_file.write_text(base64.b64encode(os.urandom(48)).decode() + "\n", encoding="ascii")
    key_file.chmod(0o400)
    source = start_set("source", base, key_file, started)
    stage = start_set("stage", base, key_file, started)
    backup_password = base64.b32encode(os.urandom(10)).decode()
    with source.client() as client:
        client.admin.command("createUser", "backup", pwd=backup_password, roles=["backup"])
    # The mongo-tools config of the backup user, which oplog-slice reads its password from too.
    config = base / "mongo-tools.yaml"
    config.write_text(f"password: {backup_password}\n", encoding="utf-8")
    config.chmod(0o600)

    seeded = seed(source, data_mb)
    served = base / "served"
    served.mkdir()
    with source.client() as client:
        # The slice chain of the platform goes on from the previous slice; that one ended just
        # before the last write that preceded the backup, so this slice covers the backup's start.
        previous = newest_entries(client, 2)[-1]
    progress("nightly backup: mongodump --oplog --gzip --archive, then its manifest")
    manifest, dump_s = nightly_backup(source, config, served)
    progress(f"  {manifest['archive']['bytes'] / MB:.1f} MB in {dump_s:.0f} s")
    plan = after_dump_plan(seeded)
    progress(
        f"after the backup: {plan['new_visits']} visits inserted, {plan['updated_visits']}"
        f" updated, {plan['deleted_audit']} audit records deleted"
    )
    began = time.monotonic()
    point = writes_after_dump(source, seeded, plan)
    progress(f"  in {time.monotonic() - began:.0f} s")
    point_text = datetime.datetime.fromtimestamp(point, datetime.UTC).strftime(POINT)
    began = time.monotonic()
    sliced = run(
        [
            sys.executable, str(TOOL), "oplog-slice", "--uri", source.uri("backup"),
            "--config", str(config), "--after", f"{previous.time}:{previous.inc}",
            "--out", str(served / "oplog.bson.gz"),
        ],
        "oplog-slice",
    )  # fmt: skip
    slice_s = time.monotonic() - began
    slice_manifest = json.loads(sliced.stdout) | {
        "slice": "oplog.bson.gz",
        "after": f"{previous.time}:{previous.inc}",
    }
    progress(f"oplog slice: {slice_manifest['entries']} entries in {slice_s:.1f} s")
    problems = restore_drill_pitr_problems([slice_manifest], manifest["started_at"], point_text)
    if problems:
        raise BenchFailed("; ".join(problems))

    expected = {
        ns: n
        for ns, n in manifest["collections"].items()
        if ns.split(".", 1)[0] not in ("admin", "config", "local")
    }
    drill_tmp = base / "drill-tmp"
    drill_tmp.mkdir()
    with http_server(served) as url:
        request = {
            "url": f"{url}/dump.archive.gz",
            "sha256": manifest["archive"]["sha256"],
            "mongod": wrapper(base / "mongod", "tests.doubles.mongodb"),
            "mongorestore": wrapper(
                base / "mongorestore", "tests.doubles.mongodb.tools.mongorestore"
            ),
            "scratch_port": free_port(),
            "target": {"uri": stage.uri("admin"), "password": stage.password},
            "expected": expected,
            "rules": RULES,
            "unmasked": UNMASKED,
            "subset": {},
            # As the role does for a point in time: days of subset rules count back from it.
            "taken_at": datetime.datetime.fromtimestamp(point, datetime.UTC).strftime(STAMP),
            "point_in_time": point_text,
            "oplog_from": manifest["started_at"],
            "oplog": [
                {"url": f"{url}/oplog.bson.gz", "sha256": sha256_of(served / "oplog.bson.gz")}
            ],
        }
        progress(f"restore drill to {point_text}")
        code, report, stderr, rto_s = run_drill(request, drill_tmp)
    progress(f"  report: {json.dumps(report, sort_keys=True)}")
    if code != 0:
        raise BenchFailed(f"the drill exited {code}: {report.get('problems')} {stderr.strip()}")
    check_drill(
        report,
        stage,
        {
            "clinic.patients": seeded["patients"],
            "clinic.visits": seeded["visits"] + plan["new_visits"],
            "clinic.audit_log": seeded["audit_log"] - plan["deleted_audit"],
        },
        plan["updated_visits"],
    )
    seconds = report["seconds"]
    return (
        f"archive_mb={manifest['archive']['bytes'] / MB:.1f}"
        f" restore_s={seconds['restore'] + seconds['replay']:.1f} mask_s={seconds['mask']:.1f}"
        f" pitr_rpo_s={SLICE_INTERVAL_S + slice_s:.1f} rto_s={rto_s:.1f}"
        f" docs={seeded['patients'] + seeded['visits'] + seeded['audit_log']}"
        f" data_mb={seeded['bytes'] / MB:.1f} writes={sum(plan.values())} dump_s={dump_s:.1f}"
        f" replay_s={seconds['replay']:.1f} slice_s={slice_s:.1f} copy_s={seconds['copy']:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.restore")
    parser.add_argument("--mb", type=float, default=DATA_MB, help="MB of BSON data to seed")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    began = time.monotonic()
    base = Path(tempfile.mkdtemp(prefix="clinic-bench-restore-"))
    started: list[ReplicaSet] = []
    try:
        line = bench(args.mb, base, started)
    except BenchFailed as exc:
        sys.exit(f"bench-restore failed: {exc}")
    finally:
        for node in started:
            node.stop()
        shutil.rmtree(base, ignore_errors=True)
    print(f"total {time.monotonic() - began:.0f} s")
    print(line)


if __name__ == "__main__":
    main()
