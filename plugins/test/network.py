"""Jinja tests for network inputs: used by role asserts to refuse bad addresses early.

Documented in ip_network.yml and in_networks.yml beside this file."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable


def ip_network(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError:
        return False
    return True


def in_networks(address: object, networks: Iterable[str]) -> bool:
    """True when the address lies in one of the networks (invalid input is simply not inside)."""
    try:
        addr = ipaddress.ip_address(str(address))
    except ValueError:
        return False
    for net in networks:
        try:
            if addr in ipaddress.ip_network(net, strict=False):
                return True
        except ValueError:
            continue
    return False


class TestModule:
    def tests(self) -> dict:
        return {"ip_network": ip_network, "in_networks": in_networks}
