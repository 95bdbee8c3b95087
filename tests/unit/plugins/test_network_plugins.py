"""Jinja tests and filters that role asserts rely on to refuse bad networks."""

from __future__ import annotations

import pytest

from plugins.filter.split_families import split_families
from plugins.test.network import in_networks, ip_network


@pytest.mark.parametrize("value", ["10.0.0.0/16", "192.0.2.7", "192.0.2.7/32", "2001:db8::/32"])
def test_valid_networks(value: str) -> None:
    assert ip_network(value)


@pytest.mark.parametrize(
    "value", ["10.0.0.1/16", "10.0.0.0/33", "bastion", "", None, 10, ["10.0.0.0/8"]]
)
def test_invalid_networks(value: object) -> None:
    assert not ip_network(value)


def test_in_networks() -> None:
    assert in_networks("10.1.2.3", ["192.168.0.0/16", "10.0.0.0/8"])
    assert not in_networks("11.1.2.3", ["10.0.0.0/8"])
    assert not in_networks("not-an-address", ["10.0.0.0/8"])
    assert in_networks("2001:db8::5", ["2001:db8::/32"])
    assert not in_networks("10.1.2.3", [])


def test_split_families_normalises_and_sorts() -> None:
    result = split_families(["10.0.0.0/8", "2001:db8::/32", "192.0.2.7", "10.0.0.0/8"])
    assert result == {"ipv4": ["10.0.0.0/8", "192.0.2.7/32"], "ipv6": ["2001:db8::/32"]}


def test_split_families_refuses_a_bad_network() -> None:
    with pytest.raises(ValueError, match="has host bits set"):
        split_families(["10.0.0.1/8"])
