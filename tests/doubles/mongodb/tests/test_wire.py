"""Wire protocol and handshake contract: OP_MSG, OP_QUERY, hello, meta commands."""

from __future__ import annotations

import re
import time

import bson
import pytest

from tests.doubles.shared_files import shared_file

from .conftest import Target

EXHAUST_ALLOWED = 1 << 16
MORE_TO_COME = 1 << 1


def test_op_msg_with_valid_checksum_is_answered(standalone: Target) -> None:
    with standalone.raw() as raw:
        reply = raw.command({"ping": 1, "$db": "admin"}, checksum=True)
    assert reply["ok"] == 1.0


def test_op_msg_with_bad_checksum_closes_connection(standalone: Target) -> None:
    with standalone.raw() as raw:
        raw.send_msg({"ping": 1, "$db": "admin"}, checksum=True, corrupt=True)
        with pytest.raises((ConnectionError, OSError)):
            raw.read_reply()


def test_kind1_document_sequence_inserts_every_document(standalone: Target) -> None:
    with standalone.raw() as raw:
        reply = raw.command(
            {"insert": "kind1", "ordered": True, "$db": "wiretest"},
            sequences={"documents": [{"_id": 1}, {"_id": 2}, {"_id": 3}]},
        )
    assert reply["n"] == 3
    client = standalone.client()
    assert sorted(d["_id"] for d in client.wiretest.kind1.find()) == [1, 2, 3]
    client.close()


def test_more_to_come_request_gets_no_reply(standalone: Target) -> None:
    with standalone.raw() as raw:
        raw.send_msg(
            {"endSessions": [], "$db": "admin", "writeConcern": {"w": 0}}, flags=MORE_TO_COME
        )
        second = raw.send_msg({"ping": 1, "$db": "admin"})
        response_to, reply = raw.read_reply()
    assert response_to == second
    assert reply["ok"] == 1.0


def test_op_query_hello_is_answered_with_op_reply(standalone: Target) -> None:
    with standalone.raw() as raw:
        reply = raw.op_query("admin.$cmd", {"ismaster": 1, "helloOk": True})
    assert reply["ok"] == 1.0
    assert reply["ismaster"] is True
    assert reply["helloOk"] is True


# mongod's message for an OP_QUERY command other than hello (code 352), as the project states it.
OP_QUERY_352 = (
    "Unsupported OP_QUERY command: {name}. The client driver may require an upgrade. "
    "For more details see https://dochub.mongodb.org/core/legacy-opcode-removal"
)


def test_op_query_other_command_is_352(standalone: Target) -> None:
    with standalone.raw() as raw:
        reply = raw.op_query("admin.$cmd", {"buildInfo": 1})
    assert reply["ok"] == 0.0
    assert reply["code"] == 352
    assert reply["codeName"] == "UnsupportedOpQueryCommand"
    assert reply["errmsg"].startswith("Unsupported OP_QUERY command: buildInfo.")
    assert reply["errmsg"] == OP_QUERY_352.format(name="buildInfo")


def test_op_query_352_message_matches_reference_transcript(standalone: Target) -> None:
    """Cross-check with the reference transcript beside the checkout (skipped without it)."""
    spec = shared_file("reference/mongodb-double-spec.md").read_text(encoding="utf-8")
    match = re.search(r'errmsg:"(Unsupported OP_QUERY command: <name>[^"]+)"', spec)
    assert match, "the reference no longer quotes the 352 message"
    assert match.group(1) == OP_QUERY_352.format(name="<name>")
    with standalone.raw() as raw:
        reply = raw.op_query("admin.$cmd", {"ping": 1})
    assert reply["errmsg"] == match.group(1).replace("<name>", "ping")


