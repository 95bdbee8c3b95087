"""The log groups of both hosts exist in moto with the retention the role owns."""

from __future__ import annotations

import boto3
from agents import ALL_GROUPS, PREFIX, RETENTION


def test_log_groups_exist_with_their_retention() -> None:
    logs = boto3.client("logs")
    pages = logs.get_paginator("describe_log_groups").paginate(logGroupNamePrefix=f"{PREFIX}/")
    found = {
        group["logGroupName"]: group.get("retentionInDays")
        for page in pages
        for group in page["logGroups"]
    }
    assert set(found) == ALL_GROUPS
    assert found == {f"{PREFIX}/{name}": days for name, days in RETENTION.items()}
