"""A restore drill to a point in time: the nightly backup and the oplog slices it needs, and what
keeps the slices from replaying up to the point."""

from __future__ import annotations

import datetime
from typing import Any

from plugins.filter.restore_drill_pitr_plan import restore_drill_pitr_plan
from plugins.filter.restore_drill_pitr_problems import restore_drill_pitr_problems

PREFIX = "backups/prod/"


def at(text: str) -> int:
    parsed = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
    return int(parsed.replace(tzinfo=datetime.UTC).timestamp())


def slice_key(first: int, last: int, ext: str = "json") -> str:
    return f"{PREFIX}oplog/{first}.1-{last}.3.{ext}"


NIGHT_1 = at("2026-12-05T02:30:00Z")
NIGHT_2 = at("2026-12-06T02:30:00Z")
KEYS = [
    f"{PREFIX}20261205T023000Z/dump.archive.gz",
    f"{PREFIX}20261205T023000Z/manifest.json",
    f"{PREFIX}20261206T023000Z/dump.archive.gz",
    f"{PREFIX}20261206T023000Z/manifest.json",
    f"{PREFIX}latest",
    f"{PREFIX}oplog-latest",
    slice_key(NIGHT_1 - 900, NIGHT_1 - 1),
    slice_key(NIGHT_1 - 1, NIGHT_1 + 899),
    slice_key(NIGHT_2 - 600, NIGHT_2 + 300),
    slice_key(NIGHT_2 + 300, NIGHT_2 + 1200),
    slice_key(NIGHT_2 + 1200, NIGHT_2 + 2100),
    slice_key(NIGHT_2 + 300, NIGHT_2 + 1200, "bson.gz"),
]


def test_the_newest_nightly_before_the_point_and_the_slices_from_its_start() -> None:
    plan = restore_drill_pitr_plan(KEYS, PREFIX, "2026-12-06T02:50:00Z")
    assert plan == {
        "nightly_manifest": f"{PREFIX}20261206T023000Z/manifest.json",
        "nightly_timestamp": "20261206T023000Z",
        "slice_manifests": [
            slice_key(NIGHT_2 - 600, NIGHT_2 + 300),
            slice_key(NIGHT_2 + 300, NIGHT_2 + 1200),
        ],
    }


def test_the_slice_that_reaches_the_point_is_chosen_even_when_it_starts_after_it() -> None:
    """Its entries from the point on are not replayed, but it proves that none before is missing."""
    plan = restore_drill_pitr_plan(KEYS, PREFIX, "2026-12-06T02:36:00Z")
    assert plan["slice_manifests"] == [
        slice_key(NIGHT_2 - 600, NIGHT_2 + 300),
        slice_key(NIGHT_2 + 300, NIGHT_2 + 1200),
    ]
    plan = restore_drill_pitr_plan(KEYS, PREFIX, "2026-12-06T03:00:00Z")
    assert plan["slice_manifests"][-1] == slice_key(NIGHT_2 + 1200, NIGHT_2 + 2100)


def test_a_point_before_the_newest_nightly_uses_the_one_before() -> None:
    plan = restore_drill_pitr_plan(KEYS, PREFIX, "2026-12-05T02:40:00Z")
    assert plan["nightly_timestamp"] == "20261205T023000Z"
    assert plan["slice_manifests"] == [slice_key(NIGHT_1 - 1, NIGHT_1 + 899)]


def test_no_nightly_before_the_point() -> None:
    plan = restore_drill_pitr_plan(KEYS, PREFIX, "2026-12-05T02:30:00Z")
    assert plan == {"nightly_manifest": "", "nightly_timestamp": "", "slice_manifests": []}


def manifest(first: int, last: int, after: str | None, continuous: bool = True) -> dict[str, Any]:
    return {
        "slice": slice_key(first, last, "bson.gz"),
        "first": f"{first}:1",
        "last": f"{last}:3",
        "after": after or "",
        "continuous": continuous,
    }


CHAIN = [
    manifest(NIGHT_2 - 600, NIGHT_2 + 300, f"{NIGHT_2 - 601}:3"),
    manifest(NIGHT_2 + 301, NIGHT_2 + 1200, f"{NIGHT_2 + 300}:3"),
]


def test_a_chain_that_reaches_the_point_is_sound() -> None:
    assert restore_drill_pitr_problems(CHAIN, "2026-12-06T02:30:00Z", "2026-12-06T02:50:00Z") == []


def test_no_slice() -> None:
    assert restore_drill_pitr_problems([], "2026-12-06T02:30:00Z", "2026-12-06T02:50:00Z") == [
        "no oplog slice holds the entries from 2026-12-06T02:30:00Z to 2026-12-06T02:50:00Z"
    ]


def test_a_chain_that_starts_after_the_backup() -> None:
    (problem,) = restore_drill_pitr_problems(
        CHAIN[1:], "2026-12-06T02:30:00Z", "2026-12-06T02:50:00Z"
    )
    assert "after the backup started" in problem


def test_a_gap_between_slices() -> None:
    for broken in (
        manifest(NIGHT_2 + 301, NIGHT_2 + 1200, f"{NIGHT_2 + 100}:3"),
        manifest(NIGHT_2 + 301, NIGHT_2 + 1200, f"{NIGHT_2 + 300}:3", continuous=False),
    ):
        (problem,) = restore_drill_pitr_problems(
            [CHAIN[0], broken], "2026-12-06T02:30:00Z", "2026-12-06T02:50:00Z"
        )
        assert "has a gap there" in problem


def test_a_point_beyond_the_newest_archived_entry() -> None:
    (problem,) = restore_drill_pitr_problems(CHAIN, "2026-12-06T02:30:00Z", "2026-12-06T03:00:00Z")
    assert "does not reach the point" in problem
