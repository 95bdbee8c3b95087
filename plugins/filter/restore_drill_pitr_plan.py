"""Jinja filter that plans a restore drill to a point in time: which nightly backup and which oplog
slices it needs."""

from __future__ import annotations

import datetime
import re
from collections.abc import Sequence
from typing import Any

DOCUMENTATION = r"""
---
name: restore_drill_pitr_plan
short_description: The nightly backup and the oplog slices a restore to a point in time needs
version_added: 0.1.0
description:
  - Given the keys under the source environment's backup prefix, the prefix and the point in time
    (C(YYYY-MM-DDTHH:MM:SSZ)), returns C(nightly_manifest), the manifest key of the newest nightly
    backup taken before the point (empty when there is none), and C(slice_manifests), the
    manifest keys of the oplog slices from the one holding that backup's start up to the first
    that reaches the point (by the timestamps in their names), oldest first.
  - Slices are C(<prefix>oplog/<first>-<last>.bson.gz) with their manifest C(.json) beside, each
    timestamp written C(<seconds>.<increment>); nightly backups C(<prefix><YYYYmmddTHHMMSSZ>/).
  - The filter C(restore_drill_pitr_problems) then checks the slices' manifests.
positional: _input
options:
  _input:
    description: Keys under the backup prefix.
    type: list
    elements: str
    required: true
  prefix:
    description: The backup prefix, C(backups/<env>/).
    type: str
    required: true
  point:
    description: The point in time, C(YYYY-MM-DDTHH:MM:SSZ) (UTC).
    type: str
    required: true
"""

EXAMPLES = r"""
plan: "{{ keys | clinic.infra.restore_drill_pitr_plan('backups/prod/', '2026-12-06T10:15:00Z') }}"
"""

RETURN = r"""
_value:
  description: C({nightly_manifest, nightly_timestamp, slice_manifests}).
  type: dict
"""

POINT = "%Y-%m-%dT%H:%M:%SZ"
NIGHTLY = "%Y%m%dT%H%M%SZ"
SLICE = re.compile(r"^oplog/(\d+)\.(\d+)-(\d+)\.(\d+)\.json$")
BACKUP = re.compile(r"^(\d{8}T\d{6}Z)/manifest\.json$")


def epoch(text: str, form: str) -> int:
    parsed = datetime.datetime.strptime(text, form).replace(tzinfo=datetime.UTC)
    return int(parsed.timestamp())


def restore_drill_pitr_plan(keys: Sequence[str], prefix: str, point: str) -> dict[str, Any]:
    until = epoch(point, POINT)
    nightlies = []
    slices = []
    for key in keys:
        name = key.removeprefix(prefix)
        backup = BACKUP.match(name)
        if backup and epoch(backup.group(1), NIGHTLY) < until:
            nightlies.append(backup.group(1))
        piece = SLICE.match(name)
        if piece:
            slices.append(((int(piece.group(3)), int(piece.group(4))), int(piece.group(1)), key))
    if not nightlies:
        return {"nightly_manifest": "", "nightly_timestamp": "", "slice_manifests": []}
    nightly = max(nightlies)
    started = epoch(nightly, NIGHTLY)
    # From the slice that holds the backup's start, up to the first one that reaches the point
    # (its entries from the point on are not replayed, but it proves none before it is missing).
    chosen = []
    for last, _, key in sorted(slices):
        if last[0] < started:
            continue
        chosen.append(key)
        if last[0] >= until:
            break
    return {
        "nightly_manifest": f"{prefix}{nightly}/manifest.json",
        "nightly_timestamp": nightly,
        "slice_manifests": chosen,
    }


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"restore_drill_pitr_plan": restore_drill_pitr_plan}
