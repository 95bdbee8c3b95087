"""`make lab-failover`: the primary fails while the API takes writes and reads through HAProxy.

Two faults, one after the other, each on the member that is primary when it starts:

- stop: mongod on the primary is stopped (`systemctl stop`) for HOLD_S seconds, then started;
- freeze: the primary's container is paused (`docker pause`, a hung instance or a network that drops
  everything, as its peers and clients see it) for HOLD_S seconds, then unpaused.

Meanwhile client threads send RATE writes (POST /records) and RATE reads (GET /records) per second
through the load balancer, as a browser would, and keep every id a write was acknowledged with.
election_s runs from the fault to the first moment the other electable member answers `hello` as
the writable primary (polled on that member). Once the set is whole again, every acknowledged id
is looked up on the primary with read concern majority: one that is missing is a lost write, and
makes the run fail. A request fails when it raises or answers anything but 2xx. One line per fault,
then the figures of both on the last line.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import yaml

from lab import aws
from lab.settings import ROOT, Host, Lab
from lab.smoke import (
    LB_HTTP_PORT,
    MONGODB_ADMIN_USER,
    PASSED,
    member_python,
    replica_set,
)

HOLD_S = 30
WARMUP_S = 5
SETTLE_S = 10
RATE = 10  # writes per second, and as many reads
# Longer than the API's server selection timeout (30 s) plus a freeze: a request may wait out an
# election and the frozen member, which is latency, not a failure. HAProxy's own limits apply too.
REQUEST_TIMEOUT_S = 75
CONVERGE_WITHIN_S = 180
# The API's database (mongodb_replicaset_app_database), where POST /records writes.
MONGODB_WIRING = ROOT / "group_vars" / "all" / "mongodb.yml"

# Runs on a member: the set as that member's hello describes it (no credentials needed).
HELLO_PROBE = """
import json
from pymongo import MongoClient
hello = MongoClient("127.0.0.1", 27017, directConnection=True,
                    serverSelectionTimeoutMS=10000, **TLS).admin.command("hello")
print(json.dumps({"primary": hello.get("primary"), "hosts": hello.get("hosts", [])}))
"""
# Runs on the member expected to take over: the wall clock when it first says it is primary.
PRIMARY_WATCH = """
import sys, time
from pymongo import MongoClient
client = MongoClient("127.0.0.1", 27017, directConnection=True, serverSelectionTimeoutMS=1000,
                     **TLS)
deadline = time.time() + float(sys.argv[1])
while time.time() < deadline:
    try:
        if client.admin.command("hello").get("isWritablePrimary"):
            print(time.time())
            break
    except Exception:
        pass
    time.sleep(0.1)
"""
# Runs on a member as admin (credentials and ids on stdin): the acknowledged ids the set lacks.
LOST_PROBE = """
import json, sys
from bson import ObjectId
from pymongo import MongoClient, ReadPreference
from pymongo.read_concern import ReadConcern
job = json.load(sys.stdin)
client = MongoClient("127.0.0.1", 27017, authSource="admin", username=job["user"],
                     password=job["password"], serverSelectionTimeoutMS=30000, **TLS)
records = client.get_database(job["database"], read_concern=ReadConcern("majority"),
                              read_preference=ReadPreference.PRIMARY).records
