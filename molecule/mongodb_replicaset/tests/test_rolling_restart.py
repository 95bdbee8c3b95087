"""A config change is rolled out one member at a time while the set stays available.

The module converges with an extra setParameter while a Watcher (rollouts.py) samples the set. It
is the last module and leaves the parameter set: molecule destroys the set after verify, and a
verify run again on the same set takes it out first (conftest.py: `pristine`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest
from rollouts import NO_PRIMARY_LONGEST, SET_PARAMETERS, Watcher, has_parameter

# systemd's "unit started" journal message (SD_MESSAGE_UNIT_STARTED).
UNIT_STARTED = "39f53479d3a045ac8e11786248231fbf"


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
def rollout(replset, members, member_clients, host_named, converge):  # noqa: ANN001, ANN201
    """Converge with a new setParameter while the watcher samples the set."""
    nodes = {member.name: host_named(member.name) for member in members}
    replset.wait_healthy()
    before = {name: mongod_process(node) for name, node in nodes.items()}
    since = int(time.time())
    with Watcher(member_clients) as watcher:
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
    return Rollout(result, watcher, before, after, starts)


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
