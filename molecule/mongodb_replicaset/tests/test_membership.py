"""Membership follows the inventory group: a hidden, non-voting member joins and leaves again."""

from __future__ import annotations

import uuid

from pymongo.write_concern import WriteConcern

JOIN_WITHIN = 90


def config_members(replset) -> dict:  # noqa: ANN001
    """host -> member document of the current replica set config."""
    return {member["host"]: member for member in replset.config()["members"]}


def test_spare_joins_hidden(replset, converge, mongo, password, members, spare, wait_for, tail):  # noqa: ANN001, ANN201
    """With the bigger group, mdb4 joins hidden, priority 0 and without a vote, and syncs."""
    replset.wait_healthy()
    # Written before the member exists: it must arrive through the initial sync.
    marker = {"_id": f"membership-{uuid.uuid4().hex}"}
    majority = WriteConcern("majority", wtimeout=30000)
    replset.admin.clinic.get_collection("verify_membership", write_concern=majority).insert_one(
        marker
    )

    result = converge("-e", "mdb_group=replset_plus")
    assert result.returncode == 0, tail(result)

    config = config_members(replset)
    assert sorted(config) == sorted([member.host for member in members] + [spare.host])
    added = config[spare.host]
    assert added["hidden"] is True
    assert added["priority"] == 0
    assert added["votes"] == 0
    status = replset.wait_healthy(
        [member.host for member in members] + [spare.host], timeout=JOIN_WITHIN
    )
    assert [m["stateStr"] for m in status["members"]].count("PRIMARY") == 1

    hello = replset.admin.admin.command("hello")
    assert sorted(hello["hosts"]) == [member.host for member in members]
    assert spare.host not in hello.get("passives", []) + hello.get("arbiters", [])

    direct = mongo("admin", password("admin"), address=spare.host, readPreference="secondary")
    spare_hello = direct.admin.command("hello")
    assert spare_hello["hidden"] is True
    assert spare_hello["secondary"] is True
    wait_for(
        lambda: direct.clinic.verify_membership.find_one(marker), 10, f"{marker} on {spare.host}"
    )


def test_spare_leaves_when_the_group_no_longer_holds_it(replset, converge, members, spare, tail):  # noqa: ANN001, ANN201
    result = converge()
    assert result.returncode == 0, tail(result)
    assert spare.host not in config_members(replset)
    assert sorted(config_members(replset)) == [member.host for member in members]
    replset.wait_healthy()
    assert spare.host not in replset.admin.admin.command("hello")["hosts"]