wanted = [ObjectId(i) for i in job["ids"]]
found = {str(d["_id"]) for d in records.find({"_id": {"$in": wanted}}, {"_id": 1})}
print(json.dumps(sorted(set(job["ids"]) - found)))
"""


@dataclass
class Load:
    """Requests through the load balancer from threads, until stopped."""

    address: str
    tag: str
    acknowledged: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    writes: int = 0
    reads: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def request(self, method: str, body: dict[str, object] | None) -> None:
        connection = http.client.HTTPConnection(
            self.address, LB_HTTP_PORT, timeout=REQUEST_TIMEOUT_S
        )
        try:
            payload = json.dumps(body).encode() if body is not None else None
            connection.request(
                method, "/records", body=payload, headers={"Content-Type": "application/json"}
            )
            reply = connection.getresponse()
            data = reply.read()
            outcome = "" if 200 <= reply.status < 300 else f"{method} {reply.status}"
        except (OSError, http.client.HTTPException) as error:
            reply, data, outcome = None, b"", f"{method} {type(error).__name__}: {error}"
        finally:
            connection.close()
        with self._lock:
            if method == "POST":
                self.writes += 1
            else:
                self.reads += 1
            if outcome:
                self.failures.append(f"{time.strftime('%H:%M:%S')} {outcome}")
            elif method == "POST" and reply is not None:
                self.acknowledged.append(json.loads(data)["id"])

    def run(self) -> None:
        with ThreadPoolExecutor(max_workers=4 * RATE) as pool:
            sequence = 0
            while not self._stop.is_set():
                started = time.monotonic()
                for _ in range(RATE):
                    sequence += 1
                    pool.submit(self.request, "POST", {"source": self.tag, "seq": sequence})
                    pool.submit(self.request, "GET", None)
                self._stop.wait(max(0.0, 1.0 - (time.monotonic() - started)))

    def stop(self) -> None:
        self._stop.set()


@dataclass
class Outcome:
    fault: str
    writes: int
    failed: int
    lost: int
    election_s: float | None
    failures: list[str]

    def line(self) -> str:
        election = "none" if self.election_s is None else f"{self.election_s:.1f}"
        return (
            f"fault={self.fault} writes={self.writes} failed={self.failed} lost={self.lost} "
            f"election_s={election}"
        )


def remote_python(lab: Lab, host: Host, script: str, stdin: str = "", *args: str) -> str:
    result = member_python(lab, host, script, stdin, *args, timeout=HOLD_S + 120)
    if result.returncode != 0:
        raise RuntimeError(f"{host.container}: {result.stderr.strip()[-500:]}")
    return result.stdout.strip()


def member_named(lab: Lab, name: str) -> Host:
    return next(h for h in lab.by_role("mongodb") if f"{h.address}:27017" == name)


def wait_whole(lab: Lab) -> None:
    """Until one member is PRIMARY and the others SECONDARY (smoke's replica set check)."""
    deadline = time.monotonic() + CONVERGE_WITHIN_S
    while (check := replica_set(lab)).status != PASSED:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the set did not heal within {CONVERGE_WITHIN_S} s: {check.detail}")
        time.sleep(2)


FAULTS = {
    "stop": (
        lambda host: ["docker", "exec", host.container, "systemctl", "stop", "mongod"],
        lambda host: ["docker", "exec", host.container, "systemctl", "start", "mongod"],
    ),
    "freeze": (
        lambda host: ["docker", "pause", host.container],
        lambda host: ["docker", "unpause", host.container],
    ),
}


def inject(lab: Lab, fault: str) -> Outcome:
    wait_whole(lab)
    (lb,) = lab.by_role("lb")
    anyone = lab.by_role("mongodb")[0]
    seen = json.loads(remote_python(lab, anyone, HELLO_PROBE))
    primary = member_named(lab, seen["primary"])
    (successor,) = [member_named(lab, h) for h in seen["hosts"] if h != seen["primary"]]
    begin, end = FAULTS[fault]

    load = Load(lb.address, f"failover-{fault}-{uuid.uuid4().hex[:8]}")
    loader = threading.Thread(target=load.run)
    loader.start()
    time.sleep(WARMUP_S)
    watch: dict[str, str] = {}
    watcher = threading.Thread(
        target=lambda: watch.update(
            at=remote_python(lab, successor, PRIMARY_WATCH, "", str(HOLD_S + 60))
        )
    )
    watcher.start()
    at = time.time()
    try:
        subprocess.run(begin(primary), check=True, capture_output=True)
        time.sleep(HOLD_S)
    finally:
        subprocess.run(end(primary), check=True, capture_output=True)
    time.sleep(SETTLE_S)
    load.stop()
    loader.join()
    watcher.join()
    wait_whole(lab)
    login = {
        "user": MONGODB_ADMIN_USER,
        "password": aws.read_secret(lab, "mongodb/admin_password"),
        "ids": load.acknowledged,
        "database": yaml.safe_load(MONGODB_WIRING.read_text())["mongodb_replicaset_app_database"],
    }
    missing = json.loads(remote_python(lab, anyone, LOST_PROBE, json.dumps(login)))
    election = float(watch["at"]) - at if watch.get("at") else None
    return Outcome(fault, load.writes, len(load.failures), len(missing), election, load.failures)


def run(lab: Lab) -> int:
    outcomes = []
    for fault in FAULTS:
        outcome = inject(lab, fault)
        outcomes.append(outcome)
        for failure in outcome.failures[:10]:
            print(f"  {fault}: {failure}", flush=True)
        print(outcome.line(), flush=True)
    print(" ".join(f"{o.fault}_{pair}" for o in outcomes for pair in o.line().split()[1:]))
    return 1 if any(o.lost for o in outcomes) else 0
