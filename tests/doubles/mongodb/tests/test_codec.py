"""The double's own BSON codec and checksum, checked against pymongo's implementation."""

from __future__ import annotations

import datetime

import bson
import pytest

from .conftest import double_only

pytestmark = double_only


def _sample() -> dict[str, object]:
    return {
        "double": 1.5,
        "string": "zoë",
        "doc": {"nested": [1, "two", {"three": 3}]},
        "binary": bson.Binary(b"\x00\x01", 4),
        "oid": bson.ObjectId("65f0a1b2c3d4e5f601234567"),
        "bool": True,
        "date": datetime.datetime(2024, 5, 1, 10, 0, 0, 123000, tzinfo=datetime.UTC),
        "null": None,
        "int32": 7,
        "int64": bson.Int64(7),
        "big": 2**40,
        "ts": bson.Timestamp(1700000000, 3),
        "decimal": bson.Decimal128("12.50"),
        "regex": bson.Regex("^a", "i"),
        "min": bson.MinKey(),
        "max": bson.MaxKey(),
    }


def test_decode_then_encode_is_byte_identical_to_pymongo() -> None:
    from .. import bson_codec

    original = bson.encode(_sample())
    assert bson_codec.encode(bson_codec.decode(original)) == original


def test_decoded_types_keep_their_bson_identity() -> None:
    from .. import bson_codec

    doc = bson_codec.decode(bson.encode(_sample()))
    assert isinstance(doc["int64"], bson_codec.Int64)
    assert not isinstance(doc["int32"], bson_codec.Int64)
    assert doc["ts"] == bson_codec.Timestamp(1700000000, 3)
    assert doc["binary"] == bson_codec.Binary(4, b"\x00\x01")
    assert str(doc["oid"]) == "65f0a1b2c3d4e5f601234567"
    assert doc["date"] == _sample()["date"]


def test_malformed_document_is_rejected() -> None:
    from .. import bson_codec

    data = bytearray(bson.encode({"a": "text"}))
    data[0] += 1
    with pytest.raises(bson_codec.BSONError):
        bson_codec.decode(bytes(data))


def test_crc32c_check_value() -> None:
    from .. import wire

    assert wire.crc32c(b"123456789") == 0xE3069283


def test_election_ids_grow_with_the_term() -> None:
    from .. import bson_codec

    ids = [bson_codec.ObjectId.from_term(term) for term in (1, 2, 10, 300)]
    assert ids == sorted(ids)
    assert bson.ObjectId(ids[0].binary) < bson.ObjectId(ids[1].binary)


@pytest.mark.parametrize(
    ("peer", "local"),
    [
        (None, True),
        ("127.0.0.1", True),
        ("127.200.0.9", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.5", False),
        ("192.0.2.10", False),
        ("fe80::1", False),
    ],
)
def test_localhost_exception_peer_classification(peer: str | None, local: bool) -> None:
    from .. import auth

    assert auth.is_loopback_peer(peer) is local
