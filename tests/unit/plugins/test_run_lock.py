"""clinic.infra.run_lock against SSM Parameter Store served by moto (in process).

What a run relies on: a free lock is taken and names its holder; a lock another run holds is
refused with the holder's purpose, owner, age and run id (or waited for, then taken); the holder
takes it again without harm; only the holder gives it back; only the named run's lock is broken.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from plugins.modules.run_lock import Lock, LockHeld, give_back, new_record, refusal, take

NAME = "/clinic/stage/run-lock"
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.fixture
def ssm(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield boto3.client("ssm", region_name="ap-south-1")


@pytest.fixture
def lock(ssm: Any) -> Lock:
    return Lock(ssm, NAME)


def record(purpose: str, run_id: str, now: datetime = NOW) -> dict[str, str]:
    return new_record(purpose, run_id, now)


def stored(ssm: Any) -> dict[str, str] | None:
    try:
        return json.loads(ssm.get_parameter(Name=NAME)["Parameter"]["Value"])
    except ssm.exceptions.ParameterNotFound:
        return None


def never_sleep(seconds: float) -> None:
    raise AssertionError(f"slept {seconds} s with nothing to wait for")


def test_a_free_lock_is_taken_and_names_its_holder(ssm: Any, lock: Lock) -> None:
    mine = record("deploy 2.0.0", "run-a")
    result = take(lock, mine, wait=0, poll_interval=5, break_run_id="", sleep=never_sleep)
    assert result["changed"] is True
    assert stored(ssm) == mine
    assert set(mine) == {"run_id", "owner", "purpose", "started"}
    assert "@" in mine["owner"] and mine["started"] == "2026-12-07T12:00:00Z"


def test_a_new_run_gets_a_new_run_id() -> None:
    assert record("a", "")["run_id"] != record("a", "")["run_id"]


def test_a_held_lock_is_refused_with_its_holder(ssm: Any, lock: Lock) -> None:
    theirs = record("deploy 2.0.0", "run-a")
    take(lock, theirs, wait=0, poll_interval=5, break_run_id="", sleep=never_sleep)

    with pytest.raises(LockHeld) as refused:
        take(lock, record("site.yml API tier", "run-b"), wait=0, poll_interval=5, break_run_id="")

    holder, waited = refused.value.args
    assert holder == theirs and waited == 0
    assert stored(ssm) == theirs, "the refused run changed the lock"
    message = refusal(NAME, holder, NOW + timedelta(minutes=12), 7200, waited, "-e lock_break=%s")
    for part in ("'deploy 2.0.0'", theirs["owner"], "since 2026-12-07T12:00:00Z (12 min ago)"):
        assert part in message
    assert "Nothing was changed" in message
    assert message.endswith("break its lock by giving its run id: -e lock_break=run-a")
    assert "stale" not in message


def test_an_old_lock_is_called_stale(lock: Lock) -> None:
    holder = record("deploy 2.0.0", "run-a")
    message = refusal(NAME, holder, NOW + timedelta(hours=3), 7200, 0)
    assert "older than 120 min" in message and "probably stale" in message


def test_the_holder_takes_its_lock_again_unchanged(ssm: Any, lock: Lock) -> None:
    mine = record("deploy 2.0.0", "run-a")
    take(lock, mine, wait=0, poll_interval=5, break_run_id="")
    again = take(lock, record("deploy 2.0.0", "run-a", NOW + timedelta(minutes=5)), wait=0,
                 poll_interval=5, break_run_id="", sleep=never_sleep)  # fmt: skip
    assert again["changed"] is False
    assert again["lock"] == mine and stored(ssm) == mine


def test_only_the_holder_gives_the_lock_back(ssm: Any, lock: Lock) -> None:
    theirs = record("deploy 2.0.0", "run-a")
    take(lock, theirs, wait=0, poll_interval=5, break_run_id="")

    assert give_back(lock, "run-b") == {"changed": False, "holder": theirs}
    assert stored(ssm) == theirs

    assert give_back(lock, "run-a") == {"changed": True}
    assert stored(ssm) is None
    assert give_back(lock, "run-a") == {"changed": False}


def test_a_waiting_run_takes_the_lock_once_it_is_given_back(ssm: Any, lock: Lock) -> None:
    take(lock, record("deploy 2.0.0", "run-a"), wait=0, poll_interval=5, break_run_id="")
    clock = iter(range(0, 1000, 5))
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 3:  # the holder finishes while the other run waits
            give_back(lock, "run-a")

    mine = record("site.yml API tier", "run-b")
    result = take(lock, mine, wait=600, poll_interval=5, break_run_id="",
                  clock=lambda: float(next(clock)), sleep=sleep)  # fmt: skip
    assert result["changed"] is True and slept == [5, 5, 5]
    assert stored(ssm) == mine


def test_a_run_waits_no_longer_than_asked(ssm: Any, lock: Lock) -> None:
    theirs = record("deploy 2.0.0", "run-a")
    take(lock, theirs, wait=0, poll_interval=5, break_run_id="")
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(LockHeld) as refused:
        take(lock, record("restore drill", "run-b"), wait=20, poll_interval=5, break_run_id="",
             clock=lambda: now[0], sleep=sleep)  # fmt: skip
    assert refused.value.args == (theirs, 20)
    assert stored(ssm) == theirs


def test_breaking_takes_only_the_named_runs_lock(ssm: Any, lock: Lock) -> None:
    dead = record("deploy 2.0.0", "run-a")
    take(lock, dead, wait=0, poll_interval=5, break_run_id="")

    with pytest.raises(LockHeld):
        take(lock, record("deploy 2.0.1", "run-b"), wait=0, poll_interval=5, break_run_id="run-x")
    assert stored(ssm) == dead

    mine = record("deploy 2.0.1", "run-b")
    result = take(lock, mine, wait=0, poll_interval=5, break_run_id="run-a", sleep=never_sleep)
    assert result["changed"] is True and result["broken"] == dead
    assert stored(ssm) == mine


def test_a_parameter_written_by_hand_still_locks(ssm: Any, lock: Lock) -> None:
    ssm.put_parameter(Name=NAME, Value="maintenance by ops", Type="String")

    with pytest.raises(LockHeld) as refused:
        take(lock, record("deploy 2.0.0", "run-b"), wait=0, poll_interval=5, break_run_id="")

    holder, _ = refused.value.args
    message = refusal(NAME, holder, NOW, 7200, 0)
    assert "by maintenance by ops" in message
    assert "not written by this module" in message
    assert ssm.get_parameter(Name=NAME)["Parameter"]["Value"] == "maintenance by ops"
