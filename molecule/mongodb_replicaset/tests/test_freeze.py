"""A frozen primary: its container is paused (`docker pause`), which its peers and clients cannot
tell from a hung instance or a network that drops everything. Another member is elected while it
is frozen, no write acknowledged by a majority is lost, and once thawed the old primary steps down
and follows the new one, as a real replica set does.

A writer thread keeps inserting with w: "majority" through the replica set client (retryable
writes, as drivers do by default) during the whole freeze and after it; every id it was told was
written must be on every member at the end.
"""

from __future__ import annotations

import subprocess
import time

from pymongo.errors import PyMongoError
from pymongo.write_concern import WriteConcern
from rollouts import Writer

FREEZE_S = 25
# electionTimeoutMillis (10 s), a dry run and the vote, with room for a loaded CI machine.
ELECTED_WITHIN = 20
STEPS_DOWN_WITHIN = 30
WRITE_EVERY_S = 0.2


def test_a_frozen_primary_is_replaced_and_no_acknowledged_write_is_lost(  # noqa: ANN201
    replset,  # noqa: ANN001
    mongo,  # noqa: ANN001
    password,  # noqa: ANN001
    members,  # noqa: ANN001
    wait_for,  # noqa: ANN001
):
    replset.wait_healthy()
    old = replset.primary()
    container = {member.host: member.name for member in members}[old]
    writer_client = mongo("admin", password("admin"), serverSelectionTimeoutMS=60000,
                          socketTimeoutMS=60000)  # fmt: skip
    collection = writer_client.clinic.get_collection(
        "verify_freeze", write_concern=WriteConcern("majority", wtimeout=30000)
    )
    survivors = {m.host: mongo(address=m.host) for m in members if m.host != old}

    def elected() -> str | None:
        for host, client in survivors.items():
            try:
                if client.admin.command("hello").get("isWritablePrimary"):
                    return host
            except PyMongoError:
                pass
        return None

    with Writer(collection, WRITE_EVERY_S) as writer:
        time.sleep(2)
        subprocess.run(["docker", "pause", container], check=True)
        frozen_at = time.monotonic()
        try:
            new = wait_for(elected, ELECTED_WITHIN, f"a new PRIMARY while {old} is frozen")
            print(f"{new} PRIMARY {time.monotonic() - frozen_at:.1f} s after {old} froze")
            time.sleep(max(0.0, FREEZE_S - (time.monotonic() - frozen_at)))
        finally:
            subprocess.run(["docker", "unpause", container], check=True)
        direct = mongo(address=old)
        wait_for(
            lambda: direct.admin.command("hello").get("secondary"),
            STEPS_DOWN_WITHIN,
            f"{old} SECONDARY once thawed",
        )
        time.sleep(3)
    replset.wait_healthy()
    assert writer.acknowledged, writer.failed
    wanted = set(writer.acknowledged)
    for member in members:
        copy = mongo("admin", password("admin"), address=member.host, readPreference="nearest")

        def missing(copy=copy) -> set[int]:  # noqa: ANN001
            return wanted - {d["_id"] for d in copy.clinic.verify_freeze.find({}, {"_id": 1})}

        # A secondary may still be applying the last writes: they must all be there within 15 s.
        wait_for(
            lambda missing=missing: not missing(), 15, f"every acknowledged write on {member.name}"
        )
