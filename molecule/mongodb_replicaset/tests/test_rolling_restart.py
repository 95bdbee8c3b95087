"""A config change is rolled out one member at a time while the set stays available.

The module converges with an extra setParameter and, when done, without it again.

A watcher on the test machine asks every member for replSetGetStatus about ten times a second during
the converge run: which member says it is PRIMARY, and which members are down (no answer, a state
other than PRIMARY/SECONDARY, or unhealthy in the primary's view).
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
from pymongo import MongoClient
from pymongo.errors import PyMongoError

# A real mongod parameter; -e with JSON keeps the number a number.
PARAMETER = {"transactionLifetimeLimitSeconds": 90}
SET_PARAMETERS = ("-e", json.dumps({"mongodb_replicaset_set_parameters": PARAMETER}))
NO_PRIMARY_LONGEST = 15
HEALTHY = ("PRIMARY", "SECONDARY")
# systemd's "unit started" journal message (SD_MESSAGE_UNIT_STARTED).
UNIT_STARTED = "39f53479d3a045ac8e11786248231fbf"


@dataclass
class Sample:
    at: float
    primaries: set[str]
    down: set[str]


@dataclass
class Watcher:
    """Samples the set from the test machine in a background thread."""

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


def has_parameter(node) -> bool:  # noqa: ANN001
    conf = yaml.safe_load(node.file("/etc/mongod.conf").content_string)
    return (conf.get("setParameter") or {}).items() >= PARAMETER.items()


def mongod_process(node) -> dict[str, str]:  # noqa: ANN001
    """The main PID and start time of the mongod unit."""
    shown = node.check_output(
        "systemctl show mongod.service -p MainPID -p ExecMainStartTimestampMonotonic"
    )
    return dict(line.split("=", 1) for line in shown.splitlines())


@dataclass
class Rollout:
    result: Any
    watcher: Watcher
    before: dict[str, dict[str, str]]
    after: dict[str, dict[str, str]]
    starts: dict[str, int]


@pytest.fixture(scope="module")
def rollout(replset, mongo, password, members, host_named, converge, tail):  # noqa: ANN001, ANN201
    """Converge with a new setParameter while the watcher samples the set; afterwards, converge
    without it again, so that the set is left as the module found it (and verify can rerun)."""
    nodes = {member.name: host_named(member.name) for member in members}
    if any(has_parameter(node) for node in nodes.values()):
        # Left by an interrupted earlier run: take it out first, so that this run is a change.
        reset = converge()
        assert reset.returncode == 0, tail(reset)
    replset.wait_healthy()
    before = {name: mongod_process(node) for name, node in nodes.items()}
    clients = {
        member.host: mongo(
            "admin",
            password("admin"),
            address=member.host,
            serverSelectionTimeoutMS=500,
            connectTimeoutMS=500,
            socketTimeoutMS=2000,
            heartbeatFrequencyMS=500,
        )
        for member in members
    }
    since = int(time.time())
    with Watcher(clients) as watcher:
        time.sleep(1)
        result = converge(*SET_PARAMETERS)
        time.sleep(1)
    after = {name: mongod_process(node) for name, node in nodes.items()}
    starts = {
        name: len(
            node.check_output(
                "journalctl --no-pager -o cat --since @%s UNIT=mongod.service MESSAGE_ID=%s",
                str(since),
                UNIT_STARTED,
            ).splitlines()
        )
        for name, node in nodes.items()
    }
    yield Rollout(result, watcher, before, after, starts)
    restore = converge()
    assert restore.returncode == 0, tail(restore)


def test_rollout_succeeds(rollout, recap, members, tail):  # noqa: ANN001, ANN201
    assert rollout.result.returncode == 0, tail(rollout.result)
    counters = recap(rollout.result)
    assert sorted(counters) == [member.name for member in members]
    assert all(c["failed"] == 0 and c["unreachable"] == 0 for c in counters.values())


def test_every_member_restarted_exactly_once(rollout, members):  # noqa: ANN001, ANN201
    for member in members:
        before, after = rollout.before[member.name], rollout.after[member.name]
        assert after["MainPID"] != before["MainPID"], member.name
        started_before = int(before["ExecMainStartTimestampMonotonic"])
        assert int(after["ExecMainStartTimestampMonotonic"]) > started_before, member.name
    assert rollout.starts == {member.name: 1 for member in members}


def test_never_more_than_one_member_down(rollout):  # noqa: ANN001, ANN201
    samples = rollout.watcher.samples
    assert len(samples) > 20
    worst = max(samples, key=lambda sample: len(sample.down))
    assert len(worst.down) <= 1, rollout.watcher.transitions()
    # The watcher did see the restarts.
    assert any(sample.down for sample in samples)


def test_at_most_one_short_window_without_a_primary(rollout):  # noqa: ANN001, ANN201
    windows = rollout.watcher.no_primary_windows()
    print("\n".join(rollout.watcher.transitions()))
    assert len(windows) <= 1, (windows, rollout.watcher.transitions())
    assert all(window < NO_PRIMARY_LONGEST for window in windows), windows
    assert rollout.watcher.samples[-1].primaries


def test_every_member_config_holds_the_parameter(rollout, host_named, member):  # noqa: ANN001, ANN201
    assert has_parameter(host_named(member.name))


def test_same_run_again_is_idle(rollout, replset, converge, recap, host_named, tail, changes):  # noqa: ANN001, ANN201
    """The same -e again: changed=0 on every member and no mongod restarted."""
    replset.wait_healthy()
    result = converge(*SET_PARAMETERS)
    assert result.returncode == 0, tail(result)
    assert all(c["changed"] == 0 for c in recap(result).values()), changes(result)
    for name, process in rollout.after.items():
        assert mongod_process(host_named(name)) == process, name
