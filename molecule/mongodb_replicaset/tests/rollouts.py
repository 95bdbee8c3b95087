"""What the tests change the set with, and watch it by while a run or a fault goes on.

PARAMETER is the config change that test_rolling_restart rolls out. Watcher and Writer each run in
a background thread. Watcher asks every member for replSetGetStatus about ten times a second: which
member says it is PRIMARY, and which members are down (no answer, a state other than
PRIMARY/SECONDARY, or unhealthy in the primary's view). Writer inserts numbered documents one after
the other and remembers which the set acknowledged and which failed.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import yaml
from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.errors import PyMongoError

# A real mongod parameter; -e with JSON keeps the number a number.
PARAMETER = {"transactionLifetimeLimitSeconds": 90}
SET_PARAMETERS = ("-e", json.dumps({"mongodb_replicaset_set_parameters": PARAMETER}))
# The longest stretch without a PRIMARY that a rolling restart may cause.
NO_PRIMARY_LONGEST = 15
HEALTHY = ("PRIMARY", "SECONDARY")


def has_parameter(node) -> bool:  # noqa: ANN001
    """Whether a member's mongod.conf (a testinfra host) holds PARAMETER."""
    conf = yaml.safe_load(node.file("/etc/mongod.conf").content_string)
    return (conf.get("setParameter") or {}).items() >= PARAMETER.items()


@dataclass
class Sample:
    at: float
    primaries: set[str]
    down: set[str]


@dataclass
class Watcher:
    """Samples the set from the test machine, one client per member."""

    clients: dict[str, MongoClient]
    interval: float = 0.1
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def probe(self, host: str) -> dict[str, Any] | None:
        try:
            return self.clients[host].admin.command("replSetGetStatus")
        except PyMongoError:
            return None

    def sample(self, pool: ThreadPoolExecutor) -> Sample:
        at = time.monotonic()
        answers = dict(zip(self.clients, pool.map(self.probe, self.clients), strict=True))
        own = {
            host: next((m["stateStr"] for m in status["members"] if m.get("self")), None)
            if status
            else None
            for host, status in answers.items()
        }
        primaries = {host for host, state in own.items() if state == "PRIMARY"}
        down = {host for host, state in own.items() if state not in HEALTHY}
        for host in primaries:
            status = answers[host] or {"members": []}
            down |= {
                m["name"]
                for m in status["members"]
                if m["health"] != 1 or m["stateStr"] not in HEALTHY
            }
        return Sample(at, primaries, down)

    def run(self) -> None:
        with ThreadPoolExecutor(len(self.clients)) as pool:
            while not self._stop.is_set():
                started = time.monotonic()
                self.samples.append(self.sample(pool))
                self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def __enter__(self) -> Watcher:
        self._thread = threading.Thread(target=self.run, name="replset-watcher", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def transitions(self) -> list[str]:
        """What the watcher saw change, with seconds since it started (for failure messages)."""
        seen: list[str] = []
        last: tuple[list[str], list[str]] | None = None
        for sample in self.samples:
            now = (sorted(sample.primaries), sorted(sample.down))
            if now != last:
                start = self.samples[0].at
                seen.append(f"+{sample.at - start:.1f} s primary={now[0]} down={now[1]}")
                last = now
        return seen

    def no_primary_windows(self) -> list[float]:
        """Durations of the stretches in which no member said it was PRIMARY."""
        windows: list[float] = []
        began: float | None = None
        for sample in self.samples:
            if not sample.primaries and began is None:
                began = sample.at
            elif sample.primaries and began is not None:
                windows.append(sample.at - began)
                began = None
        if began is not None:
            windows.append(self.samples[-1].at - began)
        return windows


class Writer:
    """Inserts {_id: 1}, {_id: 2}, ... into an emptied collection, one after the other, `interval`
    seconds apart, with the collection's write concern; the client's timeouts bound each write."""

    def __init__(self, collection: Collection, interval: float) -> None:
        self.collection = collection
        self.interval = interval
        self.acknowledged: list[int] = []
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)

    def _run(self) -> None:
        number = 0
        while not self._stop.is_set():
            number += 1
            try:
                self.collection.insert_one({"_id": number, "at": time.time()})
                self.acknowledged.append(number)
            except PyMongoError as exc:
                self.failed.append(f"{number}: {type(exc).__name__}: {exc}")
            self._stop.wait(self.interval)

    def __enter__(self) -> Writer:
        self.collection.drop()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
