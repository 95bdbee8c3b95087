"""The membership planner changes one member per step and ends at the wanted members."""

from __future__ import annotations

from plugins.filter.replset_steps import replset_steps


def member(host: str, **settings: object) -> dict:
    return {"host": host, "priority": 1.0, "votes": 1, "hidden": False} | settings


A, B, C, D = (member(f"10.0.0.{n}:27017") for n in (1, 2, 3, 4))
HIDDEN = member("10.0.0.4:27017", priority=0.0, votes=0, hidden=True)


def changed_members(before: list[dict], after: list[dict]) -> int:
    hosts = {m["host"] for m in before} | {m["host"] for m in after}
    old = {m["host"]: m for m in before}
    new = {m["host"]: m for m in after}
    return sum(old.get(h) != new.get(h) for h in hosts)


def test_no_change_gives_no_step() -> None:
    assert replset_steps([A, B, C], [C, B, A]) == []


def test_each_step_changes_one_member_and_the_last_is_the_goal() -> None:
    current = [A, B, member("10.0.0.3:27017", priority=2.0)]
    wanted = [A, C, D, member("10.0.0.5:27017")]
    steps = replset_steps(current, wanted)
    previous = current
    for step in steps:
        assert changed_members(previous, step) == 1
        previous = step
    assert sorted(previous, key=lambda m: m["host"]) == sorted(wanted, key=lambda m: m["host"])


def test_additions_come_before_removals() -> None:
    steps = replset_steps([A, B, C], [A, B, D])
    assert [len(s) for s in steps] == [4, 3]
    assert steps[0][-1] == D
    assert all(m["host"] != C["host"] for m in steps[1])


def test_hidden_member_is_added_and_removed_alone() -> None:
    assert replset_steps([A, B, C], [A, B, C, HIDDEN]) == [[A, B, C, HIDDEN]]
    assert replset_steps([A, B, C, HIDDEN], [A, B, C]) == [[A, B, C]]


def test_defaults_fill_missing_settings() -> None:
    assert replset_steps([{"host": "10.0.0.1:27017"}], [A]) == []