def test_hello_reports_limits_and_topology_version(standalone: Target) -> None:
    with standalone.raw() as raw:
        reply = raw.command({"hello": 1, "$db": "admin"})
    assert reply["isWritablePrimary"] is True
    assert "ismaster" not in reply
    assert reply["maxBsonObjectSize"] == 16777216
    assert reply["maxMessageSizeBytes"] == 48000000
    assert reply["maxWriteBatchSize"] == 100000
    assert reply["logicalSessionTimeoutMinutes"] == 30
    assert reply["minWireVersion"] == 0
    assert reply["maxWireVersion"] >= 21
    assert isinstance(reply["topologyVersion"]["processId"], bson.ObjectId)
    assert isinstance(reply["topologyVersion"]["counter"], bson.Int64)
    assert "compression" not in reply


def test_client_metadata_only_on_first_hello(standalone: Target) -> None:
    with standalone.raw() as raw:
        first = raw.command(
            {"hello": 1, "client": {"driver": {"name": "t", "version": "1"}}, "$db": "admin"}
        )
        second = raw.command(
            {"hello": 1, "client": {"driver": {"name": "t", "version": "1"}}, "$db": "admin"}
        )
    assert first["ok"] == 1.0
    assert second["ok"] == 0.0
    assert second["code"] == 186
    assert second["codeName"] == "ClientMetadataCannotBeMutated"


def test_awaitable_hello_streams_when_exhaust_is_allowed(standalone: Target) -> None:
    """Drivers' server monitors (4.4+) send one awaitable hello with exhaustAllowed: the replies
    keep coming with moreToCome set, each answering the previous reply, with no further request.
    A reply without moreToCome would end the stream, which a driver takes as a failed check."""
    more_to_come = 1 << 1
    with standalone.raw() as raw:
        current = raw.command({"hello": 1, "$db": "admin"})["topologyVersion"]
        previous = raw.send_msg(
            {"hello": 1, "topologyVersion": current, "maxAwaitTimeMS": 300, "$db": "admin"},
            flags=EXHAUST_ALLOWED,
        )
        for _ in range(3):
            own, response_to, flags, reply = raw.read_msg()
            assert response_to == previous
            assert flags & more_to_come
            assert reply["ok"] == 1.0
            assert reply["topologyVersion"] == current
            previous = own


def test_awaitable_hello_holds_until_max_await(standalone: Target) -> None:
    # Without exhaustAllowed: one reply per request (with it, the replies stream; test above).
    with standalone.raw() as raw:
        current = raw.command({"hello": 1, "$db": "admin"})["topologyVersion"]
        started = time.monotonic()
        reply = raw.command(
            {"hello": 1, "topologyVersion": current, "maxAwaitTimeMS": 600, "$db": "admin"}
        )
        held = time.monotonic() - started
        stale = dict(current, counter=bson.Int64(current["counter"] - 1))
        started = time.monotonic()
        raw.command({"hello": 1, "topologyVersion": stale, "maxAwaitTimeMS": 5000, "$db": "admin"})
        immediate = time.monotonic() - started
    assert reply["ok"] == 1.0
    assert held >= 0.5
    assert immediate < 2.0


def test_unknown_command_is_59(standalone: Target) -> None:
    with standalone.raw() as raw:
        reply = raw.command({"atlasVersion": 1, "$db": "admin"})
    assert reply["code"] == 59
    assert reply["codeName"] == "CommandNotFound"


def test_build_info_and_feature_compatibility_version(standalone: Target) -> None:
    client = standalone.client()
    try:
        info = client.admin.command("buildInfo")
        fcv = client.admin.command({"getParameter": 1, "featureCompatibilityVersion": 1})
    finally:
        client.close()
    assert re.fullmatch(r"\d+\.\d+\.\d+", info["version"])
    assert info["versionArray"][:2] == [int(x) for x in info["version"].split(".")[:2]]
    assert fcv["featureCompatibilityVersion"]["version"] == ".".join(info["version"].split(".")[:2])


def test_transactions_are_refused(standalone: Target) -> None:
    with standalone.raw() as raw:
        reply = raw.command(
            {
                "insert": "tx",
                "documents": [{"a": 1}],
                "startTransaction": True,
                "autocommit": False,
                "txnNumber": bson.Int64(1),
                "lsid": {"id": bson.Binary(b"0" * 16, 4)},
                "$db": "wiretest",
            }
        )
    assert reply["ok"] == 0.0
