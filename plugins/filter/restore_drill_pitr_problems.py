"""Jinja filter that checks the oplog slices of a restore drill to a point in time."""

from __future__ import annotations

import datetime
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

DOCUMENTATION = r"""
---
name: restore_drill_pitr_problems
short_description: What keeps oplog slices from replaying a nightly backup up to a point in time
version_added: 0.1.0
description:
  - Checks the manifests of the oplog slices (oldest first) that C(restore_drill_pitr_plan) chose,
    and returns one message per problem; an empty list when the slices replay every entry from
    the nightly backup's start up to the point.
  - "Problems: no slice; the oldest slice starting after the backup started; a slice that does
    not go on from the one before (C(continuous) false, or C(after) not the previous C(last));
    the newest archived entry before the point."
positional: _input
options:
  _input:
    description: The slices' manifests (C(first), C(last), C(after), C(continuous), C(slice)).
    type: list
    elements: dict
    required: true
  started:
    description: When the nightly backup started, C(YYYY-MM-DDTHH:MM:SSZ).
    type: str
    required: true
  point:
    description: The point in time, C(YYYY-MM-DDTHH:MM:SSZ).
    type: str
    required: true
"""

EXAMPLES = r"""
problems: "{{ manifests | clinic.infra.restore_drill_pitr_problems(started, point) }}"
"""

RETURN = r"""
_value:
  description: Messages, one per problem; empty when the slices are sound.
  type: list
  elements: str
"""


def _epoch(text: str) -> int:
    parsed = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
    return int(parsed.replace(tzinfo=datetime.UTC).timestamp())


def _ts(text: str) -> tuple[int, int]:
    seconds, _, increment = str(text).partition(":")
    return int(seconds), int(increment or 0)


def restore_drill_pitr_problems(
    manifests: Sequence[Mapping[str, Any]], started: str, point: str
) -> list[str]:
    """What keeps the slices (oldest first) from replaying every entry from the nightly backup's
    start (`started`, YYYY-MM-DDTHH:MM:SSZ) up to `point`."""
    since = _epoch(started)
    until = _epoch(point)
    if not manifests:
        return [f"no oplog slice holds the entries from {started} to {point}"]
    problems = []
    first = manifests[0]
    if _ts(first["first"])[0] > since:
        problems.append(
            f"the oldest slice starts at {first['first']}, after the backup started ({started}):"
            " the entries in between were never archived"
        )
    for before, after in itertools.pairwise(manifests):
        if not after.get("continuous") or after.get("after") != before["last"]:
            problems.append(
                f"the slice {after['slice']} does not go on from {before['last']}: the oplog"
                " archive has a gap there"
            )
    if _ts(manifests[-1]["last"])[0] < until:
        problems.append(
            f"the newest archived entry is at {manifests[-1]['last']} (seconds:increment), before"
            f" {point}: the oplog archive does not reach the point"
        )
    return problems


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"restore_drill_pitr_problems": restore_drill_pitr_problems}
